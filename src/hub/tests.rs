//! The hub as pure logic: a recording outbox stands in for the sockets, a
//! recording store for the storage thread, and an in-memory SQLite answers
//! the recorded requests when a test says so (`settle`), exactly as the
//! storage thread would after a commit.
//!
//! [`Bench`] is every hub test's harness: a command's own test, beside its
//! handler (`commands/*.rs`), sends frames through it as a client would.
//! The tests here are the ones that cross parts and commands: quotas,
//! presence, read budgets, the cluster.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use mio::Token;
use serde_json::{Value, json};

use super::*;
use crate::config::{MAX_PRIVATE_ROOMS_PER_USER, MAX_PUBLIC_ROOMS_PER_USER};
use crate::outbox::recorder::{Recorder, Sent};
use crate::store::sqlite::Sqlite;
use crate::store::{Busy, PasswordHash, Reply, Request, Storage, UserRow, apply_batch};
use crate::users::Directory;

/// Requests as the hub sent them; `full` answers `Busy` like a full queue.
#[derive(Default)]
pub(super) struct Queue {
    pub(super) requests: Vec<Request>,
    pub(super) full: bool,
}

impl Storage for Queue {
    fn submit(&mut self, req: Request) -> Result<(), Busy> {
        if self.full {
            return Err(Busy);
        }
        self.requests.push(req);
        Ok(())
    }
    fn depth(&self) -> usize {
        self.requests.len()
    }
}

/// What the hub published to other nodes (frames and messages by where
/// they go, presence notes as `status:USER`), and what they send it.
#[derive(Default)]
pub(super) struct Wire {
    pub(super) published: Vec<(String, Option<UserId>)>,
    pub(super) inbound: VecDeque<BusEvent>,
}

struct TestBus(Rc<RefCell<Wire>>);

impl Bus for TestBus {
    fn node_name(&self) -> Option<&str> {
        Some("test")
    }
    fn start(&mut self, _: std::sync::Arc<dyn Fn() + Send + Sync>) {}
    fn send(&mut self, note: Vec<u8>) -> bool {
        let note = seal().open(&note).expect("the hub seals its notes");
        let env = wire::decode(note).expect("the hub sends notes it can read");
        let entry = match env.note {
            wire::Note::Frame {
                dest, except_user, ..
            } => match dest {
                wire::Dest::Room(r) => (format!("room:{r}"), except_user),
                wire::Dest::User(u) => (format!("user:{u}"), except_user),
                wire::Dest::Everyone => ("everyone".into(), except_user),
            },
            wire::Note::Message { target, .. } => match target {
                wire::TargetKey::Room(r) => (format!("room:{r}"), None),
                wire::TargetKey::Direct(a, b) => (format!("direct:{a}:{b}"), None),
            },
            wire::Note::Online { user } | wire::Note::Offline { user } => {
                (format!("status:{user}"), None)
            }
            _ => return true,
        };
        self.0.borrow_mut().published.push(entry);
        true
    }
    fn receive(&mut self) -> Option<BusEvent> {
        self.0.borrow_mut().inbound.pop_front()
    }
}

/// This test node's incarnation on the bus.
const NODE: u64 = 7;

/// The test cluster's key.
pub(super) const KEY: &[u8] = b"the test cluster's key: 32 bytes";

fn seal() -> seal::Seal {
    seal::Seal::new(KEY).expect("a long enough key")
}

/// `note` as node `node` sends it now: stamped with a counter no note
/// before it in this process had, and sealed with the test key.
pub(super) fn sealed(node: u64, note: &wire::Note<'_>) -> Vec<u8> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let stamp = wire::Stamp {
        node,
        counter: COUNTER.fetch_add(1, Ordering::Relaxed),
        sent_ms: crate::clock::now_ms(),
    };
    seal().close(wire::encode(stamp, note))
}

pub(super) const ALICE: UserId = 1;
pub(super) const BOB: UserId = 2;
pub(super) const CAROL: UserId = 3;

pub(super) struct Bench {
    pub(super) hub: Hub,
    pub(super) users: Directory,
    pub(super) queue: Queue,
    pub(super) out: Recorder,
    pub(super) db: Sqlite,
    pub(super) wire: Rc<RefCell<Wire>>,
    /// Each target's last `seq` handed out by `settle`.
    pub(super) seqs: HashMap<wire::TargetKey, Seq>,
}

fn user(id: UserId, name: &str) -> UserRow {
    UserRow {
        id,
        username: name.into(),
        email: format!("{name}@example.com"),
        password: PasswordHash {
            iterations: 1000,
            salt: [0; 16],
            hash: [0; 32],
        },
        created_ms: 0,
        last_seen_ms: None,
        account: Default::default(),
    }
}

impl Bench {
    pub(super) fn new() -> Bench {
        let wire = Rc::new(RefCell::new(Wire::default()));
        let snapshot = Snapshot::default();
        let mut hub = Hub::new(&snapshot, 0);
        hub.join_cluster(Box::new(TestBus(wire.clone())), "test", NODE, KEY, &[]);
        // Presence at once; `presence_grace_hides_a_reconnect` sets one.
        hub.set_presence_grace(std::time::Duration::ZERO);
        Bench {
            hub,
            users: Directory::from_rows(vec![
                user(ALICE, "alice"),
                user(BOB, "bob"),
                user(CAROL, "carol"),
            ]),
            queue: Queue::default(),
            out: Recorder::default(),
            db: Sqlite::open_in_memory().unwrap(),
            wire,
            seqs: HashMap::new(),
        }
    }

