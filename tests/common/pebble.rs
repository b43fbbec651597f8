//! Debian's `pebble` ACME test server on loopback, with
//! `pebble-challtestsrv` as its DNS (every name resolves to 127.0.0.1), so
//! an HTTP-01 validation of any name reaches the hubbub under test. Pebble's
//! own HTTPS certificate comes from a CA made at test time; its issuing
//! root is read from its management interface.

use std::fs;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::TempDir;
use super::services::free_port;
use super::tls::{self, TestCa};

pub struct Pebble {
    dir: TempDir,
    ca: TestCa,
    pebble: Child,
    dns: Child,
    port: u16,
    management: u16,
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on `http_port` (where hubbub's
    /// `--http-addr` listens). `None` when pebble is not installed.
    pub fn start(http_port: u16) -> Option<Pebble> {
        if !Path::new("/usr/bin/pebble").exists() {
            eprintln!("skipped: /usr/bin/pebble is not installed (apt-get install pebble)");
            return None;
        }
        let dir = TempDir::new("pebble");
        let ca = TestCa::new("pebble");
        let (cert, key) = ca.write_server_files(dir.path());
        let (port, management, dns_port, dns_mgmt) =
            (free_port(), free_port(), free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert,
            "privateKey": key,
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        let config_path = dir.path().join("pebble.json");
        fs::write(&config_path, config.to_string()).unwrap();
        let log = |name: &str| fs::File::create(dir.path().join(name)).unwrap();
        let dns = Command::new("/usr/bin/pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{dns_mgmt}")])
            .stdin(Stdio::null())
            .stdout(log("dns.log"))
            .stderr(log("dns.err"))
            .spawn()
            .expect("spawn pebble-challtestsrv");
        let pebble = Command::new("/usr/bin/pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            // No random sleeps before validations, no nonces refused on purpose.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdin(Stdio::null())
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("spawn pebble");
        let p = Pebble {
            dir,
            ca,
            pebble,
            dns,
            port,
            management,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while p.get(p.management, "/roots/0").is_none() {
            assert!(
                Instant::now() < deadline,
                "pebble did not start: {}",
                p.logs()
            );
            thread::sleep(Duration::from_millis(100));
        }
        Some(p)
    }

    /// The ACME directory URL.
    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// The CA of pebble's own HTTPS (hubbub's `--acme-ca`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The root pebble issues certificates under.
    pub fn issuing_root(&self) -> CertificateDer<'static> {
        let pem = self
            .get(self.management, "/roots/0")
            .expect("pebble's root");
        CertificateDer::from_pem_slice(&pem).expect("a PEM root")
    }

    pub fn logs(&self) -> String {
        ["pebble.log", "pebble.err", "dns.err"]
            .iter()
            .map(|f| fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A GET over pebble's HTTPS; the body of a 200.
    fn get(&self, port: u16, path: &str) -> Option<Vec<u8>> {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut s = tls::connect(addr, "localhost", &self.ca.client_config()).ok()?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .ok()?;
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let text = String::from_utf8(raw).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200")
            .then(|| body.as_bytes().to_vec())
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in [&mut self.pebble, &mut self.dns] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
