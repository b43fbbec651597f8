//! The contract's "Accounts, sessions and moderation" and the profile
//! fields, end to end over real sockets: sessions (logout, password change,
//! WebSocket tickets), roles and moderation (bans with 4003, a moderator's
//! delete, the audit log, every refusal a member gets), signup modes and
//! invites, `PUT /api/me`, and the operator's command line on a running
//! server. (The same across two nodes: `cluster_accounts.rs`.)

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{PASSWORD, Resp, Server, Ws, ws_connect};
use serde_json::{Value, json};

/// The contract's bound for a revocation or a ban to close sockets.
const WITHIN: Duration = Duration::from_secs(1);
/// Slack for a loaded test machine on top of the contract's second.
const SLACK: Duration = Duration::from_millis(500);

fn send(s: &Server, method: &str, path: &str, body: Option<&Value>, token: &str) -> Resp {
    let auth = format!("Bearer {token}");
    let mut h = vec![("Authorization", auth.as_str())];
    // A POST with nothing to say still sends `Content-Length: 0`, as
    // browsers do: the contract wants a length on every body.
    let text = body
        .map(|b| b.to_string())
        .or_else(|| (method == "POST").then(String::new));
    // Every write says it is JSON, even an empty one (the contract's CSRF rule).
    if method != "GET" {
        h.push(("Content-Type", "application/json"));
    }
    common::http(s.addr, method, path, &h, text.as_deref().map(str::as_bytes))
}

/// The socket is closed with `code` within the contract's second (plus
/// slack), whatever frames come first.
fn closed_with(ws: &mut Ws, code: u16) {
    let t0 = Instant::now();
    let (got, _) = ws.expect_close(WITHIN + SLACK + Duration::from_secs(2));
    assert_eq!(got, Some(code), "close code");
    assert!(
        t0.elapsed() <= WITHIN + SLACK,
        "closed after {:?}",
        t0.elapsed()
    );
}

fn upgrade_status(s: &Server, query: &str) -> u16 {
    match ws_connect(s.addr, &format!("/ws?{query}"), None) {
        Ok(_) => 101,
        Err(common::ConnectError::Http(status, _)) => status,
        Err(e) => panic!("upgrade: {e:?}"),
    }
}

