//! `enfeed-lab bench-compare`: enfeed's upload load test side by side with PostgreSQL doing an
//! upload's store work, in the same run, at the same concurrency.
//!
//! PostgreSQL runs as a throwaway cluster: `initdb` in a temporary folder, listening on
//! loopback only, with `synchronous_commit = on` and `fsync = on` as a region would run it.
//! `pgbench` drives it from as many clients as the load test has, each on its own connection
//! (as a server's connection pool would), with one script per upload: take the next one-time
//! code, consume its row with a conditional update (the run fails if it consumed none), insert
//! 14 key rows under a unique index, commit. Then enfeed's own load test runs (see [`load`]),
//! with HTTP, JSON and every upload rule in front of its store: on keep-alive connections, and
//! then on a new connection per upload as phones send them (unless `--connection-per-upload`
//! asks for that one alone). Both throughputs, both latencies and their ratios are printed.
//! The cluster is stopped and its folder deleted when the command ends, also on an error or
//! an interrupt.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::load::{self, LoadArgs, LoadResult, load_average, quantile_ms};

#[derive(clap::Args)]
pub struct CompareArgs {
    #[command(flatten)]
    load: LoadArgs,

    /// Folder of PostgreSQL's programs (default: the newest `/usr/lib/postgresql/VERSION/bin`).
    #[arg(long)]
    postgres_bin: Option<PathBuf>,
}

/// The key and code tables of a region, as a server on PostgreSQL would keep them.
const SCHEMA: &str = "
CREATE TABLE codes (
    hash bytea PRIMARY KEY,
    issued_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    used_by bytea,
    inserted integer NOT NULL DEFAULT 0
);
CREATE TABLE keys (
    key_data bytea PRIMARY KEY,
    publish_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    rolling_start integer NOT NULL,
    rolling_period integer NOT NULL,
    transmission_risk integer NOT NULL,
    report_type integer NOT NULL,
    regions text NOT NULL
);
CREATE INDEX keys_by_publish_at ON keys (publish_at);
CREATE SEQUENCE uploads;
";

pub async fn run(args: CompareArgs) -> anyhow::Result<()> {
    // Interrupts are answered by stopping the cluster first. pgbench and psql, in this
    // process group, end on the same interrupt, which ends the PostgreSQL side with an error.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let clients = args.load.clients.max(1);
    let uploads = args.load.uploads.max(1);
    let bin = match args.postgres_bin {
        Some(bin) => bin,
        None => newest_postgres()?,
    };
    println!(
        "postgresql:           {} (load average {} before)",
        bin.display(),
        load_average()
    );
    let rate = args.load.rate;
    let store_work =
        tokio::task::spawn_blocking(move || postgres_side(&bin, uploads, clients, rate));
    tokio::pin!(store_work);
    let pg = tokio::select! {
        done = &mut store_work => done??,
        _ = interrupt.recv() => return interrupted(store_work.await),
        _ = terminate.recv() => return interrupted(store_work.await),
    };
    println!(
        "postgresql store:     {} uploads' store work from {clients} clients = {:.0} uploads/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (pgbench, synchronous_commit = on, no HTTP; load average {} after)",
        pg.latencies.len(),
        pg.per_second,
        quantile_ms(&pg.latencies, 0.5),
        quantile_ms(&pg.latencies, 0.99),
        quantile_ms(&pg.latencies, 1.0),
        load_average(),
    );

    let modes = match args.load.connection_per_upload {
        true => vec![true],
        false => vec![false, true],
    };
    for connection_per_upload in modes {
        let load = LoadArgs {
            connection_per_upload,
            ..args.load.clone()
        };
        let enfeed = tokio::select! {
            done = load::run(&load) => done?,
            _ = interrupt.recv() => anyhow::bail!("interrupted"),
            _ = terminate.recv() => anyhow::bail!("interrupted"),
        };
        compare(&enfeed, &pg, connection_per_upload);
    }
    Ok(())
}

fn interrupted(
    store_work: Result<anyhow::Result<PgbenchResult>, tokio::task::JoinError>,
) -> anyhow::Result<()> {
    // The cluster is gone once the PostgreSQL side has returned, whatever it returned.
    drop(store_work);
    anyhow::bail!("interrupted; the PostgreSQL cluster is stopped and deleted")
}

