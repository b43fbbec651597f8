//! The REST API and the WebSocket entry points: the HTTP desk.
//!
//! Each route answers at once from loop-owned memory, or submits work to the
//! hashing pool or the storage thread and returns [`Handled::Waiting`]; the
//! answer is written when the work comes back (`on_hashed`, `on_user_stored`,
//! `on_history`). Later pipelined requests on the same connection wait, so
//! responses stay in order. Status codes and bodies live here and nowhere else.
//!
//! Password work goes through two gates before a hashing thread sees it:
//! the throttle (`auth::throttle`: hash-work budget per client address,
//! failed logins per username; over either, 429 with `Retry-After`) and the
//! pool's fair queue (`auth::pool`: per-address FIFOs served in turn, jobs of
//! vanished connections skipped). The client address is the TCP peer, or
//! the trusted proxy's `X-Forwarded-For` (`http::proxy`).
//!
//! `POST` bodies must be `Content-Type: application/json` (a `charset`, if
//! any, UTF-8); anything else is 415 `invalid_input`. Browsers send a
//! cross-site `POST` without asking the server first only for form and
//! plain-text types (CORS "simple requests"), so requiring JSON means a
//! hostile page cannot make its visitors' browsers sign up or burn
//! password work here.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::people::{
    AfterRead, AfterWrite, Authed, Recheck, banned, cursor_from, login_agent, own,
};
use super::request::{HeadError, Request};
use super::response::Response;
use super::{proxy, push, seclog, static_files, upgrade};
use crate::accounts::{AccountEvent, ChangeCursor};
use crate::auth::jwt::Tokens;
use crate::auth::password;
use crate::auth::pool::{Full, HashPool, Job, Outcome, Skipped};
use crate::auth::sessions::Revocations;
use crate::auth::throttle::{By, ClientKey, LoginPass, Refused, Throttle};
use crate::auth::tickets::Tickets;
use crate::clock;
use crate::config::{
    Config, DEFAULT_HISTORY_LIMIT, DEFAULT_SEARCH_LIMIT, EMAIL_MAX, HSTS, MAX_HISTORY_LIMIT,
    MAX_SEARCH_BYTES, MAX_SEARCH_LIMIT, MAX_SEARCH_WORDS, PASSWORD_MAX, PASSWORD_MIN, SignupMode,
};
use crate::hub::{Denied, Hub, ROOM_NAME_RULE};
use crate::metrics::Gauges;
use crate::outbox::{ConnRef, Outbox};
use crate::store::{
    Account, AccountSettings, AccountsSnapshot, Audit, Conflict, Desk, HistoryQuery, PushProfile,
    Request as StoreRequest, Role, SearchQuery, Sid, Storage, StoredMessage, Target, Ticket,
    UserId, UserRow, Who, search_words,
};
use crate::users::{Directory, Taken, reserved_username, valid_username};
use crate::ws::proto::{Profile, echo, message_objects, profile};

/// What became of a request.
pub enum Handled {
    /// The response is queued.
    Done,
    /// The response will be queued when hashing or storage answers.
    Waiting,
    /// The 101 is queued: the connection speaks WebSocket from the next byte.
    Upgrade(Upgrade),
}

/// A successful upgrade.
pub struct Upgrade {
    /// `None` for `/ws/echo`.
    pub user: Option<UserId>,
    /// The session of the token or ticket it opened with.
    pub sid: Option<Sid>,
    pub room: Option<String>,
}

/// The methods each known path accepts, for 405 and `Allow`.
fn allowed(path: &str) -> Option<&'static str> {
    fn admin_user(p: &str) -> Option<&str> {
        let rest = p.strip_prefix("/api/admin/users/")?;
        let (name, what) = rest.split_once('/')?;
        (!name.is_empty()).then_some(what)
    }
    /// `Some(true)`: a room's archive; `Some(false)`: the room.
    fn admin_room(p: &str) -> Option<bool> {
        let rest = p.strip_prefix("/api/admin/rooms/")?;
        match rest.split_once('/') {
            None => (!rest.is_empty()).then_some(false),
            Some((name, "archive")) => (!name.is_empty()).then_some(true),
            Some(_) => None,
        }
    }
    Some(match path {
        "/api/signup" | "/api/login" | "/api/logout" | "/api/ws-ticket" | "/api/password"
        | "/api/me/delete" => "POST",
        "/api/me" => "GET, HEAD, PUT",
        "/api/server" => "GET, HEAD",
        "/api/sessions" => "GET, HEAD, DELETE",
        "/api/invites" => "GET, HEAD, POST",
        "/api/users" | "/api/rooms" | "/api/messages" | "/api/search" | "/healthz" | "/readyz"
        | "/metrics" | "/api/admin/users" | "/api/admin/audit" => "GET, HEAD",
        "/api/admin/settings" | "/api/push/settings" => "GET, HEAD, PUT",
        "/api/push/key" => "GET, HEAD",
        "/api/push/subscriptions" => "POST, DELETE",
        p if p.starts_with("/api/sessions/") || p.starts_with("/api/invites/") => "DELETE",
        p if admin_room(p) == Some(true) => "POST, DELETE",
        p if admin_room(p) == Some(false) => "DELETE",
        p => match admin_user(p) {
            Some("ban") => "POST, DELETE",
            Some("role" | "password") => "PUT",
            Some("sessions") => "DELETE",
            Some(_) => return None,
            None => match p {
                "/ws" | "/ws/echo" => "GET",
                p if p.starts_with("/ws/room/") => "GET",
                p if p.starts_with("/api/") => return None,
                _ => "GET, HEAD",
            },
        },
    })
}

#[derive(Deserialize)]
struct SignupBody {
    username: String,
    /// Optional: missing, `null` or `""` is none.
    #[serde(default)]
    email: Option<String>,
    password: String,
    #[serde(default)]
    invite: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct LoginBody {
    username: String,
    password: String,
}

/// A body that is a JSON object of the expected shape. serde would also
/// accept an array of the fields in order; the contract's bodies are objects.
pub(super) fn json_object<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ()> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(());
    }
    serde_json::from_slice(body).map_err(|_| ())
}

/// Emails: one `@` with something on both sides, no spaces.
pub fn valid_email(s: &str) -> bool {
    let mut parts = s.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(l), Some(d), None) if !l.is_empty() && !d.is_empty())
        && s.len() <= EMAIL_MAX
        && !s.chars().any(char::is_whitespace)
}

/// Passwords: 8-128 characters.
pub fn valid_password(s: &str) -> bool {
    (PASSWORD_MIN..=PASSWORD_MAX).contains(&s.chars().count())
}

pub(super) fn bad_input(message: impl Into<String>) -> Response {
    Response::error(400, "invalid_input", message)
}

pub(super) fn unauthorized() -> Response {
    Response::error(401, "unauthorized", "missing, invalid or expired token")
}

