//! Where the HS256 secret comes from: `HUBBUB_JWT_SECRET`, or one generated
//! once from the system CSPRNG and kept in storage, so tokens survive a
//! restart without the operator having to make one up.

use ring::rand::{SecureRandom, SystemRandom};

use crate::store::{Backend, StoreError};

/// The settings key of a generated secret.
const SETTING: &str = "jwt_secret";
/// Bytes of a generated secret: HMAC-SHA256's block-size-independent strength.
const GENERATED_BYTES: usize = 32;

/// The configured secret, else the stored one, else a new one (stored before
/// it is used, so no token is ever signed with a secret that could be lost).
pub fn load_or_create(
    configured: Option<&[u8]>,
    backend: &mut impl Backend,
) -> Result<Vec<u8>, StoreError> {
    if let Some(s) = configured {
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
    Ok(secret)
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
        assert_eq!(load_or_create(Some(b"mine"), &mut db).unwrap(), b"mine");
    }
}
