//! The PostgreSQL backend, for cluster mode: several nodes share one
//! database. It owns the schema (and its migrations), the statements behind
//! each [`Request`], the sequencing of messages within each room and
//! conversation, and its two connections (the writer's, and the reader's
//! from [`Postgres::reader`]), which it reconnects after a failure.
//!
//! Why the synchronous `postgres` client: the storage threads are blocking
//! threads already (one batch, one read at a time), so a blocking client
//! fits them as rusqlite does. It drives tokio-postgres on a small runtime
//! private to the calling thread, so the reactor never sees a future and
//! the rest of the crate stays free of async. No TLS: the database must be
//! on loopback or a private network the operator trusts; a connection
//! string asking for `sslmode=require` fails to connect rather than going
//! out in clear (the default, `prefer`, connects in clear).
//!
//! Sequencing ([`crate::store::Seq`]): each room and each conversation has
//! one row in `targets` (`r:<room>`, `d:<lo>:<hi>`) holding its newest
//! `seq`. A batch's first append to a target locks that row until the
//! batch commits (`INSERT … ON CONFLICT DO UPDATE … RETURNING seq`) and
//! reads the seq; the batch counts on from there in memory ([`Batch`]) and
//! writes every row it moved once, just before `COMMIT` ([`flush`]).
//! Updating the row per message instead would cost a round trip each and
//! leave one dead row version per message for the next update to walk.
//! Message ids are drawn from the global `message_ids` sequence by the
//! insert, while the row lock is held. So appends to one target serialize
//! on its row across every node: seqs are 1, 2, 3, … without a gap among
//! committed messages (a batch that rolls back takes its seqs with it; the
//! unique `(target, seq)` index would refuse a duplicate), and ids increase
//! within a target in seq order, which is the order messages are delivered
//! in. Ids drawn by a batch that rolled back are skipped: ids have gaps,
//! seqs have none.
//!
//! Deadlocks: a batch appends to its targets in arrival order, holding each
//! row lock until it commits, so two nodes whose batches share targets
//! would lock them in different orders and deadlock; PostgreSQL breaks that
//! only after `deadlock_timeout` (1 s) by aborting one of them (40P01, a
//! batch failure: every client told `busy`). `execute` sees one request at
//! a time, and the bulk path below one run of messages, so neither can
//! lock a whole batch's targets up front in key order.
//! Instead a batch takes one advisory lock ([`APPEND_LOCK`]) at its first
//! append and holds it to its commit: appending batches of all nodes take
//! turns, and the row locks are never contended at all. Measured on two
//! writers appending to 5 shared rooms in batches of 50 (the concurrency
//! test): without the lock, 63 deadlocks for 160 batches and 62 messages/s;
//! with it, none and about 2000 messages/s. The cost is that appends of two
//! nodes never overlap, even to different rooms; batching makes up for it
//! (a node waiting for its turn gathers a bigger batch, and one commit
//! serves it). Batches without appends (read markers, last-seen times) do
//! not take it. The lock is also what makes the bulk path's look-up of
//! client ids before its insert race-free (see [`append_run`]).
//!
//! Bulk appends ([`Backend::execute_batch`], [`append_run`]): the per-request
//! path costs one round trip per message (`insert_message`, answered before
//! the next is sent), which capped a busy node at about 7.5 k messages/s
//! however large its batches (240-430 messages per transaction in the
//! `persist_pg` benchmark; BENCHMARKS.md, "Cluster"). So a run of
//! [`BULK_MIN`] or more consecutive `PutMessage` requests is appended in at
//! most four statements, whatever its length: the append lock (once per
//! batch); the rows of the targets the batch had not appended to yet
//! (`lock_targets`, one statement for all of them); the client ids of the
//! run already stored (`existing_many`, only when a message has one); and
//! one `INSERT … SELECT … FROM unnest(…) WITH ORDINALITY` of every new row
//! (`insert_messages`). Seqs are assigned in memory, in request order, as
//! the per-request path does; ids are drawn by the insert, ranked, and
//! given out in array order, so they increase with seq within a target. A
//! client id stored before (by any node, or earlier in this batch) or
//! repeated within the run is `MessageExists` and takes no seq (nor an id:
//! the per-request path draws one for a retry and drops it; ids have gaps
//! anyway). Other requests keep their own path and their place: a run ends
//! at the first request that is not a message, which is applied before the
//! next run, so a `PutPublicRoom` or a read on the writer sees every
//! message before it. The replies, and the rows, are the per-request
//! path's (a test runs the same batches through both). The costs: the run's
//! columns travel as arrays (one parameter each, the whole run in memory
//! twice, a few megabytes at most for [`crate::config::STORE_BATCH`]
//! messages), and a failure of any of those statements fails the whole batch
//! — as any failure of a message's statements already did.
//!
//! Atomic requests (the `Backend` contract): PostgreSQL aborts the whole
//! transaction on any failed statement, so a request that can fail on its
//! own (a unique name, a room that exists, a read) runs inside `SAVEPOINT
//! r` and, on failure, `ROLLBACK TO SAVEPOINT r`, leaving the batch usable.
//! The frequent writes (`PutMessage`, `MarkRead`, `SetLastSeen`,
//! `PutPublicRoom`) run without one: their input is checked first (a NUL
//! character, which PostgreSQL text cannot hold, is refused before any
//! statement), after which their statements cannot fail on data (no
//! foreign keys or checks they could break; a duplicate `client_id` is `ON
//! CONFLICT DO NOTHING`), so any failure there is the transaction's own
//! and aborts the batch (in the bulk path too: a message refused on its
//! input is answered as failed and left out of the run's statements). That
//! saves two round trips per message and keeps
//! a batch of 4096 appends from opening 4096 subtransactions (past 64 per
//! transaction, every other session's snapshot checks get slower).
//!
//! Replies, edits, deletes, reactions, mentions, search (schema 2): the
//! same rules as SQLite's, request for request.
//! - A reply (`reply_to`) must name a live message of its own target; the
//!   check runs under [`APPEND_LOCK`], and so does every edit, delete and
//!   reaction ([`changes_a_message`]), so a parent cannot be deleted on
//!   another node between the check and the commit, and every row lock on
//!   `messages` is taken by the one batch holding the append lock (no
//!   deadlock between a batch holding a message row and waiting for the
//!   append lock and one holding the lock and reading that row). The bulk
//!   path keeps replies and mentions in bulk: one look-up of every parent
//!   the run names (`reply_parents`) and one insert of every mention row
//!   (`insert_mentions`), each only when the run has any, so a run without
//!   them runs exactly the statements it ran before.
//! - An edit, delete or reaction reads its message `FOR UPDATE` (the row
//!   stays locked to the commit), so a reaction's read-modify-write of the
//!   `reactions` column is never interleaved with another node's.
//! - Search ([`search`]): a `tsv` column (the words of `content`, cut by
//!   hubbub's rule, [`search_text`], which queries are cut by too, so a
//!   search matches what SQLite's matches whatever the database's locale)
//!   with a GIN index; see `search` for the plans. Measured on 1 M
//!   messages (`EXPLAIN ANALYZE`, 20 results): a word in 10 messages
//!   0.3 ms (GIN), in 300: 3 ms; a word in 37 % of them 1.1 ms (backward
//!   scan of the primary key, stopping at the 20th match). The weak case:
//!   a word frequent only where the user may not read (5 % of all
//!   messages, all in private rooms): the backward scan reads every row,
//!   1.1 s; the GIN index is no cure (0.44 s: every match is fetched to be
//!   refused). Scoped to a room or conversation, every case measured is
//!   under 40 ms. GiST instead of GIN: 28 ms for the rare word, twice the
//!   size. The cost on the bulk path (release build, batches of 4096):
//!   about 50 ms a batch instead of 33. A generated column (`to_tsvector`
//!   of `content`, ASCII punctuation translated to spaces) added about
//!   twice as much (debug build: +65 ms a batch against +33), and its
//!   words still depended on the locale.
//!
//! Failures ([`classify`]): connection-level errors (a closed connection,
//! I/O, class `08`, `57P01` admin shutdown and the rest of class `57`), the
//! transaction's own (class `40`: serialization, deadlock; `25`), lock
//! timeouts (`55P03`, a lock held elsewhere, as SQLite's `BUSY`), resources
//! (`53`: disk full) and system errors (`58`, `XX`) abort the batch;
//! constraint and data errors (`23`, `22`, …) fail one request.
//!
//! Reconnection: a connection that is closed, or whose last call failed at
//! the connection level, is dropped; the next `Backend::begin` (writer) or
//! `Reader::begin` (reader) connects again, once per call, failing fast with
//! [`StoreError::batch`] while PostgreSQL is down (the writer's health probe
//! calls `begin` every `STORE_PROBE`). A `BEGIN` that fails on an old
//! connection (PostgreSQL restarted while the node was idle) is retried
//! once on a new one, so an idle node's first batch after a restart does
//! not fail.

use std::collections::HashMap;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, Config, Row, Statement};

use super::{
    Backend, Change, ChangeKind, Conflict, HistoryQuery, MsgId, PasswordHash, PrivateRoomRow,
    Reader, Refusal, Reply, Request, SearchQuery, Seq, Snapshot, StoreError, StoredMessage, Target,
    UnreadCount, UserId, UserRow, decode_reactions, encode_reactions, execute_one, failed_alone,
    may_change, toggle_reaction,
};
use crate::config::CLIENT_ID_WINDOW;
use crate::tls::services::{connect_postgres, postgres_url};

/// Schema versions, applied in order; `schema_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE settings (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
-- Ids come from the identity (several nodes sign users up at once) and are
-- u32 in Rust, hence the check.
CREATE TABLE users (
    id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY
                 CHECK (id BETWEEN 1 AND 4294967295),
    username     TEXT NOT NULL,
    email        TEXT NOT NULL,
    pw_iter      BIGINT NOT NULL,
    pw_salt      BYTEA NOT NULL,
    pw_hash      BYTEA NOT NULL,
    created_ms   BIGINT NOT NULL,
    last_seen_ms BIGINT
);
CREATE UNIQUE INDEX users_username ON users (lower(username));
CREATE UNIQUE INDEX users_email ON users (lower(email));
-- Every room that ever had a message or was created; owner_id is the
-- owner of a private room, the opener of a public one.
CREATE TABLE rooms (
    name     TEXT PRIMARY KEY,
    private  BOOLEAN NOT NULL,
    owner_id BIGINT
);
CREATE TABLE room_members (
    room    TEXT NOT NULL,
    user_id BIGINT NOT NULL,
    PRIMARY KEY (room, user_id)
);
-- The newest seq of each room (`r:<room>`) and conversation (`d:<lo>:<hi>`);
-- an append locks its target's row until its batch commits.
CREATE TABLE targets (key TEXT PRIMARY KEY, seq BIGINT NOT NULL);
CREATE SEQUENCE message_ids AS BIGINT;
-- `target` is the key above: one index serves a room's history and a
-- conversation's. A room message has `room`, a private one `to_id`.
CREATE TABLE messages (
    id        BIGINT PRIMARY KEY,
    target    TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    room      TEXT,
    from_id   BIGINT NOT NULL,
    to_id     BIGINT,
    content   TEXT NOT NULL,
    ts_ms     BIGINT NOT NULL,
    client_id TEXT
);
CREATE INDEX messages_target_id ON messages (target, id);
CREATE UNIQUE INDEX messages_target_seq ON messages (target, seq);
CREATE INDEX messages_to ON messages (to_id, id) WHERE to_id IS NOT NULL;
CREATE UNIQUE INDEX messages_client_id ON messages (from_id, client_id)
    WHERE client_id IS NOT NULL;
CREATE TABLE room_reads (
    user_id BIGINT NOT NULL,
    room    TEXT NOT NULL,
    last_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, room)
);
CREATE TABLE dm_reads (
    user_id BIGINT NOT NULL,
    peer_id BIGINT NOT NULL,
    last_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, peer_id)
);
"#,
    r##"
-- Issue 13: replies, edits, deletes, reactions (one JSON text column, as
-- SQLite's: `store::encode_reactions`), mentions for unread counts, and
-- full-text search. A deleted message keeps its row (its id and seq stay
-- taken, `Catchup` still steps past it, a retry of its client_id still
-- finds it) with empty content.
--
-- `tsv`: the words of `content` for search, cut by hubbub
-- (`search_text`: `store::search_words`' rule, the one queries are cut by)
-- and stored as lexemes (`array_to_tsvector`), not by PostgreSQL's parser:
-- that one keeps `alice@example.com`, `3.14` or `x.com/a` as one token
-- each (so `example` would not find the first), and its letters and case
-- depend on the database's locale (in the C locale `ÉCOLE` stays upper
-- case and `great👍` is one word). Written with the row by every insert,
-- edit and delete; filled for the messages already stored, and indexed
-- with GIN, by `migrate` right after this script (`fill_search_words`).
ALTER TABLE messages
    ADD COLUMN reply_to   BIGINT,
    ADD COLUMN edited_ms  BIGINT,
    ADD COLUMN deleted_ms BIGINT,
    ADD COLUMN reactions  TEXT,
    ADD COLUMN tsv        tsvector;
-- Who a room message mentions (`@name`), for unread mention counts.
CREATE TABLE mentions (
    user_id    BIGINT NOT NULL,
    room       TEXT NOT NULL,
    message_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, room, message_id)
);
CREATE INDEX mentions_message ON mentions (message_id);
"##,
];

/// The advisory lock key held while migrating ("hubbub" in ASCII), so two
/// nodes starting at once do not both run a migration.
pub(crate) const MIGRATION_LOCK: i64 = 0x6875_6262_7562;

/// The advisory lock a batch takes at its first append and holds until it
/// commits ("append" in ASCII): appends from every node serialize, batch by
/// batch, so their row locks on `targets` are never taken in two orders at
/// once (see the module doc: without it, two nodes' batches over shared
/// rooms deadlock nearly every time).
pub(crate) const APPEND_LOCK: i64 = 0x6170_7065_6e64;

/// How long connecting may take before `begin` gives up: short, because the
/// writer retries every `STORE_PROBE` while the database is down, and a
/// refused connection fails at once anyway.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long unacknowledged data may sit on a connection's socket before the
/// kernel drops it (`TCP_USER_TIMEOUT`): a database host that vanished
/// fails the batch in seconds instead of after TCP's quarter of an hour.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a statement waits for a row lock another node holds (its batch
/// is slow or stuck) before the batch fails with `55P03`: the counterpart
/// of SQLite's busy timeout. Deadlocks are found sooner, after
/// PostgreSQL's `deadlock_timeout`.
const LOCK_TIMEOUT: &str = "5s";

/// What the server's `pg_stat_activity` shows for hubbub's connections.
const APPLICATION_NAME: &str = "hubbub";

/// The shortest run of consecutive `PutMessage` requests that
/// [`append_run`] appends in bulk; shorter runs (a lone message, the usual
/// batch of a quiet server) go through `execute`, whose one `INSERT … ON
/// CONFLICT DO NOTHING` needs no separate look-up of the client id, so a
/// lone message costs one round trip instead of two.
const BULK_MIN: usize = 2;

/// The savepoint each failable request runs in.
const SAVEPOINT: &str = "SAVEPOINT r";
const RELEASE: &str = "RELEASE SAVEPOINT r";
const ROLLBACK_TO: &str = "ROLLBACK TO SAVEPOINT r; RELEASE SAVEPOINT r";

/// The room's or the conversation's key in `targets` and `messages.target`.
pub(crate) fn target_key(t: &Target) -> String {
    match t {
        Target::Room(room) => format!("r:{room}"),
        Target::Direct(a, b) => {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            format!("d:{lo}:{hi}")
        }
    }
}

/// [`target_key`] read back; `None` for a key this binary did not write.
fn parse_key(key: &str) -> Option<Target> {
    if let Some(room) = key.strip_prefix("r:") {
        return Some(Target::Room(room.to_string()));
    }
    let (lo, hi) = key.strip_prefix("d:")?.split_once(':')?;
    Some(Target::Direct(lo.parse().ok()?, hi.parse().ok()?))
}

/// The target a message is appended to.
pub(crate) fn message_target(
    room: Option<&str>,
    from: UserId,
    to: Option<UserId>,
) -> Option<String> {
    match (room, to) {
        (Some(room), _) => Some(target_key(&Target::Room(room.to_string()))),
        (None, Some(to)) => Some(target_key(&Target::Direct(from, to))),
        (None, None) => None,
    }
}

/// Why a statement of this backend failed: PostgreSQL's (or the
/// connection's) error, or data that cannot be stored or read as is.
#[derive(Debug)]
enum Fail {
    Pg(postgres::Error),
    Data(String),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Fail {
        Fail::Pg(e)
    }
}

type Res<T> = Result<T, Fail>;

/// Whether a PostgreSQL error ends the transaction (and the batch), not just
/// the request: see the module doc. An error that did not come from the
/// server (I/O, a closed connection, a protocol error) always does.
fn aborts_batch(e: &postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(code) => {
            *code == SqlState::LOCK_NOT_AVAILABLE
                || matches!(
                    &code.code()[..2],
                    "08" | "25" | "40" | "53" | "57" | "58" | "F0" | "XX"
                )
        }
    }
}

/// Whether the connection itself is gone after this error, so the next
/// `begin` must make a new one.
fn breaks_connection(e: &postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(code) => matches!(&code.code()[..2], "08" | "57"),
    }
}

/// The error as the caller sees it ([`classify`]d).
fn classify(f: &Fail) -> StoreError {
    match f {
        Fail::Pg(e) => StoreError {
            message: describe(e),
            aborts_batch: aborts_batch(e),
        },
        Fail::Data(m) => StoreError::request(m.clone()),
    }
}

/// The server's message with its SQLSTATE (and detail, which names the
/// key of a unique violation), or the client's error.
pub(crate) fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({}): {detail}", db.message(), db.code().code()),
            None => format!("{} ({})", db.message(), db.code().code()),
        },
        None => {
            // "error connecting to server" alone does not say whether it was
            // refused, timed out or failed TLS: the causes do.
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                let said = c.to_string();
                if !text.contains(&said) {
                    text.push_str(": ");
                    text.push_str(&said);
                }
                cause = c.source();
            }
            text
        }
    }
}

/// Refuses text PostgreSQL cannot store (a NUL character), before any
/// statement runs, so that the request fails alone.
fn check_text(texts: &[Option<&str>]) -> Res<()> {
    if texts.iter().flatten().any(|t| t.contains('\0')) {
        return Err(Fail::Data("text holds a NUL character".into()));
    }
    Ok(())
}

/// A stored user id (BIGINT) as the loop's [`UserId`].
fn user_id(v: i64) -> Res<UserId> {
    UserId::try_from(v).map_err(|_| Fail::Data(format!("user id {v} is out of range")))
}

fn opt_user_id(v: Option<i64>) -> Res<Option<UserId>> {
    v.map(user_id).transpose()
}

fn blob<const N: usize>(v: Vec<u8>) -> Res<[u8; N]> {
    v.try_into()
        .map_err(|v: Vec<u8>| Fail::Data(format!("expected {N} bytes, found {}", v.len())))
}

/// The statements a connection prepares once (one round trip each call
/// after that, instead of two).
struct Statements {
    append_lock: Statement,
    lock_target: Statement,
    set_heads: Statement,
    insert_message: Statement,
    existing: Statement,
    /// The bulk path's ([`append_run`]) counterparts of the three above.
    lock_targets: Statement,
    existing_many: Statement,
    insert_messages: Statement,
    put_user: Statement,
    public_room: Statement,
    last_seen: Statement,
    private_room: Statement,
    add_member: Statement,
    remove_member: Statement,
    remove_read: Statement,
    mark_room: Statement,
    mark_dm: Statement,
    history: Statement,
    catchup: Statement,
    unread_rooms: Statement,
    unread_dms: Statement,
    /// A room message's mention rows (`$1` users, `$2` rooms, `$3` ids).
    insert_mentions: Statement,
    remove_mentions: Statement,
    /// Where a live message lives, for a reply's check.
    reply_parent: Statement,
    reply_parents: Statement,
    /// The live message an edit, delete or reaction is about, row locked.
    locate: Statement,
    is_member: Statement,
    edit: Statement,
    delete: Statement,
    delete_mentions: Statement,
    set_reactions: Statement,
}

