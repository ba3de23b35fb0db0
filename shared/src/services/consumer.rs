//! The consumer (paper, section 5.3): pulls the feeds of peer backends (producers) and stores
//! their keys as `remote`, from where they reach this region's phones through the public feed
//! only.
//!
//! For each producer, a pull does the following, within the peer's deadline:
//! 1. It reads the producer's index.
//! 2. It takes every batch after `lastBatchID`, in order. A batch is a chunk number for an
//!    enfeed producer, or a line of the index for a `gaen-index` one.
//! 3. It verifies each file's signature before it decodes it, within size and key limits
//!    ([`OpenedExport`]), then checks every key against the upload rules. Keys that fail are
//!    dropped and counted by reason; the others are kept.
//! 4. It stores the keys, deduplicated by key data, then moves `lastBatchID` past the batch.
//!    A pull that dies between those two steps repeats the batch, and deduplication makes that
//!    harmless.
//! 5. A file refused as a whole (unverified, broken, too large, of another region) is retried
//!    while it is the producer's newest: the producer may fix it, or its new signing key may
//!    not have reached this region yet. Once a newer file is listed, the refused one is
//!    skipped, logged and reported, so a producer never stalls on one file. A file that could
//!    not be fetched at all stops the pull until the next run.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::domain::config::Config;
use crate::domain::export::{ExportError, ExportLimits, OpenedExport};
use crate::domain::feed::{Feed, FeedIndex};
use crate::domain::key::{DiagnosisKey, RegionId, interval_of};
use crate::domain::metrics::Metrics;
use crate::domain::peers::{FeedFormat, PeerConfig, Replication};
use crate::domain::signature::{KeyWindow, VerificationKey};
use crate::domain::upload::{KeyProblem, check_key};
use crate::ports::{
    Clock, ConsumerStateStore, Fetch, FetchError, IfRevised, Inserted, KeyStore, NewKeys,
    PeerState, StoreError, StoredKey, UnixSeconds, fold_revisions,
};

/// Largest index accepted from a producer.
const MAX_INDEX_BYTES: usize = 1 << 20;
/// A producer may ask to be polled again at most this far ahead.
const MAX_POLL_DELAY: u64 = 86_400;

/// A peer backend this region pulls from: its configuration, its verification keys (each
/// valid in its window), and the client that reaches it.
pub struct Producer {
    pub config: PeerConfig,
    keys: Vec<(VerificationKey, KeyWindow)>,
    fetch: Arc<dyn Fetch>,
}

impl Producer {
    /// A producer reached through `fetch`, whose files are signed by any of `keys`.
    pub fn new(config: PeerConfig, keys: Vec<VerificationKey>, fetch: Arc<dyn Fetch>) -> Self {
        let keys = keys
            .into_iter()
            .map(|key| (key, KeyWindow::ALWAYS))
            .collect();
        Self::with_windows(config, keys, fetch)
    }

    /// A producer whose keys are each valid only within their window.
    pub fn with_windows(
        config: PeerConfig,
        keys: Vec<(VerificationKey, KeyWindow)>,
        fetch: Arc<dyn Fetch>,
    ) -> Self {
        Self {
            config,
            keys,
            fetch,
        }
    }

    /// The keys valid at `now`.
    fn keys_at(&self, now: UnixSeconds) -> Vec<VerificationKey> {
        self.keys
            .iter()
            .filter(|(_, window)| window.contains(now))
            .map(|(key, _)| key.clone())
            .collect()
    }
}

