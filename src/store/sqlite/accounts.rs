//! The account statements on SQLite (`store/accounts.rs` has the rules):
//! signups with their invite and their change-log entry, every
//! [`AccountWrite`], the account reads, and what `load` reads of accounts.
//! Each write runs inside the request's savepoint (`Request::facts` says it
//! writes several statements), so a refusal or a failure leaves nothing.

use rusqlite::{Connection, OptionalExtension, params};

use super::{blob, err_code_is_unique};
use crate::clock;
use crate::config::{ACCOUNT_CHANGES_KEPT, INVITES_LISTED_MAX, SESSIONS_LISTED_MAX};
use crate::store::accounts::{LogKind, RECENT_CHANGES, deleted_name};
use crate::store::{
    Account, AccountAnswer, AccountNews, AccountRead, AccountRefusal, AccountSettings,
    AccountWrite, AccountsSnapshot, Audit, AuditRow, Ban, Conflict, Ended, InviteRow, PasswordHash,
    Reply, Role, RoomNews, SessionRow, Sid, UserId, UserRow,
};

/// The columns [`user_row`] reads, in its order.
pub(super) const USER_COLUMNS: &str = "id, username, email, pw_iter, pw_salt, pw_hash, created_ms, \
     last_seen_ms, role, banned_ms, ban_reason, deleted_ms, display_name, status, \
     sessions_after_ms, version, avatar_file";

/// A `users` row selected as [`USER_COLUMNS`].
pub(super) fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    let ban = match r.get::<_, Option<i64>>(9)? {
        None => None,
        Some(at_ms) => Some(Ban {
            at_ms,
            reason: r.get::<_, Option<String>>(10)?.unwrap_or_default(),
        }),
    };
    Ok(UserRow {
        id: r.get(0)?,
        username: r.get(1)?,
        email: r.get(2)?,
        password: PasswordHash {
            iterations: r.get(3)?,
            salt: blob(r.get(4)?)?,
            hash: blob(r.get(5)?)?,
        },
        created_ms: r.get(6)?,
        last_seen_ms: r.get(7)?,
        account: Account {
            // A role this binary does not know reads as the least.
            role: Role::parse(&r.get::<_, String>(8)?).unwrap_or_default(),
            ban,
            deleted_ms: r.get(11)?,
            display_name: r.get(12)?,
            status: r.get(13)?,
            sessions_after_ms: r.get(14)?,
            version: r.get::<_, i64>(15)? as u64,
            avatar: r.get::<_, Option<i64>>(16)?.map(|f| f as u64),
        },
    })
}

/// One user by id, as stored.
pub(super) fn user_by_id(c: &Connection, id: UserId) -> rusqlite::Result<Option<UserRow>> {
    c.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
        .query_row([id], user_row)
        .optional()
}

/// A write outside the account requests changed what others see of
/// `user` (their avatar): the row's version goes up and the change log
/// names it, so every node reads it back as it does a new display name.
pub(super) fn touched(c: &Connection, user: UserId, at_ms: i64) -> rusqlite::Result<()> {
    if bump(c, user)? {
        log_change(c, at_ms, LogKind::User, Some(user), None, None)?;
    }
    Ok(())
}

/// A change-log row: what a write changed, for every node's poll.
fn log_change(
    c: &Connection,
    at_ms: i64,
    kind: LogKind,
    user: Option<UserId>,
    sid: Option<Sid>,
    room: Option<&str>,
) -> rusqlite::Result<i64> {
    c.prepare_cached(
        "INSERT INTO account_changes (at_ms, kind, user_id, sid, room)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        at_ms,
        kind.as_str(),
        user,
        sid.map(|s| s.to_string()),
        room
    ])?;
    let id = c.last_insert_rowid();
    // Old entries serve nobody (`ACCOUNT_CHANGES_KEPT`); the newest stays,
    // so ids never go back.
    c.prepare_cached("DELETE FROM account_changes WHERE at_ms < ?1 AND id < ?2")?
        .execute(params![at_ms - ACCOUNT_CHANGES_KEPT.as_millis() as i64, id])?;
    Ok(id)
}

