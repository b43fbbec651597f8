//! `delete`: the author, or the private room's owner, deletes a message;
//! it is left out of history and replays from then on (`change.rs`).

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
    change::submit_change(parts, cx, me, Asked::Delete, |ticket, user| {
        Request::DeleteMessage {
            ticket,
            id,
            user,
            at_ms: clock::now_ms(),
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::hub::tests::{ALICE, BOB, Bench};

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
}
