//! Every limit and default of the server, named and documented in one place,
//! and the one table of operator options that sets them.
//!
//! Constants are limits that the contract (`PROTOCOL.md`) fixes or that only a
//! code change should move; [`Config`] holds what an operator may set with a flag
//! or an environment variable. [`parse_options`] reads both from one table
//! (`OPTIONS`), which also writes the `--help` text, so a new option is one
//! row and its flag, variable, help and default cannot disagree. Nothing here
//! does I/O: the caller passes the arguments and the environment in.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

// ---- HTTP -----------------------------------------------------------------

/// Largest request head (request line + headers) accepted; more is 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most headers in one request; more is 431. Also sizes httparse's stack array.
pub const MAX_HEADERS: usize = 64;
/// Largest request body accepted; a larger `Content-Length` is 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// A connection must complete a request head this soon after it was accepted or
/// after its previous response; otherwise it is closed (slowloris defence, and
/// the idle timeout of keep-alive connections).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

// ---- WebSocket --------------------------------------------------------------

/// Largest WebSocket message (one frame, or all fragments together); more closes 1009.
pub const MAX_WS_MESSAGE: usize = 64 * 1024;
/// Frames one message may be split into (RFC 6455 sets no limit). Real
/// clients send one frame, proxies a few; Autobahn's finest split is one
/// frame per byte of a short text. Past this the connection is closed 1008.
pub const MAX_FRAGMENTS: usize = 1024;
/// The server pings a connection it has not pinged for this long.
pub const PING_INTERVAL: Duration = Duration::from_secs(30);
/// A connection that sent nothing at all (pong included) for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A connection that is closing may take this long to flush its last bytes
/// (a big response to a slow client) before it is dropped regardless.
pub const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// After the server sends a close frame it waits this long for the peer's close
/// (or EOF) before dropping the socket, so a dead peer cannot hold a slot.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);

// ---- Output and input budgets (Redis `networking.c` style) -------------------

/// Hard output limit: a connection whose unsent *live* output (frames other
/// clients caused: room messages, presence) passes this is a slow consumer
/// and is cut at once. Contract: 1 MiB.
///
/// Replies to the client's own requests (a history page of 200 messages of
/// 4000 characters is 1.6 MB) do not count: a client that reads promptly must
/// get them whole. They are bounded differently: a connection with more than
/// [`READ_PAUSE_BYTES`] unsent is not read from until it drains, so it cannot
/// ask for more, and [`OUTPUT_CEILING`] caps everything.
pub const OUTPUT_HARD_LIMIT: usize = 1024 * 1024;
/// Soft output limit: unsent live output above this for
/// [`OUTPUT_SOFT_SECONDS`] in a row also cuts the connection, so a consumer
/// that is merely slow cannot keep most of a megabyte pinned forever.
pub const OUTPUT_SOFT_LIMIT: usize = 256 * 1024;
/// A connection with this much unsent output (of any kind) is not read from
/// until it drains below it: backpressure on requests instead of buffering
/// their answers without end. TCP flow control then pushes back on the client.
pub const READ_PAUSE_BYTES: usize = 1024 * 1024;
/// No connection ever holds more unsent output than this; past it, it is cut.
/// Room for a full live queue ([`OUTPUT_HARD_LIMIT`]), what was queued when
/// reading paused ([`READ_PAUSE_BYTES`]) and one largest reply
/// ([`MAX_REPLY_BYTES`]): storage reads are reserved against it before they
/// start (see `hub/reads.rs`), so a client that asks and never reads is
/// stopped by the reservation, not by this cut.
pub const OUTPUT_CEILING: usize = OUTPUT_HARD_LIMIT + READ_PAUSE_BYTES + MAX_REPLY_BYTES;
/// How long a connection may stay above [`OUTPUT_SOFT_LIMIT`].
pub const OUTPUT_SOFT_SECONDS: Duration = Duration::from_secs(10);
/// Bytes written to one socket per loop turn at most. A connection with more
/// queued is revisited next turn, so one fat consumer cannot starve the rest.
pub const WRITE_BUDGET: usize = 256 * 1024;
/// Most buffers handed to one `writev`. Linux's IOV_MAX is 1024; 64 covers a
/// burst of small frames while keeping the `IoSlice` array on the stack small.
pub const MAX_IOVECS: usize = 64;
/// Bytes read from one socket per loop turn at most (then it is revisited next
/// turn), so one flooding client cannot starve the rest.
pub const READ_BUDGET: usize = 128 * 1024;
/// Pipelined HTTP requests answered for one connection per loop pass; the
/// rest wait for the next pass (as the read budget does for bytes). 64 KiB
/// of pipelined `GET /metrics` is about 2,400 requests; this keeps one
/// client's batch from holding the loop while others wait.
pub const MAX_REQUESTS_PER_PASS: usize = 32;
/// Size of the loop's one shared read buffer. Every socket reads into it, so an
/// idle connection owns no input buffer at all; only an incomplete request or
/// frame is copied out into a per-connection buffer.
pub const SCRATCH_BYTES: usize = 64 * 1024;
/// A per-connection buffer larger than this is freed, not kept, once it empties:
/// a burst must not leave a connection holding memory while it idles.
pub const KEEP_BUFFER_BYTES: usize = 4 * 1024;

// ---- TLS --------------------------------------------------------------------

/// Encrypted bytes rustls may hold for one connection before it takes no
/// more plaintext from the connection's queue. Sized for chat: one full
/// record (16 KiB) and the next one's start, so a burst of frames is
/// encrypted in a few records while the connection's own queue, where the
/// output limits are, stays the bound.
pub const TLS_SEND_BUFFER: usize = 32 * 1024;
/// `Strict-Transport-Security` on every HTTPS response: browsers keep
/// using https:// for this host for a year (365 days in seconds). Without
/// `includeSubDomains`, which would bind every other site under the domain.
pub const HSTS: &str = "max-age=31536000";
/// The ACME directory when `--tls-domain` is given and
/// `--acme-directory` is not: Let's Encrypt's production service.
pub const DEFAULT_ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// A certificate obtained by ACME is renewed once less than this is left
/// of its life (Let's Encrypt's advice: a third of 90 days).
pub const ACME_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often the ACME thread looks at its certificate's expiry.
pub const ACME_CHECK_INTERVAL: Duration = Duration::from_secs(12 * 3600);
/// After a failed order, the first wait before the next try; doubled on
/// each failure up to [`ACME_RETRY_MAX`] (Let's Encrypt limits failed
/// validations to 5 an hour per name).
pub const ACME_RETRY_MIN: Duration = Duration::from_secs(60);
pub const ACME_RETRY_MAX: Duration = Duration::from_secs(6 * 3600);
/// How long one ACME order may take, validation included, before it is
/// abandoned and retried later.
pub const ACME_ORDER_TIMEOUT: Duration = Duration::from_secs(120);
/// HTTP-01 challenges answered at once at most (one per name of an order;
/// a bound, because the port-80 listener reads the table).
pub const MAX_ACME_CHALLENGES: usize = 100;

// ---- Chat -------------------------------------------------------------------

/// Longest message content, in Unicode scalar values after trimming.
pub const MAX_CONTENT_CHARS: usize = 4000;
/// Longest room name; names are `[a-z0-9_-]`.
pub const MAX_ROOM_NAME: usize = 64;
/// Longest `client_id` (idempotency key).
pub const MAX_CLIENT_ID: usize = 64;
/// Messages replayed at most by `join` with `since`.
pub const MAX_REPLAY: usize = 1000;
/// Default and largest page of history.
pub const DEFAULT_HISTORY_LIMIT: usize = 50;
pub const MAX_HISTORY_LIMIT: usize = 200;
/// Messages a `GET /api/messages?page=P` may skip at most (`(P - 1) * limit`):
/// SQLite walks every skipped row, so a huge page is a long scan on the
/// reader. Deeper pages are 400 `invalid_input`; `before=ID` reaches any
/// depth at the cost of one page (it seeks by id, skipping nothing).
pub const MAX_HISTORY_OFFSET: usize = 10_000;
/// Client ids remembered for idempotent retries. Retries come within seconds or
/// minutes of the first send, so the newest N across the server are enough; the
/// same window is reloaded from the database at start. An id that fell out of
/// the window is still never stored twice (the database's unique index
/// answers its retry); the window only makes that answer immediate.
pub const CLIENT_ID_WINDOW: usize = 100_000;
/// Client ids remembered per user at most, so one user sending with fresh
/// ids as fast as allowed evicts their own oldest, not everyone else's.
/// A client retries what it sent since it lost its connection: its unacked
/// messages, far fewer than this.
pub const CLIENT_IDS_PER_USER: usize = 1000;
/// Different emoji one message may carry (Discord's bound): a reaction
/// bar stays one line, and a message object stays bounded in size.
pub const MAX_REACTION_KINDS: usize = 20;
/// Reactions one message may carry in all (every user's every emoji). A
/// bound because every message object lists who reacted: without it one
/// popular message could grow a history page past any reservation. 200
/// is a whole busy room answering one announcement.
pub const MAX_REACTIONS: usize = 200;
/// Longest reaction, in bytes: one emoji (a family or a flag is up to 28
/// bytes of UTF-8) or a `:name:`.
pub const MAX_EMOJI_BYTES: usize = 32;
/// Most `@name` mentions one message notifies: a message naming the whole
/// room is a broadcast, not a mention.
pub const MAX_MENTIONS: usize = 20;
/// Words a search matches at most; more are ignored (each is one more
/// index list to intersect).
pub const MAX_SEARCH_WORDS: usize = 8;
/// Longest search text, in bytes: past it the query is refused.
pub const MAX_SEARCH_BYTES: usize = 500;
/// Default and largest number of search results (the contract's).
pub const DEFAULT_SEARCH_LIMIT: usize = 20;
pub const MAX_SEARCH_LIMIT: usize = 100;
/// The most bytes one message object can take in a reply: every content
/// character escaped to six (`\u0001`); its reactions at their bounds
/// (each emoji escaped, each reactor a longest name in quotes); its
/// attachments at theirs (names hold no control characters, so a byte
/// escapes to two at most; types are never escaped; numbers and keys);
/// plus the other fields. A read is reserved at this size per message it
/// may return, before it is read.
pub const MESSAGE_REPLY_MAX: usize = 6 * MAX_CONTENT_CHARS
    + MAX_REACTION_KINDS * (6 * MAX_EMOJI_BYTES + 24)
    + MAX_REACTIONS * (crate::config::USERNAME_MAX + 3)
    + MAX_ATTACHMENTS * (2 * MAX_FILE_NAME_BYTES + MAX_MEDIA_TYPE_BYTES + 128)
    + 320;
