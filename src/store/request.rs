//! What the loop asks of storage ([`Request`]) and what storage answers
//! ([`Reply`]), with every fact about a request in one place: whether it
//! is a read, how its writes stay atomic, its name in logs, its failure
//! reply ([`Request::facts`] and [`Request::failure`]). The storage threads
//! and both backends ask the request instead of keeping lists of their
//! own, so a new request is classified here, once, where the compiler
//! makes sure it is.
//!
//! Adding a request: its variant here, with its row in `facts` and its arm
//! in `failure` (the compiler asks for both); a new [`Reply`] only when
//! none carries its answer, with its failure beside it and its route to
//! the waiter in `app.rs`; its statements in each backend (`sqlite.rs`:
//! `apply`, and for a read the reader's `read`; PostgreSQL: `apply` in
//! `postgres.rs`, and for a read `postgres/reads.rs`).

use super::accounts::{
    AccountAnswer, AccountNews, AccountRead, AccountRefusal, AccountWrite, Audit, Role, UserId,
    UserRow,
};
use super::files::{Attachment, BlobKey, FileId, FileRow, PostRefusal};
use super::rows::{
    Change, Conflict, HistoryQuery, MsgId, PrivateRoomRow, PushProfile, PushSubscription, Refusal,
    SearchQuery, Seq, Snapshot, StoredMessage, Target, UnreadCount,
};

/// Which part of the loop asked: storage echoes the ticket, and the loop
/// hands the answer to the desk that parked it (each desk keeps its own
/// waiting list, so neither needs to know the other's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Desk {
    /// The chat hub: `history` frames, `join … since` replays, `unread`,
    /// private room changes, edits, deletes and reactions, and a cluster
    /// node's catch-up, resync and room look-ups, and the push profile of
    /// each user a message is pushed to.
    Hub,
    /// The HTTP routes: `GET /api/messages`, `GET /api/search`, a cluster
    /// login's user look-up, the push routes' writes and settings (and
    /// password jobs on the pool).
    Http,
    /// The file routes (`http/files.rs`): uploads' rows, file look-ups,
    /// avatars, the sweep's questions.
    Files,
}

/// Pairs an asynchronous reply with whoever is waiting for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket {
    pub desk: Desk,
    pub seq: u64,
}

/// What the loop asks of storage.
/// Which user a `FindUser` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// A name that follows the username rule (any case).
    Name(String),
    Id(UserId),
}

#[derive(Debug)]

