//! Connections coming and going: sessions, `user_status`, `join`/`leave`
//! with presence on a user's first and last connection, `since` replays, and
//! the `unread` frame after connect.

use std::borrow::Cow;

use mio::Token;

use super::fanout::{Except, Topic};
use super::rate::TokenBucket;
use super::rooms::{ROOM_NAME_RULE, RoomId, valid_room_name};
use super::wire::Note;
use super::{Ctx, Hub, Session, Wait};
use crate::clock;
use crate::config::{MAX_REPLAY, MAX_REPLY_BYTES, MAX_ROOMS_PER_CONN};
use crate::outbox::{ConnRef, Outbox};
use crate::store::{HistoryQuery, Request, StoredMessage, Target, Ticket, UnreadCount, UserId};
use crate::ws::proto::{Out, UnreadEntry, stored_frame};

/// A client frame that cannot be carried out: answered with an `error` frame.
#[derive(Debug)]
pub struct FrameError {
    pub code: &'static str,
    pub message: String,
}

impl FrameError {
    pub fn new(code: &'static str, message: impl Into<String>) -> FrameError {
        FrameError {
            code,
            message: message.into(),
        }
    }
}

impl Hub {
    /// This connection's chat session (every chat frame comes from one).
    pub(super) fn session_of(&self, token: Token) -> Result<&Session, FrameError> {
        self.session(token)
            .ok_or_else(|| FrameError::new("invalid_input", "no session"))
    }

    /// A WebSocket connection opened for `user`.
    pub fn open_session(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        user: UserId,
        url_room: Option<String>,
    ) {
        let idx = conn.token.0;
        if self.sessions.len() <= idx {
            self.sessions.resize_with(idx + 1, || None);
        }
        self.sessions[idx] = Some(Session {
            conn,
            user,
            url_room: url_room.as_deref().map(Into::into),
            rooms: Vec::new(),
            bucket: TokenBucket::new(self.rate_limit, clock::now_ms()),
            held: Vec::new(),
            held_overflow: false,
        });
        self.sessions_open += 1;
        // A user lingering (entry present, no connection) is still shown
        // online: coming back within the grace is not news.
        let shown = self.online.contains_key(&user);
        self.online.entry(user).or_default().push(conn.token);
        if !shown {
            self.set_status(cx, user, "online");
        }
        let ticket = self.park(Wait::Unread { conn });
        // In a cluster another node may have made something unread (the
        // flag is this node's knowledge only): always ask there.
        let ask = self.cluster.is_some() || cx.users.get(user).is_some_and(|u| u.unread_sources);
        if !ask || cx.store.submit(Request::Unread { ticket, user }).is_err() {
            self.waiting.remove(&ticket);
            self.send_unread(cx, conn, &[]);
        }
        if let Some(room) = url_room
            && let Err(e) = self.join_room(cx, conn.token, &room, None)
        {
            self.send_error(cx.out, conn.token, &e, None);
        }
    }

