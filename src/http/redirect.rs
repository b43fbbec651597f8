//! The plain-HTTP listener beside HTTPS (`--http-addr`, port 80): every
//! request is sent to the same place on https://, except ACME's HTTP-01
//! challenges, which are answered here (a certificate authority asks for
//! them over plain HTTP on port 80, before any certificate exists).
//!
//! Nothing else is served in plain text: no API, no WebSocket, no token
//! ever crosses this listener unencrypted by our doing.

use super::request::Request;
use super::response::Response;
use crate::tls::acme::Challenges;

/// Where ACME's HTTP-01 validation asks (RFC 8555 §8.3).
const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// The answer to one request on the plain listener. `https_port` is the
/// port of the HTTPS listener (left out of the `Location` when 443).
pub fn answer(req: &Request<'_>, challenges: &Challenges, https_port: u16) -> Response {
    if let Some(token) = req.path.strip_prefix(CHALLENGE_PREFIX) {
        return match challenges.key_authorization(token) {
            Some(proof) => Response::new(200, "application/octet-stream", proof.into_bytes()),
            None => Response::error(404, "not_found", "no such challenge"),
        };
    }
    if req.method != "GET" && req.method != "HEAD" {
        // A redirected POST would be replayed as GET by most clients:
        // refuse it rather than lose its body.
        return Response::error(400, "invalid_input", "use https://").closing();
    }
    let Some(host) = req
        .header("host")
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(host_of)
    else {
        return Response::error(400, "invalid_input", "a Host header is needed").closing();
    };
    let mut location = String::with_capacity(16 + host.len() + req.path.len() + req.query.len());
    location.push_str("https://");
    location.push_str(host);
    if https_port != 443 {
        location.push(':');
        location.push_str(&https_port.to_string());
    }
    location.push_str(req.path);
    if !req.query.is_empty() {
        location.push('?');
        location.push_str(req.query);
    }
    Response::new(301, "text/plain; charset=utf-8", &b"moved to https\n"[..])
        .with_header("Location", location)
}

/// The host of a `Host` header value, without its port, if it is a name
/// or an address (nothing that could smuggle another header or a path
/// into `Location`).
fn host_of(value: &str) -> Option<&str> {
    let value = value.trim();
    let host = match value.strip_prefix('[') {
        Some(rest) => &value[..rest.find(']')? + 2],
        None => value.split(':').next()?,
    };
    let ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    ok.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(head: &str, challenges: &Challenges, port: u16) -> Response {
        let raw = format!("{head}\r\n\r\n");
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let (req, _) = crate::http::request::parse(raw.as_bytes(), &mut headers)
            .expect("valid")
            .expect("whole");
        answer(&req, challenges, port)
    }

    fn location(r: &Response) -> Option<&str> {
        r.headers
            .iter()
            .find(|(n, _)| *n == "Location")
            .map(|(_, v)| v.as_ref())
    }

    /// Pages go to the same path and query on https://, the HTTPS port
    /// named unless it is 443; the Host's own port is dropped.
    #[test]
    fn redirects_to_https() {
        let c = Challenges::default();
        let r = get(
            "GET /x/y?a=1&b=2 HTTP/1.1\r\nHost: chat.example.com",
            &c,
            443,
        );
        assert_eq!(r.status, 301);
        assert_eq!(location(&r), Some("https://chat.example.com/x/y?a=1&b=2"));
        let r = get("GET / HTTP/1.1\r\nHost: chat.example.com:80", &c, 8443);
        assert_eq!(location(&r), Some("https://chat.example.com:8443/"));
        let r = get("HEAD / HTTP/1.1\r\nHost: [::1]:80", &c, 443);
        assert_eq!(location(&r), Some("https://[::1]/"));
    }

    /// No Host, a Host that is not a host name, or a POST: 400, no redirect.
    #[test]
    fn refuses_what_it_cannot_redirect() {
        let c = Challenges::default();
        assert_eq!(get("GET / HTTP/1.1", &c, 443).status, 400);
        assert_eq!(get("GET / HTTP/1.1\r\nHost: a/b", &c, 443).status, 400);
        assert_eq!(get("GET / HTTP/1.1\r\nHost: a b", &c, 443).status, 400);
        let r = get(
            "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: 0",
            &c,
            443,
        );
        assert_eq!(r.status, 400);
        assert!(location(&r).is_none());
    }

    /// A challenge the ACME thread published is answered with its key
    /// authorization; any other token is 404.
    #[test]
    fn answers_published_challenges() {
        let c = Challenges::default();
        assert!(c.publish("tok-1".into(), "tok-1.thumb".into()));
        let r = get(
            "GET /.well-known/acme-challenge/tok-1 HTTP/1.1\r\nHost: x",
            &c,
            443,
        );
        assert_eq!((r.status, &r.body[..]), (200, &b"tok-1.thumb"[..]));
        let r = get(
            "GET /.well-known/acme-challenge/other HTTP/1.1\r\nHost: x",
            &c,
            443,
        );
        assert_eq!(r.status, 404);
        c.withdraw("tok-1");
        let r = get(
            "GET /.well-known/acme-challenge/tok-1 HTTP/1.1\r\nHost: x",
            &c,
            443,
        );
        assert_eq!(r.status, 404);
    }
}
