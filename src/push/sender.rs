//! The threads that send pushes, so the loop never waits on a push
//! service: [`Senders`] is the loop's end ([`Pusher`]), [`PUSH_SENDERS`]
//! threads the other.
//!
//! **Queues.** Each thread has its own bounded queue, [`PUSH_QUEUE`]
//! shared out; a push goes to the thread its `Topic` hashes to, so one
//! user's pushes about one conversation leave in order (a push service
//! keeps the newest of a topic), and a full queue refuses at once
//! (`Full`): the loop counts the push as dropped and goes on.
//!
//! **Requests.** A small blocking client (ureq, rustls with the webpki
//! roots) suits a thread that does one request at a time: no async runtime
//! for a few requests a second. Every request has a connect and a total
//! timeout ([`PUSH_CONNECT_TIMEOUT`], [`PUSH_REQUEST_TIMEOUT`]); proxies
//! from the environment are not used, redirects are never followed, and
//! the resolver lets a connection go only to addresses
//! `endpoint::address_allowed` passes (a name that resolves to a private
//! address is refused at connect time, not just when it was stored).
//!
//! **Answers.** 2xx: sent. 404 or 410: the subscription is gone (the
//! browser unsubscribed or the user cleared their data), reported so the
//! loop has it deleted. 429, 5xx or a failed connection: tried again after
//! 1, 2 and 4 s, or the service's `Retry-After` (at most
//! [`PUSH_RETRY_AFTER_MAX`]), [`PUSH_ATTEMPTS`] tries in all; the retries
//! wait in the thread's own heap (at most [`PUSH_RETRIES_HELD`]), so a push
//! that waits does not hold up the next. Anything else: failed, logged by
//! the service's origin (an endpoint URL is a capability: never logged).
//!
//! Shutdown drops the queues; each thread ends after its request in flight
//! and the retries it held are given up (a push is a courtesy, not a
//! message: the message itself is stored).

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use ureq::Agent;
use ureq::config::Config as AgentConfig;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use super::endpoint::address_allowed;
use super::message::{self, Unbuildable};
use super::vapid::Vapid;
use super::{Full, Job, Outcome, Pusher};
use crate::config::{
    PUSH_ATTEMPTS, PUSH_BACKOFF, PUSH_CONNECT_TIMEOUT, PUSH_QUEUE, PUSH_REQUEST_TIMEOUT,
    PUSH_RETRIES_HELD, PUSH_RETRY_AFTER_MAX, PUSH_SENDERS, VAPID_TOKEN_TTL,
};

/// Push services a thread keeps a signed token for at most (browsers use
/// a handful; endpoints are input, so the cache is bounded anyway).
const TOKENS_KEPT: usize = 64;
/// Bytes of a push service's answer read at most (it is logged on failure).
const ANSWER_BYTES: u64 = 4096;

/// What a sending thread needs besides its queue.
pub struct Setup {
    pub vapid: Arc<Vapid>,
    /// The VAPID `sub` (`--push-contact`).
    pub contact: String,
    /// `--push-allow-insecure`: loopback addresses too.
    pub allow_insecure: bool,
}

/// The loop's end of the sending threads.
pub struct Senders {
    queues: Vec<SyncSender<Job>>,
    outcomes: Receiver<Outcome>,
}

impl Senders {
    /// Starts [`PUSH_SENDERS`] threads; `wake` is rung after each outcome.
    pub fn spawn(setup: Setup, wake: impl Fn() + Send + Sync + 'static) -> Senders {
        let (done, outcomes) = mpsc::channel();
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(wake);
        let setup = Arc::new(setup);
        let queues = (0..PUSH_SENDERS)
            .map(|i| {
                let (tx, rx) = mpsc::sync_channel(PUSH_QUEUE / PUSH_SENDERS);
                let mut thread = Thread::new(setup.clone(), done.clone(), wake.clone());
                std::thread::Builder::new()
                    .name(format!("hubbub-push-{i}"))
                    .spawn(move || thread.run(rx))
                    .expect("spawn push thread");
                tx
            })
            .collect();
        Senders { queues, outcomes }
    }
}

impl Pusher for Senders {
    fn send(&mut self, job: Job) -> Result<(), Full> {
        let mut h = DefaultHasher::new();
        job.topic.hash(&mut h);
        let i = (h.finish() % self.queues.len() as u64) as usize;
        self.queues[i].try_send(job).map_err(|e| match e {
            TrySendError::Full(_) | TrySendError::Disconnected(_) => Full,
        })
    }

    fn try_outcome(&mut self) -> Option<Outcome> {
        self.outcomes.try_recv().ok()
    }
}

