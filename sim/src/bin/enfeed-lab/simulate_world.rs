//! `enfeed-lab simulate-world`: the scale model of [`enfeed_sim::scale`] for a world of hundreds of
//! regions. It reports, for each replication strategy, what phones download and what backends
//! pull, serve and store per day, how that grows with the number of regions and with daily
//! cases, and what it costs on AWS. Byte counts come from real chunk files, encoded and signed
//! at the start of the run.
//!
//! With `--live`, it instead runs a small world of real regions on loopback (the same model
//! parameters), uploads the model's cases through the HTTP API, replicates, lets the model's
//! phones download, and prints the model's bytes next to the measured ones.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use enfeed::domain::key::RegionId;
use enfeed_sim::scale::{
    self, Costs, Day, Encoding, Params, Prices, RAW_KEY_BYTES, Strategy, StrategyReport, Usage,
    WorldModel,
};
use indicatif::{ProgressBar, ProgressStyle};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

#[derive(clap::Args)]
pub struct SimulateWorldArgs {
    /// Regions R.
    #[arg(long, default_value_t = 300)]
    regions: usize,

    /// Confirmed cases uploading keys per day, worldwide.
    #[arg(long, default_value_t = 200_000)]
    cases: u64,

    /// Phones running the app, worldwide.
    #[arg(long, default_value_t = 3.5e9)]
    phones: f64,

    /// Diagnosis Keys per upload.
    #[arg(long, default_value_t = 14)]
    keys_per_case: u32,

    /// Share of people declaring roaming regions, in percent.
    #[arg(long, default_value_t = 20.0)]
    travellers: f64,

    /// Roaming regions of a traveller: 1 to this many.
    #[arg(long, default_value_t = 2)]
    max_roaming: u32,

    /// Chance in percent that a roaming region is in the traveller's own cluster.
    #[arg(long, default_value_t = 80.0)]
    in_cluster: f64,

    /// Explicit cluster sizes (e.g. 2,2), instead of the generated EU-like, US-like and
    /// enterprise clusters.
    #[arg(long, value_delimiter = ',')]
    clusters: Option<Vec<usize>>,

    /// Data-prep runs per day.
    #[arg(long, default_value_t = 24)]
    runs_per_day: u32,

    /// Index polls per day of a phone, per feed it downloads.
    #[arg(long, default_value_t = 6)]
    phone_polls: u32,

    /// Smallest public chunk: fewer real keys are padded with random ones (0: off).
    #[arg(long, default_value_t = enfeed::domain::config::PADDING_MIN)]
    padding_min: usize,

    /// Phones sampled per region for the travel model.
    #[arg(long, default_value_t = 200)]
    phone_sample: usize,

    /// Seed of the model's randomness.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Numbers of regions of the growth table and the plot.
    #[arg(long, value_delimiter = ',', default_value = "10,30,100,300,1000")]
    sweep_regions: Vec<usize>,

    /// Daily cases of the growth table.
    #[arg(long, value_delimiter = ',', default_value = "50000,200000,800000")]
    sweep_cases: Vec<u64>,

    /// Write an SVG plot of bytes per phone per day against R to this file.
    #[arg(long)]
    plot: Option<PathBuf>,

    /// Run the world live instead: real regions on loopback, the model's cases uploaded, the
    /// model's phones downloading. Use small values (e.g. --regions 4 --cases 100).
    #[arg(long)]
    live: bool,

    /// Days of the live run.
    #[arg(long, default_value_t = 2)]
    live_days: u32,

    /// Replication strategy of the live run: partial, hybrid or all-to-all.
    #[arg(long, default_value = "partial", value_parser = parse_strategy)]
    live_strategy: Strategy,
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    match s {
        "partial" => Ok(Strategy::Partial),
        "hybrid" => Ok(Strategy::ClusterHybrid),
        "all-to-all" => Ok(Strategy::AllToAll),
        other => Err(format!("{other:?}: expected partial, hybrid or all-to-all")),
    }
}

