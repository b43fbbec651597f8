//! What every chat message goes through, room or private: a resent
//! `client_id` is answered from its first copy; a new message gets a key,
//! goes to the storage thread and waits in the acks part. When the commit
//! comes back ([`on_message_stored`]) with the message's id, its frame is encoded
//! ONCE, the same bytes are published (`order.rs`, `fanout.rs`) and the
//! sender gets its `ack`; if the write failed, nobody saw the message and
//! the sender gets an `error` with its `client_id`. Delivering at commit
//! costs recipients one batch of latency; in exchange nobody is ever shown
//! a message that storage does not have.

use crate::hub::acks::{Delivery, PendingAck, Retry, Stored};
use crate::hub::command::{ClientId, FrameError};
use crate::hub::fanout::{self, Except, Topic};
use crate::hub::mentions;
use crate::hub::order;
use crate::hub::parts::{Ctx, Parts};
use crate::hub::push;
use crate::hub::sessions::Caller;
use crate::outbox::{ConnRef, Outbox};
use crate::store::{Attachment, MsgId, PostRefusal, Request, StoredMessage};
use crate::ws::proto::{MessageObj, Out, Ts};

/// Whether this is a resend of a `client_id` `me` already sent: then it
/// is acked again (now if the first copy is committed, else with it), and
/// nothing more is done.
pub fn is_retry(
    parts: &mut Parts,
    out: &mut impl Outbox,
    me: Caller,
    client_id: Option<&ClientId<'_>>,
) -> bool {
    let Some(cid) = client_id else { return false };
    match parts.acks.retry(me.conn, me.user, cid) {
        Retry::New => false,
        Retry::Waiting => true,
        Retry::Stored { id, timestamp_ms } => {
            let ack = Out::Ack {
                client_id: Some(cid),
                id,
                timestamp: Ts(timestamp_ms),
            };
            out.reply(me.token(), parts.encoder.bytes(&ack));
            true
        }
    }
}

/// Queues the row for storage and parks the message until storage
/// answers. Nobody sees it before the commit.
pub fn persist(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    conn: ConnRef,
    msg: StoredMessage,
    client_id: Option<&str>,
    delivery: Delivery,
) -> Result<(), FrameError> {
    let (id, ts, from, reply_to) = (msg.id, msg.timestamp_ms, msg.from, msg.reply_to);
    let content = msg.content.as_str().into();
    let mentions = mentions::mentioned(cx.users, from, &msg.content, |user| match delivery {
        Delivery::Room(room) => parts.rooms.get(room).admits(user),
        Delivery::Private { peer } => user == peer,
    });
    let req = Request::PutMessage {
        msg,
        client_id: client_id.map(String::from),
        // A conversation's unread count already counts what mentions
        // the peer: only room mentions are kept for counting.
        mentions: match delivery {
            Delivery::Room(_) => mentions.clone(),
            Delivery::Private { .. } => Vec::new(),
        },
    };
    // Queued even while the database is unreachable: its batch fails at
    // once (the sender hears `busy`), and the first retry after the
    // database is back is stored, with no probe to wait for.
    cx.store.submit(req).map_err(|_| {
        FrameError::new("busy", "the server is busy; retry with the same client_id")
    })?;
    if let Delivery::Room(room) = delivery {
        parts.rooms.get_mut(room).message_sent();
    }
    for &u in &mentions {
        cx.users.mark_unread_source(u);
    }
    let ack = PendingAck {
        waiters: vec![(conn, client_id.map(Into::into))],
        timestamp_ms: ts,
        from,
        delivery,
        content,
        reply_to,
        mentions,
    };
    parts.acks.park(id, ack);
    Ok(())
}

