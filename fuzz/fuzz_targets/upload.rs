//! The body of `POST /v1/publish`: parsed, then checked against every upload rule.
#![no_main]

use enfeed::Config;
use enfeed::domain::certificate::is_certificate;
use enfeed::domain::upload::{MAX_KEYS, PublishRequest};
use libfuzzer_sys::fuzz_target;

/// The time the upload is checked at (the seeds' keys are a few days older).
const NOW: u64 = 1_795_000_000;

fuzz_target!(|body: &[u8]| {
    let Ok(request) = PublishRequest::from_json(body) else {
        return;
    };
    let config = Config::new("CH".parse().expect("a region"));
    let Ok(upload) = request.validate(&config, NOW) else {
        return;
    };
    assert!(!upload.keys.is_empty() && upload.keys.len() <= MAX_KEYS);
    assert!(upload.keys.len() + upload.dropped.len() <= MAX_KEYS);
    assert!(upload.regions.windows(2).all(|pair| pair[0] < pair[1]));
    let _ = is_certificate(&upload.verification_payload);
});
