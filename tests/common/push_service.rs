//! A push service for the tests, on 127.0.0.1: it takes Web Push requests
//! as FCM or Mozilla's autopush would (HTTP/1.1, keep-alive), records each
//! with the time it arrived, and answers 201 unless a test scripted other
//! statuses for an endpoint (404, 410, 429 with `Retry-After`, 500...).
//! [`Subscriber`] is a browser's side of a subscription: its own P-256
//! key pair and auth secret, the JSON a browser would post, and the checks
//! a browser and a push service make: the VAPID token verifies with the
//! server's published key for this service's origin, and the body decrypts
//! (RFC 8291) with the subscription's private key.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use serde_json::{Value, json};

/// One request the service received.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub path: String,
    pub method: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
    /// The status it was answered.
    pub status: u16,
}

impl Pushed {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// A scripted answer: a status, and a `Retry-After` in seconds.
type Answer = (u16, Option<u64>);

pub struct PushService {
    addr: SocketAddr,
    script: Arc<Mutex<HashMap<String, VecDeque<Answer>>>>,
    received: Receiver<Pushed>,
    connections: Arc<AtomicUsize>,
}

impl PushService {
    pub fn start() -> PushService {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the push service");
        let addr = listener.local_addr().unwrap();
        let script: Arc<Mutex<HashMap<String, VecDeque<Answer>>>> = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let (tx, received) = mpsc::channel();
        let (s, c) = (script.clone(), connections.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                c.fetch_add(1, Ordering::Relaxed);
                let (s, tx) = (s.clone(), tx.clone());
                thread::spawn(move || serve(stream, &s, &tx));
            }
        });
        PushService {
            addr,
            script,
            received,
            connections,
        }
    }

    /// `http://127.0.0.1:PORT`: the VAPID audience of its endpoints.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next requests to `path` are answered with these, in order
    /// (then 201 again).
    pub fn script(&self, path: &str, answers: &[Answer]) {
        self.script
            .lock()
            .unwrap()
            .entry(path.to_string())
            .or_default()
            .extend(answers.iter().copied());
    }

    /// The next request, within `within`.
    pub fn next(&self, within: Duration) -> Option<Pushed> {
        match self.received.recv_timeout(within) {
            Ok(p) => Some(p),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => panic!("the push service stopped"),
        }
    }

    /// The next request, or a panic naming `what`.
    pub fn expect(&self, within: Duration, what: &str) -> Pushed {
        self.next(within)
            .unwrap_or_else(|| panic!("no push within {within:?}: {what}"))
    }

    /// Asserts nothing arrives for `quiet`.
    pub fn expect_none(&self, quiet: Duration, what: &str) {
        if let Some(p) = self.next(quiet) {
            panic!("unexpected push to {} ({what})", p.path);
        }
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// One connection: requests until EOF (the sender keeps connections alive).
fn serve(
    stream: TcpStream,
    script: &Mutex<HashMap<String, VecDeque<Answer>>>,
    tx: &Sender<Pushed>,
) {
    let mut out = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let at = Instant::now();
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let (status, retry_after) = script
            .lock()
            .unwrap()
            .get_mut(&path)
            .and_then(VecDeque::pop_front)
            .unwrap_or((201, None));
        let extra = retry_after.map_or(String::new(), |s| format!("Retry-After: {s}\r\n"));
        let head = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n{extra}\r\n");
        let _ = tx.send(Pushed {
            path,
            method,
            headers,
            body,
            at,
            status,
        });
        if out.write_all(head.as_bytes()).is_err() {
            return;
        }
    }
}

/// A browser's subscription on the test push service.
pub struct Subscriber {
    pub endpoint: String,
    pub path: String,
    secret: p256::SecretKey,
    auth: [u8; 16],
}

impl Subscriber {
    /// A new subscription at `/push/<name>` on `service`.
    pub fn new(service: &PushService, name: &str) -> Subscriber {
        let rng = SystemRandom::new();
        let secret = loop {
            let mut k = [0u8; 32];
            rng.fill(&mut k).unwrap();
            if let Ok(s) = p256::SecretKey::from_slice(&k) {
                break s;
            }
        };
        let mut auth = [0u8; 16];
        rng.fill(&mut auth).unwrap();
        let path = format!("/push/{name}");
        Subscriber {
            endpoint: format!("{}{path}", service.origin()),
            path,
            secret,
            auth,
        }
    }

    /// What a browser's `PushSubscription.toJSON()` gives.
    pub fn json(&self) -> Value {
        let public = self.secret.public_key().to_encoded_point(false);
        json!({
            "endpoint": self.endpoint,
            "expirationTime": null,
            "keys": {"p256dh": B64.encode(public.as_bytes()), "auth": B64.encode(self.auth)},
        })
    }

    /// The push's payload, decrypted with this subscription's keys, after
    /// checking what a push service and a browser check: the method, the
    /// RFC 8291 encoding, and a VAPID `Authorization` whose key is
    /// `server_key` and whose token verifies with it for this origin.
    pub fn open(&self, p: &Pushed, server_key: &str) -> Value {
        assert_eq!(p.method, "POST");
        assert_eq!(p.path, self.path, "pushed to this subscription");
        assert_eq!(p.header("content-encoding"), Some("aes128gcm"));
        let origin = self.endpoint[..self.endpoint.len() - self.path.len()].to_string();
        check_vapid(p, server_key, &origin);
        let auth = web_push_native::Auth::clone_from_slice(&self.auth);
        let plain = web_push_native::decrypt(p.body.clone(), &self.secret, &auth)
            .expect("the payload decrypts with the subscription's keys");
        serde_json::from_slice(&plain).expect("the payload is JSON")
    }
}

/// RFC 8292: `vapid t=<JWT>, k=<key>`, the key the server publishes, an
/// ES256 token signed by it for `audience`, expiring within a day.
pub fn check_vapid(p: &Pushed, server_key: &str, audience: &str) {
    let auth = p.header("authorization").expect("an Authorization header");
    let rest = auth.strip_prefix("vapid ").expect("the vapid scheme");
    let mut t = None;
    let mut k = None;
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v),
            Some(("k", v)) => k = Some(v),
            _ => {}
        }
    }
    let (t, k) = (t.expect("t="), k.expect("k="));
    assert_eq!(k, server_key, "k= is the key GET /api/push/key gave");
    let parts: Vec<&str> = t.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT");
    let header: Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    let claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["aud"], audience);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = claims["exp"].as_u64().expect("exp");
    assert!(
        exp > now && exp <= now + 24 * 3600,
        "exp within a day: {exp}"
    );
    assert!(
        claims["sub"]
            .as_str()
            .is_some_and(|s| s.starts_with("mailto:") || s.starts_with("https:")),
        "sub is a contact"
    );
    let key = B64.decode(k).unwrap();
    let signed = format!("{}.{}", parts[0], parts[1]);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key)
        .verify(signed.as_bytes(), &B64.decode(parts[2]).unwrap())
        .expect("the VAPID token verifies with the server's key");
}
