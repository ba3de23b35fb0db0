//! [`LocalStore`]: keys, codes, code issuers and publication state in one embedded redb database
//! file, its deduplication index in a second, and the wrong-code attempt counters in memory.
//! Every write is one redb transaction of the first file, so each port's atomicity promise
//! holds: an upload's keys and its code are stored together or not at all. One module per port
//! it implements, as the ports are laid out, besides the record [`codec`], the group-committing
//! [`writer`], the [`staging`] of new keys and consumed codes, and the [`index`].

mod code_issuers;
mod codec;
mod codes;
mod consumer_state;
mod index;
mod keys;
mod publication;
mod staging;
mod writer;

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

use crate::ports::StoreError;
use codec::{Row, Tek};
use codes::Attempts;
use index::Unindexed;
use staging::{Staged, StagedCodes};
use writer::{Answer, Job, SETTLE_PART, Tables, Writer};

/// Keys by [`Row`]: (publish_at, number in the order written). Data-prep reads a time range;
/// a new key is appended at the end of its publish_at, so a burst of keys fills pages in order
/// rather than one page per key. The value is the key data, then its [`codec::KeyRecord`].
/// Which row holds a key is the [`index`]'s to say.
pub(super) const KEYS: TableDefinition<Row, &[u8]> = TableDefinition::new("key_rows");
/// New keys on their way into [`KEYS`], the [`index`] and [`EXPIRING`], one row per batch of
/// writes, numbered in order (see [`staging`]).
pub(super) const STAGED: TableDefinition<u64, &[u8]> = TableDefinition::new("staged");
/// The [`CODES`] rows a batch of writes changed (the codes its uploads consumed), under the
/// number of the batch's [`STAGED`] row; they reach [`CODES`] when that row moves.
pub(super) const STAGED_CODES: TableDefinition<u64, &[u8]> = TableDefinition::new("staged_codes");
/// What expires when, one row per write rather than per key: (expires_at, key data of the
/// write's first key) to the [`Expiring`](codec::Expiring) keys of the write. The purge reads
/// what expired.
pub(super) const EXPIRING: TableDefinition<(u64, Tek), &[u8]> =
    TableDefinition::new("expiring_keys");
/// The tables of earlier versions, which named a key row by (publish_at, key data): rebuilt
/// into [`KEYS`] and [`EXPIRING`] when the store is opened (see [`upgrade`]), and the index
/// from them.
pub(super) const OLD_KEYS: TableDefinition<(u64, Tek), &[u8]> = TableDefinition::new("keys");
pub(super) const OLD_KNOWN: TableDefinition<Tek, u64> = TableDefinition::new("known");
const OLD_EXPIRY_TABLES: [&str; 2] = ["expiring", "expiry"];
/// Code hash to code record.
pub(super) const CODES: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("codes");
/// Code issuers by name: their [`codec::IssuerRow`].
pub(super) const ISSUERS: TableDefinition<&str, &[u8]> = TableDefinition::new("issuers");
/// The codes each code issuer issued: (issuer, issued_at, code hash) to the code's
/// [`codec::IssuedRow`], which outlives the code itself.
pub(super) const ISSUED: TableDefinition<(&str, u64, [u8; 32]), &[u8]> =
    TableDefinition::new("issued");
/// Consumer state per peer region, as JSON.
pub(super) const PEERS: TableDefinition<&str, &[u8]> = TableDefinition::new("peers");
/// Single values: the seal, and the publication state with its version.
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub(super) const SEAL: &str = "seal";
pub(super) const PUBLICATION: &str = "publication";

/// Bytes of redb's page cache. redb's default (1 GiB) would hold a whole data-prep read in
/// memory; the operating system's page cache serves re-reads just as well.
const CACHE_BYTES: usize = 32 << 20;

/// The embedded store. Cheap to clone; all clones share the database.
///
/// Writes are group-committed: one writer thread takes every write operation waiting, runs them
/// one after the other in a single redb transaction, and commits (with fsync) once. Each
/// operation is answered only after that commit. Operations see each other's writes in order,
/// so a code consumed by one upload is consumed for the next one in the same batch.
#[derive(Clone)]
pub struct LocalStore {
    db: Arc<Database>,
    writer: Arc<Writer>,
    /// The code rows staged by the writer, which readers of codes look at first.
    staged_codes: StagedCodes,
    attempts: Arc<Attempts>,
}

