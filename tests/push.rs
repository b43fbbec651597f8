//! Web Push end to end (the contract's "Push"): the real server sends to a
//! push service on 127.0.0.1 (`common::push_service`), which checks every
//! request as FCM or autopush would (VAPID token, `aes128gcm`) and decrypts
//! it with the subscription's own keys, as the browser would.

mod common;

use std::time::{Duration, Instant};

use common::push_service::{PushService, Subscriber};
use common::{Server, http};
use serde_json::{Value, json};

/// A push is sent within this of the commit (loopback: milliseconds).
const SOON: Duration = Duration::from_secs(5);
/// How long "no push" is watched for.
const QUIET: Duration = Duration::from_millis(1500);

fn server() -> Server {
    Server::builder()
        .arg("--push-allow-insecure")
        .arg("--presence-grace")
        .arg("0")
        .rate_limit(0)
        .start()
}

fn send(s: &Server, method: &str, path: &str, body: &Value, token: &str) -> common::Resp {
    let auth = format!("Bearer {token}");
    http(
        s.addr,
        method,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(body.to_string().as_bytes()),
    )
}

fn key(s: &Server, token: &str) -> String {
    let r = s.get("/api/push/key", Some(token));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["public_key"].as_str().unwrap().to_string()
}

fn subscribe(s: &Server, token: &str, sub: &Subscriber) {
    let r = send(s, "POST", "/api/push/subscriptions", &sub.json(), token);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json(), json!({"endpoint": sub.endpoint}));
}

fn show_text(s: &Server, token: &str, on: bool) {
    let r = send(
        s,
        "PUT",
        "/api/push/settings",
        &json!({"show_text": on}),
        token,
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// The routes follow the contract: a base64url P-256 key; 201 for a
/// subscription, 204 for its removal; a caller's token is required; an
/// endpoint that is no push service's, or keys that are no keys, are 400
/// `invalid_input`; the setting defaults to showing text and is kept.
#[test]
fn routes_follow_the_contract() {
    let s = server();
    let token = s.token("alice");
    let k = key(&s, &token);
    assert_eq!(k.len(), 87, "65 bytes, base64url without padding");
    assert!(k.starts_with('B'), "an uncompressed point (0x04)");
    assert_eq!(key(&s, &token), k, "one key");
    s.get("/api/push/key", None)
        .assert_error(401, "unauthorized");
    let svc = PushService::start();
    let sub = Subscriber::new(&svc, "a");
    send(&s, "POST", "/api/push/subscriptions", &sub.json(), "nope")
        .assert_error(401, "unauthorized");
    subscribe(&s, &token, &sub);
    let mut bad = sub.json();
    bad["endpoint"] = json!("https://10.0.0.7/push");
    send(&s, "POST", "/api/push/subscriptions", &bad, &token).assert_error(400, "invalid_input");
    let mut bad = sub.json();
    bad["keys"]["auth"] = json!("short");
    send(&s, "POST", "/api/push/subscriptions", &bad, &token).assert_error(400, "invalid_input");
    let r = http(
        s.addr,
        "POST",
        "/api/push/subscriptions",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "text/plain"),
        ],
        Some(sub.json().to_string().as_bytes()),
    );
    r.assert_error(415, "invalid_input");
    let r = s.get("/api/push/settings", Some(&token));
    assert_eq!((r.status, r.json()), (200, json!({"show_text": true})));
    show_text(&s, &token, false);
    assert_eq!(
        s.get("/api/push/settings", Some(&token)).json(),
        json!({"show_text": false})
    );
    let gone = json!({"endpoint": sub.endpoint});
    let r = send(&s, "DELETE", "/api/push/subscriptions", &gone, &token);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("content-length"), None, "a 204 has no body");
    let r = send(&s, "DELETE", "/api/push/subscriptions", &gone, &token);
    assert_eq!(r.status, 204, "deleting again is no error");
    send(&s, "POST", "/api/push/settings", &json!({}), &token)
        .assert_error(405, "method_not_allowed");
}

