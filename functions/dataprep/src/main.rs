//! Lambda function `dataprep`: on every EventBridge schedule, publishes what is new as signed
//! chunks and indexes in the bucket and retires what has expired; a backlog larger than one
//! run drains run after run while the invocation has time. Safe to run twice at once and to
//! re-run after a failure.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        // Runs go on while another fits before the invocation's deadline, with a minute to
        // spare; the next schedule goes on from there.
        let deadline = UNIX_EPOCH + Duration::from_millis(event.context.deadline);
        let budget = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(Duration::from_secs(60));
        async move {
            handlers::run_dataprep(&backend, event.payload, budget)
                .await
                .map_err(lambda_runtime::Error::from)
        }
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
