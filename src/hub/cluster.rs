//! The hub as one node of a cluster: what it tells the other nodes over the
//! [`Bus`](super::Bus), and what it does with what they tell it.
//!
//! Every node keeps answering from memory, as a single node does; the bus
//! keeps that memory right. Three things need care:
//!
//! **Order.** PostgreSQL gives each message a per-target `seq` (1, 2, 3, ...,
//! no gap among committed messages) in the append's transaction, and ids
//! that increase with it. Nodes publish after their commit, so two nodes'
//! messages to one room can cross on the bus. Each node therefore delivers
//! a target's messages, its own included, strictly in `seq` order
//! ([`Hub::sequence`]): the next one goes out at once, a later one waits in
//! a small buffer, an old one is a duplicate and is dropped. A gap that does
//! not close within [`GAP_WAIT_MS`] (the sender died between its commit and
//! its publish, the bus dropped a note, this node was disconnected) is read
//! back from storage ([`Request::Catchup`]), never skipped. A `join … since`
//! replay that saw commits this node has not delivered yet waits until it
//! has, so the live stream after it neither repeats nor skips a message.
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

use super::fanout::{BusEvent, Except, Topic};
use super::presence::FrameError;
use super::rooms::RoomId;
use super::wire::{self, Dest, Envelope, Note, TargetKey};
use super::{Ctx, Hub, Wait};
use crate::clock;
use crate::config::{
    BEAT_INTERVAL_MS, CATCHUP_LIMIT, GAP_WAIT_MS, MAX_BUFFERED_PER_TARGET, PEER_TIMEOUT_MS,
};
use crate::outbox::{ConnRef, Outbox};
use crate::store::Busy;
use crate::store::{
    MsgId, PrivateRoomRow, Request, Seq, Snapshot, StoredMessage, Target, Ticket, UserId, UserRow,
};
use crate::ws::proto::{Out, Ts, stored_frame};

/// This node's view of the others.
pub struct Cluster {
    /// This process's incarnation (random): the sender id of its notes.
    me: u64,
    /// `--node-id`, for logs.
    name: Box<str>,
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

struct Early {
    id: MsgId,
    frame: Rc<[u8]>,
    except: Except,
}

struct WaitingReplay {
    conn: ConnRef,
    room: Box<str>,
    newest: Seq,
    messages: Option<Vec<StoredMessage>>,
}

impl Hub {
    /// Makes this hub one node of a cluster: `heads` (from the snapshot) is
    /// where each target's sequence stands.
    pub fn join_cluster(&mut self, name: &str, me: u64, heads: &[(Target, Seq)]) {
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
        self.cluster = Some(Cluster {
            me,
            name: name.into(),
            peers: HashMap::new(),
            remote_users: HashMap::new(),
            tracks,
            gaps: HashSet::new(),
            replays: Vec::new(),
            looking_up: HashSet::new(),
            up: false,
            next_beat_ms: 0,
        });
    }

    /// This node's incarnation (0 on a single node).
    pub(super) fn node(&self) -> u64 {
        self.cluster.as_ref().map_or(0, |c| c.me)
    }

    /// Whether this node is one of a cluster (its memory may lag what
    /// other nodes just stored).
    pub fn in_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// Whether this node is in a cluster whose bus is down (`/healthz`).
    pub fn bus_down(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| !c.up)
    }

    /// Other nodes heard from recently (`/metrics`).
    pub fn peers(&self) -> usize {
        self.cluster.as_ref().map_or(0, |c| c.peers.len())
    }

