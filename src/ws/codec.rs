//! RFC 6455 framing: decode masked client frames in place, reassemble
//! fragmented messages, encode unmasked server frames.
//!
//! Decoding never allocates for an unfragmented message: the payload is
//! unmasked where it lies (usually the loop's shared read buffer) and handed
//! out as a range. Only a fragmented message is copied, into the connection's
//! [`Assembler`].

use std::io::Cursor;
use std::ops::Range;

use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

use crate::config::MAX_FRAGMENTS;

/// Why a connection must be closed, with the close code the RFC assigns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// 1002: malformed or illegal framing.
    Protocol(&'static str),
    /// 1007: a text message that is not UTF-8.
    BadUtf8,
    /// 1009: a message over the size limit.
    TooBig,
    /// 1008: a message in more than [`MAX_FRAGMENTS`] frames.
    TooManyFragments,
}

impl Violation {
    pub fn close_code(self) -> u16 {
        match self {
            Violation::Protocol(_) => 1002,
            Violation::BadUtf8 => 1007,
            Violation::TooBig => 1009,
            Violation::TooManyFragments => 1008,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Violation::Protocol(why) => why,
            Violation::BadUtf8 => "text frame is not valid UTF-8",
            Violation::TooBig => "message too big",
            Violation::TooManyFragments => "message in too many fragments",
        }
    }
}

/// One decoded frame, its payload unmasked in the input buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct RawFrame {
    pub opcode: OpCode,
    pub fin: bool,
    /// Where the payload lies in the buffer given to [`decode_frame`].
    pub payload: Range<usize>,
    /// Bytes the whole frame took (header + payload).
    pub len: usize,
}

/// Decodes the frame at the start of `buf`, unmasking its payload in place.
/// `Ok(None)` means the frame is not complete yet (read more), like httparse's
/// `Partial`. `max` bounds a single frame's payload.
pub fn decode_frame(buf: &mut [u8], max: usize) -> Result<Option<RawFrame>, Violation> {
    let mut cur = Cursor::new(&buf[..]);
    let (header, len) = match FrameHeader::parse(&mut cur) {
        Ok(Some(h)) => h,
        Ok(None) => return Ok(None),
        Err(_) => return Err(Violation::Protocol("reserved opcode")),
    };
    if header.rsv1 || header.rsv2 || header.rsv3 {
        return Err(Violation::Protocol(
            "reserved bits set without an extension",
        ));
    }
    let Some(mask) = header.mask else {
        return Err(Violation::Protocol("client frames must be masked"));
    };
    if let OpCode::Control(_) = header.opcode
        && (len > 125 || !header.is_final)
    {
        return Err(Violation::Protocol(
            "control frames must be final and at most 125 bytes",
        ));
    }
    if len > max as u64 {
        return Err(Violation::TooBig);
    }
    let start = cur.position() as usize;
    let end = start + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    unmask(&mut buf[start..end], mask);
    Ok(Some(RawFrame {
        opcode: header.opcode,
        fin: header.is_final,
        payload: start..end,
        len: end,
    }))
}

/// XORs the payload with the 4-byte mask, eight bytes at a time.
pub fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().expect("chunk of 8")) ^ wide;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// A whole message, ready for the application.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong,
    /// The peer's close code (if it sent one) and reason.
    Close(Option<u16>, &'a str),
}

/// The per-connection reassembly state: 16 bytes and no allocation unless a
/// fragmented message is in progress (every connection holds one, and
/// browsers never fragment).
#[derive(Debug, Default)]
pub struct Assembler {
    /// The fragmented message being reassembled, if any.
    message: Option<Box<Reassembly>>,
    /// Payload bytes of the *incomplete* text frame at the head of the input
    /// already known to be whole characters (`check_partial`), so a frame
    /// that arrives a few bytes at a time is checked once per byte, not once
    /// per read. Reset when a whole frame is fed. A frame is at most
    /// `MAX_WS_MESSAGE` bytes, far below `u32::MAX`.
    partial_ok: u32,
}

