//! One connection to PostgreSQL: how it is configured and opened
//! ([`parse_config`] with hubbub's timeouts, [`connect`]), the statements it
//! prepares once ([`Statements`]), and what its errors mean for the batch.
//! The writer and the reader each hold one ([`Conn`]); both come from here.
//!
//! TLS when the connection string asks for it: `sslmode=require` (or
//! libpq's `verify-ca`/`verify-full`) connects through rustls and always
//! verifies the certificate and its name against `--postgres-ca` or the
//! system's roots (`tls::services`); the default, `prefer`, connects in
//! clear as before. [`connect`] is the one place a transport is chosen.
//!
//! Failures ([`classify`]): connection-level errors (a closed connection,
//! I/O, class `08`, `57P01` admin shutdown and the rest of class `57`), the
//! transaction's own (class `40`: serialization, deadlock; `25`), lock
//! timeouts (`55P03`, a lock held elsewhere, as SQLite's `BUSY`), resources
//! (`53`: disk full) and system errors (`58`, `XX`) abort the batch;
//! constraint and data errors (`23`, `22`, …) fail one request. Text
//! PostgreSQL cannot hold is refused before any statement runs
//! ([`check_text`], [`check_request`]), so that its request fails alone.
//!
//! Reconnection: a connection that is closed, or whose last call failed at
//! the connection level, is dropped; the next `Backend::begin` (writer) or
//! `Reader::begin` (reader) connects again, once per call, failing fast with
//! [`StoreError::batch`] while PostgreSQL is down (the writer's health probe
//! calls `begin` every `STORE_PROBE`). A `BEGIN` that fails on an old
//! connection (PostgreSQL restarted while the node was idle) is retried
//! once on a new one, so an idle node's first batch after a restart does
//! not fail ([`begin_on`]).

use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, Config, Statement};

use crate::store::{Request, StoreError, Target, UserId};