pub enum Request {
    /// Reply: `UserStored` / `UserFailed`. The row's `id` is the loop's key
    /// for the reply; the database numbers users itself (a command line
    /// may add one while the server runs). The first user of an empty
    /// server is stored as an admin, whatever `row.account.role` says.
    /// With `invite`, one use of that invite is spent in the same
    /// transaction, or the row is refused (`Conflict::Invite`). `audit`
    /// (the operator's `hubbub user create`) is written with the row.
    PutUser {
        row: UserRow,
        invite: Option<String>,
        audit: Option<Audit>,
    },
    /// Reply: `MessageStored`, `MessageExists` (the same user's `client_id`
    /// is already stored: a retry the loop no longer remembered, perhaps
    /// sent to another node), or `MessageFailed`. `msg.id` is the loop's key
    /// for the reply (and the id itself on a backend that takes the loop's
    /// ids); `msg.seq` is ignored.
    /// `MessageRefused` when `msg.reply_to` is not a message of the same
    /// room or conversation (or was deleted), or when an attachment is no
    /// upload of the sender's. Of `msg.attachments` only the ids are read:
    /// storage fills in the rest from the files' rows, stores them with
    /// the message and answers them in `MessageStored`. `mentions`: the users whose
    /// `@name` it carries and who may read it, for their unread mention
    /// counts (kept for room messages only: a conversation's unread count
    /// already is the mention count).
    PutMessage {
        msg: StoredMessage,
        client_id: Option<String>,
        mentions: Vec<UserId>,
    },
    /// A public room is getting its first message (sent until one commits;
    /// storing it twice is harmless; the first `creator` stays). No reply.
    PutPublicRoom { name: String, creator: UserId },
    /// No reply.
    SetLastSeen { user: UserId, at_ms: i64 },
    /// Reply: `Done` / `Failed`. The hub applies it in memory only after `Done`.
    PutPrivateRoom { ticket: Ticket, row: PrivateRoomRow },
    /// Reply: `Done` / `Failed`.
    AddMember {
        ticket: Ticket,
        room: String,
        user: UserId,
    },
    /// Reply: `Done` / `Failed`. `audit`: a moderator removed someone
    /// from a room they do not own (see [`membership_audit`]), written
    /// in the same transaction.
    RemoveMember {
        ticket: Ticket,
        room: String,
        user: UserId,
        audit: Option<Audit>,
    },
    /// Moves `user`'s read marker forward (never back). No reply.
    MarkRead {
        user: UserId,
        target: Target,
        id: MsgId,
    },
    /// Moves `user`'s read marker in their conversation with `peer`
    /// forward to `id`, only if `id` is a message of that conversation:
    /// the receipt the peer then gets names one of their own messages,
    /// never an id from elsewhere. Reply: `Done` when it is, `Failed`
    /// when it is not (or could not be stored).
    MarkConversationRead {
        ticket: Ticket,
        user: UserId,
        peer: UserId,
        id: MsgId,
    },
    /// Reply: `History` / `HistoryFailed`.
    History { ticket: Ticket, query: HistoryQuery },
    /// Reply: `Unread` (with no counts when the read failed).
    Unread { ticket: Ticket, user: UserId },
    /// The messages of `target` with `after < seq`, oldest first, at most
    /// `limit`: what a cluster node missed on the bus. Reply: `History`
    /// (messages carry their `seq`) / `HistoryFailed`.
    Catchup {
        ticket: Ticket,
        target: Target,
        after: Seq,
        limit: usize,
    },
    /// Everything `load` reads, again: a cluster node lost the bus and may
    /// have missed users, rooms and memberships made elsewhere. Reply:
    /// `Resynced` / `ResyncFailed`.
    Resync { ticket: Ticket },
    /// Whether room `name` is stored as a private room: a cluster node asks
    /// before it opens a room it has not heard of, since another node may
    /// have just created it. Reply: `RoomInfo` / `RoomInfoFailed`.
    RoomInfo { ticket: Ticket, name: String },
    /// The stored user called `name` (ASCII case folded, the one username
    /// rule, `users::name_key`) or with this id: a cluster node asks when a
    /// login names someone its directory has not heard of, or a note
    /// announces a user by id, since another node may have just signed them
    /// up. Reply: `UserFound` / `FindUserFailed`.
    FindUser { ticket: Ticket, who: Who },
    /// The author replaces a message's content. Reply: `Changed` (refused
    /// unless `user` wrote it) / `Failed`.
    EditMessage {
        ticket: Ticket,
        id: MsgId,
        user: UserId,
        content: String,
        at_ms: i64,
    },
    /// Deletes a message: its content is emptied, its reactions and
    /// mentions dropped, and it leaves every read but `Catchup`. Reply:
    /// `Changed` (refused unless `user` wrote it, owns its private room,
    /// or is a `moderator` and it is a room's, not a conversation's) /
    /// `Failed`. A moderator's delete of someone else's message is written
    /// to the audit log in the same transaction.
    DeleteMessage {
        ticket: Ticket,
        id: MsgId,
        user: UserId,
        /// The caller moderates (the loop checked the role in memory).
        moderator: bool,
        at_ms: i64,
    },
    /// Toggles `user`'s reaction `emoji` ([`toggle_reaction`](super::toggle_reaction)). Reply:
    /// `Changed` (refused when `user` may not read the message: a private
    /// room they are not a member of, a conversation not theirs) / `Failed`.
    React {
        ticket: Ticket,
        id: MsgId,
        user: UserId,
        emoji: String,
    },
    /// Reply: `History` with the matches *newest first* (at most
    /// `query.limit`) / `HistoryFailed`. Only messages `query.user` may
    /// read: conversations they are in, public rooms, private rooms they
    /// are a member of.
    Search { ticket: Ticket, query: SearchQuery },
    /// An account change (`accounts.rs`), with its change-log rows and its
    /// audit entry in the same transaction. Reply: `AccountWritten` /
    /// `Failed`.
    Account {
        ticket: Ticket,
        write: AccountWrite,
        audit: Option<Audit>,
    },
    /// Reply: `AccountRead` / `AccountReadFailed`.
    AccountRead { ticket: Ticket, read: AccountRead },
    /// Stores an upload's row, numbered by storage, unless its owner's
    /// files would then pass `quota` bytes (0: no quota; avatars do not
    /// count). Reply: `FileStored` / `FileRefused` (over the quota) /
    /// `Failed`.
    PutFile {
        ticket: Ticket,
        row: FileRow,
        quota: u64,
    },
    /// The bytes of `user`'s files (avatars aside). Reply: `FileUsage`.
    FileUsage { ticket: Ticket, user: UserId },
    /// File `id`, if `user` may read it (see `store::files`). Reply:
    /// `FileFound` / `FindFileFailed`.
    FindFile {
        ticket: Ticket,
        id: FileId,
        user: UserId,
    },
    /// Removes the rows of files nothing refers to whose grace began
    /// before `before_ms` (see `store::files`). Reply: `FilesSwept`.
    SweepFiles { before_ms: i64 },
    /// Makes file `file` (an avatar row of `user`'s) their avatar; the one
    /// it replaces stops being referred to (its grace begins at `at_ms`).
    /// Reply: `Done` / `Failed`.
    SetAvatar {
        ticket: Ticket,
        user: UserId,
        file: FileId,
        at_ms: i64,
    },
    /// Which of `keys` a file row names (the blob sweep keeps those).
    /// Reply: `BlobsUsed`.
    BlobsUsed { ticket: Ticket, keys: Vec<BlobKey> },
    /// Keeps a browser's push subscription for `row.user`. An endpoint
    /// already stored moves to this user with its new keys (the browser
    /// is signed in as them now: the previous user's pushes must not reach
    /// it); past [`MAX_PUSH_SUBSCRIPTIONS`](crate::config::MAX_PUSH_SUBSCRIPTIONS)
    /// the user's oldest other subscriptions go. Reply: `Done` / `Failed`.
    PutPushSubscription {
        ticket: Ticket,
        row: PushSubscription,
    },
    /// Forgets `endpoint` if it is `user`'s (another user's is left as it
    /// is). Reply: `Done` / `Failed`.
    DeletePushSubscription {
        ticket: Ticket,
        user: UserId,
        endpoint: String,
    },
    /// The push service answered that the subscription is gone (404 or
    /// 410): it is forgotten if it still has the secret `auth` it was sent
    /// with (a browser that subscribed it again since keeps it). No reply.
    DropPushSubscription { endpoint: String, auth: [u8; 16] },
    /// Sets `user`'s choice of what a push shows. Reply: `Done` / `Failed`.
    PutPushSettings {
        ticket: Ticket,
        user: UserId,
        show_text: bool,
    },
    /// `user`'s push settings and subscriptions. Reply: `PushProfile` /
    /// `PushProfileFailed`.
    PushProfile { ticket: Ticket, user: UserId },
    /// Reply: `Drained`, after every write sent before it is committed.
    /// (Reads on the reader thread are not waited for: at shutdown nobody
    /// needs their answers.)
    Drain,
}

