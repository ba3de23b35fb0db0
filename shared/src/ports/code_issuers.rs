//! The code issuer store: the credentials of a health authority's staff who issue one-time
//! codes (each kept as a hash, never in clear), and which codes each of them issued, for them
//! to see the status of their own codes. Both stores keep them (see docs/console.md and
//! docs/deploy.md).

use async_trait::async_trait;
use serde::Serialize;

use super::StoreError;
use crate::domain::diagnosis::Diagnosis;
use crate::domain::key::UnixSeconds;

/// A member of the health authority's staff who may issue one-time codes, and nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeIssuer {
    /// Unique among the region's code issuers, revoked ones included.
    pub name: String,
    /// HMAC of the issuer's token under the region's pepper.
    pub token_hash: [u8; 32],
    pub created_at: UnixSeconds,
    /// When the operator revoked the credential; a revoked issuer can do nothing.
    pub revoked_at: Option<UnixSeconds>,
}

/// Where a one-time code stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CodeStatus {
    Unused,
    Used,
    Expired,
}

impl CodeStatus {
    /// The rule both stores apply: a used code is used (even once past its expiry), an unused
    /// one has expired at `expires_at`.
    pub fn of(used: bool, expires_at: UnixSeconds, now: UnixSeconds) -> Self {
        match used {
            true => Self::Used,
            false if expires_at <= now => Self::Expired,
            false => Self::Unused,
        }
    }
}

/// A code as its issuer sees it: never the code itself, which is not stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCodeStatus {
    pub issued_at: UnixSeconds,
    pub expires_at: UnixSeconds,
    pub diagnosis: Diagnosis,
    pub status: CodeStatus,
}

/// Code issuers' credentials, and the codes each issued.
#[async_trait]
pub trait CodeIssuerStore: Send + Sync {
    /// Adds an issuer; [`StoreError::Conflict`] if one of that name exists (even revoked).
    async fn add_issuer(&self, issuer: CodeIssuer) -> Result<(), StoreError>;

    /// Every issuer, revoked ones included, by name.
    async fn issuers(&self) -> Result<Vec<CodeIssuer>, StoreError>;

    /// Revokes the issuer `name` at `at` (a revoked one stays revoked as it was); `false` if
    /// there is no issuer of that name.
    async fn revoke_issuer(&self, name: &str, at: UnixSeconds) -> Result<bool, StoreError>;

    /// The codes that `issuer` issued from `since` on, oldest first, with their status at
    /// `now`. Which issuer issued a code is recorded with the code
    /// ([`CodeRecord::issued_by`](super::CodeRecord::issued_by)).
    async fn codes_issued_by(
        &self,
        issuer: &str,
        since: UnixSeconds,
        now: UnixSeconds,
    ) -> Result<Vec<IssuedCodeStatus>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_used_code_stays_used_and_an_unused_one_expires() {
        assert_eq!(CodeStatus::of(false, 100, 99), CodeStatus::Unused);
        assert_eq!(CodeStatus::of(false, 100, 100), CodeStatus::Expired);
        assert_eq!(CodeStatus::of(true, 100, 99), CodeStatus::Used);
        assert_eq!(CodeStatus::of(true, 100, 500), CodeStatus::Used);
    }
}
