//! Micro-benchmarks of the steps every key goes through (`cargo bench -p enfeed-sim`): the
//! export file written by data-prep, and the same file read, verified and checked by a
//! consumer. `enfeed-lab bench` measures the whole pipeline on the embedded store.

use enfeed::adapters::ecdsa::EcdsaSigner;
use enfeed::adapters::local::signing_keys;
use enfeed::domain::export::{ExportHeader, ExportLimits, OpenedExport};
use enfeed::domain::key::{DiagnosisKey, interval_of};
use enfeed::domain::signature::VerificationKey;
use enfeed::ports::Signer as _;
use enfeed::ports::write_export;
use enfeed_sim::scale::case_keys;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const NOW: u64 = 1_750_000_000;

fn main() {
    divan::main();
}

/// `n` keys of real-looking cases, sorted as data-prep sorts them, and a signer.
fn fixture(n: usize) -> (Vec<DiagnosisKey>, EcdsaSigner, tempfile::TempDir) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut keys: Vec<DiagnosisKey> = (0..n.div_ceil(14))
        .flat_map(|_| case_keys(&mut rng, NOW, 14))
        .take(n)
        .collect();
    keys.sort_unstable_by_key(|k| k.key_data);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let signer = signing_keys::open_or_create(dir.path(), "CH").expect("a signer");
    (keys, signer, dir)
}

fn header() -> ExportHeader {
    ExportHeader {
        start_timestamp: NOW - 3600,
        end_timestamp: NOW,
        region: "CH".into(),
        batch_num: 1,
        batch_size: 1,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
}

/// Encode, sign and zip one chunk.
#[divan::bench(args = [1_000, 100_000])]
fn write_chunk(bencher: divan::Bencher, n: usize) {
    let (keys, signer, _dir) = fixture(n);
    let runtime = runtime();
    bencher
        .counter(divan::counter::ItemsCount::new(n))
        .bench_local(|| runtime.block_on(write_export(&header(), &keys, &[], &signer)));
}

/// What a consumer does with a peer's chunk before storing it: unzip, decode, verify the
/// signature, check every key.
#[divan::bench(args = [1_000, 100_000])]
fn read_verify_check(bencher: divan::Bencher, n: usize) {
    let (keys, signer, _dir) = fixture(n);
    let zip = runtime()
        .block_on(write_export(&header(), &keys, &[], &signer))
        .expect("a chunk");
    let public = signer.verification_keys()[0].to_pem();
    let verification = [VerificationKey::from_pem(&public, "CH", "v1").expect("a key")];
    let today = interval_of(NOW);
    bencher
        .counter(divan::counter::ItemsCount::new(n))
        .bench_local(|| {
            let opened = OpenedExport::open(&zip, &ExportLimits::default()).expect("readable");
            opened.verify(&verification).expect("verified");
            let file = opened.decode().expect("decoded");
            file.keys
                .iter()
                .all(|k| enfeed::domain::upload::check_key(k, today).is_ok())
        });
}
