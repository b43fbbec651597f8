//! Tokens: HS256 JWTs with claims `sub` (user id as a string), `name`, `iat`,
//! `exp`, and `sid`, the server-side session the token belongs to (its
//! revocation is `auth::sessions`' business). Only HS256 is accepted:
//! `alg: none`, other algorithms, a bad signature, an expired token or a
//! malformed `sid` all fail [`Tokens::verify`]. A token without `sid` (one
//! issued before sessions existed) verifies; the caller decides what it
//! belongs to.
//!
//! jsonwebtoken parses and validates; the HMAC itself comes from ring through
//! a small `CryptoProvider` below, so the binary carries one crypto library
//! (ring, already here for PBKDF2) instead of a second one for ~40 lines.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::config::TOKEN_TTL;
use crate::store::{Sid, UserId};

/// The claims the contract names, nothing more.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    name: String,
    iat: u64,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
}

/// A token that passed every check. No name: callers look the user up in
/// the user directory, which owns names, so the `name` claim is not kept.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub user: UserId,
    /// `None` for a token issued before sessions existed.
    pub sid: Option<Sid>,
    /// When it was issued (Unix seconds).
    pub iat: u64,
    /// When it expires (Unix seconds).
    pub exp: u64,
}

/// Issues and checks tokens with one secret.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Tokens {
    pub fn new(secret: &[u8]) -> Tokens {
        install_ring_provider();
        let mut validation = Validation::new(Algorithm::HS256);
        // The contract's 24 h is exact: no grace period after `exp`.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// When a token issued at `now_secs` expires (Unix seconds).
    pub fn expiry(now_secs: u64) -> u64 {
        now_secs + TOKEN_TTL.as_secs()
    }

    /// A token of session `sid` for `user`, and its expiry in Unix seconds.
    pub fn issue(&self, user: UserId, name: &str, sid: Sid, now_secs: u64) -> (String, u64) {
        let exp = Tokens::expiry(now_secs);
        let claims = Claims {
            sub: user.to_string(),
            name: name.to_string(),
            iat: now_secs,
            exp,
            sid: Some(sid.to_string()),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with an in-memory key cannot fail");
        (token, exp)
    }

    /// Checks signature, algorithm and expiry. Whether the user still exists
    /// is the caller's question (it owns the user directory).
    pub fn verify(&self, token: &str) -> Option<Verified> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        let c = data.claims;
        let user = c.sub.parse().ok()?;
        let sid = match c.sid {
            None => None,
            Some(s) => Some(Sid::parse(&s)?),
        };
        Some(Verified {
            user,
            sid,
            iat: c.iat,
            exp: c.exp,
        })
    }
}

/// HMAC-SHA256 from ring, for both directions.
struct RingHs256(hmac::Key);

impl Signer<Vec<u8>> for RingHs256 {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(hmac::sign(&self.0, msg).as_ref().to_vec())
    }
}

impl Verifier<Vec<u8>> for RingHs256 {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        hmac::verify(&self.0, msg, sig).map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for RingHs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for RingHs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

fn new_signer(
    alg: &Algorithm,
    key: &EncodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    if *alg != Algorithm::HS256 {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(Box::new(RingHs256(hmac::Key::new(
        hmac::HMAC_SHA256,
        key.as_bytes(),
    ))))
}

fn new_verifier(
    alg: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    if *alg != Algorithm::HS256 {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(Box::new(RingHs256(hmac::Key::new(
        hmac::HMAC_SHA256,
        key.try_get_as_bytes()?,
    ))))
}

static RING_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

/// Installs the provider process-wide; later calls are no-ops.
fn install_ring_provider() {
    // Err only means it is installed already (another `Tokens` or a test).
    let _ = RING_PROVIDER.install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    fn now() -> u64 {
        crate::clock::now_ms() as u64 / 1000
    }

    const SID: Sid = Sid(0xfeed);

    /// A fresh token verifies to its user and session and carries the
    /// contract's claims, the name included.
    #[test]
    fn issued_token_verifies() {
        let t = Tokens::new(b"secret");
        let (token, exp) = t.issue(7, "alice", SID, now());
        assert_eq!(exp, now() + 86_400);
        let v = t.verify(&token).unwrap();
        assert_eq!((v.user, v.sid, v.exp), (7, Some(SID), exp));
        let claims = jsonwebtoken::decode::<Claims>(&token, &t.decoding, &t.validation)
            .unwrap()
            .claims;
        assert_eq!((&*claims.sub, &*claims.name), ("7", "alice"));
        assert_eq!(
            claims.sid.as_deref(),
            Some("0000000000000000000000000000feed")
        );
        assert_eq!(claims.exp - claims.iat, TOKEN_TTL.as_secs());
    }

    /// A token without `sid` verifies with none; one with a `sid` that is
    /// not 32 hex digits does not verify at all.
    #[test]
    fn sid_is_optional_but_never_malformed() {
        let t = Tokens::new(b"secret");
        let sign = |sid: Option<&str>| {
            let claims = Claims {
                sub: "7".into(),
                name: "alice".into(),
                iat: now(),
                exp: now() + 60,
                sid: sid.map(String::from),
            };
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &t.encoding).unwrap()
        };
        assert_eq!(t.verify(&sign(None)).unwrap().sid, None);
        assert_eq!(t.verify(&sign(Some("xyz"))), None);
        assert_eq!(
            t.verify(&sign(Some(&SID.to_string()))).unwrap().sid,
            Some(SID)
        );
    }

    /// Another secret's signature, an expired token and `alg: none` are refused.
    #[test]
    fn refuses_bad_tokens() {
        let t = Tokens::new(b"secret");
        let (other, _) = Tokens::new(b"other").issue(7, "alice", SID, now());
        assert_eq!(t.verify(&other), None);
        let (old, _) = t.issue(7, "alice", SID, now() - 86_401);
        assert_eq!(t.verify(&old), None);
        let claims = format!(
            r#"{{"sub":"7","name":"alice","iat":{},"exp":{}}}"#,
            now(),
            now() + 60
        );
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(claims.as_bytes())
        );
        assert_eq!(t.verify(&none), None);
        let hs512 = format!(
            "{}.{}.AAAA",
            b64(br#"{"alg":"HS512","typ":"JWT"}"#),
            b64(claims.as_bytes())
        );
        assert_eq!(t.verify(&hs512), None);
        assert_eq!(t.verify("not a token"), None);
    }
}
