//! The reads part: storage reads connections have in flight, what they may
//! cost, and the frames waiting for room to start theirs.
//!
//! A history page or a `since` replay is read on the storage reader thread
//! and comes back as one reply of up to a few megabytes. Without a bound, a
//! client that sends forty `history` frames and never reads its socket makes
//! the server hold forty replies (the attack in issue 11 grew the server to
//! 2.4 GiB with twenty such clients). So every read is *reserved* before it
//! is submitted, at the most its reply can take (`MESSAGE_REPLY_MAX` per
//! message it may return, at most `MAX_REPLY_BYTES`), against three budgets:
//!
//! - the connection's: at most [`MAX_READS_PER_CONN`] in flight, and its
//!   unsent output plus its reservations plus the new one must stay within
//!   [`OUTPUT_CEILING`] less the live-frame room ([`OUTPUT_HARD_LIMIT`]), so
//!   a reply that arrives always fits: a client that does not read its
//!   answers cannot ask for more;
//! - the user's: the unsent output of all their connections plus their
//!   reservations stay within [`USER_REPLY_BYTES`], so many sockets of one
//!   account that ask and never read add up to one budget, not one each;
//! - the server's: [`READ_BYTES_IN_FLIGHT`] reserved at once, and every
//!   connection's unsent output (the reactor's running count) plus all
//!   reservations within [`SERVER_REPLY_BYTES`], whoever asks. (When
//!   nothing at all is reserved, one read may start whatever its size, so
//!   the budget can never wedge.)
//!
//! A frame whose read does not fit is *deferred*: kept whole (in `Reading`,
//! which only connections with reads or a waiting frame have),
//! and the connection's input is held (the reactor asks `Hub::takes_input`
//! before each frame), so what the client sent after it waits in the socket
//! and TCP flow control pushes back. A deferred frame is tried again when a
//! read completes and once a second (its connection's output may have
//! drained), oldest first; when it starts, the connection's input resumes.
//!
//! The cost, admitted: reservations are worst cases (a page of short
//! messages reserves as much as a page of 4000 escaped characters), so under
//! a flood of big reads the server runs fewer at once than it could.

use std::collections::{HashMap, VecDeque};

use crate::config::{
    MAX_READS_PER_CONN, OUTPUT_CEILING, OUTPUT_HARD_LIMIT, READ_BYTES_IN_FLIGHT,
    SERVER_REPLY_BYTES, USER_REPLY_BYTES,
};
use crate::outbox::{ConnRef, Outbox};
use crate::store::UserId;

/// Room for replies in a connection's output: the ceiling less what live
/// frames may take.
const REPLY_ROOM: usize = OUTPUT_CEILING - OUTPUT_HARD_LIMIT;

/// One connection's reads: how many are in flight, what they reserve, and
/// the frame waiting for room, if any. Dropped when all three are empty.
#[derive(Default)]
struct Reading {
    /// Whose connection it is (for the user's budget).
    user: UserId,
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

/// Both budgets, and the deferred frames.
#[derive(Default)]
pub struct Reads {
    /// Reply bytes reserved for storage reads in flight, server-wide.
    bytes: usize,
    /// The same per user, for users with reads in flight only.
    by_user: HashMap<UserId, usize>,
    /// The read state of connections with reads in flight or a frame
    /// waiting, and only of those: most sessions never read, so the state
    /// is not a field of every session.
    by_conn: HashMap<ConnRef, Reading>,
    /// Connections with a deferred frame, oldest first.
    waiters: VecDeque<ConnRef>,
    /// The reservation made for the frame being handled, until a read
    /// claims it (what is left unclaimed is released after the frame).
    unclaimed: usize,
}

impl Reads {
    /// Reserves `bytes` for a read by `conn` of `user`, whose connections
    /// hold `user_queued` unsent bytes, if every budget allows it now.
    /// The reservation waits for the read to claim it ([`Reads::claim`]).
    pub fn reserve(
        &mut self,
        out: &impl Outbox,
        conn: ConnRef,
        user: UserId,
        user_queued: usize,
        bytes: usize,
    ) -> bool {
        let (count, reserved) = self
            .by_conn
            .get(&conn)
            .map_or((0, 0), |r| (r.count, r.reserved));
        let conn_ok =
            count < MAX_READS_PER_CONN && out.queued(conn.token) + reserved + bytes <= REPLY_ROOM;
        let user_reserved = self.by_user.get(&user).copied().unwrap_or(0);
        let user_ok = user_queued + user_reserved + bytes <= USER_REPLY_BYTES;
        let server_ok = self.bytes == 0
            || (self.bytes + bytes <= READ_BYTES_IN_FLIGHT
                && out.queued_everywhere() + self.bytes + bytes <= SERVER_REPLY_BYTES);
        if !(conn_ok && user_ok && server_ok) {
            return false;
        }
        let r = self.by_conn.entry(conn).or_default();
        r.user = user;
        r.count += 1;
        r.reserved += bytes;
        *self.by_user.entry(user).or_default() += bytes;
        self.bytes += bytes;
        self.unclaimed = bytes;
        true
    }