/// What storage answers: for a write, after the batch holding it committed;
/// for a read, from a snapshot that holds every commit already answered.
/// Each reply that carries data has its own failure beside it, and a
/// request that fails is answered with the failure of the reply it would
/// have had ([`Request::failure`]), so the loop hands a failure to the
/// same waiter as the answer.
#[derive(Debug)]
pub enum Reply {
    /// `key` is the row's id as sent; `id` and `role` what was stored.
    UserStored {
        key: UserId,
        id: UserId,
        role: Role,
    },
    /// `conflict` when a unique name or email refused it.
    UserFailed {
        key: UserId,
        conflict: Option<Conflict>,
    },
    /// `key` is `msg.id` as sent; `id` and `seq` what it was stored as;
    /// `attachments` the files it carries, as stored.
    MessageStored {
        key: MsgId,
        id: MsgId,
        seq: Seq,
        attachments: Vec<Attachment>,
    },
    /// Not stored again: `existing` is the message this user already stored
    /// under the same `client_id`, at `timestamp_ms`.
    MessageExists {
        key: MsgId,
        existing: MsgId,
        timestamp_ms: i64,
    },
    /// `transient` when the whole batch failed (the database is down, the
    /// disk is full): the client is told `busy`, not `internal`.
    MessageFailed {
        key: MsgId,
        transient: bool,
    },
    /// Not stored: its `reply_to` is not a live message of its room or
    /// conversation, or an attachment is not the sender's to attach.
    MessageRefused {
        key: MsgId,
        why: PostRefusal,
    },
    /// An edit, delete or reaction was applied (`Ok`) or refused.
    Changed {
        ticket: Ticket,
        outcome: Result<Change, Refusal>,
    },
    /// A request with a ticket and no data to return was stored.
    Done {
        ticket: Ticket,
    },
    /// A request with a ticket and no data to return was not stored.
    Failed {
        ticket: Ticket,
    },
    /// A page of messages: the answer to `History`, `Search` and `Catchup`.
    History {
        ticket: Ticket,
        messages: Vec<StoredMessage>,
    },
    /// A `History`, `Search` or `Catchup` could not be read (the waiter
    /// answers with an error).
    HistoryFailed {
        ticket: Ticket,
    },
    /// Also `Unread`'s failure, with no counts: the `unread` frame that
    /// follows a connect is still sent, only empty.
    Unread {
        ticket: Ticket,
        counts: Vec<UnreadCount>,
    },
    Resynced {
        ticket: Ticket,
        snapshot: Box<Snapshot>,
    },
    ResyncFailed {
        ticket: Ticket,
    },
    UserFound {
        ticket: Ticket,
        row: Option<UserRow>,
    },
    /// `FindUser` could not be read (the login is answered `busy`).
    FindUserFailed {
        ticket: Ticket,
    },
    /// `private`: the room's row when it is a stored private room.
    RoomInfo {
        ticket: Ticket,
        private: Option<PrivateRoomRow>,
    },
    /// `RoomInfo` could not be read (a `join` waiting for it is answered
    /// `busy`).
    RoomInfoFailed {
        ticket: Ticket,
    },
    /// An account write was applied (with what it changed, as it is now)
    /// or refused.
    AccountWritten {
        ticket: Ticket,
        outcome: Result<AccountNews, AccountRefusal>,
    },
    AccountRead {
        ticket: Ticket,
        answer: AccountAnswer,
    },
    AccountReadFailed {
        ticket: Ticket,
    },
    /// The upload's row is stored as file `id`.
    FileStored {
        ticket: Ticket,
        id: FileId,
    },
    /// The upload would take its owner past their quota: not stored.
    FileRefused {
        ticket: Ticket,
    },
    /// `None` when the read failed.
    FileUsage {
        ticket: Ticket,
        bytes: Option<u64>,
    },
    /// `None`: no such file, or not one the user may read (the same
    /// answer, so nobody learns which files exist).
    FileFound {
        ticket: Ticket,
        row: Option<FileRow>,
    },
    FindFileFailed {
        ticket: Ticket,
    },
    FilesSwept {
        removed: u64,
    },
    /// The keys a row names; `None` when the read failed (nothing is
    /// removed then).
    BlobsUsed {
        ticket: Ticket,
        used: Option<Vec<BlobKey>>,
    },
    PushProfile {
        ticket: Ticket,
        profile: PushProfile,
    },
    /// `PushProfile` could not be read (a push is not sent; the settings
    /// route answers 500).
    PushProfileFailed {
        ticket: Ticket,
    },
    Drained,
}

