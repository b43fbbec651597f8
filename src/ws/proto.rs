//! The JSON frames the server sends ([`Out`]), and encoding one once into
//! shareable bytes: serialized straight into a WebSocket text frame. (What
//! clients send is parsed by the hub into typed commands: `hub/command.rs`.)

use std::borrow::Cow;
use std::fmt;
use std::rc::Rc;

use serde::{Serialize, Serializer};

use super::codec::{MAX_HEADER, TEXT, header_before};
use crate::config::ECHO_MAX_CHARS;
use crate::store::{Attachment, Reaction, StoredMessage, UserId};
use crate::users::User;

/// Unix milliseconds that serialize as RFC 3339 without an intermediate String.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ts(pub i64);

impl fmt::Display for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::clock::rfc3339_into(
            self.0,
            &mut [0; crate::clock::RFC3339_LEN],
        ))
    }
}

impl Serialize for Ts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A message object, as in history pages and `GET /api/messages`.
#[derive(Debug, Serialize)]
pub struct MessageObj<'a> {
    pub id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<&'a str>,
    pub user: &'a str,
    pub content: &'a str,
    pub timestamp: Ts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<Ts>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub reactions: Vec<ReactionObj<'a>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub attachments: &'a [Attachment],
}

/// One emoji's reactions in a message object: who, by name.
#[derive(Debug, Serialize)]
pub struct ReactionObj<'a> {
    pub emoji: &'a str,
    pub users: Vec<&'a str>,
}

/// A message's reactions as the contract lists them.
pub fn reaction_objects<'a>(
    reactions: &'a [Reaction],
    name: &impl Fn(UserId) -> &'a str,
) -> Vec<ReactionObj<'a>> {
    reactions
        .iter()
        .map(|r| ReactionObj {
            emoji: &r.emoji,
            users: r.users.iter().map(|&u| name(u)).collect(),
        })
        .collect()
}

/// One stored message as the contract's message object.
pub fn message_object<'a>(
    m: &'a StoredMessage,
    name: &impl Fn(UserId) -> &'a str,
) -> MessageObj<'a> {
    let user = name(m.from);
    let (from, to) = match m.to {
        Some(to) => (Some(user), Some(name(to))),
        None => (None, None),
    };
    MessageObj {
        id: m.id,
        room: m.room.as_deref(),
        from,
        to,
        user,
        content: &m.content,
        timestamp: Ts(m.timestamp_ms),
        reply_to: m.reply_to,
        edited_at: m.edited_ms.map(Ts),
        reactions: reaction_objects(&m.reactions, name),
        attachments: &m.attachments,
    }
}

/// A stored message as the frame a subscriber gets (a replay, a cluster's
/// catch-up): `message` for a room, `private_message` for a conversation,
/// with whatever edits and reactions it has by now; a deleted one (only
/// catch-ups carry those) as `message_deleted`.
pub fn stored_frame<'a>(m: &'a StoredMessage, name: &impl Fn(UserId) -> &'a str) -> Out<'a> {
    let (room, from, to) = match (&m.room, m.to) {
        (Some(room), _) => (Some(room.as_str()), None, None),
        (None, to) => (None, Some(name(m.from)), Some(name(to.unwrap_or(0)))),
    };
    if m.deleted {
        return Out::MessageDeleted {
            id: m.id,
            place: Place { room, from, to },
        };
    }
    let (reply_to, edited_at) = (m.reply_to, m.edited_ms.map(Ts));
    let reactions = reaction_objects(&m.reactions, name);
    let attachments = &m.attachments[..];
    match (room, from, to) {
        (Some(room), _, _) => Out::Message {
            id: m.id,
            room,
            user: name(m.from),
            content: &m.content,
            timestamp: Ts(m.timestamp_ms),
            reply_to,
            edited_at,
            reactions,
            attachments,
        },
        (None, from, to) => Out::PrivateMessage {
            id: m.id,
            from: from.unwrap_or_default(),
            to: to.unwrap_or_default(),
            content: &m.content,
            timestamp: Ts(m.timestamp_ms),
            reply_to,
            edited_at,
            reactions,
            attachments,
        },
    }
}

/// Stored messages as the contract's message objects; `name` gives a user's name.
pub fn message_objects<'a>(
    messages: &'a [StoredMessage],
    name: impl Fn(UserId) -> &'a str,
) -> Vec<MessageObj<'a>> {
    messages.iter().map(|m| message_object(m, &name)).collect()
}

/// What is shown for a deleted account, whatever it was called.
pub const DELETED_USER_SHOWN: &str = "Deleted user";

/// A user as everyone sees them: the contract's user object without
/// presence (`GET /api/users` adds `online` and `last_seen`; `GET /api/me`
/// adds the email).
#[derive(Debug, Serialize)]
pub struct Profile<'a> {
    pub id: UserId,
    pub username: &'a str,
    /// The display name, else the username.
    pub display_name: &'a str,
    pub status: &'a str,
    pub role: &'static str,
    /// The avatar's URL (`User::avatar_url`), or null.
    pub avatar: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// `u` as everyone sees them.
