//! The consumer (paper, section 5.3): pulls the feeds of peer backends (producers) and stores
//! their keys as `remote`, from where they reach this region's phones through the public feed
//! only.
//!
//! For each producer, a pull does the following:
//! 1. It reads the producer's index.
//! 2. It takes every batch after `lastBatchID`, in order. A batch is a chunk number for an
//!    enfeed producer, or a file name for a `gaen-index` one.
//! 3. It checks each file against the producer's verification keys, and every key in it against
//!    the upload rules.
//! 4. It stores the keys, deduplicated by key data, then moves `lastBatchID` past the batch.
//!    A pull that dies between those two steps repeats the batch, and deduplication makes that
//!    harmless.
//! 5. A batch that fails a check stops the pull of that producer. The keys already stored and
//!    the other producers are not affected. The next run tries that batch again.

use std::sync::Arc;

use serde::Serialize;

use crate::domain::config::Config;
use crate::domain::export::{ExportError, ExportLimits, read_export};
use crate::domain::feed::{Feed, FeedIndex};
use crate::domain::key::{DiagnosisKey, RegionId, interval_of};
use crate::domain::metrics::Metrics;
use crate::domain::peers::{FeedFormat, PeerConfig, Replication};
use crate::domain::signature::VerificationKey;
use crate::domain::upload::{KeyProblem, check_key};
use crate::ports::{
    Clock, ConsumerStateStore, Fetch, FetchError, Inserted, KeyStore, NewKeys, Origin, PeerState,
    StoreError, StoredKey, UnixSeconds,
};

/// Largest index accepted from a producer.
const MAX_INDEX_BYTES: usize = 1 << 20;
/// A producer may ask to be polled again at most this far ahead.
const MAX_POLL_DELAY: u64 = 86_400;

/// A peer backend this region pulls from: its configuration, its verification keys, and the
/// client that reaches it.
pub struct Producer {
    pub config: PeerConfig,
    keys: Vec<VerificationKey>,
    fetch: Arc<dyn Fetch>,
}

impl Producer {
    /// A producer reached through `fetch`, whose files are signed by any of `keys`.
    pub fn new(config: PeerConfig, keys: Vec<VerificationKey>, fetch: Arc<dyn Fetch>) -> Self {
        Self {
            config,
            keys,
            fetch,
        }
    }
}

