//! The contract across nodes: two or three `hubbub` processes on one
//! PostgreSQL and one Redis (real ones, `common::services`), clients on
//! different nodes, and the faults the issue names — a node killed, Redis
//! restarted, PostgreSQL stopped — plus nginx as a round-robin balancer.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::cluster::{CROSS, Cluster, KEY, node, peers, wait_until};
use common::services::{Nginx, Postgres, Redis, unique_channel};
use common::{Server, Ws, frame_type, http};
use serde_json::{Value, json};

/// The next frame matching `pred`, skipping others; panics past `within`.
fn wait_for(ws: &mut Ws, within: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {what} within {within:?}");
        match ws.next_event(left) {
            common::Event::Frame(v) if pred(&v) => return v,
            common::Event::Frame(_) | common::Event::Other(_) => {}
            common::Event::Timeout => panic!("no {what} within {within:?}"),
            e => panic!("connection ended waiting for {what}: {e:?}"),
        }
    }
}

fn is(ty: &'static str) -> impl Fn(&Value) -> bool {
    move |v| frame_type(v) == ty
}

/// The `message` frames of `room` until one with `content` arrives.
fn messages_until(ws: &mut Ws, room: &str, last: &str) -> Vec<Value> {
    let mut got = Vec::new();
    loop {
        let m = wait_for(ws, CROSS, "a message", |v| {
            frame_type(v) == "message" && v["room"] == room
        });
        let done = m["content"] == last;
        got.push(m);
        if done {
            return got;
        }
    }
}

fn ids(frames: &[Value]) -> Vec<i64> {
    frames.iter().map(|m| m["id"].as_i64().unwrap()).collect()
}

/// A message sent on one node reaches every subscribed connection on every
/// node, once, and in the same order everywhere (ids increasing), while
/// senders on two nodes interleave.
#[test]
fn messages_reach_every_node_once_in_the_same_order() {
    let c = Cluster::start(3);
    let (mut alice, _) = c.nodes[0].user("alice");
    let token = c.nodes[1].login_token("alice");
    c.wait_known(&token);
    let (mut bob, _) = c.nodes[1].user("bob");
    let (mut carol, _) = c.nodes[2].user("carol");
    let (mut alice2, _) = c.nodes[2].ws_ready("alice", &token, false);
    for ws in [&mut alice, &mut bob, &mut carol, &mut alice2] {
        ws.join("general");
    }
    // Alice and carol take turns; each hears the other's messages meanwhile.
    for i in 0..40 {
        let (who, ws) = if i % 2 == 0 {
            ("alice", &mut alice)
        } else {
            ("carol", &mut carol)
        };
        let cid = format!("c{i}");
        ws.send_json(&json!({"type": "message", "room": "general",
                             "content": format!("{who} {i}"), "client_id": cid}));
        wait_for(ws, CROSS, "the ack", |v| {
            frame_type(v) == "ack" && v["client_id"] == cid
        });
    }
    // Then both at once, without waiting: their messages cross on the bus.
    let burst = |mut ws: Ws, who: &'static str| {
        thread::spawn(move || {
            for i in 0..50 {
                ws.write_json(&json!({"type": "message", "room": "general",
                                      "content": format!("{who} burst {i}"), "client_id": format!("b{i}")}));
            }
            ws.flush();
            for i in 0..50 {
                let cid = format!("b{i}");
                wait_for(&mut ws, CROSS, "a burst ack", |v| {
                    frame_type(v) == "ack" && v["client_id"] == cid
                });
            }
            ws
        })
    };
    let (a, k) = (burst(alice, "alice"), burst(carol, "carol"));
    let (mut alice, mut carol) = (a.join().unwrap(), k.join().unwrap());
    alice.send_json(
        &json!({"type": "message", "room": "general", "content": "end", "client_id": "end"}),
    );
    let seen: Vec<Vec<i64>> = [&mut bob, &mut alice2]
        .into_iter()
        .map(|ws| ids(&messages_until(ws, "general", "end")))
        .collect();
    assert_eq!(seen[0].len(), 141, "bob saw each message once");
    assert_eq!(seen[0], seen[1], "the same order on two nodes");
    assert!(
        seen[0].windows(2).all(|w| w[0] < w[1]),
        "ids increase: {:?}",
        seen[0]
    );
    // Carol's own messages are not echoed to her; alice's reach her (those
    // she heard while waiting for her acks were skipped by `wait_for`, so
    // only the last is checked here).
    let at_carol = messages_until(&mut carol, "general", "end");
    assert!(
        at_carol.iter().all(|m| m["user"] == "alice"),
        "{at_carol:?}"
    );
    // And the order is the stored order.
    let stored = ids(&c.nodes[1].all_messages(&token, "general"));
    assert_eq!(stored, seen[0]);
}