/// Storage answered for a message: deliver it and ack it, ack the first
/// copy of a retry, or tell the sender it failed (with its `client_id`,
/// which is free again for the retry). `key` is the one `persist` sent;
/// `files` the attachments storage checked and stored with it (their
/// names, sizes and types come from the files' rows, not the client).
pub fn on_message_stored(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    key: MsgId,
    stored: Stored,
    files: &[Attachment],
) {
    let Some(pending) = parts.acks.settle(key, stored) else {
        return;
    };
    if let Delivery::Room(room) = pending.delivery {
        parts.rooms.get_mut(room).message_settled(!stored.failed());
    }
    let (ack_id, ack_ts) = match stored {
        Stored::Yes { id, .. } => (id, pending.timestamp_ms),
        Stored::Already { id, timestamp_ms } => (id, timestamp_ms),
        Stored::No { .. } | Stored::Refused(_) => (0, 0),
    };
    let mut delivered = false;
    if let Stored::Yes { id, seq } = stored {
        cx.out.metrics().messages_stored += 1;
        let sender = pending.waiters[0].0;
        let (from, ts) = (pending.from, Ts(pending.timestamp_ms));
        let n = match pending.delivery {
            Delivery::Room(room) => {
                let frame = parts.encoder.shared(&Out::Message {
                    id,
                    room: parts.rooms.get(room).name(),
                    user: cx.users.name(from),
                    content: &pending.content,
                    timestamp: ts,
                    reply_to: pending.reply_to,
                    edited_at: None,
                    reactions: Vec::new(),
                    attachments: files,
                });
                order::publish_message(parts, cx, Topic::Room(room), sender, id, seq, &frame)
            }
            Delivery::Private { peer } => {
                let frame = parts.encoder.shared(&Out::PrivateMessage {
                    id,
                    from: cx.users.name(from),
                    to: cx.users.name(peer),
                    content: &pending.content,
                    timestamp: ts,
                    reply_to: pending.reply_to,
                    edited_at: None,
                    reactions: Vec::new(),
                    attachments: files,
                });
                let topic = Topic::Conversation(from, peer);
                let n = order::publish_message(parts, cx, topic, sender, id, seq, &frame);
                // Delivered when the peer has a connection here (not
                // just lingering in its grace) or on another node.
                delivered = !parts.sessions.conns(peer).is_empty() || parts.shown_elsewhere(peer);
                n
            }
        };
        cx.out.metrics().deliveries += n;
        if !pending.mentions.is_empty() {
            send_mentions(parts, cx, id, &pending, files);
        }
        push::on_stored(parts, cx, id, &pending);
    }
    for (conn, client_id) in &pending.waiters {
        if !cx.out.is_live(*conn) {
            continue;
        }
        let client_id = client_id.as_deref();
        let error = match stored {
            Stored::Refused(PostRefusal::ReplyTo) => Some((
                "invalid_input",
                "reply_to must be a message of the same room or conversation",
            )),
            Stored::Refused(PostRefusal::Attachment) => Some((
                "invalid_input",
                "attachments must be files you uploaded (POST /api/files)",
            )),
            Stored::No { transient: true } => {
                Some(("busy", "the server is busy; retry with the same client_id"))
            }
            Stored::No { transient: false } => Some((
                "internal",
                "the message could not be stored; retry with the same client_id",
            )),
            Stored::Yes { .. } | Stored::Already { .. } => None,
        };
        if let Some((code, message)) = error {
            let e = Out::Error {
                code,
                message,
                client_id,
            };
            cx.out.reply(conn.token, parts.encoder.bytes(&e));
            continue;
        }
        let ack = Out::Ack {
            client_id,
            id: ack_id,
            timestamp: Ts(ack_ts),
        };
        cx.out.reply(conn.token, parts.encoder.bytes(&ack));
        if delivered {
            let frame = Out::Delivered { id: ack_id };
            cx.out.reply(conn.token, parts.encoder.bytes(&frame));
        }
    }
    if let Delivery::Room(room) = pending.delivery {
        parts.rooms.collect(room);
    }
}

