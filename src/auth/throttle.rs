//! Who may start password work now: token buckets in front of the hashing
//! pool, owned by the loop (plain maps, no locks; the HTTP desk asks before
//! it queues a job and tells the outcome after).
//!
//! Two budgets, because there are two attacks:
//!
//! - **Hash work per client address** (`--hash-work-rate`, `--hash-work-burst`):
//!   PBKDF2 is the one expensive thing an anonymous client can make the
//!   server do, so each address gets a share of it. The unit is iterations,
//!   not requests: a job costs what it will run (the configured count for a
//!   signup, the stored hash's count for a login, the same count for the
//!   unknown-user decoy), so the budget tracks CPU time. A 1000-iteration
//!   test setup is effectively unthrottled; a 600000-iteration flood is held
//!   to one hash a second after a burst of ten. IPv6 clients count per /64
//!   ([`ClientKey`]).
//! - **Failed logins per username** ([`LOGIN_FAILURE_BURST`], one more per
//!   [`LOGIN_FAILURE_REFILL`]): guessing one account's password from many
//!   addresses, which no per-address budget sees. Every well-formed name is
//!   tracked, existing or not, so a 429 says nothing about which accounts
//!   exist. A token is *reserved* when the login is admitted and given back
//!   when the password was right (or the job never ran), so a crowd of
//!   concurrent guesses cannot all slip in before the first failure lands.
//!
//! An exhausted username bucket must not let one address lock its victim out
//! (the contract: one flooding address cannot delay another's login by more
//! than a few seconds). So the entry remembers up to [`LOGIN_GUESSERS_MAX`]
//! addresses that failed on it: only they are refused; any other address
//! gets one try at a time (a newcomer is noted as a guesser while its try
//! runs and forgiven if the password was right). Once that many distinct
//! addresses have failed, it is a distributed attack and every address waits
//! for the refill: the account is slowed down, not opened up. That is the
//! trade-off every username throttle makes; ours only applies it when more
//! than a handful of addresses are guessing.
//!
//! Memory is bounded: a full bucket is the same as no bucket, so a username
//! whose login succeeded is forgotten at once, and full buckets are swept
//! out whenever a table has doubled since its last sweep (amortized O(1) per
//! insert, so a table stays within about twice the keys active in the last
//! refill period). At [`THROTTLE_TABLE_MAX`] entries still live, new
//! addresses share one overflow bucket and new usernames go untracked
//! (filling the table takes that many distinct keys failing within one
//! refill period, which the per-address budget makes slow).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::{
    IPV6_CLIENT_PREFIX, LOGIN_FAILURE_BURST, LOGIN_FAILURE_REFILL, LOGIN_GUESSERS_MAX,
    THROTTLE_TABLE_MAX,
};

/// Who a per-address limit counts: an IPv4 address, or an IPv6 prefix of
/// [`IPV6_CLIENT_PREFIX`] bits (IPv4-mapped IPv6 is IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let mask = !0u128 << (128 - IPV6_CLIENT_PREFIX);
                ClientKey(IpAddr::V6((u128::from(v6) & mask).into()))
            }
            v4 => ClientKey(v4),
        }
    }
}

/// A token bucket: `level` units at instant `at`, refilled continuously at
/// a rate, never above a burst (both given by the owner, so one struct
/// serves both budgets).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            level: burst,
            at: now,
        }
    }

    fn level(&self, now: Instant, rate: f64, burst: f64) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        (self.level + rate * dt).min(burst)
    }

    /// How long until `cost` fits (zero: it fits now).
    fn wait(&self, now: Instant, cost: f64, rate: f64, burst: f64) -> Duration {
        let missing = cost - self.level(now, rate, burst);
        if missing <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(missing / rate)
        }
    }

    /// Adds `n` (negative: takes) after refilling to `now`.
    fn add(&mut self, n: f64, now: Instant, rate: f64, burst: f64) {
        self.level = (self.level(now, rate, burst) + n).min(burst);
        self.at = now;
    }

    fn is_full(&self, now: Instant, rate: f64, burst: f64) -> bool {
        self.level(now, rate, burst) >= burst
    }
}

