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
//! A frame whose read does not fit is *deferred*: kept whole in its session,
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

impl Hub {
    /// Reserves `bytes` for a read by `token`'s session, if both budgets
    /// allow it now. The reservation waits in `unclaimed` for the read to
    /// claim it ([`Hub::claim_reservation`]).
    pub(super) fn reserve_read(&mut self, out: &impl Outbox, token: Token, bytes: usize) -> bool {
        let Some(s) = self.session(token) else {
            return false;
        };
        let conn_ok =
            s.reads < MAX_READS_PER_CONN && out.queued(token) + s.reserved + bytes <= REPLY_ROOM;
        let server_ok = self.read_bytes == 0 || self.read_bytes + bytes <= READ_BYTES_IN_FLIGHT;
        if !(conn_ok && server_ok) {
            return false;
        }
        let s = self.session_mut(token).expect("checked above");
        s.reads += 1;
        s.reserved += bytes;
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
            && let Some(conn) = self.session(token).map(|s| s.conn)
        {
            self.release_read(token, conn, bytes);
        }
    }

    /// A read of `conn` is over: its bytes go back to both budgets (to the
    /// connection's only if it is still the same one).
    pub(super) fn release_read(&mut self, token: Token, conn: ConnRef, bytes: usize) {
        self.read_bytes -= bytes;
        if let Some(s) = self.session_mut(token)
            && s.conn == conn
        {
            s.reads -= 1;
            s.reserved -= bytes;
        }
    }

    /// Keeps `text` to be handled when its read fits; the connection's
    /// input is held until then.
    pub(super) fn defer(&mut self, token: Token, text: &str) {
        if let Some(s) = self.session_mut(token) {
            s.deferred = Some(text.into());
            self.read_waiters.push_back(token);
        }
    }

    /// Whether the reactor may hand this connection's next frame to the hub:
    /// false while a deferred frame waits for its read to fit.
    pub fn takes_input(&self, token: Token) -> bool {
        self.session(token).is_none_or(|s| s.deferred.is_none())
    }

    /// Starts the deferred frames whose reads fit now, oldest first, and
    /// resumes their connections' input. Called when a read completes and
    /// once a second.
    pub fn retry_deferred(&mut self, cx: &mut Ctx<'_, impl Outbox>) {
        for _ in 0..self.read_waiters.len() {
            let Some(token) = self.read_waiters.pop_front() else {
                break;
            };
            let Some(text) = self.session_mut(token).and_then(|s| s.deferred.take()) else {
                continue; // closed, or already retried
            };
            self.handle_text(cx, token, &text, true);
            if self.takes_input(token) {
                cx.out.resume_input(token);
            }
            // Deferred again: `handle_text` put it back at the end.
        }
    }
}
