//! The handling of each client frame of the contract, from parse to publish.
//!
//! The path of a chat message (`on_message`): validate, rate-limit, give it
//! a key, hand the row to the storage thread and park the message. When the
//! commit comes back (`on_message_stored`) with the message's id, its frame
//! is encoded ONCE, the same bytes are published to the room (`fanout`) and
//! the sender gets its `ack`; if the write failed, nobody saw the message and
//! the sender gets an `error` with its `client_id`. Delivering at commit costs recipients one
//! batch of latency; in exchange nobody is ever shown a message that storage
//! does not have.

use mio::Token;

use super::fanout::{Except, Topic};
use super::presence::FrameError;
use super::rooms::{ROOM_NAME_RULE, RoomId, valid_room_name};
use super::{Ctx, Delivery, Denied, Hub, PendingAck, Stored, Wait};
use crate::clock;
use crate::config::{
    DEFAULT_HISTORY_LIMIT, MAX_CLIENT_ID, MAX_CONTENT_CHARS, MAX_HISTORY_LIMIT,
    MAX_PUBLIC_ROOMS_PER_USER, MAX_REPLY_BYTES, MESSAGE_REPLY_MAX,
};
use crate::outbox::{ConnRef, Outbox};
use crate::store::{HistoryQuery, MsgId, Request, StoredMessage, Target, UserId};
use crate::ws::proto::{
    ClientFrame, MessageObj, Out, Ts, Unparsed, echo, message_objects, parse_client,
};

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

/// The key of a `client_id` not yet committed: a hash, so a resend is looked
/// up without allocating. A match is confirmed against the parked message's
/// own `client_id`; on the (harmless) collision the resend is treated as new,
/// and the database's unique index answers it with the first message.
fn uncommitted_key(user: UserId, client_id: &str) -> (UserId, u64) {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    client_id.hash(&mut h);
    (user, h.finish())
}

/// The reply bytes a frame's storage read is reserved at, if it reads:
/// a history page at its limit's worst case, a replay at the reply cap.
fn read_reservation(f: &ClientFrame<'_>) -> Option<usize> {
    match &*f.kind {
        "history" => Some(history_limit(f.limit) * MESSAGE_REPLY_MAX),
        "join" if f.since.is_some() => Some(MAX_REPLY_BYTES),
        _ => None,
    }
}

/// A `history` frame's page size: the default, or its `limit` within bounds.
fn history_limit(limit: Option<u64>) -> usize {
    limit.map_or(DEFAULT_HISTORY_LIMIT, |l| {
        (l as usize).clamp(1, MAX_HISTORY_LIMIT)
    })
}

/// A new chat message that passed the checks.
struct Admitted<'c> {
    content: &'c str,
    client_id: Option<&'c str>,
    id: MsgId,
    ts: i64,
}

impl Hub {
    /// One text frame from a chat connection.
    pub fn on_text(&mut self, cx: &mut Ctx<'_, impl Outbox>, token: Token, text: &str) {
        cx.out.metrics().ws_frames_in += 1;
        let allowed = self.take_token(token);
        self.handle_text(cx, token, text, allowed);
    }

