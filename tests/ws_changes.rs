//! Edits, deletes, reactions, replies and mentions over real sockets: who may
//! do each, the exact frames everyone who may read the message gets, and how
//! history, `since` replays, `GET /api/messages` and `unread` show them after.

mod common;

use common::*;
use serde_json::{Value, json};

/// A room with alice (the sender) and bob (a reader) joined, and carol
/// connected but not joined; returns the id of alice's first message.
fn room_of_three(s: &Server) -> (Ws, Ws, Ws, u64) {
    let (mut a, _) = s.user("alice");
    let (mut b, _) = s.user("bob");
    let (mut c, _) = s.user("carol");
    a.join("general");
    b.join("general");
    for ws in [&mut a, &mut b, &mut c] {
        ws.sync();
    }
    let id = a.say("general", "helo", "m-1")["id"].as_u64().unwrap();
    b.expect_after("message", &["join"]);
    (a, b, c, id)
}

/// `edit` by the author: the author's connection and every subscriber get
/// `{"type":"message_edited","id","room","content","edited_at"}` (the same
/// bytes); someone not joined gets nothing; history and `GET /api/messages`
/// show the new content with `edited_at`.
#[test]
fn the_author_edits_and_subscribers_see_it() {
    let s = Server::start();
    let (mut a, mut b, mut c, id) = room_of_three(&s);
    a.send_json(&json!({"type": "edit", "id": id, "content": "  hello  "}));
    let mine = a.expect("message_edited");
    assert_keys(&mine, &["content", "edited_at", "id", "room", "type"]);
    assert_eq!(
        (&mine["id"], &mine["room"], &mine["content"]),
        (&json!(id), &json!("general"), &json!("hello"))
    );
    assert!(is_rfc3339_millis(mine["edited_at"].as_str().unwrap()));
    assert_eq!(b.expect("message_edited"), mine);
    c.expect_silence(200);
    a.expect_silence(10);

    b.send_json(&json!({"type": "history", "room": "general"}));
    let h = b.expect("history");
    let m = &h["messages"][0];
    assert_eq!(
        (&m["content"], &m["edited_at"]),
        (&json!("hello"), &mine["edited_at"])
    );
    let api = s.messages(&s.login_token("bob"), "room=general");
    assert_eq!(api[0]["content"], "hello");
    assert_eq!(api[0]["edited_at"], mine["edited_at"]);
}

/// Only the author edits: anyone else gets `forbidden`, and nothing changes;
/// a missing message is `invalid_input`; content follows the message rules.
#[test]
fn only_the_author_edits() {
    let s = Server::start();
    let (mut a, mut b, _c, id) = room_of_three(&s);
    b.send_json(&json!({"type": "edit", "id": id, "content": "hijacked"}));
    b.expect_error("forbidden");
    a.expect_silence(200);
    a.send_json(&json!({"type": "edit", "id": id + 1000, "content": "x"}));
    a.expect_error("invalid_input");
    a.send_json(&json!({"type": "edit", "id": id, "content": "   "}));
    a.expect_error("invalid_input");
    a.send_json(&json!({"type": "edit", "id": id, "content": "x".repeat(4001)}));
    a.expect_error("too_long");
    a.send_json(&json!({"type": "edit", "content": "no id"}));
    a.expect_error("invalid_input");
    let api = s.messages(&s.login_token("bob"), "room=general");
    assert_eq!(api[0]["content"], "helo");
    assert!(api[0].get("edited_at").is_none(), "{}", api[0]);
}

/// `delete` by the author: `{"type":"message_deleted","id","room"}` to the
/// author and subscribers; from then on the message is in no history, no
/// replay and no search, and a second delete is `invalid_input`. Someone
/// else's delete is `forbidden`.
#[test]
fn the_author_deletes_and_it_is_gone_everywhere() {
    let s = Server::start();
    let (mut a, mut b, _c, id) = room_of_three(&s);
    let keep = a.say("general", "keep this", "m-2")["id"].as_u64().unwrap();
    b.expect("message");
    b.send_json(&json!({"type": "delete", "id": id}));
    b.expect_error("forbidden");

    a.send_json(&json!({"type": "delete", "id": id}));
    let gone = json!({"type": "message_deleted", "id": id, "room": "general"});
    assert_eq!(a.expect("message_deleted"), gone);
    assert_eq!(b.expect("message_deleted"), gone);
    a.send_json(&json!({"type": "delete", "id": id}));
    a.expect_error("invalid_input");

    let tb = s.login_token("bob");
    let ids: Vec<u64> = s
        .messages(&tb, "room=general")
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [keep]);
    let mut late = s.ws("/ws", &tb);
    late.ready("bob", false);
    late.send_json(&json!({"type": "join", "room": "general", "since": 0}));
    let (online, replay) = late.recv_until("online_users");
    assert_eq!(online["recovered"], true);
    let replayed: Vec<&Value> = replay
        .iter()
        .filter(|f| frame_type(f) == "message")
        .collect();
    assert_eq!(replayed.len(), 1, "{replay:?}");
    assert_eq!(replayed[0]["id"], keep);
    let found = s.get("/api/search?q=helo", Some(&tb)).json();
    assert_eq!(found["messages"], json!([]));
}

