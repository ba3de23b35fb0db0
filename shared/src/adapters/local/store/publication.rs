//! [`PublicationStore`] on the embedded store: the state and its version in one row.

use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable};

use super::writer::Tables;
use super::{LocalStore, META, PUBLICATION};
use crate::domain::publication::Publication;
use crate::ports::{PublicationStore, StoreError};

#[async_trait]
impl PublicationStore for LocalStore {
    async fn load(&self) -> Result<(u64, Publication), StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(StoreError::backend)?;
            let meta = txn.open_table(META).map_err(StoreError::backend)?;
            match meta.get(PUBLICATION).map_err(StoreError::backend)? {
                None => Ok((0, Publication::default())),
                Some(v) => {
                    let (version, json) = v.value().split_at(8);
                    let version = u64::from_be_bytes(version.try_into().expect("8 bytes"));
                    Ok((
                        version,
                        serde_json::from_slice(json).map_err(StoreError::backend)?,
                    ))
                }
            }
        })
        .await
    }

    async fn save(&self, version: u64, state: &Publication) -> Result<(), StoreError> {
        let json = serde_json::to_vec(state).map_err(StoreError::backend)?;
        self.write(move |Tables { meta, .. }| {
            let current = match meta.get(PUBLICATION).map_err(StoreError::backend)? {
                None => 0,
                Some(v) => u64::from_be_bytes(v.value()[..8].try_into().expect("8 bytes")),
            };
            if current != version {
                return Err(StoreError::Conflict(format!(
                    "publication state is at version {current}, not {version}"
                )));
            }
            let mut row = (version + 1).to_be_bytes().to_vec();
            row.extend_from_slice(&json);
            meta.insert(PUBLICATION, row.as_slice())
                .map_err(StoreError::backend)?;
            Ok(())
        })
        .await
    }
}
