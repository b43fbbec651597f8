//! HTTP/1.1 framing and limits: 400-then-close, 431, 413, 411, 405, keep-alive,
//! pipelining, `Connection: close`, and the 10 s request-head deadline.

mod common;

use common::*;
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

/// Anything unparsable is answered 400 and the connection is closed.
#[test]
fn malformed_request_is_400_then_close() {
    let s = Server::start();
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    ] {
        let mut c = HttpConn::connect(s.addr);
        c.send_raw(raw).unwrap();
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("no 400 for {raw:?}: {e}"));
        assert_eq!(r.status, 400, "{raw:?} -> {}", r.status);
        assert!(
            c.closed_within(Duration::from_secs(2)),
            "connection left open after 400 for {raw:?}"
        );
    }
    let r = s.get("/healthz", None);
    assert_eq!(r.status, 200, "server still serves");
}

/// A request head over 8 KiB is 431; one just under is served.
#[test]
fn oversized_head_is_431() {
    let s = Server::start();
    let ok = http(
        s.addr,
        "GET",
        "/healthz",
        &[("X-Pad", &"a".repeat(7000))],
        None,
    );
    assert_eq!(ok.status, 200, "a 7 KB head is fine");
    let mut c = HttpConn::connect(s.addr);
    let raw = build_request("GET", "/healthz", &[("X-Pad", &"a".repeat(9000))], None);
    c.send_raw(&raw).unwrap();
    assert_eq!(c.read_response().expect("a response").status, 431);
    // A head that never ends but keeps growing past 8 KiB is also 431 (not a wait for more).
    let mut c = HttpConn::connect(s.addr);
    c.send_raw(format!("GET /healthz HTTP/1.1\r\nX-Pad: {}", "b".repeat(9000)).as_bytes())
        .unwrap();
    assert_eq!(c.read_response().expect("a response").status, 431);
}

/// 64 headers are served; 65 are 431.
#[test]
fn too_many_headers_is_431() {
    let s = Server::start();
    let names: Vec<String> = (0..64).map(|i| format!("X-H{i}")).collect();
    let mut hs: Vec<(&str, &str)> = names.iter().take(63).map(|n| (n.as_str(), "v")).collect();
    assert_eq!(
        http(s.addr, "GET", "/healthz", &hs, None).status,
        200,
        "Host + 63 = 64 headers"
    );
    hs.push((names[63].as_str(), "v"));
    assert_eq!(
        http(s.addr, "GET", "/healthz", &hs, None).status,
        431,
        "Host + 64 = 65 headers"
    );
}

/// A body over 64 KiB is 413 (decided from Content-Length, before the body arrives);
/// exactly 64 KiB is accepted for parsing.
#[test]
fn oversized_body_is_413() {
    let s = Server::start();
    let mut c = HttpConn::connect(s.addr);
    c.send_raw(b"POST /api/signup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 65537\r\n\r\n")
        .unwrap();
    let r = c.read_response().expect("413 without sending the body");
    assert_eq!(r.status, 413);
    let mut body = vec![b' '; 65536];
    body[0] = b'{';
    body[65535] = b'}';
    let r = http(
        s.addr,
        "POST",
        "/api/signup",
        &[("Content-Type", "application/json")],
        Some(&body),
    );
    r.assert_error(400, "invalid_input");
}

