//! A model of a world of regions at scale (the paper's requirement S1 and its section 4.1.1):
//! what each replication strategy costs phones and backends per day, in bytes of real enfeed
//! chunk files.
//!
//! The model has four parts:
//!
//! - A world ([`WorldModel`]): regions grouped in clusters (EU-like, US-like, enterprise-size), each
//!   with a population of phones.
//! - A day of infections ([`Day`]): every infected uploader gets a base region, roaming regions
//!   from a travel model, and the data-prep run of its base region that first publishes its
//!   keys. Phones get roaming regions from the same travel model.
//! - An encoding ([`Encoding`]): bytes of real export files, measured by encoding sample chunks
//!   of growing size with [`enfeed::ports::write_export`] and a real signer; between and beyond
//!   the samples, bytes are interpolated linearly.
//! - The strategies ([`Strategy`]), which decide which keys reach which public feed, which
//!   backend feeds each backend pulls, and which feeds each phone downloads.
//!
//! From these it counts the keys of every chunk that data-prep would write in a day, and turns
//! them into bytes ([`evaluate`]).
//!
//! Timing follows a real deployment. Data-prep runs `runs_per_day` times a day. A key uploaded
//! before run *k* is in run *k*'s local chunks (public, all-to-all, per-region). A peer pulls
//! those before run *k + 1*, and publishes them to its phones in that run. The day is taken as
//! a steady state, so run 0 publishes what peers pulled after the day's last run.
//!
//! Padding: a public chunk with fewer than `padding_min` real keys (but at least one) is padded
//! with random keys up to `padding_min` plus up to 99 more, so the model counts `padding_min +
//! 49.5` keys for it. Backend feeds are never padded. With `padding_min` 0 there is no padding.
//!
//! Indexes: every poll of a feed downloads its index. The index lists the chunks of the last
//! `retention_days` (only runs that had keys write a chunk), numbered as if the feed had run
//! for `feed_age_days`.

use std::collections::HashMap;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde::Serialize;

use enfeed::adapters::local::signing_keys;
use enfeed::domain::export::{ExportError, ExportHeader};
use enfeed::domain::feed::FeedIndex;
use enfeed::domain::key::{
    DiagnosisKey, INTERVALS_PER_DAY, KEY_LEN, RegionId, ReportType, interval_of,
};
use enfeed::domain::signature::KeyError;
use enfeed::ports::write_export;

/// Raw bytes of one key in the paper's estimate.
pub const RAW_KEY_BYTES: f64 = KEY_LEN as f64;

#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    #[error("cannot measure the encoding: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Export(#[from] ExportError),
}

/// The kind of a cluster of regions: it sets the cluster's size and its regions' populations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ClusterKind {
    /// Countries of a union, with populations spread like the EU's.
    EuLike,
    /// States of a federation.
    UsLike,
    /// Sites of a company or campus: small regions.
    Enterprise,
}

/// Parameters of the world, the day and the deployment.
#[derive(Clone, Debug, Serialize)]
pub struct Params {
    /// Regions R.
    pub regions: usize,
    /// Phones running the app, worldwide.
    pub phones: f64,
    /// Confirmed cases uploading keys per day, worldwide.
    pub daily_cases: u64,
    /// Diagnosis Keys per upload.
    pub keys_per_case: u32,
    /// Share of people (uploaders and phones) who declare roaming regions.
    pub travellers: f64,
    /// Roaming regions of a traveller: 1 to this many.
    pub max_roaming: u32,
    /// Chance that a roaming region lies in the traveller's own cluster.
    pub in_cluster: f64,
    /// Regions per EU-like cluster.
    pub eu_size: usize,
    /// Regions per US-like cluster.
    pub us_size: usize,
    /// Regions per enterprise cluster.
    pub enterprise_size: usize,
    /// Share of regions that are enterprise regions.
    pub enterprise_regions: f64,
    /// Share of the phones that live in enterprise regions.
    pub enterprise_phones: f64,
    /// Explicit cluster sizes, replacing the generated layout (all EU-like).
    pub cluster_sizes: Option<Vec<usize>>,
    /// Data-prep runs per day.
    pub runs_per_day: u32,
    /// Index polls per day of a phone, for each feed it downloads.
    pub phone_polls: u32,
    /// Index polls per day of a backend, for each peer feed it pulls.
    pub peer_polls: u32,
    /// Smallest public chunk (padding); 0 turns padding off.
    pub padding_min: usize,
    /// Days a chunk stays listed in its feed's index.
    pub retention_days: f64,
    /// Days a feed has been running (sets the digits of its chunk numbers).
    pub feed_age_days: f64,
    /// Phones sampled per region for the travel model.
    pub phone_sample: usize,
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            regions: 300,
            phones: 3.5e9,
            daily_cases: 200_000,
            keys_per_case: 14,
            travellers: 0.2,
            max_roaming: 2,
            in_cluster: 0.8,
            eu_size: 30,
            us_size: 50,
            enterprise_size: 5,
            enterprise_regions: 0.3,
            enterprise_phones: 0.01,
            cluster_sizes: None,
            runs_per_day: 24,
            phone_polls: 6,
            peer_polls: 24,
            padding_min: enfeed::domain::config::PADDING_MIN,
            retention_days: f64::from(enfeed::domain::config::RETENTION_DAYS),
            feed_age_days: 365.0,
            phone_sample: 200,
            seed: 1,
        }
    }
}

