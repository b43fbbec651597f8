//! `delete`: the author, the private room's owner, or a moderator (a
//! room's message, not a conversation's) deletes a message; it is left out
//! of history and replays from then on (`change.rs`). The role is the
//! directory's, known on every node; storage applies the rule and audits a
//! moderator's delete.

use crate::clock;
use crate::hub::command::{Delete, FrameError};
use crate::hub::parts::{Ctx, Parts};
use crate::hub::sessions::Caller;
use crate::hub::waits::Asked;
use crate::outbox::Outbox;
use crate::store::Request;

use super::change;

pub fn on_delete(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    me: Caller,
    frame: Delete,
) -> Result<(), FrameError> {
    let Delete { id } = frame;
    let moderator = cx.users.get(me.user).is_some_and(|u| u.moderates());
    change::submit_change(parts, cx, me, Asked::Delete, |ticket, user| {
        Request::DeleteMessage {
            ticket,
            id,
            user,
            moderator,
            at_ms: clock::now_ms(),
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::hub::tests::{ALICE, BOB, Bench, CAROL};

    /// The author deletes a message and everyone in the room is told;
    /// another user may not, and a deleted message is no message.
    #[test]
    fn the_author_deletes() {
        let mut b = Bench::new();
        let a = b.open(1, ALICE);
        let bob = b.open(2, BOB);
        for t in [a, bob] {
            b.send(t, json!({"type": "join", "room": "general"}));
        }
        b.send(
            a,
            json!({"type": "message", "room": "general", "content": "oops"}),
        );
        b.settle();
        let id = b.of_type(a, "ack")[0]["id"].clone();
        b.out.clear();
        b.send(bob, json!({"type": "delete", "id": id}));
        b.settle();
        assert_eq!(b.of_type(bob, "error")[0]["code"], "forbidden");
        b.send(a, json!({"type": "delete", "id": id}));
        b.settle();
        let gone = json!({"type": "message_deleted", "id": id, "room": "general"});
        for t in [a, bob] {
            assert_eq!(b.of_type(t, "message_deleted"), std::slice::from_ref(&gone));
        }
        b.send(a, json!({"type": "delete", "id": id}));
        b.settle();
        assert_eq!(b.of_type(a, "error")[0]["code"], "invalid_input");
    }

    /// A moderator deletes a member's room message and everyone in the
    /// room sees it go; a private conversation's message stays its two
    /// people's, whoever asks.
    #[test]
    fn a_moderator_deletes_room_messages_only() {
        let mut b = Bench::new();
        b.users.get_mut(CAROL).unwrap().account.role = crate::store::Role::Moderator;
        let a = b.open(1, ALICE);
        let bob = b.open(2, BOB);
        let carol = b.open(3, CAROL);
        for t in [a, carol] {
            b.send(t, json!({"type": "join", "room": "general"}));
        }
        b.send(
            a,
            json!({"type": "message", "room": "general", "content": "spam"}),
        );
        b.send(
            a,
            json!({"type": "private_message", "to": "bob", "content": "hi"}),
        );
        b.settle();
        let acks = b.of_type(a, "ack");
        let (room_msg, dm) = (acks[0]["id"].clone(), acks[1]["id"].clone());
        b.out.clear();
        b.send(carol, json!({"type": "delete", "id": dm}));
        b.settle();
        assert_eq!(b.of_type(carol, "error")[0]["code"], "forbidden");
        assert!(b.of_type(bob, "message_deleted").is_empty());
        b.send(carol, json!({"type": "delete", "id": room_msg}));
        b.settle();
        let gone = json!({"type": "message_deleted", "id": room_msg, "room": "general"});
        for t in [a, carol] {
            assert_eq!(b.of_type(t, "message_deleted"), std::slice::from_ref(&gone));
        }
    }
}
