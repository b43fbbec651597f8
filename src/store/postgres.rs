//! The PostgreSQL backend, for cluster mode: several nodes share one
//! database. This file is the backend itself: what each request does in the
//! writer's transaction (savepoints, failures, edits, deletes and
//! reactions) and the reader's. The rest sits beside it, one concern a
//! file, none of them importing this one:
//! - `conn.rs`: one connection: opening it, its prepared statements, what
//!   its errors mean, reconnecting;
//! - `schema.rs`: the tables and their migrations, the keys of `targets`,
//!   the words of `tsv`;
//! - `append.rs`: appending messages: sequencing per room and
//!   conversation, the append lock, the bulk path;
//! - `reads.rs`: the reads, on either connection, and `load`'s snapshot;
//! - tests: `tests.rs` (the backend), `append_tests.rs` (sequencing and
//!   the bulk path), `change_tests.rs` (edits, deletes, reactions, replies,
//!   mentions, search), and `testdb.rs`, a database per test.
//!
//! Why the synchronous `postgres` client: the storage threads are blocking
//! threads already (one batch, one read at a time), so a blocking client
//! fits them as rusqlite does. It drives tokio-postgres on a small runtime
//! private to the calling thread, so the reactor never sees a future and
//! the rest of the crate stays free of async.
//!
//! Atomic requests (the `Backend` contract): PostgreSQL aborts the whole
//! transaction on any failed statement, so a request that [may fail
//! alone](crate::store::Facts::may_fail_alone) (a unique name, a room that
//! exists, a read) runs inside `SAVEPOINT r` and, on failure, `ROLLBACK TO
//! SAVEPOINT r`, leaving the batch usable. The frequent writes
//! (`PutMessage`, `MarkRead`, `SetLastSeen`, `PutPublicRoom`) run without
//! one: their input is checked first (a NUL character, which PostgreSQL
//! text cannot hold, is refused before any statement), after which their
//! statements cannot fail on data, so any failure there is the
//! transaction's own and aborts the batch (in the bulk path too: a message
//! refused on its input is answered as failed and left out of the run's
//! statements). That saves two round trips per message and keeps a batch
//! of 4096 appends from opening 4096 subtransactions (past 64 per
//! transaction, every other session's snapshot checks get slower).
//!
//! Replies, edits, deletes, reactions, mentions, search (schema 2): the
//! same rules as SQLite's, request for request. A reply's parent is checked
//! under the append lock, and every edit, delete and reaction takes that
//! lock too (`append.rs`), so a parent cannot be deleted on another node
//! between the check and the commit. An edit, delete or reaction reads its
//! message `FOR UPDATE` (the row stays locked to the commit), so a
//! reaction's read-modify-write of the `reactions` column is never
//! interleaved with another node's.

mod accounts;
mod append;
#[cfg(test)]
mod append_tests;
pub(crate) mod blobs;
#[cfg(test)]
mod change_tests;
mod conn;
mod file_rows;
mod push;
mod reads;
mod schema;
#[cfg(test)]
pub(crate) mod testdb;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use postgres::error::SqlState;
use postgres::{Client, Config};

use crate::files::FileStore;

use super::{
    Backend, Change, ChangeKind, Conflict, MsgId, Reader, Refusal, Reply, Request, Snapshot,
    StoreError, Target, UserId, decode_reactions, encode_reactions, execute_one, may_change,
    moderation_audit, toggle_reaction,
};

use append::{BULK_MIN, Batch, Put, append_lock, append_one, append_run, flush};
use conn::{
    Conn, Fail, Res, aborts_batch, begin_on, big, breaks_connection, check_request, check_text,
    classify, connect, connected, opt_user_id, user_id,
};
use reads::{read, snapshot};
use schema::migrate;

pub(crate) use append::APPEND_LOCK;
pub(crate) use conn::{describe, parse_config};
pub(crate) use schema::{MIGRATION_LOCK, message_target, search_text};

