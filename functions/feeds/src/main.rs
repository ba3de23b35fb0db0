//! Lambda function `feeds`: the feed gateway behind the mutual-TLS custom domain. It serves the
//! backend feeds (`/v1/a2a/keys`, `/v1/<region>/keys`) from the bucket to the peer named by the
//! client certificate, through the same router as `ingest`, which decides who may read what.

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
