//! Real PostgreSQL, Redis and nginx for the cluster tests, each private: a
//! free loopback port, its own temp directory, stopped by pid on drop
//! (nginx with SIGTERM, so its master takes the workers down with it). No
//! system service is used or touched, so tests run the same on a laptop
//! and in CI. Every wait is bounded and panics saying what did not happen.
//!
//! `.ci/run` starts one PostgreSQL and one Redis for the whole suite and
//! passes them in `HUBBUB_TEST_POSTGRES` / `HUBBUB_TEST_REDIS`;
//! [`Postgres::shared`] and [`Redis::shared`] use those when set, so the
//! tests that do not stop their service pay for a database, not a cluster.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{fs, io, thread};

use super::TempDir;

/// How long a service may take to come up (PostgreSQL's initdb and start
/// are the slow ones: about a second on an idle machine, more on a busy CI).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a one-shot command (psql, pg_ctl stop) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at a free port: the port is free when chosen and taken when the
/// service binds it, and another test may take it in between.
const PORT_ATTEMPTS: usize = 3;

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A name no other test in any process is using now: pid, a per-process
/// counter and the clock.
fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

/// Runs `cmd` to completion within `timeout` (killed and Err past it).
fn run(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    let what = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => {
            // SAFETY: kill with a pid we spawned and have not reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            Err(format!("{what} did not finish within {timeout:?}"))
        }
    }
}

/// Like `run`, and Err unless it exited 0; the Err quotes its output.
fn run_ok(cmd: Command, timeout: Duration) -> Result<String, String> {
    let what = format!("{cmd:?}");
    let out = run(cmd, timeout)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{what} failed ({}):\n{text}", out.status))
    }
}

