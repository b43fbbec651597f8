//! The hub: rooms, sessions, presence, message ids, idempotent retries and
//! pending acks — the Go chat tutorials' "Hub goroutine", minus the goroutine.
//! It is plain data owned by the loop thread; every client frame is handled to
//! completion in one call, so there is nothing to lock and no ordering to
//! reason about beyond "in the order the loop read them".
//!
//! The hub owns its behaviour and reaches everything else through a narrow
//! [`Ctx`]: the user directory, somewhere to send storage requests
//! ([`Storage`]), and the door to the connections ([`Outbox`]). It never sees a
//! socket, a thread or an HTTP status, so its unit tests run it as pure logic
//! with a recording outbox and a recording store.
//!
//! - `frames`: each client frame of the contract, from parse to publish; acks;
//! - `fanout`: the one way out — `publish(Topic, frame)` — and the bus seam;
//! - `presence`: sessions opening and closing, `join`/`leave`, replays, status;
//! - `private`: private rooms and their members;
//! - `changes`: `edit`, `delete` and `react` — storage checks and applies
//!   them, the hub publishes the result;
//! - `mentions`: who a message's `@name`s notify;
//! - `reads`: the budgets storage reads are reserved against, and the frames
//!   that wait for them;
//! - `rooms`: who is in which room (pure bookkeeping);
//! - `rate`: the per-connection token bucket;
//! - `cluster`: this hub as one node of many — order by sequence, catch-up
//!   from storage, presence per peer with beats, notes for users and rooms;
//! - `wire`: the notes nodes send each other, and their byte encoding.
//!
//! # Node-local state, and what a cluster does about it
//!
//! Everything below lives in this process. On one node it is the whole
//! truth; in a cluster (`--redis`, see `cluster.rs`) each item is kept right
//! as follows.
//!
//! | state | here | in a cluster |
//! |---|---|---|
//! | message ids (`last_msg_id`, `last_key`) | the loop's key is the id (SQLite) | PostgreSQL assigns the id and a per-room `seq` in the append's transaction; the key only pairs the reply |
//! | delivery order | commit order of the one writer | each node delivers a room in `seq` order, waiting for an early message's predecessors and reading a lasting gap back (`Catchup`) |
//! | presence (`online`, `Room::presence`) | connections per user, per room | plus each peer's users and rooms (`Room::remote`), from its notes and `State`; a peer silent for `PEER_TIMEOUT_MS` is dropped |
//! | client-id window (`client_ids`) | the newest `CLIENT_ID_WINDOW` ids | the same, and a retry on another node is caught by the database's unique index (`MessageExists`) |
//! | users (`Directory`) | loaded at start, added by signups here | plus `User` notes, and a `Resync` after a bus outage |
//! | private membership (`Room::private`) | loaded at start, changed by this node | plus `RoomMade`/`Member` notes and the `Resync` |
//! | unread hints (`unread_sources`) | skip the query for users with nothing to count | not trusted: every connect asks storage |
//! | subscriptions (`Room::subscribers`, sessions) | this node's connections | stay local: each node delivers to its own sockets |
//! | pending acks (`acks`) | messages waiting for their commit | stay local: the node that took the message acks it |

mod changes;
mod cluster;
mod fanout;
mod frames;
mod mentions;
mod presence;
mod private;
pub mod rate;
mod reads;
pub mod rooms;
mod wire;

use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;

use mio::Token;

pub use fanout::{Bus, BusEvent, LocalOnly};

use crate::config::{CLIENT_ID_WINDOW, CLIENT_IDS_PER_USER, PRESENCE_GRACE};
use crate::outbox::ConnRef;
use crate::store::{
    Desk, MsgId, PrivateRoomRow, Reply, Seq, Snapshot, Storage, Target, Ticket, UserId,
};
use crate::users::Directory;
use crate::ws::proto::Encoder;
use rate::TokenBucket;
use rooms::{Private, RoomId, Rooms};

