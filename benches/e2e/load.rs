//! The load generator: one mio loop that owns every client socket.
//!
//! Cheap by design, so the server is what gets measured:
//! - one 256 KiB read buffer for all sockets; every complete frame in a read
//!   is handled before the next read, and a short read ends the socket's turn
//!   (TCP re-arms the edge when more arrives);
//! - no JSON parsing: a frame is classified by its first bytes
//!   (`{"type":"message"`, `{"type":"ack"`, …), and the send time is found by a
//!   byte scan for `"content":"T` followed by 16 digits (ns since the run began);
//! - client frames are masked with the all-zero key (legal per RFC 6455 and a
//!   no-op XOR), built into a per-socket buffer and written in one call;
//! - with [`Load::tls`], each socket has a rustls client session over it
//!   (ring, as the server): the same frames, encrypted and decrypted here.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std::os::fd::FromRawFd;

use std::sync::Arc;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use super::hist::Hist;
use super::sys::CpuMark;

/// Sockets per source address (ephemeral ports are per address).
const PER_SOURCE_IP: usize = 4000;
/// Source addresses handed out over the whole run, so a later scenario never
/// competes with an earlier one's TIME_WAIT ports.
static SOURCES: AtomicUsize = AtomicUsize::new(0);

fn next_source() -> Ipv4Addr {
    let i = SOURCES.fetch_add(1, Ordering::Relaxed) / PER_SOURCE_IP;
    Ipv4Addr::new(127, 0, (i / 250) as u8, (i % 250 + 2) as u8)
}

fn sockaddr(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = port.to_be();
    sa.sin_addr = libc::in_addr {
        s_addr: u32::from_ne_bytes(ip.octets()),
    };
    sa
}

/// A non-blocking connect from `src` (bound before connecting, so the
/// ephemeral ports of each 127.0.0.x source are separate), TCP_NODELAY on.
fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> io::Result<TcpStream> {
    let SocketAddr::V4(dst) = dst else {
        return Err(io::Error::other("IPv4 only"));
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor we own; it is closed on
    // every error path or handed to TcpStream, which closes it on drop.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        let p = &one as *const libc::c_int as *const libc::c_void;
        let sz = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, p, sz);
        // The port is chosen at connect time, per destination.
        libc::setsockopt(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, p, sz);
        let src = sockaddr(src, 0);
        if libc::bind(
            fd,
            &src as *const libc::sockaddr_in as *const libc::sockaddr,
            len,
        ) != 0
        {
            let e = io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        let dst = sockaddr(*dst.ip(), dst.port());
        if libc::connect(
            fd,
            &dst as *const libc::sockaddr_in as *const libc::sockaddr,
            len,
        ) != 0
        {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                libc::close(fd);
                return Err(e);
            }
        }
        Ok(TcpStream::from_raw_fd(fd))
    }
}

/// Source addresses used so far (for the report).
pub fn sources_used() -> usize {
    SOURCES.load(Ordering::Relaxed).div_ceil(PER_SOURCE_IP)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    Connecting,
    Handshake,
    Open,
    Closed,
}

struct C {
    sock: TcpStream,
    /// The TLS session over `sock` (with [`Load::tls`]).
    tls: Option<Box<ClientConnection>>,
    st: St,
    carry: Vec<u8>,
    out: Vec<u8>,
    room: u32,
    echo: bool,
    /// Index of its server in `Load::nodes`.
    node: usize,
    /// Message frames received.
    msgs: u64,
    /// Id of the last message frame (with `Load::track_ids`).
    last_id: u64,
}

/// What one socket should open: `path` with its query (token), the room
/// index it will be in (`u32::MAX` for none), and the server to open it on
/// (`None`: the address given to [`Load::new`]; a cluster scenario names
/// each node's).
pub struct Target {
    pub path: String,
    pub room: u32,
    pub addr: Option<SocketAddr>,
}

#[derive(Default, Clone)]
pub struct Counts {
    pub messages: u64,
    pub acks: u64,
    pub unread: u64,
    pub other: u64,
    pub echoes: u64,
    pub closed: u64,
    pub upgraded: u64,
    pub failed: u64,
}

