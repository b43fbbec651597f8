//! Responses: a status, a few headers and a body, written as HTTP/1.1 bytes.
//! Error bodies are always the contract's JSON `{"error","code"}`.

use std::borrow::Cow;

use serde::Serialize;

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
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        out.extend_from_slice(if keep_alive && !self.close {
            b"Connection: keep-alive\r\n\r\n"
        } else {
            b"Connection: close\r\n\r\n"
        });
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
             Connection: keep-alive\r\n\r\n{\"error\":\"no such page\",\"code\":\"not_found\"}"
        );
    }
}