/// The largest reply to one storage read. A history page always fits in
/// what a connection may be sent besides its live frames
/// (`MAX_HISTORY_LIMIT × MESSAGE_REPLY_MAX` is 8.7 MB, asserted below); a
/// `since` replay stops at this many bytes (keeping the newest) and says
/// `recovered: false`.
pub const MAX_REPLY_BYTES: usize = 8 * 1024 * 1024;
// A page that could not fit would wait for its reservation forever.
const _: () = assert!(MAX_HISTORY_LIMIT * MESSAGE_REPLY_MAX <= OUTPUT_CEILING - OUTPUT_HARD_LIMIT);
/// History pages and replays one connection may have in flight. Two keep a
/// client that pages back while it rejoins a room from waiting; more would
/// only let one client queue more of the reader's time. A third waits, and
/// so does everything the client sent after it (its input is held).
pub const MAX_READS_PER_CONN: u8 = 2;
/// Reply bytes reserved for reads in flight, server-wide: what storage reads
/// may make the server hold at once, whoever asks. A read that does not fit
/// waits (its connection's input held) until others complete.
pub const READ_BYTES_IN_FLIGHT: usize = 64 * 1024 * 1024;
/// What one user's connections together may hold in unsent output plus
/// reply bytes reserved for their reads: a read that would pass it waits
/// (its connection's input held) until they read. Without it, a user's 64
/// WebSockets asking for history and never reading could each fill their
/// own output ceiling (eight of them grew the server by 85 MiB). Three
/// largest replies: room for one read in flight while two are unread.
pub const USER_REPLY_BYTES: usize = 3 * MAX_REPLY_BYTES;
/// What every connection together may hold in unsent output (a running
/// count, current at every read) plus reply bytes reserved for reads: past it, reads wait,
/// whoever asks (one still starts when none is in flight, so the budget
/// never wedges). Chat frames are not held to it; they have the
/// per-connection slow-consumer limits.
pub const SERVER_REPLY_BYTES: usize = 256 * 1024 * 1024;
/// Live frames held for a connection while its `since` replay is being read
/// from storage; past this the replay reports `recovered: false`.
pub const MAX_HELD_FRAMES: usize = 1000;
/// Default of `--presence-grace`: how long a user whose last connection
/// closed (without `leave`) is still shown online and in their rooms. A page
/// reload reconnects in well under a second and the web client's first
/// retry comes within one, so 3 s hides both, and a reconnect storm (every
/// client dropped and back at once) sends no presence frames at all; a real
/// departure still shows within about four seconds (the grace plus the
/// once-a-second check). Longer hides flakier networks, at the price of
/// showing departed users longer.
pub const PRESENCE_GRACE: Duration = Duration::from_secs(3);
/// Rooms one connection may be joined to at once.
pub const MAX_ROOMS_PER_CONN: usize = 256;
/// Members of a private room at most, owner included: given in one
/// `create_room` or reached by `add_member`. Every member gets every
/// `room_members` frame, so a room's membership changes cost O(members).
pub const MAX_ROOM_MEMBERS: usize = 1000;
/// Public rooms one user may open (by posting the first message in them).
/// Rooms are never deleted and each costs a row and memory for the life of
/// the server, so one account must not be able to make millions; a hundred
/// is far more than people make by hand.
pub const MAX_PUBLIC_ROOMS_PER_USER: u32 = 100;
/// Private rooms one user may own, for the same reason.
pub const MAX_PRIVATE_ROOMS_PER_USER: u32 = 100;
/// Public room names `create_room` may never take, even before anyone used
/// them: the web client opens `general` for every new user, so a private
/// `general` made on a fresh server would lock everyone else out of it.
pub const RESERVED_ROOM_NAMES: &[&str] = &["general"];

// ---- Files ------------------------------------------------------------------

/// Default of `--max-upload`: the largest file one upload may be (Zulip's
/// 25 MB; the contract's default).
pub const DEFAULT_MAX_UPLOAD: u64 = 25 * 1024 * 1024;
/// Default of `--upload-quota`: bytes of files one user may keep (0 = none).
pub const DEFAULT_UPLOAD_QUOTA: u64 = 1024 * 1024 * 1024;
/// Largest avatar upload (Revolt's 4 MB, with room for a phone photo):
/// it is decoded whole, and only its small crops are kept.
pub const MAX_AVATAR_UPLOAD: u64 = 10 * 1024 * 1024;
/// Files one message may carry (the contract's).
pub const MAX_ATTACHMENTS: usize = 10;
/// Longest file name kept, in bytes (what most file systems allow, so a
/// download keeps its name).
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// Longest media type kept, in bytes (RFC 6838: 127 for each half; no
/// registered type comes close).
pub const MAX_MEDIA_TYPE_BYTES: usize = 127;
/// Body bytes one upload may have handed to its file thread and not yet
/// written; past this its socket is not read (backpressure, as for chat
/// input while storage is behind). Four of the loop's reads.
pub const UPLOAD_WINDOW: usize = 256 * 1024;
/// Bytes of a download read from storage ahead of the socket at most:
/// queued on the connection or on their way from the file thread.
pub const DOWNLOAD_WINDOW: usize = 256 * 1024;
/// One download read: a file thread's chunk.
pub const DOWNLOAD_CHUNK: usize = 64 * 1024;
/// File bytes in flight between the loop and the file threads, all
/// transfers together: with 256 KiB a transfer, 32 transfers move at full
/// speed and the rest wait their turn, so transfers cost the server a few
/// MiB whatever their number and size.
pub const FILE_BYTES_IN_FLIGHT: usize = 8 * 1024 * 1024;
/// What a tiny chunk counts as against the windows, so a client trickling
/// one byte per packet cannot queue millions of jobs.
pub const MIN_CHUNK_COST: usize = 4 * 1024;
/// An upload that sends nothing (while the server reads) for this long, or
/// a download its client takes nothing of, is dropped: a transfer holds a
/// descriptor and a file handle, and a stalled one must not keep them.
pub const TRANSFER_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Threads moving upload and download chunks to and from the blobs.
pub const FILE_THREADS: usize = 2;
/// Threads decoding images into previews and avatars (at low priority).
pub const IMAGE_THREADS: usize = 1;
/// Image jobs waiting for an image thread at most; past it an upload
/// is answered `busy`.
pub const IMAGE_QUEUE: usize = 64;
/// The two preview sizes: the longest side of the timeline's preview
/// (shown at up to 360 CSS pixels, so sharp on a 1.33x screen) ...
pub const THUMB_SMALL: u32 = 480;
/// ... and of the viewer's.
pub const THUMB_LARGE: u32 = 1600;
/// The two avatar sizes, square: lists and the timeline, and profiles.
pub const AVATAR_SMALL: u32 = 64;
pub const AVATAR_LARGE: u32 = 256;
/// JPEG quality of previews and avatars.
pub const PREVIEW_JPEG_QUALITY: u8 = 82;
/// Images with more pixels than this get no preview (Revolt's 40 MP;
/// Mattermost's 33): decoding one takes hundreds of MB, and this is
/// where a decompression bomb is stopped before its pixels are decoded.
pub const MAX_IMAGE_PIXELS: u64 = 40_000_000;
/// Widest and tallest image decoded (checked from the header, strictly).
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// What one decode may allocate at most (`image::Limits::max_alloc`): a
/// 40 MP RGBA frame and the decoder's own buffers.
pub const IMAGE_DECODE_ALLOC: u64 = 256 * 1024 * 1024;
/// A file no message or profile refers to is removed this long after it
/// was uploaded or stopped being referred to (its message deleted, the
/// avatar replaced): an upload not sent within a day is gone.
pub const UNREFERENCED_FILE_GRACE: Duration = Duration::from_secs(24 * 3600);
/// A blob no file refers to is removed once it was not committed for this
/// long (an upload whose row is still being stored is never swept).
pub const BLOB_GRACE: Duration = Duration::from_secs(3600);
/// How often a node sweeps unreferenced files and blobs.
pub const FILE_SWEEP_INTERVAL: Duration = Duration::from_secs(600);
/// Blobs one sweep looks at at most (the next sweep goes on from there).
pub const BLOB_SWEEP_BATCH: usize = 1000;
/// How long a file link (`?ft=`, for `<img>` and downloads) is good for:
/// a copied URL stops working within this.
pub const FILE_LINK_TTL: Duration = Duration::from_secs(600);
/// PostgreSQL stores a blob in rows of this many bytes.
pub const PG_BLOB_CHUNK: usize = 256 * 1024;
/// A PostgreSQL draft older than this is a leftover of a node that died
/// mid-upload, and any node removes it.
pub const PG_DRAFT_STALE: Duration = Duration::from_secs(24 * 3600);

// ---- Accounts ---------------------------------------------------------------

pub const USERNAME_MIN: usize = 3;
pub const USERNAME_MAX: usize = 32;
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;
pub const EMAIL_MAX: usize = 254;
/// Lifetime of an issued token.
pub const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// PBKDF2 iterations never go below this, whatever the flag says.
pub const PBKDF2_FLOOR: u32 = 1000;
pub const PBKDF2_DEFAULT: u32 = 600_000;
/// Longest display name, in characters after trimming (the contract's).
pub const DISPLAY_NAME_MAX: usize = 64;
/// Longest status text, in characters after trimming (the contract's).
pub const STATUS_MAX: usize = 140;
/// Longest reason a moderator gives for a ban or another moderation
/// action, in characters: a sentence or two, kept in the audit log and
/// shown to a banned user.
pub const REASON_MAX: usize = 500;
/// How long a WebSocket ticket (`POST /api/ws-ticket`) opens a socket: the
/// contract's 30 s, time for the page to open it at once, too short for a
/// ticket copied out of a log to be of use.
pub const WS_TICKET_TTL: Duration = Duration::from_secs(30);
/// Tickets remembered as used at most, per node. A used ticket is kept
/// until it expires, so this is the upgrades with tickets one node takes in
/// [`WS_TICKET_TTL`]; past it the oldest are forgotten early (a forgotten
/// ticket is still dead within 30 s of being issued).
pub const WS_TICKETS_USED_MAX: usize = 100_000;
/// Invites: uses one invite may have at most, and how long it may live.
/// An invite for a whole conference fits; one that never expires does not
/// exist (a link forwarded beyond its audience must die on its own).
pub const INVITE_USES_MAX: u32 = 10_000;
pub const INVITE_TTL_MAX: Duration = Duration::from_secs(90 * 24 * 3600);
/// What `POST /api/invites` makes when a field is left out: one use, for a
/// week (Discord's and Zulip's defaults are of this order).
pub const INVITE_USES_DEFAULT: u32 = 1;
pub const INVITE_TTL_DEFAULT: Duration = Duration::from_secs(7 * 24 * 3600);
/// Sessions `GET /api/sessions` lists at most, newest first.
pub const SESSIONS_LISTED_MAX: usize = 200;
/// Invites `GET /api/invites` lists at most, newest first (usable ones only).
pub const INVITES_LISTED_MAX: usize = 500;
/// Bytes of a `User-Agent` kept with a session (to tell sessions apart in
/// the list), cut at a character boundary.
pub const USER_AGENT_MAX: usize = 200;
/// Audit log entries per `GET /api/admin/audit` page: default and most.
pub const AUDIT_PAGE_DEFAULT: usize = 50;
pub const AUDIT_PAGE_MAX: usize = 200;
/// Every node asks storage this often whether an account changed elsewhere
/// (a node of a cluster, or `hubbub user ...` on the command line). A
/// change made by a node is also announced on the bus, so the others ask
/// at once; this bounds how late a command line's change is seen.
pub const ACCOUNT_POLL: Duration = Duration::from_secs(1);
/// How long a hole in the account change log is asked about again. On
/// PostgreSQL ids come from a sequence and commit in any order, so change
/// 12 may be seen before change 11 commits; 11 is asked for until it
/// appears or this passes (a rolled-back change leaves a hole for good).
pub const ACCOUNT_GAP_WAIT: Duration = Duration::from_secs(30);
/// Account changes kept in the log: a node away longer reads everything
/// again when it starts, so older entries serve nobody.
pub const ACCOUNT_CHANGES_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);
/// The name an account takes when it is deleted, followed by its id. Its
/// messages stay, under this name; signups may not start with it.
pub const DELETED_USER_PREFIX: &str = "deleted-user-";

/// Who may sign up (`--signup`, or the admin setting when the flag is not
/// given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignupMode {
    /// Anyone who can reach the server.
    #[default]
    Open,
    /// Only with an invite code.
    Invite,
    /// Nobody; accounts come from the command line.
    Closed,
}

