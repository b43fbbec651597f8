//! What storage keeps and reads back, as the loop and both backends see it:
//! users, rooms, messages and their reactions, the queries that read them,
//! and the rules about them that both engines apply the same way (how a
//! reaction toggles, how reactions are stored, how a search is cut into
//! words). Plain data, no I/O: the requests that carry it are in
//! `request.rs`, the threads that move it in `mod.rs`; users and their
//! accounts in `accounts.rs`.

use super::accounts::{AccountsSnapshot, UserId, UserRow};

/// Message ids: unique across the server (the cluster), and increasing per
/// room and per conversation in the order messages are delivered.
pub type MsgId = u64;
/// A message's place in its room or conversation: 1, 2, 3, ... with no gap
/// among committed messages, assigned in the same transaction as the append
/// by a backend that sequences (PostgreSQL). A node that sees a sequence
/// jump on the bus knows it missed a message and reads it back. 0 from a
/// backend that does not sequence (SQLite: one node, nothing to miss).
pub type Seq = u64;

/// A private room: only members may join it or read its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateRoomRow {
    pub name: String,
    pub owner: UserId,
    pub members: Vec<UserId>,
}

/// Where a message lives: a room, or the conversation of two users.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Room(String),
    /// A private conversation; the pair is unordered (`Direct(a, b) == Direct(b, a)` in storage).
    Direct(UserId, UserId),
}

/// One emoji's reactions on a message: the users, in the order they reacted.
/// A message's reactions are kept in the order each emoji first appeared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    pub emoji: String,
    pub users: Vec<UserId>,
}

/// One chat message as stored and as read back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredMessage {
    pub id: MsgId,
    /// `Some` for a room message.
    pub room: Option<String>,
    pub from: UserId,
    /// `Some` for a private message.
    pub to: Option<UserId>,
    pub content: String,
    pub timestamp_ms: i64,
    /// The message's place in its target ([`Seq`]); 0 when not sequenced.
    pub seq: Seq,
    /// The message this one answers, in the same room or conversation.
    pub reply_to: Option<MsgId>,
    /// When its author last edited it.
    pub edited_ms: Option<i64>,
    /// Who reacted with what; empty when nobody did.
    pub reactions: Vec<Reaction>,
    /// Deleted: only `Catchup` answers carry deleted messages (with empty
    /// content), so a node can step its sequence past them; every other
    /// read leaves them out.
    pub deleted: bool,
    /// The files it carries (none once deleted).
    pub attachments: Vec<super::files::Attachment>,
}

/// What `GET /api/search` asks: messages `user` may read whose content has
/// every one of `words` (whole words, any case, any order), newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    pub user: UserId,
    /// Lower-case words, as [`search_words`] cut them: 1 to
    /// `MAX_SEARCH_WORDS`.
    pub words: Vec<String>,
    /// Only this room or conversation (`Direct(user, peer)`); `None`: all
    /// the caller may read.
    pub scope: Option<Target>,
    pub limit: usize,
}

/// The words of a search: runs of letters and digits (any script), lower
/// case, at most `max` of them, duplicates dropped. Punctuation separates
/// words, as both engines' tokenizers do (SQLite's `unicode61`,
/// PostgreSQL's `simple` parser), so `"don't"` is `don` and `t`; the
/// query has no operators, so nothing a user types is a syntax error.
pub fn search_words(q: &str, max: usize) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for w in q.split(|c: char| !c.is_alphanumeric()) {
        if w.is_empty() {
            continue;
        }
        let w = w.to_lowercase();
        if !words.contains(&w) {
            words.push(w);
            if words.len() == max {
                break;
            }
        }
    }
    words
}

/// Why storage refused an edit, a delete or a reaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No message with that id, or it was deleted.
    NoSuchMessage,
    /// Not the author (edit); neither the author nor the private room's
    /// owner (delete); someone who may not read the message (react).
    Forbidden,
    /// The message already has `MAX_REACTION_KINDS` different emoji, or
    /// `MAX_REACTIONS` reactions in all.
    TooManyReactions,
    /// An edit or a reaction in an archived room (read-only; a delete
    /// still goes, so moderators can clean an archive up).
    Archived,
}

/// What an edit, a delete or a reaction changed, with where the message
/// lives, so the hub can tell whoever may read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub id: MsgId,
    pub room: Option<String>,
    pub from: UserId,
    pub to: Option<UserId>,
    pub what: ChangeKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    Edited {
        content: String,
        at_ms: i64,
    },
    Deleted,
    Reacted {
        emoji: String,
        user: UserId,
        on: bool,
    },
}

