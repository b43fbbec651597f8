//! What a WebSocket connection does with each whole message before the chat
//! layer sees it: control frames are answered here (ping → pong, close →
//! the closing handshake), `/ws/echo` echoes, and only data messages of a chat
//! connection go on to the hub.

use mio::Token;

use super::codec::{self, Message};
use crate::outbox::Outbox;

/// A data message for the chat layer.
#[derive(Debug, PartialEq, Eq)]
pub enum Data<'a> {
    Text(&'a str),
    Binary,
}

/// Answers the protocol part of `msg`; returns what the chat layer must
/// handle, if anything. `echo` is the `/ws/echo` endpoint.
pub fn answer<'a>(
    out: &mut impl Outbox,
    token: Token,
    echo: bool,
    msg: Message<'a>,
) -> Option<Data<'a>> {
    match msg {
        Message::Text(text) if echo => reply_frame(out, token, codec::TEXT, text.as_bytes()),
        Message::Binary(bytes) if echo => reply_frame(out, token, codec::BINARY, bytes),
        Message::Text(text) => return Some(Data::Text(text)),
        Message::Binary(_) => return Some(Data::Binary),
        Message::Ping(payload) => reply_frame(out, token, codec::PONG, payload),
        Message::Pong => {}
        // RFC 6455 §5.5.1: answer a close with a close, echoing its code.
        Message::Close(code, _) => out.close_ws(token, code.unwrap_or(1000), ""),
    }
    None
}

fn reply_frame(
    out: &mut impl Outbox,
    token: Token,
    opcode: tungstenite::protocol::frame::coding::OpCode,
    payload: &[u8],
) {
    let mut bytes = Vec::with_capacity(payload.len() + codec::MAX_HEADER);
    codec::encode(&mut bytes, opcode, payload);
    out.reply(token, &bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::recorder::{Recorder, Sent};

    /// Pings are answered with a pong carrying the same payload, closes with
    /// a close echoing the code; neither reaches the chat layer.
    #[test]
    fn answers_control_frames() {
        let mut out = Recorder::default();
        let t = Token(1);
        assert_eq!(answer(&mut out, t, false, Message::Ping(b"hi")), None);
        assert_eq!(out.sent, vec![(t, Sent::Bytes(vec![0x8a, 2, b'h', b'i']))]);
        assert_eq!(answer(&mut out, t, false, Message::Pong), None);
        assert_eq!(
            answer(&mut out, t, false, Message::Close(Some(1001), "")),
            None
        );
        assert_eq!(out.sent[1], (t, Sent::Close(1001)));
    }

    /// Chat connections pass data messages on; the echo endpoint echoes them.
    #[test]
    fn routes_data_messages() {
        let mut out = Recorder::default();
        let t = Token(2);
        assert_eq!(
            answer(&mut out, t, false, Message::Text("{}")),
            Some(Data::Text("{}"))
        );
        assert_eq!(
            answer(&mut out, t, false, Message::Binary(b"x")),
            Some(Data::Binary)
        );
        assert!(out.sent.is_empty());
        assert_eq!(answer(&mut out, t, true, Message::Binary(b"x")), None);
        assert_eq!(out.sent, vec![(t, Sent::Bytes(vec![0x82, 1, b'x']))]);
    }
}