pub(super) fn busy() -> Response {
    Response::error(503, "busy", "the server is busy; try again shortly")
}

/// 429 for a request over a throttle budget, with the time until it fits.
pub(super) fn throttled(r: Refused) -> Response {
    let secs = r.retry_after_secs();
    let why = match r.by {
        By::Address => "too many password attempts from your address",
        By::Username => "too many failed logins for this username",
    };
    Response::error(429, "rate_limited", format!("{why}; try again in {secs} s"))
        .with_header("Retry-After", secs.to_string())
}

/// Whether a `Content-Type` says JSON: `application/json`, parameters
/// allowed, but a `charset` must be UTF-8 (JSON is UTF-8, RFC 8259 §8.1).
fn is_json(content_type: Option<&[u8]>) -> bool {
    let Some(v) = content_type.and_then(|v| std::str::from_utf8(v).ok()) else {
        return false;
    };
    let mut parts = v.split(';');
    let essence = parts.next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        && parts.all(|p| match p.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
                v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            }
            _ => true,
        })
}

/// A row of `GET /api/users`: everyone's view of a user and their presence.
#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    profile: Profile<'a>,
    online: bool,
    last_seen: Option<crate::ws::proto::Ts>,
}

/// A row of `GET /api/rooms`; private rooms add their owner and members,
/// archived rooms `"archived":true`.
#[derive(Serialize)]
struct RoomOut<'a> {
    name: &'a str,
    private: bool,
    online: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<Vec<&'a str>>,
    /// Present (`true`) only for an archived room.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    archived: bool,
}

/// What an HTTP call may touch besides the desk itself.
pub struct Ctx<'a, O> {
    /// Read-only: rooms, presence and permissions for the listing routes.
    pub hub: &'a Hub,
    pub users: &'a mut Directory,
    pub store: &'a mut dyn Storage,
    pub out: &'a mut O,
}

/// Who waits for an asynchronous answer, and what to do with it.
pub(super) enum Wait {
    /// Signup: the password is being hashed.
    SignupHash {
        conn: ConnRef,
        keep_alive: bool,
        id: UserId,
        username: String,
        email: String,
        invite: Option<String>,
    },
    /// Login: the password is being verified (against a decoy for unknown users).
    Login {
        conn: ConnRef,
        keep_alive: bool,
        user: Option<UserId>,
        /// What the throttle is owed once the outcome is known.
        client: ClientKey,
        pass: LoginPass,
        /// For the log and the session: the name tried, the client and its
        /// `User-Agent`.
        name: String,
        addr: IpAddr,
        agent: String,
    },
    /// An account write (`account.rs`), answered by `then`; `log` is its
    /// audit entry and the client address, logged once it committed.
    Account {
        conn: ConnRef,
        keep_alive: bool,
        then: AfterWrite,
        log: Option<(Audit, IpAddr)>,
    },
    /// An account read: sessions, invites, the audit log.
    AccountRead {
        conn: ConnRef,
        keep_alive: bool,
        head_only: bool,
        then: AfterRead,
    },
    /// The change-log poll (nobody's request).
    Poll,
    /// The caller's password is being checked before `next`.
    Recheck {
        conn: ConnRef,
        keep_alive: bool,
        me: Authed,
        client: ClientKey,
        addr: IpAddr,
        pass: LoginPass,
        next: Recheck,
    },
    /// A new password is being hashed (a change: every session but `keep`
    /// ends; an admin's reset: all of them).
    NewPassword {
        conn: ConnRef,
        keep_alive: bool,
        user: UserId,
        keep: Option<Sid>,
        audit: Option<(Audit, IpAddr)>,
    },
    /// `GET /api/messages` and `GET /api/search` (both answer
    /// `{"messages": [...]}`).
    History {
        conn: ConnRef,
        keep_alive: bool,
        head_only: bool,
    },
    /// Login of a name this cluster node has not heard of: storage is asked
    /// whether another node just signed it up.
    FindUser {
        conn: ConnRef,
        keep_alive: bool,
        client: ClientKey,
        addr: IpAddr,
        agent: String,
        body: LoginBody,
    },
    /// A push route's write: `done` is the answer once it is stored.
    PushWrite {
        conn: ConnRef,
        keep_alive: bool,
        done: Response,
    },
    /// `GET /api/push/settings`: the caller's settings are being read.
    PushSettings {
        conn: ConnRef,
        keep_alive: bool,
        head_only: bool,
    },
}

/// The HTTP desk: the routes and the requests they wait on.
pub struct Http {
    pub(super) tokens: Tokens,
    pub(super) hasher: HashPool,
    pub(super) waiting: HashMap<Ticket, Wait>,
    /// Signups whose user row is being stored, by user id.
    signups: HashMap<UserId, (ConnRef, bool, UserRow)>,
    next_ticket: u64,
    /// Serve `/ws/echo` (`--echo`).
    echo: bool,
    /// Serve the web client from disk (`--static-dir`, development).
    static_dir: Option<PathBuf>,
    /// For the decoy hash an unknown user's login is checked against, and
    /// a signup's cost in the throttle.
    pbkdf2_iterations: u32,
    /// Who may start password work now.
    pub(super) throttle: Throttle,
    /// `--trust-proxy`: peers whose `X-Forwarded-For` names the client.
    trust_proxy: Vec<IpAddr>,
    /// `--allowed-origin`: browser origins besides the server's own host.
    allowed_origins: Vec<String>,
    /// `--max-conns-per-user` (0 = unlimited).
    max_conns_per_user: usize,
    /// Sessions that ended before their tokens expired.
    pub(super) revoked: Revocations,
    /// WebSocket tickets, and the used ones.
    pub(super) tickets: Tickets,
    /// `--signup`, when the operator gave it (it then wins over `settings`).
    pub(super) signup_flag: Option<SignupMode>,
    /// The account settings an admin made.
    pub(super) settings: AccountSettings,
    /// Where this node stands in the account change log.
    pub(super) cursor: ChangeCursor,
    /// A poll of the change log is out; asked again meanwhile.
    pub(super) polling: bool,
    pub(super) poll_again: bool,
    /// Account changes for the hub, until the application hands them over.
    pub(super) events: Vec<AccountEvent>,
    /// The VAPID public key, base64url (`GET /api/push/key`).
    push_key: String,
    /// `--push-allow-insecure`: `http://` and loopback endpoints too.
    push_allow_insecure: bool,
}

