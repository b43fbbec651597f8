//! `GET /api/search` at scale: a million messages, searched the way the
//! server searches them (the storage reader's `Search`, on its own
//! connection, in its own read transaction).
//!
//! `cargo bench --bench search` builds a database of `HUBBUB_BENCH_MESSAGES`
//! messages (default 1,000,000) in a temporary directory: 1,000 users, 40
//! public and 10 private rooms, one message in ten a private one, content
//! drawn from a 20,000-word vocabulary with Zipf frequencies (so "the" is
//! in most messages and the tail words in a handful), plus marker words at
//! known rates. It then times each kind of query, many times, and prints
//! the median and p99 latency and how many messages each matched in all.
//! With `HUBBUB_BENCH_POSTGRES=URL` (an empty database) it does the same
//! on PostgreSQL (after a `VACUUM ANALYZE`, as autovacuum would have run on
//! a live database); `HUBBUB_BENCH_SQLITE=0` skips SQLite.
//!
//! The build is timed too: it is the write path with the full-text index,
//! in the writer's batches.

use std::hint::black_box;
use std::time::{Duration, Instant};

use hubbub::store::{
    Backend, PrivateRoomRow, Reader, Reply, Request, SearchQuery, StoredMessage, Target, Ticket,
    search_words,
};

/// The marker words and how often a message carries one: what the queries
/// look for, at rates from "one message in a hundred thousand" up.
const MARKERS: &[(&str, u32)] = &[("zanzibar", 100_000), ("deploy", 1_000), ("release", 100)];
const USERS: u32 = 1_000;
const PUBLIC_ROOMS: u32 = 40;
const PRIVATE_ROOMS: u32 = 10;
const VOCABULARY: usize = 20_000;
/// Messages per storage batch while building (the writer's batch bound).
const BATCH: usize = 1_024;
/// Timed runs of each query.
const RUNS: usize = 200;

/// A small deterministic generator (xorshift64*): the same database every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Pronounceable words: "the" and a few more common ones first, then
/// consonant-vowel syllables, so the index sees word-like tokens.
fn vocabulary() -> Vec<String> {
    let mut words: Vec<String> = [
        "the", "to", "and", "a", "is", "it", "you", "we", "on", "for",
    ]
    .iter()
    .map(|w| w.to_string())
    .collect();
    let (cons, vows) = (b"bcdfghjklmnprstvwz", b"aeiou");
    let mut i = 0usize;
    while words.len() < VOCABULARY {
        let mut w = String::new();
        let mut n = i;
        for _ in 0..3 {
            w.push(cons[n % cons.len()] as char);
            n /= cons.len();
            w.push(vows[n % vows.len()] as char);
            n /= vows.len();
        }
        w.push_str(&(i / 6000).to_string());
        if !MARKERS.iter().any(|(m, _)| *m == w) {
            words.push(w);
        }
        i += 1;
    }
    words
}

/// Cumulative Zipf weights (s = 1) over the vocabulary.
fn zipf(n: usize) -> Vec<f64> {
    let mut acc = 0.0;
    let mut c: Vec<f64> = (1..=n)
        .map(|r| {
            acc += 1.0 / r as f64;
            acc
        })
        .collect();
    let total = acc;
    for x in &mut c {
        *x /= total;
    }
    c
}

fn content(rng: &mut Rng, words: &[String], cdf: &[f64]) -> String {
    let n = 4 + rng.below(12) as usize;
    let mut out = Vec::with_capacity(n + 1);
    for _ in 0..n {
        let u = rng.unit();
        let i = cdf.partition_point(|&c| c < u).min(words.len() - 1);
        out.push(words[i].as_str());
    }
    for (m, rate) in MARKERS {
        if rng.below(*rate as u64) == 0 {
            let at = rng.below(out.len() as u64) as usize;
            out.insert(at, m);
        }
    }
    out.join(" ")
}

const TICKET: Ticket = Ticket {
    desk: hubbub::store::Desk::Http,
    seq: 0,
};

