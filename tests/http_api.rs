//! REST API rows of PROTOCOL.md: signup, login, me, users, rooms, messages,
//! healthz, metrics, and their failure codes.

mod common;

use common::*;
use serde_json::{Value, json};

fn signup_body(u: &str, e: &str, p: &str) -> Value {
    json!({"username": u, "email": e, "password": p})
}

/// `POST /api/signup` answers 201 `{"user"}`: the contract's user object and nothing more
/// (no hash, no salt); the first account of a server is its admin.
#[test]
fn signup_returns_201_and_the_user() {
    let s = Server::start();
    let r = s.post_json(
        "/api/signup",
        &signup_body("Alice", "alice@example.com", "password123"),
        None,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("application/json")
    );
    let v = r.json();
    assert_keys(&v, &["user"]);
    assert_keys(
        &v["user"],
        &[
            "avatar",
            "display_name",
            "email",
            "id",
            "role",
            "status",
            "username",
        ],
    );
    assert!(v["user"]["avatar"].is_null(), "no avatar yet");
    assert_eq!(v["user"]["username"], "Alice", "case preserved");
    assert_eq!(v["user"]["email"], "alice@example.com");
    assert_eq!(
        v["user"]["display_name"], "Alice",
        "the username until one is set"
    );
    assert_eq!(v["user"]["role"], "admin", "the first account administers");
    assert!(v["user"]["avatar"].is_null());
    assert!(!v["user"]["id"].is_null());
    let bob = s.signup("bob");
    assert_ne!(bob["id"], v["user"]["id"], "user ids are distinct");
}

/// Signup validation: username 3-32 of `[A-Za-z0-9_.-]`, email (optional) with exactly
/// one `@`, password 8-128 characters; every violation (and a malformed body) is 400
/// `invalid_input`.
#[test]
fn signup_rejects_each_invalid_field_with_400() {
    let s = Server::start();
    let bad = [
        signup_body("ab", "a@x.io", "password123"),
        signup_body(&"a".repeat(33), "a@x.io", "password123"),
        signup_body("has space", "a@x.io", "password123"),
        signup_body("bang!", "a@x.io", "password123"),
        signup_body("ümlaut", "a@x.io", "password123"),
        signup_body("", "a@x.io", "password123"),
        signup_body("valid_1", "no-at-sign", "password123"),
        signup_body("valid_2", "two@@x.io", "password123"),
        signup_body("valid_3", "a@b@x.io", "password123"),
        signup_body("valid_4", "a@x.io", "short7!"),
        signup_body("valid_5", "a@x.io", &"p".repeat(129)),
        json!({"email": "a@x.io", "password": "password123"}),
        json!({"username": "valid_7", "email": "a@x.io"}),
        json!({"username": "valid_8", "email": 7, "password": "password123"}),
        signup_body("deleted-user-9", "a@x.io", "password123"),
        json!({"username": 42, "email": "a@x.io", "password": "password123"}),
    ];
    for b in &bad {
        let r = s.post_json("/api/signup", b, None);
        assert_eq!(r.status, 400, "signup {b} -> {} {}", r.status, r.text());
        r.assert_error(400, "invalid_input");
    }
    let r = http(
        s.addr,
        "POST",
        "/api/signup",
        &[("Content-Type", "application/json")],
        Some(b"{not json"),
    );
    r.assert_error(400, "invalid_input");
    // Nothing of the above was created.
    let tok = s.token("checker");
    let users = s.get("/api/users", Some(&tok)).json();
    assert_eq!(users["users"].as_array().unwrap().len(), 1, "{users}");
}

/// Signup and login bodies must be JSON objects: a JSON array holding the same values in
/// field order is 400 `invalid_input`, not a signup or a login.
#[test]
fn signup_and_login_reject_array_bodies() {
    let s = Server::start();
    s.post_json(
        "/api/signup",
        &json!(["carol", "carol@x.io", "password123"]),
        None,
    )
    .assert_error(400, "invalid_input");
    s.signup("alice");
    s.post_json("/api/login", &json!(["alice", PASSWORD]), None)
        .assert_error(400, "invalid_input");
}