    /// The reservation made for the frame being handled, now owned by the
    /// read being parked (0 if none was made).
    pub fn claim(&mut self) -> usize {
        std::mem::take(&mut self.unclaimed)
    }

    /// A frame was handled without parking a read (it failed its checks, or
    /// was answered from memory): its reservation goes back.
    pub fn release_unclaimed(&mut self, conn: ConnRef) {
        let bytes = std::mem::take(&mut self.unclaimed);
        if bytes > 0 {
            self.release(conn, bytes);
        }
    }

    /// A read of `conn` is over (whether or not the connection still is):
    /// its bytes go back to both budgets.
    pub fn release(&mut self, conn: ConnRef, bytes: usize) {
        self.bytes -= bytes;
        if let Some(r) = self.by_conn.get_mut(&conn) {
            if let Some(u) = self.by_user.get_mut(&r.user) {
                *u -= bytes;
                if *u == 0 {
                    self.by_user.remove(&r.user);
                }
            }
            r.count -= 1;
            r.reserved -= bytes;
            if r.is_idle() {
                self.by_conn.remove(&conn);
            }
        }
    }

    /// Keeps `text` to be handled when its read fits; the connection's
    /// input is held until then.
    pub fn defer(&mut self, conn: ConnRef, text: &str) {
        self.by_conn.entry(conn).or_default().deferred = Some(text.into());
        self.waiters.push_back(conn);
    }

    /// A session ended: a frame it left waiting is dropped with it (reads
    /// still in flight release their bytes when they come back).
    pub fn forget(&mut self, conn: ConnRef) {
        if let Some(r) = self.by_conn.get_mut(&conn) {
            r.deferred = None;
            if r.is_idle() {
                self.by_conn.remove(&conn);
            }
        }
    }

    /// Whether `conn`'s next frame may be handled: false while a deferred
    /// frame waits for its read to fit.
    pub fn takes_input(&self, conn: ConnRef) -> bool {
        self.by_conn.get(&conn).is_none_or(|r| r.deferred.is_none())
    }

    /// How many connections wait with a deferred frame (some may have
    /// closed or been retried since).
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// The oldest connection's deferred frame, taken to be tried again
    /// (`None` for a waiter that closed or was retried already). A frame
    /// that still does not fit is deferred again, at the end.
    pub fn next_deferred(&mut self) -> Option<(ConnRef, Option<Box<str>>)> {
        let conn = self.waiters.pop_front()?;
        let text = self.by_conn.get_mut(&conn).and_then(|r| r.deferred.take());
        Some((conn, text))
    }

    /// After a retried frame: drops `conn`'s state if nothing is left in it
    /// (the frame failed its checks, or was answered at once).
    pub fn tidy(&mut self, conn: ConnRef) {
        if self.by_conn.get(&conn).is_some_and(Reading::is_idle) {
            self.by_conn.remove(&conn);
        }
    }

    /// Bytes reserved and connections tracked (both 0 when all is answered).
    #[cfg(test)]
    pub fn in_flight(&self) -> (usize, usize) {
        (self.bytes, self.by_conn.len())
    }
}
