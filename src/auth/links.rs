//! File links: a short-lived signature that stands in for the token on a
//! file or avatar URL (`?ft=`), so an `<img>`, a `<video>` or a download
//! link works without the bearer token, which must never sit in a URL
//! (proxy logs, history, a copied link).
//!
//! A link is `USER.EXPIRY.MAC`: the user it reads as, its expiry in Unix
//! seconds, and 128 bits of HMAC-SHA256 over both, keyed by a key derived
//! from the token secret for this use only. It grants nothing but reading
//! files as that user (who may still read only what they may read), and
//! stops working [`FILE_LINK_TTL`] after it was made: a copied URL goes
//! stale within minutes. It is no JWT, so it can never pass for a token.

use ring::hmac;

use crate::config::FILE_LINK_TTL;
use crate::store::UserId;

/// Bytes of the MAC kept (hex-encoded in the link).
const MAC_BYTES: usize = 16;

/// Makes and checks file links with one key.
pub struct FileLinks {
    key: hmac::Key,
}

impl FileLinks {
    /// The key is HMAC(secret, purpose): a link's MAC can never be a JWT
    /// signature's, and the secret itself is never used twice.
    pub fn new(secret: &[u8]) -> FileLinks {
        let parent = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derived = hmac::sign(&parent, b"hubbub file links v1");
        FileLinks {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
        }
    }

    fn mac(&self, user: UserId, exp: u64) -> String {
        let tag = hmac::sign(&self.key, format!("{user}.{exp}").as_bytes());
        tag.as_ref()[..MAC_BYTES]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A link for `user`, and its expiry in Unix seconds.
    pub fn issue(&self, user: UserId, now_secs: u64) -> (String, u64) {
        let exp = now_secs + FILE_LINK_TTL.as_secs();
        (format!("{user}.{exp}.{}", self.mac(user, exp)), exp)
    }

    /// The user a link reads as, if it is ours and has not expired.
    pub fn verify(&self, link: &str, now_secs: u64) -> Option<UserId> {
        let mut parts = link.split('.');
        let (user, exp, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || mac.len() != 2 * MAC_BYTES {
            return None;
        }
        let (user, exp): (UserId, u64) = (user.parse().ok()?, exp.parse().ok()?);
        if exp <= now_secs {
            return None;
        }
        let expected = self.mac(user, exp);
        // Constant time: the comparison must not say how much matched.
        let diff = expected
            .bytes()
            .zip(mac.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (diff == 0).then_some(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link reads as its user until it expires; another key's, a
    /// tampered one and junk read as nobody.
    #[test]
    fn links_verify_until_they_expire() {
        let links = FileLinks::new(b"secret");
        let (link, exp) = links.issue(42, 1000);
        assert_eq!(exp, 1000 + FILE_LINK_TTL.as_secs());
        assert_eq!(links.verify(&link, 1001), Some(42));
        assert_eq!(links.verify(&link, exp), None, "expired");
        assert_eq!(FileLinks::new(b"other").verify(&link, 1001), None);
        let other_user = link.replacen("42.", "43.", 1);
        assert_eq!(links.verify(&other_user, 1001), None);
        let later = link.replace(&exp.to_string(), &(exp + 9999).to_string());
        assert_eq!(links.verify(&later, 1001), None);
        for junk in ["", "42", "42.9999999999", "a.b.c", &format!("{link}.x")] {
            assert_eq!(links.verify(junk, 1001), None, "{junk}");
        }
    }
}
