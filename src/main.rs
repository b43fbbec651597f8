//! The `hubbub` binary: logging, options (`config::parse_options`), the
//! SQLite backend, then `Server::run`. Nothing per request happens here.
//! `hubbub backup PATH` instead copies the database and exits; `hubbub
//! migrate --from-sqlite PATH --postgres URL` copies it into PostgreSQL.

use std::path::Path;
use std::process::ExitCode;

use hubbub::config::{Parsed, parse_options, usage};
use hubbub::server::Server;
use hubbub::store::migrate;
use hubbub::store::sqlite::{self, Sqlite};

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
    let backend = match Sqlite::open(&opts.db) {
        Ok(b) => b,
        Err(e) => {
            log::error!("cannot open database {}: {e}", opts.db.display());
            return ExitCode::FAILURE;
        }
    };
    let addr = opts.config.addr;
    let mut server = match Server::bind(opts.config, backend) {
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

/// `hubbub migrate`: the counts copied on stdout, or the reason on stderr
/// and exit 1 (nothing was copied: it is one transaction); a bad command
/// line is a usage error.
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