/// The savepoint each request that may fail alone runs in.
const SAVEPOINT: &str = "SAVEPOINT r";
const RELEASE: &str = "RELEASE SAVEPOINT r";
const ROLLBACK_TO: &str = "ROLLBACK TO SAVEPOINT r; RELEASE SAVEPOINT r";

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
        let mut client = connect(&config).map_err(|e| {
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
        Request::PutUser { row, invite, audit } => Some(accounts::put_user(
            &mut c.client,
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
            outcome: accounts::write(&mut c.client, write, audit.as_ref())?,
        }),
        Request::PutMessage {
            msg,
            client_id,
            mentions,
        } => Some(append_one(c, batch, msg, client_id.as_deref(), mentions)?),
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
        Request::RemoveMember {
            ticket,
            room,
            user,
            audit,
        } => {
            check_text(&[Some(room)])?;
            if let Some(a) = audit {
                accounts::write_audit(&mut c.client, a)?;
            }
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
        Request::MarkConversationRead {
            ticket,
            user,
            peer,
            id,
        } => {
            let (user, peer, id) = (i64::from(*user), i64::from(*peer), big(*id));
            let moved = c
                .client
                .execute(&c.st.mark_conversation, &[&user, &peer, &id])?;
            let ticket = *ticket;
            Some(match moved {
                0 => Reply::Failed { ticket },
                _ => Reply::Done { ticket },
            })
        }
        Request::History { .. }
        | Request::Unread { .. }
        | Request::Catchup { .. }
        | Request::Resync { .. }
        | Request::RoomInfo { .. }
        | Request::FindUser { .. }
        | Request::Search { .. }
        | Request::AccountRead { .. }
        | Request::FileUsage { .. }
        | Request::FindFile { .. }
        | Request::BlobsUsed { .. }
        | Request::PushProfile { .. } => Some(read(c, req)?),
        Request::PutFile { ticket, row, quota } => Some(file_rows::put(c, *ticket, row, *quota)?),
        Request::SetAvatar {
            ticket,
            user,
            file,
            at_ms,
        } => {
            file_rows::set_avatar(c, *user, *file, *at_ms)?;
            Some(Reply::Done { ticket: *ticket })
        }
        Request::SweepFiles { before_ms } => {
            // After any batch that attached one of them has committed.
            append_lock(c, batch)?;
            Some(Reply::FilesSwept {
                removed: file_rows::sweep(c, *before_ms)?,
            })
        }
        Request::PutPushSubscription { ticket, row } => {
            check_text(&[Some(&row.endpoint)])?;
            push::put_subscription(c, row)?;
            Some(Reply::Done { ticket: *ticket })
        }
        Request::DeletePushSubscription {
            ticket,
            user,
            endpoint,
        } => {
            check_text(&[Some(endpoint)])?;
            push::delete_subscription(c, *user, endpoint)?;
            Some(Reply::Done { ticket: *ticket })
        }
        Request::DropPushSubscription { endpoint, auth } => {
            check_text(&[Some(endpoint)])?;
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
    /// Its room is archived.
    archived: bool,
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
        archived: r.get(6),
    }))
}

/// Whether `user` may read the message `t` (the reaction rule; search's
/// is [`MAY_READ`](conn::MAY_READ), the same rule in SQL).
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
/// [`append_lock`]).
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
    if !may_change(req, t.from, t.room.is_some(), owner, || {
        may_read(c, &t, *user)
    })? {
        return Ok(Err(Refusal::Forbidden));
    }
    if t.archived && !matches!(req, Request::DeleteMessage { .. }) {
        return Ok(Err(Refusal::Archived));
    }
    if let Some(a) = moderation_audit(req, t.from, t.room.as_deref(), owner) {
        accounts::write_audit(&mut c.client, &a)?;
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
            file_rows::release(c, *id, *at_ms)?;
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
        let facts = req.facts();
        let result = if facts.may_fail_alone {
            let flushed = if facts.is_read {
                flush(c, batch)
            } else if facts.changes_a_message {
                append_lock(c, batch)
            } else {
                Ok(())
            };
            match flushed.and_then(|()| in_savepoint(c, batch, req)) {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(f)) => match (req, user_conflict(&f)) {
                    (Request::PutUser { row, .. }, Some(conflict)) => Ok(Some(Reply::UserFailed {
                        key: row.id,
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
    /// Blobs in this database (`blobs.rs`): any node serves any file.
    fn file_store(&mut self) -> Result<Option<Arc<dyn FileStore>>, StoreError> {
        Ok(Some(Arc::new(blobs::PgFileStore::new(self.config.clone()))))
    }

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
