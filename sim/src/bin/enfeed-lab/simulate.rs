//! `enfeed-lab simulate`: a small live world on this machine. Several regions run as real backends
//! on loopback, pulling each other's per-region feeds over mutual TLS. Phones use the real EN
//! cryptography. Each day they meet at home and while travelling, some test positive and
//! upload at home, and the backends replicate. At the end every phone downloads the public
//! feeds of its base and roaming regions. The command prints who was notified, and how many
//! bytes each phone downloaded.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use enfeed::domain::key::{INTERVALS_PER_DAY, RegionId, interval_of};
use enfeed_sim::phone::Phone;
use enfeed_sim::world::{RegionPlan, World};
use indicatif::{ProgressBar, ProgressStyle};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// Regions of the world (two-letter IDs); each pulls the per-region feeds of all others.
    #[arg(long, value_delimiter = ',', default_value = "AT,BE,CZ,DK")]
    regions: Vec<RegionId>,

    /// Phones living in each region.
    #[arg(long, default_value_t = 25)]
    phones: usize,

    /// Days to simulate.
    #[arg(long, default_value_t = 5)]
    days: u32,

    /// Contacts a phone has per day.
    #[arg(long, default_value_t = 3)]
    contacts: u32,

    /// Chance in percent that a phone travels to another region on a day.
    #[arg(long, default_value_t = 15)]
    travel: u32,

    /// Chance in percent that a phone tests positive on a day.
    #[arg(long, default_value_t = 4)]
    infections: u32,

    /// Seed of the world's randomness.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// A simulated person: a phone with a home region and the regions it roamed to.
struct Person {
    phone: Phone,
    home: RegionId,
    visited: BTreeSet<RegionId>,
    positive: bool,
}

impl Person {
    fn name(&self) -> &str {
        self.phone.name()
    }

