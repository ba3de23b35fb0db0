//! Lambda function `feeds`: the feed gateway behind the mutual-TLS custom domain. It serves the
//! backend feeds (`/v1/a2a/keys`, `/v1/<region>/keys`) from the bucket to the peer named by the
//! client certificate, through the same router as `ingest`, which decides who may read what.

use std::sync::Arc;

use enfeed::entry::lambda::{self, handlers};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda::init_logging();
    let (backend, settings) = lambda::backend_from_env().await?;
    let backend = Arc::new(backend);
    let app = handlers::http_app(backend.clone(), lambda::a2a_consumers(&settings)?);
    lambda_http::run(lambda_http::service_fn(move |request| {
        let (backend, app) = (backend.clone(), app.clone());
        async move { handlers::serve_http(&backend, app, request).await }
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
