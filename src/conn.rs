//! One client connection: its socket, what phase it is in, the few bytes of
//! input it could not use yet, and its queue of output with partial-write
//! tracking and the output limits (Redis `networking.c`'s reply list, in Rust).
//!
//! A connection knows nothing about rooms or users. Frames arrive on its queue
//! as shared bytes (`Rc<[u8]>`: a broadcast is framed once and queued on every
//! recipient without copying) or as owned bytes (replies to this connection
//! alone, coalesced so a burst of small replies is one buffer).
//!
//! A connection also owns its lifecycle: the close state machine
//! ([`Closing`]) is changed only by its own methods, and its timers (head
//! timeout, ping, idle, soft output limit, close linger) are pure rules over
//! its clocks ([`timer_due`]); the reactor only asks and obeys.
//!
//! Memory: an idle connection holds no buffer. Reads go through the loop's
//! shared scratch buffer; only an incomplete request or frame is copied into
//! the connection's [`Buffers`] (with the output queue), which are freed as
//! soon as both are empty. What stays is the `Conn` itself, 96 bytes (its
//! test pins the size).
//! Under TLS (`transport.rs`) the same holds for hubbub's own buffers;
//! rustls keeps its session (keys, a 4 KiB record buffer) per connection.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::IpAddr;
use std::rc::Rc;

use mio::net::TcpStream;

use crate::config::{
    CLOSE_FLUSH_TIMEOUT, CLOSE_LINGER, HEAD_TIMEOUT, IDLE_TIMEOUT, KEEP_BUFFER_BYTES, MAX_IOVECS,
    OUTPUT_CEILING, OUTPUT_HARD_LIMIT, OUTPUT_SOFT_LIMIT, OUTPUT_SOFT_SECONDS, PING_INTERVAL,
    READ_PAUSE_BYTES, TRANSFER_IDLE_TIMEOUT,
};
use crate::transport::Transport;
use crate::ws::codec::Assembler;

/// Bytes queued for a socket.
pub enum Chunk {
    /// One encoding of a broadcast frame, shared by every recipient.
    Shared(Rc<[u8]>),
    /// Bytes for this connection only (HTTP responses, acks, errors).
    Owned(Vec<u8>),
    /// Constant frames (the server's ping).
    Static(&'static [u8]),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Shared(b) => b,
            Chunk::Owned(b) => b,
            Chunk::Static(b) => b,
        }
    }
}

/// Owned replies are appended to the last owned chunk while it is smaller
/// than this, so many small replies go out as one buffer.
const COALESCE_BYTES: usize = 16 * 1024;

/// What the connection is speaking.
enum Phase {
    /// HTTP/1.1 requests. `waiting` is true while a request is being answered
    /// asynchronously (hashing, storage); later pipelined requests wait in
    /// `pending_input` so responses go out in order.
    Http { waiting: bool },
    /// WebSocket after a successful upgrade. `echo` is the `/ws/echo` endpoint.
    Ws { assembler: Assembler, echo: bool },
    /// An upload's body, streamed to the application as it is read: `left`
    /// bytes to come. `paused` while the application has no room for more
    /// (the reactor stops reading; its idle timer stops too). Back to
    /// `Http { waiting: true }` once the body is in.
    Body { left: u64, paused: bool },
}

/// Why and how a connection is going away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// Flush what is queued, then close (after an HTTP `Connection: close`
    /// response, or after the server's close frame). Since when, in loop seconds.
    AfterFlush(u32),
    /// Flushed and FIN sent; reading (and discarding) until the peer closes
    /// too, so our last bytes are not lost to a reset. Since when.
    Draining(u32),
    /// A slow consumer: one write attempt for what is queued (its close
    /// frame), then drop, however much is left.
    Cut,
    /// Drop now: the peer is gone or broke the protocol beyond reply.
    Now,
}

/// Result of a read attempt.
pub enum ReadOutcome {
    /// `n` bytes are in the scratch buffer.
    Data(usize),
    /// Nothing more for now.
    WouldBlock,
    /// The peer closed its side.
    Eof,
}

/// Result of a flush attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// The queue is empty.
    All,
    /// The write budget ran out with bytes still queued: write again next turn.
    Budget,
    /// The socket is full: wait for a writable event.
    Blocked,
}

