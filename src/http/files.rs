//! The file routes, and the loop's half of every transfer: uploads
//! (`POST /api/files`, `PUT /api/me/avatar`) streamed from the socket to a
//! file thread, downloads (`GET /api/files/{id}`, `GET
//! /api/users/{name}/avatar`) streamed back, and file links.
//!
//! Nothing here touches a byte of a file: the loop hands an upload's body
//! to the transfer workers (`files::workers`) chunk by chunk as it is read,
//! and asks them for a download's chunks as its socket takes them. Two
//! windows bound what is in flight, so a transfer costs the server a few
//! hundred KiB whatever the file's size: per transfer ([`UPLOAD_WINDOW`],
//! [`DOWNLOAD_WINDOW`]: past it the socket is not read, or no chunk is
//! asked for) and server-wide ([`FILE_BYTES_IN_FLIGHT`]). Previews and
//! avatars are made on the image workers; who may read a file is
//! storage's answer (`store::files`), asked once per download.
//!
//! A file is served as an attachment unless its stored type is on the
//! inline allowlist (`files::names`), always with `nosniff` and a sandboxing
//! CSP, so nothing uploaded runs on the chat's origin. Everyone who may not
//! read a file gets the same 404 as for a file that does not exist.

use std::collections::{HashMap, VecDeque};
use std::io::Write;

use mio::Token;
use serde::Serialize;
use serde_json::json;

use super::range::{self, Part};
use super::request::Request;
use super::response::Response;
use super::routes::{Handled, send};
use crate::accounts::AccountEvent;
use crate::auth::links::FileLinks;
use crate::clock;
use crate::config::{
    AVATAR_LARGE, BLOB_GRACE, BLOB_SWEEP_BATCH, DOWNLOAD_CHUNK, DOWNLOAD_WINDOW,
    FILE_BYTES_IN_FLIGHT, FILE_SWEEP_INTERVAL, HSTS, IMAGE_QUEUE, MAX_AVATAR_UPLOAD,
    MIN_CHUNK_COST, TRANSFER_IDLE_TIMEOUT, UNREFERENCED_FILE_GRACE, UPLOAD_WINDOW,
};
use crate::files::images::{AvatarError, Inspected};
use crate::files::names::{self, OCTET_STREAM};
use crate::files::workers::{FileJob, FileReply, FileWorkers, ImageJob, TransferId};
use crate::files::{BlobKey, FileError};
use crate::outbox::{ConnRef, Outbox};
use crate::store::{
    Desk, FileId, FileRow, ImageInfo, Reply, Request as StoreRequest, Storage, Ticket, UserId,
};
use crate::users::{Changed, Directory};

/// Whether a request's body is streamed to a file thread rather than read
/// whole (the parser leaves such a body on the connection).
pub fn streams_body(method: &str, path: &str) -> bool {
    (method == "POST" && path == UPLOADS) || (method == "PUT" && path == AVATAR)
}

/// Whether a path is one of the file routes (`App` sends them here).
pub fn is_file_route(path: &str) -> bool {
    path == UPLOADS
        || path == AVATAR
        || path == LINK
        || path.starts_with("/api/files/")
        || is_avatar_path(path)
}

/// `GET /api/users/{name}/avatar`: public, asked with or without a token.
fn is_avatar_path(path: &str) -> bool {
    path.starts_with("/api/users/") && path.ends_with("/avatar")
}

const UPLOADS: &str = "/api/files";
const AVATAR: &str = "/api/me/avatar";
const LINK: &str = "/api/me/file-link";

/// The sandbox every file is served in: no scripts, no plugins, no forms,
/// a unique origin, and nothing loaded from anywhere.
const FILE_CSP: &str = "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; \
                        style-src 'unsafe-inline'";

/// How long a browser may reuse a file without asking again: the bytes of
/// an id never change, but who may read them can (a deleted message), so
/// briefly, and only in the reader's own cache.
const FILE_CACHE: &str = "private, max-age=300";
/// Avatars are public and their URL names their version.
const AVATAR_CACHE: &str = "public, max-age=31536000, immutable";

/// What an HTTP call to the file routes may touch.
pub struct Ctx<'a, O> {
    pub users: &'a mut Directory,
    pub store: &'a mut dyn Storage,
    pub out: &'a mut O,
}

/// Which of a file's blobs a download wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blob {
    Original,
    Small,
    Large,
}

/// An upload, from its head to its answer.
struct Upload {
    user: UserId,
    name: String,
    /// The declared type, checked (`names::media_type`).
    mime: String,
    len: u64,
    /// An avatar (`PUT /api/me/avatar`), not a file.
    avatar: bool,
    /// The client waits for `100 Continue` before it sends the body.
    expect: bool,
    /// Cost of the chunks sent to the worker and not yet answered.
    window: usize,
    /// The stored row, once its bytes are in.
    row: Option<FileRow>,
}

/// A download, from its look-up to its last byte.
struct Download {
    blob: Blob,
    avatar: bool,
    head_only: bool,
    range: Option<Vec<u8>>,
    if_range: Option<Vec<u8>>,
    /// Set once storage answered.
    row: Option<FileRow>,
    key: Option<BlobKey>,
    /// The next byte to ask for, and the last byte to send (`None` while
    /// the blob's size is not known: a preview, read from its start).
    next: u64,
    end: Option<u64>,
    /// Lengths of the reads asked for and not yet answered, in order.
    asked: VecDeque<usize>,
    /// The head went out.
    started: bool,
    /// Unsent bytes at the last tick, and the seconds they did not move.
    last_queued: usize,
    stalled_s: u64,
}

