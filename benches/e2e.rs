//! End-to-end benchmarks against the real `hubbub` binary.
//!
//! Run: `cargo bench --bench e2e` (all), or name scenarios:
//! `cargo bench --bench e2e -- fanout_1x1000 persist`. Scenarios:
//! `fanout_1x1000`, `fanout_100x10`, `spread_10x100` (many rooms, paced
//! senders: the shape of a real chat), `idle_rss` (also upgrades/s), `persist`,
//! `storm`, `tls` (handshakes/s and CPU per handshake, the 1 × 1000 flood over
//! TLS against plaintext in the same run, idle memory per TLS connection),
//! `push` (mention to Web Push request on a local push service, and the chat
//! latency meanwhile against the same chat without pushes), `transfers` (the chat
//! latency while four 100 MB uploads and four downloads run, against the same chat
//! without them, and the server's RSS meanwhile);
//! and, on a private PostgreSQL and Redis (skipped when either is not
//! installed): `cluster_fanout`, `cluster_latency` (two nodes, one per core)
//! and `persist_pg` (`persist` on `--postgres`). A filter that names a
//! single-node scenario (`persist`, `fanout`) does not select these;
//! `cluster`, `pg` or their full names do.
//!
//! Every scenario starts its own server (`--rate-limit 0 --pbkdf2-iterations
//! 1000 --echo`, fresh temp database, 127.0.0.1:0) pinned to CPU 0, and drives
//! it from one mio thread pinned to the last CPU. Results: a table on stdout,
//! `bench-results/e2e.json`, and the latency CDF `bench-results/e2e-latency.svg`.
//!
//! Knobs (environment): `HUBBUB_BENCH_WINDOW` (messages in flight per room in
//! the 1-room flood, default 256), `HUBBUB_BENCH_SECS` (measured seconds per
//! throughput run, default 4), `HUBBUB_BENCH_CONNS` (largest idle-RSS size,
//! default 50000), `HUBBUB_BENCH_HANDSHAKES` (upgrades in flight, default 64),
//! `HUBBUB_BENCH_FRACTION` (offered load of the latency runs as a fraction of
//! the measured peak, default 0.5), `HUBBUB_BENCH_SPREAD_RATE` (messages/s of
//! each of `spread_10x100`'s 100 senders, default 10), `HUBBUB_BENCH_CLUSTER_RATE` (msgs/s of
//! the `cluster_latency` run, default 200), `HUBBUB_BENCH_PUSH_RATE` (mentions
//! of offline users a second in `push`, default 100), `HUBBUB_BENCH_NICE` (nice value for the
//! load generator and the server, e.g. -10 on a shared machine),
//! `HUBBUB_BENCH_PERF` (record the server with `perf record -g` during the
//! phases whose label contains it, e.g. `1x1000 flood`).

mod e2e {
    pub mod hist;
    pub mod load;
    pub mod server;
    pub mod services;
    pub mod svg;
    pub mod sys;
}

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::hist::Hist;
use e2e::load::{self, Load, Mode, Outcome, Plan, Target};
use e2e::server::{self, Server};
use e2e::services::{self, Postgres, Redis};
use e2e::svg::{self, label};
use e2e::sys;

// The end-to-end tests' push service: it checks and records each request.
#[path = "../tests/common/push_service.rs"]
mod push_service;
use push_service::{PushService, Subscriber};

/// One line of the results table.
struct Row {
    scenario: &'static str,
    metric: String,
    value: f64,
    unit: &'static str,
    shown: String,
    target: String,
    met: Option<bool>,
    client_cpu: Option<f64>,
    server_cpu: Option<f64>,
    other_cpu: Option<f64>,
    irq_cpu: Option<f64>,
    note: String,
}

impl Row {
    fn new(
        scenario: &'static str,
        metric: impl Into<String>,
        value: f64,
        unit: &'static str,
        shown: String,
    ) -> Row {
        Row {
            scenario,
            metric: metric.into(),
            value,
            unit,
            shown,
            target: String::new(),
            met: None,
            client_cpu: None,
            server_cpu: None,
            other_cpu: None,
            irq_cpu: None,
            note: String::new(),
        }
    }
    fn target(mut self, t: &str, met: bool) -> Row {
        self.target = t.to_string();
        self.met = Some(met);
        self
    }
    fn cpu(mut self, (client, server, other, irq): (f64, f64, f64, f64)) -> Row {
        self.client_cpu = Some(client);
        self.server_cpu = Some(server);
        self.other_cpu = Some(other);
        self.irq_cpu = Some(irq);
        self
    }
    fn out(self, o: &Outcome) -> Row {
        self.cpu((o.client_cpu, o.server_cpu, o.other_cpu, o.irq_cpu))
    }
    fn note(mut self, n: impl Into<String>) -> Row {
        self.note = n.into();
        self
    }
}

struct Ctx {
    rows: Vec<Row>,
    series: Vec<(String, Hist)>,
    server_cpu: Option<usize>,
    nofile: u64,
    secs: u64,
    window: u64,
    max_conns: usize,
    upgrade_window: usize,
    /// Connections of the reconnect storm (`HUBBUB_BENCH_STORM`).
    storm: usize,
}

fn env_num(k: &str, default: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    server::install_panic_hook();
    // `cargo bench` passes `--bench`; other dashed flags are ignored too.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    // The PostgreSQL/Redis scenarios: a filter that also names a
    // single-node scenario (`persist`, `fanout`) leaves them out, so those
    // filters run what they always ran.
    const SINGLE: [&str; 10] = [
        "fanout_1x1000",
        "fanout_100x10",
        "spread_10x100",
        "idle_rss",
        "upgrades",
        "persist",
        "storm",
        "tls",
        "push",
        "transfers",
    ];
    let want_cluster = |name: &str| {
        filters.is_empty()
            || filters.iter().any(|f| {
                name.contains(f.as_str()) && !SINGLE.iter().any(|s| s.contains(f.as_str()))
            })
    };
    let nofile = sys::raise_nofile();
    let cpus = sys::cpus();
    let (server_cpu, client_cpu) = if cpus >= 2 {
        (Some(0), Some(cpus - 1))
    } else {
        (None, None)
    };
    let client_pinned = client_cpu.is_some_and(sys::pin_current_thread);
    let nice = std::env::var("HUBBUB_BENCH_NICE")
        .ok()
        .and_then(|v| v.parse::<i32>().ok());
    if let Some(n) = nice {
        eprintln!(
            "hubbub e2e: nice {n} for the load generator and the server: {}",
            if sys::renice(0, n) { "ok" } else { "refused" }
        );
    }
    let load_start = sys::loadavg();
    eprintln!(
        "hubbub e2e: {cpus} CPUs; server on CPU {}, load generator on CPU {} ({}); RLIMIT_NOFILE {nofile}",
        server_cpu.map_or("any".into(), |c| c.to_string()),
        client_cpu.map_or("any".into(), |c| c.to_string()),
        if client_pinned {
            "pinned"
        } else {
            "not pinned"
        }
    );
    let mut ctx = Ctx {
        rows: Vec::new(),
        series: Vec::new(),
        server_cpu,
        nofile,
        secs: env_num("HUBBUB_BENCH_SECS", 4).clamp(1, 60),
        window: env_num("HUBBUB_BENCH_WINDOW", 256).clamp(1, 5000),
        max_conns: env_num("HUBBUB_BENCH_CONNS", 50_000) as usize,
        upgrade_window: env_num("HUBBUB_BENCH_HANDSHAKES", 64).clamp(1, 4096) as usize,
        storm: env_num("HUBBUB_BENCH_STORM", 2000) as usize,
    };
    let t0 = Instant::now();
    if want("fanout_1x1000") {
        let window = ctx.window;
        fanout(&mut ctx, "fanout_1x1000", 1, 1000, 10, window, true);
    }
    if want("fanout_100x10") {
        fanout(&mut ctx, "fanout_100x10", 100, 10, 1, 32, false);
    }
    if want("spread_10x100") {
        spread(&mut ctx);
    }
    if want("idle_rss") || want("upgrades") {
        idle_rss(&mut ctx);
    }
    if want("persist") {
        persist(&mut ctx, "persist", &[], None);
    }
    if want("storm") {
        storm(&mut ctx);
    }
    if want("tls") {
        tls(&mut ctx);
    }
    if want("push") {
        push(&mut ctx);
    }
    if want("transfers") {
        transfers(&mut ctx);
    }
    let cluster_wanted = ["cluster_fanout", "cluster_latency", "persist_pg"]
        .into_iter()
        .filter(|n| want_cluster(n))
        .collect::<Vec<_>>();
    if !cluster_wanted.is_empty() {
        if let Some(why) = services::missing() {
            eprintln!("skipping {cluster_wanted:?}: {why}");
        } else {
            eprintln!("starting a private PostgreSQL and Redis for {cluster_wanted:?}");
            let pg = Postgres::start();
            let redis = Redis::start();
            eprintln!(
                "  PostgreSQL pid {} on port {}, redis-server pid {} on port {}",
                pg.pid, pg.port, redis.pid, redis.port
            );
            for n in cluster_wanted {
                match n {
                    "cluster_fanout" => cluster_fanout(&mut ctx, &pg, &redis),
                    "cluster_latency" => cluster_latency(&mut ctx, &pg, &redis),
                    _ => {
                        let url = pg.database("persist_pg");
                        persist(&mut ctx, "persist_pg", &["--postgres", &url], Some(&pg));
                    }
                }
            }
        }
    }
    eprintln!("e2e done in {:.0} s", t0.elapsed().as_secs_f64());
    report(&ctx, load_start, nice);
}

fn start(ctx: &Ctx) -> Server {
    let s = Server::start(ctx.server_cpu);
    eprintln!(
        "  server pid {} on {} ({})",
        s.pid,
        s.addr,
        if s.pinned { "pinned" } else { "not pinned" }
    );
    s
}

// ---- Fan-out: throughput, syscalls, latency at half the peak ---------------

