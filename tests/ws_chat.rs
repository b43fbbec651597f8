//! WebSocket chat in rooms: connect frames, join/leave presence, messages with acks and
//! idempotent client_ids, typing, history, read receipts, replay with `since`, every
//! error code, plain-text frames, upgrade auth, rate limits.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

const NOISE: &[&str] = &["user_status"];

/// Three users, each with one `/ws` connection, all joined to `general`, all
/// presence frames drained.
fn trio(s: &Server) -> (Ws, Ws, Ws) {
    let (mut a, _) = s.user("alice");
    let (mut b, _) = s.user("bob");
    let (mut c, _) = s.user("carol");
    a.join("general");
    b.join("general");
    c.join("general");
    a.expect_after("join", NOISE);
    a.expect_after("join", NOISE);
    b.expect_after("join", NOISE);
    // Drain everything else (the user_status frames) with a round trip per connection.
    for ws in [&mut a, &mut b, &mut c] {
        ws.send_json(&json!({"type": "history", "room": "nowhere", "limit": 1}));
        ws.expect_after("history", NOISE);
    }
    (a, b, c)
}

/// The first connection gets exactly one `unread` (empty `counts` for a new user) and its own
/// `user_status` online with an RFC 3339 `last_seen`.
#[test]
fn connect_sends_unread_once_and_own_status() {
    let s = Server::start();
    let tok = s.token("alice");
    let (mut a, frames) = s.ws_ready("alice", &tok, true);
    assert_eq!(frames.len(), 2, "{frames:?}");
    let unread = frames.iter().find(|f| frame_type(f) == "unread").unwrap();
    assert_eq!(unread, &json!({"type": "unread", "counts": []}));
    let st = frames
        .iter()
        .find(|f| frame_type(f) == "user_status")
        .unwrap();
    assert_keys(st, &["last_seen", "status", "type", "user"]);
    assert!(st["last_seen"].as_str().is_some_and(is_rfc3339), "{st}");
    a.expect_silence(300);
    // A second connection gets `unread` too, but no user_status (not the first connection).
    let (mut a2, frames) = s.ws_ready("alice", &tok, false);
    assert_eq!(frames, vec![json!({"type": "unread", "counts": []})]);
    a2.expect_silence(200);
    a.expect_silence(100);
}

/// `join` answers `online_users` `{room, users, count}` (no `recovered` without `since`); others
/// in the room get `join` `{room, user}`, the joiner does not.
#[test]
fn join_replies_online_users_and_announces() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    let ou = a.join("general");
    assert_eq!(
        ou,
        json!({"type": "online_users", "room": "general", "users": ["alice"], "count": 1})
    );
    let (mut b, _) = s.user("bob");
    a.expect("user_status");
    let ou = b.join("general");
    assert_keys(&ou, &["count", "room", "type", "users"]);
    assert_eq!(str_set(&ou["users"]), strs(&["alice", "bob"]));
    assert_eq!(ou["count"], 2);
    assert_eq!(
        a.expect("join"),
        json!({"type": "join", "room": "general", "user": "bob"})
    );
    b.expect_silence(200);
    // Joining another room does not announce in general.
    b.join("support");
    a.expect_silence(200);
}

/// Presence `join`/`leave` go out only on a user's first/last connection in a room; closing
/// the last joined connection also announces `leave`; the last connection overall
/// announces `user_status` offline.
#[test]
fn presence_only_on_first_and_last_connection() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    a.join("general");
    let tb = s.token("bob");
    let (mut b1, _) = s.ws_ready("bob", &tb, true);
    a.expect("user_status");
    b1.join("general");
    assert_eq!(a.expect("join")["user"], "bob");
    let (mut b2, _) = s.ws_ready("bob", &tb, false);
    let ou = b2.join("general");
    assert_eq!(ou["count"], 2, "distinct users: {ou}");
    a.expect_silence(250);
    b1.expect_silence(50);
    b2.send_json(&json!({"type": "leave", "room": "general"}));
    a.expect_silence(250);
    b1.send_json(&json!({"type": "leave", "room": "general"}));
    assert_eq!(
        a.expect("leave"),
        json!({"type": "leave", "room": "general", "user": "bob"})
    );
    b1.join("general");
    assert_eq!(a.expect("join")["user"], "bob");
    b1.drop_tcp();
    assert_eq!(
        a.expect("leave"),
        json!({"type": "leave", "room": "general", "user": "bob"})
    );
    a.expect_silence(250); // b2 still open: bob is not offline
    b2.close();
    let st = a.expect("user_status");
    assert_eq!(st["user"], "bob");
    assert_eq!(st["status"], "offline");
    assert!(st["last_seen"].as_str().is_some_and(is_rfc3339), "{st}");
}

