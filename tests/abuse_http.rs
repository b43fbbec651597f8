//! One client cannot hurt the others, HTTP side (PROTOCOL.md "Faults and
//! abuse"): password work shared fairly between source addresses, failed
//! logins throttled per username, `X-Forwarded-For` from a trusted proxy
//! only, JSON-only `POST` bodies, the WebSocket `Origin` allowlist and
//! per-user connection cap, safe JSON headers, short echoes of input.
//!
//! Clients bind to several loopback addresses (127.0.0.0/8 is all local on
//! Linux) so the server sees distinct source addresses.

mod common;

use std::io::{self, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use hubbub::config::{
    HASH_WORK_BURST, LOGIN_FAILURE_BURST, LOGIN_FAILURE_REFILL, LOGIN_GUESSERS_MAX, PBKDF2_DEFAULT,
};
use serde_json::{Value, json};

/// Tests that hash at the default strength saturate the CPU: one at a time,
/// so none measures another.
static CPU: Mutex<()> = Mutex::new(());

fn cpu() -> std::sync::MutexGuard<'static, ()> {
    CPU.lock().unwrap_or_else(|e| e.into_inner())
}

/// A TCP connection to `to` from source address `from` (bound before
/// connecting; std cannot, so through libc).
fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(to) = to else {
        panic!("test servers listen on IPv4")
    };
    let sockaddr = |ip: [u8; 4], port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a fresh socket is wrapped at once (closed on drop, on panic
    // too); bind and connect get pointers to live sockaddr_in values.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr(from, 0);
        let rc = libc::bind(fd, (&raw const local).cast(), len);
        assert_eq!(rc, 0, "bind {from:?}: {}", io::Error::last_os_error());
        let remote = sockaddr(to.ip().octets(), to.port());
        let rc = libc::connect(fd, (&raw const remote).cast(), len);
        assert_eq!(
            rc,
            0,
            "connect from {from:?}: {}",
            io::Error::last_os_error()
        );
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream
    }
}

fn conn_from(from: [u8; 4], to: SocketAddr) -> HttpConn {
    HttpConn {
        reader: BufReader::new(connect_from(from, to)),
    }
}

/// `POST path` with a JSON body from `from`, plus `headers`.
fn post_from(
    s: &Server,
    from: [u8; 4],
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> Resp {
    let mut h = vec![("Content-Type", "application/json")];
    h.extend_from_slice(headers);
    conn_from(from, s.addr).request("POST", path, &h, Some(body.to_string().as_bytes()))
}

fn login_from(s: &Server, from: [u8; 4], name: &str, password: &str) -> Resp {
    let body = json!({"username": name, "password": password});
    post_from(s, from, "/api/login", &body, &[])
}

fn signup_body(name: &str) -> Value {
    json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD})
}

/// The `Retry-After` of a 429 `rate_limited`, asserting the shape: a whole
/// number of seconds, at least 1.
fn retry_after(r: &Resp) -> u64 {
    r.assert_error(429, "rate_limited");
    let v = r.header("retry-after").expect("429 carries Retry-After");
    let secs: u64 = v.parse().unwrap_or_else(|_| panic!("Retry-After {v:?}"));
    assert!(secs >= 1, "Retry-After {secs}");
    secs
}

/// A counter or gauge from `/metrics`.
fn metric(s: &Server, name: &str) -> u64 {
    let text = s.get("/metrics", None).text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
        .parse()
        .unwrap()
}

