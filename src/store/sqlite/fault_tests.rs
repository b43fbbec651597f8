//! Failures of the transaction itself, against a real database file.

use super::*;
use crate::store::apply_batch;

fn put(id: MsgId) -> Request {
    Request::PutMessage {
        msg: StoredMessage {
            id,
            room: Some("r".into()),
            from: 1,
            to: None,
            content: "x".into(),
            timestamp_ms: 0,
            seq: 0,
            ..StoredMessage::default()
        },
        client_id: Some(format!("c{id}")),
        mentions: Vec::new(),
    }
}

/// Another process holding the write lock fails the whole batch up
/// front (`BEGIN IMMEDIATE`), every write in it answered as failed; once
/// the lock is gone the next batch commits, with no restart.
#[test]
fn a_write_lock_held_elsewhere_fails_the_batch_whole() {
    let dir = std::env::temp_dir().join(format!("hubbub-lock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("db");
    let mut db = Sqlite::open(&path).unwrap();
    db.conn
        .busy_timeout(std::time::Duration::from_millis(50))
        .unwrap();
    let other = Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let e = db
        .begin()
        .expect_err("the lock is taken at BEGIN, not halfway");
    assert!(e.aborts_batch, "{e}");
    let mut out = Vec::new();
    apply_batch(&mut db, &[put(1), put(2)], &mut out);
    assert!(
        matches!(
            out[..],
            [
                Reply::MessageFailed { key: 1, .. },
                Reply::MessageFailed { key: 2, .. }
            ]
        ),
        "{out:?}"
    );
    other.execute_batch("ROLLBACK").unwrap();
    out.clear();
    apply_batch(&mut db, &[put(3)], &mut out);
    assert!(
        matches!(out[..], [Reply::MessageStored { key: 3, .. }]),
        "{out:?}"
    );
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An error that ends the transaction fails every request of the batch,
/// those before it included: none of them will be durable.
#[test]
fn an_aborting_failure_fails_earlier_requests_too() {
    struct Abort(Sqlite);
    impl Backend for Abort {
        fn load(&mut self) -> Result<Snapshot, StoreError> {
            self.0.load()
        }
        fn setting(&mut self, k: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.0.setting(k)
        }
        fn put_setting(&mut self, k: &str, v: &[u8]) -> Result<(), StoreError> {
            self.0.put_setting(k, v)
        }
        fn begin(&mut self) -> Result<(), StoreError> {
            self.0.begin()
        }
        fn execute(&mut self, req: &Request) -> Result<Option<Reply>, StoreError> {
            match req {
                Request::PutMessage { msg, .. } if msg.id == 2 => {
                    Err(StoreError::batch("database or disk is full"))
                }
                _ => self.0.execute(req),
            }
        }
        fn commit(&mut self) -> Result<(), StoreError> {
            self.0.commit()
        }
        fn rollback(&mut self) {
            self.0.rollback()
        }
    }
    let mut db = Abort(Sqlite::open_in_memory().unwrap());
    let mut out = Vec::new();
    apply_batch(&mut db, &[put(1), put(2), put(3)], &mut out);
    assert!(
        matches!(
            out[..],
            [
                Reply::MessageFailed { key: 1, .. },
                Reply::MessageFailed { key: 2, .. },
                Reply::MessageFailed { key: 3, .. }
            ]
        ),
        "{out:?}"
    );
    assert_eq!(
        db.0.load().unwrap().max_message_id,
        0,
        "nothing was committed"
    );
    out.clear();
    apply_batch(&mut db, &[put(4)], &mut out);
    assert!(matches!(out[..], [Reply::MessageStored { key: 4, .. }]));
}

/// A removed member's read marker goes with its membership, so the room
/// drops out of its unread counts.
#[test]
fn a_removed_member_has_nothing_unread_there() {
    let mut db = Sqlite::open_in_memory().unwrap();
    let ticket = crate::store::Ticket {
        desk: crate::store::Desk::Hub,
        seq: 1,
    };
    let mut out = Vec::new();
    let row = PrivateRoomRow {
        name: "r".into(),
        owner: 1,
        members: vec![1, 2],
    };
    let read = Request::MarkRead {
        user: 2,
        target: Target::Room("r".into()),
        id: 1,
    };
    apply_batch(
        &mut db,
        &[
            Request::PutPrivateRoom { ticket, row },
            put(1),
            read,
            put(2),
        ],
        &mut out,
    );
    assert_eq!(
        unread(&db.conn, 2).unwrap(),
        vec![UnreadCount::Room("r".into(), 1, 0)]
    );
    let remove = Request::RemoveMember {
        ticket,
        room: "r".into(),
        user: 2,
        audit: None,
    };
    apply_batch(&mut db, &[remove, put(3)], &mut out);
    assert_eq!(unread(&db.conn, 2).unwrap(), vec![]);
}

/// Messages of a room with no room row load it as an orphan (private
/// to nobody), not as public.
#[test]
fn rooms_without_a_row_load_as_orphans() {
    let mut db = Sqlite::open_in_memory().unwrap();
    let mut out = Vec::new();
    apply_batch(&mut db, &[put(1)], &mut out);
    let snap = db.load().unwrap();
    assert_eq!(snap.orphan_rooms, vec!["r".to_string()]);
    assert!(snap.public_rooms.is_empty());
}
