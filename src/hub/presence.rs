//! Connections coming and going: sessions, `user_status`, `join`/`leave`
//! with presence on a user's first and last connection, `since` replays, and
//! the one fan-out loop every room frame goes through.

use std::rc::Rc;

use mio::Token;

use super::Session;
use super::rate::TokenBucket;
use super::rooms::{ROOM_NAME_RULE, RoomId, valid_room_name};
use crate::app::{App, Waiter};
use crate::clock;
use crate::config::{MAX_HELD_FRAMES, MAX_REPLAY, MAX_ROOMS_PER_CONN};
use crate::outbox::{ConnRef, Outbox};
use crate::store::{HistoryQuery, Request, StoredMessage, Target, UnreadCount, UserId};
use crate::ws::proto::{Out, Ts, UnreadEntry};

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

impl App {
    /// This connection's chat session (every chat frame comes from one).
    pub fn session_of(&self, token: Token) -> Result<&super::Session, FrameError> {
        self.hub
            .session(token)
            .ok_or_else(|| FrameError::new("invalid_input", "no session"))
    }

    /// A WebSocket connection opened for `user`.
    pub fn open_session(
        &mut self,
        conn: ConnRef,
        user: UserId,
        url_room: Option<String>,
        out: &mut Outbox,
    ) {
        let idx = conn.token.0;
        if self.hub.sessions.len() <= idx {
            self.hub.sessions.resize_with(idx + 1, || None);
        }
        self.hub.sessions[idx] = Some(Session {
            conn,
            user,
            url_room: url_room.as_deref().map(Into::into),
            rooms: Vec::new(),
            bucket: TokenBucket::new(self.config.rate_limit, clock::now_ms()),
            held: Vec::new(),
            held_overflow: false,
        });
        let conns = self.hub.online.entry(user).or_default();
        conns.push(conn.token);
        if conns.len() == 1 {
            self.set_status(user, "online", out);
        }
        let ticket = self.park(Waiter::Unread { conn });
        let ask = self.users.get(user).is_some_and(|u| u.unread_sources);
        if !ask || self.store.submit(Request::Unread { ticket, user }).is_err() {
            self.waiters.remove(&ticket);
            self.send_unread(conn, &[], out);
        }
        if let Some(room) = url_room
            && let Err(e) = self.join_room(conn.token, &room, None, out)
        {
            self.send_error(conn.token, &e, None, out);
        }
    }

    /// A WebSocket connection is closing: leave its rooms, maybe go offline.
    pub fn close_session(&mut self, token: Token, out: &mut Outbox) {
        let Some(session) = self.hub.sessions.get_mut(token.0).and_then(Option::take) else {
            return;
        };
        if self.quiet {
            for room in session.rooms {
                self.hub
                    .rooms
                    .get_mut(room)
                    .unsubscribe(token, session.user);
            }
            if let Some(conns) = self.hub.online.get_mut(&session.user) {
                conns.retain(|t| *t != token);
                if conns.is_empty() {
                    self.hub.online.remove(&session.user);
                    let _ = self.store.submit(Request::SetLastSeen {
                        user: session.user,
                        at_ms: clock::now_ms(),
                    });
                }
            }
            return;
        }
        for room in session.rooms {
            self.unsubscribe(token, session.user, room, out);
        }
        if let Some(conns) = self.hub.online.get_mut(&session.user) {
            conns.retain(|t| *t != token);
            if conns.is_empty() {
                self.hub.online.remove(&session.user);
                self.set_status(session.user, "offline", out);
            }
        }
    }

    /// Records `last_seen` and tells every connection.
    fn set_status(&mut self, user: UserId, status: &'static str, out: &mut Outbox) {
        let now = clock::now_ms();
        let Some(u) = self.users.get_mut(user) else {
            return;
        };
        u.last_seen_ms = Some(now);
        // Best effort: a full queue only loses a last-seen time.
        let _ = self.store.submit(Request::SetLastSeen { user, at_ms: now });
        let frame = self.encoder.shared(&Out::UserStatus {
            user: &u.name,
            status,
            last_seen: Ts(now),
        });
        for conns in self.hub.online.values() {
            for t in conns {
                out.frame(*t, &frame);
            }
        }
    }

