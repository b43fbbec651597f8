//! The hub: chat as one node sees it — sessions, rooms, presence, message
//! ids, idempotent retries, pending acks — the Go chat tutorials' "Hub
//! goroutine", minus the goroutine. It is plain data owned by the loop
//! thread; every client frame is handled to completion in one call, so
//! there is nothing to lock and no ordering to reason about beyond "in the
//! order the loop read them".
//!
//! It never sees a socket, a thread or an HTTP status: it reaches the rest
//! of the server through a narrow [`Ctx`] (the user directory, somewhere to
//! send storage requests, the door to the connections), so its unit tests
//! run it as pure logic with a recording outbox and a recording store.
//!
//! # Shape
//!
//! [`Hub`] (this file) is the door: every call from the application comes
//! in here and is routed, and it holds nothing but the parts. A text frame
//! is parsed once into a typed command (`command.rs`) and handed to that
//! command's handler (`commands/`); a storage reply is handed to whoever
//! parked its ticket; bus events and the tick go to `peers.rs` and
//! `presence.rs`. From the top floor down:
//!
//! | floor | files | what they are |
//! |---|---|---|
//! | door | `mod.rs` | [`Hub`]: routing |
//! | handlers | `commands/*.rs`, `peers.rs`, `accounts.rs` | one file per client command, with its continuations; what notes from other nodes make this node do; what an account change does to connections |
//! | behaviour shared by handlers | `presence.rs`, `members.rs`, `order.rs`, `fanout.rs`, `push.rs` | who is told when people come and go; private rooms' members; stored messages out in order; the one way out (`publish`); who is pushed about a stored message |
//! | composition | `parts.rs` | `Parts`, every part in one struct, and `Ctx` |
//! | parts | `sessions.rs`, `rooms.rs`, `acks.rs`, `reads.rs`, `waits.rs`, `pacing.rs`, `cluster.rs` | state, each with its fields private and the methods that keep them right |
//! | vocabulary | `command.rs`, `emoji.rs`, `mentions.rs`, `wire.rs`, `bus.rs`, `rate.rs` | pure: typed client frames, reactions, `@name`s, notes between nodes and their bytes, the bus seam, the token bucket |
//!
//! A module imports only from floors below it, so `Parts` is not `Hub`: a
//! handler takes `&mut Parts`, and `Hub` wraps it to route down to the
//! handlers. (How to add a command or a piece of state: `lib.rs`, "Adding
//! to the hub".)
//!
//! # Node-local state, and what a cluster does about it
//!
//! Everything below lives in this process. On one node it is the whole
//! truth; in a cluster (`--redis`, see `cluster.rs`) each item is kept right
//! as follows.
//!
//! | state | here | in a cluster |
//! |---|---|---|
//! | message ids (acks part) | the loop's key is the id (SQLite) | PostgreSQL assigns the id and a per-room `seq` in the append's transaction; the key only pairs the reply |
//! | delivery order | commit order of the one writer | each node delivers a room in `seq` order, waiting for an early message's predecessors and reading a lasting gap back (`Catchup`) |
//! | presence (sessions part, `Room::present`) | connections per user, per room | plus each peer's users and rooms (`Room::shown`), from its notes and `State`; a peer silent for `PEER_TIMEOUT_MS` is dropped |
//! | client-id window (acks part) | the newest `CLIENT_ID_WINDOW` ids | the same, and a retry on another node is caught by the database's unique index (`MessageExists`) |
//! | users (`Directory`) | loaded at start, added by signups here | plus `User` notes, and a `Resync` after a bus outage |
//! | private membership (rooms part) | loaded at start, changed by this node | plus `RoomMade`/`Member` notes and the `Resync` |
//! | unread hints (`unread_sources`) | skip the query for users with nothing to count | not trusted: every connect asks storage |
//! | subscriptions (`Room::subscribers`, sessions) | this node's connections | stay local: each node delivers to its own sockets |
//! | pending acks (acks part) | messages waiting for their commit | stay local: the node that took the message acks it |
//! | push pacing (pacing part) | one push per user and conversation per interval | stays local: the node that stored a message pushes it, once |

mod accounts;
mod acks;
mod bus;
mod cluster;
pub(crate) mod command;
mod commands;
mod emoji;
mod fanout;
mod members;
mod mentions;
mod order;
mod pacing;
mod parts;
mod peers;
mod presence;
mod push;
mod rate;
mod reads;
pub(crate) mod rooms;
pub(crate) mod seal;
mod sessions;
mod waits;
pub(crate) mod wire;