/// A mention of a user with no connection reaches each of their
/// subscriptions once it is stored: a POST signed with the server's VAPID
/// key, `aes128gcm` that their keys decrypt to the notification (who,
/// where, what, the message id), with `TTL`, `Urgency` and an opaque
/// `Topic`. The author is never pushed about their own message, a message
/// without the mention pushes nobody, and once the user is connected the
/// next mention is not pushed.
#[test]
fn a_mention_of_an_offline_user_is_pushed_to_each_subscription() {
    let s = server();
    let svc = PushService::start();
    let (mut alice, alice_token) = s.user("alice");
    let bob_token = s.token("bob");
    let k = key(&s, &bob_token);
    let (phone, laptop, own) = (
        Subscriber::new(&svc, "bob-phone"),
        Subscriber::new(&svc, "bob-laptop"),
        Subscriber::new(&svc, "alice"),
    );
    subscribe(&s, &bob_token, &phone);
    subscribe(&s, &bob_token, &laptop);
    subscribe(&s, &alice_token, &own);
    alice.join("general");
    alice.say("general", "nobody named here", "c0");
    let ack = alice.say(
        "general",
        "hey @bob, and @alice too: the deploy is done",
        "c1",
    );
    let first = svc.expect(SOON, "bob's first subscription");
    let second = svc.expect(SOON, "bob's second subscription");
    svc.expect_none(QUIET, "one push per subscription, none for the author");
    let mut paths = vec![first.path.clone(), second.path.clone()];
    paths.sort();
    assert_eq!(paths, ["/push/bob-laptop", "/push/bob-phone"]);
    for p in [&first, &second] {
        let sub = if p.path == phone.path {
            &phone
        } else {
            &laptop
        };
        let shown = sub.open(p, &k);
        assert_eq!(
            shown,
            json!({"key": "#general", "title": "alice mentioned you in #general",
                "body": "hey @bob, and @alice too: the deploy is done", "id": ack["id"], "count": 1})
        );
        assert_eq!(p.header("ttl"), Some("86400"));
        assert_eq!(p.header("urgency"), Some("normal"));
        let topic = p.header("topic").unwrap();
        assert_eq!(topic.len(), 22);
        assert!(!topic.contains("general"), "the topic names nothing");
    }
    assert_eq!(first.header("topic"), second.header("topic"));
    let (_bob_ws, _) = s.ws_ready("bob", &bob_token, true);
    alice.say("general", "@bob are you there?", "c2");
    svc.expect_none(QUIET, "bob is connected");
}

/// A private message to a user with no connection is pushed; with "show
/// message text" off the payload says only that something came: neither
/// the sender, nor the conversation, nor the text, nor the id.
#[test]
fn private_messages_are_pushed_as_the_user_chose() {
    let s = server();
    let svc = PushService::start();
    let (mut alice, _) = s.user("alice");
    let bob_token = s.token("bob");
    let carol_token = s.token("carol");
    let k = key(&s, &bob_token);
    let (bob, carol) = (Subscriber::new(&svc, "bob"), Subscriber::new(&svc, "carol"));
    subscribe(&s, &bob_token, &bob);
    subscribe(&s, &carol_token, &carol);
    show_text(&s, &carol_token, false);
    alice.send_json(&json!({"type": "private_message", "to": "bob", "content": "lunch?"}));
    let ack = alice.expect_after("ack", &["user_status"]);
    let shown = bob.open(&svc.expect(SOON, "bob's push"), &k);
    assert_eq!(
        shown,
        json!({"key": "@alice", "title": "alice", "body": "lunch?", "id": ack["id"], "count": 1})
    );
    alice.send_json(
        &json!({"type": "private_message", "to": "carol", "content": "the secret plan"}),
    );
    let p = svc.expect(SOON, "carol's push");
    let shown = carol.open(&p, &k);
    assert_eq!(
        shown,
        json!({"key": null, "title": "hubbub", "body": "You have a new message", "id": null, "count": 1})
    );
}

/// A conversation's pushes are paced: the first goes at once, the rest of
/// a burst wait for the interval and go as one push, the newest message
/// with the count of all it stands for.
#[test]
fn a_burst_is_one_push_now_and_one_for_the_rest() {
    let s = server();
    let svc = PushService::start();
    let (mut alice, _) = s.user("alice");
    let bob_token = s.token("bob");
    let k = key(&s, &bob_token);
    let bob = Subscriber::new(&svc, "bob");
    subscribe(&s, &bob_token, &bob);
    for i in 1..=4 {
        alice.send_json(
            &json!({"type": "private_message", "to": "bob", "content": format!("m{i}")}),
        );
        alice.expect_after("ack", &["user_status"]);
    }
    let first = bob.open(&svc.expect(SOON, "the first push"), &k);
    assert_eq!((&first["body"], &first["count"]), (&json!("m1"), &json!(1)));
    svc.expect_none(Duration::from_secs(5), "the rest waits for the interval");
    let rest = svc.expect(Duration::from_secs(10), "the held push");
    let rest = bob.open(&rest, &k);
    assert_eq!((&rest["body"], &rest["count"]), (&json!("m4"), &json!(3)));
    svc.expect_none(QUIET, "one push for the three held");
}

