//! Staged keys of [`LocalStore`](super::LocalStore): how a burst of uploads is taken without a
//! B-tree page written per key.
//!
//! The keys a batch of writes stores go, with their records, into one row of [`STAGED`],
//! appended in order, and their key data into memory. They are moved into the key tables
//! ([`KEYS`], the deduplication [`index`](super::index) and [`EXPIRING`]) later, in bulk: a part at a
//! time when the writer has nothing else to do, in every batch while too many wait, and all of
//! them before the key tables are read or changed otherwise
//! ([`LocalStore::settle`](super::LocalStore)). Deduplication sees staged keys as it sees
//! moved ones, so a key is stored once. Opening the store reads the staged rows' key data back.
//!
//! The code an upload consumes is staged likewise: its changed row goes into the batch's
//! [`STAGED_CODES`] row, of the same number, rather than into [`CODES`](super::CODES), where
//! codes lie at random and each would cost a page of its own; and into memory, where readers
//! of codes look first ([`StagedCodes`]). It reaches [`CODES`](super::CODES) when its row
//! moves.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use prost::Message as _;
use redb::ReadableTable;

use super::codec::{CodeRow, Expiring, Row, key_row};
use super::codes::read_code;
use super::index::{IndexDone, IndexView};
use super::writer::Tables;
use super::{STAGED, STAGED_CODES, Tek, next_key_row};
use crate::domain::key::KEY_LEN;
use crate::ports::StoreError;

/// A key on its way into the key tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct StagedKey {
    pub(super) tek: Tek,
    pub(super) publish_at: u64,
    pub(super) expires_at: u64,
    /// The encoded [`KeyRecord`](super::codec::KeyRecord).
    pub(super) record: Vec<u8>,
}

impl StagedKey {
    /// Appends the key to a [`STAGED`] row: key data, publish_at, expires_at (big endian), the
    /// record's length (2 bytes) and the record.
    fn encode(&self, row: &mut Vec<u8>) {
        row.extend_from_slice(&self.tek);
        row.extend_from_slice(&self.publish_at.to_be_bytes());
        row.extend_from_slice(&self.expires_at.to_be_bytes());
        row.extend_from_slice(&(self.record.len() as u16).to_be_bytes());
        row.extend_from_slice(&self.record);
    }

    /// The keys of a [`STAGED`] row.
    fn decode_all(mut row: &[u8]) -> Result<Vec<Self>, StoreError> {
        const HEAD: usize = KEY_LEN + 8 + 8 + 2;
        let mut keys = Vec::new();
        while !row.is_empty() {
            let broken = || StoreError::backend("a staged row is cut short");
            let head = row.get(..HEAD).ok_or_else(broken)?;
            let number = |at: usize| u64::from_be_bytes(head[at..at + 8].try_into().unwrap());
            let len = u16::from_be_bytes([head[HEAD - 2], head[HEAD - 1]]) as usize;
            let record = row.get(HEAD..HEAD + len).ok_or_else(broken)?;
            keys.push(Self {
                tek: head[..KEY_LEN].try_into().unwrap(),
                publish_at: number(KEY_LEN),
                expires_at: number(KEY_LEN + 8),
                record: record.to_vec(),
            });
            row = &row[HEAD + len..];
        }
        Ok(keys)
    }
}

/// Staged keys each table of their key data makes room for when it begins: 2^20 of
/// hashbrown's buckets at its load of 7/8, 33 MB of address space, of which only the pages its
/// keys touch take memory. A map grown as keys come rehashes every key each time it doubles,
/// and the writer waits meanwhile: 22 ms at 229,376 keys, in the middle of a burst of 20,000
/// uploads (docs/performance.md). So a table never grows: when it is full, the next begins
/// (see [`FixedRoomMap`]). Each large table is mapped from the system and given back whole
/// once its keys have moved, which the small tables of a map split in shards were not.
pub(super) const STAGED_KEYS_ROOM: usize = 917_504;

/// Likewise for the codes the burst's uploads consumed: tables of 2^16 buckets, 4 MB each.
const STAGED_CODES_ROOM: usize = 57_344;

