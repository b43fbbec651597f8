//! hubbub: a small, very fast, self-hostable real-time chat server.
//!
//! One thread owns everything live — a `mio::Poll`, a `Slab` of connections,
//! the rooms — and never blocks: SQLite (or PostgreSQL) runs on storage
//! threads, a cluster's Redis link on two threads of its own, password
//! hashing on a small pool, and both answer through a channel and the loop's
//! `Waker`. A chat message is serialized and framed once; the same bytes are
//! queued on every recipient and written with vectored writes, a bounded
//! number of bytes per connection per loop pass. Every queue and buffer has a
//! bound.
//!
//! # Layout
//!
//! From the top floor down; a module imports only from floors below it.
//!
//! | module | owns | never does |
//! |---|---|---|
//! | `main.rs` | logging, options into a `Config`, the start-up checks, the backend (SQLite or PostgreSQL), the bus and TLS, `Server::run`; `backup`, `restore`, `migrate`, `systemd-unit` | anything per request |
//! | [`server`] | the reactor: tokens, accept (the main listener, and the plain one beside HTTPS), reads, frame cutting, the flush and close passes, timers, the `Waker`, signals (SIGHUP reloads), shutdown phases; `Wires`, the [`Outbox`](outbox) over the connections | protocol logic |
//! | `app` | routing each event to its owner: requests to the HTTP desk, frames to the hub, storage replies by ticket | hold state of its own |
//! | `http` | request heads (httparse), responses, the REST routes (search included) and their waiting list, the upgrade handshake, the embedded web client, the plain listener's redirects and ACME challenges | wait for storage or hashing |
//! | `hub` | rooms, sessions, presence, every client frame, acks, the fan-out seam (`publish(Topic)` and the [`Bus`]), edits, deletes, reactions and mentions (`changes.rs`, `mentions.rs`), and being one node of a cluster (`cluster.rs`: order by sequence, catch-up, presence per node; `wire.rs`: the notes) | touch sockets, know HTTP |
//! | `conn` | one connection: phase, leftover input, the output queue of shared frames, partial writes, output limits, its close state machine and timer rules | know about rooms |
//! | `transport` | the bytes under a connection: a plain `TcpStream`, or a rustls session over it; plaintext in and out, the same for both | know what the bytes mean |
//! | [`tls`] | the certificate slot every handshake reads, loading and reloading PEM files, the ACME thread (`acme.rs`), TLS to PostgreSQL and Redis (`services.rs`) | run on the loop beyond a SIGHUP reload |
//! | `outbox` | the trait through which the application reaches connections | touch sockets |
//! | `ws` | frame decode/encode (tungstenite's frame layer), control frames, the contract's JSON frames | fan-out |
//! | `auth` | JWT issue/verify; PBKDF2 and its worker pool; where the secret comes from | hash on the loop |
//! | `users` | the user directory in memory | storage calls |
//! | [`redis`] | cluster mode's pub/sub link: a RESP client over std `TcpStream`, subscriber and publisher threads, up/down and reconnects | block the loop, queue through an outage |
//! | [`redis_bus`] | the hub's `Bus` over that link: one channel for the cluster, link events mapped onto the seam | know what the notes say |
//! | [`store`] | the storage seam: requests and replies, the [`Backend`](store::Backend) contract, the storage threads; the SQLite and PostgreSQL backends; `migrate` between them; `ops`: the lock a server holds on its file, `restore` and its id floor | be called synchronously by the loop |
//! | [`config`], `metrics`, `signal`, `clock`, `priority` | limits and options (flags, environment, `--config` file); counters; SIGINT/SIGTERM/SIGHUP as a pollable pipe; RFC 3339 time; background threads at lower priority | |
//!
//! # The path of a chat message, in five files
//!
//! 1. `server.rs`: `on_readable` reads into the shared scratch buffer;
//!    `process_ws` cuts it into frames in place (`ws::codec`) and hands each
//!    whole message to the application.
//! 2. `app.rs`: `on_ws_message` answers control frames (`ws::control`) and
//!    gives text to the hub with its context.
//! 3. `hub/frames.rs`: `on_text` → `on_message` validates, rate-limits,
//!    gives it a key and submits the row to storage. The storage thread
//!    commits the batch and rings the `Waker`; `app.rs` routes
//!    `MessageStored` (with the id, and in a cluster the room's sequence
//!    number) back to `Hub::on_message_stored`, which encodes the frame once.
//! 4. `hub/fanout.rs`: only now, with the message durable,
//!    `publish_message` hands it to the bus (a cluster) and queues the same
//!    `Rc<[u8]>` on each local subscriber through the `Outbox`
//!    (`server::Wires` → `Conn::queue_shared`), in sequence order
//!    (`hub/cluster.rs`); the sender gets its `ack`.
//! 5. `conn.rs`: in the flush pass, `write_turn` writes each connection's
//!    queue with `writev`, within its budget.
//!
//! # Seams
//!
//! - Storage: anything that implements [`store::Backend`] runs on the storage
//!   thread; `main` builds it and hands it to [`Server::bind`]. The reactor
//!   never names a backend.
//! - Fan-out: every delivery to more than the asking connection goes through
//!   `Hub::publish`; a cross-node [`Bus`] plugs in through [`Server::start`]
//!   (Redis: [`redis_bus`]). `hub`'s module doc lists the node-local state
//!   and what a cluster does about each.
//! - Embedding: [`Server::start`] runs on a listener the caller bound, and a
//!   [`Shutdown`] handle stops it from any thread (the in-process tests).

mod admission;
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
pub mod redis;
pub mod redis_bus;
pub mod server;
mod signal;
pub mod store;
pub mod tls;
mod transport;
mod users;
mod ws;

pub use hub::{Bus, BusEvent, LocalOnly};
pub use server::{Server, Shutdown};

/// The internals `cargo bench` measures one by one (`benches/micro.rs`).
/// Not an API: nothing here is promised to stay.
#[doc(hidden)]
pub mod bench {
    pub use crate::conn::{Conn, Flushed};
    pub use crate::http::request::parse as parse_request;
    pub use crate::transport::Transport;
    pub use crate::ws::codec::{Assembler, Fed, Message, RawFrame, decode_frame};
    pub use crate::ws::proto::{Encoder, Out, Ts, parse_client};
}