/// `leave` of a room this connection has not joined is `not_member`.
#[test]
fn leave_without_join_is_not_member() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    a.send_json(&json!({"type": "leave", "room": "general"}));
    a.expect_error("not_member");
}

/// A message is fanned out to every other connection in the room (not back to the sender,
/// not outside the room) and acked to the sender with the same id and timestamp.
#[test]
fn message_fans_out_and_is_acked() {
    let s = Server::start();
    let (mut a, mut b, mut c) = trio(&s);
    let (mut d, _) = s.user("dave");
    for ws in [&mut a, &mut b, &mut c] {
        ws.expect("user_status");
    }
    a.send_json(
        &json!({"type": "message", "room": "general", "content": "hello", "client_id": "c-1"}),
    );
    let ack = a.expect("ack");
    assert_keys(&ack, &["client_id", "id", "timestamp", "type"]);
    assert_eq!(ack["client_id"], "c-1");
    assert!(ack["id"].is_i64(), "integer id: {ack}");
    assert!(
        is_rfc3339_millis(ack["timestamp"].as_str().unwrap()),
        "{ack}"
    );
    for ws in [&mut b, &mut c] {
        let m = ws.expect("message");
        assert_eq!(
            m,
            json!({"type": "message", "id": ack["id"], "room": "general", "user": "alice",
                   "content": "hello", "timestamp": ack["timestamp"]})
        );
    }
    a.expect_silence(200);
    d.expect_silence(10);
    // Without client_id the ack carries no client_id.
    a.send_json(&json!({"type": "message", "room": "general", "content": "again"}));
    let ack2 = a.expect("ack");
    assert!(ack2.get("client_id").is_none_or(Value::is_null), "{ack2}");
    assert!(ack2["id"].as_i64() > ack["id"].as_i64());
    assert_eq!(b.expect("message")["content"], "again");
}

/// Content survives the round trip byte for byte: quotes, backslashes, newlines, control
/// characters, HTML, non-BMP characters (in the live frame, the ack'd history and over HTTP).
#[test]
fn content_round_trips_exactly() {
    let s = Server::start();
    let (mut a, mut b, _c) = trio(&s);
    let text = "h\u{e9}llo \u{1F389} \"quoted\" back\\slash\nline\ttab \u{1}\u{1f} <script>alert(1)</script> \u{2028} end";
    let ack = a.say("general", text, "u");
    let m = b.expect("message");
    assert_eq!(m["content"], text);
    let tok = s.login_token("bob");
    let h = s.messages(&tok, "room=general");
    assert_eq!(h[0]["content"], text);
    assert_eq!(h[0]["id"], ack["id"]);
    assert_eq!(
        h[0]["timestamp"], ack["timestamp"],
        "stored timestamp is the acked one"
    );
}

/// Message ids are unique and increasing across rooms.
#[test]
fn ids_increase_across_rooms() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    a.join("one");
    a.join("two");
    let mut last = 0;
    for i in 0..6 {
        let room = if i % 2 == 0 { "one" } else { "two" };
        let id = a.say(room, "x", &format!("k{i}"))["id"].as_i64().unwrap();
        assert!(id > last, "id {id} after {last}");
        last = id;
    }
}

