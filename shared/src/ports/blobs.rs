//! The blob store: where published chunks and indexes live (a directory locally, an S3 bucket
//! behind a CDN on AWS), and how each kind is served.

use async_trait::async_trait;

/// What a blob is, which fixes how it is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobKind {
    /// An immutable, signed export zip.
    Chunk,
    /// A feed's index, rewritten by every data-prep run.
    Index,
}

impl BlobKind {
    pub fn content_type(self) -> &'static str {
        match self {
            BlobKind::Chunk => "application/zip",
            BlobKind::Index => "application/json",
        }
    }

    /// Chunks never change, so caches may keep them; indexes must be revalidated.
    pub fn cache_control(self) -> &'static str {
        match self {
            BlobKind::Chunk => "public, max-age=86400, immutable",
            BlobKind::Index => "no-cache, max-age=0",
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
/// Names are feed paths such as `v1/keys/7` (a chunk) or `v1/keys` (that feed's index).
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Writes a blob only if no blob of that name exists: published chunks are never rewritten.
    async fn put_new(&self, name: &str, kind: BlobKind, bytes: Vec<u8>) -> Result<Put, BlobError>;

    /// Writes or replaces a blob (indexes).
    async fn put(&self, name: &str, kind: BlobKind, bytes: Vec<u8>) -> Result<(), BlobError>;

    async fn get(&self, name: &str) -> Result<Option<Blob>, BlobError>;

    /// Removes a blob; removing a missing blob is not an error.
    async fn delete(&self, name: &str) -> Result<(), BlobError>;
}
