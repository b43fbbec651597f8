//! One client cannot hurt the others (issue 11, the contract's "Faults and
//! abuse"): storage reads that are asked for and never read, descriptors
//! taken by idle connections from a few addresses, frames that cost the
//! server work without being chat (pings, binary, endless fragments), and the
//! quotas on rooms. Each attack comes from its own loopback address while a
//! well-behaved client on 127.0.0.1 checks it is still served.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// A WebSocket to `path` (with `token`) from source address `from`.
fn ws_from(s: &Server, from: Ipv4Addr, path: &str, token: &str) -> Ws {
    let stream = connect_from(from, s.addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let req = format!("ws://{}{path}?token={token}", s.addr)
        .into_client_request()
        .unwrap();
    let (ws, _) = tungstenite::client::client(req, stream).expect("upgrade");
    Ws { ws }
}

/// The next `history` frame, skipping presence. The wait is generous: a
/// read queues behind the attackers' at the storage reader (seconds in a
/// debug build).
fn next_history(ws: &mut Ws) -> serde_json::Value {
    loop {
        let f = ws.recv_within(Duration::from_secs(20));
        if frame_type(&f) == "history" {
            return f;
        }
    }
}

/// `GET /healthz` from 127.0.0.1 answers within `within`.
fn healthz_answers(s: &Server, within: Duration) -> bool {
    let Ok(mut c) = TcpStream::connect(s.addr) else {
        return false;
    };
    c.set_read_timeout(Some(within)).unwrap();
    if c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    got.starts_with(b"HTTP/1.1 200")
}

/// Twenty WebSockets each ask for forty 200-message pages of a room of 200
/// messages of 4000 emoji (3.2 MB a page) and do not read. Each connection's
/// reads are reserved against its output ceiling, and all of them against
/// their user's reply budget, so a client that does not read cannot ask for
/// more: the server stays small, a prompt reader still gets its page
/// meanwhile, and a late reader (another account) is not cut but gets all
/// pages once it reads (before, it was cut as a slow consumer at the 16 MiB
/// ceiling after a few pages).
#[test]
fn clients_that_ask_and_never_read_cannot_grow_the_server() {
    let s = Server::builder().rate_limit(0).start();
    let (mut alice, _) = s.user("alice");
    alice.join("big");
    let page: Vec<String> = (0..200).map(|_| "😀".repeat(4000)).collect();
    alice.say_many("big", &page, "e");
    let (mut bob, _) = s.user("bob");
    let base = s.rss_kib();
    let token = s.token("mallory");
    let mut idle = Vec::new();
    for i in 0..20 {
        let mut ws = ws_from(&s, ip(2 + (i % 4) as u8), "/ws", &token);
        for _ in 0..40 {
            ws.write_json(&json!({"type": "history", "room": "big", "limit": 200}));
        }
        ws.flush();
        idle.push(ws);
    }
    let mut late = ws_from(&s, ip(6), "/ws", &s.token("trudy"));
    for _ in 0..10 {
        late.write_json(&json!({"type": "history", "room": "big", "limit": 200}));
    }
    late.flush();
    std::thread::sleep(Duration::from_secs(4));
    bob.send_json(&json!({"type": "history", "room": "big", "limit": 200}));
    let h = next_history(&mut bob);
    assert_eq!(h["messages"].as_array().unwrap().len(), 200);
    std::thread::sleep(Duration::from_secs(2));
    let rss = s.rss_kib();
    eprintln!("RSS {base} KiB before the attack, {rss} KiB during it");
    assert!(
        rss < base + 96 * 1024,
        "RSS grew from {base} KiB to {rss} KiB"
    );
    for i in 0..10 {
        let h = next_history(&mut late);
        assert_eq!(
            h["messages"].as_array().map(Vec::len),
            Some(200),
            "page {i}"
        );
    }
    drop(idle);
}

/// One account's eight WebSockets each ask for sixty history pages of big
/// messages and never read: together they stay within the user's reply
/// budget (`USER_REPLY_BYTES`), so the server grows by tens of megabytes at
/// most, not by eight output ceilings (before: RSS 8 → 93 MiB); another
/// user from another address is still answered at once.
#[test]
fn one_users_sockets_share_one_reply_budget() {
    let s = Server::builder().rate_limit(0).start();
    let (mut alice, _) = s.user("alice");
    alice.join("big");
    let page: Vec<String> = (0..200).map(|_| "😀".repeat(4000)).collect();
    alice.say_many("big", &page, "e");
    let base = s.rss_kib();
    let token = s.token("mallory");
    let mut idle = Vec::new();
    for i in 0..8 {
        let mut ws = ws_from(&s, ip(2 + i), "/ws", &token);
        // Small pages (20 messages, 320 kB): each reserves little, so
        // before, each socket filled its own output ceiling with them.
        for _ in 0..60 {
            ws.write_json(&json!({"type": "history", "room": "big", "limit": 20}));
        }
        ws.flush();
        idle.push(ws);
    }
    std::thread::sleep(Duration::from_secs(5));
    let (mut bob, _) = s.user("bob");
    bob.send_json(&json!({"type": "history", "room": "big", "limit": 200}));
    let h = next_history(&mut bob);
    assert_eq!(h["messages"].as_array().unwrap().len(), 200);
    let rss = s.rss_kib();
    eprintln!("RSS {base} KiB before, {rss} KiB with eight sockets not reading");
    assert!(
        rss < base + 48 * 1024,
        "RSS grew from {base} KiB to {rss} KiB"
    );
    drop(idle);
}

/// 700 idle TCP connections from seven addresses against a server limited
/// to 512 descriptors: before, `accept` stopped at `EMFILE` and the
/// edge-triggered listener never looked at its backlog again, so
/// `GET /healthz` from 127.0.0.1 timed out. Now each address holds at most
/// its quota of unfinished connections, the oldest are shed at the cap, and
/// the well-behaved client is answered.
#[test]
fn idle_connections_cannot_take_every_descriptor() {
    raise_nofile(4096);
    // The default quota of unfinished connections per address is 128.
    let s = Server::builder().nofile(512).start();
    // One address past its quota: the extra connections are closed at once.
    let mut idle: Vec<TcpStream> = (0..128)
        .map(|_| connect_from(ip(3), s.addr).expect("connect"))
        .collect();
    let mut over: Vec<TcpStream> = (0..20)
        .map(|_| connect_from(ip(3), s.addr).expect("connect"))
        .collect();
    let mut closed = 0;
    for c in &mut over {
        closed += usize::from(wait_closed(c, Duration::from_secs(2)));
    }
    assert_eq!(closed, 20, "127.0.0.3 kept connections past its quota");
    // Six more addresses, each within its quota: 728 in all, past the cap
    // of 512 - 64, so the oldest unfinished are shed.
    for a in 4..10u8 {
        for _ in 0..100 {
            idle.push(connect_from(ip(a), s.addr).expect("connect"));
        }
    }
    assert!(
        healthz_answers(&s, Duration::from_secs(3)),
        "127.0.0.1 starved"
    );
    let metrics = s.get("/metrics", None).text();
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hubbub_connections_refused_total "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap();
    assert!(refused >= 20, "{refused}");
    // A WebSocket still works, from another address.
    let token = s.token("alice");
    let mut ws = ws_from(&s, ip(20), "/ws", &token);
    ws.ready("alice", true);
    drop(idle);
}

/// Pings cost a rate-limit token like any frame: over the limit the pong
/// is not sent. Binary frames too: over the limit they get `rate_limited`,
/// not the usual `bad_json`.
#[test]
fn pings_and_binary_frames_count_against_the_rate_limit() {
    let s = Server::builder().rate_limit(1).start();
    let token = s.token("alice");
    let mut ws = ws_from(&s, ip(4), "/ws", &token);
    ws.ready("alice", true);
    for _ in 0..10 {
        ws.ws.send(Message::Ping(b"p".to_vec().into())).unwrap();
    }
    ws.ws.send(Message::binary(vec![1, 2, 3])).unwrap();
    let mut pongs = 0;
    let mut codes = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(800);
    while Instant::now() < deadline {
        match ws.ws.read() {
            Ok(Message::Pong(_)) => pongs += 1,
            Ok(Message::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                codes.push(v["code"].as_str().unwrap_or_default().to_string());
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(pongs <= 3, "{pongs} pongs for 10 pings at 1/s, burst 2");
    assert!(pongs >= 1);
    assert_eq!(codes, vec!["rate_limited"], "the binary frame");
}

/// A message may come in at most 1024 frames: a stream of empty
/// continuation frames (two bytes of work each, never ending) is closed
/// with 1008 instead of costing the loop for ever.
#[test]
fn endless_fragments_are_closed() {
    let s = Server::start();
    let token = s.token("alice");
    let mut ws = ws_from(&s, ip(5), "/ws", &token);
    ws.ready("alice", true);
    // Masked with key 0 (allowed): the payload goes as it is.
    let mut bytes = vec![0x01, 0x81, 0, 0, 0, 0, b'{'];
    for _ in 0..2000 {
        bytes.extend_from_slice(&[0x00, 0x80, 0, 0, 0, 0]);
    }
    ws.ws.get_mut().write_all(&bytes).unwrap();
    let (code, _) = ws.expect_close(WAIT);
    assert_eq!(code, Some(1008));
}

/// `create_room` cannot take `general` on a fresh server; `leave` without a
/// room is `invalid_input`; `read` needs no `join`.
#[test]
fn general_is_reserved_and_read_needs_no_join() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    a.send_json(&json!({"type": "create_room", "room": "general", "private": true, "members": []}));
    a.expect_error("taken");
    a.send_json(&json!({"type": "leave"}));
    a.expect_error("invalid_input");
    a.join("general");
    let id = a.say("general", "hello", "k1")["id"].as_i64().unwrap();
    let (mut b, _) = s.user("bob");
    b.send_json(&json!({"type": "read", "room": "general", "id": id}));
    let r = a.expect_after("read", &["join", "user_status"]);
    assert_eq!(
        (r["user"].as_str(), r["id"].as_i64()),
        (Some("bob"), Some(id))
    );
    b.expect_silence(200);
}