/// A resend with an already used client_id gets the first ack again (same id and timestamp)
/// and is neither stored nor fanned out again, also when both copies arrive back to back and
/// after a reconnect; another user may use the same client_id.
#[test]
fn duplicate_client_id_is_idempotent() {
    let s = Server::start();
    let (mut a, mut b, _c) = trio(&s);
    let first = a.say("general", "once", "dup-1");
    assert_eq!(b.expect("message")["id"], first["id"]);
    a.send_json(&json!({"type": "message", "room": "general", "content": "once (retry)", "client_id": "dup-1"}));
    assert_eq!(a.expect("ack"), first);
    b.expect_silence(300);

    // Two copies in one write, before the first is stored.
    a.write_json(
        &json!({"type": "message", "room": "general", "content": "twin", "client_id": "dup-2"}),
    );
    a.write_json(
        &json!({"type": "message", "room": "general", "content": "twin", "client_id": "dup-2"}),
    );
    a.flush();
    let x = a.expect("ack");
    let y = a.expect("ack");
    assert_eq!(x, y, "both copies get the same ack");
    assert_eq!(b.expect("message")["id"], x["id"]);
    b.expect_silence(300);

    // After a reconnect.
    a.close();
    b.expect_after("leave", NOISE);
    let ta = s.login_token("alice");
    let (mut a2, _) = s.ws_ready("alice", &ta, true);
    a2.join("general");
    a2.send_json(
        &json!({"type": "message", "room": "general", "content": "once", "client_id": "dup-1"}),
    );
    assert_eq!(a2.expect("ack"), first);
    b.expect_after("join", NOISE);
    b.expect_silence(300);

    // Another user's identical client_id is a new message.
    let other = b.say("general", "mine", "dup-1");
    assert_ne!(other["id"], first["id"]);
    let tok = s.login_token("carol");
    let all = s.messages(&tok, "room=general");
    assert_eq!(all.len(), 3, "stored once each: {all:?}");
}

/// client_id must be 1-64 characters: "" and 65 characters are `invalid_input` (echoing the
/// client_id), 64 are fine.
#[test]
fn client_id_length_is_validated() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    a.join("general");
    a.send_json(&json!({"type": "message", "room": "general", "content": "x", "client_id": ""}));
    a.expect_error("invalid_input");
    let long = "k".repeat(65);
    a.send_json(&json!({"type": "message", "room": "general", "content": "x", "client_id": long}));
    assert_eq!(a.expect_error("invalid_input")["client_id"], long);
    a.say("general", "x", &"k".repeat(64));
}

/// Content is 1-4000 characters after trimming: empty or blank is `invalid_input`, 4001 is
/// `too_long` (error echoes client_id), 4000 (also 4000 two-byte characters, or 4000 plus
/// surrounding spaces) is accepted; a missing or non-string content is `invalid_input`.
#[test]
fn content_length_is_validated() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    a.join("general");
    for c in [
        json!(""),
        json!("   \n\t "),
        json!(42),
        json!(null),
        json!(["x"]),
    ] {
        a.send_json(&json!({"type": "message", "room": "general", "content": c}));
        a.expect_error("invalid_input");
    }
    a.send_json(&json!({"type": "message", "room": "general"}));
    a.expect_error("invalid_input");
    a.send_json(&json!({"type": "message", "room": "general", "content": "x".repeat(4001), "client_id": "big"}));
    assert_eq!(a.expect_error("too_long")["client_id"], "big");
    a.say("general", &"x".repeat(4000), "ok-1");
    a.say("general", &"é".repeat(4000), "ok-2");
    a.say("general", &format!("  {}  ", "y".repeat(4000)), "ok-3");
}

/// Room names are 1-64 of `[a-z0-9_-]`; anything else in `join` is `invalid_input`.
#[test]
fn room_names_are_validated() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    for r in [
        json!(""),
        json!("General"),
        json!("a b"),
        json!("a.b"),
        json!("ü"),
        json!("a".repeat(65)),
        json!(7),
    ] {
        a.send_json(&json!({"type": "join", "room": r}));
        a.expect_error("invalid_input");
    }
    a.send_json(&json!({"type": "join"}));
    a.expect_error("invalid_input");
    let ou = a.join(&"a".repeat(64));
    assert_eq!(ou["count"], 1);
    a.join("x_y-1");
}