/// Signup boundaries are inclusive: 3 and 32 character usernames with `_ . -`, 8 and 128
/// character passwords (characters, not bytes: 128 two-byte characters are fine).
#[test]
fn signup_accepts_boundary_values() {
    let s = Server::start();
    let ok = [
        signup_body("a.b", "a1@x.io", "12345678"),
        signup_body(&"Z".repeat(32), "a2@x.io", &"p".repeat(128)),
        signup_body("x_y-z.9", "a3@x.io", &"é".repeat(8)),
        signup_body("wide", "a4@x.io", &"é".repeat(128)),
    ];
    for b in &ok {
        let r = s.post_json("/api/signup", b, None);
        assert_eq!(r.status, 201, "signup {b} -> {}", r.text());
    }
    assert_eq!(
        s.login("wide", &"é".repeat(128))["user"]["username"],
        "wide"
    );
}

/// Usernames are unique case-insensitively and emails are unique: 409 `taken`.
#[test]
fn signup_conflicts_are_409_taken() {
    let s = Server::start();
    s.signup("alice");
    for b in [
        signup_body("alice", "other@example.com", "password123"),
        signup_body("ALICE", "other2@example.com", "password123"),
        signup_body("alice2", "alice@example.com", "password123"),
    ] {
        s.post_json("/api/signup", &b, None)
            .assert_error(409, "taken");
    }
}

/// Concurrent signups of one username: exactly one 201, the others 409 `taken`.
#[test]
fn concurrent_signups_of_one_name() {
    let s = Server::start();
    let addr = s.addr;
    let handles: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let body = signup_body(
                    if i % 2 == 0 { "racer" } else { "RACER" },
                    &format!("r{i}@x.io"),
                    "password123",
                );
                http(
                    addr,
                    "POST",
                    "/api/signup",
                    &[("Content-Type", "application/json")],
                    Some(body.to_string().as_bytes()),
                )
            })
        })
        .collect();
    let rs: Vec<Resp> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        rs.iter().filter(|r| r.status == 201).count(),
        1,
        "{:?}",
        rs.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in rs.iter().filter(|r| r.status != 201) {
        r.assert_error(409, "taken");
    }
}

/// `POST /api/login` answers 200 `{"token","expires_at","user"}`; the token is an HS256 JWT
/// with `sub` = user id as a string, `name`, `iat` and `exp` 24 h later.
#[test]
fn login_returns_token_and_user() {
    let s = Server::start();
    let user = s.signup("alice");
    let v = s.login("alice", PASSWORD);
    assert!(v["token"].is_string() && !v["expires_at"].is_null(), "{v}");
    assert_eq!(v["user"], user, "login's user equals signup's user");
    let (h, c) = jwt_parts(v["token"].as_str().unwrap());
    assert_eq!(h["alg"], "HS256", "{h}");
    let id = match &user["id"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    assert_eq!(c["sub"], id, "sub is the user id as a string: {c}");
    assert_eq!(c["name"], "alice");
    let iat = c["iat"].as_i64().expect("iat");
    let exp = c["exp"].as_i64().expect("exp");
    assert_eq!(exp - iat, 24 * 3600, "24 h tokens");
    assert!((iat - unix_now()).abs() < 60, "iat is now");
    let expires = match &v["expires_at"] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => rfc3339_to_unix(s),
        _ => None,
    };
    assert_eq!(
        expires,
        Some(exp),
        "expires_at names the token's exp: {}",
        v["expires_at"]
    );
}

/// Login with a missing or malformed field is 400 `invalid_input`.
#[test]
fn login_malformed_is_400() {
    let s = Server::start();
    s.signup("alice");
    for b in [
        json!({"username": "alice"}),
        json!({"password": PASSWORD}),
        json!({"username": 1, "password": PASSWORD}),
        json!("x"),
    ] {
        s.post_json("/api/login", &b, None)
            .assert_error(400, "invalid_input");
    }
    let r = http(
        s.addr,
        "POST",
        "/api/login",
        &[("Content-Type", "application/json")],
        Some(b"username=alice"),
    );
    r.assert_error(400, "invalid_input");
}