/// How long connecting may take before `begin` gives up: short, because the
/// writer retries every `STORE_PROBE` while the database is down, and a
/// refused connection fails at once anyway.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long unacknowledged data may sit on a connection's socket before the
/// kernel drops it (`TCP_USER_TIMEOUT`): a database host that vanished
/// fails the batch in seconds instead of after TCP's quarter of an hour.
pub(super) const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a statement waits for a row lock another node holds (its batch
/// is slow or stuck) before the batch fails with `55P03`: the counterpart
/// of SQLite's busy timeout. Deadlocks are found sooner, after
/// PostgreSQL's `deadlock_timeout`.
pub(super) const LOCK_TIMEOUT: &str = "5s";

/// What the server's `pg_stat_activity` shows for hubbub's connections.
pub(super) const APPLICATION_NAME: &str = "hubbub";

/// Why a statement of this backend failed: PostgreSQL's (or the
/// connection's) error, or data that cannot be stored or read as is.
#[derive(Debug)]
pub(super) enum Fail {
    Pg(postgres::Error),
    Data(String),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Fail {
        Fail::Pg(e)
    }
}

pub(super) type Res<T> = Result<T, Fail>;

/// Whether a PostgreSQL error ends the transaction (and the batch), not just
/// the request: see the module doc. An error that did not come from the
/// server (I/O, a closed connection, a protocol error) always does.
pub(super) fn aborts_batch(e: &postgres::Error) -> bool {
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
pub(super) fn breaks_connection(e: &postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(code) => matches!(&code.code()[..2], "08" | "57"),
    }
}

/// The error as the caller sees it ([`classify`]d).
pub(super) fn classify(f: &Fail) -> StoreError {
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
pub(super) fn check_text(texts: &[Option<&str>]) -> Res<()> {
    if texts.iter().flatten().any(|t| t.contains('\0')) {
        return Err(Fail::Data("text holds a NUL character".into()));
    }
    Ok(())
}

/// A stored user id (BIGINT) as the loop's [`UserId`].
pub(super) fn user_id(v: i64) -> Res<UserId> {
    UserId::try_from(v).map_err(|_| Fail::Data(format!("user id {v} is out of range")))
}

pub(super) fn opt_user_id(v: Option<i64>) -> Res<Option<UserId>> {
    v.map(user_id).transpose()
}

pub(super) fn blob<const N: usize>(v: Vec<u8>) -> Res<[u8; N]> {
    v.try_into()
        .map_err(|v: Vec<u8>| Fail::Data(format!("expected {N} bytes, found {}", v.len())))
}

/// The statements a connection prepares once (one round trip each call
/// after that, instead of two).
pub(super) struct Statements {
    pub(super) append_lock: Statement,
    pub(super) lock_target: Statement,
    pub(super) set_heads: Statement,
    pub(super) insert_message: Statement,
    pub(super) existing: Statement,
    /// The bulk path's ([`append_run`](super::append::append_run)) counterparts of the three above.
    pub(super) lock_targets: Statement,
    pub(super) existing_many: Statement,
    pub(super) insert_messages: Statement,
    pub(super) public_room: Statement,
    pub(super) last_seen: Statement,
    pub(super) private_room: Statement,
    pub(super) add_member: Statement,
    pub(super) remove_member: Statement,
    pub(super) remove_read: Statement,
    pub(super) mark_room: Statement,
    pub(super) mark_dm: Statement,
    /// `mark_dm` for a message of that conversation only (`$3` its id).
    pub(super) mark_conversation: Statement,
    pub(super) history: Statement,
    pub(super) catchup: Statement,
    pub(super) unread_rooms: Statement,
    pub(super) unread_dms: Statement,
    /// A room message's mention rows (`$1` users, `$2` rooms, `$3` ids).
    pub(super) insert_mentions: Statement,
    pub(super) remove_mentions: Statement,
    /// Where a live message lives, for a reply's check.
    pub(super) reply_parent: Statement,
    pub(super) reply_parents: Statement,
    /// The live message an edit, delete or reaction is about, row locked.
    pub(super) locate: Statement,
    pub(super) is_member: Statement,
    pub(super) edit: Statement,
    pub(super) delete: Statement,
    pub(super) delete_mentions: Statement,
    pub(super) set_reactions: Statement,
}

/// The columns [`row_to_message`](super::reads::row_to_message) reads, in its order.
pub(super) const MESSAGE_COLUMNS: &str = "id, room, from_id, to_id, content, ts_ms, seq, reply_to, \
     edited_ms, reactions, deleted_ms, attachments";

/// Which messages user `$2` may read, over `messages m`: SQLite's
/// `MAY_READ`. Their conversations; rooms with a row that is public, or
/// private with them as owner or member. A room with messages but no row
/// (its write was lost) is readable by nobody, as the loop treats it.
pub(super) const MAY_READ: &str = "((m.room IS NULL AND (m.from_id = $2 OR m.to_id = $2))
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
                                       reply_to, tsv, attachments)
                 VALUES (nextval('message_ids'), $1, $2, $3, $4, $5, $6, $7, $8, $9,
                         array_to_tsvector(string_to_array($10::text, ' ')), $11)
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
            mark_conversation: c.prepare(
                "INSERT INTO dm_reads (user_id, peer_id, last_id)
                 SELECT $1, $2, $3 WHERE EXISTS (
                     SELECT 1 FROM messages WHERE id = $3 AND room IS NULL
                     AND ((from_id = $1 AND to_id = $2) OR (from_id = $2 AND to_id = $1)))
                 ON CONFLICT (user_id, peer_id)
                 DO UPDATE SET last_id = GREATEST(dm_reads.last_id, excluded.last_id)",
            )?,
            // Deleted messages leave history; `Catchup` keeps them (with
            // their empty content), so a node can step its seq past them.
            // Only what the reader (`$2`, as `MAY_READ` has it) may read.
            history: c.prepare(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m
                 WHERE m.target = $1 AND m.id < $3 AND m.id > $4 AND m.deleted_ms IS NULL
                   AND {MAY_READ}
                 ORDER BY m.id DESC LIMIT $5 OFFSET $6"
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
                "SELECT m.room, m.from_id, m.to_id, r.private, r.owner_id, m.reactions,
                        COALESCE(r.archived, false)
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
                "UPDATE messages SET content = '', reactions = NULL, attachments = NULL,
                        deleted_ms = $2, tsv = ''::tsvector
                 WHERE id = $1",
            )?,
            delete_mentions: c.prepare("DELETE FROM mentions WHERE message_id = $1")?,
            set_reactions: c.prepare("UPDATE messages SET reactions = $2 WHERE id = $1")?,
        })
    }
}

/// One connection and its prepared statements.
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) st: Statements,
}

impl Conn {
    pub(super) fn open(config: &Config) -> Result<Conn, StoreError> {
        let mut client = connect(config).map_err(|e| {
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
    let mut config: Config = crate::tls::services::postgres_url(url)
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

/// `conn`, or a new connection when there is none or it is closed; and
/// whether it is new.
pub(super) fn connected<'a>(
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
pub(super) fn begin_on(
    config: &Config,
    conn: &mut Option<Conn>,
    sql: &str,
) -> Result<(), StoreError> {
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

/// An id or count from the loop as a BIGINT parameter (ids stay far below
/// `i64::MAX`; a larger one saturates, which only widens a window).
pub(super) fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The input of a request that runs without a savepoint, checked so that
/// nothing it sends can fail on data.
pub(super) fn check_request(req: &Request) -> Res<()> {
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

/// Opens a connection: the one place the transport is chosen (see the
/// module doc).
pub(super) fn connect(config: &Config) -> Result<Client, postgres::Error> {
    crate::tls::services::connect_postgres(config)
}
