//! The deduplication index of [`LocalStore`](super::LocalStore) (key data to the key's first
//! row) in a file of its own, written by a thread of its own.
//!
//! Key data is random, so every change of the index falls on a page of its own, and a
//! transaction rewrites each page it changes: the index costs a write the more, the more keys it
//! holds (14 µs a key among 4M in parts of 65,536, 3.4 µs in parts of 262,144;
//! docs/performance.md). In the store's file it held up every upload behind a moving part.
//! Here, the writer of the store's file only appends each batch's changes of the index, as one
//! row of [`INDEX_LOG`], in the same transaction as the rows they name, and keeps them in memory
//! ([`Unindexed`]) until this file has them; the index's own thread applies them in large
//! parts, in key order, and the writer then deletes the rows it applied. A lookup sees the
//! batch's own changes, then [`Unindexed`], then this file, which it reads only if the
//! [`Filter`] of the keys the file holds lets the key through: most keys uploaded are new, and
//! the file's pages they would be looked up on are past its cache once it holds millions.
//!
//! Nothing is lost in a crash: a change is in the store's file from its batch's commit on, and
//! its log row is deleted only after this file has committed it. The index is derived from the
//! key rows: a store without its index file, with an index file of another time (a copy of the
//! data directory taken while it ran), or of an earlier version, whose index was in the store's
//! file, has it rebuilt when it is opened.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use fastbloom::AtomicBloomFilter;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata as _, TableDefinition,
    TableHandle,
};

use super::codec::{Row, read_key_row};
use super::{KEYS, Tek};
use crate::domain::key::KEY_LEN;
use crate::ports::StoreError;

/// In the index file: key data to the key's first row in [`KEYS`].
const KNOWN: TableDefinition<Tek, Row> = TableDefinition::new("known_keys");
/// In the index file: [`APPLIED`], the number of the next [`INDEX_LOG`] row to apply.
const STATE: TableDefinition<&str, u64> = TableDefinition::new("state");
const APPLIED: &str = "applied";
/// In the store's file: changes of the index not yet applied to the index file, one row per
/// batch of writes, numbered in order (see [`Change`]).
const INDEX_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("index_log");
/// In the store's file: [`LOGGED`], one past the newest [`INDEX_LOG`] row written, and
/// [`DELETED`], the rows before which were deleted, applied. An index file whose next row to
/// apply is not between the two is not this store's as it is now (a copy of one of the files
/// from another time), and is rebuilt.
const LOG_STATE: TableDefinition<&str, u64> = TableDefinition::new("index_log_state");
const LOGGED: &str = "logged";
const DELETED: &str = "deleted";
/// The index of earlier versions, in the store's file: dropped, and rebuilt in the index file.
const OLD_INDEX: &str = "known_keys";

/// Changes the index's thread applies in one transaction: large, since a part of random keys
/// rewrites most pages of the index it falls on, the more of them the larger the part.
const APPLY_PART: usize = 262_144;

/// How long the index's thread waits for a whole part before it applies what there is.
const APPLY_AFTER: Duration = Duration::from_secs(1);

/// Changes held in memory past which the store's writer waits for the index's thread: how much
/// memory a burst may take (some 80 bytes a change) while the index falls behind.
const MAX_UNINDEXED: usize = 2_000_000;

/// Bytes of the index file's page cache.
const CACHE_BYTES: usize = 16 << 20;

/// Share of the keys the index file has not that its [`Filter`] lets through to a read of the
/// file anyway.
const FILTER_FALSE_POSITIVES: f64 = 0.01;

/// Keys a [`Filter`] takes besides half the keys the file held when it was built, before it is
/// built anew.
const FILTER_ROOM: usize = 1 << 16;

/// A change of the index: the key's first row, or `None` when the key is forgotten. In an
/// [`INDEX_LOG`] row: key data, a byte (1 with a row, 0 without), publish_at and number (big
/// endian, zero without a row).
type Change = (Tek, Option<Row>);
const CHANGE_LEN: usize = KEY_LEN + 1 + 8 + 8;

