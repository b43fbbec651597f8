//! The hub: rooms, sessions, presence, message ids, idempotent retries and
//! pending acks — the Go chat tutorials' "Hub goroutine", minus the goroutine.
//! It is plain data owned by the loop thread; every client frame is handled to
//! completion in one call, so there is nothing to lock and no ordering to
//! reason about beyond "in the order the loop read them".
//!
//! - `rooms`: who is in which room (pure bookkeeping);
//! - `rate`: the per-connection token bucket;
//! - `frames`: the handling of each client frame of the contract;
//! - `presence`: connection open/close, join/leave, `user_status`.

pub mod frames;
pub mod presence;
pub mod rate;
pub mod rooms;

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use mio::Token;

use crate::config::CLIENT_ID_WINDOW;
use crate::outbox::ConnRef;
use crate::store::{MsgId, UserId};
use rate::TokenBucket;
use rooms::{RoomId, Rooms};

/// A WebSocket connection's chat state.
pub struct Session {
    pub conn: ConnRef,
    pub user: UserId,
    /// The room named in `/ws/room/{name}`: plain-text frames go there.
    /// Shared so handling a frame can hold it without copying the name.
    pub url_room: Option<std::rc::Rc<str>>,
    /// Rooms this connection is joined to (live or still replaying).
    pub rooms: Vec<RoomId>,
    pub bucket: TokenBucket,
    /// Live frames held while a `since` replay is read from storage.
    pub held: Vec<(RoomId, Rc<[u8]>)>,
    /// More frames arrived during a replay than could be held.
    pub held_overflow: bool,
}

/// A message waiting for its commit before its `ack` goes out.
pub struct PendingAck {
    /// The sender, then any connection that resent the same `client_id`
    /// before the commit.
    pub waiters: Vec<(ConnRef, Option<Box<str>>)>,
    pub timestamp_ms: i64,
    /// A private message reached a recipient's connection: `delivered` follows the ack.
    pub delivered: bool,
}

/// The newest client ids per user, oldest evicted first, for idempotent
/// retries (`CLIENT_ID_WINDOW` across the server).
#[derive(Default)]
pub struct ClientIds {
    by_user: HashMap<UserId, HashMap<Box<str>, (MsgId, i64)>>,
    order: VecDeque<(UserId, Box<str>)>,
}

impl ClientIds {
    pub fn get(&self, user: UserId, client_id: &str) -> Option<(MsgId, i64)> {
        self.by_user.get(&user)?.get(client_id).copied()
    }

    pub fn insert(&mut self, user: UserId, client_id: &str, id: MsgId, ts: i64) {
        self.by_user
            .entry(user)
            .or_default()
            .insert(client_id.into(), (id, ts));
        self.order.push_back((user, client_id.into()));
        if self.order.len() > CLIENT_ID_WINDOW
            && let Some((u, k)) = self.order.pop_front()
            && let Some(m) = self.by_user.get_mut(&u)
        {
            m.remove(&k);
            if m.is_empty() {
                self.by_user.remove(&u);
            }
        }
    }
}

#[derive(Default)]
pub struct Hub {
    pub rooms: Rooms,
    /// Indexed by token: slab keys are dense, so a Vec beats hashing.
    pub sessions: Vec<Option<Session>>,
    /// Each online user's WebSocket connections.
    pub online: HashMap<UserId, Vec<Token>>,
    /// The last message id handed out.
    pub last_msg_id: MsgId,
    pub client_ids: ClientIds,
    pub acks: PendingAcks,
}

/// Messages waiting for their commit, in id order. Storage commits in the
/// order the loop submitted, which is id order, so the answer for the oldest
/// is almost always at the front: a deque beats a hash map here (no hashing,
/// no tombstones), and the rare lookup by id is a binary search.
#[derive(Default)]
pub struct PendingAcks(VecDeque<(MsgId, PendingAck)>);

impl PendingAcks {
    /// Adds the newest message (ids only grow).
    pub fn push(&mut self, id: MsgId, ack: PendingAck) {
        debug_assert!(self.0.back().is_none_or(|(last, _)| *last < id));
        self.0.push_back((id, ack));
    }

    pub fn get_mut(&mut self, id: MsgId) -> Option<&mut PendingAck> {
        let i = self.0.binary_search_by_key(&id, |(k, _)| *k).ok()?;
        Some(&mut self.0[i].1)
    }

    pub fn remove(&mut self, id: MsgId) -> Option<PendingAck> {
        if self.0.front().is_some_and(|(k, _)| *k == id) {
            return self.0.pop_front().map(|(_, a)| a);
        }
        let i = self.0.binary_search_by_key(&id, |(k, _)| *k).ok()?;
        self.0.remove(i).map(|(_, a)| a)
    }
}

impl Hub {
    pub fn session(&self, token: Token) -> Option<&Session> {
        self.sessions.get(token.0)?.as_ref()
    }

    pub fn session_mut(&mut self, token: Token) -> Option<&mut Session> {
        self.sessions.get_mut(token.0)?.as_mut()
    }

    /// The next message id: increasing, never reused, assigned without storage.
    pub fn next_msg_id(&mut self) -> MsgId {
        self.last_msg_id += 1;
        self.last_msg_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pending acks are found by id whether answered in order or not.
    #[test]
    fn pending_acks_by_id() {
        let ack = || PendingAck {
            waiters: Vec::new(),
            timestamp_ms: 0,
            delivered: false,
        };
        let mut acks = PendingAcks::default();
        for id in [3, 5, 9] {
            acks.push(id, ack());
        }
        assert!(acks.get_mut(5).is_some() && acks.get_mut(4).is_none());
        assert!(acks.remove(5).is_some(), "out of order");
        assert!(acks.remove(3).is_some(), "front");
        assert!(acks.remove(3).is_none());
        assert_eq!(acks.0.len(), 1);
    }

    /// Client ids are found per user, and the oldest are evicted past the window.
    #[test]
    fn client_id_window_evicts_oldest() {
        let mut ids = ClientIds::default();
        ids.insert(1, "a", 10, 0);
        assert_eq!(ids.get(1, "a"), Some((10, 0)));
        assert_eq!(ids.get(2, "a"), None);
        for i in 0..CLIENT_ID_WINDOW as u64 {
            ids.insert(2, &i.to_string(), i, 0);
        }
        assert_eq!(ids.get(1, "a"), None, "evicted");
        assert_eq!(ids.get(2, "0"), Some((0, 0)));
        assert_eq!(ids.order.len(), CLIENT_ID_WINDOW);
        assert!(!ids.by_user.contains_key(&1));
    }
}
