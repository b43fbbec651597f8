//! The application the reactor serves: the hub, the HTTP desk, the user
//! directory and the handle to the storage thread — everything the loop owns
//! except the sockets.
//!
//! The reactor calls the handful of methods below and nothing else; this file
//! only routes each event to the part that owns it (a request to the HTTP desk,
//! a chat frame to the hub, a storage reply to whoever parked its ticket) and
//! builds the narrow context each part works through.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use mio::{Token, Waker};

use crate::auth::pool::HashPool;
use crate::auth::secret;
use crate::config::{CLUSTER_KEY_MIN, Config};
use crate::files::workers::FileWorkers;
use crate::http::files::{self, FileDesk};
use crate::http::request::{HeadError, Request};
use crate::http::routes::{self, Handled, Http, Upgrade};
use crate::hub::{self, Bus, Hub, Stored};
use crate::outbox::{ConnRef, Outbox};
use crate::push::sender::{Senders, Setup};
use crate::push::{Outcome, Push, vapid};
use crate::store::{
    Backend, Desk, PushProfile, Reply, Request as StoreRequest, StoreHandle, StoredMessage, Ticket,
    UserRow,
};
use crate::users::Directory;
use crate::ws::codec::Message;
use crate::ws::control::{self, Data};

pub struct App {
    users: Directory,
    hub: Hub,
    http: Http,
    files: FileDesk,
    store: StoreHandle,
    push: Push,
}

impl App {
    /// Reads what storage holds, settles the token secret and the VAPID
    /// key, and starts the storage thread, the hashing pool and the push
    /// senders; each rings `waker` when it has answers.
    pub fn start(
        config: &Config,
        mut backend: impl Backend,
        mut bus: Box<dyn Bus>,
        waker: Arc<Waker>,
    ) -> io::Result<App> {
        let snapshot = backend.load().map_err(io::Error::other)?;
        let secret = secret::load_or_create(config.jwt_secret.as_deref(), &mut backend)
            .map_err(io::Error::other)?;
        let vapid = vapid::load_or_create(config.vapid_private_key.as_deref(), &mut backend)
            .map(Arc::new)
            .map_err(io::Error::other)?;
        let cluster = bus.node_name().map(str::to_string);
        let bus_waker = waker.clone();
        bus.start(Arc::new(move || {
            let _ = bus_waker.wake();
        }));
        let mut hub = Hub::new(&snapshot, config.rate_limit);
        if let Some(name) = cluster {
            let key = config
                .cluster_key
                .as_deref()
                .filter(|k| k.len() >= CLUSTER_KEY_MIN)
                .ok_or_else(|| {
                    io::Error::other(format!(
                        "a node of a cluster needs a cluster key of at least \
                         {CLUSTER_KEY_MIN} bytes"
                    ))
                })?;
            hub.join_cluster(bus, &name, incarnation(), key, &snapshot.heads);
        }
        hub.set_presence_grace(config.presence_grace);
        let accounts = snapshot.accounts;
        let mut users = Directory::from_rows(snapshot.users);
        for id in snapshot.unread_sources {
            users.mark_unread_source(id);
        }
        // Files live where the backend says, moved by their own threads.
        let file_store = backend.file_store().map_err(io::Error::other)?;
        let file_waker = waker.clone();
        let workers = file_store.map(|fs| {
            FileWorkers::spawn(
                fs,
                Arc::new(move || {
                    let _ = file_waker.wake();
                }),
            )
        });
        let files = FileDesk::new(workers, &secret, config.max_upload, config.upload_quota);
        log::info!("{}", files.describe());
        let store_waker = waker.clone();
        let store = StoreHandle::spawn(backend, config.store_queue, move || {
            let _ = store_waker.wake();
        });
        let hash_waker = waker.clone();
        let hasher = HashPool::spawn(config.hash_threads, config.pbkdf2_iterations, move || {
            let _ = hash_waker.wake();
        });
        let setup = Setup {
            vapid: vapid.clone(),
            contact: config.push_contact.clone(),
            allow_insecure: config.push_allow_insecure,
        };
        let senders = Senders::spawn(setup, move || {
            let _ = waker.wake();
        });
        let push = Push::new(vapid, Box::new(senders));
        Ok(App {
            users,
            hub,
            http: Http::new(config, &secret, hasher, &accounts, push.public_key()),
            files,
            store,
            push,
        })
    }