/// `/healthz` (`readiness` false) and `/readyz`. Health: storage
/// unreachable is 503, since nothing can be sent or signed up for and a load
/// balancer that reads status codes should send traffic elsewhere; a bus
/// outage alone stays 200 (`degraded: …`), since the node still serves its
/// own connections and acks what it stores, and every node shares the same
/// bus, so no other is better. Readiness: 503 unless storage and the bus are
/// both up (a node whose bus is down shows other nodes' users offline: an
/// orchestrator may prefer to wait).
fn health(readiness: bool, storage_up: bool, bus_up: bool) -> Response {
    let missing = match (storage_up, bus_up) {
        (true, true) => None,
        (false, true) => Some("storage unreachable"),
        (true, false) => Some("bus unreachable"),
        (false, false) => Some("storage and bus unreachable"),
    };
    let (status, body) = match (readiness, missing) {
        (false, None) => (200, "ok".to_string()),
        (true, None) => (200, "ready".to_string()),
        (false, Some(m)) => (if storage_up { 200 } else { 503 }, format!("degraded: {m}")),
        (true, Some(m)) => (503, format!("not ready: {m}")),
    };
    Response::new(status, "text/plain; charset=utf-8", body.into_bytes())
}

/// Queues `resp` on `token`: its head, then its body (none for `HEAD`).
pub fn send(
    out: &mut impl Outbox,
    token: mio::Token,
    resp: Response,
    keep_alive: bool,
    head_only: bool,
) {
    let resp = if out.is_tls(token) {
        resp.with_header("Strict-Transport-Security", HSTS)
    } else {
        resp
    };
    let mut head = Vec::with_capacity(256);
    resp.write_head(&mut head, keep_alive);
    let close = !keep_alive || resp.close;
    let body = if head_only {
        Cow::Borrowed(&[][..])
    } else {
        resp.body
    };
    out.respond(token, &head, body, close);
}

impl Http {
    /// `secret` signs tokens and tickets; `accounts` is what storage held
    /// of sessions and settings at start; `push_key` is the VAPID public key.
    pub fn new(
        config: &Config,
        secret: &[u8],
        hasher: HashPool,
        accounts: &AccountsSnapshot,
        push_key: String,
    ) -> Http {
        Http {
            tokens: Tokens::new(secret),
            tickets: Tickets::new(secret),
            revoked: Revocations::new(&accounts.ended),
            signup_flag: config.signup,
            settings: accounts.settings,
            cursor: cursor_from(&accounts.recent_changes),
            polling: false,
            poll_again: false,
            events: Vec::new(),
            hasher,
            waiting: HashMap::new(),
            signups: HashMap::new(),
            next_ticket: 0,
            echo: config.echo,
            static_dir: config.static_dir.clone(),
            pbkdf2_iterations: config.pbkdf2_iterations,
            throttle: Throttle::new(config.hash_work_rate, config.hash_work_burst),
            trust_proxy: config.trust_proxy.clone(),
            allowed_origins: config.allowed_origins.clone(),
            max_conns_per_user: config.max_conns_per_user,
            push_key,
            push_allow_insecure: config.push_allow_insecure,
        }
    }

    pub(super) fn park(&mut self, wait: Wait) -> Ticket {
        self.next_ticket += 1;
        let ticket = Ticket {
            desk: Desk::Http,
            seq: self.next_ticket,
        };
        self.waiting.insert(ticket, wait);
        ticket
    }

    /// Shutdown: waits for the hashing threads.
    pub fn join(&mut self) {
        self.hasher.join();
    }

    /// A request the parser refused: answered, then the connection closes.
    pub fn refuse(&self, out: &mut impl Outbox, token: mio::Token, e: HeadError) {
        send(out, token, Response::from(e).closing(), false, false);
    }

    /// Routes one request from TCP peer `peer`. The response (if any yet)
    /// is queued on `cx.out`.
    pub fn on_request(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        peer: IpAddr,
        req: &Request<'_>,
    ) -> Handled {
        cx.out.metrics().http_requests += 1;
        let keep_alive = req.keep_alive();
        let head_only = req.method == "HEAD";
        let method = if head_only { "GET" } else { req.method };
        let Some(allow) = allowed(req.path) else {
            let resp = Response::error(404, "not_found", "no such endpoint");
            send(cx.out, conn.token, resp, keep_alive, head_only);
            return Handled::Done;
        };
        if !allow.split(", ").any(|m| m == method) || (head_only && !allow.contains("HEAD")) {
            let resp = Response::error(
                405,
                "method_not_allowed",
                format!("{} is not allowed here", echo(req.method)),
            )
            .with_header("Allow", allow);
            send(cx.out, conn.token, resp, keep_alive, head_only);
            return Handled::Done;
        }
        // Every write is JSON, even an empty one: a hostile page cannot
        // send `application/json` across origins without a preflight.
        if matches!(method, "POST" | "PUT" | "DELETE") && !is_json(req.header("content-type")) {
            cx.out.metrics().http_unsupported_media += 1;
            let resp = Response::error(
                415,
                "invalid_input",
                "the body must be JSON, sent with Content-Type: application/json",
            );
            send(cx.out, conn.token, resp, keep_alive, false);
            return Handled::Done;
        }
        let addr = proxy::client_addr(peer, req, &self.trust_proxy);
        if let Some(handled) = self.account_route(cx, conn, addr, req) {
            return handled;
        }
        if let Some(handled) = self.admin_route(cx, conn, addr, req) {
            return handled;
        }
        let resp = match req.path {
            "/api/signup" => return self.signup(cx, conn, addr, req),
            "/api/login" => return self.login(cx, conn, addr, req),
            "/ws" | "/ws/echo" => return self.upgrade(cx, conn, addr, req, None),
            p if p.starts_with("/ws/room/") => {
                let room = &p["/ws/room/".len()..];
                return self.upgrade(cx, conn, addr, req, Some(room));
            }
            p if p.starts_with("/api/push/") => return self.push(cx, conn, req),
            "/api/messages" => return self.messages(cx, conn, req, false),
            "/api/search" => return self.messages(cx, conn, req, true),
            "/healthz" | "/readyz" => health(
                req.path == "/readyz",
                cx.store.is_healthy(),
                !cx.hub.bus_down(),
            ),
            "/metrics" => {
                let gauges = Gauges {
                    connections_open: cx.out.open_connections(),
                    ws_connections: cx.hub.sessions_open(),
                    store_queue_depth: cx.store.depth(),
                    hash_in_flight: self.hasher.in_flight(),
                    users_online: cx.hub.users_online(),
                    rooms: cx.hub.rooms_known(),
                    hash_queued: self.hasher.queued(),
                    throttle_entries: self.throttle.entries(),
                    store_down: usize::from(!cx.store.is_healthy()),
                    bus_down: usize::from(cx.hub.bus_down()),
                    peers: cx.hub.peers(),
                    sessions_ended: self.revoked.len(),
                    ws_tickets_used: self.tickets.used(),
                    output_queued: cx.out.queued_everywhere(),
                    notes_rejected: cx.hub.notes_rejected(),
                };
                let text = cx.out.metrics().render(&gauges);
                Response::new(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    text.into_bytes(),
                )
            }
            "/api/me" | "/api/users" | "/api/rooms" => match self.caller(cx.users, req) {
                Err(resp) => resp,
                Ok(me) => match req.path {
                    "/api/me" => me_response(cx.users, me.user),
                    "/api/users" => list_users(cx.hub, cx.users),
                    _ => list_rooms(cx.hub, cx.users, me.user),
                },
            },
            path => static_files::serve(
                path,
                req.header("if-none-match"),
                self.static_dir.as_deref(),
            ),
        };
        send(cx.out, conn.token, resp, keep_alive, head_only);
        Handled::Done
    }