    /// The regions it declares on upload, and whose public feeds it listens to.
    fn regions(&self) -> Vec<RegionId> {
        std::iter::once(self.home)
            .chain(self.visited.iter().copied())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.regions.len() >= 2,
        "a world needs at least two regions"
    );
    let start = 1_750_000_000 / 86_400 * 86_400;
    let plan: Vec<RegionPlan> = args
        .regions
        .iter()
        .map(|region| {
            let others = args.regions.iter().filter(|other| *other != region);
            others.fold(RegionPlan::new(region.as_str()), |plan, other| {
                plan.pulls_partial(other.as_str())
            })
        })
        .collect();
    let world = World::start(&plan, start)
        .await
        .context("starting the world")?;
    let mut rng = ChaCha20Rng::seed_from_u64(args.seed);
    let mut people: Vec<Person> = args
        .regions
        .iter()
        .flat_map(|region| (0..args.phones).map(move |i| (*region, i)))
        .map(|(home, i)| Person {
            phone: Phone::new(format!("{home}-{i:02}")),
            home,
            visited: BTreeSet::new(),
            positive: false,
        })
        .collect();
    println!(
        "world: {} regions ({}), each pulling the others' per-region feeds over mutual TLS; {} phones; {} days",
        args.regions.len(),
        args.regions
            .iter()
            .map(RegionId::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        people.len(),
        args.days
    );

    let progress = ProgressBar::new(u64::from(args.days) + 1);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}").expect("a valid template"),
    );
    // Who met whom (by index) and where first, to check the notifications against.
    let mut contacts: BTreeMap<(usize, usize), RegionId> = BTreeMap::new();
    let mut uploads = 0;
    for day in 0..args.days {
        progress.set_message(format!("day {}: contacts, travel, tests", day + 1));
        let day_start = interval_of(world.now()) / INTERVALS_PER_DAY * INTERVALS_PER_DAY;
        // Where everyone is today: at home, or abroad.
        let location: Vec<RegionId> = people
            .iter_mut()
            .map(|person| {
                if rng.next_u32() % 100 < args.travel {
                    let abroad = pick_other(&mut rng, &args.regions, person.home);
                    person.visited.insert(abroad);
                    abroad
                } else {
                    person.home
                }
            })
            .collect();
        // Those who tested positive stay at home, alone.
        let out: Vec<usize> = (0..people.len()).filter(|i| !people[*i].positive).collect();
        for &a in &out {
            for c in 0..args.contacts {
                let here: Vec<usize> = out
                    .iter()
                    .copied()
                    .filter(|b| *b != a && location[*b] == location[a])
                    .collect();
                if here.is_empty() {
                    continue;
                }
                let b = here[rng.next_u32() as usize % here.len()];
                let interval = day_start + 48 + c * 12 + (rng.next_u32() % 12);
                let (first, second) = two(&mut people, a, b);
                Phone::meet(&mut first.phone, &mut second.phone, interval);
                contacts.entry((a.min(b), a.max(b))).or_insert(location[a]);
            }
        }
        // The next day, a few test positive and upload yesterday's and earlier keys at home.
        world.clock.advance(86_400);
        for person in people.iter_mut().filter(|p| !p.positive) {
            if rng.next_u32() % 100 < args.infections {
                person.positive = true;
                let keys = person.phone.diagnosis_keys(
                    day_start.saturating_sub(14 * INTERVALS_PER_DAY)..day_start + INTERVALS_PER_DAY,
                );
                let code = world.issue_code(person.home).await?;
                let (status, answer) = world
                    .upload(person.home, &keys, &person.regions(), &code, None)
                    .await?;
                anyhow::ensure!(
                    status == 200,
                    "upload of {} refused: {answer}",
                    person.name()
                );
                uploads += 1;
            }
        }
        progress.set_message(format!("day {}: data-prep and replication", day + 1));
        world.publish_and_replicate().await?;
        progress.inc(1);
    }
    // Same-day keys wait for their embargo: publish once more after it.
    world.clock.advance(3 * 3600);
    world.publish_and_replicate().await?;
    progress.set_message("phones download and match");

    let mut downloaded: BTreeMap<RegionId, Vec<enfeed::domain::key::DiagnosisKey>> =
        BTreeMap::new();
    let mut bytes_per_region = BTreeMap::new();
    for region in &args.regions {
        let (download, _) = world.download(*region, 0).await?;
        bytes_per_region.insert(*region, download.bytes);
        downloaded.insert(*region, download.keys);
    }
    let infected: Vec<usize> = (0..people.len()).filter(|i| people[*i].positive).collect();
    let mut notified = Vec::new();
    let mut phone_bytes = Vec::new();
    let mut missed = 0;
    for (i, person) in people.iter().enumerate() {
        let feeds = person.regions();
        phone_bytes.push(feeds.iter().map(|r| bytes_per_region[r]).sum::<u64>());
        let keys: Vec<_> = feeds
            .iter()
            .flat_map(|r| downloaded[r].iter().cloned())
            .collect();
        let matched: BTreeSet<[u8; 16]> = person
            .phone
            .matches(&keys)
            .iter()
            .map(|e| e.key.key_data)
            .collect();
        for &j in &infected {
            let met = contacts.contains_key(&(i.min(j), i.max(j)));
            let theirs = people[j].phone.diagnosis_keys(0..u32::MAX);
            let found = theirs.iter().any(|k| matched.contains(&k.key_data));
            match (met, found) {
                (true, true) => notified.push((i, j)),
                (true, false) => missed += 1,
                (false, true) => anyhow::bail!(
                    "{} matched {} without meeting",
                    person.name(),
                    people[j].name()
                ),
                (false, false) => {}
            }
        }
    }
    progress.inc(1);
    progress.finish_with_message("done");

    println!("\npositive tests uploaded: {uploads}");
    println!("notified phones (← infected contacts, where they met, user story):");
    let mut by_phone: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut by_story: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, j) in &notified {
        let (who, source) = (&people[*i], &people[*j]);
        let place = contacts[&(*i.min(j), *i.max(j))];
        let story = match (place == who.home, place == source.home) {
            (true, true) => "locals",
            (true, false) => "F1",
            (false, true) => "F2",
            (false, false) => "F3",
        };
        *by_story.entry(story).or_default() += 1;
        by_phone
            .entry(*i)
            .or_default()
            .push(format!("{} in {place} {story}", source.name()));
    }
    for (i, sources) in &by_phone {
        println!("  {} ← {}", people[*i].name(), sources.join(", "));
    }
    println!(
        "by story: {} (F1 local notified of infected traveller, F2 traveller of infected local, F3 traveller of infected traveller)",
        by_story
            .iter()
            .map(|(story, n)| format!("{story} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "contacts with an infected person: {}, notified: {}, missed: {missed}",
        notified.len() + missed,
        notified.len()
    );
    let mean = phone_bytes.iter().sum::<u64>() as f64 / phone_bytes.len().max(1) as f64;
    let max = phone_bytes.iter().max().copied().unwrap_or(0);
    println!(
        "bytes each phone downloaded (its base and roaming regions' public feeds): mean {mean:.0}, max {max}"
    );
    for (region, bytes) in &bytes_per_region {
        println!(
            "  public feed of {region}: {bytes} bytes, {} keys",
            downloaded[region].len()
        );
    }
    anyhow::ensure!(
        missed == 0,
        "{missed} contacts of infected people were not notified"
    );
    Ok(())
}

fn pick_other(rng: &mut ChaCha20Rng, regions: &[RegionId], home: RegionId) -> RegionId {
    let others: Vec<RegionId> = regions.iter().copied().filter(|r| *r != home).collect();
    others[rng.next_u32() as usize % others.len()]
}

/// Two distinct people, mutably.
fn two(people: &mut [Person], a: usize, b: usize) -> (&mut Person, &mut Person) {
    let (low, high) = (a.min(b), a.max(b));
    let (left, right) = people.split_at_mut(high);
    let (first, second) = (&mut left[low], &mut right[0]);
    if a < b {
        (first, second)
    } else {
        (second, first)
    }
}
