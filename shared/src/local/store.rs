//! [`LocalStore`]: keys, codes and publication state in one embedded redb database file, and
//! the wrong-code attempt counters in memory. Every write is one redb transaction, so each
//! port's atomicity promise holds: an upload's keys and its code are stored together or not at
//! all.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use prost::Message as _;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
};

use crate::domain::key::{DiagnosisKey, KEY_LEN, RegionId, ReportType};
use crate::domain::publication::Publication;
use crate::ports::{
    self, CodeClaim, CodeRecord, CodeStore, CodeUse, ConsumerStateStore, Inserted, KeyCounts,
    KeyStore, NewKeys, Origin, PeerState, PublicationStore, StoreError, StoredKey, UnixSeconds,
    pack_regions, unpack_regions,
};

type Tek = [u8; KEY_LEN];

/// Keys by (publish_at, key data): data-prep reads a time range.
const KEYS: TableDefinition<(u64, Tek), &[u8]> = TableDefinition::new("keys");
/// Key data to publish_at: deduplication.
const KNOWN: TableDefinition<Tek, u64> = TableDefinition::new("known");
/// What expires when, one row per write rather than per key: (expires_at, key data of the
/// write's first key) to the [`Expiring`] keys of the write. The purge reads what expired.
const EXPIRING: TableDefinition<(u64, Tek), &[u8]> = TableDefinition::new("expiring");
/// The per-key expiry index of earlier versions, (expires_at, key data) to publish_at; moved
/// into [`EXPIRING`] when the store is opened.
const EXPIRY_PER_KEY: TableDefinition<(u64, Tek), u64> = TableDefinition::new("expiry");
/// Code hash to code record.
const CODES: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("codes");
/// Consumer state per peer region, as JSON.
const PEERS: TableDefinition<&str, &[u8]> = TableDefinition::new("peers");
/// Single values: the seal, and the publication state with its version.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const SEAL: &str = "seal";
const PUBLICATION: &str = "publication";

/// Bytes of redb's page cache. redb's default (1 GiB) would hold a whole data-prep read in
/// memory; the operating system's page cache serves re-reads just as well.
const CACHE_BYTES: usize = 32 << 20;

/// Most write operations one transaction commits together.
const MAX_BATCH: usize = 512;

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
    attempts: Arc<Attempts>,
}

/// Wrong-code attempts per client in the newest rate-limit window. They live in memory: one
/// process serves the embedded store, a count under a lock is atomic, and an upload then costs
/// the writer one write instead of three. A restart forgives what was counted.
#[derive(Default)]
struct Attempts(std::sync::Mutex<Window>);

/// The newest window: a request that began in the window before is counted in this one.
#[derive(Default)]
struct Window {
    start: UnixSeconds,
    by_client: std::collections::HashMap<String, u32>,
}

impl Attempts {
    fn window(&self, start: UnixSeconds) -> std::sync::MutexGuard<'_, Window> {
        let mut window = self.0.lock().expect("no panic while counting");
        if start > window.start {
            *window = Window {
                start,
                by_client: Default::default(),
            };
        }
        window
    }

    /// Counts one more attempt and returns the attempts in the window, this one included.
    fn count(&self, client: &str, window_start: UnixSeconds) -> u32 {
        let mut window = self.window(window_start);
        let count = window.by_client.entry(client.to_string()).or_default();
        *count += 1;
        *count
    }

    /// Takes back one attempt of `client`; a client with none left is forgotten, so honest
    /// clients take no memory.
    fn forgive(&self, client: &str, window_start: UnixSeconds) {
        let mut window = self.window(window_start);
        if let Some(count) = window.by_client.get_mut(client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                window.by_client.remove(client);
            }
        }
    }
}

