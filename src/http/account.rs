//! The account routes of the HTTP desk (`impl Http`): logging out, the
//! caller's sessions, WebSocket tickets, changing the password, the
//! caller's profile, deleting the account, what anyone may know before
//! signing in (`GET /api/server`: the signup mode). And
//! what every account route shares: who the caller is ([`Http::caller`]:
//! a token's session, checked in memory), account writes answered once
//! storage committed them, and applying what a write or the change-log
//! poll brings back (the user directory, the ended sessions, the
//! settings) before the hub is told ([`AccountEvent`]s).
//!
//! Admin routes are `admin.rs`'; both answer through [`AfterWrite`] and
//! [`AfterRead`].

use std::net::IpAddr;
use std::time::Instant;

use serde::Deserialize;
use serde_json::json;

use super::people::{AfterRead, AfterWrite, Authed, Recheck, banned, forbidden, one_line, own};
use super::request::Request;
use super::response::Response;
use super::routes::{
    Ctx, Handled, Http, Wait, answer, bad_input, busy, json_object, reply, send, unauthorized,
    valid_password,
};
use crate::accounts::{AccountEvent, PeerNote};
use crate::auth::jwt::Tokens;
use crate::auth::pool::Job;
use crate::auth::sessions::new_sid;
use crate::auth::throttle::{ClientKey, LoginPass};
use crate::clock;
use crate::config::{DISPLAY_NAME_MAX, STATUS_MAX, SignupMode};
use crate::outbox::{ConnRef, Outbox};
use crate::store::{
    AccountAnswer, AccountNews, AccountRead, AccountRefusal, AccountWrite, Audit, PasswordHash,
    Request as StoreRequest, Role, SessionRow, Sid, Ticket, UserId,
};
use crate::users::Directory;
use crate::ws::proto::Ts;

#[derive(Deserialize)]
struct PasswordBody {
    old: String,
    new: String,
}

#[derive(Deserialize)]
struct ConfirmBody {
    password: String,
}

/// `PUT /api/me`: each field optional; a `null` display name clears it.
#[derive(Deserialize)]
struct ProfileBody {
    #[serde(default, deserialize_with = "present")]
    display_name: Option<Option<String>>,
    status: Option<String>,
}

