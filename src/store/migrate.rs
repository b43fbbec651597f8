//! `hubbub migrate --from-sqlite PATH --postgres URL`: moves a single
//! node's SQLite database into PostgreSQL, for cluster mode.
//!
//! Everything is copied in one PostgreSQL transaction, so a failure leaves
//! the target as it was (schema aside): users with their ids, password
//! hashes and times; settings (the generated JWT secret, so tokens stay
//! valid); rooms and memberships; messages with their ids and client ids,
//! numbered per room and per conversation in id order (`seq`), with each
//! target's newest seq in `targets`, their replies, edits, deletions and
//! reactions (SQLite schema 2; a schema-1 source has none); the mentions;
//! and the read markers. SQLite's search index is not copied: each
//! message's words (`messages.tsv`) are cut from its content as it is
//! copied, by the rule every append uses (`search_text`). The identity of
//! `users.id` and the `message_ids` sequence are moved past the copied
//! maxima, so new rows continue after them.
//!
//! The source is opened read-only and read in one transaction (one
//! consistent snapshot; stop the server first all the same, or its later
//! writes are not copied). Rows are streamed with binary `COPY`, a table at
//! a time, so a large history is never held in memory; only the seq
//! counter of each room and conversation is. The target must hold no users
//! and no messages: merging two histories would need ids renumbered.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{Config, Transaction};
use rusqlite::{Connection, OpenFlags};

use super::StoreError;
use super::postgres::blobs::PgFileStore;
use super::postgres::{
    APPEND_LOCK, MIGRATION_LOCK, Postgres, describe, message_target, parse_config, search_text,
};
use crate::files::dir::DirStore;
use crate::files::{FileError, FileStore, copy_blobs};

/// The subcommand, as the binary's first argument.
pub const COMMAND: &str = "migrate";

/// `hubbub migrate --help`.
pub const USAGE: &str = "\
usage: hubbub migrate --from-sqlite PATH --postgres URL

Copies a hubbub SQLite database (stop the server first: a running server's
database is refused) into an empty PostgreSQL database
(postgres://user@host:port/db; ?sslmode=require for TLS), in one
transaction: users, settings (the token secret), rooms, members, messages
with their ids, and read markers.
";

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct Args {
    pub from: PathBuf,
    pub postgres: String,
}

/// Reads the arguments after `migrate`; `Ok(None)` for `--help`. Both flags
/// are required; `--flag=value` works too.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let (mut from, mut postgres) = (None, None);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        let slot = match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--from-sqlite" => &mut from,
            "--postgres" => &mut postgres,
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        };
        let value = match inline {
            Some(v) => v,
            None => args.next().ok_or_else(|| format!("{name} needs a value"))?,
        };
        if value.is_empty() {
            return Err(format!("{name} needs a value"));
        }
        *slot = Some(value);
    }
    Ok(Some(Args {
        from: PathBuf::from(from.ok_or("--from-sqlite PATH is required (see --help)")?),
        postgres: postgres.ok_or("--postgres URL is required (see --help)")?,
    }))
}

/// What was copied, counted as written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub users: u64,
    pub settings: u64,
    pub rooms: u64,
    pub members: u64,
    pub messages: u64,
    /// Rooms and conversations with messages (rows of `targets`).
    pub targets: u64,
    pub room_reads: u64,
    pub dm_reads: u64,
    pub mentions: u64,
    /// File rows, and the blobs (bytes) copied into `blobs`.
    pub files: u64,
    pub blobs: u64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} users, {} settings, {} rooms, {} memberships, {} messages in {} rooms and \
             conversations, {} room read markers, {} conversation read markers, {} mentions, \
             {} files ({} blobs)",
            self.users,
            self.settings,
            self.rooms,
            self.members,
            self.messages,
            self.targets,
            self.room_reads,
            self.dm_reads,
            self.mentions,
            self.files,
            self.blobs
        )
    }
}

/// Copies the SQLite database at `from` into the PostgreSQL database at
/// `url` (migrating its schema first).
pub fn migrate(from: &Path, url: &str) -> Result<Stats, StoreError> {
    migrate_config(from, parse_config(url)?)
}

pub(crate) fn migrate_config(from: &Path, config: Config) -> Result<Stats, StoreError> {
    let src = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::request(format!("cannot open {}: {e}", from.display())))?;
    let version: i64 = src
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| StoreError::request(format!("cannot read {}: {e}", from.display())))?;
    if version == 0 {
        return Err(StoreError::request(format!(
            "{} is not a hubbub database (no schema)",
            from.display()
        )));
    }
    // One snapshot of the source for the whole copy.
    src.execute_batch("BEGIN")
        .map_err(|e| StoreError::request(format!("cannot read {}: {e}", from.display())))?;
    let mut pg = Postgres::open_config(config.clone())?;
    let client = pg.client()?;
    let mut tx = client.transaction().map_err(pg_err("begin"))?;
    // Another `migrate` waits; a node that is running waits before its
    // next append (and sees the copy once it commits).
    tx.execute(
        "SELECT pg_advisory_xact_lock($1), pg_advisory_xact_lock($2)",
        &[&MIGRATION_LOCK, &APPEND_LOCK],
    )
    .map_err(pg_err("lock"))?;
    let row = tx
        .query_one(
            "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM messages)",
            &[],
        )
        .map_err(pg_err("check"))?;
    let (users, messages): (i64, i64) = (row.get(0), row.get(1));
    if users > 0 || messages > 0 {
        return Err(StoreError::request(format!(
            "the PostgreSQL database already holds {users} users and {messages} messages; \
             migrate only into an empty one"
        )));
    }
    let mut stats = copy_all(&src, version, &mut tx)?;
    stats.files = copy_file_rows(&src, &mut tx)?;
    // The bytes go in before the rows commit, so no committed row names a
    // blob that is not there; blobs of a copy that then fails are named by
    // no row, and the sweep removes them.
    stats.blobs = copy_file_bytes(&src, from, config)?;
    tx.commit().map_err(pg_err("commit"))?;
    Ok(stats)
}

