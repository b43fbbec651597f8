//! `GET /api/search`: whole words in any case and order, newest first, only
//! from rooms and conversations the caller may read, scoped to one room or
//! conversation on request, edits and deletes taken into account.

mod common;

use common::*;
use serde_json::{Value, json};

fn search(s: &Server, token: &str, query: &str) -> Vec<Value> {
    let r = s.get(&format!("/api/search?{query}"), Some(token));
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    let v = r.json();
    assert_keys(&v, &["messages"]);
    v["messages"].as_array().unwrap().clone()
}

fn contents(found: &[Value]) -> Vec<&str> {
    found
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect()
}

/// Every word must appear as a whole word, in any case and any order; a
/// prefix of a word is not a match; results are newest first.
#[test]
fn words_match_whole_in_any_case_and_order() {
    let s = Server::start();
    let (mut a, ta) = s.user("alice");
    a.join("general");
    for (i, text) in [
        "Deploy the release tonight",
        "the RELEASE notes are out",
        "released yesterday",
        "tonight we deploy",
        "nothing to see",
    ]
    .iter()
    .enumerate()
    {
        a.say("general", text, &format!("m-{i}"));
    }
    assert_eq!(
        contents(&search(&s, &ta, "q=release")),
        ["the RELEASE notes are out", "Deploy the release tonight"]
    );
    assert_eq!(
        contents(&search(&s, &ta, "q=TONIGHT+deploy")),
        ["tonight we deploy", "Deploy the release tonight"]
    );
    assert_eq!(
        contents(&search(&s, &ta, "q=deploy%2C%20release!")),
        ["Deploy the release tonight"]
    );
    assert!(search(&s, &ta, "q=relea").is_empty());
    let found = search(&s, &ta, "q=the&limit=1");
    assert_eq!(contents(&found), ["the RELEASE notes are out"]);
    assert_keys(&found[0], &["content", "id", "room", "timestamp", "user"]);
    assert_eq!(
        (&found[0]["room"], &found[0]["user"]),
        (&json!("general"), &json!("alice"))
    );
}

/// A search never returns a message from a private room the caller is not
/// a member of, or from a conversation that is not theirs; scoping to such
/// a room is 403 like its history.
#[test]
fn only_what_the_caller_may_read() {
    let s = Server::start();
    let (mut a, ta) = s.user("alice");
    let (mut b, tb) = s.user("bob");
    let (mut m, tm) = s.user("mallory");
    for ws in [&mut a, &mut b, &mut m] {
        ws.sync();
    }
    a.join("general");
    a.say("general", "secret public", "g-1");
    a.create_room("vault", &["bob"]);
    a.say("vault", "secret vault", "v-1");
    a.send_json(
        &json!({"type": "private_message", "to": "bob", "content": "secret dm",
                        "client_id": "d-1"}),
    );
    a.expect_after("ack", &["room_members", "user_status"]);
    for (token, expected) in [
        (&ta, vec!["secret dm", "secret vault", "secret public"]),
        (&tb, vec!["secret dm", "secret vault", "secret public"]),
        (&tm, vec!["secret public"]),
    ] {
        assert_eq!(contents(&search(&s, token, "q=secret")), expected);
    }
    s.get("/api/search?q=secret&room=vault", Some(&tm))
        .assert_error(403, "forbidden");
    assert_eq!(
        contents(&search(&s, &tb, "q=secret&room=vault")),
        ["secret vault"]
    );
    assert_eq!(
        contents(&search(&s, &tb, "q=secret&with=alice")),
        ["secret dm"]
    );
    assert!(search(&s, &tm, "q=secret&with=alice").is_empty());
    assert!(search(&s, &ta, "q=secret&room=empty-room").is_empty());
}

/// An edited message is found by its new words only; a deleted one is not
/// found at all.
#[test]
fn edits_and_deletes_change_what_is_found() {
    let s = Server::start();
    let (mut a, ta) = s.user("alice");
    a.join("general");
    let id = a.say("general", "teh typo", "m-1")["id"].as_u64().unwrap();
    let gone = a.say("general", "embarrassing typo", "m-2")["id"]
        .as_u64()
        .unwrap();
    a.send_json(&json!({"type": "edit", "id": id, "content": "the fix"}));
    a.expect("message_edited");
    a.send_json(&json!({"type": "delete", "id": gone}));
    a.expect("message_deleted");
    assert!(search(&s, &ta, "q=teh").is_empty());
    assert!(search(&s, &ta, "q=typo").is_empty());
    let found = search(&s, &ta, "q=fix");
    assert_eq!(contents(&found), ["the fix"]);
    assert!(found[0]["edited_at"].is_string());
}

/// Bad searches are 400 `invalid_input` with a message, a missing token
/// 401; `limit` is capped at 100, not refused.
#[test]
fn bad_searches_are_explained() {
    let s = Server::builder().rate_limit(0).start();
    let (mut a, ta) = s.user("alice");
    a.join("general");
    for q in [
        "",
        "q=",
        "q=%21%21%20%3F",
        "q=x&limit=0",
        "q=x&limit=many",
        "q=x&room=general&with=alice",
    ] {
        let r = s.get(&format!("/api/search?{q}"), Some(&ta));
        r.assert_error(400, "invalid_input");
    }
    let long = "a".repeat(501);
    s.get(&format!("/api/search?q={long}"), Some(&ta))
        .assert_error(400, "invalid_input");
    s.get("/api/search?q=x", None)
        .assert_error(401, "unauthorized");
    s.get("/api/search?q=x&with=nobody", Some(&ta))
        .assert_error(404, "no_such_user");
    let contents: Vec<String> = (0..120).map(|i| format!("word {i}")).collect();
    a.say_many("general", &contents, "w");
    assert_eq!(search(&s, &ta, "q=word&limit=500").len(), 100);
    assert_eq!(search(&s, &ta, "q=word").len(), 20);
}

/// Markup in a message is data: search returns it as the same JSON string,
/// served as `application/json`, never as HTML.
#[test]
fn markup_comes_back_as_text() {
    let s = Server::start();
    let (mut a, ta) = s.user("alice");
    a.join("general");
    let xss = "<img src=x onerror=alert(1)> <script>alert(2)</script> hello";
    a.say("general", xss, "x-1");
    let r = s.get("/api/search?q=hello", Some(&ta));
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json"),
        "{:?}",
        r.header("content-type")
    );
    assert_eq!(r.json()["messages"][0]["content"], xss);
}
