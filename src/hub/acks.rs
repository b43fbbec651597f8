//! The acks part: chat messages between their frame and their commit. Each
//! gets a key; it waits here, with whoever must be acked, until storage
//! says it is durable; its `client_id` is remembered so a retry is answered
//! with the first copy's ack instead of being stored twice.
//!
//! Nobody sees a message before its commit: its frame is encoded,
//! published, and its `ack` sent, only once storage says it is durable, so
//! a write that fails shows nothing that is not in the history. The frame
//! waits for the commit because the id it carries may come from storage
//! (PostgreSQL numbers messages for the whole cluster).

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use super::rooms::RoomId;
use crate::config::{CLIENT_ID_WINDOW, CLIENT_IDS_PER_USER};
use crate::outbox::ConnRef;
use crate::store::{Attachment, MsgId, PostRefusal, Reply, Seq, Snapshot, UserId};

/// Who gets a message once it is stored.
#[derive(Debug, Clone, Copy)]
pub enum Delivery {
    /// Everyone in the room but the sending connection.
    Room(RoomId),
    /// Every connection of `peer`, and the sender's other connections.
    Private { peer: UserId },
}

/// A message waiting for its commit.
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
    /// conversation, or an attachment is not the sender's (the sender is
    /// told `invalid_input`, and which).
    Refused(PostRefusal),
}

impl Stored {
    /// The message a storage reply answers, what it says, and the files
    /// it was stored with (taken out of the reply); `None` for replies
    /// that are not about a message.
    pub fn of(reply: &mut Reply) -> Option<(MsgId, Stored, Vec<Attachment>)> {
        Some(match reply {
            Reply::MessageStored {
                key,
                id,
                seq,
                attachments,
            } => (
                *key,
                Stored::Yes { id: *id, seq: *seq },
                std::mem::take(attachments),
            ),
            Reply::MessageExists {
                key,
                existing,
                timestamp_ms,
            } => (
                *key,
                Stored::Already {
                    id: *existing,
                    timestamp_ms: *timestamp_ms,
                },
                Vec::new(),
            ),
            Reply::MessageFailed { key, transient } => (
                *key,
                Stored::No {
                    transient: *transient,
                },
                Vec::new(),
            ),
            Reply::MessageRefused { key, why } => (*key, Stored::Refused(*why), Vec::new()),
            _ => return None,
        })
    }

    /// Whether the message is not stored (and the sender is told why).
    pub fn failed(self) -> bool {
        matches!(self, Stored::No { .. } | Stored::Refused(_))
    }
}

/// A resent `client_id`, as [`Acks::retry`] found it.
pub enum Retry {
    /// A new message: store it.
    New,
    /// Already stored as message `id`: ack it again now.
    Stored { id: MsgId, timestamp_ms: i64 },
    /// The first copy waits for its commit: the resender is acked with it.
    Waiting,
}

/// Message keys and ids, messages waiting for their commit, and the
/// client ids of those that were committed.
pub struct Acks {
    /// The newest message id this node knows of (its own commits, and in a
    /// cluster what the bus and catch-ups brought).
    newest: MsgId,
    /// The last key handed to a message for its storage reply (the message
    /// id itself on a backend that takes the loop's ids: SQLite).
    last_key: MsgId,
    pending: PendingAcks,
    client_ids: ClientIds,
    /// Client ids of messages not yet committed, per user: a resend joins
    /// the first copy's waiters; a failed write forgets them, so the retry is
    /// stored, never acked unstored.
    uncommitted: HashMap<(UserId, u64), MsgId>,
}

impl Acks {
    /// Ids continue where storage left them, and the client-id window
    /// comes back.
    pub fn load(snapshot: &Snapshot) -> Acks {
        let mut acks = Acks {
            newest: snapshot.max_message_id,
            last_key: snapshot.max_message_id,
            pending: PendingAcks::default(),
            client_ids: ClientIds::default(),
            uncommitted: HashMap::new(),
        };
        for (user, client_id, id, ts) in &snapshot.recent_client_ids {
            acks.client_ids.insert(*user, client_id, *id, *ts);
        }
        acks
    }

    /// The next message key: increasing, never reused, assigned without
    /// storage. SQLite stores it as the message id; PostgreSQL picks the id
    /// for the whole cluster and the key only pairs its reply with the
    /// message.
    pub fn next_key(&mut self) -> MsgId {
        self.last_key += 1;
        self.last_key
    }