/// Fills `db` with `total` messages; returns messages stored per second.
fn build(db: &mut dyn Backend, total: u64) -> f64 {
    let words = vocabulary();
    let cdf = zipf(words.len());
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let setup: Vec<Request> = (1..=USERS)
        .map(|id| {
            Request::put_user(hubbub::store::UserRow {
                id,
                username: format!("user{id}"),
                email: format!("user{id}@example.org"),
                password: hubbub::store::PasswordHash {
                    iterations: 1,
                    salt: [0; 16],
                    hash: [0; 32],
                },
                created_ms: 0,
                last_seen_ms: None,
                account: Default::default(),
            })
        })
        .chain((0..PUBLIC_ROOMS).map(|r| Request::PutPublicRoom {
            name: format!("room{r}"),
            creator: 1,
        }))
        .chain((0..PRIVATE_ROOMS).map(|r| Request::PutPrivateRoom {
            ticket: TICKET,
            row: PrivateRoomRow {
                name: format!("private{r}"),
                owner: 1 + r,
                // Users 1-100 belong to every private room; the rest to none.
                members: (1..=100).collect(),
            },
        }))
        .collect();
    run_batch(db, &setup);
    let started = Instant::now();
    let mut id = 0u64;
    while id < total {
        let batch: Vec<Request> = (0..BATCH.min((total - id) as usize))
            .map(|_| {
                id += 1;
                let mut from = 1 + rng.below(USERS as u64) as u32;
                let kind = rng.below(100);
                if kind == 0 {
                    from = 2 + (id % 2) as u32;
                }
                let (room, to) = match kind {
                    // A busy conversation (users 2 and 3, 1% of all
                    // messages) among the random ones.
                    0 => (None, Some(5 - from)),
                    1..10 => (None, Some(1 + rng.below(USERS as u64) as u32)),
                    10..20 => (
                        Some(format!("private{}", rng.below(PRIVATE_ROOMS as u64))),
                        None,
                    ),
                    _ => (
                        Some(format!("room{}", rng.below(PUBLIC_ROOMS as u64))),
                        None,
                    ),
                };
                Request::PutMessage {
                    msg: StoredMessage {
                        id,
                        room,
                        from,
                        to,
                        content: content(&mut rng, &words, &cdf),
                        timestamp_ms: 1_768_473_000_000 + id as i64,
                        ..StoredMessage::default()
                    },
                    client_id: None,
                    mentions: Vec::new(),
                }
            })
            .collect();
        run_batch(db, &batch);
        if id % 100_000 < BATCH as u64 {
            eprintln!("  {id} messages stored");
        }
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn run_batch(db: &mut dyn Backend, batch: &[Request]) {
    db.begin().expect("begin");
    let mut out = Vec::new();
    db.execute_batch(batch, &mut out).expect("batch");
    db.commit().expect("commit");
}

/// One query kind: its name, the text, the user and the scope.
struct Case {
    name: &'static str,
    q: &'static str,
    user: u32,
    scope: Option<Target>,
    limit: usize,
}

fn cases() -> Vec<Case> {
    let room = |r: &str| Some(Target::Room(r.to_string()));
    vec![
        Case {
            name: "rare word (1 in 100k)",
            q: "zanzibar",
            user: 500,
            scope: None,
            limit: 20,
        },
        Case {
            name: "medium word (1 in 1k)",
            q: "deploy",
            user: 500,
            scope: None,
            limit: 20,
        },
        Case {
            name: "common word (1 in 100)",
            q: "release",
            user: 500,
            scope: None,
            limit: 20,
        },
        Case {
            name: "most common word",
            q: "the",
            user: 500,
            scope: None,
            limit: 20,
        },
        Case {
            name: "two words, any order",
            q: "release deploy",
            user: 500,
            scope: None,
            limit: 20,
        },
        Case {
            name: "common word, limit 100",
            q: "release",
            user: 500,
            scope: None,
            limit: 100,
        },
        Case {
            name: "scoped to one room",
            q: "release",
            user: 500,
            scope: room("room7"),
            limit: 20,
        },
        Case {
            name: "scoped, rare in the room",
            q: "deploy",
            user: 500,
            scope: room("room7"),
            limit: 20,
        },
        Case {
            name: "a quiet conversation",
            q: "the",
            user: 500,
            scope: Some(Target::Direct(500, 17)),
            limit: 20,
        },
        Case {
            name: "a busy conversation (1% of all)",
            q: "release",
            user: 2,
            scope: Some(Target::Direct(2, 3)),
            limit: 20,
        },
        Case {
            name: "member of private rooms",
            q: "deploy",
            user: 50,
            scope: None,
            limit: 20,
        },
        Case {
            name: "no match",
            q: "qqqq",
            user: 500,
            scope: None,
            limit: 20,
        },
    ]
}

fn run_cases(label: &str, reader: &mut dyn Reader) {
    println!(
        "\n{label}: search latency over {RUNS} runs each (median / p99), and matches returned"
    );
    println!("| query | median | p99 | returned |");
    println!("|---|---|---|---|");
    for case in cases() {
        let req = Request::Search {
            ticket: TICKET,
            query: SearchQuery {
                user: case.user,
                words: search_words(case.q, 8),
                scope: case.scope.clone(),
                limit: case.limit,
            },
        };
        let mut times: Vec<Duration> = Vec::with_capacity(RUNS);
        let mut returned = 0;
        for _ in 0..RUNS {
            let t = Instant::now();
            reader.begin().expect("begin");
            let reply = reader.read(&req).expect("search");
            reader.end();
            times.push(t.elapsed());
            if let Reply::History { messages, .. } = black_box(reply) {
                returned = messages.len();
            }
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {} | {:.3} ms | {:.3} ms | {returned} |",
            case.name,
            ms(times[RUNS / 2]),
            ms(times[RUNS * 99 / 100])
        );
    }
}

fn main() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| "search".contains(f.as_str())) {
        return;
    }
    let total: u64 = std::env::var("HUBBUB_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    if std::env::var("HUBBUB_BENCH_SQLITE").as_deref() != Ok("0") {
        bench_sqlite(total);
    }
    if let Ok(url) = std::env::var("HUBBUB_BENCH_POSTGRES") {
        bench_postgres(&url, total);
    }
}

