//! The reactor: one thread, one `mio::Poll`, every socket.
//!
//! One pass of the loop:
//! 1. `poll` for readiness (edge-triggered; timeout 0 when work is left over
//!    from the last pass, else the timer tick);
//! 2. accept until `WouldBlock`; read each readable connection until
//!    `WouldBlock` or its read budget, cutting the bytes into requests and
//!    frames and handing each whole one to the application ([`App`]);
//! 3. on the `Waker`, let the application take the answers the storage
//!    thread, the hashing pool (and a bus) sent;
//! 4. flush every connection that has new output: vectored writes up to its
//!    write budget;
//! 5. close what asked to be closed — after the fan-out and flush, never in
//!    the middle of one. This is the one teardown path: the application hears
//!    of each closing connection once, then the socket is dropped;
//! 6. once a second, run timers (the rules are the connection's own).
//!
//! The application reaches connections only through [`Outbox`], implemented
//! here by [`Wires`]. Errors on a connection close that connection and are
//! logged; only a failing `poll` ends the loop.
//!
//! With TLS ([`Server::serve_tls`]) every accepted connection gets a
//! rustls session under it (`transport.rs`); nothing else here changes. A
//! second, plain listener ([`Server::serve_plain`]) only redirects to
//! https:// and answers ACME challenges (`http/redirect.rs`), and a third
//! ([`Server::serve_metrics`]) takes `/metrics` off the main one. SIGHUP
//! reloads the certificate files and calls the binary's reload hook.
//!
//! Shutdown has three phases: *draining* (no accepting, no reading; storage
//! commits what it holds, so acks go out), *closing* (close frames 1001 to
//! every WebSocket, presence broadcasts off; at most `SHUTDOWN_GRACE`), and
//! *stopped* (threads joined).

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::admission::{Admission, Verdict, raise_nofile_limit};
use crate::app::App;
use crate::config::{
    Config, FD_RESERVE, MAX_HEADERS, MAX_REQUESTS_PER_PASS, MAX_WS_MESSAGE, READ_BUDGET,
    SCRATCH_BYTES, SHUTDOWN_GRACE, TICK, WRITE_BUDGET,
};
use crate::conn::{Backlog, Conn, Door, ReadOutcome, Timer};
use crate::http::response::Response;
use crate::http::routes::{self, Handled};
use crate::http::{files, redirect, request};
use crate::hub::{Bus, LocalOnly};
use crate::metrics::Metrics;
use crate::outbox::{ConnRef, Outbox};
use crate::signal::Signals;
use crate::store::Backend;
use crate::tls::Acceptor;
use crate::tls::acme::Challenges;
use crate::transport::Transport;
use crate::ws::codec::{self, Fed, Message, RawFrame};

/// The listening socket.
const LISTENER: Token = Token(usize::MAX - 1);
/// Rung by the storage thread, the hashing pool and [`Shutdown`].
const WAKER: Token = Token(usize::MAX - 2);
/// The self-pipe of SIGINT/SIGTERM/SIGHUP (only when [`Server::handle_signals`]).
const SIGNALS: Token = Token(usize::MAX - 3);
/// The plain listener beside HTTPS ([`Server::serve_plain`]).
const PLAIN_LISTENER: Token = Token(usize::MAX - 4);
/// The `/metrics` listener ([`Server::serve_metrics`]).
const METRICS_LISTENER: Token = Token(usize::MAX - 5);

/// The plain listener and what its answers need.
struct PlainDoor {
    listener: TcpListener,
    challenges: Arc<Challenges>,
}

/// Where shutdown is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    /// Not accepting, not reading; waiting for storage to commit what it holds.
    Draining,
    /// Close frames are queued; waiting (at most until `deadline`) for them to flush.
    Closing {
        deadline: u32,
    },
}

/// The loop's notion of time: coarse seconds since start, small enough to
/// store per connection (timestamps on messages use the wall clock).
struct Clock {
    start: Instant,
}

impl Clock {
    fn now_s(&self) -> u32 {
        self.start.elapsed().as_secs() as u32
    }
}

