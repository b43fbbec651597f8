//! What one push says, and the request that carries it.
//!
//! A [`Notice`] is the hub's decision: this user, this conversation, this
//! message (and how many it stands for). [`payload`] turns it into the JSON
//! the service worker shows, keeping to the user's choice: with "show
//! message text" off it says only that something came, and names neither
//! the sender nor the conversation (a locked phone's screen shows it to
//! whoever holds it). [`request`] encrypts that payload for one
//! subscription (RFC 8291 `aes128gcm`, by web-push-native, which builds the
//! request without doing I/O) and adds the headers a push service reads:
//! VAPID `Authorization`, `TTL`, `Urgency`, and an opaque `Topic`.

use serde::Serialize;
use ureq::http::{self, HeaderValue, Request};
use web_push_native::{Auth, WebPushBuilder};

use crate::config::PUSH_TTL;
use crate::store::{MsgId, PushSubscription, UserId};

/// Why a push to someone was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Their `@name` in a room message.
    Mention,
    /// A private message to them.
    Private,
}

/// One push for one user about one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub user: UserId,
    /// The web client's conversation key: `#room` or `@person`.
    pub key: String,
    pub reason: Reason,
    /// Who wrote the newest message.
    pub from: String,
    /// The newest message's text, cut to `PUSH_TEXT_CHARS`.
    pub text: String,
    pub id: MsgId,
    /// Messages this push stands for (more than one after pacing held some).
    pub count: u32,
}

/// The service worker's side of the payload (`static/sw.js`, `push`).
#[derive(Serialize)]
struct Shown<'a> {
    /// The conversation to open on a click, and to collapse into: `None`
    /// when the user hides what their pushes say.
    key: Option<&'a str>,
    title: &'a str,
    body: &'a str,
    id: Option<MsgId>,
    count: u32,
}

/// The notification for `notice`, as JSON bytes. `show_text` is the
/// user's setting: off, the payload is the same words whoever wrote what.
pub fn payload(notice: &Notice, show_text: bool) -> Vec<u8> {
    let title;
    let shown = if show_text {
        title = match notice.reason {
            Reason::Mention => format!("{} mentioned you in {}", notice.from, notice.key),
            Reason::Private => notice.from.clone(),
        };
        Shown {
            key: Some(&notice.key),
            title: &title,
            body: &notice.text,
            id: Some(notice.id),
            count: notice.count,
        }
    } else {
        Shown {
            key: None,
            title: "hubbub",
            body: "You have a new message",
            id: None,
            count: notice.count,
        }
    };
    serde_json::to_vec(&shown).expect("strings and numbers serialize")
}

/// How soon a push service should deliver a push (RFC 8030 §5.3). A chat
/// message is the RFC's own example of `normal`; `high` is for calls.
pub const URGENCY: &str = "normal";

/// Why a push request could not be built.
#[derive(Debug)]
pub enum Unbuildable {
    /// The stored endpoint is not a URL (the database is input too).
    Endpoint,
    /// The stored public key is not a point on P-256.
    Key,
    /// Encryption failed (a payload past the record size).
    Encrypt(String),
}

