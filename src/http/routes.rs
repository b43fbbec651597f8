//! The REST API and the WebSocket entry points, as methods on [`App`].
//!
//! Each route answers at once from loop-owned memory, or submits work to the
//! hashing pool or the storage thread and returns [`Handled::Waiting`]; the
//! answer is written when the work comes back (see `app.rs`). Later
//! pipelined requests on the same connection wait, so responses stay in order.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::request::Request;
use super::response::Response;
use super::static_files;
use crate::app::{App, Waiter};
use crate::auth::password;
use crate::auth::pool::Job;
use crate::clock;
use crate::config::{
    DEFAULT_HISTORY_LIMIT, EMAIL_MAX, MAX_HISTORY_LIMIT, PASSWORD_MAX, PASSWORD_MIN, USERNAME_MAX,
    USERNAME_MIN,
};
use crate::hub::rooms::{ROOM_NAME_RULE, valid_room_name};
use crate::metrics::Gauges;
use crate::outbox::{ConnRef, Outbox};
use crate::store::{
    HistoryQuery, PasswordHash, Request as StoreRequest, StoredMessage, Target, UserId, UserRow,
};
use crate::users::{Directory, Taken};
use crate::ws::proto::{MessageObj, Ts};
use crate::ws::upgrade;

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
    pub room: Option<String>,
}

/// The methods each known path accepts, for 405 and `Allow`.
fn allowed(path: &str) -> Option<&'static str> {
    Some(match path {
        "/api/signup" | "/api/login" => "POST",
        "/api/me" | "/api/users" | "/api/rooms" | "/api/messages" | "/healthz" | "/metrics" => {
            "GET, HEAD"
        }
        "/ws" | "/ws/echo" => "GET",
        p if p.starts_with("/ws/room/") => "GET",
        p if p.starts_with("/api/") => return None,
        _ => "GET, HEAD",
    })
}

#[derive(Deserialize)]
struct SignupBody {
    username: String,
    email: String,
    password: String,
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

/// A body that is a JSON object of the expected shape. serde would also
/// accept an array of the fields in order; the contract's bodies are objects.
fn json_object<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ()> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(());
    }
    serde_json::from_slice(body).map_err(|_| ())
}

/// Usernames: 3-32 of `[A-Za-z0-9_.-]`.
pub fn valid_username(s: &str) -> bool {
    (USERNAME_MIN..=USERNAME_MAX).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
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

fn bad_input(message: impl Into<String>) -> Response {
    Response::error(400, "invalid_input", message)
}

fn unauthorized() -> Response {
    Response::error(401, "unauthorized", "missing, invalid or expired token")
}

fn busy() -> Response {
    Response::error(503, "busy", "the server is busy; try again shortly")
}

/// A user as the API shows it to that user (typed, so fields keep the
/// contract's order on the wire).
#[derive(Serialize)]
struct UserOut<'a> {
    id: UserId,
    username: &'a str,
    email: &'a str,
}

#[derive(Serialize)]
struct UserEnvelope<'a> {
    user: UserOut<'a>,
}

#[derive(Serialize)]
struct LoginOut<'a> {
    token: &'a str,
    expires_at: Ts,
    user: UserOut<'a>,
}

/// A row of `GET /api/users`.
#[derive(Serialize)]
struct Listed<'a> {
    id: UserId,
    username: &'a str,
    online: bool,
    last_seen: Option<Ts>,
}

/// A row of `GET /api/rooms`; private rooms add their owner and members.
#[derive(Serialize)]
struct RoomOut<'a> {
    name: &'a str,
    private: bool,
    online: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<Vec<&'a str>>,
}

impl App {
    /// The user a request's token names, if the token is valid and the user exists.
    pub fn authenticate(&self, token: Option<&str>) -> Option<UserId> {
        let v = self.tokens.verify(token?)?;
        self.users.get(v.user).map(|u| u.id)
    }