/// Waits until `ready` is true, or the child exits (Err), or `timeout`.
fn wait_until(
    child: &mut Child,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("exited ({st})"));
        }
        if Instant::now() > deadline {
            return Err(format!("not ready within {timeout:?}"));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Stops a child with `signal`, then SIGKILL if it is still there after
/// five seconds, and reaps it.
fn terminate(child: &mut Child, signal: libc::c_int) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SAFETY: kill with the pid of a child we spawned and have not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// One service shared by the tests of a binary that run at the same time:
/// started by the first, stopped when the last drops its handle (a test
/// binary's exit runs no destructors for statics, so a static would leak
/// the process).
fn share<T>(slot: &Mutex<Weak<T>>, start: impl FnOnce() -> T) -> Arc<T> {
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = slot.upgrade() {
        return t;
    }
    let t = Arc::new(start());
    *slot = Arc::downgrade(&t);
    t
}

// ---------------------------------------------------------------------------
// Redis

/// A private `redis-server` (no persistence) on a loopback port.
pub struct Redis {
    dir: TempDir,
    port: u16,
    /// Extra `redis-server` options, kept for `restart`.
    args: Vec<String>,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// With extra `redis-server` options, e.g. `["--requirepass", "pw"]`
    /// (PING then needs AUTH, so readiness is checked by a NOAUTH answer).
    pub fn start_with(args: &[&str]) -> Redis {
        let dir = TempDir::new("redis");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            match Redis::spawn(dir.path(), port, &args) {
                Ok(child) => {
                    return Redis {
                        dir,
                        port,
                        args,
                        child: Some(child),
                    };
                }
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not come up in {PORT_ATTEMPTS} attempts: {last}");
    }

    fn spawn(dir: &Path, port: u16, args: &[String]) -> Result<Child, String> {
        let log_path = dir.join("redis.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| e.to_string())?;
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn redis-server (is it installed?): {e}"))?;
        match wait_until(&mut child, START_TIMEOUT, || answers(port)) {
            Ok(()) => Ok(child),
            Err(e) => {
                terminate(&mut child, libc::SIGKILL);
                Err(format!(
                    "redis-server on port {port} {e}; its log:\n{}",
                    tail(&log_path)
                ))
            }
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn ping(&self) -> bool {
        ping(self.port)
    }
    /// Kills the server (SIGKILL: connections drop as in a crash) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, libc::SIGKILL);
        }
    }
    /// Stops it if running and starts it again on the same port (empty:
    /// nothing is persisted).
    pub fn restart(&mut self) {
        self.stop();
        let child = Redis::spawn(self.dir.path(), self.port, &self.args)
            .unwrap_or_else(|e| panic!("redis-server restart: {e}"));
        self.child = Some(child);
    }

    /// A Redis for a test that never stops it: the one `.ci/run` started
    /// (`HUBBUB_TEST_REDIS`), or a private one shared with the tests of
    /// this binary running at the same time. Pub/sub is server-wide: use
    /// [`unique_channel`] for channel names.
    pub fn shared() -> SharedRedis {
        static SLOT: Mutex<Weak<Redis>> = Mutex::new(Weak::new());
        if let Ok(url) = std::env::var("HUBBUB_TEST_REDIS") {
            return SharedRedis { url, _own: None };
        }
        let r = share(&SLOT, Redis::start);
        SharedRedis {
            url: r.url(),
            _own: Some(r),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A handle on a shared Redis; keeps a private one alive while held.
pub struct SharedRedis {
    url: String,
    _own: Option<Arc<Redis>>,
}

impl SharedRedis {
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// A channel name (or prefix) no other test is using, for tests that share
/// one Redis.
pub fn unique_channel(tag: &str) -> String {
    unique(&format!("hubbub-test-{tag}"))
}

/// Whether a Redis on this loopback port answers PING (within 1 s).
pub fn ping(port: u16) -> bool {
    ping_reply(port).is_some_and(|r| r == b"+PONG\r\n")
}

/// Whether a Redis answers at all: PONG, or NOAUTH when it wants a password.
fn answers(port: u16) -> bool {
    ping_reply(port).is_some_and(|r| r == b"+PONG\r\n" || r.starts_with(b"-NOAUTH"))
}

/// The first bytes of the answer to an inline PING.
fn ping_reply(port: u16) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(b"PING\r\n").ok()?;
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).ok()?;
    Some(buf.to_vec())
}

// ---------------------------------------------------------------------------
// PostgreSQL

/// A private PostgreSQL cluster: `initdb` into a temp directory, started
/// with `pg_ctl` on a loopback port, superuser `hubbub` with trust auth and
/// a database `hubbub`. As root (CI) the server runs as the `postgres` OS
/// user, since initdb refuses root.
pub struct Postgres {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    running: bool,
}

impl Postgres {
    pub fn start() -> Postgres {
        Postgres::start_configured(|_| {})
    }

    /// A cluster that accepts TLS connections only, with this certificate
    /// chain and key (PEM): plain connections are refused by `pg_hba.conf`,
    /// so a client that connects at all spoke TLS.
    pub fn start_tls_only(cert_pem: &str, key_pem: &str) -> Postgres {
        Postgres::start_configured(|data| {
            use std::os::unix::fs::PermissionsExt;
            for (name, pem, mode) in [
                ("server.crt", cert_pem, 0o644),
                ("server.key", key_pem, 0o600),
            ] {
                let path = data.join(name);
                fs::write(&path, pem).unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
                if is_root() {
                    chown_to_postgres(&path);
                }
            }
            let conf = data.join("postgresql.conf");
            let mut text = fs::read_to_string(&conf).unwrap();
            text.push_str(
                "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
            );
            fs::write(&conf, text).unwrap();
            let hba = data.join("pg_hba.conf");
            let text = fs::read_to_string(&hba).unwrap();
            fs::write(
                &hba,
                format!(
                    "hostnossl all all 0.0.0.0/0 reject\nhostssl all all 127.0.0.1/32 trust\n{text}"
                ),
            )
            .unwrap();
        })
    }

    /// `initdb`, then `configure(data dir)`, then start.
    fn start_configured(configure: impl FnOnce(&Path)) -> Postgres {
        let bin = pg_bin();
        let dir = TempDir::new("pg");
        if is_root() {
            chown_to_postgres(dir.path());
        }
        let mut initdb = pg_command(&bin, "initdb", dir.path());
        initdb
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-A", "trust", "-U", "hubbub", "-E", "UTF8", "--locale=C"])
            // The cluster is thrown away: no need to wait for the disk.
            .arg("--no-sync");
        run_ok(initdb, START_TIMEOUT).unwrap_or_else(|e| panic!("initdb: {e}"));
        configure(&dir.path().join("data"));
        let mut pg = Postgres {
            dir,
            bin,
            port: 0,
            running: false,
        };
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            pg.port = free_port();
            match pg.pg_start() {
                Ok(()) => {
                    pg.running = true;
                    // Over the Unix socket: a TLS-only cluster refuses psql on TCP.
                    pg.psql_local("CREATE DATABASE hubbub");
                    return pg;
                }
                Err(e) => last = e,
            }
        }
        panic!("PostgreSQL did not start in {PORT_ATTEMPTS} attempts: {last}");
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_start(&self) -> Result<(), String> {
        let mut cmd = pg_command(&self.bin, "pg_ctl", self.dir.path());
        cmd.arg("-D").arg(self.data()).arg("-o").arg(format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        ));
        cmd.arg("-l").arg(self.dir.path().join("log")).args([
            "-w",
            "-t",
            &START_TIMEOUT.as_secs().to_string(),
            "start",
        ]);
        run_ok(cmd, START_TIMEOUT + Duration::from_secs(5))
            .map_err(|e| format!("{e}\nserver log:\n{}", tail(&self.dir.path().join("log"))))
            .map(drop)
    }

    fn pg_stop(&self, mode: &str) -> Result<(), String> {
        let mut cmd = pg_command(&self.bin, "pg_ctl", self.dir.path());
        cmd.arg("-D")
            .arg(self.data())
            .args(["-m", mode, "-w", "-t", "30", "stop"]);
        run_ok(cmd, COMMAND_TIMEOUT).map(drop)
    }

    /// `postgres://hubbub@127.0.0.1:P/hubbub`
    pub fn url(&self) -> String {
        self.url_of("hubbub")
    }
    fn url_of(&self, db: &str) -> String {
        format!("postgres://hubbub@127.0.0.1:{}/{db}", self.port)
    }
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A fresh, empty database; returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.psql("hubbub", &format!("CREATE DATABASE \"{name}\""));
        self.url_of(name)
    }

    /// Runs `sql` in `db` with psql (unaligned, tuples only) and returns
    /// its output; panics if psql fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|e| panic!("psql on port {}: {e}", self.port))
    }

    /// `sql` in `postgres` over the cluster's Unix socket.
    fn psql_local(&self, sql: &str) {
        let mut cmd = pg_command(&self.bin, "psql", self.dir.path());
        cmd.args(["-X", "-q", "-h"]).arg(self.dir.path()).args([
            "-p",
            &self.port.to_string(),
            "-U",
            "hubbub",
            "-d",
            "postgres",
            "-c",
            sql,
        ]);
        run_ok(cmd, COMMAND_TIMEOUT).unwrap_or_else(|e| panic!("psql: {e}"));
    }

    /// Runs a client tool of this cluster's version (`pg_dump`,
    /// `pg_restore`) with `args`; its stdout, or a panic with its stderr.
    pub fn client_tool(&self, tool: &str, args: &[&str]) -> String {
        let mut cmd = Command::new(self.bin.join(tool));
        cmd.args(args).env("PGCONNECT_TIMEOUT", "5");
        run_ok(cmd, COMMAND_TIMEOUT).unwrap_or_else(|e| panic!("{tool}: {e}"))
    }

    /// `psql`, Err instead of a panic (to check the server is down).
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        psql_url(&self.bin, &self.url_of(db), sql)
    }

    /// Stops the server (`pg_ctl stop -m fast`): connections are closed.
    pub fn stop(&mut self) {
        self.pg_stop("fast")
            .unwrap_or_else(|e| panic!("pg_ctl stop: {e}"));
        self.running = false;
    }
    /// Starts it again on the same port and data.
    pub fn start_again(&mut self) {
        self.pg_start()
            .unwrap_or_else(|e| panic!("pg_ctl start again: {e}"));
        self.running = true;
    }

    /// A fresh database for a test that never stops the server: on the
    /// instance `.ci/run` started (`HUBBUB_TEST_POSTGRES`), else on a
    /// private one shared with the tests of this binary running at the same
    /// time, which the returned handle keeps alive.
    pub fn shared() -> SharedPg {
        static SLOT: Mutex<Weak<Postgres>> = Mutex::new(Weak::new());
        let name = unique("t");
        if let Ok(base) = std::env::var("HUBBUB_TEST_POSTGRES") {
            psql_url(&pg_bin(), &base, &format!("CREATE DATABASE \"{name}\""))
                .unwrap_or_else(|e| panic!("HUBBUB_TEST_POSTGRES={base}: {e}"));
            return SharedPg {
                url: with_database(&base, &name),
                _own: None,
            };
        }
        let pg = share(&SLOT, Postgres::start);
        SharedPg {
            url: pg.create_database(&name),
            _own: Some(pg),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        if self.pg_stop("immediate").is_err() {
            // pg_ctl could not do it: the postmaster's pid is the first line.
            let pid = fs::read_to_string(self.data().join("postmaster.pid"))
                .ok()
                .and_then(|s| s.lines().next()?.trim().parse::<libc::pid_t>().ok());
            if let Some(pid) = pid {
                // SAFETY: kill with the pid of the postmaster we started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// A fresh database on a shared PostgreSQL; keeps a private one alive while
/// held.
pub struct SharedPg {
    url: String,
    _own: Option<Arc<Postgres>>,
}

impl SharedPg {
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The newest `/usr/lib/postgresql/*/bin` that has initdb.
fn pg_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .expect("no /usr/lib/postgresql/*/bin/initdb: install the postgresql package")
}

/// A PostgreSQL server tool, as the `postgres` OS user when we are root.
fn pg_command(bin: &Path, tool: &str, cwd: &Path) -> Command {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    };
    // The tools complain when they cannot read their working directory.
    cmd.current_dir(cwd);
    cmd
}

fn psql_url(bin: &Path, url: &str, sql: &str) -> Result<String, String> {
    let mut cmd = Command::new(bin.join("psql"));
    cmd.args([
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        url,
        "-c",
        sql,
    ])
    .env("PGCONNECT_TIMEOUT", "5");
    run_ok(cmd, COMMAND_TIMEOUT).map(|s| s.trim_end().to_string())
}

/// `url` with its database (the path) replaced by `db`; any query kept.
fn with_database(url: &str, db: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let (head, query) = match url.find('?') {
        Some(q) => url.split_at(q),
        None => (url, ""),
    };
    let host_end = head[scheme_end..]
        .find('/')
        .map_or(head.len(), |i| scheme_end + i);
    format!("{}/{db}{query}", &head[..host_end])
}

fn chown_to_postgres(path: &Path) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let name = CString::new("postgres").unwrap();
    // SAFETY: getpwnam with a valid C string; the result is read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "running as root but there is no `postgres` user to run PostgreSQL as"
    );
    // SAFETY: pw is non-null and points to libc's static passwd entry.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: chown with a valid path string.
    let rc = unsafe { libc::chown(c.as_ptr(), uid, gid) };
    assert_eq!(
        rc,
        0,
        "chown {} to postgres: {}",
        path.display(),
        io::Error::last_os_error()
    );
}

// ---------------------------------------------------------------------------
// nginx

/// A private nginx reverse proxy to `upstreams`, round-robin, no sticky
/// sessions, WebSocket upgrades passed through: the deployment the README
/// describes, with several nodes behind it.
pub struct Nginx {
    dir: TempDir,
    port: u16,
    child: Child,
}

/// Connections per nginx worker: each proxied client takes two (client and
/// upstream), and the cluster tests hold a few hundred.
const NGINX_WORKER_CONNECTIONS: u32 = 4096;

impl Nginx {
    pub fn start(upstreams: &[SocketAddr]) -> Nginx {
        assert!(!upstreams.is_empty(), "nginx needs at least one upstream");
        let dir = TempDir::new("nginx");
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let conf = nginx_conf(dir.path(), port, upstreams);
            fs::write(dir.path().join("nginx.conf"), conf).expect("write nginx.conf");
            match Nginx::spawn(dir.path(), port) {
                Ok(child) => return Nginx { dir, port, child },
                Err(e) => last = e,
            }
        }
        panic!("nginx did not come up in {PORT_ATTEMPTS} attempts: {last}");
    }

    fn spawn(dir: &Path, port: u16) -> Result<Child, String> {
        let mut cmd = Command::new("nginx");
        cmd.arg("-p")
            .arg(dir)
            // The early error log: before the config is read, nginx writes
            // to a compiled-in path (under /var/log) unless told otherwise.
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn nginx (is it installed?): {e}"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let ready = || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
        match wait_until(&mut child, START_TIMEOUT, ready) {
            Ok(()) => Ok(child),
            Err(e) => {
                terminate(&mut child, libc::SIGTERM);
                Err(format!(
                    "nginx on port {port} {e}; error.log:\n{}",
                    tail(&dir.join("error.log"))
                ))
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The proxy's error log (where it says which upstream failed).
    pub fn error_log(&self) -> String {
        tail(&self.dir.path().join("error.log"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers, which a SIGKILL to the
        // master alone would leave running.
        terminate(&mut self.child, libc::SIGTERM);
    }
}

fn nginx_conf(dir: &Path, port: u16, upstreams: &[SocketAddr]) -> String {
    let d = dir.display();
    // As root the workers would switch to `nobody`, who cannot write the
    // temp paths under a root-owned directory.
    let user = if is_root() { "user root;\n" } else { "" };
    let servers: String = upstreams
        .iter()
        .map(|a| format!("        server {a};\n"))
        .collect();
    format!(
        "{user}worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections {NGINX_WORKER_CONNECTIONS}; }}
http {{
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    access_log off;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        '' close;
    }}
    upstream hubbub {{
{servers}    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://hubbub;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_read_timeout 3600s;
        }}
    }}
}}
"
    )
}
