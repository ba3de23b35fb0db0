//! The upload load test of `enfeed-lab bench` and `bench-compare`: a region's HTTP API on
//! loopback, served as `enfeed serve` serves it, on a fresh store, taking uploads of 14 keys
//! from many clients at once.
//!
//! 1. The operator adds a code issuer (`POST /v1/admin/issuers`), and that health authority
//!    issues a one-time code per request (`POST /v1/issuer/codes` with its token, 16 requests
//!    at a time), as its system would. A code that collides with a live one is the server's to
//!    draw again; any answer but 201 fails the run.
//! 2. The clients, each on its own loopback address, send the uploads, with chaff requests
//!    (`X-Chaff: 1`) mixed in if asked, as fast as answers come back or at a given rate: on
//!    one keep-alive connection each, or on a new connection per request as phones do.
//! 3. Every request must be answered 200.
//! 4. Afterwards every key of every upload must be in the store, and none of the chaff's. A
//!    chaff request carries an issued, unused code and keys of its own, so a server that
//!    stored chaff would be caught here.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use enfeed::adapters::listener;
use enfeed::domain::access::AccessPolicy;
use enfeed::domain::key::{INTERVALS_PER_DAY, interval_of};
use enfeed::entry::api;
use enfeed::ports::{Clock as _, SystemClock};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use reqwest::StatusCode;

#[derive(clap::Args, Clone, Debug)]
pub struct LoadArgs {
    /// Uploads sent to the local server (0 skips the load test).
    #[arg(long, default_value_t = 20_000)]
    pub uploads: usize,

    /// Concurrent clients, each on its own loopback address.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,

    /// Open a new connection for every request, as phones do (default: one keep-alive
    /// connection per client).
    #[arg(long)]
    pub connection_per_upload: bool,

    /// Share of chaff requests (`X-Chaff: 1`) among all requests, in percent: they come on
    /// top of the uploads.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..100))]
    pub chaff: u32,

    /// Requests offered per second, spread evenly over the clients, instead of each client
    /// sending its next as soon as its last is answered. A request's latency is counted from
    /// when it was due, so a server that falls behind is not excused by its clients waiting.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: Option<u32>,
}

/// What a load test measured.
pub struct LoadResult {
    pub uploads: usize,
    pub elapsed: Duration,
    /// Latencies of the uploads, sorted.
    pub upload_latencies: Vec<Duration>,
    /// Latencies of the chaff requests, sorted.
    pub chaff_latencies: Vec<Duration>,
}

impl LoadResult {
    pub fn uploads_per_second(&self) -> f64 {
        self.uploads as f64 / self.elapsed.as_secs_f64()
    }
}

/// The `q` quantile of sorted `latencies`, in milliseconds.
pub fn quantile_ms(latencies: &[Duration], q: f64) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    let rank = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
    latencies[rank - 1].as_secs_f64() * 1e3
}