    /// `join`: subscribe, tell others if this is the user's first connection
    /// in the room, and answer `online_users` — after the replay when `since`
    /// is given.
    pub fn join_room(
        &mut self,
        token: Token,
        name: &str,
        since: Option<u64>,
        out: &mut Outbox,
    ) -> Result<(), FrameError> {
        let session = self.session_of(token)?;
        let (user, conn) = (session.user, session.conn);
        if !valid_room_name(name) {
            return Err(FrameError::new("invalid_input", ROOM_NAME_RULE));
        }
        if let Some(id) = self.hub.rooms.id(name) {
            if !self.hub.rooms.get(id).admits(user) {
                return Err(FrameError::new("forbidden", format!("{name} is private")));
            }
            if session.rooms.contains(&id) {
                self.send_online_users(token, id, None, out);
                return Ok(());
            }
        }
        if session.rooms.len() >= MAX_ROOMS_PER_CONN {
            return Err(FrameError::new(
                "invalid_input",
                format!("at most {MAX_ROOMS_PER_CONN} rooms per connection"),
            ));
        }
        let id = self.hub.rooms.open(name);
        let replay = since.map(|after| HistoryQuery {
            target: Target::Room(name.to_string()),
            before: Some(self.hub.last_msg_id + 1),
            after: Some(after),
            limit: MAX_REPLAY + 1,
            offset: 0,
        });
        if let Some(query) = replay {
            let ticket = self.park(Waiter::Replay {
                conn,
                room: name.into(),
            });
            if self
                .store
                .submit(Request::History { ticket, query })
                .is_err()
            {
                self.waiters.remove(&ticket);
                self.hub.rooms.collect(id);
                return Err(FrameError::new(
                    "busy",
                    "the server is busy; join again shortly",
                ));
            }
        }
        let first = self
            .hub
            .rooms
            .get_mut(id)
            .subscribe(token, user, since.is_some());
        self.hub
            .session_mut(token)
            .expect("checked above")
            .rooms
            .push(id);
        if first {
            let frame = self.encoder.shared(&Out::Join {
                room: name,
                user: self.users.name(user),
            });
            self.fan_out(id, &frame, Some(token), out);
        }
        if since.is_none() {
            self.send_online_users(token, id, None, out);
        }
        Ok(())
    }

    /// The replay for `join … since` came back: send it, then `online_users`,
    /// then what arrived live meanwhile.
    pub fn finish_replay(
        &mut self,
        conn: ConnRef,
        room: &str,
        messages: Option<Vec<StoredMessage>>,
        out: &mut Outbox,
    ) {
        let token = conn.token;
        let Some(id) = self.hub.rooms.id(room) else {
            return;
        };
        let ok = self
            .hub
            .session(token)
            .is_some_and(|s| s.conn == conn && s.rooms.contains(&id))
            && self.hub.rooms.get(id).replaying.contains(&token);
        if !ok || !out.is_live(conn) {
            return;
        }
        let failed = messages.is_none();
        let mut messages = messages.unwrap_or_default();
        let missed_more = messages.len() > MAX_REPLAY;
        if missed_more {
            messages.drain(..messages.len() - MAX_REPLAY);
        }
        for m in &messages {
            let frame = Out::Message {
                id: m.id,
                room,
                user: self.users.name(m.from),
                content: &m.content,
                timestamp: Ts(m.timestamp_ms),
            };
            out.reply(token, self.encoder.bytes(&frame));
        }
        let session = self.hub.session_mut(token).expect("checked above");
        let mut held = Vec::new();
        session.held.retain(|(r, f)| {
            if *r == id {
                held.push(f.clone());
                false
            } else {
                true
            }
        });
        let overflow = std::mem::take(&mut session.held_overflow);
        self.send_online_users(token, id, Some(!(failed || missed_more || overflow)), out);
        for frame in &held {
            out.frame(token, frame);
        }
        self.hub.rooms.get_mut(id).finish_replay(token);
    }

