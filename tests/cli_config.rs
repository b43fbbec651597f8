//! Configuration: the environment variables of PROTOCOL.md "Running", the default database
//! location, and the `listening on ADDR` line with the real port.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// `HUBBUB_ADDR`, `HUBBUB_DB`, `HUBBUB_PBKDF2_ITERATIONS` and `HUBBUB_RATE_LIMIT` configure the
/// server like the flags: it listens on the real port, creates the database file there, hashes
/// at 1000 iterations (a login is fast) and does not rate-limit.
#[test]
fn environment_variables_configure_the_server() {
    let s = Server::builder()
        .config_via_env()
        .env("HUBBUB_RATE_LIMIT", "0")
        .start();
    assert_ne!(s.addr.port(), 0, "the logged address carries the real port");
    assert!(s.db_path().exists(), "database not created at HUBBUB_DB");
    s.signup("alice");
    let t = Instant::now();
    s.login("alice", PASSWORD);
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "login took {:?}: iterations not from env",
        t.elapsed()
    );
    let (mut a, _) = s.user("bob");
    a.join("general");
    let contents: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    assert_eq!(
        a.say_many("general", &contents, "e").len(),
        100,
        "rate limit 0 from env"
    );
}

/// `HUBBUB_RATE_LIMIT=1` gives a burst of 2.
#[test]
fn rate_limit_from_environment() {
    let s = Server::builder().env("HUBBUB_RATE_LIMIT", "1").start();
    let (mut a, _) = s.user("alice");
    a.send_json(&json!({"type": "join", "room": "general"}));
    a.expect("online_users");
    a.send_json(&json!({"type": "typing", "room": "general"}));
    a.send_json(&json!({"type": "typing", "room": "general"}));
    assert_eq!(a.expect("error")["code"], "rate_limited");
}

/// Without `--db` the database is `./hubbub.db` in the working directory, created on start.
#[test]
fn default_database_is_in_the_working_directory() {
    let s = Server::builder().omit_db().start();
    s.signup("alice");
    assert!(s.dir.path().join("hubbub.db").exists(), "no ./hubbub.db");
}

/// Runs the binary with `args` and `vars` (no other `HUBBUB_` variable) on a
/// fresh database, expecting it to exit by itself within 10 s; returns the
/// exit code and stderr.
fn run_to_exit(args: &[&str], vars: &[(&str, &str)]) -> (Option<i32>, String) {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let dir = TempDir::new("cli");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubbub"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("HUBBUB_")) {
        cmd.env_remove(k);
    }
    let db = dir.path().join("hubbub.db");
    cmd.args(["--addr", "127.0.0.1:0", "--db"])
        .arg(&db)
        .args(args)
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn hubbub");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("hubbub {args:?} {vars:?} still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
}

/// A `HUBBUB_JWT_SECRET` shorter than 32 bytes stops the server at start
/// (non-zero exit, a message naming the variable and the minimum); 32 bytes
/// is enough.
#[test]
fn short_jwt_secret_is_refused() {
    let (code, err) = run_to_exit(&[], &[("HUBBUB_JWT_SECRET", &"k".repeat(31))]);
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains("HUBBUB_JWT_SECRET is 31 bytes; at least 32 are needed"),
        "{err}"
    );
    let s = Server::builder()
        .env("HUBBUB_JWT_SECRET", &"k".repeat(32))
        .start();
    s.signup("alice");
}

/// Bad values of the abuse options are usage errors (exit 2) naming the flag.
#[test]
fn bad_abuse_options_are_usage_errors() {
    let (code, err) = run_to_exit(&["--trust-proxy", "127.0.0.1,proxy.local"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--trust-proxy: not an IP address: proxy.local"),
        "{err}"
    );
    let (code, err) = run_to_exit(&[], &[("HUBBUB_ALLOWED_ORIGIN", "chat.example.com")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("HUBBUB_ALLOWED_ORIGIN: not an origin"),
        "{err}"
    );
    let (code, err) = run_to_exit(&["--max-conns-per-user", "many"], &[]);
    assert_eq!(code, Some(2), "{err}");
}

/// `HUBBUB_MAX_CONNS_PER_USER` and `HUBBUB_ALLOWED_ORIGIN` (a comma list)
/// configure the server like their flags.
#[test]
fn abuse_limits_from_environment() {
    let s = Server::builder()
        .env("HUBBUB_MAX_CONNS_PER_USER", "1")
        .env(
            "HUBBUB_ALLOWED_ORIGIN",
            "https://a.example, https://B.example/",
        )
        .start();
    let token = s.token("alice");
    let _first = s.ws("/ws", &token);
    match ws_connect(s.addr, &format!("/ws?token={token}"), None) {
        Err(ConnectError::Http(429, body)) => assert!(body.contains("rate_limited"), "{body}"),
        Err(e) => panic!("expected 429, got {e:?}"),
        Ok(_) => panic!("a second WebSocket over HUBBUB_MAX_CONNS_PER_USER=1"),
    }
    // One user per origin: each may hold one WebSocket.
    for (user, origin, status) in [
        ("bob", "https://b.example", 101),
        ("carol", "https://a.example", 101),
        ("dave", "https://c.example", 403),
    ] {
        let token = s.token(user);
        let raw = format!(
            "GET /ws?token={token} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: {origin}\r\n\r\n",
            s.addr
        );
        let mut c = HttpConn::connect(s.addr);
        c.send_raw(raw.as_bytes()).unwrap();
        assert_eq!(c.read_response().unwrap().status, status, "{origin}");
    }
}
