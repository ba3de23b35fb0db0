//! A peer's export zip, read as the consumer reads it: opened within the default limits,
//! verified, decoded, each key checked against the upload rules.
#![no_main]

use std::sync::LazyLock;

use enfeed::domain::export::{ExportLimits, OpenedExport};
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
    let Ok(opened) = OpenedExport::open(zip, &limits) else {
        return;
    };
    // The consumer decodes only a file that verifies; it is decoded here anyway, since a
    // peer's own key signs whatever the peer wants.
    let _ = opened.verify(&KEYS);
    let Ok(file) = opened.decode() else {
        return;
    };
    assert!(file.export_bin().len() as u64 <= limits.max_entry_bytes);
    assert!(file.keys.len() + file.revised_keys.len() <= limits.max_keys);
    for key in file.keys.iter().chain(&file.revised_keys) {
        let _ = check_key(key, interval_of(NOW));
    }
});
