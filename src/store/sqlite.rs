//! The SQLite backend: schema, migrations, and the statements behind each
//! [`Request`]. Runs on the storage threads only (after `load` at startup):
//! [`Sqlite`] on the writer, [`SqliteReader`] on the reader.
//!
//! Durability: WAL with `synchronous = NORMAL`. A committed transaction is in
//! the WAL file before `COMMIT` returns, so it survives `kill -9` of the server
//! (the contract's promise for acked messages); surviving power loss as well
//! would need `synchronous = FULL`, one fsync per batch.
//!
//! Atomic requests (the `Backend` contract): a failed statement undoes only
//! itself (its statement journal), so a single-statement request needs
//! nothing more; a request that [writes several
//! statements](super::Facts::writes_several_statements) runs inside a
//! savepoint (`in_savepoint`). Message inserts, the hot path, pay for one
//! only when they carry mentions.
//!
//! Privacy: a chat history is private, so a database file this backend
//! creates is owner-only ([`PRIVATE_FILE_MODE`]) whatever the umask, and so
//! are its `-wal` and `-shm` (SQLite gives them the main file's mode). A file
//! the operator created keeps the mode they gave it.
//!
//! Reads: [`Sqlite::reader`] opens a second, read-only connection to the same
//! file for the reader thread ([`SqliteReader`]); WAL lets it read committed
//! data while the writer's transaction is open, neither waiting for the
//! other. An in-memory database has no file to share and gives no reader.
//!
//! Backups: [`backup`] copies a database that a running server is writing,
//! on its own connection (`VACUUM INTO`, one consistent snapshot), for
//! `hubbub backup`.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{
    Attachment, Backend, BlobKey, Change, ChangeKind, FileId, FileRow, HistoryQuery, ImageInfo,
    MsgId, PostRefusal, PrivateRoomRow, Reader, Refusal, Reply, Request, SearchQuery, Snapshot,
    StoreError, StoredMessage, Target, UnreadCount, UserId, UserRow, Who, attachable,
    decode_attachments, decode_reactions, encode_attachments, encode_reactions, may_change,
    moderation_audit, toggle_reaction,
};
use crate::config::CLIENT_ID_WINDOW;
use crate::files::FileStore;
use crate::files::dir::DirStore;
use accounts::{USER_COLUMNS, user_row};

/// The setting that holds a SQLite database's id floor (PostgreSQL moves
/// its `message_ids` sequence instead).
pub const ID_FLOOR_SETTING: &str = "id_floor";

/// Schema versions, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE settings (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE users (
    id          INTEGER PRIMARY KEY,
    username    TEXT NOT NULL,
    email       TEXT NOT NULL,
    pw_iter     INTEGER NOT NULL,
    pw_salt     BLOB NOT NULL,
    pw_hash     BLOB NOT NULL,
    created_ms  INTEGER NOT NULL,
    last_seen_ms INTEGER
);
CREATE UNIQUE INDEX users_username ON users(username COLLATE NOCASE);
CREATE UNIQUE INDEX users_email ON users(email COLLATE NOCASE);
-- Every room that ever had a message or was created; owner_id only for private rooms.
CREATE TABLE rooms (
    name       TEXT PRIMARY KEY,
    private    INTEGER NOT NULL,
    owner_id   INTEGER
) WITHOUT ROWID;
CREATE TABLE room_members (
    room    TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    PRIMARY KEY (room, user_id)
) WITHOUT ROWID;
-- A room message has `room`; a private one has `to_id` and `dm`, the unordered
-- pair packed as (low << 32 | high) so one index serves a conversation.
CREATE TABLE messages (
    id        INTEGER PRIMARY KEY,
    room      TEXT,
    from_id   INTEGER NOT NULL,
    to_id     INTEGER,
    dm        INTEGER,
    content   TEXT NOT NULL,
    ts_ms     INTEGER NOT NULL,
    client_id TEXT
);
CREATE INDEX messages_room ON messages(room, id) WHERE room IS NOT NULL;
CREATE INDEX messages_dm ON messages(dm, id) WHERE dm IS NOT NULL;
CREATE INDEX messages_to ON messages(to_id, id) WHERE to_id IS NOT NULL;
CREATE UNIQUE INDEX messages_client_id ON messages(from_id, client_id) WHERE client_id IS NOT NULL;
CREATE TABLE room_reads (
    user_id INTEGER NOT NULL,
    room    TEXT NOT NULL,
    last_id INTEGER NOT NULL,
    PRIMARY KEY (user_id, room)
) WITHOUT ROWID;
CREATE TABLE dm_reads (
    user_id INTEGER NOT NULL,
    peer_id INTEGER NOT NULL,
    last_id INTEGER NOT NULL,
    PRIMARY KEY (user_id, peer_id)
) WITHOUT ROWID;
"#,
    r#"
-- Issue 13: replies, edits, deletes, reactions (one JSON column, see
-- `store::encode_reactions`), mentions for unread counts, and full-text search.
-- A deleted message keeps its row (its id stays taken, a retry of its
-- client_id still finds it) with empty content.
ALTER TABLE messages ADD COLUMN reply_to INTEGER;
ALTER TABLE messages ADD COLUMN edited_ms INTEGER;
ALTER TABLE messages ADD COLUMN deleted_ms INTEGER;
ALTER TABLE messages ADD COLUMN reactions TEXT;
-- Who a room message mentions (`@name`), for unread mention counts.
CREATE TABLE mentions (
    user_id    INTEGER NOT NULL,
    room       TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    PRIMARY KEY (user_id, room, message_id)
) WITHOUT ROWID;
CREATE INDEX mentions_message ON mentions(message_id);
-- An external-content FTS5 index over messages.content: the text is kept
-- once, in `messages`; the index holds only the words, and only which
-- messages have them (`detail = none`: no positions, since a search is
-- words in any order, never a phrase). `unicode61` folds case and splits
-- on anything that is not a letter or digit, as `store::search_words`
-- does; diacritics are kept (PostgreSQL's `simple` configuration keeps
-- them too), so both stores match the same words. No triggers: the writer
-- indexes a batch's messages just before its commit (`Sqlite::commit`).
CREATE VIRTUAL TABLE messages_fts USING fts5(
    content, content = 'messages', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 0',
    detail = none, columnsize = 0
);
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
"#,
    r#"
