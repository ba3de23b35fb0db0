//! The peers file (TOML), as `enfeed serve` and the consumer function read it.
#![no_main]

use std::path::Path;

use enfeed::domain::peers::PeersFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &[u8]| {
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(file) = PeersFile::parse(text, "peers.toml", Path::new("/etc/enfeed")) else {
        return;
    };
    for peer in &file.peers {
        assert!(!peer.verification_keys.is_empty());
        assert!(peer.url_of("v1/a2a/keys").contains("/v1/a2a/keys"));
    }
});