    pub(super) fn cx(&mut self) -> (&mut Hub, Ctx<'_, Recorder>) {
        (
            &mut self.hub,
            Ctx {
                users: &mut self.users,
                store: &mut self.queue,
                out: &mut self.out,
            },
        )
    }

    /// A chat connection of `user` on `token`.
    pub(super) fn open(&mut self, token: usize, user: UserId) -> Token {
        self.open_as(token, user, Some(crate::store::Sid(token as u128)))
    }

    /// A chat connection of `user`'s session `sid` on `token`.
    pub(super) fn open_as(
        &mut self,
        token: usize,
        user: UserId,
        sid: Option<crate::store::Sid>,
    ) -> Token {
        let t = Token(token);
        let (hub, mut cx) = self.cx();
        hub.open_session(
            &mut cx,
            ConnRef {
                token: t,
                serial: 1,
            },
            user,
            sid,
            None,
        );
        // A cluster node asks storage for every connect's unread counts;
        // answered at once with nothing, as storage would for these users
        // (the counts themselves are tested end to end, in ws_chat and cluster).
        let asked: Vec<Ticket> = self
            .queue
            .requests
            .iter()
            .filter_map(|r| match r {
                Request::Unread { ticket, user: u } if *u == user => Some(*ticket),
                _ => None,
            })
            .collect();
        self.queue
            .requests
            .retain(|r| !matches!(r, Request::Unread { ticket, .. } if asked.contains(ticket)));
        for ticket in asked {
            let (hub, mut cx) = self.cx();
            hub.on_unread(&mut cx, ticket, &[]);
        }
        t
    }

    /// An account change, as the HTTP desk hands it over.
    pub(super) fn account(&mut self, event: crate::accounts::AccountEvent) {
        let (hub, mut cx) = self.cx();
        hub.on_account(&mut cx, event);
    }

    /// Every close asked for so far: the connection and its code.
    pub(super) fn closes(&self) -> Vec<(Token, u16)> {
        self.out
            .sent
            .iter()
            .filter_map(|(t, s)| match s {
                Sent::Close(code) => Some((*t, *code)),
                _ => None,
            })
            .collect()
    }

    pub(super) fn close(&mut self, t: Token) {
        self.out.dead.insert(t);
        let (hub, mut cx) = self.cx();
        hub.close_session(&mut cx, t);
    }

    pub(super) fn send(&mut self, t: Token, frame: Value) {
        let (hub, mut cx) = self.cx();
        hub.on_text(&mut cx, t, &frame.to_string());
        self.answer_room_lookups();
    }

    /// A cluster node asks storage whether a room it has not heard of is
    /// private before a `join`: answered at once from the test database, as
    /// the reader would (tests of the wait itself answer by hand).
    pub(super) fn answer_room_lookups(&mut self) {
        let (lookups, rest): (Vec<Request>, Vec<Request>) =
            std::mem::take(&mut self.queue.requests)
                .into_iter()
                .partition(|r| matches!(r, Request::RoomInfo { .. }));
        self.queue.requests = rest;
        if lookups.is_empty() {
            return;
        }
        let mut replies = Vec::new();
        apply_batch(&mut self.db, &lookups, &mut replies);
        for reply in replies {
            if let Reply::RoomInfo { ticket, private } = reply {
                let (hub, mut cx) = self.cx();
                hub.on_room_info(&mut cx, ticket, Some(private));
            }
        }
    }

    /// Answers every write the hub asked for as failed, as a full disk
    /// would: nothing is stored.
    pub(super) fn fail_writes(&mut self) {
        for req in std::mem::take(&mut self.queue.requests) {
            let (hub, mut cx) = self.cx();
            match req {
                Request::PutMessage { msg, .. } => hub.on_message_stored(
                    &mut cx,
                    msg.id,
                    Stored::No { transient: false },
                    Vec::new(),
                ),
                Request::PutPrivateRoom { ticket, .. }
                | Request::AddMember { ticket, .. }
                | Request::RemoveMember { ticket, .. } => {
                    hub.on_write_answered(&mut cx, ticket, false)
                }
                _ => {}
            }
        }
    }

