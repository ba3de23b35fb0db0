//! A backlog of generated keys, and data-prep draining it run after run with each run's time
//! and peak memory measured: the benchmark of data-prep under a backlog, the same on the
//! embedded store (`enfeed-lab bench`) and on DynamoDB (`make bench-dynamo`).

use std::time::Instant;

use enfeed::Backend;
use enfeed::domain::key::{DiagnosisKey, INTERVALS_PER_DAY, RegionId, ReportType, interval_of};
use enfeed::ports::{KeyStore, NewKeys, Origin, StoreError, StoredKey, UnixSeconds};
use enfeed::services::dataprep::{DataPrepError, DataPrepReport};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// Keys stored per insert while filling.
const FILL_BATCH: usize = 20_000;

/// Stores `keys` generated local keys of region `own` in batches of 20,000, stored at `now`
/// and publishable from then, `travellers` percent of them declaring a second region too.
/// The keys come in key order (random, but each above the one before), so that a store
/// ordered by key appends rather than rewrites its pages: the fill is set-up, not what is
/// measured.
pub async fn fill(
    store: &dyn KeyStore,
    keys: usize,
    travellers: u32,
    own: RegionId,
    now: UnixSeconds,
) -> Result<(), StoreError> {
    let others: Vec<RegionId> = ["DE", "FR", "IT", "AT", "LI"]
        .iter()
        .map(|r| r.parse().expect("region codes"))
        .collect();
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let step = u64::MAX / keys.max(1) as u64;
    let mut stored = 0;
    while stored < keys {
        let batch = (keys - stored).min(FILL_BATCH);
        let keys = (stored..stored + batch)
            .map(|i| {
                let mut key = generated_key(&mut rng, now, own, &others, travellers);
                key.key.key_data[..8].copy_from_slice(&(i as u64 * step).to_be_bytes());
                key
            })
            .collect();
        store
            .insert(NewKeys {
                keys,
                claim: None,
                now,
                ..NewKeys::default()
            })
            .await?;
        stored += batch;
    }
    Ok(())
}

/// A key like a real upload's: one of the last 14 days, `travellers` percent declaring one of
/// `others` beside `own`.
fn generated_key(
    rng: &mut ChaCha20Rng,
    now: u64,
    own: RegionId,
    others: &[RegionId],
    travellers: u32,
) -> StoredKey {
    let mut key_data = [0u8; 16];
    rng.fill_bytes(&mut key_data);
    let day = 1 + rng.next_u32() % 14;
    let mut regions = vec![own];
    if rng.next_u32() % 100 < travellers {
        regions.push(others[rng.next_u32() as usize % others.len()]);
    }
    StoredKey {
        key: DiagnosisKey {
            key_data,
            rolling_start: (interval_of(now) / INTERVALS_PER_DAY - day) * INTERVALS_PER_DAY,
            rolling_period: INTERVALS_PER_DAY,
            transmission_risk: (rng.next_u32() % 8) as i32,
            report_type: ReportType::ConfirmedTest,
            days_since_onset: None,
        },
        origin: Origin::Local,
        regions,
        publish_at: now,
        expires_at: now + 30 * 86_400,
        revision: false,
        peer: None,
    }
}

/// One data-prep run of a drain.
pub struct Run {
    /// Keys published to phones.
    pub keys: u64,
    pub seconds: f64,
    /// Peak resident memory of the process during the run, in bytes.
    pub peak: u64,
    pub more_waiting: bool,
}

/// What draining a backlog took.
#[derive(Default)]
pub struct Drained {
    pub runs: Vec<Run>,
    /// The runs' reports added up.
    pub report: DataPrepReport,
}

impl Drained {
    pub fn seconds(&self) -> f64 {
        self.runs.iter().map(|r| r.seconds).sum()
    }

    pub fn longest(&self) -> f64 {
        self.runs.iter().map(|r| r.seconds).fold(0.0, f64::max)
    }

    /// The peak of the run that used most memory, in bytes.
    pub fn peak(&self) -> u64 {
        self.runs.iter().map(|r| r.peak).max().unwrap_or(0)
    }
}

/// Runs data-prep again and again, as the scheduler does while more keys wait than one run
/// takes, until none wait; prints a line for each run when there is more than one.
pub async fn drain(backend: &Backend) -> Result<Drained, DataPrepError> {
    let mut drained = Drained::default();
    loop {
        // From where a run starts in the server: data-prep gives back the memory the
        // allocator holds freed (here, the fill's) before it begins.
        enfeed::adapters::memory::give_back_freed();
        reset_peak_rss();
        let started = Instant::now();
        let report = backend.run_dataprep().await?;
        let run = Run {
            keys: report
                .chunks
                .iter()
                .filter(|c| c.path.starts_with("v1/keys/"))
                .map(|c| u64::from(c.keys))
                .sum(),
            seconds: started.elapsed().as_secs_f64(),
            peak: peak_rss().unwrap_or(0),
            more_waiting: report.more_waiting,
        };
        if run.more_waiting || !drained.runs.is_empty() {
            println!(
                "data-prep run {:>3}:    {} keys in {:.2} s, peak memory {:.0} MB{}",
                drained.runs.len() + 1,
                run.keys,
                run.seconds,
                run.peak as f64 / 1e6,
                if run.more_waiting {
                    ", more waiting"
                } else {
                    ""
                }
            );
        }
        let more = run.more_waiting;
        drained.runs.push(run);
        drained.report.add(report);
        if !more {
            return Ok(drained);
        }
    }
}

/// Peak resident memory of this process since the last reset, in bytes (Linux).
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Starts a new peak-memory measurement (Linux: writing 5 to clear_refs resets VmHWM).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
