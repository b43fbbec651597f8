//! The one way frames leave the hub for more than the connection that asked:
//! [`publish`] to a [`Topic`] (stored chat messages go through
//! `order::publish_message`, which keeps a cluster's order and ends here).
//! In a cluster it hands the frame to the other nodes (the `Cluster` part's
//! bus) and delivers it to this node's connections; a frame that arrives
//! from the bus is delivered by the same local step ([`deliver`]), so a
//! node treats a frame from elsewhere exactly like one of its own.
//!
//! Replies to one connection (`ack`, `online_users`, `history`, `error`) do
//! not go through here: they are answers, not deliveries, and never cross
//! nodes.
//!
//! Encode once: the frame is serialized and framed once by the caller into an
//! `Rc<[u8]>`; every recipient's queue takes a reference-counted copy of the
//! pointer, not of the bytes.

use std::borrow::Cow;
use std::rc::Rc;

use mio::Token;

use super::parts::Parts;
use super::rooms::RoomId;
use super::sessions::Sessions;
use super::wire::{Dest, Note};
use crate::outbox::{ConnRef, Outbox};
use crate::store::{MsgId, UserId};

/// Who a frame is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Every connection joined to the room (held for those still replaying).
    Room(RoomId),
    /// Every connection of one user.
    User(UserId),
    /// Every connection of both users of a private conversation (the
    /// sender's other tabs see what they sent).
    Conversation(UserId, UserId),
    /// Every chat connection.
    Everyone,
}

/// Whom a publish skips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Except {
    Nobody,
    /// The connection that caused the frame (its sender; with its serial,
    /// since a frame delivered at commit time may outlive the connection and
    /// its token be reused). Node-local: other nodes deliver to everyone.
    Conn(ConnRef),
    /// Every connection of this user, on every node (typing indicators).
    User(UserId),
}

/// Delivers `frame` to `topic` here and on every other node. Returns the
/// copies queued on this node.
pub fn publish(
    parts: &mut Parts,
    topic: Topic,
    except: Except,
    frame: &Rc<[u8]>,
    out: &mut impl Outbox,
) -> u64 {
    if let Some(c) = &mut parts.cluster {
        let except_user = match except {
            Except::User(u) => Some(u),
            _ => None,
        };
        let dests = match topic {
            Topic::Room(id) => [
                Some(Dest::Room(Cow::Borrowed(parts.rooms.get(id).name()))),
                None,
            ],
            Topic::User(u) => [Some(Dest::User(u)), None],
            Topic::Conversation(a, b) => [Some(Dest::User(a)), (a != b).then_some(Dest::User(b))],
            Topic::Everyone => [Some(Dest::Everyone), None],
        };
        for dest in dests.into_iter().flatten() {
            c.note(&Note::Frame {
                dest,
                except_user,
                frame: Cow::Borrowed(frame),
            });
        }
    }
    deliver(parts, topic, except, None, frame, out)
}

/// [`publish`] to room `name` whether or not this node has it open: a
/// change to a message of a room nobody here has joined still reaches the
/// room's subscribers on other nodes.
pub fn publish_room_named(
    parts: &mut Parts,
    name: &str,
    except: Except,
    frame: &Rc<[u8]>,
    out: &mut impl Outbox,
) -> u64 {
    if let Some(id) = parts.rooms.id(name) {
        return publish(parts, Topic::Room(id), except, frame, out);
    }
    parts.note(&Note::Frame {
        dest: Dest::Room(Cow::Borrowed(name)),
        except_user: None,
        frame: Cow::Borrowed(frame),
    });
    0
}

/// This node's part of a publish: the connections of `topic` here. `id` is
/// the message id when the frame is a stored chat message: a connection
/// still replaying the room skips it if its replay already carried it.
pub fn deliver(
    parts: &mut Parts,
    topic: Topic,
    except: Except,
    id: Option<MsgId>,
    frame: &Rc<[u8]>,
    out: &mut impl Outbox,
) -> u64 {
    let Parts {
        rooms, sessions, ..
    } = parts;
    let skip = |t: Token, sessions: &Sessions| match except {
        Except::Nobody => false,
        Except::Conn(c) => c.token == t && sessions.is_current(c),
        Except::User(u) => sessions.get(t).is_some_and(|s| s.user() == u),
    };
    let mut n = 0;
    match topic {
        Topic::Room(room_id) => {
            let room = rooms.get(room_id);
            for &t in room.subscribers() {
                if !skip(t, sessions) {
                    out.frame(t, frame);
                    n += 1;
                }
            }
            for &t in room.replaying() {
                if skip(t, sessions) {
                    continue;
                }
                // Held until its replay is sent, so it arrives in order.
                if let Some(s) = sessions.get_mut(t)
                    && s.hold(room_id, id, frame)
                {
                    n += 1;
                }
            }
        }
        Topic::User(u) => {
            for &t in sessions.conns(u) {
                if !skip(t, sessions) {
                    out.frame(t, frame);
                    n += 1;
                }
            }
        }
        Topic::Conversation(a, b) => {
            let users: &[UserId] = if a == b { &[a] } else { &[a, b] };
            for &u in users {
                for &t in sessions.conns(u) {
                    if !skip(t, sessions) {
                        out.frame(t, frame);
                        n += 1;
                    }
                }
            }
        }
        Topic::Everyone => {
            for t in sessions.every_conn() {
                if !skip(t, sessions) {
                    out.frame(t, frame);
                    n += 1;
                }
            }
        }
    }
    n
}