/// One audit entry, in the caller's transaction.
pub(super) fn write_audit(c: &Connection, a: &Audit) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO audit (at_ms, actor_id, action, target, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![a.at_ms, a.actor, a.action, a.target, a.reason])?;
    Ok(())
}

/// `PutUser`: spends a use of the invite (if any), checks the name and
/// email are free, stores the row (as admin when it is the first) with
/// its audit entry, and logs it, so a running server learns of a user
/// the command line made.
pub(super) fn put_user(
    c: &Connection,
    row: &UserRow,
    invite: Option<&str>,
    audit: Option<&Audit>,
) -> rusqlite::Result<Reply> {
    let refused = |conflict| Reply::UserFailed {
        key: row.id,
        conflict: Some(conflict),
    };
    let exists = |sql: &str, v: &str| -> rusqlite::Result<bool> {
        Ok(c.prepare_cached(sql)?
            .query_row([v], |_| Ok(()))
            .optional()?
            .is_some())
    };
    if exists(
        "SELECT 1 FROM users WHERE username = ?1 COLLATE NOCASE",
        &row.username,
    )? {
        return Ok(refused(Conflict::Username));
    }
    if !row.email.is_empty()
        && exists(
            "SELECT 1 FROM users WHERE email = ?1 COLLATE NOCASE AND email != ''",
            &row.email,
        )?
    {
        return Ok(refused(Conflict::Email));
    }
    if let Some(code) = invite {
        let spent = c
            .prepare_cached(
                "UPDATE invites SET used = used + 1 WHERE code = ?1 AND revoked_ms IS NULL
                 AND used < uses AND expires_ms > ?2",
            )?
            .execute(params![code, row.created_ms])?;
        if spent == 0 {
            return Ok(refused(Conflict::Invite));
        }
    }
    let first: bool = c
        .prepare_cached("SELECT NOT EXISTS (SELECT 1 FROM users)")?
        .query_row([], |r| r.get(0))?;
    let role = if first { Role::Admin } else { row.account.role };
    // The loop's key is the id, unless another writer (the command line)
    // took it meanwhile: then SQLite picks the next free one.
    let taken = c
        .prepare_cached("SELECT 1 FROM users WHERE id = ?1")?
        .query_row([row.id], |_| Ok(()))
        .optional()?
        .is_some();
    let inserted = c
        .prepare_cached(
            "INSERT INTO users (id, username, email, pw_iter, pw_salt, pw_hash, created_ms,
                                last_seen_ms, role, display_name, status)
             VALUES (?11, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            row.username,
            row.email,
            row.password.iterations,
            &row.password.salt[..],
            &row.password.hash[..],
            row.created_ms,
            row.last_seen_ms,
            role.as_str(),
            row.account.display_name,
            row.account.status,
            (!taken).then_some(row.id),
        ]);
    match inserted {
        Ok(_) => {}
        // Checked above inside the write lock; kept for a database whose
        // index rule differs from the check's (an older binary's rows).
        Err(e) if err_code_is_unique(&e) => return Ok(refused(Conflict::Username)),
        Err(e) => return Err(e),
    }
    let id = c.last_insert_rowid() as UserId;
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

/// Admins not deleted.
fn admins(c: &Connection) -> rusqlite::Result<i64> {
    c.prepare_cached("SELECT COUNT(*) FROM users WHERE role = 'admin' AND deleted_ms IS NULL")?
        .query_row([], |r| r.get(0))
}

/// `user`'s role, if the user exists and is not deleted.
fn live_role(c: &Connection, user: UserId) -> rusqlite::Result<Option<Role>> {
    Ok(
        c.prepare_cached("SELECT role FROM users WHERE id = ?1 AND deleted_ms IS NULL")?
            .query_row([user], |r| r.get::<_, String>(0))
            .optional()?
            .map(|r| Role::parse(&r).unwrap_or_default()),
    )
}

/// Raises the row's version after a write to it; false when no live user
/// has that id.
fn bump(c: &Connection, user: UserId) -> rusqlite::Result<bool> {
    Ok(c.prepare_cached(
        "UPDATE users SET version = version + 1 WHERE id = ?1 AND deleted_ms IS NULL",
    )?
    .execute([user])?
        == 1)
}