impl LocalStore {
    /// Opens (or creates) the database file at `path`, and its index file beside it
    /// (`enfeed.redb` has `enfeed.index.redb`). Only one process may have them open.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Backend(format!(
                    "{} is in use by another enfeed process (stop it, or ask it over HTTP)",
                    path.display()
                )),
                other => StoreError::backend(other),
            })?;
        super::fs::owner_only(path).map_err(StoreError::backend)?;
        let txn = db.begin_write().map_err(StoreError::backend)?;
        let upgraded = upgrade(&txn)?;
        let mut unindexed = Unindexed::open(path, &txn, upgraded)?;
        let staged = Staged::load(&txn)?;
        // Every table exists from here on, for readers too.
        drop(Tables::open(&txn, &staged, unindexed.view(&txn)?)?);
        txn.commit().map_err(StoreError::backend)?;
        let db = Arc::new(db);
        Ok(Self {
            staged_codes: staged.codes(),
            writer: Arc::new(Writer::start(db.clone(), staged, unindexed)),
            db,
            attempts: Arc::default(),
        })
    }

    /// Runs a point read on the calling thread: a read transaction over a few pages, most
    /// often in redb's cache, which never waits for the writer. For the reads on the path of
    /// every upload or code issuer's request, where handing the read to another thread and back
    /// cost more than the read (about 20 µs of processor time an upload, docs/performance.md).
    fn read_now<T>(
        &self,
        work: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        work(&self.db.begin_read().map_err(StoreError::backend)?)
    }

    /// Runs other blocking database work off the async threads: scans, and reads off the
    /// request paths.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(StoreError::backend)?
    }

    /// Runs `work` in the next batch's write transaction; answers once the batch is committed.
    /// `work` must refuse before it writes anything: a refusal does not abort the batch.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Tables<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |tables| {
            let result = match tables {
                Some(tables) => work(tables),
                None => Err(StoreError::Backend("no write transaction".into())),
            };
            let storage_failed = matches!(result, Err(StoreError::Backend(_)));
            let answer: Answer = Box::new(move |committed| {
                let _ = reply.send(match (result, committed) {
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(e)) => Err(StoreError::Backend(e.to_string())),
                    (Ok(value), Ok(())) => Ok(value),
                });
            });
            (storage_failed, answer)
        });
        let queue = self.writer.jobs.as_ref().expect("the writer runs");
        queue
            .send(job)
            .map_err(|_| StoreError::Backend("the store's writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("the store's writer stopped".into()))?
    }

    /// Moves every key staged so far into the key tables, a part per write transaction: for a
    /// read or a change of the key tables that must see every key stored before it.
    async fn settle(&self) -> Result<(), StoreError> {
        let Some(through) = self.writer.newest_staged() else {
            return Ok(());
        };
        while self
            .write(move |tables| staging::move_oldest(tables, SETTLE_PART, Some(through)))
            .await?
        {}
        Ok(())
    }
}

/// Rebuilds the key tables of a store written by an earlier version, which named a key row by
/// (publish_at, key data), into [`KEYS`] and [`EXPIRING`], and drops the old tables; returns
/// whether it did (the index is then rebuilt from [`KEYS`]). Rows are numbered in their old
/// order, so a data-prep cursor of the old form still names a place (see
/// `keys::resume_after`). Each key's expiry comes from its record.
fn upgrade(txn: &redb::WriteTransaction) -> Result<bool, StoreError> {
    let written_before = txn
        .list_tables()
        .map_err(StoreError::backend)?
        .any(|table| table.name() == OLD_KEYS.name());
    if !written_before {
        return Ok(false);
    }
    {
        let old_keys = txn.open_table(OLD_KEYS).map_err(StoreError::backend)?;
        let mut keys = txn.open_table(KEYS).map_err(StoreError::backend)?;
        let mut expiring = txn.open_table(EXPIRING).map_err(StoreError::backend)?;
        let mut last: Option<Row> = None;
        let mut expiries = Vec::new();
        for entry in old_keys.iter().map_err(StoreError::backend)? {
            let (name, value) = entry.map_err(StoreError::backend)?;
            let (publish_at, tek) = name.value();
            let row = next_key_row(&keys, publish_at, last)?;
            last = Some(row);
            let record = <codec::KeyRecord as prost::Message>::decode(value.value())
                .map_err(StoreError::backend)?;
            keys.insert(row, codec::key_row(&tek, value.value()).as_slice())
                .map_err(StoreError::backend)?;
            expiries.push((record.expires_at, row, tek));
            if expiries.len() == 50_000 {
                staging::add_expiring(&mut expiring, expiries.drain(..))?;
            }
        }
        staging::add_expiring(&mut expiring, expiries)?;
    }
    let old_names = [OLD_KEYS.name(), OLD_KNOWN.name()];
    let old: Vec<_> = txn
        .list_tables()
        .map_err(StoreError::backend)?
        .filter(|table| {
            old_names.contains(&table.name()) || OLD_EXPIRY_TABLES.contains(&table.name())
        })
        .collect();
    for table in old {
        txn.delete_table(table).map_err(StoreError::backend)?;
    }
    Ok(true)
}

/// The name of the next row of `publish_at` in [`KEYS`]: the one after `written`, the row just
/// written, if that is of the same publish_at (no lookup); otherwise one past the publish_at's
/// last row in the table.
pub(super) fn next_key_row(
    keys: &impl ReadableTable<Row, &'static [u8]>,
    publish_at: u64,
    written: Option<Row>,
) -> Result<Row, StoreError> {
    if let Some((at, number)) = written
        && at == publish_at
    {
        return Ok((at, number + 1));
    }
    let last = keys
        .range((publish_at, 0)..=(publish_at, u64::MAX))
        .map_err(StoreError::backend)?
        .next_back()
        .transpose()
        .map_err(StoreError::backend)?;
    Ok((publish_at, last.map_or(0, |(row, _)| row.value().1 + 1)))
}

pub(super) fn read_u64(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<u64, StoreError> {
    Ok(table
        .get(name)
        .map_err(StoreError::backend)?
        .map(|v| u64::from_be_bytes(v.value().try_into().unwrap_or_default()))
        .unwrap_or(0))
}