    /// Routes one request. The response (if any yet) is queued on `out`.
    pub fn handle_http(&mut self, conn: ConnRef, req: &Request<'_>, out: &mut Outbox) -> Handled {
        out.metrics.http_requests += 1;
        let keep_alive = req.keep_alive();
        let head_only = req.method == "HEAD";
        let method = if head_only { "GET" } else { req.method };
        let Some(allow) = allowed(req.path) else {
            out.http(
                conn.token,
                Response::error(404, "not_found", "no such endpoint"),
                keep_alive,
                head_only,
            );
            return Handled::Done;
        };
        if !allow.split(", ").any(|m| m == method) || (head_only && !allow.contains("HEAD")) {
            let resp = Response::error(
                405,
                "method_not_allowed",
                format!("{} is not allowed here", req.method),
            )
            .with_header("Allow", allow);
            out.http(conn.token, resp, keep_alive, head_only);
            return Handled::Done;
        }
        let resp = match req.path {
            "/api/signup" => return self.signup(conn, req, out),
            "/api/login" => return self.login(conn, req, out),
            "/ws" | "/ws/echo" => return self.upgrade(conn, req, None, out),
            p if p.starts_with("/ws/room/") => {
                let room = &p["/ws/room/".len()..];
                return self.upgrade(conn, req, Some(room), out);
            }
            "/api/messages" => return self.messages(conn, req, out),
            "/healthz" => Response::new(200, "text/plain; charset=utf-8", &b"ok"[..]),
            "/metrics" => {
                let gauges = Gauges {
                    connections_open: out.conns.len(),
                    ws_connections: self.hub.sessions.iter().flatten().count(),
                    store_queue_depth: self.store.depth(),
                    hash_in_flight: self.hasher.in_flight(),
                    users_online: self.hub.online.len(),
                    rooms: self.hub.rooms.iter().count(),
                };
                Response::new(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    out.metrics.render(&gauges).into_bytes(),
                )
            }
            "/api/me" | "/api/users" | "/api/rooms" => match self.authenticate(req.bearer()) {
                None => unauthorized(),
                Some(me) => match req.path {
                    "/api/me" => self.me(me),
                    "/api/users" => self.list_users(),
                    _ => self.list_rooms(me),
                },
            },
            path => static_files::serve(
                path,
                req.header("if-none-match"),
                self.config.static_dir.as_deref(),
            ),
        };
        out.http(conn.token, resp, keep_alive, head_only);
        Handled::Done
    }

    fn signup(&mut self, conn: ConnRef, req: &Request<'_>, out: &mut Outbox) -> Handled {
        let keep_alive = req.keep_alive();
        let resp = match json_object::<SignupBody>(req.body) {
            Err(_) => {
                bad_input("expected a JSON object with string fields username, email and password")
            }
            Ok(b) if !valid_username(&b.username) => {
                bad_input("username must be 3-32 characters of letters, digits, '_', '.' or '-'")
            }
            Ok(b) if !valid_email(&b.email) => bad_input("email must contain exactly one '@'"),
            Ok(b) if !valid_password(&b.password) => bad_input("password must be 8-128 characters"),
            Ok(b) => match self.users.reserve(&b.username, &b.email) {
                Err(Taken::Username) => Response::error(409, "taken", "that username is taken"),
                Err(Taken::Email) => {
                    Response::error(409, "taken", "that email is already registered")
                }
                Ok(id) => {
                    let (username, email) = (b.username, b.email);
                    let ticket = self.park(Waiter::SignupHash {
                        conn,
                        keep_alive,
                        id,
                        username: username.clone(),
                        email: email.clone(),
                    });
                    if self
                        .hasher
                        .submit(
                            ticket,
                            Job::Hash {
                                password: b.password,
                            },
                        )
                        .is_ok()
                    {
                        return Handled::Waiting;
                    }
                    self.waiters.remove(&ticket);
                    self.users.release(&username, &email);
                    busy()
                }
            },
        };
        out.http(conn.token, resp, keep_alive, false);
        Handled::Done
    }

