//! SQLite's own tests: queries, atomic requests, the reader, backups, the
//! search index, and the shared conformance suite.

use super::*;
use crate::store::fixtures::{TICKET, msg, user};
use crate::store::{Desk, Ticket};

fn run(db: &mut Sqlite, reqs: Vec<Request>) -> Vec<Reply> {
    db.begin().unwrap();
    let out = reqs.iter().filter_map(|r| db.execute(r).unwrap()).collect();
    db.commit().unwrap();
    out
}

/// Edits, deletes, reactions, replies, mentions and search follow the
/// rules every backend shares (`store::conformance`).
#[test]
fn conforms_on_changes_mentions_and_search() {
    let mut db = Sqlite::open_in_memory().unwrap();
    crate::store::conformance::check_all(&mut db);
}

/// Roles, bans, sessions, invites, profiles, deletion, settings, the
/// audit log and the change log follow the rules every backend shares
/// (`store::accounts_conformance`).
#[test]
fn conforms_on_accounts() {
    let mut db = Sqlite::open_in_memory().unwrap();
    crate::store::accounts_conformance::check_all(&mut db);
}

/// A deleted room's newest ids count as issued after a restart (SQLite
/// takes the loop's key as the id, and the loop continues from what
/// `load` says): no id a client saw is given to another message.
#[test]
fn a_deleted_rooms_ids_are_not_given_again() {
    let mut db = Sqlite::open_in_memory().unwrap();
    let mut m = msg(41, Some("attic"), 1, None);
    m.content = "last words".into();
    let reqs = vec![
        Request::PutPublicRoom {
            name: "attic".into(),
            creator: 1,
        },
        Request::PutMessage {
            msg: m,
            client_id: None,
            mentions: vec![],
        },
        Request::Account {
            ticket: TICKET,
            write: crate::store::AccountWrite::DeleteRoom {
                room: "attic".into(),
                at_ms: 1,
            },
            audit: None,
        },
    ];
    run(&mut db, reqs);
    assert_eq!(db.load().unwrap().max_message_id, 41);
}

