//! The server's VAPID identity (RFC 8292): one P-256 key pair that every
//! push is signed with, and that browsers bind their subscriptions to (the
//! web client subscribes with the public key from `GET /api/push/key`).
//!
//! Kept like the token secret (`auth::secret`): `HUBBUB_VAPID_PRIVATE_KEY`,
//! or one generated once from the system CSPRNG and stored before it is
//! used, so subscriptions survive a restart; in a cluster every node reads
//! the one stored first. A new key would orphan every subscription (push
//! services refuse pushes signed by another key), so it is never rotated
//! behind the operator's back.
//!
//! The token is a JWT with `aud` (the push service's origin), `exp` and
//! `sub` (`--push-contact`), signed ES256 by ring, as the password hashing
//! and the token secret are: three base64url parts need no JWT library,
//! and jsonwebtoken (here for HS256) would need an ES256 provider and key
//! glue for the same three lines. The payload encryption is
//! web-push-native's (`message.rs`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

use crate::store::{Backend, StoreError, UserId};

/// The settings key of a generated private key.
const SETTING: &str = "vapid_private_key";

/// The key pair, and what is derived from it.
pub struct Vapid {
    pair: EcdsaKeyPair,
    /// The uncompressed public point, as browsers take it.
    public: [u8; 65],
    /// Names conversations in the `Topic` header without saying which.
    topics: hmac::Key,
    rng: SystemRandom,
}

impl Vapid {
    /// The pair of a 32-byte private scalar; `Err` when it is not one
    /// (zero, or not below the group order).
    pub fn from_private(private: &[u8]) -> Result<Vapid, String> {
        let secret = p256::SecretKey::from_slice(private)
            .map_err(|_| "not a P-256 private key".to_string())?;
        let point = secret.public_key().to_encoded_point(false);
        let public: [u8; 65] = point
            .as_bytes()
            .try_into()
            .map_err(|_| "P-256 gave a point of an unexpected size".to_string())?;
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            private,
            &public,
            &rng,
        )
        .map_err(|e| format!("ring refused the VAPID key: {e}"))?;
        // Its own key, not the private scalar: what HMAC leaks nothing of
        // is still better kept apart.
        let mut tag = [0u8; 32];
        let digest = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, private),
            b"hubbub push topic",
        );
        tag.copy_from_slice(digest.as_ref());
        Ok(Vapid {
            pair,
            public,
            topics: hmac::Key::new(hmac::HMAC_SHA256, &tag),
            rng,
        })
    }

    /// The public key, base64url without padding (`GET /api/push/key`,
    /// the `k=` of every `Authorization`).
    pub fn public_key(&self) -> String {
        B64.encode(self.public)
    }

    /// A signed token for the push service at `audience`
    /// (`scheme://host[:port]`) that expires at `exp` (Unix seconds).
    pub fn token(&self, audience: &str, exp: u64, contact: &str) -> String {
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            aud: &'a str,
            exp: u64,
            sub: &'a str,
        }
        let claims = serde_json::to_vec(&Claims {
            aud: audience,
            exp,
            sub: contact,
        })
        .expect("three plain fields serialize");
        let mut signed = String::with_capacity(256);
        signed.push_str(&B64.encode(br#"{"typ":"JWT","alg":"ES256"}"#));
        signed.push('.');
        signed.push_str(&B64.encode(claims));
        let signature = self
            .pair
            .sign(&self.rng, signed.as_bytes())
            .expect("ECDSA signing with a valid key and the system CSPRNG succeeds");
        signed.push('.');
        signed.push_str(&B64.encode(signature.as_ref()));
        signed
    }

    /// The `Authorization` header of a push to `audience`.
    pub fn authorization(&self, token: &str) -> String {
        format!("vapid t={token}, k={}", self.public_key())
    }

    /// The `Topic` of `user`'s pushes about conversation `key`: a push
    /// service keeps only the newest push of a topic for a device that is
    /// off, so a busy conversation is one push waiting, not fifty. The
    /// header travels in the clear to the push service, so it is a keyed
    /// hash (22 base64url characters, within RFC 8030's 32), not the name.
    pub fn topic(&self, user: UserId, key: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.topics);
        ctx.update(&user.to_be_bytes());
        ctx.update(key.as_bytes());
        B64.encode(&ctx.sign().as_ref()[..16])
    }
}

