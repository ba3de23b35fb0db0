//! The trust registry as the core reads it: the target files of a verified TUF repository.

use async_trait::async_trait;

/// One target file of the registry, as the verified metadata lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryTarget {
    /// The target's name, e.g. `eu-DE.json`.
    pub name: String,
    /// The role whose metadata lists it (a region's role, e.g. `DE`).
    pub role: String,
    /// Its bytes, checked against the length and hash the metadata gives.
    pub bytes: Vec<u8>,
}

/// Why the registry could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The repository failed TUF's checks: expired, rolled back, signatures short of a
    /// threshold, or a file that does not match its metadata.
    #[error("the registry fails verification: {0}")]
    Unverified(String),
    /// The registry could not be reached or read.
    #[error("the registry cannot be read: {0}")]
    Unreachable(String),
}

/// Reads the trust registry (over HTTPS, in the adapter), verifying it by TUF's rules against
/// the metadata trusted before, which it then trusts in turn.
#[async_trait]
pub trait Registry: Send + Sync {
    /// Every target file of the registry as it verifies now.
    async fn targets(&self) -> Result<Vec<RegistryTarget>, RegistryError>;
}
