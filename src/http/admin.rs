//! The moderation and administration routes of the HTTP desk (`impl
//! Http`): people with their roles and bans, password resets and ended
//! sessions, the audit log, the account settings, and invites. Who may do
//! what:
//!
//! | route | who |
//! |---|---|
//! | `GET /api/admin/users` | moderators, admins |
//! | `POST`/`DELETE /api/admin/users/{name}/ban` | moderators (on members), admins (on members and moderators) |
//! | `PUT /api/admin/users/{name}/role` | admins (never leaving the server without one) |
//! | `PUT /api/admin/users/{name}/password`, `DELETE …/sessions` | admins, on members and moderators |
//! | `POST`/`DELETE /api/admin/rooms/{name}/archive` | moderators, admins (never `general`) |
//! | `DELETE /api/admin/rooms/{name}` | admins (never `general`) |
//! | `GET /api/admin/audit`, `GET`/`PUT /api/admin/settings` | admins |
//! | `POST`/`GET /api/invites`, `DELETE /api/invites/{code}` | the `invites_by` role and up (moderators by default); each sees and revokes their own, admins all |
//!
//! Anyone else on an `/api/admin/` route: 403 `forbidden`. Every change is
//! written with its audit entry in one transaction and logged
//! (`seclog::audit`).

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::people::{AfterRead, AfterWrite, Authed, forbidden, one_line};
use super::request::Request;
use super::response::Response;
use super::routes::{Ctx, Handled, Http, Wait, bad_input, json_object, reply, valid_password};
use crate::auth::pool::Job;
use crate::clock;
use crate::config::{
    AUDIT_PAGE_DEFAULT, AUDIT_PAGE_MAX, INVITE_TTL_DEFAULT, INVITE_TTL_MAX, INVITE_USES_DEFAULT,
    INVITE_USES_MAX, REASON_MAX, RESERVED_ROOM_NAMES, SignupMode,
};
use crate::outbox::{ConnRef, Outbox};
use crate::store::accounts::outranks;
use crate::store::{
    AccountAnswer, AccountRead, AccountSettings, AccountWrite, Audit, InviteRow, Role, UserId,
};
use crate::users::{Directory, User};
use crate::ws::proto::{Profile, Ts, echo, profile};

/// A user as moderators see them: everyone's view, the email, the ban.
#[derive(Serialize)]
pub(super) struct AdminView<'a> {
    #[serde(flatten)]
    profile: Profile<'a>,
    email: Option<&'a str>,
    banned: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ban_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    banned_at: Option<Ts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    online: Option<bool>,
}

pub(super) fn admin_view(u: &User, online: Option<bool>) -> AdminView<'_> {
    let ban = u.account.ban.as_ref();
    AdminView {
        profile: profile(u),
        email: (!u.email.is_empty()).then_some(&*u.email),
        banned: ban.is_some(),
        ban_reason: ban.map(|b| b.reason.as_str()),
        banned_at: ban.map(|b| Ts(b.at_ms)),
        online,
    }
}

#[derive(Deserialize)]
struct RoleBody {
    role: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
struct NewPasswordBody {
    password: String,
}

#[derive(Deserialize)]
struct SettingsBody {
    signup: Option<String>,
    invites_by: Option<String>,
}

#[derive(Deserialize, Default)]
struct InviteBody {
    uses: Option<u64>,
    expires_in: Option<u64>,
}

/// The audit action of a role change (a static name per role).
pub(crate) fn role_action(r: Role) -> &'static str {
    match r {
        Role::Member => "set_role:member",
        Role::Moderator => "set_role:moderator",
        Role::Admin => "set_role:admin",
    }
}

/// A reason as stored: trimmed, one line, at most `REASON_MAX` characters.
fn reason_of(r: Option<String>) -> Result<String, Response> {
    let r = r.unwrap_or_default();
    one_line(&r, REASON_MAX).map(str::to_string).ok_or_else(|| {
        bad_input(format!(
            "reason must be at most {REASON_MAX} characters on one line"
        ))
    })
}