/// The columns [`row_to_message`] reads, in its order.
const MESSAGE_COLUMNS: &str =
    "id, room, from_id, to_id, content, ts_ms, seq, reply_to, edited_ms, reactions, deleted_ms";

/// Which messages user `$2` may read, over `messages m`: SQLite's
/// `MAY_READ`. Their conversations; rooms with a row that is public, or
/// private with them as owner or member. A room with messages but no row
/// (its write was lost) is readable by nobody, as the loop treats it.
const MAY_READ: &str = "((m.room IS NULL AND (m.from_id = $2 OR m.to_id = $2))
     OR EXISTS (SELECT 1 FROM rooms r WHERE r.name = m.room
                AND (NOT r.private OR r.owner_id = $2
                     OR EXISTS (SELECT 1 FROM room_members rm
                                WHERE rm.room = m.room AND rm.user_id = $2))))";

impl Statements {
    fn prepare(c: &mut Client) -> Result<Statements, postgres::Error> {
        Ok(Statements {
            append_lock: c.prepare("SELECT pg_advisory_xact_lock($1)")?,
            lock_target: c.prepare(
                "INSERT INTO targets (key, seq) VALUES ($1, 0)
                 ON CONFLICT (key) DO UPDATE SET seq = targets.seq RETURNING seq",
            )?,
            set_heads: c.prepare(
                "UPDATE targets AS t SET seq = v.seq
                 FROM unnest($1::text[], $2::bigint[]) AS v(key, seq) WHERE t.key = v.key",
            )?,
            insert_message: c.prepare(
                "INSERT INTO messages (id, target, seq, room, from_id, to_id, content, ts_ms, client_id,
                                       reply_to, tsv)
                 VALUES (nextval('message_ids'), $1, $2, $3, $4, $5, $6, $7, $8, $9,
                         array_to_tsvector(string_to_array($10::text, ' ')))
                 ON CONFLICT (from_id, client_id) WHERE client_id IS NOT NULL DO NOTHING
                 RETURNING id",
            )?,
            existing: c
                .prepare("SELECT id, ts_ms FROM messages WHERE from_id = $1 AND client_id = $2")?,
            // Keys distinct (ON CONFLICT DO UPDATE may not touch a row twice)
            // and sorted, so row locks are taken in key order.
            lock_targets: c.prepare(
                "INSERT INTO targets (key, seq) SELECT k.key, 0 FROM unnest($1::text[]) AS k(key)
                 ON CONFLICT (key) DO UPDATE SET seq = targets.seq RETURNING key, seq",
            )?,
            // One probe of the partial unique index `messages_client_id`
            // per client id (`client_id IS NOT NULL` lets the planner use
            // it). LATERAL … LIMIT 1 keeps it a probe: as a plain join, a
            // run of thousands of client ids makes the planner prefer a
            // hash join over a scan of every message (measured: 300 k
            // messages, 4000 client ids: 187 ms against 23 ms).
            existing_many: c.prepare(
                "SELECT v.from_id, v.client_id, m.id, m.ts_ms
                 FROM unnest($1::bigint[], $2::text[]) AS v(from_id, client_id)
                 CROSS JOIN LATERAL (
                     SELECT id, ts_ms FROM messages
                     WHERE from_id = v.from_id AND client_id = v.client_id
                       AND client_id IS NOT NULL
                     LIMIT 1) AS m",
            )?,
            // One row per array element. The ids are drawn first (`ids`,
            // materialized: `nextval` is volatile) and ranked, and the k-th
            // smallest goes to the k-th row (`ord`): ids increase in array
            // order whatever order `nextval` ran in, and the caller gets
            // them back in that order by sorting what `RETURNING` gives. No
            // `ON CONFLICT`: the caller looked the client ids up under the
            // append lock, so a conflict here is a broken invariant, and it
            // must fail the batch rather than skip a row and leave its seq
            // a gap.
            insert_messages: c.prepare(
                "WITH ids AS MATERIALIZED (
                     SELECT id, row_number() OVER (ORDER BY id) AS ord
                     FROM (SELECT nextval('message_ids') AS id
                           FROM generate_series(1, cardinality($1::text[]))) AS drawn)
                 INSERT INTO messages (id, target, seq, room, from_id, to_id, content, ts_ms, client_id,
                                       reply_to, tsv)
                 SELECT ids.id, v.target, v.seq, v.room, v.from_id, v.to_id, v.content, v.ts_ms,
                        v.client_id, v.reply_to, array_to_tsvector(string_to_array(v.words, ' '))
                 FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[],
                             $6::text[], $7::bigint[], $8::text[], $9::bigint[], $10::text[])
                      WITH ORDINALITY AS v(target, seq, room, from_id, to_id, content, ts_ms,
                                           client_id, reply_to, words, ord)
                 JOIN ids USING (ord)
                 RETURNING id",
            )?,
            put_user: c.prepare(
                "INSERT INTO users (username, email, pw_iter, pw_salt, pw_hash, created_ms, last_seen_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )?,
            public_room: c.prepare(
                "INSERT INTO rooms (name, private, owner_id) VALUES ($1, false, $2)
                 ON CONFLICT (name) DO NOTHING",
            )?,
            last_seen: c.prepare("UPDATE users SET last_seen_ms = $2 WHERE id = $1")?,
            private_room: c
                .prepare("INSERT INTO rooms (name, private, owner_id) VALUES ($1, true, $2)")?,
            add_member: c.prepare(
                "INSERT INTO room_members (room, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )?,
            remove_member: c
                .prepare("DELETE FROM room_members WHERE room = $1 AND user_id = $2")?,
            remove_read: c.prepare("DELETE FROM room_reads WHERE room = $1 AND user_id = $2")?,
            mark_room: c.prepare(
                "INSERT INTO room_reads (user_id, room, last_id) VALUES ($1, $2, $3)
                 ON CONFLICT (user_id, room)
                 DO UPDATE SET last_id = GREATEST(room_reads.last_id, excluded.last_id)",
            )?,
            mark_dm: c.prepare(
                "INSERT INTO dm_reads (user_id, peer_id, last_id) VALUES ($1, $2, $3)
                 ON CONFLICT (user_id, peer_id)
                 DO UPDATE SET last_id = GREATEST(dm_reads.last_id, excluded.last_id)",
            )?,
            // Deleted messages leave history; `Catchup` keeps them (with
            // their empty content), so a node can step its seq past them.
            history: c.prepare(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages
                 WHERE target = $1 AND id < $2 AND id > $3 AND deleted_ms IS NULL
                 ORDER BY id DESC LIMIT $4 OFFSET $5"
            ))?,
            catchup: c.prepare(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages
                 WHERE target = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            ))?,
            // Rooms with a read marker, rooms the user belongs to, and rooms
            // where someone mentioned them (the last two count from the
            // start); deleted messages do not count, and their mention rows
            // are gone.
            unread_rooms: c.prepare(
                "SELECT r.room,
                        (SELECT COUNT(*) FROM messages m
                         WHERE m.target = 'r:' || r.room AND m.id > r.last_id
                           AND m.from_id <> $1 AND m.deleted_ms IS NULL),
                        (SELECT COUNT(*) FROM mentions n
                         WHERE n.user_id = $1 AND n.room = r.room AND n.message_id > r.last_id)
                 FROM (SELECT room, last_id FROM room_reads WHERE user_id = $1
                       UNION ALL
                       SELECT room, 0 FROM (SELECT room FROM room_members WHERE user_id = $1
                                            UNION SELECT room FROM mentions WHERE user_id = $1) u
                         WHERE room NOT IN (SELECT room FROM room_reads WHERE user_id = $1)) r
                 ORDER BY r.room COLLATE \"C\"",
            )?,
            unread_dms: c.prepare(
                "SELECT m.from_id, COUNT(*) FROM messages m
                 LEFT JOIN dm_reads r ON r.user_id = $1 AND r.peer_id = m.from_id
                 WHERE m.to_id = $1 AND m.from_id <> $1 AND m.id > COALESCE(r.last_id, 0)
                   AND m.deleted_ms IS NULL
                 GROUP BY m.from_id ORDER BY m.from_id",
            )?,
            insert_mentions: c.prepare(
                "INSERT INTO mentions (user_id, room, message_id)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[])
                 ON CONFLICT DO NOTHING",
            )?,
            remove_mentions: c
                .prepare("DELETE FROM mentions WHERE room = $1 AND user_id = $2")?,
            reply_parent: c.prepare(
                "SELECT target FROM messages WHERE id = $1 AND deleted_ms IS NULL",
            )?,
            reply_parents: c.prepare(
                "SELECT id, target FROM messages WHERE id = ANY($1::bigint[]) AND deleted_ms IS NULL",
            )?,
            locate: c.prepare(
                "SELECT m.room, m.from_id, m.to_id, r.private, r.owner_id, m.reactions
                 FROM messages m LEFT JOIN rooms r ON r.name = m.room
                 WHERE m.id = $1 AND m.deleted_ms IS NULL
                 FOR UPDATE OF m",
            )?,
            is_member: c.prepare(
                "SELECT EXISTS (SELECT 1 FROM room_members WHERE room = $1 AND user_id = $2)",
            )?,
            edit: c.prepare(
                "UPDATE messages SET content = $2, edited_ms = $3,
                        tsv = array_to_tsvector(string_to_array($4::text, ' '))
                 WHERE id = $1",
            )?,
            delete: c.prepare(
                "UPDATE messages SET content = '', reactions = NULL, deleted_ms = $2,
                        tsv = ''::tsvector
                 WHERE id = $1",
            )?,
            delete_mentions: c.prepare("DELETE FROM mentions WHERE message_id = $1")?,
            set_reactions: c.prepare("UPDATE messages SET reactions = $2 WHERE id = $1")?,
        })
    }
}

/// A target the open batch appended to: the seq its (locked) row holds,
/// and the newest this batch assigned, which [`flush`] writes to the row.
struct Head {
    stored: i64,
    newest: i64,
}

/// What the writer's open transaction holds besides its statements.
#[derive(Default)]
struct Batch {
    /// [`APPEND_LOCK`] is held (taken at the batch's first append).
    append_locked: bool,
    /// Per target key.
    heads: HashMap<String, Head>,
}

/// Writes the seqs the batch assigned to their `targets` rows, in one
/// statement: before `COMMIT`, and before a read on the writer.
fn flush(c: &mut Conn, batch: &mut Batch) -> Res<()> {
    let (keys, seqs): (Vec<&str>, Vec<i64>) = batch
        .heads
        .iter()
        .filter(|(_, h)| h.newest != h.stored)
        .map(|(k, h)| (k.as_str(), h.newest))
        .unzip();
    if keys.is_empty() {
        return Ok(());
    }
    c.client.execute(&c.st.set_heads, &[&keys, &seqs])?;
    for h in batch.heads.values_mut() {
        h.stored = h.newest;
    }
    Ok(())
}

/// One connection and its prepared statements.
struct Conn {
    client: Client,
    st: Statements,
}

impl Conn {
    fn open(config: &Config) -> Result<Conn, StoreError> {
        let mut client = connect_postgres(config).map_err(|e| {
            StoreError::batch(format!("cannot connect to PostgreSQL: {}", describe(&e)))
        })?;
        let setup = (|| {
            client.batch_execute(&format!("SET lock_timeout = '{LOCK_TIMEOUT}'"))?;
            Statements::prepare(&mut client)
        })();
        match setup {
            Ok(st) => Ok(Conn { client, st }),
            Err(e) => Err(StoreError::batch(format!(
                "cannot prepare the PostgreSQL connection: {}",
                describe(&e)
            ))),
        }
    }
}

/// Connection settings from `url` (a `postgresql://` URL or `key=value`
/// pairs), with hubbub's timeouts where the URL names none.
pub(crate) fn parse_config(url: &str) -> Result<Config, StoreError> {
    let mut config: Config = postgres_url(url)
        .parse()
        .map_err(|e| StoreError::request(format!("bad PostgreSQL URL: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name(APPLICATION_NAME);
    }
    Ok(config)
}

/// The schema version that added `messages.tsv`.
const SEARCH_SCHEMA: usize = 2;

/// Messages whose words [`fill_search_words`] writes per statement.
const FILL_CHUNK: i64 = 10_000;

/// The longest word PostgreSQL stores as a lexeme (`MAXSTRLEN` − 1 bytes);
/// a longer one is left out of a message's words, as `to_tsvector` leaves
/// it out ("word is too long to be indexed"), and a search for one finds
/// nothing.
const MAX_LEXEME_BYTES: usize = 2046;

/// A message's words as `messages.tsv` stores them, one space between
/// each: [`search_words`](super::search_words)' rule (runs of letters and
/// digits, lower case), with no bound on their number, sorted and without
/// repeats. Turned into lexemes by `array_to_tsvector(string_to_array(…,
/// ' '))`, which parses nothing: a search matches exactly the words its
/// query was cut into by the same rule.
pub(crate) fn search_text(content: &str) -> String {
    let mut words: Vec<String> = content
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| w.len() <= MAX_LEXEME_BYTES)
        .collect();
    words.sort_unstable();
    words.dedup();
    words.join(" ")
}

/// The `tsquery` of a search's words: each one quoted (a quoted lexeme is
/// taken as it is, never as an operator, and `'` and `\` are escaped), all
/// of them required. `None` when nothing can match (no words, or one too
/// long to have been stored).
fn search_query(words: &[String]) -> Option<String> {
    if words.is_empty() || words.iter().any(|w| w.len() > MAX_LEXEME_BYTES) {
        return None;
    }
    let quoted: Vec<String> = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\\', "\\\\").replace('\'', "''")))
        .collect();
    Some(quoted.join(" & "))
}

/// Writes the words of every message already stored (schema 1 had none),
/// a chunk of ids per statement, then builds the GIN index over them (once,
/// after: faster than keeping it up to date row by row). Returns how many
/// messages it read.
fn fill_search_words(tx: &mut postgres::Transaction<'_>) -> Result<u64, postgres::Error> {
    let (mut last, mut n) = (0i64, 0u64);
    loop {
        let rows = tx.query(
            "SELECT id, content FROM messages WHERE id > $1 ORDER BY id LIMIT $2",
            &[&last, &FILL_CHUNK],
        )?;
        let Some(end) = rows.last() else { break };
        last = end.get(0);
        n += rows.len() as u64;
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        let words: Vec<String> = rows.iter().map(|r| search_text(r.get(1))).collect();
        tx.execute(
            "UPDATE messages AS m SET tsv = array_to_tsvector(string_to_array(v.words, ' '))
             FROM unnest($1::bigint[], $2::text[]) AS v(id, words) WHERE m.id = v.id",
            &[&ids, &words],
        )?;
    }
    tx.batch_execute("CREATE INDEX messages_tsv ON messages USING GIN (tsv)")?;
    Ok(n)
}