impl Params {
    /// The paper's estimate of what a phone downloads per day when it gets every key: keys
    /// per case x 16 bytes x daily cases.
    pub fn paper_bytes_per_phone(&self) -> f64 {
        f64::from(self.keys_per_case) * RAW_KEY_BYTES * self.daily_cases as f64
    }
}

/// A cluster: a run of consecutive regions.
#[derive(Clone, Debug, Serialize)]
pub struct Cluster {
    pub kind: ClusterKind,
    pub regions: std::ops::Range<usize>,
}

/// Regions, their clusters and populations.
#[derive(Clone, Debug)]
pub struct WorldModel {
    pub clusters: Vec<Cluster>,
    /// Cluster of each region.
    pub cluster_of: Vec<usize>,
    /// Phones of each region.
    pub phones: Vec<f64>,
}

impl WorldModel {
    /// Lays out `params.regions` regions: first the enterprise clusters, then EU-like and
    /// US-like clusters in turn. Populations of the large regions follow Zipf's law over a
    /// random order of the regions; enterprise regions share a small part equally.
    pub fn new(params: &Params, rng: &mut ChaCha20Rng) -> Self {
        let r = params.regions.max(1);
        let mut clusters = Vec::new();
        let mut push = |kind, size: usize, start: &mut usize| {
            let end = (*start + size.max(1)).min(r);
            clusters.push(Cluster {
                kind,
                regions: *start..end,
            });
            *start = end;
        };
        let mut start = 0;
        match &params.cluster_sizes {
            Some(sizes) => {
                for size in sizes {
                    push(ClusterKind::EuLike, *size, &mut start);
                }
                if start < r {
                    push(ClusterKind::EuLike, r - start, &mut start);
                }
            }
            None => {
                let enterprise = (r as f64 * params.enterprise_regions).round() as usize;
                while start < enterprise.min(r - 1) {
                    let size = params.enterprise_size.min(enterprise - start);
                    push(ClusterKind::Enterprise, size, &mut start);
                }
                let mut eu = true;
                while start < r {
                    let (kind, size) = match eu {
                        true => (ClusterKind::EuLike, params.eu_size),
                        false => (ClusterKind::UsLike, params.us_size),
                    };
                    push(kind, size, &mut start);
                    eu = !eu;
                }
            }
        }
        let mut cluster_of = vec![0; r];
        for (c, cluster) in clusters.iter().enumerate() {
            cluster_of[cluster.regions.clone()].fill(c);
        }
        let is_enterprise = |i: usize| clusters[cluster_of[i]].kind == ClusterKind::Enterprise;
        let large: Vec<usize> = (0..r).filter(|i| !is_enterprise(*i)).collect();
        let small = r - large.len();
        // Zipf ranks in a random order, so that every cluster gets large and small regions.
        let mut ranks: Vec<usize> = (1..=large.len()).collect();
        for i in (1..ranks.len()).rev() {
            ranks.swap(i, rng.next_u64() as usize % (i + 1));
        }
        let harmonic: f64 = ranks.iter().map(|k| 1.0 / *k as f64).sum();
        let small_share = if large.is_empty() {
            1.0
        } else if small == 0 {
            0.0
        } else {
            params.enterprise_phones
        };
        let mut phones = vec![params.phones * small_share / small.max(1) as f64; r];
        for (i, rank) in large.iter().zip(&ranks) {
            phones[*i] = params.phones * (1.0 - small_share) / (*rank as f64 * harmonic);
        }
        Self {
            clusters,
            cluster_of,
            phones,
        }
    }

    pub fn regions(&self) -> usize {
        self.phones.len()
    }

    fn same_cluster(&self, a: usize, b: usize) -> bool {
        self.cluster_of[a] == self.cluster_of[b]
    }
}

/// Draws indexes with probability proportional to their weights.
struct Weighted {
    cumulative: Vec<f64>,
}

impl Weighted {
    fn new(weights: impl IntoIterator<Item = f64>) -> Self {
        let mut total = 0.0;
        let cumulative = weights
            .into_iter()
            .map(|w| {
                total += w;
                total
            })
            .collect();
        Self { cumulative }
    }

    fn draw(&self, rng: &mut ChaCha20Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = unit(rng) * total;
        self.cumulative
            .partition_point(|c| *c <= x)
            .min(self.cumulative.len().saturating_sub(1))
    }
}

fn unit(rng: &mut ChaCha20Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// The travel model: where people go, by population.
struct Travel<'w> {
    world: &'w WorldModel,
    anywhere: Weighted,
    /// One sampler per cluster, over its regions.
    within: Vec<Weighted>,
}

