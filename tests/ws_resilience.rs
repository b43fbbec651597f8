//! Durability and load: reconnect with `since`, slow consumers, 500 connections without
//! loss, history across restarts, acked messages across `kill -9`, SIGTERM shutdown.
//!
//! Not covered here (too slow for this suite; unit-tested in the server): the 30 s server
//! ping and the 60 s idle close.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

fn id(v: &Value) -> i64 {
    v["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer id in {v}"))
}

/// A connection dropped mid-stream that rejoins with `since` = the last id it saw misses
/// nothing and sees nothing twice, while messages keep flowing.
#[test]
fn rejoin_with_since_misses_nothing() {
    let s = Server::builder().rate_limit(0).start();
    let (mut a, _) = s.user("alice");
    let tb = s.token("bob");
    let (mut b, _) = s.ws_ready("bob", &tb, true);
    a.join("general");
    b.join("general");
    a.sync();
    const N: usize = 300;
    let sender = thread::spawn(move || {
        let mut acked = Vec::new();
        for i in 0..N {
            a.send_json(&json!({"type": "message", "room": "general", "content": format!("m{i}"), "client_id": format!("k{i}")}));
            acked.push(id(&a.expect_after("ack", &["join", "leave", "user_status"])));
            thread::sleep(Duration::from_millis(2));
        }
        acked
    });
    let mut seen: Vec<i64> = Vec::new();
    while seen.len() < 80 {
        seen.push(id(&b.expect_after("message", &[])));
    }
    b.drop_tcp();
    thread::sleep(Duration::from_millis(100));
    // Not `first`: the server may not have seen the drop yet; our own user_status is skipped below.
    let (mut b, _) = s.ws_ready("bob", &tb, false);
    b.send_json(&json!({"type": "join", "room": "general", "since": seen.last().unwrap()}));
    loop {
        let f = b.recv();
        match frame_type(&f) {
            "message" => seen.push(id(&f)),
            "user_status" => {}
            "online_users" => {
                assert_eq!(f["recovered"], true, "{f}");
                break;
            }
            _ => panic!("unexpected frame during replay: {f}"),
        }
    }
    let acked = sender.join().unwrap();
    while seen.last() != acked.last() {
        seen.push(id(&b.expect_after("message", &["user_status"])));
    }
    assert_eq!(seen, acked, "every message exactly once, in order");
}

/// Big output that a prompt reader drains is not a slow consumer: a `join`+`since` replay of
/// 1000 messages of 4000 characters (about 4 MB in one go) arrives in full.
#[test]
fn large_replay_reaches_a_prompt_reader() {
    let s = Server::builder().rate_limit(0).start();
    let (mut a, _) = s.user("alice");
    a.join("general");
    let big: Vec<String> = (0..1000)
        .map(|i| format!("{i:04}{}", "x".repeat(3996)))
        .collect();
    let ids: Vec<i64> = a.say_many("general", &big, "big").iter().map(id).collect();
    let (mut b, _) = s.user("bob");
    b.send_json(&json!({"type": "join", "room": "general", "since": 0}));
    for (i, want) in ids.iter().enumerate() {
        match b.next_event(WAIT) {
            Event::Frame(f) => {
                assert_eq!(frame_type(&f), "message", "{f}");
                assert_eq!(id(&f), *want);
            }
            e => panic!("replay cut off after {i} of 1000 messages: {e:?}"),
        }
    }
    assert_eq!(b.expect("online_users")["recovered"], true);
}

/// A `history` reply of 200 messages of 4000 two-byte characters (one frame of about 1.6 MB)
/// reaches a prompt reader instead of getting it closed as a slow consumer.
#[test]
fn large_history_reaches_a_prompt_reader() {
    let s = Server::builder().rate_limit(0).start();
    let (mut a, _) = s.user("alice");
    a.join("wide");
    let wide: Vec<String> = (0..200).map(|_| "é".repeat(4000)).collect();
    a.say_many("wide", &wide, "wide");
    let (mut b, _) = s.user("bob");
    b.send_json(&json!({"type": "history", "room": "wide", "limit": 200}));
    match b.next_event(WAIT) {
        Event::Frame(f) => assert_eq!(
            f["messages"].as_array().map(Vec::len),
            Some(200),
            "{}",
            frame_type(&f)
        ),
        e => panic!("history of 200 long messages not delivered: {e:?}"),
    }
}