/// `join` with `since` on another node replays what was sent elsewhere while
/// the client was away, with no gap and no duplicate, also while messages
/// keep coming from another node during the replay.
#[test]
fn since_on_another_node_is_gap_free_while_others_send() {
    let c = Cluster::start(2);
    let (mut alice, _) = c.nodes[0].user("alice");
    let btoken = c.token("bob");
    alice.join("general");
    let (mut bob, _) = c.nodes[0].ws_ready("bob", &btoken, true);
    bob.join("general");
    alice.say("general", "before", "b0");
    let seen = messages_until(&mut bob, "general", "before");
    let since = seen.last().unwrap()["id"].as_i64().unwrap();
    bob.close();
    for i in 0..30 {
        alice.say("general", &format!("away {i}"), &format!("a{i}"));
    }
    // Alice keeps sending from node 1 while bob comes back on node 2.
    let sender = thread::spawn(move || {
        for i in 0..60 {
            alice.say("general", &format!("live {i}"), &format!("l{i}"));
            thread::sleep(Duration::from_millis(5));
        }
        alice.say("general", "last", "last");
        alice
    });
    let (mut bob, _) = c.nodes[1].ws_ready("bob", &btoken, true);
    bob.send_json(&json!({"type": "join", "room": "general", "since": since}));
    let got = messages_until(&mut bob, "general", "last");
    sender.join().unwrap();
    let stored: Vec<i64> = ids(&c.nodes[1].all_messages(&btoken, "general"))
        .into_iter()
        .filter(|id| *id > since)
        .collect();
    assert_eq!(
        ids(&got),
        stored,
        "exactly the stored messages after since, in order"
    );
}

/// Presence is per user across the cluster: `online_users` counts users on
/// any node, `join` and `user_status` follow a user's first connection
/// anywhere, and a second node's connection is no news.
#[test]
fn presence_and_online_counts_span_the_cluster() {
    let c = Cluster::start(2);
    let (mut alice, _) = c.nodes[0].user("alice");
    alice.join("general");
    let btoken = c.token("bob");
    let (mut bob, _) = c.nodes[1].ws_ready("bob", &btoken, true);
    let st = wait_for(&mut alice, CROSS, "bob online", is("user_status"));
    assert_eq!(
        (&st["user"], &st["status"]),
        (&json!("bob"), &json!("online"))
    );
    let online = bob.join("general");
    assert_eq!(online["count"], 2, "{online}");
    assert_eq!(online["users"], json!(["alice", "bob"]));
    let j = wait_for(&mut alice, CROSS, "bob's join", is("join"));
    assert_eq!(j["user"], "bob");
    // Bob's second connection, on node 1, changes nothing anyone sees.
    let (mut bob2, _) = c.nodes[0].ws_ready("bob", &btoken, false);
    bob2.join("general");
    alice.expect_silence(300);
    // His node-2 connection leaves: he is still in the room on node 1.
    bob.close();
    alice.expect_silence(500);
    bob2.close();
    let l = wait_for(&mut alice, CROSS, "bob's leave", is("leave"));
    assert_eq!(l["user"], "bob");
    let st = wait_for(&mut alice, CROSS, "bob offline", is("user_status"));
    assert_eq!(st["status"], "offline");
}