/// The attack: 48 concurrent bogus logins (for the victim's own
/// name) from 127.0.0.2 at the default 600000 iterations. All but the
/// address's burst get 429 with `Retry-After` at once, and the victim's
/// login from 127.0.0.1 completes within about two hashes (the one running,
/// then its own; the bound allows four for a busy machine) instead of
/// waiting behind the queue (before: 48 hashes, up to 45 s in release).
#[test]
fn login_flood_from_one_address_cannot_delay_another() {
    let _cpu = cpu();
    let s = Server::builder().default_iterations().start();
    let victim = [127, 0, 0, 1];
    assert_eq!(
        post_from(&s, victim, "/api/signup", &signup_body("alice"), &[]).status,
        201
    );
    let t = Instant::now();
    assert_eq!(login_from(&s, victim, "alice", PASSWORD).status, 200);
    let one_hash = t.elapsed();

    const FLOOD: usize = 48;
    let addr = s.addr;
    let sent = Arc::new(AtomicUsize::new(0));
    let flood: Vec<_> = (0..FLOOD)
        .map(|i| {
            let sent = sent.clone();
            thread::spawn(move || {
                let mut c = conn_from([127, 0, 0, 2], addr);
                let body = json!({"username": "alice", "password": format!("guess-{i}")});
                let raw = build_request(
                    "POST",
                    "/api/login",
                    &[("Content-Type", "application/json")],
                    Some(body.to_string().as_bytes()),
                );
                c.send_raw(&raw).unwrap();
                sent.fetch_add(1, Ordering::SeqCst);
                // Admitted guesses take many hashes; only refusals are
                // awaited (the server is killed before the rest finish).
                c.stream()
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                c.read_response().ok()
            })
        })
        .collect();
    let deadline = Instant::now() + WAIT;
    while sent.load(Ordering::SeqCst) < FLOOD && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(Duration::from_millis(100)); // let the flood land

    let t = Instant::now();
    let mut c = conn_from(victim, s.addr);
    c.stream()
        .set_read_timeout(Some(one_hash * 6 + Duration::from_secs(2)))
        .unwrap();
    let body = json!({"username": "alice", "password": PASSWORD}).to_string();
    let r = c
        .request(
            "POST",
            "/api/login",
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        )
        .status;
    let victim_wait = t.elapsed();

    let answers: Vec<Option<Resp>> = flood.into_iter().map(|h| h.join().unwrap()).collect();
    let refused: Vec<u64> = answers
        .iter()
        .flatten()
        .filter(|r| r.status == 429)
        .map(retry_after)
        .collect();
    let admitted = (HASH_WORK_BURST / PBKDF2_DEFAULT as u64) as usize;
    eprintln!(
        "one hash {one_hash:?}; victim login under flood {victim_wait:?} ({r}); \
         flood: {} refused 429 (Retry-After {:?}..{:?} s), {} admitted or pending",
        refused.len(),
        refused.iter().min(),
        refused.iter().max(),
        FLOOD - refused.len()
    );
    assert_eq!(r, 200, "the victim logs in");
    assert!(
        victim_wait < one_hash * 4 + Duration::from_secs(1),
        "victim waited {victim_wait:?} with one hash taking {one_hash:?}"
    );
    assert!(
        refused.len() + 2 >= FLOOD - admitted,
        "only {} of {FLOOD} flood logins were refused",
        refused.len()
    );
}

/// One address guessing one account's password is stopped after the burst
/// of failures (429, `Retry-After` at most one refill period away), and
/// cannot lock the owner out: the right password from another address still
/// logs in at once.
#[test]
fn one_guesser_cannot_lock_out_the_owner() {
    let s = Server::start();
    s.signup("alice");
    let guesser = [127, 0, 0, 2];
    for i in 0..LOGIN_FAILURE_BURST {
        login_from(&s, guesser, "alice", &format!("wrong-{i}"))
            .assert_error(401, "invalid_credentials");
    }
    let r = login_from(&s, guesser, "ALICE", "wrong-again");
    assert!(retry_after(&r) <= LOGIN_FAILURE_REFILL.as_secs(), "{r:?}");
    assert_eq!(
        login_from(&s, [127, 0, 0, 3], "alice", PASSWORD).status,
        200
    );
    // The guesser is not let in by the owner's success.
    retry_after(&login_from(&s, guesser, "alice", PASSWORD));
    assert_eq!(metric(&s, "hubbub_auth_throttled_username_total"), 2);
}

/// Guesses from many addresses (`LOGIN_GUESSERS_MAX` of them) exhaust the
/// username for everyone, the right password from a fresh address included,
/// whatever the name's case; an unknown name is throttled the same way (a 429
/// does not tell which accounts exist); other accounts are untouched.
#[test]
fn guessing_from_many_addresses_is_throttled_per_username() {
    let s = Server::start();
    s.signup("alice");
    s.signup("bob");
    for name in ["alice", "nobody"] {
        for i in 0..LOGIN_FAILURE_BURST as usize {
            let from = [127, 0, 1, (i % LOGIN_GUESSERS_MAX) as u8 + 1];
            login_from(&s, from, name, &format!("wrong-{i}"))
                .assert_error(401, "invalid_credentials");
        }
    }
    let stranger = [127, 0, 2, 1];
    let r = login_from(&s, stranger, "Alice", PASSWORD);
    assert!(retry_after(&r) <= LOGIN_FAILURE_REFILL.as_secs());
    let unknown = login_from(&s, stranger, "nobody", "anything");
    assert!(
        retry_after(&unknown) <= LOGIN_FAILURE_REFILL.as_secs(),
        "an unknown name is throttled like a real one"
    );
    assert_eq!(unknown.json()["error"], r.json()["error"]);
    assert_eq!(login_from(&s, stranger, "bob", PASSWORD).status, 200);
}