    /// The password is hashed: store the user, answer when it is durable.
    #[allow(clippy::too_many_arguments)]
    pub fn finish_signup_hash(
        &mut self,
        conn: ConnRef,
        keep_alive: bool,
        id: UserId,
        username: String,
        email: String,
        password: PasswordHash,
        out: &mut Outbox,
    ) {
        let row = UserRow {
            id,
            username,
            email,
            password,
            created_ms: clock::now_ms(),
            last_seen_ms: None,
        };
        if self
            .store
            .submit(StoreRequest::PutUser(row.clone()))
            .is_err()
        {
            self.users.release(&row.username, &row.email);
            self.answer(conn, busy(), keep_alive, out);
            return;
        }
        self.signups.insert(id, (conn, keep_alive, row));
    }

    /// The user row is stored (or not): the signup is answered.
    pub fn on_user_stored(&mut self, id: UserId, ok: bool, out: &mut Outbox) {
        let Some((conn, keep_alive, row)) = self.signups.remove(&id) else {
            return;
        };
        let resp = if ok {
            let user = UserOut {
                id: row.id,
                username: &row.username,
                email: &row.email,
            };
            let resp = Response::json(201, &UserEnvelope { user });
            self.users.insert(row);
            resp
        } else {
            self.users.release(&row.username, &row.email);
            Response::error(500, "internal", "could not store the account")
        };
        self.answer(conn, resp, keep_alive, out);
    }

    fn login(&mut self, conn: ConnRef, req: &Request<'_>, out: &mut Outbox) -> Handled {
        let keep_alive = req.keep_alive();
        let body = match json_object::<LoginBody>(req.body) {
            Ok(b) if !b.username.is_empty() && !b.password.is_empty() => b,
            _ => {
                let resp =
                    bad_input("expected a JSON object with string fields username and password");
                out.http(conn.token, resp, keep_alive, false);
                return Handled::Done;
            }
        };
        // An unknown user costs the same PBKDF2 work as a wrong password.
        let user = self
            .users
            .find(&body.username)
            .map(|u| (u.id, u.password.clone()));
        let stored = user.as_ref().map_or_else(
            || password::decoy(self.config.pbkdf2_iterations),
            |u| u.1.clone(),
        );
        let ticket = self.park(Waiter::Login {
            conn,
            keep_alive,
            user: user.map(|u| u.0),
        });
        if self
            .hasher
            .submit(
                ticket,
                Job::Verify {
                    password: body.password,
                    stored,
                },
            )
            .is_err()
        {
            self.waiters.remove(&ticket);
            out.http(conn.token, busy(), keep_alive, false);
            return Handled::Done;
        }
        Handled::Waiting
    }

    /// The password check is done: a token, or the one answer for every failure.
    pub fn finish_login(
        &mut self,
        conn: ConnRef,
        keep_alive: bool,
        user: Option<UserId>,
        out: &mut Outbox,
    ) {
        let resp = match user.and_then(|id| self.users.get(id)) {
            Some(u) => {
                let (token, exp) = self
                    .tokens
                    .issue(u.id, &u.name, clock::now_ms() as u64 / 1000);
                let user = UserOut {
                    id: u.id,
                    username: &u.name,
                    email: &u.email,
                };
                Response::json(
                    200,
                    &LoginOut {
                        token: &token,
                        expires_at: Ts(exp as i64 * 1000),
                        user,
                    },
                )
            }
            None => Response::error(
                401,
                "invalid_credentials",
                "unknown username or wrong password",
            ),
        };
        self.answer(conn, resp, keep_alive, out);
    }

    /// Queues an asynchronous answer if its connection is still there.
    fn answer(&self, conn: ConnRef, resp: Response, keep_alive: bool, out: &mut Outbox) {
        if out.is_live(conn) {
            out.http(conn.token, resp, keep_alive, false);
            out.resume_http(conn.token);
        }
    }