/// A resend with a `client_id` the same user already used is recognised on
/// another node: acked with the first id, delivered once.
#[test]
fn a_client_id_retry_on_another_node_is_recognised() {
    let c = Cluster::start(2);
    let (mut alice, atoken) = c.nodes[0].user("alice");
    let (mut bob, _) = c.nodes[0].user("bob");
    alice.join("general");
    bob.join("general");
    let first = alice.say("general", "once", "k-1");
    c.wait_known(&atoken);
    let (mut again, _) = c.nodes[1].ws_ready("alice", &atoken, false);
    again.join("general");
    let retry = again.say("general", "once", "k-1");
    assert_eq!(retry["id"], first["id"]);
    alice.say("general", "marker", "k-2");
    let got = messages_until(&mut bob, "general", "marker");
    assert_eq!(got.iter().filter(|m| m["content"] == "once").count(), 1);
}

/// Names are unique across nodes (PostgreSQL decides a race), and a user
/// signed up on one node logs in on another.
#[test]
fn signups_are_unique_across_nodes_and_log_in_anywhere() {
    let c = Cluster::start(2);
    let body = |n: &str| json!({"username": "dup", "email": format!("{n}@x.org"), "password": "longenough"});
    let (a, b) = thread::scope(|s| {
        let a = s.spawn(|| c.nodes[0].post_json("/api/signup", &body("a"), None));
        let b = s.spawn(|| c.nodes[1].post_json("/api/signup", &body("b"), None));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut codes = [a.status, b.status];
    codes.sort();
    assert_eq!(codes, [201, 409], "{} / {}", a.text(), b.text());
    let loser = if a.status == 409 { &a } else { &b };
    loser.assert_error(409, "taken");
    // At once, before node 2 can have heard of her: it asks storage.
    c.nodes[0].signup("erin");
    c.nodes[1].login_token("erin");
    let wrong = c.nodes[1].post_json(
        "/api/login",
        &json!({"username": "nobody-here", "password": common::PASSWORD}),
        None,
    );
    wrong.assert_error(401, "invalid_credentials");
}

/// Private messages cross nodes with `delivered`; typing and read receipts
/// too; unread counts come from the shared store.
#[test]
fn private_messages_typing_and_receipts_cross_nodes() {
    let c = Cluster::start(2);
    let (mut alice, _) = c.nodes[0].user("alice");
    let btoken = c.token("bob");
    let (mut bob, _) = c.nodes[1].ws_ready("bob", &btoken, true);
    wait_for(&mut alice, CROSS, "bob online", is("user_status"));
    alice.send_json(
        &json!({"type": "private_message", "to": "bob", "content": "psst", "client_id": "p1"}),
    );
    let ack = wait_for(&mut alice, CROSS, "ack", is("ack"));
    let d = wait_for(&mut alice, CROSS, "delivered", is("delivered"));
    assert_eq!(d["id"], ack["id"]);
    let pm = wait_for(
        &mut bob,
        CROSS,
        "the private message",
        is("private_message"),
    );
    assert_eq!(
        (&pm["from"], &pm["content"]),
        (&json!("alice"), &json!("psst"))
    );
    bob.send_json(&json!({"type": "read", "with": "alice", "id": pm["id"]}));
    let r = wait_for(&mut alice, CROSS, "the read receipt", is("read"));
    assert_eq!((&r["user"], &r["id"]), (&json!("bob"), &pm["id"]));
    alice.join("general");
    bob.join("general");
    bob.send_json(&json!({"type": "typing", "room": "general"}));
    let t = wait_for(&mut alice, CROSS, "typing", is("typing"));
    assert_eq!(t["user"], "bob");
    // Unread: a message while bob is away counts on his next connect, anywhere.
    bob.close();
    alice.say("general", "while away", "u1");
    alice.send_json(
        &json!({"type": "private_message", "to": "bob", "content": "again", "client_id": "p2"}),
    );
    wait_for(&mut alice, CROSS, "ack", is("ack"));
    let (_bob, frames) = c.nodes[1].ws_ready("bob", &btoken, true);
    let unread = frames.iter().find(|f| frame_type(f) == "unread").unwrap();
    assert!(unread.to_string().contains("alice"), "{unread}");
}

/// A private room made on one node admits its members on another, and a
/// removal there takes effect everywhere.
#[test]
fn private_room_membership_follows_across_nodes() {
    let c = Cluster::start(2);
    let (mut alice, _) = c.nodes[0].user("alice");
    let btoken = c.token("bob");
    let (mut bob, _) = c.nodes[1].ws_ready("bob", &btoken, true);
    alice.create_room("ops", &["bob"]);
    wait_for(&mut bob, CROSS, "room_members", is("room_members"));
    let online = bob.join("ops");
    assert_eq!(online["room"], "ops");
    alice.say("ops", "secret", "s1");
    let m = wait_for(&mut bob, CROSS, "the message", is("message"));
    assert_eq!(m["content"], "secret");
    alice.send_json(&json!({"type": "remove_member", "room": "ops", "user": "bob"}));
    let l = wait_for(&mut bob, CROSS, "his removal", |v| {
        frame_type(v) == "leave" && v["user"] == "bob"
    });
    assert_eq!(l["room"], "ops");
    bob.send_json(&json!({"type": "join", "room": "ops"}));
    wait_for(&mut bob, CROSS, "forbidden", |v| {
        frame_type(v) == "error" && v["code"] == "forbidden"
    });
}

/// A node killed mid-conversation: its users `leave` and go `offline` on
/// the other nodes within 15 s, unless still connected elsewhere; the
/// survivors keep chatting, and the dead node's users reconnect elsewhere.
#[test]
fn a_killed_nodes_users_go_offline_elsewhere_within_15_s() {
    let mut c = Cluster::start(2);
    let (mut alice, _) = c.nodes[0].user("alice");
    let btoken = c.token("bob");
    let ctoken = c.token("carol");
    alice.join("general");
    let (mut bob, _) = c.nodes[1].ws_ready("bob", &btoken, true);
    bob.join("general");
    let (mut carol_here, _) = c.nodes[0].ws_ready("carol", &ctoken, true);
    let (mut carol_there, _) = c.nodes[1].ws_ready("carol", &ctoken, false);
    carol_here.join("general");
    carol_there.join("general");
    alice.say("general", "hello", "h");
    wait_for(&mut bob, CROSS, "alice's message", is("message"));
    alice.sync();
    let killed = Instant::now();
    c.nodes[1].kill9();
    let l = wait_for(
        &mut alice,
        Duration::from_secs(15),
        "bob's leave",
        is("leave"),
    );
    assert_eq!(l["user"], "bob");
    let st = wait_for(
        &mut alice,
        Duration::from_secs(15),
        "bob offline",
        is("user_status"),
    );
    assert_eq!(
        (&st["user"], &st["status"]),
        (&json!("bob"), &json!("offline"))
    );
    assert!(
        killed.elapsed() < Duration::from_secs(15),
        "{:?}",
        killed.elapsed()
    );
    eprintln!(
        "node killed: its user shown offline elsewhere after {:?}",
        killed.elapsed()
    );
    // Carol is still connected on node 1: nothing about her.
    alice.expect_silence(500);
    let online = alice.join("general");
    assert_eq!(online["users"], json!(["alice", "carol"]));
    drop(carol_there);
    // Bob comes back on the surviving node and catches up.
    let (mut bob, _) = c.nodes[0].ws_ready("bob", &btoken, true);
    bob.send_json(&json!({"type": "join", "room": "general", "since": 0}));
    let replay = messages_until(&mut bob, "general", "hello");
    assert_eq!(replay.len(), 1);
}

/// Redis stopped: each node keeps serving its own connections and acks what
/// PostgreSQL committed; `/healthz` says `degraded`. Redis back: nodes
/// reconnect by themselves, and what was sent meanwhile reaches the other
/// node's clients without them doing anything.
#[test]
fn redis_restart_nodes_keep_serving_and_catch_up() {
    let pg = Postgres::shared();
    let mut redis = Redis::start();
    let channel = unique_channel("restart");
    let n1 = node(pg.url(), &redis.url(), &channel, "r1");
    let n2 = node(pg.url(), &redis.url(), &channel, "r2");
    wait_until(CROSS, "the cluster to form", || {
        peers(&n1) == 1 && peers(&n2) == 1
    });
    let (mut alice, _) = n1.user("alice");
    let btoken = n1.token("bob");
    wait_until(CROSS, "the signup to reach node 2", || {
        n2.get("/api/users", Some(&btoken)).status == 200
    });
    let (mut bob, _) = n2.ws_ready("bob", &btoken, true);
    alice.join("general");
    bob.join("general");
    redis.stop();
    wait_until(CROSS, "node 1 to notice", || {
        n1.get("/healthz", None).text().starts_with("degraded")
    });
    // Only the bus is down: still healthy (200) for a load balancer, not
    // ready for an orchestrator.
    let health = n1.get("/healthz", None);
    assert_eq!(
        (health.status, health.text()),
        (200, "degraded: bus unreachable".into())
    );
    let ready = n1.get("/readyz", None);
    assert_eq!(
        (ready.status, ready.text()),
        (503, "not ready: bus unreachable".into())
    );
    // Node 1's own clients are still served, and acks are real commits.
    let (mut alice2, _) = n1.user("alice2");
    alice2.join("general");
    for i in 0..5 {
        alice.say("general", &format!("during {i}"), &format!("d{i}"));
    }
    let local = messages_until(&mut alice2, "general", "during 4");
    assert_eq!(local.len(), 5);
    redis.restart();
    let back = Instant::now();
    wait_until(
        Duration::from_secs(20),
        "both nodes back on the bus",
        || n1.get("/healthz", None).text() == "ok" && n2.get("/healthz", None).text() == "ok",
    );
    // Bob, on node 2 throughout, gets what he missed, in order, by itself.
    let caught = messages_until(&mut bob, "general", "during 4");
    eprintln!(
        "redis restarted: bob had the 5 messages sent during the outage {:?} after",
        back.elapsed()
    );
    assert_eq!(
        caught
            .iter()
            .map(|m| m["content"].as_str().unwrap())
            .collect::<Vec<_>>(),
        (0..5).map(|i| format!("during {i}")).collect::<Vec<_>>()
    );
    alice.say("general", "after", "after");
    messages_until(&mut bob, "general", "after");
}

/// PostgreSQL stopped: messages are answered `busy` (nothing acked),
/// `/healthz` says `degraded`; started again, the same retry is stored.
#[test]
fn postgres_stop_answers_busy_and_recovers() {
    let mut pg = Postgres::start();
    let url = pg.create_database("hubbub_fault");
    let redis = Redis::shared();
    let channel = unique_channel("pgstop");
    let n1 = node(&url, redis.url(), &channel, "p1");
    let (mut alice, atoken) = n1.user("alice");
    alice.join("general");
    alice.say("general", "before", "b");
    pg.stop();
    alice.send_json(
        &json!({"type": "message", "room": "general", "content": "during", "client_id": "d"}),
    );
    let e = wait_for(&mut alice, CROSS, "an error", is("error"));
    assert_eq!(
        (&e["code"], &e["client_id"]),
        (&json!("busy"), &json!("d")),
        "{e}"
    );
    wait_until(CROSS, "degraded", || {
        n1.get("/healthz", None).text().starts_with("degraded")
    });
    // Storage unreachable is a status code, not only a body.
    assert_eq!(n1.get("/healthz", None).status, 503);
    assert_eq!(n1.get("/readyz", None).status, 503);
    pg.start_again();
    let back = Instant::now();
    wait_until(Duration::from_secs(20), "healthy again", || {
        n1.get("/healthz", None).text() == "ok"
    });
    assert_eq!(n1.get("/readyz", None).text(), "ready");
    eprintln!("postgres back: /healthz ok after {:?}", back.elapsed());
    let ack = alice.say("general", "during", "d");
    assert!(ack["id"].as_i64().unwrap() > 0);
    let stored = n1.all_messages(&atoken, "general");
    let contents: Vec<&str> = stored
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["before", "during"]);
}

/// Through nginx, round-robin and no sticky sessions: every request may land
/// on another node, and the chat still works (signup on one node, login on
/// another, WebSockets on both).
#[test]
fn behind_nginx_round_robin_without_sticky_sessions() {
    let c = Cluster::start(2);
    let lb = Nginx::start(&[c.nodes[0].addr, c.nodes[1].addr]);
    let front = Server::front(lb.addr());
    let (mut alice, _) = front.user("alice");
    let (mut bob, _) = front.user("bob");
    alice.join("general");
    bob.join("general");
    alice.say("general", "via nginx", "n1");
    let m = wait_for(&mut bob, CROSS, "the message", is("message"));
    assert_eq!(m["content"], "via nginx");
    // Each node served some of the WebSockets.
    let ws_on = |n: &Server| {
        n.get("/metrics", None)
            .text()
            .lines()
            .find_map(|l| l.strip_prefix("hubbub_ws_connections "))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0)
    };
    assert_eq!(ws_on(&c.nodes[0]) + ws_on(&c.nodes[1]), 2);
    assert_eq!(ws_on(&c.nodes[0]), 1, "round-robin spread the two sockets");
}

