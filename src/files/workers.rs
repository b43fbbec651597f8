//! The threads that touch file bytes, and the loop's end of them: the
//! loop sends a job and forgets it; the answer comes back on one channel
//! with the loop's `Waker` rung, like storage's.
//!
//! Two kinds of thread, each with its own [`Blobs`] handle:
//! - *transfer* workers ([`FILE_THREADS`]): an upload's chunks are appended
//!   to its draft and hashed as they come, each answered with how many
//!   bytes it took (the loop reads more from the socket only as those
//!   answers free its window); a download's chunks are read on demand,
//!   one per request, so the loop decides how far ahead it reads. Every
//!   job of one transfer goes to the same worker, in order.
//! - *image* workers ([`IMAGE_THREADS`], at a lower priority): previews
//!   and avatars (`images.rs`), minutes of CPU at worst per job, never on
//!   a transfer worker where they would stall downloads.
//!
//! The queues are unbounded in type and bounded by the loop, which counts
//! the bytes it has in flight (`http/files.rs`) and the image jobs it has
//! queued. A worker that cannot get a handle (PostgreSQL is down) answers
//! every job with an error and tries again at the next job.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use super::images::{self, AvatarError, Inspected};
use super::{BlobKey, Blobs, DraftId, FileError, FileStore, Hasher, ReadId};
use crate::config::{FILE_THREADS, IMAGE_THREADS};
use crate::priority::{FILES_NICE, IMAGE_NICE, lower_current_thread};

/// A transfer (an upload or a download), numbered by the loop.
pub type TransferId = u64;

/// What a transfer worker is asked.
#[derive(Debug)]
pub enum FileJob {
    /// An upload starts: a new draft.
    Begin { t: TransferId },
    /// The next bytes of the upload's body.
    Append { t: TransferId, bytes: Vec<u8> },
    /// The body is complete: commit the draft under its hash.
    Finish { t: TransferId },
    /// The upload ended early (the client went away): drop the draft.
    Abort { t: TransferId },
    /// A download's next chunk: up to `len` bytes of `key` at `offset`.
    /// The blob stays open for the transfer until `Close`.
    Read {
        t: TransferId,
        key: BlobKey,
        offset: u64,
        len: usize,
    },
    /// The download is over.
    Close { t: TransferId },
    /// The sweep's candidates: blobs idle for `idle_for`, after `after`.
    List {
        after: Option<BlobKey>,
        idle_for: Duration,
        limit: usize,
    },
    /// Removes blobs nothing refers to (unless committed again meanwhile).
    Remove {
        keys: Vec<BlobKey>,
        idle_for: Duration,
    },
}

/// What an image worker is asked.
#[derive(Debug)]
pub enum ImageJob {
    /// Previews of an uploaded file that claims a raster type.
    Inspect { t: TransferId, key: BlobKey },
    /// An avatar from an uploaded image.
    Avatar { t: TransferId, key: BlobKey },
}

/// What the workers answer.
#[derive(Debug)]
pub enum FileReply {
    /// `bytes` of an `Append` were taken (written, or dropped after the
    /// draft failed): the loop's window for the upload opens by as much.
    Appended { t: TransferId, bytes: usize },
    /// The upload is committed as `key`, `size` bytes; or why not.
    Finished {
        t: TransferId,
        result: Result<(BlobKey, u64), FileError>,
    },
    /// A download's chunk (empty at the end of the blob) and the blob's
    /// size; `None` when the blob is not there.
    Data {
        t: TransferId,
        result: Result<Option<(Vec<u8>, u64)>, FileError>,
    },
    Listed {
        result: Result<Vec<BlobKey>, FileError>,
    },
    Inspected {
        t: TransferId,
        result: Result<Inspected, FileError>,
    },
    Avatar {
        t: TransferId,
        result: Result<(BlobKey, BlobKey), AvatarError>,
    },
}

/// Jobs a transfer worker answers at most before it rings the loop.
const WAKE_BATCH: usize = 64;

/// Rung after every reply.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// The loop's end of the workers.
pub struct FileWorkers {
    transfers: Vec<Sender<FileJob>>,
    images: Vec<Sender<ImageJob>>,
    next_image: usize,
    rx: Receiver<FileReply>,
    threads: Vec<JoinHandle<()>>,
    store: Arc<dyn FileStore>,
}