-- Issue 26: Web Push. A browser's subscription is keyed by its endpoint:
-- signed in as someone else, it subscribes the same endpoint again and the
-- row moves to them (`store::sqlite::push`).
CREATE TABLE push_subscriptions (
    endpoint   TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL,
    p256dh     BLOB NOT NULL,
    auth       BLOB NOT NULL,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX push_subscriptions_user ON push_subscriptions(user_id, created_ms);
-- What a push may show, per user; no row: the default (everything).
CREATE TABLE push_settings (
    user_id   INTEGER PRIMARY KEY,
    show_text INTEGER NOT NULL
);
"#,
    r#"
-- Issue 23: files. A file is a row here; its bytes are blobs in the
-- directory beside this database (`files::dir`), named by their SHA-256
-- (`blob`, and an image's two previews). `attached`: it was attached to a
-- message once (from then on it is read through its messages only);
-- `released_ms`: when it last stopped being referred to (the sweep counts
-- its grace from then, or from `created_ms`). AUTOINCREMENT: a file id is
-- never reused, so an old link can never name a newer file.
CREATE TABLE files (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id    INTEGER NOT NULL,
    name        TEXT NOT NULL,
    mime        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    blob        TEXT NOT NULL,
    width       INTEGER,
    height      INTEGER,
    thumb_small TEXT,
    thumb_large TEXT,
    created_ms  INTEGER NOT NULL,
    avatar      INTEGER NOT NULL DEFAULT 0,
    attached    INTEGER NOT NULL DEFAULT 0,
    released_ms INTEGER
);
CREATE INDEX files_owner ON files(owner_id);
CREATE INDEX files_blob ON files(blob);
CREATE INDEX files_thumb_small ON files(thumb_small) WHERE thumb_small IS NOT NULL;
CREATE INDEX files_thumb_large ON files(thumb_large) WHERE thumb_large IS NOT NULL;
-- Which live messages carry which files (what access checks and the sweep
-- read); the message objects' own copy is `messages.attachments` (JSON).
CREATE TABLE message_files (
    message_id INTEGER NOT NULL,
    file_id    INTEGER NOT NULL,
    PRIMARY KEY (message_id, file_id)
) WITHOUT ROWID;
CREATE INDEX message_files_file ON message_files(file_id);
ALTER TABLE messages ADD COLUMN attachments TEXT;
ALTER TABLE users ADD COLUMN avatar_file INTEGER;
"#,
    r#"
-- Issue 22: roles, bans, deleted accounts, profiles, server-side sessions,
-- invites, the audit log, archived rooms, and the account change log every
-- node (and a running server, for the command line's writes) polls. See
-- `store/accounts.rs`.
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
ALTER TABLE users ADD COLUMN banned_ms INTEGER;
ALTER TABLE users ADD COLUMN ban_reason TEXT;
ALTER TABLE users ADD COLUMN deleted_ms INTEGER;
ALTER TABLE users ADD COLUMN display_name TEXT;
ALTER TABLE users ADD COLUMN status TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN sessions_after_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
-- Email is optional now: '' is none, and only real ones must be unique.
DROP INDEX users_email;
CREATE UNIQUE INDEX users_email ON users(email COLLATE NOCASE) WHERE email != '';
-- `id`: the `sid` claim, 32 hex digits.
CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    address    TEXT NOT NULL,
    agent      TEXT NOT NULL,
    ended_ms   INTEGER
) WITHOUT ROWID;
CREATE INDEX sessions_user ON sessions(user_id, created_ms);
CREATE INDEX sessions_ended ON sessions(expires_ms) WHERE ended_ms IS NOT NULL;
CREATE TABLE invites (
    code        TEXT PRIMARY KEY,
    created_by  INTEGER,
    created_ms  INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL,
    uses        INTEGER NOT NULL,
    used        INTEGER NOT NULL DEFAULT 0,
    revoked_ms  INTEGER
) WITHOUT ROWID;
CREATE TABLE audit (
    id       INTEGER PRIMARY KEY,
    at_ms    INTEGER NOT NULL,
    actor_id INTEGER,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    reason   TEXT NOT NULL
);
CREATE TABLE account_changes (
    id      INTEGER PRIMARY KEY,
    at_ms   INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    user_id INTEGER,
    sid     TEXT,
    room    TEXT
);
ALTER TABLE rooms ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
"#,
];

/// The columns `row_to_message` reads, in its order.
macro_rules! message_columns {
    ($m:literal) => {
        concat!(
            $m,
            "id, ",
            $m,
            "room, ",
            $m,
            "from_id, ",
            $m,
            "to_id, ",
            $m,
            "content, ",
            $m,
            "ts_ms, ",
            $m,
            "reply_to, ",
            $m,
            "edited_ms, ",
            $m,
            "reactions, ",
            $m,
            "attachments"
        )
    };
}

/// The conversation key of two users, whatever their order.
fn dm_key(a: UserId, b: UserId) -> i64 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    ((lo as i64) << 32) | hi as i64
}

/// SQLite's error, classified: the codes that mean the transaction (not
/// just this statement) cannot go on abort the batch. SQLite may roll the
/// transaction back by itself on these (`SQLITE_FULL`, `SQLITE_IOERR`, ...);
/// going on would commit the later statements on their own.
fn err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    let aborts = matches!(
        e.sqlite_error_code(),
        Some(
            C::DiskFull
                | C::SystemIoFailure
                | C::DatabaseBusy
                | C::DatabaseLocked
                | C::OutOfMemory
                | C::ReadOnly
                | C::CannotOpen
                | C::DatabaseCorrupt
                | C::NotADatabase
                | C::FileLockingProtocolFailed
        )
    );
    StoreError {
        message: e.to_string(),
        aborts_batch: aborts,
    }
}

/// How long a statement waits for a lock another connection holds before
/// failing with `SQLITE_BUSY`: the writer for another process's write lock,
/// the reader for the moments WAL still locks (recovery, a log reset).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One SQLite write connection (the writer thread's).
pub struct Sqlite {
    conn: Connection,
    /// The full-text index changes of the open batch, in order, applied
    /// just before its commit (see [`FtsOp`]).
    fts: std::cell::RefCell<Vec<FtsOp>>,
}

/// A change to the full-text index, kept until the batch commits.
///
/// Why not a trigger: a row inserted into an FTS5 table from inside
/// another statement (a trigger) runs in a statement savepoint, and FTS5
/// writes its pending words out as a new index segment at every
/// savepoint: one segment per message, merged again and again. Measured
/// on 200,000 messages of ten words in batches of 1024 (`benches/search.rs`
/// and a Python replica): about 45,000 messages/s with a trigger against
/// 250,000 with none, while plain statements at the end of the batch keep
/// the pending words in memory and write one segment per commit. The cost,
/// admitted: a search on the writer's own connection within the batch
/// (only when there is no reader: an in-memory database, or a file not in
/// WAL mode) does not see that batch's messages yet.
#[derive(Debug)]
enum FtsOp {
    Add { id: MsgId, content: String },
    Remove { id: MsgId, content: String },
}

/// The reader thread's connection: read-only, to the writer's file.
pub struct SqliteReader {
    conn: Connection,
}

impl Sqlite {
    /// Opens (creating if needed, owner-only) and migrates the database file.
    pub fn open(path: &std::path::Path) -> Result<Sqlite, StoreError> {
        create_private(path)?;
        let conn = Connection::open(path).map_err(err)?;
        Self::init(conn)
    }

    /// An in-memory database, for tests and benchmarks.
    pub fn open_in_memory() -> Result<Sqlite, StoreError> {
        Self::init(Connection::open_in_memory().map_err(err)?)
    }