/// The owner of a private room may delete anyone's message in it; a member
/// who is not the author may not.
#[test]
fn a_private_rooms_owner_deletes_any_message() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    let (mut b, _) = s.user("bob");
    let (mut c, _) = s.user("carol");
    a.create_room("team", &["bob", "carol"]);
    b.recv_until("room_members");
    c.recv_until("room_members");
    b.join("team");
    c.join("team");
    a.sync();
    let id = b.say("team", "off topic", "b-1")["id"].as_u64().unwrap();
    a.expect_after("message", &["join"]);
    c.expect_after("message", &["join"]);
    c.send_json(&json!({"type": "delete", "id": id}));
    c.expect_error("forbidden");
    a.send_json(&json!({"type": "delete", "id": id}));
    let gone = json!({"type": "message_deleted", "id": id, "room": "team"});
    assert_eq!(a.expect("message_deleted"), gone);
    assert_eq!(b.expect("message_deleted"), gone);
    assert_eq!(c.expect("message_deleted"), gone);
}

/// `react` toggles: the first sends `reaction … "on":true` to the reactor
/// and subscribers, the second `"on":false`; message objects list
/// `reactions` as `[{"emoji","users":[...]}]` in the order emoji first
/// came, and drop an emoji nobody holds any more.
#[test]
fn reactions_toggle_and_show_who_reacted() {
    let s = Server::start();
    let (mut a, mut b, _c, id) = room_of_three(&s);
    b.send_json(&json!({"type": "react", "id": id, "emoji": "👍"}));
    let on = json!({"type": "reaction", "id": id, "room": "general", "emoji": "👍",
                    "user": "bob", "on": true});
    assert_eq!(b.expect("reaction"), on);
    assert_eq!(a.expect("reaction"), on);
    a.send_json(&json!({"type": "react", "id": id, "emoji": ":tada:"}));
    a.expect("reaction");
    b.expect("reaction");
    a.send_json(&json!({"type": "react", "id": id, "emoji": "👍"}));
    a.expect("reaction");
    b.expect("reaction");
    let tb = s.login_token("bob");
    assert_eq!(
        s.messages(&tb, "room=general")[0]["reactions"],
        json!([{"emoji": "👍", "users": ["bob", "alice"]}, {"emoji": ":tada:", "users": ["alice"]}])
    );
    b.send_json(&json!({"type": "react", "id": id, "emoji": "👍"}));
    let off = b.expect("reaction");
    assert_eq!(off["on"], false);
    assert_eq!(a.expect("reaction"), off);
    a.send_json(&json!({"type": "react", "id": id, "emoji": "👍"}));
    a.expect("reaction");
    b.expect("reaction");
    assert_eq!(
        s.messages(&tb, "room=general")[0]["reactions"],
        json!([{"emoji": ":tada:", "users": ["alice"]}])
    );
}

/// A reaction must be one emoji or a `:name:`; markup, words and several
/// emoji are `invalid_input`. A message of a private room the reactor is
/// not in is `forbidden`.
#[test]
fn reactions_are_one_emoji_by_someone_who_may_read() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    let (mut m, _) = s.user("mallory");
    a.create_room("secret", &[]);
    let id = a.say("secret", "plans", "a-1")["id"].as_u64().unwrap();
    for bad in [
        "<img src=x onerror=alert(1)>",
        "lol",
        "👍👍",
        "",
        ":Bad Name:",
    ] {
        a.send_json(&json!({"type": "react", "id": id, "emoji": bad}));
        a.expect_error("invalid_input");
    }
    a.send_json(&json!({"type": "react", "id": id}));
    a.expect_error("invalid_input");
    m.send_json(&json!({"type": "react", "id": id, "emoji": "👍"}));
    m.expect_error("forbidden");
    m.send_json(&json!({"type": "edit", "id": id, "content": "x"}));
    m.expect_error("forbidden");
    m.send_json(&json!({"type": "delete", "id": id}));
    m.expect_error("forbidden");
    a.expect_silence(200);
}