impl<'w> Travel<'w> {
    fn new(world: &'w WorldModel) -> Self {
        let within = world
            .clusters
            .iter()
            .map(|c| Weighted::new(c.regions.clone().map(|i| world.phones[i])))
            .collect();
        Self {
            world,
            anywhere: Weighted::new(world.phones.iter().copied()),
            within,
        }
    }

    /// The roaming regions of a person based in `base` (sorted, without `base`).
    fn roaming(&self, base: usize, params: &Params, rng: &mut ChaCha20Rng) -> Vec<usize> {
        if self.world.regions() < 2 || unit(rng) >= params.travellers {
            return Vec::new();
        }
        let wanted = 1 + rng.next_u32() % params.max_roaming.max(1);
        let cluster = &self.world.clusters[self.world.cluster_of[base]];
        let mut roaming = Vec::new();
        // Bounded tries: a person stays home when no other region can be drawn.
        for _ in 0..wanted * 8 {
            if roaming.len() == wanted as usize {
                break;
            }
            let region = if cluster.regions.len() > 1 && unit(rng) < params.in_cluster {
                cluster.regions.start + self.within[self.world.cluster_of[base]].draw(rng)
            } else {
                self.anywhere.draw(rng)
            };
            if region != base && !roaming.contains(&region) {
                roaming.push(region);
            }
        }
        roaming.sort_unstable();
        roaming
    }
}

/// An infected person's upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploader {
    pub base: usize,
    /// Declared roaming regions, sorted, without the base.
    pub roaming: Vec<usize>,
    /// The data-prep run of the day that first publishes the keys.
    pub run: u32,
}

/// A phone of the sample: its home and roaming regions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampledPhone {
    pub home: usize,
    pub roaming: Vec<usize>,
}

/// One day of the world: who uploaded, and a sample of the phones.
#[derive(Clone, Debug)]
pub struct Day {
    pub uploaders: Vec<Uploader>,
    /// `params.phone_sample` phones per region, by region.
    pub phones: Vec<SampledPhone>,
}

impl Day {
    /// Draws a day: each case's base region by population, its roaming regions by the travel
    /// model, its data-prep run uniformly; and a sample of phones per region.
    pub fn sample(world: &WorldModel, params: &Params, rng: &mut ChaCha20Rng) -> Self {
        let travel = Travel::new(world);
        let uploaders = (0..params.daily_cases)
            .map(|_| {
                let base = travel.anywhere.draw(rng);
                Uploader {
                    base,
                    roaming: travel.roaming(base, params, rng),
                    run: rng.next_u32() % params.runs_per_day.max(1),
                }
            })
            .collect();
        let phones = (0..world.regions())
            .flat_map(|home| std::iter::repeat_n(home, params.phone_sample.max(1)))
            .map(|home| SampledPhone {
                home,
                roaming: travel.roaming(home, params, rng),
            })
            .collect();
        Self { uploaders, phones }
    }
}

/// A replication strategy between backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Strategy {
    /// Every backend pulls every other backend's all-to-all feed; phones get every key.
    AllToAll,
    /// Every backend pulls from every other backend the feed of keys declared for it; phones
    /// download their home and roaming regions' feeds.
    Partial,
    /// All-to-all inside clusters, partial across them (the paper's recommendation); phones
    /// download their home feed and the feeds of roaming regions outside their cluster.
    ClusterHybrid,
}

impl Strategy {
    pub const ALL: [Strategy; 3] = [
        Strategy::AllToAll,
        Strategy::ClusterHybrid,
        Strategy::Partial,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::AllToAll => "global all-to-all",
            Strategy::Partial => "partial everywhere",
            Strategy::ClusterHybrid => "all-to-all in clusters, partial across",
        }
    }

    /// Whether backend `consumer` pulls `producer`'s all-to-all feed (else its per-region
    /// feed for `consumer`).
    pub fn pulls_a2a(self, world: &WorldModel, consumer: usize, producer: usize) -> bool {
        match self {
            Strategy::AllToAll => true,
            Strategy::Partial => false,
            Strategy::ClusterHybrid => world.same_cluster(consumer, producer),
        }
    }

    /// The public feeds a phone downloads.
    pub fn phone_feeds(self, world: &WorldModel, phone: &SampledPhone) -> Vec<usize> {
        let roaming = phone.roaming.iter().copied().filter(|r| match self {
            Strategy::AllToAll => false,
            Strategy::Partial => true,
            Strategy::ClusterHybrid => !world.same_cluster(phone.home, *r),
        });
        std::iter::once(phone.home).chain(roaming).collect()
    }
}

/// Bytes of real export files by number of keys, and of real feed indexes.
#[derive(Clone, Debug, Serialize)]
pub struct Encoding {
    /// (keys, bytes of the zip), ascending in keys, measured.
    pub samples: Vec<(u64, u64)>,
    /// Bytes of an index that lists no chunk.
    pub empty_index: u64,
}

