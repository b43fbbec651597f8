//! Rows the storage tests of every backend build their requests from, so
//! that SQLite, PostgreSQL and `migrate` are tested on the same data.

use super::{Desk, MsgId, PasswordHash, StoredMessage, Ticket, UserId, UserRow};

/// Any ticket: these tests check what is stored, not who is answered.
pub const TICKET: Ticket = Ticket {
    desk: Desk::Hub,
    seq: 1,
};

/// A user `name`, with a hash that differs per id.
pub fn user(id: UserId, name: &str) -> UserRow {
    UserRow {
        id,
        username: name.into(),
        email: format!("{name}@example.com"),
        password: PasswordHash {
            iterations: 1000,
            salt: [id as u8; 16],
            hash: [7; 32],
        },
        created_ms: 1,
        last_seen_ms: None,
        account: Default::default(),
    }
}

/// Message `id` (content `m{id}`) in `room`, or to `to`.
pub fn msg(id: MsgId, room: Option<&str>, from: UserId, to: Option<UserId>) -> StoredMessage {
    StoredMessage {
        id,
        room: room.map(String::from),
        from,
        to,
        content: format!("m{id}"),
        timestamp_ms: id as i64,
        seq: 0,
        ..StoredMessage::default()
    }
}
