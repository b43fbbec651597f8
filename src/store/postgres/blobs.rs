//! File bytes in PostgreSQL, for a cluster: any node serves any file, and
//! backups of the database (`pg_dump`) hold them.
//!
//! Chunked `bytea` rather than large objects: a blob is a `blobs` row
//! (its key, size, and when it was last committed) and its bytes are
//! `blob_chunks` rows of [`PG_BLOB_CHUNK`] bytes, so a range read is one
//! indexed row per chunk, a blob is removed by one `DELETE` (the chunks
//! cascade), rows replicate and dump like every other table, and nothing
//! needs `lo_*` privileges or `vacuumlo`. Measured against large objects
//! in BENCHMARKS.md ("Files: PostgreSQL blobs").
//!
//! A draft is a `blobs` row with no key, filled chunk by chunk (each
//! insert its own commit: a 100 MB upload is no 100 MB transaction); its
//! commit, in one transaction, names it, or, when a blob with that key is
//! already there, touches that one and drops the draft. Two nodes
//! committing the same bytes at once meet on the unique key: the loser
//! retries as the second case. A draft a dead node left is removed by any
//! node once it is older than [`PG_DRAFT_STALE`].

use std::collections::HashMap;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, Config};

use super::conn::{connect, describe};
use crate::clock::now_ms;
use crate::config::{PG_BLOB_CHUNK, PG_DRAFT_STALE};
use crate::files::{BlobKey, Blobs, DraftId, FileError, FileStore, ReadId};

/// The file store of a PostgreSQL database.
pub struct PgFileStore {
    config: Config,
}

impl PgFileStore {
    pub fn new(config: Config) -> PgFileStore {
        PgFileStore { config }
    }
}