/// `rooms` rooms of `per_room` connections (100 users, many connections each);
/// `senders` connections per room send.
fn fanout(
    ctx: &mut Ctx,
    name: &'static str,
    rooms: usize,
    per_room: usize,
    senders: usize,
    window: u64,
    syscalls: bool,
) {
    eprintln!(
        "[{name}] {rooms} room(s) x {per_room} connections, {senders} sender(s) per room, window {window}"
    );
    let srv = start(ctx);
    let mut load = open_rooms(&srv, rooms, per_room);
    let shape = Rooms {
        name,
        rooms,
        per_room,
        senders,
        server_pid: srv.pid,
    };
    let plan = |mode: Mode, warmup: f64, measure: f64, label: &str| {
        shape.plan(mode, warmup, measure, label)
    };
    let frame_len = 2 + r#"{"type":"message","id":1000000,"room":"r0","user":"bench10","content":"T0000000000000000","timestamp":"2026-01-15T10:30:00.123Z"}"#.len();
    let o = run(
        &mut load,
        &plan(
            Mode::Flood {
                window,
                by_acks: false,
            },
            1.0,
            ctx.secs as f64,
            "flood",
        ),
    );
    check_outcome(name, &o, &srv);
    let peak = o.deliveries_per_s;
    let target_peak = if rooms == 1 { Some(1_500_000.0) } else { None };
    let mut row = Row::new(name, "fan-out throughput", peak, "deliveries/s", format!("{:.0} deliveries/s", peak))
        .out(&o)
        .note(format!(
            "{:.0} msgs/s in, ~{frame_len} B frames, window {window}/room, {:.1} s; {:.0} per server CPU-second",
            o.messages_per_s,
            o.secs,
            peak / (o.server_cpu / 100.0).max(0.01)
        ));
    if let Some(t) = target_peak {
        row = row.target("≥ 1,500,000/s", peak >= t);
    }
    ctx.rows.push(row);

    if syscalls {
        syscall_burst(
            ctx,
            name,
            &srv,
            &mut load,
            &plan(
                Mode::Flood {
                    window,
                    by_acks: false,
                },
                0.2,
                2.0,
                "burst",
            ),
        );
    }

    // Latency at a fixed offered load of half the measured peak.
    let fan = (per_room - 1) as f64;
    let fraction = std::env::var("HUBBUB_BENCH_FRACTION")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.5)
        .clamp(0.01, 1.0);
    let per_sec = (peak * fraction / fan).max(10.0);
    eprintln!(
        "  [{name}] latency at {:.0} msgs/s ({:.0} deliveries/s offered)",
        per_sec,
        per_sec * fan
    );
    run(
        &mut load,
        &plan(Mode::Paced { per_sec }, 0.0, 1.0, "paced warm-up"),
    );
    load.lat = Hist::default();
    load.record_latency = true;
    let o = run(&mut load, &plan(Mode::Paced { per_sec }, 0.5, 5.0, "paced"));
    load.record_latency = false;
    check_outcome(name, &o, &srv);
    let h = std::mem::take(&mut load.lat);
    let (p50, p99, p999) = (h.quantile(0.5), h.quantile(0.99), h.quantile(0.999));
    let met = p99 < 5_000_000 && p999 < 20_000_000;
    ctx.rows.push(
        Row::new(
            name,
            "latency p50/p99/p999 at ½ peak",
            p99 as f64 / 1e6,
            "ms (p99)",
            format!(
                "{} / {} / {}",
                label(p50 as f64),
                label(p99 as f64),
                label(p999 as f64)
            ),
        )
        .target("p99 < 5 ms, p999 < 20 ms", met)
        .out(&o)
        .note(format!(
            "{:.0} deliveries/s offered, {} samples, max {}",
            per_sec * fan,
            h.n,
            label(h.max as f64)
        )),
    );
    ctx.series.push((
        format!("{name} at {:.0}k deliveries/s", per_sec * fan / 1e3),
        h,
    ));
    drop(srv);
}

// ---- Spread: many rooms, a few messages a second each ------------------------

/// The shape of a real chat (issue 25's scenario (a)): 1000 connections in
/// 10 rooms of 100, 10 senders per room (100 in all) each sending
/// `HUBBUB_BENCH_SPREAD_RATE` messages a second (default 10), open loop:
/// 1000 messages/s in, 99,000 deliveries/s offered whatever the binary, so
/// binaries compare by the server CPU, the write syscalls and the latency
/// that load costs them. A connection gets about one frame per loop pass
/// here, where the 1 × 1000 flood gives it dozens.
///
/// Write syscalls are the loop thread's (`syscw` of `/proc/PID/task/PID/io`,
/// free to read: the measured run is not traced);
/// a second, shorter run counts every syscall of every thread with `perf
/// stat` (or `strace -c`).
fn spread(ctx: &mut Ctx) {
    let name = "spread_10x100";
    let (rooms, per_room, senders) = (10, 100, 10);
    let each = env_num("HUBBUB_BENCH_SPREAD_RATE", 10).clamp(1, 1000) as f64;
    let per_sec = each * (rooms * senders) as f64;
    let offered = per_sec * (per_room - 1) as f64;
    eprintln!(
        "[{name}] {rooms} rooms x {per_room} connections, {senders} senders per room at {each} msgs/s each: {per_sec:.0} msgs/s, {offered:.0} deliveries/s offered"
    );
    let srv = start(ctx);
    let mut load = open_rooms(&srv, rooms, per_room);
    let shape = Rooms {
        name,
        rooms,
        per_room,
        senders,
        server_pid: srv.pid,
    };
    let paced = Mode::Paced { per_sec };
    run(&mut load, &shape.plan(paced, 0.0, 1.0, "paced warm-up"));
    load.lat = Hist::default();
    load.record_latency = true;
    let (user0, sys0) = sys::task_cpu(srv.pid, srv.pid);
    let writes0 = sys::task_writes(srv.pid, srv.pid);
    let d0 = srv.metric("hubbub_deliveries_total");
    let t0 = Instant::now();
    let measure = (ctx.secs as f64).max(5.0);
    let o = run(&mut load, &shape.plan(paced, 0.5, measure, "paced"));
    let d1 = srv.metric("hubbub_deliveries_total");
    let secs = t0.elapsed().as_secs_f64();
    let (user1, sys1) = sys::task_cpu(srv.pid, srv.pid);
    let writes1 = sys::task_writes(srv.pid, srv.pid);
    load.record_latency = false;
    check_outcome(name, &o, &srv);
    let deliveries = d1.saturating_sub(d0).max(1) as f64;
    let cpu_us = o.server_cpu / 100.0 * 1e6 / o.deliveries_per_s.max(1.0);
    let (loop_user, loop_sys) = ((user1 - user0) / secs * 100.0, (sys1 - sys0) / secs * 100.0);
    ctx.rows.push(
        Row::new(
            name,
            format!("deliveries/s at {:.0} k offered", offered / 1e3),
            o.deliveries_per_s,
            "deliveries/s",
            format!("{:.0} deliveries/s", o.deliveries_per_s),
        )
        .out(&o)
        .note(format!(
            "{:.0} msgs/s in, {:.1} s; {cpu_us:.2} µs of server CPU per delivery; \
             loop thread {loop_user:.0} % user + {loop_sys:.0} % system, the rest storage",
            o.messages_per_s, o.secs
        )),
    );
    ctx.rows.push(
        Row::new(
            name,
            format!("server CPU at {:.0} k deliveries/s", offered / 1e3),
            o.server_cpu,
            "% of a core",
            format!("{:.0} %", o.server_cpu),
        )
        .target("≤ 50 %", o.server_cpu <= 50.0)
        .out(&o)
        .note(format!(
            "every server thread on one core; loop thread {:.0} %",
            loop_user + loop_sys
        )),
    );
    let h = std::mem::take(&mut load.lat);
    let (p50, p99, p999) = (h.quantile(0.5), h.quantile(0.99), h.quantile(0.999));
    ctx.rows.push(
        Row::new(
            name,
            format!(
                "latency p50/p99/p999 at {:.0} k deliveries/s",
                offered / 1e3
            ),
            p99 as f64 / 1e6,
            "ms (p99)",
            format!(
                "{} / {} / {}",
                label(p50 as f64),
                label(p99 as f64),
                label(p999 as f64)
            ),
        )
        .out(&o)
        .note(format!("{} samples, max {}", h.n, label(h.max as f64))),
    );
    ctx.series
        .push((format!("{name} at {:.0}k deliveries/s", offered / 1e3), h));
    let writes = (writes1 - writes0) as f64 / deliveries;
    ctx.rows.push(
        Row::new(
            name,
            "write syscalls per delivery (loop thread)",
            writes,
            "writes/delivery",
            format!("{writes:.3}"),
        )
        .out(&o)
        .note(format!(
            "syscw {} of the loop thread for {deliveries:.0} deliveries ({:.2} deliveries per write)",
            writes1 - writes0,
            deliveries / (writes1 - writes0).max(1) as f64
        )),
    );
    if let Some(s) = count_syscalls(&srv, &mut load, &shape.plan(paced, 0.2, 2.0, "traced")) {
        let all = s.per_delivery(s.get("all"));
        ctx.rows.push(
            Row::new(
                name,
                "syscalls per delivery, every thread (traced run)",
                all,
                "syscalls/delivery",
                format!("{all:.3}"),
            )
            .out(&s.outcome)
            .note(format!(
                "{}; {:.3} writes, {:.3} epoll_wait per delivery",
                s.summary(),
                s.per_delivery(s.writes()),
                s.per_delivery(s.get("epoll_wait") + s.get("epoll_pwait"))
            )),
        );
    }
    drop(srv);
}

/// Signs up the 100 users and opens `rooms` rooms of `per_room` connections
/// each (`/ws/room/r{k}`, the users' connections spread over every room),
/// waiting until each has its `unread` frame and the server went quiet.
fn open_rooms(srv: &Server, rooms: usize, per_room: usize) -> Load {
    let tokens = server::users(srv.addr, 100);
    let total = rooms * per_room;
    let targets: Vec<Target> = (0..total)
        .map(|c| Target {
            path: format!(
                "/ws/room/r{}?token={}",
                c / per_room,
                tokens[c % tokens.len()]
            ),
            room: (c / per_room) as u32,
            addr: None,
        })
        .collect();
    let mut load = Load::new(srv.addr, rooms);
    let (up, _) = load.open(&targets, 256, Duration::from_secs(60));
    assert_eq!(up as usize, total, "every connection upgraded");
    load.settle(Duration::from_secs(10), |l| l.c.unread >= total as u64);
    load.settle(Duration::from_millis(300), |_| false);
    load
}

/// The rooms [`open_rooms`] opened and who sends in them: the first
/// `senders` connections of each room.
struct Rooms {
    name: &'static str,
    rooms: usize,
    per_room: usize,
    senders: usize,
    server_pid: u32,
}

impl Rooms {
    fn plan(&self, mode: Mode, warmup: f64, measure: f64, label: &str) -> Plan {
        Plan {
            senders: (0..self.rooms)
                .map(|r| {
                    (
                        (0..self.senders).map(|k| r * self.per_room + k).collect(),
                        format!("r{r}"),
                    )
                })
                .collect(),
            fan: vec![self.per_room as u64 - 1; self.rooms],
            mode,
            warmup: Duration::from_secs_f64(warmup),
            measure: Duration::from_secs_f64(measure),
            probe: None,
            drain: Duration::from_secs(5),
            label: format!("[{} {label}]", self.name),
            server_pid: self.server_pid,
        }
    }
}

