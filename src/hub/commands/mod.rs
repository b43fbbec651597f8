//! One file per client command. Its handler, `on_<type>`, carries out the
//! [`Command`] a frame was parsed into, with the hub's parts at hand (`&mut Parts`) and the
//! sender resolved (`Caller`); what it cannot do is an `Err(FrameError)`,
//! which the hub answers with an `error` frame. A command that waits for
//! storage parks a `Wait` and sends its request; its continuation, run
//! when the reply comes (`on_room_stored`, `on_history_read`, ...), is in
//! the same file, so
//! one command reads top to bottom in one place, with its unit test.
//!
//! One file per command because that is how the contract lists them and
//! where a newcomer looks for one, and because each new command then adds
//! a file rather than growing a shared one. The steps several commands
//! share have files of their own: `post.rs` (what every chat message goes
//! through, room or private) and `change.rs` (what `edit`, `delete` and
//! `react` share: storage checks and applies them).
//!
//! [`Command`]: super::command::Command

pub mod change;
pub mod create_room;
pub mod delete;
pub mod edit;
pub mod history;
pub mod join;
pub mod leave;
pub mod membership;
pub mod message;
pub mod post;
pub mod private_message;
pub mod react;
pub mod read;
pub mod typing;
