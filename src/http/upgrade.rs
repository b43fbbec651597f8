//! The WebSocket opening handshake (RFC 6455 §4.2), answered by the HTTP
//! layer itself: after the 101 the same socket and reactor carry frames.
//!
//! Browsers let any page open a WebSocket to any server, cookies or not, and
//! only say where the page came from in `Origin` (RFC 6455 §10.2): a server
//! that does not check it lets a hostile page talk to it from its visitors'
//! browsers (cross-site WebSocket hijacking; here, a page that has a token
//! in hand, or that holds connections open from every visitor).
//! [`origin_allowed`] is the check.

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

/// Whether an upgrade may proceed, by its `Origin`:
///
/// - no `Origin` at all: yes. Browsers always send one on a WebSocket
///   handshake, so its absence means a non-browser client (websocat, the
///   tests, benchmarks), which could send any `Origin` it liked anyway;
/// - an `Origin` whose host and port are the request's `Host`: yes, it is a
///   page this server (or the proxy in front of it) served, such as the
///   bundled web client, under whatever name or address it was reached;
/// - an `Origin` in `allowed` (`--allowed-origin`, lower case, no trailing
///   slash), or `allowed` holds `*`: yes;
/// - anything else, `null` (sandboxed frames, files) included: no.
pub fn origin_allowed(req: &Request<'_>, allowed: &[String]) -> bool {
    let Some(origin) = req.header("origin") else {
        return true;
    };
    let Ok(origin) = std::str::from_utf8(origin) else {
        return false;
    };
    let origin = origin.trim().trim_end_matches('/');
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let host = req.header("host").and_then(|h| std::str::from_utf8(h).ok());
    host.is_some_and(|h| same_authority(origin, h.trim()))
}

/// Whether `origin` (`scheme://host[:port]`) names the same host and port as
/// a `Host` header value; a missing port is the scheme's default on both
/// sides (browsers leave default ports out of both).
fn same_authority(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        _ => return false,
    };
    match (
        split_authority(authority, default),
        split_authority(host, default),
    ) {
        (Some((a, ap)), Some((b, bp))) => !a.is_empty() && a.eq_ignore_ascii_case(b) && ap == bp,
        _ => false,
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, as (host, port).
fn split_authority(s: &str, default_port: u16) -> Option<(&str, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => default_port,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        return Some((host, port));
    }
    match s.rsplit_once(':') {
        Some((host, port)) => Some((host, port.parse().ok()?)),
        None => Some((s, default_port)),
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

    fn allowed(headers: &str, list: &[&str]) -> bool {
        let raw = format!("GET /ws HTTP/1.1\r\n{headers}\r\n");
        let mut h = [httparse::EMPTY_HEADER; 8];
        let (req, _) = crate::http::request::parse(raw.as_bytes(), &mut h)
            .unwrap()
            .unwrap();
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        origin_allowed(&req, &list)
    }

    /// The server's own host is allowed under any name and default-port
    /// spelling; no Origin is allowed; another site, a lookalike port or
    /// `null` is not.
    #[test]
    fn origin_must_be_own_host() {
        assert!(allowed("Host: 127.0.0.1:8080\r\n", &[]));
        assert!(allowed(
            "Host: 127.0.0.1:8080\r\nOrigin: http://127.0.0.1:8080\r\n",
            &[]
        ));
        assert!(allowed(
            "Host: Chat.Example.com\r\nOrigin: https://chat.example.com\r\n",
            &[]
        ));
        assert!(allowed(
            "Host: chat.example.com:443\r\nOrigin: https://chat.example.com\r\n",
            &[]
        ));
        assert!(allowed(
            "Host: [::1]:8080\r\nOrigin: http://[::1]:8080\r\n",
            &[]
        ));
        for bad in [
            "Host: 127.0.0.1:8080\r\nOrigin: http://evil.example\r\n",
            "Host: 127.0.0.1:8080\r\nOrigin: http://127.0.0.1:8081\r\n",
            "Host: chat.example.com\r\nOrigin: https://chat.example.com:8443\r\n",
            "Host: 127.0.0.1:8080\r\nOrigin: null\r\n",
            "Origin: http://127.0.0.1:8080\r\n",
            "Host: x\r\nOrigin: ftp://x\r\n",
        ] {
            assert!(!allowed(bad, &[]), "{bad}");
        }
    }

    /// `--allowed-origin` adds origins (exact, case-insensitive), `*` any.
    #[test]
    fn allowlist_adds_origins() {
        let h = "Host: 127.0.0.1:8080\r\nOrigin: https://App.Example.com\r\n";
        assert!(allowed(h, &["https://app.example.com"]));
        assert!(!allowed(h, &["https://example.com"]));
        assert!(!allowed(h, &["http://app.example.com"]));
        assert!(allowed(h, &["*"]));
    }
}
