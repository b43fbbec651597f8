//! Property tests of the frame decoder and the assembler (`codec`), driven
//! as `server.rs::process_ws` drives them: frames are cut from the input in
//! place, and an incomplete frame waits, still masked, for the next read.
//! Where TCP splits the stream must change nothing, and a text message
//! must fail at the first fragment that makes it invalid UTF-8. (The
//! client-frame parser's properties are the hub's: `hub/proptests.rs`.)

use proptest::prelude::*;
use tungstenite::protocol::frame::coding::Data;

use super::codec::{Assembler, Fed, Message, RawFrame, Violation, decode_frame};
use crate::config::MAX_WS_MESSAGE;

/// Cases per property: a case is a few kilobytes fed twice, so 512 cases
/// run in well under a second even in a debug build.
const CASES: u32 = 512;
/// Longest generated data message; fragments and control frames come on top.
const MAX_GEN_MESSAGE: usize = 300;
/// Most fragments a generated message is cut into.
const MAX_FRAGMENTS: usize = 6;
/// Most messages in a generated stream.
const MAX_MESSAGES: usize = 6;
/// Most places a stream is split at.
const MAX_SPLITS: usize = 24;
/// Longest control payload (RFC 6455 §5.5).
const MAX_CONTROL: usize = 125;
/// Small limits for the arbitrary-stream property, so that short inputs
/// reach the "too big" paths of both the decoder and the assembler.
const SMALL_FRAME: usize = 200;
const SMALL_MESSAGE: usize = 400;
/// Most pieces (frames or noise) in an arbitrary stream.
const MAX_PIECES: usize = 8;

/// A message as the application sees it, owned so runs can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Msg {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>, String),
}

/// What feeding a stream produced: its messages, then the violation that
/// ended it or the number of bytes left waiting for more input.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    msgs: Vec<Msg>,
    end: Result<usize, Violation>,
}

fn owned(m: Message<'_>) -> Msg {
    match m {
        Message::Text(s) => Msg::Text(s.to_string()),
        Message::Binary(b) => Msg::Binary(b.to_vec()),
        Message::Ping(p) => Msg::Ping(p.to_vec()),
        Message::Pong => Msg::Pong,
        Message::Close(code, reason) => Msg::Close(code, reason.to_string()),
    }
}

/// Feeds `stream` cut at `cuts` (sorted offsets) as successive reads, the
/// way `process_ws` does: the unconsumed tail is carried to the next read.
fn feed(stream: &[u8], cuts: &[usize], max_frame: usize, max_message: usize) -> Run {
    let mut asm = Assembler::default();
    let mut msgs = Vec::new();
    let mut left: Vec<u8> = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain(std::iter::once(&stream.len())) {
        left.extend_from_slice(&stream[from..to]);
        from = to;
        let data = &mut left[..];
        let mut pos = 0;
        loop {
            let frame = match decode_frame(&mut data[pos..], max_frame) {
                Ok(None) => break,
                Ok(Some(f)) => RawFrame {
                    payload: f.payload.start + pos..f.payload.end + pos,
                    ..f
                },
                Err(v) => return Run { msgs, end: Err(v) },
            };
            pos = frame.payload.end;
            match asm.feed(&frame, data, max_message) {
                Ok(Fed::Pending) => {}
                Ok(Fed::Whole(m)) => msgs.push(owned(m)),
                Ok(Fed::Assembled(Data::Text, bytes)) => msgs.push(Msg::Text(
                    String::from_utf8(bytes).expect("the assembler checked it"),
                )),
                Ok(Fed::Assembled(_, bytes)) => msgs.push(Msg::Binary(bytes)),
                Err(v) => return Run { msgs, end: Err(v) },
            }
        }
        left.drain(..pos);
    }
    Run {
        msgs,
        end: Ok(left.len()),
    }
}

/// One client frame: masked, its length in the shortest form.
fn frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    super::codec::client_frame(first, payload, mask)
}

