//! The contract's "Order": frames from one connection take effect in the
//! order they were sent, also when an earlier one waits for storage (a
//! private room's row, a membership change) before it takes effect.

mod common;

use common::*;
use serde_json::{Value, json};

/// Every frame up to and including the first of type `last`, skipping
/// presence frames; an `error` fails the test.
fn until(ws: &mut Ws, last: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let v = ws.recv();
        let ty = frame_type(&v).to_string();
        assert_ne!(ty, "error", "after {seen:?}: {v}");
        if !matches!(ty.as_str(), "user_status" | "join" | "leave") {
            seen.push(v);
        }
        if ty == last {
            return seen;
        }
    }
}

/// `create_room` followed at once (one write, no waiting) by a `join` of
/// it, a `message` to it and an `add_member`: each is answered as if the
/// room had been stored before it was read — no `forbidden ... is
/// private`, the message is acked, and the added member may read it.
#[test]
fn frames_after_create_room_wait_for_it() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    let tb = s.token("bob");
    let (mut b, _) = s.ws_ready("bob", &tb, true);
    for i in 0..5 {
        let room = format!("ops{i}");
        a.write_json(&json!({"type": "create_room", "room": room, "private": true, "members": []}));
        a.write_json(&json!({"type": "join", "room": room}));
        a.write_json(
            &json!({"type": "message", "room": room, "content": "first", "client_id": room}),
        );
        a.write_json(&json!({"type": "add_member", "room": room, "user": "bob"}));
        a.write_json(&json!({"type": "history", "room": room}));
        a.flush();
        let frames = until(&mut a, "history");
        let ack = frames.iter().find(|f| frame_type(f) == "ack");
        assert_eq!(ack.expect("acked")["client_id"], room, "{frames:?}");
        let history = frames.last().unwrap();
        assert_eq!(history["messages"].as_array().unwrap().len(), 1);
        // bob is a member now: his join of it is not refused.
        b.send_json(&json!({"type": "join", "room": room}));
        let online = b.expect_after("online_users", &["room_members", "user_status", "join"]);
        assert_eq!(online["room"], room);
    }
}

/// A `remove_member` followed at once by `add_member` of the same user
/// leaves them a member: the second waits for the first's row.
#[test]
fn membership_changes_take_effect_in_order() {
    let s = Server::start();
    let (mut a, _) = s.user("alice");
    s.signup("bob");
    a.create_room("ops", &["bob"]);
    for _ in 0..5 {
        a.write_json(&json!({"type": "remove_member", "room": "ops", "user": "bob"}));
        a.write_json(&json!({"type": "add_member", "room": "ops", "user": "bob"}));
    }
    a.write_json(&json!({"type": "history", "room": "ops"}));
    a.flush();
    until(&mut a, "history");
    let tb = s.login_token("bob");
    let r = s.get("/api/messages?room=ops", Some(&tb));
    assert_eq!(r.status, 200, "bob is still a member: {}", r.text());
}
