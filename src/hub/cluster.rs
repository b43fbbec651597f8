//! The cluster part: this node's view of the others. It exists only on a
//! node of a cluster (`Parts::cluster` is `None` on a single node), owns the
//! [`Bus`], and keeps what the bus brought: who each peer shows where, and
//! where each room's and conversation's sequence stands here. Bookkeeping
//! only: what a note makes this node do is `peers.rs`, delivery in order is
//! `order.rs`.
//!
//! Every node keeps answering from memory, as a single node does; the bus
//! keeps that memory right. Three things need care:
//!
//! **Order.** PostgreSQL gives each message a per-target `seq` (1, 2, 3, ...,
//! no gap among committed messages) in the append's transaction, and ids
//! that increase with it. Nodes publish after their commit, so two nodes'
//! messages to one room can cross on the bus. Each node therefore delivers
//! a target's messages, its own included, strictly in `seq` order
//! ([`Cluster::sequence`]): the next one goes out at once, a later one
//! waits in a small buffer, an old one is a duplicate and is dropped. A gap
//! that does not close within [`GAP_WAIT_MS`] (the sender died between its
//! commit and its publish, the bus dropped a note, this node was
//! disconnected) is read back from storage (`Request::Catchup`), never
//! skipped. A `join … since` replay that saw commits this node has not
//! delivered yet waits until it has, so the live stream after it neither
//! repeats nor skips a message.
//!
//! **Presence.** Each node announces its own users' first and last
//! connection (`Online`/`Offline`) and room presence (`Entered`/`Left`), and
//! every node keeps, per peer, who is where. A user is shown while any node
//! shows them; `join`, `leave` and `user_status` frames are made by each
//! node for its own connections when the *cluster-wide* view changes, so
//! they never repeat and need no coordination. Nodes `Beat` every
//! [`BEAT_INTERVAL_MS`]; a peer silent for [`PEER_TIMEOUT_MS`] is dead, and
//! its users leave and go offline (unless still connected elsewhere) —
//! within 15 s of a crash. A node that joins (or rejoins) says `Hello` and
//! every peer answers with its whole `State`, which replaces what was known.
//! Online counts per room are kept as counts, never scanned.
//!
//! **Shared state made elsewhere.** New users, private rooms and their
//! members are announced after their commit and applied by every node. A
//! node that lost the bus may have missed any of it, so when the bus comes
//! back it reads everything again (`Resync`), and compares every target's
//! newest `seq` with what it delivered, catching up the difference.
//!
//! The costs, admitted: every node receives every note (one channel), so
//! bus traffic grows with nodes × messages; and every node tracks the
//! sequence of every room and conversation (a few dozen bytes each).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use super::bus::{Bus, BusEvent};
use super::seal::{Rejected, Rejections, Replays, Seal};
use super::wire::{self, Envelope, Note, Stamp, TargetKey};
use crate::accounts::PeerNote;
use crate::clock;
use crate::config::{
    BEAT_INTERVAL_MS, GAP_WAIT_MS, MAX_BUFFERED_PER_TARGET, MAX_HELD_NOTES, MAX_NOTE_BYTES,
    PEER_TIMEOUT_MS,
};
use crate::outbox::ConnRef;
use crate::store::{MsgId, Seq, StoredMessage, Target, UserId};

/// This node's view of the others.
pub struct Cluster {
    /// This process's incarnation (random): the sender id of its notes.
    me: u64,
    /// `--node-id`, for logs.
    name: Box<str>,
    /// Notes to and from the other nodes.
    bus: Box<dyn Bus>,
    /// The cluster key: every note out is tagged, every note in checked.
    seal: Seal,
    /// Notes this incarnation has sent (the next one's counter is one more).
    sent: u64,
    /// The newest counter heard from each sender (`seal.rs`, "Replays").
    fresh: Replays,
    /// Notes turned away, and their rate-limited log.
    rejections: Rejections,
    /// Notes naming users this node is reading from storage, by user, in
    /// the order they came (`peers.rs`); at most `MAX_HELD_NOTES` in all.
    held: HashMap<UserId, Vec<Envelope<'static>>>,
    held_count: usize,
    peers: HashMap<u64, Peer>,
    /// Users online on some peer, with how many peers show them.
    remote_users: HashMap<UserId, u32>,
    /// Every target's sequence as delivered here.
    tracks: HashMap<TargetKey, Track>,
    /// Targets with a message missing, to catch up when it does not come.
    gaps: HashSet<TargetKey>,
    /// `join … since` replays that saw messages not yet delivered here:
    /// finished once the room's sequence reaches their newest.
    replays: Vec<WaitingReplay>,
    /// Rooms looked up for a note that named them (one read per room, not
    /// one per note of a burst).
    looking_up: HashSet<Box<str>>,
    /// The bus is connected.
    up: bool,
    next_beat_ms: i64,
    /// Notes for the HTTP desk (accounts changed elsewhere, tickets used
    /// elsewhere), until the application hands them over.
    for_desk: Vec<PeerNote>,
}