impl FileWorkers {
    /// Starts the workers on `store`, after clearing what an interrupted
    /// process left in it.
    pub fn spawn(store: Arc<dyn FileStore>, wake: Wake) -> FileWorkers {
        match store.clear_drafts() {
            Ok(0) => {}
            Ok(n) => log::info!("files: removed {n} unfinished uploads left from before"),
            Err(e) => log::warn!("files: cannot clear unfinished uploads: {e}"),
        }
        let (reply_tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        let mut transfers = Vec::new();
        for i in 0..FILE_THREADS {
            let (tx, jobs) = mpsc::channel();
            let (store, replies, wake) = (store.clone(), reply_tx.clone(), wake.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("hubbub-files-{i}"))
                    .spawn(move || {
                        lower_current_thread(FILES_NICE);
                        TransferWorker::new(store).run(jobs, &replies, &*wake);
                    })
                    .expect("spawning a file thread"),
            );
            transfers.push(tx);
        }
        let mut images = Vec::new();
        for i in 0..IMAGE_THREADS {
            let (tx, jobs) = mpsc::channel::<ImageJob>();
            let (store, replies, wake) = (store.clone(), reply_tx.clone(), wake.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("hubbub-images-{i}"))
                    .spawn(move || {
                        lower_current_thread(IMAGE_NICE);
                        run_images(&*store, jobs, &replies, &*wake);
                    })
                    .expect("spawning an image thread"),
            );
            images.push(tx);
        }
        FileWorkers {
            transfers,
            images,
            next_image: 0,
            rx,
            threads,
            store,
        }
    }

    /// Queues a transfer job (on the transfer's worker; the sweep's on
    /// the first).
    pub fn send(&self, job: FileJob) {
        let t = match &job {
            FileJob::Begin { t }
            | FileJob::Append { t, .. }
            | FileJob::Finish { t }
            | FileJob::Abort { t }
            | FileJob::Read { t, .. }
            | FileJob::Close { t } => *t,
            FileJob::List { .. } | FileJob::Remove { .. } => 0,
        };
        let worker = &self.transfers[(t % self.transfers.len() as u64) as usize];
        if worker.send(job).is_err() {
            log::error!("files: a transfer worker is gone");
        }
    }

    /// Queues an image job, the workers taking turns.
    pub fn send_image(&mut self, job: ImageJob) {
        self.next_image = (self.next_image + 1) % self.images.len();
        if self.images[self.next_image].send(job).is_err() {
            log::error!("files: an image worker is gone");
        }
    }

    pub fn try_reply(&self) -> Option<FileReply> {
        self.rx.try_recv().ok()
    }

    /// Where the bytes are (the start line).
    pub fn describe(&self) -> String {
        self.store.describe()
    }

    /// Shutdown: the queues close, and each worker finishes what it holds.
    pub fn join(&mut self) {
        self.transfers.clear();
        self.images.clear();
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                log::error!("files: a worker panicked");
            }
        }
    }
}

/// A handle, made on first use and again after it failed.
struct Lazy {
    store: Arc<dyn FileStore>,
    blobs: Option<Box<dyn Blobs>>,
}

impl Lazy {
    fn get(&mut self) -> Result<&mut dyn Blobs, FileError> {
        if self.blobs.is_none() {
            self.blobs = Some(self.store.handle()?);
        }
        Ok(&mut **self.blobs.as_mut().expect("made above"))
    }
}

/// An upload being written.
struct Draft {
    id: Option<DraftId>,
    hasher: Hasher,
    size: u64,
    /// The first failure: the draft is discarded then, later chunks are
    /// dropped, and `Finish` says so.
    failed: Option<FileError>,
}

struct TransferWorker {
    blobs: Lazy,
    drafts: HashMap<TransferId, Draft>,
    readers: HashMap<TransferId, (ReadId, u64)>,
}

impl TransferWorker {
    fn new(store: Arc<dyn FileStore>) -> TransferWorker {
        TransferWorker {
            blobs: Lazy { store, blobs: None },
            drafts: HashMap::new(),
            readers: HashMap::new(),
        }
    }