    /// Handles a text frame; `allowed` is the rate limit's verdict (a
    /// deferred frame paid when it first came).
    pub(super) fn handle_text(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        token: Token,
        text: &str,
        allowed: bool,
    ) {
        let Some(session) = self.session(token) else {
            return;
        };
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
                    return self.send_error(cx.out, token, &e, None);
                }
            },
            Err(Unparsed::NoType) => {
                let e = FrameError::new("unknown_type", "a frame needs a string \"type\"");
                return self.send_error(cx.out, token, &e, None);
            }
            Err(Unparsed::BadField(why)) => {
                let e = FrameError::new("invalid_input", why);
                return self.send_error(cx.out, token, &e, None);
            }
        };
        let client_id = frame.client_id.as_deref();
        if !allowed {
            cx.out.metrics().rate_limited += 1;
            let e = FrameError::new("rate_limited", "too many frames; slow down");
            return self.send_error(cx.out, token, &e, client_id);
        }
        if let Some(bytes) = read_reservation(&frame)
            && !self.reserve_read(cx.out, token, bytes)
        {
            return self.defer(token, text);
        }
        let room = frame.room.as_deref().or(url_room.as_deref());
        let result = match &*frame.kind {
            "join" => self.join_room(
                cx,
                token,
                frame.room.as_deref().unwrap_or_default(),
                frame.since,
            ),
            "leave" => self.leave_room(cx, token, frame.room.as_deref().unwrap_or_default()),
            "message" => self.on_message(
                cx,
                token,
                room,
                frame.content.as_deref(),
                client_id,
                frame.reply_to,
            ),
            "private_message" => self.on_private(
                cx,
                token,
                frame.to.as_deref(),
                frame.content.as_deref(),
                client_id,
                frame.reply_to,
            ),
            "edit" => self.on_edit(cx, token, &frame),
            "delete" => self.on_delete(cx, token, &frame),
            "react" => self.on_react(cx, token, &frame),
            "typing" | "stop_typing" => self.on_typing(cx, token, room, frame.kind == "typing"),
            "history" => self.on_history_request(cx, token, &frame),
            "read" => self.on_read(cx, token, &frame),
            "create_room" => self.on_create_room(cx, token, &frame),
            "add_member" | "remove_member" => {
                self.on_membership(cx, token, &frame, frame.kind == "add_member")
            }
            other => Err(FrameError::new(
                "unknown_type",
                format!("unknown frame type {:?}", echo(other)),
            )),
        };
        self.release_unclaimed(token);
        if let Err(e) = result {
            self.send_error(cx.out, token, &e, client_id);
        }
    }

    /// A binary frame from a chat connection: the contract speaks JSON text.
    pub fn on_binary(&mut self, out: &mut impl Outbox, token: Token) {
        out.metrics().ws_frames_in += 1;
        let e = if self.take_token(token) {
            FrameError::new(
                "bad_json",
                "binary frames are not supported; send JSON text",
            )
        } else {
            out.metrics().rate_limited += 1;
            FrameError::new("rate_limited", "too many frames; slow down")
        };
        self.send_error(out, token, &e, None);
    }

    /// A ping from a chat connection: true when it may be answered. Pings
    /// cost a token like any frame, so a flood of them is not a free way to
    /// make the server write; over the limit the pong is simply not sent.
    pub fn allow_ping(&mut self, out: &mut impl Outbox, token: Token) -> bool {
        let allowed = self.take_token(token);
        if !allowed {
            out.metrics().rate_limited += 1;
        }
        allowed
    }

    /// Takes one token from the connection's rate-limit bucket.
    fn take_token(&mut self, token: Token) -> bool {
        let rate = self.rate_limit;
        self.session_mut(token)
            .is_none_or(|s| s.bucket.allow(rate, clock::now_ms()))
    }

    pub(super) fn user_of(&self, token: Token) -> Result<(UserId, ConnRef), FrameError> {
        self.session_of(token).map(|s| (s.user, s.conn))
    }

    /// The room `name` if this connection has joined it.
    fn joined_room(&self, token: Token, name: Option<&str>) -> Result<RoomId, FrameError> {
        let name = name.ok_or_else(|| FrameError::new("invalid_input", "room is required"))?;
        if !valid_room_name(name) {
            return Err(FrameError::new("invalid_input", ROOM_NAME_RULE));
        }
        self.rooms
            .id(name)
            .filter(|id| self.session(token).is_some_and(|s| s.rooms.contains(id)))
            .ok_or_else(|| FrameError::new("not_member", format!("join {name} first")))
    }

    /// The room `name` if `user` may read it and it exists (has messages
    /// or members): for frames that need no `join`.
    fn readable_room(&self, user: UserId, name: &str) -> Result<RoomId, FrameError> {
        match self.may_read(user, name) {
            Err(Denied::BadName) => Err(FrameError::new("invalid_input", ROOM_NAME_RULE)),
            Err(Denied::Private) => Err(FrameError::new("forbidden", format!("{name} is private"))),
            Ok(_) => self
                .rooms
                .id(name)
                .ok_or_else(|| FrameError::new("invalid_input", format!("{name} has no messages"))),
        }
    }

    /// What every chat message goes through first: content and `client_id`
    /// checked, then either a retry answered from the window (`None`), or a
    /// fresh id and timestamp.
    fn admit<'c>(
        &mut self,
        out: &mut impl Outbox,
        conn: ConnRef,
        user: UserId,
        content: Option<&'c str>,
        client_id: Option<&'c str>,
    ) -> Result<Option<Admitted<'c>>, FrameError> {
        let content = check_content(content)?;
        let client_id = check_client_id(client_id)?;
        if self.ack_retry(out, conn, user, client_id) {
            return Ok(None);
        }
        Ok(Some(Admitted {
            content,
            client_id,
            id: self.next_key(),
            ts: clock::now_ms(),
        }))
    }

    /// A retry of a `client_id` this user already sent: ack it again (now if
    /// the first copy is committed, else when it is). Returns whether it was
    /// a retry. An id whose write failed is forgotten, so its retry is new.
    fn ack_retry(
        &mut self,
        out: &mut impl Outbox,
        conn: ConnRef,
        user: UserId,
        client_id: Option<&str>,
    ) -> bool {
        let Some(cid) = client_id else { return false };
        if let Some((id, ts)) = self.client_ids.get(user, cid) {
            let ack = Out::Ack {
                client_id: Some(cid),
                id,
                timestamp: Ts(ts),
            };
            out.reply(conn.token, self.encoder.bytes(&ack));
            return true;
        }
        let pending = self.uncommitted.get(&uncommitted_key(user, cid));
        if let Some(pending) = pending.and_then(|id| self.acks.get_mut(*id))
            && pending.client_id() == Some(cid)
        {
            pending.waiters.push((conn, Some(cid.into())));
            return true;
        }
        false
    }

    /// Queues the row for storage and parks the message until storage
    /// answers. Nobody sees it before the commit.
    fn persist(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        msg: StoredMessage,
        client_id: Option<&str>,
        delivery: Delivery,
    ) -> Result<(), FrameError> {
        let (id, ts, from, reply_to) = (msg.id, msg.timestamp_ms, msg.from, msg.reply_to);
        let content = msg.content.as_str().into();
        let mentions = self.mentions_of(cx.users, from, &msg.content, delivery);
        let req = Request::PutMessage {
            msg,
            client_id: client_id.map(String::from),
            // A conversation's unread count already counts what mentions
            // the peer: only room mentions are kept for counting.
            mentions: match delivery {
                Delivery::Room(_) => mentions.clone(),
                Delivery::Private { .. } => Vec::new(),
            },
        };
        // Queued even while the database is unreachable: its batch fails at
        // once (the sender hears `busy`), and the first retry after the
        // database is back is stored, with no probe to wait for.
        cx.store.submit(req).map_err(|_| {
            FrameError::new("busy", "the server is busy; retry with the same client_id")
        })?;
        if let Some(cid) = client_id {
            self.uncommitted.insert(uncommitted_key(from, cid), id);
        }
        if let Delivery::Room(room) = delivery {
            self.rooms.get_mut(room).in_flight += 1;
        }
        for &u in &mentions {
            cx.users.mark_unread_source(u);
        }
        let waiters = vec![(conn, client_id.map(Into::into))];
        self.acks.push(
            id,
            PendingAck {
                waiters,
                timestamp_ms: ts,
                from,
                delivery,
                content,
                reply_to,
                mentions,
            },
        );
        Ok(())
    }

    /// A frame's `reply_to`: absent, or a message id. Storage checks that
    /// it is a live message of the same room or conversation, in the
    /// message's own transaction (in a cluster it may be one this node has
    /// not seen yet).
    fn check_reply_to(reply_to: Option<u64>) -> Result<Option<MsgId>, FrameError> {
        match reply_to {
            Some(0) => Err(FrameError::new(
                "invalid_input",
                "reply_to must be the id of a message",
            )),
            other => Ok(other),
        }
    }

    fn on_message(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        token: Token,
        room: Option<&str>,
        content: Option<&str>,
        client_id: Option<&str>,
        reply_to: Option<u64>,
    ) -> Result<(), FrameError> {
        let (user, conn) = self.user_of(token)?;
        let room_id = self.joined_room(token, room)?;
        let reply_to = Self::check_reply_to(reply_to)?;
        let Some(Admitted {
            content,
            client_id,
            id,
            ts,
        }) = self.admit(cx.out, conn, user, content, client_id)?
        else {
            return Ok(());
        };
        let room = self.rooms.get(room_id);
        let name = room.name.to_string();
        if !room.has_messages && room.private.is_none() {
            // The first message opens the room for good: it counts against
            // the sender's quota (a retry after a failed first write counts
            // again, which only errs towards the limit).
            let opening = room.in_flight == 0;
            let made = self.created.entry(user).or_default();
            if opening && made.public >= MAX_PUBLIC_ROOMS_PER_USER {
                return Err(FrameError::new(
                    "forbidden",
                    format!(
                        "you have opened {MAX_PUBLIC_ROOMS_PER_USER} public rooms, \
                         the most one person may; post in one that has messages"
                    ),
                ));
            }
            // The room row goes first: a message stored without it would
            // load as a room nobody may read. Sent until a message commits.
            cx.store
                .submit(Request::PutPublicRoom {
                    name: name.clone(),
                    creator: user,
                })
                .map_err(|_| {
                    FrameError::new("busy", "the server is busy; retry with the same client_id")
                })?;
            if opening {
                made.public += 1;
            }
        }
        let msg = StoredMessage {
            id,
            room: Some(name),
            from: user,
            to: None,
            content: content.to_string(),
            timestamp_ms: ts,
            reply_to,
            ..StoredMessage::default()
        };
        self.persist(cx, conn, msg, client_id, Delivery::Room(room_id))
    }

    fn on_private(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        token: Token,
        to: Option<&str>,
        content: Option<&str>,
        client_id: Option<&str>,
        reply_to: Option<u64>,
    ) -> Result<(), FrameError> {
        let (user, conn) = self.user_of(token)?;
        let to = to.ok_or_else(|| FrameError::new("invalid_input", "to is required"))?;
        let reply_to = Self::check_reply_to(reply_to)?;
        let peer = cx.users.find(to).map(|u| u.id).ok_or_else(|| {
            FrameError::new("no_such_user", format!("no user called {}", echo(to)))
        })?;
        let Some(Admitted {
            content,
            client_id,
            id,
            ts,
        }) = self.admit(cx.out, conn, user, content, client_id)?
        else {
            return Ok(());
        };
        let msg = StoredMessage {
            id,
            room: None,
            from: user,
            to: Some(peer),
            content: content.to_string(),
            timestamp_ms: ts,
            reply_to,
            ..StoredMessage::default()
        };
        self.persist(cx, conn, msg, client_id, Delivery::Private { peer })?;
        cx.users.mark_unread_source(peer);
        Ok(())
    }

    /// Storage answered for a message: deliver it and ack it, ack the first
    /// copy of a retry, or tell the sender it failed (with its `client_id`,
    /// which is free again for the retry). `key` is the one `persist` sent.
    pub fn on_message_stored(&mut self, cx: &mut Ctx<'_, impl Outbox>, key: MsgId, stored: Stored) {
        let Some(pending) = self.acks.remove(key) else {
            return;
        };
        let from = pending.from;
        if let Some(cid) = pending.client_id() {
            let ukey = uncommitted_key(from, cid);
            // Only this message's entry: a colliding one belongs to another.
            if self.uncommitted.get(&ukey) == Some(&key) {
                self.uncommitted.remove(&ukey);
            }
        }
        let failed = matches!(stored, Stored::No { .. } | Stored::Refused);
        if let Delivery::Room(room) = pending.delivery {
            let r = self.rooms.get_mut(room);
            r.in_flight -= 1;
            r.has_messages |= !failed;
        }
        let (ack_id, ack_ts) = match stored {
            Stored::Yes { id, .. } => (id, pending.timestamp_ms),
            Stored::Already { id, timestamp_ms } => (id, timestamp_ms),
            Stored::No { .. } | Stored::Refused => (0, 0),
        };
        if let (Some(cid), false) = (pending.client_id(), failed) {
            self.client_ids.insert(from, cid, ack_id, ack_ts);
        }
        let mut delivered = false;
        if let Stored::Yes { id, seq } = stored {
            self.last_msg_id = self.last_msg_id.max(id);
            cx.out.metrics().messages_stored += 1;
            let sender = Except::Conn(pending.waiters[0].0);
            let ts = Ts(pending.timestamp_ms);
            let n = match pending.delivery {
                Delivery::Room(room) => {
                    let frame = self.encoder.shared(&Out::Message {
                        id,
                        room: &self.rooms.get(room).name,
                        user: cx.users.name(from),
                        content: &pending.content,
                        timestamp: ts,
                        reply_to: pending.reply_to,
                        edited_at: None,
                        reactions: Vec::new(),
                    });
                    self.publish_message(cx, Topic::Room(room), sender, id, seq, &frame)
                }
                Delivery::Private { peer } => {
                    let frame = self.encoder.shared(&Out::PrivateMessage {
                        id,
                        from: cx.users.name(from),
                        to: cx.users.name(peer),
                        content: &pending.content,
                        timestamp: ts,
                        reply_to: pending.reply_to,
                        edited_at: None,
                        reactions: Vec::new(),
                    });
                    let topic = Topic::Conversation(from, peer);
                    let n = self.publish_message(cx, topic, sender, id, seq, &frame);
                    // Delivered when the peer has a connection here (not
                    // just lingering in its grace) or on another node.
                    delivered = self.online.get(&peer).is_some_and(|c| !c.is_empty())
                        || self.shown_elsewhere(peer);
                    n
                }
            };
            cx.out.metrics().deliveries += n;
            if !pending.mentions.is_empty() {
                self.send_mentions(cx, id, &pending);
            }
        }
        for (conn, client_id) in &pending.waiters {
            if !cx.out.is_live(*conn) {
                continue;
            }
            let cid = client_id.as_deref();
            if let Stored::Refused = stored {
                let e = Out::Error {
                    code: "invalid_input",
                    message: "reply_to must be a message of the same room or conversation",
                    client_id: cid,
                };
                cx.out.reply(conn.token, self.encoder.bytes(&e));
                continue;
            }
            if let Stored::No { transient } = stored {
                let e = if transient {
                    Out::Error {
                        code: "busy",
                        message: "the server is busy; retry with the same client_id",
                        client_id: cid,
                    }
                } else {
                    Out::Error {
                        code: "internal",
                        message: "the message could not be stored; retry with the same client_id",
                        client_id: cid,
                    }
                };
                cx.out.reply(conn.token, self.encoder.bytes(&e));
                continue;
            }
            let ack = Out::Ack {
                client_id: cid,
                id: ack_id,
                timestamp: Ts(ack_ts),
            };
            cx.out.reply(conn.token, self.encoder.bytes(&ack));
            if delivered {
                cx.out.reply(
                    conn.token,
                    self.encoder.bytes(&Out::Delivered { id: ack_id }),
                );
            }
        }
        if let Delivery::Room(room) = pending.delivery {
            self.rooms.collect(room);
        }
    }

    /// The `mention` frame, once, to every connection of each user the
    /// message names (on every node), joined to the room or not.
    fn send_mentions(&mut self, cx: &mut Ctx<'_, impl Outbox>, id: MsgId, pending: &PendingAck) {
        let user = cx.users.name(pending.from);
        let (room, from, to) = match pending.delivery {
            Delivery::Room(room) => (Some(&*self.rooms.get(room).name), None, None),
            Delivery::Private { peer } => (None, Some(user), Some(cx.users.name(peer))),
        };
        let frame = self.encoder.shared(&Out::Mention {
            message: MessageObj {
                id,
                room,
                from,
                to,
                user,
                content: &pending.content,
                timestamp: Ts(pending.timestamp_ms),
                reply_to: pending.reply_to,
                edited_at: None,
                reactions: Vec::new(),
            },
        });
        for &u in &pending.mentions {
            self.publish(Topic::User(u), Except::Nobody, None, &frame, cx.out);
        }
    }

    fn on_typing(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        token: Token,
        room: Option<&str>,
        typing: bool,
    ) -> Result<(), FrameError> {
        let (user, _) = self.user_of(token)?;
        let id = self.joined_room(token, room)?;
        let room = &self.rooms.get(id).name;
        let name = cx.users.name(user);
        let frame = if typing {
            Out::Typing { room, user: name }
        } else {
            Out::StopTyping { room, user: name }
        };
        let frame = self.encoder.shared(&frame);
        // Not to the typist's own other tabs: nobody needs to see themselves type.
        self.publish(Topic::Room(id), Except::User(user), None, &frame, cx.out);
        Ok(())
    }

    fn on_history_request(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        token: Token,
        f: &ClientFrame<'_>,
    ) -> Result<(), FrameError> {
        let (user, conn) = self.user_of(token)?;
        let limit = history_limit(f.limit);
        let target = match (f.room.as_deref(), f.with.as_deref()) {
            (Some(room), None) => match self.may_read(user, room) {
                Ok(_) => Target::Room(room.to_string()),
                Err(Denied::BadName) => {
                    return Err(FrameError::new("invalid_input", ROOM_NAME_RULE));
                }
                Err(Denied::Private) => {
                    return Err(FrameError::new("forbidden", format!("{room} is private")));
                }
            },
            (None, Some(with)) => {
                let peer = cx.users.find(with).ok_or_else(|| {
                    FrameError::new("no_such_user", format!("no user called {}", echo(with)))
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
        let reserved = self.claim_reservation();
        let ticket = self.park(Wait::History {
            conn,
            target,
            reserved,
        });
        cx.store
            .submit(Request::History { ticket, query })
            .map_err(|_| {
                self.waiting.remove(&ticket);
                self.release_read(conn, reserved);
                FrameError::new("busy", "the server is busy; ask again shortly")
            })
    }

    /// A history page for a `history` frame.
    fn send_history(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        target: &Target,
        messages: Option<Vec<StoredMessage>>,
    ) {
        if !cx.out.is_live(conn) {
            return;
        }
        let Some(messages) = messages else {
            let e = FrameError::new("internal", "could not read history");
            return self.send_error(cx.out, conn.token, &e, None);
        };
        let (room, with) = match target {
            Target::Room(r) => (Some(r.as_str()), None),
            Target::Direct(_, peer) => (None, Some(cx.users.name(*peer))),
        };
        let frame = Out::History {
            room,
            with,
            messages: message_objects(&messages, |id| cx.users.name(id)),
        };
        cx.out.reply(conn.token, self.encoder.bytes(&frame));
    }

    /// A storage read the hub asked for came back (`None`: it failed).
    pub fn on_history(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        ticket: crate::store::Ticket,
        messages: Option<Vec<StoredMessage>>,
    ) {
        match self.waiting.remove(&ticket) {
            Some(Wait::History {
                conn,
                target,
                reserved,
            }) => {
                self.send_history(cx, conn, &target, messages);
                self.release_read(conn, reserved);
            }
            Some(Wait::Replay {
                conn,
                room,
                reserved,
            }) => {
                self.finish_replay(cx, conn, &room, messages);
                self.release_read(conn, reserved);
            }
            Some(Wait::Catchup { key }) => return self.on_catchup(cx, key, messages),
            Some(_) | None => return,
        }
        self.retry_deferred(cx);
    }

    fn on_read(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        token: Token,
        f: &ClientFrame<'_>,
    ) -> Result<(), FrameError> {
        let (user, conn) = self.user_of(token)?;
        let id = f
            .id
            .filter(|id| (1..=self.last_msg_id).contains(id))
            .ok_or_else(|| FrameError::new("invalid_input", "id must be the id of a message"))?;
        if f.room.is_some() {
            // A room read marker makes this user's unread counts worth asking for.
            cx.users.mark_unread_source(user);
        }
        match (f.room.as_deref(), f.with.as_deref()) {
            (Some(room), None) => {
                // No `join` needed (contract): marking a room read from a
                // connection that only shows the sidebar is normal.
                let room_id = self.readable_room(user, room)?;
                let _ = cx.store.submit(Request::MarkRead {
                    user,
                    target: Target::Room(room.to_string()),
                    id,
                });
                let frame = self.encoder.shared(&Out::Read {
                    room: Some(room),
                    with: None,
                    user: cx.users.name(user),
                    id,
                });
                self.publish(
                    Topic::Room(room_id),
                    Except::Conn(conn),
                    None,
                    &frame,
                    cx.out,
                );
            }
            (None, Some(with)) => {
                let peer = cx.users.find(with).ok_or_else(|| {
                    FrameError::new("no_such_user", format!("no user called {}", echo(with)))
                })?;
                let (peer_id, peer_name) = (peer.id, &*peer.name);
                let _ = cx.store.submit(Request::MarkRead {
                    user,
                    target: Target::Direct(user, peer_id),
                    id,
                });
                let me = cx.users.name(user);
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
                self.publish(
                    Topic::User(peer_id),
                    Except::Conn(conn),
                    None,
                    &to_peer,
                    cx.out,
                );
                if peer_id != user {
                    self.publish(
                        Topic::User(user),
                        Except::Conn(conn),
                        None,
                        &to_self,
                        cx.out,
                    );
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