    /// A WebSocket connection is going away: leave its rooms, maybe go
    /// offline. Called once per connection, from the reactor's close pass.
    pub fn close_session(&mut self, cx: &mut Ctx<'_, impl Outbox>, token: Token) {
        let Some(session) = self.sessions.get_mut(token.0).and_then(Option::take) else {
            return;
        };
        self.sessions_open -= 1;
        self.forget_deferred(session.conn);
        if self.quiet {
            for room in session.rooms {
                self.rooms
                    .get_mut(room)
                    .unsubscribe(token, session.user, false);
            }
            if let Some(conns) = self.online.get_mut(&session.user) {
                conns.retain(|t| *t != token);
                if conns.is_empty() {
                    self.online.remove(&session.user);
                    let _ = cx.store.submit(Request::SetLastSeen {
                        user: session.user,
                        at_ms: clock::now_ms(),
                    });
                }
            }
            return;
        }
        // A connection that went away (not a `leave`) lingers: the user
        // stays shown for the presence grace, so a reload or a network blip
        // that reconnects within it changes nothing anyone sees.
        let linger = self.presence_grace_ms > 0;
        let until = clock::now_ms() + self.presence_grace_ms;
        for room in session.rooms {
            if let Some(s) = self.session_mut(token) {
                s.held.retain(|(r, _, _)| *r != room);
            }
            match self
                .rooms
                .get_mut(room)
                .unsubscribe(token, session.user, linger)
            {
                Some(true) if linger => {
                    let name = self.rooms.get(room).name.clone();
                    self.lingering.push_back((until, session.user, Some(name)));
                }
                Some(true) => self.announce_leave(cx, session.user, room),
                _ => {}
            }
            self.rooms.collect(room);
        }
        if let Some(conns) = self.online.get_mut(&session.user) {
            conns.retain(|t| *t != token);
            if conns.is_empty() {
                if linger {
                    self.lingering.push_back((until, session.user, None));
                } else {
                    self.online.remove(&session.user);
                    self.set_status(cx, session.user, "offline");
                }
            }
        }
    }

    /// Ends the graces that are over (once a second, from the tick): a user
    /// still gone leaves the rooms they lingered in, then goes offline. All
    /// of a tick's changes go out together; a user who came back in time
    /// costs nothing.
    pub fn end_graces(&mut self, cx: &mut Ctx<'_, impl Outbox>) {
        let now = clock::now_ms();
        while self
            .lingering
            .front()
            .is_some_and(|(until, _, _)| *until <= now)
        {
            let (_, user, room) = self.lingering.pop_front().expect("checked above");
            match room {
                Some(name) => {
                    let Some(id) = self.rooms.id(&name) else {
                        continue;
                    };
                    if self.rooms.get_mut(id).end_linger(user) {
                        self.announce_leave(cx, user, id);
                        self.rooms.collect(id);
                    }
                }
                None => {
                    if self.online.get(&user).is_some_and(Vec::is_empty) {
                        self.online.remove(&user);
                        self.set_status(cx, user, "offline");
                    }
                }
            }
        }
    }

    /// `user` is no longer in the room on this node: the other nodes are
    /// told, and the room's connections here see `leave` unless the user is
    /// still in it on another node.
    fn announce_leave(&mut self, cx: &mut Ctx<'_, impl Outbox>, user: UserId, id: RoomId) {
        let room = self.rooms.get(id);
        let elsewhere = room.is_elsewhere(user);
        let name = room.name.clone();
        self.note(&Note::Left {
            room: Cow::Borrowed(&name),
            user,
        });
        if elsewhere {
            return;
        }
        let frame = self.encoder.shared(&Out::Leave {
            room: &name,
            user: cx.users.name(user),
        });
        self.deliver(Topic::Room(id), Except::Nobody, None, &frame, cx.out);
    }

    /// Records `last_seen`, tells the other nodes, and tells every
    /// connection here unless another node already shows the user so.
    fn set_status(&mut self, cx: &mut Ctx<'_, impl Outbox>, user: UserId, status: &'static str) {
        // Best effort: a full queue only loses a last-seen time.
        let _ = cx.store.submit(Request::SetLastSeen {
            user,
            at_ms: clock::now_ms(),
        });
        if status == "online" {
            self.note(&Note::Online { user });
        } else {
            self.note(&Note::Offline { user });
        }
        if !self.shown_elsewhere(user) {
            self.show_status(cx, user, status);
        }
    }

