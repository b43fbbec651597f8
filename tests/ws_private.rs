//! Private messages: ack then `delivered`, delivery to every connection of the recipient and
//! the sender's other connections, history and read receipts of a conversation, and the
//! `unread` counts a reconnect brings.

mod common;

use common::*;
use serde_json::{Value, json};

fn unread_set(v: &Value) -> Vec<String> {
    assert_eq!(frame_type(v), "unread", "{v}");
    let mut c: Vec<String> = v["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.to_string())
        .collect();
    c.sort();
    c
}

/// A private message: the sender's connection gets `ack` then `delivered {id}`; every
/// connection of the recipient and the sender's other connections get
/// `{"type":"private_message","id","from","to","content","timestamp"}`; nobody else does.
#[test]
fn private_message_reaches_every_connection() {
    let s = Server::start();
    let (mut a1, ta) = s.user("alice");
    let (mut a2, _) = s.ws_ready("alice", &ta, false);
    let (mut b1, tb) = s.user("bob");
    let (mut b2, _) = s.ws_ready("bob", &tb, false);
    let (mut c, _) = s.user("carol");
    for ws in [&mut a1, &mut a2, &mut b1, &mut b2, &mut c] {
        ws.sync();
    }
    a1.send_json(
        &json!({"type": "private_message", "to": "bob", "content": "psst", "client_id": "p-1"}),
    );
    let ack = a1.expect("ack");
    assert_keys(&ack, &["client_id", "id", "timestamp", "type"]);
    assert_eq!(ack["client_id"], "p-1");
    assert_eq!(
        a1.expect("delivered"),
        json!({"type": "delivered", "id": ack["id"]})
    );
    let pm = json!({"type": "private_message", "id": ack["id"], "from": "alice", "to": "bob",
                    "content": "psst", "timestamp": ack["timestamp"]});
    for ws in [&mut b1, &mut b2, &mut a2] {
        assert_eq!(ws.expect("private_message"), pm);
    }
    a1.expect_silence(250);
    c.expect_silence(10);
}

/// A private message to a user with no connection is acked but not `delivered`; the recipient
/// sees it in `unread` on connect and in history.
#[test]
fn private_message_to_offline_user() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    s.signup("bob");
    a.send_json(&json!({"type": "private_message", "to": "bob", "content": "are you there?", "client_id": "p"}));
    let ack = a.expect("ack");
    a.expect_silence(400);
    let tb = s.login_token("bob");
    let (_b, frames) = s.ws_ready("bob", &tb, true);
    let unread = frames.iter().find(|f| frame_type(f) == "unread").unwrap();
    assert_eq!(
        unread,
        &json!({"type": "unread", "counts": [{"with": "alice", "count": 1}]})
    );
    let m = s.messages(&tb, "with=alice");
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["id"], ack["id"]);
}

/// Private message errors: unknown recipient `no_such_user`, bad content `invalid_input` /
/// `too_long`, missing `to` `invalid_input`; nothing is stored.
#[test]
fn private_message_errors() {
    let s = Server::start();
    let (mut a, ta) = s.user("alice");
    s.signup("bob");
    a.send_json(
        &json!({"type": "private_message", "to": "ghost", "content": "hi", "client_id": "g"}),
    );
    assert_eq!(a.expect_error("no_such_user")["client_id"], "g");
    a.send_json(&json!({"type": "private_message", "to": "bob", "content": "  "}));
    a.expect_error("invalid_input");
    a.send_json(&json!({"type": "private_message", "content": "hi"}));
    a.expect_error("invalid_input");
    a.send_json(&json!({"type": "private_message", "to": "bob", "content": "x".repeat(4001)}));
    a.expect_error("too_long");
    assert!(s.messages(&ta, "with=bob").is_empty());
}

/// A resent private message client_id gets the first ack again and is not delivered twice.
#[test]
fn private_message_client_id_is_idempotent() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    let (mut b, tb) = s.user("bob");
    a.sync();
    let f = json!({"type": "private_message", "to": "bob", "content": "once", "client_id": "pm-1"});
    a.send_json(&f);
    let ack = a.expect("ack");
    a.expect("delivered");
    b.expect("private_message");
    a.send_json(&f);
    assert_eq!(a.expect("ack"), ack);
    b.expect_silence(300);
    assert_eq!(s.messages(&tb, "with=alice").len(), 1);
}