/// One rule for usernames (ASCII case folding): a look-alike spelling
/// (`\u{212A}`, the Kelvin sign, for `K`) is nobody — it never logs in as
/// the account, even with the right password — and it counts against the
/// account's lockout, so it cannot be used to escape one: once `kate_x` is
/// locked, the Kelvin spelling gets 429 too, and its failures lock it.
#[test]
fn a_look_alike_spelling_neither_logs_in_nor_escapes_the_lockout() {
    let s = Server::start();
    s.signup("kate_x");
    let kelvin = "\u{212A}ate_x";
    let fullwidth = "\u{FF4B}ate_x";
    for name in [kelvin, fullwidth] {
        login_from(&s, [127, 0, 3, 1], name, PASSWORD).assert_error(401, "invalid_credentials");
    }
    for i in 0..LOGIN_FAILURE_BURST as usize - 2 {
        let from = [127, 0, 3, (i % LOGIN_GUESSERS_MAX) as u8 + 2];
        login_from(&s, from, kelvin, &format!("wrong-{i}"))
            .assert_error(401, "invalid_credentials");
    }
    // Ten failures in all, under two spellings: the account is locked.
    let r = login_from(&s, [127, 0, 4, 1], "kate_x", PASSWORD);
    assert!(retry_after(&r) <= LOGIN_FAILURE_REFILL.as_secs());
    let r = login_from(&s, [127, 0, 4, 2], kelvin, PASSWORD);
    assert!(retry_after(&r) <= LOGIN_FAILURE_REFILL.as_secs());
    // A signup under the look-alike is refused: it is no username.
    let r = post_from(&s, [127, 0, 4, 3], "/api/signup", &signup_body(kelvin), &[]);
    r.assert_error(400, "invalid_input");
}