    /// `POST /api/signup`: cheap refusals first (the body, the signup
    /// mode, a taken name), then the throttle, then the hash; the invite,
    /// if the mode needs one, is spent when the row is stored.
    fn signup(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        addr: IpAddr,
        req: &Request<'_>,
    ) -> Handled {
        let (keep_alive, client) = (req.keep_alive(), ClientKey::of(addr));
        let mode = self.signup_mode();
        let resp = match json_object::<SignupBody>(req.body) {
            Err(_) => bad_input(
                "expected a JSON object with string fields username and password \
                 (and optionally email and invite)",
            ),
            Ok(b) if !valid_username(&b.username) => {
                bad_input("username must be 3-32 characters of letters, digits, '_', '.' or '-'")
            }
            Ok(b) if reserved_username(&b.username) => bad_input(format!(
                "usernames may not start with {}: deleted accounts are called that",
                crate::config::DELETED_USER_PREFIX
            )),
            Ok(b)
                if b.email
                    .as_deref()
                    .is_some_and(|e| !e.is_empty() && !valid_email(e)) =>
            {
                bad_input("email must contain exactly one '@'")
            }
            Ok(b) if !valid_password(&b.password) => bad_input("password must be 8-128 characters"),
            Ok(_) if mode == SignupMode::Closed => Response::error(
                403,
                "signup_closed",
                "this server does not take new accounts; ask its admin",
            ),
            Ok(b)
                if mode == SignupMode::Invite && b.invite.as_deref().is_none_or(str::is_empty) =>
            {
                Response::error(
                    403,
                    "invite_required",
                    "this server takes new accounts by invite only: sign up with an invite code",
                )
            }
            Ok(b) => {
                let email = b.email.unwrap_or_default();
                // Open signups need no invite: a code that comes along is
                // not looked at (nor spent).
                let invite = b.invite.filter(|_| mode == SignupMode::Invite);
                match cx.users.reserve(&b.username, &email) {
                    Err(Taken::Username) => Response::error(409, "taken", "that username is taken"),
                    Err(Taken::Email) => {
                        Response::error(409, "taken", "that email is already registered")
                    }
                    Ok(id) => {
                        let username = b.username;
                        let admitted = self.throttle.admit(
                            client,
                            self.pbkdf2_iterations,
                            None,
                            Instant::now(),
                        );
                        if let Err(refused) = admitted {
                            cx.users.release(&username, &email);
                            cx.out.metrics().auth_throttled_address += 1;
                            seclog::throttled("signup", addr, &username, refused.by);
                            send(cx.out, conn.token, throttled(refused), keep_alive, false);
                            return Handled::Done;
                        }
                        let ticket = self.park(Wait::SignupHash {
                            conn,
                            keep_alive,
                            id,
                            username: username.clone(),
                            email: email.clone(),
                            invite,
                        });
                        let job = Job::Hash {
                            password: b.password,
                        };
                        match self.hasher.submit(ticket, conn, client, job) {
                            Ok(()) => {
                                self.dispatch(cx);
                                return Handled::Waiting;
                            }
                            Err(full) => {
                                self.waiting.remove(&ticket);
                                cx.users.release(&username, &email);
                                self.queue_full(cx.out, full)
                            }
                        }
                    }
                }
            }
        };
        send(cx.out, conn.token, resp, keep_alive, false);
        Handled::Done
    }

    /// 429 when the client's share of the hashing queue is full (it is
    /// flooding: the share drains in a few hashes), 503 when the whole queue is.
    pub(super) fn queue_full(&self, out: &mut impl Outbox, full: Full) -> Response {
        match full {
            Full::Client => {
                out.metrics().auth_throttled_address += 1;
                throttled(Refused {
                    by: By::Address,
                    retry_after: std::time::Duration::from_secs(1),
                })
            }
            Full::Pool => busy(),
        }
    }

    /// Feeds idle hashing threads from the fair queue; jobs whose
    /// connection has gone are forgotten (a signup's names released, a
    /// login's throttle reservation returned) without being hashed.
    pub(super) fn dispatch(&mut self, cx: &mut Ctx<'_, impl Outbox>) {
        let out = &*cx.out;
        let skipped = self.hasher.dispatch(|c| out.is_live(c));
        for skip in skipped {
            let (Skipped::Gone(ticket) | Skipped::NoWorkers(ticket)) = skip;
            let Some(wait) = self.waiting.remove(&ticket) else {
                continue;
            };
            let (conn, keep_alive) = match wait {
                Wait::SignupHash {
                    conn,
                    keep_alive,
                    username,
                    email,
                    ..
                } => {
                    cx.users.release(&username, &email);
                    (conn, keep_alive)
                }
                Wait::Login {
                    conn,
                    keep_alive,
                    client,
                    pass,
                    ..
                } => {
                    self.throttle
                        .settle_login(pass, client, None, Instant::now());
                    (conn, keep_alive)
                }
                Wait::Recheck {
                    conn,
                    keep_alive,
                    client,
                    pass,
                    ..
                } => {
                    self.throttle
                        .settle_login(pass, client, None, Instant::now());
                    (conn, keep_alive)
                }
                Wait::History {
                    conn, keep_alive, ..
                }
                | Wait::FindUser {
                    conn, keep_alive, ..
                }
                | Wait::NewPassword {
                    conn, keep_alive, ..
                }
                | Wait::Account {
                    conn, keep_alive, ..
                }
                | Wait::AccountRead {
                    conn, keep_alive, ..
                }
                | Wait::PushWrite {
                    conn, keep_alive, ..
                }
                | Wait::PushSettings {
                    conn, keep_alive, ..
                } => (conn, keep_alive),
                Wait::Poll => continue,
            };
            match skip {
                Skipped::Gone(_) => cx.out.metrics().hash_jobs_dropped += 1,
                Skipped::NoWorkers(_) => answer(cx.out, conn, busy(), keep_alive),
            }
        }
    }