/// `history` with `with` answers `{"type":"history","with","messages"}`, both directions,
/// oldest first; an unknown user is `no_such_user`.
#[test]
fn history_of_a_conversation() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    let (mut b, _) = s.user("bob");
    a.sync();
    let mut ids = vec![];
    for (i, from_alice) in [true, false, true].into_iter().enumerate() {
        let (ws, to) = if from_alice {
            (&mut a, "bob")
        } else {
            (&mut b, "alice")
        };
        ws.send_json(&json!({"type": "private_message", "to": to, "content": format!("p{i}"), "client_id": format!("c{i}")}));
        let ack = ws.expect_after("ack", &["private_message", "delivered"]);
        ids.push(ack["id"].clone());
    }
    a.send_json(&json!({"type": "history", "with": "bob"}));
    let h = a.expect_after("history", &["private_message", "delivered"]);
    assert_keys(&h, &["messages", "type", "with"]);
    assert_eq!(h["with"], "bob");
    let msgs = h["messages"].as_array().unwrap();
    assert_eq!(
        msgs.iter().map(|m| m["id"].clone()).collect::<Vec<_>>(),
        ids
    );
    assert_eq!(
        (msgs[1]["from"].as_str(), msgs[1]["to"].as_str()),
        (Some("bob"), Some("alice"))
    );
    assert_eq!(msgs[2]["content"], "p2");
    a.send_json(&json!({"type": "history", "with": "bob", "limit": 1}));
    assert_eq!(a.expect("history")["messages"].as_array().unwrap().len(), 1);
    a.send_json(&json!({"type": "history", "with": "ghost"}));
    a.expect_error("no_such_user");
}

/// Conversation read receipts are from the receiver's point of view: when bob reads his
/// conversation with alice, alice's connections get `{"read","with":"bob","user":"bob","id"}`
/// and bob's other connections get `{"read","with":"alice","user":"bob","id"}`.
#[test]
fn read_receipts_in_a_conversation() {
    let s = Server::start();
    let (mut a1, ta) = s.user("alice");
    let (mut a2, _) = s.ws_ready("alice", &ta, false);
    let (mut b1, tb) = s.user("bob");
    let (mut b2, _) = s.ws_ready("bob", &tb, false);
    for ws in [&mut a1, &mut a2, &mut b1, &mut b2] {
        ws.sync();
    }
    a1.send_json(
        &json!({"type": "private_message", "to": "bob", "content": "hi", "client_id": "x"}),
    );
    let id = a1.expect("ack")["id"].clone();
    a1.expect("delivered");
    a2.expect("private_message");
    b1.expect("private_message");
    b2.expect("private_message");
    b1.send_json(&json!({"type": "read", "with": "alice", "id": id}));
    for ws in [&mut a1, &mut a2] {
        assert_eq!(
            ws.expect("read"),
            json!({"type": "read", "with": "bob", "user": "bob", "id": id})
        );
    }
    assert_eq!(
        b2.expect("read"),
        json!({"type": "read", "with": "alice", "user": "bob", "id": id})
    );
    b1.expect_silence(200);
    b1.send_json(&json!({"type": "read", "with": "ghost", "id": id}));
    b1.expect_error("no_such_user");
}

/// A receipt in a conversation names a message of that conversation only:
/// `read` with `with: bob` and the id of a private room's message (or
/// one that does not exist) sends bob nothing; a message of theirs still
/// makes the receipt. Before, bob got a receipt for any id.
#[test]
fn receipts_only_for_messages_of_the_conversation() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    let (mut b, _) = s.user("bob");
    let (mut c, _) = s.user("carol");
    c.create_room("secret", &[]);
    let secret = c.say("secret", "not for bob's eyes", "s1")["id"].clone();
    for ws in [&mut a, &mut b] {
        ws.sync();
    }
    a.send_json(&json!({"type": "read", "with": "bob", "id": secret}));
    let past = secret.as_i64().unwrap() + 100;
    a.send_json(&json!({"type": "read", "with": "bob", "id": past}));
    a.expect_error("invalid_input");
    b.expect_silence(500);
    a.send_json(&json!({"type": "private_message", "to": "bob", "content": "hi"}));
    let ours = a.expect("ack")["id"].clone();
    a.expect("delivered");
    b.expect("private_message");
    b.send_json(&json!({"type": "read", "with": "alice", "id": ours}));
    assert_eq!(
        a.expect("read"),
        json!({"type": "read", "with": "bob", "user": "bob", "id": ours})
    );
}