/// The optional `{"reason"}` body of a ban, an archive or a deletion, as
/// stored (an empty body is no reason).
fn reason_body(req: &Request<'_>) -> Result<String, Response> {
    let body = if req.body.trim_ascii().is_empty() {
        Ok(ReasonBody::default())
    } else {
        json_object::<ReasonBody>(req.body)
    };
    let body = body.map_err(|()| bad_input("expected a JSON object with a string field reason"))?;
    reason_of(body.reason)
}

/// A new invite code: 96 random bits, 16 URL-safe characters.
pub(crate) fn invite_code() -> String {
    let mut b = [0u8; 12];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the system CSPRNG is available");
    URL_SAFE_NO_PAD.encode(b)
}

impl Http {
    /// The lowest role that may make invites (moderators by default).
    pub(super) fn invites_by(&self) -> Role {
        self.settings.invites_by.unwrap_or(Role::Moderator)
    }

    /// Routes of this file; `None`: not one of them.
    pub(super) fn admin_route(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        addr: IpAddr,
        req: &Request<'_>,
    ) -> Option<Handled> {
        let admin = req.path.starts_with("/api/admin/");
        let invites = req.path == "/api/invites" || req.path.starts_with("/api/invites/");
        if !admin && !invites {
            return None;
        }
        let me = match self.caller(cx.users, req) {
            Ok(me) => me,
            Err(resp) => return Some(reply(cx, conn, req, resp)),
        };
        let role = cx.users.get(me.user).map_or(Role::Member, User::role);
        if invites {
            return Some(self.invites(cx, conn, addr, req, me, role));
        }
        if role < Role::Moderator {
            let resp = forbidden("moderators and admins only");
            return Some(reply(cx, conn, req, resp));
        }
        let parts: Vec<&str> = req.path["/api/admin/".len()..].split('/').collect();
        let handled = match (req.method, parts.as_slice()) {
            ("GET" | "HEAD", ["users"]) => {
                let users: Vec<AdminView<'_>> = cx
                    .users
                    .all()
                    .map(|u| admin_view(u, Some(cx.hub.is_online(u.id))))
                    .collect();
                reply(
                    cx,
                    conn,
                    req,
                    Response::json(200, &json!({ "users": users })),
                )
            }
            (method, ["users", name, what]) => {
                let name = super::request::percent_decode(name)
                    .map(|n| n.into_owned())
                    .unwrap_or_default();
                self.on_user(cx, conn, addr, req, me, role, method, &name, what)
            }
            (method, ["rooms", name, "archive"]) => {
                self.on_room(cx, conn, addr, req, me, role, method, name, true)
            }
            (method, ["rooms", name]) => {
                self.on_room(cx, conn, addr, req, me, role, method, name, false)
            }
            ("GET" | "HEAD", ["audit"]) if role == Role::Admin => self.audit(cx, conn, req),
            ("GET" | "HEAD", ["settings"]) if role == Role::Admin => {
                let resp = Response::json(
                    200,
                    &json!({
                        "signup": self.signup_mode().as_str(),
                        "signup_locked": self.signup_flag.is_some(),
                        "invites_by": self.invites_by().as_str(),
                    }),
                );
                reply(cx, conn, req, resp)
            }
            ("PUT", ["settings"]) if role == Role::Admin => {
                self.put_settings(cx, conn, addr, req, me)
            }
            (_, ["audit" | "settings"]) => reply(cx, conn, req, forbidden("admins only")),
            _ => reply(
                cx,
                conn,
                req,
                Response::error(404, "not_found", "no such endpoint"),
            ),
        };
        Some(handled)
    }

