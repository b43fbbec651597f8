//! `private_message`: a chat message to another user, delivered to every
//! connection of theirs and the sender's other connections; the sender
//! hears `delivered` when the peer had a connection to send it to. The
//! rest is every chat message's path (`post.rs`).

use crate::clock;
use crate::hub::acks::Delivery;
use crate::hub::command::{FrameError, PrivateMessage};
use crate::hub::parts::{Ctx, Parts};
use crate::hub::sessions::Caller;
use crate::outbox::Outbox;
use crate::store::StoredMessage;
use crate::ws::proto::echo;

use super::post;

pub fn on_private_message(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    me: Caller,
    frame: PrivateMessage<'_>,
) -> Result<(), FrameError> {
    let PrivateMessage {
        to,
        content,
        client_id,
        reply_to,
        attachments,
    } = frame;
    let peer =
        cx.users.find(&to).map(|u| u.id).ok_or_else(|| {
            FrameError::new("no_such_user", format!("no user called {}", echo(&to)))
        })?;
    if post::is_retry(parts, cx.out, me, client_id.as_ref()) {
        return Ok(());
    }
    let msg = StoredMessage {
        id: parts.acks.next_key(),
        room: None,
        from: me.user,
        to: Some(peer),
        content: content.to_string(),
        timestamp_ms: clock::now_ms(),
        reply_to,
        attachments: attachments.wanted(),
        ..StoredMessage::default()
    };
    let delivery = Delivery::Private { peer };
    post::persist(parts, cx, me.conn, msg, client_id.as_deref(), delivery)?;
    cx.users.mark_unread_source(peer);
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::hub::tests::{ALICE, BOB, Bench};

    /// Private messages go to every connection of the recipient and the
    /// sender's other tabs; `delivered` follows the ack when the recipient was
    /// online.
    #[test]
    fn private_messages_and_delivered() {
        let mut b = Bench::new();
        let a1 = b.open(1, ALICE);
        let a2 = b.open(2, ALICE);
        let bob = b.open(3, BOB);
        b.out.clear();
        b.send(
            a1,
            json!({"type": "private_message", "to": "bob", "content": "psst", "client_id": "p"}),
        );
        assert!(b.frames(bob).is_empty(), "not before the commit");
        b.settle();
        assert_eq!(b.of_type(bob, "private_message")[0]["from"], "alice");
        assert_eq!(
            b.of_type(a2, "private_message").len(),
            1,
            "the sender's other tab"
        );
        assert!(b.of_type(a1, "private_message").is_empty());
        assert_eq!(b.types(a1), ["ack", "delivered"]);
        b.send(
            a1,
            json!({"type": "private_message", "to": "carol", "content": "hello?"}),
        );
        b.settle();
        assert_eq!(b.types(a1), ["ack", "delivered", "ack"], "carol is offline");
        b.send(
            a1,
            json!({"type": "private_message", "to": "nobody", "content": "x"}),
        );
        assert_eq!(b.of_type(a1, "error")[0]["code"], "no_such_user");
    }
}
