//! [`KeyStore`] on the embedded store. Key rows are named by (`publish_at`, number in the order
//! written): that is the store's order, and a [`KeyCursor`] names a row.

use std::ops::Bound;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD};
use prost::Message as _;
use redb::{ReadableDatabase, ReadableTable};

use super::codec::{CodeRow, Expiring, KeyRecord, Row, key_row, read_key_row};
use super::staging::{self, StagedKey};
use super::writer::Tables;
use super::{KEYS, LocalStore, SEAL, Tek, next_key_row, read_u64};
use crate::domain::key::KEY_LEN;
use crate::ports::{
    self, IfRevised, Inserted, KeyCounts, KeyCursor, KeyPage, KeyStore, NewKeys, PublishedRange,
    StoreError, StoredKey, UnixSeconds,
};

/// Most key rows one write transaction of the regions drop or the purge changes: a large
/// backlog is worked through in several, each bounded in memory.
const ROWS_PER_WRITE: usize = 50_000;

/// The cursor naming a key row: "publish_at number".
fn cursor_of((publish_at, number): Row) -> KeyCursor {
    KeyCursor(format!("{publish_at} {number}"))
}

/// Where a cursor says a read goes on: past a row; or, for a cursor of an earlier version,
/// which named a row by its key data, past the rows of its publish_at up to that key data (the
/// upgrade numbered the rows of earlier versions in key data order, and no row is written
/// behind the seal after it).
fn resume_after(
    keys: &impl ReadableTable<Row, &'static [u8]>,
    cursor: &KeyCursor,
) -> Result<Bound<Row>, StoreError> {
    let bad = || StoreError::Backend(format!("{:?} is not a place in the key table", cursor.0));
    let (publish_at, place) = cursor.0.split_once(' ').ok_or_else(bad)?;
    let publish_at: u64 = publish_at.parse().map_err(|_| bad())?;
    if let Ok(number) = place.parse() {
        return Ok(Bound::Excluded((publish_at, number)));
    }
    let old: Tek = URL_SAFE_NO_PAD
        .decode(place)
        .ok()
        .and_then(|tek| tek.try_into().ok())
        .ok_or_else(bad)?;
    let mut resume = Bound::Included((publish_at, 0));
    let rows = keys
        .range((publish_at, 0)..=(publish_at, u64::MAX))
        .map_err(StoreError::backend)?;
    for entry in rows {
        let (row, value) = entry.map_err(StoreError::backend)?;
        if read_key_row(value.value())?.0 > old {
            break;
        }
        resume = Bound::Excluded(row.value());
    }
    Ok(resume)
}

/// The key rows of `after < publish_at <= through`, from `start` if given.
fn rows_between(
    after: UnixSeconds,
    through: UnixSeconds,
    start: Option<Bound<Row>>,
) -> (Bound<Row>, Bound<Row>) {
    let start = start.unwrap_or(Bound::Included((after + 1, 0)));
    (start, Bound::Included((through, u64::MAX)))
}

