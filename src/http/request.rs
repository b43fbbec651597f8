//! Request heads with httparse: zero-copy, and an incomplete head is
//! `Ok(None)` (read more), never an error. Every limit of the contract is
//! checked here, before any route sees the request.

use std::borrow::Cow;

use crate::config::{MAX_BODY_BYTES, MAX_HEAD_BYTES};

/// A parsed request, borrowing the connection's input.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path without the query string, still percent-encoded.
    pub path: &'a str,
    /// The query string without the `?` ("" when there is none).
    pub query: &'a str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: &'a [httparse::Header<'a>],
    /// The whole body; empty for a request whose body streams (see
    /// [`parse_streaming`]), which reads it from the connection as it comes.
    pub body: &'a [u8],
    /// The body's length (`Content-Length`, 0 without one).
    pub body_len: usize,
}

/// Why a request cannot be served; each maps to one status code (the
/// `From<HeadError>` impl of `Response`), and all of them end the connection
/// (the rest of its input cannot be trusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// 400: not HTTP, or an impossible header.
    Malformed(&'static str),
    /// 431: head over [`MAX_HEAD_BYTES`] or over
    /// [`MAX_HEADERS`](crate::config::MAX_HEADERS) headers.
    TooLarge,
    /// 411: a body without `Content-Length` (or with `Transfer-Encoding`).
    LengthRequired,
    /// 413: `Content-Length` over [`MAX_BODY_BYTES`].
    BodyTooLarge,
}

/// Parses the request at the start of `buf`. Returns the request and how many
/// bytes it used (head + body), or `None` if more input is needed.
pub fn parse<'a>(
    buf: &'a [u8],
    headers: &'a mut [httparse::Header<'a>],
) -> Result<Option<(Request<'a>, usize)>, HeadError> {
    parse_streaming(buf, headers, |_, _| false)
}

/// [`parse`], except that a request for which `streams(method, path)`
/// holds (an upload) is returned as soon as its head is complete, with an
/// empty `body`, no [`MAX_BODY_BYTES`] limit (its route has its own) and
/// only the head counted as used: the caller streams the body.
pub fn parse_streaming<'a>(
    buf: &'a [u8],
    headers: &'a mut [httparse::Header<'a>],
    streams: impl Fn(&str, &str) -> bool,
) -> Result<Option<(Request<'a>, usize)>, HeadError> {
    let mut req = httparse::Request::new(headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > MAX_HEAD_BYTES {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed("malformed request")),
    };
    if head_len > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let method = req.method.ok_or(HeadError::Malformed("no method"))?;
    let target = req.path.ok_or(HeadError::Malformed("no target"))?;
    let minor_version = req.version.ok_or(HeadError::Malformed("no version"))?;
    if !target.starts_with('/') {
        return Err(HeadError::Malformed("request target must be a path"));
    }
    let headers: &'a [httparse::Header<'a>] = req.headers;
    let mut content_length: Option<usize> = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HeadError::LengthRequired);
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or(HeadError::Malformed("bad Content-Length"))?;
            if content_length.is_some_and(|c| c != n) {
                return Err(HeadError::Malformed("conflicting Content-Length"));
            }
            content_length = Some(n);
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let streamed = streams(method, path);
    let body_len = match (content_length, method) {
        (Some(n), _) if n > MAX_BODY_BYTES && !streamed => return Err(HeadError::BodyTooLarge),
        (Some(n), _) => n,
        (None, "POST" | "PUT" | "PATCH") => return Err(HeadError::LengthRequired),
        (None, _) => 0,
    };
    let (body, used) = if streamed {
        (&buf[head_len..head_len], head_len)
    } else {
        let total = head_len + body_len;
        if buf.len() < total {
            return Ok(None);
        }
        (&buf[head_len..total], total)
    };
    Ok(Some((
        Request {
            method,
            path,
            query,
            minor_version,
            headers,
            body,
            body_len,
        },
        used,
    )))
}

impl<'a> Request<'a> {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Whether a comma-separated header (e.g. `Connection`) lists `token`.
    pub fn header_has(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| h.value.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    }

    /// HTTP/1.1 keeps the connection unless told `close`; 1.0 only with `keep-alive`.
    pub fn keep_alive(&self) -> bool {
        if self.minor_version == 0 {
            self.header_has("connection", "keep-alive")
        } else {
            !self.header_has("connection", "close")
        }
    }

    /// A query parameter, percent-decoded (`None` when absent or not UTF-8).
    pub fn query_param(&self, key: &str) -> Option<Cow<'a, str>> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| percent_decode(v))
    }

    /// The token of `Authorization: Bearer <token>`.
    pub fn bearer(&self) -> Option<&'a str> {
        let v = std::str::from_utf8(self.header("authorization")?).ok()?;
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }
}

