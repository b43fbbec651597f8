//! Restores that clients survive: after an older backup is put back, new
//! messages get ids above every id issued before (`hubbub restore` raises
//! the floor), so a client that resumes with `join … since` its last id
//! gets what is new, never nothing and never another message under an id
//! it has seen. SQLite (`hubbub backup` / `hubbub restore BACKUP`) and
//! PostgreSQL (the README's `pg_dump` / `pg_restore` recipe, then
//! `hubbub restore --postgres URL`).

mod common;

use std::process::{Command, Output, Stdio};

use common::services::Postgres;
use common::*;
use serde_json::{Value, json};

fn hubbub(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubbub"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("HUBBUB_")) {
        cmd.env_remove(k);
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run hubbub")
}

fn id(v: &Value) -> i64 {
    v["id"].as_i64().expect("an id")
}

/// Alice saw ids up to `seen`; after the restore Bob posts, then Alice
/// resumes with `since = seen`: the replay holds Bob's new message under an
/// id above `seen`, and history is the backup's messages plus it.
fn resume_after_restore(s: &Server, seen: i64, before: &[&str]) {
    let (mut bob, _) = s.ws_ready("bob", &s.login_token("bob"), true);
    bob.join("general");
    let ack = bob.say("general", "after the restore", "after");
    assert!(
        id(&ack) > seen,
        "new id {} reuses one a client saw (<= {seen})",
        id(&ack)
    );
    let token = s.login_token("alice");
    let (mut alice, _) = s.ws_ready("alice", &token, true);
    alice.send_json(&json!({"type": "join", "room": "general", "since": seen}));
    let (online, replay) = alice.recv_until("online_users");
    assert_eq!(online["recovered"], true, "{online}");
    let replayed: Vec<&str> = replay
        .iter()
        .filter(|f| f["type"] == "message")
        .map(|f| f["content"].as_str().unwrap())
        .collect();
    assert_eq!(replayed, ["after the restore"]);
    let history: Vec<String> = s
        .all_messages(&token, "general")
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect();
    let mut want: Vec<String> = before.iter().map(|c| c.to_string()).collect();
    want.push("after the restore".into());
    assert_eq!(history, want);
}

/// SQLite: back up after three messages, send three more, stop, restore,
/// start: a client that saw all six resumes and gets the new one. A restore
/// while the server runs is refused.
#[test]
fn sqlite_restore_then_resume() {
    let mut s = Server::start();
    let (mut alice, _) = s.user("alice");
    s.signup("bob");
    alice.join("general");
    for i in 1..=3 {
        alice.say("general", &format!("kept {i}"), &format!("k{i}"));
    }
    let db = s.db_path();
    let backup = s.dir.path().join("backup.db");
    let o = hubbub(&[
        "backup",
        "--db",
        db.to_str().unwrap(),
        backup.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut seen = 0;
    for i in 4..=6 {
        seen = id(&alice.say("general", &format!("lost {i}"), &format!("l{i}")));
    }
    let o = hubbub(&[
        "restore",
        backup.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "refused while the server runs");
    assert!(String::from_utf8_lossy(&o.stderr).contains("in use by a running hubbub server"));
    drop(alice);
    assert!(s.sigterm().success());
    let o = hubbub(&[
        "restore",
        backup.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("new message ids start at"), "{out}");
    s.restart();
    resume_after_restore(&s, seen, &["kept 1", "kept 2", "kept 3"]);
}

/// Uploads `body` as `name`; the file's download path.
fn upload(s: &Server, token: &str, name: &str, body: &[u8]) -> String {
    let r = http(
        s.addr,
        "POST",
        &format!("/api/files?name={name}"),
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/octet-stream"),
        ],
        Some(body),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    format!("/api/files/{}", r.json()["file"]["id"])
}

fn download(s: &Server, token: &str, path: &str) -> Resp {
    http(
        s.addr,
        "GET",
        path,
        &[("Authorization", &format!("Bearer {token}"))],
        None,
    )
}

/// SQLite: `hubbub backup` copies the blobs its database copy names into
/// `BACKUP-files/` and says how many; with the server's own file directory
/// lost, `hubbub restore` brings them back beside the database, and the
/// restarted server serves the same bytes. A file uploaded after the
/// backup is not in it (the two are one snapshot) and is gone after the
/// restore.
#[test]
fn sqlite_backup_and_restore_carry_the_files() {
    let mut s = Server::start();
    let alice = s.token("alice");
    let first: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let second = b"a small text file\n".to_vec();
    let paths = [
        upload(&s, &alice, "first.bin", &first),
        upload(&s, &alice, "second.bin", &second),
    ];
    let db = s.db_path();
    let backup = s.dir.path().join("backup.db");
    let o = hubbub(&[
        "backup",
        "--db",
        db.to_str().unwrap(),
        backup.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains(", 2 files)"), "{out}");
    assert!(s.dir.path().join("backup.db-files/blobs").is_dir());
    let later = upload(&s, &alice, "later.bin", b"after the backup");

    assert!(s.sigterm().success());
    std::fs::remove_dir_all(s.dir.path().join("hubbub.db-files")).unwrap();
    let o = hubbub(&[
        "restore",
        backup.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("(2 files)"), "{out}");
    s.restart();
    for (path, body) in paths.iter().zip([&first, &second]) {
        let r = download(&s, &alice, path);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.body == *body, "{path}: the same bytes back");
    }
    assert_eq!(download(&s, &alice, &later).status, 404);
}

/// PostgreSQL: the README's recipe (`pg_dump -Fc`, `pg_restore` into a
/// fresh database, `hubbub restore --postgres URL`) and the same resume.
#[test]
fn postgres_restore_then_resume() {
    let pg = Postgres::start();
    let live = pg.create_database("live");
    let s = Server::builder()
        .arg("--postgres")
        .arg(live.clone())
        .start();
    let (mut alice, _) = s.user("alice");
    s.signup("bob");
    alice.join("general");
    for i in 1..=3 {
        alice.say("general", &format!("kept {i}"), &format!("k{i}"));
    }
    let dir = TempDir::new("pgdump");
    let dump = dir.path().join("hubbub.dump");
    pg.client_tool("pg_dump", &["-Fc", "-f", dump.to_str().unwrap(), &live]);
    let mut seen = 0;
    for i in 4..=6 {
        seen = id(&alice.say("general", &format!("lost {i}"), &format!("l{i}")));
    }
    drop(alice);
    drop(s);
    let restored = pg.create_database("restored");
    pg.client_tool(
        "pg_restore",
        &["--no-owner", "-d", &restored, dump.to_str().unwrap()],
    );
    let o = hubbub(&["restore", "--postgres", &restored]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = Server::builder().arg("--postgres").arg(restored).start();
    resume_after_restore(&s, seen, &["kept 1", "kept 2", "kept 3"]);
}
