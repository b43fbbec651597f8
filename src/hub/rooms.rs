//! Rooms and who is in them: pure bookkeeping, no sockets, no frames.
//!
//! A room's `subscribers` are the connections that receive its live frames,
//! in a `Vec` because fan-out iterates it for every message and a `Vec` is
//! the fastest thing to iterate; removal is a linear scan, paid on leave,
//! which is rare next to messages. Connections whose `join … since` replay is
//! still being read from storage wait in `replaying` instead, so live frames
//! can be held for them and delivered after the replay, in order.

use std::collections::{BTreeMap, HashMap, HashSet};

use mio::Token;

use crate::config::MAX_ROOM_NAME;
use crate::store::UserId;

/// Index of a room in [`Rooms`]; stable while the room exists.
pub type RoomId = usize;

/// A private room's owner and members (persistent, unlike subscriptions).
pub struct Private {
    pub owner: UserId,
    pub members: HashSet<UserId>,
}

pub struct Room {
    pub name: Box<str>,
    pub subscribers: Vec<Token>,
    pub replaying: Vec<Token>,
    /// Connections per user in the room: presence changes on 0 ↔ 1.
    /// Ordered so `online_users` lists are stable. A count of 0 is a user
    /// *lingering*: their last connection here closed less than the
    /// presence grace ago, so they are still shown (see `presence.rs`).
    pub presence: BTreeMap<UserId, u32>,
    /// Users in the room on other nodes of a cluster, with how many nodes
    /// each is on (empty on a single node).
    pub remote: HashMap<UserId, u32>,
    /// Users in `remote` but not in `presence`: kept so `online` stays O(1).
    remote_only: usize,
    pub private: Option<Private>,
    /// Whether the room has a stored message (public rooms are listed then).
    pub has_messages: bool,
    /// Messages for this room waiting for their commit: the room stays
    /// (and keeps its id) until they are delivered.
    pub in_flight: u32,
}

impl Room {
    fn new(name: &str) -> Room {
        Room {
            name: name.into(),
            subscribers: Vec::new(),
            replaying: Vec::new(),
            presence: BTreeMap::new(),
            remote: HashMap::new(),
            remote_only: 0,
            private: None,
            has_messages: false,
            in_flight: 0,
        }
    }

    /// Distinct users with a connection in the room, on any node.
    pub fn online(&self) -> usize {
        self.presence.len() + self.remote_only
    }

    /// Whether `user` is in the room on another node.
    pub fn is_elsewhere(&self, user: UserId) -> bool {
        self.remote.contains_key(&user)
    }

    /// Every user shown in the room, each once, in no particular order.
    pub fn shown(&self) -> impl Iterator<Item = UserId> + '_ {
        let remote_only = self
            .remote
            .keys()
            .filter(|u| !self.presence.contains_key(u));
        self.presence.keys().chain(remote_only).copied()
    }

    /// Another node has `user` in the room. Returns true when they were not
    /// shown here before (the room's connections are told `join`).
    pub fn enter_remote(&mut self, user: UserId) -> bool {
        let n = self.remote.entry(user).or_insert(0);
        *n += 1;
        if *n == 1 && !self.presence.contains_key(&user) {
            self.remote_only += 1;
            return true;
        }
        false
    }

    /// Another node no longer has `user` in the room. Returns true when they
    /// are no longer shown at all (the room is told `leave`).
    pub fn leave_remote(&mut self, user: UserId) -> bool {
        let Some(n) = self.remote.get_mut(&user) else {
            return false;
        };
        *n -= 1;
        if *n > 0 {
            return false;
        }
        self.remote.remove(&user);
        if self.presence.contains_key(&user) {
            return false;
        }
        self.remote_only -= 1;
        true
    }

    /// Bookkeeping when `user` appears in or vanishes from `presence`.
    fn presence_changed(&mut self, user: UserId, added: bool) {
        if self.remote.contains_key(&user) {
            if added {
                self.remote_only -= 1;
            } else {
                self.remote_only += 1;
            }
        }
    }

    /// Whether `user` may join or read the room.
    pub fn admits(&self, user: UserId) -> bool {
        self.private
            .as_ref()
            .is_none_or(|p| p.members.contains(&user))
    }

    /// Adds a connection. Returns true when the user was not shown in the
    /// room (not even lingering): the others are told `join`.
    pub fn subscribe(&mut self, token: Token, user: UserId, replaying: bool) -> bool {
        if replaying {
            self.replaying.push(token);
        } else {
            self.subscribers.push(token);
        }
        match self.presence.get_mut(&user) {
            Some(n) => {
                *n += 1;
                false
            }
            None => {
                self.presence.insert(user, 1);
                self.presence_changed(user, true);
                true
            }
        }
    }

    /// Moves a connection from `replaying` to `subscribers`.
    pub fn finish_replay(&mut self, token: Token) {
        if let Some(i) = self.replaying.iter().position(|t| *t == token) {
            self.replaying.swap_remove(i);
            self.subscribers.push(token);
        }
    }

    /// Removes a connection. Returns `Some(true)` when it was the user's last
    /// in the room (the user is no longer shown, unless `linger`: then they
    /// stay at a count of 0 until [`Room::end_linger`]), `None` when it was
    /// not subscribed.
    pub fn unsubscribe(&mut self, token: Token, user: UserId, linger: bool) -> Option<bool> {
        let list = if self.subscribers.contains(&token) {
            &mut self.subscribers
        } else {
            &mut self.replaying
        };
        let i = list.iter().position(|t| *t == token)?;
        list.swap_remove(i);
        let n = self.presence.get_mut(&user)?;
        *n -= 1;
        if *n == 0 {
            if !linger {
                self.presence.remove(&user);
                self.presence_changed(user, false);
            }
            return Some(true);
        }
        Some(false)
    }

    /// A lingering user's grace is over: true when they were still lingering
    /// (not back), and are no longer shown.
    pub fn end_linger(&mut self, user: UserId) -> bool {
        if self.presence.get(&user) == Some(&0) {
            self.presence.remove(&user);
            self.presence_changed(user, false);
            return true;
        }
        false
    }

    /// A public room with no messages and nobody in it is forgotten.
    fn is_disposable(&self) -> bool {
        self.private.is_none()
            && !self.has_messages
            && self.in_flight == 0
            && self.subscribers.is_empty()
            && self.replaying.is_empty()
            && self.presence.is_empty()
            && self.remote.is_empty()
    }
}

