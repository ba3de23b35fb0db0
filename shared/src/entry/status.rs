//! What the operator sees of a region: its status and its peers' (`GET /v1/admin/status`, `/v1/admin/peers`, and the console's
//! operator pages). Every count that `/metrics` also has is read from the same
//! [`Metrics`](crate::domain::metrics::Metrics), so the two always agree.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::metrics::{Family, HistorySeries, Sample};
use crate::domain::signature::SignatureInfo;
use crate::entry::backend::Backend;
use crate::ports::{KeyCounts, StoreError, UnixSeconds};
use crate::services::dataprep::DataPrepReport;

/// A region's status at `now`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionStatus {
    pub region: String,
    pub now: UnixSeconds,
    pub retention_days: u32,
    pub dataprep_interval: u64,
    /// The last data-prep run this process completed.
    pub last_dataprep: Option<LastDataPrep>,
    /// When data-prep last completed, as the publication state says (also before a restart).
    pub dataprep_last_completed: Option<UnixSeconds>,
    /// Data-prep runs by outcome, since the process started.
    pub dataprep_runs: BTreeMap<String, f64>,
    /// Chunks and keys published per feed since the process started.
    pub published: Vec<FeedCounts>,
    /// Keys in the store now, by origin.
    pub keys_stored: KeyCounts,
    /// Uploads answered by outcome since the process started.
    pub uploads: BTreeMap<String, f64>,
    pub codes_issued: f64,
    pub wrong_codes: f64,
    /// The keys chunks are signed with, newest first.
    pub signing_keys: Vec<SignatureInfo>,
    /// Accepted uploads per hour and keys published per day over the retention window.
    pub history: HistorySeries,
}

/// A completed data-prep run.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastDataPrep {
    pub at: UnixSeconds,
    /// Chunks and keys it published per feed.
    pub feeds: Vec<FeedCounts>,
    pub deleted_chunks: u32,
    pub purged_keys: u64,
}

/// Chunks and keys of one feed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedCounts {
    pub feed: String,
    pub chunks: f64,
    pub keys: f64,
}

/// One peer as its consumer sees it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerStatus {
    pub region: String,
    pub url: String,
    /// When a pull last succeeded (this process).
    pub last_pull: Option<UnixSeconds>,
    /// Seconds since then.
    pub lag_seconds: Option<f64>,
    pub keys_imported: f64,
    /// Keys left out, by reason.
    pub refused: BTreeMap<String, f64>,
    pub failures: f64,
    /// When the peer asked to be polled next.
    pub next_poll: Option<UnixSeconds>,
}

/// The samples of `family` by their first label's value.
fn by_first_label(samples: &[Sample], family: &Family) -> BTreeMap<String, f64> {
    samples
        .iter()
        .filter(|s| s.name == family.name)
        .filter_map(|s| Some((s.labels.first()?.1.clone(), s.value)))
        .collect()
}

impl Backend {
    /// The region's status now.
    pub async fn status(&self) -> Result<RegionStatus, StoreError> {
        let now = self.clock.now();
        let metrics = &self.metrics;
        let samples = metrics.samples(now);
        let chunks = by_first_label(&samples, &metrics.chunks_published);
        let keys = by_first_label(&samples, &metrics.keys_published);
        let published = chunks
            .iter()
            .map(|(feed, chunks)| FeedCounts {
                feed: feed.clone(),
                chunks: *chunks,
                keys: keys.get(feed).copied().unwrap_or(0.0),
            })
            .collect();
        let last_dataprep = self
            .last_dataprep
            .lock()
            .expect("no panic while recording")
            .clone()
            .map(|(at, report)| last_run(at, &report));
        let single = |family: &Family| family.get(&[]).unwrap_or(0.0);
        Ok(RegionStatus {
            region: self.config.region.to_string(),
            now,
            retention_days: self.config.retention_days,
            dataprep_interval: self.config.dataprep_interval,
            last_dataprep,
            dataprep_last_completed: self.health().await.last_dataprep,
            dataprep_runs: by_first_label(&samples, &metrics.dataprep_runs),
            published,
            keys_stored: self.keys.count().await?,
            uploads: by_first_label(&samples, &metrics.uploads),
            codes_issued: single(&metrics.codes_issued),
            wrong_codes: single(&metrics.wrong_codes),
            signing_keys: self
                .verification_keys()
                .into_iter()
                .map(|key| key.info)
                .collect(),
            history: metrics
                .history
                .series(now, u64::from(self.config.retention_days)),
        })
    }

    /// Every configured peer, as the consumer sees it.
    pub async fn peers(&self) -> Vec<PeerStatus> {
        let Some(consumer) = &self.consumer else {
            return Vec::new();
        };
        let now = self.clock.now();
        let metrics = &self.metrics;
        let mut peers = Vec::new();
        for (region, url, next_poll) in consumer.next_polls().await {
            let peer = region.to_string();
            let last_pull = metrics
                .peer_last_success
                .get(&[&peer])
                .map(|at| at as UnixSeconds);
            let refused = metrics
                .samples(now)
                .into_iter()
                .filter(|s| s.name == metrics.peer_keys_refused.name)
                .filter(|s| s.labels.iter().any(|(l, v)| *l == "peer" && *v == peer))
                .filter_map(|s| {
                    let reason = s.labels.iter().find(|(l, _)| *l == "reason")?;
                    Some((reason.1.clone(), s.value))
                })
                .collect();
            peers.push(PeerStatus {
                last_pull,
                lag_seconds: last_pull.map(|at| now.saturating_sub(at) as f64),
                keys_imported: metrics.peer_keys_imported.get(&[&peer]).unwrap_or(0.0),
                failures: metrics.peer_failures.get(&[&peer]).unwrap_or(0.0),
                refused,
                next_poll,
                url,
                region: peer,
            });
        }
        peers
    }
}

fn last_run(at: UnixSeconds, report: &DataPrepReport) -> LastDataPrep {
    let mut feeds: BTreeMap<&str, FeedCounts> = BTreeMap::new();
    for chunk in &report.chunks {
        let feed = chunk.feed();
        let counts = feeds.entry(feed).or_insert_with(|| FeedCounts {
            feed: feed.to_string(),
            ..FeedCounts::default()
        });
        counts.chunks += 1.0;
        counts.keys += f64::from(chunk.keys);
    }
    LastDataPrep {
        at,
        feeds: feeds.into_values().collect(),
        deleted_chunks: report.deleted_chunks,
        purged_keys: report.purged_keys,
    }
}
