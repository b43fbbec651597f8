//! Shared harness for the end-to-end tests: runs the real `hubbub` binary on a
//! fresh database and talks to it over real sockets (raw HTTP/1.1 and a
//! tungstenite WebSocket client). Every wait is bounded.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::{HandshakeError, Message, WebSocket};

pub mod cluster;
pub mod pebble;
pub mod push_service;
pub mod services;
pub mod tls;

/// The HS256 secret every test server gets through `HUBBUB_JWT_SECRET`
/// (unless built with `no_jwt_secret`), so tests can craft tokens.
pub const JWT_SECRET: &str = "hubbub-test-secret-0123456789abcdef";
/// Password used by `Server::token` / `Server::signup`.
pub const PASSWORD: &str = "correct horse battery";
/// Default bound for "this should arrive".
pub const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Temp dirs

/// A unique directory under the system temp dir, removed on drop; with
/// the PostgreSQL database its servers use when the suite runs on
/// PostgreSQL (see `Builder::on_store`), kept exactly as long.
pub struct TempDir(PathBuf, Mutex<Option<Arc<services::SharedPg>>>);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "hubbub-test-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path, Mutex::new(None))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------
// The server process

/// How to start a server. `Server::builder().flag("--echo").start()`.
#[derive(Clone)]
pub struct Builder {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    iterations: Option<u32>,
    jwt_secret: Option<String>,
    via_env: bool,
    omit_db: bool,
    /// `RLIMIT_NOFILE` (soft and hard) for the server process.
    nofile: Option<u64>,
    /// The PostgreSQL database this server (and its restarts) uses when the
    /// suite runs on PostgreSQL (`HUBBUB_TEST_STORE=postgres`).
    pg: Option<Arc<services::SharedPg>>,
}

impl Builder {
    /// Pass address, database and iterations as `HUBBUB_ADDR` / `HUBBUB_DB` /
    /// `HUBBUB_PBKDF2_ITERATIONS` instead of flags.
    pub fn config_via_env(mut self) -> Self {
        self.via_env = true;
        self
    }
    /// Give no database location at all (the server's default, `./hubbub.db` in its cwd,
    /// which is the data dir).
    pub fn omit_db(mut self) -> Self {
        self.omit_db = true;
        self
    }
    /// An extra command-line argument (flag or value).
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.envs.push((k.into(), v.into()));
        self
    }
    pub fn rate_limit(self, n: u32) -> Self {
        self.arg("--rate-limit").arg(n.to_string())
    }
    pub fn echo(self) -> Self {
        self.arg("--echo")
    }
    /// Leave out `--pbkdf2-iterations` (server default, 600000).
    pub fn default_iterations(mut self) -> Self {
        self.iterations = None;
        self
    }
    pub fn iterations(mut self, n: u32) -> Self {
        self.iterations = Some(n);
        self
    }
    /// Run the server with at most `n` open descriptors (soft and hard
    /// limit, so its start-up raise cannot lift it).
    pub fn nofile(mut self, n: u64) -> Self {
        self.nofile = Some(n);
        self
    }
    /// Do not set `HUBBUB_JWT_SECRET` (the server keeps a random one in its db).
    pub fn no_jwt_secret(mut self) -> Self {
        self.jwt_secret = None;
        self
    }
    pub fn start(self) -> Server {
        let dir = Arc::new(TempDir::new("srv"));
        Server::spawn(self.on_store(&dir), dir)
    }
    /// Start on an existing data directory (db at `dir/hubbub.db`).
    pub fn start_in(self, dir: Arc<TempDir>) -> Server {
        Server::spawn(self.on_store(&dir), dir)
    }
    /// With `HUBBUB_TEST_STORE=postgres` (`.ci/run` sets it for a second
    /// pass of the protocol suites), a PostgreSQL database instead of the
    /// SQLite file: one per data directory, so a restart, or a new server
    /// started in the same directory, finds the same data. A test that
    /// chose its own `--postgres` keeps it.
    fn on_store(mut self, dir: &TempDir) -> Builder {
        let wanted = std::env::var("HUBBUB_TEST_STORE").is_ok_and(|v| v == "postgres");
        if wanted && self.pg.is_none() && !self.args.iter().any(|a| a == "--postgres") {
            let pg = dir
                .1
                .lock()
                .unwrap()
                .get_or_insert_with(|| Arc::new(services::Postgres::shared()))
                .clone();
            self.args.push("--postgres".into());
            self.args.push(pg.url().to_string());
            self.pg = Some(pg);
        }
        self
    }
}