/// The files' rows (issue 23's schema; a source from before has none):
/// `files` with their ids, which messages carry them, each message's
/// `attachments` and each user's avatar. Returns the file rows.
fn copy_file_rows(src: &Connection, tx: &mut Transaction<'_>) -> Result<u64, StoreError> {
    use Type as T;
    let has_files: bool = src
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'files')",
            [],
            |r| r.get(0),
        )
        .map_err(lite_err("files"))?;
    if !has_files {
        return Ok(0);
    }
    let files = copy(
        src,
        tx,
        "SELECT id, owner_id, name, mime, size, blob, width, height, thumb_small, thumb_large,
                created_ms, avatar, attached, released_ms FROM files ORDER BY id",
        "files",
        "id, owner_id, name, mime, size, blob, width, height, thumb_small, thumb_large, \
         created_ms, avatar, attached, released_ms",
        &[
            T::INT8,
            T::INT8,
            T::TEXT,
            T::TEXT,
            T::INT8,
            T::TEXT,
            T::INT4,
            T::INT4,
            T::TEXT,
            T::TEXT,
            T::INT8,
            T::BOOL,
            T::BOOL,
            T::INT8,
        ],
        |r| {
            let e = lite_err("files");
            let id: i64 = r.get(0).map_err(&e)?;
            let (name, mime): (String, String) = (r.get(2).map_err(&e)?, r.get(3).map_err(&e)?);
            check_text("file", &id, Some(&name))?;
            check_text("file", &id, Some(&mime))?;
            Ok(vec![
                boxed(id),
                boxed(r.get::<_, i64>(1).map_err(&e)?),
                boxed(name),
                boxed(mime),
                boxed(r.get::<_, i64>(4).map_err(&e)?),
                boxed(r.get::<_, String>(5).map_err(&e)?),
                boxed(r.get::<_, Option<i32>>(6).map_err(&e)?),
                boxed(r.get::<_, Option<i32>>(7).map_err(&e)?),
                boxed(r.get::<_, Option<String>>(8).map_err(&e)?),
                boxed(r.get::<_, Option<String>>(9).map_err(&e)?),
                boxed(r.get::<_, i64>(10).map_err(&e)?),
                boxed(r.get::<_, bool>(11).map_err(&e)?),
                boxed(r.get::<_, bool>(12).map_err(&e)?),
                boxed(r.get::<_, Option<i64>>(13).map_err(&e)?),
            ])
        },
    )?;
    if files > 0 {
        tx.execute(
            "SELECT setval(pg_get_serial_sequence('files', 'id'), (SELECT MAX(id) FROM files))",
            &[],
        )
        .map_err(pg_err("files"))?;
    }
    copy(
        src,
        tx,
        "SELECT message_id, file_id FROM message_files",
        "message_files",
        "message_id, file_id",
        &[T::INT8, T::INT8],
        |r| {
            let e = lite_err("message_files");
            Ok(vec![
                boxed(r.get::<_, i64>(0).map_err(&e)?),
                boxed(r.get::<_, i64>(1).map_err(&e)?),
            ])
        },
    )?;
    let mut st = src
        .prepare("SELECT id, attachments FROM messages WHERE attachments IS NOT NULL")
        .map_err(lite_err("attachments"))?;
    let mut rows = st.query([]).map_err(lite_err("attachments"))?;
    let update = tx
        .prepare("UPDATE messages SET attachments = $2 WHERE id = $1")
        .map_err(pg_err("attachments"))?;
    while let Some(r) = rows.next().map_err(lite_err("attachments"))? {
        let e = lite_err("attachments");
        let (id, list): (i64, String) = (r.get(0).map_err(&e)?, r.get(1).map_err(&e)?);
        check_text("message", &id, Some(&list))?;
        tx.execute(&update, &[&id, &list])
            .map_err(pg_err("attachments"))?;
    }
    let mut st = src
        .prepare("SELECT id, avatar_file FROM users WHERE avatar_file IS NOT NULL")
        .map_err(lite_err("avatars"))?;
    let mut rows = st.query([]).map_err(lite_err("avatars"))?;
    let update = tx
        .prepare("UPDATE users SET avatar_file = $2 WHERE id = $1")
        .map_err(pg_err("avatars"))?;
    while let Some(r) = rows.next().map_err(lite_err("avatars"))? {
        let e = lite_err("avatars");
        let (id, file): (i64, i64) = (r.get(0).map_err(&e)?, r.get(1).map_err(&e)?);
        tx.execute(&update, &[&id, &file])
            .map_err(pg_err("avatars"))?;
    }
    Ok(files)
}