/// What the storage threads and the backends need to know about a request
/// besides its data: one row per kind of request in [`Request::facts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// Its name in logs.
    pub name: &'static str,
    /// Answered from committed data, on the reader thread when the backend
    /// has one ([`super::Backend::reader`]); on the writer, in queue order,
    /// when it has none.
    pub is_read: bool,
    /// It can fail on its own data: a taken name or email, a room name
    /// already used, text PostgreSQL cannot hold, a stored row that does
    /// not parse. The others (a message, a public room, a last-seen time, a
    /// read marker, `Drain`) are the frequent writes: a backend checks their
    /// input before any statement runs, and writes them so that no
    /// statement of theirs can fail on data (no constraint to break; a
    /// repeated client id is `ON CONFLICT DO NOTHING`), so a failure there
    /// is the transaction's. PostgreSQL, where any failed statement spoils
    /// the transaction, gives exactly the requests that may fail alone a
    /// savepoint.
    pub may_fail_alone: bool,
    /// Its writes take more than one statement (a private room and its
    /// members; a removed member, their read marker and mentions; a deleted
    /// message and its mentions; a room message and its mentions), so one
    /// of them failing would leave the others behind. SQLite, where a
    /// failed statement undoes only itself, gives exactly these a savepoint.
    pub writes_several_statements: bool,
    /// An edit, a delete or a reaction: it rewrites a stored message
    /// (PostgreSQL orders these with the appends: see its `append.rs`).
    pub changes_a_message: bool,
}

