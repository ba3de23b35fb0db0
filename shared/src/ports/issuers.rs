//! Where the trusted issuers file comes from: a file locally, an SSM parameter or an S3 object
//! on AWS. It is read again at every refresh, so that adding an issuer or rotating its keys
//! needs no redeploy.

use async_trait::async_trait;

/// Why the trusted issuers could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the trusted issuers from {source_name}: {reason}")]
pub struct IssuersUnreadable {
    pub source_name: String,
    pub reason: String,
}

/// The text of the trusted issuers file (TOML, see
/// [`IssuersFile`](crate::domain::certificate::IssuersFile)).
#[async_trait]
pub trait IssuerSource: Send + Sync {
    /// Where it is read from, for logs and errors.
    fn name(&self) -> String;

    /// The file's text as it is now.
    async fn read(&self) -> Result<String, IssuersUnreadable>;
}
