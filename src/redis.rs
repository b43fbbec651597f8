//! The Redis pub/sub link of cluster mode: one channel, two connections, two
//! background threads, and the loop reached only through a channel and its
//! `Waker`.
//!
//! Redis is the cluster's bus, not its storage: a frame published here is a
//! hint that arrives fast, and anything missed while the link is down is read
//! back from the shared database by sequence number. So the link never
//! queues through an outage; it reports `Down`, drops what it holds, and
//! reports `Up` when it can carry traffic again, for the hub to resynchronise.
//!
//! - The subscriber thread owns the `SUBSCRIBE` connection and hands each
//!   pushed payload to the loop as [`LinkEvent::Message`], in Redis's order.
//! - The publisher thread owns a second connection (a subscribed connection
//!   may not `PUBLISH`) and pipelines everything queued in one write.
//!
//! The RESP client is written here over `std::net::TcpStream` (with rustls
//! over it for `rediss://`) rather than taken from the `redis` crate: the
//! subset needed (AUTH, PING, SUBSCRIBE, PUBLISH and the four reply types)
//! is a few hundred lines with every bound of its own (bulk and line
//! lengths, nesting), and what the rest of this file is (two threads,
//! up/down, bounded queues, a socket `shutdown` can close under a blocked
//! read) would stay around the crate anyway. The crate's synchronous API
//! with rustls was measured: 32 more crates (`url` and its ICU tables,
//! `combine`), no runtime; README "Why the Redis link is hand-written".
//! The parser is pure and tested beside the code.
//!
//! The module is `pub` only so `tests/redis_link.rs` can drive a link over a
//! real `redis-server`; it is not part of the server's API.

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Bytes of outbound payloads queued and not yet confirmed by Redis before
/// `publish` refuses more: a stalled Redis must cost bounded memory, and
/// refusing is safe because the other nodes recover from storage.
pub const OUT_BOUND: usize = 64 << 20;
/// Bytes of inbound payloads handed to the loop and not yet taken: past this
/// the loop is behind, and dropping the subscription (then resynchronising
/// from storage) is cheaper than buffering without end.
pub const IN_BOUND: usize = 64 << 20;
/// What each queued entry is charged on top of its payload (its `Vec`, its
/// RESP framing), so a flood of empty payloads is bounded too.
const ENTRY_COST: usize = 64;
/// First pause before reconnecting: short, so a Redis restart costs little.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest pause between attempts: a Redis that is down for long is probed
/// twice a second per thread, no more.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A Redis that does not accept within this is treated as down; it also
/// bounds how long `shutdown` can wait for a thread in `connect`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a reply (AUTH, SUBSCRIBE, PUBLISH's integers) may take before
/// the connection is given up as stalled.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Write timeout on both sockets: a peer that stops reading must not hold
/// a thread (and `shutdown`) forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an idle thread wakes to check the stop flag, and the publisher
/// to check its idle socket for a close.
const POLL: Duration = Duration::from_millis(200);
/// A subscriber that has heard nothing for this long sends PING; if that
/// stays unanswered as long again, the connection is dead. Without it a
/// silently lost peer would look like a quiet channel forever.
const KEEPALIVE: Duration = Duration::from_secs(5);
/// Commands written per pipelined write at most (bytes), so a large backlog
/// is not copied into one buffer whole and replies start coming back.
const BATCH_BYTES: usize = 1 << 20;
/// Size of each read from either socket.
const READ_CHUNK: usize = 64 << 10;

/// What the link tells the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// Both connections are established and the subscription is confirmed.
    Up,
    /// A connection failed; nothing is carried until the next `Up`.
    Down,
    /// A payload another link published on the channel (or this one did:
    /// Redis echoes to every subscriber).
    Message(Vec<u8>),
}

/// A pub/sub link for one channel. Created and used by the loop thread; the
/// threads behind it are stopped by [`RedisLink::shutdown`] or on drop.
pub struct RedisLink {
    shared: Arc<Shared>,
    events: mpsc::Receiver<LinkEvent>,
    /// `None` after shutdown, which is how the publisher's wait ends.
    out: Option<mpsc::Sender<Vec<u8>>>,
    threads: Vec<JoinHandle<()>>,
}