    /// Drains every finished password job, then gives the freed threads
    /// their next jobs.
    pub fn on_hashed(&mut self, cx: &mut Ctx<'_, impl Outbox>) {
        while let Some((ticket, outcome)) = self.hasher.try_outcome() {
            let Some(wait) = self.waiting.remove(&ticket) else {
                continue;
            };
            match (wait, outcome) {
                (
                    Wait::SignupHash {
                        conn,
                        keep_alive,
                        id,
                        username,
                        email,
                        invite,
                    },
                    Outcome::Hashed(password),
                ) => {
                    let row = UserRow {
                        id,
                        username,
                        email,
                        password,
                        created_ms: clock::now_ms(),
                        last_seen_ms: None,
                        account: Account::default(),
                    };
                    self.store_user(cx, conn, keep_alive, row, invite);
                }
                (
                    Wait::Login {
                        conn,
                        keep_alive,
                        user,
                        client,
                        pass,
                        name,
                        addr,
                        agent,
                    },
                    Outcome::Verified(ok),
                ) => {
                    let ok = ok && user.is_some();
                    self.throttle
                        .settle_login(pass, client, Some(ok), Instant::now());
                    if !ok {
                        seclog::login_failed("login", addr, &name);
                    }
                    self.finish_login(cx, conn, keep_alive, user.filter(|_| ok), addr, agent);
                }
                (
                    Wait::Recheck {
                        conn,
                        keep_alive,
                        me,
                        client,
                        addr,
                        pass,
                        next,
                    },
                    Outcome::Verified(ok),
                ) => self.on_rechecked(cx, conn, keep_alive, me, client, addr, pass, next, ok),
                (
                    Wait::NewPassword {
                        conn,
                        keep_alive,
                        user,
                        keep,
                        audit,
                    },
                    Outcome::Hashed(password),
                ) => self.on_new_password(cx, conn, keep_alive, user, keep, audit, password),
                _ => log::error!("hashing outcome of the wrong kind for ticket {ticket:?}"),
            }
        }
        self.dispatch(cx);
    }

    /// The password is hashed: store the user, answer when it is durable.
    fn store_user(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        keep_alive: bool,
        row: UserRow,
        invite: Option<String>,
    ) {
        let req = StoreRequest::PutUser {
            row: row.clone(),
            invite,
            audit: None,
        };
        if cx.store.submit(req).is_err() {
            cx.users.release(&row.username, &row.email);
            answer(cx.out, conn, busy(), keep_alive);
            return;
        }
        self.signups.insert(row.id, (conn, keep_alive, row));
    }

    /// The user row is stored (or not): the signup is answered. `key` is
    /// the id the row was sent with; `stored` the id storage gave it, or
    /// the unique field that refused it (taken on another node of a
    /// cluster). Returns the new user's id.
    pub fn on_user_stored(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        key: UserId,
        stored: Result<(UserId, Role), Option<Conflict>>,
    ) -> Option<UserId> {
        let (conn, keep_alive, mut row) = self.signups.remove(&key)?;
        let (resp, new) = match stored {
            Ok((id, role)) => {
                row.id = id;
                row.account.role = role;
                let (name, email) = (row.username.clone(), row.email.clone());
                if cx.users.get(id).is_none() {
                    if let Err(e) = cx.users.insert(row) {
                        log::error!("user {id}, just stored, is not in the directory: {e:?}");
                    }
                } else {
                    cx.users.release(&name, &email);
                }
                let resp = match cx.users.get(id) {
                    Some(u) => Response::json(201, &json!({ "user": own(u) })),
                    None => Response::error(500, "internal", "could not store the account"),
                };
                (resp, Some(id))
            }
            Err(conflict) => {
                cx.users.release(&row.username, &row.email);
                let resp = match conflict {
                    Some(Conflict::Username) => {
                        Response::error(409, "taken", "that username is taken")
                    }
                    Some(Conflict::Email) => {
                        Response::error(409, "taken", "that email is already registered")
                    }
                    Some(Conflict::Invite) => Response::error(
                        403,
                        "invalid_invite",
                        "that invite code is unknown, used up, expired or revoked",
                    ),
                    None => Response::error(500, "internal", "could not store the account"),
                };
                (resp, None)
            }
        };
        answer(cx.out, conn, resp, keep_alive);
        new
    }

    fn login(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        addr: IpAddr,
        req: &Request<'_>,
    ) -> Handled {
        let keep_alive = req.keep_alive();
        let body = match json_object::<LoginBody>(req.body) {
            Ok(b) if !b.username.is_empty() && !b.password.is_empty() => b,
            _ => {
                let resp =
                    bad_input("expected a JSON object with string fields username and password");
                send(cx.out, conn.token, resp, keep_alive, false);
                return Handled::Done;
            }
        };
        let (client, agent) = (ClientKey::of(addr), login_agent(req));
        // A name that is not a username names nobody (`users.rs`, the
        // username rule): no read, and the decoy hash below.
        if cx.users.find(&body.username).is_none()
            && valid_username(&body.username)
            && cx.hub.in_cluster()
        {
            let who = Who::Name(body.username.clone());
            let ticket = self.park(Wait::FindUser {
                conn,
                keep_alive,
                client,
                addr,
                agent,
                body,
            });
            let req = StoreRequest::FindUser { ticket, who };
            if cx.store.submit(req).is_err() {
                self.waiting.remove(&ticket);
                send(cx.out, conn.token, busy(), keep_alive, false);
                return Handled::Done;
            }
            return Handled::Waiting;
        }
        self.verify_login(cx, conn, client, addr, agent, keep_alive, body)
    }

    /// Storage answered whether a name unknown here is a user (signed up on
    /// another node a moment ago); the login goes on either way (`None`:
    /// the read failed, answered `busy`).
    pub fn on_user_found(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        ticket: Ticket,
        row: Option<Option<UserRow>>,
    ) {
        let Some(Wait::FindUser {
            conn,
            keep_alive,
            client,
            addr,
            agent,
            body,
        }) = self.waiting.remove(&ticket)
        else {
            return;
        };
        if !cx.out.is_live(conn) {
            return;
        }
        let Some(row) = row else {
            return send(cx.out, conn.token, busy(), keep_alive, false);
        };
        if let Some(row) = row {
            // A row newer than what is held (or unknown here) is applied.
            let _ = cx.users.apply(row);
        }
        self.verify_login(cx, conn, client, addr, agent, keep_alive, body);
    }

