//! Property tests of the client-frame parser (`command.rs`): no input
//! panics it, it sorts JSON values exactly as the contract says (not an
//! object, no type, a mistyped field, an unknown type), and every valid
//! command, written as a frame, comes back as the same command.

use std::borrow::Cow;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::command::{
    ClientId, Command, Content, Conversation, CreateRoom, Delete, Edit, Emoji, History, Join,
    Leave, Membership, Message, PrivateMessage, React, Read, RoomName, Typing,
};
use crate::config::MAX_HISTORY_LIMIT;

/// Cases per property: each is a parse or two of a short text.
const CASES: u32 = 512;

/// Every `type` of the contract.
const TYPES: [&str; 14] = [
    "join",
    "leave",
    "message",
    "private_message",
    "typing",
    "stop_typing",
    "history",
    "read",
    "create_room",
    "add_member",
    "remove_member",
    "edit",
    "delete",
    "react",
];

/// The keys a frame may carry, so generated objects hit typed fields.
const KEYS: [&str; 16] = [
    "type",
    "room",
    "content",
    "client_id",
    "to",
    "with",
    "user",
    "since",
    "before",
    "limit",
    "id",
    "private",
    "members",
    "reply_to",
    "emoji",
    "other",
];

/// Any JSON value, with object keys mostly the contract's field names and
/// `type`s mostly the contract's.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
        prop::sample::select(TYPES.to_vec()).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        let key = prop_oneof![
            4 => prop::sample::select(KEYS.to_vec()).prop_map(str::to_string),
            1 => "\\PC{0,8}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((key, inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// The code the contract gives `v` before its type's own rules are asked:
/// `None` for an object whose `type` is one of the contract's and whose
/// known fields, when present and not null, have their documented shapes.
fn shape_code(v: &Value) -> Option<&'static str> {
    let Value::Object(map) = v else {
        return Some("bad_json");
    };
    let Some(kind) = map.get("type").and_then(Value::as_str) else {
        return Some("unknown_type");
    };
    let shape_ok = |key: &str, v: &Value| match key {
        "room" | "content" | "client_id" | "to" | "with" | "user" | "emoji" => v.is_string(),
        "since" | "before" | "limit" | "id" | "reply_to" => v.is_u64(),
        "private" => v.is_boolean(),
        "members" => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        _ => true,
    };
    if map
        .iter()
        .any(|(k, v)| k.as_str() != "type" && !v.is_null() && !shape_ok(k, v))
    {
        return Some("invalid_input");
    }
    (!TYPES.contains(&kind)).then_some("unknown_type")
}

fn room() -> impl Strategy<Value = RoomName<'static>> {
    "[a-z0-9_-]{1,64}".prop_map(|r| RoomName::new(r.into()).unwrap())
}

/// Content as the parse keeps it: trimmed, so not blank.
fn content() -> impl Strategy<Value = Content<'static>> {
    "\\PC{1,60}".prop_filter_map("blank", |c| Content::new(c.trim().to_string().into()).ok())
}

fn client_id() -> impl Strategy<Value = Option<ClientId<'static>>> {
    proptest::option::of("\\PC{1,64}".prop_map(|k| ClientId::new(k.into()).unwrap()))
}

fn name() -> impl Strategy<Value = Cow<'static, str>> {
    "\\PC{0,20}".prop_map(Cow::Owned)
}

fn id() -> impl Strategy<Value = u64> {
    1..=u64::MAX
}

fn conversation() -> impl Strategy<Value = Conversation<'static>> {
    prop_oneof![
        room().prop_map(Conversation::Room),
        name().prop_map(Conversation::With),
    ]
}

/// Any valid command.
fn command() -> impl Strategy<Value = Command<'static>> {
    let emoji = prop::sample::select(vec!["👍", "🇫🇷", "1️⃣", ":tada:", "👩‍💻"])
        .prop_map(|e| Emoji::new(e.into()).unwrap());
    prop_oneof![
        (room(), proptest::option::of(any::<u64>()))
            .prop_map(|(room, since)| Command::Join(Join { room, since })),
        room().prop_map(|room| Command::Leave(Leave { room })),
        (
            proptest::option::of(room()),
            content(),
            client_id(),
            proptest::option::of(id())
        )
            .prop_map(|(room, content, client_id, reply_to)| {
                Command::Message(Message {
                    room,
                    content,
                    client_id,
                    reply_to,
                    attachments: Default::default(),
                })
            }),
        (name(), content(), client_id(), proptest::option::of(id())).prop_map(
            |(to, content, client_id, reply_to)| {
                Command::PrivateMessage(PrivateMessage {
                    to,
                    content,
                    client_id,
                    reply_to,
                    attachments: Default::default(),
                })
            }
        ),
        proptest::option::of(room()).prop_map(|room| Command::Typing(Typing { room })),
        proptest::option::of(room()).prop_map(|room| Command::StopTyping(Typing { room })),
        (
            conversation(),
            proptest::option::of(any::<u64>()),
            1..=MAX_HISTORY_LIMIT
        )
            .prop_map(|(of, before, limit)| Command::History(History {
                of,
                before,
                limit
            })),
        (conversation(), id()).prop_map(|(of, id)| Command::Read(Read { of, id })),
        (room(), proptest::collection::vec(name(), 0..4))
            .prop_map(|(room, members)| Command::CreateRoom(CreateRoom { room, members })),
        (room(), name()).prop_map(|(room, user)| Command::AddMember(Membership { room, user })),
        (room(), name()).prop_map(|(room, user)| Command::RemoveMember(Membership { room, user })),
        (id(), content()).prop_map(|(id, content)| Command::Edit(Edit { id, content })),
        id().prop_map(|id| Command::Delete(Delete { id })),
        (id(), emoji).prop_map(|(id, emoji)| Command::React(React { id, emoji })),
    ]
}

