//! The publication store: data-prep's record of what it published, saved with a version that
//! only a run which read the current one can advance.

use async_trait::async_trait;

use super::StoreError;
use crate::domain::publication::Publication;

/// Data-prep's record of what it published.
#[async_trait]
pub trait PublicationStore: Send + Sync {
    /// The current state and its version (0 before the first save).
    async fn load(&self) -> Result<(u64, Publication), StoreError>;

    /// Saves `state` as version `version + 1` if the stored version is still `version`;
    /// otherwise fails with [`StoreError::Conflict`] (another run got there first).
    async fn save(&self, version: u64, state: &Publication) -> Result<(), StoreError>;
}
