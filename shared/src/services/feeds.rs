//! Reading feeds: a feed's index (an empty one before its first chunk) and its chunks, as the
//! HTTP API serves them; and the public keys that verify them, published beside the feeds so
//! that whoever serves the feeds needs no access to the private keys.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::feed::{Feed, FeedIndex, VERIFICATION_KEYS_PATH};
use crate::domain::key::RegionId;
use crate::ports::{Blob, BlobError, BlobKind, BlobStore, Clock};

/// The published feeds of one region.
#[derive(Clone)]
pub struct Feeds {
    region: RegionId,
    /// Seconds between data-prep runs: when a feed without an index should be polled again.
    poll_interval: u64,
    blobs: Arc<dyn BlobStore>,
    clock: Arc<dyn Clock>,
}

impl Feeds {
    pub fn new(
        region: RegionId,
        poll_interval: u64,
        blobs: Arc<dyn BlobStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            region,
            poll_interval,
            blobs,
            clock,
        }
    }

    /// A feed's index; a feed that has had no chunk yet has an empty one.
    pub async fn index(&self, feed: Feed) -> Result<Blob, BlobError> {
        if let Some(blob) = self.blobs.get(&feed.index_path()).await? {
            return Ok(blob);
        }
        let empty = FeedIndex {
            region: self.region,
            chunks: Vec::new(),
            recommended_next_poll_time: self.clock.now() + self.poll_interval,
        };
        Ok(Blob {
            kind: BlobKind::Index,
            bytes: serde_json::to_vec(&empty).expect("indexes serialize"),
        })
    }

    /// A feed's index as text; a feed that has had no chunk yet lists none.
    pub async fn text_index(&self, feed: Feed) -> Result<Blob, BlobError> {
        Ok(self
            .blobs
            .get(&feed.text_index_path())
            .await?
            .unwrap_or(Blob {
                kind: BlobKind::Index,
                bytes: Vec::new(),
            }))
    }

    /// The `n`-th chunk of a feed, if it exists.
    pub async fn chunk(&self, feed: Feed, n: u32) -> Result<Option<Blob>, BlobError> {
        self.blobs.get(&feed.chunk_path(n)).await
    }

    /// A short-lived address from which the `n`-th chunk of a feed can be fetched directly, if
    /// the blob store gives such addresses.
    pub async fn chunk_url(
        &self,
        feed: Feed,
        n: u32,
        valid_for: Duration,
    ) -> Result<Option<String>, BlobError> {
        self.blobs.direct_url(&feed.chunk_path(n), valid_for).await
    }

    /// Publishes the document of the public keys that verify the chunks (JSON).
    pub async fn publish_verification_keys(&self, document: Vec<u8>) -> Result<(), BlobError> {
        self.blobs
            .put(VERIFICATION_KEYS_PATH, BlobKind::Index, document)
            .await
    }

    /// The published document of verification keys, if data-prep has published one.
    pub async fn verification_keys(&self) -> Result<Option<Blob>, BlobError> {
        self.blobs.get(VERIFICATION_KEYS_PATH).await
    }
}
