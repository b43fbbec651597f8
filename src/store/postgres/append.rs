//! Appending messages: their sequence per room and conversation, the lock
//! that keeps nodes from deadlocking over it, and the bulk path that
//! appends a run of messages in a few statements.
//!
//! Sequencing ([`crate::store::Seq`]): each room and each conversation has
//! one row in `targets` holding its newest `seq`. A batch's first append to
//! a target locks that row until the batch commits (`INSERT … ON CONFLICT
//! DO UPDATE … RETURNING seq`) and reads the seq; the batch counts on from
//! there in memory ([`Batch`]) and writes every row it moved once, just
//! before `COMMIT` ([`flush`]). Updating the row per message instead would
//! cost a round trip each and leave one dead row version per message for
//! the next update to walk. Message ids are drawn from the global
//! `message_ids` sequence by the insert, while the row lock is held. So
//! appends to one target serialize on its row across every node: seqs are
//! 1, 2, 3, … without a gap among committed messages (a batch that rolls
//! back takes its seqs with it; the unique `(target, seq)` index would
//! refuse a duplicate), and ids increase within a target in seq order,
//! which is the order messages are delivered in. Ids drawn by a batch that
//! rolled back are skipped: ids have gaps, seqs have none.
//!
//! Deadlocks: a batch appends to its targets in arrival order, holding each
//! row lock until it commits, so two nodes whose batches share targets
//! would lock them in different orders and deadlock (PostgreSQL breaks that
//! only after `deadlock_timeout`, 1 s, by aborting one: every client told
//! `busy`). Neither `execute`, which sees one request at a time, nor the
//! bulk path, which sees one run, can lock a whole batch's targets up front
//! in key order. Instead a batch takes one advisory lock ([`APPEND_LOCK`])
//! at its first append and holds it to its commit: appending batches of all
//! nodes take turns, and the row locks are never contended at all (measured
//! in BENCHMARKS.md, "PostgreSQL: the append lock"). The cost is that
//! appends of two nodes never overlap, even to different rooms; batching
//! makes up for it (a node waiting for its turn gathers a bigger batch, and
//! one commit serves it). Batches without appends (read markers, last-seen
//! times) do not take it. Edits, deletes and reactions take it too
//! ([`append_lock`]), and so does `hubbub migrate`. The lock is also what
//! makes the bulk path's look-up of client ids, and every reply's check of
//! its parent, race-free.
//!
//! Bulk appends ([`append_run`]): one message at a time ([`append_one`])
//! costs a round trip per message, which capped a busy node's writer
//! however large its batches (BENCHMARKS.md, "Cluster"). So a run of
//! [`BULK_MIN`] or more consecutive `PutMessage` requests is appended in at
//! most four statements, whatever its length: the append lock (once per
//! batch); the rows of the targets the batch had not appended to yet
//! (`lock_targets`, one statement for all of them); the client ids of the
//! run already stored (`existing_many`, only when a message has one); and
//! one `INSERT … SELECT … FROM unnest(…) WITH ORDINALITY` of every new row
//! (`insert_messages`); plus, only when the run has any, one look-up of
//! the parents its replies name (`reply_parents`) and one insert of its
//! mention rows (`insert_mentions`). Seqs are assigned in memory, in
//! request order, as one at a time; ids are drawn by the insert, ranked,
//! and given out in array order, so they increase with seq within a
//! target. A client id stored before (by any node, or earlier in this
//! batch) or repeated within the run is `MessageExists` and takes no seq
//! (nor an id: one at a time draws one for a retry and drops it; ids have
//! gaps anyway). Other requests keep their own path and their place: a run
//! ends at the first request that is not a message, which is applied before
//! the next run, so a `PutPublicRoom` or a read on the writer sees every
//! message before it. The replies, and the rows, are those of one at a time
//! (a test runs the same batches through both). The costs: the run's
//! columns travel as arrays (one parameter each, the whole run in memory
//! twice, a few megabytes at most for [`crate::config::STORE_BATCH`]
//! messages), and a failure of any of those statements fails the whole
//! batch, as any failure of a message's statements already did.

use std::collections::HashMap;

use super::conn::{Conn, Fail, Res, big, check_request, classify};
use super::file_rows;
use super::schema::{message_target, search_text};
use crate::store::{
    MsgId, PostRefusal, Reply, Request, Seq, StoreError, StoredMessage, UserId, encode_attachments,
    failed_alone,
};

/// The advisory lock a batch takes at its first append and holds until it
/// commits ("append" in ASCII): appends from every node serialize, batch by
/// batch, so their row locks on `targets` are never taken in two orders at
/// once (see the module doc: without it, two nodes' batches over shared
/// rooms deadlock nearly every time).
pub(crate) const APPEND_LOCK: i64 = 0x6170_7065_6e64;

/// The shortest run of consecutive `PutMessage` requests that
/// [`append_run`] appends in bulk; shorter runs (a lone message, the usual
/// batch of a quiet server) go through `execute`, whose one `INSERT … ON
/// CONFLICT DO NOTHING` needs no separate look-up of the client id, so a
/// lone message costs one round trip instead of two.
pub(super) const BULK_MIN: usize = 2;