/// Why a pull from one producer stopped.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("the index is not valid: {0}")]
    BadIndex(String),
    #[error("the feed is of region {found}, not {expected}")]
    WrongRegion { expected: RegionId, found: String },
    #[error("chunk numbers went backwards: the newest is {newest}, but {last} was taken already")]
    WentBackwards { last: u32, newest: u32 },
    #[error("batch {batch}: {error}")]
    File { batch: String, error: ExportError },
    #[error("batch {batch}: a key breaks the rules: {problem}")]
    InvalidKey { batch: String, problem: KeyProblem },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a consumer run did, per producer.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerReport {
    pub peers: Vec<PeerReport>,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerReport {
    pub region: String,
    /// Not polled: the producer asked not to be polled before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<UnixSeconds>,
    /// Batches taken.
    pub batches: u32,
    /// Keys new to this backend.
    pub imported: u64,
    /// Keys too old to matter any more, left out.
    pub stale: u64,
    /// Why the pull stopped early, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether a run respects the producers' recommended next poll times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// A scheduled run: a producer is polled no sooner than it asked.
    WhenDue,
    /// An operator's run: every producer is polled now.
    Now,
}

/// Pulls every configured producer into the key store, keeping its place in the state store.
pub struct Consumer {
    producers: Vec<Producer>,
    keys: Arc<dyn KeyStore>,
    state: Arc<dyn ConsumerStateStore>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// This backend's region: the per-region feed it pulls is named by it.
    own: RegionId,
    /// The retention period T of the keys it stores.
    retention: u64,
}

impl Consumer {
    pub fn new(
        producers: Vec<Producer>,
        keys: Arc<dyn KeyStore>,
        state: Arc<dyn ConsumerStateStore>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        config: &Config,
    ) -> Self {
        Self {
            producers,
            keys,
            state,
            clock,
            metrics,
            own: config.region,
            retention: config.retention(),
        }
    }

    /// Pulls every producer that is due, or every producer when `poll` is [`Poll::Now`]. A
    /// producer that fails is logged, counted and reported; the others are pulled all the same.
    pub async fn run(&self, poll: Poll) -> ConsumerReport {
        let mut report = ConsumerReport::default();
        for producer in &self.producers {
            let mut peer = PeerReport {
                region: producer.config.region.to_string(),
                ..PeerReport::default()
            };
            let pulled = self.pull(producer, poll, &mut peer).await;
            self.count(&peer, &pulled);
            if let Err(error) = pulled {
                tracing::warn!(peer = %producer.config.region, %error, "pull from peer stopped");
                peer.error = Some(error.to_string());
            }
            report.peers.push(peer);
        }
        report
    }

    fn count(&self, peer: &PeerReport, pulled: &Result<(), PullError>) {
        let labels = [peer.region.as_str()];
        let metrics = &self.metrics;
        metrics
            .peer_keys_imported
            .add(&labels, peer.imported as f64);
        metrics.keys_stored.add(&["remote"], peer.imported as f64);
        if peer.stale > 0 {
            metrics
                .peer_keys_refused
                .add(&[labels[0], "too_old"], peer.stale as f64);
        }
        match pulled {
            // A peer that was not due is neither a success nor a failure.
            Ok(()) if peer.not_before.is_some() => {}
            Ok(()) => metrics
                .peer_last_success
                .set(&labels, self.clock.now() as f64),
            Err(e) => {
                metrics.peer_failures.inc(&labels);
                if matches!(e, PullError::Store(StoreError::Backend(_))) {
                    metrics.storage_errors.inc(&["keys"]);
                }
            }
        }
    }

    async fn pull(
        &self,
        producer: &Producer,
        poll: Poll,
        report: &mut PeerReport,
    ) -> Result<(), PullError> {
        let now = self.clock.now();
        let region = producer.config.region;
        let mut state = self.state.load_peer(region).await?;
        if poll == Poll::WhenDue && now < state.recommended_next_poll_time {
            report.not_before = Some(state.recommended_next_poll_time);
            return Ok(());
        }
        let (batches, next_poll) = match producer.config.format {
            FeedFormat::Enfeed => enfeed_batches(self.own, producer, &state).await?,
            FeedFormat::GaenIndex => gaen_index_batches(producer, &state).await?,
        };
        for (batch, path) in batches {
            let bytes = producer
                .fetch
                .get(
                    &producer.config.url_of(&path),
                    ExportLimits::default().max_zip_bytes,
                )
                .await?;
            let keys = checked_keys(producer, &batch, &bytes, now, report)?;
            let count = keys.len();
            let inserted = self
                .keys
                .insert(NewKeys {
                    keys: remote_keys(keys, now, self.retention),
                    claim: None,
                    now,
                })
                .await?;
            let (Inserted::Stored(new) | Inserted::Replayed(new)) = inserted;
            report.imported += u64::from(new);
            report.batches += 1;
            tracing::info!(peer = %region, %batch, keys = count, new, "batch imported");
            state.last_batch_id = Some(batch);
            self.state.save_peer(region, &state).await?;
        }
        state.recommended_next_poll_time = next_poll.clamp(now, now + MAX_POLL_DELAY);
        self.state.save_peer(region, &state).await?;
        Ok(())
    }
}

/// The batches of an enfeed producer after the last one taken, with the paths of their chunks,
/// and when to poll next.
async fn enfeed_batches(
    own: RegionId,
    producer: &Producer,
    state: &PeerState,
) -> Result<(Vec<(String, String)>, UnixSeconds), PullError> {
    let feed = match producer.config.replication {
        Replication::A2a => Feed::AllToAll,
        Replication::Partial => Feed::Region(own),
    };
    let body = producer
        .fetch
        .get(&producer.config.url_of(&feed.index_path()), MAX_INDEX_BYTES)
        .await?;
    let index: FeedIndex =
        serde_json::from_slice(&body).map_err(|e| PullError::BadIndex(e.to_string()))?;
    if index.region != producer.config.region {
        return Err(PullError::WrongRegion {
            expected: producer.config.region,
            found: index.region.to_string(),
        });
    }
    let last: u32 = state
        .last_batch_id
        .as_deref()
        .and_then(|id| id.parse().ok())
        .unwrap_or(0);
    let newest = index.chunks.iter().copied().max().unwrap_or(0);
    if newest < last {
        return Err(PullError::WentBackwards { last, newest });
    }
    let mut numbers: Vec<u32> = index.chunks.into_iter().filter(|n| *n > last).collect();
    numbers.sort_unstable();
    numbers.dedup();
    let batches = numbers
        .into_iter()
        .map(|n| (n.to_string(), feed.chunk_path(n)))
        .collect();
    Ok((batches, index.recommended_next_poll_time))
}

/// The files listed in a Google-style `index.txt` after the last one taken. Their names start
/// with the time they cover, so name order is time order. There is no poll hint.
async fn gaen_index_batches(
    producer: &Producer,
    state: &PeerState,
) -> Result<(Vec<(String, String)>, UnixSeconds), PullError> {
    let body = producer
        .fetch
        .get(&producer.config.url_of("index.txt"), MAX_INDEX_BYTES)
        .await?;
    let text = String::from_utf8(body)
        .map_err(|_| PullError::BadIndex("index.txt is not UTF-8".into()))?;
    let mut names: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    names.sort_unstable();
    names.dedup();
    let last = state.last_batch_id.as_deref().unwrap_or("");
    let batches = names
        .into_iter()
        .filter(|name| *name > last)
        .map(|n| (n.to_string(), n.to_string()))
        .collect();
    Ok((batches, 0))
}

/// The keys of one batch, once its file is verified and each key passes the rules; keys that
/// are merely too old are left out (and counted), any other broken key refuses the batch.
fn checked_keys(
    producer: &Producer,
    batch: &str,
    bytes: &[u8],
    now: UnixSeconds,
    report: &mut PeerReport,
) -> Result<Vec<DiagnosisKey>, PullError> {
    let file_error = |error| PullError::File {
        batch: batch.to_string(),
        error,
    };
    let file = read_export(bytes, &ExportLimits::default()).map_err(file_error)?;
    file.verify(&producer.keys).map_err(file_error)?;
    if file.header.region != producer.config.region.as_str() {
        return Err(PullError::WrongRegion {
            expected: producer.config.region,
            found: file.header.region,
        });
    }
    let mut keys = Vec::with_capacity(file.keys.len());
    for key in file.keys {
        match check_key(&key, interval_of(now)) {
            Ok(()) => keys.push(key),
            Err(KeyProblem::TooOld) => report.stale += 1,
            Err(problem) => {
                return Err(PullError::InvalidKey {
                    batch: batch.to_string(),
                    problem,
                });
            }
        }
    }
    Ok(keys)
}

fn remote_keys(keys: Vec<DiagnosisKey>, now: UnixSeconds, retention: u64) -> Vec<StoredKey> {
    keys.into_iter()
        .map(|key| StoredKey {
            key,
            origin: Origin::Remote,
            regions: Vec::new(),
            publish_at: now,
            expires_at: now + retention,
        })
        .collect()
}