    fn init(mut conn: Connection) -> Result<Sqlite, StoreError> {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA temp_store = MEMORY;",
        )
        .map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        conn.set_prepared_statement_cache_capacity(32);
        let version: usize = conn
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map_err(err)? as usize;
        if version > MIGRATIONS.len() {
            return Err(StoreError::request(format!(
                "database schema version {version} is newer than this binary ({})",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction().map_err(err)?;
            tx.execute_batch(sql).map_err(err)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(err)?;
            tx.commit().map_err(err)?;
            log::info!("database migrated to schema version {}", i + 1);
        }
        Ok(Sqlite {
            conn,
            fts: Default::default(),
        })
    }
}

/// The reads, shared by the writer (when there is no reader) and the reader.
fn history(conn: &Connection, q: &HistoryQuery) -> rusqlite::Result<Vec<StoredMessage>> {
    let before = q.before.map_or(i64::MAX, |b| b as i64);
    let after = q.after.map_or(0, |a| a as i64);
    let (limit, offset) = (q.limit as i64, q.offset as i64);
    // The reader is `?2`, as `MAY_READ` has it.
    let mut rows = match &q.target {
        Target::Room(room) => {
            let sql = format!(
                "SELECT {} FROM messages m
                 WHERE m.room = ?1 AND m.id < ?3 AND m.id > ?4 AND m.deleted_ms IS NULL
                   AND {MAY_READ}
                 ORDER BY m.id DESC LIMIT ?5 OFFSET ?6",
                message_columns!("m.")
            );
            conn.prepare_cached(&sql)?
                .query_map(
                    params![room, q.reader, before, after, limit, offset],
                    row_to_message,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?
        }
        Target::Direct(a, b) => {
            let sql = format!(
                "SELECT {} FROM messages m
                 WHERE m.dm = ?1 AND m.id < ?3 AND m.id > ?4 AND m.deleted_ms IS NULL
                   AND {MAY_READ}
                 ORDER BY m.id DESC LIMIT ?5 OFFSET ?6",
                message_columns!("m.")
            );
            conn.prepare_cached(&sql)?
                .query_map(
                    params![dm_key(*a, *b), q.reader, before, after, limit, offset],
                    row_to_message,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?
        }
    };
    rows.reverse();
    Ok(rows)
}

/// Rooms the user has read in or belongs to, and people who wrote to the
/// user, with how many messages from others are newer than the read marker.
fn unread(conn: &Connection, user: UserId) -> rusqlite::Result<Vec<UnreadCount>> {
    let mut counts = Vec::new();
    // Rooms with a read marker, rooms the user belongs to, and rooms where
    // someone mentioned them; the last two count from the start.
    let mut st = conn.prepare_cached(
        "SELECT r.room,
                (SELECT COUNT(*) FROM messages m WHERE m.room = r.room AND m.id > r.last_id
                   AND m.from_id != ?1 AND m.deleted_ms IS NULL),
                (SELECT COUNT(*) FROM mentions n WHERE n.user_id = ?1 AND n.room = r.room
                   AND n.message_id > r.last_id)
         FROM (SELECT room, last_id FROM room_reads WHERE user_id = ?1
               UNION ALL
               SELECT room, 0 FROM (SELECT room FROM room_members WHERE user_id = ?1
                                    UNION SELECT room FROM mentions WHERE user_id = ?1)
                 WHERE room NOT IN (SELECT room FROM room_reads WHERE user_id = ?1)) r
         ORDER BY r.room",
    )?;
    for row in st.query_map([user], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })? {
        let (room, n, mentions) = row?;
        if n > 0 {
            counts.push(UnreadCount::Room(room, n as u64, mentions as u64));
        }
    }
    let mut st = conn.prepare_cached(
        "SELECT m.from_id, COUNT(*) FROM messages m
         LEFT JOIN dm_reads r ON r.user_id = ?1 AND r.peer_id = m.from_id
         WHERE m.to_id = ?1 AND m.from_id != ?1 AND m.id > COALESCE(r.last_id, 0)
           AND m.deleted_ms IS NULL
         GROUP BY m.from_id ORDER BY m.from_id",
    )?;
    for row in st.query_map([user], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?)))? {
        let (from, n) = row?;
        counts.push(UnreadCount::Direct(from, n as u64));
    }
    Ok(counts)
}

/// Which messages a user may read, as SQL over `messages m` with the user
/// as `?2`: their conversations, public rooms, private rooms they belong
/// to. A room with messages but no row (its write was lost) is readable by
/// nobody, as the loop treats it.
const MAY_READ: &str = "((m.room IS NULL AND (m.from_id = ?2 OR m.to_id = ?2))
     OR EXISTS (SELECT 1 FROM rooms r WHERE r.name = m.room
                AND (r.private = 0 OR r.owner_id = ?2
                     OR EXISTS (SELECT 1 FROM room_members rm
                                WHERE rm.room = m.room AND rm.user_id = ?2))))";

/// A conversation with at most this many messages is searched by checking
/// each of its messages against the index; a bigger one by intersecting
/// with the words' matches. Each check costs about 25 µs, so this bounds
/// the first way at a few milliseconds.
const PROBE_CONVERSATION_MAX: i64 = 256;

/// Full-text search, newest first. Unscoped or in a room, the FTS5 index
/// drives: it yields its matches in descending rowid (= message id) order,
/// so the newest `limit` readable ones are found without sorting every
/// match, and a rare word costs its few matches. A conversation is small
/// next to the whole index, and an index-first walk would read every match
/// of a common word in other conversations before giving up; so a small
/// conversation checks each of its messages against the index by rowid,
/// and a big one intersects its own index with the words' matches (a cost
/// that grows with how common the words are: measured in
/// `benches/search.rs`).
fn search(conn: &Connection, q: &SearchQuery) -> rusqlite::Result<Vec<StoredMessage>> {
    // Each word quoted: a phrase of one token, so nothing in it is syntax.
    let fts: String = q
        .words
        .iter()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ");
    let limit = q.limit as i64;
    match &q.scope {
        None | Some(Target::Room(_)) => {
            let room = match &q.scope {
                Some(Target::Room(room)) => Some(room.as_str()),
                _ => None,
            };
            let sql = format!(
                "SELECT {} FROM messages_fts f JOIN messages m ON m.id = f.rowid
                 WHERE messages_fts MATCH ?1 AND (?4 IS NULL OR m.room = ?4)
                   AND m.deleted_ms IS NULL AND {MAY_READ}
                 ORDER BY f.rowid DESC LIMIT ?3",
                message_columns!("m.")
            );
            let mut st = conn.prepare_cached(&sql)?;
            st.query_map(params![fts, q.user, limit, room], row_to_message)?
                .collect()
        }
        Some(Target::Direct(a, b)) => {
            let dm = dm_key(*a, *b);
            let size: i64 = conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM messages WHERE dm = ?1 LIMIT ?2)",
                )?
                .query_row(params![dm, PROBE_CONVERSATION_MAX + 1], |r| r.get(0))?;
            let words = if size <= PROBE_CONVERSATION_MAX {
                "EXISTS (SELECT 1 FROM messages_fts WHERE messages_fts MATCH ?1 AND rowid = m.id)"
            } else {
                "m.id IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?1)"
            };
            let sql = format!(
                "SELECT {} FROM messages m INDEXED BY messages_dm
                 WHERE m.dm = ?4 AND m.deleted_ms IS NULL AND {MAY_READ} AND {words}
                 ORDER BY m.id DESC LIMIT ?3",
                message_columns!("m.")
            );
            let mut st = conn.prepare_cached(&sql)?;
            st.query_map(params![fts, q.user, limit, dm], row_to_message)?
                .collect()
        }
    }
}

/// What an edit, delete or reaction needs to know about its message.
struct Located {
    room: Option<String>,
    from: UserId,
    to: Option<UserId>,
    /// The owner, when the message is in a private room.
    private_owner: Option<UserId>,
    reactions: Option<String>,
    /// Its words are in the search index under this text.
    content: String,
    /// Its room is archived.
    archived: bool,
}

/// The live (not deleted) message `id`, if there is one.
fn live_message(c: &Connection, id: MsgId) -> rusqlite::Result<Option<Located>> {
    c.prepare_cached(
        "SELECT m.room, m.from_id, m.to_id, r.private, r.owner_id, m.reactions, m.content,
                COALESCE(r.archived, 0) != 0
         FROM messages m LEFT JOIN rooms r ON r.name = m.room
         WHERE m.id = ?1 AND m.deleted_ms IS NULL",
    )?
    .query_row([id as i64], |r| {
        let private: Option<bool> = r.get(3)?;
        let owner: Option<UserId> = r.get(4)?;
        Ok(Located {
            room: r.get(0)?,
            from: r.get(1)?,
            to: r.get(2)?,
            private_owner: owner.filter(|_| private == Some(true)),
            reactions: r.get(5)?,
            content: r.get(6)?,
            archived: r.get(7)?,
        })
    })
    .optional()
}

/// Whether `user` may read the message `t` (the reaction rule; search's
/// is [`MAY_READ`]).
fn may_read(c: &Connection, t: &Located, user: UserId) -> rusqlite::Result<bool> {
    let Some(room) = &t.room else {
        return Ok(t.from == user || t.to == Some(user));
    };
    Ok(c.prepare_cached(
        "SELECT 1 FROM rooms r WHERE r.name = ?1 AND (r.private = 0 OR r.owner_id = ?2
           OR EXISTS (SELECT 1 FROM room_members rm WHERE rm.room = ?1 AND rm.user_id = ?2))",
    )?
    .query_row(params![room, user], |_| Ok(()))
    .optional()?
    .is_some())
}