/// A running `hubbub` child. Killed on drop; its last stderr lines are printed
/// when the test is panicking.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: Arc<TempDir>,
    logs: Arc<Mutex<VecDeque<String>>>,
    builder: Builder,
}

const LOG_KEEP: usize = 300;

impl Server {
    pub fn builder() -> Builder {
        Builder {
            args: Vec::new(),
            envs: Vec::new(),
            iterations: Some(1000),
            jwt_secret: Some(JWT_SECRET.to_string()),
            via_env: false,
            omit_db: false,
            nofile: None,
            pg: None,
        }
    }

    /// A handle on something that serves hubbub at `addr` but is not our
    /// child (a load balancer in front of nodes): the HTTP and WebSocket
    /// conveniences work; nothing is killed on drop.
    pub fn front(addr: SocketAddr) -> Server {
        Server {
            child: None,
            addr,
            dir: Arc::new(TempDir::new("front")),
            logs: Arc::new(Mutex::new(VecDeque::new())),
            builder: Server::builder(),
        }
    }

    /// A server with the test defaults (1000 PBKDF2 iterations, known JWT secret).
    pub fn start() -> Server {
        Server::builder().start()
    }

    /// Where the server keeps its data, as the `hubbub` command line takes
    /// it: `--postgres URL` on PostgreSQL, else `--db PATH`.
    pub fn store_args(&self) -> Vec<String> {
        let args = &self.builder.args;
        match args.iter().position(|a| a == "--postgres") {
            Some(i) => vec!["--postgres".into(), args[i + 1].clone()],
            None => vec!["--db".into(), self.db_path().display().to_string()],
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("hubbub.db")
    }

    fn spawn(builder: Builder, dir: Arc<TempDir>) -> Server {
        let db = dir.path().join("hubbub.db");
        // `HUBBUB_TEST_BIN` runs the suite against another build (an A/B
        // check that a new test fails on the old code).
        let bin = std::env::var("HUBBUB_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_hubbub").to_string());
        let mut cmd = Command::new(bin);
        for (k, _) in std::env::vars() {
            if k.starts_with("HUBBUB_") {
                cmd.env_remove(k);
            }
        }
        let mut config = vec![("--addr", "HUBBUB_ADDR", "127.0.0.1:0".to_string())];
        if !builder.omit_db {
            config.push((
                "--db",
                "HUBBUB_DB",
                db.to_str().expect("utf-8 temp path").to_string(),
            ));
        }
        if let Some(n) = builder.iterations {
            config.push((
                "--pbkdf2-iterations",
                "HUBBUB_PBKDF2_ITERATIONS",
                n.to_string(),
            ));
        }
        for (flag, var, value) in config {
            if builder.via_env {
                cmd.env(var, value);
            } else {
                cmd.arg(flag).arg(value);
            }
        }
        cmd.args(&builder.args);
        cmd.env("RUST_LOG", "info");
        if let Some(s) = &builder.jwt_secret {
            cmd.env("HUBBUB_JWT_SECRET", s);
        }
        for (k, v) in &builder.envs {
            cmd.env(k, v);
        }
        cmd.current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(n) = builder.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: only setrlimit (async-signal-safe) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n as libc::rlim_t,
                        rlim_max: n as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn hubbub binary");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        {
            let logs = logs.clone();
            thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(t) = &tx
                        && let Some(addr) = parse_listening(&line)
                    {
                        let _ = t.send(addr);
                        tx = None;
                    }
                    let mut l = logs.lock().unwrap();
                    if l.len() >= LOG_KEEP {
                        l.pop_front();
                    }
                    l.push_back(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(addr) => break addr,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(st)) = child.try_wait() {
                        thread::sleep(Duration::from_millis(100));
                        panic!(
                            "hubbub exited ({st}) before `listening on`:\n{}",
                            joined(&logs)
                        );
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        panic!(
                            "hubbub printed no `listening on ADDR` within 30 s:\n{}",
                            joined(&logs)
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = child.kill();
                    thread::sleep(Duration::from_millis(100));
                    panic!(
                        "hubbub closed stderr before `listening on`:\n{}",
                        logs.lock()
                            .unwrap()
                            .iter()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join("\n")
                    );
                }
            }
        };
        Server {
            child: Some(child),
            addr,
            dir,
            logs,
            builder,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server not running").id()
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    pub fn logs(&self) -> String {
        joined(&self.logs)
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().unwrap();
        }
    }

