//! Appending: sequencing under two writers at once, and the bulk path
//! against one message at a time (the same batches through both, compared
//! row for row and reply for reply).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::schema::target_key;
use super::testdb::TestDb;
use super::tests::{
    PerRequest, count, dm, dump, history_req, normal, private_room, put, put13, react, run,
    search_req,
};
use super::*;
use crate::store::fixtures::{TICKET, msg, user};
use crate::store::{Seq, StoredMessage, apply_batch};

/// Rooms the concurrency test appends to.
const ROOMS: usize = 5;

/// Appends `n` messages in batches of `batch` from `writer` (its messages
/// spread over [`ROOMS`] rooms in an order of its own), retrying a batch
/// that failed as a whole; returns how many batches failed.
fn append(db: &mut Postgres, writer: u32, n: usize, batch: usize) -> usize {
    let mut failed = 0;
    let mut rng = 0x9e37_79b9u32.wrapping_mul(writer + 1);
    let reqs: Vec<Request> = (0..n)
        .map(|i| {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            Request::PutMessage {
                msg: msg(
                    i as MsgId,
                    Some(&format!("room{}", rng as usize % ROOMS)),
                    writer,
                    None,
                ),
                client_id: Some(format!("w{writer}-{i}")),
                mentions: Vec::new(),
            }
        })
        .collect();
    let mut out = Vec::new();
    for chunk in reqs.chunks(batch) {
        loop {
            out.clear();
            apply_batch(db, chunk, &mut out);
            if out.iter().all(|r| matches!(r, Reply::MessageStored { .. })) {
                break;
            }
            assert!(
                out.iter().all(|r| matches!(
                    r,
                    Reply::MessageFailed {
                        transient: true,
                        ..
                    }
                )),
                "{out:?}"
            );
            failed += 1;
        }
    }
    failed
}

