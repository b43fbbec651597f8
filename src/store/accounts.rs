//! Users and their accounts as storage keeps them: the user's row
//! ([`UserRow`], with its [`PasswordHash`]), roles, bans, deletion and
//! profiles ([`Account`]), server-side sessions
//! ([`SessionRow`]), invites, the audit log, the account settings, the
//! rooms moderators archive or delete, and the change log through which
//! every node learns what changed elsewhere.
//! Plain data and the rules both backends apply; the statements are in
//! `sqlite/accounts.rs` and `postgres/accounts.rs`.
//!
//! The change log (`account_changes`): every write below adds a row naming
//! what it changed (a user's row, one session, all of a user's sessions,
//! the settings, a room) in the same transaction. Every node polls it
//! ([`AccountRead::Changes`]) and reads back the *current* state of what
//! the rows name ([`AccountNews`]), never a diff: reading a user twice, or
//! out of order, leaves the same result, and a user row carries a
//! `version` so an older read never replaces a newer one. So a change made
//! by another node, or by `hubbub user ...` while the server runs, reaches
//! every node the same way; a node that makes a change applies the same
//! news from its write's reply at once and tells the others on the bus to
//! poll now.

use std::fmt;

use crate::config::SignupMode;

/// Users are numbered from 1: by the loop on SQLite, by the database's
/// sequence on PostgreSQL (where several nodes sign users up at once).
pub type UserId = u32;

/// A user as stored, password hash included (the loop keeps it to verify logins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: UserId,
    pub username: String,
    pub email: String,
    pub password: PasswordHash,
    pub created_ms: i64,
    pub last_seen_ms: Option<i64>,
    /// Role, ban, deletion, profile, session cut-off, version.
    pub account: Account,
}

/// PBKDF2-HMAC-SHA256 output with the parameters that produced it, so the
/// iteration count can be raised later without invalidating old hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHash {
    pub iterations: u32,
    pub salt: [u8; 16],
    pub hash: [u8; 32],
}

/// What an account may do besides chat. Ordered: each may do what the
/// ones below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Role {
    #[default]
    Member,
    /// Deletes any room message, removes anyone from a private room,
    /// archives rooms, bans members, makes invites.
    Moderator,
    /// Everything: roles, bans of moderators, passwords, sessions,
    /// deleting rooms, the audit log, the settings.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "member" => Role::Member,
            "moderator" => Role::Moderator,
            "admin" => Role::Admin,
            _ => return None,
        })
    }
}

/// A ban in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub at_ms: i64,
    /// Shown to the banned user; may be empty.
    pub reason: String,
}

/// A user's standing and profile: what the contract's user objects and
/// the permission checks need, kept with the row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Account {
    pub role: Role,
    pub ban: Option<Ban>,
    /// Deleted: the row stays (its messages keep their author) under the
    /// name `deleted-user-<id>`, with no email and no way to log in.
    pub deleted_ms: Option<i64>,
    /// `None`: the username is shown.
    pub display_name: Option<String>,
    /// May be empty.
    pub status: String,
    /// Tokens without a session id (issued before sessions existed) are
    /// refused when issued at or before this: they belong to one session
    /// per user, which logging out with one of them, changing the
    /// password or an admin ends.
    pub sessions_after_ms: i64,
    /// Raised by every write to the row, so a node applies a row it reads
    /// back only when it is newer than the one it holds.
    pub version: u64,
    /// The file of their avatar (`PUT /api/me/avatar`): its id is in the
    /// avatar's URL, so a new one is a new URL and an old one caches forever.
    /// Carried here, with the rest of what others see of a user, so a new
    /// avatar reaches every node the way a new display name does.
    pub avatar: Option<super::files::FileId>,
}

/// A session id: 128 random bits, carried by a token as its `sid` claim
/// (32 hex digits) and stored the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid(pub u128);

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl Sid {
    /// The 32 lower-case hex digits [`Display`](fmt::Display) writes, and
    /// nothing else.
    pub fn parse(s: &str) -> Option<Sid> {
        if s.len() != 32 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(Sid)
    }
}

/// One login: a token carries its `sid`; ending it refuses the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub sid: Sid,
    pub user: UserId,
    pub created_ms: i64,
    /// When its token expires (then it is gone whether ended or not).
    pub expires_ms: i64,
    /// The client address that logged in, and its `User-Agent` (cut to
    /// `USER_AGENT_MAX`), so a user can tell their sessions apart.
    pub address: String,
    pub agent: String,
    pub ended_ms: Option<i64>,
}

/// A session that ended before its token expired: every node refuses its
/// token until `expires_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub sid: Sid,
    pub user: UserId,
    pub expires_ms: i64,
}

/// An invite code: a signup in `invite` mode spends one use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteRow {
    pub code: String,
    /// `None`: made on the command line.
    pub created_by: Option<UserId>,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub uses: u32,
    pub used: u32,
    pub revoked_ms: Option<i64>,
}