    /// Commits what the hub asked of storage and hands it the replies.
    pub(super) fn settle(&mut self) {
        let batch = std::mem::take(&mut self.queue.requests);
        let mut replies = Vec::new();
        apply_batch(&mut self.db, &batch, &mut replies);
        // SQLite does not sequence; number each target's messages as
        // PostgreSQL would, so the cluster path is the one under test.
        let targets: HashMap<MsgId, wire::TargetKey> = batch
            .iter()
            .filter_map(|r| match r {
                Request::PutMessage { msg, .. } => Some((
                    msg.id,
                    match (&msg.room, msg.to) {
                        (Some(room), _) => wire::TargetKey::Room(room.as_str().into()),
                        (None, to) => wire::TargetKey::direct(msg.from, to.unwrap_or(0)),
                    },
                )),
                _ => None,
            })
            .collect();
        for mut reply in replies {
            if let Reply::MessageStored { key, seq, .. } = &mut reply {
                let n = self.seqs.entry(targets[key].clone()).or_insert(0);
                *n += 1;
                *seq = *n;
            }
            let (hub, mut cx) = self.cx();
            match reply {
                Reply::MessageStored { .. }
                | Reply::MessageExists { .. }
                | Reply::MessageFailed { .. }
                | Reply::MessageRefused { .. } => {
                    let mut reply = reply;
                    let Some((key, stored, files)) = Stored::of(&mut reply) else {
                        unreachable!("a message reply")
                    };
                    hub.on_message_stored(&mut cx, key, stored, files)
                }
                Reply::Done { ticket } => hub.on_write_answered(&mut cx, ticket, true),
                Reply::Failed { ticket } => hub.on_write_answered(&mut cx, ticket, false),
                Reply::History { ticket, messages } => {
                    hub.on_history(&mut cx, ticket, Some(messages))
                }
                Reply::HistoryFailed { ticket } => hub.on_history(&mut cx, ticket, None),
                Reply::Unread { ticket, counts } => hub.on_unread(&mut cx, ticket, &counts),
                Reply::Resynced { ticket, snapshot } => {
                    hub.on_resync(&mut cx, ticket, Some(snapshot))
                }
                Reply::ResyncFailed { ticket } => hub.on_resync(&mut cx, ticket, None),
                Reply::RoomInfo { ticket, private } => {
                    hub.on_room_info(&mut cx, ticket, Some(private))
                }
                Reply::RoomInfoFailed { ticket } => hub.on_room_info(&mut cx, ticket, None),
                Reply::Changed { ticket, outcome } => hub.on_changed(&mut cx, ticket, outcome),
                // The application hands the notice to the senders; the
                // hub's tests look at the reads it asked for.
                Reply::PushProfile { ticket, .. } | Reply::PushProfileFailed { ticket } => {
                    let _ = hub.take_push(ticket);
                }
                Reply::UserStored { .. }
                | Reply::UserFailed { .. }
                | Reply::UserFound { .. }
                | Reply::FindUserFailed { .. }
                | Reply::AccountWritten { .. }
                | Reply::AccountRead { .. }
                | Reply::AccountReadFailed { .. }
                | Reply::Drained => {}
                other => panic!("the hub asked for no {other:?}"),
            }
        }
    }

    pub(super) fn frames(&self, t: Token) -> Vec<Value> {
        self.out.frames_to(t)
    }

    pub(super) fn types(&self, t: Token) -> Vec<String> {
        self.out.types_to(t)
    }

    /// The frames of `kind` that `t` was sent.
    pub(super) fn of_type(&self, t: Token, kind: &str) -> Vec<Value> {
        self.frames(t)
            .into_iter()
            .filter(|v| v["type"] == kind)
            .collect()
    }

    pub(super) fn put_message_count(&self) -> usize {
        self.queue
            .requests
            .iter()
            .filter(|r| matches!(r, Request::PutMessage { .. }))
            .count()
    }
}

/// Quotas: a user opens at most `MAX_PUBLIC_ROOMS_PER_USER` public rooms
/// (posting in an existing one is always fine) and owns at most
/// `MAX_PRIVATE_ROOMS_PER_USER` private ones; `general` cannot be taken by
/// `create_room` even before anyone used it.
#[test]
fn room_quotas_and_reserved_names() {
    let mut b = Bench::new();
    let a = b.open(1, ALICE);
    let bob = b.open(2, BOB);
    b.send(
        a,
        json!({"type": "create_room", "room": "general", "private": true}),
    );
    assert_eq!(b.of_type(a, "error")[0]["code"], "taken");
    for i in 0..MAX_PUBLIC_ROOMS_PER_USER {
        let room = format!("r{i}");
        b.send(a, json!({"type": "join", "room": room}));
        b.send(
            a,
            json!({"type": "message", "room": room, "content": "first"}),
        );
    }
    b.settle();
    b.out.clear();
    b.send(a, json!({"type": "join", "room": "one-too-many"}));
    b.send(
        a,
        json!({"type": "message", "room": "one-too-many", "content": "x"}),
    );
    assert_eq!(b.of_type(a, "error")[0]["code"], "forbidden");
    b.send(
        a,
        json!({"type": "message", "room": "r0", "content": "still fine"}),
    );
    b.send(bob, json!({"type": "join", "room": "one-too-many"}));
    b.send(
        bob,
        json!({"type": "message", "room": "one-too-many", "content": "bob opens it"}),
    );
    b.settle();
    assert_eq!(b.of_type(a, "ack").len(), 1);
    assert_eq!(b.of_type(bob, "ack").len(), 1, "quotas are per user");
    b.out.clear();
    for i in 0..MAX_PRIVATE_ROOMS_PER_USER {
        b.send(
            a,
            json!({"type": "create_room", "room": format!("p{i}"), "private": true}),
        );
    }
    b.send(
        a,
        json!({"type": "create_room", "room": "p-last", "private": true}),
    );
    assert_eq!(b.of_type(a, "error").len(), 1);
    assert_eq!(b.of_type(a, "error")[0]["code"], "forbidden");
    b.settle();
    assert_eq!(
        b.of_type(a, "room_members").len() as u32,
        MAX_PRIVATE_ROOMS_PER_USER
    );
}

