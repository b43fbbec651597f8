//! The rooms part: every room this node knows, who is in each, private
//! rooms and their members, which rooms are archived, and the per-user
//! quotas on making rooms. Pure bookkeeping: no sockets, no frames.
//!
//! A room's subscribers are the connections that receive its live frames,
//! in a `Vec` because fan-out iterates it for every message and a `Vec` is
//! the fastest thing to iterate; removal is a linear scan, paid on leave,
//! which is rare next to messages. Connections whose `join … since` replay
//! is still being read from storage wait in `replaying` instead, so live
//! frames can be held for them and delivered after the replay, in order.

use std::collections::{BTreeMap, HashMap, HashSet};

use mio::Token;

use crate::config::{MAX_PRIVATE_ROOMS_PER_USER, MAX_PUBLIC_ROOMS_PER_USER};
use crate::store::{PrivateRoomRow, Snapshot, UserId};

/// Index of a room in [`Rooms`]; stable while the room exists.
pub type RoomId = usize;

/// A private room's owner and members (persistent, unlike subscriptions).
pub struct Private {
    owner: UserId,
    members: HashSet<UserId>,
}

impl Private {
    pub fn owner(&self) -> UserId {
        self.owner
    }

    pub fn is_member(&self, user: UserId) -> bool {
        self.members.contains(&user)
    }

    pub fn members(&self) -> impl Iterator<Item = UserId> + '_ {
        self.members.iter().copied()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }
}

pub struct Room {
    name: Box<str>,
    subscribers: Vec<Token>,
    replaying: Vec<Token>,
    /// Connections per user in the room: presence changes on 0 ↔ 1.
    /// Ordered so `online_users` lists are stable. A count of 0 is a user
    /// *lingering*: their last connection here closed less than the
    /// presence grace ago, so they are still shown (see `presence.rs`).
    presence: BTreeMap<UserId, u32>,
    /// Users in the room on other nodes of a cluster, with how many nodes
    /// each is on (empty on a single node).
    remote: HashMap<UserId, u32>,
    /// Users in `remote` but not in `presence`: kept so `online` stays O(1).
    remote_only: usize,
    private: Option<Private>,
    /// Whether the room has a stored message (public rooms are listed then).
    has_messages: bool,
    /// Messages for this room waiting for their commit: the room stays
    /// (and keeps its id) until they are delivered.
    in_flight: u32,
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

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The connections that receive the room's live frames.
    pub fn subscribers(&self) -> &[Token] {
        &self.subscribers
    }

    /// The connections whose replay is being read: live frames are held for them.
    pub fn replaying(&self) -> &[Token] {
        &self.replaying
    }

    /// Whether a connection here receives the room's messages (live or held).
    pub fn has_listeners(&self) -> bool {
        !self.subscribers.is_empty() || !self.replaying.is_empty()
    }

    /// The users with a connection in the room on this node (lingering
    /// ones included), in id order.
    pub fn present(&self) -> impl Iterator<Item = UserId> + '_ {
        self.presence.keys().copied()
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

    /// The owner and members, for a private room.
    pub fn private(&self) -> Option<&Private> {
        self.private.as_ref()
    }

    /// Whether `user` may join or read the room.
    pub fn admits(&self, user: UserId) -> bool {
        self.private.as_ref().is_none_or(|p| p.is_member(user))
    }

    /// The room becomes (or is confirmed) private, with these members.
    fn make_private(&mut self, owner: UserId, members: impl IntoIterator<Item = UserId>) {
        self.private = Some(Private {
            owner,
            members: members.into_iter().collect(),
        });
    }

    /// Adds a member to a private room; false when it is not private.
    pub fn add_member(&mut self, user: UserId) -> bool {
        let Some(p) = &mut self.private else {
            return false;
        };
        p.members.insert(user);
        true
    }

    /// Removes a member from a private room; false when it is not private.
    pub fn remove_member(&mut self, user: UserId) -> bool {
        let Some(p) = &mut self.private else {
            return false;
        };
        p.members.remove(&user);
        true
    }

    /// Whether the room has a stored message.
    pub fn has_messages(&self) -> bool {
        self.has_messages
    }

