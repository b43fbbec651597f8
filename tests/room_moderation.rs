//! Archiving and deleting rooms, end to end over real sockets: who may
//! (`/api/admin/rooms/...`), what an archived room still lets people do,
//! what a deletion takes with it (history, files, search, the listing),
//! the frames that tell clients, the audit log, and a restart. (The same
//! across two nodes: `cluster_accounts.rs`.)

mod common;

use common::{Resp, Server, Ws, http};
use serde_json::{Value, json};

fn send(s: &Server, method: &str, path: &str, body: Option<&Value>, token: &str) -> Resp {
    let auth = format!("Bearer {token}");
    let mut h = vec![("Authorization", auth.as_str())];
    let text = body
        .map(|b| b.to_string())
        .or_else(|| (method != "GET").then(String::new));
    // Every write says it is JSON, even an empty one (the contract's CSRF rule).
    if method != "GET" {
        h.push(("Content-Type", "application/json"));
    }
    http(s.addr, method, path, &h, text.as_deref().map(str::as_bytes))
}

/// The `GET /api/rooms` row of `room` as `token` sees it, if listed.
fn listed(s: &Server, token: &str, room: &str) -> Option<Value> {
    let rooms = s.get("/api/rooms", Some(token)).json();
    rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == room)
        .cloned()
}

/// The audit log's `(actor, action, target, reason)` entries.
fn audit(s: &Server, admin: &str) -> Vec<(String, String, String, String)> {
    let log = s.get("/api/admin/audit", Some(admin)).json();
    log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let f = |k: &str| e[k].as_str().unwrap_or("").to_string();
            (f("actor"), f("action"), f("target"), f("reason"))
        })
        .collect()
}

/// A message to `room` is refused with `forbidden`, saying it is archived.
fn refused_as_archived(ws: &mut Ws, room: &str) {
    ws.send_json(&json!({"type": "message", "room": room, "content": "late", "client_id": "no"}));
    let e = ws.expect_after("error", &["user_status", "join", "leave", "room_archived"]);
    assert_eq!(e["code"], "forbidden", "{e}");
    assert!(e["message"].as_str().unwrap().contains("archived"), "{e}");
}

