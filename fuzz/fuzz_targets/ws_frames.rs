//! Fuzzes the WebSocket frame decoder and assembler (`ws::codec`) the way
//! `server.rs::process_ws` drives them: frames are cut from the input in
//! place, each is fed to the connection's `Assembler`, and an incomplete
//! frame waits, still masked, for the next read. Beyond "never panics", it
//! checks that where TCP happens to split the stream changes nothing: the
//! messages, the error that ends the connection (if any) and the bytes left
//! waiting are the same fed whole as fed in the pieces the input chooses.

#![no_main]

use hubbub::bench::{Assembler, Fed, Message, RawFrame, decode_frame};
use libfuzzer_sys::fuzz_target;
use tungstenite::protocol::frame::coding::Data;

/// Small limits, so that short inputs reach the "too big" paths too.
const MAX_FRAME: usize = 256;
const MAX_MESSAGE: usize = 512;
/// How many leading input bytes give the chunk sizes of the split feed.
const CUT_BYTES: usize = 4;

fuzz_target!(|data: &[u8]| {
    let (cuts, stream) = data.split_at(data.len().min(CUT_BYTES));
    let whole = feed(&[stream]);
    let mut chunks = Vec::new();
    let mut rest = stream;
    for size in cuts.iter().map(|&c| usize::from(c) + 1).cycle() {
        if rest.is_empty() || cuts.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    if !cuts.is_empty() {
        assert_eq!(feed(&chunks), whole, "split at {cuts:?}");
    }
});

/// Feeds `chunks` as successive reads; returns every event as text, then
/// the error that ended the stream or the length of the unconsumed tail.
fn feed(chunks: &[&[u8]]) -> Vec<String> {
    let mut asm = Assembler::default();
    let mut log = Vec::new();
    let mut left: Vec<u8> = Vec::new();
    for chunk in chunks {
        left.extend_from_slice(chunk);
        let data = &mut left[..];
        let mut pos = 0;
        loop {
            let frame = match decode_frame(&mut data[pos..], MAX_FRAME) {
                Ok(None) => break,
                Ok(Some(f)) => RawFrame {
                    payload: f.payload.start + pos..f.payload.end + pos,
                    ..f
                },
                Err(v) => {
                    log.push(format!("error {v:?}"));
                    return log;
                }
            };
            pos = frame.payload.end;
            match asm.feed(&frame, data, MAX_MESSAGE) {
                Ok(Fed::Pending) => {}
                Ok(Fed::Whole(m)) => log.push(format!("{m:?}")),
                Ok(Fed::Assembled(kind, bytes)) => {
                    let m = match kind {
                        Data::Text => Message::Text(
                            std::str::from_utf8(&bytes).expect("checked by the assembler"),
                        ),
                        _ => Message::Binary(&bytes),
                    };
                    log.push(format!("{m:?}"));
                }
                Err(v) => {
                    log.push(format!("error {v:?}"));
                    return log;
                }
            }
        }
        left.drain(..pos);
    }
    log.push(format!("left {}", left.len()));
    log
}
