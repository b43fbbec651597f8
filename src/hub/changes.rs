//! Changes to stored messages: `edit`, `delete` and `react`.
//!
//! The loop keeps no messages, so it cannot tell who wrote message 42 or
//! where it lives. Storage can, and checks the rule in the same transaction
//! that applies the change (`Request::EditMessage` and its siblings): the
//! author edits; the author or the private room's owner deletes; whoever
//! may read the message reacts. There is no window between the check and
//! the write for another node to slip a change into. The answer
//! (`Reply::Changed`) says where the message lives, and only then is the
//! frame encoded once and published: to the room's subscribers, or to both
//! users of a conversation, on every node.
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

use mio::Token;

use super::fanout::{Except, Topic};
use super::presence::FrameError;
use super::{Ctx, Hub, Wait};
use crate::clock;
use crate::config::{MAX_EMOJI_BYTES, MAX_REACTION_KINDS, MAX_REACTIONS};
use crate::outbox::{ConnRef, Outbox};
use crate::store::{Change, ChangeKind, Refusal, Request, Ticket};
use crate::ws::proto::{ClientFrame, Out, Place, Ts};

/// Which change a parked request is, for its error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Edit,
    Delete,
    React,
}

/// A reaction: `:name:` (1-30 of `[a-z0-9_+-]`, as Slack and Discord name
/// theirs), or exactly one emoji ([`is_one_emoji`]), 1-32 bytes either way.
pub fn check_emoji(emoji: Option<&str>) -> Result<&str, FrameError> {
    let e = emoji.ok_or_else(|| FrameError::new("invalid_input", "emoji is required"))?;
    let named = e.len() >= 3
        && e.starts_with(':')
        && e.ends_with(':')
        && e[1..e.len() - 1].bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'+' | b'-')
        });
    if e.len() > MAX_EMOJI_BYTES || !(named || is_one_emoji(e)) {
        return Err(FrameError::new(
            "invalid_input",
            format!("emoji must be one emoji or a :name:, at most {MAX_EMOJI_BYTES} bytes"),
        ));
    }
    Ok(e)
}

/// A character that is (or begins) a pictograph: the emoji blocks of
/// Unicode, the older symbol blocks emoji were drawn from, the few Latin-1
/// and letterlike symbols with emoji forms, and the keycap bases.
fn is_emoji_base(c: char) -> bool {
    matches!(c as u32,
        0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2300..=0x23FF | 0x2B00..=0x2BFF
        | 0x2190..=0x21FF | 0x25A0..=0x25FF | 0x2100..=0x214F | 0x2934 | 0x2935
        | 0x3030 | 0x303D | 0x3297 | 0x3299 | 0x00A9 | 0x00AE | 0x203C | 0x2049 | 0x24C2)
        || c.is_ascii_digit()
        || matches!(c, '#' | '*')
}

/// What may follow a base inside one emoji: variation selectors, the
/// keycap mark, skin tones (in the base range, so accepted as bases too)
/// and tag characters (subdivision flags).
fn is_emoji_modifier(c: char) -> bool {
    matches!(c as u32, 0xFE0E | 0xFE0F | 0x20E3 | 0xE0020..=0xE007F)
}

fn is_regional_indicator(c: char) -> bool {
    matches!(c as u32, 0x1F1E6..=0x1F1FF)
}

const ZWJ: char = '\u{200D}';

/// Whether `s` is one emoji: a base, then modifiers, then more bases only
/// through a zero-width joiner (👩‍💻), or two regional indicators (a
/// flag). Not the full Unicode emoji grammar, but it refuses what matters:
/// text, markup, whitespace, several emoji in a row, and ASCII digits or
/// `#` that are not keycaps.
pub fn is_one_emoji(s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    let Some(&first) = chars.first() else {
        return false;
    };
    if !is_emoji_base(first) {
        return false;
    }
    if first.is_ascii() {
        // A keycap: 1️⃣ is '1', an optional FE0F, then U+20E3.
        return matches!(chars[1..], ['\u{20E3}'] | ['\u{FE0F}', '\u{20E3}']);
    }
    let mut after_zwj = false;
    let mut regional = usize::from(is_regional_indicator(first));
    for &c in &chars[1..] {
        if c == ZWJ {
            if after_zwj {
                return false;
            }
            after_zwj = true;
        } else if is_emoji_modifier(c) {
            if after_zwj {
                return false;
            }
        } else if is_regional_indicator(c) && regional == 1 && !after_zwj {
            regional = 2;
        } else if is_emoji_base(c) && !c.is_ascii() {
            // Skin tones modify the base before them; anything else is a
            // second emoji unless a joiner came first.
            let tone = matches!(c as u32, 0x1F3FB..=0x1F3FF);
            if !(after_zwj || tone) {
                return false;
            }
            after_zwj = false;
        } else {
            return false;
        }
    }
    !after_zwj && regional != 1
}

/// The message id a change frame names.
fn message_id(f: &ClientFrame<'_>) -> Result<u64, FrameError> {
    f.id.filter(|id| *id > 0)
        .ok_or_else(|| FrameError::new("invalid_input", "id must be the id of a message"))
}

impl Hub {
    pub(super) fn on_edit(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        token: Token,
        f: &ClientFrame<'_>,
    ) -> Result<(), FrameError> {
        let id = message_id(f)?;
        let content = super::frames::check_content(f.content.as_deref())?.to_string();
        self.submit_change(cx, token, Kind::Edit, |ticket, user| Request::EditMessage {
            ticket,
            id,
            user,
            content,
            at_ms: clock::now_ms(),
        })
    }