impl Facts {
    /// A write whose statements, its input checked, cannot fail on data.
    const fn write(name: &'static str) -> Facts {
        Facts {
            name,
            is_read: false,
            may_fail_alone: false,
            writes_several_statements: false,
            changes_a_message: false,
        }
    }

    /// A read writes nothing, so there is nothing for a savepoint to undo
    /// on SQLite; on PostgreSQL, when it runs on the writer, its failure
    /// must not spoil the batch, so it may fail alone.
    const fn read(name: &'static str) -> Facts {
        Facts {
            is_read: true,
            may_fail_alone: true,
            ..Facts::write(name)
        }
    }

    /// An edit, a delete or a reaction: it rewrites a stored message, and
    /// its text may be refused (a NUL on PostgreSQL) alone.
    const fn change(name: &'static str) -> Facts {
        Facts {
            changes_a_message: true,
            ..Facts::write(name).failing_alone()
        }
    }

    const fn failing_alone(self) -> Facts {
        Facts {
            may_fail_alone: true,
            ..self
        }
    }

    const fn several_statements(self, several: bool) -> Facts {
        Facts {
            writes_several_statements: several,
            ..self
        }
    }
}

impl Request {
    /// `PutUser` without an invite or an audit entry.
    pub fn put_user(row: UserRow) -> Request {
        Request::PutUser {
            row,
            invite: None,
            audit: None,
        }
    }

