//! The account statements on PostgreSQL, SQLite's (`sqlite/accounts.rs`)
//! statement for statement: signups with their invite and change-log
//! entry, every [`AccountWrite`], the account reads, and what `load` reads
//! of accounts. Each write runs in the request's savepoint (it may fail
//! alone). They are rare, so they are not among the prepared statements.
//!
//! The first account of an empty database becomes admin; two nodes
//! signing up the first two users at once both see an empty table, so that
//! case alone takes [`FIRST_USER_LOCK`] and looks again. (Only then: a
//! signup on a server with users takes no lock that a message's append
//! lock could cross.)

use postgres::Client;

use super::conn::{Fail, Res, blob, check_text, opt_user_id, user_id};
use crate::clock;
use crate::config::{ACCOUNT_CHANGES_KEPT, INVITES_LISTED_MAX, SESSIONS_LISTED_MAX};
use crate::store::accounts::{LogKind, RECENT_CHANGES, deleted_name};
use crate::store::{
    Account, AccountAnswer, AccountNews, AccountRead, AccountRefusal, AccountSettings,
    AccountWrite, AccountsSnapshot, Audit, AuditRow, Ban, Conflict, Ended, InviteRow, PasswordHash,
    Reply, Role, RoomNews, SessionRow, Sid, UserId, UserRow, Who,
};

/// The advisory lock a signup takes when the users table looks empty
/// ("hubfst" in ASCII).
const FIRST_USER_LOCK: i64 = 0x6875_6266_7374;

/// The columns [`user_row`] reads, in its order.
pub(super) const USER_COLUMNS: &str = "id, username, email, pw_iter, pw_salt, pw_hash, created_ms, \
     last_seen_ms, role, banned_ms, ban_reason, deleted_ms, display_name, status, \
     sessions_after_ms, version, avatar_file";

/// A `users` row selected as [`USER_COLUMNS`].
pub(super) fn user_row(r: &postgres::Row) -> Res<UserRow> {
    Ok(UserRow {
        id: user_id(r.get(0))?,
        username: r.get(1),
        email: r.get(2),
        password: PasswordHash {
            iterations: u32::try_from(r.get::<_, i64>(3))
                .map_err(|_| Fail::Data("iteration count out of range".into()))?,
            salt: blob(r.get(4))?,
            hash: blob(r.get(5))?,
        },
        created_ms: r.get(6),
        last_seen_ms: r.get(7),
        account: Account {
            // A role this binary does not know reads as the least.
            role: Role::parse(r.get(8)).unwrap_or_default(),
            ban: r.get::<_, Option<i64>>(9).map(|at_ms| Ban {
                at_ms,
                reason: r.get::<_, Option<String>>(10).unwrap_or_default(),
            }),
            deleted_ms: r.get(11),
            display_name: r.get(12),
            status: r.get(13),
            sessions_after_ms: r.get(14),
            version: r.get::<_, i64>(15) as u64,
            avatar: r.get::<_, Option<i64>>(16).map(|f| f as u64),
        },
    })
}

fn user_by_id(c: &mut Client, id: UserId) -> Res<Option<UserRow>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    c.query_opt(&sql, &[&i64::from(id)])?
        .as_ref()
        .map(user_row)
        .transpose()
}

/// The user called `name` (folded as the unique index folds, ASCII only:
/// the username rule, so the index is used), or with this id.
pub(super) fn find_user(c: &mut Client, who: &Who) -> Res<Option<UserRow>> {
    let name = match who {
        Who::Id(id) => return user_by_id(c, *id),
        Who::Name(name) => name,
    };
    check_text(&[Some(name)])?;
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users \
         WHERE lower(username COLLATE \"C\") = lower($1 COLLATE \"C\")"
    );
    c.query_opt(&sql, &[name])?
        .as_ref()
        .map(user_row)
        .transpose()
}

