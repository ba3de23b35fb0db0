//! [`FileIssuers`]: the trusted issuers file on disk, read again at every refresh.

use std::path::PathBuf;

use async_trait::async_trait;

use crate::ports::{IssuerSource, IssuersUnreadable};

/// The trusted issuers file at a path.
pub struct FileIssuers(pub PathBuf);

#[async_trait]
impl IssuerSource for FileIssuers {
    fn name(&self) -> String {
        self.0.display().to_string()
    }

    async fn read(&self) -> Result<String, IssuersUnreadable> {
        tokio::fs::read_to_string(&self.0)
            .await
            .map_err(|e| IssuersUnreadable {
                source_name: self.name(),
                reason: e.to_string(),
            })
    }
}