/// Why a pull from one producer stopped, or one of its files was refused.
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
    #[error("no answer within the peer's deadline of {0} s; the next run goes on from here")]
    Deadline(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PullError {
    /// Whether the file itself was refused (as opposed to not reached): such a file is skipped
    /// once a newer one exists.
    fn refuses_the_file(&self) -> bool {
        match self {
            Self::File { .. } | Self::WrongRegion { .. } => true,
            Self::Fetch(FetchError::TooLarge { .. }) => true,
            Self::Fetch(FetchError::Status { status, .. }) => matches!(status, 404 | 410),
            _ => false,
        }
    }
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
    /// Keys of verified files left out, by reason (`bad_rolling_period`, `key_in_future`,
    /// `bad_key_length`, `duplicate_key`, ...).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub dropped: BTreeMap<&'static str, u64>,
    /// Files refused as a whole and skipped, since newer ones exist.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedBatch>,
    /// Why the pull stopped early, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A file refused and passed over.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedBatch {
    pub batch: String,
    pub error: String,
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
    /// The producers, replaced as a whole when the configuration changes (a registry refresh).
    producers: RwLock<Arc<Vec<Producer>>>,
    keys: Arc<dyn KeyStore>,
    state: Arc<dyn ConsumerStateStore>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// This backend's region: the per-region feed it pulls is named by it.
    own: RegionId,
    /// The retention period T of the keys it stores.
    retention: u64,
    /// The time one producer may take per run.
    deadline: Duration,
    limits: ExportLimits,
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
            producers: RwLock::new(Arc::new(producers)),
            keys,
            state,
            clock,
            metrics,
            own: config.region,
            retention: config.retention(),
            deadline: Duration::from_secs(config.peer_deadline.max(1)),
            limits: ExportLimits::default(),
        }
    }

    /// Replaces the producers; a run in progress finishes with the ones it started with.
    pub fn set_producers(&self, producers: Vec<Producer>) {
        *self.producers.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(producers);
    }

    fn current(&self) -> Arc<Vec<Producer>> {
        self.producers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Each producer's region, address, and when it asked to be polled next (none where its
    /// state cannot be read).
    pub async fn next_polls(&self) -> Vec<(RegionId, String, Option<UnixSeconds>)> {
        let mut polls = Vec::new();
        for producer in self.current().iter() {
            let region = producer.config.region;
            let next = match self.state.load_peer(region).await {
                Ok(state) => Some(state.recommended_next_poll_time),
                Err(e) => {
                    tracing::warn!(peer = %region, error = %e, "cannot read a peer's state");
                    None
                }
            };
            polls.push((region, producer.config.url.clone(), next));
        }
        polls
    }

    /// Pulls every producer that is due, or every producer when `poll` is [`Poll::Now`]. A
    /// producer that fails, or takes longer than its deadline, is logged, counted and reported;
    /// the others are pulled all the same.
    pub async fn run(&self, poll: Poll) -> ConsumerReport {
        let mut report = ConsumerReport::default();
        for producer in self.current().iter() {
            let mut peer = PeerReport {
                region: producer.config.region.to_string(),
                ..PeerReport::default()
            };
            let pull = tokio::time::timeout(self.deadline, self.pull(producer, poll, &mut peer));
            let pulled = match pull.await {
                Ok(result) => result,
                Err(_) => Err(PullError::Deadline(self.deadline.as_secs())),
            };
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
        for (reason, count) in &peer.dropped {
            metrics
                .peer_keys_refused
                .add(&[labels[0], reason], *count as f64);
        }
        if !peer.skipped.is_empty() {
            metrics
                .peer_files_skipped
                .add(&labels, peer.skipped.len() as f64);
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
        let count = batches.len();
        for (position, (batch, url)) in batches.into_iter().enumerate() {
            match self.take(producer, &batch, &url, now, report).await {
                Ok(()) => {}
                Err(error) if error.refuses_the_file() && position + 1 < count => {
                    tracing::warn!(peer = %region, %batch, %error, "file refused and skipped");
                    report.skipped.push(SkippedBatch {
                        batch: batch.clone(),
                        error: error.to_string(),
                    });
                }
                Err(error) => return Err(error),
            }
            state.last_batch_id = Some(batch);
            self.state.save_peer(region, &state).await?;
        }
        state.recommended_next_poll_time = next_poll.clamp(now, now + MAX_POLL_DELAY);
        self.state.save_peer(region, &state).await?;
        Ok(())
    }

    /// Fetches, checks and stores one batch.
    async fn take(
        &self,
        producer: &Producer,
        batch: &str,
        url: &str,
        now: UnixSeconds,
        report: &mut PeerReport,
    ) -> Result<(), PullError> {
        let bytes = producer.fetch.get(url, self.limits.max_zip_bytes).await?;
        let (keys, revised) = self.checked_keys(producer, batch, &bytes, now, report)?;
        drop(bytes);
        let count = keys.len() + revised.len();
        let peer = producer.config.region;
        let revisions = remote_keys(revised, peer, now, self.retention).map(StoredKey::as_revision);
        // A file may hold a key and its revision (revised before its first export).
        let (revisions, keys): (Vec<StoredKey>, Vec<StoredKey>) = fold_revisions(
            remote_keys(keys, peer, now, self.retention)
                .chain(revisions)
                .collect(),
        )
        .into_iter()
        .partition(|k| k.revision);
        report.stale += (count - keys.len() - revisions.len()) as u64;
        let inserted = self
            .keys
            .insert(NewKeys {
                keys,
                revisions,
                // A file read again (after a crash, or listed twice) revises nothing twice.
                if_revised: IfRevised::Skip,
                claim: None,
                now,
            })
            .await?;
        let (Inserted::Stored(new) | Inserted::Replayed(new)) = inserted;
        report.imported += u64::from(new);
        report.batches += 1;
        tracing::info!(peer = %producer.config.region, %batch, keys = count, new, "batch imported");
        Ok(())
    }

    /// The keys and the revised keys of one batch: the file's signature is verified before
    /// anything of it is decoded; then every key that cannot be read or breaks the rules is
    /// dropped and counted, and the others are kept.
    fn checked_keys(
        &self,
        producer: &Producer,
        batch: &str,
        bytes: &[u8],
        now: UnixSeconds,
        report: &mut PeerReport,
    ) -> Result<(Vec<DiagnosisKey>, Vec<DiagnosisKey>), PullError> {
        let file_error = |error| PullError::File {
            batch: batch.to_string(),
            error,
        };
        let opened = OpenedExport::open(bytes, &self.limits).map_err(file_error)?;
        opened.verify(&producer.keys_at(now)).map_err(file_error)?;
        let file = opened.decode().map_err(file_error)?;
        if file.header.region != producer.config.region.as_str() {
            return Err(PullError::WrongRegion {
                expected: producer.config.region,
                found: file.header.region,
            });
        }
        let region = producer.config.region;
        let mut dropped: BTreeMap<&'static str, u64> = BTreeMap::new();
        for example in &file.malformed.examples {
            tracing::debug!(peer = %region, %batch, problem = %example, "key dropped");
        }
        for (code, count) in &file.malformed.by_code {
            *dropped.entry(*code).or_default() += *count;
        }
        let mut check = |keys: Vec<DiagnosisKey>| {
            let mut seen = HashSet::with_capacity(keys.len());
            let mut kept = Vec::with_capacity(keys.len());
            for key in keys {
                if !seen.insert(key.key_data) {
                    *dropped.entry("duplicate_key").or_default() += 1;
                    continue;
                }
                match check_key(&key, interval_of(now)) {
                    Ok(()) => kept.push(key),
                    Err(KeyProblem::TooOld) => report.stale += 1,
                    Err(problem) => {
                        tracing::debug!(peer = %region, %batch, %problem, "key dropped");
                        *dropped.entry(problem.code()).or_default() += 1;
                    }
                }
            }
            kept
        };
        let keys = check(file.keys);
        let revised = check(file.revised_keys);
        if !dropped.is_empty() {
            tracing::warn!(peer = %region, %batch, ?dropped, kept = keys.len(), "keys dropped");
        }
        for (reason, count) in dropped {
            *report.dropped.entry(reason).or_default() += count;
        }
        Ok((keys, revised))
    }
}

/// The batches of an enfeed producer after the last one taken, with the URLs of their chunks,
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
    let last: u32 = state
        .last_batch_id
        .as_deref()
        .and_then(|id| id.parse().ok())
        .unwrap_or(0);
    let (numbers, next_poll) = read_json_index(&body, producer.config.region, last)?;
    let batches = numbers
        .into_iter()
        .map(|n| (n.to_string(), producer.config.url_of(&feed.chunk_path(n))))
        .collect();
    Ok((batches, next_poll))
}

/// A producer's JSON index, read as the consumer trusts it: it must be of `region`, and its
/// newest chunk must not be older than chunk `last`, taken already. The chunks after `last`,
/// ascending and each once, and when to poll next.
pub fn read_json_index(
    body: &[u8],
    region: RegionId,
    last: u32,
) -> Result<(Vec<u32>, UnixSeconds), PullError> {
    let index: FeedIndex =
        serde_json::from_slice(body).map_err(|e| PullError::BadIndex(e.to_string()))?;
    if index.region != region {
        return Err(PullError::WrongRegion {
            expected: region,
            found: index.region.to_string(),
        });
    }
    let newest = index.chunks.iter().copied().max().unwrap_or(0);
    if newest < last {
        return Err(PullError::WentBackwards { last, newest });
    }
    let mut numbers: Vec<u32> = index.chunks.into_iter().filter(|n| *n > last).collect();
    numbers.sort_unstable();
    numbers.dedup();
    Ok((numbers, index.recommended_next_poll_time))
}

/// The files listed in an `index.txt` after the last one taken: Google's layout (lines such as
/// `exposureKeyExport-US/1590159600-1590246000-00001.zip`, starting with the time they cover)
/// or enfeed's (`v1/a2a/keys/17`). Lines are taken in natural order, numbers compared as
/// numbers, which is time order in both. There is no poll hint.
async fn gaen_index_batches(
    producer: &Producer,
    state: &PeerState,
) -> Result<(Vec<(String, String)>, UnixSeconds), PullError> {
    let body = producer
        .fetch
        .get(&producer.config.index_url(), MAX_INDEX_BYTES)
        .await?;
    let batches = read_text_index(body, state.last_batch_id.as_deref())?
        .into_iter()
        .map(|line| {
            let url = producer.config.export_url(&line);
            (line, url)
        })
        .collect();
    Ok((batches, 0))
}

/// The files an `index.txt` lists after `last` (the last one taken, if any), in natural
/// order and each once; every line must be a plain relative path.
pub fn read_text_index(body: Vec<u8>, last: Option<&str>) -> Result<Vec<String>, PullError> {
    let text = String::from_utf8(body)
        .map_err(|_| PullError::BadIndex("index.txt is not UTF-8".into()))?;
    let mut lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if let Some(bad) = lines.iter().find(|line| !is_relative_path(line)) {
        return Err(PullError::BadIndex(format!(
            "{bad:?} is not a relative path of letters, digits and . _ - /"
        )));
    }
    lines.sort_unstable_by(|a, b| natural_order(a, b));
    lines.dedup();
    Ok(lines
        .into_iter()
        .filter(|line| last.is_none_or(|last| natural_order(line, last).is_gt()))
        .map(str::to_string)
        .collect())
}

/// Whether an index line is a plain relative path: no scheme, no `..`, no query.
fn is_relative_path(line: &str) -> bool {
    !line.starts_with('/')
        && line
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
        && line.split('/').all(|segment| segment != "..")
}

/// Compares two paths with their runs of digits compared as numbers: `v1/keys/9` comes before
/// `v1/keys/10`; names of equal-width timestamps compare as they would as text.
fn natural_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> impl Iterator<Item = (bool, &str)> {
        s.as_bytes()
            .chunk_by(|x, y| x.is_ascii_digit() == y.is_ascii_digit())
            .map(|run| {
                let text = std::str::from_utf8(run).expect("split between ASCII bytes");
                (run[0].is_ascii_digit(), text)
            })
    }
    fn key((digits, text): (bool, &str)) -> (bool, usize, &str, &str) {
        let number = if digits {
            text.trim_start_matches('0')
        } else {
            ""
        };
        (!digits, number.len(), number, text)
    }
    parts(a).map(key).cmp(parts(b).map(key))
}