pub struct Load {
    poll: Poll,
    events: Events,
    conns: Vec<C>,
    buf: Vec<u8>,
    addr: SocketAddr,
    base: Instant,
    pub c: Counts,
    /// Message frames received per room.
    pub per_room: Vec<u64>,
    /// Acks received per room (by the senders).
    pub acks_room: Vec<u64>,
    /// Send-to-receive latency of every message frame (when enabled).
    pub lat: Hist,
    pub record_latency: bool,
    /// Round-trip latency of echo probes.
    pub echo: Hist,
    in_flight: usize,
    /// Server addresses connected to: the one given to `new` first, then
    /// every other a [`Target`] named, in order of first use.
    pub nodes: Vec<SocketAddr>,
    /// Message frames received per server (index into `nodes`).
    pub per_node: Vec<u64>,
    /// With `record_latency`, latency again per receiving server.
    pub lat_node: Vec<Hist>,
    /// Check every connection's message ids increase (no duplicate, none
    /// out of order); counts violations in `id_errors`. Off by default: a
    /// byte scan per frame the single-node figures do not pay.
    pub track_ids: bool,
    /// Message frames whose id was not above the connection's previous one.
    pub id_errors: u64,
    /// Open every new connection over TLS with this client configuration.
    pub tls: Option<Arc<ClientConfig>>,
}

/// How the senders send.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// As fast as the window allows: per room, at most `window` messages not
    /// yet delivered to every member (or not yet acked, with `by_acks`).
    Flood { window: u64, by_acks: bool },
    /// Open loop: `per_sec` messages a second over all rooms, round robin.
    Paced { per_sec: f64 },
}

pub struct Plan {
    /// Per room: the connections that send (round robin) and the room name.
    pub senders: Vec<(Vec<usize>, String)>,
    /// Per room: deliveries one message makes (members − 1).
    pub fan: Vec<u64>,
    pub mode: Mode,
    pub warmup: Duration,
    pub measure: Duration,
    /// Echo probe: connection index and interval.
    pub probe: Option<(usize, Duration)>,
    /// At most this long to wait for the last deliveries after sending stops.
    pub drain: Duration,
    pub label: String,
    pub server_pid: u32,
}

type Measured = (f64, f64, f64, (f64, f64, f64, f64), f64);

pub struct Outcome {
    pub secs: f64,
    pub deliveries_per_s: f64,
    pub messages_per_s: f64,
    pub acks_per_s: f64,
    pub client_cpu: f64,
    pub server_cpu: f64,
    /// CPU used by everything else meanwhile (other processes, softirq threads).
    pub other_cpu: f64,
    /// irq + softirq time meanwhile (charged to no process).
    pub irq_cpu: f64,
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub acked: u64,
    /// Message frames received per server over the whole run (incl. drain).
    pub node_delivered: Vec<u64>,
    /// Message frames per second per server over the measured interval.
    pub node_deliveries_per_s: Vec<f64>,
}

impl Load {
    pub fn new(addr: SocketAddr, rooms: usize) -> Load {
        Load {
            poll: Poll::new().expect("poll"),
            events: Events::with_capacity(4096),
            conns: Vec::new(),
            buf: vec![0u8; 256 * 1024],
            addr,
            base: Instant::now(),
            c: Counts::default(),
            per_room: vec![0; rooms],
            acks_room: vec![0; rooms],
            lat: Hist::default(),
            record_latency: false,
            echo: Hist::default(),
            in_flight: 0,
            nodes: vec![addr],
            per_node: vec![0],
            lat_node: vec![Hist::default()],
            track_ids: false,
            id_errors: 0,
            tls: None,
        }
    }

    /// Index of `addr` in `nodes`, added if new.
    pub fn node_index(&mut self, addr: SocketAddr) -> usize {
        if let Some(i) = self.nodes.iter().position(|&a| a == addr) {
            return i;
        }
        self.nodes.push(addr);
        self.per_node.push(0);
        self.lat_node.push(Hist::default());
        self.nodes.len() - 1
    }

    /// Message frames connection `i` (in `open` order) has received.
    pub fn conn_messages(&self, i: usize) -> u64 {
        self.conns[i].msgs
    }

    /// Closes every connection at once, as a network failure would (the
    /// server sees each one reset or shut), and forgets them.
    pub fn drop_all(&mut self) {
        for mut c in self.conns.drain(..) {
            let _ = self.poll.registry().deregister(&mut c.sock);
        }
        self.in_flight = 0;
    }

    /// Every frame received so far, of any kind.
    pub fn frames_seen(&self) -> u64 {
        let c = &self.c;
        c.messages + c.acks + c.unread + c.other + c.echoes
    }