/// Unknown user and wrong password are both 401 `invalid_credentials` with byte-identical bodies.
#[test]
fn login_failures_are_indistinguishable() {
    let s = Server::start();
    s.signup("alice");
    let wrong = s.post_json(
        "/api/login",
        &json!({"username": "alice", "password": "wrong-password"}),
        None,
    );
    let unknown = s.post_json(
        "/api/login",
        &json!({"username": "nobody", "password": "wrong-password"}),
        None,
    );
    wrong.assert_error(401, "invalid_credentials");
    unknown.assert_error(401, "invalid_credentials");
    assert_eq!(
        wrong.body, unknown.body,
        "same answer for unknown user and wrong password"
    );
    assert_eq!(wrong.header("content-type"), unknown.header("content-type"));
}

/// `GET /api/me` answers 200 `{"user":{...}}` with a token, 401 `unauthorized` without or with a bad one.
#[test]
fn me_requires_a_valid_bearer_token() {
    let s = Server::start();
    let user = s.signup("alice");
    let tok = s.login_token("alice");
    let r = s.get("/api/me", Some(&tok));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"user": user}));
    s.get("/api/me", None).assert_error(401, "unauthorized");
    s.get("/api/me", Some("not.a.token"))
        .assert_error(401, "unauthorized");
    s.get("/api/me", Some("")).assert_error(401, "unauthorized");
    let basic = http(
        s.addr,
        "GET",
        "/api/me",
        &[("Authorization", &format!("Basic {tok}"))],
        None,
    );
    basic.assert_error(401, "unauthorized");
    // `?token=` is for WebSocket upgrades, not for REST.
    s.get(&format!("/api/me?token={tok}"), None)
        .assert_error(401, "unauthorized");
}