/// Moving up: `hubbub migrate` copies a single node's SQLite database into
/// PostgreSQL, and a cluster node then serves the same accounts (old
/// passwords and old tokens), history with the same ids, and unread
/// counts, and uploaded files (rows and bytes); a second migrate into the
/// same database is refused.
#[test]
fn migrate_moves_a_single_node_into_a_cluster() {
    let mut single = Server::builder().no_jwt_secret().start();
    let (mut alice, atoken) = single.user("alice");
    let (mut bob, btoken) = single.user("bob");
    alice.join("general");
    bob.join("general");
    let old = alice.say("general", "from the old days", "o1");
    alice.send_json(
        &json!({"type": "private_message", "to": "bob", "content": "dm", "client_id": "o2"}),
    );
    wait_for(&mut alice, CROSS, "ack", is("ack"));
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let up = http(
        single.addr,
        "POST",
        "/api/files?name=old.bin",
        &[
            ("Authorization", &format!("Bearer {atoken}")),
            ("Content-Type", "application/octet-stream"),
        ],
        Some(&bytes),
    );
    assert_eq!(up.status, 201, "{}", up.text());
    let file_path = format!("/api/files/{}", up.json()["file"]["id"]);
    drop((alice, bob));
    assert!(single.sigterm().success());
    let pg = Postgres::shared();
    let migrate = |url: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hubbub"))
            .arg("migrate")
            .arg("--from-sqlite")
            .arg(single.db_path())
            .arg("--postgres")
            .arg(url)
            .output()
            .expect("run hubbub migrate")
    };
    let out = migrate(pg.url());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let redis = Redis::shared();
    let n = Server::builder()
        .no_jwt_secret()
        .arg("--cluster-key")
        .arg(KEY)
        .arg("--postgres")
        .arg(pg.url())
        .arg("--redis")
        .arg(redis.url())
        .arg("--redis-channel")
        .arg(unique_channel("migrate"))
        .start();
    // The old token is still valid (the secret came along), and so is bob's password.
    let history = n.messages(&atoken, "room=general");
    assert_eq!(history.len(), 1);
    assert_eq!(
        (&history[0]["id"], &history[0]["content"]),
        (&old["id"], &json!("from the old days"))
    );
    let got = http(
        n.addr,
        "GET",
        &file_path,
        &[("Authorization", &format!("Bearer {atoken}"))],
        None,
    );
    assert_eq!(got.status, 200, "the uploaded file came along");
    assert!(got.body == bytes, "its bytes, from PostgreSQL's blob rows");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 files (1 blobs)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let btoken2 = n.login_token("bob");
    let (_bob, frames) = n.ws_ready("bob", &btoken2, true);
    let unread = frames.iter().find(|f| frame_type(f) == "unread").unwrap();
    assert!(
        unread.to_string().contains("alice"),
        "bob's unread dm came along: {unread}"
    );
    let (mut alice, _) = n.ws_ready("alice", &atoken, true);
    alice.join("general");
    let new = alice.say("general", "on the cluster", "n1");
    assert!(
        new["id"].as_i64() > old["id"].as_i64(),
        "ids go on after the copied ones"
    );
    let _ = btoken;
    let again = migrate(pg.url());
    assert!(
        !again.status.success(),
        "a second copy into a used database is refused"
    );
}

