//! Lambda function `feeds`: the feed gateway behind the mutual-TLS custom domain. It serves the
//! backend feeds (`/v1/a2a/keys`, `/v1/<region>/keys`) from the bucket to the peer named by the
//! client certificate, through the same router as `ingest`, which decides who may read what.

use enfeed::entry::lambda;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda::init_logging();
    lambda::run_http_function()
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