/// Ends `user`'s open sessions but `except`.
fn end_sessions(
    c: &Connection,
    user: UserId,
    except: Option<Sid>,
    at_ms: i64,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "UPDATE sessions SET ended_ms = ?2 WHERE user_id = ?1 AND ended_ms IS NULL
         AND expires_ms > ?2 AND (?3 IS NULL OR id != ?3)",
    )?
    .execute(params![user, at_ms, except.map(|s| s.to_string())])?;
    Ok(())
}

/// One [`AccountWrite`], with its audit entry; the news is what the
/// change-log rows it wrote name, read back as they are now.
/// A deleted room's messages leave the full-text index through `fts`
/// (`Sqlite::commit` applies it).
pub(super) fn write(
    c: &Connection,
    w: &AccountWrite,
    audit: Option<&Audit>,
    fts: &mut Vec<super::FtsOp>,
) -> rusqlite::Result<Result<AccountNews, AccountRefusal>> {
    use AccountRefusal as R;
    let now = clock::now_ms();
    let mut logged: Vec<Logged> = Vec::new();
    let mut log = |kind, user, sid, room: Option<&str>| -> rusqlite::Result<()> {
        let id = log_change(c, now, kind, user, sid, room)?;
        logged.push((id, kind, user, sid, room.map(str::to_string)));
        Ok(())
    };
    match w {
        AccountWrite::OpenSession(s) => {
            c.prepare_cached("DELETE FROM sessions WHERE user_id = ?1 AND expires_ms <= ?2")?
                .execute(params![s.user, s.created_ms])?;
            c.prepare_cached(
                "INSERT INTO sessions (id, user_id, created_ms, expires_ms, address, agent)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                s.sid.to_string(),
                s.user,
                s.created_ms,
                s.expires_ms,
                s.address,
                s.agent
            ])?;
        }
        AccountWrite::EndSession { user, sid, at_ms } => {
            let n = c
                .prepare_cached(
                    "UPDATE sessions SET ended_ms = ?3 WHERE id = ?1 AND user_id = ?2
                     AND ended_ms IS NULL AND expires_ms > ?3",
                )?
                .execute(params![sid.to_string(), user, at_ms])?;
            if n == 0 {
                return Ok(Err(R::NoSuchSession));
            }
            log(LogKind::Session, Some(*user), Some(*sid), None)?;
        }
        AccountWrite::EndSessions {
            user,
            except,
            at_ms,
        } => {
            if !bump(c, *user)? {
                return Ok(Err(R::NoSuchUser));
            }
            c.prepare_cached("UPDATE users SET sessions_after_ms = ?2 WHERE id = ?1")?
                .execute(params![user, at_ms])?;
            end_sessions(c, *user, *except, *at_ms)?;
            log(LogKind::User, Some(*user), None, None)?;
            log(LogKind::Sessions, Some(*user), None, None)?;
        }
        AccountWrite::EndLegacySessions { user, at_ms } => {
            if !bump(c, *user)? {
                return Ok(Err(R::NoSuchUser));
            }
            c.prepare_cached("UPDATE users SET sessions_after_ms = ?2 WHERE id = ?1")?
                .execute(params![user, at_ms])?;
            log(LogKind::User, Some(*user), None, None)?;
        }
        AccountWrite::SetRole { user, role } => {
            let Some(was) = live_role(c, *user)? else {
                return Ok(Err(R::NoSuchUser));
            };
            if was == Role::Admin && *role != Role::Admin && admins(c)? <= 1 {
                return Ok(Err(R::LastAdmin));
            }
            c.prepare_cached("UPDATE users SET role = ?2 WHERE id = ?1")?
                .execute(params![user, role.as_str()])?;
            bump(c, *user)?;
            log(LogKind::User, Some(*user), None, None)?;
        }
        AccountWrite::Ban {
            user,
            reason,
            at_ms,
        } => {
            if !bump(c, *user)? {
                return Ok(Err(R::NoSuchUser));
            }
            c.prepare_cached("UPDATE users SET banned_ms = ?2, ban_reason = ?3 WHERE id = ?1")?
                .execute(params![user, at_ms, reason])?;
            log(LogKind::User, Some(*user), None, None)?;
        }
        AccountWrite::Unban { user } => {
            if !bump(c, *user)? {
                return Ok(Err(R::NoSuchUser));
            }
            c.prepare_cached("UPDATE users SET banned_ms = NULL, ban_reason = NULL WHERE id = ?1")?
                .execute([user])?;
            log(LogKind::User, Some(*user), None, None)?;
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
            c.prepare_cached(
                "UPDATE users SET pw_iter = ?2, pw_salt = ?3, pw_hash = ?4, sessions_after_ms = ?5
                 WHERE id = ?1",
            )?
            .execute(params![
                user,
                password.iterations,
                &password.salt[..],
                &password.hash[..],
                at_ms
            ])?;
            end_sessions(c, *user, *keep, *at_ms)?;
            log(LogKind::User, Some(*user), None, None)?;
            log(LogKind::Sessions, Some(*user), None, None)?;
        }
        AccountWrite::SetProfile {
            user,
            display_name,
            status,
        } => {
            if !bump(c, *user)? {
                return Ok(Err(R::NoSuchUser));
            }
            if let Some(name) = display_name {
                c.prepare_cached("UPDATE users SET display_name = ?2 WHERE id = ?1")?
                    .execute(params![user, name])?;
            }
            if let Some(status) = status {
                c.prepare_cached("UPDATE users SET status = ?2 WHERE id = ?1")?
                    .execute(params![user, status])?;
            }
            log(LogKind::User, Some(*user), None, None)?;
        }
        AccountWrite::DeleteUser { user, at_ms } => {
            let Some(role) = live_role(c, *user)? else {
                return Ok(Err(R::NoSuchUser));
            };
            if role == Role::Admin && admins(c)? <= 1 {
                return Ok(Err(R::LastAdmin));
            }
            bump(c, *user)?;
            c.prepare_cached(
                "UPDATE users SET username = ?2, email = '', pw_salt = zeroblob(16),
                        pw_hash = zeroblob(32), role = 'member', banned_ms = NULL,
                        ban_reason = NULL, display_name = NULL, status = '',
                        deleted_ms = ?3, sessions_after_ms = ?3
                 WHERE id = ?1",
            )?
            .execute(params![user, deleted_name(*user), at_ms])?;
            end_sessions(c, *user, None, *at_ms)?;
            for sql in [
                "DELETE FROM room_members WHERE user_id = ?1",
                "DELETE FROM room_reads WHERE user_id = ?1",
                "DELETE FROM dm_reads WHERE user_id = ?1",
                "DELETE FROM mentions WHERE user_id = ?1",
            ] {
                c.prepare_cached(sql)?.execute([user])?;
            }
            log(LogKind::User, Some(*user), None, None)?;
            log(LogKind::Sessions, Some(*user), None, None)?;
        }
        AccountWrite::PutInvite(i) => {
            c.prepare_cached(
                "INSERT INTO invites (code, created_by, created_ms, expires_ms, uses)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                i.code,
                i.created_by,
                i.created_ms,
                i.expires_ms,
                i.uses
            ])?;
        }
        AccountWrite::RevokeInvite { code, by, at_ms } => {
            let n = c
                .prepare_cached(
                    "UPDATE invites SET revoked_ms = ?3 WHERE code = ?1 AND revoked_ms IS NULL
                     AND (?2 IS NULL OR created_by = ?2)",
                )?
                .execute(params![code, by, at_ms])?;
            if n == 0 {
                return Ok(Err(R::NoSuchInvite));
            }
        }
        AccountWrite::SetSettings(s) => {
            let mut st = c.prepare_cached(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?;
            if let Some(m) = s.signup {
                st.execute(params![AccountSettings::SIGNUP, m.as_str().as_bytes()])?;
            }
            if let Some(r) = s.invites_by {
                st.execute(params![AccountSettings::INVITES_BY, r.as_str().as_bytes()])?;
            }
            log(LogKind::Settings, None, None, None)?;
        }
        AccountWrite::ArchiveRoom { room, archived } => {
            let n = c
                .prepare_cached("UPDATE rooms SET archived = ?2 WHERE name = ?1")?
                .execute(params![room, archived])?;
            if n == 0 {
                // No such room: nothing changed, nothing to audit.
                return Ok(Ok(AccountNews::default()));
            }
            log(LogKind::Room, None, None, Some(room))?;
        }
        AccountWrite::DeleteRoom { room, at_ms } => {
            if !super::delete_room(c, room, *at_ms, fts)? {
                return Ok(Ok(AccountNews::default()));
            }
            log(LogKind::Room, None, None, Some(room))?;
        }
    }
    if let Some(a) = audit {
        write_audit(c, a)?;
    }
    news(c, &logged, now).map(Ok)
}