/// After a 413 the oversized body is never parsed as a request: the server either closes
/// or skips it and answers the request that follows.
#[test]
fn body_after_413_is_not_parsed_as_a_request() {
    let s = Server::start();
    let mut c = HttpConn::connect(s.addr);
    let mut raw = b"POST /api/signup HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n".to_vec();
    let mut body = Vec::new();
    while body.len() < 70_000 {
        body.extend_from_slice(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    body.truncate(70_000);
    raw.extend_from_slice(&body);
    raw.extend(build_request("GET", "/healthz", &[], None));
    let _ = c.send_raw(&raw);
    assert_eq!(c.read_response().expect("413").status, 413);
    match c.read_response() {
        Err(_) => {}
        Ok(r) => assert_eq!(
            r.status, 200,
            "the body was parsed as requests: got {} after the 413",
            r.status
        ),
    }
}

/// Header names are case-insensitive (`content-length`, `AUTHORIZATION`, `connection`).
#[test]
fn header_names_are_case_insensitive() {
    let s = Server::start();
    let tok = s.token("alice");
    let body = br#"{"username":"alice","password":"correct horse battery"}"#;
    let raw = format!(
        "POST /api/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut c = HttpConn::connect(s.addr);
    c.send_raw(&[raw.as_bytes(), body].concat()).unwrap();
    assert_eq!(c.read_response().unwrap().status, 200);
    let r = c.request(
        "GET",
        "/api/me",
        &[
            ("AUTHORIZATION", &format!("Bearer {tok}")),
            ("connection", "CLOSE"),
        ],
        None,
    );
    assert_eq!(r.status, 200);
    assert!(
        c.closed_within(Duration::from_secs(2)),
        "`connection: CLOSE` not honoured"
    );
}

/// A POST without `Content-Length` (no body, or a chunked one) is 411.
#[test]
fn post_without_content_length_is_411() {
    let s = Server::start();
    let r = http_raw(
        s.addr,
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 411, "{}", r.text());
    let r = http_raw(
        s.addr,
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(
        r.status,
        411,
        "a chunked body has no Content-Length: {}",
        r.text()
    );
}

/// An unknown method on a known path is 405; an unknown path stays 404.
#[test]
fn wrong_method_on_known_path_is_405() {
    let s = Server::start();
    let tok = s.token("alice");
    let auth = format!("Bearer {tok}");
    for (m, p) in [
        ("GET", "/api/signup"),
        ("GET", "/api/login"),
        ("DELETE", "/api/me"),
        ("POST", "/api/users"),
        ("PUT", "/api/rooms"),
        ("POST", "/healthz"),
        ("DELETE", "/metrics"),
        ("PATCH", "/api/messages?room=general"),
    ] {
        let body: Option<&[u8]> = if m == "GET" { None } else { Some(b"{}") };
        let r = http(s.addr, m, p, &[("Authorization", &auth)], body);
        assert_eq!(r.status, 405, "{m} {p} -> {} {}", r.status, r.text());
        // RFC 9110 15.5.6: a 405 MUST carry `Allow`, listing the path's methods.
        let allow = r
            .header("allow")
            .unwrap_or_else(|| panic!("{m} {p}: 405 without Allow"));
        assert!(
            !allow.contains(m),
            "{m} {p}: Allow {allow:?} lists the refused method"
        );
    }
    assert_eq!(
        http(s.addr, "DELETE", "/api/nope", &[], Some(b"")).status,
        404
    );
}

/// Keep-alive: several requests on one connection; pipelined requests sent in one write
/// are answered in order.
#[test]
fn keep_alive_and_pipelining_answer_in_order() {
    let s = Server::start();
    let tok = s.token("alice");
    let mut c = HttpConn::connect(s.addr);
    assert_eq!(c.request("GET", "/healthz", &[], None).status, 200);
    assert_eq!(
        c.request(
            "GET",
            "/api/me",
            &[("Authorization", &format!("Bearer {tok}"))],
            None
        )
        .status,
        200
    );

    let mut raw = Vec::new();
    raw.extend(build_request("GET", "/healthz", &[], None));
    raw.extend(build_request("GET", "/api/nope", &[], None));
    raw.extend(build_request("GET", "/api/me", &[], None));
    raw.extend(build_request(
        "POST",
        "/api/login",
        &[("Content-Type", "application/json")],
        Some(br#"{"username":"alice","password":"wrong-password"}"#),
    ));
    raw.extend(build_request(
        "GET",
        "/api/me",
        &[("Authorization", &format!("Bearer {tok}"))],
        None,
    ));
    raw.extend(build_request("GET", "/healthz", &[], None));
    c.send_raw(&raw).unwrap();
    let statuses: Vec<u16> = (0..6)
        .map(|_| c.read_response().expect("pipelined response").status)
        .collect();
    assert_eq!(statuses, [200, 404, 401, 401, 200, 200]);
}

/// A GET with a `Content-Length` body: the body is consumed, not parsed as the next request.
#[test]
fn body_on_get_is_consumed() {
    let s = Server::start();
    let mut c = HttpConn::connect(s.addr);
    let mut raw = build_request("GET", "/healthz", &[], Some(b"GET /nope HTTP/1.1\r\n\r\n"));
    raw.extend(build_request("GET", "/healthz", &[], None));
    c.send_raw(&raw).unwrap();
    assert_eq!(c.read_response().unwrap().status, 200);
    assert_eq!(
        c.read_response().unwrap().status,
        200,
        "the GET's body was parsed as a request"
    );
}

/// `Connection: close` is honoured: one response, then the server closes.
#[test]
fn connection_close_is_honoured() {
    let s = Server::start();
    let mut c = HttpConn::connect(s.addr);
    let r = c.request("GET", "/healthz", &[("Connection", "close")], None);
    assert_eq!(r.status, 200);
    assert!(
        c.closed_within(Duration::from_secs(2)),
        "still open after Connection: close"
    );
}

/// A body may arrive in pieces after the head.
#[test]
fn body_in_several_writes_is_assembled() {
    let s = Server::start();
    let body = br#"{"username":"alice","email":"alice@example.com","password":"password123"}"#;
    let mut c = HttpConn::connect(s.addr);
    let head = format!(
        "POST /api/signup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    c.send_raw(head.as_bytes()).unwrap();
    thread::sleep(Duration::from_millis(50));
    c.stream().write_all(&body[..20]).unwrap();
    thread::sleep(Duration::from_millis(50));
    c.stream().write_all(&body[20..]).unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
}

/// A request head not complete within 10 s of accept (or of the previous response) gets the
/// socket closed: not before ~10 s, not much after.
#[test]
fn incomplete_head_is_closed_after_10s() {
    let s = Server::start();
    let start = Instant::now();
    // Silent from accept.
    let mut silent = HttpConn::connect(s.addr);
    // Trickles a partial head.
    let mut partial = HttpConn::connect(s.addr);
    partial.send_raw(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
    // One full request, then idle.
    let mut idle = HttpConn::connect(s.addr);
    assert_eq!(idle.request("GET", "/healthz", &[], None).status, 200);

    thread::sleep(Duration::from_millis(8500));
    partial.send_raw(b"st: x\r\n").unwrap(); // progress does not extend the deadline
    for (name, c) in [
        ("silent", &mut silent),
        ("partial", &mut partial),
        ("idle", &mut idle),
    ] {
        assert!(
            !c.closed_within(Duration::from_millis(1)),
            "{name} connection closed before 8.5 s ({:?})",
            start.elapsed()
        );
    }
    for (name, c) in [
        ("silent", &mut silent),
        ("partial", &mut partial),
        ("idle", &mut idle),
    ] {
        let left = Duration::from_millis(13_000).saturating_sub(start.elapsed());
        assert!(
            c.closed_within(left),
            "{name} connection still open after 13 s"
        );
    }
    assert_eq!(s.get("/healthz", None).status, 200);
}

/// Pipelined requests then a half-close (`shutdown(SHUT_WR)`): every
/// reply is written before the server closes (before, the end of input
/// dropped the queued replies, 9 times in 20); and a 400 for a bad request
/// followed by a half-close arrives too (lost 6 times in 20).
#[test]
fn half_close_after_pipelined_requests_loses_no_reply() {
    let s = Server::start();
    let one = build_request("GET", "/healthz", &[], None);
    for round in 0..20 {
        let mut c = std::net::TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        let pipelined: Vec<u8> = (0..40).flat_map(|_| one.iter().copied()).collect();
        c.write_all(&pipelined).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut c, &mut got).unwrap();
        let replies = String::from_utf8_lossy(&got)
            .matches("HTTP/1.1 200")
            .count();
        assert_eq!(replies, 40, "round {round}: {replies} of 40 replies");

        let mut c = std::net::TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        c.write_all(b"BROKEN\r\n\r\n").unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut c, &mut got).unwrap();
        assert!(got.starts_with(b"HTTP/1.1 400"), "round {round}: {got:?}");
    }
}

/// One connection pipelining `GET /healthz` without reading a reply: the
/// server stops reading it once replies are pending past the output pause
/// (the rest waits in the socket, not in the server's memory), so the
/// writer is soon blocked; meanwhile another client is served. Before,
/// reading went on while replies were pending: 48 MiB accepted, RSS
/// 6 → 102 MiB.
#[test]
fn pipelining_without_reading_is_not_read_further() {
    let s = Server::start();
    let base = s.rss_kib();
    let mut c = connect_from(std::net::Ipv4Addr::new(127, 0, 0, 2), s.addr).unwrap();
    c.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let one = build_request("GET", "/healthz", &[], None);
    let chunk: Vec<u8> = (0..1000).flat_map(|_| one.iter().copied()).collect();
    let started = Instant::now();
    let mut sent = 0usize;
    while started.elapsed() < Duration::from_secs(8) && sent < 64 << 20 {
        match c.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    assert!(
        sent < 24 << 20,
        "{} MiB of pipelined requests accepted in {:?}",
        sent >> 20,
        started.elapsed()
    );
    let mut other = HttpConn::connect(s.addr);
    assert_eq!(other.request("GET", "/healthz", &[], None).status, 200);
    let rss = s.rss_kib();
    eprintln!("sent {sent} bytes; RSS {base} KiB before, {rss} KiB after");
    assert!(
        rss < base + 16 * 1024,
        "RSS grew from {base} KiB to {rss} KiB"
    );
}

/// `hubbub_output_queued_bytes` from `/metrics`.
fn output_queued(s: &Server) -> usize {
    let text = s.get("/metrics", None).text();
    text.lines()
        .find_map(|l| l.strip_prefix("hubbub_output_queued_bytes "))
        .unwrap_or_else(|| panic!("no hubbub_output_queued_bytes in /metrics:\n{text}"))
        .parse()
        .unwrap()
}

/// The server's count of unsent output (`hubbub_output_queued_bytes`: what
/// the server-wide reply budget reads before every storage read) is this
/// moment's: it holds what a client that does not read was answered, it is
/// exactly 0 the moment that client has read the last byte (before, it was
/// a sum taken once a second, up to a second old), and a client that goes
/// away with replies unread takes them out of the count.
#[test]
fn unsent_output_is_counted_as_it_changes() {
    const ASKED: usize = 400;
    let s = Server::start();
    assert_eq!(output_queued(&s), 0);
    let one = build_request("GET", "/js/chat.js", &[], None);
    let pipelined: Vec<u8> = (0..ASKED).flat_map(|_| one.iter().copied()).collect();
    let held_back = |c: &mut std::net::TcpStream| {
        c.write_all(&pipelined).unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            let held = output_queued(&s);
            if held >= 1 << 20 {
                return held;
            }
            assert!(Instant::now() < deadline, "only {held} bytes held back");
            thread::sleep(Duration::from_millis(50));
        }
    };

    let mut c = std::net::TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    let held = held_back(&mut c);
    // Every reply is the same: its length from the first head, then read
    // until all of them are in.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = None;
    while total.is_none_or(|t| got.len() < t) {
        let n = std::io::Read::read(&mut c, &mut buf).unwrap();
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
        if total.is_none()
            && let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n")
        {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let body: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .expect("a length")
                .parse()
                .unwrap();
            total = Some(ASKED * (end + 4 + body));
        }
    }
    assert_eq!(Some(got.len()), total, "nothing after the last reply");
    assert_eq!(output_queued(&s), 0, "{held} bytes held, all read since");

    let mut c = std::net::TcpStream::connect(s.addr).unwrap();
    held_back(&mut c);
    drop(c);
    let deadline = Instant::now() + WAIT;
    while output_queued(&s) != 0 {
        assert!(
            Instant::now() < deadline,
            "a closed client's output still counted"
        );
        thread::sleep(Duration::from_millis(50));
    }
}