/// Stops a running server from another thread (tests, embedding): the same
/// shutdown as SIGTERM.
#[derive(Clone)]
pub struct Shutdown {
    requested: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl Shutdown {
    pub fn trigger(&self) {
        self.requested.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// The connections and the reactor's to-do lists: what [`Outbox`] is
/// implemented on, borrowed from the [`Server`] for one step of a pass.
pub struct Wires<'a> {
    conns: &'a mut Slab<Conn>,
    /// Connections with new output this pass (flushed at the end of it).
    flush_list: &'a mut Vec<Token>,
    /// Connections to read again next pass (an HTTP connection that can go
    /// on with pipelined input once its pending answer went out).
    read_list: &'a mut Vec<Token>,
    /// Connections to close or reap at the end of the pass.
    close_list: &'a mut Vec<Token>,
    metrics: &'a mut Metrics,
    /// The loop's coarse clock, for closing deadlines.
    now: u32,
    /// Unsent output of every connection, counted as it changes: every
    /// queue and write below goes through it.
    backlog: &'a mut Backlog,
}

/// The [`Server`] split for one step of a pass ([`Server::split`]).
struct Split<'a> {
    app: &'a mut App,
    out: Wires<'a>,
    /// The loop's read buffer (the bytes being handed to the application).
    scratch: &'a mut [u8],
    /// Connections paused until storage catches up.
    store_paused: &'a mut Vec<Token>,
}

pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    /// Certificates and the rustls configuration when `--addr` speaks TLS.
    tls: Option<Acceptor>,
    /// `--http-addr`.
    plain: Option<PlainDoor>,
    /// `--metrics-addr`: when set, `/metrics` is served there and only there.
    metrics_door: Option<TcpListener>,
    /// Called on SIGHUP, after the certificates are reloaded (the binary
    /// reads its config file again for the log level).
    on_reload: Option<Box<dyn FnMut()>>,
    conns: Slab<Conn>,
    app: App,
    signals: Option<Signals>,
    waker: Arc<Waker>,
    shutdown: Arc<AtomicBool>,
    /// Every socket reads into this one buffer (see `conn.rs` on memory).
    scratch: Box<[u8]>,
    flush_list: Vec<Token>,
    read_list: Vec<Token>,
    close_list: Vec<Token>,
    /// Chat connections not read from while storage catches up.
    store_paused: Vec<Token>,
    metrics: Metrics,
    /// Unsent output of every connection, kept current (the server-wide
    /// reply budget reads it: `hub/reads.rs`).
    backlog: Backlog,
    clock: Clock,
    next_serial: u64,
    state: State,
    last_sweep: u32,
    addr: SocketAddr,
    /// Accept-time limits: per-address unfinished connections, the cap on
    /// connections, the spare descriptor.
    admission: Admission,
    /// `accept` stopped on an error other than `WouldBlock` (`EMFILE`): the
    /// edge-triggered listener will not say so again, so the loop retries
    /// on its own (after a close frees a descriptor, and every tick).
    accept_stalled: bool,
}

impl Server {
    /// Binds `config.addr` and starts a single node on `backend`.
    pub fn bind(config: Config, backend: impl Backend) -> io::Result<Server> {
        let listener = std::net::TcpListener::bind(config.addr)?;
        Server::start(listener, config, backend, Box::new(LocalOnly))
    }

    /// Starts the helper threads and takes over `listener` (tests run servers
    /// in-process this way, on `127.0.0.1:0`). `bus` carries frames to other
    /// nodes ([`LocalOnly`] for one).
    pub fn start(
        listener: std::net::TcpListener,
        config: Config,
        backend: impl Backend,
        bus: Box<dyn Bus>,
    ) -> io::Result<Server> {
        let nofile = raise_nofile_limit();
        let most = (nofile as usize).saturating_sub(FD_RESERVE).max(1);
        let max_conns = match config.max_conns {
            0 => most,
            n if n > most => {
                log::warn!(
                    "--max-conns {n} is above the descriptor limit {nofile} less {FD_RESERVE}; using {most}"
                );
                most
            }
            n => n,
        };
        let admission =
            Admission::new(max_conns, config.max_unfinished_per_addr.max(1), Vec::new());
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let app = App::start(&config, backend, bus, waker.clone())?;
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        set_backlog(&listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let addr = listener.local_addr()?;
        Ok(Server {
            poll,
            listener: Some(listener),
            tls: None,
            plain: None,
            metrics_door: None,
            on_reload: None,
            conns: Slab::new(),
            app,
            signals: None,
            waker,
            shutdown: Arc::new(AtomicBool::new(false)),
            scratch: vec![0u8; SCRATCH_BYTES].into_boxed_slice(),
            flush_list: Vec::new(),
            read_list: Vec::new(),
            close_list: Vec::new(),
            store_paused: Vec::new(),
            metrics: Metrics::default(),
            backlog: Backlog::default(),
            clock: Clock {
                start: Instant::now(),
            },
            next_serial: 0,
            state: State::Running,
            last_sweep: 0,
            addr,
            admission,
            accept_stalled: false,
        })
    }

    /// SIGINT and SIGTERM start shutdown (the binary wants this; a server
    /// embedded in a test does not: handlers are process-wide).
    pub fn handle_signals(&mut self) -> io::Result<()> {
        self.signals = Some(Signals::install(self.poll.registry(), SIGNALS)?);
        Ok(())
    }

    /// Serves TLS on the main listener from now on (call before `run`).
    pub fn serve_tls(&mut self, acceptor: Acceptor) {
        self.tls = Some(acceptor);
    }

    /// Also accepts plain HTTP on `listener`, answering every request with
    /// a redirect to https:// on the main listener's port, or with the ACME
    /// challenge it asks for.
    pub fn serve_plain(
        &mut self,
        listener: std::net::TcpListener,
        challenges: Arc<Challenges>,
    ) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        self.poll
            .registry()
            .register(&mut listener, PLAIN_LISTENER, Interest::READABLE)?;
        self.plain = Some(PlainDoor {
            listener,
            challenges,
        });
        Ok(())
    }

