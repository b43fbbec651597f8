//! Who is calling: tokens (JWT HS256, checked on the loop: one HMAC is
//! microseconds) and passwords (PBKDF2, hundreds of milliseconds, so never on
//! the loop: a small worker pool does them and answers through the Waker),
//! and who may make the server hash how much (`throttle`); file links
//! (`links`), which stand in for a token on a file URL for minutes.

pub mod jwt;
pub mod links;
pub mod password;
pub mod pool;
pub mod secret;
pub mod throttle;