/// A write outside the account requests changed what others see of
/// `user` (their avatar): the row's version goes up and the change log
/// names it, so every node reads it back as it does a new display name.
pub(super) fn touched(c: &mut Client, user: UserId, at_ms: i64) -> Res<()> {
    if bump(c, user)? {
        log_change(c, at_ms, LogKind::User, Some(user), None, None)?;
    }
    Ok(())
}

/// A change-log row, for every node's poll; old ones are dropped.
fn log_change(
    c: &mut Client,
    at_ms: i64,
    kind: LogKind,
    user: Option<UserId>,
    sid: Option<Sid>,
    room: Option<&str>,
) -> Res<i64> {
    let id: i64 = c
        .query_one(
            "INSERT INTO account_changes (at_ms, kind, user_id, sid, room)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                &at_ms,
                &kind.as_str(),
                &user.map(i64::from),
                &sid.map(|s| s.to_string()),
                &room,
            ],
        )?
        .get(0);
    c.execute(
        "DELETE FROM account_changes WHERE at_ms < $1 AND id < $2",
        &[&(at_ms - ACCOUNT_CHANGES_KEPT.as_millis() as i64), &id],
    )?;
    Ok(id)
}

/// `PutUser`: SQLite's rule (`sqlite/accounts.rs`); a taken name or
/// email is the unique index's error, answered by the caller.
pub(super) fn put_user(
    c: &mut Client,
    row: &UserRow,
    invite: Option<&str>,
    audit: Option<&Audit>,
) -> Res<Reply> {
    check_text(&[
        Some(&row.username),
        Some(&row.email),
        row.account.display_name.as_deref(),
        Some(&row.account.status),
        invite,
    ])?;
    if let Some(code) = invite {
        let spent = c.execute(
            "UPDATE invites SET used = used + 1 WHERE code = $1 AND revoked_ms IS NULL
             AND used < uses AND expires_ms > $2",
            &[&code, &row.created_ms],
        )?;
        if spent == 0 {
            return Ok(Reply::UserFailed {
                key: row.id,
                conflict: Some(Conflict::Invite),
            });
        }
    }
    let empty = "SELECT NOT EXISTS (SELECT 1 FROM users)";
    let mut first: bool = c.query_one(empty, &[])?.get(0);
    if first {
        c.execute("SELECT pg_advisory_xact_lock($1)", &[&FIRST_USER_LOCK])?;
        first = c.query_one(empty, &[])?.get(0);
    }
    let role = if first { Role::Admin } else { row.account.role };
    let id: i64 = c
        .query_one(
            "INSERT INTO users (username, email, pw_iter, pw_salt, pw_hash, created_ms,
                                last_seen_ms, role, display_name, status)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            &[
                &row.username,
                &row.email,
                &i64::from(row.password.iterations),
                &&row.password.salt[..],
                &&row.password.hash[..],
                &row.created_ms,
                &row.last_seen_ms,
                &role.as_str(),
                &row.account.display_name,
                &row.account.status,
            ],
        )?
        .get(0);
    let id = user_id(id)?;
    if let Some(a) = audit {
        write_audit(c, a)?;
    }
    log_change(c, row.created_ms, LogKind::User, Some(id), None, None)?;
    Ok(Reply::UserStored {
        key: row.id,
        id,
        role,
    })
}

/// Admins not deleted. Their rows stay locked to the commit, so two
/// admins demoting (or deleting) each other at once on two nodes cannot
/// both pass the last-admin check: the second counts after the first.
fn admins(c: &mut Client) -> Res<i64> {
    Ok(c.query_one(
        "SELECT COUNT(*) FROM (SELECT id FROM users WHERE role = 'admin'
                                   AND deleted_ms IS NULL FOR UPDATE) a",
        &[],
    )?
    .get(0))
}