impl Encoding {
    /// Encodes and signs one chunk per size in `sizes` (keys like real uploads', 14 days of
    /// one case per 14 keys) and records each zip's size.
    pub async fn measure(sizes: &[usize]) -> Result<Self, ScaleError> {
        let dir = tempfile::tempdir()?;
        let signer = signing_keys::open_or_create(dir.path(), "CH")?;
        let now = 1_750_000_000;
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let largest = sizes.iter().copied().max().unwrap_or(0);
        let keys: Vec<DiagnosisKey> = (0..largest.div_ceil(14))
            .flat_map(|_| case_keys(&mut rng, now, 14))
            .take(largest)
            .collect();
        let mut samples = Vec::new();
        for &n in sizes {
            // Random keys of their own, sorted as data-prep sorts a file.
            let mut file: Vec<DiagnosisKey> = keys[..n].to_vec();
            file.sort_unstable_by_key(|k| k.key_data);
            let header = ExportHeader {
                start_timestamp: now - 3600,
                end_timestamp: now,
                region: "CH".into(),
                batch_num: 1,
                batch_size: 1,
            };
            let zip = write_export(&header, &file, &[], &signer).await?;
            samples.push((n as u64, zip.len() as u64));
        }
        samples.sort_unstable();
        Ok(Self {
            samples,
            empty_index: index_json_len(0),
        })
    }

    /// Bytes of a chunk of `keys` keys: interpolated between the samples, extrapolated with
    /// the slope of the two largest.
    pub fn chunk_bytes(&self, keys: f64) -> f64 {
        let s = &self.samples;
        match s.len() {
            0 => 0.0,
            1 => s[0].1 as f64 * keys / s[0].0.max(1) as f64,
            _ => {
                let i = s
                    .partition_point(|(n, _)| (*n as f64) < keys)
                    .clamp(1, s.len() - 1);
                let ((n0, b0), (n1, b1)) = (s[i - 1], s[i]);
                let slope = (b1 as f64 - b0 as f64) / (n1 as f64 - n0 as f64);
                b0 as f64 + slope * (keys - n0 as f64)
            }
        }
    }

    /// Marginal bytes per key of large chunks: the slope between the two largest samples.
    pub fn bytes_per_key(&self) -> f64 {
        let n = self.samples.len();
        if n < 2 {
            return self.chunk_bytes(1.0);
        }
        let ((n0, b0), (n1, b1)) = (self.samples[n - 2], self.samples[n - 1]);
        (b1 as f64 - b0 as f64) / (n1 as f64 - n0 as f64)
    }

    /// Bytes of a feed index listing `listed` consecutive chunk numbers up to `last`.
    pub fn index_bytes(&self, listed: u64, last: u64) -> f64 {
        let listed = listed.min(last);
        let digits = digit_sum(last) - digit_sum(last - listed);
        (self.empty_index + digits + listed.saturating_sub(1)) as f64
    }
}

/// Bytes of the JSON of a feed index listing `listed` chunks (numbers 1..=listed).
fn index_json_len(listed: u32) -> u64 {
    let index = FeedIndex {
        region: "CH".parse().expect("a region ID"),
        chunks: (1..=listed).collect(),
        recommended_next_poll_time: 1_750_000_000,
    };
    serde_json::to_vec(&index).expect("indexes serialize").len() as u64
}

/// Total decimal digits of the numbers 1..=n.
fn digit_sum(n: u64) -> u64 {
    let (mut total, mut low, mut digits) = (0, 1u64, 1);
    while low <= n {
        let high = (low * 10 - 1).min(n);
        total += (high - low + 1) * digits;
        low *= 10;
        digits += 1;
    }
    total
}

/// The keys of one case as a phone uploads them: one for each of the `count` days before
/// `now`, a whole day each, with random key data and transmission risk.
pub fn case_keys(rng: &mut ChaCha20Rng, now: u64, count: u32) -> Vec<DiagnosisKey> {
    let today = interval_of(now) / INTERVALS_PER_DAY * INTERVALS_PER_DAY;
    (1..=count)
        .map(|day| {
            let mut key_data = [0u8; KEY_LEN];
            rng.fill_bytes(&mut key_data);
            DiagnosisKey {
                key_data,
                rolling_start: today - day * INTERVALS_PER_DAY,
                rolling_period: INTERVALS_PER_DAY,
                transmission_risk: (rng.next_u32() % 8) as i32,
                report_type: ReportType::ConfirmedTest,
                days_since_onset: None,
            }
        })
        .collect()
}

/// Keys per run of the day.
type Runs = Vec<u64>;

/// Keys of one day per feed and run, before any strategy.
struct Flows {
    runs: usize,
    /// Local keys of each region (its all-to-all feed), per run.
    local: Vec<Runs>,
    /// Keys declared for region `to` by uploaders based in `from`, per run.
    declared: HashMap<(usize, usize), Runs>,
    /// Every local key of the world, per run.
    total: Runs,
}

