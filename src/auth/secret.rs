//! Where the HS256 secret comes from: `HUBBUB_JWT_SECRET`, or one generated
//! once from the system CSPRNG and kept in storage, so tokens survive a
//! restart without the operator having to make one up.
//!
//! A configured secret shorter than [`JWT_SECRET_MIN`] bytes is refused at
//! start: anyone holding one token can test candidate secrets offline at
//! billions of HMACs a second, so a short one is a matter of hours.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};

use crate::config::JWT_SECRET_MIN;
use crate::store::{Backend, StoreError};

/// The settings key of a generated secret.
const SETTING: &str = "jwt_secret";
/// Bytes of a generated secret: HMAC-SHA256's block-size-independent strength.
const GENERATED_BYTES: usize = 32;

/// Why there is no secret to sign with.
#[derive(Debug)]
pub enum SecretError {
    /// `HUBBUB_JWT_SECRET` is this many bytes, under [`JWT_SECRET_MIN`].
    TooShort(usize),
    /// The stored secret could not be read or a new one kept.
    Store(StoreError),
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::TooShort(n) => write!(
                f,
                "HUBBUB_JWT_SECRET is {n} bytes; at least {JWT_SECRET_MIN} are needed \
                 (a short HS256 secret can be brute-forced from any token). \
                 Generate one with `openssl rand -base64 48`, or unset it to have \
                 one generated and kept in the database"
            ),
            SecretError::Store(e) => write!(f, "token secret: {e}"),
        }
    }
}

impl std::error::Error for SecretError {}

impl From<StoreError> for SecretError {
    fn from(e: StoreError) -> SecretError {
        SecretError::Store(e)
    }
}

/// The configured secret, else the stored one, else a new one (stored before
/// it is used, so no token is ever signed with a secret that could be lost).
pub fn load_or_create(
    configured: Option<&[u8]>,
    backend: &mut impl Backend,
) -> Result<Vec<u8>, SecretError> {
    if let Some(s) = configured {
        if s.len() < JWT_SECRET_MIN {
            return Err(SecretError::TooShort(s.len()));
        }
        return Ok(s.to_vec());
    }
    if let Some(s) = backend.setting(SETTING)? {
        return Ok(s);
    }
    let mut secret = vec![0u8; GENERATED_BYTES];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| StoreError::request("no system random source"))?;
    backend.put_setting(SETTING, &secret)?;
    // Read back: on a database shared by a cluster, another node starting
    // at the same moment may have stored its secret first, and a backend
    // shared like that keeps the first one (`Backend::put_setting`).
    Ok(backend.setting(SETTING)?.unwrap_or(secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::Sqlite;

    /// A generated secret is kept and found again; a configured one wins.
    #[test]
    fn generated_once_then_reused() {
        let mut db = Sqlite::open_in_memory().unwrap();
        let first = load_or_create(None, &mut db).unwrap();
        assert_eq!(first.len(), GENERATED_BYTES);
        assert_eq!(load_or_create(None, &mut db).unwrap(), first);
        let mine = [7u8; JWT_SECRET_MIN];
        assert_eq!(load_or_create(Some(&mine), &mut db).unwrap(), mine);
    }

    /// A configured secret one byte short of the minimum is refused, with
    /// a message that names the variable and the minimum.
    #[test]
    fn short_configured_secret_is_refused() {
        let mut db = Sqlite::open_in_memory().unwrap();
        let short = [7u8; JWT_SECRET_MIN - 1];
        let e = load_or_create(Some(&short), &mut db).unwrap_err();
        assert!(matches!(e, SecretError::TooShort(n) if n == JWT_SECRET_MIN - 1));
        let text = e.to_string();
        assert!(
            text.starts_with("HUBBUB_JWT_SECRET is 31 bytes; at least 32"),
            "{text}"
        );
    }
}