    /// Send a signal (e.g. `libc::SIGINT`) without waiting.
    pub fn send_signal(&self, sig: libc::c_int) {
        let pid = self.pid() as libc::pid_t;
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({sig}) failed");
    }

    /// Send SIGTERM without waiting.
    pub fn send_sigterm(&self) {
        self.send_signal(libc::SIGTERM);
    }

    /// Wait (bounded) for the child to exit after a signal; returns its status.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("server not running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("hubbub did not exit within {within:?}:\n{}", self.logs());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait for exit (10 s bound).
    pub fn sigterm(&mut self) -> ExitStatus {
        self.send_sigterm();
        self.wait_exit(Duration::from_secs(10))
    }

    /// Start again on the same database (new port). Stops a running child with SIGTERM first.
    pub fn restart(&mut self) {
        if self.is_running() {
            let st = self.sigterm();
            assert!(st.success(), "graceful stop before restart: {st}");
        }
        self.child = None;
        let mut next = Server::spawn(self.builder.clone(), self.dir.clone());
        self.child = next.child.take();
        self.addr = next.addr;
        self.logs = next.logs.clone();
    }

    /// Resident set size of the server process in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib_of(self.pid()).expect("VmRSS in /proc/PID/status")
    }

    // ---- HTTP conveniences

    pub fn get(&self, path: &str, token: Option<&str>) -> Resp {
        let mut h = vec![];
        let auth;
        if let Some(t) = token {
            auth = format!("Bearer {t}");
            h.push(("Authorization", auth.as_str()));
        }
        http(self.addr, "GET", path, &h, None)
    }

    pub fn post_json(&self, path: &str, body: &Value, token: Option<&str>) -> Resp {
        let mut h = vec![("Content-Type", "application/json")];
        let auth;
        if let Some(t) = token {
            auth = format!("Bearer {t}");
            h.push(("Authorization", auth.as_str()));
        }
        http(
            self.addr,
            "POST",
            path,
            &h,
            Some(body.to_string().as_bytes()),
        )
    }

    /// Sign a user up (`name@example.com`, `PASSWORD`); returns the `user` object.
    pub fn signup(&self, name: &str) -> Value {
        let r = self.post_json(
            "/api/signup",
            &json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD}),
            None,
        );
        assert_eq!(r.status, 201, "signup {name}: {}", r.text());
        r.json()["user"].clone()
    }

    /// Log in; returns the full 200 body.
    pub fn login(&self, name: &str, password: &str) -> Value {
        let r = self.post_json(
            "/api/login",
            &json!({"username": name, "password": password}),
            None,
        );
        assert_eq!(r.status, 200, "login {name}: {}", r.text());
        r.json()
    }

    /// Log in an existing user (`PASSWORD`); returns the token.
    pub fn login_token(&self, name: &str) -> String {
        self.login(name, PASSWORD)["token"]
            .as_str()
            .expect("token")
            .to_string()
    }

    /// Sign up and log in; returns the token.
    pub fn token(&self, name: &str) -> String {
        self.signup(name);
        self.login_token(name)
    }

    /// Messages from `GET /api/messages?<query>` (asserts 200).
    pub fn messages(&self, token: &str, query: &str) -> Vec<Value> {
        let r = self.get(&format!("/api/messages?{query}"), Some(token));
        assert_eq!(r.status, 200, "GET /api/messages?{query}: {}", r.text());
        r.json()["messages"]
            .as_array()
            .expect("messages array")
            .clone()
    }

    /// Every stored message of a room, paging backwards with `before` (limit 200).
    pub fn all_messages(&self, token: &str, room: &str) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        let mut before: Option<i64> = None;
        loop {
            let q = match before {
                Some(b) => format!("room={room}&limit=200&before={b}"),
                None => format!("room={room}&limit=200"),
            };
            let page = self.messages(token, &q);
            if page.is_empty() {
                break;
            }
            before = Some(page[0]["id"].as_i64().unwrap());
            let mut page = page;
            page.extend(out);
            out = page;
        }
        out
    }

    // ---- WebSocket conveniences

    /// Connect to `path` (e.g. `/ws`, `/ws/room/general`) with `?token=`; panics on failure.
    pub fn ws(&self, path: &str, token: &str) -> Ws {
        let sep = if path.contains('?') { '&' } else { '?' };
        ws_connect(self.addr, &format!("{path}{sep}token={token}"), None)
            .unwrap_or_else(|e| panic!("ws connect {path}: {e:?}"))
    }

    /// Connect to `/ws` as `name` (token) and read the connect-time frames: until
    /// `unread` and, when `first` (the user's first connection), the user's own
    /// `user_status` online. Returns the client and every frame read.
    pub fn ws_ready(&self, name: &str, token: &str, first: bool) -> (Ws, Vec<Value>) {
        let mut c = self.ws("/ws", token);
        let frames = c.ready(name, first);
        (c, frames)
    }

    /// A brand-new user with one ready `/ws` connection.
    pub fn user(&self, name: &str) -> (Ws, String) {
        let token = self.token(name);
        let (c, _) = self.ws_ready(name, &token, true);
        (c, token)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if thread::panicking() {
            eprintln!(
                "---- last hubbub stderr lines ({}) ----\n{}\n----",
                self.addr,
                self.logs()
            );
        }
    }
}

