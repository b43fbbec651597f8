//! Property tests of the request parser (`request::parse`): the server calls
//! it on whatever bytes have arrived so far, after every read, so its answer
//! must not depend on where TCP cut the stream. Generated requests check
//! that; arbitrary and mutated bytes check that nothing panics and that a
//! request it accepts is accepted only once all of it is there.

use proptest::prelude::*;

use super::request::parse;
use crate::config::MAX_HEADERS;

/// Cases per property. Each case of the prefix property parses every prefix
/// of a request of up to about a kilobyte, so 256 cases keep a debug
/// `cargo test` to a few seconds while still finding a bad cut quickly.
const CASES: u32 = 256;
/// Cases of the pipelining property: each case is up to [`MAX_PIPELINED`]
/// requests, so fewer cases see as many requests as the others do.
const PIPELINED_CASES: u32 = 64;
/// Most headers a generated request has (besides `Content-Length`): well
/// under [`MAX_HEADERS`], so the parser's limits never decide the outcome.
const MAX_GEN_HEADERS: usize = 12;
/// Longest generated body; the limit itself is `MAX_BODY_BYTES`.
const MAX_GEN_BODY: usize = 512;
/// Most requests in one pipelined batch.
const MAX_PIPELINED: usize = 6;
/// Longest input of the arbitrary-bytes property.
const MAX_NOISE: usize = 2048;

/// A request as a client writes it.
#[derive(Debug, Clone)]
struct Req {
    method: &'static str,
    path: String,
    query: Option<String>,
    minor: u8,
    headers: Vec<(String, Vec<u8>)>,
    /// Sent with a `Content-Length` header, spelled as `length_name`.
    body: Option<Vec<u8>>,
    length_name: String,
}

impl Req {
    fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {}", self.method, self.path).into_bytes();
        if let Some(q) = &self.query {
            out.extend_from_slice(format!("?{q}").as_bytes());
        }
        out.extend_from_slice(format!(" HTTP/1.{}\r\n", self.minor).as_bytes());
        for (name, value) in self.all_headers() {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(&value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.body.as_deref().unwrap_or_default());
        out
    }

    /// The headers in the order they are sent, `Content-Length` last.
    fn all_headers(&self) -> Vec<(String, Vec<u8>)> {
        let mut all = self.headers.clone();
        if let Some(body) = &self.body {
            all.push((
                self.length_name.clone(),
                body.len().to_string().into_bytes(),
            ));
        }
        all
    }
}

/// A header name that is any token except the two the parser interprets.
fn header_name() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,19}".prop_filter("framing headers", |n| {
        !n.eq_ignore_ascii_case("content-length") && !n.eq_ignore_ascii_case("transfer-encoding")
    })
}

/// A header value: visible ASCII, spaces, tabs and obs-text inside, but no
/// whitespace at either end (the parser trims it, which is not the point here).
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    let visible: Vec<u8> = (0x21..=0x7e).chain(0x80..=0xff).collect();
    let mut inner = visible.clone();
    inner.extend_from_slice(b"    \t");
    let visible = prop::sample::select(visible);
    (
        visible.clone(),
        proptest::collection::vec(prop::sample::select(inner), 0..30),
        visible,
    )
        .prop_map(|(first, mid, last)| {
            let mut v = vec![first];
            v.extend(mid);
            v.push(last);
            v
        })
}

fn request() -> impl Strategy<Value = Req> {
    let method = prop::sample::select(vec![
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
    ]);
    (
        method,
        "/[A-Za-z0-9._~%!$&'()*+,;=:@/-]{0,40}",
        proptest::option::of("[A-Za-z0-9=&%+._~/-]{0,30}"),
        0u8..=1,
        proptest::collection::vec((header_name(), header_value()), 0..MAX_GEN_HEADERS),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..MAX_GEN_BODY)),
        prop::sample::select(vec!["Content-Length", "content-length", "CONTENT-length"]),
    )
        .prop_map(|(method, path, query, minor, headers, body, length_name)| {
            // These methods must say how long their body is, even if empty.
            let body = match method {
                "POST" | "PUT" | "PATCH" => Some(body.unwrap_or_default()),
                _ => body,
            };
            Req {
                method,
                path,
                query,
                minor,
                headers,
                body,
                length_name: length_name.to_string(),
            }
        })
}

/// Parses the request at the start of `buf` and checks it is `want`,
/// returning how many bytes it used.
fn parses_as(buf: &[u8], want: &Req) -> Result<usize, TestCaseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let parsed = parse(buf, &mut headers);
    let Ok(Some((req, used))) = parsed else {
        return Err(TestCaseError::fail(format!("parsed as {parsed:?}")));
    };
    prop_assert_eq!(req.method, want.method);
    prop_assert_eq!(req.path, want.path.as_str());
    prop_assert_eq!(req.query, want.query.as_deref().unwrap_or(""));
    prop_assert_eq!(req.minor_version, want.minor);
    let got: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect();
    prop_assert_eq!(got, want.all_headers());
    prop_assert_eq!(req.body, want.body.as_deref().unwrap_or_default());
    Ok(used)
}

/// Parses `buf` and reports whether it is a whole request, with how many
/// bytes it used; an error is `Err`, "incomplete" is `Ok(None)`.
fn outcome(buf: &[u8]) -> Result<Option<usize>, super::request::HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    parse(buf, &mut headers).map(|o| o.map(|(_, used)| used))
}

/// A valid request with some bytes overwritten, inserted or cut off: close
/// enough to valid to get deep into the parser.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        request(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    )
        .prop_map(|(req, edits)| {
            let mut bytes = req.bytes();
            for (at, byte, how) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match how {
                    0 => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ => bytes.truncate(i),
                }
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    /// Every strict prefix of a valid request is "incomplete" (never an
    /// error, never a request), and the whole of it parses to exactly what
    /// was sent, using every byte.
    #[test]
    fn every_prefix_is_incomplete_and_the_whole_parses(req in request()) {
        let bytes = req.bytes();
        for cut in 0..bytes.len() {
            prop_assert_eq!(outcome(&bytes[..cut]), Ok(None), "cut at {}", cut);
        }
        prop_assert_eq!(parses_as(&bytes, &req)?, bytes.len());
    }

    /// Arbitrary bytes never panic; whatever parses as a request uses no
    /// more than it was given.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..MAX_NOISE),
    ) {
        if let Ok(Some(used)) = outcome(&bytes) {
            prop_assert!(used > 0 && used <= bytes.len());
        }
    }

    /// A damaged request never panics, and if it still parses, it did not
    /// parse one byte sooner: the server never acts on half a request.
    #[test]
    fn mutated_requests_never_parse_early(bytes in mutated()) {
        if let Ok(Some(used)) = outcome(&bytes) {
            prop_assert!(used > 0 && used <= bytes.len());
            prop_assert_eq!(outcome(&bytes[..used - 1]), Ok(None));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: PIPELINED_CASES, ..ProptestConfig::default() })]

    /// Pipelined requests parse one after another, each using exactly its
    /// own bytes, as `process_http` walks its input.
    #[test]
    fn pipelined_requests_parse_in_order(
        reqs in proptest::collection::vec(request(), 1..=MAX_PIPELINED),
    ) {
        let stream: Vec<u8> = reqs.iter().flat_map(Req::bytes).collect();
        let mut pos = 0;
        for req in &reqs {
            let used = parses_as(&stream[pos..], req)?;
            prop_assert_eq!(used, req.bytes().len());
            pos += used;
        }
        prop_assert_eq!(pos, stream.len());
    }
}