/// Every error keeps the connection open: `bad_json` (malformed text, binary frame),
/// `unknown_type` (unknown, missing or non-string `type`), `not_member` (message, typing,
/// stop_typing, read of an existing message, after leaving); afterwards a message still gets its ack.
#[test]
fn errors_keep_the_connection_open() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    a.send_text("{oops");
    a.expect_error("bad_json");
    a.send_binary(br#"{"type":"join","room":"general"}"#);
    a.expect_error("bad_json");
    for f in [
        json!({"type": "dance"}),
        json!({}),
        json!({"type": 5}),
        json!({"room": "general"}),
    ] {
        a.send_json(&f);
        a.expect_error("unknown_type");
    }
    a.join("general");
    let id = a.say("general", "first", "k0")["id"].clone();
    a.send_json(&json!({"type": "leave", "room": "general"}));
    for f in [
        json!({"type": "message", "room": "general", "content": "x"}),
        json!({"type": "typing", "room": "general"}),
        json!({"type": "stop_typing", "room": "general"}),
    ] {
        a.send_json(&f);
        a.expect_error("not_member");
    }
    // `read` needs no `join` (the contract): no error, nothing back.
    a.send_json(&json!({"type": "read", "room": "general", "id": id}));
    a.expect_silence(200);
    a.join("general");
    a.say("general", "still here", "k");
}

/// On `/ws` (no room in the URL) a text frame that is not a JSON object gets an error
/// (`bad_json`) instead of becoming a message.
#[test]
fn plain_text_on_bare_ws_is_an_error() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    a.join("general");
    for t in ["hello there", "[1,2]", "\"str\"", "42"] {
        a.send_text(t);
        a.expect_error("bad_json");
    }
    a.expect_silence(100);
}

/// On `/ws/room/{name}` a text frame that is not a JSON object is a message with that text as
/// content (websocat style), malformed JSON included; the sender gets an ack; JSON objects
/// still work as frames.
#[test]
fn plain_text_on_room_url_becomes_a_message() {
    let s = Server::start();
    let (mut b, _) = s.user("bob");
    b.join("general");
    let ta = s.token("alice");
    let mut a = s.ws("/ws/room/general", &ta);
    a.ready("alice", true);
    b.expect_after("join", NOISE);
    a.send_text("hello from websocat");
    let ack = a.expect_after("ack", &["online_users"]);
    let m = b.expect("message");
    assert_eq!(m["content"], "hello from websocat");
    assert_eq!(m["room"], "general");
    assert_eq!(m["user"], "alice");
    assert_eq!(m["id"], ack["id"]);
    for t in ["[1,2]", "\"quoted\"", "7"] {
        a.send_text(t);
        a.expect("ack");
        assert_eq!(b.expect("message")["content"], t);
    }
    a.send_json(&json!({"type": "typing", "room": "general"}));
    assert_eq!(b.expect("typing")["user"], "alice");
    // The room-URL connection is joined: it receives the room's messages.
    let ack = b.say("general", "to the websocat user", "b1");
    let m = a.expect("message");
    assert_eq!(
        (m["id"].clone(), m["user"].as_str()),
        (ack["id"].clone(), Some("bob"))
    );
    // Not a JSON object, so also a message (not a `bad_json` error) on a room URL.
    a.send_text("{broken");
    a.expect("ack");
    assert_eq!(b.expect("message")["content"], "{broken");
}

/// An upgrade without a token, or with a bad one, is HTTP 401 and no upgrade (on `/ws` and `/ws/room/R`).
#[test]
fn upgrade_needs_a_valid_token() {
    let s = Server::start();
    s.token("alice");
    for path in [
        "/ws",
        "/ws?token=",
        "/ws?token=garbage",
        "/ws/room/general",
        "/ws/room/general?token=x.y.z",
    ] {
        match ws_connect(s.addr, path, None) {
            Err(ConnectError::Http(401, _)) => {}
            other => panic!(
                "{path}: expected HTTP 401, got {:?}",
                other.map(|_| "101 upgrade")
            ),
        }
    }
    match ws_connect(s.addr, "/ws", Some("garbage")) {
        Err(ConnectError::Http(401, _)) => {}
        other => panic!(
            "bad bearer: expected HTTP 401, got {:?}",
            other.map(|_| "101 upgrade")
        ),
    }
}

