//! Reading feeds: a feed's index (an empty one before its first chunk) and its chunks, as the
//! HTTP API serves them.

use std::sync::Arc;

use crate::domain::feed::{Feed, FeedIndex};
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

    /// The `n`-th chunk of a feed, if it exists.
    pub async fn chunk(&self, feed: Feed, n: u32) -> Result<Option<Blob>, BlobError> {
        self.blobs.get(&feed.chunk_path(n)).await
    }
}