    /// The password check of a login, against the user's hash or a decoy.
    #[allow(clippy::too_many_arguments)]
    fn verify_login(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        client: ClientKey,
        addr: IpAddr,
        agent: String,
        keep_alive: bool,
        body: LoginBody,
    ) -> Handled {
        // An unknown user costs the same PBKDF2 work as a wrong password.
        let user = cx
            .users
            .find(&body.username)
            .map(|u| (u.id, u.password.clone()));
        let stored = user
            .as_ref()
            .map_or_else(|| password::decoy(self.pbkdf2_iterations), |u| u.1.clone());
        // The decoy costs the configured count, like the real hashes made
        // with it, so the throttle treats unknown and known users alike.
        let now = Instant::now();
        let pass = match self
            .throttle
            .admit(client, stored.iterations, Some(&body.username), now)
        {
            Ok(pass) => pass,
            Err(refused) => {
                let m = cx.out.metrics();
                match refused.by {
                    By::Address => m.auth_throttled_address += 1,
                    By::Username => m.auth_throttled_username += 1,
                }
                seclog::throttled("login", addr, &body.username, refused.by);
                send(cx.out, conn.token, throttled(refused), keep_alive, false);
                return Handled::Done;
            }
        };
        let ticket = self.park(Wait::Login {
            conn,
            keep_alive,
            user: user.map(|u| u.0),
            client,
            pass: pass.clone(),
            name: body.username,
            addr,
            agent,
        });
        let job = Job::Verify {
            password: body.password,
            stored,
        };
        if let Err(full) = self.hasher.submit(ticket, conn, client, job) {
            self.waiting.remove(&ticket);
            self.throttle.settle_login(pass, client, None, now);
            let resp = self.queue_full(cx.out, full);
            send(cx.out, conn.token, resp, keep_alive, false);
            return Handled::Done;
        }
        self.dispatch(cx);
        Handled::Waiting
    }

    /// The password check is done: the one answer for every failure; for a
    /// banned user (right password only, so a ban reveals nothing to a
    /// guesser) 403 `banned`; else a session is stored and its token sent.
    fn finish_login(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        keep_alive: bool,
        user: Option<UserId>,
        addr: IpAddr,
        agent: String,
    ) {
        let resp = match user.and_then(|id| cx.users.get(id)) {
            Some(u) if u.is_banned() => {
                seclog::banned("login", addr, &u.name);
                banned(u)
            }
            Some(u) => {
                let id = u.id;
                if cx.out.is_live(conn) {
                    self.open_session(cx, conn, keep_alive, id, addr, agent);
                }
                return;
            }
            None => Response::error(
                401,
                "invalid_credentials",
                "unknown username or wrong password",
            ),
        };
        answer(cx.out, conn, resp, keep_alive);
    }

    /// `GET /api/messages` and `GET /api/search`: authenticate, read the
    /// query string into a storage read (`Ok(None)`: nothing to read), park
    /// it and submit it; `on_history` answers. `search` is newest first, as
    /// storage returns it.
    fn messages(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        req: &Request<'_>,
        search: bool,
    ) -> Handled {
        let keep_alive = req.keep_alive();
        let head_only = req.method == "HEAD";
        let read =
            match self.caller(cx.users, req) {
                Err(resp) => Err(resp),
                Ok(me) if search => search_query(cx.hub, cx.users, me.user, req)
                    .map(|q| q.map(MessagesRead::Search)),
                Ok(me) => history_query(cx.hub, cx.users, me.user, req)
                    .map(|q| q.map(MessagesRead::History)),
            };
        let resp = match read {
            Err(resp) => resp,
            Ok(None) => Response::json(200, &json!({"messages": []})),
            Ok(Some(read)) => {
                let ticket = self.park(Wait::History {
                    conn,
                    keep_alive,
                    head_only,
                });
                if cx.store.submit(read.request(ticket)).is_ok() {
                    return Handled::Waiting;
                }
                self.waiting.remove(&ticket);
                busy()
            }
        };
        send(cx.out, conn.token, resp, keep_alive, head_only);
        Handled::Done
    }

    /// A history page came back from storage (`None`: the read failed).
    pub fn on_history(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        ticket: Ticket,
        messages: Option<Vec<StoredMessage>>,
    ) {
        let Some(Wait::History {
            conn,
            keep_alive,
            head_only,
        }) = self.waiting.remove(&ticket)
        else {
            return;
        };
        if !cx.out.is_live(conn) {
            return;
        }
        let users = &*cx.users;
        let resp = match &messages {
            Some(m) => Response::json(
                200,
                &json!({"messages": message_objects(m, |id| users.name(id))}),
            ),
            None => Response::error(500, "internal", "could not read history"),
        };
        send(cx.out, conn.token, resp, keep_alive, head_only);
        cx.out.resume_http(conn.token);
    }

    /// The push routes (`http/push.rs`): answered at once, or after the
    /// write or read they ask of storage.
    fn push(&mut self, cx: &mut Ctx<'_, impl Outbox>, conn: ConnRef, req: &Request<'_>) -> Handled {
        let keep_alive = req.keep_alive();
        let head_only = req.method == "HEAD";
        // A session checked like every account route's: ended or banned is refused.
        let resp = match self.caller(cx.users, req).map(|a| a.user) {
            Err(resp) => resp,
            Ok(me) => {
                let method = if head_only { "GET" } else { req.method };
                let action = push::route(
                    method,
                    req.path,
                    req.body,
                    me,
                    &self.push_key,
                    self.push_allow_insecure,
                );
                let (wait, write) = match action {
                    push::Action::Answer(resp) => {
                        send(cx.out, conn.token, resp, keep_alive, head_only);
                        return Handled::Done;
                    }
                    push::Action::Write { write, done } => (
                        Wait::PushWrite {
                            conn,
                            keep_alive,
                            done,
                        },
                        Some(write),
                    ),
                    push::Action::ReadSettings => (
                        Wait::PushSettings {
                            conn,
                            keep_alive,
                            head_only,
                        },
                        None,
                    ),
                };
                let ticket = self.park(wait);
                let request = match write {
                    Some(w) => w.request(ticket),
                    None => StoreRequest::PushProfile { ticket, user: me },
                };
                if cx.store.submit(request).is_ok() {
                    return Handled::Waiting;
                }
                self.waiting.remove(&ticket);
                busy()
            }
        };
        send(cx.out, conn.token, resp, keep_alive, head_only);
        Handled::Done
    }

    /// A push route's write was stored (`ok`) or not.
    pub fn on_write_answered(&mut self, cx: &mut Ctx<'_, impl Outbox>, ticket: Ticket, ok: bool) {
        // An account write that failed: its route answers 500.
        if !ok && matches!(self.waiting.get(&ticket), Some(Wait::Account { .. })) {
            return self.on_account_written(cx, ticket, None);
        }
        let Some(Wait::PushWrite {
            conn,
            keep_alive,
            done,
        }) = self.waiting.remove(&ticket)
        else {
            return;
        };
        let resp = if ok {
            done
        } else {
            Response::error(500, "internal", "could not store the push setting")
        };
        answer(cx.out, conn, resp, keep_alive);
    }

    /// The caller's push settings were read (`None`: the read failed).
    pub fn on_push_profile(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        ticket: Ticket,
        profile: Option<PushProfile>,
    ) {
        let Some(Wait::PushSettings {
            conn,
            keep_alive,
            head_only,
        }) = self.waiting.remove(&ticket)
        else {
            return;
        };
        if !cx.out.is_live(conn) {
            return;
        }
        let resp = match profile {
            Some(p) => push::settings(p.show_text),
            None => Response::error(500, "internal", "could not read the push settings"),
        };
        send(cx.out, conn.token, resp, keep_alive, head_only);
        cx.out.resume_http(conn.token);
    }

