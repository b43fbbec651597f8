//! What this node does with what the other nodes tell it, and its own
//! once-a-second cluster work: presence per peer, messages and frames from
//! elsewhere, users and private rooms made elsewhere, rooms looked up
//! before they are opened, the resync after a bus outage, beats and dead
//! peers. The state is the cluster part's (`cluster.rs` explains the
//! design); every function here does nothing on a single node.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use super::cluster::{Early, Heard};
use super::command::{FrameError, RoomName};
use super::commands::join;
use super::fanout::{self, Except, Topic};
use super::members;
use super::order;
use super::parts::{Ctx, Parts};
use super::presence;
use super::rooms::{RoomId, Rooms};
use super::sessions::Sessions;
use super::waits::Wait;
use super::wire::{Dest, Envelope, Note, TargetKey};
use crate::accounts::PeerNote;
use crate::clock;
use crate::config::PEER_TIMEOUT_MS;
use crate::outbox::{ConnRef, Outbox};
use crate::store::{MsgId, PrivateRoomRow, Request, Snapshot, UserId, UserRow, Who};
use crate::ws::proto::Out;

/// Handles what the bus brought (the loop was woken).
pub fn on_bus(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>) {
    while let Some(heard) = parts.cluster.as_mut().and_then(|c| c.receive()) {
        match heard {
            Heard::Up => bus_up(parts, cx),
            Heard::Down => {
                if let Some(c) = &mut parts.cluster {
                    c.set_up(false);
                }
                log::warn!(
                    "cluster: the bus is down; serving this node's connections only, \
                     acking what storage commits"
                );
            }
            Heard::Note(env) => on_note(parts, cx, *env),
        }
    }
}

/// Connected, first or again: ask every peer for its state, send ours,
/// and read back what may have been missed.
fn bus_up(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>) {
    let Some(c) = &mut parts.cluster else { return };
    c.set_up(true);
    log::info!("cluster: node {} is on the bus", c.name());
    c.hello();
    send_state(parts);
    let ticket = parts.waits.park(Wait::Resync);
    if cx.store.submit(Request::Resync { ticket }).is_err() {
        // Storage is full: the tick's gap checks still catch up by
        // sequence; users and rooms made meanwhile come with their notes.
        parts.waits.cancel(ticket);
    }
}

/// Everything this node shows of its own connections.
pub fn own_state<'a>(sessions: &Sessions, rooms: &'a Rooms) -> Note<'a> {
    let users = sessions.users().collect();
    let rooms = rooms
        .iter()
        .filter_map(|(_, r)| {
            let present: Vec<UserId> = r.present().collect();
            (!present.is_empty()).then(|| (Cow::Borrowed(r.name()), present))
        })
        .collect();
    Note::State { users, rooms }
}

/// Tells every peer everything this node shows.
fn send_state(parts: &mut Parts) {
    if let Some(c) = &mut parts.cluster {
        c.note(&own_state(&parts.sessions, &parts.rooms));
    }
}

