//! The pacing part: at most one push per user and conversation per
//! [`PUSH_INTERVAL_MS`]. The first message of a quiet conversation is
//! pushed at once; what comes during the interval is held, the newest
//! replacing the one before and the count adding up, and goes out as one
//! push when the interval ends ("and 4 more"). The service worker collapses
//! by conversation and push services by `Topic`; this keeps a busy room
//! from costing one request per message as well.
//!
//! Node-local: in a cluster each node paces the pushes it sends (each
//! message is pushed by the node that stored it), so a conversation busy
//! on two nodes at once may get two pushes per interval, never one per
//! message. Bounded by [`PUSH_PACED_MAX`] entries; a quiet entry is
//! forgotten once its interval is over.

use std::collections::HashMap;

use crate::config::{PUSH_INTERVAL_MS, PUSH_PACED_MAX};
use crate::push::Notice;
use crate::store::UserId;

/// One user and conversation's pace.
struct Paced {
    /// When the last push went.
    sent_ms: i64,
    /// The newest notice since then, its count the messages held.
    held: Option<Notice>,
}

/// What became of a notice offered.
#[derive(Debug, PartialEq, Eq)]
pub enum Pace {
    /// Push it now.
    Now(Notice),
    /// Held for the end of the interval.
    Held,
    /// The table is full: dropped.
    Dropped,
}

/// Paces by user, then conversation key.
#[derive(Default)]
pub struct Pacing {
    users: HashMap<UserId, HashMap<Box<str>, Paced>>,
    len: usize,
}

impl Pacing {
    /// `notice` now, or held until its conversation's interval is over.
    pub fn offer(&mut self, notice: Notice, now_ms: i64) -> Pace {
        let full = self.len >= PUSH_PACED_MAX;
        let convs = self.users.entry(notice.user).or_default();
        let Some(p) = convs.get_mut(notice.key.as_str()) else {
            if full {
                if convs.is_empty() {
                    self.users.remove(&notice.user);
                }
                return Pace::Dropped;
            }
            convs.insert(
                notice.key.as_str().into(),
                Paced {
                    sent_ms: now_ms,
                    held: None,
                },
            );
            self.len += 1;
            return Pace::Now(notice);
        };
        if p.held.is_none() && now_ms - p.sent_ms >= PUSH_INTERVAL_MS {
            p.sent_ms = now_ms;
            return Pace::Now(notice);
        }
        let count = p.held.as_ref().map_or(0, |h| h.count) + notice.count;
        p.held = Some(Notice { count, ..notice });
        Pace::Held
    }

    /// The held notices whose interval is over (each now counts as sent),
    /// and forgets the entries that stayed quiet through theirs.
    pub fn due(&mut self, now_ms: i64) -> Vec<Notice> {
        let mut due = Vec::new();
        let mut forgotten = 0;
        self.users.retain(|_, convs| {
            convs.retain(|_, p| {
                if now_ms - p.sent_ms < PUSH_INTERVAL_MS {
                    return true;
                }
                match p.held.take() {
                    Some(n) => {
                        p.sent_ms = now_ms;
                        due.push(n);
                        true
                    }
                    None => {
                        forgotten += 1;
                        false
                    }
                }
            });
            !convs.is_empty()
        });
        self.len -= forgotten;
        due
    }

    /// `user` is online again: what was held for them goes (they see the
    /// conversations live), and their next push is not paced by the last.
    pub fn forget(&mut self, user: UserId) {
        if let Some(convs) = self.users.remove(&user) {
            self.len -= convs.len();
        }
    }

    /// Users and conversations paced now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::Reason;

    fn notice(user: UserId, key: &str, id: u64) -> Notice {
        Notice {
            user,
            key: key.into(),
            reason: Reason::Mention,
            from: "alice".into(),
            text: format!("m{id}"),
            id,
            count: 1,
        }
    }

    /// The first push of a conversation goes at once; the next ones within
    /// the interval are held as one, the newest with the count of all, and
    /// go when it ends; another conversation or user is paced apart.
    #[test]
    fn one_push_per_conversation_per_interval() {
        let mut p = Pacing::default();
        assert_eq!(
            p.offer(notice(1, "#a", 1), 0),
            Pace::Now(notice(1, "#a", 1))
        );
        assert_eq!(p.offer(notice(1, "#a", 2), 100), Pace::Held);
        assert_eq!(p.offer(notice(1, "#a", 3), 200), Pace::Held);
        assert!(matches!(p.offer(notice(1, "#b", 4), 300), Pace::Now(_)));
        assert!(matches!(p.offer(notice(2, "#a", 5), 300), Pace::Now(_)));
        assert!(p.due(PUSH_INTERVAL_MS - 1).is_empty());
        let due = p.due(PUSH_INTERVAL_MS);
        assert_eq!(
            due,
            [Notice {
                count: 2,
                ..notice(1, "#a", 3)
            }]
        );
        assert_eq!(
            p.offer(notice(1, "#a", 6), PUSH_INTERVAL_MS + 1),
            Pace::Held,
            "the held push just went: the next waits its interval"
        );
        assert_eq!(p.due(2 * PUSH_INTERVAL_MS).len(), 1);
        assert!(p.due(3 * PUSH_INTERVAL_MS + 1).is_empty());
        assert_eq!(p.len(), 0, "quiet entries are forgotten");
        assert!(matches!(
            p.offer(notice(1, "#a", 7), 4 * PUSH_INTERVAL_MS),
            Pace::Now(_)
        ));
    }

    /// A user who comes online loses what was held for them, and is pushed
    /// at once the next time they are away.
    #[test]
    fn coming_online_forgets_what_was_held() {
        let mut p = Pacing::default();
        assert!(matches!(p.offer(notice(1, "#a", 1), 0), Pace::Now(_)));
        assert_eq!(p.offer(notice(1, "#a", 2), 10), Pace::Held);
        p.forget(1);
        assert_eq!(p.len(), 0);
        assert!(p.due(PUSH_INTERVAL_MS).is_empty());
        assert!(matches!(p.offer(notice(1, "#a", 3), 20), Pace::Now(_)));
    }

    /// The table is bounded: past it, a new conversation's push is dropped
    /// while the ones already paced go on.
    #[test]
    fn the_table_is_bounded() {
        let mut p = Pacing::default();
        for u in 0..PUSH_PACED_MAX as UserId {
            assert!(matches!(p.offer(notice(u, "#a", 1), 0), Pace::Now(_)));
        }
        assert_eq!(p.offer(notice(u32::MAX, "#a", 1), 0), Pace::Dropped);
        assert_eq!(p.offer(notice(0, "#b", 1), 0), Pace::Dropped);
        assert_eq!(p.offer(notice(0, "#a", 2), 1), Pace::Held);
        assert_eq!(p.len(), PUSH_PACED_MAX);
    }
}