    fn upgrade(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        addr: IpAddr,
        req: &Request<'_>,
        room: Option<&str>,
    ) -> Handled {
        let keep_alive = req.keep_alive();
        let echo = req.path == "/ws/echo";
        if echo && !self.echo {
            let resp = Response::error(404, "not_found", "start the server with --echo");
            send(cx.out, conn.token, resp, keep_alive, false);
            return Handled::Done;
        }
        // Before the token: a hostile page learns nothing about it.
        if !upgrade::origin_allowed(req, &self.allowed_origins) {
            cx.out.metrics().ws_refused_origin += 1;
            let resp = Response::error(
                403,
                "forbidden",
                "WebSocket connections from this page's origin are not allowed \
                 (see --allowed-origin)",
            );
            send(cx.out, conn.token, resp, keep_alive, false);
            return Handled::Done;
        }
        let (user, sid) = if echo {
            (None, None)
        } else {
            let authed = match req.query_param("ticket") {
                Some(ticket) => self.redeem_ticket(cx.users, &ticket),
                None => {
                    let token: Option<Cow<'_, str>> =
                        req.query_param("token").or(req.bearer().map(Cow::Borrowed));
                    self.check_token(cx.users, token.as_deref())
                }
            };
            match authed {
                Ok(a) => (Some(a.user), a.sid),
                Err(resp) => {
                    if resp.status == 403 {
                        seclog::banned("upgrade", addr, "");
                    }
                    send(cx.out, conn.token, resp, keep_alive, false);
                    return Handled::Done;
                }
            }
        };
        // The session opens right after the 101, in this same loop turn, so
        // the count cannot be raced past the cap.
        let cap = self.max_conns_per_user;
        if let Some(me) = user
            && cap > 0
            && cx.hub.sessions_of(me) >= cap
        {
            cx.out.metrics().ws_refused_user_cap += 1;
            let resp = Response::error(
                429,
                "rate_limited",
                format!("at most {cap} WebSocket connections per user; close one first"),
            );
            send(cx.out, conn.token, resp, keep_alive, false);
            return Handled::Done;
        }
        if let (Some(room), Some(me)) = (room, user)
            && let Err(denied) = cx.hub.may_read(me, room)
        {
            send(
                cx.out,
                conn.token,
                denied_response(room, denied),
                keep_alive,
                false,
            );
            return Handled::Done;
        }
        match upgrade::client_key(req) {
            Err(why) => {
                send(cx.out, conn.token, bad_input(why), keep_alive, false);
                Handled::Done
            }
            Ok(key) => {
                cx.out.reply(conn.token, &upgrade::accept_response(key));
                cx.out.metrics().ws_upgrades += 1;
                Handled::Upgrade(Upgrade {
                    user,
                    sid,
                    room: room.map(String::from),
                })
            }
        }
    }
}

impl Http {
    /// A WebSocket ticket, used up: who it opens a socket as, if it is good
    /// and its session and user still are. Every node hears it was used.
    fn redeem_ticket(&mut self, users: &Directory, ticket: &str) -> Result<Authed, Response> {
        let now = clock::now_ms();
        let r = self.tickets.redeem(ticket, now).ok_or_else(|| {
            Response::error(401, "unauthorized", "unknown, used or expired ticket")
        })?;
        self.events.push(AccountEvent::TicketUsed {
            id: r.id,
            expires_ms: r.expires_ms,
        });
        let u = users
            .get(r.user)
            .filter(|u| !u.is_deleted())
            .ok_or_else(unauthorized)?;
        let issued_ms = r.expires_ms - crate::config::WS_TICKET_TTL.as_millis() as i64;
        let alive = match r.sid {
            Some(sid) => !self.revoked.is_ended(sid),
            None => issued_ms > u.account.sessions_after_ms,
        };
        if !alive {
            return Err(unauthorized());
        }
        if u.is_banned() {
            return Err(banned(u));
        }
        Ok(Authed {
            user: u.id,
            sid: r.sid,
        })
    }
}

/// Queues an asynchronous answer if its connection is still there.
pub(super) fn answer(out: &mut impl Outbox, conn: ConnRef, resp: Response, keep_alive: bool) {
    if out.is_live(conn) {
        send(out, conn.token, resp, keep_alive, false);
        out.resume_http(conn.token);
    }
}

/// The HTTP answer for a room `me` may not read.
fn denied_response(room: &str, denied: Denied) -> Response {
    match denied {
        Denied::BadName => bad_input(ROOM_NAME_RULE),
        Denied::Private => Response::error(403, "forbidden", format!("{room} is private")),
    }
}

fn me_response(users: &Directory, me: UserId) -> Response {
    let u = users.get(me).expect("authenticated users exist");
    Response::json(200, &json!({ "user": own(u) }))
}

/// Everyone, deleted accounts included (their messages still name them;
/// they carry `"deleted": true`).
fn list_users(hub: &Hub, users: &Directory) -> Response {
    let users: Vec<_> = users
        .all()
        .map(|u| Listed {
            profile: profile(u),
            online: hub.is_online(u.id),
            last_seen: u.last_seen_ms.map(crate::ws::proto::Ts),
        })
        .collect();
    Response::json(200, &json!({ "users": users }))
}

fn list_rooms(hub: &Hub, users: &Directory, me: UserId) -> Response {
    let mut rooms: Vec<RoomOut<'_>> = hub
        .rooms()
        .filter_map(|r| {
            let (owner, members) = match r.private() {
                None if r.has_messages() || r.online() > 0 => (None, None),
                Some(p) if p.is_member(me) => {
                    let mut members: Vec<&str> = p.members().map(|m| users.name(m)).collect();
                    members.sort_unstable();
                    (Some(users.name(p.owner())), Some(members))
                }
                _ => return None,
            };
            Some(RoomOut {
                name: r.name(),
                private: r.private().is_some(),
                online: r.online(),
                owner,
                members,
                archived: hub.is_archived(r.name()),
            })
        })
        .collect();
    rooms.sort_by(|a, b| a.name.cmp(b.name));
    Response::json(200, &json!({ "rooms": rooms }))
}

