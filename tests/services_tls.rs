//! TLS to the services, against real ones started with TLS by the test
//! harness with a CA made at test time: the Redis link over `rediss://`
//! (with `--redis-ca` roots, and refused without them), and the server on
//! a PostgreSQL that refuses plain connections (`sslmode=verify-full` with
//! `--postgres-ca`; without the CA or without TLS, a start error that says
//! which).

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::services::{Postgres, Redis, free_port, unique_channel};
use common::tls::TestCa;
use common::*;
use hubbub::redis::{LinkEvent, RedisLink};

/// A link and the wake-ups it rings.
fn link(
    url: &str,
    channel: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> (RedisLink, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let _ = tx.lock().unwrap().send(());
    });
    (
        RedisLink::start(url, channel, tls, wake).expect("valid URL"),
        rx,
    )
}

fn next(link: &RedisLink, woken: &mpsc::Receiver<()>, within: Duration) -> Option<LinkEvent> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(ev) = link.try_recv() {
            return Some(ev);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let _ = woken.recv_timeout(left);
    }
}

/// Two links over `rediss://` (rustls, the test CA as `--redis-ca` would
/// give it) come up and carry a binary payload; a link that does not trust
/// the CA stays down without an event, and so does a plain `redis://` to
/// the TLS port.
#[test]
fn redis_link_over_tls() {
    let ca = TestCa::new("redis");
    let dir = TempDir::new("redis-tls");
    let (cert, key) = ca.write_server_files(dir.path());
    let tls_port = free_port();
    let _redis = Redis::start_with(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://localhost:{tls_port}");
    let channel = unique_channel("tls");
    let config = hubbub::tls::client_config(Some(&dir.path().join("ca.pem"))).unwrap();
    let (a, wa) = link(&url, &channel, Some(config.clone()));
    let (b, wb) = link(&url, &channel, Some(config));
    assert_eq!(next(&a, &wa, Duration::from_secs(10)), Some(LinkEvent::Up));
    assert_eq!(next(&b, &wb, Duration::from_secs(10)), Some(LinkEvent::Up));
    let payload = b"over\r\ntls\x00\xff".to_vec();
    assert!(a.publish(payload.clone()));
    assert_eq!(
        next(&b, &wb, Duration::from_secs(5)),
        Some(LinkEvent::Message(payload))
    );

    let untrusted = TestCa::new("other");
    let (c, wc) = link(&url, &channel, Some(untrusted.client_config()));
    let (d, wd) = link(&format!("redis://localhost:{tls_port}"), &channel, None);
    thread::sleep(Duration::from_millis(500));
    assert!(
        next(&c, &wc, Duration::ZERO).is_none() && !c.is_up(),
        "an untrusted certificate"
    );
    assert!(
        next(&d, &wd, Duration::ZERO).is_none() && !d.is_up(),
        "plain RESP to a TLS port"
    );
}

/// The server stores in a PostgreSQL that accepts TLS only, with
/// `sslmode=verify-full` and `--postgres-ca`; without the CA the start fails
/// with the certificate named as the cause, and without TLS with the
/// server's refusal, never with a bare "error connecting to server".
#[test]
fn postgres_over_tls() {
    let ca = TestCa::new("pg");
    let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]);
    let pg = Postgres::start_tls_only(&cert, &key);
    let dir = TempDir::new("pg-tls");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let url = format!("postgres://hubbub@localhost:{}/hubbub", pg.port());

    let s = Server::builder()
        .arg("--postgres")
        .arg(format!("{url}?sslmode=verify-full"))
        .arg("--postgres-ca")
        .arg(ca_file.to_str().unwrap())
        .start();
    let (mut alice, token) = s.user("alice");
    alice.join("general");
    alice.say("general", "stored over tls", "t1");
    let stored = s.all_messages(&token, "general");
    assert_eq!(stored.last().unwrap()["content"], "stored over tls");
    drop(s);

    let fail = |args: &[String]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubbub"))
            .args(["--addr", "127.0.0.1:0", "--postgres-wait", "0"])
            .args(args)
            .env_remove("HUBBUB_POSTGRES")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = fail(&["--postgres".into(), format!("{url}?sslmode=require")]);
    assert!(
        err.contains("certificate") || err.contains("UnknownIssuer"),
        "without the CA: {err}"
    );
    let err = fail(&["--postgres".into(), url.clone()]);
    assert!(
        err.contains("no encryption") || err.contains("pg_hba.conf"),
        "without TLS: {err}"
    );
    let err = fail(&[
        "--postgres".into(),
        format!("{url}?sslmode=require"),
        "--postgres-ca".into(),
        dir.path().join("missing.pem").to_str().unwrap().into(),
    ]);
    assert!(err.contains("missing.pem"), "{err}");
}