/// A user's first connection tells everyone `online`, further ones do not,
/// and the last one to close tells everyone `offline`.
#[test]
fn user_status_on_first_and_last_connection() {
    let mut b = Bench::new();
    let a = b.open(1, ALICE);
    assert_eq!(b.types(a), ["user_status", "unread"]);
    let b1 = b.open(2, BOB);
    let b2 = b.open(3, BOB);
    let status = b.of_type(a, "user_status");
    assert_eq!(status.len(), 2, "alice herself, then bob once: {status:?}");
    assert_eq!(status[1]["user"], "bob");
    assert_eq!(status[1]["status"], "online");
    b.close(b1);
    assert_eq!(b.of_type(a, "user_status").len(), 2, "bob still has a tab");
    b.close(b2);
    let last = b.of_type(a, "user_status").pop().unwrap();
    assert_eq!(
        (&last["user"], &last["status"]),
        (&json!("bob"), &json!("offline"))
    );
    assert!(!b.hub.is_online(BOB) && b.hub.is_online(ALICE));
    assert_eq!(
        b.wire
            .borrow()
            .published
            .iter()
            .filter(|p| p.0.starts_with("status:"))
            .count(),
        3,
        "alice online, bob online, bob offline: told to the other nodes"
    );
}

/// A frame another node published is delivered here like a local one.
#[test]
fn bus_frames_are_delivered_locally() {
    let mut b = Bench::new();
    let a = b.open(1, ALICE);
    let bob = b.open(2, BOB);
    for t in [a, bob] {
        b.send(t, json!({"type": "join", "room": "general"}));
    }
    b.out.clear();
    let frame = |v: Value| {
        let mut bytes = Vec::new();
        crate::ws::codec::encode(&mut bytes, crate::ws::codec::TEXT, v.to_string().as_bytes());
        bytes
    };
    let typing = json!({"type": "typing", "room": "general", "user": "alice"});
    let note = |dest, except_user, frame: Vec<u8>| {
        BusEvent::Note(sealed(
            NODE + 1,
            &wire::Note::Frame {
                dest,
                except_user,
                frame: frame.into(),
            },
        ))
    };
    b.wire.borrow_mut().inbound.extend([
        note(
            wire::Dest::Room("general".into()),
            Some(ALICE),
            frame(typing.clone()),
        ),
        note(
            wire::Dest::Room("elsewhere".into()),
            None,
            frame(json!({"type": "x"})),
        ),
        // Its own notes come back to a node from the bus: ignored.
        BusEvent::Note(sealed(
            NODE,
            &wire::Note::Frame {
                dest: wire::Dest::Room("general".into()),
                except_user: None,
                frame: frame(json!({"type": "mine"})).into(),
            },
        )),
    ]);
    let (hub, mut cx) = b.cx();
    hub.on_bus(&mut cx);
    assert_eq!(b.frames(bob), [typing]);
    assert!(
        b.frames(a).is_empty(),
        "alice's own typing, from her other node"
    );
}

/// Private-room changes are applied only once stored: a failed create
/// leaves no room (and the name free), a failed removal leaves the member in.
#[test]
fn private_room_changes_that_fail_change_nothing() {
    let mut b = Bench::new();
    let a = b.open(1, ALICE);
    let bob = b.open(2, BOB);
    let create = json!({"type": "create_room", "room": "ops", "private": true, "members": ["bob"]});
    b.send(a, create.clone());
    b.fail_writes();
    assert_eq!(b.of_type(a, "error")[0]["code"], "internal");
    assert!(b.of_type(bob, "room_members").is_empty());
    assert_eq!(b.hub.parts.rooms.id("ops"), None);
    b.send(a, create);
    b.settle();
    b.send(bob, json!({"type": "join", "room": "ops"}));
    b.out.clear();
    b.send(
        a,
        json!({"type": "remove_member", "room": "ops", "user": "bob"}),
    );
    b.fail_writes();
    assert_eq!(b.of_type(a, "error")[0]["code"], "internal");
    assert!(b.of_type(bob, "leave").is_empty());
    b.send(
        bob,
        json!({"type": "message", "room": "ops", "content": "still in"}),
    );
    b.settle();
    assert_eq!(b.of_type(a, "message").len(), 1, "bob is still a member");
}

/// A room with messages but no room row (its write was lost) loads as
/// private to nobody, never as public.
#[test]
fn orphan_rooms_admit_nobody() {
    let snapshot = Snapshot {
        orphan_rooms: vec!["secret".into()],
        ..Snapshot::default()
    };
    let mut b = Bench::new();
    b.hub = Hub::new(&snapshot, 0);
    let a = b.open(1, ALICE);
    b.send(a, json!({"type": "join", "room": "secret", "since": 0}));
    assert_eq!(b.of_type(a, "error")[0]["code"], "forbidden");
    assert_eq!(b.hub.may_read(ALICE, "secret"), Err(Denied::Private));
}

/// The number of history reads the hub has asked storage for.
fn history_requests(b: &Bench) -> usize {
    b.queue
        .requests
        .iter()
        .filter(|r| matches!(r, Request::History { .. }))
        .count()
}

