//! Server-side sessions as the loop checks them. Every token names its
//! session (`sid`); a session that ended before its token expired is kept
//! here until then, so checking a token is one hash look-up, never a query
//! (the flood and the upgrade rate do not notice sessions exist).
//!
//! Only *ended* sessions are kept, not every open one: a token is good
//! unless its session ended (or its user is banned or gone). That is also
//! why a node of a cluster takes a token another node issued a moment ago,
//! before it could hear of the session; and an end is heard within the
//! contract's second (the writing node applies it from its write's reply,
//! the others from the change log, told on the bus to look now).

use std::collections::HashMap;

use ring::rand::{SecureRandom, SystemRandom};

use crate::store::{Ended, Sid, UserId};

/// A new session id from the system CSPRNG.
pub fn new_sid() -> Sid {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the system CSPRNG is available");
    Sid(u128::from_le_bytes(b))
}

/// Sessions that ended, until their tokens expire.
#[derive(Default)]
pub struct Revocations {
    /// Session → its user and when its token expires (Unix ms).
    ended: HashMap<Sid, (UserId, i64)>,
}

impl Revocations {
    pub fn new(ended: &[Ended]) -> Revocations {
        let mut r = Revocations::default();
        for e in ended {
            r.end(*e);
        }
        r
    }

    /// Records an ended session; true when it was not known ended here.
    pub fn end(&mut self, e: Ended) -> bool {
        self.ended.insert(e.sid, (e.user, e.expires_ms)).is_none()
    }

    pub fn is_ended(&self, sid: Sid) -> bool {
        self.ended.contains_key(&sid)
    }

    /// Forgets the sessions whose tokens have expired (they are refused as
    /// expired now). Called once a second; the table holds what ended in
    /// the last 24 h, so this walk is small and rare next to requests.
    pub fn sweep(&mut self, now_ms: i64) {
        self.ended.retain(|_, (_, exp)| *exp > now_ms);
    }

    /// Ended sessions kept (a `/metrics` gauge).
    pub fn len(&self) -> usize {
        self.ended.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ended session is refused until its token expires, then
    /// forgotten; a second end of it is not news.
    #[test]
    fn ended_until_expiry() {
        let e = Ended {
            sid: Sid(1),
            user: 7,
            expires_ms: 1_000,
        };
        let mut r = Revocations::new(&[]);
        assert!(!r.is_ended(Sid(1)));
        assert!(r.end(e));
        assert!(!r.end(e), "known already");
        assert!(r.is_ended(Sid(1)) && !r.is_ended(Sid(2)));
        r.sweep(999);
        assert!(r.is_ended(Sid(1)));
        r.sweep(1_000);
        assert!(!r.is_ended(Sid(1)) && r.len() == 0);
    }

    /// Session ids are 128 random bits: two are never the same.
    #[test]
    fn sids_differ() {
        assert_ne!(new_sid(), new_sid());
    }
}
