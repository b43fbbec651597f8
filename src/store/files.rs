//! Files as storage keeps them: the row of an upload ([`FileRow`]), the
//! attachment a message carries ([`Attachment`]) and how both engines
//! store a message's attachments, and the rules both apply the same way.
//! The bytes are not here: a row names its blobs ([`BlobKey`]) in the
//! file store (`crate::files`).
//!
//! The rules, in both engines' SQL:
//! - *Who may read a file*: its uploader, until it is first attached to a
//!   message; and whoever may read a live (not deleted) message that
//!   carries it. So a private room's file is nobody else's, and deleting a
//!   message makes its files unreachable at once.
//! - *What a message may carry*: its sender's own uploads (not avatars),
//!   at most `MAX_ATTACHMENTS`, each once; checked in the transaction
//!   that stores the message.
//! - *Quota*: the sizes of a user's files (avatars aside) may not pass
//!   the quota, checked in the transaction that stores the row.
//! - *Sweep*: a file no live message and no profile refers to is removed
//!   `UNREFERENCED_FILE_GRACE` after it was uploaded or stopped being
//!   referred to; then its blobs, once no other row names them.

use serde::{Deserialize, Serialize};

pub use crate::files::BlobKey;

use super::UserId;

/// Files are numbered by storage, from 1.
pub type FileId = u64;

/// One uploaded file, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    /// 0 in a `PutFile`: storage numbers it.
    pub id: FileId,
    pub owner: UserId,
    pub name: String,
    /// The type it is served as (`files::names`).
    pub mime: String,
    pub size: u64,
    /// Its bytes.
    pub blob: BlobKey,
    /// For images that were decoded: upright size and previews.
    pub image: Option<ImageInfo>,
    pub created_ms: i64,
    /// An avatar's row (its blob is the large crop): never attached, not
    /// counted against the quota.
    pub avatar: bool,
}

/// What the image workers learned of an image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub width: u32,
    pub height: u32,
    /// The two previews (`?thumb=small`, `?thumb=large`).
    pub small: BlobKey,
    pub large: BlobKey,
}

impl FileRow {
    /// As a message carries it.
    pub fn attachment(&self) -> Attachment {
        Attachment {
            id: self.id,
            name: self.name.clone(),
            size: self.size,
            mime: self.mime.clone(),
            width: self.image.map(|i| i.width),
            height: self.image.map(|i| i.height),
        }
    }

    /// Every blob the row names (the sweep keeps these).
    pub fn blobs(&self) -> Vec<BlobKey> {
        let mut keys = vec![self.blob];
        if let Some(i) = self.image {
            keys.extend([i.small, i.large]);
        }
        keys
    }
}

/// A file as message objects list it: the contract's fields, in its order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: FileId,
    pub name: String,
    pub size: u64,
    #[serde(rename = "type")]
    pub mime: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

impl Attachment {
    /// An attachment a `PutMessage` asks for by id: storage reads only
    /// the id and answers the rest from the file's row.
    pub fn wanted(id: FileId) -> Attachment {
        Attachment {
            id,
            name: String::new(),
            size: 0,
            mime: String::new(),
            width: None,
            height: None,
        }
    }
}

/// A message's attachments as both engines store them: one text column,
/// the message objects' own JSON, `None` when there are none. A column,
/// not a join, because they are only ever read with their message and
/// never change; the `message_files` rows beside it are what access
/// checks and the sweep use.
pub fn encode_attachments(attachments: &[Attachment]) -> Option<String> {
    (!attachments.is_empty())
        .then(|| serde_json::to_string(attachments).expect("serializing to a String cannot fail"))
}

/// The reverse of [`encode_attachments`]; a column that does not parse
/// (it never should) reads as no attachments rather than failing the read.
pub fn decode_attachments(text: Option<&str>) -> Vec<Attachment> {
    let Some(text) = text else {
        return Vec::new();
    };
    serde_json::from_str(text).unwrap_or_else(|e| {
        log::error!("storage: a message's attachments do not parse ({e}); read as none");
        Vec::new()
    })
}

/// Why storage refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostRefusal {
    /// Its `reply_to` is not a live message of its room or conversation.
    ReplyTo,
    /// An attachment is no upload of its sender's (unknown, someone
    /// else's, or an avatar).
    Attachment,
}

/// Which of `wanted` the sender may attach, given the rows found for
/// them: `Some(attachments)` in `wanted`'s order when all may be, else
/// `None`. The one rule both engines apply after their look-up.
pub fn attachable(wanted: &[FileId], found: &[FileRow], sender: UserId) -> Option<Vec<Attachment>> {
    wanted
        .iter()
        .map(|id| {
            found
                .iter()
                .find(|f| f.id == *id && f.owner == sender && !f.avatar)
                .map(FileRow::attachment)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: FileId, owner: UserId, avatar: bool) -> FileRow {
        FileRow {
            id,
            owner,
            name: format!("f{id}.txt"),
            mime: "text/plain".into(),
            size: 3,
            blob: BlobKey::of(b"abc"),
            image: None,
            created_ms: 1,
            avatar,
        }
    }

    /// Only the sender's own non-avatar uploads attach, all or nothing,
    /// in the order asked.
    #[test]
    fn attachable_is_all_or_nothing() {
        let found = [
            row(1, 7, false),
            row(2, 7, false),
            row(3, 8, false),
            row(4, 7, true),
        ];
        let ids =
            |a: Option<Vec<Attachment>>| a.map(|v| v.iter().map(|a| a.id).collect::<Vec<_>>());
        assert_eq!(ids(attachable(&[2, 1], &found, 7)), Some(vec![2, 1]));
        assert_eq!(ids(attachable(&[1, 3], &found, 7)), None, "someone else's");
        assert_eq!(ids(attachable(&[1, 4], &found, 7)), None, "an avatar");
        assert_eq!(ids(attachable(&[1, 9], &found, 7)), None, "unknown");
        assert_eq!(ids(attachable(&[], &found, 7)), Some(vec![]));
    }

    /// The column holds the contract's JSON; width and height only for
    /// images; garbage reads as none.
    #[test]
    fn attachments_column_round_trips() {
        let mut a = row(5, 1, false).attachment();
        assert_eq!(
            encode_attachments(std::slice::from_ref(&a)).unwrap(),
            r#"[{"id":5,"name":"f5.txt","size":3,"type":"text/plain"}]"#
        );
        a.width = Some(4);
        a.height = Some(2);
        let text = encode_attachments(std::slice::from_ref(&a));
        assert_eq!(decode_attachments(text.as_deref()), vec![a]);
        assert_eq!(encode_attachments(&[]), None);
        assert!(decode_attachments(Some("{not json")).is_empty());
    }
}