/// A push waiting to be tried again.
struct Held {
    due: Instant,
    /// Ties broken in the order they were held.
    order: u64,
    tries: u32,
    job: Job,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Held {
    /// Reversed, so the max-heap gives the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.order).cmp(&(self.due, self.order))
    }
}

/// What one try came to.
#[derive(Debug, PartialEq, Eq)]
enum Tried {
    Sent,
    Gone,
    /// Worth another try, after the service's `Retry-After` if it said.
    Again(Option<Duration>),
    Failed(String),
}

/// One sending thread's state.
struct Thread {
    setup: Arc<Setup>,
    agent: Agent,
    /// Signed tokens by audience, with their expiry (Unix seconds).
    tokens: HashMap<String, (String, u64)>,
    held: BinaryHeap<Held>,
    held_order: u64,
    done: Sender<Outcome>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Thread {
    fn new(setup: Arc<Setup>, done: Sender<Outcome>, wake: Arc<dyn Fn() + Send + Sync>) -> Thread {
        let config = AgentConfig::builder()
            .timeout_connect(Some(PUSH_CONNECT_TIMEOUT))
            .timeout_global(Some(PUSH_REQUEST_TIMEOUT))
            .max_redirects(0)
            .http_status_as_error(false)
            .proxy(None)
            .user_agent("hubbub")
            .build();
        let resolver = PermittedOnly {
            allow_insecure: setup.allow_insecure,
        };
        Thread {
            agent: Agent::with_parts(config, DefaultConnector::default(), resolver),
            setup,
            tokens: HashMap::new(),
            held: BinaryHeap::new(),
            held_order: 0,
            done,
            wake,
        }
    }

    /// Takes pushes and due retries until the queue closes.
    fn run(&mut self, jobs: Receiver<Job>) {
        loop {
            let now = Instant::now();
            while self.held.peek().is_some_and(|h| h.due <= now) {
                let Some(h) = self.held.pop() else { break };
                self.attempt(h.job, h.tries + 1);
            }
            let next = match self.held.peek() {
                Some(h) => jobs.recv_timeout(h.due.saturating_duration_since(Instant::now())),
                None => jobs.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match next {
                Ok(job) => self.attempt(job, 1),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Try number `tries` of `job`, and what follows from it.
    fn attempt(&mut self, job: Job, tries: u32) {
        let outcome = match self.send(&job) {
            Tried::Sent => Outcome::Sent,
            Tried::Gone => Outcome::Gone {
                endpoint: job.subscription.endpoint.clone(),
                auth: job.subscription.auth,
            },
            Tried::Again(after) if tries < PUSH_ATTEMPTS && self.held.len() < PUSH_RETRIES_HELD => {
                let delay = after.map_or(PUSH_BACKOFF * 2u32.pow(tries - 1), |d| {
                    d.min(PUSH_RETRY_AFTER_MAX)
                });
                self.held_order += 1;
                self.held.push(Held {
                    due: Instant::now() + delay,
                    order: self.held_order,
                    tries,
                    job,
                });
                Outcome::Retrying
            }
            Tried::Again(_) => {
                log::warn!(
                    "push to {}: given up after {tries} tries",
                    audience_of(&job)
                );
                Outcome::Failed
            }
            Tried::Failed(why) => {
                log::warn!("push to {}: {why}", audience_of(&job));
                Outcome::Failed
            }
        };
        if self.done.send(outcome).is_ok() {
            (self.wake)();
        }
    }

    /// One request.
    fn send(&mut self, job: &Job) -> Tried {
        let Some(audience) = audience(&job.subscription.endpoint) else {
            return Tried::Failed("the stored endpoint is not a URL".into());
        };
        let token = self.token(&audience);
        let authorization = self.setup.vapid.authorization(&token);
        let req =
            match message::request(&job.subscription, &job.payload, &authorization, &job.topic) {
                Ok(r) => r,
                Err(Unbuildable::Endpoint) => return Tried::Failed("bad endpoint".into()),
                Err(Unbuildable::Key) => return Tried::Failed("bad subscription key".into()),
                Err(Unbuildable::Encrypt(e)) => return Tried::Failed(format!("encryption: {e}")),
            };
        match self.agent.run(req) {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let answer = resp
                    .body_mut()
                    .with_config()
                    .limit(ANSWER_BYTES)
                    .read_to_string()
                    .unwrap_or_default();
                classify(status, retry_after, &answer)
            }
            Err(ureq::Error::HostNotFound) => {
                Tried::Failed("its host has no address a push may go to".into())
            }
            Err(e @ (ureq::Error::BadUri(_) | ureq::Error::TooManyRedirects)) => {
                Tried::Failed(e.to_string())
            }
            Err(e) => {
                log::debug!("push to {audience}: {e}");
                Tried::Again(None)
            }
        }
    }

    /// A token for `audience`, signed now or reused while an hour is left.
    fn token(&mut self, audience: &str) -> String {
        let now = crate::clock::now_ms().max(0) as u64 / 1000;
        if let Some((token, exp)) = self.tokens.get(audience)
            && *exp > now + 3600
        {
            return token.clone();
        }
        if self.tokens.len() >= TOKENS_KEPT {
            self.tokens.clear();
        }
        let exp = now + VAPID_TOKEN_TTL.as_secs();
        let token = self.setup.vapid.token(audience, exp, &self.setup.contact);
        self.tokens
            .insert(audience.to_string(), (token.clone(), exp));
        token
    }
}

/// What a push service's status means for the push.
fn classify(status: u16, retry_after: Option<Duration>, answer: &str) -> Tried {
    match status {
        200..=299 => Tried::Sent,
        404 | 410 => Tried::Gone,
        429 | 500..=599 => Tried::Again(retry_after),
        300..=399 => Tried::Failed(format!("{status}: redirects are not followed")),
        _ => Tried::Failed(format!(
            "{status} {}",
            answer.chars().take(200).collect::<String>()
        )),
    }
}

/// The VAPID audience of an endpoint: its origin.
fn audience(endpoint: &str) -> Option<String> {
    let uri: Uri = endpoint.parse().ok()?;
    Some(format!(
        "{}://{}",
        uri.scheme_str()?,
        uri.authority()?.as_str()
    ))
}

fn audience_of(job: &Job) -> String {
    audience(&job.subscription.endpoint).unwrap_or_else(|| "?".into())
}

/// The system resolver, keeping only the addresses a push may go to; none
/// left is "host not found".
#[derive(Debug)]
struct PermittedOnly {
    allow_insecure: bool,
}

impl Resolver for PermittedOnly {
    fn resolve(
        &self,
        uri: &Uri,
        config: &AgentConfig,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let all = DefaultResolver::default().resolve(uri, config, timeout)?;
        let mut kept = self.empty();
        for addr in all
            .iter()
            .filter(|a| address_allowed(a.ip(), self.allow_insecure))
        {
            kept.push(*addr);
        }
        if kept.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Success, gone, worth retrying and failed, as RFC 8030 and the push
    /// services answer; redirects are failures, never followed.
    #[test]
    fn statuses_mean_what_push_services_say() {
        assert_eq!(classify(201, None, ""), Tried::Sent);
        assert_eq!(classify(202, None, ""), Tried::Sent);
        assert_eq!(classify(404, None, ""), Tried::Gone);
        assert_eq!(classify(410, None, ""), Tried::Gone);
        let later = Some(Duration::from_secs(7));
        assert_eq!(classify(429, later, ""), Tried::Again(later));
        assert_eq!(classify(503, None, ""), Tried::Again(None));
        assert!(matches!(classify(301, None, ""), Tried::Failed(why) if why.contains("redirect")));
        assert!(
            matches!(classify(400, None, "bad key"), Tried::Failed(why) if why == "400 bad key")
        );
        assert!(matches!(classify(413, None, ""), Tried::Failed(_)));
    }

    /// The audience is the endpoint's origin, port included when given.
    #[test]
    fn audience_is_the_origin() {
        assert_eq!(
            audience("https://fcm.googleapis.com/fcm/send/x").as_deref(),
            Some("https://fcm.googleapis.com")
        );
        assert_eq!(
            audience("http://127.0.0.1:9000/push/1").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(audience("nope"), None);
    }

    /// Held retries come out earliest first, ties in the order held.
    #[test]
    fn held_retries_come_out_earliest_first() {
        let job = || Job {
            subscription: crate::store::PushSubscription {
                user: 1,
                endpoint: String::new(),
                p256dh: [0; 65],
                auth: [0; 16],
                created_ms: 0,
            },
            payload: Arc::from(&b""[..]),
            topic: String::new(),
        };
        let t = Instant::now();
        let mut heap = BinaryHeap::new();
        for (secs, order) in [(3, 1), (1, 2), (1, 3), (2, 4)] {
            heap.push(Held {
                due: t + Duration::from_secs(secs),
                order,
                tries: 1,
                job: job(),
            });
        }
        let out: Vec<u64> = std::iter::from_fn(|| heap.pop().map(|h| h.order)).collect();
        assert_eq!(out, [2, 3, 4, 1]);
    }
}
