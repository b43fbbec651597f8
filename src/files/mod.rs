//! File bytes behind a narrow interface, beside the storage seam: the loop
//! never opens a file or a blob.
//!
//! What a file *is* (its name, type, owner, size, who may read it) is a row
//! of storage (`store::FileRow`); what it *holds* lives here, as a blob
//! named by the SHA-256 of its bytes ([`BlobKey`]). Two engines ship, each
//! chosen by its storage backend (`store::Backend::file_store`): a
//! content-addressed directory beside the SQLite database ([`dir`]), and
//! PostgreSQL for a cluster (`store::postgres::blobs`), where any node
//! serves any file.
//!
//! A [`FileStore`] gives each thread that touches bytes its own [`Blobs`]
//! handle (a PostgreSQL connection each); the threads themselves are
//! `workers.rs` (uploads and downloads, in chunks, with the loop's
//! backpressure) and `images.rs` (previews and avatars, off the loop).
//!
//! A blob is written as a *draft* (a temporary file, or rows under a draft
//! id) and appears under its key only when committed, after its bytes are
//! durable: a partial or aborted upload is never visible, and what a crash
//! left behind is cleared at the next start ([`FileStore::clear_drafts`]).
//! Blobs no file refers to are removed by the sweep (`http/files.rs` asks
//! storage which are referenced); a blob committed or read lately is never
//! removed ([`Blobs::remove`]'s `idle_for`), so an upload whose bytes match
//! a blob being swept cannot lose them between its commit and its row.

pub mod dir;
pub mod images;
pub mod names;
pub mod workers;

use std::fmt;
use std::time::Duration;

/// The SHA-256 of a blob's bytes: its name in every engine.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobKey(pub [u8; 32]);

impl BlobKey {
    /// The key of `bytes`.
    pub fn of(bytes: &[u8]) -> BlobKey {
        let d = ring::digest::digest(&ring::digest::SHA256, bytes);
        BlobKey(d.as_ref().try_into().expect("SHA-256 is 32 bytes"))
    }

    /// Lower-case hex, as rows and paths spell it.
    pub fn hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }

    /// The key spelled by [`BlobKey::hex`]; `None` for anything else (a
    /// stored row or a file name is input).
    pub fn parse(hex: &str) -> Option<BlobKey> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut key = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let digit = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            };
            key[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(BlobKey(key))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobKey({})", &self.hex()[..12])
    }
}

/// The running SHA-256 of a blob being written.
pub struct Hasher(ring::digest::Context);

impl Default for Hasher {
    fn default() -> Hasher {
        Hasher(ring::digest::Context::new(&ring::digest::SHA256))
    }
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> BlobKey {
        BlobKey(
            self.0
                .finish()
                .as_ref()
                .try_into()
                .expect("SHA-256 is 32 bytes"),
        )
    }
}

/// Why a file operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileError {
    /// No space left (`ENOSPC`, `EDQUOT`, PostgreSQL's disk full): the
    /// client is told the server's storage is full.
    Full,
    /// Anything else: an I/O error, a lost connection, a blob that should
    /// be there and is not.
    Io(String),
}

impl FileError {
    pub fn io(e: impl fmt::Display) -> FileError {
        FileError::Io(e.to_string())
    }
}

