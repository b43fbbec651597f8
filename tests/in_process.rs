//! A server run in-process, as a library (mini-redis style): bound to
//! `127.0.0.1:0` by the test, stopped through its `Shutdown` handle, no
//! subprocess and no log line to wait for. The other suites run the binary.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{TempDir, WAIT, http, ws_connect};
use hubbub::config::Config;
use hubbub::store::Backend;
use hubbub::store::sqlite::Sqlite;
use hubbub::{LocalOnly, Server, Shutdown};
use serde_json::{Value, json};

/// A server on its own thread.
struct InProcess {
    addr: SocketAddr,
    shutdown: Shutdown,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl InProcess {
    fn start(backend: Sqlite) -> InProcess {
        let config = Config {
            pbkdf2_iterations: 1000,
            rate_limit: 0,
            jwt_secret: Some(common::JWT_SECRET.as_bytes().to_vec()),
            ..Config::default()
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // The server holds `Rc`s (shared frames): it is built on the thread
        // that runs it, which sends back its address and shutdown handle.
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = Some(std::thread::spawn(move || {
            let server = Server::start(listener, config, backend, Box::new(LocalOnly))?;
            let _ = tx.send((server.local_addr(), server.shutdown_handle()));
            server.run()
        }));
        let (addr, shutdown) = rx.recv_timeout(WAIT).expect("server started");
        InProcess {
            addr,
            shutdown,
            thread,
        }
    }

    /// Shuts down and waits (bounded) for `run` to return.
    fn stop(&mut self) -> std::io::Result<()> {
        self.shutdown.trigger();
        let thread = self.thread.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !thread.is_finished() {
            assert!(Instant::now() < deadline, "server did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
        thread.join().expect("server thread panicked")
    }

    fn token(&self, name: &str) -> String {
        let body = json!({"username": name, "email": format!("{name}@example.com"), "password": common::PASSWORD});
        let body = body.to_string();
        let r = http(
            self.addr,
            "POST",
            "/api/signup",
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let body = json!({"username": name, "password": common::PASSWORD}).to_string();
        let r = http(
            self.addr,
            "POST",
            "/api/login",
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        );
        r.json()["token"].as_str().unwrap().to_string()
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop();
        }
    }
}

/// `GET /healthz` on an in-process server answers these exact bytes.
#[test]
fn healthz_exact_bytes() {
    let srv = InProcess::start(Sqlite::open_in_memory().unwrap());
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(
        String::from_utf8(got).unwrap(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    );
}

fn next_of(ws: &mut common::Ws, kind: &str) -> Value {
    loop {
        let m = ws.ws.read().expect("frame");
        if let tungstenite::Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == kind {
                return v;
            }
        }
    }
}

/// A message acked by an in-process server is in its database once the
/// shutdown handle has stopped it, and WebSockets get a 1001 close.
#[test]
fn shutdown_handle_drains_storage() {
    let dir = TempDir::new("inproc");
    let db = dir.path().join("hubbub.db");
    let mut srv = InProcess::start(Sqlite::open(&db).unwrap());
    let token = srv.token("alice");
    let mut ws = ws_connect(srv.addr, &format!("/ws/room/general?token={token}"), None)
        .unwrap_or_else(|_| panic!("upgrade"));
    next_of(&mut ws, "online_users");
    ws.ws
        .send(tungstenite::Message::text(
            json!({"type": "message", "room": "general", "content": "kept", "client_id": "c1"})
                .to_string(),
        ))
        .unwrap();
    let ack = next_of(&mut ws, "ack");
    assert_eq!(ack["client_id"], "c1");
    srv.stop().expect("run returns Ok");
    let close = loop {
        match ws.ws.read() {
            Ok(tungstenite::Message::Close(c)) => break c,
            Ok(_) => continue,
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    };
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1001));
    let mut reopened = Sqlite::open(&db).unwrap();
    let snapshot = reopened.load().unwrap();
    assert_eq!(snapshot.max_message_id, ack["id"].as_u64().unwrap());
    assert_eq!(snapshot.recent_client_ids.len(), 1);
}
