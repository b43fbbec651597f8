//! What an account change does to connections (`accounts::AccountEvent`):
//! a banned user's sockets close with 4003, an ended session's with 4001,
//! a deleted account's with 4001 and it leaves its private rooms, and
//! everyone sees what changed in what is shown of a user (`user_updated`).
//! A moderator's change to a room: everyone who may see it is told
//! (`room_archived`, `room_deleted`), and a deleted room's connections
//! leave it.
//!
//! Every node applies every change itself (the writing node from its
//! write's reply, the others from the change log), so what happens here is
//! delivered to this node's connections only, never published: a frame
//! published by each node would reach every other node's clients once per
//! node.

use mio::Token;

use super::fanout::{self, Except, Topic};
use super::parts::{Ctx, Parts};
use super::rooms::RoomId;
use super::sessions::SidTag;
use super::wire::Note;
use super::{members, presence};
use crate::accounts::AccountEvent;
use crate::outbox::Outbox;
use crate::store::{RoomNews, UserId};
use crate::ws::proto::{Out, profile};

/// Close code for a socket whose session ended (logout, a password
/// change, an admin, a deleted account): the contract's 4001.
pub const CLOSE_SESSION_ENDED: u16 = 4001;
/// Close code for a banned user's sockets: the contract's 4003.
pub const CLOSE_BANNED: u16 = 4003;
/// A close frame's reason holds at most this many bytes (RFC 6455: 125
/// for the payload, 2 of them the code).
const CLOSE_REASON_MAX: usize = 123;

pub fn on_account(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>, event: AccountEvent) {
    match event {
        AccountEvent::User(c) => {
            if c.banned {
                let reason = cx
                    .users
                    .get(c.id)
                    .and_then(|u| u.account.ban.as_ref())
                    .map_or("", |b| b.reason.as_str());
                let why = if reason.is_empty() {
                    "banned".to_string()
                } else {
                    format!("banned: {reason}")
                };
                close(parts, cx, c.id, CLOSE_BANNED, &why, |_| true);
            }
            if c.deleted {
                close(
                    parts,
                    cx,
                    c.id,
                    CLOSE_SESSION_ENDED,
                    "account deleted",
                    |_| true,
                );
                members::forget(parts, cx, c.id);
            }
            if c.shown
                && let Some(u) = cx.users.get(c.id)
            {
                let frame = parts.encoder.shared(&Out::UserUpdated { user: profile(u) });
                let n =
                    fanout::deliver(parts, Topic::Everyone, Except::Nobody, None, &frame, cx.out);
                cx.out.metrics().deliveries += n;
            }
        }
        AccountEvent::SessionsEnded { user, sids } => {
            let tags: Vec<SidTag> = sids.iter().map(|s| SidTag::of(*s)).collect();
            close(parts, cx, user, CLOSE_SESSION_ENDED, "session ended", |s| {
                s.is_some_and(|s| tags.contains(&s))
            });
        }
        AccountEvent::LegacyEnded { user } => {
            close(parts, cx, user, CLOSE_SESSION_ENDED, "session ended", |s| {
                s.is_none()
            });
        }
        AccountEvent::Room(RoomNews {
            name,
            archived: Some(archived),
        }) => {
            if parts.rooms.set_archived(&name, archived)
                && let Some(id) = parts.rooms.id(&name)
            {
                let frame = parts.encoder.shared(&Out::RoomArchived {
                    room: &name,
                    archived,
                });
                tell_viewers(parts, cx, id, &frame);
            }
        }
        AccountEvent::Room(RoomNews {
            name,
            archived: None,
        }) => delete_room(parts, cx, &name),
        AccountEvent::Announce => parts.note(&Note::AccountsChanged),
        AccountEvent::TicketUsed { id, expires_ms } => {
            parts.note(&Note::TicketUsed { id, expires_ms });
        }
    }
}

/// Room `name` is deleted: whoever may see it here is told, its
/// connections here leave it (the rest of the room sees them go), and it
/// is forgotten.
fn delete_room(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>, name: &str) {
    parts.rooms.set_archived(name, false);
    let Some(id) = parts.rooms.id(name) else {
        return;
    };
    let frame = parts.encoder.shared(&Out::RoomDeleted { room: name });
    tell_viewers(parts, cx, id, &frame);
    let room = parts.rooms.get(id);
    let joined: Vec<Token> = room
        .subscribers()
        .iter()
        .chain(room.replaying())
        .copied()
        .collect();
    for t in joined {
        let Some(s) = parts.sessions.get_mut(t) else {
            continue;
        };
        let user = s.user();
        if s.leave(id) {
            presence::unsubscribe(parts, cx, t, user, id);
        }
    }
    if parts.rooms.id(name) == Some(id) {
        parts.rooms.forget(id);
    }
}

/// `frame` to every connection here that may see room `id`: a private
/// room's members, or everyone for a public room (a client lists public
/// rooms it never joined).
fn tell_viewers(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    id: RoomId,
    frame: &std::rc::Rc<[u8]>,
) {
    let members: Option<Vec<UserId>> = parts.rooms.get(id).private().map(|p| p.members().collect());
    let n = match members {
        None => fanout::deliver(parts, Topic::Everyone, Except::Nobody, None, frame, cx.out),
        Some(members) => members
            .into_iter()
            .map(|m| fanout::deliver(parts, Topic::User(m), Except::Nobody, None, frame, cx.out))
            .sum(),
    };
    cx.out.metrics().deliveries += n;
}

