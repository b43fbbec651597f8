//! The web client from `static/`: content types, caching (ETag / 304), security headers,
//! 404 `not_found`, and path traversal never leaking a file outside `static/`.

mod common;

use common::*;
use std::sync::Arc;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";
const SECRET: &str = "TOP-SECRET-MARKER-7f3a";

fn assert_security_headers(r: &Resp, what: &str) {
    assert_eq!(
        r.header("content-security-policy"),
        Some(CSP),
        "CSP on {what}"
    );
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "nosniff on {what}"
    );
}

/// `GET /` serves the embedded web client: 200 text/html with ETag, CSP and nosniff.
#[test]
fn index_is_html_with_security_headers() {
    let s = Server::start();
    let r = s.get("/", None);
    assert_eq!(r.status, 200);
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with("text/html"), "content-type {ct:?}");
    assert!(
        r.text().to_ascii_lowercase().contains("<html"),
        "not an HTML page"
    );
    assert!(r.header("etag").is_some_and(|e| !e.is_empty()), "no ETag");
    assert_security_headers(&r, "/");
}

/// `If-None-Match` with the current ETag is 304 with no body; a stale ETag gets the page again.
#[test]
fn etag_revalidation_is_304() {
    let s = Server::start();
    let r = s.get("/", None);
    let etag = r.header("etag").expect("ETag").to_string();
    let mut c = HttpConn::connect(s.addr);
    let r304 = c.request("GET", "/", &[("If-None-Match", &etag)], None);
    assert_eq!(r304.status, 304);
    assert!(r304.body.is_empty());
    assert_eq!(r304.header("etag"), Some(etag.as_str()));
    // The 304 had no body on the wire: the next response on the keep-alive connection parses.
    let again = c.request("GET", "/", &[("If-None-Match", "\"stale\"")], None);
    assert_eq!(again.status, 200);
    assert_eq!(again.body, r.body);
}

/// Scripts referenced by the index page are served with a JavaScript content type and the same headers.
#[test]
fn referenced_scripts_are_served() {
    let s = Server::start();
    let html = s.get("/", None).text();
    let srcs: Vec<&str> = html
        .split("src=\"")
        .skip(1)
        .filter_map(|p| p.split('"').next())
        .filter(|p| p.ends_with(".js") && !p.starts_with("http"))
        .collect();
    assert!(!srcs.is_empty(), "index references no script");
    for src in srcs {
        let path = if src.starts_with('/') {
            src.to_string()
        } else {
            format!("/{src}")
        };
        let r = s.get(&path, None);
        assert_eq!(r.status, 200, "{path}");
        let ct = r.header("content-type").unwrap_or("");
        assert!(ct.contains("javascript"), "{path}: content-type {ct:?}");
        assert_security_headers(&r, &path);
    }
}

/// A missing static file is 404 `not_found` (JSON error).
#[test]
fn missing_file_is_404_not_found() {
    let s = Server::start();
    s.get("/no-such-file.html", None)
        .assert_error(404, "not_found");
    s.get("/js/no-such.js", None).assert_error(404, "not_found");
}

fn site() -> Arc<TempDir> {
    let d = TempDir::new("site");
    let st = d.path().join("static");
    std::fs::create_dir_all(st.join("js")).unwrap();
    std::fs::write(
        st.join("index.html"),
        "<!doctype html><html><body>site</body></html>",
    )
    .unwrap();
    std::fs::write(st.join("app.css"), "body{}").unwrap();
    std::fs::write(st.join("js").join("app.js"), "console.log(1)").unwrap();
    std::fs::write(d.path().join("secret.txt"), SECRET).unwrap();
    std::fs::write(d.path().join("hubbub.db.txt"), SECRET).unwrap();
    Arc::new(d)
}

/// With `--static-dir`, files come from disk with types by extension (html, css, js).
#[test]
fn static_dir_serves_files_by_extension() {
    let d = site();
    let s = Server::builder()
        .arg("--static-dir")
        .arg(d.path().join("static").to_str().unwrap())
        .start_in(d.clone());
    for (p, ty, body) in [
        (
            "/",
            "text/html",
            "<!doctype html><html><body>site</body></html>",
        ),
        (
            "/index.html",
            "text/html",
            "<!doctype html><html><body>site</body></html>",
        ),
        ("/app.css", "text/css", "body{}"),
        ("/js/app.js", "javascript", "console.log(1)"),
    ] {
        let r = s.get(p, None);
        assert_eq!(r.status, 200, "{p}");
        assert!(
            r.header("content-type").unwrap_or("").contains(ty),
            "{p}: {:?}",
            r.header("content-type")
        );
        assert_eq!(r.text(), body, "{p}");
        assert_security_headers(&r, p);
    }
}