use std::time::Duration;

use mio::Token;

pub use acks::Stored;
pub use bus::{Bus, BusEvent, LocalOnly};
pub use command::ROOM_NAME_RULE;
pub use parts::{Ctx, Denied};

use crate::accounts::{AccountEvent, PeerNote};
use crate::outbox::{ConnRef, Outbox};
use crate::push::Notice;
use crate::store::{
    Attachment, Change, MsgId, PrivateRoomRow, Refusal, Seq, Sid, Snapshot, StoredMessage, Target,
    Ticket, UnreadCount, UserId, UserRow,
};
use cluster::Cluster;
use command::{Command, FrameError, RoomName};
use commands::change::{on_change_failed, on_changed};
use commands::create_room::{on_create_room, on_room_stored};
use commands::delete::on_delete;
use commands::edit::on_edit;
use commands::history::{on_history, on_history_read};
use commands::join::{self, on_join};
use commands::leave::on_leave;
use commands::membership::{on_membership, on_membership_stored};
use commands::message::on_message;
use commands::post::on_message_stored;
use commands::private_message::on_private_message;
use commands::react::on_react;
use commands::read::{self, on_read};
use commands::typing::on_typing;
use parts::Parts;
use sessions::Caller;
use waits::Wait;

/// The hub: the parts, and the routes into them.
pub struct Hub {
    parts: Parts,
}

impl Hub {
    /// The hub as storage left it: ids continue, rooms and memberships and
    /// the client-id window come back.
    pub fn new(snapshot: &Snapshot, rate_limit: u32) -> Hub {
        Hub {
            parts: Parts::new(snapshot, rate_limit),
        }
    }

    /// Makes this hub one node of a cluster on `bus`, its notes sealed
    /// with `key` (at least `CLUSTER_KEY_MIN` bytes): `heads` (from the
    /// snapshot) is where each target's sequence stands.
    pub fn join_cluster(
        &mut self,
        bus: Box<dyn Bus>,
        name: &str,
        me: u64,
        key: &[u8],
        heads: &[(Target, Seq)],
    ) {
        self.parts.cluster = Some(Cluster::new(bus, name, me, key, heads));
    }

    /// How long a departed user stays shown (`--presence-grace`).
    pub fn set_presence_grace(&mut self, grace: Duration) {
        self.parts.sessions.set_grace(grace);
    }

    /// Shutdown: sessions end without presence broadcasts from now on.
    pub fn go_quiet(&mut self) {
        self.parts.sessions.go_quiet();
    }

    // ---- connections -------------------------------------------------------

    /// A WebSocket connection opened for `user`, joined at once to the room
    /// in its URL, if any.
    pub fn open_session(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        user: UserId,
        sid: Option<Sid>,
        url_room: Option<String>,
    ) {
        let parts = &mut self.parts;
        presence::open_session(parts, cx, conn, user, sid, url_room.as_deref());
        let Some(room) = url_room else { return };
        let me = Caller { conn, user };
        let joined = RoomName::new(room.into()).and_then(|r| join::join(parts, cx, me, &r, None));
        if let Err(e) = joined {
            parts.send_error(cx.out, conn.token, &e, None);
        }
    }

    /// A WebSocket connection is going away: it leaves its rooms, and its
    /// user may go offline. Called once per connection, from the reactor's
    /// close pass.
    pub fn close_session(&mut self, cx: &mut Ctx<'_, impl Outbox>, token: Token) {
        presence::close_session(&mut self.parts, cx, token);
    }

    // ---- frames ------------------------------------------------------------

    /// One text frame from a chat connection.
    pub fn on_text(&mut self, cx: &mut Ctx<'_, impl Outbox>, token: Token, text: &str) {
        cx.out.metrics().ws_frames_in += 1;
        let allowed = self.parts.sessions.take_token(token);
        self.handle_text(cx, token, text, allowed);
    }