fn compare(enfeed: &LoadResult, pg: &PgbenchResult, connection_per_upload: bool) {
    let (ours, theirs) = (enfeed.uploads_per_second(), pg.per_second);
    let (our_p50, their_p50) = (
        quantile_ms(&enfeed.upload_latencies, 0.5),
        quantile_ms(&pg.latencies, 0.5),
    );
    let (our_p99, their_p99) = (
        quantile_ms(&enfeed.upload_latencies, 0.99),
        quantile_ms(&pg.latencies, 0.99),
    );
    let connections = match connection_per_upload {
        true => "a new connection per upload",
        false => "keep-alive",
    };
    println!(
        "enfeed / postgresql:  ({connections}) {:.2}x the throughput ({ours:.0} against {theirs:.0} uploads/s); p50 {our_p50:.2} against {their_p50:.2} ms ({:.2}x); p99 {our_p99:.2} against {their_p99:.2} ms ({:.2}x)",
        ours / theirs,
        our_p50 / their_p50,
        our_p99 / their_p99,
    );
}

/// The PostgreSQL side, start to end: a cluster started, the tables made and the codes
/// issued, pgbench run; the cluster stopped and deleted on the way out, whatever happened.
fn postgres_side(
    bin: &Path,
    uploads: usize,
    clients: usize,
    rate: Option<u32>,
) -> anyhow::Result<PgbenchResult> {
    let postgres = Postgres::start(bin)?;
    postgres.psql(SCHEMA)?;
    // Every client runs the same number of uploads: a code for each.
    let codes = uploads.div_ceil(clients) * clients;
    postgres.psql(&format!(
        "INSERT INTO codes (hash, issued_at, expires_at)
         SELECT sha256(convert_to(i::text, 'UTF8')), 0, 4102444800 FROM generate_series(1, {codes}) i;"
    ))?;
    postgres.psql("VACUUM ANALYZE")?;
    postgres.pgbench(uploads, clients, rate)
}

/// The newest PostgreSQL of Debian's packages.
fn newest_postgres() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (make bench-compare installs it)")?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("pgbench").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .context("no PostgreSQL with pgbench in /usr/lib/postgresql")
}

struct PgbenchResult {
    per_second: f64,
    /// Latencies of the uploads' transactions, sorted.
    latencies: Vec<Duration>,
}

/// A throwaway cluster, stopped and deleted when dropped.
struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// The account PostgreSQL runs as when this runs as root (it refuses to run as root).
    account: Option<String>,
}

