//! Responses: a status, a few headers and a body, written as HTTP/1.1 bytes.
//! Error bodies are always the contract's JSON `{"error","code"}`.
//!
//! Every JSON response says `X-Content-Type-Options: nosniff` (a browser
//! must not guess that an error quoting client input is HTML) and
//! `Cache-Control: no-store` (API answers carry tokens and private messages,
//! which no shared or browser cache should keep), unless it sets those
//! headers itself. Both are written with the head, so they cost no
//! allocation. Static files set their own (nosniff, and ETag revalidation);
//! `/healthz` and `/metrics` stay as lean as probes and scrapers expect.

use std::borrow::Cow;

use serde::Serialize;

use crate::config::{MAX_BODY_BYTES, MAX_HEAD_BYTES, MAX_HEADERS};
use crate::http::request::HeadError;

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Extra headers beyond Content-Type, Content-Length and Connection.
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
    /// Static files borrow the embedded bytes; nothing is copied until the
    /// socket takes them.
    pub body: Cow<'static, [u8]>,
    /// Close the connection after this response whatever the request said.
    pub close: bool,
}

const JSON: &str = "application/json";

impl Response {
    pub fn new(
        status: u16,
        content_type: &'static str,
        body: impl Into<Cow<'static, [u8]>>,
    ) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
            close: false,
        }
    }

    pub fn json(status: u16, value: &impl Serialize) -> Response {
        let body = serde_json::to_vec(value).expect("serializing to a Vec cannot fail");
        Response::new(status, JSON, body)
    }

    /// 204: done, nothing to say (no body, no `Content-Type`).
    pub fn no_content() -> Response {
        Response::new(204, "", &[][..])
    }

    /// The contract's error shape: a sentence for people, a code for programs.
    pub fn error(status: u16, code: &'static str, message: impl Into<String>) -> Response {
        #[derive(Serialize)]
        struct Body {
            error: String,
            code: &'static str,
        }
        Response::json(
            status,
            &Body {
                error: message.into(),
                code,
            },
        )
    }

    pub fn with_header(
        mut self,
        name: &'static str,
        value: impl Into<Cow<'static, str>>,
    ) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    pub fn closing(mut self) -> Response {
        self.close = true;
        self
    }

    /// Writes the status line and headers. The body is left to the caller so a
    /// static body can be queued without a copy; `head_only` answers `HEAD`.
    pub fn write_head(&self, out: &mut Vec<u8>, keep_alive: bool) {
        use std::io::Write;
        if self.status == 204 {
            // A 204 has no body, so no Content-Length (RFC 9110 §8.6).
            out.extend_from_slice(b"HTTP/1.1 204 No Content\r\n");
        } else {
            let _ = write!(
                out,
                "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
                self.status,
                reason(self.status),
                self.content_type,
                self.body.len()
            );
        }
        let json = self.content_type == JSON;
        let mut nosniff = json;
        let mut no_store = json;
        for (name, value) in &self.headers {
            let _ = write!(out, "{name}: {value}\r\n");
            nosniff &= !name.eq_ignore_ascii_case("x-content-type-options");
            no_store &= !name.eq_ignore_ascii_case("cache-control");
        }
        if nosniff {
            out.extend_from_slice(b"X-Content-Type-Options: nosniff\r\n");
        }
        if no_store {
            out.extend_from_slice(b"Cache-Control: no-store\r\n");
        }
        out.extend_from_slice(if keep_alive && !self.close {
            b"Connection: keep-alive\r\n\r\n"
        } else {
            b"Connection: close\r\n\r\n"
        });
    }
}

/// The byte limits are quoted in KiB.
const KIB: usize = 1024;
// A limit that is not a whole number of KiB would be misquoted: fail the build instead.
const _: () = assert!(MAX_HEAD_BYTES.is_multiple_of(KIB) && MAX_BODY_BYTES.is_multiple_of(KIB));

/// The response for a request the parser refused. The message quotes the
/// limit from `config`, so the text cannot drift from the check.
impl From<HeadError> for Response {
    fn from(e: HeadError) -> Response {
        match e {
            HeadError::Malformed(why) => Response::error(400, "bad_request", why),
            HeadError::TooLarge => Response::error(
                431,
                "headers_too_large",
                format!(
                    "request head over {} KiB or {MAX_HEADERS} headers",
                    MAX_HEAD_BYTES / KIB
                ),
            ),
            HeadError::LengthRequired => {
                Response::error(411, "length_required", "a body needs Content-Length")
            }
            HeadError::BodyTooLarge => Response::error(
                413,
                "body_too_large",
                format!("request body over {} KiB", MAX_BODY_BYTES / KIB),
            ),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 204 says neither a length nor a type: it has no body.
    #[test]
    fn no_content_has_no_length() {
        let mut head = Vec::new();
        Response::no_content().write_head(&mut head, true);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    /// An error response is JSON with the contract's two fields and exact headers.
    #[test]
    fn writes_error_response() {
        let r = Response::error(404, "not_found", "no such page");
        let mut out = Vec::new();
        r.write_head(&mut out, true);
        out.extend_from_slice(&r.body);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 43\r\n\
             X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n\
             Connection: keep-alive\r\n\r\n{\"error\":\"no such page\",\"code\":\"not_found\"}"
        );
    }

    /// A JSON response that sets its own caching or sniffing header keeps
    /// it and gets no second one; other types get neither by default.
    #[test]
    fn own_headers_win_over_defaults() {
        let r = Response::json(200, &"x")
            .with_header("Cache-Control", "no-cache")
            .with_header("X-Content-Type-Options", "nosniff");
        let mut out = Vec::new();
        r.write_head(&mut out, false);
        let head = String::from_utf8(out).unwrap();
        assert_eq!(head.matches("nosniff").count(), 1, "{head}");
        assert_eq!(head.matches("Cache-Control").count(), 1, "{head}");
        assert!(head.contains("Cache-Control: no-cache\r\n"), "{head}");
        let mut out = Vec::new();
        Response::new(200, "text/plain", &b"ok"[..]).write_head(&mut out, false);
        let head = String::from_utf8(out).unwrap();
        assert!(
            !head.contains("Cache-Control") && !head.contains("nosniff"),
            "{head}"
        );
    }

    /// Each parser refusal gets its status and code, and the limit messages
    /// quote the limits in `config`.
    #[test]
    fn head_errors_quote_the_limits() {
        let text = |e: HeadError| {
            let r = Response::from(e);
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            (
                r.status,
                body["code"].as_str().unwrap().to_string(),
                body["error"].as_str().unwrap().to_string(),
            )
        };
        assert_eq!(
            text(HeadError::TooLarge),
            (
                431,
                "headers_too_large".into(),
                format!(
                    "request head over {} KiB or {} headers",
                    MAX_HEAD_BYTES / KIB,
                    MAX_HEADERS
                )
            )
        );
        assert_eq!(
            text(HeadError::BodyTooLarge),
            (
                413,
                "body_too_large".into(),
                format!("request body over {} KiB", MAX_BODY_BYTES / KIB)
            )
        );
        assert_eq!(
            text(HeadError::LengthRequired),
            (
                411,
                "length_required".into(),
                "a body needs Content-Length".into()
            )
        );
        assert_eq!(
            text(HeadError::Malformed("no method")),
            (400, "bad_request".into(), "no method".into())
        );
    }
}