/// The tables of a batch's write transaction, opened once for the whole batch: opening a
/// table and closing it again costs a write transaction as much as a few inserts.
struct Tables<'txn> {
    keys: redb::Table<'txn, (u64, Tek), &'static [u8]>,
    known: redb::Table<'txn, Tek, u64>,
    expiring: redb::Table<'txn, (u64, Tek), &'static [u8]>,
    codes: redb::Table<'txn, [u8; 32], &'static [u8]>,
    meta: redb::Table<'txn, &'static str, &'static [u8]>,
    peers: redb::Table<'txn, &'static str, &'static [u8]>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn redb::WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            keys: txn.open_table(KEYS).map_err(StoreError::backend)?,
            known: txn.open_table(KNOWN).map_err(StoreError::backend)?,
            expiring: txn.open_table(EXPIRING).map_err(StoreError::backend)?,
            codes: txn.open_table(CODES).map_err(StoreError::backend)?,
            meta: txn.open_table(META).map_err(StoreError::backend)?,
            peers: txn.open_table(PEERS).map_err(StoreError::backend)?,
        })
    }
}

/// A write operation: runs in the batch's transaction, and returns whether it failed in
/// storage (which aborts the batch), and how to answer once the batch's outcome is known.
/// It gets no tables when the transaction could not be begun.
type Job = Box<dyn FnOnce(Option<&mut Tables<'_>>) -> (bool, Answer) + Send>;
type Answer = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

/// The writer thread and the queue to it; joined on drop, so that the database file is
/// closed when the last clone of the store goes.
struct Writer {
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(db: Arc<Database>) -> Self {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("enfeed-store-writer".into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let batch = std::iter::once(first)
                        .chain(std::iter::from_fn(|| queue.try_recv().ok()).take(MAX_BATCH - 1));
                    commit_batch(&db, batch);
                }
            })
            .expect("the writer thread starts");
        Self {
            jobs: Some(jobs),
            thread: Some(thread),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs a batch of write operations in one transaction and commits it, unless one of them
/// failed in storage: then nothing of the batch is committed and every operation fails.
/// Operations refuse (codes, conflicts) before they write anything, so a refused operation
/// leaves nothing behind in the batch.
fn commit_batch(db: &Database, batch: impl Iterator<Item = Job>) {
    let started = std::time::Instant::now();
    let txn = db.begin_write().map_err(StoreError::backend);
    let mut tables = txn.as_ref().ok().and_then(|txn| Tables::open(txn).ok());
    let mut failed = tables.is_none();
    let answers: Vec<Answer> = batch
        .map(|job| {
            let (storage_failed, answer) = job(tables.as_mut());
            failed |= storage_failed;
            answer
        })
        .collect();
    drop(tables);
    let outcome = match (txn, failed) {
        (Err(e), _) => Err(e),
        (Ok(_), true) => Err(StoreError::Backend(
            "a write of the same batch failed in storage; nothing was written".into(),
        )),
        (Ok(txn), false) => {
            let ran = started.elapsed();
            let committed = txn.commit().map_err(StoreError::backend);
            tracing::debug!(
                writes = answers.len(),
                run_us = ran.as_micros() as u64,
                commit_us = (started.elapsed() - ran).as_micros() as u64,
                "store batch committed"
            );
            committed
        }
    };
    for answer in answers {
        answer(outcome.as_ref().map(|_| ()));
    }
}

impl LocalStore {
    /// Opens (or creates) the database file at `path`. Only one process may have it open.
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
        let txn = db.begin_write().map_err(StoreError::backend)?;
        move_per_key_expiry(&txn, &mut Tables::open(&txn)?)?;
        txn.commit().map_err(StoreError::backend)?;
        let db = Arc::new(db);
        Ok(Self {
            writer: Arc::new(Writer::start(db.clone())),
            db,
            attempts: Arc::default(),
        })
    }

    /// Runs blocking database work off the async threads.
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
}

/// The keys of one write that expire at the same time, as [`EXPIRING`] keeps them: each key's
/// publish_at (8 bytes, big endian) and key data.
#[derive(Default)]
struct Expiring(Vec<u8>);

impl Expiring {
    const ENTRY: usize = 8 + KEY_LEN;

    fn push(&mut self, publish_at: u64, tek: Tek) {
        self.0.extend_from_slice(&publish_at.to_be_bytes());
        self.0.extend_from_slice(&tek);
    }

    /// The key data of the first key: with the expiry time, it names the row.
    fn first(&self) -> Tek {
        self.0[8..Self::ENTRY].try_into().expect("a whole entry")
    }

    fn keys(row: &[u8]) -> impl Iterator<Item = (u64, Tek)> + '_ {
        row.chunks_exact(Self::ENTRY).map(|entry| {
            let (publish_at, tek) = entry.split_at(8);
            (
                u64::from_be_bytes(publish_at.try_into().expect("8 bytes")),
                tek.try_into().expect("a key's length"),
            )
        })
    }
}