/// A field that is present (`Some`), `null` included (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl Http {
    /// The caller of a request with a bearer token: 401 without a good
    /// token or for an ended session, 403 `banned` for a banned user.
    pub(super) fn caller(&self, users: &Directory, req: &Request<'_>) -> Result<Authed, Response> {
        self.check_token(users, req.bearer())
    }

    /// The user of a request's bearer token, checked as [`Http::caller`]
    /// does, for the file desk; `None` when it has no token.
    pub fn check_bearer(
        &self,
        users: &Directory,
        req: &Request<'_>,
    ) -> Option<Result<UserId, Response>> {
        req.bearer()
            .map(|t| self.check_token(users, Some(t)).map(|a| a.user))
    }

    /// [`Http::caller`] for a token from anywhere (the upgrade's `?token=`).
    pub(super) fn check_token(
        &self,
        users: &Directory,
        token: Option<&str>,
    ) -> Result<Authed, Response> {
        let v = token
            .and_then(|t| self.tokens.verify(t))
            .ok_or_else(unauthorized)?;
        let u = users
            .get(v.user)
            .filter(|u| !u.is_deleted())
            .ok_or_else(unauthorized)?;
        let alive = match v.sid {
            Some(sid) => !self.revoked.is_ended(sid),
            // A token from before sessions belongs to one session per user,
            // ended by moving `sessions_after_ms` past it.
            None => (v.iat as i64) * 1000 > u.account.sessions_after_ms,
        };
        if !alive {
            return Err(unauthorized());
        }
        if u.is_banned() {
            return Err(banned(u));
        }
        Ok(Authed {
            user: u.id,
            sid: v.sid,
        })
    }

    /// Who may sign up now: the operator's `--signup`, else an admin's
    /// setting, else open.
    pub(super) fn signup_mode(&self) -> SignupMode {
        self.signup_flag
            .or(self.settings.signup)
            .unwrap_or_default()
    }

    /// Submits an account write; answered by `then` once it committed.
    /// An `audit` entry is written with it, and logged (from `addr`) once
    /// it committed.
    pub(super) fn write_account(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        keep_alive: bool,
        write: AccountWrite,
        audit: Option<(Audit, IpAddr)>,
        then: AfterWrite,
    ) -> Handled {
        let (audit, log) = match audit {
            Some((a, addr)) => (Some(a.clone()), Some((a, addr))),
            None => (None, None),
        };
        let ticket = self.park(Wait::Account {
            conn,
            keep_alive,
            then,
            log,
        });
        let req = StoreRequest::Account {
            ticket,
            write,
            audit,
        };
        if cx.store.submit(req).is_err() {
            self.waiting.remove(&ticket);
            send(cx.out, conn.token, busy(), keep_alive, false);
            return Handled::Done;
        }
        Handled::Waiting
    }

    /// Submits an account read; answered by `then`.
    pub(super) fn read_account(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        req: &Request<'_>,
        read: AccountRead,
        then: AfterRead,
    ) -> Handled {
        let (keep_alive, head_only) = (req.keep_alive(), req.method == "HEAD");
        let ticket = self.park(Wait::AccountRead {
            conn,
            keep_alive,
            head_only,
            then,
        });
        if cx
            .store
            .submit(StoreRequest::AccountRead { ticket, read })
            .is_err()
        {
            self.waiting.remove(&ticket);
            send(cx.out, conn.token, busy(), keep_alive, head_only);
            return Handled::Done;
        }
        Handled::Waiting
    }

    /// Storage answered an account write (`None`: it failed). What it
    /// changed is applied first, so the answer and the hub's events see
    /// the new state.
    pub fn on_account_written(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        ticket: Ticket,
        outcome: Option<Result<AccountNews, AccountRefusal>>,
    ) {
        let Some(Wait::Account {
            conn,
            keep_alive,
            then,
            log,
        }) = self.waiting.remove(&ticket)
        else {
            return;
        };
        let resp = match outcome {
            None => Response::error(500, "internal", "the change could not be saved; try again"),
            Some(Err(refusal)) => refusal_response(refusal),
            Some(Ok(news)) if matches!(&then, AfterWrite::Room(_)) && news.rooms.is_empty() => {
                let AfterWrite::Room(name) = then else {
                    unreachable!()
                };
                Response::error(
                    404,
                    "no_such_room",
                    format!("no room called {}", crate::ws::proto::echo(&name)),
                )
            }
            Some(Ok(news)) => {
                if let Some((a, addr)) = &log {
                    super::seclog::audit(a, cx.users, *addr);
                }
                let changed = !news.changes.is_empty();
                self.cursor.saw(&news.changes, clock::now_ms());
                self.apply_news(cx.users, news);
                if changed {
                    self.events.push(AccountEvent::Announce);
                }
                self.after_write(cx.users, then)
            }
        };
        answer(cx.out, conn, resp, keep_alive);
    }

    /// The answer to a committed write.
    fn after_write(&self, users: &Directory, then: AfterWrite) -> Response {
        match then {
            AfterWrite::NoContent | AfterWrite::Room(_) => {
                Response::new(204, "text/plain", &b""[..])
            }
            AfterWrite::Me(id) => match users.get(id) {
                Some(u) => Response::json(200, &json!({ "user": own(u) })),
                None => unauthorized(),
            },
            AfterWrite::AdminUser(id) => match users.get(id) {
                Some(u) => {
                    Response::json(200, &json!({ "user": super::admin::admin_view(u, None) }))
                }
                None => Response::error(404, "no_such_user", "no such user"),
            },
            AfterWrite::Login { user, sid, iat } => match users.get(user) {
                Some(u) => {
                    let (token, exp) = self.tokens.issue(u.id, &u.name, sid, iat);
                    Response::json(
                        200,
                        &json!({
                            "token": token,
                            "expires_at": Ts(exp as i64 * 1000),
                            "user": own(u),
                        }),
                    )
                }
                None => Response::error(
                    401,
                    "invalid_credentials",
                    "unknown username or wrong password",
                ),
            },
            AfterWrite::Invite {
                code,
                uses,
                expires_ms,
            } => Response::json(
                201,
                &json!({"code": code, "uses": uses, "expires_at": Ts(expires_ms)}),
            ),
        }
    }

    /// Storage answered an account read (`None`: it failed).
    pub fn on_account_read(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        ticket: Ticket,
        answer_: Option<AccountAnswer>,
    ) {
        match self.waiting.remove(&ticket) {
            Some(Wait::Poll) => {
                self.polling = false;
                if let Some(AccountAnswer::Changes(news)) = answer_ {
                    self.cursor.saw(&news.changes, clock::now_ms());
                    self.apply_news(cx.users, news);
                }
                if std::mem::take(&mut self.poll_again) {
                    self.poll_accounts(cx);
                }
            }
            Some(Wait::AccountRead {
                conn,
                keep_alive,
                head_only,
                then,
            }) => {
                if !cx.out.is_live(conn) {
                    return;
                }
                let resp = match answer_ {
                    None => Response::error(500, "internal", "could not read that; try again"),
                    Some(a) => super::admin::read_response(cx.users, then, a),
                };
                send(cx.out, conn.token, resp, keep_alive, head_only);
                cx.out.resume_http(conn.token);
            }
            _ => {}
        }
    }

    /// Applies news from storage: users to the directory, ended sessions
    /// to the revocations, settings; each change becomes an event for the
    /// hub, as each room's does (the hub owns the rooms).
    fn apply_news(&mut self, users: &mut Directory, news: AccountNews) {
        for row in news.users {
            if let Some(c) = users.apply(row) {
                // A new user is news to nobody's screen until they speak
                // or connect; the rest is.
                if !c.new && (c.banned || c.deleted || c.shown) {
                    self.events.push(AccountEvent::User(c));
                }
                if c.legacy_ended {
                    self.events.push(AccountEvent::LegacyEnded { user: c.id });
                }
            }
        }
        let mut ended: Vec<(UserId, Sid)> = news
            .ended
            .into_iter()
            .filter(|e| self.revoked.end(*e))
            .map(|e| (e.user, e.sid))
            .collect();
        ended.sort_unstable();
        for chunk in ended.chunk_by(|a, b| a.0 == b.0) {
            self.events.push(AccountEvent::SessionsEnded {
                user: chunk[0].0,
                sids: chunk.iter().map(|e| e.1).collect(),
            });
        }
        if let Some(s) = news.settings {
            self.settings = s;
        }
        self.events
            .extend(news.rooms.into_iter().map(AccountEvent::Room));
    }

    /// Asks storage what changed since the last poll (once at a time;
    /// asked again meanwhile, it polls again when the answer comes).
    pub fn poll_accounts(&mut self, cx: &mut Ctx<'_, impl Outbox>) {
        if self.polling {
            self.poll_again = true;
            return;
        }
        let (after, gaps) = self.cursor.ask();
        let ticket = self.park(Wait::Poll);
        let read = AccountRead::Changes { after, gaps };
        if cx
            .store
            .submit(StoreRequest::AccountRead { ticket, read })
            .is_err()
        {
            // Storage is full: the next tick asks again.
            self.waiting.remove(&ticket);
            return;
        }
        self.polling = true;
    }

    /// Once a second: expired entries go, holes that waited long enough
    /// are given up, and the change log is polled.
    pub fn on_tick(&mut self, cx: &mut Ctx<'_, impl Outbox>) {
        let now = clock::now_ms();
        self.revoked.sweep(now);
        self.tickets.sweep(now);
        self.cursor.expire(now);
        self.poll_accounts(cx);
    }

    /// Another node said something for this desk.
    pub fn on_peer_note(&mut self, cx: &mut Ctx<'_, impl Outbox>, note: PeerNote) {
        match note {
            PeerNote::Poll => self.poll_accounts(cx),
            PeerNote::TicketUsed { id, expires_ms } => self.tickets.mark_used(id, expires_ms),
        }
    }

    /// What the hub must do about account changes since the last call.
    pub fn take_events(&mut self) -> Vec<AccountEvent> {
        std::mem::take(&mut self.events)
    }

    /// Starts a login's session, once its password checked out (and the
    /// user is not banned): the token goes out when the session is stored.
    pub(super) fn open_session(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        keep_alive: bool,
        user: UserId,
        addr: IpAddr,
        agent: String,
    ) {
        let iat = clock::now_ms() as u64 / 1000;
        let sid = new_sid();
        let row = SessionRow {
            sid,
            user,
            created_ms: clock::now_ms(),
            expires_ms: Tokens::expiry(iat) as i64 * 1000,
            address: addr.to_canonical().to_string(),
            agent,
            ended_ms: None,
        };
        let then = AfterWrite::Login { user, sid, iat };
        if let Handled::Done = self.write_account(
            cx,
            conn,
            keep_alive,
            AccountWrite::OpenSession(row),
            None,
            then,
        ) {
            cx.out.resume_http(conn.token);
        }
    }

    /// Routes of this file; `None`: not one of them.
    pub(super) fn account_route(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        addr: IpAddr,
        req: &Request<'_>,
    ) -> Option<Handled> {
        let keep_alive = req.keep_alive();
        let route = (req.method, req.path);
        if route == ("GET", "/api/server") || route == ("HEAD", "/api/server") {
            let resp = Response::json(200, &json!({"signup": self.signup_mode().as_str()}));
            send(cx.out, conn.token, resp, keep_alive, req.method == "HEAD");
            return Some(Handled::Done);
        }
        let handled = match route {
            ("POST", "/api/logout") => self.logout(cx, conn, req),
            ("POST", "/api/ws-ticket") => self.ws_ticket(cx, conn, req),
            ("POST", "/api/password") => self.change_password(cx, conn, addr, req),
            ("GET" | "HEAD", "/api/sessions") => match self.caller(cx.users, req) {
                Err(resp) => reply(cx, conn, req, resp),
                Ok(me) => {
                    let read = AccountRead::Sessions {
                        user: me.user,
                        now_ms: clock::now_ms(),
                    };
                    let then = AfterRead::Sessions { current: me.sid };
                    self.read_account(cx, conn, req, read, then)
                }
            },
            ("DELETE", "/api/sessions") => match self.caller(cx.users, req) {
                Err(resp) => reply(cx, conn, req, resp),
                Ok(me) => {
                    let write = AccountWrite::EndSessions {
                        user: me.user,
                        except: me.sid,
                        at_ms: clock::now_ms(),
                    };
                    self.write_account(cx, conn, keep_alive, write, None, AfterWrite::NoContent)
                }
            },
            ("DELETE", p) if p.starts_with("/api/sessions/") => {
                let id = &p["/api/sessions/".len()..];
                match (self.caller(cx.users, req), Sid::parse(id)) {
                    (Err(resp), _) => reply(cx, conn, req, resp),
                    (Ok(_), None) => reply(
                        cx,
                        conn,
                        req,
                        Response::error(404, "not_found", "no such session"),
                    ),
                    (Ok(me), Some(sid)) => {
                        let write = AccountWrite::EndSession {
                            user: me.user,
                            sid,
                            at_ms: clock::now_ms(),
                        };
                        self.write_account(cx, conn, keep_alive, write, None, AfterWrite::NoContent)
                    }
                }
            }
            ("PUT", "/api/me") => self.put_me(cx, conn, req),
            ("POST", "/api/me/delete") => self.delete_me(cx, conn, addr, req),
            _ => return None,
        };
        Some(handled)
    }

    /// `POST /api/logout`: the caller's session ends (204); its token is
    /// refused from the commit on, here and, within the second, on every
    /// node, and its sockets close with 4001.
    fn logout(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        req: &Request<'_>,
    ) -> Handled {
        let me = match self.caller(cx.users, req) {
            Ok(me) => me,
            Err(resp) => return reply(cx, conn, req, resp),
        };
        let at_ms = clock::now_ms();
        let write = match me.sid {
            Some(sid) => AccountWrite::EndSession {
                user: me.user,
                sid,
                at_ms,
            },
            None => AccountWrite::EndLegacySessions {
                user: me.user,
                at_ms,
            },
        };
        self.write_account(
            cx,
            conn,
            req.keep_alive(),
            write,
            None,
            AfterWrite::NoContent,
        )
    }

    /// `POST /api/ws-ticket`: 201 a ticket for one WebSocket within 30 s.
    fn ws_ticket(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        req: &Request<'_>,
    ) -> Handled {
        let resp = match self.caller(cx.users, req) {
            Err(resp) => resp,
            Ok(me) => {
                let (ticket, expires_ms) = self.tickets.issue(me.user, me.sid, clock::now_ms());
                Response::json(
                    201,
                    &json!({"ticket": ticket, "expires_at": Ts(expires_ms)}),
                )
            }
        };
        reply(cx, conn, req, resp)
    }

    /// Admits a password check of `user`'s password as a login attempt
    /// would be (the address's hash work, the username's failures) and
    /// sends it to the pool; `next` says what a good password unlocks.
    #[allow(clippy::too_many_arguments)]
    fn recheck(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        req: &Request<'_>,
        addr: IpAddr,
        me: Authed,
        password: String,
        next: Recheck,
    ) -> Handled {
        let keep_alive = req.keep_alive();
        let client = ClientKey::of(addr);
        let Some(u) = cx.users.get(me.user) else {
            return reply(cx, conn, req, unauthorized());
        };
        let (stored, name) = (u.password.clone(), u.name.to_string());
        let pass = match self
            .throttle
            .admit(client, stored.iterations, Some(&name), Instant::now())
        {
            Ok(pass) => pass,
            Err(refused) => {
                cx.out.metrics().auth_throttled_username += 1;
                super::seclog::throttled("password check", addr, &name, refused.by);
                return reply(cx, conn, req, super::routes::throttled(refused));
            }
        };
        let ticket = self.park(Wait::Recheck {
            conn,
            keep_alive,
            me,
            client,
            addr,
            pass: pass.clone(),
            next,
        });
        let job = Job::Verify { password, stored };
        if let Err(full) = self.hasher.submit(ticket, conn, client, job) {
            self.waiting.remove(&ticket);
            self.throttle
                .settle_login(pass, client, None, Instant::now());
            let resp = self.queue_full(cx.out, full);
            return reply(cx, conn, req, resp);
        }
        self.dispatch(cx);
        Handled::Waiting
    }

    /// A password check came back: a wrong one is 403
    /// `invalid_credentials` (and counts as a failed login); a good one
    /// goes on to what it unlocks.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_rechecked(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        keep_alive: bool,
        me: Authed,
        client: ClientKey,
        addr: IpAddr,
        pass: LoginPass,
        next: Recheck,
        ok: bool,
    ) {
        self.throttle
            .settle_login(pass, client, Some(ok), Instant::now());
        if !cx.out.is_live(conn) {
            return;
        }
        if !ok {
            super::seclog::login_failed("password check", addr, cx.users.name(me.user));
            let resp = Response::error(403, "invalid_credentials", "the current password is wrong");
            return answer(cx.out, conn, resp, keep_alive);
        }
        match next {
            Recheck::ChangePassword { new } => {
                let ticket = self.park(Wait::NewPassword {
                    conn,
                    keep_alive,
                    user: me.user,
                    keep: me.sid,
                    audit: None,
                });
                if let Err(full) =
                    self.hasher
                        .submit(ticket, conn, client, Job::Hash { password: new })
                {
                    self.waiting.remove(&ticket);
                    let resp = self.queue_full(cx.out, full);
                    return answer(cx.out, conn, resp, keep_alive);
                }
                self.dispatch(cx);
            }
            Recheck::DeleteAccount => {
                let write = AccountWrite::DeleteUser {
                    user: me.user,
                    at_ms: clock::now_ms(),
                };
                let audit = Audit {
                    at_ms: clock::now_ms(),
                    actor: Some(me.user),
                    action: "delete_account",
                    target: cx.users.name(me.user).to_string(),
                    reason: String::new(),
                };
                if let Handled::Done = self.write_account(
                    cx,
                    conn,
                    keep_alive,
                    write,
                    Some((audit, addr)),
                    AfterWrite::NoContent,
                ) {
                    cx.out.resume_http(conn.token);
                }
            }
        }
    }

    /// A new password is hashed: stored, and every session but `keep` ends.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_new_password(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        keep_alive: bool,
        user: UserId,
        keep: Option<Sid>,
        audit: Option<(Audit, IpAddr)>,
        password: PasswordHash,
    ) {
        let write = AccountWrite::SetPassword {
            user,
            password,
            keep,
            at_ms: clock::now_ms(),
        };
        if let Handled::Done =
            self.write_account(cx, conn, keep_alive, write, audit, AfterWrite::NoContent)
        {
            cx.out.resume_http(conn.token);
        }
    }

    /// `POST /api/password` `{"old","new"}`: 204 and every other session
    /// ends; 403 `invalid_credentials` for a wrong `old`; 400 for a bad `new`.
    fn change_password(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        addr: IpAddr,
        req: &Request<'_>,
    ) -> Handled {
        let me = match self.caller(cx.users, req) {
            Ok(me) => me,
            Err(resp) => return reply(cx, conn, req, resp),
        };
        let body = match json_object::<PasswordBody>(req.body) {
            Ok(b) => b,
            Err(()) => {
                let resp = bad_input("expected a JSON object with string fields old and new");
                return reply(cx, conn, req, resp);
            }
        };
        if !valid_password(&body.new) {
            return reply(
                cx,
                conn,
                req,
                bad_input("new password must be 8-128 characters"),
            );
        }
        let next = Recheck::ChangePassword { new: body.new };
        self.recheck(cx, conn, req, addr, me, body.old, next)
    }

    /// `PUT /api/me` `{"display_name","status"}`: 200 `{"user"}`.
    fn put_me(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        req: &Request<'_>,
    ) -> Handled {
        let me = match self.caller(cx.users, req) {
            Ok(me) => me,
            Err(resp) => return reply(cx, conn, req, resp),
        };
        let Ok(body) = json_object::<ProfileBody>(req.body) else {
            let resp = bad_input(
                "expected a JSON object with display_name (a string or null) and/or status",
            );
            return reply(cx, conn, req, resp);
        };
        let display_name = match body.display_name {
            None => None,
            Some(None) => Some(None),
            Some(Some(n)) => match one_line(&n, DISPLAY_NAME_MAX) {
                Some(t) if !t.is_empty() => Some(Some(t.to_string())),
                _ => {
                    let resp = bad_input(format!(
                        "display_name must be 1-{DISPLAY_NAME_MAX} characters on one line, or null"
                    ));
                    return reply(cx, conn, req, resp);
                }
            },
        };
        let status = match body.status.as_deref().map(|s| one_line(s, STATUS_MAX)) {
            None => None,
            Some(Some(t)) => Some(t.to_string()),
            Some(None) => {
                let resp = bad_input(format!(
                    "status must be at most {STATUS_MAX} characters on one line"
                ));
                return reply(cx, conn, req, resp);
            }
        };
        if display_name.is_none() && status.is_none() {
            return reply(cx, conn, req, bad_input("give display_name or status"));
        }
        let write = AccountWrite::SetProfile {
            user: me.user,
            display_name,
            status,
        };
        self.write_account(
            cx,
            conn,
            req.keep_alive(),
            write,
            None,
            AfterWrite::Me(me.user),
        )
    }

    /// `POST /api/me/delete` `{"password"}`: 204; the account is gone (its
    /// messages stay, under `deleted-user-<id>`).
    fn delete_me(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        addr: IpAddr,
        req: &Request<'_>,
    ) -> Handled {
        let me = match self.caller(cx.users, req) {
            Ok(me) => me,
            Err(resp) => return reply(cx, conn, req, resp),
        };
        let Ok(body) = json_object::<ConfirmBody>(req.body) else {
            let resp = bad_input("expected a JSON object with the string field password");
            return reply(cx, conn, req, resp);
        };
        if cx
            .users
            .get(me.user)
            .is_some_and(|u| u.role() == Role::Admin)
            && cx.users.admins() <= 1
        {
            let resp = forbidden("you are the last admin: make someone else admin first");
            return reply(cx, conn, req, resp);
        }
        self.recheck(
            cx,
            conn,
            req,
            addr,
            me,
            body.password,
            Recheck::DeleteAccount,
        )
    }
}

/// The answer to a refused account write.
fn refusal_response(r: AccountRefusal) -> Response {
    match r {
        AccountRefusal::NoSuchUser => Response::error(404, "no_such_user", "no such user"),
        AccountRefusal::NoSuchSession => Response::error(404, "not_found", "no such session"),
        AccountRefusal::NoSuchInvite => Response::error(404, "not_found", "no such invite"),
        AccountRefusal::LastAdmin => {
            forbidden("the server must keep an admin: make someone else admin first")
        }
    }
}