    /// `join`: subscribe, tell others if this is the user's first connection
    /// in the room, and answer `online_users` — after the replay when `since`
    /// is given.
    pub(super) fn join_room(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        token: Token,
        name: &str,
        since: Option<u64>,
    ) -> Result<(), FrameError> {
        let session = self.session_of(token)?;
        let (user, conn) = (session.user, session.conn);
        if !valid_room_name(name) {
            return Err(FrameError::new("invalid_input", ROOM_NAME_RULE));
        }
        if self.creating.contains(name) {
            // A private room whose row is being stored: not a public room to open.
            return Err(FrameError::new("forbidden", format!("{name} is private")));
        }
        if let Some(id) = self.rooms.id(name) {
            if !self.rooms.get(id).admits(user) {
                return Err(FrameError::new("forbidden", format!("{name} is private")));
            }
            if session.rooms.contains(&id) {
                self.send_online_users(cx, token, id, None);
                return Ok(());
            }
        }
        if self.cluster.is_some() && self.rooms.id(name).is_none() {
            // Another node may have created it as private a moment ago (its
            // note still on the way): storage says, before anyone is let in.
            return self
                .look_up_room(cx, name, Some((conn, since)), false)
                .map_err(|_| FrameError::new("busy", "the server is busy; join again shortly"));
        }
        if session.rooms.len() >= MAX_ROOMS_PER_CONN {
            return Err(FrameError::new(
                "invalid_input",
                format!("at most {MAX_ROOMS_PER_CONN} rooms per connection"),
            ));
        }
        let id = self.rooms.open(name);
        let replay = since.map(|after| HistoryQuery {
            target: Target::Room(name.to_string()),
            before: Some(self.last_msg_id + 1),
            after: Some(after),
            limit: MAX_REPLAY + 1,
            offset: 0,
        });
        if let Some(query) = replay {
            let reserved = self.claim_reservation();
            let ticket = self.park(Wait::Replay {
                conn,
                room: name.into(),
                reserved,
            });
            if cx.store.submit(Request::History { ticket, query }).is_err() {
                self.waiting.remove(&ticket);
                self.release_read(conn, reserved);
                self.rooms.collect(id);
                return Err(FrameError::new(
                    "busy",
                    "the server is busy; join again shortly",
                ));
            }
        }
        let first = self
            .rooms
            .get_mut(id)
            .subscribe(token, user, since.is_some());
        self.session_mut(token)
            .expect("checked above")
            .rooms
            .push(id);
        if first {
            self.note(&Note::Entered {
                room: Cow::Borrowed(name),
                user,
            });
        }
        if first && !self.rooms.get(id).is_elsewhere(user) {
            let frame = self.encoder.shared(&Out::Join {
                room: name,
                user: cx.users.name(user),
            });
            self.deliver(Topic::Room(id), Except::Conn(conn), None, &frame, cx.out);
        }
        if since.is_none() {
            self.send_online_users(cx, token, id, None);
        }
        Ok(())
    }

    /// The replay for `join … since` came back: send it, then `online_users`,
    /// then what arrived live meanwhile.
    pub(super) fn finish_replay(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        room: &str,
        mut messages: Option<Vec<StoredMessage>>,
    ) {
        let token = conn.token;
        let Some(id) = self.rooms.id(room) else {
            return;
        };
        let ok = self
            .session(token)
            .is_some_and(|s| s.conn == conn && s.rooms.contains(&id))
            && self.rooms.get(id).replaying.contains(&token);
        if !ok || !cx.out.is_live(conn) {
            return;
        }
        // In a cluster the replay may hold messages the bus has not brought
        // here yet: it waits for them, or their live copies would repeat it.
        if self.replay_must_wait(conn, room, &mut messages) {
            return;
        }
        let failed = messages.is_none();
        let messages = messages.unwrap_or_default();
        let mut missed_more = messages.len() > MAX_REPLAY;
        // The newest first, while they fit in one reply (MAX_REPLY_BYTES):
        // what the client missed most recently matters most.
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0;
        let users = &*cx.users;
        for m in messages.iter().rev().take(MAX_REPLAY) {
            let frame = self.encoder.bytes(&stored_frame(m, &|u| users.name(u)));
            bytes += frame.len();
            if bytes > MAX_REPLY_BYTES {
                missed_more = true;
                break;
            }
            frames.push(frame.to_vec());
        }
        // Held live messages the replay already carried are not sent twice
        // (a message committed while the replay was being read is in both).
        let replayed_up_to = messages.last().map_or(0, |m| m.id);
        for frame in frames.iter().rev() {
            cx.out.reply(token, frame);
        }
        let session = self.session_mut(token).expect("checked above");
        let mut held = Vec::new();
        session.held.retain(|(r, msg_id, f)| {
            if *r == id {
                if msg_id.is_none_or(|m| m > replayed_up_to) {
                    held.push(f.clone());
                }
                false
            } else {
                true
            }
        });
        let overflow = std::mem::take(&mut session.held_overflow);
        self.send_online_users(cx, token, id, Some(!(failed || missed_more || overflow)));
        for frame in &held {
            cx.out.frame(token, frame);
        }
        self.rooms.get_mut(id).finish_replay(token);
    }