enum Job {
    Upload(Upload),
    Download(Download),
}

struct Transfer {
    conn: ConnRef,
    keep_alive: bool,
    job: Job,
}

/// The file desk: the routes, the transfers and the workers.
pub struct FileDesk {
    /// `None` when storage has nowhere to keep files (an in-memory
    /// database): the routes answer 503.
    workers: Option<FileWorkers>,
    links: FileLinks,
    max_upload: u64,
    quota: u64,
    transfers: HashMap<TransferId, Transfer>,
    by_conn: HashMap<Token, TransferId>,
    /// Storage requests, by ticket, and the transfer each is for.
    tickets: HashMap<Ticket, TransferId>,
    next: u64,
    /// Bytes between the loop and the workers, all transfers together.
    in_flight: usize,
    /// Uploads not read for want of room.
    paused: Vec<Token>,
    /// Image jobs queued and not answered.
    images_queued: usize,
    /// The sweep: when it last ran, where its walk over the blobs is, and
    /// the blobs it asked storage about.
    swept_ms: Option<i64>,
    sweep_cursor: Option<BlobKey>,
    sweep_asked: HashMap<Ticket, Vec<BlobKey>>,
    /// What a new avatar means for the hub: everyone here sees the user
    /// anew (`user_updated`), and the other nodes read the row now.
    events: Vec<AccountEvent>,
}

/// What a chunk counts as against the windows.
fn cost(len: usize) -> usize {
    len.max(MIN_CHUNK_COST)
}

fn not_found() -> Response {
    Response::error(404, "not_found", "no such file")
}

fn unavailable() -> Response {
    Response::error(
        503,
        "busy",
        "this server keeps no files (it has no database on disk)",
    )
}

fn failed(e: &FileError) -> Response {
    match e {
        FileError::Full => Response::error(
            507,
            "storage_full",
            "the server has no room left for files; try again later",
        ),
        FileError::Io(m) => {
            log::error!("files: {m}");
            Response::error(500, "internal", "could not store the file")
        }
    }
}

/// The contract's file object.
#[derive(Serialize)]
struct FileOut<'a> {
    file: &'a crate::store::Attachment,
}

impl FileDesk {
    pub fn new(
        workers: Option<FileWorkers>,
        secret: &[u8],
        max_upload: u64,
        quota: u64,
    ) -> FileDesk {
        FileDesk {
            workers,
            links: FileLinks::new(secret),
            max_upload,
            quota,
            transfers: HashMap::new(),
            by_conn: HashMap::new(),
            tickets: HashMap::new(),
            next: 0,
            in_flight: 0,
            paused: Vec::new(),
            images_queued: 0,
            swept_ms: None,
            sweep_cursor: None,
            sweep_asked: HashMap::new(),
            events: Vec::new(),
        }
    }

    /// The start line's words.
    pub fn describe(&self) -> String {
        self.workers
            .as_ref()
            .map_or_else(|| "no file store".into(), FileWorkers::describe)
    }

    /// Shutdown: the workers finish what they hold.
    pub fn join(&mut self) {
        if let Some(w) = &mut self.workers {
            w.join();
        }
    }

    /// What the desk did that the hub must act on, since the last call.
    pub fn take_events(&mut self) -> Vec<AccountEvent> {
        std::mem::take(&mut self.events)
    }

    fn ticket(&mut self, t: TransferId) -> Ticket {
        self.next += 1;
        let ticket = Ticket {
            desk: Desk::Files,
            seq: self.next,
        };
        self.tickets.insert(ticket, t);
        ticket
    }

    /// Who asks: the bearer token's user (`caller`, its session already
    /// checked by the account desk), else a file link's, if `link_ok` and
    /// its user is neither banned nor deleted.
    fn user_of(
        &self,
        users: &Directory,
        caller: Option<UserId>,
        req: &Request<'_>,
        link_ok: bool,
    ) -> Option<UserId> {
        if caller.is_some() {
            return caller;
        }
        let link = req.query_param("ft").filter(|_| link_ok)?;
        let user = self.links.verify(&link, clock::now_ms() as u64 / 1000)?;
        users
            .get(user)
            .filter(|u| !u.is_banned() && !u.is_deleted())
            .map(|u| u.id)
    }