/// A control frame a client may send between fragments, and what it yields.
fn control() -> impl Strategy<Value = (u8, Vec<u8>, Msg)> {
    let payload = || proptest::collection::vec(any::<u8>(), 0..=MAX_CONTROL);
    let code = prop_oneof![1000u16..=1003, 1007u16..=1011, 3000u16..=4999];
    prop_oneof![
        payload().prop_map(|p| (0x89, p.clone(), Msg::Ping(p))),
        payload().prop_map(|p| (0x8a, p, Msg::Pong)),
        Just((0x88, Vec::new(), Msg::Close(None, String::new()))),
        (code, "\\PC{0,30}")
            .prop_filter("fits a control frame", |(_, r)| r.len() <= MAX_CONTROL - 2)
            .prop_map(|(code, reason)| {
                let mut p = code.to_be_bytes().to_vec();
                p.extend_from_slice(reason.as_bytes());
                (0x88, p, Msg::Close(Some(code), reason))
            }),
    ]
}

/// A data message cut into fragments at arbitrary byte offsets (through
/// characters, for text), with control frames between some of them.
/// Returns its bytes and the messages it yields, in order.
fn message() -> impl Strategy<Value = (Vec<u8>, Vec<Msg>)> {
    let data = prop_oneof![
        "\\PC{0,100}".prop_map(|s| (0x1u8, s.clone().into_bytes(), Msg::Text(s))),
        proptest::collection::vec(any::<u8>(), 0..MAX_GEN_MESSAGE).prop_map(|b| (
            0x2u8,
            b.clone(),
            Msg::Binary(b)
        )),
    ];
    (
        data,
        proptest::collection::vec(any::<prop::sample::Index>(), 0..MAX_FRAGMENTS),
        proptest::collection::vec(proptest::option::weighted(0.3, control()), MAX_FRAGMENTS),
        any::<[u8; 4]>(),
    )
        .prop_map(|((opcode, payload, msg), cuts, controls, mask)| {
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(payload.len() + 1)).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut bounds = vec![0];
            bounds.extend(cuts.into_iter().filter(|&c| c > 0 && c < payload.len()));
            bounds.push(payload.len());
            let pieces = bounds.windows(2).count();
            let mut bytes = Vec::new();
            let mut msgs = Vec::new();
            for (i, w) in bounds.windows(2).enumerate() {
                let fin = if i + 1 == pieces { 0x80 } else { 0 };
                let op = if i == 0 { opcode } else { 0 };
                bytes.extend(frame(fin | op, &payload[w[0]..w[1]], mask));
                if fin == 0
                    && let Some((first, p, m)) = &controls[i]
                {
                    bytes.extend(frame(*first, p, mask));
                    msgs.push(m.clone());
                }
            }
            msgs.push(msg);
            (bytes, msgs)
        })
}

