//! Storage faults end to end: a disk that fills up, a write lock held by
//! another process, `kill -9` in the middle of a flood. Each test sends
//! messages with `client_id`s, retries the ones that failed the way the web
//! client does after a reconnect, restarts the server, and checks the one
//! rule: every acked message is in the history, exactly once, and nothing
//! was acked that is not.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Event, Server, TempDir, Ws, frame_type};
use serde_json::{Value, json};

/// What became of one message.
#[derive(Debug, PartialEq)]
enum Outcome {
    Acked(i64),
    Failed(String),
}

/// Sends one message and waits for its `ack` or its `error` (which must
/// carry the `client_id`).
fn send(ws: &mut Ws, content: &str, cid: &str) -> Outcome {
    ws.send_json(
        &json!({"type": "message", "room": "general", "content": content, "client_id": cid}),
    );
    loop {
        match ws.next_event(Duration::from_secs(15)) {
            Event::Frame(f) if frame_type(&f) == "ack" => {
                assert_eq!(f["client_id"], cid, "{f}");
                return Outcome::Acked(f["id"].as_i64().unwrap());
            }
            Event::Frame(f) if frame_type(&f) == "error" => {
                assert_eq!(f["client_id"], cid, "an error names the message: {f}");
                let code = f["code"].as_str().unwrap().to_string();
                assert!(["internal", "busy"].contains(&code.as_str()), "{f}");
                return Outcome::Failed(code);
            }
            Event::Frame(_) | Event::Other(_) => {}
            other => panic!("no answer for {cid}: {other:?}"),
        }
    }
}

