//! The writer thread of [`LocalStore`](super::LocalStore): every write operation waiting is
//! run in one redb transaction, committed (with fsync) once, and only then answered.

use std::sync::Arc;

use redb::Database;

use super::{CODES, EXPIRING, ISSUED, ISSUERS, KEYS, KNOWN, META, PEERS, Tek};
use crate::ports::StoreError;

/// Most write operations one transaction commits together.
const MAX_BATCH: usize = 512;

/// The tables of a batch's write transaction, opened once for the whole batch: opening a
/// table and closing it again costs a write transaction as much as a few inserts.
pub(super) struct Tables<'txn> {
    pub(super) keys: redb::Table<'txn, (u64, Tek), &'static [u8]>,
    pub(super) known: redb::Table<'txn, Tek, u64>,
    pub(super) expiring: redb::Table<'txn, (u64, Tek), &'static [u8]>,
    pub(super) codes: redb::Table<'txn, [u8; 32], &'static [u8]>,
    pub(super) issuers: redb::Table<'txn, &'static str, &'static [u8]>,
    pub(super) issued: redb::Table<'txn, (&'static str, u64, [u8; 32]), &'static [u8]>,
    pub(super) meta: redb::Table<'txn, &'static str, &'static [u8]>,
    pub(super) peers: redb::Table<'txn, &'static str, &'static [u8]>,
}

impl<'txn> Tables<'txn> {
    pub(super) fn open(txn: &'txn redb::WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            keys: txn.open_table(KEYS).map_err(StoreError::backend)?,
            known: txn.open_table(KNOWN).map_err(StoreError::backend)?,
            expiring: txn.open_table(EXPIRING).map_err(StoreError::backend)?,
            codes: txn.open_table(CODES).map_err(StoreError::backend)?,
            issuers: txn.open_table(ISSUERS).map_err(StoreError::backend)?,
            issued: txn.open_table(ISSUED).map_err(StoreError::backend)?,
            meta: txn.open_table(META).map_err(StoreError::backend)?,
            peers: txn.open_table(PEERS).map_err(StoreError::backend)?,
        })
    }
}

/// A write operation: runs in the batch's transaction, and returns whether it failed in
/// storage (which aborts the batch), and how to answer once the batch's outcome is known.
/// It gets no tables when the transaction could not be begun.
pub(super) type Job = Box<dyn FnOnce(Option<&mut Tables<'_>>) -> (bool, Answer) + Send>;
pub(super) type Answer = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

/// The writer thread and the queue to it; joined on drop, so that the database file is
/// closed when the last clone of the store goes.
pub(super) struct Writer {
    pub(super) jobs: Option<std::sync::mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub(super) fn start(db: Arc<Database>) -> Self {
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
