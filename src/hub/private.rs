//! Private rooms: creating one, and its owner adding and removing members.
//! Membership is persistent (unlike subscriptions) and decides who may join
//! the room or read its history.

use std::borrow::Cow;

use mio::Token;

use super::fanout::{Except, Topic};
use super::presence::FrameError;
use super::rooms::{Private, ROOM_NAME_RULE, RoomId, valid_room_name};
use super::wire::Note;
use super::{Ctx, Hub, Wait};
use crate::config::{MAX_PRIVATE_ROOMS_PER_USER, MAX_ROOM_MEMBERS, RESERVED_ROOM_NAMES};
use crate::outbox::Outbox;
use crate::store::{PrivateRoomRow, Request, Ticket, UserId};
use crate::ws::proto::{ClientFrame, Out, echo};

impl Hub {
    pub(super) fn on_create_room(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        token: Token,
        f: &ClientFrame<'_>,
    ) -> Result<(), FrameError> {
        let (user, _) = self.user_of(token)?;
        let name = f
            .room
            .as_deref()
            .ok_or_else(|| FrameError::new("invalid_input", "room is required"))?;
        if !valid_room_name(name) {
            return Err(FrameError::new("invalid_input", ROOM_NAME_RULE));
        }
        if f.private != Some(true) {
            return Err(FrameError::new(
                "invalid_input",
                "create_room makes private rooms (\"private\": true); join a public room to open it",
            ));
        }
        if self.rooms.id(name).is_some() || RESERVED_ROOM_NAMES.contains(&name) {
            return Err(FrameError::new("taken", format!("{name} already exists")));
        }
        if self.created.get(&user).map_or(0, |c| c.private) >= MAX_PRIVATE_ROOMS_PER_USER {
            return Err(FrameError::new(
                "forbidden",
                format!(
                    "you own {MAX_PRIVATE_ROOMS_PER_USER} private rooms, the most one person may"
                ),
            ));
        }
        let listed = f.members.as_deref().unwrap_or_default();
        // The owner is a member too.
        if listed.len() >= MAX_ROOM_MEMBERS {
            return Err(FrameError::new(
                "invalid_input",
                format!("a room has at most {MAX_ROOM_MEMBERS} members, owner included"),
            ));
        }
        let mut members = vec![user];
        for m in listed {
            let id = cx.users.find(m).map(|u| u.id).ok_or_else(|| {
                FrameError::new("no_such_user", format!("no user called {}", echo(m)))
            })?;
            if !members.contains(&id) {
                members.push(id);
            }
        }
        if self.creating.contains(name) {
            return Err(FrameError::new("taken", format!("{name} already exists")));
        }
        let row = PrivateRoomRow {
            name: name.to_string(),
            owner: user,
            members,
        };
        let conn = self.session_of(token)?.conn;
        // The room exists only once its row is stored (`on_write_answered`);
        // until then its name is reserved.
        let ticket = self.park(Wait::CreateRoom {
            conn,
            row: row.clone(),
        });
        if cx
            .store
            .submit(Request::PutPrivateRoom { ticket, row })
            .is_err()
        {
            self.waiting.remove(&ticket);
            return Err(FrameError::new("busy", "the server is busy; try again"));
        }
        self.creating.insert(name.into());
        self.created.entry(user).or_default().private += 1;
        Ok(())
    }

    pub(super) fn on_membership(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        token: Token,
        f: &ClientFrame<'_>,
        add: bool,
    ) -> Result<(), FrameError> {
        let (me, _) = self.user_of(token)?;
        let name = f
            .room
            .as_deref()
            .ok_or_else(|| FrameError::new("invalid_input", "room is required"))?;
        let id = self
            .rooms
            .id(name)
            .filter(|id| self.rooms.get(*id).private.is_some())
            .ok_or_else(|| {
                FrameError::new(
                    "invalid_input",
                    format!("{} is not a private room", echo(name)),
                )
            })?;
        let owner = self.rooms.get(id).private.as_ref().map(|p| p.owner);
        if owner != Some(me) {
            return Err(FrameError::new(
                "forbidden",
                "only the room's owner manages its members",
            ));
        }
        let who = f
            .user
            .as_deref()
            .ok_or_else(|| FrameError::new("invalid_input", "user is required"))?;
        let user = cx.users.find(who).map(|u| u.id).ok_or_else(|| {
            FrameError::new("no_such_user", format!("no user called {}", echo(who)))
        })?;
        if !add && user == me {
            return Err(FrameError::new(
                "invalid_input",
                "the owner cannot be removed",
            ));
        }
        let members = self
            .rooms
            .get(id)
            .private
            .as_ref()
            .map_or(0, |p| p.members.len());
        if add && members >= MAX_ROOM_MEMBERS {
            return Err(FrameError::new(
                "invalid_input",
                format!("{name} has {MAX_ROOM_MEMBERS} members, the most a room may have"),
            ));
        }
        let conn = self.session_of(token)?.conn;
        let ticket = self.park(Wait::Membership {
            conn,
            room: name.into(),
            user,
            add,
        });
        let room = name.to_string();
        let req = if add {
            Request::AddMember { ticket, room, user }
        } else {
            Request::RemoveMember { ticket, room, user }
        };
        if cx.store.submit(req).is_err() {
            self.waiting.remove(&ticket);
            return Err(FrameError::new("busy", "the server is busy; try again"));
        }
        Ok(())
    }