fn set_rcvbuf(s: &std::net::TcpStream, bytes: i32) {
    // SAFETY: setsockopt on a valid fd with a correctly sized int.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &bytes as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        );
    }
}

/// A client that stops reading is cut off once its unsent output passes 1 MiB (close 1008 or
/// reset) while another reader in the room keeps receiving everything promptly, and the
/// server's RSS stays bounded (it does not buffer the flood for the stalled client).
#[test]
fn slow_consumer_is_cut_off() {
    let s = Server::builder().rate_limit(0).start();
    let (mut bob, _) = s.user("bob");
    let (mut carol, _) = s.user("carol");
    let ts = s.token("slow");
    let mut slow = s.ws("/ws", &ts);
    set_rcvbuf(slow.stream(), 16 * 1024);
    slow.ready("slow", true);
    slow.join("general");
    carol.join("general");
    bob.join("general");
    bob.sync();
    carol.sync();

    const N: usize = 8000;
    let content = "x".repeat(4000);
    let baseline = s.rss_kib();
    let peak = Arc::new(AtomicU64::new(baseline));
    let stop = Arc::new(AtomicBool::new(false));
    let pid = s.pid();
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if let Some(kib) = rss_kib_of(pid) {
                    peak.fetch_max(kib, Ordering::SeqCst);
                }
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let reader = thread::spawn(move || {
        let mut got = 0;
        let mut worst_gap = Duration::ZERO;
        let mut last = Instant::now();
        while got < N {
            let f = carol.recv_within(Duration::from_secs(10));
            match frame_type(&f) {
                "message" => {
                    got += 1;
                    worst_gap = worst_gap.max(last.elapsed());
                    last = Instant::now();
                }
                "leave" | "user_status" => {}
                _ => panic!("carol got {f}"),
            }
        }
        (Instant::now(), worst_gap)
    });
    let contents: Vec<String> = (0..N).map(|_| content.clone()).collect();
    let acks = bob.say_many("general", &contents, "f");
    let last_ack = Instant::now();
    assert_eq!(acks.len(), N);
    let (carol_done, worst_gap) = reader.join().unwrap();
    stop.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    assert!(
        carol_done.saturating_duration_since(last_ack) < Duration::from_secs(2),
        "carol lagged {:?} behind the sender",
        carol_done.saturating_duration_since(last_ack)
    );
    assert!(
        worst_gap < Duration::from_secs(2),
        "carol stalled for {worst_gap:?}"
    );

    // The stalled client: whatever it reads now ends in 1008 or a reset, well before N messages.
    let mut received = 0;
    let code = loop {
        match slow.next_event(Duration::from_secs(5)) {
            Event::Frame(f) if frame_type(&f) == "message" => received += 1,
            Event::Frame(_) | Event::Other(_) => {}
            Event::Close(code) => break code,
            Event::Gone(_) => break None,
            Event::Timeout => panic!("slow consumer still connected after {received} messages"),
        }
    };
    let growth = peak.load(Ordering::SeqCst).saturating_sub(baseline);
    eprintln!(
        "slow consumer: {received} of {N} messages, close {code:?}; RSS +{growth} KiB; carol worst gap {worst_gap:?}"
    );
    assert!(code.is_none() || code == Some(1008), "close code {code:?}");
    assert!(
        received < N,
        "the slow consumer got everything: it was never cut off"
    );
    assert!(
        growth < 16 * 1024,
        "server RSS grew by {growth} KiB during a {} MB flood",
        N * 4 / 1000
    );
}

