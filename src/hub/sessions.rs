//! The sessions part: every chat connection's session, each user's
//! connections (who is online), the rate limit each session pays, and the
//! presence grace: users whose last connection closed stay shown a moment,
//! so a reload or a network blip changes nothing anyone sees.
//!
//! Bookkeeping only: what the others are told when a user comes or goes is
//! `presence.rs`'s business.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU64;
use std::rc::Rc;
use std::time::Duration;

use mio::Token;

use super::rate::TokenBucket;
use super::rooms::RoomId;
use crate::clock;
use crate::config::{MAX_HELD_FRAMES, PRESENCE_GRACE};
use crate::outbox::ConnRef;
use crate::store::{MsgId, Sid, UserId};

/// Who sent the frame being handled: its connection and user.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub conn: ConnRef,
    pub user: UserId,
}

impl Caller {
    pub fn token(&self) -> Token {
        self.conn.token
    }
}

/// A WebSocket connection's chat state.
/// What a session slot keeps of a [`Sid`]: its low 64 bits, never zero.
/// 64 random bits tell one user's sessions apart (two alike: 2^-64, and the
/// cost would be one extra socket closed), in 8 bytes where the whole `Sid`
/// (a 16-aligned `u128`) made every slot 128 bytes instead of 96.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SidTag(NonZeroU64);

impl SidTag {
    pub fn of(sid: Sid) -> SidTag {
        SidTag(NonZeroU64::new(sid.0 as u64).unwrap_or(NonZeroU64::MIN))
    }
}

pub struct Session {
    conn: ConnRef,
    user: UserId,
    /// The server-side session its token or ticket belongs to (`None`: a
    /// token from before sessions), so ending it closes this socket.
    sid: Option<SidTag>,
    /// The room named in `/ws/room/{name}`: plain-text frames go there.
    url_room: Option<Rc<str>>,
    /// Rooms this connection is joined to (live or still replaying).
    rooms: Vec<RoomId>,
    bucket: TokenBucket,
    /// Live frames held while a `since` replay is read from storage; `None`
    /// (one word, where an idle session used to keep an empty list) unless
    /// a replay is under way.
    held: Option<Box<Held>>,
}

/// Frames held for a connection's replays.
#[derive(Default)]
struct Held {
    /// In arrival order, with their room and, for chat messages, their id.
    frames: Vec<(RoomId, Option<MsgId>, Rc<[u8]>)>,
    /// More frames arrived during a replay than could be held.
    overflow: bool,
}

impl Session {
    pub fn conn(&self) -> ConnRef {
        self.conn
    }

    /// This session as the sender of a frame.
    pub fn caller(&self) -> Caller {
        Caller {
            conn: self.conn,
            user: self.user,
        }
    }

    pub fn user(&self) -> UserId {
        self.user
    }

    /// Its server-side session, as the slot keeps it.
    pub fn sid(&self) -> Option<SidTag> {
        self.sid
    }

    /// The room in the connection's URL, shared so handling a frame can
    /// hold it without copying the name.
    pub fn url_room(&self) -> Option<&Rc<str>> {
        self.url_room.as_ref()
    }

    /// Rooms this connection is joined to.
    pub fn rooms(&self) -> &[RoomId] {
        &self.rooms
    }

    pub fn is_in(&self, room: RoomId) -> bool {
        self.rooms.contains(&room)
    }

    pub fn join(&mut self, room: RoomId) {
        self.rooms.push(room);
    }

    /// Leaves `room`; false when the connection was not in it. What was
    /// held for it goes too.
    pub fn leave(&mut self, room: RoomId) -> bool {
        let Some(i) = self.rooms.iter().position(|r| *r == room) else {
            return false;
        };
        self.rooms.remove(i);
        if let Some(h) = &mut self.held {
            h.frames.retain(|(r, _, _)| *r != room);
        }
        true
    }

    /// Holds a live frame of `room` until its replay is sent; false (and
    /// the replay will say `recovered: false`) when too many are held.
    pub fn hold(&mut self, room: RoomId, id: Option<MsgId>, frame: &Rc<[u8]>) -> bool {
        let held = self.held.get_or_insert_with(Box::default);
        if held.frames.len() < MAX_HELD_FRAMES {
            held.frames.push((room, id, frame.clone()));
            true
        } else {
            held.overflow = true;
            false
        }
    }

    /// The frames held for `room`, in order, but for the chat messages its
    /// replay already carried (ids up to `replayed_up_to`); and whether any
    /// were dropped for want of room.
    pub fn take_held(&mut self, room: RoomId, replayed_up_to: MsgId) -> (Vec<Rc<[u8]>>, bool) {
        let mut out = Vec::new();
        let Some(held) = &mut self.held else {
            return (out, false);
        };
        held.frames.retain(|(r, id, f)| {
            if *r != room {
                return true;
            }
            if id.is_none_or(|m| m > replayed_up_to) {
                out.push(f.clone());
            }
            false
        });
        let overflow = std::mem::take(&mut held.overflow);
        if held.frames.is_empty() {
            self.held = None;
        }
        (out, overflow)
    }
}

