//! Lambda function `ingest`: the public HTTP API's `POST /v1/publish` (and
//! `GET /v1/verification-keys`), answered by the core's router exactly as `enfeed serve` answers.

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
