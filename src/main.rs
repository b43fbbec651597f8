//! The `hubbub` binary: flags and environment into a `Config`, logging,
//! then `Server::run`. Nothing per request happens here.

use std::path::PathBuf;
use std::process::ExitCode;

use hubbub::config::{Config, PBKDF2_FLOOR, STORE_QUEUE_MIN};
use hubbub::server::Server;

const USAGE: &str = "\
hubbub: a small, fast, self-hostable real-time chat server

USAGE:
    hubbub [OPTIONS]

OPTIONS:
    --addr ADDR              listen address [env HUBBUB_ADDR] (default 127.0.0.1:8080)
    --db PATH                SQLite file, created and migrated on start [env HUBBUB_DB] (default ./hubbub.db)
    --echo                   also serve GET /ws/echo (WebSocket echo, for Autobahn and benchmarks)
    --rate-limit N           chat frames per second per connection, burst 2N; 0 = off [env HUBBUB_RATE_LIMIT] (default 20)
    --pbkdf2-iterations N    PBKDF2 iterations for new passwords, at least 1000 [env HUBBUB_PBKDF2_ITERATIONS] (default 600000)
    --store-queue N          storage requests in flight at most; chat reading pauses above half [env HUBBUB_STORE_QUEUE] (default 65536)
    --hash-threads N         password hashing threads, at low priority (default: cores - 1, 1 to 4)
    --static-dir DIR         serve the web client from DIR instead of the embedded copy (development)
    -h, --help               print this help

ENVIRONMENT:
    HUBBUB_JWT_SECRET        HS256 secret; when unset one is generated once and kept in the database
    RUST_LOG                 log level: error, warn, info (default), debug, trace
";

fn parse_args() -> Result<Config, String> {
    let mut c = Config::default();
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(v) = env("HUBBUB_ADDR") {
        c.addr = v
            .parse()
            .map_err(|_| format!("HUBBUB_ADDR: not an address: {v}"))?;
    }
    if let Some(v) = env("HUBBUB_DB") {
        c.db = PathBuf::from(v);
    }
    if let Some(v) = env("HUBBUB_RATE_LIMIT") {
        c.rate_limit = v
            .parse()
            .map_err(|_| format!("HUBBUB_RATE_LIMIT: not a number: {v}"))?;
    }
    if let Some(v) = env("HUBBUB_PBKDF2_ITERATIONS") {
        c.pbkdf2_iterations = v
            .parse()
            .map_err(|_| format!("HUBBUB_PBKDF2_ITERATIONS: not a number: {v}"))?;
    }
    if let Some(v) = env("HUBBUB_STORE_QUEUE") {
        c.store_queue = v
            .parse()
            .map_err(|_| format!("HUBBUB_STORE_QUEUE: not a number: {v}"))?;
    }
    c.jwt_secret = env("HUBBUB_JWT_SECRET").map(String::into_bytes);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or(format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--addr" => {
                let v = value("--addr")?;
                c.addr = v
                    .parse()
                    .map_err(|_| format!("--addr: not an address: {v}"))?;
            }
            "--db" => c.db = PathBuf::from(value("--db")?),
            "--echo" => c.echo = true,
            "--rate-limit" => {
                let v = value("--rate-limit")?;
                c.rate_limit = v
                    .parse()
                    .map_err(|_| format!("--rate-limit: not a number: {v}"))?;
            }
            "--pbkdf2-iterations" => {
                let v = value("--pbkdf2-iterations")?;
                c.pbkdf2_iterations = v
                    .parse()
                    .map_err(|_| format!("--pbkdf2-iterations: not a number: {v}"))?;
            }
            "--hash-threads" => {
                let v = value("--hash-threads")?;
                c.hash_threads = v
                    .parse()
                    .map_err(|_| format!("--hash-threads: not a number: {v}"))?;
            }
            "--store-queue" => {
                let v = value("--store-queue")?;
                c.store_queue = v
                    .parse()
                    .map_err(|_| format!("--store-queue: not a number: {v}"))?;
            }
            "--static-dir" => c.static_dir = Some(PathBuf::from(value("--static-dir")?)),
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    c.store_queue = c.store_queue.max(STORE_QUEUE_MIN);
    if c.pbkdf2_iterations < PBKDF2_FLOOR {
        log::warn!(
            "--pbkdf2-iterations {} is below the floor; using {PBKDF2_FLOOR}",
            c.pbkdf2_iterations
        );
        c.pbkdf2_iterations = PBKDF2_FLOOR;
    }
    Ok(c)
}

fn main() -> ExitCode {
    let logger = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Info)
        .env()
        .with_utc_timestamps();
    if let Err(e) = logger.init() {
        eprintln!("hubbub: cannot start logging: {e}");
    }
    let config = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hubbub: {e}");
            return ExitCode::from(2);
        }
    };
    let backend = match hubbub::store::sqlite::Sqlite::open(&config.db) {
        Ok(b) => b,
        Err(e) => {
            log::error!("cannot open database {}: {e}", config.db.display());
            return ExitCode::FAILURE;
        }
    };
    let mut server = match Server::bind(config.clone(), backend) {
        Ok(s) => s,
        Err(e) => {
            log::error!(
                "cannot start on {} with {}: {e}",
                config.addr,
                config.db.display()
            );
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = server.handle_signals() {
        log::error!("cannot handle SIGINT/SIGTERM: {e}");
        return ExitCode::FAILURE;
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}
