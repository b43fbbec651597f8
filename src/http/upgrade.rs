//! The WebSocket opening handshake (RFC 6455 §4.2), answered by the HTTP
//! layer itself: after the 101 the same socket and reactor carry frames.

use tungstenite::handshake::derive_accept_key;

use super::request::Request;

/// Checks the headers of an upgrade request; returns the client's key.
pub fn client_key<'a>(req: &Request<'a>) -> Result<&'a [u8], &'static str> {
    if req.method != "GET" {
        return Err("a WebSocket upgrade must be a GET");
    }
    if !req.header_has("upgrade", "websocket") || !req.header_has("connection", "upgrade") {
        return Err("expected a WebSocket upgrade (Upgrade: websocket, Connection: Upgrade)");
    }
    if req.header("sec-websocket-version").map(|v| v.trim_ascii()) != Some(b"13") {
        return Err("Sec-WebSocket-Version must be 13");
    }
    match req.header("sec-websocket-key").map(|v| v.trim_ascii()) {
        Some(k) if !k.is_empty() => Ok(k),
        _ => Err("missing Sec-WebSocket-Key"),
    }
}

/// The 101 response for `key`.
pub fn accept_response(key: &[u8]) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC's sample key yields the RFC's accept value.
    #[test]
    fn accepts_rfc_sample() {
        let r = String::from_utf8(accept_response(b"dGhlIHNhbXBsZSBub25jZQ==")).unwrap();
        assert!(r.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(r.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    }

    /// A request without the upgrade headers is refused with a reason.
    #[test]
    fn requires_upgrade_headers() {
        let mut h = [httparse::EMPTY_HEADER; 8];
        let raw = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: abc\r\n\r\n";
        let (req, _) = crate::http::request::parse(raw, &mut h).unwrap().unwrap();
        assert_eq!(client_key(&req), Ok(&b"abc"[..]));
        let mut h = [httparse::EMPTY_HEADER; 8];
        let (req, _) = crate::http::request::parse(b"GET /ws HTTP/1.1\r\n\r\n", &mut h)
            .unwrap()
            .unwrap();
        assert!(client_key(&req).is_err());
    }
}
