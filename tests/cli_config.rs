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
