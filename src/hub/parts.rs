//! The hub's parts, composed: what every command handler and every
//! continuation of a storage or bus reply receives as `&mut Parts`, beside
//! the [`Ctx`] through which it reaches the rest of the server.
//!
//! Each part owns its fields (private to its file) and the methods that
//! keep them consistent; code elsewhere touches a part only through those.
//! The few questions that need two parts at once are answered here.
//!
//! `Parts` is not `Hub` because the handlers sit between them: `Hub`
//! (`mod.rs`) routes each call down to a handler, and a handler must not
//! import what routes to it, or the two would import each other.

use mio::Token;

use super::acks::Acks;
use super::cluster::Cluster;
use super::command::{FrameError, ROOM_NAME_RULE, valid_room_name};
use super::pacing::Pacing;
use super::reads::Reads;
use super::rooms::{RoomId, Rooms};
use super::sessions::Sessions;
use super::waits::{Wait, Waits};
use super::wire::Note;
use crate::outbox::{ConnRef, Outbox};
use crate::store::{Busy, MsgId, Request, Snapshot, Storage, UserId};
use crate::users::Directory;
use crate::ws::proto::{Encoder, Out};

/// What a hub call may touch besides the hub itself.
pub struct Ctx<'a, O> {
    pub users: &'a mut Directory,
    pub store: &'a mut dyn Storage,
    pub out: &'a mut O,
}

/// Why a user may not read a room.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// The name breaks the room-name rule.
    BadName,
    /// A private room the user is not a member of.
    Private,
}

/// Everything the hub keeps, part by part.
pub struct Parts {
    /// Chat connections, who is online, rate limits, presence graces.
    pub sessions: Sessions,
    /// Rooms, who is in them, private members, room quotas.
    pub rooms: Rooms,
    /// Message keys and ids, messages waiting for their commit, client ids.
    pub acks: Acks,
    /// Storage reads in flight and what they may cost; deferred frames.
    pub reads: Reads,
    /// Other storage requests waiting for their reply, by ticket.
    pub waits: Waits,
    /// Pushes per user and conversation: sent now, or held for the interval.
    pub pacing: Pacing,
    /// The other nodes, on a node of a cluster only.
    pub cluster: Option<Cluster>,
    /// Serializes server frames; its scratch buffer is reused.
    pub encoder: Encoder,
}

impl Parts {
    /// The parts as storage left them: ids continue, rooms and memberships
    /// and the client-id window come back.
    pub fn new(snapshot: &Snapshot, rate_limit: u32) -> Parts {
        Parts {
            sessions: Sessions::new(rate_limit),
            rooms: Rooms::load(snapshot),
            acks: Acks::load(snapshot),
            reads: Reads::default(),
            waits: Waits::default(),
            pacing: Pacing::default(),
            cluster: None,
            encoder: Encoder::default(),
        }
    }

    /// Sends a note to the other nodes (nothing on a single node).
    pub fn note(&mut self, note: &Note<'_>) {
        if let Some(c) = &mut self.cluster {
            c.note(note);
        }
    }

    /// Whether `conn`'s next frame may be handled: not while a frame of it
    /// waits for room to read (the reads part) or for its effect to be
    /// stored (the waits part; contract, "Order").
    pub fn takes_input(&self, conn: ConnRef) -> bool {
        self.reads.takes_input(conn) && !self.waits.holds_input(conn)
    }

    /// Unsent output of all of `user`'s connections here (their reply
    /// budget, `reads.rs`): at most `MAX_CONNS_PER_USER` lookups.
    pub fn queued_for(&self, out: &impl Outbox, user: UserId) -> usize {
        self.sessions
            .conns(user)
            .iter()
            .map(|t| out.queued(*t))
            .sum()
    }

    /// Whether `user` is online on another node.
    pub fn shown_elsewhere(&self, user: UserId) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.shows(user))
    }

    /// An `error` frame to one connection.
    pub fn send_error(
        &mut self,
        out: &mut impl Outbox,
        token: Token,
        e: &FrameError,
        client_id: Option<&str>,
    ) {
        let frame = Out::Error {
            code: e.code,
            message: &e.message,
            client_id,
        };
        out.reply(token, self.encoder.bytes(&frame));
    }

    /// Whether `user` may read room `name`: `Ok(true)` when it exists,
    /// `Ok(false)` when nobody ever used it (no history to read).
    pub fn may_read(&self, user: UserId, name: &str) -> Result<bool, Denied> {
        if !valid_room_name(name) {
            return Err(Denied::BadName);
        }
        match self.rooms.id(name).map(|id| self.rooms.get(id)) {
            None => Ok(false),
            Some(r) if !r.admits(user) => Err(Denied::Private),
            Some(_) => Ok(true),
        }
    }

    /// The room `name` (or, when `None`, the room in the connection's URL)
    /// if this connection has joined it.
    pub fn joined_room(&self, token: Token, name: Option<&str>) -> Result<RoomId, FrameError> {
        let session = self.sessions.get(token);
        let name = name
            .or_else(|| session.and_then(|s| s.url_room()).map(|r| &**r))
            .ok_or_else(|| FrameError::new("invalid_input", "room is required"))?;
        self.rooms
            .id(name)
            .filter(|id| session.is_some_and(|s| s.is_in(*id)))
            .ok_or_else(|| FrameError::new("not_member", format!("join {name} first")))
    }

    /// The room `name` if `user` may read it and it exists (has messages
    /// or members): for frames that need no `join`.
    pub fn readable_room(&self, user: UserId, name: &str) -> Result<RoomId, FrameError> {
        match self.may_read(user, name) {
            Err(Denied::BadName) => Err(FrameError::new("invalid_input", ROOM_NAME_RULE)),
            Err(Denied::Private) => Err(FrameError::new("forbidden", format!("{name} is private"))),
            Ok(_) => self
                .rooms
                .id(name)
                .ok_or_else(|| FrameError::new("invalid_input", format!("{name} has no messages"))),
        }
    }

    /// Asks storage whether room `name`, unknown here, is private, before
    /// it is opened: for a `join` (`joiner`), or for a note that named it
    /// (one lookup per room at a time). `Err` when storage is full.
    pub fn look_up_room(
        &mut self,
        store: &mut dyn Storage,
        name: &str,
        joiner: Option<(ConnRef, Option<MsgId>)>,
        has_messages: bool,
    ) -> Result<(), Busy> {
        let for_note = joiner.is_none();
        if for_note
            && let Some(c) = &mut self.cluster
            && !c.start_lookup(name)
        {
            return Ok(());
        }
        let ticket = self.waits.park(Wait::RoomLookup {
            room: name.into(),
            joiner,
            has_messages,
        });
        let req = Request::RoomInfo {
            ticket,
            name: name.to_string(),
        };
        store.submit(req).inspect_err(|_| {
            self.waits.cancel(ticket);
            if for_note && let Some(c) = &mut self.cluster {
                c.end_lookup(name);
            }
        })
    }
}