/// The index is written at the commit, in request order, so changes
/// within one batch land right (an edit or delete of a message stored
/// in the same batch), and a rolled-back batch leaves nothing behind:
/// FTS5's own integrity check agrees with the messages table.
#[test]
fn the_search_index_follows_each_batch_exactly() {
    let mut db = Sqlite::open_in_memory().unwrap();
    run(&mut db, vec![Request::put_user(user(1, "alice"))]);
    run(
        &mut db,
        vec![Request::PutPublicRoom {
            name: "general".into(),
            creator: 1,
        }],
    );
    let said = |id, content: &str| Request::PutMessage {
        msg: StoredMessage {
            content: content.into(),
            ..msg(id, Some("general"), 1, None)
        },
        client_id: None,
        mentions: Vec::new(),
    };
    run(
        &mut db,
        vec![
            said(1, "alpha"),
            Request::EditMessage {
                ticket: TICKET,
                id: 1,
                user: 1,
                content: "beta".into(),
                at_ms: 2,
            },
            said(2, "alpha gamma"),
            Request::DeleteMessage {
                ticket: TICKET,
                id: 2,
                user: 1,
                moderator: false,
                at_ms: 3,
            },
        ],
    );
    db.begin().unwrap();
    db.execute(&said(3, "delta")).unwrap();
    db.rollback();
    run(&mut db, vec![said(4, "epsilon")]);
    let found = |db: &mut Sqlite, word: &str| -> Vec<MsgId> {
        let query = SearchQuery {
            user: 1,
            words: vec![word.into()],
            scope: None,
            limit: 10,
        };
        match &run(
            db,
            vec![Request::Search {
                ticket: TICKET,
                query,
            }],
        )[..]
        {
            [Reply::History { messages, .. }] => messages.iter().map(|m| m.id).collect(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(found(&mut db, "beta"), [1]);
    assert_eq!(found(&mut db, "epsilon"), [4]);
    for gone in ["alpha", "gamma", "delta"] {
        assert!(found(&mut db, gone).is_empty(), "{gone}");
        // The index itself, not only what the join with messages keeps.
        let hits: i64 = db
            .conn
            .query_row(
                "SELECT COUNT(*) FROM messages_fts WHERE messages_fts MATCH ?1",
                [gone],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(hits, 0, "{gone} is still indexed");
    }
    db.conn
        .execute_batch(
            "INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)",
        )
        .expect("the index matches the messages");
}

/// A database made by the first schema (before search) migrates in
/// place: its messages become searchable and keep their content.
#[test]
fn a_version_1_database_gains_search() {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(MIGRATIONS[0]).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    conn.execute_batch(
        "INSERT INTO users VALUES (1, 'alice', 'a@x', 1, x'00', x'00', 0, NULL);
         INSERT INTO rooms VALUES ('general', 0, 1);
         INSERT INTO messages (id, room, from_id, content, ts_ms)
           VALUES (1, 'general', 1, 'Old Words here', 0);",
    )
    .unwrap();
    let mut db = Sqlite::init(conn).unwrap();
    let query = SearchQuery {
        user: 1,
        words: vec!["words".into()],
        scope: None,
        limit: 5,
    };
    let found = run(
        &mut db,
        vec![Request::Search {
            ticket: TICKET,
            query,
        }],
    );
    assert!(
        matches!(&found[..], [Reply::History { messages, .. }] if messages.len() == 1
            && messages[0].content == "Old Words here"),
        "{found:?}"
    );
}

/// Users, rooms, memberships, the max id and client ids come back in the snapshot.
#[test]
fn snapshot_round_trips() {
    let mut db = Sqlite::open_in_memory().unwrap();
    run(
        &mut db,
        vec![
            Request::put_user(user(1, "alice")),
            Request::put_user(user(2, "bob")),
            Request::PutPrivateRoom {
                ticket: TICKET,
                row: PrivateRoomRow {
                    name: "ops".into(),
                    owner: 1,
                    members: vec![1, 2],
                },
            },
            Request::PutPublicRoom {
                name: "general".into(),
                creator: 1,
            },
            Request::PutMessage {
                msg: msg(5, Some("general"), 1, None),
                client_id: Some("k1".into()),
                mentions: Vec::new(),
            },
            Request::SetLastSeen { user: 2, at_ms: 99 },
        ],
    );
    let snap = db.load().unwrap();
    assert_eq!(snap.users.len(), 2);
    assert_eq!(snap.users[0].password, user(1, "alice").password);
    assert_eq!(snap.users[1].last_seen_ms, Some(99));
    assert_eq!(snap.private_rooms[0].members, vec![1, 2]);
    assert_eq!(snap.public_rooms, vec![("general".to_string(), Some(1))]);
    assert_eq!(snap.max_message_id, 5);
    assert_eq!(snap.recent_client_ids, vec![(1, "k1".to_string(), 5, 5)]);
    let mut sources = snap.unread_sources.clone();
    sources.sort_unstable();
    assert_eq!(sources, vec![1, 2], "both belong to a private room");
}

/// History windows are the newest N below `before`, returned oldest first,
/// and a conversation is found from either side.
#[test]
fn history_windows() {
    let mut db = Sqlite::open_in_memory().unwrap();
    let mut reqs = vec![Request::PutPublicRoom {
        name: "r".into(),
        creator: 1,
    }];
    for id in 1..=10 {
        reqs.push(Request::PutMessage {
            msg: msg(id, Some("r"), 1, None),
            client_id: None,
            mentions: Vec::new(),
        });
    }
    reqs.push(Request::PutMessage {
        msg: msg(11, None, 1, Some(2)),
        client_id: None,
        mentions: Vec::new(),
    });
    reqs.push(Request::PutMessage {
        msg: msg(12, None, 2, Some(1)),
        client_id: None,
        mentions: Vec::new(),
    });
    run(&mut db, reqs);
    let q = |target, before, after, limit, offset| HistoryQuery {
        target,
        reader: 1,
        before,
        after,
        limit,
        offset,
    };
    let ids = |v: Vec<StoredMessage>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
    let room = || Target::Room("r".into());
    assert_eq!(
        ids(history(&db.conn, &q(room(), None, None, 3, 0)).unwrap()),
        vec![8, 9, 10]
    );
    assert_eq!(
        ids(history(&db.conn, &q(room(), Some(8), None, 3, 0)).unwrap()),
        vec![5, 6, 7]
    );
    assert_eq!(
        ids(history(&db.conn, &q(room(), None, None, 3, 3)).unwrap()),
        vec![5, 6, 7]
    );
    assert_eq!(
        ids(history(&db.conn, &q(room(), Some(8), Some(5), 10, 0)).unwrap()),
        vec![6, 7]
    );
    assert_eq!(
        ids(history(&db.conn, &q(Target::Direct(2, 1), None, None, 10, 0)).unwrap()),
        vec![11, 12]
    );
}

/// Unread counts follow read markers, which only move forward, and skip
/// the caller's own messages.
#[test]
fn unread_follows_markers() {
    let mut db = Sqlite::open_in_memory().unwrap();
    run(
        &mut db,
        vec![
            Request::PutMessage {
                msg: msg(1, Some("r"), 2, None),
                client_id: None,
                mentions: Vec::new(),
            },
            Request::MarkRead {
                user: 1,
                target: Target::Room("r".into()),
                id: 1,
            },
            Request::PutMessage {
                msg: msg(2, Some("r"), 2, None),
                client_id: None,
                mentions: Vec::new(),
            },
            Request::PutMessage {
                msg: msg(3, Some("r"), 1, None),
                client_id: None,
                mentions: Vec::new(),
            },
            Request::PutMessage {
                msg: msg(4, None, 2, Some(1)),
                client_id: None,
                mentions: Vec::new(),
            },
            Request::PutMessage {
                msg: msg(5, None, 2, Some(1)),
                client_id: None,
                mentions: Vec::new(),
            },
            Request::MarkRead {
                user: 1,
                target: Target::Direct(1, 2),
                id: 4,
            },
            Request::MarkRead {
                user: 1,
                target: Target::Direct(1, 2),
                id: 1,
            },
        ],
    );
    assert_eq!(
        unread(&db.conn, 1).unwrap(),
        vec![
            UnreadCount::Room("r".into(), 1, 0),
            UnreadCount::Direct(2, 1)
        ]
    );
}

/// A second message with the same (user, client_id) is not stored: it is
/// answered with the first one's id and time, so a retry the loop forgot
/// is acked as the original, never stored twice.
#[test]
fn client_id_is_unique_per_user() {
    let mut db = Sqlite::open_in_memory().unwrap();
    run(
        &mut db,
        vec![Request::PutMessage {
            msg: msg(1, Some("r"), 1, None),
            client_id: Some("k".into()),
            mentions: Vec::new(),
        }],
    );
    db.begin().unwrap();
    let dup = Request::PutMessage {
        msg: msg(2, Some("r"), 1, None),
        client_id: Some("k".into()),
        mentions: Vec::new(),
    };
    match db.execute(&dup).unwrap() {
        Some(Reply::MessageExists {
            key: 2,
            existing: 1,
            timestamp_ms: 1,
        }) => {}
        other => panic!("expected the first message, got {other:?}"),
    }
    let other_user = Request::PutMessage {
        msg: msg(3, Some("r"), 2, None),
        client_id: Some("k".into()),
        mentions: Vec::new(),
    };
    assert!(db.execute(&other_user).is_ok());
    db.commit().unwrap();
    assert_eq!(
        message_ids(&db),
        vec![1, 3],
        "the batch kept all but the duplicate"
    );
}

fn message_ids(db: &Sqlite) -> Vec<i64> {
    db.conn
        .prepare("SELECT id FROM messages ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn count(db: &Sqlite, sql: &str) -> i64 {
    db.conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// A user id whose membership rows the test trigger refuses.
const REFUSED_MEMBER: UserId = 666;

/// Makes inserting a membership of [`REFUSED_MEMBER`] fail, the way a
/// constraint or a full disk would fail one statement of a request.
fn refuse_member(db: &Sqlite) {
    db.conn
        .execute_batch(&format!(
            "CREATE TEMP TRIGGER refuse_member BEFORE INSERT ON room_members
             WHEN NEW.user_id = {REFUSED_MEMBER}
             BEGIN SELECT RAISE(ABORT, 'member refused'); END;"
        ))
        .unwrap();
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

/// A multi-statement request that fails part way leaves nothing behind
/// (no room row, no member rows), while the requests before and after it
/// in the same batch commit.
#[test]
fn failed_private_room_leaves_nothing_and_spares_the_batch() {
    let mut db = Sqlite::open_in_memory().unwrap();
    refuse_member(&db);
    db.begin().unwrap();
    db.execute(&Request::put_user(user(1, "alice"))).unwrap();
    assert!(
        db.execute(&private_room("ops", vec![1, REFUSED_MEMBER, 2]))
            .is_err()
    );
    db.execute(&Request::PutMessage {
        msg: msg(1, Some("general"), 1, None),
        client_id: None,
        mentions: Vec::new(),
    })
    .unwrap();
    db.commit().unwrap();
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM rooms WHERE name = 'ops'"),
        0
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM room_members WHERE room = 'ops'"),
        0
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM users WHERE id = 1"), 1);
    assert_eq!(message_ids(&db), vec![1]);
}

/// After a multi-statement request failed, the same transaction takes
/// more work, the same room included: its half-written room row was
/// undone, so the retry does not conflict with it.
#[test]
fn transaction_stays_usable_after_a_failed_request() {
    let mut db = Sqlite::open_in_memory().unwrap();
    refuse_member(&db);
    db.begin().unwrap();
    assert!(
        db.execute(&private_room("ops", vec![1, REFUSED_MEMBER]))
            .is_err()
    );
    assert!(
        !db.conn.is_autocommit(),
        "the batch's transaction is still open"
    );
    db.execute(&private_room("ops", vec![1, 2])).unwrap();
    assert!(
        db.execute(&private_room("dev", vec![REFUSED_MEMBER]))
            .is_err()
    );
    db.execute(&private_room("dev", vec![3])).unwrap();
    db.commit().unwrap();
    let rooms = db.load().unwrap().private_rooms;
    let got: Vec<(&str, &[UserId])> = rooms
        .iter()
        .map(|r| (r.name.as_str(), r.members.as_slice()))
        .collect();
    assert_eq!(got, vec![("dev", &[3][..]), ("ops", &[1, 2][..])]);
}

/// A fresh directory under the system temp dir, removed on drop.
struct TestDir(std::path::PathBuf);

impl TestDir {
    fn new(tag: &str) -> TestDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hubbub-sqlite-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }
    fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The permission bits of a file.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Two users and `n` messages in room `r`, committed.
fn fill(db: &mut Sqlite, first_id: MsgId, n: u64) {
    let mut reqs = vec![];
    if first_id == 1 {
        reqs.push(Request::put_user(user(1, "alice")));
        reqs.push(Request::put_user(user(2, "bob")));
        reqs.push(Request::PutPublicRoom {
            name: "r".into(),
            creator: 1,
        });
    }
    for id in first_id..first_id + n {
        reqs.push(Request::PutMessage {
            msg: msg(id, Some("r"), 1, None),
            client_id: None,
            mentions: Vec::new(),
        });
    }
    run(db, reqs);
}

/// A database `open` creates is owner-only, and so are the `-wal` and
/// `-shm` SQLite creates beside it on the first write. Without the
/// creation step the usual umask 022 makes all three 0644.
#[test]
fn new_database_files_are_owner_only() {
    let dir = TestDir::new("mode");
    let path = dir.join("hubbub.db");
    let mut db = Sqlite::open(&path).unwrap();
    fill(&mut db, 1, 3);
    for suffix in ["", "-wal", "-shm"] {
        let file = dir.join(&format!("hubbub.db{suffix}"));
        assert_eq!(mode(&file), PRIVATE_FILE_MODE, "{}", file.display());
    }
}

/// A database file the operator created keeps the mode they gave it.
#[test]
fn existing_database_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new("keep");
    let path = dir.join("hubbub.db");
    std::fs::File::create(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mut db = Sqlite::open(&path).unwrap();
    fill(&mut db, 1, 1);
    assert_eq!(mode(&path), 0o640);
}

/// A backup taken while a write transaction is open holds exactly what
/// was committed before it, is owner-only, opens as a hubbub database,
/// and leaves no `-wal`/`-shm` beside it; the counts it reports are the
/// copy's.
#[test]
fn backup_copies_the_committed_snapshot() {
    let dir = TestDir::new("backup");
    let mut db = Sqlite::open(&dir.join("hubbub.db")).unwrap();
    fill(&mut db, 1, 10);
    db.begin().unwrap();
    db.execute(&Request::PutMessage {
        msg: msg(11, Some("r"), 1, None),
        client_id: None,
        mentions: Vec::new(),
    })
    .unwrap();
    let copy = dir.join("copy.db");
    let stats = backup(&dir.join("hubbub.db"), &copy).unwrap();
    db.commit().unwrap();
    assert_eq!(
        stats,
        BackupStats {
            messages: 10,
            users: 2
        }
    );
    assert_eq!(mode(&copy), PRIVATE_FILE_MODE);
    assert!(!dir.join("copy.db-wal").exists() && !dir.join("copy.db-shm").exists());
    let restored = Sqlite::open(&copy).unwrap();
    assert_eq!(message_ids(&restored), (1..=10).collect::<Vec<i64>>());
}

/// A backup onto an existing path fails, says so, and leaves the file
/// as it was.
#[test]
fn backup_refuses_an_existing_path() {
    let dir = TestDir::new("exists");
    let mut db = Sqlite::open(&dir.join("hubbub.db")).unwrap();
    fill(&mut db, 1, 1);
    let copy = dir.join("copy.db");
    std::fs::write(&copy, b"precious").unwrap();
    let e = backup(&dir.join("hubbub.db"), &copy).unwrap_err();
    assert!(e.message.contains("already exists"), "{e}");
    assert_eq!(std::fs::read(&copy).unwrap(), b"precious");
}

/// A backup of a database that does not exist, or of a file that is not
/// a hubbub database, fails without creating either file.
#[test]
fn backup_of_no_database_creates_nothing() {
    let dir = TestDir::new("missing");
    let (src, copy) = (dir.join("typo.db"), dir.join("copy.db"));
    let e = backup(&src, &copy).unwrap_err();
    assert!(e.message.starts_with("cannot open"), "{e}");
    assert!(!src.exists() && !copy.exists());
    std::fs::write(&src, b"").unwrap();
    let e = backup(&src, &copy).unwrap_err();
    assert!(e.message.contains("not a hubbub database"), "{e}");
    assert!(!copy.exists());
}

fn room_history(seq: u64) -> Request {
    Request::History {
        ticket: Ticket {
            desk: Desk::Hub,
            seq,
        },
        query: HistoryQuery {
            target: Target::Room("r".into()),
            reader: 1,
            before: None,
            after: None,
            limit: 50,
            offset: 0,
        },
    }
}

fn history_ids(reply: Reply) -> Vec<MsgId> {
    match reply {
        Reply::History { messages, .. } => messages.iter().map(|m| m.id).collect(),
        other => panic!("expected history, got {other:?}"),
    }
}

/// The reader's snapshot is taken by `begin`, not by its first query: a
/// commit that lands between the two is not seen, and the next read is.
/// The ordering of replies (`Published`) rests on this.
#[test]
fn the_reader_snapshot_is_taken_at_begin() {
    let dir = TestDir::new("snapshot");
    let mut db = Sqlite::open(&dir.join("hubbub.db")).unwrap();
    fill(&mut db, 1, 2);
    let mut reader = db.reader().unwrap().expect("a file database has a reader");
    reader.begin().unwrap();
    fill(&mut db, 3, 1);
    assert_eq!(history_ids(reader.read(&room_history(1)).unwrap()), [1, 2]);
    reader.end();
    reader.begin().unwrap();
    assert_eq!(
        history_ids(reader.read(&room_history(2)).unwrap()),
        [1, 2, 3]
    );
    reader.end();
}

/// The reader connection is read-only, and an in-memory database, which
/// a second connection would not see, has no reader at all.
#[test]
fn reader_is_read_only_and_absent_in_memory() {
    assert!(
        Sqlite::open_in_memory()
            .unwrap()
            .reader()
            .unwrap()
            .is_none()
    );
    let dir = TestDir::new("ro");
    let mut db = Sqlite::open(&dir.join("hubbub.db")).unwrap();
    fill(&mut db, 1, 1);
    let mut reader = db.reader().unwrap().unwrap();
    reader.begin().unwrap();
    assert!(reader.read(&Request::Drain).is_err(), "a write is no read");
    reader.end();
    let conn = Connection::open_with_flags(dir.join("hubbub.db"), OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    assert!(conn.execute("DELETE FROM messages", []).is_err());
}

/// Through `StoreHandle` on a file: a read issued after a message's
/// `MessageStored` (when the hub would deliver it) sees the message on
/// the reader thread, and after `join` the writer closed last, so no
/// `-wal` or `-shm` is left beside the database.
#[test]
fn reads_after_a_commit_see_it_and_join_closes_cleanly() {
    use crate::store::StoreHandle;
    let dir = TestDir::new("handle");
    let path = dir.join("hubbub.db");
    let (woke, woken) = std::sync::mpsc::channel();
    let mut store = StoreHandle::spawn(Sqlite::open(&path).unwrap(), 64, move || {
        let _ = woke.send(());
    });
    let next = |store: &StoreHandle| loop {
        if let Some(r) = store.try_reply() {
            return r;
        }
        woken
            .recv_timeout(Duration::from_secs(10))
            .expect("a reply");
    };
    store
        .submit(Request::PutPublicRoom {
            name: "r".into(),
            creator: 1,
        })
        .unwrap();
    store
        .submit(Request::PutMessage {
            msg: msg(1, Some("r"), 1, None),
            client_id: None,
            mentions: Vec::new(),
        })
        .unwrap();
    assert!(matches!(next(&store), Reply::MessageStored { key: 1, .. }));
    store.submit(room_history(1)).unwrap();
    assert_eq!(history_ids(next(&store)), [1]);
    store.join();
    drop(store);
    assert!(!dir.join("hubbub.db-wal").exists() && !dir.join("hubbub.db-shm").exists());
}

/// A backup works on a database no server has open (its `-wal` and
/// `-shm` were removed when the server closed it cleanly), and leaves
/// none behind.
#[test]
fn backup_of_a_closed_database() {
    let dir = TestDir::new("closed");
    let path = dir.join("hubbub.db");
    let mut db = Sqlite::open(&path).unwrap();
    fill(&mut db, 1, 4);
    drop(db);
    assert!(!dir.join("hubbub.db-wal").exists(), "closed cleanly");
    let copy = dir.join("copy.db");
    let stats = backup(&path, &copy).unwrap();
    assert_eq!(stats.messages, 4);
    assert!(
        !dir.join("hubbub.db-wal").exists() && !dir.join("hubbub.db-shm").exists(),
        "the backup left no -wal/-shm behind for the server to trip on"
    );
}
