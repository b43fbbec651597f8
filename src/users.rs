//! The user directory: every account, in loop-owned memory.
//!
//! The loop answers "who is this token?", "does bob exist?" and login checks
//! without asking storage, so these lookups never wait. The cost, admitted:
//! memory grows with accounts (about 150 bytes each), which is fine for the
//! self-hosted sizes hubbub is for. Signups reserve their name and email
//! while the password is hashed and the row is written, so two concurrent
//! signups cannot both win.
//!
//! # The username rule
//!
//! A username is 3-32 of `[A-Za-z0-9_.-]`, and two names are the same when
//! they are equal with ASCII letters folded to lower case ([`name_key`]).
//! Nothing else is a username: a name with any other character (`K`, the
//! Kelvin sign, is not `K`) names nobody, at signup, at login and in a
//! mention. The same rule is the stores' (SQLite's `NOCASE` folds ASCII
//! only; PostgreSQL's index is on `lower(username COLLATE "C")`, which does
//! too) and the login throttle's, whose key for a spelling that is not a
//! username is the username it becomes under Unicode's rules (NFKC, then
//! lower case) when it becomes one ([`throttle_key`]): a look-alike
//! spelling neither logs in as the account nor escapes its lockout.
//!
//! Each user carries their [`Account`] (role, ban, deletion, profile), so
//! every permission check is a look-up here, never a query. Rows read back
//! after a change ([`Directory::apply`]) replace a user only when newer
//! (`Account::version`), and say what changed for the others to see.

use std::collections::{HashMap, HashSet};

use unicode_normalization::UnicodeNormalization;

use crate::config::{DELETED_USER_PREFIX, MAX_USER_ID_JUMP, USERNAME_MAX, USERNAME_MIN};
use crate::store::{Account, PasswordHash, Role, UserId, UserRow};

/// Usernames (the signup rule; the login throttle tracks only names that
/// could exist): 3-32 of `[A-Za-z0-9_.-]`.
pub fn valid_username(s: &str) -> bool {
    (USERNAME_MIN..=USERNAME_MAX).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Whether a signup may take this name: `deleted-user-…` is what deleted
/// accounts are renamed to.
pub fn reserved_username(s: &str) -> bool {
    s.len() >= DELETED_USER_PREFIX.len()
        && s[..DELETED_USER_PREFIX.len()].eq_ignore_ascii_case(DELETED_USER_PREFIX)
}

/// The one key a username is compared by: its ASCII lower case; `None`
/// for a name that is not a username (see the module doc).
pub fn name_key(name: &str) -> Option<Box<str>> {
    valid_username(name).then(|| name.to_ascii_lowercase().into_boxed_str())
}

/// The login throttle's key for a name as typed: the username's key, or
/// for another spelling the key of the username it folds to under Unicode
/// (NFKC, lower case), if any; `None` when it names no possible account.
pub fn throttle_key(name: &str) -> Option<Box<str>> {
    name_key(name).or_else(|| {
        let folded: String = name.nfkc().collect::<String>().to_lowercase();
        name_key(&folded)
    })
}

pub struct User {
    pub id: UserId,
    pub name: Box<str>,
    /// Empty: none given.
    pub email: Box<str>,
    pub password: PasswordHash,
    pub last_seen_ms: Option<i64>,
    /// The user may have something unread (see `Snapshot::unread_sources`);
    /// only then does connecting cost a storage query. Never reset: `true`
    /// only means "ask".
    pub unread_sources: bool,
    pub account: Account,
}

impl User {
    pub fn role(&self) -> Role {
        self.account.role
    }

    /// A moderator or an admin.
    pub fn moderates(&self) -> bool {
        self.account.role >= Role::Moderator
    }

    pub fn is_banned(&self) -> bool {
        self.account.ban.is_some()
    }

    pub fn is_deleted(&self) -> bool {
        self.account.deleted_ms.is_some()
    }

    /// The URL of the user's avatar, as user objects carry it (`None`: they
    /// have none, or the account is deleted). The file's id makes each
    /// avatar's URL its own.
    pub fn avatar_url(&self) -> Option<String> {
        if self.is_deleted() {
            return None;
        }
        self.account
            .avatar
            .map(|id| format!("/api/users/{}/avatar?v={id}", self.name))
    }

    /// The name shown for the user: the display name, else the username.
    pub fn shown_name(&self) -> &str {
        self.account.display_name.as_deref().unwrap_or(&self.name)
    }
}

/// What a row read back changed about a user, for the hub to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Changed {
    pub id: UserId,
    /// Not known here before.
    pub new: bool,
    /// Banned now, and was not.
    pub banned: bool,
    /// Deleted now, and was not.
    pub deleted: bool,
    /// What others see of the user changed: name, display name, status,
    /// role, deletion (a ban is the moderators' business: not shown).
    pub shown: bool,
    /// Their tokens from before sessions were cut off (`sessions_after_ms`
    /// moved on).
    pub legacy_ended: bool,
}