fn on_note(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>, env: Envelope<'static>) {
    if let Some(user) = env
        .note
        .users_named()
        .into_iter()
        .find(|u| cx.users.get(*u).is_none())
    {
        return hold_for_user(parts, cx, user, env);
    }
    let node = env.stamp.node;
    let name = match &env.note {
        Note::Beat { name } | Note::Hello { name } => Some(&**name),
        _ => None,
    };
    let Some(c) = &mut parts.cluster else { return };
    let known = c.heard(node, clock::now_ms(), name);
    match env.note {
        Note::Beat { .. } => {
            if !known {
                // A peer this node never heard say hello (a note was lost):
                // ask everyone for their state again.
                c.hello();
            }
        }
        Note::Hello { name } => {
            // A restarted node is a new incarnation: its old self is gone.
            for old in c.namesakes(node, &name) {
                log::info!("cluster: node {name} restarted; its old connections are gone");
                drop_peer(parts, cx, old);
            }
            if !known {
                log::info!("cluster: node {name} joined");
            }
            send_state(parts);
        }
        Note::State { users, rooms } => {
            let rooms = rooms
                .into_iter()
                .map(|(r, users)| (r.into_owned().into_boxed_str(), users))
                .collect();
            replace_state(parts, cx, node, users, rooms);
        }
        Note::Online { user } => peer_user(parts, cx, node, user, true),
        Note::Offline { user } => peer_user(parts, cx, node, user, false),
        Note::Entered { room, user } => peer_room(parts, cx, node, &room, user, true),
        Note::Left { room, user } => peer_room(parts, cx, node, &room, user, false),
        Note::Message {
            target,
            seq,
            id,
            frame,
        } => peer_message(parts, cx, target, seq, id, frame.into_owned().into()),
        Note::Frame {
            dest,
            except_user,
            frame,
        } => {
            let topic = match dest {
                Dest::Room(name) => match parts.rooms.id(&name) {
                    Some(id) => Topic::Room(id),
                    // Nobody here is in a room this node does not know.
                    None => return,
                },
                Dest::User(u) => Topic::User(u),
                Dest::Everyone => Topic::Everyone,
            };
            let except = except_user.map_or(Except::Nobody, Except::User);
            let frame: Rc<[u8]> = frame.into_owned().into();
            fanout::deliver(parts, topic, except, None, &frame, cx.out);
        }
        Note::User { id } => {
            if cx.users.get(id).is_none()
                && let Some(c) = &mut parts.cluster
                && c.await_user(id)
            {
                read_user(parts, cx, id);
            }
        }
        Note::RoomMade(row) => apply_private_room(parts, cx, &row),
        Note::Member { room, user, add } => {
            if let Some(id) = parts.rooms.id(&room) {
                members::apply(parts, cx, id, user, add);
            }
        }
        Note::AccountsChanged => c.for_desk(PeerNote::Poll),
        Note::TicketUsed { id, expires_ms } => {
            c.for_desk(PeerNote::TicketUsed { id, expires_ms });
        }
    }
}

/// A note about a user this node has not read yet (signed up on another
/// node a moment ago, announced by id): it waits for the row from storage,
/// and is applied then ([`on_user_found`]); a user storage does not have
/// makes it dropped.
fn hold_for_user(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    user: UserId,
    env: Envelope<'static>,
) {
    let Some(c) = &mut parts.cluster else { return };
    let first = c.await_user(user);
    if !c.hold(user, env) {
        log::warn!("cluster: too many notes wait for users' rows; dropped one about user {user}");
    }
    if first {
        read_user(parts, cx, user);
    }
}

/// Reads user `id`'s row from storage (a note named them).
fn read_user(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>, id: UserId) {
    let ticket = parts.waits.park(Wait::UserLookup { id });
    let req = Request::FindUser {
        ticket,
        who: Who::Id(id),
    };
    if cx.store.submit(req).is_err() {
        parts.waits.cancel(ticket);
        on_user_found(parts, cx, id, None);
    }
}

/// Storage answered for user `id`, whom a note named (`None`: the read
/// failed or could not be sent). The notes that waited are applied when the
/// row is here, dropped otherwise: presence comes back with the sender's
/// next `State` (each `Hello`), membership with the resync after an outage.
pub fn on_user_found(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    id: UserId,
    row: Option<Option<UserRow>>,
) {
    match row {
        Some(Some(row)) if row.id == id => {
            if let Err(e) = cx.users.insert(row)
                && cx.users.get(id).is_none()
            {
                log::warn!("cluster: user {id}'s row was refused: {e:?}");
            }
        }
        Some(Some(row)) => log::warn!("cluster: asked for user {id}, storage gave {}", row.id),
        Some(None) => log::warn!("cluster: a note named user {id}, whom storage does not hold"),
        None => log::warn!("cluster: could not read user {id}, whom a note named"),
    }
    apply_held(parts, cx, id);
}

/// The notes that waited for user `id`'s row: applied if it is here now.
fn apply_held(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>, id: UserId) {
    let Some(c) = &mut parts.cluster else { return };
    let held = c.release(id);
    if cx.users.get(id).is_some() {
        for env in held {
            on_note(parts, cx, env);
        }
    }
}

/// A chat message another node stored: delivered here in its order.
fn peer_message(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    target: TargetKey,
    seq: u64,
    id: MsgId,
    frame: Rc<[u8]>,
) {
    parts.acks.saw(id);
    let topic = match &target {
        TargetKey::Room(name) => match parts.rooms.id(name) {
            Some(room) => {
                parts.rooms.get_mut(room).mark_has_messages();
                Topic::Room(room)
            }
            None => {
                // Nobody here is in it, and it may be private (its
                // `RoomMade` comes from another node, in no set order
                // with this): storage says what it is.
                let _ = parts.look_up_room(cx.store, name, None, true);
                if let Some(c) = &mut parts.cluster {
                    c.pass(target, seq);
                }
                return;
            }
        },
        TargetKey::Direct(a, b) => Topic::Conversation(*a, *b),
    };
    let message = Early {
        id,
        frame,
        sender: None,
    };
    let n = order::sequence(parts, cx, target, topic, seq, message);
    cx.out.metrics().deliveries += n;
}