impl SimulateWorldArgs {
    fn params(&self) -> Params {
        Params {
            regions: self.regions,
            phones: self.phones,
            daily_cases: self.cases,
            keys_per_case: self.keys_per_case,
            travellers: self.travellers / 100.0,
            max_roaming: self.max_roaming,
            in_cluster: self.in_cluster / 100.0,
            cluster_sizes: self.clusters.clone(),
            runs_per_day: self.runs_per_day,
            phone_polls: self.phone_polls,
            peer_polls: self.runs_per_day,
            padding_min: self.padding_min,
            phone_sample: self.phone_sample,
            seed: self.seed,
            ..Params::default()
        }
    }
}

/// Chunk sizes encoded to measure the encoding: dense where deflate's cost per key still
/// falls (small chunks), sparse where it is flat.
const SAMPLE_SIZES: [usize; 14] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 10_000, 100_000, 500_000,
];

pub async fn run(args: SimulateWorldArgs) -> anyhow::Result<()> {
    if args.live {
        return live(&args).await;
    }
    let params = args.params();
    let steps = 2 + args.sweep_regions.len() + args.sweep_cases.len();
    let progress = ProgressBar::new(steps as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}").expect("a valid template"),
    );
    progress.set_message("encoding sample chunks");
    let encoding = Encoding::measure(&SAMPLE_SIZES).await?;
    progress.inc(1);
    progress.set_message(format!("R = {}", params.regions));
    let (world, _, reports) = scale::run(&params, &encoding);
    progress.inc(1);
    let mut by_regions = Vec::new();
    for &regions in &args.sweep_regions {
        progress.set_message(format!("sweep: R = {regions}"));
        by_regions.push((
            regions,
            scale::run(
                &Params {
                    regions,
                    ..params.clone()
                },
                &encoding,
            )
            .2,
        ));
        progress.inc(1);
    }
    let mut by_cases = Vec::new();
    for &daily_cases in &args.sweep_cases {
        progress.set_message(format!("sweep: {daily_cases} cases"));
        let swept = Params {
            daily_cases,
            ..params.clone()
        };
        by_cases.push((daily_cases, scale::run(&swept, &encoding).2));
        progress.inc(1);
    }
    progress.finish_and_clear();

    let mut out = String::new();
    write_encoding(&mut out, &encoding)?;
    write_world(&mut out, &params, &world)?;
    write_paper_check(&mut out, &params, &encoding, &reports)?;
    write_strategies(&mut out, &reports)?;
    write_growth(&mut out, "R", &by_regions)?;
    write_growth(&mut out, "daily cases", &by_cases)?;
    write_costs(&mut out, &params, &reports)?;
    print!("{out}");
    if let Some(path) = &args.plot {
        let svg = plot(&params, &by_regions);
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
        println!("\nplot written to {}", path.display());
    }
    Ok(())
}

/// Dollars, with cents, or four significant digits below a dollar.
fn usd(dollars: f64) -> String {
    match dollars {
        d if d >= 1.0 => format!("{d:.2}"),
        d => format!("{d:.4}"),
    }
}

fn mb(bytes: f64) -> String {
    format!("{:.3} MB", bytes / 1e6)
}

fn write_encoding(out: &mut String, encoding: &Encoding) -> std::fmt::Result {
    writeln!(
        out,
        "## Encoding (real signed export files, deflate level 6)\n"
    )?;
    writeln!(out, "| keys in chunk | zip bytes | bytes per key |")?;
    writeln!(out, "|---:|---:|---:|")?;
    for (keys, bytes) in &encoding.samples {
        writeln!(
            out,
            "| {keys} | {bytes} | {:.2} |",
            *bytes as f64 / *keys as f64
        )?;
    }
    let per_key = encoding.bytes_per_key();
    writeln!(
        out,
        "\nmarginal bytes per key: {per_key:.2} ({:.3}x the 16-byte key); fixed bytes per file: {:.0}\n",
        per_key / RAW_KEY_BYTES,
        encoding.chunk_bytes(1.0) - per_key
    )
}

