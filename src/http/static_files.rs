//! The web client: `static/` embedded at build time (see `build.rs`), or read
//! from `--static-dir` during development.
//!
//! Paths are matched against a fixed table, so nothing outside `static/` can
//! be named at all; the checks below still refuse `..`, backslashes and
//! encoded dots explicitly so `--static-dir` is just as closed.
//!
//! Everything is sent `no-cache` with an ETag: a browser revalidates each
//! file (a 304 costs one round trip), so a new version is picked up at once,
//! and the service worker (`/sw.js`, stamped by `shell`) is never kept stale.

use std::borrow::Cow;
use std::path::Path;

use super::mime::content_type;
use super::request::percent_decode;
use super::response::Response;
use super::shell;

/// One embedded file.
pub struct StaticFile {
    pub path: &'static str,
    pub content_type: &'static str,
    /// A quoted content hash, for `ETag` / `If-None-Match`.
    pub etag: &'static str,
    pub body: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/static_files.rs"));

/// The policy the web client is written for: its own scripts, styles and
/// images, WebSocket/fetch to its own origin, nothing inline, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The file a request path names, or `None` for anything that is not a
/// plain path inside the client (including every traversal attempt).
pub fn clean_path(raw: &str) -> Option<String> {
    let decoded = percent_decode(raw)?;
    if decoded.contains('\\') || decoded.contains('\0') || !decoded.starts_with('/') {
        return None;
    }
    if decoded == "/" {
        return Some("/index.html".to_string());
    }
    // Every segment must be a plain name: no `..`, no dot-files, and no empty
    // segment — `//etc/passwd` would otherwise join onto `--static-dir` as an
    // absolute path.
    if decoded[1..]
        .split('/')
        .any(|seg| seg.is_empty() || seg.starts_with('.'))
    {
        return None;
    }
    Some(decoded.into_owned())
}

/// Answers `GET /<file>`.
pub fn serve(raw_path: &str, if_none_match: Option<&[u8]>, dir: Option<&Path>) -> Response {
    let Some(path) = clean_path(raw_path) else {
        return not_found();
    };
    let (body, ctype, etag): (Cow<'static, [u8]>, &'static str, Cow<'static, str>) = match dir {
        None => match FILES.binary_search_by(|f| f.path.cmp(path.as_str())) {
            Ok(i) => (
                Cow::Borrowed(FILES[i].body),
                FILES[i].content_type,
                Cow::Borrowed(FILES[i].etag),
            ),
            Err(_) => return not_found(),
        },
        // Development only: a blocking read on the loop thread, which a
        // release deployment never does (it serves the embedded table).
        Some(dir) => match read_dev(dir, &path) {
            Some(bytes) => {
                let etag = format!("\"dev-{:016x}\"", shell::fnv1a(&bytes));
                (Cow::Owned(bytes), content_type(&path), Cow::Owned(etag))
            }
            None => return not_found(),
        },
    };
    let matches = if_none_match.is_some_and(|v| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii() == etag.as_bytes() || t.trim_ascii() == b"*")
    });
    let resp = if matches {
        Response::new(304, ctype, Vec::new())
    } else {
        Response::new(200, ctype, body)
    };
    with_security_headers(
        resp.with_header("ETag", etag)
            .with_header("Cache-Control", "no-cache"),
    )
}

/// Development: the file as it is on disk, and the worker stamped from the
/// directory as it is now, as `build.rs` stamps the embedded one.
fn read_dev(dir: &Path, path: &str) -> Option<Vec<u8>> {
    let bytes = std::fs::read(dir.join(&path[1..])).ok()?;
    if path != shell::WORKER {
        return Some(bytes);
    }
    let mut paths = Vec::new();
    shell::walk(dir, &mut paths);
    let files: Vec<(String, Vec<u8>)> = paths
        .iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(dir).ok()?.to_str()?.replace('\\', "/");
            // Only what could be served: no dot-files (an editor's swap file).
            let url = clean_path(&format!("/{rel}"))?;
            Some((url, std::fs::read(p).ok()?))
        })
        .collect();
    let source = String::from_utf8(bytes).ok()?;
    Some(shell::stamp(&source, &files).unwrap_or(source).into_bytes())
}

/// Headers every response of the web client carries.
pub fn with_security_headers(r: Response) -> Response {
    r.with_header("Content-Security-Policy", CSP)
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("Referrer-Policy", "no-referrer")
}

fn not_found() -> Response {
    Response::error(404, "not_found", "no such page")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Traversal in every spelling is refused; plain paths pass.
    #[test]
    fn refuses_traversal() {
        for bad in [
            "//etc/passwd",
            "/js//x.js",
            "/js/",
            "/../Cargo.toml",
            "/%2e%2e/Cargo.toml",
            "/..%2fCargo.toml",
            "/js/..\\..\\x",
            "/%5c..",
            "/.git/config",
            "/a/./b",
        ] {
            assert_eq!(clean_path(bad), None, "{bad}");
        }
        assert_eq!(clean_path("/").as_deref(), Some("/index.html"));
        assert_eq!(clean_path("/js/app.js").as_deref(), Some("/js/app.js"));
    }

    /// The embedded table is sorted (lookups binary-search it) and has an index page.
    #[test]
    fn table_is_sorted_with_index() {
        assert!(FILES.windows(2).all(|w| w[0].path < w[1].path));
        assert!(FILES.iter().any(|f| f.path == "/index.html"));
    }

    /// A matching ETag gets 304 with no body; every answer has the CSP.
    #[test]
    fn revalidates_with_etag() {
        let first = serve("/", None, None);
        assert_eq!(first.status, 200);
        let etag = first
            .headers
            .iter()
            .find(|(n, _)| *n == "ETag")
            .unwrap()
            .1
            .to_string();
        let again = serve("/", Some(etag.as_bytes()), None);
        assert_eq!((again.status, again.body.len()), (304, 0));
        assert!(
            again
                .headers
                .iter()
                .any(|(n, v)| *n == "Content-Security-Policy" && v == CSP)
        );
        assert_eq!(serve("/nope.js", None, None).status, 404);
    }
}
