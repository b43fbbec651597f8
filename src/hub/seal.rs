//! Notes between nodes, authenticated: an HMAC-SHA256 with the cluster key
//! over every note's bytes, and the rule that turns away a captured note
//! published again. Pure: no I/O, no clock of its own.
//!
//! Anything that can publish on the cluster's Redis channel could otherwise
//! speak for a node: show users online, add members to private rooms,
//! deliver frames. So every note carries a tag ([`Seal::close`]) and a note
//! whose tag does not verify is dropped before a byte of it is decoded
//! ([`Seal::open`]); a node started without the key, or with another one,
//! is never heard as a member.
//!
//! **Replays.** A valid note captured off the bus and published again
//! verifies too. Most notes would do no harm twice (a message is dropped by
//! its `seq`, a `State` replaces itself), but a `Member` note replayed after
//! the member was removed would re-add them in every node's memory, and a
//! replayed `Hello` from a dead incarnation would bring a ghost peer back.
//! So each note is stamped (`wire::Stamp`) with its sender's incarnation, a
//! counter the sender increases for every note, and its send time, and
//! [`Replays::admit`] keeps, per incarnation heard recently, the newest
//! counter: a note at or below it is a replay. A sender forgotten (silent
//! for [`FORGET_AFTER_MS`]) cannot be replayed either, because a note older
//! than [`NOTE_MAX_AGE_MS`] is refused whoever sent it. The cost, admitted:
//! nodes' clocks must agree within `NOTE_MAX_AGE_MS` (NTP does far better);
//! a node whose clock is off is refused, loudly (see [`Rejections`]).
//! Redis delivers one publisher's notes in order, so "newer than the
//! newest" loses nothing that was not lost anyway.

use std::collections::HashMap;

use ring::hmac;

use super::wire::Stamp;
use crate::config::{CLUSTER_KEY_MIN, NOTE_MAX_AGE_MS, REJECT_LOG_INTERVAL_MS};

/// Bytes of the tag after every note.
pub const TAG_BYTES: usize = 32;

/// How long an incarnation's newest counter is kept after it was last
/// heard: past it, any note of its would be refused as too old anyway
/// (its clock may be ahead of this node's by up to `NOTE_MAX_AGE_MS`).
pub const FORGET_AFTER_MS: i64 = 3 * NOTE_MAX_AGE_MS;

/// The cluster key, ready to tag and check notes.
pub struct Seal {
    key: hmac::Key,
}

impl Seal {
    /// `None` for a key shorter than [`CLUSTER_KEY_MIN`] bytes.
    pub fn new(key: &[u8]) -> Option<Seal> {
        (key.len() >= CLUSTER_KEY_MIN).then(|| Seal {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        })
    }

    /// Appends the tag over `note`.
    pub fn close(&self, mut note: Vec<u8>) -> Vec<u8> {
        let tag = hmac::sign(&self.key, &note);
        note.extend_from_slice(tag.as_ref());
        note
    }

    /// The note inside `sealed` when its tag verifies (in constant time).
    pub fn open<'a>(&self, sealed: &'a [u8]) -> Option<&'a [u8]> {
        let split = sealed.len().checked_sub(TAG_BYTES)?;
        let (note, tag) = sealed.split_at(split);
        hmac::verify(&self.key, note, tag).ok()?;
        Some(note)
    }
}

/// Why a note from the bus was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Longer than `MAX_NOTE_BYTES`.
    TooLong,
    /// The tag does not verify: another key, no key, or altered bytes.
    Forged,
    /// Verified, but not a note this node can apply (see `wire::decode`).
    Malformed,
    /// Sent more than `NOTE_MAX_AGE_MS` away from this node's clock.
    Stale,
    /// Its counter is not past the newest heard from its sender.
    Replayed,
}

impl Rejected {
    fn says(self) -> &'static str {
        match self {
            Rejected::TooLong => "too long",
            Rejected::Forged => "failed verification (another key, or none)",
            Rejected::Malformed => "malformed",
            Rejected::Stale => "too old (or the sender's clock is off)",
            Rejected::Replayed => "a replay",
        }
    }
}

/// The newest counter heard from each incarnation, while it may matter.
#[derive(Default)]
pub struct Replays {
    newest: HashMap<u64, Heard>,
}

struct Heard {
    counter: u64,
    at_ms: i64,
}

impl Replays {
    /// Whether a note stamped `stamp` is fresh at `now`; if so, it is the
    /// newest of its sender from now on.
    pub fn admit(&mut self, stamp: &Stamp, now: i64) -> Result<(), Rejected> {
        if now.abs_diff(stamp.sent_ms) > NOTE_MAX_AGE_MS as u64 {
            return Err(Rejected::Stale);
        }
        match self.newest.get_mut(&stamp.node) {
            Some(h) if h.counter >= stamp.counter => Err(Rejected::Replayed),
            Some(h) => {
                h.counter = stamp.counter;
                h.at_ms = now;
                Ok(())
            }
            None => {
                let heard = Heard {
                    counter: stamp.counter,
                    at_ms: now,
                };
                self.newest.insert(stamp.node, heard);
                Ok(())
            }
        }
    }