/// An edit, delete or reaction, checked and applied.
fn change(
    c: &Connection,
    req: &Request,
    fts: &mut Vec<FtsOp>,
) -> rusqlite::Result<Result<Change, Refusal>> {
    let (Request::EditMessage { id, user, .. }
    | Request::DeleteMessage { id, user, .. }
    | Request::React { id, user, .. }) = req
    else {
        unreachable!("change() is only called for changes");
    };
    let Some(t) = live_message(c, *id)? else {
        return Ok(Err(Refusal::NoSuchMessage));
    };
    let in_room = t.room.is_some();
    if !may_change(req, t.from, in_room, t.private_owner, || {
        may_read(c, &t, *user)
    })? {
        return Ok(Err(Refusal::Forbidden));
    }
    if t.archived && !matches!(req, Request::DeleteMessage { .. }) {
        return Ok(Err(Refusal::Archived));
    }
    if let Some(a) = moderation_audit(req, t.from, t.room.as_deref(), t.private_owner) {
        accounts::write_audit(c, &a)?;
    }
    let what = match req {
        Request::EditMessage { content, at_ms, .. } => {
            c.prepare_cached("UPDATE messages SET content = ?2, edited_ms = ?3 WHERE id = ?1")?
                .execute(params![*id as i64, content, at_ms])?;
            fts.push(FtsOp::Remove {
                id: *id,
                content: t.content.clone(),
            });
            fts.push(FtsOp::Add {
                id: *id,
                content: content.clone(),
            });
            ChangeKind::Edited {
                content: content.clone(),
                at_ms: *at_ms,
            }
        }
        Request::DeleteMessage { at_ms, .. } => {
            c.prepare_cached(
                "UPDATE messages SET content = '', reactions = NULL, attachments = NULL,
                        deleted_ms = ?2
                 WHERE id = ?1",
            )?
            .execute(params![*id as i64, at_ms])?;
            // Its files are unreachable from now on, and their grace begins.
            c.prepare_cached(
                "UPDATE files SET released_ms = ?2
                 WHERE id IN (SELECT file_id FROM message_files WHERE message_id = ?1)",
            )?
            .execute(params![*id as i64, at_ms])?;
            c.prepare_cached("DELETE FROM message_files WHERE message_id = ?1")?
                .execute([*id as i64])?;
            c.prepare_cached("DELETE FROM mentions WHERE message_id = ?1")?
                .execute([*id as i64])?;
            fts.push(FtsOp::Remove {
                id: *id,
                content: t.content.clone(),
            });
            ChangeKind::Deleted
        }
        Request::React { emoji, .. } => {
            let mut reactions = decode_reactions(t.reactions.as_deref());
            let on = match toggle_reaction(&mut reactions, emoji, *user) {
                Ok(on) => on,
                Err(refusal) => return Ok(Err(refusal)),
            };
            c.prepare_cached("UPDATE messages SET reactions = ?2 WHERE id = ?1")?
                .execute(params![*id as i64, encode_reactions(&reactions)])?;
            ChangeKind::Reacted {
                emoji: emoji.clone(),
                user: *user,
                on,
            }
        }
        _ => unreachable!(),
    };
    Ok(Ok(Change {
        id: *id,
        room: t.room,
        from: t.from,
        to: t.to,
        what,
    }))
}

/// `DeleteRoom`'s rows (false: the room has no row): the room, its
/// members, its messages with their words in the index (through `fts`),
/// mentions and read markers; its files are released as a deleted
/// message's are. The id floor moves past its newest message, so an id a
/// client saw is never given again after a restart (ids continue from the
/// newest message `load` finds).
fn delete_room(
    c: &Connection,
    room: &str,
    at_ms: i64,
    fts: &mut Vec<FtsOp>,
) -> rusqlite::Result<bool> {
    if c.prepare_cached("DELETE FROM rooms WHERE name = ?1")?
        .execute([room])?
        == 0
    {
        return Ok(false);
    }
    let top: Option<i64> = c
        .prepare_cached("SELECT MAX(id) FROM messages WHERE room = ?1")?
        .query_row([room], |r| r.get(0))?;
    if let Some(top) = top {
        c.prepare_cached(
            "INSERT INTO settings (key, value) VALUES (?1, CAST(CAST(?2 AS TEXT) AS BLOB))
             ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(
                 MAX(CAST(CAST(value AS TEXT) AS INTEGER), ?2) AS TEXT) AS BLOB)",
        )?
        .execute(params![ID_FLOOR_SETTING, top + 1])?;
    }
    let mut st = c.prepare_cached(
        "SELECT id, content FROM messages WHERE room = ?1 AND deleted_ms IS NULL",
    )?;
    for row in st.query_map([room], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?)))? {
        let (id, content) = row?;
        fts.push(FtsOp::Remove {
            id: id as MsgId,
            content,
        });
    }
    c.prepare_cached(
        "UPDATE files SET released_ms = ?2 WHERE id IN (SELECT f.file_id FROM message_files f
             JOIN messages m ON m.id = f.message_id WHERE m.room = ?1)",
    )?
    .execute(params![room, at_ms])?;
    for sql in [
        "DELETE FROM message_files WHERE message_id IN (SELECT id FROM messages WHERE room = ?1)",
        "DELETE FROM messages WHERE room = ?1",
        "DELETE FROM mentions WHERE room = ?1",
        "DELETE FROM room_reads WHERE room = ?1",
        "DELETE FROM room_members WHERE room = ?1",
    ] {
        c.prepare_cached(sql)?.execute([room])?;
    }
    Ok(true)
}

/// Whether `reply_to` names a live, earlier message of the same room or
/// conversation as `msg`.
fn reply_target_ok(c: &Connection, msg: &StoredMessage, parent: MsgId) -> rusqlite::Result<bool> {
    let found: Option<(Option<String>, Option<i64>)> = c
        .prepare_cached("SELECT room, dm FROM messages WHERE id = ?1 AND deleted_ms IS NULL")?
        .query_row([parent as i64], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let dm = msg.to.map(|to| dm_key(msg.from, to));
    Ok(parent < msg.id && found.is_some_and(|(room, d)| room == msg.room && d == dm))
}

/// The columns [`file_row`] reads, in its order.
const FILE_COLUMNS: &str = "id, owner_id, name, mime, size, blob, width, height, thumb_small, \
                            thumb_large, created_ms, avatar";

/// A blob key stored as hex.
fn key_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<BlobKey> {
    let text: String = r.get(i)?;
    BlobKey::parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("not a blob key: {text:?}").into(),
        )
    })
}

fn file_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileRow> {
    let thumbs: (Option<String>, Option<String>) = (r.get(8)?, r.get(9)?);
    let dims: (Option<u32>, Option<u32>) = (r.get(6)?, r.get(7)?);
    let image = match (dims, thumbs) {
        ((Some(width), Some(height)), (Some(_), Some(_))) => Some(ImageInfo {
            width,
            height,
            small: key_at(r, 8)?,
            large: key_at(r, 9)?,
        }),
        _ => None,
    };
    Ok(FileRow {
        id: r.get::<_, i64>(0)? as FileId,
        owner: r.get(1)?,
        name: r.get(2)?,
        mime: r.get(3)?,
        size: r.get::<_, i64>(4)? as u64,
        blob: key_at(r, 5)?,
        image,
        created_ms: r.get(10)?,
        avatar: r.get(11)?,
    })
}

/// The bytes of `user`'s files, avatars aside (the quota's measure).
fn file_usage(c: &Connection, user: UserId) -> rusqlite::Result<u64> {
    c.prepare_cached("SELECT COALESCE(SUM(size), 0) FROM files WHERE owner_id = ?1 AND avatar = 0")?
        .query_row([user], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
}

/// Stores an upload's row; returns its id.
fn insert_file(c: &Connection, f: &FileRow) -> rusqlite::Result<FileId> {
    c.prepare_cached(
        "INSERT INTO files (owner_id, name, mime, size, blob, width, height, thumb_small,
                            thumb_large, created_ms, avatar, attached)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
    )?
    .execute(params![
        f.owner,
        f.name,
        f.mime,
        f.size as i64,
        f.blob.hex(),
        f.image.map(|i| i.width),
        f.image.map(|i| i.height),
        f.image.map(|i| i.small.hex()),
        f.image.map(|i| i.large.hex()),
        f.created_ms,
        f.avatar
    ])?;
    Ok(c.last_insert_rowid() as FileId)
}