    fn run(mut self, jobs: Receiver<FileJob>, replies: &Sender<FileReply>, wake: &dyn Fn()) {
        while let Ok(first) = jobs.recv() {
            // Jobs that queued up together are answered with one wake.
            let mut job = Some(first);
            let mut done = 0;
            while let Some(j) = job.take() {
                if let Some(r) = self.work(j) {
                    let _ = replies.send(r);
                }
                done += 1;
                if done < WAKE_BATCH {
                    job = jobs.try_recv().ok();
                }
            }
            wake();
        }
        let open: Vec<TransferId> = self.drafts.keys().copied().collect();
        for t in open {
            self.abort(t);
        }
    }

    fn work(&mut self, job: FileJob) -> Option<FileReply> {
        match job {
            FileJob::Begin { t } => {
                let id = self.blobs.get().and_then(|b| b.create());
                let (id, failed) = match id {
                    Ok(id) => (Some(id), None),
                    Err(e) => (None, Some(e)),
                };
                self.drafts.insert(
                    t,
                    Draft {
                        id,
                        hasher: Hasher::default(),
                        size: 0,
                        failed,
                    },
                );
                None
            }
            FileJob::Append { t, bytes } => {
                let n = bytes.len();
                if let Some(d) = self.drafts.get_mut(&t)
                    && d.failed.is_none()
                {
                    let written = match (d.id, self.blobs.blobs.as_mut()) {
                        (Some(id), Some(b)) => b.append(id, &bytes),
                        _ => Err(FileError::io("no draft")),
                    };
                    match written {
                        Ok(()) => {
                            d.hasher.update(&bytes);
                            d.size += n as u64;
                        }
                        Err(e) => {
                            // Its space back now, not once the rest of the
                            // body has come: on a full disk the database and
                            // other uploads need it.
                            if let (Some(id), Some(b)) = (d.id.take(), self.blobs.blobs.as_mut()) {
                                b.discard(id);
                            }
                            d.failed = Some(e);
                        }
                    }
                }
                Some(FileReply::Appended { t, bytes: n })
            }
            FileJob::Finish { t } => {
                let d = self.drafts.remove(&t)?;
                let result = match (d.failed, d.id) {
                    (Some(e), id) => {
                        if let (Some(id), Some(b)) = (id, self.blobs.blobs.as_mut()) {
                            b.discard(id);
                        }
                        Err(e)
                    }
                    (None, Some(id)) => {
                        let key = d.hasher.finish();
                        self.blobs
                            .get()
                            .and_then(|b| {
                                let done = b.commit(id, &key);
                                if done.is_err() {
                                    b.discard(id);
                                }
                                done
                            })
                            .map(|()| (key, d.size))
                    }
                    (None, None) => Err(FileError::io("no draft")),
                };
                if result.is_err() {
                    // The next job gets a fresh handle (a lost connection).
                    self.blobs.blobs = None;
                }
                Some(FileReply::Finished { t, result })
            }
            FileJob::Abort { t } => {
                self.abort(t);
                None
            }
            FileJob::Read {
                t,
                key,
                offset,
                len,
            } => Some(FileReply::Data {
                t,
                result: self.read(t, &key, offset, len),
            }),
            FileJob::Close { t } => {
                if let (Some((r, _)), Some(b)) =
                    (self.readers.remove(&t), self.blobs.blobs.as_mut())
                {
                    b.close(r);
                }
                None
            }
            FileJob::List {
                after,
                idle_for,
                limit,
            } => Some(FileReply::Listed {
                result: self
                    .blobs
                    .get()
                    .and_then(|b| b.list(after.as_ref(), idle_for, limit)),
            }),
            FileJob::Remove { keys, idle_for } => {
                let mut removed = 0;
                for key in &keys {
                    match self.blobs.get().and_then(|b| b.remove(key, idle_for)) {
                        Ok(true) => removed += 1,
                        Ok(false) => {}
                        Err(e) => log::warn!("files: cannot remove blob {}: {e}", key.hex()),
                    }
                }
                if removed > 0 {
                    log::info!("files: removed {removed} blobs nothing refers to");
                }
                None
            }
        }
    }

    fn abort(&mut self, t: TransferId) {
        if let Some(Draft { id: Some(id), .. }) = self.drafts.remove(&t)
            && let Some(b) = self.blobs.blobs.as_mut()
        {
            b.discard(id);
        }
    }