/// The REST views and the remaining frames span the cluster: `/api/users`
/// shows a user online on another node, `/api/rooms` lists a room opened
/// elsewhere with its cluster-wide online count, a `history` frame on one
/// node holds what was said on another, and `add_member` on one node lets
/// the new member join on another.
#[test]
fn rest_views_history_and_add_member_span_the_cluster() {
    let c = Cluster::start(2);
    let (mut alice, atoken) = c.nodes[0].user("alice");
    let btoken = c.token("bob");
    let (mut bob, _) = c.nodes[1].ws_ready("bob", &btoken, true);
    wait_for(&mut alice, CROSS, "bob online", is("user_status"));
    let users = c.nodes[0].get("/api/users", Some(&atoken)).json();
    let bob_row = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "bob")
        .cloned()
        .unwrap();
    assert_eq!(bob_row["online"], true, "{users}");
    alice.join("lobby");
    alice.say("lobby", "said on node 1", "l1");
    bob.join("lobby");
    wait_for(&mut alice, CROSS, "bob's join", is("join"));
    let rooms = c.nodes[1].get("/api/rooms", Some(&btoken)).json();
    let lobby = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "lobby")
        .cloned()
        .unwrap_or_else(|| panic!("lobby not listed on node 2: {rooms}"));
    assert_eq!(lobby["online"], 2, "{lobby}");
    bob.send_json(&json!({"type": "history", "room": "lobby", "limit": 10}));
    let h = wait_for(&mut bob, CROSS, "history", is("history"));
    assert_eq!(h["messages"][0]["content"], "said on node 1", "{h}");
    // A private room with alice alone; bob is added on node 1, joins on node 2.
    alice.create_room("ops", &[]);
    bob.send_json(&json!({"type": "join", "room": "ops"}));
    wait_for(&mut bob, CROSS, "forbidden", |v| {
        frame_type(v) == "error" && v["code"] == "forbidden"
    });
    alice.send_json(&json!({"type": "add_member", "room": "ops", "user": "bob"}));
    wait_for(&mut bob, CROSS, "room_members", is("room_members"));
    let online = bob.join("ops");
    assert_eq!(online["room"], "ops");
}

