//! Data-prep: turns newly publishable keys into signed, immutable chunks on every feed, keeps
//! the feed indexes, and removes what has expired (SP3).
//!
//! A run is safe to repeat, to crash at any point, and to run twice at once:
//! 1. It seals the key store up to now and reads the keys published since the last run.
//! 2. It saves a *plan* first: which chunk numbers of which feeds those keys become, and the
//!    seed of their padding. The save is conditional on the state it read, so two runs can
//!    never plan the same chunk number.
//! 3. It writes each planned chunk with a create-only put. A run that finds a pending plan
//!    (its own, after a crash, or another run's) completes it: the keys and padding are the
//!    same, and a chunk already written is kept as it is.
//! 4. It records the chunks as published (conditionally again) and rewrites the indexes.
//! 5. Chunks whose oldest key is about to expire leave their index; a run later their files
//!    are deleted. Expired keys are purged from the store.
//! 6. The declared regions of keys published by the runs before are dropped from the store:
//!    their per-region files are written, and nothing else needs them (SP2).
//!
//! A run reads at most [`Config::dataprep_max_keys`] keys, so its memory and time are bounded
//! whatever the backlog: a larger range is published over several runs in the store's order,
//! each going on where the one before stopped (the place is part of the plan and of the
//! publication record), and the report says when more keys are waiting.
//!
//! Revisions (a key's new report type) go into the `revised_keys` of the files of the run
//! that reads them, on the same feeds as the key they revise; their key went out earlier.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde::Serialize;

use crate::domain::config::Config;
use crate::domain::digest::sha256;
use crate::domain::export::{ExportError, ExportHeader, MAX_KEYS_PER_FILE};
use crate::domain::feed::{Feed, FeedIndex};
use crate::domain::key::{DiagnosisKey, RegionId};
use crate::domain::metrics::Metrics;
use crate::domain::publication::{
    Backlog, ChunkRecord, FeedRecord, Plan, PlannedChunk, Publication,
};
use crate::domain::retention;
use crate::ports::{
    BlobError, BlobKind, BlobStore, Clock, KeyStore, Origin, PublicationStore, PublishedRange,
    Signer, StoreError, StoredKey, UnixSeconds, fold_revisions, write_export,
};

/// How often a run retries after losing a race with a concurrent run.
const MAX_ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum DataPrepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("gave up after {MAX_ATTEMPTS} races with concurrent data-prep runs")]
    Contended,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataPrepReport {
    /// Chunks written by this run, as feed paths with their numbers.
    pub chunks: Vec<PublishedChunk>,
    pub unlisted_chunks: u32,
    pub deleted_chunks: u32,
    pub purged_keys: u64,
    /// Keys whose declared regions were dropped from the store.
    pub regions_dropped: u64,
    /// The store held more keys than one run takes: the next run goes on where this one
    /// stopped (and may start at once).
    pub more_waiting: bool,
}

impl DataPrepReport {
    /// Adds what a later run did.
    pub fn add(&mut self, later: DataPrepReport) {
        self.chunks.extend(later.chunks);
        self.unlisted_chunks += later.unlisted_chunks;
        self.deleted_chunks += later.deleted_chunks;
        self.purged_keys += later.purged_keys;
        self.regions_dropped += later.regions_dropped;
        self.more_waiting = later.more_waiting;
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedChunk {
    pub path: String,
    pub keys: u32,
    pub padding: u32,
    pub bytes: u64,
}

impl PublishedChunk {
    /// The path of the chunk's feed.
    pub fn feed(&self) -> &str {
        self.path.rsplit_once('/').map_or("", |(feed, _)| feed)
    }
}

/// The feeds a key goes to. Remote keys reach phones only, never back to other backends.
pub fn feeds_of(key: &StoredKey, own: RegionId) -> impl Iterator<Item = Feed> + '_ {
    let local = key.origin == Origin::Local;
    let backend_feeds = local.then(|| {
        std::iter::once(Feed::AllToAll).chain(
            key.regions
                .iter()
                .filter(move |r| **r != own)
                .map(|r| Feed::Region(*r)),
        )
    });
    std::iter::once(Feed::Public).chain(backend_feeds.into_iter().flatten())
}

/// Data-prep, with the ports it works on.
#[derive(Clone)]
pub struct DataPrep {
    config: Config,
    keys: Arc<dyn KeyStore>,
    publications: Arc<dyn PublicationStore>,
    blobs: Arc<dyn BlobStore>,
    signer: Arc<dyn Signer>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl DataPrep {
    pub fn new(
        config: Config,
        keys: Arc<dyn KeyStore>,
        publications: Arc<dyn PublicationStore>,
        blobs: Arc<dyn BlobStore>,
        signer: Arc<dyn Signer>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            config,
            keys,
            publications,
            blobs,
            signer,
            clock,
            metrics,
        }
    }