impl Postgres {
    fn start(bin: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let account = running_as_root()?.then(|| "postgres".to_string());
        if let Some(account) = &account {
            let (uid, gid) = account_ids(account)?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let postgres = Self {
            bin: bin.to_path_buf(),
            dir,
            port,
            account,
        };
        let data = postgres.data();
        postgres.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "enfeed",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} \
             -c synchronous_commit=on -c fsync=on -c max_connections=300",
            postgres.dir.path().display()
        );
        let log = format!("{}/server.log", postgres.dir.path().display());
        postgres.run(
            "pg_ctl",
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        )?;
        Ok(postgres)
    }

    fn data(&self) -> String {
        format!("{}/data", self.dir.path().display())
    }

    /// Runs one of PostgreSQL's programs (as its account when this is root); its output.
    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let path = self.bin.join(program);
        let mut command = match &self.account {
            Some(account) => {
                let mut c = Command::new("runuser");
                c.args(["-u", account, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", path.display()))?;
        anyhow::ensure!(
            output.status.success(),
            "{program} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// How psql and pgbench reach the cluster: its loopback port, as the bench's role.
    fn connection(&self) -> Vec<String> {
        [
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "enfeed",
        ]
        .map(String::from)
        .to_vec()
    }

    fn psql(&self, sql: &str) -> anyhow::Result<()> {
        let connection = self.connection();
        let mut args: Vec<&str> = connection.iter().map(String::as_str).collect();
        args.extend(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c", sql]);
        self.run("psql", &args)?;
        Ok(())
    }

    /// `uploads` uploads' store work (rounded up to a whole number per client) from `clients`
    /// clients at once, at `rate` a second if given (`pgbench -R`: a transaction's latency then
    /// counts from when it was due, as the load test's do). pgbench fails, and with it this,
    /// if any upload consumed no code.
    fn pgbench(
        &self,
        uploads: usize,
        clients: usize,
        rate: Option<u32>,
    ) -> anyhow::Result<PgbenchResult> {
        let script = self.dir.path().join("upload.sql");
        std::fs::write(&script, upload_script())?;
        if let Some(account) = &self.account {
            let (uid, gid) = account_ids(account)?;
            std::os::unix::fs::chown(&script, Some(uid), Some(gid))?;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let start = now / 86_400 * 144;
        let (connection, clients_arg) = (self.connection(), clients.to_string());
        let per_client = uploads.div_ceil(clients).to_string();
        let defines = [
            format!("now={now}"),
            format!("expires={}", now + 30 * 86_400),
            format!("start={start}"),
        ];
        let mut args: Vec<&str> = connection.iter().map(String::as_str).collect();
        args.extend([
            "-n",
            "-M",
            "prepared",
            "-c",
            &clients_arg,
            "-j",
            "2",
            "-t",
            &per_client,
            "-f",
            "upload.sql",
            "-l",
            "--log-prefix",
            "pgbench",
        ]);
        let rate = rate.map(|rate| rate.to_string());
        if let Some(rate) = &rate {
            args.extend(["-R", rate.as_str()]);
        }
        for define in &defines {
            args.extend(["-D", define.as_str()]);
        }
        args.push("postgres");
        let output = self.run("pgbench", &args)?;
        let per_second = output
            .lines()
            .find_map(|l| l.strip_prefix("tps = "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no throughput in pgbench's output: {output}"))?;
        let mut latencies = Vec::new();
        for entry in std::fs::read_dir(self.dir.path())? {
            let path = entry?.path();
            let is_log = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("pgbench."));
            if !is_log {
                continue;
            }
            // client, transaction, microseconds, script, epoch, microseconds of the epoch, and
            // with a rate the microseconds it started after it was due.
            for line in std::fs::read_to_string(&path)?.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let field = |n: usize| fields.get(n).and_then(|t| t.parse::<u64>().ok());
                let micros = field(2).with_context(|| format!("a pgbench log line: {line}"))?;
                let late = field(6).unwrap_or(0);
                latencies.push(Duration::from_micros(micros + late));
            }
        }
        anyhow::ensure!(
            latencies.len() == uploads.div_ceil(clients) * clients,
            "pgbench logged {} transactions, not {}",
            latencies.len(),
            uploads.div_ceil(clients) * clients
        );
        latencies.sort_unstable();
        Ok(PgbenchResult {
            per_second,
            latencies,
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        if let Err(e) = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]) {
            eprintln!("stopping the PostgreSQL cluster: {e:#}");
        }
    }
}

/// An upload's work on the store: the next code consumed (if unused and unexpired; `\gset`
/// fails the client if no row was), its 14 keys inserted under the unique index on key data,
/// one commit.
fn upload_script() -> String {
    let keys: Vec<String> = (1..=14)
        .map(|day| {
            format!(
                "(uuid_send(gen_random_uuid()), :now, :expires, :start - {}, 144, {}, 1, 'CH')",
                day * 144,
                day % 8
            )
        })
        .collect();
    format!(
        "SELECT nextval('uploads') AS n \\gset\n\
         BEGIN;\n\
         UPDATE codes SET used_by = sha256(convert_to('upload ' || :n::text, 'UTF8')), inserted = 14 \
         WHERE hash = sha256(convert_to(:n::text, 'UTF8')) AND used_by IS NULL AND expires_at > :now \
         RETURNING 1 AS consumed \\gset\n\
         INSERT INTO keys (key_data, publish_at, expires_at, rolling_start, rolling_period, \
         transmission_risk, report_type, regions) VALUES {};\n\
         COMMIT;\n",
        keys.join(", ")
    )
}

/// Whether this process runs as root (Linux).
fn running_as_root() -> anyhow::Result<bool> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .context("no effective user ID in /proc/self/status")?;
    Ok(uid == "0")
}

/// The user and group IDs of `account`, from /etc/passwd.
fn account_ids(account: &str) -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let fields: Vec<&str> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&account))
        .with_context(|| format!("no account {account} (Debian's postgresql package makes it)"))?;
    Ok((
        fields.get(2).context("a user ID")?.parse()?,
        fields.get(3).context("a group ID")?.parse()?,
    ))
}