/// Brings the schema up to date: one transaction, under [`MIGRATION_LOCK`],
/// so a second node starting at once waits and then finds nothing to do.
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let fail = |e: postgres::Error| StoreError::request(format!("migration: {}", describe(&e)));
    let mut tx = client.transaction().map_err(fail)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(fail)?;
    let exists: bool = tx
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .map_err(fail)?
        .get(0);
    if !exists {
        tx.batch_execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            .map_err(fail)?;
    }
    let version = tx
        .query_opt("SELECT version FROM schema_version", &[])
        .map_err(fail)?
        .map_or(0, |r| r.get::<_, i32>(0)) as usize;
    if version > MIGRATIONS.len() {
        return Err(StoreError::request(format!(
            "database schema version {version} is newer than this binary ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.batch_execute(sql).map_err(fail)?;
        if i + 1 == SEARCH_SCHEMA {
            let n = fill_search_words(&mut tx).map_err(fail)?;
            log::info!("search words of {n} stored messages indexed");
        }
        log::info!("database migrated to schema version {}", i + 1);
    }
    if version < MIGRATIONS.len() {
        let v = MIGRATIONS.len() as i32;
        tx.execute("DELETE FROM schema_version", &[])
            .map_err(fail)?;
        tx.execute("INSERT INTO schema_version (version) VALUES ($1)", &[&v])
            .map_err(fail)?;
    }
    tx.commit().map_err(fail)
}

/// The writer's connection (and everything the server does outside the
/// batches: `load`, settings).
pub struct Postgres {
    config: Config,
    /// `None` after a connection-level failure, until `begin` reconnects.
    conn: Option<Conn>,
    /// A statement failed outside a savepoint since `begin`: PostgreSQL
    /// will turn `COMMIT` into a rollback, so `commit` must fail.
    spoiled: bool,
    batch: Batch,
}

/// The reader thread's connection: one REPEATABLE READ transaction per read.
pub struct PostgresReader {
    config: Config,
    conn: Option<Conn>,
}

impl Postgres {
    /// Connects to `url` and migrates the schema.
    pub fn open(url: &str) -> Result<Postgres, StoreError> {
        Postgres::open_config(parse_config(url)?)
    }

    pub(crate) fn open_config(config: Config) -> Result<Postgres, StoreError> {
        let mut client = connect_postgres(&config).map_err(|e| {
            StoreError::request(format!("cannot connect to PostgreSQL: {}", describe(&e)))
        })?;
        migrate(&mut client)?;
        drop(client);
        let conn = Conn::open(&config).map_err(|e| StoreError::request(e.message))?;
        Ok(Postgres {
            config,
            conn: Some(conn),
            spoiled: false,
            batch: Batch::default(),
        })
    }

    /// The connection, reconnecting when it is gone (once per call).
    fn connected(&mut self) -> Result<&mut Conn, StoreError> {
        connected(&self.config, &mut self.conn).map(|(c, _)| c)
    }

    /// The raw client, for `hubbub migrate`.
    pub(crate) fn client(&mut self) -> Result<&mut Client, StoreError> {
        self.connected().map(|c| &mut c.client)
    }

    /// Records a failure of the transaction: `commit` must not pretend, and
    /// a broken connection is dropped for `begin` to replace.
    fn failed(&mut self, e: &Fail) {
        self.spoiled = true;
        if let Fail::Pg(e) = e
            && breaks_connection(e)
        {
            self.conn = None;
        }
    }
}

/// `conn`, or a new connection when there is none or it is closed; and
/// whether it is new.
fn connected<'a>(
    config: &Config,
    conn: &'a mut Option<Conn>,
) -> Result<(&'a mut Conn, bool), StoreError> {
    if conn.as_ref().is_some_and(|c| c.client.is_closed()) {
        *conn = None;
    }
    let fresh = conn.is_none();
    if fresh {
        *conn = Some(Conn::open(config)?);
        log::info!("storage: connected to PostgreSQL");
    }
    Ok((conn.as_mut().expect("connected above"), fresh))
}

/// Starts a transaction with `sql` on `conn`, reconnecting first if needed,
/// and once more if an old connection turns out to be dead.
fn begin_on(config: &Config, conn: &mut Option<Conn>, sql: &str) -> Result<(), StoreError> {
    let (c, fresh) = connected(config, conn)?;
    let e = match c.client.batch_execute(sql) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    if !breaks_connection(&e) {
        return Err(StoreError::batch(describe(&e)));
    }
    *conn = None;
    if fresh {
        return Err(StoreError::batch(describe(&e)));
    }
    let (c, _) = connected(config, conn)?;
    c.client.batch_execute(sql).map_err(|e| {
        let message = describe(&e);
        if breaks_connection(&e) {
            *conn = None;
        }
        StoreError::batch(message)
    })
}

fn row_to_message(r: &Row) -> Res<StoredMessage> {
    Ok(StoredMessage {
        id: r.get::<_, i64>(0) as MsgId,
        room: r.get(1),
        from: user_id(r.get(2))?,
        to: opt_user_id(r.get(3))?,
        content: r.get(4),
        timestamp_ms: r.get(5),
        seq: r.get::<_, i64>(6) as Seq,
        reply_to: r.get::<_, Option<i64>>(7).map(|id| id as MsgId),
        edited_ms: r.get(8),
        reactions: decode_reactions(r.get::<_, Option<&str>>(9)),
        deleted: r.get::<_, Option<i64>>(10).is_some(),
    })
}

/// An id or count from the loop as a BIGINT parameter (ids stay far below
/// `i64::MAX`; a larger one saturates, which only widens a window).
fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `History`: see [`HistoryQuery`].
fn history(c: &mut Conn, q: &HistoryQuery) -> Res<Vec<StoredMessage>> {
    let key = target_key(&q.target);
    check_text(&[Some(&key)])?;
    let before = q.before.map_or(i64::MAX, big);
    let after = q.after.map_or(0, big);
    let (limit, offset) = (big(q.limit as u64), big(q.offset as u64));
    let rows = c
        .client
        .query(&c.st.history, &[&key, &before, &after, &limit, &offset])?;
    let mut out = rows.iter().map(row_to_message).collect::<Res<Vec<_>>>()?;
    out.reverse();
    Ok(out)
}

/// `Catchup`: the messages of `target` after `after`, by seq.
fn catchup(c: &mut Conn, target: &Target, after: Seq, limit: usize) -> Res<Vec<StoredMessage>> {
    let key = target_key(target);
    check_text(&[Some(&key)])?;
    let rows = c
        .client
        .query(&c.st.catchup, &[&key, &big(after), &big(limit as u64)])?;
    rows.iter().map(row_to_message).collect()
}

/// `Unread`: as SQLite's — rooms the user has read in, belongs to or was
/// mentioned in, with the count of messages from others newer than the
/// read marker and of mentions among them; then people who wrote to the
/// user. Deleted messages do not count.
fn unread(c: &mut Conn, user: UserId) -> Res<Vec<UnreadCount>> {
    let user = i64::from(user);
    let mut counts = Vec::new();
    for r in c.client.query(&c.st.unread_rooms, &[&user])? {
        let n: i64 = r.get(1);
        if n > 0 {
            counts.push(UnreadCount::Room(
                r.get(0),
                n as u64,
                r.get::<_, i64>(2) as u64,
            ));
        }
    }
    for r in c.client.query(&c.st.unread_dms, &[&user])? {
        counts.push(UnreadCount::Direct(
            user_id(r.get(0))?,
            r.get::<_, i64>(1) as u64,
        ));
    }
    Ok(counts)
}

/// Everything `load` returns, read on `client` inside whatever transaction
/// it is in (the caller's snapshot).
/// A `users` row selected as `id, username, email, pw_iter, pw_salt,
/// pw_hash, created_ms, last_seen_ms`.
fn user_row(r: &postgres::Row) -> Res<UserRow> {
    Ok(UserRow {
        id: user_id(r.get(0))?,
        username: r.get(1),
        email: r.get(2),
        password: PasswordHash {
            iterations: u32::try_from(r.get::<_, i64>(3))
                .map_err(|_| Fail::Data("iteration count out of range".into()))?,
            salt: blob(r.get(4))?,
            hash: blob(r.get(5))?,
        },
        created_ms: r.get(6),
        last_seen_ms: r.get(7),
    })
}

fn snapshot(client: &mut Client) -> Res<Snapshot> {
    let mut snap = Snapshot::default();
    for r in client.query(
        "SELECT id, username, email, pw_iter, pw_salt, pw_hash, created_ms, last_seen_ms
         FROM users ORDER BY id",
        &[],
    )? {
        snap.users.push(user_row(&r)?);
    }
    let rooms = client.query(
        "SELECT name, private, owner_id FROM rooms ORDER BY name COLLATE \"C\"",
        &[],
    )?;
    let members = client.query(
        "SELECT room, user_id FROM room_members ORDER BY room COLLATE \"C\", user_id",
        &[],
    )?;
    let mut members = members.iter().peekable();
    for r in &rooms {
        let name: String = r.get(0);
        let owner = opt_user_id(r.get(2))?;
        if r.get::<_, bool>(1) {
            // Members of rooms before this one (a membership whose room row
            // is gone) are skipped; the rest are this room's.
            let mut ids = Vec::new();
            while let Some(m) = members.next_if(|m| m.get::<_, &str>(0) <= name.as_str()) {
                if m.get::<_, &str>(0) == name {
                    ids.push(user_id(m.get(1))?);
                }
            }
            snap.private_rooms.push(PrivateRoomRow {
                name,
                owner: owner.unwrap_or(0),
                members: ids,
            });
        } else {
            snap.public_rooms.push((name, owner));
        }
    }
    // A room with messages and no row (its write was lost in a failed
    // batch): it may have been private, so nobody may read it. The
    // `targets` table holds one row per target, so this is no scan of
    // the messages.
    for r in client.query(
        "SELECT substr(key, 3) FROM targets WHERE key LIKE 'r:%' AND seq > 0
           AND substr(key, 3) NOT IN (SELECT name FROM rooms)
         ORDER BY substr(key, 3) COLLATE \"C\"",
        &[],
    )? {
        snap.orphan_rooms.push(r.get(0));
    }
    snap.max_message_id = client
        .query_one("SELECT COALESCE(MAX(id), 0) FROM messages", &[])?
        .get::<_, i64>(0) as MsgId;
    for r in client.query(
        "SELECT from_id, client_id, id, ts_ms FROM messages WHERE client_id IS NOT NULL
         ORDER BY id DESC LIMIT $1",
        &[&(CLIENT_ID_WINDOW as i64)],
    )? {
        snap.recent_client_ids.push((
            user_id(r.get(0))?,
            r.get(1),
            r.get::<_, i64>(2) as MsgId,
            r.get(3),
        ));
    }
    snap.recent_client_ids.reverse();
    for r in client.query(
        "SELECT user_id FROM room_reads UNION SELECT user_id FROM room_members
         UNION SELECT DISTINCT to_id FROM messages WHERE to_id IS NOT NULL
         UNION SELECT user_id FROM mentions",
        &[],
    )? {
        snap.unread_sources.push(user_id(r.get(0))?);
    }
    for r in client.query(
        "SELECT key, seq FROM targets WHERE seq > 0 ORDER BY key COLLATE \"C\"",
        &[],
    )? {
        let key: &str = r.get(0);
        let target =
            parse_key(key).ok_or_else(|| Fail::Data(format!("unknown target key {key:?}")))?;
        snap.heads.push((target, r.get::<_, i64>(1) as Seq));
    }
    Ok(snap)
}

/// Whether a request runs in a savepoint: those that can fail on their own.
/// The rest check their input first and then cannot (see the module doc),
/// so a failure there aborts the batch. Exhaustive on purpose: a new
/// request must be classified.
fn needs_savepoint(req: &Request) -> bool {
    match req {
        Request::PutUser(_)
        | Request::PutPrivateRoom { .. }
        | Request::AddMember { .. }
        | Request::RemoveMember { .. }
        // Reads, when they run on the writer (no reader connection).
        | Request::History { .. }
        | Request::Unread { .. }
        | Request::Catchup { .. }
        | Request::Resync { .. }
        | Request::RoomInfo { .. }
        | Request::FindUser { .. }
        | Request::Search { .. }
        | Request::EditMessage { .. }
        | Request::DeleteMessage { .. }
        | Request::React { .. } => true,
        Request::PutMessage { .. }
        | Request::PutPublicRoom { .. }
        | Request::SetLastSeen { .. }
        | Request::MarkRead { .. }
        | Request::Drain => false,
    }
}

/// The requests the reader answers (on the writer when there is none).
fn is_read(req: &Request) -> bool {
    matches!(
        req,
        Request::History { .. }
            | Request::Unread { .. }
            | Request::Catchup { .. }
            | Request::Resync { .. }
            | Request::RoomInfo { .. }
            | Request::FindUser { .. }
            | Request::Search { .. }
    )
}

/// The requests that change a stored message: they take [`APPEND_LOCK`]
/// (before their savepoint: a lock taken inside one is released by its
/// rollback) as appends do, so that every lock on `messages` rows is
/// taken by the one batch holding it. Were they not, an edit holding its
/// message's row lock and waiting for the append lock (a later message of
/// its batch) and a reply holding the append lock and checking that row
/// could deadlock. It also orders a reply's check of its parent after
/// any delete of it another node committed, or before one it will commit.
fn changes_a_message(req: &Request) -> bool {
    matches!(
        req,
        Request::EditMessage { .. } | Request::DeleteMessage { .. } | Request::React { .. }
    )
}

/// Takes [`APPEND_LOCK`] for the rest of the batch, once.
fn append_lock(c: &mut Conn, batch: &mut Batch) -> Res<()> {
    if !batch.append_locked {
        c.client.execute(&c.st.append_lock, &[&APPEND_LOCK])?;
        batch.append_locked = true;
    }
    Ok(())
}

/// The input of a request that runs without a savepoint, checked so that
/// nothing it sends can fail on data.
fn check_request(req: &Request) -> Res<()> {
    match req {
        Request::PutMessage { msg, client_id, .. } => {
            if msg.room.is_none() && msg.to.is_none() {
                return Err(Fail::Data("a message needs a room or a recipient".into()));
            }
            check_text(&[
                msg.room.as_deref(),
                Some(&msg.content),
                client_id.as_deref(),
            ])
        }
        Request::PutPublicRoom { name, .. } => check_text(&[Some(name)]),
        Request::MarkRead {
            target: Target::Room(room),
            ..
        } => check_text(&[Some(room)]),
        _ => Ok(()),
    }
}

/// The reply to a failed `PutUser` when a unique index refused it.
fn user_conflict(e: &Fail) -> Option<Conflict> {
    let Fail::Pg(e) = e else { return None };
    let db = e.as_db_error()?;
    if *db.code() != SqlState::UNIQUE_VIOLATION {
        return None;
    }
    match db.constraint()? {
        "users_username" => Some(Conflict::Username),
        "users_email" => Some(Conflict::Email),
        _ => None,
    }
}

/// Applies one request on the writer's open transaction.
fn apply(c: &mut Conn, batch: &mut Batch, req: &Request) -> Res<Option<Reply>> {
    Ok(match req {
        Request::PutUser(u) => {
            check_text(&[Some(&u.username), Some(&u.email)])?;
            let row = c.client.query_one(
                &c.st.put_user,
                &[
                    &u.username,
                    &u.email,
                    &i64::from(u.password.iterations),
                    &&u.password.salt[..],
                    &&u.password.hash[..],
                    &u.created_ms,
                    &u.last_seen_ms,
                ],
            )?;
            Some(Reply::UserStored {
                key: u.id,
                id: user_id(row.get(0))?,
            })
        }
        Request::PutMessage {
            msg,
            client_id,
            mentions,
        } => {
            let key = message_target(msg.room.as_deref(), msg.from, msg.to)
                .ok_or_else(|| Fail::Data("a message needs a room or a recipient".into()))?;
            append_lock(c, batch)?;
            // A reply's parent: a live message of the same target. Checked
            // under the append lock, which every delete takes too, so no
            // node deletes it between this check and this batch's commit.
            // (Earlier, as SQLite checks: the parent is visible, so its id
            // was drawn before the `nextval` this insert draws.)
            if let Some(parent) = msg.reply_to {
                let found = c.client.query_opt(&c.st.reply_parent, &[&big(parent)])?;
                if found.is_none_or(|r| r.get::<_, &str>(0) != key) {
                    return Ok(Some(Reply::MessageRefused { key: msg.id }));
                }
            }
            // First the target's row, once per batch: its lock orders this
            // append after any other transaction's uncommitted one to the
            // same target, and its seq is where this batch counts on from.
            let head = match batch.heads.get_mut(&key) {
                Some(head) => head,
                None => {
                    let base: i64 = c.client.query_one(&c.st.lock_target, &[&key])?.get(0);
                    batch.heads.entry(key.clone()).or_insert(Head {
                        stored: base,
                        newest: base,
                    })
                }
            };
            let seq = head.newest + 1;
            let (from, to) = (i64::from(msg.from), msg.to.map(i64::from));
            let inserted = c.client.query_opt(
                &c.st.insert_message,
                &[
                    &key,
                    &seq,
                    &msg.room,
                    &from,
                    &to,
                    &msg.content,
                    &msg.timestamp_ms,
                    client_id,
                    &msg.reply_to.map(big),
                    &search_text(&msg.content),
                ],
            )?;
            match inserted {
                Some(row) => {
                    head.newest = seq;
                    let id: i64 = row.get(0);
                    if let Some(room) = &msg.room
                        && !mentions.is_empty()
                    {
                        let users: Vec<i64> = mentions.iter().map(|&u| i64::from(u)).collect();
                        let rooms = vec![room.as_str(); users.len()];
                        let ids = vec![id; users.len()];
                        c.client
                            .execute(&c.st.insert_mentions, &[&users, &rooms, &ids])?;
                    }
                    Some(Reply::MessageStored {
                        key: msg.id,
                        id: id as MsgId,
                        seq: seq as Seq,
                    })
                }
                // A retry of a `client_id` already stored (perhaps by
                // another node): it takes no seq, and is answered with the
                // first message.
                None => {
                    let row = c.client.query_one(&c.st.existing, &[&from, client_id])?;
                    Some(Reply::MessageExists {
                        key: msg.id,
                        existing: row.get::<_, i64>(0) as MsgId,
                        timestamp_ms: row.get(1),
                    })
                }
            }
        }
        Request::PutPublicRoom { name, creator } => {
            c.client
                .execute(&c.st.public_room, &[name, &i64::from(*creator)])?;
            None
        }
        Request::SetLastSeen { user, at_ms } => {
            c.client
                .execute(&c.st.last_seen, &[&i64::from(*user), at_ms])?;
            None
        }
        Request::PutPrivateRoom { ticket, row } => {
            check_text(&[Some(&row.name)])?;
            c.client
                .execute(&c.st.private_room, &[&row.name, &i64::from(row.owner)])?;
            for m in &row.members {
                c.client
                    .execute(&c.st.add_member, &[&row.name, &i64::from(*m)])?;
            }
            Some(Reply::Done { ticket: *ticket })
        }
        Request::AddMember { ticket, room, user } => {
            check_text(&[Some(room)])?;
            c.client
                .execute(&c.st.add_member, &[room, &i64::from(*user)])?;
            Some(Reply::Done { ticket: *ticket })
        }
        Request::RemoveMember { ticket, room, user } => {
            check_text(&[Some(room)])?;
            let user = i64::from(*user);
            c.client.execute(&c.st.remove_member, &[room, &user])?;
            // Its read marker goes too: unread counts are for rooms the
            // user may read.
            c.client.execute(&c.st.remove_read, &[room, &user])?;
            // And the mentions of them there (SQLite's rule).
            c.client.execute(&c.st.remove_mentions, &[room, &user])?;
            Some(Reply::Done { ticket: *ticket })
        }
        Request::MarkRead { user, target, id } => {
            let (user, id) = (i64::from(*user), big(*id));
            match target {
                Target::Room(room) => c.client.execute(&c.st.mark_room, &[&user, room, &id])?,
                Target::Direct(_, peer) => c
                    .client
                    .execute(&c.st.mark_dm, &[&user, &i64::from(*peer), &id])?,
            };
            None
        }
        Request::History { .. }
        | Request::Unread { .. }
        | Request::Catchup { .. }
        | Request::Resync { .. }
        | Request::RoomInfo { .. }
        | Request::FindUser { .. }
        | Request::Search { .. } => Some(read(c, req)?),
        Request::EditMessage { ticket, .. }
        | Request::DeleteMessage { ticket, .. }
        | Request::React { ticket, .. } => Some(Reply::Changed {
            ticket: *ticket,
            outcome: change(c, batch, req)?,
        }),
        Request::Drain => Some(Reply::Drained),
    })
}

/// What an edit, delete or reaction needs to know about its message.
struct Located {
    room: Option<String>,
    from: UserId,
    to: Option<UserId>,
    /// The room's row: whether it is private, and its owner.
    room_row: Option<(bool, Option<UserId>)>,
    reactions: Option<String>,
}

/// The live (not deleted) message `id`, its row locked (`FOR UPDATE`)
/// until the batch commits: a reaction's read-modify-write of the
/// `reactions` column must not interleave with another node's.
fn live_message(c: &mut Conn, id: MsgId) -> Res<Option<Located>> {
    let Some(r) = c.client.query_opt(&c.st.locate, &[&big(id)])? else {
        return Ok(None);
    };
    let private: Option<bool> = r.get(3);
    Ok(Some(Located {
        room: r.get(0),
        from: user_id(r.get(1))?,
        to: opt_user_id(r.get(2))?,
        room_row: private
            .map(|p| Ok::<_, Fail>((p, opt_user_id(r.get(4))?)))
            .transpose()?,
        reactions: r.get(5),
    }))
}

/// Whether `user` may read the message `t` (the reaction rule; search's
/// is [`MAY_READ`], the same rule in SQL).
fn may_read(c: &mut Conn, t: &Located, user: UserId) -> Res<bool> {
    let Some(room) = &t.room else {
        return Ok(t.from == user || t.to == Some(user));
    };
    Ok(match t.room_row {
        None => false,
        Some((false, _)) => true,
        Some((true, owner)) if owner == Some(user) => true,
        Some((true, _)) => c
            .client
            .query_one(&c.st.is_member, &[room, &i64::from(user)])?
            .get(0),
    })
}

/// An edit, delete or reaction, checked and applied with SQLite's rules
/// (`sqlite::change`). The batch holds [`APPEND_LOCK`] already (see
/// [`changes_a_message`]).
fn change(c: &mut Conn, batch: &mut Batch, req: &Request) -> Res<Result<Change, Refusal>> {
    let (Request::EditMessage { id, user, .. }
    | Request::DeleteMessage { id, user, .. }
    | Request::React { id, user, .. }) = req
    else {
        return Err(Fail::Data("not a change".into()));
    };
    debug_assert!(batch.append_locked);
    let Some(t) = live_message(c, *id)? else {
        return Ok(Err(Refusal::NoSuchMessage));
    };
    let owner = match t.room_row {
        Some((true, owner)) => owner,
        _ => None,
    };
    if !may_change(req, t.from, owner, || may_read(c, &t, *user))? {
        return Ok(Err(Refusal::Forbidden));
    }
    let what = match req {
        Request::EditMessage { content, at_ms, .. } => {
            check_text(&[Some(content)])?;
            c.client.execute(
                &c.st.edit,
                &[&big(*id), content, at_ms, &search_text(content)],
            )?;
            ChangeKind::Edited {
                content: content.clone(),
                at_ms: *at_ms,
            }
        }
        Request::DeleteMessage { at_ms, .. } => {
            c.client.execute(&c.st.delete, &[&big(*id), at_ms])?;
            c.client.execute(&c.st.delete_mentions, &[&big(*id)])?;
            ChangeKind::Deleted
        }
        Request::React { emoji, .. } => {
            let mut reactions = decode_reactions(t.reactions.as_deref());
            let on = match toggle_reaction(&mut reactions, emoji, *user) {
                Ok(on) => on,
                Err(refusal) => return Ok(Err(refusal)),
            };
            let text = encode_reactions(&reactions);
            check_text(&[text.as_deref()])?;
            c.client.execute(&c.st.set_reactions, &[&big(*id), &text])?;
            ChangeKind::Reacted {
                emoji: emoji.clone(),
                user: *user,
                on,
            }
        }
        _ => return Err(Fail::Data("not a change".into())),
    };
    Ok(Ok(Change {
        id: *id,
        room: t.room,
        from: t.from,
        to: t.to,
        what,
    }))
}

/// `Search`: see [`SearchQuery`]: `tsv` holds every word of the
/// message ([`search_text`]), the query requires each of the search's
/// words ([`search_query`]; nothing the user typed is tsquery syntax).
///
/// Plans (measured with `EXPLAIN ANALYZE` on a million messages; see the
/// module doc): for a rare word the GIN index on `tsv` finds its few rows
/// and they are sorted; for a common one a backward scan of the primary key
/// stops at the `limit`-th readable match. Which one depends on how many
/// rows the words match, so the statement is planned for its own
/// parameters every time: it is not one of the prepared [`Statements`],
/// whose plan PostgreSQL may turn generic after five executions (a
/// generic plan, not knowing the words, takes the GIN index for every
/// word: 1.8 s instead of 1 ms for the commonest). The cost is one more
/// round trip per search.
fn search(c: &mut Conn, q: &SearchQuery) -> Res<Vec<StoredMessage>> {
    let Some(query) = search_query(&q.words) else {
        return Ok(Vec::new());
    };
    let (user, limit) = (i64::from(q.user), big(q.limit as u64));
    check_text(&[Some(&query)])?;
    let sql = |scope: &str| {
        format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m
             WHERE m.tsv @@ $1::text::tsquery AND m.deleted_ms IS NULL
               AND {MAY_READ} {scope}
             ORDER BY m.id DESC LIMIT $3"
        )
    };
    let rows = match &q.scope {
        None => c.client.query(&sql(""), &[&query, &user, &limit])?,
        Some(target) => {
            let key = target_key(target);
            check_text(&[Some(&key)])?;
            c.client
                .query(&sql("AND m.target = $4"), &[&query, &user, &limit, &key])?
        }
    };
    rows.iter().map(row_to_message).collect()
}

