//! A producer's `index.txt` (Google's reference exporter), read as the consumer reads it.
//! The bytes before the first NUL are the name of the last file taken (none if empty), the
//! rest the index.
#![no_main]

use enfeed::services::consumer::read_text_index;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (last, body) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&[][..], data),
    };
    let Ok(last) = std::str::from_utf8(last) else {
        return;
    };
    let last = Some(last).filter(|last| !last.is_empty());
    let Ok(names) = read_text_index(body.to_vec(), last) else {
        return;
    };
    assert!(
        names
            .iter()
            .all(|name| !name.is_empty() && Some(name.as_str()) != last)
    );
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique, names, "each file once");
});
