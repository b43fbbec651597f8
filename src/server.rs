//! The reactor: one thread, one `mio::Poll`, every socket.
//!
//! One pass of the loop:
//! 1. `poll` for readiness (edge-triggered; timeout 0 when work is left over
//!    from the last pass, else the timer tick);
//! 2. accept until `WouldBlock`; read each readable connection until
//!    `WouldBlock` or its read budget, parsing requests and frames as they
//!    complete and handing them to the application (`App`);
//! 3. drain the answers the storage thread and the hashing pool sent (they
//!    rang the `Waker`);
//! 4. flush every connection that has new output: one vectored write per
//!    connection per pass, up to its write budget;
//! 5. close what asked to be closed — after the fan-out and flush, never in
//!    the middle of one;
//! 6. once a second, run timers (head timeout, pings, idle, soft output limit).
//!
//! Errors on a connection close that connection and are logged; only a
//! failing `poll` ends the loop.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::app::App;
use crate::auth::jwt::Tokens;
use crate::auth::pool::HashPool;
use crate::config::{
    CLOSE_FLUSH_TIMEOUT, CLOSE_LINGER, Config, HEAD_TIMEOUT, IDLE_TIMEOUT, MAX_HEADERS,
    MAX_WS_MESSAGE, OUTPUT_SOFT_LIMIT, OUTPUT_SOFT_SECONDS, PING_INTERVAL, READ_BUDGET,
    READ_PAUSE_BYTES, SCRATCH_BYTES, SHUTDOWN_GRACE, TICK, WRITE_BUDGET,
};
use crate::conn::{Closing, Conn, Flushed, Phase, ReadOutcome};
use crate::http::request;
use crate::http::response::Response;
use crate::http::routes::Handled;
use crate::metrics::Metrics;
use crate::outbox::{ConnRef, Outbox};
use crate::signal::Signals;
use crate::store::{Backend, Request as StoreRequest, StoreHandle};
use crate::ws::codec::{self, Fed, Message, RawFrame, Violation};

/// The listening socket.
const LISTENER: Token = Token(usize::MAX - 1);
/// Rung by the storage thread and the hashing pool when answers are ready.
const WAKER: Token = Token(usize::MAX - 2);
/// The self-pipe of SIGINT/SIGTERM.
const SIGNALS: Token = Token(usize::MAX - 3);

/// Where shutdown is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase2 {
    Running,
    /// Not accepting, not reading; waiting for storage to commit what it holds.
    Draining,
    /// Close frames are queued; waiting (at most until `deadline`) for them to flush.
    Closing {
        deadline: u32,
    },
}

pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Slab<Conn>,
    app: App,
    signals: Signals,
    /// Every socket reads into this one buffer (see `conn.rs` on memory).
    scratch: Box<[u8]>,
    flush_list: Vec<Token>,
    read_list: Vec<Token>,
    close_list: Vec<Token>,
    /// Connections not read from while storage catches up.
    store_paused: Vec<Token>,
    metrics: Metrics,
    next_serial: u64,
    state: Phase2,
    last_sweep: u32,
    addr: SocketAddr,
}

/// The JWT secret from the environment, or the one generated once and kept
/// in the database so tokens survive a restart.
fn jwt_secret(config: &Config, backend: &mut impl Backend) -> io::Result<Vec<u8>> {
    if let Some(s) = &config.jwt_secret {
        return Ok(s.clone());
    }
    let stored = backend.setting("jwt_secret").map_err(io::Error::other)?;
    if let Some(s) = stored {
        return Ok(s);
    }
    let mut secret = vec![0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| io::Error::other("no system random source"))?;
    backend
        .put_setting("jwt_secret", &secret)
        .map_err(io::Error::other)?;
    Ok(secret)
}