/// Closes `user`'s sockets here whose session `which` picks.
fn close(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    user: UserId,
    code: u16,
    reason: &str,
    which: impl Fn(Option<SidTag>) -> bool,
) {
    let reason = cut(reason, CLOSE_REASON_MAX);
    let conns: Vec<Token> = parts
        .sessions
        .conns(user)
        .iter()
        .copied()
        .filter(|t| parts.sessions.get(*t).is_some_and(|s| which(s.sid())))
        .collect();
    for t in conns {
        cx.out.close_ws(t, code, reason);
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::hub::tests::{ALICE, BOB, Bench};
    use crate::outbox::recorder::Sent;
    use crate::store::{Ban, Sid, UserRow};

    fn changed(
        b: &mut Bench,
        id: UserId,
        edit: impl FnOnce(&mut UserRow),
    ) -> crate::users::Changed {
        let u = b.users.get(id).unwrap();
        let mut row = UserRow {
            id,
            username: u.name.to_string(),
            email: u.email.to_string(),
            password: u.password.clone(),
            created_ms: 0,
            last_seen_ms: None,
            account: u.account.clone(),
        };
        row.account.version += 1;
        edit(&mut row);
        b.users.apply(row).expect("newer")
    }

    /// A ban closes every socket of the user with 4003 and nobody else's;
    /// ended sessions close only their own sockets, with 4001.
    #[test]
    fn bans_and_ended_sessions_close_their_sockets() {
        let mut b = Bench::new();
        let a1 = b.open_as(1, ALICE, Some(Sid(1)));
        let a2 = b.open_as(2, ALICE, Some(Sid(2)));
        let legacy = b.open_as(3, ALICE, None);
        let bob = b.open(4, BOB);
        b.account(AccountEvent::SessionsEnded {
            user: ALICE,
            sids: vec![Sid(2)],
        });
        assert_eq!(b.closes(), [(a2, CLOSE_SESSION_ENDED)]);
        b.close(a2); // the reactor's close pass
        b.account(AccountEvent::LegacyEnded { user: ALICE });
        assert_eq!(b.closes(), [(a2, 4001), (legacy, CLOSE_SESSION_ENDED)]);
        b.close(legacy);
        b.out.clear();
        let c = changed(&mut b, ALICE, |r| {
            r.account.ban = Some(Ban {
                at_ms: 1,
                reason: "spam".into(),
            })
        });
        b.account(AccountEvent::User(c));
        assert_eq!(b.closes(), [(a1, CLOSE_BANNED)]);
        assert!(
            b.of_type(bob, "user_updated").is_empty(),
            "a ban is not shown"
        );
    }

    /// A changed display name reaches every connection as `user_updated`.
    #[test]
    fn profile_changes_reach_everyone() {
        let mut b = Bench::new();
        let a = b.open(1, ALICE);
        let bob = b.open(2, BOB);
        let c = changed(&mut b, ALICE, |r| {
            r.account.display_name = Some("Alice A.".into());
            r.account.status = "on holiday".into();
        });
        b.account(AccountEvent::User(c));
        let want = json!({"type": "user_updated", "user": {"id": ALICE, "username": "alice",
            "display_name": "Alice A.", "status": "on holiday", "role": "member", "avatar": null}});
        for t in [a, bob] {
            assert_eq!(b.of_type(t, "user_updated"), std::slice::from_ref(&want));
        }
    }

    /// A deleted account's sockets close, it leaves its private rooms, and
    /// the members left get the new list.
    #[test]
    fn deletion_leaves_private_rooms() {
        let mut b = Bench::new();
        let a = b.open(1, ALICE);
        let bob = b.open(2, BOB);
        b.send(
            a,
            json!({"type": "create_room", "room": "ops", "private": true, "members": ["bob"]}),
        );
        b.settle();
        b.out.clear();
        let c = changed(&mut b, BOB, |r| {
            r.username = crate::store::accounts::deleted_name(BOB);
            r.account.deleted_ms = Some(5);
        });
        b.account(AccountEvent::User(c));
        assert_eq!(b.closes(), [(bob, CLOSE_SESSION_ENDED)]);
        assert_eq!(b.of_type(a, "room_members")[0]["members"], json!(["alice"]));
        assert!(b.of_type(a, "user_updated")[0]["user"]["deleted"] == json!(true));
        assert!(
            b.out
                .sent
                .iter()
                .all(|(_, s)| !matches!(s, Sent::Close(4003))),
            "not a ban"
        );
    }

    /// Close reasons are cut to what a close frame holds, at a character.
    #[test]
    fn reasons_fit_a_close_frame() {
        let long = "é".repeat(100);
        let r = cut(&long, CLOSE_REASON_MAX);
        assert!(r.len() <= CLOSE_REASON_MAX && r.len() == 122);
    }
}