/// Reads in flight are bounded per connection: two small pages go to
/// storage, a third frame waits whole with the connection's input held, and
/// starts (input resumed) when one of them completes. Everything is answered.
#[test]
fn reads_in_flight_are_bounded_per_connection() {
    let mut b = Bench::new();
    let a = b.open(1, ALICE);
    b.send(a, json!({"type": "join", "room": "general"}));
    b.send(
        a,
        json!({"type": "message", "room": "general", "content": "m"}),
    );
    b.settle();
    b.out.clear();
    // The join looked the room up first (a cluster node), holding input
    // until it was answered.
    b.out.resumed.clear();
    for _ in 0..3 {
        b.send(
            a,
            json!({"type": "history", "room": "general", "limit": 10}),
        );
    }
    assert_eq!(history_requests(&b), 2);
    assert!(!b.hub.takes_input(a), "the third waits, and input with it");
    b.settle();
    assert_eq!(
        history_requests(&b),
        1,
        "the third went when the others came back"
    );
    assert!(b.hub.takes_input(a));
    assert_eq!(b.out.resumed, vec![a]);
    b.settle();
    assert_eq!(b.of_type(a, "history").len(), 3);
    assert_eq!(b.hub.parts.reads.in_flight(), (0, 0));
}

/// A connection that has not read its replies cannot reserve another: the
/// frame waits until its output drains (checked on the once-a-second tick),
/// while another connection's reads go on.
#[test]
fn unread_replies_hold_further_reads() {
    let mut b = Bench::new();
    let a = b.open(1, ALICE);
    let bob = b.open(2, BOB);
    b.send(a, json!({"type": "join", "room": "general"}));
    b.send(
        a,
        json!({"type": "message", "room": "general", "content": "m"}),
    );
    b.settle();
    b.out.queued.insert(a, 6 * 1024 * 1024);
    b.send(
        a,
        json!({"type": "history", "room": "general", "limit": 200}),
    );
    b.send(
        bob,
        json!({"type": "history", "room": "general", "limit": 200}),
    );
    assert_eq!(history_requests(&b), 1, "only bob's");
    assert!(!b.hub.takes_input(a) && b.hub.takes_input(bob));
    b.out.queued.insert(a, 0);
    let (hub, mut cx) = b.cx();
    hub.retry_deferred(&mut cx);
    assert_eq!(history_requests(&b), 2);
    assert!(b.hub.takes_input(a));
}

/// One user's sockets share one reply budget: with another socket of
/// theirs holding unread output near `USER_REPLY_BYTES`, a page asked on a
/// fresh socket waits (its input held) while another user's goes on; it
/// starts once that output drains.
#[test]
fn a_users_sockets_share_one_reply_budget() {
    use crate::config::USER_REPLY_BYTES;
    let mut b = Bench::new();
    let idle = b.open(1, ALICE);
    let fresh = b.open(2, ALICE);
    let bob = b.open(3, BOB);
    b.send(idle, json!({"type": "join", "room": "general"}));
    b.send(
        idle,
        json!({"type": "message", "room": "general", "content": "m"}),
    );
    b.settle();
    b.out.queued.insert(idle, USER_REPLY_BYTES - 64 * 1024);
    let page = json!({"type": "history", "room": "general", "limit": 200});
    b.send(fresh, page.clone());
    b.send(bob, page);
    assert_eq!(history_requests(&b), 1, "only bob's");
    assert!(!b.hub.takes_input(fresh) && b.hub.takes_input(bob));
    b.out.queued.insert(idle, 0);
    let (hub, mut cx) = b.cx();
    hub.retry_deferred(&mut cx);
    assert_eq!(history_requests(&b), 2);
    assert!(b.hub.takes_input(fresh));
}

/// Server-wide: with every connection's unsent output near
/// `SERVER_REPLY_BYTES`, one read still starts (none is in flight, so the
/// budget cannot wedge), and the next waits until it came back.
#[test]
fn reads_wait_while_the_server_holds_its_reply_budget() {
    use crate::config::SERVER_REPLY_BYTES;
    let mut b = Bench::new();
    let a = b.open(1, ALICE);
    let bob = b.open(2, BOB);
    let carol = b.open(3, CAROL);
    b.send(a, json!({"type": "join", "room": "general"}));
    b.send(
        a,
        json!({"type": "message", "room": "general", "content": "m"}),
    );
    b.settle();
    // Others' output: the budget is the server's, whoever holds it.
    for (i, t) in (100..116).map(Token).enumerate() {
        b.out.queued.insert(t, SERVER_REPLY_BYTES / 16 - i);
    }
    let page = json!({"type": "history", "room": "general", "limit": 200});
    b.send(bob, page.clone());
    b.send(carol, page);
    assert_eq!(history_requests(&b), 1, "bob's, alone");
    assert!(!b.hub.takes_input(carol));
    b.settle();
    assert_eq!(history_requests(&b), 1, "carol's, once bob's came back");
    assert!(b.hub.takes_input(carol));
}