    /// One request to a file route. `bearer`: the request's bearer token
    /// as the account desk checked it (`None`: it has none); a refused one
    /// (ended session, banned, deleted) is refused here too; a download
    /// treats it as no token, and a public avatar ignores it.
    pub fn on_request(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        req: &Request<'_>,
        bearer: Option<Result<UserId, Response>>,
    ) -> Handled {
        let keep_alive = req.keep_alive();
        let head_only = req.method == "HEAD";
        let method = if head_only { "GET" } else { req.method };
        let caller = match bearer {
            // A download answers a refused token as it answers no token
            // (404): nobody learns which files exist.
            Some(Err(resp))
                if !is_avatar_path(req.path) && !req.path.starts_with("/api/files/") =>
            {
                let resp = if streams_body(req.method, req.path) && req.body_len > 0 {
                    resp.closing()
                } else {
                    resp
                };
                send(cx.out, conn.token, resp, keep_alive, head_only);
                return Handled::Done;
            }
            Some(Ok(user)) => Some(user),
            _ => None,
        };
        let allow = match req.path {
            UPLOADS => "POST",
            AVATAR => "PUT",
            _ => "GET, HEAD",
        };
        let resp = if !allow.split(", ").any(|m| m == req.method) {
            Response::error(
                405,
                "method_not_allowed",
                format!("{} is not allowed here", crate::ws::proto::echo(req.method)),
            )
            .with_header("Allow", allow)
        } else if self.workers.is_none() && req.path != LINK {
            unavailable()
        } else {
            match (method, req.path) {
                ("POST", UPLOADS) | ("PUT", AVATAR) => return self.upload(cx, conn, req, caller),
                (_, LINK) => match self.user_of(cx.users, caller, req, false) {
                    None => {
                        Response::error(401, "unauthorized", "missing, invalid or expired token")
                    }
                    Some(me) => {
                        let (link, exp) = self.links.issue(me, clock::now_ms() as u64 / 1000);
                        Response::json(
                            200,
                            &json!({"ft": link, "expires_at": crate::ws::proto::Ts(exp as i64 * 1000)}),
                        )
                    }
                },
                (_, path) => return self.download(cx, conn, req, path, head_only, caller),
            }
        };
        // A refused upload's body is not read: the connection cannot go on.
        let resp = if streams_body(req.method, req.path) && req.body_len > 0 {
            resp.closing()
        } else {
            resp
        };
        send(cx.out, conn.token, resp, keep_alive, head_only);
        Handled::Done
    }

    fn upload(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        req: &Request<'_>,
        caller: Option<UserId>,
    ) -> Handled {
        let keep_alive = req.keep_alive();
        let avatar = req.path == AVATAR;
        let limit = if avatar {
            MAX_AVATAR_UPLOAD.min(self.max_upload)
        } else {
            self.max_upload
        };
        let name = if avatar {
            Some("avatar".to_string())
        } else {
            req.query_param("name").and_then(|n| names::file_name(&n))
        };
        let len = req.body_len as u64;
        let refused = match (self.user_of(cx.users, caller, req, false), name) {
            (None, _) => Err(Response::error(
                401,
                "unauthorized",
                "missing, invalid or expired token",
            )),
            (Some(_), None) => Err(Response::error(
                400,
                "invalid_input",
                "give the file's name as ?name= (not empty once control characters and \
                 directories are removed)",
            )),
            _ if len > limit => Err(Response::error(
                413,
                "too_large",
                format!("a file may have at most {limit} bytes"),
            )),
            (Some(user), Some(name)) => Ok((user, name)),
        };
        let (user, name) = match refused {
            Ok(v) => v,
            Err(resp) => {
                let resp = if len > 0 { resp.closing() } else { resp };
                send(cx.out, conn.token, resp, keep_alive, false);
                return Handled::Done;
            }
        };
        self.next += 1;
        let t = self.next;
        self.transfers.insert(
            t,
            Transfer {
                conn,
                keep_alive,
                job: Job::Upload(Upload {
                    user,
                    name,
                    mime: names::media_type(req.header("content-type")),
                    len,
                    avatar,
                    expect: req.header_has("expect", "100-continue"),
                    window: 0,
                    row: None,
                }),
            },
        );
        self.by_conn.insert(conn.token, t);
        // Over the quota already? Asked before a byte of the body is read
        // (storage checks again, in the transaction that keeps the row).
        if self.quota > 0 && !avatar && len > 0 {
            let ticket = self.ticket(t);
            if cx
                .store
                .submit(StoreRequest::FileUsage { ticket, user })
                .is_ok()
            {
                return Handled::Waiting;
            }
            self.tickets.remove(&ticket);
        }
        self.begin_body(cx.out, t);
        Handled::Waiting
    }

    /// An upload may send its body: a draft is started and the reactor
    /// reads the body into it.
    fn begin_body(&mut self, out: &mut impl Outbox, t: TransferId) {
        let (Some(workers), Some(transfer)) = (&self.workers, self.transfers.get(&t)) else {
            return;
        };
        let Job::Upload(u) = &transfer.job else {
            return;
        };
        workers.send(FileJob::Begin { t });
        if u.len == 0 {
            workers.send(FileJob::Finish { t });
        } else {
            out.start_body(transfer.conn.token, u.len, u.expect);
        }
    }

    /// The uploader's usage came back: over the quota with this file, the
    /// upload is refused unread (and the connection closes: its body is
    /// still on the way); otherwise its body may come.
    fn usage(&mut self, out: &mut impl Outbox, t: TransferId, bytes: Option<u64>) {
        let Some(Transfer {
            keep_alive,
            job: Job::Upload(u),
            ..
        }) = self.transfers.get_mut(&t)
        else {
            return;
        };
        if bytes.is_some_and(|b| b.saturating_add(u.len) > self.quota) {
            *keep_alive = false;
            return self.finish(
                out,
                t,
                Response::error(
                    507,
                    "quota_exceeded",
                    "this file would take you past your upload quota",
                ),
            );
        }
        self.begin_body(out, t);
    }