/// A peer shows `user` online (`on`) or no longer; this node's
/// connections are told when the cluster-wide view changed.
fn peer_user(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>, node: u64, user: UserId, on: bool) {
    let Some(c) = &mut parts.cluster else { return };
    if c.peer_user(node, user, on) && !parts.sessions.is_online(user) {
        let status = if on { "online" } else { "offline" };
        presence::show_status(parts, cx, user, status);
    }
}

/// A peer shows `user` in `room` (`on`) or no longer.
fn peer_room(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    node: u64,
    room: &str,
    user: UserId,
    on: bool,
) {
    let Some(c) = &mut parts.cluster else { return };
    if !c.peer_room(node, room, user, on) {
        return;
    }
    let Some(id) = parts.rooms.id(room) else {
        if on {
            // Recorded above; the room's presence is built from the
            // peers' sets once storage says what the room is.
            let _ = parts.look_up_room(cx.store, room, None, false);
        }
        return;
    };
    let r = parts.rooms.get_mut(id);
    let news = if on {
        r.enter_remote(user)
    } else {
        r.leave_remote(user)
    };
    if news {
        let user = cx.users.name(user);
        let frame = parts.encoder.shared(&match on {
            true => Out::Join { room, user },
            false => Out::Leave { room, user },
        });
        fanout::deliver(parts, Topic::Room(id), Except::Nobody, None, &frame, cx.out);
    }
    if !on {
        parts.rooms.collect(id);
    }
}

/// Replaces what a peer shows with its `State`, announcing only the
/// differences.
fn replace_state(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    node: u64,
    users: Vec<UserId>,
    rooms: HashMap<Box<str>, Vec<UserId>>,
) {
    let Some(c) = &parts.cluster else { return };
    let Some(gone) = c.gone_from_state(node, &users, &rooms) else {
        return;
    };
    for (room, user) in gone.from_rooms {
        peer_room(parts, cx, node, &room, user, false);
    }
    for user in gone.offline {
        peer_user(parts, cx, node, user, false);
    }
    for user in users {
        peer_user(parts, cx, node, user, true);
    }
    for (room, users) in rooms {
        for user in users {
            peer_room(parts, cx, node, &room, user, true);
        }
    }
}

/// A peer is gone (silent, or restarted): its users leave its rooms and
/// go offline, unless another node still shows them.
fn drop_peer(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>, node: u64) {
    replace_state(parts, cx, node, Vec::new(), HashMap::new());
    if let Some(c) = &mut parts.cluster {
        c.remove_peer(node);
    }
}

/// A private room made elsewhere (or read back by a resync).
fn apply_private_room(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>, row: &PrivateRoomRow) {
    let known = parts.rooms.id(&row.name);
    if let Some(id) = known
        && let Some(p) = parts.rooms.get(id).private()
    {
        // Known: bring the members in line (a resync after missed notes).
        let now: HashSet<UserId> = row.members.iter().copied().collect();
        let before: Vec<UserId> = p.members().collect();
        for &u in before.iter().filter(|u| !now.contains(u)) {
            members::apply(parts, cx, id, u, false);
        }
        for &u in now.iter().filter(|u| !before.contains(u)) {
            members::apply(parts, cx, id, u, true);
        }
        return;
    }
    parts.rooms.count_private(row.owner);
    let id = members::install(parts, cx, row);
    if known.is_some() {
        // Joined here as public before the news came: non-members go.
        drop_non_members(parts, cx, id);
    }
}

/// Every connection here in room `id` whose user is not a member leaves
/// it, and is told so (as a removed member is).
fn drop_non_members(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>, id: RoomId) {
    let room = parts.rooms.get(id);
    let Some(p) = room.private() else { return };
    let outsiders: Vec<UserId> = room.present().filter(|u| !p.is_member(*u)).collect();
    let name = room.name().to_owned();
    for user in outsiders {
        members::drop_sessions(parts, cx, id, user);
        let frame = parts.encoder.shared(&Out::Leave {
            room: &name,
            user: cx.users.name(user),
        });
        fanout::deliver(
            parts,
            Topic::User(user),
            Except::Nobody,
            None,
            &frame,
            cx.out,
        );
    }
}