/// What a hub call may touch besides the hub itself.
pub struct Ctx<'a, O> {
    pub users: &'a mut Directory,
    pub store: &'a mut dyn Storage,
    pub out: &'a mut O,
}

/// A WebSocket connection's chat state.
pub struct Session {
    pub conn: ConnRef,
    pub user: UserId,
    /// The room named in `/ws/room/{name}`: plain-text frames go there.
    /// Shared so handling a frame can hold it without copying the name.
    pub url_room: Option<Rc<str>>,
    /// Rooms this connection is joined to (live or still replaying).
    pub rooms: Vec<RoomId>,
    pub bucket: TokenBucket,
    /// Live frames held while a `since` replay is read from storage, with
    /// the message id of those that are chat messages.
    pub held: Vec<(RoomId, Option<MsgId>, Rc<[u8]>)>,
    /// More frames arrived during a replay than could be held.
    pub held_overflow: bool,
}

/// Who gets a message once it is stored.
#[derive(Debug, Clone, Copy)]
pub enum Delivery {
    /// Everyone in the room but the sending connection.
    Room(RoomId),
    /// Every connection of `peer`, and the sender's other connections.
    Private { peer: UserId },
}

/// A message waiting for its commit. Nobody sees it before: its frame is
/// encoded, published, and its `ack` sent, only once storage says it is
/// durable, so a write that fails shows nothing that is not in the history.
/// The frame waits for the commit because the id it carries may come from
/// storage (PostgreSQL numbers messages for the whole cluster).
pub struct PendingAck {
    /// The sender, then any connection that resent the same `client_id`
    /// before the commit.
    pub waiters: Vec<(ConnRef, Option<Box<str>>)>,
    pub timestamp_ms: i64,
    pub from: UserId,
    pub delivery: Delivery,
    /// The checked content, encoded once at the commit.
    pub content: Box<str>,
    /// The message this one answers (checked by storage).
    pub reply_to: Option<MsgId>,
    /// Who gets a `mention` frame once it is stored (`mentions.rs`).
    pub mentions: Vec<UserId>,
}

impl PendingAck {
    /// The sender's `client_id` (the first waiter's), bound to the message
    /// in the client-id window once it is committed.
    pub fn client_id(&self) -> Option<&str> {
        self.waiters.first().and_then(|(_, cid)| cid.as_deref())
    }
}

impl Stored {
    /// The message a storage reply answers, and what it says; `None` for
    /// replies that are not about a message.
    pub fn of(reply: &Reply) -> Option<(MsgId, Stored)> {
        Some(match *reply {
            Reply::MessageStored { key, id, seq } => (key, Stored::Yes { id, seq }),
            Reply::MessageExists {
                key,
                existing,
                timestamp_ms,
            } => (
                key,
                Stored::Already {
                    id: existing,
                    timestamp_ms,
                },
            ),
            Reply::MessageFailed { key, transient } => (key, Stored::No { transient }),
            Reply::MessageRefused { key } => (key, Stored::Refused),
            _ => return None,
        })
    }
}

/// What storage said of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// It is durable, as message `id`, `seq`th of its target.
    Yes { id: MsgId, seq: Seq },
    /// The sender's `client_id` was already stored with message `id`: the
    /// retry is answered with that message, and nothing is delivered again.
    Already { id: MsgId, timestamp_ms: i64 },
    /// It could not be stored; `transient` when the database was
    /// unreachable (the sender is told `busy`).
    No { transient: bool },
    /// Storage refused it: its `reply_to` is not a message of its room or
    /// conversation (the sender is told `invalid_input`).
    Refused,
}

/// The newest client ids, for idempotent retries: at most
/// [`CLIENT_IDS_PER_USER`] per user and [`CLIENT_ID_WINDOW`] in all, oldest
/// evicted first.
///
/// `order` lists, for each insert, only who made it. Evicting for the global
/// bound pops its front user and drops that user's oldest id. When a user's
/// own bound already dropped that id, the pop takes the user's next one a
/// little early: only a user who sent more than their share pays for it.
#[derive(Default)]
pub struct ClientIds {
    by_user: HashMap<UserId, UserIds>,
    order: VecDeque<UserId>,
}

