//! Fuzzes the client-frame JSON parser (`ws::proto::parse_client`): every
//! text frame a logged-in client sends goes through it. Beyond "never
//! panics", a frame it accepts must be a JSON object whose `type` is a
//! string, since the hub dispatches on that field alone.

#![no_main]

use hubbub::bench::parse_client;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The codec hands the hub only valid UTF-8, so only that is worth trying.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(frame) = parse_client(text) {
        let value: serde_json::Value =
            serde_json::from_str(text).expect("an accepted frame is JSON");
        assert_eq!(
            value.get("type").and_then(|t| t.as_str()),
            Some(&*frame.kind),
            "accepted without a string `type`"
        );
    }
});