#[derive(Default)]
pub struct Directory {
    /// Indexed by `id - 1`: ids are dense, assigned here.
    users: Vec<User>,
    /// [`name_key`] → id: names are unique without regard to ASCII case.
    by_name: HashMap<Box<str>, UserId>,
    emails: HashSet<Box<str>>,
    /// Name keys and emails of signups still being hashed or stored.
    reserved: HashSet<Box<str>>,
    /// Ids handed out to signups not yet stored (in order; a failed signup
    /// leaves a gap, which is harmless).
    next_id: UserId,
}

/// A name or email is already used (or being signed up).
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    Username,
    Email,
}

/// A name that is not a username is kept under itself, so it can match
/// nothing a username's key can (rows from before the rule, if any).
fn key(s: &str) -> Box<str> {
    name_key(s).unwrap_or_else(|| format!("!{s}").into_boxed_str())
}

fn email_key(s: &str) -> Box<str> {
    format!("@{}", s.to_lowercase()).into_boxed_str()
}

/// Why a row was not added to the directory.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Id 0, or one implausibly far past every id known.
    BadId,
    /// Another user already has this id or name.
    Clash,
}

impl Directory {
    pub fn from_rows(rows: Vec<UserRow>) -> Directory {
        let mut d = Directory::default();
        for row in rows {
            let id = row.id;
            match d.insert(row) {
                Ok(()) => d.next_id = d.next_id.max(id),
                Err(e) => log::error!("user {id} from storage left out: {e:?}"),
            }
        }
        d
    }

    pub fn get(&self, id: UserId) -> Option<&User> {
        let u = self.users.get((id as usize).checked_sub(1)?)?;
        (u.id == id).then_some(u)
    }

    pub fn get_mut(&mut self, id: UserId) -> Option<&mut User> {
        let u = self.users.get_mut((id as usize).checked_sub(1)?)?;
        (u.id == id).then_some(u)
    }

    /// The user with this name, in any ASCII case; nobody for a name that
    /// is not a username, and never a deleted account.
    pub fn find(&self, name: &str) -> Option<&User> {
        let key = name_key(name)?;
        self.by_name
            .get(&*key)
            .and_then(|id| self.get(*id))
            .filter(|u| !u.is_deleted())
    }

    /// Admins who are not deleted (a count of a few; a walk is fine for
    /// the rare admin request that asks).
    pub fn admins(&self) -> usize {
        self.all()
            .filter(|u| u.role() == Role::Admin && !u.is_deleted())
            .count()
    }

    /// A row read back from storage after a change (here, on another node,
    /// or on the command line): applied when the user is new or the row is
    /// newer than what is held. Returns what changed, if anything.
    pub fn apply(&mut self, row: UserRow) -> Option<Changed> {
        let Some(u) = self.get(row.id) else {
            let id = row.id;
            if self.by_name.contains_key(&*key(&row.username)) {
                // The name is held by another id here: a row from a newer
                // state than this directory's (a rename by deletion that
                // has not reached it). Skip; the next read has both.
                return None;
            }
            let deleted = row.account.deleted_ms.is_some();
            if let Err(e) = self.insert(row) {
                log::error!("user {id} read back left out: {e:?}");
                return None;
            }
            self.next_id = self.next_id.max(id);
            return Some(Changed {
                id,
                new: true,
                deleted,
                shown: true,
                ..Changed::default()
            });
        };
        if row.account.version <= u.account.version {
            return None;
        }
        let (was, now) = (&u.account, &row.account);
        let changed = Changed {
            id: row.id,
            new: false,
            banned: now.ban.is_some() && was.ban.is_none(),
            deleted: now.deleted_ms.is_some() && was.deleted_ms.is_none(),
            legacy_ended: now.sessions_after_ms > was.sessions_after_ms,
            shown: *u.name != *row.username
                || was.display_name != now.display_name
                || was.status != now.status
                || was.role != now.role
                || was.deleted_ms != now.deleted_ms
                || was.avatar != now.avatar,
        };
        let (old_name, old_email) = (key(&u.name), email_key(&u.email));
        let had_email = !u.email.is_empty();
        if *old_name != *key(&row.username) {
            self.by_name.remove(&old_name);
            self.by_name.insert(key(&row.username), row.id);
        }
        if had_email && *old_email != *email_key(&row.email) {
            self.emails.remove(&old_email);
        }
        if !row.email.is_empty() {
            self.emails.insert(email_key(&row.email));
        }
        let u = self.get_mut(row.id).expect("checked above");
        u.name = row.username.into_boxed_str();
        u.email = row.email.into_boxed_str();
        u.password = row.password;
        u.account = row.account;
        Some(changed)
    }