pub fn profile(u: &User) -> Profile<'_> {
    let deleted = u.is_deleted();
    Profile {
        id: u.id,
        username: &u.name,
        display_name: if deleted {
            DELETED_USER_SHOWN
        } else {
            u.shown_name()
        },
        status: &u.account.status,
        role: u.role().as_str(),
        avatar: u.avatar_url(),
        deleted,
    }
}

/// One entry of an `unread` frame.
#[derive(Debug, Serialize)]
pub struct UnreadEntry<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub with: Option<&'a str>,
    pub count: u64,
    /// Unread messages that mention the user (rooms only; absent when none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mentions: Option<u64>,
}

/// Where a changed message lives, as its change frames name it: `room`,
/// or `from` and `to` for a conversation.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Place<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<&'a str>,
}

/// Every frame the server sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Out<'a> {
    /// A room message. `reply_to` on replies; `edited_at` and `reactions`
    /// only in replays and catch-ups of messages that have them (a live
    /// message is new: never edited, no reactions yet).
    Message {
        id: u64,
        room: &'a str,
        user: &'a str,
        content: &'a str,
        timestamp: Ts,
        #[serde(skip_serializing_if = "Option::is_none")]
        reply_to: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        edited_at: Option<Ts>,
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        reactions: Vec<ReactionObj<'a>>,
        /// The files it carries, live and replayed alike.
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        attachments: &'a [Attachment],
    },
    PrivateMessage {
        id: u64,
        from: &'a str,
        to: &'a str,
        content: &'a str,
        timestamp: Ts,
        #[serde(skip_serializing_if = "Option::is_none")]
        reply_to: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        edited_at: Option<Ts>,
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        reactions: Vec<ReactionObj<'a>>,
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        attachments: &'a [Attachment],
    },
    /// `room` for a room message, `from`/`to` for a private one.
    MessageEdited {
        id: u64,
        #[serde(flatten)]
        place: Place<'a>,
        content: &'a str,
        edited_at: Ts,
    },
    MessageDeleted {
        id: u64,
        #[serde(flatten)]
        place: Place<'a>,
    },
    Reaction {
        id: u64,
        #[serde(flatten)]
        place: Place<'a>,
        emoji: &'a str,
        user: &'a str,
        on: bool,
    },
    /// To the connections of a user named by `@name` in `message`.
    Mention {
        message: MessageObj<'a>,
    },
    Ack {
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<&'a str>,
        id: u64,
        timestamp: Ts,
    },
    Delivered {
        id: u64,
    },
    OnlineUsers {
        room: &'a str,
        users: Vec<&'a str>,
        count: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
    },
    Join {
        room: &'a str,
        user: &'a str,
    },
    Leave {
        room: &'a str,
        user: &'a str,
    },
    UserStatus {
        user: &'a str,
        status: &'static str,
        last_seen: Ts,
    },
    Typing {
        room: &'a str,
        user: &'a str,
    },
    StopTyping {
        room: &'a str,
        user: &'a str,
    },
    Unread {
        counts: Vec<UnreadEntry<'a>>,
    },
    Read {
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        with: Option<&'a str>,
        user: &'a str,
        id: u64,
    },
    History {
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        with: Option<&'a str>,
        messages: Vec<MessageObj<'a>>,
    },
    RoomMembers {
        room: &'a str,
        owner: &'a str,
        members: Vec<&'a str>,
    },
    /// What others see of a user changed (display name, status, role, a
    /// ban, a deletion): to every connection.
    UserUpdated {
        user: Profile<'a>,
    },
    /// A moderator archived a room or opened it again (hubbub's addition):
    /// to everyone who may see it (a private room's members).
    RoomArchived {
        room: &'a str,
        archived: bool,
    },
    /// An admin deleted a room (hubbub's addition): to everyone who may
    /// see it, so each client drops it; it is gone with its history.
    RoomDeleted {
        room: &'a str,
    },
    Error {
        code: &'static str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<&'a str>,
    },
}

/// Serializes server frames. Owns one scratch buffer that is reused, so
/// encoding allocates only the result.
#[derive(Default)]
pub struct Encoder {
    scratch: Vec<u8>,
}

impl Encoder {
    /// The frame as one shared allocation: header and JSON, ready to be queued
    /// on any number of connections without copying.
    pub fn shared(&mut self, frame: &Out<'_>) -> Rc<[u8]> {
        let start = self.encode(frame);
        Rc::from(&self.scratch[start..])
    }

    /// The frame's bytes, borrowed from the scratch buffer until the next
    /// call: for replies to one connection, copied once into its queue.
    pub fn bytes(&mut self, frame: &Out<'_>) -> &[u8] {
        let start = self.encode(frame);
        &self.scratch[start..]
    }