impl SignupMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SignupMode::Open => "open",
            SignupMode::Invite => "invite",
            SignupMode::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<SignupMode> {
        Some(match s {
            "open" => SignupMode::Open,
            "invite" => SignupMode::Invite,
            "closed" => SignupMode::Closed,
            _ => return None,
        })
    }
}

// ---- Threads and queues -----------------------------------------------------

/// Default of `Config::store_queue`: requests in flight to the storage thread
/// at most (a few MB of requests at worst; about 0.3 s of a flood at the
/// measured 200k persisted messages/s).
pub const STORE_QUEUE: usize = 65_536;
/// `--store-queue` is raised to at least this.
pub const STORE_QUEUE_MIN: usize = 16;
/// Requests the storage thread puts in one transaction at most.
pub const STORE_BATCH: usize = 4096;

/// How often a cluster node says it is alive on the bus.
pub const BEAT_INTERVAL_MS: i64 = 2_000;

/// A peer not heard from for this long is dead: its users leave and go
/// offline on the other nodes. Five missed beats, so a busy bus or a
/// stalled node is not mistaken for a dead one; with the once-a-second
/// tick, a crashed node's users are offline elsewhere within 11 s (the
/// contract allows 15).
pub const PEER_TIMEOUT_MS: i64 = 10_000;

/// How long a cluster node waits for a missing message (a later one of the
/// same room arrived first) before reading it back from storage. Nodes
/// publish right after their commit, so a message that is merely late
/// arrives within milliseconds; one that is lost is read back after this.
pub const GAP_WAIT_MS: i64 = 500;

/// Messages read back per catch-up read (another follows while more remain).
pub const CATCHUP_LIMIT: usize = 500;

/// Early messages a cluster node keeps per room while waiting for a missing
/// one; past it they are dropped and read back with the gap.
pub const MAX_BUFFERED_PER_TARGET: usize = 1_000;

/// `--cluster-key` shorter than this is refused at start: it keys the
/// HMAC-SHA256 every note between nodes carries (`hub/seal.rs`), and 32
/// bytes is SHA-256's output size, as for the token secret.
pub const CLUSTER_KEY_MIN: usize = 32;

/// A note sent further than this from the receiver's clock (either way) is
/// refused as a possible replay (`hub/seal.rs`): nodes' clocks must agree
/// this closely. Far above a loaded bus's latency (milliseconds) and NTP's
/// error (a few ms), well below how long a captured note stays dangerous.
pub const NOTE_MAX_AGE_MS: i64 = 30_000;

/// Rejected notes are logged once, then at most once per this interval with
/// how many there were, so a flood of forgeries cannot flood the log.
pub const REJECT_LOG_INTERVAL_MS: i64 = 10_000;

/// Bytes of one note from the bus at most, checked before its tag: a
/// `State` of a node with 2 million users online fits; an endless note
/// does not reach the decoder.
pub const MAX_NOTE_BYTES: usize = 8 << 20;

/// Longest node name (`--node-id`) a note may carry.
pub const MAX_NODE_NAME: usize = 64;

/// Notes naming a user this node has not read yet (signed up elsewhere a
/// moment ago) wait for the row, at most this many at once; past it they
/// are dropped (a resync or the next `State` brings the truth back).
pub const MAX_HELD_NOTES: usize = 4096;

/// A user row whose id lies this far past the highest id known is refused
/// rather than grow the directory's table to it: ids are handed out
/// densely, so only a broken row can jump this far.
pub const MAX_USER_ID_JUMP: u32 = 1 << 20;

/// How often the writer tries an empty transaction while the database is
/// unreachable: often enough that `/healthz` and writes recover within a
/// second of its return, rarely enough that an outage costs nothing.
pub const STORE_PROBE: Duration = Duration::from_millis(500);
/// Password jobs queued for the hashing pool at most; more is HTTP 503.
pub const HASH_QUEUE: usize = 256;
/// Descriptors kept back from `--max-conns` for everything that is not a
/// client: the database and its WAL and shm files, the reader's connection,
/// the epoll instance, the waker, the signal pipe, the spare descriptor,
/// the standard streams, SQLite's temporary files.
pub const FD_RESERVE: usize = 64;
/// Default of `--max-unfinished-per-addr`. A browser opens about six
/// connections to a host and finishes each request within milliseconds;
/// an office behind one NAT address is a few hundred people whose
/// connections are unfinished only briefly. 128 at once from one address is
/// an attack, or a load test (which can raise it).
pub const MAX_UNFINISHED_PER_ADDR: usize = 128;
/// How long shutdown waits for close frames to flush before exiting.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// The loop wakes at least this often to run timers.
pub const TICK: Duration = Duration::from_millis(250);

// ---- Abuse: password work, proxies, origins ----------------------------------

/// Default of `--hash-work-rate`: PBKDF2 iterations per second one client
/// address may have hashed (signups and logins together), i.e. one hash a
/// second at the default strength. Budgeting iterations, not attempts, makes
/// the limit track CPU time: a job costs the iterations it runs (the
/// configured count for a signup, the stored hash's count for a login), so a
/// 1000-iteration test or benchmark setup signs up hundreds of users from one
/// address unthrottled while a 600000-iteration flood is held to this rate.
pub const HASH_WORK_RATE: u64 = PBKDF2_DEFAULT as u64;
/// Default of `--hash-work-burst`: iterations a quiet address may spend at
/// once, ten default-strength hashes (a family or an office behind one NAT
/// logging in together; the test suite's 8 concurrent default-strength logins).
pub const HASH_WORK_BURST: u64 = 10 * PBKDF2_DEFAULT as u64;
/// Password jobs one client address may have waiting for a hashing thread;
/// more is 429. The global [`HASH_QUEUE`] bounds the sum; this keeps one
/// address (whatever its budget) from taking every slot.
pub const HASH_QUEUE_PER_CLIENT: usize = 16;
/// Failed logins one username may take in a burst before it is throttled:
/// online guessing of one account from many addresses. Tracked for every
/// well-formed name, existing or not, so a 429 reveals nothing about which
/// accounts exist.
pub const LOGIN_FAILURE_BURST: u32 = 10;
/// After the burst, one more failed login per username per this long
/// (2 a minute, under 3000 guesses a day for one account).
pub const LOGIN_FAILURE_REFILL: Duration = Duration::from_secs(30);
/// Distinct client addresses whose failures on one username are told apart.
/// While fewer addresses than this have failed on an exhausted username, only
/// they are refused and anyone else may still try, so one flooding address
/// cannot lock its victim out (the contract); once this many have, every
/// address waits (a distributed guessing attack: the account is slowed, not
/// left open).
pub const LOGIN_GUESSERS_MAX: usize = 4;
/// Client addresses, and usernames, the throttle keeps buckets for at most.
/// A full bucket is the same as none, so full ones are swept out first; past
/// this, new addresses share one bucket and new usernames go untracked, so
/// memory stays bounded whatever an attacker sprays.
pub const THROTTLE_TABLE_MAX: usize = 65_536;
/// IPv6 clients are throttled per /64: one host is usually given a whole /64,
/// so its 2^64 addresses are one client.
pub const IPV6_CLIENT_PREFIX: u32 = 64;
/// Default of `--max-conns-per-user`: chat WebSockets one user may hold on a
/// node. A browser keeps one per tab (Chrome allows 255 per profile), so 64
/// covers many tabs on several devices, while a stolen or scripted token
/// cannot make the fan-out of every message to that user unbounded.
pub const DEFAULT_MAX_CONNS_PER_USER: usize = 64;
/// Characters of client input an error message quotes at most (a 60 KB bogus
/// name comes back as its first 64 characters and an ellipsis).
pub const ECHO_MAX_CHARS: usize = 64;
/// `HUBBUB_JWT_SECRET` shorter than this is refused at start: an HS256
/// secret of a few bytes can be brute-forced offline from any one token.
/// 32 bytes is SHA-256's output size (RFC 7518 §3.2 requires at least that).
pub const JWT_SECRET_MIN: usize = 32;

// ---- Web Push ---------------------------------------------------------------

/// Push subscriptions one user may hold (browsers and devices); a new one
/// past this replaces their oldest, which is usually a browser profile
/// wiped without unsubscribing.
pub const MAX_PUSH_SUBSCRIPTIONS: usize = 10;
/// Longest push endpoint URL accepted, in bytes. Browsers' push services
/// give URLs of 100-400 bytes.
pub const MAX_PUSH_ENDPOINT: usize = 1024;
/// How long a push service keeps a push for a device that is off (the
/// `TTL` header): a message from last evening is still worth showing in the
/// morning; past a day, the conversation itself says more.
pub const PUSH_TTL: Duration = Duration::from_secs(24 * 3600);
/// One push per user and conversation per this long: the first message
/// goes at once; what comes during the interval waits and goes as one push
/// when it ends ("and 4 more"), so a busy room is one notification that
/// updates a few times a minute, not fifty.
pub const PUSH_INTERVAL_MS: i64 = 10_000;
/// Users and conversations whose pushes are paced at once, at most; past
/// it a new conversation's push is dropped (counted in `/metrics`).
pub const PUSH_PACED_MAX: usize = 100_000;
/// Characters of the message a push carries at most (as the web client's
/// own notifications show), then an ellipsis.
pub const PUSH_TEXT_CHARS: usize = 140;
/// Threads that send pushes. Each waits on one push service at a time, for
/// at most [`PUSH_REQUEST_TIMEOUT`]; four keep a slow service from holding
/// up the others' pushes.
pub const PUSH_SENDERS: usize = 4;
/// Pushes waiting for a sending thread, in all; past it a push is dropped
/// (counted in `/metrics`), never the loop blocked.
pub const PUSH_QUEUE: usize = 4096;
/// Retries one sending thread holds for later at most; past it a push that
/// should be retried is given up.
pub const PUSH_RETRIES_HELD: usize = 1024;
/// Tries per push: the first and three retries, after 1, 2 and 4 s (or the
/// service's `Retry-After`, up to [`PUSH_RETRY_AFTER_MAX`]), on a 429, a
/// 5xx or a failed connection.
pub const PUSH_ATTEMPTS: u32 = 4;
pub const PUSH_BACKOFF: Duration = Duration::from_secs(1);
pub const PUSH_RETRY_AFTER_MAX: Duration = Duration::from_secs(60);
/// Connecting to a push service (name lookup included) may take this long.
pub const PUSH_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One push request, connect to last byte, may take this long.
pub const PUSH_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The VAPID token's lifetime (RFC 8292 allows at most 24 h); a sending
/// thread signs one per push service and reuses it until an hour is left.
pub const VAPID_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

// ---- Operator defaults ------------------------------------------------------

/// Listen address when neither `--addr` nor `HUBBUB_ADDR` is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";
/// SQLite file when neither `--db` nor `HUBBUB_DB` is given: the working directory.
pub const DEFAULT_DB: &str = "./hubbub.db";
/// The VAPID `sub` when `--push-contact` is not given. Push services may
/// refuse a contact they cannot reach; operators should give their own.
pub const DEFAULT_PUSH_CONTACT: &str = "mailto:postmaster@localhost";
/// Chat frames per second per connection when `--rate-limit` is not given.
pub const DEFAULT_RATE_LIMIT: u32 = 20;
/// Most hashing threads by default: more would only compete with the loop
/// for cores on the small machines this targets.
pub const HASH_THREADS_MAX: usize = 4;