impl RedisLink {
    /// Parses `redis://[user:password@]host[:port][/db]` (also
    /// `redis://:password@host`), spawns the threads, returns at once (threads
    /// connect in the background). Err only for a malformed URL.
    ///
    /// `rediss://` speaks TLS with `tls` (the `--redis-ca` roots), or
    /// with the system's roots when `tls` is `None`.
    pub fn start(
        url: &str,
        channel: &str,
        tls: Option<Arc<ClientConfig>>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<RedisLink, String> {
        let target = parse_url(url)?;
        let tls = match (target.tls, tls) {
            (false, _) => None,
            (true, Some(c)) => Some(c),
            (true, None) => Some(crate::tls::client_config(None)?),
        };
        let (ev_tx, ev_rx) = mpsc::channel();
        let (out_tx, out_rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            label: target.label(),
            target,
            tls,
            channel: channel.as_bytes().to_vec(),
            stop: AtomicBool::new(false),
            up: AtomicBool::new(false),
            out_bytes: AtomicUsize::new(0),
            in_bytes: AtomicUsize::new(0),
            state: Mutex::new(State {
                ok: [false; 2],
                reported_up: false,
                ever_up: false,
                outage_logged: false,
                events: ev_tx,
            }),
            sockets: Mutex::new([None, None]),
            wake,
        });
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| format!("cannot spawn {name}: {e}"))
        };
        let sub = {
            let shared = shared.clone();
            spawn("redis-sub", Box::new(move || subscriber(&shared)))?
        };
        let publ = {
            let shared = shared.clone();
            spawn("redis-pub", Box::new(move || publisher(&shared, &out_rx)))?
        };
        Ok(RedisLink {
            shared,
            events: ev_rx,
            out: Some(out_tx),
            threads: vec![sub, publ],
        })
    }

    /// Queues one PUBLISH of `payload` (binary-safe). Never blocks. Returns
    /// false when the payload was dropped (link down, or the outbound queue is
    /// over its byte bound).
    pub fn publish(&self, payload: Vec<u8>) -> bool {
        let Some(out) = &self.out else { return false };
        if !self.is_up() {
            return false;
        }
        let cost = payload.len() + ENTRY_COST;
        let before = self.shared.out_bytes.fetch_add(cost, Ordering::AcqRel);
        if before + cost > OUT_BOUND || out.send(payload).is_err() {
            self.shared.out_bytes.fetch_sub(cost, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Next event for the reactor, if any. Order: events from the subscriber
    /// in the order Redis delivered them.
    pub fn try_recv(&self) -> Option<LinkEvent> {
        let ev = self.events.try_recv().ok()?;
        if let LinkEvent::Message(p) = &ev {
            self.shared
                .in_bytes
                .fetch_sub(p.len() + ENTRY_COST, Ordering::AcqRel);
        }
        Some(ev)
    }

    /// Both connections are established and the subscription is confirmed.
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::Acquire)
    }

    /// Stops both threads (closes sockets) and joins them; also on Drop.
    pub fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.out = None;
        for s in self.shared.sockets.lock().unwrap().iter().flatten() {
            let _ = s.shutdown(Shutdown::Both);
        }
        for t in &self.threads {
            t.thread().unpark();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.shared.up.store(false, Ordering::Release);
    }
}

impl Drop for RedisLink {
    fn drop(&mut self) {
        self.shutdown();
    }
}

// ---------------------------------------------------------------------------
// State shared by the handle and the two threads

#[derive(Clone, Copy)]
enum Side {
    Subscriber = 0,
    Publisher = 1,
}

struct Shared {
    target: Target,
    /// TLS for `rediss://`.
    tls: Option<Arc<ClientConfig>>,
    /// `host:port/db`, for the log lines.
    label: String,
    channel: Vec<u8>,
    stop: AtomicBool,
    /// Mirror of `State::reported_up`, read without the lock by `publish`.
    up: AtomicBool,
    out_bytes: AtomicUsize,
    in_bytes: AtomicUsize,
    state: Mutex<State>,
    /// Clones of the live sockets, so `shutdown` can unblock a thread that
    /// is in the middle of a read or write.
    sockets: Mutex<[Option<TcpStream>; 2]>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

/// Up/down bookkeeping. Events are sent with this lock held so `Up`, `Down`
/// and messages reach the loop in one consistent order, whichever thread
/// saw the change.
struct State {
    ok: [bool; 2],
    reported_up: bool,
    ever_up: bool,
    /// The current outage has been logged: one warning per outage, not one
    /// per retry.
    outage_logged: bool,
    events: mpsc::Sender<LinkEvent>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// One side is connected (`why` is None) or failed (why). Emits `Up` or
    /// `Down` when the pair's state changes, and logs.
    fn set(&self, side: Side, why: Option<&str>) {
        let mut st = self.state.lock().unwrap();
        st.ok[side as usize] = why.is_none();
        if let Some(why) = why
            && !st.outage_logged
        {
            st.outage_logged = true;
            if st.ever_up {
                log::warn!("redis: connection lost ({why}); reconnecting");
            } else {
                log::warn!("redis: cannot connect to {} ({why}); retrying", self.label);
            }
        }
        let up = st.ok == [true, true];
        if up == st.reported_up {
            return;
        }
        st.reported_up = up;
        self.up.store(up, Ordering::Release);
        if up {
            if st.ever_up {
                log::info!("redis: reconnected to {}", self.label);
            } else {
                log::info!(
                    "redis: connected to {}, subscribed to {}",
                    self.label,
                    String::from_utf8_lossy(&self.channel)
                );
            }
            st.ever_up = true;
            st.outage_logged = false;
        }
        let _ = st
            .events
            .send(if up { LinkEvent::Up } else { LinkEvent::Down });
        drop(st);
        (self.wake)();
    }

