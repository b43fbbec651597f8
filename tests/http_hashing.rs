//! PBKDF2 at the default 600000 iterations never runs on the event loop, and login
//! failures take a similar time whether or not the user exists.

mod common;

use common::*;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Both tests saturate the CPU with hashing; run them one at a time so neither measures the other.
static CPU: Mutex<()> = Mutex::new(());

/// With 8 logins at the default 600000 iterations in flight, `/healthz` round trips on other
/// connections (a fresh one each time and a keep-alive one) all stay under 50 ms.
#[test]
fn healthz_stays_fast_while_8_logins_hash() {
    let _cpu = CPU.lock().unwrap_or_else(|e| e.into_inner());
    let s = Server::builder().default_iterations().start();
    s.signup("alice");
    let addr = s.addr;
    let done = Arc::new(AtomicUsize::new(0));
    let mut keep = HttpConn::connect(addr);
    assert_eq!(keep.request("GET", "/healthz", &[], None).status, 200);

    let logins: Vec<_> = (0..8)
        .map(|_| {
            let done = done.clone();
            thread::spawn(move || {
                let body = json!({"username": "alice", "password": PASSWORD}).to_string();
                let mut c = HttpConn::connect(addr);
                c.stream()
                    .set_read_timeout(Some(Duration::from_secs(120)))
                    .unwrap();
                let r = c.request(
                    "POST",
                    "/api/login",
                    &[("Content-Type", "application/json")],
                    Some(body.as_bytes()),
                );
                done.fetch_add(1, Ordering::SeqCst);
                r.status
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(30)); // let the 8 requests land

    let mut worst = Duration::ZERO;
    let mut probes = 0;
    while done.load(Ordering::SeqCst) == 0 {
        let t = Instant::now();
        let r = http(addr, "GET", "/healthz", &[], None);
        let fresh = t.elapsed();
        assert_eq!(r.status, 200);
        let t = Instant::now();
        assert_eq!(keep.request("GET", "/healthz", &[], None).status, 200);
        let kept = t.elapsed();
        if done.load(Ordering::SeqCst) == 0 {
            worst = worst.max(fresh).max(kept);
            probes += 1;
        }
        thread::sleep(Duration::from_millis(5));
    }
    eprintln!("{probes} probes, slowest {worst:?}");
    let statuses: Vec<u16> = logins.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(statuses, vec![200; 8], "all 8 logins succeed");
    assert!(
        probes >= 5,
        "logins finished too fast to measure anything ({probes} probes)"
    );
    assert!(
        worst < Duration::from_millis(50),
        "slowest /healthz round trip {worst:?} over {probes} probes"
    );
}

/// Login for an unknown user takes a similar time to a wrong password (a dummy hash is
/// computed), so response timing does not reveal which usernames exist.
#[test]
fn unknown_user_login_takes_similar_time() {
    let _cpu = CPU.lock().unwrap_or_else(|e| e.into_inner());
    let s = Server::builder().default_iterations().start();
    s.signup("alice");
    let time = |user: &str| {
        let t = Instant::now();
        let r = s.post_json(
            "/api/login",
            &json!({"username": user, "password": "wrong-password"}),
            None,
        );
        r.assert_error(401, "invalid_credentials");
        t.elapsed()
    };
    let _ = time("alice");
    let wrong = (0..3).map(|_| time("alice")).min().unwrap();
    let unknown = (0..3).map(|_| time("nobody")).min().unwrap();
    assert!(
        unknown * 2 >= wrong,
        "unknown user answered in {unknown:?}, wrong password in {wrong:?}: the user's existence leaks"
    );
}