/// A fragmented message so far.
#[derive(Debug)]
struct Reassembly {
    /// Its data opcode (from the first fragment).
    kind: Data,
    buf: Vec<u8>,
    /// How much of `buf` is known to be whole UTF-8 characters (text only).
    /// Each fragment is checked as it arrives, so a bad byte fails the
    /// connection at once (RFC 6455 §8.1 "fail fast", Autobahn 6.4.x); only
    /// the tail past this (at most one cut character) is checked again.
    utf8_ok: usize,
    /// Frames so far. Empty continuation frames cost no bytes, so the size
    /// limit alone would let one message go on for ever, two bytes a frame;
    /// this count ends it.
    fragments: usize,
}

/// Checks the text in `buf[from..]`, where `buf[..from]` is already known to
/// be whole characters. A character cut at the end is allowed unless `fin`
/// (more fragments may complete it). Returns how far `buf` is whole
/// characters.
fn check_utf8(buf: &[u8], from: usize, fin: bool) -> Result<usize, Violation> {
    match std::str::from_utf8(&buf[from..]) {
        Ok(_) => Ok(buf.len()),
        // `error_len() == None`: the input ends inside a character.
        Err(e) if e.error_len().is_none() && !fin => Ok(from + e.valid_up_to()),
        Err(_) => Err(Violation::BadUtf8),
    }
}

/// What feeding one frame produced.
pub enum Fed<'a> {
    /// A message complete in this one frame; borrows the input buffer.
    Whole(Message<'a>),
    /// The last fragment arrived: the message is in the returned buffer.
    Assembled(Data, Vec<u8>),
    /// A fragment was stored; nothing to deliver yet.
    Pending,
}

impl Assembler {
    /// `buf` starts with a frame that is not complete yet. If it carries text,
    /// checks the payload that has arrived so far, so invalid UTF-8 fails the
    /// connection when it arrives, not when the frame is complete (RFC 6455
    /// §8.1 "fail fast" within one frame; Autobahn 6.4.3/6.4.4). The bytes
    /// are unmasked into a copy: the frame is unmasked in place only once
    /// whole, by [`decode_frame`].
    pub fn check_partial(&mut self, buf: &[u8]) -> Result<(), Violation> {
        let mut cur = Cursor::new(buf);
        let Ok(Some((header, len))) = FrameHeader::parse(&mut cur) else {
            return Ok(());
        };
        let kind = self.message.as_ref().map(|m| m.kind);
        let continues = match header.opcode {
            OpCode::Data(Data::Text) if kind.is_none() => false,
            OpCode::Data(Data::Continue) if kind == Some(Data::Text) => true,
            _ => return Ok(()),
        };
        let Some(mask) = header.mask else {
            return Ok(()); // `decode_frame` refuses it once it is whole.
        };
        let start = cur.position() as usize;
        let arrived = (buf.len() - start).min(len as usize);
        let done = self.partial_ok as usize;
        if arrived <= done {
            return Ok(());
        }
        // A character the previous fragment cut is completed by this one.
        let carry = match &self.message {
            Some(m) if continues && done == 0 => &m.buf[m.utf8_ok..],
            _ => &[],
        };
        let fresh = &buf[start + done..start + arrived];
        let mut text = Vec::with_capacity(carry.len() + fresh.len());
        text.extend_from_slice(carry);
        text.extend(
            fresh
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[(done + i) & 3]),
        );
        let whole = check_utf8(&text, 0, false)?;
        self.partial_ok += whole.saturating_sub(carry.len()) as u32;
        Ok(())
    }

    /// Feeds one decoded frame. `max` bounds the whole reassembled message.
    pub fn feed<'a>(
        &mut self,
        frame: &RawFrame,
        buf: &'a [u8],
        max: usize,
    ) -> Result<Fed<'a>, Violation> {
        self.partial_ok = 0;
        let payload = &buf[frame.payload.clone()];
        match frame.opcode {
            OpCode::Control(c) => Ok(Fed::Whole(control(c, payload)?)),
            OpCode::Data(Data::Continue) => {
                let Some(m) = &mut self.message else {
                    return Err(Violation::Protocol(
                        "continuation without a message to continue",
                    ));
                };
                if m.buf.len() + payload.len() > max {
                    return Err(Violation::TooBig);
                }
                m.fragments += 1;
                if m.fragments > MAX_FRAGMENTS {
                    return Err(Violation::TooManyFragments);
                }
                m.buf.extend_from_slice(payload);
                if m.kind == Data::Text {
                    m.utf8_ok = check_utf8(&m.buf, m.utf8_ok, frame.fin)?;
                }
                if !frame.fin {
                    return Ok(Fed::Pending);
                }
                let m = self.message.take().expect("matched above");
                Ok(Fed::Assembled(m.kind, m.buf))
            }
            OpCode::Data(kind) => {
                if self.message.is_some() {
                    return Err(Violation::Protocol(
                        "new message before the last one finished",
                    ));
                }
                if !frame.fin {
                    let utf8_ok = match kind {
                        Data::Text => check_utf8(payload, 0, false)?,
                        _ => 0,
                    };
                    self.message = Some(Box::new(Reassembly {
                        kind,
                        buf: payload.to_vec(),
                        utf8_ok,
                        fragments: 1,
                    }));
                    return Ok(Fed::Pending);
                }
                match kind {
                    Data::Text => std::str::from_utf8(payload)
                        .map(|s| Fed::Whole(Message::Text(s)))
                        .map_err(|_| Violation::BadUtf8),
                    _ => Ok(Fed::Whole(Message::Binary(payload))),
                }
            }
        }
    }
}

