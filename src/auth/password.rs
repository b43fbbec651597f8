//! PBKDF2-HMAC-SHA256 with a random 16-byte salt per user; the iteration count
//! is stored beside the hash so the default can rise without breaking logins.
//! Pure functions: the pool in `pool.rs` decides which thread runs them.

use std::num::NonZeroU32;

use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};

use crate::store::PasswordHash;

const ALGORITHM: pbkdf2::Algorithm = pbkdf2::PBKDF2_HMAC_SHA256;

/// Hashes a new password with a fresh salt.
pub fn hash(password: &str, iterations: u32) -> PasswordHash {
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .expect("system random source");
    let mut hash = [0u8; 32];
    pbkdf2::derive(
        ALGORITHM,
        iterations_nz(iterations),
        &salt,
        password.as_bytes(),
        &mut hash,
    );
    PasswordHash {
        iterations,
        salt,
        hash,
    }
}

/// Checks a password in constant time (ring compares the derived bytes).
pub fn verify(password: &str, stored: &PasswordHash) -> bool {
    pbkdf2::verify(
        ALGORITHM,
        iterations_nz(stored.iterations),
        &stored.salt,
        password.as_bytes(),
        &stored.hash,
    )
    .is_ok()
}

/// A hash no password matches, costing the same work as a real one: logins for
/// unknown users verify against it so they take as long as a wrong password.
pub fn decoy(iterations: u32) -> PasswordHash {
    let mut salt = [0u8; 16];
    let mut hash = [0u8; 32];
    let rng = SystemRandom::new();
    rng.fill(&mut salt).expect("system random source");
    rng.fill(&mut hash).expect("system random source");
    PasswordHash {
        iterations,
        salt,
        hash,
    }
}

fn iterations_nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).expect("max(1) is non-zero")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The right password verifies, a wrong one and the decoy do not, and two
    /// hashes of one password differ by salt.
    #[test]
    fn hash_and_verify() {
        let h = hash("correct horse", 1000);
        assert!(verify("correct horse", &h));
        assert!(!verify("correct horsf", &h));
        assert!(!verify("correct horse", &decoy(1000)));
        assert_ne!(hash("correct horse", 1000).salt, h.salt);
        assert_eq!(h.iterations, 1000);
    }
}