/// Every session, and who is online.
pub struct Sessions {
    /// Indexed by token: slab keys are dense, so a Vec beats hashing.
    slots: Vec<Option<Session>>,
    /// Each online user's connections. A user whose list is empty is
    /// lingering: shown online until their grace ends.
    online: HashMap<UserId, Vec<Token>>,
    /// Sessions in `slots` (the sum of `online`'s lists, kept up to date).
    open: usize,
    /// Chat frames per second per connection (`--rate-limit`); 0 = off.
    rate_limit: u32,
    /// How long a departed user stays shown; 0 = not at all.
    grace_ms: i64,
    /// Users (and rooms, by name) in their grace, in deadline order:
    /// `(until_ms, user, None)` for going offline, `Some(room)` for leaving.
    /// Entries whose user came back are skipped when they come due.
    lingering: VecDeque<(i64, UserId, Option<Box<str>>)>,
    /// Set at shutdown: sessions end without presence broadcasts, which would
    /// otherwise cost every remaining connection a frame per departing user
    /// (quadratic in the number of users, for frames nobody will read).
    quiet: bool,
}

impl Sessions {
    pub fn new(rate_limit: u32) -> Sessions {
        Sessions {
            slots: Vec::new(),
            online: HashMap::new(),
            open: 0,
            rate_limit,
            grace_ms: PRESENCE_GRACE.as_millis() as i64,
            lingering: VecDeque::new(),
            quiet: false,
        }
    }

    /// How long a departed user stays shown (`--presence-grace`).
    pub fn set_grace(&mut self, grace: Duration) {
        self.grace_ms = grace.as_millis() as i64;
    }

    /// Shutdown: sessions end without presence broadcasts from now on.
    pub fn go_quiet(&mut self) {
        self.quiet = true;
    }

    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    pub fn get(&self, token: Token) -> Option<&Session> {
        self.slots.get(token.0)?.as_ref()
    }

    pub fn get_mut(&mut self, token: Token) -> Option<&mut Session> {
        self.slots.get_mut(token.0)?.as_mut()
    }

    /// Whether `conn` is the connection of the session on its token (not a
    /// later one that reused it).
    pub fn is_current(&self, conn: ConnRef) -> bool {
        self.get(conn.token).is_some_and(|s| s.conn == conn)
    }

    /// `conn`'s session as a caller, if it is still open: for work that
    /// goes on after a storage reply in its name.
    pub fn caller_of(&self, conn: ConnRef) -> Option<Caller> {
        self.get(conn.token)
            .map(Session::caller)
            .filter(|c| c.conn == conn)
    }

    /// A chat connection opened for `user`. True when the user was not
    /// shown online before (not even lingering): the others are told.
    pub fn open(
        &mut self,
        conn: ConnRef,
        user: UserId,
        sid: Option<Sid>,
        url_room: Option<&str>,
    ) -> bool {
        let idx = conn.token.0;
        if self.slots.len() <= idx {
            self.slots.resize_with(idx + 1, || None);
        }
        self.slots[idx] = Some(Session {
            conn,
            user,
            sid: sid.map(SidTag::of),
            url_room: url_room.map(Into::into),
            rooms: Vec::new(),
            bucket: TokenBucket::new(self.rate_limit, clock::now_ms()),
            held: None,
        });
        self.open += 1;
        let shown = self.online.contains_key(&user);
        self.online.entry(user).or_default().push(conn.token);
        !shown
    }

    /// The session of a connection that is going away.
    pub fn close(&mut self, token: Token) -> Option<Session> {
        let session = self.slots.get_mut(token.0).and_then(Option::take)?;
        self.open -= 1;
        Some(session)
    }

    /// `user`'s connection `token` is gone. True when it was their last
    /// one here: they are offline now, or lingering when `linger`.
    pub fn drop_conn(&mut self, user: UserId, token: Token, linger: bool) -> bool {
        let Some(conns) = self.online.get_mut(&user) else {
            return false;
        };
        conns.retain(|t| *t != token);
        if !conns.is_empty() {
            return false;
        }
        if !linger {
            self.online.remove(&user);
        }
        true
    }

    /// When a user who leaves now stops being shown: `None` without a grace.
    pub fn grace_deadline(&self) -> Option<i64> {
        (self.grace_ms > 0).then(|| clock::now_ms() + self.grace_ms)
    }

    /// `user` lingers until `until`: online (`room` `None`), or in `room`.
    pub fn linger(&mut self, until: i64, user: UserId, room: Option<Box<str>>) {
        self.lingering.push_back((until, user, room));
    }