/// The attachments `msg` asks for, as their rows make them, when the
/// sender may attach every one ([`attachable`]); `None` when not.
fn attachable_rows(
    c: &Connection,
    msg: &StoredMessage,
) -> rusqlite::Result<Option<Vec<Attachment>>> {
    if msg.attachments.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let mut st = c.prepare_cached(&format!("SELECT {FILE_COLUMNS} FROM files WHERE id = ?1"))?;
    let mut found = Vec::with_capacity(msg.attachments.len());
    for a in &msg.attachments {
        if let Some(row) = st.query_row([a.id as i64], file_row).optional()? {
            found.push(row);
        }
    }
    let wanted: Vec<FileId> = msg.attachments.iter().map(|a| a.id).collect();
    Ok(attachable(&wanted, &found, msg.from))
}

/// Links a stored message to its files: from now on they are read
/// through it (and no longer by their uploader alone).
fn attach(c: &Connection, message: MsgId, attachments: &[Attachment]) -> rusqlite::Result<()> {
    for a in attachments {
        c.prepare_cached(
            "INSERT OR IGNORE INTO message_files (message_id, file_id) VALUES (?1, ?2)",
        )?
        .execute(params![message as i64, a.id as i64])?;
        c.prepare_cached("UPDATE files SET attached = 1, released_ms = NULL WHERE id = ?1")?
            .execute([a.id as i64])?;
    }
    Ok(())
}

/// Who may read a file, as SQL over `files f` with the user as `?2`:
/// anyone, for an avatar (shown wherever its owner appears); its
/// uploader until it is attached, and readers of a live message carrying
/// it ([`MAY_READ`] over that message).
fn may_read_file() -> String {
    format!(
        "(f.avatar = 1 OR (f.owner_id = ?2 AND f.attached = 0)
          OR EXISTS (SELECT 1 FROM message_files mf JOIN messages m ON m.id = mf.message_id
                     WHERE mf.file_id = f.id AND m.deleted_ms IS NULL AND {MAY_READ}))"
    )
}

/// The file reads, shared by the writer (when there is no reader) and the reader.
fn file_read(c: &Connection, req: &Request) -> rusqlite::Result<Reply> {
    Ok(match req {
        Request::FileUsage { ticket, user } => Reply::FileUsage {
            ticket: *ticket,
            bytes: Some(file_usage(c, *user)?),
        },
        Request::FindFile { ticket, id, user } => {
            let sql = format!(
                "SELECT {} FROM files f WHERE f.id = ?1 AND {}",
                FILE_COLUMNS
                    .split(", ")
                    .map(|col| format!("f.{}", col.trim()))
                    .collect::<Vec<_>>()
                    .join(", "),
                may_read_file()
            );
            let row = c
                .prepare_cached(&sql)?
                .query_row(params![*id as i64, user], file_row)
                .optional()?;
            Reply::FileFound {
                ticket: *ticket,
                row,
            }
        }
        Request::BlobsUsed { ticket, keys } => {
            let mut st = c.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM files WHERE blob = ?1)
                     OR EXISTS (SELECT 1 FROM files WHERE thumb_small = ?1)
                     OR EXISTS (SELECT 1 FROM files WHERE thumb_large = ?1)",
            )?;
            let mut used = Vec::new();
            for k in keys {
                if st.query_row([k.hex()], |r| r.get::<_, bool>(0))? {
                    used.push(*k);
                }
            }
            Reply::BlobsUsed {
                ticket: *ticket,
                used: Some(used),
            }
        }
        _ => return Err(rusqlite::Error::InvalidQuery),
    })
}

/// Removes the rows of files nothing refers to whose grace began before
/// `before_ms`; returns how many.
fn sweep_files(c: &Connection, before_ms: i64) -> rusqlite::Result<u64> {
    c.prepare_cached(
        "DELETE FROM files WHERE COALESCE(released_ms, created_ms) < ?1
           AND NOT EXISTS (SELECT 1 FROM message_files mf WHERE mf.file_id = files.id)
           AND id NOT IN (SELECT avatar_file FROM users WHERE avatar_file IS NOT NULL)",
    )?
    .execute([before_ms])
    .map(|n| n as u64)
}

