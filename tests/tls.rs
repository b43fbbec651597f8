//! TLS in the reactor, end to end with a real client (rustls + tungstenite):
//! HTTPS and WSS on `--addr` with `--tls-cert`/`--tls-key`, HSTS, the
//! WebSocket framing cases of `ws_protocol.rs` over TLS (Autobahn's
//! testsuite needs Docker, which this machine does not run), SIGHUP
//! reloading the certificate without dropping an open connection, the plain
//! listener's redirects, and the start-up checks that name a bad file.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::tls::{self, TestCa, TlsStream, expect_json, https, wss};
use common::*;
use serde_json::json;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::{Message, WebSocket};

/// A server on TLS with certificates from `ca`, `--echo` on.
fn tls_server(ca: &TestCa) -> Server {
    let dir = std::sync::Arc::new(TempDir::new("tls"));
    let (cert, key) = ca.write_server_files(dir.path());
    Server::builder()
        .echo()
        .arg("--tls-cert")
        .arg(cert.to_str().unwrap())
        .arg("--tls-key")
        .arg(key.to_str().unwrap())
        .start_in(dir)
}

/// Signs `name` up and logs in over HTTPS; the token.
fn tls_token(s: &Server, ca: &TestCa, name: &str) -> String {
    let config = ca.client_config();
    let body =
        json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD});
    let r = https(
        s.addr,
        &config,
        "POST",
        "/api/signup",
        Some(&body.to_string()),
        None,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let body = json!({"username": name, "password": PASSWORD});
    let r = https(
        s.addr,
        &config,
        "POST",
        "/api/login",
        Some(&body.to_string()),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_string()
}

fn close_code(ws: &mut WebSocket<TlsStream>) -> Option<u16> {
    ws.get_mut().sock.set_read_timeout(Some(WAIT)).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(c)) => return c.map(|c| u16::from(c.code)),
            Ok(Message::Text(t)) => panic!("a frame instead of the close: {t}"),
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}

/// The API and chat work over HTTPS and WSS: signup and login answer with
/// HSTS, two users on `wss://…/ws/room/general` exchange a message, and the
/// sender's ack follows, all through rustls on the loop thread.
#[test]
fn https_and_wss_chat_end_to_end() {
    let ca = TestCa::new("e2e");
    let s = tls_server(&ca);
    let config = ca.client_config();
    let r = https(s.addr, &config, "GET", "/healthz", None, None);
    assert_eq!((r.status, r.text()), (200, "ok".to_string()));
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    let page = https(s.addr, &config, "GET", "/", None, None);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<html"), "the web client over https");
    let alice = tls_token(&s, &ca, "alice");
    let bob = tls_token(&s, &ca, "bob");
    let me = https(s.addr, &config, "GET", "/api/me", None, Some(&alice));
    assert_eq!(me.json()["user"]["username"], "alice");
    assert!(me.header("strict-transport-security").is_some());

    let mut a = wss(s.addr, &config, &format!("/ws/room/general?token={alice}")).unwrap();
    let mut b = wss(s.addr, &config, &format!("/ws/room/general?token={bob}")).unwrap();
    expect_json(&mut a, "unread");
    expect_json(&mut b, "unread");
    let big = "ü".repeat(3000);
    for (content, id) in [("over tls", "c1"), (big.as_str(), "c2")] {
        a.send(Message::text(
            json!({"type": "message", "room": "general", "content": content, "client_id": id})
                .to_string(),
        ))
        .unwrap();
        let m = expect_json(&mut b, "message");
        assert_eq!(
            (m["user"].as_str(), m["content"].as_str()),
            (Some("alice"), Some(content))
        );
        let ack = expect_json(&mut a, "ack");
        assert_eq!((&ack["client_id"], &ack["id"]), (&json!(id), &m["id"]));
    }
}