/// Toggles `user`'s `emoji` on a message's reactions (the one rule both
/// backends apply): returns whether it is now on, or the refusal when a
/// new reaction would pass a bound. Removing one is always allowed.
pub fn toggle_reaction(
    reactions: &mut Vec<Reaction>,
    emoji: &str,
    user: UserId,
) -> Result<bool, Refusal> {
    use crate::config::{MAX_REACTION_KINDS, MAX_REACTIONS};
    if let Some(i) = reactions.iter().position(|r| r.emoji == emoji) {
        if let Some(j) = reactions[i].users.iter().position(|&u| u == user) {
            reactions[i].users.remove(j);
            if reactions[i].users.is_empty() {
                reactions.remove(i);
            }
            return Ok(false);
        }
    } else if reactions.len() >= MAX_REACTION_KINDS {
        return Err(Refusal::TooManyReactions);
    }
    if reactions.iter().map(|r| r.users.len()).sum::<usize>() >= MAX_REACTIONS {
        return Err(Refusal::TooManyReactions);
    }
    match reactions.iter_mut().find(|r| r.emoji == emoji) {
        Some(r) => r.users.push(user),
        None => reactions.push(Reaction {
            emoji: emoji.to_string(),
            users: vec![user],
        }),
    }
    Ok(true)
}

/// A message's reactions as the backends store them: one text column,
/// `[["👍",[1,2]],[":tada:",[3]]]`, `None` when there are none. One
/// column, not a table, because reactions are only ever read with their
/// message and written by toggling one; the bounds keep it small.
pub fn encode_reactions(reactions: &[Reaction]) -> Option<String> {
    if reactions.is_empty() {
        return None;
    }
    let v: Vec<(&str, &[UserId])> = reactions
        .iter()
        .map(|r| (r.emoji.as_str(), r.users.as_slice()))
        .collect();
    Some(serde_json::to_string(&v).expect("serializing to a String cannot fail"))
}

/// The reverse of [`encode_reactions`]; a column that does not parse (it
/// never should) reads as no reactions rather than failing the read.
pub fn decode_reactions(text: Option<&str>) -> Vec<Reaction> {
    let Some(text) = text else {
        return Vec::new();
    };
    match serde_json::from_str::<Vec<(String, Vec<UserId>)>>(text) {
        Ok(v) => v
            .into_iter()
            .map(|(emoji, users)| Reaction { emoji, users })
            .collect(),
        Err(e) => {
            log::error!("storage: a message's reactions do not parse ({e}); read as none");
            Vec::new()
        }
    }
}

/// A window of history: the newest `limit` messages of `target` with
/// `after < id < before`, skipping the newest `offset`; returned oldest first.
/// Only what `reader` may read comes back (nothing of a private room they
/// are not a member of, of a conversation not theirs, of a room with no
/// row), checked in the same query whatever the asking node knows
/// (`conformance.rs`, "reads").
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub target: Target,
    pub reader: UserId,
    pub before: Option<MsgId>,
    pub after: Option<MsgId>,
    pub limit: usize,
    pub offset: usize,
}

/// Unread count of one room or one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnreadCount {
    /// A room: unread messages, and how many of them mention the user.
    Room(String, u64, u64),
    /// Messages from this user to the caller not yet read.
    Direct(UserId, u64),
}

/// Everything the loop keeps in memory, read once before the loop starts.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub users: Vec<UserRow>,
    pub private_rooms: Vec<PrivateRoomRow>,
    /// Public rooms that have at least one message.
    pub public_rooms: Vec<(String, Option<UserId>)>,
    /// Rooms with messages but no room row (its write was lost): loaded as
    /// private rooms with no members, so nobody may read them.
    pub orphan_rooms: Vec<String>,
    pub max_message_id: MsgId,
    /// The newest `(user, client_id, message id, timestamp)` for idempotent retries.
    pub recent_client_ids: Vec<(UserId, String, MsgId, i64)>,
    /// Users who could have something unread: they have a room read marker,
    /// belong to a private room, or were sent a private message. For everyone
    /// else the `unread` frame is empty without asking storage.
    pub unread_sources: Vec<UserId>,
    /// The newest [`Seq`] of every room and conversation that has messages,
    /// from a backend that sequences (empty otherwise): where a cluster
    /// node starts tracking each target's sequence.
    pub heads: Vec<(Target, Seq)>,
    /// Rooms a moderator archived: readable, closed to new messages.
    pub archived_rooms: Vec<String>,
    /// Ended sessions, account settings, where the change log stands.
    pub accounts: AccountsSnapshot,
}

/// A browser's Web Push subscription (RFC 8030's endpoint, RFC 8291's
/// keys), as the web client's `PushSubscription` gives it. The endpoint is
/// its identity: a browser that signs in as someone else subscribes the
/// same endpoint again, and it moves to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSubscription {
    pub user: UserId,
    /// An `https://` URL (checked before it is stored: `push::endpoint`).
    pub endpoint: String,
    /// The browser's P-256 public key, an uncompressed point.
    pub p256dh: [u8; 65],
    /// The browser's authentication secret.
    pub auth: [u8; 16],
    pub created_ms: i64,
}

/// What a push to one user needs from storage: their choice of what a
/// notification may show, and where to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushProfile {
    /// Show the message's sender, conversation and text (the default);
    /// false: only "you have a new message".
    pub show_text: bool,
    /// Oldest first, at most `MAX_PUSH_SUBSCRIPTIONS`.
    pub subscriptions: Vec<PushSubscription>,
}

/// Why a user row was refused: the name or email is already stored (by
/// another node of a cluster, which this node's directory had not heard
/// of), or the invite it came with is unknown, used up, expired or revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    Username,
    Email,
    Invite,
}