/// A code's hash and its encoded [`CodeRow`], as a [`STAGED_CODES`] row holds it.
type CodeEntry = ([u8; 32], Vec<u8>);

/// Appends code rows to a [`STAGED_CODES`] row: each the code's hash, its row's length
/// (2 bytes, big endian), and the row.
fn encode_codes<'a>(codes: impl IntoIterator<Item = (&'a [u8; 32], &'a Vec<u8>)>) -> Vec<u8> {
    let mut row = Vec::new();
    for (hash, code) in codes {
        row.extend_from_slice(hash);
        row.extend_from_slice(&(code.len() as u16).to_be_bytes());
        row.extend_from_slice(code);
    }
    row
}

/// The code rows of a [`STAGED_CODES`] row.
fn decode_codes(mut row: &[u8]) -> Result<Vec<CodeEntry>, StoreError> {
    let mut codes = Vec::new();
    while !row.is_empty() {
        let broken = || StoreError::backend("a staged row of codes is cut short");
        let head = row.get(..34).ok_or_else(broken)?;
        let len = u16::from_be_bytes([head[32], head[33]]) as usize;
        let code = row.get(34..34 + len).ok_or_else(broken)?;
        codes.push((head[..32].try_into().unwrap(), code.to_vec()));
        row = &row[34 + len..];
    }
    Ok(codes)
}

/// The staged code rows as committed, shared with the readers of codes, who look here before
/// [`CODES`](super::CODES) (see [`read_code`]).
pub(super) type StagedCodes = Arc<RwLock<StagedCodeRows>>;

/// The staged code rows by code hash: the number of the [`STAGED_CODES`] row that holds each,
/// and the encoded [`CodeRow`].
pub(super) type StagedCodeRows = FixedRoomMap<[u8; 32], (u64, Vec<u8>), STAGED_CODES_ROOM>;

/// A map held in tables of `ROOM` entries each, oldest first: entries go into the newest, and
/// a new table begins when it is full, so that no table ever grows and rehashes what it holds.
/// Staged keys and code rows move oldest first, so the oldest table empties first and goes.
pub(super) struct FixedRoomMap<K, V, const ROOM: usize> {
    tables: Vec<HashMap<K, V>>,
}

impl<K, V, const ROOM: usize> Default for FixedRoomMap<K, V, ROOM> {
    fn default() -> Self {
        Self { tables: Vec::new() }
    }
}

impl<K: Eq + Hash, V, const ROOM: usize> FixedRoomMap<K, V, ROOM> {
    pub(super) fn get(&self, key: &K) -> Option<&V> {
        self.tables.iter().rev().find_map(|table| table.get(key))
    }

    fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    pub(super) fn len(&self) -> usize {
        self.tables.iter().map(HashMap::len).sum()
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &K> {
        self.tables.iter().flat_map(HashMap::keys)
    }

    fn insert(&mut self, key: K, value: V) {
        if let Some(held) = self.tables.iter_mut().find_map(|table| table.get_mut(&key)) {
            *held = value;
            return;
        }
        let table = match self.tables.last_mut() {
            Some(newest) if newest.len() < ROOM => newest,
            _ => {
                self.tables.push(HashMap::with_capacity(ROOM));
                self.tables.last_mut().expect("just pushed")
            }
        };
        table.insert(key, value);
    }

    fn remove(&mut self, key: &K) {
        let mut held = self.tables.iter_mut();
        if let Some(at) = held.position(|table| table.remove(key).is_some())
            && self.tables[at].is_empty()
        {
            // The memory of a burst goes back as it moves.
            self.tables.remove(at);
        }
    }
}

/// The key data of the staged keys, to publish_at and the [`STAGED`] row that holds the key.
type StagedKeys = FixedRoomMap<Tek, (u64, u64), STAGED_KEYS_ROOM>;

/// The staged keys and code rows as committed: the writer thread's own, changed only after
/// a commit.
#[derive(Default)]
pub(super) struct Staged {
    keys: StagedKeys,
    codes: StagedCodes,
    /// The numbers of the staged rows: of [`STAGED`], of [`STAGED_CODES`], or of both.
    rows: BTreeSet<u64>,
    next_row: u64,
    /// The newest row's number plus one, 0 when none is staged: for readers of the store.
    newest: Arc<AtomicU64>,
}

impl Staged {
    /// Reads back what the last process left staged.
    pub(super) fn load(txn: &redb::WriteTransaction) -> Result<Self, StoreError> {
        let mut staged = Self::default();
        let table = txn.open_table(STAGED).map_err(StoreError::backend)?;
        for entry in table.iter().map_err(StoreError::backend)? {
            let (row, keys) = entry.map_err(StoreError::backend)?;
            let row = row.value();
            for key in StagedKey::decode_all(keys.value())? {
                staged.keys.insert(key.tek, (key.publish_at, row));
            }
            staged.rows.insert(row);
        }
        let table = txn.open_table(STAGED_CODES).map_err(StoreError::backend)?;
        let mut codes = staged.codes.write().expect("not shared yet");
        for entry in table.iter().map_err(StoreError::backend)? {
            let (row, entries) = entry.map_err(StoreError::backend)?;
            let row = row.value();
            for (hash, code) in decode_codes(entries.value())? {
                codes.insert(hash, (row, code));
            }
            staged.rows.insert(row);
        }
        drop(codes);
        staged.next_row = staged.rows.last().map_or(0, |row| row + 1);
        staged.publish_newest();
        Ok(staged)
    }

    /// The staged code rows, for readers of codes on other threads.
    pub(super) fn codes(&self) -> StagedCodes {
        self.codes.clone()
    }

    /// The newest row staged, as the last commit left it, for readers on other threads.
    pub(super) fn newest(&self) -> Arc<AtomicU64> {
        self.newest.clone()
    }

    fn publish_newest(&self) {
        let newest = self.rows.last().map_or(0, |row| row + 1);
        self.newest.store(newest, Ordering::Release);
    }

    /// Keys staged.
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no row is staged, of keys or of codes.
    pub(super) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Takes what a committed batch did.
    pub(super) fn commit(&mut self, batch: Batch) {
        for row in &batch.moved_rows {
            self.rows.remove(row);
        }
        for tek in batch.moved.iter().chain(&batch.removed) {
            self.keys.remove(tek);
        }
        let mut codes = self.codes.write().expect("no panic while staging codes");
        for (hash, row) in batch.moved_codes {
            if codes.get(&hash).is_some_and(|(at, _)| *at == row) {
                codes.remove(&hash);
            }
        }
        if let Some(row) = batch.staged_row {
            for (tek, at) in batch.staged {
                self.keys.insert(tek, (at, row));
            }
            for (hash, code) in batch.staged_codes {
                codes.insert(hash, (row, code));
            }
            self.rows.insert(row);
            self.next_row = row + 1;
        }
        drop(codes);
        self.publish_newest();
    }
}

/// What a batch did to the staged keys and code rows, for [`Staged::commit`] once it is
/// committed.
#[derive(Default)]
pub(super) struct Batch {
    staged: Vec<(Tek, u64)>,
    staged_codes: BTreeMap<[u8; 32], Vec<u8>>,
    staged_row: Option<u64>,
    moved_rows: Vec<u64>,
    moved: HashSet<Tek>,
    moved_codes: Vec<([u8; 32], u64)>,
    removed: HashSet<Tek>,
}

/// The deduplication index, the staged keys and the staged code rows in a batch's write
/// transaction.
pub(super) struct Staging<'txn> {
    index: IndexView<'txn>,
    rows: redb::Table<'txn, u64, &'static [u8]>,
    code_rows: redb::Table<'txn, u64, &'static [u8]>,
    committed: &'txn Staged,
    /// Keys this batch stored, for its own [`STAGED`] row.
    new: BTreeMap<Tek, StagedKey>,
    batch: Batch,
}

