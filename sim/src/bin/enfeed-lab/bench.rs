//! `enfeed-lab bench`: the whole pipeline measured end to end on the embedded store, each figure
//! next to the floor it is judged against.
//!
//! 1. Data-prep of generated keys into every feed: keys per second and peak memory, against
//!    the floor of deflate plus SHA-256 over the same output bytes, measured in the same run.
//! 2. Bytes per key on the wire in the phone feed, against the 16 bytes of a key.
//! 3. The consumer's work on those chunks before storage: read, verify the signature, check
//!    every key.
//! 4. Uploads to the local server over loopback ([`load`]): a fixed number of uploads of 14
//!    keys each from a bounded number of concurrent clients; uploads per second, latency, and
//!    a count of the stored keys afterwards.
//! 5. With data-prep, the Lambda artifacts, if built (`make build`): their sizes.
//!
//! `make bench` runs data-prep and the load test in two processes: data-prep with two malloc
//! arenas, as the data-prep function runs, and the load test with glibc's default, as
//! `enfeed serve` runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use enfeed::domain::export::{
    ExportLimits, OpenedExport, encode_export_bin, read_export, zip_export,
};
use enfeed::domain::key::{RegionId, interval_of};
use enfeed::domain::signature::VerificationKey;
use enfeed::ports::{Clock as _, ManualClock};

use enfeed_sim::backlog;

use crate::load;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Keys to publish (0 skips data-prep and the consumer).
    #[arg(long, default_value_t = 1_000_000)]
    keys: usize,

    /// Share of local keys whose uploader also declared other regions, in percent.
    #[arg(long, default_value_t = 20)]
    travellers: u32,

    #[command(flatten)]
    load: load::LoadArgs,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    println!(
        "machine: {} cores ({}), {:.1} GiB memory",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model().unwrap_or_else(|| "unknown CPU".into()),
        memory_gib().unwrap_or(0.0)
    );
    if args.keys > 0 {
        dataprep_and_consumer(&args).await?;
        lambda_artifacts();
    }
    if args.load.uploads > 0 {
        load::run(&args.load).await?;
    }
    Ok(())
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

fn memory_gib() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: f64 = info
        .lines()
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / (1 << 20) as f64)
}

