//! The code store: one-time codes issued by the health authority (kept as hashes), their use
//! by exactly one upload, and the counters of wrong codes that rate limiting reads.

use async_trait::async_trait;

use super::StoreError;
use crate::domain::diagnosis::Diagnosis;
use crate::domain::key::UnixSeconds;

/// A single-use upload authorisation to be consumed in the same transaction that stores the
/// keys it authorised, so that a code can never authorise two different uploads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeClaim {
    /// SHA-256 of the one-time code (codes are never stored in clear).
    pub code_hash: [u8; 32],
    /// SHA-256 over the uploaded keys: a retry of the same upload is recognised by it.
    pub upload_digest: [u8; 32],
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

/// What a code store holds of one code's use: each store reads its rows into this, and
/// applies [`check_claim`] to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeUse {
    pub expires_at: UnixSeconds,
    /// The upload digest of the claim that used it, once used.
    pub used_by: Option<Vec<u8>>,
    /// Keys that upload stored.
    pub inserted: u32,
    /// The diagnosis the code was issued with.
    pub diagnosis: Diagnosis,
}

/// The rule every code store applies to a claim, given what it holds of the code (`None`: the
/// code is unknown). `Ok(None)`: the code is free; `Ok(Some(n))`: it already authorised this
/// very upload, which stored `n` keys.
pub fn check_claim(
    code: Option<&CodeUse>,
    claim: &CodeClaim,
    now: UnixSeconds,
) -> Result<Option<u32>, CodeRefused> {
    let code = code.ok_or(CodeRefused::Unknown)?;
    match code.used_by.as_deref() {
        Some(digest) if digest == claim.upload_digest => Ok(Some(code.inserted)),
        Some(_) => Err(CodeRefused::Used),
        None if code.expires_at <= now => Err(CodeRefused::Expired),
        None => Ok(None),
    }
}

/// A one-time code as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeRecord {
    pub code_hash: [u8; 32],
    pub issued_at: UnixSeconds,
    pub expires_at: UnixSeconds,
    /// What the health authority said about the test, if anything.
    pub diagnosis: Diagnosis,
    /// The code issuer who issued it; none when the operator did.
    pub issued_by: Option<String>,
}

/// One-time codes and the wrong-code attempt counters.
#[async_trait]
pub trait CodeStore: Send + Sync {
    /// Records a freshly issued code; [`StoreError::Conflict`] if a live code has its hash.
    async fn add_code(&self, code: CodeRecord) -> Result<(), StoreError>;

    /// The wrong codes counted for `client` in the window starting at `window_start`.
    async fn wrong_attempts(
        &self,
        client: &str,
        window_start: UnixSeconds,
    ) -> Result<u32, StoreError>;

    /// Atomically counts one more wrong code of `client` in the window starting at
    /// `window_start`; returns the count, this one included.
    async fn count_wrong_attempt(
        &self,
        client: &str,
        window_start: UnixSeconds,
    ) -> Result<u32, StoreError>;

    /// Checks that a code exists, is unexpired and is unused or was used by `upload_digest`;
    /// returns the diagnosis it was issued with.
    async fn check_code(
        &self,
        claim: &CodeClaim,
        now: UnixSeconds,
    ) -> Result<Diagnosis, StoreError>;
}