/// Decodes `%XX` escapes and `+` (as in forms). `None` for a bad escape or
/// a result that is not UTF-8. Borrows when there is nothing to decode.
pub fn percent_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MAX_HEADERS;

    fn parse_str(s: &[u8]) -> Result<Option<(String, String, usize, bool)>, HeadError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        parse(s, &mut headers).map(|o| {
            o.map(|(r, n)| {
                (
                    r.path.to_string(),
                    String::from_utf8_lossy(r.body).into_owned(),
                    n,
                    r.keep_alive(),
                )
            })
        })
    }

    /// A whole request with a body parses; a cut one asks for more input.
    #[test]
    fn parses_complete_and_partial() {
        let req = b"POST /api/login?x=1 HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET";
        assert_eq!(
            parse_str(req),
            Ok(Some((
                "/api/login".into(),
                "{}".into(),
                req.len() - 3,
                true
            )))
        );
        assert_eq!(parse_str(&req[..20]), Ok(None));
        assert_eq!(
            parse_str(&req[..req.len() - 4]),
            Ok(None),
            "body not all here yet"
        );
    }

    /// Each limit is refused with its own error (`Response::from` maps
    /// each to a status code).
    #[test]
    fn enforces_limits() {
        use HeadError::*;
        let err = |r: &[u8]| parse_str(r).unwrap_err();
        assert_eq!(err(b"POST / HTTP/1.1\r\n\r\n"), LengthRequired);
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            LengthRequired
        );
        let over = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        assert_eq!(err(over.as_bytes()), BodyTooLarge);
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Malformed("bad Content-Length")
        );
        assert!(matches!(
            err(b"\x16\x03\x01 nonsense\r\n\r\n"),
            Malformed(_)
        ));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(err(&many), TooLarge);
        let long = [
            b"GET / HTTP/1.1\r\nX: ".as_ref(),
            &[b'a'; MAX_HEAD_BYTES + 1],
        ]
        .concat();
        assert_eq!(err(&long), TooLarge);
    }

    /// A streamed request is whole once its head is: its body is left
    /// where it is, however long it says it is; other requests keep the
    /// body limit.
    #[test]
    fn streamed_bodies_are_left_to_the_caller() {
        let raw = b"POST /api/files?name=a HTTP/1.1\r\nContent-Length: 99999999\r\n\r\nabc";
        let mut h = [httparse::EMPTY_HEADER; 8];
        let streams = |m: &str, p: &str| m == "POST" && p == "/api/files";
        let (req, used) = parse_streaming(raw, &mut h, streams).unwrap().unwrap();
        assert_eq!(
            (req.body, req.body_len, used),
            (&b""[..], 99_999_999, raw.len() - 3)
        );
        let mut h = [httparse::EMPTY_HEADER; 8];
        assert_eq!(parse(raw, &mut h).unwrap_err(), HeadError::BodyTooLarge);
        let mut h = [httparse::EMPTY_HEADER; 8];
        let put = b"PUT /api/files HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n";
        assert_eq!(
            parse_streaming(put, &mut h, streams).unwrap_err(),
            HeadError::BodyTooLarge,
            "another method on the path is no upload"
        );
        let mut h = [httparse::EMPTY_HEADER; 8];
        let none = b"POST /api/files HTTP/1.1\r\n\r\n";
        assert_eq!(
            parse_streaming(none, &mut h, streams).unwrap_err(),
            HeadError::LengthRequired
        );
    }

    /// `Connection` and HTTP versions decide keep-alive.
    #[test]
    fn keep_alive_rules() {
        let ka = |r: &[u8]| parse_str(r).unwrap().unwrap().3;
        assert!(ka(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    }

    /// Query parameters decode escapes; a bad escape is no value.
    #[test]
    fn decodes_query() {
        let mut headers = [httparse::EMPTY_HEADER; 4];
        let raw = b"GET /x?room=a%2Db&token=t+1&bad=%zz&flag HTTP/1.1\r\nAuthorization: Bearer abc\r\n\r\n";
        let (r, _) = parse(raw, &mut headers).unwrap().unwrap();
        assert_eq!(r.query_param("room").as_deref(), Some("a-b"));
        assert_eq!(r.query_param("token").as_deref(), Some("t 1"));
        assert_eq!(r.query_param("bad"), None);
        assert_eq!(r.query_param("flag").as_deref(), Some(""));
        assert_eq!(r.bearer(), Some("abc"));
    }
}