/// The `hubbub` binary's command line on `s`'s database.
fn cli(s: &Server, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut c = Command::new(env!("CARGO_BIN_EXE_hubbub"))
        .args(args)
        .args(s.store_args())
        .env_remove("HUBBUB_DB")
        .env_remove("HUBBUB_POSTGRES")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hubbub");
    // A refused command may exit before it reads its input (a broken pipe).
    let _ = c.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = c.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wait_until(within: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `POST /api/logout` answers 204; from then on that token gets 401 on
/// HTTP (file routes included) and no upgrade, and the socket it opened
/// closes with 4001 within a second; another session of the same user
/// lives on.
#[test]
fn logout_ends_one_session_everywhere_it_is_used() {
    let s = Server::start();
    let one = s.token("alice");
    let two = s.login_token("alice");
    let (mut ws, _) = s.ws_ready("alice", &one, true);
    let (mut other, _) = s.ws_ready("alice", &two, false);
    assert_eq!(send(&s, "POST", "/api/logout", None, &one).status, 204);
    closed_with(&mut ws, 4001);
    s.get("/api/me", Some(&one))
        .assert_error(401, "unauthorized");
    assert_eq!(upgrade_status(&s, &format!("token={one}")), 401);
    // The file routes check the session too.
    s.get("/api/me/file-link", Some(&one))
        .assert_error(401, "unauthorized");
    s.get("/api/files/1", Some(&one))
        .assert_error(404, "not_found");
    assert_eq!(s.get("/api/me", Some(&two)).status, 200);
    assert_eq!(s.get("/api/me/file-link", Some(&two)).status, 200);
    other.send_json(&json!({"type": "join", "room": "general"}));
    other.expect_after("online_users", &["user_status", "join"]);
}

/// `POST /api/password`: a wrong `old` is 403 `invalid_credentials`, a bad
/// `new` 400; a good change answers 204, keeps the caller's session and
/// ends every other one (401, and 4001 on its socket); the new password
/// logs in and the old one no longer does.
#[test]
fn a_password_change_ends_the_other_sessions() {
    let s = Server::start();
    let mine = s.token("alice");
    let other = s.login_token("alice");
    let (mut ws, _) = s.ws_ready("alice", &other, true);
    let wrong = json!({"old": "not the password", "new": "a new password"});
    send(&s, "POST", "/api/password", Some(&wrong), &mine).assert_error(403, "invalid_credentials");
    let short = json!({"old": PASSWORD, "new": "short"});
    send(&s, "POST", "/api/password", Some(&short), &mine).assert_error(400, "invalid_input");
    let good = json!({"old": PASSWORD, "new": "a new password"});
    assert_eq!(
        send(&s, "POST", "/api/password", Some(&good), &mine).status,
        204
    );
    closed_with(&mut ws, 4001);
    s.get("/api/me", Some(&other))
        .assert_error(401, "unauthorized");
    assert_eq!(s.get("/api/me", Some(&mine)).status, 200);
    s.login("alice", "a new password");
    let old = json!({"username": "alice", "password": PASSWORD});
    s.post_json("/api/login", &old, None)
        .assert_error(401, "invalid_credentials");
}

/// `GET /api/sessions` lists the caller's open sessions; ending one by id
/// refuses its token and closes its socket (4001).
#[test]
fn sessions_are_listed_and_ended_by_id() {
    let s = Server::start();
    let mine = s.token("alice");
    let other = s.login_token("alice");
    let (mut ws, _) = s.ws_ready("alice", &other, true);
    let list = s.get("/api/sessions", Some(&mine));
    assert_eq!(list.status, 200, "{}", list.text());
    let sessions = list.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let current: Vec<&Value> = sessions.iter().filter(|x| x["current"] == true).collect();
    assert_eq!(
        current.len(),
        1,
        "exactly one is the caller's: {sessions:?}"
    );
    let theirs = sessions.iter().find(|x| x["current"] != true).unwrap();
    let id = theirs["id"].as_str().unwrap();
    let path = format!("/api/sessions/{id}");
    assert_eq!(send(&s, "DELETE", &path, None, &mine).status, 204);
    closed_with(&mut ws, 4001);
    s.get("/api/me", Some(&other))
        .assert_error(401, "unauthorized");
    assert_eq!(s.get("/api/me", Some(&mine)).status, 200);
}

/// `POST /api/ws-ticket` answers 201 `{"ticket","expires_at"}`; the ticket
/// opens one WebSocket as `?ticket=`, once: a second use, a forged ticket
/// or a token passed as a ticket get 401 and no upgrade.
#[test]
fn a_ws_ticket_opens_one_socket_once() {
    let s = Server::start();
    let token = s.token("alice");
    let r = send(&s, "POST", "/api/ws-ticket", None, &token);
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    common::assert_keys(&v, &["expires_at", "ticket"]);
    assert!(common::is_rfc3339_millis(v["expires_at"].as_str().unwrap()));
    let ticket = v["ticket"].as_str().unwrap();
    let mut ws = ws_connect(s.addr, &format!("/ws?ticket={ticket}"), None).expect("upgrade");
    ws.ready("alice", true);
    assert_eq!(upgrade_status(&s, &format!("ticket={ticket}")), 401, "used");
    assert_eq!(upgrade_status(&s, "ticket=AAAA"), 401, "forged");
    assert_eq!(
        upgrade_status(&s, &format!("ticket={token}")),
        401,
        "a token"
    );
    send(&s, "POST", "/api/ws-ticket", None, "nope").assert_error(401, "unauthorized");
}

/// The first account of a server is its admin; an admin's ban answers 204,
/// closes every socket of the user with 4003 within a second, and refuses
/// their login, their token (file routes included) and their upgrades with
/// 403 `banned` until the ban is lifted.
#[test]
fn a_ban_closes_sockets_and_refuses_every_route() {
    let s = Server::start();
    let admin = s.token("alice");
    let (mut ws, bob) = s.user("bob");
    assert_eq!(s.get("/api/me/file-link", Some(&bob)).status, 200);
    let ban = json!({"reason": "spam"});
    let r = send(&s, "POST", "/api/admin/users/bob/ban", Some(&ban), &admin);
    assert_eq!(r.status, 204, "{}", r.text());
    closed_with(&mut ws, 4003);
    s.get("/api/me", Some(&bob)).assert_error(403, "banned");
    s.get("/api/rooms", Some(&bob)).assert_error(403, "banned");
    send(&s, "POST", "/api/ws-ticket", None, &bob).assert_error(403, "banned");
    s.get("/api/me/file-link", Some(&bob))
        .assert_error(403, "banned");
    s.get("/api/files/1", Some(&bob))
        .assert_error(404, "not_found");
    assert_eq!(upgrade_status(&s, &format!("token={bob}")), 403);
    let login = json!({"username": "bob", "password": PASSWORD});
    s.post_json("/api/login", &login, None)
        .assert_error(403, "banned");
    let audit = s.get("/api/admin/audit", Some(&admin)).json();
    let first = &audit["entries"][0];
    assert_eq!(
        (
            &first["actor"],
            &first["action"],
            &first["target"],
            &first["reason"]
        ),
        (
            &json!("alice"),
            &json!("ban"),
            &json!("bob"),
            &json!("spam")
        ),
        "{audit}"
    );
    assert!(common::is_rfc3339_millis(first["at"].as_str().unwrap()));
    let r = send(&s, "DELETE", "/api/admin/users/bob/ban", None, &admin);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(s.get("/api/me", Some(&bob)).status, 200);
    s.login("bob", PASSWORD);
}

/// A member trying each moderator or admin action gets `forbidden`: every
/// `/api/admin/` route, making an invite, deleting someone else's room
/// message, removing someone from a room they do not own.
#[test]
fn a_member_gets_forbidden_for_every_moderator_action() {
    let s = Server::start();
    let (mut alice, _) = s.user("alice");
    let (mut bob, bob_token) = s.user("bob");
    let calls: [(&str, &str, Option<Value>); 10] = [
        ("GET", "/api/admin/users", None),
        (
            "POST",
            "/api/admin/users/alice/ban",
            Some(json!({"reason": "x"})),
        ),
        ("DELETE", "/api/admin/users/alice/ban", None),
        (
            "PUT",
            "/api/admin/users/bob/role",
            Some(json!({"role": "admin"})),
        ),
        (
            "PUT",
            "/api/admin/users/alice/password",
            Some(json!({"password": "x".repeat(12)})),
        ),
        ("DELETE", "/api/admin/users/alice/sessions", None),
        ("GET", "/api/admin/audit", None),
        ("GET", "/api/admin/settings", None),
        (
            "PUT",
            "/api/admin/settings",
            Some(json!({"signup": "open"})),
        ),
        (
            "POST",
            "/api/invites",
            Some(json!({"uses": 1, "expires_in": 60})),
        ),
    ];
    for (method, path, body) in &calls {
        send(&s, method, path, body.as_ref(), &bob_token).assert_error(403, "forbidden");
    }
    alice.join("general");
    bob.join("general");
    let said = alice.say("general", "mine", "c1");
    bob.send_json(&json!({"type": "delete", "id": said["id"]}));
    let e = bob.recv_until("error").0;
    assert_eq!(e["code"], "forbidden", "{e}");
    alice.create_room("alices", &["bob"]);
    bob.send_json(&json!({"type": "remove_member", "room": "alices", "user": "alice"}));
    let e = bob.recv_until("error").0;
    assert_eq!(e["code"], "forbidden", "{e}");
}

/// An admin makes a moderator (`PUT /api/admin/users/{name}/role`, shown
/// as `role` in `GET /api/users`); the moderator deletes a member's room
/// message (everyone in the room sees it go), removes a member from a
/// private room they do not own, and both are in the audit log (the
/// removal as `remove_member`, target `<user> from <room>`); the owner's
/// own removals are not moderation and are not audited. A moderator may
/// not grant roles.
#[test]
fn a_moderator_deletes_and_removes_and_is_audited() {
    let s = Server::start();
    let admin = s.token("alice");
    let (mut bob, _) = s.user("bob");
    let (mut carol, carol_token) = s.user("carol");
    let role = json!({"role": "moderator"});
    let r = send(
        &s,
        "PUT",
        "/api/admin/users/carol/role",
        Some(&role),
        &admin,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let users = s.get("/api/users", Some(&admin)).json();
    let roles: Vec<(String, String)> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["username"].as_str().unwrap().into(),
                u["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        roles.contains(&("carol".into(), "moderator".into())),
        "{roles:?}"
    );
    assert!(
        roles.contains(&("alice".into(), "admin".into())),
        "{roles:?}"
    );
    send(
        &s,
        "PUT",
        "/api/admin/users/bob/role",
        Some(&role),
        &carol_token,
    )
    .assert_error(403, "forbidden");
    for ws in [&mut bob, &mut carol] {
        ws.send_json(&json!({"type": "join", "room": "general"}));
        ws.recv_until("online_users");
    }
    let spam = bob.say("general", "buy now", "s1");
    carol.recv_until("message");
    carol.send_json(&json!({"type": "delete", "id": spam["id"]}));
    let gone = json!({"type": "message_deleted", "id": spam["id"], "room": "general"});
    assert_eq!(bob.recv_until("message_deleted").0, gone);
    assert_eq!(carol.recv_until("message_deleted").0, gone);
    bob.create_room("bobs", &["alice"]);
    carol.send_json(&json!({"type": "remove_member", "room": "bobs", "user": "alice"}));
    let members = bob.recv_until("room_members").0;
    assert_eq!(members["members"], json!(["bob"]), "{members}");
    bob.send_json(&json!({"type": "add_member", "room": "bobs", "user": "carol"}));
    bob.recv_until("room_members");
    bob.send_json(&json!({"type": "remove_member", "room": "bobs", "user": "carol"}));
    let members = bob.recv_until("room_members").0;
    assert_eq!(members["members"], json!(["bob"]), "{members}");
    let removals: Vec<_> = audit_entries(&s, &admin)
        .into_iter()
        .filter(|e| e.1 == "remove_member")
        .collect();
    assert_eq!(
        removals,
        [(
            "carol".to_string(),
            "remove_member".to_string(),
            "alice from bobs".to_string(),
            String::new()
        )],
        "the moderator's removal only"
    );
    let audit = s.get("/api/admin/audit", Some(&admin)).json();
    let actions: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or(""),
                e["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(actions.contains(&("carol", "delete_message")), "{audit}");
    assert!(
        actions.contains(&("alice", "set_role:moderator")),
        "{audit}"
    );
}

/// `--signup closed`: every signup is 403 `signup_closed`.
#[test]
fn closed_signup_refuses_everyone() {
    let s = Server::builder().arg("--signup").arg("closed").start();
    let body = json!({"username": "alice", "password": PASSWORD});
    s.post_json("/api/signup", &body, None)
        .assert_error(403, "signup_closed");
}

/// `--signup invite`: no code is 403 `invite_required`, an unknown or
/// used-up code 403 `invalid_invite`; a code made on the command line
/// (`hubbub invite create`, on the running server) lets the first person
/// in (who administers), and an admin's `POST /api/invites` answers 201
/// `{"code","uses","expires_at"}` with its uses counted. Email is
/// optional.
#[test]
fn invite_only_signup_takes_codes_with_use_counts() {
    let s = Server::builder().arg("--signup").arg("invite").start();
    let signup = |name: &str, invite: Option<&str>| {
        let mut b = json!({"username": name, "password": PASSWORD});
        if let Some(code) = invite {
            b["invite"] = json!(code);
        }
        s.post_json("/api/signup", &b, None)
    };
    signup("alice", None).assert_error(403, "invite_required");
    signup("alice", Some("no-such-code")).assert_error(403, "invalid_invite");
    let (ok, out, err) = cli(&s, &["invite", "create", "--uses", "1"], "");
    assert!(ok, "{err}");
    let code = out.split('\t').next().unwrap().trim().to_string();
    let r = signup("alice", Some(&code));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.json()["user"]["role"],
        "admin",
        "the first account administers"
    );
    signup("bob", Some(&code)).assert_error(403, "invalid_invite");
    let admin = s.login_token("alice");
    let made = send(
        &s,
        "POST",
        "/api/invites",
        Some(&json!({"uses": 2, "expires_in": 3600})),
        &admin,
    );
    assert_eq!(made.status, 201, "{}", made.text());
    let v = made.json();
    common::assert_keys(&v, &["code", "expires_at", "uses"]);
    assert_eq!(v["uses"], 2);
    let code = v["code"].as_str().unwrap();
    assert_eq!(signup("bob", Some(code)).status, 201);
    assert_eq!(signup("carol", Some(code)).status, 201);
    signup("dave", Some(code)).assert_error(403, "invalid_invite");
    let r = s.get("/api/server", None);
    assert_eq!(r.json()["signup"], "invite");
}

/// `PUT /api/me` `{"display_name","status"}` answers 200 with the user,
/// which `GET /api/me` and `GET /api/users` then carry; connected users
/// hear `user_updated`; a display name of 0 or 65 characters, or a status
/// of 141, is 400 `invalid_input`.
#[test]
fn display_name_and_status_are_set_and_shown() {
    let s = Server::start();
    let (_alice, token) = s.user("alice");
    let (mut bob, _) = s.user("bob");
    let body = json!({"display_name": "Alice Liddell", "status": "down the rabbit hole"});
    let r = send(&s, "PUT", "/api/me", Some(&body), &token);
    assert_eq!(r.status, 200, "{}", r.text());
    let me = s.get("/api/me", Some(&token)).json();
    assert_eq!(me["user"]["display_name"], "Alice Liddell");
    assert_eq!(me["user"]["status"], "down the rabbit hole");
    assert!(me["user"]["avatar"].is_null());
    let heard = bob.recv_until("user_updated").0;
    assert_eq!(heard["user"]["username"], "alice", "{heard}");
    assert_eq!(heard["user"]["display_name"], "Alice Liddell", "{heard}");
    let users = s.get("/api/users", Some(&token)).json();
    let alice = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "alice")
        .unwrap()
        .clone();
    assert_eq!(alice["display_name"], "Alice Liddell");
    for bad in [
        json!({"display_name": ""}),
        json!({"display_name": "x".repeat(65)}),
        json!({"status": "x".repeat(141)}),
        json!({"display_name": 7}),
    ] {
        send(&s, "PUT", "/api/me", Some(&bad), &token).assert_error(400, "invalid_input");
    }
    let ok = json!({"display_name": "é".repeat(64), "status": "x".repeat(140)});
    assert_eq!(send(&s, "PUT", "/api/me", Some(&ok), &token).status, 200);
}

/// The operator's command line works on a running server: `hubbub user
/// grant` makes an admin the server shows within about a second (its
/// change-log poll), `hubbub user ban` closes the user's sockets (4003),
/// and a bad name or role is a clear error with a failing exit status.
#[test]
fn the_command_line_changes_a_running_server() {
    let s = Server::start();
    let alice = s.token("alice");
    let (mut ws, bob) = s.user("bob");
    let (ok, _, err) = cli(&s, &["user", "grant", "bob", "admin"], "");
    assert!(ok, "{err}");
    wait_until(Duration::from_secs(3), "the grant to be seen", || {
        s.get("/api/me", Some(&bob)).json()["user"]["role"] == "admin"
    });
    let (ok, out, _) = cli(&s, &["user", "list"], "");
    assert!(ok && out.contains("bob\tadmin"), "{out}");
    let (ok, _, err) = cli(&s, &["user", "grant", "nobody", "admin"], "");
    assert!(!ok && err.contains("no user called"), "{err}");
    let (ok, _, err) = cli(&s, &["user", "grant", "bob", "king"], "");
    assert!(!ok && err.contains("no role"), "{err}");
    let (ok, _, err) = cli(&s, &["user", "ban", "bob", "--reason", "test"], "");
    assert!(ok, "{err}");
    let (code, _) = ws.expect_close(Duration::from_secs(4));
    assert_eq!(code, Some(4003));
    s.get("/api/me", Some(&bob)).assert_error(403, "banned");
    let (ok, _, err) = cli(
        &s,
        &[
            "user",
            "set-password",
            "alice",
            "--pbkdf2-iterations",
            "1000",
        ],
        "a brand new one\n",
    );
    assert!(ok, "{err}");
    // Logins are not polled (ten wrong ones lock the account): the
    // reset ends every session, so the old token going is the sign.
    wait_until(
        Duration::from_secs(3),
        "the reset to end alice's session",
        || s.get("/api/me", Some(&alice)).status == 401,
    );
    s.login("alice", "a brand new one");
}

/// The audit log's entries as (actor, action, target, reason); the
/// command line's actor is `null`, read as "".
fn audit_entries(s: &Server, admin: &str) -> Vec<(String, String, String, String)> {
    let audit = s.get("/api/admin/audit", Some(admin)).json();
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                text(&e["actor"]),
                text(&e["action"]),
                text(&e["target"]),
                text(&e["reason"]),
            )
        })
        .collect()
}

