//! The waits part: storage requests the hub is waiting for, by ticket.
//!
//! A command that needs storage parks what it must remember as a [`Wait`]
//! and sends its request with the ticket; the storage thread echoes the
//! ticket in its reply, and the hub takes the wait back to go on
//! (`Hub::on_history` and its siblings route each wait to its handler).
//! Messages are the exception: they wait in the acks part, by key.

use std::collections::HashMap;

use super::wire::TargetKey;
use crate::outbox::ConnRef;
use crate::push::Notice;
use crate::store::{Desk, MsgId, PrivateRoomRow, Target, Ticket, UserId};

/// Which change a parked `edit`, `delete` or `react` asked for, for its
/// error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    Edit,
    Delete,
    React,
}

/// A storage request the hub is waiting for.
pub enum Wait {
    /// `create_room`: the row is being stored; the room exists only after.
    CreateRoom { conn: ConnRef, row: PrivateRoomRow },
    /// `add_member` / `remove_member`: applied in memory only after it is stored.
    Membership {
        conn: ConnRef,
        room: Box<str>,
        user: UserId,
        add: bool,
    },
    /// A `history` frame; `reserved` bytes are held for its reply.
    History {
        conn: ConnRef,
        target: Target,
        reserved: usize,
    },
    /// `join` with `since`.
    Replay {
        conn: ConnRef,
        room: Box<str>,
        reserved: usize,
    },
    /// The `unread` frame after connect.
    Unread { conn: ConnRef },
    /// An `edit`, `delete` or `react` is being applied.
    Change { conn: ConnRef, asked: Asked },
    /// A cluster node reads back messages it missed (`order.rs`).
    Catchup { key: TargetKey },
    /// A cluster node reads everything back after a bus outage.
    Resync,
    /// A room this node has not heard of: is it private? Asked for a `join`
    /// (`joiner`: the connection and its `since`), or for a note naming it
    /// (`has_messages` when the note was a message).
    RoomLookup {
        room: Box<str>,
        joiner: Option<(ConnRef, Option<MsgId>)>,
        has_messages: bool,
    },
    /// A push, paced and decided: its user's subscriptions and setting
    /// are being read (`push.rs`).
    Push { notice: Notice },
}

/// Waits by ticket.
#[derive(Default)]
pub struct Waits {
    waiting: HashMap<Ticket, Wait>,
    next: u64,
}

impl Waits {
    /// Parks `wait` and returns the ticket its answer will carry.
    pub fn park(&mut self, wait: Wait) -> Ticket {
        self.next += 1;
        let ticket = Ticket {
            desk: Desk::Hub,
            seq: self.next,
        };
        self.waiting.insert(ticket, wait);
        ticket
    }

    /// The wait a reply answers (`None`: not the hub's, or answered).
    pub fn take(&mut self, ticket: Ticket) -> Option<Wait> {
        self.waiting.remove(&ticket)
    }

    /// The request could not be sent after all: nothing waits for it.
    pub fn cancel(&mut self, ticket: Ticket) {
        self.waiting.remove(&ticket);
    }
}