/// Reads `room`/`with`, `before`, `limit` and `page`. `Ok(None)`: a room
/// nobody ever wrote in, answered without asking storage.
fn history_query(
    hub: &Hub,
    users: &Directory,
    me: UserId,
    req: &Request<'_>,
) -> Result<Option<HistoryQuery>, Response> {
    use crate::config::MAX_HISTORY_OFFSET;
    let num = |key: &str| -> Result<Option<u64>, Response> {
        match req.query_param(key) {
            None => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(bad_input(format!("{key} must be a positive integer"))),
            },
        }
    };
    let (before, limit, page) = (num("before")?, num("limit")?, num("page")?);
    if before.is_some() && page.is_some() {
        return Err(bad_input("use either before or page, not both"));
    }
    let limit = limit.map_or(DEFAULT_HISTORY_LIMIT, |l| {
        (l as usize).min(MAX_HISTORY_LIMIT)
    });
    let offset = match page {
        None => 0,
        Some(p) => match (p - 1).checked_mul(limit as u64) {
            Some(o) if o <= MAX_HISTORY_OFFSET as u64 => o as usize,
            _ => {
                return Err(bad_input(format!(
                    "page {p} is too deep: a page may skip at most {MAX_HISTORY_OFFSET} \
                     messages, so with limit {limit} the last page is {}; \
                     use before=ID to go further back",
                    MAX_HISTORY_OFFSET / limit + 1
                )));
            }
        },
    };
    let target = match (req.query_param("room"), req.query_param("with")) {
        (Some(room), None) => match hub.may_read(me, &room) {
            Ok(true) => Target::Room(room.to_string()),
            Ok(false) => return Ok(None),
            Err(denied) => return Err(denied_response(&room, denied)),
        },
        (None, Some(with)) => match users.find(&with) {
            Some(u) => Target::Direct(me, u.id),
            None => {
                return Err(Response::error(
                    404,
                    "no_such_user",
                    format!("no user called {}", echo(&with)),
                ));
            }
        },
        _ => return Err(bad_input("give exactly one of room or with")),
    };
    Ok(Some(HistoryQuery {
        target,
        reader: me,
        before,
        after: None,
        limit,
        offset,
    }))
}

/// The storage read behind a `{"messages": [...]}` answer.
enum MessagesRead {
    History(HistoryQuery),
    Search(SearchQuery),
}

impl MessagesRead {
    fn request(self, ticket: Ticket) -> StoreRequest {
        match self {
            MessagesRead::History(query) => StoreRequest::History { ticket, query },
            MessagesRead::Search(query) => StoreRequest::Search { ticket, query },
        }
    }
}

/// `GET /api/search`'s parameters: `q` (its words, [`search_words`]),
/// `limit` (default 20, at most 100), and at most one of `room` and `with`.
/// `Ok(None)` for a room with no messages yet. A private room the caller is
/// not in is 403, like its history; without a scope, storage itself keeps
/// to what the caller may read.
fn search_query(
    hub: &Hub,
    users: &Directory,
    me: UserId,
    req: &Request<'_>,
) -> Result<Option<SearchQuery>, Response> {
    let q = req
        .query_param("q")
        .ok_or_else(|| bad_input("q is required"))?;
    if q.len() > MAX_SEARCH_BYTES {
        return Err(bad_input(format!("q is over {MAX_SEARCH_BYTES} bytes")));
    }
    let words = search_words(&q, MAX_SEARCH_WORDS);
    if words.is_empty() {
        return Err(bad_input("q must contain a word (letters or digits)"));
    }
    let limit = match req.query_param("limit") {
        None => DEFAULT_SEARCH_LIMIT,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n > 0 => (n as usize).min(MAX_SEARCH_LIMIT),
            _ => return Err(bad_input("limit must be a positive integer")),
        },
    };
    let scope = match (req.query_param("room"), req.query_param("with")) {
        (None, None) => None,
        (Some(room), None) => match hub.may_read(me, &room) {
            Ok(true) => Some(Target::Room(room.to_string())),
            Ok(false) => return Ok(None),
            Err(denied) => return Err(denied_response(&room, denied)),
        },
        (None, Some(with)) => match users.find(&with) {
            Some(u) => Some(Target::Direct(me, u.id)),
            None => {
                return Err(Response::error(
                    404,
                    "no_such_user",
                    format!("no user called {}", echo(&with)),
                ));
            }
        },
        (Some(_), Some(_)) => return Err(bad_input("give at most one of room or with")),
    };
    Ok(Some(SearchQuery {
        user: me,
        words,
        scope,
        limit,
    }))
}

/// Sends `resp` for `req` now: the route is done.
pub(super) fn reply(
    cx: &mut Ctx<'_, impl Outbox>,
    conn: ConnRef,
    req: &Request<'_>,
    resp: Response,
) -> Handled {
    send(
        cx.out,
        conn.token,
        resp,
        req.keep_alive(),
        req.method == "HEAD",
    );
    Handled::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Health is 503 only for storage; readiness for storage or the bus;
    /// the body says what is missing.
    #[test]
    fn health_and_readiness() {
        let h = |ready, store, bus| {
            let r = health(ready, store, bus);
            (r.status, String::from_utf8(r.body.to_vec()).unwrap())
        };
        assert_eq!(h(false, true, true), (200, "ok".into()));
        assert_eq!(
            h(false, true, false),
            (200, "degraded: bus unreachable".into())
        );
        assert_eq!(
            h(false, false, true),
            (503, "degraded: storage unreachable".into())
        );
        assert_eq!(
            h(false, false, false),
            (503, "degraded: storage and bus unreachable".into())
        );
        assert_eq!(h(true, true, true), (200, "ready".into()));
        assert_eq!(
            h(true, true, false),
            (503, "not ready: bus unreachable".into())
        );
        assert_eq!(
            h(true, false, true),
            (503, "not ready: storage unreachable".into())
        );
    }

    /// Signup fields follow the contract's rules exactly at their edges.
    #[test]
    fn validates_signup_fields() {
        assert!(
            valid_username("abc") && valid_username("A.b_c-9") && valid_username(&"x".repeat(32))
        );
        assert!(
            !valid_username("ab") && !valid_username(&"x".repeat(33)) && !valid_username("a b c")
        );
        assert!(!valid_username("ünï"));
        assert!(valid_email("a@b") && valid_email("first.last@example.com"));
        assert!(
            !valid_email("ab") && !valid_email("a@b@c") && !valid_email("@b") && !valid_email("a@")
        );
        assert!(!valid_email("a b@c"));
        assert!(valid_password("12345678") && valid_password(&"é".repeat(128)));
        assert!(!valid_password("1234567") && !valid_password(&"x".repeat(129)));
    }

    /// Known paths list their methods; unknown API paths are 404 material.
    #[test]
    fn knows_allowed_methods() {
        assert_eq!(allowed("/api/login"), Some("POST"));
        assert_eq!(allowed("/api/nope"), None);
        assert_eq!(allowed("/api/admin/rooms/ops"), Some("DELETE"));
        assert_eq!(
            allowed("/api/admin/rooms/ops/archive"),
            Some("POST, DELETE")
        );
        assert_eq!(allowed("/api/admin/rooms/ops/pins"), None);
        assert_eq!(allowed("/ws/room/general"), Some("GET"));
        assert_eq!(allowed("/index.html"), Some("GET, HEAD"));
    }
}