/// What an operator sets: flags, with environment fallbacks (see `OPTIONS`).
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address (`--addr`, `HUBBUB_ADDR`).
    pub addr: SocketAddr,
    /// Serve `GET /ws/echo` (`--echo`).
    pub echo: bool,
    /// Chat frames per second per connection; burst is twice this; 0 = off.
    pub rate_limit: u32,
    /// PBKDF2 iterations for new hashes (stored per user, so old hashes keep theirs).
    pub pbkdf2_iterations: u32,
    /// HS256 secret from `HUBBUB_JWT_SECRET`; `None` = generated once, kept in the db.
    pub jwt_secret: Option<Vec<u8>>,
    /// Serve the web client from this directory instead of the embedded copy
    /// (development only: it reads files on the loop thread).
    pub static_dir: Option<PathBuf>,
    /// Threads in the password-hashing pool (they run at a lower priority).
    pub hash_threads: usize,
    /// Requests waiting for the storage thread at most (`--store-queue`).
    /// Above half of it the loop stops reading chat connections until a
    /// quarter is left, so a flood slows its senders instead of filling the
    /// queue; a full queue answers `busy`.
    pub store_queue: usize,
    /// See [`PRESENCE_GRACE`] (`--presence-grace`, seconds; 0 = none).
    pub presence_grace: Duration,
    /// Connections open at most (`--max-conns`); 0 = the descriptor limit
    /// less [`FD_RESERVE`], which is also the most it may be.
    pub max_conns: usize,
    /// Unfinished connections (no request completed yet) one address may
    /// hold (`--max-unfinished-per-addr`).
    pub max_unfinished_per_addr: usize,
    /// PBKDF2 iterations per second each client address may spend
    /// (`--hash-work-rate`); 0 turns the per-address budget off.
    pub hash_work_rate: u64,
    /// Iterations a client address may spend at once (`--hash-work-burst`).
    pub hash_work_burst: u64,
    /// Reverse proxies whose `X-Forwarded-For` names the client
    /// (`--trust-proxy`); empty: the header is never read.
    pub trust_proxy: Vec<std::net::IpAddr>,
    /// Origins (`scheme://host[:port]`, lower case) a browser WebSocket may
    /// come from besides the server's own host (`--allowed-origin`); `*` is any.
    pub allowed_origins: Vec<String>,
    /// Chat WebSockets one user may hold on this node; 0 = unlimited.
    pub max_conns_per_user: usize,
    /// Who may sign up (`--signup`). `None`: the operator did not say, so
    /// an admin's setting decides (open until one is made); given, it wins
    /// and the admin setting is shown as set by the operator.
    pub signup: Option<SignupMode>,
    /// The key of the HMAC on every note between nodes (`--cluster-key`,
    /// at least [`CLUSTER_KEY_MIN`] bytes); a node of a cluster needs one.
    pub cluster_key: Option<Vec<u8>>,
    /// The largest upload, in bytes (`--max-upload`).
    pub max_upload: u64,
    /// Bytes of files one user may keep (`--upload-quota`); 0 = no quota.
    pub upload_quota: u64,
    /// VAPID private key (`HUBBUB_VAPID_PRIVATE_KEY`: a P-256 scalar,
    /// base64url); `None` = generated once, kept in the db.
    pub vapid_private_key: Option<Vec<u8>>,
    /// Who push services may contact about this server's pushes
    /// (`--push-contact`: a `mailto:` or `https:` URL, the VAPID `sub`).
    pub push_contact: String,
    /// Also accept `http://` push endpoints and loopback addresses
    /// (`--push-allow-insecure`, for tests with a local push service).
    pub push_allow_insecure: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: DEFAULT_ADDR.parse().expect("valid literal"),
            echo: false,
            rate_limit: DEFAULT_RATE_LIMIT,
            pbkdf2_iterations: PBKDF2_DEFAULT,
            jwt_secret: None,
            static_dir: None,
            store_queue: STORE_QUEUE,
            presence_grace: PRESENCE_GRACE,
            max_conns: 0,
            max_unfinished_per_addr: MAX_UNFINISHED_PER_ADDR,
            // One core stays free for the loop; hashing is background work.
            hash_threads: std::thread::available_parallelism()
                .map_or(1, |n| (n.get() - 1).clamp(1, HASH_THREADS_MAX)),
            hash_work_rate: HASH_WORK_RATE,
            hash_work_burst: HASH_WORK_BURST,
            trust_proxy: Vec::new(),
            allowed_origins: Vec::new(),
            max_conns_per_user: DEFAULT_MAX_CONNS_PER_USER,
            signup: None,
            cluster_key: None,
            max_upload: DEFAULT_MAX_UPLOAD,
            upload_quota: DEFAULT_UPLOAD_QUOTA,
            vapid_private_key: None,
            push_contact: DEFAULT_PUSH_CONTACT.into(),
            push_allow_insecure: false,
        }
    }
}

// ---- Command line -----------------------------------------------------------

/// What `main` needs to start: the reactor's settings, and where the database
/// is. The path stays out of [`Config`] because the reactor never opens
/// storage: `main` opens the backend and hands it to `Server::bind`.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: Config,
    /// SQLite file (`--db`, `HUBBUB_DB`).
    pub db: PathBuf,
    /// PostgreSQL instead of SQLite (`--postgres`, `HUBBUB_POSTGRES`).
    pub postgres: Option<String>,
    /// Join a cluster over this Redis (`--redis`, `HUBBUB_REDIS`; needs `--postgres`).
    pub redis: Option<String>,
    /// This node's name in logs and metrics (`--node-id`; default host:port).
    pub node_id: Option<String>,
    /// The Redis pub/sub channel of the cluster (`--redis-channel`): two
    /// clusters may share one Redis under different channels.
    pub redis_channel: String,
    /// Serve HTTPS/WSS with this PEM certificate chain (`--tls-cert`) ...
    pub tls_cert: Option<PathBuf>,
    /// ... and its PEM private key (`--tls-key`).
    pub tls_key: Option<PathBuf>,
    /// Names to obtain a certificate for by ACME (`--tls-domain`, repeatable).
    pub tls_domains: Vec<String>,
    /// The ACME directory URL (`--acme-directory`).
    pub acme_directory: String,
    /// Where ACME keeps its account and certificate (`--acme-cache`).
    pub acme_cache: PathBuf,
    /// A PEM CA to trust for the ACME directory's HTTPS (`--acme-ca`; tests).
    pub acme_ca: Option<PathBuf>,
    /// The plain-HTTP listener that redirects to https:// and answers ACME
    /// challenges (`--http-addr`, e.g. `0.0.0.0:80`).
    pub http_addr: Option<SocketAddr>,
    /// Serve `/metrics` on its own plain-HTTP listener, and not on the main
    /// one (`--metrics-addr`, e.g. `127.0.0.1:9090`).
    pub metrics_addr: Option<SocketAddr>,
    /// `--log-level` (or `RUST_LOG`); SIGHUP reads it again from the file.
    pub log_level: log::LevelFilter,
    /// The `--config` file the options were read from, if any.
    pub config_file: Option<PathBuf>,
    /// Seconds to keep retrying PostgreSQL at start (`--postgres-wait`).
    pub postgres_wait: Duration,
    /// The CA for `rediss://` (`--redis-ca`).
    pub redis_ca: Option<PathBuf>,
    /// The CA for PostgreSQL's TLS (`--postgres-ca`).
    pub postgres_ca: Option<PathBuf>,
}

/// Default of `--postgres-wait`: a PostgreSQL started at the same time
/// (systemd, a compose file) takes a few seconds to accept connections.
pub const POSTGRES_WAIT: Duration = Duration::from_secs(30);

/// Where `--acme-cache` defaults to: beside the default database.
pub const DEFAULT_ACME_CACHE: &str = "./acme";

/// The version `--version`, the start line and `/metrics` report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The cluster's Redis channel when `--redis-channel` is not given.
pub const DEFAULT_REDIS_CHANNEL: &str = "hubbub:cluster";

impl Default for Options {
    fn default() -> Self {
        Options {
            config: Config::default(),
            db: PathBuf::from(DEFAULT_DB),
            postgres: None,
            redis: None,
            node_id: None,
            redis_channel: DEFAULT_REDIS_CHANNEL.into(),
            tls_cert: None,
            tls_key: None,
            tls_domains: Vec::new(),
            acme_directory: DEFAULT_ACME_DIRECTORY.into(),
            acme_cache: PathBuf::from(DEFAULT_ACME_CACHE),
            acme_ca: None,
            http_addr: None,
            metrics_addr: None,
            log_level: log::LevelFilter::Info,
            config_file: None,
            postgres_wait: POSTGRES_WAIT,
            redis_ca: None,
            postgres_ca: None,
        }
    }
}

impl Options {
    /// The node's name: `--node-id`, else the listen address.
    pub fn node_name(&self) -> String {
        self.node_id
            .clone()
            .unwrap_or_else(|| self.config.addr.to_string())
    }
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    /// Start the server with these options.
    Run(Box<Options>),
    /// `-h` / `--help`: print [`usage`] and exit successfully.
    Help,
    /// `-V` / `--version`: print the version and exit successfully.
    Version,
    /// `hubbub backup PATH`: copy the database `db` (from `--db` or
    /// `HUBBUB_DB`, as for the server) to the new file `to`.
    Backup { db: PathBuf, to: PathBuf },
}

/// The subcommand that copies the live database; only as the first argument,
/// so no option value can be mistaken for it.
pub const BACKUP_COMMAND: &str = "backup";
/// The options `hubbub backup` reads, flag or variable: the rest only
/// configure a running server, so they are refused on its command line and
/// their variables (set for the server's service, say) are not even read.
const BACKUP_FLAGS: &[&str] = &["--db"];

/// The option that names a config file (env `HUBBUB_CONFIG`). Not a row of
/// `OPTIONS`: its value is read, not set.
pub const CONFIG_FLAG: &str = "--config";
const CONFIG_ENV: &str = "HUBBUB_CONFIG";

/// One operator option: where it comes from, how the usage shows it, and
/// how its text becomes a setting.
struct Opt {
    /// `--name`; `None` for a setting read only from the environment (a
    /// secret on the command line would show in `ps`).
    flag: Option<&'static str>,
    /// The environment variable read when the flag is not given.
    env: Option<&'static str>,
    /// The value's placeholder in the usage; `None` makes the flag a switch,
    /// which takes no value.
    value: Option<&'static str>,
    /// The usage's description. A function, so text that quotes a limit is
    /// built from its constant.
    help: fn() -> String,
    /// The default the usage shows, read from [`Options::default`] so the
    /// text cannot drift from the value.
    default: Option<fn(&Options) -> String>,
    /// Applies the value (`""` for a switch). An error says only what is
    /// wrong; the caller prefixes the flag or variable that carried it.
    set: fn(&mut Options, &str) -> Result<(), String>,
}

