//! The push routes (the contract's "Push"): the server's public key, a
//! caller's subscriptions, and their choice of what a push shows.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/push/key` | `{"public_key"}`: the VAPID key, base64url |
//! | `POST /api/push/subscriptions` `{"endpoint","keys":{"p256dh","auth"}}` | 201 `{"endpoint"}` once stored |
//! | `DELETE /api/push/subscriptions` `{"endpoint"}` | 204 once gone (also when it was not the caller's, or not there: nothing is revealed) |
//! | `GET /api/push/settings` | `{"show_text"}` |
//! | `PUT /api/push/settings` `{"show_text"}` | `{"show_text"}` once stored |
//!
//! Every route needs the caller's token. A body is what a browser's
//! `PushSubscription.toJSON()` gives (other fields, such as
//! `expirationTime`, are ignored); the endpoint must pass
//! `push::endpoint::check` and the keys must be a P-256 point and a
//! 16-byte secret, or it is 400 `invalid_input` and nothing is stored.
//! This file decides what each request asks; `routes.rs` parks the waits
//! and sends the answers.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Deserialize;
use serde_json::json;

use super::response::Response;
use crate::clock;
use crate::push::endpoint;
use crate::store::{PushSubscription, Request as StoreRequest, Ticket, UserId};

/// A write a push route asks of storage.
pub enum Write {
    Subscribe(PushSubscription),
    Unsubscribe { user: UserId, endpoint: String },
    Settings { user: UserId, show_text: bool },
}

impl Write {
    pub fn request(self, ticket: Ticket) -> StoreRequest {
        match self {
            Write::Subscribe(row) => StoreRequest::PutPushSubscription { ticket, row },
            Write::Unsubscribe { user, endpoint } => StoreRequest::DeletePushSubscription {
                ticket,
                user,
                endpoint,
            },
            Write::Settings { user, show_text } => StoreRequest::PutPushSettings {
                ticket,
                user,
                show_text,
            },
        }
    }
}

/// What a push route comes to.
pub enum Action {
    /// Answered at once.
    Answer(Response),
    /// Stored first; `done` is the answer once it is.
    Write { write: Write, done: Response },
    /// The caller's settings are read first.
    ReadSettings,
}

#[derive(Deserialize)]
struct Keys {
    p256dh: String,
    auth: String,
}

#[derive(Deserialize)]
struct SubscribeBody {
    endpoint: String,
    keys: Keys,
}

#[derive(Deserialize)]
struct UnsubscribeBody {
    endpoint: String,
}

#[derive(Deserialize)]
struct SettingsBody {
    show_text: bool,
}

fn bad_input(message: impl Into<String>) -> Response {
    Response::error(400, "invalid_input", message)
}

/// A JSON object of the expected shape (an array of the fields in order,
/// which serde would also take, is not one).
fn object<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Option<T> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// Base64url, padded or not, of exactly `N` bytes.
fn key<const N: usize>(text: &str) -> Option<[u8; N]> {
    B64.decode(text.trim_end_matches('=')).ok()?.try_into().ok()
}

/// The route `method path` for caller `me`. `public_key` is the server's;
/// `allow_insecure` is `--push-allow-insecure`.
pub fn route(
    method: &str,
    path: &str,
    body: &[u8],
    me: UserId,
    public_key: &str,
    allow_insecure: bool,
) -> Action {
    match (path, method) {
        ("/api/push/key", _) => {
            Action::Answer(Response::json(200, &json!({ "public_key": public_key })))
        }
        ("/api/push/subscriptions", "POST") => subscribe(body, me, allow_insecure),
        ("/api/push/subscriptions", _) => match object::<UnsubscribeBody>(body) {
            None => Action::Answer(bad_input("expected a JSON object with a string endpoint")),
            Some(b) => Action::Write {
                write: Write::Unsubscribe {
                    user: me,
                    endpoint: b.endpoint,
                },
                done: Response::no_content(),
            },
        },
        ("/api/push/settings", "PUT") => match object::<SettingsBody>(body) {
            None => Action::Answer(bad_input("expected a JSON object with a boolean show_text")),
            Some(b) => Action::Write {
                write: Write::Settings {
                    user: me,
                    show_text: b.show_text,
                },
                done: settings(b.show_text),
            },
        },
        _ => Action::ReadSettings,
    }
}