/// Two nodes appending to the same rooms at once: every room's seqs are
/// 1..n without a gap, and the order by seq is the order by id.
#[test]
fn two_writers_sequence_shared_rooms() {
    let Some(t) = TestDb::new() else { return };
    const N: usize = 2000;
    let start = Instant::now();
    let failed: Vec<usize> = std::thread::scope(|s| {
        let writers: Vec<_> = (1..=2u32)
            .map(|w| {
                let mut db = t.open();
                s.spawn(move || append(&mut db, w, N, 50))
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let elapsed = start.elapsed();
    let mut c = t.client();
    let rows = c
        .query(
            "SELECT target, seq, id FROM messages ORDER BY target, seq",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 2 * N);
    let mut last: Option<(String, i64, i64)> = None;
    for r in &rows {
        let (target, seq, id): (String, i64, i64) = (r.get(0), r.get(1), r.get(2));
        match &last {
            Some((t, s, i)) if *t == target => {
                assert_eq!(seq, s + 1, "{target}: a gap");
                assert!(id > *i, "{target}: seq {seq} has id {id} <= {i}");
            }
            _ => assert_eq!(seq, 1, "{target} starts at 1"),
        }
        last = Some((target, seq, id));
    }
    let heads = t.open().load().unwrap().heads;
    assert_eq!(heads.len(), ROOMS);
    assert_eq!(heads.iter().map(|h| h.1).sum::<Seq>(), 2 * N as Seq);
    std::thread::sleep(Duration::from_millis(600));
    let deadlocks = count(
        &mut c,
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
    );
    eprintln!(
        "two writers, {N} messages each in batches of 50 over {ROOMS} rooms: \
         {:.0} msg/s, failed batches {failed:?}, deadlocks {deadlocks}",
        (2 * N) as f64 / elapsed.as_secs_f64()
    );
}

/// A message from `from` to `room` with `content` and `client_id`.
fn put_as(id: MsgId, from: UserId, room: &str, content: &str, client_id: Option<&str>) -> Request {
    Request::PutMessage {
        msg: StoredMessage {
            content: content.into(),
            ..msg(id, Some(room), from, None)
        },
        client_id: client_id.map(String::from),
        mentions: Vec::new(),
    }
}

/// Makes inserting a message whose content is `boom` fail, the way a
/// failing statement would spoil the transaction.
fn refuse_boom(c: &mut Client) {
    c.batch_execute(
        "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'boom refused'; END $$;
         CREATE TRIGGER refuse_boom BEFORE INSERT ON messages
           FOR EACH ROW WHEN (NEW.content = 'boom') EXECUTE FUNCTION refuse_boom();",
    )
    .unwrap();
}

/// The same mixed batches through the per-request path and the bulk
/// path, each on its own database, give the same replies and the same
/// rows: client-id retries within a run, across runs of one batch
/// (around a request that is not a message), across batches and from
/// another user; messages refused on their input among the rest; a run
/// of one; reads on the writer between runs; a statement failure that
/// aborts the whole batch and takes its seqs back.
#[test]
fn bulk_appends_match_the_per_request_path() {
    let (Some(t_each), Some(t_bulk)) = (TestDb::new(), TestDb::new()) else {
        return;
    };
    let mut each = PerRequest(t_each.open());
    let mut bulk = t_bulk.open();
    refuse_boom(&mut t_each.client());
    refuse_boom(&mut t_bulk.client());
    let nul_client_id = Request::PutMessage {
        msg: msg(17, Some("general"), 1, None),
        client_id: Some("k\0".into()),
        mentions: Vec::new(),
    };
    let no_target = Request::PutMessage {
        msg: msg(18, None, 1, None),
        client_id: Some("k5".into()),
        mentions: Vec::new(),
    };
    let room = |r: &str| Target::Room(r.into());
    let mut batches = vec![
        vec![
            Request::PutUser(user(1, "alice")),
            Request::PutUser(user(2, "bob")),
            Request::PutUser(user(3, "carol")),
            Request::PutPublicRoom {
                name: "general".into(),
                creator: 1,
            },
            put_as(10, 1, "general", "hello", Some("k1")),
            put_as(11, 1, "general", "hello again", Some("k1")),
            put(12, "general", None),
            dm(13, 1, 2),
            dm(14, 2, 1),
            Request::MarkRead {
                user: 2,
                target: room("general"),
                id: 1,
            },
            put_as(15, 1, "general", "a\0b", Some("k9")),
            put_as(16, 1, "general", "ok", Some("k9")),
            nul_client_id,
            no_target,
            put_as(19, 1, "general", "two", Some("k2")),
            put_as(20, 2, "general", "bob's k1", Some("k1")),
            private_room("ops", vec![1, 2]),
            put(21, "ops", None),
            put(22, "ops", Some("k2")),
            Request::SetLastSeen { user: 1, at_ms: 5 },
            put_as(23, 1, "general", "two, retried", Some("k2")),
            put(24, "general", None),
            history_req(room("general"), None, None, 50, 0),
            put(25, "general", None),
            Request::Catchup {
                ticket: TICKET,
                target: room("general"),
                after: 2,
                limit: 100,
            },
            dm(26, 3, 1),
            dm(27, 1, 3),
        ],
        vec![
            put_as(30, 1, "general", "hello, third try", Some("k1")),
            put_as(31, 2, "general", "bob's k1 again", Some("k1")),
            put_as(32, 1, "general", "three", Some("k3")),
            put_as(33, 1, "general", "three again", Some("k3")),
            put_as(34, 1, "general", "three, third", Some("k3")),
            Request::MarkRead {
                user: 1,
                target: Target::Direct(1, 2),
                id: 3,
            },
            put_as(35, 3, "x\0y", "bad room", Some("k4")),
            put_as(36, 3, "ops", "good room", Some("k4")),
        ],
        // A run of one goes through `execute` on both paths.
        vec![put_as(40, 1, "general", "three, fourth", Some("k3"))],
        vec![put(41, "general", None)],
        // Only refusals: no statement at all.
        vec![
            put_as(42, 1, "general", "\0", None),
            put_as(43, 1, "general", "\0", Some("k6")),
        ],
        // A failed insert fails the batch, private room and all.
        vec![
            put(50, "general", Some("k7")),
            private_room("dev", vec![3]),
            put_as(51, 1, "general", "boom", None),
            put(52, "general", None),
        ],
        vec![
            put(53, "general", Some("k7")),
            put(54, "general", Some("k7")),
            put(55, "new", None),
            put(56, "new", None),
        ],
    ];
    // A big run over several targets, with repeats.
    batches.push(
        (0..300u64)
            .map(|i| {
                let cid = format!("big{}", i % 250);
                match i % 4 {
                    0 => dm(100 + i, 1 + (i % 3) as UserId, 2),
                    _ => put_as(
                        100 + i,
                        1,
                        &format!("room{}", i % 5),
                        "x",
                        (i % 2 == 0).then_some(cid.as_str()),
                    ),
                }
            })
            .collect(),
    );
    let mut replies = (Vec::new(), Vec::new());
    for batch in &batches {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        apply_batch(&mut each, batch, &mut a);
        apply_batch(&mut bulk, batch, &mut b);
        replies.0.push(a);
        replies.1.push(b);
    }
    // Issue 13: replies (valid, to another target, to a deleted parent,
    // to none, a valid one that is a client-id retry, a refused one that
    // is one), mentions (room and conversation), a delete, an edit and a
    // reaction between runs, a search on the writer. Parents are named
    // by their stored ids, which may differ between the two databases.
    let issue_13 = |c: &mut Client| {
        let mut id = |content: &str| -> MsgId {
            c.query_one("SELECT id FROM messages WHERE content = $1", &[&content])
                .unwrap()
                .get::<_, i64>(0) as MsgId
        };
        let (hello, two, m21, m13) = (id("hello"), id("two"), id("m21"), id("m13"));
        let with_cid = |mut r: Request, cid: &str| {
            if let Request::PutMessage { client_id, .. } = &mut r {
                *client_id = Some(cid.into());
            }
            r
        };
        vec![
            put13(
                60,
                Some("general"),
                2,
                None,
                "re hello",
                Some(hello),
                vec![1, 3],
            ),
            put13(
                61,
                Some("ops"),
                1,
                None,
                "re hello from ops",
                Some(hello),
                vec![],
            ),
            put13(62, Some("ops"), 1, None, "re m21", Some(m21), vec![2]),
            put13(63, None, 1, Some(2), "re m13", Some(m13), vec![2]),
            put13(64, None, 2, Some(3), "re m13 elsewhere", Some(m13), vec![]),
            Request::DeleteMessage {
                ticket: TICKET,
                id: two,
                user: 1,
                at_ms: 6000,
            },
            put13(65, Some("general"), 2, None, "re two", Some(two), vec![1]),
            with_cid(
                put13(
                    66,
                    Some("general"),
                    1,
                    None,
                    "k1 again",
                    Some(hello),
                    vec![2],
                ),
                "k1",
            ),
            with_cid(
                put13(67, Some("general"), 1, None, "k2 again", Some(two), vec![2]),
                "k2",
            ),
            put13(68, Some("general"), 1, None, "plain", None, vec![]),
            Request::EditMessage {
                ticket: TICKET,
                id: hello,
                user: 1,
                content: "hello, edited".into(),
                at_ms: 5000,
            },
            react(hello, 2, "👍"),
            put13(69, Some("general"), 3, None, "plain too", None, vec![2]),
            put13(
                70,
                Some("general"),
                3,
                None,
                "re nothing",
                Some(999_999),
                vec![],
            ),
            search_req(2, "hello", None, 10),
            put13(
                71,
                Some("general"),
                3,
                None,
                "re hello again",
                Some(hello),
                vec![],
            ),
            put13(72, Some("general"), 3, None, "last", None, vec![]),
        ]
    };
    for (db, t, out) in [
        (&mut each as &mut dyn Backend, &t_each, &mut replies.0),
        (&mut bulk as &mut dyn Backend, &t_bulk, &mut replies.1),
    ] {
        let batch = issue_13(&mut t.client());
        let mut got = Vec::new();
        db.begin().unwrap();
        db.execute_batch(&batch, &mut got).unwrap();
        db.commit().unwrap();
        out.push(got);
    }
    let (rows_each, rank_each) = dump(&mut t_each.client());
    let (rows_bulk, rank_bulk) = dump(&mut t_bulk.client());
    let last: Vec<_> = replies.1[replies.1.len() - 1]
        .iter()
        .map(|r| match r {
            Reply::MessageStored { key, .. } => format!("stored {key}"),
            Reply::MessageExists { key, .. } => format!("exists {key}"),
            Reply::MessageRefused { key, .. } => format!("refused {key}"),
            Reply::Changed { outcome, .. } => format!("changed {}", outcome.is_ok()),
            Reply::History { messages, .. } => format!("found {}", messages.len()),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        last,
        [
            "stored 60",
            "refused 61",
            "stored 62",
            "stored 63",
            "refused 64",
            "changed true",
            "refused 65",
            "exists 66",
            "refused 67",
            "stored 68",
            "changed true",
            "changed true",
            "stored 69",
            "refused 70",
            "found 2",
            "stored 71",
            "stored 72"
        ]
    );
    for (i, (a, b)) in replies.0.iter().zip(&replies.1).enumerate() {
        let a: Vec<_> = a.iter().map(|r| normal(r, &rank_each)).collect();
        let b: Vec<_> = b.iter().map(|r| normal(r, &rank_bulk)).collect();
        assert_eq!(a, b, "batch {i}");
    }
    assert_eq!(rows_each, rows_bulk);
    // The cases the batches were written to exercise.
    let b0: Vec<_> = replies.1[0].iter().map(|r| normal(r, &rank_bulk)).collect();
    assert_eq!(b0[3..5], ["stored 10 #0 seq 1", "exists 11 #0 at 10"]);
    assert!(b0.contains(&"exists 23 #5 at 19".to_string()), "{b0:#?}");
    assert!(
        replies.1[5].iter().all(|r| matches!(
            r,
            Reply::MessageFailed {
                transient: true,
                ..
            } | Reply::Failed { .. }
        )),
        "{:?}",
        replies.1[5]
    );
    assert!(
        matches!(
            replies.1[6][..],
            [
                Reply::MessageStored { key: 53, .. },
                Reply::MessageExists { key: 54, .. },
                Reply::MessageStored {
                    key: 55,
                    seq: 1,
                    ..
                },
                Reply::MessageStored {
                    key: 56,
                    seq: 2,
                    ..
                },
            ]
        ),
        "{:?}",
        replies.1[6]
    );
    assert!(
        // 10, and 5 more from the issue-13 batch.
        rows_bulk.contains(&"r:general=15".to_string()),
        "{rows_bulk:#?}"
    );
}

/// Bulk appends number each target on from its head, batch after batch,
/// with ids that increase with seq (and in request order: the order the
/// loop delivers in), around other requests and retries.
#[test]
fn bulk_ids_increase_with_seq_per_target() {
    let Some(t) = TestDb::new() else { return };
    let mut db = t.open();
    let mut rng = 0x2545_f491u32;
    let mut heads: HashMap<String, Seq> = HashMap::new();
    let mut last_id = 0;
    for b in 0..4u64 {
        let mut reqs = Vec::new();
        let mut targets = Vec::new();
        for i in 0..400u64 {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            let (id, from) = (b * 1000 + i, 1 + rng % 3);
            let cid = rng.is_multiple_of(3).then(|| format!("c{}", rng % 500));
            let (room, to) = match rng % 7 {
                0 => (None, Some(1 + (rng >> 8) % 3)),
                r => (Some(format!("room{r}")), None),
            };
            let key = message_target(room.as_deref(), from, to).unwrap();
            reqs.push(Request::PutMessage {
                msg: msg(id, room.as_deref(), from, to),
                client_id: cid,
                mentions: Vec::new(),
            });
            targets.push(Some(key));
            if i % 97 == 0 {
                reqs.push(Request::MarkRead {
                    user: from,
                    target: Target::Room("room1".into()),
                    id: 1,
                });
                targets.push(None);
            }
        }
        let out = run(&mut db, &reqs);
        let keys = targets.into_iter().flatten();
        assert_eq!(out.len(), 400);
        for (reply, key) in out.iter().zip(keys) {
            match reply {
                Reply::MessageStored { id, seq, .. } => {
                    let head = heads.entry(key.clone()).or_default();
                    assert_eq!(*seq, *head + 1, "{key}: seq after {head}");
                    *head = *seq;
                    assert!(*id > last_id, "id {id} after {last_id}");
                    last_id = *id;
                }
                Reply::MessageExists { existing, .. } => assert!(*existing <= last_id),
                other => panic!("{other:?}"),
            }
        }
    }
    let mut c = t.client();
    let rows = c
        .query(
            "SELECT target, seq, id FROM messages ORDER BY target, seq",
            &[],
        )
        .unwrap();
    let mut last: Option<(String, i64, i64)> = None;
    for r in &rows {
        let (target, seq, id): (String, i64, i64) = (r.get(0), r.get(1), r.get(2));
        match &last {
            Some((t, s, i)) if *t == target => {
                assert_eq!(seq, s + 1, "{target}: a gap");
                assert!(id > *i, "{target}: seq {seq} has id {id} <= {i}");
            }
            _ => assert_eq!(seq, 1, "{target} starts at 1"),
        }
        last = Some((target, seq, id));
    }
    let stored: Seq = heads.values().sum();
    assert_eq!(rows.len() as Seq, stored);
    let mut heads: Vec<_> = heads.into_iter().collect();
    heads.sort();
    let loaded: Vec<_> = db
        .load()
        .unwrap()
        .heads
        .iter()
        .map(|(t, s)| (target_key(t), *s))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect();
    assert_eq!(loaded, heads);
}