    /// Runs data-prep once, and counts what it did.
    pub async fn run(&self) -> Result<DataPrepReport, DataPrepError> {
        let started = std::time::Instant::now();
        let outcome = self.run_to_completion().await;
        let metrics = &self.metrics;
        match &outcome {
            Ok(report) => {
                metrics.dataprep_runs.inc(&["ok"]);
                metrics
                    .dataprep_seconds
                    .set(&[], started.elapsed().as_secs_f64());
                metrics
                    .dataprep_last_success
                    .set(&[], self.clock.now() as f64);
                for chunk in &report.chunks {
                    let feed = chunk.feed();
                    metrics.chunks_published.inc(&[feed]);
                    metrics.keys_published.add(&[feed], f64::from(chunk.keys));
                    if feed == Feed::Public.to_string() {
                        let now = self.clock.now();
                        metrics.history.keys_published(now, u64::from(chunk.keys));
                    }
                }
            }
            Err(e) => {
                metrics.dataprep_runs.inc(&["failed"]);
                match e {
                    DataPrepError::Store(StoreError::Backend(_)) => {
                        metrics.storage_errors.inc(&["keys"])
                    }
                    DataPrepError::Blob(_) => metrics.storage_errors.inc(&["blobs"]),
                    _ => {}
                }
            }
        }
        outcome
    }

    async fn run_to_completion(&self) -> Result<DataPrepReport, DataPrepError> {
        for _ in 0..MAX_ATTEMPTS {
            match self.attempt().await {
                Err(DataPrepError::Store(StoreError::Conflict(reason))) => {
                    tracing::info!(%reason, "lost a race with a concurrent data-prep run; retrying");
                }
                outcome => return outcome,
            }
        }
        Err(DataPrepError::Contended)
    }

