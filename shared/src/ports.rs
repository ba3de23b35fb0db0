//! The ports: what the core asks of the world around it. Each trait has an embedded adapter in
//! [`crate::local`] and, for the serverless deployment, an AWS adapter. The domain code
//! (upload, data-prep, feeds) sees nothing but these traits.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::key::{DiagnosisKey, RegionId};

pub use crate::signing::Signer;

pub use crate::domain::key::UnixSeconds;

/// Where a stored key came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Uploaded to this backend by a phone.
    Local,
    /// Pulled from a peer backend's feed.
    Remote,
}

/// A Diagnosis Key as this backend keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    pub key: DiagnosisKey,
    pub origin: Origin,
    /// The uploader's declared base and roaming regions S (local keys only; empty for remote
    /// keys). Used to route the key to per-region feeds and never written to any file.
    pub regions: Vec<RegionId>,
    /// When the key may first be published: arrival, or the end of the same-day embargo.
    pub publish_at: UnixSeconds,
    /// When the key must be gone (SP3): arrival plus the retention period T.
    pub expires_at: UnixSeconds,
}

/// A single-use upload authorisation to be consumed in the same transaction that stores the
/// keys it authorised, so that a code can never authorise two different uploads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeClaim {
    /// SHA-256 of the one-time code (codes are never stored in clear).
    pub code_hash: [u8; 32],
    /// SHA-256 over the uploaded keys: a retry of the same upload is recognised by it.
    pub upload_digest: [u8; 32],
}

/// Keys to store together, atomically.
#[derive(Clone, Debug)]
pub struct NewKeys {
    pub keys: Vec<StoredKey>,
    pub claim: Option<CodeClaim>,
    pub now: UnixSeconds,
}

/// What an insert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// `n` keys were new and stored; the others were already known (deduplicated).
    Stored(u32),
    /// The claim's code had already authorised this very upload: nothing was stored again,
    /// and `n` is what the first attempt stored.
    Replayed(u32),
}

/// Why a one-time code cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeRefused {
    #[error("the verification code is not known")]
    Unknown,
    #[error("the verification code has expired")]
    Expired,
    #[error("the verification code was already used for another upload")]
    Used,
}

/// What a code store holds of one code's use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeUse<'a> {
    pub expires_at: UnixSeconds,
    /// The upload digest of the claim that used it, once used.
    pub used_by: Option<&'a [u8]>,
    /// Keys that upload stored.
    pub inserted: u32,
}

/// The rule every code store applies to a claim, given what it holds of the code (`None`: the
/// code is unknown). `Ok(None)`: the code is free; `Ok(Some(n))`: it already authorised this
/// very upload, which stored `n` keys.
pub fn check_claim(
    code: Option<CodeUse<'_>>,
    claim: &CodeClaim,
    now: UnixSeconds,
) -> Result<Option<u32>, CodeRefused> {
    let code = code.ok_or(CodeRefused::Unknown)?;
    match code.used_by {
        Some(digest) if digest == claim.upload_digest => Ok(Some(code.inserted)),
        Some(_) => Err(CodeRefused::Used),
        None if code.expires_at <= now => Err(CodeRefused::Expired),
        None => Ok(None),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Code(#[from] CodeRefused),
    #[error("storage conflict: {0}")]
    Conflict(String),
    #[error("storage failed: {0}")]
    Backend(String),
}

/// Stored Diagnosis Keys, ordered by the time they may be published.
///
/// The store keeps a *seal*: a time up to which data-prep has taken keys. A key is never stored
/// with a `publish_at` at or before the seal (the store moves it just past it, in the same
/// transaction), so a data-prep run that read up to the seal can never miss a late writer.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores new keys, skipping keys already known (by key data), and consumes the claim in the
    /// same transaction. Fails with [`StoreError::Code`] if the claim's code is unknown,
    /// expired or used for a different upload.
    async fn insert(&self, batch: NewKeys) -> Result<Inserted, StoreError>;

    /// Moves the seal forward to `through` (never back) and returns the seal in force.
    async fn seal(&self, through: UnixSeconds) -> Result<UnixSeconds, StoreError>;

    /// Keys with `after < publish_at <= through` that have not expired at `now`.
    async fn published_between(
        &self,
        after: UnixSeconds,
        through: UnixSeconds,
        now: UnixSeconds,
    ) -> Result<Vec<StoredKey>, StoreError>;

    /// Physically removes every key expired at `now` (SP3). Returns how many went.
    async fn purge_expired(&self, now: UnixSeconds) -> Result<u64, StoreError>;

    /// How many keys are stored (expired or not), by origin: for reports and tests.
    async fn count(&self) -> Result<KeyCounts, StoreError>;
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KeyCounts {
    pub local: u64,
    pub remote: u64,
}

/// A one-time code as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeRecord {
    pub code_hash: [u8; 32],
    pub issued_at: UnixSeconds,
    pub expires_at: UnixSeconds,
}

/// One-time codes and the wrong-code attempt counters.
#[async_trait]
pub trait CodeStore: Send + Sync {
    /// Records a freshly issued code.
    async fn add_code(&self, code: CodeRecord) -> Result<(), StoreError>;

    /// Atomically counts one more verification attempt by `client` in the window starting at
    /// `window_start` and returns the attempts counted in that window, this one included.
    async fn count_attempt(
        &self,
        client: &str,
        window_start: UnixSeconds,
    ) -> Result<u32, StoreError>;

    /// Takes back an attempt that turned out to carry a valid code.
    async fn forgive_attempt(
        &self,
        client: &str,
        window_start: UnixSeconds,
    ) -> Result<(), StoreError>;

    /// Checks that a code exists, is unexpired and is unused or was used by `upload_digest`.
    async fn check_code(&self, claim: &CodeClaim, now: UnixSeconds) -> Result<(), StoreError>;
}

/// Data-prep's record of what it published; see [`crate::dataprep`].
#[async_trait]
pub trait PublicationStore: Send + Sync {
    /// The current state and its version (0 before the first save).
    async fn load(&self) -> Result<(u64, crate::dataprep::Publication), StoreError>;

    /// Saves `state` as version `version + 1` if the stored version is still `version`;
    /// otherwise fails with [`StoreError::Conflict`] (another run got there first).
    async fn save(
        &self,
        version: u64,
        state: &crate::dataprep::Publication,
    ) -> Result<(), StoreError>;
}

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

/// The time, in Unix seconds.
pub trait Clock: Send + Sync {
    fn now(&self) -> UnixSeconds;
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixSeconds {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the system clock is after 1970")
            .as_secs()
    }
}

/// A clock that moves only when told to: for tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(now: UnixSeconds) -> Self {
        Self(AtomicU64::new(now))
    }

    pub fn set(&self, now: UnixSeconds) {
        self.0.store(now, Ordering::SeqCst);
    }

    pub fn advance(&self, seconds: u64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixSeconds {
        self.0.load(Ordering::SeqCst)
    }
}

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

/// Where the consumer stands with one peer (paper, section 5.3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerState {
    /// The last batch taken from the peer: a chunk number, or an export file's name.
    pub last_batch_id: Option<String>,
    /// The peer's recommended next poll time; not polled before.
    pub recommended_next_poll_time: UnixSeconds,
}

/// The consumer's state per peer.
#[async_trait]
pub trait ConsumerStateStore: Send + Sync {
    async fn load_peer(&self, peer: RegionId) -> Result<PeerState, StoreError>;
    async fn save_peer(&self, peer: RegionId, state: &PeerState) -> Result<(), StoreError>;
}
