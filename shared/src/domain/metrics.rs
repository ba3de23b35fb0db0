//! The metrics of a region: one vocabulary for both modes. The services count what happens
//! into a [`Metrics`]; the local server renders it as Prometheus text (`GET /metrics`), the
//! Lambda functions as CloudWatch embedded-metric-format log lines, from the same samples.
//!
//! Every metric is a counter or a gauge with a fixed list of label names; a label set's sample
//! appears once it was first counted or set.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::domain::key::UnixSeconds;

/// What a metric measures over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (per process): events counted.
    Counter,
    /// A value that is set: a time, a duration, a size.
    Gauge,
}

/// One metric: its name, help text, label names, and a value per label set.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    values: Mutex<BTreeMap<Vec<String>, Value>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Value {
    /// The value since the process started (counters) or the last value set (gauges).
    total: f64,
    /// What a counter grew by since the last [`Metrics::take_increments`].
    unreported: f64,
}

impl Family {
    const fn new(
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            help,
            kind,
            labels,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    fn with_value(&self, labels: &[&str], change: impl FnOnce(&mut Value)) {
        assert_eq!(labels.len(), self.labels.len(), "labels of {}", self.name);
        let key = labels.iter().map(|l| l.to_string()).collect();
        let mut values = self.values.lock().expect("no panic while counting");
        change(values.entry(key).or_default());
    }

    /// Counts one more event with these label values.
    pub fn inc(&self, labels: &[&str]) {
        self.add(labels, 1.0);
    }

    /// Counts `n` more events with these label values.
    pub fn add(&self, labels: &[&str], n: f64) {
        debug_assert_eq!(self.kind, Kind::Counter, "{} is a gauge", self.name);
        self.with_value(labels, |value| {
            value.total += n;
            value.unreported += n;
        });
    }

    /// Sets the gauge with these label values.
    pub fn set(&self, labels: &[&str], to: f64) {
        debug_assert_eq!(self.kind, Kind::Gauge, "{} is a counter", self.name);
        self.with_value(labels, |value| value.total = to);
    }

    /// The current value with these label values, if it was ever counted or set.
    pub fn get(&self, labels: &[&str]) -> Option<f64> {
        let key: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        let values = self.values.lock().expect("no panic while counting");
        values.get(&key).map(|value| value.total)
    }
}

/// One value of one metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// Every metric a region keeps.
#[derive(Debug)]
pub struct Metrics {
    /// Uploads answered, by outcome: `accepted`, `chaff`, or the error code.
    pub uploads: Family,
    /// Keys stored, by origin (`local` uploads, `remote` keys pulled from peers).
    pub keys_stored: Family,
    /// One-time codes issued.
    pub codes_issued: Family,
    /// Uploads with a wrong one-time code.
    pub wrong_codes: Family,
    /// Uploads refused for too many wrong codes from the same client.
    pub rate_limited: Family,
    /// Windows in which wrong codes from all clients together passed the alarm threshold: a
    /// distributed guessing attack.
    pub guessing_alarms: Family,
    /// Data-prep runs, by outcome (`ok`, `failed`).
    pub dataprep_runs: Family,
    /// Seconds the last data-prep run took.
    pub dataprep_seconds: Family,
    /// When data-prep last completed (Unix seconds).
    pub dataprep_last_success: Family,
    /// Chunks published, by feed.
    pub chunks_published: Family,
    /// Keys published, by feed (padding not counted).
    pub keys_published: Family,
    /// Keys imported from each peer.
    pub peer_keys_imported: Family,
    /// Keys of a peer's files left out, by peer and reason.
    pub peer_keys_refused: Family,
    /// Files of a peer refused as a whole and skipped, by peer.
    pub peer_files_skipped: Family,
    /// Pulls from a peer that failed, by peer.
    pub peer_failures: Family,
    /// Entries of the trust registry refused, by reason.
    pub registry_entries_refused: Family,
    /// Refreshes of the trust registry that failed (the last good configuration stayed).
    pub registry_failures: Family,
    /// When a pull from each peer last succeeded (Unix seconds).
    pub peer_last_success: Family,
    /// Storage operations that failed, by store (`keys`, `blobs`).
    pub storage_errors: Family,
    /// Accepted uploads per hour and keys published per day, for the console's chart.
    pub history: History,
}

impl Default for Metrics {
    fn default() -> Self {
        use Kind::{Counter, Gauge};
        Self {
            uploads: Family::new(
                "enfeed_uploads_total",
                "Uploads answered, by outcome (accepted, chaff, or the error code).",
                Counter,
                &["outcome"],
            ),
            keys_stored: Family::new(
                "enfeed_keys_stored_total",
                "Diagnosis Keys stored, by origin.",
                Counter,
                &["origin"],
            ),
            codes_issued: Family::new(
                "enfeed_codes_issued_total",
                "One-time codes issued.",
                Counter,
                &[],
            ),
            wrong_codes: Family::new(
                "enfeed_wrong_codes_total",
                "Uploads with a wrong one-time code.",
                Counter,
                &[],
            ),
            rate_limited: Family::new(
                "enfeed_rate_limited_total",
                "Uploads refused for too many wrong codes from one client.",
                Counter,
                &[],
            ),
            guessing_alarms: Family::new(
                "enfeed_guessing_alarms_total",
                "Windows in which wrong codes from all clients passed the alarm threshold.",
                Counter,
                &[],
            ),
            dataprep_runs: Family::new(
                "enfeed_dataprep_runs_total",
                "Data-prep runs, by outcome.",
                Counter,
                &["outcome"],
            ),
            dataprep_seconds: Family::new(
                "enfeed_dataprep_duration_seconds",
                "Seconds the last data-prep run took.",
                Gauge,
                &[],
            ),
            dataprep_last_success: Family::new(
                "enfeed_dataprep_last_success_timestamp_seconds",
                "When data-prep last completed, in Unix seconds.",
                Gauge,
                &[],
            ),
            chunks_published: Family::new(
                "enfeed_chunks_published_total",
                "Chunks published, by feed.",
                Counter,
                &["feed"],
            ),
            keys_published: Family::new(
                "enfeed_keys_published_total",
                "Keys published in chunks, by feed (padding not counted).",
                Counter,
                &["feed"],
            ),
            peer_keys_imported: Family::new(
                "enfeed_peer_keys_imported_total",
                "Keys imported from each peer.",
                Counter,
                &["peer"],
            ),
            peer_keys_refused: Family::new(
                "enfeed_peer_keys_refused_total",
                "Keys of a peer's files left out, by peer and reason.",
                Counter,
                &["peer", "reason"],
            ),
            peer_files_skipped: Family::new(
                "enfeed_peer_files_skipped_total",
                "Files of a peer refused as a whole and skipped, by peer.",
                Counter,
                &["peer"],
            ),
            registry_entries_refused: Family::new(
                "enfeed_registry_entries_refused_total",
                "Entries of the trust registry refused, by reason.",
                Counter,
                &["reason"],
            ),
            registry_failures: Family::new(
                "enfeed_registry_failures_total",
                "Refreshes of the trust registry that failed verification or could not be read.",
                Counter,
                &[],
            ),
            peer_failures: Family::new(
                "enfeed_peer_failures_total",
                "Pulls from a peer that failed.",
                Counter,
                &["peer"],
            ),
            peer_last_success: Family::new(
                "enfeed_peer_last_success_timestamp_seconds",
                "When a pull from each peer last succeeded, in Unix seconds.",
                Gauge,
                &["peer"],
            ),
            storage_errors: Family::new(
                "enfeed_storage_errors_total",
                "Storage operations that failed, by store.",
                Counter,
                &["store"],
            ),
            history: History::default(),
        }
    }
}

/// Most days [`History`] keeps.
pub const HISTORY_DAYS: u64 = 60;

/// Two counters by time since the process started, as the console draws them: uploads counted
/// as `accepted` in [`Metrics::uploads`], per hour, and keys published in the public feed (as
/// [`Metrics::keys_published`] counts them), per day. Their sums equal those samples as long as
/// no bucket is older than [`HISTORY_DAYS`].
#[derive(Debug, Default)]
pub struct History(Mutex<Buckets>);

#[derive(Debug, Default)]
struct Buckets {
    uploads_by_hour: BTreeMap<UnixSeconds, u64>,
    keys_by_day: BTreeMap<UnixSeconds, u64>,
}

/// Counts by the start of their hour or day (Unix seconds), oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistorySeries {
    pub uploads_per_hour: Vec<(UnixSeconds, u64)>,
    pub keys_published_per_day: Vec<(UnixSeconds, u64)>,
}