    async fn attempt(&self) -> Result<DataPrepReport, DataPrepError> {
        let now = self.clock.now();
        let (mut version, state) = self.publications.load().await?;
        let (plan, keys) = match &state.pending {
            Some(plan) => {
                let range = PublishedRange {
                    after: plan.after,
                    through: plan.through,
                    now: plan.created_at,
                };
                let max_keys = usize::try_from(plan.max_keys).unwrap_or(usize::MAX);
                let page = self
                    .keys
                    .read_published(range, plan.from.as_ref(), max_keys)
                    .await?;
                (plan.clone(), fold_revisions(page.keys))
            }
            None => {
                let (through, from) = match &state.backlog {
                    // A range too large for one run: go on where the last run stopped.
                    Some(backlog) => (backlog.through, Some(backlog.read_to.clone())),
                    // Each run seals past the previous one, even within the hour, so that a key
                    // stored just after the previous run (and so just past its seal) is never
                    // left waiting. The seal is kept to the hour, as keys' times are (SP2):
                    // keys stored behind it are placed a second past it, and tell no more.
                    None => {
                        let through = retention::hour_of(now).max(state.published_through + 1);
                        (self.keys.seal(through).await?, None)
                    }
                };
                let range = PublishedRange {
                    // A key published before the retention window has expired: never read
                    // further back.
                    after: state
                        .published_through
                        .max(retention_start(&self.config, now)),
                    through,
                    now,
                };
                let max_keys = self.config.dataprep_max_keys.max(1);
                let page = self
                    .keys
                    .read_published(range, from.as_ref(), max_keys)
                    .await?;
                let keys = fold_revisions(page.keys);
                let mut plan = plan_chunks(&state, &keys, range, self.config.region);
                plan.from = from;
                plan.to = page.next;
                plan.max_keys = max_keys as u64;
                if !plan.chunks.is_empty() {
                    let planned = Publication {
                        pending: Some(plan.clone()),
                        ..state.clone()
                    };
                    self.publications.save(version, &planned).await?;
                    version += 1;
                }
                (plan, keys)
            }
        };
        let built = self.build_chunks(&plan, &keys).await?;
        drop(keys);
        // The per-region files of every key published by the runs before are written: their
        // declared regions are needed no more. A run that loses the race to save drops them
        // again, which changes nothing.
        let mut regions_dropped = 0;
        let dropped_through = state
            .regions_dropped_through
            .max(retention_start(&self.config, now));
        if state.published_through > dropped_through {
            regions_dropped = self
                .keys
                .forget_regions(dropped_through, state.published_through)
                .await?;
        }
        let mut done = Publication {
            pending: None,
            // A range taken in parts is published once its last part is.
            published_through: match plan.to {
                Some(_) => state.published_through,
                None => plan.through,
            },
            backlog: plan.to.clone().map(|read_to| Backlog {
                through: plan.through,
                read_to,
            }),
            completed_at: now,
            regions_dropped_through: state.published_through.max(state.regions_dropped_through),
            ..state
        };
        for chunk in &built {
            let feed = done.feeds.entry(chunk.feed).or_default();
            feed.last_number = feed.last_number.max(chunk.record.number);
            feed.chunks.push(chunk.record.clone());
        }
        self.publications.save(version, &done).await?;
        let mut report = DataPrepReport {
            chunks: built.into_iter().map(|c| c.published).collect(),
            regions_dropped,
            more_waiting: plan.to.is_some(),
            ..DataPrepReport::default()
        };
        self.retire_expired(version + 1, done, now, &mut report)
            .await?;
        report.purged_keys = self.keys.purge_expired(now).await?;
        tracing::info!(
            chunks = report.chunks.len(),
            keys = report.chunks.iter().map(|c| u64::from(c.keys)).sum::<u64>(),
            unlisted = report.unlisted_chunks,
            deleted = report.deleted_chunks,
            purged = report.purged_keys,
            regions_dropped = report.regions_dropped,
            more_waiting = report.more_waiting,
            "data-prep run complete"
        );
        Ok(report)
    }

    /// Writes every chunk of `plan`; chunks already written (by an earlier attempt) are kept.
    async fn build_chunks(
        &self,
        plan: &Plan,
        keys: &[StoredKey],
    ) -> Result<Vec<BuiltChunk>, DataPrepError> {
        let own = self.config.region;
        let mut per_feed: BTreeMap<Feed, Vec<&StoredKey>> = BTreeMap::new();
        for key in keys {
            for feed in feeds_of(key, own) {
                per_feed.entry(feed).or_default().push(key);
            }
        }
        for feed_keys in per_feed.values_mut() {
            feed_keys.sort_unstable_by_key(|k| k.key.key_data);
        }
        let mut built = Vec::with_capacity(plan.chunks.len());
        for planned in &plan.chunks {
            let feed_keys = per_feed
                .get(&planned.feed)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let start = (planned.part as usize * MAX_KEYS_PER_FILE).min(feed_keys.len());
            let slice = &feed_keys[start..(start + MAX_KEYS_PER_FILE).min(feed_keys.len())];
            // References, not copies: a file holds up to a run's keys.
            let of_kind = |revision: bool| -> Vec<&DiagnosisKey> {
                let kind = slice.iter().filter(|k| k.revision == revision);
                kind.map(|k| &k.key).collect()
            };
            let (mut file_keys, revised_keys) = (of_kind(false), of_kind(true));
            let fakes = match planned.feed {
                Feed::Public => padding(&file_keys, self.config.padding_min, plan, planned),
                _ => Vec::new(),
            };
            if !fakes.is_empty() {
                file_keys.extend(&fakes);
                file_keys.sort_unstable_by_key(|k| k.key_data);
            }
            let padding = fakes.len() as u32;
            let header = ExportHeader {
                start_timestamp: plan.after,
                // Several files of one window differ in their end, as phones require.
                end_timestamp: plan.through + u64::from(planned.part),
                region: own.to_string(),
                batch_num: 1,
                batch_size: 1,
            };
            let zip =
                write_export(&header, &file_keys, &revised_keys, self.signer.as_ref()).await?;
            let bytes = zip.len() as u64;
            let path = planned.feed.chunk_path(planned.number);
            let expires_at = slice
                .iter()
                .map(|k| k.expires_at)
                .min()
                .unwrap_or(plan.created_at);
            // Caches keep a chunk no longer than until it may leave its index (SP3).
            let fresh_until = expires_at.saturating_sub(self.config.dataprep_interval);
            let kind = BlobKind::Chunk { fresh_until };
            self.blobs.put_new(&path, kind, zip).await?;
            let real = slice.len() as u32;
            built.push(BuiltChunk {
                feed: planned.feed,
                record: ChunkRecord {
                    number: planned.number,
                    published_at: plan.created_at,
                    expires_at,
                    keys: real,
                    bytes,
                    unlisted_at: None,
                },
                published: PublishedChunk {
                    path,
                    keys: real,
                    padding,
                    bytes,
                },
            });
        }
        Ok(built)
    }

