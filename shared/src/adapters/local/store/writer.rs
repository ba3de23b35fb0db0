//! The writer thread of [`LocalStore`](super::LocalStore): every write operation waiting is
//! run in one redb transaction, committed (with fsync) once, and only then answered. When it
//! has nothing else to do, it moves [`staged`](super::staging) keys into the key tables. The
//! deduplication index has a thread of its own ([`index`](super::index)).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use redb::Database;

use super::index::{IndexView, Unindexed};
use super::staging::{self, STAGED_KEYS_ROOM, Staged, Staging};
use super::{CODES, EXPIRING, ISSUED, ISSUERS, KEYS, META, PEERS, Tek};
use crate::ports::StoreError;

/// Most write operations one transaction commits together.
const MAX_BATCH: usize = 512;

/// How long the writer waits for work before it moves staged keys into the key tables.
const IDLE: Duration = Duration::from_millis(20);

/// Staged keys the writer moves in one transaction when it is idle: a write that comes
/// meanwhile waits for at most one such part.
const MOVE_PART: usize = 1_024;

/// Staged keys moved per transaction when everything staged must move (data-prep's reads, the
/// purge): a write that comes meanwhile waits for one part at most (some 40 ms).
pub(super) const SETTLE_PART: usize = 16_384;

/// Staged keys past which every batch of writes also moves a part of them: how much memory a
/// burst of uploads may take (four tables of their key data, 134 MB), and how long it may last
/// at the speed of appends (some 260,000 uploads).
const MAX_STAGED: usize = 4 * STAGED_KEYS_ROOM;

/// Staged keys a batch moves besides its writes while more than [`MAX_STAGED`] wait, for each
/// key it stages: the stage shrinks as fast as it grew, and each batch of a long burst carries
/// a small part rather than a few batches a large one (which every client waiting for them
/// waited for too, docs/performance.md).
const CATCH_UP_PER_KEY: usize = 2;

/// What a batch moves of the keys staged by earlier batches.
#[derive(Clone, Copy)]
enum ToMove {
    Nothing,
    Keys(usize),
    /// [`CATCH_UP_PER_KEY`] for each key the batch stages.
    CatchUp,
}

/// The tables of a batch's write transaction, opened once for the whole batch: opening a
/// table and closing it again costs a write transaction as much as a few inserts.
pub(super) struct Tables<'txn> {
    pub(super) keys: redb::Table<'txn, super::Row, &'static [u8]>,
    pub(super) staging: Staging<'txn>,
    pub(super) expiring: redb::Table<'txn, (u64, Tek), &'static [u8]>,
    pub(super) codes: redb::Table<'txn, [u8; 32], &'static [u8]>,
    pub(super) issuers: redb::Table<'txn, &'static str, &'static [u8]>,
    pub(super) issued: redb::Table<'txn, (&'static str, u64, [u8; 32]), &'static [u8]>,
    pub(super) meta: redb::Table<'txn, &'static str, &'static [u8]>,
    pub(super) peers: redb::Table<'txn, &'static str, &'static [u8]>,
}

