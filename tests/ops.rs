//! The operator's kit, as an operator meets it: `--version`, `--help`
//! columns, the config file (flags over environment over file, errors with
//! file and line), the start line, the checks that run before anything is
//! created (port in use, short secret, an unwritable directory), one server
//! per database file, `migrate` refusing a running server's database,
//! SIGHUP rereading the log level, and the systemd unit passing
//! `systemd-analyze verify`.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn hubbub(args: &[&str], dir: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubbub"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("HUBBUB_")) {
        cmd.env_remove(k);
    }
    cmd.args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run hubbub")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `--version` and `-V` print the version; `/metrics` and the start line
/// carry the same.
#[test]
fn version_is_printed() {
    let dir = TempDir::new("ops");
    for flag in ["--version", "-V"] {
        let o = hubbub(&[flag], dir.path());
        assert!(o.status.success());
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            format!("hubbub {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

/// Every `--help` line with a description has at least two spaces
/// between its columns, or its description on the next line.
#[test]
fn help_columns_never_run_together() {
    let dir = TempDir::new("ops");
    let o = hubbub(&["--help"], dir.path());
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(entry) = line.strip_prefix("    ").filter(|e| e.starts_with('-')) else {
            continue;
        };
        let separated = entry.contains("  ");
        let continued = lines.get(i + 1).is_some_and(|n| n.starts_with("      "));
        assert!(separated || continued, "columns run together: {line:?}");
    }
    for flag in [
        "--tls-cert",
        "--tls-domain",
        "--config",
        "--version",
        "--postgres-ca",
        "--redis-ca",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help");
    }
}

/// A config file sets what neither a flag nor a variable does; a variable
/// beats the file and a flag beats both. The start line names the absolute
/// database path, the config file and the address.
#[test]
fn config_file_sits_below_env_and_flags() {
    let dir = TempDir::new("ops");
    let conf = dir.path().join("hubbub.conf");
    std::fs::write(
        &conf,
        "# a comment\n\
         db = from-file.db\n\
         rate-limit = 1\n\
         presence-grace = \"0\"\n\
         jwt-secret = 0123456789abcdef0123456789abcdef\n\
         echo = true\n",
    )
    .unwrap();
    let s = Server::builder()
        .omit_db()
        .no_jwt_secret()
        .arg("--config")
        .arg(conf.to_str().unwrap())
        .env("HUBBUB_RATE_LIMIT", "0")
        .start_in(std::sync::Arc::new(dir));
    let logs = s.logs();
    let db = s.dir.path().join("from-file.db");
    assert!(db.exists(), "the file's db");
    let start = logs
        .lines()
        .find(|l| l.contains("starting:"))
        .expect("a start line");
    assert!(
        start.contains(&format!("SQLite at {}", db.display())),
        "{start}"
    );
    assert!(start.contains(&format!("http on {}", s.addr)), "{start}");
    assert!(
        start.contains(&format!("config {}", conf.display())),
        "{start}"
    );
    assert!(start.contains(env!("CARGO_PKG_VERSION")), "{start}");
    // The file's switch: /ws/echo exists.
    assert!(ws_connect(s.addr, "/ws/echo", None).is_ok());
    // HUBBUB_RATE_LIMIT=0 beat the file's 1: 30 frames, no rate_limited.
    let (mut a, _) = s.user("alice");
    a.join("general");
    let contents: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
    assert_eq!(a.say_many("general", &contents, "x").len(), 30);

    let bad = TempDir::new("ops");
    let conf = bad.path().join("bad.conf");
    std::fs::write(&conf, "addr = 127.0.0.1:0\n\nnot-a-key = 3\n").unwrap();
    let o = hubbub(&["--config", conf.to_str().unwrap()], bad.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("{}:3: unknown key \"not-a-key\"", conf.display())),
        "{}",
        stderr(&o)
    );
    assert!(!bad.path().join("hubbub.db").exists());
}

/// A port in use, a short JWT secret, a missing or unwritable directory:
/// the start stops with the address, variable or directory named, and no
/// database file is created.
#[test]
fn failed_checks_name_the_cause_and_create_nothing() {
    let dir = TempDir::new("ops");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = hubbub(&["--addr", &addr, "--db", "h.db"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("cannot listen on {addr} (--addr)")),
        "{}",
        stderr(&o)
    );
    assert!(
        !dir.path().join("h.db").exists(),
        "created before the port check"
    );

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubbub"));
    let o = cmd
        .args(["--addr", "127.0.0.1:0", "--db", "h.db"])
        .env("HUBBUB_JWT_SECRET", "short")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("HUBBUB_JWT_SECRET is 5 bytes"),
        "{}",
        stderr(&o)
    );
    assert!(
        !dir.path().join("h.db").exists(),
        "created before the secret check"
    );

    let o = hubbub(
        &["--addr", "127.0.0.1:0", "--db", "no/such/dir/h.db"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("{}", dir.path().join("no/such/dir").display())),
        "{}",
        stderr(&o)
    );

    // A read-only directory: as root (CI) the check runs as `nobody`, since
    // root may write anywhere.
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = env!("CARGO_BIN_EXE_hubbub");
    let db = ro.join("h.db");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--", bin]);
        c
    } else {
        Command::new(bin)
    };
    let o = cmd
        .args(["--addr", "127.0.0.1:0", "--db", db.to_str().unwrap()])
        .current_dir("/")
        .output()
        .unwrap();
    let err = stderr(&o);
    if root && err.contains("Permission denied") && err.contains("hubbub") && !err.contains("ro") {
        eprintln!("skipped the read-only part: nobody cannot run the test binary here: {err}");
        return;
    }
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "the database's directory {} is not writable",
            ro.display()
        )),
        "{err}"
    );
    assert!(!db.exists());
}

