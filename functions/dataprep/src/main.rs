//! Lambda function `dataprep`: on every EventBridge schedule, publishes what is new as signed
//! chunks and indexes in the bucket and retires what has expired. Safe to run twice at once and
//! to re-run after a failure.

use std::sync::Arc;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use enfeed::entry::lambda::{self, handlers};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda::init_logging();
    let (backend, _) = lambda::backend_from_env().await?;
    let backend = Arc::new(backend);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<EventBridgeEvent>| {
        let backend = backend.clone();
        async move {
            handlers::run_dataprep(&backend, event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        }
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