impl Server {
    /// Loads the snapshot from `backend` (opened by the caller), starts the
    /// helper threads and binds the listener.
    pub fn bind(config: Config, mut backend: impl Backend) -> io::Result<Server> {
        let snapshot = backend.load().map_err(io::Error::other)?;
        let secret = jwt_secret(&config, &mut backend)?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let store_waker = waker.clone();
        let store = StoreHandle::spawn(backend, config.store_queue, move || {
            let _ = store_waker.wake();
        });
        let hasher = HashPool::spawn(config.hash_threads, config.pbkdf2_iterations, move || {
            let _ = waker.wake();
        });
        let mut listener = TcpListener::bind(config.addr)?;
        set_backlog(&listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let signals = Signals::install(poll.registry(), SIGNALS)?;
        let addr = listener.local_addr()?;
        let app = App::new(config, snapshot, store, hasher, Tokens::new(&secret));
        Ok(Server {
            poll,
            listener: Some(listener),
            conns: Slab::new(),
            app,
            signals,
            scratch: vec![0u8; SCRATCH_BYTES].into_boxed_slice(),
            flush_list: Vec::new(),
            read_list: Vec::new(),
            close_list: Vec::new(),
            store_paused: Vec::new(),
            metrics: Metrics::default(),
            next_serial: 0,
            state: Phase2::Running,
            last_sweep: 0,
            addr,
        })
    }

    /// The address actually bound (the real port for `:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs until SIGINT/SIGTERM has been handled; returns after storage
    /// committed everything it was given.
    pub fn run(mut self) -> io::Result<()> {
        log::info!("listening on {}", self.addr);
        let mut events = Events::with_capacity(1024);
        loop {
            let busy = !self.read_list.is_empty() || !self.flush_list.is_empty();
            let timeout = if busy {
                Some(std::time::Duration::ZERO)
            } else {
                Some(TICK)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let again = std::mem::take(&mut self.read_list);
            let mut woken = false;
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => woken = true,
                    SIGNALS => {
                        if self.signals.drain() {
                            self.begin_shutdown();
                        }
                    }
                    token => {
                        if event.is_writable() {
                            self.mark_flush(token);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(token);
                        }
                    }
                }
            }
            for token in again {
                let Some(c) = self.conns.get_mut(token.0) else {
                    continue;
                };
                c.in_read_list = false;
                // A resumed connection may hold requests or frames already
                // read: handle those before reading more.
                if !c.is_ws() {
                    self.process_http(token);
                } else if !c.pending_input.is_empty() {
                    // Frames held back while storage caught up.
                    self.process_ws(token, 0);
                }
                self.on_readable(token);
            }
            if woken {
                self.on_wake();
            }
            if !self.store_paused.is_empty() && self.app.store.has_caught_up() {
                self.resume_store_paused();
            }
            self.flush_pass();
            self.close_pass();
            let now = self.app.clock.now_s();
            if now != self.last_sweep {
                self.last_sweep = now;
                self.sweep(now);
            }
            if let Phase2::Closing { deadline } = self.state
                && (self.conns.is_empty() || now >= deadline)
            {
                break;
            }
        }
        self.app.store.join();
        self.app.hasher.join();
        log::info!("stopped");
        Ok(())
    }

    /// Splits `self` into the application and the door to the connections.
    fn parts(&mut self) -> (&mut App, Outbox<'_>) {
        let now = self.app.clock.now_s();
        (
            &mut self.app,
            Outbox {
                conns: &mut self.conns,
                flush_list: &mut self.flush_list,
                read_list: &mut self.read_list,
                close_list: &mut self.close_list,
                metrics: &mut self.metrics,
                now,
            },
        )
    }

    fn mark_flush(&mut self, token: Token) {
        if let Some(c) = self.conns.get_mut(token.0)
            && c.enlist_flush()
        {
            self.flush_list.push(token);
        }
    }