/// The encrypted POST of `payload` to one subscription, with `authorization`
/// (the VAPID header) and `topic`, kept by the service for [`PUSH_TTL`].
pub fn request(
    sub: &PushSubscription,
    payload: &[u8],
    authorization: &str,
    topic: &str,
) -> Result<Request<Vec<u8>>, Unbuildable> {
    let uri: http::Uri = sub.endpoint.parse().map_err(|_| Unbuildable::Endpoint)?;
    let key = p256::PublicKey::from_sec1_bytes(&sub.p256dh).map_err(|_| Unbuildable::Key)?;
    let mut req = WebPushBuilder::new(uri, key, Auth::clone_from_slice(&sub.auth))
        .with_valid_duration(PUSH_TTL)
        .build(payload)
        .map_err(|e| Unbuildable::Encrypt(e.to_string()))?;
    let headers = req.headers_mut();
    let value = |v: &str| HeaderValue::from_str(v).map_err(|_| Unbuildable::Endpoint);
    headers.insert(http::header::AUTHORIZATION, value(authorization)?);
    headers.insert("urgency", HeaderValue::from_static(URGENCY));
    headers.insert("topic", value(topic)?);
    Ok(req)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use p256::elliptic_curve::sec1::ToEncodedPoint;

    use super::*;

    fn b64(s: &str) -> Vec<u8> {
        B64.decode(s).unwrap()
    }

    // RFC 8291, Appendix A.
    const PLAINTEXT: &[u8] = b"When I grow up, I want to be a watermelon";
    const UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
    const UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
    const AS_PUBLIC: &str =
        "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";
    const SALT: &str = "DGv6ra1nlYgDCS1FRnbzlw";
    const CIPHERTEXT: &str = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";

    fn ua_secret() -> p256::SecretKey {
        p256::SecretKey::from_slice(&b64(UA_PRIVATE)).unwrap()
    }

    fn subscription() -> PushSubscription {
        PushSubscription {
            user: 1,
            endpoint: "https://push.example.net/send/abc".into(),
            p256dh: b64(UA_PUBLIC).try_into().unwrap(),
            auth: b64(AUTH).try_into().unwrap(),
            created_ms: 0,
        }
    }

    /// The RFC 8291 test vector: the crate that encrypts our pushes reads
    /// the RFC's own message back to its plaintext with the user agent's
    /// keys, and the vector's keys agree with each other.
    #[test]
    fn rfc8291_appendix_a_decrypts() {
        let ua = ua_secret();
        assert_eq!(
            ua.public_key().to_encoded_point(false).as_bytes(),
            &b64(UA_PUBLIC)[..]
        );
        let ciphertext = b64(CIPHERTEXT);
        assert_eq!(
            &ciphertext[..16],
            &b64(SALT)[..],
            "the header starts with the salt"
        );
        assert_eq!(
            &ciphertext[21..86],
            &b64(AS_PUBLIC)[..],
            "and carries the sender's key"
        );
        let auth = Auth::clone_from_slice(&b64(AUTH));
        let plain = web_push_native::decrypt(ciphertext, &ua, &auth).unwrap();
        assert_eq!(plain, PLAINTEXT);
        let wrong = Auth::clone_from_slice(&[0u8; 16]);
        assert!(web_push_native::decrypt(b64(CIPHERTEXT), &ua, &wrong).is_err());
    }

    /// A push request is an RFC 8291 `aes128gcm` body for the subscription's
    /// keys (one record, a fresh salt and sender key each time) with the
    /// headers RFC 8030 and 8292 ask for.
    #[test]
    fn request_encrypts_for_the_subscription_with_its_headers() {
        let sub = subscription();
        let body = br#"{"title":"x"}"#;
        let req = request(&sub, body, "vapid t=a.b.c, k=K", "TOPIC").unwrap();
        assert_eq!(req.method(), "POST");
        assert_eq!(req.uri(), "https://push.example.net/send/abc");
        let h = |n: &str| req.headers().get(n).unwrap().to_str().unwrap().to_string();
        assert_eq!(h("content-encoding"), "aes128gcm");
        assert_eq!(h("ttl"), PUSH_TTL.as_secs().to_string());
        assert_eq!(h("urgency"), "normal");
        assert_eq!(h("topic"), "TOPIC");
        assert_eq!(h("authorization"), "vapid t=a.b.c, k=K");
        let auth = Auth::clone_from_slice(&sub.auth);
        let first = req.body().clone();
        assert_eq!(
            first[20], 65,
            "the key id is the sender's uncompressed point"
        );
        let again = request(&sub, body, "vapid t=a.b.c, k=K", "TOPIC").unwrap();
        assert_ne!(&first[..16], &again.body()[..16], "a fresh salt per push");
        assert_eq!(
            web_push_native::decrypt(first, &ua_secret(), &auth).unwrap(),
            body
        );
        let mut broken = sub.clone();
        broken.p256dh[0] = 0x02;
        broken.p256dh[1..].fill(0xff);
        assert!(matches!(
            request(&broken, body, "x", "t"),
            Err(Unbuildable::Key)
        ));
    }

    fn notice() -> Notice {
        Notice {
            user: 2,
            key: "#secret-plans".into(),
            reason: Reason::Mention,
            from: "alice".into(),
            text: "@bob the launch moves to Friday".into(),
            id: 41,
            count: 3,
        }
    }

    /// With text shown, the payload says who, where and what; hidden, it
    /// carries none of the sender, the conversation, the text or the id.
    #[test]
    fn payload_keeps_to_the_users_choice() {
        let shown: serde_json::Value = serde_json::from_slice(&payload(&notice(), true)).unwrap();
        assert_eq!(
            shown,
            serde_json::json!({"key": "#secret-plans", "title": "alice mentioned you in #secret-plans",
                "body": "@bob the launch moves to Friday", "id": 41, "count": 3})
        );
        let private = Notice {
            key: "@alice".into(),
            reason: Reason::Private,
            ..notice()
        };
        let shown: serde_json::Value = serde_json::from_slice(&payload(&private, true)).unwrap();
        assert_eq!(
            (&shown["title"], &shown["key"]),
            (&"alice".into(), &"@alice".into())
        );
        let hidden = payload(&notice(), false);
        let text = String::from_utf8(hidden.clone()).unwrap();
        for secret in ["alice", "secret-plans", "launch", "41"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let hidden: serde_json::Value = serde_json::from_slice(&hidden).unwrap();
        assert_eq!(
            hidden,
            serde_json::json!({"key": null, "title": "hubbub", "body": "You have a new message", "id": null, "count": 3})
        );
    }
}