impl Sqlite {
    /// Applies the batch's full-text index changes, in order, as top-level
    /// statements (see [`FtsOp`]).
    fn index(&self, ops: &[FtsOp]) -> rusqlite::Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut add = self
            .conn
            .prepare_cached("INSERT INTO messages_fts (rowid, content) VALUES (?1, ?2)")?;
        let mut remove = self.conn.prepare_cached(
            "INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', ?1, ?2)",
        )?;
        for op in ops {
            match op {
                FtsOp::Add { id, content } => add.execute(params![*id as i64, content])?,
                FtsOp::Remove { id, content } => remove.execute(params![*id as i64, content])?,
            };
        }
        Ok(())
    }

    /// Runs a statement without parameters or rows. Cached like every other
    /// statement: `execute_batch` would parse it again each batch.
    fn run(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(|_| ())
    }

    /// Runs `f` so that all of its writes stay or none do: on failure the
    /// savepoint is rolled back (`ROLLBACK TO` keeps it open, so it is
    /// released as well) and the batch's transaction goes on without them.
    fn in_savepoint<T>(&self, f: impl FnOnce(&Self) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        self.run("SAVEPOINT request")?;
        let result = f(self).and_then(|v| self.run("RELEASE request").map(|()| v));
        if result.is_err()
            && let Err(e) = self
                .run("ROLLBACK TO request")
                .and_then(|()| self.run("RELEASE request"))
        {
            log::error!("storage: rolling back a failed request failed: {e}");
        }
        result
    }

    fn apply(&self, req: &Request) -> rusqlite::Result<Option<Reply>> {
        let c = &self.conn;
        Ok(match req {
            Request::PutUser { row, invite, audit } => Some(accounts::put_user(
                c,
                row,
                invite.as_deref(),
                audit.as_ref(),
            )?),
            Request::Account {
                ticket,
                write,
                audit,
            } => Some(Reply::AccountWritten {
                ticket: *ticket,
                outcome: accounts::write(c, write, audit.as_ref(), &mut self.fts.borrow_mut())?,
            }),
            Request::AccountRead { ticket, read } => Some(Reply::AccountRead {
                ticket: *ticket,
                answer: accounts::read(c, read)?,
            }),
            Request::PutMessage {
                msg,
                client_id,
                mentions,
            } => {
                if let Some(parent) = msg.reply_to
                    && !reply_target_ok(c, msg, parent)?
                {
                    return Ok(Some(Reply::MessageRefused {
                        key: msg.id,
                        why: PostRefusal::ReplyTo,
                    }));
                }
                let Some(attachments) = attachable_rows(c, msg)? else {
                    return Ok(Some(Reply::MessageRefused {
                        key: msg.id,
                        why: PostRefusal::Attachment,
                    }));
                };
                let dm = msg.to.map(|to| dm_key(msg.from, to));
                // A `client_id` this user already stored is not an error: it
                // is a retry the loop's window had forgotten, answered with
                // the first message (found through the same unique index).
                let inserted = c
                    .prepare_cached(
                        "INSERT INTO messages (id, room, from_id, to_id, dm, content, ts_ms, client_id, reply_to,
                                           attachments)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT (from_id, client_id) WHERE client_id IS NOT NULL DO NOTHING",
                    )?
                    .execute(params![
                    msg.id as i64,
                    msg.room,
                    msg.from,
                    msg.to,
                    dm,
                    msg.content,
                    msg.timestamp_ms,
                    client_id,
                    msg.reply_to.map(|r| r as i64),
                    encode_attachments(&attachments)
                ])?;
                if inserted == 0 {
                    let (existing, ts): (i64, i64) = c
                        .prepare_cached(
                            "SELECT id, ts_ms FROM messages WHERE from_id = ?1 AND client_id = ?2",
                        )?
                        .query_row(params![msg.from, client_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    return Ok(Some(Reply::MessageExists {
                        key: msg.id,
                        existing: existing as MsgId,
                        timestamp_ms: ts,
                    }));
                }
                self.fts.borrow_mut().push(FtsOp::Add {
                    id: msg.id,
                    content: msg.content.clone(),
                });
                if let Some(room) = &msg.room {
                    let mut st = c.prepare_cached(
                        "INSERT OR IGNORE INTO mentions (user_id, room, message_id) VALUES (?1, ?2, ?3)",
                    )?;
                    for u in mentions {
                        st.execute(params![u, room, msg.id as i64])?;
                    }
                }
                attach(c, msg.id, &attachments)?;
                Some(Reply::MessageStored {
                    key: msg.id,
                    id: msg.id,
                    seq: 0,
                    attachments,
                })
            }
            Request::PutPublicRoom { name, creator } => {
                // `owner_id` of a public room is who opened it (for the quota).
                c.prepare_cached(
                    "INSERT OR IGNORE INTO rooms (name, private, owner_id) VALUES (?1, 0, ?2)",
                )?
                .execute(params![name, creator])?;
                None
            }
            Request::SetLastSeen { user, at_ms } => {
                c.prepare_cached("UPDATE users SET last_seen_ms = ?2 WHERE id = ?1")?
                    .execute(params![user, at_ms])?;
                None
            }
            Request::PutPrivateRoom { ticket, row: room } => {
                c.prepare_cached("INSERT INTO rooms (name, private, owner_id) VALUES (?1, 1, ?2)")?
                    .execute(params![room.name, room.owner])?;
                let mut st = c.prepare_cached(
                    "INSERT OR IGNORE INTO room_members (room, user_id) VALUES (?1, ?2)",
                )?;
                for m in &room.members {
                    st.execute(params![room.name, m])?;
                }
                Some(Reply::Done { ticket: *ticket })
            }
            Request::AddMember { ticket, room, user } => {
                c.prepare_cached(
                    "INSERT OR IGNORE INTO room_members (room, user_id) VALUES (?1, ?2)",
                )?
                .execute(params![room, user])?;
                Some(Reply::Done { ticket: *ticket })
            }
            Request::RemoveMember {
                ticket,
                room,
                user,
                audit,
            } => {
                if let Some(a) = audit {
                    accounts::write_audit(c, a)?;
                }
                c.prepare_cached("DELETE FROM room_members WHERE room = ?1 AND user_id = ?2")?
                    .execute(params![room, user])?;
                // Its read marker goes too: unread counts are for rooms the
                // user may read.
                c.prepare_cached("DELETE FROM room_reads WHERE room = ?1 AND user_id = ?2")?
                    .execute(params![room, user])?;
                c.prepare_cached("DELETE FROM mentions WHERE room = ?1 AND user_id = ?2")?
                    .execute(params![room, user])?;
                Some(Reply::Done { ticket: *ticket })
            }
            Request::MarkRead { user, target, id } => {
                match target {
                    Target::Room(room) => c
                        .prepare_cached(
                            "INSERT INTO room_reads (user_id, room, last_id) VALUES (?1, ?2, ?3)
                             ON CONFLICT (user_id, room) DO UPDATE SET last_id = MAX(last_id, excluded.last_id)",
                        )?
                        .execute(params![user, room, *id as i64])?,
                    Target::Direct(_, peer) => c
                        .prepare_cached(
                            "INSERT INTO dm_reads (user_id, peer_id, last_id) VALUES (?1, ?2, ?3)
                             ON CONFLICT (user_id, peer_id) DO UPDATE SET last_id = MAX(last_id, excluded.last_id)",
                        )?
                        .execute(params![user, peer, *id as i64])?,
                };
                None
            }
            Request::MarkConversationRead {
                ticket,
                user,
                peer,
                id,
            } => {
                let moved = c
                    .prepare_cached(
                        "INSERT INTO dm_reads (user_id, peer_id, last_id)
                         SELECT ?1, ?2, ?3 WHERE EXISTS
                             (SELECT 1 FROM messages WHERE id = ?3 AND dm = ?4)
                         ON CONFLICT (user_id, peer_id) DO UPDATE SET last_id = MAX(last_id, excluded.last_id)",
                    )?
                    .execute(params![user, peer, *id as i64, dm_key(*user, *peer)])?;
                let ticket = *ticket;
                Some(match moved {
                    0 => Reply::Failed { ticket },
                    _ => Reply::Done { ticket },
                })
            }
            Request::History { ticket, query } => Some(Reply::History {
                ticket: *ticket,
                messages: history(&self.conn, query)?,
            }),
            Request::Unread { ticket, user } => Some(Reply::Unread {
                ticket: *ticket,
                counts: unread(&self.conn, *user)?,
            }),
            Request::RoomInfo { ticket, name } => Some(Reply::RoomInfo {
                ticket: *ticket,
                private: private_room(&self.conn, name)?,
            }),
            Request::FindUser { ticket, who } => Some(Reply::UserFound {
                ticket: *ticket,
                row: find_user(&self.conn, who)?,
            }),
            Request::Search { ticket, query } => Some(Reply::History {
                ticket: *ticket,
                messages: search(&self.conn, query)?,
            }),
            Request::EditMessage { ticket, .. }
            | Request::DeleteMessage { ticket, .. }
            | Request::React { ticket, .. } => Some(Reply::Changed {
                ticket: *ticket,
                outcome: change(c, req, &mut self.fts.borrow_mut())?,
            }),
            Request::Catchup { .. } | Request::Resync { .. } => {
                return Err(not_sequenced());
            }
            Request::PutFile { ticket, row, quota } => {
                if *quota > 0
                    && !row.avatar
                    && file_usage(c, row.owner)?.saturating_add(row.size) > *quota
                {
                    return Ok(Some(Reply::FileRefused { ticket: *ticket }));
                }
                let id = insert_file(c, row)?;
                Some(Reply::FileStored {
                    ticket: *ticket,
                    id,
                })
            }
            Request::SetAvatar {
                ticket,
                user,
                file,
                at_ms,
            } => {
                c.prepare_cached(
                    "UPDATE files SET released_ms = ?2
                     WHERE id = (SELECT avatar_file FROM users WHERE id = ?1)",
                )?
                .execute(params![user, at_ms])?;
                c.prepare_cached("UPDATE users SET avatar_file = ?2 WHERE id = ?1")?
                    .execute(params![user, *file as i64])?;
                accounts::touched(c, *user, *at_ms)?;
                Some(Reply::Done { ticket: *ticket })
            }
            Request::SweepFiles { before_ms } => Some(Reply::FilesSwept {
                removed: sweep_files(c, *before_ms)?,
            }),
            Request::FileUsage { .. } | Request::FindFile { .. } | Request::BlobsUsed { .. } => {
                Some(file_read(c, req)?)
            }
            Request::PutPushSubscription { ticket, row } => {
                push::put_subscription(c, row)?;
                Some(Reply::Done { ticket: *ticket })
            }
            Request::DeletePushSubscription {
                ticket,
                user,
                endpoint,
            } => {
                push::delete_subscription(c, *user, endpoint)?;
                Some(Reply::Done { ticket: *ticket })
            }
            Request::DropPushSubscription { endpoint, auth } => {
                push::drop_subscription(c, endpoint, auth)?;
                None
            }
            Request::PutPushSettings {
                ticket,
                user,
                show_text,
            } => {
                push::put_settings(c, *user, *show_text)?;
                Some(Reply::Done { ticket: *ticket })
            }
            Request::PushProfile { ticket, user } => Some(Reply::PushProfile {
                ticket: *ticket,
                profile: push::profile(c, *user)?,
            }),
            Request::Drain => Some(Reply::Drained),
        })
    }
}

/// The user called `name` (NOCASE folds ASCII only: the username rule), or
/// with this id.
fn find_user(c: &Connection, who: &Who) -> rusqlite::Result<Option<UserRow>> {
    match who {
        Who::Name(name) => c
            .prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE username = ?1 COLLATE NOCASE"
            ))?
            .query_row(params![name], user_row),
        Who::Id(id) => c
            .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
            .query_row(params![id], user_row),
    }
    .optional()
}

