//! [`KeyStore`] on the embedded store.

use async_trait::async_trait;
use prost::Message as _;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::codec::{CodeRow, Expiring, KeyRecord};
use super::codes::read_code;
use super::writer::Tables;
use super::{KEYS, LocalStore, SEAL, read_u64};
use crate::domain::key::KEY_LEN;
use crate::ports::{
    self, Inserted, KeyCounts, KeyStore, NewKeys, StoreError, StoredKey, UnixSeconds,
};

#[async_trait]
impl KeyStore for LocalStore {
    async fn insert(&self, batch: NewKeys) -> Result<Inserted, StoreError> {
        self.write(move |tables| {
            let Tables {
                keys,
                known,
                expiring,
                codes,
                meta,
                ..
            } = tables;
            if let Some(claim) = &batch.claim
                && let Some(n) = ports::check_claim(
                    read_code(codes, &claim.code_hash)?
                        .map(|row| row.code_use())
                        .as_ref(),
                    claim,
                    batch.now,
                )?
            {
                return Ok(Inserted::Replayed(n));
            }
            let seal = read_u64(meta, SEAL)?;
            let mut stored = 0u32;
            let mut expires = std::collections::BTreeMap::<u64, Expiring>::new();
            for key in &batch.keys {
                let tek = key.key.key_data;
                if known.get(&tek).map_err(StoreError::backend)?.is_some() {
                    continue;
                }
                // Never behind the seal: data-prep has already read up to it.
                let publish_at = key.publish_at.max(seal + 1);
                keys.insert(
                    (publish_at, tek),
                    KeyRecord::from_key(key).encode_to_vec().as_slice(),
                )
                .map_err(StoreError::backend)?;
                known.insert(tek, publish_at).map_err(StoreError::backend)?;
                expires
                    .entry(key.expires_at)
                    .or_default()
                    .push(publish_at, tek);
                stored += 1;
            }
            for (expires_at, keys) in expires {
                expiring
                    .insert((expires_at, keys.first()), keys.0.as_slice())
                    .map_err(StoreError::backend)?;
            }
            if let Some(claim) = &batch.claim {
                let mut row = read_code(codes, &claim.code_hash)?.expect("checked above");
                row.used_by = Some(claim.upload_digest.to_vec());
                row.inserted = stored;
                codes
                    .insert(claim.code_hash, row.encode_to_vec().as_slice())
                    .map_err(StoreError::backend)?;
            }
            Ok(Inserted::Stored(stored))
        })
        .await
    }

    async fn seal(&self, through: UnixSeconds) -> Result<UnixSeconds, StoreError> {
        self.write(move |Tables { meta, .. }| {
            let seal = read_u64(meta, SEAL)?.max(through);
            meta.insert(SEAL, seal.to_be_bytes().as_slice())
                .map_err(StoreError::backend)?;
            Ok(seal)
        })
        .await
    }

