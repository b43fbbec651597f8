//! Rooms: isolation between rooms, one connection in several rooms, private rooms
//! (create_room, add_member, remove_member, `room_members`, `forbidden`, `taken`), and
//! `user_status` online/offline.

mod common;

use common::*;
use serde_json::json;

/// Four clients, two rooms: a message in `general` reaches only `general`, one in `support`
/// only `support`.
#[test]
fn rooms_are_isolated() {
    let s = Server::start();
    let mut c: Vec<Ws> = ["alice", "bob", "carol", "dave"]
        .iter()
        .map(|n| s.user(n).0)
        .collect();
    for (i, ws) in c.iter_mut().enumerate() {
        ws.join(if i < 2 { "general" } else { "support" });
    }
    for ws in c.iter_mut() {
        ws.sync();
    }
    let ack = c[0].say("general", "in general", "g");
    assert_eq!(c[1].expect("message")["id"], ack["id"]);
    let ack2 = c[2].say("support", "in support", "s");
    assert_eq!(c[3].expect("message")["id"], ack2["id"]);
    c[0].expect_silence(200);
    c[1].expect_silence(10);
    c[2].expect_silence(10);
    c[3].expect_silence(10);
}

/// One connection joined to two rooms receives both rooms' messages; after `leave` only the other's.
#[test]
fn one_connection_in_two_rooms() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    let (mut b, _) = s.user("bob");
    a.sync();
    a.join("general");
    a.join("support");
    b.join("general");
    b.join("support");
    a.expect("join");
    a.expect("join");
    b.say("general", "g", "1");
    b.say("support", "s", "2");
    assert_eq!(a.expect("message")["room"], "general");
    assert_eq!(a.expect("message")["room"], "support");
    a.send_json(&json!({"type": "leave", "room": "general"}));
    b.expect("leave");
    b.say("general", "g2", "3");
    b.say("support", "s2", "4");
    assert_eq!(a.expect("message")["content"], "s2");
    a.expect_silence(200);
}

/// `user_status` online goes to every connection when a user's first connection opens, offline
/// (with `last_seen`) when the last one closes, and nothing for the connections in between.
#[test]
fn user_status_on_first_and_last_connection() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    let tb = s.token("bob");
    let (b1, _) = s.ws_ready("bob", &tb, true);
    let st = a.expect("user_status");
    assert_keys(&st, &["last_seen", "status", "type", "user"]);
    assert_eq!(
        (st["user"].as_str(), st["status"].as_str()),
        (Some("bob"), Some("online"))
    );
    assert!(st["last_seen"].as_str().is_some_and(is_rfc3339));
    let (b2, _) = s.ws_ready("bob", &tb, false);
    a.expect_silence(250);
    b1.close();
    a.expect_silence(250);
    b2.drop_tcp();
    let st = a.expect("user_status");
    assert_eq!(
        (st["user"].as_str(), st["status"].as_str()),
        (Some("bob"), Some("offline"))
    );
    assert!(st["last_seen"].as_str().is_some_and(is_rfc3339), "{st}");
}

/// `create_room`: the creator's connection is joined (`online_users`) and every connection of
/// every member gets `room_members {room, owner, members}`; members may join, others get
/// `forbidden` for join and history; the room name is then `taken`.
#[test]
fn create_private_room() {
    let s = Server::start();
    let (mut a, ta) = s.user("alice");
    let (mut b, tb) = s.user("bob");
    let (mut b2, _) = s.ws_ready("bob", &tb, false);
    let (mut c, tc) = s.user("carol");
    for ws in [&mut a, &mut b, &mut b2, &mut c] {
        ws.sync();
    }
    let (ou, rm) = a.create_room("secret", &["bob"]);
    assert_eq!(ou["room"], "secret");
    assert_eq!(ou["users"], json!(["alice"]));
    assert_eq!(ou["count"], 1);
    assert_keys(&rm, &["members", "owner", "room", "type"]);
    assert_eq!(rm["room"], "secret");
    assert_eq!(rm["owner"], "alice");
    let members = str_set(&rm["members"]);
    assert!(
        members.contains(&"bob".to_string()) && !members.contains(&"carol".to_string()),
        "{rm}"
    );
    assert_eq!(b.expect("room_members"), rm);
    assert_eq!(b2.expect("room_members"), rm);
    c.expect_silence(200);

    let ou = b.join("secret");
    assert_eq!(str_set(&ou["users"]), strs(&["alice", "bob"]));
    assert_eq!(a.expect("join")["user"], "bob");
    let ack = b.say("secret", "members only", "m");
    assert_eq!(a.expect("message")["id"], ack["id"]);

    c.send_json(&json!({"type": "join", "room": "secret"}));
    c.expect_error("forbidden");
    c.send_json(&json!({"type": "history", "room": "secret"}));
    c.expect_error("forbidden");
    c.send_json(&json!({"type": "message", "room": "secret", "content": "let me in"}));
    c.expect_error("not_member");
    s.get("/api/messages?room=secret", Some(&tc))
        .assert_error(403, "forbidden");
    assert_eq!(s.messages(&ta, "room=secret").len(), 1);

    for ws in [&mut a, &mut c] {
        ws.send_json(
            &json!({"type": "create_room", "room": "secret", "private": true, "members": []}),
        );
        ws.expect_error("taken");
    }
}