    pub fn open_conns(&self) -> usize {
        self.conns.iter().filter(|c| c.st == St::Open).count()
    }

    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Opens WebSocket connections, at most `window` handshakes at a time.
    /// Returns (upgraded, seconds from the first connect to the last 101).
    pub fn open(&mut self, targets: &[Target], window: usize, limit: Duration) -> (u64, f64) {
        let start = Instant::now();
        let before = self.c.upgraded;
        let mut next = 0;
        let mut last_report = Instant::now();
        while (next < targets.len() || self.in_flight > 0) && start.elapsed() < limit {
            while next < targets.len() && self.in_flight < window {
                let t = &targets[next];
                next += 1;
                if let Err(e) = self.connect(t) {
                    self.c.failed += 1;
                    if self.c.failed <= 3 {
                        eprintln!("    connect failed: {e}");
                    }
                }
            }
            self.turn(Some(Duration::from_millis(10)));
            if last_report.elapsed() >= Duration::from_secs(1) {
                last_report = Instant::now();
                eprintln!(
                    "    … {} of {} upgraded ({:.0}/s)",
                    self.c.upgraded - before,
                    targets.len(),
                    (self.c.upgraded - before) as f64 / start.elapsed().as_secs_f64()
                );
            }
        }
        (self.c.upgraded - before, start.elapsed().as_secs_f64())
    }