/// One username's failed logins.
#[derive(Debug)]
struct Guessed {
    failures: Bucket,
    /// Addresses that failed (or are trying) while the bucket was low; at
    /// most [`LOGIN_GUESSERS_MAX`]. Cleared when the bucket is full again.
    guessers: Vec<ClientKey>,
}

/// Which budget refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// The client address's hash work (or its queue in the pool).
    Address,
    /// The username's failed logins.
    Username,
}

/// A request that may not start hashing now, and when it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub by: By,
    pub retry_after: Duration,
}

impl Refused {
    /// The `Retry-After` value: whole seconds, at least 1, rounded up so a
    /// client that waits exactly that long finds room.
    pub fn retry_after_secs(&self) -> u64 {
        (self.retry_after.as_secs_f64().ceil() as u64).max(1)
    }
}

/// What an admitted login holds until it is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginPass {
    /// The username's table key (`None`: not tracked).
    name: Option<Box<str>>,
    /// A failure token was taken and is owed back unless the login fails.
    reserved: bool,
}

pub struct Throttle {
    /// Iterations per second and at once per client; rate 0 = no budget.
    work_rate: f64,
    work_burst: f64,
    clients: HashMap<ClientKey, Bucket>,
    /// Shared by new clients while `clients` is full.
    overflow: Bucket,
    names: HashMap<Box<str>, Guessed>,
    /// Entries per table at most ([`THROTTLE_TABLE_MAX`]; smaller in tests).
    capacity: usize,
    /// Per table (0 clients, 1 names): the size at which to sweep next,
    /// twice what the last sweep left.
    next_sweep: [usize; 2],
    /// When a table at capacity was last swept: then at most once a second,
    /// so a table full of live entries is not walked on every request.
    swept_full: [Option<Instant>; 2],
}

/// Failed logins per second a username regains.
fn failure_rate() -> f64 {
    1.0 / LOGIN_FAILURE_REFILL.as_secs_f64()
}
const FAILURE_BURST: f64 = LOGIN_FAILURE_BURST as f64;
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Tables this small are never swept early.
const SWEEP_FLOOR: usize = 1024;

impl Throttle {
    pub fn new(work_rate: u64, work_burst: u64) -> Throttle {
        Throttle::with_capacity(work_rate, work_burst, THROTTLE_TABLE_MAX)
    }

    fn with_capacity(work_rate: u64, work_burst: u64, capacity: usize) -> Throttle {
        // A burst below the rate would refuse a job that the rate allows.
        let work_burst = work_burst.max(work_rate) as f64;
        Throttle {
            work_rate: work_rate as f64,
            work_burst,
            clients: HashMap::new(),
            overflow: Bucket::full(work_burst, Instant::now()),
            names: HashMap::new(),
            capacity,
            next_sweep: [SWEEP_FLOOR; 2],
            swept_full: [None; 2],
        }
    }

    /// A job's cost in the budget: its iterations, capped at the burst so
    /// any job fits a full bucket.
    fn cost(&self, iterations: u32) -> f64 {
        (iterations as f64).min(self.work_burst)
    }

    /// May `client` start a job of `iterations` now (and, for a login, try
    /// `username`)? If so, both budgets are charged at once; a login's pass
    /// goes back to [`Throttle::settle_login`] with the outcome.
    pub fn admit(
        &mut self,
        client: ClientKey,
        iterations: u32,
        username: Option<&str>,
        now: Instant,
    ) -> Result<LoginPass, Refused> {
        let cost = self.cost(iterations);
        if self.work_rate > 0.0 {
            let wait = self.client_bucket(client).map_or(Duration::ZERO, |b| {
                b.wait(now, cost, self.work_rate, self.work_burst)
            });
            if !wait.is_zero() {
                return Err(Refused {
                    by: By::Address,
                    retry_after: wait,
                });
            }
        }
        let pass = match username.and_then(name_key) {
            None => LoginPass {
                name: None,
                reserved: false,
            },
            Some(key) => self.admit_name(key, client, now)?,
        };
        if self.work_rate > 0.0 {
            let (rate, burst) = (self.work_rate, self.work_burst);
            self.client_bucket_mut(client, now)
                .add(-cost, now, rate, burst);
        }
        Ok(pass)
    }

