//! Storage behind a narrow interface: the loop never calls a database.
//!
//! The loop sends [`Request`]s to one storage thread and gets [`Reply`]s back
//! over a channel, with the loop's `Waker` rung after every batch. The thread
//! is generic over a [`Backend`]; SQLite ([`sqlite::Sqlite`]) is the one that
//! ships, and a PostgreSQL backend is one more `impl Backend` — the reactor,
//! the hub and the HTTP routes only ever see `StoreHandle`.
//!
//! Why one thread for reads *and* writes: requests are applied in the order
//! the loop sent them, so a history read queued after a message insert always
//! sees that message (read-your-writes without a commit watermark). The cost,
//! admitted: a read waits behind the batch in front of it. A pool of readers
//! would need the loop to track which ids are committed before it may ask them.
//!
//! Why the loop assigns ids: message ids come from the loop's counter (continued
//! from the database's maximum at start), so fan-out never waits for SQLite;
//! only the sender's `ack` waits for the commit that carries the message.

pub mod sqlite;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use crate::config::STORE_BATCH;

/// Users are numbered from 1 by the loop.
pub type UserId = u32;
/// Message ids: unique and increasing across the server.
pub type MsgId = u64;

/// A user as stored, password hash included (the loop keeps it to verify logins).
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone)]
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

/// One chat message as stored and as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: MsgId,
    /// `Some` for a room message.
    pub room: Option<String>,
    pub from: UserId,
    /// `Some` for a private message.
    pub to: Option<UserId>,
    pub content: String,
    pub timestamp_ms: i64,
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
    Room(String, u64),
    /// Messages from this user to the caller not yet read.
    Direct(UserId, u64),
}

/// Everything the loop keeps in memory, read once before the loop starts.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub users: Vec<UserRow>,
    pub private_rooms: Vec<PrivateRoomRow>,
    /// Public rooms that have at least one message.
    pub public_rooms: Vec<String>,
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
    /// Reply: `UserStored` / `UserFailed`.
    PutUser(UserRow),
    /// Reply: `MessageStored`, `MessageExists` (the same user's `client_id`
    /// is already stored: a retry the loop no longer remembered), or
    /// `MessageFailed`.
    PutMessage {
        msg: StoredMessage,
        client_id: Option<String>,
    },
    /// A public room is getting its first message (sent until one commits;
    /// storing it twice is harmless). No reply.
    PutPublicRoom { name: String },
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
    /// Reply: `Drained`, after everything sent before it is committed.
    Drain,
}

