//! How the loop keeps accounts in step with storage, and what a change
//! means for the rest of the loop.
//!
//! Storage keeps a change log (`store::accounts`); the HTTP desk, which
//! owns account requests, polls it with a [`ChangeCursor`] and applies
//! what it reads (the user directory, the ended sessions, the settings),
//! as it applies the reply to a write of its own. What that means for
//! live connections is the hub's business: the desk raises
//! [`AccountEvent`]s, which the application hands to the hub, and the hub
//! raises [`PeerNote`]s (another node changed something, or used a
//! WebSocket ticket) back for the desk.

use std::collections::BTreeMap;

use crate::auth::tickets::TicketId;
use crate::config::ACCOUNT_GAP_WAIT;
use crate::store::{RoomNews, Sid, UserId};
use crate::users::Changed;

/// What the hub does about an account change (the directory and the
/// ended sessions hold it already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountEvent {
    /// A user's row changed: a ban closes their sockets (4003), a deletion
    /// closes them too (4001) and takes them out of their private rooms,
    /// and everyone sees what is shown of them (`user_updated`).
    User(Changed),
    /// These sessions of `user` ended: their sockets close (4001).
    SessionsEnded { user: UserId, sids: Vec<Sid> },
    /// `user`'s tokens without a session ended: the sockets they opened
    /// close (4001).
    LegacyEnded { user: UserId },
    /// A room was archived, opened again or deleted: who may see it is
    /// told, and a deleted room's connections leave it.
    Room(RoomNews),
    /// This node changed accounts: the other nodes should read the change
    /// log now rather than at their next poll.
    Announce,
    /// This node opened a socket with ticket `id`: it is used on every node.
    TicketUsed { id: TicketId, expires_ms: i64 },
}

/// What another node said that is the desk's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerNote {
    /// Accounts changed there: read the change log now.
    Poll,
    TicketUsed {
        id: TicketId,
        expires_ms: i64,
    },
}

/// Holes asked about at most; past it the oldest are given up (a hole
/// given up only delays what it held until the user changes again).
const MAX_GAPS: usize = 1024;

/// Where a node stands in the change log: everything up to `after` was
/// read, except the ids in `gaps`, which may still commit (PostgreSQL
/// hands ids out before commit, so they can commit out of order) and are
/// asked about until [`ACCOUNT_GAP_WAIT`] passes.
#[derive(Debug, Default)]
pub struct ChangeCursor {
    after: i64,
    /// Missing id → when to stop asking (Unix ms).
    gaps: BTreeMap<i64, i64>,
}

impl ChangeCursor {
    /// The cursor after `load`, which read the log's newest ids `recent`
    /// (ascending): the holes among them may be commits still under way.
    pub fn new(recent: &[i64], now_ms: i64) -> ChangeCursor {
        let mut c = ChangeCursor {
            after: recent.first().map_or(0, |f| f - 1),
            gaps: BTreeMap::new(),
        };
        c.saw(recent, now_ms);
        c
    }

    /// What to ask storage: after which id, and which holes below it.
    pub fn ask(&self) -> (i64, Vec<i64>) {
        (self.after, self.gaps.keys().copied().collect())
    }

    /// The ids a read returned (ascending or not).
    pub fn saw(&mut self, ids: &[i64], now_ms: i64) {
        let until = now_ms + ACCOUNT_GAP_WAIT.as_millis() as i64;
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        for id in ids {
            self.gaps.remove(&id);
            if id <= self.after {
                continue;
            }
            for missing in (self.after + 1)..id {
                if self.gaps.len() >= MAX_GAPS {
                    break;
                }
                self.gaps.insert(missing, until);
            }
            self.after = id;
        }
        while self.gaps.len() > MAX_GAPS {
            self.gaps.pop_first();
        }
    }

    /// Stops asking about holes that stayed open too long.
    pub fn expire(&mut self, now_ms: i64) {
        self.gaps.retain(|_, until| *until > now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: i64 = ACCOUNT_GAP_WAIT.as_millis() as i64;

    /// Ids read in order move the cursor; a hole is asked about until it
    /// appears, or until it has waited long enough.
    #[test]
    fn asks_again_for_holes() {
        let mut c = ChangeCursor::new(&[], 0);
        assert_eq!(c.ask(), (0, vec![]));
        c.saw(&[1, 2], 0);
        assert_eq!(c.ask(), (2, vec![]));
        c.saw(&[5, 3], 10);
        assert_eq!(c.ask(), (5, vec![4]), "4 may still commit");
        c.saw(&[4], 20);
        assert_eq!(c.ask(), (5, vec![]));
        c.saw(&[7], 30);
        c.expire(30 + WAIT - 1);
        assert_eq!(c.ask(), (7, vec![6]));
        c.expire(30 + WAIT);
        assert_eq!(c.ask(), (7, vec![]), "6 was rolled back: given up");
        c.saw(&[3, 7], 40);
        assert_eq!(c.ask(), (7, vec![]), "old ids read again change nothing");
    }

    /// After `load`, the holes among the newest ids it saw are asked about.
    #[test]
    fn starts_from_what_load_saw() {
        let c = ChangeCursor::new(&[10, 11, 13, 14], 0);
        assert_eq!(c.ask(), (14, vec![12]));
    }

    /// A jump of millions of ids keeps a bounded list of holes.
    #[test]
    fn holes_are_bounded() {
        let mut c = ChangeCursor::new(&[1], 0);
        c.saw(&[5_000_000], 0);
        let (after, gaps) = c.ask();
        assert_eq!(after, 5_000_000);
        assert!(gaps.len() <= MAX_GAPS);
    }
}