/// The load average of this machine over the last minute (Linux), to read the figures by.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// The processor time this process has used (user and system, all threads; Linux), to tell
/// what a request costs when the clients and the server share a few cores.
fn cpu_time() -> Option<Duration> {
    // The fields after the command's name, which is in parentheses; utime and stime are the
    // 14th and 15th of all, in clock ticks of 1/100 s (USER_HZ, fixed at 100 for /proc).
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// The machine's processor time so far, in clock ticks of all its cores (Linux): busy, stolen
/// by the hypervisor (time this virtual machine was ready to run and a neighbour ran
/// instead), and in all.
#[derive(Clone, Copy)]
struct MachineCpu {
    busy: u64,
    stolen: u64,
    total: u64,
}

fn machine_cpu() -> Option<MachineCpu> {
    // The first line of /proc/stat: "cpu" then user, nice, system, idle, iowait, irq,
    // softirq, steal (and guest times, which user and nice already count).
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = ticks[..] else {
        return None;
    };
    Some(MachineCpu {
        busy: user + nice + system + irq + softirq,
        stolen: steal,
        total: user + nice + system + idle + iowait + irq + softirq + steal,
    })
}

/// How often the disk probe makes a write durable during the load test.
const DISK_PROBE_EVERY: Duration = Duration::from_millis(10);

/// Probes the disk under `dir` until `stop` is set: every [`DISK_PROBE_EVERY`], how long it
/// takes to make a 4 KiB write durable (`pwrite` and `fdatasync` of one page of a file of its
/// own), sorted. That is the floor under an upload's latency, which waits for at least one
/// sync; measured during the load test, beside the store's own syncs, because a virtual
/// disk's sync varies tenfold from one second to the next.
fn probe_disk(
    dir: &std::path::Path,
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<Vec<Duration>> {
    use std::os::unix::fs::FileExt as _;
    let path = dir.join("disk-probe");
    let file = std::fs::File::create(&path)?;
    let page = [0x5a; 4096];
    file.write_all_at(&page, 0)?;
    file.sync_all()?;
    let mut syncs = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let started = Instant::now();
        file.write_all_at(&page, 0)?;
        file.sync_data()?;
        syncs.push(started.elapsed());
        std::thread::sleep(DISK_PROBE_EVERY.saturating_sub(started.elapsed()));
    }
    std::fs::remove_file(&path)?;
    syncs.sort_unstable();
    Ok(syncs)
}

/// One request a client sends.
struct Request {
    chaff: bool,
    body: Vec<u8>,
}

pub async fn run(args: &LoadArgs) -> anyhow::Result<LoadResult> {
    let dir = tempfile::tempdir()?;
    let config = enfeed::Config::new("CH".parse()?);
    let backend = Arc::new(enfeed::entry::local::open_backend(
        config,
        dir.path(),
        Arc::new(SystemClock),
        &[],
    )?);
    let token = enfeed::domain::secret::random_token();
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = socket.local_addr()?;
    let access = AccessPolicy {
        admin_token: token.clone(),
        ..AccessPolicy::default()
    };
    let app = api::router(backend.clone(), access, api::ApiSettings::default());
    let server = tokio::spawn(listener::serve(
        socket,
        app,
        listener::Limits::default(),
        None,
        std::future::pending(),
    ));

    let chaff = args.uploads * args.chaff as usize / (100 - args.chaff as usize);
    let codes = issue_codes(address, &token, args.uploads + chaff).await?;
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let now = SystemClock.now();
    let mut requests: Vec<Request> = codes
        .iter()
        .enumerate()
        .map(|(i, code)| Request {
            chaff: i >= args.uploads,
            body: upload_body(&mut rng, now, code),
        })
        .collect();
    // Chaff mixed in at random places.
    for i in (1..requests.len()).rev() {
        requests.swap(i, rng.next_u64() as usize % (i + 1));
    }

    let clients = args.clients.max(1);
    let mut shares: Vec<Vec<Request>> = (0..clients).map(|_| Vec::new()).collect();
    for (i, request) in requests.into_iter().enumerate() {
        shares[i % clients].push(request);
    }
    let probing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = std::thread::spawn({
        let (dir, stop) = (dir.path().to_owned(), probing.clone());
        move || probe_disk(&dir, &stop)
    });
    if let Ok(arenas) = std::env::var("MALLOC_ARENA_MAX") {
        println!(
            "allocator:            MALLOC_ARENA_MAX={arenas}; `enfeed serve` runs with glibc's default, and with fewer arenas than threads the server's threads wait on each other's arena locks (docs/performance.md)"
        );
    }
    let load_before = load_average();
    let cpu_before = cpu_time();
    let machine_before = machine_cpu();
    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for (i, share) in shares.into_iter().enumerate() {
        // A loopback address per client, as phones come from many addresses.
        let source = Ipv4Addr::new(127, 0, (2 + i / 250) as u8, (2 + i % 250) as u8);
        let fresh = args.connection_per_upload;
        // Request k of client i is the (k * clients + i)th of all.
        let schedule = args.rate.map(|rate| Schedule {
            first: started + Duration::from_secs_f64(i as f64 / f64::from(rate)),
            every: Duration::from_secs_f64(clients as f64 / f64::from(rate)),
        });
        running.spawn(async move { client(source, address, share, fresh, schedule).await });
    }
    let (mut upload_latencies, mut chaff_latencies) = (Vec::new(), Vec::new());
    while let Some(result) = running.join_next().await {
        for (is_chaff, latency) in result?? {
            match is_chaff {
                true => chaff_latencies.push(latency),
                false => upload_latencies.push(latency),
            }
        }
    }
    let elapsed = started.elapsed();
    let machine = machine_cpu()
        .zip(machine_before)
        .map(|(after, before)| MachineCpu {
            busy: after.busy - before.busy,
            stolen: after.stolen - before.stolen,
            total: (after.total - before.total).max(1),
        });
    let cpu = cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    server.abort();
    probing.store(true, std::sync::atomic::Ordering::Relaxed);
    let disk = probe.join().expect("the disk probe does not panic")?;
    upload_latencies.sort_unstable();
    chaff_latencies.sort_unstable();
    let stored = backend.keys.count().await?;
    let expected = 14 * args.uploads as u64;
    let result = LoadResult {
        uploads: args.uploads,
        elapsed,
        upload_latencies,
        chaff_latencies,
    };
    let connections = match args.connection_per_upload {
        true => "a new connection per request",
        false => "keep-alive",
    };
    let offered = match args.rate {
        Some(rate) => format!(", {rate} requests/s offered"),
        None => String::new(),
    };
    println!(
        "uploads:              {} of 14 keys from {clients} clients ({connections}{offered}) in {:.2} s = {:.0} uploads/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (load average {load_before} before, {} after)",
        result.uploads,
        elapsed.as_secs_f64(),
        result.uploads_per_second(),
        quantile_ms(&result.upload_latencies, 0.5),
        quantile_ms(&result.upload_latencies, 0.99),
        quantile_ms(&result.upload_latencies, 1.0),
        load_average(),
    );
    if chaff > 0 {
        println!(
            "chaff:                {chaff} requests ({} % of all) mixed in, {:.0} requests/s in all; chaff latency p50 {:.2} ms, p99 {:.2} ms",
            args.chaff,
            (result.uploads + chaff) as f64 / elapsed.as_secs_f64(),
            quantile_ms(&result.chaff_latencies, 0.5),
            quantile_ms(&result.chaff_latencies, 0.99),
        );
    }
    println!(
        "disk:                 a 4 KiB write made durable beside the store every {} ms during the load test (the floor under an upload's latency): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        DISK_PROBE_EVERY.as_millis(),
        quantile_ms(&disk, 0.5),
        quantile_ms(&disk, 0.99),
        quantile_ms(&disk, 1.0),
    );
    if let Some(cpu) = cpu {
        println!(
            "cpu:                  {:.2} s of this process (server and clients) over the load test = {:.0} µs per request",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / (result.uploads + chaff) as f64,
        );
    }
    if let Some(machine) = machine {
        // A run whose cores were stolen measured the neighbours as much as enfeed.
        println!(
            "machine cpu:          {:.0} % of all cores busy over the load test, {:.1} % stolen by the hypervisor",
            machine.busy as f64 * 100.0 / machine.total as f64,
            machine.stolen as f64 * 100.0 / machine.total as f64,
        );
    }
    println!(
        "stored afterwards:    {} keys, {expected} uploaded: {} lost, {} stored from chaff",
        stored.local,
        expected.saturating_sub(stored.local),
        stored.local.saturating_sub(expected),
    );
    anyhow::ensure!(
        stored.local == expected,
        "the store holds {} keys after {} acknowledged uploads of 14: uploads were lost, or chaff was stored",
        stored.local,
        args.uploads
    );
    Ok(result)
}

/// `count` one-time codes, issued the way a health authority does: the operator adds it as a
/// code issuer, and it asks for codes over HTTP with its own token, a few requests at a time.
async fn issue_codes(server: SocketAddr, admin: &str, count: usize) -> anyhow::Result<Vec<String>> {
    const AT_ONCE: usize = 16;
    let http = reqwest::Client::new();
    let answer = http
        .post(format!("http://{server}/v1/admin/issuers"))
        .bearer_auth(admin)
        .json(&serde_json::json!({ "name": "health authority" }))
        .send()
        .await?;
    anyhow::ensure!(
        answer.status() == StatusCode::CREATED,
        "adding the code issuer answered {}: {}",
        answer.status(),
        answer.text().await?
    );
    let issuer: serde_json::Value = answer.json().await?;
    let token = issuer["token"]
        .as_str()
        .context("the code issuer's token")?
        .to_string();
    let url = format!("http://{server}/v1/issuer/codes");
    let mut issuing = tokio::task::JoinSet::new();
    for i in 0..AT_ONCE.min(count) {
        let share = count / AT_ONCE + usize::from(i < count % AT_ONCE);
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        issuing.spawn(async move {
            let mut codes = Vec::with_capacity(share);
            for _ in 0..share {
                let answer = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "testType": "confirmed" }))
                    .send()
                    .await?;
                anyhow::ensure!(
                    answer.status() == StatusCode::CREATED,
                    "issuing a code answered {}: {}",
                    answer.status(),
                    answer.text().await?
                );
                let issued: serde_json::Value = answer.json().await?;
                codes.push(
                    issued["code"]
                        .as_str()
                        .context("an issued code")?
                        .to_string(),
                );
            }
            anyhow::Ok(codes)
        });
    }
    let mut codes = Vec::with_capacity(count);
    while let Some(issued) = issuing.join_next().await {
        codes.extend(issued??);
    }
    Ok(codes)
}

