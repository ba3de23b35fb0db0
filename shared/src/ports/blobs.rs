//! The blob store: where published chunks and indexes live (a directory locally, an S3 bucket
//! behind a CDN on AWS), and how each kind is served.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::key::UnixSeconds;

/// The longest time a cache may keep a chunk.
pub const CHUNK_MAX_AGE: u64 = 86_400;

/// What a blob is, which fixes how it is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobKind {
    /// An immutable, signed export zip. Caches may keep it, but never past `fresh_until`:
    /// soon after, data-prep deletes it (SP3), and no copy may outlive it.
    Chunk { fresh_until: UnixSeconds },
    /// A feed's index or another document rewritten by every data-prep run.
    Index,
}

impl BlobKind {
    /// How long, from `now`, caches may keep the blob: a chunk for a day at most and never past
    /// its `fresh_until`; an index not at all.
    pub fn max_age(self, now: UnixSeconds) -> u64 {
        match self {
            BlobKind::Chunk { fresh_until } => fresh_until.saturating_sub(now).min(CHUNK_MAX_AGE),
            BlobKind::Index => 0,
        }
    }

    /// The `Cache-Control` of the blob served at `now`.
    pub fn cache_control(self, now: UnixSeconds) -> String {
        match self {
            BlobKind::Chunk { .. } => {
                format!("public, max-age={}, immutable", self.max_age(now))
            }
            BlobKind::Index => "no-cache, max-age=0".to_string(),
        }
    }
}

/// A stored blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub kind: BlobKind,
    pub bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob name {0:?} is not a valid feed path")]
    BadName(String),
    #[error("blob storage failed: {0}")]
    Backend(String),
}

/// Whether [`BlobStore::put_new`] wrote the blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    Created,
    /// A blob of that name was there already and was left untouched.
    AlreadyExists,
}

/// Where published files live: a directory in local mode, an S3 bucket behind a CDN on AWS.
/// Names are the paths of [`Published`](crate::domain::feed::Published) files, such as
/// `v1/keys/7` (a chunk) or `v1/keys` (that feed's index). A blob keeps its kind, with a
/// chunk's `fresh_until`.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Writes a blob only if no blob of that name exists: published chunks are never rewritten.
    async fn put_new(&self, name: &str, kind: BlobKind, bytes: Vec<u8>) -> Result<Put, BlobError>;

    /// Writes or replaces a blob (indexes).
    async fn put(&self, name: &str, kind: BlobKind, bytes: Vec<u8>) -> Result<(), BlobError>;

    async fn get(&self, name: &str) -> Result<Option<Blob>, BlobError>;

    /// Removes a blob; removing a missing blob is not an error.
    async fn delete(&self, name: &str) -> Result<(), BlobError>;

    /// An address from which a client may fetch the blob directly for `valid_for`, if the store
    /// can give one (a presigned URL of an object store) and the blob exists; `None` otherwise.
    async fn direct_url(
        &self,
        _name: &str,
        _valid_for: Duration,
    ) -> Result<Option<String>, BlobError> {
        Ok(None)
    }
}
