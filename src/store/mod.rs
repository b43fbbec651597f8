//! Storage behind a narrow interface: the loop never calls a database.
//!
//! The loop sends [`Request`]s to storage and gets [`Reply`]s back over one
//! channel, with the loop's `Waker` rung after every batch. Storage is
//! generic over a [`Backend`]; SQLite ([`sqlite::Sqlite`]) is the one that
//! ships, and a PostgreSQL backend is one more `impl Backend` — the reactor,
//! the hub and the HTTP routes only ever see `StoreHandle`.
//!
//! Two threads, one per kind of work. The *writer* applies every write (and
//! `Drain`) in queue order, in batched transactions. The *reader*, on its own
//! connection ([`Backend::reader`]), answers the reads (`History`, `Unread`),
//! one snapshot each. A slow read (a deep `OFFSET`, a 1000-message replay)
//! therefore never delays a commit, hence an ack. A backend with no second
//! connection (SQLite in memory) gets every request on the writer, in order,
//! as before.
//!
//! Why reads on another connection are still correct:
//! - The hub publishes a message, and acks it, only after the commit that
//!   holds it (`Hub::on_message_stored`). So any read issued after a client
//!   could have seen a message is issued after that commit, and its snapshot
//!   (taken when the reader starts it) includes the message.
//! - A read may also see a commit whose replies the loop has not handled yet.
//!   A `join … since` replay racing a commit like that is de-duplicated by
//!   message id in `Hub::finish_replay`, but only against live frames *held*
//!   while the replay was out; a replay answered before the commit's
//!   `MessageStored` would be followed by the same message live. So the
//!   writer commits and sends that batch's replies under [`Published`], and
//!   the reader takes its snapshot under the same lock: every commit a read
//!   can see has its replies ahead of the read's in the channel.
//! - The one cost, admitted: a write issued just before a read may not be
//!   committed yet when the read runs. That matters for read markers: an
//!   `Unread` asked right after a `MarkRead` may still count the messages
//!   that marker covers. (A message not yet committed was not acked or
//!   delivered either, so no client can expect a read to show it.)
//!
//! Queue bounds: each thread has its own queue, bounded by the same
//! `capacity` (`--store-queue`); `submit` answers `Busy` when the request's
//! queue is full. Only the write queue counts for `is_backlogged` and
//! `has_caught_up`, which pause and resume chat input: input produces writes,
//! and a burst of reads (a reconnect storm's `Unread`s) must not stop chat
//! while the writer is idle. `depth` (the `/metrics` gauge) is both queues.
//!
//! Why the loop assigns ids: message ids come from the loop's counter (continued
//! from the database's maximum at start), so fan-out never waits for SQLite;
//! only the sender's `ack` waits for the commit that carries the message.

#[cfg(test)]
pub(crate) mod conformance;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod migrate;
pub mod ops;
pub mod postgres;
pub mod sqlite;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::config::{STORE_BATCH, STORE_PROBE};

/// Users are numbered from 1: by the loop on SQLite, by the database's
/// sequence on PostgreSQL (where several nodes sign users up at once).
pub type UserId = u32;
/// Message ids: unique across the server (the cluster), and increasing per
/// room and per conversation in the order messages are delivered.
pub type MsgId = u64;
/// A message's place in its room or conversation: 1, 2, 3, ... with no gap
/// among committed messages, assigned in the same transaction as the append
/// by a backend that sequences (PostgreSQL). A node that sees a sequence
/// jump on the bus knows it missed a message and reads it back. 0 from a
/// backend that does not sequence (SQLite: one node, nothing to miss).
pub type Seq = u64;

/// A user as stored, password hash included (the loop keeps it to verify logins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: UserId,
    pub username: String,
    pub email: String,
    pub password: PasswordHash,
    pub created_ms: i64,
    pub last_seen_ms: Option<i64>,
}

/// PBKDF2-HMAC-SHA256 output with the parameters that produced it, so the
/// iteration count can be raised later without invalidating old hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHash {
    pub iterations: u32,
    pub salt: [u8; 16],
    pub hash: [u8; 32],
}

/// A private room: only members may join it or read its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateRoomRow {
    pub name: String,
    pub owner: UserId,
    pub members: Vec<UserId>,
}

/// Where a message lives: a room, or the conversation of two users.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Room(String),
    /// A private conversation; the pair is unordered (`Direct(a, b) == Direct(b, a)` in storage).
    Direct(UserId, UserId),
}

/// One emoji's reactions on a message: the users, in the order they reacted.
/// A message's reactions are kept in the order each emoji first appeared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    pub emoji: String,
    pub users: Vec<UserId>,
}

/// One chat message as stored and as read back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredMessage {
    pub id: MsgId,
    /// `Some` for a room message.
    pub room: Option<String>,
    pub from: UserId,
    /// `Some` for a private message.
    pub to: Option<UserId>,
    pub content: String,
    pub timestamp_ms: i64,
    /// The message's place in its target ([`Seq`]); 0 when not sequenced.
    pub seq: Seq,
    /// The message this one answers, in the same room or conversation.
    pub reply_to: Option<MsgId>,
    /// When its author last edited it.
    pub edited_ms: Option<i64>,
    /// Who reacted with what; empty when nobody did.
    pub reactions: Vec<Reaction>,
    /// Deleted: only `Catchup` answers carry deleted messages (with empty
    /// content), so a node can step its sequence past them; every other
    /// read leaves them out.
    pub deleted: bool,
}

/// What `GET /api/search` asks: messages `user` may read whose content has
/// every one of `words` (whole words, any case, any order), newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    pub user: UserId,
    /// Lower-case words, as [`search_words`] cut them: 1 to
    /// `MAX_SEARCH_WORDS`.
    pub words: Vec<String>,
    /// Only this room or conversation (`Direct(user, peer)`); `None`: all
    /// the caller may read.
    pub scope: Option<Target>,
    pub limit: usize,
}

/// The words of a search: runs of letters and digits (any script), lower
/// case, at most `max` of them, duplicates dropped. Punctuation separates
/// words, as both engines' tokenizers do (SQLite's `unicode61`,
/// PostgreSQL's `simple` parser), so `"don't"` is `don` and `t`; the
/// query has no operators, so nothing a user types is a syntax error.
pub fn search_words(q: &str, max: usize) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for w in q.split(|c: char| !c.is_alphanumeric()) {
        if w.is_empty() {
            continue;
        }
        let w = w.to_lowercase();
        if !words.contains(&w) {
            words.push(w);
            if words.len() == max {
                break;
            }
        }
    }
    words
}