    /// Handles a text frame; `allowed` is the rate limit's verdict (a
    /// deferred frame paid when it first came). Over the limit a frame is
    /// dropped with `rate_limited`, whatever it holds.
    fn handle_text(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        token: Token,
        text: &str,
        allowed: bool,
    ) {
        let parts = &mut self.parts;
        let Some(session) = parts.sessions.get(token) else {
            return;
        };
        let (me, plain) = (session.caller(), session.url_room().is_some());
        let command = Command::parse(text, plain);
        if !allowed {
            cx.out.metrics().rate_limited += 1;
            let client_id = match &command {
                Ok(c) => c.client_id().map(|id| &**id),
                Err(refused) => refused.client_id.as_deref(),
            };
            let e = FrameError::new("rate_limited", "too many frames; slow down");
            return parts.send_error(cx.out, token, &e, client_id);
        }
        let command = match command {
            Ok(c) => c,
            Err(refused) => {
                let client_id = refused.client_id.as_deref();
                return parts.send_error(cx.out, token, &refused.error, client_id);
            }
        };
        if let Some(bytes) = command.read_cost()
            && !parts.reads.reserve(
                cx.out,
                me.conn,
                me.user,
                parts.queued_for(cx.out, me.user),
                bytes,
            )
        {
            return parts.reads.defer(me.conn, text);
        }
        let client_id = command.client_id().cloned();
        let result = dispatch(parts, cx, me, command);
        parts.reads.release_unclaimed(me.conn);
        if let Err(e) = result {
            parts.send_error(cx.out, token, &e, client_id.as_deref());
        }
    }

    /// A binary frame from a chat connection: the contract speaks JSON text.
    pub fn on_binary(&mut self, out: &mut impl Outbox, token: Token) {
        out.metrics().ws_frames_in += 1;
        let e = if self.parts.sessions.take_token(token) {
            FrameError::new(
                "bad_json",
                "binary frames are not supported; send JSON text",
            )
        } else {
            out.metrics().rate_limited += 1;
            FrameError::new("rate_limited", "too many frames; slow down")
        };
        self.parts.send_error(out, token, &e, None);
    }

    /// A ping from a chat connection: true when it may be answered. Pings
    /// cost a token like any frame, so a flood of them is not a free way to
    /// make the server write; over the limit the pong is simply not sent.
    pub fn allow_ping(&mut self, out: &mut impl Outbox, token: Token) -> bool {
        let allowed = self.parts.sessions.take_token(token);
        if !allowed {
            out.metrics().rate_limited += 1;
        }
        allowed
    }

    /// Whether the reactor may hand this connection's next frame to the hub:
    /// false while a deferred frame waits for its read to fit (`reads.rs`),
    /// or an earlier frame's effect waits for storage (`waits.rs`).
    pub fn takes_input(&self, token: Token) -> bool {
        let parts = &self.parts;
        parts
            .sessions
            .get(token)
            .is_none_or(|s| parts.takes_input(s.conn()))
    }

    /// A wait that held `conn`'s input was answered and applied: its next
    /// frames go on, unless something else still holds it.
    fn release_input(&mut self, cx: &mut Ctx<'_, impl Outbox>, conn: Option<ConnRef>) {
        if let Some(conn) = conn
            && self.parts.sessions.is_current(conn)
            && self.parts.takes_input(conn)
        {
            cx.out.resume_input(conn.token);
        }
    }

    /// Starts the deferred frames whose reads fit now, oldest first, and
    /// resumes their connections' input. Called when a read completes and
    /// once a second.
    pub fn retry_deferred(&mut self, cx: &mut Ctx<'_, impl Outbox>) {
        for _ in 0..self.parts.reads.waiting() {
            let Some((conn, text)) = self.parts.reads.next_deferred() else {
                break;
            };
            if !self.parts.sessions.is_current(conn) {
                continue; // closed
            }
            let Some(text) = text else {
                continue; // already retried
            };
            // Deferred again if it still does not fit: at the end.
            self.handle_text(cx, conn.token, &text, true);
            self.parts.reads.tidy(conn);
            if self.parts.takes_input(conn) {
                cx.out.resume_input(conn.token);
            }
        }
    }

    // ---- storage replies ---------------------------------------------------

    /// Storage answered for a chat message (`key` is the one it was sent
    /// with; `files` what it carries, as stored).
    pub fn on_message_stored(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        key: MsgId,
        stored: Stored,
        files: Vec<Attachment>,
    ) {
        on_message_stored(&mut self.parts, cx, key, stored, &files);
    }

    /// Storage applied an `edit`, `delete` or `react`, or refused it.
    pub fn on_changed(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        ticket: Ticket,
        outcome: Result<Change, Refusal>,
    ) {
        if let Some(Wait::Change { conn, asked }) = self.parts.waits.take(ticket) {
            on_changed(&mut self.parts, cx, conn, asked, outcome);
        }
    }

