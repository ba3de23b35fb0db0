//! Lambda function `ingest`: the public HTTP API's `POST /v1/publish` (and
//! `GET /v1/verification-keys`), answered by the core's router exactly as `enfeed serve` answers.

use std::sync::Arc;

use enfeed::entry::lambda::{self, handlers};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda::init_logging();
    let (backend, settings) = lambda::backend_from_env().await?;
    let app = handlers::http_app(Arc::new(backend), lambda::a2a_consumers(&settings)?);
    lambda_http::run(lambda_http::service_fn(move |request| {
        handlers::serve_http(app.clone(), request)
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
