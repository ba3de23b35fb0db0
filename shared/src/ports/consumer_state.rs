//! The consumer's state: where it stands in each peer's feed (paper, section 5.3).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::domain::key::RegionId;
use crate::domain::key::UnixSeconds;

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