fn encode(changes: &[Change]) -> Vec<u8> {
    let mut row = Vec::with_capacity(changes.len() * CHANGE_LEN);
    for (tek, first) in changes {
        let (publish_at, number) = first.unwrap_or_default();
        row.extend_from_slice(tek);
        row.push(u8::from(first.is_some()));
        row.extend_from_slice(&publish_at.to_be_bytes());
        row.extend_from_slice(&number.to_be_bytes());
    }
    row
}

fn decode(row: &[u8]) -> Result<impl Iterator<Item = Change> + '_, StoreError> {
    if !row.len().is_multiple_of(CHANGE_LEN) {
        return Err(StoreError::backend("an index log row is cut short"));
    }
    Ok(row.chunks_exact(CHANGE_LEN).map(|change| {
        let number = |at: usize| u64::from_be_bytes(change[at..at + 8].try_into().unwrap());
        let tek = change[..KEY_LEN].try_into().unwrap();
        let first = (change[KEY_LEN] == 1).then(|| (number(KEY_LEN + 1), number(KEY_LEN + 9)));
        (tek, first)
    }))
}

/// The index file's path beside the store's: `enfeed.redb` has `enfeed.index.redb`.
fn index_path(store: &Path) -> PathBuf {
    store.with_extension("index.redb")
}

/// Key data the index file may hold: every key it holds, and a few it has not
/// ([`FILTER_FALSE_POSITIVES`]; a Bloom filter, about 10 bits a key). Keys forgotten stay in
/// it, so it is built anew from the file once it has taken as many keys as it has room for.
struct Filter {
    bloom: AtomicBloomFilter,
    /// Keys it takes before it is built anew.
    room: usize,
    added: AtomicUsize,
}

impl Filter {
    fn new(held: usize) -> Self {
        let room = held / 2 + FILTER_ROOM;
        Self {
            bloom: AtomicBloomFilter::with_false_pos(FILTER_FALSE_POSITIVES)
                .expected_items(held + room),
            room,
            added: AtomicUsize::new(0),
        }
    }

    fn add(&self, tek: &Tek) {
        self.bloom.insert(tek);
        self.added.fetch_add(1, Ordering::Relaxed);
    }

    fn is_full(&self) -> bool {
        self.added.load(Ordering::Relaxed) > self.room
    }
}

/// The index file, the next [`INDEX_LOG`] row its thread applies (every row before it is in the
/// file), and the file's [`Filter`]. Cheap to clone.
#[derive(Clone)]
struct IndexFile {
    file: Arc<Database>,
    applied: Arc<AtomicU64>,
    /// Built by the index's thread when it starts, and again when it is full; until then every
    /// lookup reads the file. Keys are added before the file commits them.
    filter: Arc<RwLock<Option<Arc<Filter>>>>,
}

impl IndexFile {
    fn filter(&self) -> Option<Arc<Filter>> {
        self.filter.read().expect("no panic while building").clone()
    }

    /// Builds the [`Filter`] from the keys the file holds, if there is none or it is full.
    /// Only the index's thread writes the file, and it builds the filter, so no key is applied
    /// meanwhile.
    fn refresh_filter(&self) -> Result<(), StoreError> {
        if self.filter().is_some_and(|filter| !filter.is_full()) {
            return Ok(());
        }
        let started = Instant::now();
        let known = self.read_known()?;
        let held = match &known {
            Some(known) => known.len().map_err(StoreError::backend)? as usize,
            None => 0,
        };
        let filter = Filter::new(held);
        if let Some(known) = known {
            for entry in known.iter().map_err(StoreError::backend)? {
                let (tek, _) = entry.map_err(StoreError::backend)?;
                filter.bloom.insert(&tek.value());
            }
        }
        *self.filter.write().expect("no panic while building") = Some(Arc::new(filter));
        tracing::debug!(
            keys = held,
            build_us = started.elapsed().as_micros() as u64,
            "index filter built"
        );
        Ok(())
    }

