//! The waits part: storage requests the hub is waiting for, by ticket.
//!
//! A command that needs storage parks what it must remember as a [`Wait`]
//! and sends its request with the ticket; the storage thread echoes the
//! ticket in its reply, and the hub takes the wait back to go on
//! (`Hub::on_history` and its siblings route each wait to its handler).
//! Messages are the exception: they wait in the acks part, by key.
//!
//! Some waits also *hold their connection's input* (contract, "Order"):
//! a frame whose effect exists only once storage answers (`create_room`,
//! `add_member`/`remove_member`, a `join` of a room this node is still
//! looking up) would otherwise let the next frame from the same connection
//! (a `join` of the room just created, a `message` to it) be judged against
//! the state before it. While such a wait is parked the reactor hands the
//! connection no further frame (`Hub::takes_input`); the rest waits in the
//! socket buffer, and input resumes when the answer has been applied. The
//! rule is the narrowest that keeps order: chat messages, edits, reactions
//! and reads never hold (storage's one queue keeps their order, and a
//! sender's messages must not wait for each other's commits), and nothing
//! holds another connection.

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
    /// A `read` in a conversation: its receipts go out once storage found
    /// the message in that conversation.
    Receipt {
        conn: ConnRef,
        user: UserId,
        peer: UserId,
        id: MsgId,
    },
    /// An `edit`, `delete` or `react` is being applied.
    Change { conn: ConnRef, asked: Asked },
    /// A cluster node reads back messages it missed (`order.rs`).
    Catchup { key: TargetKey },
    /// A cluster node reads everything back after a bus outage.
    Resync,
    /// A note named a user this node has not read yet (`peers.rs`).
    UserLookup { id: UserId },
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

impl Wait {
    /// The connection whose input this wait holds until it is answered.
    fn holds(&self) -> Option<ConnRef> {
        match self {
            Wait::CreateRoom { conn, .. } | Wait::Membership { conn, .. } => Some(*conn),
            Wait::RoomLookup {
                joiner: Some((conn, _)),
                ..
            } => Some(*conn),
            _ => None,
        }
    }
}

/// Waits by ticket.
#[derive(Default)]
pub struct Waits {
    waiting: HashMap<Ticket, Wait>,
    /// Connections whose input is held, with how many waits hold each.
    holding: HashMap<ConnRef, u32>,
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
        if let Some(conn) = wait.holds() {
            *self.holding.entry(conn).or_insert(0) += 1;
        }
        self.waiting.insert(ticket, wait);
        ticket
    }

    /// The wait a reply answers (`None`: not the hub's, or answered). A
    /// connection it held is held no longer once the caller has applied it
    /// (see [`Waits::holds_input`]).
    pub fn take(&mut self, ticket: Ticket) -> Option<Wait> {
        let wait = self.waiting.remove(&ticket)?;
        if let Some(conn) = wait.holds()
            && let Some(n) = self.holding.get_mut(&conn)
        {
            *n -= 1;
            if *n == 0 {
                self.holding.remove(&conn);
            }
        }
        Some(wait)
    }

    /// The request could not be sent after all: nothing waits for it.
    pub fn cancel(&mut self, ticket: Ticket) {
        self.take(ticket);
    }

    /// Whether a frame of `conn` waits for storage before the next may be
    /// handled (see the module doc).
    pub fn holds_input(&self, conn: ConnRef) -> bool {
        self.holding.contains_key(&conn)
    }
}

#[cfg(test)]
mod tests {
    use mio::Token;

    use super::*;

    fn conn(n: usize) -> ConnRef {
        ConnRef {
            token: Token(n),
            serial: 1,
        }
    }

    /// A wait whose effect is not applied yet holds its connection until
    /// the last such wait is answered or cancelled; reads and other
    /// connections are never held.
    #[test]
    fn holds_a_connection_until_its_effect_is_answered() {
        let mut w = Waits::default();
        let row = PrivateRoomRow {
            name: "ops".into(),
            owner: 1,
            members: vec![1],
        };
        let made = w.park(Wait::CreateRoom { conn: conn(1), row });
        let added = w.park(Wait::Membership {
            conn: conn(1),
            room: "ops".into(),
            user: 2,
            add: true,
        });
        let read = w.park(Wait::Unread { conn: conn(2) });
        assert!(w.holds_input(conn(1)) && !w.holds_input(conn(2)));
        assert!(w.take(made).is_some());
        assert!(w.holds_input(conn(1)), "the membership change still waits");
        w.cancel(added);
        assert!(!w.holds_input(conn(1)));
        assert!(w.take(read).is_some() && w.take(read).is_none());
        assert!(w.holding.is_empty());
    }
}