async fn dataprep_and_consumer(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // On the hour: data-prep seals to the hour, as stored times are kept (the keys below are
    // stored as given, published at `now`).
    let now = 1_749_999_600;
    let clock = Arc::new(ManualClock::new(now));
    let own: RegionId = "CH".parse()?;
    let mut config = enfeed::Config::new(own);
    config.padding_min = 0;
    let backend = enfeed::entry::local::open_backend(config, dir.path(), clock.clone(), &[])?;

    let started = Instant::now();
    backlog::fill(backend.keys.as_ref(), args.keys, args.travellers, own, now).await?;
    // Counting moves the staged keys into the key tables first, as the store's writer does
    // between bursts: a region's data-prep comes minutes after the uploads it publishes.
    let held = backend.keys.count().await?;
    anyhow::ensure!(
        held.local + held.remote == args.keys as u64,
        "the store lost keys"
    );
    let stored = started.elapsed();

    // Data-prep as the scheduler runs it: again at once while more keys wait than one run
    // takes (ENFEED_DATAPREP_MAX_KEYS), each run measured on its own.
    clock.advance(60);
    let drained = backlog::drain(&backend).await?;
    let report = &drained.report;
    let (runs, elapsed, longest) = (drained.runs.len(), drained.seconds(), drained.longest());

    // The same output bytes again, a file at a time, for the floor and the consumer.
    let floor = floor_seconds(&backend, report).await?;

    let public: Vec<_> = report
        .chunks
        .iter()
        .filter(|c| c.path.starts_with("v1/keys/"))
        .collect();
    let public_bytes: u64 = public.iter().map(|c| c.bytes).sum();
    let public_keys: u64 = public.iter().map(|c| u64::from(c.keys)).sum();
    let all_bytes: u64 = report.chunks.iter().map(|c| c.bytes).sum();
    let all_keys: u64 = report.chunks.iter().map(|c| u64::from(c.keys)).sum();
    let per_key = public_bytes as f64 / public_keys.max(1) as f64;
    println!(
        "keys stored:          {} in {:.1} s ({:.0} keys/s, batches of 20,000, moved into the key tables)",
        args.keys,
        stored.as_secs_f64(),
        args.keys as f64 / stored.as_secs_f64()
    );
    println!(
        "data-prep:            {elapsed:.2} s in {runs} run(s) (longest {longest:.2} s), {} chunks on {} feeds",
        report.chunks.len(),
        feeds(report)
    );
    println!(
        "throughput:           {:.0} keys/s (keys read), {:.0} key-entries/s (written to all feeds)",
        args.keys as f64 / elapsed,
        all_keys as f64 / elapsed
    );
    println!(
        "floor:                {floor:.2} s to deflate and SHA-256 the same {all_bytes} output bytes' contents; data-prep is {:.2}x its floor",
        elapsed / floor
    );
    println!(
        "peak memory:          {:.0} MB (resident, during the run that used most)",
        drained.peak() as f64 / 1e6
    );
    println!(
        "public feed:          {public_bytes} bytes for {public_keys} keys = {per_key:.2} bytes/key on the wire, {:.3}x the 16-byte key",
        per_key / 16.0
    );

    // The consumer's side: what a peer does with the all-to-all chunks before storing them.
    let keys: Vec<VerificationKey> = backend
        .verification_keys()
        .iter()
        .map(|k| VerificationKey::from_pem(&k.public_key_pem, own.as_str(), "v1"))
        .collect::<Result<_, _>>()?;
    let mut consumer = Duration::ZERO;
    let mut checked = 0usize;
    let today = interval_of(clock.now());
    for chunk in report
        .chunks
        .iter()
        .filter(|c| c.path.starts_with("v1/a2a/"))
    {
        let zip = &chunk_bytes(&backend, &chunk.path).await?;
        let started = Instant::now();
        // As the consumer reads a peer's file: hashed and verified, then inflated again and
        // decoded.
        let opened = OpenedExport::open(zip, &ExportLimits::default())?;
        opened.verify(&keys)?;
        let file = opened.decode()?;
        for key in &file.keys {
            enfeed::domain::upload::check_key(key, today).map_err(|p| anyhow::anyhow!("{p}"))?;
        }
        checked += file.keys.len();
        consumer += started.elapsed();
    }
    let consumer = consumer.as_secs_f64();
    println!(
        "consumer:             {checked} keys read, verified and checked in {consumer:.2} s = {:.0} keys/s on one core (before storage)",
        checked as f64 / consumer
    );
    Ok(())
}

/// A chunk data-prep wrote, as stored.
async fn chunk_bytes(backend: &enfeed::Backend, path: &str) -> anyhow::Result<Vec<u8>> {
    Ok(backend
        .blobs
        .get(path)
        .await?
        .context("a chunk just written")?
        .bytes)
}

/// Seconds to deflate (level 6, as data-prep does) and SHA-256 the export.bin of every file
/// data-prep wrote: what no data-prep can avoid for the same output.
async fn floor_seconds(
    backend: &enfeed::Backend,
    report: &enfeed::services::dataprep::DataPrepReport,
) -> anyhow::Result<f64> {
    let mut floor = Duration::ZERO;
    for chunk in &report.chunks {
        let zip = chunk_bytes(backend, &chunk.path).await?;
        let file = read_export(&zip, &ExportLimits::default())?;
        let bin = encode_export_bin(
            &file.header,
            &file.signature_infos,
            &file.keys,
            &file.revised_keys,
        )?;
        let started = Instant::now();
        std::hint::black_box(zip_export(&bin, &[])?);
        std::hint::black_box(ring::digest::digest(&ring::digest::SHA256, &bin));
        floor += started.elapsed();
    }
    Ok(floor.as_secs_f64())
}

fn feeds(report: &enfeed::services::dataprep::DataPrepReport) -> usize {
    let mut feeds: Vec<&str> = report
        .chunks
        .iter()
        .map(|c| c.path.rsplit_once('/').map_or("", |(f, _)| f))
        .collect();
    feeds.sort_unstable();
    feeds.dedup();
    feeds.len()
}

/// Sizes of the Lambda artifacts of `make build`, where they exist.
fn lambda_artifacts() {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let dir = target.join("lambda");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!(
            "lambda artifacts:     none in {} (run `make build` first)",
            dir.display()
        );
        return;
    };
    let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    names.sort();
    for path in names {
        let bootstrap = path.join("bootstrap");
        if let Ok(meta) = std::fs::metadata(&bootstrap) {
            println!(
                "lambda artifact:      {} {:.1} MB",
                bootstrap.display(),
                meta.len() as f64 / 1e6
            );
        }
    }
}
