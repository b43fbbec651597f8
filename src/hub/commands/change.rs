//! What `edit`, `delete` and `react` share. The loop keeps no messages, so
//! it cannot tell who wrote message 42 or where it lives. Storage can, and
//! checks the rule in the same transaction that applies the change
//! (`Request::EditMessage` and its siblings): the author edits; the author
//! or the private room's owner deletes; whoever may read the message
//! reacts. There is no window between the check and the write for another
//! node to slip a change into. The answer (`Reply::Changed`) says where the
//! message lives, and only then is the frame encoded once and published
//! ([`on_changed`]): to the room's subscribers, or to both users of a
//! conversation, on every node.
//!
//! The connection that asked gets the frame too, as its confirmation,
//! whether or not it has joined the room, and exactly once: the publish
//! skips it, and it gets the same bytes as a reply.
//!
//! Admitted: a change is not sequenced like a message. On another node it
//! can overtake the message it changes when that message is still waiting
//! there for a predecessor (a gap of at most `GAP_WAIT_MS`); a client that
//! gets a change for an id it does not have yet ignores it, and `history`
//! shows the message as it is now.

use std::rc::Rc;

use crate::config::{MAX_REACTION_KINDS, MAX_REACTIONS};
use crate::hub::command::FrameError;
use crate::hub::fanout::{self, Except, Topic};
use crate::hub::parts::{Ctx, Parts};
use crate::hub::sessions::Caller;
use crate::hub::waits::{Asked, Wait};
use crate::outbox::{ConnRef, Outbox};
use crate::store::{Change, ChangeKind, Refusal, Request, Ticket, UserId};
use crate::ws::proto::{Out, Place, Ts};

/// Parks the change (storage answers `Changed`) and submits the request
/// `make` builds for the caller's user.
pub fn submit_change(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    me: Caller,
    asked: Asked,
    make: impl FnOnce(Ticket, UserId) -> Request,
) -> Result<(), FrameError> {
    let ticket = parts.waits.park(Wait::Change {
        conn: me.conn,
        asked,
    });
    cx.store.submit(make(ticket, me.user)).map_err(|_| {
        parts.waits.cancel(ticket);
        FrameError::new("busy", "the server is busy; try again shortly")
    })
}

/// Storage applied the change or refused it.
pub fn on_changed(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    conn: ConnRef,
    asked: Asked,
    outcome: Result<Change, Refusal>,
) {
    let change = match outcome {
        Ok(change) => change,
        Err(refusal) => {
            if cx.out.is_live(conn) {
                parts.send_error(cx.out, conn.token, &refusal_error(asked, refusal), None);
            }
            return;
        }
    };
    let users = &*cx.users;
    let (from, to) = match change.to {
        Some(to) => (Some(users.name(change.from)), Some(users.name(to))),
        None => (None, None),
    };
    let place = Place {
        room: change.room.as_deref(),
        from,
        to,
    };
    let frame = match &change.what {
        ChangeKind::Edited { content, at_ms } => Out::MessageEdited {
            id: change.id,
            place,
            content,
            edited_at: Ts(*at_ms),
        },
        ChangeKind::Deleted => Out::MessageDeleted {
            id: change.id,
            place,
        },
        ChangeKind::Reacted { emoji, user, on } => Out::Reaction {
            id: change.id,
            place,
            emoji,
            user: users.name(*user),
            on: *on,
        },
    };
    let frame = parts.encoder.shared(&frame);
    let n = publish(parts, cx, &change, conn, &frame);
    cx.out.metrics().deliveries += n;
    if cx.out.is_live(conn) {
        cx.out.frame(conn.token, &frame);
    }
}

/// A change storage could not apply (the database failed).
pub fn on_change_failed(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>, conn: ConnRef) {
    if cx.out.is_live(conn) {
        let e = FrameError::new("busy", "the change could not be saved; try again");
        parts.send_error(cx.out, conn.token, &e, None);
    }
}

/// The change's frame to whoever may read the message and is subscribed,
/// here and on every node, except the asking connection.
fn publish(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    change: &Change,
    asker: ConnRef,
    frame: &Rc<[u8]>,
) -> u64 {
    let except = Except::Conn(asker);
    match (&change.room, change.to) {
        (Some(room), _) => fanout::publish_room_named(parts, room, except, frame, cx.out),
        (None, Some(to)) => {
            let topic = Topic::Conversation(change.from, to);
            fanout::publish(parts, topic, except, frame, cx.out)
        }
        (None, None) => 0,
    }
}

/// The `error` a refused change gets.
fn refusal_error(asked: Asked, refusal: Refusal) -> FrameError {
    match (refusal, asked) {
        (Refusal::NoSuchMessage, _) => FrameError::new("invalid_input", "no such message"),
        (Refusal::Forbidden, Asked::Edit) => {
            FrameError::new("forbidden", "only its author may edit a message")
        }
        (Refusal::Forbidden, Asked::Delete) => FrameError::new(
            "forbidden",
            "only its author or the private room's owner may delete a message",
        ),
        (Refusal::Forbidden, Asked::React) => {
            FrameError::new("forbidden", "you may not read that message")
        }
        (Refusal::Archived, _) => FrameError::new(
            "forbidden",
            "this room is archived: its messages can no longer be edited or reacted to",
        ),
        (Refusal::TooManyReactions, _) => FrameError::new(
            "invalid_input",
            format!(
                "a message may carry {MAX_REACTION_KINDS} different emoji and \
                 {MAX_REACTIONS} reactions in all"
            ),
        ),
    }
}
