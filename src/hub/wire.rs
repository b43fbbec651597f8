//! What nodes of a cluster say to each other on the bus, and its byte
//! encoding: pure data, no I/O.
//!
//! A [`Note`] is one bus message. Frames for clients cross as the bytes this
//! node queued for its own sockets (encode once, also across nodes); the
//! rest is the bookkeeping each node needs to answer from memory as if it
//! were alone: who is online where, new users and private-room changes.
//!
//! The encoding is a small tagged binary format rather than JSON, because
//! frames are binary (WebSocket headers and all) and every node decodes
//! every note: integers are little-endian, strings and byte runs carry a
//! `u32` length. Every note starts with its [`Stamp`] (who sent it, its
//! count, when), and travels sealed (`seal.rs`).
//!
//! [`decode`] trusts nothing, even from a node that holds the key (a bug,
//! a newer version): it never panics, never allocates more than the note's
//! own length, and checks every field before anything is applied — room
//! names follow the room rule, user ids are not 0, a conversation's ids are
//! in order, node names are bounded, counts fit the note, and a frame for
//! clients is what this server sends them: one final, unmasked text frame
//! whose payload is a UTF-8 JSON object. A note that fails is dropped whole,
//! never half-applied. (Whether a user id is one storage holds is the
//! receiver's check: `peers.rs`.)
//!
//! Users are announced by id only (`Note::User`): each node reads the row
//! from storage, so no password hash or email ever crosses the bus.

use std::borrow::Cow;

use super::command::valid_room_name;
use crate::config::{MAX_NODE_NAME, MAX_ROOM_MEMBERS};
use crate::store::{MsgId, PrivateRoomRow, Seq, Target, UserId};

/// Bumped when the encoding changes; a node ignores notes of another version.
/// 2: stamped and sealed; users by id.
const VERSION: u8 = 2;

/// Where a sequenced message lives, as every node names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetKey {
    Room(Box<str>),
    /// The two users, lower id first.
    Direct(UserId, UserId),
}

impl TargetKey {
    pub fn direct(a: UserId, b: UserId) -> TargetKey {
        TargetKey::Direct(a.min(b), a.max(b))
    }

    pub fn of(target: &Target) -> TargetKey {
        match target {
            Target::Room(r) => TargetKey::Room(r.as_str().into()),
            Target::Direct(a, b) => TargetKey::direct(*a, *b),
        }
    }

    pub fn to_target(&self) -> Target {
        match self {
            TargetKey::Room(r) => Target::Room(r.to_string()),
            TargetKey::Direct(a, b) => Target::Direct(*a, *b),
        }
    }
}

/// Who an unsequenced frame is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest<'a> {
    Room(Cow<'a, str>),
    User(UserId),
    Everyone,
}