/// The `mention` frame, once, to every connection of each user the
/// message names (on every node), joined to the room or not.
fn send_mentions(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    id: MsgId,
    pending: &PendingAck,
    files: &[Attachment],
) {
    let user = cx.users.name(pending.from);
    let (room, from, to) = match pending.delivery {
        Delivery::Room(room) => (Some(parts.rooms.get(room).name()), None, None),
        Delivery::Private { peer } => (None, Some(user), Some(cx.users.name(peer))),
    };
    let frame = parts.encoder.shared(&Out::Mention {
        message: MessageObj {
            id,
            room,
            from,
            to,
            user,
            content: &pending.content,
            timestamp: Ts(pending.timestamp_ms),
            reply_to: pending.reply_to,
            edited_at: None,
            reactions: Vec::new(),
            attachments: files,
        },
    });
    for &u in &pending.mentions {
        fanout::publish(parts, Topic::User(u), Except::Nobody, &frame, cx.out);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::hub::tests::{ALICE, BOB, Bench};

    /// A resend of a `client_id` is neither stored nor delivered again: before
    /// the commit it waits for the first copy's ack, after it is acked at once
    /// with the same id.
    #[test]
    fn client_id_retries_are_idempotent() {
        let mut b = Bench::new();
        let a1 = b.open(1, ALICE);
        let a2 = b.open(2, ALICE);
        let bob = b.open(3, BOB);
        for t in [a1, a2, bob] {
            b.send(t, json!({"type": "join", "room": "general"}));
        }
        b.out.clear();
        let msg =
            json!({"type": "message", "room": "general", "content": "once", "client_id": "k"});
        b.send(a1, msg.clone());
        b.send(a2, msg.clone());
        assert_eq!(b.put_message_count(), 1);
        assert!(
            b.of_type(bob, "message").is_empty(),
            "not before the commit"
        );
        b.settle();
        let (ack1, ack2) = (b.of_type(a1, "ack"), b.of_type(a2, "ack"));
        assert_eq!(ack1.len(), 1);
        assert_eq!(ack1, ack2, "the retry from another tab gets the first ack");
        b.send(a1, msg);
        assert_eq!(b.put_message_count(), 0, "nothing new to store");
        assert_eq!(b.of_type(a1, "ack")[1], ack1[0]);
        assert_eq!(b.of_type(bob, "message").len(), 1);
    }

    /// A full storage queue answers `busy` with the `client_id`, shows the
    /// message to nobody, and does not use up the `client_id`.
    #[test]
    fn busy_storage_refuses_without_burning_the_client_id() {
        let mut b = Bench::new();
        let a = b.open(1, ALICE);
        let bob = b.open(2, BOB);
        for t in [a, bob] {
            b.send(t, json!({"type": "join", "room": "general"}));
        }
        b.out.clear();
        b.queue.full = true;
        let msg =
            json!({"type": "message", "room": "general", "content": "later", "client_id": "k"});
        b.send(a, msg.clone());
        let err = b.of_type(a, "error");
        assert_eq!(
            (&err[0]["code"], &err[0]["client_id"]),
            (&json!("busy"), &json!("k"))
        );
        assert!(b.frames(bob).is_empty());
        b.queue.full = false;
        b.send(a, msg);
        assert_eq!(b.put_message_count(), 1, "the retry is stored");
        b.settle();
        assert_eq!(b.of_type(a, "ack").len(), 1);
        assert_eq!(b.of_type(bob, "message").len(), 1);
    }

    /// A write that fails shows the message to nobody, answers `internal` with
    /// the `client_id`, and frees it: the retry is stored and acked, never acked
    /// unstored. A resend made while the first copy was pending fails with it.
    #[test]
    fn failed_write_is_not_acked_and_its_retry_is_stored() {
        let mut b = Bench::new();
        let a1 = b.open(1, ALICE);
        let a2 = b.open(2, ALICE);
        let bob = b.open(3, BOB);
        for t in [a1, a2, bob] {
            b.send(t, json!({"type": "join", "room": "general"}));
        }
        b.out.clear();
        let msg =
            json!({"type": "message", "room": "general", "content": "important", "client_id": "k"});
        b.send(a1, msg.clone());
        b.send(a2, msg.clone());
        b.fail_writes();
        for t in [a1, a2] {
            let e = b.of_type(t, "error");
            assert_eq!(
                (&e[0]["code"], &e[0]["client_id"]),
                (&json!("internal"), &json!("k"))
            );
            assert!(b.of_type(t, "ack").is_empty());
        }
        assert!(b.frames(bob).is_empty(), "nobody saw what was not stored");
        b.send(a1, msg);
        assert_eq!(b.put_message_count(), 1, "the retry is a new write");
        b.settle();
        assert_eq!(b.of_type(a1, "ack").len(), 1);
        assert_eq!(b.of_type(bob, "message").len(), 1);
    }

    /// A retry whose `client_id` the window forgot is recognised by storage and
    /// answered with the first message's id; nobody gets it twice.
    #[test]
    fn forgotten_client_id_is_answered_from_storage() {
        let mut b = Bench::new();
        let a = b.open(1, ALICE);
        let bob = b.open(2, BOB);
        for t in [a, bob] {
            b.send(t, json!({"type": "join", "room": "general"}));
        }
        let msg =
            json!({"type": "message", "room": "general", "content": "once", "client_id": "k"});
        b.send(a, msg.clone());
        b.settle();
        let first = b.of_type(a, "ack").pop().unwrap();
        b.hub.parts.acks.forget_client_ids();
        b.out.clear();
        b.send(a, msg);
        assert_eq!(b.put_message_count(), 1, "the loop no longer knows it");
        b.settle();
        assert_eq!(b.of_type(a, "ack"), [first]);
        assert!(b.frames(bob).is_empty(), "not delivered again");
    }
}
