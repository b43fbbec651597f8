//! What every backend must do with edits, deletes, reactions, replies,
//! mentions, search, and archived and deleted rooms: one suite, run against SQLite and PostgreSQL alike
//! (each backend's tests call [`check_all`] on a fresh database), so the
//! two stores cannot drift apart on the rules the hub relies on.
//!
//! Everything goes through [`Backend::execute`], reads included (a backend
//! answers them on the writer when it has no reader), one request per
//! transaction.

use super::fixtures::{TICKET, msg, user};
use super::{
    AccountAnswer, AccountNews, AccountRead, AccountWrite, Backend, ChangeKind, HistoryQuery,
    MsgId, PrivateRoomRow, PushProfile, PushSubscription, Reaction, Refusal, Reply, Request,
    RoomNews, SearchQuery, StoredMessage, Target, UnreadCount, UserId, UserRow, Who,
};
use crate::config::MAX_PUSH_SUBSCRIPTIONS;

const ALICE: UserId = 1;
const BOB: UserId = 2;
const CAROL: UserId = 3;

fn one(db: &mut dyn Backend, req: Request) -> Option<Reply> {
    db.begin().expect("begin");
    let reply = db.execute(&req).expect("execute");
    db.commit().expect("commit");
    reply
}

fn store(db: &mut dyn Backend, m: StoredMessage, mentions: Vec<UserId>) -> Reply {
    one(
        db,
        Request::PutMessage {
            msg: m,
            client_id: None,
            mentions,
        },
    )
    .expect("a message reply")
}

/// Stores a message and returns its id as stored (PostgreSQL numbers
/// messages itself; `m.id` is only the key of the reply).
fn put(db: &mut dyn Backend, m: StoredMessage, mentions: Vec<UserId>) -> MsgId {
    match store(db, m, mentions) {
        Reply::MessageStored { id, .. } => id,
        other => panic!("expected MessageStored, got {other:?}"),
    }
}

fn said(id: MsgId, room: &str, from: UserId, content: &str) -> StoredMessage {
    StoredMessage {
        content: content.into(),
        ..msg(id, Some(room), from, None)
    }
}

fn change(db: &mut dyn Backend, req: Request) -> Result<ChangeKind, Refusal> {
    match one(db, req) {
        Some(Reply::Changed { outcome, .. }) => outcome.map(|c| c.what),
        other => panic!("expected Changed, got {other:?}"),
    }
}

fn edit(
    db: &mut dyn Backend,
    id: MsgId,
    user: UserId,
    content: &str,
) -> Result<ChangeKind, Refusal> {
    change(
        db,
        Request::EditMessage {
            ticket: TICKET,
            id,
            user,
            content: content.into(),
            at_ms: 5_000,
        },
    )
}

fn delete(db: &mut dyn Backend, id: MsgId, user: UserId) -> Result<ChangeKind, Refusal> {
    delete_as(db, id, user, false)
}

fn delete_as(
    db: &mut dyn Backend,
    id: MsgId,
    user: UserId,
    moderator: bool,
) -> Result<ChangeKind, Refusal> {
    change(
        db,
        Request::DeleteMessage {
            ticket: TICKET,
            id,
            user,
            moderator,
            at_ms: 6_000,
        },
    )
}

fn react(db: &mut dyn Backend, id: MsgId, user: UserId, emoji: &str) -> Result<bool, Refusal> {
    change(
        db,
        Request::React {
            ticket: TICKET,
            id,
            user,
            emoji: emoji.into(),
        },
    )
    .map(|k| match k {
        ChangeKind::Reacted { on, .. } => on,
        other => panic!("expected Reacted, got {other:?}"),
    })
}

/// The history ALICE reads (she may read every room `setup` makes).
fn history(db: &mut dyn Backend, target: Target) -> Vec<StoredMessage> {
    read_as(db, ALICE, target)
}