impl<'txn> Staging<'txn> {
    pub(super) fn open(
        txn: &'txn redb::WriteTransaction,
        committed: &'txn Staged,
        index: IndexView<'txn>,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            index,
            rows: txn.open_table(STAGED).map_err(StoreError::backend)?,
            code_rows: txn.open_table(STAGED_CODES).map_err(StoreError::backend)?,
            committed,
            new: BTreeMap::new(),
            batch: Batch::default(),
        })
    }

    /// The publish_at of the key's first row, if the key is held (moved or staged).
    pub(super) fn known(&self, tek: &Tek) -> Result<Option<u64>, StoreError> {
        if let Some(key) = self.new.get(tek) {
            return Ok(Some(key.publish_at));
        }
        if let Some((at, _)) = self.committed.keys.get(tek)
            && !self.batch.removed.contains(tek)
        {
            return Ok(Some(*at));
        }
        Ok(self.row(tek)?.map(|(at, _)| at))
    }

    /// The key's first row in [`KEYS`](super::KEYS), if the key has moved there.
    pub(super) fn row(&self, tek: &Tek) -> Result<Option<Row>, StoreError> {
        self.index.get(tek)
    }

    /// Whether the key's first row is still staged rather than in [`KEYS`](super::KEYS).
    fn is_staged(&self, tek: &Tek) -> bool {
        self.new.contains_key(tek)
            || (self.committed.keys.contains_key(tek)
                && !self.batch.moved.contains(tek)
                && !self.batch.removed.contains(tek))
    }

    /// Keys this batch staged.
    pub(super) fn new_keys(&self) -> usize {
        self.new.len()
    }

    /// Stages a new key.
    pub(super) fn stage(&mut self, key: StagedKey) {
        self.new.insert(key.tek, key);
    }

    /// The code's row as this batch sees it: as the batch changed it, staged, or in `codes`.
    pub(super) fn code(
        &self,
        codes: &impl ReadableTable<[u8; 32], &'static [u8]>,
        hash: &[u8; 32],
    ) -> Result<Option<CodeRow>, StoreError> {
        match self.batch.staged_codes.get(hash) {
            Some(code) => CodeRow::decode(code.as_slice())
                .map(Some)
                .map_err(StoreError::backend),
            None => read_code(
                &self
                    .committed
                    .codes
                    .read()
                    .expect("no panic while staging codes"),
                codes,
                hash,
            ),
        }
    }

    /// Stages a code's changed row: it reaches [`CODES`](super::CODES) when its row moves.
    pub(super) fn stage_code(&mut self, hash: [u8; 32], code: &CodeRow) {
        self.batch.staged_codes.insert(hash, code.encode_to_vec());
    }

    /// Forgets a key of the deduplication index (its rows are the caller's to remove).
    pub(super) fn forget(&mut self, tek: Tek) -> Result<(), StoreError> {
        if self.new.remove(&tek).is_some() {
            return Ok(());
        }
        if self.committed.keys.contains_key(&tek) {
            self.batch.removed.insert(tek);
        }
        self.index.remove(tek);
        Ok(())
    }

    /// Ends the batch: writes the keys it staged as one [`STAGED`] row and the code rows it
    /// staged as the [`STAGED_CODES`] row of the same number, and its changes of the index,
    /// and returns what [`Staged::commit`] and
    /// [`Unindexed::commit`](super::index::Unindexed::commit) take once the transaction is
    /// committed.
    pub(super) fn finish(mut self) -> Result<(Batch, IndexDone), StoreError> {
        let number = self.committed.next_row;
        if !self.new.is_empty() {
            let mut row = Vec::new();
            for key in self.new.values() {
                key.encode(&mut row);
            }
            self.rows
                .insert(number, row.as_slice())
                .map_err(StoreError::backend)?;
            self.batch.staged_row = Some(number);
            self.batch.staged = self
                .new
                .into_values()
                .map(|key| (key.tek, key.publish_at))
                .collect();
        }
        if !self.batch.staged_codes.is_empty() {
            let row = encode_codes(&self.batch.staged_codes);
            self.code_rows
                .insert(number, row.as_slice())
                .map_err(StoreError::backend)?;
            self.batch.staged_row = Some(number);
        }
        Ok((self.batch, self.index.finish()?))
    }
}