    /// This request's facts. Exhaustive on purpose: a new request gets its
    /// row here, and nowhere else.
    pub fn facts(&self) -> Facts {
        use Facts as F;
        match self {
            // The invite, the row and its change-log entry.
            Request::PutUser { .. } => F::write("put_user")
                .failing_alone()
                .several_statements(true),
            Request::PutMessage { msg, mentions, .. } => F::write("put_message")
                .several_statements(
                    (msg.room.is_some() && !mentions.is_empty()) || !msg.attachments.is_empty(),
                ),
            Request::PutPublicRoom { .. } => F::write("put_public_room"),
            Request::SetLastSeen { .. } => F::write("set_last_seen"),
            Request::PutPrivateRoom { .. } => F::write("put_private_room")
                .failing_alone()
                .several_statements(true),
            Request::AddMember { .. } => F::write("add_member").failing_alone(),
            Request::RemoveMember { .. } => F::write("remove_member")
                .failing_alone()
                .several_statements(true),
            Request::MarkRead { .. } => F::write("mark_read"),
            Request::MarkConversationRead { .. } => F::write("mark_conversation_read"),
            Request::History { .. } => F::read("history"),
            Request::Unread { .. } => F::read("unread"),
            Request::Catchup { .. } => F::read("catchup"),
            Request::Resync { .. } => F::read("resync"),
            Request::RoomInfo { .. } => F::read("room_info"),
            Request::FindUser { .. } => F::read("find_user"),
            Request::Search { .. } => F::read("search"),
            // One check, then one update.
            Request::EditMessage { .. } => F::change("edit_message"),
            Request::DeleteMessage { .. } => F::change("delete_message").several_statements(true),
            Request::React { .. } => F::change("react"),
            Request::Account { .. } => F::write("account").failing_alone().several_statements(true),
            Request::AccountRead { .. } => F::read("account_read"),
            // A quota read, then one insert (whose text may be refused).
            Request::PutFile { .. } => F::write("put_file").failing_alone(),
            Request::FileUsage { .. } => F::read("file_usage"),
            Request::FindFile { .. } => F::read("find_file"),
            Request::SweepFiles { .. } => F::write("sweep_files"),
            Request::SetAvatar { .. } => F::write("set_avatar").several_statements(true),
            Request::BlobsUsed { .. } => F::read("blobs_used"),
            // An upsert, then the user's oldest past the bound go.
            Request::PutPushSubscription { .. } => F::write("put_push_subscription")
                .failing_alone()
                .several_statements(true),
            Request::DeletePushSubscription { .. } => {
                F::write("delete_push_subscription").failing_alone()
            }
            Request::DropPushSubscription { .. } => F::write("drop_push_subscription"),
            Request::PutPushSettings { .. } => F::write("put_push_settings"),
            Request::PushProfile { .. } => F::read("push_profile"),
            Request::Drain => F::write("drain"),
        }
    }

