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
//! | `hub` | chat as one node sees it: each client frame parsed once into a typed command (`command.rs`) and carried out by its handler (`commands/`); state in parts that own it (`sessions`, `rooms`, `acks`, `reads`, `waits`, and `cluster` on a node of a cluster); the fan-out seam (`publish(Topic)` and the [`Bus`]); being one node of a cluster (`peers.rs`, `order.rs`; `wire.rs`: the notes). Its module doc draws its floors | touch sockets, know HTTP |
//! | `conn` | one connection: phase, leftover input, the output queue of shared frames, partial writes, output limits, its close state machine and timer rules | know about rooms |
//! | `transport` | the bytes under a connection: a plain `TcpStream`, or a rustls session over it; plaintext in and out, the same for both | know what the bytes mean |
//! | [`tls`] | the certificate slot every handshake reads, loading and reloading PEM files, the ACME thread (`acme.rs`), TLS to PostgreSQL and Redis (`services.rs`) | run on the loop beyond a SIGHUP reload |
//! | `outbox` | the trait through which the application reaches connections | touch sockets |
//! | `ws` | frame decode/encode (tungstenite's frame layer), control frames, the server's JSON frames, encoded once | fan-out, parse client frames (the hub does) |
//! | `auth` | JWT issue/verify; PBKDF2 and its worker pool; where the secret comes from | hash on the loop |
//! | `users` | the user directory in memory, each user's role, ban and profile | storage calls |
//! | [`operator`] | `hubbub user …` and `hubbub invite …`: the account writes of the admin API, from the command line, straight to storage (a running server reads them from the change log) | talk to a running server |
//! | `accounts` | keeping accounts in step with storage's change log; the events a change raises for the hub | touch sockets |
//! | [`redis`] | cluster mode's pub/sub link: a RESP client over std `TcpStream`, subscriber and publisher threads, up/down and reconnects | block the loop, queue through an outage |
//! | [`redis_bus`] | the hub's `Bus` over that link: one channel for the cluster, link events mapped onto the seam | know what the notes say |
//! | `files` | file bytes: the [`FileStore`](files::FileStore) seam (blobs named by their SHA-256; the directory engine here, PostgreSQL's in `store`), the transfer and image threads, previews and avatars (`image`, bounded), what names and types uploads may have | run on the loop, know who may read a file |
//! | `push` | Web Push: the VAPID key, which endpoints a push may reach, what a push says (the user's privacy choice) and its encrypted request, the sending threads with their bounded queues, timeouts and retries | send on the loop, decide who is pushed (the hub does) |
//! | [`store`] | the storage seam: requests and replies, the [`Backend`](store::Backend) contract, the storage threads; the SQLite and PostgreSQL backends; `migrate` between them; `ops`: the lock a server holds on its file, `restore` and its id floor | be called synchronously by the loop |
//! | [`config`], `metrics`, `signal`, `clock`, `priority` | limits and options (flags, environment, `--config` file); counters; SIGINT/SIGTERM/SIGHUP as a pollable pipe; RFC 3339 time; background threads at lower priority | |
//!
//! # The path of a chat message, in five steps
//!
//! 1. `server.rs`: `on_readable` reads into the shared scratch buffer;
//!    `process_ws` cuts it into frames in place (`ws::codec`) and hands each
//!    whole message to the application.
//! 2. `app.rs`: `on_ws_message` answers control frames (`ws::control`) and
//!    gives text to the hub with its context.
//! 3. `hub/mod.rs`: `Hub::on_text` takes a rate-limit token, parses the
//!    frame once into a typed command (`hub/command.rs`: `Command::parse`)
//!    and hands it to its handler, here `on_message` (`hub/commands/message.rs`),
//!    which checks the room and gives the row a key; `commands/post.rs`
//!    submits it to storage and parks it (the acks part). The storage thread
//!    commits the batch and rings the `Waker`; `app.rs` routes
//!    `MessageStored` (with the id, and in a cluster the room's sequence
//!    number) back to `Hub::on_message_stored`, and `post.rs`
//!    (`on_message_stored`) encodes the frame once.
//! 4. `hub/order.rs` and `hub/fanout.rs`: only now, with the message
//!    durable, `publish_message` hands it to the bus (a cluster, which
//!    delivers each room in sequence order) and `deliver` queues the same
//!    `Rc<[u8]>` on each local subscriber through the `Outbox`
//!    (`server::Wires` → `Conn::queue_shared`); the sender gets its `ack`.
//! 5. `conn.rs`: in the flush pass, `write_turn` writes each connection's
//!    queue with `writev`, within its budget.
//!
//! # Seams
//!
//! - Storage: anything that implements [`store::Backend`] runs on the storage
//!   thread; `main` builds it and hands it to [`Server::bind`]. The reactor
//!   never names a backend.
//! - Fan-out: every delivery to more than the asking connection goes through
//!   `hub/fanout.rs`'s `publish`; a cross-node [`Bus`] plugs in through [`Server::start`]
//!   (Redis: [`redis_bus`]). `hub`'s module doc lists the node-local state
//!   and what a cluster does about each.
//! - Push: the hub decides who is pushed and parks the notice while
//!   storage reads the user's subscriptions; `app.rs` hands both to
//!   `push::Push`, which queues one job per subscription on a `Pusher`
//!   (the real one sends on threads of its own) and hears back through the
//!   `Waker`.
//! - Embedding: [`Server::start`] runs on a listener the caller bound, and a
//!   [`Shutdown`] handle stops it from any thread (the in-process tests).
//!
//! # Adding to the hub
//!
//! **A command** (a new client frame, say `pin` with an `id`):
//!
//! 1. `hub/command.rs`: a struct with exactly its fields (`Pin { id }`),
//!    a variant (`Command::Pin(Pin)`), and its arm in `Fields::command`,
//!    which checks each field with the helpers there (`message_id`,
//!    `room`, `content`…): a missing or malformed field is refused there,
//!    once, with the contract's code. Add it to `kind` (and `read_cost` if
//!    it reads history-sized replies from storage).
//! 2. `hub/commands/pin.rs`: `pub fn on_pin(parts, cx, me, frame: Pin)`
//!    doing what needs state (who may, what changes), through the parts'
//!    methods, answering errors as `Err(FrameError)`. If it waits for
//!    storage, it parks a `Wait` variant (`hub/waits.rs`) with what it must
//!    remember and sends its `Request` with the ticket; its continuation
//!    (`on_pin_stored`) lives in the same file, and `Hub` routes the reply
//!    to it by the wait (`Hub::on_write_answered` and its siblings). Its
//!    unit test sits beside it, run through the hub's test bench
//!    (`hub/tests.rs`: `Bench`), as a client would send the frame.
//! 3. `hub/mod.rs`: one arm in `dispatch`. Frames to more than the asking
//!    connection go out through `fanout::publish`, encoded once.
//!
//! **A piece of state** (say pinned messages per room): decide which part
//! owns it. If it is about an existing part's subject (a room's pins: the
//! rooms part), add the field there, private, with methods that keep it
//! consistent; nothing else touches the field. If it is a subject of its
//! own (roles, uploads), make it a part: `hub/<part>.rs` with a struct whose
//! fields are private, a field of `Parts` (`hub/parts.rs`) built in
//! `Parts::new`, and its unit tests beside it. A part never calls another:
//! what needs two (who is told when a pin changes) is a handler's or a
//! shared step's (`presence.rs`, `members.rs`). State that exists only in
//! a cluster belongs to the cluster part (`hub/cluster.rs`), which is
//! `None` on a single node. A part never imports from a floor above it
//! (handlers, `Parts`, `Hub`); the hub's module doc draws the floors.

mod accounts;
mod admission;
mod app;
mod auth;
mod clock;
pub mod config;
mod conn;
mod files;
mod http;
mod hub;
mod metrics;
pub mod operator;
mod outbox;
mod priority;
mod push;
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
    pub use crate::files::dir::DirStore;
    pub use crate::files::images::{encode as encode_preview, inspect as inspect_image};
    pub use crate::files::{FileStore, write_blob};
    pub use crate::http::request::parse as parse_request;
    pub use crate::hub::command::Command;
    pub use crate::hub::seal::Seal;
    pub use crate::hub::wire::{
        Note, Stamp, TargetKey, decode as decode_note, encode as encode_note,
    };
    pub use crate::transport::Transport;
    pub use crate::ws::codec::{Assembler, Fed, Message, RawFrame, decode_frame};
    pub use crate::ws::proto::{Encoder, Out, Ts};
}
