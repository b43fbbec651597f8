//! The cluster bus trusts nothing it has not verified: nodes on a real
//! PostgreSQL and Redis, and a test that publishes on their channel with a
//! raw Redis client as an attacker (or a broken node) would — forged
//! notes, notes with user id 0 or ids nobody has, a node with another key,
//! captured notes published again — and reads what the nodes publish
//! (users by id: no hash, no email). Redis AUTH with an ACL user.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::{self, CROSS, Cluster, metric, node_with_key, peers};
use common::services::{Redis, unique_channel};
use common::{Server, Ws, frame_type, unix_now};
use ring::hmac;
use serde_json::{Value, json};

/// The nodes' cluster key, as the tests seal notes with it.
const KEY: &[u8] = cluster::KEY.as_bytes();

/// Publishes `note` on the cluster's channel, as anyone with access to the
/// Redis can.
fn publish(c: &Cluster, note: &[u8]) {
    let mut r = Raw::connect(&c.redis);
    r.command(&[b"PUBLISH", c.channel.as_bytes(), note]);
}

fn rejected(n: &Server) -> u64 {
    metric(n, "hubbub_cluster_notes_rejected_total")
}

// ---- a raw Redis client, as an attacker on the channel has --------------------

struct Raw(BufReader<TcpStream>);

impl Raw {
    /// Connects to `redis://[user:password@]host:port`, authenticating.
    fn connect(url: &str) -> Raw {
        let rest = url.strip_prefix("redis://").unwrap();
        let rest = rest.split('/').next().unwrap();
        let (auth, addr) = match rest.rsplit_once('@') {
            Some((auth, addr)) => (Some(auth), addr),
            None => (None, rest),
        };
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut r = Raw(BufReader::new(s));
        if let Some(auth) = auth {
            let (user, pass) = auth.split_once(':').unwrap();
            let reply = if user.is_empty() {
                r.command(&[b"AUTH", pass.as_bytes()])
            } else {
                r.command(&[b"AUTH", user.as_bytes(), pass.as_bytes()])
            };
            assert_eq!(reply, b"OK", "AUTH");
        }
        r
    }

    fn send(&mut self, args: &[&[u8]]) {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.0.get_mut().write_all(&out).unwrap();
    }

    /// Sends a command and reads its (simple or integer) reply line.
    fn command(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(args);
        let mut line = Vec::new();
        self.0.read_until(b'\n', &mut line).unwrap();
        assert!(
            !line.starts_with(b"-"),
            "{}",
            String::from_utf8_lossy(&line)
        );
        line[1..line.len() - 2].to_vec()
    }

    /// One RESP value, flattened into its bulk strings.
    fn value(&mut self, into: &mut Vec<Vec<u8>>) -> std::io::Result<()> {
        let mut line = Vec::new();
        self.0.read_until(b'\n', &mut line)?;
        let n: i64 = String::from_utf8_lossy(&line[1..line.len() - 2])
            .parse()
            .unwrap_or(0);
        match line[0] {
            b'*' => {
                for _ in 0..n {
                    self.value(into)?;
                }
            }
            b'$' => {
                let mut b = vec![0; n as usize + 2];
                self.0.read_exact(&mut b)?;
                b.truncate(n as usize);
                into.push(b);
            }
            _ => into.push(line[1..line.len() - 2].to_vec()),
        }
        Ok(())
    }

    fn subscribe(url: &str, channel: &str) -> Raw {
        let mut r = Raw::connect(url);
        r.send(&[b"SUBSCRIBE", channel.as_bytes()]);
        let mut confirm = Vec::new();
        r.value(&mut confirm).unwrap();
        r
    }

    /// The notes published on the channel within `within`.
    fn notes(&mut self, within: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + within;
        let mut notes = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return notes;
            }
            self.0.get_ref().set_read_timeout(Some(left)).unwrap();
            let mut parts = Vec::new();
            match self.value(&mut parts) {
                Ok(()) if parts.len() == 3 && parts[0] == b"message" => {
                    notes.push(parts.pop().unwrap())
                }
                Ok(()) => {}
                Err(_) => return notes,
            }
        }
    }
}

// ---- notes as a node encodes them (`src/hub/wire.rs`, version 2) -------------

const VERSION: u8 = 2;
/// Bytes before a note's kind: version, sender, counter, send time.
const HEAD: usize = 25;
const TAG: usize = 32;