fn write_world(out: &mut String, params: &Params, world: &WorldModel) -> std::fmt::Result {
    let mut kinds: BTreeMap<String, (usize, usize, f64)> = BTreeMap::new();
    for cluster in &world.clusters {
        let entry = kinds.entry(format!("{:?}", cluster.kind)).or_default();
        entry.0 += 1;
        entry.1 += cluster.regions.len();
        entry.2 += cluster
            .regions
            .clone()
            .map(|i| world.phones[i])
            .sum::<f64>();
    }
    writeln!(
        out,
        "## World: {} regions, {:.2e} phones, {} cases/day x {} keys, {:.0} % travellers (1 to {} roaming regions, {:.0} % in their cluster), {} data-prep runs/day, padding to {}\n",
        params.regions,
        params.phones,
        params.daily_cases,
        params.keys_per_case,
        params.travellers * 100.0,
        params.max_roaming,
        params.in_cluster * 100.0,
        params.runs_per_day,
        params.padding_min
    )?;
    writeln!(out, "| cluster kind | clusters | regions | phones |")?;
    writeln!(out, "|---|---:|---:|---:|")?;
    for (kind, (clusters, regions, phones)) in kinds {
        writeln!(out, "| {kind} | {clusters} | {regions} | {phones:.3e} |")?;
    }
    writeln!(out)
}

fn a2a(reports: &[StrategyReport]) -> &StrategyReport {
    reports
        .iter()
        .find(|r| r.strategy == Strategy::AllToAll)
        .expect("every strategy is evaluated")
}

fn write_paper_check(
    out: &mut String,
    params: &Params,
    encoding: &Encoding,
    reports: &[StrategyReport],
) -> std::fmt::Result {
    let paper = params.paper_bytes_per_phone();
    let model = a2a(reports).phone_mean;
    let keys = f64::from(params.keys_per_case) * params.daily_cases as f64;
    let per_chunk = keys / f64::from(params.runs_per_day.max(1));
    let in_chunk = encoding.chunk_bytes(per_chunk) / per_chunk;
    writeln!(out, "## The paper's estimate (section 4.1.1)\n")?;
    writeln!(
        out,
        "paper: {} keys x 16 bytes x {} cases = {}/phone/day",
        params.keys_per_case,
        params.daily_cases,
        mb(paper)
    )?;
    writeln!(
        out,
        "model, global all-to-all: {}/phone/day = {:.3}x the paper ({:+.1} %)",
        mb(model),
        model / paper,
        (model / paper - 1.0) * 100.0
    )?;
    writeln!(
        out,
        "why: a phone gets {keys:.0} keys a day in {} chunks of {per_chunk:.0} keys. In such a chunk a key takes {in_chunk:.2} bytes ({:.3}x 16): its 16 bytes of key data, plus its rolling start, period, risk and report type as protobuf fields, deflated, plus the file's zip headers and signature. Index polls add {:.2} %. (Deflate saves more of sorted keys' shared prefixes in larger files: {:.2} bytes per key at the margin of the largest sample.)\n",
        params.runs_per_day,
        in_chunk / RAW_KEY_BYTES,
        (model / (keys * in_chunk) - 1.0) * 100.0,
        encoding.bytes_per_key()
    )
}

fn write_strategies(out: &mut String, reports: &[StrategyReport]) -> std::fmt::Result {
    let base = a2a(reports).phone_mean;
    writeln!(
        out,
        "## Per day, by strategy (phones: mean over phones, p50 and p99 over regions; backends: mean and max over regions)\n"
    )?;
    writeln!(
        out,
        "| strategy | phone mean | phone p50 | phone p99 | vs all-to-all | backend pulls mean | max | serves phones mean | serves peers mean | keys stored mean | max |"
    )?;
    writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for r in reports {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {:.3e} B | {} | {:.3e} | {:.3e} |",
            r.strategy.name(),
            mb(r.phone_mean),
            mb(r.phone_p50),
            mb(r.phone_p99),
            match r.strategy {
                Strategy::AllToAll => "(base)".to_string(),
                _ => format!("{:.1}x less", base / r.phone_mean),
            },
            mb(r.mean(|f| f.pulled_bytes)),
            mb(r.max(|f| f.pulled_bytes)),
            r.mean(|f| f.served_phone_bytes),
            mb(r.mean(|f| f.served_peer_bytes)),
            r.mean(|f| f.keys_stored),
            r.max(|f| f.keys_stored),
        )?;
    }
    writeln!(out)
}

