//! WebSocket framing on the server's own reactor: ping/pong, the close handshake, fragmented
//! messages, size limits (1009), masking, and the `--echo` endpoint.

mod common;

use common::*;
use serde_json::json;
use std::io::Write;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};

fn fragment(data: &str, first: bool, last: bool) -> Message {
    let op = if first {
        OpCode::Data(Data::Text)
    } else {
        OpCode::Data(Data::Continue)
    };
    Message::Frame(Frame::message(data.as_bytes().to_vec(), op, last))
}

/// A WebSocket ping from the client is answered with a pong carrying the same payload.
#[test]
fn ping_gets_pong() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    a.ws.send(Message::Ping(b"hb-1".to_vec().into())).unwrap();
    match a.next_event(WAIT) {
        Event::Other(Message::Pong(p)) => assert_eq!(&p[..], b"hb-1"),
        e => panic!("expected pong, got {e:?}"),
    }
}

/// A client close frame is answered with a close frame (code 1000 echoed) and the user goes offline.
#[test]
fn client_close_is_answered() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    let (mut b, _) = s.user("bob");
    a.expect("user_status");
    b.ws.close(Some(CloseFrame {
        code: 1000.into(),
        reason: "bye".into(),
    }))
    .unwrap();
    match b.next_event(WAIT) {
        Event::Close(code) => assert_eq!(code, Some(1000)),
        e => panic!("expected the close reply, got {e:?}"),
    }
    let st = a.expect("user_status");
    assert_eq!(
        (st["user"].as_str(), st["status"].as_str()),
        (Some("bob"), Some("offline"))
    );
}

/// A JSON frame split over several fragments (continuation frames) is reassembled and handled.
#[test]
fn fragmented_message_is_reassembled() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    let (mut b, _) = s.user("bob");
    a.join("general");
    b.join("general");
    a.sync();
    let text = json!({"type": "message", "room": "general", "content": "in three parts", "client_id": "f"}).to_string();
    let (p1, rest) = text.split_at(10);
    let (p2, p3) = rest.split_at(20);
    a.ws.write(fragment(p1, true, false)).unwrap();
    a.ws.write(fragment(p2, false, false)).unwrap();
    // A ping may come between fragments.
    a.ws.write(Message::Ping(b"mid".to_vec().into())).unwrap();
    a.ws.write(fragment(p3, false, true)).unwrap();
    a.flush();
    match a.next_event(WAIT) {
        Event::Other(Message::Pong(p)) => assert_eq!(&p[..], b"mid"),
        e => panic!("expected the pong first, got {e:?}"),
    }
    assert_eq!(a.expect("ack")["client_id"], "f");
    assert_eq!(b.expect("message")["content"], "in three parts");
}

fn upgrade_head(path: &str, connection: &str, upgrade: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: {upgrade}\r\nConnection: {connection}\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Browser-style upgrade heads are accepted: `Connection: keep-alive, Upgrade` (Firefox),
/// `Upgrade: WebSocket` in any case, and the token among other query parameters.
#[test]
fn browser_style_upgrade_heads_are_accepted() {
    let s = Server::start();
    let tok = s.token("alice");
    for (path, conn, up) in [
        (
            format!("/ws?token={tok}"),
            "keep-alive, Upgrade",
            "websocket",
        ),
        (format!("/ws?token={tok}"), "upgrade", "WebSocket"),
        (format!("/ws?v=2&token={tok}&x=y"), "Upgrade", "websocket"),
        (
            format!("/ws/room/general?token={tok}"),
            "keep-alive, Upgrade",
            "websocket",
        ),
    ] {
        let mut c = HttpConn::connect(s.addr);
        c.send_raw(upgrade_head(&path, conn, up).as_bytes())
            .unwrap();
        let head = c.read_response_to_head().expect("a response");
        assert_eq!(
            head.status, 101,
            "{path} with Connection: {conn}, Upgrade: {up}"
        );
        assert_eq!(
            head.header("sec-websocket-accept"),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
    }
}

/// WebSocket frames written right behind the upgrade request (before the 101 arrives) are
/// not lost; an upgrade also works on a keep-alive connection after a plain request.
#[test]
fn frames_right_behind_the_upgrade_are_kept() {
    let s = Server::start();
    let tok = s.token("alice");
    let mut c = HttpConn::connect(s.addr);
    assert_eq!(c.request("GET", "/healthz", &[], None).status, 200);
    let upgrade = upgrade_head(&format!("/ws?token={tok}"), "Upgrade", "websocket");
    let payload = br#"{"type":"join","room":"general"}"#;
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut raw = upgrade.into_bytes();
    raw.extend_from_slice(&[0x81, 0x80 | payload.len() as u8]);
    raw.extend_from_slice(&mask);
    raw.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    c.send_raw(&raw).unwrap();
    let head = c.read_response_to_head().expect("101");
    assert_eq!(head.status, 101);
    assert_eq!(
        head.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    let already_read = c.reader.buffer().to_vec();
    let stream = c.reader.into_inner();
    let ws = tungstenite::WebSocket::from_partially_read(
        stream,
        already_read,
        tungstenite::protocol::Role::Client,
        None,
    );
    let mut ws = Ws { ws };
    let online = ws.expect_after("online_users", &["unread", "user_status"]);
    assert_eq!(online["room"], "general");
}

/// A frame over 64 KiB closes the connection with 1009; a 60 KB frame does not.
#[test]
fn oversized_frame_closes_1009() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    a.send_text(&"x".repeat(60_000));
    a.expect_error("bad_json");
    a.send_text(&"x".repeat(70_000));
    let (code, frames) = a.expect_close(WAIT);
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(code, Some(1009));
}

/// A message over 64 KiB made of small fragments is also closed with 1009 (no unbounded reassembly).
#[test]
fn oversized_fragmented_message_closes_1009() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    let chunk = "y".repeat(20_000);
    a.ws.write(fragment(&chunk, true, false)).unwrap();
    for _ in 0..3 {
        a.ws.write(fragment(&chunk, false, false)).unwrap();
    }
    a.ws.write(fragment(&chunk, false, true)).unwrap();
    let _ = a.ws.flush();
    let (code, frames) = a.expect_close(WAIT);
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(code, Some(1009));
}

/// An unmasked client frame is a protocol error: close 1002 (or the connection is dropped),
/// never handled as a frame.
#[test]
fn unmasked_client_frame_is_a_protocol_error() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    let payload = br#"{"type":"join","room":"general"}"#;
    let mut raw = vec![0x81, payload.len() as u8];
    raw.extend_from_slice(payload);
    a.ws.get_mut().write_all(&raw).unwrap();
    let (code, frames) = a.expect_close(WAIT);
    assert!(
        frames.is_empty(),
        "an unmasked frame was handled: {frames:?}"
    );
    assert!(code.is_none() || code == Some(1002), "close code {code:?}");
}