/// `GET /api/users` lists every user with `online` and `last_seen` (null before the first
/// connection, RFC 3339 after; online while a connection is open). 401 without a token.
#[test]
fn users_lists_presence_and_last_seen() {
    let s = Server::start();
    s.get("/api/users", None).assert_error(401, "unauthorized");
    let tok = s.token("alice");
    s.signup("bob");
    let find = |v: &Value, name: &str| -> Value {
        v["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing in {v}"))
    };
    let v = s.get("/api/users", Some(&tok)).json();
    assert_eq!(v["users"].as_array().unwrap().len(), 2, "{v}");
    let a = find(&v, "alice");
    assert_keys(
        &a,
        &[
            "avatar",
            "display_name",
            "id",
            "last_seen",
            "online",
            "role",
            "status",
            "username",
        ],
    );
    assert_eq!(a["online"], false);
    assert!(a["last_seen"].is_null(), "never connected: {a}");

    let (ws, _) = s.ws_ready("alice", &tok, true);
    let a = find(&s.get("/api/users", Some(&tok)).json(), "alice");
    assert_eq!(a["online"], true, "{a}");
    assert!(a["last_seen"].as_str().is_some_and(is_rfc3339), "{a}");
    let seen_at_open = a["last_seen"].as_str().unwrap().to_string();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(
        find(&s.get("/api/users", Some(&tok)).json(), "bob")["online"],
        false
    );

    ws.close();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let a = find(&s.get("/api/users", Some(&tok)).json(), "alice");
        if a["online"] == false {
            let seen = a["last_seen"].as_str().expect("last_seen");
            assert!(is_rfc3339(seen), "{a}");
            assert!(
                seen > seen_at_open.as_str(),
                "last_seen moves when the last connection closes: {seen} after {seen_at_open}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "alice still online after close: {a}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `GET /api/rooms`: public rooms with messages or members online (with `online` = distinct
/// users joined), plus private rooms the caller belongs to (with `owner` and `members`). 401 without a token.
#[test]
fn rooms_lists_active_public_and_own_private_rooms() {
    let s = Server::start();
    s.get("/api/rooms", None).assert_error(401, "unauthorized");
    let (mut a, ta) = s.user("alice");
    let tb = s.token("bob");
    let tc = s.token("carol");
    assert_eq!(s.get("/api/rooms", Some(&ta)).json(), json!({"rooms": []}));

    a.join("general");
    let (mut a2, _) = s.ws_ready("alice", &ta, false);
    a2.join("general");
    let rooms = s.get("/api/rooms", Some(&tb)).json();
    assert_eq!(
        rooms,
        json!({"rooms": [{"name": "general", "private": false, "online": 1}]}),
        "distinct users"
    );

    a.say("general", "hello", "m1");
    assert_eq!(a2.expect("message")["content"], "hello");
    a.send_json(&json!({"type": "leave", "room": "general"}));
    a2.send_json(&json!({"type": "leave", "room": "general"}));
    a2.sync();
    a.join("quiet");
    a.send_json(&json!({"type": "leave", "room": "quiet"}));
    a.create_room("secret", &["bob"]);
    // Ordering: a round trip on the same connection after the leaves.
    a.send_json(&json!({"type": "history", "room": "general"}));
    a.expect("history");

    let rooms = s.get("/api/rooms", Some(&tc)).json();
    assert_eq!(
        rooms,
        json!({"rooms": [{"name": "general", "private": false, "online": 0}]}),
        "carol sees no private room; `quiet` had no messages"
    );
    for tok in [&ta, &tb] {
        let rooms = s.get("/api/rooms", Some(tok)).json();
        let list = rooms["rooms"].as_array().unwrap();
        assert_eq!(list.len(), 2, "{rooms}");
        let secret = list
            .iter()
            .find(|r| r["name"] == "secret")
            .unwrap_or_else(|| panic!("{rooms}"));
        assert_eq!(secret["private"], true);
        assert_eq!(secret["owner"], "alice");
        assert_eq!(
            secret["online"], 1,
            "the creator's connection is joined: {secret}"
        );
        assert!(
            str_set(&secret["members"]).contains(&"bob".to_string()),
            "{secret}"
        );
    }
}

fn fill_room(s: &Server, ws: &mut Ws, room: &str, n: usize) -> Vec<i64> {
    ws.join(room);
    let contents: Vec<String> = (0..n).map(|i| format!("msg {i}")).collect();
    let acks = ws.say_many(room, &contents, room);
    let _ = s;
    acks.iter()
        .map(|a| a["id"].as_i64().expect("integer id"))
        .collect()
}

/// `GET /api/messages?room=R`: message objects `{"id","room","user","content","timestamp"}`
/// oldest first; default limit 50; `limit` N newest; `before` pages back; limit above 200 is clamped to 200.
#[test]
fn messages_room_paging_with_before_and_limit() {
    let s = Server::builder().rate_limit(0).start();
    let (mut a, ta) = s.user("alice");
    let ids = fill_room(&s, &mut a, "general", 230);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase");

    let m = s.messages(&ta, "room=general");
    assert_eq!(m.len(), 50, "default limit");
    let got: Vec<i64> = m.iter().map(|x| x["id"].as_i64().unwrap()).collect();
    assert_eq!(got, ids[180..], "the newest 50, oldest first");
    let last = &m[49];
    assert_keys(last, &["content", "id", "room", "timestamp", "user"]);
    assert_eq!(last["room"], "general");
    assert_eq!(last["user"], "alice");
    assert_eq!(last["content"], "msg 229");
    assert!(
        is_rfc3339_millis(last["timestamp"].as_str().unwrap()),
        "{last}"
    );

    let m = s.messages(&ta, "room=general&limit=3");
    assert_eq!(
        m.iter()
            .map(|x| x["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        ids[227..]
    );
    let m = s.messages(&ta, &format!("room=general&before={}&limit=3", ids[10]));
    assert_eq!(
        m.iter()
            .map(|x| x["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        ids[7..10]
    );
    let m = s.messages(&ta, &format!("room=general&before={}", ids[0]));
    assert!(m.is_empty());
    let m = s.messages(&ta, "room=general&limit=1000");
    assert_eq!(m.len(), 200, "limit clamped to 200");
    assert_eq!(m[0]["id"].as_i64().unwrap(), ids[30]);
    assert_eq!(
        s.messages(&ta, "room=nowhere"),
        Vec::<Value>::new(),
        "an unused public room is empty"
    );
}

/// A full page of long messages (200 x 4000 two-byte characters, about 1.6 MB) is served whole.
#[test]
fn messages_large_page_is_served() {
    let s = Server::builder().rate_limit(0).start();
    let (mut a, ta) = s.user("alice");
    a.join("wide");
    let wide: Vec<String> = (0..200).map(|_| "é".repeat(4000)).collect();
    a.say_many("wide", &wide, "w");
    let m = s.messages(&ta, "room=wide&limit=200");
    assert_eq!(m.len(), 200);
    assert!(
        m.iter()
            .all(|x| x["content"].as_str().map(|c| c.chars().count()) == Some(4000))
    );
}

/// `?room=R&page=P`: `page=1` is the newest 50 (oldest first), `page=2` the 50 before.
#[test]
fn messages_room_pages() {
    let s = Server::builder().rate_limit(0).start();
    let (mut a, ta) = s.user("alice");
    let ids = fill_room(&s, &mut a, "general", 120);
    let ids_of = |m: Vec<Value>| {
        m.iter()
            .map(|x| x["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids_of(s.messages(&ta, "room=general&page=1")), ids[70..]);
    assert_eq!(ids_of(s.messages(&ta, "room=general&page=2")), ids[20..70]);
    assert_eq!(ids_of(s.messages(&ta, "room=general&page=3")), ids[..20]);
    assert!(s.messages(&ta, "room=general&page=4").is_empty());
}

/// `?room=R&page=P` skips at most `MAX_HISTORY_OFFSET` messages: the deepest page within it is
/// served (empty here), one page deeper is 400 `invalid_input` with a sentence naming the last
/// page and `before`, and so is a page number far past `u64` arithmetic (no wrap, no saturate).
#[test]
fn messages_page_depth_is_capped() {
    use hubbub::config::MAX_HISTORY_OFFSET;
    let s = Server::start();
    let (mut a, ta) = s.user("alice");
    fill_room(&s, &mut a, "general", 3);
    let last = MAX_HISTORY_OFFSET / 50 + 1;
    assert!(
        s.messages(&ta, &format!("room=general&page={last}"))
            .is_empty()
    );
    assert_eq!(s.messages(&ta, "room=general&limit=1&page=3").len(), 1);
    for q in [
        format!("page={}", last + 1),
        format!("limit=200&page={}", MAX_HISTORY_OFFSET / 200 + 2),
        format!("page={}", u64::MAX),
    ] {
        let r = s.get(&format!("/api/messages?room=general&{q}"), Some(&ta));
        r.assert_error(400, "invalid_input");
        let text = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(
            text.contains("too deep") && text.contains("before"),
            "{q}: {}",
            r.text()
        );
    }
}

/// `GET /api/messages` failures: 401 without a token; 400 `invalid_input` for no room/with,
/// a bad room name, limit 0/negative/non-numeric, a non-numeric `before`; 403 `forbidden` for a
/// private room the caller is not in; 404 `no_such_user` for `with` an unknown user.
#[test]
fn messages_failure_codes() {
    let s = Server::start();
    let (mut a, ta) = s.user("alice");
    let tb = s.token("bob");
    s.get("/api/messages?room=general", None)
        .assert_error(401, "unauthorized");
    for q in [
        "",
        "?",
        "?room=",
        "?room=Bad%20Room",
        "?room=UPPER",
        &format!("?room={}", "a".repeat(65)),
        "?room=general&limit=0",
        "?room=general&limit=-5",
        "?room=general&limit=ten",
        "?room=general&before=abc",
        "?room=general&page=0",
        "?room=general&page=x",
    ] {
        let r = s.get(&format!("/api/messages{q}"), Some(&ta));
        assert_eq!(
            r.status,
            400,
            "GET /api/messages{q}: {} {}",
            r.status,
            r.text()
        );
        r.assert_error(400, "invalid_input");
    }
    a.create_room("secret", &[]);
    a.say("secret", "hush", "c1");
    assert_eq!(s.messages(&ta, "room=secret").len(), 1);
    s.get("/api/messages?room=secret", Some(&tb))
        .assert_error(403, "forbidden");
    s.get("/api/messages?with=ghost", Some(&ta))
        .assert_error(404, "no_such_user");
}

/// `GET /api/messages?with=U`: the caller's conversation with U, both directions, oldest first,
/// with `from`/`to`; other people's conversations are not included; `limit` and `before` apply.
#[test]
fn messages_with_user_is_the_private_conversation() {
    let s = Server::start();
    let (mut a, ta) = s.user("alice");
    let (mut b, tb) = s.user("bob");
    let tc = s.token("carol");
    a.expect_after("user_status", &[]);
    let mut ids = vec![];
    for (from, to, text) in [
        ("a", "bob", "hi bob"),
        ("b", "alice", "hi alice"),
        ("a", "bob", "how are you"),
    ] {
        let c = if from == "a" { &mut a } else { &mut b };
        c.send_json(
            &json!({"type": "private_message", "to": to, "content": text, "client_id": text}),
        );
        let ack = c.expect_after("ack", &["private_message", "delivered"]);
        ids.push(ack["id"].as_i64().unwrap());
    }
    let m = s.messages(&ta, "with=bob");
    assert_eq!(m.len(), 3, "{m:?}");
    assert_eq!(
        m.iter()
            .map(|x| x["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        ids
    );
    assert_eq!(m[0]["from"], "alice");
    assert_eq!(m[0]["to"], "bob");
    assert_eq!(m[1]["from"], "bob");
    assert_eq!(m[1]["to"], "alice");
    assert_eq!(m[1]["content"], "hi alice");
    assert!(
        m[0].get("room").is_none(),
        "private messages have no room: {}",
        m[0]
    );
    assert!(is_rfc3339_millis(m[2]["timestamp"].as_str().unwrap()));
    assert_eq!(
        s.messages(&tb, "with=alice"),
        m,
        "the same conversation from bob's side"
    );
    assert!(
        s.messages(&tc, "with=alice").is_empty(),
        "carol sees nothing of it"
    );
    let m = s.messages(&ta, "with=bob&limit=1");
    assert_eq!(m[0]["id"].as_i64().unwrap(), ids[2]);
    let m = s.messages(&ta, &format!("with=bob&before={}", ids[2]));
    assert_eq!(
        m.iter()
            .map(|x| x["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        ids[..2]
    );
    s.get("/api/messages?with=bob", None)
        .assert_error(401, "unauthorized");
}

/// `GET /healthz` is 200 `ok` without a token.
#[test]
fn healthz_is_ok() {
    let s = Server::start();
    let r = s.get("/healthz", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok");
}

/// `GET /readyz` is 200 `ready` on a healthy node (503 when storage or the
/// bus is unreachable: tests/cluster.rs), and `/metrics` names the version.
#[test]
fn readyz_and_build_info() {
    let s = Server::start();
    let r = s.get("/readyz", None);
    assert_eq!((r.status, r.text()), (200, "ready".to_string()));
    let m = s.get("/metrics", None).text();
    assert!(
        m.contains(&format!(
            "\nhubbub_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{m}"
    );
}

/// `GET /metrics` is 200 Prometheus text (`text/plain; version=0.0.4`): `# HELP`/`# TYPE`
/// comments and `name{labels} value` samples, all parseable.
#[test]
fn metrics_is_prometheus_text() {
    let s = Server::start();
    let _ = s.get("/healthz", None);
    let r = s.get("/metrics", None);
    assert_eq!(r.status, 200);
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("text/plain; version=0.0.4"),
        "content-type {ct:?}"
    );
    let body = r.text();
    let mut samples = 0;
    let mut types = 0;
    for line in body.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let t = rest.split_whitespace().nth(1).unwrap_or("");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                "bad TYPE line {line:?}"
            );
            types += 1;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name_part, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let name_part = name_part.trim();
        let name = name_part.split('{').next().unwrap();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name_part.contains('{') {
            assert!(name_part.ends_with('}'), "bad labels in {line:?}");
        }
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value in {line:?}"
        );
        samples += 1;
    }
    assert!(samples > 0 && types > 0, "no metrics: {body}");
}

/// `--metrics-addr`: `/metrics` answers on its own listener and is a 404 on
/// the main one (which the public reaches); the metrics listener answers
/// nothing else, and the main one still serves everything else.
#[test]
fn metrics_addr_moves_metrics_off_the_main_listener() {
    let port = services::free_port();
    let s = Server::builder()
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{port}"))
        .start();
    let side: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    s.get("/metrics", None).assert_error(404, "not_found");
    assert_eq!(s.get("/healthz", None).status, 200);
    let r = http_raw(side, b"GET /metrics HTTP/1.1\r\nHost: ops\r\n\r\n").unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("hubbub_connections_open "),
        "{}",
        r.text()
    );
    for path in ["/healthz", "/api/me", "/", "/ws"] {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: ops\r\n\r\n");
        let r = http_raw(side, raw.as_bytes()).unwrap();
        assert_eq!(r.status, 404, "{path} on the metrics listener");
    }
}

/// An unknown path under `/api` is 404 `not_found`.
#[test]
fn unknown_api_path_is_404() {
    let s = Server::start();
    s.get("/api/nope", None).assert_error(404, "not_found");
}
