//! Everything the loop owns except the sockets: the user directory, the hub,
//! the handles to the storage thread and the hashing pool, the token keys,
//! and the requests waiting for an asynchronous answer.
//!
//! HTTP routes (`http::routes`) and client frames (`hub::frames`) are methods
//! on [`App`]; they reach connections only through an [`Outbox`]. This file
//! routes the asynchronous answers back: storage replies and hashing outcomes.

use std::collections::HashMap;
use std::time::Instant;

use crate::auth::jwt::Tokens;
use crate::auth::pool::{HashPool, Outcome};
use crate::config::Config;
use crate::hub::Hub;
use crate::outbox::{ConnRef, Outbox};
use crate::store::{Reply, Snapshot, StoreHandle, Target, Ticket, UserId, UserRow};
use crate::users::Directory;
use crate::ws::proto::Encoder;

/// Who waits for an asynchronous answer, and what to do with it.
pub enum Waiter {
    /// Signup: the password is being hashed.
    SignupHash {
        conn: ConnRef,
        keep_alive: bool,
        id: UserId,
        username: String,
        email: String,
    },
    /// Login: the password is being verified (against a decoy for unknown users).
    Login {
        conn: ConnRef,
        keep_alive: bool,
        user: Option<UserId>,
    },
    /// `GET /api/messages`.
    HttpHistory {
        conn: ConnRef,
        keep_alive: bool,
        head_only: bool,
        target: Target,
    },
    /// A `history` frame.
    WsHistory { conn: ConnRef, target: Target },
    /// `join` with `since`.
    Replay { conn: ConnRef, room: Box<str> },
    /// The `unread` frame after connect.
    Unread { conn: ConnRef },
}

/// The loop's notion of time: wall-clock milliseconds for timestamps, and
/// coarse seconds since start for timers (small enough to store per connection).
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn now_s(&self) -> u32 {
        self.start.elapsed().as_secs() as u32
    }
}

pub struct App {
    pub config: Config,
    pub users: Directory,
    pub hub: Hub,
    pub store: StoreHandle,
    pub hasher: HashPool,
    pub tokens: Tokens,
    /// Serializes server frames; its scratch buffer is reused.
    pub encoder: Encoder,
    pub clock: Clock,
    pub waiters: HashMap<Ticket, Waiter>,
    /// Signups whose user row is being stored, by user id.
    pub signups: HashMap<UserId, (ConnRef, bool, UserRow)>,
    /// Set at shutdown: sessions end without presence broadcasts, which would
    /// otherwise cost every remaining connection a frame per departing user
    /// (quadratic in the number of users, for frames nobody will read).
    pub quiet: bool,
    next_ticket: Ticket,
}

impl App {
    pub fn new(
        config: Config,
        snapshot: Snapshot,
        store: StoreHandle,
        hasher: HashPool,
        tokens: Tokens,
    ) -> App {
        let mut hub = Hub {
            last_msg_id: snapshot.max_message_id,
            ..Hub::default()
        };
        for (user, client_id, id, ts) in &snapshot.recent_client_ids {
            hub.client_ids.insert(*user, client_id, *id, *ts);
        }
        for name in &snapshot.public_rooms {
            let id = hub.rooms.open(name);
            hub.rooms.get_mut(id).has_messages = true;
        }
        for row in snapshot.private_rooms {
            let id = hub.rooms.open(&row.name);
            hub.rooms.get_mut(id).private = Some(crate::hub::rooms::Private {
                owner: row.owner,
                members: row.members.into_iter().collect(),
            });
        }
        let mut users = Directory::from_rows(snapshot.users);
        for id in snapshot.unread_sources {
            users.mark_unread_source(id);
        }
        App {
            config,
            users,
            hub,
            store,
            hasher,
            tokens,
            encoder: Encoder::default(),
            clock: Clock {
                start: Instant::now(),
            },
            waiters: HashMap::new(),
            signups: HashMap::new(),
            quiet: false,
            next_ticket: 0,
        }
    }

    /// Parks `waiter` and returns the ticket its answer will carry.
    pub fn park(&mut self, waiter: Waiter) -> Ticket {
        self.next_ticket += 1;
        self.waiters.insert(self.next_ticket, waiter);
        self.next_ticket
    }

    /// Drains every storage reply that is ready.
    pub fn on_store_replies(&mut self, out: &mut Outbox) -> bool {
        let mut drained = false;
        while let Some(reply) = self.store.try_reply() {
            match reply {
                Reply::MessageStored(id) => {
                    out.metrics.messages_stored += 1;
                    self.on_message_stored(id, true, out);
                }
                Reply::MessageFailed(id) => self.on_message_stored(id, false, out),
                Reply::UserStored(id) => self.on_user_stored(id, true, out),
                Reply::UserFailed(id) => self.on_user_stored(id, false, out),
                Reply::History { ticket, messages } => {
                    if let Some(w) = self.waiters.remove(&ticket) {
                        self.on_history(w, Some(messages), out);
                    }
                }
                Reply::HistoryFailed { ticket } => {
                    if let Some(w) = self.waiters.remove(&ticket) {
                        self.on_history(w, None, out);
                    }
                }
                Reply::Unread { ticket, counts } => {
                    if let Some(Waiter::Unread { conn }) = self.waiters.remove(&ticket) {
                        self.send_unread(conn, &counts, out);
                    }
                }
                Reply::Drained => drained = true,
            }
        }
        drained
    }

    /// Drains every finished password job.
    pub fn on_hash_outcomes(&mut self, out: &mut Outbox) {
        while let Some((ticket, outcome)) = self.hasher.try_outcome() {
            let Some(waiter) = self.waiters.remove(&ticket) else {
                continue;
            };
            match (waiter, outcome) {
                (
                    Waiter::SignupHash {
                        conn,
                        keep_alive,
                        id,
                        username,
                        email,
                    },
                    Outcome::Hashed(password),
                ) => {
                    self.finish_signup_hash(conn, keep_alive, id, username, email, password, out);
                }
                (
                    Waiter::Login {
                        conn,
                        keep_alive,
                        user,
                    },
                    Outcome::Verified(ok),
                ) => {
                    self.finish_login(conn, keep_alive, user.filter(|_| ok), out);
                }
                _ => log::error!("hashing outcome of the wrong kind for ticket {ticket}"),
            }
        }
    }
}