    fn read(
        &mut self,
        t: TransferId,
        key: &BlobKey,
        offset: u64,
        len: usize,
    ) -> Result<Option<(Vec<u8>, u64)>, FileError> {
        let blobs = self.blobs.get()?;
        let (reader, size) = match self.readers.get(&t) {
            Some(r) => *r,
            None => match blobs.open(key)? {
                Some(r) => {
                    self.readers.insert(t, r);
                    r
                }
                None => return Ok(None),
            },
        };
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            let n = blobs.read(reader, offset + got as u64, &mut buf[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        Ok(Some((buf, size)))
    }
}

fn run_images(
    store: &dyn FileStore,
    jobs: Receiver<ImageJob>,
    replies: &Sender<FileReply>,
    wake: &dyn Fn(),
) {
    let mut blobs: Option<Box<dyn Blobs>> = None;
    while let Ok(job) = jobs.recv() {
        if blobs.is_none() {
            match store.handle() {
                Ok(b) => blobs = Some(b),
                Err(e) => {
                    let _ = replies.send(match job {
                        ImageJob::Inspect { t, .. } => FileReply::Inspected { t, result: Err(e) },
                        ImageJob::Avatar { t, .. } => FileReply::Avatar {
                            t,
                            result: Err(AvatarError::Io(e)),
                        },
                    });
                    wake();
                    continue;
                }
            }
        }
        let b = &mut **blobs.as_mut().expect("made above");
        let reply = match job {
            ImageJob::Inspect { t, key } => {
                let result = images::inspect(b, &key);
                if result.is_err() {
                    blobs = None;
                }
                FileReply::Inspected { t, result }
            }
            ImageJob::Avatar { t, key } => {
                let result = images::avatar(b, &key);
                if matches!(result, Err(AvatarError::Io(_))) {
                    blobs = None;
                }
                FileReply::Avatar { t, result }
            }
        };
        let _ = replies.send(reply);
        wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::dir::DirStore;
    use std::time::Instant;

    fn next(w: &FileWorkers) -> FileReply {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(r) = w.try_reply() {
                return r;
            }
            assert!(Instant::now() < deadline, "no reply");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// An upload's chunks are each acknowledged, then committed under the
    /// hash of their bytes; a download reads them back chunk by chunk; an
    /// aborted upload leaves no blob; a missing blob reads as `None`.
    #[test]
    fn uploads_and_downloads_through_the_workers() {
        let root = std::env::temp_dir().join(format!("hubbub-workers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let store: Arc<dyn FileStore> = Arc::new(DirStore::open(&root).unwrap());
        let mut w = FileWorkers::spawn(store, Arc::new(|| {}));
        let body: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        w.send(FileJob::Begin { t: 7 });
        for piece in body.chunks(65_536) {
            w.send(FileJob::Append {
                t: 7,
                bytes: piece.to_vec(),
            });
        }
        w.send(FileJob::Finish { t: 7 });
        let mut taken = 0;
        let key = loop {
            match next(&w) {
                FileReply::Appended { t: 7, bytes } => taken += bytes,
                FileReply::Finished { t: 7, result } => break result.unwrap(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(taken, body.len());
        assert_eq!(key, (BlobKey::of(&body), body.len() as u64));
        let mut got = Vec::new();
        loop {
            w.send(FileJob::Read {
                t: 8,
                key: key.0,
                offset: got.len() as u64,
                len: 70_000,
            });
            match next(&w) {
                FileReply::Data {
                    t: 8,
                    result: Ok(Some((chunk, _))),
                } if chunk.is_empty() => break,
                FileReply::Data {
                    t: 8,
                    result: Ok(Some((chunk, size))),
                } => {
                    assert_eq!(size, body.len() as u64);
                    got.extend_from_slice(&chunk)
                }
                other => panic!("{other:?}"),
            }
        }
        w.send(FileJob::Close { t: 8 });
        assert_eq!(got, body);
        w.send(FileJob::Begin { t: 9 });
        w.send(FileJob::Append {
            t: 9,
            bytes: b"partial".to_vec(),
        });
        w.send(FileJob::Abort { t: 9 });
        assert!(matches!(next(&w), FileReply::Appended { t: 9, bytes: 7 }));
        w.send(FileJob::Read {
            t: 10,
            key: BlobKey::of(b"partial"),
            offset: 0,
            len: 10,
        });
        assert!(matches!(
            next(&w),
            FileReply::Data {
                t: 10,
                result: Ok(None)
            }
        ));
        w.join();
        assert_eq!(
            std::fs::read_dir(root.join("drafts")).unwrap().count(),
            0,
            "no draft left"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
