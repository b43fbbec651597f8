//! hubbub: a small, very fast, self-hostable real-time chat server.
//!
//! One thread owns everything live — a `mio::Poll`, a `Slab` of connections,
//! the rooms — and never blocks: SQLite runs on a storage thread, password
//! hashing on a small pool, and both answer through a channel and the loop's
//! `Waker`. A chat message is serialized and framed once; the same bytes are
//! queued on every recipient and written with one vectored write per
//! connection per loop pass. Every queue and buffer has a bound.
//!
//! # Layout
//!
//! | module | owns | never does |
//! |---|---|---|
//! | [`config`] | every limit and default, named | I/O |
//! | [`server`] | the `Poll` loop: tokens, accept, reads, the flush and close passes, timers, the `Waker`, shutdown | protocol logic |
//! | [`conn`] | one socket: phase, leftover input, the output queue of shared frames, partial writes, output limits | know about rooms |
//! | [`outbox`] | the door from the application to the connections: queue, answer, close-after-the-pass | touch sockets |
//! | [`app`] | the loop-owned state besides sockets; routing asynchronous answers back | block |
//! | [`http`] | request heads (httparse), responses, the REST routes, the embedded web client | wait for storage or hashing |
//! | [`ws`] | the upgrade, frame decode/encode (tungstenite's frame layer), the contract's JSON frames | fan-out |
//! | [`hub`] | rooms, sessions, presence, rate limits, every client frame, acks | touch sockets |
//! | [`users`] | the user directory in memory | storage calls |
//! | [`auth`] | JWT issue/verify; PBKDF2 and its worker pool | hash on the loop |
//! | [`store`] | the narrow storage interface and its thread; the SQLite backend | be called synchronously by the loop |
//! | [`metrics`] | counters and their Prometheus text | allocate per event |
//! | [`signal`], [`clock`], [`priority`] | SIGINT/SIGTERM as a pollable pipe; RFC 3339 time; background threads at lower priority | |
//!
//! # The path of a chat message
//!
//! `server::on_readable` reads into the shared scratch buffer →
//! `server::process_ws` decodes frames in place (`ws::codec`) →
//! `hub::frames` (`App::on_ws_text` → `on_message`): validate, rate-limit,
//! assign an id, `store::StoreHandle::submit`, encode once
//! (`ws::proto::Encoder::shared`), `hub::presence::fan_out` →
//! `outbox::Outbox::frame` queues the shared bytes per recipient →
//! `server::flush_pass` → `conn::Conn::flush`: one `writev` per connection.
//! The storage thread commits the batch and rings the `Waker` →
//! `App::on_store_replies` → `on_message_stored` sends the sender's `ack`.

mod app;
mod auth;
mod clock;
pub mod config;
mod conn;
mod http;
mod hub;
mod metrics;
mod outbox;
mod priority;
pub mod server;
mod signal;
pub mod store;
mod users;
mod ws;

pub use hub::{Bus, Channel, Inbound, LocalOnly};
pub use server::{Server, Shutdown};

/// The internals `cargo bench` measures one by one (`benches/micro.rs`).
/// Not an API: nothing here is promised to stay.
#[doc(hidden)]
pub mod bench {
    pub use crate::conn::{Conn, Flushed};
    pub use crate::http::request::parse as parse_request;
    pub use crate::ws::codec::{Assembler, Fed, Message, RawFrame, decode_frame};
    pub use crate::ws::proto::{Encoder, Out, Ts, parse_client};
}