    /// The username half of [`Throttle::admit`].
    fn admit_name(
        &mut self,
        key: Box<str>,
        client: ClientKey,
        now: Instant,
    ) -> Result<LoginPass, Refused> {
        let rate = failure_rate();
        if !self.names.contains_key(&key) && !self.make_room(1, now) {
            // Untracked: the table is full of live entries.
            return Ok(LoginPass {
                name: None,
                reserved: false,
            });
        }
        let e = self.names.entry(key.clone()).or_insert_with(|| Guessed {
            failures: Bucket::full(FAILURE_BURST, now),
            guessers: Vec::new(),
        });
        if e.failures.is_full(now, rate, FAILURE_BURST) {
            e.guessers.clear();
        }
        let wait = e.failures.wait(now, 1.0, rate, FAILURE_BURST);
        if wait.is_zero() {
            e.failures.add(-1.0, now, rate, FAILURE_BURST);
            return Ok(LoginPass {
                name: Some(key),
                reserved: true,
            });
        }
        if e.guessers.contains(&client) || e.guessers.len() >= LOGIN_GUESSERS_MAX {
            return Err(Refused {
                by: By::Username,
                retry_after: wait,
            });
        }
        // A newcomer to an exhausted account: one try at a time.
        e.guessers.push(client);
        Ok(LoginPass {
            name: Some(key),
            reserved: false,
        })
    }

    /// A login's outcome: `Some(true)` right password, `Some(false)` wrong,
    /// `None` never hashed (its connection went away). Only a failure keeps
    /// what it took; a right password also forgives a newcomer.
    pub fn settle_login(
        &mut self,
        pass: LoginPass,
        client: ClientKey,
        ok: Option<bool>,
        now: Instant,
    ) {
        let Some(key) = pass.name else { return };
        let Some(e) = self.names.get_mut(&key) else {
            return;
        };
        let failed = ok == Some(false);
        if pass.reserved && !failed {
            e.failures.add(1.0, now, failure_rate(), FAILURE_BURST);
        }
        if failed && !e.guessers.contains(&client) && e.guessers.len() < LOGIN_GUESSERS_MAX {
            e.guessers.push(client);
        }
        if !failed && !pass.reserved {
            e.guessers.retain(|g| *g != client);
        }
        // An untouched account (every login so far right) needs no entry.
        if e.guessers.is_empty() && e.failures.is_full(now, failure_rate(), FAILURE_BURST) {
            self.names.remove(&key);
        }
    }

    fn client_bucket(&self, client: ClientKey) -> Option<&Bucket> {
        self.clients
            .get(&client)
            .or((self.clients.len() >= self.capacity).then_some(&self.overflow))
    }

    fn client_bucket_mut(&mut self, client: ClientKey, now: Instant) -> &mut Bucket {
        if !self.clients.contains_key(&client) && !self.make_room(0, now) {
            return &mut self.overflow;
        }
        let burst = self.work_burst;
        self.clients
            .entry(client)
            .or_insert_with(|| Bucket::full(burst, now))
    }

    /// Whether table `which` (0 clients, 1 names) has room for one more
    /// entry, sweeping out full buckets when it has doubled or is at capacity.
    fn make_room(&mut self, which: usize, now: Instant) -> bool {
        let len = [self.clients.len(), self.names.len()][which];
        if len < self.capacity.min(self.next_sweep[which]) {
            return true;
        }
        if len >= self.capacity {
            let recent = self.swept_full[which]
                .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY);
            if recent {
                return false;
            }
            self.swept_full[which] = Some(now);
        }
        let left = if which == 0 {
            let (rate, burst) = (self.work_rate, self.work_burst);
            self.clients.retain(|_, b| !b.is_full(now, rate, burst));
            self.clients.len()
        } else {
            let rate = failure_rate();
            self.names
                .retain(|_, e| !e.failures.is_full(now, rate, FAILURE_BURST));
            self.names.len()
        };
        self.next_sweep[which] = (2 * left).max(SWEEP_FLOOR);
        left < self.capacity
    }

    /// Buckets kept (a `/metrics` gauge).
    pub fn entries(&self) -> usize {
        self.clients.len() + self.names.len()
    }
}

