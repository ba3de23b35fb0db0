//! Lambda function `consumer`: on its EventBridge schedule, refreshes the trust registry
//! (`ENFEED_REGISTRY`, if set), pulls the feeds of the producers it and the peers file
//! (`ENFEED_PEERS_FILE`) name that are due, stores their keys as remote keys, and keeps its place
//! per peer in the consumer state table (`ENFEED_CONSUMER_TABLE`). Without either it reports
//! that no peers are configured. A run in which a peer's pull failed, or the registry was
//! refused, fails, after every peer was pulled.

use std::sync::Arc;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use enfeed::entry::lambda::{self, handlers};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda::init_logging();
    let (backend, _) = lambda::consumer_backend_from_env().await?;
    let backend = Arc::new(backend);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<EventBridgeEvent>| {
        let backend = backend.clone();
        async move {
            handlers::run_consumer(&backend, event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        }
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
