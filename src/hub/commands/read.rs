//! `read`: the caller's read marker moves to a message of a room it may
//! read (no `join` needed: a connection that only shows the sidebar marks
//! rooms read too) or of a conversation; the other members see `read`.
//! In a conversation the receipt waits for storage to find the message
//! there, so a peer is never sent a receipt naming an id from elsewhere
//! (a private room's, say).

use crate::hub::command::{Conversation, FrameError, Read};
use crate::hub::fanout::{self, Except, Topic};
use crate::hub::parts::{Ctx, Parts};
use crate::hub::sessions::Caller;
use crate::hub::waits::Wait;
use crate::outbox::{ConnRef, Outbox};
use crate::store::{MsgId, Request, Target, UserId};
use crate::ws::proto::{Out, echo};

pub fn on_read(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    me: Caller,
    frame: Read<'_>,
) -> Result<(), FrameError> {
    let Read { of, id } = frame;
    if id > parts.acks.newest() {
        return Err(FrameError::new(
            "invalid_input",
            "id must be the id of a message",
        ));
    }
    match of {
        Conversation::Room(room) => {
            // A room read marker makes this user's unread counts worth asking for.
            cx.users.mark_unread_source(me.user);
            let room_id = parts.readable_room(me.user, &room)?;
            let _ = cx.store.submit(Request::MarkRead {
                user: me.user,
                target: Target::Room(room.to_string()),
                id,
            });
            let frame = parts.encoder.shared(&Out::Read {
                room: Some(&room),
                with: None,
                user: cx.users.name(me.user),
                id,
            });
            let except = Except::Conn(me.conn);
            fanout::publish(parts, Topic::Room(room_id), except, &frame, cx.out);
        }
        Conversation::With(with) => {
            let peer = cx.users.find(&with).ok_or_else(|| {
                FrameError::new("no_such_user", format!("no user called {}", echo(&with)))
            })?;
            let peer = peer.id;
            let ticket = parts.waits.park(Wait::Receipt {
                conn: me.conn,
                user: me.user,
                peer,
                id,
            });
            let marked = Request::MarkConversationRead {
                ticket,
                user: me.user,
                peer,
                id,
            };
            if cx.store.submit(marked).is_err() {
                parts.waits.cancel(ticket);
                return Err(FrameError::new(
                    "busy",
                    "the server is busy; ask again shortly",
                ));
            }
        }
    }
    Ok(())
}

/// Storage moved `user`'s marker in the conversation with `peer` to `id`
/// (`found`), or did not find `id` there: then nobody is told.
pub fn on_receipt_stored(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    conn: ConnRef,
    (user, peer, id): (UserId, UserId, MsgId),
    found: bool,
) {
    if !found {
        return;
    }
    let (name, peer_name) = (cx.users.name(user), cx.users.name(peer));
    // `with` is the conversation as each receiver names it.
    let to_peer = parts.encoder.shared(&Out::Read {
        room: None,
        with: Some(name),
        user: name,
        id,
    });
    let to_self = parts.encoder.shared(&Out::Read {
        room: None,
        with: Some(peer_name),
        user: name,
        id,
    });
    let except = Except::Conn(conn);
    fanout::publish(parts, Topic::User(peer), except, &to_peer, cx.out);
    if peer != user {
        fanout::publish(parts, Topic::User(user), except, &to_self, cx.out);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::hub::tests::{ALICE, BOB, Bench};
    use crate::store::Request;

    /// Read markers are stored and others are told, in a room and in a
    /// conversation (where `with` names the conversation as each receiver
    /// sees it, and only for a message of that conversation).
    #[test]
    fn read_markers() {
        let mut b = Bench::new();
        let a = b.open(1, ALICE);
        let bob = b.open(2, BOB);
        for t in [a, bob] {
            b.send(t, json!({"type": "join", "room": "general"}));
        }
        b.send(
            a,
            json!({"type": "message", "room": "general", "content": "m"}),
        );
        b.settle();
        b.out.clear();
        b.send(bob, json!({"type": "read", "room": "general", "id": 1}));
        assert!(matches!(
            b.queue.requests.last(),
            Some(Request::MarkRead {
                user: BOB,
                id: 1,
                ..
            })
        ));
        assert_eq!(
            b.frames(a),
            [json!({"type": "read", "room": "general", "user": "bob", "id": 1})]
        );
        b.send(
            bob,
            json!({"type": "private_message", "to": "alice", "content": "p"}),
        );
        b.settle();
        b.out.clear();
        b.send(a, json!({"type": "read", "with": "bob", "id": 2}));
        assert!(b.frames(bob).is_empty(), "once storage found it there");
        b.settle();
        assert_eq!(
            b.frames(bob),
            [json!({"type": "read", "with": "alice", "user": "alice", "id": 2})]
        );
        b.out.clear();
        // Message 1 is the room's: no receipt names it in the conversation.
        b.send(a, json!({"type": "read", "with": "bob", "id": 1}));
        b.settle();
        assert!(b.frames(bob).is_empty(), "{:?}", b.frames(bob));
        assert!(b.frames(a).is_empty(), "{:?}", b.frames(a));
        b.send(a, json!({"type": "read", "room": "general", "id": 99}));
        assert_eq!(
            b.of_type(a, "error")[0]["code"],
            "invalid_input",
            "no such message yet"
        );
    }

    /// `read` needs no `join` (any room the user may read); `leave` without a
    /// room is `invalid_input`, not `not_member`.
    #[test]
    fn read_without_join_and_leave_without_room() {
        let mut b = Bench::new();
        let a = b.open(1, ALICE);
        let bob = b.open(2, BOB);
        b.send(a, json!({"type": "join", "room": "general"}));
        b.send(
            a,
            json!({"type": "message", "room": "general", "content": "m"}),
        );
        b.settle();
        b.out.clear();
        b.send(bob, json!({"type": "read", "room": "general", "id": 1}));
        assert!(b.of_type(bob, "error").is_empty(), "{:?}", b.frames(bob));
        assert!(matches!(
            b.queue.requests.last(),
            Some(Request::MarkRead {
                user: BOB,
                id: 1,
                ..
            })
        ));
        assert_eq!(b.of_type(a, "read")[0]["user"], "bob");
        b.send(bob, json!({"type": "leave"}));
        assert_eq!(b.of_type(bob, "error")[0]["code"], "invalid_input");
    }
}