impl Flows {
    fn new(world: &WorldModel, day: &Day, params: &Params) -> Self {
        let runs = params.runs_per_day.max(1) as usize;
        let keys = u64::from(params.keys_per_case);
        let mut local = vec![vec![0; runs]; world.regions()];
        let mut declared: HashMap<(usize, usize), Runs> = HashMap::new();
        let mut total = vec![0; runs];
        for u in &day.uploaders {
            let run = u.run as usize % runs;
            local[u.base][run] += keys;
            total[run] += keys;
            for to in &u.roaming {
                declared
                    .entry((u.base, *to))
                    .or_insert_with(|| vec![0; runs])[run] += keys;
            }
        }
        Self {
            runs,
            local,
            declared,
            total,
        }
    }

    fn declared(&self, from: usize, to: usize) -> Option<&Runs> {
        self.declared.get(&(from, to))
    }

    /// Keys of region `r`'s public feed per run under `strategy`: its local keys, and the
    /// remote keys pulled after the previous run.
    fn public(&self, world: &WorldModel, strategy: Strategy, r: usize) -> Runs {
        let mut remote = vec![0u64; self.runs];
        match strategy {
            Strategy::AllToAll => {
                for (k, slot) in remote.iter_mut().enumerate() {
                    *slot = self.total[k] - self.local[r][k];
                }
            }
            Strategy::Partial | Strategy::ClusterHybrid => {
                for b in (0..world.regions()).filter(|b| *b != r) {
                    let from = match strategy.pulls_a2a(world, r, b) {
                        true => Some(&self.local[b]),
                        false => self.declared(b, r),
                    };
                    for (slot, keys) in remote.iter_mut().zip(from.into_iter().flatten()) {
                        *slot += keys;
                    }
                }
            }
        }
        (0..self.runs)
            .map(|k| self.local[r][k] + remote[(k + self.runs - 1) % self.runs])
            .collect()
    }
}

/// A feed's day: bytes of its chunks, and the chunks written.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct FeedDay {
    keys: f64,
    chunk_bytes: f64,
    chunks: f64,
}

impl FeedDay {
    fn of(runs: &[u64], encoding: &Encoding, padding_min: usize) -> Self {
        let mut day = Self::default();
        for &keys in runs.iter().filter(|k| **k > 0) {
            let in_file = if (keys as usize) < padding_min {
                padding_min as f64 + 49.5
            } else {
                keys as f64
            };
            day.keys += keys as f64;
            day.chunk_bytes += encoding.chunk_bytes(in_file);
            day.chunks += 1.0;
        }
        day
    }

    /// Bytes one reader polling `polls` times a day downloads: chunks and indexes.
    fn read_bytes(&self, encoding: &Encoding, params: &Params, polls: u32) -> f64 {
        let listed = (self.chunks * params.retention_days.min(params.feed_age_days)).round();
        let last = (self.chunks * params.feed_age_days).round().max(listed);
        self.chunk_bytes + f64::from(polls) * encoding.index_bytes(listed as u64, last as u64)
    }
}

/// What one region's backend and phones cost per day under a strategy.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionFigures {
    pub phones: f64,
    /// Keys in its public feed per day (local and remote, without padding).
    pub public_keys: f64,
    /// Bytes one reader of its public feed downloads per day: chunks and index polls.
    pub feed_bytes: f64,
    /// Bytes a phone of the region downloads per day: its feeds' chunks and indexes.
    pub phone_bytes: f64,
    /// Bytes the backend pulls from peers per day.
    pub pulled_bytes: f64,
    /// Bytes of backend feeds its peers pull from it per day.
    pub served_peer_bytes: f64,
    /// Bytes its public feed serves to phones (its own, and visitors') per day.
    pub served_phone_bytes: f64,
    /// Chunk and index downloads of its public feed by phones per day.
    pub served_phone_requests: f64,
    /// Chunks data-prep writes per day, on every feed.
    pub chunks_written: f64,
    /// Keys it stores (local and remote), at steady state over the retention period.
    pub keys_stored: f64,
    /// Local keys uploaded per day.
    pub local_keys: f64,
}

/// A strategy's figures: per region, and summarised.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StrategyReport {
    pub strategy: Strategy,
    pub regions: Vec<RegionFigures>,
    /// Bytes per phone per day: mean over all phones, and the median and 99th percentile of
    /// the regions' means.
    pub phone_mean: f64,
    pub phone_p50: f64,
    pub phone_p99: f64,
}

impl StrategyReport {
    /// Mean of a figure over the regions.
    pub fn mean(&self, figure: impl Fn(&RegionFigures) -> f64) -> f64 {
        self.regions.iter().map(figure).sum::<f64>() / self.regions.len().max(1) as f64
    }

    /// Largest value of a figure over the regions.
    pub fn max(&self, figure: impl Fn(&RegionFigures) -> f64) -> f64 {
        self.regions.iter().map(figure).fold(0.0, f64::max)
    }
}