    /// Runs `f` on the hub with its context.
    fn with_hub<O: Outbox, R>(
        &mut self,
        out: &mut O,
        f: impl FnOnce(&mut Hub, &mut hub::Ctx<'_, O>) -> R,
    ) -> R {
        let mut cx = hub::Ctx {
            users: &mut self.users,
            store: &mut self.store,
            out,
        };
        f(&mut self.hub, &mut cx)
    }

    /// Runs `f` on the HTTP desk with its context; what it did to
    /// accounts then reaches the hub.
    fn with_http<O: Outbox, R>(
        &mut self,
        out: &mut O,
        f: impl FnOnce(&mut Http, &mut routes::Ctx<'_, O>) -> R,
    ) -> R {
        let mut cx = routes::Ctx {
            hub: &self.hub,
            users: &mut self.users,
            store: &mut self.store,
            out,
        };
        let r = f(&mut self.http, &mut cx);
        for event in self.http.take_events() {
            self.with_hub(out, |hub, cx| hub.on_account(cx, event));
        }
        r
    }

    /// Runs `f` on the file desk with its context.
    fn with_files<O: Outbox, R>(
        &mut self,
        out: &mut O,
        f: impl FnOnce(&mut FileDesk, &mut files::Ctx<'_, O>) -> R,
    ) -> R {
        let mut cx = files::Ctx {
            users: &mut self.users,
            store: &mut self.store,
            out,
        };
        let r = f(&mut self.files, &mut cx);
        for event in self.files.take_events() {
            self.with_hub(out, |hub, cx| hub.on_account(cx, event));
        }
        r
    }

    /// One parsed HTTP request from TCP peer `peer`.
    pub fn on_request(
        &mut self,
        out: &mut impl Outbox,
        conn: ConnRef,
        peer: IpAddr,
        req: &Request<'_>,
    ) -> Handled {
        if files::is_file_route(req.path) {
            out.metrics().http_requests += 1;
            let bearer = self.http.check_bearer(&self.users, req);
            return self.with_files(out, |desk, cx| desk.on_request(cx, conn, req, bearer));
        }
        self.with_http(out, |http, cx| http.on_request(cx, conn, peer, req))
    }

    /// Bytes of an upload's body, as the reactor reads them (`last`: the
    /// body is complete).
    pub fn on_body(&mut self, _out: &mut impl Outbox, token: Token, bytes: &[u8], last: bool) {
        self.files.on_body(token, bytes, last);
    }

    /// How many body bytes the reactor may read for `token`'s upload now.
    pub fn body_room(&mut self, token: Token) -> usize {
        self.files.body_room(token)
    }

    /// The flush pass is over: downloads whose sockets took bytes go on.
    pub fn on_flushed(&mut self, out: &mut impl Outbox) {
        if self.files.has_downloads() {
            self.files.on_flushed(out);
        }
    }

    /// A request head the parser refused.
    pub fn on_bad_request(&mut self, out: &mut impl Outbox, token: Token, e: HeadError) {
        self.http.refuse(out, token, e);
    }

    /// The 101 went out: a chat connection gets its session.
    pub fn on_upgraded(&mut self, out: &mut impl Outbox, conn: ConnRef, up: Upgrade) {
        if let Some(user) = up.user {
            self.with_hub(out, |hub, cx| {
                hub.open_session(cx, conn, user, up.sid, up.room)
            });
        }
    }

    /// One whole WebSocket message.
    pub fn on_ws_message(
        &mut self,
        out: &mut impl Outbox,
        token: Token,
        echo: bool,
        msg: Message<'_>,
    ) {
        if !echo && matches!(msg, Message::Ping(_)) && !self.hub.allow_ping(out, token) {
            return;
        }
        match control::answer(out, token, echo, msg) {
            Some(Data::Text(text)) => self.with_hub(out, |hub, cx| hub.on_text(cx, token, text)),
            Some(Data::Binary) => self.hub.on_binary(out, token),
            None => {}
        }
    }

    /// A connection is going away (the reactor's close pass, once each).
    pub fn on_closed(&mut self, out: &mut impl Outbox, token: Token) {
        self.files.on_closed(token);
        self.with_hub(out, |hub, cx| hub.close_session(cx, token));
    }

    /// The loop was woken: storage replies, password outcomes, bus frames,
    /// push outcomes.
    /// Returns true when storage answered `Drain` (shutdown may go on).
    pub fn on_wake(&mut self, out: &mut impl Outbox) -> bool {
        let mut drained = false;
        while let Some(mut reply) = self.store.try_reply() {
            if let Some((key, stored, files)) = Stored::of(&mut reply) {
                self.with_hub(out, |hub, cx| hub.on_message_stored(cx, key, stored, files));
                continue;
            }
            let reply = match reply {
                Reply::FileStored { .. }
                | Reply::FileRefused { .. }
                | Reply::FileFound { .. }
                | Reply::FindFileFailed { .. }
                | Reply::FileUsage { .. }
                | Reply::BlobsUsed { .. }
                | Reply::FilesSwept { .. } => {
                    self.with_files(out, |desk, cx| desk.on_store(cx, reply));
                    continue;
                }
                other => other,
            };
            match reply {
                Reply::FileStored { .. }
                | Reply::FileRefused { .. }
                | Reply::FileFound { .. }
                | Reply::FindFileFailed { .. }
                | Reply::FileUsage { .. }
                | Reply::BlobsUsed { .. }
                | Reply::FilesSwept { .. } => {}
                Reply::MessageStored { .. }
                | Reply::MessageExists { .. }
                | Reply::MessageFailed { .. }
                | Reply::MessageRefused { .. } => {}
                Reply::Changed { ticket, outcome } => {
                    self.with_hub(out, |hub, cx| hub.on_changed(cx, ticket, outcome))
                }
                Reply::Done { ticket } => self.on_write_answered(out, ticket, true),
                Reply::Failed { ticket } => self.on_write_answered(out, ticket, false),
                Reply::AccountWritten { ticket, outcome } => self.with_http(out, |http, cx| {
                    http.on_account_written(cx, ticket, Some(outcome))
                }),
                Reply::AccountRead { ticket, answer } => self.with_http(out, |http, cx| {
                    http.on_account_read(cx, ticket, Some(answer))
                }),
                Reply::AccountReadFailed { ticket } => {
                    self.with_http(out, |http, cx| http.on_account_read(cx, ticket, None))
                }
                Reply::PushProfile { ticket, profile } => {
                    self.on_push_profile(out, ticket, Some(profile))
                }
                Reply::PushProfileFailed { ticket } => self.on_push_profile(out, ticket, None),
                Reply::UserStored { key, id, role } => {
                    let new = self
                        .with_http(out, |http, cx| http.on_user_stored(cx, key, Ok((id, role))));
                    if let Some(id) = new {
                        self.hub.announce_user(id);
                    }
                }
                Reply::UserFailed { key, conflict } => {
                    self.with_http(out, |http, cx| http.on_user_stored(cx, key, Err(conflict)));
                }
                Reply::Resynced { ticket, snapshot } => {
                    self.with_hub(out, |hub, cx| hub.on_resync(cx, ticket, Some(snapshot)))
                }
                Reply::UserFound { ticket, row } => self.on_user_found(out, ticket, Some(row)),
                Reply::FindUserFailed { ticket } => self.on_user_found(out, ticket, None),
                Reply::RoomInfo { ticket, private } => {
                    self.with_hub(out, |hub, cx| hub.on_room_info(cx, ticket, Some(private)))
                }
                Reply::RoomInfoFailed { ticket } => {
                    self.with_hub(out, |hub, cx| hub.on_room_info(cx, ticket, None))
                }
                Reply::ResyncFailed { ticket } => {
                    self.with_hub(out, |hub, cx| hub.on_resync(cx, ticket, None))
                }
                Reply::History { ticket, messages } => self.on_history(out, ticket, Some(messages)),
                Reply::HistoryFailed { ticket } => self.on_history(out, ticket, None),
                Reply::Unread { ticket, counts } => {
                    self.with_hub(out, |hub, cx| hub.on_unread(cx, ticket, &counts))
                }
                Reply::Drained => drained = true,
            }
        }
        self.with_http(out, |http, cx| http.on_hashed(cx));
        self.with_files(out, |desk, cx| desk.on_workers(cx));
        self.with_hub(out, |hub, cx| hub.on_bus(cx));
        for note in self.hub.take_peer_notes() {
            self.with_http(out, |http, cx| http.on_peer_note(cx, note));
        }
        self.on_pushed(out);
        drained
    }

    /// A user row goes to the desk that asked for it: a login (HTTP) or a
    /// note that named the user (the hub).
    fn on_user_found(
        &mut self,
        out: &mut impl Outbox,
        ticket: Ticket,
        row: Option<Option<UserRow>>,
    ) {
        match ticket.desk {
            Desk::Hub => self.with_hub(out, |hub, cx| hub.on_user_found(cx, ticket, row)),
            Desk::Http => self.with_http(out, |http, cx| http.on_user_found(cx, ticket, row)),
            // The file desk never looks a user up.
            Desk::Files => {}
        }
    }

    /// A write with a ticket and no data was stored or not: the desk that
    /// asked goes on.
    fn on_write_answered(&mut self, out: &mut impl Outbox, ticket: Ticket, ok: bool) {
        match ticket.desk {
            Desk::Hub => self.with_hub(out, |hub, cx| hub.on_write_answered(cx, ticket, ok)),
            Desk::Http => self.with_http(out, |http, cx| http.on_write_answered(cx, ticket, ok)),
            Desk::Files => {
                let reply = if ok {
                    Reply::Done { ticket }
                } else {
                    Reply::Failed { ticket }
                };
                self.with_files(out, |desk, cx| desk.on_store(cx, reply))
            }
        }
    }

    /// A user's push profile was read: for the hub, the push it was read
    /// for goes to the senders; for the HTTP desk, it answers the settings.
    fn on_push_profile(
        &mut self,
        out: &mut impl Outbox,
        ticket: Ticket,
        profile: Option<PushProfile>,
    ) {
        if ticket.desk == Desk::Http {
            return self.with_http(out, |http, cx| http.on_push_profile(cx, ticket, profile));
        }
        let notice = self.hub.take_push(ticket);
        match (notice, profile) {
            (Some(notice), Some(profile)) => {
                let queued = self.push.deliver(&notice, profile);
                out.metrics().push_dropped += queued.dropped as u64;
            }
            (Some(_), None) => out.metrics().push_dropped += 1,
            (None, _) => {}
        }
    }

    /// What the push senders report: counted, and a subscription its push
    /// service says is gone is deleted (if storage is too busy for that,
    /// the next push to it says so again).
    fn on_pushed(&mut self, out: &mut impl Outbox) {
        while let Some(outcome) = self.push.try_outcome() {
            let m = out.metrics();
            match outcome {
                Outcome::Sent => m.push_sent += 1,
                Outcome::Retrying => m.push_retried += 1,
                Outcome::Failed => m.push_failed += 1,
                Outcome::Gone { endpoint, auth } => {
                    m.push_gone += 1;
                    let _ = self
                        .store
                        .submit(StoreRequest::DropPushSubscription { endpoint, auth });
                }
            }
        }
    }

    /// A history page goes to the desk that asked for it.
    fn on_history(
        &mut self,
        out: &mut impl Outbox,
        ticket: Ticket,
        messages: Option<Vec<StoredMessage>>,
    ) {
        match ticket.desk {
            Desk::Hub => self.with_hub(out, |hub, cx| hub.on_history(cx, ticket, messages)),
            Desk::Http => self.with_http(out, |http, cx| http.on_history(cx, ticket, messages)),
            Desk::Files => {}
        }
    }

    /// Whether a chat connection's next frame may be handled now: false while
    /// one of its frames waits for a storage read to fit (`hub/reads.rs`).
    pub fn takes_input(&self, token: Token) -> bool {
        self.hub.takes_input(token)
    }

    /// Once a second, from the reactor's timer sweep.
    pub fn on_tick(&mut self, out: &mut impl Outbox) {
        self.files.on_tick(out);
        self.files.sweep(&mut self.store);
        self.with_hub(out, |hub, cx| hub.on_tick(cx));
        self.with_http(out, |http, cx| http.on_tick(cx));
    }

    /// Storage is behind: the reactor stops reading chat input.
    pub fn store_backlogged(&self) -> bool {
        self.store.is_backlogged()
    }

    /// Storage is back under its low-water mark.
    pub fn store_caught_up(&self) -> bool {
        self.store.has_caught_up()
    }

    /// Shutdown, phase 1: ask storage to commit everything it holds. False
    /// when it cannot be asked (it is gone): nothing is left to wait for.
    pub fn begin_drain(&mut self) -> bool {
        self.store.submit(StoreRequest::Drain).is_ok()
    }

    /// Shutdown, phase 2: sessions end without presence broadcasts.
    pub fn go_quiet(&mut self) {
        self.hub.go_quiet();
    }

    /// Shutdown, last phase: waits for the storage thread and the hashing pool.
    pub fn join(&mut self) {
        self.store.join();
        self.http.join();
        self.files.join();
    }
}

/// A random id for this process on the bus: a restarted node must be told
/// apart from its previous self, whose connections are gone.
fn incarnation() -> u64 {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut b = [0u8; 8];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the system CSPRNG is available");
    u64::from_le_bytes(b).max(1)
}