/// `user`'s role, if the user exists and is not deleted.
fn live_role(c: &mut Client, user: UserId) -> Res<Option<Role>> {
    Ok(c.query_opt(
        "SELECT role FROM users WHERE id = $1 AND deleted_ms IS NULL",
        &[&i64::from(user)],
    )?
    .map(|r| Role::parse(r.get(0)).unwrap_or_default()))
}

fn bump(c: &mut Client, user: UserId) -> Res<bool> {
    Ok(c.execute(
        "UPDATE users SET version = version + 1 WHERE id = $1 AND deleted_ms IS NULL",
        &[&i64::from(user)],
    )? == 1)
}

fn end_sessions(c: &mut Client, user: UserId, except: Option<Sid>, at_ms: i64) -> Res<()> {
    c.execute(
        "UPDATE sessions SET ended_ms = $2 WHERE user_id = $1 AND ended_ms IS NULL
         AND expires_ms > $2 AND ($3::text IS NULL OR id <> $3)",
        &[&i64::from(user), &at_ms, &except.map(|s| s.to_string())],
    )?;
    Ok(())
}

/// One [`AccountWrite`], with its audit entry; the news is what the
/// change-log rows it wrote name, read back as they are now.
pub(super) fn write(
    c: &mut Client,
    w: &AccountWrite,
    audit: Option<&Audit>,
) -> Res<Result<AccountNews, AccountRefusal>> {
    use AccountRefusal as R;
    let now = clock::now_ms();
    let mut logged: Vec<Logged> = Vec::new();
    macro_rules! log {
        ($kind:expr, $user:expr, $sid:expr) => {
            log!($kind, $user, $sid, None)
        };
        ($kind:expr, $user:expr, $sid:expr, $room:expr) => {{
            let (kind, user, sid, room): (_, _, _, Option<&str>) = ($kind, $user, $sid, $room);
            let id = log_change(c, now, kind, user, sid, room)?;
            logged.push((id, kind, user, sid, room.map(str::to_string)));
        }};
    }
    match w {
        AccountWrite::OpenSession(s) => {
            check_text(&[Some(&s.address), Some(&s.agent)])?;
            let user = i64::from(s.user);
            c.execute(
                "DELETE FROM sessions WHERE user_id = $1 AND expires_ms <= $2",
                &[&user, &s.created_ms],
            )?;
            c.execute(
                "INSERT INTO sessions (id, user_id, created_ms, expires_ms, address, agent)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &s.sid.to_string(),
                    &user,
                    &s.created_ms,
                    &s.expires_ms,
                    &s.address,
                    &s.agent,
                ],
            )?;
        }
        AccountWrite::EndSession { user, sid, at_ms } => {
            let n = c.execute(
                "UPDATE sessions SET ended_ms = $3 WHERE id = $1 AND user_id = $2
                 AND ended_ms IS NULL AND expires_ms > $3",
                &[&sid.to_string(), &i64::from(*user), at_ms],
            )?;
            if n == 0 {
                return Ok(Err(R::NoSuchSession));
            }
            log!(LogKind::Session, Some(*user), Some(*sid));
        }
        AccountWrite::EndSessions {
            user,
            except,
            at_ms,
        } => {
            if !bump(c, *user)? {
                return Ok(Err(R::NoSuchUser));
            }
            c.execute(
                "UPDATE users SET sessions_after_ms = $2 WHERE id = $1",
                &[&i64::from(*user), at_ms],
            )?;
            end_sessions(c, *user, *except, *at_ms)?;
            log!(LogKind::User, Some(*user), None);
            log!(LogKind::Sessions, Some(*user), None);
        }
        AccountWrite::EndLegacySessions { user, at_ms } => {
            if !bump(c, *user)? {
                return Ok(Err(R::NoSuchUser));
            }
            c.execute(
                "UPDATE users SET sessions_after_ms = $2 WHERE id = $1",
                &[&i64::from(*user), at_ms],
            )?;
            log!(LogKind::User, Some(*user), None);
        }
        AccountWrite::SetRole { user, role } => {
            let Some(was) = live_role(c, *user)? else {
                return Ok(Err(R::NoSuchUser));
            };
            if was == Role::Admin && *role != Role::Admin && admins(c)? <= 1 {
                return Ok(Err(R::LastAdmin));
            }
            c.execute(
                "UPDATE users SET role = $2 WHERE id = $1",
                &[&i64::from(*user), &role.as_str()],
            )?;
            bump(c, *user)?;
            log!(LogKind::User, Some(*user), None);
        }
        AccountWrite::Ban {
            user,
            reason,
            at_ms,
        } => {
            check_text(&[Some(reason)])?;
            if !bump(c, *user)? {
                return Ok(Err(R::NoSuchUser));
            }
            c.execute(
                "UPDATE users SET banned_ms = $2, ban_reason = $3 WHERE id = $1",
                &[&i64::from(*user), at_ms, reason],
            )?;
            log!(LogKind::User, Some(*user), None);
        }
        AccountWrite::Unban { user } => {
            if !bump(c, *user)? {
                return Ok(Err(R::NoSuchUser));
            }
            c.execute(
                "UPDATE users SET banned_ms = NULL, ban_reason = NULL WHERE id = $1",
                &[&i64::from(*user)],
            )?;
            log!(LogKind::User, Some(*user), None);
        }
        AccountWrite::SetPassword {
            user,
            password,
            keep,
            at_ms,
        } => {
            if !bump(c, *user)? {
                return Ok(Err(R::NoSuchUser));
            }
            c.execute(
                "UPDATE users SET pw_iter = $2, pw_salt = $3, pw_hash = $4, sessions_after_ms = $5
                 WHERE id = $1",
                &[
                    &i64::from(*user),
                    &i64::from(password.iterations),
                    &&password.salt[..],
                    &&password.hash[..],
                    at_ms,
                ],
            )?;
            end_sessions(c, *user, *keep, *at_ms)?;
            log!(LogKind::User, Some(*user), None);
            log!(LogKind::Sessions, Some(*user), None);
        }
        AccountWrite::SetProfile {
            user,
            display_name,
            status,
        } => {
            check_text(&[display_name.clone().flatten().as_deref(), status.as_deref()])?;
            if !bump(c, *user)? {
                return Ok(Err(R::NoSuchUser));
            }
            if let Some(name) = display_name {
                c.execute(
                    "UPDATE users SET display_name = $2 WHERE id = $1",
                    &[&i64::from(*user), name],
                )?;
            }
            if let Some(status) = status {
                c.execute(
                    "UPDATE users SET status = $2 WHERE id = $1",
                    &[&i64::from(*user), status],
                )?;
            }
            log!(LogKind::User, Some(*user), None);
        }
        AccountWrite::DeleteUser { user, at_ms } => {
            let Some(role) = live_role(c, *user)? else {
                return Ok(Err(R::NoSuchUser));
            };
            if role == Role::Admin && admins(c)? <= 1 {
                return Ok(Err(R::LastAdmin));
            }
            bump(c, *user)?;
            let id = i64::from(*user);
            c.execute(
                "UPDATE users SET username = $2, email = '', pw_salt = $4, pw_hash = $5,
                        role = 'member', banned_ms = NULL, ban_reason = NULL,
                        display_name = NULL, status = '', deleted_ms = $3, sessions_after_ms = $3
                 WHERE id = $1",
                &[
                    &id,
                    &deleted_name(*user),
                    at_ms,
                    &&[0u8; 16][..],
                    &&[0u8; 32][..],
                ],
            )?;
            end_sessions(c, *user, None, *at_ms)?;
            for sql in [
                "DELETE FROM room_members WHERE user_id = $1",
                "DELETE FROM room_reads WHERE user_id = $1",
                "DELETE FROM dm_reads WHERE user_id = $1",
                "DELETE FROM mentions WHERE user_id = $1",
            ] {
                c.execute(sql, &[&id])?;
            }
            log!(LogKind::User, Some(*user), None);
            log!(LogKind::Sessions, Some(*user), None);
        }
        AccountWrite::PutInvite(i) => {
            check_text(&[Some(&i.code)])?;
            c.execute(
                "INSERT INTO invites (code, created_by, created_ms, expires_ms, uses)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &i.code,
                    &i.created_by.map(i64::from),
                    &i.created_ms,
                    &i.expires_ms,
                    &i64::from(i.uses),
                ],
            )?;
        }
        AccountWrite::RevokeInvite { code, by, at_ms } => {
            check_text(&[Some(code)])?;
            let n = c.execute(
                "UPDATE invites SET revoked_ms = $3 WHERE code = $1 AND revoked_ms IS NULL
                 AND ($2::bigint IS NULL OR created_by = $2)",
                &[code, &by.map(i64::from), at_ms],
            )?;
            if n == 0 {
                return Ok(Err(R::NoSuchInvite));
            }
        }
        AccountWrite::SetSettings(s) => {
            let set = [
                (AccountSettings::SIGNUP, s.signup.map(|m| m.as_str())),
                (
                    AccountSettings::INVITES_BY,
                    s.invites_by.map(|r| r.as_str()),
                ),
            ];
            for (key, value) in set {
                if let Some(v) = value {
                    c.execute(
                        "INSERT INTO settings (key, value) VALUES ($1, $2)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        &[&key, &v.as_bytes()],
                    )?;
                }
            }
            log!(LogKind::Settings, None, None);
        }
        AccountWrite::ArchiveRoom { room, archived } => {
            let n = c.execute(
                "UPDATE rooms SET archived = $2 WHERE name = $1",
                &[room, archived],
            )?;
            if n == 0 {
                // No such room: nothing changed, nothing to audit.
                return Ok(Ok(AccountNews::default()));
            }
            log!(LogKind::Room, None, None, Some(room));
        }
        AccountWrite::DeleteRoom { room, at_ms } => {
            if !delete_room(c, room, *at_ms)? {
                return Ok(Ok(AccountNews::default()));
            }
            log!(LogKind::Room, None, None, Some(room));
        }
    }
    if let Some(a) = audit {
        write_audit(c, a)?;
    }
    news(c, &logged, now).map(Ok)
}

