//! `message`: a chat message to a room this connection has joined (or to
//! the room in its URL), unless the room is archived. The first message
//! of a public room opens it for good, against its sender's quota. The rest is every chat message's path
//! (`post.rs`).

use crate::clock;
use crate::hub::acks::Delivery;
use crate::hub::command::{FrameError, Message};
use crate::hub::parts::{Ctx, Parts};
use crate::hub::sessions::Caller;
use crate::outbox::Outbox;
use crate::store::{Request, StoredMessage};

use super::post;

pub fn on_message(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    me: Caller,
    frame: Message<'_>,
) -> Result<(), FrameError> {
    let Message {
        room,
        content,
        client_id,
        reply_to,
        attachments,
    } = frame;
    let room_id = parts.joined_room(me.token(), room.as_deref())?;
    if post::is_retry(parts, cx.out, me, client_id.as_ref()) {
        return Ok(());
    }
    let room = parts.rooms.get(room_id);
    let name = room.name().to_string();
    if parts.rooms.is_archived(&name) {
        return Err(FrameError::new(
            "forbidden",
            format!("{name} is archived: it can be read, but not written in"),
        ));
    }
    if room.is_unopened() {
        // The first message opens the room for good: it counts against
        // the sender's quota (a retry after a failed first write counts
        // again, which only errs towards the limit).
        let opening = room.in_flight() == 0;
        if opening && !parts.rooms.may_open_public(me.user) {
            return Err(FrameError::new(
                "forbidden",
                format!(
                    "you have opened {} public rooms, the most one person may; \
                     post in one that has messages",
                    crate::config::MAX_PUBLIC_ROOMS_PER_USER
                ),
            ));
        }
        // The room row goes first: a message stored without it would
        // load as a room nobody may read. Sent until a message commits.
        cx.store
            .submit(Request::PutPublicRoom {
                name: name.clone(),
                creator: me.user,
            })
            .map_err(|_| {
                FrameError::new("busy", "the server is busy; retry with the same client_id")
            })?;
        if opening {
            parts.rooms.opened_public(me.user);
        }
    }
    let msg = StoredMessage {
        id: parts.acks.next_key(),
        room: Some(name),
        from: me.user,
        to: None,
        content: content.to_string(),
        timestamp_ms: clock::now_ms(),
        reply_to,
        attachments: attachments.wanted(),
        ..StoredMessage::default()
    };
    let delivery = Delivery::Room(room_id);
    post::persist(parts, cx, me.conn, msg, client_id.as_deref(), delivery)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::hub::tests::{ALICE, BOB, Bench, CAROL};

    /// A room message reaches nobody before it is stored; at the commit it goes
    /// to every other connection in the room (and the bus, for other nodes) and
    /// the sender gets its `ack`.
    #[test]
    fn message_fans_out_and_acks_after_commit() {
        let mut b = Bench::new();
        let a = b.open(1, ALICE);
        let bob = b.open(2, BOB);
        let carol = b.open(3, CAROL);
        for t in [a, bob] {
            b.send(t, json!({"type": "join", "room": "general"}));
        }
        b.out.clear();
        b.wire.borrow_mut().published.clear();
        b.send(
            a,
            json!({"type": "message", "room": "general", "content": " hi ", "client_id": "k1"}),
        );
        assert!(b.frames(bob).is_empty(), "not before the commit");
        assert!(b.wire.borrow().published.is_empty());
        b.settle();
        let got = b.frames(bob);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (&got[0]["type"], &got[0]["content"], &got[0]["user"]),
            (&json!("message"), &json!("hi"), &json!("alice"))
        );
        assert_eq!(b.types(a), ["ack"], "no echo");
        assert!(b.frames(carol).is_empty(), "not in the room");
        assert_eq!(
            b.wire.borrow().published,
            [("room:general".to_string(), None)]
        );
        let ack = &b.frames(a)[0];
        assert_eq!(
            (&ack["type"], &ack["client_id"], &ack["id"]),
            (&json!("ack"), &json!("k1"), &got[0]["id"])
        );
        assert_eq!(ack["timestamp"], got[0]["timestamp"]);
    }
}
