//! `--tls-domain` end to end against Debian's `pebble` ACME test server on
//! loopback: the server orders a certificate (HTTP-01 answered on its
//! plain listener), serves it on its TLS port, keeps it in `--acme-cache`,
//! and after a restart serves the cached one at once, without the CA.
//! Skipped, saying so, where pebble is not installed (`.ci/run` installs it).

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pebble::Pebble;
use common::services::free_port;
use common::tls;
use common::*;

const DOMAIN: &str = "chat.hubbub.test";

/// `GET /healthz` over TLS to `DOMAIN`, verified against `config`'s roots.
fn healthz(s: &Server, config: &Arc<rustls::ClientConfig>) -> std::io::Result<String> {
    let mut c = tls::connect(s.addr, DOMAIN, config)?;
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: chat.hubbub.test\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    match c.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e),
    }
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

/// The certificate comes from pebble by itself, chains to pebble's root,
/// is cached (key 0600), and a restart serves it from the cache with
/// pebble gone.
#[test]
fn obtains_a_certificate_by_acme_and_serves_it_from_the_cache() {
    let plain_port = free_port();
    let Some(pebble) = Pebble::start(plain_port) else {
        return;
    };
    let dir = Arc::new(TempDir::new("acme"));
    let cache = dir.path().join("acme-cache");
    let mut s = Server::builder()
        .arg("--tls-domain")
        .arg(DOMAIN)
        .arg("--http-addr")
        .arg(format!("127.0.0.1:{plain_port}"))
        .arg("--acme-directory")
        .arg(pebble.directory())
        .arg("--acme-ca")
        .arg(pebble.ca_file().to_str().unwrap())
        .arg("--acme-cache")
        .arg(cache.to_str().unwrap())
        .start_in(dir);
    let config = tls::client_config(&[pebble.issuing_root()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = loop {
        match healthz(&s, &config) {
            Ok(a) => break a,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no certificate from pebble within 60 s ({e}):\n{}\n--- pebble:\n{}",
                    s.logs(),
                    pebble.logs()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
    for f in ["account.json", "cert.pem", "key.pem", "names"] {
        let meta = std::fs::metadata(cache.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{f}");
    }
    assert!(
        s.logs()
            .contains("acme: certificate for chat.hubbub.test installed")
    );

    // Without the CA, a restart serves what the cache holds at once.
    drop(pebble);
    s.restart();
    let answer = healthz(&s, &config).expect("the cached certificate is served at once");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        s.logs().contains("serving the cached certificate"),
        "{}",
        s.logs()
    );
}
