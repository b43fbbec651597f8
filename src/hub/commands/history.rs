//! `history`: a page of a room's or a conversation's messages, read from
//! storage (its reply reserved against the read budgets, `reads.rs`) and
//! answered with one `history` frame.

use crate::hub::command::{Conversation, FrameError, History};
use crate::hub::parts::{Ctx, Denied, Parts};
use crate::hub::sessions::Caller;
use crate::hub::waits::Wait;
use crate::outbox::{ConnRef, Outbox};
use crate::store::{HistoryQuery, Request, StoredMessage, Target};
use crate::ws::proto::{Out, echo, message_objects};

pub fn on_history(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    me: Caller,
    frame: History<'_>,
) -> Result<(), FrameError> {
    let History { of, before, limit } = frame;
    let target = match of {
        Conversation::Room(room) => {
            if parts.may_read(me.user, &room) == Err(Denied::Private) {
                let e = FrameError::new("forbidden", format!("{} is private", &*room));
                return Err(e);
            }
            Target::Room(room.to_string())
        }
        Conversation::With(with) => {
            let peer = cx.users.find(&with).ok_or_else(|| {
                FrameError::new("no_such_user", format!("no user called {}", echo(&with)))
            })?;
            Target::Direct(me.user, peer.id)
        }
    };
    let query = HistoryQuery {
        target: target.clone(),
        reader: me.user,
        before,
        after: None,
        limit,
        offset: 0,
    };
    let reserved = parts.reads.claim();
    let ticket = parts.waits.park(Wait::History {
        conn: me.conn,
        target,
        reserved,
    });
    cx.store
        .submit(Request::History { ticket, query })
        .map_err(|_| {
            parts.waits.cancel(ticket);
            parts.reads.release(me.conn, reserved);
            FrameError::new("busy", "the server is busy; ask again shortly")
        })
}

/// The page came back (`None`: the read failed): it goes to the asking
/// connection, if it is still there, and its reservation is released.
pub fn on_history_read(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    conn: ConnRef,
    target: &Target,
    reserved: usize,
    messages: Option<Vec<StoredMessage>>,
) {
    parts.reads.release(conn, reserved);
    if !cx.out.is_live(conn) {
        return;
    }
    let Some(messages) = messages else {
        let e = FrameError::new("internal", "could not read history");
        return parts.send_error(cx.out, conn.token, &e, None);
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
    cx.out.reply(conn.token, parts.encoder.bytes(&frame));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::hub::tests::{ALICE, BOB, Bench};

    /// `history` is read from storage and answered with one page, oldest
    /// first: of a room (no `join` needed), or of a conversation, named as
    /// the asker sees it; a private room's outsider is refused unread.
    #[test]
    fn history_pages_what_the_caller_may_read() {
        let mut b = Bench::new();
        let a = b.open(1, ALICE);
        let bob = b.open(2, BOB);
        b.send(a, json!({"type": "join", "room": "general"}));
        for content in ["m1", "m2", "m3"] {
            b.send(
                a,
                json!({"type": "message", "room": "general", "content": content}),
            );
        }
        b.send(
            a,
            json!({"type": "private_message", "to": "bob", "content": "psst"}),
        );
        b.settle();
        b.out.clear();
        b.send(
            bob,
            json!({"type": "history", "room": "general", "limit": 2}),
        );
        b.send(bob, json!({"type": "history", "with": "alice"}));
        assert!(b.frames(bob).is_empty(), "read from storage first");
        b.settle();
        let pages = b.of_type(bob, "history");
        let contents = |i: usize| -> Vec<_> {
            let messages = pages[i]["messages"].as_array().unwrap();
            messages.iter().map(|m| m["content"].clone()).collect()
        };
        assert_eq!(pages[0]["room"], "general");
        assert_eq!(contents(0), [json!("m2"), json!("m3")]);
        assert_eq!(pages[1]["with"], "alice");
        assert_eq!(contents(1), [json!("psst")]);
        b.send(
            a,
            json!({"type": "create_room", "room": "ops", "private": true}),
        );
        b.settle();
        b.send(bob, json!({"type": "history", "room": "ops"}));
        assert_eq!(b.of_type(bob, "error")[0]["code"], "forbidden");
    }
}
