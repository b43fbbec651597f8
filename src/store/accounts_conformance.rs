//! What every backend must do with accounts (`accounts.rs`): the first
//! user is admin, invites are spent once each, sessions end, roles keep an
//! admin, bans, passwords, profiles and deletions change the row and its
//! version, settings, the audit log, the change log that every node polls
//! and what `load` reads back. One suite, run against SQLite and
//! PostgreSQL alike (each backend's tests call [`check_all`] on a fresh
//! database), so the two stores cannot drift apart.

use super::fixtures::{TICKET, user};
use super::{
    AccountAnswer, AccountNews, AccountRead, AccountRefusal, AccountSettings, AccountWrite, Audit,
    Backend, Ban, Conflict, InviteRow, PasswordHash, PrivateRoomRow, Reply, Request, Role,
    SessionRow, Sid, UserId, UserRow,
};
use crate::clock;
use crate::config::SignupMode;

fn one(db: &mut dyn Backend, req: Request) -> Reply {
    db.begin().expect("begin");
    let reply = db.execute(&req).expect("execute").expect("a reply");
    db.commit().expect("commit");
    reply
}

fn write(db: &mut dyn Backend, w: AccountWrite) -> Result<AccountNews, AccountRefusal> {
    write_audited(db, w, None)
}

fn write_audited(
    db: &mut dyn Backend,
    w: AccountWrite,
    audit: Option<Audit>,
) -> Result<AccountNews, AccountRefusal> {
    match one(
        db,
        Request::Account {
            ticket: TICKET,
            write: w,
            audit,
        },
    ) {
        Reply::AccountWritten { outcome, .. } => outcome,
        other => panic!("expected AccountWritten, got {other:?}"),
    }
}

fn read(db: &mut dyn Backend, r: AccountRead) -> AccountAnswer {
    match one(
        db,
        Request::AccountRead {
            ticket: TICKET,
            read: r,
        },
    ) {
        Reply::AccountRead { answer, .. } => answer,
        other => panic!("expected AccountRead, got {other:?}"),
    }
}

/// Signs up `name` (key `key`); the id and role stored, or the conflict.
fn sign_up(
    db: &mut dyn Backend,
    key: UserId,
    name: &str,
    email: &str,
    invite: Option<&str>,
) -> Result<(UserId, Role), Option<Conflict>> {
    let row = UserRow {
        email: email.into(),
        created_ms: clock::now_ms(),
        ..user(key, name)
    };
    match one(
        db,
        Request::PutUser {
            row,
            invite: invite.map(String::from),
            audit: None,
        },
    ) {
        Reply::UserStored { id, role, .. } => Ok((id, role)),
        Reply::UserFailed { conflict, .. } => Err(conflict),
        other => panic!("expected a user reply, got {other:?}"),
    }
}

fn changes_after(db: &mut dyn Backend, after: i64) -> AccountNews {
    match read(
        db,
        AccountRead::Changes {
            after,
            gaps: Vec::new(),
        },
    ) {
        AccountAnswer::Changes(news) => news,
        other => panic!("{other:?}"),
    }
}

fn session(sid: u128, user: UserId, expires_ms: i64) -> SessionRow {
    SessionRow {
        sid: Sid(sid),
        user,
        created_ms: clock::now_ms() - 10,
        expires_ms,
        address: "192.0.2.7".into(),
        agent: "test agent".into(),
        ended_ms: None,
    }
}

/// Runs every check below on `db`, a fresh database with no users.
pub fn check_all(db: &mut dyn Backend) {
    let ids = signups_and_invites(db);
    sessions(db, ids);
    roles_bans_profiles(db, ids);
    settings_audit_and_the_log(db, ids);
    deletion(db, ids);
}

/// The users the checks share.
#[derive(Clone, Copy)]
struct Ids {
    alice: UserId,
    bob: UserId,
    carol: UserId,
}