/// `DeleteRoom`'s rows (false: the room has no row), as SQLite's
/// (`sqlite::delete_room`); the search words go with the rows. The room's
/// `targets` row stays, so its sequence goes on where it stood for a room
/// made again under the name, and every node's order for it stays right.
fn delete_room(c: &mut Client, room: &str, at_ms: i64) -> Res<bool> {
    if c.execute("DELETE FROM rooms WHERE name = $1", &[&room])? == 0 {
        return Ok(false);
    }
    c.execute(
        "UPDATE files SET released_ms = $2 WHERE id IN (SELECT f.file_id FROM message_files f
             JOIN messages m ON m.id = f.message_id WHERE m.room = $1)",
        &[&room, &at_ms],
    )?;
    for sql in [
        "DELETE FROM message_files WHERE message_id IN (SELECT id FROM messages WHERE room = $1)",
        "DELETE FROM messages WHERE room = $1",
        "DELETE FROM mentions WHERE room = $1",
        "DELETE FROM room_reads WHERE room = $1",
        "DELETE FROM room_members WHERE room = $1",
    ] {
        c.execute(sql, &[&room])?;
    }
    Ok(true)
}

/// One audit entry, in the caller's transaction.
pub(super) fn write_audit(c: &mut Client, a: &Audit) -> Res<()> {
    check_text(&[Some(&a.target), Some(&a.reason)])?;
    c.execute(
        "INSERT INTO audit (at_ms, actor_id, action, target, reason)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &a.at_ms,
            &a.actor.map(i64::from),
            &a.action,
            &a.target,
            &a.reason,
        ],
    )?;
    Ok(())
}