fn write_growth(
    out: &mut String,
    what: &str,
    rows: &[(impl std::fmt::Display, Vec<StrategyReport>)],
) -> std::fmt::Result {
    writeln!(
        out,
        "## Growth with {what}: bytes per phone per day (mean) and bytes a backend pulls per day (mean)\n"
    )?;
    write!(out, "| {what} |")?;
    for s in Strategy::ALL {
        write!(out, " phone, {} |", s.name())?;
    }
    for s in Strategy::ALL {
        write!(out, " backend pulls, {} |", s.name())?;
    }
    writeln!(out, "\n|---:|{}", "---:|".repeat(2 * Strategy::ALL.len()))?;
    for (x, reports) in rows {
        write!(out, "| {x} |")?;
        for r in reports {
            write!(out, " {} |", mb(r.phone_mean))?;
        }
        for r in reports {
            write!(out, " {} |", mb(r.mean(|f| f.pulled_bytes)))?;
        }
        writeln!(out)?;
    }
    writeln!(out)
}

fn write_costs(out: &mut String, params: &Params, reports: &[StrategyReport]) -> std::fmt::Result {
    let (prices, usage) = (Prices::default(), Usage::default());
    writeln!(
        out,
        "## AWS cost per region per day (USD, mean over regions; the largest region in brackets)\n"
    )?;
    writeln!(
        out,
        "| strategy | CloudFront | S3 | DynamoDB | Lambda | total | largest region |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|")?;
    for r in reports {
        let costs: Vec<Costs> = r
            .regions
            .iter()
            .map(|f| Costs::of(f, params, &prices, &usage))
            .collect();
        let n = costs.len().max(1) as f64;
        let mean = |part: fn(&Costs) -> f64| costs.iter().map(part).sum::<f64>() / n;
        let largest = costs.iter().map(Costs::total).fold(0.0, f64::max);
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | ({}) |",
            r.strategy.name(),
            usd(mean(|c| c.cloudfront)),
            usd(mean(|c| c.s3)),
            usd(mean(|c| c.dynamodb)),
            usd(mean(|c| c.lambda)),
            usd(mean(Costs::total)),
            usd(largest)
        )?;
    }
    writeln!(
        out,
        "\nunit prices: {}\nusage: {}",
        serde_json::to_string(&prices).expect("prices serialize"),
        serde_json::to_string(&usage).expect("usage serializes")
    )
}