/// The first signup is admin, the next are members; emails are optional
/// and only given ones must be unique; invites are spent once per signup,
/// refused when used up, expired or revoked, and a refused signup spends
/// nothing.
fn signups_and_invites(db: &mut dyn Backend) -> Ids {
    let (alice, role) = sign_up(db, 1, "alice", "a@example.com", None).unwrap();
    assert_eq!(role, Role::Admin, "the first account administers");
    let (bob, role) = sign_up(db, 2, "bob", "", None).unwrap();
    assert_eq!(role, Role::Member);
    assert_eq!(
        sign_up(db, 9, "Bob", "", None),
        Err(Some(Conflict::Username))
    );
    assert_eq!(
        sign_up(db, 9, "erin", "A@EXAMPLE.com", None),
        Err(Some(Conflict::Email))
    );
    let now = clock::now_ms();
    let invite = |code: &str, uses, expires_ms| {
        AccountWrite::PutInvite(InviteRow {
            code: code.into(),
            created_by: Some(alice),
            created_ms: now,
            expires_ms,
            uses,
            used: 0,
            revoked_ms: None,
        })
    };
    write(db, invite("once", 1, now + 60_000)).unwrap();
    write(db, invite("old", 5, now - 1)).unwrap();
    write(db, invite("gone", 5, now + 60_000)).unwrap();
    assert_eq!(
        sign_up(db, 3, "bob", "", Some("once")),
        Err(Some(Conflict::Username)),
        "refused for its name"
    );
    let (carol, _) = sign_up(db, 3, "carol", "", Some("once")).expect("the invite's one use");
    assert_eq!(
        sign_up(db, 4, "dave", "", Some("once")),
        Err(Some(Conflict::Invite)),
        "used up"
    );
    assert_eq!(
        sign_up(db, 4, "dave", "", Some("old")),
        Err(Some(Conflict::Invite))
    );
    assert_eq!(
        sign_up(db, 4, "dave", "", Some("nope")),
        Err(Some(Conflict::Invite))
    );
    let revoke = |by| AccountWrite::RevokeInvite {
        code: "gone".into(),
        by,
        at_ms: now,
    };
    assert_eq!(
        write(db, revoke(Some(bob))),
        Err(AccountRefusal::NoSuchInvite),
        "not bob's"
    );
    write(db, revoke(Some(alice))).unwrap();
    assert_eq!(
        write(db, revoke(None)),
        Err(AccountRefusal::NoSuchInvite),
        "revoked already"
    );
    assert_eq!(
        sign_up(db, 4, "dave", "", Some("gone")),
        Err(Some(Conflict::Invite))
    );
    match read(
        db,
        AccountRead::Invites {
            by: None,
            now_ms: now,
        },
    ) {
        AccountAnswer::Invites(list) => assert!(list.is_empty(), "none usable: {list:?}"),
        other => panic!("{other:?}"),
    }
    write(db, invite("open", 3, now + 60_000)).unwrap();
    match read(
        db,
        AccountRead::Invites {
            by: Some(bob),
            now_ms: now,
        },
    ) {
        AccountAnswer::Invites(list) => assert!(list.is_empty(), "bob made none"),
        other => panic!("{other:?}"),
    }
    match read(
        db,
        AccountRead::Invites {
            by: Some(alice),
            now_ms: now,
        },
    ) {
        AccountAnswer::Invites(list) => {
            assert_eq!(list.len(), 1);
            assert_eq!((&*list[0].code, list[0].uses, list[0].used), ("open", 3, 0));
        }
        other => panic!("{other:?}"),
    }
    Ids { alice, bob, carol }
}