/// The push service's answers: 410 and 404 drop the subscription (the next
/// push does not go there), 429 is tried again after its `Retry-After` and
/// 500 after the backoff, each until it goes through once.
#[test]
fn gone_subscriptions_are_dropped_and_failures_retried() {
    let s = server();
    let svc = PushService::start();
    let (mut alice, _) = s.user("alice");
    let bob_token = s.token("bob");
    let (gone, busy, broken) = (
        Subscriber::new(&svc, "gone"),
        Subscriber::new(&svc, "busy"),
        Subscriber::new(&svc, "broken"),
    );
    for sub in [&gone, &busy, &broken] {
        subscribe(&s, &bob_token, sub);
    }
    svc.script(&gone.path, &[(410, None)]);
    svc.script(&busy.path, &[(429, Some(1))]);
    svc.script(&broken.path, &[(500, None), (503, None)]);
    alice.join("general");
    let said = Instant::now();
    alice.say("general", "@bob first", "c1");
    let mut got: Vec<(String, u16, Duration)> = Vec::new();
    while got.iter().filter(|(_, status, _)| *status == 201).count() < 2 {
        let p = svc.expect(Duration::from_secs(10), "a push or its retry");
        got.push((p.path.clone(), p.status, p.at - said));
    }
    let tries = |path: &str| got.iter().filter(|(p, _, _)| p == path).count();
    assert_eq!(
        (tries(&gone.path), tries(&busy.path), tries(&broken.path)),
        (1, 2, 3)
    );
    let busy_retry = got.iter().rfind(|(p, _, _)| *p == busy.path).unwrap();
    assert!(
        busy_retry.2 >= Duration::from_secs(1),
        "Retry-After: 1 was kept"
    );
    let broken_last = got.iter().rfind(|(p, _, _)| *p == broken.path).unwrap();
    assert!(
        broken_last.2 >= Duration::from_secs(3),
        "1 s, then 2 s of backoff"
    );
    alice.join("ops");
    alice.say("ops", "@bob second", "c2");
    let mut next = vec![
        svc.expect(SOON, "a push").path,
        svc.expect(SOON, "a push").path,
    ];
    next.sort();
    assert_eq!(
        next,
        [broken.path.clone(), busy.path.clone()],
        "the gone one is dropped"
    );
    svc.expect_none(QUIET, "nothing to the gone subscription");
    let metrics = s.get("/metrics", None).text();
    for line in [
        "hubbub_push_gone_total 1",
        "hubbub_push_retried_total 3",
        "hubbub_push_sent_total 4",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

/// Server-side request forgery: without `--push-allow-insecure`, loopback
/// and private endpoints are refused when stored, and a host name that
/// passes that check but resolves to loopback (this machine's own name) is
/// never connected to when a push is sent: the push fails, the local
/// service hears nothing.
#[test]
fn pushes_never_reach_private_addresses() {
    let s = Server::builder()
        .arg("--presence-grace")
        .arg("0")
        .rate_limit(0)
        .start();
    let svc = PushService::start();
    let (mut alice, _) = s.user("alice");
    let bob_token = s.token("bob");
    let port = svc.addr().port();
    for endpoint in [
        format!("http://127.0.0.1:{port}/push/x"),
        format!("https://127.0.0.1:{port}/push/x"),
        format!("https://localhost:{port}/push/x"),
        "https://169.254.169.254/latest".to_string(),
        format!("https://[::1]:{port}/push/x"),
    ] {
        let mut sub = Subscriber::new(&svc, "x").json();
        sub["endpoint"] = json!(endpoint);
        send(&s, "POST", "/api/push/subscriptions", &sub, &bob_token)
            .assert_error(400, "invalid_input");
    }
    let name = loopback_name();
    let mut sub = Subscriber::new(&svc, "x").json();
    sub["endpoint"] = json!(format!("https://{name}:{port}/push/x"));
    let r = send(&s, "POST", "/api/push/subscriptions", &sub, &bob_token);
    assert_eq!(
        r.status,
        201,
        "a name is checked when it is used: {}",
        r.text()
    );
    alice.join("general");
    alice.say("general", "@bob hello", "c1");
    let deadline = Instant::now() + SOON;
    while !s
        .get("/metrics", None)
        .text()
        .contains("hubbub_push_failed_total 1")
    {
        assert!(Instant::now() < deadline, "the push did not fail");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        svc.connections(),
        0,
        "nothing connected to the loopback service"
    );
}

/// A name of this machine, other than `localhost`, that resolves to a
/// loopback address (its host name, from /etc/hosts).
fn loopback_name() -> String {
    use std::net::ToSocketAddrs;
    let mut names: Vec<String> = std::fs::read_to_string("/etc/hostname")
        .map(|h| vec![h.trim().to_string()])
        .unwrap_or_default();
    if let Ok(hosts) = std::fs::read_to_string("/etc/hosts") {
        for line in hosts.lines().filter(|l| !l.trim_start().starts_with('#')) {
            names.extend(line.split_whitespace().skip(1).map(String::from));
        }
    }
    names
        .into_iter()
        .filter(|n| {
            !n.is_empty() && !n.eq_ignore_ascii_case("localhost") && !n.ends_with(".localhost")
        })
        .find(|n| {
            (n.as_str(), 1)
                .to_socket_addrs()
                .is_ok_and(|mut a| a.all(|a| a.ip().is_loopback()))
        })
        .expect("a host name of this machine that resolves to loopback (/etc/hosts)")
}

/// One push per event in a cluster: two nodes on one PostgreSQL and one
/// Redis; a subscription stored through one node serves both; a mention
/// stored on one node and a private message stored on the other are each
/// pushed exactly once (by the node that stored it), and once the user is
/// connected to either node, neither pushes.
#[test]
fn one_push_per_event_across_two_nodes() {
    use common::services::{Postgres, Redis, unique_channel};
    let (pg, redis) = (Postgres::shared(), Redis::shared());
    let channel = unique_channel("push");
    let node = |name: &str| {
        Server::builder()
            .arg("--postgres")
            .arg(pg.url())
            .arg("--redis")
            .arg(redis.url())
            .arg("--redis-channel")
            .arg(&channel)
            .arg("--node-id")
            .arg(name)
            // The nodes' shared key for the notes between them (at least 32 bytes).
            .arg("--cluster-key")
            .arg("push-test-cluster-key-0123456789abcdef")
            .arg("--push-allow-insecure")
            .arg("--presence-grace")
            .arg("0")
            .rate_limit(0)
            .start()
    };
    let (n1, n2) = (node("n1"), node("n2"));
    let peers = |n: &Server| {
        n.get("/metrics", None)
            .text()
            .contains("hubbub_cluster_peers 1")
    };
    wait_until("the cluster to form", || peers(&n1) && peers(&n2));
    let svc = PushService::start();
    let alice = n1.token("alice");
    let carol = n1.token("carol");
    let bob = n1.token("bob");
    wait_until("the users to reach n2", || {
        n2.get("/api/users", Some(&bob)).status == 200
    });
    let k = key(&n2, &bob);
    assert_eq!(key(&n1, &bob), k, "one key for the cluster");
    let sub = Subscriber::new(&svc, "bob");
    subscribe(&n2, &bob, &sub);
    let (mut a, _) = n1.ws_ready("alice", &alice, true);
    a.join("general");
    let ack = a.say("general", "@bob on node one", "c1");
    let p = svc.expect(SOON, "the mention's push");
    assert_eq!(sub.open(&p, &k)["id"], ack["id"]);
    let (mut c, _) = n2.ws_ready("carol", &carol, true);
    c.send_json(&json!({"type": "private_message", "to": "bob", "content": "from node two"}));
    let ack = c.expect_after("ack", &["user_status"]);
    let p = svc.expect(SOON, "the private message's push");
    assert_eq!(sub.open(&p, &k)["id"], ack["id"]);
    svc.expect_none(
        Duration::from_secs(2),
        "one push per event, not one per node",
    );
    let (_b, _) = n2.ws_ready("bob", &bob, true);
    wait_until("n1 to show bob online", || {
        n1.get("/api/users", Some(&alice)).json()["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["username"] == "bob" && u["online"] == true)
    });
    a.join("ops");
    a.say("ops", "@bob now you are here", "c2");
    svc.expect_none(QUIET, "bob is connected to n2");
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