/// One user's remembered ids, and their order.
#[derive(Default)]
struct UserIds {
    ids: HashMap<Box<str>, (MsgId, i64)>,
    order: VecDeque<Box<str>>,
}

impl UserIds {
    fn evict_oldest(&mut self) {
        if let Some(k) = self.order.pop_front() {
            self.ids.remove(&k);
        }
    }
}

impl ClientIds {
    pub fn get(&self, user: UserId, client_id: &str) -> Option<(MsgId, i64)> {
        self.by_user.get(&user)?.ids.get(client_id).copied()
    }

    pub fn insert(&mut self, user: UserId, client_id: &str, id: MsgId, ts: i64) {
        let mine = self.by_user.entry(user).or_default();
        if mine.ids.insert(client_id.into(), (id, ts)).is_none() {
            mine.order.push_back(client_id.into());
        }
        if mine.order.len() > CLIENT_IDS_PER_USER {
            mine.evict_oldest();
        }
        self.order.push_back(user);
        if self.order.len() > CLIENT_ID_WINDOW
            && let Some(u) = self.order.pop_front()
            && let Some(theirs) = self.by_user.get_mut(&u)
        {
            theirs.evict_oldest();
            if theirs.ids.is_empty() {
                self.by_user.remove(&u);
            }
        }
    }

    /// Ids remembered, in all.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_user.values().map(|u| u.ids.len()).sum()
    }
}

/// Messages waiting for their commit, in key order. Storage commits in the
/// order the loop submitted, which is key order, so the answer for the oldest
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

/// Rooms one user made, against [`MAX_PUBLIC_ROOMS_PER_USER`](crate::config::MAX_PUBLIC_ROOMS_PER_USER) and
/// [`MAX_PRIVATE_ROOMS_PER_USER`](crate::config::MAX_PRIVATE_ROOMS_PER_USER).
/// Private rooms count from the moment their row is asked for (a failed
/// write gives the slot back), public rooms from their first message.
#[derive(Default, Clone, Copy)]
pub struct Created {
    pub public: u32,
    pub private: u32,
}

/// A storage request the hub is waiting for.
enum Wait {
    /// `create_room`: the row is being stored; the room exists only after.
    CreateRoom { conn: ConnRef, row: PrivateRoomRow },
    /// `add_member` / `remove_member`: applied in memory only after it is stored.
    Membership {
        conn: ConnRef,
        room: Box<str>,
        user: UserId,
        add: bool,
    },
    /// A `history` frame; `reserved` bytes are held for its reply.
    History {
        conn: ConnRef,
        target: Target,
        reserved: usize,
    },
    /// `join` with `since`.
    Replay {
        conn: ConnRef,
        room: Box<str>,
        reserved: usize,
    },
    /// The `unread` frame after connect.
    Unread { conn: ConnRef },
    /// An `edit`, `delete` or `react` is being applied (`changes.rs`).
    Change { conn: ConnRef, kind: changes::Kind },
    /// A cluster node reads back messages it missed (`cluster.rs`).
    Catchup { key: wire::TargetKey },
    /// A cluster node reads everything back after a bus outage.
    Resync,
    /// A room this node has not heard of: is it private? Asked for a `join`
    /// (`joiner`: the connection and its `since`), or for a note naming it
    /// (`has_messages` when the note was a message).
    RoomLookup {
        room: Box<str>,
        joiner: Option<(ConnRef, Option<u64>)>,
        has_messages: bool,
    },
}

/// Why a user may not read a room.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// The name breaks the room-name rule.
    BadName,
    /// A private room the user is not a member of.
    Private,
}