fn control(c: Control, payload: &[u8]) -> Result<Message<'_>, Violation> {
    match c {
        Control::Ping => Ok(Message::Ping(payload)),
        Control::Pong => Ok(Message::Pong),
        Control::Close => match payload.len() {
            0 => Ok(Message::Close(None, "")),
            1 => Err(Violation::Protocol("close payload of one byte")),
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                if !CloseCode::from(code).is_allowed() {
                    return Err(Violation::Protocol("invalid close code"));
                }
                let reason = std::str::from_utf8(&payload[2..]).map_err(|_| Violation::BadUtf8)?;
                Ok(Message::Close(Some(code), reason))
            }
        },
        Control::Reserved(_) => Err(Violation::Protocol("reserved opcode")),
    }
}

/// Longest header of an unmasked server frame.
pub const MAX_HEADER: usize = 10;

/// Writes the header of an unmasked final frame for `len` payload bytes into
/// the END of `out[..MAX_HEADER]`, returning where it starts. Lets a caller
/// serialize the payload first (after a `MAX_HEADER` gap) and frame it after,
/// without moving the payload.
pub fn header_before(out: &mut [u8; MAX_HEADER], opcode: OpCode, len: usize) -> usize {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    let size = header.len(len as u64);
    let start = MAX_HEADER - size;
    header
        .format(len as u64, &mut &mut out[start..])
        .expect("a header fits its computed size");
    start
}

/// Appends one unmasked final frame to `out`.
pub fn encode(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    let mut head = [0u8; MAX_HEADER];
    let start = header_before(&mut head, opcode, payload.len());
    out.reserve(MAX_HEADER - start + payload.len());
    out.extend_from_slice(&head[start..]);
    out.extend_from_slice(payload);
}

pub const TEXT: OpCode = OpCode::Data(Data::Text);
pub const BINARY: OpCode = OpCode::Data(Data::Binary);
pub const PONG: OpCode = OpCode::Control(Control::Pong);

/// Longest close reason in bytes: a control frame's payload is at most 125
/// bytes (RFC 6455 §5.5), and the status code takes the first 2.
pub const MAX_CLOSE_REASON: usize = 123;

/// A close frame with a code and a reason (cut to fit the 125-byte limit).
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    // The peer must get valid UTF-8 (it fails the connection with 1007
    // otherwise), so a character that does not fit is dropped whole.
    // (`str::floor_char_boundary` would do, but needs Rust 1.91.)
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason[..end];
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    encode(out, OpCode::Control(Control::Close), &payload);
}

