//! `enfeed-lab`: the lab around a region, never deployed. It runs live worlds of regions and
//! phones, models a world of hundreds of regions, and measures the pipeline. `enfeed-lab
//! --help` lists the commands.

mod bench;
mod compare;
mod load;
mod simulate;
mod simulate_world;

use std::io::IsTerminal as _;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "enfeed-lab",
    version,
    about = "Simulations and benchmarks of enfeed regions"
)]
struct Lab {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure the whole pipeline: data-prep, the consumer, uploads to a local server.
    Bench(bench::BenchArgs),
    /// Measure uploads side by side with PostgreSQL: a throwaway cluster driven by pgbench
    /// with an upload's store work, then the local server's load test at the same
    /// concurrency, on keep-alive connections and on a new connection per upload.
    BenchCompare(compare::CompareArgs),
    /// Run a small live world of regions and phones on this machine, and report who was
    /// notified and what each phone downloaded.
    Simulate(simulate::SimulateArgs),
    /// Model a world of hundreds of regions: what each replication strategy costs phones and
    /// backends per day, in bytes of real chunk files (or, with --live, check the model
    /// against a small live world).
    SimulateWorld(simulate_world::SimulateWorldArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ENFEED_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let lab = Lab::parse();
    tokio::runtime::Runtime::new()?.block_on(async {
        match lab.command {
            Command::Bench(args) => bench::run(args).await,
            Command::BenchCompare(args) => compare::run(args).await,
            Command::Simulate(args) => simulate::run(args).await,
            Command::SimulateWorld(args) => simulate_world::run(args).await,
        }
    })
}
