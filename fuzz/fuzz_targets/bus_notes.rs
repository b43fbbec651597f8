//! Fuzzes the cluster bus decoder (`hub::wire::decode`): every note another
//! node publishes goes through it once its seal verifies, and a node with
//! the key may still be broken or newer. Beyond "never panics" and "never
//! allocates past the note's own length" (libFuzzer's `-rss_limit_mb`
//! catches that), a note it accepts must encode back to exactly the bytes
//! it came from: the decoder reads every byte, and nothing it accepts is
//! ambiguous.

#![no_main]

use hubbub::bench::{decode_note, encode_note};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = decode_note(data) {
        assert_eq!(
            encode_note(env.stamp, &env.note),
            data,
            "a note that does not encode back: {env:?}"
        );
    }
});