/// One bus message. `Cow`s let the sender borrow and the receiver own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note<'a> {
    /// "I am alive" (every `BEAT_INTERVAL`).
    Beat { name: Cow<'a, str> },
    /// A node (re)joined the bus: everyone answers with its `State`.
    Hello { name: Cow<'a, str> },
    /// Everything the sender shows about its own connections: the users
    /// online there, and who is in which room there. Replaces what the
    /// receiver knew of the sender.
    State {
        users: Vec<UserId>,
        rooms: Vec<(Cow<'a, str>, Vec<UserId>)>,
    },
    /// The user's first connection on the sender opened.
    Online { user: UserId },
    /// The user's last connection on the sender is gone (after the grace).
    Offline { user: UserId },
    /// The user is in the room on the sender (first connection there).
    Entered { room: Cow<'a, str>, user: UserId },
    /// The user left the room on the sender.
    Left { room: Cow<'a, str>, user: UserId },
    /// A stored chat message, `seq`th of its target.
    Message {
        target: TargetKey,
        seq: Seq,
        id: MsgId,
        frame: Cow<'a, [u8]>,
    },
    /// Any other frame for clients (typing, read receipts, room members).
    Frame {
        dest: Dest<'a>,
        except_user: Option<UserId>,
        frame: Cow<'a, [u8]>,
    },
    /// A user signed up on the sender (so logins work everywhere): the
    /// receiver reads the row from storage.
    User { id: UserId },
    /// A private room was created on the sender.
    RoomMade(PrivateRoomRow),
    /// A private room's member was added or removed on the sender.
    Member {
        room: Cow<'a, str>,
        user: UserId,
        add: bool,
    },
    /// Accounts changed on the sender: read the change log now (what
    /// changed is read from storage, never taken from the bus).
    AccountsChanged,
    /// The sender opened a socket with this WebSocket ticket: it is used.
    TicketUsed { id: [u8; 16], expires_ms: i64 },
}

/// Who sent a note, and which of theirs it is (see `seal.rs`, "Replays").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The sender's incarnation: random per process, so a restarted node
    /// is a new peer and its old self's state can be dropped.
    pub node: u64,
    /// The sender's count of notes sent, from 1.
    pub counter: u64,
    /// The sender's clock when it sent the note (Unix ms).
    pub sent_ms: i64,
}

impl Note<'_> {
    /// The users a note is about whose rows this node must hold before it
    /// applies it (presence and membership: names go out in frames). A
    /// frame or message for a user nobody here can be connected as needs
    /// no row: it reaches nobody.
    pub fn users_named(&self) -> Vec<UserId> {
        match self {
            Note::State { users, rooms } => {
                let mut all = users.clone();
                all.extend(rooms.iter().flat_map(|(_, u)| u.iter().copied()));
                all
            }
            Note::Online { user }
            | Note::Offline { user }
            | Note::Entered { user, .. }
            | Note::Left { user, .. }
            | Note::Member { user, .. } => vec![*user],
            Note::RoomMade(row) => {
                let mut all = row.members.clone();
                all.push(row.owner);
                all
            }
            Note::Beat { .. }
            | Note::Hello { .. }
            | Note::Message { .. }
            | Note::Frame { .. }
            | Note::User { .. }
            | Note::AccountsChanged
            | Note::TicketUsed { .. } => Vec::new(),
        }
    }
}

/// A note with who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub stamp: Stamp,
    pub note: Note<'a>,
}

pub fn encode(stamp: Stamp, note: &Note<'_>) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64));
    w.u8(VERSION);
    w.u64(stamp.node);
    w.u64(stamp.counter);
    w.u64(stamp.sent_ms as u64);
    match note {
        Note::Beat { name } => {
            w.u8(1);
            w.str(name);
        }
        Note::Hello { name } => {
            w.u8(2);
            w.str(name);
        }
        Note::State { users, rooms } => {
            w.u8(3);
            w.ids(users);
            w.u32(rooms.len() as u32);
            for (room, users) in rooms {
                w.str(room);
                w.ids(users);
            }
        }
        Note::Online { user } => {
            w.u8(4);
            w.u32(*user);
        }
        Note::Offline { user } => {
            w.u8(5);
            w.u32(*user);
        }
        Note::Entered { room, user } => {
            w.u8(6);
            w.str(room);
            w.u32(*user);
        }
        Note::Left { room, user } => {
            w.u8(7);
            w.str(room);
            w.u32(*user);
        }
        Note::Message {
            target,
            seq,
            id,
            frame,
        } => {
            w.u8(8);
            w.target(target);
            w.u64(*seq);
            w.u64(*id);
            w.bytes(frame);
        }
        Note::Frame {
            dest,
            except_user,
            frame,
        } => {
            w.u8(9);
            match dest {
                Dest::Room(r) => {
                    w.u8(0);
                    w.str(r);
                }
                Dest::User(u) => {
                    w.u8(1);
                    w.u32(*u);
                }
                Dest::Everyone => w.u8(2),
            }
            w.u32(except_user.unwrap_or(0));
            w.bytes(frame);
        }
        Note::User { id } => {
            w.u8(10);
            w.u32(*id);
        }
        Note::RoomMade(row) => {
            w.u8(11);
            w.str(&row.name);
            w.u32(row.owner);
            w.ids(&row.members);
        }
        Note::Member { room, user, add } => {
            w.u8(12);
            w.str(room);
            w.u32(*user);
            w.u8(u8::from(*add));
        }
        Note::AccountsChanged => w.u8(13),
        Note::TicketUsed { id, expires_ms } => {
            w.u8(14);
            w.0.extend_from_slice(id);
            w.u64(*expires_ms as u64);
        }
    }
    w.0
}

/// Decodes a note; `Err` says why it is not one this node can apply.
pub fn decode(bytes: &[u8]) -> Result<Envelope<'static>, String> {
    let mut r = Reader(bytes);
    let version = r.u8()?;
    if version != VERSION {
        return Err(format!(
            "note version {version}, this node speaks {VERSION}"
        ));
    }
    let stamp = Stamp {
        node: r.u64()?,
        counter: r.u64()?,
        sent_ms: r.u64()? as i64,
    };
    let note = match r.u8()? {
        1 => Note::Beat { name: r.name()? },
        2 => Note::Hello { name: r.name()? },
        3 => {
            let users = r.users()?;
            let n = r.count(4 + 1 + 4)?;
            let mut rooms = Vec::with_capacity(n);
            for _ in 0..n {
                rooms.push((r.room()?, r.users()?));
            }
            Note::State { users, rooms }
        }
        4 => Note::Online { user: r.user()? },
        5 => Note::Offline { user: r.user()? },
        6 => Note::Entered {
            room: r.room()?,
            user: r.user()?,
        },
        7 => Note::Left {
            room: r.room()?,
            user: r.user()?,
        },
        8 => Note::Message {
            target: r.target()?,
            seq: r.positive()?,
            id: r.positive()?,
            frame: Cow::Owned(r.frame()?.to_vec()),
        },
        9 => {
            let dest = match r.u8()? {
                0 => Dest::Room(r.room()?),
                1 => Dest::User(r.user()?),
                2 => Dest::Everyone,
                t => return Err(format!("unknown destination {t}")),
            };
            let except_user = Some(r.u32()?).filter(|u| *u != 0);
            Note::Frame {
                dest,
                except_user,
                frame: Cow::Owned(r.frame()?.to_vec()),
            }
        }
        10 => Note::User { id: r.user()? },
        11 => {
            let name = r.room()?.into_owned();
            let owner = r.user()?;
            let members = r.users()?;
            if members.len() > MAX_ROOM_MEMBERS {
                return Err(format!("{} members, past the bound", members.len()));
            }
            Note::RoomMade(PrivateRoomRow {
                name,
                owner,
                members,
            })
        }
        12 => Note::Member {
            room: r.room()?,
            user: r.user()?,
            add: match r.u8()? {
                0 => false,
                1 => true,
                b => return Err(format!("member flag {b}")),
            },
        },
        13 => Note::AccountsChanged,
        14 => Note::TicketUsed {
            id: r.array()?,
            expires_ms: r.u64()? as i64,
        },
        k => return Err(format!("unknown note kind {k}")),
    };
    if !r.0.is_empty() {
        return Err(format!("{} bytes after the note", r.0.len()));
    }
    Ok(Envelope { stamp, note })
}