/// `perf record -g` of the server while it lives, into
/// `bench-results/perf-<label>.data`, when `HUBBUB_BENCH_PERF` is a substring
/// of `label` (e.g. `HUBBUB_BENCH_PERF="1x1000 flood"`).
struct Profile(Option<std::process::Child>, PathBuf);

impl Profile {
    fn start(label: &str, pid: u32) -> Profile {
        let want = std::env::var("HUBBUB_BENCH_PERF")
            .ok()
            .filter(|w| !w.is_empty() && label.contains(w.as_str()));
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench-results");
        let file: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = dir.join(format!("perf-{}.data", file.trim_matches('-')));
        if want.is_none() {
            return Profile(None, path);
        }
        let _ = std::fs::create_dir_all(&dir);
        let child = Command::new("perf")
            .args(["record", "-g", "-F", "999", "-o"])
            .arg(&path)
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        std::thread::sleep(Duration::from_millis(300));
        Profile(child, path)
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            // SAFETY: signalling our own child so it writes its file.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            let _ = c.wait();
            eprintln!("  profile: perf report -i {}", self.1.display());
        }
    }
}

/// `load.run(plan)`, profiled when asked (see [`Profile`]).
fn run(load: &mut Load, plan: &Plan) -> Outcome {
    let _p = Profile::start(&plan.label, plan.server_pid);
    load.run(plan)
}

fn check_outcome(name: &str, o: &Outcome, srv: &Server) {
    let cuts = srv.slow_cuts.load(std::sync::atomic::Ordering::Relaxed);
    if o.delivered < o.expected || cuts > 0 {
        eprintln!(
            "  [{name}] WARNING: {} of {} deliveries arrived; {cuts} slow-consumer cuts",
            o.delivered, o.expected
        );
    }
}

/// The server's syscalls over one run of a plan, by name ("all" for every
/// kind), and the deliveries the server counted meanwhile.
struct Syscalls {
    tool: &'static str,
    counts: Vec<(String, u64)>,
    deliveries: u64,
    outcome: Outcome,
}

impl Syscalls {
    fn get(&self, k: &str) -> u64 {
        self.counts
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| *v)
            .sum()
    }

    /// Socket writes of every kind the server may use.
    fn writes(&self) -> u64 {
        self.get("writev") + self.get("write") + self.get("sendmsg") + self.get("sendto")
    }

    fn per_delivery(&self, n: u64) -> f64 {
        n as f64 / self.deliveries.max(1) as f64
    }

    /// What the note of a syscall row says besides the writes.
    fn summary(&self) -> String {
        let all = self.get("all");
        format!(
            "{}: {} writes, {} reads, {} epoll_wait{} for {} deliveries",
            self.tool,
            self.writes(),
            self.get("read") + self.get("recvfrom"),
            self.get("epoll_wait") + self.get("epoll_pwait"),
            if all > 0 {
                format!(", {:.3} syscalls/delivery in all", self.per_delivery(all))
            } else {
                String::new()
            },
            self.deliveries
        )
    }
}

/// Counts the server's syscalls (every thread) while `plan` runs: `perf
/// stat` with the syscall tracepoints, else `strace -c -f`; `None` when
/// neither can count.
fn count_syscalls(srv: &Server, load: &mut Load, plan: &Plan) -> Option<Syscalls> {
    let out = std::env::temp_dir().join(format!("hubbub-syscalls-{}.txt", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let events = "syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_sendmsg,syscalls:sys_enter_sendto,\
syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,raw_syscalls:sys_enter";
    let pid = srv.pid.to_string();
    let perf = Command::new("perf")
        .args(["stat", "-x", ",", "-o"])
        .arg(&out)
        .args(["-e", events, "-p", &pid])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let (mut child, tool) = match perf {
        Ok(c) => (c, "perf"),
        Err(_) => match Command::new("strace")
            .args(["-c", "-f", "-q", "-o"])
            .arg(&out)
            .args(["-p", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => (c, "strace"),
            Err(_) => {
                run(load, plan);
                return None;
            }
        },
    };
    std::thread::sleep(Duration::from_millis(500));
    let d0 = srv.metric("hubbub_deliveries_total");
    let outcome = run(load, plan);
    let d1 = srv.metric("hubbub_deliveries_total");
    // SAFETY: signalling our own child so it prints its summary.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let counts = if tool == "perf" {
        parse_perf(&text)
    } else {
        parse_strace(&text)
    };
    let s = Syscalls {
        tool,
        counts,
        deliveries: d1.saturating_sub(d0),
        outcome,
    };
    (s.writes() > 0).then_some(s)
}

/// Counts the server's syscalls over a 2-second flood.
fn syscall_burst(ctx: &mut Ctx, name: &'static str, srv: &Server, load: &mut Load, plan: &Plan) {
    let Some(s) = count_syscalls(srv, load, plan) else {
        eprintln!("  [{name}] syscall counting unavailable (no perf or strace)");
        ctx.rows.push(
            Row::new(
                name,
                "write syscalls per delivery (burst)",
                f64::NAN,
                "",
                "n/a".into(),
            )
            .target("< 0.2", false)
            .note("no perf/strace"),
        );
        return;
    };
    let per = s.per_delivery(s.writes());
    ctx.rows.push(
        Row::new(
            name,
            "write syscalls per delivery (burst)",
            per,
            "writes/delivery",
            format!("{per:.3}"),
        )
        .target("< 0.2", per < 0.2)
        .out(&s.outcome)
        .note(s.summary()),
    );
}

fn parse_perf(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let v = f.first()?.trim().parse::<u64>().ok()?;
            let ev = f.get(2)?.trim();
            let name = if ev == "raw_syscalls:sys_enter" {
                "all"
            } else {
                ev.strip_prefix("syscalls:sys_enter_")?
            };
            Some((name.to_string(), v))
        })
        .collect()
}

fn parse_strace(text: &str) -> Vec<(String, u64)> {
    let mut all = 0;
    let mut out: Vec<(String, u64)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 5 || f[0].parse::<f64>().is_err() {
                return None;
            }
            let calls = f[3].parse::<u64>().ok()?;
            let name = f.last()?.to_string();
            if name == "total" {
                all = calls;
                return None;
            }
            Some((name, calls))
        })
        .collect();
    out.push(("all".into(), all));
    out
}

// ---- Idle connections: upgrades/s and RSS per connection -------------------

/// Opens one connection per user and waits for the presence it causes:
/// every user's first connection broadcasts `user_status` to everyone, so
/// the connections measured after this are the quiet kind.
fn warm_up(load: &mut Load, tokens: &[String]) {
    let warm: Vec<Target> = tokens
        .iter()
        .map(|t| Target {
            path: format!("/ws?token={t}"),
            room: u32::MAX,
            addr: None,
        })
        .collect();
    load.open(&warm, 100, Duration::from_secs(30));
    let n = tokens.len() as u64;
    load.settle(Duration::from_secs(10), |l| l.c.unread >= n);
    load.settle(Duration::from_millis(500), |_| false);
}

fn idle_rss(ctx: &mut Ctx) {
    let name = "idle_rss";
    // Both processes need one descriptor per connection; keep a margin.
    let cap = (ctx.nofile as usize).saturating_sub(200);
    let big = ctx.max_conns.min(cap);
    let small = 10_000.min(big);
    eprintln!(
        "[{name}] upgrades/s, then RSS per idle connection at {small} and {big} (asked {}; RLIMIT_NOFILE {})",
        ctx.max_conns, ctx.nofile
    );
    let srv = start(ctx);
    let tokens = server::users(srv.addr, 100);
    let mut load = Load::new(srv.addr, 0);
    warm_up(&mut load, &tokens);
    let rss0 = srv.rss();
    let mut have = 0usize;
    for (step, n) in [small, big].into_iter().enumerate() {
        if n <= have {
            continue;
        }
        let add = n - have;
        let targets: Vec<Target> = (0..add)
            .map(|i| Target {
                path: format!("/ws?token={}", tokens[i % tokens.len()]),
                room: u32::MAX,
                addr: None,
            })
            .collect();
        let prof = Profile::start(&format!("[idle_rss open {n}]"), srv.pid);
        let cpu = sys::CpuMark::now(srv.pid);
        let (up, secs) = load.open(&targets, ctx.upgrade_window, Duration::from_secs(120));
        drop(prof);
        let cpu_use = cpu.since3();
        have += up as usize;
        if step == 0 {
            let rate = up as f64 / secs;
            ctx.rows.push(
                Row::new("upgrades", "WebSocket upgrades/s (JWT verified)", rate, "upgrades/s", format!("{rate:.0}/s"))
                    .target("≥ 30,000/s", rate >= 30_000.0)
                    .cpu(cpu_use)
                    .note(format!(
                        "{up} connections over {:.2} s, {} handshakes in flight, {} failed; {:.0} per server CPU-second",
                        secs,
                        ctx.upgrade_window,
                        load.c.failed,
                        rate / (cpu_use.1 / 100.0).max(0.01)
                    )),
            );
        }
        let expect = 100 + have as u64;
        load.settle(Duration::from_secs(30), |l| l.c.unread >= expect);
        load.settle(Duration::from_millis(1000), |_| false);
        let rss = srv.rss();
        let per = (rss.saturating_sub(rss0)) as f64 / have as f64;
        let limited = n < ctx.max_conns && step == 1;
        let row = Row::new(
            name,
            format!("server RSS per idle connection at {have}"),
            per,
            "bytes/conn",
            format!("{per:.0} B"),
        )
        .note(format!(
            "VmRSS {:.1} → {:.1} MiB, {} open, {} source addresses{}",
            rss0 as f64 / 1048576.0,
            rss as f64 / 1048576.0,
            load.open_conns(),
            load::sources_used(),
            if limited {
                format!(
                    "; 50,000 asked, RLIMIT_NOFILE hard limit {} allows {n}",
                    ctx.nofile
                )
            } else {
                String::new()
            }
        ))
        .target("≤ 256 B", per <= 256.0);
        ctx.rows.push(row);
    }
    drop(srv);
}

// ---- TLS: handshakes, the flood against plaintext, idle memory ----------------