fn stamped(node: u64, counter: u64, sent_ms: i64, body: &[u8]) -> Vec<u8> {
    let mut v = vec![VERSION];
    v.extend_from_slice(&node.to_le_bytes());
    v.extend_from_slice(&counter.to_le_bytes());
    v.extend_from_slice(&(sent_ms as u64).to_le_bytes());
    v.extend_from_slice(body);
    v
}

fn sealed_with(key: &[u8], note: Vec<u8>) -> Vec<u8> {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), &note);
    let mut v = note;
    v.extend_from_slice(tag.as_ref());
    v
}

/// `body` from a new sender, now, sealed with `key`.
fn fresh_note(key: &[u8], body: &[u8]) -> Vec<u8> {
    let node = 0x7e57_0000_0000 + u64::from(rand_u32());
    sealed_with(key, stamped(node, 1, unix_now() * 1000, body))
}

fn rand_u32() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(1);
    N.fetch_add(1, Ordering::Relaxed) ^ std::process::id()
}

fn text_frame(json: &str) -> Vec<u8> {
    assert!(json.len() < 126);
    let mut f = vec![0x81, json.len() as u8];
    f.extend_from_slice(json.as_bytes());
    f
}

/// `Frame` to every connected user.
fn to_everyone(frame: &[u8]) -> Vec<u8> {
    let mut v = vec![9, 2];
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    v.extend_from_slice(frame);
    v
}

fn online(user: u32) -> Vec<u8> {
    let mut v = vec![4];
    v.extend_from_slice(&user.to_le_bytes());
    v
}

fn entered(room: &str, user: u32) -> Vec<u8> {
    let mut v = vec![6];
    v.extend_from_slice(&(room.len() as u32).to_le_bytes());
    v.extend_from_slice(room.as_bytes());
    v.extend_from_slice(&user.to_le_bytes());
    v
}

/// Frames other than presence within `ms`.
fn quiet_but_presence(ws: &mut Ws, ms: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_millis(ms);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return seen;
        }
        match ws.next_event(left) {
            common::Event::Frame(v) => {
                if !matches!(frame_type(&v), "user_status" | "join" | "leave") {
                    seen.push(v)
                }
            }
            common::Event::Timeout => return seen,
            other => panic!("{other:?}"),
        }
    }
}

