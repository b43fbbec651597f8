//! The client frames of the contract as typed commands, parsed once.
//!
//! A text frame becomes a [`Command`]: one variant per `type`, each carrying
//! exactly the fields of its frame, already checked (room names, content,
//! `client_id`, message ids, emoji) and borrowed from the frame's buffer
//! where the JSON has no escapes. Whatever is missing, mistyped or out of
//! bounds is refused here, in one place, with the contract's codes
//! (`bad_json`, `unknown_type`, `invalid_input`, `too_long`); a handler
//! (`commands/`) sees only what passed and checks only what needs the hub's
//! state (who is a member, who exists, quotas).
//!
//! The parse is one serde pass into [`Fields`], every key any frame may
//! carry, then `type` picks the variant and its fields are checked. A
//! `#[serde(tag = "type")]` enum would say the same in one declaration, but
//! serde reads such an enum by first buffering every value of the object
//! into a tree (allocations for every frame); the flat read allocates
//! nothing for a frame without escapes.

use std::borrow::Cow;
use std::ops::Deref;

use serde::Deserialize;

use super::emoji::is_reaction;
use crate::config::{
    DEFAULT_HISTORY_LIMIT, MAX_ATTACHMENTS, MAX_CLIENT_ID, MAX_CONTENT_CHARS, MAX_EMOJI_BYTES,
    MAX_HISTORY_LIMIT, MAX_REPLY_BYTES, MAX_ROOM_MEMBERS, MAX_ROOM_NAME, MESSAGE_REPLY_MAX,
};
use crate::store::{Attachment, FileId, MsgId};
use crate::ws::proto::echo;

/// A client frame that cannot be carried out: answered with an `error` frame.
#[derive(Debug, PartialEq, Eq)]
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