/// A change-log row as read: id, kind, user, session, room.
type Logged = (i64, LogKind, Option<UserId>, Option<Sid>, Option<String>);

/// What the change-log rows `rows` name, as it is now.
fn news(c: &Connection, rows: &[Logged], now_ms: i64) -> rusqlite::Result<AccountNews> {
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
                news.ended.extend(
                    c.prepare_cached(
                        "SELECT id, user_id, expires_ms FROM sessions
                         WHERE id = ?1 AND ended_ms IS NOT NULL AND expires_ms > ?2",
                    )?
                    .query_row(params![sid.to_string(), now_ms], ended_row)
                    .optional()?
                    .flatten(),
                );
            }
            (LogKind::Sessions, Some(u)) => {
                let mut st = c.prepare_cached(
                    "SELECT id, user_id, expires_ms FROM sessions
                     WHERE user_id = ?1 AND ended_ms IS NOT NULL AND expires_ms > ?2",
                )?;
                for e in st.query_map(params![u, now_ms], ended_row)? {
                    news.ended.extend(e?);
                }
            }
            (LogKind::Settings, _) => news.settings = Some(settings(c)?),
            (LogKind::Room, _) => {
                let Some(name) = room else { continue };
                if news.rooms.iter().any(|r| &r.name == name) {
                    continue;
                }
                let archived = c
                    .prepare_cached("SELECT archived != 0 FROM rooms WHERE name = ?1")?
                    .query_row([name], |r| r.get(0))
                    .optional()?;
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

/// An ended session's `id, user_id, expires_ms` (`None`: an id this
/// binary did not write).
fn ended_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Ended>> {
    let Some(sid) = Sid::parse(&r.get::<_, String>(0)?) else {
        return Ok(None);
    };
    Ok(Some(Ended {
        sid,
        user: r.get(1)?,
        expires_ms: r.get(2)?,
    }))
}

fn settings(c: &Connection) -> rusqlite::Result<AccountSettings> {
    let mut s = AccountSettings::default();
    let mut st = c.prepare_cached("SELECT key, value FROM settings WHERE key IN (?1, ?2)")?;
    let rows = st.query_map(
        [AccountSettings::SIGNUP, AccountSettings::INVITES_BY],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)),
    )?;
    for row in rows {
        let (k, v) = row?;
        s.read(&k, &v);
    }
    Ok(s)
}