/// Sessions are listed open, newest first; ending one reports it ended
/// (once: again, or someone else's, is `NoSuchSession`); ending all but
/// one ends the rest and cuts off tokens without a session.
fn sessions(db: &mut dyn Backend, ids: Ids) {
    let far = clock::now_ms() + 3_600_000;
    for s in [1, 2, 3] {
        write(db, AccountWrite::OpenSession(session(s, ids.bob, far))).unwrap();
    }
    write(db, AccountWrite::OpenSession(session(9, ids.carol, far))).unwrap();
    let listed = |db: &mut dyn Backend| match read(
        db,
        AccountRead::Sessions {
            user: ids.bob,
            now_ms: clock::now_ms(),
        },
    ) {
        AccountAnswer::Sessions(s) => s.iter().map(|s| s.sid.0).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let mut open = listed(db);
    open.sort_unstable();
    assert_eq!(open, [1, 2, 3]);
    let at_ms = clock::now_ms();
    let news = write(
        db,
        AccountWrite::EndSession {
            user: ids.bob,
            sid: Sid(2),
            at_ms,
        },
    )
    .unwrap();
    assert_eq!(news.ended.len(), 1);
    assert_eq!((news.ended[0].sid, news.ended[0].user), (Sid(2), ids.bob));
    assert_eq!(news.ended[0].expires_ms, far);
    for (user, sid) in [(ids.bob, 2), (ids.bob, 9), (ids.carol, 1)] {
        let again = AccountWrite::EndSession {
            user,
            sid: Sid(sid),
            at_ms,
        };
        assert_eq!(write(db, again), Err(AccountRefusal::NoSuchSession));
    }
    let news = write(
        db,
        AccountWrite::EndSessions {
            user: ids.bob,
            except: Some(Sid(3)),
            at_ms,
        },
    )
    .unwrap();
    let mut ended: Vec<u128> = news.ended.iter().map(|e| e.sid.0).collect();
    ended.sort_unstable();
    assert_eq!(ended, [1, 2], "every ended one, the earlier included");
    assert_eq!(news.users.len(), 1);
    assert_eq!(news.users[0].account.sessions_after_ms, at_ms);
    assert_eq!(listed(db), [3]);
    let snap = db.load().expect("load");
    let mut kept: Vec<u128> = snap.accounts.ended.iter().map(|e| e.sid.0).collect();
    kept.sort_unstable();
    assert_eq!(kept, [1, 2], "load knows what ended");
}

/// Roles change, never leaving the server without an admin; bans carry
/// their reason and lift; a new password ends every session but the one
/// kept; profiles set and clear; every write raises the row's version.
fn roles_bans_profiles(db: &mut dyn Backend, ids: Ids) {
    let role = |user, role| AccountWrite::SetRole { user, role };
    assert_eq!(
        write(db, role(ids.alice, Role::Member)),
        Err(AccountRefusal::LastAdmin)
    );
    let news = write(db, role(ids.bob, Role::Admin)).unwrap();
    let v1 = news.users[0].account.version;
    assert_eq!(news.users[0].account.role, Role::Admin);
    let news = write(db, role(ids.alice, Role::Moderator)).unwrap();
    assert_eq!(
        news.users[0].account.role,
        Role::Moderator,
        "another admin remains"
    );
    assert_eq!(
        write(db, role(999, Role::Admin)),
        Err(AccountRefusal::NoSuchUser)
    );
    let news = write(
        db,
        AccountWrite::Ban {
            user: ids.carol,
            reason: "spam".into(),
            at_ms: 77,
        },
    )
    .unwrap();
    assert_eq!(
        news.users[0].account.ban,
        Some(Ban {
            at_ms: 77,
            reason: "spam".into()
        })
    );
    let news = write(db, AccountWrite::Unban { user: ids.carol }).unwrap();
    assert_eq!(news.users[0].account.ban, None);
    let far = clock::now_ms() + 3_600_000;
    write(db, AccountWrite::OpenSession(session(4, ids.bob, far))).unwrap();
    let password = PasswordHash {
        iterations: 1000,
        salt: [1; 16],
        hash: [2; 32],
    };
    let news = write(
        db,
        AccountWrite::SetPassword {
            user: ids.bob,
            password: password.clone(),
            keep: Some(Sid(4)),
            at_ms: clock::now_ms(),
        },
    )
    .unwrap();
    assert_eq!(news.users[0].password, password);
    assert!(news.users[0].account.version > v1);
    let ended: Vec<u128> = news.ended.iter().map(|e| e.sid.0).collect();
    assert!(ended.contains(&3) && !ended.contains(&4), "{ended:?}");
    let profile = |display_name, status| AccountWrite::SetProfile {
        user: ids.carol,
        display_name,
        status,
    };
    let news = write(
        db,
        profile(Some(Some("Carol C.".into())), Some("away".into())),
    )
    .unwrap();
    let a = &news.users[0].account;
    assert_eq!(
        (a.display_name.as_deref(), &*a.status),
        (Some("Carol C."), "away")
    );
    let news = write(db, profile(Some(None), None)).unwrap();
    let a = &news.users[0].account;
    assert_eq!(
        (a.display_name.as_deref(), &*a.status),
        (None, "away"),
        "status kept"
    );
}

/// Settings are stored and read back (news and `load`); the audit log is
/// written with its write and read newest first, paged; the change log
/// names what changed, from any point, holes included.
fn settings_audit_and_the_log(db: &mut dyn Backend, ids: Ids) {
    let head = changes_after(db, 0).changes;
    assert!(!head.is_empty());
    let last = *head.last().unwrap();
    let settings = AccountSettings {
        signup: Some(SignupMode::Invite),
        invites_by: Some(Role::Member),
    };
    let audit = |n: i64| Audit {
        at_ms: n,
        actor: Some(ids.alice),
        action: "settings",
        target: format!("t{n}"),
        reason: "why".into(),
    };
    let news = write_audited(db, AccountWrite::SetSettings(settings), Some(audit(1))).unwrap();
    assert_eq!(news.settings, Some(settings));
    let only_signup = AccountSettings {
        signup: Some(SignupMode::Closed),
        invites_by: None,
    };
    write_audited(db, AccountWrite::SetSettings(only_signup), Some(audit(2))).unwrap();
    let snap = db.load().unwrap();
    assert_eq!(snap.accounts.settings.signup, Some(SignupMode::Closed));
    assert_eq!(
        snap.accounts.settings.invites_by,
        Some(Role::Member),
        "kept"
    );
    assert_eq!(snap.accounts.recent_changes.last(), Some(&(last + 2)));
    match read(
        db,
        AccountRead::Audit {
            before: None,
            limit: 1,
        },
    ) {
        AccountAnswer::Audit(e) => {
            assert_eq!(e.len(), 1);
            assert_eq!(
                (&*e[0].target, e[0].actor, &*e[0].action),
                ("t2", Some(ids.alice), "settings")
            );
            match read(
                db,
                AccountRead::Audit {
                    before: Some(e[0].id),
                    limit: 10,
                },
            ) {
                AccountAnswer::Audit(older) => assert_eq!(older[0].target, "t1"),
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
    let news = changes_after(db, last);
    assert_eq!(news.changes, [last + 1, last + 2]);
    assert_eq!(news.settings.unwrap().signup, Some(SignupMode::Closed));
    assert!(changes_after(db, last + 2).changes.is_empty());
    match read(
        db,
        AccountRead::Changes {
            after: last + 2,
            gaps: vec![last],
        },
    ) {
        AccountAnswer::Changes(n) => assert_eq!(n.changes, [last], "a hole asked about"),
        other => panic!("{other:?}"),
    }
    let users = changes_after(db, 0).users;
    assert!(
        users.iter().any(|u| u.id == ids.carol),
        "signups are in the log"
    );
}

/// A deleted account keeps its row under `deleted-user-<id>`, loses its
/// email, role, profile and private rooms, and frees its name; the last
/// admin cannot be deleted.
fn deletion(db: &mut dyn Backend, ids: Ids) {
    one(
        db,
        Request::PutPrivateRoom {
            ticket: TICKET,
            row: PrivateRoomRow {
                name: "ops".into(),
                owner: ids.bob,
                members: vec![ids.bob, ids.carol],
            },
        },
    );
    let delete = |user| AccountWrite::DeleteUser {
        user,
        at_ms: clock::now_ms(),
    };
    assert_eq!(write(db, delete(ids.bob)), Err(AccountRefusal::LastAdmin));
    let news = write(db, delete(ids.carol)).unwrap();
    let row = &news.users[0];
    assert_eq!(row.username, format!("deleted-user-{}", ids.carol));
    assert_eq!(row.email, "");
    assert!(row.account.deleted_ms.is_some() && row.account.display_name.is_none());
    let snap = db.load().unwrap();
    let ops = snap.private_rooms.iter().find(|r| r.name == "ops").unwrap();
    assert_eq!(ops.members, [ids.bob]);
    assert_eq!(
        write(db, delete(ids.carol)),
        Err(AccountRefusal::NoSuchUser)
    );
    assert!(
        sign_up(db, 10, "carol", "", None).is_ok(),
        "the name is free again"
    );
}