/// Every frame a client may send.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    Join(Join<'a>),
    Leave(Leave<'a>),
    Message(Message<'a>),
    PrivateMessage(PrivateMessage<'a>),
    Typing(Typing<'a>),
    StopTyping(Typing<'a>),
    History(History<'a>),
    Read(Read<'a>),
    CreateRoom(CreateRoom<'a>),
    AddMember(Membership<'a>),
    RemoveMember(Membership<'a>),
    Edit(Edit<'a>),
    Delete(Delete),
    React(React<'a>),
}

/// `join`: subscribe; with `since`, replay what was stored after it first.
#[derive(Debug, PartialEq, Eq)]
pub struct Join<'a> {
    pub room: RoomName<'a>,
    pub since: Option<MsgId>,
}

/// `leave`.
#[derive(Debug, PartialEq, Eq)]
pub struct Leave<'a> {
    pub room: RoomName<'a>,
}

/// `message`: to `room`, or (`None`) to the room in the connection's URL.
#[derive(Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub room: Option<RoomName<'a>>,
    pub content: Content<'a>,
    pub client_id: Option<ClientId<'a>>,
    pub reply_to: Option<MsgId>,
    pub attachments: Attachments,
}

/// `private_message` to the user named `to`.
#[derive(Debug, PartialEq, Eq)]
pub struct PrivateMessage<'a> {
    pub to: Cow<'a, str>,
    pub content: Content<'a>,
    pub client_id: Option<ClientId<'a>>,
    pub reply_to: Option<MsgId>,
    pub attachments: Attachments,
}

/// A message's `attachments`: 0 to `MAX_ATTACHMENTS` distinct file ids
/// (whose they are, storage checks with the message).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Attachments(Vec<FileId>);

impl Attachments {
    pub fn new(ids: Vec<u64>) -> Result<Attachments, FrameError> {
        if ids.len() > MAX_ATTACHMENTS {
            return Err(FrameError::new(
                "invalid_input",
                format!("a message carries at most {MAX_ATTACHMENTS} attachments"),
            ));
        }
        let mut seen = ids.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != ids.len() || seen.first() == Some(&0) {
            return Err(FrameError::new(
                "invalid_input",
                "attachments must be distinct file ids",
            ));
        }
        Ok(Attachments(ids))
    }

    /// As a stored message asks for them: by id, for storage to fill in.
    pub fn wanted(&self) -> Vec<Attachment> {
        self.0.iter().map(|&id| Attachment::wanted(id)).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `typing` and `stop_typing`: in `room`, or in the URL's room.
#[derive(Debug, PartialEq, Eq)]
pub struct Typing<'a> {
    pub room: Option<RoomName<'a>>,
}

/// `history`: a page of `limit` messages before `before` (the newest when
/// `None`).
#[derive(Debug, PartialEq, Eq)]
pub struct History<'a> {
    pub of: Conversation<'a>,
    pub before: Option<MsgId>,
    pub limit: usize,
}

/// `read`: the caller's read marker moves to message `id`.
#[derive(Debug, PartialEq, Eq)]
pub struct Read<'a> {
    pub of: Conversation<'a>,
    pub id: MsgId,
}

/// `create_room` (private rooms only: a public room opens when joined).
#[derive(Debug, PartialEq, Eq)]
pub struct CreateRoom<'a> {
    pub room: RoomName<'a>,
    /// Usernames besides the owner, as sent.
    pub members: Vec<Cow<'a, str>>,
}

/// `add_member` and `remove_member`.
#[derive(Debug, PartialEq, Eq)]
pub struct Membership<'a> {
    pub room: RoomName<'a>,
    pub user: Cow<'a, str>,
}

/// `edit`: message `id` gets new content.
#[derive(Debug, PartialEq, Eq)]
pub struct Edit<'a> {
    pub id: MsgId,
    pub content: Content<'a>,
}

/// `delete`.
#[derive(Debug, PartialEq, Eq)]
pub struct Delete {
    pub id: MsgId,
}

/// `react`: toggles the caller's `emoji` on message `id`.
#[derive(Debug, PartialEq, Eq)]
pub struct React<'a> {
    pub id: MsgId,
    pub emoji: Emoji<'a>,
}

/// What a `history` or `read` frame is about: a room, or the conversation
/// with the user named `with`.
#[derive(Debug, PartialEq, Eq)]
pub enum Conversation<'a> {
    Room(RoomName<'a>),
    With(Cow<'a, str>),
}

/// What the rule for room names tells a client that broke it.
pub const ROOM_NAME_RULE: &str = "room names are 1-64 characters of a-z, 0-9, '_' and '-'";

/// Room names: 1-64 of `[a-z0-9_-]`.
pub fn valid_room_name(name: &str) -> bool {
    (1..=MAX_ROOM_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A room name that follows [`valid_room_name`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomName<'a>(Cow<'a, str>);

impl<'a> RoomName<'a> {
    pub fn new(name: Cow<'a, str>) -> Result<RoomName<'a>, FrameError> {
        if !valid_room_name(&name) {
            return Err(FrameError::new("invalid_input", ROOM_NAME_RULE));
        }
        Ok(RoomName(name))
    }
}

/// Chat content: 1-4000 characters once trimmed (0 beside attachments);
/// holds the trimmed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content<'a>(Cow<'a, str>);

impl<'a> Content<'a> {
    pub fn new(text: Cow<'a, str>) -> Result<Content<'a>, FrameError> {
        Content::checked(text, false)
    }

    /// `may_be_empty`: the message carries files, so its text is optional.
    fn checked(text: Cow<'a, str>, may_be_empty: bool) -> Result<Content<'a>, FrameError> {
        let text = match text {
            Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
            Cow::Owned(s) if s.trim().len() == s.len() => Cow::Owned(s),
            Cow::Owned(s) => Cow::Owned(s.trim().to_string()),
        };
        if text.is_empty() && !may_be_empty {
            return Err(FrameError::new("invalid_input", "content is empty"));
        }
        // Bytes bound characters from above: most content is not counted.
        if text.len() > MAX_CONTENT_CHARS && text.chars().count() > MAX_CONTENT_CHARS {
            return Err(FrameError::new(
                "too_long",
                format!("content is over {MAX_CONTENT_CHARS} characters"),
            ));
        }
        Ok(Content(text))
    }
}

/// A `client_id`: 1-64 characters, the sender's key for safe retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId<'a>(Cow<'a, str>);

impl<'a> ClientId<'a> {
    pub fn new(id: Cow<'a, str>) -> Result<ClientId<'a>, FrameError> {
        if id.is_empty() || (id.len() > MAX_CLIENT_ID && id.chars().count() > MAX_CLIENT_ID) {
            return Err(FrameError::new(
                "invalid_input",
                format!("client_id must be 1-{MAX_CLIENT_ID} characters"),
            ));
        }
        Ok(ClientId(id))
    }
}

/// A reaction: one emoji or a `:name:` ([`is_reaction`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emoji<'a>(Cow<'a, str>);

impl<'a> Emoji<'a> {
    pub fn new(emoji: Cow<'a, str>) -> Result<Emoji<'a>, FrameError> {
        if !is_reaction(&emoji) {
            return Err(FrameError::new(
                "invalid_input",
                format!("emoji must be one emoji or a :name:, at most {MAX_EMOJI_BYTES} bytes"),
            ));
        }
        Ok(Emoji(emoji))
    }
}

/// The checked values read as the text they hold.
macro_rules! text_value {
    ($($name:ident),*) => {$(
        impl Deref for $name<'_> {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
    )*};
}
text_value!(RoomName, Content, ClientId, Emoji);

/// A text frame that is not a command: the `error` it gets.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused<'a> {
    pub error: FrameError,
    /// The frame's `client_id`, as sent, when it got that far: the `error`
    /// echoes it so the client knows which message was refused.
    pub client_id: Option<Cow<'a, str>>,
}

impl<'a> Command<'a> {
    /// Parses a text frame. `plain`: text that is not a JSON object is a
    /// `message` with that content, to the URL's room (the connection came
    /// in on `/ws/room/{name}`, so `websocat` works as a client); without
    /// it such text is `bad_json`.
    pub fn parse(text: &'a str, plain: bool) -> Result<Command<'a>, Refused<'a>> {
        // serde's derive also reads a struct from a JSON array, field by
        // position; a frame is an object, so anything else is plain text.
        let fields = if text.trim_start_matches(JSON_WHITESPACE).starts_with('{') {
            serde_json::from_str::<Fields<'a>>(text).map_err(|e| malformed(text, &e))
        } else {
            Err(Malformed::NotAnObject)
        };
        let refused = |error| Refused {
            error,
            client_id: None,
        };
        let mut fields = match fields {
            Ok(f) => f,
            Err(Malformed::NotAnObject) if plain => {
                return Ok(Command::Message(Message {
                    room: None,
                    content: Content::new(Cow::Borrowed(text)).map_err(refused)?,
                    client_id: None,
                    reply_to: None,
                    attachments: Attachments::default(),
                }));
            }
            Err(m) => return Err(refused(m.error())),
        };
        fields.command().map_err(|error| Refused {
            error,
            client_id: fields.client_id.take().map(|t| t.0),
        })
    }

    /// The frame's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Join(_) => "join",
            Command::Leave(_) => "leave",
            Command::Message(_) => "message",
            Command::PrivateMessage(_) => "private_message",
            Command::Typing(_) => "typing",
            Command::StopTyping(_) => "stop_typing",
            Command::History(_) => "history",
            Command::Read(_) => "read",
            Command::CreateRoom(_) => "create_room",
            Command::AddMember(_) => "add_member",
            Command::RemoveMember(_) => "remove_member",
            Command::Edit(_) => "edit",
            Command::Delete(_) => "delete",
            Command::React(_) => "react",
        }
    }

    /// The `client_id` of a chat message, echoed by any `error` about it.
    pub fn client_id(&self) -> Option<&ClientId<'a>> {
        match self {
            Command::Message(m) => m.client_id.as_ref(),
            Command::PrivateMessage(m) => m.client_id.as_ref(),
            _ => None,
        }
    }

    /// The reply bytes the command's storage read is reserved at, if it
    /// reads (`reads.rs`): a history page at its limit's worst case, a
    /// replay at the reply cap.
    pub fn read_cost(&self) -> Option<usize> {
        match self {
            Command::History(h) => Some(h.limit * MESSAGE_REPLY_MAX),
            Command::Join(Join { since: Some(_), .. }) => Some(MAX_REPLY_BYTES),
            _ => None,
        }
    }
}

/// What JSON allows before a value (RFC 8259 §2).
const JSON_WHITESPACE: [char; 4] = [' ', '\t', '\n', '\r'];

/// Every key any client frame may carry, read in one pass; which ones a
/// frame needs depends on its `type` ([`Fields::command`]).
#[derive(Debug, Deserialize)]
struct Fields<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    room: Option<Text<'a>>,
    #[serde(borrow, default)]
    content: Option<Text<'a>>,
    #[serde(borrow, default)]
    client_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    to: Option<Text<'a>>,
    #[serde(borrow, default)]
    with: Option<Text<'a>>,
    #[serde(borrow, default)]
    user: Option<Text<'a>>,
    #[serde(default)]
    since: Option<u64>,
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    private: Option<bool>,
    #[serde(borrow, default)]
    members: Option<Vec<Text<'a>>>,
    #[serde(default)]
    reply_to: Option<u64>,
    #[serde(borrow, default)]
    emoji: Option<Text<'a>>,
    #[serde(default)]
    attachments: Option<Vec<u64>>,
}

/// A string of a frame, borrowed from it when the JSON has no escapes.
/// (serde borrows a `Cow` only when it is a field's whole type: inside an
/// `Option` or a `Vec` it would copy every string.)
#[derive(Debug, Deserialize)]
#[serde(transparent)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// Why a frame did not read as [`Fields`].
enum Malformed {
    /// Not a JSON object at all.
    NotAnObject,
    /// An object whose `type` is missing or not a string.
    NoType,
    /// An object with a `type` but a field of the wrong shape (serde's
    /// words for it).
    BadField(String),
}

impl Malformed {
    /// The `error` a malformed frame gets.
    fn error(self) -> FrameError {
        match self {
            Malformed::NotAnObject => FrameError::new(
                "bad_json",
                "expected a JSON object (or connect to /ws/room/{name} to send plain text)",
            ),
            Malformed::NoType => FrameError::new("unknown_type", "a frame needs a string \"type\""),
            Malformed::BadField(why) => FrameError::new("invalid_input", why),
        }
    }
}

/// Tells apart what went wrong, by reading the text again as a generic
/// value: only frames that failed the typed read pay for it.
fn malformed(text: &str, e: &serde_json::Error) -> Malformed {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => match map.get("type") {
            Some(serde_json::Value::String(_)) => {
                // serde's message without its " at line 1 column 17".
                let s = e.to_string();
                Malformed::BadField(match s.find(" at line ") {
                    Some(i) => s[..i].to_string(),
                    None => s,
                })
            }
            _ => Malformed::NoType,
        },
        _ => Malformed::NotAnObject,
    }
}

/// "give exactly one of room or with".
const ONE_PLACE: &str = "give exactly one of room or with";

/// "id must be the id of a message".
const NOT_AN_ID: &str = "id must be the id of a message";

impl<'a> Fields<'a> {
    /// The command these fields make, or why they make none. Fields are
    /// taken as they are used; `client_id` is taken last, so a refusal
    /// still has it to echo.
    fn command(&mut self) -> Result<Command<'a>, FrameError> {
        Ok(match &*self.kind {
            "join" => Command::Join(Join {
                room: self.room()?,
                since: self.since,
            }),
            "leave" => Command::Leave(Leave { room: self.room()? }),
            "message" => {
                let room = self.optional_room()?;
                let (attachments, reply_to) = (self.attachments()?, self.reply_to()?);
                Command::Message(Message {
                    room,
                    content: self.post_content(&attachments)?,
                    reply_to,
                    attachments,
                    client_id: self.client_id()?,
                })
            }
            "private_message" => {
                let to = required(&mut self.to, "to")?;
                let (attachments, reply_to) = (self.attachments()?, self.reply_to()?);
                Command::PrivateMessage(PrivateMessage {
                    to,
                    content: self.post_content(&attachments)?,
                    reply_to,
                    attachments,
                    client_id: self.client_id()?,
                })
            }
            "typing" => Command::Typing(self.typing()?),
            "stop_typing" => Command::StopTyping(self.typing()?),
            "history" => Command::History(History {
                of: self.conversation()?,
                before: self.before,
                limit: self.limit.map_or(DEFAULT_HISTORY_LIMIT, |l| {
                    l.clamp(1, MAX_HISTORY_LIMIT as u64) as usize
                }),
            }),
            "read" => {
                let id = self.message_id()?;
                Command::Read(Read {
                    of: self.conversation()?,
                    id,
                })
            }
            "create_room" => {
                let room = self.room()?;
                if self.private != Some(true) {
                    return Err(FrameError::new(
                        "invalid_input",
                        "create_room makes private rooms (\"private\": true); \
                         join a public room to open it",
                    ));
                }
                let members: Vec<Cow<'a, str>> = self
                    .members
                    .take()
                    .map_or(Vec::new(), |m| m.into_iter().map(|t| t.0).collect());
                // The owner is a member too.
                if members.len() >= MAX_ROOM_MEMBERS {
                    return Err(FrameError::new(
                        "invalid_input",
                        format!("a room has at most {MAX_ROOM_MEMBERS} members, owner included"),
                    ));
                }
                Command::CreateRoom(CreateRoom { room, members })
            }
            "add_member" => Command::AddMember(self.membership()?),
            "remove_member" => Command::RemoveMember(self.membership()?),
            "edit" => {
                let id = self.message_id()?;
                Command::Edit(Edit {
                    id,
                    content: self.content()?,
                })
            }
            "delete" => Command::Delete(Delete {
                id: self.message_id()?,
            }),
            "react" => {
                let id = self.message_id()?;
                let emoji = required(&mut self.emoji, "emoji")?;
                Command::React(React {
                    id,
                    emoji: Emoji::new(emoji)?,
                })
            }
            other => {
                return Err(FrameError::new(
                    "unknown_type",
                    format!("unknown frame type {:?}", echo(other)),
                ));
            }
        })
    }

    fn room(&mut self) -> Result<RoomName<'a>, FrameError> {
        RoomName::new(required(&mut self.room, "room")?)
    }

    fn content(&mut self) -> Result<Content<'a>, FrameError> {
        Content::new(required(&mut self.content, "content")?)
    }

    /// A chat message's content: required, unless it carries files.
    fn post_content(&mut self, attachments: &Attachments) -> Result<Content<'a>, FrameError> {
        if attachments.is_empty() {
            return self.content();
        }
        let text = self.content.take().map_or(Cow::Borrowed(""), |t| t.0);
        Content::checked(text, true)
    }

    fn attachments(&mut self) -> Result<Attachments, FrameError> {
        Attachments::new(self.attachments.take().unwrap_or_default())
    }

    fn client_id(&mut self) -> Result<Option<ClientId<'a>>, FrameError> {
        if let Some(id) = &self.client_id {
            // Checked before it is taken: a refusal echoes it.
            ClientId::new(Cow::Borrowed(&id.0))?;
        }
        Ok(self.client_id.take().map(|t| ClientId(t.0)))
    }

    fn optional_room(&mut self) -> Result<Option<RoomName<'a>>, FrameError> {
        self.room.take().map(|t| RoomName::new(t.0)).transpose()
    }

    /// `reply_to`: absent, or a message id (storage checks which).
    fn reply_to(&mut self) -> Result<Option<MsgId>, FrameError> {
        match self.reply_to {
            Some(0) => Err(FrameError::new(
                "invalid_input",
                "reply_to must be the id of a message",
            )),
            other => Ok(other),
        }
    }

    fn message_id(&mut self) -> Result<MsgId, FrameError> {
        self.id
            .filter(|id| *id > 0)
            .ok_or_else(|| FrameError::new("invalid_input", NOT_AN_ID))
    }

    fn typing(&mut self) -> Result<Typing<'a>, FrameError> {
        Ok(Typing {
            room: self.optional_room()?,
        })
    }

    fn conversation(&mut self) -> Result<Conversation<'a>, FrameError> {
        match (self.room.take(), self.with.take()) {
            (Some(room), None) => Ok(Conversation::Room(RoomName::new(room.0)?)),
            (None, Some(with)) => Ok(Conversation::With(with.0)),
            _ => Err(FrameError::new("invalid_input", ONE_PLACE)),
        }
    }

    fn membership(&mut self) -> Result<Membership<'a>, FrameError> {
        let room = self.room()?;
        let user = required(&mut self.user, "user")?;
        Ok(Membership { room, user })
    }
}