/// What one peer shows of its own connections.
struct Peer {
    name: Box<str>,
    heard_ms: i64,
    users: HashSet<UserId>,
    rooms: HashMap<Box<str>, HashSet<UserId>>,
}

/// One target's place in its sequence on this node.
#[derive(Default)]
struct Track {
    /// The newest `seq` delivered here; everything before it was too.
    delivered: Seq,
    /// Messages that came early, by `seq` (at most `MAX_BUFFERED_PER_TARGET`;
    /// past it they are left to the catch-up).
    early: BTreeMap<Seq, Early>,
    /// When the current gap was first seen.
    gap_since_ms: Option<i64>,
    /// A catch-up read is in flight.
    catching: bool,
}

/// A message that came before its predecessors, waiting for them: its
/// frame, and the sending connection it skips (its own node's messages).
pub struct Early {
    pub id: MsgId,
    pub frame: Rc<[u8]>,
    pub sender: Option<ConnRef>,
}

/// A replay that waits for this node to deliver up to `newest`.
struct WaitingReplay {
    conn: ConnRef,
    room: Box<str>,
    newest: Seq,
    messages: Option<Vec<StoredMessage>>,
}

/// What [`Cluster::sequence`] makes of a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// It is the next: deliver it now, then [`Cluster::advance`].
    Deliver,
    /// It came early and waits for its predecessors (or was delivered
    /// already): nothing to do now.
    Hold,
}

impl Cluster {
    /// This node on `bus`: `heads` (from the snapshot) is where each
    /// target's sequence stands.
    /// `key` must be at least `CLUSTER_KEY_MIN` bytes (checked at start).
    pub fn new(
        bus: Box<dyn Bus>,
        name: &str,
        me: u64,
        key: &[u8],
        heads: &[(Target, Seq)],
    ) -> Cluster {
        let tracks = heads
            .iter()
            .map(|(t, seq)| {
                let track = Track {
                    delivered: *seq,
                    ..Track::default()
                };
                (TargetKey::of(t), track)
            })
            .collect();
        Cluster {
            me,
            name: name.into(),
            bus,
            seal: Seal::new(key).expect("the cluster key was checked at start"),
            sent: 0,
            fresh: Replays::default(),
            rejections: Rejections::default(),
            held: HashMap::new(),
            held_count: 0,
            peers: HashMap::new(),
            remote_users: HashMap::new(),
            tracks,
            gaps: HashSet::new(),
            replays: Vec::new(),
            looking_up: HashSet::new(),
            up: false,
            next_beat_ms: 0,
            for_desk: Vec::new(),
        }
    }

    /// A peer said something the HTTP desk must act on.
    pub fn for_desk(&mut self, note: PeerNote) {
        // One poll is enough for any number of changes heard meanwhile.
        if note == PeerNote::Poll && self.for_desk.contains(&note) {
            return;
        }
        self.for_desk.push(note);
    }

    /// What peers said for the HTTP desk since the last call.
    pub fn take_peer_notes(&mut self) -> Vec<PeerNote> {
        std::mem::take(&mut self.for_desk)
    }

    /// `--node-id`.
    pub fn name(&self) -> &str {
        &self.name
    }

    // ---- the bus -----------------------------------------------------------

    /// Sends a note to every other node, stamped and sealed.
    pub fn note(&mut self, note: &Note<'_>) {
        self.sent += 1;
        let stamp = Stamp {
            node: self.me,
            counter: self.sent,
            sent_ms: clock::now_ms(),
        };
        let sealed = self.seal.close(wire::encode(stamp, note));
        self.bus.send(sealed);
    }