/// The bytes of every blob the source names, from the directory beside
/// it into PostgreSQL's blob rows (re-hashed on the way). A blob the
/// directory lacks is an error: the copy would serve 404s for files its
/// rows say exist.
fn copy_file_bytes(src: &Connection, from: &Path, config: Config) -> Result<u64, StoreError> {
    let keys = super::sqlite::blob_keys_in(src).map_err(lite_err("files"))?;
    if keys.is_empty() {
        return Ok(0);
    }
    let fail = |e: FileError| StoreError::request(format!("copying the files' bytes: {e}"));
    let dir = crate::files::dir::beside(from);
    let mut source = DirStore::open(&dir).map_err(fail)?.handle().map_err(fail)?;
    let mut target = PgFileStore::new(config).handle().map_err(fail)?;
    let done = copy_blobs(&mut *source, &mut *target, &keys).map_err(fail)?;
    if done.missing > 0 {
        return Err(StoreError::request(format!(
            "{} of the {} blobs the database names are not in {}",
            done.missing,
            keys.len(),
            dir.display()
        )));
    }
    Ok(done.copied)
}

/// A PostgreSQL failure while doing `what`.
fn pg_err(what: &'static str) -> impl Fn(postgres::Error) -> StoreError {
    move |e| StoreError::request(format!("PostgreSQL, {what}: {}", describe(&e)))
}

/// A SQLite failure while reading `what`.
fn lite_err(what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::request(format!("SQLite, reading {what}: {e}"))
}

/// Text PostgreSQL cannot store.
fn check_text(
    what: &str,
    id: &dyn std::fmt::Display,
    text: Option<&str>,
) -> Result<(), StoreError> {
    if text.is_some_and(|t| t.contains('\0')) {
        return Err(StoreError::request(format!(
            "{what} {id} holds a NUL character, which PostgreSQL text cannot store"
        )));
    }
    Ok(())
}

/// Streams the rows of `select` (SQLite) into `table (columns)` (PostgreSQL)
/// through binary COPY; `row` turns one SQLite row into the values to write.
/// Returns the rows written.
fn copy<F>(
    src: &Connection,
    tx: &mut Transaction<'_>,
    select: &str,
    table: &'static str,
    columns: &str,
    types: &[Type],
    mut row: F,
) -> Result<u64, StoreError>
where
    F: FnMut(&rusqlite::Row<'_>) -> Result<Vec<Box<dyn ToSql + Sync>>, StoreError>,
{
    let mut st = src.prepare(select).map_err(lite_err(table))?;
    let mut rows = st.query([]).map_err(lite_err(table))?;
    let sink = tx
        .copy_in(&format!("COPY {table} ({columns}) FROM STDIN BINARY"))
        .map_err(pg_err(table))?;
    let mut writer = BinaryCopyInWriter::new(sink, types);
    while let Some(r) = rows.next().map_err(lite_err(table))? {
        let values = row(r)?;
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| &**v).collect();
        writer.write(&refs).map_err(pg_err(table))?;
    }
    writer.finish().map_err(pg_err(table))
}

fn boxed<T: ToSql + Sync + 'static>(v: T) -> Box<dyn ToSql + Sync> {
    Box::new(v)
}

/// The SQLite schema that added replies, edits, deletions, reactions and
/// mentions (`sqlite::MIGRATIONS[1]`).
const ISSUE_13_SCHEMA: i64 = 2;

/// The SQLite schema that added roles, bans, profiles, sessions, invites,
/// the audit log and archived rooms (`sqlite::MIGRATIONS[4]`).
const ISSUE_22_SCHEMA: i64 = 5;

