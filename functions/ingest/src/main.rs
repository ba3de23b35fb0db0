//! Lambda function `ingest`: the public HTTP API's `POST /v1/publish` (and
//! `GET /v1/verification-keys`), answered by the core's router exactly as `enfeed serve` answers.

use enfeed::entry::lambda;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda::init_logging();
    lambda::run_http_function()
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