    /// The next grace that is over, oldest first.
    pub fn next_grace_over(&mut self, now: i64) -> Option<(UserId, Option<Box<str>>)> {
        if self.lingering.front()?.0 > now {
            return None;
        }
        self.lingering
            .pop_front()
            .map(|(_, user, room)| (user, room))
    }

    /// The grace of a user lingering online is over: true when they did not
    /// come back, and are offline now.
    pub fn end_grace(&mut self, user: UserId) -> bool {
        if self.online.get(&user).is_some_and(Vec::is_empty) {
            self.online.remove(&user);
            return true;
        }
        false
    }

    /// Takes one token from the connection's rate-limit bucket.
    pub fn take_token(&mut self, token: Token) -> bool {
        let rate = self.rate_limit;
        self.get_mut(token)
            .is_none_or(|s| s.bucket.allow(rate, clock::now_ms()))
    }

    /// `user`'s connections here (none while lingering).
    pub fn conns(&self, user: UserId) -> &[Token] {
        self.online
            .get(&user)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Every chat connection.
    pub fn every_conn(&self) -> impl Iterator<Item = Token> + '_ {
        self.online.values().flatten().copied()
    }

    /// Shown online here: connected, or lingering in the grace.
    pub fn is_online(&self, user: UserId) -> bool {
        self.online.contains_key(&user)
    }

    /// Users shown online here.
    pub fn users(&self) -> impl Iterator<Item = UserId> + '_ {
        self.online.keys().copied()
    }

    /// Distinct users shown online here.
    pub fn users_online(&self) -> usize {
        self.online.len()
    }

    /// Sessions open (kept as a count: `/metrics` must not cost a walk over
    /// every user).
    pub fn count(&self) -> usize {
        self.open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(t: usize) -> ConnRef {
        ConnRef {
            token: Token(t),
            serial: 1,
        }
    }

    /// A user is online from their first connection to the end of their
    /// last one's grace, and a reconnect within it is not news.
    #[test]
    fn online_from_first_connection_to_grace_end() {
        let mut s = Sessions::new(0);
        assert!(s.open(conn(1), 7, None, None), "first: news");
        assert!(!s.open(conn(2), 7, None, None), "second: not");
        assert!(!s.drop_conn(7, Token(1), true));
        assert!(s.drop_conn(7, Token(2), true), "the last");
        assert!(s.is_online(7) && s.conns(7).is_empty(), "lingering");
        assert!(!s.open(conn(3), 7, None, None), "back within the grace");
        assert!(!s.end_grace(7), "came back: stays online");
        assert!(s.drop_conn(7, Token(3), false));
        assert!(!s.is_online(7), "no grace: gone at once");
    }

    /// Frames held during a replay come back in order, without the chat
    /// messages the replay carried; past the bound they are dropped and
    /// the overflow is reported once.
    #[test]
    fn held_frames_skip_what_the_replay_carried() {
        let mut s = Sessions::new(0);
        s.open(conn(1), 7, None, None);
        let session = s.get_mut(Token(1)).unwrap();
        let frame: Rc<[u8]> = Rc::from(&b"x"[..]);
        session.join(4);
        session.hold(4, Some(10), &frame);
        session.hold(4, None, &frame);
        session.hold(4, Some(11), &frame);
        let (held, overflow) = session.take_held(4, 10);
        assert_eq!((held.len(), overflow), (2, false));
        for _ in 0..=MAX_HELD_FRAMES {
            session.hold(4, None, &frame);
        }
        let (held, overflow) = session.take_held(4, 0);
        assert_eq!((held.len(), overflow), (MAX_HELD_FRAMES, true));
        assert!(!session.take_held(4, 0).1, "reported once");
        assert!(session.held.is_none(), "nothing kept once taken");
    }

    /// Every chat connection holds a session slot besides its `Conn`: it
    /// stays within the idle-memory budget (`cargo bench --bench e2e --
    /// idle_rss`: 256 B a connection in all). The server-side session's
    /// tag took it from 88 to 96 bytes; a whole `Sid` would make it 128.
    #[test]
    fn session_slot_is_small() {
        let size = std::mem::size_of::<Option<Session>>();
        assert!(size <= 96, "a session slot is {size} bytes");
    }

    /// A session's tag is its sid's low bits, and never the niche `None`
    /// uses: a sid whose low 64 bits are zero still has a tag.
    #[test]
    fn sid_tags_tell_sessions_apart() {
        let (a, b) = (Sid(0x1234_u128 << 64 | 7), Sid(0x1234_u128 << 64 | 8));
        assert_ne!(SidTag::of(a), SidTag::of(b));
        assert_eq!(SidTag::of(a), SidTag::of(Sid(7)));
        assert!(Some(SidTag::of(Sid(5_u128 << 64))).is_some());
        assert_eq!(std::mem::size_of::<Option<SidTag>>(), 8);
    }
}
