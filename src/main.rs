//! The `hubbub` binary: logging, options (`config::parse_options`), the
//! checks that must pass before anything is created (the listeners bind,
//! the certificates load, the database's directory is writable), the
//! backend (SQLite, or PostgreSQL with `--postgres`), the bus (Redis with
//! `--redis`), TLS (files or ACME), then `Server::run`. Nothing per request
//! happens here. `hubbub backup PATH` instead copies the database and
//! exits; `hubbub migrate --from-sqlite PATH --postgres URL` copies it into
//! PostgreSQL; `hubbub user …` and `hubbub invite …` manage accounts
//! (`operator`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hubbub::config::{Options, Parsed, VERSION, parse_options, usage};
use hubbub::operator;
use hubbub::redis_bus::RedisBus;
use hubbub::server::Server;
use hubbub::store::postgres::Postgres;
use hubbub::store::sqlite::Sqlite;
use hubbub::store::{Backend, StoreError};
use hubbub::store::{migrate, ops};
use hubbub::tls::acme::{self, Challenges};
use hubbub::tls::{Acceptor, CertStore};
use hubbub::{Bus, LocalOnly};

/// Exit status for a bad flag or variable: the Unix convention for a usage error.
const EXIT_USAGE: u8 = 2;

/// The options as the binary reads them: its arguments, its environment,
/// and the `--config` file from disk.
fn read_options(args: &[String]) -> Result<Parsed, String> {
    parse_options(
        args.iter().cloned(),
        |k| std::env::var(k).ok(),
        |p| std::fs::read_to_string(p),
    )
}