impl History {
    fn add(
        &self,
        now: UnixSeconds,
        bucket: UnixSeconds,
        n: u64,
        of: fn(&mut Buckets) -> &mut BTreeMap<UnixSeconds, u64>,
    ) {
        let mut buckets = self.0.lock().expect("no panic while counting");
        let series = of(&mut buckets);
        *series.entry(now - now % bucket).or_default() += n;
        let oldest = now.saturating_sub(HISTORY_DAYS * 86_400);
        series.retain(|start, _| *start >= oldest);
    }

    /// Counts an accepted upload at `now`.
    pub fn upload_accepted(&self, now: UnixSeconds) {
        self.add(now, 3600, 1, |b| &mut b.uploads_by_hour);
    }

    /// Counts `keys` published in the public feed at `now`.
    pub fn keys_published(&self, now: UnixSeconds, keys: u64) {
        self.add(now, 86_400, keys, |b| &mut b.keys_by_day);
    }

    /// The counts of the last `days` days before `now`.
    pub fn series(&self, now: UnixSeconds, days: u64) -> HistorySeries {
        let oldest = now.saturating_sub(days * 86_400);
        let buckets = self.0.lock().expect("no panic while counting");
        let since = |series: &BTreeMap<UnixSeconds, u64>, bucket: u64| {
            series
                .range(oldest - oldest % bucket..)
                .map(|(start, n)| (*start, *n))
                .collect()
        };
        HistorySeries {
            uploads_per_hour: since(&buckets.uploads_by_hour, 3600),
            keys_published_per_day: since(&buckets.keys_by_day, 86_400),
        }
    }
}

