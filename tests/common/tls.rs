//! TLS for the end-to-end tests: a CA made at test time (rcgen), the
//! certificates it issues, and blocking HTTPS and WSS clients (rustls over
//! a std `TcpStream`, tungstenite on top) that trust only that CA.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tungstenite::WebSocket;
use tungstenite::client::IntoClientRequest;

use super::{Resp, WAIT};

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A certificate authority for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("hubbub test CA {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `names` (DNS names or IP addresses):
    /// (chain PEM, key PEM).
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes `cert.pem`, `key.pem` (for localhost and 127.0.0.1) and
    /// `ca.pem` into `dir`; returns the first two paths.
    pub fn write_server_files(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = self.issue(&["localhost", "127.0.0.1"]);
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        std::fs::write(dir.join("ca.pem"), &self.pem).unwrap();
        (c, k)
    }

    /// A client configuration that trusts this CA alone.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        client_config(std::slice::from_ref(&self.der))
    }
}

/// A client that trusts exactly `roots`.
pub fn client_config(roots: &[CertificateDer<'static>]) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let provider = Arc::new(hubbub::tls::provider().as_ref().clone());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth(),
    )
}

/// A TLS connection to `addr` for `name`, handshake done.
pub fn connect(addr: SocketAddr, name: &str, config: &Arc<ClientConfig>) -> io::Result<TlsStream> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(WAIT))?;
    tcp.set_nodelay(true)?;
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    let conn = ClientConnection::new(config.clone(), server_name).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// The end-entity certificate the server presented.
pub fn peer_certificate(s: &TlsStream) -> Vec<u8> {
    s.conn.peer_certificates().expect("handshake done")[0].to_vec()
}

/// One HTTP/1.1 request over a fresh TLS connection (`Connection: close`).
pub fn https(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Resp {
    let mut s = connect(addr, "localhost", config).expect("TLS connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    s.write_all(req.as_bytes()).unwrap();
    s.flush().unwrap();
    let mut raw = Vec::new();
    // The server closes after the response; a peer that closes without
    // close_notify is an `UnexpectedEof`, also the end.
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
        Err(e) => panic!("reading the response: {e}"),
    }
    parse_response(&raw)
}

/// A whole response read to the end of the stream: status, headers, body.
fn parse_response(raw: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: body.as_bytes().to_vec(),
    }
}

/// A WebSocket over TLS to `wss://localhost{path}`.
pub fn wss(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    path: &str,
) -> Result<WebSocket<TlsStream>, String> {
    let stream = connect(addr, "localhost", config).map_err(|e| e.to_string())?;
    let req = format!("wss://localhost:{}{path}", addr.port())
        .into_client_request()
        .unwrap();
    tungstenite::client::client(req, stream)
        .map(|(ws, _)| ws)
        .map_err(|e| format!("{e:?}"))
}

/// The next text frame as JSON (pings skipped), within `within`.
pub fn recv_json(ws: &mut WebSocket<TlsStream>, within: Duration) -> serde_json::Value {
    ws.get_mut().sock.set_read_timeout(Some(within)).unwrap();
    loop {
        match ws.read().expect("a frame") {
            tungstenite::Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Frames until one of type `ty`.
pub fn expect_json(ws: &mut WebSocket<TlsStream>, ty: &str) -> serde_json::Value {
    loop {
        let v = recv_json(ws, WAIT);
        if v["type"] == ty {
            return v;
        }
    }
}
