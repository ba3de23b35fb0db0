//! Fetching a URL: how the consumer reaches a peer's feed.

use async_trait::async_trait;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} sent more than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
}

/// Reads a URL: how the consumer reaches a peer's feed (over mutual TLS, in the adapter).
#[async_trait]
pub trait Fetch: Send + Sync {
    /// The body of a successful GET, refused past `max_bytes`.
    async fn get(&self, url: &str, max_bytes: usize) -> Result<Vec<u8>, FetchError>;
}