/// `create_room` for a public room name that already has messages is `taken`.
#[test]
fn create_room_over_public_room_is_taken() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    a.join("general");
    a.say("general", "hi", "1");
    a.send_json(&json!({"type": "create_room", "room": "general", "private": true, "members": []}));
    a.expect_error("taken");
}

/// `create_room` with an unknown member is `no_such_user` and creates nothing; a bad name is
/// `invalid_input`.
#[test]
fn create_room_validation() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    s.signup("bob");
    a.send_json(&json!({"type": "create_room", "room": "club", "private": true, "members": ["bob", "ghost"]}));
    a.expect_error("no_such_user");
    a.expect_silence(200);
    a.send_json(
        &json!({"type": "create_room", "room": "Bad Name", "private": true, "members": []}),
    );
    a.expect_error("invalid_input");
    let (_, rm) = a.create_room("club", &["bob"]);
    assert_eq!(rm["owner"], "alice");
}

/// `add_member` (owner only): non-owners get `forbidden`, unknown users `no_such_user`, rooms
/// that are not private rooms `invalid_input`; on success every member's connections (the new
/// one included) get the updated `room_members` and the new member may join.
#[test]
fn add_member_by_owner_only() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    let (mut b, _) = s.user("bob");
    let (mut c, _) = s.user("carol");
    for ws in [&mut a, &mut b, &mut c] {
        ws.sync();
    }
    let (_, rm) = a.create_room("secret", &["bob"]);
    assert_eq!(b.expect("room_members"), rm);

    b.send_json(&json!({"type": "add_member", "room": "secret", "user": "carol"}));
    b.expect_error("forbidden");
    c.send_json(&json!({"type": "add_member", "room": "secret", "user": "carol"}));
    c.expect_error("forbidden");
    a.send_json(&json!({"type": "add_member", "room": "secret", "user": "ghost"}));
    a.expect_error("no_such_user");
    a.send_json(&json!({"type": "add_member", "room": "general", "user": "carol"}));
    a.expect_error("invalid_input");
    a.send_json(&json!({"type": "add_member", "room": "nonexistent", "user": "carol"}));
    a.expect_error("invalid_input");

    a.send_json(&json!({"type": "add_member", "room": "secret", "user": "carol"}));
    let rm = a.expect("room_members");
    assert_eq!(rm["owner"], "alice");
    assert!(
        str_set(&rm["members"]).contains(&"carol".to_string()),
        "{rm}"
    );
    assert_eq!(b.expect("room_members"), rm);
    assert_eq!(c.expect("room_members"), rm);
    c.join("secret");
}

/// `remove_member` (owner only): every connection of the removed member (joined to the room
/// or not) is unsubscribed and gets `leave` for themselves; the remaining members get `room_members` without them; the removed
/// user can no longer send, join or read history there.
#[test]
fn remove_member_unsubscribes_them() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    let (mut b, tb) = s.user("bob");
    let (mut b2, _) = s.ws_ready("bob", &tb, false);
    let (mut c, _) = s.user("carol");
    for ws in [&mut a, &mut b, &mut b2, &mut c] {
        ws.sync();
    }
    let (_, rm) = a.create_room("secret", &["bob", "carol"]);
    for ws in [&mut b, &mut b2, &mut c] {
        assert_eq!(ws.expect("room_members"), rm);
    }
    b.join("secret");
    c.join("secret");
    a.expect("join");
    a.expect("join");
    b.expect("join");

    b.send_json(&json!({"type": "remove_member", "room": "secret", "user": "carol"}));
    b.expect_error("forbidden");

    a.send_json(&json!({"type": "remove_member", "room": "secret", "user": "bob"}));
    let own_leave = json!({"type": "leave", "room": "secret", "user": "bob"});
    assert_eq!(b.expect("leave"), own_leave);
    let rm = a.expect_after("room_members", &["leave"]);
    assert!(
        !str_set(&rm["members"]).contains(&"bob".to_string()),
        "{rm}"
    );
    assert_eq!(c.expect_after("room_members", &["leave"]), rm);

    a.say("secret", "bob is gone", "g");
    c.expect_after("message", &["leave"]);
    b.expect_silence(250);
    b.send_json(&json!({"type": "message", "room": "secret", "content": "hello?"}));
    b.expect_error("not_member");
    b.send_json(&json!({"type": "join", "room": "secret"}));
    b.expect_error("forbidden");
    b.send_json(&json!({"type": "history", "room": "secret"}));
    b.expect_error("forbidden");
    // Bob's other connection, not joined to the room, is a removed member's connection too:
    // it gets the `leave` (instead of `room_members`), and nothing else.
    assert_eq!(b2.expect("leave"), own_leave);
    b2.expect_silence(10);
}