    /// Hands payloads to the loop while the link is up (while it is down
    /// they are dropped: the `Up` that follows makes the hub read storage,
    /// which has them). Err when the loop is too far behind.
    fn deliver(&self, payloads: Vec<Vec<u8>>) -> Result<(), String> {
        let st = self.state.lock().unwrap();
        let mut sent = false;
        let mut result = Ok(());
        for p in payloads {
            if !st.reported_up {
                break;
            }
            let cost = p.len() + ENTRY_COST;
            if self.in_bytes.load(Ordering::Acquire) + cost > IN_BOUND {
                result = Err(format!(
                    "over {} MiB of messages not yet taken by the loop; dropping the subscription to resynchronise",
                    IN_BOUND >> 20
                ));
                break;
            }
            self.in_bytes.fetch_add(cost, Ordering::AcqRel);
            let _ = st.events.send(LinkEvent::Message(p));
            sent = true;
        }
        drop(st);
        if sent {
            (self.wake)();
        }
        result
    }

    /// Sleeps up to `d`, returning early on shutdown (which unparks).
    fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.stopping() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            thread::park_timeout(left);
        }
    }
}

// ---------------------------------------------------------------------------
// The two threads

fn subscriber(shared: &Shared) {
    let mut backoff = BACKOFF_MIN;
    while !shared.stopping() {
        let Err(why) = subscriber_session(shared, &mut backoff) else {
            return;
        };
        // `shutdown` closing the socket is not an outage.
        if shared.stopping() {
            return;
        }
        shared.set(Side::Subscriber, Some(&why));
        shared.pause(backoff);
        backoff = (backoff * 2).min(BACKOFF_MAX);
        // After an overflow, resubscribing before the loop has caught up
        // would only overflow again.
        while shared.in_bytes.load(Ordering::Acquire) > IN_BOUND / 2 && !shared.stopping() {
            shared.pause(BACKOFF_MIN);
        }
    }
}