/// With a presence grace, a user whose last connection drops and comes
/// back within it causes no `leave`, `join` or `user_status` for anyone;
/// one who stays away leaves their rooms, then goes offline, once the grace
/// is over; meanwhile they are still listed in `online_users`.
#[test]
fn presence_grace_hides_a_reconnect() {
    let mut b = Bench::new();
    b.hub
        .set_presence_grace(std::time::Duration::from_millis(50));
    let a = b.open(1, ALICE);
    let bob = b.open(2, BOB);
    for t in [a, bob] {
        b.send(t, json!({"type": "join", "room": "general"}));
    }
    b.out.clear();
    b.close(bob);
    let bob = b.open(3, BOB);
    b.send(bob, json!({"type": "join", "room": "general"}));
    let (hub, mut cx) = b.cx();
    hub.on_tick(&mut cx);
    assert_eq!(b.types(a), Vec::<String>::new(), "a reconnect is not news");
    b.close(bob);
    let carol = b.open(4, CAROL);
    b.send(carol, json!({"type": "join", "room": "general"}));
    let listed = b.of_type(carol, "online_users");
    assert_eq!(
        listed[0]["users"],
        json!(["alice", "bob", "carol"]),
        "bob lingers"
    );
    b.out.clear();
    std::thread::sleep(std::time::Duration::from_millis(60));
    let (hub, mut cx) = b.cx();
    hub.on_tick(&mut cx);
    assert_eq!(b.types(a), ["leave", "user_status"]);
    assert_eq!(b.of_type(a, "user_status")[0]["status"], "offline");
    assert!(!b.hub.is_online(BOB));
}

/// Error messages quote client input only briefly: a private message to a
/// 10,000-character name, or a frame type that long, does not come back
/// whole in the `error` frame.
#[test]
fn errors_quote_input_briefly() {
    let mut b = Bench::new();
    let a = b.open(1, ALICE);
    let long = "x".repeat(10_000);
    b.send(
        a,
        json!({"type": "private_message", "to": long, "content": "hi"}),
    );
    b.send(a, json!({"type": long}));
    let errors = b.of_type(a, "error");
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["code"], "no_such_user");
    assert_eq!(errors[1]["code"], "unknown_type");
    for e in &errors {
        let m = e["message"].as_str().unwrap();
        assert!(m.chars().count() < 120, "{} chars", m.chars().count());
        assert!(m.contains('…'), "{m}");
    }
}

// ---- one node of a cluster ---------------------------------------------------

/// Another node's incarnation in these tests.
const PEER: u64 = NODE + 1;

impl Bench {
    /// A note from the peer node, handled as the loop would.
    pub(super) fn hear_peer(&mut self, note: wire::Note<'_>) {
        let bytes = sealed(PEER, &note);
        self.wire
            .borrow_mut()
            .inbound
            .push_back(BusEvent::Note(bytes));
        let (hub, mut cx) = self.cx();
        hub.on_bus(&mut cx);
    }

    /// A room message as the peer publishes it.
    pub(super) fn peer_message(&mut self, room: &str, seq: Seq, id: MsgId, content: &str) {
        let mut frame = Vec::new();
        let v = json!({"type": "message", "id": id, "room": room, "user": "carol",
                       "content": content, "timestamp": "2026-12-02T00:00:00.000Z"});
        crate::ws::codec::encode(&mut frame, crate::ws::codec::TEXT, v.to_string().as_bytes());
        self.hear_peer(wire::Note::Message {
            target: wire::TargetKey::Room(room.into()),
            seq,
            id,
            frame: frame.into(),
        });
    }

    pub(super) fn contents(&self, t: Token) -> Vec<String> {
        self.of_type(t, "message")
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_string())
            .collect()
    }
}

/// Messages of one room from another node are delivered in `seq` order,
/// whatever order the bus brought them in, and each once.
#[test]
fn peer_messages_are_delivered_in_sequence() {
    let mut b = Bench::new();
    let bob = b.open(2, BOB);
    b.send(bob, json!({"type": "join", "room": "general"}));
    b.out.clear();
    b.peer_message("general", 2, 20, "second");
    assert!(b.contents(bob).is_empty(), "the first is missing: wait");
    b.peer_message("general", 1, 10, "first");
    b.peer_message("general", 2, 20, "second");
    b.peer_message("general", 3, 30, "third");
    assert_eq!(b.contents(bob), ["first", "second", "third"]);
}

/// A node's own commit waits behind an earlier message of the same room
/// that another node committed but whose note has not arrived yet.
#[test]
fn own_message_waits_for_an_earlier_one_from_a_peer() {
    let mut b = Bench::new();
    let a = b.open(1, ALICE);
    let bob = b.open(2, BOB);
    for t in [a, bob] {
        b.send(t, json!({"type": "join", "room": "general"}));
    }
    b.out.clear();
    // The peer committed seq 1; ours is stored as seq 2.
    b.seqs.insert(wire::TargetKey::Room("general".into()), 1);
    b.send(
        a,
        json!({"type": "message", "room": "general", "content": "mine", "client_id": "c"}),
    );
    b.settle();
    assert_eq!(b.types(a), ["ack"], "acked at the commit, not held");
    assert!(b.contents(bob).is_empty(), "not before the peer's");
    b.peer_message("general", 1, 1, "theirs");
    assert_eq!(b.contents(bob), ["theirs", "mine"]);
    assert_eq!(b.contents(a), ["theirs"], "no echo of her own, even late");
}