/// 500 connections (50 users x 10) in 5 rooms, 50 senders with `--rate-limit 0`: every
/// connection receives every message of its room exactly once, except its own.
#[test]
fn five_hundred_connections_lose_nothing() {
    raise_nofile(4096);
    let s = Server::builder().rate_limit(0).start();
    const USERS: usize = 50;
    const PER_USER: usize = 10;
    const ROOMS: usize = 5;
    const M: usize = 20;
    let tokens: Vec<String> = (0..USERS).map(|u| s.token(&format!("u{u:02}"))).collect();
    let mut conns = Vec::new();
    for (u, tok) in tokens.iter().enumerate() {
        for j in 0..PER_USER {
            let name = format!("u{u:02}");
            let (mut ws, _) = s.ws_ready(&name, tok, j == 0);
            let room = format!("room{}", (u + j) % ROOMS);
            ws.join(&room);
            let sender = j == 0;
            conns.push((ws, room, sender));
        }
    }
    let senders_per_room = USERS / ROOMS;
    let barrier = Arc::new(Barrier::new(conns.len()));
    let handles: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(n, (mut ws, room, sender))| {
            let barrier = barrier.clone();
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    barrier.wait();
                    if sender {
                        for i in 0..M {
                            ws.write_json(&json!({"type": "message", "room": room, "content": format!("{n}/{i}"), "client_id": format!("c{i}")}));
                        }
                        ws.flush();
                    }
                    let want = if sender { (senders_per_room - 1) * M } else { senders_per_room * M };
                    let (mut got, mut acks) = (Vec::new(), Vec::new());
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while got.len() < want || (sender && acks.len() < M) {
                        let left = deadline.saturating_duration_since(Instant::now());
                        match ws.next_event(left) {
                            Event::Frame(f) => match frame_type(&f) {
                                "message" => {
                                    assert_eq!(f["room"], room.as_str());
                                    got.push(id(&f));
                                }
                                "ack" => acks.push(id(&f)),
                                "error" => panic!("conn {n}: {f}"),
                                _ => {}
                            },
                            Event::Other(_) => {}
                            e => panic!("conn {n} ({room}): {e:?} after {} of {want} messages", got.len()),
                        }
                    }
                    // Nothing extra arrives.
                    if let Event::Frame(f) = ws.next_event(Duration::from_millis(200)) {
                        assert_ne!(frame_type(&f), "message", "conn {n}: extra {f}");
                    }
                    (room, sender, got, acks)
                })
                .unwrap()
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("connection thread"))
        .collect();
    let mut acked: HashMap<String, BTreeSet<i64>> = HashMap::new();
    for (room, _, _, acks) in &results {
        acked
            .entry(room.clone())
            .or_default()
            .extend(acks.iter().copied());
    }
    for (n, (room, sender, got, acks)) in results.iter().enumerate() {
        let got_set: BTreeSet<i64> = got.iter().copied().collect();
        assert_eq!(got_set.len(), got.len(), "conn {n}: duplicates");
        let mut expected = acked[room].clone();
        if *sender {
            for a in acks {
                expected.remove(a);
            }
        }
        assert_eq!(got_set, expected, "conn {n} in {room}");
    }
    for (room, ids) in &acked {
        assert_eq!(
            ids.len(),
            senders_per_room * M,
            "distinct acked ids in {room}"
        );
    }
}

/// Users, tokens, room history, conversations and private-room membership survive a restart.
#[test]
fn history_survives_restart() {
    let mut s = Server::start();
    let (mut a, ta) = s.user("alice");
    let (b, tb) = s.user("bob");
    let tc = s.token("carol");
    a.sync();
    a.join("general");
    let ids: Vec<i64> = (0..3)
        .map(|i| id(&a.say("general", &format!("m{i}"), &format!("k{i}"))))
        .collect();
    a.send_json(
        &json!({"type": "private_message", "to": "bob", "content": "pm", "client_id": "p"}),
    );
    let pm = id(&a.expect("ack"));
    a.expect("delivered");
    a.create_room("secret", &["bob"]);
    a.say("secret", "hidden", "h");
    let before_room = s.messages(&ta, "room=general");
    let before_pm = s.messages(&tb, "with=alice");
    drop(a);
    drop(b);
    s.restart();
    assert_eq!(s.messages(&ta, "room=general"), before_room);
    assert_eq!(before_room.iter().map(id).collect::<Vec<_>>(), ids);
    assert_eq!(s.messages(&tb, "with=alice"), before_pm);
    assert_eq!(id(&before_pm[0]), pm);
    s.get("/api/messages?room=secret", Some(&tc))
        .assert_error(403, "forbidden");
    let (mut b, _) = s.ws_ready("bob", &tb, true);
    b.join("secret");
    let (mut c, _) = s.ws_ready("carol", &tc, true);
    c.send_json(&json!({"type": "join", "room": "secret"}));
    assert_eq!(
        c.expect_after("error", &["user_status"])["code"],
        "forbidden"
    );
    // New ids keep increasing after the restart.
    b.join("general");
    let next = id(&b.say("general", "after restart", "r"));
    assert!(next > *ids.iter().max().unwrap() && next > pm);
}