/// A field the frame's type needs.
fn required<'a>(field: &mut Option<Text<'a>>, name: &str) -> Result<Cow<'a, str>, FrameError> {
    field
        .take()
        .map(|t| t.0)
        .ok_or_else(|| FrameError::new("invalid_input", format!("{name} is required")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Command<'_>, Refused<'_>> {
        Command::parse(text, false)
    }

    fn code(text: &str) -> &'static str {
        parse(text).unwrap_err().error.code
    }

    /// Each type reads into its own variant with exactly its fields,
    /// borrowed from the frame when it has no escapes.
    #[test]
    fn frames_become_typed_commands() {
        let Command::Join(j) = parse(r#"{"type":"join","room":"general","since":7}"#).unwrap()
        else {
            panic!("not a join")
        };
        assert_eq!((&*j.room, j.since), ("general", Some(7)));
        let text = r#"{"type":"message","room":"general","content":"  hi  ","client_id":"k1"}"#;
        let Command::Message(m) = parse(text).unwrap() else {
            panic!("not a message")
        };
        assert_eq!(
            (m.room.as_deref(), &*m.content, m.client_id.as_deref()),
            (Some("general"), "hi", Some("k1"))
        );
        assert!(matches!(m.content.0, Cow::Borrowed(_)), "no copy");
        let Command::History(h) = parse(r#"{"type":"history","with":"bob","limit":900}"#).unwrap()
        else {
            panic!("not a history")
        };
        assert_eq!(h.of, Conversation::With("bob".into()));
        assert_eq!(h.limit, MAX_HISTORY_LIMIT, "clamped");
        assert!(matches!(
            parse(r#"{"type":"stop_typing"}"#).unwrap(),
            Command::StopTyping(Typing { room: None })
        ));
        let escaped = r#"{"type":"edit","id":3,"content":" caf\u00e9 "}"#;
        let Command::Edit(e) = parse(escaped).unwrap() else {
            panic!("not an edit")
        };
        assert_eq!(&*e.content, "café", "unescaped and trimmed");
    }

    /// Content is trimmed and measured in characters, not bytes.
    #[test]
    fn checks_content() {
        assert_eq!(&*Content::new("  hi  ".into()).unwrap(), "hi");
        assert_eq!(
            Content::new("   ".into()).unwrap_err().code,
            "invalid_input"
        );
        assert!(Content::new("é".repeat(4000).into()).is_ok());
        assert_eq!(
            Content::new("é".repeat(4001).into()).unwrap_err().code,
            "too_long"
        );
        assert_eq!(code(r#"{"type":"message","room":"a"}"#), "invalid_input");
    }

    /// Client ids are 1-64 characters when present, and a refused message
    /// echoes the one it was sent with, valid or not.
    #[test]
    fn checks_client_id() {
        assert!(ClientId::new("k".into()).is_ok());
        assert!(ClientId::new("".into()).is_err());
        assert!(ClientId::new("k".repeat(65).into()).is_err());
        let long = "k".repeat(65);
        let text = format!(r#"{{"type":"message","content":"x","client_id":"{long}"}}"#);
        let refused = parse(&text).unwrap_err();
        assert_eq!(refused.error.code, "invalid_input");
        assert_eq!(refused.client_id.as_deref(), Some(long.as_str()));
        let big = format!(
            r#"{{"type":"message","content":"{}","client_id":"big"}}"#,
            "x".repeat(4001)
        );
        let refused = parse(&big).unwrap_err();
        assert_eq!(
            (refused.error.code, refused.client_id.as_deref()),
            ("too_long", Some("big"))
        );
    }

    /// Names follow the contract's alphabet and length.
    #[test]
    fn validates_room_names() {
        assert!(valid_room_name("general") && valid_room_name("a_b-9"));
        assert!(!valid_room_name("") && !valid_room_name("General") && !valid_room_name("a b"));
        assert!(valid_room_name(&"x".repeat(64)) && !valid_room_name(&"x".repeat(65)));
        assert_eq!(
            code(r#"{"type":"join","room":"Bad Room"}"#),
            "invalid_input"
        );
        assert_eq!(code(r#"{"type":"join"}"#), "invalid_input");
    }

    /// A missing or malformed field is `invalid_input` whatever the type; a
    /// type nobody knows is `unknown_type`, and a frame without one too.
    #[test]
    fn refuses_what_a_type_lacks() {
        for text in [
            r#"{"type":"private_message","content":"hi"}"#,
            r#"{"type":"edit","content":"no id"}"#,
            r#"{"type":"delete","id":0}"#,
            r#"{"type":"react","id":1}"#,
            r#"{"type":"react","id":1,"emoji":"ok"}"#,
            r#"{"type":"read","room":"a"}"#,
            r#"{"type":"read","id":3,"room":"a","with":"bob"}"#,
            r#"{"type":"history"}"#,
            r#"{"type":"create_room","room":"club"}"#,
            r#"{"type":"add_member","room":"club"}"#,
            r#"{"type":"message","content":"x","reply_to":0}"#,
            r#"{"type":"join","since":"x","room":"a"}"#,
        ] {
            assert_eq!(code(text), "invalid_input", "{text}");
        }
        for text in [
            r#"{"type":"dance"}"#,
            "{}",
            r#"{"type":5}"#,
            r#"{"room":"a"}"#,
        ] {
            assert_eq!(code(text), "unknown_type", "{text}");
        }
    }

    /// Text that is no JSON object is plain chat on a room's URL, and
    /// `bad_json` elsewhere; empty plain text is refused like empty content.
    #[test]
    fn plain_text_is_a_message_only_on_a_room_url() {
        for text in ["hello there", "[1,2]", "{oops", "\"quoted\""] {
            assert_eq!(code(text), "bad_json", "{text}");
            let Command::Message(m) = Command::parse(text, true).unwrap() else {
                panic!("not a message")
            };
            assert_eq!((m.room, &*m.content), (None, text));
        }
        assert_eq!(
            Command::parse("   ", true).unwrap_err().error.code,
            "invalid_input"
        );
        assert!(matches!(
            Command::parse(r#"{"type":"leave","room":"x"}"#, true),
            Ok(Command::Leave(_))
        ));
    }

    /// A JSON array is not a frame, even one whose items line up with the
    /// frame's fields (serde's derive would read `["join","general"]` as a
    /// `join` of `general`): it is plain text, like any non-object. Found by
    /// the `json_values_are_classified_by_the_contract` property.
    #[test]
    fn arrays_are_not_frames() {
        for text in [
            r#"[""]"#,
            r#"["join","general"]"#,
            " \n[\"message\",null,\"hi\"]",
        ] {
            assert_eq!(code(text), "bad_json", "{text}");
        }
        assert!(
            parse(" \r\n\t{\"type\":\"leave\",\"room\":\"a\"}").is_ok(),
            "JSON whitespace before the object is fine"
        );
    }

    /// Attachments are distinct positive ids, at most ten; beside them the
    /// content may be empty or absent, without them it may not.
    #[test]
    fn attachments_make_content_optional() {
        let Command::Message(m) =
            parse(r#"{"type":"message","room":"a","attachments":[3,1],"content":"  "}"#).unwrap()
        else {
            panic!("not a message")
        };
        assert_eq!((&*m.content, m.attachments.wanted().len()), ("", 2));
        let Command::PrivateMessage(p) =
            parse(r#"{"type":"private_message","to":"bob","attachments":[9]}"#).unwrap()
        else {
            panic!("not a private message")
        };
        assert_eq!(p.attachments.wanted()[0].id, 9);
        for text in [
            r#"{"type":"message","room":"a","attachments":[]}"#,
            r#"{"type":"message","room":"a","attachments":[1,1],"content":"x"}"#,
            r#"{"type":"message","room":"a","attachments":[0]}"#,
            r#"{"type":"message","room":"a","attachments":["1"]}"#,
            r#"{"type":"message","room":"a","attachments":[1,2,3,4,5,6,7,8,9,10,11]}"#,
        ] {
            assert_eq!(code(text), "invalid_input", "{text}");
        }
    }

    /// Only the reads that may be big are reserved, at their worst case.
    #[test]
    fn reads_cost_their_worst_case() {
        let cost = |text| parse(text).unwrap().read_cost();
        assert_eq!(
            cost(r#"{"type":"history","room":"a","limit":2}"#),
            Some(2 * MESSAGE_REPLY_MAX)
        );
        assert_eq!(
            cost(r#"{"type":"join","room":"a","since":0}"#),
            Some(MAX_REPLY_BYTES)
        );
        assert_eq!(cost(r#"{"type":"join","room":"a"}"#), None);
    }
}
