//! Fuzzes the HTTP request parser (`http::request::parse`), which reads
//! whatever a client sends before any route sees it. Beyond "never panics",
//! it checks what `process_http` relies on when a request arrives across
//! several reads: a complete request reports no more bytes than it was
//! given, and one byte less of it is "incomplete", never an error.

#![no_main]

use hubbub::bench::parse_request;
use hubbub::config::MAX_HEADERS;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let used = match parse_request(data, &mut headers) {
        Ok(Some((req, used))) => {
            assert!(used <= data.len() && used >= req.body.len());
            used
        }
        Ok(None) | Err(_) => return,
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let cut = parse_request(&data[..used - 1], &mut headers);
    assert!(
        matches!(cut, Ok(None)),
        "a complete request minus its last byte parsed as {cut:?}"
    );
});