/// Signups spend the address's hash-work budget (`--hash-work-rate`,
/// `--hash-work-burst`): past it, 429 with the real wait, the refused name
/// is not held, other addresses sign up meanwhile, and after `Retry-After`
/// seconds the same address may again.
#[test]
fn signup_flood_is_throttled_per_address() {
    let s = Server::builder()
        .arg("--hash-work-rate")
        .arg("1000")
        .arg("--hash-work-burst")
        .arg("3000")
        .start();
    let flooder = [127, 0, 0, 2];
    for name in ["su1", "su2", "su3"] {
        let r = post_from(&s, flooder, "/api/signup", &signup_body(name), &[]);
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let r = post_from(&s, flooder, "/api/signup", &signup_body("su4"), &[]);
    let wait = retry_after(&r);
    assert_eq!(wait, 1, "one 1000-iteration hash at 1000 a second");
    let other = post_from(&s, [127, 0, 0, 3], "/api/signup", &signup_body("su4"), &[]);
    assert_eq!(other.status, 201, "{}", other.text());
    thread::sleep(Duration::from_secs(wait));
    let again = post_from(&s, flooder, "/api/signup", &signup_body("su5"), &[]);
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(metric(&s, "hubbub_auth_throttled_address_total"), 1);
}

/// Behind `--trust-proxy 127.0.0.1`, the client is the last
/// `X-Forwarded-For` entry (what the proxy appended, not what the client
/// wrote before it); from any other peer the header is ignored, so a client
/// cannot pose as many to escape its budget.
#[test]
fn trusted_proxy_names_the_client() {
    let s = Server::builder()
        .arg("--trust-proxy")
        .arg("127.0.0.1")
        .arg("--hash-work-rate")
        .arg("1")
        .arg("--hash-work-burst")
        .arg("2000")
        .start();
    let proxy = [127, 0, 0, 1];
    let signup = |from, name: &str, xff: &str| {
        post_from(
            &s,
            from,
            "/api/signup",
            &signup_body(name),
            &[("X-Forwarded-For", xff)],
        )
    };
    assert_eq!(signup(proxy, "px1", "127.0.0.2").status, 201);
    assert_eq!(signup(proxy, "px2", "127.0.0.2").status, 201);
    retry_after(&signup(proxy, "px3", "127.0.0.2"));
    retry_after(&signup(proxy, "px3", "10.1.1.1, 127.0.0.2"));
    assert_eq!(signup(proxy, "px3", "127.0.0.3").status, 201);
    // An untrusted peer cannot rotate the header to look like new clients.
    let direct = [127, 0, 0, 4];
    assert_eq!(signup(direct, "dx1", "10.0.0.1").status, 201);
    assert_eq!(signup(direct, "dx2", "10.0.0.2").status, 201);
    retry_after(&signup(direct, "dx3", "10.0.0.3"));
}

/// `POST` bodies must be `Content-Type: application/json` (any case, a
/// UTF-8 charset allowed): forms, plain text, a missing type or another
/// charset are 415 `invalid_input` and create nothing.
#[test]
fn post_bodies_must_be_json() {
    let s = Server::start();
    let body = signup_body("alice").to_string();
    for ct in [
        Some("application/x-www-form-urlencoded"),
        Some("text/plain;charset=UTF-8"),
        Some("multipart/form-data; boundary=x"),
        Some("application/json; charset=latin1"),
        Some("application/jsonx"),
        None,
    ] {
        let h: Vec<(&str, &str)> = ct.iter().map(|c| ("Content-Type", *c)).collect();
        let r = http(s.addr, "POST", "/api/signup", &h, Some(body.as_bytes()));
        r.assert_error(415, "invalid_input");
        let r = http(s.addr, "POST", "/api/login", &h, Some(b"{}"));
        r.assert_error(415, "invalid_input");
    }
    for ct in ["Application/JSON", "application/json; charset=\"utf-8\""] {
        let name = format!("u{}", ct.len());
        let r = http(
            s.addr,
            "POST",
            "/api/signup",
            &[("Content-Type", ct)],
            Some(signup_body(&name).to_string().as_bytes()),
        );
        assert_eq!(r.status, 201, "{ct}: {}", r.text());
    }
    assert_eq!(metric(&s, "hubbub_http_unsupported_media_total"), 12);
}

/// A raw WebSocket upgrade of `path` from `from`, with `Host` the server's
/// address and the given `Origin`; returns the connection (a live
/// WebSocket after a 101) and the response head.
fn upgrade(s: &Server, from: [u8; 4], path: &str, origin: Option<&str>) -> (HttpConn, Resp) {
    let mut raw = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        s.addr
    );
    if let Some(o) = origin {
        raw.push_str(&format!("Origin: {o}\r\n"));
    }
    raw.push_str("\r\n");
    let mut c = conn_from(from, s.addr);
    c.send_raw(raw.as_bytes()).unwrap();
    let r = c.read_response().expect("upgrade response");
    (c, r)
}

/// The WebSocket upgrade checks `Origin`: the server's own host (the
/// bundled client) and `--allowed-origin` entries pass, as does a request
/// without `Origin` (non-browser clients); any other origin is 403
/// `forbidden` with no upgrade, `/ws/echo` included, valid token or not.
#[test]
fn websocket_origin_must_be_allowed() {
    let s = Server::builder()
        .echo()
        .arg("--allowed-origin")
        .arg("https://app.example.com")
        .start();
    let token = s.token("alice");
    let path = format!("/ws?token={token}");
    let me = [127, 0, 0, 1];
    let own = format!("http://{}", s.addr);
    for origin in [None, Some(own.as_str()), Some("https://app.example.com")] {
        let (_c, r) = upgrade(&s, me, &path, origin);
        assert_eq!(r.status, 101, "{origin:?}: {}", r.text());
    }
    for (p, origin) in [
        (path.as_str(), "https://evil.example"),
        (path.as_str(), "null"),
        ("/ws?token=bogus", "https://evil.example"),
        ("/ws/echo", "https://evil.example"),
    ] {
        let (_c, r) = upgrade(&s, me, p, Some(origin));
        r.assert_error(403, "forbidden");
    }
    assert_eq!(metric(&s, "hubbub_ws_refused_origin_total"), 4);
}

