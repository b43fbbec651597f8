//! Blobs as files in a directory beside the SQLite database
//! (`hubbub.db-files/` beside `hubbub.db`): content-addressed, each blob at
//! `blobs/<first two hex digits>/<its key in hex>`, so two uploads of the
//! same bytes are one file.
//!
//! A draft is a file in `drafts/`; its commit is `fsync` of the file,
//! `rename` into `blobs/` (atomic: a reader sees the whole blob or none)
//! and `fsync` of the directory that gained the name, so a committed blob
//! survives a crash and a partial one is never under a key. A crash
//! mid-upload leaves only a draft, removed at the next start
//! ([`FileStore::clear_drafts`]: one server per database, so any draft
//! then is a leftover).
//!
//! A blob's modification time is when it was last committed (a commit of
//! bytes already stored touches it). The sweep removes a blob only when
//! that is older than its `idle_for`, under a lock that commits also take,
//! so "is it idle?" and "remove it" are one step against a commit of the
//! same bytes on another thread.
//!
//! Private content: the directories are created owner-only (0700) and the
//! files 0600, whatever the umask, like the database.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::{BlobKey, Blobs, DraftId, FileError, FileStore, ReadId};

/// Permission bits of the blob files: the owner's only.
const FILE_MODE: u32 = 0o600;
/// Permission bits of the directories.
const DIR_MODE: u32 = 0o700;

/// The directory a SQLite database at `db` keeps its files in.
pub fn beside(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push("-files");
    db.with_file_name(name)
}

/// A directory of blobs.
pub struct DirStore {
    root: PathBuf,
    /// Taken by commits and removals: see the module doc.
    lock: Arc<Mutex<()>>,
}

impl DirStore {
    /// Opens (creating, owner-only) the directory at `root`.
    pub fn open(root: &Path) -> Result<DirStore, FileError> {
        for d in [root.to_path_buf(), root.join("blobs"), root.join("drafts")] {
            make_dir(&d)?;
        }
        Ok(DirStore {
            root: root.to_path_buf(),
            lock: Arc::new(Mutex::new(())),
        })
    }
}

fn make_dir(d: &Path) -> Result<(), FileError> {
    match DirBuilder::new().mode(DIR_MODE).create(d) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists && d.is_dir() => Ok(()),
        Err(e) => Err(FileError::Io(format!("cannot create {}: {e}", d.display()))),
    }
}

impl FileStore for DirStore {
    fn handle(&self) -> Result<Box<dyn Blobs>, FileError> {
        Ok(Box::new(DirBlobs {
            root: self.root.clone(),
            lock: self.lock.clone(),
            drafts: HashMap::new(),
            readers: HashMap::new(),
            next: 0,
        }))
    }

    fn clear_drafts(&self) -> Result<u64, FileError> {
        let mut n = 0;
        for entry in fs::read_dir(self.root.join("drafts"))? {
            let path = entry?.path();
            match fs::remove_file(&path) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(FileError::Io(format!(
                        "cannot remove {}: {e}",
                        path.display()
                    )));
                }
            }
        }
        Ok(n)
    }

    fn describe(&self) -> String {
        format!("files in {}", self.root.display())
    }
}

/// One thread's handle on a [`DirStore`].
struct DirBlobs {
    root: PathBuf,
    lock: Arc<Mutex<()>>,
    drafts: HashMap<DraftId, (File, PathBuf)>,
    readers: HashMap<ReadId, File>,
    next: u64,
}

impl DirBlobs {
    fn blob_path(&self, key: &BlobKey) -> PathBuf {
        let hex = key.hex();
        self.root.join("blobs").join(&hex[..2]).join(hex)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // Guards no data: a panic holding it left nothing torn.
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `path` was last modified at least `idle_for` ago.
fn idle(meta: &fs::Metadata, idle_for: Duration) -> bool {
    meta.modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|age| age >= idle_for)
}

/// Syncs a directory, so a name created or renamed in it is durable.
fn sync_dir(d: &Path) -> Result<(), FileError> {
    Ok(File::open(d)?.sync_all()?)
}

impl Blobs for DirBlobs {
    fn create(&mut self) -> Result<DraftId, FileError> {
        self.next += 1;
        let id = self.next;
        let path = self.root.join("drafts").join(format!(
            "{}-{:x}-{id}.part",
            std::process::id(),
            std::ptr::from_ref(self) as usize
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path)?;
        self.drafts.insert(id, (file, path));
        Ok(id)
    }

    fn append(&mut self, draft: DraftId, bytes: &[u8]) -> Result<(), FileError> {
        let (file, _) = self
            .drafts
            .get_mut(&draft)
            .ok_or_else(|| FileError::io("no such draft"))?;
        Ok(file.write_all(bytes)?)
    }

    fn commit(&mut self, draft: DraftId, key: &BlobKey) -> Result<(), FileError> {
        let (file, path) = self
            .drafts
            .remove(&draft)
            .ok_or_else(|| FileError::io("no such draft"))?;
        let target = self.blob_path(key);
        let dir = target.parent().expect("blob paths have a directory");
        let done = (|| {
            file.sync_all()?;
            drop(file);
            if !dir.is_dir() {
                make_dir(dir)?;
                sync_dir(&self.root.join("blobs"))?;
            }
            let _held = self.lock();
            // Over an existing blob this replaces the same bytes with the
            // same bytes, and makes it fresh for the sweep.
            fs::rename(&path, &target)?;
            sync_dir(dir)
        })();
        if done.is_err() {
            let _ = fs::remove_file(&path);
        }
        done
    }

    fn discard(&mut self, draft: DraftId) {
        if let Some((file, path)) = self.drafts.remove(&draft) {
            drop(file);
            if let Err(e) = fs::remove_file(&path)
                && e.kind() != ErrorKind::NotFound
            {
                log::warn!("files: cannot remove draft {}: {e}", path.display());
            }
        }
    }

    fn open(&mut self, key: &BlobKey) -> Result<Option<(ReadId, u64)>, FileError> {
        let file = match File::open(self.blob_path(key)) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata()?.len();
        self.next += 1;
        self.readers.insert(self.next, file);
        Ok(Some((self.next, size)))
    }

    fn read(&mut self, reader: ReadId, offset: u64, buf: &mut [u8]) -> Result<usize, FileError> {
        let file = self
            .readers
            .get(&reader)
            .ok_or_else(|| FileError::io("no such reader"))?;
        loop {
            match file.read_at(buf, offset) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                r => return Ok(r?),
            }
        }
    }