pub struct Hub {
    rooms: Rooms,
    /// Indexed by token: slab keys are dense, so a Vec beats hashing.
    sessions: Vec<Option<Session>>,
    /// Each online user's WebSocket connections.
    online: HashMap<UserId, Vec<Token>>,
    /// Sessions in `sessions` (the sum of `online`'s lists, kept up to date).
    sessions_open: usize,
    /// The newest message id this node knows of (its own commits, and in a
    /// cluster what the bus and catch-ups brought).
    last_msg_id: MsgId,
    /// The last key handed to a message for its storage reply (the message
    /// id itself on a backend that takes the loop's ids: SQLite).
    last_key: MsgId,
    client_ids: ClientIds,
    /// Client ids of messages not yet committed, per user: a resend joins
    /// the first copy's waiters; a failed write forgets them, so the retry is
    /// stored, never acked unstored.
    uncommitted: HashMap<(UserId, u64), MsgId>,
    acks: PendingAcks,
    /// Private room names being created (their row is being stored).
    creating: HashSet<Box<str>>,
    /// Rooms each user opened or owns, against the per-user quotas.
    created: HashMap<UserId, Created>,
    /// Serializes server frames; its scratch buffer is reused.
    encoder: Encoder,
    /// Chat frames per second per connection (`--rate-limit`); 0 = off.
    rate_limit: u32,
    /// Set at shutdown: sessions end without presence broadcasts, which would
    /// otherwise cost every remaining connection a frame per departing user
    /// (quadratic in the number of users, for frames nobody will read).
    quiet: bool,
    /// Storage reads in flight, by ticket.
    waiting: HashMap<Ticket, Wait>,
    next_ticket: u64,
    /// Frames to and from other nodes ([`LocalOnly`] on a single node).
    bus: Box<dyn Bus>,
    /// The other nodes, when this one is in a cluster (`cluster.rs`).
    cluster: Option<cluster::Cluster>,
    /// How long a user whose last connection closed stays shown (online,
    /// and in their rooms) before `offline` and `leave` go out; 0 = at once.
    presence_grace_ms: i64,
    /// Users (and rooms, by name) in their grace, in deadline order:
    /// `(until_ms, user, None)` for going offline, `Some(room)` for leaving.
    /// Entries whose user came back are skipped when they come due.
    lingering: VecDeque<(i64, UserId, Option<Box<str>>)>,
    /// Reply bytes reserved for storage reads in flight, server-wide.
    read_bytes: usize,
    /// The read state of connections with reads in flight or a frame
    /// waiting, and only of those: most sessions never read, so the state
    /// is not a field of every `Session`.
    reading: HashMap<ConnRef, reads::Reading>,
    /// Sessions with a deferred frame, oldest first (see `reads.rs`).
    read_waiters: VecDeque<Token>,
    /// The reservation made for the frame being handled, until a read
    /// claims it (what is left unclaimed is released after the frame).
    unclaimed: usize,
}

impl Hub {
    /// The hub as storage left it: ids continue, rooms and memberships and
    /// the client-id window come back.
    pub fn new(snapshot: &Snapshot, rate_limit: u32, bus: Box<dyn Bus>) -> Hub {
        let mut hub = Hub {
            rooms: Rooms::default(),
            sessions: Vec::new(),
            online: HashMap::new(),
            sessions_open: 0,
            last_msg_id: snapshot.max_message_id,
            last_key: snapshot.max_message_id,
            client_ids: ClientIds::default(),
            uncommitted: HashMap::new(),
            acks: PendingAcks::default(),
            creating: HashSet::new(),
            created: HashMap::new(),
            encoder: Encoder::default(),
            rate_limit,
            quiet: false,
            waiting: HashMap::new(),
            next_ticket: 0,
            bus,
            cluster: None,
            presence_grace_ms: PRESENCE_GRACE.as_millis() as i64,
            lingering: VecDeque::new(),
            read_bytes: 0,
            reading: HashMap::new(),
            read_waiters: VecDeque::new(),
            unclaimed: 0,
        };
        for (user, client_id, id, ts) in &snapshot.recent_client_ids {
            hub.client_ids.insert(*user, client_id, *id, *ts);
        }
        for (name, creator) in &snapshot.public_rooms {
            let id = hub.rooms.open(name);
            hub.rooms.get_mut(id).has_messages = true;
            if let Some(user) = creator {
                hub.created.entry(*user).or_default().public += 1;
            }
        }
        for name in &snapshot.orphan_rooms {
            let id = hub.rooms.open(name);
            hub.rooms.get_mut(id).has_messages = true;
            hub.rooms.get_mut(id).private = Some(Private {
                owner: 0,
                members: HashSet::new(),
            });
        }
        for row in &snapshot.private_rooms {
            hub.created.entry(row.owner).or_default().private += 1;
            let id = hub.rooms.open(&row.name);
            hub.rooms.get_mut(id).private = Some(Private {
                owner: row.owner,
                members: row.members.iter().copied().collect(),
            });
        }
        hub
    }