/// Seconds since each peer's last successful pull: derived from
/// [`Metrics::peer_last_success`] when the metrics are read.
pub const PEER_LAG: &str = "enfeed_peer_seconds_since_last_success";

impl Metrics {
    fn families(&self) -> [&Family; 19] {
        [
            &self.uploads,
            &self.keys_stored,
            &self.codes_issued,
            &self.wrong_codes,
            &self.rate_limited,
            &self.guessing_alarms,
            &self.dataprep_runs,
            &self.dataprep_seconds,
            &self.dataprep_last_success,
            &self.chunks_published,
            &self.keys_published,
            &self.peer_keys_imported,
            &self.peer_keys_refused,
            &self.peer_files_skipped,
            &self.peer_failures,
            &self.registry_entries_refused,
            &self.registry_failures,
            &self.peer_last_success,
            &self.storage_errors,
        ]
    }

    fn samples_of(family: &Family, value: impl Fn(&Value) -> f64) -> Vec<Sample> {
        let values = family.values.lock().expect("no panic while counting");
        values
            .iter()
            .map(|(labels, v)| Sample {
                name: family.name,
                kind: family.kind,
                labels: family.labels.iter().copied().zip(labels.clone()).collect(),
                value: value(v),
            })
            .collect()
    }

    /// Every sample as it stands at `now`, with the derived seconds since each peer's last
    /// successful pull.
    pub fn samples(&self, now: UnixSeconds) -> Vec<Sample> {
        let mut samples: Vec<Sample> = self
            .families()
            .into_iter()
            .flat_map(|family| Self::samples_of(family, |v| v.total))
            .collect();
        samples.extend(self.peer_lags(now));
        samples
    }

    fn peer_lags(&self, now: UnixSeconds) -> Vec<Sample> {
        Self::samples_of(&self.peer_last_success, |v| (now as f64 - v.total).max(0.0))
            .into_iter()
            .map(|sample| Sample {
                name: PEER_LAG,
                kind: Kind::Gauge,
                ..sample
            })
            .collect()
    }