fn copy_all(src: &Connection, version: i64, tx: &mut Transaction<'_>) -> Result<Stats, StoreError> {
    use Type as T;
    let issue_22 = version >= ISSUE_22_SCHEMA;
    let account_columns = if issue_22 {
        "role, banned_ms, ban_reason, deleted_ms, display_name, status, sessions_after_ms, version"
    } else {
        "'member', NULL, NULL, NULL, NULL, '', 0, 0"
    };
    let users = copy(
        src,
        tx,
        &format!(
            "SELECT id, username, email, pw_iter, pw_salt, pw_hash, created_ms, last_seen_ms,
                    {account_columns}
             FROM users ORDER BY id"
        ),
        "users",
        "id, username, email, pw_iter, pw_salt, pw_hash, created_ms, last_seen_ms, \
         role, banned_ms, ban_reason, deleted_ms, display_name, status, sessions_after_ms, version",
        &[
            T::INT8,
            T::TEXT,
            T::TEXT,
            T::INT8,
            T::BYTEA,
            T::BYTEA,
            T::INT8,
            T::INT8,
            T::TEXT,
            T::INT8,
            T::TEXT,
            T::INT8,
            T::TEXT,
            T::TEXT,
            T::INT8,
            T::INT8,
        ],
        |r| {
            let e = lite_err("users");
            let id: i64 = r.get(0).map_err(&e)?;
            let texts: [Option<String>; 6] = [
                r.get(1).map_err(&e)?,
                r.get(2).map_err(&e)?,
                r.get(8).map_err(&e)?,
                r.get(10).map_err(&e)?,
                r.get(12).map_err(&e)?,
                r.get(13).map_err(&e)?,
            ];
            for t in &texts {
                check_text("user", &id, t.as_deref())?;
            }
            let [name, email, role, ban_reason, display_name, status] = texts;
            Ok(vec![
                boxed(id),
                boxed(name),
                boxed(email),
                boxed(r.get::<_, i64>(3).map_err(&e)?),
                boxed(r.get::<_, Vec<u8>>(4).map_err(&e)?),
                boxed(r.get::<_, Vec<u8>>(5).map_err(&e)?),
                boxed(r.get::<_, i64>(6).map_err(&e)?),
                boxed(r.get::<_, Option<i64>>(7).map_err(&e)?),
                boxed(role),
                boxed(r.get::<_, Option<i64>>(9).map_err(&e)?),
                boxed(ban_reason),
                boxed(r.get::<_, Option<i64>>(11).map_err(&e)?),
                boxed(display_name),
                boxed(status),
                boxed(r.get::<_, i64>(14).map_err(&e)?),
                boxed(r.get::<_, i64>(15).map_err(&e)?),
            ])
        },
    )?;
    if users > 0 {
        tx.execute(
            "SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT MAX(id) FROM users))",
            &[],
        )
        .map_err(pg_err("users"))?;
    }
    // Settings: the SQLite one wins over one a node generated already (a
    // node started on the empty database), so existing tokens stay valid.
    let mut st = src
        .prepare("SELECT key, value FROM settings ORDER BY key")
        .map_err(lite_err("settings"))?;
    let settings: Vec<(String, Vec<u8>)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(lite_err("settings"))?;
    for (key, value) in &settings {
        tx.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[key, value],
        )
        .map_err(pg_err("settings"))?;
    }
    let rooms = copy(
        src,
        tx,
        &format!(
            "SELECT name, private, owner_id, {} FROM rooms",
            if issue_22 { "archived" } else { "0" }
        ),
        "rooms",
        "name, private, owner_id, archived",
        &[T::TEXT, T::BOOL, T::INT8, T::BOOL],
        |r| {
            let name: String = r.get(0).map_err(lite_err("rooms"))?;
            check_text("room", &name, Some(&name))?;
            Ok(vec![
                boxed(name),
                boxed(r.get::<_, i64>(1).map_err(lite_err("rooms"))? != 0),
                boxed(r.get::<_, Option<i64>>(2).map_err(lite_err("rooms"))?),
                boxed(r.get::<_, i64>(3).map_err(lite_err("rooms"))? != 0),
            ])
        },
    )?;
    let members = copy(
        src,
        tx,
        "SELECT room, user_id FROM room_members",
        "room_members",
        "room, user_id",
        &[T::TEXT, T::INT8],
        |r| {
            Ok(vec![
                boxed(r.get::<_, String>(0).map_err(lite_err("room_members"))?),
                boxed(r.get::<_, i64>(1).map_err(lite_err("room_members"))?),
            ])
        },
    )?;
    let mut heads: HashMap<String, i64> = HashMap::new();
    let issue_13 = version >= ISSUE_13_SCHEMA;
    let select_messages = format!(
        "SELECT id, room, from_id, to_id, content, ts_ms, client_id, {} FROM messages ORDER BY id",
        if issue_13 {
            "reply_to, edited_ms, deleted_ms, reactions"
        } else {
            "NULL, NULL, NULL, NULL"
        }
    );
    // Through a staging table with each message's search words as text
    // (`search_text`), which one `INSERT … SELECT` turns into `tsv` (binary
    // COPY has no way to write a tsvector from here).
    tx.batch_execute(
        "CREATE TEMP TABLE staged_messages (
             id BIGINT, target TEXT, seq BIGINT, room TEXT, from_id BIGINT, to_id BIGINT,
             content TEXT, ts_ms BIGINT, client_id TEXT, reply_to BIGINT, edited_ms BIGINT,
             deleted_ms BIGINT, reactions TEXT, words TEXT
         ) ON COMMIT DROP",
    )
    .map_err(pg_err("messages"))?;
    let messages = copy(
        src,
        tx,
        &select_messages,
        "staged_messages",
        "id, target, seq, room, from_id, to_id, content, ts_ms, client_id, \
         reply_to, edited_ms, deleted_ms, reactions, words",
        &[
            T::INT8,
            T::TEXT,
            T::INT8,
            T::TEXT,
            T::INT8,
            T::INT8,
            T::TEXT,
            T::INT8,
            T::TEXT,
            T::INT8,
            T::INT8,
            T::INT8,
            T::TEXT,
            T::TEXT,
        ],
        |r| {
            let e = lite_err("messages");
            let id: i64 = r.get(0).map_err(&e)?;
            let room: Option<String> = r.get(1).map_err(&e)?;
            let from: i64 = r.get(2).map_err(&e)?;
            let to: Option<i64> = r.get(3).map_err(&e)?;
            let content: String = r.get(4).map_err(&e)?;
            let client_id: Option<String> = r.get(6).map_err(&e)?;
            check_text("message", &id, room.as_deref())?;
            check_text("message", &id, Some(&content))?;
            check_text("message", &id, client_id.as_deref())?;
            let reactions: Option<String> = r.get(10).map_err(&e)?;
            check_text("message", &id, reactions.as_deref())?;
            let user = |v: i64| {
                u32::try_from(v).map_err(|_| {
                    StoreError::request(format!("message {id}: user id {v} is out of range"))
                })
            };
            let target = message_target(room.as_deref(), user(from)?, to.map(user).transpose()?)
                .ok_or_else(|| {
                    StoreError::request(format!("message {id} has neither a room nor a recipient"))
                })?;
            let seq = heads.entry(target.clone()).or_insert(0);
            *seq += 1;
            let words = search_text(&content);
            Ok(vec![
                boxed(id),
                boxed(target),
                boxed(*seq),
                boxed(room),
                boxed(from),
                boxed(to),
                boxed(content),
                boxed(r.get::<_, i64>(5).map_err(&e)?),
                boxed(client_id),
                boxed(r.get::<_, Option<i64>>(7).map_err(&e)?),
                boxed(r.get::<_, Option<i64>>(8).map_err(&e)?),
                boxed(r.get::<_, Option<i64>>(9).map_err(&e)?),
                boxed(reactions),
                boxed(words),
            ])
        },
    )?;
    tx.batch_execute(
        "INSERT INTO messages (id, target, seq, room, from_id, to_id, content, ts_ms, client_id,
                               reply_to, edited_ms, deleted_ms, reactions, tsv)
         SELECT id, target, seq, room, from_id, to_id, content, ts_ms, client_id,
                reply_to, edited_ms, deleted_ms, reactions,
                array_to_tsvector(string_to_array(words, ' '))
         FROM staged_messages ORDER BY id;
         DROP TABLE staged_messages",
    )
    .map_err(pg_err("messages"))?;
    let targets = {
        let sink = tx
            .copy_in("COPY targets (key, seq) FROM STDIN BINARY")
            .map_err(pg_err("targets"))?;
        let mut writer = BinaryCopyInWriter::new(sink, &[T::TEXT, T::INT8]);
        for (key, seq) in &heads {
            writer.write(&[key, seq]).map_err(pg_err("targets"))?;
        }
        writer.finish().map_err(pg_err("targets"))?
    };
    if messages > 0 {
        tx.execute(
            "SELECT setval('message_ids', (SELECT MAX(id) FROM messages))",
            &[],
        )
        .map_err(pg_err("messages"))?;
    }
    let room_reads = copy(
        src,
        tx,
        "SELECT user_id, room, last_id FROM room_reads",
        "room_reads",
        "user_id, room, last_id",
        &[T::INT8, T::TEXT, T::INT8],
        |r| {
            let e = lite_err("room_reads");
            Ok(vec![
                boxed(r.get::<_, i64>(0).map_err(&e)?),
                boxed(r.get::<_, String>(1).map_err(&e)?),
                boxed(r.get::<_, i64>(2).map_err(&e)?),
            ])
        },
    )?;
    let dm_reads = copy(
        src,
        tx,
        "SELECT user_id, peer_id, last_id FROM dm_reads",
        "dm_reads",
        "user_id, peer_id, last_id",
        &[T::INT8, T::INT8, T::INT8],
        |r| {
            let e = lite_err("dm_reads");
            Ok(vec![
                boxed(r.get::<_, i64>(0).map_err(&e)?),
                boxed(r.get::<_, i64>(1).map_err(&e)?),
                boxed(r.get::<_, i64>(2).map_err(&e)?),
            ])
        },
    )?;
    let mentions = if issue_13 {
        copy(
            src,
            tx,
            "SELECT user_id, room, message_id FROM mentions",
            "mentions",
            "user_id, room, message_id",
            &[T::INT8, T::TEXT, T::INT8],
            |r| {
                let e = lite_err("mentions");
                let room: String = r.get(1).map_err(&e)?;
                check_text("mention in room", &room, Some(&room))?;
                Ok(vec![
                    boxed(r.get::<_, i64>(0).map_err(&e)?),
                    boxed(room),
                    boxed(r.get::<_, i64>(2).map_err(&e)?),
                ])
            },
        )?
    } else {
        0
    };
    if issue_22 {
        copy_accounts(src, tx)?;
    }
    Ok(Stats {
        users,
        settings: settings.len() as u64,
        rooms,
        members,
        messages,
        targets,
        room_reads,
        dm_reads,
        mentions,
        ..Stats::default()
    })
}