fn read_as(db: &mut dyn Backend, reader: UserId, target: Target) -> Vec<StoredMessage> {
    let query = HistoryQuery {
        target,
        reader,
        before: None,
        after: None,
        limit: 100,
        offset: 0,
    };
    match one(
        db,
        Request::History {
            ticket: TICKET,
            query,
        },
    ) {
        Some(Reply::History { messages, .. }) => messages,
        other => panic!("expected History, got {other:?}"),
    }
}

fn room(db: &mut dyn Backend, name: &str) -> Vec<StoredMessage> {
    history(db, Target::Room(name.into()))
}

fn search(db: &mut dyn Backend, user: UserId, q: &str, scope: Option<Target>) -> Vec<MsgId> {
    let query = SearchQuery {
        user,
        words: super::search_words(q, 8),
        scope,
        limit: 20,
    };
    match one(
        db,
        Request::Search {
            ticket: TICKET,
            query,
        },
    ) {
        Some(Reply::History { messages, .. }) => messages.iter().map(|m| m.id).collect(),
        other => panic!("expected History, got {other:?}"),
    }
}

fn unread(db: &mut dyn Backend, user: UserId) -> Vec<UnreadCount> {
    match one(
        db,
        Request::Unread {
            ticket: TICKET,
            user,
        },
    ) {
        Some(Reply::Unread { counts, .. }) => counts,
        other => panic!("expected Unread, got {other:?}"),
    }
}

