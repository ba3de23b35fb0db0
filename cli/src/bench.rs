//! `enfeed bench`: data-prep over generated keys on the embedded store, measured end to end:
//! keys per second, bytes per key on the wire, peak memory.

use std::sync::Arc;
use std::time::Instant;

use enfeed::Config;
use enfeed::key::{DiagnosisKey, INTERVALS_PER_DAY, RegionId, ReportType, interval_of};
use enfeed::ports::{ManualClock, NewKeys, Origin, StoredKey};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Keys to publish.
    #[arg(long, default_value_t = 1_000_000)]
    keys: usize,

    /// Share of local keys whose uploader also declared other regions, in percent.
    #[arg(long, default_value_t = 20)]
    travellers: u32,
}

/// Peak resident memory of this process since the last reset, in bytes (Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Starts a new peak-memory measurement (Linux: writing 5 to clear_refs resets VmHWM).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let now = 1_750_000_000;
    let clock = Arc::new(ManualClock::new(now));
    let own: RegionId = "CH".parse()?;
    let mut config = Config::new(own);
    config.padding_min = 0;
    let backend = enfeed::local::open_backend(config, dir.path(), clock.clone(), &[])?;

    let started = Instant::now();
    let others: Vec<RegionId> = ["DE", "FR", "IT", "AT", "LI"]
        .iter()
        .map(|r| r.parse().unwrap())
        .collect();
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let mut remaining = args.keys;
    while remaining > 0 {
        let batch = remaining.min(20_000);
        let keys = (0..batch)
            .map(|_| generated_key(&mut rng, now, own, &others, args.travellers))
            .collect();
        backend
            .keys
            .insert(NewKeys {
                keys,
                claim: None,
                now,
            })
            .await?;
        remaining -= batch;
    }
    let stored = started.elapsed();

    clock.advance(60);
    reset_peak_rss();
    let started = Instant::now();
    let report = backend.run_dataprep().await?;
    let elapsed = started.elapsed().as_secs_f64();
    let peak = peak_rss().unwrap_or(0);

    let public: Vec<_> = report
        .chunks
        .iter()
        .filter(|c| c.path.starts_with("v1/keys/"))
        .collect();
    let public_bytes: u64 = public.iter().map(|c| c.bytes).sum();
    let public_keys: u64 = public.iter().map(|c| u64::from(c.keys)).sum();
    let all_bytes: u64 = report.chunks.iter().map(|c| c.bytes).sum();
    let all_keys: u64 = report.chunks.iter().map(|c| u64::from(c.keys)).sum();
    println!(
        "keys stored:          {} in {:.1} s",
        args.keys,
        stored.as_secs_f64()
    );
    println!(
        "data-prep:            {elapsed:.2} s, {} chunks on {} feeds",
        report.chunks.len(),
        feeds(&report)
    );
    println!(
        "throughput:           {:.0} keys/s (keys read), {:.0} key-entries/s (written to all feeds)",
        args.keys as f64 / elapsed,
        all_keys as f64 / elapsed
    );
    println!(
        "public feed:          {public_bytes} bytes for {public_keys} keys = {:.2} bytes/key on the wire",
        public_bytes as f64 / public_keys.max(1) as f64
    );
    println!("all feeds:            {all_bytes} bytes");
    println!(
        "peak memory:          {:.0} MB (resident, during data-prep)",
        peak as f64 / 1e6
    );
    Ok(())
}

fn feeds(report: &enfeed::dataprep::DataPrepReport) -> usize {
    let mut feeds: Vec<&str> = report
        .chunks
        .iter()
        .map(|c| c.path.rsplit_once('/').map_or("", |(f, _)| f))
        .collect();
    feeds.dedup();
    feeds.len()
}

/// A key like a real upload's: one of the last 14 days, 80 % declaring only this region.
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
    }
}