/// Checks that `frame` is what this server sends a client: one final,
/// unmasked text frame, its length as its header says, its payload a JSON
/// object in UTF-8 (clients close 1007 on bad UTF-8; one node's bug must
/// not reach another node's clients).
fn check_client_frame(frame: &[u8]) -> Result<(), String> {
    let bad = |why: &str| Err(format!("frame for clients {why}"));
    let [first, len7, rest @ ..] = frame else {
        return bad("cut short");
    };
    if *first != 0x81 {
        return bad("is not one final text frame");
    }
    let (len, payload) = match *len7 {
        126 if rest.len() >= 2 => (u16::from_be_bytes([rest[0], rest[1]]) as u64, &rest[2..]),
        127 if rest.len() >= 8 => {
            let b: [u8; 8] = rest[..8].try_into().map_err(|_| "cut short")?;
            (u64::from_be_bytes(b), &rest[8..])
        }
        126 | 127 => return bad("cut short"),
        n if n & 0x80 != 0 => return bad("is masked"),
        n => (n as u64, rest),
    };
    if payload.len() as u64 != len {
        return bad("is not as long as its header says");
    }
    let text = std::str::from_utf8(payload).map_err(|_| "frame for clients is not UTF-8")?;
    if !text.starts_with('{') {
        return bad("is not a JSON object");
    }
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| format!("frame for clients is not JSON: {e}"))?;
    Ok(())
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn ids(&mut self, ids: &[UserId]) {
        self.u32(ids.len() as u32);
        for id in ids {
            self.u32(*id);
        }
    }
    fn target(&mut self, t: &TargetKey) {
        match t {
            TargetKey::Room(r) => {
                self.u8(0);
                self.str(r);
            }
            TargetKey::Direct(a, b) => {
                self.u8(1);
                self.u32(*a);
                self.u32(*b);
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "note cut short: {n} bytes wanted, {} left",
                self.0.len()
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// A count of items of at least `each` bytes that must fit in what is
    /// left (so a bad one cannot make the receiver allocate gigabytes).
    fn count(&mut self, each: usize) -> Result<usize, String> {
        let n = self.u32()? as usize;
        if n.saturating_mul(each) > self.0.len() {
            return Err(format!("count {n} past the end of the note"));
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.count(1)?;
        self.take(n)
    }
    fn string(&mut self) -> Result<Cow<'static, str>, String> {
        let b = self.bytes()?;
        let s = std::str::from_utf8(b).map_err(|e| format!("bad text in note: {e}"))?;
        Ok(Cow::Owned(s.to_owned()))
    }
    /// A node's name: 1 to `MAX_NODE_NAME` bytes of text without controls.
    fn name(&mut self) -> Result<Cow<'static, str>, String> {
        let s = self.string()?;
        if s.is_empty() || s.len() > MAX_NODE_NAME || s.chars().any(char::is_control) {
            return Err("bad node name".into());
        }
        Ok(s)
    }
    /// A room name that follows the room rule.
    fn room(&mut self) -> Result<Cow<'static, str>, String> {
        let s = self.string()?;
        if !valid_room_name(&s) {
            return Err("bad room name".into());
        }
        Ok(s)
    }
    /// A user id: never 0 (ids start at 1).
    fn user(&mut self) -> Result<UserId, String> {
        match self.u32()? {
            0 => Err("user id 0".into()),
            id => Ok(id),
        }
    }
    fn users(&mut self) -> Result<Vec<UserId>, String> {
        let n = self.count(4)?;
        (0..n).map(|_| self.user()).collect()
    }
    /// A message id or sequence number: from 1, within `i64` (storage's).
    fn positive(&mut self) -> Result<u64, String> {
        match self.u64()? {
            n if n == 0 || n > i64::MAX as u64 => Err(format!("{n} is out of range")),
            n => Ok(n),
        }
    }
    fn frame(&mut self) -> Result<&'a [u8], String> {
        let b = self.bytes()?;
        check_client_frame(b)?;
        Ok(b)
    }
    fn target(&mut self) -> Result<TargetKey, String> {
        match self.u8()? {
            0 => Ok(TargetKey::Room(self.room()?.into_owned().into())),
            1 => {
                let (a, b) = (self.user()?, self.user()?);
                if a > b {
                    return Err("conversation ids out of order".into());
                }
                Ok(TargetKey::Direct(a, b))
            }
            t => Err(format!("unknown target kind {t}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of a note before its fields: version, sender, counter, time.
    const HEAD_BYTES: usize = 1 + 8 + 8 + 8;

    const STAMP: Stamp = Stamp {
        node: 0xdead_beef_cafe,
        counter: 41,
        sent_ms: 1_700_000_000_000,
    };

    /// A server text frame carrying `json`, as `ws::proto` encodes it.
    fn text_frame(json: &str) -> Vec<u8> {
        let mut f = vec![0x81];
        match json.len() {
            n if n < 126 => f.push(n as u8),
            n if n < 65_536 => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(json.as_bytes());
        f
    }

    fn samples() -> Vec<Note<'static>> {
        let long = format!(r#"{{"type":"message","content":"{}"}}"#, "é".repeat(40_000));
        vec![
            Note::Beat { name: "n1".into() },
            Note::Hello { name: "n2".into() },
            Note::State {
                users: vec![1, 2, 3],
                rooms: vec![("general".into(), vec![1, 2]), ("x".into(), vec![])],
            },
            Note::Online { user: 7 },
            Note::Offline { user: 7 },
            Note::Entered {
                room: "general".into(),
                user: 9,
            },
            Note::Left {
                room: "a-b_c".into(),
                user: 9,
            },
            Note::Message {
                target: TargetKey::Room("general".into()),
                seq: 41,
                id: 1 << 40,
                frame: Cow::Owned(text_frame(r#"{"type":"message","content":"é"}"#)),
            },
            Note::Message {
                target: TargetKey::direct(5, 2),
                seq: 1,
                id: 2,
                frame: Cow::Owned(text_frame(&long)),
            },
            Note::Frame {
                dest: Dest::Room("r".into()),
                except_user: Some(4),
                frame: Cow::Owned(text_frame(r#"{"type":"typing","room":"r"}"#)),
            },
            Note::Frame {
                dest: Dest::User(3),
                except_user: None,
                frame: Cow::Owned(text_frame("{}")),
            },
            Note::Frame {
                dest: Dest::Everyone,
                except_user: None,
                frame: Cow::Owned(text_frame(&format!(r#"{{"k":"{}"}}"#, "y".repeat(300)))),
            },
            Note::User { id: 12 },
            Note::RoomMade(PrivateRoomRow {
                name: "ops".into(),
                owner: 1,
                members: vec![1, 2],
            }),
            Note::Member {
                room: "ops".into(),
                user: 2,
                add: false,
            },
            Note::AccountsChanged,
            Note::TicketUsed {
                id: [3; 16],
                expires_ms: 1_700_000_030_000,
            },
        ]
    }

    /// Every note decodes to what was encoded, with its stamp.
    #[test]
    fn round_trips_every_note() {
        for note in samples() {
            let bytes = encode(STAMP, &note);
            let env = decode(&bytes).unwrap_or_else(|e| panic!("{note:?}: {e}"));
            assert_eq!(env.stamp, STAMP);
            assert_eq!(env.note, note);
        }
    }

    /// A cut, padded or foreign note is refused, never half-read or a panic.
    #[test]
    fn refuses_broken_notes() {
        for note in samples() {
            let bytes = encode(STAMP, &note);
            for cut in 0..bytes.len() {
                assert!(decode(&bytes[..cut]).is_err(), "{note:?} cut at {cut}");
            }
            let mut padded = bytes.clone();
            padded.push(0);
            assert!(decode(&padded).is_err());
        }
        let mut other = encode(STAMP, &Note::Online { user: 1 });
        other[0] = VERSION + 1;
        assert!(decode(&other).unwrap_err().contains("version"));
        // A huge count in a short note does not allocate it.
        let mut huge = encode(
            STAMP,
            &Note::State {
                users: vec![],
                rooms: vec![],
            },
        );
        let at = HEAD_BYTES + 1;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_err());
    }

    /// Fields a node cannot have meant are refused before anything is
    /// applied: user id 0 (which once panicked the directory), room names
    /// off the rule, a conversation's ids out of order, node names too long
    /// or with controls, and frames that are no UTF-8 JSON text frame.
    #[test]
    fn refuses_fields_off_their_rules() {
        let refused = |note: Note<'_>| {
            let bytes = encode(STAMP, &note);
            decode(&bytes).expect_err(&format!("{note:?}"))
        };
        assert!(refused(Note::Online { user: 0 }).contains("user id 0"));
        assert!(refused(Note::User { id: 0 }).contains("user id 0"));
        refused(Note::State {
            users: vec![1, 0],
            rooms: vec![],
        });
        for room in ["", "General", "é", "a b", &"r".repeat(65)] {
            refused(Note::Entered {
                room: room.into(),
                user: 1,
            });
        }
        refused(Note::Message {
            target: TargetKey::Direct(5, 2),
            seq: 1,
            id: 1,
            frame: Cow::Owned(text_frame("{}")),
        });
        refused(Note::Message {
            target: TargetKey::direct(5, 2),
            seq: 0,
            id: 1,
            frame: Cow::Owned(text_frame("{}")),
        });
        refused(Note::Beat {
            name: "n".repeat(MAX_NODE_NAME + 1).into(),
        });
        refused(Note::Hello {
            name: "a\nb".into(),
        });
        let frame = |bytes: Vec<u8>| Note::Frame {
            dest: Dest::Everyone,
            except_user: None,
            frame: Cow::Owned(bytes),
        };
        let mut bad_utf8 = text_frame(r#"{"a":"xx"}"#);
        bad_utf8[8] = 0xff;
        let mut masked = text_frame("{}");
        masked[1] |= 0x80;
        let mut binary = text_frame("{}");
        binary[0] = 0x82;
        let mut long_header = text_frame("{}");
        long_header[1] = 3;
        for bad in [
            bad_utf8,
            masked,
            binary,
            long_header,
            text_frame("[1]"),
            text_frame("{\"a\":"),
            vec![0x81],
            vec![0x81, 126, 0],
        ] {
            refused(frame(bad));
        }
    }

    /// The fuzz target's property, bounded for `cargo test`: random bytes
    /// and samples with random bytes overwritten, cut or spliced never
    /// panic the decoder, and whatever it accepts encodes back to exactly
    /// the bytes it came from (so nothing was skipped or guessed).
    #[test]
    fn random_and_mutated_notes_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let accepts_exactly = |bytes: &[u8]| {
            if let Ok(env) = decode(bytes) {
                assert_eq!(encode(env.stamp, &env.note), bytes, "{env:?}");
            }
        };
        let samples: Vec<Vec<u8>> = samples().iter().map(|n| encode(STAMP, n)).collect();
        for _ in 0..20_000 {
            let len = (next() % 96) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(b) = bytes.first_mut() {
                *b = VERSION;
            }
            accepts_exactly(&bytes);
            let mut note = samples[next() as usize % samples.len()].clone();
            for _ in 0..1 + next() % 4 {
                let at = next() as usize % note.len();
                match next() % 3 {
                    0 => note[at] = next() as u8,
                    1 => note.truncate(at.max(1)),
                    _ => {
                        let tail = note.split_off(at);
                        note.extend(bytes.iter().take(8));
                        note.extend(tail);
                    }
                }
            }
            accepts_exactly(&note);
        }
    }
}