/// VmRSS of a process in KiB (None once it is gone).
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn parse_listening(line: &str) -> Option<SocketAddr> {
    let i = line.find("listening on ")?;
    let rest = &line[i + "listening on ".len()..];
    let tok = rest.split_whitespace().next()?;
    let tok = tok
        .trim_start_matches("http://")
        .trim_start_matches("ws://");
    let tok = tok.trim_end_matches(|c: char| !c.is_ascii_digit());
    tok.parse().ok()
}

// ---------------------------------------------------------------------------
// HTTP

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {:?}", self.text()))
    }
    /// Assert an error response: status, JSON `{"error": <non-empty string>, "code": code}`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status,
            status,
            "expected {status} {code}, got: {} {}",
            self.status,
            self.text()
        );
        let ct = self.header("content-type").unwrap_or("");
        assert!(
            ct.starts_with("application/json"),
            "error content-type: {ct:?}"
        );
        let v = self.json();
        assert_eq!(v["code"], code, "error body: {v}");
        assert!(
            v["error"].as_str().is_some_and(|s| !s.is_empty()),
            "error body lacks a human sentence: {v}"
        );
    }
}

/// A keep-alive HTTP/1.1 client connection.
pub struct HttpConn {
    pub reader: BufReader<TcpStream>,
}