    fn me(&self, me: UserId) -> Response {
        let u = self.users.get(me).expect("authenticated users exist");
        Response::json(
            200,
            &UserEnvelope {
                user: UserOut {
                    id: u.id,
                    username: &u.name,
                    email: &u.email,
                },
            },
        )
    }

    fn list_users(&self) -> Response {
        let users: Vec<_> = self
            .users
            .all()
            .map(|u| Listed {
                id: u.id,
                username: &u.name,
                online: self.hub.online.contains_key(&u.id),
                last_seen: u.last_seen_ms.map(Ts),
            })
            .collect();
        Response::json(200, &json!({ "users": users }))
    }

    fn list_rooms(&self, me: UserId) -> Response {
        let mut rooms: Vec<RoomOut<'_>> = self
            .hub
            .rooms
            .iter()
            .filter_map(|(_, r)| {
                let (owner, members) = match &r.private {
                    None if r.has_messages || r.online() > 0 => (None, None),
                    Some(p) if p.members.contains(&me) => {
                        let mut members: Vec<&str> =
                            p.members.iter().map(|m| self.users.name(*m)).collect();
                        members.sort_unstable();
                        (Some(self.users.name(p.owner)), Some(members))
                    }
                    _ => return None,
                };
                Some(RoomOut {
                    name: &r.name,
                    private: r.private.is_some(),
                    online: r.online(),
                    owner,
                    members,
                })
            })
            .collect();
        rooms.sort_by(|a, b| a.name.cmp(b.name));
        Response::json(200, &json!({ "rooms": rooms }))
    }

    fn messages(&mut self, conn: ConnRef, req: &Request<'_>, out: &mut Outbox) -> Handled {
        let keep_alive = req.keep_alive();
        let head_only = req.method == "HEAD";
        let resp = match self.authenticate(req.bearer()) {
            None => unauthorized(),
            Some(me) => match self.history_query(me, req) {
                Err(resp) => resp,
                Ok(None) => Response::json(200, &json!({"messages": []})),
                Ok(Some(query)) => {
                    let target = query.target.clone();
                    let ticket = self.park(Waiter::HttpHistory {
                        conn,
                        keep_alive,
                        head_only,
                        target,
                    });
                    if self
                        .store
                        .submit(StoreRequest::History { ticket, query })
                        .is_ok()
                    {
                        return Handled::Waiting;
                    }
                    self.waiters.remove(&ticket);
                    busy()
                }
            },
        };
        out.http(conn.token, resp, keep_alive, head_only);
        Handled::Done
    }

    /// Reads `room`/`with`, `before`, `limit` and `page`. `Ok(None)`: a room
    /// nobody ever wrote in, answered without asking storage.
    fn history_query(
        &self,
        me: UserId,
        req: &Request<'_>,
    ) -> Result<Option<HistoryQuery>, Response> {
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
        let offset = page.map_or(0, |p| (p as usize - 1).saturating_mul(limit));
        let target = match (req.query_param("room"), req.query_param("with")) {
            (Some(room), None) => match self.room_target(me, &room) {
                Ok(Some(t)) => t,
                Ok(None) => return Ok(None),
                Err((status, code, msg)) => return Err(Response::error(status, code, msg)),
            },
            (None, Some(with)) => match self.users.find(&with) {
                Some(u) => Target::Direct(me, u.id),
                None => {
                    return Err(Response::error(
                        404,
                        "no_such_user",
                        format!("no user called {with}"),
                    ));
                }
            },
            _ => return Err(bad_input("give exactly one of room or with")),
        };
        Ok(Some(HistoryQuery {
            target,
            before,
            after: None,
            limit,
            offset,
        }))
    }