    /// Room for more of an upload's body on `token` (0: the reactor pauses
    /// it until [`FileDesk::on_reply`] frees some and resumes it).
    pub fn body_room(&mut self, token: Token) -> usize {
        let Some(Transfer {
            job: Job::Upload(u),
            ..
        }) = self.by_conn.get(&token).and_then(|t| self.transfers.get(t))
        else {
            return 0;
        };
        let room = UPLOAD_WINDOW
            .saturating_sub(u.window)
            .min(FILE_BYTES_IN_FLIGHT.saturating_sub(self.in_flight));
        if room == 0 && !self.paused.contains(&token) {
            self.paused.push(token);
        }
        room
    }

    /// Bytes of an upload's body, as read (`last`: the body is complete).
    pub fn on_body(&mut self, token: Token, bytes: &[u8], last: bool) {
        let Some(&t) = self.by_conn.get(&token) else {
            return;
        };
        let Some(Transfer {
            job: Job::Upload(u),
            ..
        }) = self.transfers.get_mut(&t)
        else {
            return;
        };
        let Some(workers) = &self.workers else {
            return;
        };
        if !bytes.is_empty() {
            let c = cost(bytes.len());
            u.window += c;
            self.in_flight += c;
            workers.send(FileJob::Append {
                t,
                bytes: bytes.to_vec(),
            });
        }
        if last {
            workers.send(FileJob::Finish { t });
        }
    }

    /// A connection is going away: its transfer ends, and what it held in
    /// flight is free (the workers' late answers about it are dropped).
    pub fn on_closed(&mut self, token: Token) {
        let Some(t) = self.by_conn.remove(&token) else {
            return;
        };
        self.paused.retain(|p| *p != token);
        let Some(transfer) = self.transfers.remove(&t) else {
            return;
        };
        let workers = self.workers.as_ref().expect("transfers have workers");
        match transfer.job {
            Job::Upload(u) => {
                self.in_flight -= u.window;
                workers.send(FileJob::Abort { t });
            }
            Job::Download(d) => {
                self.in_flight -= d.asked.iter().sum::<usize>();
                workers.send(FileJob::Close { t });
            }
        }
    }

    /// Whether any download may want more chunks after a flush.
    pub fn has_downloads(&self) -> bool {
        self.transfers
            .values()
            .any(|t| matches!(&t.job, Job::Download(d) if d.key.is_some()))
    }

    /// After the flush pass: downloads whose sockets took bytes ask for more.
    pub fn on_flushed(&mut self, out: &mut impl Outbox) {
        let ids: Vec<TransferId> = self
            .transfers
            .iter()
            .filter(|(_, t)| matches!(&t.job, Job::Download(d) if d.key.is_some()))
            .map(|(id, _)| *id)
            .collect();
        for t in ids {
            self.pump(out, t);
        }
    }

    /// Every [`FILE_SWEEP_INTERVAL`] (and at start): storage removes the
    /// rows of files nothing has referred to for [`UNREFERENCED_FILE_GRACE`],
    /// and the next batch of idle blobs is checked against the rows left;
    /// those no row names are removed by the workers (unless committed
    /// again meanwhile: see `files::Blobs::remove`).
    pub fn sweep(&mut self, store: &mut dyn Storage) {
        let now = clock::now_ms();
        let due = self
            .swept_ms
            .is_none_or(|t| now - t >= FILE_SWEEP_INTERVAL.as_millis() as i64);
        let Some(workers) = self.workers.as_ref().filter(|_| due) else {
            return;
        };
        self.swept_ms = Some(now);
        let before_ms = now - UNREFERENCED_FILE_GRACE.as_millis() as i64;
        if store
            .submit(StoreRequest::SweepFiles { before_ms })
            .is_err()
        {
            return;
        }
        workers.send(FileJob::List {
            after: self.sweep_cursor,
            idle_for: BLOB_GRACE,
            limit: BLOB_SWEEP_BATCH,
        });
    }

    /// The sweep's blob candidates came back: ask storage which are named.
    fn listed(&mut self, store: &mut dyn Storage, keys: Vec<BlobKey>) {
        self.sweep_cursor = if keys.len() < BLOB_SWEEP_BATCH {
            None
        } else {
            keys.last().copied()
        };
        if keys.is_empty() {
            return;
        }
        self.next += 1;
        let ticket = Ticket {
            desk: Desk::Files,
            seq: self.next,
        };
        if store
            .submit(StoreRequest::BlobsUsed {
                ticket,
                keys: keys.clone(),
            })
            .is_ok()
        {
            self.sweep_asked.insert(ticket, keys);
        }
    }

    /// Once a second: a download whose client takes nothing is dropped.
    pub fn on_tick(&mut self, out: &mut impl Outbox) {
        for t in self.transfers.values_mut() {
            if let Job::Download(d) = &mut t.job {
                let q = out.queued(t.conn.token);
                if q == 0 || q != d.last_queued {
                    d.stalled_s = 0;
                } else {
                    d.stalled_s += 1;
                    if d.stalled_s >= TRANSFER_IDLE_TIMEOUT.as_secs() {
                        log::debug!("files: dropping a download its client stopped reading");
                        out.abort(t.conn.token);
                    }
                }
                d.last_queued = q;
            }
        }
    }

