//! A peer's export zip, read as the consumer reads it: within the default limits, then
//! verified, then each key checked against the upload rules.
#![no_main]

use std::sync::LazyLock;

use enfeed::domain::export::{ExportLimits, read_export};
use enfeed::domain::key::interval_of;
use enfeed::domain::signature::VerificationKey;
use enfeed::domain::upload::check_key;
use libfuzzer_sys::fuzz_target;

/// The time the keys are checked at.
const NOW: u64 = 1_795_000_000;

/// The key that signs the seed taken from Google's example export.
static KEYS: LazyLock<Vec<VerificationKey>> = LazyLock::new(|| {
    let pem = include_str!("../google-export-example.pem");
    vec![VerificationKey::from_pem(pem, "310", "v1").expect("a P-256 public key")]
});

fuzz_target!(|zip: &[u8]| {
    let limits = ExportLimits::default();
    let Ok(file) = read_export(zip, &limits) else {
        return;
    };
    assert!(file.export_bin().len() as u64 <= limits.max_entry_bytes);
    // The consumer stops at a file that does not verify; the rest is checked anyway, since a
    // peer's own key signs whatever the peer wants.
    let _ = file.verify(&KEYS);
    for key in file.keys.iter().chain(&file.revised_keys) {
        let _ = check_key(key, interval_of(NOW));
    }
});