#[async_trait]
impl KeyStore for LocalStore {
    async fn insert(&self, batch: NewKeys) -> Result<Inserted, StoreError> {
        self.write(move |tables| {
            if let Some(claim) = &batch.claim
                && let Some(n) = ports::check_claim(
                    tables
                        .staging
                        .code(&tables.codes, &claim.code_hash)?
                        .map(|row| row.code_use())
                        .as_ref(),
                    claim,
                    batch.now,
                )?
            {
                return Ok(Inserted::Replayed(n));
            }
            // A revision changes the row of the key it revises: that row must have moved.
            let revised = batch.revisions.iter().map(|key| &key.key.key_data);
            staging::move_keys(tables, revised)?;
            let Tables {
                keys,
                staging,
                expiring,
                codes,
                meta,
                ..
            } = tables;
            // Every refusal before any write: a refused operation leaves nothing in the batch.
            let mut revised = Vec::with_capacity(batch.revisions.len());
            let mut new_keys: Vec<&StoredKey> = batch.keys.iter().collect();
            for revision in &batch.revisions {
                let tek = revision.key.key_data;
                let Some(at) = staging.row(&tek)? else {
                    // A revision of a key never held here is a new key.
                    new_keys.push(revision);
                    continue;
                };
                let original = keys
                    .get(at)
                    .map_err(StoreError::backend)?
                    .ok_or_else(|| StoreError::backend("a known key without its row"))?;
                let (_, original) = read_key_row(original.value())?;
                if !revision.may_revise(original.origin(), original.peer_region()?) {
                    continue;
                }
                match (original.revised, batch.if_revised) {
                    (false, _) => revised.push((revision, at, original)),
                    (true, IfRevised::Skip) => {}
                    (true, IfRevised::Refuse) => {
                        return Err(StoreError::AlreadyRevised(BASE64.encode(tek)));
                    }
                }
            }
            let seal = read_u64(meta, SEAL)?;
            let mut stored = 0u32;
            for key in new_keys {
                let tek = key.key.key_data;
                if staging.known(&tek)?.is_some() {
                    continue;
                }
                let mut record = KeyRecord::from_key(key);
                record.revision = false;
                staging.stage(StagedKey {
                    tek,
                    // Never behind the seal: data-prep has already read up to it.
                    publish_at: key.publish_at.max(seal + 1),
                    expires_at: key.expires_at,
                    record: record.encode_to_vec(),
                });
                stored += 1;
            }
            let mut expires = Vec::with_capacity(revised.len());
            for (revision, original_at, mut original) in revised {
                let tek = revision.key.key_data;
                original.revised = true;
                keys.insert(
                    original_at,
                    key_row(&tek, &original.encode_to_vec()).as_slice(),
                )
                .map_err(StoreError::backend)?;
                // After the seal, and after the key it revises: never in a file before it.
                let publish_at = revision.publish_at.max(seal + 1).max(original_at.0 + 1);
                let mut record = KeyRecord::from_key(revision);
                record.expires_at = original.expires_at;
                let row = next_key_row(keys, publish_at, None)?;
                keys.insert(row, key_row(&tek, &record.encode_to_vec()).as_slice())
                    .map_err(StoreError::backend)?;
                expires.push((original.expires_at, row, tek));
                stored += 1;
            }
            staging::add_expiring(expiring, expires)?;
            if let Some(claim) = &batch.claim {
                let mut row = staging
                    .code(codes, &claim.code_hash)?
                    .expect("checked above");
                row.used_by = Some(claim.upload_digest.to_vec());
                row.inserted = stored;
                staging.stage_code(claim.code_hash, &row);
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

    async fn read_published(
        &self,
        range: PublishedRange,
        from: Option<&KeyCursor>,
        max_keys: usize,
    ) -> Result<KeyPage, StoreError> {
        let from = from.cloned();
        self.settle().await?;
        self.blocking(move |db| {
            let mut page = KeyPage::default();
            if range.through <= range.after {
                return Ok(page);
            }
            let txn = db.begin_read().map_err(StoreError::backend)?;
            let keys = txn.open_table(KEYS).map_err(StoreError::backend)?;
            let start = from.map(|from| resume_after(&keys, &from)).transpose()?;
            let rows = rows_between(range.after, range.through, start);
            let mut last = None;
            for entry in keys.range(rows).map_err(StoreError::backend)? {
                let (k, v) = entry.map_err(StoreError::backend)?;
                let row = k.value();
                let (tek, record) = read_key_row(v.value())?;
                let key = record.into_key(tek, row.0)?;
                if key.expires_at <= range.now {
                    continue;
                }
                if page.keys.len() == max_keys {
                    page.next = last.map(cursor_of);
                    break;
                }
                page.keys.push(key);
                last = Some(row);
            }
            Ok(page)
        })
        .await
    }

    async fn forget_regions(
        &self,
        after: UnixSeconds,
        through: UnixSeconds,
    ) -> Result<u64, StoreError> {
        if through <= after {
            return Ok(0);
        }
        self.settle().await?;
        let mut forgotten = 0;
        let mut from = None;
        loop {
            // A bounded part at a time: the rows it read last, and how many had regions.
            let (last, dropped) = self
                .write(move |Tables { keys, .. }| {
                    let mut declared = Vec::new();
                    let mut last = None;
                    let rows = rows_between(after, through, from.map(Bound::Excluded));
                    for entry in keys.range(rows).map_err(StoreError::backend)? {
                        let (k, v) = entry.map_err(StoreError::backend)?;
                        let (tek, record) = read_key_row(v.value())?;
                        if !record.regions.is_empty() {
                            declared.push((k.value(), tek, record));
                        }
                        last = Some(k.value());
                        if declared.len() == ROWS_PER_WRITE {
                            break;
                        }
                    }
                    for (row, tek, mut record) in declared.iter().cloned() {
                        record.regions.clear();
                        keys.insert(row, key_row(&tek, &record.encode_to_vec()).as_slice())
                            .map_err(StoreError::backend)?;
                    }
                    Ok((last, declared.len()))
                })
                .await?;
            forgotten += dropped as u64;
            match last {
                Some(row) if dropped == ROWS_PER_WRITE => from = Some(row),
                _ => return Ok(forgotten),
            }
        }
    }

    async fn purge_expired(&self, now: UnixSeconds) -> Result<u64, StoreError> {
        // Keys staged later have their expiry rows written when they move, and are purged then.
        self.settle().await?;
        let mut purged = 0;
        // Expired keys a bounded part at a time, until a part finds fewer than it may take.
        loop {
            let part = self
                .write(move |tables| {
                    let Tables {
                        keys,
                        staging,
                        expiring,
                        ..
                    } = tables;
                    let mut expired = Vec::new();
                    let mut rows = 0;
                    for entry in expiring
                        .range(..=(now, [0xff; KEY_LEN]))
                        .map_err(StoreError::backend)?
                    {
                        let (name, row) = entry.map_err(StoreError::backend)?;
                        rows += Expiring::keys(row.value()).count();
                        expired.push(name.value());
                        if rows >= ROWS_PER_WRITE {
                            break;
                        }
                    }
                    let mut purged = 0;
                    for name in expired {
                        let row = expiring
                            .remove(name)
                            .map_err(StoreError::backend)?
                            .expect("a row just read");
                        for (key_row, tek) in Expiring::keys(row.value()) {
                            keys.remove(key_row).map_err(StoreError::backend)?;
                            staging.forget(tek)?;
                            purged += 1;
                        }
                    }
                    Ok((purged, rows >= ROWS_PER_WRITE))
                })
                .await?;
            purged += part.0;
            if !part.1 {
                break;
            }
        }
        self.write(move |tables| {
            let Tables { codes, issued, .. } = tables;
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
        self.settle().await?;
        self.blocking(|db| {
            let txn = db.begin_read().map_err(StoreError::backend)?;
            let keys = txn.open_table(KEYS).map_err(StoreError::backend)?;
            let mut counts = KeyCounts::default();
            for entry in keys.iter().map_err(StoreError::backend)? {
                let (_, v) = entry.map_err(StoreError::backend)?;
                let (_, record) = read_key_row(v.value())?;
                // A revision is a second row of a key counted already.
                match (record.revision, record.remote) {
                    (true, _) => {}
                    (false, true) => counts.remote += 1,
                    (false, false) => counts.local += 1,
                }
            }
            Ok(counts)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use redb::{Database, TableDefinition, TableHandle as _};

    use super::super::{OLD_KEYS, OLD_KNOWN};
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
            revision: false,
            peer: None,
        }
    }

    /// Stores keys without a code; returns what the store did.
    async fn insert(store: &LocalStore, keys: Vec<StoredKey>) -> Inserted {
        let batch = NewKeys {
            keys,
            claim: None,
            now: 50,
            ..NewKeys::default()
        };
        store.insert(batch).await.unwrap()
    }

    #[tokio::test]
    async fn staged_keys_survive_a_restart_are_stored_once_and_read_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = LocalStore::open(&path).unwrap();
        insert(&store, vec![key(3, 1000), key(1, 1000)]).await;
        drop(store);
        // Staged when the store closed: read back, still known, and read where they belong.
        let store = LocalStore::open(&path).unwrap();
        let again = vec![key(1, 1000), key(2, 1000), key(3, 1000)];
        assert_eq!(insert(&store, again).await, Inserted::Stored(1));
        let range = PublishedRange {
            after: 0,
            through: 100,
            now: 60,
        };
        let page = store.read_published(range, None, 10).await.unwrap();
        let read: Vec<u8> = page.keys.iter().map(|k| k.key.key_data[0]).collect();
        // In the order they were written (data-prep sorts each file by key data).
        assert_eq!(read, [1, 3, 2]);
        assert_eq!(store.count().await.unwrap().local, 3);
    }

    #[tokio::test]
    async fn a_store_whose_index_file_is_lost_rebuilds_it_and_still_stores_a_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("enfeed.redb");
        let store = LocalStore::open(&path).unwrap();
        insert(&store, vec![key(1, 1000), key(2, 1000)]).await;
        // Moved into the key tables, its index changes logged.
        assert_eq!(store.count().await.unwrap().local, 2);
        drop(store);
        std::fs::remove_file(dir.path().join("enfeed.index.redb")).unwrap();
        let store = LocalStore::open(&path).unwrap();
        let again = vec![key(1, 1000), key(2, 1000), key(3, 1000)];
        assert_eq!(insert(&store, again).await, Inserted::Stored(1));
        assert_eq!(store.count().await.unwrap().local, 3);
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
    async fn a_store_of_an_earlier_version_is_upgraded_and_its_cursors_still_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (a, b, c) = ([5; KEY_LEN], [2; KEY_LEN], [9; KEY_LEN]);
        // As an earlier version wrote them: rows named by (publish_at, key data).
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut keys = txn.open_table(OLD_KEYS).unwrap();
                let mut known = txn.open_table(OLD_KNOWN).unwrap();
                for (tek, publish_at, expires_at) in
                    [(a, 100, 1000), (b, 100, 2000), (c, 200, 1000)]
                {
                    let mut stored = key(tek[0], expires_at);
                    stored.publish_at = publish_at;
                    let record = KeyRecord::from_key(&stored).encode_to_vec();
                    keys.insert((publish_at, tek), record.as_slice()).unwrap();
                    known.insert(tek, publish_at).unwrap();
                }
                let old_expiry = TableDefinition::<(u64, Tek), u64>::new("expiry");
                txn.open_table(old_expiry)
                    .unwrap()
                    .insert((1000, a), 100)
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let store = LocalStore::open(&path).unwrap();
        let range = PublishedRange {
            after: 0,
            through: 300,
            now: 60,
        };
        let read = |from: Option<KeyCursor>| {
            let store = store.clone();
            async move {
                let page = store
                    .read_published(range, from.as_ref(), 10)
                    .await
                    .unwrap();
                page.keys
                    .iter()
                    .map(|k| k.key.key_data[0])
                    .collect::<Vec<u8>>()
            }
        };
        assert_eq!(read(None).await, [2, 5, 9]);
        // Cursors of the earlier form, saved by a data-prep run before the upgrade.
        let old_cursor =
            |tek: [u8; KEY_LEN]| KeyCursor(format!("100 {}", URL_SAFE_NO_PAD.encode(tek)));
        assert_eq!(read(Some(old_cursor(b))).await, [5, 9]);
        assert_eq!(read(Some(old_cursor([3; KEY_LEN]))).await, [5, 9]);
        assert_eq!(read(Some(old_cursor([1; KEY_LEN]))).await, [2, 5, 9]);
        assert_eq!(read(Some(old_cursor([0xff; KEY_LEN]))).await, [9]);
        // Still known, and they expire when their records say.
        assert_eq!(store.count().await.unwrap().local, 3);
        assert_eq!(
            insert(&store, vec![key(9, 1000)]).await,
            Inserted::Stored(0)
        );
        assert_eq!(store.purge_expired(1000).await.unwrap(), 2);
        assert_eq!(read(None).await, [2]);
        drop(store);
        let db = Database::open(&path).unwrap();
        let tables: Vec<String> = db
            .begin_read()
            .unwrap()
            .list_tables()
            .unwrap()
            .map(|table| table.name().to_owned())
            .collect();
        for old in ["keys", "known", "expiry", "expiring"] {
            assert!(
                !tables.iter().any(|name| name == old),
                "{old} is still there"
            );
        }
    }
}