/// A change-log row as read: id, kind, user, session, room.
type Logged = (i64, LogKind, Option<UserId>, Option<Sid>, Option<String>);

fn news(c: &mut Client, rows: &[Logged], now_ms: i64) -> Res<AccountNews> {
    let mut news = AccountNews {
        changes: rows.iter().map(|r| r.0).collect(),
        ..AccountNews::default()
    };
    let mut users: Vec<UserId> = Vec::new();
    for (_, kind, user, sid, room) in rows {
        let (kind, user, sid) = (*kind, *user, *sid);
        match (kind, user) {
            (LogKind::User, Some(u)) if !users.contains(&u) => {
                users.push(u);
                news.users.extend(user_by_id(c, u)?);
            }
            (LogKind::User, Some(_)) => {}
            (LogKind::Session, _) => {
                let Some(sid) = sid else { continue };
                for r in c.query(
                    "SELECT id, user_id, expires_ms FROM sessions
                     WHERE id = $1 AND ended_ms IS NOT NULL AND expires_ms > $2",
                    &[&sid.to_string(), &now_ms],
                )? {
                    news.ended.extend(ended_row(&r)?);
                }
            }
            (LogKind::Sessions, Some(u)) => {
                for r in c.query(
                    "SELECT id, user_id, expires_ms FROM sessions
                     WHERE user_id = $1 AND ended_ms IS NOT NULL AND expires_ms > $2",
                    &[&i64::from(u), &now_ms],
                )? {
                    news.ended.extend(ended_row(&r)?);
                }
            }
            (LogKind::Settings, _) => news.settings = Some(settings(c)?),
            (LogKind::Room, _) => {
                let Some(name) = room else { continue };
                if news.rooms.iter().any(|r| &r.name == name) {
                    continue;
                }
                let archived = c
                    .query_opt("SELECT archived FROM rooms WHERE name = $1", &[name])?
                    .map(|r| r.get(0));
                news.rooms.push(RoomNews {
                    name: name.clone(),
                    archived,
                });
            }
            _ => {}
        }
    }
    news.ended.sort_by_key(|e| e.sid);
    news.ended.dedup();
    Ok(news)
}

