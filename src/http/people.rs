//! What the account routes share with the rest of the HTTP desk: who a
//! request's token says is calling ([`Authed`]), what a storage answer
//! becomes once it is back ([`AfterWrite`], [`AfterRead`], [`Recheck`]), a
//! user's own view, and the refusals every account route gives.
//!
//! It sits below `routes.rs`, `account.rs` and `admin.rs` and imports none
//! of them: the desk (`routes.rs`) parks these values in its waits, and the
//! route files fill them in, so the vocabulary lives where all three can
//! reach it without reaching each other.

use serde::Serialize;

use super::request::Request;
use super::response::Response;
use crate::accounts::ChangeCursor;
use crate::clock;
use crate::config::USER_AGENT_MAX;
use crate::store::{Sid, UserId};
use crate::users::User;
use crate::ws::proto::{Profile, profile};

/// Who a request's token says is calling, checked in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authed {
    pub user: UserId,
    /// `None`: a token from before sessions.
    pub sid: Option<Sid>,
}

/// How an account write is answered once it committed.
pub(super) enum AfterWrite {
    /// 204.
    NoContent,
    /// 200 `{"user"}`, the caller's own view (`PUT /api/me`).
    Me(UserId),
    /// 200 `{"user"}`, an admin's view of a user.
    AdminUser(UserId),
    /// A login's session is stored: its token goes out.
    Login { user: UserId, sid: Sid, iat: u64 },
    /// 204 when the write changed room `0`; 404 `no_such_room` when
    /// storage has no such room (the write changed nothing).
    Room(String),
    /// 201 the new invite.
    Invite {
        code: String,
        uses: u32,
        expires_ms: i64,
    },
}

/// How an account read is answered.
pub(super) enum AfterRead {
    /// `GET /api/sessions`; `current` is marked.
    Sessions {
        current: Option<Sid>,
    },
    Invites,
    Audit,
}

/// What a checked password unlocks.
pub(super) enum Recheck {
    /// `POST /api/password`: the new password is hashed next.
    ChangePassword { new: String },
    /// `POST /api/me/delete`.
    DeleteAccount,
}

/// A user as they see themselves: everyone's view plus the email.
#[derive(Serialize)]
pub(super) struct Own<'a> {
    #[serde(flatten)]
    pub profile: Profile<'a>,
    /// `null` when none was given.
    pub email: Option<&'a str>,
}

pub(super) fn own(u: &User) -> Own<'_> {
    Own {
        profile: profile(u),
        email: (!u.email.is_empty()).then_some(&*u.email),
    }
}

/// 403 `banned`, saying why when a reason was given.
pub(super) fn banned(u: &User) -> Response {
    let reason = u.account.ban.as_ref().map_or("", |b| b.reason.as_str());
    let message = if reason.is_empty() {
        "this account is banned".to_string()
    } else {
        format!("this account is banned: {reason}")
    };
    Response::error(403, "banned", message)
}

pub(super) fn forbidden(why: impl Into<String>) -> Response {
    Response::error(403, "forbidden", why)
}

/// Text as stored: trimmed, at most `max` characters, no control
/// characters (a name or status is one line).
pub(super) fn one_line(s: &str, max: usize) -> Option<&str> {
    let t = s.trim();
    (t.chars().count() <= max && !t.chars().any(char::is_control)).then_some(t)
}

/// The client's `User-Agent`, cut to what a session keeps.
fn agent(req: &Request<'_>) -> String {
    let ua = req
        .header("user-agent")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    let mut end = ua.len().min(USER_AGENT_MAX);
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    ua[..end].chars().filter(|c| !c.is_control()).collect()
}

/// A cursor at the change log's head as `load` saw it.
pub(super) fn cursor_from(recent: &[i64]) -> ChangeCursor {
    ChangeCursor::new(recent, clock::now_ms())
}

/// The `agent` of a login request, for its session.
pub(super) fn login_agent(req: &Request<'_>) -> String {
    agent(req)
}