    /// Drops senders silent for [`FORGET_AFTER_MS`] (the once-a-second tick).
    pub fn forget_silent(&mut self, now: i64) {
        self.newest.retain(|_, h| now - h.at_ms <= FORGET_AFTER_MS);
    }
}

/// Notes turned away, logged without letting a flood of them flood the
/// log: the first at once, then one line per [`REJECT_LOG_INTERVAL_MS`]
/// with how many there were.
#[derive(Default)]
pub struct Rejections {
    /// Every rejection since start (`/metrics`).
    total: u64,
    /// Rejections not yet logged.
    unlogged: u64,
    last: Option<Rejected>,
    logged_ms: Option<i64>,
}

impl Rejections {
    /// Counts a rejection; the line to log now, if it is time for one.
    pub fn count(&mut self, why: Rejected, detail: &str, now: i64) -> Option<String> {
        self.total += 1;
        self.unlogged += 1;
        self.last = Some(why);
        let due = self
            .logged_ms
            .is_none_or(|t| now - t >= REJECT_LOG_INTERVAL_MS);
        due.then(|| self.line(detail, now))
    }

    /// The summary of rejections not logged yet, when it is time (the tick).
    pub fn summary(&mut self, now: i64) -> Option<String> {
        let due = self
            .logged_ms
            .is_some_and(|t| now - t >= REJECT_LOG_INTERVAL_MS);
        (due && self.unlogged > 0).then(|| self.line("", now))
    }

    fn line(&mut self, detail: &str, now: i64) -> String {
        let n = std::mem::take(&mut self.unlogged);
        self.logged_ms = Some(now);
        let last = self.last.map_or("", Rejected::says);
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(": {detail}")
        };
        match n {
            1 => format!("cluster: dropped a note from the bus, {last}{detail}"),
            n => format!(
                "cluster: dropped {n} notes from the bus in {} s, the last {last}{detail}",
                REJECT_LOG_INTERVAL_MS / 1000
            ),
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn stamp(node: u64, counter: u64, sent_ms: i64) -> Stamp {
        Stamp {
            node,
            counter,
            sent_ms,
        }
    }

    /// A sealed note opens with the same key only: a flipped bit, a cut
    /// tag or another key fail; a short key is refused outright.
    #[test]
    fn only_the_same_key_opens_a_note() {
        let seal = Seal::new(KEY).unwrap();
        let sealed = seal.close(b"note".to_vec());
        assert_eq!(sealed.len(), 4 + TAG_BYTES);
        assert_eq!(seal.open(&sealed), Some(&b"note"[..]));
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(seal.open(&bad), None, "bit flipped at {i}");
        }
        assert_eq!(seal.open(&sealed[..sealed.len() - 1]), None);
        assert_eq!(seal.open(&sealed[..3]), None);
        let other = Seal::new(b"another key of at least 32 bytes!").unwrap();
        assert_eq!(other.open(&sealed), None);
        assert!(Seal::new(&KEY[..31]).is_none());
    }

    /// A note is fresh once per sender and counter, only within the age
    /// bound either way of this node's clock; a sender forgotten after its
    /// silence cannot be replayed, because its notes are stale by then.
    #[test]
    fn replays_and_stale_notes_are_refused() {
        let mut r = Replays::default();
        let now = 1_000_000;
        assert_eq!(r.admit(&stamp(7, 1, now), now), Ok(()));
        assert_eq!(r.admit(&stamp(7, 1, now), now), Err(Rejected::Replayed));
        assert_eq!(r.admit(&stamp(7, 3, now), now), Ok(()));
        assert_eq!(r.admit(&stamp(7, 2, now), now), Err(Rejected::Replayed));
        assert_eq!(r.admit(&stamp(8, 1, now), now), Ok(()), "another sender");
        let old = now - NOTE_MAX_AGE_MS - 1;
        assert_eq!(r.admit(&stamp(9, 1, old), now), Err(Rejected::Stale));
        let ahead = now + NOTE_MAX_AGE_MS + 1;
        assert_eq!(r.admit(&stamp(9, 1, ahead), now), Err(Rejected::Stale));
        let later = now + FORGET_AFTER_MS + 1;
        r.forget_silent(later);
        assert!(r.newest.is_empty());
        assert_eq!(r.admit(&stamp(7, 3, now), later), Err(Rejected::Stale));
    }

    /// The first rejection is logged at once; a flood after it makes one
    /// line per interval, saying how many.
    #[test]
    fn a_flood_of_rejections_logs_one_line_per_interval() {
        let mut r = Rejections::default();
        let t = 5_000;
        assert!(r.count(Rejected::Forged, "", t).is_some());
        for i in 0..10_000 {
            assert!(r.count(Rejected::Forged, "", t + i % 100).is_none());
        }
        assert!(r.summary(t + 100).is_none(), "not yet");
        let line = r.summary(t + REJECT_LOG_INTERVAL_MS).unwrap();
        assert!(line.contains("dropped 10000 notes"), "{line}");
        assert!(r.summary(t + 3 * REJECT_LOG_INTERVAL_MS).is_none());
        assert_eq!(r.total(), 10_001);
    }
}