    pub(crate) fn session(&self, token: Token) -> Option<&Session> {
        self.sessions.get(token.0)?.as_ref()
    }

    fn session_mut(&mut self, token: Token) -> Option<&mut Session> {
        self.sessions.get_mut(token.0)?.as_mut()
    }

    /// The next message key: increasing, never reused, assigned without
    /// storage. SQLite stores it as the message id (one node numbers its
    /// own messages, so fan-out never waits for the database to pick one);
    /// PostgreSQL picks the id for the whole cluster and the key only pairs
    /// its reply with the message.
    fn next_key(&mut self) -> MsgId {
        self.last_key += 1;
        self.last_key
    }

    /// Parks `wait` and returns the ticket its answer will carry.
    fn park(&mut self, wait: Wait) -> Ticket {
        self.next_ticket += 1;
        let ticket = Ticket {
            desk: Desk::Hub,
            seq: self.next_ticket,
        };
        self.waiting.insert(ticket, wait);
        ticket
    }

    /// How long a departed user stays shown (`--presence-grace`).
    pub fn set_presence_grace(&mut self, grace: std::time::Duration) {
        self.presence_grace_ms = grace.as_millis() as i64;
    }

    /// Shutdown: sessions end without presence broadcasts from now on.
    pub fn go_quiet(&mut self) {
        self.quiet = true;
    }

    // ---- what the HTTP routes may ask -------------------------------------

    /// Whether `user` may read room `name`: `Ok(true)` when it exists,
    /// `Ok(false)` when nobody ever used it (no history to read).
    pub fn may_read(&self, user: UserId, name: &str) -> Result<bool, Denied> {
        if !rooms::valid_room_name(name) {
            return Err(Denied::BadName);
        }
        match self.rooms.id(name).map(|id| self.rooms.get(id)) {
            None => Ok(false),
            Some(r) if !r.admits(user) => Err(Denied::Private),
            Some(_) => Ok(true),
        }
    }

    /// Every room the hub knows.
    pub fn rooms(&self) -> impl Iterator<Item = &rooms::Room> {
        self.rooms.iter().map(|(_, r)| r)
    }

    /// Online here or, in a cluster, on another node.
    pub fn is_online(&self, user: UserId) -> bool {
        self.online.contains_key(&user) || self.shown_elsewhere(user)
    }

    /// Distinct users with a WebSocket open on this node.
    pub fn users_online(&self) -> usize {
        self.online.len()
    }

    /// WebSocket chat sessions open (kept as a count: `/metrics` must not
    /// cost a walk over every user).
    pub fn sessions_open(&self) -> usize {
        self.sessions_open
    }

    /// `user`'s chat sessions open on this node.
    pub fn sessions_of(&self, user: UserId) -> usize {
        self.online.get(&user).map_or(0, Vec::len)
    }

    /// Rooms in memory (public and private), in O(1).
    pub fn rooms_known(&self) -> usize {
        self.rooms.len()
    }
}

#[cfg(test)]
mod tests;