    /// `leave`.
    pub fn leave_room(
        &mut self,
        token: Token,
        name: &str,
        out: &mut Outbox,
    ) -> Result<(), FrameError> {
        let session = self.session_of(token)?;
        let user = session.user;
        let id = self
            .hub
            .rooms
            .id(name)
            .filter(|id| session.rooms.contains(id))
            .ok_or_else(|| FrameError::new("not_member", format!("not in {name}")))?;
        self.hub
            .session_mut(token)
            .expect("checked above")
            .rooms
            .retain(|r| *r != id);
        self.unsubscribe(token, user, id, out);
        Ok(())
    }

    /// Removes a connection from a room; presence `leave` on the user's last.
    pub fn unsubscribe(&mut self, token: Token, user: UserId, id: RoomId, out: &mut Outbox) {
        if let Some(s) = self.hub.session_mut(token) {
            s.held.retain(|(r, _)| *r != id);
        }
        if self.hub.rooms.get_mut(id).unsubscribe(token, user) == Some(true) {
            let room = self.hub.rooms.get(id);
            let frame = self.encoder.shared(&Out::Leave {
                room: &room.name,
                user: self.users.name(user),
            });
            self.fan_out(id, &frame, None, out);
        }
        self.hub.rooms.collect(id);
    }

    /// `online_users` for one connection.
    pub fn send_online_users(
        &mut self,
        token: Token,
        id: RoomId,
        recovered: Option<bool>,
        out: &mut Outbox,
    ) {
        let room = self.hub.rooms.get(id);
        let mut users: Vec<&str> = room.presence.keys().map(|u| self.users.name(*u)).collect();
        users.sort_unstable();
        let frame = Out::OnlineUsers {
            room: &room.name,
            count: users.len(),
            users,
            recovered,
        };
        out.reply(token, self.encoder.bytes(&frame));
    }

    /// Queues `frame` to every connection in the room but `except`; frames for
    /// connections still replaying are held for them. Returns the copies queued.
    pub fn fan_out(
        &mut self,
        id: RoomId,
        frame: &Rc<[u8]>,
        except: Option<Token>,
        out: &mut Outbox,
    ) -> u64 {
        let room = self.hub.rooms.get(id);
        let mut n = 0;
        for &t in &room.subscribers {
            if Some(t) != except {
                out.frame(t, frame);
                n += 1;
            }
        }
        for &t in &room.replaying {
            if Some(t) == except {
                continue;
            }
            if let Some(s) = self.hub.sessions.get_mut(t.0).and_then(Option::as_mut) {
                if s.held.len() < MAX_HELD_FRAMES {
                    s.held.push((id, frame.clone()));
                    n += 1;
                } else {
                    s.held_overflow = true;
                }
            }
        }
        n
    }

    /// The `unread` frame after connect.
    pub fn send_unread(&mut self, conn: ConnRef, counts: &[UnreadCount], out: &mut Outbox) {
        if !out.is_live(conn) {
            return;
        }
        let counts = counts
            .iter()
            .map(|c| match c {
                UnreadCount::Room(room, n) => UnreadEntry {
                    room: Some(room),
                    with: None,
                    count: *n,
                },
                UnreadCount::Direct(from, n) => UnreadEntry {
                    room: None,
                    with: Some(self.users.name(*from)),
                    count: *n,
                },
            })
            .collect();
        out.reply(conn.token, self.encoder.bytes(&Out::Unread { counts }));
    }

    /// An `error` frame.
    pub fn send_error(
        &mut self,
        token: Token,
        e: &FrameError,
        client_id: Option<&str>,
        out: &mut Outbox,
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