impl From<std::io::Error> for FileError {
    fn from(e: std::io::Error) -> FileError {
        match e.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => FileError::Full,
            _ => FileError::Io(e.to_string()),
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Full => f.write_str("no space left for files"),
            FileError::Io(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for FileError {}

/// A blob being written, as its handle numbers it.
pub type DraftId = u64;
/// A blob open for reading, as its handle numbers it.
pub type ReadId = u64;

/// Where blobs live. Shared by the threads that touch bytes; each takes
/// its own [`Blobs`] handle.
pub trait FileStore: Send + Sync + 'static {
    /// A handle for one thread.
    fn handle(&self) -> Result<Box<dyn Blobs>, FileError>;
    /// Removes the drafts an interrupted process left (a crash or `kill
    /// -9` mid-upload); called once at start, before any upload. Returns
    /// how many it removed.
    fn clear_drafts(&self) -> Result<u64, FileError>;
    /// For the start line: where the bytes are.
    fn describe(&self) -> String;
}

/// One thread's access to the blobs. Drafts and readers are numbered by
/// the handle and belong to it.
pub trait Blobs: Send {
    /// Starts a draft: nothing is visible until [`Blobs::commit`].
    fn create(&mut self) -> Result<DraftId, FileError>;
    /// Appends bytes to a draft.
    fn append(&mut self, draft: DraftId, bytes: &[u8]) -> Result<(), FileError>;
    /// Makes the draft durable and visible as `key` (the SHA-256 of
    /// everything appended, which the caller computed). A blob already
    /// stored under `key` holds the same bytes: it is kept (and counts as
    /// just committed) and the draft dropped.
    fn commit(&mut self, draft: DraftId, key: &BlobKey) -> Result<(), FileError>;
    /// Drops a draft and its bytes.
    fn discard(&mut self, draft: DraftId);
    /// Opens a blob: its reader and size, or `None` when there is none.
    fn open(&mut self, key: &BlobKey) -> Result<Option<(ReadId, u64)>, FileError>;
    /// Reads from `offset` into `buf`; 0 only at the end.
    fn read(&mut self, reader: ReadId, offset: u64, buf: &mut [u8]) -> Result<usize, FileError>;
    fn close(&mut self, reader: ReadId);
    /// Keys of blobs not committed for `idle_for`, in key order after
    /// `after`, at most `limit`: the sweep's candidates.
    fn list(
        &mut self,
        after: Option<&BlobKey>,
        idle_for: Duration,
        limit: usize,
    ) -> Result<Vec<BlobKey>, FileError>;
    /// Removes the blob unless it was committed within `idle_for`
    /// (checked and removed in one step against a concurrent commit).
    /// Returns whether it was removed.
    fn remove(&mut self, key: &BlobKey, idle_for: Duration) -> Result<bool, FileError>;
}

/// Writes `bytes` as one blob (a preview, an avatar) and returns its key.
pub fn write_blob(blobs: &mut dyn Blobs, bytes: &[u8]) -> Result<BlobKey, FileError> {
    let key = BlobKey::of(bytes);
    let draft = blobs.create()?;
    let written = blobs
        .append(draft, bytes)
        .and_then(|()| blobs.commit(draft, &key));
    if written.is_err() {
        blobs.discard(draft);
    }
    written.map(|()| key)
}

/// Bytes a [`copy_blobs`] moves at a time.
const COPY_CHUNK: usize = 256 * 1024;

/// What [`copy_blobs`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Blobs written to the target.
    pub copied: u64,
    /// Keys the source does not hold (the caller says so: a database whose
    /// rows name them has already lost those bytes).
    pub missing: u64,
}

/// Copies the blobs `keys` from one store to another (`hubbub backup`,
/// `restore` and `migrate`), streamed a chunk at a time. The bytes are
/// hashed on the way and committed only under the key they hash to, so a
/// corrupt source blob is an error, never a wrong file under a good name.
pub fn copy_blobs(
    from: &mut dyn Blobs,
    to: &mut dyn Blobs,
    keys: &[BlobKey],
) -> Result<Copied, FileError> {
    let mut done = Copied::default();
    let mut buf = vec![0u8; COPY_CHUNK];
    for key in keys {
        let Some((reader, size)) = from.open(key)? else {
            done.missing += 1;
            continue;
        };
        let draft = match to.create() {
            Ok(d) => d,
            Err(e) => {
                from.close(reader);
                return Err(e);
            }
        };
        let copied = (|| {
            let mut hasher = Hasher::default();
            let mut at = 0u64;
            while at < size {
                let n = from.read(reader, at, &mut buf)?;
                if n == 0 {
                    return Err(FileError::Io(format!(
                        "blob {} ended at {at} of {size} bytes",
                        key.hex()
                    )));
                }
                hasher.update(&buf[..n]);
                to.append(draft, &buf[..n])?;
                at += n as u64;
            }
            if hasher.finish() != *key {
                return Err(FileError::Io(format!(
                    "blob {} does not hold the bytes it is named after",
                    key.hex()
                )));
            }
            to.commit(draft, key)
        })();
        from.close(reader);
        if copied.is_err() {
            to.discard(draft);
        }
        copied?;
        done.copied += 1;
    }
    Ok(done)
}

/// Reads a whole blob (tests); `None` when there is none.
#[cfg(test)]
pub fn read_blob(blobs: &mut dyn Blobs, key: &BlobKey) -> Result<Option<Vec<u8>>, FileError> {
    let Some((reader, size)) = blobs.open(key)? else {
        return Ok(None);
    };
    let mut out = vec![0u8; usize::try_from(size).map_err(FileError::io)?];
    let mut at = 0;
    let read = (|| {
        while at < out.len() {
            let n = blobs.read(reader, at as u64, &mut out[at..])?;
            if n == 0 {
                return Err(FileError::Io(format!(
                    "blob {} ended at {at} of {size} bytes",
                    key.hex()
                )));
            }
            at += n;
        }
        Ok(())
    })();
    blobs.close(reader);
    read.map(|()| Some(out))
}

/// A blob as a `Read + Seek` stream over a handle (the image decoders read
/// this way, without the whole file in a second buffer).
pub struct BlobStream<'a> {
    blobs: &'a mut dyn Blobs,
    reader: ReadId,
    size: u64,
    at: u64,
}

impl<'a> BlobStream<'a> {
    /// `None` when there is no such blob.
    pub fn open(blobs: &'a mut dyn Blobs, key: &BlobKey) -> Result<Option<Self>, FileError> {
        Ok(blobs.open(key)?.map(|(reader, size)| BlobStream {
            blobs,
            reader,
            size,
            at: 0,
        }))
    }
}

impl Drop for BlobStream<'_> {
    fn drop(&mut self) {
        self.blobs.close(self.reader);
    }
}

impl std::io::Read for BlobStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let n = self
            .blobs
            .read(self.reader, self.at, buf)
            .map_err(std::io::Error::other)?;
        self.at += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for BlobStream<'_> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        use std::io::SeekFrom;
        let at = match pos {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.at.checked_add_signed(d),
        };
        self.at = at.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.at)
    }
}

#[cfg(test)]
pub(crate) mod conformance;

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys are SHA-256, spelled in lower-case hex and read back only from
    /// exactly that spelling.
    #[test]
    fn keys_round_trip_and_refuse_other_text() {
        let k = BlobKey::of(b"abc");
        assert_eq!(
            k.hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(BlobKey::parse(&k.hex()), Some(k));
        for bad in [
            "",
            "../../etc/passwd",
            &k.hex().to_uppercase(),
            &k.hex()[1..],
            &format!("{}0", k.hex()),
        ] {
            assert_eq!(BlobKey::parse(bad), None, "{bad:?}");
        }
        let mut h = Hasher::default();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), k);
    }
}