/// Change-log rows read back (`None`: a kind this binary does not know).
fn logged_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Logged>> {
    let Some(kind) = LogKind::parse(&r.get::<_, String>(1)?) else {
        return Ok(None);
    };
    let sid = r.get::<_, Option<String>>(3)?.and_then(|s| Sid::parse(&s));
    Ok(Some((r.get(0)?, kind, r.get(2)?, sid, r.get(4)?)))
}

/// Change-log rows read per poll at most; the rest come with the next.
const CHANGES_PER_READ: i64 = 1000;

/// One [`AccountRead`].
pub(super) fn read(c: &Connection, r: &AccountRead) -> rusqlite::Result<AccountAnswer> {
    Ok(match r {
        AccountRead::Changes { after, gaps } => {
            let mut rows = Vec::new();
            let mut st = c.prepare_cached(
                "SELECT id, kind, user_id, sid, room FROM account_changes WHERE id > ?1
                 ORDER BY id LIMIT ?2",
            )?;
            for row in st.query_map(params![after, CHANGES_PER_READ], logged_row)? {
                rows.extend(row?);
            }
            let mut st = c.prepare_cached(
                "SELECT id, kind, user_id, sid, room FROM account_changes WHERE id = ?1",
            )?;
            for gap in gaps {
                rows.extend(st.query_row([gap], logged_row).optional()?.flatten());
            }
            rows.sort_by_key(|r| r.0);
            AccountAnswer::Changes(news(c, &rows, clock::now_ms())?)
        }
        AccountRead::Sessions { user, now_ms } => {
            let mut st = c.prepare_cached(
                "SELECT id, user_id, created_ms, expires_ms, address, agent, ended_ms
                 FROM sessions WHERE user_id = ?1 AND ended_ms IS NULL AND expires_ms > ?2
                 ORDER BY created_ms DESC, id LIMIT ?3",
            )?;
            let rows = st.query_map(params![user, now_ms, SESSIONS_LISTED_MAX as i64], |r| {
                let Some(sid) = Sid::parse(&r.get::<_, String>(0)?) else {
                    return Ok(None);
                };
                Ok(Some(SessionRow {
                    sid,
                    user: r.get(1)?,
                    created_ms: r.get(2)?,
                    expires_ms: r.get(3)?,
                    address: r.get(4)?,
                    agent: r.get(5)?,
                    ended_ms: r.get(6)?,
                }))
            })?;
            let mut out = Vec::new();
            for row in rows {
                out.extend(row?);
            }
            AccountAnswer::Sessions(out)
        }
        AccountRead::Invites { by, now_ms } => {
            let mut st = c.prepare_cached(
                "SELECT code, created_by, created_ms, expires_ms, uses, used, revoked_ms
                 FROM invites WHERE revoked_ms IS NULL AND expires_ms > ?1 AND used < uses
                   AND (?2 IS NULL OR created_by = ?2)
                 ORDER BY created_ms DESC, code LIMIT ?3",
            )?;
            let rows = st.query_map(params![now_ms, by, INVITES_LISTED_MAX as i64], |r| {
                Ok(InviteRow {
                    code: r.get(0)?,
                    created_by: r.get(1)?,
                    created_ms: r.get(2)?,
                    expires_ms: r.get(3)?,
                    uses: r.get(4)?,
                    used: r.get(5)?,
                    revoked_ms: r.get(6)?,
                })
            })?;
            AccountAnswer::Invites(rows.collect::<rusqlite::Result<_>>()?)
        }
        AccountRead::Audit { before, limit } => {
            let mut st = c.prepare_cached(
                "SELECT id, at_ms, actor_id, action, target, reason FROM audit
                 WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = st.query_map(params![before.unwrap_or(i64::MAX), *limit as i64], |r| {
                Ok(AuditRow {
                    id: r.get(0)?,
                    at_ms: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    reason: r.get(5)?,
                })
            })?;
            AccountAnswer::Audit(rows.collect::<rusqlite::Result<_>>()?)
        }
    })
}

/// What `load` reads of accounts besides the users: ended sessions whose
/// tokens are alive, the settings, the newest change-log ids; and the
/// archived rooms.
pub(super) fn snapshot(c: &Connection) -> rusqlite::Result<(AccountsSnapshot, Vec<String>)> {
    let now = clock::now_ms();
    let mut snap = AccountsSnapshot {
        settings: settings(c)?,
        ..AccountsSnapshot::default()
    };
    let mut st = c.prepare(
        "SELECT id, user_id, expires_ms FROM sessions
         WHERE ended_ms IS NOT NULL AND expires_ms > ?1",
    )?;
    for e in st.query_map([now], ended_row)? {
        snap.ended.extend(e?);
    }
    let mut st = c.prepare("SELECT id FROM account_changes ORDER BY id DESC LIMIT ?1")?;
    snap.recent_changes = st
        .query_map([RECENT_CHANGES], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    snap.recent_changes.reverse();
    let mut st = c.prepare("SELECT name FROM rooms WHERE archived != 0 ORDER BY name")?;
    let archived = st
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok((snap, archived))
}