/// `typing` / `stop_typing` go to the others in the room with `user`, not to the sender or
/// other rooms, and are not stored.
#[test]
fn typing_indicators_are_relayed_not_stored() {
    let s = Server::start();
    let (mut a, mut b, mut c) = trio(&s);
    let (mut d, td) = s.user("dave");
    for ws in [&mut a, &mut b, &mut c] {
        ws.expect("user_status");
    }
    for ty in ["typing", "stop_typing"] {
        a.send_json(&json!({"type": ty, "room": "general"}));
        for ws in [&mut b, &mut c] {
            assert_eq!(
                ws.expect(ty),
                json!({"type": ty, "room": "general", "user": "alice"})
            );
        }
    }
    a.expect_silence(200);
    d.expect_silence(10);
    assert!(s.messages(&td, "room=general").is_empty());
}

/// `history` answers `{"type":"history","room","messages"}` oldest first with `before`/`limit`;
/// a public room need not be joined.
#[test]
fn history_of_a_room() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    a.join("general");
    let ids: Vec<Value> = (0..5)
        .map(|i| a.say("general", &format!("m{i}"), &format!("k{i}"))["id"].clone())
        .collect();
    let (mut b, _) = s.user("bob");
    b.send_json(&json!({"type": "history", "room": "general"}));
    let h = b.expect("history");
    assert_keys(&h, &["messages", "room", "type"]);
    assert_eq!(h["room"], "general");
    let msgs = h["messages"].as_array().unwrap();
    assert_eq!(
        msgs.iter().map(|m| m["id"].clone()).collect::<Vec<_>>(),
        ids
    );
    assert_keys(&msgs[0], &["content", "id", "room", "timestamp", "user"]);
    assert_eq!(msgs[4]["content"], "m4");
    b.send_json(&json!({"type": "history", "room": "general", "before": ids[3], "limit": 2}));
    let h = b.expect("history");
    assert_eq!(
        h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].clone())
            .collect::<Vec<_>>(),
        ids[1..3]
    );
    b.send_json(&json!({"type": "history", "room": "Bad Room"}));
    b.expect_error("invalid_input");
}

/// `read` moves the marker and sends `{"type":"read","room","user","id"}` to every other
/// connection joined to the room (the user's own other connection included).
#[test]
fn read_receipts_in_a_room() {
    let s = Server::start();
    let (mut a, mut b, mut c) = trio(&s);
    let tb = s.login_token("bob");
    let (mut b2, _) = s.ws_ready("bob", &tb, false);
    b2.join("general");
    let id = a.say("general", "read me", "r1")["id"].clone();
    b.expect("message");
    c.expect("message");
    b2.expect("message");
    b.send_json(&json!({"type": "read", "room": "general", "id": id}));
    let receipt = json!({"type": "read", "room": "general", "user": "bob", "id": id});
    assert_eq!(a.expect("read"), receipt);
    assert_eq!(c.expect("read"), receipt);
    assert_eq!(b2.expect("read"), receipt);
    b.expect_silence(200);
}

