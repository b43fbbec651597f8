//! Every limit and default of the server, named and documented in one place.
//!
//! Constants are limits that the contract (`PROTOCOL.md`) fixes or that only a
//! code change should move; [`Config`] holds what an operator may set with a flag
//! or an environment variable. Nothing here does I/O.

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
/// Replies already requested when reading paused (up to a burst of history
/// pages) fit under it.
pub const OUTPUT_CEILING: usize = 16 * 1024 * 1024;
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
/// Size of the loop's one shared read buffer. Every socket reads into it, so an
/// idle connection owns no input buffer at all; only an incomplete request or
/// frame is copied out into a per-connection buffer.
pub const SCRATCH_BYTES: usize = 64 * 1024;
/// A per-connection buffer larger than this is freed, not kept, once it empties:
/// a burst must not leave a connection holding memory while it idles.
pub const KEEP_BUFFER_BYTES: usize = 4 * 1024;

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
/// Client ids remembered for idempotent retries. Retries come within seconds or
/// minutes of the first send, so the newest N across the server are enough; the
/// same window is reloaded from the database at start.
pub const CLIENT_ID_WINDOW: usize = 100_000;
/// Live frames held for a connection while its `since` replay is being read
/// from storage; past this the replay reports `recovered: false`.
pub const MAX_HELD_FRAMES: usize = 1000;
/// Rooms one connection may be joined to at once.
pub const MAX_ROOMS_PER_CONN: usize = 256;
/// Members given in one `create_room`.
pub const MAX_ROOM_MEMBERS: usize = 1000;

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

// ---- Threads and queues -----------------------------------------------------

/// Default of `Config::store_queue`: requests in flight to the storage thread
/// at most (a few MB of requests at worst; about 0.3 s of a flood at the
/// measured 200k persisted messages/s).
pub const STORE_QUEUE: usize = 65_536;
/// `--store-queue` is raised to at least this.
pub const STORE_QUEUE_MIN: usize = 16;
/// Requests the storage thread puts in one transaction at most.
pub const STORE_BATCH: usize = 4096;
/// Password jobs queued for the hashing pool at most; more is HTTP 503.
pub const HASH_QUEUE: usize = 256;
/// How long shutdown waits for close frames to flush before exiting.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// The loop wakes at least this often to run timers.
pub const TICK: Duration = Duration::from_millis(250);

/// What an operator sets: flags, with environment fallbacks (see `main.rs`).
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address (`--addr`, `HUBBUB_ADDR`).
    pub addr: SocketAddr,
    /// SQLite file (`--db`, `HUBBUB_DB`).
    pub db: PathBuf,
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: "127.0.0.1:8080".parse().expect("valid literal"),
            db: PathBuf::from("./hubbub.db"),
            echo: false,
            rate_limit: 20,
            pbkdf2_iterations: PBKDF2_DEFAULT,
            jwt_secret: None,
            static_dir: None,
            // One core stays free for the loop; hashing is background work.
            store_queue: STORE_QUEUE,
            hash_threads: std::thread::available_parallelism()
                .map_or(1, |n| (n.get() - 1).clamp(1, 4)),
        }
    }
}