/// `hubbub user create` on a running server: signup's name rule and the
/// stores' uniqueness (any case, email too) refuse with a clear error and
/// a failing status; a created user (role as asked, audited with no
/// actor) logs in over HTTP within about a second (the change-log poll).
/// `hubbub user delete` does what `POST /api/me/delete` does: the user's
/// open socket closes (4001) within the contract's second, their token
/// and password are refused, their messages stay under
/// `deleted-user-<id>`, the name is free again; the last admin, an
/// unknown name, refuse.
#[test]
fn the_command_line_creates_and_deletes_users() {
    let s = Server::start();
    let alice = s.token("alice");
    let (_bob, _) = s.user("bob");
    let pw = "dave's password\n";
    let create = |args: &[&str], stdin: &str| {
        let mut all = vec!["user", "create"];
        all.extend_from_slice(args);
        cli(&s, &all, stdin)
    };
    for (args, stdin, says) in [
        (&["x"][..], pw, "bad username"),
        (&["a b c"][..], pw, "bad username"),
        (&["deleted-user-9"][..], pw, "deleted-user-"),
        (&["bob"][..], pw, "is taken"),
        (&["BOB"][..], pw, "is taken"),
        (&["dave", "--role", "king"][..], pw, "no role"),
        (&["dave", "--email", "nope"][..], pw, "bad --email"),
        (&["dave", "--email", "BOB@example.com"][..], pw, "is taken"),
        (&["dave"][..], "short\n", "8-128 characters"),
        (&["dave"][..], "", "8-128 characters"),
    ] {
        let (ok, _, err) = create(args, stdin);
        assert!(!ok && err.contains(says), "{args:?}: {err}");
    }
    let (ok, out, err) = create(
        &[
            "dave",
            "--email",
            "dave@example.com",
            "--role",
            "moderator",
            "--pbkdf2-iterations",
            "1000",
        ],
        pw,
    );
    assert!(ok, "{err}");
    assert_eq!(out, "dave is created, as moderator\n");
    wait_until(Duration::from_secs(3), "the server to know dave", || {
        let users = s.get("/api/users", Some(&alice)).json();
        users["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["username"] == "dave")
    });
    let dave = s.login("dave", "dave's password");
    assert_eq!(dave["user"]["role"], "moderator", "{dave}");
    let dave = dave["token"].as_str().unwrap().to_string();
    let audit = audit_entries(&s, &alice);
    assert!(
        audit.contains(&(
            String::new(),
            "create_user".into(),
            "dave".into(),
            "as moderator".into()
        )),
        "{audit:?}"
    );

    let (mut ws, _) = s.ws_ready("dave", &dave, true);
    ws.send_json(&json!({"type": "join", "room": "general"}));
    ws.recv_until("online_users");
    let said = ws.say("general", "remember me", "d1");
    let (ok, out, err) = cli(&s, &["user", "delete", "Dave"], "");
    assert!(ok, "{err}");
    assert!(out.starts_with("dave is deleted"), "{out}");
    closed_with(&mut ws, 4001);
    s.get("/api/me", Some(&dave))
        .assert_error(401, "unauthorized");
    let old = json!({"username": "dave", "password": "dave's password"});
    s.post_json("/api/login", &old, None)
        .assert_error(401, "invalid_credentials");
    let kept = s
        .all_messages(&alice, "general")
        .into_iter()
        .find(|m| m["id"] == said["id"])
        .expect("the deleted user's message stays");
    assert!(
        kept["user"].as_str().unwrap().starts_with("deleted-user-"),
        "{kept}"
    );
    assert!(
        audit_entries(&s, &alice).contains(&(
            String::new(),
            "delete_user".into(),
            "dave".into(),
            String::new()
        )),
        "the deletion is audited"
    );
    let (ok, _, err) = cli(&s, &["user", "delete", "dave"], "");
    assert!(!ok && err.contains("no user called"), "{err}");
    let (ok, _, err) = cli(&s, &["user", "delete", "alice"], "");
    assert!(!ok && err.contains("without an admin"), "{err}");
    let (ok, _, err) = create(&["dave", "--pbkdf2-iterations", "1000"], pw);
    assert!(ok, "the name is free again: {err}");
}
