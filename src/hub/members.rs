//! Private rooms' members as everyone sees them: a stored room taken into
//! memory, `room_members` to every member when the list changes, and the
//! connections of someone who is no longer a member sent out of the room.
//! Membership is persistent (unlike subscriptions) and decides who may join
//! the room or read its history; the list itself is the rooms part's.

use std::borrow::Cow;

use mio::Token;

use super::fanout::{self, Except, Topic};
use super::parts::{Ctx, Parts};
use super::presence;
use super::rooms::RoomId;
use super::wire::Note;
use crate::outbox::Outbox;
use crate::store::{PrivateRoomRow, UserId};
use crate::ws::proto::Out;

/// A stored private room, in memory: made here, or on another node. Its
/// members may have something unread from now on.
pub fn install(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>, row: &PrivateRoomRow) -> RoomId {
    for m in &row.members {
        cx.users.mark_unread_source(*m);
    }
    parts.rooms.install_private(row)
}

/// A member was added here (and stored): the other nodes are told, and
/// every member gets the new list.
pub fn add(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>, id: RoomId, user: UserId) {
    note_change(parts, id, user, true);
    parts.rooms.get_mut(id).add_member(user);
    cx.users.mark_unread_source(user);
    send_room_members(parts, cx, id);
}

/// A member was removed here (and stored): the other nodes are told; every
/// connection of the removed member is told `leave` (joined to the room or
/// not, so each client can drop it) and the joined ones leave it; the
/// members left get the new list.
pub fn remove(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>, id: RoomId, user: UserId) {
    note_change(parts, id, user, false);
    parts.rooms.get_mut(id).remove_member(user);
    drop_sessions(parts, cx, id, user);
    let frame = parts.encoder.shared(&Out::Leave {
        room: parts.rooms.get(id).name(),
        user: cx.users.name(user),
    });
    fanout::publish(parts, Topic::User(user), Except::Nobody, &frame, cx.out);
    send_room_members(parts, cx, id);
}

/// Tells the other nodes that `user` joined or left room `id`'s members.
fn note_change(parts: &mut Parts, id: RoomId, user: UserId, add: bool) {
    let Some(c) = &mut parts.cluster else { return };
    c.note(&Note::Member {
        room: Cow::Borrowed(parts.rooms.get(id).name()),
        user,
        add,
    });
}

/// A membership change made on another node: the frames about it came as
/// frames; this node only updates its memory and its own connections.
pub fn apply(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    id: RoomId,
    user: UserId,
    add: bool,
) {
    if add {
        if parts.rooms.get_mut(id).add_member(user) {
            cx.users.mark_unread_source(user);
        }
    } else if parts.rooms.get_mut(id).remove_member(user) {
        drop_sessions(parts, cx, id, user);
    }
}

/// `user`'s connections here that joined room `id` leave it.
pub fn drop_sessions(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>, id: RoomId, user: UserId) {
    let conns: Vec<Token> = parts.sessions.conns(user).to_vec();
    for t in conns {
        if parts.sessions.get_mut(t).is_some_and(|s| s.leave(id)) {
            presence::unsubscribe(parts, cx, t, user, id);
        }
    }
}

/// `room_members` to every connection of every member.
pub fn send_room_members(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>, id: RoomId) {
    let room = parts.rooms.get(id);
    let Some(p) = room.private() else { return };
    let mut members: Vec<&str> = p.members().map(|m| cx.users.name(m)).collect();
    members.sort_unstable();
    let frame = parts.encoder.shared(&Out::RoomMembers {
        room: room.name(),
        owner: cx.users.name(p.owner()),
        members,
    });
    let members: Vec<UserId> = p.members().collect();
    for m in members {
        fanout::publish(parts, Topic::User(m), Except::Nobody, &frame, cx.out);
    }
}