/// `--max-conns-per-user N`: the user's N+1th chat WebSocket is 429
/// `rate_limited` with no upgrade; other users are unaffected, and closing
/// one frees a slot.
#[test]
fn websocket_connections_per_user_are_capped() {
    let s = Server::builder()
        .arg("--max-conns-per-user")
        .arg("3")
        .start();
    let alice = s.token("alice");
    let bob = s.token("bob");
    let mut open: Vec<Ws> = (0..3).map(|_| s.ws("/ws", &alice)).collect();
    let (_c, r) = upgrade(&s, [127, 0, 0, 1], &format!("/ws?token={alice}"), None);
    r.assert_error(429, "rate_limited");
    let _bob = s.ws("/ws", &bob);
    open.pop().unwrap().close();
    let deadline = Instant::now() + WAIT;
    loop {
        let (_c, r) = upgrade(&s, [127, 0, 0, 1], &format!("/ws?token={alice}"), None);
        if r.status == 101 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no slot after a close: {}",
            r.status
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(metric(&s, "hubbub_ws_refused_user_cap_total") >= 1);
}

/// JSON answers (successes and errors) say `nosniff` and `no-store`; the
/// web client's files keep their ETag revalidation instead.
#[test]
fn json_responses_are_nosniff_and_no_store() {
    let s = Server::start();
    s.signup("alice");
    let login = s.post_json(
        "/api/login",
        &json!({"username": "alice", "password": PASSWORD}),
        None,
    );
    for r in [&login, &s.get("/api/me", None), &s.get("/api/nope", None)] {
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{r:?}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{r:?}");
    }
    let page = s.get("/", None);
    assert_eq!(page.status, 200);
    assert!(page.header("etag").is_some());
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
}

/// An error that quotes client input quotes a short prefix of it: a
/// 4000-character bogus name comes back as at most a few dozen characters.
#[test]
fn errors_quote_input_briefly() {
    let s = Server::start();
    let token = s.token("alice");
    let long = "x".repeat(4000);
    let r = s.get(&format!("/api/messages?with={long}"), Some(&token));
    r.assert_error(404, "no_such_user");
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(msg.len() < 200, "{} bytes: {msg:.100}", msg.len());
    assert!(msg.contains("xxxx"), "{msg}");
}

/// Password jobs of connections that hung up while queued are dropped
/// unhashed: with one hashing thread busy on a default-strength hash, five
/// queued logins whose clients left are skipped, and the next live login
/// runs right after the busy one.
#[test]
fn jobs_of_vanished_connections_are_not_hashed() {
    let _cpu = cpu();
    let s = Server::builder()
        .default_iterations()
        .arg("--hash-threads")
        .arg("1")
        .start();
    let bogus = json!({"username": "nobody", "password": "whatever"}).to_string();
    let raw = build_request(
        "POST",
        "/api/login",
        &[("Content-Type", "application/json")],
        Some(bogus.as_bytes()),
    );
    let t = Instant::now();
    let mut busy = conn_from([127, 0, 0, 2], s.addr);
    busy.send_raw(&raw).unwrap();
    thread::sleep(Duration::from_millis(20));
    // All five queue behind the busy hash and hang up well inside it (the
    // hash takes about 150 ms on a fast core): their lifetimes once ran
    // one after the other, and on a fast machine the last hang-up came as
    // the busy hash ended, so its job was hashed.
    let gone: Vec<_> = (0..5u8)
        .map(|i| {
            let mut c = conn_from([127, 0, 0, 10 + i], s.addr);
            c.send_raw(&raw).unwrap();
            c
        })
        .collect();
    thread::sleep(Duration::from_millis(20));
    drop(gone);
    let hung_up = t.elapsed();
    let mut live = conn_from([127, 0, 0, 3], s.addr);
    live.stream()
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    live.send_raw(&raw).unwrap();
    busy.stream()
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    busy.read_response()
        .unwrap()
        .assert_error(401, "invalid_credentials");
    let one_hash = t.elapsed();
    assert!(
        one_hash > hung_up * 2,
        "the busy hash ({one_hash:?}) ended too soon after the hang-ups ({hung_up:?}) \
         for this test to tell dropped jobs from hashed ones"
    );
    let t = Instant::now();
    live.read_response()
        .unwrap()
        .assert_error(401, "invalid_credentials");
    let next = t.elapsed();
    eprintln!("busy hash {one_hash:?}, live login after it {next:?}");
    assert_eq!(metric(&s, "hubbub_hash_jobs_dropped_total"), 5);
    assert!(
        next < one_hash * 2,
        "the live login waited {next:?} after a {one_hash:?} hash"
    );
}