/// Moves the per-key expiry index of a store written by an earlier version into [`EXPIRING`],
/// a row per key, and drops it.
fn move_per_key_expiry(
    txn: &redb::WriteTransaction,
    tables: &mut Tables,
) -> Result<(), StoreError> {
    let exists = txn
        .list_tables()
        .map_err(StoreError::backend)?
        .any(|table| table.name() == EXPIRY_PER_KEY.name());
    if !exists {
        return Ok(());
    }
    {
        let old = txn
            .open_table(EXPIRY_PER_KEY)
            .map_err(StoreError::backend)?;
        for entry in old.iter().map_err(StoreError::backend)? {
            let (k, publish_at) = entry.map_err(StoreError::backend)?;
            let (expires_at, tek) = k.value();
            let mut row = Expiring::default();
            row.push(publish_at.value(), tek);
            tables
                .expiring
                .insert((expires_at, tek), row.0.as_slice())
                .map_err(StoreError::backend)?;
        }
    }
    txn.delete_table(EXPIRY_PER_KEY)
        .map_err(StoreError::backend)?;
    Ok(())
}

/// How a stored key is encoded in the database.
#[derive(Clone, PartialEq, prost::Message)]
struct KeyRecord {
    #[prost(int32, tag = "1")]
    rolling_start: i32,
    #[prost(int32, tag = "2")]
    rolling_period: i32,
    #[prost(int32, tag = "3")]
    transmission_risk: i32,
    #[prost(int32, tag = "4")]
    report_type: i32,
    #[prost(sint32, optional, tag = "5")]
    days_since_onset: Option<i32>,
    #[prost(bool, tag = "6")]
    remote: bool,
    #[prost(bytes = "vec", tag = "7")]
    regions: Vec<u8>,
    #[prost(uint64, tag = "8")]
    expires_at: u64,
}

impl KeyRecord {
    fn from_key(k: &StoredKey) -> Self {
        Self {
            rolling_start: k.key.rolling_start as i32,
            rolling_period: k.key.rolling_period as i32,
            transmission_risk: k.key.transmission_risk,
            report_type: k.key.report_type as i32,
            days_since_onset: k.key.days_since_onset,
            remote: k.origin == Origin::Remote,
            regions: pack_regions(&k.regions).into_bytes(),
            expires_at: k.expires_at,
        }
    }

    fn into_key(self, key_data: Tek, publish_at: u64) -> Result<StoredKey, StoreError> {
        let regions =
            unpack_regions(std::str::from_utf8(&self.regions).map_err(StoreError::backend)?)?;
        Ok(StoredKey {
            key: DiagnosisKey {
                key_data,
                rolling_start: self.rolling_start as u32,
                rolling_period: self.rolling_period as u32,
                transmission_risk: self.transmission_risk,
                report_type: ReportType::from_i32(self.report_type),
                days_since_onset: self.days_since_onset,
            },
            origin: if self.remote {
                Origin::Remote
            } else {
                Origin::Local
            },
            regions,
            publish_at,
            expires_at: self.expires_at,
        })
    }
}