/// Every room the server knows: private rooms, public rooms with messages,
/// and public rooms somebody is in.
#[derive(Default)]
pub struct Rooms {
    slots: slab::Slab<Room>,
    by_name: HashMap<Box<str>, RoomId>,
}

impl Rooms {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn id(&self, name: &str) -> Option<RoomId> {
        self.by_name.get(name).copied()
    }

    pub fn get(&self, id: RoomId) -> &Room {
        &self.slots[id]
    }

    pub fn get_mut(&mut self, id: RoomId) -> &mut Room {
        &mut self.slots[id]
    }

    /// The room called `name`, created (public, empty) if unknown.
    pub fn open(&mut self, name: &str) -> RoomId {
        if let Some(id) = self.id(name) {
            return id;
        }
        let id = self.slots.insert(Room::new(name));
        self.by_name.insert(name.into(), id);
        id
    }

    /// Drops the room if nothing keeps it; call after an unsubscribe.
    pub fn collect(&mut self, id: RoomId) {
        if self.slots.get(id).is_some_and(Room::is_disposable) {
            let room = self.slots.remove(id);
            self.by_name.remove(&room.name);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (RoomId, &Room)> {
        self.slots.iter()
    }
}

/// What a client is told when a room name breaks the rule below.
pub const ROOM_NAME_RULE: &str = "room names are 1-64 characters of a-z, 0-9, '_' and '-'";

/// Room names: 1-64 of `[a-z0-9_-]`.
pub fn valid_room_name(name: &str) -> bool {
    (1..=MAX_ROOM_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Presence changes only on a user's first and last connection.
    #[test]
    fn presence_counts_connections_per_user() {
        let mut r = Room::new("general");
        assert!(r.subscribe(Token(1), 7, false));
        assert!(!r.subscribe(Token(2), 7, false));
        assert!(r.subscribe(Token(3), 8, true));
        assert_eq!(r.online(), 2);
        assert_eq!(r.unsubscribe(Token(1), 7, false), Some(false));
        assert_eq!(
            r.unsubscribe(Token(1), 7, false),
            None,
            "not subscribed twice"
        );
        assert_eq!(r.unsubscribe(Token(2), 7, false), Some(true));
        r.finish_replay(Token(3));
        assert_eq!(r.subscribers, vec![Token(3)]);
        assert!(r.replaying.is_empty());
    }

    /// Empty public rooms without messages disappear; others stay.
    #[test]
    fn collects_disposable_rooms() {
        let mut rooms = Rooms::default();
        let a = rooms.open("a");
        let b = rooms.open("b");
        rooms.get_mut(b).has_messages = true;
        rooms.collect(a);
        rooms.collect(b);
        assert_eq!(rooms.id("a"), None);
        assert_eq!(rooms.id("b"), Some(b));
    }

    /// Private rooms admit members only.
    #[test]
    fn private_rooms_admit_members() {
        let mut r = Room::new("ops");
        assert!(r.admits(1));
        r.private = Some(Private {
            owner: 1,
            members: [1, 2].into(),
        });
        assert!(r.admits(2) && !r.admits(3));
    }

    /// Names follow the contract's alphabet and length.
    #[test]
    fn validates_names() {
        assert!(valid_room_name("general") && valid_room_name("a_b-9"));
        assert!(!valid_room_name("") && !valid_room_name("General") && !valid_room_name("a b"));
        assert!(valid_room_name(&"x".repeat(64)) && !valid_room_name(&"x".repeat(65)));
    }
}
