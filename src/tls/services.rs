//! TLS to the services the server connects to: PostgreSQL with
//! `sslmode=require` (or libpq's `verify-ca`/`verify-full`) and Redis with
//! `rediss://` (`redis.rs` uses [`super::client_config`] directly).
//!
//! PostgreSQL's client is `tokio-postgres` under `postgres`, whose TLS
//! comes from a connector; `tokio-postgres-rustls` is that connector over
//! the same rustls and *ring*. The CA (`--postgres-ca`) is set once at
//! start, before the storage threads exist, and read by every connect:
//! configuration, not live state, kept here so the backend's connect path
//! changes in one line.
//!
//! The certificate is always verified, name included: `require` here is
//! libpq's `verify-full` (libpq's `require` would accept any certificate,
//! which a man in the middle also has). `prefer`, the default, connects
//! without TLS, as before.

use std::borrow::Cow;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use postgres::config::SslMode;
use postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The roots PostgreSQL's certificate is checked against.
static POSTGRES_TLS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// Sets the CA for PostgreSQL's TLS (`--postgres-ca`; the system's roots
/// when `None`). Called once at start; the error names the file.
pub fn use_postgres_ca(ca: Option<&Path>) -> Result<(), String> {
    let config = super::client_config(ca)?;
    // A second call (tests in one process) keeps the first.
    let _ = POSTGRES_TLS.set(config);
    Ok(())
}

/// A PostgreSQL URL or key=value string with libpq's `sslmode=verify-ca`
/// and `verify-full`, which `tokio-postgres` does not parse, as `require`
/// (which verifies as strictly).
pub fn postgres_url(url: &str) -> Cow<'_, str> {
    if url.contains("sslmode=verify-") {
        Cow::Owned(
            url.replace("sslmode=verify-full", "sslmode=require")
                .replace("sslmode=verify-ca", "sslmode=require"),
        )
    } else {
        Cow::Borrowed(url)
    }
}

/// Connects as `config` says: TLS when its `sslmode` is `require`.
pub fn connect_postgres(config: &Config) -> Result<Client, postgres::Error> {
    if config.get_ssl_mode() != SslMode::Require {
        return config.connect(NoTls);
    }
    let tls = match POSTGRES_TLS.get() {
        Some(c) => c.clone(),
        None => match super::client_config(None) {
            Ok(c) => POSTGRES_TLS.get_or_init(|| c).clone(),
            // No roots at all: the connect fails, saying why, in the TLS step.
            Err(_) => Arc::new(
                rustls::ClientConfig::builder_with_provider(super::provider())
                    .with_safe_default_protocol_versions()
                    .expect("the provider's defaults are consistent")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            ),
        },
    };
    config.connect(MakeRustlsConnect::new((*tls).clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libpq's verify modes become `require`; anything else is untouched.
    #[test]
    fn maps_libpq_verify_modes() {
        assert_eq!(
            postgres_url("postgres://u@h/db?sslmode=verify-full"),
            "postgres://u@h/db?sslmode=require"
        );
        assert_eq!(
            postgres_url("host=h sslmode=verify-ca user=u"),
            "host=h sslmode=require user=u"
        );
        assert!(matches!(
            postgres_url("postgres://u@h/db?sslmode=require"),
            Cow::Borrowed(_)
        ));
        let c: Config = postgres_url("postgres://u@h/db?sslmode=verify-full")
            .parse()
            .unwrap();
        assert_eq!(c.get_ssl_mode(), SslMode::Require);
    }
}