/// A CA and a certificate for localhost made now (rcgen), written for the
/// server; the client configuration that trusts the CA.
fn tls_setup() -> (PathBuf, PathBuf, std::sync::Arc<rustls::ClientConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = std::env::temp_dir().join(format!("hubbub-e2e-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(hubbub::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (c, k, std::sync::Arc::new(config))
}

/// A server, on TLS when `files` are given.
fn start_maybe_tls(ctx: &Ctx, files: Option<(&PathBuf, &PathBuf)>) -> Server {
    match files {
        None => Server::start(ctx.server_cpu),
        Some((c, k)) => Server::start_with(
            ctx.server_cpu,
            &[
                "--tls-cert",
                c.to_str().unwrap(),
                "--tls-key",
                k.to_str().unwrap(),
            ],
        ),
    }
}

/// One 1 × 1000 flood (10 senders, the default window) on `srv`; the
/// outcome of its measured interval.
fn flood_once(
    ctx: &Ctx,
    srv: &Server,
    tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
    label: &str,
) -> Outcome {
    let per_room = 1000;
    let tokens = server::users_over(srv.addr, tls, 100);
    let targets: Vec<Target> = (0..per_room)
        .map(|c| Target {
            path: format!("/ws/room/r0?token={}", tokens[c % tokens.len()]),
            room: 0,
            addr: None,
        })
        .collect();
    let mut load = Load::new(srv.addr, 1);
    load.tls = tls.cloned();
    let (up, _) = load.open(&targets, 256, Duration::from_secs(60));
    assert_eq!(up as usize, per_room, "every connection upgraded");
    load.settle(Duration::from_secs(10), |l| l.c.unread >= per_room as u64);
    load.settle(Duration::from_millis(300), |_| false);
    let o = run(
        &mut load,
        &Plan {
            senders: vec![((0..10).collect(), "r0".into())],
            fan: vec![per_room as u64 - 1],
            mode: Mode::Flood {
                window: ctx.window,
                by_acks: false,
            },
            warmup: Duration::from_secs(1),
            measure: Duration::from_secs(ctx.secs),
            probe: None,
            drain: Duration::from_secs(5),
            label: format!("[tls {label}]"),
            server_pid: srv.pid,
        },
    );
    check_outcome("tls", &o, srv);
    o
}

/// TLS against plaintext, each pair in one sitting (A, B, A, B): handshakes
/// per second with the upgrade and the JWT check, and server CPU per
/// handshake; the 1 × 1000 flood's ratio; RSS per idle connection at 10,000.
fn tls(ctx: &mut Ctx) {
    let (cert, key, config) = tls_setup();
    let files = Some((&cert, &key));
    eprintln!("[tls] handshakes, then the 1 x 1000 flood, plaintext and TLS alternately");
    // Handshakes: 2000 new connections each round.
    let n = 2000usize;
    let mut rates: Vec<(f64, f64, f64)> = Vec::new(); // (plain/s, tls/s, tls µs CPU)
    for _ in 0..2 {
        let mut pair = [0.0f64; 3];
        for (k, f) in [None, files].into_iter().enumerate() {
            let srv = start_maybe_tls(ctx, f);
            let tls = f.map(|_| &config);
            let tokens = server::users_over(srv.addr, tls, 100);
            let targets: Vec<Target> = (0..n)
                .map(|i| Target {
                    path: format!("/ws?token={}", tokens[i % tokens.len()]),
                    room: u32::MAX,
                    addr: None,
                })
                .collect();
            let mut load = Load::new(srv.addr, 0);
            load.tls = tls.cloned();
            let prof = Profile::start(&format!("[tls handshakes {k}]"), srv.pid);
            let cpu = sys::CpuMark::now(srv.pid);
            let (up, secs) = load.open(&targets, ctx.upgrade_window, Duration::from_secs(120));
            let server_cpu = cpu.since3().1;
            drop(prof);
            assert_eq!(up as usize, n, "every handshake completed");
            pair[k] = up as f64 / secs;
            if k == 1 {
                pair[2] = server_cpu / 100.0 * secs / up as f64 * 1e6;
            }
        }
        eprintln!(
            "  handshakes: plain {:.0}/s, TLS {:.0}/s, {:.0} µs server CPU per TLS one",
            pair[0], pair[1], pair[2]
        );
        rates.push((pair[0], pair[1], pair[2]));
    }
    let mean =
        |f: fn(&(f64, f64, f64)) -> f64| rates.iter().map(f).sum::<f64>() / rates.len() as f64;
    let (tls_rate, plain_rate, cpu_us) = (mean(|r| r.1), mean(|r| r.0), mean(|r| r.2));
    ctx.rows.push(
        Row::new("tls", "TLS handshakes/s (TCP + TLS 1.3 + upgrade + JWT)", tls_rate, "handshakes/s", format!("{tls_rate:.0}/s"))
            .note(format!(
                "{n} new connections a round, {} in flight, 2 rounds: {}; plaintext upgrades in the same rounds {plain_rate:.0}/s",
                ctx.upgrade_window,
                rates.iter().map(|r| format!("{:.0}", r.1)).collect::<Vec<_>>().join(", ")
            )),
    );
    ctx.rows.push(
        Row::new(
            "tls",
            "server CPU per TLS handshake",
            cpu_us,
            "µs",
            format!("{cpu_us:.0} µs"),
        )
        .note(format!(
            "rounds: {} µs (ECDSA P-256 certificate, X25519)",
            rates
                .iter()
                .map(|r| format!("{:.0}", r.2))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    );

    // The flood, A B A B.
    let mut ratios = Vec::new();
    let mut cpu_ratios = Vec::new();
    let mut last = (0.0, 0.0);
    let mut cpus = (0.0, 0.0, 0.0, 0.0);
    for round in 0..2 {
        let plain = {
            let srv = start_maybe_tls(ctx, None);
            flood_once(ctx, &srv, None, &format!("plain flood {round}"))
        };
        let over = {
            let srv = start_maybe_tls(ctx, files);
            flood_once(ctx, &srv, Some(&config), &format!("TLS flood {round}"))
        };
        eprintln!(
            "  flood: plain {:.0}, TLS {:.0} deliveries/s: {:.2}",
            plain.deliveries_per_s,
            over.deliveries_per_s,
            over.deliveries_per_s / plain.deliveries_per_s
        );
        ratios.push(over.deliveries_per_s / plain.deliveries_per_s);
        let per_cpu = |o: &Outcome| o.deliveries_per_s / (o.server_cpu / 100.0).max(0.01);
        cpu_ratios.push(per_cpu(&over) / per_cpu(&plain));
        last = (plain.deliveries_per_s, over.deliveries_per_s);
        cpus = (
            plain.server_cpu,
            over.server_cpu,
            plain.client_cpu,
            over.client_cpu,
        );
    }
    let ratio = ratios.iter().sum::<f64>() / ratios.len() as f64;
    ctx.rows.push(
        Row::new(
            "tls",
            "1 × 1000 flood over TLS / plaintext",
            ratio,
            "ratio",
            format!("{ratio:.2}"),
        )
        .target("≥ 0.6", ratio >= 0.6)
        .note(format!(
            "2 pairs, plaintext then TLS: {}; last pair {:.0} vs {:.0} deliveries/s, \
             server CPU {:.0} % vs {:.0} %, load generator {:.0} % vs {:.0} %; \
             deliveries per server CPU-second, TLS / plaintext: {}",
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            last.0,
            last.1,
            cpus.0,
            cpus.1,
            cpus.2,
            cpus.3,
            cpu_ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    );

    // Idle memory per connection at 10,000, TLS and plaintext.
    let idle = 10_000usize.min((ctx.nofile as usize).saturating_sub(200));
    for f in [None, files] {
        let srv = start_maybe_tls(ctx, f);
        let tls = f.map(|_| &config);
        let tokens = server::users_over(srv.addr, tls, 100);
        let mut load = Load::new(srv.addr, 0);
        load.tls = tls.cloned();
        warm_up(&mut load, &tokens);
        let rss0 = srv.rss();
        let targets: Vec<Target> = (0..idle)
            .map(|i| Target {
                path: format!("/ws?token={}", tokens[i % tokens.len()]),
                room: u32::MAX,
                addr: None,
            })
            .collect();
        let (up, _) = load.open(&targets, ctx.upgrade_window, Duration::from_secs(120));
        load.settle(Duration::from_secs(30), |l| l.c.unread >= 100 + up);
        // Past the once-a-second sweep that frees idle buffers.
        load.settle(Duration::from_millis(2500), |_| false);
        let rss = srv.rss();
        let per = rss.saturating_sub(rss0) as f64 / up as f64;
        let mut row = Row::new(
            "tls",
            format!(
                "server RSS per idle {} connection at {up}",
                if f.is_some() { "TLS" } else { "plaintext" }
            ),
            per,
            "bytes/conn",
            format!("{per:.0} B"),
        )
        .note(format!(
            "VmRSS {:.1} → {:.1} MiB",
            rss0 as f64 / 1048576.0,
            rss as f64 / 1048576.0
        ));
        if f.is_some() {
            row = row.target("≤ 8 KiB", per <= 8192.0);
        }
        ctx.rows.push(row);
    }
}

// ---- Reconnect storm: presence frames, time to settle, cuts -----------------

/// Every user (one connection each, all in `#general`) drops at once and
/// reconnects at once, as after a network blip; run with no presence grace
/// (every departure and return announced to everyone: O(N²) frames) and
/// with the default grace (a return within it is not news).
fn storm(ctx: &mut Ctx) {
    let name = "storm";
    let cap = (ctx.nofile as usize).saturating_sub(200) / 2;
    let n = ctx.storm.min(cap);
    eprintln!(
        "[{name}] {n} users in #general drop and reconnect at once (RLIMIT_NOFILE {})",
        ctx.nofile
    );
    for grace in ["0", "3"] {
        let srv = Server::start_with(ctx.server_cpu, &["--presence-grace", grace]);
        let tokens = server::users(srv.addr, n);
        let targets: Vec<Target> = tokens
            .iter()
            .map(|t| Target {
                path: format!("/ws/room/general?token={t}"),
                room: u32::MAX,
                addr: None,
            })
            .collect();
        let mut load = Load::new(srv.addr, 0);
        load.open(&targets, ctx.upgrade_window, Duration::from_secs(120));
        load.settle(Duration::from_secs(60), |l| l.c.unread >= n as u64);
        settle_quiet(
            &mut load,
            Duration::from_millis(500),
            Duration::from_secs(60),
        );
        let frames0 = srv.metric("hubbub_ws_frames_out_total");
        let cuts0 = srv.metric("hubbub_slow_consumer_cuts_total");
        let t0 = Instant::now();
        load.drop_all();
        load.open(&targets, ctx.upgrade_window, Duration::from_secs(120));
        let reopened = load.open_conns();
        settle_quiet(
            &mut load,
            Duration::from_millis(500),
            Duration::from_secs(120),
        );
        let settled = t0.elapsed().as_secs_f64() - 0.5;
        // Departures the grace held back come due now; count them too.
        let wait = Duration::from_secs(grace.parse::<u64>().unwrap_or(0) + 2);
        settle_quiet(&mut load, wait, Duration::from_secs(60));
        let frames = srv.metric("hubbub_ws_frames_out_total") - frames0;
        let cuts = srv.metric("hubbub_slow_consumer_cuts_total") - cuts0;
        let per_user = frames as f64 / n as f64;
        ctx.rows.push(
            Row::new(
                name,
                format!("frames sent in a reconnect storm of {n}, presence grace {grace} s"),
                frames as f64,
                "frames",
                format!("{frames} ({per_user:.1}/user)"),
            )
            .target("no well-behaved client cut", cuts == 0)
            .note(format!(
                "{reopened} of {n} reconnected; settled {settled:.2} s after the drop; \
                 {cuts} slow-consumer cuts; {} connections closed by the server",
                load.c.closed
            )),
        );
        drop(load);
        drop(srv);
    }
}

/// Turns the load generator until no frame arrives for `quiet` (or `limit`).
fn settle_quiet(load: &mut Load, quiet: Duration, limit: Duration) {
    let start = Instant::now();
    let mut last = load.frames_seen();
    let mut since = Instant::now();
    while start.elapsed() < limit {
        load.settle(Duration::from_millis(50), |_| false);
        let now = load.frames_seen();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return;
        }
    }
}

// ---- Push: a mention to its push request, and the chat meanwhile ------------

/// Mentions of users with no connection, at `HUBBUB_BENCH_PUSH_RATE` a second,
/// each pushed to the user's subscription on a local push service: the time
/// from sending the mention (so storing it is included) to its push request
/// arriving. Meanwhile a room of 100 connections chats at 200 msgs/s; its
/// latency is measured in rounds with and without the pushes, alternated.
fn push(ctx: &mut Ctx) {
    let name = "push";
    let rate = env_num("HUBBUB_BENCH_PUSH_RATE", 100).clamp(1, 1000) as f64;
    let (conns, chatters, chat_rate, rounds) = (100usize, 10usize, 200.0, 2usize);
    let (warmup, measure) = (1.0, 5.0);
    // Each round mentions each of its users once: pushes to one user about
    // one conversation are paced (PUSH_INTERVAL_MS), longer than a round.
    let per_round = (rate * (warmup + measure)).ceil() as usize;
    let offline = per_round * rounds;
    eprintln!(
        "[{name}] {rate:.0} mentions/s of {offline} users with a subscription and no connection; 1 room x {conns} connections chatting at {chat_rate:.0} msgs/s"
    );
    let service = PushService::start();
    let srv = Server::start_with(ctx.server_cpu, &["--push-allow-insecure"]);
    let tokens = server::users(srv.addr, conns + offline);
    let (st, body) = server::http(srv.addr, "GET", "/api/push/key", None, Some(&tokens[0]))
        .expect("push key request");
    assert_eq!(st, 200, "GET /api/push/key: {body}");
    let key: serde_json::Value = serde_json::from_str(&body).expect("push key JSON");
    let key = key["public_key"].as_str().expect("public_key").to_string();
    let subscribers: Vec<Subscriber> = (0..offline)
        .map(|i| {
            let sub = Subscriber::new(&service, &format!("u{i}"));
            let body = sub.json().to_string();
            let (st, b) = server::http(
                srv.addr,
                "POST",
                "/api/push/subscriptions",
                Some(&body),
                Some(&tokens[conns + i]),
            )
            .expect("subscribe request");
            assert_eq!(st, 201, "subscribe: {b}");
            sub
        })
        .collect();

    let targets: Vec<Target> = tokens[..conns]
        .iter()
        .map(|t| Target {
            path: format!("/ws/room/chat?token={t}"),
            room: 0,
            addr: None,
        })
        .collect();
    let mut load = Load::new(srv.addr, 1);
    let (up, _) = load.open(&targets, 256, Duration::from_secs(60));
    assert_eq!(up as usize, conns, "every connection upgraded");
    load.settle(Duration::from_secs(10), |l| l.c.unread >= conns as u64);
    let plan = |warmup: f64, measure: f64, label: &str| Plan {
        senders: vec![((0..chatters).collect(), "chat".into())],
        fan: vec![conns as u64 - 1],
        mode: Mode::Paced { per_sec: chat_rate },
        warmup: Duration::from_secs_f64(warmup),
        measure: Duration::from_secs_f64(measure),
        probe: None,
        drain: Duration::from_secs(5),
        label: format!("[{name} {label}]"),
        server_pid: srv.pid,
    };
    run(&mut load, &plan(0.0, 1.0, "paced warm-up"));

    let mut pushed = Hist::default();
    let mut chat = [Hist::default(), Hist::default()];
    let mut round_p99 = [Vec::new(), Vec::new()];
    let mut checked = false;
    let mut o_with = None;
    for round in 0..rounds {
        // Alternated in one sitting, each order once.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for with in order {
            let label = if with {
                "chat with pushes"
            } else {
                "chat alone"
            };
            let mentions = with.then(|| {
                let users = (0..per_round)
                    .map(|i| conns + round * per_round + i)
                    .collect();
                mention(srv.addr, &tokens[0], users, rate)
            });
            load.lat = Hist::default();
            load.record_latency = true;
            let o = run(&mut load, &plan(warmup, measure, label));
            load.record_latency = false;
            check_outcome(name, &o, &srv);
            let h = std::mem::take(&mut load.lat);
            round_p99[with as usize].push(h.quantile(0.99));
            chat[with as usize].add(&h);
            let Some(mentions) = mentions else { continue };
            let sent = mentions.join().expect("the mention sender");
            let first = round * per_round;
            let mut got = 0;
            while got < per_round {
                let Some(p) = service.next(Duration::from_secs(10)) else {
                    break;
                };
                let Some(i) = p
                    .path
                    .strip_prefix("/push/u")
                    .and_then(|i| i.parse::<usize>().ok())
                    .and_then(|i| i.checked_sub(first))
                    .filter(|&i| i < per_round)
                else {
                    panic!("[{name}] a push to {} in round {round}", p.path);
                };
                got += 1;
                if !checked {
                    // One payload opened as a browser would: the request is real.
                    let v = subscribers[first + i].open(&p, &key);
                    assert_eq!(v["title"], "bench0 mentioned you in #m", "{v}");
                    checked = true;
                }
                if sent[i].0 >= Duration::from_secs_f64(warmup) {
                    pushed.record(p.at.saturating_duration_since(sent[i].1).as_nanos() as u64);
                }
            }
            assert_eq!(got, per_round, "[{name}] every mention pushed once");
            o_with = Some(o);
        }
    }
    service.expect_none(Duration::from_millis(500), "one push per mention");
    let o = o_with.expect("a round with pushes");
    let (p50, p99) = (pushed.quantile(0.5), pushed.quantile(0.99));
    ctx.rows.push(
        Row::new(
            name,
            format!("mention → push request p50/p99/max at {rate:.0}/s"),
            p99 as f64 / 1e6,
            "ms (p99)",
            format!(
                "{} / {} / {}",
                label(p50 as f64),
                label(p99 as f64),
                label(pushed.max as f64)
            ),
        )
        .target("p99 < 1 s", p99 < 1_000_000_000)
        .out(&o)
        .note(format!(
            "{} samples over {rounds} rounds; encrypted per subscription (RFC 8291), VAPID-signed, over HTTP/1.1 to 127.0.0.1; {} sent in all",
            pushed.n,
            srv.metric("hubbub_push_sent_total")
        )),
    );
    let q = |h: &Hist| (h.quantile(0.5), h.quantile(0.99));
    let ((a50, a99), (b50, b99)) = (q(&chat[0]), q(&chat[1]));
    let ms = |v: &[u64]| {
        v.iter()
            .map(|&x| label(x as f64))
            .collect::<Vec<_>>()
            .join(", ")
    };
    ctx.rows.push(
        Row::new(
            name,
            "chat latency p50 / p99, alone → with pushes",
            b99 as f64 / a99.max(1) as f64,
            "× (p99)",
            format!(
                "{} / {} → {} / {} (p99 ×{:.2})",
                label(a50 as f64),
                label(a99 as f64),
                label(b50 as f64),
                label(b99 as f64),
                b99 as f64 / a99.max(1) as f64
            ),
        )
        .out(&o)
        .note(format!(
            "{chat_rate:.0} msgs/s to {conns} connections; p99 per round alone: {}; with pushes: {}",
            ms(&round_p99[0]),
            ms(&round_p99[1])
        )),
    );
    ctx.series.push((
        format!("push: mention → push request at {rate:.0}/s"),
        pushed,
    ));
    let [alone, with] = chat;
    ctx.series
        .push((format!("push: chat at {chat_rate:.0} msgs/s, alone"), alone));
    ctx.series.push((
        format!("push: chat at {chat_rate:.0} msgs/s, with pushes"),
        with,
    ));
    drop(load);
    drop(srv);
}

/// Sends, on a connection of its own to room `m`, one mention of each of
/// `users` (`bench<N>`), `rate` a second; returns when each was sent (since
/// the first, and the instant).
fn mention(
    addr: std::net::SocketAddr,
    token: &str,
    users: Vec<usize>,
    rate: f64,
) -> std::thread::JoinHandle<Vec<(Duration, Instant)>> {
    let url = format!("ws://{addr}/ws/room/m?token={token}");
    std::thread::spawn(move || {
        let stream = std::net::TcpStream::connect(addr).expect("connect the mention sender");
        stream.set_nodelay(true).expect("nodelay");
        let (mut ws, _) =
            tungstenite::client(url.as_str(), stream).expect("upgrade the mention sender");
        ws.get_mut().set_nonblocking(true).expect("nonblocking");
        let start = Instant::now();
        let mut sent = Vec::with_capacity(users.len());
        // Reads whatever arrived (acks, the echo), so the server never sees a slow consumer.
        let drain = |ws: &mut tungstenite::WebSocket<std::net::TcpStream>| loop {
            match ws.read() {
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return;
                }
                Err(e) => panic!("the mention sender's connection: {e}"),
            }
        };
        for (i, user) in users.into_iter().enumerate() {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            loop {
                drain(&mut ws);
                let now = Instant::now();
                if now >= due {
                    break;
                }
                std::thread::sleep((due - now).min(Duration::from_millis(1)));
            }
            let frame = format!(
                r#"{{"type":"message","room":"m","content":"@bench{user} the release is out"}}"#
            );
            let at = Instant::now();
            match ws.send(tungstenite::Message::text(frame)) {
                Ok(()) => {}
                // Queued in the socket's buffer; flushed by the next send or read.
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("the mention sender's connection: {e}"),
            }
            sent.push((at - start, at));
        }
        let end = Instant::now() + Duration::from_millis(500);
        while Instant::now() < end {
            let _ = ws.flush();
            drain(&mut ws);
            std::thread::sleep(Duration::from_millis(5));
        }
        sent
    })
}

// ---- Files: chat while 100 MB transfers run ---------------------------------

/// Bytes in each transfer of the `transfers` scenario.
const TRANSFER_BYTES: usize = 100_000_000;

/// Four 100 MB uploads and four 100 MB downloads at once, each on its own
/// connection and as fast as loopback takes them, over and over, while a
/// room of 100 connections chats at 200 msgs/s on other connections: the
/// chat latency in rounds with and without the transfers (alternated, in
/// one sitting), the server's RSS meanwhile, and the MB/s moved.
fn transfers(ctx: &mut Ctx) {
    let name = "transfers";
    let (conns, chatters, chat_rate, rounds) = (100usize, 10usize, 200.0, 2usize);
    let (warmup, measure) = (1.0, 5.0);
    eprintln!(
        "[{name}] 4 uploads + 4 downloads of {} MB, repeated; 1 room x {conns} connections chatting at {chat_rate:.0} msgs/s",
        TRANSFER_BYTES / 1_000_000
    );
    let srv = Server::start_with(
        ctx.server_cpu,
        &["--max-upload", "200M", "--upload-quota", "0"],
    );
    let tokens = server::users(srv.addr, conns);
    let body: std::sync::Arc<Vec<u8>> = std::sync::Arc::new(
        (0..TRANSFER_BYTES as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect(),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (up, _) = upload_all(srv.addr, &tokens[0], &body, &stop);
    let file = up.expect("the file the downloads fetch");

    let targets: Vec<Target> = tokens
        .iter()
        .map(|t| Target {
            path: format!("/ws/room/chat?token={t}"),
            room: 0,
            addr: None,
        })
        .collect();
    let mut load = Load::new(srv.addr, 1);
    let (opened, _) = load.open(&targets, 256, Duration::from_secs(60));
    assert_eq!(opened as usize, conns, "every connection upgraded");
    load.settle(Duration::from_secs(10), |l| l.c.unread >= conns as u64);
    let plan = |warmup: f64, measure: f64, label: &str| Plan {
        senders: vec![((0..chatters).collect(), "chat".into())],
        fan: vec![conns as u64 - 1],
        mode: Mode::Paced { per_sec: chat_rate },
        warmup: Duration::from_secs_f64(warmup),
        measure: Duration::from_secs_f64(measure),
        probe: None,
        drain: Duration::from_secs(5),
        label: format!("[{name} {label}]"),
        server_pid: srv.pid,
    };
    run(&mut load, &plan(0.0, 1.0, "paced warm-up"));
    let rss_idle = srv.rss();

    let mut chat = [Hist::default(), Hist::default()];
    let mut round_p99 = [Vec::new(), Vec::new()];
    let (mut moved_up, mut moved_down, mut moving_s, mut rss_peak) = (0u64, 0u64, 0.0, 0u64);
    let mut o_with = None;
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for with in order {
            let label = if with {
                "chat with transfers"
            } else {
                "chat alone"
            };
            stop.store(false, std::sync::atomic::Ordering::Relaxed);
            let started = Instant::now();
            let movers: Vec<_> = if with {
                (0..8)
                    .map(|i| {
                        let (addr, token, body, stop) =
                            (srv.addr, tokens[1 + i].clone(), body.clone(), stop.clone());
                        let (file, owner) = (file.clone(), tokens[0].clone());
                        std::thread::spawn(move || {
                            // Below the load generator on the client's CPU:
                            // the latency measured is the server's.
                            sys::renice(sys::thread_id(), 10);
                            let mut moved = (0u64, 0u64);
                            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                                if i < 4 {
                                    moved.0 += upload_all(addr, &token, &body, &stop).1;
                                } else {
                                    moved.1 += download_all(addr, &owner, &file, &stop);
                                }
                            }
                            moved
                        })
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let sampler = with.then(|| {
                let (pid, stop) = (srv.pid, stop.clone());
                std::thread::spawn(move || {
                    let mut peak = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        peak = peak.max(sys::vm_rss(pid));
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    peak
                })
            });
            load.lat = Hist::default();
            load.record_latency = true;
            let o = run(&mut load, &plan(warmup, measure, label));
            load.record_latency = false;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            check_outcome(name, &o, &srv);
            let h = std::mem::take(&mut load.lat);
            round_p99[with as usize].push(h.quantile(0.99));
            chat[with as usize].add(&h);
            if !with {
                continue;
            }
            for m in movers {
                let (u, d) = m.join().expect("a transfer thread");
                moved_up += u;
                moved_down += d;
            }
            moving_s += started.elapsed().as_secs_f64();
            rss_peak = rss_peak.max(sampler.map_or(0, |s| s.join().expect("the RSS sampler")));
            o_with = Some(o);
        }
    }
    let o = o_with.expect("a round with transfers");
    let q = |h: &Hist| (h.quantile(0.5), h.quantile(0.99));
    let ((a50, a99), (b50, b99)) = (q(&chat[0]), q(&chat[1]));
    let ms = |v: &[u64]| {
        v.iter()
            .map(|&x| label(x as f64))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ratio = b99 as f64 / a99.max(1) as f64;
    ctx.rows.push(
        Row::new(
            name,
            "chat latency p50 / p99, alone → with 4 up + 4 down of 100 MB",
            ratio,
            "× (p99)",
            format!(
                "{} / {} → {} / {} (p99 ×{ratio:.2})",
                label(a50 as f64),
                label(a99 as f64),
                label(b50 as f64),
                label(b99 as f64),
            ),
        )
        .out(&o)
        .note(format!(
            "{chat_rate:.0} msgs/s to {conns} connections; p99 per round alone: {}; with transfers: {}",
            ms(&round_p99[0]),
            ms(&round_p99[1])
        )),
    );
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    ctx.rows.push(
        Row::new(
            name,
            "server RSS, chatting → peak with the transfers",
            mib(rss_peak.saturating_sub(rss_idle)),
            "MiB more",
            format!(
                "{:.1} → {:.1} MiB (+{:.1})",
                mib(rss_idle),
                mib(rss_peak),
                mib(rss_peak.saturating_sub(rss_idle))
            ),
        )
        .target(
            "a few MiB more",
            rss_peak.saturating_sub(rss_idle) < 16 * 1024 * 1024,
        )
        .note("VmRSS sampled every 20 ms while the transfers ran"),
    );
    let mbs = |b: u64| b as f64 / 1e6 / moving_s.max(1e-9);
    ctx.rows.push(
        Row::new(
            name,
            "moved through the loop meanwhile, up / down",
            mbs(moved_up + moved_down),
            "MB/s",
            format!("{:.0} / {:.0} MB/s", mbs(moved_up), mbs(moved_down)),
        )
        .note(format!(
            "{:.1} GB up, {:.1} GB down in {moving_s:.0} s, 4 connections each way, the server on one core",
            moved_up as f64 / 1e9,
            moved_down as f64 / 1e9
        )),
    );
    let [alone, with] = chat;
    ctx.series.push((
        format!("transfers: chat at {chat_rate:.0} msgs/s, alone"),
        alone,
    ));
    ctx.series.push((
        format!("transfers: chat at {chat_rate:.0} msgs/s, with 4 up + 4 down"),
        with,
    ));
    drop(load);
    drop(srv);
}

/// Uploads `body` to `POST /api/files` on a connection of its own; stops
/// early (dropping the connection: an aborted upload) when `stop` is set.
/// The stored file's id if it completed, and the bytes sent.
fn upload_all(
    addr: std::net::SocketAddr,
    token: &str,
    body: &[u8],
    stop: &std::sync::atomic::AtomicBool,
) -> (Option<String>, u64) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect an upload");
    let head = format!(
        "POST /api/files?name=big.bin HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("an upload's head");
    let mut sent = 0;
    for chunk in body.chunks(256 * 1024) {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return (None, sent);
        }
        s.write_all(chunk).expect("an upload's body");
        sent += chunk.len() as u64;
    }
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("an upload's answer");
    assert!(resp.starts_with("HTTP/1.1 201"), "upload: {resp}");
    let id = resp
        .split_once("\"id\":")
        .map(|(_, r)| {
            r.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| panic!("no file id in {resp}"));
    (Some(id), sent)
}

/// Downloads file `id` on a connection of its own, until it ends or
/// `stop` is set; the bytes received.
fn download_all(
    addr: std::net::SocketAddr,
    token: &str,
    id: &str,
    stop: &std::sync::atomic::AtomicBool,
) -> u64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect a download");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let req = format!(
        "GET /api/files/{id} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("a download's request");
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match s.read(&mut buf).expect("a download's body") {
            0 => break,
            n => got += n as u64,
        }
    }
    got
}

// ---- Persistence: acked messages/s and the loop's latency ------------------

/// `persist` on the server's own SQLite file; `persist_pg` passes
/// `--postgres URL` (and the PostgreSQL pids, whose CPU is reported too).
fn persist(ctx: &mut Ctx, name: &'static str, extra: &[&str], pg: Option<&Postgres>) {
    let senders = 100usize;
    eprintln!(
        "[{name}] {senders} connections, each alone in its room, flooding acked messages; /ws/echo probe every 1 ms"
    );
    let srv = Server::start_with(ctx.server_cpu, extra);
    eprintln!("  server pid {} on {} {extra:?}", srv.pid, srv.addr);
    let tokens = server::users(srv.addr, senders);
    let mut targets: Vec<Target> = (0..senders)
        .map(|i| Target {
            path: format!("/ws/room/p{i}?token={}", tokens[i]),
            room: i as u32,
            addr: None,
        })
        .collect();
    targets.push(Target {
        path: "/ws/echo".into(),
        room: u32::MAX,
        addr: None,
    });
    let mut load = Load::new(srv.addr, senders);
    load.open(&targets, 128, Duration::from_secs(30));
    load.settle(Duration::from_secs(10), |l| l.c.unread >= senders as u64);
    let probe = Some((senders, Duration::from_millis(1)));
    let plan = |mode: Mode, with_senders: bool, label: &str| Plan {
        senders: (0..senders)
            .map(|i| (if with_senders { vec![i] } else { vec![] }, format!("p{i}")))
            .collect(),
        fan: vec![0; senders],
        mode,
        warmup: Duration::from_millis(500),
        measure: Duration::from_secs(ctx.secs),
        probe,
        drain: Duration::from_secs(10),
        label: format!("[{name} {label}]"),
        server_pid: srv.pid,
    };
    let idle = run(
        &mut load,
        &plan(
            Mode::Flood {
                window: 1,
                by_acks: true,
            },
            false,
            "idle probe",
        ),
    );
    let echo_idle = std::mem::take(&mut load.echo);
    // PostgreSQL's processes (postmaster, the server's backends, writers).
    let pg_cpu = pg.map(|p| {
        (
            sys::GroupCpu::now(vec![("PostgreSQL".into(), p.pids())]),
            p.next_xid(),
        )
    });
    let flood = run(
        &mut load,
        &plan(
            Mode::Flood {
                window: 64,
                by_acks: true,
            },
            true,
            "ack flood",
        ),
    );
    let echo_flood = std::mem::take(&mut load.echo);
    let paced_rate = 100_000f64.min(flood.acks_per_s * 0.8).max(1000.0);
    let paced = run(
        &mut load,
        &plan(
            Mode::Paced {
                per_sec: paced_rate,
            },
            true,
            "paced acks",
        ),
    );
    let echo_paced = std::mem::take(&mut load.echo);
    if flood.acked < flood.sent {
        eprintln!(
            "  [{name}] WARNING: {} of {} messages acked",
            flood.acked, flood.sent
        );
    }
    let pg_note = match (pg_cpu, pg) {
        (Some((g, x0)), Some(pg)) => {
            let txs = pg.next_xid().saturating_sub(x0).max(1);
            let cpu: String = g
                .since()
                .iter()
                .map(|(n, c)| format!("; {n} {c:.0} % of a core (whole flood)"))
                .collect();
            format!(
                "{cpu}; {txs} write transactions, {:.1} messages each",
                flood.sent as f64 / txs as f64
            )
        }
        _ => String::new(),
    };
    let stored = srv.metric("hubbub_messages_stored_total");
    let rate = flood.acks_per_s;
    let mut row = Row::new(name, "messages persisted/s (acks)", rate, "acks/s", format!("{rate:.0}/s"))
        .out(&flood)
        .note(format!(
            "{senders} senders, 64 unacked each; {} acked of {} sent; server counter {stored}; {:.0} per server CPU-second{pg_note}",
            flood.acked,
            flood.sent,
            rate / (flood.server_cpu / 100.0).max(0.01)
        ));
    if name == "persist" {
        row = row.target("≥ 100,000/s", rate >= 100_000.0);
    }
    ctx.rows.push(row);
    let (i99, f99) = (echo_idle.quantile(0.99), echo_flood.quantile(0.99));
    ctx.rows.push(
        Row::new(
            name,
            "loop latency (echo RTT p50/p99): idle",
            i99 as f64 / 1e6,
            "ms (p99)",
            format!(
                "{} / {}",
                label(echo_idle.quantile(0.5) as f64),
                label(i99 as f64)
            ),
        )
        .out(&idle)
        .note(format!("{} probes", echo_idle.n)),
    );
    ctx.rows.push(
        Row::new(
            name,
            "loop latency (echo RTT p50/p99): ack flood",
            f99 as f64 / 1e6,
            "ms (p99)",
            format!(
                "{} / {}",
                label(echo_flood.quantile(0.5) as f64),
                label(f99 as f64)
            ),
        )
        .target(
            "p99 unchanged (≤ 2× idle or < 1 ms)",
            f99 <= (2 * i99).max(1_000_000),
        )
        .out(&flood)
        .note(format!(
            "{} probes, max {}",
            echo_flood.n,
            label(echo_flood.max as f64)
        )),
    );
    let p99 = echo_paced.quantile(0.99);
    ctx.rows.push(
        Row::new(
            name,
            format!(
                "loop latency (echo RTT p50/p99): {:.0}k persisted msgs/s paced",
                paced_rate / 1e3
            ),
            p99 as f64 / 1e6,
            "ms (p99)",
            format!(
                "{} / {}",
                label(echo_paced.quantile(0.5) as f64),
                label(p99 as f64)
            ),
        )
        .target(
            "p99 unchanged (≤ 2× idle or < 1 ms)",
            p99 <= (2 * i99).max(1_000_000),
        )
        .out(&paced)
        .note(format!(
            "{:.0} acks/s, {} probes, max {}",
            paced.acks_per_s,
            echo_paced.n,
            label(echo_paced.max as f64)
        )),
    );
    let on = if name == "persist" {
        ""
    } else {
        " (PostgreSQL)"
    };
    ctx.series
        .push((format!("/ws/echo RTT, idle server{on}"), echo_idle));
    ctx.series.push((
        format!("/ws/echo RTT, flood of {:.0}k acked msgs/s{on}", rate / 1e3),
        echo_flood,
    ));
    ctx.series.push((
        format!(
            "/ws/echo RTT, {:.0}k persisted msgs/s paced{on}",
            paced_rate / 1e3
        ),
        echo_paced,
    ));
    drop(srv);
}

// ---- Cluster: two nodes on one PostgreSQL, talking over Redis ---------------

/// Two nodes of one cluster (node 1 on CPU 0, node 2 on CPU 1), each with
/// the harness's flags plus `--postgres --redis --redis-channel --node-id
/// --presence-grace 0`, on a fresh database and channel; returned once each
/// node's `/metrics` shows the other as a peer.
fn start_cluster(ctx: &Ctx, tag: &str, pg: &Postgres, redis: &Redis) -> Vec<Server> {
    let url = pg.database(tag);
    let channel = format!("hubbub-bench-{tag}-{}", std::process::id());
    let redis_url = redis.url();
    let cpus = sys::cpus();
    let mut nodes = Vec::new();
    for k in 0..2 {
        let cpu = ctx.server_cpu.map(|_| k.min(cpus - 1));
        let id = format!("n{}", k + 1);
        // Node 1 first: it stores the JWT secret that node 2 then reads.
        let s = Server::start_with(
            cpu,
            &[
                "--postgres",
                &url,
                "--redis",
                &redis_url,
                "--redis-channel",
                &channel,
                "--node-id",
                &id,
                "--presence-grace",
                "0",
            ],
        );
        eprintln!(
            "  node {id} pid {} on {} (CPU {}, {})",
            s.pid,
            s.addr,
            cpu.map_or("any".into(), |c| c.to_string()),
            if s.pinned { "pinned" } else { "not pinned" }
        );
        nodes.push(s);
    }
    for s in &nodes {
        assert!(
            s.wait_metric("hubbub_cluster_peers", 1, Duration::from_secs(30)),
            "node {} did not see its peer within 30 s (hubbub_cluster_peers {})",
            s.addr,
            s.metric("hubbub_cluster_peers")
        );
    }
    nodes
}

/// CPU of both nodes, redis-server and PostgreSQL (postmaster and every
/// backend) over an interval.
fn cluster_cpu(nodes: &[Server], pg: &Postgres, redis: &Redis) -> sys::GroupCpu {
    sys::GroupCpu::now(vec![
        ("node 1".into(), vec![nodes[0].pid]),
        ("node 2".into(), vec![nodes[1].pid]),
        ("redis-server".into(), vec![redis.pid]),
        ("PostgreSQL".into(), pg.pids()),
    ])
}

fn cpu_note(g: &sys::GroupCpu) -> String {
    g.since()
        .iter()
        .map(|(n, c)| format!("{n} {:.0} %", c.max(0.0)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Opens `per_node` connections to `/ws/room/{room}` on each node (users
/// `bench0..` round robin, so each user has a connection on both); all in
/// room index 0. Connections `0..per_node` are node 1's.
fn open_split(load: &mut Load, nodes: &[Server], tokens: &[String], room: &str, per_node: usize) {
    let targets: Vec<Target> = (0..2 * per_node)
        .map(|c| Target {
            path: format!("/ws/room/{room}?token={}", tokens[c % tokens.len()]),
            room: 0,
            addr: Some(nodes[c / per_node].addr),
        })
        .collect();
    let (up, _) = load.open(&targets, 256, Duration::from_secs(60));
    assert_eq!(up as usize, 2 * per_node, "every connection upgraded");
    load.settle(Duration::from_secs(20), |l| {
        l.c.unread >= 2 * per_node as u64
    });
    // Presence crosses the bus too: wait until nothing more arrives.
    settle_quiet(load, Duration::from_millis(500), Duration::from_secs(20));
}

/// Every receiver got every message exactly once: per connection, the
/// message frames it received over the run (`before` → now) against what
/// it should have (all `sent`, less its own for a sender), and ids that
/// only increase (checked as they arrive: `id_errors`). Returns a summary
/// and whether it held.
fn exactly_once(
    name: &str,
    load: &Load,
    before: &[u64],
    senders: usize,
    per_node: usize,
    o: &Outcome,
) -> (String, bool) {
    let n = before.len();
    let mut short = [0u64; 2];
    let mut extra = [0u64; 2];
    let mut bad_conns = [0usize; 2];
    let mut sender_total = 0;
    for (i, &b) in before.iter().enumerate() {
        let got = load.conn_messages(i) - b;
        if i < senders {
            sender_total += got;
            continue;
        }
        let node = i / per_node;
        if got != o.sent {
            bad_conns[node] += 1;
            if got < o.sent {
                short[node] += o.sent - got;
            } else {
                extra[node] += got - o.sent;
            }
        }
    }
    // Senders (round robin) each miss only their own messages.
    let sender_want = o.sent * (senders as u64 - 1);
    let ok = bad_conns == [0, 0] && sender_total == sender_want && load.id_errors == 0;
    let s = format!(
        "{} msgs x {} receivers: node 1 {} frames ({} conns off, {} missing, {} extra), node 2 {} frames ({} conns off, {} missing, {} extra); senders {sender_total} of {sender_want}; {} ids out of order",
        o.sent,
        n - 1,
        o.node_delivered.first().copied().unwrap_or(0),
        bad_conns[0],
        short[0],
        extra[0],
        o.node_delivered.get(1).copied().unwrap_or(0),
        bad_conns[1],
        short[1],
        extra[1],
        load.id_errors
    );
    if !ok {
        eprintln!("  [{name}] EXACTLY-ONCE VIOLATED: {s}");
    }
    (s, ok)
}

/// One room of 1000 connections, 500 on each node, 10 senders on node 1:
/// total deliveries/s and node 2's share (every one of those crossed Redis).
fn cluster_fanout(ctx: &mut Ctx, pg: &Postgres, redis: &Redis) {
    let name = "cluster_fanout";
    let (per_node, senders, window) = (500usize, 10usize, ctx.window);
    eprintln!(
        "[{name}] 2 nodes; 1 room x {} connections ({per_node} per node), {senders} senders on node 1, window {window}",
        2 * per_node
    );
    let nodes = start_cluster(ctx, name, pg, redis);
    let tokens = server::users(nodes[0].addr, 100);
    let mut load = Load::new(nodes[0].addr, 1);
    open_split(&mut load, &nodes, &tokens, "r0", per_node);
    load.track_ids = true;
    let plan = |mode: Mode, warmup: f64, measure: f64, label: &str| Plan {
        senders: vec![((0..senders).collect(), "r0".into())],
        fan: vec![2 * per_node as u64 - 1],
        mode,
        warmup: Duration::from_secs_f64(warmup),
        measure: Duration::from_secs_f64(measure),
        probe: None,
        drain: Duration::from_secs(10),
        label: format!("[{name} {label}]"),
        server_pid: nodes[0].pid,
    };
    let before: Vec<u64> = (0..2 * per_node).map(|i| load.conn_messages(i)).collect();
    let cpu = cluster_cpu(&nodes, pg, redis);
    let x0 = pg.next_xid();
    let o = run(
        &mut load,
        &plan(
            Mode::Flood {
                window,
                by_acks: false,
            },
            1.0,
            ctx.secs as f64,
            "flood",
        ),
    );
    let cpus = cpu_note(&cpu);
    let txs = pg.next_xid().saturating_sub(x0).max(1);
    let (once, ok) = exactly_once(name, &load, &before, senders, per_node, &o);
    let n2 = o.node_deliveries_per_s.get(1).copied().unwrap_or(0.0);
    let n1 = o.node_deliveries_per_s.first().copied().unwrap_or(0.0);
    let total = o.deliveries_per_s;
    ctx.rows.push(
        Row::new(
            name,
            "fan-out throughput, 2 nodes (both)",
            total,
            "deliveries/s",
            format!("{total:.0} deliveries/s"),
        )
        .out(&o)
        .note(format!(
            "{:.0} msgs/s in on node 1; node 1 {n1:.0}/s, node 2 {n2:.0}/s; window {window}, {:.1} s; \
             server CPU column = node 1; whole run: {cpus}; {txs} write transactions ({:.1} msgs each); \
             load generator shares CPU 1 with node 2",
            o.messages_per_s,
            o.secs,
            o.sent as f64 / txs as f64
        )),
    );
    ctx.rows.push(
        Row::new(
            name,
            "cross-node deliveries/s (node 2)",
            n2,
            "deliveries/s",
            format!("{n2:.0} deliveries/s"),
        )
        .out(&o)
        .note(format!(
            "{per_node} receivers on node 2, every message via Redis; {:.0} msgs/s crossed",
            n2 / per_node as f64
        )),
    );
    ctx.rows.push(
        Row::new(
            name,
            "every receiver got every message once",
            if ok { 1.0 } else { 0.0 },
            "",
            if ok { "yes".into() } else { "NO".into() },
        )
        .target("exactly once, in id order", ok)
        .note(once),
    );
    drop(load);
    drop(nodes);
}

/// One room of 100 connections per node, 10 senders on node 1, paced at
/// `HUBBUB_BENCH_CLUSTER_RATE` msgs/s (default 200): send→receive latency
/// on node 1 (the sender's) against node 2 (one Redis hop more).
fn cluster_latency(ctx: &mut Ctx, pg: &Postgres, redis: &Redis) {
    let name = "cluster_latency";
    let (per_node, senders) = (100usize, 10usize);
    let per_sec = env_num("HUBBUB_BENCH_CLUSTER_RATE", 200).max(1) as f64;
    eprintln!(
        "[{name}] 2 nodes; 1 room x {} connections ({per_node} per node), {senders} senders on node 1, {per_sec:.0} msgs/s",
        2 * per_node
    );
    let nodes = start_cluster(ctx, name, pg, redis);
    let tokens = server::users(nodes[0].addr, 100);
    let mut load = Load::new(nodes[0].addr, 1);
    open_split(&mut load, &nodes, &tokens, "lat", per_node);
    load.track_ids = true;
    let plan = |warmup: f64, measure: f64, label: &str| Plan {
        senders: vec![((0..senders).collect(), "lat".into())],
        fan: vec![2 * per_node as u64 - 1],
        mode: Mode::Paced { per_sec },
        warmup: Duration::from_secs_f64(warmup),
        measure: Duration::from_secs_f64(measure),
        probe: None,
        drain: Duration::from_secs(10),
        label: format!("[{name} {label}]"),
        server_pid: nodes[0].pid,
    };
    run(&mut load, &plan(0.0, 1.0, "paced warm-up"));
    load.lat = Hist::default();
    load.lat_node = vec![Hist::default(), Hist::default()];
    load.record_latency = true;
    let before: Vec<u64> = (0..2 * per_node).map(|i| load.conn_messages(i)).collect();
    let cpu = cluster_cpu(&nodes, pg, redis);
    let o = run(&mut load, &plan(0.5, 5.0, "paced"));
    load.record_latency = false;
    let cpus = cpu_note(&cpu);
    let (once, ok) = exactly_once(name, &load, &before, senders, per_node, &o);
    let hs = std::mem::take(&mut load.lat_node);
    let q = |h: &Hist| (h.quantile(0.5), h.quantile(0.99), h.quantile(0.999));
    let (a, b) = (q(&hs[0]), q(&hs[1]));
    let shown = |(p50, p99, p999): (u64, u64, u64)| {
        format!(
            "{} / {} / {}",
            label(p50 as f64),
            label(p99 as f64),
            label(p999 as f64)
        )
    };
    for (k, (h, qs)) in [(&hs[0], a), (&hs[1], b)].into_iter().enumerate() {
        ctx.rows.push(
            Row::new(
                name,
                format!(
                    "latency p50/p99/p999, receivers on node {} ({})",
                    k + 1,
                    if k == 0 { "the sender's" } else { "via Redis" }
                ),
                qs.1 as f64 / 1e6,
                "ms (p99)",
                shown(qs),
            )
            .out(&o)
            .note(format!(
                "{per_sec:.0} msgs/s, {} samples, max {}{}",
                h.n,
                label(h.max as f64),
                if k == 0 {
                    format!("; whole run: {cpus}")
                } else {
                    String::new()
                }
            )),
        );
    }
    let add = |x: u64, y: u64| label(y.saturating_sub(x) as f64);
    ctx.rows.push(
        Row::new(
            name,
            "latency a second node adds (node 2 − node 1, p50 / p99)",
            b.0 as f64 / 1e6 - a.0 as f64 / 1e6,
            "ms (p50)",
            format!("{} / {}", add(a.0, b.0), add(a.1, b.1)),
        )
        .note("differences of the quantiles above"),
    );
    ctx.rows.push(
        Row::new(
            name,
            "every receiver got every message once",
            if ok { 1.0 } else { 0.0 },
            "",
            if ok { "yes".into() } else { "NO".into() },
        )
        .target("exactly once, in id order", ok)
        .note(once),
    );
    let [h1, h2]: [Hist; 2] = hs.try_into().unwrap_or_else(|_| unreachable!());
    ctx.series.push((
        format!("cluster, {per_sec:.0} msgs/s: receivers on the sender's node"),
        h1,
    ));
    ctx.series.push((
        format!("cluster, {per_sec:.0} msgs/s: receivers on the other node"),
        h2,
    ));
    drop(load);
    drop(nodes);
}

// ---- Output -----------------------------------------------------------------

fn machine() -> (String, String) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    (cpu, kernel)
}

/// The commit measured (`abc1234` or `abc1234+dirty`), when git is there.
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(h) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no", "--", "src"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{h}+dirty") } else { h }
        }
        None => "unknown".into(),
    }
}

fn report(ctx: &Ctx, load_start: f64, nice: Option<i32>) {
    let (cpu, kernel) = machine();
    let commit = commit();
    let load_end = sys::loadavg();
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\nhubbub end-to-end results — commit {commit}; {} CPUs ({cpu}), Linux {kernel}, server pinned to 1 core",
        sys::cpus()
    );
    let _ = writeln!(
        t,
        "load average {load_start:.2} at start, {load_end:.2} at end{}; CPU columns in % of one core: softirq = irq + softirq time (charged to no process; on loopback mostly TCP receive work run by the sender's writes), other procs = every other process meanwhile\n",
        nice.map_or(String::new(), |n| format!("; nice {n}"))
    );
    let _ = writeln!(
        t,
        "| scenario | metric | result | target | met | client CPU | server CPU | softirq | other procs | notes |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|---|---|");
    for r in &ctx.rows {
        let pct = |v: Option<f64>| v.map_or("".to_string(), |v| format!("{v:.0} %"));
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {met} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.metric,
            r.shown,
            r.target,
            pct(r.client_cpu),
            pct(r.server_cpu),
            pct(r.irq_cpu),
            pct(r.other_cpu),
            r.note
        );
    }
    println!("{t}");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench-results");
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let rows: Vec<serde_json::Value> = ctx
        .rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "scenario": r.scenario, "metric": r.metric,
                "value": if r.value.is_finite() { serde_json::json!(r.value) } else { serde_json::Value::Null },
                "unit": r.unit, "shown": r.shown, "target": r.target, "met": r.met,
                "client_cpu_percent": r.client_cpu, "server_cpu_percent": r.server_cpu, "other_cpu_percent": r.other_cpu, "softirq_cpu_percent": r.irq_cpu, "notes": r.note,
            })
        })
        .collect();
    let latency: Vec<serde_json::Value> = ctx
        .series
        .iter()
        .map(|(n, h)| serde_json::json!({"series": n, "count": h.n, "p50_ns": h.quantile(0.5), "p90_ns": h.quantile(0.9), "p99_ns": h.quantile(0.99), "p999_ns": h.quantile(0.999), "max_ns": h.max}))
        .collect();
    let json = serde_json::json!({
        "commit": commit,
        "machine": {"cpus": sys::cpus(), "cpu_model": cpu, "kernel": kernel, "rlimit_nofile": ctx.nofile, "loadavg_start": load_start, "loadavg_end": load_end, "nice": nice},
        "results": rows,
        "latency": latency,
    });
    let _ = std::fs::write(
        dir.join("e2e.json"),
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    );
    if !ctx.series.is_empty() {
        let series: Vec<(String, &Hist)> = ctx.series.iter().map(|(n, h)| (n.clone(), h)).collect();
        let _ = std::fs::write(
            dir.join("e2e-latency.svg"),
            svg::cdf_plot("hubbub end-to-end latency (CDF)", &series),
        );
    }
    let _ = std::fs::write(dir.join("e2e.md"), &t);
    eprintln!(
        "wrote {}/e2e.json, e2e.md and e2e-latency.svg",
        dir.display()
    );
}