    fn accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((mut socket, peer)) => {
                    let entry = self.conns.vacant_entry();
                    let token = Token(entry.key());
                    if let Err(e) = self.poll.registry().register(
                        &mut socket,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::warn!("cannot register connection from {peer}: {e}");
                        continue;
                    }
                    let _ = socket.set_nodelay(true);
                    self.next_serial += 1;
                    entry.insert(Conn::new(socket, self.next_serial, self.app.clock.now_s()));
                    self.metrics.connections_accepted += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: the backlog keeps the rest; try again on the next event.
                    log::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Reads until `WouldBlock` or the read budget, processing as it goes.
    fn on_readable(&mut self, token: Token) {
        if self.state != Phase2::Running {
            return;
        }
        let now = self.app.clock.now_s();
        let mut read = 0;
        loop {
            let Some(conn) = self.conns.get_mut(token.0) else {
                return;
            };
            match (&conn.phase, conn.closing) {
                (_, Some(Closing::Now)) => return,
                (Phase::Http { waiting: true }, _) => return,
                _ => {}
            }
            if conn.queued() >= READ_PAUSE_BYTES && conn.closing.is_none() {
                // Backpressure: answers wait to be read before more questions are.
                conn.read_paused = true;
                return;
            }
            if matches!(conn.phase, Phase::Ws { echo: false, .. })
                && conn.closing.is_none()
                && self.app.store.is_backlogged()
            {
                // Backpressure: storage is behind; its queue is not a buffer to fill.
                if !conn.waiting_for_store {
                    conn.waiting_for_store = true;
                    self.store_paused.push(token);
                }
                return;
            }
            if read >= READ_BUDGET {
                if conn.enlist_read() {
                    self.read_list.push(token);
                }
                return;
            }
            let draining = conn.closing.is_some();
            match conn.read_into(&mut self.scratch) {
                Ok(ReadOutcome::Data(n)) => {
                    read += n;
                    conn.last_input = now;
                    if draining {
                        continue;
                    }
                    if conn.is_ws() {
                        self.process_ws(token, n);
                    } else {
                        conn.pending_input.extend_from_slice(&self.scratch[..n]);
                        self.process_http(token);
                    }
                }
                Ok(ReadOutcome::WouldBlock) => return,
                Ok(ReadOutcome::Eof) => {
                    let (app, mut out) = self.parts();
                    app.close_session(token, &mut out);
                    out.close_now(token);
                    return;
                }
                Err(e) => {
                    log::debug!("read error on {token:?}: {e}");
                    let (app, mut out) = self.parts();
                    app.close_session(token, &mut out);
                    out.close_now(token);
                    return;
                }
            }
        }
    }

    /// Parses and answers the complete requests in the connection's input,
    /// in order, stopping at one that waits for an asynchronous answer.
    fn process_http(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        let input = std::mem::take(&mut conn.pending_input);
        let serial = conn.serial;
        let mut pos = 0;
        loop {
            let conn = &mut self.conns[token.0];
            if conn.closing.is_some()
                || matches!(conn.phase, Phase::Http { waiting: true })
                || pos == input.len()
            {
                break;
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let parsed = request::parse(&input[pos..], &mut headers);
            let (app, mut out) = self.parts();
            match parsed {
                Ok(None) => break,
                Err(e) => {
                    let resp = Response::from(e).closing();
                    out.http(token, resp, false, false);
                    break;
                }
                Ok(Some((req, used))) => {
                    pos += used;
                    log::debug!("{} {}", req.method, req.path);
                    match app.handle_http(ConnRef { token, serial }, &req, &mut out) {
                        Handled::Done => {
                            let now = app.clock.now_s();
                            out.conns[token.0].timer_start = now;
                        }
                        Handled::Waiting => {
                            out.conns[token.0].phase = Phase::Http { waiting: true };
                        }
                        Handled::Upgrade(up) => {
                            let now = app.clock.now_s();
                            let conn = &mut out.conns[token.0];
                            conn.phase = Phase::Ws {
                                assembler: codec::Assembler::default(),
                                echo: up.user.is_none(),
                            };
                            conn.timer_start = now;
                            if let Some(user) = up.user {
                                app.open_session(
                                    ConnRef { token, serial },
                                    user,
                                    up.room,
                                    &mut out,
                                );
                            }
                            // Bytes after the head are already WebSocket frames.
                            self.conns[token.0].keep_input(&input[pos..]);
                            if pos < input.len() {
                                self.process_ws(token, 0);
                            }
                            return;
                        }
                    }
                }
            }
        }
        if let Some(conn) = self.conns.get_mut(token.0) {
            conn.keep_input(&input[pos..]);
        }
    }

    /// Decodes the frames in the connection's leftover input plus the `n`
    /// new bytes at the start of the scratch buffer.
    fn process_ws(&mut self, token: Token, n: usize) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        let echo = matches!(conn.phase, Phase::Ws { echo: true, .. });
        // Usually nothing is left over and frames are decoded in the scratch
        // buffer itself; otherwise the new bytes join the leftover.
        let mut owned = std::mem::take(&mut conn.pending_input);
        let use_owned = !owned.is_empty();
        if use_owned {
            owned.extend_from_slice(&self.scratch[..n]);
        }
        let Server {
            app,
            conns,
            flush_list,
            read_list,
            close_list,
            metrics,
            scratch,
            store_paused,
            ..
        } = self;
        let now = app.clock.now_s();
        let mut out = Outbox {
            conns,
            flush_list,
            read_list,
            close_list,
            metrics,
            now,
        };
        let data: &mut [u8] = if use_owned {
            &mut owned
        } else {
            &mut scratch[..n]
        };
        let mut pos = 0;
        while pos < data.len() {
            if out.conns.get(token.0).is_none_or(|c| c.closing.is_some()) {
                return;
            }
            if !echo && app.store.is_backlogged() {
                // Storage is behind: leave the rest of the input where it is
                // (it is kept below) until storage catches up.
                let conn = &mut out.conns[token.0];
                if !conn.waiting_for_store {
                    conn.waiting_for_store = true;
                    store_paused.push(token);
                }
                break;
            }
            let frame = match codec::decode_frame(&mut data[pos..], MAX_WS_MESSAGE) {
                Ok(None) => break,
                Ok(Some(f)) => RawFrame {
                    payload: f.payload.start + pos..f.payload.end + pos,
                    ..f
                },
                Err(v) => return fail_ws(app, &mut out, token, v),
            };
            pos = frame.payload.end;
            let Phase::Ws { assembler, .. } = &mut out.conns[token.0].phase else {
                return;
            };
            let fed = match assembler.feed(&frame, data, MAX_WS_MESSAGE) {
                Ok(f) => f,
                Err(v) => return fail_ws(app, &mut out, token, v),
            };
            match fed {
                Fed::Pending => {}
                Fed::Whole(msg) => on_message(app, &mut out, token, echo, msg),
                Fed::Assembled(kind, bytes) => {
                    let msg = match kind {
                        tungstenite::protocol::frame::coding::Data::Text => Message::Text(
                            std::str::from_utf8(&bytes).expect("checked by the assembler"),
                        ),
                        _ => Message::Binary(&bytes),
                    };
                    on_message(app, &mut out, token, echo, msg);
                }
            }
        }
        let rest = &data[pos..];
        if let Some(conn) = out.conns.get_mut(token.0) {
            conn.keep_input(rest);
        }
    }

    fn on_wake(&mut self) {
        let (app, mut out) = self.parts();
        let drained = app.on_store_replies(&mut out);
        app.on_hash_outcomes(&mut out);
        if drained && self.state == Phase2::Draining {
            self.close_everything();
        }
    }

    /// Storage caught up: read again from the connections paused for it.
    fn resume_store_paused(&mut self) {
        for token in std::mem::take(&mut self.store_paused) {
            let Some(conn) = self.conns.get_mut(token.0) else {
                continue;
            };
            conn.waiting_for_store = false;
            if conn.enlist_read() {
                self.read_list.push(token);
            }
        }
    }

    /// One vectored write per listed connection, within its budget.
    fn flush_pass(&mut self) {
        let list = std::mem::take(&mut self.flush_list);
        let now = self.app.clock.now_s();
        for token in list {
            let Some(conn) = self.conns.get_mut(token.0) else {
                continue;
            };
            conn.in_flush_list = false;
            if conn.closing == Some(Closing::Now) {
                continue;
            }
            let result = conn.flush(WRITE_BUDGET);
            if conn.read_paused && conn.queued() < READ_PAUSE_BYTES {
                conn.read_paused = false;
                if conn.enlist_read() {
                    self.read_list.push(token);
                }
            }
            if conn.closing == Some(Closing::Cut) {
                // A slow consumer gets one try at its close frame, no more.
                conn.closing = Some(Closing::Now);
                self.close_list.push(token);
                continue;
            }
            match result {
                Ok(Flushed::All) => {
                    if matches!(conn.closing, Some(Closing::AfterFlush(_))) {
                        conn.shutdown_write();
                        conn.closing = Some(Closing::Draining(now));
                    }
                }
                Ok(Flushed::Budget) => {
                    if conn.enlist_flush() {
                        self.flush_list.push(token);
                    }
                }
                Ok(Flushed::Blocked) => {}
                Err(e) => {
                    log::debug!("write error on {token:?}: {e}");
                    let (app, mut out) = self.parts();
                    app.close_session(token, &mut out);
                    out.close_now(token);
                }
            }
        }
    }

    /// Ends sessions of closing connections and drops those that are done.
    fn close_pass(&mut self) {
        while !self.close_list.is_empty() {
            let list = std::mem::take(&mut self.close_list);
            for token in list {
                let Some(conn) = self.conns.get(token.0) else {
                    continue;
                };
                let closing = conn.closing;
                let (app, mut out) = self.parts();
                app.close_session(token, &mut out);
                if closing == Some(Closing::Now) {
                    self.drop_conn(token);
                }
            }
        }
    }

    fn drop_conn(&mut self, token: Token) {
        if self.conns.contains(token.0) {
            let mut conn = self.conns.remove(token.0);
            let _ = self.poll.registry().deregister(&mut conn.socket);
        }
    }

    /// Timers, once a second. O(connections): about a millisecond at 50,000,
    /// cheaper than keeping a timer wheel in order on every frame.
    fn sweep(&mut self, now: u32) {
        let mut due = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            conn.shrink_if_idle();
            if conn.live_queued() > OUTPUT_SOFT_LIMIT {
                conn.over_soft_since.get_or_insert(now);
            } else {
                conn.over_soft_since = None;
            }
            let soft = conn
                .over_soft_since
                .is_some_and(|t| now - t >= OUTPUT_SOFT_SECONDS.as_secs() as u32);
            let kind = match conn.phase {
                Phase::Http { waiting } => Kind::Http { waiting },
                Phase::Ws { .. } => Kind::Ws,
            };
            let timer = if soft {
                Timer::SlowConsumer
            } else {
                timer_due(kind, conn.closing, conn.last_input, conn.timer_start, now)
            };
            if timer != Timer::None {
                if timer == Timer::Ping {
                    conn.timer_start = now;
                }
                due.push((Token(key), timer));
            }
        }
        let (app, mut out) = self.parts();
        for (token, timer) in due {
            match timer {
                Timer::Ping => out.ping(token),
                Timer::Idle => {
                    app.close_session(token, &mut out);
                    out.close_ws(token, 1001, "idle timeout");
                }
                Timer::SlowConsumer => {
                    app.close_session(token, &mut out);
                    out.metrics.slow_consumer_cuts += 1;
                    out.close_now(token);
                }
                Timer::Drop => out.close_now(token),
                Timer::None => {}
            }
        }
    }