    /// `leave`.
    pub(super) fn leave_room(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        token: Token,
        name: &str,
    ) -> Result<(), FrameError> {
        if name.is_empty() {
            return Err(FrameError::new("invalid_input", "room is required"));
        }
        if !valid_room_name(name) {
            return Err(FrameError::new("invalid_input", ROOM_NAME_RULE));
        }
        let session = self.session_of(token)?;
        let user = session.user;
        let id = self
            .rooms
            .id(name)
            .filter(|id| session.rooms.contains(id))
            .ok_or_else(|| FrameError::new("not_member", format!("not in {name}")))?;
        self.session_mut(token)
            .expect("checked above")
            .rooms
            .retain(|r| *r != id);
        self.unsubscribe(cx, token, user, id);
        Ok(())
    }

    /// Removes a connection from a room; presence `leave` on the user's last.
    pub(super) fn unsubscribe(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        token: Token,
        user: UserId,
        id: RoomId,
    ) {
        if let Some(s) = self.session_mut(token) {
            s.held.retain(|(r, _, _)| *r != id);
        }
        if self.rooms.get_mut(id).unsubscribe(token, user, false) == Some(true) {
            self.announce_leave(cx, user, id);
        }
        self.rooms.collect(id);
    }

    /// `online_users` for one connection.
    fn send_online_users(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        token: Token,
        id: RoomId,
        recovered: Option<bool>,
    ) {
        let room = self.rooms.get(id);
        let mut users: Vec<&str> = room.shown().map(|u| cx.users.name(u)).collect();
        users.sort_unstable();
        let frame = Out::OnlineUsers {
            room: &room.name,
            count: users.len(),
            users,
            recovered,
        };
        cx.out.reply(token, self.encoder.bytes(&frame));
    }

    /// The `unread` counts came back from storage.
    pub fn on_unread(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        ticket: Ticket,
        counts: &[UnreadCount],
    ) {
        if let Some(Wait::Unread { conn }) = self.waiting.remove(&ticket) {
            self.send_unread(cx, conn, counts);
        }
    }

    /// The `unread` frame after connect.
    fn send_unread(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        counts: &[UnreadCount],
    ) {
        if !cx.out.is_live(conn) {
            return;
        }
        let counts = counts
            .iter()
            .map(|c| match c {
                UnreadCount::Room(room, n, mentions) => UnreadEntry {
                    room: Some(room),
                    with: None,
                    count: *n,
                    mentions: (*mentions > 0).then_some(*mentions),
                },
                UnreadCount::Direct(from, n) => UnreadEntry {
                    room: None,
                    with: Some(cx.users.name(*from)),
                    count: *n,
                    mentions: None,
                },
            })
            .collect();
        cx.out
            .reply(conn.token, self.encoder.bytes(&Out::Unread { counts }));
    }

    /// An `error` frame.
    pub(super) fn send_error(
        &mut self,
        out: &mut impl Outbox,
        token: Token,
        e: &FrameError,
        client_id: Option<&str>,
    ) {
        out.reply(
            token,
            self.encoder.bytes(&Out::Error {
                code: e.code,
                message: &e.message,
                client_id,
            }),
        );
    }
}
