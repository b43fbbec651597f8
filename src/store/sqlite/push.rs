//! Web Push on SQLite: browsers' subscriptions and each user's choice of
//! what a push shows (the third migration's two tables).

use rusqlite::{Connection, OptionalExtension, params};

use crate::config::MAX_PUSH_SUBSCRIPTIONS;
use crate::store::{PushProfile, PushSubscription, UserId};

/// Upserts by endpoint (a known one moves to this user with its new keys),
/// then drops the user's oldest others past the bound: the newest ones are
/// the browsers in use, and an old one is often a profile that was wiped
/// without unsubscribing.
pub(super) fn put_subscription(c: &Connection, s: &PushSubscription) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO push_subscriptions (endpoint, user_id, p256dh, auth, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (endpoint) DO UPDATE SET user_id = excluded.user_id,
             p256dh = excluded.p256dh, auth = excluded.auth, created_ms = excluded.created_ms",
    )?
    .execute(params![
        s.endpoint,
        s.user,
        &s.p256dh[..],
        &s.auth[..],
        s.created_ms
    ])?;
    c.prepare_cached(
        "DELETE FROM push_subscriptions WHERE user_id = ?1 AND endpoint <> ?2
           AND endpoint NOT IN (SELECT endpoint FROM push_subscriptions
                                WHERE user_id = ?1 AND endpoint <> ?2
                                ORDER BY created_ms DESC, endpoint LIMIT ?3)",
    )?
    .execute(params![
        s.user,
        s.endpoint,
        MAX_PUSH_SUBSCRIPTIONS as i64 - 1
    ])?;
    Ok(())
}

pub(super) fn delete_subscription(
    c: &Connection,
    user: UserId,
    endpoint: &str,
) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM push_subscriptions WHERE endpoint = ?1 AND user_id = ?2")?
        .execute(params![endpoint, user])?;
    Ok(())
}

pub(super) fn drop_subscription(
    c: &Connection,
    endpoint: &str,
    auth: &[u8; 16],
) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM push_subscriptions WHERE endpoint = ?1 AND auth = ?2")?
        .execute(params![endpoint, &auth[..]])?;
    Ok(())
}

pub(super) fn put_settings(c: &Connection, user: UserId, show_text: bool) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO push_settings (user_id, show_text) VALUES (?1, ?2)
         ON CONFLICT (user_id) DO UPDATE SET show_text = excluded.show_text",
    )?
    .execute(params![user, show_text])?;
    Ok(())
}

/// The user's setting (the default without a row) and subscriptions,
/// oldest first. A row whose keys are not the stored size is skipped, not
/// sent to: the database is input too.
pub(super) fn profile(c: &Connection, user: UserId) -> rusqlite::Result<PushProfile> {
    let show_text = c
        .prepare_cached("SELECT show_text FROM push_settings WHERE user_id = ?1")?
        .query_row(params![user], |r| r.get::<_, bool>(0))
        .optional()?
        .unwrap_or(true);
    let mut st = c.prepare_cached(
        "SELECT endpoint, p256dh, auth, created_ms FROM push_subscriptions
         WHERE user_id = ?1 ORDER BY created_ms, endpoint",
    )?;
    let rows = st.query_map(params![user], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, Vec<u8>>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut subscriptions = Vec::new();
    for row in rows {
        let (endpoint, p256dh, auth, created_ms) = row?;
        match (p256dh.try_into(), auth.try_into()) {
            (Ok(p256dh), Ok(auth)) => subscriptions.push(PushSubscription {
                user,
                endpoint,
                p256dh,
                auth,
                created_ms,
            }),
            _ => log::error!(
                "storage: a push subscription of user {user} has keys of the wrong size; skipped"
            ),
        }
    }
    Ok(PushProfile {
        show_text,
        subscriptions,
    })
}