fn ended_row(r: &postgres::Row) -> Res<Option<Ended>> {
    let Some(sid) = Sid::parse(r.get(0)) else {
        return Ok(None);
    };
    Ok(Some(Ended {
        sid,
        user: user_id(r.get(1))?,
        expires_ms: r.get(2),
    }))
}

fn settings(c: &mut Client) -> Res<AccountSettings> {
    let mut s = AccountSettings::default();
    for r in c.query(
        "SELECT key, value FROM settings WHERE key = $1 OR key = $2",
        &[&AccountSettings::SIGNUP, &AccountSettings::INVITES_BY],
    )? {
        s.read(r.get(0), r.get(1));
    }
    Ok(s)
}

fn logged_row(r: &postgres::Row) -> Res<Option<Logged>> {
    let Some(kind) = LogKind::parse(r.get(1)) else {
        return Ok(None);
    };
    let sid = r.get::<_, Option<&str>>(3).and_then(Sid::parse);
    Ok(Some((
        r.get(0),
        kind,
        opt_user_id(r.get(2))?,
        sid,
        r.get(4),
    )))
}

/// Change-log rows read per poll at most; the rest come with the next.
const CHANGES_PER_READ: i64 = 1000;

/// One [`AccountRead`].
pub(super) fn read(c: &mut Client, r: &AccountRead) -> Res<AccountAnswer> {
    Ok(match r {
        AccountRead::Changes { after, gaps } => {
            let mut rows = Vec::new();
            for r in c.query(
                "SELECT id, kind, user_id, sid, room FROM account_changes
                 WHERE id > $1 OR id = ANY($2::bigint[]) ORDER BY id LIMIT $3",
                &[after, gaps, &CHANGES_PER_READ],
            )? {
                rows.extend(logged_row(&r)?);
            }
            AccountAnswer::Changes(news(c, &rows, clock::now_ms())?)
        }
        AccountRead::Sessions { user, now_ms } => {
            let mut out = Vec::new();
            for r in c.query(
                "SELECT id, user_id, created_ms, expires_ms, address, agent, ended_ms
                 FROM sessions WHERE user_id = $1 AND ended_ms IS NULL AND expires_ms > $2
                 ORDER BY created_ms DESC, id LIMIT $3",
                &[&i64::from(*user), now_ms, &(SESSIONS_LISTED_MAX as i64)],
            )? {
                let Some(sid) = Sid::parse(r.get(0)) else {
                    continue;
                };
                out.push(SessionRow {
                    sid,
                    user: user_id(r.get(1))?,
                    created_ms: r.get(2),
                    expires_ms: r.get(3),
                    address: r.get(4),
                    agent: r.get(5),
                    ended_ms: r.get(6),
                });
            }
            AccountAnswer::Sessions(out)
        }
        AccountRead::Invites { by, now_ms } => {
            let mut out = Vec::new();
            for r in c.query(
                "SELECT code, created_by, created_ms, expires_ms, uses, used, revoked_ms
                 FROM invites WHERE revoked_ms IS NULL AND expires_ms > $1 AND used < uses
                   AND ($2::bigint IS NULL OR created_by = $2)
                 ORDER BY created_ms DESC, code LIMIT $3",
                &[now_ms, &by.map(i64::from), &(INVITES_LISTED_MAX as i64)],
            )? {
                out.push(InviteRow {
                    code: r.get(0),
                    created_by: opt_user_id(r.get(1))?,
                    created_ms: r.get(2),
                    expires_ms: r.get(3),
                    uses: r.get::<_, i64>(4).clamp(0, u32::MAX.into()) as u32,
                    used: r.get::<_, i64>(5).clamp(0, u32::MAX.into()) as u32,
                    revoked_ms: r.get(6),
                });
            }
            AccountAnswer::Invites(out)
        }
        AccountRead::Audit { before, limit } => {
            let mut out = Vec::new();
            for r in c.query(
                "SELECT id, at_ms, actor_id, action, target, reason FROM audit
                 WHERE id < $1 ORDER BY id DESC LIMIT $2",
                &[&before.unwrap_or(i64::MAX), &(*limit as i64)],
            )? {
                out.push(AuditRow {
                    id: r.get(0),
                    at_ms: r.get(1),
                    actor: opt_user_id(r.get(2))?,
                    action: r.get(3),
                    target: r.get(4),
                    reason: r.get(5),
                });
            }
            AccountAnswer::Audit(out)
        }
    })
}

/// What `load` reads of accounts besides the users, and the archived rooms.
pub(super) fn snapshot(c: &mut Client) -> Res<(AccountsSnapshot, Vec<String>)> {
    let now = clock::now_ms();
    let mut snap = AccountsSnapshot {
        settings: settings(c)?,
        ..AccountsSnapshot::default()
    };
    for r in c.query(
        "SELECT id, user_id, expires_ms FROM sessions
         WHERE ended_ms IS NOT NULL AND expires_ms > $1",
        &[&now],
    )? {
        snap.ended.extend(ended_row(&r)?);
    }
    for r in c.query(
        "SELECT id FROM account_changes ORDER BY id DESC LIMIT $1",
        &[&RECENT_CHANGES],
    )? {
        snap.recent_changes.push(r.get(0));
    }
    snap.recent_changes.reverse();
    let mut archived = Vec::new();
    for r in c.query(
        "SELECT name FROM rooms WHERE archived ORDER BY name COLLATE \"C\"",
        &[],
    )? {
        archived.push(r.get(0));
    }
    Ok((snap, archived))
}