fn bench_sqlite(total: u64) {
    let dir = std::env::temp_dir().join(format!("hubbub-search-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("search.db");
    let mut db = hubbub::store::sqlite::Sqlite::open(&path).expect("open sqlite");
    eprintln!("building {total} messages in {}", path.display());
    let rate = build(&mut db, total);
    let size = std::fs::metadata(&path).map_or(0, |m| m.len())
        + std::fs::metadata(dir.join("search.db-wal")).map_or(0, |m| m.len());
    println!(
        "SQLite: {total} messages stored at {rate:.0}/s in batches of {BATCH} (full-text index \
         included); database {:.0} MB",
        size as f64 / 1e6
    );
    let mut reader = db.reader().expect("reader").expect("a file has a reader");
    run_cases("SQLite (FTS5)", &mut *reader);
    drop(reader);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

fn bench_postgres(url: &str, total: u64) {
    let mut db = hubbub::store::postgres::Postgres::open(url).expect("open postgres");
    eprintln!("building {total} messages in PostgreSQL");
    let rate = build(&mut db, total);
    println!("PostgreSQL: {total} messages stored at {rate:.0}/s in batches of {BATCH}");
    // What autovacuum would have done by now on a live database: the
    // planner's statistics, so plans are those of a settled table.
    postgres::Client::connect(url, postgres::NoTls)
        .and_then(|mut c| c.batch_execute("VACUUM ANALYZE"))
        .expect("analyze");
    let mut reader = db.reader().expect("reader").expect("postgres has a reader");
    run_cases("PostgreSQL (tsvector + GIN)", &mut *reader);
}