/// A `PutMessage` of a run that [`append_run`] appends.
struct Put<'a> {
    req: &'a Request,
    msg: &'a StoredMessage,
    client_id: Option<&'a str>,
    mentions: &'a [UserId],
}

impl<'a> Put<'a> {
    fn of(req: &'a Request) -> Option<Put<'a>> {
        match req {
            Request::PutMessage {
                msg,
                client_id,
                mentions,
            } => Some(Put {
                req,
                msg,
                client_id: client_id.as_deref(),
                mentions,
            }),
            _ => None,
        }
    }
}

/// What [`append_run`] does with each message of its run.
enum Planned<'a> {
    /// Refused on its input before any statement (why): fails alone.
    Invalid(&'a StoreError),
    /// Its `reply_to` is not a live message of its target:
    /// `MessageRefused`, no seq.
    Refused,
    /// Its `client_id` was already stored (by an earlier batch, an earlier
    /// request of this batch, or another node): `MessageExists`, no seq.
    Exists { id: i64, ts_ms: i64 },
    /// Its `client_id` is that of the run's `n`-th new row, before it.
    SameAs(usize),
    /// Appended as the run's `n`-th new row, at `seq`.
    New(usize, i64),
}

/// The run's new rows, one array per column of `insert_messages`.
#[derive(Default)]
struct NewRows<'a> {
    targets: Vec<&'a str>,
    seqs: Vec<i64>,
    rooms: Vec<Option<&'a str>>,
    froms: Vec<i64>,
    tos: Vec<Option<i64>>,
    contents: Vec<&'a str>,
    ts_ms: Vec<i64>,
    client_ids: Vec<Option<&'a str>>,
    reply_tos: Vec<Option<i64>>,
    words: Vec<String>,
}

/// The bulk path (see the module doc): appends a run of consecutive
/// `PutMessage` requests in at most four statements, with the same replies
/// and rows `apply` would give them one by one (ids aside: a retry draws
/// none here), pushed to `out` in request order. A message refused on its
/// input fails alone, answered and logged here; `Err` is the transaction's
/// failure, and nothing was pushed.
fn append_run(c: &mut Conn, batch: &mut Batch, run: &[Put<'_>], out: &mut Vec<Reply>) -> Res<()> {
    // Input first, as for one message: a refusal runs no statement.
    let checked: Vec<Result<String, StoreError>> = run
        .iter()
        .map(|p| {
            check_request(p.req).map_err(|f| classify(&f))?;
            message_target(p.msg.room.as_deref(), p.msg.from, p.msg.to)
                .ok_or_else(|| StoreError::request("a message needs a room or a recipient"))
        })
        .collect();
    let keys = || checked.iter().filter_map(|k| k.as_deref().ok());
    if keys().next().is_some() && !batch.append_locked {
        c.client.execute(&c.st.append_lock, &[&APPEND_LOCK])?;
        batch.append_locked = true;
    }
    // The targets of the live parents the run's replies name, in one
    // statement; race-free under the append lock as the client ids are
    // (every delete takes it too: see `changes_a_message`).
    let mut parents: Vec<i64> = run
        .iter()
        .zip(&checked)
        .filter(|(_, k)| k.is_ok())
        .filter_map(|(p, _)| p.msg.reply_to.map(big))
        .collect();
    parents.sort_unstable();
    parents.dedup();
    let parent_rows = if parents.is_empty() {
        Vec::new()
    } else {
        c.client.query(&c.st.reply_parents, &[&parents])?
    };
    let parent_target: HashMap<i64, &str> =
        parent_rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    // Whether each message's reply (if it is one) names a live parent of
    // its own target; a refused one locks no target, as in `apply`.
    let reply_ok: Vec<bool> = run
        .iter()
        .zip(&checked)
        .map(|(p, key)| match (p.msg.reply_to, key) {
            (Some(parent), Ok(key)) => parent_target.get(&big(parent)) == Some(&key.as_str()),
            _ => true,
        })
        .collect();
    // The row (lock and seq) of every target this batch has not appended
    // to yet, in one statement.
    let mut fresh: Vec<&str> = checked
        .iter()
        .zip(&reply_ok)
        .filter(|(_, ok)| **ok)
        .filter_map(|(k, _)| k.as_deref().ok())
        .filter(|k| !batch.heads.contains_key(*k))
        .collect();
    fresh.sort_unstable();
    fresh.dedup();
    if !fresh.is_empty() {
        for row in c.client.query(&c.st.lock_targets, &[&fresh])? {
            let seq: i64 = row.get(1);
            batch.heads.insert(
                row.get(0),
                Head {
                    stored: seq,
                    newest: seq,
                },
            );
        }
    }
    // Client ids already stored. Checking first and inserting after is
    // race-free because every append holds APPEND_LOCK until it commits
    // (`apply`, this function, and `hubbub migrate`, which takes it too), and
    // PostgreSQL releases a transaction's locks only after its commit is
    // visible (`CommitTransaction` in xact.c ends it in the proc array
    // first, then releases its locks): this statement, which runs after the lock was granted, sees
    // every client id any other node stored, and none can be stored
    // elsewhere before this batch commits or rolls back.
    let (froms, cids): (Vec<i64>, Vec<&str>) = run
        .iter()
        .zip(&checked)
        .filter(|(_, k)| k.is_ok())
        .filter_map(|(p, _)| Some((i64::from(p.msg.from), p.client_id?)))
        .unzip();
    let rows = if froms.is_empty() {
        Vec::new()
    } else {
        c.client.query(&c.st.existing_many, &[&froms, &cids])?
    };
    let stored: HashMap<(i64, &str), (i64, i64)> = rows
        .iter()
        .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3))))
        .collect();
    // Seqs, in request order, counted on from each target's head.
    let mut in_run: HashMap<(i64, &str), usize> = HashMap::new();
    let mut new = NewRows::default();
    let mut plan = Vec::with_capacity(run.len());
    for ((p, key), reply_ok) in run.iter().zip(&checked).zip(&reply_ok) {
        let key = match key {
            Ok(key) => key,
            Err(e) => {
                plan.push(Planned::Invalid(e));
                continue;
            }
        };
        // The reply's check comes first, as in `apply`: a refused retry
        // is refused, not `MessageExists`.
        if !reply_ok {
            plan.push(Planned::Refused);
            continue;
        }
        let from = i64::from(p.msg.from);
        if let Some(cid) = p.client_id {
            if let Some(&(id, ts_ms)) = stored.get(&(from, cid)) {
                plan.push(Planned::Exists { id, ts_ms });
                continue;
            }
            if let Some(&n) = in_run.get(&(from, cid)) {
                plan.push(Planned::SameAs(n));
                continue;
            }
            in_run.insert((from, cid), new.seqs.len());
        }
        let head = batch
            .heads
            .get_mut(key)
            .ok_or_else(|| Fail::Data(format!("no row locked for target {key:?}")))?;
        head.newest += 1;
        plan.push(Planned::New(new.seqs.len(), head.newest));
        new.targets.push(key);
        new.seqs.push(head.newest);
        new.rooms.push(p.msg.room.as_deref());
        new.froms.push(from);
        new.tos.push(p.msg.to.map(i64::from));
        new.contents.push(&p.msg.content);
        new.ts_ms.push(p.msg.timestamp_ms);
        new.client_ids.push(p.client_id);
        new.reply_tos.push(p.msg.reply_to.map(big));
        new.words.push(search_text(&p.msg.content));
    }
    let mut ids: Vec<i64> = if new.seqs.is_empty() {
        Vec::new()
    } else {
        let n = &new;
        c.client
            .query(
                &c.st.insert_messages,
                &[
                    &n.targets,
                    &n.seqs,
                    &n.rooms,
                    &n.froms,
                    &n.tos,
                    &n.contents,
                    &n.ts_ms,
                    &n.client_ids,
                    &n.reply_tos,
                    &n.words,
                ],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    if ids.len() != new.seqs.len() {
        return Err(Fail::Data(format!(
            "inserted {} of {} messages",
            ids.len(),
            new.seqs.len()
        )));
    }
    // The k-th smallest id is the k-th row's (see `insert_messages`).
    ids.sort_unstable();
    // The new room messages' mention rows, in one statement.
    let (mut m_users, mut m_rooms, mut m_ids) = (Vec::new(), Vec::new(), Vec::new());
    for (p, planned) in run.iter().zip(&plan) {
        if let (Planned::New(n, _), Some(room)) = (planned, p.msg.room.as_deref()) {
            for &u in p.mentions {
                m_users.push(i64::from(u));
                m_rooms.push(room);
                m_ids.push(ids[*n]);
            }
        }
    }
    if !m_users.is_empty() {
        c.client
            .execute(&c.st.insert_mentions, &[&m_users, &m_rooms, &m_ids])?;
    }
    for (p, planned) in run.iter().zip(plan) {
        let key = p.msg.id;
        out.push(match planned {
            Planned::Invalid(e) => {
                failed_alone(p.req, e, out);
                continue;
            }
            Planned::Refused => Reply::MessageRefused { key },
            Planned::Exists { id, ts_ms } => Reply::MessageExists {
                key,
                existing: id as MsgId,
                timestamp_ms: ts_ms,
            },
            Planned::SameAs(n) => Reply::MessageExists {
                key,
                existing: ids[n] as MsgId,
                timestamp_ms: new.ts_ms[n],
            },
            Planned::New(n, seq) => Reply::MessageStored {
                key,
                id: ids[n] as MsgId,
                seq: seq as Seq,
            },
        });
    }
    Ok(())
}

/// Room `name`'s row and members, when it is a stored private room.
fn private_room(c: &mut Conn, name: &str) -> Res<Option<PrivateRoomRow>> {
    let Some(row) = c.client.query_opt(
        "SELECT owner_id FROM rooms WHERE name = $1 AND private",
        &[&name],
    )?
    else {
        return Ok(None);
    };
    let owner = opt_user_id(row.get(0))?.unwrap_or(0);
    let members = c
        .client
        .query(
            "SELECT user_id FROM room_members WHERE room = $1 ORDER BY user_id",
            &[&name],
        )?
        .iter()
        .map(|m| user_id(m.get(0)))
        .collect::<Res<Vec<_>>>()?;
    Ok(Some(PrivateRoomRow {
        name: name.to_string(),
        owner,
        members,
    }))
}

/// Answers a read from the transaction `c` is in.
fn read(c: &mut Conn, req: &Request) -> Res<Reply> {
    match req {
        Request::History { ticket, query } => Ok(Reply::History {
            ticket: *ticket,
            messages: history(c, query)?,
        }),
        Request::Unread { ticket, user } => Ok(Reply::Unread {
            ticket: *ticket,
            counts: unread(c, *user)?,
        }),
        Request::Catchup {
            ticket,
            target,
            after,
            limit,
        } => Ok(Reply::History {
            ticket: *ticket,
            messages: catchup(c, target, *after, *limit)?,
        }),
        Request::Resync { ticket } => Ok(Reply::Resynced {
            ticket: *ticket,
            snapshot: Box::new(snapshot(&mut c.client)?),
        }),
        Request::RoomInfo { ticket, name } => Ok(Reply::RoomInfo {
            ticket: *ticket,
            private: private_room(c, name)?,
        }),
        Request::Search { ticket, query } => Ok(Reply::History {
            ticket: *ticket,
            messages: search(c, query)?,
        }),
        Request::FindUser { ticket, name } => {
            let row = c.client.query_opt(
                "SELECT id, username, email, pw_iter, pw_salt, pw_hash, created_ms, last_seen_ms
                 FROM users WHERE lower(username) = lower($1)",
                &[name],
            )?;
            Ok(Reply::UserFound {
                ticket: *ticket,
                row: row.as_ref().map(user_row).transpose()?,
            })
        }
        _ => Err(Fail::Data("not a read".into())),
    }
}

/// Runs `req` inside the savepoint. `Ok(Err(_))`: the request failed alone
/// and was rolled back; `Err(_)`: the transaction cannot go on.
fn in_savepoint(
    c: &mut Conn,
    batch: &mut Batch,
    req: &Request,
) -> Result<Res<Option<Reply>>, Fail> {
    c.client.batch_execute(SAVEPOINT)?;
    match apply(c, batch, req) {
        Ok(reply) => {
            c.client.batch_execute(RELEASE)?;
            Ok(Ok(reply))
        }
        Err(Fail::Pg(e)) if aborts_batch(&e) => Err(Fail::Pg(e)),
        Err(f) => {
            c.client.batch_execute(ROLLBACK_TO)?;
            Ok(Err(f))
        }
    }
}

impl Backend for Postgres {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        let c = self
            .connected()
            .map_err(|e| StoreError::request(e.message))?;
        let result = (|| {
            c.client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
            let snap = snapshot(&mut c.client);
            c.client.batch_execute("COMMIT")?;
            snap
        })();
        result.map_err(|f| classify(&f))
    }

    fn setting(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let c = self.connected()?;
        c.client
            .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
            .map(|r| r.map(|r| r.get(0)))
            .map_err(|e| classify(&Fail::Pg(e)))
    }

    /// Keeps the first value stored under `key`: two nodes starting at once
    /// both generate a JWT secret, and only one may win. The caller reads
    /// the winner back with `setting`.
    fn put_setting(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let c = self.connected()?;
        c.client
            .execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&key, &value],
            )
            .map(|_| ())
            .map_err(|e| classify(&Fail::Pg(e)))
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        self.spoiled = false;
        self.batch = Batch::default();
        begin_on(&self.config, &mut self.conn, "BEGIN")
    }

    fn execute(&mut self, req: &Request) -> Result<Option<Reply>, StoreError> {
        let Some(c) = self.conn.as_mut() else {
            return Err(StoreError::batch("no connection to PostgreSQL"));
        };
        if self.spoiled {
            return Err(StoreError::batch("the transaction already failed"));
        }
        let batch = &mut self.batch;
        let result = if needs_savepoint(req) {
            let flushed = if is_read(req) {
                flush(c, batch)
            } else if changes_a_message(req) {
                append_lock(c, batch)
            } else {
                Ok(())
            };
            match flushed.and_then(|()| in_savepoint(c, batch, req)) {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(f)) => match (req, user_conflict(&f)) {
                    (Request::PutUser(u), Some(conflict)) => Ok(Some(Reply::UserFailed {
                        key: u.id,
                        conflict: Some(conflict),
                    })),
                    _ => return Err(classify(&f)),
                },
                Err(f) => Err(f),
            }
        } else {
            // Checked input fails alone, before anything ran; past that,
            // any failure is the transaction's.
            check_request(req).map_err(|f| classify(&f))?;
            apply(c, batch, req)
        };
        result.map_err(|f| {
            let mut e = classify(&f);
            e.aborts_batch = true;
            self.failed(&f);
            e
        })
    }

    /// Runs of [`BULK_MIN`] or more consecutive messages go to
    /// [`append_run`], one run at a time; every other request, in its
    /// place between them, to `execute`.
    fn execute_batch(&mut self, batch: &[Request], out: &mut Vec<Reply>) -> Result<(), StoreError> {
        let mut rest = batch;
        while let Some(first) = rest.first() {
            let run: Vec<Put<'_>> = rest.iter().map_while(Put::of).collect();
            if run.len() < BULK_MIN {
                execute_one(self, first, out)?;
                rest = &rest[1..];
                continue;
            }
            rest = &rest[run.len()..];
            let Some(c) = self.conn.as_mut() else {
                return Err(StoreError::batch("no connection to PostgreSQL"));
            };
            if self.spoiled {
                return Err(StoreError::batch("the transaction already failed"));
            }
            append_run(c, &mut self.batch, &run, out).map_err(|f| {
                let e = classify(&f);
                self.failed(&f);
                StoreError::batch(format!("appending {} messages failed: {e}", run.len()))
            })?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        let Some(c) = self.conn.as_mut() else {
            return Err(StoreError::batch("no connection to PostgreSQL"));
        };
        if self.spoiled {
            return Err(StoreError::batch("the transaction already failed"));
        }
        let flushed = flush(c, &mut self.batch);
        flushed
            .and_then(|()| Ok(c.client.batch_execute("COMMIT")?))
            .map_err(|f| {
                let mut err = classify(&f);
                err.aborts_batch = true;
                self.failed(&f);
                err
            })
    }

    fn rollback(&mut self) {
        self.batch = Batch::default();
        let Some(c) = self.conn.as_mut() else { return };
        if let Err(e) = c.client.batch_execute("ROLLBACK") {
            log::error!("storage: rollback failed: {}", describe(&e));
            // Whatever state it is in, a new connection is clean.
            self.conn = None;
        }
    }

    /// A second connection to the same database; it sees every commit of
    /// the writer's that finished before its `begin`.
    fn reader(&mut self) -> Result<Option<Box<dyn Reader>>, StoreError> {
        let conn = Conn::open(&self.config)?;
        Ok(Some(Box::new(PostgresReader {
            config: self.config.clone(),
            conn: Some(conn),
        })))
    }
}

impl Reader for PostgresReader {
    fn begin(&mut self) -> Result<(), StoreError> {
        // One round trip: the first statement takes the snapshot, now.
        begin_on(
            &self.config,
            &mut self.conn,
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1",
        )
    }

    fn read(&mut self, req: &Request) -> Result<Reply, StoreError> {
        let Some(c) = self.conn.as_mut() else {
            return Err(StoreError::batch("no connection to PostgreSQL"));
        };
        read(c, req).map_err(|f| {
            if let Fail::Pg(e) = &f
                && breaks_connection(e)
            {
                self.conn = None;
            }
            classify(&f)
        })
    }

    fn end(&mut self) {
        let Some(c) = self.conn.as_mut() else { return };
        if let Err(e) = c.client.batch_execute("COMMIT") {
            log::error!("storage: ending a read failed: {}", describe(&e));
            self.conn = None;
        }
    }
}

/// A fresh database per test on the server `HUBBUB_TEST_POSTGRES` names
/// (shared with `store::migrate`'s tests).
#[cfg(test)]
pub(crate) mod testdb {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use postgres::{Client, Config, NoTls};

    use super::{Postgres, parse_config};

    /// The variable naming the test server: a base URL whose database is
    /// only used to create and drop each test's own.
    pub const ENV: &str = "HUBBUB_TEST_POSTGRES";

    /// A database made for one test, dropped (connections and all) after it.
    pub struct TestDb {
        admin: Config,
        name: String,
        pub config: Config,
    }

