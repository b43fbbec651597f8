//! The one way frames leave the hub for more than the connection that asked:
//! [`Hub::publish`] to a [`Topic`] (and [`Hub::publish_message`] for stored
//! chat messages). In a cluster it hands the frame to the [`Bus`] (other
//! nodes) and delivers it to this node's connections; a frame that arrives
//! from the bus is delivered by the same local step (`deliver`), so a node
//! treats a frame from elsewhere exactly like one of its own.
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

use super::rooms::RoomId;
use super::wire::{self, Dest, Note, TargetKey};
use super::{Ctx, Hub};
use crate::config::MAX_HELD_FRAMES;
use crate::outbox::{ConnRef, Outbox};
use crate::store::{MsgId, Seq, UserId};

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

/// What the bus hands the loop.
#[derive(Debug)]
pub enum BusEvent {
    /// Connected (again): this node may have missed notes meanwhile.
    Up,
    /// Disconnected: notes sent now are lost until `Up`.
    Down,
    /// A note another node sent (see `wire.rs`).
    Note(Vec<u8>),
}

/// The seam for a cross-node bus (Redis pub/sub, for example): bytes out,
/// bytes in. What the bytes say is the hub's business (`wire.rs`); the bus
/// only carries them to every other node, in the order each node sent them.
/// It must not block the loop: a real bus hands notes to its own threads
/// and rings the loop's `Waker` when one arrives. It may lose notes (while
/// down, or past its bounds): nodes notice by sequence and read back.
pub trait Bus {
    /// This node's name when the bus connects it to others (`None`: a
    /// single node, and the hub keeps no cluster state at all).
    fn node_name(&self) -> Option<&str>;
    /// Starts the bus's threads; `wake` rings the loop's `Waker` (called
    /// once, when the loop exists).
    fn start(&mut self, wake: std::sync::Arc<dyn Fn() + Send + Sync>);
    /// Sends a note to every other node; false when it was dropped.
    fn send(&mut self, note: Vec<u8>) -> bool;
    /// The next event, if one is waiting.
    fn receive(&mut self) -> Option<BusEvent>;
}

/// A single node: there is nobody to publish to and nothing to receive.
pub struct LocalOnly;

impl Bus for LocalOnly {
    fn node_name(&self) -> Option<&str> {
        None
    }
    fn start(&mut self, _: std::sync::Arc<dyn Fn() + Send + Sync>) {}
    fn send(&mut self, _: Vec<u8>) -> bool {
        false
    }
    fn receive(&mut self) -> Option<BusEvent> {
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
        if self.cluster.is_some() {
            let except_user = match except {
                Except::User(u) => Some(u),
                _ => None,
            };
            let dests = match topic {
                Topic::Room(id) => [
                    Some(Dest::Room(Cow::Borrowed(&*self.rooms.get(id).name))),
                    None,
                ],
                Topic::User(u) => [Some(Dest::User(u)), None],
                Topic::Conversation(a, b) => {
                    [Some(Dest::User(a)), (a != b).then_some(Dest::User(b))]
                }
                Topic::Everyone => [Some(Dest::Everyone), None],
            };
            for dest in dests.into_iter().flatten() {
                let note = wire::encode(
                    self.node(),
                    &Note::Frame {
                        dest,
                        except_user,
                        frame: Cow::Borrowed(frame),
                    },
                );
                self.bus.send(note);
            }
        }
        self.deliver(topic, except, id, frame, out)
    }

    /// [`publish`](Self::publish) to room `name` whether or not this node
    /// has it open: a change to a message of a room nobody here has joined
    /// still reaches the room's subscribers on other nodes.
    pub(super) fn publish_room_named(
        &mut self,
        name: &str,
        except: Except,
        frame: &Rc<[u8]>,
        out: &mut impl Outbox,
    ) -> u64 {
        if let Some(id) = self.rooms.id(name) {
            return self.publish(Topic::Room(id), except, None, frame, out);
        }
        if self.cluster.is_some() {
            let note = wire::encode(
                self.node(),
                &Note::Frame {
                    dest: Dest::Room(Cow::Borrowed(name)),
                    except_user: None,
                    frame: Cow::Borrowed(frame),
                },
            );
            self.bus.send(note);
        }
        0
    }

    /// Publishes a stored chat message: `id` lets a replaying connection
    /// skip it; in a cluster, `seq` puts it in order on every node (see
    /// `cluster.rs`), this one included.
    pub(super) fn publish_message(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        topic: Topic,
        except: Except,
        id: MsgId,
        seq: Seq,
        frame: &Rc<[u8]>,
    ) -> u64 {
        let Some(key) = self
            .target_key(topic)
            .filter(|_| self.cluster.is_some() && seq > 0)
        else {
            return self.deliver(topic, except, Some(id), frame, cx.out);
        };
        let note = wire::encode(
            self.node(),
            &Note::Message {
                target: key.clone(),
                seq,
                id,
                frame: Cow::Borrowed(frame),
            },
        );
        self.bus.send(note);
        self.sequence(cx, key, topic, seq, id, frame, except)
    }

    /// How nodes name a message's topic.
    fn target_key(&self, topic: Topic) -> Option<TargetKey> {
        match topic {
            Topic::Room(id) => Some(TargetKey::Room(self.rooms.get(id).name.clone())),
            Topic::Conversation(a, b) => Some(TargetKey::direct(a, b)),
            Topic::User(_) | Topic::Everyone => None,
        }
    }

    /// This node's part of a publish: the connections of `topic` here.
    pub(super) fn deliver(
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
            Topic::Conversation(a, b) => {
                let users: &[UserId] = if a == b { &[a] } else { &[a, b] };
                for u in users {
                    for &t in online.get(u).map(Vec::as_slice).unwrap_or_default() {
                        if !skip(t, sessions) {
                            out.frame(t, frame);
                            n += 1;
                        }
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