    /// Answers an upload (or a download that failed before its head) and
    /// forgets it.
    fn finish(&mut self, out: &mut impl Outbox, t: TransferId, resp: Response) {
        let Some(transfer) = self.transfers.remove(&t) else {
            return;
        };
        self.by_conn.remove(&transfer.conn.token);
        if let (Job::Download(d), Some(w)) = (&transfer.job, &self.workers) {
            self.in_flight -= d.asked.iter().sum::<usize>();
            w.send(FileJob::Close { t });
        }
        if out.is_live(transfer.conn) {
            send(out, transfer.conn.token, resp, transfer.keep_alive, false);
            out.resume_http(transfer.conn.token);
        }
    }

    /// The workers answered.
    pub fn on_workers(&mut self, cx: &mut Ctx<'_, impl Outbox>) {
        loop {
            let Some(reply) = self.workers.as_ref().and_then(FileWorkers::try_reply) else {
                return;
            };
            self.on_reply(cx, reply);
        }
    }

    fn on_reply(&mut self, cx: &mut Ctx<'_, impl Outbox>, reply: FileReply) {
        match reply {
            FileReply::Appended { t, bytes } => {
                if let Some(Transfer {
                    job: Job::Upload(u),
                    ..
                }) = self.transfers.get_mut(&t)
                {
                    let c = cost(bytes);
                    u.window -= c;
                    self.in_flight -= c;
                }
                for token in std::mem::take(&mut self.paused) {
                    cx.out.resume_input(token);
                }
            }
            FileReply::Finished { t, result } => match result {
                Ok((key, size)) => self.stored_bytes(cx, t, key, size),
                Err(e) => self.finish(cx.out, t, failed(&e)),
            },
            FileReply::Inspected { t, result } => {
                self.images_queued -= 1;
                match result {
                    Ok(found) => self.inspected(cx, t, found),
                    Err(e) => self.finish(cx.out, t, failed(&e)),
                }
            }
            FileReply::Avatar { t, result } => {
                self.images_queued -= 1;
                match result {
                    Ok((small, large)) => {
                        let Some(Transfer {
                            job: Job::Upload(u),
                            ..
                        }) = self.transfers.get_mut(&t)
                        else {
                            return;
                        };
                        if let Some(row) = &mut u.row {
                            row.blob = large;
                            row.mime = "image/jpeg".into();
                            row.image = Some(ImageInfo {
                                width: AVATAR_LARGE,
                                height: AVATAR_LARGE,
                                small,
                                large,
                            });
                        }
                        self.put_row(cx, t);
                    }
                    Err(AvatarError::NotImage) => self.finish(
                        cx.out,
                        t,
                        Response::error(
                            400,
                            "invalid_input",
                            "an avatar must be a PNG, JPEG, GIF or WebP image",
                        ),
                    ),
                    Err(AvatarError::Oversized) => self.finish(
                        cx.out,
                        t,
                        Response::error(413, "too_large", "the image has too many pixels"),
                    ),
                    Err(AvatarError::Io(e)) => self.finish(cx.out, t, failed(&e)),
                }
            }
            FileReply::Data { t, result } => self.on_data(cx.out, t, result),
            FileReply::Listed { result: Ok(keys) } => self.listed(cx.store, keys),
            FileReply::Listed { result: Err(e) } => log::warn!("files: cannot list blobs: {e}"),
        }
    }

    /// An upload's bytes are durable as `key`: previews next, or its row.
    fn stored_bytes(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        t: TransferId,
        key: BlobKey,
        size: u64,
    ) {
        let Some(Transfer {
            job: Job::Upload(u),
            ..
        }) = self.transfers.get_mut(&t)
        else {
            return;
        };
        if size != u.len {
            return self.finish(
                cx.out,
                t,
                Response::error(400, "invalid_input", "the body is not as long as it said"),
            );
        }
        u.row = Some(FileRow {
            id: 0,
            owner: u.user,
            name: u.name.clone(),
            mime: u.mime.clone(),
            size,
            blob: key,
            image: None,
            created_ms: clock::now_ms(),
            avatar: u.avatar,
        });
        let job = if u.avatar {
            Some(ImageJob::Avatar { t, key })
        } else if names::raster(&u.mime).is_some() {
            Some(ImageJob::Inspect { t, key })
        } else {
            None
        };
        let Some(job) = job else {
            return self.put_row(cx, t);
        };
        if self.images_queued >= IMAGE_QUEUE {
            return self.finish(
                cx.out,
                t,
                Response::error(
                    503,
                    "busy",
                    "too many images are being processed; try again",
                ),
            );
        }
        self.images_queued += 1;
        self.workers
            .as_mut()
            .expect("transfers have workers")
            .send_image(job);
    }