    /// A message of the room is stored (here, or on another node).
    pub fn mark_has_messages(&mut self) {
        self.has_messages = true;
    }

    /// A public room nobody has written in yet: its first message opens it.
    pub fn is_unopened(&self) -> bool {
        self.private.is_none() && !self.has_messages
    }

    /// Messages for the room waiting for their commit.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// A message for the room went to storage.
    pub fn message_sent(&mut self) {
        self.in_flight += 1;
    }

    /// Storage answered for one: `stored` when it is durable.
    pub fn message_settled(&mut self, stored: bool) {
        self.in_flight -= 1;
        self.has_messages |= stored;
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

    /// Whether `token` is waiting for its replay.
    pub fn is_replaying(&self, token: Token) -> bool {
        self.replaying.contains(&token)
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

/// Rooms one user made, against [`MAX_PUBLIC_ROOMS_PER_USER`] and
/// [`MAX_PRIVATE_ROOMS_PER_USER`]. Private rooms count from the moment
/// their row is asked for (a failed write gives the slot back), public
/// rooms from their first message.
#[derive(Default, Clone, Copy)]
struct Created {
    public: u32,
    private: u32,
}

/// Every room the server knows: private rooms, public rooms with messages,
/// and public rooms somebody is in; and who made how many.
#[derive(Default)]
pub struct Rooms {
    slots: slab::Slab<Room>,
    by_name: HashMap<Box<str>, RoomId>,
    /// Private room names being created (their row is being stored).
    creating: HashSet<Box<str>>,
    /// Rooms each user opened or owns, against the per-user quotas.
    created: HashMap<UserId, Created>,
    /// Archived rooms, by name: kept apart from the rooms in memory, so a
    /// room this node holds no slot for yet is still read-only when it
    /// takes one.
    archived: HashSet<Box<str>>,
}

impl Rooms {
    /// The rooms storage holds: public ones with messages (counted against
    /// their creators), private ones with their members, and rooms whose
    /// row was lost, as private rooms nobody may read.
    pub fn load(snapshot: &Snapshot) -> Rooms {
        let mut rooms = Rooms::default();
        for (name, creator) in &snapshot.public_rooms {
            let id = rooms.open(name);
            rooms.slots[id].has_messages = true;
            if let Some(user) = creator {
                rooms.created.entry(*user).or_default().public += 1;
            }
        }
        for name in &snapshot.orphan_rooms {
            let id = rooms.open(name);
            rooms.slots[id].has_messages = true;
            rooms.slots[id].make_private(0, []);
        }
        for row in &snapshot.private_rooms {
            rooms.count_private(row.owner);
            rooms.install_private(row);
        }
        rooms.archived = snapshot
            .archived_rooms
            .iter()
            .map(|n| n.as_str().into())
            .collect();
        rooms
    }

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

    /// A stored private room, in memory: made here, made on another node,
    /// or loaded. Its owner's count is [`Rooms::count_private`]'s business.
    pub fn install_private(&mut self, row: &PrivateRoomRow) -> RoomId {
        let id = self.open(&row.name);
        self.slots[id].make_private(row.owner, row.members.iter().copied());
        id
    }

    /// Whether room `name` is archived: read-only.
    pub fn is_archived(&self, name: &str) -> bool {
        self.archived.contains(name)
    }

    /// Room `name` is archived (or open again); true when that changed.
    pub fn set_archived(&mut self, name: &str, archived: bool) -> bool {
        if archived {
            self.archived.insert(name.into())
        } else {
            self.archived.remove(name)
        }
    }

    /// Room `id` was deleted (its connections here have left it): its
    /// members, messages and archive go, and a private room gives its
    /// owner's slot back. It stays in memory, as a public room nobody has
    /// written in, only while something still holds its id (a message
    /// waiting for its commit, users of other nodes not gone yet); then
    /// its name is free.
    pub fn forget(&mut self, id: RoomId) {
        let room = &mut self.slots[id];
        if let Some(p) = room.private.take()
            && let Some(c) = self.created.get_mut(&p.owner)
        {
            c.private = c.private.saturating_sub(1);
        }
        room.has_messages = false;
        let name = room.name.clone();
        self.archived.remove(&name);
        self.collect(id);
    }

    // ---- quotas ------------------------------------------------------------

    /// Whether `user` may open one more public room.
    pub fn may_open_public(&self, user: UserId) -> bool {
        self.created.get(&user).map_or(0, |c| c.public) < MAX_PUBLIC_ROOMS_PER_USER
    }

    /// `user` opened a public room (its first message went to storage).
    pub fn opened_public(&mut self, user: UserId) {
        self.created.entry(user).or_default().public += 1;
    }

    /// Whether `user` may own one more private room.
    pub fn may_own_private(&self, user: UserId) -> bool {
        self.created.get(&user).map_or(0, |c| c.private) < MAX_PRIVATE_ROOMS_PER_USER
    }

    /// A private room owned by `owner` exists, or is being stored.
    pub fn count_private(&mut self, owner: UserId) {
        self.created.entry(owner).or_default().private += 1;
    }

    /// A private room's row is being stored: its name is taken meanwhile,
    /// and it counts against its owner.
    pub fn begin_private(&mut self, name: &str, owner: UserId) {
        self.creating.insert(name.into());
        self.count_private(owner);
    }

    /// Storage answered for a private room's row: the name is no longer
    /// reserved (the room exists now, or not at all), and a row that was
    /// not stored gives its owner's slot back.
    pub fn end_private(&mut self, name: &str, owner: UserId, stored: bool) {
        self.creating.remove(name);
        if !stored && let Some(c) = self.created.get_mut(&owner) {
            c.private -= 1;
        }
    }

    /// Whether a private room called `name` is being stored.
    pub fn is_being_created(&self, name: &str) -> bool {
        self.creating.contains(name)
    }
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
        assert_eq!(r.subscribers(), [Token(3)]);
        assert!(r.replaying().is_empty());
    }

    /// Empty public rooms without messages disappear; others stay.
    #[test]
    fn collects_disposable_rooms() {
        let mut rooms = Rooms::default();
        let a = rooms.open("a");
        let b = rooms.open("b");
        rooms.get_mut(b).mark_has_messages();
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
        r.make_private(1, [1, 2]);
        assert!(r.admits(2) && !r.admits(3));
        assert!(r.remove_member(2) && !r.admits(2));
    }

    /// A deleted room goes once nothing holds it, with its archive and its
    /// owner's slot; one a message still waits for stays, opened by nobody.
    #[test]
    fn forgets_deleted_rooms() {
        let mut rooms = Rooms::default();
        let row = PrivateRoomRow {
            name: "ops".into(),
            owner: 1,
            members: vec![1, 2],
        };
        rooms.count_private(1);
        let ops = rooms.install_private(&row);
        assert!(rooms.set_archived("ops", true) && !rooms.set_archived("ops", true));
        let busy = rooms.open("busy");
        rooms.get_mut(busy).mark_has_messages();
        rooms.get_mut(busy).message_sent();
        rooms.forget(ops);
        rooms.forget(busy);
        assert_eq!(rooms.id("ops"), None, "gone, name free");
        assert!(!rooms.is_archived("ops"));
        assert_eq!(rooms.created[&1].private, 0, "the owner's slot is back");
        assert!(
            rooms.get(busy).is_unopened(),
            "kept for its message, emptied"
        );
        rooms.get_mut(busy).message_settled(false);
        rooms.collect(busy);
        assert_eq!(rooms.id("busy"), None);
    }

    /// A private room counts against its owner from the moment its row is
    /// asked for; a row that fails gives the slot back and frees the name.
    #[test]
    fn private_quota_counts_from_the_request() {
        let mut rooms = Rooms::default();
        for i in 0..MAX_PRIVATE_ROOMS_PER_USER {
            assert!(rooms.may_own_private(1));
            rooms.begin_private(&format!("r{i}"), 1);
        }
        assert!(!rooms.may_own_private(1) && rooms.may_own_private(2));
        assert!(rooms.is_being_created("r0"));
        rooms.end_private("r0", 1, false);
        assert!(rooms.may_own_private(1) && !rooms.is_being_created("r0"));
    }
}