/// Every message acked before `kill -9` is in the history after a restart on the same
/// database. Four connections stream messages non-stop, so writes are in flight at the kill.
#[test]
fn acked_messages_survive_kill_9() {
    let mut s = Server::builder().rate_limit(0).start();
    let ta = s.token("alice");
    let total_acks = Arc::new(AtomicU64::new(0));
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (mut ws, _) = s.ws_ready("alice", &ta, t == 0);
            ws.join("general");
            let total_acks = total_acks.clone();
            thread::spawn(move || {
                let mut acked: Vec<(i64, String)> = Vec::new();
                let mut sent = 0;
                'stream: loop {
                    let base = sent;
                    for i in 0..50 {
                        let n = base + i;
                        let f = json!({"type": "message", "room": "general", "content": format!("t{t} #{n}"), "client_id": format!("t{t}-{n}")});
                        if ws.ws.write(tungstenite::Message::text(f.to_string())).is_err() {
                            break 'stream;
                        }
                        sent += 1;
                    }
                    if ws.ws.flush().is_err() {
                        break;
                    }
                    while (acked.len() as u64) < sent {
                        match ws.next_event(Duration::from_secs(5)) {
                            Event::Frame(f) if frame_type(&f) == "ack" => {
                                let cid = f["client_id"].as_str().unwrap();
                                let n: u64 = cid.rsplit('-').next().unwrap().parse().unwrap();
                                acked.push((id(&f), format!("t{t} #{n}")));
                                total_acks.fetch_add(1, Ordering::SeqCst);
                            }
                            Event::Frame(f) => assert!(["message", "join", "user_status"].contains(&frame_type(&f)), "{f}"),
                            Event::Other(_) => {}
                            _ => break 'stream,
                        }
                    }
                }
                (sent, acked)
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while total_acks.load(Ordering::SeqCst) < 2000 {
        assert!(Instant::now() < deadline, "senders stalled");
        thread::sleep(Duration::from_millis(2));
    }
    s.kill9();
    let mut acked = Vec::new();
    let mut sent = 0;
    for h in senders {
        let (n, a) = h.join().unwrap();
        sent += n;
        acked.extend(a);
    }
    eprintln!("kill -9 after {} acks of {sent} sent", acked.len());
    assert!(
        sent > acked.len() as u64,
        "nothing was in flight at the kill"
    );
    s.restart();
    let stored: HashMap<i64, String> = s
        .all_messages(&ta, "general")
        .iter()
        .map(|m| (id(m), m["content"].as_str().unwrap().to_string()))
        .collect();
    for (i, content) in &acked {
        assert_eq!(
            stored.get(i),
            Some(content),
            "acked message {i} lost after kill -9"
        );
    }
}

/// SIGTERM: every WebSocket gets close 1001, the process exits 0, and every message acked
/// before it is kept.
#[test]
fn sigterm_closes_1001_exits_0_and_keeps_acked() {
    let mut s = Server::builder().rate_limit(0).start();
    let (mut a, ta) = s.user("alice");
    let (mut b, _) = s.user("bob");
    a.join("general");
    b.join("general");
    a.sync();
    for i in 0..300 {
        a.write_json(&json!({"type": "message", "room": "general", "content": format!("t{i}"), "client_id": format!("t{i}")}));
    }
    a.flush();
    let first = a.expect("ack");
    s.send_sigterm();
    let (code_a, frames_a) = a.expect_close(Duration::from_secs(10));
    let (code_b, _) = b.expect_close(Duration::from_secs(10));
    assert_eq!(code_a, Some(1001), "alice's close code");
    assert_eq!(code_b, Some(1001), "bob's close code");
    let st = s.wait_exit(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0), "exit status {st}");
    let mut acked = vec![id(&first)];
    for f in &frames_a {
        if frame_type(f) == "ack" {
            acked.push(id(f));
        }
    }
    s.restart();
    let stored: BTreeSet<i64> = s.all_messages(&ta, "general").iter().map(id).collect();
    for i in &acked {
        assert!(stored.contains(i), "acked message {i} lost over SIGTERM");
    }
}