    /// Every user, by id.
    pub fn all(&self) -> impl Iterator<Item = &User> {
        self.users.iter().filter(|u| u.id != 0)
    }

    /// Marks that `id` may have unread messages from now on.
    pub fn mark_unread_source(&mut self, id: UserId) {
        if let Some(u) = self.get_mut(id) {
            u.unread_sources = true;
        }
    }

    /// The name of `id`, or "" for an id that was never stored (cannot happen
    /// for ids read from storage, which only holds stored users).
    pub fn name(&self, id: UserId) -> &str {
        self.get(id).map_or("", |u| &u.name)
    }

    /// Claims a name and email (if any: `""` is none) for a signup in
    /// progress, and a key for its storage reply.
    pub fn reserve(&mut self, name: &str, email: &str) -> Result<UserId, Taken> {
        let (n, e) = (key(name), email_key(email));
        if self.by_name.contains_key(&n) || self.reserved.contains(&n) {
            return Err(Taken::Username);
        }
        if !email.is_empty() && (self.emails.contains(&e) || self.reserved.contains(&e)) {
            return Err(Taken::Email);
        }
        self.reserved.insert(n);
        if !email.is_empty() {
            self.reserved.insert(e);
        }
        self.next_id += 1;
        Ok(self.next_id)
    }

    /// Gives a reservation back (the signup failed).
    pub fn release(&mut self, name: &str, email: &str) {
        self.reserved.remove(&key(name));
        if !email.is_empty() {
            self.reserved.remove(&email_key(email));
        }
    }