/// Why storage refused an edit, a delete or a reaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No message with that id, or it was deleted.
    NoSuchMessage,
    /// Not the author (edit); neither the author nor the private room's
    /// owner (delete); someone who may not read the message (react).
    Forbidden,
    /// The message already has `MAX_REACTION_KINDS` different emoji, or
    /// `MAX_REACTIONS` reactions in all.
    TooManyReactions,
}

/// What an edit, a delete or a reaction changed, with where the message
/// lives, so the hub can tell whoever may read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub id: MsgId,
    pub room: Option<String>,
    pub from: UserId,
    pub to: Option<UserId>,
    pub what: ChangeKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    Edited {
        content: String,
        at_ms: i64,
    },
    Deleted,
    Reacted {
        emoji: String,
        user: UserId,
        on: bool,
    },
}

/// Whether the user of an edit, delete or reaction may make it: the one
/// rule both backends apply, once they have found the live message
/// (`author`, and `private_owner` when it is in a private room). An edit is
/// its author's; a delete its author's or the private room's owner's; a
/// reaction anyone's who may read the message (`may_read`, asked only for
/// a reaction, since it may cost a query).
pub fn may_change<E>(
    req: &Request,
    author: UserId,
    private_owner: Option<UserId>,
    may_read: impl FnOnce() -> Result<bool, E>,
) -> Result<bool, E> {
    Ok(match req {
        Request::EditMessage { user, .. } => *user == author,
        Request::DeleteMessage { user, .. } => *user == author || private_owner == Some(*user),
        Request::React { .. } => may_read()?,
        _ => false,
    })
}

/// Toggles `user`'s `emoji` on a message's reactions (the one rule both
/// backends apply): returns whether it is now on, or the refusal when a
/// new reaction would pass a bound. Removing one is always allowed.
pub fn toggle_reaction(
    reactions: &mut Vec<Reaction>,
    emoji: &str,
    user: UserId,
) -> Result<bool, Refusal> {
    use crate::config::{MAX_REACTION_KINDS, MAX_REACTIONS};
    if let Some(i) = reactions.iter().position(|r| r.emoji == emoji) {
        if let Some(j) = reactions[i].users.iter().position(|&u| u == user) {
            reactions[i].users.remove(j);
            if reactions[i].users.is_empty() {
                reactions.remove(i);
            }
            return Ok(false);
        }
    } else if reactions.len() >= MAX_REACTION_KINDS {
        return Err(Refusal::TooManyReactions);
    }
    if reactions.iter().map(|r| r.users.len()).sum::<usize>() >= MAX_REACTIONS {
        return Err(Refusal::TooManyReactions);
    }
    match reactions.iter_mut().find(|r| r.emoji == emoji) {
        Some(r) => r.users.push(user),
        None => reactions.push(Reaction {
            emoji: emoji.to_string(),
            users: vec![user],
        }),
    }
    Ok(true)
}

/// A message's reactions as the backends store them: one text column,
/// `[["👍",[1,2]],[":tada:",[3]]]`, `None` when there are none. One
/// column, not a table, because reactions are only ever read with their
/// message and written by toggling one; the bounds keep it small.
pub fn encode_reactions(reactions: &[Reaction]) -> Option<String> {
    if reactions.is_empty() {
        return None;
    }
    let v: Vec<(&str, &[UserId])> = reactions
        .iter()
        .map(|r| (r.emoji.as_str(), r.users.as_slice()))
        .collect();
    Some(serde_json::to_string(&v).expect("serializing to a String cannot fail"))
}

/// The reverse of [`encode_reactions`]; a column that does not parse (it
/// never should) reads as no reactions rather than failing the read.
pub fn decode_reactions(text: Option<&str>) -> Vec<Reaction> {
    let Some(text) = text else {
        return Vec::new();
    };
    match serde_json::from_str::<Vec<(String, Vec<UserId>)>>(text) {
        Ok(v) => v
            .into_iter()
            .map(|(emoji, users)| Reaction { emoji, users })
            .collect(),
        Err(e) => {
            log::error!("storage: a message's reactions do not parse ({e}); read as none");
            Vec::new()
        }
    }
}

/// A window of history: the newest `limit` messages of `target` with
/// `after < id < before`, skipping the newest `offset`; returned oldest first.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub target: Target,
    pub before: Option<MsgId>,
    pub after: Option<MsgId>,
    pub limit: usize,
    pub offset: usize,
}

/// Unread count of one room or one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnreadCount {
    /// A room: unread messages, and how many of them mention the user.
    Room(String, u64, u64),
    /// Messages from this user to the caller not yet read.
    Direct(UserId, u64),
}

/// Everything the loop keeps in memory, read once before the loop starts.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub users: Vec<UserRow>,
    pub private_rooms: Vec<PrivateRoomRow>,
    /// Public rooms that have at least one message.
    pub public_rooms: Vec<(String, Option<UserId>)>,
    /// Rooms with messages but no room row (its write was lost): loaded as
    /// private rooms with no members, so nobody may read them.
    pub orphan_rooms: Vec<String>,
    pub max_message_id: MsgId,
    /// The newest `(user, client_id, message id, timestamp)` for idempotent retries.
    pub recent_client_ids: Vec<(UserId, String, MsgId, i64)>,
    /// Users who could have something unread: they have a room read marker,
    /// belong to a private room, or were sent a private message. For everyone
    /// else the `unread` frame is empty without asking storage.
    pub unread_sources: Vec<UserId>,
    /// The newest [`Seq`] of every room and conversation that has messages,
    /// from a backend that sequences (empty otherwise): where a cluster
    /// node starts tracking each target's sequence.
    pub heads: Vec<(Target, Seq)>,
}

/// Why a user row was refused: the name or email is already stored (by
/// another node of a cluster, which this node's directory had not heard of).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    Username,
    Email,
}

/// Which part of the loop asked: storage echoes the ticket, and the loop
/// hands the answer to the desk that parked it (each desk keeps its own
/// waiting list, so neither needs to know the other's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Desk {
    /// The chat hub: `history` frames, `join … since` replays, `unread`.
    Hub,
    /// The HTTP routes: `GET /api/messages` (and password jobs on the pool).
    Http,
}

/// Pairs an asynchronous reply with whoever is waiting for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket {
    pub desk: Desk,
    pub seq: u64,
}

