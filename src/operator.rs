//! The operator's command line: `hubbub user …` and `hubbub invite …`,
//! people and invites without SQL, on a stopped or a running server.
//!
//! Each command opens the database itself (the SQLite file, or PostgreSQL)
//! and makes the same [`AccountWrite`] the admin API makes, with its audit
//! entry (actor: none, the operator) and its change-log row, in one
//! transaction. A running server reads the change log every second
//! (`ACCOUNT_POLL`), so a grant, a ban or a password reset takes effect on
//! every node within about a second, sockets closed included: nothing talks
//! to the server, and nothing needs it to be up. SQLite in WAL mode takes a
//! second writer for the moment of one transaction (it waits up to the
//! busy timeout for the server's batch), which is why this works beside the
//! server's one-server-per-file lock: that lock keeps out a second
//! *server*, not a short writer.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::auth::password;
use crate::clock;
use crate::config::{
    DELETED_USER_PREFIX, INVITE_TTL_DEFAULT, INVITE_TTL_MAX, INVITE_USES_MAX, PBKDF2_DEFAULT,
    PBKDF2_FLOOR,
};
use crate::store::postgres::Postgres;
use crate::store::sqlite::Sqlite;
use crate::store::{
    Account, AccountAnswer, AccountRead, AccountRefusal, AccountWrite, Audit, Backend, Conflict,
    Desk, InviteRow, Reply, Request, Role, StoreError, Ticket, UserRow,
};
use crate::users::{reserved_username, valid_username};

/// The first word that selects this module.
pub const USER_COMMAND: &str = "user";
pub const INVITE_COMMAND: &str = "invite";

pub const USAGE: &str = "\
USAGE (each also takes --db PATH or --postgres URL, or HUBBUB_DB / HUBBUB_POSTGRES):
    hubbub user list                        every account: name, role, banned, deleted
    hubbub user create USERNAME [--email E] [--role ROLE] [--pbkdf2-iterations N]
                                            reads the password from standard input;
                                            the first account is an admin whatever ROLE says
    hubbub user delete USERNAME             as the user's own deletion: sockets closed, the
                                            name freed, messages kept under deleted-user-ID
    hubbub user grant USERNAME ROLE         ROLE: admin, moderator or member
    hubbub user ban USERNAME [--reason R]   close their sockets, refuse their login and tokens
    hubbub user unban USERNAME
    hubbub user set-password USERNAME [--pbkdf2-iterations N]
                                            reads the new password from standard input;
                                            every session of the user ends
    hubbub user end-sessions USERNAME       log the user out everywhere
    hubbub invite create [--uses N] [--expires-in SECONDS]
    hubbub invite list
    hubbub invite revoke CODE

Works on a stopped or a running server: a running one (every node of a
cluster) applies the change within about a second.
";

/// Exit status for a bad command line.
const EXIT_USAGE: u8 = 2;

/// What to open.
enum Place {
    Sqlite(PathBuf),
    Postgres(String),
}

/// `hubbub user …` or `hubbub invite …` (`args` from the subcommand on).
pub fn run(args: &[String]) -> ExitCode {
    match parse(args) {
        Err(e) => {
            eprintln!("hubbub {}: {e}\n\n{USAGE}", args.join(" "));
            ExitCode::from(EXIT_USAGE)
        }
        Ok(None) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Some((place, words, flags))) => match open(&place).and_then(|mut db| {
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            act(&mut *db, &words, &flags)
        }) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("hubbub {}: {e}", args[0]);
                ExitCode::FAILURE
            }
        },
    }
}

/// Options taking a value, besides `--db` and `--postgres`.
const VALUED: [&str; 6] = [
    "--reason",
    "--uses",
    "--expires-in",
    "--pbkdf2-iterations",
    "--email",
    "--role",
];

type Parsed = (Place, Vec<String>, Vec<(String, String)>);