    /// The newest message id this node knows of.
    pub fn newest(&self) -> MsgId {
        self.newest
    }

    /// A message this node learned of (committed here, or elsewhere).
    pub fn saw(&mut self, id: MsgId) {
        self.newest = self.newest.max(id);
    }

    /// Whether `client_id` was already sent by `user`, and where its first
    /// copy is. A copy still waiting for its commit takes `conn` as a
    /// waiter. An id whose write failed is forgotten, so its retry is new.
    pub fn retry(&mut self, conn: ConnRef, user: UserId, client_id: &str) -> Retry {
        if let Some((id, timestamp_ms)) = self.client_ids.get(user, client_id) {
            return Retry::Stored { id, timestamp_ms };
        }
        let key = self.uncommitted.get(&uncommitted_key(user, client_id));
        if let Some(pending) = key.and_then(|k| self.pending.get_mut(*k))
            && pending.client_id() == Some(client_id)
        {
            pending.waiters.push((conn, Some(client_id.into())));
            return Retry::Waiting;
        }
        Retry::New
    }

    /// A message went to storage under `key`: it waits for the answer.
    pub fn park(&mut self, key: MsgId, ack: PendingAck) {
        if let Some(cid) = ack.client_id() {
            self.uncommitted.insert(uncommitted_key(ack.from, cid), key);
        }
        self.pending.push(key, ack);
    }

    /// Storage answered for `key`: the message waits no more, and its
    /// `client_id` is remembered with its id unless it failed (so the retry
    /// is stored).
    pub fn settle(&mut self, key: MsgId, stored: Stored) -> Option<PendingAck> {
        let pending = self.pending.remove(key)?;
        if let Some(cid) = pending.client_id() {
            let ukey = uncommitted_key(pending.from, cid);
            // Only this message's entry: a colliding one belongs to another.
            if self.uncommitted.get(&ukey) == Some(&key) {
                self.uncommitted.remove(&ukey);
            }
        }
        let (id, ts) = match stored {
            Stored::Yes { id, .. } => (id, pending.timestamp_ms),
            Stored::Already { id, timestamp_ms } => (id, timestamp_ms),
            Stored::No { .. } | Stored::Refused(_) => return Some(pending),
        };
        if let Some(cid) = pending.client_id() {
            self.client_ids.insert(pending.from, cid, id, ts);
        }
        if let Stored::Yes { id, .. } = stored {
            self.saw(id);
        }
        Some(pending)
    }

    /// Forgets every committed client id, as if the window had moved past
    /// them (tests of what storage answers then).
    #[cfg(test)]
    pub fn forget_client_ids(&mut self) {
        self.client_ids = ClientIds::default();
    }
}