    /// The reply this request gets when it could not be applied, or its
    /// batch could not be committed (`transient`: the batch failed, not the
    /// request: a message's sender is told `busy`, not `internal`). `None`
    /// for the writes nobody waits for.
    pub fn failure(&self, transient: bool) -> Option<Reply> {
        Some(match self {
            Request::PutUser { row, .. } => Reply::UserFailed {
                key: row.id,
                conflict: None,
            },
            Request::PutMessage { msg, .. } => Reply::MessageFailed {
                key: msg.id,
                transient,
            },
            Request::PutPrivateRoom { ticket, .. }
            | Request::AddMember { ticket, .. }
            | Request::RemoveMember { ticket, .. }
            | Request::EditMessage { ticket, .. }
            | Request::DeleteMessage { ticket, .. }
            | Request::React { ticket, .. }
            | Request::Account { ticket, .. }
            | Request::MarkConversationRead { ticket, .. }
            | Request::PutFile { ticket, .. }
            | Request::SetAvatar { ticket, .. }
            | Request::PutPushSubscription { ticket, .. }
            | Request::DeletePushSubscription { ticket, .. }
            | Request::PutPushSettings { ticket, .. } => Reply::Failed { ticket: *ticket },
            Request::FileUsage { ticket, .. } => Reply::FileUsage {
                ticket: *ticket,
                bytes: None,
            },
            Request::FindFile { ticket, .. } => Reply::FindFileFailed { ticket: *ticket },
            Request::BlobsUsed { ticket, .. } => Reply::BlobsUsed {
                ticket: *ticket,
                used: None,
            },
            Request::SweepFiles { .. } => Reply::FilesSwept { removed: 0 },
            Request::PushProfile { ticket, .. } => Reply::PushProfileFailed { ticket: *ticket },
            Request::AccountRead { ticket, .. } => Reply::AccountReadFailed { ticket: *ticket },
            Request::History { ticket, .. }
            | Request::Search { ticket, .. }
            | Request::Catchup { ticket, .. } => Reply::HistoryFailed { ticket: *ticket },
            Request::Unread { ticket, .. } => Reply::Unread {
                ticket: *ticket,
                counts: Vec::new(),
            },
            Request::Resync { ticket } => Reply::ResyncFailed { ticket: *ticket },
            Request::RoomInfo { ticket, .. } => Reply::RoomInfoFailed { ticket: *ticket },
            Request::FindUser { ticket, .. } => Reply::FindUserFailed { ticket: *ticket },
            Request::Drain => Reply::Drained,
            Request::PutPublicRoom { .. }
            | Request::SetLastSeen { .. }
            | Request::MarkRead { .. }
            | Request::DropPushSubscription { .. } => {
                return None;
            }
        })
    }
}

/// Whether the user of an edit, delete or reaction may make it: the one
/// rule both backends apply, once they have found the live message
/// (`author`, whether it is a room's (`in_room`), and `private_owner` when
/// it is in a private room). An edit is its author's while they may read it
/// (a member removed from a private room no longer edits there); a delete
/// the same, or the private room's owner's, or a moderator's (room messages
/// only: a conversation stays its two people's); a reaction anyone's who may read the message (`may_read`,
/// asked only when the rest allows, since it may cost a query).
pub fn may_change<E>(
    req: &Request,
    author: UserId,
    in_room: bool,
    private_owner: Option<UserId>,
    may_read: impl FnOnce() -> Result<bool, E>,
) -> Result<bool, E> {
    // Author or not, only someone who may read the message now (a member
    // of its private room, not one removed since) changes it.
    Ok(match req {
        Request::EditMessage { user, .. } => *user == author && may_read()?,
        Request::DeleteMessage {
            user, moderator, ..
        } => {
            private_owner == Some(*user)
                || (*moderator && in_room)
                || (*user == author && may_read()?)
        }
        Request::React { .. } => may_read()?,
        _ => false,
    })
}

/// The audit entry of a delete that only a moderator's role allowed (not
/// the author's own, nor a private room owner's), once [`may_change`]
/// said yes.
pub fn moderation_audit(
    req: &Request,
    author: UserId,
    room: Option<&str>,
    private_owner: Option<UserId>,
) -> Option<Audit> {
    let Request::DeleteMessage {
        id,
        user,
        moderator: true,
        at_ms,
        ..
    } = req
    else {
        return None;
    };
    if *user == author || private_owner == Some(*user) {
        return None;
    }
    Some(Audit {
        at_ms: *at_ms,
        actor: Some(*user),
        action: "delete_message",
        target: format!("message {id} in {}", room.unwrap_or("")),
        reason: String::new(),
    })
}