    /// What the image workers found in an upload that claimed a raster type.
    fn inspected(&mut self, cx: &mut Ctx<'_, impl Outbox>, t: TransferId, found: Inspected) {
        let Some(Transfer {
            job: Job::Upload(Upload { row: Some(row), .. }),
            ..
        }) = self.transfers.get_mut(&t)
        else {
            return;
        };
        match found {
            Inspected::Image(p) => {
                row.mime = p.mime.into();
                row.image = Some(ImageInfo {
                    width: p.width,
                    height: p.height,
                    small: p.small,
                    large: p.large,
                });
            }
            Inspected::Oversized { mime } => row.mime = mime.into(),
            // Whatever it said it was, it is not shown as an image.
            Inspected::NotImage => row.mime = OCTET_STREAM.into(),
        }
        self.put_row(cx, t);
    }

    fn put_row(&mut self, cx: &mut Ctx<'_, impl Outbox>, t: TransferId) {
        let Some(Transfer {
            job: Job::Upload(Upload { row: Some(row), .. }),
            ..
        }) = self.transfers.get(&t)
        else {
            return;
        };
        let row = row.clone();
        let ticket = self.ticket(t);
        let req = StoreRequest::PutFile {
            ticket,
            row,
            quota: self.quota,
        };
        if cx.store.submit(req).is_err() {
            self.tickets.remove(&ticket);
            self.finish(
                cx.out,
                t,
                Response::error(503, "busy", "the server is busy; try again shortly"),
            );
        }
    }

    /// Storage answered one of this desk's requests.
    pub fn on_store(&mut self, cx: &mut Ctx<'_, impl Outbox>, reply: Reply) {
        if let Reply::BlobsUsed { ticket, used } = &reply {
            let (Some(asked), Some(used)) = (self.sweep_asked.remove(ticket), used) else {
                return;
            };
            let keys: Vec<BlobKey> = asked.into_iter().filter(|k| !used.contains(k)).collect();
            if let (false, Some(w)) = (keys.is_empty(), &self.workers) {
                w.send(FileJob::Remove {
                    keys,
                    idle_for: BLOB_GRACE,
                });
            }
            return;
        }
        if let Reply::FilesSwept { removed } = reply {
            if removed > 0 {
                log::info!("files: removed {removed} files nothing refers to");
            }
            return;
        }
        let ticket = match &reply {
            Reply::FileStored { ticket, .. }
            | Reply::FileRefused { ticket }
            | Reply::FileFound { ticket, .. }
            | Reply::FindFileFailed { ticket }
            | Reply::FileUsage { ticket, .. }
            | Reply::Done { ticket }
            | Reply::Failed { ticket } => *ticket,
            _ => return,
        };
        let Some(t) = self.tickets.remove(&ticket) else {
            return;
        };
        match reply {
            Reply::FileStored { id, .. } => self.file_stored(cx, t, id),
            Reply::FileRefused { .. } => self.finish(
                cx.out,
                t,
                Response::error(
                    507,
                    "quota_exceeded",
                    "this file would take you past your upload quota",
                ),
            ),
            Reply::Done { .. } => self.avatar_set(cx, t),
            Reply::FileUsage { bytes, .. } => self.usage(cx.out, t, bytes),
            Reply::FileFound { row: Some(row), .. } => self.found(cx.out, t, row),
            Reply::FileFound { row: None, .. } => self.finish(cx.out, t, not_found()),
            _ => self.finish(
                cx.out,
                t,
                Response::error(500, "internal", "storage could not answer"),
            ),
        }
    }

    fn file_stored(&mut self, cx: &mut Ctx<'_, impl Outbox>, t: TransferId, id: FileId) {
        let Some(Transfer {
            job: Job::Upload(u),
            ..
        }) = self.transfers.get_mut(&t)
        else {
            return;
        };
        let Some(row) = &mut u.row else { return };
        row.id = id;
        if !u.avatar {
            let body = Response::json(
                201,
                &FileOut {
                    file: &row.attachment(),
                },
            );
            return self.finish(cx.out, t, body);
        }
        let user = u.user;
        let ticket = self.ticket(t);
        let req = StoreRequest::SetAvatar {
            ticket,
            user,
            file: id,
            at_ms: clock::now_ms(),
        };
        if cx.store.submit(req).is_err() {
            self.tickets.remove(&ticket);
            self.finish(
                cx.out,
                t,
                Response::error(503, "busy", "the server is busy"),
            );
        }
    }

    fn avatar_set(&mut self, cx: &mut Ctx<'_, impl Outbox>, t: TransferId) {
        let Some(Transfer {
            job:
                Job::Upload(Upload {
                    user,
                    row: Some(row),
                    ..
                }),
            ..
        }) = self.transfers.get(&t)
        else {
            return;
        };
        let (user, id) = (*user, row.id);
        let url = cx.users.get_mut(user).map(|u| {
            u.account.avatar = Some(id);
            u.avatar_url()
        });
        if url.is_some() {
            // Storage raised the row's version and logged the change: the
            // other nodes read it back (and show it) within a poll, sooner
            // when told; here it is shown now.
            self.events.push(AccountEvent::User(Changed {
                id: user,
                shown: true,
                ..Changed::default()
            }));
            self.events.push(AccountEvent::Announce);
        }
        self.finish(
            cx.out,
            t,
            Response::json(200, &json!({ "avatar": url.flatten() })),
        );
    }

    // ---- downloads ------------------------------------------------------------