/// Edits, deletes, reactions and mentions made on one node reach the
/// connections on another (each frame once), a reply's `reply_to` crosses
/// with its message, and a search on either node sees the same stored
/// state: the edited words, not the deleted message.
#[test]
fn edits_reactions_mentions_and_search_span_the_cluster() {
    let c = Cluster::start(2);
    let (mut alice, ta) = c.nodes[0].user("alice");
    let btoken = c.token("bob");
    let (mut bob, _) = c.nodes[1].ws_ready("bob", &btoken, true);
    wait_for(&mut alice, CROSS, "bob online", is("user_status"));
    alice.join("general");
    bob.join("general");
    let id = alice.say("general", "helo wrold", "e1")["id"].clone();
    wait_for(&mut bob, CROSS, "the message", is("message"));

    alice.send_json(&json!({"type": "edit", "id": id, "content": "hello world"}));
    let mine = wait_for(&mut alice, CROSS, "the edit", is("message_edited"));
    assert_eq!(
        wait_for(&mut bob, CROSS, "the edit on node 2", is("message_edited")),
        mine
    );
    bob.send_json(&json!({"type": "react", "id": id, "emoji": "👍"}));
    let r = wait_for(&mut alice, CROSS, "bob's reaction", is("reaction"));
    assert_eq!((&r["user"], &r["on"]), (&json!("bob"), &json!(true)));
    wait_for(&mut bob, CROSS, "bob's own reaction", is("reaction"));

    bob.send_json(
        &json!({"type": "message", "room": "general", "content": "@alice look",
                          "reply_to": id, "client_id": "b1"}),
    );
    wait_for(&mut bob, CROSS, "bob's ack", is("ack"));
    let m = wait_for(&mut alice, CROSS, "bob's reply", is("message"));
    assert_eq!(m["reply_to"], id);
    let mention = wait_for(&mut alice, CROSS, "the mention", is("mention"));
    assert_eq!(mention["message"]["id"], m["id"]);

    let gone = alice.say("general", "oops wrong room", "e2")["id"].clone();
    wait_for(&mut bob, CROSS, "the mistake", is("message"));
    alice.send_json(&json!({"type": "delete", "id": gone}));
    wait_for(&mut alice, CROSS, "the delete", is("message_deleted"));
    let d = wait_for(
        &mut bob,
        CROSS,
        "the delete on node 2",
        is("message_deleted"),
    );
    assert_eq!(d["id"], gone);

    for (node, token) in [(&c.nodes[0], &ta), (&c.nodes[1], &btoken)] {
        let found = node.get("/api/search?q=world", Some(token)).json();
        assert_eq!(found["messages"][0]["content"], "hello world");
        assert_eq!(
            found["messages"][0]["reactions"][0]["users"],
            json!(["bob"])
        );
        for q in ["wrold", "oops"] {
            let none = node.get(&format!("/api/search?q={q}"), Some(token)).json();
            assert_eq!(none["messages"], json!([]), "{q}");
        }
    }
}

