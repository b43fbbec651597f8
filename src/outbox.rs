//! The one door from the application (the hub, the HTTP routes) to the
//! connections: queue bytes for a token, answer an HTTP request, ask for a
//! close. It is a trait so that the application never sees a socket: the
//! reactor implements it over its slab of connections (`server::Wires`), and
//! the hub's unit tests implement it with a recorder.
//!
//! Everything here is a request, carried out later: queued bytes go out in the
//! flush pass, and a close happens after the current pass (Redis' rule: never
//! free a client in the middle of a fan-out loop that may still be iterating
//! it).

use std::borrow::Cow;
use std::rc::Rc;

use mio::Token;

use crate::metrics::Metrics;

/// A connection as asynchronous work remembers it: slab keys are reused, the
/// serial is not, so a late answer never reaches a stranger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub token: Token,
    pub serial: u64,
}

/// What the application may ask of the connections.
pub trait Outbox {
    /// Whether `c` is still the same open connection (not closing).
    fn is_live(&self, c: ConnRef) -> bool;
    /// Queues one encoding of a broadcast frame. It counts as *live* output:
    /// a connection past the slow-consumer limit is cut instead.
    fn frame(&mut self, token: Token, frame: &Rc<[u8]>);
    /// Queues bytes for this connection alone (a reply it asked for).
    fn reply(&mut self, token: Token, bytes: &[u8]);
    /// Queues an HTTP response (its head, then its body without a copy when
    /// the body is static), closing the connection after it when `close`.
    fn respond(&mut self, token: Token, head: &[u8], body: Cow<'static, [u8]>, close: bool);
    /// An asynchronous HTTP answer went out: the connection may go on with
    /// pipelined requests and read again.
    fn resume_http(&mut self, token: Token);
    /// Unsent output bytes of a connection (0 for one that is gone).
    fn queued(&self, token: Token) -> usize;
    /// Unsent output bytes of every connection, now (a running count, not
    /// a pass over every connection).
    fn queued_everywhere(&self) -> usize;
    /// The application held this WebSocket's input (`App::takes_input` was
    /// false) and now takes it again: the frames left in its buffer are
    /// handled and the socket is read again.
    fn resume_input(&mut self, token: Token);
    /// Starts a WebSocket close: the close frame goes out, nothing after it.
    fn close_ws(&mut self, token: Token, code: u16, reason: &str);
    /// The connection's next `len` bytes are the body of the request it
    /// waits on: they go to `App::on_body` as they are read (after `100
    /// Continue` when `continue_first`: the client asked before sending).
    fn start_body(&mut self, token: Token, len: u64, continue_first: bool);
    /// Queues a buffer for this connection alone, without a copy (a
    /// download's chunk).
    fn body(&mut self, token: Token, bytes: Vec<u8>);
    /// Drops the connection at the end of the pass, without another byte
    /// (a download that cannot go on: its status line is long gone).
    fn abort(&mut self, token: Token);
    /// The loop's counters.
    fn metrics(&mut self) -> &mut Metrics;
    /// Connections open now (a `/metrics` gauge).
    fn open_connections(&self) -> usize;
    /// Whether the connection speaks TLS (its responses carry HSTS).
    fn is_tls(&self, token: Token) -> bool;
}

#[cfg(test)]
pub mod recorder {
    //! An [`Outbox`] that records what the application asked for, so the hub
    //! can be tested as pure logic: no sockets, no threads.

    use std::collections::HashSet;

    use super::*;

    /// One thing queued for a connection.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Sent {
        /// A broadcast (shared) frame, decoded to its JSON.
        Frame(serde_json::Value),
        /// A reply frame, decoded to its JSON.
        Reply(serde_json::Value),
        /// A close frame with its code.
        Close(u16),
        /// Raw bytes that were not a text frame (an HTTP response).
        Bytes(Vec<u8>),
    }