/// The framing cases of `ws_protocol.rs` hold over TLS (on `/ws/echo`):
/// ping → pong, a message in fragments echoed whole, the close handshake,
/// 1009 for a message over 64 KiB, and 1007 for invalid UTF-8 as soon as it
/// arrives, with the rest of the frame never sent.
#[test]
fn websocket_framing_over_tls() {
    let ca = TestCa::new("frames");
    let s = tls_server(&ca);
    let config = ca.client_config();
    let mut e = wss(s.addr, &config, "/ws/echo").unwrap();
    e.send(Message::Ping(b"hb-1".to_vec().into())).unwrap();
    e.get_mut().sock.set_read_timeout(Some(WAIT)).unwrap();
    match e.read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"hb-1"),
        m => panic!("expected a pong, got {m:?}"),
    }
    let parts = ["{\"a\":", "\"split", " in three\"}"];
    for (i, p) in parts.iter().enumerate() {
        let op = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        e.write(Message::Frame(Frame::message(
            p.as_bytes().to_vec(),
            op,
            i == parts.len() - 1,
        )))
        .unwrap();
    }
    e.flush().unwrap();
    match e.read().unwrap() {
        Message::Text(t) => assert_eq!(t.as_str(), parts.concat()),
        m => panic!("expected the whole text, got {m:?}"),
    }
    // 60 KB passes (several TLS records each way), 70 KB is 1009.
    let near = "x".repeat(60_000);
    e.send(Message::text(near.clone())).unwrap();
    match e.read().unwrap() {
        Message::Text(t) => assert_eq!(t.as_str(), near),
        m => panic!("expected the 60 KB echo, got {m:?}"),
    }
    e.send(Message::text("x".repeat(70_000))).unwrap();
    assert_eq!(close_code(&mut e), Some(1009));

    let mut e = wss(s.addr, &config, "/ws/echo").unwrap();
    e.close(Some(CloseFrame {
        code: 1000.into(),
        reason: "bye".into(),
    }))
    .unwrap();
    assert_eq!(close_code(&mut e), Some(1000));

    // Invalid UTF-8 inside a frame whose end never comes: 1007 at once.
    let mut e = wss(s.addr, &config, "/ws/echo").unwrap();
    let mask = [0xa1u8, 0xb2, 0xc3, 0xd4];
    let mut frame = vec![0x81, 0x80 | 100];
    frame.extend_from_slice(&mask);
    let mut payload = [b'x'; 100];
    payload[10] = 0xff;
    payload[11] = 0xfe;
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    e.get_mut().write_all(&frame[..6 + 20]).unwrap();
    e.get_mut().flush().unwrap();
    assert_eq!(close_code(&mut e), Some(1007));
}