/// A message carries at most 20 different emoji: the 21st is refused with
/// `invalid_input`, and taking one back is always allowed.
#[test]
fn a_message_holds_a_bounded_number_of_emoji() {
    let s = Server::builder().rate_limit(0).start();
    let (mut a, _) = s.user("alice");
    a.join("general");
    let id = a.say("general", "vote", "a-1")["id"].as_u64().unwrap();
    for i in 0..20 {
        a.send_json(&json!({"type": "react", "id": id, "emoji": format!(":e{i}:")}));
        assert_eq!(a.expect("reaction")["on"], true);
    }
    a.send_json(&json!({"type": "react", "id": id, "emoji": ":one-more:"}));
    a.expect_error("invalid_input");
    a.send_json(&json!({"type": "react", "id": id, "emoji": ":e0:"}));
    assert_eq!(a.expect("reaction")["on"], false);
}

/// `reply_to` on a room message: the live frame, the ack'd history and the
/// replay carry it. A `reply_to` that is not a message of the same room is
/// `invalid_input` with the `client_id`, and nothing is stored or sent.
#[test]
fn replies_carry_their_parent() {
    let s = Server::start();
    let (mut a, mut b, _c, id) = room_of_three(&s);
    b.send_json(
        &json!({"type": "message", "room": "general", "content": "what?",
                        "reply_to": id, "client_id": "r-1"}),
    );
    let ack = b.expect("ack");
    let live = a.expect("message");
    assert_eq!(live["reply_to"], id);
    assert_eq!(live["id"], ack["id"]);
    let ta = s.login_token("alice");
    let msgs = s.messages(&ta, "room=general");
    assert_eq!(msgs[1]["reply_to"], id);
    assert!(msgs[0].get("reply_to").is_none());

    b.send_json(
        &json!({"type": "private_message", "to": "alice", "content": "x",
                        "reply_to": id, "client_id": "r-2"}),
    );
    let e = b.expect_error("invalid_input");
    assert_eq!(e["client_id"], "r-2");
    a.send_json(&json!({"type": "join", "room": "other"}));
    a.expect("online_users");
    a.send_json(&json!({"type": "message", "room": "other", "content": "y",
                        "reply_to": id, "client_id": "r-3"}));
    assert_eq!(a.expect_error("invalid_input")["client_id"], "r-3");
    b.send_json(
        &json!({"type": "message", "room": "general", "content": "z",
                        "reply_to": 999_999, "client_id": "r-4"}),
    );
    b.expect_error("invalid_input");
    assert_eq!(s.messages(&ta, "room=general").len(), 2);
    a.expect_silence(100);
}

/// `@name` of someone who may read the message sends every connection of
/// theirs `{"type":"mention","message":{...}}`, joined or not; the author
/// naming themselves, unknown names and emails notify nobody; a reconnect's
/// `unread` carries `"mentions":N` for the room.
#[test]
fn mentions_reach_the_named_user_anywhere() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    let (mut b, tb) = s.user("bob");
    let (mut b2, _) = s.ws_ready("bob", &tb, false);
    let (mut c, _) = s.user("carol");
    a.join("general");
    for ws in [&mut b, &mut b2, &mut c] {
        ws.sync();
    }
    let ack = a.say(
        "general",
        "hey @Bob, see bob@example.org @alice @nobody",
        "m-1",
    );
    for ws in [&mut b, &mut b2] {
        let m = ws.expect("mention");
        assert_eq!(
            m["message"],
            json!({"id": ack["id"], "room": "general", "user": "alice",
                   "content": "hey @Bob, see bob@example.org @alice @nobody",
                   "timestamp": ack["timestamp"]})
        );
    }
    c.expect_silence(200);
    a.expect_silence(10);
    a.say("general", "plain", "m-2");
    b.close();
    b2.close();
    let mut again = s.ws("/ws", &tb);
    // Back within the presence grace: no `user_status`, just `unread`.
    let frames = again.ready("bob", false);
    let unread = frames.iter().find(|f| frame_type(f) == "unread").unwrap();
    assert_eq!(
        unread["counts"],
        json!([{"room": "general", "count": 2, "mentions": 1}])
    );
}

/// Mentions respect privacy: naming a non-member in a private room tells
/// them nothing; in a conversation only the peer is notified.
#[test]
fn mentions_only_reach_who_may_read() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    let (mut b, _) = s.user("bob");
    let (mut m, _) = s.user("mallory");
    a.create_room("secret", &["bob"]);
    b.recv_until("room_members");
    m.sync();
    a.say("secret", "@bob and @mallory", "s-1");
    assert_eq!(b.expect("mention")["message"]["room"], "secret");
    m.expect_silence(200);
    a.send_json(
        &json!({"type": "private_message", "to": "bob", "content": "@bob @mallory",
                        "client_id": "p-1"}),
    );
    a.expect("ack");
    let frames = [b.recv(), b.recv()];
    let mention = frames.iter().find(|f| frame_type(f) == "mention").unwrap();
    assert_eq!(
        (&mention["message"]["from"], &mention["message"]["to"]),
        (&json!("alice"), &json!("bob"))
    );
    assert!(frames.iter().any(|f| frame_type(f) == "private_message"));
    m.expect_silence(200);
}

