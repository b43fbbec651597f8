//! Who is pushed about a stored message (the contract's "Push"): each user
//! it mentions, and the recipient of a private message, who has no open
//! connection, on this node or (in a cluster) any other; never its author.
//! A connection counts however hidden its tab is: an open page notifies by
//! itself (`static/js/ui/notify.js`). In a cluster a peer shows its users
//! until their presence grace there is over, so a user whose last tab
//! closed on another node is pushed once that node says they left.
//!
//! Exactly one push per event in a cluster, without coordination: only
//! the node that stored a message runs this (`post.rs`, at its commit),
//! and it knows the whole cluster's presence from the bus.
//!
//! A push is paced (`pacing.rs`), then the user's subscriptions and
//! setting are read from storage; the application hands them and the
//! parked notice to `push` (`Hub::take_push`). What the push may say is
//! decided there, by the user's setting; what it could say is bounded
//! here: the text is the first [`PUSH_TEXT_CHARS`] characters, on one line.

use crate::clock;
use crate::config::PUSH_TEXT_CHARS;
use crate::hub::acks::{Delivery, PendingAck};
use crate::hub::pacing::Pace;
use crate::hub::parts::{Ctx, Parts};
use crate::hub::waits::Wait;
use crate::outbox::Outbox;
use crate::push::{Notice, Reason};
use crate::store::{MsgId, Request, UserId};

/// Offers a push to each user `pending` (just stored as `id`) should reach.
pub fn on_stored(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    id: MsgId,
    pending: &PendingAck,
) {
    let from = cx.users.name(pending.from).to_string();
    let (key, reason, users) = match pending.delivery {
        Delivery::Room(room) => {
            if pending.mentions.is_empty() {
                return;
            }
            let key = format!("#{}", parts.rooms.get(room).name());
            (key, Reason::Mention, &pending.mentions[..])
        }
        Delivery::Private { ref peer } => (
            format!("@{from}"),
            Reason::Private,
            std::slice::from_ref(peer),
        ),
    };
    let now = clock::now_ms();
    for &user in users {
        if user == pending.from || is_connected(parts, user) {
            continue;
        }
        let notice = Notice {
            user,
            key: key.clone(),
            reason,
            from: from.clone(),
            text: one_line(&pending.content, PUSH_TEXT_CHARS),
            id,
            count: 1,
        };
        match parts.pacing.offer(notice, now) {
            Pace::Now(notice) => read_profile(parts, cx, notice),
            Pace::Held => {}
            Pace::Dropped => cx.out.metrics().push_dropped += 1,
        }
    }
}

/// Once a second: the held pushes whose interval is over, for users still away.
pub fn send_due(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>) {
    for notice in parts.pacing.due(clock::now_ms()) {
        if !is_connected(parts, notice.user) {
            read_profile(parts, cx, notice);
        }
    }
}

/// Whether `user` has a chat connection anywhere in the cluster.
pub fn is_connected(parts: &Parts, user: UserId) -> bool {
    !parts.sessions.conns(user).is_empty() || parts.shown_elsewhere(user)
}

/// Parks `notice` and asks storage for its user's subscriptions and
/// setting; a full storage queue drops it (a push is a courtesy; chat
/// must not wait for it).
fn read_profile(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>, notice: Notice) {
    let user = notice.user;
    let ticket = parts.waits.park(Wait::Push { notice });
    if cx
        .store
        .submit(Request::PushProfile { ticket, user })
        .is_err()
    {
        parts.waits.cancel(ticket);
        cx.out.metrics().push_dropped += 1;
    }
}

/// `text` on one line (runs of whitespace as one space), cut to `max`
/// characters with an ellipsis.
fn one_line(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 4));
    let mut chars = 0;
    for word in text.split_whitespace() {
        for c in (!out.is_empty())
            .then_some(' ')
            .into_iter()
            .chain(word.chars())
        {
            if chars == max {
                out.pop();
                out.push('…');
                return out;
            }
            out.push(c);
            chars += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::one_line;
    use crate::hub::tests::{ALICE, BOB, Bench};
    use crate::store::Request;

    /// Whitespace folds to single spaces and long text ends in an ellipsis
    /// within the bound.
    #[test]
    fn text_is_one_bounded_line() {
        assert_eq!(one_line("  hi\n\nthere\t you ", 140), "hi there you");
        assert_eq!(one_line("abcdef", 6), "abcdef");
        assert_eq!(one_line("abcdefg", 6), "abcde…");
        assert_eq!(one_line("ab cd ef", 5), "ab c…");
        assert_eq!(one_line("éééééééé", 4).chars().count(), 4);
        assert_eq!(one_line("", 4), "");
    }

    /// The users whose profile is read for a push, in order.
    fn pushed_to(b: &mut Bench) -> Vec<u32> {
        b.queue
            .requests
            .iter()
            .filter_map(|r| match r {
                Request::PushProfile { user, .. } => Some(*user),
                _ => None,
            })
            .collect()
    }

    /// A mention of an offline user is pushed once it is stored; a mention
    /// of a connected user, or of the author, is not; a message with no
    /// mention pushes nobody.
    #[test]
    fn mentions_push_offline_users_only() {
        let mut b = Bench::new();
        let a = b.open(1, ALICE);
        b.send(a, json!({"type": "join", "room": "general"}));
        b.send(
            a,
            json!({"type": "message", "room": "general", "content": "hi all"}),
        );
        b.send(
            a,
            json!({"type": "message", "room": "general", "content": "@bob @alice look"}),
        );
        assert!(pushed_to(&mut b).is_empty(), "not before the commit");
        b.settle();
        assert_eq!(pushed_to(&mut b), [BOB]);
        b.queue.requests.clear();
        let bob = b.open(2, BOB);
        b.send(
            a,
            json!({"type": "message", "room": "general", "content": "@bob again"}),
        );
        b.settle();
        assert!(pushed_to(&mut b).is_empty(), "bob is connected");
        let _ = bob;
    }

    /// A private message to an offline user is pushed; a burst in the same
    /// conversation is one push now and the rest held by the pacing.
    #[test]
    fn private_messages_push_and_are_paced() {
        let mut b = Bench::new();
        let a = b.open(1, ALICE);
        for i in 0..3 {
            b.send(
                a,
                json!({"type": "private_message", "to": "bob", "content": format!("psst {i}")}),
            );
        }
        b.settle();
        assert_eq!(pushed_to(&mut b), [BOB], "one push for the burst");
    }
}