    fn download(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        conn: ConnRef,
        req: &Request<'_>,
        path: &str,
        head_only: bool,
        caller: Option<UserId>,
    ) -> Handled {
        let keep_alive = req.keep_alive();
        let thumb = match req.query_param("thumb").as_deref() {
            None => Some(Blob::Original),
            Some("small") => Some(Blob::Small),
            Some("large") => Some(Blob::Large),
            Some(_) => None,
        };
        // Who asks, and for which file. Avatars are public; a file is
        // storage's question, with the asker (0: nobody).
        let target = if let Some(name) = path
            .strip_prefix("/api/users/")
            .and_then(|p| p.strip_suffix("/avatar"))
        {
            cx.users
                .find(name)
                .and_then(|u| u.account.avatar)
                .map(|id| (id, 0, true))
        } else {
            let me = self.user_of(cx.users, caller, req, true).unwrap_or(0);
            path.strip_prefix("/api/files/")
                .and_then(|id| id.parse::<FileId>().ok())
                .filter(|_| me != 0)
                .map(|id| (id, me, false))
        };
        let (Some(blob), Some((id, user, avatar))) = (thumb, target) else {
            send(cx.out, conn.token, not_found(), keep_alive, head_only);
            return Handled::Done;
        };
        self.next += 1;
        let t = self.next;
        let ticket = self.ticket(t);
        if cx
            .store
            .submit(StoreRequest::FindFile { ticket, id, user })
            .is_err()
        {
            self.tickets.remove(&ticket);
            let resp = Response::error(503, "busy", "the server is busy; try again shortly");
            send(cx.out, conn.token, resp, keep_alive, head_only);
            return Handled::Done;
        }
        self.transfers.insert(
            t,
            Transfer {
                conn,
                keep_alive,
                job: Job::Download(Download {
                    blob,
                    avatar,
                    head_only,
                    range: req.header("range").map(<[u8]>::to_vec),
                    if_range: req.header("if-range").map(<[u8]>::to_vec),
                    row: None,
                    key: None,
                    next: 0,
                    end: None,
                    asked: VecDeque::new(),
                    started: false,
                    last_queued: 0,
                    stalled_s: 0,
                }),
            },
        );
        self.by_conn.insert(conn.token, t);
        Handled::Waiting
    }

    /// Storage found the file and says the asker may read it.
    fn found(&mut self, out: &mut impl Outbox, t: TransferId, row: FileRow) {
        let Some(Transfer {
            job: Job::Download(d),
            ..
        }) = self.transfers.get_mut(&t)
        else {
            return;
        };
        let key = match (d.blob, row.image) {
            (Blob::Original, _) => row.blob,
            (Blob::Small, Some(i)) => i.small,
            (Blob::Large, Some(i)) => i.large,
            (_, None) => return self.finish(out, t, not_found()),
        };
        if d.blob == Blob::Original && !d.avatar {
            let etag = etag(&row.blob);
            match range::part(d.range.as_deref(), d.if_range.as_deref(), &etag, row.size) {
                Part::Whole => {
                    d.next = 0;
                    d.end = Some(row.size.saturating_sub(1));
                    // An empty file: a head and nothing else.
                    if row.size == 0 {
                        d.end = None;
                    }
                }
                Part::Range { start, end } => {
                    d.next = start;
                    d.end = Some(end);
                    d.range = Some(Vec::new()); // marks a 206
                }
                Part::Unsatisfiable => {
                    let resp =
                        Response::error(416, "invalid_input", "the range is past the file's end")
                            .with_header("Content-Range", format!("bytes */{}", row.size));
                    return self.finish(out, t, resp);
                }
            }
        }
        if d.range.as_deref() != Some(&[]) {
            d.range = None;
        }
        d.key = Some(key);
        d.row = Some(row);
        self.pump(out, t);
    }

    /// Asks for a download's next chunks while its window has room.
    fn pump(&mut self, out: &mut impl Outbox, t: TransferId) {
        let Some(Transfer {
            conn,
            job: Job::Download(d),
            ..
        }) = self.transfers.get_mut(&t)
        else {
            return;
        };
        let (Some(key), Some(workers)) = (d.key, &self.workers) else {
            return;
        };
        loop {
            let asked: usize = d.asked.iter().sum();
            let queued = out.queued(conn.token);
            if queued + asked >= DOWNLOAD_WINDOW || self.in_flight >= FILE_BYTES_IN_FLIGHT {
                return;
            }
            // Before the head, one read at a time: the first answer says
            // the blob's size (a preview's is known only then).
            if !d.started && !d.asked.is_empty() {
                return;
            }
            let len = match d.end {
                Some(end) if d.next > end => return,
                Some(end) => (end - d.next + 1).min(DOWNLOAD_CHUNK as u64) as usize,
                None if d.started => return,
                None => DOWNLOAD_CHUNK,
            };
            if d.head_only && d.started {
                return;
            }
            workers.send(FileJob::Read {
                t,
                key,
                offset: d.next,
                len,
            });
            d.next += len as u64;
            d.asked.push_back(len);
            self.in_flight += len;
        }
    }