/// Room `name`'s row and members, when it is a stored private room.
fn private_room(c: &Connection, name: &str) -> rusqlite::Result<Option<PrivateRoomRow>> {
    let Some(owner) = c
        .prepare_cached("SELECT owner_id FROM rooms WHERE name = ?1 AND private = 1")?
        .query_row(params![name], |r| r.get::<_, Option<UserId>>(0))
        .optional()?
    else {
        return Ok(None);
    };
    let members = c
        .prepare_cached("SELECT user_id FROM room_members WHERE room = ?1 ORDER BY user_id")?
        .query_map(params![name], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<UserId>>>()?;
    Ok(Some(PrivateRoomRow {
        name: name.to_string(),
        owner: owner.unwrap_or(0),
        members,
    }))
}

/// What a cluster-only read gets here: SQLite serves one node, which has
/// no bus to miss traffic on (`--redis` needs `--postgres`).
fn not_sequenced() -> rusqlite::Error {
    rusqlite::Error::InvalidParameterName(
        "catch-up and resync are cluster reads; SQLite serves a single node".into(),
    )
}

/// Permission bits of the database files hubbub creates (the database, its
/// `-wal` and `-shm`, a backup): read and write for the owner only, because
/// they hold every message and password hash.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// How long the backup's reads wait for a lock the server holds. Readers do
/// not block the writer under WAL; this covers the short moments that still
/// take a lock (WAL recovery, a checkpoint resetting the log), with the same
/// bound the server itself uses.
const BACKUP_BUSY_TIMEOUT: Duration = BUSY_TIMEOUT;

/// Whether `path` names a file on disk, which hubbub may create itself:
/// not SQLite's `:memory:` and not a `file:` URI (rusqlite opens with URIs
/// enabled), which SQLite must interpret.
fn is_plain_file(path: &Path) -> bool {
    let s = path.to_string_lossy();
    s != ":memory:" && !s.starts_with("file:")
}

/// Creates an empty database file with [`PRIVATE_FILE_MODE`] when there is
/// none, so SQLite (which would create it as 0644 minus the umask) finds it
/// and treats it as a new database. `create_new` makes "is it there" and
/// "create it" one step, so an existing file, whatever its mode, is never
/// touched. The mode is passed to open(2) and so can only be narrowed by
/// the umask, never widened.
fn create_private(path: &Path) -> Result<(), StoreError> {
    if !is_plain_file(path) {
        return Ok(());
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::request(format!("cannot create the file: {e}"))),
    }
}

/// What a backup holds, counted in the copy itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupStats {
    pub messages: u64,
    pub users: u64,
}

/// Copies the database at `db` to the new file `to`, consistently, while a
/// server may be writing to `db`. `VACUUM INTO` reads one snapshot in a read
/// transaction (under WAL a reader neither blocks nor is blocked by the
/// writer), so the copy holds exactly the transactions committed when it
/// began: every acked message up to then, nothing half-written. It is also
/// compact and needs no extra rusqlite feature, unlike the online backup
/// API, which copies page by page and restarts when the writer changes a page.
///
/// The source is opened without `CREATE`, so a mistyped `db` is an error
/// instead of a new empty database, and never migrated; this function runs
/// nothing on it but reads and `VACUUM INTO` (`PRAGMA query_only` would
/// refuse that too). It is opened read-write all the same: on a stopped
/// server's database SQLite must create the `-wal` and `-shm` to read it,
/// and only a read-write connection removes them again when it closes; a
/// read-only one leaves them behind, owned by whoever ran the backup (root,
/// say), where the server may not be able to open them.
/// `to` must not
/// exist: it is created here with [`PRIVATE_FILE_MODE`] in one step that
/// fails on an existing path, then filled. SQLite does not fsync the output
/// of `VACUUM INTO`, so the copy and its directory entry are synced before
/// the backup counts as written. On failure the half-written copy is removed.
pub fn backup(db: &Path, to: &Path) -> Result<BackupStats, StoreError> {
    let to_text = to
        .to_str()
        .ok_or_else(|| StoreError::request(format!("{} is not a UTF-8 path", to.display())))?;
    let src = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::request(format!("cannot open {}: {e}", db.display())))?;
    src.busy_timeout(BACKUP_BUSY_TIMEOUT).map_err(err)?;
    let version: i64 = src
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| StoreError::request(format!("cannot read {}: {e}", db.display())))?;
    if version == 0 {
        return Err(StoreError::request(format!(
            "{} is not a hubbub database (no schema)",
            db.display()
        )));
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(to)
        .map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => StoreError::request(format!(
                "{} already exists; not overwriting it",
                to.display()
            )),
            _ => StoreError::request(format!("cannot create {}: {e}", to.display())),
        })?;
    let written = (|| {
        src.execute("VACUUM INTO ?1", [to_text])
            .map_err(|e| format!("copying {} failed: {e}", db.display()))?;
        file.sync_all()
            .map_err(|e| format!("cannot sync {}: {e}", to.display()))?;
        let dir = match to.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("cannot sync {}: {e}", dir.display()))?;
        backup_stats(to).map_err(|e| format!("cannot read the copy {}: {e}", to.display()))
    })();
    written.map_err(|e| {
        // The file is ours (created above), so removing it loses nothing.
        let _ = std::fs::remove_file(to);
        StoreError::request(e)
    })
}

/// Every blob the database at `db` names (files, previews, avatars), in
/// key order: what `hubbub backup`, `restore` and `migrate` copy with it.
/// A database from before files names none.
pub fn blob_keys(db: &Path) -> Result<Vec<BlobKey>, String> {
    let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("cannot open {}: {e}", db.display()))?;
    blob_keys_in(&c).map_err(|e| format!("cannot read the files of {}: {e}", db.display()))
}

/// [`blob_keys`] on an open connection (inside the caller's snapshot).
pub(crate) fn blob_keys_in(c: &Connection) -> rusqlite::Result<Vec<BlobKey>> {
    let has_files: bool = c.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'files')",
        [],
        |r| r.get(0),
    )?;
    if !has_files {
        return Ok(Vec::new());
    }
    let mut st = c.prepare(
        "SELECT blob FROM files UNION SELECT thumb_small FROM files WHERE thumb_small IS NOT NULL
         UNION SELECT thumb_large FROM files WHERE thumb_large IS NOT NULL ORDER BY 1",
    )?;
    let keys = st.query_map([], |r| key_at(r, 0))?;
    keys.collect()
}

/// Counts what a finished copy holds, which also proves SQLite can open it.
fn backup_stats(copy: &Path) -> rusqlite::Result<BackupStats> {
    let c = Connection::open_with_flags(copy, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let count = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0).map(|n| n as u64));
    Ok(BackupStats {
        messages: count("SELECT COUNT(*) FROM messages")?,
        users: count("SELECT COUNT(*) FROM users")?,
    })
}

fn row_to_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    Ok(StoredMessage {
        id: r.get::<_, i64>(0)? as MsgId,
        room: r.get(1)?,
        from: r.get(2)?,
        to: r.get(3)?,
        content: r.get(4)?,
        timestamp_ms: r.get(5)?,
        seq: 0,
        reply_to: r.get::<_, Option<i64>>(6)?.map(|r| r as MsgId),
        edited_ms: r.get(7)?,
        reactions: decode_reactions(r.get::<_, Option<String>>(8)?.as_deref()),
        deleted: false,
        attachments: decode_attachments(r.get::<_, Option<String>>(9)?.as_deref()),
    })
}