/// What the loop asks of storage.
#[derive(Debug)]
pub enum Request {
    /// Reply: `UserStored` / `UserFailed`. The row's `id` is the loop's key
    /// for the reply; a backend that numbers users itself stores another.
    PutUser(UserRow),
    /// Reply: `MessageStored`, `MessageExists` (the same user's `client_id`
    /// is already stored: a retry the loop no longer remembered, perhaps
    /// sent to another node), or `MessageFailed`. `msg.id` is the loop's key
    /// for the reply (and the id itself on a backend that takes the loop's
    /// ids); `msg.seq` is ignored.
    /// `MessageRefused` when `msg.reply_to` is not a message of the same
    /// room or conversation (or was deleted). `mentions`: the users whose
    /// `@name` it carries and who may read it, for their unread mention
    /// counts (kept for room messages only: a conversation's unread count
    /// already is the mention count).
    PutMessage {
        msg: StoredMessage,
        client_id: Option<String>,
        mentions: Vec<UserId>,
    },
    /// A public room is getting its first message (sent until one commits;
    /// storing it twice is harmless; the first `creator` stays). No reply.
    PutPublicRoom { name: String, creator: UserId },
    /// No reply.
    SetLastSeen { user: UserId, at_ms: i64 },
    /// Reply: `Done` / `Failed`. The hub applies it in memory only after `Done`.
    PutPrivateRoom { ticket: Ticket, row: PrivateRoomRow },
    /// Reply: `Done` / `Failed`.
    AddMember {
        ticket: Ticket,
        room: String,
        user: UserId,
    },
    /// Reply: `Done` / `Failed`.
    RemoveMember {
        ticket: Ticket,
        room: String,
        user: UserId,
    },
    /// Moves `user`'s read marker forward (never back). No reply.
    MarkRead {
        user: UserId,
        target: Target,
        id: MsgId,
    },
    /// Reply: `History`.
    History { ticket: Ticket, query: HistoryQuery },
    /// Reply: `Unread`.
    Unread { ticket: Ticket, user: UserId },
    /// The messages of `target` with `after < seq`, oldest first, at most
    /// `limit`: what a cluster node missed on the bus. Reply: `History`
    /// (messages carry their `seq`) / `HistoryFailed`.
    Catchup {
        ticket: Ticket,
        target: Target,
        after: Seq,
        limit: usize,
    },
    /// Everything `load` reads, again: a cluster node lost the bus and may
    /// have missed users, rooms and memberships made elsewhere. Reply:
    /// `Resynced` / `ResyncFailed`.
    Resync { ticket: Ticket },
    /// Whether room `name` is stored as a private room: a cluster node asks
    /// before it opens a room it has not heard of, since another node may
    /// have just created it. Reply: `RoomInfo` / `HistoryFailed`.
    RoomInfo { ticket: Ticket, name: String },
    /// The stored user called `name` (any case): a cluster node asks when a
    /// login names someone its directory has not heard of, since another
    /// node may have just signed them up. Reply: `UserFound` / `HistoryFailed`.
    FindUser { ticket: Ticket, name: String },
    /// The author replaces a message's content. Reply: `Changed` (refused
    /// unless `user` wrote it) / `Failed`.
    EditMessage {
        ticket: Ticket,
        id: MsgId,
        user: UserId,
        content: String,
        at_ms: i64,
    },
    /// Deletes a message: its content is emptied, its reactions and
    /// mentions dropped, and it leaves every read but `Catchup`. Reply:
    /// `Changed` (refused unless `user` wrote it or owns its private room)
    /// / `Failed`.
    DeleteMessage {
        ticket: Ticket,
        id: MsgId,
        user: UserId,
        at_ms: i64,
    },
    /// Toggles `user`'s reaction `emoji` ([`toggle_reaction`]). Reply:
    /// `Changed` (refused when `user` may not read the message: a private
    /// room they are not a member of, a conversation not theirs) / `Failed`.
    React {
        ticket: Ticket,
        id: MsgId,
        user: UserId,
        emoji: String,
    },
    /// Reply: `History` with the matches *newest first* (at most
    /// `query.limit`) / `HistoryFailed`. Only messages `query.user` may
    /// read: conversations they are in, public rooms, private rooms they
    /// are a member of.
    Search { ticket: Ticket, query: SearchQuery },
    /// Reply: `Drained`, after every write sent before it is committed.
    /// (Reads on the reader thread are not waited for: at shutdown nobody
    /// needs their answers.)
    Drain,
}

/// What storage answers: for a write, after the batch holding it committed;
/// for a read, from a snapshot that holds every commit already answered.
#[derive(Debug)]
pub enum Reply {
    /// `key` is the row's id as sent; `id` the one stored.
    UserStored {
        key: UserId,
        id: UserId,
    },
    /// `conflict` when a unique name or email refused it.
    UserFailed {
        key: UserId,
        conflict: Option<Conflict>,
    },
    /// `key` is `msg.id` as sent; `id` and `seq` what it was stored as.
    MessageStored {
        key: MsgId,
        id: MsgId,
        seq: Seq,
    },
    /// Not stored again: `existing` is the message this user already stored
    /// under the same `client_id`, at `timestamp_ms`.
    MessageExists {
        key: MsgId,
        existing: MsgId,
        timestamp_ms: i64,
    },
    /// `transient` when the whole batch failed (the database is down, the
    /// disk is full): the client is told `busy`, not `internal`.
    MessageFailed {
        key: MsgId,
        transient: bool,
    },
    /// Not stored: the message's `reply_to` is not a live message of
    /// its room or conversation.
    MessageRefused {
        key: MsgId,
    },
    /// An edit, delete or reaction was applied (`Ok`) or refused.
    Changed {
        ticket: Ticket,
        outcome: Result<Change, Refusal>,
    },
    /// A request with a ticket and no data to return was stored.
    Done {
        ticket: Ticket,
    },
    /// A request with a ticket and no data to return was not stored.
    Failed {
        ticket: Ticket,
    },
    History {
        ticket: Ticket,
        messages: Vec<StoredMessage>,
    },
    /// `None` when the read failed (the waiter answers with an error).
    HistoryFailed {
        ticket: Ticket,
    },
    Unread {
        ticket: Ticket,
        counts: Vec<UnreadCount>,
    },
    Resynced {
        ticket: Ticket,
        snapshot: Box<Snapshot>,
    },
    UserFound {
        ticket: Ticket,
        row: Option<UserRow>,
    },
    /// `private`: the room's row when it is a stored private room.
    RoomInfo {
        ticket: Ticket,
        private: Option<PrivateRoomRow>,
    },
    ResyncFailed {
        ticket: Ticket,
    },
    Drained,
}

/// Why a storage call failed: the backend's own error, as text, and
/// whether it spoiled the whole transaction.
#[derive(Debug)]
pub struct StoreError {
    pub message: String,
    /// The batch cannot go on: the disk is full, I/O failed, the database is
    /// locked by someone else, or the engine rolled the transaction back by
    /// itself. Every request of the batch is then answered as failed.
    pub aborts_batch: bool,
}

