//! Who is calling: tokens (JWT HS256, checked on the loop: one HMAC is
//! microseconds) and passwords (PBKDF2, hundreds of milliseconds, so never on
//! the loop: a small worker pool does them and answers through the Waker),
//! and who may make the server hash how much (`throttle`); which sessions
//! ended (`sessions`) and the one-use WebSocket tickets (`tickets`).

pub mod jwt;
pub mod password;
pub mod pool;
pub mod secret;
pub mod sessions;
pub mod throttle;
pub mod tickets;