/// Whether a statement failed on a unique index.
fn err_code_is_unique(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

fn blob<const N: usize>(v: Vec<u8>) -> rusqlite::Result<[u8; N]> {
    v.try_into().map_err(|v: Vec<u8>| {
        rusqlite::Error::FromSqlConversionFailure(
            v.len(),
            rusqlite::types::Type::Blob,
            format!("expected {N} bytes").into(),
        )
    })
}

impl Backend for Sqlite {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        let c = &self.conn;
        let mut snap = Snapshot::default();
        let mut st = c
            .prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))
            .map_err(err)?;
        snap.users = st
            .query_map([], user_row)
            .and_then(|rows| rows.collect())
            .map_err(err)?;
        let mut st = c
            .prepare("SELECT name, private, owner_id FROM rooms ORDER BY name")
            .map_err(err)?;
        let rooms: Vec<(String, bool, Option<UserId>)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(err)?;
        let mut members = c
            .prepare("SELECT user_id FROM room_members WHERE room = ?1 ORDER BY user_id")
            .map_err(err)?;
        for (name, private, owner) in rooms {
            if private {
                let ids = members
                    .query_map([&name], |r| r.get(0))
                    .and_then(|rows| rows.collect())
                    .map_err(err)?;
                snap.private_rooms.push(PrivateRoomRow {
                    name,
                    owner: owner.unwrap_or(0),
                    members: ids,
                });
            } else {
                snap.public_rooms.push((name, owner));
            }
        }
        // Messages whose room has no row: the row's write was lost (a failed
        // batch). It may have been private, so nobody may read it — never
        // public. Walks the room index once, at start only.
        let mut st = c
            .prepare(
                "SELECT DISTINCT room FROM messages WHERE room IS NOT NULL
                 AND room NOT IN (SELECT name FROM rooms) ORDER BY room",
            )
            .map_err(err)?;
        snap.orphan_rooms = st
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(err)?;
        // A restore's id floor (`store::ops`) counts as issued.
        snap.max_message_id = c
            .query_row(
                "SELECT MAX(COALESCE((SELECT MAX(id) FROM messages), 0),
                            COALESCE((SELECT CAST(CAST(value AS TEXT) AS INTEGER) FROM settings
                                      WHERE key = 'id_floor') - 1, 0))",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(err)? as MsgId;
        let mut st = c
            .prepare(
                "SELECT from_id, client_id, id, ts_ms FROM messages WHERE client_id IS NOT NULL
                 ORDER BY id DESC LIMIT ?1",
            )
            .map_err(err)?;
        snap.recent_client_ids = st
            .query_map([CLIENT_ID_WINDOW as i64], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get::<_, i64>(2)? as MsgId,
                    r.get(3)?,
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(err)?;
        snap.recent_client_ids.reverse();
        let mut st = c
            .prepare(
                "SELECT user_id FROM room_reads UNION SELECT user_id FROM room_members
                 UNION SELECT DISTINCT to_id FROM messages WHERE to_id IS NOT NULL
                 UNION SELECT user_id FROM mentions",
            )
            .map_err(err)?;
        snap.unread_sources = st
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(err)?;
        (snap.accounts, snap.archived_rooms) = accounts::snapshot(c).map_err(err)?;
        Ok(snap)
    }

    fn setting(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(err)
    }

    fn put_setting(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(err)
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        // IMMEDIATE: the write lock is taken here, once per batch, so another
        // writer holding it fails (or delays, up to `busy_timeout`) the batch
        // before any of it runs, instead of every statement waiting in turn.
        self.run("BEGIN IMMEDIATE").map_err(err)
    }

    fn execute(&mut self, req: &Request) -> Result<Option<Reply>, StoreError> {
        let indexed = self.fts.borrow().len();
        let result = if req.facts().writes_several_statements {
            self.in_savepoint(|db| db.apply(req))
        } else {
            self.apply(req)
        };
        result.map_err(|e| {
            // None of its writes stay, so none of its index changes either.
            self.fts.borrow_mut().truncate(indexed);
            let mut e = err(e);
            // Whatever the code: if SQLite ended the transaction itself, the
            // statements after this one would commit on their own.
            e.aborts_batch |= self.conn.is_autocommit();
            e
        })
    }

    /// Indexes the batch's messages, then commits: both or neither, since
    /// a failed index write fails the commit and the caller rolls back.
    fn commit(&mut self) -> Result<(), StoreError> {
        let ops = std::mem::take(&mut *self.fts.borrow_mut());
        self.index(&ops).map_err(|e| StoreError {
            aborts_batch: true,
            ..err(e)
        })?;
        self.run("COMMIT").map_err(err)
    }

    fn rollback(&mut self) {
        self.fts.borrow_mut().clear();
        if self.conn.is_autocommit() {
            return; // SQLite already rolled back.
        }
        if let Err(e) = self.conn.execute_batch("ROLLBACK") {
            log::error!("storage: rollback failed: {e}");
        }
    }

    /// A read-only connection to the same file, only in WAL mode: in a
    /// rollback journal a reader's lock would make the writer's commit wait
    /// (up to [`BUSY_TIMEOUT`]) behind every slow read, the very thing a
    /// reader thread is for avoiding. None for an in-memory database, which
    /// a second connection would not see.
    fn reader(&mut self) -> Result<Option<Box<dyn Reader>>, StoreError> {
        let path = match self.conn.path() {
            Some(p) if !p.is_empty() => p.to_owned(),
            _ => return Ok(None),
        };
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            log::warn!("storage: journal mode is {mode}, not WAL; reads run on the writer");
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        conn.execute_batch("PRAGMA temp_store = MEMORY;")
            .map_err(err)?;
        conn.set_prepared_statement_cache_capacity(8);
        Ok(Some(Box::new(SqliteReader { conn })))
    }

    /// The directory beside the database file (`hubbub.db-files`); none
    /// for an in-memory database.
    fn file_store(&mut self) -> Result<Option<Arc<dyn FileStore>>, StoreError> {
        let path = match self.conn.path() {
            Some(p) if !p.is_empty() => Path::new(p).to_path_buf(),
            _ => return Ok(None),
        };
        let dir = crate::files::dir::beside(&path);
        let store = DirStore::open(&dir)
            .map_err(|e| StoreError::request(format!("files at {}: {e}", dir.display())))?;
        Ok(Some(Arc::new(store)))
    }
}

impl Reader for SqliteReader {
    fn begin(&mut self) -> Result<(), StoreError> {
        // A deferred transaction takes its snapshot at its first read, so
        // read something tiny now, while the caller holds `Published`.
        self.conn
            .prepare_cached("BEGIN")
            .and_then(|mut st| st.execute([]))
            .and_then(|_| {
                self.conn
                    .prepare_cached("SELECT 1 FROM sqlite_schema LIMIT 1")?
                    .query([])?
                    .next()
                    .map(|_| ())
            })
            .map_err(err)
    }

    fn read(&mut self, req: &Request) -> Result<Reply, StoreError> {
        match req {
            Request::History { ticket, query } => Ok(Reply::History {
                ticket: *ticket,
                messages: history(&self.conn, query).map_err(err)?,
            }),
            Request::Unread { ticket, user } => Ok(Reply::Unread {
                ticket: *ticket,
                counts: unread(&self.conn, *user).map_err(err)?,
            }),
            Request::RoomInfo { ticket, name } => Ok(Reply::RoomInfo {
                ticket: *ticket,
                private: private_room(&self.conn, name).map_err(err)?,
            }),
            Request::FindUser { ticket, who } => Ok(Reply::UserFound {
                ticket: *ticket,
                row: find_user(&self.conn, who).map_err(err)?,
            }),
            Request::Search { ticket, query } => Ok(Reply::History {
                ticket: *ticket,
                messages: search(&self.conn, query).map_err(err)?,
            }),
            Request::AccountRead { ticket, read } => Ok(Reply::AccountRead {
                ticket: *ticket,
                answer: accounts::read(&self.conn, read).map_err(err)?,
            }),
            Request::FileUsage { .. } | Request::FindFile { .. } | Request::BlobsUsed { .. } => {
                file_read(&self.conn, req).map_err(err)
            }
            Request::PushProfile { ticket, user } => Ok(Reply::PushProfile {
                ticket: *ticket,
                profile: push::profile(&self.conn, *user).map_err(err)?,
            }),
            _ => Err(StoreError::request("not a read")),
        }
    }

    fn end(&mut self) {
        if self.conn.is_autocommit() {
            return;
        }
        if let Err(e) = self
            .conn
            .prepare_cached("COMMIT")
            .and_then(|mut st| st.execute([]))
        {
            log::error!("storage: ending a read failed: {e}");
        }
    }
}

mod accounts;
mod push;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fault_tests;
