//! [`ConsumerStateStore`] on the embedded store: each peer's state as JSON.

use async_trait::async_trait;
use redb::ReadableDatabase;

use super::writer::Tables;
use super::{LocalStore, PEERS};
use crate::domain::key::RegionId;
use crate::ports::{ConsumerStateStore, PeerState, StoreError};

#[async_trait]
impl ConsumerStateStore for LocalStore {
    async fn load_peer(&self, peer: RegionId) -> Result<PeerState, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(StoreError::backend)?;
            let peers = txn.open_table(PEERS).map_err(StoreError::backend)?;
            match peers.get(peer.as_str()).map_err(StoreError::backend)? {
                None => Ok(PeerState::default()),
                Some(v) => serde_json::from_slice(v.value()).map_err(StoreError::backend),
            }
        })
        .await
    }

    async fn save_peer(&self, peer: RegionId, state: &PeerState) -> Result<(), StoreError> {
        let json = serde_json::to_vec(state).map_err(StoreError::backend)?;
        self.write(move |Tables { peers, .. }| {
            peers
                .insert(peer.as_str(), json.as_slice())
                .map_err(StoreError::backend)?;
            Ok(())
        })
        .await
    }
}
