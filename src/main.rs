//! The `hubbub` binary: logging, options (`config::parse_options`), the
//! backend (SQLite, or PostgreSQL with `--postgres`), the bus (Redis with
//! `--redis`), then `Server::run`. Nothing per request happens here.
//! `hubbub backup PATH` instead copies the database and exits; `hubbub
//! migrate --from-sqlite PATH --postgres URL` copies it into PostgreSQL.

use std::path::Path;
use std::process::ExitCode;

use hubbub::config::{Options, Parsed, parse_options, usage};
use hubbub::redis_bus::RedisBus;
use hubbub::server::Server;
use hubbub::store::Backend;
use hubbub::store::migrate;
use hubbub::store::postgres::Postgres;
use hubbub::store::sqlite::{self, Sqlite};
use hubbub::{Bus, LocalOnly};

/// Exit status for a bad flag or variable: the Unix convention for a usage error.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let logger = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Info)
        .env()
        .with_utc_timestamps();
    if let Err(e) = logger.init() {
        eprintln!("hubbub: cannot start logging: {e}");
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == migrate::COMMAND) {
        return migrate_command(args.into_iter().skip(1));
    }
    let opts = match parse_options(args, |k| std::env::var(k).ok()) {
        Ok(Parsed::Run(opts)) => *opts,
        Ok(Parsed::Backup { db, to }) => return backup(&db, &to),
        Ok(Parsed::Help) => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("hubbub: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Some(url) = opts.postgres.clone() {
        return match Postgres::open(&url) {
            Ok(b) => serve(opts, b),
            Err(e) => {
                log::error!("cannot open PostgreSQL at {}: {e}", redact(&url));
                ExitCode::FAILURE
            }
        };
    }
    match Sqlite::open(&opts.db) {
        Ok(b) => serve(opts, b),
        Err(e) => {
            log::error!("cannot open database {}: {e}", opts.db.display());
            ExitCode::FAILURE
        }
    }
}

/// Binds, starts the loop with `backend` (and the Redis bus when
/// `--redis` is given), and runs it until a signal.
fn serve(opts: Options, backend: impl Backend) -> ExitCode {
    let addr = opts.config.addr;
    let listener = match std::net::TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            log::error!("cannot start on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bus: Box<dyn Bus> = match &opts.redis {
        None => Box::new(LocalOnly),
        Some(url) => {
            // The default name is the real address (`--addr …:0` picks a port).
            let name = match (&opts.node_id, listener.local_addr()) {
                (Some(n), _) => n.clone(),
                (None, Ok(a)) => a.to_string(),
                (None, Err(_)) => opts.node_name(),
            };
            match RedisBus::new(url, &opts.redis_channel, &name) {
                Ok(b) => Box::new(b),
                Err(e) => {
                    log::error!("cannot use Redis at {}: {e}", redact(url));
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let mut server = match Server::start(listener, opts.config, backend, bus) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot start on {addr}: {e}");
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

/// A database URL as it may be logged: without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// `hubbub backup`: one line on stdout saying what was written, or the
/// reason on stderr and exit 1 (not a usage error: the command was right,
/// the copy could not be made).
fn backup(db: &Path, to: &Path) -> ExitCode {
    match sqlite::backup(db, to) {
        Ok(stats) => {
            println!(
                "backup: wrote {} ({} messages, {} users)",
                to.display(),
                stats.messages,
                stats.users
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hubbub backup: {e}");
            ExitCode::FAILURE
        }
    }
}

fn migrate_command(args: impl Iterator<Item = String>) -> ExitCode {
    let args = match migrate::parse_args(args) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{}", migrate::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("hubbub migrate: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match migrate::migrate(&args.from, &args.postgres) {
        Ok(stats) => {
            println!(
                "migrate: copied {} into PostgreSQL: {stats}",
                args.from.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hubbub migrate: {e}; nothing was copied");
            ExitCode::FAILURE
        }
    }
}