    /// Storage answered a write with a ticket and no data (`Done` /
    /// `Failed`): a private-room change is applied now, or its owner is
    /// told it failed; a message change that failed is answered `busy` (its
    /// success comes as `Changed`).
    pub fn on_write_answered(&mut self, cx: &mut Ctx<'_, impl Outbox>, ticket: Ticket, ok: bool) {
        let parts = &mut self.parts;
        let held = match parts.waits.take(ticket) {
            Some(Wait::Change { conn, .. }) => {
                on_change_failed(parts, cx, conn);
                None
            }
            Some(Wait::CreateRoom { conn, row }) => {
                on_room_stored(parts, cx, conn, row, ok);
                Some(conn)
            }
            Some(Wait::Membership {
                conn,
                room,
                user,
                add,
            }) => {
                on_membership_stored(parts, cx, conn, &room, user, add, ok);
                Some(conn)
            }
            Some(Wait::Receipt {
                conn,
                user,
                peer,
                id,
            }) => {
                read::on_receipt_stored(parts, cx, conn, (user, peer, id), ok);
                None
            }
            _ => None,
        };
        self.release_input(cx, held);
    }

    /// A storage read the hub asked for came back (`None`: it failed).
    pub fn on_history(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        ticket: Ticket,
        messages: Option<Vec<StoredMessage>>,
    ) {
        let parts = &mut self.parts;
        match parts.waits.take(ticket) {
            Some(Wait::History {
                conn,
                target,
                reserved,
            }) => on_history_read(parts, cx, conn, &target, reserved, messages),
            Some(Wait::Replay {
                conn,
                room,
                reserved,
            }) => {
                presence::finish_replay(parts, cx, conn, &room, messages);
                parts.reads.release(conn, reserved);
            }
            Some(Wait::Catchup { key }) => return order::caught_up(parts, cx, key, messages),
            Some(_) | None => return,
        }
        self.retry_deferred(cx);
    }

    /// The `unread` counts came back from storage.
    pub fn on_unread(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        ticket: Ticket,
        counts: &[UnreadCount],
    ) {
        if let Some(Wait::Unread { conn }) = self.parts.waits.take(ticket) {
            presence::send_unread(&mut self.parts, cx, conn, counts);
        }
    }

    /// Storage said whether a room this node had not heard of is private
    /// (`None`: it could not say).
    pub fn on_room_info(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        ticket: Ticket,
        info: Option<Option<PrivateRoomRow>>,
    ) {
        if let Some(Wait::RoomLookup {
            room,
            joiner,
            has_messages,
        }) = self.parts.waits.take(ticket)
        {
            peers::on_room_info(&mut self.parts, cx, &room, joiner, has_messages, info);
            self.release_input(cx, joiner.map(|(conn, _)| conn));
        }
    }

    /// A push's profile was read: the notice it was read for, unless its
    /// user came online meanwhile (`None` then, and for a ticket that is
    /// not a push's).
    pub fn take_push(&mut self, ticket: Ticket) -> Option<Notice> {
        match self.parts.waits.take(ticket) {
            Some(Wait::Push { notice }) if !push::is_connected(&self.parts, notice.user) => {
                Some(notice)
            }
            _ => None,
        }
    }

    /// Everything read again after the bus came back (`None`: it failed).
    pub fn on_resync(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        ticket: Ticket,
        snapshot: Option<Box<Snapshot>>,
    ) {
        if let Some(Wait::Resync) = self.parts.waits.take(ticket) {
            peers::on_resync(&mut self.parts, cx, snapshot);
        }
    }

    // ---- the bus and the clock ---------------------------------------------

    /// Handles what the bus brought (the loop was woken).
    pub fn on_bus(&mut self, cx: &mut Ctx<'_, impl Outbox>) {
        peers::on_bus(&mut self.parts, cx);
    }

    /// A user signed up here: every other node learns of them.
    pub fn announce_user(&mut self, id: UserId) {
        peers::announce_user(&mut self.parts, id);
    }

    /// Storage answered for a user a note named (`None`: it failed).
    pub fn on_user_found(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        ticket: Ticket,
        row: Option<Option<UserRow>>,
    ) {
        if let Some(Wait::UserLookup { id }) = self.parts.waits.take(ticket) {
            peers::on_user_found(&mut self.parts, cx, id, row);
        }
    }

