//! The password-hashing pool: a few threads that run PBKDF2 (hundreds of
//! milliseconds at the default 600000 iterations) so the loop never does,
//! and the loop-side queue that decides which job they run next.
//!
//! The loop submits a job with a ticket and goes on; a worker sends the
//! outcome back over a channel and rings the loop's Waker.
//!
//! **Fair queueing.** Jobs do not go to the workers as they come: they wait
//! here, on the loop thread, in one FIFO per client address, and
//! [`HashPool::dispatch`] hands the workers one job per idle thread, taking
//! the addresses in turn (round robin). So a login from a quiet address
//! waits for at most the jobs already running plus one job of each other
//! address with work queued, however many one address has queued: with one
//! hashing thread and one flooding address, about two hashes. Each address
//! may queue [`HASH_QUEUE_PER_CLIENT`] jobs and all of them [`HASH_QUEUE`];
//! past either, `submit` refuses (the desk answers 429 or 503).
//!
//! **Dead connections cost nothing.** Because a job stays in the loop's
//! queue until a thread is free for it, liveness is checked at the last
//! moment: `dispatch` takes the loop's `is_live` and skips jobs whose
//! connection has gone, handing their tickets back so the desk can forget
//! them (and release a signup's reserved name). Only the jobs already on a
//! thread — at most one per thread — can still run for nobody.
//!
//! Workers share one receiver behind a mutex; that lock is taken once per
//! job by an idle worker, never by the loop.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::password;
use super::throttle::ClientKey;
use crate::config::{HASH_QUEUE, HASH_QUEUE_PER_CLIENT};
use crate::outbox::ConnRef;
use crate::store::{PasswordHash, Ticket};

/// Work for a hashing thread.
pub enum Job {
    /// Hash a new password at the configured iteration count.
    Hash { password: String },
    /// Check a password against a stored (or decoy) hash.
    Verify {
        password: String,
        stored: PasswordHash,
    },
}

/// What a job produced.
#[derive(Debug)]
pub enum Outcome {
    Hashed(PasswordHash),
    Verified(bool),
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// This client already has [`HASH_QUEUE_PER_CLIENT`] jobs waiting.
    Client,
    /// [`HASH_QUEUE`] jobs are waiting in all, or the workers are gone.
    Pool,
}

/// A job `dispatch` took out of the queue without running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Its connection went away: forget the ticket, answer nobody.
    Gone(Ticket),
    /// The workers are gone (a panic): answer the request busy.
    NoWorkers(Ticket),
}

/// A job waiting for a thread.
struct Queued {
    ticket: Ticket,
    conn: ConnRef,
    job: Job,
}

/// Per-client FIFOs served in turn. `turns` holds each client with jobs
/// exactly once, so taking the next job is O(1) whatever the mix.
#[derive(Default)]
struct FairQueue {
    by_client: HashMap<ClientKey, VecDeque<Queued>>,
    turns: VecDeque<ClientKey>,
    len: usize,
}

impl FairQueue {
    fn push(&mut self, client: ClientKey, q: Queued) -> Result<(), Full> {
        if self.len >= HASH_QUEUE {
            return Err(Full::Pool);
        }
        let jobs = self.by_client.entry(client).or_default();
        if jobs.len() >= HASH_QUEUE_PER_CLIENT {
            return Err(Full::Client);
        }
        if jobs.is_empty() {
            self.turns.push_back(client);
        }
        jobs.push_back(q);
        self.len += 1;
        Ok(())
    }

    /// The oldest job of the client whose turn it is; that client goes to
    /// the back of the line if it has more.
    fn pop(&mut self) -> Option<Queued> {
        let client = self.turns.pop_front()?;
        let jobs = self.by_client.get_mut(&client)?;
        let q = jobs.pop_front();
        if jobs.is_empty() {
            self.by_client.remove(&client);
        } else {
            self.turns.push_back(client);
        }
        self.len -= 1;
        q
    }
}

pub struct HashPool {
    tx: Option<SyncSender<(Ticket, Job)>>,
    rx: Receiver<(Ticket, Outcome)>,
    workers: Vec<JoinHandle<()>>,
    /// Jobs on a thread (sent, not answered): at most `workers.len()`.
    running: usize,
    queue: FairQueue,
}