/// A file uploaded on one node is served by every node, to whoever may
/// read it there: its uploader before it is sent, then the readers of the
/// message that carries it; everyone else gets 404 on every node, with
/// and without a token.
#[test]
fn files_are_served_by_every_node_to_their_readers_only() {
    let c = Cluster::start(2);
    let (mut alice, atoken) = c.nodes[0].user("alice");
    let btoken = c.token("bob");
    let ctoken = c.token("carol");
    let body: Vec<u8> = (0..700_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let up = common::http(
        c.nodes[0].addr,
        "POST",
        "/api/files?name=plan.bin",
        &[
            ("Authorization", &format!("Bearer {atoken}")),
            ("Content-Type", "application/octet-stream"),
        ],
        Some(&body),
    );
    assert_eq!(up.status, 201, "{}", up.text());
    let id = up.json()["file"]["id"].as_u64().unwrap();
    let path = format!("/api/files/{id}");
    let mine = c.nodes[1].get(&path, Some(&atoken));
    assert_eq!(mine.status, 200, "the uploader, on the other node");
    assert!(mine.body == body, "the same bytes from the other node");
    for n in &c.nodes {
        for who in [Some(btoken.as_str()), Some(ctoken.as_str()), None] {
            n.get(&path, who).assert_error(404, "not_found");
        }
    }
    alice.send_json(
        &json!({"type": "private_message", "to": "bob", "attachments": [id], "client_id": "f1"}),
    );
    wait_for(&mut alice, CROSS, "ack", is("ack"));
    for n in &c.nodes {
        let r = n.get(&path, Some(&btoken));
        assert_eq!(r.status, 200, "bob reads it on {}", n.addr);
        assert!(r.body == body);
        n.get(&path, Some(&ctoken)).assert_error(404, "not_found");
    }
}
