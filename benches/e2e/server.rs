//! The real `hubbub` binary as a child process: a fresh temp database, the
//! benchmark flags, pinned to its own core, killed on drop and on panic.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use super::sys;

/// The benchmark cluster's key (`--cluster-key`): any 32 bytes will do.
const CLUSTER_KEY: &str = "hubbub bench cluster key, 32 b.!";

/// Pids of live children, killed by the panic hook.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Has the panic hook kill `pid` too (a service started for a scenario).
pub fn register_child(pid: u32) {
    CHILDREN.lock().unwrap().push(pid);
}

/// Undoes [`register_child`] once `pid` is stopped.
pub fn unregister_child(pid: u32) {
    CHILDREN.lock().unwrap().retain(|&p| p != pid);
}

/// Kills every child still running when anything panics.
pub fn install_panic_hook() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(pids) = CHILDREN.lock() {
            for &pid in pids.iter() {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        prev(info)
    }));
}

pub struct Server {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    dir: PathBuf,
    /// Log lines that mention a slow-consumer cut.
    pub slow_cuts: Arc<AtomicUsize>,
    pub pinned: bool,
}

impl Server {
    /// Starts the server with `--rate-limit 0 --pbkdf2-iterations 1000 --echo`
    /// and no per-user WebSocket cap on 127.0.0.1:0 and a fresh database;
    /// pins it to `cpu` if given.
    pub fn start(cpu: Option<usize>) -> Server {
        Server::start_with(cpu, &[])
    }

    /// [`Server::start`] with `extra` arguments after the defaults.
    pub fn start_with(cpu: Option<usize>, extra: &[&str]) -> Server {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hubbub-e2e-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        // The child inherits RLIMIT_NOFILE: raised by the caller before this.
        // HUBBUB_BENCH_BIN runs another build (an A/B comparison of a patch).
        let bin = std::env::var("HUBBUB_BENCH_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_hubbub").to_string());
        let mut child = Command::new(bin)
            .args([
                "--addr",
                "127.0.0.1:0",
                "--rate-limit",
                "0",
                "--pbkdf2-iterations",
                "1000",
                "--echo",
            ])
            .args(extra)
            .arg("--db")
            .arg(dir.join("bench.db"))
            .env("RUST_LOG", "info")
            // The load generator opens hundreds of connections at once from
            // one address, which the per-address quota is there to refuse.
            // An environment variable, not a flag, so that an older build
            // run with HUBBUB_BENCH_BIN (which has no such option) still starts.
            .env("HUBBUB_MAX_UNFINISHED_PER_ADDR", "1000000")
            // The idle-RSS figure holds up to 500 WebSockets per user; as a
            // variable (not a flag) so an older HUBBUB_BENCH_BIN still starts.
            .env("HUBBUB_MAX_CONNS_PER_USER", "0")
            // A cluster node needs its key; a variable, so an older build
            // (which had no key) still starts.
            .env("HUBBUB_CLUSTER_KEY", CLUSTER_KEY)
            .env_remove("HUBBUB_JWT_SECRET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the hubbub binary");
        let pid = child.id();
        register_child(pid);
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let slow_cuts = Arc::new(AtomicUsize::new(0));
        let cuts = slow_cuts.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(line[i + 13..].trim().to_string());
                    }
                } else if line.contains("slow consumer") {
                    cuts.fetch_add(1, Ordering::Relaxed);
                } else if line.contains("ERROR") || line.contains("WARN") {
                    eprintln!("    server: {line}");
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().expect("listening address"),
            Err(_) => {
                let _ = child.kill();
                panic!("the server did not print `listening on` within 20 s");
            }
        };
        let pinned = cpu.is_some_and(|c| sys::pin_process(pid, c));
        if let Some(n) = std::env::var("HUBBUB_BENCH_NICE")
            .ok()
            .and_then(|v| v.parse::<i32>().ok())
        {
            for tid in std::fs::read_dir(format!("/proc/{pid}/task"))
                .into_iter()
                .flatten()
                .flatten()
            {
                if let Some(t) = tid.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) {
                    sys::renice(t, n);
                }
            }
        }
        Server {
            child,
            pid,
            addr,
            dir,
            slow_cuts,
            pinned,
        }
    }

    pub fn rss(&self) -> u64 {
        sys::vm_rss(self.pid)
    }

    /// A counter from `/metrics` (0 if missing).
    pub fn metric(&self, name: &str) -> u64 {
        let Ok((status, body)) = http(self.addr, "GET", "/metrics", None, None) else {
            return 0;
        };
        if status != 200 {
            return 0;
        }
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until the gauge `name` reads `want` (true), or `limit` passes.
    pub fn wait_metric(&self, name: &str, want: u64, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if self.metric(name) == want {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        unregister_child(self.pid);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTP/1.1 request on a fresh connection; returns (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    bearer: Option<&str>,
) -> std::io::Result<(u16, String)> {
    http_over(addr, None, method, path, body, bearer)
}

/// [`http`], over TLS when `tls` is given (for `localhost`).
pub fn http_over(
    addr: SocketAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
    method: &str,
    path: &str,
    body: Option<&str>,
    bearer: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut s: Box<dyn ReadWrite> = match tls {
        None => Box::new(tcp),
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let conn = rustls::ClientConnection::new(config.clone(), name)
                .map_err(std::io::Error::other)?;
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
    };
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = bearer {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    s.write_all(req.as_bytes())?;
    s.flush()?;
    let mut resp = Vec::new();
    match s.read_to_end(&mut resp) {
        Ok(_) => {}
        // A TLS peer that closes without close_notify.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e),
    }
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    Ok((status, body))
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Signs up `n` users (`bench0`, `bench1`, …) and logs each in; returns their tokens.
pub fn users(addr: SocketAddr, n: usize) -> Vec<String> {
    users_over(addr, None, n)
}

/// [`users`], over TLS when `tls` is given.
pub fn users_over(
    addr: SocketAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
    n: usize,
) -> Vec<String> {
    let mut tokens = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("bench{i}");
        let body = format!(
            r#"{{"username":"{name}","email":"{name}@bench.test","password":"benchpass1"}}"#
        );
        let (st, b) =
            http_over(addr, tls, "POST", "/api/signup", Some(&body), None).expect("signup request");
        assert!(st == 201 || st == 409, "signup {name}: {st} {b}");
        let body = format!(r#"{{"username":"{name}","password":"benchpass1"}}"#);
        let (st, b) =
            http_over(addr, tls, "POST", "/api/login", Some(&body), None).expect("login request");
        assert_eq!(st, 200, "login {name}: {b}");
        let v: serde_json::Value = serde_json::from_str(&b).expect("login JSON");
        tokens.push(v["token"].as_str().expect("token").to_string());
    }
    tokens
}