/// Sessions (so tokens stay valid and ended ones stay ended), invites and
/// the audit log. The change log is not copied: every node reads
/// everything when it starts.
fn copy_accounts(src: &Connection, tx: &mut Transaction<'_>) -> Result<(), StoreError> {
    use Type as T;
    let texts =
        |what: &'static str, key: &dyn std::fmt::Display, r: &rusqlite::Row<'_>, at: &[usize]| {
            let mut out = Vec::new();
            for &i in at {
                let t: String = r.get(i).map_err(lite_err(what))?;
                check_text(what, key, Some(&t))?;
                out.push(t);
            }
            Ok::<_, StoreError>(out)
        };
    copy(
        src,
        tx,
        "SELECT id, user_id, created_ms, expires_ms, address, agent, ended_ms FROM sessions",
        "sessions",
        "id, user_id, created_ms, expires_ms, address, agent, ended_ms",
        &[
            T::TEXT,
            T::INT8,
            T::INT8,
            T::INT8,
            T::TEXT,
            T::TEXT,
            T::INT8,
        ],
        |r| {
            let e = lite_err("sessions");
            let t = texts("session", &"", r, &[0, 4, 5])?;
            let [id, address, agent]: [String; 3] = t.try_into().expect("three texts");
            Ok(vec![
                boxed(id),
                boxed(r.get::<_, i64>(1).map_err(&e)?),
                boxed(r.get::<_, i64>(2).map_err(&e)?),
                boxed(r.get::<_, i64>(3).map_err(&e)?),
                boxed(address),
                boxed(agent),
                boxed(r.get::<_, Option<i64>>(6).map_err(&e)?),
            ])
        },
    )?;
    copy(
        src,
        tx,
        "SELECT code, created_by, created_ms, expires_ms, uses, used, revoked_ms FROM invites",
        "invites",
        "code, created_by, created_ms, expires_ms, uses, used, revoked_ms",
        &[
            T::TEXT,
            T::INT8,
            T::INT8,
            T::INT8,
            T::INT8,
            T::INT8,
            T::INT8,
        ],
        |r| {
            let e = lite_err("invites");
            let [code]: [String; 1] = texts("invite", &"", r, &[0])?.try_into().expect("one text");
            Ok(vec![
                boxed(code),
                boxed(r.get::<_, Option<i64>>(1).map_err(&e)?),
                boxed(r.get::<_, i64>(2).map_err(&e)?),
                boxed(r.get::<_, i64>(3).map_err(&e)?),
                boxed(r.get::<_, i64>(4).map_err(&e)?),
                boxed(r.get::<_, i64>(5).map_err(&e)?),
                boxed(r.get::<_, Option<i64>>(6).map_err(&e)?),
            ])
        },
    )?;
    copy(
        src,
        tx,
        "SELECT id, at_ms, actor_id, action, target, reason FROM audit ORDER BY id",
        "audit",
        "id, at_ms, actor_id, action, target, reason",
        &[T::INT8, T::INT8, T::INT8, T::TEXT, T::TEXT, T::TEXT],
        |r| {
            let e = lite_err("audit");
            let id: i64 = r.get(0).map_err(&e)?;
            let [action, target, reason]: [String; 3] = texts("audit entry", &id, r, &[3, 4, 5])?
                .try_into()
                .expect("three texts");
            Ok(vec![
                boxed(id),
                boxed(r.get::<_, i64>(1).map_err(&e)?),
                boxed(r.get::<_, Option<i64>>(2).map_err(&e)?),
                boxed(action),
                boxed(target),
                boxed(reason),
            ])
        },
    )?;
    tx.execute(
        "SELECT setval(pg_get_serial_sequence('audit', 'id'), GREATEST((SELECT MAX(id) FROM audit), 1))",
        &[],
    )
    .map_err(pg_err("audit"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::TICKET;
    use crate::store::postgres::testdb::TestDb;
    use crate::store::sqlite::Sqlite;
    use crate::store::{
        Backend, HistoryQuery, MsgId, PasswordHash, PrivateRoomRow, Reply, Request, StoredMessage,
        Target, UserId, UserRow,
    };

    fn user(id: UserId, name: &str) -> UserRow {
        UserRow {
            id,
            username: name.into(),
            email: format!("{name}@example.com"),
            password: PasswordHash {
                iterations: 600_000,
                salt: [id as u8; 16],
                hash: [id as u8 + 1; 32],
            },
            created_ms: 1000 + id as i64,
            last_seen_ms: id.is_multiple_of(2).then_some(5000),
            account: Default::default(),
        }
    }

    fn put(id: MsgId, room: Option<&str>, from: UserId, to: Option<UserId>) -> Request {
        Request::PutMessage {
            msg: StoredMessage {
                id,
                room: room.map(String::from),
                from,
                to,
                content: format!("m{id}"),
                timestamp_ms: 10 * id as i64,
                seq: 0,
                ..StoredMessage::default()
            },
            client_id: id.is_multiple_of(7).then(|| format!("c{id}")),
            mentions: Vec::new(),
        }
    }

    fn run<B: Backend>(db: &mut B, reqs: &[Request]) -> Vec<Reply> {
        db.begin().unwrap();
        let out = reqs.iter().filter_map(|r| db.execute(r).unwrap()).collect();
        db.commit().unwrap();
        out
    }

    /// A SQLite file in its own directory, removed after the test.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let dir =
                std::env::temp_dir().join(format!("hubbub-migrate-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A SQLite database with users, a private room, members, messages in
    /// rooms and conversations, read markers, client ids and the secret.
    fn source(path: &Path) -> Sqlite {
        let mut db = Sqlite::open(path).unwrap();
        let mut reqs = vec![
            Request::put_user(user(1, "alice")),
            Request::put_user(user(2, "bob")),
            Request::put_user(user(3, "carol")),
            Request::put_user(user(5, "erin")),
            Request::PutPrivateRoom {
                ticket: TICKET,
                row: PrivateRoomRow {
                    name: "ops".into(),
                    owner: 1,
                    members: vec![1, 3],
                },
            },
            Request::PutPublicRoom {
                name: "general".into(),
                creator: 2,
            },
        ];
        for id in 1..=3000u64 {
            let from = [1, 2, 3, 5][id as usize % 4];
            reqs.push(match id % 5 {
                0 | 1 => put(id, Some("general"), from, None),
                2 => put(id, Some("ops"), 1 + 2 * (id as u32 % 2), None),
                3 => put(id, None, from, Some(if from == 1 { 2 } else { 1 })),
                _ => put(id, Some("lost"), from, None),
            });
        }
        reqs.push(Request::MarkRead {
            user: 2,
            target: Target::Room("general".into()),
            id: 1500,
        });
        reqs.push(Request::MarkRead {
            user: 3,
            target: Target::Room("ops".into()),
            id: 2000,
        });
        reqs.push(Request::MarkRead {
            user: 1,
            target: Target::Direct(1, 2),
            id: 2500,
        });
        run(&mut db, &reqs);
        // Issue 13: a reply (3001, to 3000) that mentions two users, an
        // edited message (1), a deleted one (5), a reacted one (6).
        let mut reply = put(3001, Some("general"), 1, None);
        if let Request::PutMessage { msg, mentions, .. } = &mut reply {
            msg.reply_to = Some(3000);
            *mentions = vec![2, 3];
        }
        let out = run(
            &mut db,
            &[
                reply,
                Request::EditMessage {
                    ticket: TICKET,
                    id: 1,
                    user: 2,
                    content: "m1, edited".into(),
                    at_ms: 77,
                },
                Request::DeleteMessage {
                    ticket: TICKET,
                    id: 5,
                    user: 2,
                    moderator: false,
                    at_ms: 78,
                },
                Request::React {
                    ticket: TICKET,
                    id: 6,
                    user: 1,
                    emoji: "👍".into(),
                },
            ],
        );
        assert!(
            matches!(out[0], Reply::MessageStored { key: 3001, .. }),
            "{out:?}"
        );
        assert!(
            out[1..]
                .iter()
                .all(|r| matches!(r, Reply::Changed { outcome: Ok(_), .. })),
            "{out:?}"
        );
        db.put_setting("jwt_secret", &[9; 32]).unwrap();
        db
    }

    fn history(target: Target, before: Option<MsgId>, limit: usize) -> Request {
        Request::History {
            ticket: TICKET,
            query: HistoryQuery {
                target,
                reader: 1,
                before,
                after: None,
                limit,
                offset: 0,
            },
        }
    }

    /// Everything comes across: the snapshot PostgreSQL loads is SQLite's
    /// (plus heads), histories and unread counts are the same, seqs count
    /// each target in id order, the secret is kept, and new users and
    /// messages continue after the copied ids.
    #[test]
    fn migrate_copies_everything() {
        let Some(t) = TestDb::new() else { return };
        let dir = Dir::new("all");
        let path = dir.0.join("hubbub.db");
        let mut lite = source(&path);
        let stats = migrate_config(&path, t.config.clone()).unwrap();
        assert_eq!(
            stats,
            Stats {
                users: 4,
                settings: 1,
                rooms: 2,
                members: 2,
                messages: 3001,
                targets: 6,
                room_reads: 2,
                dm_reads: 1,
                mentions: 2,
                files: 0,
                blobs: 0,
            }
        );
        let mut pg = t.open();
        let (want, got) = (lite.load().unwrap(), pg.load().unwrap());
        assert_eq!(got.users, want.users);
        assert_eq!(got.private_rooms, want.private_rooms);
        assert_eq!(got.public_rooms, want.public_rooms);
        assert_eq!(got.orphan_rooms, vec!["lost".to_string()]);
        assert_eq!(got.orphan_rooms, want.orphan_rooms);
        assert_eq!(got.max_message_id, 3001);
        assert_eq!(got.recent_client_ids, want.recent_client_ids);
        let sorted = |mut v: Vec<UserId>| {
            v.sort_unstable();
            v
        };
        assert_eq!(sorted(got.unread_sources), sorted(want.unread_sources));
        assert_eq!(
            got.heads,
            vec![
                (Target::Direct(1, 2), 300),
                (Target::Direct(1, 3), 150),
                (Target::Direct(1, 5), 150),
                (Target::Room("general".into()), 1201),
                (Target::Room("lost".into()), 600),
                (Target::Room("ops".into()), 600),
            ]
        );
        assert_eq!(got.heads.iter().map(|h| h.1).sum::<u64>(), 3001);
        assert_eq!(pg.setting("jwt_secret").unwrap(), Some(vec![9; 32]));
        let mut reads = Vec::new();
        for target in [
            Target::Room("general".into()),
            Target::Room("ops".into()),
            Target::Direct(2, 1),
            Target::Direct(3, 1),
        ] {
            reads.push(history(target.clone(), None, 50));
            reads.push(history(target, Some(1234), 1000));
        }
        for user in [1, 2, 3, 5] {
            reads.push(Request::Unread {
                ticket: TICKET,
                user,
            });
        }
        // The issue-13 state, read back: the edit, the deletion (gone from
        // history, kept by `Catchup` with its seq), the reaction, the reply
        // and its mentions (in the unread counts below), and search.
        reads.push(history(Target::Room("general".into()), Some(10), 10));
        reads.push(history(Target::Room("general".into()), None, 2));
        for user in [2, 3] {
            reads.push(Request::Search {
                ticket: TICKET,
                query: crate::store::SearchQuery {
                    user,
                    words: vec!["edited".into()],
                    scope: None,
                    limit: 10,
                },
            });
        }
        let want = run(&mut lite, &reads);
        let got = run(&mut pg, &reads);
        let edited = got.iter().rev().find_map(|r| match r {
            Reply::History { messages, .. } if messages.len() == 1 => Some(messages[0].clone()),
            _ => None,
        });
        assert_eq!(
            edited.map(|m| (m.id, m.content, m.edited_ms)),
            Some((1, "m1, edited".to_string(), Some(77)))
        );
        let catchup = Request::Catchup {
            ticket: TICKET,
            target: Target::Room("general".into()),
            after: 1,
            limit: 3,
        };
        let caught = match run(&mut pg, &[catchup]).pop() {
            Some(Reply::History { messages, .. }) => messages,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            caught
                .iter()
                .map(|m| (m.id, m.seq, m.deleted, m.content.as_str()))
                .collect::<Vec<_>>(),
            [(5, 2, true, ""), (6, 3, false, "m6"), (10, 4, false, "m10")]
        );
        assert_eq!(caught[1].reactions.len(), 1);
        let mut c = t.client();
        let reply: Option<i64> = c
            .query_one("SELECT reply_to FROM messages WHERE id = 3001", &[])
            .unwrap()
            .get(0);
        assert_eq!(reply, Some(3000));
        let n: i64 = c
            .query_one("SELECT COUNT(*) FROM mentions WHERE message_id = 3001", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 2);
        for ((req, got), want) in reads.iter().zip(got).zip(want) {
            match (got, want) {
                (Reply::History { messages: got, .. }, Reply::History { messages: want, .. }) => {
                    assert!(!got.is_empty(), "{req:?}");
                    let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
                    // Increasing (a deleted message leaves a gap in a
                    // history's seqs; a search is newest first).
                    assert!(
                        seqs.windows(2).all(|w| w[1] > w[0])
                            || seqs.windows(2).all(|w| w[1] < w[0]),
                        "{req:?}: {seqs:?}"
                    );
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
        let out = run(
            &mut pg,
            &[
                Request::put_user(user(77, "frank")),
                put(1, Some("general"), 1, None),
            ],
        );
        assert!(
            matches!(
                out[..],
                [
                    Reply::UserStored { key: 77, id: 6, .. },
                    Reply::MessageStored {
                        key: 1,
                        id: 3002,
                        seq: 1202,
                        ..
                    }
                ]
            ),
            "{out:?}"
        );
    }

    /// A target that holds users already is refused, and so is a source
    /// PostgreSQL cannot store; either way the target is left as it was.
    #[test]
    fn migrate_refuses_and_leaves_nothing_half_copied() {
        let Some(t) = TestDb::new() else { return };
        let dir = Dir::new("refuse");
        let path = dir.0.join("hubbub.db");
        let mut lite = source(&path);
        run(
            &mut lite,
            &[Request::PutMessage {
                msg: StoredMessage {
                    id: 9999,
                    room: Some("general".into()),
                    from: 1,
                    to: None,
                    content: "nul\0here".into(),
                    timestamp_ms: 1,
                    seq: 0,
                    ..StoredMessage::default()
                },
                client_id: None,
                mentions: Vec::new(),
            }],
        );
        let e = migrate_config(&path, t.config.clone()).unwrap_err();
        assert!(e.message.contains("message 9999 holds a NUL"), "{e}");
        let mut c = t.client();
        let n: i64 = c
            .query_one("SELECT COUNT(*) FROM users", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "the users copied before the failure were rolled back");
        run(&mut t.open(), &[Request::put_user(user(1, "zed"))]);
        let e = migrate_config(&path, t.config.clone()).unwrap_err();
        assert!(e.message.contains("already holds 1 users"), "{e}");
        let e = migrate_config(&dir.0.join("typo.db"), t.config.clone()).unwrap_err();
        assert!(e.message.starts_with("cannot open"), "{e}");
    }

    #[test]
    fn arguments() {
        let args = |v: &[&str]| parse_args(v.iter().map(|s| s.to_string()));
        assert_eq!(
            args(&["--from-sqlite", "a.db", "--postgres=postgres://h/db"]).unwrap(),
            Some(Args {
                from: "a.db".into(),
                postgres: "postgres://h/db".into()
            })
        );
        assert_eq!(args(&["--help"]).unwrap(), None);
        assert!(
            args(&["--from-sqlite", "a.db"])
                .unwrap_err()
                .contains("--postgres")
        );
        assert!(
            args(&["--postgres", "x"])
                .unwrap_err()
                .contains("--from-sqlite")
        );
        assert!(args(&["--db", "x"]).unwrap_err().contains("unknown"));
        assert!(args(&["--postgres"]).unwrap_err().contains("needs a value"));
    }
}