/// Quantile `q` (0..=1) of `values` (nearest rank).
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Every strategy's figures for one sampled day.
pub fn evaluate(
    world: &WorldModel,
    day: &Day,
    params: &Params,
    encoding: &Encoding,
) -> Vec<StrategyReport> {
    let flows = Flows::new(world, day, params);
    let r = world.regions();
    // Backend feeds, shared by the strategies: all-to-all and per-region feeds.
    let a2a: Vec<FeedDay> = flows
        .local
        .iter()
        .map(|runs| FeedDay::of(runs, encoding, 0))
        .collect();
    let empty = FeedDay::default();
    let declared: HashMap<(usize, usize), FeedDay> = flows
        .declared
        .iter()
        .map(|(pair, runs)| (*pair, FeedDay::of(runs, encoding, 0)))
        .collect();
    Strategy::ALL
        .iter()
        .map(|&strategy| {
            let public: Vec<FeedDay> = (0..r)
                .map(|i| {
                    FeedDay::of(
                        &flows.public(world, strategy, i),
                        encoding,
                        params.padding_min,
                    )
                })
                .collect();
            let feed_bytes: Vec<f64> = public
                .iter()
                .map(|f| f.read_bytes(encoding, params, params.phone_polls))
                .collect();
            let mut regions: Vec<RegionFigures> = (0..r)
                .map(|i| RegionFigures {
                    phones: world.phones[i],
                    public_keys: public[i].keys,
                    feed_bytes: feed_bytes[i],
                    local_keys: a2a[i].keys,
                    keys_stored: public[i].keys * params.retention_days,
                    ..RegionFigures::default()
                })
                .collect();
            // Backends pulling backend feeds.
            for consumer in 0..r {
                for producer in (0..r).filter(|p| *p != consumer) {
                    let feed = match strategy.pulls_a2a(world, consumer, producer) {
                        true => &a2a[producer],
                        false => declared.get(&(producer, consumer)).unwrap_or(&empty),
                    };
                    let bytes = feed.read_bytes(encoding, params, params.peer_polls);
                    regions[consumer].pulled_bytes += bytes;
                    regions[producer].served_peer_bytes += bytes;
                }
            }
            // Chunks written: public, all-to-all and per-region feeds.
            for (i, figures) in regions.iter_mut().enumerate() {
                figures.chunks_written = public[i].chunks + a2a[i].chunks;
            }
            for ((from, _), feed) in &declared {
                regions[*from].chunks_written += feed.chunks;
            }
            // Phones downloading public feeds: each sampled phone stands for its region's share.
            let mut phone_sum = vec![0.0; r];
            let mut sampled = vec![0usize; r];
            for phone in &day.phones {
                let weight = world.phones[phone.home] / params.phone_sample.max(1) as f64;
                let feeds = strategy.phone_feeds(world, phone);
                phone_sum[phone.home] += feeds.iter().map(|f| feed_bytes[*f]).sum::<f64>();
                sampled[phone.home] += 1;
                for f in feeds {
                    regions[f].served_phone_bytes += weight * feed_bytes[f];
                    regions[f].served_phone_requests +=
                        weight * (public[f].chunks + f64::from(params.phone_polls));
                }
            }
            for (i, figures) in regions.iter_mut().enumerate() {
                figures.phone_bytes = phone_sum[i] / sampled[i].max(1) as f64;
            }
            let total_phones: f64 = world.phones.iter().sum();
            let phone_mean = regions
                .iter()
                .map(|f| f.phone_bytes * f.phones)
                .sum::<f64>()
                / total_phones.max(f64::MIN_POSITIVE);
            let per_region: Vec<f64> = regions.iter().map(|f| f.phone_bytes).collect();
            StrategyReport {
                strategy,
                phone_mean,
                phone_p50: quantile(&per_region, 0.5),
                phone_p99: quantile(&per_region, 0.99),
                regions,
            }
        })
        .collect()
}

/// Samples a world and a day from `params` and evaluates every strategy.
pub fn run(params: &Params, encoding: &Encoding) -> (WorldModel, Day, Vec<StrategyReport>) {
    let mut rng = ChaCha20Rng::seed_from_u64(params.seed);
    let world = WorldModel::new(params, &mut rng);
    let day = Day::sample(&world, params, &mut rng);
    let reports = evaluate(&world, &day, params, encoding);
    (world, day, reports)
}

/// Unit prices of the AWS services a region uses (USD), as assumed by [`Costs`].
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Prices {
    /// CloudFront data transfer out to the internet, per GB.
    pub cdn_per_gb: f64,
    /// CloudFront HTTPS requests, per 10,000.
    pub cdn_per_10k_requests: f64,
    /// S3 PUT requests, per 1,000.
    pub s3_put_per_1k: f64,
    /// S3 GET requests, per 1,000.
    pub s3_get_per_1k: f64,
    /// DynamoDB on-demand write request units, per million.
    pub dynamo_write_per_million: f64,
    /// DynamoDB on-demand read request units, per million.
    pub dynamo_read_per_million: f64,
    /// DynamoDB storage, per GB-month.
    pub dynamo_storage_per_gb_month: f64,
    /// Lambda requests, per million.
    pub lambda_per_million: f64,
    /// Lambda compute on arm64, per GB-second.
    pub lambda_per_gb_second: f64,
}