/// What a connection is, for its timers.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Http {
        waiting: bool,
    },
    Ws,
    /// Reading an upload's body (`paused`: the server is not reading).
    Body {
        paused: bool,
    },
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
        (None, Kind::Body { paused: true }) => Timer::None,
        (None, Kind::Body { paused: false }) => {
            let quiet = since(last_input.max(timer_start));
            if quiet >= TRANSFER_IDLE_TIMEOUT.as_secs() as u32 {
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

/// What a write turn left behind, for the reactor's lists.
#[derive(Debug, PartialEq, Eq)]
pub struct Written {
    /// The budget ran out with bytes still queued: flush again next pass.
    pub again: bool,
    /// Output drained below [`READ_PAUSE_BYTES`]: read from it again.
    pub resume_reading: bool,
    /// Drop the connection at the end of this pass.
    pub drop: bool,
}

/// The unsent output of every connection together, kept current: every
/// change to a connection's queue goes through [`Backlog::track`], which
/// counts what it added or wrote, and a connection dropped takes its unsent
/// bytes out with it ([`Backlog::forget`]). The server-wide reply budget
/// (`hub/reads.rs`) reads it before every storage read it lets start, so it
/// must be this moment's total, and O(1): a sum over every connection on
/// each ask would be a pass over all of them, and a sum taken once a second
/// (as it was) let a burst of reads in on a total up to a second old.
#[derive(Debug, Default)]
pub struct Backlog {
    bytes: usize,
}

impl Backlog {
    /// Runs `change` on `conn`, counting how much it moved the connection's
    /// unsent output (queued bytes add, written or discarded bytes take away).
    #[inline]
    pub fn track<R>(&mut self, conn: &mut Conn, change: impl FnOnce(&mut Conn) -> R) -> R {
        let before = conn.queued();
        let result = change(conn);
        self.bytes = self.bytes - before + conn.queued();
        result
    }

    /// `conn` is being dropped: what it never sent leaves the total.
    pub fn forget(&mut self, conn: &Conn) {
        self.bytes -= conn.queued();
    }

    /// Unsent output bytes of every connection, now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// What a connection holds only while bytes move through it: input that is
/// not yet a whole request or frame, and output not yet written. Boxed, and
/// freed by the once-a-second sweep when both are empty, so an idle
/// connection holds one null pointer instead of a hundred bytes of empty
/// queues and counters.
#[derive(Default)]
struct Buffers {
    /// Input that did not yet form a whole request or frame.
    input: Vec<u8>,
    out: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    out_offset: usize,
    /// Unsent bytes in `out`.
    out_bytes: usize,
    /// Unsent bytes of shared (broadcast) chunks: what the slow-consumer
    /// limits look at.
    live_bytes: usize,
    /// Since when unsent output has been above the soft limit.
    over_soft_since: Option<u32>,
    /// A broadcast was queued since these buffers were made: the connection
    /// is in a live room, more will come, so they are kept until the sweep
    /// finds them empty rather than made again for every frame.
    live: bool,
}

impl Buffers {
    fn push(&mut self, chunk: Chunk, len: usize) -> bool {
        if self.out_bytes + len > OUTPUT_CEILING {
            if matches!(chunk, Chunk::Shared(_)) {
                self.live_bytes -= len;
            }
            return false;
        }
        self.out.push_back(chunk);
        self.out_bytes += len;
        true
    }

    /// Marks `n` bytes as written, popping chunks that are done.
    fn advance(&mut self, mut n: usize) {
        self.out_bytes -= n;
        while n > 0 {
            let front = self.out.front().expect("wrote more than was queued");
            let shared = matches!(front, Chunk::Shared(_));
            let left = front.bytes().len() - self.out_offset;
            let done = n.min(left);
            if shared {
                self.live_bytes -= done;
            }
            n -= done;
            if done == left {
                self.out_offset = 0;
                self.out.pop_front();
            } else {
                self.out_offset += done;
            }
        }
    }
}

pub struct Conn {
    /// The socket, plain or TLS (`transport.rs`).
    transport: Transport,
    /// The TCP peer's address: what per-address limits count by (behind a
    /// trusted proxy the HTTP desk reads the client's own from its headers).
    peer: IpAddr,
    /// Unique for the life of the process: tokens (slab keys) are reused, so
    /// asynchronous answers carry the serial to find the same connection.
    serial: u64,
    phase: Phase,
    /// Leftover input and the output queue; `None` while both are empty.
    bufs: Option<Box<Buffers>>,
    /// Changed only by this file's methods: the close state machine is
    /// `None → AfterFlush → Draining`, or `→ Cut → Now`, or `→ Now`.
    closing: Option<Closing>,
    /// Coarse clock (seconds since the server started) of the last byte read.
    last_input: u32,
    /// When the current deadline started: the HTTP head timeout, or for a
    /// WebSocket the last ping sent.
    timer_start: u32,
    /// Already in the loop's list of connections to flush this turn.
    in_flush_list: bool,
    /// Already in the loop's list of connections to read again next turn.
    in_read_list: bool,
    /// Not read from until its output drains (see `READ_PAUSE_BYTES`).
    read_paused: bool,
    /// Holds whole requests not answered yet (the per-pass cap stopped
    /// them): not read from until they are, so pipelined input waits in
    /// the socket, not in memory.
    input_held: bool,
    /// Not read from until the storage queue drains (see `Config::store_queue`);
    /// the connection is in the loop's list of such connections.
    waiting_for_store: bool,
    /// Has not completed a request yet (see `admission.rs`).
    unfinished: bool,
    /// The listener it came through: what it may ask for.
    door: Door,
}

/// Which listener a connection came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// `--addr`: the API, the WebSockets, the web client (TLS when configured).
    Main,
    /// `--http-addr`: redirects to https:// and ACME challenges only
    /// (`http/redirect.rs`).
    Plain,
    /// `--metrics-addr`: `/metrics` only, so an operator can keep it off
    /// the public port.
    Metrics,
}

impl Conn {
    pub fn new(transport: Transport, peer: IpAddr, serial: u64, now: u32) -> Conn {
        Conn {
            transport,
            peer,
            serial,
            phase: Phase::Http { waiting: false },
            bufs: None,
            closing: None,
            last_input: now,
            timer_start: now,
            in_flush_list: false,
            in_read_list: false,
            read_paused: false,
            input_held: false,
            waiting_for_store: false,
            unfinished: true,
            door: Door::Main,
        }
    }

    /// Marks the listener it came through (`Door::Main` unless told).
    pub fn came_through(&mut self, door: Door) {
        self.door = door;
    }

    pub fn door(&self) -> Door {
        self.door
    }

    pub fn serial(&self) -> u64 {
        self.serial
    }

    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    /// Has not completed a request yet.
    pub fn is_unfinished(&self) -> bool {
        self.unfinished
    }

    /// A request is complete. True the first time (the connection is no
    /// longer counted against its address's quota of unfinished ones).
    pub fn finish_request(&mut self) -> bool {
        std::mem::replace(&mut self.unfinished, false)
    }

    /// The socket, to register and deregister with the `Poll`.
    pub fn socket_mut(&mut self) -> &mut TcpStream {
        self.transport.socket_mut()
    }

    /// Speaks TLS (its HTTP responses carry HSTS).
    pub fn is_tls(&self) -> bool {
        self.transport.is_tls()
    }

    /// The transport has bytes of its own to send (a TLS handshake flight
    /// produced by a read): list the connection for the flush pass.
    pub fn wants_write(&self) -> bool {
        self.transport.wants_write()
    }

    pub fn is_ws(&self) -> bool {
        matches!(self.phase, Phase::Ws { .. })
    }

    /// A chat WebSocket (not `/ws/echo`): its frames go to the hub.
    pub fn is_chat(&self) -> bool {
        matches!(self.phase, Phase::Ws { echo: false, .. })
    }

    pub fn is_echo(&self) -> bool {
        matches!(self.phase, Phase::Ws { echo: true, .. })
    }

    /// An HTTP connection whose request is being answered asynchronously.
    pub fn is_waiting(&self) -> bool {
        matches!(self.phase, Phase::Http { waiting: true })
    }

    /// An HTTP request went asynchronous (`true`), or its answer went out.
    pub fn set_waiting(&mut self, waiting: bool, now: u32) {
        if let Phase::Http { waiting: w } = &mut self.phase {
            *w = waiting;
        }
        if !waiting {
            self.timer_start = now;
        }
    }

    /// The 101 is queued: from the next byte this is a WebSocket.
    pub fn upgrade(&mut self, echo: bool, now: u32) {
        self.phase = Phase::Ws {
            assembler: Assembler::default(),
            echo,
        };
        self.timer_start = now;
    }

    /// The WebSocket reassembly state (`None` for HTTP).
    pub fn assembler_mut(&mut self) -> Option<&mut Assembler> {
        match &mut self.phase {
            Phase::Ws { assembler, .. } => Some(assembler),
            Phase::Http { .. } | Phase::Body { .. } => None,
        }
    }

    // ---- an upload's body ------------------------------------------------------

    /// The next `len` bytes are a request body for the application.
    pub fn start_body(&mut self, len: u64, now: u32) {
        self.phase = Phase::Body {
            left: len,
            paused: false,
        };
        self.timer_start = now;
    }

    /// Body bytes still to come, while reading one.
    pub fn body_left(&self) -> Option<u64> {
        match self.phase {
            Phase::Body { left, .. } => Some(left),
            _ => None,
        }
    }

    /// `n` body bytes went to the application; true when that was the
    /// last of them (the request now waits for its answer).
    pub fn took_body(&mut self, n: u64) -> bool {
        let Phase::Body { left, .. } = &mut self.phase else {
            return false;
        };
        *left = left.saturating_sub(n);
        if *left > 0 {
            return false;
        }
        self.phase = Phase::Http { waiting: true };
        true
    }

    /// The application has no room for more body (`true`), or has again:
    /// a paused upload is not timed out for the server's slowness, and its
    /// idle clock starts over when it resumes.
    pub fn pause_body(&mut self, paused: bool, now: u32) {
        if let Phase::Body { paused: p, .. } = &mut self.phase {
            if *p && !paused {
                self.timer_start = now;
            }
            *p = paused;
        }
    }

    /// Unsent output bytes.
    pub fn queued(&self) -> usize {
        self.bufs.as_ref().map_or(0, |b| b.out_bytes)
    }

    /// Unsent bytes of broadcast frames.
    pub fn live_queued(&self) -> usize {
        self.bufs.as_ref().map_or(0, |b| b.live_bytes)
    }

    /// The buffers, made when first needed.
    fn bufs(&mut self) -> &mut Buffers {
        self.bufs.get_or_insert_with(Box::default)
    }

    // ---- the close state machine -------------------------------------------

    /// Not taking input or output any more (closing in any way).
    pub fn is_closing(&self) -> bool {
        self.closing.is_some()
    }

    /// To be dropped at the end of this pass, without another byte.
    pub fn is_dropping(&self) -> bool {
        self.closing == Some(Closing::Now)
    }

    /// Flush what is queued, then close. True when this started the close
    /// (the caller lists the connection for the close pass).
    pub fn close_after_flush(&mut self, now: u32) -> bool {
        if self.closing.is_some() {
            return false;
        }
        self.closing = Some(Closing::AfterFlush(now));
        true
    }

    /// Closing once its queued output is out (not yet flushed).
    pub fn is_flushing_to_close(&self) -> bool {
        matches!(self.closing, Some(Closing::AfterFlush(_)))
    }

    /// Drop at the end of the pass. True when the state changed.
    pub fn close_now(&mut self) -> bool {
        if self.closing == Some(Closing::Now) {
            return false;
        }
        self.closing = Some(Closing::Now);
        true
    }

    /// Queues a close frame and closes after it. A close frame is tiny: it
    /// may go past the hard limit by its size, dropping unsent output to fit
    /// the ceiling. True when this started the close.
    pub fn close_with_frame(&mut self, frame: &[u8], now: u32) -> bool {
        if self.closing.is_some() {
            return false;
        }
        if !self.queue_owned(frame) {
            self.discard_unsent();
            self.queue_owned(frame);
        }
        self.close_after_flush(now)
    }

    /// Slow consumer: forget what it has not started to receive, queue the
    /// close frame, and give it one write attempt.
    pub fn cut(&mut self, frame: &[u8]) {
        self.discard_unsent();
        self.queue_owned(frame);
        self.closing = Some(Closing::Cut);
    }

    /// One write turn: flush within `budget`, then move the close state
    /// machine along (a cut gets one try; a flushed close sends FIN and
    /// lingers for the peer's close).
    pub fn write_turn(&mut self, budget: usize, now: u32) -> io::Result<Written> {
        let result = self.flush(budget);
        if self.bufs.as_ref().is_some_and(|b| !b.live) {
            self.free_if_empty();
        }
        let resume_reading = self.read_paused && self.queued() < READ_PAUSE_BYTES;
        if resume_reading {
            self.read_paused = false;
        }
        let mut done = Written {
            again: false,
            resume_reading,
            drop: false,
        };
        if self.closing == Some(Closing::Cut) {
            self.closing = Some(Closing::Now);
            done.drop = true;
            return Ok(done);
        }
        match result? {
            Flushed::All => {
                if let Some(Closing::AfterFlush(_)) = self.closing {
                    self.transport.shutdown_write();
                    self.closing = Some(Closing::Draining(now));
                }
            }
            Flushed::Budget => done.again = true,
            Flushed::Blocked => {}
        }
        Ok(done)
    }

    /// The once-a-second check: frees buffers a live room kept, tracks the
    /// soft output limit, and says which timer (if any) fired. A ping
    /// restarts the clock.
    pub fn tick(&mut self, now: u32) -> Timer {
        self.free_if_empty();
        if let Some(b) = &mut self.bufs {
            if b.live_bytes > OUTPUT_SOFT_LIMIT {
                b.over_soft_since.get_or_insert(now);
            } else {
                b.over_soft_since = None;
            }
            if b.over_soft_since
                .is_some_and(|t| now - t >= OUTPUT_SOFT_SECONDS.as_secs() as u32)
            {
                return Timer::SlowConsumer;
            }
        }
        let kind = match self.phase {
            Phase::Http { waiting } => Kind::Http { waiting },
            Phase::Ws { .. } => Kind::Ws,
            Phase::Body { paused, .. } => Kind::Body { paused },
        };
        let timer = timer_due(kind, self.closing, self.last_input, self.timer_start, now);
        if timer == Timer::Ping {
            self.timer_start = now;
        }
        timer
    }

    // ---- reading --------------------------------------------------------------

    /// Why the loop should not read from this connection now, if it should not.
    /// Output above [`READ_PAUSE_BYTES`] pauses it until the flush pass
    /// drains it (answers wait to be read before more questions are).
    pub fn read_blocked(&mut self) -> bool {
        if self.is_dropping() || self.is_waiting() || self.input_held {
            return true;
        }
        if self.closing.is_none() && self.queued() >= READ_PAUSE_BYTES {
            self.read_paused = true;
            return true;
        }
        false
    }

    /// Whether unsent output is past [`READ_PAUSE_BYTES`]; if so, reading
    /// (and answering pipelined requests already read) pauses until the flush
    /// pass drains it and lists the connection to read again.
    pub fn pause_if_full(&mut self) -> bool {
        if self.queued() >= READ_PAUSE_BYTES {
            self.read_paused = true;
        }
        self.read_paused
    }

    /// Whole requests are left in the input, to answer next pass: nothing
    /// more is read until they are ([`Conn::release_input`]).
    pub fn hold_input(&mut self) {
        self.input_held = true;
    }

    /// The held requests are being answered: reading may go on after them.
    pub fn release_input(&mut self) {
        self.input_held = false;
    }

    /// Storage is behind: this chat connection waits for it. True when it
    /// was not waiting yet (the caller lists it).
    pub fn wait_for_store(&mut self) -> bool {
        !std::mem::replace(&mut self.waiting_for_store, true)
    }

    /// Storage caught up.
    pub fn stop_waiting_for_store(&mut self) {
        self.waiting_for_store = false;
    }

    /// Reads once into `scratch`. `Interrupted` is retried here.
    pub fn read_into(&mut self, scratch: &mut [u8], now: u32) -> io::Result<ReadOutcome> {
        loop {
            return match self.transport.read(scratch) {
                Ok(0) => Ok(ReadOutcome::Eof),
                Ok(n) => {
                    self.last_input = now;
                    Ok(ReadOutcome::Data(n))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    /// Takes the leftover input (the caller hands back what it did not use
    /// with [`Conn::keep_input`]).
    pub fn take_input(&mut self) -> Vec<u8> {
        self.bufs
            .as_mut()
            .map_or_else(Vec::new, |b| std::mem::take(&mut b.input))
    }

    pub fn has_pending_input(&self) -> bool {
        self.bufs.as_ref().is_some_and(|b| !b.input.is_empty())
    }

    /// Appends newly read bytes to the leftover input.
    pub fn append_input(&mut self, bytes: &[u8]) {
        self.bufs().input.extend_from_slice(bytes);
    }

    // ---- the output queue -----------------------------------------------------

    /// Queues a shared (broadcast) frame. Returns false (and queues nothing)
    /// when the connection is past the hard limit for live output: the
    /// caller cuts it as a slow consumer.
    #[inline]
    pub fn queue_shared(&mut self, frame: &Rc<[u8]>) -> bool {
        let b = self.bufs();
        if b.live_bytes + frame.len() > OUTPUT_HARD_LIMIT {
            return false;
        }
        b.live_bytes += frame.len();
        b.live = true;
        b.push(Chunk::Shared(frame.clone()), frame.len())
    }

    pub fn queue_static(&mut self, bytes: &'static [u8]) -> bool {
        self.bufs().push(Chunk::Static(bytes), bytes.len())
    }

    /// Queues a buffer of bytes for this connection only (a download's
    /// chunk), as it is: no copy. False past the absolute ceiling.
    pub fn queue_vec(&mut self, bytes: Vec<u8>) -> bool {
        let len = bytes.len();
        self.bufs().push(Chunk::Owned(bytes), len)
    }

    /// Queues bytes for this connection only, coalescing small replies.
    /// False past the absolute ceiling.
    pub fn queue_owned(&mut self, bytes: &[u8]) -> bool {
        let b = self.bufs();
        if b.out_bytes + bytes.len() > OUTPUT_CEILING {
            return false;
        }
        b.out_bytes += bytes.len();
        if let Some(Chunk::Owned(last)) = b.out.back_mut()
            && last.len() + bytes.len() <= COALESCE_BYTES
        {
            last.extend_from_slice(bytes);
            return true;
        }
        b.out.push_back(Chunk::Owned(bytes.to_vec()));
        true
    }

    /// Drops queued output that has not started to go out, keeping a frame
    /// that is half written so the stream stays well-formed. Used before the
    /// close frame of a slow consumer.
    pub fn discard_unsent(&mut self) {
        let Some(b) = &mut self.bufs else {
            return;
        };
        let keep = usize::from(b.out_offset > 0);
        while b.out.len() > keep {
            if let Some(c) = b.out.pop_back() {
                b.out_bytes -= c.bytes().len();
                if matches!(c, Chunk::Shared(_)) {
                    b.live_bytes -= c.bytes().len();
                }
            }
        }
    }

    /// Writes queued output with vectored writes until the queue is empty,
    /// the socket would block, or `budget` bytes went out.
    pub fn flush(&mut self, budget: usize) -> io::Result<Flushed> {
        let mut written = 0;
        while let Some(b) = self.bufs.as_mut().filter(|b| !b.out.is_empty()) {
            if written >= budget {
                return Ok(Flushed::Budget);
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n = 0;
            for (i, chunk) in b.out.iter().take(MAX_IOVECS).enumerate() {
                let bytes = chunk.bytes();
                slices[i] = IoSlice::new(if i == 0 {
                    &bytes[b.out_offset..]
                } else {
                    bytes
                });
                n += 1;
            }
            match self.transport.write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => {
                    written += w;
                    b.advance(w);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // TLS records encrypted but not yet taken by the socket.
        if !self.transport.flush_pending()? {
            return Ok(Flushed::Blocked);
        }
        Ok(Flushed::All)
    }

    /// Puts the connection on the flush list once: true when it was not on
    /// the list yet (the caller pushes its token), false when it already is.
    pub fn enlist_flush(&mut self) -> bool {
        !std::mem::replace(&mut self.in_flush_list, true)
    }

    /// Taken off the flush list (the flush pass is visiting it).
    pub fn delist_flush(&mut self) {
        self.in_flush_list = false;
    }

    /// The same for the list of connections to read again next pass.
    pub fn enlist_read(&mut self) -> bool {
        !std::mem::replace(&mut self.in_read_list, true)
    }

    pub fn delist_read(&mut self) {
        self.in_read_list = false;
    }

    /// Frees the buffers once nothing is queued and no input is left over:
    /// after every read and every write turn of a connection that got only
    /// replies (requests, the upgrade, its own answers), and at the
    /// once-a-second sweep for one in a live room. Replies are freed at
    /// once, not by the sweep: when thousands of connections open (or
    /// reconnect) within a second, buffers kept until the sweep all live at
    /// once, and the heap they fragment stays resident after they are freed
    /// (idle RSS per connection went from 281-362 B to about 190 B with
    /// this). A connection in a live room keeps its ring between frames, as
    /// before: freeing it after every write cost the spread-out shape about
    /// a tenth more CPU per delivery.
    fn free_if_empty(&mut self) {
        if self
            .bufs
            .as_ref()
            .is_some_and(|b| b.out.is_empty() && b.input.is_empty())
        {
            self.bufs = None;
        }
    }

    /// Keeps the unconsumed tail of `input` for the next read.
    pub fn keep_input(&mut self, rest: &[u8]) {
        if rest.is_empty() {
            if let Some(b) = &mut self.bufs {
                b.input.clear();
                if b.input.capacity() > KEEP_BUFFER_BYTES {
                    b.input = Vec::new();
                }
            }
            self.free_if_empty();
            return;
        }
        let input = &mut self.bufs().input;
        input.clear();
        input.extend_from_slice(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{Ipv4Addr, TcpListener};
    use std::time::Duration;

    fn pair() -> (Conn, std::net::TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (
            Conn::new(
                Transport::Plain(TcpStream::from_std(server)),
                Ipv4Addr::LOCALHOST.into(),
                1,
                0,
            ),
            client,
        )
    }

    /// Shared, static and coalesced owned chunks leave in queue order, whole.
    #[test]
    fn flushes_in_order() {
        let (mut c, mut peer) = pair();
        let shared: Rc<[u8]> = Rc::from(&b"shared|"[..]);
        assert!(c.queue_owned(b"a|"));
        assert!(c.queue_owned(b"b|"));
        assert!(c.queue_shared(&shared));
        assert!(c.queue_static(b"static"));
        assert_eq!(
            c.bufs().out.len(),
            3,
            "the two owned replies share one buffer"
        );
        assert_eq!(c.flush(usize::MAX).unwrap(), Flushed::All);
        assert_eq!(c.queued(), 0);
        let mut got = [0u8; 17];
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"a|b|shared|static");
    }

    /// Partial writes resume mid-chunk; the budget stops a turn early.
    #[test]
    fn tracks_partial_writes() {
        let (mut c, _peer) = pair();
        let big: Rc<[u8]> = Rc::from(vec![7u8; 8 * 1024].as_slice());
        for _ in 0..100 {
            assert!(c.queue_shared(&big));
        }
        assert_eq!(c.flush(10_000).unwrap(), Flushed::Budget);
        assert!(c.queued() < 800 * 1024);
        // The peer never reads, so the kernel's buffers fill and a write blocks.
        let mut state = Flushed::Budget;
        for _ in 0..1000 {
            while c.queue_shared(&big) {}
            state = c.flush(usize::MAX).unwrap();
            if state == Flushed::Blocked {
                break;
            }
        }
        assert_eq!(state, Flushed::Blocked);
        assert!(c.queued() > 0);
        assert_eq!(
            c.queued(),
            c.bufs().out.iter().map(|x| x.bytes().len()).sum::<usize>() - c.bufs().out_offset
        );
    }

    /// Replies the client asked for do not count against the live limit:
    /// a 1.6 MB history page queues whole, and broadcasts still fit after it.
    #[test]
    fn replies_do_not_count_as_live_output() {
        let (mut c, _peer) = pair();
        let page = vec![b'h'; 1_600_000];
        assert!(c.queue_owned(&page));
        let frame: Rc<[u8]> = Rc::from(vec![1u8; 1000].as_slice());
        assert!(c.queue_shared(&frame));
        assert_eq!((c.queued(), c.live_queued()), (1_601_000, 1000));
        c.bufs().advance(1_600_500);
        assert_eq!((c.queued(), c.live_queued()), (500, 500));
        assert!(
            !c.queue_owned(&vec![0u8; OUTPUT_CEILING]),
            "the ceiling still holds"
        );
    }

    /// Past the hard limit nothing more is queued, and discarding keeps only
    /// a frame that has started to go out.
    #[test]
    fn enforces_hard_limit() {
        let (mut c, _peer) = pair();
        let frame: Rc<[u8]> = Rc::from(vec![1u8; 64 * 1024].as_slice());
        let mut n = 0;
        while c.queue_shared(&frame) {
            n += 1;
        }
        assert_eq!(n, OUTPUT_HARD_LIMIT / frame.len());
        c.bufs().advance(10);
        c.discard_unsent();
        assert_eq!(c.bufs().out.len(), 1);
        assert_eq!(c.queued(), frame.len() - 10);
        assert_eq!(c.live_queued(), frame.len() - 10);
    }

    /// The backlog is the sum of every connection's unsent output at each
    /// step, not at the next count: queueing adds, a write turn (partial or
    /// whole), a slow consumer's cut and a close frame that discards output
    /// move it at once, and a dropped connection takes its bytes with it.
    #[test]
    fn the_backlog_is_the_current_sum_of_unsent_output() {
        let (mut a, mut peer_a) = pair();
        let (mut b, _peer_b) = pair();
        let mut backlog = Backlog::default();
        let sum = |a: &Conn, b: &Conn| a.queued() + b.queued();
        let frame: Rc<[u8]> = Rc::from(vec![1u8; 64 * 1024].as_slice());

        assert!(backlog.track(&mut a, |c| c.queue_owned(b"reply")));
        assert!(backlog.track(&mut b, |c| c.queue_shared(&frame)));
        assert!(backlog.track(&mut b, |c| c.queue_static(b"ping")));
        assert!(backlog.track(&mut b, |c| c.queue_vec(vec![0; 1000])));
        assert_eq!(backlog.bytes(), 5 + frame.len() + 4 + 1000);
        assert_eq!(backlog.bytes(), sum(&a, &b));

        // Refused: past the hard limit nothing is queued, nothing counted.
        while backlog.track(&mut b, |c| c.queue_shared(&frame)) {}
        assert_eq!(backlog.bytes(), sum(&a, &b));

        // A write turn the socket cuts short (more than its buffers take),
        // then turns that empty the queue as the peer reads.
        backlog.track(&mut a, |c| c.queue_vec(vec![2u8; 8 << 20]));
        backlog
            .track(&mut a, |c| c.write_turn(usize::MAX, 0))
            .unwrap();
        assert!(a.queued() > 0, "a partial turn");
        assert_eq!(backlog.bytes(), sum(&a, &b));
        peer_a
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut sink = vec![0u8; 256 * 1024];
        while a.queued() > 0 {
            backlog
                .track(&mut a, |c| c.write_turn(usize::MAX, 0))
                .unwrap();
            if a.queued() > 0 {
                let _ = peer_a.read(&mut sink).unwrap();
            }
        }
        assert_eq!(backlog.bytes(), b.queued());

        // A close frame that does not fit discards what was unsent.
        let mut chunk = 1 << 20;
        while chunk > 0 {
            if !backlog.track(&mut b, |c| c.queue_vec(vec![0; chunk])) {
                chunk /= 2;
            }
        }
        assert_eq!(backlog.bytes(), OUTPUT_CEILING, "b is full to the ceiling");
        assert!(backlog.track(&mut b, |c| c.close_with_frame(b"close", 0)));
        assert_eq!(backlog.bytes(), 5, "only the close frame is left");
        assert_eq!(backlog.bytes(), sum(&a, &b));

        // A cut keeps only its close frame; dropping takes the rest.
        let (mut c, _peer_c) = pair();
        backlog.track(&mut c, |c| c.queue_shared(&frame));
        backlog.track(&mut c, |c| c.cut(b"cut"));
        assert_eq!(c.queued(), 3);
        assert_eq!(backlog.bytes(), sum(&a, &b) + 3);
        backlog.forget(&c);
        backlog.forget(&b);
        assert_eq!(backlog.bytes(), a.queued());
        assert_eq!(backlog.bytes(), 0);
    }

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

    /// An upload that sends nothing for `TRANSFER_IDLE_TIMEOUT` is dropped,
    /// unless the server is the one not reading; the clock starts over
    /// when it reads again.
    #[test]
    fn upload_idle() {
        let limit = TRANSFER_IDLE_TIMEOUT.as_secs() as u32;
        let t = |paused, last_input, timer_start, now| {
            timer_due(Kind::Body { paused }, None, last_input, timer_start, now)
        };
        assert_eq!(t(false, 0, 0, limit - 1), Timer::None);
        assert_eq!(t(false, 0, 0, limit), Timer::Drop);
        assert_eq!(t(true, 0, 0, 10 * limit), Timer::None, "paused by us");
        assert_eq!(
            t(false, 0, 100, 100 + limit - 1),
            Timer::None,
            "resumed at 100"
        );
        let (mut c, _peer) = pair();
        c.start_body(10, 0);
        c.pause_body(true, 5);
        c.pause_body(false, 50);
        assert_eq!(c.tick(50 + limit - 1), Timer::None);
        assert!(!c.took_body(4) && c.body_left() == Some(6));
        assert!(c.took_body(6) && c.is_waiting(), "waits for its answer");
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

    /// An idle connection holds its `Conn` and nothing else: the buffers a
    /// burst made are freed as soon as they are empty, and the `Conn`
    /// stays within the idle-memory budget (`cargo bench --bench e2e --
    /// idle_rss`: 256 B a connection, with its session).
    #[test]
    fn idle_conn_holds_no_buffer() {
        assert!(
            std::mem::size_of::<Conn>() <= 96,
            "Conn is {} bytes",
            std::mem::size_of::<Conn>()
        );
        let (mut c, _peer) = pair();
        assert!(c.bufs.is_none(), "a new connection has no buffers");
        c.keep_input(b"");
        assert!(c.bufs.is_none(), "keeping nothing makes nothing");
        assert!(c.queue_owned(b"reply"));
        c.keep_input(b"half a fra");
        c.write_turn(usize::MAX, 1).unwrap();
        assert_eq!(c.queued(), 0);
        assert!(c.bufs.is_some(), "leftover input keeps the buffers");
        assert_eq!(c.take_input(), b"half a fra");
        assert!(c.queue_owned(b"reply"));
        c.keep_input(b"");
        assert!(c.bufs.is_some(), "output still queued");
        c.write_turn(usize::MAX, 2).unwrap();
        assert!(c.bufs.is_none(), "freed once both are empty");
        assert_eq!((c.queued(), c.live_queued()), (0, 0));
        let frame: Rc<[u8]> = Rc::from(&b"broadcast"[..]);
        assert!(c.queue_shared(&frame));
        c.write_turn(usize::MAX, 3).unwrap();
        assert!(
            c.bufs.is_some(),
            "a live room's ring is kept between frames"
        );
        c.tick(4);
        assert!(c.bufs.is_none(), "and freed by the sweep once empty");
    }

    /// The close state machine: a close after flush sends FIN once the queue
    /// is written and then lingers; a cut gets one write and is dropped; a
    /// second close request changes nothing.
    #[test]
    fn close_state_machine() {
        let (mut c, _peer) = pair();
        assert!(c.close_with_frame(b"bye", 3));
        assert!(!c.close_after_flush(4), "already closing");
        assert!(!c.close_with_frame(b"again", 4));
        let w = c.write_turn(usize::MAX, 5).unwrap();
        assert!(!w.drop && !w.again);
        assert_eq!(c.closing, Some(Closing::Draining(5)));
        assert!(c.close_now());
        assert!(!c.close_now(), "dropping once");
        assert!(c.is_dropping());

        let (mut c, _peer) = pair();
        let big: Rc<[u8]> = Rc::from(vec![1u8; 4096].as_slice());
        assert!(c.queue_shared(&big));
        c.cut(b"close-frame");
        assert_eq!(c.queued(), b"close-frame".len(), "unsent output dropped");
        assert!(c.write_turn(usize::MAX, 0).unwrap().drop);
        assert!(c.is_dropping());
    }
}