    /// An account changed (the directory and the HTTP desk hold it
    /// already): the connections it concerns hear of it, here; other nodes
    /// apply the same change themselves.
    pub fn on_account(&mut self, cx: &mut Ctx<'_, impl Outbox>, event: AccountEvent) {
        accounts::on_account(&mut self.parts, cx, event);
    }

    /// What other nodes said that the HTTP desk must act on.
    pub fn take_peer_notes(&mut self) -> Vec<PeerNote> {
        self.parts
            .cluster
            .as_mut()
            .map(|c| c.take_peer_notes())
            .unwrap_or_default()
    }

    /// Once a second: graces that are over end, held pushes go, deferred
    /// reads retry, and a cluster node beats, drops silent peers and reads
    /// back lasting gaps.
    pub fn on_tick(&mut self, cx: &mut Ctx<'_, impl Outbox>) {
        presence::end_graces(&mut self.parts, cx);
        push::send_due(&mut self.parts, cx);
        self.retry_deferred(cx);
        peers::tick(&mut self.parts, cx);
    }

    // ---- what the HTTP routes may ask --------------------------------------

    /// Whether `user` may read room `name`: `Ok(true)` when it exists,
    /// `Ok(false)` when nobody ever used it (no history to read).
    pub fn may_read(&self, user: UserId, name: &str) -> Result<bool, Denied> {
        self.parts.may_read(user, name)
    }

    /// Whether room `name` is archived: read-only.
    pub fn is_archived(&self, name: &str) -> bool {
        self.parts.rooms.is_archived(name)
    }

    /// Every room the hub knows.
    pub fn rooms(&self) -> impl Iterator<Item = &rooms::Room> {
        self.parts.rooms.iter().map(|(_, r)| r)
    }

    /// Online here or, in a cluster, on another node.
    pub fn is_online(&self, user: UserId) -> bool {
        self.parts.sessions.is_online(user) || self.parts.shown_elsewhere(user)
    }

    /// Distinct users with a WebSocket open on this node.
    pub fn users_online(&self) -> usize {
        self.parts.sessions.users_online()
    }

    /// WebSocket chat sessions open.
    pub fn sessions_open(&self) -> usize {
        self.parts.sessions.count()
    }

    /// `user`'s chat sessions open on this node.
    pub fn sessions_of(&self, user: UserId) -> usize {
        self.parts.sessions.conns(user).len()
    }

    /// Rooms in memory (public and private), in O(1).
    pub fn rooms_known(&self) -> usize {
        self.parts.rooms.len()
    }

    /// Whether this node is one of a cluster (its memory may lag what
    /// other nodes just stored).
    pub fn in_cluster(&self) -> bool {
        self.parts.cluster.is_some()
    }

    /// Whether this node is in a cluster whose bus is down (`/healthz`).
    pub fn bus_down(&self) -> bool {
        self.parts.cluster.as_ref().is_some_and(|c| !c.is_up())
    }

    /// Other nodes heard from recently (`/metrics`).
    pub fn peers(&self) -> usize {
        self.parts.cluster.as_ref().map_or(0, |c| c.peer_count())
    }

    /// Notes from the bus turned away since start (`/metrics`).
    pub fn notes_rejected(&self) -> u64 {
        self.parts
            .cluster
            .as_ref()
            .map_or(0, |c| c.rejected_notes())
    }
}

/// Hands a command to its handler.
fn dispatch(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    me: Caller,
    command: Command<'_>,
) -> Result<(), FrameError> {
    match command {
        Command::Join(c) => on_join(parts, cx, me, c),
        Command::Leave(c) => on_leave(parts, cx, me, c),
        Command::Message(c) => on_message(parts, cx, me, c),
        Command::PrivateMessage(c) => on_private_message(parts, cx, me, c),
        Command::Typing(c) => on_typing(parts, cx, me, c, true),
        Command::StopTyping(c) => on_typing(parts, cx, me, c, false),
        Command::History(c) => on_history(parts, cx, me, c),
        Command::Read(c) => on_read(parts, cx, me, c),
        Command::CreateRoom(c) => on_create_room(parts, cx, me, c),
        Command::AddMember(c) => on_membership(parts, cx, me, c, true),
        Command::RemoveMember(c) => on_membership(parts, cx, me, c, false),
        Command::Edit(c) => on_edit(parts, cx, me, c),
        Command::Delete(c) => on_delete(parts, cx, me, c),
        Command::React(c) => on_react(parts, cx, me, c),
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