fn parse(args: &[String]) -> Result<Option<Parsed>, String> {
    let mut db = std::env::var("HUBBUB_DB").ok().filter(|v| !v.is_empty());
    let mut pg = std::env::var("HUBBUB_POSTGRES")
        .ok()
        .filter(|v| !v.is_empty());
    let (mut words, mut flags) = (Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "--db" | "--postgres" => {
                let v = it.next().ok_or(format!("{a} needs a value"))?;
                if a == "--db" {
                    db = Some(v.clone());
                } else {
                    pg = Some(v.clone());
                }
            }
            f if VALUED.contains(&f) => {
                let v = it.next().ok_or(format!("{a} needs a value"))?;
                flags.push((f.to_string(), v.clone()));
            }
            f if f.starts_with("--") => return Err(format!("unknown option {f}")),
            w => words.push(w.to_string()),
        }
    }
    let place = match pg {
        Some(url) => Place::Postgres(url),
        None => Place::Sqlite(db.unwrap_or_else(|| "./hubbub.db".into()).into()),
    };
    Ok(Some((place, words, flags)))
}

fn open(place: &Place) -> Result<Box<dyn Backend>, String> {
    match place {
        Place::Sqlite(path) => {
            // Opening would create an empty database: a typo in --db must
            // not look like "no such user".
            if !path.exists() {
                return Err(format!(
                    "no database at {} (--db); start the server once first",
                    path.display()
                ));
            }
            Sqlite::open(path)
                .map(|b| Box::new(b) as Box<dyn Backend>)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))
        }
        Place::Postgres(url) => Postgres::open(url)
            .map(|b| Box::new(b) as Box<dyn Backend>)
            .map_err(|e| format!("cannot open PostgreSQL: {e}")),
    }
}

fn flag<'a>(flags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    flags
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Carries out one command; the text to print.
fn act(db: &mut dyn Backend, words: &[&str], flags: &[(String, String)]) -> Result<String, String> {
    let now = clock::now_ms();
    match words {
        ["user", "list"] => {
            let users = users(db)?;
            let mut out = String::new();
            for u in &users {
                let a = &u.account;
                out.push_str(&format!(
                    "{}\t{}\t{}{}\n",
                    u.username,
                    a.role.as_str(),
                    if a.ban.is_some() { "banned" } else { "-" },
                    if a.deleted_ms.is_some() {
                        "\tdeleted"
                    } else {
                        ""
                    },
                ));
            }
            Ok(out)
        }
        ["user", "create", name] => create(db, name, flags),
        ["user", "delete", name] => {
            let u = user(db, name)?;
            write(
                db,
                AccountWrite::DeleteUser {
                    user: u.id,
                    at_ms: now,
                },
                audit("delete_user", &u, ""),
            )?;
            Ok(format!(
                "{} is deleted; their messages stay, under {}\n",
                u.username,
                crate::store::accounts::deleted_name(u.id)
            ))
        }
        ["user", "grant", name, role] => {
            let role = Role::parse(role)
                .ok_or_else(|| format!("no role {role:?}: admin, moderator or member"))?;
            let u = user(db, name)?;
            write(
                db,
                AccountWrite::SetRole { user: u.id, role },
                audit(crate::http::admin::role_action(role), &u, ""),
            )?;
            Ok(format!("{} is now {}\n", u.username, role.as_str()))
        }
        ["user", "ban", name] => {
            let reason = flag(flags, "--reason").unwrap_or("").to_string();
            let u = user(db, name)?;
            let entry = audit("ban", &u, &reason);
            write(
                db,
                AccountWrite::Ban {
                    user: u.id,
                    reason,
                    at_ms: now,
                },
                entry,
            )?;
            Ok(format!("{} is banned\n", u.username))
        }
        ["user", "unban", name] => {
            let u = user(db, name)?;
            write(
                db,
                AccountWrite::Unban { user: u.id },
                audit("unban", &u, ""),
            )?;
            Ok(format!("{} is no longer banned\n", u.username))
        }
        ["user", "set-password", name] => {
            let u = user(db, name)?;
            let new = read_password()?;
            let hash = password::hash(&new, iterations(flags)?);
            write(
                db,
                AccountWrite::SetPassword {
                    user: u.id,
                    password: hash,
                    keep: None,
                    at_ms: now,
                },
                audit("reset_password", &u, ""),
            )?;
            Ok(format!(
                "{}'s password is set; their sessions ended\n",
                u.username
            ))
        }
        ["user", "end-sessions", name] => {
            let u = user(db, name)?;
            write(
                db,
                AccountWrite::EndSessions {
                    user: u.id,
                    except: None,
                    at_ms: now,
                },
                audit("end_sessions", &u, ""),
            )?;
            Ok(format!("{}'s sessions ended\n", u.username))
        }
        ["invite", "create"] => {
            let uses = match flag(flags, "--uses") {
                None => 1,
                Some(v) => v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=INVITE_USES_MAX).contains(n))
                    .ok_or(format!("--uses takes 1-{INVITE_USES_MAX}"))?,
            };
            let max = INVITE_TTL_MAX.as_secs();
            let ttl = match flag(flags, "--expires-in") {
                None => INVITE_TTL_DEFAULT.as_secs(),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or(format!("--expires-in takes 1-{max} seconds"))?,
            };
            let row = InviteRow {
                code: crate::http::admin::invite_code(),
                created_by: None,
                created_ms: now,
                expires_ms: now + ttl as i64 * 1000,
                uses,
                used: 0,
                revoked_ms: None,
            };
            let text = format!(
                "{}\tuses {}\texpires {}\n",
                row.code,
                uses,
                rfc3339(row.expires_ms)
            );
            let entry = Audit {
                at_ms: now,
                actor: None,
                action: "create_invite",
                target: row.code.clone(),
                reason: String::new(),
            };
            write(db, AccountWrite::PutInvite(row), Some(entry))?;
            Ok(text)
        }
        ["invite", "list"] => {
            let read = AccountRead::Invites {
                by: None,
                now_ms: now,
            };
            match one(
                db,
                Request::AccountRead {
                    ticket: TICKET,
                    read,
                },
            )? {
                Some(Reply::AccountRead {
                    answer: AccountAnswer::Invites(rows),
                    ..
                }) => Ok(rows
                    .iter()
                    .map(|r| {
                        format!(
                            "{}\tused {}/{}\texpires {}\n",
                            r.code,
                            r.used,
                            r.uses,
                            rfc3339(r.expires_ms)
                        )
                    })
                    .collect()),
                other => Err(format!("storage answered {other:?}")),
            }
        }
        ["invite", "revoke", code] => {
            let entry = Audit {
                at_ms: now,
                actor: None,
                action: "revoke_invite",
                target: code.to_string(),
                reason: String::new(),
            };
            let w = AccountWrite::RevokeInvite {
                code: code.to_string(),
                by: None,
                at_ms: now,
            };
            write(db, w, Some(entry))?;
            Ok(format!("{code} is revoked\n"))
        }
        _ => Err(format!("unknown command {:?}; see --help", words.join(" "))),
    }
}

