//! Storage reads a connection may have in flight, and what they may cost.
//!
//! A history page or a `since` replay is read on the storage reader thread
//! and comes back as one reply of up to a few megabytes. Without a bound, a
//! client that sends forty `history` frames and never reads its socket makes
//! the server hold forty replies (the attack in issue 11 grew the server to
//! 2.4 GiB with twenty such clients). So every read is *reserved* before it
//! is submitted, at the most its reply can take (`MESSAGE_REPLY_MAX` per
//! message it may return, at most `MAX_REPLY_BYTES`), against two budgets:
//!
//! - the connection's: at most [`MAX_READS_PER_CONN`] in flight, and its
//!   unsent output plus its reservations plus the new one must stay within
//!   [`OUTPUT_CEILING`] less the live-frame room ([`OUTPUT_HARD_LIMIT`]), so
//!   a reply that arrives always fits: a client that does not read its
//!   answers cannot ask for more;
//! - the server's: [`READ_BYTES_IN_FLIGHT`] reserved at once, whoever asks.
//!   (When nothing at all is reserved, one read may start whatever its size,
//!   so the budget can never wedge.)
//!
//! A frame whose read does not fit is *deferred*: kept whole (in `Reading`,
//! which only connections with reads or a waiting frame have),
//! and the connection's input is held (the reactor asks [`Hub::takes_input`]
//! before each frame), so what the client sent after it waits in the socket
//! and TCP flow control pushes back. A deferred frame is tried again when a
//! read completes and once a second (its connection's output may have
//! drained), oldest first; when it starts, the connection's input resumes.
//!
//! The cost, admitted: reservations are worst cases (a page of short
//! messages reserves as much as a page of 4000 escaped characters), so under
//! a flood of big reads the server runs fewer at once than it could.

use mio::Token;

use super::{Ctx, Hub};
use crate::config::{MAX_READS_PER_CONN, OUTPUT_CEILING, OUTPUT_HARD_LIMIT, READ_BYTES_IN_FLIGHT};
use crate::outbox::{ConnRef, Outbox};

/// Room for replies in a connection's output: the ceiling less what live
/// frames may take.
const REPLY_ROOM: usize = OUTPUT_CEILING - OUTPUT_HARD_LIMIT;

/// One connection's reads: how many are in flight, what they reserve, and
/// the frame waiting for room, if any. Dropped when all three are empty.
pub struct Reading {
    count: u8,
    reserved: usize,
    /// A frame that needs a read which could not start yet, kept whole to
    /// be handled again; while it waits, the connection's input is held.
    deferred: Option<Box<str>>,
}

impl Reading {
    fn is_idle(&self) -> bool {
        self.count == 0 && self.deferred.is_none()
    }
}

impl Hub {
    /// The live connection of `token`'s session.
    fn conn_of(&self, token: Token) -> Option<ConnRef> {
        self.session(token).map(|s| s.conn)
    }

    /// Reserves `bytes` for a read by `token`'s session, if both budgets
    /// allow it now. The reservation waits in `unclaimed` for the read to
    /// claim it ([`Hub::claim_reservation`]).
    pub(super) fn reserve_read(&mut self, out: &impl Outbox, token: Token, bytes: usize) -> bool {
        let Some(conn) = self.conn_of(token) else {
            return false;
        };
        let (count, reserved) = self
            .reading
            .get(&conn)
            .map_or((0, 0), |r| (r.count, r.reserved));
        let conn_ok =
            count < MAX_READS_PER_CONN && out.queued(token) + reserved + bytes <= REPLY_ROOM;
        let server_ok = self.read_bytes == 0 || self.read_bytes + bytes <= READ_BYTES_IN_FLIGHT;
        if !(conn_ok && server_ok) {
            return false;
        }
        let r = self.reading.entry(conn).or_insert(Reading {
            count: 0,
            reserved: 0,
            deferred: None,
        });
        r.count += 1;
        r.reserved += bytes;
        self.read_bytes += bytes;
        self.unclaimed = bytes;
        true
    }

    /// The reservation made for the frame being handled, now owned by the
    /// read being parked (0 if none was made).
    pub(super) fn claim_reservation(&mut self) -> usize {
        std::mem::take(&mut self.unclaimed)
    }

    /// A frame was handled without parking a read (it failed its checks, or
    /// was answered from memory): its reservation goes back.
    pub(super) fn release_unclaimed(&mut self, token: Token) {
        let bytes = std::mem::take(&mut self.unclaimed);
        if bytes > 0
            && let Some(conn) = self.conn_of(token)
        {
            self.release_read(conn, bytes);
        }
    }

    /// A read of `conn` is over (whether or not the connection still is):
    /// its bytes go back to both budgets.
    pub(super) fn release_read(&mut self, conn: ConnRef, bytes: usize) {
        self.read_bytes -= bytes;
        if let Some(r) = self.reading.get_mut(&conn) {
            r.count -= 1;
            r.reserved -= bytes;
            if r.is_idle() {
                self.reading.remove(&conn);
            }
        }
    }

    /// Keeps `text` to be handled when its read fits; the connection's
    /// input is held until then. (Only after `reserve_read` refused, so the
    /// connection has a session.)
    pub(super) fn defer(&mut self, token: Token, text: &str) {
        let Some(conn) = self.conn_of(token) else {
            return;
        };
        let r = self.reading.entry(conn).or_insert(Reading {
            count: 0,
            reserved: 0,
            deferred: None,
        });
        r.deferred = Some(text.into());
        self.read_waiters.push_back(token);
    }

    /// A session ended: a frame it left waiting is dropped with it (reads
    /// still in flight release their bytes when they come back).
    pub(super) fn forget_deferred(&mut self, conn: ConnRef) {
        if let Some(r) = self.reading.get_mut(&conn) {
            r.deferred = None;
            if r.is_idle() {
                self.reading.remove(&conn);
            }
        }
    }

    /// Whether the reactor may hand this connection's next frame to the hub:
    /// false while a deferred frame waits for its read to fit.
    pub fn takes_input(&self, token: Token) -> bool {
        self.conn_of(token)
            .and_then(|c| self.reading.get(&c))
            .is_none_or(|r| r.deferred.is_none())
    }

    /// Starts the deferred frames whose reads fit now, oldest first, and
    /// resumes their connections' input. Called when a read completes and
    /// once a second.
    pub fn retry_deferred(&mut self, cx: &mut Ctx<'_, impl Outbox>) {
        for _ in 0..self.read_waiters.len() {
            let Some(token) = self.read_waiters.pop_front() else {
                break;
            };
            let Some(conn) = self.conn_of(token) else {
                continue; // closed
            };
            let Some(text) = self.reading.get_mut(&conn).and_then(|r| r.deferred.take()) else {
                continue; // already retried
            };
            self.handle_text(cx, token, &text, true);
            if self.reading.get(&conn).is_some_and(Reading::is_idle) {
                // It failed its checks this time, or was answered at once.
                self.reading.remove(&conn);
            }
            if self.takes_input(token) {
                cx.out.resume_input(token);
            }
            // Deferred again: `handle_text` put it back at the end.
        }
    }
}