/// A message that never arrives on the bus is read back from storage once
/// the gap outlives `GAP_WAIT_MS`, and delivered in its place.
#[test]
fn a_lasting_gap_is_read_back_from_storage() {
    let mut b = Bench::new();
    let bob = b.open(2, BOB);
    b.send(bob, json!({"type": "join", "room": "general"}));
    b.out.clear();
    b.queue.requests.clear();
    b.peer_message("general", 2, 20, "second");
    let tick = |b: &mut Bench| {
        let (hub, mut cx) = b.cx();
        hub.on_tick(&mut cx);
    };
    tick(&mut b);
    let catchups = |b: &Bench| {
        b.queue
            .requests
            .iter()
            .filter(|r| matches!(r, Request::Catchup { .. }))
            .count()
    };
    assert_eq!(catchups(&b), 0, "not before the wait");
    std::thread::sleep(std::time::Duration::from_millis(
        crate::config::GAP_WAIT_MS as u64 + 50,
    ));
    tick(&mut b);
    let Some(Request::Catchup {
        ticket,
        target,
        after,
        ..
    }) = b
        .queue
        .requests
        .iter()
        .find(|r| matches!(r, Request::Catchup { .. }))
    else {
        panic!("no catch-up asked: {:?}", b.queue.requests)
    };
    assert_eq!((target, *after), (&Target::Room("general".into()), 0));
    let ticket = *ticket;
    tick(&mut b);
    assert_eq!(catchups(&b), 1, "one read in flight at a time");
    let stored = |id, seq, content: &str| StoredMessage {
        id,
        room: Some("general".into()),
        from: CAROL,
        to: None,
        content: content.into(),
        timestamp_ms: 0,
        seq,
        ..StoredMessage::default()
    };
    let (hub, mut cx) = b.cx();
    hub.on_history(
        &mut cx,
        ticket,
        Some(vec![stored(10, 1, "first"), stored(20, 2, "second")]),
    );
    assert_eq!(b.contents(bob), ["first", "second"]);
}

/// Presence is the cluster's: a user online only on another node is shown
/// here, `join`/`leave` follow their first and last node, and a user online
/// on two nodes goes offline only when both say so.
#[test]
fn presence_follows_the_whole_cluster() {
    let mut b = Bench::new();
    let a = b.open(1, ALICE);
    b.send(a, json!({"type": "join", "room": "general"}));
    b.out.clear();
    b.hear_peer(wire::Note::Hello { name: "n2".into() });
    b.hear_peer(wire::Note::Online { user: CAROL });
    b.hear_peer(wire::Note::Entered {
        room: "general".into(),
        user: CAROL,
    });
    let status = b.of_type(a, "user_status");
    assert_eq!(
        (&status[0]["user"], &status[0]["status"]),
        (&json!("carol"), &json!("online"))
    );
    assert_eq!(b.of_type(a, "join")[0]["user"], "carol");
    assert!(b.hub.is_online(CAROL));
    b.send(a, json!({"type": "join", "room": "general"}));
    let online = b.of_type(a, "online_users").pop().unwrap();
    assert_eq!(
        (&online["count"], &online["users"]),
        (&json!(2), &json!(["alice", "carol"]))
    );
    // Bob is here and on the peer: the peer's news about him is no news.
    let bob = b.open(2, BOB);
    b.out.clear();
    b.hear_peer(wire::Note::Online { user: BOB });
    b.hear_peer(wire::Note::Offline { user: BOB });
    assert!(b.of_type(a, "user_status").is_empty());
    b.close(bob);
    assert_eq!(
        b.of_type(a, "user_status").len(),
        1,
        "his last connection anywhere"
    );
    // The peer restarts (a new incarnation with the same name): carol's old
    // connection there is gone.
    b.out.clear();
    let restarted = sealed(PEER + 1, &wire::Note::Hello { name: "n2".into() });
    b.wire
        .borrow_mut()
        .inbound
        .push_back(BusEvent::Note(restarted));
    let (hub, mut cx) = b.cx();
    hub.on_bus(&mut cx);
    assert_eq!(b.of_type(a, "leave")[0]["user"], "carol");
    assert_eq!(b.of_type(a, "user_status")[0]["status"], "offline");
    assert!(!b.hub.is_online(CAROL));
}

/// This node tells the others about its users' presence, and answers a
/// `Hello` with its whole state.
#[test]
fn presence_is_told_to_the_other_nodes() {
    let mut b = Bench::new();
    let a = b.open(1, ALICE);
    b.send(a, json!({"type": "join", "room": "general"}));
    let sent = b.wire.borrow().published.clone();
    assert!(
        sent.contains(&(format!("status:{ALICE}"), None)),
        "{sent:?}"
    );
    b.hear_peer(wire::Note::Hello { name: "n2".into() });
    // The state note is not recorded by name; its effect is: a peer that
    // learns it shows alice (checked through a second hub below).
    let mut other = Bench::new();
    let carol = other.open(3, CAROL);
    other.out.clear();
    let state = sealed(
        PEER,
        &peers::own_state(&b.hub.parts.sessions, &b.hub.parts.rooms),
    );
    other
        .wire
        .borrow_mut()
        .inbound
        .push_back(BusEvent::Note(state));
    let (hub, mut cx) = other.cx();
    hub.on_bus(&mut cx);
    assert_eq!(other.of_type(carol, "user_status")[0]["user"], "alice");
}