    impl TestDb {
        /// `None`, loudly, when no test server is configured.
        pub fn new() -> Option<TestDb> {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let Some(url) = std::env::var(ENV).ok().filter(|u| !u.is_empty()) else {
                eprintln!("!!!!! {ENV} is unset: SKIPPING this PostgreSQL test (CI sets it) !!!!!");
                return None;
            };
            let admin = parse_config(&url).expect("a valid test URL");
            let name = format!(
                "t_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let mut c = admin.connect(NoTls).expect("the test server is up");
            c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .unwrap();
            c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
            let mut config = admin.clone();
            config.dbname(&name);
            Some(TestDb {
                admin,
                name,
                config,
            })
        }

        pub fn open(&self) -> Postgres {
            Postgres::open_config(self.config.clone()).unwrap()
        }

        /// A plain connection to this database, for checks and sabotage.
        pub fn client(&self) -> Client {
            self.config.connect(NoTls).unwrap()
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            if let Ok(mut c) = self.admin.connect(NoTls) {
                let _ = c.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::store::fixtures::{TICKET, msg, user};
    use std::time::Instant;

    use super::testdb::TestDb;
    use super::*;
    use crate::store::apply_batch;
    use crate::store::sqlite::Sqlite;

    fn put(id: MsgId, room: &str, client_id: Option<&str>) -> Request {
        Request::PutMessage {
            msg: msg(id, Some(room), 1, None),
            client_id: client_id.map(String::from),
            mentions: Vec::new(),
        }
    }

    fn dm(id: MsgId, from: UserId, to: UserId) -> Request {
        Request::PutMessage {
            msg: msg(id, None, from, Some(to)),
            client_id: None,
            mentions: Vec::new(),
        }
    }

    /// Runs `reqs` as one batch that must commit, the way the writer does
    /// (`execute_batch`: runs of messages in bulk); the replies.
    fn run<B: Backend>(db: &mut B, reqs: &[Request]) -> Vec<Reply> {
        db.begin().unwrap();
        let mut out = Vec::new();
        db.execute_batch(reqs, &mut out).unwrap();
        db.commit().unwrap();
        out
    }

    fn count(c: &mut Client, sql: &str) -> i64 {
        c.query_one(sql, &[]).unwrap().get(0)
    }

    fn private_room(name: &str, members: Vec<UserId>) -> Request {
        Request::PutPrivateRoom {
            ticket: TICKET,
            row: PrivateRoomRow {
                name: name.into(),
                owner: 1,
                members,
            },
        }
    }

    fn history_req(
        target: Target,
        before: Option<MsgId>,
        after: Option<MsgId>,
        limit: usize,
        offset: usize,
    ) -> Request {
        Request::History {
            ticket: TICKET,
            query: HistoryQuery {
                target,
                before,
                after,
                limit,
                offset,
            },
        }
    }

    fn messages(reply: Reply) -> Vec<StoredMessage> {
        match reply {
            Reply::History { messages, .. } => messages,
            other => panic!("expected history, got {other:?}"),
        }
    }

    fn read_one(db: &mut Postgres, req: &Request) -> Reply {
        let mut reader = db.reader().unwrap().unwrap();
        reader.begin().unwrap();
        let reply = reader.read(req).unwrap();
        reader.end();
        reply
    }

    /// Edits, deletes, reactions, replies, mentions and search follow the
    /// rules every backend shares (`store::conformance`, also run on
    /// SQLite).
    #[test]
    fn conforms_on_changes_mentions_and_search() {
        let Some(t) = TestDb::new() else { return };
        crate::store::conformance::check_all(&mut t.open());
    }

    /// Users, rooms, memberships, the max id, client ids and heads come
    /// back in the snapshot; user ids come from the database.
    #[test]
    fn snapshot_round_trips() {
        let Some(t) = TestDb::new() else { return };
        let mut db = t.open();
        let out = run(
            &mut db,
            &[
                Request::PutUser(user(41, "alice")),
                Request::PutUser(user(42, "bob")),
                private_room("ops", vec![1, 2]),
                Request::PutPublicRoom {
                    name: "general".into(),
                    creator: 1,
                },
                put(5, "general", Some("k1")),
                dm(6, 2, 1),
                Request::SetLastSeen { user: 2, at_ms: 99 },
            ],
        );
        assert!(
            matches!(
                out[..],
                [
                    Reply::UserStored { key: 41, id: 1 },
                    Reply::UserStored { key: 42, id: 2 },
                    Reply::Done { .. },
                    Reply::MessageStored {
                        key: 5,
                        id: 1,
                        seq: 1
                    },
                    Reply::MessageStored {
                        key: 6,
                        id: 2,
                        seq: 1
                    },
                ]
            ),
            "{out:?}"
        );
        let snap = db.load().unwrap();
        assert_eq!(snap.users.len(), 2);
        assert_eq!(snap.users[0].id, 1);
        assert_eq!(snap.users[0].password, user(41, "alice").password);
        assert_eq!(snap.users[1].last_seen_ms, Some(99));
        assert_eq!(snap.private_rooms[0].members, vec![1, 2]);
        assert_eq!(snap.public_rooms, vec![("general".to_string(), Some(1))]);
        assert_eq!(snap.max_message_id, 2);
        assert_eq!(snap.recent_client_ids, vec![(1, "k1".to_string(), 1, 5)]);
        let mut sources = snap.unread_sources.clone();
        sources.sort_unstable();
        assert_eq!(sources, vec![1, 2]);
        assert_eq!(
            snap.heads,
            vec![
                (Target::Direct(1, 2), 1),
                (Target::Room("general".into()), 1)
            ]
        );
        assert!(snap.orphan_rooms.is_empty());
    }

    /// A taken name or email (in any case) is a `UserFailed` reply naming
    /// it, not an error: the batch goes on, and nothing of it is stored.
    #[test]
    fn user_conflicts_are_replies_and_spare_the_batch() {
        let Some(t) = TestDb::new() else { return };
        let mut db = t.open();
        let mut taken_email = user(9, "carol");
        taken_email.email = "ALICE@example.com".into();
        let out = run(
            &mut db,
            &[
                Request::PutUser(user(7, "alice")),
                Request::PutUser(user(8, "Alice")),
                Request::PutUser(taken_email),
                put(1, "r", None),
                Request::PutUser(user(10, "dave")),
            ],
        );
        assert!(
            matches!(
                out[..],
                [
                    Reply::UserStored { key: 7, id: 1 },
                    Reply::UserFailed {
                        key: 8,
                        conflict: Some(Conflict::Username)
                    },
                    Reply::UserFailed {
                        key: 9,
                        conflict: Some(Conflict::Email)
                    },
                    Reply::MessageStored { key: 1, .. },
                    Reply::UserStored { key: 10, .. },
                ]
            ),
            "{out:?}"
        );
        let mut c = t.client();
        assert_eq!(count(&mut c, "SELECT COUNT(*) FROM users"), 2);
    }

    /// Makes inserting a membership of user 666 fail, the way a constraint
    /// would fail one statement of a request.
    fn refuse_member(c: &mut Client) {
        c.batch_execute(
            "CREATE FUNCTION refuse_member() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'member refused'; END $$;
             CREATE TRIGGER refuse_member BEFORE INSERT ON room_members
               FOR EACH ROW WHEN (NEW.user_id = 666) EXECUTE FUNCTION refuse_member();",
        )
        .unwrap();
    }

    /// A request that fails part way leaves nothing behind, and the
    /// requests around it in the batch commit (PostgreSQL would otherwise
    /// abort the whole transaction); the same room then succeeds in the
    /// same transaction, and a room that exists fails alone too.
    #[test]
    fn a_failed_request_leaves_nothing_and_spares_the_batch() {
        let Some(t) = TestDb::new() else { return };
        let mut db = t.open();
        refuse_member(&mut t.client());
        db.begin().unwrap();
        db.execute(&Request::PutUser(user(1, "alice"))).unwrap();
        let e = db
            .execute(&private_room("ops", vec![1, 666, 2]))
            .unwrap_err();
        assert!(!e.aborts_batch, "{e}");
        db.execute(&put(1, "general", None)).unwrap();
        db.execute(&private_room("ops", vec![1, 2])).unwrap();
        let e = db.execute(&private_room("ops", vec![3])).unwrap_err();
        assert!(!e.aborts_batch, "{e}");
        let nul = Request::PutMessage {
            msg: StoredMessage {
                content: "a\0b".into(),
                ..msg(2, Some("general"), 1, None)
            },
            client_id: None,
            mentions: Vec::new(),
        };
        let e = db.execute(&nul).unwrap_err();
        assert!(!e.aborts_batch, "{e}");
        db.execute(&put(3, "general", None)).unwrap();
        db.commit().unwrap();
        let mut c = t.client();
        assert_eq!(
            count(&mut c, "SELECT COUNT(*) FROM rooms WHERE name = 'ops'"),
            1
        );
        assert_eq!(
            count(
                &mut c,
                "SELECT COUNT(*) FROM room_members WHERE room = 'ops'"
            ),
            2
        );
        assert_eq!(count(&mut c, "SELECT COUNT(*) FROM users"), 1);
        assert_eq!(
            count(
                &mut c,
                "SELECT MAX(seq) FROM messages WHERE room = 'general'"
            ),
            2,
            "the refused message took no seq"
        );
    }

    /// A `client_id` already stored (by this node or another) is answered
    /// with the first message and takes no seq: the next message of the
    /// room gets the next seq.
    #[test]
    fn client_id_retry_is_message_exists_and_takes_no_seq() {
        let Some(t) = TestDb::new() else { return };
        let (mut a, mut b) = (t.open(), t.open());
        let out = run(
            &mut a,
            &[put(100, "r", Some("k")), put(101, "r", Some("k"))],
        );
        assert!(
            matches!(
                out[..],
                [
                    Reply::MessageStored {
                        key: 100,
                        id: 1,
                        seq: 1
                    },
                    Reply::MessageExists {
                        key: 101,
                        existing: 1,
                        timestamp_ms: 100
                    },
                ]
            ),
            "{out:?}"
        );
        // The retry reaches the other node.
        let out = run(
            &mut b,
            &[put(7, "r", Some("k")), put(8, "r", Some("other"))],
        );
        assert!(
            matches!(
                out[..],
                [
                    Reply::MessageExists {
                        key: 7,
                        existing: 1,
                        timestamp_ms: 100
                    },
                    Reply::MessageStored { key: 8, seq: 2, .. },
                ]
            ),
            "{out:?}"
        );
        let other_user = Request::PutMessage {
            msg: msg(9, Some("r"), 2, None),
            client_id: Some("k".into()),
            mentions: Vec::new(),
        };
        assert!(matches!(
            run(&mut b, &[other_user])[..],
            [Reply::MessageStored { seq: 3, .. }]
        ));
    }

    /// Each room and each conversation (from either side) counts its own
    /// seqs from 1, and ids increase with them.
    #[test]
    fn seqs_are_per_target() {
        let Some(t) = TestDb::new() else { return };
        let mut db = t.open();
        let out = run(
            &mut db,
            &[
                put(1, "a", None),
                put(2, "b", None),
                dm(3, 1, 2),
                put(4, "a", None),
                dm(5, 2, 1),
                dm(6, 1, 3),
            ],
        );
        let seqs: Vec<(MsgId, Seq)> = out
            .iter()
            .map(|r| match r {
                Reply::MessageStored { id, seq, .. } => (*id, *seq),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(seqs, [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 1)]);
        let snap = db.load().unwrap();
        assert_eq!(
            snap.heads,
            vec![
                (Target::Direct(1, 2), 2),
                (Target::Direct(1, 3), 1),
                (Target::Room("a".into()), 2),
                (Target::Room("b".into()), 1)
            ]
        );
        let got = messages(read_one(
            &mut db,
            &history_req(Target::Direct(2, 1), None, None, 10, 0),
        ));
        assert_eq!(
            got.iter().map(|m| (m.id, m.seq)).collect::<Vec<_>>(),
            [(3, 1), (5, 2)]
        );
    }

    /// Catch-up returns the messages after a seq, oldest first, at most
    /// `limit`, each with its seq.
    #[test]
    fn catchup_reads_by_seq() {
        let Some(t) = TestDb::new() else { return };
        let mut db = t.open();
        let reqs: Vec<Request> = (1..=10).map(|i| put(i, "r", None)).collect();
        run(&mut db, &reqs);
        run(&mut db, &[put(11, "other", None)]);
        let req = Request::Catchup {
            ticket: TICKET,
            target: Target::Room("r".into()),
            after: 4,
            limit: 3,
        };
        let got = messages(read_one(&mut db, &req));
        assert_eq!(
            got.iter().map(|m| (m.id, m.seq)).collect::<Vec<_>>(),
            [(5, 5), (6, 6), (7, 7)]
        );
        assert_eq!(got[0].room.as_deref(), Some("r"));
        // On the writer too (a backend whose reader could not connect).
        db.begin().unwrap();
        let got = messages(db.execute(&req).unwrap().unwrap());
        db.commit().unwrap();
        assert_eq!(got.len(), 3);
    }

    /// The same requests through SQLite and PostgreSQL give the same
    /// histories and unread counts (seqs aside: SQLite does not sequence).
    #[test]
    fn history_and_unread_match_sqlite() {
        let Some(t) = TestDb::new() else { return };
        let mut pg = t.open();
        let mut lite = Sqlite::open_in_memory().unwrap();
        let mut writes = vec![
            Request::PutUser(user(1, "alice")),
            Request::PutUser(user(2, "bob")),
            Request::PutUser(user(3, "carol")),
            private_room("ops", vec![1, 2, 3]),
        ];
        let mut id = 0;
        let mut next = || {
            id += 1;
            id
        };
        for i in 0..60u32 {
            let from = 1 + i % 3;
            let n = next();
            writes.push(match i % 5 {
                0 | 1 => Request::PutMessage {
                    msg: msg(n, Some("r"), from, None),
                    client_id: None,
                    mentions: Vec::new(),
                },
                2 => Request::PutMessage {
                    msg: msg(n, Some("ops"), from, None),
                    client_id: None,
                    mentions: Vec::new(),
                },
                _ => Request::PutMessage {
                    msg: msg(n, None, from, Some(1 + (from % 3))),
                    client_id: None,
                    mentions: Vec::new(),
                },
            });
            if i == 20 {
                writes.push(Request::MarkRead {
                    user: 2,
                    target: Target::Room("r".into()),
                    id: 15,
                });
                writes.push(Request::MarkRead {
                    user: 1,
                    target: Target::Direct(1, 3),
                    id: 10,
                });
                writes.push(Request::MarkRead {
                    user: 3,
                    target: Target::Room("ops".into()),
                    id: 12,
                });
            }
            if i == 40 {
                writes.push(Request::MarkRead {
                    user: 2,
                    target: Target::Room("r".into()),
                    id: 5,
                });
                writes.push(Request::MarkRead {
                    user: 3,
                    target: Target::Direct(3, 2),
                    id: 41,
                });
            }
        }
        writes.push(Request::RemoveMember {
            ticket: TICKET,
            room: "ops".into(),
            user: 3,
        });
        run(&mut pg, &writes);
        run(&mut lite, &writes);
        let mut reads = Vec::new();
        for target in [
            Target::Room("r".into()),
            Target::Room("ops".into()),
            Target::Room("none".into()),
            Target::Direct(1, 2),
            Target::Direct(3, 1),
            Target::Direct(2, 3),
        ] {
            for (before, after, limit, offset) in [
                (None, None, 50, 0),
                (None, None, 3, 0),
                (Some(30), None, 4, 0),
                (None, Some(20), 100, 0),
                (Some(50), Some(10), 5, 2),
                (None, None, 5, 1000),
            ] {
                reads.push(history_req(target.clone(), before, after, limit, offset));
            }
        }
        for user in 1..=4 {
            reads.push(Request::Unread {
                ticket: TICKET,
                user,
            });
        }
        let lite_out = run(&mut lite, &reads);
        for (req, want) in reads.iter().zip(lite_out) {
            let got = read_one(&mut pg, req);
            match (got, want) {
                (Reply::History { messages: got, .. }, Reply::History { messages: want, .. }) => {
                    let got: Vec<_> = got
                        .into_iter()
                        .map(|m| StoredMessage { seq: 0, ..m })
                        .collect();
                    assert_eq!(got, want, "{req:?}");
                }
                (Reply::Unread { counts: got, .. }, Reply::Unread { counts: want, .. }) => {
                    assert_eq!(got, want, "{req:?}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    /// A removed member's read marker goes with its membership, so the room
    /// drops out of its unread counts.
    #[test]
    fn a_removed_member_has_nothing_unread_there() {
        let Some(t) = TestDb::new() else { return };
        let mut db = t.open();
        let mut out = Vec::new();
        let read = Request::MarkRead {
            user: 2,
            target: Target::Room("r".into()),
            id: 1,
        };
        apply_batch(
            &mut db,
            &[
                private_room("r", vec![1, 2]),
                put(1, "r", None),
                read,
                put(2, "r", None),
            ],
            &mut out,
        );
        let unread = Request::Unread {
            ticket: TICKET,
            user: 2,
        };
        assert!(matches!(
            read_one(&mut db, &unread),
            Reply::Unread { counts, .. } if counts == [UnreadCount::Room("r".into(), 1, 0)]
        ));
        let remove = Request::RemoveMember {
            ticket: TICKET,
            room: "r".into(),
            user: 2,
        };
        apply_batch(&mut db, &[remove, put(3, "r", None)], &mut out);
        assert!(matches!(
            read_one(&mut db, &unread),
            Reply::Unread { counts, .. } if counts.is_empty()
        ));
    }

    /// Messages of a room with no room row load it as an orphan.
    #[test]
    fn rooms_without_a_row_load_as_orphans() {
        let Some(t) = TestDb::new() else { return };
        let mut db = t.open();
        run(&mut db, &[put(1, "lost", None)]);
        let snap = db.load().unwrap();
        assert_eq!(snap.orphan_rooms, vec!["lost".to_string()]);
        assert!(snap.public_rooms.is_empty());
    }

    /// The reader's snapshot is taken by `begin`: a commit between `begin`
    /// and the read is not seen (neither by `History` nor by `Resync`), and
    /// the next read sees it.
    #[test]
    fn the_reader_snapshot_is_taken_at_begin() {
        let Some(t) = TestDb::new() else { return };
        let mut db = t.open();
        run(
            &mut db,
            &[Request::PutUser(user(1, "alice")), put(1, "r", None)],
        );
        let mut reader = db.reader().unwrap().unwrap();
        let room = || history_req(Target::Room("r".into()), None, None, 50, 0);
        reader.begin().unwrap();
        run(
            &mut db,
            &[Request::PutUser(user(2, "bob")), put(2, "r", None)],
        );
        assert_eq!(messages(reader.read(&room()).unwrap()).len(), 1);
        let Reply::Resynced { snapshot, .. } =
            reader.read(&Request::Resync { ticket: TICKET }).unwrap()
        else {
            panic!("a resync")
        };
        assert_eq!((snapshot.users.len(), snapshot.max_message_id), (1, 1));
        assert_eq!(snapshot.heads, vec![(Target::Room("r".into()), 1)]);
        reader.end();
        reader.begin().unwrap();
        assert_eq!(messages(reader.read(&room()).unwrap()).len(), 2);
        let Reply::Resynced { snapshot, .. } =
            reader.read(&Request::Resync { ticket: TICKET }).unwrap()
        else {
            panic!("a resync")
        };
        let full = db.load().unwrap();
        assert_eq!(snapshot.users.len(), full.users.len());
        assert_eq!(snapshot.heads, full.heads);
        assert_eq!(snapshot.max_message_id, 2);
        reader.end();
    }

    /// Two nodes starting at once: both migrate without error (one waits
    /// for the other's lock), and both sign with the one JWT secret that
    /// was stored first, which a later `put_setting` does not replace.
    #[test]
    fn two_nodes_start_at_once() {
        let Some(t) = TestDb::new() else { return };
        let barrier = std::sync::Barrier::new(2);
        let secrets: Vec<Vec<u8>> = std::thread::scope(|s| {
            let nodes: Vec<_> = (0..2u8)
                .map(|i| {
                    let (config, barrier) = (t.config.clone(), &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let mut db = Postgres::open_config(config).unwrap();
                        barrier.wait();
                        // Both may find none and generate one; both must
                        // come back with the one stored first.
                        let mine = crate::auth::secret::load_or_create(None, &mut db).unwrap();
                        if i == 0 {
                            db.put_setting("jwt_secret", &[i; 32]).unwrap();
                        }
                        assert_eq!(db.setting("jwt_secret").unwrap().unwrap(), mine);
                        mine
                    })
                })
                .collect();
            nodes.into_iter().map(|n| n.join().unwrap()).collect()
        });
        assert_eq!(secrets[0], secrets[1]);
        let mut c = t.client();
        assert_eq!(
            count(&mut c, "SELECT version::bigint FROM schema_version"),
            MIGRATIONS.len() as i64
        );
        assert_eq!(count(&mut c, "SELECT COUNT(*) FROM schema_version"), 1);
        // A restart finds the schema as it is.
        drop(t.open());
    }

    /// The writer's connection killed mid-batch (`pg_terminate_backend`):
    /// the batch fails as a whole, the next `begin` reconnects and its batch
    /// commits. Killed while idle, the next batch does not even fail.
    #[test]
    fn reconnects_after_the_connection_is_killed() {
        let Some(t) = TestDb::new() else { return };
        let mut db = t.open();
        let mut admin = t.client();
        let kill = |admin: &mut Client| {
            let n = count(
                admin,
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()
                   AND application_name = 'hubbub'",
            );
            assert!(n >= 1, "killed {n}");
        };
        db.begin().unwrap();
        db.execute(&put(1, "r", None)).unwrap();
        kill(&mut admin);
        let e = db.execute(&put(2, "r", None)).unwrap_err();
        assert!(e.aborts_batch, "{e}");
        db.rollback();
        let mut out = Vec::new();
        apply_batch(&mut db, &[put(3, "r", None)], &mut out);
        assert!(
            matches!(out[..], [Reply::MessageStored { key: 3, seq: 1, .. }]),
            "{out:?}"
        );
        kill(&mut admin);
        std::thread::sleep(Duration::from_millis(100));
        out.clear();
        apply_batch(&mut db, &[put(4, "r", None)], &mut out);
        assert!(
            matches!(out[..], [Reply::MessageStored { key: 4, seq: 2, .. }]),
            "{out:?}"
        );
        // The reader reconnects the same way.
        let mut reader = db.reader().unwrap().unwrap();
        kill(&mut admin);
        std::thread::sleep(Duration::from_millis(100));
        db.begin().unwrap();
        db.commit().unwrap();
        reader.begin().unwrap();
        let got = messages(
            reader
                .read(&history_req(Target::Room("r".into()), None, None, 9, 0))
                .unwrap(),
        );
        reader.end();
        assert_eq!(got.len(), 2);
    }

    /// While PostgreSQL cannot be reached, `begin` fails fast as a batch
    /// failure (the health probe's case).
    #[test]
    fn begin_fails_fast_when_unreachable() {
        let Some(t) = TestDb::new() else { return };
        let mut db = t.open();
        // A port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        db.config = parse_config(&format!("host=127.0.0.1 port={port} user=hubbub")).unwrap();
        db.conn = None;
        let start = Instant::now();
        let e = db.begin().unwrap_err();
        assert!(e.aborts_batch, "{e}");
        db.rollback();
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }

    /// Rooms the concurrency test appends to.
    const ROOMS: usize = 5;

    /// Appends `n` messages in batches of `batch` from `writer` (its messages
    /// spread over [`ROOMS`] rooms in an order of its own), retrying a batch
    /// that failed as a whole; returns how many batches failed.
    fn append(db: &mut Postgres, writer: u32, n: usize, batch: usize) -> usize {
        let mut failed = 0;
        let mut rng = 0x9e37_79b9u32.wrapping_mul(writer + 1);
        let reqs: Vec<Request> = (0..n)
            .map(|i| {
                rng ^= rng << 13;
                rng ^= rng >> 17;
                rng ^= rng << 5;
                Request::PutMessage {
                    msg: msg(
                        i as MsgId,
                        Some(&format!("room{}", rng as usize % ROOMS)),
                        writer,
                        None,
                    ),
                    client_id: Some(format!("w{writer}-{i}")),
                    mentions: Vec::new(),
                }
            })
            .collect();
        let mut out = Vec::new();
        for chunk in reqs.chunks(batch) {
            loop {
                out.clear();
                apply_batch(db, chunk, &mut out);
                if out.iter().all(|r| matches!(r, Reply::MessageStored { .. })) {
                    break;
                }
                assert!(
                    out.iter().all(|r| matches!(
                        r,
                        Reply::MessageFailed {
                            transient: true,
                            ..
                        }
                    )),
                    "{out:?}"
                );
                failed += 1;
            }
        }
        failed
    }

    /// Two nodes appending to the same rooms at once: every room's seqs are
    /// 1..n without a gap, and the order by seq is the order by id.
    #[test]
    fn two_writers_sequence_shared_rooms() {
        let Some(t) = TestDb::new() else { return };
        const N: usize = 2000;
        let start = Instant::now();
        let failed: Vec<usize> = std::thread::scope(|s| {
            let writers: Vec<_> = (1..=2u32)
                .map(|w| {
                    let mut db = t.open();
                    s.spawn(move || append(&mut db, w, N, 50))
                })
                .collect();
            writers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let elapsed = start.elapsed();
        let mut c = t.client();
        let rows = c
            .query(
                "SELECT target, seq, id FROM messages ORDER BY target, seq",
                &[],
            )
            .unwrap();
        assert_eq!(rows.len(), 2 * N);
        let mut last: Option<(String, i64, i64)> = None;
        for r in &rows {
            let (target, seq, id): (String, i64, i64) = (r.get(0), r.get(1), r.get(2));
            match &last {
                Some((t, s, i)) if *t == target => {
                    assert_eq!(seq, s + 1, "{target}: a gap");
                    assert!(id > *i, "{target}: seq {seq} has id {id} <= {i}");
                }
                _ => assert_eq!(seq, 1, "{target} starts at 1"),
            }
            last = Some((target, seq, id));
        }
        let heads = t.open().load().unwrap().heads;
        assert_eq!(heads.len(), ROOMS);
        assert_eq!(heads.iter().map(|h| h.1).sum::<Seq>(), 2 * N as Seq);
        std::thread::sleep(Duration::from_millis(600));
        let deadlocks = count(
            &mut c,
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
        );
        eprintln!(
            "two writers, {N} messages each in batches of 50 over {ROOMS} rooms: \
             {:.0} msg/s, failed batches {failed:?}, deadlocks {deadlocks}",
            (2 * N) as f64 / elapsed.as_secs_f64()
        );
    }

    /// The per-request path, to compare the bulk path with: `Postgres`
    /// with the default `execute_batch` (`execute` once per request).
    struct PerRequest(Postgres);

    impl Backend for PerRequest {
        fn load(&mut self) -> Result<Snapshot, StoreError> {
            self.0.load()
        }
        fn setting(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.0.setting(key)
        }
        fn put_setting(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
            self.0.put_setting(key, value)
        }
        fn begin(&mut self) -> Result<(), StoreError> {
            self.0.begin()
        }
        fn execute(&mut self, req: &Request) -> Result<Option<Reply>, StoreError> {
            self.0.execute(req)
        }
        fn commit(&mut self) -> Result<(), StoreError> {
            self.0.commit()
        }
        fn rollback(&mut self) {
            self.0.rollback()
        }
    }

    /// A message from `from` to `room` with `content` and `client_id`.
    fn put_as(
        id: MsgId,
        from: UserId,
        room: &str,
        content: &str,
        client_id: Option<&str>,
    ) -> Request {
        Request::PutMessage {
            msg: StoredMessage {
                content: content.into(),
                ..msg(id, Some(room), from, None)
            },
            client_id: client_id.map(String::from),
            mentions: Vec::new(),
        }
    }

    /// Makes inserting a message whose content is `boom` fail, the way a
    /// failing statement would spoil the transaction.
    fn refuse_boom(c: &mut Client) {
        c.batch_execute(
            "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'boom refused'; END $$;
             CREATE TRIGGER refuse_boom BEFORE INSERT ON messages
               FOR EACH ROW WHEN (NEW.content = 'boom') EXECUTE FUNCTION refuse_boom();",
        )
        .unwrap();
    }

    /// Every table a write can touch, as text, message ids replaced by
    /// their rank (ids may differ between the paths: the per-request path
    /// draws one for a retry and drops it; their order may not).
    fn dump(c: &mut Client) -> (Vec<String>, HashMap<i64, usize>) {
        let rank: HashMap<i64, usize> = c
            .query("SELECT id FROM messages ORDER BY id", &[])
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, r)| (r.get(0), i))
            .collect();
        let mut out = Vec::new();
        for r in c
            .query(
                "SELECT id, target, seq, room, from_id, to_id, content, ts_ms, client_id,
                        reply_to, edited_ms, deleted_ms, reactions
                 FROM messages ORDER BY id",
                &[],
            )
            .unwrap()
        {
            let (room, to, cid): (Option<String>, Option<i64>, Option<String>) =
                (r.get(3), r.get(5), r.get(8));
            // A reply's parent by rank (a parent that is not stored: its id).
            let reply_to = r
                .get::<_, Option<i64>>(9)
                .map(|p| rank.get(&p).map_or(format!("id {p}"), |n| format!("#{n}")));
            let (edited, deleted, reactions): (Option<i64>, Option<i64>, Option<String>) =
                (r.get(10), r.get(11), r.get(12));
            out.push(format!(
                "message #{} {} seq {} room {room:?} from {} to {to:?} {:?} at {} cid {cid:?} \
                 reply {reply_to:?} edited {edited:?} deleted {deleted:?} reactions {reactions:?}",
                rank[&r.get::<_, i64>(0)],
                r.get::<_, String>(1),
                r.get::<_, i64>(2),
                r.get::<_, i64>(4),
                r.get::<_, String>(6),
                r.get::<_, i64>(7),
            ));
        }
        for r in c
            .query(
                "SELECT user_id, room, message_id FROM mentions ORDER BY message_id, user_id",
                &[],
            )
            .unwrap()
        {
            out.push(format!(
                "mention of {} in {} by #{}",
                r.get::<_, i64>(0),
                r.get::<_, String>(1),
                rank[&r.get::<_, i64>(2)]
            ));
        }
        for sql in [
            "SELECT key || '=' || seq FROM targets ORDER BY key",
            "SELECT name || ' ' || private || ' ' || COALESCE(owner_id::text, '-') FROM rooms ORDER BY name",
            "SELECT room || ' ' || user_id FROM room_members ORDER BY room, user_id",
            "SELECT user_id || ' ' || room || ' ' || last_id FROM room_reads ORDER BY 1",
            "SELECT user_id || ' ' || peer_id || ' ' || last_id FROM dm_reads ORDER BY 1",
            "SELECT id || ' ' || username || ' ' || COALESCE(last_seen_ms::text, '-') FROM users ORDER BY id",
        ] {
            for r in c.query(sql, &[]).unwrap() {
                out.push(r.get(0));
            }
        }
        (out, rank)
    }

    /// A reply as text, message ids replaced by their rank (see [`dump`]).
    fn normal(reply: &Reply, rank: &HashMap<i64, usize>) -> String {
        let r = |id: &MsgId| rank[&(*id as i64)];
        match reply {
            Reply::MessageStored { key, id, seq } => format!("stored {key} #{} seq {seq}", r(id)),
            Reply::MessageExists {
                key,
                existing,
                timestamp_ms,
            } => format!("exists {key} #{} at {timestamp_ms}", r(existing)),
            Reply::History { messages, .. } => messages
                .iter()
                .map(|m| format!("#{} {:?} seq {}", r(&m.id), m.content, m.seq))
                .collect::<Vec<_>>()
                .join(", "),
            Reply::Changed {
                outcome: Ok(change),
                ..
            } => format!("changed #{} {:?}", r(&change.id), change.what),
            other => format!("{other:?}"),
        }
    }

    /// The same mixed batches through the per-request path and the bulk
    /// path, each on its own database, give the same replies and the same
    /// rows: client-id retries within a run, across runs of one batch
    /// (around a request that is not a message), across batches and from
    /// another user; messages refused on their input among the rest; a run
    /// of one; reads on the writer between runs; a statement failure that
    /// aborts the whole batch and takes its seqs back.
    #[test]
    fn bulk_appends_match_the_per_request_path() {
        let (Some(t_each), Some(t_bulk)) = (TestDb::new(), TestDb::new()) else {
            return;
        };
        let mut each = PerRequest(t_each.open());
        let mut bulk = t_bulk.open();
        refuse_boom(&mut t_each.client());
        refuse_boom(&mut t_bulk.client());
        let nul_client_id = Request::PutMessage {
            msg: msg(17, Some("general"), 1, None),
            client_id: Some("k\0".into()),
            mentions: Vec::new(),
        };
        let no_target = Request::PutMessage {
            msg: msg(18, None, 1, None),
            client_id: Some("k5".into()),
            mentions: Vec::new(),
        };
        let room = |r: &str| Target::Room(r.into());
        let mut batches = vec![
            vec![
                Request::PutUser(user(1, "alice")),
                Request::PutUser(user(2, "bob")),
                Request::PutUser(user(3, "carol")),
                Request::PutPublicRoom {
                    name: "general".into(),
                    creator: 1,
                },
                put_as(10, 1, "general", "hello", Some("k1")),
                put_as(11, 1, "general", "hello again", Some("k1")),
                put(12, "general", None),
                dm(13, 1, 2),
                dm(14, 2, 1),
                Request::MarkRead {
                    user: 2,
                    target: room("general"),
                    id: 1,
                },
                put_as(15, 1, "general", "a\0b", Some("k9")),
                put_as(16, 1, "general", "ok", Some("k9")),
                nul_client_id,
                no_target,
                put_as(19, 1, "general", "two", Some("k2")),
                put_as(20, 2, "general", "bob's k1", Some("k1")),
                private_room("ops", vec![1, 2]),
                put(21, "ops", None),
                put(22, "ops", Some("k2")),
                Request::SetLastSeen { user: 1, at_ms: 5 },
                put_as(23, 1, "general", "two, retried", Some("k2")),
                put(24, "general", None),
                history_req(room("general"), None, None, 50, 0),
                put(25, "general", None),
                Request::Catchup {
                    ticket: TICKET,
                    target: room("general"),
                    after: 2,
                    limit: 100,
                },
                dm(26, 3, 1),
                dm(27, 1, 3),
            ],
            vec![
                put_as(30, 1, "general", "hello, third try", Some("k1")),
                put_as(31, 2, "general", "bob's k1 again", Some("k1")),
                put_as(32, 1, "general", "three", Some("k3")),
                put_as(33, 1, "general", "three again", Some("k3")),
                put_as(34, 1, "general", "three, third", Some("k3")),
                Request::MarkRead {
                    user: 1,
                    target: Target::Direct(1, 2),
                    id: 3,
                },
                put_as(35, 3, "x\0y", "bad room", Some("k4")),
                put_as(36, 3, "ops", "good room", Some("k4")),
            ],
            // A run of one goes through `execute` on both paths.
            vec![put_as(40, 1, "general", "three, fourth", Some("k3"))],
            vec![put(41, "general", None)],
            // Only refusals: no statement at all.
            vec![
                put_as(42, 1, "general", "\0", None),
                put_as(43, 1, "general", "\0", Some("k6")),
            ],
            // A failed insert fails the batch, private room and all.
            vec![
                put(50, "general", Some("k7")),
                private_room("dev", vec![3]),
                put_as(51, 1, "general", "boom", None),
                put(52, "general", None),
            ],
            vec![
                put(53, "general", Some("k7")),
                put(54, "general", Some("k7")),
                put(55, "new", None),
                put(56, "new", None),
            ],
        ];
        // A big run over several targets, with repeats.
        batches.push(
            (0..300u64)
                .map(|i| {
                    let cid = format!("big{}", i % 250);
                    match i % 4 {
                        0 => dm(100 + i, 1 + (i % 3) as UserId, 2),
                        _ => put_as(
                            100 + i,
                            1,
                            &format!("room{}", i % 5),
                            "x",
                            (i % 2 == 0).then_some(cid.as_str()),
                        ),
                    }
                })
                .collect(),
        );
        let mut replies = (Vec::new(), Vec::new());
        for batch in &batches {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            apply_batch(&mut each, batch, &mut a);
            apply_batch(&mut bulk, batch, &mut b);
            replies.0.push(a);
            replies.1.push(b);
        }
        // Issue 13: replies (valid, to another target, to a deleted parent,
        // to none, a valid one that is a client-id retry, a refused one that
        // is one), mentions (room and conversation), a delete, an edit and a
        // reaction between runs, a search on the writer. Parents are named
        // by their stored ids, which may differ between the two databases.
        let issue_13 = |c: &mut Client| {
            let mut id = |content: &str| -> MsgId {
                c.query_one("SELECT id FROM messages WHERE content = $1", &[&content])
                    .unwrap()
                    .get::<_, i64>(0) as MsgId
            };
            let (hello, two, m21, m13) = (id("hello"), id("two"), id("m21"), id("m13"));
            let with_cid = |mut r: Request, cid: &str| {
                if let Request::PutMessage { client_id, .. } = &mut r {
                    *client_id = Some(cid.into());
                }
                r
            };
            vec![
                put13(
                    60,
                    Some("general"),
                    2,
                    None,
                    "re hello",
                    Some(hello),
                    vec![1, 3],
                ),
                put13(
                    61,
                    Some("ops"),
                    1,
                    None,
                    "re hello from ops",
                    Some(hello),
                    vec![],
                ),
                put13(62, Some("ops"), 1, None, "re m21", Some(m21), vec![2]),
                put13(63, None, 1, Some(2), "re m13", Some(m13), vec![2]),
                put13(64, None, 2, Some(3), "re m13 elsewhere", Some(m13), vec![]),
                Request::DeleteMessage {
                    ticket: TICKET,
                    id: two,
                    user: 1,
                    at_ms: 6000,
                },
                put13(65, Some("general"), 2, None, "re two", Some(two), vec![1]),
                with_cid(
                    put13(
                        66,
                        Some("general"),
                        1,
                        None,
                        "k1 again",
                        Some(hello),
                        vec![2],
                    ),
                    "k1",
                ),
                with_cid(
                    put13(67, Some("general"), 1, None, "k2 again", Some(two), vec![2]),
                    "k2",
                ),
                put13(68, Some("general"), 1, None, "plain", None, vec![]),
                Request::EditMessage {
                    ticket: TICKET,
                    id: hello,
                    user: 1,
                    content: "hello, edited".into(),
                    at_ms: 5000,
                },
                react(hello, 2, "👍"),
                put13(69, Some("general"), 3, None, "plain too", None, vec![2]),
                put13(
                    70,
                    Some("general"),
                    3,
                    None,
                    "re nothing",
                    Some(999_999),
                    vec![],
                ),
                search_req(2, "hello", None, 10),
                put13(
                    71,
                    Some("general"),
                    3,
                    None,
                    "re hello again",
                    Some(hello),
                    vec![],
                ),
                put13(72, Some("general"), 3, None, "last", None, vec![]),
            ]
        };
        for (db, t, out) in [
            (&mut each as &mut dyn Backend, &t_each, &mut replies.0),
            (&mut bulk as &mut dyn Backend, &t_bulk, &mut replies.1),
        ] {
            let batch = issue_13(&mut t.client());
            let mut got = Vec::new();
            db.begin().unwrap();
            db.execute_batch(&batch, &mut got).unwrap();
            db.commit().unwrap();
            out.push(got);
        }
        let (rows_each, rank_each) = dump(&mut t_each.client());
        let (rows_bulk, rank_bulk) = dump(&mut t_bulk.client());
        let last: Vec<_> = replies.1[replies.1.len() - 1]
            .iter()
            .map(|r| match r {
                Reply::MessageStored { key, .. } => format!("stored {key}"),
                Reply::MessageExists { key, .. } => format!("exists {key}"),
                Reply::MessageRefused { key } => format!("refused {key}"),
                Reply::Changed { outcome, .. } => format!("changed {}", outcome.is_ok()),
                Reply::History { messages, .. } => format!("found {}", messages.len()),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            last,
            [
                "stored 60",
                "refused 61",
                "stored 62",
                "stored 63",
                "refused 64",
                "changed true",
                "refused 65",
                "exists 66",
                "refused 67",
                "stored 68",
                "changed true",
                "changed true",
                "stored 69",
                "refused 70",
                "found 2",
                "stored 71",
                "stored 72"
            ]
        );
        for (i, (a, b)) in replies.0.iter().zip(&replies.1).enumerate() {
            let a: Vec<_> = a.iter().map(|r| normal(r, &rank_each)).collect();
            let b: Vec<_> = b.iter().map(|r| normal(r, &rank_bulk)).collect();
            assert_eq!(a, b, "batch {i}");
        }
        assert_eq!(rows_each, rows_bulk);
        // The cases the batches were written to exercise.
        let b0: Vec<_> = replies.1[0].iter().map(|r| normal(r, &rank_bulk)).collect();
        assert_eq!(b0[3..5], ["stored 10 #0 seq 1", "exists 11 #0 at 10"]);
        assert!(b0.contains(&"exists 23 #5 at 19".to_string()), "{b0:#?}");
        assert!(
            replies.1[5].iter().all(|r| matches!(
                r,
                Reply::MessageFailed {
                    transient: true,
                    ..
                } | Reply::Failed { .. }
            )),
            "{:?}",
            replies.1[5]
        );
        assert!(
            matches!(
                replies.1[6][..],
                [
                    Reply::MessageStored { key: 53, .. },
                    Reply::MessageExists { key: 54, .. },
                    Reply::MessageStored {
                        key: 55,
                        seq: 1,
                        ..
                    },
                    Reply::MessageStored {
                        key: 56,
                        seq: 2,
                        ..
                    },
                ]
            ),
            "{:?}",
            replies.1[6]
        );
        assert!(
            // 10, and 5 more from the issue-13 batch.
            rows_bulk.contains(&"r:general=15".to_string()),
            "{rows_bulk:#?}"
        );
    }

    /// Bulk appends number each target on from its head, batch after batch,
    /// with ids that increase with seq (and in request order: the order the
    /// loop delivers in), around other requests and retries.
    #[test]
    fn bulk_ids_increase_with_seq_per_target() {
        let Some(t) = TestDb::new() else { return };
        let mut db = t.open();
        let mut rng = 0x2545_f491u32;
        let mut heads: HashMap<String, Seq> = HashMap::new();
        let mut last_id = 0;
        for b in 0..4u64 {
            let mut reqs = Vec::new();
            let mut targets = Vec::new();
            for i in 0..400u64 {
                rng ^= rng << 13;
                rng ^= rng >> 17;
                rng ^= rng << 5;
                let (id, from) = (b * 1000 + i, 1 + rng % 3);
                let cid = rng.is_multiple_of(3).then(|| format!("c{}", rng % 500));
                let (room, to) = match rng % 7 {
                    0 => (None, Some(1 + (rng >> 8) % 3)),
                    r => (Some(format!("room{r}")), None),
                };
                let key = message_target(room.as_deref(), from, to).unwrap();
                reqs.push(Request::PutMessage {
                    msg: msg(id, room.as_deref(), from, to),
                    client_id: cid,
                    mentions: Vec::new(),
                });
                targets.push(Some(key));
                if i % 97 == 0 {
                    reqs.push(Request::MarkRead {
                        user: from,
                        target: Target::Room("room1".into()),
                        id: 1,
                    });
                    targets.push(None);
                }
            }
            let out = run(&mut db, &reqs);
            let keys = targets.into_iter().flatten();
            assert_eq!(out.len(), 400);
            for (reply, key) in out.iter().zip(keys) {
                match reply {
                    Reply::MessageStored { id, seq, .. } => {
                        let head = heads.entry(key.clone()).or_default();
                        assert_eq!(*seq, *head + 1, "{key}: seq after {head}");
                        *head = *seq;
                        assert!(*id > last_id, "id {id} after {last_id}");
                        last_id = *id;
                    }
                    Reply::MessageExists { existing, .. } => assert!(*existing <= last_id),
                    other => panic!("{other:?}"),
                }
            }
        }
        let mut c = t.client();
        let rows = c
            .query(
                "SELECT target, seq, id FROM messages ORDER BY target, seq",
                &[],
            )
            .unwrap();
        let mut last: Option<(String, i64, i64)> = None;
        for r in &rows {
            let (target, seq, id): (String, i64, i64) = (r.get(0), r.get(1), r.get(2));
            match &last {
                Some((t, s, i)) if *t == target => {
                    assert_eq!(seq, s + 1, "{target}: a gap");
                    assert!(id > *i, "{target}: seq {seq} has id {id} <= {i}");
                }
                _ => assert_eq!(seq, 1, "{target} starts at 1"),
            }
            last = Some((target, seq, id));
        }
        let stored: Seq = heads.values().sum();
        assert_eq!(rows.len() as Seq, stored);
        let mut heads: Vec<_> = heads.into_iter().collect();
        heads.sort();
        let loaded: Vec<_> = db
            .load()
            .unwrap()
            .heads
            .iter()
            .map(|(t, s)| (target_key(t), *s))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_iter()
            .collect();
        assert_eq!(loaded, heads);
    }

    // ---- Issue 13: replies, edits, deletes, reactions, mentions, search ----

    use crate::config::{MAX_REACTION_KINDS, MAX_REACTIONS, MAX_SEARCH_WORDS};
    use crate::store::{Change, ChangeKind, Reaction, Refusal, SearchQuery, search_words};

    /// A message with everything issue 13 adds to one.
    fn put13(
        id: MsgId,
        room: Option<&str>,
        from: UserId,
        to: Option<UserId>,
        content: &str,
        reply_to: Option<MsgId>,
        mentions: Vec<UserId>,
    ) -> Request {
        Request::PutMessage {
            msg: StoredMessage {
                content: content.into(),
                reply_to,
                ..msg(id, room, from, to)
            },
            client_id: None,
            mentions,
        }
    }

    fn edit(id: MsgId, user: UserId, content: &str) -> Request {
        Request::EditMessage {
            ticket: TICKET,
            id,
            user,
            content: content.into(),
            at_ms: 5000 + id as i64,
        }
    }

    fn delete(id: MsgId, user: UserId) -> Request {
        Request::DeleteMessage {
            ticket: TICKET,
            id,
            user,
            at_ms: 6000 + id as i64,
        }
    }

    fn react(id: MsgId, user: UserId, emoji: &str) -> Request {
        Request::React {
            ticket: TICKET,
            id,
            user,
            emoji: emoji.into(),
        }
    }

    fn search_req(user: UserId, text: &str, scope: Option<Target>, limit: usize) -> Request {
        Request::Search {
            ticket: TICKET,
            query: SearchQuery {
                user,
                words: search_words(text, MAX_SEARCH_WORDS),
                scope,
                limit,
            },
        }
    }

    /// The outcome of the one change `req`, applied in a batch of its own.
    fn change_one<B: Backend>(db: &mut B, req: Request) -> Result<Change, Refusal> {
        match run(db, &[req]).pop() {
            Some(Reply::Changed { outcome, .. }) => outcome,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    fn ids(messages: &[StoredMessage]) -> Vec<MsgId> {
        messages.iter().map(|m| m.id).collect()
    }

    /// The world most issue-13 tests start from: users 1-4 (1 owns the
    /// private room `ops`, 2 is its member, 3 and 4 are neither), the
    /// public room `general`, the orphan room `lost` (messages, no row);
    /// messages 1 (general, from 2), 2 (ops, from 2), 3 (ops, from 1),
    /// 4 (conversation 1→2), 5 (lost, from 3), 6 (general, from 1).
    fn world<B: Backend>(db: &mut B) -> Vec<Reply> {
        run(
            db,
            &[
                Request::PutUser(user(1, "alice")),
                Request::PutUser(user(2, "bob")),
                Request::PutUser(user(3, "carol")),
                Request::PutUser(user(4, "dave")),
                private_room("ops", vec![2]),
                Request::PutPublicRoom {
                    name: "general".into(),
                    creator: 1,
                },
                put13(1, Some("general"), 2, None, "hello general", None, vec![]),
                put13(2, Some("ops"), 2, None, "secret plans", None, vec![]),
                put13(3, Some("ops"), 1, None, "more secret plans", None, vec![]),
                put13(4, None, 1, Some(2), "private plans", None, vec![]),
                put13(5, Some("lost"), 3, None, "lost plans", None, vec![]),
                put13(6, Some("general"), 1, None, "public plans", None, vec![]),
            ],
        )
    }

    fn read_messages(db: &mut Postgres, req: &Request) -> Vec<StoredMessage> {
        messages(read_one(db, req))
    }

    fn room_history(room: &str) -> Request {
        history_req(Target::Room(room.into()), None, None, 100, 0)
    }

    /// Edits: only the author, only a live message. An edit changes
    /// content and `edited_ms` (history and search see the new words, not
    /// the old); its `Change` names the message's place.
    #[test]
    fn edits_are_the_authors_of_live_messages_only() {
        let Some(t) = TestDb::new() else { return };
        let mut db = t.open();
        world(&mut db);
        assert_eq!(
            change_one(&mut db, edit(1, 1, "x")),
            Err(Refusal::Forbidden)
        );
        assert_eq!(
            change_one(&mut db, edit(99, 2, "x")),
            Err(Refusal::NoSuchMessage)
        );
        assert_eq!(
            change_one(&mut db, edit(1, 2, "Goodbye General")),
            Ok(Change {
                id: 1,
                room: Some("general".into()),
                from: 2,
                to: None,
                what: ChangeKind::Edited {
                    content: "Goodbye General".into(),
                    at_ms: 5001
                },
            })
        );
        assert_eq!(
            change_one(&mut db, edit(4, 1, "edited dm")),
            Ok(Change {
                id: 4,
                room: None,
                from: 1,
                to: Some(2),
                what: ChangeKind::Edited {
                    content: "edited dm".into(),
                    at_ms: 5004
                },
            })
        );
        let got = read_messages(&mut db, &room_history("general"));
        assert_eq!(got[0].content, "Goodbye General");
        assert_eq!(got[0].edited_ms, Some(5001));
        assert_eq!(got[1].edited_ms, None);
        assert_eq!(
            ids(&read_messages(&mut db, &search_req(3, "goodbye", None, 10))),
            [1]
        );
        assert!(read_messages(&mut db, &search_req(3, "hello", None, 10)).is_empty());
        // A refused edit changed nothing; a deleted message cannot be edited.
        assert_eq!(
            change_one(&mut db, delete(6, 1)),
            Ok(Change {
                id: 6,
                room: Some("general".into()),
                from: 1,
                to: None,
                what: ChangeKind::Deleted,
            })
        );
        assert_eq!(
            change_one(&mut db, edit(6, 1, "back")),
            Err(Refusal::NoSuchMessage)
        );
        // A NUL (PostgreSQL text cannot hold one) fails that edit alone.
        let out = run(&mut db, &[edit(1, 2, "a\0b"), edit(1, 2, "after")]);
        assert!(
            matches!(
                &out[..],
                [Reply::Failed { .. }, Reply::Changed { outcome: Ok(_), .. }]
            ),
            "{out:?}"
        );
        assert_eq!(
            read_messages(&mut db, &room_history("general"))[0].content,
            "after"
        );
    }

    /// Deletes: by the author, or by the owner of the private room the
    /// message is in (not by a member, not by a public room's creator, not
    /// by the other side of a conversation); a second delete finds no
    /// message. A delete empties content, sets `deleted_ms`, clears the
    /// reactions and drops the message's mention rows.
    #[test]
    fn deletes_by_the_author_or_the_private_rooms_owner() {
        let Some(t) = TestDb::new() else { return };
        let mut db = t.open();
        world(&mut db);
        run(
            &mut db,
            &[
                put13(7, Some("ops"), 2, None, "hey @alice", None, vec![1]),
                react(7, 1, "👍"),
            ],
        );
        assert_eq!(
            change_one(&mut db, delete(3, 2)),
            Err(Refusal::Forbidden),
            "a member"
        );
        assert_eq!(
            change_one(&mut db, delete(1, 1)),
            Err(Refusal::Forbidden),
            "a creator"
        );
        assert_eq!(
            change_one(&mut db, delete(4, 2)),
            Err(Refusal::Forbidden),
            "the recipient"
        );
        assert_eq!(
            change_one(&mut db, delete(5, 1)),
            Err(Refusal::Forbidden),
            "an orphan"
        );
        assert_eq!(
            change_one(&mut db, delete(99, 1)),
            Err(Refusal::NoSuchMessage)
        );
        assert!(change_one(&mut db, delete(2, 2)).is_ok(), "the author");
        assert!(change_one(&mut db, delete(7, 1)).is_ok(), "the owner");
        assert!(
            change_one(&mut db, delete(4, 1)).is_ok(),
            "a conversation's author"
        );
        assert_eq!(
            change_one(&mut db, delete(7, 1)),
            Err(Refusal::NoSuchMessage)
        );
        assert_eq!(
            change_one(&mut db, react(7, 1, "👍")),
            Err(Refusal::NoSuchMessage)
        );
        let mut c = t.client();
        let row = c
            .query_one(
                "SELECT content, deleted_ms, reactions, tsv::text FROM messages WHERE id = 7",
                &[],
            )
            .unwrap();
        let (content, deleted, reactions, tsv): (String, Option<i64>, Option<String>, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(
            (content.as_str(), deleted, reactions, tsv.as_str()),
            ("", Some(6007), None, "")
        );
        assert_eq!(count(&mut c, "SELECT COUNT(*) FROM mentions"), 0);
        assert_eq!(ids(&read_messages(&mut db, &room_history("ops"))), [3]);
    }

    /// Reactions toggle (on, then off; emoji kept in first-seen order, users
    /// in reaction order) for anyone who may read the message: a public
    /// room's reader, a private room's member or owner, a conversation's
    /// two users. Refused: a non-member, a third user, anyone on an orphan
    /// room's message.
    #[test]
    fn reactions_toggle_for_those_who_may_read() {
        let Some(t) = TestDb::new() else { return };
        let mut db = t.open();
        world(&mut db);
        let on = |emoji: &str, user, on| ChangeKind::Reacted {
            emoji: emoji.into(),
            user,
            on,
        };
        let what = |r: Result<Change, Refusal>| r.map(|c| c.what);
        assert_eq!(
            what(change_one(&mut db, react(1, 3, "👍"))),
            Ok(on("👍", 3, true))
        );
        assert_eq!(
            what(change_one(&mut db, react(1, 4, ":tada:"))),
            Ok(on(":tada:", 4, true))
        );
        assert_eq!(
            what(change_one(&mut db, react(1, 1, "👍"))),
            Ok(on("👍", 1, true))
        );
        let got = read_messages(&mut db, &room_history("general"));
        assert_eq!(
            got[0].reactions,
            [
                Reaction {
                    emoji: "👍".into(),
                    users: vec![3, 1]
                },
                Reaction {
                    emoji: ":tada:".into(),
                    users: vec![4]
                },
            ]
        );
        assert_eq!(
            what(change_one(&mut db, react(1, 3, "👍"))),
            Ok(on("👍", 3, false))
        );
        assert_eq!(
            what(change_one(&mut db, react(1, 4, ":tada:"))),
            Ok(on(":tada:", 4, false))
        );
        let got = read_messages(&mut db, &room_history("general"));
        assert_eq!(
            got[0].reactions,
            [Reaction {
                emoji: "👍".into(),
                users: vec![1]
            }]
        );
        // Private room: member and owner yes, others no.
        assert!(change_one(&mut db, react(2, 2, "x")).is_ok());
        assert!(change_one(&mut db, react(2, 1, "x")).is_ok());
        assert_eq!(
            change_one(&mut db, react(2, 3, "x")),
            Err(Refusal::Forbidden)
        );
        // A conversation: its two users only.
        assert!(change_one(&mut db, react(4, 2, "x")).is_ok());
        assert!(change_one(&mut db, react(4, 1, "x")).is_ok());
        assert_eq!(
            change_one(&mut db, react(4, 3, "x")),
            Err(Refusal::Forbidden)
        );
        // A room with messages and no row: nobody, not even its author.
        assert_eq!(
            change_one(&mut db, react(5, 3, "x")),
            Err(Refusal::Forbidden)
        );
        assert_eq!(
            change_one(&mut db, react(99, 1, "x")),
            Err(Refusal::NoSuchMessage)
        );
        let dm = read_messages(
            &mut db,
            &history_req(Target::Direct(1, 2), None, None, 9, 0),
        );
        assert_eq!(
            dm[0].reactions,
            [Reaction {
                emoji: "x".into(),
                users: vec![2, 1]
            }]
        );
        assert!(
            read_messages(&mut db, &room_history("ops"))[0]
                .reactions
                .len()
                == 1
        );
    }

    /// The bounds, through `toggle_reaction`, as SQLite applies them: a
    /// new emoji past `MAX_REACTION_KINDS` kinds, or any new reaction past
    /// `MAX_REACTIONS` in all, is `TooManyReactions`; taking one back is
    /// always allowed, and frees room for one more. Every outcome and the
    /// stored reactions are SQLite's.
    #[test]
    fn reactions_are_bounded_as_on_sqlite() {
        let Some(t) = TestDb::new() else { return };
        let mut pg = t.open();
        let mut lite = Sqlite::open_in_memory().unwrap();
        let mut reqs = vec![
            Request::PutPublicRoom {
                name: "general".into(),
                creator: 1,
            },
            put13(1, Some("general"), 1, None, "vote", None, vec![]),
        ];
        for u in 1..=MAX_REACTIONS as UserId {
            reqs.push(react(
                1,
                u,
                &format!("e{}", u as usize % MAX_REACTION_KINDS),
            ));
        }
        let extra = MAX_REACTIONS as UserId + 1;
        reqs.extend([
            react(1, extra, "e0"),
            react(1, extra, "brand new"),
            react(1, 1, "e1"),
            react(1, extra, "brand new"),
            react(1, extra, "e0"),
            react(1, extra, "e0"),
            react(1, 2, "e2"),
        ]);
        let pg_out = run(&mut pg, &reqs);
        let lite_out = run(&mut lite, &reqs);
        let outcomes = |out: &[Reply]| -> Vec<String> {
            out.iter()
                .filter_map(|r| match r {
                    Reply::Changed { outcome, .. } => Some(format!("{outcome:?}")),
                    _ => None,
                })
                .collect()
        };
        let (p, l) = (outcomes(&pg_out), outcomes(&lite_out));
        assert_eq!(p, l);
        let tail: Vec<_> = p[MAX_REACTIONS..].iter().map(|s| &s[..6]).collect();
        assert_eq!(
            tail,
            [
                "Err(To", "Err(To", "Ok(Cha", "Err(To", "Ok(Cha", "Ok(Cha", "Ok(Cha"
            ]
        );
        let read = room_history("general");
        let got = read_messages(&mut pg, &read);
        let want = messages(run(&mut lite, &[read]).pop().unwrap());
        assert_eq!(got[0].reactions, want[0].reactions);
        assert_eq!(got[0].reactions.len(), MAX_REACTION_KINDS);
    }

    /// Two nodes toggling reactions on one message at once: the row lock
    /// (`FOR UPDATE`) orders each read-modify-write after the other's, so
    /// no reaction is lost.
    #[test]
    fn reactions_from_two_nodes_at_once_are_all_kept() {
        let Some(t) = TestDb::new() else { return };
        let mut db = t.open();
        world(&mut db);
        std::thread::scope(|s| {
            for node in 0..2u32 {
                let mut db = t.open();
                s.spawn(move || {
                    for i in 0..40u32 {
                        let user = 10 + node * 100 + i;
                        let out = run(&mut db, &[react(1, user, &format!("n{node}"))]);
                        assert!(
                            matches!(out[..], [Reply::Changed { outcome: Ok(_), .. }]),
                            "{out:?}"
                        );
                    }
                });
            }
        });
        let got = read_messages(&mut db, &room_history("general"));
        let mut users: Vec<_> = got[0]
            .reactions
            .iter()
            .flat_map(|r| r.users.clone())
            .collect();
        users.sort_unstable();
        assert_eq!(users.len(), 80, "{:?}", got[0].reactions);
        users.dedup();
        assert_eq!(users.len(), 80);
    }

    /// A reply names a live, earlier message of its own room or
    /// conversation (either side of it); anything else is
    /// `MessageRefused`, fails alone (no row, no seq, no mention) and the
    /// batch goes on. Through the per-request path and the bulk path alike:
    /// the same replies and rows (with a refused retry of a stored client
    /// id refused, not `MessageExists`).
    #[test]
    fn replies_are_checked_on_both_paths() {
        let (Some(t_each), Some(t_bulk)) = (TestDb::new(), TestDb::new()) else {
            return;
        };
        let mut each = PerRequest(t_each.open());
        let mut bulk = t_bulk.open();
        let mut retry = put13(20, Some("general"), 1, None, "retry", Some(99), vec![2]);
        if let Request::PutMessage { client_id, .. } = &mut retry {
            *client_id = Some("c1".into());
        }
        let mut first = put13(19, Some("general"), 1, None, "first", None, vec![]);
        if let Request::PutMessage { client_id, .. } = &mut first {
            *client_id = Some("c1".into());
        }
        let batches = vec![
            vec![first, delete(6, 1)],
            vec![
                put13(10, Some("general"), 2, None, "re 1", Some(1), vec![1, 3, 3]),
                put13(11, Some("general"), 2, None, "re ops", Some(2), vec![1]),
                put13(12, Some("general"), 2, None, "re none", Some(999), vec![]),
                put13(13, Some("general"), 2, None, "re deleted", Some(6), vec![1]),
                put13(14, None, 2, Some(1), "re dm, other side", Some(4), vec![]),
                put13(15, None, 3, Some(1), "re another dm", Some(4), vec![]),
                put13(16, Some("ops"), 1, None, "re 2", Some(2), vec![2]),
                put13(
                    17,
                    None,
                    1,
                    Some(2),
                    "dm mentions are not kept",
                    None,
                    vec![2],
                ),
                retry,
                put13(21, Some("general"), 2, None, "after", None, vec![]),
            ],
            // A run of one: `execute` on both paths.
            vec![put13(30, Some("ops"), 1, None, "re 3", Some(3), vec![2])],
            vec![put13(31, Some("ops"), 1, None, "re gone", Some(6), vec![2])],
        ];
        world(&mut each);
        world(&mut bulk);
        let mut replies = (Vec::new(), Vec::new());
        for batch in &batches {
            replies.0.push(run(&mut each, batch));
            replies.1.push(run(&mut bulk, batch));
        }
        let (rows_each, rank_each) = dump(&mut t_each.client());
        let (rows_bulk, rank_bulk) = dump(&mut t_bulk.client());
        for (a, b) in replies.0.iter().zip(&replies.1) {
            let a: Vec<_> = a.iter().map(|r| normal(r, &rank_each)).collect();
            let b: Vec<_> = b.iter().map(|r| normal(r, &rank_bulk)).collect();
            assert_eq!(a, b);
        }
        assert_eq!(rows_each, rows_bulk);
        let kinds: Vec<_> = replies.1[1]
            .iter()
            .map(|r| match r {
                Reply::MessageStored { key, .. } => format!("stored {key}"),
                Reply::MessageRefused { key } => format!("refused {key}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "stored 10",
                "refused 11",
                "refused 12",
                "refused 13",
                "stored 14",
                "refused 15",
                "stored 16",
                "stored 17",
                "refused 20",
                "stored 21"
            ]
        );
        assert!(matches!(replies.1[2][..], [Reply::MessageStored { .. }]));
        assert!(matches!(
            replies.1[3][..],
            [Reply::MessageRefused { key: 31 }]
        ));
        let mut c = t_bulk.client();
        assert_eq!(
            count(
                &mut c,
                "SELECT MAX(seq) FROM messages WHERE target = 'r:general'"
            ),
            5,
            "refused replies took no seq"
        );
        let mentions: Vec<String> = c
            .query(
                "SELECT n.user_id || ' ' || n.room || ' ' || m.content FROM mentions n
                 JOIN messages m ON m.id = n.message_id ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            mentions,
            [
                "1 general re 1",
                "2 ops re 2",
                "2 ops re 3",
                "3 general re 1"
            ]
        );
        let got = messages(read_one(
            &mut bulk,
            &history_req(Target::Direct(1, 2), None, None, 9, 0),
        ));
        assert_eq!(
            got.iter().map(|m| m.reply_to).collect::<Vec<_>>(),
            [None, Some(4), None]
        );
    }

    /// Deleted messages leave `History` (and so replays and the HTTP
    /// history) and search, and stay in `Catchup` with `deleted: true` and
    /// empty content, so a node steps its seq past them; reads carry
    /// `reply_to`, `edited_ms` and `reactions`.
    #[test]
    fn deleted_messages_leave_every_read_but_catchup() {
        let Some(t) = TestDb::new() else { return };
        let mut db = t.open();
        world(&mut db);
        run(
            &mut db,
            &[
                put13(7, Some("general"), 2, None, "re plans", Some(6), vec![]),
                edit(7, 2, "re public plans"),
                react(7, 1, "👍"),
                delete(1, 2),
            ],
        );
        let got = read_messages(&mut db, &room_history("general"));
        assert_eq!(ids(&got), [6, 7]);
        assert_eq!(got[1].reply_to, Some(6));
        assert_eq!(got[1].edited_ms, Some(5007));
        assert_eq!(got[1].reactions.len(), 1);
        assert!(!got[1].deleted);
        assert!(read_messages(&mut db, &search_req(1, "general", None, 10)).is_empty());
        let catchup = Request::Catchup {
            ticket: TICKET,
            target: Target::Room("general".into()),
            after: 0,
            limit: 10,
        };
        let got = read_messages(&mut db, &catchup);
        assert_eq!(
            got.iter()
                .map(|m| (m.id, m.seq, m.deleted, m.content.as_str()))
                .collect::<Vec<_>>(),
            [
                (1, 1, true, ""),
                (6, 2, false, "public plans"),
                (7, 3, false, "re public plans")
            ]
        );
        assert!(got[0].reactions.is_empty());
        // On the writer too (no reader connection).
        db.begin().unwrap();
        let got = messages(db.execute(&catchup).unwrap().unwrap());
        let hist = messages(db.execute(&room_history("general")).unwrap().unwrap());
        db.commit().unwrap();
        assert_eq!((got.len(), hist.len()), (3, 2));
    }

    /// Search shows only what the user may read: a private room's messages
    /// to its owner and members only; a conversation to its two users
    /// only; an orphan room's to nobody; public rooms to everyone. A scope
    /// (a room, a conversation) narrows it; results are newest first, at
    /// most `limit`; it answers on the writer as on the reader.
    #[test]
    fn search_shows_only_what_the_user_may_read() {
        let Some(t) = TestDb::new() else { return };
        let mut db = t.open();
        world(&mut db);
        let plans = |db: &mut Postgres, user, scope| {
            ids(&read_messages(db, &search_req(user, "plans", scope, 50)))
        };
        assert_eq!(plans(&mut db, 1, None), [6, 4, 3, 2], "the owner");
        assert_eq!(plans(&mut db, 2, None), [6, 4, 3, 2], "a member");
        assert_eq!(
            plans(&mut db, 3, None),
            [6],
            "neither, author of an orphan's"
        );
        assert_eq!(plans(&mut db, 4, None), [6], "a third user");
        let ops = Some(Target::Room("ops".into()));
        assert_eq!(plans(&mut db, 2, ops.clone()), [3, 2]);
        assert!(plans(&mut db, 4, ops).is_empty());
        assert!(plans(&mut db, 3, Some(Target::Room("lost".into()))).is_empty());
        assert_eq!(plans(&mut db, 2, Some(Target::Direct(2, 1))), [4]);
        assert_eq!(plans(&mut db, 1, Some(Target::Direct(1, 2))), [4]);
        assert!(plans(&mut db, 4, Some(Target::Direct(4, 1))).is_empty());
        assert!(plans(&mut db, 1, Some(Target::Room("general".into()))) == [6]);
        assert_eq!(
            ids(&read_messages(&mut db, &search_req(1, "plans", None, 2))),
            [6, 4]
        );
        db.begin().unwrap();
        let on_writer = messages(
            db.execute(&search_req(2, "secret", None, 9))
                .unwrap()
                .unwrap(),
        );
        db.commit().unwrap();
        assert_eq!(ids(&on_writer), [3, 2]);
        // Membership changes are seen at once.
        run(
            &mut db,
            &[Request::RemoveMember {
                ticket: TICKET,
                room: "ops".into(),
                user: 2,
            }],
        );
        assert_eq!(plans(&mut db, 2, None), [6, 4]);
    }

    /// Words match whole words, in any case and any order, all of them;
    /// punctuation separates words as SQLite's tokenizer does (an email, a
    /// decimal, a host, a path), and nothing typed is query syntax. Every
    /// query gives SQLite's answer.
    #[test]
    fn search_matches_whole_words_as_sqlite_does() {
        let Some(t) = TestDb::new() else { return };
        let mut pg = t.open();
        let mut lite = Sqlite::open_in_memory().unwrap();
        let texts = [
            "The quick brown Fox",
            "fox-trot and foxes",
            "mail alice@example.com now",
            "pi is 3.14 roughly",
            "see example.com/docs/v2 please",
            "don't stop, DON'T",
            "Ünïcödé ÉCOLE café",
            "snake_case and camelCase",
            "tabs\tand\nnewlines",
            "it's 10:30 & (ok) | !not",
            "quick quick quick",
        ];
        let mut writes = vec![Request::PutPublicRoom {
            name: "general".into(),
            creator: 1,
        }];
        for (i, text) in texts.iter().enumerate() {
            writes.push(put13(
                i as MsgId + 1,
                Some("general"),
                1,
                None,
                text,
                None,
                vec![],
            ));
        }
        run(&mut pg, &writes);
        run(&mut lite, &writes);
        let queries = [
            ("fox", vec![2, 1]),
            ("FOX quick", vec![1]),
            ("brown the", vec![1]),
            ("fo", vec![]),
            ("foxes trot", vec![2]),
            ("example", vec![5, 3]),
            ("alice com", vec![3]),
            ("3 14", vec![4]),
            ("3.14", vec![4]),
            ("docs v2", vec![5]),
            ("don t", vec![6]),
            ("don't", vec![6]),
            ("école CAFÉ", vec![7]),
            ("ünïcödé", vec![7]),
            ("snake case", vec![8]),
            ("camelcase", vec![8]),
            ("newlines tabs", vec![9]),
            ("10 30 ok not", vec![10]),
            ("!not & ok | (", vec![10]),
            ("quick", vec![11, 1]),
            ("quick:* | fox", vec![1]),
            ("'fox' <-> brown", vec![1]),
        ];
        for (q, want) in queries {
            let req = search_req(1, q, None, 20);
            let got = ids(&read_messages(&mut pg, &req));
            let lite_got = ids(&messages(run(&mut lite, &[req]).pop().unwrap()));
            assert_eq!(got, lite_got, "{q:?}: PostgreSQL against SQLite");
            assert_eq!(got, want, "{q:?}");
        }
    }

    /// Unread counts carry mentions: a room where the user was mentioned
    /// counts even without a marker or a membership; a marker past a
    /// mention drops it; deleted messages count neither as unread nor as
    /// mentions (room or conversation); leaving a room drops the mentions
    /// there; `load` lists a mentioned user as an unread source. As SQLite.
    #[test]
    fn unread_counts_mentions_as_sqlite() {
        let Some(t) = TestDb::new() else { return };
        let mut pg = t.open();
        let mut lite = Sqlite::open_in_memory().unwrap();
        let mut writes = vec![
            Request::PutUser(user(1, "alice")),
            Request::PutUser(user(2, "bob")),
            Request::PutUser(user(3, "carol")),
            Request::PutUser(user(4, "dave")),
            Request::PutUser(user(5, "erin")),
            private_room("ops", vec![2, 3]),
            Request::PutPublicRoom {
                name: "general".into(),
                creator: 1,
            },
        ];
        // (room, from, to, mentions) of messages 1, 2, ...
        type Sent<'a> = (Option<&'a str>, UserId, Option<UserId>, Vec<UserId>);
        let plan: [Sent<'_>; 10] = [
            (Some("general"), 1, None, vec![4]),
            (Some("general"), 2, None, vec![4, 1]),
            (Some("ops"), 1, None, vec![2]),
            (Some("ops"), 3, None, vec![2, 3]),
            (None, 3, Some(1), vec![1]),
            (Some("general"), 3, None, vec![]),
            (None, 3, Some(1), vec![]),
            (Some("ops"), 2, None, vec![3]),
            (Some("general"), 2, None, vec![4]),
            (Some("ops"), 1, None, vec![2, 3]),
        ];
        for (i, (room, from, to, mentions)) in plan.into_iter().enumerate() {
            let id = i as MsgId + 1;
            writes.push(put13(id, room, from, to, &format!("m{id}"), None, mentions));
        }
        writes.extend([
            Request::MarkRead {
                user: 4,
                target: Target::Room("general".into()),
                id: 1,
            },
            delete(9, 2),
            delete(7, 3),
            delete(10, 1),
        ]);
        let first = writes.len();
        run(&mut pg, &writes);
        run(&mut lite, &writes);
        let unread = |user| Request::Unread {
            ticket: TICKET,
            user,
        };
        let compare = |pg: &mut Postgres, lite: &mut Sqlite| {
            let mut all = Vec::new();
            for user in 1..=5 {
                let got = match read_one(pg, &unread(user)) {
                    Reply::Unread { counts, .. } => counts,
                    other => panic!("{other:?}"),
                };
                let want = match run(lite, &[unread(user)]).pop() {
                    Some(Reply::Unread { counts, .. }) => counts,
                    other => panic!("{other:?}"),
                };
                assert_eq!(got, want, "user {user}");
                all.push(got);
            }
            all
        };
        let all = compare(&mut pg, &mut lite);
        let room = |r: &str, n, m| UnreadCount::Room(r.into(), n, m);
        assert_eq!(
            all[3],
            [room("general", 2, 1)],
            "dave: a mention, no membership"
        );
        assert_eq!(all[1], [room("ops", 2, 2)], "bob");
        assert_eq!(
            all[0],
            [room("general", 2, 1), UnreadCount::Direct(3, 1)],
            "alice: a mention in a public room; the deleted conversation message does not count"
        );
        let mut sources = pg.load().unwrap().unread_sources;
        sources.sort_unstable();
        let mut want = lite.load().unwrap().unread_sources;
        want.sort_unstable();
        assert_eq!(sources, want);
        assert!(sources.contains(&4), "dave was only mentioned: {sources:?}");
        let leave = [Request::RemoveMember {
            ticket: TICKET,
            room: "ops".into(),
            user: 2,
        }];
        run(&mut pg, &leave);
        run(&mut lite, &leave);
        let all = compare(&mut pg, &mut lite);
        assert!(all[1].is_empty(), "{:?}", all[1]);
        assert!(first > 0);
    }

    /// A database at schema 1 (before issue 13) with messages in it is
    /// migrated in place when a node opens it: the new columns are there
    /// (empty), the old messages are searchable, and everything new works.
    #[test]
    fn schema_1_migrates_in_place() {
        let Some(t) = TestDb::new() else { return };
        let mut c = t.client();
        c.batch_execute(MIGRATIONS[0]).unwrap();
        c.batch_execute(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version VALUES (1);
             INSERT INTO rooms VALUES ('general', false, 1);
             INSERT INTO targets VALUES ('r:general', 2);
             INSERT INTO messages (id, target, seq, room, from_id, content, ts_ms)
                 VALUES (1, 'r:general', 1, 'general', 1, 'Old news', 1),
                        (2, 'r:general', 2, 'general', 2, 'older news', 2);
             INSERT INTO targets VALUES ('r:bulk', 25000);
             INSERT INTO messages (id, target, seq, room, from_id, content, ts_ms)
                 SELECT 2 + i, 'r:bulk', i, 'bulk', 1, 'Bulk, number ' || i, i
                 FROM generate_series(1, 25000) AS i;
             SELECT setval('message_ids', 25002);",
        )
        .unwrap();
        let mut db = t.open();
        assert_eq!(
            count(&mut c, "SELECT version::bigint FROM schema_version"),
            2
        );
        // Every chunk of the fill, to the last message.
        assert_eq!(
            count(
                &mut c,
                "SELECT COUNT(*) FROM messages WHERE tsv @@ 'bulk'::tsquery"
            ),
            25000
        );
        assert_eq!(
            count(
                &mut c,
                "SELECT COUNT(*) FROM messages WHERE tsv @@ '25000'::tsquery"
            ),
            1
        );
        assert_eq!(
            ids(&read_messages(&mut db, &search_req(3, "NEWS", None, 9))),
            [2, 1]
        );
        let out = run(
            &mut db,
            &[
                put13(3, Some("general"), 1, None, "re", Some(1), vec![2]),
                edit(2, 2, "newer news"),
                react(1, 2, "👍"),
                delete(1, 1),
            ],
        );
        assert!(
            matches!(
                out[0],
                Reply::MessageStored {
                    id: 25003,
                    seq: 3,
                    ..
                }
            ),
            "{out:?}"
        );
        assert!(
            out[1..]
                .iter()
                .all(|r| matches!(r, Reply::Changed { outcome: Ok(_), .. }))
        );
        assert_eq!(
            ids(&read_messages(&mut db, &search_req(3, "news", None, 9))),
            [2]
        );
        drop(t.open());
    }

    /// A reply checked on one node while another node's uncommitted batch
    /// deletes its parent: the delete holds the append lock, so the reply's
    /// check waits for its commit, sees the parent deleted and is refused
    /// (never a reply to a deleted message).
    #[test]
    fn a_reply_waits_for_a_delete_of_its_parent_elsewhere() {
        let Some(t) = TestDb::new() else { return };
        let mut a = t.open();
        world(&mut a);
        a.begin().unwrap();
        assert!(matches!(
            a.execute(&delete(6, 1)).unwrap(),
            Some(Reply::Changed { outcome: Ok(_), .. })
        ));
        let (done_tx, done) = std::sync::mpsc::channel();
        let mut b = t.open();
        let node_b = std::thread::spawn(move || {
            let out = run(
                &mut b,
                &[
                    put13(7, Some("general"), 2, None, "re", Some(6), vec![]),
                    put13(8, Some("general"), 2, None, "x", None, vec![]),
                ],
            );
            done_tx.send(()).unwrap();
            out
        });
        assert!(
            done.recv_timeout(Duration::from_millis(300)).is_err(),
            "the reply did not wait for the delete's batch"
        );
        a.commit().unwrap();
        let out = node_b.join().unwrap();
        assert!(
            matches!(
                out[..],
                [
                    Reply::MessageRefused { key: 7 },
                    Reply::MessageStored { key: 8, seq: 3, .. }
                ]
            ),
            "{out:?}"
        );
    }

    /// A message's stored words and a search's tsquery follow
    /// `search_words`' rule (no PostgreSQL parsing): runs of letters and
    /// digits, lower case, sorted and unique; every query word quoted (so
    /// tsquery operators typed by a user are plain words, and were cut away
    /// by `search_words` anyway); too long a word is never stored and a
    /// search for it finds nothing.
    #[test]
    fn search_words_are_hubbubs_not_the_parsers() {
        assert_eq!(
            search_text("Mail alice@Example.COM: 3.14, x.com/a b-b ÉCOLE great👍 a"),
            "14 3 a alice b com example great mail x école"
        );
        assert_eq!(search_text(""), "");
        assert_eq!(search_text("!!! ..."), "");
        let long = "x".repeat(MAX_LEXEME_BYTES + 1);
        assert_eq!(search_text(&format!("{long} ok")), "ok");
        let words = |q: &str| search_words(q, MAX_SEARCH_WORDS);
        assert_eq!(
            search_query(&words("Fox & !trot | 'x':*")).as_deref(),
            Some("'fox' & 'trot' & 'x'")
        );
        assert_eq!(
            search_query(&["it's".into(), "a\\b".into()]).as_deref(),
            Some("'it''s' & 'a\\\\b'")
        );
        assert_eq!(search_query(&[]), None);
        assert_eq!(search_query(&[long]), None);
    }
}