impl StoreError {
    /// A failure of one request; the transaction is still usable.
    pub fn request(message: impl Into<String>) -> StoreError {
        StoreError {
            message: message.into(),
            aborts_batch: false,
        }
    }

    /// A failure that ends the batch.
    pub fn batch(message: impl Into<String>) -> StoreError {
        StoreError {
            message: message.into(),
            aborts_batch: true,
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}

/// A storage engine. Startup calls (`load`, settings, `reader`) run before
/// the loop exists, outside any batch. The rest run on the writer thread, for
/// every batch in this order: `begin`, `execute_batch` once (by default
/// `execute` once per request, in order: [`execute_each`]), `commit`, and
/// `rollback` only when `execute_batch` aborted the batch or that `commit`
/// failed. With a [`Reader`], the batches hold no reads; without one they
/// hold reads too, answered from the batch's own transaction.
///
/// The contract every engine honours, because the replies depend on it: a
/// request is atomic, and the batch is one transaction of the requests that
/// succeeded. A request that fails on its own (a constraint, bad data) gets
/// its failure reply while the rest of its batch is still acked, so its
/// failure must neither leave half of it behind nor spoil the others. A
/// failure of the transaction itself (disk full, I/O error, a lock held
/// elsewhere, an engine-side rollback) is reported with
/// [`StoreError::aborts_batch`]: the caller rolls back and answers *every*
/// request of the batch as failed, since none of it will be durable.
/// Nothing is ever acked that a commit did not make durable.
///
/// One SQL statement is atomic by itself, but a request of several (for
/// `PutPrivateRoom`, the room row and one row per member) is not: the engine
/// wraps such a request in a `SAVEPOINT` and on failure rolls back to it and
/// releases it. SQLite needs that only for multi-statement requests, since a
/// failed statement there undoes just itself. PostgreSQL aborts the whole
/// transaction on any failed statement (every later one fails until
/// `ROLLBACK`), so a PostgreSQL backend needs the same per-request
/// savepoint around every request that can fail.
///
/// An engine may apply several requests of a batch per statement
/// ([`Backend::execute_batch`]; PostgreSQL does, for runs of messages), as
/// long as it keeps all of the above: every request's effects and reply are
/// exactly those `execute` would give it at its place in the batch, a
/// request that fails alone still fails alone, and replies come in request
/// order.
pub trait Backend: Send + 'static {
    /// Reads the state the loop keeps in memory.
    fn load(&mut self) -> Result<Snapshot, StoreError>;
    /// Reads a setting (e.g. the generated JWT secret).
    fn setting(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes a setting, durably, before returning. A backend that several
    /// nodes share (PostgreSQL) keeps the value already stored under `key`
    /// instead, so that two nodes generating one at once agree on the
    /// first: callers read it back with `setting`.
    fn put_setting(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Opens the one transaction of a batch, taking the write lock now (so a
    /// lock held elsewhere fails the batch up front, not halfway).
    fn begin(&mut self) -> Result<(), StoreError>;
    /// Applies one request inside the open transaction, wholly or not at
    /// all, and returns its reply, if it has one. On `Err` none of this
    /// request's effects remain and the transaction is still usable: the
    /// requests after it execute, and those before it still commit.
    fn execute(&mut self, req: &Request) -> Result<Option<Reply>, StoreError>;
    /// Applies the whole batch inside the open transaction, appending the
    /// replies to `out` in request order: the same effects and the same
    /// replies as [`execute_each`] (`execute` once per request, in order),
    /// which is the default. A request that fails alone gets its failure
    /// reply (logged) and the rest goes on. `Err` aborts the batch: the
    /// caller calls `rollback`, drops whatever this pushed to `out` and
    /// answers every request of the batch as failed.
    fn execute_batch(&mut self, batch: &[Request], out: &mut Vec<Reply>) -> Result<(), StoreError> {
        execute_each(self, batch, out)
    }
    /// Makes every request of the batch that succeeded durable at once. On
    /// `Err` none of them is; the caller then calls `rollback` and reports
    /// every write of the batch as failed.
    fn commit(&mut self) -> Result<(), StoreError>;
    /// Ends the transaction after a failed `commit` or an `execute_batch`
    /// that aborted the batch, so the next `begin` starts clean. It has no
    /// caller to answer; failures are logged.
    fn rollback(&mut self);
    /// A second connection for the reads (`History`, `Unread`), to run on
    /// their own thread beside the writer; called once, before the threads
    /// start. `None` (the default) when the engine cannot give one — an
    /// in-memory database another connection would not see — and every
    /// request then runs on the writer, in queue order. It must see every
    /// transaction this connection committed before the reader's `begin`
    /// (SQLite in WAL mode and PostgreSQL both do), and must not block, or
    /// be blocked by, the writer's transactions for longer than a moment.
    fn reader(&mut self) -> Result<Option<Box<dyn Reader>>, StoreError> {
        Ok(None)
    }
}

/// The read side of a backend ([`Backend::reader`]): answers `History` and
/// `Unread` from committed data, on the reader thread. Per read: `begin`,
/// one `read`, `end`.
pub trait Reader: Send + 'static {
    /// Starts a read transaction and takes its snapshot *now* (SQLite:
    /// `BEGIN` and a first read; PostgreSQL: `BEGIN ISOLATION LEVEL
    /// REPEATABLE READ` and a first statement). The caller holds
    /// [`Published`] meanwhile, so it must be quick: no query work here.
    fn begin(&mut self) -> Result<(), StoreError>;
    /// Answers one read from the snapshot `begin` took.
    fn read(&mut self, req: &Request) -> Result<Reply, StoreError>;
    /// Ends the read transaction (also after a failed `read`); failures are logged.
    fn end(&mut self);
}

/// The queue was full: answer the client `busy` instead of blocking the loop.
#[derive(Debug)]
pub struct Busy;

/// What the hub and the HTTP routes see of storage: somewhere to send a
/// request without waiting. [`StoreHandle`] is the real one; the hub's unit
/// tests record requests instead and answer them by hand.
pub trait Storage {
    /// Queues a request, or answers `Busy` at once when storage is full.
    fn submit(&mut self, req: Request) -> Result<(), Busy>;
    /// Requests waiting to be applied (a `/metrics` gauge).
    fn depth(&self) -> usize;
    /// Whether the database is reachable (false: `/healthz` says `degraded`).
    fn is_healthy(&self) -> bool {
        true
    }
}

impl Storage for StoreHandle {
    fn submit(&mut self, req: Request) -> Result<(), Busy> {
        StoreHandle::submit(self, req)
    }
    fn depth(&self) -> usize {
        StoreHandle::depth(self)
    }
    fn is_healthy(&self) -> bool {
        StoreHandle::is_healthy(self)
    }
}

/// One bounded queue to a storage thread: unbounded in type, bounded by
/// `depth`. std's `sync_channel` would allocate and touch all `capacity`
/// slots up front (megabytes of RSS for a queue that is almost always nearly
/// empty); this one allocates small blocks as it fills, and `send` enforces
/// the same bound.
struct Queue {
    tx: Option<Sender<Request>>,
    /// Requests sent and not yet taken by the thread.
    depth: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Queue {
    fn send(&self, req: Request, capacity: usize) -> Result<(), Busy> {
        let tx = self.tx.as_ref().ok_or(Busy)?;
        if self.depth() >= capacity {
            return Err(Busy);
        }
        self.depth.fetch_add(1, Ordering::Relaxed);
        tx.send(req).map_err(|_| {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            Busy
        })
    }

    fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Closes the queue and waits for the thread to finish what it holds.
    fn join(&mut self, name: &str) {
        self.tx = None;
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            log::error!("{name} thread panicked");
        }
    }
}

/// Held by the writer from its `commit` until that batch's replies are in
/// the reply channel, and by the reader while it takes a snapshot: so every
/// commit a read can see has its replies ahead of the read's reply (see the
/// module doc). Neither holds it across query work, so a slow read still
/// never delays a commit.
pub struct Published(Mutex<()>);

impl Published {
    fn new() -> Published {
        Published(Mutex::new(()))
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // Guards no data: a thread that panicked holding it left nothing torn.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The loop's end of the storage threads.
pub struct StoreHandle {
    /// Writes and `Drain`; also reads when the backend has no reader.
    writes: Queue,
    /// `History` and `Unread`, when the backend has a reader.
    reads: Option<Queue>,
    rx: Receiver<Reply>,
    /// Requests in flight at most, in each queue; `submit` answers `Busy` past it.
    capacity: usize,
    /// Whether the writer's last transaction reached the database (set by
    /// the writer thread; `/healthz` says `degraded` while it is false).
    health: Arc<AtomicBool>,
}

impl StoreHandle {
    /// Starts the writer thread, and the reader thread if the backend gives
    /// a [`Reader`]. `wake` is called by either after it sent replies (the
    /// loop passes its `mio::Waker`).
    pub fn spawn<B: Backend>(
        mut backend: B,
        capacity: usize,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> StoreHandle {
        let (reply_tx, rx) = mpsc::channel();
        let wake = Arc::new(wake);
        let published = Arc::new(Published::new());
        let reader = backend.reader().unwrap_or_else(|e| {
            log::warn!("storage: no reader connection ({e}); reads run on the writer");
            None
        });
        let reads = reader.map(|reader| {
            let (replies, wake, published) = (reply_tx.clone(), wake.clone(), published.clone());
            spawn_queue("hubbub-store-read", move |rx, depth| {
                run_reader(reader, rx, replies, depth, &published, &*wake)
            })
        });
        let health = Arc::new(AtomicBool::new(true));
        let writer_health = health.clone();
        let writes = spawn_queue("hubbub-store", move |rx, depth| {
            run_store(
                backend,
                rx,
                reply_tx,
                depth,
                &published,
                writer_health,
                &*wake,
            )
        });
        StoreHandle {
            writes,
            reads,
            rx,
            capacity,
            health,
        }
    }

    /// Queues a request without blocking, on the reader's queue if it is a
    /// read and there is a reader, else on the writer's.
    pub fn submit(&mut self, req: Request) -> Result<(), Busy> {
        match &self.reads {
            Some(reads) if is_read(&req) => reads.send(req, self.capacity),
            _ => self.writes.send(req, self.capacity),
        }
    }

    /// The next reply, if one is ready.
    pub fn try_reply(&self) -> Option<Reply> {
        self.rx.try_recv().ok()
    }

    /// The writer is behind (half its queue in use): the loop should stop
    /// taking new work from clients until it `has_caught_up`. Reads queued
    /// for the reader do not count (see the module doc).
    pub fn is_backlogged(&self) -> bool {
        self.writes.depth() >= self.capacity / 2
    }

    /// The writer is back under a quarter of its queue.
    pub fn has_caught_up(&self) -> bool {
        self.writes.depth() <= self.capacity / 4
    }

    /// Requests waiting for either storage thread (the `/metrics` gauge).
    pub fn depth(&self) -> usize {
        self.writes.depth() + self.read_depth()
    }

    /// The database answered the writer's last transaction.
    pub fn is_healthy(&self) -> bool {
        self.health.load(Ordering::Relaxed)
    }

    /// Reads waiting for the reader thread (0 without one).
    pub fn read_depth(&self) -> usize {
        self.reads.as_ref().map_or(0, Queue::depth)
    }

    /// Closes the queues and waits for the threads to finish what they hold.
    /// Only called at shutdown, after `Drain` was answered, so the wait is
    /// short. The reader goes first, so that the writer's connection is the
    /// last to close (SQLite then removes the `-wal` and `-shm`).
    pub fn join(&mut self) {
        if let Some(reads) = &mut self.reads {
            reads.join("storage reader");
        }
        self.writes.join("storage");
    }
}

/// Starts a thread that serves one queue.
fn spawn_queue(
    name: &str,
    run: impl FnOnce(Receiver<Request>, Arc<AtomicUsize>) + Send + 'static,
) -> Queue {
    let (tx, rx) = mpsc::channel();
    let depth = Arc::new(AtomicUsize::new(0));
    let thread_depth = depth.clone();
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || run(rx, thread_depth))
        .expect("spawn storage thread");
    Queue {
        tx: Some(tx),
        depth,
        thread: Some(thread),
    }
}

/// The requests the reader answers when there is one. Exhaustive on
/// purpose: a new request must be classified.
fn is_read(req: &Request) -> bool {
    match req {
        Request::History { .. }
        | Request::Unread { .. }
        | Request::Catchup { .. }
        | Request::Resync { .. }
        | Request::RoomInfo { .. }
        | Request::FindUser { .. }
        | Request::Search { .. } => true,
        Request::PutUser(_)
        | Request::PutMessage { .. }
        | Request::PutPublicRoom { .. }
        | Request::SetLastSeen { .. }
        | Request::PutPrivateRoom { .. }
        | Request::AddMember { .. }
        | Request::RemoveMember { .. }
        | Request::MarkRead { .. }
        | Request::EditMessage { .. }
        | Request::DeleteMessage { .. }
        | Request::React { .. }
        | Request::Drain => false,
    }
}

/// The writer thread: block for one request, take whatever else is queued (up
/// to a batch), apply it all in one transaction, then send every reply.
fn run_store<B: Backend>(
    mut backend: B,
    rx: Receiver<Request>,
    replies: Sender<Reply>,
    depth: Arc<AtomicUsize>,
    published: &Published,
    health: Arc<AtomicBool>,
    wake: &dyn Fn(),
) {
    crate::priority::lower_current_thread(crate::priority::STORE_NICE);
    let mut batch = Vec::with_capacity(STORE_BATCH);
    let mut out = Vec::with_capacity(STORE_BATCH);
    loop {
        let up = health.load(Ordering::Relaxed);
        let first = if up {
            rx.recv().map_err(|_| ())
        } else {
            // Down: probe every STORE_PROBE even without work, so `/healthz`
            // turns healthy when the database is back, not at the next write.
            match rx.recv_timeout(STORE_PROBE) {
                Ok(r) => Ok(r),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    probe(&mut backend, &health);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => Err(()),
            }
        };
        let Ok(first) = first else { break };
        batch.push(first);
        while batch.len() < STORE_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        depth.fetch_sub(batch.len(), Ordering::Relaxed);
        let (guard, reached) = apply_batch_published(&mut backend, &batch, &mut out, published, up);
        set_health(&health, reached);
        batch.clear();
        let mut loop_gone = false;
        for reply in out.drain(..) {
            loop_gone |= replies.send(reply).is_err();
        }
        drop(guard);
        if loop_gone {
            // The loop is gone (shutdown): keep committing what is queued.
            continue;
        }
        wake();
    }
}

/// Records whether the database could be reached, logging only the changes
/// (an outage is one line, not one per batch).
fn set_health(health: &AtomicBool, up: bool) {
    match (health.swap(up, Ordering::Relaxed), up) {
        (true, false) => log::error!(
            "storage: the database is unreachable; writes are refused as busy until it is back"
        ),
        (false, true) => log::info!("storage: the database is reachable again"),
        _ => {}
    }
}

/// An empty transaction, to see whether the database is back.
fn probe<B: Backend>(backend: &mut B, health: &AtomicBool) {
    let ok = backend.begin().and_then(|()| backend.commit()).is_ok();
    if !ok {
        backend.rollback();
    }
    set_health(health, ok);
}

/// The reader thread: one read at a time, each in its own snapshot, its
/// reply sent (and the loop woken) as soon as it is ready.
fn run_reader(
    mut reader: Box<dyn Reader>,
    rx: Receiver<Request>,
    replies: Sender<Reply>,
    depth: Arc<AtomicUsize>,
    published: &Published,
    wake: &dyn Fn(),
) {
    crate::priority::lower_current_thread(crate::priority::STORE_NICE);
    while let Ok(req) = rx.recv() {
        depth.fetch_sub(1, Ordering::Relaxed);
        let began = {
            let _snapshot = published.lock();
            reader.begin()
        };
        let reply = match began.and_then(|()| reader.read(&req)) {
            Ok(reply) => Some(reply),
            Err(e) => {
                log::error!("storage: {} failed: {e}", request_name(&req));
                failure_reply(&req, false)
            }
        };
        reader.end();
        if let Some(reply) = reply
            && replies.send(reply).is_ok()
        {
            wake();
        }
    }
}

/// One transaction for the whole batch. A request that fails alone gets its
/// failure reply; a failure that aborts the transaction, or a failed commit,
/// turns every reply of the batch into a failure, because nothing of the
/// batch is durable. The thread goes on with the next batch either way: when
/// the disk has room again, writes succeed again without a restart. (The
/// writer thread calls [`apply_batch_published`]; tests call this.)
#[cfg(test)]
pub(crate) fn apply_batch<B: Backend>(backend: &mut B, batch: &[Request], out: &mut Vec<Reply>) {
    let published = Published::new();
    drop(apply_batch_published(backend, batch, out, &published, true));
}

/// [`apply_batch`], returning with `published` held from the commit on, so
/// the caller sends the replies before a reader may take a newer snapshot;
/// and whether the batch reached the database (false when the transaction
/// itself failed). `was_up` is false during an outage, whose failed `begin`s
/// are not logged again.
fn apply_batch_published<'a, B: Backend>(
    backend: &mut B,
    batch: &[Request],
    out: &mut Vec<Reply>,
    published: &'a Published,
    was_up: bool,
) -> (MutexGuard<'a, ()>, bool) {
    if let Err(e) = backend.begin() {
        if was_up {
            log::error!("storage: begin failed: {e}");
        }
        backend.rollback();
        out.extend(batch.iter().filter_map(|r| failure_reply(r, true)));
        return (published.lock(), false);
    }
    let start = out.len();
    if let Err(e) = backend.execute_batch(batch, out) {
        log::error!("storage: the batch of {} fails: {e}", batch.len());
        backend.rollback();
        out.truncate(start);
        out.extend(batch.iter().filter_map(|r| failure_reply(r, true)));
        return (published.lock(), false);
    }
    let guard = published.lock();
    if let Err(e) = backend.commit() {
        log::error!("storage: commit of {} requests failed: {e}", batch.len());
        backend.rollback();
        out.truncate(start);
        out.extend(batch.iter().filter_map(|r| failure_reply(r, true)));
        return (guard, false);
    }
    (guard, true)
}

/// The default [`Backend::execute_batch`]: [`execute_one`] per request, in
/// order, stopping at the first that aborts the batch.
pub fn execute_each<B: Backend + ?Sized>(
    backend: &mut B,
    batch: &[Request],
    out: &mut Vec<Reply>,
) -> Result<(), StoreError> {
    batch
        .iter()
        .try_for_each(|req| execute_one(backend, req, out))
}

/// `execute` of one request: its reply, if any, goes to `out`; a failure of
/// the request alone is logged and answered with its failure reply
/// ([`failed_alone`]); a failure that aborts the batch is returned, naming
/// the request.
pub fn execute_one<B: Backend + ?Sized>(
    backend: &mut B,
    req: &Request,
    out: &mut Vec<Reply>,
) -> Result<(), StoreError> {
    match backend.execute(req) {
        Ok(reply) => out.extend(reply),
        Err(e) if e.aborts_batch => {
            return Err(StoreError::batch(format!(
                "{} failed: {e}",
                request_name(req)
            )));
        }
        Err(e) => failed_alone(req, &e, out),
    }
    Ok(())
}

/// A request that failed on its own (the batch goes on): logged, and
/// answered with its failure reply, if it has one.
pub fn failed_alone(req: &Request, e: &StoreError, out: &mut Vec<Reply>) {
    log::error!("storage: {} failed: {e}", request_name(req));
    out.extend(failure_reply(req, false));
}

/// The reply a request gets when it could not be applied (or its batch
/// could not be committed).
fn failure_reply(req: &Request, transient: bool) -> Option<Reply> {
    match req {
        Request::PutUser(u) => Some(Reply::UserFailed {
            key: u.id,
            conflict: None,
        }),
        Request::PutMessage { msg, .. } => Some(Reply::MessageFailed {
            key: msg.id,
            transient,
        }),
        Request::PutPrivateRoom { ticket, .. }
        | Request::AddMember { ticket, .. }
        | Request::RemoveMember { ticket, .. }
        | Request::EditMessage { ticket, .. }
        | Request::DeleteMessage { ticket, .. }
        | Request::React { ticket, .. } => Some(Reply::Failed { ticket: *ticket }),
        Request::History { ticket, .. }
        | Request::Search { ticket, .. }
        | Request::Catchup { ticket, .. }
        | Request::RoomInfo { ticket, .. }
        | Request::FindUser { ticket, .. } => Some(Reply::HistoryFailed { ticket: *ticket }),
        Request::Resync { ticket } => Some(Reply::ResyncFailed { ticket: *ticket }),
        Request::Unread { ticket, .. } => Some(Reply::Unread {
            ticket: *ticket,
            counts: Vec::new(),
        }),
        Request::Drain => Some(Reply::Drained),
        Request::PutPublicRoom { .. } | Request::SetLastSeen { .. } | Request::MarkRead { .. } => {
            None
        }
    }
}

fn request_name(req: &Request) -> &'static str {
    match req {
        Request::PutUser(_) => "put_user",
        Request::PutMessage { .. } => "put_message",
        Request::PutPublicRoom { .. } => "put_public_room",
        Request::SetLastSeen { .. } => "set_last_seen",
        Request::PutPrivateRoom { .. } => "put_private_room",
        Request::AddMember { .. } => "add_member",
        Request::RemoveMember { .. } => "remove_member",
        Request::MarkRead { .. } => "mark_read",
        Request::History { .. } => "history",
        Request::Unread { .. } => "unread",
        Request::Catchup { .. } => "catchup",
        Request::Resync { .. } => "resync",
        Request::RoomInfo { .. } => "room_info",
        Request::FindUser { .. } => "find_user",
        Request::EditMessage { .. } => "edit_message",
        Request::DeleteMessage { .. } => "delete_message",
        Request::React { .. } => "react",
        Request::Search { .. } => "search",
        Request::Drain => "drain",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::mpsc::Receiver as StdReceiver;
    use std::time::Duration;

    /// A backend that holds its first transaction until the test lets it go.
    struct Gate(Mutex<StdReceiver<()>>);

    impl Backend for Gate {
        fn load(&mut self) -> Result<Snapshot, StoreError> {
            Ok(Snapshot::default())
        }
        fn setting(&mut self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(None)
        }
        fn put_setting(&mut self, _: &str, _: &[u8]) -> Result<(), StoreError> {
            Ok(())
        }
        fn begin(&mut self) -> Result<(), StoreError> {
            let _ = self.0.lock().unwrap().recv_timeout(Duration::from_secs(10));
            Ok(())
        }
        fn execute(&mut self, req: &Request) -> Result<Option<Reply>, StoreError> {
            Ok(matches!(req, Request::Drain).then_some(Reply::Drained))
        }
        fn commit(&mut self) -> Result<(), StoreError> {
            Ok(())
        }
        fn rollback(&mut self) {}
    }

    /// A stalled storage thread makes `submit` answer `Busy` once the queue
    /// holds `capacity` requests (plus at most the batch it took), instead
    /// of blocking the loop; everything accepted is still answered later.
    #[test]
    fn full_queue_is_busy_not_blocking() {
        let (release, gate) = mpsc::channel();
        const CAP: usize = 1000;
        let mut store = StoreHandle::spawn(Gate(Mutex::new(gate)), CAP, || {});
        let mut accepted = 0;
        while store.submit(Request::Drain).is_ok() {
            accepted += 1;
            assert!(accepted <= CAP + STORE_BATCH, "the bound did not hold");
        }
        assert!(accepted >= CAP, "refused early at {accepted}");
        assert!(store.is_backlogged() && !store.has_caught_up());
        for _ in 0..accepted {
            let _ = release.send(());
        }
        let mut answered = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while answered < accepted && std::time::Instant::now() < deadline {
            match store.try_reply() {
                Some(Reply::Drained) => answered += 1,
                Some(other) => panic!("unexpected {other:?}"),
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        assert_eq!(answered, accepted);
        assert_eq!(store.depth(), 0);
        assert!(store.has_caught_up() && !store.is_backlogged());
        store.join();
    }

    /// Lets one request through per token the test sends; shared by the
    /// writer and the reader of [`Split`].
    type Turnstile = Arc<Mutex<StdReceiver<()>>>;

    fn pass(t: &Turnstile) {
        let _ = t.lock().unwrap().recv_timeout(Duration::from_secs(10));
    }

    /// A backend with a reader. The writer answers writes at once unless
    /// `write_gate` holds its batches; a read waits at `read_gate` wherever
    /// it runs (the writer too, were reads routed there), after telling
    /// `entered` it started.
    struct Split {
        write_gate: Option<Turnstile>,
        read_gate: Turnstile,
        entered: Sender<()>,
    }

    struct SplitReader {
        read_gate: Turnstile,
        entered: Sender<()>,
    }

    fn answer_read(req: &Request, gate: &Turnstile, entered: &Sender<()>) -> Reply {
        let _ = entered.send(());
        pass(gate);
        match req {
            Request::History { ticket, .. } => Reply::History {
                ticket: *ticket,
                messages: Vec::new(),
            },
            Request::Unread { ticket, .. } => Reply::Unread {
                ticket: *ticket,
                counts: Vec::new(),
            },
            other => panic!("{} is not a read", request_name(other)),
        }
    }

    impl Backend for Split {
        fn load(&mut self) -> Result<Snapshot, StoreError> {
            Ok(Snapshot::default())
        }
        fn setting(&mut self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(None)
        }
        fn put_setting(&mut self, _: &str, _: &[u8]) -> Result<(), StoreError> {
            Ok(())
        }
        fn begin(&mut self) -> Result<(), StoreError> {
            if let Some(gate) = &self.write_gate {
                pass(gate);
            }
            Ok(())
        }
        fn execute(&mut self, req: &Request) -> Result<Option<Reply>, StoreError> {
            Ok(match req {
                Request::PutMessage { msg, .. } => Some(Reply::MessageStored {
                    key: msg.id,
                    id: msg.id,
                    seq: 0,
                }),
                Request::Drain => Some(Reply::Drained),
                Request::History { .. } | Request::Unread { .. } => {
                    Some(answer_read(req, &self.read_gate, &self.entered))
                }
                _ => None,
            })
        }
        fn commit(&mut self) -> Result<(), StoreError> {
            Ok(())
        }
        fn rollback(&mut self) {}
        fn reader(&mut self) -> Result<Option<Box<dyn Reader>>, StoreError> {
            Ok(Some(Box::new(SplitReader {
                read_gate: self.read_gate.clone(),
                entered: self.entered.clone(),
            })))
        }
    }

    impl Reader for SplitReader {
        fn begin(&mut self) -> Result<(), StoreError> {
            Ok(())
        }
        fn read(&mut self, req: &Request) -> Result<Reply, StoreError> {
            Ok(answer_read(req, &self.read_gate, &self.entered))
        }
        fn end(&mut self) {}
    }

    fn history(seq: u64) -> Request {
        Request::History {
            ticket: Ticket {
                desk: Desk::Http,
                seq,
            },
            query: HistoryQuery {
                target: Target::Room("r".into()),
                before: None,
                after: None,
                limit: 50,
                offset: 1_000_000,
            },
        }
    }

    fn put(id: MsgId) -> Request {
        Request::PutMessage {
            msg: StoredMessage {
                id,
                room: Some("r".into()),
                from: 1,
                to: None,
                content: "x".into(),
                timestamp_ms: 0,
                seq: 0,
                ..StoredMessage::default()
            },
            client_id: None,
            mentions: Vec::new(),
        }
    }

    /// The next reply, waiting for the store to ring `wake` (bounded, so a
    /// reply that never comes fails the test instead of hanging it).
    fn next_reply(store: &StoreHandle, woken: &StdReceiver<()>) -> Reply {
        loop {
            if let Some(r) = store.try_reply() {
                return r;
            }
            woken
                .recv_timeout(Duration::from_secs(10))
                .expect("storage rang no wake");
        }
    }

    /// A read that is stuck (the reader is inside it and will not finish
    /// until the test says so) does not hold up a message submitted after
    /// it: `MessageStored` arrives while the read is still running, and the
    /// read's reply comes after it is let go. Were reads on the writer, the
    /// insert would wait behind the read and no reply would come.
    #[test]
    fn a_slow_read_does_not_delay_a_commit() {
        let (release, gate) = mpsc::channel();
        let (entered_tx, entered) = mpsc::channel();
        let (woke, woken) = mpsc::channel();
        let backend = Split {
            write_gate: None,
            read_gate: Arc::new(Mutex::new(gate)),
            entered: entered_tx,
        };
        let mut store = StoreHandle::spawn(backend, 64, move || {
            let _ = woke.send(());
        });
        store.submit(history(1)).unwrap();
        entered
            .recv_timeout(Duration::from_secs(10))
            .expect("the read started");
        store.submit(put(7)).unwrap();
        assert!(
            matches!(
                next_reply(&store, &woken),
                Reply::MessageStored { key: 7, .. }
            ),
            "the commit was answered first"
        );
        assert_eq!(store.read_depth(), 0, "the read was taken, not queued");
        release.send(()).unwrap();
        assert!(matches!(
            next_reply(&store, &woken),
            Reply::History {
                ticket: Ticket { seq: 1, .. },
                ..
            }
        ));
        store.join();
    }

    /// With both threads stalled, each queue is bounded on its own: reads
    /// are refused `Busy` once the read queue is full (plus the one read in
    /// the reader's hands), without making the writer look backlogged, and
    /// writes are still accepted up to their own bound, which does make it
    /// backlogged. Once both threads go on, every accepted request of either
    /// kind is answered exactly once through the one reply channel.
    #[test]
    fn both_threads_answer_and_each_queue_is_bounded() {
        const CAP: usize = 64;
        let (release_writes, write_gate) = mpsc::channel();
        let (release_reads, read_gate) = mpsc::channel();
        let (entered_tx, entered) = mpsc::channel();
        let backend = Split {
            write_gate: Some(Arc::new(Mutex::new(write_gate))),
            read_gate: Arc::new(Mutex::new(read_gate)),
            entered: entered_tx,
        };
        let (woke, woken) = mpsc::channel();
        let mut store = StoreHandle::spawn(backend, CAP, move || {
            let _ = woke.send(());
        });
        store.submit(history(0)).unwrap();
        entered.recv_timeout(Duration::from_secs(10)).unwrap();
        let mut reads = 1;
        while store.submit(history(reads)).is_ok() {
            reads += 1;
            assert!(reads as usize <= CAP + 1, "the read bound did not hold");
        }
        assert_eq!(reads as usize, CAP + 1, "refused early");
        assert_eq!(store.read_depth(), CAP);
        assert!(
            !store.is_backlogged() && store.has_caught_up(),
            "queued reads do not pause chat input"
        );
        let mut writes = 0;
        while store.submit(put(writes + 1)).is_ok() {
            writes += 1;
            assert!(
                writes as usize <= CAP + STORE_BATCH,
                "the write bound did not hold"
            );
        }
        assert!(writes as usize >= CAP, "refused early at {writes}");
        assert!(store.is_backlogged());
        assert!(store.depth() >= 2 * CAP, "the gauge counts both queues");
        for _ in 0..reads {
            let _ = release_reads.send(());
        }
        for _ in 0..writes {
            let _ = release_writes.send(());
        }
        let (mut read_seqs, mut stored) = (Vec::new(), Vec::new());
        while read_seqs.len() < reads as usize || stored.len() < writes as usize {
            match next_reply(&store, &woken) {
                Reply::History { ticket, .. } => read_seqs.push(ticket.seq),
                Reply::MessageStored { key, .. } => stored.push(key),
                other => panic!("unexpected {other:?}"),
            }
        }
        read_seqs.sort_unstable();
        assert_eq!(read_seqs, (0..reads).collect::<Vec<_>>());
        assert_eq!(stored, (1..=writes).collect::<Vec<_>>(), "writes in order");
        assert_eq!(store.depth(), 0);
        assert!(store.has_caught_up() && !store.is_backlogged());
        store.join();
        assert!(store.try_reply().is_none(), "nothing answered twice");
    }
}