/// Every option, in the order `--help` lists them.
const OPTIONS: &[Opt] = &[
    Opt {
        flag: Some("--addr"),
        env: Some("HUBBUB_ADDR"),
        value: Some("ADDR"),
        help: || "listen address".into(),
        default: Some(|o| o.config.addr.to_string()),
        set: |o, v| {
            o.config.addr = v.parse().map_err(|_| format!("not an address: {v}"))?;
            Ok(())
        },
    },
    Opt {
        flag: Some("--db"),
        env: Some("HUBBUB_DB"),
        value: Some("PATH"),
        help: || "SQLite file, created and migrated on start".into(),
        default: Some(|o| o.db.display().to_string()),
        set: |o, v| {
            o.db = PathBuf::from(v);
            Ok(())
        },
    },
    Opt {
        flag: Some("--postgres"),
        env: Some("HUBBUB_POSTGRES"),
        value: Some("URL"),
        help: || {
            "store everything in PostgreSQL (postgres://user@host:port/db) instead of SQLite".into()
        },
        default: None,
        set: |o, v| {
            if !(v.starts_with("postgres://") || v.starts_with("postgresql://")) {
                return Err(format!("not a postgres:// URL: {v}"));
            }
            o.postgres = Some(v.to_string());
            Ok(())
        },
    },
    Opt {
        flag: Some("--redis"),
        env: Some("HUBBUB_REDIS"),
        value: Some("URL"),
        help: || {
            "join a cluster over this Redis (redis://host:port, rediss:// for TLS); needs --postgres"
                .into()
        },
        default: None,
        set: |o, v| {
            if !(v.starts_with("redis://") || v.starts_with("rediss://")) {
                return Err(format!("not a redis:// or rediss:// URL: {v}"));
            }
            o.redis = Some(v.to_string());
            Ok(())
        },
    },
    Opt {
        flag: Some("--redis-ca"),
        env: Some("HUBBUB_REDIS_CA"),
        value: Some("FILE"),
        help: || "trust this PEM CA for rediss:// (default: the system's roots)".into(),
        default: None,
        set: |o, v| {
            o.redis_ca = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Opt {
        flag: Some("--postgres-ca"),
        env: Some("HUBBUB_POSTGRES_CA"),
        value: Some("FILE"),
        help: || {
            "trust this PEM CA for PostgreSQL with sslmode=require or verify-full \
             (default: the system's roots)"
                .into()
        },
        default: None,
        set: |o, v| {
            o.postgres_ca = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Opt {
        flag: Some("--redis-channel"),
        env: Some("HUBBUB_REDIS_CHANNEL"),
        value: Some("NAME"),
        help: || {
            "the cluster's Redis pub/sub channel (clusters sharing a Redis differ here)".into()
        },
        default: Some(|o| o.redis_channel.clone()),
        set: |o, v| {
            if v.is_empty() || v.len() > 200 {
                return Err("a channel name is 1-200 bytes".into());
            }
            o.redis_channel = v.to_string();
            Ok(())
        },
    },
    Opt {
        flag: Some("--cluster-key"),
        env: Some("HUBBUB_CLUSTER_KEY"),
        value: Some("KEY"),
        help: || {
            format!(
                "the cluster's shared secret, at least {CLUSTER_KEY_MIN} bytes: every note between \
                 nodes is authenticated with it (needed with --redis)"
            )
        },
        default: None,
        set: |o, v| cluster_key(o, v.as_bytes().to_vec()),
    },
    Opt {
        flag: Some("--cluster-key-file"),
        env: Some("HUBBUB_CLUSTER_KEY_FILE"),
        value: Some("PATH"),
        help: || "read --cluster-key from this file (one trailing newline is dropped)".into(),
        default: None,
        set: |o, v| {
            let mut key = std::fs::read(v).map_err(|e| format!("cannot read {v}: {e}"))?;
            if key.ends_with(b"\n") {
                key.pop();
                if key.ends_with(b"\r") {
                    key.pop();
                }
            }
            cluster_key(o, key)
        },
    },
    Opt {
        flag: Some("--node-id"),
        env: Some("HUBBUB_NODE_ID"),
        value: Some("NAME"),
        help: || "this node's name in logs and metrics (default: the listen address)".into(),
        default: None,
        set: |o, v| {
            if v.is_empty() || v.len() > 64 {
                return Err("a node id is 1-64 bytes".into());
            }
            o.node_id = Some(v.to_string());
            Ok(())
        },
    },
    Opt {
        flag: Some("--tls-cert"),
        env: Some("HUBBUB_TLS_CERT"),
        value: Some("FILE"),
        help: || {
            "serve HTTPS and WSS with this PEM certificate chain (with --tls-key; reloaded on SIGHUP)".into()
        },
        default: None,
        set: |o, v| {
            o.tls_cert = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Opt {
        flag: Some("--tls-key"),
        env: Some("HUBBUB_TLS_KEY"),
        value: Some("FILE"),
        help: || "the PEM private key of --tls-cert".into(),
        default: None,
        set: |o, v| {
            o.tls_key = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Opt {
        flag: Some("--tls-domain"),
        env: Some("HUBBUB_TLS_DOMAIN"),
        value: Some("NAME"),
        help: || {
            "obtain and renew a certificate for NAME by ACME (HTTP-01 on --http-addr); \
             repeatable or a comma list"
                .into()
        },
        default: None,
        set: |o, v| {
            for d in v.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                let ok = d.len() <= 253
                    && d.contains('.')
                    && d.split('.').all(|l| {
                        !l.is_empty()
                            && l.len() <= 63
                            && !l.starts_with('-')
                            && !l.ends_with('-')
                            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    });
                if !ok {
                    return Err(format!("not a domain name: {d}"));
                }
                if !o.tls_domains.contains(&d) {
                    o.tls_domains.push(d);
                }
            }
            Ok(())
        },
    },
    Opt {
        flag: Some("--acme-directory"),
        env: Some("HUBBUB_ACME_DIRECTORY"),
        value: Some("URL"),
        help: || "the ACME directory for --tls-domain".into(),
        default: Some(|o| o.acme_directory.clone()),
        set: |o, v| {
            if !v.starts_with("https://") {
                return Err(format!("not an https:// URL: {v}"));
            }
            o.acme_directory = v.to_string();
            Ok(())
        },
    },
    Opt {
        flag: Some("--acme-cache"),
        env: Some("HUBBUB_ACME_CACHE"),
        value: Some("DIR"),
        help: || "where ACME keeps its account key and certificate (0700)".into(),
        default: Some(|o| o.acme_cache.display().to_string()),
        set: |o, v| {
            o.acme_cache = PathBuf::from(v);
            Ok(())
        },
    },
    Opt {
        flag: Some("--acme-ca"),
        env: Some("HUBBUB_ACME_CA"),
        value: Some("FILE"),
        help: || {
            "trust this PEM CA for the ACME directory's HTTPS (a test CA such as pebble's)".into()
        },
        default: None,
        set: |o, v| {
            o.acme_ca = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Opt {
        flag: Some("--http-addr"),
        env: Some("HUBBUB_HTTP_ADDR"),
        value: Some("ADDR"),
        help: || {
            "also listen for plain HTTP here (e.g. 0.0.0.0:80): redirects to https:// and \
             answers ACME challenges"
                .into()
        },
        default: None,
        set: |o, v| {
            o.http_addr = Some(v.parse().map_err(|_| format!("not an address: {v}"))?);
            Ok(())
        },
    },
    Opt {
        flag: Some("--metrics-addr"),
        env: Some("HUBBUB_METRICS_ADDR"),
        value: Some("ADDR"),
        help: || {
            "serve /metrics on this plain-HTTP listener (e.g. 127.0.0.1:9090) instead of the \
             main one"
                .into()
        },
        default: None,
        set: |o, v| {
            o.metrics_addr = Some(v.parse().map_err(|_| format!("not an address: {v}"))?);
            Ok(())
        },
    },
    Opt {
        flag: Some("--log-level"),
        env: Some("RUST_LOG"),
        value: Some("LEVEL"),
        help: || "error, warn, info, debug, trace or off; SIGHUP rereads it from --config".into(),
        default: Some(|o| o.log_level.to_string().to_ascii_lowercase()),
        set: |o, v| {
            o.log_level = v.parse().map_err(|_| {
                format!("not a log level (error, warn, info, debug, trace, off): {v}")
            })?;
            Ok(())
        },
    },
    Opt {
        flag: Some("--postgres-wait"),
        env: Some("HUBBUB_POSTGRES_WAIT"),
        value: Some("SECS"),
        help: || "keep retrying PostgreSQL this long at start (it may still be starting)".into(),
        default: Some(|o| o.postgres_wait.as_secs().to_string()),
        set: |o, v| {
            o.postgres_wait = Duration::from_secs(number(v)?);
            Ok(())
        },
    },
    Opt {
        flag: Some("--echo"),
        env: None,
        value: None,
        help: || "also serve GET /ws/echo (WebSocket echo, for Autobahn and benchmarks)".into(),
        default: None,
        set: |o, _| {
            o.config.echo = true;
            Ok(())
        },
    },
    Opt {
        flag: Some("--rate-limit"),
        env: Some("HUBBUB_RATE_LIMIT"),
        value: Some("N"),
        help: || "chat frames per second per connection, burst 2N; 0 = off".into(),
        default: Some(|o| o.config.rate_limit.to_string()),
        set: |o, v| {
            o.config.rate_limit = number(v)?;
            Ok(())
        },
    },
    Opt {
        flag: Some("--pbkdf2-iterations"),
        env: Some("HUBBUB_PBKDF2_ITERATIONS"),
        value: Some("N"),
        help: || format!("PBKDF2 iterations for new passwords, at least {PBKDF2_FLOOR}"),
        default: Some(|o| o.config.pbkdf2_iterations.to_string()),
        set: |o, v| {
            o.config.pbkdf2_iterations = number(v)?;
            Ok(())
        },
    },
    Opt {
        flag: Some("--store-queue"),
        env: Some("HUBBUB_STORE_QUEUE"),
        value: Some("N"),
        help: || "storage requests in flight at most; chat reading pauses above half".into(),
        default: Some(|o| o.config.store_queue.to_string()),
        set: |o, v| {
            o.config.store_queue = number(v)?;
            Ok(())
        },
    },
    Opt {
        flag: Some("--presence-grace"),
        env: Some("HUBBUB_PRESENCE_GRACE"),
        value: Some("SECS"),
        help: || {
            "seconds a departed user stays shown before offline/leave go out; 0 = at once".into()
        },
        default: Some(|o| o.config.presence_grace.as_secs().to_string()),
        set: |o, v| {
            o.config.presence_grace = Duration::from_secs(number(v)?);
            Ok(())
        },
    },
    Opt {
        flag: Some("--max-conns"),
        env: Some("HUBBUB_MAX_CONNS"),
        value: Some("N"),
        help: || {
            format!(
                "connections open at most; at the cap the oldest that sent no request is shed \
                 (default: the descriptor limit - {FD_RESERVE}, raised to the hard limit at start)"
            )
        },
        default: None,
        set: |o, v| {
            o.config.max_conns = number(v)?;
            Ok(())
        },
    },
    Opt {
        flag: Some("--max-unfinished-per-addr"),
        env: Some("HUBBUB_MAX_UNFINISHED_PER_ADDR"),
        value: Some("N"),
        help: || "connections one address may hold before completing a request".into(),
        default: Some(|o| o.config.max_unfinished_per_addr.to_string()),
        set: |o, v| {
            o.config.max_unfinished_per_addr = number(v)?;
            Ok(())
        },
    },
    Opt {
        flag: Some("--hash-threads"),
        env: None,
        value: Some("N"),
        // The default depends on the machine, so it is described, not shown.
        help: || {
            format!(
                "password hashing threads, at low priority (default: cores - 1, 1 to {HASH_THREADS_MAX})"
            )
        },
        default: None,
        set: |o, v| {
            o.config.hash_threads = number(v)?;
            Ok(())
        },
    },
    Opt {
        flag: Some("--static-dir"),
        env: None,
        value: Some("DIR"),
        help: || "serve the web client from DIR instead of the embedded copy (development)".into(),
        default: None,
        set: |o, v| {
            o.config.static_dir = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Opt {
        flag: None,
        env: Some("HUBBUB_JWT_SECRET"),
        value: None,
        help: || "HS256 secret; when unset one is generated once and kept in the database".into(),
        default: None,
        set: |o, v| {
            o.config.jwt_secret = Some(v.as_bytes().to_vec());
            Ok(())
        },
    },
    Opt {
        flag: Some("--hash-work-rate"),
        env: Some("HUBBUB_HASH_WORK_RATE"),
        value: Some("N"),
        help: || {
            "PBKDF2 iterations per second each client address may have hashed \
             (signups and logins); over it: 429; 0 = off"
                .into()
        },
        default: Some(|o| o.config.hash_work_rate.to_string()),
        set: |o, v| {
            o.config.hash_work_rate = number(v)?;
            Ok(())
        },
    },
    Opt {
        flag: Some("--hash-work-burst"),
        env: Some("HUBBUB_HASH_WORK_BURST"),
        value: Some("N"),
        help: || "PBKDF2 iterations a client address may spend at once".into(),
        default: Some(|o| o.config.hash_work_burst.to_string()),
        set: |o, v| {
            o.config.hash_work_burst = number(v)?;
            Ok(())
        },
    },
    Opt {
        flag: Some("--trust-proxy"),
        env: Some("HUBBUB_TRUST_PROXY"),
        value: Some("ADDR"),
        help: || {
            "reverse proxy IP (or comma list) whose X-Forwarded-For names the client \
             (its last entry); from any other peer the header is ignored"
                .into()
        },
        default: None,
        set: |o, v| {
            for a in v.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                let ip: std::net::IpAddr =
                    a.parse().map_err(|_| format!("not an IP address: {a}"))?;
                o.config.trust_proxy.push(ip.to_canonical());
            }
            Ok(())
        },
    },
    Opt {
        flag: Some("--allowed-origin"),
        env: Some("HUBBUB_ALLOWED_ORIGIN"),
        value: Some("ORIGIN"),
        help: || {
            "browser Origin (scheme://host[:port], or *) that may open WebSockets \
             besides the server's own host; repeatable or a comma list"
                .into()
        },
        default: None,
        set: |o, v| {
            for a in v.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                let a = a.trim_end_matches('/').to_ascii_lowercase();
                if a != "*" && !(a.starts_with("http://") || a.starts_with("https://")) {
                    return Err(format!("not an origin (scheme://host[:port]): {a}"));
                }
                o.config.allowed_origins.push(a);
            }
            Ok(())
        },
    },
    Opt {
        flag: None,
        env: Some("HUBBUB_VAPID_PRIVATE_KEY"),
        value: Some("KEY"),
        help: || {
            "VAPID private key for Web Push (P-256, base64url); default: one generated \
             once and kept in the database"
                .into()
        },
        default: None,
        set: |o, v| {
            use base64::Engine as _;
            let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(v.trim().trim_end_matches('='))
                .map_err(|_| "not base64url".to_string())?;
            if key.len() != 32 {
                return Err(format!(
                    "a P-256 private key is 32 bytes, not {}",
                    key.len()
                ));
            }
            o.config.vapid_private_key = Some(key);
            Ok(())
        },
    },
    Opt {
        flag: Some("--push-contact"),
        env: Some("HUBBUB_PUSH_CONTACT"),
        value: Some("URL"),
        help: || "who push services may contact about this server (mailto: or https: URL)".into(),
        default: Some(|o| o.config.push_contact.clone()),
        set: |o, v| {
            if !(v.starts_with("mailto:") || v.starts_with("https://")) || v.len() > 256 {
                return Err(format!("not a mailto: or https: URL: {v}"));
            }
            o.config.push_contact = v.to_string();
            Ok(())
        },
    },
    Opt {
        flag: Some("--push-allow-insecure"),
        env: None,
        value: None,
        help: || "also accept http:// and loopback push endpoints (tests only)".into(),
        default: None,
        set: |o, _| {
            o.config.push_allow_insecure = true;
            Ok(())
        },
    },
    Opt {
        flag: Some("--max-conns-per-user"),
        env: Some("HUBBUB_MAX_CONNS_PER_USER"),
        value: Some("N"),
        help: || "chat WebSockets one user may hold; more: 429; 0 = unlimited".into(),
        default: Some(|o| o.config.max_conns_per_user.to_string()),
        set: |o, v| {
            o.config.max_conns_per_user = number(v)?;
            Ok(())
        },
    },
    Opt {
        flag: Some("--signup"),
        env: Some("HUBBUB_SIGNUP"),
        value: Some("MODE"),
        help: || {
            "who may sign up: open, invite (with an invite code) or closed; \
             when not given, an admin sets it in the web client (default open)"
                .into()
        },
        default: None,
        set: |o, v| {
            o.config.signup = Some(
                SignupMode::parse(v).ok_or_else(|| format!("not open, invite or closed: {v}"))?,
            );
            Ok(())
        },
    },
    Opt {
        flag: Some("--max-upload"),
        env: Some("HUBBUB_MAX_UPLOAD"),
        value: Some("SIZE"),
        help: || {
            "the largest file upload, in bytes or with K, M, G (KiB, MiB, GiB); over it: 413".into()
        },
        default: Some(|o| show_size(o.config.max_upload)),
        set: |o, v| {
            o.config.max_upload = size(v)?;
            if o.config.max_upload == 0 {
                return Err("the largest upload must be at least one byte".into());
            }
            Ok(())
        },
    },
    Opt {
        flag: Some("--upload-quota"),
        env: Some("HUBBUB_UPLOAD_QUOTA"),
        value: Some("SIZE"),
        help: || {
            "bytes of files each user may keep, with K, M, G; over it: 507; 0 = no quota".into()
        },
        default: Some(|o| show_size(o.config.upload_quota)),
        set: |o, v| {
            o.config.upload_quota = size(v)?;
            Ok(())
        },
    },
];

/// A size option's value: bytes, or a number with `K`, `M` or `G` (KiB,
/// MiB, GiB), in either case.
pub fn size(v: &str) -> Result<u64, String> {
    let bad = || format!("not a size (bytes, or a number with K, M or G): {v}");
    let (digits, unit) = match v.as_bytes().last() {
        Some(b'k' | b'K') => (&v[..v.len() - 1], 1u64 << 10),
        Some(b'm' | b'M') => (&v[..v.len() - 1], 1 << 20),
        Some(b'g' | b'G') => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(bad)
}

/// A size as [`size`] reads it, in the largest unit that divides it.
pub fn show_size(n: u64) -> String {
    for (unit, shift) in [("G", 30), ("M", 20), ("K", 10)] {
        if n != 0 && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

/// A number option's value.
fn number<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("not a number: {v}"))
}

/// Reads the options: flags over environment over defaults, each option
/// parsed once (a variable whose flag is given is not read at all). An
/// empty variable counts as unset. `args` excludes the program name; `env`
/// is `std::env::var` in `main` and a map in tests. The error is the
/// message for the operator, naming the flag or variable at fault.
///
/// A first argument [`BACKUP_COMMAND`] asks for a backup instead: the same
/// table and rules, limited to [`BACKUP_FLAGS`], plus one PATH argument.
///
/// `--config FILE` (or `HUBBUB_CONFIG`) adds a third source below the
/// environment: `key = value` lines, the keys being the flags without
/// `--` (and `jwt-secret` for `HUBBUB_JWT_SECRET`). `read` reads it (the
/// file system in `main`, a map in tests).
pub fn parse_options(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
    read: impl Fn(&std::path::Path) -> std::io::Result<String>,
) -> Result<Parsed, String> {
    let mut opts = Options::default();
    let mut given = [false; OPTIONS.len()];
    let mut args = args.into_iter().peekable();
    let backup = args.next_if(|a| a == BACKUP_COMMAND).is_some();
    let applies = |o: &Opt| !backup || o.flag.is_some_and(|f| BACKUP_FLAGS.contains(&f));
    let mut backup_to: Option<PathBuf> = None;
    let mut config_file: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v)),
            _ => (arg.as_str(), None),
        };
        if name == "-h" || name == "--help" {
            return Ok(Parsed::Help);
        }
        if name == "-V" || name == "--version" {
            return Ok(Parsed::Version);
        }
        if name == CONFIG_FLAG {
            let v = match inline {
                Some(v) => v.to_string(),
                None => args.next().ok_or_else(|| format!("{name} needs a value"))?,
            };
            config_file = Some(PathBuf::from(v));
            continue;
        }
        if backup && !arg.starts_with('-') {
            if backup_to.is_some() {
                return Err(format!("{BACKUP_COMMAND} takes one PATH (see --help)"));
            }
            backup_to = Some(PathBuf::from(arg));
            continue;
        }
        let Some(i) = OPTIONS.iter().position(|o| o.flag == Some(name)) else {
            return Err(format!("unknown argument {name:?} (see --help)"));
        };
        if !applies(&OPTIONS[i]) {
            return Err(format!(
                "{name} is not an option of {BACKUP_COMMAND} (see --help)"
            ));
        }
        let value = match (OPTIONS[i].value, inline) {
            (None, None) => String::new(),
            // `--echo=false` must not quietly turn echo on.
            (None, Some(_)) => return Err(format!("{name} takes no value")),
            (Some(_), Some(v)) => v.to_string(),
            (Some(_), None) => args.next().ok_or_else(|| format!("{name} needs a value"))?,
        };
        (OPTIONS[i].set)(&mut opts, &value).map_err(|e| format!("{name}: {e}"))?;
        given[i] = true;
    }
    for (opt, given) in OPTIONS.iter().zip(given.iter_mut()) {
        let Some(var) = opt.env.filter(|_| !*given && applies(opt)) else {
            continue;
        };
        if let Some(v) = env(var).filter(|v| !v.is_empty()) {
            (opt.set)(&mut opts, &v).map_err(|e| format!("{var}: {e}"))?;
            *given = true;
        }
    }
    let config_file =
        config_file.or_else(|| env(CONFIG_ENV).filter(|v| !v.is_empty()).map(PathBuf::from));
    if let Some(path) = &config_file {
        let text = read(path).map_err(|e| format!("{CONFIG_FLAG} {}: {e}", path.display()))?;
        apply_file(&mut opts, &given, &text, backup)
            .map_err(|e| format!("{}:{e}", path.display()))?;
        opts.config_file = Some(path.clone());
    }
    if backup {
        let to = backup_to.ok_or_else(|| {
            format!("{BACKUP_COMMAND} needs the PATH of the copy to write (see --help)")
        })?;
        return Ok(Parsed::Backup { db: opts.db, to });
    }
    if opts.redis.is_some() && opts.postgres.is_none() {
        return Err("--redis needs --postgres: the nodes of a cluster share one PostgreSQL".into());
    }
    if opts.redis.is_some() && opts.config.cluster_key.is_none() {
        return Err(format!(
            "--redis needs --cluster-key (or HUBBUB_CLUSTER_KEY, or --cluster-key-file): \
             a secret of at least {CLUSTER_KEY_MIN} bytes, the same on every node, that \
             authenticates the notes between nodes"
        ));
    }
    check_tls(&opts)?;
    if let Some(s) = &opts.config.jwt_secret
        && s.len() < JWT_SECRET_MIN
    {
        return Err(format!(
            "HUBBUB_JWT_SECRET is {} bytes; at least {JWT_SECRET_MIN} are needed (a short HS256 \
             secret can be brute-forced from any token). Generate one with `openssl rand \
             -base64 48`, or unset it to have one generated and kept in the database",
            s.len()
        ));
    }
    let c = &mut opts.config;
    c.store_queue = c.store_queue.max(STORE_QUEUE_MIN);
    if c.pbkdf2_iterations < PBKDF2_FLOOR {
        log::warn!(
            "--pbkdf2-iterations {} is below the floor; using {PBKDF2_FLOOR}",
            c.pbkdf2_iterations
        );
        c.pbkdf2_iterations = PBKDF2_FLOOR;
    }
    Ok(Parsed::Run(Box::new(opts)))
}

/// Sets the cluster key, refusing a short one.
fn cluster_key(o: &mut Options, key: Vec<u8>) -> Result<(), String> {
    if key.len() < CLUSTER_KEY_MIN {
        return Err(format!(
            "the cluster key is {} bytes; it needs at least {CLUSTER_KEY_MIN}",
            key.len()
        ));
    }
    o.config.cluster_key = Some(key);
    Ok(())
}

/// The key of an option in a config file: its flag without `--`, or for
/// an environment-only setting its variable without `HUBBUB_`, in lower
/// case with dashes (`jwt-secret`).
fn file_key(opt: &Opt) -> Option<String> {
    match (opt.flag, opt.env) {
        (Some(f), _) => Some(f.trim_start_matches('-').to_string()),
        (None, Some(var)) => Some(
            var.trim_start_matches("HUBBUB_")
                .to_ascii_lowercase()
                .replace('_', "-"),
        ),
        (None, None) => None,
    }
}

/// Applies a config file's `key = value` lines to the options no flag or
/// variable set. `#` starts a comment line; a value may be in double
/// quotes; a key may repeat where its flag may (`tls-domain`); a switch
/// takes `true` or `false`. The error starts with the line number.
///
/// Why this format and not TOML: every setting is already a flag whose
/// value is one string, parsed by the same table; a line per flag needs no
/// types mapped back onto those strings, no dependency, and reads like the
/// command line it replaces.
fn apply_file(opts: &mut Options, given: &[bool], text: &str, backup: bool) -> Result<(), String> {
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("{n}: expected `key = value`, got {line:?}"));
        };
        let (key, value) = (key.trim(), value.trim());
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        let Some(i) = OPTIONS
            .iter()
            .position(|o| file_key(o).is_some_and(|k| k == key))
        else {
            return Err(format!("{n}: unknown key {key:?}"));
        };
        let opt = &OPTIONS[i];
        let applies = !backup || opt.flag.is_some_and(|f| BACKUP_FLAGS.contains(&f));
        if given[i] || !applies {
            continue;
        }
        let switch = opt.flag.is_some() && opt.value.is_none();
        let value = match (switch, value) {
            (false, v) => v,
            (true, "true") => "",
            (true, "false") => continue,
            (true, v) => return Err(format!("{n}: {key}: true or false, not {v:?}")),
        };
        (opt.set)(opts, value).map_err(|e| format!("{n}: {key}: {e}"))?;
    }
    Ok(())
}

/// TLS comes from files or from ACME, never both, and each needs its parts.
fn check_tls(o: &Options) -> Result<(), String> {
    match (&o.tls_cert, &o.tls_key) {
        (Some(_), None) => return Err("--tls-cert needs --tls-key".into()),
        (None, Some(_)) => return Err("--tls-key needs --tls-cert".into()),
        _ => {}
    }
    if !o.tls_domains.is_empty() {
        if o.tls_cert.is_some() {
            return Err(
                "--tls-domain and --tls-cert exclude each other: certificates come \
                        from ACME or from files"
                    .into(),
            );
        }
        if o.http_addr.is_none() {
            return Err(
                "--tls-domain needs --http-addr (e.g. 0.0.0.0:80): ACME's HTTP-01 \
                        challenge is answered there"
                    .into(),
            );
        }
    } else if o.http_addr.is_some() && o.tls_cert.is_none() {
        return Err(
            "--http-addr redirects to https://: it needs --tls-cert or --tls-domain".into(),
        );
    }
    Ok(())
}

/// Width of the usage's left column (flag and placeholder, or variable name).
const USAGE_COLUMN: usize = 25;

/// The `--help` text, written from `OPTIONS`: flags under OPTIONS,
/// environment-only settings under ENVIRONMENT.
pub fn usage() -> String {
    use std::fmt::Write;
    let defaults = Options::default();
    // A left side that would touch its description gets a line of its own,
    // so two columns never run together.
    let line = |out: &mut String, left: &str, right: &str| {
        if left.len() + 2 > USAGE_COLUMN {
            let _ = writeln!(out, "    {left}\n    {:USAGE_COLUMN$}{right}", "");
        } else {
            let _ = writeln!(out, "    {left:<USAGE_COLUMN$}{right}");
        }
    };
    let mut out = String::from(
        "hubbub: a small, fast, self-hostable real-time chat server\n\n\
         USAGE:\n    hubbub [OPTIONS]\n",
    );
    line(
        &mut out,
        &format!("hubbub {BACKUP_COMMAND} PATH"),
        "copy the database (--db) to the new file PATH, mode 0600, while the server runs",
    );
    line(
        &mut out,
        "hubbub migrate --from-sqlite PATH --postgres URL",
        "copy a stopped server's SQLite database into an empty PostgreSQL (see --help there)",
    );
    line(
        &mut out,
        "hubbub restore BACKUP",
        "put a backup in place of the stopped server's database, ids raised (see --help there)",
    );
    line(
        &mut out,
        "hubbub systemd-unit",
        "print a sandboxed systemd unit for this binary",
    );
    out.push_str("\nOPTIONS:\n");
    for opt in OPTIONS {
        let Some(flag) = opt.flag else { continue };
        let left = match opt.value {
            Some(v) => format!("{flag} {v}"),
            None => flag.to_string(),
        };
        let mut right = (opt.help)();
        if let Some(var) = opt.env {
            let _ = write!(right, " [env {var}]");
        }
        if let Some(default) = opt.default {
            let _ = write!(right, " (default {})", default(&defaults));
        }
        line(&mut out, &left, &right);
    }
    line(
        &mut out,
        "--config FILE",
        "read `key = value` lines (keys: the flags without --) below flags and environment \
         [env HUBBUB_CONFIG]",
    );
    line(&mut out, "-V, --version", "print the version");
    line(&mut out, "-h, --help", "print this help");
    out.push_str("\nENVIRONMENT:\n");
    for opt in OPTIONS.iter().filter(|o| o.flag.is_none()) {
        line(&mut out, opt.env.unwrap_or_default(), &(opt.help)());
    }
    // Read by the logger itself, not by `parse_options`.
    line(
        &mut out,
        "RUST_LOG",
        "log level: error, warn, info (default), debug, trace",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `args` with exactly the variables in `vars` set.
    fn parse(args: &[&str], vars: &[(&str, &str)]) -> Result<Parsed, String> {
        parse_with_file(args, vars, "")
    }

    /// The same, with `file` the text of any `--config` file.
    fn parse_with_file(args: &[&str], vars: &[(&str, &str)], file: &str) -> Result<Parsed, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let file = file.to_string();
        parse_options(
            args.iter().map(|a| a.to_string()),
            move |k| {
                vars.iter()
                    .find(|(name, _)| name == k)
                    .map(|(_, v)| v.clone())
            },
            move |_| Ok(file.clone()),
        )
    }

    fn run(args: &[&str], vars: &[(&str, &str)]) -> Options {
        match parse(args, vars) {
            Ok(Parsed::Run(o)) => *o,
            other => panic!("{args:?} {vars:?}: {other:?}"),
        }
    }

    /// A flag wins over its variable, and a variable whose flag is given is
    /// not even parsed (a bad one is no error).
    #[test]
    fn flag_beats_env() {
        let o = run(
            &["--addr", "10.0.0.1:1", "--rate-limit", "3"],
            &[
                ("HUBBUB_ADDR", "not an address"),
                ("HUBBUB_RATE_LIMIT", "7"),
            ],
        );
        assert_eq!(o.config.addr.to_string(), "10.0.0.1:1");
        assert_eq!(o.config.rate_limit, 3);
        let o = run(&["--db", "flag.db"], &[("HUBBUB_DB", "env.db")]);
        assert_eq!(o.db, PathBuf::from("flag.db"));
    }

    /// Sizes read bytes or K, M, G (binary), and say themselves back the
    /// same way; anything else, or an overflow, is refused.
    #[test]
    fn sizes() {
        assert_eq!(size("25M"), Ok(25 << 20));
        assert_eq!(size("1g"), Ok(1 << 30));
        assert_eq!(size("512k"), Ok(512 << 10));
        assert_eq!(size("1000"), Ok(1000));
        assert_eq!(size("0"), Ok(0));
        for bad in ["", "M", "1.5M", "-1", "10MB", "99999999999999999999G", "1T"] {
            assert!(size(bad).is_err(), "{bad}");
        }
        assert_eq!(show_size(DEFAULT_MAX_UPLOAD), "25M");
        assert_eq!(show_size(DEFAULT_UPLOAD_QUOTA), "1G");
        assert_eq!(show_size(1536), "1536");
        assert_eq!(show_size(0), "0");
        let o = run(&["--max-upload", "2M"], &[("HUBBUB_UPLOAD_QUOTA", "0")]);
        assert_eq!((o.config.max_upload, o.config.upload_quota), (2 << 20, 0));
        assert!(parse(&["--max-upload", "0"], &[]).is_err());
    }

    /// A variable wins over the default; without either the default holds.
    #[test]
    fn env_beats_default() {
        let o = run(
            &[],
            &[
                ("HUBBUB_ADDR", "10.0.0.2:2"),
                ("HUBBUB_DB", "env.db"),
                ("HUBBUB_RATE_LIMIT", "0"),
                ("HUBBUB_PBKDF2_ITERATIONS", "5000"),
                ("HUBBUB_STORE_QUEUE", "100"),
                ("HUBBUB_JWT_SECRET", "s3cret-s3cret-s3cret-s3cret-s3cret"),
            ],
        );
        assert_eq!(o.config.addr.to_string(), "10.0.0.2:2");
        assert_eq!(o.db, PathBuf::from("env.db"));
        assert_eq!(o.config.rate_limit, 0);
        assert_eq!(o.config.pbkdf2_iterations, 5000);
        assert_eq!(o.config.store_queue, 100);
        assert_eq!(
            o.config.jwt_secret.as_deref(),
            Some(&b"s3cret-s3cret-s3cret-s3cret-s3cret"[..])
        );
        let o = run(&[], &[]);
        assert_eq!(o.config.addr.to_string(), DEFAULT_ADDR);
        assert_eq!(o.db, PathBuf::from(DEFAULT_DB));
        assert_eq!(o.config.rate_limit, DEFAULT_RATE_LIMIT);
        assert_eq!(o.config.pbkdf2_iterations, PBKDF2_DEFAULT);
        assert_eq!(o.config.store_queue, STORE_QUEUE);
        assert_eq!(o.config.jwt_secret, None);
        assert!(!o.config.echo);
    }

    /// `--flag=value` is the same as `--flag value`; a switch takes no value
    /// in either form.
    #[test]
    fn equals_form_and_switches() {
        let o = run(
            &[
                "--addr=10.0.0.3:3",
                "--db=a=b.db",
                "--hash-threads=2",
                "--static-dir",
                "web",
                "--echo",
            ],
            &[],
        );
        assert_eq!(o.config.addr.to_string(), "10.0.0.3:3");
        assert_eq!(o.db, PathBuf::from("a=b.db"), "only the first = splits");
        assert_eq!(o.config.hash_threads, 2);
        assert_eq!(o.config.static_dir, Some(PathBuf::from("web")));
        assert!(o.config.echo);
        assert_eq!(
            parse(&["--echo=false"], &[]).unwrap_err(),
            "--echo takes no value"
        );
    }

    /// An empty variable counts as unset.
    #[test]
    fn empty_env_is_unset() {
        let o = run(
            &[],
            &[
                ("HUBBUB_ADDR", ""),
                ("HUBBUB_RATE_LIMIT", ""),
                ("HUBBUB_JWT_SECRET", ""),
            ],
        );
        assert_eq!(o.config.addr.to_string(), DEFAULT_ADDR);
        assert_eq!(o.config.rate_limit, DEFAULT_RATE_LIMIT);
        assert_eq!(o.config.jwt_secret, None);
    }

    /// Each error names the flag or variable that carried the bad value.
    #[test]
    fn errors_name_their_source() {
        let err = |args: &[&str], vars: &[(&str, &str)]| parse(args, vars).unwrap_err();
        assert_eq!(err(&["--addr", "x"], &[]), "--addr: not an address: x");
        assert_eq!(
            err(&[], &[("HUBBUB_ADDR", "x")]),
            "HUBBUB_ADDR: not an address: x"
        );
        assert_eq!(
            err(&["--rate-limit=-1"], &[]),
            "--rate-limit: not a number: -1"
        );
        assert_eq!(
            err(&[], &[("HUBBUB_STORE_QUEUE", "lots")]),
            "HUBBUB_STORE_QUEUE: not a number: lots"
        );
        assert_eq!(err(&["--addr"], &[]), "--addr needs a value");
        assert_eq!(err(&["--x"], &[]), "unknown argument \"--x\" (see --help)");
        assert_eq!(
            err(&["--x=1"], &[]),
            "unknown argument \"--x\" (see --help)"
        );
        assert_eq!(
            err(&["--jwt-secret", "s"], &[]),
            "unknown argument \"--jwt-secret\" (see --help)",
            "the secret is environment-only"
        );
    }

    /// A `--config` file sets what no flag or variable sets: flags over
    /// environment over file, repeatable keys repeat, switches take
    /// true/false, quotes are stripped, and errors carry the line number.
    #[test]
    fn config_file_is_the_third_source() {
        let file = "# comment\n\
                    addr = 10.0.0.9:9\n\
                    rate-limit = 7\n\
                    store-queue = \"300\"\n\
                    tls-domain = a.example.com\n\
                    tls-domain = b.example.com\n\
                    http-addr = 0.0.0.0:80\n\
                    echo = false\n\
                    jwt-secret = 0123456789abcdef0123456789abcdef\n";
        let o = match parse_with_file(
            &["--config", "x.conf", "--rate-limit", "3"],
            &[("HUBBUB_STORE_QUEUE", "200")],
            file,
        ) {
            Ok(Parsed::Run(o)) => *o,
            other => panic!("{other:?}"),
        };
        assert_eq!(o.config.addr.to_string(), "10.0.0.9:9", "file");
        assert_eq!(o.config.rate_limit, 3, "flag over file");
        assert_eq!(o.config.store_queue, 200, "env over file");
        assert_eq!(o.tls_domains, ["a.example.com", "b.example.com"]);
        assert!(!o.config.echo);
        assert_eq!(o.config_file, Some(PathBuf::from("x.conf")));
        assert_eq!(o.config.jwt_secret.as_deref().map(<[u8]>::len), Some(32));
        let err = |file: &str| parse_with_file(&["--config=c.conf"], &[], file).unwrap_err();
        assert_eq!(
            err("\n\nbogus\n"),
            "c.conf:3: expected `key = value`, got \"bogus\""
        );
        assert_eq!(err("addr = x\n"), "c.conf:1: addr: not an address: x");
        assert_eq!(
            err("echo = yes\n"),
            "c.conf:1: echo: true or false, not \"yes\""
        );
        assert_eq!(err("nope = 1\n"), "c.conf:1: unknown key \"nope\"");
        assert!(matches!(parse(&["--version"], &[]), Ok(Parsed::Version)));
    }

    /// `-h` and `--help` ask for the usage, even with a bad variable set.
    #[test]
    fn help_wins() {
        for flag in ["-h", "--help"] {
            let got = parse(&["--echo", flag, "--bogus"], &[("HUBBUB_ADDR", "x")]);
            assert!(matches!(got, Ok(Parsed::Help)), "{flag}: {got:?}");
        }
    }

    /// The queue is raised to its minimum and iterations to their floor,
    /// whichever source set them; values above are kept.
    #[test]
    fn floor_and_minimum_clamp() {
        let o = run(&["--store-queue", "1", "--pbkdf2-iterations", "1"], &[]);
        assert_eq!(o.config.store_queue, STORE_QUEUE_MIN);
        assert_eq!(o.config.pbkdf2_iterations, PBKDF2_FLOOR);
        let o = run(
            &[],
            &[
                ("HUBBUB_STORE_QUEUE", "0"),
                ("HUBBUB_PBKDF2_ITERATIONS", "999"),
            ],
        );
        assert_eq!(o.config.store_queue, STORE_QUEUE_MIN);
        assert_eq!(o.config.pbkdf2_iterations, PBKDF2_FLOOR);
        let o = run(&["--store-queue", "17", "--pbkdf2-iterations", "1001"], &[]);
        assert_eq!(o.config.store_queue, 17);
        assert_eq!(o.config.pbkdf2_iterations, 1001);
    }

    fn backup(args: &[&str], vars: &[(&str, &str)]) -> (PathBuf, PathBuf) {
        match parse(args, vars) {
            Ok(Parsed::Backup { db, to }) => (db, to),
            other => panic!("{args:?} {vars:?}: {other:?}"),
        }
    }

    /// `backup PATH` takes the database from `--db`, `HUBBUB_DB` or the
    /// default, like the server, with the PATH before or after the flag.
    #[test]
    fn backup_reads_db_like_the_server() {
        let to = PathBuf::from("copy.db");
        assert_eq!(
            backup(&["backup", "copy.db"], &[]),
            (PathBuf::from(DEFAULT_DB), to.clone())
        );
        assert_eq!(
            backup(&["backup", "copy.db"], &[("HUBBUB_DB", "env.db")]),
            (PathBuf::from("env.db"), to.clone())
        );
        assert_eq!(
            backup(
                &["backup", "--db", "flag.db", "copy.db"],
                &[("HUBBUB_DB", "env.db")]
            ),
            (PathBuf::from("flag.db"), to.clone())
        );
        assert_eq!(
            backup(&["backup", "a=b.db", "--db=x.db"], &[]),
            (PathBuf::from("x.db"), PathBuf::from("a=b.db"))
        );
    }

    /// `backup` ignores the server's variables, so a bad one (set for the
    /// service) does not stop a backup.
    #[test]
    fn backup_ignores_server_variables() {
        let (db, _) = backup(
            &["backup", "copy.db"],
            &[
                ("HUBBUB_ADDR", "not an address"),
                ("HUBBUB_RATE_LIMIT", "lots"),
                ("HUBBUB_DB", "env.db"),
            ],
        );
        assert_eq!(db, PathBuf::from("env.db"));
    }

    /// A backup without PATH, with two, or with a server flag is a usage
    /// error; `backup` anywhere but first is not the subcommand.
    #[test]
    fn backup_usage_errors() {
        let err = |args: &[&str]| parse(args, &[]).unwrap_err();
        assert_eq!(
            err(&["backup"]),
            "backup needs the PATH of the copy to write (see --help)"
        );
        assert_eq!(
            err(&["backup", "--db", "x.db"]),
            "backup needs the PATH of the copy to write (see --help)"
        );
        assert_eq!(
            err(&["backup", "a.db", "b.db"]),
            "backup takes one PATH (see --help)"
        );
        assert_eq!(
            err(&["backup", "--echo", "a.db"]),
            "--echo is not an option of backup (see --help)"
        );
        assert_eq!(
            err(&["--db", "x.db", "backup", "a.db"]),
            "unknown argument \"backup\" (see --help)"
        );
        assert_eq!(err(&["backup", "--db"]), "--db needs a value");
        assert!(matches!(
            parse(&["backup", "--help"], &[]),
            Ok(Parsed::Help)
        ));
    }

    /// The usage lists every row of the table: flags with their placeholder,
    /// variable and default in the columns of the help text, and
    /// environment-only settings under ENVIRONMENT.
    #[test]
    fn usage_is_written_from_the_table() {
        let text = usage();
        assert!(
            text.contains(
                "\n    --addr ADDR              listen address [env HUBBUB_ADDR] (default 127.0.0.1:8080)\n"
            ),
            "{text}"
        );
        assert!(text.contains(&format!("at least {PBKDF2_FLOOR} [env")));
        assert!(text.contains(&format!("(default {STORE_QUEUE})")));
        for opt in OPTIONS {
            if let Some(flag) = opt.flag {
                assert!(text.contains(&format!("\n    {flag}")), "{flag}");
            }
            if let Some(var) = opt.env {
                assert!(text.contains(var), "{var}");
            }
        }
        assert!(
            text.contains("\n    hubbub backup PATH       copy the database (--db)"),
            "{text}"
        );
        let env_section = &text[text.find("ENVIRONMENT:").expect("section")..];
        assert!(env_section.contains("\n    HUBBUB_JWT_SECRET        HS256 secret"));
    }

    /// The cluster options: URLs checked by scheme, `--redis` refused
    /// without `--postgres`, flags over variables, and the channel and node
    /// name defaults.
    #[test]
    fn cluster_options() {
        let o = run(
            &["--postgres", "postgres://hubbub@127.0.0.1:5432/hubbub"],
            &[
                ("HUBBUB_REDIS", "redis://127.0.0.1:6379"),
                ("HUBBUB_NODE_ID", "n7"),
                ("HUBBUB_CLUSTER_KEY", KEY),
            ],
        );
        assert_eq!(
            o.postgres.as_deref(),
            Some("postgres://hubbub@127.0.0.1:5432/hubbub")
        );
        assert_eq!(o.redis.as_deref(), Some("redis://127.0.0.1:6379"));
        assert_eq!(o.redis_channel, DEFAULT_REDIS_CHANNEL);
        assert_eq!(o.node_name(), "n7");
        let unnamed = run(&["--addr", "127.0.0.1:9000"], &[]);
        assert_eq!(unnamed.node_name(), "127.0.0.1:9000");
        let e = parse(&["--redis", "redis://127.0.0.1:6379"], &[]).unwrap_err();
        assert!(e.contains("--redis needs --postgres"), "{e}");
        let e = parse(&["--postgres", "mysql://x"], &[]).unwrap_err();
        assert!(e.starts_with("--postgres: not a postgres:// URL"), "{e}");
        let e = parse(&["--node-id", ""], &[]).unwrap_err();
        assert!(e.contains("1-64 bytes"), "{e}");
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    /// A cluster needs a key of at least 32 bytes, from the flag, the
    /// variable or a file (its trailing newline dropped); a node started
    /// without one, or with a short one, does not start.
    #[test]
    fn a_cluster_needs_its_key() {
        let pg = ["--postgres", "postgres://h@127.0.0.1/h"];
        let cluster = |extra: &[&str], vars: &[(&str, &str)]| {
            let args: Vec<&str> = pg
                .iter()
                .copied()
                .chain(["--redis", "redis://127.0.0.1:6379"])
                .chain(extra.iter().copied())
                .collect();
            parse(&args, vars)
        };
        let e = cluster(&[], &[]).unwrap_err();
        assert!(e.contains("--redis needs --cluster-key"), "{e}");
        let e = cluster(&["--cluster-key", &KEY[1..]], &[]).unwrap_err();
        assert!(e.contains("31 bytes; it needs at least 32"), "{e}");
        let Ok(Parsed::Run(o)) = cluster(&["--cluster-key", KEY], &[]) else {
            panic!("a 32-byte key starts a node");
        };
        assert_eq!(o.config.cluster_key.as_deref(), Some(KEY.as_bytes()));
        let dir = std::env::temp_dir().join(format!("hubbub-key-{}", std::process::id()));
        std::fs::write(&dir, format!("{KEY}\n")).unwrap();
        let file = dir.to_str().unwrap();
        let Ok(Parsed::Run(o)) = cluster(&[], &[("HUBBUB_CLUSTER_KEY_FILE", file)]) else {
            panic!("a key file starts a node");
        };
        assert_eq!(o.config.cluster_key.as_deref(), Some(KEY.as_bytes()));
        std::fs::remove_file(&dir).unwrap();
        let e = cluster(&["--cluster-key-file", file], &[]).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }
}