/// The table key of a name as typed: the account it may reach under the
/// username rule, also through a look-alike spelling (`users::throttle_key`),
/// so the lockout counts the account, not the spelling; names that reach
/// no possible account are not tracked, there is nothing to guess.
fn name_key(name: &str) -> Option<Box<str>> {
    crate::users::throttle_key(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HASH_WORK_BURST, HASH_WORK_RATE, PBKDF2_DEFAULT};

    fn ip(s: &str) -> ClientKey {
        ClientKey::of(s.parse().unwrap())
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// At the default budget, 1000-iteration jobs (tests, benchmarks) run by
    /// the thousand from one address, while default-strength jobs stop after
    /// the burst of ten with the exact time until the next fits.
    #[test]
    fn budgets_iterations_not_attempts() {
        let now = Instant::now();
        let mut t = Throttle::new(HASH_WORK_RATE, HASH_WORK_BURST);
        let a = ip("127.0.0.1");
        for _ in 0..5000 {
            t.admit(a, 1000, None, now).expect("cheap jobs pass");
        }
        let b = ip("127.0.0.2");
        for _ in 0..10 {
            t.admit(b, PBKDF2_DEFAULT, None, now).unwrap();
        }
        let refused = t.admit(b, PBKDF2_DEFAULT, None, now).unwrap_err();
        assert_eq!(refused.by, By::Address);
        assert!((refused.retry_after.as_secs_f64() - 1.0).abs() < 1e-6);
        assert_eq!(refused.retry_after_secs(), 1);
        // Half a second later half a hash is back: the wait is the rest.
        let half = t
            .admit(b, PBKDF2_DEFAULT, None, now + secs(0.5))
            .unwrap_err();
        assert!((half.retry_after.as_secs_f64() - 0.5).abs() < 1e-6);
        assert_eq!(half.retry_after_secs(), 1, "rounded up, never 0");
        t.admit(b, PBKDF2_DEFAULT, None, now + secs(1.0))
            .expect("refilled");
        assert!(t.admit(a, 1000, None, now).is_ok(), "a's budget is its own");
    }

    /// A job dearer than the whole burst still runs from a full bucket (and
    /// empties it); rate 0 turns the budget off.
    #[test]
    fn huge_jobs_fit_and_zero_is_off() {
        let now = Instant::now();
        let mut t = Throttle::new(1000, 2000);
        t.admit(ip("10.0.0.1"), 5_000_000, None, now).unwrap();
        let r = t.admit(ip("10.0.0.1"), 1, None, now).unwrap_err();
        assert!((r.retry_after.as_secs_f64() - 0.001).abs() < 1e-9);
        let mut off = Throttle::new(0, 0);
        for _ in 0..1000 {
            off.admit(ip("10.0.0.1"), PBKDF2_DEFAULT, None, now)
                .unwrap();
        }
    }

    /// IPv6 clients are one per /64; IPv4-mapped IPv6 is the IPv4 client.
    #[test]
    fn keys_ipv6_by_prefix() {
        assert_eq!(ip("2001:db8:1:2:aaaa::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:127.0.0.2"), ip("127.0.0.2"));
        assert_ne!(ip("127.0.0.2"), ip("127.0.0.3"));
    }

    /// Failures on one username from one address exhaust it for that address
    /// only: another address still gets one try at a time, and a right
    /// password gives its try back. A right password from the guesser's
    /// reservation costs nothing either.
    #[test]
    fn one_guesser_cannot_lock_out_the_owner() {
        let now = Instant::now();
        let mut t = Throttle::new(0, 0);
        let (evil, owner) = (ip("127.0.0.2"), ip("127.0.0.1"));
        for _ in 0..LOGIN_FAILURE_BURST {
            let p = t.admit(evil, 1000, Some("Alice"), now).unwrap();
            t.settle_login(p, evil, Some(false), now);
        }
        let r = t.admit(evil, 1000, Some("alice"), now).unwrap_err();
        assert_eq!(r.by, By::Username);
        assert!((r.retry_after.as_secs_f64() - LOGIN_FAILURE_REFILL.as_secs_f64()).abs() < 1e-6);
        let p = t
            .admit(owner, 1000, Some("alice"), now)
            .expect("owner tries");
        assert!(
            t.admit(owner, 1000, Some("alice"), now).is_err(),
            "one try at a time"
        );
        t.settle_login(p, owner, Some(true), now);
        let p = t.admit(owner, 1000, Some("alice"), now).expect("forgiven");
        t.settle_login(p, owner, None, now);
        // Other names are untouched; names that cannot exist are untracked;
        // a right password leaves no entry behind.
        let p = t.admit(evil, 1000, Some("bob"), now).unwrap();
        t.settle_login(p, evil, Some(true), now);
        let p = t.admit(evil, 1000, Some("carol"), now).unwrap();
        let long = "x".repeat(60_000);
        for _ in 0..20 {
            let p = t.admit(evil, 1000, Some(&long), now).unwrap();
            t.settle_login(p, evil, Some(false), now);
        }
        assert_eq!(t.entries(), 2, "alice and carol");
        t.settle_login(p, evil, None, now);
        assert_eq!(t.entries(), 1, "carol's login never ran: forgotten");
        // After one refill period anyone may try again.
        t.admit(evil, 1000, Some("alice"), now + LOGIN_FAILURE_REFILL)
            .unwrap();
    }

    /// Once [`LOGIN_GUESSERS_MAX`] addresses have failed on an exhausted
    /// username, every address waits, the owner too (a distributed attack);
    /// reservations cannot be outrun by concurrent guesses.
    #[test]
    fn many_guessers_slow_everyone() {
        let now = Instant::now();
        let mut t = Throttle::new(0, 0);
        let guessers: Vec<ClientKey> = (0..LOGIN_GUESSERS_MAX)
            .map(|i| ip(&format!("127.0.1.{i}")))
            .collect();
        // All the burst admitted at once, before any failure is known.
        let passes: Vec<_> = (0..LOGIN_FAILURE_BURST as usize)
            .map(|i| {
                let g = guessers[i % guessers.len()];
                (g, t.admit(g, 1000, Some("alice"), now).unwrap())
            })
            .collect();
        for (g, p) in passes {
            t.settle_login(p, g, Some(false), now);
        }
        let r = t
            .admit(ip("127.0.0.1"), 1000, Some("alice"), now)
            .unwrap_err();
        assert_eq!(r.by, By::Username);
    }

    /// The tables never pass their capacity: full buckets are swept out,
    /// and past that new clients share the overflow bucket.
    #[test]
    fn tables_are_bounded() {
        let now = Instant::now();
        let mut t = Throttle::with_capacity(1000, 1000, 8);
        for i in 0..8 {
            t.admit(ip(&format!("10.0.0.{i}")), 1000, None, now)
                .unwrap();
        }
        // Full of empty buckets: newcomers share one.
        t.admit(ip("10.0.1.1"), 1000, None, now).unwrap();
        let r = t.admit(ip("10.0.1.2"), 1000, None, now).unwrap_err();
        assert_eq!(r.by, By::Address);
        assert_eq!(t.clients.len(), 8);
        // A second later they are full again, so they are swept for newcomers.
        let later = now + secs(1.0);
        t.admit(ip("10.0.1.3"), 1000, None, later).unwrap();
        assert_eq!(t.clients.len(), 1);
    }

    /// Well below capacity, a table that doubled is swept too, so it holds
    /// about the clients of the last refill period, not every one ever seen.
    #[test]
    fn tables_are_swept_as_they_grow() {
        let now = Instant::now();
        let mut t = Throttle::new(1000, 1000);
        for i in 0..SWEEP_FLOOR as u32 {
            t.admit(
                ClientKey::of(std::net::Ipv4Addr::from((10 << 24) | i).into()),
                1000,
                None,
                now,
            )
            .unwrap();
        }
        assert_eq!(t.entries(), SWEEP_FLOOR);
        t.admit(ip("11.0.0.1"), 1000, None, now + secs(1.0))
            .unwrap();
        assert_eq!(t.entries(), 1);
    }
}