    /// Asks every peer for its `State`.
    pub fn hello(&mut self) {
        let name = self.name.clone();
        self.note(&Note::Hello {
            name: Cow::Borrowed(&name),
        });
    }

    /// Tells every peer this node is alive, when it is time to.
    pub fn beat(&mut self, now: i64) {
        if now < self.next_beat_ms {
            return;
        }
        self.next_beat_ms = now + BEAT_INTERVAL_MS;
        let name = self.name.clone();
        self.note(&Note::Beat {
            name: Cow::Borrowed(&name),
        });
        self.fresh.forget_silent(now);
        if let Some(line) = self.rejections.summary(now) {
            log::warn!("{line}");
        }
    }

    /// The next event from the bus, with notes checked and decoded: only a
    /// note that is within `MAX_NOTE_BYTES`, verifies with the cluster key,
    /// decodes, and is neither stale nor a replay comes out (`seal.rs`).
    /// This node's own notes (a bus may echo them) are skipped; the rest
    /// are counted and logged, rate-limited.
    pub fn receive(&mut self) -> Option<Heard> {
        loop {
            let bytes = match self.bus.receive()? {
                BusEvent::Up => return Some(Heard::Up),
                BusEvent::Down => return Some(Heard::Down),
                BusEvent::Note(bytes) => bytes,
            };
            match self.check(&bytes, clock::now_ms()) {
                Ok(env) if env.stamp.node == self.me => {}
                Ok(env) => return Some(Heard::Note(Box::new(env))),
                Err((why, detail)) => {
                    if let Some(line) = self.rejections.count(why, &detail, clock::now_ms()) {
                        log::warn!("{line}");
                    }
                }
            }
        }
    }

