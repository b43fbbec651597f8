//! Stored chat messages out, in order. On a single node a committed message
//! is delivered at once: the one writer commits in order. In a cluster each
//! room's and conversation's messages, this node's own included, go out in
//! their `seq` order (`cluster.rs` explains why and how): the next at once,
//! an early one when its predecessors come, and a gap that lasts is read
//! back from storage (`Request::Catchup`).

use std::rc::Rc;

use super::cluster::{Early, Step};
use super::fanout::{self, Except, Topic};
use super::parts::{Ctx, Parts};
use super::presence;
use super::waits::Wait;
use super::wire::{Note, TargetKey};
use crate::clock;
use crate::config::CATCHUP_LIMIT;
use crate::outbox::{ConnRef, Outbox};
use crate::store::{MsgId, Request, Seq, StoredMessage};
use crate::ws::proto::stored_frame;

/// Publishes a stored chat message, sent from `sender` (skipped): `id` lets
/// a replaying connection skip it; in a cluster, `seq` puts it in order on
/// every node, this one included. Returns the copies queued here.
pub fn publish_message(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    topic: Topic,
    sender: ConnRef,
    id: MsgId,
    seq: Seq,
    frame: &Rc<[u8]>,
) -> u64 {
    // A backend that does not sequence (seq 0) has one writer: its order is
    // the commit order.
    let key = match (&parts.cluster, topic) {
        (Some(_), Topic::Room(room)) if seq > 0 => {
            Some(TargetKey::Room(parts.rooms.get(room).name().into()))
        }
        (Some(_), Topic::Conversation(a, b)) if seq > 0 => Some(TargetKey::direct(a, b)),
        _ => None,
    };
    let (Some(c), Some(key)) = (&mut parts.cluster, key) else {
        return fanout::deliver(parts, topic, Except::Conn(sender), Some(id), frame, cx.out);
    };
    c.note(&Note::Message {
        target: key.clone(),
        seq,
        id,
        frame: std::borrow::Cow::Borrowed(frame),
    });
    let early = Early {
        id,
        frame: frame.clone(),
        sender: Some(sender),
    };
    sequence(parts, cx, key, topic, seq, early)
}

/// Delivers message `seq` of `key` here in its order: now if it is the
/// next, later if it came early, never if it was delivered already.
/// Returns the copies queued.
pub fn sequence(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    key: TargetKey,
    topic: Topic,
    seq: Seq,
    message: Early,
) -> u64 {
    let interested = has_interest(parts, &key);
    let except = message.sender.map_or(Except::Nobody, Except::Conn);
    let (id, frame) = (message.id, message.frame.clone());
    let step = match &mut parts.cluster {
        Some(c) => c.sequence(&key, seq, message, interested, clock::now_ms()),
        None => Step::Deliver,
    };
    if step == Step::Hold {
        return 0;
    }
    let mut n = fanout::deliver(parts, topic, except, Some(id), &frame, cx.out);
    n += advance(parts, cx, &key, topic, seq);
    n
}

/// Whether a connection here receives `key`'s messages.
pub fn has_interest(parts: &Parts, key: &TargetKey) -> bool {
    match key {
        TargetKey::Room(name) => parts
            .rooms
            .id(name)
            .is_some_and(|id| parts.rooms.get(id).has_listeners()),
        TargetKey::Direct(a, b) => parts.sessions.is_online(*a) || parts.sessions.is_online(*b),
    }
}

/// `seq` of `key` was delivered: deliver what waited behind it, and
/// finish the replays that waited for it.
fn advance(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    key: &TargetKey,
    topic: Topic,
    seq: Seq,
) -> u64 {
    let Some(c) = &mut parts.cluster else {
        return 0;
    };
    let (ready, delivered) = c.advance(key, seq, clock::now_ms());
    let replays = match key {
        TargetKey::Room(room) => c.replays_ready(room, delivered),
        TargetKey::Direct(..) => Vec::new(),
    };
    let mut n = 0;
    for e in ready {
        let except = e.sender.map_or(Except::Nobody, Except::Conn);
        n += fanout::deliver(parts, topic, except, Some(e.id), &e.frame, cx.out);
    }
    if let TargetKey::Room(room) = key {
        for (conn, messages) in replays {
            presence::finish_replay(parts, cx, conn, room, messages);
        }
    }
    n
}

/// Reads `key`'s messages after `after` back from storage.
pub fn catch_up(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>, key: TargetKey, after: Seq) {
    let target = key.to_target();
    let ticket = parts.waits.park(Wait::Catchup { key: key.clone() });
    let req = Request::Catchup {
        ticket,
        target,
        after,
        limit: CATCHUP_LIMIT,
    };
    if cx.store.submit(req).is_err() {
        parts.waits.cancel(ticket);
        return;
    }
    if let Some(c) = &mut parts.cluster {
        c.catching(&key);
    }
}

/// The catch-up read came back (`None`: it failed, and the gap waits
/// again): deliver what was missed, in order, and read on if there is more.
pub fn caught_up(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    key: TargetKey,
    messages: Option<Vec<StoredMessage>>,
) {
    let now = clock::now_ms();
    let Some(c) = &mut parts.cluster else { return };
    if !c.caught_up(&key, messages.is_none(), now) {
        return;
    }
    let Some(messages) = messages else { return };
    let full = messages.len() >= CATCHUP_LIMIT;
    if !messages.is_empty() {
        log::info!(
            "cluster: read back {} missed messages of {key:?}",
            messages.len()
        );
    }
    let mut n = 0;
    for m in &messages {
        parts.acks.saw(m.id);
        let Some(early) = parts
            .cluster
            .as_mut()
            .and_then(|c| c.take_missed(&key, m.seq))
        else {
            continue;
        };
        let topic = match &key {
            TargetKey::Room(name) => {
                let id = parts.rooms.open(name);
                parts.rooms.get_mut(id).mark_has_messages();
                Topic::Room(id)
            }
            TargetKey::Direct(a, b) => Topic::Conversation(*a, *b),
        };
        let message = early.unwrap_or_else(|| {
            let users = &*cx.users;
            Early {
                id: m.id,
                // As it is now: a message deleted before this node caught
                // up goes out as its `message_deleted` (the sequence steps
                // past it; a client that never saw it ignores the deletion).
                frame: parts.encoder.shared(&stored_frame(m, &|u| users.name(u))),
                sender: None,
            }
        });
        n += sequence(parts, cx, key.clone(), topic, m.seq, message);
    }
    cx.out.metrics().deliveries += n;
    if full && let Some(c) = &parts.cluster {
        let after = c.delivered(&key);
        catch_up(parts, cx, key, after);
    }
}