/// Edits, deletes and reactions of a private message go to both users'
/// connections with `from` and `to`; a third user cannot touch it.
#[test]
fn conversation_changes_reach_both_users() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    let (mut b, _) = s.user("bob");
    let (mut m, _) = s.user("mallory");
    for ws in [&mut a, &mut b, &mut m] {
        ws.sync();
    }
    a.send_json(
        &json!({"type": "private_message", "to": "bob", "content": "hi", "client_id": "p"}),
    );
    let id = a.expect("ack")["id"].as_u64().unwrap();
    a.expect("delivered");
    b.expect("private_message");
    m.send_json(&json!({"type": "react", "id": id, "emoji": "👀"}));
    m.expect_error("forbidden");
    b.send_json(&json!({"type": "react", "id": id, "emoji": "👀"}));
    let r = json!({"type": "reaction", "id": id, "from": "alice", "to": "bob", "emoji": "👀",
                   "user": "bob", "on": true});
    assert_eq!(b.expect("reaction"), r);
    assert_eq!(a.expect("reaction"), r);
    a.send_json(&json!({"type": "edit", "id": id, "content": "hi!"}));
    let e = a.expect("message_edited");
    assert_eq!(
        (&e["from"], &e["to"], &e["content"]),
        (&json!("alice"), &json!("bob"), &json!("hi!"))
    );
    assert_eq!(b.expect("message_edited"), e);
    a.send_json(&json!({"type": "delete", "id": id}));
    let d = json!({"type": "message_deleted", "id": id, "from": "alice", "to": "bob"});
    assert_eq!(a.expect("message_deleted"), d);
    assert_eq!(b.expect("message_deleted"), d);
    m.expect_silence(100);
    b.send_json(&json!({"type": "history", "with": "alice"}));
    assert_eq!(b.expect("history")["messages"], json!([]));
}

/// A `since` replay carries messages as they are now: edited content with
/// `edited_at`, and their reactions.
#[test]
fn replays_show_edits_and_reactions() {
    let s = Server::start();
    let (mut a, mut b, _c, id) = room_of_three(&s);
    a.send_json(&json!({"type": "edit", "id": id, "content": "hello"}));
    a.expect("message_edited");
    b.expect("message_edited");
    b.send_json(&json!({"type": "react", "id": id, "emoji": "🎉"}));
    b.expect("reaction");
    a.expect("reaction");
    let mut late = s.ws("/ws", &s.login_token("carol"));
    late.ready("carol", false);
    late.send_json(&json!({"type": "join", "room": "general", "since": 0}));
    let (_, replay) = late.recv_until("online_users");
    let m = replay.iter().find(|f| frame_type(f) == "message").unwrap();
    assert_eq!(m["content"], "hello");
    assert!(is_rfc3339_millis(m["edited_at"].as_str().unwrap()));
    assert_eq!(m["reactions"], json!([{"emoji": "🎉", "users": ["bob"]}]));
}

/// A member removed from a private room can no longer edit or delete their
/// own messages there (`forbidden`), and the members hear nothing of it.
#[test]
fn a_removed_member_no_longer_edits_or_deletes() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    let tb = s.token("bob");
    let (mut b, _) = s.ws_ready("bob", &tb, true);
    a.create_room("ops", &["bob"]);
    b.send_json(&json!({"type": "join", "room": "ops"}));
    b.expect_after("online_users", &["room_members", "user_status"]);
    let id = b.say("ops", "mine", "b1")["id"].clone();
    a.expect_after("message", &["user_status", "join", "room_members"]);
    a.send_json(&json!({"type": "remove_member", "room": "ops", "user": "bob"}));
    b.expect_after("leave", &["user_status", "room_members", "join"]);
    a.expect_after("room_members", &["user_status", "leave", "join"]);
    b.send_json(&json!({"type": "edit", "id": id, "content": "changed"}));
    assert_eq!(
        b.expect_after("error", &["room_members"])["code"],
        "forbidden"
    );
    b.send_json(&json!({"type": "delete", "id": id}));
    assert_eq!(
        b.expect_after("error", &["room_members"])["code"],
        "forbidden"
    );
    a.expect_silence(300);
    let ta = s.login_token("alice");
    let m = s.messages(&ta, "room=ops");
    assert_eq!(m[0]["content"], "mine");
}
