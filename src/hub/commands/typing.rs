//! `typing` and `stop_typing`: the room's other users see the same frame
//! with who is typing. Not stored.

use crate::hub::command::{FrameError, Typing};
use crate::hub::fanout::{self, Except, Topic};
use crate::hub::parts::{Ctx, Parts};
use crate::hub::sessions::Caller;
use crate::outbox::Outbox;
use crate::ws::proto::Out;

/// `typing` when `typing`, else `stop_typing`.
pub fn on_typing(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    me: Caller,
    frame: Typing<'_>,
    typing: bool,
) -> Result<(), FrameError> {
    let Typing { room } = frame;
    let id = parts.joined_room(me.token(), room.as_deref())?;
    let room = parts.rooms.get(id).name();
    let user = cx.users.name(me.user);
    let frame = parts.encoder.shared(&match typing {
        true => Out::Typing { room, user },
        false => Out::StopTyping { room, user },
    });
    // Not to the typist's own other tabs: nobody needs to see themselves type.
    fanout::publish(
        parts,
        Topic::Room(id),
        Except::User(me.user),
        &frame,
        cx.out,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::hub::tests::{ALICE, BOB, Bench};

    /// Typing indicators reach others in the room, not the typist's other tabs.
    #[test]
    fn typing_skips_the_typists_tabs() {
        let mut b = Bench::new();
        let a1 = b.open(1, ALICE);
        let a2 = b.open(2, ALICE);
        let bob = b.open(3, BOB);
        for t in [a1, a2, bob] {
            b.send(t, json!({"type": "join", "room": "general"}));
        }
        b.out.clear();
        b.send(a1, json!({"type": "typing", "room": "general"}));
        assert_eq!(
            b.frames(bob),
            [json!({"type": "typing", "room": "general", "user": "alice"})]
        );
        assert!(b.frames(a2).is_empty());
        assert_eq!(b.wire.borrow().published.last().unwrap().1, Some(ALICE));
    }
}