fn main() -> ExitCode {
    // The logger lets everything through; the level is `log`'s global
    // filter, so SIGHUP can raise or lower it.
    let logger = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Trace)
        .with_utc_timestamps();
    if let Err(e) = logger.init() {
        eprintln!("hubbub: cannot start logging: {e}");
    }
    log::set_max_level(log::LevelFilter::Info);
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some(migrate::COMMAND) => return migrate_command(args.into_iter().skip(1)),
        Some(RESTORE_COMMAND) => return restore_command(&args[1..]),
        Some(UNIT_COMMAND) => return print_unit(),
        Some(operator::USER_COMMAND | operator::INVITE_COMMAND) => return operator::run(&args),
        _ => {}
    }
    let opts = match read_options(&args) {
        Ok(Parsed::Run(opts)) => *opts,
        Ok(Parsed::Backup { db, to }) => return backup(&db, &to),
        Ok(Parsed::Help) => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("hubbub {VERSION}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("hubbub: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    log::set_max_level(opts.log_level);
    // Everything that can fail without touching storage is checked first,
    // so a failed start creates no database file.
    let addr = opts.config.addr;
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            log::error!("cannot listen on {addr} (--addr): {e}");
            return ExitCode::FAILURE;
        }
    };
    let plain = match opts.http_addr.map(|a| (a, TcpListener::bind(a))) {
        None => None,
        Some((_, Ok(l))) => Some(l),
        Some((a, Err(e))) => {
            log::error!("cannot listen on {a} (--http-addr): {e}");
            return ExitCode::FAILURE;
        }
    };
    let metrics = match opts.metrics_addr.map(|a| (a, TcpListener::bind(a))) {
        None => None,
        Some((_, Ok(l))) => Some(l),
        Some((a, Err(e))) => {
            log::error!("cannot listen on {a} (--metrics-addr): {e}");
            return ExitCode::FAILURE;
        }
    };
    let tls = match Tls::prepare(&opts) {
        Ok(t) => t,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // TLS to the services: the CA files load now, or the start stops here.
    if let Some(ca) = &opts.postgres_ca
        && let Err(e) = hubbub::tls::services::use_postgres_ca(Some(ca))
    {
        log::error!("--postgres-ca: {e}");
        return ExitCode::FAILURE;
    }
    let redis_tls = match &opts.redis {
        Some(url) if url.starts_with("rediss://") => {
            match hubbub::tls::client_config(opts.redis_ca.as_deref()) {
                Ok(c) => Some(c),
                Err(e) => {
                    log::error!("--redis-ca: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => None,
    };
    let started = Started {
        listener,
        plain,
        metrics,
        tls,
        redis_tls,
        args,
    };
    if let Some(url) = opts.postgres.clone() {
        log_start(&opts, &started, &format!("PostgreSQL at {}", redact(&url)));
        return match open_postgres(&url, opts.postgres_wait) {
            Ok(b) => serve(opts, started, b),
            Err(e) => {
                log::error!("cannot open PostgreSQL at {}: {e}", redact(&url));
                ExitCode::FAILURE
            }
        };
    }
    let db = match database_path(&opts.db) {
        Ok(p) => p,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    log_start(&opts, &started, &format!("SQLite at {}", db.display()));
    if let Err(e) = ops::check_not_in_use(&db) {
        log::error!("{e}");
        return ExitCode::FAILURE;
    }
    match Sqlite::open(&db) {
        // Held while the server runs: `migrate` and `restore` refuse it.
        Ok(b) => match ops::hold(&db) {
            Ok(_held) => serve(opts, started, b),
            Err(e) => {
                log::error!("{e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            log::error!("cannot open the database {}: {e}", db.display());
            ExitCode::FAILURE
        }
    }
}

/// `hubbub restore`: a backup back in place, with the id floor raised.
const RESTORE_COMMAND: &str = "restore";
const RESTORE_USAGE: &str = "\
USAGE:
    hubbub restore BACKUP [--db PATH]     put a `hubbub backup` copy in place of the (stopped)
                                          server's SQLite database (--db or HUBBUB_DB)
    hubbub restore --postgres URL         after pg_restore into URL: raise the id floor

Either way, new messages get ids above every id issued before the restore,
so clients that resume with `since` get what is new (README: Restores).
";

/// `hubbub systemd-unit`: the sandboxed unit, for /etc/systemd/system.
const UNIT_COMMAND: &str = "systemd-unit";
const UNIT: &str = include_str!("hubbub.service");

fn print_unit() -> ExitCode {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(str::to_string))
        .unwrap_or_else(|| "/usr/local/bin/hubbub".into());
    print!("{}", UNIT.replace("/usr/local/bin/hubbub", &exe));
    ExitCode::SUCCESS
}

fn restore_command(args: &[String]) -> ExitCode {
    let mut backup = None;
    let mut db = std::env::var("HUBBUB_DB").ok().filter(|v| !v.is_empty());
    let mut postgres = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{RESTORE_USAGE}");
                return ExitCode::SUCCESS;
            }
            "--db" | "--postgres" => {
                let Some(v) = it.next() else {
                    eprintln!("hubbub restore: {a} needs a value");
                    return ExitCode::from(EXIT_USAGE);
                };
                if a == "--db" {
                    db = Some(v.clone());
                } else {
                    postgres = Some(v.clone());
                }
            }
            other if !other.starts_with('-') && backup.is_none() => {
                backup = Some(other.to_string())
            }
            other => {
                eprintln!("hubbub restore: unexpected {other:?}\n\n{RESTORE_USAGE}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    let done = match (&backup, &postgres) {
        (Some(b), None) => {
            let db = absolute(Path::new(
                db.as_deref().unwrap_or(hubbub::config::DEFAULT_DB),
            ));
            ops::restore_sqlite(Path::new(b), &db).map(|(floor, files)| {
                warn_missing("restore", files);
                format!(
                    "restore: {b} is now {} ({} files); new message ids start at {floor}",
                    db.display(),
                    files.copied
                )
            })
        }
        (None, Some(url)) => ops::restore_postgres(url)
            .map(|next| format!("restore: {}: new message ids start at {next}", redact(url))),
        _ => {
            eprintln!(
                "hubbub restore: a BACKUP file or --postgres URL, not both\n\n{RESTORE_USAGE}"
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match done {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hubbub restore: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Opens PostgreSQL, retrying with backoff for up to `wait`: a database
/// started beside the server (systemd, a compose file) may not accept
/// connections yet. Each failure is logged with its cause (refused, timed
/// out, authentication, TLS) as it happens; the last one is returned.
fn open_postgres(url: &str, wait: Duration) -> Result<Postgres, StoreError> {
    let deadline = Instant::now() + wait;
    let mut pause = PG_RETRY_MIN;
    loop {
        match Postgres::open(url) {
            Ok(b) => return Ok(b),
            Err(e) if Instant::now() + pause < deadline => {
                log::warn!(
                    "PostgreSQL at {} is not ready ({e}); retrying in {pause:?} (--postgres-wait)",
                    redact(url)
                );
                std::thread::sleep(pause);
                pause = (pause * 2).min(PG_RETRY_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The first and the longest pause between PostgreSQL attempts at start.
const PG_RETRY_MIN: Duration = Duration::from_millis(100);
const PG_RETRY_MAX: Duration = Duration::from_secs(2);

/// What was checked and made before storage was opened.
struct Started {
    listener: TcpListener,
    plain: Option<TcpListener>,
    /// `--metrics-addr`.
    metrics: Option<TcpListener>,
    tls: Option<Tls>,
    /// TLS for `rediss://`.
    redis_tls: Option<Arc<rustls::ClientConfig>>,
    /// The command line, read again with the config file on SIGHUP.
    args: Vec<String>,
}

/// TLS from files, or from ACME (the certificate slot, the challenges,
/// and what the ACME thread needs).
struct Tls {
    acceptor: Acceptor,
    acme: Option<(acme::Settings, Arc<CertStore>, Arc<Challenges>)>,
}

impl Tls {
    /// Loads `--tls-cert`/`--tls-key`, or readies ACME for `--tls-domain`;
    /// `None` without either. The error names the file at fault.
    fn prepare(opts: &Options) -> Result<Option<Tls>, String> {
        if let (Some(cert), Some(key)) = (&opts.tls_cert, &opts.tls_key) {
            let acceptor = Acceptor::from_files(cert, key).map_err(|e| format!("TLS: {e}"))?;
            return Ok(Some(Tls {
                acceptor,
                acme: None,
            }));
        }
        if opts.tls_domains.is_empty() {
            return Ok(None);
        }
        let store = Arc::new(CertStore::default());
        let acceptor = Acceptor::with_store(store.clone())?;
        let settings = acme::Settings {
            domains: opts.tls_domains.clone(),
            directory: opts.acme_directory.clone(),
            cache: absolute(&opts.acme_cache),
            ca: opts.acme_ca.clone(),
        };
        Ok(Some(Tls {
            acceptor,
            acme: Some((settings, store, Arc::new(Challenges::default()))),
        }))
    }
}

/// The one line that says what this process is: version, storage,
/// addresses.
fn log_start(opts: &Options, started: &Started, storage: &str) {
    let scheme = if started.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let addr = started
        .listener
        .local_addr()
        .map_or_else(|_| opts.config.addr.to_string(), |a| a.to_string());
    let plain = started
        .plain
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| format!(", plain HTTP on {a}"))
        .unwrap_or_default();
    let file = opts
        .config_file
        .as_ref()
        .map(|f| format!(", config {}", absolute(f).display()))
        .unwrap_or_default();
    log::info!("hubbub {VERSION} starting: {storage}, {scheme} on {addr}{plain}{file}");
}

/// `path` made absolute against the working directory (the start line
/// names it; a relative path would not say which directory).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The database's absolute path, once its directory is known to exist and
/// be writable (SQLite creates the file and its `-wal` and `-shm` beside
/// it). The error names the directory and what is wrong with it.
fn database_path(db: &Path) -> Result<PathBuf, String> {
    use std::os::unix::ffi::OsStrExt;
    let db = absolute(db);
    let dir = db.parent().unwrap_or(Path::new("/"));
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(format!(
                "the database's directory {} is not a directory",
                dir.display()
            ));
        }
        Err(e) => {
            return Err(format!(
                "the database's directory {}: {e} (--db {})",
                dir.display(),
                db.display()
            ));
        }
    }
    let c_dir = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| format!("{}: a path with a NUL byte", dir.display()))?;
    // SAFETY: a valid C string and a mode constant.
    if unsafe { libc::access(c_dir.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!(
            "the database's directory {} is not writable ({e}): SQLite keeps {} and its -wal \
             and -shm files there",
            dir.display(),
            db.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        ));
    }
    Ok(db)
}

/// Starts the loop with `backend` (and the Redis bus when `--redis` is
/// given, TLS when configured), and runs it until a signal.
fn serve(opts: Options, started: Started, backend: impl Backend) -> ExitCode {
    let Started {
        listener,
        plain,
        metrics,
        tls,
        redis_tls,
        args,
    } = started;
    let addr = opts.config.addr;
    let bus: Box<dyn Bus> = match &opts.redis {
        None => Box::new(LocalOnly),
        Some(url) => {
            // The default name is the real address (`--addr …:0` picks a port).
            let name = match (&opts.node_id, listener.local_addr()) {
                (Some(n), _) => n.clone(),
                (None, Ok(a)) => a.to_string(),
                (None, Err(_)) => opts.node_name(),
            };
            match RedisBus::new(url, &opts.redis_channel, &name, redis_tls) {
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
    if let Some(l) = metrics
        && let Err(e) = server.serve_metrics(l)
    {
        log::error!("cannot serve /metrics: {e}");
        return ExitCode::FAILURE;
    }
    // Kept for the life of the loop: dropping it stops the ACME thread.
    let mut _acme = None;
    if let Some(tls) = tls {
        if let Some((settings, store, challenges)) = tls.acme {
            if let Some(p) = plain
                && let Err(e) = server.serve_plain(p, challenges.clone())
            {
                log::error!("cannot serve plain HTTP: {e}");
                return ExitCode::FAILURE;
            }
            match acme::Manager::start(settings, store, challenges) {
                Ok(m) => _acme = Some(m),
                Err(e) => {
                    log::error!("{e}");
                    return ExitCode::FAILURE;
                }
            }
        } else if let Some(p) = plain
            && let Err(e) = server.serve_plain(p, Arc::new(Challenges::default()))
        {
            log::error!("cannot serve plain HTTP: {e}");
            return ExitCode::FAILURE;
        }
        server.serve_tls(tls.acceptor);
    }
    // SIGHUP: the log level again from the flags, environment and file.
    server.on_reload(Box::new(move || match read_options(&args) {
        Ok(Parsed::Run(o)) => {
            log::set_max_level(o.log_level);
            log::info!("log level {}", o.log_level);
        }
        Ok(_) => {}
        Err(e) => log::error!("reload: {e}; keeping the current settings"),
    }));
    if let Err(e) = server.handle_signals() {
        log::error!("cannot handle SIGINT/SIGTERM/SIGHUP: {e}");
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
    match ops::backup(db, to) {
        Ok((stats, files)) => {
            warn_missing("backup", files);
            println!(
                "backup: wrote {} ({} messages, {} users, {} files)",
                to.display(),
                stats.messages,
                stats.users,
                files.copied
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hubbub backup: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Says on stderr that the database names blobs its file directory does
/// not hold (lost before this command ran: it copies what there is).
fn warn_missing(command: &str, files: ops::Copied) {
    if files.missing > 0 {
        eprintln!(
            "hubbub {command}: warning: {} files the database names were not found; \
             those downloads will fail",
            files.missing
        );
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
    if let Err(e) = ops::check_not_in_use(&args.from) {
        eprintln!("hubbub migrate: {e}; nothing was copied");
        return ExitCode::FAILURE;
    }
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