/// After a restart: every acked message is there with its content, and no
/// content appears twice.
fn assert_history(s: &Server, token: &str, acked: &HashMap<String, (i64, String)>) {
    let stored = s.all_messages(token, "general");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for m in &stored {
        *seen
            .entry(m["content"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for (cid, (id, content)) in acked {
        let found = stored.iter().find(|m| m["id"].as_i64() == Some(*id));
        assert_eq!(
            found.map(|m| m["content"].as_str().unwrap()),
            Some(content.as_str()),
            "acked message {cid} (id {id}) is missing"
        );
    }
    for (content, n) in &seen {
        assert_eq!(*n, 1, "{content:.20} stored {n} times");
    }
}

fn content(i: usize) -> String {
    format!("{i:05} {}", "x".repeat(4000 - 6))
}

/// A tmpfs mount that is unmounted on drop.
struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(dir: &'a Path, size: &str) -> Option<Tmpfs<'a>> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(dir))
    }

    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.0)
            .status()
            .unwrap();
        assert!(st.success(), "remount");
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

/// The database on a 768 KiB filesystem that fills up: writes fail with
/// `internal`/`busy` and the `client_id`, retries from a new connection are
/// refused again (never acked unstored), and once there is room again the
/// same server stores them — no restart needed. After a restart every acked
/// message is in the history once.
#[test]
fn a_full_disk_loses_nothing_acked() {
    let dir = Arc::new(TempDir::new("full"));
    let Some(fs) = Tmpfs::mount(dir.path(), "768k") else {
        eprintln!("SKIPPED a_full_disk_loses_nothing_acked: cannot mount a tmpfs (needs root)");
        return;
    };
    let mut s = Server::builder().rate_limit(0).start_in(dir.clone());
    let token = s.token("alice");
    let (mut ws, _) = s.ws_ready("alice", &token, true);
    ws.join("general");
    let mut acked = HashMap::new();
    let mut failed = Vec::new();
    for i in 0..2000 {
        let cid = format!("m{i}");
        match send(&mut ws, &content(i), &cid) {
            Outcome::Acked(id) => {
                acked.insert(cid, (id, content(i)));
            }
            Outcome::Failed(_) => failed.push(i),
        }
        if failed.len() >= 8 {
            break;
        }
    }
    assert!(!failed.is_empty(), "the disk never filled");
    let acked_before = acked.len();
    // The web client's reconnect: a new connection resends what failed.
    let (mut ws, _) = s.ws_ready("alice", &token, false);
    ws.join("general");
    for &i in &failed {
        match send(&mut ws, &content(i), &format!("m{i}")) {
            Outcome::Acked(id) => {
                acked.insert(format!("m{i}"), (id, content(i)));
            }
            Outcome::Failed(_) => {}
        }
    }
    fs.resize("16m");
    let mut recovered = 0;
    for &i in &failed {
        let Outcome::Acked(id) = send(&mut ws, &content(i), &format!("m{i}")) else {
            panic!("m{i} still refused with room on the disk");
        };
        recovered += 1;
        let prev = acked.insert(format!("m{i}"), (id, content(i)));
        assert!(prev.is_none_or(|(p, _)| p == id), "a retry got a second id");
    }
    eprintln!(
        "full disk: {} acked before it filled, {} refused, {recovered} stored after space returned",
        acked_before,
        failed.len()
    );
    s.restart();
    let token = s.login_token("alice");
    assert_history(&s, &token, &acked);
    drop(s);
}

/// Another process holds SQLite's write lock past the busy timeout: the
/// batch fails whole and says so with the `client_id`; when the lock is
/// released the retries are stored. Nothing acked is lost over a restart.
#[test]
fn a_write_lock_held_elsewhere_is_survived() {
    let mut s = Server::builder().rate_limit(0).start();
    let token = s.token("alice");
    let (mut ws, _) = s.ws_ready("alice", &token, true);
    ws.join("general");
    let mut acked = HashMap::new();
    for i in 0..5 {
        let Outcome::Acked(id) = send(&mut ws, &content(i), &format!("m{i}")) else {
            panic!("refused before the lock");
        };
        acked.insert(format!("m{i}"), (id, content(i)));
    }
    let locker = rusqlite::Connection::open(s.db_path()).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    let outcome = send(&mut ws, &content(5), "m5");
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    eprintln!("lock held: refused after {:?}", started.elapsed());
    locker.execute_batch("ROLLBACK").unwrap();
    let Outcome::Acked(id) = send(&mut ws, &content(5), "m5") else {
        panic!("still refused after the lock was released");
    };
    acked.insert("m5".into(), (id, content(5)));
    s.restart();
    let token = s.login_token("alice");
    assert_history(&s, &token, &acked);
}

/// `kill -9` in the middle of a flood, then every message resent with its
/// `client_id` after a restart: what was acked keeps its id, what was not is
/// stored now, and nothing is stored twice.
#[test]
fn resends_after_kill_9_are_stored_once() {
    let mut s = Server::builder().rate_limit(0).start();
    let token = s.token("alice");
    let (mut ws, _) = s.ws_ready("alice", &token, true);
    ws.join("general");
    const SENT: usize = 400;
    for i in 0..SENT {
        ws.write_json(&json!({"type": "message", "room": "general", "content": content(i), "client_id": format!("m{i}")}));
    }
    ws.flush();
    let mut acked: HashMap<String, (i64, String)> = HashMap::new();
    while acked.len() < SENT / 4 {
        match ws.next_event(Duration::from_secs(10)) {
            Event::Frame(f) if frame_type(&f) == "ack" => {
                let cid = f["client_id"].as_str().unwrap().to_string();
                let i: usize = cid[1..].parse().unwrap();
                acked.insert(cid, (f["id"].as_i64().unwrap(), content(i)));
            }
            Event::Frame(_) | Event::Other(_) => {}
            other => panic!("flood stalled: {other:?}"),
        }
    }
    s.kill9();
    let before_kill = acked.len();
    s.restart();
    let token = s.login_token("alice");
    let (mut ws, _) = s.ws_ready("alice", &token, false);
    ws.join("general");
    for i in 0..SENT {
        let cid = format!("m{i}");
        let Outcome::Acked(id) = send(&mut ws, &content(i), &cid) else {
            panic!("{cid} refused after the restart");
        };
        if let Some((first, _)) = acked.get(&cid) {
            assert_eq!(
                *first, id,
                "{cid} was acked with another id before the kill"
            );
        }
        acked.insert(cid, (id, content(i)));
    }
    eprintln!("kill -9: {before_kill} of {SENT} acked before it; all {SENT} stored once after");
    assert_history(&s, &token, &acked);
    let stored: Vec<Value> = s.all_messages(&token, "general");
    assert_eq!(stored.len(), SENT);
}
