//! `hubbub backup PATH`: a copy of the live database taken while the server
//! runs and writes, restored by starting a fresh server on it; and the
//! command's refusals (an existing PATH, a missing one).

mod common;

use common::*;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// Messages acked before the concurrent sender starts.
const BEFORE: usize = 50;
/// Messages the concurrent sender sends, one at a time, each awaiting its ack.
const DURING: usize = 200;
/// The backup starts once this many of the concurrent sender's are acked,
/// so it runs while the rest are being written.
const BACKUP_AFTER: usize = 20;
/// Pause between the concurrent sender's messages, so its 200 writes span
/// the backup (a debug-build run takes some 100 ms, mostly start-up) instead
/// of finishing before the copy reads its snapshot.
const SEND_PAUSE: Duration = Duration::from_millis(3);
/// Bound on one run of `hubbub backup` (a few hundred messages take milliseconds).
const BACKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// What a run of `hubbub backup` did.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `hubbub backup ARGS` with umask 0, so a mode of 0600 on what it
/// creates is its own doing, and waits for it (bounded).
fn backup(args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubbub"));
    for (k, _) in std::env::vars() {
        if k.starts_with("HUBBUB_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("backup")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: umask(2) is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn hubbub backup");
    let deadline = Instant::now() + BACKUP_TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hubbub backup did not exit within {BACKUP_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Run {
        status,
        stdout,
        stderr,
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// (id, user, content) of each message, for comparing histories.
fn rows(messages: &[serde_json::Value]) -> Vec<(i64, String, String)> {
    messages
        .iter()
        .map(|m| {
            (
                m["id"].as_i64().expect("id"),
                m["user"].as_str().expect("user").to_string(),
                m["content"].as_str().expect("content").to_string(),
            )
        })
        .collect()
}

/// A backup taken while another connection keeps sending exits 0, says what
/// it wrote, is mode 0600 whatever the umask, and a fresh server started on
/// it serves every message acked before the backup started, in order, once
/// each: exactly the live history up to one point, nothing partial. The
/// live server's files are owner-only too, and it keeps serving throughout.
#[test]
fn backup_of_a_live_server_restores_every_acked_message() {
    let s = Server::builder().rate_limit(0).start();
    let (mut alice, alice_token) = s.user("alice");
    alice.join("general");
    let contents: Vec<String> = (0..BEFORE).map(|i| format!("before {i}")).collect();
    let mut acked_at_start: Vec<i64> = alice
        .say_many("general", &contents, "a")
        .iter()
        .map(|a| a["id"].as_i64().expect("ack id"))
        .collect();
    for suffix in ["", "-wal", "-shm"] {
        let file = s.dir.path().join(format!("hubbub.db{suffix}"));
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }

    let (mut bob, _) = s.user("bob");
    bob.join("general");
    let during = Arc::new(Mutex::new(Vec::new()));
    let (started, backup_may_start) = mpsc::channel();
    let sender = {
        let during = during.clone();
        thread::spawn(move || {
            for i in 0..DURING {
                let ack = bob.say("general", &format!("during {i}"), &format!("b-{i}"));
                during
                    .lock()
                    .unwrap()
                    .push(ack["id"].as_i64().expect("ack id"));
                if i + 1 == BACKUP_AFTER {
                    started.send(()).unwrap();
                }
                thread::sleep(SEND_PAUSE);
            }
        })
    };
    backup_may_start
        .recv_timeout(WAIT * 2)
        .expect("the sender got its first acks");
    acked_at_start.extend(during.lock().unwrap().iter().copied());
    let out = TempDir::new("backup");
    let copy = out.path().join("copy.db");
    let db = s.db_path();
    let t = Instant::now();
    let run = backup(&[copy.to_str().unwrap(), "--db", db.to_str().unwrap()]);
    let took = t.elapsed();
    let acked_at_end = during.lock().unwrap().len();
    sender.join().expect("the sender got every ack");
    eprintln!(
        "backup took {took:?}; the sender's acks: {} when it started, {acked_at_end} when it ended",
        acked_at_start.len() - BEFORE
    );
    assert!(
        acked_at_start.len() - BEFORE < DURING,
        "the sender was still sending when the backup started"
    );
    assert!(run.status.success(), "{}: {}", run.status, run.stderr);
    assert_eq!(mode(&copy), 0o600);

    let dir = Arc::new(TempDir::new("restore"));
    std::fs::copy(&copy, dir.path().join("hubbub.db")).unwrap();
    let restored = Server::builder().start_in(dir);
    let token = restored.login_token("alice");
    let got = rows(&restored.all_messages(&token, "general"));
    assert_eq!(
        run.stdout,
        format!(
            "backup: wrote {} ({} messages, 2 users, 0 files)\n",
            copy.display(),
            got.len()
        )
    );
    eprintln!(
        "the copy holds {} of {} messages",
        got.len(),
        BEFORE + DURING
    );
    let ids: Vec<i64> = got.iter().map(|r| r.0).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates: {ids:?}"
    );
    for id in &acked_at_start {
        assert!(
            ids.contains(id),
            "message {id}, acked before the backup, is missing"
        );
    }
    let live = rows(&s.all_messages(&alice_token, "general"));
    assert_eq!(
        live.len(),
        BEFORE + DURING,
        "the live server kept everything"
    );
    assert_eq!(
        got[..],
        live[..got.len()],
        "the copy is the live history up to one point"
    );
}

/// A backup onto an existing file fails with exit 1 and a reason, and
/// leaves that file as it was.
#[test]
fn backup_never_overwrites() {
    let s = Server::start();
    s.signup("alice");
    let out = TempDir::new("backup");
    let copy = out.path().join("copy.db");
    std::fs::write(&copy, b"precious").unwrap();
    let db = s.db_path();
    let run = backup(&[copy.to_str().unwrap(), "--db", db.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert!(
        run.stderr.starts_with("hubbub backup: ") && run.stderr.contains("already exists"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
    assert_eq!(std::fs::read(&copy).unwrap(), b"precious");
}

/// `hubbub backup` without PATH is a usage error (exit 2) and creates nothing.
#[test]
fn backup_without_path_is_a_usage_error() {
    let dir = TempDir::new("backup");
    let db = dir.path().join("hubbub.db");
    let run = backup(&["--db", db.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("needs the PATH"), "{}", run.stderr);
    assert!(!db.exists());
}