    /// The index as the file holds it now, if it holds one: a read of its own.
    fn read_known(&self) -> Result<Option<redb::ReadOnlyTable<Tek, Row>>, StoreError> {
        let txn = self.file.begin_read().map_err(StoreError::backend)?;
        match txn.open_table(KNOWN) {
            Ok(known) => Ok(Some(known)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(StoreError::backend(e)),
        }
    }

    fn read_applied(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.file.begin_read().map_err(StoreError::backend)?;
        match txn.open_table(STATE) {
            Ok(state) => Ok(state
                .get(APPLIED)
                .map_err(StoreError::backend)?
                .map(|v| v.value())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(StoreError::backend(e)),
        }
    }

    /// Writes the index anew from the key rows, a part at a time, and marks every
    /// [`INDEX_LOG`] row before `next` applied. A revision is a later row of a key indexed
    /// already, so it is left out.
    fn rebuild(&self, store: &redb::WriteTransaction, next: u64) -> Result<(), StoreError> {
        let keys = store.open_table(KEYS).map_err(StoreError::backend)?;
        let clear = self.file.begin_write().map_err(StoreError::backend)?;
        clear.delete_table(KNOWN).map_err(StoreError::backend)?;
        clear.delete_table(STATE).map_err(StoreError::backend)?;
        clear.commit().map_err(StoreError::backend)?;
        let mut rows = keys.iter().map_err(StoreError::backend)?;
        let mut part = Vec::new();
        loop {
            part.clear();
            for entry in rows.by_ref() {
                let (row, value) = entry.map_err(StoreError::backend)?;
                let (tek, record) = read_key_row(value.value())?;
                if !record.revision {
                    part.push((tek, Some(row.value())));
                }
                if part.len() == APPLY_PART {
                    break;
                }
            }
            if part.is_empty() {
                break;
            }
            self.write(&mut part, None)?;
        }
        self.write(&mut part, Some(next))?;
        self.applied.store(next, Ordering::Release);
        Ok(())
    }

    /// Writes changes in one transaction, in key order (the changes of one key keep their
    /// order), with the next log row to apply, if given.
    fn write(&self, changes: &mut [Change], applied: Option<u64>) -> Result<(), StoreError> {
        changes.sort_by_key(|(tek, _)| *tek);
        let filter = self.filter();
        let txn = self.file.begin_write().map_err(StoreError::backend)?;
        {
            let mut known = txn.open_table(KNOWN).map_err(StoreError::backend)?;
            for (tek, first) in changes.iter() {
                match first {
                    Some(row) => {
                        if let Some(filter) = &filter {
                            filter.add(tek);
                        }
                        known.insert(tek, row).map(drop)
                    }
                    None => known.remove(tek).map(drop),
                }
                .map_err(StoreError::backend)?;
            }
            let mut state = txn.open_table(STATE).map_err(StoreError::backend)?;
            if let Some(applied) = applied {
                state
                    .insert(APPLIED, applied)
                    .map_err(StoreError::backend)?;
            }
        }
        txn.commit().map_err(StoreError::backend)
    }

    /// The index's thread: applies [`INDEX_LOG`] rows in parts of [`APPLY_PART`] changes, or
    /// what there is after [`APPLY_AFTER`] without a whole part. `waiting`: changes logged.
    fn run(&self, store: &Database, woken: &mpsc::Receiver<usize>, mut waiting: usize) {
        self.refresh_filter_or_warn();
        loop {
            if waiting < APPLY_PART {
                match woken.recv_timeout(APPLY_AFTER) {
                    Ok(logged) => {
                        waiting += logged;
                        continue;
                    }
                    Err(RecvTimeoutError::Timeout) if waiting == 0 => continue,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            while let Ok(logged) = woken.try_recv() {
                waiting += logged;
            }
            match self.apply(store) {
                Ok(applied) => {
                    waiting = waiting.saturating_sub(applied);
                    self.refresh_filter_or_warn();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "applying changes to the index failed; it is tried again");
                    std::thread::sleep(APPLY_AFTER);
                }
            }
        }
    }

    /// The index's thread builds its [`Filter`] when it starts and after applying a part; if a
    /// build fails, lookups go on with the filter before (or read the file, without one).
    fn refresh_filter_or_warn(&self) {
        if let Err(e) = self.refresh_filter() {
            tracing::warn!(error = %e, "building the index's filter failed; it is tried again");
        }
    }

    /// Applies the next [`INDEX_LOG`] rows of the store, at least [`APPLY_PART`] changes if as
    /// many wait; returns how many changes it applied.
    fn apply(&self, store: &Database) -> Result<usize, StoreError> {
        let from = self.applied.load(Ordering::Acquire);
        let txn = store.begin_read().map_err(StoreError::backend)?;
        let log = txn.open_table(INDEX_LOG).map_err(StoreError::backend)?;
        let mut changes = Vec::new();
        let mut next = from;
        for entry in log.range(from..).map_err(StoreError::backend)? {
            let (row, logged) = entry.map_err(StoreError::backend)?;
            changes.extend(decode(logged.value())?);
            next = row.value() + 1;
            if changes.len() >= APPLY_PART {
                break;
            }
        }
        if next == from {
            return Ok(0);
        }
        let started = Instant::now();
        self.write(&mut changes, Some(next))?;
        self.applied.store(next, Ordering::Release);
        tracing::debug!(
            changes = changes.len(),
            write_us = started.elapsed().as_micros() as u64,
            "index changes applied"
        );
        Ok(changes.len())
    }
}

/// The changes of the index the index file does not have yet, as the store's writer thread
/// knows them (committed batches only), and the index file to read the rest from.
pub(super) struct Unindexed {
    file: IndexFile,
    /// Each key's latest change not yet applied, and the [`INDEX_LOG`] row that holds it.
    changes: HashMap<Tek, (Option<Row>, u64)>,
    /// The key data of each [`INDEX_LOG`] row not yet applied.
    rows: BTreeMap<u64, Vec<Tek>>,
    next_row: u64,
    /// The [`INDEX_LOG`] rows before this one are deleted.
    deleted: u64,
}

impl Unindexed {
    /// Opens the index file beside the store's file at `store_path` (and rebuilds the index
    /// from [`KEYS`] if the file is new, if the store kept its index itself, or if `rebuild`),
    /// and reads back the changes it has not applied. `txn` is the store's opening transaction.
    pub(super) fn open(
        store_path: &Path,
        txn: &redb::WriteTransaction,
        rebuild: bool,
    ) -> Result<Self, StoreError> {
        let path = index_path(store_path);
        let file = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(StoreError::backend)?;
        super::super::fs::owner_only(&path).map_err(StoreError::backend)?;
        let mut unindexed = Self {
            file: IndexFile {
                file: Arc::new(file),
                applied: Arc::default(),
                filter: Arc::default(),
            },
            changes: HashMap::new(),
            rows: BTreeMap::new(),
            next_row: 0,
            deleted: 0,
        };
        let kept_before = txn
            .list_tables()
            .map_err(StoreError::backend)?
            .any(|table| table.name() == OLD_INDEX);
        if kept_before {
            txn.delete_table(TableDefinition::<Tek, Row>::new(OLD_INDEX))
                .map_err(StoreError::backend)?;
        }
        let mut log = txn.open_table(INDEX_LOG).map_err(StoreError::backend)?;
        let mut state = txn.open_table(LOG_STATE).map_err(StoreError::backend)?;
        let read = |name| -> Result<Option<u64>, StoreError> {
            Ok(state
                .get(name)
                .map_err(StoreError::backend)?
                .map(|v| v.value()))
        };
        let (logged, deleted) = (read(LOGGED)?, read(DELETED)?.unwrap_or(0));
        let applied = match unindexed.file.read_applied()? {
            Some(applied)
                if !kept_before
                    && !rebuild
                    && deleted <= applied
                    && logged.is_none_or(|logged| applied <= logged) =>
            {
                applied
            }
            // Every change logged so far is in the key rows the index is rebuilt from.
            _ => {
                let last = log.last().map_err(StoreError::backend)?;
                let next = last.map_or(0, |(row, _)| row.value() + 1);
                let next = next.max(logged.unwrap_or(0)).max(deleted);
                unindexed.file.rebuild(txn, next)?;
                next
            }
        };
        log.retain_in(..applied, |_, _| false)
            .map_err(StoreError::backend)?;
        for entry in log.iter().map_err(StoreError::backend)? {
            let (row, changes) = entry.map_err(StoreError::backend)?;
            let changes: Vec<Change> = decode(changes.value())?.collect();
            unindexed.add(row.value(), changes);
        }
        unindexed.next_row = unindexed.next_row.max(applied);
        unindexed.deleted = applied;
        state
            .insert(LOGGED, unindexed.next_row)
            .map_err(StoreError::backend)?;
        state
            .insert(DELETED, applied)
            .map_err(StoreError::backend)?;
        unindexed.file.applied.store(applied, Ordering::Release);
        Ok(unindexed)
    }

    fn add(&mut self, row: u64, changes: Vec<Change>) {
        let mut teks = Vec::with_capacity(changes.len());
        for (tek, first) in changes {
            self.changes.insert(tek, (first, row));
            teks.push(tek);
        }
        self.rows.insert(row, teks);
        self.next_row = row + 1;
    }

    /// Keys indexed: in the index file or among the changes held in memory.
    #[cfg(test)]
    pub(super) fn indexed(&self) -> usize {
        let mut known: HashMap<Tek, Option<Row>> = match self.file.read_known().unwrap() {
            Some(table) => table
                .iter()
                .unwrap()
                .map(|entry| {
                    let (tek, row) = entry.unwrap();
                    (tek.value(), Some(row.value()))
                })
                .collect(),
            None => HashMap::new(),
        };
        known.extend(self.changes.iter().map(|(tek, (first, _))| (*tek, *first)));
        known.values().filter(|first| first.is_some()).count()
    }

    /// Changes held in memory.
    pub(super) fn len(&self) -> usize {
        self.changes.len()
    }

    /// Forgets the changes the index file has applied since, and returns the number of the
    /// first [`INDEX_LOG`] row it has not: the rows before it are to be deleted.
    fn catch_up(&mut self) -> u64 {
        let applied = self.file.applied.load(Ordering::Acquire);
        while let Some(entry) = self.rows.first_entry()
            && *entry.key() < applied
        {
            let (row, teks) = entry.remove_entry();
            for tek in teks {
                if self.changes.get(&tek).is_some_and(|(_, at)| *at == row) {
                    self.changes.remove(&tek);
                }
            }
        }
        if self.changes.is_empty() && self.changes.capacity() > 0 {
            // The memory of a burst goes back once it is applied.
            self.changes = HashMap::new();
        }
        applied
    }

    /// While more than [`MAX_UNINDEXED`] changes wait in memory, waits for the index's thread.
    pub(super) fn wait_while_full(&mut self) {
        if self.len() <= MAX_UNINDEXED {
            return;
        }
        let started = std::time::Instant::now();
        while self.len() > MAX_UNINDEXED {
            self.catch_up();
            if self.len() > MAX_UNINDEXED {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        tracing::debug!(
            waited_us = started.elapsed().as_micros() as u64,
            "writes waited for the index"
        );
    }

    /// Takes a committed batch's changes.
    pub(super) fn commit(&mut self, done: IndexDone) {
        if let Some((row, changes)) = done.logged {
            self.add(row, changes);
        }
        self.deleted = self.deleted.max(done.deleted);
    }

    /// Starts the index's thread, which applies the [`INDEX_LOG`] rows of `store` to the index
    /// file; it stops when the [`Applier`] is dropped.
    pub(super) fn start(&self, store: Arc<Database>) -> Applier {
        let (wake, woken) = mpsc::channel::<usize>();
        let file = self.file.clone();
        let waiting = self.len();
        let thread = std::thread::Builder::new()
            .name("enfeed-store-index".into())
            .spawn(move || file.run(&store, &woken, waiting))
            .expect("the index's thread starts");
        Applier {
            wake: Some(wake),
            thread: Some(thread),
        }
    }

    /// The index as a batch of writes sees it: first forgets what the index file has applied,
    /// then reads the index file as it is from then on, so that nothing falls between the two.
    /// The file's filter, taken in between, holds every key the read finds, except those whose
    /// latest change is still in memory (applied since), which a lookup finds there first.
    pub(super) fn view<'a>(
        &'a mut self,
        txn: &'a redb::WriteTransaction,
    ) -> Result<IndexView<'a>, StoreError> {
        let applied = self.catch_up();
        let filter = self.file.filter();
        Ok(IndexView {
            filter,
            known: self.file.read_known()?,
            txn,
            unindexed: self,
            applied,
            changes: BTreeMap::new(),
        })
    }
}

/// The index's thread; joined on drop.
pub(super) struct Applier {
    wake: Option<mpsc::Sender<usize>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Applier {
    /// Tells the index's thread that a batch logged `changes`.
    pub(super) fn logged(&self, changes: usize) {
        if let Some(wake) = &self.wake {
            let _ = wake.send(changes);
        }
    }
}

impl Drop for Applier {
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The index in a batch's write transaction.
pub(super) struct IndexView<'a> {
    known: Option<redb::ReadOnlyTable<Tek, Row>>,
    filter: Option<Arc<Filter>>,
    /// The batch's transaction of the store's file: the log's tables are opened only by a batch
    /// that writes them, not by every batch of uploads.
    txn: &'a redb::WriteTransaction,
    unindexed: &'a Unindexed,
    /// The first [`INDEX_LOG`] row the index file has not applied, when the batch began.
    applied: u64,
    /// This batch's changes.
    changes: BTreeMap<Tek, Option<Row>>,
}

impl IndexView<'_> {
    /// The key's first row, if the key is indexed.
    pub(super) fn get(&self, tek: &Tek) -> Result<Option<Row>, StoreError> {
        if let Some(first) = self.changes.get(tek) {
            return Ok(*first);
        }
        if let Some((first, _)) = self.unindexed.changes.get(tek) {
            return Ok(*first);
        }
        let Some(known) = &self.known else {
            return Ok(None);
        };
        if let Some(filter) = &self.filter
            && !filter.bloom.contains(tek)
        {
            return Ok(None);
        }
        Ok(known
            .get(tek)
            .map_err(StoreError::backend)?
            .map(|row| row.value()))
    }

    pub(super) fn insert(&mut self, tek: Tek, first: Row) {
        self.changes.insert(tek, Some(first));
    }

    pub(super) fn remove(&mut self, tek: Tek) {
        self.changes.insert(tek, None);
    }

    /// Ends the batch: deletes the log rows the index file has applied, and logs the batch's
    /// changes as one row.
    pub(super) fn finish(self) -> Result<IndexDone, StoreError> {
        let mut done = IndexDone {
            logged: None,
            deleted: self.unindexed.deleted,
        };
        if self.applied == done.deleted && self.changes.is_empty() {
            return Ok(done);
        }
        let mut log = self
            .txn
            .open_table(INDEX_LOG)
            .map_err(StoreError::backend)?;
        let mut state = self
            .txn
            .open_table(LOG_STATE)
            .map_err(StoreError::backend)?;
        if self.applied > done.deleted {
            log.retain_in(..self.applied, |_, _| false)
                .map_err(StoreError::backend)?;
            state
                .insert(DELETED, self.applied)
                .map_err(StoreError::backend)?;
            done.deleted = self.applied;
        }
        if !self.changes.is_empty() {
            let changes: Vec<Change> = self.changes.into_iter().collect();
            let row = self.unindexed.next_row;
            log.insert(row, encode(&changes).as_slice())
                .map_err(StoreError::backend)?;
            state.insert(LOGGED, row + 1).map_err(StoreError::backend)?;
            done.logged = Some((row, changes));
        }
        Ok(done)
    }
}

/// What a batch logged, for [`Unindexed::commit`] once it is committed.
pub(super) struct IndexDone {
    logged: Option<(u64, Vec<Change>)>,
    /// The log rows before this one are deleted.
    deleted: u64,
}

impl IndexDone {
    /// Changes logged.
    pub(super) fn len(&self) -> usize {
        self.logged.as_ref().map_or(0, |(_, changes)| changes.len())
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::adapters::local::store::codec::{KeyRecord, key_row};

    fn tek(byte: u8) -> Tek {
        [byte; KEY_LEN]
    }

    /// The store's file and its index as the writer thread holds them.
    struct Held {
        path: PathBuf,
        db: Arc<Database>,
        unindexed: Unindexed,
    }

    impl Held {
        fn open(path: &Path) -> Self {
            let db = Database::create(path).unwrap();
            let txn = db.begin_write().unwrap();
            let unindexed = Unindexed::open(path, &txn, false).unwrap();
            txn.commit().unwrap();
            // As the index's thread does when it starts.
            unindexed.file.refresh_filter().unwrap();
            Self {
                path: path.to_owned(),
                db: Arc::new(db),
                unindexed,
            }
        }

        fn reopened(self) -> Self {
            let path = self.path.clone();
            drop(self);
            Self::open(&path)
        }

        /// Runs `work` on the index in one committed transaction, as the writer runs a batch.
        fn batch(&mut self, work: impl FnOnce(&mut IndexView)) {
            let txn = self.db.begin_write().unwrap();
            let done = {
                let mut view = self.unindexed.view(&txn).unwrap();
                work(&mut view);
                view.finish().unwrap()
            };
            txn.commit().unwrap();
            self.unindexed.commit(done);
        }

        fn get(&mut self, byte: u8) -> Option<Row> {
            let mut first = None;
            self.batch(|view| first = view.get(&tek(byte)).unwrap());
            first
        }

        /// Applies what the log holds, and builds the filter anew if it is full, as the
        /// index's thread does.
        fn apply(&self) -> usize {
            let applied = self.unindexed.file.apply(&self.db).unwrap();
            self.unindexed.file.refresh_filter().unwrap();
            applied
        }

        fn log_rows(&self) -> u64 {
            let txn = self.db.begin_read().unwrap();
            txn.open_table(INDEX_LOG).unwrap().len().unwrap()
        }
    }

    #[test]
    fn a_change_is_seen_before_and_after_the_index_file_has_it_and_its_log_row_goes() {
        let dir = tempfile::tempdir().unwrap();
        let mut held = Held::open(&dir.path().join("db"));
        held.batch(|view| {
            view.insert(tek(1), (10, 0));
            view.insert(tek(2), (10, 1));
            // The batch's own changes.
            assert_eq!(view.get(&tek(1)).unwrap(), Some((10, 0)));
        });
        held.batch(|view| view.remove(tek(2)));
        // In memory, and logged.
        assert_eq!((held.get(1), held.get(2)), (Some((10, 0)), None));
        assert_eq!((held.unindexed.len(), held.log_rows()), (2, 2));
        // In the index file: no longer in memory, and the next batch deletes the log rows.
        assert_eq!(held.apply(), 3);
        assert_eq!((held.get(1), held.get(2)), (Some((10, 0)), None));
        assert_eq!((held.unindexed.len(), held.log_rows()), (0, 0));
        assert_eq!(held.apply(), 0);
        // A change not yet applied when the store closes is read back from its log row.
        held.batch(|view| {
            view.remove(tek(1));
            view.insert(tek(3), (20, 0));
        });
        let mut held = held.reopened();
        assert_eq!((held.get(1), held.get(3)), (None, Some((20, 0))));
        assert_eq!(held.unindexed.indexed(), 1);
        assert_eq!(held.apply(), 2);
        let mut held = held.reopened();
        assert_eq!((held.get(1), held.get(3)), (None, Some((20, 0))));
        assert_eq!(held.log_rows(), 0);
    }

    #[test]
    fn the_filter_lets_every_key_of_the_file_through_and_is_built_anew_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let mut held = Held::open(&dir.path().join("db"));
        let key = |n: usize| -> Tek {
            let mut tek = [7; KEY_LEN];
            tek[..8].copy_from_slice(&(n as u64).to_be_bytes());
            tek
        };
        let filter = |held: &Held| held.unindexed.file.filter().expect("built at opening");
        let first = filter(&held);
        let room = first.room;
        held.batch(|view| (0..room).for_each(|n| view.insert(key(n), (1, n as u64))));
        held.apply();
        // Applied and taken by the filter, which is not full yet: every key is found in the
        // file, and most keys it has not are ruled out without reading it.
        assert!(Arc::ptr_eq(&first, &filter(&held)) && !first.is_full());
        let ruled_out = |filter: &Filter, keys: std::ops::Range<usize>| {
            keys.clone()
                .filter(|n| !filter.bloom.contains(&key(*n)))
                .count() as f64
                / keys.len() as f64
        };
        assert!(ruled_out(&first, room..room + 10_000) > 0.97);
        held.batch(|view| {
            for n in 0..room {
                assert_eq!(view.get(&key(n)).unwrap(), Some((1, n as u64)));
            }
            // Forgotten: still in the filter, so it reads the file, which has it no longer.
            (0..room / 2).for_each(|n| view.remove(key(n)));
        });
        held.apply();
        assert_eq!(ruled_out(&filter(&held), 0..room / 2), 0.0);
        // One key more than it has room for: built anew from the file, without the forgotten.
        held.batch(|view| view.insert(key(room), (2, 0)));
        held.apply();
        let rebuilt = filter(&held);
        assert!(!Arc::ptr_eq(&first, &rebuilt));
        assert!(ruled_out(&rebuilt, 0..room / 2) > 0.97);
        assert_eq!(ruled_out(&rebuilt, room / 2..room + 1), 0.0);
        held.batch(|view| {
            assert_eq!(view.get(&key(0)).unwrap(), None);
            assert_eq!(view.get(&key(room)).unwrap(), Some((2, 0)));
        });
    }

    /// Writes a key row, as a batch that moves a key does, and its change of the index.
    fn store_key(held: &mut Held, byte: u8, row: Row) {
        let txn = held.db.begin_write().unwrap();
        txn.open_table(KEYS)
            .unwrap()
            .insert(
                row,
                key_row(&tek(byte), &KeyRecord::default().encode_to_vec()).as_slice(),
            )
            .unwrap();
        txn.commit().unwrap();
        held.batch(|view| view.insert(tek(byte), row));
        held.apply();
        // The next batch deletes the log row.
        held.get(byte);
    }

    #[test]
    fn an_index_file_from_another_time_than_its_store_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let copy = |from: &Path, to: &Path| std::fs::copy(from, to).unwrap();
        let (store_then, index_then) = (dir.path().join("db.then"), dir.path().join("index.then"));
        let mut held = Held::open(&path);
        store_key(&mut held, 1, (10, 0));
        copy(&path, &store_then);
        copy(&index_path(&path), &index_then);
        store_key(&mut held, 2, (10, 1));
        drop(held);
        // The store's file of then, the index of now: the index holds a key the store has not.
        let index_now = dir.path().join("index.now");
        copy(&index_path(&path), &index_now);
        copy(&store_then, &path);
        let mut held = Held::open(&path);
        assert_eq!((held.get(1), held.get(2)), (Some((10, 0)), None));
        drop(held);
        // The index of then beside a store that has moved on: the index misses a key.
        let mut held = Held::open(&path);
        store_key(&mut held, 2, (10, 1));
        drop(held);
        copy(&index_then, &index_path(&path));
        let mut held = Held::open(&path);
        assert_eq!((held.get(1), held.get(2)), (Some((10, 0)), Some((10, 1))));
        // Files of the same time, copied back together.
        drop(held);
        copy(&index_now, &index_path(&path));
        let mut held = Held::open(&path);
        assert_eq!((held.get(1), held.get(2)), (Some((10, 0)), Some((10, 1))));
    }

    #[test]
    fn an_index_lost_or_kept_by_an_earlier_version_is_rebuilt_from_the_key_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut held = Held::open(&path);
        // Key rows as a batch writes them, one of them a revision; and a change not applied.
        let txn = held.db.begin_write().unwrap();
        {
            let mut keys = txn.open_table(KEYS).unwrap();
            for (row, byte, revision) in
                [((10, 0), 1, false), ((10, 1), 2, false), ((11, 0), 1, true)]
            {
                let record = KeyRecord {
                    revision,
                    ..KeyRecord::default()
                };
                keys.insert(row, key_row(&tek(byte), &record.encode_to_vec()).as_slice())
                    .unwrap();
            }
        }
        txn.commit().unwrap();
        held.batch(|view| view.insert(tek(2), (10, 1)));
        drop(held);
        std::fs::remove_file(index_path(&path)).unwrap();
        let mut held = Held::open(&path);
        assert_eq!((held.get(1), held.get(2)), (Some((10, 0)), Some((10, 1))));
        // Nothing left to apply: the log rows were in the key rows.
        assert_eq!((held.unindexed.len(), held.log_rows()), (0, 0));
        assert_eq!(held.unindexed.indexed(), 2);
        // An earlier version's index in the store's file: dropped, and rebuilt.
        let txn = held.db.begin_write().unwrap();
        txn.open_table(TableDefinition::<Tek, Row>::new(OLD_INDEX))
            .unwrap()
            .insert(tek(9), (1, 1))
            .unwrap();
        txn.commit().unwrap();
        let mut held = held.reopened();
        assert_eq!((held.get(1), held.get(9)), (Some((10, 0)), None));
        let txn = held.db.begin_read().unwrap();
        assert!(
            txn.list_tables()
                .unwrap()
                .all(|table| table.name() != OLD_INDEX)
        );
    }
}