/// A server ping with an empty payload: the same two bytes for every connection.
pub static PING_FRAME: [u8; 2] = [0x89, 0x00];

/// One masked client frame, its length in the shortest form (for tests
/// here and in `ws::proptests`).
#[cfg(test)]
pub(crate) fn client_frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    let mut p = payload.to_vec();
    unmask(&mut p, mask);
    out.extend_from_slice(&p);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One text frame arriving in pieces fails as soon as the piece with the
    /// bad byte is in, long before the frame is whole (Autobahn 6.4.3/6.4.4);
    /// a character split between pieces is fine.
    #[test]
    fn bad_utf8_fails_inside_an_incomplete_frame() {
        let mut payload = "κόσμε".as_bytes().to_vec();
        payload.extend_from_slice(&[0xf4, 0x90, 0x80, 0x80]); // beyond U+10FFFF
        payload.extend_from_slice(b"edited");
        let frame = masked(0x81, &payload);
        let mut asm = Assembler::default();
        // Header + the valid part + half of "ε": incomplete, and fine so far.
        let valid = 6 + "κόσμ".len() + 1;
        assert_eq!(asm.check_partial(&frame[..valid]), Ok(()));
        assert_eq!(
            asm.check_partial(&frame[..valid + 1]),
            Ok(()),
            "ε completed"
        );
        assert_eq!(
            asm.check_partial(&frame[..6 + "κόσμε".len() + 2]),
            Err(Violation::BadUtf8),
            "the frame is far from complete"
        );

        let frame = masked(0x81, "aé".as_bytes());
        let mut asm = Assembler::default();
        for end in 6..frame.len() {
            assert_eq!(asm.check_partial(&frame[..end]), Ok(()), "prefix {end}");
        }
    }

    /// A continuation frame is checked against the character the previous
    /// fragment left cut; binary frames are not checked at all.
    #[test]
    fn partial_continuations_complete_the_cut_character() {
        let euro = "€".as_bytes();
        let mut asm = Assembler::default();
        let mut first = masked(0x01, &euro[..1]);
        let f = decode_frame(&mut first, 1 << 16).unwrap().unwrap();
        assert!(matches!(asm.feed(&f, &first, 1 << 16), Ok(Fed::Pending)));
        let rest = masked(0x80, &euro[1..]);
        assert_eq!(asm.check_partial(&rest[..7]), Ok(()));
        let bad = masked(0x80, &[0x41, 0x41]);
        assert_eq!(asm.check_partial(&bad[..7]), Err(Violation::BadUtf8));
        let mut asm = Assembler::default();
        let binary = masked(0x82, &[0xff, 0xff]);
        assert_eq!(asm.check_partial(&binary[..7]), Ok(()));
    }

    /// A client frame as a browser would send it.
    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        client_frame(first, payload, [0x37, 0xfa, 0x21, 0x3d])
    }

    fn feed_all(asm: &mut Assembler, buf: &mut [u8]) -> Result<Vec<String>, Violation> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(f) = decode_frame(&mut buf[at..], 1 << 16)? {
            let f = RawFrame {
                payload: f.payload.start + at..f.payload.end + at,
                ..f
            };
            at += f.len;
            match asm.feed(&f, buf, 1 << 16)? {
                Fed::Whole(m) => out.push(format!("{m:?}")),
                Fed::Assembled(k, v) => out.push(format!("{k:?}:{}", String::from_utf8_lossy(&v))),
                Fed::Pending => {}
            }
        }
        Ok(out)
    }

    /// A message may come in up to `MAX_FRAGMENTS` frames; one more frame,
    /// even an empty one, is a policy violation (1008), and the count starts
    /// again with the next message.
    #[test]
    fn caps_fragments_per_message() {
        let stream = |frames: usize| {
            let mut buf = masked(0x01, b"a");
            for _ in 1..frames - 1 {
                buf.extend(masked(0x00, b""));
            }
            buf.extend(masked(0x80, b"z"));
            buf
        };
        let mut asm = Assembler::default();
        let mut twice = stream(MAX_FRAGMENTS);
        twice.extend(stream(MAX_FRAGMENTS));
        assert_eq!(
            feed_all(&mut asm, &mut twice).unwrap(),
            vec!["Text:az".to_string(), "Text:az".to_string()]
        );
        let mut asm = Assembler::default();
        let err = feed_all(&mut asm, &mut stream(MAX_FRAGMENTS + 1)).unwrap_err();
        assert_eq!((err, err.close_code()), (Violation::TooManyFragments, 1008));
    }

    /// "Hello" from RFC 6455 section 5.7 decodes in place; a cut frame is
    /// incomplete, not an error.
    #[test]
    fn decodes_rfc_example() {
        let mut frame = vec![
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(decode_frame(&mut frame[..7], 100), Ok(None));
        let f = decode_frame(&mut frame, 100).unwrap().unwrap();
        assert_eq!(
            (&frame[f.payload.clone()], f.len, f.fin),
            (&b"Hello"[..], 11, true)
        );
    }

    /// Fragments are reassembled, with a ping allowed between them.
    #[test]
    fn reassembles_fragments() {
        let mut buf = masked(0x01, b"Hel");
        buf.extend(masked(0x89, b"p"));
        buf.extend(masked(0x80, b"lo"));
        let mut asm = Assembler::default();
        let got = feed_all(&mut asm, &mut buf).unwrap();
        assert_eq!(
            got,
            vec!["Ping([112])".to_string(), "Text:Hello".to_string()]
        );
        assert!(asm.message.is_none(), "nothing held once whole");
    }

    /// Every connection holds an assembler: it stays two words, with the
    /// state of a fragmented message boxed (the idle-memory budget).
    #[test]
    fn assembler_is_small() {
        assert!(std::mem::size_of::<Assembler>() <= 16);
    }

    /// Decodes the one frame in `bytes` and feeds it, as `process_ws` does.
    fn feed_one(asm: &mut Assembler, mut bytes: Vec<u8>) -> Result<bool, Violation> {
        let f = decode_frame(&mut bytes, 1 << 16)?.expect("one whole frame");
        asm.feed(&f, &bytes, 1 << 16)
            .map(|fed| !matches!(fed, Fed::Pending))
    }

    /// Invalid UTF-8 in the first of three text fragments fails the
    /// connection (1007) when that fragment arrives, not at the last one
    /// (Autobahn 6.4.1-6.4.4: "fail fast").
    #[test]
    fn bad_utf8_in_an_early_fragment_fails_at_once() {
        let mut asm = Assembler::default();
        // 0xF4 0x90 starts a code point past U+10FFFF: no continuation can mend it.
        assert_eq!(
            feed_one(&mut asm, masked(0x01, b"ok \xf4\x90\x80\x80")),
            Err(Violation::BadUtf8)
        );
        let mut asm = Assembler::default();
        assert_eq!(feed_one(&mut asm, masked(0x01, b"fine")), Ok(false));
        assert_eq!(
            feed_one(&mut asm, masked(0x00, &[0xce, 0xba, 0xff])),
            Err(Violation::BadUtf8),
            "a bad byte in a middle fragment fails that fragment"
        );
    }

    /// A multi-byte character cut across fragments (even one byte per
    /// fragment) is not an error: only the final fragment must end whole.
    #[test]
    fn char_split_across_fragments_is_accepted() {
        let euro = "€".as_bytes(); // e2 82 ac
        let mut asm = Assembler::default();
        assert_eq!(
            feed_one(&mut asm, masked(0x01, &[b'a', euro[0]])),
            Ok(false)
        );
        assert_eq!(feed_one(&mut asm, masked(0x00, &euro[1..2])), Ok(false));
        assert_eq!(feed_one(&mut asm, masked(0x00, &euro[2..])), Ok(false));
        let mut bytes = masked(0x80, b"!");
        let f = decode_frame(&mut bytes, 1 << 16).unwrap().unwrap();
        match asm.feed(&f, &bytes, 1 << 16) {
            Ok(Fed::Assembled(Data::Text, v)) => assert_eq!(v, "a€!".as_bytes()),
            other => panic!("expected the assembled text, got {:?}", other.is_ok()),
        }
        // A character still cut when the message ends is invalid.
        let mut asm = Assembler::default();
        assert_eq!(feed_one(&mut asm, masked(0x01, &euro[..1])), Ok(false));
        assert_eq!(
            feed_one(&mut asm, masked(0x80, &euro[1..2])),
            Err(Violation::BadUtf8)
        );
    }

    /// Each framing rule breaks with the close code the RFC gives it.
    #[test]
    fn rejects_violations() {
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (vec![0x81, 0x01, b'a'], 1002),                  // unmasked
            (masked(0xC1, b"a"), 1002),                      // RSV1 without extension
            (masked(0x83, b"a"), 1002),                      // reserved opcode
            (masked(0x09, b"a"), 1002),                      // fragmented ping
            (masked(0x89, &[0u8; 126]), 1002),               // long ping
            (masked(0x80, b"a"), 1002),                      // continuation first
            (masked(0x81, &[0xff, 0xfe]), 1007),             // bad UTF-8
            (masked(0x88, &[0x03]), 1002),                   // one-byte close
            (masked(0x88, &[0x03, 0xed]), 1002),             // close code 1005
            (masked(0x82, &vec![0u8; (1 << 16) + 1]), 1009), // too big
        ];
        for (mut buf, code) in cases {
            let got = feed_all(&mut Assembler::default(), &mut buf).unwrap_err();
            assert_eq!(got.close_code(), code, "{buf:?}");
        }
        let mut two_starts = masked(0x01, b"a");
        two_starts.extend(masked(0x01, b"b"));
        assert!(feed_all(&mut Assembler::default(), &mut two_starts).is_err());
    }

    /// Server frames use the shortest length form and no mask.
    #[test]
    fn encodes_lengths() {
        for (len, head) in [
            (5usize, vec![0x81, 5]),
            (200, vec![0x81, 126, 0, 200]),
            (70_000, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]),
        ] {
            let mut out = Vec::new();
            encode(&mut out, TEXT, &vec![b'x'; len]);
            assert_eq!(&out[..head.len()], &head[..]);
            assert_eq!(out.len(), head.len() + len);
        }
        let mut close = Vec::new();
        encode_close(&mut close, 1008, "slow");
        assert_eq!(close, vec![0x88, 6, 0x03, 0xf0, b's', b'l', b'o', b'w']);
    }

    /// The shared ping bytes are exactly the frame `encode` writes for an
    /// empty ping.
    #[test]
    fn ping_frame_is_an_empty_ping() {
        let mut out = Vec::new();
        encode(&mut out, OpCode::Control(Control::Ping), &[]);
        assert_eq!(out, PING_FRAME);
    }

    /// A close reason too long for the frame is cut at the last character
    /// boundary that fits, never inside a character: 62 two-byte 'é' are 124
    /// bytes, one past the limit, with byte 123 in the middle of the last one.
    #[test]
    fn close_reason_is_cut_at_a_char_boundary() {
        for (reason, kept) in [
            ("é".repeat(62), 122),
            ("a".repeat(200), MAX_CLOSE_REASON),
            ("a".repeat(MAX_CLOSE_REASON), MAX_CLOSE_REASON),
            (format!("{}€", "a".repeat(121)), 121),
        ] {
            let mut out = Vec::new();
            encode_close(&mut out, 1000, &reason);
            let payload = &out[2..];
            assert_eq!(out[1] as usize, payload.len(), "one-byte length form");
            assert!(payload.len() <= 125, "control payload over 125 bytes");
            assert_eq!(&payload[..2], &1000u16.to_be_bytes());
            let text = std::str::from_utf8(&payload[2..]).expect("reason is UTF-8");
            assert_eq!(text.len(), kept);
            assert!(reason.starts_with(text));
        }
    }
}
