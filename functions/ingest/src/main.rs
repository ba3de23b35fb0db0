//! Lambda function `ingest`: the public HTTP API's `POST /v1/publish` (and
//! `GET /v1/verification-keys`), answered by the core's router exactly as `enfeed serve` answers.

use std::sync::Arc;

use enfeed::aws::{self, lambda};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    aws::init_logging();
    let (backend, settings) = aws::backend_from_env().await?;
    let app = lambda::http_app(Arc::new(backend), aws::a2a_consumers(&settings)?);
    lambda_http::run(lambda_http::service_fn(move |request| {
        lambda::serve_http(app.clone(), request)
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