/// How a one-time code is encoded in the database.
#[derive(Clone, PartialEq, prost::Message)]
struct CodeRow {
    #[prost(uint64, tag = "1")]
    issued_at: u64,
    #[prost(uint64, tag = "2")]
    expires_at: u64,
    /// The upload it authorised, once used.
    #[prost(bytes = "vec", optional, tag = "3")]
    used_by: Option<Vec<u8>>,
    #[prost(uint32, tag = "4")]
    inserted: u32,
}

impl CodeRow {
    /// What [`ports::check_claim`] judges a claim by.
    fn code_use(&self) -> CodeUse {
        CodeUse {
            expires_at: self.expires_at,
            used_by: self.used_by.clone(),
            inserted: self.inserted,
        }
    }
}

fn read_code(
    table: &impl ReadableTable<[u8; 32], &'static [u8]>,
    hash: &[u8; 32],
) -> Result<Option<CodeRow>, StoreError> {
    table
        .get(hash)
        .map_err(StoreError::backend)?
        .map(|v| CodeRow::decode(v.value()).map_err(StoreError::backend))
        .transpose()
}

fn read_u64(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<u64, StoreError> {
    Ok(table
        .get(name)
        .map_err(StoreError::backend)?
        .map(|v| u64::from_be_bytes(v.value().try_into().unwrap_or_default()))
        .unwrap_or(0))
}

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

#[async_trait]
impl CodeStore for LocalStore {
    async fn add_code(&self, code: CodeRecord) -> Result<(), StoreError> {
        self.write(move |Tables { codes, .. }| {
            let row = CodeRow {
                issued_at: code.issued_at,
                expires_at: code.expires_at,
                used_by: None,
                inserted: 0,
            };
            if codes
                .get(&code.code_hash)
                .map_err(StoreError::backend)?
                .is_some()
            {
                return Err(StoreError::Conflict("a code with this value exists".into()));
            }
            codes
                .insert(code.code_hash, row.encode_to_vec().as_slice())
                .map_err(StoreError::backend)?;
            Ok(())
        })
        .await
    }

    async fn count_attempt(
        &self,
        client: &str,
        window_start: UnixSeconds,
    ) -> Result<u32, StoreError> {
        Ok(self.attempts.count(client, window_start))
    }

    async fn forgive_attempt(
        &self,
        client: &str,
        window_start: UnixSeconds,
    ) -> Result<(), StoreError> {
        self.attempts.forgive(client, window_start);
        Ok(())
    }

    async fn check_code(&self, claim: &CodeClaim, now: UnixSeconds) -> Result<(), StoreError> {
        let claim = claim.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(StoreError::backend)?;
            let codes = txn.open_table(CODES).map_err(StoreError::backend)?;
            let code = read_code(&codes, &claim.code_hash)?.map(|row| row.code_use());
            ports::check_claim(code.as_ref(), &claim, now)?;
            Ok(())
        })
        .await
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::key::{DiagnosisKey, ReportType};

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

    #[test]
    fn attempts_count_per_client_and_start_again_in_a_new_window() {
        let attempts = Attempts::default();
        assert_eq!(attempts.count("192.0.2.1", 3600), 1);
        assert_eq!(attempts.count("192.0.2.1", 3600), 2);
        assert_eq!(attempts.count("198.51.100.1", 3600), 1);
        attempts.forgive("192.0.2.1", 3600);
        assert_eq!(attempts.count("192.0.2.1", 3600), 2);
        // A request that began in the window before counts in the newest one.
        assert_eq!(attempts.count("192.0.2.1", 0), 3);
        assert_eq!(attempts.count("192.0.2.1", 7200), 1);
        // A client forgiven down to nothing is forgotten.
        attempts.forgive("192.0.2.1", 7200);
        assert!(attempts.0.lock().unwrap().by_client.is_empty());
    }
}
