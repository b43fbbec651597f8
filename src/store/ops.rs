//! The operator's commands on a store as a whole: the lock a running
//! server holds on its SQLite file (so `migrate` and `restore` refuse a
//! database in use, and a second server on the same file stops at start),
//! `hubbub backup` and `hubbub restore`, which puts a backup in place and
//! raises the id floor so that no id a client has seen is ever given to
//! another message.
//!
//! Files: a backup `B` of a SQLite database holds its blobs in `B-files/`
//! (the same layout as the directory beside the database, `files::dir`):
//! exactly the blobs the copied rows name, read from the copy after the
//! snapshot, so the two agree (blobs are immutable and named by their
//! bytes; the sweep removes only blobs no row named for its whole delay).
//! A restore puts those blobs beside the database before the database
//! itself, so a restored row never names a blob that is not there yet.
//!
//! Why a floor: after restoring an older backup the newest ids the clients
//! saw are gone from the database, and new messages would take them again:
//! a client resuming with `join … since` its last id would get nothing, or
//! the wrong messages. A restore therefore moves the next id to
//! [`id_floor_now`], the restore's time in milliseconds × 1000, above every
//! id issued before it (ids start at 1 and a previous restore's floor was
//! an earlier time, so this holds unless more than 1000 ids a millisecond
//! were issued on average since that restore). Clients need not know: their
//! `since` is below every new id, so resuming replays what is new. The
//! number stays below 2^53 (exact in JavaScript) until the year 2255.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Backend;
use super::postgres::parse_config;
use super::sqlite::{self, BackupStats, ID_FLOOR_SETTING, Sqlite};
pub use crate::files::Copied;
use crate::files::dir::{self, DirStore};
use crate::files::{FileStore, copy_blobs};
use crate::tls::services::connect_postgres;

/// Ids a restore skips to: now, in milliseconds since the epoch, × 1000.
pub fn id_floor_now() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    i64::try_from(ms).unwrap_or(i64::MAX / 1000) * 1000
}