/// An SVG line plot, log-log, of bytes per phone per day against R, one line per strategy,
/// with the paper's estimate as a dashed line.
fn plot(params: &Params, rows: &[(usize, Vec<StrategyReport>)]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 440.0;
    // Margins: left, right (the legend), top, bottom.
    const L: f64 = 80.0;
    const R: f64 = 250.0;
    const T: f64 = 30.0;
    const B: f64 = 50.0;
    let paper = params.paper_bytes_per_phone();
    let xs: Vec<f64> = rows.iter().map(|(r, _)| *r as f64).collect();
    let ys = rows
        .iter()
        .flat_map(|(_, reports)| reports.iter().map(|r| r.phone_mean))
        .chain([paper]);
    let decade = |v: f64, up: bool| {
        let e = v.max(1.0).log10();
        10f64.powf(if up { e.ceil() } else { e.floor() })
    };
    let (x0, x1) = (
        decade(xs.iter().copied().fold(f64::MAX, f64::min), false),
        decade(xs.iter().copied().fold(1.0, f64::max), true),
    );
    let (y0, y1) = ys.fold((f64::MAX, 1.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let (y0, y1) = (decade(y0, false), decade(y1 * 1.01, true));
    let px = |x: f64| L + (x.log10() - x0.log10()) / (x1.log10() - x0.log10()) * (W - L - R);
    let py = |y: f64| H - B - (y.log10() - y0.log10()) / (y1.log10() - y0.log10()) * (H - T - B);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let mut tick = x0;
    while tick <= x1 * 1.0001 {
        let x = px(tick);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{T}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{tick}</text>",
            H - B,
            H - B + 16.0
        );
        tick *= 10.0;
    }
    let mut tick = y0;
    while tick <= y1 * 1.0001 {
        let y = py(tick);
        let _ = writeln!(
            svg,
            "<line x1=\"{L}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - R,
            L - 6.0,
            y + 4.0,
            human_bytes(tick)
        );
        tick *= 10.0;
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">regions R</text><text transform=\"translate(18,{:.1}) rotate(-90)\" text-anchor=\"middle\">bytes per phone per day</text>",
        (L + W - R) / 2.0,
        H - 12.0,
        (T + H - B) / 2.0
    );
    let colours = ["#c0392b", "#2980b9", "#27ae60"];
    let mut legend = T + 10.0;
    for (i, strategy) in Strategy::ALL.iter().enumerate() {
        let points: Vec<String> = rows
            .iter()
            .filter_map(|(r, reports)| {
                let report = reports.iter().find(|x| x.strategy == *strategy)?;
                Some(format!("{:.1},{:.1}", px(*r as f64), py(report.phone_mean)))
            })
            .collect();
        let colour = colours[i % colours.len()];
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        for point in &points {
            let (x, y) = point.split_once(',').expect("x,y");
            let _ = writeln!(
                svg,
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{colour}\"/>"
            );
        }
        let _ = writeln!(
            svg,
            "<line x1=\"{:.1}\" y1=\"{legend:.1}\" x2=\"{:.1}\" y2=\"{legend:.1}\" stroke=\"{colour}\" stroke-width=\"2\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            W - R + 10.0,
            W - R + 30.0,
            W - R + 36.0,
            legend + 4.0,
            strategy.name()
        );
        legend += 20.0;
    }
    let _ = writeln!(
        svg,
        "<line x1=\"{L}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"black\" stroke-dasharray=\"6 4\"/><line x1=\"{:.1}\" y1=\"{legend:.1}\" x2=\"{:.1}\" y2=\"{legend:.1}\" stroke=\"black\" stroke-dasharray=\"6 4\"/><text x=\"{:.1}\" y=\"{:.1}\">paper: 14 x 16 B x cases</text>",
        W - R,
        W - R + 10.0,
        W - R + 30.0,
        W - R + 36.0,
        legend + 4.0,
        y = py(paper)
    );
    let _ = writeln!(
        svg,
        "<rect x=\"{L}\" y=\"{T}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"black\"/>\n</svg>",
        W - L - R,
        H - T - B
    );
    svg
}

fn human_bytes(bytes: f64) -> String {
    match bytes {
        b if b >= 1e9 => format!("{:.0} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.0} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.0} kB", b / 1e3),
        b => format!("{b:.0} B"),
    }
}

/// The live check: a small world of real regions against the model's figures.
async fn live(args: &SimulateWorldArgs) -> anyhow::Result<()> {
    use enfeed::services::consumer::Poll;
    use enfeed_sim::world::{RegionPlan, World as LiveWorld};

    let strategy = args.live_strategy;
    let days = args.live_days.max(1);
    let polls = args.phone_polls.clamp(1, args.runs_per_day.max(1));
    let mut params = Params {
        phone_polls: polls,
        // The live feeds are young: on average, an index lists half a run's chunks.
        feed_age_days: (f64::from(days) + 1.0 / f64::from(polls)) / 2.0,
        ..args.params()
    };
    params.retention_days = params.feed_age_days;
    anyhow::ensure!(
        (2..=676).contains(&params.regions),
        "a live world needs 2 to 676 regions"
    );
    let encoding = Encoding::measure(&SAMPLE_SIZES).await?;
    let mut rng = ChaCha20Rng::seed_from_u64(params.seed);
    let world = WorldModel::new(&params, &mut rng);
    let day = Day::sample(&world, &params, &mut rng);
    let model = scale::evaluate(&world, &day, &params, &encoding)
        .into_iter()
        .find(|r| r.strategy == strategy)
        .expect("every strategy is evaluated");

    let ids: Vec<RegionId> = (0..world.regions()).map(scale::region_id).collect();
    let plan: Vec<RegionPlan> = (0..world.regions())
        .map(|consumer| {
            let mut plan = RegionPlan::new(ids[consumer].as_str());
            plan.padding_min = params.padding_min;
            for producer in (0..world.regions()).filter(|p| *p != consumer) {
                let name = ids[producer].as_str();
                plan = match strategy.pulls_a2a(&world, consumer, producer) {
                    true => plan.pulls_a2a(name),
                    false => plan.pulls_partial(name),
                };
                if strategy.pulls_a2a(&world, producer, consumer) {
                    plan = plan.serves_a2a_to(name);
                }
            }
            plan
        })
        .collect();
    let start = 1_750_000_000 / 86_400 * 86_400;
    let live = LiveWorld::start(&plan, start)
        .await
        .context("starting the live world")?;
    println!(
        "live world: {} regions ({}), {}, {} cases/day, {} days, {} runs/day, {} phone polls/day, padding to {}",
        ids.len(),
        ids.iter()
            .map(RegionId::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        strategy.name(),
        params.daily_cases,
        days,
        params.runs_per_day,
        polls,
        params.padding_min
    );

    let runs = params.runs_per_day.max(1);
    let progress = ProgressBar::new(u64::from(days * runs));
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}").expect("a valid template"),
    );
    let mut measured = vec![0u64; ids.len()];
    let mut newest = vec![0u32; ids.len()];
    let mut keys_rng = ChaCha20Rng::seed_from_u64(params.seed ^ 0x5eed);
    for d in 0..days {
        for run in 0..runs {
            progress.set_message(format!("day {}, run {}", d + 1, run + 1));
            for uploader in day.uploaders.iter().filter(|u| u.run == run) {
                let base = ids[uploader.base];
                let declared: Vec<RegionId> = std::iter::once(uploader.base)
                    .chain(uploader.roaming.iter().copied())
                    .map(|i| ids[i])
                    .collect();
                let keys = scale::case_keys(&mut keys_rng, live.now(), params.keys_per_case);
                let code = live.issue_code(base).await?;
                let (status, answer) = live.upload(base, &keys, &declared, &code, None).await?;
                anyhow::ensure!(status == 200, "upload refused: {answer}");
            }
            // Peers pull this run's keys before the next run, which publishes them: the keys
            // of the very last run reach only their own region's phones, as the model's
            // steady-state day lets them reach peers' phones in the day's first run.
            live.clock.advance(86_400 / u64::from(runs));
            for node in live.nodes.values() {
                let report = node.backend.run_consumer(Poll::Now).await;
                if let Some(error) = report.peers.iter().find_map(|p| p.error.clone()) {
                    anyhow::bail!("{}: {error}", node.backend.config.region);
                }
            }
            for node in live.nodes.values() {
                node.backend.run_dataprep().await?;
            }
            if (run + 1) % (runs / polls).max(1) == 0 {
                for (i, id) in ids.iter().enumerate() {
                    let (download, last) = live.download(*id, newest[i]).await?;
                    measured[i] += download.bytes;
                    newest[i] = last;
                }
            }
            progress.inc(1);
        }
    }
    progress.finish_and_clear();

    let per_day = |bytes: u64| bytes as f64 / f64::from(days);
    println!("\n| region | public feed, model | measured | difference |");
    println!("|---|---:|---:|---:|");
    for (i, id) in ids.iter().enumerate() {
        let (m, x) = (model.regions[i].feed_bytes, per_day(measured[i]));
        println!(
            "| {id} | {m:.0} | {x:.0} | {:+.1} % |",
            (x / m - 1.0) * 100.0
        );
    }
    let phone = |bytes: &dyn Fn(usize) -> f64| {
        day.phones
            .iter()
            .map(|p| {
                strategy
                    .phone_feeds(&world, p)
                    .into_iter()
                    .map(bytes)
                    .sum::<f64>()
            })
            .sum::<f64>()
            / day.phones.len().max(1) as f64
    };
    let modelled = phone(&|f| model.regions[f].feed_bytes);
    let actual = phone(&|f| per_day(measured[f]));
    let difference = actual / modelled - 1.0;
    println!(
        "\nbytes per phone per day ({} phones, each its feeds): model {modelled:.0}, measured {actual:.0}, difference {:+.1} %",
        day.phones.len(),
        difference * 100.0
    );
    anyhow::ensure!(
        difference.abs() <= 0.10,
        "the model is off the live world by more than 10 %"
    );
    Ok(())
}
