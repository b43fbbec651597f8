//! The service harness itself (`tests/common/services.rs`): each helper
//! really starts its service, the service answers, and stop/restart do what
//! the cluster tests will rely on.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::services::{Nginx, Postgres, Redis, ping};

/// Redis answers PING, stops dead on `stop`, and `restart` brings it back on
/// the same port (so a link's URL stays valid across the outage).
#[test]
fn redis_answers_and_restarts_on_its_port() {
    let mut r = Redis::start();
    let port = r.port();
    assert!(r.ping(), "fresh redis answers PING");
    assert_eq!(r.url(), format!("redis://127.0.0.1:{port}"));
    r.stop();
    assert!(!ping(port), "stopped redis still answers");
    r.restart();
    assert_eq!(r.port(), port);
    assert!(ping(port), "restarted redis answers PING on the same port");
    let shared = Redis::shared();
    assert!(
        shared.url().starts_with("redis://127.0.0.1:"),
        "{}",
        shared.url()
    );
}

/// PostgreSQL accepts queries as `hubbub`, `create_database` gives a fresh
/// database, and stop/start_again keep the port and the data.
#[test]
fn postgres_answers_and_restarts_with_its_data() {
    let t = Instant::now();
    let mut pg = Postgres::start();
    let took = t.elapsed();
    eprintln!("Postgres::start took {took:?}");
    assert_eq!(
        pg.url(),
        format!("postgres://hubbub@127.0.0.1:{}/hubbub", pg.port())
    );
    assert_eq!(pg.psql("hubbub", "SELECT current_user"), "hubbub");
    let url = pg.create_database("fresh");
    assert!(url.ends_with("/fresh"), "{url}");
    pg.psql("fresh", "CREATE TABLE t (x int); INSERT INTO t VALUES (42)");
    pg.stop();
    assert!(
        pg.try_psql("fresh", "SELECT 1").is_err(),
        "stopped server answers"
    );
    pg.start_again();
    assert_eq!(pg.psql("fresh", "SELECT x FROM t"), "42");

    let (a, b) = (Postgres::shared(), Postgres::shared());
    assert_ne!(a.url(), b.url(), "each shared() call is a fresh database");
}

/// nginx proxies plain GETs round-robin across two upstreams, and passes a
/// WebSocket upgrade's headers through (what a cluster behind it needs).
#[test]
fn nginx_round_robins_and_forwards_upgrades() {
    let ups: Vec<(SocketAddr, thread::JoinHandle<Vec<String>>)> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            (addr, thread::spawn(move || upstream(l, name, 2)))
        })
        .collect();
    let addrs: Vec<SocketAddr> = ups.iter().map(|(a, _)| *a).collect();
    let nginx = Nginx::start(&addrs);
    let mut seen = HashSet::new();
    for i in 0..4 {
        let upgrade = if i == 0 {
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        } else {
            ""
        };
        let body = get(nginx.addr(), upgrade);
        assert!(
            body == "a" || body == "b",
            "proxied body {body:?}; error.log:\n{}",
            nginx.error_log()
        );
        seen.insert(body);
    }
    assert_eq!(seen.len(), 2, "both upstreams served (round-robin)");
    let heads: Vec<String> = ups
        .into_iter()
        .flat_map(|(_, h)| h.join().unwrap())
        .collect();
    assert_eq!(heads.len(), 4, "two requests per upstream");
    let upgraded = heads
        .iter()
        .filter(|h| {
            let h = h.to_ascii_lowercase();
            h.contains("upgrade: websocket") && h.contains("connection: upgrade")
        })
        .count();
    assert_eq!(upgraded, 1, "upgrade headers reach the upstream: {heads:?}");
    assert!(
        heads
            .iter()
            .all(|h| h.contains("X-Forwarded-For: 127.0.0.1")),
        "{heads:?}"
    );
}

/// Answers `n` requests with `name` as the body; returns their heads.
fn upstream(l: TcpListener, name: &str, n: usize) -> Vec<String> {
    let mut heads = Vec::new();
    for _ in 0..n {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let head = read_head(&mut s);
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
            name.len()
        );
        s.write_all(resp.as_bytes()).unwrap();
        heads.push(head);
    }
    heads
}

fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            other => panic!("reading a request head: {other:?} after {buf:?}"),
        }
    }
    String::from_utf8(buf).unwrap()
}

/// One GET through the proxy; returns the body.
fn get(addr: SocketAddr, extra: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: test\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}
