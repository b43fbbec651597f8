//! The backend's own tests, on a database of their own each (`testdb.rs`):
//! what `load` reads back, failures that spare their batch, sequencing and
//! catch-up, reads that match SQLite's, the reader's snapshot, startup of
//! two nodes at once, reconnection. Helpers the other test files share are
//! here too.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::schema::MIGRATIONS;
use super::testdb::TestDb;
use super::*;
use crate::config::MAX_SEARCH_WORDS;
use crate::store::fixtures::{TICKET, msg, user};
use crate::store::sqlite::Sqlite;
use crate::store::{
    HistoryQuery, PrivateRoomRow, SearchQuery, Seq, StoredMessage, UnreadCount, apply_batch,
    search_words,
};

pub(super) fn put(id: MsgId, room: &str, client_id: Option<&str>) -> Request {
    Request::PutMessage {
        msg: msg(id, Some(room), 1, None),
        client_id: client_id.map(String::from),
        mentions: Vec::new(),
    }
}

/// Room `name`'s row, as the hub stores it before its first message
/// (history reads only rooms with a row: `conformance.rs`, "reads").
pub(super) fn public_room(name: &str) -> Request {
    Request::PutPublicRoom {
        name: name.into(),
        creator: 1,
    }
}

pub(super) fn dm(id: MsgId, from: UserId, to: UserId) -> Request {
    Request::PutMessage {
        msg: msg(id, None, from, Some(to)),
        client_id: None,
        mentions: Vec::new(),
    }
}

/// Runs `reqs` as one batch that must commit, the way the writer does
/// (`execute_batch`: runs of messages in bulk); the replies.
pub(super) fn run<B: Backend>(db: &mut B, reqs: &[Request]) -> Vec<Reply> {
    db.begin().unwrap();
    let mut out = Vec::new();
    db.execute_batch(reqs, &mut out).unwrap();
    db.commit().unwrap();
    out
}

pub(super) fn count(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

pub(super) fn private_room(name: &str, members: Vec<UserId>) -> Request {
    Request::PutPrivateRoom {
        ticket: TICKET,
        row: PrivateRoomRow {
            name: name.into(),
            owner: 1,
            members,
        },
    }
}

pub(super) fn history_req(
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
            reader: 1,
            before,
            after,
            limit,
            offset,
        },
    }
}

pub(super) fn messages(reply: Reply) -> Vec<StoredMessage> {
    match reply {
        Reply::History { messages, .. } => messages,
        other => panic!("expected history, got {other:?}"),
    }
}

pub(super) fn read_one(db: &mut Postgres, req: &Request) -> Reply {
    let mut reader = db.reader().unwrap().unwrap();
    reader.begin().unwrap();
    let reply = reader.read(req).unwrap();
    reader.end();
    reply
}
/// A message with everything issue 13 adds to one.
pub(super) fn put13(
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

pub(super) fn edit(id: MsgId, user: UserId, content: &str) -> Request {
    Request::EditMessage {
        ticket: TICKET,
        id,
        user,
        content: content.into(),
        at_ms: 5000 + id as i64,
    }
}

pub(super) fn delete(id: MsgId, user: UserId) -> Request {
    Request::DeleteMessage {
        ticket: TICKET,
        id,
        user,
        moderator: false,
        at_ms: 6000 + id as i64,
    }
}

pub(super) fn react(id: MsgId, user: UserId, emoji: &str) -> Request {
    Request::React {
        ticket: TICKET,
        id,
        user,
        emoji: emoji.into(),
    }
}

pub(super) fn search_req(user: UserId, text: &str, scope: Option<Target>, limit: usize) -> Request {
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

/// The per-request path, to compare the bulk path with: `Postgres`
/// with the default `execute_batch` (`execute` once per request).
pub(super) struct PerRequest(pub(super) Postgres);

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

/// Every table a write can touch, as text, message ids replaced by
/// their rank (ids may differ between the paths: the per-request path
/// draws one for a retry and drops it; their order may not).
pub(super) fn dump(c: &mut Client) -> (Vec<String>, HashMap<i64, usize>) {
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
pub(super) fn normal(reply: &Reply, rank: &HashMap<i64, usize>) -> String {
    let r = |id: &MsgId| rank[&(*id as i64)];
    match reply {
        Reply::MessageStored { key, id, seq, .. } => format!("stored {key} #{} seq {seq}", r(id)),
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

/// Edits, deletes, reactions, replies, mentions and search follow the
/// rules every backend shares (`store::conformance`, also run on
/// SQLite).
#[test]
fn conforms_on_changes_mentions_and_search() {
    let Some(t) = TestDb::new() else { return };
    crate::store::conformance::check_all(&mut t.open());
}

/// Accounts follow the rules every backend shares
/// (`store::accounts_conformance`, also run on SQLite).
#[test]
fn conforms_on_accounts() {
    let Some(t) = TestDb::new() else { return };
    crate::store::accounts_conformance::check_all(&mut t.open());
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
            Request::put_user(user(41, "alice")),
            Request::put_user(user(42, "bob")),
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
                Reply::UserStored { key: 41, id: 1, .. },
                Reply::UserStored { key: 42, id: 2, .. },
                Reply::Done { .. },
                Reply::MessageStored {
                    key: 5,
                    id: 1,
                    seq: 1,
                    ..
                },
                Reply::MessageStored {
                    key: 6,
                    id: 2,
                    seq: 1,
                    ..
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
            Request::put_user(user(7, "alice")),
            Request::put_user(user(8, "Alice")),
            Request::put_user(taken_email),
            put(1, "r", None),
            Request::put_user(user(10, "dave")),
        ],
    );
    assert!(
        matches!(
            out[..],
            [
                Reply::UserStored { key: 7, id: 1, .. },
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
    db.execute(&Request::put_user(user(1, "alice"))).unwrap();
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
                    seq: 1,
                    ..
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
        Request::put_user(user(1, "alice")),
        Request::put_user(user(2, "bob")),
        Request::put_user(user(3, "carol")),
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
        audit: None,
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
        audit: None,
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
        &[
            Request::put_user(user(1, "alice")),
            public_room("r"),
            put(1, "r", None),
        ],
    );
    let mut reader = db.reader().unwrap().unwrap();
    let room = || history_req(Target::Room("r".into()), None, None, 50, 0);
    reader.begin().unwrap();
    run(
        &mut db,
        &[Request::put_user(user(2, "bob")), put(2, "r", None)],
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
    run(&mut db, &[public_room("r")]);
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