impl HttpConn {
    pub fn connect(addr: SocketAddr) -> HttpConn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_nodelay(true).unwrap();
        HttpConn {
            reader: BufReader::new(s),
        }
    }
    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream().write_all(bytes)
    }
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Resp {
        let raw = build_request(method, path, headers, body);
        self.send_raw(&raw).expect("write request");
        self.read_response().expect("read response")
    }
    /// Read one response (Content-Length or read-to-EOF bodies).
    pub fn read_response(&mut self) -> io::Result<Resp> {
        read_response(&mut self.reader, false)
    }
    pub fn read_response_to_head(&mut self) -> io::Result<Resp> {
        read_response(&mut self.reader, true)
    }
    /// True when the server closed the connection (EOF or reset) within `within`.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        wait_closed(self.reader.get_mut(), within)
    }
}

/// True when the peer closes `s` (EOF or reset) within `within`; bytes read meanwhile are discarded.
pub fn wait_closed(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

pub fn build_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        raw.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    raw.push_str("\r\n");
    let mut raw = raw.into_bytes();
    if let Some(b) = body {
        raw.extend_from_slice(b);
    }
    raw
}

fn read_response(r: &mut BufReader<TcpStream>, head_only: bool) -> io::Result<Resp> {
    let mut status_line = String::new();
    if r.read_line(&mut status_line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a response",
        ));
    }
    let mut parts = status_line.trim_end().splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad status line {status_line:?}"),
        ));
    }
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad status line {status_line:?}"),
        )
    })?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "EOF in response head",
            ));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').unwrap_or((line, ""));
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only || status == 304 || status == 204 || status == 101 || (100..200).contains(&status)
    {
        return Ok(resp);
    }
    if let Some(cl) = resp.header("content-length") {
        let n: usize = cl
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
        let mut body = vec![0; n];
        r.read_exact(&mut body)?;
        resp.body = body;
    } else if resp
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut line = String::new();
            r.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            resp.body.extend_from_slice(&chunk[..n]);
        }
    } else {
        r.read_to_end(&mut resp.body)?;
    }
    Ok(resp)
}

/// One request on a fresh connection.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    HttpConn::connect(addr).request(method, path, headers, body)
}

/// Write raw bytes on a fresh connection and read one response.
pub fn http_raw(addr: SocketAddr, raw: &[u8]) -> io::Result<Resp> {
    let mut c = HttpConn::connect(addr);
    c.send_raw(raw)?;
    c.read_response()
}

// ---------------------------------------------------------------------------
// Tokens

pub fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

pub fn b64url_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {s:?}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// Decode a JWT's header and claims (no verification).
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts: {token}");
    let h = serde_json::from_slice(&b64url_decode(parts[0])).expect("JWT header JSON");
    let c = serde_json::from_slice(&b64url_decode(parts[1])).expect("JWT claims JSON");
    (h, c)
}

/// An HS256 (or other HMAC) JWT signed with `secret`.
pub fn craft_jwt(
    header: &Value,
    claims: &Value,
    alg: ring::hmac::Algorithm,
    secret: &[u8],
) -> String {
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let key = ring::hmac::Key::new(alg, secret);
    let sig = ring::hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(sig.as_ref()))
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---------------------------------------------------------------------------
// Value checks

/// `2026-01-15T10:30:00.123Z`: RFC 3339 UTC with milliseconds.
pub fn is_rfc3339_millis(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 24 {
        return false;
    }
    let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22];
    digits.iter().all(|&i| b[i].is_ascii_digit())
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
}

/// Any RFC 3339 date-time (for `last_seen`, whose precision is not pinned).
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b't')
        && b[13] == b':'
        && (s.ends_with('Z') || s.ends_with('z') || s[19..].contains('+') || s[19..].contains('-'))
}

/// Seconds since the epoch of a UTC RFC 3339 time (`...Z`), fractions dropped.
pub fn rfc3339_to_unix(s: &str) -> Option<i64> {
    if !is_rfc3339(s) || !s.ends_with(['Z', 'z']) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + hh * 3600 + mm * 60 + ss)
}

/// Sorted list of the keys of a JSON object.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