/// The audit entry of a `remove_member` that only a moderator's role
/// allowed: `actor` is not the room's `owner`. An owner managing their own
/// room is not moderation (as an author's own delete is not), so it is
/// not audited.
pub fn membership_audit(
    actor: UserId,
    owner: UserId,
    room: &str,
    removed: &str,
    at_ms: i64,
) -> Option<Audit> {
    (actor != owner).then(|| Audit {
        at_ms,
        actor: Some(actor),
        action: "remove_member",
        target: format!("{removed} from {room}"),
        reason: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::{TICKET, msg};

    /// A removal from a private room is moderation, and audited, only
    /// when the remover does not own the room.
    #[test]
    fn only_a_non_owners_removal_is_audited() {
        assert_eq!(membership_audit(1, 1, "ops", "bob", 5), None);
        let a = membership_audit(3, 1, "ops", "bob", 5).expect("a moderator's removal");
        assert_eq!(
            (a.actor, a.action, a.target.as_str(), a.at_ms),
            (Some(3), "remove_member", "bob from ops", 5)
        );
    }

    /// A read that fails is answered with the failure of the reply it
    /// would have had, carrying its ticket, so the loop hands it to the
    /// waiter the answer would have reached: a failed room look-up to the
    /// `join` waiting for it, a failed user look-up to the login, a failed
    /// page to its history waiter; a failed `Unread` is an empty one.
    #[test]
    fn each_read_fails_as_its_own_reply() {
        let name = || "x".to_string();
        let page = HistoryQuery {
            target: Target::Room(name()),
            reader: 1,
            before: None,
            after: None,
            limit: 1,
            offset: 0,
        };
        let search = SearchQuery {
            user: 1,
            words: vec![name()],
            scope: None,
            limit: 1,
        };
        let cases = [
            Request::History {
                ticket: TICKET,
                query: page,
            },
            Request::Search {
                ticket: TICKET,
                query: search,
            },
            Request::Catchup {
                ticket: TICKET,
                target: Target::Room(name()),
                after: 0,
                limit: 1,
            },
            Request::Unread {
                ticket: TICKET,
                user: 1,
            },
            Request::Resync { ticket: TICKET },
            Request::RoomInfo {
                ticket: TICKET,
                name: name(),
            },
            Request::FindUser {
                ticket: TICKET,
                who: Who::Name(name()),
            },
            Request::PushProfile {
                ticket: TICKET,
                user: 1,
            },
        ];
        let answered: Vec<String> = cases
            .iter()
            .map(|req| {
                assert!(req.facts().is_read, "{} is a read", req.facts().name);
                match req.failure(false) {
                    Some(Reply::HistoryFailed { ticket }) if ticket == TICKET => "history",
                    Some(Reply::Unread { ticket, counts })
                        if ticket == TICKET && counts.is_empty() =>
                    {
                        "unread"
                    }
                    Some(Reply::ResyncFailed { ticket }) if ticket == TICKET => "resync",
                    Some(Reply::RoomInfoFailed { ticket }) if ticket == TICKET => "room_info",
                    Some(Reply::FindUserFailed { ticket }) if ticket == TICKET => "find_user",
                    Some(Reply::PushProfileFailed { ticket }) if ticket == TICKET => "push_profile",
                    other => panic!("{}: {other:?}", req.facts().name),
                }
                .to_string()
            })
            .collect();
        assert_eq!(
            answered,
            [
                "history",
                "history",
                "history",
                "unread",
                "resync",
                "room_info",
                "find_user",
                "push_profile"
            ]
        );
    }

    /// A message whose batch failed is told apart from one refused alone
    /// (`transient`: its sender hears `busy`, not `internal`), and the
    /// writes nobody waits for get no reply at all.
    #[test]
    fn write_failures_say_whether_the_batch_failed() {
        let put = Request::PutMessage {
            msg: msg(7, Some("r"), 1, None),
            client_id: None,
            mentions: Vec::new(),
        };
        for transient in [false, true] {
            assert!(matches!(
                put.failure(transient),
                Some(Reply::MessageFailed { key: 7, transient: t }) if t == transient
            ));
        }
        let unanswered = Request::MarkRead {
            user: 1,
            target: Target::Direct(1, 2),
            id: 7,
        };
        assert!(unanswered.failure(true).is_none());
        assert!(!unanswered.facts().is_read);
    }
}