    /// The storage target of a room `me` may read; `Ok(None)` when the room
    /// has no history at all.
    pub fn room_target(
        &self,
        me: UserId,
        room: &str,
    ) -> Result<Option<Target>, (u16, &'static str, String)> {
        if !valid_room_name(room) {
            return Err((400, "invalid_input", ROOM_NAME_RULE.into()));
        }
        match self.hub.rooms.id(room).map(|id| self.hub.rooms.get(id)) {
            None => Ok(None),
            Some(r) if !r.admits(me) => Err((403, "forbidden", format!("{room} is private"))),
            Some(_) => Ok(Some(Target::Room(room.to_string()))),
        }
    }

    /// Encodes stored messages as the contract's message objects.
    pub fn message_objects<'a>(
        users: &'a Directory,
        messages: &'a [StoredMessage],
    ) -> Vec<MessageObj<'a>> {
        messages
            .iter()
            .map(|m| {
                let user = users.name(m.from);
                let (from, to) = match m.to {
                    Some(to) => (Some(user), Some(users.name(to))),
                    None => (None, None),
                };
                MessageObj {
                    id: m.id,
                    room: m.room.as_deref(),
                    from,
                    to,
                    user,
                    content: &m.content,
                    timestamp: Ts(m.timestamp_ms),
                }
            })
            .collect()
    }

    /// A history page came back from storage.
    pub fn on_history(
        &mut self,
        waiter: Waiter,
        messages: Option<Vec<StoredMessage>>,
        out: &mut Outbox,
    ) {
        match waiter {
            Waiter::HttpHistory {
                conn,
                keep_alive,
                head_only,
                ..
            } => {
                if !out.is_live(conn) {
                    return;
                }
                let resp = match &messages {
                    Some(m) => Response::json(
                        200,
                        &json!({"messages": App::message_objects(&self.users, m)}),
                    ),
                    None => Response::error(500, "internal", "could not read history"),
                };
                out.http(conn.token, resp, keep_alive, head_only);
                out.resume_http(conn.token);
            }
            Waiter::WsHistory { conn, target } => self.send_history(conn, &target, messages, out),
            Waiter::Replay { conn, room } => self.finish_replay(conn, &room, messages, out),
            Waiter::Unread { .. } | Waiter::SignupHash { .. } | Waiter::Login { .. } => {}
        }
    }

    fn upgrade(
        &mut self,
        conn: ConnRef,
        req: &Request<'_>,
        room: Option<&str>,
        out: &mut Outbox,
    ) -> Handled {
        let keep_alive = req.keep_alive();
        let echo = req.path == "/ws/echo";
        if echo && !self.config.echo {
            out.http(
                conn.token,
                Response::error(404, "not_found", "start the server with --echo"),
                keep_alive,
                false,
            );
            return Handled::Done;
        }
        let user = if echo {
            None
        } else {
            let token: Option<Cow<'_, str>> =
                req.query_param("token").or(req.bearer().map(Cow::Borrowed));
            match self.authenticate(token.as_deref()) {
                Some(u) => Some(u),
                None => {
                    out.http(conn.token, unauthorized(), keep_alive, false);
                    return Handled::Done;
                }
            }
        };
        if let (Some(room), Some(me)) = (room, user)
            && let Err((status, code, msg)) = self.room_target(me, room)
        {
            out.http(
                conn.token,
                Response::error(status, code, msg),
                keep_alive,
                false,
            );
            return Handled::Done;
        }
        match upgrade::client_key(req) {
            Err(why) => {
                out.http(conn.token, bad_input(why), keep_alive, false);
                Handled::Done
            }
            Ok(key) => {
                out.reply(conn.token, &upgrade::accept_response(key));
                out.metrics.ws_upgrades += 1;
                Handled::Upgrade(Upgrade {
                    user,
                    room: room.map(String::from),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(allowed("/ws/room/general"), Some("GET"));
        assert_eq!(allowed("/index.html"), Some("GET, HEAD"));
    }
}