    /// Serves `/metrics` on `listener` (plain HTTP, nothing else there),
    /// and no longer on the main listener, which the public may reach.
    pub fn serve_metrics(&mut self, listener: std::net::TcpListener) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        self.poll
            .registry()
            .register(&mut listener, METRICS_LISTENER, Interest::READABLE)?;
        self.metrics_door = Some(listener);
        Ok(())
    }

    /// Runs `hook` on the loop thread on every SIGHUP.
    pub fn on_reload(&mut self, hook: Box<dyn FnMut()>) {
        self.on_reload = Some(hook);
    }

    /// A handle that shuts the server down from any thread.
    pub fn shutdown_handle(&self) -> Shutdown {
        Shutdown {
            requested: self.shutdown.clone(),
            waker: self.waker.clone(),
        }
    }

    /// The address actually bound (the real port for `:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs until shutdown has been asked for and carried out; returns after
    /// storage committed everything it was given.
    pub fn run(mut self) -> io::Result<()> {
        // The contract's line, exactly: tests and scripts parse it.
        log::info!("listening on {}", self.addr);
        if let Some(p) = &self.plain
            && let Ok(a) = p.listener.local_addr()
        {
            log::info!("plain HTTP on {a}: redirects to https:// and ACME challenges");
        }
        if let Some(a) = self.metrics_door.as_ref().and_then(|l| l.local_addr().ok()) {
            log::info!("/metrics on {a}");
        }
        log::info!("at most {} connections", self.admission.max_conns());
        let mut events = Events::with_capacity(1024);
        loop {
            let busy = !self.read_list.is_empty() || !self.flush_list.is_empty();
            let timeout = if busy {
                std::time::Duration::ZERO
            } else {
                TICK
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let again = std::mem::take(&mut self.read_list);
            let mut woken = false;
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(Door::Main),
                    PLAIN_LISTENER => self.accept(Door::Plain),
                    METRICS_LISTENER => self.accept(Door::Metrics),
                    WAKER => woken = true,
                    SIGNALS => {
                        let pending = self.signals.as_mut().map(Signals::drain);
                        if pending.is_some_and(|p| p.reload) {
                            self.reload();
                        }
                        if pending.is_some_and(|p| p.stop) {
                            self.begin_shutdown();
                        }
                    }
                    token => {
                        if event.is_writable() {
                            self.mark_flush(token);
                        }
                        // A waiting request is not read, so a hang-up would go unseen
                        // until its answer: drop it now, and its queued password job
                        // is skipped instead of hashed for nobody (as nginx aborts).
                        if (event.is_read_closed() || event.is_error())
                            && self.conns.get(token.0).is_some_and(Conn::is_waiting)
                        {
                            self.parts().1.drop_now(token);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(token);
                        }
                    }
                }
            }
            for token in again {
                self.read_again(token);
            }
            if woken {
                self.on_wake();
            }
            if !self.store_paused.is_empty() && self.app.store_caught_up() {
                self.resume_store_paused();
            }
            self.flush_pass();
            {
                let (app, mut out) = self.parts();
                app.on_flushed(&mut out);
            }
            // A stalled accept goes on as soon as closes free descriptors
            // (each shed connection frees one), and at least once a tick.
            let mut closed = self.close_pass();
            while self.accept_stalled && closed {
                self.accept_any();
                closed = self.close_pass();
            }
            let now = self.clock.now_s();
            if self.accept_stalled && now != self.last_sweep {
                self.accept_any();
            }
            if now != self.last_sweep {
                self.last_sweep = now;
                self.sweep(now);
            }
            if let State::Closing { deadline } = self.state
                && (self.conns.is_empty() || now >= deadline)
            {
                break;
            }
        }
        self.app.join();
        log::info!("stopped");
        Ok(())
    }

    /// The one place [`Wires`] is made: splits `self` into the
    /// application, the door to the connections, and what the read path
    /// borrows beside them.
    fn split(&mut self) -> Split<'_> {
        let now = self.clock.now_s();
        let Server {
            app,
            conns,
            flush_list,
            read_list,
            close_list,
            metrics,
            backlog,
            scratch,
            store_paused,
            ..
        } = self;
        Split {
            app,
            out: Wires {
                conns,
                flush_list,
                read_list,
                close_list,
                metrics,
                now,
                backlog,
            },
            scratch,
            store_paused,
        }
    }

    /// Splits `self` into the application and the door to the connections.
    fn parts(&mut self) -> (&mut App, Wires<'_>) {
        let Split { app, out, .. } = self.split();
        (app, out)
    }

    fn mark_flush(&mut self, token: Token) {
        if let Some(c) = self.conns.get_mut(token.0)
            && c.enlist_flush()
        {
            self.flush_list.push(token);
        }
    }

    /// SIGHUP: certificates from their files again (connections keep the
    /// keys they agreed on), then the binary's hook.
    fn reload(&mut self) {
        log::info!("SIGHUP: reloading");
        if let Some(tls) = &self.tls {
            tls.reload();
        }
        if let Some(hook) = &mut self.on_reload {
            hook();
        }
    }

    /// A stalled accept retried: every listener.
    fn accept_any(&mut self) {
        self.accept(Door::Main);
        if self.plain.is_some() {
            self.accept(Door::Plain);
        }
        if self.metrics_door.is_some() {
            self.accept(Door::Metrics);
        }
    }

    /// Accepts from `door` until `WouldBlock`, each connection past the
    /// admission rules (`admission.rs`).
    fn accept(&mut self, door: Door) {
        self.accept_stalled = false;
        let listener = match door {
            Door::Main => self.listener.as_ref(),
            Door::Plain => self.plain.as_ref().map(|p| &p.listener),
            Door::Metrics => self.metrics_door.as_ref(),
        };
        let Some(listener) = listener else {
            return;
        };
        loop {
            let (mut socket, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_out_of_descriptors(&e) && self.admission.release_spare() => {
                    // One descriptor is free now: take the connection the
                    // backlog holds and refuse it properly, then take the
                    // spare back, and go on draining the backlog.
                    if let Ok((socket, _)) = listener.accept() {
                        refuse_full(socket);
                        self.metrics.connections_refused += 1;
                    }
                    self.admission.restore_spare();
                    if !self.accept_stalled {
                        log::warn!("accept: {e}; refusing connections until descriptors free up");
                    }
                    // Remembered (also to log once): go on draining the backlog.
                    self.accept_stalled = true;
                    continue;
                }
                Err(e) => {
                    log::warn!("accept failed: {e}; retrying when a connection closes");
                    self.accept_stalled = true;
                    return;
                }
            };
            let conns = &self.conns;
            let verdict = self.admission.admit(peer.ip(), |t, serial| {
                conns
                    .get(t.0)
                    .is_some_and(|c| c.serial() == serial && c.is_unfinished() && !c.is_closing())
            });
            let mut shed = false;
            match verdict {
                Verdict::Admit => {}
                Verdict::AdmitShedding(token, _) => {
                    log::debug!("shedding unfinished {token:?} for a new connection");
                    if let Some(c) = self.conns.get_mut(token.0)
                        && c.close_now()
                    {
                        self.close_list.push(token);
                    }
                    // Its descriptor is freed in this pass's close pass; the
                    // rest of the backlog waits for that, so the server never
                    // holds more than one connection over its cap.
                    shed = true;
                }
                Verdict::RefuseAddress => {
                    log::debug!("refusing {peer}: too many unfinished connections");
                    self.metrics.connections_refused += 1;
                    continue;
                }
                Verdict::RefuseFull => {
                    refuse_full(socket);
                    self.metrics.connections_refused += 1;
                    continue;
                }
            }
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
            let transport = match (&self.tls, door) {
                (Some(tls), Door::Main) => match tls.session() {
                    Ok(session) => Transport::tls(socket, session),
                    Err(e) => {
                        log::warn!("no TLS session for {peer}: {e}");
                        let _ = self.poll.registry().deregister(&mut socket);
                        continue;
                    }
                },
                _ => Transport::Plain(socket),
            };
            self.next_serial += 1;
            let mut conn = Conn::new(transport, peer.ip(), self.next_serial, self.clock.now_s());
            conn.came_through(door);
            entry.insert(conn);
            self.admission.opened(peer.ip(), token, self.next_serial);
            self.metrics.connections_accepted += 1;
            if shed {
                self.accept_stalled = true;
                return;
            }
        }
    }

    /// A connection listed to read again: it may hold requests or frames
    /// already read (held back while it waited), which go first.
    fn read_again(&mut self, token: Token) {
        let Some(c) = self.conns.get_mut(token.0) else {
            return;
        };
        c.delist_read();
        c.release_input();
        if c.body_left().is_some() {
            return self.read_body(token);
        }
        if !c.is_ws() {
            self.process_http(token);
        } else if c.has_pending_input() {
            self.process_ws(token, 0);
        }
        self.on_readable(token);
    }

    /// Reads an upload's body: the bytes that came with its head first,
    /// then from the socket, each read no bigger than the room the
    /// application has for it (its window to the file thread). With no
    /// room the connection pauses: not read, not timed out, until the
    /// application resumes it (`Outbox::resume_input`). The bytes after the
    /// body (a pipelined request) stay in its input for later.
    fn read_body(&mut self, token: Token) {
        if self.state != State::Running {
            return;
        }
        let now = self.clock.now_s();
        let mut read = 0;
        loop {
            let Some(conn) = self.conns.get_mut(token.0) else {
                return;
            };
            let Some(left) = conn.body_left() else {
                // The body is in: what follows waits for its answer.
                return;
            };
            if conn.is_closing() {
                return self.on_readable(token);
            }
            if conn.has_pending_input() {
                let mut input = conn.take_input();
                let n = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let rest = input.split_off(n);
                conn.keep_input(&rest);
                let last = conn.took_body(n as u64);
                let (app, mut out) = self.parts();
                app.on_body(&mut out, token, &input, last);
                continue;
            }
            let room = self
                .app
                .body_room(token)
                .min(usize::try_from(left).unwrap_or(usize::MAX))
                .min(self.scratch.len());
            let conn = &mut self.conns[token.0];
            if room == 0 {
                conn.pause_body(true, now);
                return;
            }
            if read >= READ_BUDGET {
                if conn.enlist_read() {
                    self.read_list.push(token);
                }
                return;
            }
            let result = conn.read_into(&mut self.scratch[..room], now);
            if conn.wants_write() && conn.enlist_flush() {
                self.flush_list.push(token);
            }
            match result {
                Ok(ReadOutcome::Data(n)) => {
                    read += n;
                    let last = self.conns[token.0].took_body(n as u64);
                    let Split {
                        app,
                        mut out,
                        scratch,
                        ..
                    } = self.split();
                    app.on_body(&mut out, token, &scratch[..n], last);
                }
                Ok(ReadOutcome::WouldBlock) => return,
                // The body was cut short: the application forgets the
                // upload when it hears of the close.
                Ok(ReadOutcome::Eof) => return self.parts().1.drop_now(token),
                Err(e) => {
                    log::debug!("read error on {token:?} in a body: {e}");
                    return self.parts().1.drop_now(token);
                }
            }
        }
    }

    /// Reads until `WouldBlock` or the read budget, processing as it goes.
    fn on_readable(&mut self, token: Token) {
        if self.state != State::Running {
            return;
        }
        let now = self.clock.now_s();
        let mut read = 0;
        loop {
            let Some(conn) = self.conns.get_mut(token.0) else {
                return;
            };
            if conn.body_left().is_some() && !conn.is_closing() {
                return self.read_body(token);
            }
            if conn.read_blocked() {
                return;
            }
            if conn.is_chat() && !conn.is_closing() && !self.app.takes_input(token) {
                // A frame waits for its storage read to fit; the hub resumes us.
                return;
            }
            if conn.is_chat() && !conn.is_closing() && self.app.store_backlogged() {
                // Backpressure: storage is behind; its queue is not a buffer to fill.
                if conn.wait_for_store() {
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
            let draining = conn.is_closing();
            let result = conn.read_into(&mut self.scratch, now);
            // A TLS handshake flight (or alert) the read produced goes out
            // in this pass's flush.
            if conn.wants_write() && conn.enlist_flush() {
                self.flush_list.push(token);
            }
            match result {
                Ok(ReadOutcome::Data(n)) => {
                    read += n;
                    if draining {
                        continue;
                    }
                    if conn.is_ws() {
                        self.process_ws(token, n);
                    } else {
                        conn.append_input(&self.scratch[..n]);
                        self.process_http(token);
                    }
                }
                Ok(ReadOutcome::WouldBlock) => return,
                Ok(ReadOutcome::Eof) => return self.on_eof(token),
                Err(e) => {
                    log::debug!("read error on {token:?}: {e}");
                    return self.parts().1.drop_now(token);
                }
            }
        }
    }

    /// The peer sent all it will: a half-close (`shutdown(SHUT_WR)`) or a
    /// close. What is queued for it still goes out: an HTTP connection
    /// (whose whole requests were all answered before its end was read)
    /// closes after the flush, so pipelined replies and a last 400 are not
    /// lost; a connection already closing after its flush goes on with it.
    /// Anything else is dropped now.
    fn on_eof(&mut self, token: Token) {
        let (_, mut out) = self.parts();
        let Some(conn) = out.conns.get(token.0) else {
            return;
        };
        if conn.is_flushing_to_close() {
            return;
        }
        if conn.is_closing() || conn.is_ws() {
            return out.drop_now(token);
        }
        out.close_after_flush(token);
        out.mark_flush(token);
    }

    /// Parses and answers the complete requests in the connection's input,
    /// in order, stopping at one that waits for an asynchronous answer.
    fn process_http(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        let input = conn.take_input();
        let serial = conn.serial();
        let peer = conn.peer();
        // The plain listener's connections get redirects, nothing else.
        let door = conn.door();
        let redirect_to = match (door, &self.plain) {
            (Door::Plain, Some(p)) => Some((p.challenges.clone(), self.addr.port())),
            _ => None,
        };
        let metrics_moved = self.metrics_door.is_some();
        let mut pos = 0;
        let mut answered = 0;
        loop {
            let conn = &mut self.conns[token.0];
            // A streamed body is read by `read_body`, not parsed here.
            if conn.is_closing()
                || conn.is_waiting()
                || conn.body_left().is_some()
                || pos == input.len()
            {
                break;
            }
            if conn.pause_if_full() {
                break;
            }
            if answered == MAX_REQUESTS_PER_PASS {
                // Pipelined requests past the cap wait for the next pass, so
                // 64 KiB of `GET /metrics` cannot hold the loop for one client;
                // and nothing more is read until they are answered, so input
                // sent without reading the replies waits in the socket.
                conn.hold_input();
                if conn.enlist_read() {
                    self.read_list.push(token);
                }
                break;
            }
            answered += 1;
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let parsed = request::parse_streaming(&input[pos..], &mut headers, files::streams_body);
            if matches!(parsed, Ok(Some(_))) && self.conns[token.0].finish_request() {
                self.admission.finished(peer);
            }
            let (app, mut out) = self.parts();
            let now = out.now;
            match parsed {
                Ok(None) => break,
                Err(e) => {
                    app.on_bad_request(&mut out, token, e);
                    break;
                }
                Ok(Some((req, used))) => {
                    pos += used;
                    log::debug!("{} {}", req.method, req.path);
                    if let Some((challenges, https_port)) = &redirect_to {
                        let resp = redirect::answer(&req, challenges, *https_port);
                        routes::send(
                            &mut out,
                            token,
                            resp,
                            req.keep_alive(),
                            req.method == "HEAD",
                        );
                        out.conns[token.0].set_waiting(false, now);
                        continue;
                    }
                    // With `--metrics-addr`, `/metrics` answers on its own
                    // door only, and that door answers nothing else.
                    let not_here = match door {
                        Door::Metrics => req.path != "/metrics",
                        _ => metrics_moved && req.path == "/metrics",
                    };
                    if not_here {
                        let resp = Response::error(404, "not_found", "no such endpoint");
                        let head_only = req.method == "HEAD";
                        routes::send(&mut out, token, resp, req.keep_alive(), head_only);
                        out.conns[token.0].set_waiting(false, now);
                        continue;
                    }
                    let conn_ref = ConnRef { token, serial };
                    match app.on_request(&mut out, conn_ref, peer, &req) {
                        Handled::Done => out.conns[token.0].set_waiting(false, now),
                        Handled::Waiting => out.conns[token.0].set_waiting(true, now),
                        Handled::Upgrade(up) => {
                            out.conns[token.0].upgrade(up.user.is_none(), now);
                            app.on_upgraded(&mut out, conn_ref, up);
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
    /// new bytes at the start of the scratch buffer, and hands each whole
    /// message to the application.
    fn process_ws(&mut self, token: Token, n: usize) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        let echo = conn.is_echo();
        // Usually nothing is left over and frames are decoded in the scratch
        // buffer itself; otherwise the new bytes join the leftover.
        let mut owned = conn.take_input();
        let use_owned = !owned.is_empty();
        if use_owned {
            owned.extend_from_slice(&self.scratch[..n]);
        }
        let Split {
            app,
            mut out,
            scratch,
            store_paused,
        } = self.split();
        let data: &mut [u8] = if use_owned {
            &mut owned
        } else {
            &mut scratch[..n]
        };
        let mut pos = 0;
        while pos < data.len() {
            if out.conns.get(token.0).is_none_or(Conn::is_closing) {
                return;
            }
            if !echo && !app.takes_input(token) {
                // The last frame waits for its storage read (`hub/reads.rs`):
                // the rest stays in the buffer until the hub resumes us.
                break;
            }
            if !echo && app.store_backlogged() {
                // Storage is behind: leave the rest of the input where it is
                // (it is kept below) until storage catches up.
                if out.conns[token.0].wait_for_store() {
                    store_paused.push(token);
                }
                break;
            }
            let frame = match codec::decode_frame(&mut data[pos..], MAX_WS_MESSAGE) {
                Ok(None) => {
                    // Text that is already invalid fails now, not once whole.
                    let checked = out.conns[token.0]
                        .assembler_mut()
                        .map_or(Ok(()), |a| a.check_partial(&data[pos..]));
                    if let Err(v) = checked {
                        log::debug!("closing {token:?}: {}", v.reason());
                        return out.close_ws(token, v.close_code(), v.reason());
                    }
                    break;
                }
                Ok(Some(f)) => RawFrame {
                    payload: f.payload.start + pos..f.payload.end + pos,
                    ..f
                },
                Err(v) => {
                    log::debug!("closing {token:?}: {}", v.reason());
                    return out.close_ws(token, v.close_code(), v.reason());
                }
            };
            pos = frame.payload.end;
            let Some(assembler) = out.conns[token.0].assembler_mut() else {
                return;
            };
            let fed = match assembler.feed(&frame, data, MAX_WS_MESSAGE) {
                Ok(f) => f,
                Err(v) => {
                    log::debug!("closing {token:?}: {}", v.reason());
                    return out.close_ws(token, v.close_code(), v.reason());
                }
            };
            match fed {
                Fed::Pending => {}
                Fed::Whole(msg) => app.on_ws_message(&mut out, token, echo, msg),
                Fed::Assembled(kind, bytes) => {
                    let msg = match kind {
                        tungstenite::protocol::frame::coding::Data::Text => Message::Text(
                            std::str::from_utf8(&bytes).expect("checked by the assembler"),
                        ),
                        _ => Message::Binary(&bytes),
                    };
                    app.on_ws_message(&mut out, token, echo, msg);
                }
            }
        }
        let rest = &data[pos..];
        if let Some(conn) = out.conns.get_mut(token.0) {
            conn.keep_input(rest);
        }
    }

    fn on_wake(&mut self) {
        if self.shutdown.swap(false, Ordering::SeqCst) {
            self.begin_shutdown();
        }
        let (app, mut out) = self.parts();
        let drained = app.on_wake(&mut out);
        if drained && self.state == State::Draining {
            self.close_everything();
        }
    }

    /// Storage caught up: read again from the connections paused for it.
    fn resume_store_paused(&mut self) {
        for token in std::mem::take(&mut self.store_paused) {
            let Some(conn) = self.conns.get_mut(token.0) else {
                continue;
            };
            conn.stop_waiting_for_store();
            if conn.enlist_read() {
                self.read_list.push(token);
            }
        }
    }

    /// One write turn per listed connection, within its budget.
    fn flush_pass(&mut self) {
        let list = std::mem::take(&mut self.flush_list);
        let now = self.clock.now_s();
        for token in list {
            let Some(conn) = self.conns.get_mut(token.0) else {
                continue;
            };
            conn.delist_flush();
            if conn.is_dropping() {
                continue;
            }
            match self
                .backlog
                .track(conn, |c| c.write_turn(WRITE_BUDGET, now))
            {
                Ok(done) => {
                    if done.resume_reading && conn.enlist_read() {
                        self.read_list.push(token);
                    }
                    if done.again && conn.enlist_flush() {
                        self.flush_list.push(token);
                    }
                    if done.drop {
                        self.close_list.push(token);
                    }
                }
                Err(e) => {
                    log::debug!("write error on {token:?}: {e}");
                    self.parts().1.drop_now(token);
                }
            }
        }
    }

    /// The one teardown path: the application hears of every closing
    /// connection (once: it forgets the session), and those that are done
    /// are deregistered and dropped.
    /// Returns whether a connection was dropped (a descriptor freed).
    fn close_pass(&mut self) -> bool {
        let mut dropped = false;
        while !self.close_list.is_empty() {
            let list = std::mem::take(&mut self.close_list);
            for token in list {
                let Some(conn) = self.conns.get(token.0) else {
                    continue;
                };
                let dropping = conn.is_dropping();
                let (app, mut out) = self.parts();
                app.on_closed(&mut out, token);
                if dropping && self.conns.contains(token.0) {
                    let mut conn = self.conns.remove(token.0);
                    self.backlog.forget(&conn);
                    let _ = self.poll.registry().deregister(conn.socket_mut());
                    self.admission.closed(conn.peer(), conn.is_unfinished());
                    dropped = true;
                }
            }
        }
        dropped
    }

    /// Timers, once a second. O(connections): about a millisecond at 50,000,
    /// cheaper than keeping a timer wheel in order on every frame.
    fn sweep(&mut self, now: u32) {
        let mut due = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            let timer = conn.tick(now);
            if timer != Timer::None {
                due.push((Token(key), timer));
            }
        }
        let (app, mut out) = self.parts();
        app.on_tick(&mut out);
        for (token, timer) in due {
            match timer {
                Timer::Ping => out.ping(token),
                Timer::Idle => out.close_ws(token, 1001, "idle timeout"),
                Timer::SlowConsumer => {
                    out.metrics.slow_consumer_cuts += 1;
                    out.drop_now(token);
                }
                Timer::Drop => out.drop_now(token),
                Timer::None => {}
            }
        }
    }

    /// Shutdown phase 1: stop accepting and reading; ask storage to commit
    /// everything queued. Closing starts when storage says it has.
    fn begin_shutdown(&mut self) {
        if self.state != State::Running {
            return;
        }
        log::info!("shutting down: no new connections; flushing storage");
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        if let Some(mut p) = self.plain.take() {
            let _ = self.poll.registry().deregister(&mut p.listener);
        }
        self.state = State::Draining;
        if !self.app.begin_drain() {
            self.close_everything();
        }
    }

    /// Shutdown phase 2: storage is flushed. Close frames (1001) to every
    /// WebSocket, every HTTP connection closed, `SHUTDOWN_GRACE` for them to
    /// go out.
    fn close_everything(&mut self) {
        let tokens: Vec<(Token, bool)> = self
            .conns
            .iter()
            .map(|(k, c)| (Token(k), c.is_ws()))
            .collect();
        self.app.go_quiet();
        let (_, mut out) = self.parts();
        for (token, ws) in tokens {
            if ws {
                out.close_ws(token, 1001, "server shutting down");
            } else {
                out.close_after_flush(token);
                out.read_list.retain(|t| *t != token);
            }
        }
        let deadline = self.clock.now_s() + SHUTDOWN_GRACE.as_secs() as u32;
        self.state = State::Closing { deadline };
    }
}

impl Wires<'_> {
    fn mark_flush(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(token.0)
            && conn.enlist_flush()
        {
            self.flush_list.push(token);
        }
    }

    /// The server's ping (two constant bytes).
    fn ping(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        if !conn.is_closing()
            && self
                .backlog
                .track(conn, |c| c.queue_static(&codec::PING_FRAME))
        {
            self.mark_flush(token);
        }
    }

    /// Slow consumer: forget what it has not started to receive, tell it why
    /// (1008) if the frame still fits, and close.
    fn cut_slow(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        log::info!(
            "closing slow consumer {:?} with {} bytes unsent",
            token,
            conn.queued()
        );
        self.metrics.slow_consumer_cuts += 1;
        let mut frame = Vec::with_capacity(48);
        codec::encode_close(&mut frame, 1008, "slow consumer: output buffer full");
        self.backlog.track(conn, |c| c.cut(&frame));
        self.close_list.push(token);
        self.mark_flush(token);
    }

    fn close_after_flush(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(token.0)
            && conn.close_after_flush(self.now)
        {
            self.close_list.push(token);
        }
    }

    /// Drops the connection at the end of this pass, without another byte.
    fn drop_now(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(token.0)
            && conn.close_now()
        {
            self.close_list.push(token);
        }
    }
}

impl Outbox for Wires<'_> {
    fn is_live(&self, c: ConnRef) -> bool {
        self.conns
            .get(c.token.0)
            .is_some_and(|conn| conn.serial() == c.serial && !conn.is_closing())
    }

    fn frame(&mut self, token: Token, frame: &Rc<[u8]>) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        if conn.is_closing() {
            return;
        }
        if self.backlog.track(conn, |c| c.queue_shared(frame)) {
            self.metrics.ws_frames_out += 1;
            self.mark_flush(token);
        } else {
            self.cut_slow(token);
        }
    }

    fn reply(&mut self, token: Token, bytes: &[u8]) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        if conn.is_closing() {
            return;
        }
        if self.backlog.track(conn, |c| c.queue_owned(bytes)) {
            self.metrics.ws_frames_out += u64::from(conn.is_ws());
            self.mark_flush(token);
        } else {
            self.cut_slow(token);
        }
    }

    fn respond(&mut self, token: Token, head: &[u8], body: Cow<'static, [u8]>, close: bool) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        let ok = self.backlog.track(conn, |c| {
            let mut ok = c.queue_owned(head);
            if !body.is_empty() {
                ok &= match body {
                    Cow::Borrowed(b) => c.queue_static(b),
                    Cow::Owned(ref b) => c.queue_owned(b),
                };
            }
            ok
        });
        if !ok || close {
            self.close_after_flush(token);
        }
        self.mark_flush(token);
    }

    fn resume_http(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        conn.set_waiting(false, self.now);
        if conn.enlist_read() {
            self.read_list.push(token);
        }
    }

    fn queued(&self, token: Token) -> usize {
        self.conns.get(token.0).map_or(0, Conn::queued)
    }

    fn queued_everywhere(&self) -> usize {
        self.backlog.bytes()
    }

    fn resume_input(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(token.0) {
            conn.pause_body(false, self.now);
            if conn.enlist_read() {
                self.read_list.push(token);
            }
        }
    }

    fn start_body(&mut self, token: Token, len: u64, continue_first: bool) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        if conn.is_closing() {
            return;
        }
        if continue_first && self.backlog.track(conn, |c| c.queue_static(CONTINUE)) {
            self.mark_flush(token);
        }
        let conn = &mut self.conns[token.0];
        conn.start_body(len, self.now);
        if conn.enlist_read() {
            self.read_list.push(token);
        }
    }

    fn body(&mut self, token: Token, bytes: Vec<u8>) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        if conn.is_closing() {
            return;
        }
        if self.backlog.track(conn, |c| c.queue_vec(bytes)) {
            self.mark_flush(token);
        } else {
            self.drop_now(token);
        }
    }

    fn abort(&mut self, token: Token) {
        self.drop_now(token);
    }

    fn close_ws(&mut self, token: Token, code: u16, reason: &str) {
        let Some(conn) = self.conns.get_mut(token.0) else {
            return;
        };
        let mut frame = Vec::with_capacity(8 + reason.len());
        codec::encode_close(&mut frame, code, reason);
        let now = self.now;
        if self
            .backlog
            .track(conn, |c| c.close_with_frame(&frame, now))
        {
            self.close_list.push(token);
            self.mark_flush(token);
        }
    }

    fn metrics(&mut self) -> &mut Metrics {
        self.metrics
    }

    fn open_connections(&self) -> usize {
        self.conns.len()
    }

    fn is_tls(&self, token: Token) -> bool {
        self.conns.get(token.0).is_some_and(Conn::is_tls)
    }
}

/// The interim answer to `Expect: 100-continue` (RFC 9110 §10.1.1): the
/// server will read the body, so the client may send it now.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// `EMFILE` (this process) or `ENFILE` (the system) from `accept`.
fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// The whole answer to a connection the server has no room for: written
/// once without blocking (a fresh socket's buffer takes it), then closed.
fn refuse_full(mut socket: mio::net::TcpStream) {
    use std::io::Write;
    const FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
Content-Length: 63\r\nConnection: close\r\nRetry-After: 1\r\n\r\n\
{\"error\":\"the server is at its connection limit\",\"code\":\"busy\"}";
    let _ = socket.write(FULL);
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