/// `hubbub user create`: signup's checks and hash, the row stored with
/// its audit entry and its change-log row (a running server learns of
/// the user from it). Invites and the signup mode are for strangers; the
/// operator needs neither.
fn create(db: &mut dyn Backend, name: &str, flags: &[(String, String)]) -> Result<String, String> {
    if !valid_username(name) {
        return Err(format!(
            "bad username {name:?}: 3-32 characters of letters, digits, '_', '.' or '-'"
        ));
    }
    if reserved_username(name) {
        return Err(format!(
            "bad username {name:?}: usernames may not start with {DELETED_USER_PREFIX} \
             (deleted accounts are called that)"
        ));
    }
    let email = flag(flags, "--email").unwrap_or("").to_string();
    if !email.is_empty() && !crate::http::routes::valid_email(&email) {
        return Err(format!(
            "bad --email {email:?}: it must contain exactly one '@'"
        ));
    }
    let role = match flag(flags, "--role") {
        None => Role::Member,
        Some(r) => {
            Role::parse(r).ok_or_else(|| format!("no role {r:?}: admin, moderator or member"))?
        }
    };
    let iterations = iterations(flags)?;
    let users = users(db)?;
    if users.iter().any(|u| u.username.eq_ignore_ascii_case(name)) {
        return Err(format!("the username {name:?} is taken"));
    }
    let password = password::hash(&read_password()?, iterations);
    let now = clock::now_ms();
    let row = UserRow {
        // Only the key of the reply: the database numbers the user.
        id: users.last().map_or(1, |u| u.id.saturating_add(1)),
        username: name.to_string(),
        email,
        password,
        created_ms: now,
        last_seen_ms: None,
        account: Account {
            role,
            ..Account::default()
        },
    };
    let reason = match role {
        Role::Member => String::new(),
        r => format!("as {}", r.as_str()),
    };
    let entry = Audit {
        at_ms: now,
        actor: None,
        action: "create_user",
        target: row.username.clone(),
        reason,
    };
    let req = Request::PutUser {
        row,
        invite: None,
        audit: Some(entry),
    };
    match one(db, req)? {
        Some(Reply::UserStored { role, .. }) => {
            Ok(format!("{name} is created, as {}\n", role.as_str()))
        }
        Some(Reply::UserFailed {
            conflict: Some(Conflict::Email),
            ..
        }) => Err(format!(
            "the email {:?} is taken",
            flag(flags, "--email").unwrap_or("")
        )),
        Some(Reply::UserFailed {
            conflict: Some(_), ..
        }) => Err(format!("the username {name:?} is taken")),
        other => Err(format!("storage answered {other:?}")),
    }
}

