//! Lambda function `codes`: `POST /v1/admin/codes` on the HTTP API, authorised by IAM (SigV4),
//! issues a one-time code for a person who tested positive.

use std::sync::Arc;

use enfeed::entry::lambda::{self, handlers};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda::init_logging();
    let (backend, _) = lambda::backend_from_env().await?;
    let backend = Arc::new(backend);
    lambda_http::run(lambda_http::service_fn(move |request| {
        let backend = backend.clone();
        async move { handlers::issue_code(&backend, request).await }
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
