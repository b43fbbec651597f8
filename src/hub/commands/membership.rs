//! `add_member` and `remove_member`: the owner of a private room changes
//! its members. Applied in memory only once storage has it ([`on_membership_stored`]);
//! then every member gets `room_members`, and a removed member's
//! connections are sent out of the room (`members.rs`).

use crate::clock;
use crate::config::MAX_ROOM_MEMBERS;
use crate::hub::command::{FrameError, Membership};
use crate::hub::members;
use crate::hub::parts::{Ctx, Parts};
use crate::hub::sessions::Caller;
use crate::hub::waits::Wait;
use crate::outbox::{ConnRef, Outbox};
use crate::store::{Request, UserId, membership_audit};
use crate::ws::proto::echo;

/// `add_member` when `add`, else `remove_member`.
pub fn on_membership(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    me: Caller,
    frame: Membership<'_>,
    add: bool,
) -> Result<(), FrameError> {
    let Membership { room, user } = frame;
    let name: &str = &room;
    let private = parts
        .rooms
        .id(name)
        .and_then(|id| parts.rooms.get(id).private())
        .ok_or_else(|| {
            FrameError::new(
                "invalid_input",
                format!("{} is not a private room", echo(name)),
            )
        })?;
    // A moderator removes anyone from any private room (spam, abuse); only
    // the owner adds.
    let moderates = !add && cx.users.get(me.user).is_some_and(|u| u.moderates());
    if private.owner() != me.user && !moderates {
        return Err(FrameError::new(
            "forbidden",
            "only the room's owner (or a moderator, to remove) manages its members",
        ));
    }
    let members = private.len();
    let user = cx.users.find(&user).map(|u| u.id).ok_or_else(|| {
        FrameError::new("no_such_user", format!("no user called {}", echo(&user)))
    })?;
    if !add && user == me.user {
        return Err(FrameError::new(
            "invalid_input",
            "the owner cannot be removed",
        ));
    }
    if add && members >= MAX_ROOM_MEMBERS {
        return Err(FrameError::new(
            "invalid_input",
            format!("{name} has {MAX_ROOM_MEMBERS} members, the most a room may have"),
        ));
    }
    let ticket = parts.waits.park(Wait::Membership {
        conn: me.conn,
        room: name.into(),
        user,
        add,
    });
    let room = name.to_string();
    let req = if add {
        Request::AddMember { ticket, room, user }
    } else {
        let (actor, owner) = (me.user, private.owner());
        let audit = membership_audit(actor, owner, &room, cx.users.name(user), clock::now_ms());
        Request::RemoveMember {
            ticket,
            room,
            user,
            audit,
        }
    };
    if cx.store.submit(req).is_err() {
        parts.waits.cancel(ticket);
        return Err(FrameError::new("busy", "the server is busy; try again"));
    }
    Ok(())
}

/// Storage stored the change (`ok`) or not: it is applied now, or the
/// owner is told it failed and nothing changed.
pub fn on_membership_stored(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    conn: ConnRef,
    room: &str,
    user: UserId,
    add: bool,
    ok: bool,
) {
    let Some(id) = parts.rooms.id(room) else {
        return;
    };
    if !ok {
        let e = FrameError::new(
            "internal",
            format!("could not change the members of {room}"),
        );
        return parts.send_error(cx.out, conn.token, &e, None);
    }
    if add {
        members::add(parts, cx, id, user);
    } else {
        members::remove(parts, cx, id, user);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::hub::tests::{ALICE, BOB, Bench, CAROL};
    use crate::store::Request;

    /// Private rooms: members only; the owner adds and removes; a removed
    /// member is unsubscribed and told, and cannot join again.
    #[test]
    fn private_room_membership() {
        let mut b = Bench::new();
        let a = b.open(1, ALICE);
        let bob = b.open(2, BOB);
        let carol = b.open(3, CAROL);
        b.send(
            a,
            json!({"type": "create_room", "room": "ops", "private": true, "members": ["bob"]}),
        );
        let stored = b.queue.requests.iter().find_map(|r| match r {
            Request::PutPrivateRoom { row, .. } => Some((row.owner, row.members.clone())),
            _ => None,
        });
        assert_eq!(stored, Some((ALICE, vec![ALICE, BOB])));
        assert!(
            b.of_type(bob, "room_members").is_empty(),
            "not before it is stored"
        );
        b.send(carol, json!({"type": "join", "room": "ops"}));
        assert_eq!(
            b.of_type(carol, "error")[0]["code"],
            "forbidden",
            "being created"
        );
        b.settle();
        let members = b.of_type(bob, "room_members");
        assert_eq!(members[0]["members"], json!(["alice", "bob"]));
        b.send(carol, json!({"type": "join", "room": "ops"}));
        assert_eq!(b.of_type(carol, "error")[1]["code"], "forbidden");
        b.send(bob, json!({"type": "join", "room": "ops"}));
        b.send(
            bob,
            json!({"type": "add_member", "room": "ops", "user": "carol"}),
        );
        assert_eq!(
            b.of_type(bob, "error")[0]["code"],
            "forbidden",
            "only the owner"
        );
        b.out.clear();
        b.send(
            a,
            json!({"type": "remove_member", "room": "ops", "user": "bob"}),
        );
        assert!(
            b.of_type(bob, "leave").is_empty(),
            "not before it is stored"
        );
        b.settle();
        assert_eq!(
            b.of_type(bob, "leave"),
            [json!({"type": "leave", "room": "ops", "user": "bob"})]
        );
        assert_eq!(b.of_type(a, "leave").len(), 1, "alice sees bob leave");
        b.send(
            bob,
            json!({"type": "message", "room": "ops", "content": "still here?"}),
        );
        assert_eq!(b.of_type(bob, "error")[0]["code"], "not_member");
        b.send(bob, json!({"type": "join", "room": "ops"}));
        assert_eq!(b.of_type(bob, "error")[1]["code"], "forbidden");
        b.send(
            a,
            json!({"type": "create_room", "room": "ops", "private": true}),
        );
        assert_eq!(b.of_type(a, "error")[0]["code"], "taken");
    }
}