/// After a reconnect `unread` lists rooms and conversations with messages past the read
/// marker (`{"room","count"}`, `{"with","count"}`); reading them clears them.
#[test]
fn unread_counts_after_reconnect() {
    let s = Server::start();
    let (mut a, ta) = s.user("alice");
    let (mut b, tb) = s.user("bob");
    a.join("general");
    b.join("general");
    let first = a.say("general", "m0", "m0")["id"].clone();
    b.expect_after("message", &["user_status", "join"]);
    b.send_json(&json!({"type": "read", "room": "general", "id": first}));
    a.expect_after("read", &["user_status", "join"]);
    settle_writes(&mut b, 1);
    b.close();
    a.expect_after("user_status", &["leave"]);

    a.say("general", "m1", "m1");
    let _ = a.say("general", "m2", "m2");
    let mut last_pm = Value::Null;
    for i in 0..3 {
        a.send_json(&json!({"type": "private_message", "to": "bob", "content": format!("p{i}"), "client_id": format!("p{i}")}));
        last_pm = a.expect("ack")["id"].clone();
    }
    let (mut b, frames) = s.ws_ready("bob", &tb, true);
    let unread = frames.iter().find(|f| frame_type(f) == "unread").unwrap();
    let mut expected = vec![
        json!({"room": "general", "count": 2}).to_string(),
        json!({"with": "alice", "count": 3}).to_string(),
    ];
    expected.sort();
    assert_eq!(unread_set(unread), expected, "{unread}");

    b.join("general");
    let newest = s.messages(&ta, "room=general&limit=1")[0]["id"].clone();
    b.send_json(&json!({"type": "read", "room": "general", "id": newest}));
    b.send_json(&json!({"type": "read", "with": "alice", "id": last_pm}));
    settle_writes(&mut b, 2);
    b.close();
    // Back within the presence grace: bob was never shown offline, so his
    // own `user_status` online does not come again.
    let (_b, frames) = s.ws_ready("bob", &tb, false);
    let unread = frames.iter().find(|f| frame_type(f) == "unread").unwrap();
    assert_eq!(unread, &json!({"type": "unread", "counts": []}));
}

/// A user's own messages are never unread for them: after reading up to bob's message and then
/// writing in the room and to bob, alice's reconnect brings `unread` with empty `counts`.
#[test]
fn own_messages_are_not_unread() {
    let s = Server::start();
    let (mut a, ta) = s.user("alice");
    let (mut b, _) = s.user("bob");
    a.join("general");
    b.join("general");
    let m = b.say("general", "from bob", "b0");
    a.expect_after("message", &["user_status", "join"]);
    a.send_json(&json!({"type": "read", "room": "general", "id": m["id"]}));
    a.say("general", "mine 1", "a1");
    a.say("general", "mine 2", "a2");
    a.send_json(
        &json!({"type": "private_message", "to": "bob", "content": "mine 3", "client_id": "a3"}),
    );
    a.expect("ack");
    a.expect("delivered");
    a.close();
    let (_a, frames) = s.ws_ready("alice", &ta, false);
    let unread = frames.iter().find(|f| frame_type(f) == "unread").unwrap();
    assert_eq!(unread, &json!({"type": "unread", "counts": []}));
}

/// Waits until this connection's read markers are committed. Markers go to
/// the storage writer without an answer and `unread` is read on the reader
/// connection, so a reconnect may race a marker sent just before it (the
/// cost `src/store/mod.rs` admits). A message in a room the user never marked (so it
/// counts for nobody here) is a write queued behind them: its `ack` means
/// they committed. `n` keeps its `client_id` fresh.
fn settle_writes(ws: &mut Ws, n: u32) {
    ws.join("settle-probe");
    ws.say("settle-probe", "probe", &format!("settle-{n}"));
}
