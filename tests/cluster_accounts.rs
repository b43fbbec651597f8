//! Accounts across a cluster: two `hubbub` nodes on one PostgreSQL and one
//! Redis (real ones, `common::services`). A ban, a logout and a role
//! change made on one node take effect on the other within the contract's
//! second, a new avatar is shown there as fast, and a WebSocket ticket from
//! one node opens a socket on the other.

mod common;

use std::time::{Duration, Instant};

use common::cluster::node;
use common::services::{Postgres, Redis, unique_channel};
use common::{Resp, Server, Ws, ws_connect};
use serde_json::{Value, json};

/// The contract's bound, and slack for a loaded test machine.
const WITHIN: Duration = Duration::from_secs(1);
const SLACK: Duration = Duration::from_millis(500);
/// How long forming the cluster and a signup's note may take.
const CROSS: Duration = Duration::from_secs(10);

fn wait_until(within: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two formed nodes; the services stay up while the returned guards live.
fn pair() -> (
    Server,
    Server,
    common::services::SharedPg,
    common::services::SharedRedis,
) {
    let pg = Postgres::shared();
    let redis = Redis::shared();
    let channel = unique_channel("accounts");
    let a = node(pg.url(), redis.url(), &channel, "n1");
    let b = node(pg.url(), redis.url(), &channel, "n2");
    for n in [&a, &b] {
        wait_until(CROSS, "the cluster to form", || {
            n.get("/metrics", None)
                .text()
                .lines()
                .any(|l| l == "hubbub_cluster_peers 1")
        });
    }
    (a, b, pg, redis)
}

fn send(s: &Server, method: &str, path: &str, body: Option<&Value>, token: &str) -> Resp {
    let auth = format!("Bearer {token}");
    let mut h = vec![("Authorization", auth.as_str())];
    let text = body
        .map(|b| b.to_string())
        .or_else(|| (method == "POST").then(String::new));
    // Every write says it is JSON, even an empty one (the contract's CSRF rule).
    if method != "GET" {
        h.push(("Content-Type", "application/json"));
    }
    common::http(s.addr, method, path, &h, text.as_deref().map(str::as_bytes))
}

/// Signs `name` up on `a` and waits until `b` takes the token.
fn user_on_both(a: &Server, b: &Server, name: &str) -> String {
    let token = a.token(name);
    wait_until(CROSS, "the signup to reach the other node", || {
        b.get("/api/me", Some(&token)).status == 200
    });
    token
}

fn closed_with(ws: &mut Ws, code: u16) {
    let t0 = Instant::now();
    let (got, _) = ws.expect_close(WITHIN + SLACK + Duration::from_secs(3));
    assert_eq!(got, Some(code), "close code");
    assert!(
        t0.elapsed() <= WITHIN + SLACK,
        "closed after {:?}",
        t0.elapsed()
    );
}

/// A ban made on node 1 closes the user's socket on node 2 with 4003
/// within a second, and node 2 refuses their token with 403 `banned`.
#[test]
fn a_ban_on_one_node_closes_sockets_on_the_other() {
    let (a, b, _pg, _redis) = pair();
    let admin = user_on_both(&a, &b, "alice");
    let bob = user_on_both(&a, &b, "bob");
    let (mut ws, _) = b.ws_ready("bob", &bob, true);
    let r = send(
        &a,
        "POST",
        "/api/admin/users/bob/ban",
        Some(&json!({"reason": "spam"})),
        &admin,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    closed_with(&mut ws, 4003);
    b.get("/api/me", Some(&bob)).assert_error(403, "banned");
}

/// A logout on node 1 closes the session's socket on node 2 with 4001
/// within a second, and node 2 refuses the token with 401.
#[test]
fn a_logout_on_one_node_ends_the_session_on_the_other() {
    let (a, b, _pg, _redis) = pair();
    let token = user_on_both(&a, &b, "alice");
    let (mut ws, _) = b.ws_ready("alice", &token, true);
    assert_eq!(send(&a, "POST", "/api/logout", None, &token).status, 204);
    closed_with(&mut ws, 4001);
    b.get("/api/me", Some(&token))
        .assert_error(401, "unauthorized");
}

/// A role given on node 1 is in force on node 2 within a second: the new
/// moderator may read the admin user list there.
#[test]
fn a_role_change_reaches_the_other_node_within_a_second() {
    let (a, b, _pg, _redis) = pair();
    let admin = user_on_both(&a, &b, "alice");
    let carol = user_on_both(&a, &b, "carol");
    b.get("/api/admin/users", Some(&carol))
        .assert_error(403, "forbidden");
    let role = json!({"role": "moderator"});
    let r = send(
        &a,
        "PUT",
        "/api/admin/users/carol/role",
        Some(&role),
        &admin,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let t0 = Instant::now();
    wait_until(WITHIN + SLACK, "the role to reach node 2", || {
        b.get("/api/admin/users", Some(&carol)).status == 200
    });
    eprintln!("role seen on the other node after {:?}", t0.elapsed());
}

/// A ticket made on node 1 opens a socket on node 2, once: used there, it
/// is refused on node 1 too.
#[test]
fn a_ticket_works_on_any_node_once() {
    let (a, b, _pg, _redis) = pair();
    let token = user_on_both(&a, &b, "alice");
    let r = send(&a, "POST", "/api/ws-ticket", None, &token);
    assert_eq!(r.status, 201, "{}", r.text());
    let ticket = r.json()["ticket"].as_str().unwrap().to_string();
    let mut ws = ws_connect(b.addr, &format!("/ws?ticket={ticket}"), None).expect("upgrade on n2");
    ws.ready("alice", true);
    wait_until(CROSS, "the used ticket to be refused on n1", || {
        matches!(
            ws_connect(a.addr, &format!("/ws?ticket={ticket}"), None),
            Err(common::ConnectError::Http(401, _))
        )
    });
}

/// A small PNG, half red, half blue.
fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, _| {
        image::Rgb(if x < w / 2 {
            [200, 30, 30]
        } else {
            [30, 30, 200]
        })
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// An avatar set on node 1 is in node 2's user objects within a second,
/// and a socket there is told (`user_updated` with the new URL), as for a
/// display name: both travel by the account change log, not by restart.
#[test]
fn a_new_avatar_reaches_the_other_node_within_a_second() {
    let (a, b, _pg, _redis) = pair();
    let alice = user_on_both(&a, &b, "alice");
    let bob = user_on_both(&a, &b, "bob");
    let (mut ws, _) = b.ws_ready("bob", &bob, true);
    let r = common::http(
        a.addr,
        "PUT",
        "/api/me/avatar",
        &[
            ("Authorization", &format!("Bearer {alice}")),
            ("Content-Type", "image/png"),
        ],
        Some(&png(120, 80)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let url = r.json()["avatar"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    let frame = loop {
        let f = ws.recv_within(WITHIN + SLACK);
        if f["type"] == "user_updated" && f["user"]["username"] == "alice" {
            break f;
        }
    };
    assert_eq!(frame["user"]["avatar"], url.as_str(), "{frame}");
    assert!(
        t0.elapsed() <= WITHIN + SLACK,
        "told after {:?}",
        t0.elapsed()
    );
    let users = b.get("/api/users", Some(&bob)).json();
    let listed = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "alice")
        .unwrap()
        .clone();
    assert_eq!(listed["avatar"], url.as_str());
    let served = common::http(b.addr, "GET", &url, &[], None);
    assert_eq!(served.status, 200, "node 2 serves the avatar");
}

/// A room archived on node 1 refuses a message on node 2 within a
/// second (node 2's clients are told `room_archived` when it takes
/// effect there); deleted on node 1, it is gone on node 2 within a second
/// too: its client is told `room_deleted` and it is no longer listed.
#[test]
fn a_room_archived_or_deleted_on_one_node_is_so_on_the_other() {
    let (a, b, _pg, _redis) = pair();
    let admin = user_on_both(&a, &b, "alice");
    let bob = user_on_both(&a, &b, "bob");
    let (mut ws, _) = b.ws_ready("bob", &bob, true);
    ws.join("attic");
    ws.say("attic", "before", "c1");
    let r = send(&a, "POST", "/api/admin/rooms/attic/archive", None, &admin);
    assert_eq!(r.status, 204, "{}", r.text());
    let t0 = Instant::now();
    let told = ws.expect_after("room_archived", &["user_status", "join"]);
    assert_eq!(
        told,
        json!({"type": "room_archived", "room": "attic", "archived": true})
    );
    assert!(t0.elapsed() <= WITHIN + SLACK, "after {:?}", t0.elapsed());
    ws.send_json(&json!({"type": "message", "room": "attic", "content": "late"}));
    let e = ws.expect_after("error", &["user_status"]);
    assert_eq!(e["code"], "forbidden", "{e}");

    let r = send(&a, "DELETE", "/api/admin/rooms/attic", None, &admin);
    assert_eq!(r.status, 204, "{}", r.text());
    let t0 = Instant::now();
    let gone = ws.expect_after("room_deleted", &["user_status", "join", "leave"]);
    assert_eq!(gone, json!({"type": "room_deleted", "room": "attic"}));
    assert!(t0.elapsed() <= WITHIN + SLACK, "after {:?}", t0.elapsed());
    let rooms = b.get("/api/rooms", Some(&bob)).json();
    assert!(
        !rooms["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "attic"),
        "{rooms}"
    );
    assert!(b.messages(&bob, "room=attic").is_empty());
}
