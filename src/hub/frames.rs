//! The handling of each client frame of the contract, from parse to fan-out.
//!
//! The path of a chat message (`on_message`): validate, rate-limit, assign an
//! id, hand the row to the storage thread, encode the frame ONCE, queue the
//! same bytes on every other connection in the room. The sender's `ack` waits
//! for the commit (`on_message_stored`); nobody else waits for anything.

use mio::Token;

use super::PendingAck;
use super::presence::FrameError;
use super::rooms::{Private, ROOM_NAME_RULE, RoomId, valid_room_name};
use crate::app::{App, Waiter};
use crate::clock;
use crate::config::{DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT};
use crate::config::{MAX_CLIENT_ID, MAX_CONTENT_CHARS, MAX_ROOM_MEMBERS};
use crate::outbox::{ConnRef, Outbox};
use crate::store::{HistoryQuery, MsgId, PrivateRoomRow, Request, StoredMessage, Target, UserId};
use crate::ws::proto::{ClientFrame, Out, Ts, Unparsed, parse_client};

/// Content: 1-4000 characters after trimming; returns the trimmed text.
pub fn check_content(content: Option<&str>) -> Result<&str, FrameError> {
    let c = content
        .ok_or_else(|| FrameError::new("invalid_input", "content is required"))?
        .trim();
    if c.is_empty() {
        return Err(FrameError::new("invalid_input", "content is empty"));
    }
    if c.chars().count() > MAX_CONTENT_CHARS {
        return Err(FrameError::new(
            "too_long",
            format!("content is over {MAX_CONTENT_CHARS} characters"),
        ));
    }
    Ok(c)
}

/// `client_id`: absent, or 1-64 characters.
pub fn check_client_id(id: Option<&str>) -> Result<Option<&str>, FrameError> {
    match id {
        Some(k) if k.is_empty() || k.chars().count() > MAX_CLIENT_ID => Err(FrameError::new(
            "invalid_input",
            format!("client_id must be 1-{MAX_CLIENT_ID} characters"),
        )),
        other => Ok(other),
    }
}

/// A new chat message that passed the checks.
struct Admitted<'c> {
    content: &'c str,
    client_id: Option<&'c str>,
    id: MsgId,
    ts: i64,
}

impl App {
    /// One text frame from a chat connection.
    pub fn on_ws_text(&mut self, token: Token, text: &str, out: &mut Outbox) {
        out.metrics.ws_frames_in += 1;
        let rate = self.config.rate_limit;
        let Some(session) = self.hub.session_mut(token) else {
            return;
        };
        let allowed = session.bucket.allow(rate, clock::now_ms());
        let url_room = session.url_room.clone();
        let frame = match parse_client(text) {
            Ok(f) => f,
            Err(Unparsed::NotAnObject) => match url_room {
                // websocat-style plain text: a message to the URL's room.
                Some(_) => ClientFrame {
                    kind: "message".into(),
                    content: Some(text.into()),
                    ..ClientFrame::default()
                },
                None => {
                    let e = FrameError::new(
                        "bad_json",
                        "expected a JSON object (or connect to /ws/room/{name} to send plain text)",
                    );
                    return self.send_error(token, &e, None, out);
                }
            },
            Err(Unparsed::NoType) => {
                return self.send_error(
                    token,
                    &FrameError::new("unknown_type", "a frame needs a string \"type\""),
                    None,
                    out,
                );
            }
            Err(Unparsed::BadField(why)) => {
                return self.send_error(token, &FrameError::new("invalid_input", why), None, out);
            }
        };
        let client_id = frame.client_id.as_deref();
        if !allowed {
            out.metrics.rate_limited += 1;
            let e = FrameError::new("rate_limited", "too many frames; slow down");
            return self.send_error(token, &e, client_id, out);
        }
        let room = frame.room.as_deref().or(url_room.as_deref());
        let result = match &*frame.kind {
            "join" => self.join_room(
                token,
                frame.room.as_deref().unwrap_or_default(),
                frame.since,
                out,
            ),
            "leave" => self.leave_room(token, frame.room.as_deref().unwrap_or_default(), out),
            "message" => self.on_message(token, room, frame.content.as_deref(), client_id, out),
            "private_message" => self.on_private(
                token,
                frame.to.as_deref(),
                frame.content.as_deref(),
                client_id,
                out,
            ),
            "typing" | "stop_typing" => self.on_typing(token, room, frame.kind == "typing", out),
            "history" => self.on_history_request(token, &frame),
            "read" => self.on_read(token, &frame, out),
            "create_room" => self.on_create_room(token, &frame, out),
            "add_member" | "remove_member" => {
                self.on_membership(token, &frame, frame.kind == "add_member", out)
            }
            other => Err(FrameError::new(
                "unknown_type",
                format!("unknown frame type {other:?}"),
            )),
        };
        if let Err(e) = result {
            self.send_error(token, &e, client_id, out);
        }
    }

