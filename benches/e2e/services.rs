//! A private PostgreSQL and a private Redis for the cluster scenarios: each
//! on a free loopback port in its own temp directory, no system service used
//! or touched, stopped by pid on drop and killed by the panic hook.
//!
//! A trimmed copy of `tests/common/services.rs` (start and stop only), not a
//! shared module: the benches are their own crate roots and cannot `mod` the
//! test helpers without pulling in the whole test harness (`tests/common`
//! builds servers, clients and nginx). Keep the two in step when the way a
//! service is started changes (initdb flags, running as `postgres` when
//! root).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::server;

/// Longest a service may take to come up (initdb + start: ~1-3 s here).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a one-shot command (psql, pg_ctl stop) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let d = std::env::temp_dir().join(format!("hubbub-bench-{tag}-{}-{nanos}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

/// Runs `cmd` to completion within `timeout` (killed past it); Err unless it
/// exited 0, quoting its output.
fn run_ok(mut cmd: Command, timeout: Duration) -> Result<String, String> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} did not finish within {timeout:?}"));
            }
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
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

// ---- Redis -------------------------------------------------------------------

/// `redis-server` with no persistence on a free loopback port.
pub struct Redis {
    child: Child,
    pub pid: u32,
    pub port: u16,
    dir: PathBuf,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = temp_dir("redis");
        let port = free_port();
        let log = std::fs::File::create(dir.join("redis.log")).expect("redis log");
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("redis log"))
            .stderr(log)
            .spawn()
            .expect("spawn redis-server (is it installed?)");
        let pid = child.id();
        server::register_child(pid);
        let deadline = Instant::now() + START_TIMEOUT;
        while !ping(port) {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "redis-server exited ({st}): {}",
                    std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis {
            child,
            pid,
            port,
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        server::unregister_child(self.pid);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

// ---- PostgreSQL ----------------------------------------------------------------

/// A throw-away PostgreSQL cluster: `initdb` (trust auth, superuser
/// `hubbub`), `pg_ctl start` on a free loopback port with `fsync=off`, a
/// database `hubbub`. As root the server runs as the `postgres` OS user
/// (initdb refuses root). Stopped with `pg_ctl stop -m immediate` on drop;
/// the postmaster's pid is registered with the panic hook (its backends exit
/// when it dies).
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// The postmaster.
    pub pid: u32,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = pg_bin();
        let dir = temp_dir("pg");
        if is_root() {
            chown_to_postgres(&dir);
        }
        let data = dir.join("data");
        let mut initdb = pg_command(&bin, "initdb", &dir);
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "hubbub", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync");
        run_ok(initdb, START_TIMEOUT).unwrap_or_else(|e| panic!("initdb: {e}"));
        let port = free_port();
        let mut start = pg_command(&bin, "pg_ctl", &dir);
        start.arg("-D").arg(&data).arg("-o").arg(format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.display()
        ));
        start.arg("-l").arg(dir.join("log")).args([
            "-w",
            "-t",
            &START_TIMEOUT.as_secs().to_string(),
            "start",
        ]);
        if let Err(e) = run_ok(start, START_TIMEOUT + Duration::from_secs(5)) {
            panic!(
                "pg_ctl start: {e}\n{}",
                std::fs::read_to_string(dir.join("log")).unwrap_or_default()
            );
        }
        let pid = std::fs::read_to_string(data.join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next()?.trim().parse::<u32>().ok())
            .expect("postmaster.pid");
        server::register_child(pid);
        let pg = Postgres {
            dir,
            bin,
            port,
            pid,
        };
        pg.psql("postgres", "CREATE DATABASE hubbub");
        pg
    }

    /// A fresh empty database; returns its URL.
    pub fn database(&self, name: &str) -> String {
        self.psql("hubbub", &format!("CREATE DATABASE \"{name}\""));
        self.url_of(name)
    }

    fn url_of(&self, db: &str) -> String {
        format!("postgres://hubbub@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs `sql` in `db` (unaligned, tuples only); panics if psql fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url_of(db))
            .args(["-c", sql])
            .env("PGCONNECT_TIMEOUT", "5");
        run_ok(cmd, COMMAND_TIMEOUT)
            .map(|s| s.trim_end().to_string())
            .unwrap_or_else(|e| panic!("psql: {e}"))
    }

    /// The next transaction id to be assigned (consumes none): the delta
    /// over an interval is the write transactions committed or aborted in
    /// it, server-wide, with no statistics-flush lag.
    pub fn next_xid(&self) -> u64 {
        self.psql("hubbub", "SELECT pg_snapshot_xmax(pg_current_snapshot())")
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// Pids of the postmaster and its children (backends, writer, …).
    pub fn pids(&self) -> Vec<u32> {
        let mut v = vec![self.pid];
        v.extend(super::sys::children(self.pid));
        v
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut stop = pg_command(&self.bin, "pg_ctl", &self.dir);
        stop.arg("-D").arg(self.dir.join("data")).args([
            "-m",
            "immediate",
            "-w",
            "-t",
            "20",
            "stop",
        ]);
        if run_ok(stop, COMMAND_TIMEOUT).is_err() {
            // SAFETY: the postmaster we started.
            unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        }
        server::unregister_child(self.pid);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Why the services cannot be started here (None: they can).
pub fn missing() -> Option<String> {
    let redis = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("redis-server").exists()));
    match (find_pg_bin().is_some(), redis) {
        (true, true) => None,
        (pg, _) => Some(format!(
            "{} not installed",
            if pg {
                "redis-server"
            } else {
                "PostgreSQL (/usr/lib/postgresql/*/bin/initdb)"
            }
        )),
    }
}

fn pg_bin() -> PathBuf {
    find_pg_bin().expect("no /usr/lib/postgresql/*/bin/initdb: install the postgresql package")
}

/// The newest `/usr/lib/postgresql/*/bin` that has initdb.
fn find_pg_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
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
    found.pop().map(|(_, b)| b)
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
    cmd.current_dir(cwd);
    cmd
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
    assert_eq!(rc, 0, "chown {} to postgres", path.display());
}