/// The ticket of every request here: nobody else shares the connection.
const TICKET: Ticket = Ticket {
    desk: Desk::Http,
    seq: 1,
};

fn rfc3339(ms: i64) -> String {
    let mut buf = [0u8; clock::RFC3339_LEN];
    clock::rfc3339_into(ms, &mut buf).to_string()
}

fn audit(action: &'static str, target: &UserRow, reason: &str) -> Option<Audit> {
    Some(Audit {
        at_ms: clock::now_ms(),
        actor: None,
        action,
        target: target.username.clone(),
        reason: reason.to_string(),
    })
}

fn store_error(e: StoreError) -> String {
    format!("storage: {e}")
}

/// One request in a transaction of its own.
fn one(db: &mut dyn Backend, req: Request) -> Result<Option<Reply>, String> {
    db.begin().map_err(store_error)?;
    match db.execute(&req) {
        Ok(reply) => {
            db.commit().map_err(store_error)?;
            Ok(reply)
        }
        Err(e) => {
            db.rollback();
            Err(store_error(e))
        }
    }
}

fn write(db: &mut dyn Backend, write: AccountWrite, audit: Option<Audit>) -> Result<(), String> {
    let req = Request::Account {
        ticket: TICKET,
        write,
        audit,
    };
    match one(db, req)? {
        Some(Reply::AccountWritten { outcome: Ok(_), .. }) => Ok(()),
        Some(Reply::AccountWritten {
            outcome: Err(refusal),
            ..
        }) => Err(match refusal {
            AccountRefusal::NoSuchUser => "no such user".into(),
            AccountRefusal::NoSuchSession => "no such session".into(),
            AccountRefusal::NoSuchInvite => "no such invite (or it is revoked)".into(),
            AccountRefusal::LastAdmin => {
                "refused: that would leave the server without an admin".into()
            }
        }),
        other => Err(format!("storage answered {other:?}")),
    }
}

fn users(db: &mut dyn Backend) -> Result<Vec<UserRow>, String> {
    let mut users = db.load().map_err(store_error)?.users;
    users.sort_by_key(|u| u.id);
    Ok(users)
}

/// The live account called `name` (any case).
fn user(db: &mut dyn Backend, name: &str) -> Result<UserRow, String> {
    users(db)?
        .into_iter()
        .find(|u| u.username.eq_ignore_ascii_case(name) && u.account.deleted_ms.is_none())
        .ok_or_else(|| format!("no user called {name:?}"))
}

/// `--pbkdf2-iterations` (or `HUBBUB_PBKDF2_ITERATIONS`), as the server
/// takes it: the strength a new hash is made with.
fn iterations(flags: &[(String, String)]) -> Result<u32, String> {
    let env = std::env::var("HUBBUB_PBKDF2_ITERATIONS").ok();
    match flag(flags, "--pbkdf2-iterations").or(env.as_deref()) {
        None => Ok(PBKDF2_DEFAULT),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= PBKDF2_FLOOR)
            .ok_or(format!(
                "--pbkdf2-iterations takes a number of at least {PBKDF2_FLOOR}"
            )),
    }
}

/// One line of standard input, without its line end, checked as signup
/// checks a password.
fn read_password() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    let p = line.trim_end_matches(['\r', '\n']).to_string();
    if !crate::http::routes::valid_password(&p) {
        return Err("the password must be 8-128 characters (read from standard input)".into());
    }
    Ok(p)
}