/// A command as a client writes it. Content goes with some blanks around
/// it (the parse trims them), and absent optional fields as `null` or not
/// at all, alternately.
fn frame_of(c: &Command<'_>) -> Value {
    let mut f = Map::new();
    f.insert("type".into(), json!(c.kind()));
    let mut put = |k: &str, v: Value| {
        f.insert(k.into(), v);
    };
    let padded = |c: &Content<'_>| json!(format!(" {}\n", &**c));
    let conversation = |of: &Conversation<'_>| match of {
        Conversation::Room(r) => ("room", json!(&**r)),
        Conversation::With(w) => ("with", json!(w)),
    };
    match c {
        Command::Join(j) => {
            put("room", json!(&*j.room));
            put("since", json!(j.since));
        }
        Command::Leave(l) => put("room", json!(&*l.room)),
        Command::Message(m) => {
            if let Some(r) = &m.room {
                put("room", json!(&**r));
            }
            put("content", padded(&m.content));
            put("client_id", json!(m.client_id.as_deref()));
            put("reply_to", json!(m.reply_to));
        }
        Command::PrivateMessage(m) => {
            put("to", json!(m.to));
            put("content", padded(&m.content));
            if let Some(k) = &m.client_id {
                put("client_id", json!(&**k));
            }
            if let Some(r) = m.reply_to {
                put("reply_to", json!(r));
            }
        }
        Command::Typing(t) | Command::StopTyping(t) => put("room", json!(t.room.as_deref())),
        Command::History(h) => {
            let (k, v) = conversation(&h.of);
            put(k, v);
            put("before", json!(h.before));
            put("limit", json!(h.limit));
        }
        Command::Read(r) => {
            let (k, v) = conversation(&r.of);
            put(k, v);
            put("id", json!(r.id));
        }
        Command::CreateRoom(c) => {
            put("room", json!(&*c.room));
            put("private", json!(true));
            put("members", json!(c.members));
        }
        Command::AddMember(m) | Command::RemoveMember(m) => {
            put("room", json!(&*m.room));
            put("user", json!(m.user));
        }
        Command::Edit(e) => {
            put("id", json!(e.id));
            put("content", padded(&e.content));
        }
        Command::Delete(d) => put("id", json!(d.id)),
        Command::React(r) => {
            put("id", json!(r.id));
            put("emoji", json!(&*r.emoji));
        }
    }
    Value::Object(f)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    /// Arbitrary text never panics the parser; text it accepts is a JSON
    /// object whose `type` is the command's; text that is no frame is, on
    /// a room's URL, a message of that text (refused only when blank).
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}|\\{[\"a-z_:,0-9\\[\\]{} ]{0,60}\\}") {
        if let Ok(c) = Command::parse(&text, false) {
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| TestCaseError::fail(format!("accepted non-JSON: {e}")))?;
            prop_assert_eq!(v.get("type").and_then(Value::as_str), Some(c.kind()));
        }
        let not_a_frame = Command::parse(&text, false).is_err_and(|r| r.error.code == "bad_json");
        if not_a_frame {
            match Command::parse(&text, true) {
                Ok(Command::Message(m)) => prop_assert_eq!(&*m.content, text.trim()),
                Ok(c) => return Err(TestCaseError::fail(format!("{text:?}: {c:?}"))),
                Err(r) => prop_assert!(text.trim().is_empty(), "{:?}: {:?}", text, r),
            }
        }
    }

    /// Any JSON value is sorted as the contract says: a non-object is
    /// `bad_json`, an object without a string `type` or with a type the
    /// contract does not have is `unknown_type`, a mistyped field is
    /// `invalid_input` with serde's words for it; anything else is the
    /// command of its type, or refused by that type's own rules.
    #[test]
    fn json_values_are_classified_by_the_contract(v in json_value()) {
        let text = v.to_string();
        match (Command::parse(&text, false), shape_code(&v)) {
            (Ok(c), None) => prop_assert_eq!(Some(c.kind()), v["type"].as_str()),
            (Err(r), Some(code)) => {
                prop_assert_eq!(r.error.code, code, "{}", text);
                prop_assert!(!r.error.message.is_empty());
            }
            (Err(r), None) => prop_assert!(
                matches!(r.error.code, "invalid_input" | "too_long"),
                "{}: {:?}", text, r
            ),
            (got, want) => {
                return Err(TestCaseError::fail(format!("{text}: got {got:?}, want {want:?}")));
            }
        }
    }

    /// Every valid command, written as a frame, parses back to itself.
    #[test]
    fn commands_round_trip(c in command()) {
        let text = frame_of(&c).to_string();
        let back = Command::parse(&text, false)
            .map_err(|e| TestCaseError::fail(format!("{text}: {e:?}")))?;
        prop_assert_eq!(back, c, "{}", text);
    }
}
