//! The reads, each answered from whatever transaction its connection is
//! in: the reader's snapshot, or the writer's open batch when the backend
//! has no reader (the batch's seqs are flushed first, so it sees them).
//! Also the [`snapshot`] `load` returns, which a cluster's `Resync` reads
//! again.
//!
//! Search ([`search`]): `messages.tsv` holds every word of each message,
//! cut by hubbub's rule (`schema::search_text`, the one queries are cut
//! by), indexed with GIN. PostgreSQL chooses between that index and a
//! backward scan of the primary key that stops at the `limit`-th readable
//! match; which is faster depends on how many rows the words match, so the
//! search is planned for its own words each time. Its weak case is a word
//! frequent only where the user may not read: no index knows who may read
//! what. The plans, the weak case, and why neither GiST nor a generated
//! column was chosen, with their figures: BENCHMARKS.md, "Search".

use postgres::{Client, Row};

use super::accounts::{self, USER_COLUMNS, user_row};
use super::conn::{
    Conn, Fail, MAY_READ, MESSAGE_COLUMNS, Res, big, check_text, opt_user_id, user_id,
};
use super::schema::{parse_key, search_query, target_key};
use crate::config::CLIENT_ID_WINDOW;
use crate::store::{
    HistoryQuery, MsgId, PrivateRoomRow, Reply, Request, SearchQuery, Seq, Snapshot, StoredMessage,
    Target, UnreadCount, UserId, decode_attachments, decode_reactions,
};

pub(super) fn row_to_message(r: &Row) -> Res<StoredMessage> {
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
        attachments: decode_attachments(r.get::<_, Option<&str>>(11)),
    })
}

/// `History`: see [`HistoryQuery`].
pub(super) fn history(c: &mut Conn, q: &HistoryQuery) -> Res<Vec<StoredMessage>> {
    let key = target_key(&q.target);
    check_text(&[Some(&key)])?;
    let before = q.before.map_or(i64::MAX, big);
    let after = q.after.map_or(0, big);
    let (limit, offset) = (big(q.limit as u64), big(q.offset as u64));
    let reader = i64::from(q.reader);
    let rows = c.client.query(
        &c.st.history,
        &[&key, &reader, &before, &after, &limit, &offset],
    )?;
    let mut out = rows.iter().map(row_to_message).collect::<Res<Vec<_>>>()?;
    out.reverse();
    Ok(out)
}

/// `Catchup`: the messages of `target` after `after`, by seq.
pub(super) fn catchup(
    c: &mut Conn,
    target: &Target,
    after: Seq,
    limit: usize,
) -> Res<Vec<StoredMessage>> {
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
pub(super) fn unread(c: &mut Conn, user: UserId) -> Res<Vec<UnreadCount>> {
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
pub(super) fn snapshot(client: &mut Client) -> Res<Snapshot> {
    let mut snap = Snapshot::default();
    for r in client.query(
        &format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"),
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
    // the messages; a deleted room keeps its target but no messages.
    for r in client.query(
        "SELECT substr(key, 3) FROM targets t WHERE key LIKE 'r:%' AND seq > 0
           AND substr(key, 3) NOT IN (SELECT name FROM rooms)
           AND EXISTS (SELECT 1 FROM messages m WHERE m.target = t.key)
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
    (snap.accounts, snap.archived_rooms) = accounts::snapshot(client)?;
    Ok(snap)
}

/// `Search`: see [`SearchQuery`]: `tsv` holds every word of the
/// message ([`search_text`](super::schema::search_text)), the query requires each of the search's
/// words ([`search_query`]; nothing the user typed is tsquery syntax).
///
/// Plans (measured with `EXPLAIN ANALYZE` on a million messages; see the
/// module doc): for a rare word the GIN index on `tsv` finds its few rows
/// and they are sorted; for a common one a backward scan of the primary key
/// stops at the `limit`-th readable match. Which one depends on how many
/// rows the words match, so the statement is planned for its own
/// parameters every time: it is not one of the prepared
/// [`Statements`](super::conn::Statements),
/// whose plan PostgreSQL may turn generic after five executions (a
/// generic plan, not knowing the words, takes the GIN index for every
/// word: 1.8 s instead of 1 ms for the commonest). The cost is one more
/// round trip per search.
pub(super) fn search(c: &mut Conn, q: &SearchQuery) -> Res<Vec<StoredMessage>> {
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

/// Room `name`'s row and members, when it is a stored private room.
pub(super) fn private_room(c: &mut Conn, name: &str) -> Res<Option<PrivateRoomRow>> {
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
pub(super) fn read(c: &mut Conn, req: &Request) -> Res<Reply> {
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
        Request::FindUser { ticket, who } => Ok(Reply::UserFound {
            ticket: *ticket,
            row: accounts::find_user(&mut c.client, who)?,
        }),
        Request::AccountRead { ticket, read } => Ok(Reply::AccountRead {
            ticket: *ticket,
            answer: accounts::read(&mut c.client, read)?,
        }),
        Request::FileUsage { .. } | Request::FindFile { .. } | Request::BlobsUsed { .. } => {
            super::file_rows::read(c, req)
        }
        Request::PushProfile { ticket, user } => Ok(Reply::PushProfile {
            ticket: *ticket,
            profile: super::push::profile(c, *user)?,
        }),
        _ => Err(Fail::Data("not a read".into())),
    }
}
