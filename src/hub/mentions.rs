//! Mentions: who a message's `@name`s notify.
//!
//! A mention is found in the content when the message is taken, before it
//! is stored: the users named go to storage with the row (for their unread
//! mention counts, which must survive a restart) and wait with the message
//! for its commit; then each gets a `mention` frame on every connection,
//! joined to the room or not (`commands/message.rs`, `stored`). Only
//! users who may read the message count: naming someone outside a private
//! room tells them nothing, not even that the room talks about them.

use crate::config::MAX_MENTIONS;
use crate::store::UserId;
use crate::users::{Directory, valid_username};

/// The `@name`s in `content`, in order, as written: an `@` at the start or
/// after a character that cannot be part of a name (so `bob@example.org`
/// is no mention), then the longest run of name characters
/// (`[A-Za-z0-9_.-]`), without a trailing `.` or `-` (so `@alice.` at the
/// end of a sentence names alice). Runs that cannot be usernames are skipped.
pub fn mentioned_names(content: &str) -> impl Iterator<Item = &str> {
    let bytes = content.as_bytes();
    let is_name = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            let at = i;
            i += 1;
            if bytes[at] != b'@' || (at > 0 && is_name(bytes[at - 1])) {
                continue;
            }
            let start = at + 1;
            let mut end = start;
            while end < bytes.len() && is_name(bytes[end]) {
                end += 1;
            }
            i = end;
            while end > start && matches!(bytes[end - 1], b'.' | b'-') {
                end -= 1;
            }
            // ASCII bytes only, so these are character boundaries.
            let name = &content[start..end];
            if valid_username(name) {
                return Some(name);
            }
        }
        None
    })
}

/// The users `content` mentions who may read it (`may_read`), not its
/// author, each once, at most [`MAX_MENTIONS`].
pub fn mentioned(
    users: &Directory,
    author: UserId,
    content: &str,
    may_read: impl Fn(UserId) -> bool,
) -> Vec<UserId> {
    let mut found = Vec::new();
    if !content.contains('@') {
        return found;
    }
    for name in mentioned_names(content) {
        let Some(user) = users.find(name).map(|u| u.id) else {
            continue;
        };
        if user != author && may_read(user) && !found.contains(&user) {
            found.push(user);
            if found.len() == MAX_MENTIONS {
                break;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &str) -> Vec<&str> {
        mentioned_names(s).collect()
    }

    /// Names start after an `@` that begins a word and end where name
    /// characters do; a sentence's closing `.` is not part of the name.
    #[test]
    fn finds_names_as_people_write_them() {
        assert_eq!(names("@alice hi"), ["alice"]);
        assert_eq!(names("hi @bob, and @carol."), ["bob", "carol"]);
        assert_eq!(names("(@dave) @eve!"), ["dave", "eve"]);
        assert_eq!(names("@first.last-name_2 ok"), ["first.last-name_2"]);
        assert_eq!(names("ping @Alice"), ["Alice"]);
    }

    /// Email addresses, lone `@`s, and runs too short or too long to be a
    /// username are not mentions.
    #[test]
    fn ignores_what_cannot_be_a_mention() {
        assert!(names("mail bob@example.org").is_empty());
        assert!(names("@ @@ @.").is_empty());
        assert!(
            names("@al").is_empty(),
            "usernames are at least 3 characters"
        );
        assert!(names(&format!("@{}", "a".repeat(33))).is_empty());
        assert_eq!(names("é@alice ü @bob"), ["alice", "bob"]);
    }
}