impl HashPool {
    pub fn spawn(
        threads: usize,
        iterations: u32,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> HashPool {
        let threads = threads.max(1);
        // Never more than one job per thread is sent, so this never blocks.
        let (tx, jobs) = mpsc::sync_channel::<(Ticket, Job)>(threads);
        let (done_tx, rx) = mpsc::channel();
        let jobs = Arc::new(Mutex::new(jobs));
        let wake = Arc::new(wake);
        let workers = (0..threads)
            .map(|i| {
                let jobs = jobs.clone();
                let done = done_tx.clone();
                let wake = wake.clone();
                std::thread::Builder::new()
                    .name(format!("hubbub-hash-{i}"))
                    .spawn(move || {
                        crate::priority::lower_current_thread(crate::priority::HASH_NICE);
                        loop {
                            let next = jobs.lock().map(|rx| rx.recv());
                            let Ok(Ok((ticket, job))) = next else { return };
                            let outcome = match job {
                                Job::Hash { password } => {
                                    Outcome::Hashed(password::hash(&password, iterations))
                                }
                                Job::Verify { password, stored } => {
                                    Outcome::Verified(password::verify(&password, &stored))
                                }
                            };
                            if done.send((ticket, outcome)).is_err() {
                                return;
                            }
                            wake();
                        }
                    })
                    .expect("spawn hashing thread")
            })
            .collect();
        HashPool {
            tx: Some(tx),
            rx,
            workers,
            running: 0,
            queue: FairQueue::default(),
        }
    }

    /// Queues a job of `client` for connection `conn`, without blocking.
    /// It reaches a thread on a later [`HashPool::dispatch`].
    pub fn submit(
        &mut self,
        ticket: Ticket,
        conn: ConnRef,
        client: ClientKey,
        job: Job,
    ) -> Result<(), Full> {
        if self.tx.is_none() {
            return Err(Full::Pool);
        }
        self.queue.push(client, Queued { ticket, conn, job })
    }

    /// Hands queued jobs to idle threads, clients in turn, skipping jobs
    /// whose connection is no longer live. Returns the skipped tickets
    /// (empty, without allocating, when none were).
    pub fn dispatch(&mut self, is_live: impl Fn(ConnRef) -> bool) -> Vec<Skipped> {
        let mut skipped = Vec::new();
        while self.running < self.workers.len() {
            let Some(q) = self.queue.pop() else { break };
            if !is_live(q.conn) {
                skipped.push(Skipped::Gone(q.ticket));
                continue;
            }
            let sent = self.tx.as_ref().map(|tx| tx.try_send((q.ticket, q.job)));
            match sent {
                Some(Ok(())) => self.running += 1,
                _ => skipped.push(Skipped::NoWorkers(q.ticket)),
            }
        }
        skipped
    }

    /// The next finished job, if any. Call [`HashPool::dispatch`] after
    /// taking outcomes: each one freed a thread.
    pub fn try_outcome(&mut self) -> Option<(Ticket, Outcome)> {
        let r = self.rx.try_recv().ok()?;
        self.running -= 1;
        Some(r)
    }

    /// Jobs queued or running (for `/metrics`).
    pub fn in_flight(&self) -> usize {
        self.queue.len + self.running
    }

    /// Jobs waiting for a thread (for `/metrics`).
    pub fn queued(&self) -> usize {
        self.queue.len
    }

    /// Stops the workers once they finish the job they hold; queued jobs
    /// are dropped (shutdown closes their connections anyway).
    pub fn join(&mut self) {
        self.tx = None;
        self.queue = FairQueue::default();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn ticket(seq: u64) -> Ticket {
        Ticket {
            desk: crate::store::Desk::Http,
            seq,
        }
    }

    fn conn(serial: u64) -> ConnRef {
        ConnRef {
            token: mio::Token(serial as usize),
            serial,
        }
    }

    fn client(last: u8) -> ClientKey {
        ClientKey::of(std::net::IpAddr::from([127, 0, 0, last]))
    }

    fn verify(seq: u64) -> Queued {
        Queued {
            ticket: ticket(seq),
            conn: conn(seq),
            job: Job::Hash {
                password: String::new(),
            },
        }
    }

    /// Jobs run off the calling thread, come back with their tickets, and ring
    /// the wake callback once each; no more jobs are on threads than threads.
    #[test]
    fn answers_with_tickets() {
        let rings = Arc::new(AtomicUsize::new(0));
        let r = rings.clone();
        let mut pool = HashPool::spawn(2, 1000, move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        let c = client(1);
        pool.submit(
            ticket(1),
            conn(1),
            c,
            Job::Hash {
                password: "password1".into(),
            },
        )
        .unwrap();
        let stored = password::hash("password2", 1000);
        pool.submit(
            ticket(2),
            conn(2),
            c,
            Job::Verify {
                password: "password2".into(),
                stored: stored.clone(),
            },
        )
        .unwrap();
        pool.submit(
            ticket(3),
            conn(3),
            c,
            Job::Verify {
                password: "nope".into(),
                stored,
            },
        )
        .unwrap();
        assert_eq!(pool.in_flight(), 3);
        assert!(pool.dispatch(|_| true).is_empty());
        assert_eq!((pool.running, pool.queued()), (2, 1), "one job per thread");
        let mut got = Vec::new();
        while got.len() < 3 {
            match pool.try_outcome() {
                Some(o) => {
                    got.push(o);
                    pool.dispatch(|_| true);
                }
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        got.sort_by_key(|(t, _)| t.seq);
        assert!(
            matches!(got[0], (t, Outcome::Hashed(ref h)) if h.iterations == 1000 && t.seq == 1)
        );
        assert!(matches!(got[1], (t, Outcome::Verified(true)) if t.seq == 2));
        assert!(matches!(got[2], (t, Outcome::Verified(false)) if t.seq == 3));
        assert_eq!(pool.in_flight(), 0);
        pool.join();
        assert_eq!(rings.load(Ordering::SeqCst), 3);
    }

    /// Clients are served in turn: one with many jobs queued first does not
    /// make the others wait behind all of them; each client's own jobs stay
    /// in order.
    #[test]
    fn serves_clients_in_turn() {
        let mut q = FairQueue::default();
        for seq in 1..=5 {
            q.push(client(2), verify(seq)).unwrap();
        }
        q.push(client(1), verify(10)).unwrap();
        q.push(client(3), verify(20)).unwrap();
        q.push(client(1), verify(11)).unwrap();
        let order: Vec<u64> = std::iter::from_fn(|| q.pop())
            .map(|j| j.ticket.seq)
            .collect();
        assert_eq!(order, vec![1, 10, 20, 2, 11, 3, 4, 5]);
        assert_eq!(q.len, 0);
        assert!(q.by_client.is_empty() && q.turns.is_empty());
    }

    /// One client may not queue more than its share, and nobody more than
    /// the whole queue.
    #[test]
    fn bounds_each_client_and_the_total() {
        let mut q = FairQueue::default();
        for seq in 0..HASH_QUEUE_PER_CLIENT as u64 {
            q.push(client(2), verify(seq)).unwrap();
        }
        assert_eq!(q.push(client(2), verify(99)), Err(Full::Client));
        q.push(client(3), verify(100)).expect("others still queue");
        let mut last = 4u8;
        let mut n = 0u64;
        let full = loop {
            match q.push(client(last), verify(1000 + n)) {
                Ok(()) => n += 1,
                Err(Full::Client) => last += 1,
                Err(Full::Pool) => break q.len,
            }
        };
        assert_eq!(full, HASH_QUEUE);
    }

    /// Jobs whose connection is gone are skipped when a thread frees up and
    /// handed back, never hashed; the live one behind them runs.
    #[test]
    fn skips_dead_connections() {
        let mut pool = HashPool::spawn(1, 1000, || {});
        for seq in 1..=3 {
            let job = Job::Hash {
                password: "password1".into(),
            };
            pool.submit(ticket(seq), conn(seq), client(seq as u8), job)
                .unwrap();
        }
        let skipped = pool.dispatch(|c| c.serial == 3);
        assert_eq!(
            skipped,
            vec![Skipped::Gone(ticket(1)), Skipped::Gone(ticket(2))]
        );
        assert_eq!(pool.in_flight(), 1);
        let (t, _) = loop {
            if let Some(o) = pool.try_outcome() {
                break o;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(t, ticket(3));
        pool.join();
    }
}