    fn connect(&mut self, t: &Target) -> io::Result<()> {
        let node = self.node_index(t.addr.unwrap_or(self.addr));
        let addr = self.nodes[node];
        let mut stream = connect_from(next_source(), addr)?;
        let token = Token(self.conns.len());
        self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let echo = t.path.starts_with("/ws/echo");
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            t.path, addr
        );
        let tls = match &self.tls {
            Some(config) => Some(Box::new(
                ClientConnection::new(config.clone(), ServerName::try_from("localhost").unwrap())
                    .map_err(io::Error::other)?,
            )),
            None => None,
        };
        self.conns.push(C {
            sock: stream,
            tls,
            st: St::Connecting,
            carry: Vec::new(),
            out: req.into_bytes(),
            room: t.room,
            echo,
            node,
            msgs: 0,
            last_id: 0,
        });
        self.in_flight += 1;
        Ok(())
    }

    /// Polls once and handles every event.
    fn turn(&mut self, timeout: Option<Duration>) {
        if let Err(e) = self.poll.poll(&mut self.events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                panic!("poll: {e}");
            }
            return;
        }
        let tokens: Vec<(usize, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                (
                    e.token().0,
                    e.is_readable() || e.is_read_closed() || e.is_error(),
                    e.is_writable(),
                )
            })
            .collect();
        for (i, readable, writable) in tokens {
            if writable {
                self.on_writable(i);
            }
            if readable {
                self.on_readable(i);
            }
        }
    }

    fn close(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.st == St::Closed {
            return;
        }
        if matches!(c.st, St::Connecting | St::Handshake) {
            self.in_flight -= 1;
            self.c.failed += 1;
        } else {
            self.c.closed += 1;
        }
        c.st = St::Closed;
        let _ = self.poll.registry().deregister(&mut c.sock);
    }

    fn on_writable(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.st == St::Connecting {
            match c.sock.peer_addr() {
                Ok(_) => c.st = St::Handshake,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    if let Ok(Some(_)) | Err(_) = c.sock.take_error() {
                        self.close(i);
                    }
                    return;
                }
                Err(_) => return self.close(i),
            }
        }
        self.flush(i);
    }

    /// Writes the socket's pending output.
    fn flush(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if matches!(c.st, St::Connecting | St::Closed) {
            return;
        }
        if let Some(tls) = &mut c.tls {
            // Plaintext into the session (buffered while the handshake
            // runs), then records out until the socket is full.
            if !c.out.is_empty() {
                let _ = tls.writer().write_all(&c.out);
                c.out.clear();
            }
            while tls.wants_write() {
                match tls.write_tls(&mut c.sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return self.close(i),
                }
            }
            return;
        }
        if c.out.is_empty() {
            return;
        }
        let mut done = 0;
        while done < c.out.len() {
            match c.sock.write(&c.out[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    c.out.clear();
                    return self.close(i);
                }
            }
        }
        c.out.drain(..done);
    }

    fn on_readable(&mut self, i: usize) {
        loop {
            let c = &mut self.conns[i];
            if matches!(c.st, St::Connecting | St::Closed) {
                return;
            }
            let k = c.carry.len();
            if k >= self.buf.len() {
                return self.close(i);
            }
            self.buf[..k].copy_from_slice(&c.carry);
            let room = self.buf.len() - k;
            let read = match &mut c.tls {
                None => c.sock.read(&mut self.buf[k..]),
                Some(tls) => read_tls(tls, &mut c.sock, &mut self.buf[k..]),
            };
            if c.tls.as_ref().is_some_and(|t| t.wants_write()) {
                // A handshake flight (or a key update) to answer.
                self.flush(i);
            }
            let c = &mut self.conns[i];
            let n = match read {
                Ok(0) => return self.close(i),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.close(i),
            };
            let end = k + n;
            let mut pos = 0;
            if c.st == St::Handshake {
                let Some(h) = find(&self.buf[..end], b"\r\n\r\n") else {
                    c.carry.clear();
                    c.carry.extend_from_slice(&self.buf[..end]);
                    continue;
                };
                if !self.buf.starts_with(b"HTTP/1.1 101") {
                    return self.close(i);
                }
                c.st = St::Open;
                self.in_flight -= 1;
                self.c.upgraded += 1;
                pos = h + 4;
            }
            let now = self.base.elapsed().as_nanos() as u64;
            let used = self.frames(i, pos, end, now);
            let c = &mut self.conns[i];
            c.carry.clear();
            c.carry.extend_from_slice(&self.buf[used..end]);
            if c.st == St::Closed {
                return;
            }
            let plain = c.tls.is_none();
            if !c.out.is_empty() {
                self.flush(i);
            }
            if n < room && plain {
                // A short read drained the socket; TCP signals the next arrival.
                return;
            }
        }
    }

    /// Handles the complete server frames in `buf[pos..end]`; returns where
    /// the incomplete rest starts.
    fn frames(&mut self, i: usize, mut pos: usize, end: usize, now: u64) -> usize {
        let buf = &self.buf;
        let c = &mut self.conns[i];
        while end - pos >= 2 {
            let b0 = buf[pos];
            let (len, head) = match buf[pos + 1] & 0x7f {
                126 if end - pos >= 4 => {
                    (u16::from_be_bytes([buf[pos + 2], buf[pos + 3]]) as usize, 4)
                }
                127 if end - pos >= 10 => (
                    u64::from_be_bytes(buf[pos + 2..pos + 10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if end - pos < head + len {
                break;
            }
            let p = &buf[pos + head..pos + head + len];
            pos += head + len;
            match b0 & 0x0f {
                0x1 => {
                    if c.echo {
                        if p.first() == Some(&b'P') {
                            self.c.echoes += 1;
                            if let Some(t) = digits16(&p[1..]) {
                                self.echo.record(now.saturating_sub(t));
                            }
                        }
                    } else if p.starts_with(b"{\"type\":\"message\"") {
                        self.c.messages += 1;
                        c.msgs += 1;
                        self.per_node[c.node] += 1;
                        if let Some(r) = self.per_room.get_mut(c.room as usize) {
                            *r += 1;
                        }
                        if self.track_ids {
                            let id = message_id(p);
                            if id <= c.last_id {
                                self.id_errors += 1;
                                if self.id_errors <= 5 {
                                    eprintln!(
                                        "    id error: connection {i} (node {}) got id {id} after {}",
                                        c.node, c.last_id
                                    );
                                }
                            }
                            c.last_id = c.last_id.max(id);
                        }
                        if self.record_latency
                            && let Some(t) =
                                find(p, b"\"content\":\"T").and_then(|at| digits16(&p[at + 12..]))
                        {
                            self.lat.record(now.saturating_sub(t));
                            if self.nodes.len() > 1 {
                                self.lat_node[c.node].record(now.saturating_sub(t));
                            }
                        }
                    } else if p.starts_with(b"{\"type\":\"ack\"") {
                        self.c.acks += 1;
                        if let Some(r) = self.acks_room.get_mut(c.room as usize) {
                            *r += 1;
                        }
                    } else if p.starts_with(b"{\"type\":\"unread\"") {
                        self.c.unread += 1;
                    } else {
                        self.c.other += 1;
                    }
                }
                0x9 => c.out.extend_from_slice(&[0x8a, 0x80, 0, 0, 0, 0]),
                0x8 => {
                    c.st = St::Closed;
                    self.c.closed += 1;
                    let _ = self.poll.registry().deregister(&mut c.sock);
                    return pos;
                }
                _ => self.c.other += 1,
            }
        }
        pos
    }

    /// Appends a chat message frame (masked with the zero key) to `i`'s output.
    fn queue_chat(&mut self, i: usize, room: &str, now: u64) {
        let mut p = [0u8; 96];
        let mut w = &mut p[..];
        let _ = write!(
            w,
            r#"{{"type":"message","room":"{room}","content":"T{now:016}"}}"#
        );
        let len = 96 - w.len();
        let c = &mut self.conns[i];
        c.out
            .extend_from_slice(&[0x81, 0x80 | len as u8, 0, 0, 0, 0]);
        c.out.extend_from_slice(&p[..len]);
    }

    fn queue_probe(&mut self, i: usize, now: u64) {
        let c = &mut self.conns[i];
        c.out.extend_from_slice(&[0x81, 0x80 | 17, 0, 0, 0, 0]);
        let _ = write!(c.out, "P{now:016}");
    }

    /// Keeps reading until `done` holds or `limit` passes; true if it held.
    pub fn settle(&mut self, limit: Duration, done: impl Fn(&Load) -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if done(self) {
                return true;
            }
            self.turn(Some(Duration::from_millis(10)));
        }
        done(self)
    }

    /// Runs a sending plan: warm-up, a measured interval, then a drain.
    pub fn run(&mut self, plan: &Plan) -> Outcome {
        let rooms = plan.senders.len();
        let mut sent = vec![0u64; rooms];
        let mut rr = vec![0usize; rooms];
        let start = Instant::now();
        let stop_at = plan.warmup + plan.measure;
        let mut mark: Option<(Instant, CpuMark, u64, u64, u64)> = None;
        let base_node = self.per_node.clone();
        let mut mark_node: Vec<u64> = Vec::new();
        let mut node_rates: Vec<f64> = Vec::new();
        // (deliveries/s, messages/s, acks/s, CPU use, seconds) of the measured interval.
        let mut result: Option<Measured> = None;
        let mut next_probe = Duration::ZERO;
        let mut next_due = 0f64; // seconds since start (paced)
        let mut next_room = 0usize;
        let mut last_report = (Instant::now(), self.c.messages);
        let base_acks: Vec<u64> = self.acks_room.clone();
        let base_room: Vec<u64> = self.per_room.clone();
        let mut touched: Vec<usize> = Vec::new();
        let delivered_in = |me: &Load, r: usize| me.per_room[r] - base_room[r];
        loop {
            let el = start.elapsed();
            let sending = el < stop_at;
            if mark.is_none() && el >= plan.warmup {
                mark = Some((
                    Instant::now(),
                    CpuMark::now(plan.server_pid),
                    self.c.messages,
                    self.c.acks,
                    sent.iter().sum(),
                ));
                mark_node = self.per_node.clone();
            }
            if !sending && result.is_none() {
                let (t, cpu, m0, a0, s0) = mark.expect("warm-up is shorter than the run");
                let dt = t.elapsed().as_secs_f64();
                let s1: u64 = sent.iter().sum();
                node_rates = self
                    .per_node
                    .iter()
                    .zip(&mark_node)
                    .map(|(n, m)| (n - m) as f64 / dt)
                    .collect();
                result = Some((
                    (self.c.messages - m0) as f64 / dt,
                    (s1 - s0) as f64 / dt,
                    (self.c.acks - a0) as f64 / dt,
                    cpu.since3(),
                    dt,
                ));
            }
            if sending {
                let now = self.now_ns();
                match plan.mode {
                    Mode::Flood { window, by_acks } => {
                        for r in 0..rooms {
                            let (ids, name) = &plan.senders[r];
                            if ids.is_empty() {
                                continue;
                            }
                            loop {
                                let done = if by_acks {
                                    self.acks_room[r] - base_acks[r]
                                } else {
                                    delivered_in(self, r) / plan.fan[r].max(1)
                                };
                                if sent[r] >= done + window {
                                    break;
                                }
                                let i = ids[rr[r] % ids.len()];
                                rr[r] += 1;
                                self.queue_chat(i, name, now);
                                sent[r] += 1;
                                touched.push(i);
                            }
                        }
                    }
                    Mode::Paced { per_sec } => {
                        let el_s = start.elapsed().as_secs_f64();
                        let mut guard = 0;
                        while next_due <= el_s && guard < 10_000 {
                            guard += 1;
                            let r = next_room % rooms;
                            next_room += 1;
                            let (ids, name) = &plan.senders[r];
                            if ids.is_empty() {
                                continue;
                            }
                            let i = ids[rr[r] % ids.len()];
                            rr[r] += 1;
                            self.queue_chat(i, name, now);
                            sent[r] += 1;
                            touched.push(i);
                            next_due += 1.0 / per_sec;
                        }
                    }
                }
            }
            if let Some((p, every)) = plan.probe
                && el >= next_probe
                && (sending || el < stop_at + plan.drain)
            {
                let now = self.now_ns();
                self.queue_probe(p, now);
                touched.push(p);
                next_probe = el + every;
            }
            touched.sort_unstable();
            touched.dedup();
            for i in touched.drain(..) {
                self.flush(i);
            }
            if !sending {
                let all_in = (0..rooms).all(|r| {
                    if let Mode::Flood { by_acks: true, .. } = plan.mode {
                        self.acks_room[r] - base_acks[r] >= sent[r]
                    } else {
                        delivered_in(self, r) >= sent[r] * plan.fan[r]
                    }
                });
                if all_in || el >= stop_at + plan.drain {
                    break;
                }
            }
            if last_report.0.elapsed() >= Duration::from_secs(1) {
                let dt = last_report.0.elapsed().as_secs_f64();
                eprintln!(
                    "    {} t={:.1}s deliveries/s={:.0} acks={} sent={}",
                    plan.label,
                    el.as_secs_f64(),
                    (self.c.messages - last_report.1) as f64 / dt,
                    self.c.acks,
                    sent.iter().sum::<u64>()
                );
                last_report = (Instant::now(), self.c.messages);
            }
            let timeout = match plan.mode {
                Mode::Paced { per_sec: _ } if sending => {
                    let wait = next_due - start.elapsed().as_secs_f64();
                    Duration::from_secs_f64(wait.clamp(0.0, 0.005))
                }
                _ => Duration::from_millis(5),
            };
            let timeout = match plan.probe {
                Some(_) => timeout.min(next_probe.saturating_sub(start.elapsed())),
                None => timeout,
            };
            self.turn(Some(timeout));
        }
        let (dps, mps, aps, (cc, sc, oc, ic), secs) = result.unwrap_or_default();
        let expected: u64 = (0..rooms).map(|r| sent[r] * plan.fan[r]).sum();
        let delivered: u64 = (0..rooms).map(|r| delivered_in(self, r)).sum();
        let acked: u64 = (0..rooms).map(|r| self.acks_room[r] - base_acks[r]).sum();
        Outcome {
            secs,
            deliveries_per_s: dps,
            messages_per_s: mps,
            acks_per_s: aps,
            client_cpu: cc,
            server_cpu: sc,
            other_cpu: oc,
            irq_cpu: ic,
            sent: sent.iter().sum(),
            expected,
            delivered,
            acked,
            node_delivered: self
                .per_node
                .iter()
                .zip(base_node.iter().chain(std::iter::repeat(&0)))
                .map(|(n, b)| n - b)
                .collect(),
            node_deliveries_per_s: node_rates,
        }
    }
}

/// The `"id":N` of a message frame (`{"type":"message","id":N,…`); 0 if absent.
/// Plaintext from a TLS session: what is decrypted already, else records
/// from the socket until one yields data or the socket would block.
fn read_tls(tls: &mut ClientConnection, sock: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if tls.read_tls(sock)? == 0 {
            return Ok(0);
        }
        tls.process_new_packets().map_err(io::Error::other)?;
    }
}

fn message_id(p: &[u8]) -> u64 {
    const HEAD: &[u8] = b"{\"type\":\"message\",\"id\":";
    let mut v = 0u64;
    if p.starts_with(HEAD) {
        for &x in &p[HEAD.len()..] {
            if !x.is_ascii_digit() {
                break;
            }
            v = v * 10 + u64::from(x - b'0');
        }
    }
    v
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// 16 ASCII digits at the start of `b`.
fn digits16(b: &[u8]) -> Option<u64> {
    let d = b.get(..16)?;
    let mut v = 0u64;
    for &x in d {
        if !x.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(x - b'0');
    }
    Some(v)
}