/// A member gets 403 `forbidden` on every room route; a moderator may
/// archive but not delete; `general` is never archived or deleted (403),
/// an unknown room is 404 `no_such_room`, another method 405.
#[test]
fn who_may_archive_and_delete_rooms() {
    let s = Server::start();
    let admin = s.token("alice");
    let (mut bob, bob_token) = s.user("bob");
    let carol = s.token("carol");
    let r = send(
        &s,
        "PUT",
        "/api/admin/users/carol/role",
        Some(&json!({"role": "moderator"})),
        &admin,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    bob.expect_after("user_updated", &["user_status"]);
    bob.join("lobby");
    bob.say("lobby", "hello", "c1");
    let routes = [
        ("POST", "/api/admin/rooms/lobby/archive"),
        ("DELETE", "/api/admin/rooms/lobby/archive"),
        ("DELETE", "/api/admin/rooms/lobby"),
    ];
    for (method, path) in routes {
        send(&s, method, path, None, &bob_token).assert_error(403, "forbidden");
    }
    send(&s, "DELETE", "/api/admin/rooms/lobby", None, &carol).assert_error(403, "forbidden");
    for token in [&admin, &carol] {
        send(&s, "POST", "/api/admin/rooms/general/archive", None, token)
            .assert_error(403, "forbidden");
    }
    send(&s, "DELETE", "/api/admin/rooms/general", None, &admin).assert_error(403, "forbidden");
    for (method, path) in routes {
        send(&s, method, &path.replace("lobby", "nowhere"), None, &admin)
            .assert_error(404, "no_such_room");
    }
    send(&s, "GET", "/api/admin/rooms/lobby", None, &admin).assert_error(405, "method_not_allowed");
    let long = json!({"reason": "x".repeat(1000)});
    send(&s, "POST", routes[0].1, Some(&long), &carol).assert_error(400, "invalid_input");
    assert!(
        listed(&s, &bob_token, "lobby")
            .unwrap()
            .get("archived")
            .is_none()
    );
    let r = send(&s, "POST", routes[0].1, None, &carol);
    assert_eq!(r.status, 204, "a moderator archives: {}", r.text());
    let log = audit(&s, &admin);
    assert!(
        !log.iter().any(|e| e.2 == "nowhere"),
        "a refusal is not audited: {log:?}"
    );
    assert!(
        log.iter().any(|e| e.0 == "carol" && e.1 == "archive_room"),
        "{log:?}"
    );
}

/// An archived room is listed with `"archived":true` and stays readable,
/// but a message, an edit or a reaction there is refused with `forbidden`
/// (a delete still goes); everyone is told `room_archived`. Unarchived,
/// it takes messages again. Both are in the audit log, with the reason,
/// and the archive outlives a restart.
#[test]
fn an_archived_room_is_read_only_until_unarchived() {
    let mut s = Server::start();
    let admin = s.token("alice");
    let (mut bob, bob_token) = s.user("bob");
    let (mut carol, _) = s.user("carol");
    bob.join("old");
    let first = bob.say("old", "first", "c1");
    let second = bob.say("old", "second", "c2");
    carol.sync();
    let body = json!({"reason": "project over"});
    let r = send(
        &s,
        "POST",
        "/api/admin/rooms/old/archive",
        Some(&body),
        &admin,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let told = json!({"type": "room_archived", "room": "old", "archived": true});
    for ws in [&mut bob, &mut carol] {
        assert_eq!(
            ws.expect_after("room_archived", &["user_status", "join"]),
            told
        );
    }
    assert_eq!(listed(&s, &bob_token, "old").unwrap()["archived"], true);
    refused_as_archived(&mut bob, "old");
    for frame in [
        json!({"type": "edit", "id": first["id"], "content": "changed"}),
        json!({"type": "react", "id": first["id"], "emoji": "👍"}),
    ] {
        bob.send_json(&frame);
        let e = bob.expect_after("error", &["user_status"]);
        assert_eq!(e["code"], "forbidden", "{frame}: {e}");
        assert!(e["message"].as_str().unwrap().contains("archived"), "{e}");
    }
    bob.send_json(&json!({"type": "delete", "id": second["id"]}));
    bob.expect_after("message_deleted", &["user_status"]);
    let history = s.messages(&bob_token, "room=old");
    let contents: Vec<&str> = history
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["first"], "readable, and only what was sent");
    // Joining still works, for reading.
    carol.join("old");

    s.restart();
    let (mut bob, _) = s.ws_ready("bob", &bob_token, true);
    assert_eq!(listed(&s, &bob_token, "old").unwrap()["archived"], true);
    bob.join("old");
    refused_as_archived(&mut bob, "old");

    let r = send(&s, "DELETE", "/api/admin/rooms/old/archive", None, &admin);
    assert_eq!(r.status, 204, "{}", r.text());
    let open = json!({"type": "room_archived", "room": "old", "archived": false});
    assert_eq!(
        bob.expect_after("room_archived", &["user_status", "join"]),
        open
    );
    assert!(
        listed(&s, &bob_token, "old")
            .unwrap()
            .get("archived")
            .is_none()
    );
    bob.say("old", "back", "c3");
    let log = audit(&s, &admin);
    let a = |action: &str, reason: &str| {
        (
            "alice".to_string(),
            action.to_string(),
            "old".to_string(),
            reason.to_string(),
        )
    };
    assert!(log.contains(&a("archive_room", "project over")), "{log:?}");
    assert!(log.contains(&a("unarchive_room", "")), "{log:?}");
}

/// An admin deletes a public room: everyone connected gets `room_deleted`
/// (those joined to it leave it), it is no longer listed, its history is
/// the empty history of a room nobody used, its words are not found, a
/// file attached there is 404, and the name is free for a new room that
/// starts empty. A private room's members are told too. All of it
/// survives a restart, and the audit log has who, what and why.
#[test]
fn a_deleted_room_goes_with_its_history_and_files() {
    let mut s = Server::start();
    let admin = s.token("alice");
    let (mut bob, bob_token) = s.user("bob");
    let (mut carol, carol_token) = s.user("carol");
    bob.join("doomed");
    let upload = http(
        s.addr,
        "POST",
        "/api/files?name=notes.txt",
        &[
            ("Authorization", &format!("Bearer {bob_token}")),
            ("Content-Type", "text/plain"),
        ],
        Some(b"secret notes"),
    );
    assert_eq!(upload.status, 201, "{}", upload.text());
    let file = upload.json()["file"]["id"].as_u64().unwrap();
    bob.send_json(
        &json!({"type": "message", "room": "doomed", "content": "zebracorn plans",
        "attachments": [file], "client_id": "f1"}),
    );
    bob.expect_after("ack", &["user_status", "join"]);
    let path = format!("/api/files/{file}");
    assert_eq!(s.get(&path, Some(&carol_token)).status, 200, "a reader");
    carol.sync();
    bob.create_room("hideout", &["carol"]);
    bob.say("hideout", "private words", "p1");
    carol.expect_after("room_members", &["user_status", "room_invited", "join"]);

    let body = json!({"reason": "spam"});
    let r = send(&s, "DELETE", "/api/admin/rooms/doomed", Some(&body), &admin);
    assert_eq!(r.status, 204, "{}", r.text());
    let gone = json!({"type": "room_deleted", "room": "doomed"});
    for ws in [&mut bob, &mut carol] {
        assert_eq!(
            ws.expect_after("room_deleted", &["user_status", "join", "leave"]),
            gone
        );
    }
    for token in [&bob_token, &carol_token] {
        assert!(listed(&s, token, "doomed").is_none());
    }
    assert!(s.messages(&bob_token, "room=doomed").is_empty());
    let found = s.get("/api/search?q=zebracorn", Some(&bob_token)).json();
    assert_eq!(found["messages"], json!([]), "{found}");
    for token in [&bob_token, &carol_token] {
        s.get(&path, Some(token)).assert_error(404, "not_found");
    }
    // Not joined any more: a message needs a join first.
    bob.send_json(&json!({"type": "message", "room": "doomed", "content": "x"}));
    assert_eq!(
        bob.expect_after("error", &["user_status"])["code"],
        "not_member"
    );

    let r = send(&s, "DELETE", "/api/admin/rooms/hideout", None, &admin);
    assert_eq!(r.status, 204, "{}", r.text());
    let gone = json!({"type": "room_deleted", "room": "hideout"});
    for ws in [&mut bob, &mut carol] {
        assert_eq!(
            ws.expect_after("room_deleted", &["user_status", "join", "leave"]),
            gone
        );
    }
    assert!(listed(&s, &carol_token, "hideout").is_none());

    s.restart();
    let (mut bob, _) = s.ws_ready("bob", &bob_token, true);
    for room in ["doomed", "hideout"] {
        assert!(
            listed(&s, &bob_token, room).is_none(),
            "{room} after a restart"
        );
    }
    bob.join("doomed");
    bob.say("doomed", "fresh start", "n1");
    let history = s.messages(&bob_token, "room=doomed");
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["content"], "fresh start");
    bob.create_room("hideout", &[]);
    let log = audit(&s, &admin);
    let spam = (
        "alice".into(),
        "delete_room".into(),
        "doomed".into(),
        "spam".into(),
    );
    assert!(log.contains(&spam), "{log:?}");
    assert!(
        log.iter().any(|e| e.1 == "delete_room" && e.2 == "hideout"),
        "{log:?}"
    );
}