    fn close(&mut self, reader: ReadId) {
        self.readers.remove(&reader);
    }

    fn list(
        &mut self,
        after: Option<&BlobKey>,
        idle_for: Duration,
        limit: usize,
    ) -> Result<Vec<BlobKey>, FileError> {
        let after_hex = after.map(BlobKey::hex);
        let mut dirs: Vec<String> = fs::read_dir(self.root.join("blobs"))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|d| d.len() == 2)
            .filter(|d| after_hex.as_deref().is_none_or(|a| d.as_str() >= &a[..2]))
            .collect();
        dirs.sort_unstable();
        let mut out = Vec::new();
        for d in dirs {
            let mut keys: Vec<(BlobKey, PathBuf)> = fs::read_dir(self.root.join("blobs").join(&d))?
                .filter_map(|e| {
                    let e = e.ok()?;
                    let key = BlobKey::parse(e.file_name().to_str()?)?;
                    Some((key, e.path()))
                })
                .filter(|(k, _)| after.is_none_or(|a| k > a))
                .collect();
            keys.sort_unstable_by_key(|(k, _)| *k);
            for (key, path) in keys {
                if fs::metadata(&path).is_ok_and(|m| idle(&m, idle_for)) {
                    out.push(key);
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    fn remove(&mut self, key: &BlobKey, idle_for: Duration) -> Result<bool, FileError> {
        let path = self.blob_path(key);
        let _held = self.lock();
        match fs::metadata(&path) {
            Ok(m) if idle(&m, idle_for) => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for DirBlobs {
    fn drop(&mut self) {
        for (_, (file, path)) in self.drafts.drain() {
            drop(file);
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::conformance;
    use std::os::unix::fs::PermissionsExt;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let p = std::env::temp_dir().join(format!(
                "hubbub-dir-{tag}-{}-{:?}",
                std::process::id(),
                std::time::SystemTime::now()
            ));
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// The directory keeps every promise of the blob contract.
    #[test]
    fn directory_store_conforms() {
        let s = Scratch::new("conform");
        let store = DirStore::open(&s.0).unwrap();
        conformance::run(&store);
    }

    /// Blobs sit at their key under `blobs/`, owner-only, and a draft left
    /// by a crash is cleared at the next start without touching them.
    #[test]
    fn layout_modes_and_leftovers() {
        let s = Scratch::new("layout");
        let store = DirStore::open(&s.0).unwrap();
        let mut h = store.handle().unwrap();
        let key = crate::files::write_blob(&mut *h, b"hello").unwrap();
        let path = s.0.join("blobs").join(&key.hex()[..2]).join(key.hex());
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), FILE_MODE);
        assert_eq!(mode(&s.0), DIR_MODE);
        assert_eq!(mode(path.parent().unwrap()), DIR_MODE);
        let draft = h.create().unwrap();
        h.append(draft, b"half of an upl").unwrap();
        std::mem::forget(h); // a crash: no discard, no drop
        assert_eq!(fs::read_dir(s.0.join("drafts")).unwrap().count(), 1);
        assert_eq!(store.clear_drafts().unwrap(), 1);
        assert_eq!(fs::read_dir(s.0.join("drafts")).unwrap().count(), 0);
        assert_eq!(fs::read(&path).unwrap(), b"hello", "blobs are kept");
        assert_eq!(
            beside(Path::new("/var/lib/hubbub/hubbub.db")),
            PathBuf::from("/var/lib/hubbub/hubbub.db-files")
        );
    }
}
