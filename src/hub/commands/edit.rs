//! `edit`: the author changes a message's content (`change.rs`).

use crate::clock;
use crate::hub::command::{Edit, FrameError};
use crate::hub::parts::{Ctx, Parts};
use crate::hub::sessions::Caller;
use crate::hub::waits::Asked;
use crate::outbox::Outbox;
use crate::store::Request;

use super::change;

pub fn on_edit(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    me: Caller,
    frame: Edit<'_>,
) -> Result<(), FrameError> {
    let Edit { id, content } = frame;
    let content = content.to_string();
    change::submit_change(parts, cx, me, Asked::Edit, |ticket, user| {
        Request::EditMessage {
            ticket,
            id,
            user,
            content,
            at_ms: clock::now_ms(),
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::hub::tests::{ALICE, BOB, Bench};

    /// Storage decides who may edit: the author's edit reaches the room,
    /// and the author once, as confirmation; anyone else's is `forbidden`.
    #[test]
    fn only_the_author_edits() {
        let mut b = Bench::new();
        let a = b.open(1, ALICE);
        let bob = b.open(2, BOB);
        for t in [a, bob] {
            b.send(t, json!({"type": "join", "room": "general"}));
        }
        b.send(
            a,
            json!({"type": "message", "room": "general", "content": "tpyo"}),
        );
        b.settle();
        let id = b.of_type(a, "ack")[0]["id"].clone();
        b.out.clear();
        b.send(
            bob,
            json!({"type": "edit", "id": id, "content": "mine now"}),
        );
        b.send(a, json!({"type": "edit", "id": id, "content": "typo"}));
        assert!(b.frames(a).is_empty(), "applied by storage first");
        b.settle();
        assert_eq!(b.of_type(bob, "error")[0]["code"], "forbidden");
        let edited = |t| -> Vec<Value> {
            let frames = b.of_type(t, "message_edited");
            frames
                .iter()
                .map(|f| json!([f["id"], f["room"], f["content"]]))
                .collect()
        };
        assert_eq!(edited(bob), [json!([id, "general", "typo"])]);
        assert_eq!(edited(a), edited(bob), "once, to the author too");
    }
}