/// A private room another node created a moment ago (its note not here
/// yet) is not opened as a public room by a `join`: the node asks storage
/// first, and a non-member is refused; a member gets in.
#[test]
fn a_room_made_elsewhere_is_looked_up_before_a_join() {
    let mut b = Bench::new();
    let carol = b.open(3, CAROL);
    let bob = b.open(2, BOB);
    let row = PrivateRoomRow {
        name: "ops".into(),
        owner: ALICE,
        members: vec![ALICE, BOB],
    };
    let mut replies = Vec::new();
    let made = Request::PutPrivateRoom {
        ticket: crate::store::fixtures::TICKET,
        row,
    };
    apply_batch(&mut b.db, &[made], &mut replies);
    b.out.clear();
    b.send(carol, json!({"type": "join", "room": "ops"}));
    assert_eq!(b.of_type(carol, "error")[0]["code"], "forbidden");
    b.send(bob, json!({"type": "join", "room": "ops"}));
    assert_eq!(b.of_type(bob, "online_users")[0]["room"], "ops");
    b.send(
        carol,
        json!({"type": "message", "room": "ops", "content": "let me in"}),
    );
    assert_eq!(b.of_type(carol, "error")[1]["code"], "not_member");
}

/// A note naming a room this node has not heard of (a message, or a
/// member's presence from another node) does not open it as public: the
/// room stays unknown until storage says what it is, and a non-member's
/// `join` of a private room is refused even when the messages came first.
#[test]
fn notes_do_not_open_unknown_rooms_as_public() {
    let mut b = Bench::new();
    let carol = b.open(3, CAROL);
    let made = Request::PutPrivateRoom {
        ticket: crate::store::fixtures::TICKET,
        row: PrivateRoomRow {
            name: "ops".into(),
            owner: ALICE,
            members: vec![ALICE, BOB],
        },
    };
    apply_batch(&mut b.db, &[made], &mut Vec::new());
    b.hear_peer(wire::Note::Hello { name: "n2".into() });
    b.hear_peer(wire::Note::Entered {
        room: "ops".into(),
        user: BOB,
    });
    b.peer_message("ops", 1, 1, "secret");
    b.peer_message("ops", 2, 2, "more");
    assert!(
        b.hub.parts.rooms.id("ops").is_none(),
        "not opened before storage says"
    );
    let lookups = b
        .queue
        .requests
        .iter()
        .filter(|r| matches!(r, Request::RoomInfo { .. }))
        .count();
    assert_eq!(lookups, 1, "one read for the burst of notes");
    b.out.clear();
    b.send(carol, json!({"type": "join", "room": "ops"}));
    assert_eq!(b.of_type(carol, "error")[0]["code"], "forbidden");
    let ops = b.hub.parts.rooms.id("ops").expect("opened by the answers");
    assert!(b.hub.parts.rooms.get(ops).private().is_some());
    assert_eq!(
        b.hub.parts.rooms.get(ops).online(),
        1,
        "bob, from the peer's note"
    );
}

/// A room joined here as public before the news that another node made it
/// private: at the news, non-members leave it (and are told), and its
/// messages no longer reach them.
#[test]
fn a_room_turning_private_drops_non_members() {
    let mut b = Bench::new();
    let carol = b.open(3, CAROL);
    let bob = b.open(2, BOB);
    for t in [carol, bob] {
        b.send(t, json!({"type": "join", "room": "ops"}));
    }
    b.out.clear();
    b.hear_peer(wire::Note::Hello { name: "n2".into() });
    b.hear_peer(wire::Note::RoomMade(PrivateRoomRow {
        name: "ops".into(),
        owner: ALICE,
        members: vec![ALICE, BOB],
    }));
    let left = b.of_type(carol, "leave");
    assert_eq!(
        left,
        [json!({"type": "leave", "room": "ops", "user": "carol"})]
    );
    b.out.clear();
    b.peer_message("ops", 1, 1, "members only");
    assert_eq!(b.contents(bob), ["members only"]);
    assert!(b.contents(carol).is_empty());
}

/// A room look-up that storage could not answer (its failure built as
/// storage builds it) reaches the look-up's waiter, not a history waiter:
/// the `join` is told `busy` and nothing is opened, so the next `join`
/// asks storage again.
#[test]
fn a_failed_room_look_up_answers_the_join_busy() {
    let mut b = Bench::new();
    let carol = b.open(3, CAROL);
    b.hear_peer(wire::Note::Hello { name: "n2".into() });
    b.out.clear();
    let join = json!({"type": "join", "room": "ops"}).to_string();
    let (hub, mut cx) = b.cx();
    hub.on_text(&mut cx, carol, &join);
    let lookup = b
        .queue
        .requests
        .iter()
        .position(|r| matches!(r, Request::RoomInfo { .. }))
        .expect("the join asks storage first");
    let failed = b.queue.requests.remove(lookup).failure(false);
    let Some(Reply::RoomInfoFailed { ticket }) = failed else {
        panic!("a failed look-up is its own reply: {failed:?}");
    };
    let (hub, mut cx) = b.cx();
    hub.on_room_info(&mut cx, ticket, None);
    assert_eq!(b.of_type(carol, "error")[0]["code"], "busy");
    assert!(b.hub.parts.rooms.id("ops").is_none(), "nothing opened");
    b.send(carol, json!({"type": "join", "room": "ops"}));
    assert!(
        b.hub.parts.rooms.id("ops").is_some(),
        "asked again, and opened"
    );
}
