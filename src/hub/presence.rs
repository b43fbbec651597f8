//! Presence: what everyone is told when connections come and go. A user's
//! first connection makes them `online` (to everyone) and their first in a
//! room a `join` (to the room); their last, after the presence grace,
//! `leave` and `offline`. Also the frames a connection gets for itself
//! about rooms: `online_users`, a `since` replay with what was held during
//! it, and `unread` after connect.
//!
//! The bookkeeping is the sessions and rooms parts'; this file decides what
//! it means for everyone else, here and (through notes) on other nodes.

use std::borrow::Cow;

use mio::Token;

use super::fanout::{self, Except, Topic};
use super::parts::{Ctx, Parts};
use super::rooms::RoomId;
use super::waits::Wait;
use super::wire::Note;
use crate::clock;
use crate::config::{MAX_REPLAY, MAX_REPLY_BYTES};
use crate::outbox::{ConnRef, Outbox};
use crate::store::{Request, StoredMessage, UnreadCount, UserId};
use crate::ws::proto::{Out, Ts, UnreadEntry, stored_frame};

/// A chat connection opened for `user`: everyone hears they are online if
/// this is news, and storage is asked for their `unread` counts.
pub fn open_session(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    conn: ConnRef,
    user: UserId,
    url_room: Option<&str>,
) {
    // A user lingering in their grace is still shown online: coming back
    // within it is not news.
    if parts.sessions.open(conn, user, url_room) {
        set_status(parts, cx, user, "online");
    }
    parts.pacing.forget(user);
    // In a cluster another node may have made something unread (the flag
    // is this node's knowledge only): always ask there.
    let ask = parts.cluster.is_some() || cx.users.get(user).is_some_and(|u| u.unread_sources);
    let ticket = parts.waits.park(Wait::Unread { conn });
    if !ask || cx.store.submit(Request::Unread { ticket, user }).is_err() {
        parts.waits.cancel(ticket);
        send_unread(parts, cx, conn, &[]);
    }
}

/// A chat connection is going away: it leaves its rooms, and its user may
/// go offline. A connection that went away (not a `leave`) lingers: its
/// user stays shown for the presence grace, so a reload or a network blip
/// that reconnects within it changes nothing anyone sees. Called once per
/// connection, from the reactor's close pass.
pub fn close_session(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>, token: Token) {
    let Some(session) = parts.sessions.close(token) else {
        return;
    };
    let user = session.user();
    parts.reads.forget(session.conn());
    if parts.sessions.is_quiet() {
        for &room in session.rooms() {
            parts.rooms.get_mut(room).unsubscribe(token, user, false);
        }
        if parts.sessions.drop_conn(user, token, false) {
            let _ = cx.store.submit(Request::SetLastSeen {
                user,
                at_ms: clock::now_ms(),
            });
        }
        return;
    }
    let until = parts.sessions.grace_deadline();
    for &room in session.rooms() {
        let last = parts
            .rooms
            .get_mut(room)
            .unsubscribe(token, user, until.is_some());
        if last == Some(true) {
            match until {
                Some(until) => {
                    let name = parts.rooms.get(room).name().into();
                    parts.sessions.linger(until, user, Some(name));
                }
                None => announce_leave(parts, cx, user, room),
            }
        }
        parts.rooms.collect(room);
    }
    if parts.sessions.drop_conn(user, token, until.is_some()) {
        match until {
            Some(until) => parts.sessions.linger(until, user, None),
            None => set_status(parts, cx, user, "offline"),
        }
    }
}

/// Ends the graces that are over (once a second, from the tick): a user
/// still gone leaves the rooms they lingered in, then goes offline. All of
/// a tick's changes go out together; a user who came back in time costs
/// nothing.
pub fn end_graces(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>) {
    let now = clock::now_ms();
    while let Some((user, room)) = parts.sessions.next_grace_over(now) {
        match room {
            Some(name) => {
                let Some(id) = parts.rooms.id(&name) else {
                    continue;
                };
                if parts.rooms.get_mut(id).end_linger(user) {
                    announce_leave(parts, cx, user, id);
                    parts.rooms.collect(id);
                }
            }
            None => {
                if parts.sessions.end_grace(user) {
                    set_status(parts, cx, user, "offline");
                }
            }
        }
    }
}

/// `user` is in room `id` on this node, by `conn`, from now on: the other
/// nodes are told if this is the user's first connection in it, and the
/// room's other connections see `join` unless the user is in it elsewhere.
pub fn enter(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    conn: ConnRef,
    user: UserId,
    id: RoomId,
    replaying: bool,
) {
    let first = parts
        .rooms
        .get_mut(id)
        .subscribe(conn.token, user, replaying);
    if let Some(s) = parts.sessions.get_mut(conn.token) {
        s.join(id);
    }
    if !first {
        return;
    }
    let room = parts.rooms.get(id);
    let (name, elsewhere) = (room.name().to_owned(), room.is_elsewhere(user));
    parts.note(&Note::Entered {
        room: Cow::Borrowed(&name),
        user,
    });
    if !elsewhere {
        let frame = parts.encoder.shared(&Out::Join {
            room: &name,
            user: cx.users.name(user),
        });
        fanout::deliver(
            parts,
            Topic::Room(id),
            Except::Conn(conn),
            None,
            &frame,
            cx.out,
        );
    }
}