impl Default for Prices {
    /// AWS list prices of us-east-1 (first pricing tier, no free tier).
    fn default() -> Self {
        Self {
            cdn_per_gb: 0.085,
            cdn_per_10k_requests: 0.01,
            s3_put_per_1k: 0.005,
            s3_get_per_1k: 0.0004,
            dynamo_write_per_million: 0.625,
            dynamo_read_per_million: 0.125,
            dynamo_storage_per_gb_month: 0.25,
            lambda_per_million: 0.20,
            lambda_per_gb_second: 0.000_013_333_4,
        }
    }
}

/// How a region's work turns into AWS usage.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Bytes a stored key takes in DynamoDB (item with its attributes and index entries).
    pub item_bytes: f64,
    /// Write request units per stored key (the key item, its dedup and expiry entries).
    pub writes_per_key: f64,
    /// Keys data-prep and the consumer handle per second of Lambda time (a measured figure).
    pub keys_per_lambda_second: f64,
    /// Lambda memory, GB.
    pub lambda_gb: f64,
    /// Uploads per case (each one a Lambda request), and Lambda runs of data-prep and the
    /// consumer per day.
    pub scheduled_runs_per_day: f64,
}

impl Default for Usage {
    fn default() -> Self {
        Self {
            item_bytes: 200.0,
            writes_per_key: 2.0,
            keys_per_lambda_second: 100_000.0,
            lambda_gb: 1.0,
            scheduled_runs_per_day: 24.0 + 288.0,
        }
    }
}

/// A region's AWS cost per day, by service (USD).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Costs {
    pub cloudfront: f64,
    pub s3: f64,
    pub dynamodb: f64,
    pub lambda: f64,
}

impl Costs {
    /// The cost of a region's day under the given prices and usage.
    pub fn of(region: &RegionFigures, params: &Params, prices: &Prices, usage: &Usage) -> Self {
        let gb = 1e9;
        let cases = region.local_keys / f64::from(params.keys_per_case.max(1));
        let remote = region.public_keys - region.local_keys;
        let cloudfront = (region.served_phone_bytes + region.served_peer_bytes) / gb
            * prices.cdn_per_gb
            + region.served_phone_requests / 1e4 * prices.cdn_per_10k_requests;
        // Chunks are written once and read by the CDN once per edge; peers' pulls pass the CDN.
        let s3 = region.chunks_written * prices.s3_put_per_1k / 1e3
            + region.chunks_written * 10.0 * prices.s3_get_per_1k / 1e3;
        let writes = (region.local_keys + remote.max(0.0)) * usage.writes_per_key;
        // Data-prep reads each key once, eventually consistent: half a unit per 4 KB.
        let reads = region.public_keys * usage.item_bytes / 4096.0 * 0.5;
        let stored_gb = region.keys_stored * usage.item_bytes / gb;
        let dynamodb = writes / 1e6 * prices.dynamo_write_per_million
            + reads / 1e6 * prices.dynamo_read_per_million
            + stored_gb * prices.dynamo_storage_per_gb_month / 30.0;
        let seconds = (region.public_keys + region.local_keys) / usage.keys_per_lambda_second;
        let lambda = (cases + usage.scheduled_runs_per_day) / 1e6 * prices.lambda_per_million
            + seconds * usage.lambda_gb * prices.lambda_per_gb_second;
        Self {
            cloudfront,
            s3,
            dynamodb,
            lambda,
        }
    }

    pub fn total(&self) -> f64 {
        self.cloudfront + self.s3 + self.dynamodb + self.lambda
    }
}