    pub(super) fn on_delete(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        token: Token,
        f: &ClientFrame<'_>,
    ) -> Result<(), FrameError> {
        let id = message_id(f)?;
        self.submit_change(cx, token, Kind::Delete, |ticket, user| {
            Request::DeleteMessage {
                ticket,
                id,
                user,
                at_ms: clock::now_ms(),
            }
        })
    }

    pub(super) fn on_react(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        token: Token,
        f: &ClientFrame<'_>,
    ) -> Result<(), FrameError> {
        let id = message_id(f)?;
        let emoji = check_emoji(f.emoji.as_deref())?.to_string();
        self.submit_change(cx, token, Kind::React, |ticket, user| Request::React {
            ticket,
            id,
            user,
            emoji,
        })
    }

    /// Parks the change (storage answers `Changed`) and submits the request
    /// `make` builds for the connection's user.
    fn submit_change(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        token: Token,
        kind: Kind,
        make: impl FnOnce(Ticket, crate::store::UserId) -> Request,
    ) -> Result<(), FrameError> {
        let (user, conn) = self.user_of(token)?;
        let ticket = self.park(Wait::Change { conn, kind });
        cx.store.submit(make(ticket, user)).map_err(|_| {
            self.waiting.remove(&ticket);
            FrameError::new("busy", "the server is busy; try again shortly")
        })
    }

    /// Storage applied a change or refused it.
    pub fn on_changed(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        ticket: Ticket,
        outcome: Result<Change, Refusal>,
    ) {
        let Some(Wait::Change { conn, kind }) = self.waiting.remove(&ticket) else {
            return;
        };
        let change = match outcome {
            Ok(change) => change,
            Err(refusal) => {
                if cx.out.is_live(conn) {
                    let e = refusal_error(kind, refusal);
                    self.send_error(cx.out, conn.token, &e, None);
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
        let frame = self.encoder.shared(&frame);
        let n = self.publish_change(cx, &change, conn, &frame);
        cx.out.metrics().deliveries += n;
        if cx.out.is_live(conn) {
            cx.out.frame(conn.token, &frame);
        }
    }

    /// A change storage could not apply (the database failed).
    pub(super) fn on_change_failed(&mut self, cx: &mut Ctx<'_, impl Outbox>, conn: ConnRef) {
        if cx.out.is_live(conn) {
            let e = FrameError::new("busy", "the change could not be saved; try again");
            self.send_error(cx.out, conn.token, &e, None);
        }
    }

    /// The change's frame to whoever may read the message and is
    /// subscribed, here and on every node, except the asking connection.
    fn publish_change(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        change: &Change,
        asker: ConnRef,
        frame: &Rc<[u8]>,
    ) -> u64 {
        let except = Except::Conn(asker);
        match (&change.room, change.to) {
            (Some(room), _) => self.publish_room_named(room, except, frame, cx.out),
            (None, Some(to)) => {
                let topic = Topic::Conversation(change.from, to);
                self.publish(topic, except, None, frame, cx.out)
            }
            (None, None) => 0,
        }
    }
}

/// The `error` a refused change gets.
fn refusal_error(kind: Kind, refusal: Refusal) -> FrameError {
    match (refusal, kind) {
        (Refusal::NoSuchMessage, _) => FrameError::new("invalid_input", "no such message"),
        (Refusal::Forbidden, Kind::Edit) => {
            FrameError::new("forbidden", "only its author may edit a message")
        }
        (Refusal::Forbidden, Kind::Delete) => FrameError::new(
            "forbidden",
            "only its author or the private room's owner may delete a message",
        ),
        (Refusal::Forbidden, Kind::React) => {
            FrameError::new("forbidden", "you may not read that message")
        }
        (Refusal::TooManyReactions, _) => FrameError::new(
            "invalid_input",
            format!(
                "a message may carry {MAX_REACTION_KINDS} different emoji and \
                 {MAX_REACTIONS} reactions in all"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One emoji of any shape people pick is accepted: plain, with a
    /// variation selector, a skin tone, joined sequences, flags, keycaps.
    #[test]
    fn accepts_one_emoji() {
        for e in [
            "👍",
            "❤️",
            "🎉",
            "👍🏽",
            "👩‍💻",
            "👨‍👩‍👧‍👦",
            "🇫🇷",
            "1️⃣",
            "#️⃣",
            "☕",
            "✅",
            "🏳️‍🌈",
        ] {
            assert!(
                check_emoji(Some(e)).is_ok(),
                "{e:?} {:x?}",
                e.chars().map(|c| c as u32).collect::<Vec<_>>()
            );
        }
        for e in [":tada:", ":+1:", ":thumbs_up:", ":x-1:"] {
            assert!(check_emoji(Some(e)).is_ok(), "{e}");
        }
    }

    /// Text, markup, several emoji, empty names and overlong input are not
    /// a reaction: what a client shows as a reaction is never markup.
    #[test]
    fn refuses_what_is_not_one_emoji() {
        for e in [
            "",
            "a",
            "ok",
            "<img src=x onerror=alert(1)>",
            "👍👍",
            "👍 ",
            " 👍",
            "1",
            "#",
            "::",
            ":Tada:",
            ":a b:",
            ":<b>:",
            "🇫",
            "🇫🇷🇫",
            "👩‍",
            "‍👩",
            &format!(":{}:", "a".repeat(31)),
        ] {
            assert!(check_emoji(Some(e)).is_err(), "{e:?}");
        }
        assert!(check_emoji(None).is_err());
    }
}