/// Removes a connection from a room (the session has left it already);
/// presence `leave` on the user's last.
pub fn unsubscribe(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    token: Token,
    user: UserId,
    id: RoomId,
) {
    if parts.rooms.get_mut(id).unsubscribe(token, user, false) == Some(true) {
        announce_leave(parts, cx, user, id);
    }
    parts.rooms.collect(id);
}

/// `user` is no longer in the room on this node: the other nodes are
/// told, and the room's connections here see `leave` unless the user is
/// still in it on another node.
fn announce_leave(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>, user: UserId, id: RoomId) {
    let room = parts.rooms.get(id);
    let (name, elsewhere) = (room.name().to_owned(), room.is_elsewhere(user));
    parts.note(&Note::Left {
        room: Cow::Borrowed(&name),
        user,
    });
    if elsewhere {
        return;
    }
    let frame = parts.encoder.shared(&Out::Leave {
        room: &name,
        user: cx.users.name(user),
    });
    fanout::deliver(parts, Topic::Room(id), Except::Nobody, None, &frame, cx.out);
}

/// Records `last_seen`, tells the other nodes, and tells every connection
/// here unless another node already shows the user so.
fn set_status(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    user: UserId,
    status: &'static str,
) {
    // Best effort: a full queue only loses a last-seen time.
    let _ = cx.store.submit(Request::SetLastSeen {
        user,
        at_ms: clock::now_ms(),
    });
    parts.note(&match status {
        "online" => Note::Online { user },
        _ => Note::Offline { user },
    });
    if !parts.shown_elsewhere(user) {
        show_status(parts, cx, user, status);
    }
}

/// `user_status` to this node's connections (the node that saw the
/// change stored `last_seen`).
pub fn show_status(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    user: UserId,
    status: &'static str,
) {
    let now = clock::now_ms();
    let Some(u) = cx.users.get_mut(user) else {
        return;
    };
    u.last_seen_ms = Some(now);
    let frame = parts.encoder.shared(&Out::UserStatus {
        user: &u.name,
        status,
        last_seen: Ts(now),
    });
    fanout::deliver(parts, Topic::Everyone, Except::Nobody, None, &frame, cx.out);
}

/// `online_users` for one connection.
pub fn send_online_users(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    token: Token,
    id: RoomId,
    recovered: Option<bool>,
) {
    let room = parts.rooms.get(id);
    let mut users: Vec<&str> = room.shown().map(|u| cx.users.name(u)).collect();
    users.sort_unstable();
    let frame = Out::OnlineUsers {
        room: room.name(),
        count: users.len(),
        users,
        recovered,
    };
    cx.out.reply(token, parts.encoder.bytes(&frame));
}

/// The replay for `join … since` came back: send it, then `online_users`,
/// then what arrived live meanwhile.
pub fn finish_replay(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    conn: ConnRef,
    room: &str,
    mut messages: Option<Vec<StoredMessage>>,
) {
    let token = conn.token;
    let Some(id) = parts.rooms.id(room) else {
        return;
    };
    let joined = parts
        .sessions
        .get(token)
        .is_some_and(|s| s.conn() == conn && s.is_in(id));
    if !joined || !parts.rooms.get(id).is_replaying(token) || !cx.out.is_live(conn) {
        return;
    }
    // In a cluster the replay may hold messages the bus has not brought
    // here yet: it waits for them, or their live copies would repeat it.
    if let Some(c) = &mut parts.cluster
        && c.replay_must_wait(conn, room, &mut messages, clock::now_ms())
    {
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
        let frame = parts.encoder.bytes(&stored_frame(m, &|u| users.name(u)));
        bytes += frame.len();
        if bytes > MAX_REPLY_BYTES {
            missed_more = true;
            break;
        }
        frames.push(frame.to_vec());
    }
    for frame in frames.iter().rev() {
        cx.out.reply(token, frame);
    }
    // Held live messages the replay already carried are not sent twice
    // (a message committed while the replay was being read is in both).
    let replayed_up_to = messages.last().map_or(0, |m| m.id);
    let Some(session) = parts.sessions.get_mut(token) else {
        return;
    };
    let (held, overflow) = session.take_held(id, replayed_up_to);
    let recovered = !(failed || missed_more || overflow);
    send_online_users(parts, cx, token, id, Some(recovered));
    for frame in &held {
        cx.out.frame(token, frame);
    }
    parts.rooms.get_mut(id).finish_replay(token);
}

/// The `unread` frame after connect.
pub fn send_unread(
    parts: &mut Parts,
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
        .reply(conn.token, parts.encoder.bytes(&Out::Unread { counts }));
}