/// A peer's keys as this region stores them. A remote key's retention is counted from the
/// key's own rolling start, which is before it reached any backend: so it is never kept longer
/// than a local key uploaded the same day, however many hops it took (SP3 across regions).
/// Keys whose retention has already ended are left out.
fn remote_keys(
    keys: Vec<DiagnosisKey>,
    peer: RegionId,
    now: UnixSeconds,
    retention: u64,
) -> impl Iterator<Item = StoredKey> {
    keys.into_iter()
        .map(move |key| StoredKey::remote(key, peer, now, retention))
        .filter(move |stored| stored.expires_at > now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::key::ReportType;

    #[test]
    fn a_remote_key_is_kept_from_its_rolling_start_never_past_retention() {
        let day = 86_400;
        let now = 100 * day;
        let key = |start_day: u64| DiagnosisKey {
            key_data: [start_day as u8; 16],
            rolling_start: interval_of(start_day * day),
            rolling_period: 144,
            transmission_risk: 0,
            report_type: ReportType::ConfirmedTest,
            days_since_onset: None,
        };
        let stored: Vec<_> = remote_keys(
            vec![key(95), key(80), key(100)],
            "DE".parse().unwrap(),
            now,
            14 * day,
        )
        .collect();
        let expiry: Vec<_> = stored.iter().map(|s| s.expires_at / day).collect();
        // Day 80's key ended its 14 days before it arrived: left out.
        assert_eq!(expiry, [109, 114]);
        assert!(
            stored
                .iter()
                .all(|s| s.origin == crate::ports::Origin::Remote)
        );
    }

    #[test]
    fn index_lines_take_numbers_as_numbers() {
        let mut lines = vec![
            "v1/keys/10",
            "v1/keys/9",
            "v1/keys/100",
            "exposureKeyExport-US/1590159600-1590246000-00002.zip",
            "exposureKeyExport-US/1590159600-1590246000-00001.zip",
            "exposureKeyExport-US/1590073200-1590159600-00001.zip",
        ];
        lines.sort_by(|a, b| natural_order(a, b));
        assert_eq!(
            lines,
            [
                "exposureKeyExport-US/1590073200-1590159600-00001.zip",
                "exposureKeyExport-US/1590159600-1590246000-00001.zip",
                "exposureKeyExport-US/1590159600-1590246000-00002.zip",
                "v1/keys/9",
                "v1/keys/10",
                "v1/keys/100",
            ]
        );
        assert!(natural_order("v1/keys/007", "v1/keys/7").is_ne());
    }

    #[test]
    fn index_lines_are_plain_relative_paths() {
        for good in ["v1/a2a/keys/3", "exposures/IT/1-2-00001.zip"] {
            assert!(is_relative_path(good), "{good}");
        }
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../b",
            "https://x/y",
            "a?b",
            "a b",
        ] {
            assert!(!is_relative_path(bad), "{bad}");
        }
    }

    #[test]
    fn a_json_index_gives_the_chunks_after_the_last_taken_once_each() {
        let de: RegionId = "DE".parse().unwrap();
        let body = br#"{"region": "DE", "chunks": [5, 2, 3, 5, 4], "recommendedNextPollTime": 9}"#;
        assert_eq!(read_json_index(body, de, 2).unwrap(), (vec![3, 4, 5], 9));
        assert!(matches!(
            read_json_index(body, de, 6),
            Err(PullError::WentBackwards { last: 6, newest: 5 })
        ));
        assert!(matches!(
            read_json_index(body, "AT".parse().unwrap(), 0),
            Err(PullError::WrongRegion { .. })
        ));
        assert!(matches!(
            read_json_index(b"{\"region\": \"DE\"", de, 0),
            Err(PullError::BadIndex(_))
        ));
    }

    #[test]
    fn a_text_index_gives_the_files_after_the_last_taken_in_order() {
        let body = b"v1/keys/10\r\n  v1/keys/9\n\nv1/keys/11\nv1/keys/10\n".to_vec();
        let all = ["v1/keys/9", "v1/keys/10", "v1/keys/11"];
        assert_eq!(read_text_index(body.clone(), None).unwrap(), all);
        assert_eq!(read_text_index(body, Some("v1/keys/9")).unwrap(), all[1..]);
        for bad in [vec![0xff, b'\n'], b"v1/keys/1\n../x\n".to_vec()] {
            assert!(matches!(
                read_text_index(bad, None),
                Err(PullError::BadIndex(_))
            ));
        }
    }
}