/// SIGINT shuts down like SIGTERM: close 1001 to WebSocket clients, exit status 0.
#[test]
fn sigint_closes_1001_and_exits_0() {
    let mut s = Server::start();
    let (mut a, _) = s.user("alice");
    a.join("general");
    s.send_signal(libc::SIGINT);
    let (code, frames) = a.expect_close(Duration::from_secs(10));
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(code, Some(1001));
    let st = s.wait_exit(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0), "exit status {st}");
}

/// SIGTERM exits 0 within 10 s even with a WebSocket client that stopped reading (its buffers
/// full, so its close frame cannot be delivered) and logins still hashing at 600000 iterations.
#[test]
fn sigterm_exits_promptly_despite_stalled_clients_and_hashing() {
    let mut s = Server::builder().default_iterations().rate_limit(0).start();
    s.signup("alice");
    let ta = s.login_token("alice");
    let mut stalled = s.ws("/ws", &ta);
    set_rcvbuf(stalled.stream(), 4096);
    stalled.ready("alice", true);
    stalled.join("general");
    let (mut w, _) = s.ws_ready("alice", &ta, false);
    w.join("general");
    // About 800 KB towards the stalled client: its socket buffers fill and output stays queued
    // in the server, below the 1 MiB slow-consumer cap.
    let contents: Vec<String> = (0..200).map(|_| "s".repeat(4000)).collect();
    w.say_many("general", &contents, "fill");
    let addr = s.addr;
    let logins: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let body = json!({"username": "alice", "password": PASSWORD}).to_string();
                let _ = HttpConn::connect(addr).send_raw(&build_request(
                    "POST",
                    "/api/login",
                    &[("Content-Type", "application/json")],
                    Some(body.as_bytes()),
                ));
            })
        })
        .collect();
    for h in logins {
        h.join().unwrap();
    }
    thread::sleep(Duration::from_millis(20));
    s.send_sigterm();
    let st = s.wait_exit(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0), "exit status {st}");
}

/// A flood faster than storage is slowed down, never refused: with a 16-request
/// storage queue (`--store-queue 16`), 8 connections that each write 400
/// messages at once all get 400 acks and no `busy` error, because the loop
/// stops reading chat input while storage is behind and resumes where it left
/// off. (Regression: the storage queue used to fill and answer `busy` to a flood.)
#[test]
fn storage_backlog_slows_senders_instead_of_refusing() {
    let s = Server::builder()
        .rate_limit(0)
        .arg("--store-queue")
        .arg("16")
        .start();
    const CONNS: usize = 8;
    const M: usize = 400;
    let handles: Vec<_> = (0..CONNS)
        .map(|n| {
            let name = format!("flood{n}");
            let tok = s.token(&name);
            let (mut ws, _) = s.ws_ready(&name, &tok, true);
            let room = format!("flood{n}");
            ws.join(&room);
            thread::spawn(move || {
                for i in 0..M {
                    ws.write_json(&json!({"type": "message", "room": room, "content": format!("m{i}"), "client_id": format!("k{i}")}));
                }
                ws.flush();
                let mut acks = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(60);
                while acks.len() < M {
                    match ws.next_event(deadline.saturating_duration_since(Instant::now())) {
                        Event::Frame(f) if frame_type(&f) == "ack" => acks.push(f["client_id"].as_str().unwrap().to_string()),
                        Event::Frame(f) if frame_type(&f) == "error" => panic!("conn {n}: {f}"),
                        Event::Frame(_) | Event::Other(_) => {}
                        e => panic!("conn {n}: {e:?} after {} acks", acks.len()),
                    }
                }
                acks
            })
        })
        .collect();
    for h in handles {
        let acks = h.join().unwrap();
        let want: Vec<String> = (0..M).map(|i| format!("k{i}")).collect();
        assert_eq!(acks, want, "every message acked once, in order");
    }
    let tok = s.token("reader");
    assert_eq!(s.all_messages(&tok, "flood3").len(), M, "all stored");
}