/// One connection's life: Ok on shutdown, Err(why) when it failed.
fn subscriber_session(shared: &Shared, backoff: &mut Duration) -> Result<(), String> {
    let mut conn = Conn::open(shared, Side::Subscriber)?;
    conn.send(&command(&[b"SUBSCRIBE", &shared.channel]))?;
    match conn.reply()? {
        Value::Array(Some(v)) if v.first() == Some(&Value::Bulk(Some(b"subscribe".to_vec()))) => {}
        Value::Error(e) => return Err(format!("SUBSCRIBE: {}", String::from_utf8_lossy(&e))),
        other => return Err(format!("unexpected reply to SUBSCRIBE: {other:?}")),
    }
    conn.stream
        .tcp()
        .set_read_timeout(Some(POLL))
        .map_err(|e| e.to_string())?;
    *backoff = BACKOFF_MIN;
    shared.set(Side::Subscriber, None);
    let mut heard = Instant::now();
    let mut pinged: Option<Instant> = None;
    while !shared.stopping() {
        match conn.fill() {
            Ok(0) => return Err("server closed the connection".into()),
            Ok(_) => {
                heard = Instant::now();
                pinged = None;
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(e.to_string()),
        }
        let mut payloads = Vec::new();
        while let Some(v) = conn.next()? {
            if let Some(p) = message_payload(v, &shared.channel) {
                payloads.push(p);
            }
        }
        if !payloads.is_empty() {
            shared.deliver(payloads)?;
        }
        match pinged {
            Some(at) if at.elapsed() > KEEPALIVE => {
                return Err(format!("no answer to PING within {KEEPALIVE:?}"));
            }
            None if heard.elapsed() > KEEPALIVE => {
                conn.send(&command(&[b"PING"]))?;
                pinged = Some(Instant::now());
            }
            _ => {}
        }
    }
    Ok(())
}

/// The payload of a pushed `message` for `channel`; anything else (PING's
/// `pong`, other pushes) is not for the loop.
fn message_payload(v: Value, channel: &[u8]) -> Option<Vec<u8>> {
    let Value::Array(Some(items)) = v else {
        return None;
    };
    let [kind, chan, payload]: [Value; 3] = items.try_into().ok()?;
    match (kind, chan, payload) {
        (Value::Bulk(Some(k)), Value::Bulk(Some(c)), Value::Bulk(Some(p)))
            if k == b"message" && c == channel =>
        {
            Some(p)
        }
        _ => None,
    }
}

fn publisher(shared: &Shared, queue: &mpsc::Receiver<Vec<u8>>) {
    let mut backoff = BACKOFF_MIN;
    while !shared.stopping() {
        let Err(why) = publisher_session(shared, queue, &mut backoff) else {
            return;
        };
        // `shutdown` closing the socket is not an outage.
        if shared.stopping() {
            return;
        }
        shared.set(Side::Publisher, Some(&why));
        discard_queued(shared, queue);
        shared.pause(backoff);
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection's life: Ok on shutdown, Err(why) when it failed.
fn publisher_session(
    shared: &Shared,
    queue: &mpsc::Receiver<Vec<u8>>,
    backoff: &mut Duration,
) -> Result<(), String> {
    let mut conn = Conn::open(shared, Side::Publisher)?;
    // A round trip before calling the connection good: it proves the peer
    // speaks RESP and accepted the credentials.
    conn.send(&command(&[b"PING"]))?;
    match conn.reply()? {
        Value::Simple(s) if s == b"PONG" => {}
        other => return Err(format!("unexpected reply to PING: {other:?}")),
    }
    // Whatever slipped in while the link was down is stale: the others
    // resynchronise from storage on `Up`.
    discard_queued(shared, queue);
    *backoff = BACKOFF_MIN;
    shared.set(Side::Publisher, None);
    loop {
        let first = match queue.recv_timeout(POLL) {
            Ok(p) => p,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if shared.stopping() {
                    return Ok(());
                }
                conn.probe()?;
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        };
        let mut wire = Vec::new();
        let mut count = 0;
        let mut charged = 0;
        let mut next = Some(first);
        while let Some(p) = next.take() {
            charged += p.len() + ENTRY_COST;
            encode_command(&mut wire, &[b"PUBLISH", &shared.channel, &p]);
            count += 1;
            if wire.len() < BATCH_BYTES {
                next = queue.try_recv().ok();
            }
        }
        let result = conn.send(&wire).and_then(|()| {
            for _ in 0..count {
                match conn.reply()? {
                    Value::Integer(_) => {}
                    Value::Error(e) => {
                        return Err(format!("PUBLISH: {}", String::from_utf8_lossy(&e)));
                    }
                    other => return Err(format!("unexpected reply to PUBLISH: {other:?}")),
                }
            }
            Ok(())
        });
        shared.out_bytes.fetch_sub(charged, Ordering::AcqRel);
        result?;
    }
}

/// Drops every queued payload and its charge.
fn discard_queued(shared: &Shared, queue: &mpsc::Receiver<Vec<u8>>) {
    for p in queue.try_iter() {
        shared
            .out_bytes
            .fetch_sub(p.len() + ENTRY_COST, Ordering::AcqRel);
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

// ---------------------------------------------------------------------------
// One connection

/// The bytes to Redis: plain, or TLS (`rediss://`).
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(bytes),
            Stream::Tls(t) => t.write_all(bytes).and_then(|()| t.flush()),
        }
    }
}

/// A connected, authenticated socket with its read buffer. Registered in
/// `Shared::sockets` while it lives.
struct Conn<'a> {
    shared: &'a Shared,
    side: Side,
    stream: Stream,
    buf: Vec<u8>,
    /// Bytes of `buf` already parsed.
    start: usize,
}

impl<'a> Conn<'a> {
    fn open(shared: &'a Shared, side: Side) -> Result<Conn<'a>, String> {
        let t = &shared.target;
        let addrs = (t.host.as_str(), t.port)
            .to_socket_addrs()
            .map_err(|e| format!("resolving {}: {e}", t.host))?;
        let mut last = format!("{} resolves to no address", t.host);
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        let stream = stream.ok_or(last)?;
        let setup = |s: &TcpStream| -> io::Result<TcpStream> {
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(REPLY_TIMEOUT))?;
            s.set_write_timeout(Some(WRITE_TIMEOUT))?;
            s.try_clone()
        };
        let clone = setup(&stream).map_err(|e| e.to_string())?;
        shared.sockets.lock().unwrap()[side as usize] = Some(clone);
        let stream = match &shared.tls {
            None => Stream::Plain(stream),
            Some(config) => {
                let name = ServerName::try_from(t.host.clone())
                    .map_err(|e| format!("{}: not a TLS server name: {e}", t.host))?;
                let session =
                    ClientConnection::new(config.clone(), name).map_err(|e| format!("TLS: {e}"))?;
                let mut tls = StreamOwned::new(session, stream);
                // The handshake now, so a bad certificate is named as such.
                while tls.conn.is_handshaking() {
                    tls.conn
                        .complete_io(&mut tls.sock)
                        .map_err(|e| format!("TLS handshake: {e}"))?;
                }
                Stream::Tls(Box::new(tls))
            }
        };
        let mut conn = Conn {
            shared,
            side,
            stream,
            buf: Vec::new(),
            start: 0,
        };
        // Registered before this check, so `shutdown` either sees the
        // socket or is seen here.
        if shared.stopping() {
            return Err("shutting down".into());
        }
        if let Some(password) = &t.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &t.user {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            conn.send(&command(&args))?;
            match conn.reply()? {
                Value::Simple(s) if s == b"OK" => {}
                Value::Error(e) => return Err(format!("AUTH: {}", String::from_utf8_lossy(&e))),
                other => return Err(format!("unexpected reply to AUTH: {other:?}")),
            }
        }
        Ok(conn)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream.write_all(bytes).map_err(|e| e.to_string())
    }

    /// One read into the buffer (Ok(0) at end of stream).
    fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + READ_CHUNK, 0);
        let r = self.stream.read(&mut self.buf[len..]);
        self.buf.truncate(len + *r.as_ref().unwrap_or(&0));
        r
    }

    /// The next complete value already buffered.
    fn next(&mut self) -> Result<Option<Value>, String> {
        match parse(&self.buf[self.start..]) {
            Ok(Some((v, used))) => {
                self.start += used;
                Ok(Some(v))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(format!("protocol error: {e}")),
        }
    }

    /// The next value, reading as needed (within the read timeout).
    fn reply(&mut self) -> Result<Value, String> {
        loop {
            if let Some(v) = self.next()? {
                return Ok(v);
            }
            match self.fill() {
                Ok(0) => return Err("server closed the connection".into()),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {
                    return Err(format!("no reply within {REPLY_TIMEOUT:?}"));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Notices a close on an idle connection without waiting for the next
    /// write to fail, so `Down` comes when Redis goes, not at the next
    /// message.
    fn probe(&mut self) -> Result<(), String> {
        self.stream
            .tcp()
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        let r = match &mut self.stream {
            Stream::Plain(s) => s.peek(&mut [0u8; 1]),
            // A TLS peer may send records that carry no data (session
            // tickets): read through rustls, which consumes those.
            Stream::Tls(t) => t.read(&mut [0u8; 1]),
        };
        self.stream
            .tcp()
            .set_nonblocking(false)
            .map_err(|e| e.to_string())?;
        match r {
            Ok(0) => Err("server closed the connection".into()),
            Ok(_) => Err("unexpected bytes from the server".into()),
            Err(e) if is_timeout(&e) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        self.shared.sockets.lock().unwrap()[self.side as usize] = None;
    }
}

// ---------------------------------------------------------------------------
// RESP2: values, the incremental parser, command encoding

/// Longest bulk string accepted: Redis's own default `proto-max-bulk-len`.
const MAX_BULK: i64 = 512 << 20;
/// Most elements in one array: pushes have three; this only stops a broken
/// peer from making us allocate for a huge count.
const MAX_ARRAY: i64 = 1 << 20;
/// Deepest nesting accepted, so a hostile peer cannot exhaust the stack.
const MAX_DEPTH: usize = 16;
/// Longest header or simple line: without a bound, a peer that never sends
/// CRLF would grow the buffer forever.
const MAX_LINE: usize = 64 << 10;

/// One RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Integer(i64),
    /// `None` is the null bulk string (`$-1`).
    Bulk(Option<Vec<u8>>),
    /// `None` is the null array (`*-1`).
    Array(Option<Vec<Value>>),
}

/// Parses one value from the start of `buf`: `Ok(Some((value, bytes used)))`,
/// `Ok(None)` when `buf` holds only part of it (not an error: read more),
/// `Err` when the bytes are not RESP.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, String> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Value, usize)>, String> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((line, next)) = line(buf, at + 1)? else {
        return Ok(None);
    };
    Ok(Some(match kind {
        b'+' => (Value::Simple(line.to_vec()), next),
        b'-' => (Value::Error(line.to_vec()), next),
        b':' => (Value::Integer(integer(line)?), next),
        b'$' => match integer(line)? {
            -1 => (Value::Bulk(None), next),
            n if (0..=MAX_BULK).contains(&n) => {
                let end = next + n as usize;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err("bulk string not followed by CRLF".into());
                }
                (Value::Bulk(Some(buf[next..end].to_vec())), end + 2)
            }
            n => return Err(format!("bad bulk length {n}")),
        },
        b'*' => match integer(line)? {
            -1 => (Value::Array(None), next),
            n if (0..=MAX_ARRAY).contains(&n) => {
                if depth >= MAX_DEPTH {
                    return Err("arrays nested too deep".into());
                }
                let mut items = Vec::with_capacity((n as usize).min(16));
                let mut pos = next;
                for _ in 0..n {
                    let Some((v, p)) = parse_at(buf, pos, depth + 1)? else {
                        return Ok(None);
                    };
                    items.push(v);
                    pos = p;
                }
                (Value::Array(Some(items)), pos)
            }
            n => return Err(format!("bad array length {n}")),
        },
        other => return Err(format!("unknown type byte {other:#04x}")),
    }))
}

/// The line starting at `at` (without its CRLF) and where the next starts.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, String> {
    let rest = &buf[at.min(buf.len())..];
    match rest.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && rest[i - 1] == b'\r' && i <= MAX_LINE => {
            Ok(Some((&rest[..i - 1], at + i + 1)))
        }
        Some(_) => Err("line not ended by CRLF, or too long".into()),
        None if rest.len() > MAX_LINE => Err("line too long".into()),
        None => Ok(None),
    }
}