    fn user_of(&self, token: Token) -> Result<(UserId, ConnRef), FrameError> {
        self.session_of(token).map(|s| (s.user, s.conn))
    }

    /// The room `name` if this connection has joined it.
    fn joined_room(&self, token: Token, name: Option<&str>) -> Result<RoomId, FrameError> {
        let name = name.ok_or_else(|| FrameError::new("invalid_input", "room is required"))?;
        if !valid_room_name(name) {
            return Err(FrameError::new("invalid_input", ROOM_NAME_RULE));
        }
        self.hub
            .rooms
            .id(name)
            .filter(|id| {
                self.hub
                    .session(token)
                    .is_some_and(|s| s.rooms.contains(id))
            })
            .ok_or_else(|| FrameError::new("not_member", format!("join {name} first")))
    }

    /// What every chat message goes through first: content and `client_id`
    /// checked, then either a retry answered from the window (`None`), or a
    /// fresh id and timestamp.
    fn admit<'c>(
        &mut self,
        conn: ConnRef,
        user: UserId,
        content: Option<&'c str>,
        client_id: Option<&'c str>,
        out: &mut Outbox,
    ) -> Result<Option<Admitted<'c>>, FrameError> {
        let content = check_content(content)?;
        let client_id = check_client_id(client_id)?;
        if self.ack_retry(conn, user, client_id, out) {
            return Ok(None);
        }
        Ok(Some(Admitted {
            content,
            client_id,
            id: self.hub.next_msg_id(),
            ts: clock::now_ms(),
        }))
    }

    /// A retry of a `client_id` this user already sent: ack it again (now, or
    /// when the first copy commits). Returns whether it was a retry.
    fn ack_retry(
        &mut self,
        conn: ConnRef,
        user: UserId,
        client_id: Option<&str>,
        out: &mut Outbox,
    ) -> bool {
        let Some(cid) = client_id else { return false };
        let Some((id, ts)) = self.hub.client_ids.get(user, cid) else {
            return false;
        };
        match self.hub.acks.get_mut(id) {
            Some(pending) => pending.waiters.push((conn, Some(cid.into()))),
            None => out.reply(
                conn.token,
                self.encoder.bytes(&Out::Ack {
                    client_id: Some(cid),
                    id,
                    timestamp: Ts(ts),
                }),
            ),
        }
        true
    }

    /// Assigns an id and queues the row for storage. Storage is asked before
    /// anyone sees the message, so a full queue loses nothing already shown.
    fn persist(
        &mut self,
        conn: ConnRef,
        msg: StoredMessage,
        client_id: Option<&str>,
        delivered: bool,
    ) -> Result<(), FrameError> {
        let (id, ts, from) = (msg.id, msg.timestamp_ms, msg.from);
        let req = Request::PutMessage {
            msg,
            client_id: client_id.map(String::from),
        };
        self.store.submit(req).map_err(|_| {
            FrameError::new("busy", "the server is busy; retry with the same client_id")
        })?;
        if let Some(cid) = client_id {
            self.hub.client_ids.insert(from, cid, id, ts);
        }
        let waiters = vec![(conn, client_id.map(Into::into))];
        self.hub.acks.push(
            id,
            PendingAck {
                waiters,
                timestamp_ms: ts,
                delivered,
            },
        );
        Ok(())
    }

    fn on_message(
        &mut self,
        token: Token,
        room: Option<&str>,
        content: Option<&str>,
        client_id: Option<&str>,
        out: &mut Outbox,
    ) -> Result<(), FrameError> {
        let (user, conn) = self.user_of(token)?;
        let room_id = self.joined_room(token, room)?;
        let Some(Admitted {
            content,
            client_id,
            id,
            ts,
        }) = self.admit(conn, user, content, client_id, out)?
        else {
            return Ok(());
        };
        let room = self.hub.rooms.get(room_id);
        let name = room.name.to_string();
        let msg = StoredMessage {
            id,
            room: Some(name.clone()),
            from: user,
            to: None,
            content: content.to_string(),
            timestamp_ms: ts,
        };
        self.persist(conn, msg, client_id, false)?;
        let room = self.hub.rooms.get_mut(room_id);
        if !room.has_messages {
            room.has_messages = true;
            if room.private.is_none() {
                let _ = self
                    .store
                    .submit(Request::PutPublicRoom { name: name.clone() });
            }
        }
        let frame = self.encoder.shared(&Out::Message {
            id,
            room: &name,
            user: self.users.name(user),
            content,
            timestamp: Ts(ts),
        });
        out.metrics.deliveries += self.fan_out(room_id, &frame, Some(token), out);
        Ok(())
    }

    fn on_private(
        &mut self,
        token: Token,
        to: Option<&str>,
        content: Option<&str>,
        client_id: Option<&str>,
        out: &mut Outbox,
    ) -> Result<(), FrameError> {
        let (user, conn) = self.user_of(token)?;
        let to = to.ok_or_else(|| FrameError::new("invalid_input", "to is required"))?;
        let peer = self
            .users
            .find(to)
            .map(|u| u.id)
            .ok_or_else(|| FrameError::new("no_such_user", format!("no user called {to}")))?;
        let Some(Admitted {
            content,
            client_id,
            id,
            ts,
        }) = self.admit(conn, user, content, client_id, out)?
        else {
            return Ok(());
        };
        let peer_conns: Vec<Token> = self.hub.online.get(&peer).cloned().unwrap_or_default();
        let delivered = peer_conns.iter().any(|t| *t != token);
        let msg = StoredMessage {
            id,
            room: None,
            from: user,
            to: Some(peer),
            content: content.to_string(),
            timestamp_ms: ts,
        };
        self.persist(conn, msg, client_id, delivered)?;
        self.users.mark_unread_source(peer);
        let frame = self.encoder.shared(&Out::PrivateMessage {
            id,
            from: self.users.name(user),
            to: self.users.name(peer),
            content,
            timestamp: Ts(ts),
        });
        let mine = self
            .hub
            .online
            .get(&user)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut sent = 0;
        for &t in peer_conns
            .iter()
            .chain(mine.iter().filter(|t| peer != user && **t != token))
        {
            if t != token {
                out.frame(t, &frame);
                sent += 1;
            }
        }
        out.metrics.deliveries += sent;
        Ok(())
    }

    /// A message is durable (or failed): its ack (or an error) goes out.
    pub fn on_message_stored(&mut self, id: MsgId, ok: bool, out: &mut Outbox) {
        let Some(pending) = self.hub.acks.remove(id) else {
            return;
        };
        for (conn, client_id) in &pending.waiters {
            if !out.is_live(*conn) {
                continue;
            }
            let cid = client_id.as_deref();
            if ok {
                out.reply(
                    conn.token,
                    self.encoder.bytes(&Out::Ack {
                        client_id: cid,
                        id,
                        timestamp: Ts(pending.timestamp_ms),
                    }),
                );
                if pending.delivered {
                    out.reply(conn.token, self.encoder.bytes(&Out::Delivered { id }));
                }
            } else {
                let message = "the message could not be stored; retry with the same client_id";
                out.reply(
                    conn.token,
                    self.encoder.bytes(&Out::Error {
                        code: "internal",
                        message,
                        client_id: cid,
                    }),
                );
            }
        }
    }

    fn on_typing(
        &mut self,
        token: Token,
        room: Option<&str>,
        typing: bool,
        out: &mut Outbox,
    ) -> Result<(), FrameError> {
        let (user, _) = self.user_of(token)?;
        let id = self.joined_room(token, room)?;
        let room = self.hub.rooms.get(id);
        let name = self.users.name(user);
        let frame = if typing {
            Out::Typing {
                room: &room.name,
                user: name,
            }
        } else {
            Out::StopTyping {
                room: &room.name,
                user: name,
            }
        };
        let frame = self.encoder.shared(&frame);
        // Not to the typist's own other tabs: nobody needs to see themselves type.
        for &t in &room.subscribers {
            if self.hub.session(t).is_some_and(|s| s.user != user) {
                out.frame(t, &frame);
            }
        }
        Ok(())
    }

    fn on_history_request(&mut self, token: Token, f: &ClientFrame<'_>) -> Result<(), FrameError> {
        let (user, conn) = self.user_of(token)?;
        let limit = f.limit.map_or(DEFAULT_HISTORY_LIMIT, |l| {
            (l as usize).clamp(1, MAX_HISTORY_LIMIT)
        });
        let target = match (f.room.as_deref(), f.with.as_deref()) {
            (Some(room), None) => match self.room_target(user, room) {
                Ok(Some(t)) => t,
                Ok(None) => Target::Room(room.to_string()),
                Err((_, code, msg)) => return Err(FrameError::new(code, msg)),
            },
            (None, Some(with)) => {
                let peer = self.users.find(with).ok_or_else(|| {
                    FrameError::new("no_such_user", format!("no user called {with}"))
                })?;
                Target::Direct(user, peer.id)
            }
            _ => {
                return Err(FrameError::new(
                    "invalid_input",
                    "give exactly one of room or with",
                ));
            }
        };
        let query = HistoryQuery {
            target: target.clone(),
            before: f.before,
            after: None,
            limit,
            offset: 0,
        };
        let ticket = self.park(Waiter::WsHistory { conn, target });
        self.store
            .submit(Request::History { ticket, query })
            .map_err(|_| {
                self.waiters.remove(&ticket);
                FrameError::new("busy", "the server is busy; ask again shortly")
            })
    }

    /// A history page for a `history` frame.
    pub fn send_history(
        &mut self,
        conn: ConnRef,
        target: &Target,
        messages: Option<Vec<StoredMessage>>,
        out: &mut Outbox,
    ) {
        if !out.is_live(conn) {
            return;
        }
        let Some(messages) = messages else {
            let e = FrameError::new("internal", "could not read history");
            return self.send_error(conn.token, &e, None, out);
        };
        let (room, with) = match target {
            Target::Room(r) => (Some(r.as_str()), None),
            Target::Direct(_, peer) => (None, Some(self.users.name(*peer))),
        };
        let frame = Out::History {
            room,
            with,
            messages: App::message_objects(&self.users, &messages),
        };
        out.reply(conn.token, self.encoder.bytes(&frame));
    }

    fn on_read(
        &mut self,
        token: Token,
        f: &ClientFrame<'_>,
        out: &mut Outbox,
    ) -> Result<(), FrameError> {
        let (user, _) = self.user_of(token)?;
        let id = f
            .id
            .filter(|id| (1..=self.hub.last_msg_id).contains(id))
            .ok_or_else(|| FrameError::new("invalid_input", "id must be the id of a message"))?;
        if f.room.is_some() {
            // A room read marker makes this user's unread counts worth asking for.
            self.users.mark_unread_source(user);
        }
        let me = self.users.name(user);
        match (f.room.as_deref(), f.with.as_deref()) {
            (Some(room), None) => {
                let room_id = self.joined_room(token, Some(room))?;
                let _ = self.store.submit(Request::MarkRead {
                    user,
                    target: Target::Room(room.to_string()),
                    id,
                });
                let frame = self.encoder.shared(&Out::Read {
                    room: Some(room),
                    with: None,
                    user: me,
                    id,
                });
                self.fan_out(room_id, &frame, Some(token), out);
            }
            (None, Some(with)) => {
                let peer = self.users.find(with).ok_or_else(|| {
                    FrameError::new("no_such_user", format!("no user called {with}"))
                })?;
                let (peer_id, peer_name) = (peer.id, &*peer.name);
                let _ = self.store.submit(Request::MarkRead {
                    user,
                    target: Target::Direct(user, peer_id),
                    id,
                });
                // `with` is the conversation as each receiver names it.
                let to_peer = self.encoder.shared(&Out::Read {
                    room: None,
                    with: Some(me),
                    user: me,
                    id,
                });
                let to_self = self.encoder.shared(&Out::Read {
                    room: None,
                    with: Some(peer_name),
                    user: me,
                    id,
                });
                for &t in self
                    .hub
                    .online
                    .get(&peer_id)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    if t != token {
                        out.frame(t, &to_peer);
                    }
                }
                if peer_id != user {
                    for &t in self
                        .hub
                        .online
                        .get(&user)
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                    {
                        if t != token {
                            out.frame(t, &to_self);
                        }
                    }
                }
            }
            _ => {
                return Err(FrameError::new(
                    "invalid_input",
                    "give exactly one of room or with",
                ));
            }
        }
        Ok(())
    }

    fn on_create_room(
        &mut self,
        token: Token,
        f: &ClientFrame<'_>,
        out: &mut Outbox,
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
        if self.hub.rooms.id(name).is_some() {
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
                self.users.find(m).map(|u| u.id).ok_or_else(|| {
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
        self.store
            .submit(Request::PutPrivateRoom(row))
            .map_err(|_| FrameError::new("busy", "the server is busy; try again"))?;
        for m in &members {
            self.users.mark_unread_source(*m);
        }
        let id = self.hub.rooms.open(name);
        self.hub.rooms.get_mut(id).private = Some(Private {
            owner: user,
            members: members.into_iter().collect(),
        });
        self.join_room(token, name, None, out)?;
        self.send_room_members(id, out);
        Ok(())
    }

    fn on_membership(
        &mut self,
        token: Token,
        f: &ClientFrame<'_>,
        add: bool,
        out: &mut Outbox,
    ) -> Result<(), FrameError> {
        let (me, _) = self.user_of(token)?;
        let name = f
            .room
            .as_deref()
            .ok_or_else(|| FrameError::new("invalid_input", "room is required"))?;
        let id = self
            .hub
            .rooms
            .id(name)
            .filter(|id| self.hub.rooms.get(*id).private.is_some())
            .ok_or_else(|| {
                FrameError::new("invalid_input", format!("{name} is not a private room"))
            })?;
        let owner = self.hub.rooms.get(id).private.as_ref().map(|p| p.owner);
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
        let user = self
            .users
            .find(who)
            .map(|u| u.id)
            .ok_or_else(|| FrameError::new("no_such_user", format!("no user called {who}")))?;
        let private = self
            .hub
            .rooms
            .get_mut(id)
            .private
            .as_mut()
            .expect("checked above");
        if add {
            private.members.insert(user);
            self.store
                .submit(Request::AddMember {
                    room: name.to_string(),
                    user,
                })
                .map_err(|_| FrameError::new("busy", "the server is busy; try again"))?;
            self.users.mark_unread_source(user);
            self.send_room_members(id, out);
            return Ok(());
        }
        if user == me {
            return Err(FrameError::new(
                "invalid_input",
                "the owner cannot be removed",
            ));
        }
        private.members.remove(&user);
        self.store
            .submit(Request::RemoveMember {
                room: name.to_string(),
                user,
            })
            .map_err(|_| FrameError::new("busy", "the server is busy; try again"))?;
        // Every connection of the removed member is told (joined to the room
        // or not, so each client can drop it), and the joined ones leave it.
        let conns: Vec<Token> = self.hub.online.get(&user).cloned().unwrap_or_default();
        let frame = self.encoder.shared(&Out::Leave {
            room: name,
            user: self.users.name(user),
        });
        for t in conns {
            let joined = self.hub.session_mut(t).and_then(|s| {
                let i = s.rooms.iter().position(|r| *r == id)?;
                s.rooms.swap_remove(i);
                Some(())
            });
            if joined.is_some() {
                self.unsubscribe(t, user, id, out);
            }
            out.frame(t, &frame);
        }
        self.send_room_members(id, out);
        Ok(())
    }

    /// `room_members` to every connection of every member.
    fn send_room_members(&mut self, id: RoomId, out: &mut Outbox) {
        let room = self.hub.rooms.get(id);
        let Some(p) = &room.private else { return };
        let mut members: Vec<&str> = p.members.iter().map(|m| self.users.name(*m)).collect();
        members.sort_unstable();
        let frame = self.encoder.shared(&Out::RoomMembers {
            room: &room.name,
            owner: self.users.name(p.owner),
            members,
        });
        for m in &p.members {
            for &t in self
                .hub
                .online
                .get(m)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                out.frame(t, &frame);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Content is trimmed and measured in characters, not bytes.
    #[test]
    fn checks_content() {
        assert_eq!(check_content(Some("  hi  ")).unwrap(), "hi");
        assert_eq!(
            check_content(Some("   ")).unwrap_err().code,
            "invalid_input"
        );
        assert_eq!(check_content(None).unwrap_err().code, "invalid_input");
        assert!(check_content(Some(&"é".repeat(4000))).is_ok());
        assert_eq!(
            check_content(Some(&"é".repeat(4001))).unwrap_err().code,
            "too_long"
        );
    }

    /// Client ids are 1-64 characters when present.
    #[test]
    fn checks_client_id() {
        assert_eq!(check_client_id(None).unwrap(), None);
        assert_eq!(check_client_id(Some("k")).unwrap(), Some("k"));
        assert!(check_client_id(Some("")).is_err());
        assert!(check_client_id(Some(&"k".repeat(65))).is_err());
    }
}