    /// `/api/admin/users/{name}/{ban|role|password|sessions}`.
    #[allow(clippy::too_many_arguments)]
    fn on_user(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        addr: IpAddr,
        req: &Request<'_>,
        me: Authed,
        role: Role,
        method: &str,
        name: &str,
        what: &str,
    ) -> Handled {
        let keep_alive = req.keep_alive();
        let Some(target) = cx.users.find(name) else {
            let resp = Response::error(
                404,
                "no_such_user",
                format!("no user called {}", echo(name)),
            );
            return reply(cx, conn, req, resp);
        };
        let (target_id, target_role, target_name) =
            (target.id, target.role(), target.name.to_string());
        let now = clock::now_ms();
        let audit = |action: &'static str, reason: String| Audit {
            at_ms: now,
            actor: Some(me.user),
            action,
            target: target_name.clone(),
            reason,
        };
        // Acting on someone needs a higher role, and never on oneself.
        let outranked = me.user != target_id && outranks(role, target_role);
        match (method, what) {
            ("POST" | "DELETE", "ban") => {
                if !outranked {
                    let resp = forbidden("you may ban only users of a lower role than yours");
                    return reply(cx, conn, req, resp);
                }
                let (write, a) = if method == "POST" {
                    let reason = match reason_body(req) {
                        Ok(r) => r,
                        Err(resp) => return reply(cx, conn, req, resp),
                    };
                    let write = AccountWrite::Ban {
                        user: target_id,
                        reason: reason.clone(),
                        at_ms: now,
                    };
                    (write, audit("ban", reason))
                } else {
                    (
                        AccountWrite::Unban { user: target_id },
                        audit("unban", String::new()),
                    )
                };
                self.write_account(
                    cx,
                    conn,
                    keep_alive,
                    write,
                    Some((a, addr)),
                    AfterWrite::NoContent,
                )
            }
            ("PUT", "role") => {
                if role != Role::Admin {
                    return reply(cx, conn, req, forbidden("only admins change roles"));
                }
                let Ok(body) = json_object::<RoleBody>(req.body) else {
                    return reply(
                        cx,
                        conn,
                        req,
                        bad_input("expected a JSON object with a string field role"),
                    );
                };
                let Some(new) = Role::parse(&body.role) else {
                    return reply(
                        cx,
                        conn,
                        req,
                        bad_input("role must be admin, moderator or member"),
                    );
                };
                let reason = match reason_of(body.reason) {
                    Ok(r) => r,
                    Err(resp) => return reply(cx, conn, req, resp),
                };
                let a = audit(role_action(new), reason);
                let write = AccountWrite::SetRole {
                    user: target_id,
                    role: new,
                };
                self.write_account(
                    cx,
                    conn,
                    keep_alive,
                    write,
                    Some((a, addr)),
                    AfterWrite::AdminUser(target_id),
                )
            }
            ("PUT", "password") => {
                if role != Role::Admin || !outranked {
                    return reply(
                        cx,
                        conn,
                        req,
                        forbidden("admins reset the passwords of members and moderators"),
                    );
                }
                let Ok(body) = json_object::<NewPasswordBody>(req.body) else {
                    return reply(
                        cx,
                        conn,
                        req,
                        bad_input("expected a JSON object with a string field password"),
                    );
                };
                if !valid_password(&body.password) {
                    return reply(
                        cx,
                        conn,
                        req,
                        bad_input("password must be 8-128 characters"),
                    );
                }
                let a = audit("reset_password", String::new());
                self.hash_new_password(cx, conn, req, addr, target_id, Some(a), body.password)
            }
            ("DELETE", "sessions") => {
                if role != Role::Admin || !outranked {
                    return reply(
                        cx,
                        conn,
                        req,
                        forbidden("admins end the sessions of members and moderators"),
                    );
                }
                let a = audit("end_sessions", String::new());
                let write = AccountWrite::EndSessions {
                    user: target_id,
                    except: None,
                    at_ms: now,
                };
                self.write_account(
                    cx,
                    conn,
                    keep_alive,
                    write,
                    Some((a, addr)),
                    AfterWrite::NoContent,
                )
            }
            (_, "ban" | "role" | "password" | "sessions") => {
                let resp = Response::error(
                    405,
                    "method_not_allowed",
                    format!("{} is not allowed here", echo(method)),
                );
                reply(cx, conn, req, resp)
            }
            _ => reply(
                cx,
                conn,
                req,
                Response::error(404, "not_found", "no such endpoint"),
            ),
        }
    }

    /// `POST`/`DELETE /api/admin/rooms/{name}/archive` (`archive`) and
    /// `DELETE /api/admin/rooms/{name}` (other methods are 405 before
    /// this): 204 once stored, 404 when storage has no such room (this
    /// node's memory may not hold a room opened on another one); every
    /// node applies it from the change log (`hub/accounts.rs`).
    #[allow(clippy::too_many_arguments)]
    fn on_room(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        addr: IpAddr,
        req: &Request<'_>,
        me: Authed,
        role: Role,
        method: &str,
        name: &str,
        archive: bool,
    ) -> Handled {
        let name = super::request::percent_decode(name)
            .map(|n| n.into_owned())
            .unwrap_or_default();
        if !archive && role != Role::Admin {
            return reply(cx, conn, req, forbidden("only admins delete rooms"));
        }
        if RESERVED_ROOM_NAMES.contains(&name.as_str()) {
            let resp = forbidden(format!(
                "{name} is the room everyone starts in: it stays open"
            ));
            return reply(cx, conn, req, resp);
        }
        let reason = match reason_body(req) {
            Ok(r) => r,
            Err(resp) => return reply(cx, conn, req, resp),
        };
        let at_ms = clock::now_ms();
        let (write, action) = match (archive, method) {
            (true, "POST") => (
                AccountWrite::ArchiveRoom {
                    room: name.clone(),
                    archived: true,
                },
                "archive_room",
            ),
            (true, _) => (
                AccountWrite::ArchiveRoom {
                    room: name.clone(),
                    archived: false,
                },
                "unarchive_room",
            ),
            (false, _) => (
                AccountWrite::DeleteRoom {
                    room: name.clone(),
                    at_ms,
                },
                "delete_room",
            ),
        };
        let a = Audit {
            at_ms,
            actor: Some(me.user),
            action,
            target: name.clone(),
            reason,
        };
        self.write_account(
            cx,
            conn,
            req.keep_alive(),
            write,
            Some((a, addr)),
            AfterWrite::Room(name),
        )
    }

    /// Hashes an admin's new password for `user` on the pool; stored with
    /// every session ended.
    #[allow(clippy::too_many_arguments)]
    fn hash_new_password(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        req: &Request<'_>,
        addr: IpAddr,
        user: UserId,
        audit: Option<Audit>,
        password: String,
    ) -> Handled {
        let keep_alive = req.keep_alive();
        let ticket = self.park(Wait::NewPassword {
            conn,
            keep_alive,
            user,
            keep: None,
            audit: audit.map(|a| (a, addr)),
        });
        // Not throttled: the admin is authenticated, and the pool's fair
        // queue still gives the admin's address its turn, no more.
        let client = crate::auth::throttle::ClientKey::of(addr);
        if let Err(full) = self
            .hasher
            .submit(ticket, conn, client, Job::Hash { password })
        {
            self.waiting.remove(&ticket);
            let resp = self.queue_full(cx.out, full);
            return reply(cx, conn, req, resp);
        }
        self.dispatch(cx);
        Handled::Waiting
    }

    /// `GET /api/admin/audit[?before=ID][&limit=N]`, newest first.
    fn audit(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        req: &Request<'_>,
    ) -> Handled {
        let num = |k: &str| {
            req.query_param(k)
                .map(|v| v.parse::<i64>().ok().filter(|n| *n > 0))
        };
        let (before, limit) = match (num("before"), num("limit")) {
            (Some(None), _) | (_, Some(None)) => {
                return reply(
                    cx,
                    conn,
                    req,
                    bad_input("before and limit must be positive integers"),
                );
            }
            (b, l) => (b.flatten(), l.flatten()),
        };
        let limit = limit.map_or(AUDIT_PAGE_DEFAULT, |l| (l as usize).min(AUDIT_PAGE_MAX));
        self.read_account(
            cx,
            conn,
            req,
            AccountRead::Audit { before, limit },
            AfterRead::Audit,
        )
    }

    /// `PUT /api/admin/settings` `{"signup","invites_by"}` (either or both).
    fn put_settings(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        addr: IpAddr,
        req: &Request<'_>,
        me: Authed,
    ) -> Handled {
        let Ok(body) = json_object::<SettingsBody>(req.body) else {
            return reply(
                cx,
                conn,
                req,
                bad_input("expected a JSON object with signup and/or invites_by"),
            );
        };
        let signup = match body.signup.as_deref().map(SignupMode::parse) {
            Some(None) => {
                return reply(
                    cx,
                    conn,
                    req,
                    bad_input("signup must be open, invite or closed"),
                );
            }
            s => s.flatten(),
        };
        let invites_by = match body.invites_by.as_deref().map(Role::parse) {
            Some(None) => {
                return reply(
                    cx,
                    conn,
                    req,
                    bad_input("invites_by must be admin, moderator or member"),
                );
            }
            r => r.flatten(),
        };
        if signup.is_some() && self.signup_flag.is_some() {
            let resp = forbidden(
                "the operator set the signup mode with --signup; it cannot be changed here",
            );
            return reply(cx, conn, req, resp);
        }
        if signup.is_none() && invites_by.is_none() {
            return reply(cx, conn, req, bad_input("give signup or invites_by"));
        }
        let changed: Vec<String> = [
            signup.map(|m| format!("signup={}", m.as_str())),
            invites_by.map(|r| format!("invites_by={}", r.as_str())),
        ]
        .into_iter()
        .flatten()
        .collect();
        let a = Audit {
            at_ms: clock::now_ms(),
            actor: Some(me.user),
            action: "settings",
            target: changed.join(" "),
            reason: String::new(),
        };
        let write = AccountWrite::SetSettings(AccountSettings { signup, invites_by });
        self.write_account(
            cx,
            conn,
            req.keep_alive(),
            write,
            Some((a, addr)),
            AfterWrite::NoContent,
        )
    }

    /// `/api/invites` and `/api/invites/{code}`.
    fn invites(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        addr: IpAddr,
        req: &Request<'_>,
        me: Authed,
        role: Role,
    ) -> Handled {
        if role < self.invites_by() {
            let resp = forbidden(format!(
                "only {}s and up make invites here",
                self.invites_by().as_str()
            ));
            return reply(cx, conn, req, resp);
        }
        let now = clock::now_ms();
        let code = req.path.strip_prefix("/api/invites/");
        match (req.method, code) {
            ("POST", None) => {
                let body = if req.body.trim_ascii().is_empty() {
                    Ok(InviteBody::default())
                } else {
                    json_object::<InviteBody>(req.body)
                };
                let Ok(body) = body else {
                    return reply(
                        cx,
                        conn,
                        req,
                        bad_input("expected a JSON object with uses and expires_in (integers)"),
                    );
                };
                let uses = body.uses.unwrap_or(u64::from(INVITE_USES_DEFAULT));
                let ttl = body.expires_in.unwrap_or(INVITE_TTL_DEFAULT.as_secs());
                if !(1..=u64::from(INVITE_USES_MAX)).contains(&uses) {
                    return reply(
                        cx,
                        conn,
                        req,
                        bad_input(format!("uses must be 1-{INVITE_USES_MAX}")),
                    );
                }
                if !(1..=INVITE_TTL_MAX.as_secs()).contains(&ttl) {
                    let resp = bad_input(format!(
                        "expires_in must be 1-{} seconds",
                        INVITE_TTL_MAX.as_secs()
                    ));
                    return reply(cx, conn, req, resp);
                }
                let code = invite_code();
                let expires_ms = now + ttl as i64 * 1000;
                let uses = uses as u32;
                let a = Audit {
                    at_ms: now,
                    actor: Some(me.user),
                    action: "create_invite",
                    target: code.clone(),
                    reason: format!("{uses} uses, {ttl} s"),
                };
                let write = AccountWrite::PutInvite(InviteRow {
                    code: code.clone(),
                    created_by: Some(me.user),
                    created_ms: now,
                    expires_ms,
                    uses,
                    used: 0,
                    revoked_ms: None,
                });
                let then = AfterWrite::Invite {
                    code,
                    uses,
                    expires_ms,
                };
                self.write_account(cx, conn, req.keep_alive(), write, Some((a, addr)), then)
            }
            ("GET" | "HEAD", None) => {
                let by = (role != Role::Admin).then_some(me.user);
                let read = AccountRead::Invites { by, now_ms: now };
                self.read_account(cx, conn, req, read, AfterRead::Invites)
            }
            ("DELETE", Some(code)) if !code.is_empty() && !code.contains('/') => {
                let a = Audit {
                    at_ms: now,
                    actor: Some(me.user),
                    action: "revoke_invite",
                    target: code.to_string(),
                    reason: String::new(),
                };
                let write = AccountWrite::RevokeInvite {
                    code: code.to_string(),
                    by: (role != Role::Admin).then_some(me.user),
                    at_ms: now,
                };
                self.write_account(
                    cx,
                    conn,
                    req.keep_alive(),
                    write,
                    Some((a, addr)),
                    AfterWrite::NoContent,
                )
            }
            _ => reply(
                cx,
                conn,
                req,
                Response::error(404, "not_found", "no such endpoint"),
            ),
        }
    }
}