impl<'txn> Tables<'txn> {
    pub(super) fn open(
        txn: &'txn redb::WriteTransaction,
        staged: &'txn Staged,
        index: IndexView<'txn>,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            keys: txn.open_table(KEYS).map_err(StoreError::backend)?,
            staging: Staging::open(txn, staged, index)?,
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
    /// The newest staged row's number plus one, 0 when none is staged.
    newest_staged: Arc<AtomicU64>,
}

impl Writer {
    pub(super) fn start(db: Arc<Database>, mut staged: Staged, mut unindexed: Unindexed) -> Self {
        let newest_staged = staged.newest();
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("enfeed-store-writer".into())
            .spawn(move || {
                // Stopped (and joined) when the writer stops.
                let applier = unindexed.start(db.clone());
                loop {
                    let first = match staged.is_empty() {
                        true => queue.recv().map_err(|_| RecvTimeoutError::Disconnected),
                        false => queue.recv_timeout(IDLE),
                    };
                    // Staged keys the batch moves besides its writes.
                    let (first, to_move) = match first {
                        Ok(job) if staged.len() > MAX_STAGED => (Some(job), ToMove::CatchUp),
                        Ok(job) => (Some(job), ToMove::Nothing),
                        Err(RecvTimeoutError::Timeout) => (None, ToMove::Keys(MOVE_PART)),
                        Err(RecvTimeoutError::Disconnected) => break,
                    };
                    let more = std::iter::from_fn(|| queue.try_recv().ok());
                    let batch = first.into_iter().chain(more).take(MAX_BATCH);
                    unindexed.wait_while_full();
                    let logged = commit_batch(&db, &mut staged, &mut unindexed, batch, to_move);
                    applier.logged(logged);
                }
            })
            .expect("the writer thread starts");
        Self {
            jobs: Some(jobs),
            thread: Some(thread),
            newest_staged,
        }
    }

    /// The newest row staged by a committed batch, if any is staged: every write answered
    /// before this call is in it or in a row before it.
    pub(super) fn newest_staged(&self) -> Option<u64> {
        self.newest_staged.load(Ordering::Acquire).checked_sub(1)
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

/// Runs a batch of write operations in one transaction, moves keys staged by earlier batches
/// as `to_move` says (at least as many, if as many wait), and commits, unless one of them
/// failed in storage: then nothing of the batch is committed and every operation fails.
/// Operations refuse (codes, conflicts) before they write anything, so a refused operation
/// leaves nothing behind in the batch. Returns the changes of the index it logged.
fn commit_batch(
    db: &Database,
    staged: &mut Staged,
    unindexed: &mut Unindexed,
    batch: impl Iterator<Item = Job>,
    to_move: ToMove,
) -> usize {
    let started = std::time::Instant::now();
    let txn = db.begin_write().map_err(StoreError::backend);
    let mut tables = txn.as_ref().ok().and_then(|txn| {
        let index = unindexed.view(txn).ok()?;
        Tables::open(txn, staged, index).ok()
    });
    let mut failed = tables.is_none();
    let answers: Vec<Answer> = batch
        .map(|job| {
            let (storage_failed, answer) = job(tables.as_mut());
            failed |= storage_failed;
            answer
        })
        .collect();
    let finished = tables.map(|mut tables| {
        let to_move = match to_move {
            ToMove::Nothing => 0,
            ToMove::Keys(keys) => keys,
            ToMove::CatchUp => CATCH_UP_PER_KEY * tables.staging.new_keys(),
        };
        if to_move > 0 {
            staging::move_oldest(&mut tables, to_move, None)?;
        }
        tables.staging.finish()
    });
    let outcome = match (txn, failed, finished) {
        (Err(e), _, _) => Err(e),
        (Ok(_), true, _) => Err(StoreError::Backend(
            "a write of the same batch failed in storage; nothing was written".into(),
        )),
        (Ok(_), false, Some(Err(e))) => Err(e),
        (Ok(_), false, None) => unreachable!("a batch without tables has failed"),
        (Ok(txn), false, Some(Ok(done))) => {
            let ran = started.elapsed();
            let committed = txn.commit().map_err(StoreError::backend);
            tracing::debug!(
                writes = answers.len(),
                run_us = ran.as_micros() as u64,
                commit_us = (started.elapsed() - ran).as_micros() as u64,
                "store batch committed"
            );
            let (done, index) = done;
            let logged = index.len();
            if committed.is_ok() {
                staged.commit(done);
                unindexed.commit(index);
            }
            committed.map(|()| logged)
        }
    };
    if let Err(e) = &outcome
        && answers.is_empty()
    {
        tracing::warn!(error = %e, "moving staged keys failed; it is tried again");
    }
    for answer in answers {
        answer(outcome.as_ref().map(|_| ()));
    }
    outcome.unwrap_or(0)
}
