//! The rows of files on PostgreSQL: SQLite's statements and rules
//! (`store::files`), request for request. A message's attachments are
//! checked and linked by `append.rs` (through [`attachable_rows`] and
//! [`attach`]) under the append lock, so they cannot be swept between the
//! check and the commit.

use postgres::Row;

use super::conn::{Conn, Fail, MAY_READ, Res, big, check_text, user_id};
use crate::store::{
    Attachment, BlobKey, FileId, FileRow, ImageInfo, MsgId, Reply, Request, StoredMessage, UserId,
    attachable,
};

/// The columns [`file_row`] reads, in its order, over `files f`.
const FILE_COLUMNS: &str = "f.id, f.owner_id, f.name, f.mime, f.size, f.blob, f.width, f.height, \
     f.thumb_small, f.thumb_large, f.created_ms, f.avatar";

fn key(text: Option<&str>) -> Res<Option<BlobKey>> {
    text.map(|t| BlobKey::parse(t).ok_or_else(|| Fail::Data(format!("not a blob key: {t:?}"))))
        .transpose()
}

fn file_row(r: &Row) -> Res<FileRow> {
    let dims: (Option<i32>, Option<i32>) = (r.get(6), r.get(7));
    let thumbs = (key(r.get(8))?, key(r.get(9))?);
    let image = match (dims, thumbs) {
        ((Some(w), Some(h)), (Some(small), Some(large))) => Some(ImageInfo {
            width: u32::try_from(w).map_err(|_| Fail::Data("bad width".into()))?,
            height: u32::try_from(h).map_err(|_| Fail::Data("bad height".into()))?,
            small,
            large,
        }),
        _ => None,
    };
    Ok(FileRow {
        id: r.get::<_, i64>(0) as FileId,
        owner: user_id(r.get(1))?,
        name: r.get(2),
        mime: r.get(3),
        size: r.get::<_, i64>(4) as u64,
        blob: key(Some(r.get(5)))?.expect("some in, some out"),
        image,
        created_ms: r.get(10),
        avatar: r.get(11),
    })
}

/// The bytes of `user`'s files, avatars aside.
pub(super) fn usage(c: &mut Conn, user: UserId) -> Res<u64> {
    let row = c.client.query_one(
        "SELECT COALESCE(SUM(size), 0)::BIGINT FROM files WHERE owner_id = $1 AND NOT avatar",
        &[&i64::from(user)],
    )?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// `PutFile`: the quota, then the row.
pub(super) fn put(
    c: &mut Conn,
    ticket: crate::store::Ticket,
    f: &FileRow,
    quota: u64,
) -> Res<Reply> {
    check_text(&[Some(&f.name), Some(&f.mime)])?;
    if quota > 0 && !f.avatar && usage(c, f.owner)?.saturating_add(f.size) > quota {
        return Ok(Reply::FileRefused { ticket });
    }
    let dim = |v: Option<u32>| v.map(|v| v as i32);
    let row = c.client.query_one(
        "INSERT INTO files (owner_id, name, mime, size, blob, width, height, thumb_small,
                            thumb_large, created_ms, avatar, attached)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id",
        &[
            &i64::from(f.owner),
            &f.name,
            &f.mime,
            &big(f.size),
            &f.blob.hex(),
            &dim(f.image.map(|i| i.width)),
            &dim(f.image.map(|i| i.height)),
            &f.image.map(|i| i.small.hex()),
            &f.image.map(|i| i.large.hex()),
            &f.created_ms,
            &f.avatar,
        ],
    )?;
    Ok(Reply::FileStored {
        ticket,
        id: row.get::<_, i64>(0) as FileId,
    })
}

/// The attachments `msg` asks for, when the sender may attach every one.
pub(super) fn attachable_rows(c: &mut Conn, msg: &StoredMessage) -> Res<Option<Vec<Attachment>>> {
    if msg.attachments.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let ids: Vec<i64> = msg.attachments.iter().map(|a| big(a.id)).collect();
    let rows = c.client.query(
        &format!("SELECT {FILE_COLUMNS} FROM files f WHERE f.id = ANY($1::bigint[])"),
        &[&ids],
    )?;
    let found = rows.iter().map(file_row).collect::<Res<Vec<_>>>()?;
    let wanted: Vec<FileId> = msg.attachments.iter().map(|a| a.id).collect();
    Ok(attachable(&wanted, &found, msg.from))
}