/// The lock a server holds on its SQLite file for as long as it runs: a
/// `flock`, which SQLite's own POSIX locks do not see, so it never gets in
/// the way of reads, writes or `hubbub backup`.
pub struct Held(#[allow(dead_code)] File);

/// Takes the server's lock on `db`; the error says the file is in use.
pub fn hold(db: &Path) -> Result<Held, String> {
    let file = File::open(db).map_err(|e| format!("{}: {e}", db.display()))?;
    if flock(&file, libc::LOCK_EX) {
        Ok(Held(file))
    } else {
        Err(in_use(db))
    }
}

/// Err when a running server holds `db` (a missing file is no error here).
pub fn check_not_in_use(db: &Path) -> Result<(), String> {
    let Ok(file) = File::open(db) else {
        return Ok(());
    };
    if flock(&file, libc::LOCK_SH) {
        Ok(())
    } else {
        Err(in_use(db))
    }
}

fn in_use(db: &Path) -> String {
    format!(
        "{} is in use by a running hubbub server; stop it first",
        db.display()
    )
}

/// A non-blocking `flock`; true when taken.
fn flock(file: &File, how: libc::c_int) -> bool {
    // SAFETY: flock on a descriptor this `File` owns.
    unsafe { libc::flock(file.as_raw_fd(), how | libc::LOCK_NB) == 0 }
}

/// `hubbub backup PATH`: the database copied (one snapshot) and, beside
/// the copy, every blob it names. On failure nothing is left at `to` or
/// beside it.
pub fn backup(db: &Path, to: &Path) -> Result<(BackupStats, Copied), String> {
    let files_to = dir::beside(to);
    if files_to.exists() {
        return Err(format!(
            "{} already exists; not overwriting it",
            files_to.display()
        ));
    }
    let stats = sqlite::backup(db, to).map_err(|e| e.message)?;
    let copied = sqlite::blob_keys(to).and_then(|keys| {
        if keys.is_empty() {
            return Ok(Copied::default());
        }
        copy_files(&dir::beside(db), &files_to, &keys)
    });
    match copied {
        Ok(copied) => Ok((stats, copied)),
        Err(e) => {
            // Both are ours (created above), so removing them loses nothing.
            let _ = std::fs::remove_file(to);
            let _ = std::fs::remove_dir_all(&files_to);
            Err(e)
        }
    }
}

/// Copies `keys` from the blob directory `from` into the one at `to`
/// (created owner-only when missing). A missing `from` holds no blob.
fn copy_files(from: &Path, to: &Path, keys: &[crate::files::BlobKey]) -> Result<Copied, String> {
    let target = DirStore::open(to).map_err(|e| e.to_string())?;
    if !from.is_dir() {
        return Ok(Copied {
            copied: 0,
            missing: keys.len() as u64,
        });
    }
    let source = DirStore::open(from).map_err(|e| e.to_string())?;
    let (mut src, mut dst) = (
        source.handle().map_err(|e| e.to_string())?,
        target.handle().map_err(|e| e.to_string())?,
    );
    copy_blobs(&mut *src, &mut *dst, keys).map_err(|e| {
        format!(
            "copying the files from {} to {}: {e}",
            from.display(),
            to.display()
        )
    })
}

/// `hubbub restore BACKUP --db PATH`: replaces the (stopped) server's
/// database with the backup, leaving no `-wal` or `-shm` of the old file
/// behind, and raises the id floor; the backup's blobs go beside the
/// database first. Returns the floor and the blobs copied.
pub fn restore_sqlite(backup: &Path, db: &Path) -> Result<(i64, Copied), String> {
    check_not_in_use(db)?;
    // The backup must be a hubbub database before anything is replaced.
    let version: i64 =
        rusqlite::Connection::open_with_flags(backup, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
            .map_err(|e| format!("cannot read {}: {e}", backup.display()))?;
    if version == 0 {
        return Err(format!("{} is not a hubbub database", backup.display()));
    }
    let keys = sqlite::blob_keys(backup)?;
    let files = if keys.is_empty() {
        Copied::default()
    } else {
        copy_files(&dir::beside(backup), &dir::beside(db), &keys)?
    };
    let tmp = db.with_extension("restoring");
    let _ = std::fs::remove_file(&tmp);
    let copied = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut to| {
            let mut from = File::open(backup)?;
            std::io::copy(&mut from, &mut to)?;
            to.sync_all()
        });
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "cannot copy {} to {}: {e}",
            backup.display(),
            tmp.display()
        ));
    }
    for suffix in ["-wal", "-shm"] {
        let mut side = db.as_os_str().to_owned();
        side.push(suffix);
        match std::fs::remove_file(&side) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove {}: {e}", Path::new(&side).display())),
        }
    }
    std::fs::rename(&tmp, db)
        .map_err(|e| format!("cannot move {} to {}: {e}", tmp.display(), db.display()))?;
    let floor = id_floor_now();
    let mut restored = Sqlite::open(db).map_err(|e| e.message)?;
    restored
        .put_setting(ID_FLOOR_SETTING, floor.to_string().as_bytes())
        .map_err(|e| e.message)?;
    Ok((floor, files))
}

/// `hubbub restore --postgres URL`, after `pg_restore`: moves the message
/// id sequence up to the floor (never down). Returns the next id.
pub fn restore_postgres(url: &str) -> Result<i64, String> {
    let config = parse_config(url).map_err(|e| e.message)?;
    let mut client = connect_postgres(&config).map_err(|e| {
        format!(
            "cannot connect to PostgreSQL: {}",
            super::postgres::describe(&e)
        )
    })?;
    let row = client
        .query_one(
            "SELECT setval('message_ids', GREATEST($1, (SELECT last_value FROM message_ids), \
             (SELECT COALESCE(MAX(id), 0) FROM messages)))",
            &[&id_floor_now()],
        )
        .map_err(|e| format!("raising the id floor: {}", super::postgres::describe(&e)))?;
    Ok(row.get::<_, i64>(0) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The floor is above any id issued before and exact as a JavaScript
    /// number for centuries.
    #[test]
    fn the_floor_is_large_and_safe() {
        let f = id_floor_now();
        assert!(f > 1_700_000_000_000_000, "{f}");
        assert!(f < (1i64 << 53));
    }

    /// A held database is in use for `check_not_in_use` and a second
    /// `hold`; released, it is free again.
    #[test]
    fn a_held_database_is_in_use() {
        let dir = std::env::temp_dir().join(format!("hubbub-ops-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("x.db");
        std::fs::write(&db, b"").unwrap();
        let held = hold(&db).unwrap();
        assert!(check_not_in_use(&db).unwrap_err().contains("in use"));
        assert!(hold(&db).is_err());
        drop(held);
        check_not_in_use(&db).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
