//! WebSocket tickets (`POST /api/ws-ticket`): a browser cannot put its
//! token in a WebSocket's `Authorization` header, and a token in the URL
//! ends up in proxy access logs for 24 h. A ticket in its place opens one
//! socket, within 30 s ([`WS_TICKET_TTL`]), once.
//!
//! A ticket is self-contained and signed (HMAC-SHA256 under a key derived
//! from the token secret, so it can never pass for a token nor a token for
//! it): any node of a cluster can check it. "Once" is kept by remembering
//! used tickets until they expire, here and, through a note on the bus, on
//! every node. Admitted: a ticket used on two nodes within the bus's
//! delivery time (milliseconds) opens both; it still carries the session,
//! which must be alive, and dies within 30 s.

use std::collections::{HashMap, VecDeque};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::config::{WS_TICKET_TTL, WS_TICKETS_USED_MAX};
use crate::store::{Sid, UserId};

/// The ticket format's version, first byte of its payload.
const VERSION: u8 = 1;
/// version, id, user, has sid, sid, expiry.
const PAYLOAD: usize = 1 + 16 + 4 + 1 + 16 + 8;
/// Bytes of the tag kept: 128 bits, as truncated HMACs commonly are.
const TAG: usize = 16;

/// A ticket's id: 128 random bits.
pub type TicketId = [u8; 16];

/// What a good ticket opens a socket as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redeemed {
    pub id: TicketId,
    pub user: UserId,
    pub sid: Option<Sid>,
    pub expires_ms: i64,
}

/// Issues and redeems tickets; remembers the used ones.
pub struct Tickets {
    key: hmac::Key,
    used: HashMap<TicketId, i64>,
    /// Used tickets in the order they were used, to forget them.
    order: VecDeque<(TicketId, i64)>,
}

impl Tickets {
    /// Tickets signed under a key of their own, derived from the token secret.
    pub fn new(secret: &[u8]) -> Tickets {
        let root = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derived = hmac::sign(&root, b"hubbub websocket tickets v1");
        Tickets {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            used: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// A ticket for `user`'s session `sid`, and when it expires (Unix ms).
    pub fn issue(&self, user: UserId, sid: Option<Sid>, now_ms: i64) -> (String, i64) {
        let mut id = [0u8; 16];
        SystemRandom::new()
            .fill(&mut id)
            .expect("the system CSPRNG is available");
        let expires_ms = now_ms + WS_TICKET_TTL.as_millis() as i64;
        let mut p = Vec::with_capacity(PAYLOAD);
        p.push(VERSION);
        p.extend_from_slice(&id);
        p.extend_from_slice(&user.to_le_bytes());
        p.push(u8::from(sid.is_some()));
        p.extend_from_slice(&sid.map_or(0, |s| s.0).to_le_bytes());
        p.extend_from_slice(&expires_ms.to_le_bytes());
        let tag = hmac::sign(&self.key, &p);
        let text = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&p),
            URL_SAFE_NO_PAD.encode(&tag.as_ref()[..TAG])
        );
        (text, expires_ms)
    }

    /// Checks a ticket and uses it up. `None`: forged, malformed,
    /// expired, or used already.
    pub fn redeem(&mut self, text: &str, now_ms: i64) -> Option<Redeemed> {
        let r = self.check(text, now_ms)?;
        self.sweep(now_ms);
        if self.used.contains_key(&r.id) {
            return None;
        }
        self.mark_used(r.id, r.expires_ms);
        Some(r)
    }

    /// Another node used ticket `id`: it is used here too.
    pub fn mark_used(&mut self, id: TicketId, expires_ms: i64) {
        if self.used.insert(id, expires_ms).is_none() {
            self.order.push_back((id, expires_ms));
        }
        while self.order.len() > WS_TICKETS_USED_MAX {
            if let Some((old, _)) = self.order.pop_front() {
                self.used.remove(&old);
            }
        }
    }