/// Moves the keys of the oldest staged rows, up to row `through` if given, into the key
/// tables, until at least `max_keys` have gone. Returns whether rows up to `through` remain.
pub(super) fn move_oldest(
    tables: &mut Tables,
    max_keys: usize,
    through: Option<u64>,
) -> Result<bool, StoreError> {
    let committed = tables.staging.committed;
    let done: HashSet<u64> = tables.staging.batch.moved_rows.iter().copied().collect();
    let mut waiting = committed
        .rows
        .iter()
        .filter(|row| !done.contains(row))
        .take_while(|row| through.is_none_or(|through| **row <= through));
    let mut keys = Vec::new();
    for &row in waiting.by_ref() {
        keys.extend(take_row(tables, row)?);
        if keys.len() >= max_keys {
            break;
        }
    }
    let more = waiting.next().is_some();
    write_keys(tables, keys)?;
    Ok(more)
}

/// Moves the staged keys with the given key data, and the others staged in the same rows,
/// into the key tables, this batch's own included: for a write that changes their rows.
pub(super) fn move_keys<'a>(
    tables: &mut Tables,
    teks: impl IntoIterator<Item = &'a Tek>,
) -> Result<(), StoreError> {
    let staging = &mut tables.staging;
    let committed = staging.committed;
    let (mut keys, mut rows) = (Vec::new(), BTreeSet::new());
    for tek in teks {
        if let Some(key) = staging.new.remove(tek) {
            keys.push(key);
        } else if staging.is_staged(tek) {
            rows.insert(committed.keys.get(tek).expect("a staged key").1);
        }
    }
    for row in rows {
        keys.extend(take_row(tables, row)?);
    }
    write_keys(tables, keys)
}

/// Removes a staged row, writes its code rows into [`CODES`](super::CODES) (those not staged
/// again since), and returns its keys still staged: not removed since, and not staged again in
/// a later row.
fn take_row(tables: &mut Tables, row: u64) -> Result<Vec<StagedKey>, StoreError> {
    let staging = &mut tables.staging;
    let keys = staging.rows.remove(row).map_err(StoreError::backend)?;
    let codes = staging.code_rows.remove(row).map_err(StoreError::backend)?;
    if keys.is_none() && codes.is_none() {
        return Err(StoreError::backend("a staged row went missing"));
    }
    let keys = match keys {
        Some(keys) => StagedKey::decode_all(keys.value())?,
        None => Vec::new(),
    };
    let codes = match codes {
        Some(codes) => decode_codes(codes.value())?,
        None => Vec::new(),
    };
    staging.batch.moved_rows.push(row);
    let staged_codes = staging
        .committed
        .codes
        .read()
        .expect("no panic while staging codes");
    for (hash, code) in codes {
        if staged_codes.get(&hash).is_some_and(|(at, _)| *at == row) {
            tables
                .codes
                .insert(hash, code.as_slice())
                .map_err(StoreError::backend)?;
            staging.batch.moved_codes.push((hash, row));
        }
    }
    drop(staged_codes);
    let keys: Vec<StagedKey> = keys
        .into_iter()
        .filter(|key| {
            staging.committed.keys.get(&key.tek) == Some(&(key.publish_at, row))
                && !staging.batch.removed.contains(&key.tek)
        })
        .collect();
    staging.batch.moved.extend(keys.iter().map(|key| key.tek));
    Ok(keys)
}

/// Writes new keys into the key tables: each at the end of its publish_at in
/// [`KEYS`](super::KEYS), in the order they came, and into the deduplication index.
fn write_keys(tables: &mut Tables, mut keys: Vec<StagedKey>) -> Result<(), StoreError> {
    // Stable: the keys of one publish_at keep their order.
    keys.sort_by_key(|key| key.publish_at);
    let mut rows: Vec<Row> = Vec::with_capacity(keys.len());
    for key in &keys {
        let row = next_key_row(&tables.keys, key.publish_at, rows.last().copied())?;
        tables
            .keys
            .insert(row, key_row(&key.tek, &key.record).as_slice())
            .map_err(StoreError::backend)?;
        rows.push(row);
    }
    let expiring = keys
        .iter()
        .zip(&rows)
        .map(|(k, row)| (k.expires_at, *row, k.tek));
    add_expiring(&mut tables.expiring, expiring)?;
    for (key, row) in keys.iter().zip(rows) {
        tables.staging.index.insert(key.tek, row);
    }
    Ok(())
}

