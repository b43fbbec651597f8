//! Web Push (RFC 8030, with RFC 8291 payloads and RFC 8292 VAPID): telling
//! a person about a mention or a private message when no tab of theirs is
//! open.
//!
//! The hub decides who is told what (`hub/push.rs`, paced per user and
//! conversation by `hub/pacing.rs`) and asks storage for the user's
//! subscriptions and setting; the application hands both here ([`Push`]),
//! which writes the payload once and queues one [`Job`] per subscription
//! on a [`Pusher`]. The real one ([`sender::Senders`]) sends on threads of
//! its own, encrypting there; the loop only queues and, through the
//! `Waker`, hears each [`Outcome`] back (a subscription the push service
//! says is gone is then deleted). Nothing here blocks the loop.
//!
//! | file | owns |
//! |---|---|
//! | `vapid.rs` | the server's key pair, kept like the token secret; the signed token; opaque topics |
//! | `endpoint.rs` | which endpoint URLs and addresses a push may go to (SSRF) |
//! | `message.rs` | what a push says (the user's privacy choice) and the encrypted request |
//! | `sender.rs` | the sending threads: bounded queues, timeouts, retries, answers |

pub mod endpoint;
pub mod message;
pub mod sender;
pub mod vapid;

use std::sync::Arc;

pub use message::{Notice, Reason};
pub use vapid::Vapid;

use crate::store::{PushProfile, PushSubscription};

/// One push to send: a payload, not yet encrypted, for one subscription.
pub struct Job {
    pub subscription: PushSubscription,
    /// The same bytes for each of the user's subscriptions.
    pub payload: Arc<[u8]>,
    pub topic: String,
}

/// What became of a push (each try that fails and will be tried again is
/// reported too, for `/metrics`).
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Retrying,
    /// The push service answered 404 or 410: the subscription should go.
    Gone {
        endpoint: String,
        auth: [u8; 16],
    },
    Failed,
}

/// The queue was full: the push is dropped, the loop goes on.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// Where pushes go: the seam between the loop and whatever sends them.
pub trait Pusher {
    /// Queues a push without blocking.
    fn send(&mut self, job: Job) -> Result<(), Full>;
    /// The next outcome, if one is ready.
    fn try_outcome(&mut self) -> Option<Outcome>;
}

/// The loop's door to push: the key and the pusher.
pub struct Push {
    vapid: Arc<Vapid>,
    pusher: Box<dyn Pusher>,
}

/// How many of a notice's pushes were queued, and how many dropped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Queued {
    pub queued: usize,
    pub dropped: usize,
}

impl Push {
    pub fn new(vapid: Arc<Vapid>, pusher: Box<dyn Pusher>) -> Push {
        Push { vapid, pusher }
    }

    /// The public key, for `GET /api/push/key`.
    pub fn public_key(&self) -> String {
        self.vapid.public_key()
    }

    /// Queues `notice` for each of the user's subscriptions, as their
    /// setting allows. The topic follows what the payload shows: with
    /// text hidden every push of the user shares one, as they share one
    /// notification.
    pub fn deliver(&mut self, notice: &Notice, profile: PushProfile) -> Queued {
        let mut q = Queued::default();
        if profile.subscriptions.is_empty() {
            return q;
        }
        let payload: Arc<[u8]> = message::payload(notice, profile.show_text).into();
        let key = if profile.show_text { &*notice.key } else { "" };
        let topic = self.vapid.topic(notice.user, key);
        for subscription in profile.subscriptions {
            let job = Job {
                subscription,
                payload: payload.clone(),
                topic: topic.clone(),
            };
            match self.pusher.send(job) {
                Ok(()) => q.queued += 1,
                Err(Full) => q.dropped += 1,
            }
        }
        q
    }

    /// The next outcome from the senders.
    pub fn try_outcome(&mut self) -> Option<Outcome> {
        self.pusher.try_outcome()
    }
}