fn masked(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0xa1u8, 0xb2, 0xc3, 0xd4];
    let mut f = vec![first_byte, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// RFC 6455 violations close the connection with the right code (or drop it), never produce
/// a JSON reply: invalid UTF-8 in a text frame (1007), reserved bits without an extension,
/// an unknown opcode, a fragmented or oversized control frame, a continuation with nothing to
/// continue (1002).
#[test]
fn protocol_violations_close_the_connection() {
    let s = Server::start();
    let tok = s.token("alice");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "invalid UTF-8 text",
            masked(0x81, &[b'"', 0xff, 0xfe, b'"']),
            1007,
        ),
        ("RSV1 set", masked(0xC1, br#"{"type":"x"}"#), 1002),
        ("unknown opcode 0x3", masked(0x83, b"hi"), 1002),
        ("fragmented ping", masked(0x09, b"hi"), 1002),
        (
            "ping over 125 bytes",
            {
                let mut f = vec![0x89, 0x80 | 126, 0, 126, 1, 2, 3, 4];
                f.extend(std::iter::repeat_n(0u8, 126));
                f
            },
            1002,
        ),
        ("continuation without a start", masked(0x80, b"hi"), 1002),
    ];
    for (what, raw, want) in cases {
        let mut a = s.ws("/ws", &tok);
        a.ready("alice", false);
        a.ws.get_mut().write_all(&raw).unwrap();
        let (code, frames) = a.expect_close(WAIT);
        assert!(frames.is_empty(), "{what}: answered with {frames:?}");
        assert!(
            code.is_none() || code == Some(want),
            "{what}: close code {code:?}, expected {want}"
        );
    }
}

/// Invalid UTF-8 in a text frame closes the connection (1007) as soon as
/// the bad bytes arrive, even though the frame is not complete yet and the
/// rest never comes (Autobahn 6.4.3 "fail fast" within one frame).
#[test]
fn invalid_utf8_fails_before_the_frame_is_whole() {
    let s = Server::start();
    let tok = s.token("alice");
    let mut a = s.ws("/ws", &tok);
    a.ready("alice", false);
    let mut frame = masked(0x81, &[b'x'; 100]);
    // Bytes 10 and 11 of the payload become 0xff 0xfe once unmasked.
    let mask = [0xa1u8, 0xb2, 0xc3, 0xd4];
    frame[6 + 10] = 0xff ^ mask[10 % 4];
    frame[6 + 11] = 0xfe ^ mask[11 % 4];
    a.ws.get_mut().write_all(&frame[..6 + 20]).unwrap();
    let (code, frames) = a.expect_close(WAIT);
    assert!(frames.is_empty(), "answered with {frames:?}");
    assert_eq!(code, Some(1007));
}

/// `/ws/echo` does not exist without `--echo` (404, no upgrade even with a token).
#[test]
fn echo_is_off_by_default() {
    let s = Server::start();
    let tok = s.token("alice");
    for path in ["/ws/echo".to_string(), format!("/ws/echo?token={tok}")] {
        match ws_connect(s.addr, &path, None) {
            Err(ConnectError::Http(404, _)) => {}
            other => panic!(
                "{path}: expected 404, got {:?}",
                other.map(|_| "101 upgrade")
            ),
        }
    }
}

/// With `--echo`, `/ws/echo` needs no token and echoes text and binary frames verbatim.
#[test]
fn echo_endpoint_echoes() {
    let s = Server::builder().echo().start();
    let mut e = ws_connect(s.addr, "/ws/echo", None).expect("echo upgrade without token");
    e.ws.send(Message::text("not json at all")).unwrap();
    assert_eq!(e.ws.read().unwrap(), Message::text("not json at all"));
    let bin: Vec<u8> = (0..=255).collect();
    e.ws.send(Message::binary(bin.clone())).unwrap();
    assert_eq!(e.ws.read().unwrap(), Message::binary(bin));
    let big = "z".repeat(50_000);
    e.ws.send(Message::text(big.clone())).unwrap();
    assert_eq!(e.ws.read().unwrap(), Message::text(big));
}
