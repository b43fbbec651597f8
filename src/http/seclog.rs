//! The lines an operator's tools read: failed logins, throttling, refused
//! banned users and every admin action, at info level with the client
//! address, in one format that does not change, so a fail2ban-style
//! filter can match it.
//!
//! Two log targets: `hubbub::security` (what a client did that a ban
//! tool may count) and `hubbub::audit` (what moderators and admins did,
//! as the audit log also keeps it). Each line is an event name, then
//! `addr=` (always the first field, so a name cannot shift it), then the
//! rest; names and reasons are quoted with Rust's escapes, so no client
//! text can forge a line or a field.

use std::net::IpAddr;

use crate::auth::throttle::By;
use crate::config::ECHO_MAX_CHARS;
use crate::store::Audit;
use crate::users::Directory;

/// The target of the security lines.
pub const SECURITY: &str = "hubbub::security";
/// The target of the audit lines.
pub const AUDIT: &str = "hubbub::audit";

/// Client text as a log field: quoted, escaped, cut.
fn quoted(s: &str) -> String {
    let cut: String = s.chars().take(ECHO_MAX_CHARS).collect();
    format!("{cut:?}")
}

/// A wrong password (or an unknown name) for `what` ("login", or
/// "password check" for a change or a deletion).
pub fn login_failed(what: &str, addr: IpAddr, user: &str) {
    log::info!(target: SECURITY, "{what} failed addr={} user={}", addr.to_canonical(), quoted(user));
}

/// Password work refused over a budget.
pub fn throttled(what: &str, addr: IpAddr, user: &str, by: By) {
    let by = match by {
        By::Address => "address",
        By::Username => "username",
    };
    log::info!(
        target: SECURITY,
        "{what} throttled addr={} by={by} user={}",
        addr.to_canonical(),
        quoted(user)
    );
}

/// A banned user was refused (`what`: "login", "request", "upgrade").
pub fn banned(what: &str, addr: IpAddr, user: &str) {
    log::info!(
        target: SECURITY,
        "{what} refused addr={} why=banned user={}",
        addr.to_canonical(),
        quoted(user)
    );
}

/// A moderator's or admin's action, as the audit log keeps it.
pub fn audit(a: &Audit, users: &Directory, addr: IpAddr) {
    let actor = a.actor.map_or("(command line)", |id| users.name(id));
    log::info!(
        target: AUDIT,
        "{} addr={} actor={} target={} reason={}",
        a.action,
        addr.to_canonical(),
        quoted(actor),
        quoted(&a.target),
        quoted(&a.reason)
    );
}
