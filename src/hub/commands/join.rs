//! `join`: subscribe this connection to a room, public or private with
//! membership. The joiner gets `online_users`; with `since`, first every
//! stored message of the room after it (read from storage, live frames
//! held meanwhile: `presence::finish_replay`). The room's other
//! connections see `join` when this is the user's first connection in it.

use crate::config::{MAX_REPLAY, MAX_ROOMS_PER_CONN};
use crate::hub::command::{FrameError, Join, RoomName};
use crate::hub::parts::{Ctx, Parts};
use crate::hub::presence;
use crate::hub::sessions::Caller;
use crate::hub::waits::Wait;
use crate::outbox::Outbox;
use crate::store::{HistoryQuery, MsgId, Request, Target};

pub fn on_join(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    me: Caller,
    frame: Join<'_>,
) -> Result<(), FrameError> {
    let Join { room, since } = frame;
    join(parts, cx, me, &room, since)
}

/// Joins `me` to `room`: for a `join` frame, and for the room in a
/// connection's URL, the creator of a private room once it is stored, and
/// a `join` that waited for a room lookup.
pub fn join(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    me: Caller,
    room: &RoomName<'_>,
    since: Option<MsgId>,
) -> Result<(), FrameError> {
    let name: &str = room;
    let private = || FrameError::new("forbidden", format!("{name} is private"));
    if parts.rooms.is_being_created(name) {
        // A private room whose row is being stored: not a public room to open.
        return Err(private());
    }
    let known = parts.rooms.id(name);
    let session = parts
        .sessions
        .get(me.token())
        .ok_or_else(|| FrameError::new("invalid_input", "no session"))?;
    let (joined, already) = (
        session.rooms().len(),
        known.is_some_and(|id| session.is_in(id)),
    );
    match known {
        Some(id) if !parts.rooms.get(id).admits(me.user) => return Err(private()),
        Some(id) if already => {
            presence::send_online_users(parts, cx, me.token(), id, None);
            return Ok(());
        }
        Some(_) => {}
        None if parts.cluster.is_some() => {
            // Another node may have created it as private a moment ago (its
            // note still on the way): storage says, before anyone is let in.
            return parts
                .look_up_room(cx.store, name, Some((me.conn, since)), false)
                .map_err(|_| FrameError::new("busy", "the server is busy; join again shortly"));
        }
        None => {}
    }
    if joined >= MAX_ROOMS_PER_CONN {
        return Err(FrameError::new(
            "invalid_input",
            format!("at most {MAX_ROOMS_PER_CONN} rooms per connection"),
        ));
    }
    let id = parts.rooms.open(name);
    if let Some(after) = since {
        let query = HistoryQuery {
            target: Target::Room(name.to_string()),
            reader: me.user,
            before: Some(parts.acks.newest() + 1),
            after: Some(after),
            limit: MAX_REPLAY + 1,
            offset: 0,
        };
        let reserved = parts.reads.claim();
        let ticket = parts.waits.park(Wait::Replay {
            conn: me.conn,
            room: name.into(),
            reserved,
        });
        if cx.store.submit(Request::History { ticket, query }).is_err() {
            parts.waits.cancel(ticket);
            parts.reads.release(me.conn, reserved);
            parts.rooms.collect(id);
            return Err(FrameError::new(
                "busy",
                "the server is busy; join again shortly",
            ));
        }
    }
    presence::enter(parts, cx, me.conn, me.user, id, since.is_some());
    if since.is_none() {
        presence::send_online_users(parts, cx, me.token(), id, None);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::hub::tests::{ALICE, BOB, Bench};

    /// `join` tells others only on a user's first connection in the room,
    /// `leave` only on the last; `online_users` counts users, not connections.
    #[test]
    fn join_and_leave_follow_presence() {
        let mut b = Bench::new();
        let a = b.open(1, ALICE);
        let b1 = b.open(2, BOB);
        let b2 = b.open(3, BOB);
        b.send(a, json!({"type": "join", "room": "general"}));
        let online = b.of_type(a, "online_users").pop().unwrap();
        assert_eq!(
            online,
            json!({"type": "online_users", "room": "general", "users": ["alice"], "count": 1})
        );
        b.send(b1, json!({"type": "join", "room": "general"}));
        b.send(b2, json!({"type": "join", "room": "general"}));
        assert_eq!(b.of_type(a, "join").len(), 1, "bob's second tab is no news");
        assert_eq!(b.of_type(b2, "online_users")[0]["count"], 2);
        b.send(b1, json!({"type": "leave", "room": "general"}));
        assert!(b.of_type(a, "leave").is_empty());
        b.close(b2);
        let leave = b.of_type(a, "leave");
        assert_eq!(
            leave,
            [json!({"type": "leave", "room": "general", "user": "bob"})]
        );
        b.send(b1, json!({"type": "leave", "room": "general"}));
        assert_eq!(b.of_type(b1, "error")[0]["code"], "not_member");
    }

    /// `join … since` replays what was stored, then `online_users` with
    /// `recovered`, then the live frames that arrived while storage was read.
    #[test]
    fn replay_then_held_live_frames() {
        let mut b = Bench::new();
        let a = b.open(1, ALICE);
        b.send(a, json!({"type": "join", "room": "general"}));
        for i in 1..=3 {
            b.send(
                a,
                json!({"type": "message", "room": "general", "content": format!("m{i}")}),
            );
        }
        b.settle();
        let bob = b.open(2, BOB);
        b.out.clear();
        b.send(bob, json!({"type": "join", "room": "general", "since": 1}));
        assert!(b.frames(bob).is_empty(), "nothing until the replay is read");
        b.send(
            a,
            json!({"type": "message", "room": "general", "content": "live"}),
        );
        assert!(b.frames(bob).is_empty(), "live frames are held");
        b.settle();
        let got: Vec<(String, Value)> = b
            .frames(bob)
            .into_iter()
            .map(|v| {
                (
                    v["type"].as_str().unwrap().to_string(),
                    v["content"].clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("message".into(), json!("m2")),
                ("message".into(), json!("m3")),
                ("online_users".into(), Value::Null),
                ("message".into(), json!("live")),
            ]
        );
        assert_eq!(b.of_type(bob, "online_users")[0]["recovered"], true);
    }

    /// A message stored while a replay is being read is in the replay and is
    /// not delivered a second time as a live frame.
    #[test]
    fn replay_does_not_repeat_a_message_committed_meanwhile() {
        let mut b = Bench::new();
        let a = b.open(1, ALICE);
        b.send(a, json!({"type": "join", "room": "general"}));
        b.send(
            a,
            json!({"type": "message", "room": "general", "content": "racing"}),
        );
        let bob = b.open(2, BOB);
        b.send(bob, json!({"type": "join", "room": "general", "since": 0}));
        b.settle();
        let got: Vec<_> = b
            .of_type(bob, "message")
            .iter()
            .map(|m| m["content"].clone())
            .collect();
        assert_eq!(got, [json!("racing")]);
    }
}
