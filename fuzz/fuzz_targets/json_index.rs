//! A producer's JSON index (`/v1/a2a/keys`, `/v1/<R>/keys`), read as the consumer reads it.
//! The first 4 bytes are the number of the last chunk taken (big-endian), the rest the index.
#![no_main]

use enfeed::services::consumer::read_json_index;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((last, body)) = data.split_first_chunk::<4>() else {
        return;
    };
    let last = u32::from_be_bytes(*last);
    let region = "DE".parse().expect("a region");
    let Ok((chunks, _next_poll)) = read_json_index(body, region, last) else {
        return;
    };
    assert!(chunks.iter().all(|&n| n > last));
    assert!(chunks.windows(2).all(|pair| pair[0] < pair[1]));
});