    /// SIGINT/SIGTERM: stop accepting and reading; ask storage to commit
    /// everything queued. Closing starts when storage says it has.
    fn begin_shutdown(&mut self) {
        if self.state != Phase2::Running {
            return;
        }
        log::info!("shutting down: no new connections; flushing storage");
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.state = Phase2::Draining;
        if self.app.store.submit(StoreRequest::Drain).is_err() {
            self.close_everything();
        }
    }

    /// Storage is flushed: close frames (1001) to every WebSocket, close
    /// every HTTP connection, and give them `SHUTDOWN_GRACE` to go out.
    fn close_everything(&mut self) {
        let tokens: Vec<(Token, bool)> = self
            .conns
            .iter()
            .map(|(k, c)| (Token(k), c.is_ws()))
            .collect();
        let (app, mut out) = self.parts();
        app.quiet = true;
        for (token, ws) in tokens {
            app.close_session(token, &mut out);
            if ws {
                out.close_ws(token, 1001, "server shutting down");
            } else {
                out.close_after_flush(token);
                out.read_list.retain(|t| *t != token);
            }
        }
        let deadline = self.app.clock.now_s() + SHUTDOWN_GRACE.as_secs() as u32;
        self.state = Phase2::Closing { deadline };
    }
}

/// Connections the kernel queues for `accept` before it drops SYNs. mio binds
/// with a backlog of 128; a reconnect storm (every client of a restarted
/// server at once) overflows that and each dropped SYN costs its client a
/// 1 s retransmit. Linux caps the value at `net.core.somaxconn`.
const LISTEN_BACKLOG: libc::c_int = 4096;