    /// What changed since the last call, for a log of metrics that its reader adds up
    /// (CloudWatch): counters by what they grew since, gauges at their current value.
    pub fn take_increments(&self, now: UnixSeconds) -> Vec<Sample> {
        let mut samples = Vec::new();
        for family in self.families() {
            let mut values = family.values.lock().expect("no panic while counting");
            for (labels, value) in values.iter_mut() {
                let reported = match family.kind {
                    Kind::Counter if value.unreported == 0.0 => continue,
                    Kind::Counter => std::mem::take(&mut value.unreported),
                    Kind::Gauge => value.total,
                };
                samples.push(Sample {
                    name: family.name,
                    kind: family.kind,
                    labels: family.labels.iter().copied().zip(labels.clone()).collect(),
                    value: reported,
                });
            }
        }
        samples.extend(self.peer_lags(now));
        samples
    }

    /// The Prometheus text exposition format (version 0.0.4) of every sample at `now`.
    pub fn prometheus_text(&self, now: UnixSeconds) -> String {
        let samples = self.samples(now);
        let mut text = String::new();
        let helps = self
            .families()
            .map(|f| (f.name, f.help, f.kind))
            .into_iter()
            .chain([(
                PEER_LAG,
                "Seconds since the last successful pull from each peer.",
                Kind::Gauge,
            )]);
        for (name, help, kind) in helps {
            let kind = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for sample in samples.iter().filter(|s| s.name == name) {
                text.push_str(name);
                if !sample.labels.is_empty() {
                    let labels: Vec<String> = sample
                        .labels
                        .iter()
                        .map(|(label, value)| format!("{label}=\"{}\"", escape(value)))
                        .collect();
                    let _ = write!(text, "{{{}}}", labels.join(","));
                }
                let _ = writeln!(text, " {}", sample.value);
            }
        }
        text
    }
}

/// A label value as the exposition format writes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_counts_by_hour_and_day_and_keeps_the_window_asked_for() {
        let history = History::default();
        let day = 20_000 * 86_400;
        history.upload_accepted(day + 10);
        history.upload_accepted(day + 3599);
        history.upload_accepted(day + 3600);
        history.keys_published(day + 5, 7);
        history.keys_published(day + 86_399, 3);
        history.upload_accepted(day + 3 * 86_400);
        let all = history.series(day + 3 * 86_400, 14);
        assert_eq!(
            all.uploads_per_hour,
            vec![(day, 2), (day + 3600, 1), (day + 3 * 86_400, 1)]
        );
        assert_eq!(all.keys_published_per_day, vec![(day, 10)]);
        let last_day = history.series(day + 3 * 86_400, 1);
        assert_eq!(last_day.uploads_per_hour, vec![(day + 3 * 86_400, 1)]);
        assert!(last_day.keys_published_per_day.is_empty());
    }

    #[test]
    fn counters_add_up_and_increments_are_reported_once() {
        let metrics = Metrics::default();
        metrics.uploads.inc(&["accepted"]);
        metrics.uploads.inc(&["accepted"]);
        metrics.uploads.inc(&["code_unknown"]);
        metrics.peer_last_success.set(&["DE"], 1000.0);
        assert_eq!(metrics.uploads.get(&["accepted"]), Some(2.0));

        let text = metrics.prometheus_text(1030);
        assert!(
            text.contains("enfeed_uploads_total{outcome=\"accepted\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE enfeed_uploads_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("enfeed_peer_seconds_since_last_success{peer=\"DE\"} 30\n"),
            "{text}"
        );

        let first = metrics.take_increments(1030);
        let accepted = |samples: &[Sample]| {
            samples
                .iter()
                .find(|s| s.name == "enfeed_uploads_total" && s.labels[0].1 == "accepted")
                .map(|s| s.value)
        };
        assert_eq!(accepted(&first), Some(2.0));
        metrics.uploads.inc(&["accepted"]);
        assert_eq!(accepted(&metrics.take_increments(1030)), Some(1.0));
        assert_eq!(accepted(&metrics.take_increments(1030)), None);
        // The totals are untouched by reporting increments.
        assert_eq!(metrics.uploads.get(&["accepted"]), Some(3.0));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
