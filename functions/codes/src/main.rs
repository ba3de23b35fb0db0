//! Lambda function `codes`: one-time codes. `POST /v1/admin/codes`, authorised by IAM (SigV4),
//! for the health authority's systems; `POST` and `GET /v1/issuer/codes` for code issuers with
//! their bearer tokens (the console's issuer page); and the operator's management of code
//! issuers, `/v1/admin/issuers...`, authorised by IAM.

use enfeed::entry::lambda;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda::init_logging();
    lambda::run_codes_function()
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
