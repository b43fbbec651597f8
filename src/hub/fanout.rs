//! The one way frames leave the hub for more than the connection that asked:
//! [`Hub::publish`] to a [`Topic`]. It hands the frame to the [`Bus`] (other
//! nodes) and delivers it to this node's connections; a frame that arrives
//! from the bus is delivered by the same local step, so a node treats a frame
//! from elsewhere exactly like one of its own.
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

use super::Hub;
use super::rooms::RoomId;
use crate::config::MAX_HELD_FRAMES;
use crate::outbox::{ConnRef, Outbox};
use crate::store::{MsgId, UserId};

/// Who a frame is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Every connection joined to the room (held for those still replaying).
    Room(RoomId),
    /// Every connection of one user.
    User(UserId),
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

/// A topic as nodes name it to each other: room ids are node-local, names are not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel<'a> {
    Room(Cow<'a, str>),
    User(UserId),
    Everyone,
}

/// A frame another node published.
#[derive(Debug)]
pub struct Inbound {
    pub channel: Channel<'static>,
    /// The message id, when the frame is a chat message (see [`Hub::publish`]).
    pub id: Option<MsgId>,
    /// Skip this user's connections (see [`Except::User`]).
    pub except_user: Option<UserId>,
    /// The frame, already encoded (bytes cross nodes as they are).
    pub frame: Vec<u8>,
}

/// The seam for a cross-node bus (Redis pub/sub, for example): what this node
/// publishes goes out through it, and what other nodes published comes back
/// from [`Bus::receive`] when the loop is woken. It must not block the loop: a
/// real bus hands frames to its own threads and rings the loop's `Waker`.
pub trait Bus {
    /// Sends a frame this node is delivering locally to every other node.
    fn publish(&mut self, channel: Channel<'_>, except_user: Option<UserId>, frame: &[u8]);
    /// The next frame from another node, if one is waiting.
    fn receive(&mut self) -> Option<Inbound>;
}

/// A single node: there is nobody to publish to and nothing to receive.
pub struct LocalOnly;

impl Bus for LocalOnly {
    fn publish(&mut self, _: Channel<'_>, _: Option<UserId>, _: &[u8]) {}
    fn receive(&mut self) -> Option<Inbound> {
        None
    }
}

impl Hub {
    /// Delivers `frame` to `topic` here and on every other node. Returns the
    /// copies queued on this node. `id` is the message id when the frame is
    /// a stored chat message: a connection still replaying the room skips it
    /// if its replay already carried it.
    pub(super) fn publish(
        &mut self,
        topic: Topic,
        except: Except,
        id: Option<MsgId>,
        frame: &Rc<[u8]>,
        out: &mut impl Outbox,
    ) -> u64 {
        let except_user = match except {
            Except::User(u) => Some(u),
            _ => None,
        };
        match topic {
            Topic::Room(id) => {
                let name = Cow::Borrowed(&*self.rooms.get(id).name);
                self.bus.publish(Channel::Room(name), except_user, frame);
            }
            Topic::User(u) => self.bus.publish(Channel::User(u), except_user, frame),
            Topic::Everyone => self.bus.publish(Channel::Everyone, except_user, frame),
        }
        self.deliver(topic, except, id, frame, out)
    }

    /// Delivers what other nodes published (the loop was woken).
    pub fn receive_from_bus(&mut self, out: &mut impl Outbox) {
        while let Some(inbound) = self.bus.receive() {
            let topic = match &inbound.channel {
                // Nobody here is in a room this node does not know.
                Channel::Room(name) => match self.rooms.id(name) {
                    Some(id) => Topic::Room(id),
                    None => continue,
                },
                Channel::User(u) => Topic::User(*u),
                Channel::Everyone => Topic::Everyone,
            };
            let except = inbound.except_user.map_or(Except::Nobody, Except::User);
            let frame: Rc<[u8]> = inbound.frame.into();
            self.deliver(topic, except, inbound.id, &frame, out);
        }
    }

    /// This node's part of a publish: the connections of `topic` here.
    fn deliver(
        &mut self,
        topic: Topic,
        except: Except,
        id: Option<MsgId>,
        frame: &Rc<[u8]>,
        out: &mut impl Outbox,
    ) -> u64 {
        let Hub {
            rooms,
            sessions,
            online,
            ..
        } = self;
        let skip = |t: Token, sessions: &[Option<super::Session>]| match except {
            Except::Nobody => false,
            Except::Conn(c) => {
                c.token == t
                    && sessions
                        .get(t.0)
                        .and_then(Option::as_ref)
                        .is_some_and(|s| s.conn == c)
            }
            Except::User(u) => sessions
                .get(t.0)
                .and_then(Option::as_ref)
                .is_some_and(|s| s.user == u),
        };
        let mut n = 0;
        match topic {
            Topic::Room(room_id) => {
                let room = rooms.get(room_id);
                for &t in &room.subscribers {
                    if !skip(t, sessions) {
                        out.frame(t, frame);
                        n += 1;
                    }
                }
                for &t in &room.replaying {
                    if skip(t, sessions) {
                        continue;
                    }
                    // Held until its replay is sent, so it arrives in order.
                    if let Some(s) = sessions.get_mut(t.0).and_then(Option::as_mut) {
                        if s.held.len() < MAX_HELD_FRAMES {
                            s.held.push((room_id, id, frame.clone()));
                            n += 1;
                        } else {
                            s.held_overflow = true;
                        }
                    }
                }
            }
            Topic::User(u) => {
                for &t in online.get(&u).map(Vec::as_slice).unwrap_or_default() {
                    if !skip(t, sessions) {
                        out.frame(t, frame);
                        n += 1;
                    }
                }
            }
            Topic::Everyone => {
                for conns in online.values() {
                    for &t in conns {
                        if !skip(t, sessions) {
                            out.frame(t, frame);
                            n += 1;
                        }
                    }
                }
            }
        }
        n
    }
}
