//! The server's certificates and the rustls configuration built on them.
//!
//! One [`ServerConfig`] for the life of the process; it resolves the
//! certificate of every handshake through [`CertStore`], a slot that a
//! reload (SIGHUP: the `--tls-cert`/`--tls-key` files read again) or the
//! ACME thread (`acme.rs`) replaces. Connections already open keep the
//! keys they agreed on: a new certificate applies from the next handshake,
//! and nobody is disconnected. The slot is read once per handshake, never
//! per message, so a lock there costs nothing on the hot path.
//!
//! Crypto is rustls with *ring*, the provider the JWT code already uses;
//! PEM is read with `rustls-pki-types`.

pub mod acme;
pub mod services;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificate handshakes are answered with. Empty until ACME has
/// obtained one (a handshake before that fails with an alert).
#[derive(Debug, Default)]
pub struct CertStore {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl CertStore {
    pub fn set(&self, key: Arc<CertifiedKey>) {
        // A writer that panicked left a whole `Option` behind: take it.
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(key);
    }

    pub fn is_empty(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // One certificate carries every name (`--tls-domain` orders one
        // certificate for all of them): SNI does not choose.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The provider everything here uses. rustls now steers towards aws-lc-rs
/// for its post-quantum key exchange; *ring* is kept because it is already
/// here (JWTs, PBKDF2) and builds without cmake, and X25519 is what
/// browsers negotiate with it.
///
/// Key exchange X25519 first: rustls's *ring* defaults now list P-384
/// first, which a rustls client then offers and a server picks, and
/// *ring*'s P-384 is generic bignum code: measured, it made a handshake
/// cost about 0.8 ms of server CPU, against about 0.25 ms with X25519
/// (BENCHMARKS.md, TLS).
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::{cipher_suite, kx_group};
    let mut p = rustls::crypto::ring::default_provider();
    p.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    // AES-128-GCM first, as browsers offer it: 10 AES rounds instead of
    // 14 on every byte of a broadcast, each encrypted once per recipient.
    p.cipher_suites
        .sort_by_key(|s| s.suite() != cipher_suite::TLS13_AES_128_GCM_SHA256.suite());
    Arc::new(p)
}

/// The server side of TLS: the configuration every connection's session
/// is made from, its certificate slot, and where the certificate came from.
pub struct Acceptor {
    config: Arc<ServerConfig>,
    store: Arc<CertStore>,
    /// `--tls-cert` and `--tls-key`, read again on reload; `None` when ACME
    /// keeps the slot filled.
    files: Option<(PathBuf, PathBuf)>,
}

impl Acceptor {
    /// TLS with the certificate chain and key in these PEM files. The
    /// error names the file at fault and what is wrong with it.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Acceptor, String> {
        let store = Arc::new(CertStore::default());
        store.set(load_pem(cert, key)?);
        let mut acceptor = Acceptor::with_store(store)?;
        acceptor.files = Some((cert.to_path_buf(), key.to_path_buf()));
        Ok(acceptor)
    }

    /// TLS answered from `store`, which someone else fills (ACME).
    pub fn with_store(store: Arc<CertStore>) -> Result<Acceptor, String> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(store.clone());
        // The server speaks HTTP/1.1 only; saying so keeps a browser that
        // offers h2 on HTTP/1.1 instead of failing.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Acceptor {
            config: Arc::new(config),
            store,
            files: None,
        })
    }

    /// A fresh server session for one accepted connection.
    pub fn session(&self) -> Result<rustls::ServerConnection, rustls::Error> {
        rustls::ServerConnection::new(self.config.clone())
    }

    /// SIGHUP: reads the certificate files again. A file that does not
    /// load leaves the current certificate in place (and says why).
    pub fn reload(&self) {
        let Some((cert, key)) = &self.files else {
            return;
        };
        match load_pem(cert, key) {
            Ok(k) => {
                self.store.set(k);
                log::info!("TLS: reloaded {} and {}", cert.display(), key.display());
            }
            Err(e) => log::error!("TLS: reload failed, keeping the old certificate: {e}"),
        }
    }
}

/// A TLS client configuration for the services the server connects to
/// (`rediss://`, PostgreSQL with `sslmode=require`): trusting the CA
/// certificates in the PEM file `ca`, or the system's roots without one.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|c| c.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{}: {}", path.display(), pem_error(e)))?;
            if certs.is_empty() {
                return Err(format!("{}: no certificate in it", path.display()));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(
                    "no CA certificates found on this system; name one with the CA file option"
                        .into(),
                );
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A certificate chain and its private key from PEM files, checked to
/// belong together.
pub fn load_pem(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {}", cert.display(), pem_error(e)))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in it", cert.display()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{}: {}", key.display(), pem_error(e)))?;
    certified_key(chain, key_der).map_err(|e| {
        format!(
            "{} and {} do not make a certificate: {e}",
            cert.display(),
            key.display()
        )
    })
}

/// A chain and a key as rustls's signing key, checked to match.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, rustls::Error> {
    CertifiedKey::from_der(chain, key, &provider()).map(Arc::new)
}

fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => e.to_string(),
        Error::NoItemsFound => "no PEM item of the expected kind in it".into(),
        other => format!("not valid PEM ({other:?})"),
    }
}