fn integer(line: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad integer {:?}", String::from_utf8_lossy(line)))
}

/// Appends a command as a RESP array of bulk strings (binary-safe).
pub(crate) fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_command(&mut out, args);
    out
}

// ---------------------------------------------------------------------------
// The URL

/// Where a link connects and how it authenticates.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
    /// Parsed and checked, never sent: pub/sub channels are server-wide,
    /// whatever database a connection has selected.
    db: u32,
    /// `rediss://`: TLS, verifying the server's certificate for `host`.
    tls: bool,
}

impl Target {
    fn label(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}/{}", self.host, self.port, self.db)
        } else {
            format!("{}:{}/{}", self.host, self.port, self.db)
        }
    }
}

/// Parses `redis://[user:password@]host[:port][/db]` (`rediss://` for
/// TLS); `redis://:password@host` authenticates with the password alone
/// (the `default` user). User and password may be percent-encoded.
pub(crate) fn parse_url(url: &str) -> Result<Target, String> {
    let bad = |why: &str| format!("bad Redis URL {url:?}: {why}");
    let (tls, rest) = match (url.strip_prefix("redis://"), url.strip_prefix("rediss://")) {
        (Some(rest), _) => (false, rest),
        (None, Some(rest)) => (true, rest),
        (None, None) => return Err(bad("expected redis:// or rediss://")),
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (user, pass) = u
                .split_once(':')
                .ok_or_else(|| bad("credentials must be user:password or :password"))?;
            let user = percent_decode(user).ok_or_else(|| bad("bad %-escape in user"))?;
            let pass = percent_decode(pass).ok_or_else(|| bad("bad %-escape in password"))?;
            (
                Some(user).filter(|u| !u.is_empty()),
                Some(pass).filter(|p| !p.is_empty()),
            )
        }
    };
    if user.is_some() && password.is_none() {
        return Err(bad("a user needs a password"));
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        match after {
            "" => (h, None),
            p => (
                h,
                Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
            ),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        None => 6379,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| bad("bad port"))?,
    };
    let db = match path {
        "" => 0,
        p => p
            .parse()
            .map_err(|_| bad("the path must be a database number"))?,
    };
    Ok(Target {
        host: host.to_string(),
        port,
        user,
        password,
        db,
        tls,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(b: &[u8]) -> Value {
        Value::Bulk(Some(b.to_vec()))
    }

    /// Whole values of every type parse, and report the bytes they used.
    #[test]
    fn parses_each_type() {
        let cases: Vec<(&[u8], Value)> = vec![
            (b"+OK\r\n", Value::Simple(b"OK".to_vec())),
            (b"-ERR no\r\n", Value::Error(b"ERR no".to_vec())),
            (b":42\r\n", Value::Integer(42)),
            (b":-7\r\n", Value::Integer(-7)),
            (b"$5\r\nhello\r\n", bulk(b"hello")),
            (b"$0\r\n\r\n", bulk(b"")),
            (b"$-1\r\n", Value::Bulk(None)),
            (b"*-1\r\n", Value::Array(None)),
            (b"*0\r\n", Value::Array(Some(vec![]))),
            (
                b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nabc\r\n",
                Value::Array(Some(vec![bulk(b"message"), bulk(b"ch"), bulk(b"abc")])),
            ),
            (
                b"*2\r\n*2\r\n:1\r\n+x\r\n$-1\r\n",
                Value::Array(Some(vec![
                    Value::Array(Some(vec![Value::Integer(1), Value::Simple(b"x".to_vec())])),
                    Value::Bulk(None),
                ])),
            ),
        ];
        for (wire, want) in cases {
            let mut buf = wire.to_vec();
            buf.extend_from_slice(b"+next\r\n");
            assert_eq!(
                parse(&buf),
                Ok(Some((want, wire.len()))),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    /// Every proper prefix of a value is "incomplete", never an error and
    /// never a wrong value, including binary payloads holding CRLF; the
    /// value parses whole at the end, so a read may split anywhere.
    #[test]
    fn partial_input_at_every_split_is_incomplete() {
        let mut payload: Vec<u8> = (0..=255u8).collect();
        payload.extend_from_slice(b"\r\n$3\r\n*1\r\n\r\n");
        let mut wire = Vec::new();
        encode_command(&mut wire, &[b"message", b"chan", &payload]);
        let want = Value::Array(Some(vec![bulk(b"message"), bulk(b"chan"), bulk(&payload)]));
        for cut in 0..wire.len() {
            assert_eq!(parse(&wire[..cut]), Ok(None), "prefix of {cut} bytes");
        }
        assert_eq!(parse(&wire), Ok(Some((want, wire.len()))));
        for wire in [
            &b"$-1\r\n"[..],
            b":123\r\n",
            b"-ERR x\r\n",
            b"*2\r\n$-1\r\n*0\r\n",
        ] {
            for cut in 0..wire.len() {
                assert_eq!(parse(&wire[..cut]), Ok(None), "{wire:?} cut at {cut}");
            }
            assert!(matches!(parse(wire), Ok(Some((_, n))) if n == wire.len()));
        }
    }

    /// A stream of values fed in two pieces split at every byte yields the
    /// same values as fed whole (how `Conn` uses the parser).
    #[test]
    fn a_stream_split_anywhere_yields_the_same_values() {
        let mut wire = Vec::new();
        let payloads: Vec<Vec<u8>> = vec![b"a\r\nb".to_vec(), vec![], vec![b'\r'; 9], vec![0; 300]];
        for p in &payloads {
            encode_command(&mut wire, &[b"message", b"c", p]);
        }
        wire.extend_from_slice(b":1\r\n");
        let drain = |buf: &mut Vec<u8>, out: &mut Vec<Value>| {
            while let Some((v, n)) = parse(buf).unwrap() {
                out.push(v);
                buf.drain(..n);
            }
        };
        let mut whole = Vec::new();
        drain(&mut wire.clone(), &mut whole);
        assert_eq!(whole.len(), payloads.len() + 1);
        for cut in 0..=wire.len() {
            let (mut buf, mut got) = (wire[..cut].to_vec(), Vec::new());
            drain(&mut buf, &mut got);
            buf.extend_from_slice(&wire[cut..]);
            drain(&mut buf, &mut got);
            assert!(buf.is_empty(), "cut {cut}: leftover {buf:?}");
            assert_eq!(got, whole, "cut at {cut}");
        }
        let got: Vec<_> = whole
            .into_iter()
            .filter_map(|v| message_payload(v, b"c"))
            .collect();
        assert_eq!(got, payloads);
    }

    /// Bytes that are not RESP are an error, not "incomplete": the
    /// connection is dropped rather than waiting forever.
    #[test]
    fn malformed_input_is_an_error() {
        for wire in [
            &b"?x\r\n"[..],
            b":12a\r\n",
            b"$-2\r\n",
            b"$3\r\nabcd\r\n",
            b"*-5\r\n",
            b"+OK\n",
            b"$999999999999\r\n",
        ] {
            assert!(parse(wire).is_err(), "{:?}", String::from_utf8_lossy(wire));
        }
        assert!(parse(&vec![b'+'; MAX_LINE + 2]).is_err(), "endless line");
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert!(parse(&deep).is_err(), "nesting bound");
    }

    /// Only `message` pushes for our channel reach the loop; `pong` replies
    /// and other channels do not.
    #[test]
    fn only_messages_for_the_channel_are_payloads() {
        let push =
            |k: &[u8], c: &[u8], p: &[u8]| Value::Array(Some(vec![bulk(k), bulk(c), bulk(p)]));
        assert_eq!(
            message_payload(push(b"message", b"c", b"x"), b"c"),
            Some(b"x".to_vec())
        );
        assert_eq!(message_payload(push(b"message", b"d", b"x"), b"c"), None);
        assert_eq!(message_payload(push(b"subscribe", b"c", b"x"), b"c"), None);
        let pong = Value::Array(Some(vec![bulk(b"pong"), bulk(b"")]));
        assert_eq!(message_payload(pong, b"c"), None);
        assert_eq!(message_payload(Value::Integer(1), b"c"), None);
    }

    /// Commands are arrays of bulk strings, binary-safe.
    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"PUBLISH", b"ch", b"a\r\nb"]);
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$4\r\na\r\nb\r\n");
        assert_eq!(command(&[b"PING"]), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(command(&[b""]), b"*1\r\n$0\r\n\r\n");
    }

    /// The URL forms the cluster configuration accepts, with their defaults.
    #[test]
    fn parses_urls() {
        let t = |host: &str, port, user: Option<&str>, password: Option<&str>, db| Target {
            host: host.into(),
            port,
            user: user.map(Into::into),
            password: password.map(Into::into),
            db,
            tls: false,
        };
        let cases = [
            ("redis://localhost", t("localhost", 6379, None, None, 0)),
            (
                "redis://127.0.0.1:6380",
                t("127.0.0.1", 6380, None, None, 0),
            ),
            ("redis://h:1/3", t("h", 1, None, None, 3)),
            ("redis://h/", t("h", 6379, None, None, 0)),
            ("redis://:s3cret@h", t("h", 6379, None, Some("s3cret"), 0)),
            (
                "redis://app:pw@h:7/2",
                t("h", 7, Some("app"), Some("pw"), 2),
            ),
            (
                "redis://u:p%40ss%3A@h",
                t("h", 6379, Some("u"), Some("p@ss:"), 0),
            ),
            ("redis://:a@b@h", t("h", 6379, None, Some("a@b"), 0)),
            ("redis://[::1]:6390/1", t("::1", 6390, None, None, 1)),
            ("redis://[::1]", t("::1", 6379, None, None, 0)),
        ];
        for (url, want) in cases {
            assert_eq!(parse_url(url), Ok(want), "{url}");
        }
        assert_eq!(t("::1", 1, None, None, 2).label(), "[::1]:1/2");
        let tls = parse_url("rediss://:pw@redis.example.com:6380").unwrap();
        assert!(tls.tls && tls.port == 6380 && tls.host == "redis.example.com");
    }

    /// Malformed URLs are refused at `start`, with the URL in the message.
    #[test]
    fn refuses_malformed_urls() {
        for url in [
            "localhost:6379",
            "redisss://h",
            "http://h",
            "redis://",
            "redis://:6379",
            "redis://h:0",
            "redis://h:99999",
            "redis://h:x",
            "redis://h/db",
            "redis://user@h",
            "redis://u:@h",
            "redis://:%zz@h",
            "redis://[::1",
            "redis://[::1]x",
        ] {
            let e = parse_url(url).expect_err(url);
            assert!(e.contains(url), "{e}");
        }
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(|| {});
        assert!(RedisLink::start("http://h", "c", None, wake).is_err());
    }

    /// A link to nothing is down: `publish` refuses and nothing is received,
    /// and shutdown returns promptly while the threads are retrying.
    #[test]
    fn a_link_to_nothing_is_down_and_shuts_down_promptly() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(|| {});
        let mut link =
            RedisLink::start(&format!("redis://127.0.0.1:{port}"), "c", None, wake).unwrap();
        thread::sleep(Duration::from_millis(300));
        assert!(!link.is_up());
        assert!(!link.publish(b"x".to_vec()));
        assert_eq!(link.try_recv(), None);
        let t = Instant::now();
        link.shutdown();
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }
}