/// The answer to an account read.
pub(super) fn read_response(users: &Directory, then: AfterRead, answer: AccountAnswer) -> Response {
    let name = |id: Option<UserId>| id.map(|i| users.name(i));
    match (then, answer) {
        (AfterRead::Sessions { current }, AccountAnswer::Sessions(rows)) => {
            let sessions: Vec<_> = rows
                .iter()
                .map(|s| {
                    json!({
                        "id": s.sid.to_string(),
                        "created_at": Ts(s.created_ms),
                        "expires_at": Ts(s.expires_ms),
                        "address": s.address,
                        "agent": s.agent,
                        "current": Some(s.sid) == current,
                    })
                })
                .collect();
            Response::json(200, &json!({ "sessions": sessions }))
        }
        (AfterRead::Invites, AccountAnswer::Invites(rows)) => {
            let invites: Vec<_> = rows
                .iter()
                .map(|i| {
                    json!({
                        "code": i.code,
                        "uses": i.uses,
                        "used": i.used,
                        "expires_at": Ts(i.expires_ms),
                        "created_at": Ts(i.created_ms),
                        "created_by": name(i.created_by),
                    })
                })
                .collect();
            Response::json(200, &json!({ "invites": invites }))
        }
        (AfterRead::Audit, AccountAnswer::Audit(rows)) => {
            let entries: Vec<_> = rows
                .iter()
                .map(|e| {
                    json!({
                        "id": e.id,
                        "at": Ts(e.at_ms),
                        "actor": name(e.actor),
                        "action": e.action,
                        "target": e.target,
                        "reason": e.reason,
                    })
                })
                .collect();
            Response::json(200, &json!({ "entries": entries }))
        }
        _ => Response::error(500, "internal", "an answer of the wrong kind"),
    }
}