    /// Takes chunks about to expire out of their indexes, deletes the files of chunks taken out by
    /// an earlier run, and rewrites every index.
    async fn retire_expired(
        &self,
        version: u64,
        mut state: Publication,
        now: UnixSeconds,
        report: &mut DataPrepReport,
    ) -> Result<(), DataPrepError> {
        let margin = self.config.dataprep_interval;
        for (feed, record) in &mut state.feeds {
            for chunk in &mut record.chunks {
                match chunk.unlisted_at {
                    None if chunk.expires_at <= now + margin => {
                        chunk.unlisted_at = Some(now);
                        report.unlisted_chunks += 1;
                    }
                    Some(at) if at + margin <= now => {
                        self.blobs.delete(&feed.chunk_path(chunk.number)).await?;
                        report.deleted_chunks += 1;
                    }
                    _ => {}
                }
            }
            record
                .chunks
                .retain(|c| c.unlisted_at.is_none_or(|at| at + margin > now));
        }
        if report.unlisted_chunks + report.deleted_chunks > 0 {
            match self.publications.save(version, &state).await {
                // A concurrent run got there first; it retires the same chunks.
                Ok(()) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // The public and all-to-all feeds always have an index, if an empty one.
        let always = [
            (Feed::Public, FeedRecord::default()),
            (Feed::AllToAll, FeedRecord::default()),
        ];
        let mut feeds: BTreeMap<Feed, FeedRecord> = always.into_iter().collect();
        feeds.extend(state.feeds);
        for (feed, record) in &feeds {
            let listed: Vec<u32> = record
                .chunks
                .iter()
                .filter(|c| c.unlisted_at.is_none())
                .map(|c| c.number)
                .collect();
            // The same list as text, for readers that discover files by `index.txt`.
            let text = feed.text_index(&listed).into_bytes();
            self.blobs
                .put(&feed.text_index_path(), BlobKind::Index, text)
                .await?;
            let index = FeedIndex {
                region: self.config.region,
                chunks: listed,
                recommended_next_poll_time: now + self.config.dataprep_interval,
            };
            let json = serde_json::to_vec(&index).expect("indexes serialize");
            self.blobs
                .put(&feed.index_path(), BlobKind::Index, json)
                .await?;
        }
        Ok(())
    }
}

/// The earliest publication time of a key not yet expired at `now`.
fn retention_start(config: &Config, now: UnixSeconds) -> UnixSeconds {
    now.saturating_sub(config.retention())
}

/// Assigns chunk numbers to the keys read from `range`.
fn plan_chunks(
    state: &Publication,
    keys: &[StoredKey],
    range: PublishedRange,
    own: RegionId,
) -> Plan {
    let mut chunks = Vec::new();
    for (feed, count) in keys_per_feed(keys, own) {
        let last = state.feeds.get(&feed).map_or(0, |f| f.last_number);
        let parts = count.div_ceil(MAX_KEYS_PER_FILE) as u32;
        chunks.extend((0..parts).map(|part| PlannedChunk {
            feed,
            number: last + 1 + part,
            part,
        }));
    }
    let mut padding_seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut padding_seed)
        .expect("the system random source works");
    Plan {
        after: range.after,
        through: range.through,
        created_at: range.now,
        padding_seed,
        chunks,
        from: None,
        to: None,
        max_keys: u64::MAX,
    }
}

fn keys_per_feed(keys: &[StoredKey], own: RegionId) -> BTreeMap<Feed, usize> {
    let mut counts = BTreeMap::new();
    for feed in keys.iter().flat_map(|k| feeds_of(k, own)) {
        *counts.entry(feed).or_insert(0) += 1;
    }
    counts
}

struct BuiltChunk {
    feed: Feed,
    record: ChunkRecord,
    published: PublishedChunk,
}

/// The random keys that pad a file of fewer than `min` real keys (but at least one), copying
/// real keys' metadata, to `min` plus up to 99 more, as Google's reference server does.
/// Deterministic for a plan, so a rebuilt chunk holds the same keys.
fn padding(
    keys: &[&DiagnosisKey],
    min: usize,
    plan: &Plan,
    chunk: &PlannedChunk,
) -> Vec<DiagnosisKey> {
    if keys.is_empty() || keys.len() >= min {
        return Vec::new();
    }
    let feed = chunk.feed.to_string();
    let seed = sha256(&[
        &plan.padding_seed,
        feed.as_bytes(),
        &chunk.part.to_be_bytes(),
    ]);
    let mut rng = ChaCha20Rng::from_seed(seed);
    let target = min + (rng.next_u32() % 100) as usize;
    (keys.len()..target)
        .map(|_| {
            let mut fake = keys[rng.next_u32() as usize % keys.len()].clone();
            rng.fill_bytes(&mut fake.key_data);
            fake
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::key::ReportType;

    fn stored(origin: Origin, regions: &[&str]) -> StoredKey {
        StoredKey {
            key: DiagnosisKey {
                key_data: [7; 16],
                rolling_start: 1,
                rolling_period: 144,
                transmission_risk: 0,
                report_type: ReportType::ConfirmedTest,
                days_since_onset: None,
            },
            origin,
            regions: regions.iter().map(|r| r.parse().unwrap()).collect(),
            publish_at: 0,
            expires_at: 0,
            revision: false,
            peer: None,
        }
    }

    #[test]
    fn local_keys_reach_every_feed_they_were_declared_for_remote_keys_phones_only() {
        let own: RegionId = "CH".parse().unwrap();
        let feeds: Vec<_> = feeds_of(&stored(Origin::Local, &["CH", "DE", "FR"]), own).collect();
        assert_eq!(
            feeds,
            vec![
                Feed::Public,
                Feed::AllToAll,
                Feed::Region("DE".parse().unwrap()),
                Feed::Region("FR".parse().unwrap())
            ]
        );
        let remote: Vec<_> = feeds_of(&stored(Origin::Remote, &[]), own).collect();
        assert_eq!(remote, vec![Feed::Public]);
    }

    #[test]
    fn padding_is_deterministic_and_keeps_metadata() {
        let plan = Plan {
            after: 0,
            through: 10,
            created_at: 10,
            padding_seed: [3; 32],
            chunks: vec![],
            from: None,
            to: None,
            max_keys: u64::MAX,
        };
        let chunk = PlannedChunk {
            feed: Feed::Public,
            number: 1,
            part: 0,
        };
        let real = stored(Origin::Local, &[]).key;
        let a = padding(&[&real], 1000, &plan, &chunk);
        assert_eq!(a, padding(&[&real], 1000, &plan, &chunk));
        assert!((999..1099).contains(&a.len()), "{}", a.len());
        assert!(
            a.iter()
                .all(|k| k.rolling_period == 144 && k.rolling_start == 1 && k != &real)
        );
        assert!(padding(&[], 1000, &plan, &chunk).is_empty());
    }
}