/// Adds keys, given as (expires_at, row, key data), to [`EXPIRING`](super::EXPIRING):
/// a row per expiry time. A row of an earlier write may have the same name (a revision expires
/// with its key, and may come first in its write), so it is added to, never replaced.
pub(super) fn add_expiring(
    table: &mut redb::Table<(u64, Tek), &'static [u8]>,
    keys: impl IntoIterator<Item = (u64, Row, Tek)>,
) -> Result<(), StoreError> {
    let mut by_expiry = BTreeMap::<u64, Expiring>::new();
    for (expires_at, row, tek) in keys {
        by_expiry.entry(expires_at).or_default().push(row, tek);
    }
    for (expires_at, keys) in by_expiry {
        let name = (expires_at, keys.first());
        let mut row = match table.get(name).map_err(StoreError::backend)? {
            Some(earlier) => earlier.value().to_vec(),
            None => Vec::new(),
        };
        row.extend_from_slice(&keys.0);
        table
            .insert(name, row.as_slice())
            .map_err(StoreError::backend)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use redb::{Database, ReadableTableMetadata as _};

    use super::*;
    use crate::adapters::local::store::index::Unindexed;
    use crate::adapters::local::store::{EXPIRING, KEYS};

    #[test]
    fn the_staged_keys_fill_a_table_before_the_next_begins_and_a_table_goes_once_its_keys_moved() {
        let tek = |n: usize| {
            let mut tek = [0; KEY_LEN];
            tek[..8].copy_from_slice(&(n as u64).to_le_bytes());
            tek
        };
        let mut keys = StagedKeys::default();
        for n in 0..=STAGED_KEYS_ROOM {
            keys.insert(tek(n), (0, n as u64));
        }
        assert_eq!(keys.tables.len(), 2);
        assert_eq!(
            keys.tables[0].capacity(),
            STAGED_KEYS_ROOM,
            "the full table never grew"
        );
        assert_eq!(keys.len(), STAGED_KEYS_ROOM + 1);

        keys.insert(tek(0), (1, 9));
        assert_eq!(
            keys.get(&tek(0)),
            Some(&(1, 9)),
            "staged again where it was"
        );
        assert_eq!(keys.len(), STAGED_KEYS_ROOM + 1);

        for n in 0..STAGED_KEYS_ROOM {
            keys.remove(&tek(n));
        }
        assert_eq!(
            keys.tables.len(),
            1,
            "the oldest table went once its keys moved"
        );
        assert!(keys.contains_key(&tek(STAGED_KEYS_ROOM)));
        keys.remove(&tek(STAGED_KEYS_ROOM));
        assert!(keys.tables.is_empty());
        assert_eq!(keys.len(), 0);
    }

    fn key(byte: u8, publish_at: u64) -> StagedKey {
        StagedKey {
            tek: [byte; KEY_LEN],
            publish_at,
            expires_at: 1_000 + u64::from(byte % 2),
            record: vec![byte; 1 + byte as usize],
        }
    }

    /// A store's file as its writer thread holds it: the staged keys and the index's changes
    /// in memory besides.
    struct Held {
        path: std::path::PathBuf,
        db: Database,
        staged: Staged,
        unindexed: Unindexed,
    }

    impl Held {
        fn open(path: &std::path::Path) -> Self {
            let db = Database::create(path).unwrap();
            let txn = db.begin_write().unwrap();
            let unindexed = Unindexed::open(path, &txn, false).unwrap();
            let staged = Staged::load(&txn).unwrap();
            txn.commit().unwrap();
            Self {
                path: path.to_owned(),
                db,
                staged,
                unindexed,
            }
        }

        fn reopened(self) -> Self {
            let path = self.path.clone();
            drop(self);
            Self::open(&path)
        }

        /// Runs `work` in one committed transaction, as the writer runs a batch.
        fn batch(&mut self, work: impl FnOnce(&mut Tables)) {
            let txn = self.db.begin_write().unwrap();
            let (done, index) = {
                let view = self.unindexed.view(&txn).unwrap();
                let mut tables = Tables::open(&txn, &self.staged, view).unwrap();
                work(&mut tables);
                tables.staging.finish().unwrap()
            };
            txn.commit().unwrap();
            self.staged.commit(done);
            self.unindexed.commit(index);
        }

        /// Rows of KEYS, keys indexed, rows of EXPIRING and STAGED.
        fn rows(&self) -> [u64; 4] {
            let txn = self.db.begin_write().unwrap();
            [
                txn.open_table(KEYS).unwrap().len().unwrap(),
                self.unindexed.indexed() as u64,
                txn.open_table(EXPIRING).unwrap().len().unwrap(),
                txn.open_table(STAGED).unwrap().len().unwrap(),
            ]
        }
    }

    fn known_at(tables: &Tables, bytes: std::ops::RangeInclusive<u8>) -> Vec<Option<u64>> {
        bytes
            .map(|byte| tables.staging.known(&[byte; KEY_LEN]).unwrap())
            .collect()
    }

    #[test]
    fn a_staged_key_is_known_from_its_batch_on_and_moves_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut held = Held::open(&dir.path().join("db"));
        held.batch(|tables| {
            tables.staging.stage(key(1, 10));
            tables.staging.stage(key(2, 20));
            // Later writes of the same batch see it.
            assert_eq!(known_at(tables, 1..=2), [Some(10), Some(20)]);
        });
        held.batch(|tables| tables.staging.stage(key(3, 30)));
        // One row per batch, nothing in the key tables yet.
        assert_eq!(held.rows(), [0, 0, 0, 2]);
        // A restart reads them back.
        let mut held = held.reopened();
        assert_eq!(held.staged.len(), 3);
        held.batch(|tables| {
            assert_eq!(known_at(tables, 1..=3), [Some(10), Some(20), Some(30)]);
            // The oldest row is a part of at least one key; one row remains.
            assert!(move_oldest(tables, 1, None).unwrap());
            tables.staging.stage(key(4, 40));
        });
        assert_eq!(held.rows(), [2, 2, 2, 2]);
        assert_eq!(held.staged.len(), 2);
        // Up to a row: the rows after it stay.
        let through = held.staged.rows.first().copied();
        held.batch(|tables| {
            assert!(!move_oldest(tables, 1, through).unwrap());
        });
        assert_eq!(held.rows(), [3, 3, 3, 1]);
        held.batch(|tables| {
            tables.staging.stage(key(5, 50));
            tables.staging.stage(key(6, 60));
            // Key 4's row, and key 5 of this very batch; key 6 stays staged.
            move_keys(tables, &[[4; KEY_LEN], [5; KEY_LEN], [9; KEY_LEN]]).unwrap();
        });
        assert_eq!(held.rows(), [5, 5, 5, 1]);
        held.batch(|tables| {
            assert!(!move_oldest(tables, usize::MAX, None).unwrap());
        });
        held = held.reopened();
        assert_eq!(held.staged.len(), 0);
        held.batch(|tables| {
            assert_eq!(
                known_at(tables, 1..=7),
                [
                    Some(10),
                    Some(20),
                    Some(30),
                    Some(40),
                    Some(50),
                    Some(60),
                    None
                ]
            );
            let row = tables.staging.row(&[4; KEY_LEN]).unwrap().unwrap();
            assert_eq!(row.0, 40);
            let value = tables.keys.get(row).unwrap().unwrap();
            assert_eq!(value.value(), key_row(&[4; KEY_LEN], &key(4, 40).record));
        });
    }

    fn code(inserted: Option<u32>) -> CodeRow {
        CodeRow {
            issued_at: 1,
            expires_at: 100,
            used_by: inserted.map(|_| vec![7]),
            inserted: inserted.unwrap_or(0),
            ..CodeRow::default()
        }
    }

    /// The code's row in the code table alone, and as the batch sees it.
    fn code_rows(tables: &Tables, hash: &[u8; 32]) -> [Option<CodeRow>; 2] {
        [
            read_code(&StagedCodeRows::default(), &tables.codes, hash).unwrap(),
            tables.staging.code(&tables.codes, hash).unwrap(),
        ]
    }

    #[test]
    fn a_consumed_code_is_staged_read_first_and_reaches_the_codes_with_its_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut held = Held::open(&dir.path().join("db"));
        let (a, b) = ([1u8; 32], [2u8; 32]);
        held.batch(|tables| {
            for hash in [a, b] {
                let row = code(None).encode_to_vec();
                tables.codes.insert(hash, row.as_slice()).unwrap();
            }
        });
        // A batch of keys consumes code a, a batch without keys code b.
        held.batch(|tables| {
            tables.staging.stage(key(1, 10));
            tables.staging.stage_code(a, &code(Some(1)));
            assert_eq!(
                code_rows(tables, &a),
                [Some(code(None)), Some(code(Some(1)))]
            );
        });
        held.batch(|tables| tables.staging.stage_code(b, &code(Some(0))));
        // Staged, not in the code table, and read back after a restart.
        let mut held = held.reopened();
        assert_eq!(held.staged.codes().read().unwrap().len(), 2);
        held.batch(|tables| {
            assert_eq!(
                code_rows(tables, &b),
                [Some(code(None)), Some(code(Some(0)))]
            );
            // Changed again in a later row: the earlier row's move leaves the code table be.
            tables.staging.stage_code(a, &code(Some(2)));
        });
        held.batch(|tables| {
            assert!(move_oldest(tables, 1, None).unwrap());
            assert_eq!(
                code_rows(tables, &a),
                [Some(code(None)), Some(code(Some(2)))]
            );
        });
        held.batch(|tables| {
            assert!(!move_oldest(tables, usize::MAX, None).unwrap());
        });
        assert!(held.staged.is_empty());
        assert_eq!(held.staged.codes().read().unwrap().len(), 0);
        held.batch(|tables| {
            assert_eq!(
                code_rows(tables, &a),
                [Some(code(Some(2))), Some(code(Some(2)))]
            );
            assert_eq!(
                code_rows(tables, &b),
                [Some(code(Some(0))), Some(code(Some(0)))]
            );
            assert_eq!(tables.staging.code_rows.len().unwrap(), 0);
        });
    }

    #[test]
    fn a_forgotten_key_is_forgotten_wherever_it_waited() {
        let dir = tempfile::tempdir().unwrap();
        let mut held = Held::open(&dir.path().join("db"));
        held.batch(|tables| {
            tables.staging.stage(key(1, 10));
            tables.staging.stage(key(2, 10));
        });
        held.batch(|tables| {
            move_oldest(tables, usize::MAX, None).unwrap();
        });
        held.batch(|tables| {
            tables.staging.stage(key(3, 10));
            tables.staging.stage(key(4, 10));
        });
        held.batch(|tables| {
            tables.staging.stage(key(5, 10));
            // Moved, staged, and staged in this very batch.
            for byte in [1, 3, 5] {
                tables.staging.forget([byte; KEY_LEN]).unwrap();
            }
            assert_eq!(
                known_at(tables, 1..=5),
                [None, Some(10), None, Some(10), None]
            );
        });
        // Stored again after it was forgotten: known with its new row, also once moved.
        held.batch(|tables| tables.staging.stage(key(3, 50)));
        held.batch(|tables| {
            move_oldest(tables, usize::MAX, None).unwrap();
        });
        held.batch(|tables| {
            assert_eq!(
                known_at(tables, 1..=5),
                [None, Some(10), Some(50), Some(10), None]
            );
        });
        // The forgotten key 1's row is the caller's to remove; the staged key 3 of 10 never
        // reached the key tables.
        assert_eq!(held.rows()[..2], [4, 3]);
    }
}
