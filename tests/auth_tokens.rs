//! JWT handling: only HS256 tokens signed with the server's secret, unexpired, for an
//! existing user, are accepted (REST and WebSocket upgrade); the secret and the stored
//! password hashes survive restarts.

mod common;

use common::*;
use ring::hmac::{HMAC_SHA256, HMAC_SHA512};
use serde_json::{Value, json};

fn claims(sub: &str, name: &str, iat: i64, exp: i64) -> Value {
    json!({"sub": sub, "name": name, "iat": iat, "exp": exp})
}

fn hs256() -> Value {
    json!({"alg": "HS256", "typ": "JWT"})
}

fn user_id(s: &Server, name: &str) -> String {
    match &s.signup(name)["id"] {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

fn assert_rejected(s: &Server, token: &str, what: &str) {
    let r = s.get("/api/me", Some(token));
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    r.assert_error(401, "unauthorized");
    match ws_connect(s.addr, &format!("/ws?token={token}"), None) {
        Err(ConnectError::Http(401, _)) => {}
        Err(e) => panic!("{what}: ws upgrade should be HTTP 401, got {e:?}"),
        Ok(_) => panic!("{what}: ws upgrade accepted"),
    }
}

/// A token crafted with the configured secret is accepted (proves the crafting below is right).
#[test]
fn crafted_hs256_token_is_accepted() {
    let s = Server::start();
    let id = user_id(&s, "alice");
    let now = unix_now();
    let t = craft_jwt(
        &hs256(),
        &claims(&id, "alice", now, now + 3600),
        HMAC_SHA256,
        JWT_SECRET.as_bytes(),
    );
    let r = s.get("/api/me", Some(&t));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["user"]["username"], "alice");
}

/// A bad signature (other secret, or a tampered payload) is 401.
#[test]
fn bad_signature_is_401() {
    let s = Server::start();
    let id = user_id(&s, "alice");
    let now = unix_now();
    let c = claims(&id, "alice", now, now + 3600);
    assert_rejected(
        &s,
        &craft_jwt(&hs256(), &c, HMAC_SHA256, b"some-other-secret"),
        "wrong secret",
    );
    let good = craft_jwt(&hs256(), &c, HMAC_SHA256, JWT_SECRET.as_bytes());
    let sig = good.rsplit('.').next().unwrap();
    let bob = user_id(&s, "bob");
    let tampered = format!(
        "{}.{}.{sig}",
        b64url(hs256().to_string().as_bytes()),
        b64url(claims(&bob, "bob", now, now + 3600).to_string().as_bytes())
    );
    assert_rejected(&s, &tampered, "payload swapped under a valid signature");
    let mut flipped = good.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    assert_rejected(
        &s,
        &String::from_utf8(flipped).unwrap(),
        "one signature character changed",
    );
}

/// `alg: none` (unsigned) and any other algorithm (HS512 with the right secret) are 401.
#[test]
fn other_algorithms_are_401() {
    let s = Server::start();
    let id = user_id(&s, "alice");
    let now = unix_now();
    let c = claims(&id, "alice", now, now + 3600);
    for alg in ["none", "None", "NONE"] {
        let unsigned = format!(
            "{}.{}.",
            b64url(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes()),
            b64url(c.to_string().as_bytes())
        );
        assert_rejected(&s, &unsigned, &format!("alg {alg}"));
    }
    let hs512 = craft_jwt(
        &json!({"alg": "HS512", "typ": "JWT"}),
        &c,
        HMAC_SHA512,
        JWT_SECRET.as_bytes(),
    );
    assert_rejected(&s, &hs512, "alg HS512");
    // HS256 signature but the header claims HS512.
    let mislabelled = craft_jwt(
        &json!({"alg": "HS512", "typ": "JWT"}),
        &c,
        HMAC_SHA256,
        JWT_SECRET.as_bytes(),
    );
    assert_rejected(&s, &mislabelled, "HS256 signature labelled HS512");
}

/// An expired token (validly signed) is 401.
#[test]
fn expired_token_is_401() {
    let s = Server::start();
    let id = user_id(&s, "alice");
    let now = unix_now();
    let t = craft_jwt(
        &hs256(),
        &claims(&id, "alice", now - 90_000, now - 3600),
        HMAC_SHA256,
        JWT_SECRET.as_bytes(),
    );
    assert_rejected(&s, &t, "expired an hour ago");
    let t = craft_jwt(
        &hs256(),
        &json!({"sub": id, "name": "alice", "iat": now}),
        HMAC_SHA256,
        JWT_SECRET.as_bytes(),
    );
    assert_rejected(&s, &t, "no exp claim");
}

/// A validly signed token whose `sub` is not an existing user is 401.
#[test]
fn token_for_unknown_user_is_401() {
    let s = Server::start();
    let id = user_id(&s, "alice");
    let now = unix_now();
    for sub in ["999999", "0", "-1", "alice", ""] {
        assert_ne!(sub, id);
        let t = craft_jwt(
            &hs256(),
            &claims(sub, "ghost", now, now + 3600),
            HMAC_SHA256,
            JWT_SECRET.as_bytes(),
        );
        assert_rejected(&s, &t, &format!("sub {sub:?}"));
    }
}

/// Without `HUBBUB_JWT_SECRET` the server generates a secret once and keeps it in the
/// database: a token survives a restart on the same db but is rejected by a server on another db.
#[test]
fn generated_secret_survives_restart() {
    let mut s = Server::builder().no_jwt_secret().start();
    let tok = s.token("alice");
    assert_eq!(s.get("/api/me", Some(&tok)).status, 200);
    s.restart();
    let r = s.get("/api/me", Some(&tok));
    assert_eq!(r.status, 200, "token after restart: {}", r.text());
    let other = Server::builder().no_jwt_secret().start();
    other.signup("alice");
    other
        .get("/api/me", Some(&tok))
        .assert_error(401, "unauthorized");
}

/// Password hashes carry their own iteration count: a user created at 1000 iterations still
/// logs in after a restart with a different `--pbkdf2-iterations`; wrong passwords still fail.
#[test]
fn stored_iteration_count_is_used_after_restart() {
    let mut s = Server::start();
    s.signup("alice");
    let dir = s.dir.clone();
    assert!(s.sigterm().success());
    drop(s);
    let s = Server::builder().iterations(1500).start_in(dir);
    assert_eq!(s.login("alice", PASSWORD)["user"]["username"], "alice");
    s.post_json(
        "/api/login",
        &json!({"username": "alice", "password": "wrong-password"}),
        None,
    )
    .assert_error(401, "invalid_credentials");
}

/// The login token works for WebSocket upgrades as `?token=` and as an `Authorization: Bearer` header.
#[test]
fn login_token_opens_websockets_both_ways() {
    let s = Server::start();
    let tok = s.token("alice");
    let mut q = ws_connect(s.addr, &format!("/ws?token={tok}"), None).expect("?token=");
    q.ready("alice", true);
    let mut h = ws_connect(s.addr, "/ws", Some(&tok)).expect("Authorization header");
    h.ready("alice", false);
}

/// `--pbkdf2-iterations` below the floor is raised to 1000, not refused: the server starts and
/// signup/login work.
#[test]
fn iterations_below_floor_are_accepted() {
    let s = Server::builder().iterations(1).start();
    let tok = s.token("alice");
    assert_eq!(s.get("/api/me", Some(&tok)).status, 200);
}

/// A 201 signup is durable: after `kill -9` and a restart the user logs in and the old token works.
#[test]
fn signup_survives_kill_9() {
    let mut s = Server::start();
    let tok = s.token("alice");
    s.kill9();
    s.restart();
    assert_eq!(s.login("alice", PASSWORD)["user"]["username"], "alice");
    assert_eq!(s.get("/api/me", Some(&tok)).status, 200);
}