/// A running server holds its SQLite file: a second server on it and
/// `hubbub migrate` from it are refused, naming the file; a backup still
/// works.
#[test]
fn a_running_servers_database_is_refused() {
    let s = Server::start();
    s.signup("alice");
    let db = s.db_path();
    let o = hubbub(
        &["--addr", "127.0.0.1:0", "--db", db.to_str().unwrap()],
        s.dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is in use by a running hubbub server"),
        "{}",
        stderr(&o)
    );
    let o = hubbub(
        &[
            "migrate",
            "--from-sqlite",
            db.to_str().unwrap(),
            "--postgres",
            "postgres://nobody@127.0.0.1:1/none",
        ],
        s.dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!(
            "{} is in use by a running hubbub server",
            db.display()
        )),
        "{}",
        stderr(&o)
    );
    let copy = s.dir.path().join("copy.db");
    let o = hubbub(
        &[
            "backup",
            "--db",
            db.to_str().unwrap(),
            copy.to_str().unwrap(),
        ],
        s.dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

/// SIGHUP rereads the config file's log level: debug lines appear after
/// the change, and the server goes on running.
#[test]
fn sighup_rereads_the_log_level() {
    let dir = std::sync::Arc::new(TempDir::new("ops"));
    let conf = dir.path().join("hubbub.conf");
    std::fs::write(&conf, "log-level = info\n").unwrap();
    let mut s = Server::builder()
        .arg("--config")
        .arg(conf.to_str().unwrap())
        .env("RUST_LOG", "")
        .start_in(dir);
    let _ = s.get("/healthz", None);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!s.logs().contains("GET /healthz"), "no debug lines at info");
    std::fs::write(&conf, "log-level = debug\n").unwrap();
    s.send_signal(libc::SIGHUP);
    let deadline = Instant::now() + WAIT;
    while !s.logs().contains("log level DEBUG") {
        assert!(Instant::now() < deadline, "{}", s.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = s.get("/healthz", None);
    let deadline = Instant::now() + WAIT;
    while !s.logs().contains("GET /healthz") {
        assert!(Instant::now() < deadline, "{}", s.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(s.is_running());
}

/// `hubbub systemd-unit` prints a sandboxed unit that names this binary
/// and passes `systemd-analyze verify`.
#[test]
fn systemd_unit_verifies() {
    let dir = TempDir::new("ops");
    let o = hubbub(&["systemd-unit"], dir.path());
    assert!(o.status.success());
    let unit = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(unit.contains(&format!("ExecStart={} ", env!("CARGO_BIN_EXE_hubbub"))));
    for line in [
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(line), "{line}");
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze is not installed (.ci/run installs it)");
        return;
    }
    let path = dir.path().join("hubbub.service");
    std::fs::write(&path, &unit).unwrap();
    let v = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&v.stdout), stderr(&v));
    assert!(v.status.success(), "{said}");
    assert!(
        !said.contains("hubbub.service"),
        "systemd-analyze complained: {said}"
    );
}

/// The README's fail2ban filter (between its `fail2ban-filter` markers),
/// run by Debian's `fail2ban-regex` over a real server's log: every
/// `hubbub::security` line (failed logins, username throttling, a banned
/// user's refused login), in the log file's form and in the form the
/// journal backend hands fail2ban, is matched once, with the client's
/// address and the line's UTC time; a name carrying a forged line, and a
/// forged line in another target's text, supply no address.
#[test]
fn the_readmes_fail2ban_filter_matches_the_security_lines() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let filter = readme
        .split_once("<!-- fail2ban-filter:begin -->")
        .and_then(|(_, rest)| rest.split_once("<!-- fail2ban-filter:end -->"))
        .expect("README.md holds the fail2ban filter between its markers")
        .0
        .lines()
        .filter(|l| !l.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n");

    let s = Server::start();
    let admin = s.token("alice");
    s.signup("bob");
    let auth = format!("Bearer {admin}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let ban = http(
        s.addr,
        "POST",
        "/api/admin/users/bob/ban",
        &headers,
        Some(br#"{"reason":"spam"}"#),
    );
    assert_eq!(ban.status, 204, "{}", ban.text());
    let login = |name: &str, password: &str| {
        let body = serde_json::json!({"username": name, "password": password});
        s.post_json("/api/login", &body, None).status
    };
    // Ten failures, then the username's budget refuses (429).
    let statuses: Vec<u16> = (0..12)
        .map(|_| login("mallory", "not the password"))
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&c| c == 401).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&c| c == 429).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(login("bob", PASSWORD), 403);
    let forged = "x\" INFO  [hubbub::security] login failed addr=6.6.6.6 user=\"";
    login(forged, "not the password");

    let dir = TempDir::new("f2b");
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let log = s.logs();
        let security: Vec<String> = log
            .lines()
            .filter(|l| l.contains(" [hubbub::security] "))
            .map(String::from)
            .collect();
        // 10 failed + 2 throttled + 1 banned + the forging name's failure.
        if security.len() >= 14 || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    let mut expected = 0;
    for line in lines.lines() {
        log.push_str(line);
        log.push('\n');
        if line.contains(" [hubbub::security] ") {
            // The journal backend's line: "host ident[pid]: MESSAGE" after
            // the journal's own time.
            log.push_str(&format!("{} myhost hubbub[4242]: {line}\n", &line[..24]));
            expected += 2;
        }
    }
    log.push_str(&format!(
        "{} WARN  [hubbub::http] echoed: INFO  [hubbub::security] login failed addr=6.6.6.6 user=\"x\"\n",
        &lines.lines().last().unwrap()[..24]
    ));
    assert!(
        lines.contains(" login throttled addr=127.0.0.1 by=username ")
            && lines.contains(" login refused addr=127.0.0.1 why=banned "),
        "{lines}"
    );
    assert_eq!(expected, 2 * 14, "{lines}");
    let (log_path, filter_path) = (
        dir.path().join("hubbub.log"),
        dir.path().join("hubbub.conf"),
    );
    std::fs::write(&log_path, &log).unwrap();
    std::fs::write(&filter_path, filter).unwrap();

    let out = Command::new("fail2ban-regex")
        .args(["-o", "row"])
        .arg(&log_path)
        .arg(&filter_path)
        .output()
        .unwrap_or_else(|e| {
            panic!("fail2ban-regex cannot run ({e}): install Debian's fail2ban (.ci/run does)")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", stderr(&out));
    // One row a match: ['127.0.0.1',\t1796684855,\t{...}],
    let rows: Vec<(String, i64)> = stdout
        .lines()
        .filter_map(|l| {
            let mut f = l.strip_prefix("['")?.split(",\t");
            let ip = f.next()?.trim_end_matches('\'').to_string();
            Some((ip, f.next()?.parse().ok()?))
        })
        .collect();
    assert_eq!(rows.len(), expected, "{stdout}\n{log}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for (ip, at) in &rows {
        assert_eq!(ip, "127.0.0.1", "{stdout}");
        assert!((now - at).abs() < 120, "read as UTC: {at} vs now {now}");
    }
}