    /// Storage answered a write with a ticket and no data (`Done` /
    /// `Failed`): a private-room change is applied now, or the owner is
    /// told it failed (and nothing changes); a message change that failed
    /// is answered `busy` (its success comes as `Changed`).
    pub fn on_write_answered(&mut self, cx: &mut Ctx<'_, impl Outbox>, ticket: Ticket, ok: bool) {
        match self.waiting.remove(&ticket) {
            // A change's only success reply is `Changed`.
            Some(Wait::Change { conn, .. }) => self.on_change_failed(cx, conn),
            Some(Wait::CreateRoom { conn, row }) => {
                self.creating.remove(row.name.as_str());
                if !ok {
                    if let Some(c) = self.created.get_mut(&row.owner) {
                        c.private -= 1;
                    }
                    let e = FrameError::new("internal", format!("could not create {}", row.name));
                    return self.send_error(cx.out, conn.token, &e, None);
                }
                let id = self.install_private_room(cx, &row);
                self.note(&Note::RoomMade(row.clone()));
                let creator_here = self.session(conn.token).is_some_and(|s| s.conn == conn);
                if creator_here && let Err(e) = self.join_room(cx, conn.token, &row.name, None) {
                    self.send_error(cx.out, conn.token, &e, None);
                }
                self.send_room_members(cx, id);
            }
            Some(Wait::Membership {
                conn,
                room,
                user,
                add,
            }) => {
                let Some(id) = self.rooms.id(&room) else {
                    return;
                };
                if !ok {
                    let e = FrameError::new(
                        "internal",
                        format!("could not change the members of {room}"),
                    );
                    return self.send_error(cx.out, conn.token, &e, None);
                }
                self.note(&Note::Member {
                    room: Cow::Borrowed(&room),
                    user,
                    add,
                });
                if add {
                    self.add_member(cx, id, user);
                } else {
                    self.remove_member(cx, id, &room, user);
                }
            }
            _ => {}
        }
    }

    fn add_member(&mut self, cx: &mut Ctx<'_, impl Outbox>, id: RoomId, user: UserId) {
        if let Some(p) = self.rooms.get_mut(id).private.as_mut() {
            p.members.insert(user);
        }
        cx.users.mark_unread_source(user);
        self.send_room_members(cx, id);
    }

    fn remove_member(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        id: RoomId,
        name: &str,
        user: UserId,
    ) {
        if let Some(p) = self.rooms.get_mut(id).private.as_mut() {
            p.members.remove(&user);
        }
        // Every connection of the removed member is told (joined to the room
        // or not, so each client can drop it), and the joined ones leave it.
        self.drop_member_sessions(cx, id, user);
        let frame = self.encoder.shared(&Out::Leave {
            room: name,
            user: cx.users.name(user),
        });
        self.publish(Topic::User(user), Except::Nobody, None, &frame, cx.out);
        self.send_room_members(cx, id);
    }

    /// A stored private room, in memory: made here, or on another node.
    pub(super) fn install_private_room(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        row: &PrivateRoomRow,
    ) -> RoomId {
        for m in &row.members {
            cx.users.mark_unread_source(*m);
        }
        let id = self.rooms.open(&row.name);
        self.rooms.get_mut(id).private = Some(Private {
            owner: row.owner,
            members: row.members.iter().copied().collect(),
        });
        id
    }

    /// A removed member's connections here leave the room.
    pub(super) fn drop_member_sessions(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        id: RoomId,
        user: UserId,
    ) {
        let conns: Vec<Token> = self.online.get(&user).cloned().unwrap_or_default();
        for t in conns {
            let joined = self.session_mut(t).and_then(|s| {
                let i = s.rooms.iter().position(|r| *r == id)?;
                s.rooms.swap_remove(i);
                Some(())
            });
            if joined.is_some() {
                self.unsubscribe(cx, t, user, id);
            }
        }
    }

    /// `room_members` to every connection of every member.
    fn send_room_members(&mut self, cx: &mut Ctx<'_, impl Outbox>, id: RoomId) {
        let room = self.rooms.get(id);
        let Some(p) = &room.private else { return };
        let mut members: Vec<&str> = p.members.iter().map(|m| cx.users.name(*m)).collect();
        members.sort_unstable();
        let frame = self.encoder.shared(&Out::RoomMembers {
            room: &room.name,
            owner: cx.users.name(p.owner),
            members,
        });
        let members: Vec<_> = p.members.iter().copied().collect();
        for m in members {
            self.publish(Topic::User(m), Except::Nobody, None, &frame, cx.out);
        }
    }
}