/// A note sealed with another key is dropped and counted, whatever it
/// says; the same note sealed with the cluster key is applied (so the
/// forgery failed on its seal alone). A flood of forgeries is logged in a
/// line or two, not a line each.
#[test]
fn forged_notes_are_dropped_and_logged_without_flooding() {
    let c = Cluster::start(2);
    let t = c.token("alice");
    let (mut a, _) = c.nodes[1].ws_ready("alice", &t, true);
    let ghost = to_everyone(&text_frame(r#"{"type":"ghost"}"#));
    publish(&c, &fresh_note(b"not the cluster's key, but 32 b.", &ghost));
    let mut flipped = fresh_note(KEY, &ghost);
    flipped[HEAD + 12] ^= 1;
    publish(&c, &flipped);
    publish(&c, &ghost); // no tag at all
    assert_eq!(quiet_but_presence(&mut a, 500), Vec::<Value>::new());
    publish(&c, &fresh_note(KEY, &ghost));
    assert_eq!(
        quiet_but_presence(&mut a, 1000),
        [json!({"type": "ghost"})],
        "the same note, sealed with the key, is applied"
    );
    let before = rejected(&c.nodes[1]);
    assert!(before >= 3, "{before}");
    let mut r = Raw::connect(&c.redis);
    for i in 0..2000u32 {
        let mut forged = fresh_note(b"an attacker's guess at a key 32b", &online(i + 1));
        forged[HEAD - 1] ^= 1;
        r.send(&[b"PUBLISH", c.channel.as_bytes(), &forged]);
    }
    for _ in 0..2000 {
        let mut line = Vec::new();
        r.0.read_until(b'\n', &mut line).unwrap();
    }
    cluster::wait_until(CROSS, "the flood to be counted", || {
        rejected(&c.nodes[1]) >= before + 2000
    });
    let lines = c.nodes[1]
        .logs()
        .lines()
        .filter(|l| l.contains("dropped") && l.contains("note"))
        .count();
    assert!(
        (1..=3).contains(&lines),
        "{lines} log lines for 2003 rejected notes"
    );
    assert_eq!(quiet_but_presence(&mut a, 200), Vec::<Value>::new());
}

/// Notes that verify but cannot be right — user id 0 (which crashed a
/// node), ids storage does not hold, a room name off the rule, a frame that
/// is not UTF-8 — are dropped; the node keeps serving, and nobody is shown
/// a ghost.
#[test]
fn verified_notes_with_impossible_fields_are_dropped() {
    let c = Cluster::start(2);
    let t = c.token("alice");
    let (mut a, _) = c.nodes[1].ws_ready("alice", &t, true);
    a.join("general");
    let mut bad_utf8 = text_frame(r#"{"type":"x","v":"ab"}"#);
    let at = bad_utf8.len() - 3;
    bad_utf8[at] = 0xff;
    for body in [
        online(0),
        entered("general", 0),
        online(4_000_000_000),
        entered("general", 3_000_000_000),
        entered("General", 1),
        to_everyone(&bad_utf8),
    ] {
        publish(&c, &fresh_note(KEY, &body));
    }
    assert_eq!(quiet_but_presence(&mut a, 1000), Vec::<Value>::new());
    a.expect_silence(10);
    for n in &c.nodes {
        assert_eq!(n.get("/healthz", None).status, 200);
    }
    let mut n2 = c.nodes.into_iter().nth(1).unwrap();
    assert!(n2.is_running(), "{}", n2.logs());
    let logs = n2.logs();
    assert!(logs.contains("malformed"), "{logs}");
    assert!(logs.contains("whom storage does not hold"), "{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
}

/// A node started with another key is never heard as a member (and does
/// not hear the others): peer counts stay as they were, both ways.
#[test]
fn a_node_with_another_key_is_not_a_member() {
    let c = Cluster::start(2);
    let stranger = node_with_key(
        &c.pg,
        &c.redis,
        &c.channel,
        "stranger",
        "a different key, also 32 bytes..",
    );
    cluster::wait_until(CROSS, "the stranger's notes to be refused", || {
        rejected(&c.nodes[0]) > 0
    });
    thread::sleep(Duration::from_millis(2500)); // more than a beat
    assert_eq!(peers(&c.nodes[0]), 1);
    assert_eq!(peers(&c.nodes[1]), 1);
    assert_eq!(peers(&stranger), 0);
    assert!(c.nodes[0].logs().contains("failed verification"));
}

/// Notes captured off the bus and published again do no harm: a removed
/// member's `add` note, replayed, does not make them a member again on the
/// other node; a note older than the freshness bound is refused too.
#[test]
fn replayed_and_stale_notes_are_refused() {
    let c = Cluster::start(2);
    let ta = c.token("alice");
    let tc = c.token("carol");
    let mut tap = Raw::subscribe(&c.redis, &c.channel);
    let (mut a, _) = c.nodes[0].ws_ready("alice", &ta, true);
    a.create_room("ops", &[]);
    a.send_json(&json!({"type": "add_member", "room": "ops", "user": "carol"}));
    a.expect_after("room_members", &["user_status", "join", "online_users"]);
    let notes = tap.notes(Duration::from_millis(500));
    let added: Vec<&Vec<u8>> = notes
        .iter()
        .filter(|n| n.len() > HEAD && n[HEAD] == 12 && n[n.len() - TAG - 1] == 1)
        .collect();
    assert_eq!(added.len(), 1, "one Member add note");
    a.send_json(&json!({"type": "remove_member", "room": "ops", "user": "carol"}));
    a.expect_after("room_members", &["user_status", "join", "leave"]);
    let (mut c2, _) = c.nodes[1].ws_ready("carol", &tc, true);
    cluster::wait_until(CROSS, "the removal to reach node 2", || {
        c2.send_json(&json!({"type": "join", "room": "ops"}));
        let v = c2.recv();
        frame_type(&v) == "error"
    });
    for _ in 0..3 {
        publish(&c, added[0]);
    }
    thread::sleep(Duration::from_millis(300));
    c2.send_json(&json!({"type": "join", "room": "ops"}));
    assert_eq!(
        c2.expect_after("error", &["user_status"])["code"],
        "forbidden"
    );
    assert!(rejected(&c.nodes[1]) >= 3);
    // A note from an unknown sender, sealed right, but sent a minute ago.
    let (mut a2, _) = c.nodes[1].ws_ready("alice", &ta, false);
    let ghost = to_everyone(&text_frame(r#"{"type":"ghost"}"#));
    let old = sealed_with(KEY, stamped(0xdead, 1, (unix_now() - 60) * 1000, &ghost));
    publish(&c, &old);
    assert_eq!(quiet_but_presence(&mut a2, 500), Vec::<Value>::new());
}

/// A signup is announced by id alone: nothing on the bus carries the
/// user's email or password hash, and the other node reads the row from
/// storage, so the user logs in there.
#[test]
fn users_are_announced_by_id_without_hash_or_email() {
    let c = Cluster::start(2);
    let mut tap = Raw::subscribe(&c.redis, &c.channel);
    let r = c.nodes[0].post_json(
        "/api/signup",
        &json!({"username": "zed", "email": "zed.secret@example.org", "password": "password123"}),
        None,
    );
    assert_eq!(r.status, 201);
    let id = r.json()["user"]["id"].as_u64().unwrap() as u32;
    let notes = tap.notes(Duration::from_millis(700));
    let users: Vec<&Vec<u8>> = notes
        .iter()
        .filter(|n| n.len() > HEAD && n[HEAD] == 10)
        .collect();
    assert_eq!(users.len(), 1);
    assert_eq!(&users[0][HEAD + 1..HEAD + 5], &id.to_le_bytes());
    assert_eq!(
        users[0].len(),
        HEAD + 5 + TAG,
        "the id and the tag, nothing else"
    );
    for n in &notes {
        let text = String::from_utf8_lossy(n);
        assert!(!text.contains("zed.secret"), "an email on the bus");
    }
    let login = c.nodes[1].post_json(
        "/api/login",
        &json!({"username": "zed", "password": "password123"}),
        None,
    );
    assert_eq!(login.status, 200);
    let token = login.json()["token"].as_str().unwrap().to_string();
    assert_eq!(c.nodes[1].get("/api/me", Some(&token)).status, 200);
}

/// Nodes reach a Redis that wants AUTH with the ACL user and password of
/// their URL, the user allowed the cluster's channel and the commands the
/// link sends only (the README's recipe), and form a cluster across which
/// messages flow; a wrong password forms nothing.
#[test]
fn redis_auth_with_an_acl_user() {
    let channel = unique_channel("trust");
    let may_use = format!("&{channel}");
    let redis = Redis::start_with(&[
        "--requirepass",
        "admin-pw",
        "--user",
        "hubbub",
        "on",
        ">hub-pw",
        "resetchannels",
        &may_use,
        "+subscribe",
        "+publish",
        "+ping",
    ]);
    let url = format!("redis://hubbub:hub-pw@127.0.0.1:{}", redis.port());
    let c = Cluster::on_channel(&url, None, channel, 2);
    let ta = c.token("alice");
    let tb = c.token("bob");
    let (mut a, _) = c.nodes[0].ws_ready("alice", &ta, true);
    let (mut b, _) = c.nodes[1].ws_ready("bob", &tb, true);
    a.join("general");
    b.join("general");
    a.say("general", "over an authenticated bus", "m1");
    let m = b.expect_after("message", &["user_status", "join"]);
    assert_eq!(m["content"], "over an authenticated bus");
    let wrong = format!("redis://hubbub:nope@127.0.0.1:{}", redis.port());
    let n3 = cluster::node(&c.pg, &wrong, &c.channel, "n3");
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(peers(&n3), 0);
    assert_eq!(peers(&c.nodes[0]), 1);
}

/// A private room created on one node while the bus is down is unknown to
/// the other; a WS `history` of it there reads storage, and storage checks
/// membership in the query itself: a non-member gets no message of it.
#[test]
fn history_of_a_room_unknown_here_is_checked_by_storage() {
    let mut redis = Redis::start();
    let c = Cluster::on(&redis.url(), None, 2);
    let ta = c.token("alice");
    let tc = c.token("carol");
    let (mut a, _) = c.nodes[0].ws_ready("alice", &ta, true);
    let (mut carol, _) = c.nodes[1].ws_ready("carol", &tc, true);
    redis.stop();
    a.create_room("secret", &[]);
    a.say("secret", "classified", "s1");
    carol.send_json(&json!({"type": "history", "room": "secret"}));
    let reply = carol.expect_after("history", &["user_status", "join", "leave"]);
    assert_eq!(reply["messages"], json!([]), "{reply}");
    // alice herself reads it there.
    let (mut a2, _) = c.nodes[1].ws_ready("alice", &ta, false);
    a2.send_json(&json!({"type": "history", "room": "secret"}));
    let mine = a2.expect_after("history", &["user_status", "join", "leave"]);
    assert_eq!(mine["messages"][0]["content"], "classified");
}