    /// Whether `user` is online on another node.
    pub(super) fn shown_elsewhere(&self, user: UserId) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.remote_users.contains_key(&user))
    }

    /// Sends a note to the other nodes (nothing on a single node).
    pub(super) fn note(&mut self, note: &Note<'_>) {
        if let Some(c) = &self.cluster {
            let bytes = wire::encode(c.me, note);
            self.bus.send(bytes);
        }
    }

    /// Asks every peer for its `State`.
    fn say_hello(&mut self) {
        let Some(c) = &self.cluster else { return };
        let hello = wire::encode(
            c.me,
            &Note::Hello {
                name: Cow::Borrowed(&c.name),
            },
        );
        self.bus.send(hello);
    }

    /// Tells every peer everything this node shows.
    fn send_state(&mut self) {
        let state = wire::encode(self.node(), &self.own_state());
        self.bus.send(state);
    }

    /// Everything this node shows of its own connections.
    pub(super) fn own_state(&self) -> Note<'_> {
        let users = self.online.keys().copied().collect();
        let rooms = self
            .rooms
            .iter()
            .filter(|(_, r)| !r.presence.is_empty())
            .map(|(_, r)| {
                (
                    Cow::Borrowed(&*r.name),
                    r.presence.keys().copied().collect(),
                )
            })
            .collect();
        Note::State { users, rooms }
    }

    /// A user signed up here: every node learns the row (logins anywhere).
    pub fn announce_user(&mut self, cx: &mut Ctx<'_, impl Outbox>, id: UserId) {
        let Some(u) = cx.users.get(id) else { return };
        let row = UserRow {
            id,
            username: u.name.to_string(),
            email: u.email.to_string(),
            password: u.password.clone(),
            created_ms: clock::now_ms(),
            last_seen_ms: u.last_seen_ms,
        };
        self.note(&Note::User(row));
    }

    // ---- the bus -----------------------------------------------------------

    /// Handles what the bus brought (the loop was woken).
    pub fn on_bus(&mut self, cx: &mut Ctx<'_, impl Outbox>) {
        while let Some(event) = self.bus.receive() {
            let Some(me) = self.cluster.as_ref().map(|c| c.me) else {
                continue;
            };
            match event {
                BusEvent::Up => self.on_bus_up(cx),
                BusEvent::Down => {
                    if let Some(c) = &mut self.cluster {
                        c.up = false;
                    }
                    log::warn!(
                        "cluster: the bus is down; serving this node's connections only, \
                         acking what storage commits"
                    );
                }
                BusEvent::Note(bytes) => match wire::decode(&bytes) {
                    Ok(env) if env.node == me => {}
                    Ok(env) => self.on_note(cx, env),
                    Err(e) => log::warn!("cluster: dropped a note from the bus: {e}"),
                },
            }
        }
    }

    /// Connected, first or again: ask every peer for its state, send ours,
    /// and read back what may have been missed.
    fn on_bus_up(&mut self, cx: &mut Ctx<'_, impl Outbox>) {
        let Some(c) = &mut self.cluster else { return };
        c.up = true;
        log::info!("cluster: node {} is on the bus", c.name);
        self.say_hello();
        self.send_state();
        let ticket = self.park(Wait::Resync);
        if cx.store.submit(Request::Resync { ticket }).is_err() {
            // Storage is full: the tick's gap checks still catch up by
            // sequence; users and rooms made meanwhile come with their notes.
            self.waiting.remove(&ticket);
        }
    }

    fn on_note(&mut self, cx: &mut Ctx<'_, impl Outbox>, env: Envelope<'static>) {
        let now = clock::now_ms();
        let node = env.node;
        let c = self.cluster.as_mut().expect("on_note runs in a cluster");
        let known = c.peers.contains_key(&node);
        let peer = c.peers.entry(node).or_insert_with(|| Peer {
            name: "?".into(),
            heard_ms: now,
            users: HashSet::new(),
            rooms: HashMap::new(),
        });
        peer.heard_ms = now;
        match env.note {
            Note::Beat { name } => {
                peer.name = name.as_ref().into();
                if !known {
                    // A peer this node never heard say hello (a note was
                    // lost): ask everyone for their state again.
                    self.say_hello();
                }
            }
            Note::Hello { name } => {
                peer.name = name.as_ref().into();
                // A restarted node is a new incarnation: its old self is gone.
                let stale: Vec<u64> = c
                    .peers
                    .iter()
                    .filter(|(k, p)| **k != node && *p.name == *name)
                    .map(|(k, _)| *k)
                    .collect();
                for old in stale {
                    log::info!("cluster: node {name} restarted; its old connections are gone");
                    self.drop_peer(cx, old);
                }
                if !known {
                    log::info!("cluster: node {name} joined");
                }
                self.send_state();
            }
            Note::State { users, rooms } => {
                let rooms = rooms
                    .into_iter()
                    .map(|(r, users)| (r.into_owned().into_boxed_str(), users))
                    .collect();
                self.replace_state(cx, node, users, rooms);
            }
            Note::Online { user } => self.peer_user(cx, node, user, true),
            Note::Offline { user } => self.peer_user(cx, node, user, false),
            Note::Entered { room, user } => self.peer_room(cx, node, &room, user, true),
            Note::Left { room, user } => self.peer_room(cx, node, &room, user, false),
            Note::Message {
                target,
                seq,
                id,
                frame,
            } => {
                self.last_msg_id = self.last_msg_id.max(id);
                let topic = match &target {
                    TargetKey::Room(name) => match self.rooms.id(name) {
                        Some(rid) => {
                            self.rooms.get_mut(rid).has_messages = true;
                            Topic::Room(rid)
                        }
                        None => {
                            // Nobody here is in it, and it may be private (its
                            // `RoomMade` comes from another node, in no set
                            // order with this): storage says what it is.
                            let _ = self.look_up_room(cx, name, None, true);
                            return self.pass(target, seq);
                        }
                    },
                    TargetKey::Direct(a, b) => Topic::Conversation(*a, *b),
                };
                let frame: Rc<[u8]> = frame.into_owned().into();
                let n = self.sequence(cx, target, topic, seq, id, &frame, Except::Nobody);
                cx.out.metrics().deliveries += n;
            }
            Note::Frame {
                dest,
                except_user,
                frame,
            } => {
                let topic = match dest {
                    Dest::Room(name) => match self.rooms.id(&name) {
                        Some(id) => Topic::Room(id),
                        // Nobody here is in a room this node does not know.
                        None => return,
                    },
                    Dest::User(u) => Topic::User(u),
                    Dest::Everyone => Topic::Everyone,
                };
                let except = except_user.map_or(Except::Nobody, Except::User);
                let frame: Rc<[u8]> = frame.into_owned().into();
                self.deliver(topic, except, None, &frame, cx.out);
            }
            Note::User(row) => {
                if cx.users.get(row.id).is_none() && cx.users.find(&row.username).is_none() {
                    cx.users.insert(row);
                }
            }
            Note::RoomMade(row) => self.apply_private_room(cx, &row),
            Note::Member { room, user, add } => {
                if let Some(id) = self.rooms.id(&room) {
                    self.apply_membership(cx, id, user, add);
                }
            }
        }
    }

    /// A private room made elsewhere (or read back by a resync).
    fn apply_private_room(&mut self, cx: &mut Ctx<'_, impl Outbox>, row: &PrivateRoomRow) {
        if let Some(id) = self.rooms.id(&row.name)
            && self.rooms.get(id).private.is_some()
        {
            // Known: bring the members in line (a resync after missed notes).
            let now: HashSet<UserId> = row.members.iter().copied().collect();
            let before: Vec<UserId> = self
                .rooms
                .get(id)
                .private
                .as_ref()
                .map_or(Vec::new(), |p| p.members.iter().copied().collect());
            for u in before.iter().filter(|u| !now.contains(u)) {
                self.apply_membership(cx, id, *u, false);
            }
            for u in now.iter().filter(|u| !before.contains(u)) {
                self.apply_membership(cx, id, *u, true);
            }
            return;
        }
        self.created.entry(row.owner).or_default().private += 1;
        let was_public = self.rooms.id(&row.name);
        let id = self.install_private_room(cx, row);
        if was_public.is_some() {
            // Joined here as public before the news came: non-members go.
            self.drop_non_members(cx, id);
        }
    }

    /// Every connection here in room `id` whose user is not a member leaves
    /// it, and is told so (as a removed member is).
    fn drop_non_members(&mut self, cx: &mut Ctx<'_, impl Outbox>, id: RoomId) {
        let room = self.rooms.get(id);
        let Some(p) = &room.private else { return };
        let outsiders: Vec<UserId> = room
            .presence
            .keys()
            .filter(|u| !p.members.contains(u))
            .copied()
            .collect();
        let name = room.name.clone();
        for user in outsiders {
            self.drop_member_sessions(cx, id, user);
            let frame = self.encoder.shared(&Out::Leave {
                room: &name,
                user: cx.users.name(user),
            });
            self.deliver(Topic::User(user), Except::Nobody, None, &frame, cx.out);
        }
    }

    /// Asks storage whether room `name`, unknown here, is private, before
    /// it is opened: for a `join` (`joiner`), or for a note that named it.
    /// `Err` when storage is full.
    pub(super) fn look_up_room(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        name: &str,
        joiner: Option<(ConnRef, Option<u64>)>,
        has_messages: bool,
    ) -> Result<(), Busy> {
        if joiner.is_none()
            && let Some(c) = &mut self.cluster
            && !c.looking_up.insert(name.into())
        {
            return Ok(());
        }
        let ticket = self.park(Wait::RoomLookup {
            room: name.into(),
            joiner,
            has_messages,
        });
        let req = Request::RoomInfo {
            ticket,
            name: name.to_string(),
        };
        cx.store.submit(req).inspect_err(|_| {
            self.waiting.remove(&ticket);
            if let Some(c) = &mut self.cluster {
                c.looking_up.remove(name);
            }
        })
    }

    /// Storage said whether a room this node had not heard of is private
    /// (`None`: the read failed). The room is opened as what it is, with
    /// the presence the peers have shown in it, and a waiting `join` goes on
    /// as if the room had been known all along.
    pub fn on_room_info(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        ticket: Ticket,
        info: Option<Option<PrivateRoomRow>>,
    ) {
        let Some(Wait::RoomLookup {
            room,
            joiner,
            has_messages,
        }) = self.waiting.remove(&ticket)
        else {
            return;
        };
        if joiner.is_none()
            && let Some(c) = &mut self.cluster
        {
            c.looking_up.remove(&room);
        }
        let Some(private) = info else {
            if let Some((conn, _)) = joiner {
                let e = FrameError::new("busy", "the server is busy; join again shortly");
                self.send_error(cx.out, conn.token, &e, None);
            }
            return;
        };
        if self.rooms.id(&room).is_none() {
            let id = match private {
                Some(row) => {
                    self.created.entry(row.owner).or_default().private += 1;
                    self.install_private_room(cx, &row)
                }
                None => self.rooms.open(&room),
            };
            self.rooms.get_mut(id).has_messages |= has_messages;
            let c = self.cluster.as_ref().expect("looked up in a cluster");
            let shown: Vec<UserId> = c
                .peers
                .values()
                .filter_map(|p| p.rooms.get(&room))
                .flatten()
                .copied()
                .collect();
            for user in shown {
                self.rooms.get_mut(id).enter_remote(user);
            }
        }
        if let Some((conn, since)) = joiner
            && self.session(conn.token).is_some_and(|s| s.conn == conn)
            && let Err(e) = self.join_room(cx, conn.token, &room, since)
        {
            self.send_error(cx.out, conn.token, &e, None);
        }
        if let Some(id) = self.rooms.id(&room) {
            self.rooms.collect(id);
        }
    }

    /// A message of a target nobody here receives: only its place in the
    /// sequence is kept.
    fn pass(&mut self, key: TargetKey, seq: Seq) {
        let Some(c) = &mut self.cluster else { return };
        let track = c.tracks.entry(key.clone()).or_default();
        track.delivered = track.delivered.max(seq);
        track.early.retain(|s, _| *s > seq);
        if track.early.is_empty() {
            track.gap_since_ms = None;
            c.gaps.remove(&key);
        }
    }

    /// A membership change made elsewhere: the frames about it came as
    /// frames; this node only updates its memory and its own connections.
    fn apply_membership(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        id: RoomId,
        user: UserId,
        add: bool,
    ) {
        let Some(p) = self.rooms.get_mut(id).private.as_mut() else {
            return;
        };
        if add {
            p.members.insert(user);
            cx.users.mark_unread_source(user);
        } else {
            p.members.remove(&user);
            self.drop_member_sessions(cx, id, user);
        }
    }

    // ---- presence ----------------------------------------------------------

    /// A peer shows `user` online (`on`) or no longer; tells this node's
    /// connections when the cluster-wide view changed.
    fn peer_user(&mut self, cx: &mut Ctx<'_, impl Outbox>, node: u64, user: UserId, on: bool) {
        let c = self.cluster.as_mut().expect("cluster");
        let Some(peer) = c.peers.get_mut(&node) else {
            return;
        };
        let changed = if on {
            peer.users.insert(user) && {
                let n = c.remote_users.entry(user).or_insert(0);
                *n += 1;
                *n == 1
            }
        } else {
            peer.users.remove(&user)
                && match c.remote_users.get_mut(&user) {
                    Some(n) if *n > 1 => {
                        *n -= 1;
                        false
                    }
                    Some(_) => {
                        c.remote_users.remove(&user);
                        true
                    }
                    None => false,
                }
        };
        if changed && !self.online.contains_key(&user) {
            self.show_status(cx, user, if on { "online" } else { "offline" });
        }
    }

    /// A peer shows `user` in `room` (`on`) or no longer.
    fn peer_room(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        node: u64,
        room: &str,
        user: UserId,
        on: bool,
    ) {
        let c = self.cluster.as_mut().expect("cluster");
        let Some(peer) = c.peers.get_mut(&node) else {
            return;
        };
        if on {
            if !peer.rooms.entry(room.into()).or_default().insert(user) {
                return;
            }
            let Some(id) = self.rooms.id(room) else {
                // Recorded above; the room's presence is built from the
                // peers' sets once storage says what the room is.
                let _ = self.look_up_room(cx, room, None, false);
                return;
            };
            if self.rooms.get_mut(id).enter_remote(user) {
                let frame = self.encoder.shared(&Out::Join {
                    room,
                    user: cx.users.name(user),
                });
                self.deliver(Topic::Room(id), Except::Nobody, None, &frame, cx.out);
            }
        } else {
            let Some(users) = peer.rooms.get_mut(room) else {
                return;
            };
            if !users.remove(&user) {
                return;
            }
            if users.is_empty() {
                peer.rooms.remove(room);
            }
            let Some(id) = self.rooms.id(room) else {
                return;
            };
            if self.rooms.get_mut(id).leave_remote(user) {
                let frame = self.encoder.shared(&Out::Leave {
                    room,
                    user: cx.users.name(user),
                });
                self.deliver(Topic::Room(id), Except::Nobody, None, &frame, cx.out);
            }
            self.rooms.collect(id);
        }
    }

    /// Replaces what a peer shows with its `State`, announcing only the
    /// differences.
    fn replace_state(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        node: u64,
        users: Vec<UserId>,
        rooms: HashMap<Box<str>, Vec<UserId>>,
    ) {
        let c = self.cluster.as_mut().expect("cluster");
        let Some(peer) = c.peers.get(&node) else {
            return;
        };
        let new_users: HashSet<UserId> = users.iter().copied().collect();
        let gone_rooms: Vec<(Box<str>, UserId)> = peer
            .rooms
            .iter()
            .flat_map(|(r, us)| us.iter().map(move |u| (r.clone(), *u)))
            .filter(|(r, u)| !rooms.get(r).is_some_and(|now| now.contains(u)))
            .collect();
        let gone_users: Vec<UserId> = peer.users.difference(&new_users).copied().collect();
        for (room, user) in gone_rooms {
            self.peer_room(cx, node, &room, user, false);
        }
        for user in gone_users {
            self.peer_user(cx, node, user, false);
        }
        for user in users {
            self.peer_user(cx, node, user, true);
        }
        for (room, us) in rooms {
            for user in us {
                self.peer_room(cx, node, &room, user, true);
            }
        }
    }

    /// A peer is gone (silent, or restarted): its users leave its rooms and
    /// go offline, unless another node still shows them.
    fn drop_peer(&mut self, cx: &mut Ctx<'_, impl Outbox>, node: u64) {
        self.replace_state(cx, node, Vec::new(), HashMap::new());
        if let Some(c) = &mut self.cluster {
            c.peers.remove(&node);
        }
    }

    /// `user_status` to this node's connections (the node that saw the
    /// change stored `last_seen`).
    pub(super) fn show_status(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        user: UserId,
        status: &'static str,
    ) {
        let now = clock::now_ms();
        let Some(u) = cx.users.get_mut(user) else {
            return;
        };
        u.last_seen_ms = Some(now);
        let frame = self.encoder.shared(&Out::UserStatus {
            user: &u.name,
            status,
            last_seen: Ts(now),
        });
        self.deliver(Topic::Everyone, Except::Nobody, None, &frame, cx.out);
    }

    // ---- order -------------------------------------------------------------

    /// Delivers a stored message here in its target's order: now if it is
    /// the next, later if it came early, never if it was already delivered.
    /// Returns the copies queued.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sequence(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        key: TargetKey,
        topic: Topic,
        seq: Seq,
        id: MsgId,
        frame: &Rc<[u8]>,
        except: Except,
    ) -> u64 {
        let now = clock::now_ms();
        let interested = self.has_interest(&key);
        let c = self.cluster.as_mut().expect("sequence runs in a cluster");
        // A target missing from the snapshot's heads is newer than it: its
        // first message is seq 1.
        let track = c.tracks.entry(key.clone()).or_default();
        if seq <= track.delivered {
            return 0;
        }
        if seq > track.delivered + 1 && !interested {
            // Nobody here could miss what came before: no need to read it.
            track.delivered = seq - 1;
            track.early.clear();
        }
        if seq > track.delivered + 1 {
            if track.early.len() < MAX_BUFFERED_PER_TARGET {
                track.early.insert(
                    seq,
                    Early {
                        id,
                        frame: frame.clone(),
                        except,
                    },
                );
            }
            track.gap_since_ms.get_or_insert(now);
            c.gaps.insert(key);
            return 0;
        }
        let mut n = self.deliver(topic, except, Some(id), frame, cx.out);
        n += self.advance(cx, &key, topic, seq);
        n
    }

    /// Whether a connection here receives `key`'s messages.
    fn has_interest(&self, key: &TargetKey) -> bool {
        match key {
            TargetKey::Room(name) => self.rooms.id(name).is_some_and(|id| {
                let r = self.rooms.get(id);
                !r.subscribers.is_empty() || !r.replaying.is_empty()
            }),
            TargetKey::Direct(a, b) => self.online.contains_key(a) || self.online.contains_key(b),
        }
    }

    /// `seq` of `key` was delivered: deliver what waited behind it, close
    /// or restart the gap clock, and finish replays that waited for it.
    fn advance(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        key: &TargetKey,
        topic: Topic,
        seq: Seq,
    ) -> u64 {
        let now = clock::now_ms();
        let c = self.cluster.as_mut().expect("cluster");
        let track = c.tracks.get_mut(key).expect("tracked");
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
        let waiting_replay = c
            .replays
            .iter()
            .any(|r| matches!(key, TargetKey::Room(n) if *n == r.room) && r.newest > delivered);
        if track.early.is_empty() && !waiting_replay {
            track.gap_since_ms = None;
            c.gaps.remove(key);
        } else {
            track.gap_since_ms = Some(now);
        }
        let mut n = 0;
        for e in ready {
            n += self.deliver(topic, e.except, Some(e.id), &e.frame, cx.out);
        }
        if let TargetKey::Room(room) = key {
            self.finish_waiting_replays(cx, room, delivered);
        }
        n
    }

    /// Whether a replay of `room` whose newest message is `newest` must wait
    /// for this node to deliver up to it; if so, it is kept (and the gap
    /// noted, so a message that never comes is read back).
    pub(super) fn replay_must_wait(
        &mut self,
        conn: ConnRef,
        room: &str,
        messages: &mut Option<Vec<StoredMessage>>,
    ) -> bool {
        let Some(c) = &mut self.cluster else {
            return false;
        };
        let Some(newest) = messages.as_ref().and_then(|m| m.last()).map(|m| m.seq) else {
            return false;
        };
        let key = TargetKey::Room(room.into());
        let track = c.tracks.entry(key.clone()).or_default();
        if newest <= track.delivered {
            return false;
        }
        track.gap_since_ms.get_or_insert(clock::now_ms());
        c.gaps.insert(key);
        c.replays.push(WaitingReplay {
            conn,
            room: room.into(),
            newest,
            messages: messages.take(),
        });
        true
    }

    fn finish_waiting_replays(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        room: &str,
        delivered: Seq,
    ) {
        let Some(c) = &mut self.cluster else { return };
        if c.replays.is_empty() {
            return;
        }
        let mut done = Vec::new();
        c.replays.retain_mut(|r| {
            if &*r.room == room && r.newest <= delivered {
                done.push((r.conn, r.messages.take()));
                false
            } else {
                true
            }
        });
        for (conn, messages) in done {
            self.finish_replay(cx, conn, room, messages);
        }
    }

    /// The once-a-second work: beat, notice dead peers, read back gaps.
    pub fn cluster_tick(&mut self, cx: &mut Ctx<'_, impl Outbox>) {
        let now = clock::now_ms();
        let Some(c) = &mut self.cluster else { return };
        if now >= c.next_beat_ms {
            c.next_beat_ms = now + BEAT_INTERVAL_MS;
            let name = c.name.clone();
            self.note(&Note::Beat {
                name: Cow::Borrowed(&name),
            });
        }
        let c = self.cluster.as_mut().expect("cluster");
        let dead: Vec<(u64, Box<str>)> = c
            .peers
            .iter()
            .filter(|(_, p)| now - p.heard_ms > PEER_TIMEOUT_MS)
            .map(|(k, p)| (*k, p.name.clone()))
            .collect();
        for (node, name) in dead {
            log::warn!(
                "cluster: node {name} silent for {} s; its users are offline here",
                PEER_TIMEOUT_MS / 1000
            );
            self.drop_peer(cx, node);
        }
        let c = self.cluster.as_mut().expect("cluster");
        let due: Vec<(TargetKey, Seq)> = c
            .gaps
            .iter()
            .filter_map(|k| {
                let t = c.tracks.get(k)?;
                let late = t.gap_since_ms.is_some_and(|s| now - s >= GAP_WAIT_MS);
                (late && !t.catching).then(|| (k.clone(), t.delivered))
            })
            .collect();
        for (key, after) in due {
            self.catch_up(cx, key, after);
        }
    }

    /// Reads `key`'s messages after `after` back from storage.
    fn catch_up(&mut self, cx: &mut Ctx<'_, impl Outbox>, key: TargetKey, after: Seq) {
        let target = key.to_target();
        let ticket = self.park(Wait::Catchup { key: key.clone() });
        let req = Request::Catchup {
            ticket,
            target,
            after,
            limit: CATCHUP_LIMIT,
        };
        if cx.store.submit(req).is_err() {
            self.waiting.remove(&ticket);
            return;
        }
        if let Some(t) = self.cluster.as_mut().and_then(|c| c.tracks.get_mut(&key)) {
            t.catching = true;
        }
    }

    /// The catch-up read came back: deliver what was missed, in order.
    pub(super) fn on_catchup(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        key: TargetKey,
        messages: Option<Vec<StoredMessage>>,
    ) {
        let now = clock::now_ms();
        let Some(track) = self.cluster.as_mut().and_then(|c| c.tracks.get_mut(&key)) else {
            return;
        };
        track.catching = false;
        let Some(messages) = messages else {
            // Storage failed: try again after another wait.
            track.gap_since_ms = Some(now);
            return;
        };
        let full = messages.len() >= CATCHUP_LIMIT;
        if !messages.is_empty() {
            log::info!(
                "cluster: read back {} missed messages of {key:?}",
                messages.len()
            );
        }
        let mut n = 0;
        for m in &messages {
            self.last_msg_id = self.last_msg_id.max(m.id);
            let c = self.cluster.as_mut().expect("cluster");
            let track = c.tracks.get_mut(&key).expect("tracked");
            if m.seq <= track.delivered {
                continue;
            }
            let early = track.early.remove(&m.seq);
            let topic = match &key {
                TargetKey::Room(name) => {
                    let id = self.rooms.open(name);
                    self.rooms.get_mut(id).has_messages = true;
                    Topic::Room(id)
                }
                TargetKey::Direct(a, b) => Topic::Conversation(*a, *b),
            };
            let (frame, except) = match early {
                Some(e) => (e.frame, e.except),
                None => (self.message_frame(cx, m), Except::Nobody),
            };
            n += self.sequence(cx, key.clone(), topic, m.seq, m.id, &frame, except);
        }
        cx.out.metrics().deliveries += n;
        let c = self.cluster.as_mut().expect("cluster");
        if full && let Some(t) = c.tracks.get(&key) {
            let after = t.delivered;
            self.catch_up(cx, key, after);
        }
    }

    /// A stored message as its live frame, as it is now. A message deleted
    /// before this node caught up is delivered as its `message_deleted`:
    /// the sequence steps past it, and a client that never saw the message
    /// ignores the deletion of an id it does not have.
    fn message_frame(&mut self, cx: &mut Ctx<'_, impl Outbox>, m: &StoredMessage) -> Rc<[u8]> {
        let users = &*cx.users;
        self.encoder.shared(&stored_frame(m, &|u| users.name(u)))
    }

    /// Everything read again after the bus came back: users, rooms and
    /// memberships made elsewhere meanwhile, and each target's newest `seq`
    /// (a target behind it is caught up at once).
    pub fn on_resync(
        &mut self,
        cx: &mut Ctx<'_, impl Outbox>,
        ticket: Ticket,
        snapshot: Option<Box<Snapshot>>,
    ) {
        if !matches!(self.waiting.remove(&ticket), Some(Wait::Resync)) {
            return;
        }
        let Some(snap) = snapshot else {
            log::warn!(
                "cluster: reading back after the bus outage failed; relying on sequence gaps"
            );
            return;
        };
        for row in snap.users {
            if cx.users.get(row.id).is_none() && cx.users.find(&row.username).is_none() {
                cx.users.insert(row);
            }
        }
        for (name, _) in &snap.public_rooms {
            let id = self.rooms.open(name);
            self.rooms.get_mut(id).has_messages = true;
        }
        for row in &snap.private_rooms {
            self.apply_private_room(cx, row);
        }
        self.last_msg_id = self.last_msg_id.max(snap.max_message_id);
        let now = clock::now_ms();
        let mut behind = Vec::new();
        for (target, head) in &snap.heads {
            let key = TargetKey::of(target);
            let interested = match &key {
                TargetKey::Room(name) => self.rooms.id(name).is_some_and(|id| {
                    let r = self.rooms.get(id);
                    !r.subscribers.is_empty() || !r.replaying.is_empty()
                }),
                TargetKey::Direct(a, b) => {
                    self.online.contains_key(a) || self.online.contains_key(b)
                }
            };
            let c = self.cluster.as_mut().expect("cluster");
            let track = c.tracks.entry(key.clone()).or_default();
            if *head <= track.delivered {
                continue;
            }
            if !interested {
                // Nobody here could have missed it.
                track.delivered = *head;
                track.early.retain(|s, _| *s > *head);
                continue;
            }
            track.gap_since_ms = Some(now - GAP_WAIT_MS);
            c.gaps.insert(key.clone());
            behind.push((key, track.delivered));
        }
        if !behind.is_empty() {
            log::info!(
                "cluster: {} rooms and conversations to catch up after the outage",
                behind.len()
            );
        }
        for (key, after) in behind {
            self.catch_up(cx, key, after);
        }
    }
}
