//! Edits, deletes, reactions, replies, mentions and search (schema 2):
//! SQLite's rules, request for request, on both write paths and across two
//! nodes; and the migration from schema 1.

use std::time::Duration;

use super::schema::{MAX_LEXEME_BYTES, MIGRATIONS, search_query};
use super::testdb::TestDb;
use super::tests::{
    PerRequest, count, delete, dump, edit, history_req, messages, normal, private_room, put13,
    react, read_one, run, search_req,
};
use super::*;
use crate::config::{MAX_REACTION_KINDS, MAX_REACTIONS, MAX_SEARCH_WORDS};
use crate::store::fixtures::{TICKET, user};
use crate::store::sqlite::Sqlite;
use crate::store::{Reaction, StoredMessage, UnreadCount, search_words};

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
            Request::put_user(user(1, "alice")),
            Request::put_user(user(2, "bob")),
            Request::put_user(user(3, "carol")),
            Request::put_user(user(4, "dave")),
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
            Reply::MessageRefused { key, .. } => format!("refused {key}"),
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
        [Reply::MessageRefused { key: 31, .. }]
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
            audit: None,
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
        Request::put_user(user(1, "alice")),
        Request::put_user(user(2, "bob")),
        Request::put_user(user(3, "carol")),
        Request::put_user(user(4, "dave")),
        Request::put_user(user(5, "erin")),
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
        audit: None,
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
        super::schema::MIGRATIONS.len() as i64,
        "every later migration ran"
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
                Reply::MessageRefused { key: 7, .. },
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
