//! The one door from the application (hub, HTTP routes) to the connections:
//! queue bytes for a token, answer an HTTP request, ask for a close. The
//! application never touches a socket, and a close it asks for happens after
//! the current pass (Redis' rule: never free a client in the middle of a
//! fan-out loop that may still be iterating it).

use std::rc::Rc;

use mio::Token;
use slab::Slab;

use crate::conn::{Closing, Conn, Phase};
use crate::http::response::Response;
use crate::metrics::Metrics;
use crate::ws::codec;

/// A connection as asynchronous work remembers it: slab keys are reused, the
/// serial is not, so a late answer never reaches a stranger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnRef {
    pub token: Token,
    pub serial: u64,
}

pub struct Outbox<'a> {
    pub conns: &'a mut Slab<Conn>,
    /// Connections with new output this turn (flushed at the end of the pass).
    pub flush_list: &'a mut Vec<Token>,
    /// Connections to read again next turn (an HTTP connection that can go
    /// on with pipelined input once its pending answer went out).
    pub read_list: &'a mut Vec<Token>,
    /// Connections to close or reap at the end of the pass.
    pub close_list: &'a mut Vec<Token>,
    pub metrics: &'a mut Metrics,
    /// The loop's coarse clock, for closing deadlines.
    pub now: u32,
}

impl Outbox<'_> {
    /// Whether `c` is still the same open connection (not closing).
    pub fn is_live(&self, c: ConnRef) -> bool {
        self.conns
            .get(c.token.0)
            .is_some_and(|conn| conn.serial == c.serial && conn.closing.is_none())
    }

    fn mark_flush(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(token.0)
            && conn.enlist_flush()
        {
            self.flush_list.push(token);
        }
    }

    /// Queues a shared WebSocket frame. A connection past its output limit is
    /// cut as a slow consumer; nobody else waits for it.
    pub fn frame(&mut self, token: Token, frame: &Rc<[u8]>) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        if conn.closing.is_some() {
            return;
        }
        if conn.queue_shared(frame) {
            self.metrics.ws_frames_out += 1;
            self.mark_flush(token);
        } else {
            self.cut_slow(token);
        }
    }

    /// Queues bytes for one connection (an encoded reply frame).
    pub fn reply(&mut self, token: Token, bytes: &[u8]) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        if conn.closing.is_some() {
            return;
        }
        if conn.queue_owned(bytes) {
            self.metrics.ws_frames_out += u64::from(conn.is_ws());
            self.mark_flush(token);
        } else {
            self.cut_slow(token);
        }
    }

    /// The server's ping (two constant bytes).
    pub fn ping(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        if conn.closing.is_none() && conn.queue_static(&codec::PING_FRAME) {
            self.mark_flush(token);
        }
    }

    /// Sends an HTTP response; a `close` response (or a request without
    /// keep-alive) closes the connection once it is written.
    pub fn http(&mut self, token: Token, resp: Response, keep_alive: bool, head_only: bool) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        let mut head = Vec::with_capacity(256);
        resp.write_head(&mut head, keep_alive);
        let mut ok = conn.queue_owned(&head);
        if !head_only && !resp.body.is_empty() {
            ok &= match resp.body {
                std::borrow::Cow::Borrowed(b) => conn.queue_static(b),
                std::borrow::Cow::Owned(ref b) => conn.queue_owned(b),
            };
        }
        if !ok || !keep_alive || resp.close {
            self.close_after_flush(token);
        }
        self.mark_flush(token);
    }

    /// An asynchronous HTTP answer went out: let the connection parse any
    /// pipelined requests it holds and read again.
    pub fn resume_http(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        if let Phase::Http { waiting } = &mut conn.phase {
            *waiting = false;
        }
        conn.timer_start = self.now;
        if conn.enlist_read() {
            self.read_list.push(token);
        }
    }

    /// Starts a WebSocket close: queue the close frame, stop taking frames,
    /// drop the socket once it is written (or after a linger).
    pub fn close_ws(&mut self, token: Token, code: u16, reason: &str) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        if conn.closing.is_some() {
            return;
        }
        let mut frame = Vec::with_capacity(8 + reason.len());
        codec::encode_close(&mut frame, code, reason);
        // A close frame is tiny: it may go past the hard limit by its size.
        if !conn.queue_owned(&frame) {
            conn.discard_unsent();
            conn.queue_owned(&frame);
        }
        self.close_after_flush(token);
        self.mark_flush(token);
    }

    /// Slow consumer: forget what it has not started to receive, tell it why
    /// (1008) if the frame still fits, and close.
    fn cut_slow(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        log::info!(
            "closing slow consumer {:?} with {} bytes unsent",
            token,
            conn.queued()
        );
        self.metrics.slow_consumer_cuts += 1;
        conn.discard_unsent();
        let mut frame = Vec::with_capacity(48);
        codec::encode_close(&mut frame, 1008, "slow consumer: output buffer full");
        conn.queue_owned(&frame);
        conn.closing = Some(Closing::Cut);
        self.close_list.push(token);
        self.mark_flush(token);
    }

    pub fn close_after_flush(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        if conn.closing.is_none() {
            conn.closing = Some(Closing::AfterFlush(self.now));
            self.close_list.push(token);
        }
    }

    /// Drops the connection at the end of this pass, without another byte.
    pub fn close_now(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        if conn.closing != Some(Closing::Now) {
            conn.closing = Some(Closing::Now);
            self.close_list.push(token);
        }
    }
}