fn subscribe(body: &[u8], me: UserId, allow_insecure: bool) -> Action {
    let Some(b) = object::<SubscribeBody>(body) else {
        return Action::Answer(bad_input(
            "expected a JSON object with a string endpoint and keys {p256dh, auth}",
        ));
    };
    if let Err(why) = endpoint::check(&b.endpoint, allow_insecure) {
        return Action::Answer(bad_input(why));
    }
    let Some(p256dh) =
        key::<65>(&b.keys.p256dh).filter(|k| p256::PublicKey::from_sec1_bytes(k).is_ok())
    else {
        return Action::Answer(bad_input(
            "keys.p256dh must be a P-256 public key (an uncompressed point, base64url)",
        ));
    };
    let Some(auth) = key::<16>(&b.keys.auth) else {
        return Action::Answer(bad_input("keys.auth must be 16 bytes, base64url"));
    };
    let done = Response::json(201, &json!({ "endpoint": b.endpoint }));
    Action::Write {
        write: Write::Subscribe(PushSubscription {
            user: me,
            endpoint: b.endpoint,
            p256dh,
            auth,
            created_ms: clock::now_ms(),
        }),
        done,
    }
}

/// The settings as `GET` and `PUT` answer them.
pub fn settings(show_text: bool) -> Response {
    Response::json(200, &json!({ "show_text": show_text }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P256DH: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

    fn post(body: serde_json::Value, insecure: bool) -> Action {
        route(
            "POST",
            "/api/push/subscriptions",
            body.to_string().as_bytes(),
            7,
            "K",
            insecure,
        )
    }

    fn refusal(a: Action) -> String {
        match a {
            Action::Answer(r) => {
                assert_eq!(r.status, 400);
                String::from_utf8(r.body.into_owned()).unwrap()
            }
            _ => panic!("expected a refusal"),
        }
    }

    /// A browser's `toJSON()` (with `expirationTime`, padded or not) is
    /// stored for the caller and answered 201 with its endpoint.
    #[test]
    fn a_browsers_subscription_is_stored_for_the_caller() {
        let body = json!({"endpoint": "https://push.example.net/x", "expirationTime": null,
            "keys": {"p256dh": P256DH, "auth": format!("{AUTH}==")}});
        let Action::Write {
            write: Write::Subscribe(row),
            done,
        } = post(body, false)
        else {
            panic!("expected a write");
        };
        assert_eq!(
            (row.user, &*row.endpoint),
            (7, "https://push.example.net/x")
        );
        assert_eq!(row.p256dh[0], 4);
        assert_eq!(done.status, 201);
        assert_eq!(&*done.body, br#"{"endpoint":"https://push.example.net/x"}"#);
    }

    /// Endpoints that are no push service's, keys that are no key, and
    /// bodies of another shape are 400 with a reason, and nothing is stored.
    #[test]
    fn bad_subscriptions_are_refused_with_a_reason() {
        let with = |endpoint: &str, p256dh: &str, auth: &str| json!({"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}});
        let e = refusal(post(with("http://127.0.0.1:1/x", P256DH, AUTH), false));
        assert!(e.contains("https://"), "{e}");
        let e = refusal(post(with("https://192.168.0.1/x", P256DH, AUTH), false));
        assert!(e.contains("public address"), "{e}");
        let mut off_curve = B64.decode(P256DH).unwrap();
        off_curve[64] ^= 1;
        let e = refusal(post(
            with("https://p.example/x", &B64.encode(off_curve), AUTH),
            false,
        ));
        assert!(e.contains("p256dh"), "{e}");
        let e = refusal(post(with("https://p.example/x", P256DH, "c2hvcnQ"), false));
        assert!(e.contains("auth"), "{e}");
        let e = refusal(post(json!([1, 2]), false));
        assert!(e.contains("endpoint"), "{e}");
        assert!(matches!(
            post(with("http://127.0.0.1:1/x", P256DH, AUTH), true),
            Action::Write { .. }
        ));
    }

    /// The key needs nothing stored; settings are read, or written and
    /// echoed; a delete is 204 once done.
    #[test]
    fn key_settings_and_delete() {
        let r = |m: &str, p: &str, b: &str| route(m, p, b.as_bytes(), 7, "KEY", false);
        let Action::Answer(key) = r("GET", "/api/push/key", "") else {
            panic!()
        };
        assert_eq!(&*key.body, br#"{"public_key":"KEY"}"#);
        assert!(matches!(
            r("GET", "/api/push/settings", ""),
            Action::ReadSettings
        ));
        let Action::Write {
            write:
                Write::Settings {
                    user: 7,
                    show_text: false,
                },
            done,
        } = r("PUT", "/api/push/settings", r#"{"show_text": false}"#)
        else {
            panic!()
        };
        assert_eq!(&*done.body, br#"{"show_text":false}"#);
        assert!(matches!(
            r("PUT", "/api/push/settings", r#"{"show_text": "no"}"#),
            Action::Answer(_)
        ));
        let Action::Write {
            write: Write::Unsubscribe { user: 7, endpoint },
            done,
        } = r(
            "DELETE",
            "/api/push/subscriptions",
            r#"{"endpoint": "https://p.example/x"}"#,
        )
        else {
            panic!()
        };
        assert_eq!((&*endpoint, done.status), ("https://p.example/x", 204));
    }
}