    /// Serializes after a gap of `MAX_HEADER` bytes, then writes the header
    /// into the end of the gap: the payload never moves.
    fn encode(&mut self, frame: &Out<'_>) -> usize {
        self.scratch.clear();
        self.scratch.resize(MAX_HEADER, 0);
        serde_json::to_writer(&mut self.scratch, frame).expect("serializing to a Vec cannot fail");
        let len = self.scratch.len() - MAX_HEADER;
        let head: &mut [u8; MAX_HEADER] =
            (&mut self.scratch[..MAX_HEADER]).try_into().expect("gap");
        header_before(head, TEXT, len)
    }
}

/// Client input as an error message may quote it: at most
/// [`ECHO_MAX_CHARS`] characters, then `…`. HTTP bodies and WebSocket frames are JSON, so quoting is
/// safe from injection; this keeps a 60 KB bogus name from coming back
/// whole (an amplifier, and noise in every log that records errors).
pub fn echo(input: &str) -> Cow<'_, str> {
    match input.char_indices().nth(ECHO_MAX_CHARS) {
        None => Cow::Borrowed(input),
        Some((cut, _)) => Cow::Owned(format!("{}…", &input[..cut])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Echoed input is cut at the limit on a character boundary.
    #[test]
    fn echo_is_short() {
        assert_eq!(echo("alice"), "alice");
        let exact = "é".repeat(ECHO_MAX_CHARS);
        assert_eq!(echo(&exact), exact);
        let long = "é".repeat(60_000);
        let e = echo(&long);
        assert_eq!(e.chars().count(), ECHO_MAX_CHARS + 1);
        assert!(e.ends_with('…'));
    }

    fn payload(frame: &[u8]) -> &str {
        let skip = match frame[1] {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        std::str::from_utf8(&frame[skip..]).unwrap()
    }

    /// A chat message encodes to the exact bytes of the contract, framed.
    #[test]
    fn encodes_message_frame() {
        let mut enc = Encoder::default();
        let f = enc.shared(&Out::Message {
            id: 42,
            room: "general",
            user: "alice",
            content: "hi \"there\"",
            timestamp: Ts(1_768_473_000_123),
            reply_to: None,
            edited_at: None,
            reactions: Vec::new(),
            attachments: &[],
        });
        assert_eq!(f[0], 0x81);
        assert_eq!(
            payload(&f),
            r#"{"type":"message","id":42,"room":"general","user":"alice","content":"hi \"there\"","timestamp":"2026-01-15T10:30:00.123Z"}"#
        );
        assert_eq!(f[1] as usize, payload(&f).len());
    }

    /// A replayed message carries `reply_to`, `edited_at` and `reactions`
    /// after the live fields; a deleted one replays as `message_deleted`.
    #[test]
    fn encodes_stored_messages_as_they_are_now() {
        let mut enc = Encoder::default();
        let m = StoredMessage {
            id: 7,
            room: Some("general".into()),
            from: 1,
            content: "fixed".into(),
            timestamp_ms: 1_768_473_000_123,
            reply_to: Some(3),
            edited_ms: Some(1_768_473_060_000),
            reactions: vec![Reaction {
                emoji: "👍".into(),
                users: vec![2, 1],
            }],
            ..StoredMessage::default()
        };
        let name = |u: UserId| ["", "alice", "bob"][u as usize];
        let out = enc.bytes(&stored_frame(&m, &name)).to_vec();
        assert_eq!(
            payload(&out),
            r#"{"type":"message","id":7,"room":"general","user":"alice","content":"fixed","timestamp":"2026-01-15T10:30:00.123Z","reply_to":3,"edited_at":"2026-01-15T10:31:00.000Z","reactions":[{"emoji":"👍","users":["bob","alice"]}]}"#
        );
        let gone = StoredMessage {
            deleted: true,
            ..m.clone()
        };
        let out = enc.bytes(&stored_frame(&gone, &name)).to_vec();
        assert_eq!(
            payload(&out),
            r#"{"type":"message_deleted","id":7,"room":"general"}"#
        );
    }

    /// Optional fields are left out, not sent as null.
    #[test]
    fn omits_absent_fields() {
        let mut enc = Encoder::default();
        let out = enc
            .bytes(&Out::Ack {
                client_id: None,
                id: 1,
                timestamp: Ts(0),
            })
            .to_vec();
        assert_eq!(
            payload(&out),
            r#"{"type":"ack","id":1,"timestamp":"1970-01-01T00:00:00.000Z"}"#
        );
        let out = enc
            .bytes(&Out::Error {
                code: "bad_json",
                message: "x",
                client_id: None,
            })
            .to_vec();
        assert_eq!(
            payload(&out),
            r#"{"type":"error","code":"bad_json","message":"x"}"#
        );
    }
}
