//! The password-hashing pool: a few threads that run PBKDF2 (hundreds of
//! milliseconds at the default 600000 iterations) so the loop never does.
//!
//! The loop submits a job with a ticket and goes on; a worker sends the
//! outcome back over a channel and rings the loop's Waker. The job queue is
//! bounded: when it is full the loop answers 503 rather than wait.
//! Workers share one receiver behind a mutex; that lock is taken once per
//! job by an idle worker, never by the loop.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::password;
use crate::config::HASH_QUEUE;
use crate::store::{Busy, PasswordHash, Ticket};

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

pub struct HashPool {
    tx: Option<SyncSender<(Ticket, Job)>>,
    rx: Receiver<(Ticket, Outcome)>,
    workers: Vec<JoinHandle<()>>,
    /// Jobs submitted and not yet answered (for `/metrics`).
    in_flight: usize,
}

impl HashPool {
    pub fn spawn(
        threads: usize,
        iterations: u32,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> HashPool {
        let (tx, jobs) = mpsc::sync_channel::<(Ticket, Job)>(HASH_QUEUE);
        let (done_tx, rx) = mpsc::channel();
        let jobs = Arc::new(Mutex::new(jobs));
        let wake = Arc::new(wake);
        let workers = (0..threads.max(1))
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
            in_flight: 0,
        }
    }

    /// Queues a job without blocking.
    pub fn submit(&mut self, ticket: Ticket, job: Job) -> Result<(), Busy> {
        let tx = self.tx.as_ref().ok_or(Busy)?;
        tx.try_send((ticket, job)).map_err(|_| Busy)?;
        self.in_flight += 1;
        Ok(())
    }

    /// The next finished job, if any.
    pub fn try_outcome(&mut self) -> Option<(Ticket, Outcome)> {
        let r = self.rx.try_recv().ok()?;
        self.in_flight -= 1;
        Some(r)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Stops the workers once they finish what they hold.
    pub fn join(&mut self) {
        self.tx = None;
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

    /// Jobs run off the calling thread, come back with their tickets, and ring
    /// the wake callback once each.
    #[test]
    fn answers_with_tickets() {
        let rings = Arc::new(AtomicUsize::new(0));
        let r = rings.clone();
        let mut pool = HashPool::spawn(2, 1000, move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        pool.submit(
            ticket(1),
            Job::Hash {
                password: "password1".into(),
            },
        )
        .unwrap();
        let stored = password::hash("password2", 1000);
        pool.submit(
            ticket(2),
            Job::Verify {
                password: "password2".into(),
                stored: stored.clone(),
            },
        )
        .unwrap();
        pool.submit(
            ticket(3),
            Job::Verify {
                password: "nope".into(),
                stored,
            },
        )
        .unwrap();
        let mut got = Vec::new();
        while got.len() < 3 {
            match pool.try_outcome() {
                Some(o) => got.push(o),
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
}