/// Storage said whether a room this node had not heard of is private
/// (`None`: the read failed). The room is opened as what it is, with the
/// presence the peers have shown in it, and a waiting `join` goes on as if
/// the room had been known all along.
pub fn on_room_info(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    room: &str,
    joiner: Option<(ConnRef, Option<MsgId>)>,
    has_messages: bool,
    info: Option<Option<PrivateRoomRow>>,
) {
    if joiner.is_none()
        && let Some(c) = &mut parts.cluster
    {
        c.end_lookup(room);
    }
    let Some(private) = info else {
        if let Some((conn, _)) = joiner {
            let e = FrameError::new("busy", "the server is busy; join again shortly");
            parts.send_error(cx.out, conn.token, &e, None);
        }
        return;
    };
    if parts.rooms.id(room).is_none() {
        let id = match private {
            Some(row) => {
                parts.rooms.count_private(row.owner);
                members::install(parts, cx, &row)
            }
            None => parts.rooms.open(room),
        };
        if has_messages {
            parts.rooms.get_mut(id).mark_has_messages();
        }
        let shown = parts
            .cluster
            .as_ref()
            .map_or(Vec::new(), |c| c.shown_in(room));
        for user in shown {
            parts.rooms.get_mut(id).enter_remote(user);
        }
    }
    if let Some((conn, since)) = joiner
        && let Some(me) = parts.sessions.caller_of(conn)
    {
        let joined = RoomName::new(room.into()).and_then(|r| join::join(parts, cx, me, &r, since));
        if let Err(e) = joined {
            parts.send_error(cx.out, conn.token, &e, None);
        }
    }
    if let Some(id) = parts.rooms.id(room) {
        parts.rooms.collect(id);
    }
}

/// Everything read again after the bus came back (`None`: the read
/// failed): users, rooms and memberships made elsewhere meanwhile, and
/// each target's newest `seq` (a target behind it is caught up at once).
pub fn on_resync(
    parts: &mut Parts,
    cx: &mut Ctx<'_, impl Outbox>,
    snapshot: Option<Box<Snapshot>>,
) {
    let Some(snap) = snapshot else {
        log::warn!("cluster: reading back after the bus outage failed; relying on sequence gaps");
        return;
    };
    for row in snap.users {
        // Known already, or refused (the directory says why it may).
        let _ = cx.users.insert(row);
    }
    let awaited = parts
        .cluster
        .as_ref()
        .map_or(Vec::new(), |c| c.awaited_users());
    for user in awaited {
        if cx.users.get(user).is_some() {
            apply_held(parts, cx, user);
        }
    }
    for (name, _) in &snap.public_rooms {
        let id = parts.rooms.open(name);
        parts.rooms.get_mut(id).mark_has_messages();
    }
    for row in &snap.private_rooms {
        apply_private_room(parts, cx, row);
    }
    parts.acks.saw(snap.max_message_id);
    let now = clock::now_ms();
    let mut behind = Vec::new();
    for (target, head) in &snap.heads {
        let key = TargetKey::of(target);
        let interested = order::has_interest(parts, &key);
        let Some(c) = &mut parts.cluster else { return };
        if let Some(after) = c.behind(&key, *head, interested, now) {
            behind.push((key, after));
        }
    }
    if !behind.is_empty() {
        log::info!(
            "cluster: {} rooms and conversations to catch up after the outage",
            behind.len()
        );
    }
    for (key, after) in behind {
        order::catch_up(parts, cx, key, after);
    }
}

/// The once-a-second work: beat, notice dead peers, read back gaps.
pub fn tick(parts: &mut Parts, cx: &mut Ctx<'_, impl Outbox>) {
    let now = clock::now_ms();
    let Some(c) = &mut parts.cluster else { return };
    c.beat(now);
    for (node, name) in c.silent_peers(now) {
        log::warn!(
            "cluster: node {name} silent for {} s; its users are offline here",
            PEER_TIMEOUT_MS / 1000
        );
        drop_peer(parts, cx, node);
    }
    let due = parts
        .cluster
        .as_ref()
        .map_or(Vec::new(), |c| c.gaps_due(now));
    for (key, after) in due {
        order::catch_up(parts, cx, key, after);
    }
}

/// A user signed up here: every node learns of them, by id, and reads
/// the row from storage (logins anywhere; no hash or email on the bus).
pub fn announce_user(parts: &mut Parts, id: UserId) {
    parts.note(&Note::User { id });
}