/// A region ID for the model's region `i` (AA, AB, ...), for live worlds of up to 676 regions.
pub fn region_id(i: usize) -> RegionId {
    let letters = [b'A' + (i / 26 % 26) as u8, b'A' + (i % 26) as u8];
    std::str::from_utf8(&letters)
        .expect("ASCII")
        .parse()
        .expect("two upper-case letters")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An encoding of 18 bytes per key plus 400 bytes per file.
    fn linear() -> Encoding {
        Encoding {
            samples: vec![(0, 400), (1_000_000, 18_000_400)],
            empty_index: index_json_len(0),
        }
    }

    fn small(params: Params) -> Params {
        Params {
            regions: 40,
            daily_cases: 20_000,
            phone_sample: 50,
            ..params
        }
    }

    fn report(reports: &[StrategyReport], strategy: Strategy) -> &StrategyReport {
        reports.iter().find(|r| r.strategy == strategy).unwrap()
    }

    #[test]
    fn all_to_all_is_the_papers_formula_times_the_encoding() {
        let params = Params {
            regions: 20,
            phone_sample: 20,
            ..Params::default()
        };
        let encoding = linear();
        let (_, _, reports) = run(&params, &encoding);
        let a2a = report(&reports, Strategy::AllToAll);
        let formula = params.paper_bytes_per_phone() * encoding.bytes_per_key() / RAW_KEY_BYTES;
        assert!((formula - 14.0 * 18.0 * 200_000.0).abs() < 1.0);
        // Every phone gets every key: the formula, plus file and index overheads (under 1 %).
        let excess = a2a.phone_mean / formula - 1.0;
        assert!((0.0..0.01).contains(&excess), "excess {excess}");
        assert!((a2a.phone_p50 - a2a.phone_p99).abs() < 0.01 * a2a.phone_p50);
    }

    #[test]
    fn partial_is_cheaper_than_the_hybrid_which_is_cheaper_than_all_to_all() {
        let params = small(Params {
            padding_min: 0,
            ..Params::default()
        });
        let (_, _, reports) = run(&params, &linear());
        let [a2a, hybrid, partial] = Strategy::ALL.map(|s| report(&reports, s).phone_mean);
        assert!(partial < hybrid && hybrid < a2a, "{partial} {hybrid} {a2a}");
        let stored = |s| report(&reports, s).mean(|f| f.keys_stored);
        assert!(stored(Strategy::Partial) < stored(Strategy::ClusterHybrid));
        assert!(stored(Strategy::ClusterHybrid) < stored(Strategy::AllToAll));
    }

    #[test]
    fn every_key_is_stored_where_the_strategy_sends_it() {
        let params = small(Params::default());
        let (world, day, reports) = run(&params, &linear());
        let keys = f64::from(params.keys_per_case);
        let local: f64 = keys * params.daily_cases as f64;
        let a2a = report(&reports, Strategy::AllToAll);
        for f in &a2a.regions {
            assert_eq!(f.public_keys, local);
        }
        let declared: f64 = day
            .uploaders
            .iter()
            .map(|u| u.roaming.len() as f64 * keys)
            .sum();
        let partial = report(&reports, Strategy::Partial);
        let total: f64 = partial.regions.iter().map(|f| f.public_keys).sum();
        assert_eq!(total, local + declared);
        assert_eq!(world.regions(), params.regions);
    }

    #[test]
    fn padding_fills_small_public_chunks_only() {
        let encoding = linear();
        let params = Params::default();
        let padded = FeedDay::of(&[10, 0, 5000], &encoding, 1000);
        assert_eq!(padded.chunks, 2.0);
        assert_eq!(padded.keys, 5010.0);
        let expected = encoding.chunk_bytes(1049.5) + encoding.chunk_bytes(5000.0);
        assert!((padded.chunk_bytes - expected).abs() < 1e-6);
        let unpadded = FeedDay::of(&[10, 0, 5000], &encoding, 0);
        assert!(unpadded.chunk_bytes < padded.chunk_bytes);
        assert!(padded.read_bytes(&encoding, &params, 6) > padded.chunk_bytes);
    }

    #[test]
    fn world_layout_has_every_cluster_kind_and_all_phones() {
        let params = Params::default();
        let world = WorldModel::new(&params, &mut ChaCha20Rng::seed_from_u64(1));
        let kinds: std::collections::BTreeSet<_> =
            world.clusters.iter().map(|c| c.kind as u8).collect();
        assert_eq!(kinds.len(), 3);
        let phones: f64 = world.phones.iter().sum();
        assert!((phones / params.phones - 1.0).abs() < 1e-9);
        let sizes: usize = world.clusters.iter().map(|c| c.regions.len()).sum();
        assert_eq!(sizes, params.regions);
    }

    #[test]
    fn index_bytes_count_the_digits_of_the_listed_chunks() {
        let encoding = linear();
        assert_eq!(encoding.index_bytes(0, 0), index_json_len(0) as f64);
        assert_eq!(encoding.index_bytes(12, 12), index_json_len(12) as f64);
        assert_eq!(digit_sum(9), 9);
        assert_eq!(digit_sum(100), 9 + 180 + 3);
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), 50.0);
        assert_eq!(quantile(&values, 0.99), 99.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[tokio::test]
    async fn measured_encoding_grows_by_about_the_bytes_of_a_key() {
        let encoding = Encoding::measure(&[1, 200, 2000]).await.unwrap();
        let per_key = encoding.bytes_per_key();
        assert!((16.0..24.0).contains(&per_key), "{per_key} bytes per key");
        assert!(
            encoding.chunk_bytes(1.0) > 200.0,
            "signature and zip headers"
        );
        assert_eq!(encoding.chunk_bytes(2000.0), encoding.samples[2].1 as f64);
    }

    #[test]
    fn region_ids_are_two_letters() {
        assert_eq!(region_id(0).as_str(), "AA");
        assert_eq!(region_id(27).as_str(), "BB");
    }
}