    async fn published_between(
        &self,
        after: UnixSeconds,
        through: UnixSeconds,
        now: UnixSeconds,
    ) -> Result<Vec<StoredKey>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(StoreError::backend)?;
            let keys = txn.open_table(KEYS).map_err(StoreError::backend)?;
            let mut out = Vec::new();
            for entry in keys
                .range((after + 1, [0; KEY_LEN])..=(through, [0xff; KEY_LEN]))
                .map_err(StoreError::backend)?
            {
                let (k, v) = entry.map_err(StoreError::backend)?;
                let (publish_at, tek) = k.value();
                let key = KeyRecord::decode(v.value())
                    .map_err(StoreError::backend)?
                    .into_key(tek, publish_at)?;
                if key.expires_at > now {
                    out.push(key);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn purge_expired(&self, now: UnixSeconds) -> Result<u64, StoreError> {
        self.write(move |tables| {
            let Tables {
                keys,
                known,
                expiring,
                codes,
                issued,
                ..
            } = tables;
            let mut purged = 0;
            for entry in expiring
                .extract_from_if(..=(now, [0xff; KEY_LEN]), |_, _| true)
                .map_err(StoreError::backend)?
            {
                let (_, row) = entry.map_err(StoreError::backend)?;
                for (publish_at, tek) in Expiring::keys(row.value()) {
                    keys.remove((publish_at, tek))
                        .map_err(StoreError::backend)?;
                    known.remove(tek).map_err(StoreError::backend)?;
                    purged += 1;
                }
            }
            // Expired codes go as well.
            codes
                .retain(|_, row| CodeRow::decode(row).map_or(true, |r| r.expires_at + 86_400 > now))
                .map_err(StoreError::backend)?;
            // And what their issuers see of them, a day later.
            issued
                .retain(|(_, issued_at, _), _| issued_at + 2 * 86_400 > now)
                .map_err(StoreError::backend)?;
            Ok(purged)
        })
        .await
    }

    async fn count(&self) -> Result<KeyCounts, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(StoreError::backend)?;
            let keys = txn.open_table(KEYS).map_err(StoreError::backend)?;
            let mut counts = KeyCounts::default();
            for entry in keys.iter().map_err(StoreError::backend)? {
                let (_, v) = entry.map_err(StoreError::backend)?;
                match KeyRecord::decode(v.value())
                    .map_err(StoreError::backend)?
                    .remote
                {
                    true => counts.remote += 1,
                    false => counts.local += 1,
                }
            }
            debug_assert_eq!(counts.local + counts.remote, keys.len().unwrap_or(0));
            Ok(counts)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use redb::Database;

    use super::super::{EXPIRING, EXPIRY_PER_KEY};
    use super::*;
    use crate::domain::key::{DiagnosisKey, ReportType};
    use crate::ports::Origin;

    fn key(byte: u8, expires_at: u64) -> StoredKey {
        StoredKey {
            key: DiagnosisKey {
                key_data: [byte; KEY_LEN],
                rolling_start: 2_700_000,
                rolling_period: 144,
                transmission_risk: 0,
                report_type: ReportType::ConfirmedTest,
                days_since_onset: None,
            },
            origin: Origin::Local,
            regions: Vec::new(),
            publish_at: 100,
            expires_at,
        }
    }

    async fn insert(store: &LocalStore, keys: Vec<StoredKey>) {
        let batch = NewKeys {
            keys,
            claim: None,
            now: 50,
        };
        store.insert(batch).await.unwrap();
    }

    #[tokio::test]
    async fn keys_of_one_write_expire_at_their_own_times() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&dir.path().join("db")).unwrap();
        insert(&store, vec![key(1, 1000), key(2, 2000), key(3, 1000)]).await;
        assert_eq!(store.purge_expired(1000).await.unwrap(), 2);
        assert_eq!(store.count().await.unwrap().local, 1);
        // A purged key is forgotten, so it may be stored again.
        insert(&store, vec![key(1, 3000)]).await;
        assert_eq!(store.purge_expired(2000).await.unwrap(), 1);
        assert_eq!(store.purge_expired(3000).await.unwrap(), 1);
        assert_eq!(store.count().await.unwrap().local, 0);
    }

    #[tokio::test]
    async fn a_store_with_the_per_key_expiry_index_of_earlier_versions_still_purges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        insert(&LocalStore::open(&path).unwrap(), vec![key(1, 1000)]).await;
        // As an earlier version wrote it: the key's expiry in the per-key index.
        {
            let db = Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(EXPIRING)
                .unwrap()
                .retain(|_, _| false)
                .unwrap();
            txn.open_table(EXPIRY_PER_KEY)
                .unwrap()
                .insert((1000, [1; KEY_LEN]), 100)
                .unwrap();
            txn.commit().unwrap();
        }
        let store = LocalStore::open(&path).unwrap();
        assert_eq!(store.purge_expired(999).await.unwrap(), 0);
        assert_eq!(store.purge_expired(1000).await.unwrap(), 1);
        assert_eq!(store.count().await.unwrap().local, 0);
    }
}
