//! Storage behind a narrow interface: the loop never calls a database.
//!
//! The loop sends [`Request`]s to storage and gets [`Reply`]s back over one
//! channel, with the loop's `Waker` rung after every batch. Storage is
//! generic over a [`Backend`]; two ship: SQLite ([`sqlite::Sqlite`]) for a
//! single node, PostgreSQL ([`postgres::Postgres`]) for cluster mode, where
//! several nodes share one database. The reactor, the hub and the HTTP
//! routes only ever see a [`Storage`] (`StoreHandle`).
//!
//! This file is the storage threads and the traits a backend implements;
//! `rows.rs` holds the data, `request.rs` the requests and replies with
//! every fact about each request.
//!
//! Two threads, one per kind of work. The *writer* applies every write (and
//! `Drain`) in queue order, in batched transactions. The *reader*, on its own
//! connection ([`Backend::reader`]), answers the reads ([`Facts::is_read`]:
//! history, search, unread counts, a cluster's catch-up, resync and
//! look-ups), one snapshot each. A slow read (a deep `OFFSET`, a
//! 1000-message replay) therefore never delays a commit, hence an ack. A
//! backend with no second connection (SQLite in memory) gets every request
//! on the writer, in queue order.
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
//! Message keys: the loop numbers every message it submits (continuing from
//! the database's newest id at start), so that its reply finds the waiting
//! message without a round trip. SQLite stores that number as the id;
//! PostgreSQL draws the id for the whole cluster in the append's
//! transaction and answers it in `MessageStored`. Either way a message is
//! delivered, and acked, only when the commit that holds it comes back.

pub mod accounts;
#[cfg(test)]
pub(crate) mod accounts_conformance;
#[cfg(test)]
pub(crate) mod conformance;
mod files;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod migrate;
pub mod ops;
pub mod postgres;
mod request;
mod rows;
pub mod sqlite;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

pub use accounts::{
    Account, AccountAnswer, AccountNews, AccountRead, AccountRefusal, AccountSettings,
    AccountWrite, AccountsSnapshot, Audit, AuditRow, Ban, Ended, InviteRow, PasswordHash, Role,
    RoomNews, SessionRow, Sid, UserId, UserRow,
};
pub use files::{
    Attachment, BlobKey, FileId, FileRow, ImageInfo, PostRefusal, attachable, decode_attachments,
    encode_attachments,
};
pub use request::{
    Desk, Facts, Reply, Request, Ticket, Who, may_change, membership_audit, moderation_audit,
};
pub use rows::{
    Change, ChangeKind, Conflict, HistoryQuery, MsgId, PrivateRoomRow, PushProfile,
    PushSubscription, Reaction, Refusal, SearchQuery, Seq, Snapshot, StoredMessage, Target,
    UnreadCount, decode_reactions, encode_reactions, search_words, toggle_reaction,
};

use crate::config::{STORE_BATCH, STORE_PROBE};
use crate::files::FileStore;

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
/// releases it. Which requests need one depends on the engine, and each
/// asks the request ([`Request::facts`]): SQLite, where a failed statement
/// undoes just itself, those that [write several
/// statements](Facts::writes_several_statements); PostgreSQL, which aborts
/// the whole transaction on any failed statement (every later one fails
/// until `ROLLBACK`), every request that [may fail
/// alone](Facts::may_fail_alone).
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
    /// Opens the one transaction of a batch. An engine with one write lock
    /// for the whole database (SQLite) takes it now, so that a lock held
    /// elsewhere fails the batch up front, not halfway.
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
    /// A second connection for the reads ([`Facts::is_read`]), to run on
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
    /// Where this store keeps file bytes ([`FileStore`]): beside the
    /// database, in the engine's own way; called once, before the threads
    /// start. `None` (the default) when it has nowhere to keep them (an
    /// in-memory database): the file routes then answer 503.
    fn file_store(&mut self) -> Result<Option<Arc<dyn FileStore>>, StoreError> {
        Ok(None)
    }
}

/// The read side of a backend ([`Backend::reader`]): answers the reads
/// ([`Facts::is_read`]) from committed data, on the reader thread. Per
/// read: `begin`, one `read`, `end`.
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
    /// The reads ([`Facts::is_read`]), when the backend has a reader.
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
            Some(reads) if req.facts().is_read => reads.send(req, self.capacity),
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
                log::error!("storage: {} failed: {e}", req.facts().name);
                req.failure(false)
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
        out.extend(batch.iter().filter_map(|r| r.failure(true)));
        return (published.lock(), false);
    }
    let start = out.len();
    if let Err(e) = backend.execute_batch(batch, out) {
        log::error!("storage: the batch of {} fails: {e}", batch.len());
        backend.rollback();
        out.truncate(start);
        out.extend(batch.iter().filter_map(|r| r.failure(true)));
        return (published.lock(), false);
    }
    let guard = published.lock();
    if let Err(e) = backend.commit() {
        log::error!("storage: commit of {} requests failed: {e}", batch.len());
        backend.rollback();
        out.truncate(start);
        out.extend(batch.iter().filter_map(|r| r.failure(true)));
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
                req.facts().name
            )));
        }
        Err(e) => failed_alone(req, &e, out),
    }
    Ok(())
}

/// A request that failed on its own (the batch goes on): logged, and
/// answered with its failure reply, if it has one.
pub fn failed_alone(req: &Request, e: &StoreError, out: &mut Vec<Reply>) {
    log::error!("storage: {} failed: {e}", req.facts().name);
    out.extend(req.failure(false));
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
            other => panic!("{} is not a read", other.facts().name),
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
                    attachments: Vec::new(),
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
                reader: 1,
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