    #[derive(Default)]
    pub struct Recorder {
        pub sent: Vec<(Token, Sent)>,
        /// Connections that closed (or were never opened): `is_live` is false.
        pub dead: HashSet<Token>,
        pub metrics: Metrics,
        pub serials: std::collections::HashMap<Token, u64>,
        /// What `queued` answers per connection (0 unless a test sets it).
        pub queued: std::collections::HashMap<Token, usize>,
        /// Connections `resume_input` was called for, in order.
        pub resumed: Vec<Token>,
    }

    /// The JSON payload of one unmasked server text frame.
    fn text_frame(bytes: &[u8]) -> Option<serde_json::Value> {
        if bytes.first() != Some(&0x81) {
            return None;
        }
        let (len, start) = match bytes[1] {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().ok()?) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        serde_json::from_slice(&bytes[start..start + len]).ok()
    }

    /// Splits coalesced reply bytes back into frames.
    fn text_frames(mut bytes: &[u8]) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        while bytes.len() >= 2 {
            let (len, start) = match bytes[1] {
                126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
                127 => (
                    u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                n => (n as usize, 2),
            };
            if let Some(v) = text_frame(&bytes[..start + len]) {
                out.push(v);
            }
            bytes = &bytes[start + len..];
        }
        out
    }

    impl Recorder {
        /// Everything `token` was sent, as JSON frames, in order.
        pub fn frames_to(&self, token: Token) -> Vec<serde_json::Value> {
            self.sent
                .iter()
                .filter(|(t, _)| *t == token)
                .filter_map(|(_, s)| match s {
                    Sent::Frame(v) | Sent::Reply(v) => Some(v.clone()),
                    _ => None,
                })
                .collect()
        }

        /// The `type`s of what `token` was sent, in order.
        pub fn types_to(&self, token: Token) -> Vec<String> {
            self.frames_to(token)
                .iter()
                .map(|v| v["type"].as_str().unwrap_or("?").to_string())
                .collect()
        }

        /// Forgets what was recorded so far.
        pub fn clear(&mut self) {
            self.sent.clear();
        }
    }

    impl Outbox for Recorder {
        fn is_live(&self, c: ConnRef) -> bool {
            !self.dead.contains(&c.token)
                && self.serials.get(&c.token).is_none_or(|s| *s == c.serial)
        }
        fn frame(&mut self, token: Token, frame: &Rc<[u8]>) {
            if self.dead.contains(&token) {
                return;
            }
            let v = text_frame(frame).expect("broadcasts are JSON text frames");
            self.sent.push((token, Sent::Frame(v)));
        }
        fn reply(&mut self, token: Token, bytes: &[u8]) {
            if self.dead.contains(&token) {
                return;
            }
            let frames = text_frames(bytes);
            if frames.is_empty() {
                self.sent.push((token, Sent::Bytes(bytes.to_vec())));
            }
            for v in frames {
                self.sent.push((token, Sent::Reply(v)));
            }
        }
        fn respond(&mut self, token: Token, head: &[u8], body: Cow<'static, [u8]>, _: bool) {
            let mut b = head.to_vec();
            b.extend_from_slice(&body);
            self.sent.push((token, Sent::Bytes(b)));
        }
        fn resume_http(&mut self, _: Token) {}
        fn queued(&self, token: Token) -> usize {
            self.queued.get(&token).copied().unwrap_or(0)
        }
        fn queued_everywhere(&self) -> usize {
            self.queued.values().sum()
        }
        fn resume_input(&mut self, token: Token) {
            self.resumed.push(token);
        }
        fn close_ws(&mut self, token: Token, code: u16, _: &str) {
            self.sent.push((token, Sent::Close(code)));
            self.dead.insert(token);
        }
        fn start_body(&mut self, _: Token, _: u64, _: bool) {}
        fn body(&mut self, token: Token, bytes: Vec<u8>) {
            self.sent.push((token, Sent::Bytes(bytes)));
        }
        fn abort(&mut self, token: Token) {
            self.dead.insert(token);
        }
        fn metrics(&mut self) -> &mut Metrics {
            &mut self.metrics
        }
        fn open_connections(&self) -> usize {
            0
        }
        fn is_tls(&self, _: Token) -> bool {
            false
        }
    }
}
