//! WebSocket: the frame codec, control frames, and the JSON frames the server
//! sends; what clients send is parsed by the hub (`hub::command`). The
//! opening handshake is HTTP's (`http::upgrade`).
//!
//! Why not tungstenite's `WebSocket<S>`: it owns a read buffer per connection
//! (128 KiB by default, touched as it fills) and a write buffer into which each
//! message is framed again for every socket. hubbub keeps an idle connection
//! under a kilobyte and frames a broadcast once, so it uses tungstenite at the
//! frame level instead — `FrameHeader` to parse and format headers,
//! `CloseCode` to judge close codes, `derive_accept_key` for the handshake —
//! and keeps the little state a connection needs ([`codec::Assembler`]) itself.

pub mod codec;
pub mod control;
pub mod proto;

#[cfg(test)]
mod proptests;
