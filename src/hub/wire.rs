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
//! `u32` length. [`decode`] never panics on bad input: a note from a newer
//! or broken node is dropped with an error, never half-applied.

use std::borrow::Cow;

use crate::store::{MsgId, PasswordHash, PrivateRoomRow, Seq, Target, UserId, UserRow};

/// Bumped when the encoding changes; a node ignores notes of another version.
const VERSION: u8 = 1;

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
    /// A user signed up on the sender (so logins work everywhere).
    User(UserRow),
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

/// A note with who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The sender's incarnation: random per process, so a restarted node
    /// is a new peer and its old self's state can be dropped.
    pub node: u64,
    pub note: Note<'a>,
}

pub fn encode(node: u64, note: &Note<'_>) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64));
    w.u8(VERSION);
    w.u64(node);
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
        Note::User(row) => {
            w.u8(10);
            w.u32(row.id);
            w.str(&row.username);
            w.str(&row.email);
            w.u32(row.password.iterations);
            w.0.extend_from_slice(&row.password.salt);
            w.0.extend_from_slice(&row.password.hash);
            w.u64(row.created_ms as u64);
            w.u64(row.last_seen_ms.map_or(u64::MAX, |t| t as u64));
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
    let node = r.u64()?;
    let note = match r.u8()? {
        1 => Note::Beat { name: r.string()? },
        2 => Note::Hello { name: r.string()? },
        3 => {
            let users = r.ids()?;
            let n = r.count()?;
            let mut rooms = Vec::with_capacity(n.min(4096));
            for _ in 0..n {
                rooms.push((r.string()?, r.ids()?));
            }
            Note::State { users, rooms }
        }
        4 => Note::Online { user: r.u32()? },
        5 => Note::Offline { user: r.u32()? },
        6 => Note::Entered {
            room: r.string()?,
            user: r.u32()?,
        },
        7 => Note::Left {
            room: r.string()?,
            user: r.u32()?,
        },
        8 => Note::Message {
            target: r.target()?,
            seq: r.u64()?,
            id: r.u64()?,
            frame: Cow::Owned(r.bytes()?.to_vec()),
        },
        9 => {
            let dest = match r.u8()? {
                0 => Dest::Room(r.string()?),
                1 => Dest::User(r.u32()?),
                2 => Dest::Everyone,
                t => return Err(format!("unknown destination {t}")),
            };
            let except_user = Some(r.u32()?).filter(|u| *u != 0);
            Note::Frame {
                dest,
                except_user,
                frame: Cow::Owned(r.bytes()?.to_vec()),
            }
        }
        10 => Note::User(UserRow {
            id: r.u32()?,
            username: r.string()?.into_owned(),
            email: r.string()?.into_owned(),
            password: PasswordHash {
                iterations: r.u32()?,
                salt: r.array()?,
                hash: r.array()?,
            },
            created_ms: r.u64()? as i64,
            last_seen_ms: Some(r.u64()?).filter(|t| *t != u64::MAX).map(|t| t as i64),
            // Roles, bans and profiles come from storage (the change log),
            // never from the bus.
            account: Default::default(),
        }),
        11 => Note::RoomMade(PrivateRoomRow {
            name: r.string()?.into_owned(),
            owner: r.u32()?,
            members: r.ids()?,
        }),
        12 => Note::Member {
            room: r.string()?,
            user: r.u32()?,
            add: r.u8()? != 0,
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
    Ok(Envelope { node, note })
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
    /// A length that must fit in what is left (so a bad one cannot make
    /// the receiver allocate gigabytes).
    fn count(&mut self) -> Result<usize, String> {
        let n = self.u32()? as usize;
        if n > self.0.len() {
            return Err(format!("count {n} past the end of the note"));
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.count()?;
        self.take(n)
    }
    fn string(&mut self) -> Result<Cow<'static, str>, String> {
        let b = self.bytes()?;
        let s = std::str::from_utf8(b).map_err(|e| format!("bad text in note: {e}"))?;
        Ok(Cow::Owned(s.to_owned()))
    }
    fn ids(&mut self) -> Result<Vec<UserId>, String> {
        let n = self.count()?;
        (0..n).map(|_| self.u32()).collect()
    }
    fn target(&mut self) -> Result<TargetKey, String> {
        match self.u8()? {
            0 => Ok(TargetKey::Room(self.string()?.into_owned().into())),
            1 => Ok(TargetKey::Direct(self.u32()?, self.u32()?)),
            t => Err(format!("unknown target kind {t}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Note<'static>> {
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
                room: "é".into(),
                user: 9,
            },
            Note::Message {
                target: TargetKey::Room("general".into()),
                seq: 41,
                id: 1 << 40,
                frame: Cow::Owned(vec![0x81, 3, b'a', b'\r', b'\n']),
            },
            Note::Message {
                target: TargetKey::direct(5, 2),
                seq: 1,
                id: 2,
                frame: Cow::Owned(vec![]),
            },
            Note::Frame {
                dest: Dest::Room("r".into()),
                except_user: Some(4),
                frame: Cow::Owned(vec![1, 2]),
            },
            Note::Frame {
                dest: Dest::User(3),
                except_user: None,
                frame: Cow::Owned(vec![]),
            },
            Note::Frame {
                dest: Dest::Everyone,
                except_user: None,
                frame: Cow::Owned(vec![9]),
            },
            Note::User(UserRow {
                id: 12,
                username: "alice".into(),
                email: "a@x.org".into(),
                password: PasswordHash {
                    iterations: 1000,
                    salt: [7; 16],
                    hash: [9; 32],
                },
                created_ms: 1_700_000_000_000,
                last_seen_ms: None,
                account: Default::default(),
            }),
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

    /// Every note decodes to what was encoded, with its sender.
    #[test]
    fn round_trips_every_note() {
        for note in samples() {
            let bytes = encode(0xdead_beef_cafe, &note);
            let env = decode(&bytes).unwrap_or_else(|e| panic!("{note:?}: {e}"));
            assert_eq!(env.node, 0xdead_beef_cafe);
            assert_eq!(env.note, note);
        }
    }

    /// A cut, padded or foreign note is refused, never half-read or a panic.
    #[test]
    fn refuses_broken_notes() {
        for note in samples() {
            let bytes = encode(1, &note);
            for cut in 0..bytes.len() {
                assert!(decode(&bytes[..cut]).is_err(), "{note:?} cut at {cut}");
            }
            let mut padded = bytes.clone();
            padded.push(0);
            assert!(decode(&padded).is_err());
        }
        let mut other = encode(1, &Note::Online { user: 1 });
        other[0] = VERSION + 1;
        assert!(decode(&other).unwrap_err().contains("version"));
        // A huge count in a short note does not allocate it.
        let mut huge = encode(
            1,
            &Note::State {
                users: vec![],
                rooms: vec![],
            },
        );
        huge[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_err());
    }
}