/// When a client's requests are due: the first, and then one every so often.
#[derive(Clone, Copy)]
struct Schedule {
    first: Instant,
    every: Duration,
}

/// One client from `source`: its requests one after the other, on one keep-alive connection
/// or on a new connection each (`fresh`), each when it is due if there is a schedule; whether
/// each was chaff, and its latency (from when it was due). Every request must be answered 200.
///
/// It speaks HTTP/1.1 through hyper's connection API, without a client's pool, URL parsing and
/// redirects: the clients share the machine with the server they measure, so what they spend
/// per request is taken from the server.
async fn client(
    source: Ipv4Addr,
    server: SocketAddr,
    requests: Vec<Request>,
    fresh: bool,
    schedule: Option<Schedule>,
) -> anyhow::Result<Vec<(bool, Duration)>> {
    let host = hyper::header::HeaderValue::from_str(&server.to_string())?;
    let mut latencies = Vec::with_capacity(requests.len());
    let mut connection = None;
    for (k, request) in requests.into_iter().enumerate() {
        let started = match schedule {
            Some(Schedule { first, every }) => {
                let due = first + every * k as u32;
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => Instant::now(),
        };
        let sender = match &mut connection {
            Some(sender) if !fresh => sender,
            _ => connection.insert(connect(source, server).await?),
        };
        let mut sending = hyper::Request::post("/v1/publish")
            .header(hyper::header::HOST, host.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if request.chaff {
            sending = sending.header(api::CHAFF_HEADER, "1");
        }
        if fresh {
            sending = sending.header(hyper::header::CONNECTION, "close");
        }
        sender.ready().await?;
        let answer = sender
            .send_request(sending.body(Full::new(Bytes::from(request.body)))?)
            .await?;
        let status = answer.status();
        let body = answer.into_body().collect().await?.to_bytes();
        latencies.push((request.chaff, started.elapsed()));
        anyhow::ensure!(
            status == StatusCode::OK,
            "{} answered {status}: {}",
            if request.chaff { "chaff" } else { "an upload" },
            String::from_utf8_lossy(&body)
        );
    }
    Ok(latencies)
}

/// A new HTTP/1.1 connection from `source` to `server`, driven by a task of its own.
async fn connect(
    source: Ipv4Addr,
    server: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// The JSON of an upload of 14 keys, one per day of the last 14 days.
fn upload_body(rng: &mut ChaCha20Rng, now: u64, code: &str) -> Vec<u8> {
    use base64::Engine as _;
    let today = interval_of(now) / INTERVALS_PER_DAY * INTERVALS_PER_DAY;
    let keys: Vec<serde_json::Value> = (1..=14)
        .map(|day| {
            let mut key = [0u8; 16];
            rng.fill_bytes(&mut key);
            serde_json::json!({
                "key": base64::engine::general_purpose::STANDARD.encode(key),
                "rollingStartNumber": today - day * INTERVALS_PER_DAY,
                "rollingPeriod": INTERVALS_PER_DAY,
                "transmissionRisk": rng.next_u32() % 8,
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "temporaryExposureKeys": keys,
        "regions": ["CH"],
        "verificationPayload": code,
    }))
    .expect("JSON serializes")
}