/// SIGHUP reads the certificate files again: a WSS connection opened
/// before goes on chatting (nobody is disconnected), new handshakes get the
/// new certificate, and the server is still running (SIGHUP used to kill
/// it with status 129).
#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    let ca = TestCa::new("reload");
    let s = tls_server(&ca);
    let config = ca.client_config();
    let alice = tls_token(&s, &ca, "alice");
    let bob = tls_token(&s, &ca, "bob");
    let first = tls::peer_certificate(&tls::connect(s.addr, "localhost", &config).unwrap());
    let mut a = wss(s.addr, &config, &format!("/ws/room/general?token={alice}")).unwrap();
    expect_json(&mut a, "unread");

    // A new certificate under the same names, written over the old files.
    let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]);
    std::fs::write(s.dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(s.dir.path().join("key.pem"), key).unwrap();
    s.send_signal(libc::SIGHUP);
    let deadline = Instant::now() + WAIT;
    let second = loop {
        let c = tls::peer_certificate(&tls::connect(s.addr, "localhost", &config).unwrap());
        if c != first {
            break c;
        }
        assert!(Instant::now() < deadline, "the certificate did not change");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(first, second);

    let mut b = wss(s.addr, &config, &format!("/ws/room/general?token={bob}")).unwrap();
    expect_json(&mut b, "unread");
    a.send(Message::text(
        json!({"type": "message", "room": "general", "content": "still here", "client_id": "k"})
            .to_string(),
    ))
    .unwrap();
    assert_eq!(expect_json(&mut b, "message")["content"], "still here");
    assert_eq!(expect_json(&mut a, "ack")["client_id"], "k");
    let mut s = s;
    assert!(s.is_running(), "SIGHUP must not stop the server");
    assert!(s.logs().contains("TLS: reloaded"), "{}", s.logs());

    // A broken file on reload keeps the certificate in use.
    std::fs::write(s.dir.path().join("key.pem"), "not a key").unwrap();
    s.send_signal(libc::SIGHUP);
    let deadline = Instant::now() + WAIT;
    while !s.logs().contains("reload failed") {
        assert!(Instant::now() < deadline, "{}", s.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    let still = tls::peer_certificate(&tls::connect(s.addr, "localhost", &config).unwrap());
    assert_eq!(still, second);
    assert!(s.is_running());
}

/// `--http-addr`: every plain request is a 301 to the same path and query
/// on https:// at the TLS port, without HSTS (it means nothing over http)
/// and without serving the API in plain text.
#[test]
fn plain_listener_redirects_to_https() {
    let ca = TestCa::new("redirect");
    let dir = std::sync::Arc::new(TempDir::new("tls"));
    let (cert, key) = ca.write_server_files(dir.path());
    let plain_port = services::free_port();
    let s = Server::builder()
        .arg("--tls-cert")
        .arg(cert.to_str().unwrap())
        .arg("--tls-key")
        .arg(key.to_str().unwrap())
        .arg("--http-addr")
        .arg(format!("127.0.0.1:{plain_port}"))
        .start_in(dir);
    let plain = format!("127.0.0.1:{plain_port}").parse().unwrap();
    let r = http_raw(
        plain,
        b"GET /api/me?x=1 HTTP/1.1\r\nHost: chat.test:80\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("https://chat.test:{}/api/me?x=1", s.addr.port()).as_str())
    );
    assert!(r.header("strict-transport-security").is_none());
    let r = http_raw(
        plain,
        b"POST /api/login HTTP/1.1\r\nHost: chat.test\r\nContent-Length: 2\r\n\r\n{}",
    )
    .unwrap();
    assert_eq!(r.status, 400, "a POST is not replayed over http");
    let r = http_raw(
        plain,
        b"GET /.well-known/acme-challenge/nothing HTTP/1.1\r\nHost: chat.test\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 404);
}

/// Plain HTTP or garbage on the TLS port closes that connection (with an
/// alert), and the server goes on serving TLS.
#[test]
fn plain_bytes_on_the_tls_port_close_only_that_connection() {
    let ca = TestCa::new("garbage");
    let s = tls_server(&ca);
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/"),
        "plain HTTP was answered on the TLS port"
    );
    // A handshake that stops half-way is dropped by the head timeout, not
    // kept forever; meanwhile others are served.
    let mut stalled = TcpStream::connect(s.addr).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x00, 0x40]).unwrap();
    let r = https(s.addr, &ca.client_config(), "GET", "/healthz", None, None);
    assert_eq!(r.status, 200);
    assert!(
        wait_closed(&mut stalled, Duration::from_secs(15)),
        "a stalled handshake is closed by the head timeout"
    );
}

/// Runs the binary with `args` in a fresh directory, expecting it to exit
/// by itself; (exit code, stderr, whether a database file was created).
fn start_and_fail(args: &[String]) -> (Option<i32>, String, bool) {
    let dir = TempDir::new("tlsfail");
    let db = dir.path().join("hubbub.db");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubbub"))
        .args(["--addr", "127.0.0.1:0", "--db"])
        .arg(&db)
        .args(args)
        .current_dir(dir.path())
        .env_remove("HUBBUB_JWT_SECRET")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run hubbub");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        db.exists(),
    )
}

/// A missing file, a file that is not PEM, or a key that does not match
/// the certificate stop the start with an error naming the file, before
/// any database file is created.
#[test]
fn bad_certificate_files_are_named_and_create_nothing() {
    let ca = TestCa::new("bad");
    let dir = TempDir::new("tlsfiles");
    let (cert, key) = ca.write_server_files(dir.path());
    let (_, other_key) = ca.issue(&["localhost"]);
    let other = dir.path().join("other-key.pem");
    std::fs::write(&other, other_key).unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "hello").unwrap();
    let missing = dir.path().join("missing.pem");
    let p = |p: &std::path::Path| p.to_str().unwrap().to_string();
    for (c, k, names) in [
        (p(&missing), p(&key), p(&missing)),
        (p(&junk), p(&key), p(&junk)),
        (p(&cert), p(&junk), p(&junk)),
        (p(&cert), p(&other), p(&other)),
    ] {
        let (code, err, created) = start_and_fail(&["--tls-cert".into(), c, "--tls-key".into(), k]);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains(&names), "the error names {names}: {err}");
        assert!(!created, "a database was created before the check: {err}");
    }
    let (code, err, _) = start_and_fail(&["--tls-cert".into(), p(&cert)]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--tls-cert needs --tls-key"), "{err}");
}