/// Three users, public `general`, private `ops` (alice owns it, bob is in
/// it), and no messages yet.
fn setup(db: &mut dyn Backend) {
    for (id, name) in [(ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")] {
        one(db, Request::put_user(user(id, name)));
    }
    one(
        db,
        Request::PutPublicRoom {
            name: "general".into(),
            creator: ALICE,
        },
    );
    one(
        db,
        Request::PutPrivateRoom {
            ticket: TICKET,
            row: PrivateRoomRow {
                name: "ops".into(),
                owner: ALICE,
                members: vec![ALICE, BOB],
            },
        },
    );
}

/// Runs every check below on `db`, a fresh database with no users.
pub fn check_all(db: &mut dyn Backend) {
    setup(db);
    edits(db);
    let deleted = deletes(db);
    moderated_deletes(db);
    reactions(db);
    replies(db, deleted);
    mentions(db);
    searches(db);
    reads(db);
    usernames(db);
    pushes(db);
    archived_and_deleted_rooms(db);
}

/// A read of history is checked against the reader in the query itself,
/// whatever the asking node knows: a private room's messages go to its
/// members (and owner) only, a conversation's to its two users only, and
/// a room with messages but no row (its write was lost) to nobody; a
/// conversation's read marker moves to its own messages only. A
/// member removed from a private room neither reads nor edits nor deletes
/// there any more, his own messages included.
fn reads(db: &mut dyn Backend) {
    let members = put(db, said(900, "ops", BOB, "members only"), vec![]);
    let mut dm = said(901, "ops", ALICE, "just us");
    dm.room = None;
    dm.to = Some(BOB);
    let ours = put(db, dm, vec![]);
    let lost = put(db, said(902, "lost-row", ALICE, "no room row"), vec![]);
    let ops = || Target::Room("ops".into());
    let ids = |v: Vec<StoredMessage>| v.iter().map(|m| m.id).collect::<Vec<_>>();
    assert!(ids(read_as(db, ALICE, ops())).contains(&members));
    assert!(ids(read_as(db, BOB, ops())).contains(&members));
    assert_eq!(ids(read_as(db, CAROL, ops())), Vec::<MsgId>::new());
    let direct = |a, b| Target::Direct(a, b);
    assert!(ids(read_as(db, BOB, direct(ALICE, BOB))).contains(&ours));
    assert!(ids(read_as(db, ALICE, direct(BOB, ALICE))).contains(&ours));
    assert_eq!(
        ids(read_as(db, CAROL, direct(ALICE, BOB))),
        Vec::<MsgId>::new()
    );
    let lost_room = Target::Room("lost-row".into());
    assert!(!ids(read_as(db, ALICE, lost_room)).contains(&lost));
    // A conversation's read marker moves to a message of it only (its
    // receipt then names nothing from elsewhere).
    let mark = |db: &mut dyn Backend, user, peer, id| {
        let req = Request::MarkConversationRead {
            ticket: TICKET,
            user,
            peer,
            id,
        };
        match one(db, req) {
            Some(Reply::Done { .. }) => true,
            Some(Reply::Failed { .. }) => false,
            other => panic!("expected Done or Failed, got {other:?}"),
        }
    };
    assert!(mark(db, BOB, ALICE, ours));
    assert!(mark(db, ALICE, BOB, ours), "either side of it");
    assert!(!mark(db, BOB, ALICE, members), "a room's message");
    assert!(!mark(db, CAROL, ALICE, ours), "another conversation's");
    assert!(!mark(db, BOB, ALICE, ours + 1000), "no message");
    // A member removed reads nothing more of the room.
    one(
        db,
        Request::RemoveMember {
            ticket: TICKET,
            room: "ops".into(),
            user: BOB,
            audit: None,
        },
    );
    assert_eq!(ids(read_as(db, BOB, ops())), Vec::<MsgId>::new());
    assert!(ids(read_as(db, CAROL, Target::Room("general".into()))).len() > 1);
    // Nor does he change his own message there any more; the owner still
    // deletes it.
    assert_eq!(edit(db, members, BOB, "edited"), Err(Refusal::Forbidden));
    assert_eq!(delete(db, members, BOB), Err(Refusal::Forbidden));
    assert_eq!(delete(db, members, ALICE), Ok(ChangeKind::Deleted));
}

/// One username rule in both stores (`users.rs`): names clash with ASCII
/// case folded, and only so (the Kelvin sign is not `K`), and `FindUser`
/// finds a name under the same rule, or a user by id.
fn usernames(db: &mut dyn Backend) {
    let stored = |db: &mut dyn Backend, id, name: &str| {
        let row = UserRow {
            email: format!("{id}@example.org"),
            ..user(id, name)
        };
        // A clash is a `UserFailed` reply or an error, as the backend
        // reports it (SQLite's loop checks names first; PostgreSQL's nodes
        // race); either way nothing is stored.
        db.begin().expect("begin");
        let reply = db.execute(&Request::put_user(row));
        db.commit().expect("commit");
        match reply {
            Ok(Some(Reply::UserStored { id, .. })) => Some(id),
            Ok(Some(Reply::UserFailed { .. })) | Err(_) => None,
            other => panic!("expected a user reply, got {other:?}"),
        }
    };
    let kate = stored(db, 70, "kate_x").expect("a new name is stored");
    assert_eq!(stored(db, 71, "KATE_X"), None, "the same name in capitals");
    let kelvin = "\u{212A}ate_x";
    assert!(
        stored(db, 72, kelvin).is_some(),
        "another name to the store"
    );
    let found = |db: &mut dyn Backend, who| match one(
        db,
        Request::FindUser {
            ticket: TICKET,
            who,
        },
    ) {
        Some(Reply::UserFound { row, .. }) => row.map(|r| (r.id, r.username)),
        other => panic!("expected UserFound, got {other:?}"),
    };
    assert_eq!(
        found(db, Who::Name("Kate_X".into())),
        Some((kate, "kate_x".into()))
    );
    assert_eq!(found(db, Who::Id(kate)), Some((kate, "kate_x".into())));
    assert_eq!(
        found(db, Who::Name(kelvin.into())).map(|u| u.1),
        Some(kelvin.to_string()),
        "only itself"
    );
    assert_eq!(found(db, Who::Id(9_999)), None);
}

/// Only the author edits; a missing message is refused; history shows the
/// new content with `edited_ms`.
fn edits(db: &mut dyn Backend) {
    let m = put(db, said(10, "general", ALICE, "helo"), vec![]);
    assert_eq!(edit(db, m, BOB, "x"), Err(Refusal::Forbidden));
    assert_eq!(edit(db, m + 1000, ALICE, "x"), Err(Refusal::NoSuchMessage));
    assert_eq!(
        edit(db, m, ALICE, "hello"),
        Ok(ChangeKind::Edited {
            content: "hello".into(),
            at_ms: 5_000
        })
    );
    let h = room(db, "general");
    assert_eq!(
        (h[0].content.as_str(), h[0].edited_ms),
        ("hello", Some(5_000))
    );
}

/// The author or the private room's owner deletes; the message leaves
/// history and can be neither edited nor deleted again.
fn deletes(db: &mut dyn Backend) -> MsgId {
    let m20 = put(db, said(20, "ops", BOB, "bob's"), vec![]);
    let m21 = put(db, said(21, "ops", BOB, "bob's too"), vec![]);
    let m22 = put(db, said(22, "general", BOB, "public"), vec![]);
    assert_eq!(delete(db, m20, CAROL), Err(Refusal::Forbidden));
    assert_eq!(
        delete(db, m22, ALICE),
        Err(Refusal::Forbidden),
        "general has no owner"
    );
    assert_eq!(delete(db, m20, ALICE), Ok(ChangeKind::Deleted), "the owner");
    assert_eq!(delete(db, m21, BOB), Ok(ChangeKind::Deleted), "the author");
    assert_eq!(delete(db, m21, BOB), Err(Refusal::NoSuchMessage));
    assert_eq!(edit(db, m21, BOB, "back"), Err(Refusal::NoSuchMessage));
    assert!(room(db, "ops").is_empty());
    m20
}

/// A moderator deletes anyone's message in a room, public or private
/// (not a conversation's), and each such delete is in the audit log; their
/// own delete is not moderation and is not logged.
fn moderated_deletes(db: &mut dyn Backend) {
    let public = put(db, said(23, "general", BOB, "spam"), vec![]);
    let private = put(db, said(24, "ops", BOB, "spam too"), vec![]);
    let dm = put(db, msg(25, None, BOB, Some(ALICE)), vec![]);
    let own = put(db, said(26, "general", CAROL, "mine"), vec![]);
    assert_eq!(delete_as(db, dm, CAROL, true), Err(Refusal::Forbidden));
    assert_eq!(delete_as(db, public, CAROL, true), Ok(ChangeKind::Deleted));
    assert_eq!(delete_as(db, private, CAROL, true), Ok(ChangeKind::Deleted));
    assert_eq!(delete_as(db, own, CAROL, true), Ok(ChangeKind::Deleted));
    let read = AccountRead::Audit {
        before: None,
        limit: 10,
    };
    let entries = match one(
        db,
        Request::AccountRead {
            ticket: TICKET,
            read,
        },
    ) {
        Some(Reply::AccountRead {
            answer: AccountAnswer::Audit(rows),
            ..
        }) => rows,
        other => panic!("expected the audit log, got {other:?}"),
    };
    let seen: Vec<(&str, Option<UserId>, &str)> = entries
        .iter()
        .map(|e| (e.action.as_str(), e.actor, e.target.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (
                "delete_message",
                Some(CAROL),
                &*format!("message {private} in ops")
            ),
            (
                "delete_message",
                Some(CAROL),
                &*format!("message {public} in general")
            ),
        ],
        "newest first, the moderator's own message not among them"
    );
}

/// Toggling on and off, in first-came order, by readers only, within the
/// bounds.
fn reactions(db: &mut dyn Backend) {
    let m = put(db, said(30, "ops", ALICE, "vote"), vec![]);
    assert_eq!(
        react(db, m, CAROL, "👍"),
        Err(Refusal::Forbidden),
        "not a member"
    );
    assert_eq!(react(db, m, BOB, "👍"), Ok(true));
    assert_eq!(react(db, m, ALICE, ":tada:"), Ok(true));
    assert_eq!(react(db, m, ALICE, "👍"), Ok(true));
    assert_eq!(
        room(db, "ops")[0].reactions,
        [
            Reaction {
                emoji: "👍".into(),
                users: vec![BOB, ALICE]
            },
            Reaction {
                emoji: ":tada:".into(),
                users: vec![ALICE]
            }
        ]
    );
    assert_eq!(react(db, m, BOB, "👍"), Ok(false));
    assert_eq!(react(db, m, ALICE, ":tada:"), Ok(false));
    assert_eq!(
        room(db, "ops")[0].reactions,
        [Reaction {
            emoji: "👍".into(),
            users: vec![ALICE]
        }]
    );
    for i in 1..crate::config::MAX_REACTION_KINDS {
        assert_eq!(react(db, m, ALICE, &format!(":e{i}:")), Ok(true));
    }
    assert_eq!(
        react(db, m, ALICE, ":one-more:"),
        Err(Refusal::TooManyReactions)
    );
    assert_eq!(
        react(db, m, ALICE, ":e1:"),
        Ok(false),
        "taking back is allowed"
    );
    // A conversation: its two users react, nobody else.
    let dm = put(db, msg(31, None, ALICE, Some(BOB)), vec![]);
    assert_eq!(react(db, dm, CAROL, "👀"), Err(Refusal::Forbidden));
    assert_eq!(react(db, dm, BOB, "👀"), Ok(true));
    assert_eq!(react(db, dm + 1000, BOB, "👀"), Err(Refusal::NoSuchMessage));
    // A deleted message has no reactions and takes none.
    assert_eq!(delete(db, dm, ALICE), Ok(ChangeKind::Deleted));
    assert_eq!(react(db, dm, BOB, "👀"), Err(Refusal::NoSuchMessage));
}

/// A reply names a live, earlier message of the same room or conversation.
fn replies(db: &mut dyn Backend, deleted: MsgId) {
    let q = put(db, said(40, "general", ALICE, "question"), vec![]);
    let reply = |id, parent, room: Option<&str>, to| StoredMessage {
        reply_to: Some(parent),
        content: format!("reply {id}"),
        ..msg(id, room, BOB, to)
    };
    let r = put(db, reply(41, q, Some("general"), None), vec![]);
    for (id, parent, room, to) in [
        (42, q, Some("ops"), None),
        (43, q, None, Some(ALICE)),
        (44, q + 9_999, Some("general"), None),
        (45, deleted, Some("ops"), None),
    ] {
        assert!(
            matches!(
                store(db, reply(id, parent, room, to), vec![]),
                Reply::MessageRefused { key, .. } if key == id
            ),
            "reply {id} to {parent}"
        );
    }
    let h = room(db, "general");
    let found = h.iter().find(|m| m.id == r).expect("the reply");
    assert_eq!(found.reply_to, Some(q));
    assert!(!h.iter().any(|m| m.content == "reply 44"));
}

/// Room mentions count in `unread` (with the room listed even for a user
/// who never read there), stop counting once read past, and go with a
/// deleted message or a removed member.
fn mentions(db: &mut dyn Backend) {
    let first = put(db, said(50, "general", ALICE, "@carol hi"), vec![CAROL]);
    let again = put(db, said(51, "general", ALICE, "@carol again"), vec![CAROL]);
    let counts = unread(db, CAROL);
    let general = counts
        .iter()
        .find(|c| matches!(c, UnreadCount::Room(r, ..) if r == "general"))
        .expect("general is listed for carol");
    let UnreadCount::Room(_, n, m) = general else {
        unreachable!()
    };
    assert_eq!(*m, 2);
    assert!(*n >= 2);
    assert_eq!(delete(db, again, ALICE), Ok(ChangeKind::Deleted));
    one(
        db,
        Request::MarkRead {
            user: CAROL,
            target: Target::Room("general".into()),
            id: first,
        },
    );
    assert!(
        !unread(db, CAROL)
            .iter()
            .any(|c| matches!(c, UnreadCount::Room(r, _, m) if r == "general" && *m > 0)),
        "{:?}",
        unread(db, CAROL)
    );
    put(db, said(52, "ops", ALICE, "@bob look"), vec![BOB]);
    assert!(
        unread(db, BOB)
            .iter()
            .any(|c| matches!(c, UnreadCount::Room(r, _, 1) if r == "ops")),
        "{:?}",
        unread(db, BOB)
    );
    one(
        db,
        Request::RemoveMember {
            ticket: TICKET,
            room: "ops".into(),
            user: BOB,
            audit: None,
        },
    );
    assert!(
        !unread(db, BOB)
            .iter()
            .any(|c| matches!(c, UnreadCount::Room(r, ..) if r == "ops"))
    );
    one(
        db,
        Request::AddMember {
            ticket: TICKET,
            room: "ops".into(),
            user: BOB,
        },
    );
    assert!(db.load().expect("load").unread_sources.contains(&CAROL));
}

/// Whole words, any case and order, newest first, only what the user may
/// read, within a scope; edited words and deleted messages as they are now.
fn searches(db: &mut dyn Backend) {
    let m60 = put(db, said(60, "general", ALICE, "Deploy the RELEASE"), vec![]);
    let m61 = put(db, said(61, "ops", ALICE, "release the kraken"), vec![]);
    let m62 = put(
        db,
        StoredMessage {
            content: "secret release".into(),
            ..msg(62, None, ALICE, Some(BOB))
        },
        vec![],
    );
    put(db, said(63, "general", BOB, "released, deployed"), vec![]);
    assert_eq!(search(db, ALICE, "release", None), [m62, m61, m60]);
    assert_eq!(search(db, BOB, "RELEASE", None), [m62, m61, m60]);
    assert_eq!(
        search(db, CAROL, "release", None),
        [m60],
        "no private room, no conversation"
    );
    assert_eq!(search(db, ALICE, "release deploy", None), [m60]);
    assert_eq!(search(db, ALICE, "deploy release", None), [m60]);
    assert!(
        search(db, ALICE, "releas", None).is_empty(),
        "whole words only"
    );
    assert_eq!(
        search(db, BOB, "release", Some(Target::Room("ops".into()))),
        [m61]
    );
    assert_eq!(
        search(db, BOB, "release", Some(Target::Direct(BOB, ALICE))),
        [m62]
    );
    assert!(search(db, CAROL, "release", Some(Target::Direct(CAROL, ALICE))).is_empty());
    assert_eq!(
        edit(db, m60, ALICE, "ship it"),
        Ok(ChangeKind::Edited {
            content: "ship it".into(),
            at_ms: 5_000
        })
    );
    assert_eq!(search(db, ALICE, "release", None), [m62, m61]);
    assert_eq!(search(db, ALICE, "ship", None), [m60]);
    assert_eq!(delete(db, m61, ALICE), Ok(ChangeKind::Deleted));
    assert_eq!(search(db, ALICE, "release", None), [m62]);
    assert!(search(db, ALICE, "kraken", None).is_empty());
    // A message whose room has no row (its write was lost) is nobody's.
    put(db, said(64, "lost", ALICE, "release orphan"), vec![]);
    assert_eq!(search(db, ALICE, "orphan", None), Vec::<MsgId>::new());
}

fn profile(db: &mut dyn Backend, user: UserId) -> PushProfile {
    match one(
        db,
        Request::PushProfile {
            ticket: TICKET,
            user,
        },
    ) {
        Some(Reply::PushProfile { profile, .. }) => profile,
        other => panic!("expected PushProfile, got {other:?}"),
    }
}

fn endpoints(db: &mut dyn Backend, user: UserId) -> Vec<String> {
    profile(db, user)
        .subscriptions
        .into_iter()
        .map(|s| s.endpoint)
        .collect()
}

fn subscribe(db: &mut dyn Backend, user: UserId, endpoint: &str, auth: u8, at: i64) {
    let row = PushSubscription {
        user,
        endpoint: endpoint.into(),
        p256dh: [4; 65],
        auth: [auth; 16],
        created_ms: at,
    };
    let reply = one(
        db,
        Request::PutPushSubscription {
            ticket: TICKET,
            row,
        },
    );
    assert!(matches!(reply, Some(Reply::Done { .. })), "{reply:?}");
}

/// Push subscriptions: kept per user, oldest first; an endpoint
/// subscribed again moves to whoever subscribed it last (a browser signed
/// in as someone else); past the bound the user's oldest goes; a delete
/// touches only the caller's; a push service's "gone" only the
/// subscription it was sent to (same secret); the setting defaults to
/// showing text and is kept per user.
fn pushes(db: &mut dyn Backend) {
    let e = |i: usize| format!("https://push.example/{i}");
    assert_eq!(
        profile(db, ALICE),
        PushProfile {
            show_text: true,
            subscriptions: vec![]
        }
    );
    subscribe(db, ALICE, &e(1), 1, 10);
    subscribe(db, ALICE, &e(2), 2, 20);
    let p = profile(db, ALICE);
    assert_eq!(p.subscriptions[0].auth, [1; 16]);
    assert_eq!(p.subscriptions[0].p256dh, [4; 65]);
    assert_eq!(endpoints(db, ALICE), [e(1), e(2)]);
    subscribe(db, BOB, &e(1), 3, 30);
    assert_eq!(endpoints(db, ALICE), [e(2)], "the browser is bob's now");
    assert_eq!(endpoints(db, BOB), [e(1)]);
    assert_eq!(profile(db, BOB).subscriptions[0].auth, [3; 16]);
    for i in 3..=MAX_PUSH_SUBSCRIPTIONS + 2 {
        subscribe(db, ALICE, &e(i), 9, 100 + i as i64);
    }
    let kept = endpoints(db, ALICE);
    assert_eq!(kept.len(), MAX_PUSH_SUBSCRIPTIONS);
    assert!(!kept.contains(&e(2)), "the oldest went");
    assert_eq!(kept.last(), Some(&e(MAX_PUSH_SUBSCRIPTIONS + 2)));
    // Subscribed again at an old time, the newest still stays.
    subscribe(db, ALICE, &e(2), 2, 0);
    assert!(endpoints(db, ALICE).contains(&e(2)));
    assert_eq!(endpoints(db, ALICE).len(), MAX_PUSH_SUBSCRIPTIONS);
    let done = one(
        db,
        Request::DeletePushSubscription {
            ticket: TICKET,
            user: ALICE,
            endpoint: e(1),
        },
    );
    assert!(matches!(done, Some(Reply::Done { .. })));
    assert_eq!(endpoints(db, BOB), [e(1)], "not alice's to delete");
    assert!(
        one(
            db,
            Request::DropPushSubscription {
                endpoint: e(1),
                auth: [1; 16]
            }
        )
        .is_none()
    );
    assert_eq!(
        endpoints(db, BOB),
        [e(1)],
        "subscribed again since: another secret"
    );
    one(
        db,
        Request::DropPushSubscription {
            endpoint: e(1),
            auth: [3; 16],
        },
    );
    assert!(endpoints(db, BOB).is_empty());
    one(
        db,
        Request::DeletePushSubscription {
            ticket: TICKET,
            user: ALICE,
            endpoint: e(2),
        },
    );
    assert!(!endpoints(db, ALICE).contains(&e(2)));
    for show_text in [false, true, false] {
        let r = one(
            db,
            Request::PutPushSettings {
                ticket: TICKET,
                user: ALICE,
                show_text,
            },
        );
        assert!(matches!(r, Some(Reply::Done { .. })));
        assert_eq!(profile(db, ALICE).show_text, show_text);
    }
    assert!(profile(db, BOB).show_text, "each user's own");
}

/// A room write (archive, delete), which never refuses.
fn moderate(db: &mut dyn Backend, write: AccountWrite) -> AccountNews {
    let req = Request::Account {
        ticket: TICKET,
        write,
        audit: None,
    };
    match one(db, req) {
        Some(Reply::AccountWritten {
            outcome: Ok(news), ..
        }) => news,
        other => panic!("expected AccountWritten, got {other:?}"),
    }
}

/// An archived room refuses edits and reactions (`Archived`) but not
/// deletes, and `load` lists it; opened again, it takes them. A deleted
/// room takes its messages (history, search, mentions) and its row with
/// it, without becoming an orphan, and its name makes a new, empty room.
/// Each write's news names the room as it is now; a write about a room
/// with no row changes nothing and logs nothing.
fn archived_and_deleted_rooms(db: &mut dyn Backend) {
    let archive = |archived| AccountWrite::ArchiveRoom {
        room: "attic".into(),
        archived,
    };
    let news = |archived| {
        vec![RoomNews {
            name: "attic".into(),
            archived,
        }]
    };
    let nothing = moderate(db, archive(true));
    assert!(
        nothing.rooms.is_empty() && nothing.changes.is_empty(),
        "no row yet"
    );
    one(
        db,
        Request::PutPublicRoom {
            name: "attic".into(),
            creator: BOB,
        },
    );
    let dusty = put(db, said(700, "attic", BOB, "dusty boxes"), vec![CAROL]);
    let other = put(db, said(701, "attic", ALICE, "old lamp"), vec![]);
    let done = moderate(db, archive(true));
    assert_eq!((done.rooms, done.changes.len()), (news(Some(true)), 1));
    assert!(db.load().unwrap().archived_rooms.contains(&"attic".into()));
    assert_eq!(edit(db, dusty, BOB, "x"), Err(Refusal::Archived));
    assert_eq!(react(db, dusty, CAROL, "👍"), Err(Refusal::Archived));
    assert_eq!(delete(db, other, ALICE), Ok(ChangeKind::Deleted));
    assert_eq!(moderate(db, archive(false)).rooms, news(Some(false)));
    assert!(!db.load().unwrap().archived_rooms.contains(&"attic".into()));
    assert_eq!(react(db, dusty, CAROL, "👍"), Ok(true));
    assert_eq!(search(db, ALICE, "dusty", None), [dusty]);
    moderate(db, archive(true));

    let delete_room = || AccountWrite::DeleteRoom {
        room: "attic".into(),
        at_ms: 9_000,
    };
    let gone = moderate(db, delete_room());
    assert_eq!((gone.rooms, gone.changes.len()), (news(None), 1));
    assert!(room(db, "attic").is_empty());
    assert!(search(db, ALICE, "dusty", None).is_empty());
    assert!(
        !unread(db, CAROL)
            .iter()
            .any(|c| matches!(c, UnreadCount::Room(r, ..) if r == "attic")),
        "its mentions went too"
    );
    let snap = db.load().unwrap();
    let attic = "attic".to_string();
    assert!(!snap.public_rooms.iter().any(|(n, _)| *n == attic));
    assert!(!snap.orphan_rooms.contains(&attic), "not an orphan");
    assert!(!snap.archived_rooms.contains(&attic));
    let again = moderate(db, delete_room());
    assert!(again.rooms.is_empty() && again.changes.is_empty());
    one(
        db,
        Request::PutPublicRoom {
            name: "attic".into(),
            creator: CAROL,
        },
    );
    let fresh = put(db, said(dusty + 10, "attic", CAROL, "new attic"), vec![]);
    let ids: Vec<MsgId> = room(db, "attic").iter().map(|m| m.id).collect();
    assert_eq!(ids, [fresh], "a new room under the old name starts empty");
    assert_eq!(react(db, fresh, BOB, "👍"), Ok(true), "and is not archived");
}