    fn on_data(
        &mut self,
        out: &mut impl Outbox,
        t: TransferId,
        result: Result<Option<(Vec<u8>, u64)>, FileError>,
    ) {
        let Some(Transfer {
            conn,
            keep_alive,
            job: Job::Download(d),
        }) = self.transfers.get_mut(&t)
        else {
            return;
        };
        let (conn, keep_alive) = (*conn, *keep_alive);
        let asked = d.asked.pop_front().unwrap_or(0);
        self.in_flight -= asked;
        let (chunk, size) = match result {
            Ok(Some(v)) => v,
            Ok(None) | Err(_) if !d.started => {
                if let Err(e) = &result {
                    log::error!("files: cannot read a blob: {e}");
                } else {
                    log::error!("files: a file's blob is missing");
                }
                return self.finish(
                    out,
                    t,
                    Response::error(500, "internal", "could not read the file"),
                );
            }
            _ => {
                log::error!("files: a download failed after its head");
                return self.abort(out, t);
            }
        };
        if !out.is_live(conn) {
            return;
        }
        if !d.started {
            d.started = true;
            let row = d.row.as_ref().expect("found before read");
            // A preview's size is its blob's; the original's its row's.
            if d.end.is_none() && size > 0 {
                d.end = Some(size - 1);
            }
            let total = if d.blob == Blob::Original && !d.avatar {
                row.size
            } else {
                size
            };
            let mime = if d.blob == Blob::Original && !d.avatar {
                names::served_type(&row.mime)
            } else if chunk.starts_with(b"\x89PNG") {
                "image/png".into()
            } else {
                "image/jpeg".into()
            };
            let len = match d.end {
                Some(end) if d.range.is_some() => end + 1 - (d.next - asked as u64),
                Some(_) => total,
                None => 0,
            };
            let start = d.next - asked as u64;
            let mut head = Vec::with_capacity(512);
            let status = if d.range.is_some() { 206 } else { 200 };
            let _ = write!(
                head,
                "HTTP/1.1 {status} {}\r\nContent-Type: {mime}\r\nContent-Length: {len}\r\n",
                if status == 206 {
                    "Partial Content"
                } else {
                    "OK"
                }
            );
            if status == 206 {
                let _ = write!(
                    head,
                    "Content-Range: bytes {start}-{}/{total}\r\n",
                    start + len.saturating_sub(1)
                );
            }
            let inline = d.blob != Blob::Original || d.avatar || names::inline(&row.mime);
            let name = if d.blob == Blob::Original {
                row.name.clone()
            } else {
                format!("preview-{}", row.name)
            };
            let _ = write!(
                head,
                "Content-Disposition: {}\r\nX-Content-Type-Options: nosniff\r\n\
                 Content-Security-Policy: {FILE_CSP}\r\nCross-Origin-Resource-Policy: same-origin\r\n\
                 Cache-Control: {}\r\nETag: {}\r\n",
                names::disposition(&name, inline),
                if d.avatar { AVATAR_CACHE } else { FILE_CACHE },
                etag(&row.blob),
            );
            if d.blob == Blob::Original && !d.avatar {
                head.extend_from_slice(b"Accept-Ranges: bytes\r\n");
            }
            if out.is_tls(conn.token) {
                let _ = write!(head, "Strict-Transport-Security: {HSTS}\r\n");
            }
            head.extend_from_slice(if keep_alive {
                b"Connection: keep-alive\r\n\r\n"
            } else {
                b"Connection: close\r\n\r\n"
            });
            out.respond(conn.token, &head, Vec::new().into(), false);
            if d.head_only {
                return self.done(out, t);
            }
        }
        if chunk.len() < asked
            && d.end
                .is_some_and(|end| d.next - asked as u64 + (chunk.len() as u64) <= end)
        {
            log::error!("files: a blob is shorter than its row says");
            return self.abort(out, t);
        }
        if !chunk.is_empty() {
            out.body(conn.token, chunk);
        }
        let Some(Transfer {
            job: Job::Download(d),
            ..
        }) = self.transfers.get(&t)
        else {
            return;
        };
        let finished = d.asked.is_empty() && d.end.is_none_or(|end| d.next > end);
        if finished {
            self.done(out, t);
        } else {
            self.pump(out, t);
        }
    }

    /// A download sent its last byte: the connection goes on.
    fn done(&mut self, out: &mut impl Outbox, t: TransferId) {
        let Some(transfer) = self.transfers.remove(&t) else {
            return;
        };
        self.by_conn.remove(&transfer.conn.token);
        if let (Job::Download(d), Some(w)) = (&transfer.job, &self.workers) {
            self.in_flight -= d.asked.iter().sum::<usize>();
            w.send(FileJob::Close { t });
        }
        if !transfer.keep_alive {
            out.respond(transfer.conn.token, &[], Vec::new().into(), true);
        }
        out.resume_http(transfer.conn.token);
    }

    /// A download that cannot go on after its head: the connection drops.
    fn abort(&mut self, out: &mut impl Outbox, t: TransferId) {
        if let Some(transfer) = self.transfers.get(&t) {
            out.abort(transfer.conn.token);
        }
        self.on_closed_transfer(t);
    }

    fn on_closed_transfer(&mut self, t: TransferId) {
        if let Some(transfer) = self.transfers.get(&t) {
            let token = transfer.conn.token;
            self.on_closed(token);
        }
    }
}

/// A file's validator: its bytes' key (the same bytes, the same tag).
fn etag(key: &BlobKey) -> String {
    format!("\"{}\"", &key.hex()[..32])
}