fn fail(e: postgres::Error) -> FileError {
    match e.code() {
        Some(c) if *c == SqlState::DISK_FULL || *c == SqlState::OUT_OF_MEMORY => FileError::Full,
        _ => FileError::Io(describe(&e)),
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl FileStore for PgFileStore {
    fn handle(&self) -> Result<Box<dyn Blobs>, FileError> {
        Ok(Box::new(PgBlobs {
            config: self.config.clone(),
            client: connect(&self.config).map_err(fail)?,
            drafts: HashMap::new(),
            readers: HashMap::new(),
            next: 0,
        }))
    }

    fn clear_drafts(&self) -> Result<u64, FileError> {
        let mut client = connect(&self.config).map_err(fail)?;
        client
            .execute(
                "DELETE FROM blobs WHERE key IS NULL AND touched_ms < $1",
                &[&(now_ms() - ms(PG_DRAFT_STALE))],
            )
            .map_err(fail)
    }

    fn describe(&self) -> String {
        "files in PostgreSQL".into()
    }
}

/// A blob being written: its row, and the bytes of its unfinished chunk.
struct Draft {
    id: i64,
    pending: Vec<u8>,
    next_chunk: i32,
    size: i64,
}

/// A blob being read, and the chunk read last (reads are smaller than
/// chunks and come in order).
struct Reader {
    id: i64,
    size: u64,
    cached: Option<(i32, Vec<u8>)>,
}

struct PgBlobs {
    config: Config,
    client: Client,
    drafts: HashMap<DraftId, Draft>,
    readers: HashMap<ReadId, Reader>,
    next: u64,
}

impl PgBlobs {
    /// The connection, made again if it was lost (drafts and readers are
    /// rows, not connection state, so they carry on).
    fn client(&mut self) -> Result<&mut Client, FileError> {
        if self.client.is_closed() {
            self.client = connect(&self.config).map_err(fail)?;
        }
        Ok(&mut self.client)
    }

    fn write_chunk(&mut self, draft: DraftId, upto: usize) -> Result<(), FileError> {
        let d = self.drafts.get_mut(&draft).expect("checked by the caller");
        let bytes: Vec<u8> = d.pending.drain(..upto).collect();
        let (id, n) = (d.id, d.next_chunk);
        d.next_chunk += 1;
        self.client()?
            .execute(
                "INSERT INTO blob_chunks (blob_id, n, data) VALUES ($1, $2, $3)",
                &[&id, &n, &bytes],
            )
            .map_err(fail)?;
        Ok(())
    }

    /// Names the draft `key`, or keeps the blob already named so. `Ok(false)`:
    /// another node named one `key` first, between our look and our update.
    fn name(&mut self, draft: i64, key: &BlobKey, size: i64) -> Result<bool, postgres::Error> {
        let hex = key.hex();
        let now = now_ms();
        let mut tx = self.client.transaction()?;
        let existing = tx.query_opt("SELECT id FROM blobs WHERE key = $1 FOR UPDATE", &[&hex])?;
        if let Some(row) = existing {
            let id: i64 = row.get(0);
            tx.execute(
                "UPDATE blobs SET touched_ms = $2 WHERE id = $1",
                &[&id, &now],
            )?;
            tx.execute("DELETE FROM blobs WHERE id = $1", &[&draft])?;
            tx.commit()?;
            return Ok(true);
        }
        match tx.execute(
            "UPDATE blobs SET key = $2, size = $3, touched_ms = $4 WHERE id = $1",
            &[&draft, &hex, &size, &now],
        ) {
            Ok(_) => tx.commit().map(|()| true),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Blobs for PgBlobs {
    fn create(&mut self) -> Result<DraftId, FileError> {
        let now = now_ms();
        let row = self
            .client()?
            .query_one(
                "INSERT INTO blobs (key, touched_ms) VALUES (NULL, $1) RETURNING id",
                &[&now],
            )
            .map_err(fail)?;
        self.next += 1;
        self.drafts.insert(
            self.next,
            Draft {
                id: row.get(0),
                pending: Vec::new(),
                next_chunk: 0,
                size: 0,
            },
        );
        Ok(self.next)
    }

    fn append(&mut self, draft: DraftId, bytes: &[u8]) -> Result<(), FileError> {
        let d = self
            .drafts
            .get_mut(&draft)
            .ok_or_else(|| FileError::io("no such draft"))?;
        d.pending.extend_from_slice(bytes);
        d.size += bytes.len() as i64;
        while self.drafts[&draft].pending.len() >= PG_BLOB_CHUNK {
            self.write_chunk(draft, PG_BLOB_CHUNK)?;
        }
        Ok(())
    }

    fn commit(&mut self, draft: DraftId, key: &BlobKey) -> Result<(), FileError> {
        let rest = self
            .drafts
            .get(&draft)
            .ok_or_else(|| FileError::io("no such draft"))?
            .pending
            .len();
        if rest > 0 {
            self.write_chunk(draft, rest)?;
        }
        let d = self.drafts.remove(&draft).expect("checked above");
        self.client()?;
        for _ in 0..2 {
            if self.name(d.id, key, d.size).map_err(fail)? {
                return Ok(());
            }
        }
        Err(FileError::Io(format!("could not name blob {}", key.hex())))
    }

    fn discard(&mut self, draft: DraftId) {
        let Some(d) = self.drafts.remove(&draft) else {
            return;
        };
        let done = self.client().and_then(|c| {
            c.execute("DELETE FROM blobs WHERE id = $1", &[&d.id])
                .map_err(fail)
        });
        if let Err(e) = done {
            log::warn!("files: cannot drop a draft (swept later): {e}");
        }
    }

    fn open(&mut self, key: &BlobKey) -> Result<Option<(ReadId, u64)>, FileError> {
        let Some(row) = self
            .client()?
            .query_opt("SELECT id, size FROM blobs WHERE key = $1", &[&key.hex()])
            .map_err(fail)?
        else {
            return Ok(None);
        };
        let size = row.get::<_, i64>(1) as u64;
        self.next += 1;
        self.readers.insert(
            self.next,
            Reader {
                id: row.get(0),
                size,
                cached: None,
            },
        );
        Ok(Some((self.next, size)))
    }

    fn read(&mut self, reader: ReadId, offset: u64, buf: &mut [u8]) -> Result<usize, FileError> {
        let r = self
            .readers
            .get(&reader)
            .ok_or_else(|| FileError::io("no such reader"))?;
        if offset >= r.size || buf.is_empty() {
            return Ok(0);
        }
        let n = i32::try_from(offset / PG_BLOB_CHUNK as u64).map_err(FileError::io)?;
        let within = (offset % PG_BLOB_CHUNK as u64) as usize;
        if r.cached.as_ref().is_none_or(|(c, _)| *c != n) {
            let id = r.id;
            let row = self
                .client()?
                .query_opt(
                    "SELECT data FROM blob_chunks WHERE blob_id = $1 AND n = $2",
                    &[&id, &n],
                )
                .map_err(fail)?
                .ok_or_else(|| FileError::Io(format!("chunk {n} of a blob is missing")))?;
            let data: Vec<u8> = row.get(0);
            self.readers.get_mut(&reader).expect("found above").cached = Some((n, data));
        }
        let (_, data) = self.readers[&reader].cached.as_ref().expect("cached above");
        let take = buf.len().min(data.len().saturating_sub(within));
        buf[..take].copy_from_slice(&data[within..within + take]);
        Ok(take)
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
        let after = after.map_or_else(String::new, BlobKey::hex);
        let rows = self
            .client()?
            .query(
                "SELECT key FROM blobs WHERE key IS NOT NULL AND key > $1 AND touched_ms <= $2
                 ORDER BY key LIMIT $3",
                &[&after, &(now_ms() - ms(idle_for)), &(limit as i64)],
            )
            .map_err(fail)?;
        Ok(rows
            .iter()
            .filter_map(|r| BlobKey::parse(r.get(0)))
            .collect())
    }

    fn remove(&mut self, key: &BlobKey, idle_for: Duration) -> Result<bool, FileError> {
        let n = self
            .client()?
            .execute(
                "DELETE FROM blobs WHERE key = $1 AND touched_ms <= $2",
                &[&key.hex(), &(now_ms() - ms(idle_for))],
            )
            .map_err(fail)?;
        Ok(n > 0)
    }
}

impl Drop for PgBlobs {
    fn drop(&mut self) {
        let ids: Vec<i64> = self.drafts.values().map(|d| d.id).collect();
        if !ids.is_empty() && !self.client.is_closed() {
            let _ = self
                .client
                .execute("DELETE FROM blobs WHERE id = ANY($1)", &[&ids]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::testdb::TestDb;

    /// PostgreSQL keeps every promise of the blob contract.
    #[test]
    fn postgres_blobs_conform() {
        let Some(t) = TestDb::new() else { return };
        drop(t.open()); // the schema
        let store = PgFileStore::new(t.config.clone());
        crate::files::conformance::run(&store);
    }
}