/// An entry of the audit log, to write: who (`None`: the operator, on the
/// command line), what, to whom or what, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    pub at_ms: i64,
    pub actor: Option<UserId>,
    pub action: &'static str,
    pub target: String,
    pub reason: String,
}

/// An entry of the audit log, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub id: i64,
    pub at_ms: i64,
    pub actor: Option<UserId>,
    pub action: String,
    pub target: String,
    pub reason: String,
}

/// The settings an admin may change, as stored (`settings` keys `signup`
/// and `invites_by`); `None` where none was ever made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccountSettings {
    pub signup: Option<SignupMode>,
    /// The lowest role that may make invites (default: moderators).
    pub invites_by: Option<Role>,
}

impl AccountSettings {
    pub const SIGNUP: &'static str = "signup";
    pub const INVITES_BY: &'static str = "invites_by";

    /// A stored value of `key`, read into these settings (an unknown key
    /// or value is ignored: a newer binary's setting).
    pub fn read(&mut self, key: &str, value: &[u8]) {
        let value = std::str::from_utf8(value).unwrap_or("");
        match key {
            Self::SIGNUP => self.signup = SignupMode::parse(value).or(self.signup),
            Self::INVITES_BY => self.invites_by = Role::parse(value).or(self.invites_by),
            _ => {}
        }
    }
}

/// One account write, applied with its change-log rows (and its audit
/// entry, when it has one) in one transaction. Refusals are answered as
/// [`AccountRefusal`]s, not errors.
#[derive(Debug, Clone)]
pub enum AccountWrite {
    /// A login's session.
    OpenSession(SessionRow),
    /// Logs one session out; refused unless it is `user`'s and open.
    EndSession {
        user: UserId,
        sid: Sid,
        at_ms: i64,
    },
    /// Ends every session of `user` but `except` (and the tokens without
    /// a session: `sessions_after_ms` moves to now).
    EndSessions {
        user: UserId,
        except: Option<Sid>,
        at_ms: i64,
    },
    /// Ends only the tokens without a session (a logout with one).
    EndLegacySessions {
        user: UserId,
        at_ms: i64,
    },
    /// Refused when it would leave no admin.
    SetRole {
        user: UserId,
        role: Role,
    },
    Ban {
        user: UserId,
        reason: String,
        at_ms: i64,
    },
    Unban {
        user: UserId,
    },
    /// A new password; every session but `keep` ends.
    SetPassword {
        user: UserId,
        password: PasswordHash,
        keep: Option<Sid>,
        at_ms: i64,
    },
    /// `Some` fields change: a display name (`Some(None)` clears it) and
    /// a status.
    SetProfile {
        user: UserId,
        display_name: Option<Option<String>>,
        status: Option<String>,
    },
    /// Deletes the account: the row stays under `deleted-user-<id>` with
    /// no email, password, profile or role; sessions end; it leaves its
    /// private rooms and its read markers and mentions go. Its messages
    /// stay. Refused for the last admin.
    DeleteUser {
        user: UserId,
        at_ms: i64,
    },
    PutInvite(InviteRow),
    /// Refused unless the invite exists, is not revoked, and was made by
    /// `by` (`None`: whoever made it).
    RevokeInvite {
        code: String,
        by: Option<UserId>,
        at_ms: i64,
    },
    /// Stores the settings given (`Some`); the others stay.
    SetSettings(AccountSettings),
    /// Archives a room (closed to new messages, reactions and edits;
    /// still listed and readable) or opens it again. A room without a row
    /// (deleted meanwhile, on another node) changes nothing: the caller
    /// checked that the room exists, and a repeat is no error.
    ArchiveRoom {
        room: String,
        archived: bool,
    },
    /// Deletes a room for good: its row, members, messages (their files
    /// are released, as for a deleted message), mentions and read
    /// markers. The name is free again. Without a row, as `ArchiveRoom`.
    DeleteRoom {
        room: String,
        at_ms: i64,
    },
}

impl AccountWrite {
    /// Its name in logs.
    pub fn name(&self) -> &'static str {
        match self {
            AccountWrite::OpenSession(_) => "open_session",
            AccountWrite::EndSession { .. } => "end_session",
            AccountWrite::EndSessions { .. } => "end_sessions",
            AccountWrite::EndLegacySessions { .. } => "end_legacy_sessions",
            AccountWrite::SetRole { .. } => "set_role",
            AccountWrite::Ban { .. } => "ban",
            AccountWrite::Unban { .. } => "unban",
            AccountWrite::SetPassword { .. } => "set_password",
            AccountWrite::SetProfile { .. } => "set_profile",
            AccountWrite::DeleteUser { .. } => "delete_user",
            AccountWrite::PutInvite(_) => "put_invite",
            AccountWrite::RevokeInvite { .. } => "revoke_invite",
            AccountWrite::SetSettings(_) => "set_settings",
            AccountWrite::ArchiveRoom { .. } => "archive_room",
            AccountWrite::DeleteRoom { .. } => "delete_room",
        }
    }
}