    /// A note from the bus, if it is one to apply (see [`Cluster::receive`]).
    fn check(&mut self, bytes: &[u8], now: i64) -> Result<Envelope<'static>, (Rejected, String)> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err((Rejected::TooLong, format!("{} bytes", bytes.len())));
        }
        let note = self
            .seal
            .open(bytes)
            .ok_or((Rejected::Forged, String::new()))?;
        let env = wire::decode(note).map_err(|e| (Rejected::Malformed, e))?;
        if env.stamp.node != self.me {
            self.fresh
                .admit(&env.stamp, now)
                .map_err(|why| (why, String::new()))?;
        }
        Ok(env)
    }

    /// Notes turned away since start (`/metrics`).
    pub fn rejected_notes(&self) -> u64 {
        self.rejections.total()
    }

    /// This node starts reading `user`'s row (`peers.rs`); false when a
    /// read of it is already under way.
    pub fn await_user(&mut self, user: UserId) -> bool {
        match self.held.entry(user) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Vec::new());
                true
            }
        }
    }

    /// Keeps `env` until `user`'s row, being read, is here; false when
    /// [`MAX_HELD_NOTES`] are held already (the note is dropped).
    pub fn hold(&mut self, user: UserId, env: Envelope<'static>) -> bool {
        if self.held_count >= MAX_HELD_NOTES {
            return false;
        }
        self.held_count += 1;
        self.held.entry(user).or_default().push(env);
        true
    }

    /// Users whose rows are being read.
    pub fn awaited_users(&self) -> Vec<UserId> {
        self.held.keys().copied().collect()
    }

    /// The read of `user`'s row is over: the notes that waited for it, in
    /// the order they came.
    pub fn release(&mut self, user: UserId) -> Vec<Envelope<'static>> {
        let notes = self.held.remove(&user).unwrap_or_default();
        self.held_count -= notes.len();
        notes
    }

    /// Whether the bus is connected (`/healthz`).
    pub fn is_up(&self) -> bool {
        self.up
    }

    pub fn set_up(&mut self, up: bool) {
        self.up = up;
    }

    // ---- peers -------------------------------------------------------------

    /// Other nodes heard from recently (`/metrics`).
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// `node` was heard from now. False when it is a peer this node did not
    /// know (it is known from now on, by the name `name` when given).
    pub fn heard(&mut self, node: u64, now: i64, name: Option<&str>) -> bool {
        let known = self.peers.contains_key(&node);
        let peer = self.peers.entry(node).or_insert_with(|| Peer {
            name: "?".into(),
            heard_ms: now,
            users: HashSet::new(),
            rooms: HashMap::new(),
        });
        peer.heard_ms = now;
        if let Some(name) = name {
            peer.name = name.into();
        }
        known
    }

    /// Other incarnations of the node called `name` than `node`: a
    /// restarted node's old self.
    pub fn namesakes(&self, node: u64, name: &str) -> Vec<u64> {
        self.peers
            .iter()
            .filter(|(k, p)| **k != node && *p.name == *name)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Peers silent for longer than [`PEER_TIMEOUT_MS`], with their names.
    pub fn silent_peers(&self, now: i64) -> Vec<(u64, Box<str>)> {
        self.peers
            .iter()
            .filter(|(_, p)| now - p.heard_ms > PEER_TIMEOUT_MS)
            .map(|(k, p)| (*k, p.name.clone()))
            .collect()
    }

    pub fn remove_peer(&mut self, node: u64) {
        self.peers.remove(&node);
    }

    /// Whether `user` is online on another node.
    pub fn shows(&self, user: UserId) -> bool {
        self.remote_users.contains_key(&user)
    }

    /// Peer `node` shows `user` online (`on`) or no longer. True when the
    /// cluster-wide view changed: the first peer to show them, or the last.
    pub fn peer_user(&mut self, node: u64, user: UserId, on: bool) -> bool {
        let Some(peer) = self.peers.get_mut(&node) else {
            return false;
        };
        if on {
            peer.users.insert(user) && {
                let n = self.remote_users.entry(user).or_insert(0);
                *n += 1;
                *n == 1
            }
        } else {
            peer.users.remove(&user)
                && match self.remote_users.get_mut(&user) {
                    Some(n) if *n > 1 => {
                        *n -= 1;
                        false
                    }
                    Some(_) => {
                        self.remote_users.remove(&user);
                        true
                    }
                    None => false,
                }
        }
    }

    /// Peer `node` shows `user` in `room` (`on`) or no longer. True when
    /// that is news about the peer (the room's own counts are the rooms
    /// part's, told by the caller).
    pub fn peer_room(&mut self, node: u64, room: &str, user: UserId, on: bool) -> bool {
        let Some(peer) = self.peers.get_mut(&node) else {
            return false;
        };
        if on {
            return peer.rooms.entry(room.into()).or_default().insert(user);
        }
        let Some(users) = peer.rooms.get_mut(room) else {
            return false;
        };
        let removed = users.remove(&user);
        if users.is_empty() {
            peer.rooms.remove(room);
        }
        removed
    }

    /// What a peer's `State` no longer shows of what it showed (`None`
    /// for an unknown peer).
    pub fn gone_from_state(
        &self,
        node: u64,
        users: &[UserId],
        rooms: &HashMap<Box<str>, Vec<UserId>>,
    ) -> Option<Gone> {
        let peer = self.peers.get(&node)?;
        let from_rooms = peer
            .rooms
            .iter()
            .flat_map(|(r, us)| us.iter().map(move |u| (r.clone(), *u)))
            .filter(|(r, u)| !rooms.get(r).is_some_and(|now| now.contains(u)))
            .collect();
        let users: HashSet<UserId> = users.iter().copied().collect();
        let offline = peer.users.difference(&users).copied().collect();
        Some(Gone {
            from_rooms,
            offline,
        })
    }

    /// Everyone the peers show in `room`.
    pub fn shown_in(&self, room: &str) -> Vec<UserId> {
        self.peers
            .values()
            .filter_map(|p| p.rooms.get(room))
            .flatten()
            .copied()
            .collect()
    }

    /// A room lookup for a note starts: false when one is in flight already.
    pub fn start_lookup(&mut self, room: &str) -> bool {
        self.looking_up.insert(room.into())
    }

    pub fn end_lookup(&mut self, room: &str) {
        self.looking_up.remove(room);
    }

    // ---- order -------------------------------------------------------------

    /// Where message `seq` of `key` stands: the next to deliver, or held
    /// (early, in the buffer; or old, dropped). `interested`: a connection
    /// here receives `key`'s messages (if none does, a gap before this one
    /// is not worth reading back).
    pub fn sequence(
        &mut self,
        key: &TargetKey,
        seq: Seq,
        early: Early,
        interested: bool,
        now: i64,
    ) -> Step {
        // A target missing from the snapshot's heads is newer than it: its
        // first message is seq 1.
        let track = self.tracks.entry(key.clone()).or_default();
        if seq <= track.delivered {
            return Step::Hold;
        }
        if seq > track.delivered + 1 && !interested {
            // Nobody here could miss what came before: no need to read it.
            track.delivered = seq - 1;
            track.early.clear();
        }
        if seq == track.delivered + 1 {
            return Step::Deliver;
        }
        if track.early.len() < MAX_BUFFERED_PER_TARGET {
            track.early.insert(seq, early);
        }
        track.gap_since_ms.get_or_insert(now);
        self.gaps.insert(key.clone());
        Step::Hold
    }

    /// `seq` of `key` was delivered: what waited behind it is ready, in
    /// order, and the gap clock closes or restarts. Returns the ready
    /// messages and the newest `seq` delivered with them.
    pub fn advance(&mut self, key: &TargetKey, seq: Seq, now: i64) -> (Vec<Early>, Seq) {
        let track = self.tracks.entry(key.clone()).or_default();
        track.delivered = seq;
        let mut ready = Vec::new();
        while let Some(e) = track.early.first_entry() {
            if *e.key() != track.delivered + 1 {
                break;
            }
            track.delivered += 1;
            ready.push(e.remove());
        }
        let delivered = track.delivered;
        let waiting_replay = self
            .replays
            .iter()
            .any(|r| matches!(key, TargetKey::Room(n) if *n == r.room) && r.newest > delivered);
        if track.early.is_empty() && !waiting_replay {
            track.gap_since_ms = None;
            self.gaps.remove(key);
        } else {
            track.gap_since_ms = Some(now);
        }
        (ready, delivered)
    }

    /// A message of a target nobody here receives: only its place in the
    /// sequence is kept.
    pub fn pass(&mut self, key: TargetKey, seq: Seq) {
        let track = self.tracks.entry(key.clone()).or_default();
        track.delivered = track.delivered.max(seq);
        track.early.retain(|s, _| *s > seq);
        if track.early.is_empty() {
            track.gap_since_ms = None;
            self.gaps.remove(&key);
        }
    }

    /// Whether a replay of `room` must wait for this node to deliver up to
    /// its newest message; if so, it is kept (and the gap noted, so a
    /// message that never comes is read back).
    pub fn replay_must_wait(
        &mut self,
        conn: ConnRef,
        room: &str,
        messages: &mut Option<Vec<StoredMessage>>,
        now: i64,
    ) -> bool {
        let Some(newest) = messages.as_ref().and_then(|m| m.last()).map(|m| m.seq) else {
            return false;
        };
        let key = TargetKey::Room(room.into());
        let track = self.tracks.entry(key.clone()).or_default();
        if newest <= track.delivered {
            return false;
        }
        track.gap_since_ms.get_or_insert(now);
        self.gaps.insert(key);
        self.replays.push(WaitingReplay {
            conn,
            room: room.into(),
            newest,
            messages: messages.take(),
        });
        true
    }

    /// The replays of `room` that waited for `delivered` and may go now.
    pub fn replays_ready(
        &mut self,
        room: &str,
        delivered: Seq,
    ) -> Vec<(ConnRef, Option<Vec<StoredMessage>>)> {
        let mut done = Vec::new();
        if self.replays.is_empty() {
            return done;
        }
        self.replays.retain_mut(|r| {
            if &*r.room == room && r.newest <= delivered {
                done.push((r.conn, r.messages.take()));
                false
            } else {
                true
            }
        });
        done
    }

    /// The gaps that outlived [`GAP_WAIT_MS`] with no read in flight: each
    /// target with the `seq` to read after.
    pub fn gaps_due(&self, now: i64) -> Vec<(TargetKey, Seq)> {
        self.gaps
            .iter()
            .filter_map(|k| {
                let t = self.tracks.get(k)?;
                let late = t.gap_since_ms.is_some_and(|s| now - s >= GAP_WAIT_MS);
                (late && !t.catching).then(|| (k.clone(), t.delivered))
            })
            .collect()
    }

    /// A catch-up read of `key` is in flight.
    pub fn catching(&mut self, key: &TargetKey) {
        if let Some(t) = self.tracks.get_mut(key) {
            t.catching = true;
        }
    }

    /// The catch-up read of `key` came back; when it `failed`, the gap
    /// waits again. False when `key` is not tracked.
    pub fn caught_up(&mut self, key: &TargetKey, failed: bool, now: i64) -> bool {
        let Some(track) = self.tracks.get_mut(key) else {
            return false;
        };
        track.catching = false;
        if failed {
            track.gap_since_ms = Some(now);
        }
        true
    }

    /// The newest `seq` of `key` delivered here.
    pub fn delivered(&self, key: &TargetKey) -> Seq {
        self.tracks.get(key).map_or(0, |t| t.delivered)
    }

    /// What a catch-up does with message `seq` of `key`: `None` when it was
    /// delivered already, else the early copy the bus brought, if any.
    pub fn take_missed(&mut self, key: &TargetKey, seq: Seq) -> Option<Option<Early>> {
        let track = self.tracks.get_mut(key)?;
        if seq <= track.delivered {
            return None;
        }
        Some(track.early.remove(&seq))
    }

    /// After a resync: `key`'s newest stored `seq` is `head`. Returns the
    /// `seq` to catch up after when this node is behind and someone here
    /// receives `key` (`interested`); otherwise the sequence just moves on.
    pub fn behind(
        &mut self,
        key: &TargetKey,
        head: Seq,
        interested: bool,
        now: i64,
    ) -> Option<Seq> {
        let track = self.tracks.entry(key.clone()).or_default();
        if head <= track.delivered {
            return None;
        }
        if !interested {
            // Nobody here could have missed it.
            track.delivered = head;
            track.early.retain(|s, _| *s > head);
            return None;
        }
        track.gap_since_ms = Some(now - GAP_WAIT_MS);
        self.gaps.insert(key.clone());
        Some(track.delivered)
    }
}

