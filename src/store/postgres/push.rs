//! Web Push on PostgreSQL: browsers' subscriptions and each user's choice
//! of what a push shows (the third migration's two tables), with SQLite's
//! rules (`store/sqlite/push.rs`). These requests are rare (a browser
//! subscribing, a push service saying a subscription is gone, one read per
//! push), so their statements are not among the prepared ones.

use super::conn::{Conn, Res};
use crate::config::MAX_PUSH_SUBSCRIPTIONS;
use crate::store::{PushProfile, PushSubscription, UserId};

/// Upserts by endpoint, then drops the user's oldest others past the bound.
pub(super) fn put_subscription(c: &mut Conn, s: &PushSubscription) -> Res<()> {
    let user = i64::from(s.user);
    c.client.execute(
        "INSERT INTO push_subscriptions (endpoint, user_id, p256dh, auth, created_ms)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (endpoint) DO UPDATE SET user_id = excluded.user_id,
             p256dh = excluded.p256dh, auth = excluded.auth, created_ms = excluded.created_ms",
        &[
            &s.endpoint,
            &user,
            &&s.p256dh[..],
            &&s.auth[..],
            &s.created_ms,
        ],
    )?;
    c.client.execute(
        "DELETE FROM push_subscriptions WHERE user_id = $1 AND endpoint <> $2
           AND endpoint NOT IN (SELECT endpoint FROM push_subscriptions
                                WHERE user_id = $1 AND endpoint <> $2
                                ORDER BY created_ms DESC, endpoint LIMIT $3)",
        &[&user, &s.endpoint, &(MAX_PUSH_SUBSCRIPTIONS as i64 - 1)],
    )?;
    Ok(())
}

pub(super) fn delete_subscription(c: &mut Conn, user: UserId, endpoint: &str) -> Res<()> {
    c.client.execute(
        "DELETE FROM push_subscriptions WHERE endpoint = $1 AND user_id = $2",
        &[&endpoint, &i64::from(user)],
    )?;
    Ok(())
}

pub(super) fn drop_subscription(c: &mut Conn, endpoint: &str, auth: &[u8; 16]) -> Res<()> {
    c.client.execute(
        "DELETE FROM push_subscriptions WHERE endpoint = $1 AND auth = $2",
        &[&endpoint, &&auth[..]],
    )?;
    Ok(())
}

pub(super) fn put_settings(c: &mut Conn, user: UserId, show_text: bool) -> Res<()> {
    c.client.execute(
        "INSERT INTO push_settings (user_id, show_text) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET show_text = excluded.show_text",
        &[&i64::from(user), &show_text],
    )?;
    Ok(())
}

/// The user's setting (the default without a row) and subscriptions,
/// oldest first; a row whose keys are not the stored size is skipped.
pub(super) fn profile(c: &mut Conn, user: UserId) -> Res<PushProfile> {
    let id = i64::from(user);
    let show_text = c
        .client
        .query_opt(
            "SELECT show_text FROM push_settings WHERE user_id = $1",
            &[&id],
        )?
        .is_none_or(|r| r.get(0));
    let rows = c.client.query(
        "SELECT endpoint, p256dh, auth, created_ms FROM push_subscriptions
         WHERE user_id = $1 ORDER BY created_ms, endpoint",
        &[&id],
    )?;
    let mut subscriptions = Vec::with_capacity(rows.len());
    for r in rows {
        let (p256dh, auth): (Vec<u8>, Vec<u8>) = (r.get(1), r.get(2));
        match (p256dh.try_into(), auth.try_into()) {
            (Ok(p256dh), Ok(auth)) => subscriptions.push(PushSubscription {
                user,
                endpoint: r.get(0),
                p256dh,
                auth,
                created_ms: r.get(3),
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