/// Why an account write changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountRefusal {
    NoSuchUser,
    NoSuchSession,
    NoSuchInvite,
    /// The write would leave the server without an admin.
    LastAdmin,
}

/// What changed, as it is now: the rows of changed users (with their
/// `version`), the sessions that ended (and have not expired), the
/// settings when they changed, the rooms archived, opened again or
/// deleted, and the change-log ids read (for the poller's cursor).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountNews {
    pub users: Vec<UserRow>,
    pub ended: Vec<Ended>,
    pub settings: Option<AccountSettings>,
    pub rooms: Vec<RoomNews>,
    pub changes: Vec<i64>,
}

/// A room the change log names, as storage has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomNews {
    pub name: String,
    /// `None`: the room has no row any more (deleted).
    pub archived: Option<bool>,
}

/// What the change log says one row changed. Stored as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    /// The user's row (role, ban, profile, password, deletion, a new user).
    User,
    /// One session ended (the row names it).
    Session,
    /// Every ended session of the user.
    Sessions,
    /// The account settings.
    Settings,
    /// A room's row (archived, opened again, deleted); the row names it.
    Room,
}

impl LogKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LogKind::User => "user",
            LogKind::Session => "session",
            LogKind::Sessions => "sessions",
            LogKind::Settings => "settings",
            LogKind::Room => "room",
        }
    }

    /// The kind a stored name says; `None` for a newer binary's kind.
    pub fn parse(s: &str) -> Option<LogKind> {
        Some(match s {
            "user" => LogKind::User,
            "session" => LogKind::Session,
            "sessions" => LogKind::Sessions,
            "settings" => LogKind::Settings,
            "room" => LogKind::Room,
            _ => return None,
        })
    }
}

/// The account reads, answered by [`AccountAnswer`]s.
#[derive(Debug, Clone)]
pub enum AccountRead {
    /// The change log after `after`, and the ids in `gaps` (holes below it
    /// that may still commit), read into news.
    Changes { after: i64, gaps: Vec<i64> },
    /// `user`'s open sessions, newest first, at most `SESSIONS_LISTED_MAX`.
    Sessions { user: UserId, now_ms: i64 },
    /// Invites not revoked or expired, newest first; only those `by` made
    /// when given.
    Invites { by: Option<UserId>, now_ms: i64 },
    /// Audit entries with ids below `before`, newest first.
    Audit { before: Option<i64>, limit: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountAnswer {
    Changes(AccountNews),
    Sessions(Vec<SessionRow>),
    Invites(Vec<InviteRow>),
    Audit(Vec<AuditRow>),
}

/// The state of accounts `load` reads besides the users: the sessions
/// that ended and whose tokens have not expired, the settings, and where
/// the change log stands (its newest ids, so the poller can tell a hole
/// from a change not yet committed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountsSnapshot {
    pub ended: Vec<Ended>,
    pub settings: AccountSettings,
    pub recent_changes: Vec<i64>,
}

/// Recent change ids `load` returns: enough to see the holes among the
/// changes that were being committed while it read.
pub const RECENT_CHANGES: i64 = 256;

/// The username of a deleted account.
pub fn deleted_name(user: UserId) -> String {
    format!("{}{user}", crate::config::DELETED_USER_PREFIX)
}

/// Whether `who` may act on `target` in a way that needs rank (a ban, a
/// password reset): only on someone of a lower role, never on themselves.
pub fn outranks(who: Role, target: Role) -> bool {
    who > target
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session id prints as 32 hex digits and parses back; anything
    /// else is not one.
    #[test]
    fn sid_round_trips_as_hex() {
        let sid = Sid(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let text = sid.to_string();
        assert_eq!(text, "0123456789abcdef0011223344556677");
        assert_eq!(Sid::parse(&text), Some(sid));
        assert_eq!(Sid::parse(&Sid(1).to_string()), Some(Sid(1)));
        for bad in [
            "",
            "0123",
            &text.to_uppercase(),
            &format!("{text}0"),
            "+123456789abcdef0011223344556677",
        ] {
            assert_eq!(Sid::parse(bad), None, "{bad}");
        }
    }

    /// Roles order by what they may do, and read back from their names.
    #[test]
    fn roles_rank() {
        assert!(Role::Admin > Role::Moderator && Role::Moderator > Role::Member);
        assert!(outranks(Role::Moderator, Role::Member));
        assert!(!outranks(Role::Moderator, Role::Moderator));
        for r in [Role::Member, Role::Moderator, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("Admin"), None);
    }

    /// Stored settings read back; an unknown key or value changes nothing.
    #[test]
    fn settings_read_known_values_only() {
        let mut s = AccountSettings::default();
        s.read(AccountSettings::SIGNUP, b"invite");
        s.read(AccountSettings::INVITES_BY, b"member");
        s.read(AccountSettings::SIGNUP, b"sometimes");
        s.read("jwt_secret", b"x");
        assert_eq!(s.signup, Some(SignupMode::Invite));
        assert_eq!(s.invites_by, Some(Role::Member));
    }
}