    /// Forgets used tickets that have expired.
    pub fn sweep(&mut self, now_ms: i64) {
        while let Some(&(id, exp)) = self.order.front() {
            if exp > now_ms {
                break;
            }
            self.order.pop_front();
            self.used.remove(&id);
        }
    }

    fn check(&self, text: &str, now_ms: i64) -> Option<Redeemed> {
        let (payload, tag) = text.split_once('.')?;
        // The longest well-formed ticket, before decoding anything.
        if payload.len() > 2 * PAYLOAD || tag.len() > 2 * TAG {
            return None;
        }
        let p = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if p.len() != PAYLOAD || tag.len() != TAG || p[0] != VERSION {
            return None;
        }
        let good = hmac::sign(&self.key, &p);
        // Constant time, like `hmac::verify`, on the truncated tag.
        if !ring_eq(&good.as_ref()[..TAG], &tag) {
            return None;
        }
        let id: TicketId = p[1..17].try_into().ok()?;
        let user = UserId::from_le_bytes(p[17..21].try_into().ok()?);
        let sid = (p[21] == 1).then(|| Sid(u128::from_le_bytes(p[22..38].try_into().unwrap())));
        let expires_ms = i64::from_le_bytes(p[38..46].try_into().ok()?);
        (expires_ms > now_ms).then_some(Redeemed {
            id,
            user,
            sid,
            expires_ms,
        })
    }

    /// Used tickets remembered (a `/metrics` gauge).
    pub fn used(&self) -> usize {
        self.used.len()
    }
}

/// Compares two byte strings in time that depends only on their length.
fn ring_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ticket opens once, for its user and session, until it expires.
    #[test]
    fn redeems_once_within_its_life() {
        let mut t = Tickets::new(b"secret");
        let (text, exp) = t.issue(7, Some(Sid(9)), 1_000);
        assert_eq!(exp, 1_000 + WS_TICKET_TTL.as_millis() as i64);
        let r = t.redeem(&text, 1_001).expect("good");
        assert_eq!((r.user, r.sid), (7, Some(Sid(9))));
        assert_eq!(t.redeem(&text, 1_002), None, "used");
        let (late, exp) = t.issue(7, None, 1_000);
        assert_eq!(t.redeem(&late, exp), None, "expired");
        let (fresh, _) = t.issue(8, None, 1_000);
        assert_eq!(t.redeem(&fresh, 2_000).unwrap().sid, None);
    }

    /// Another secret's ticket, a changed byte, a token-shaped string or
    /// garbage are refused; a ticket used on another node is used here.
    #[test]
    fn refuses_what_it_did_not_sign() {
        let mut t = Tickets::new(b"secret");
        let (other, _) = Tickets::new(b"other").issue(7, None, 0);
        assert_eq!(t.redeem(&other, 1), None);
        let (text, _) = t.issue(7, None, 0);
        let mut bytes = text.clone().into_bytes();
        bytes[5] = if bytes[5] == b'A' { b'B' } else { b'A' };
        assert_eq!(t.redeem(&String::from_utf8(bytes).unwrap(), 1), None);
        for junk in [
            "",
            ".",
            "a.b",
            "eyJhbGciOiJIUzI1NiJ9.e30.sig",
            &"A".repeat(10_000),
        ] {
            assert_eq!(t.redeem(junk, 1), None, "{junk}");
        }
        let (elsewhere, exp) = t.issue(7, None, 0);
        let id = t.check(&elsewhere, 1).unwrap().id;
        t.mark_used(id, exp);
        assert_eq!(t.redeem(&elsewhere, 1), None);
        assert!(t.redeem(&text, 1).is_some());
    }

    /// Used tickets are forgotten once expired, and never more than the
    /// bound are kept.
    #[test]
    fn forgets_expired_and_stays_bounded() {
        let mut t = Tickets::new(b"secret");
        for i in 0..(WS_TICKETS_USED_MAX + 10) {
            t.mark_used((i as u128).to_le_bytes(), 100);
        }
        assert_eq!(t.used(), WS_TICKETS_USED_MAX);
        t.sweep(100);
        assert_eq!(t.used(), 0);
    }
}