/// A target the open batch appended to: the seq its (locked) row holds,
/// and the newest this batch assigned, which [`flush`] writes to the row.
pub(super) struct Head {
    pub(super) stored: i64,
    pub(super) newest: i64,
}

/// What the writer's open transaction holds besides its statements.
#[derive(Default)]
pub(super) struct Batch {
    /// [`APPEND_LOCK`] is held (taken at the batch's first append).
    pub(super) append_locked: bool,
    /// Per target key.
    pub(super) heads: HashMap<String, Head>,
}

/// Writes the seqs the batch assigned to their `targets` rows, in one
/// statement: before `COMMIT`, and before a read on the writer.
pub(super) fn flush(c: &mut Conn, batch: &mut Batch) -> Res<()> {
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

/// Takes [`APPEND_LOCK`] for the rest of the batch, once. Appends take it,
/// and so do the requests that change a stored message
/// ([`Facts::changes_a_message`](crate::store::Facts::changes_a_message)),
/// before their savepoint (a lock taken inside one is released by its
/// rollback), so that every lock on `messages` rows is taken by the one
/// batch holding it. Were they not, an edit holding its message's row lock
/// and waiting for the append lock (a later message of its batch) and a
/// reply holding the append lock and checking that row could deadlock. It
/// also orders a reply's check of its parent after any delete of it
/// another node committed, or before one it will commit.
pub(super) fn append_lock(c: &mut Conn, batch: &mut Batch) -> Res<()> {
    if !batch.append_locked {
        c.client.execute(&c.st.append_lock, &[&APPEND_LOCK])?;
        batch.append_locked = true;
    }
    Ok(())
}

/// Appends one message (a run shorter than [`BULK_MIN`]), with its reply.
pub(super) fn append_one(
    c: &mut Conn,
    batch: &mut Batch,
    msg: &StoredMessage,
    client_id: Option<&str>,
    mentions: &[UserId],
) -> Res<Reply> {
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
            return Ok(Reply::MessageRefused {
                key: msg.id,
                why: PostRefusal::ReplyTo,
            });
        }
    }
    // Its files: the sender's own uploads, checked under the append lock
    // like the parent (the sweep of their rows takes it too).
    let Some(attachments) = file_rows::attachable_rows(c, msg)? else {
        return Ok(Reply::MessageRefused {
            key: msg.id,
            why: PostRefusal::Attachment,
        });
    };
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
            &client_id,
            &msg.reply_to.map(big),
            &search_text(&msg.content),
            &encode_attachments(&attachments),
        ],
    )?;
    Ok(match inserted {
        Some(row) => {
            head.newest = seq;
            let id: i64 = row.get(0);
            file_rows::attach(c, id, &attachments)?;
            if let Some(room) = &msg.room
                && !mentions.is_empty()
            {
                let users: Vec<i64> = mentions.iter().map(|&u| i64::from(u)).collect();
                let rooms = vec![room.as_str(); users.len()];
                let ids = vec![id; users.len()];
                c.client
                    .execute(&c.st.insert_mentions, &[&users, &rooms, &ids])?;
            }
            Reply::MessageStored {
                key: msg.id,
                id: id as MsgId,
                seq: seq as Seq,
                attachments,
            }
        }
        // A retry of a `client_id` already stored (perhaps by
        // another node): it takes no seq, and is answered with the
        // first message.
        None => {
            let row = c.client.query_one(&c.st.existing, &[&from, &client_id])?;
            Reply::MessageExists {
                key: msg.id,
                existing: row.get::<_, i64>(0) as MsgId,
                timestamp_ms: row.get(1),
            }
        }
    })
}

/// A `PutMessage` of a run that [`append_run`] appends.
pub(super) struct Put<'a> {
    req: &'a Request,
    msg: &'a StoredMessage,
    client_id: Option<&'a str>,
    mentions: &'a [UserId],
}

impl<'a> Put<'a> {
    /// A message the bulk path takes: one without attachments (those are
    /// rare, and their checks and links go one message at a time).
    pub(super) fn of(req: &'a Request) -> Option<Put<'a>> {
        match req {
            Request::PutMessage {
                msg,
                client_id,
                mentions,
            } if msg.attachments.is_empty() => Some(Put {
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
pub(super) enum Planned<'a> {
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
pub(super) struct NewRows<'a> {
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
pub(super) fn append_run(
    c: &mut Conn,
    batch: &mut Batch,
    run: &[Put<'_>],
    out: &mut Vec<Reply>,
) -> Res<()> {
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
    if keys().next().is_some() {
        append_lock(c, batch)?;
    }
    // The targets of the live parents the run's replies name, in one
    // statement; race-free under the append lock as the client ids are
    // (every delete takes it too: see `append_lock`).
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
            Planned::Refused => Reply::MessageRefused {
                key,
                why: PostRefusal::ReplyTo,
            },
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
                attachments: Vec::new(),
            },
        });
    }
    Ok(())
}