/// `join` with `since` replays every stored message with a larger id, in order, as `message`
/// frames, then `online_users` with `recovered: true`; nothing newer means just `recovered: true`.
#[test]
fn join_since_replays_missed_messages() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    a.join("general");
    let ids: Vec<i64> = (0..5)
        .map(|i| {
            a.say("general", &format!("m{i}"), &format!("k{i}"))["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let (mut b, _) = s.user("bob");
    a.expect("user_status");
    b.send_json(&json!({"type": "join", "room": "general", "since": ids[1]}));
    for (i, id) in ids.iter().enumerate().skip(2) {
        let m = b.expect("message");
        assert_eq!(m["id"], *id);
        assert_eq!(m["content"], format!("m{i}"));
        assert_eq!(m["room"], "general");
        assert_eq!(m["user"], "alice");
    }
    let ou = b.expect("online_users");
    assert_keys(&ou, &["count", "recovered", "room", "type", "users"]);
    assert_eq!(ou["recovered"], true);
    b.send_json(&json!({"type": "leave", "room": "general"}));
    b.send_json(&json!({"type": "join", "room": "general", "since": ids[4]}));
    assert_eq!(b.expect("online_users")["recovered"], true);
}

/// With more than 1000 missed messages `join`+`since` replays the newest 1000 in order and
/// says `recovered: false`; exactly 1000 missed is still `recovered: true`.
#[test]
fn join_since_caps_replay_at_1000() {
    let s = Server::builder().rate_limit(0).start();
    let (mut a, _) = s.user("alice");
    a.join("general");
    let contents: Vec<String> = (0..1005).map(|i| format!("m{i}")).collect();
    let ids: Vec<i64> = a
        .say_many("general", &contents, "k")
        .iter()
        .map(|x| x["id"].as_i64().unwrap())
        .collect();
    let (mut b, _) = s.user("bob");
    for (since, expect_from, recovered) in [(0, 5, false), (ids[4], 5, true)] {
        b.send_json(&json!({"type": "join", "room": "general", "since": since}));
        for id in &ids[expect_from..] {
            let m = b.expect("message");
            assert_eq!(m["id"], *id, "since {since}");
        }
        let ou = b.expect("online_users");
        assert_eq!(ou["recovered"], recovered, "since {since}: {ou}");
        b.send_json(&json!({"type": "leave", "room": "general"}));
    }
}

/// Per-connection rate limit (default 20/s, burst 40): a burst of 60 messages gets about 40
/// acks and `rate_limited` errors (with client_id) for the rest; those are not stored; after a
/// pause the connection may send again.
#[test]
fn rate_limit_default_burst_40() {
    let s = Server::start();
    let (mut a, ta) = s.user("alice");
    a.join("general");
    for i in 0..60 {
        a.write_json(&json!({"type": "message", "room": "general", "content": "spam", "client_id": format!("s{i}")}));
    }
    a.flush();
    let (mut acks, mut limited) = (0, 0);
    for _ in 0..60 {
        let f = a.recv();
        match frame_type(&f) {
            "ack" => acks += 1,
            "error" => {
                assert_eq!(f["code"], "rate_limited", "{f}");
                assert!(
                    f["client_id"].is_string(),
                    "rate_limited error echoes client_id: {f}"
                );
                limited += 1;
            }
            _ => panic!("unexpected {f}"),
        }
    }
    // The join used one token of the burst of 40.
    assert!(
        (39..=43).contains(&acks),
        "acks {acks}, rate_limited {limited}"
    );
    assert_eq!(acks + limited, 60);
    assert_eq!(s.messages(&ta, "room=general&limit=200").len(), acks);
    std::thread::sleep(Duration::from_millis(1100));
    a.say("general", "after a pause", "later");
}

/// `--rate-limit 5` sets 5/s with burst 10; typing frames count too.
#[test]
fn rate_limit_flag_sets_rate_and_burst() {
    let s = Server::builder().rate_limit(5).start();
    let (mut a, _) = s.user("alice");
    a.join("general");
    for _ in 0..20 {
        a.write_json(&json!({"type": "typing", "room": "general"}));
    }
    a.flush();
    let mut limited = 0;
    while let Event::Frame(f) = a.next_event(Duration::from_millis(500)) {
        assert_eq!(f["code"], "rate_limited", "{f}");
        limited += 1;
    }
    // Burst 10, one token used by the join: 9 pass (10 with a refill), the rest are limited.
    assert!(
        (10..=11).contains(&limited),
        "20 typing frames at burst 10: {limited} rate_limited errors"
    );
}

/// The rate limit is per connection: a second connection of the same user has its own budget.
#[test]
fn rate_limit_is_per_connection() {
    let s = Server::start();
    let (mut a1, ta) = s.user("alice");
    let (mut a2, _) = s.ws_ready("alice", &ta, false);
    a1.join("general");
    a2.join("general");
    for i in 0..45 {
        a1.write_json(&json!({"type": "typing", "room": "general", "n": i}));
    }
    a1.flush();
    let (f, _) = a1.recv_until("error");
    assert_eq!(f["code"], "rate_limited");
    a2.say("general", "my own budget", "own");
}