    /// Adds a stored user, ending its reservation. Rows come from storage
    /// and are input all the same: id 0, an id far past the table's end
    /// (which would grow it to gigabytes), or an id or name another user
    /// has are refused and change nothing.
    pub fn insert(&mut self, row: UserRow) -> Result<(), Refused> {
        let highest = self.users.len().max(self.next_id as usize);
        if row.id == 0 || row.id as usize > highest + MAX_USER_ID_JUMP as usize {
            return Err(Refused::BadId);
        }
        if self.get(row.id).is_some()
            || self
                .by_name
                .get(&key(&row.username))
                .is_some_and(|id| *id != row.id)
        {
            return Err(Refused::Clash);
        }
        self.release(&row.username, &row.email);
        let idx = row.id as usize - 1;
        if self.users.len() <= idx {
            self.users.resize_with(idx + 1, || User {
                id: 0,
                name: "".into(),
                email: "".into(),
                password: PasswordHash {
                    iterations: 0,
                    salt: [0; 16],
                    hash: [0; 32],
                },
                last_seen_ms: None,
                unread_sources: false,
                account: Account::default(),
            });
        }
        self.by_name.insert(key(&row.username), row.id);
        if !row.email.is_empty() {
            self.emails.insert(email_key(&row.email));
        }
        self.users[idx] = User {
            id: row.id,
            name: row.username.into_boxed_str(),
            email: row.email.into_boxed_str(),
            password: row.password,
            last_seen_ms: row.last_seen_ms,
            unread_sources: false,
            account: row.account,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: UserId, name: &str) -> UserRow {
        UserRow {
            id,
            username: name.into(),
            email: format!("{name}@x.org"),
            password: PasswordHash {
                iterations: 1,
                salt: [0; 16],
                hash: [0; 32],
            },
            created_ms: 0,
            last_seen_ms: None,
            account: Account::default(),
        }
    }

    /// Names are unique without regard to case, reservations block a second
    /// signup, and released reservations free the name again.
    #[test]
    fn reserves_names_and_emails() {
        let mut d = Directory::from_rows(vec![row(1, "Alice")]);
        assert_eq!(d.find("alice").unwrap().id, 1);
        assert_eq!(d.reserve("ALICE", "new@x.org"), Err(Taken::Username));
        assert_eq!(d.reserve("bob", "alice@X.org"), Err(Taken::Email));
        assert_eq!(d.reserve("bob", "bob@x.org"), Ok(2));
        assert_eq!(d.reserve("Bob", "other@x.org"), Err(Taken::Username));
        d.release("bob", "bob@x.org");
        assert_eq!(d.reserve("bob", "bob@x.org"), Ok(3));
        d.insert(row(3, "bob")).unwrap();
        assert_eq!(d.get(3).unwrap().name.as_ref(), "bob");
        assert!(d.get(2).is_none(), "the failed signup's id stays a gap");
        assert_eq!(d.all().count(), 2);
    }

    /// Without an email, a signup reserves only its name, and any number
    /// of users may have none.
    #[test]
    fn email_is_optional() {
        let mut d = Directory::from_rows(vec![UserRow {
            email: String::new(),
            ..row(1, "alice")
        }]);
        assert_eq!(d.reserve("bob", ""), Ok(2));
        assert_eq!(d.reserve("carol", ""), Ok(3));
        d.release("bob", "");
        assert_eq!(d.reserve("bob", ""), Ok(4));
    }

    /// A newer row replaces the user and says what changed; an older or
    /// equal one changes nothing; a deletion renames the user, frees the
    /// old name and hides it from `find`.
    #[test]
    fn applies_newer_rows_only() {
        let mut d = Directory::from_rows(vec![row(1, "alice"), row(2, "bob")]);
        let mut banned = row(2, "bob");
        banned.account.version = 2;
        banned.account.ban = Some(crate::store::Ban {
            at_ms: 5,
            reason: "spam".into(),
        });
        let c = d.apply(banned.clone()).expect("newer");
        assert!(c.banned && !c.shown && !c.deleted && !c.new);
        assert!(d.find("bob").unwrap().is_banned());
        let mut older = row(2, "bob");
        older.account.version = 1;
        assert_eq!(d.apply(older), None, "older: ignored");
        assert_eq!(d.apply(banned), None, "the same version: nothing new");
        let mut gone = row(1, &crate::store::accounts::deleted_name(1));
        gone.account.version = 1;
        gone.account.deleted_ms = Some(9);
        gone.email = String::new();
        let c = d.apply(gone).expect("deleted");
        assert!(c.deleted && c.shown);
        assert!(d.find("alice").is_none() && d.find("deleted-user-1").is_none());
        assert_eq!(
            d.reserve("alice", "alice@x.org"),
            Ok(3),
            "name and email free"
        );
        assert_eq!(&*d.get(1).unwrap().name, "deleted-user-1");
        let c = d.apply(row(7, "dave")).expect("new");
        assert!(c.new);
        assert_eq!(
            d.reserve("erin", "e@x.org"),
            Ok(8),
            "keys pass every id seen"
        );
    }

    /// Signups may not take the name deleted accounts are given.
    #[test]
    fn reserves_the_deleted_prefix() {
        assert!(reserved_username("deleted-user-3") && reserved_username("Deleted-User-x"));
        assert!(!reserved_username("deleted-use") && !reserved_username("alice"));
    }

    /// Rows are input: id 0 (which once panicked), an id far past the
    /// table, a taken id or name are refused and change nothing.
    #[test]
    fn refuses_rows_that_cannot_be_right() {
        let mut d = Directory::from_rows(vec![row(1, "alice"), row(0, "zero")]);
        assert_eq!(d.all().count(), 1);
        assert_eq!(d.insert(row(0, "zed")), Err(Refused::BadId));
        let far = 2 + MAX_USER_ID_JUMP;
        assert_eq!(d.insert(row(far, "far")), Err(Refused::BadId));
        assert_eq!(d.insert(row(u32::MAX, "max")), Err(Refused::BadId));
        assert_eq!(d.insert(row(1, "other")), Err(Refused::Clash));
        assert_eq!(d.insert(row(2, "ALICE")), Err(Refused::Clash));
        assert_eq!(d.users.len(), 1, "nothing grew");
        assert_eq!(d.insert(row(2, "bob")), Ok(()));
    }

    /// One rule for names: ASCII case folds; another spelling is nobody,
    /// but counts against the throttle of the name it folds to.
    #[test]
    fn names_compare_under_one_rule() {
        let d = Directory::from_rows(vec![row(1, "kate_x")]);
        assert_eq!(d.find("KATE_X").unwrap().id, 1);
        let kelvin = "\u{212A}ate_x";
        assert!(d.find(kelvin).is_none(), "the Kelvin sign is not K");
        assert!(d.find("ｋａｔｅ_x").is_none());
        assert_eq!(throttle_key(kelvin).as_deref(), Some("kate_x"));
        assert_eq!(throttle_key("ｋａｔｅ_x").as_deref(), Some("kate_x"));
        assert_eq!(throttle_key("Kate_X").as_deref(), Some("kate_x"));
        assert_eq!(throttle_key("ünï"), None);
        assert_eq!(name_key(kelvin), None);
    }
}