/// What storage answers, always after the batch holding the request committed.
#[derive(Debug)]
pub enum Reply {
    UserStored(UserId),
    UserFailed(UserId),
    MessageStored(MsgId),
    /// Not stored again: `existing` is the message this user already stored
    /// under the same `client_id`, at `timestamp_ms`.
    MessageExists {
        id: MsgId,
        existing: MsgId,
        timestamp_ms: i64,
    },
    MessageFailed(MsgId),
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

/// A storage engine. Startup calls (`load`, settings) run before the loop
/// exists, outside any batch. The rest run on the storage thread, for every
/// batch in this order: `begin`, `execute` once per request, `commit`, and
/// `rollback` only when that `commit` failed.
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
pub trait Backend: Send + 'static {
    /// Reads the state the loop keeps in memory.
    fn load(&mut self) -> Result<Snapshot, StoreError>;
    /// Reads a setting (e.g. the generated JWT secret).
    fn setting(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes a setting, durably, before returning.
    fn put_setting(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Opens the one transaction of a batch, taking the write lock now (so a
    /// lock held elsewhere fails the batch up front, not halfway).
    fn begin(&mut self) -> Result<(), StoreError>;
    /// Applies one request inside the open transaction, wholly or not at
    /// all, and returns its reply, if it has one. On `Err` none of this
    /// request's effects remain and the transaction is still usable: the
    /// requests after it execute, and those before it still commit.
    fn execute(&mut self, req: &Request) -> Result<Option<Reply>, StoreError>;
    /// Makes every request of the batch that succeeded durable at once. On
    /// `Err` none of them is; the caller then calls `rollback` and reports
    /// every write of the batch as failed.
    fn commit(&mut self) -> Result<(), StoreError>;
    /// Ends the transaction after a failed `commit` or an `execute` that
    /// aborted the batch, so the next `begin` starts clean. It has no caller
    /// to answer; failures are logged.
    fn rollback(&mut self);
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
}

impl Storage for StoreHandle {
    fn submit(&mut self, req: Request) -> Result<(), Busy> {
        StoreHandle::submit(self, req)
    }
    fn depth(&self) -> usize {
        StoreHandle::depth(self)
    }
}

/// The loop's end of the storage thread.
pub struct StoreHandle {
    /// Unbounded in type, bounded by `depth`: std's `sync_channel` would
    /// allocate and touch all `capacity` slots up front (megabytes of RSS
    /// for a queue that is almost always nearly empty); this one allocates
    /// small blocks as it fills, and `submit` enforces the same bound.
    tx: Option<Sender<Request>>,
    rx: Receiver<Reply>,
    /// Requests sent and not yet taken by the thread (for `/metrics`).
    depth: Arc<AtomicUsize>,
    /// Requests in flight at most; `submit` answers `Busy` past it.
    capacity: usize,
    thread: Option<JoinHandle<()>>,
}

impl StoreHandle {
    /// Starts the storage thread. `wake` is called after each batch's replies
    /// are sent (the loop passes its `mio::Waker`).
    pub fn spawn<B: Backend>(
        backend: B,
        capacity: usize,
        wake: impl Fn() + Send + 'static,
    ) -> StoreHandle {
        let (tx, req_rx) = mpsc::channel();
        let (reply_tx, rx) = mpsc::channel();
        let depth = Arc::new(AtomicUsize::new(0));
        let thread_depth = depth.clone();
        let thread = std::thread::Builder::new()
            .name("hubbub-store".into())
            .spawn(move || run_store(backend, req_rx, reply_tx, thread_depth, wake))
            .expect("spawn storage thread");
        StoreHandle {
            tx: Some(tx),
            rx,
            depth,
            capacity,
            thread: Some(thread),
        }
    }

    /// Queues a request without blocking.
    pub fn submit(&mut self, req: Request) -> Result<(), Busy> {
        let tx = self.tx.as_ref().ok_or(Busy)?;
        if self.depth.load(Ordering::Relaxed) >= self.capacity {
            return Err(Busy);
        }
        self.depth.fetch_add(1, Ordering::Relaxed);
        tx.send(req).map_err(|_| {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            Busy
        })
    }

    /// The next reply, if one is ready.
    pub fn try_reply(&self) -> Option<Reply> {
        self.rx.try_recv().ok()
    }

    /// Storage is behind (half its queue in use): the loop should stop
    /// taking new work from clients until it `has_caught_up`.
    pub fn is_backlogged(&self) -> bool {
        self.depth() >= self.capacity / 2
    }

    /// Storage is back under a quarter of its queue.
    pub fn has_caught_up(&self) -> bool {
        self.depth() <= self.capacity / 4
    }

    /// Requests waiting for the storage thread.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Closes the queue and waits for the thread to commit what it holds.
    /// Only called at shutdown, after `Drain` was answered, so the wait is short.
    pub fn join(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            log::error!("storage thread panicked");
        }
    }
}

/// The storage thread: block for one request, take whatever else is queued (up
/// to a batch), apply it all in one transaction, then send every reply.
fn run_store<B: Backend>(
    mut backend: B,
    rx: Receiver<Request>,
    replies: mpsc::Sender<Reply>,
    depth: Arc<AtomicUsize>,
    wake: impl Fn(),
) {
    crate::priority::lower_current_thread(crate::priority::STORE_NICE);
    let mut batch = Vec::with_capacity(STORE_BATCH);
    let mut out = Vec::with_capacity(STORE_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < STORE_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        depth.fetch_sub(batch.len(), Ordering::Relaxed);
        apply_batch(&mut backend, &batch, &mut out);
        batch.clear();
        let mut loop_gone = false;
        for reply in out.drain(..) {
            loop_gone |= replies.send(reply).is_err();
        }
        if loop_gone {
            // The loop is gone (shutdown): keep committing what is queued.
            continue;
        }
        wake();
    }
}

/// One transaction for the whole batch. A request that fails alone gets its
/// failure reply; a failure that aborts the transaction, or a failed commit,
/// turns every reply of the batch into a failure, because nothing of the
/// batch is durable. The thread goes on with the next batch either way: when
/// the disk has room again, writes succeed again without a restart.
pub(crate) fn apply_batch<B: Backend>(backend: &mut B, batch: &[Request], out: &mut Vec<Reply>) {
    if let Err(e) = backend.begin() {
        log::error!("storage: begin failed: {e}");
        out.extend(batch.iter().filter_map(failure_reply));
        return;
    }
    let start = out.len();
    for req in batch {
        match backend.execute(req) {
            Ok(Some(reply)) => out.push(reply),
            Ok(None) => {}
            Err(e) if e.aborts_batch => {
                log::error!(
                    "storage: {} failed, so the batch of {} fails: {e}",
                    request_name(req),
                    batch.len()
                );
                backend.rollback();
                out.truncate(start);
                out.extend(batch.iter().filter_map(failure_reply));
                return;
            }
            Err(e) => {
                log::error!("storage: {} failed: {e}", request_name(req));
                out.extend(failure_reply(req));
            }
        }
    }
    if let Err(e) = backend.commit() {
        log::error!("storage: commit of {} requests failed: {e}", batch.len());
        backend.rollback();
        out.truncate(start);
        out.extend(batch.iter().filter_map(failure_reply));
    }
}

/// The reply a request gets when it could not be applied (or its batch
/// could not be committed).
fn failure_reply(req: &Request) -> Option<Reply> {
    match req {
        Request::PutUser(u) => Some(Reply::UserFailed(u.id)),
        Request::PutMessage { msg, .. } => Some(Reply::MessageFailed(msg.id)),
        Request::PutPrivateRoom { ticket, .. }
        | Request::AddMember { ticket, .. }
        | Request::RemoveMember { ticket, .. } => Some(Reply::Failed { ticket: *ticket }),
        Request::History { ticket, .. } => Some(Reply::HistoryFailed { ticket: *ticket }),
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
}
