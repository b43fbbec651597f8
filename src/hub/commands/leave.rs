//! `leave`: unsubscribe this connection; the room's others see `leave`
//! when the user has no other connection in it.

use crate::hub::command::{FrameError, Leave};
use crate::hub::parts::{Ctx, Parts};
use crate::hub::presence;
use crate::hub::sessions::Caller;
use crate::outbox::Outbox;

pub fn on_leave(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    me: Caller,
    frame: Leave<'_>,
) -> Result<(), FrameError> {
    let Leave { room } = frame;
    let not_in = || FrameError::new("not_member", format!("not in {}", &*room));
    let id = parts.rooms.id(&room).ok_or_else(not_in)?;
    let left = parts
        .sessions
        .get_mut(me.token())
        .is_some_and(|s| s.leave(id));
    if !left {
        return Err(not_in());
    }
    presence::unsubscribe(parts, cx, me.token(), me.user, id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::hub::tests::{ALICE, BOB, Bench};

    /// `leave` ends the room's messages for this connection and shows the
    /// others `leave`; a connection not in the room gets `not_member`.
    #[test]
    fn leave_stops_the_room_and_tells_the_others() {
        let mut b = Bench::new();
        let a = b.open(1, ALICE);
        let bob = b.open(2, BOB);
        b.send(bob, json!({"type": "leave", "room": "general"}));
        assert_eq!(b.of_type(bob, "error")[0]["code"], "not_member");
        for t in [a, bob] {
            b.send(t, json!({"type": "join", "room": "general"}));
        }
        b.out.clear();
        b.send(bob, json!({"type": "leave", "room": "general"}));
        assert_eq!(
            b.frames(a),
            [json!({"type": "leave", "room": "general", "user": "bob"})]
        );
        b.send(
            a,
            json!({"type": "message", "room": "general", "content": "gone?"}),
        );
        b.settle();
        assert!(b.of_type(bob, "message").is_empty());
    }
}