/// Links a stored message to its files.
pub(super) fn attach(c: &mut Conn, message: i64, attachments: &[Attachment]) -> Res<()> {
    if attachments.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = attachments.iter().map(|a| big(a.id)).collect();
    c.client.execute(
        "INSERT INTO message_files (message_id, file_id)
         SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING",
        &[&message, &ids],
    )?;
    c.client.execute(
        "UPDATE files SET attached = true, released_ms = NULL WHERE id = ANY($1::bigint[])",
        &[&ids],
    )?;
    Ok(())
}

/// A deleted message's files: unreachable from now on, their grace begun.
pub(super) fn release(c: &mut Conn, message: MsgId, at_ms: i64) -> Res<()> {
    c.client.execute(
        "UPDATE files SET released_ms = $2
         WHERE id IN (SELECT file_id FROM message_files WHERE message_id = $1)",
        &[&big(message), &at_ms],
    )?;
    c.client.execute(
        "DELETE FROM message_files WHERE message_id = $1",
        &[&big(message)],
    )?;
    Ok(())
}

/// `SetAvatar`: the new file is the user's avatar; the old one's grace
/// begins.
pub(super) fn set_avatar(c: &mut Conn, user: UserId, file: FileId, at_ms: i64) -> Res<()> {
    c.client.execute(
        "UPDATE files SET released_ms = $2
         WHERE id = (SELECT avatar_file FROM users WHERE id = $1)",
        &[&i64::from(user), &at_ms],
    )?;
    c.client.execute(
        "UPDATE users SET avatar_file = $2 WHERE id = $1",
        &[&i64::from(user), &big(file)],
    )?;
    super::accounts::touched(&mut c.client, user, at_ms)
}

/// `SweepFiles`.
pub(super) fn sweep(c: &mut Conn, before_ms: i64) -> Res<u64> {
    Ok(c.client.execute(
        "DELETE FROM files WHERE COALESCE(released_ms, created_ms) < $1
           AND NOT EXISTS (SELECT 1 FROM message_files mf WHERE mf.file_id = files.id)
           AND id NOT IN (SELECT avatar_file FROM users WHERE avatar_file IS NOT NULL)",
        &[&before_ms],
    )?)
}

/// The file reads: `FileUsage`, `FindFile`, `BlobsUsed`.
pub(super) fn read(c: &mut Conn, req: &Request) -> Res<Reply> {
    Ok(match req {
        Request::FileUsage { ticket, user } => Reply::FileUsage {
            ticket: *ticket,
            bytes: Some(usage(c, *user)?),
        },
        Request::FindFile { ticket, id, user } => {
            let sql = format!(
                "SELECT {FILE_COLUMNS} FROM files f WHERE f.id = $1 AND (
                     f.avatar OR (f.owner_id = $2 AND NOT f.attached)
                     OR EXISTS (SELECT 1 FROM message_files mf JOIN messages m ON m.id = mf.message_id
                                WHERE mf.file_id = f.id AND m.deleted_ms IS NULL AND {MAY_READ}))"
            );
            let row = c.client.query_opt(&sql, &[&big(*id), &i64::from(*user)])?;
            Reply::FileFound {
                ticket: *ticket,
                row: row.as_ref().map(file_row).transpose()?,
            }
        }
        Request::BlobsUsed { ticket, keys } => {
            let hex: Vec<String> = keys.iter().map(BlobKey::hex).collect();
            let rows = c.client.query(
                "SELECT k FROM unnest($1::text[]) AS k
                 WHERE EXISTS (SELECT 1 FROM files WHERE blob = k)
                    OR EXISTS (SELECT 1 FROM files WHERE thumb_small = k)
                    OR EXISTS (SELECT 1 FROM files WHERE thumb_large = k)",
                &[&hex],
            )?;
            let used = rows
                .iter()
                .map(|r| key(Some(r.get(0))).map(|k| k.expect("some in, some out")))
                .collect::<Res<Vec<_>>>()?;
            Reply::BlobsUsed {
                ticket: *ticket,
                used: Some(used),
            }
        }
        _ => return Err(Fail::Data("not a file read".into())),
    })
}