/// Calling listen(2) again on a listening socket only changes its backlog.
fn set_backlog(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid listening socket and an integer.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        log::warn!(
            "could not raise the listen backlog: {}",
            io::Error::last_os_error()
        );
    }
}

/// A framing violation: close with the RFC's code.
fn fail_ws(app: &mut App, out: &mut Outbox, token: Token, v: Violation) {
    log::debug!("closing {token:?}: {}", v.reason());
    app.close_session(token, out);
    out.close_ws(token, v.close_code(), v.reason());
}

/// One whole WebSocket message.
fn on_message(app: &mut App, out: &mut Outbox, token: Token, echo: bool, msg: Message<'_>) {
    match msg {
        Message::Text(text) if echo => reply_frame(out, token, codec::TEXT, text.as_bytes()),
        Message::Binary(bytes) if echo => reply_frame(out, token, codec::BINARY, bytes),
        Message::Text(text) => app.on_ws_text(token, text, out),
        Message::Binary(_) => {
            out.metrics.ws_frames_in += 1;
            let e = crate::hub::presence::FrameError::new(
                "bad_json",
                "binary frames are not supported; send JSON text",
            );
            app.send_error(token, &e, None, out);
        }
        Message::Ping(payload) => reply_frame(out, token, codec::PONG, payload),
        Message::Pong => {}
        Message::Close(code, _) => {
            app.close_session(token, out);
            out.close_ws(token, code.unwrap_or(1000), "");
        }
    }
}

