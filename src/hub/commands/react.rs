//! `react`: toggles the caller's reaction on a message it may read
//! (`change.rs`).

use crate::hub::command::{FrameError, React};
use crate::hub::parts::{Ctx, Parts};
use crate::hub::sessions::Caller;
use crate::hub::waits::Asked;
use crate::outbox::Outbox;
use crate::store::Request;

use super::change;

pub fn on_react(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    me: Caller,
    frame: React<'_>,
) -> Result<(), FrameError> {
    let React { id, emoji } = frame;
    let emoji = emoji.to_string();
    change::submit_change(parts, cx, me, Asked::React, |ticket, user| Request::React {
        ticket,
        id,
        user,
        emoji,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::hub::tests::{ALICE, BOB, Bench};

    /// A reaction toggles: the same emoji twice turns it on, then off, and
    /// the room sees each.
    #[test]
    fn reactions_toggle() {
        let mut b = Bench::new();
        let a = b.open(1, ALICE);
        let bob = b.open(2, BOB);
        for t in [a, bob] {
            b.send(t, json!({"type": "join", "room": "general"}));
        }
        b.send(
            a,
            json!({"type": "message", "room": "general", "content": "ship it"}),
        );
        b.settle();
        let id = b.of_type(a, "ack")[0]["id"].clone();
        b.out.clear();
        for _ in 0..2 {
            b.send(bob, json!({"type": "react", "id": id, "emoji": "👍"}));
            b.settle();
        }
        let seen: Vec<_> = b
            .of_type(a, "reaction")
            .iter()
            .map(|f| json!([f["id"], f["room"], f["emoji"], f["user"], f["on"]]))
            .collect();
        assert_eq!(
            seen,
            [
                json!([id, "general", "👍", "bob", true]),
                json!([id, "general", "👍", "bob", false])
            ]
        );
    }
}
