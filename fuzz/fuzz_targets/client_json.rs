//! Fuzzes the client-frame parser (`hub::command::Command::parse`): every
//! text frame a logged-in client sends goes through it. Beyond "never
//! panics", a frame it accepts must be a JSON object whose `type` is the
//! command's, and on a room's URL text that is no frame is a message of
//! that text.

#![no_main]

use hubbub::bench::Command;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The codec hands the hub only valid UTF-8, so only that is worth trying.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(command) = Command::parse(text, false) {
        let value: serde_json::Value =
            serde_json::from_str(text).expect("an accepted frame is JSON");
        assert_eq!(
            value.get("type").and_then(|t| t.as_str()),
            Some(command.kind()),
            "accepted as another type"
        );
    }
    let _ = Command::parse(text, true);
});