/// Assert a JSON object has exactly these keys.
pub fn assert_keys(v: &Value, expected: &[&str]) {
    let mut e: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    e.sort();
    assert_eq!(keys(v), e, "keys of {v}");
}

/// A sorted list of strings from a JSON array of strings.
pub fn str_set(v: &Value) -> Vec<String> {
    let mut s: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| {
            x.as_str()
                .unwrap_or_else(|| panic!("not a string: {x}"))
                .to_string()
        })
        .collect();
    s.sort();
    s
}

pub fn strs(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// WebSocket client

/// What one read produced.
#[derive(Debug)]
pub enum Event {
    /// A text frame holding a JSON object.
    Frame(Value),
    /// A close frame from the server (code, if any).
    Close(Option<u16>),
    /// The connection ended without a close frame (EOF, reset, protocol error).
    Gone(String),
    Timeout,
    /// Ping/pong/binary, returned raw.
    Other(Message),
}

#[derive(Debug)]
pub enum ConnectError {
    /// The server answered the upgrade with this HTTP status (and body).
    Http(u16, String),
    Other(String),
}

/// A blocking WebSocket client over a std TcpStream with read timeouts.
pub struct Ws {
    pub ws: WebSocket<TcpStream>,
}

/// Connect to `ws://addr{path_and_query}`, optionally with an `Authorization: Bearer` header.
pub fn ws_connect(
    addr: SocketAddr,
    path_and_query: &str,
    bearer: Option<&str>,
) -> Result<Ws, ConnectError> {
    let mut req = format!("ws://{addr}{path_and_query}")
        .into_client_request()
        .expect("ws request");
    if let Some(t) = bearer {
        req.headers_mut()
            .insert("Authorization", format!("Bearer {t}").parse().unwrap());
    }
    let stream = TcpStream::connect(addr).map_err(|e| ConnectError::Other(e.to_string()))?;
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    match tungstenite::client::client(req, stream) {
        Ok((ws, _resp)) => Ok(Ws { ws }),
        Err(HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err(ConnectError::Http(resp.status().as_u16(), body))
        }
        Err(e) => Err(ConnectError::Other(format!("{e:?}"))),
    }
}

pub fn frame_type(v: &Value) -> &str {
    v["type"].as_str().unwrap_or("<no type>")
}

impl Ws {
    pub fn stream(&self) -> &TcpStream {
        self.ws.get_ref()
    }

    pub fn send_json(&mut self, v: &Value) {
        self.ws.send(Message::text(v.to_string())).expect("ws send");
    }
    pub fn send_text(&mut self, s: &str) {
        self.ws.send(Message::text(s.to_string())).expect("ws send");
    }
    pub fn send_binary(&mut self, b: &[u8]) {
        self.ws.send(Message::binary(b.to_vec())).expect("ws send");
    }
    /// Queue without flushing (many frames per write).
    pub fn write_json(&mut self, v: &Value) {
        self.ws
            .write(Message::text(v.to_string()))
            .expect("ws write");
    }
    pub fn flush(&mut self) {
        self.ws.flush().expect("ws flush");
    }

    /// One event within `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Event {
        let t = timeout.max(Duration::from_millis(1));
        self.ws.get_mut().set_read_timeout(Some(t)).unwrap();
        match self.ws.read() {
            Ok(Message::Text(t)) => match serde_json::from_str::<Value>(t.as_str()) {
                Ok(v) if v.is_object() => Event::Frame(v),
                _ => panic!(
                    "server sent a text frame that is not a JSON object: {:?}",
                    t.as_str()
                ),
            },
            Ok(Message::Close(c)) => Event::Close(c.map(|c| u16::from(c.code))),
            Ok(m) => Event::Other(m),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Event::Timeout
            }
            Err(e) => Event::Gone(e.to_string()),
        }
    }

    /// The next JSON frame (pings/pongs skipped); panics on timeout or close.
    pub fn recv(&mut self) -> Value {
        self.recv_within(WAIT)
    }

    pub fn recv_within(&mut self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next_event(deadline.saturating_duration_since(Instant::now())) {
                Event::Frame(v) => return v,
                Event::Other(Message::Ping(_)) | Event::Other(Message::Pong(_)) => continue,
                Event::Timeout => panic!("no frame within {timeout:?}"),
                e => panic!("expected a frame, got {e:?}"),
            }
        }
    }

    /// The next frame, which must have this `type`.
    pub fn expect(&mut self, ty: &str) -> Value {
        let v = self.recv();
        assert_eq!(frame_type(&v), ty, "expected a `{ty}` frame, got {v}");
        v
    }

    /// Frames until one of type `ty`; returns it and every frame skipped on the way.
    pub fn recv_until(&mut self, ty: &str) -> (Value, Vec<Value>) {
        let mut skipped = Vec::new();
        loop {
            let v = self.recv();
            if frame_type(&v) == ty {
                return (v, skipped);
            }
            skipped.push(v);
            assert!(skipped.len() < 100_000, "runaway recv_until({ty})");
        }
    }

    /// Frames until one of type `ty`, asserting each skipped frame's type is in `allowed`.
    pub fn expect_after(&mut self, ty: &str, allowed: &[&str]) -> Value {
        let (v, skipped) = self.recv_until(ty);
        for s in &skipped {
            assert!(
                allowed.contains(&frame_type(s)),
                "unexpected frame {s} while waiting for `{ty}`"
            );
        }
        v
    }

    /// An `error` frame with this code (next frame).
    pub fn expect_error(&mut self, code: &str) -> Value {
        let v = self.expect("error");
        assert_eq!(v["code"], code, "error frame: {v}");
        assert!(
            v["message"].is_string(),
            "error frame without a message: {v}"
        );
        v
    }

    /// Nothing at all arrives for `ms` milliseconds (pings excepted).
    pub fn expect_silence(&mut self, ms: u64) {
        let deadline = Instant::now() + Duration::from_millis(ms);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next_event(left) {
                Event::Timeout => return,
                Event::Other(Message::Ping(_)) => continue,
                e => panic!("expected silence for {ms} ms, got {e:?}"),
            }
        }
    }

    /// Read until the server closes: returns the close code (None for a close
    /// without code or a connection that just ended) and the JSON frames before it.
    pub fn expect_close(&mut self, within: Duration) -> (Option<u16>, Vec<Value>) {
        let deadline = Instant::now() + within;
        let mut frames = Vec::new();
        loop {
            match self.next_event(deadline.saturating_duration_since(Instant::now())) {
                Event::Frame(v) => frames.push(v),
                Event::Close(code) => return (code, frames),
                Event::Gone(_) => return (None, frames),
                Event::Other(_) => continue,
                Event::Timeout => panic!("connection not closed within {within:?}"),
            }
        }
    }

    /// Read the connect-time frames: until `unread` and, when `first`, this user's
    /// own `user_status` online. Returns every frame read.
    pub fn ready(&mut self, me: &str, first: bool) -> Vec<Value> {
        let mut frames = Vec::new();
        let mut got_unread = false;
        let mut got_status = !first;
        while !(got_unread && got_status) {
            let v = self.recv();
            match frame_type(&v) {
                "unread" => {
                    assert!(!got_unread, "a second `unread` frame: {v}");
                    got_unread = true;
                }
                "user_status" if v["user"] == me && v["status"] == "online" => got_status = true,
                _ => {}
            }
            frames.push(v);
        }
        frames
    }

    /// Drain pending presence frames with a round trip: a `history` request for an unused
    /// room; every frame before its answer must be `user_status`, `join` or `leave`.
    pub fn sync(&mut self) {
        self.send_json(&json!({"type": "history", "room": "sync-probe", "limit": 1}));
        self.expect_after("history", &["user_status", "join", "leave"]);
    }

    /// Join `room` and return the `online_users` reply (user_status/join/leave frames may precede it).
    pub fn join(&mut self, room: &str) -> Value {
        self.send_json(&json!({"type": "join", "room": room}));
        self.expect_after("online_users", &["user_status", "join", "leave"])
    }

    /// `create_room` (private) and read the creator's `online_users` and `room_members`
    /// (either order; `user_status` frames may interleave). Returns (online_users, room_members).
    pub fn create_room(&mut self, room: &str, members: &[&str]) -> (Value, Value) {
        self.send_json(
            &json!({"type": "create_room", "room": room, "private": true, "members": members}),
        );
        let (mut online, mut rm) = (None, None);
        while online.is_none() || rm.is_none() {
            let v = self.recv();
            match frame_type(&v) {
                "online_users" if online.is_none() => online = Some(v),
                "room_members" if rm.is_none() => rm = Some(v),
                "user_status" => {}
                _ => panic!("unexpected frame after create_room {room}: {v}"),
            }
        }
        (online.unwrap(), rm.unwrap())
    }

    /// Send a room message with a client_id and wait for its ack (skipping presence frames).
    pub fn say(&mut self, room: &str, content: &str, client_id: &str) -> Value {
        self.send_json(
            &json!({"type": "message", "room": room, "content": content, "client_id": client_id}),
        );
        let ack = self.expect_after("ack", &["user_status", "join", "leave"]);
        assert_eq!(ack["client_id"], client_id, "ack: {ack}");
        ack
    }

    /// Send many room messages (client_ids `{prefix}-{i}`) in batches of 100 and
    /// return their acks in order. Needs `--rate-limit 0` past the burst.
    pub fn say_many(&mut self, room: &str, contents: &[String], prefix: &str) -> Vec<Value> {
        let mut acks = Vec::with_capacity(contents.len());
        for (b, batch) in contents.chunks(100).enumerate() {
            for (i, c) in batch.iter().enumerate() {
                let cid = format!("{prefix}-{}", b * 100 + i);
                self.write_json(
                    &json!({"type": "message", "room": room, "content": c, "client_id": cid}),
                );
            }
            self.flush();
            for i in 0..batch.len() {
                let ack = self.expect_after("ack", &["user_status", "join", "leave"]);
                assert_eq!(
                    ack["client_id"],
                    format!("{prefix}-{}", b * 100 + i),
                    "acks in order: {ack}"
                );
                acks.push(ack);
            }
        }
        acks
    }

    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
        // Give the server the close handshake; then drop.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match self.next_event(Duration::from_millis(200)) {
                Event::Frame(_) | Event::Other(_) | Event::Timeout => continue,
                _ => break,
            }
        }
    }

    /// Drop the TCP connection abruptly (no close frame).
    pub fn drop_tcp(self) {
        let _ = self.ws.get_ref().shutdown(Shutdown::Both);
    }
}

/// Raise this process's open-file limit (for tests with many sockets).
pub fn raise_nofile(n: u64) {
    // SAFETY: getrlimit/setrlimit on our own process with a valid struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < n as libc::rlim_t {
            r.rlim_cur = (n as libc::rlim_t).min(r.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// A TCP connection to `addr` from source address `from` (any of
/// 127.0.0.0/8 works on Linux without configuration): how the tests play
/// several clients for the per-address limits.
pub fn connect_from(from: std::net::Ipv4Addr, addr: SocketAddr) -> io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(to) = addr else {
        return Err(io::Error::other("IPv4 only"));
    };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a fresh socket, owned by the TcpStream once made; valid
    // sockaddr_in pointers with their length.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let src = sockaddr(from, 0);
        if libc::bind(fd, (&src as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let dst = sockaddr(*to.ip(), to.port());
        if libc::connect(fd, (&dst as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// The server's last stderr lines, one string (printed when a test fails).
fn joined(logs: &Mutex<VecDeque<String>>) -> String {
    logs.lock()
        .unwrap()
        .iter()
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}
