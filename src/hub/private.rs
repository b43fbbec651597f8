//! Private rooms: creating one, and its owner adding and removing members.
//! Membership is persistent (unlike subscriptions) and decides who may join
//! the room or read its history.

use mio::Token;

use super::fanout::{Except, Topic};
use super::presence::FrameError;
use super::rooms::{Private, ROOM_NAME_RULE, RoomId, valid_room_name};
use super::{Ctx, Hub};
use crate::config::MAX_ROOM_MEMBERS;
use crate::outbox::Outbox;
use crate::store::{PrivateRoomRow, Request};
use crate::ws::proto::{ClientFrame, Out};

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
        if self.rooms.id(name).is_some() {
            return Err(FrameError::new("taken", format!("{name} already exists")));
        }
        let listed = f.members.as_deref().unwrap_or_default();
        if listed.len() > MAX_ROOM_MEMBERS {
            return Err(FrameError::new(
                "invalid_input",
                format!("at most {MAX_ROOM_MEMBERS} members"),
            ));
        }
        let mut members = vec![user];
        for m in listed {
            let id =
                cx.users.find(m).map(|u| u.id).ok_or_else(|| {
                    FrameError::new("no_such_user", format!("no user called {m}"))
                })?;
            if !members.contains(&id) {
                members.push(id);
            }
        }
        let row = PrivateRoomRow {
            name: name.to_string(),
            owner: user,
            members: members.clone(),
        };
        cx.store
            .submit(Request::PutPrivateRoom(row))
            .map_err(|_| FrameError::new("busy", "the server is busy; try again"))?;
        for m in &members {
            cx.users.mark_unread_source(*m);
        }
        let id = self.rooms.open(name);
        self.rooms.get_mut(id).private = Some(Private {
            owner: user,
            members: members.into_iter().collect(),
        });
        self.join_room(cx, token, name, None)?;
        self.send_room_members(cx, id);
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
                FrameError::new("invalid_input", format!("{name} is not a private room"))
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
        let user = cx
            .users
            .find(who)
            .map(|u| u.id)
            .ok_or_else(|| FrameError::new("no_such_user", format!("no user called {who}")))?;
        let private = self
            .rooms
            .get_mut(id)
            .private
            .as_mut()
            .expect("checked above");
        if add {
            private.members.insert(user);
            cx.store
                .submit(Request::AddMember {
                    room: name.to_string(),
                    user,
                })
                .map_err(|_| FrameError::new("busy", "the server is busy; try again"))?;
            cx.users.mark_unread_source(user);
            self.send_room_members(cx, id);
            return Ok(());
        }
        if user == me {
            return Err(FrameError::new(
                "invalid_input",
                "the owner cannot be removed",
            ));
        }
        private.members.remove(&user);
        cx.store
            .submit(Request::RemoveMember {
                room: name.to_string(),
                user,
            })
            .map_err(|_| FrameError::new("busy", "the server is busy; try again"))?;
        // Every connection of the removed member is told (joined to the room
        // or not, so each client can drop it), and the joined ones leave it.
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
        let frame = self.encoder.shared(&Out::Leave {
            room: name,
            user: cx.users.name(user),
        });
        self.publish(Topic::User(user), Except::Nobody, &frame, cx.out);
        self.send_room_members(cx, id);
        Ok(())
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
            self.publish(Topic::User(m), Except::Nobody, &frame, cx.out);
        }
    }
}