/// The key of a `client_id` not yet committed: a hash, so a resend is looked
/// up without allocating. A match is confirmed against the parked message's
/// own `client_id`; on the (harmless) collision the resend is treated as new,
/// and the database's unique index answers it with the first message.
fn uncommitted_key(user: UserId, client_id: &str) -> (UserId, u64) {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    client_id.hash(&mut h);
    (user, h.finish())
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
struct ClientIds {
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
    fn get(&self, user: UserId, client_id: &str) -> Option<(MsgId, i64)> {
        self.by_user.get(&user)?.ids.get(client_id).copied()
    }

    fn insert(&mut self, user: UserId, client_id: &str, id: MsgId, ts: i64) {
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
    fn len(&self) -> usize {
        self.by_user.values().map(|u| u.ids.len()).sum()
    }
}

/// Messages waiting for their commit, in key order. Storage commits in the
/// order the loop submitted, which is key order, so the answer for the oldest
/// is almost always at the front: a deque beats a hash map here (no hashing,
/// no tombstones), and the rare lookup by id is a binary search.
#[derive(Default)]
struct PendingAcks(VecDeque<(MsgId, PendingAck)>);

impl PendingAcks {
    /// Adds the newest message (ids only grow).
    fn push(&mut self, id: MsgId, ack: PendingAck) {
        debug_assert!(self.0.back().is_none_or(|(last, _)| *last < id));
        self.0.push_back((id, ack));
    }

    fn get_mut(&mut self, id: MsgId) -> Option<&mut PendingAck> {
        let i = self.0.binary_search_by_key(&id, |(k, _)| *k).ok()?;
        Some(&mut self.0[i].1)
    }

    fn remove(&mut self, id: MsgId) -> Option<PendingAck> {
        if self.0.front().is_some_and(|(k, _)| *k == id) {
            return self.0.pop_front().map(|(_, a)| a);
        }
        let i = self.0.binary_search_by_key(&id, |(k, _)| *k).ok()?;
        self.0.remove(i).map(|(_, a)| a)
    }
}

#[cfg(test)]
mod tests {
    use mio::Token;

    use super::*;

    const ALICE: UserId = 1;
    const BOB: UserId = 2;

    fn ack(client_id: Option<&str>) -> PendingAck {
        let conn = ConnRef {
            token: Token(1),
            serial: 1,
        };
        PendingAck {
            waiters: vec![(conn, client_id.map(Into::into))],
            timestamp_ms: 5,
            from: ALICE,
            delivery: Delivery::Private { peer: BOB },
            content: "".into(),
            reply_to: None,
            mentions: Vec::new(),
        }
    }

    /// Pending acks are found by id whether answered in order or not.
    #[test]
    fn pending_acks_by_id() {
        let mut acks = PendingAcks::default();
        for id in [3, 5, 9] {
            acks.push(id, ack(None));
        }
        assert!(acks.get_mut(5).is_some() && acks.get_mut(4).is_none());
        assert!(acks.remove(5).is_some(), "out of order");
        assert!(acks.remove(3).is_some(), "front");
        assert!(acks.remove(3).is_none());
        assert_eq!(acks.0.len(), 1);
    }

    /// A resend joins its first copy while it waits, is answered from the
    /// window once it is stored, and is new again after a failed write.
    #[test]
    fn retries_follow_their_first_copy() {
        let mut acks = Acks::load(&Snapshot::default());
        let conn = ConnRef {
            token: Token(2),
            serial: 1,
        };
        assert!(matches!(acks.retry(conn, ALICE, "k"), Retry::New));
        let key = acks.next_key();
        acks.park(key, ack(Some("k")));
        assert!(matches!(acks.retry(conn, ALICE, "k"), Retry::Waiting));
        assert!(matches!(acks.retry(conn, BOB, "k"), Retry::New), "per user");
        let settled = acks.settle(key, Stored::No { transient: true }).unwrap();
        assert_eq!(settled.waiters.len(), 2, "the resender waited with it");
        assert!(matches!(acks.retry(conn, ALICE, "k"), Retry::New), "failed");
        let key = acks.next_key();
        acks.park(key, ack(Some("k")));
        acks.settle(key, Stored::Yes { id: 40, seq: 1 });
        assert!(matches!(
            acks.retry(conn, ALICE, "k"),
            Retry::Stored {
                id: 40,
                timestamp_ms: 5
            }
        ));
        assert_eq!(acks.newest(), 40);
    }

    /// Client ids are found per user; one user sending with fresh ids evicts
    /// only their own oldest, never another user's; past the global window the
    /// oldest overall go.
    #[test]
    fn client_id_window_is_per_user_then_global() {
        let mut ids = ClientIds::default();
        ids.insert(1, "a", 10, 0);
        assert_eq!(ids.get(1, "a"), Some((10, 0)));
        assert_eq!(ids.get(2, "a"), None);
        for i in 0..(CLIENT_IDS_PER_USER * 3) as u64 {
            ids.insert(2, &i.to_string(), i, 0);
        }
        assert_eq!(ids.get(1, "a"), Some((10, 0)), "another user's id stays");
        assert_eq!(ids.get(2, "0"), None, "the flooder's own oldest went");
        let newest = (CLIENT_IDS_PER_USER * 3 - 1).to_string();
        assert!(ids.get(2, &newest).is_some());
        assert_eq!(ids.len(), 1 + CLIENT_IDS_PER_USER);

        // Many users, each within their share, fill the global window.
        let mut ids = ClientIds::default();
        ids.insert(1, "a", 10, 0);
        let users = CLIENT_ID_WINDOW / CLIENT_IDS_PER_USER + 1;
        for u in 0..users as UserId {
            for i in 0..CLIENT_IDS_PER_USER as u64 {
                ids.insert(100 + u, &i.to_string(), i, 0);
            }
        }
        assert_eq!(ids.get(1, "a"), None, "the oldest overall went");
        assert!(ids.len() <= CLIENT_ID_WINDOW);
    }
}