/// Sorted offsets into a stream of `len` bytes.
fn cuts_of(len: usize, picks: &[prop::sample::Index]) -> Vec<usize> {
    let mut cuts: Vec<usize> = picks.iter().map(|i| i.index(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

/// A piece of an arbitrary stream: a frame with any first byte, masked or
/// not, any payload; or plain noise.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    let first = prop_oneof![
        3 => (any::<bool>(), prop::sample::select(vec![0u8, 1, 2, 8, 9, 10]))
            .prop_map(|(fin, op)| if fin { 0x80 | op } else { op }),
        1 => any::<u8>(),
    ];
    prop_oneof![
        4 => (
            first,
            proptest::collection::vec(any::<u8>(), 0..SMALL_FRAME + 20),
            any::<[u8; 4]>(),
            proptest::bool::weighted(0.95),
        )
            .prop_map(|(first, payload, mask, masked)| {
                let mut f = frame(first, &payload, mask);
                if !masked {
                    f[1] &= 0x7f;
                }
                f
            }),
        1 => proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

/// A text message whose bytes may have been damaged, and its fragment sizes.
fn damaged_text() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    (
        "\\PC{1,60}",
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        proptest::collection::vec(any::<prop::sample::Index>(), 0..MAX_FRAGMENTS),
    )
        .prop_map(|(s, damage, cuts)| {
            let mut bytes = s.into_bytes();
            for (at, b) in damage {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            let mut bounds: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len())).collect();
            bounds.sort_unstable();
            bounds.dedup();
            bounds.retain(|&c| c > 0);
            bounds.push(bytes.len());
            (bytes, bounds)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    /// A stream of fragmented messages with control frames between the
    /// fragments yields exactly those messages, in order, whether it
    /// arrives whole or split at any points.
    #[test]
    fn split_stream_yields_the_same_messages(
        msgs in proptest::collection::vec(message(), 1..=MAX_MESSAGES),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..MAX_SPLITS),
    ) {
        let stream: Vec<u8> = msgs.iter().flat_map(|(b, _)| b.clone()).collect();
        let want: Vec<Msg> = msgs.into_iter().flat_map(|(_, m)| m).collect();
        let whole = feed(&stream, &[], MAX_WS_MESSAGE, MAX_WS_MESSAGE);
        prop_assert_eq!(&whole, &Run { msgs: want, end: Ok(0) });
        let split = feed(&stream, &cuts_of(stream.len(), &picks), MAX_WS_MESSAGE, MAX_WS_MESSAGE);
        prop_assert_eq!(split, whole);
    }

    /// Any bytes at all, split anywhere, never panic and give the same
    /// messages and the same end (violation or bytes left) as fed whole.
    #[test]
    fn arbitrary_stream_is_split_invariant(
        pieces in proptest::collection::vec(piece(), 0..MAX_PIECES),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..MAX_SPLITS),
    ) {
        let stream: Vec<u8> = pieces.concat();
        let whole = feed(&stream, &[], SMALL_FRAME, SMALL_MESSAGE);
        let split = feed(&stream, &cuts_of(stream.len(), &picks), SMALL_FRAME, SMALL_MESSAGE);
        prop_assert_eq!(split, whole);
    }

    /// A fragmented text message fails (1007) at the first fragment after
    /// which its bytes so far can no longer begin valid UTF-8, and not
    /// before; a valid one is delivered whole.
    #[test]
    fn text_fails_at_the_first_bad_fragment((bytes, bounds) in damaged_text(), mask in any::<[u8; 4]>()) {
        let mut asm = Assembler::default();
        let mut from = 0;
        for (i, &to) in bounds.iter().enumerate() {
            let fin = i + 1 == bounds.len();
            let fin_bit = if fin { 0x80 } else { 0 };
            let opcode = if i == 0 { 0x1 } else { 0 };
            let first = fin_bit | opcode;
            let mut f = frame(first, &bytes[from..to], mask);
            let raw = decode_frame(&mut f, MAX_WS_MESSAGE).unwrap().unwrap();
            let fed = asm.feed(&raw, &f, MAX_WS_MESSAGE);
            let so_far = std::str::from_utf8(&bytes[..to]);
            let broken = match so_far {
                Ok(_) => false,
                Err(e) => fin || e.error_len().is_some(),
            };
            match fed {
                Err(v) => {
                    prop_assert!(broken, "failed early at fragment {}", i);
                    prop_assert_eq!(v, Violation::BadUtf8);
                    return Ok(());
                }
                Ok(_) if broken => {
                    return Err(TestCaseError::fail(format!("fragment {i} accepted")));
                }
                Ok(Fed::Whole(Message::Text(s))) => prop_assert_eq!(s.as_bytes(), &bytes[..]),
                Ok(Fed::Assembled(Data::Text, v)) => prop_assert_eq!(&v, &bytes),
                Ok(Fed::Pending) => prop_assert!(!fin),
                Ok(_) => return Err(TestCaseError::fail("not text")),
            }
            from = to;
        }
    }
}
