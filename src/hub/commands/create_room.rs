//! `create_room`: a private room owned by the caller, with members. The
//! room exists only once its row is stored ([`on_room_stored`]); until then its
//! name is taken, and it counts against the owner's quota. Then the other
//! nodes hear of it, the creator joins it, and every member gets
//! `room_members`.

use crate::config::RESERVED_ROOM_NAMES;
use crate::hub::command::{CreateRoom, FrameError, RoomName};
use crate::hub::members;
use crate::hub::parts::{Ctx, Parts};
use crate::hub::sessions::Caller;
use crate::hub::waits::Wait;
use crate::hub::wire::Note;
use crate::outbox::{ConnRef, Outbox};
use crate::store::{PrivateRoomRow, Request};
use crate::ws::proto::echo;

use super::join;

pub fn on_create_room(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    me: Caller,
    frame: CreateRoom<'_>,
) -> Result<(), FrameError> {
    let CreateRoom { room, members } = frame;
    let name: &str = &room;
    let taken = || FrameError::new("taken", format!("{name} already exists"));
    if parts.rooms.id(name).is_some() || RESERVED_ROOM_NAMES.contains(&name) {
        return Err(taken());
    }
    if !parts.rooms.may_own_private(me.user) {
        return Err(FrameError::new(
            "forbidden",
            format!(
                "you own {} private rooms, the most one person may",
                crate::config::MAX_PRIVATE_ROOMS_PER_USER
            ),
        ));
    }
    // The owner is a member too.
    let mut ids = vec![me.user];
    for m in &members {
        let id = cx.users.find(m).map(|u| u.id).ok_or_else(|| {
            FrameError::new("no_such_user", format!("no user called {}", echo(m)))
        })?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if parts.rooms.is_being_created(name) {
        return Err(taken());
    }
    let row = PrivateRoomRow {
        name: name.to_string(),
        owner: me.user,
        members: ids,
    };
    let ticket = parts.waits.park(Wait::CreateRoom {
        conn: me.conn,
        row: row.clone(),
    });
    if cx
        .store
        .submit(Request::PutPrivateRoom { ticket, row })
        .is_err()
    {
        parts.waits.cancel(ticket);
        return Err(FrameError::new("busy", "the server is busy; try again"));
    }
    parts.rooms.begin_private(name, me.user);
    Ok(())
}

/// Storage stored the row (`ok`) or not: the room exists now, or the
/// creator is told it failed and nothing changed.
pub fn on_room_stored(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    conn: ConnRef,
    row: PrivateRoomRow,
    ok: bool,
) {
    parts.rooms.end_private(&row.name, row.owner, ok);
    if !ok {
        let e = FrameError::new("internal", format!("could not create {}", row.name));
        return parts.send_error(cx.out, conn.token, &e, None);
    }
    let id = members::install(parts, cx, &row);
    parts.note(&Note::RoomMade(row.clone()));
    if let Some(creator) = parts.sessions.caller_of(conn) {
        let joined = RoomName::new(row.name.as_str().into())
            .and_then(|room| join::join(parts, cx, creator, &room, None));
        if let Err(e) = joined {
            parts.send_error(cx.out, conn.token, &e, None);
        }
    }
    members::send_room_members(parts, cx, id);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::hub::tests::{ALICE, BOB, Bench, CAROL};

    /// A private room exists once its row is stored: then its creator's
    /// connection is in it (`online_users`) and every member gets
    /// `room_members`; until then its name is taken.
    #[test]
    fn a_private_room_exists_once_stored() {
        let mut b = Bench::new();
        let a = b.open(1, ALICE);
        let bob = b.open(2, BOB);
        let carol = b.open(3, CAROL);
        b.out.clear();
        b.send(
            a,
            json!({"type": "create_room", "room": "ops", "private": true, "members": ["bob"]}),
        );
        b.send(
            carol,
            json!({"type": "create_room", "room": "ops", "private": true}),
        );
        assert_eq!(b.of_type(carol, "error")[0]["code"], "taken");
        assert!(b.frames(a).is_empty(), "nothing before it is stored");
        b.settle();
        assert_eq!(
            b.of_type(a, "online_users"),
            [json!({"type": "online_users", "room": "ops", "users": ["alice"], "count": 1})]
        );
        let members = json!({"type": "room_members", "room": "ops", "owner": "alice", "members": ["alice", "bob"]});
        assert_eq!(b.of_type(bob, "room_members"), [members]);
        assert!(b.of_type(carol, "room_members").is_empty());
    }
}
