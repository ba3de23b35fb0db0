//! Data-prep on DynamoDB under a backlog (`make bench-dynamo`): generated keys stored through
//! the DynamoDB adapter on a moto server, then published by data-prep run after run, as the
//! data-prep function does within an invocation, each run's time and peak memory measured
//! ([`enfeed_sim::backlog`], the same drain as `enfeed-lab bench` on the embedded store).
//!
//! `cargo bench -p enfeed-tests --bench dynamo_backlog -- [--keys N] [--max-keys N]`: the keys
//! of the backlog (default 1,000,000) and the most a run takes (default 500,000, the data-prep
//! function's). moto keeps every item in one Python process, about 3 KB a key with its
//! seen-marker, and answers one request at a time: a million keys take it some 6 GB and half
//! an hour. Its server here is made fit for that ([`Moto::start_for_bulk`]). `cargo test`
//! (`make test`) runs it on a backlog of 2,000 keys in runs of 500.

use std::time::Instant;

use enfeed::domain::key::RegionId;
use enfeed::ports::Clock as _;
use enfeed_sim::backlog;
use enfeed_tests::cloud::Cloud;
use enfeed_tests::moto::Moto;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|at| args.get(at + 1))
        .map(|value| value.parse().expect("a number"))
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    // `cargo test` runs this too, without `--bench`: then a small backlog, so that the
    // benchmark, and moto's server for it, keep working.
    let measuring = std::env::args().any(|a| a == "--bench");
    let (keys, max_keys) = match measuring {
        true => (arg("--keys", 1_000_000), arg("--max-keys", 500_000)),
        false => (2_000, 500),
    };
    let cloud = Cloud::start_on(Moto::start_for_bulk().await).await;
    let own: RegionId = "CH".parse().unwrap();
    let mut config = cloud.config();
    config.dataprep_max_keys = max_keys;
    let backend = cloud.backend_with(config).await;

    let started = Instant::now();
    let now = cloud.clock.now();
    backlog::fill(backend.keys.as_ref(), keys, 20, own, now)
        .await
        .expect("the keys stored");
    let stored = started.elapsed().as_secs_f64();

    cloud.clock.advance(60);
    let drained = backlog::drain(&backend).await.expect("data-prep runs");
    let published: u64 = drained.runs.iter().map(|r| r.keys).sum();
    assert_eq!(published, keys as u64, "every key published to phones once");
    assert_eq!(
        drained.runs.len(),
        keys.div_ceil(max_keys),
        "each run takes as many keys as it may"
    );
    println!(
        "keys stored:          {keys} in {stored:.1} s ({:.0} keys/s, DynamoDB on moto)",
        keys as f64 / stored
    );
    println!(
        "data-prep:            {:.2} s in {} run(s) of at most {max_keys} keys (longest {:.2} s), {} chunks",
        drained.seconds(),
        drained.runs.len(),
        drained.longest(),
        drained.report.chunks.len()
    );
    let peaks: Vec<u64> = drained.runs.iter().map(|r| r.peak).collect();
    println!(
        "peak memory:          {:.0}-{:.0} MB (resident, the runs' least and most)",
        peaks.iter().min().copied().unwrap_or(0) as f64 / 1e6,
        drained.peak() as f64 / 1e6
    );
}