/// What a peer no longer shows: users out of rooms, users offline.
pub struct Gone {
    pub from_rooms: Vec<(Box<str>, UserId)>,
    pub offline: Vec<UserId>,
}

/// What the bus brought, as [`Cluster::receive`] hands it on.
pub enum Heard {
    Up,
    Down,
    /// Boxed: an envelope is large beside the other variants.
    Note(Box<Envelope<'static>>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::bus::LocalOnly;

    fn early(id: MsgId) -> Early {
        Early {
            id,
            frame: Rc::from(&b"m"[..]),
            sender: None,
        }
    }

    /// Messages of a target go out in `seq` order: the next at once, a
    /// later one held until its predecessors come, an old one never.
    #[test]
    fn sequence_holds_what_comes_early() {
        let mut c = Cluster::new(Box::new(LocalOnly), "n1", 1, &[7; 32], &[]);
        let key = TargetKey::Room("general".into());
        assert_eq!(c.sequence(&key, 2, early(20), true, 0), Step::Hold);
        assert_eq!(c.gaps_due(GAP_WAIT_MS), vec![(key.clone(), 0)]);
        assert_eq!(c.sequence(&key, 1, early(10), true, 0), Step::Deliver);
        let (ready, delivered) = c.advance(&key, 1, 0);
        assert_eq!((ready.len(), ready[0].id, delivered), (1, 20, 2));
        assert!(c.gaps_due(GAP_WAIT_MS).is_empty(), "the gap closed");
        assert_eq!(c.sequence(&key, 2, early(20), true, 0), Step::Hold, "old");
        assert_eq!(
            c.sequence(&key, 9, early(90), false, 0),
            Step::Deliver,
            "nobody here could miss 3-8"
        );
    }

    /// Presence is per peer: a user shown by two peers goes offline when the
    /// last of them says so.
    #[test]
    fn a_user_is_shown_while_any_peer_shows_them() {
        let mut c = Cluster::new(Box::new(LocalOnly), "n1", 1, &[7; 32], &[]);
        for node in [2, 3] {
            assert!(!c.heard(node, 0, None), "new peer");
        }
        assert!(c.peer_user(2, 7, true), "first to show");
        assert!(!c.peer_user(3, 7, true));
        assert!(!c.peer_user(2, 7, false));
        assert!(c.shows(7));
        assert!(c.peer_user(3, 7, false), "last");
        assert!(!c.shows(7));
        assert!(!c.peer_user(9, 7, true), "an unknown peer shows nothing");
    }
}