/// The configured key, else the stored one, else a new one (stored before
/// it is used, and read back: on a shared database another node starting
/// at the same moment may have stored its own first).
pub fn load_or_create(
    configured: Option<&[u8]>,
    backend: &mut impl Backend,
) -> Result<Vapid, String> {
    let store = |e: StoreError| format!("VAPID key: {e}");
    if let Some(key) = configured {
        return Vapid::from_private(key).map_err(|e| format!("HUBBUB_VAPID_PRIVATE_KEY: {e}"));
    }
    if let Some(key) = backend.setting(SETTING).map_err(store)? {
        return Vapid::from_private(&key).map_err(|e| format!("the stored VAPID key: {e}"));
    }
    let rng = SystemRandom::new();
    let mut key = [0u8; 32];
    // A random 32 bytes is a valid scalar but with odds of about 2^-32.
    loop {
        rng.fill(&mut key)
            .map_err(|_| "no system random source".to_string())?;
        if p256::SecretKey::from_slice(&key).is_ok() {
            break;
        }
    }
    backend.put_setting(SETTING, &key).map_err(store)?;
    let key = backend
        .setting(SETTING)
        .map_err(store)?
        .unwrap_or(key.to_vec());
    Vapid::from_private(&key).map_err(|e| format!("the stored VAPID key: {e}"))
}

#[cfg(test)]
mod tests {
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    use super::*;
    use crate::store::sqlite::Sqlite;

    /// A generated key is stored and found again, so subscriptions survive
    /// a restart; a configured key wins; a key that is no scalar is refused.
    #[test]
    fn generated_once_then_reused() {
        let mut db = Sqlite::open_in_memory().unwrap();
        let first = load_or_create(None, &mut db).unwrap().public_key();
        assert_eq!(first.len(), 87, "65 bytes in base64url");
        assert_eq!(load_or_create(None, &mut db).unwrap().public_key(), first);
        let mine = [7u8; 32];
        let configured = load_or_create(Some(&mine), &mut db).unwrap();
        assert_ne!(configured.public_key(), first);
        assert!(load_or_create(Some(&[0u8; 32]), &mut db).is_err());
        assert!(load_or_create(Some(&[0xffu8; 32]), &mut db).is_err());
    }

    /// The token is an ES256 JWT that verifies with the public key the
    /// server publishes, with the audience, expiry and contact it was
    /// asked for: what a push service checks (RFC 8292 §2-3).
    #[test]
    fn token_verifies_with_the_published_key() {
        let vapid = Vapid::from_private(&[9u8; 32]).unwrap();
        let token = vapid.token("https://push.example.net", 1_700_000_000, "mailto:a@b.c");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, serde_json::json!({"typ": "JWT", "alg": "ES256"}));
        let claims: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({"aud": "https://push.example.net", "exp": 1_700_000_000u64, "sub": "mailto:a@b.c"})
        );
        let public = B64.decode(vapid.public_key()).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        let signature = B64.decode(parts[2]).unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public)
            .verify(signed.as_bytes(), &signature)
            .expect("the signature verifies");
        let other = Vapid::from_private(&[8u8; 32]).unwrap();
        let other_public = B64.decode(other.public_key()).unwrap();
        assert!(
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &other_public)
                .verify(signed.as_bytes(), &signature)
                .is_err()
        );
        assert_eq!(
            vapid.authorization(&token),
            format!("vapid t={token}, k={}", vapid.public_key())
        );
    }

    /// Topics are fixed per user and conversation, differ between them,
    /// and name neither.
    #[test]
    fn topics_are_opaque_and_stable() {
        let vapid = Vapid::from_private(&[9u8; 32]).unwrap();
        let t = vapid.topic(1, "#general");
        assert_eq!(t, vapid.topic(1, "#general"));
        assert_ne!(t, vapid.topic(2, "#general"));
        assert_ne!(t, vapid.topic(1, "#random"));
        assert_eq!(t.len(), 22);
        assert!(!t.contains("general"));
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }
}