/// Path traversal (dot segments, percent-encoded dots and slashes, backslashes, absolute paths)
/// never serves a file outside `static/`: always 400 or 404, never the file's bytes.
#[test]
fn path_traversal_never_leaks() {
    let d = site();
    let s = Server::builder()
        .arg("--static-dir")
        .arg(d.path().join("static").to_str().unwrap())
        .start_in(d.clone());
    let attempts = [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/..%2fsecret.txt",
        "/..%2Fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/js/../../secret.txt",
        "/js/%2e%2e/%2e%2e/secret.txt",
        "/..\\secret.txt",
        "/..%5csecret.txt",
        "/js\\..\\..\\secret.txt",
        "/.%2e/secret.txt",
        "/%252e%252e/secret.txt",
        "//etc/passwd",
        "/../../../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/..;/secret.txt",
        "/../hubbub.db",
        "/../hubbub.db.txt",
        "/./../secret.txt",
        "/js/..%00/../secret.txt",
        "/secret.txt%00.html",
    ];
    for p in attempts {
        let r = http_raw(
            s.addr,
            format!("GET {p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{p}: no response ({e})"));
        let body = r.text();
        assert!(
            !body.contains(SECRET) && !body.contains("root:x:0"),
            "{p} leaked a file: {} {body}",
            r.status
        );
        assert!(!body.contains("SQLite format"), "{p} leaked the database");
        assert!(
            r.status == 400 || r.status == 404,
            "{p}: status {} (expected 400 or 404)",
            r.status
        );
    }
    for raw in [
        "GET ../secret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET secret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        if let Ok(r) = http_raw(s.addr, raw.as_bytes()) {
            assert!(!r.text().contains(SECRET), "{raw:?} leaked");
            assert!(r.status == 400 || r.status == 404, "{raw:?}: {}", r.status);
        }
    }
}

/// The web manifest is `application/manifest+json` and names what an installer
/// needs: a name, `standalone`, a start URL and PNG icons of 192 and 512 pixels
/// (plain and maskable), each served as `image/png`.
#[test]
fn manifest_names_an_installable_app() {
    let s = Server::start();
    let html = s.get("/", None).text();
    assert!(
        html.contains(r#"<link rel="manifest" href="manifest.webmanifest">"#),
        "index does not link the manifest"
    );
    let r = s.get("/manifest.webmanifest", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/manifest+json"));
    assert_security_headers(&r, "/manifest.webmanifest");
    let m: serde_json::Value = serde_json::from_str(&r.text()).expect("manifest is JSON");
    assert_eq!(m["name"], "hubbub");
    assert_eq!(m["display"], "standalone");
    assert_eq!(m["start_url"], "/");
    let mut sizes = Vec::new();
    for icon in m["icons"].as_array().expect("icons") {
        let src = icon["src"].as_str().unwrap();
        let got = s.get(src, None);
        assert_eq!(got.status, 200, "{src}");
        assert_eq!(got.header("content-type"), icon["type"].as_str(), "{src}");
        if icon["type"] == "image/png" {
            // The IHDR chunk: width and height, big-endian, at bytes 16..24.
            let b = &got.body;
            assert_eq!(&b[1..4], b"PNG", "{src}");
            let w = u32::from_be_bytes(b[16..20].try_into().unwrap());
            let h = u32::from_be_bytes(b[20..24].try_into().unwrap());
            assert_eq!(format!("{w}x{h}"), icon["sizes"].as_str().unwrap(), "{src}");
            sizes.push(format!("{w} {}", icon["purpose"].as_str().unwrap()));
        }
    }
    sizes.sort();
    assert_eq!(
        sizes,
        ["192 any", "192 maskable", "512 any", "512 maskable"]
    );
}

/// The service worker is served at the root (its scope is the whole client),
/// as JavaScript, `no-cache` (a browser checks it for a new version on every
/// load), stamped with the shell's version and every file it caches, each of
/// which is served.
#[test]
fn service_worker_is_stamped_and_fresh() {
    let s = Server::start();
    let r = s.get("/sw.js", None);
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .contains("javascript")
    );
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_security_headers(&r, "/sw.js");
    let text = r.text();
    let line = text
        .lines()
        .find(|l| l.starts_with("const SHELL = "))
        .expect("the SHELL line");
    assert!(!line.contains("unstamped"), "{line}");
    let version = line.split('\'').nth(1).unwrap();
    assert!(
        version.len() == 16 && version.bytes().all(|b| b.is_ascii_hexdigit()),
        "{line}"
    );
    let files: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
    for must in [
        "/index.html",
        "/app.css",
        "/js/main.js",
        "/manifest.webmanifest",
    ] {
        assert!(files.contains(&must), "{must} not in {line}");
    }
    assert!(
        !files.contains(&"/sw.js"),
        "the worker caches itself: {line}"
    );
    for f in files {
        assert_eq!(s.get(f, None).status, 200, "{f}");
    }
}

/// With `--static-dir`, the worker is stamped from the directory as it is on
/// disk, and an edited file gives it a new version (and a new ETag).
#[test]
fn static_dir_stamps_the_worker_afresh() {
    let d = site();
    let st = d.path().join("static");
    std::fs::write(
        st.join("sw.js"),
        "// worker\nconst SHELL = { version: 'unstamped', files: [] };\n",
    )
    .unwrap();
    let s = Server::builder()
        .arg("--static-dir")
        .arg(st.to_str().unwrap())
        .start_in(d.clone());
    let first = s.get("/sw.js", None);
    assert_eq!(first.status, 200);
    let line = |r: &Resp| r.text().lines().nth(1).unwrap().to_string();
    assert!(
        line(&first).ends_with(r#"files: ["/app.css", "/index.html", "/js/app.js"] };"#),
        "{}",
        line(&first)
    );
    std::fs::write(st.join("app.css"), "body{color:red}").unwrap();
    let second = s.get("/sw.js", None);
    assert_ne!(
        line(&first),
        line(&second),
        "an edit must change the version"
    );
    assert_ne!(first.header("etag"), second.header("etag"));
}