fn reply_frame(
    out: &mut Outbox,
    token: Token,
    opcode: tungstenite::protocol::frame::coding::OpCode,
    payload: &[u8],
) {
    let mut bytes = Vec::with_capacity(payload.len() + codec::MAX_HEADER);
    codec::encode(&mut bytes, opcode, payload);
    out.reply(token, &bytes);
}

/// What a connection is, for its timers.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Http { waiting: bool },
    Ws,
}

/// A timer that fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    None,
    /// WebSocket: time to ping.
    Ping,
    /// WebSocket: nothing received for `IDLE_TIMEOUT`.
    Idle,
    /// Unsent output above the soft limit for too long.
    SlowConsumer,
    /// HTTP head timeout, or a closing connection's linger ran out.
    Drop,
}

/// The timer rules, as a pure function of a connection's clocks (seconds).
pub fn timer_due(
    kind: Kind,
    closing: Option<Closing>,
    last_input: u32,
    timer_start: u32,
    now: u32,
) -> Timer {
    let since = |t: u32| now.saturating_sub(t);
    match (closing, kind) {
        (Some(Closing::Draining(at)), _) if since(at) >= CLOSE_LINGER.as_secs() as u32 => {
            Timer::Drop
        }
        (Some(Closing::AfterFlush(at)), _) if since(at) >= CLOSE_FLUSH_TIMEOUT.as_secs() as u32 => {
            Timer::Drop
        }
        (Some(_), _) => Timer::None,
        (None, Kind::Http { waiting: true }) => Timer::None,
        (None, Kind::Http { waiting: false }) => {
            if since(timer_start) >= HEAD_TIMEOUT.as_secs() as u32 {
                Timer::Drop
            } else {
                Timer::None
            }
        }
        (None, Kind::Ws) if since(last_input) >= IDLE_TIMEOUT.as_secs() as u32 => Timer::Idle,
        (None, Kind::Ws) if since(timer_start) >= PING_INTERVAL.as_secs() as u32 => Timer::Ping,
        (None, Kind::Ws) => Timer::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WebSockets are pinged every 30 s and closed after 60 s of silence.
    #[test]
    fn ws_ping_and_idle() {
        let t =
            |last_input, timer_start, now| timer_due(Kind::Ws, None, last_input, timer_start, now);
        assert_eq!(t(0, 0, 29), Timer::None);
        assert_eq!(t(0, 0, 30), Timer::Ping);
        assert_eq!(t(25, 30, 59), Timer::None, "pinged at 30, input at 25");
        assert_eq!(t(25, 30, 60), Timer::Ping);
        assert_eq!(
            t(0, 30, 60),
            Timer::Idle,
            "silence for 60 s wins over the ping"
        );
    }

    /// An HTTP connection has 10 s for a head, unless it is waiting on us.
    #[test]
    fn http_head_timeout() {
        let t = |waiting, now| timer_due(Kind::Http { waiting }, None, 0, 0, now);
        assert_eq!(t(false, 9), Timer::None);
        assert_eq!(t(false, 10), Timer::Drop);
        assert_eq!(t(true, 100), Timer::None);
    }

    /// A closing connection lingers at most `CLOSE_LINGER`.
    #[test]
    fn closing_linger() {
        let t = |now| timer_due(Kind::Ws, Some(Closing::Draining(5)), 0, 0, now);
        assert_eq!(t(6), Timer::None);
        assert_eq!(t(7), Timer::Drop);
        assert_eq!(
            timer_due(Kind::Ws, Some(Closing::AfterFlush(5)), 0, 0, 14),
            Timer::None
        );
        assert_eq!(
            timer_due(Kind::Ws, Some(Closing::AfterFlush(5)), 0, 0, 15),
            Timer::Drop
        );
    }
}
