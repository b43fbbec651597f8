//! Files and avatars over real sockets: uploads streamed to storage, the
//! limits and the quota, downloads with their safety headers and `Range`,
//! attachments on messages and who may then read them, previews, avatars
//! and file links.

mod common;

use std::io::Cursor;
use std::io::Write;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Uploads `body` as `name` with `content_type`; the raw response.
fn upload(s: &Server, token: &str, name: &str, content_type: &str, body: &[u8]) -> Resp {
    http(
        s.addr,
        "POST",
        &format!("/api/files?name={name}"),
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", content_type),
        ],
        Some(body),
    )
}

/// Uploads and returns the file object.
fn uploaded(s: &Server, token: &str, name: &str, content_type: &str, body: &[u8]) -> Value {
    let r = upload(s, token, name, content_type, body);
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["file"].clone()
}

fn get_file(s: &Server, path: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut h: Vec<(&str, &str)> = headers.to_vec();
    if let Some(a) = &auth {
        h.push(("Authorization", a));
    }
    http(s.addr, "GET", path, &h, None)
}

/// Bytes that are no text and no image, `n` long.
fn noise(n: usize) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, _| {
        if x < w / 2 {
            image::Rgb([200, 30, 30])
        } else {
            image::Rgb([30, 30, 200])
        }
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A 100 000 × 100 000 PNG header over a few bytes of data.
fn png_bomb() -> Vec<u8> {
    let mut out = png(1, 1);
    out[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    out[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let mut c = 0xffff_ffffu32;
    for &b in &out[12..29] {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    out[29..33].copy_from_slice(&(!c).to_be_bytes());
    out
}

/// An upload is answered 201 with the contract's file object; its bytes
/// come back to the uploader exactly, with `nosniff`, a sandboxing CSP,
/// inline only for an allowlisted type, and `Range` answered 206 (416
/// past the end); to anyone else, with or without a token, it is 404.
#[test]
fn upload_download_and_ranges() {
    let s = Server::start();
    let alice = s.token("alice");
    let bob = s.token("bob");
    let body = noise(300_000);
    let f = uploaded(&s, &alice, "data.bin", "application/octet-stream", &body);
    assert_keys(&f, &["id", "name", "size", "type"]);
    assert_eq!(
        (&f["name"], &f["size"], &f["type"]),
        (
            &json!("data.bin"),
            &json!(300_000),
            &json!("application/octet-stream")
        )
    );
    let path = format!("/api/files/{}", f["id"]);
    let r = get_file(&s, &path, Some(&alice), &[]);
    assert_eq!(r.status, 200);
    assert!(r.body == body, "the same bytes back");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(
        r.header("content-security-policy")
            .unwrap()
            .starts_with("sandbox")
    );
    assert!(
        r.header("content-disposition")
            .unwrap()
            .starts_with("attachment;")
    );
    assert_eq!(r.header("accept-ranges"), Some("bytes"));

    let r = get_file(&s, &path, Some(&alice), &[("Range", "bytes=1000-1999")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 1000-1999/300000"));
    assert!(r.body == body[1000..2000]);
    let r = get_file(&s, &path, Some(&alice), &[("Range", "bytes=-10")]);
    assert_eq!((r.status, &r.body[..]), (206, &body[299_990..]));
    let r = get_file(&s, &path, Some(&alice), &[("Range", "bytes=300000-")]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */300000"));

    for who in [Some(bob.as_str()), None, Some("not-a-token")] {
        get_file(&s, &path, who, &[]).assert_error(404, "not_found");
    }
    get_file(&s, "/api/files/999999", Some(&alice), &[]).assert_error(404, "not_found");
    get_file(&s, "/api/files/x", Some(&alice), &[]).assert_error(404, "not_found");

    // Text is shown inline with its charset; several requests on one
    // connection stay in order around a streamed body.
    let t = uploaded(&s, &alice, "notes.txt", "text/plain", b"hello");
    let mut c = HttpConn::connect(s.addr);
    let auth = format!("Bearer {alice}");
    for _ in 0..2 {
        let r = c.request(
            "GET",
            &format!("/api/files/{}", t["id"]),
            &[("Authorization", &auth)],
            None,
        );
        assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert!(
            r.header("content-disposition")
                .unwrap()
                .starts_with("inline;")
        );
    }
    let r = c.request("GET", "/api/me", &[("Authorization", &auth)], None);
    assert_eq!(r.status, 200);
}

/// Bad uploads: no token is 401; no usable name is 400; a name loses its
/// directories and control characters; over `--max-upload` is 413
/// `too_large` before a byte of the body is read; over `--upload-quota`
/// is 507 `quota_exceeded`, also before the body; a body cut short stores
/// nothing.
#[test]
fn bad_uploads_are_refused() {
    let s = Server::builder()
        .arg("--max-upload")
        .arg("64K")
        .arg("--upload-quota")
        .arg("100K")
        .start();
    let alice = s.token("alice");
    http(
        s.addr,
        "POST",
        "/api/files?name=a.txt",
        &[("Content-Type", "text/plain")],
        Some(b"x"),
    )
    .assert_error(401, "unauthorized");
    upload(&s, &alice, "", "text/plain", b"x").assert_error(400, "invalid_input");
    upload(&s, &alice, "..%2F..%2F", "text/plain", b"x").assert_error(400, "invalid_input");
    let f = uploaded(&s, &alice, "..%2F..%2Fetc%2Fpasswd", "text/plain", b"x");
    assert_eq!(f["name"], "passwd");
    let f = uploaded(
        &s,
        &alice,
        "a%0D%0ASet-Cookie%3A%20x.txt",
        "text/plain",
        b"x",
    );
    assert_eq!(f["name"], "aSet-Cookie: x.txt");

    // Over the limit: refused from the head, and the connection closes.
    let mut c = HttpConn::connect(s.addr);
    c.send_raw(
        format!(
            "POST /api/files?name=big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\n\
             Content-Length: {}\r\n\r\n",
            64 * 1024 + 1
        )
        .as_bytes(),
    )
    .unwrap();
    c.read_response().unwrap().assert_error(413, "too_large");
    assert!(c.closed_within(WAIT));

    // The quota counts what is kept: 60K + 30K fit, 20K more does not.
    uploaded(
        &s,
        &alice,
        "a",
        "application/octet-stream",
        &noise(60 * 1024),
    );
    uploaded(
        &s,
        &alice,
        "b",
        "application/octet-stream",
        &noise(30 * 1024),
    );
    upload(
        &s,
        &alice,
        "c",
        "application/octet-stream",
        &noise(20 * 1024),
    )
    .assert_error(507, "quota_exceeded");
    // Refused from the head too: the answer comes before any of the body.
    let mut c = HttpConn::connect(s.addr);
    c.send_raw(
        format!(
            "POST /api/files?name=c HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\n\
             Content-Length: 20480\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    c.read_response()
        .unwrap()
        .assert_error(507, "quota_exceeded");
    assert!(c.closed_within(WAIT));

    // A body cut short: nothing is stored, no draft is left.
    let bob = s.token("bob");
    let mut c = HttpConn::connect(s.addr);
    c.send_raw(
        format!(
            "POST /api/files?name=half HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bob}\r\n\
             Content-Length: 50000\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    c.send_raw(&noise(20_000)).unwrap();
    drop(c);
    std::thread::sleep(Duration::from_millis(300));
    let drafts = s.db_path().with_extension("db-files").join("drafts");
    let left = std::fs::read_dir(&drafts).map_or(0, |d| d.count());
    assert_eq!(left, 0, "no draft left in {}", drafts.display());
    // And the server is fine: bob's next upload works.
    uploaded(&s, &bob, "ok", "text/plain", b"fine");
}

/// An upload sent slowly in pieces, with `Expect: 100-continue`, arrives
/// whole: the server says `100 Continue` first and streams the rest.
#[test]
fn a_slow_upload_with_expect_continue_arrives_whole() {
    let s = Server::start();
    let alice = s.token("alice");
    let body = noise(200_000);
    let mut c = HttpConn::connect(s.addr);
    c.send_raw(
        format!(
            "POST /api/files?name=slow.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\n\
             Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let cont = c.read_response_to_head().unwrap();
    assert_eq!(cont.status, 100);
    for piece in body.chunks(50_000) {
        c.stream().write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["file"]["id"].clone();
    let back = get_file(&s, &format!("/api/files/{id}"), Some(&alice), &[]);
    assert!(back.body == body);
}

/// A message may carry its sender's uploads (and then no text): everyone
/// in the room gets `attachments` with each file's object, history has
/// them, and the room's readers may download the file; someone else's
/// file, an unknown id, eleven files are `invalid_input`. In a private
/// room the file is 404 to non-members; once the message is deleted it is
/// 404 to everyone.
#[test]
fn attachments_travel_with_messages() {
    let s = Server::start();
    let (mut a, alice) = s.user("alice");
    let (mut b, bob) = s.user("bob");
    let (mut c, carol) = s.user("carol");
    a.join("general");
    b.join("general");
    for ws in [&mut a, &mut b] {
        ws.sync();
    }
    let f = uploaded(
        &s,
        &alice,
        "photo.bin",
        "application/octet-stream",
        &noise(1000),
    );
    let id = f["id"].as_u64().unwrap();
    a.send_json(
        &json!({"type": "message", "room": "general", "attachments": [id], "client_id": "m1"}),
    );
    a.expect_after("ack", &["message", "user_status", "join"]);
    let m = b.expect_after("message", &["user_status", "join"]);
    assert_eq!(m["content"], "");
    assert_eq!(m["attachments"], json!([f]));
    let path = format!("/api/files/{id}");
    assert_eq!(
        get_file(&s, &path, Some(&bob), &[]).status,
        200,
        "a reader of general"
    );
    let hist = s.messages(&bob, "room=general");
    assert_eq!(hist.last().unwrap()["attachments"], json!([f]));

    // Someone else's file, an unknown one, too many.
    let bobs = uploaded(&s, &bob, "b.txt", "text/plain", b"bob's");
    for atts in [
        json!([bobs["id"]]),
        json!([987654]),
        json!((1..=11).collect::<Vec<u64>>()),
    ] {
        a.send_json(
            &json!({"type": "message", "room": "general", "content": "x", "attachments": atts}),
        );
        a.expect_after("error", &["message", "user_status"]);
    }

    // A private room: members only.
    a.create_room("secret", &["bob"]);
    b.expect_after(
        "room_members",
        &["user_status", "join", "online_users", "room_invited"],
    );
    let p = uploaded(&s, &alice, "plan.txt", "text/plain", b"the plan");
    let pid = p["id"].as_u64().unwrap();
    a.send_json(&json!({"type": "message", "room": "secret", "content": "see", "attachments": [pid], "client_id": "m2"}));
    let ack = a.expect_after("ack", &["message", "user_status", "join", "online_users"]);
    let ppath = format!("/api/files/{pid}");
    assert_eq!(get_file(&s, &ppath, Some(&bob), &[]).status, 200);
    get_file(&s, &ppath, Some(&carol), &[]).assert_error(404, "not_found");
    get_file(&s, &ppath, None, &[]).assert_error(404, "not_found");
    c.expect_silence(50);

    // Deleted: gone for everyone, the uploader too.
    a.send_json(&json!({"type": "delete", "id": ack["id"]}));
    a.expect_after("message_deleted", &["message", "user_status"]);
    for who in [&alice, &bob] {
        get_file(&s, &ppath, Some(who), &[]).assert_error(404, "not_found");
    }
}

/// Hostile uploads never run here: HTML and SVG are downloads, and a
/// "PNG" that is HTML is stored as an octet stream (its bytes were read).
#[test]
fn scriptable_uploads_are_downloads() {
    let s = Server::start();
    let alice = s.token("alice");
    let html = b"<html><script>window.__pwned=1</script></html>";
    for (name, ty) in [
        ("x.html", "text/html"),
        ("x.svg", "image/svg+xml"),
        ("x.png", "image/png"),
    ] {
        let f = uploaded(&s, &alice, name, ty, html);
        let r = get_file(&s, &format!("/api/files/{}", f["id"]), Some(&alice), &[]);
        assert_eq!(r.status, 200);
        assert!(
            r.header("content-disposition")
                .unwrap()
                .starts_with("attachment;"),
            "{name}"
        );
        assert!(
            r.header("content-security-policy")
                .unwrap()
                .contains("sandbox")
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        if name == "x.png" {
            assert_eq!(
                f["type"], "application/octet-stream",
                "a fake type is not kept"
            );
            assert!(f.get("width").is_none());
        }
    }
}

/// An image is measured and previewed (`?thumb=small` fits 480 pixels);
/// a decompression bomb is kept as a file with no size and no preview.
#[test]
fn images_get_sizes_and_previews() {
    let s = Server::start();
    let alice = s.token("alice");
    let f = uploaded(&s, &alice, "pic.png", "image/png", &png(1200, 900));
    assert_eq!(
        (&f["width"], &f["height"], &f["type"]),
        (&json!(1200), &json!(900), &json!("image/png"))
    );
    let path = format!("/api/files/{}?thumb=small", f["id"]);
    let r = get_file(&s, &path, Some(&alice), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    let thumb = image::load_from_memory(&r.body).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (480, 360));
    let original = get_file(&s, &format!("/api/files/{}", f["id"]), Some(&alice), &[]);
    assert!(
        original
            .header("content-disposition")
            .unwrap()
            .starts_with("inline;")
    );

    let bomb = uploaded(&s, &alice, "bomb.png", "image/png", &png_bomb());
    assert_eq!(bomb["type"], "image/png");
    assert!(bomb.get("width").is_none(), "{bomb}");
    get_file(
        &s,
        &format!("/api/files/{}?thumb=small", bomb["id"]),
        Some(&alice),
        &[],
    )
    .assert_error(404, "not_found");
}

/// `PUT /api/me/avatar` makes a square avatar; user objects carry its URL,
/// which serves it to anyone (`?thumb=small`: 64 pixels); a new avatar is
/// a new URL; what is not an image is `invalid_input`.
#[test]
fn avatars() {
    let s = Server::start();
    let alice = s.token("alice");
    let bob = s.token("bob");
    let put = |body: &[u8]| {
        http(
            s.addr,
            "PUT",
            "/api/me/avatar",
            &[
                ("Authorization", &format!("Bearer {alice}")),
                ("Content-Type", "image/png"),
            ],
            Some(body),
        )
    };
    let r = put(&png(300, 200));
    assert_eq!(r.status, 200, "{}", r.text());
    let url = r.json()["avatar"].as_str().unwrap().to_string();
    assert!(url.starts_with("/api/users/alice/avatar?v="), "{url}");
    let me = s.get("/api/me", Some(&alice)).json();
    assert_eq!(me["user"]["avatar"], url.as_str());
    let users = s.get("/api/users", Some(&bob)).json();
    let a = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "alice")
        .unwrap()
        .clone();
    assert_eq!(a["avatar"], url.as_str());

    let r = get_file(&s, &url, None, &[]);
    assert_eq!(r.status, 200);
    let img = image::load_from_memory(&r.body).unwrap();
    assert_eq!(
        (img.width(), img.height()),
        (200, 200),
        "square, no upscaling"
    );
    let small = get_file(&s, &format!("{url}&thumb=small"), None, &[]);
    let img = image::load_from_memory(&small.body).unwrap();
    assert_eq!((img.width(), img.height()), (64, 64));
    get_file(&s, "/api/users/bob/avatar", None, &[]).assert_error(404, "not_found");

    put(b"<svg onload=alert(1)>").assert_error(400, "invalid_input");
    let again = put(&png(100, 100)).json()["avatar"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(again, url);
}

/// A file link (`GET /api/me/file-link`) reads files as its user without
/// the token, for `<img>` and downloads; a tampered one reads as nobody.
#[test]
fn file_links_stand_in_for_the_token() {
    let s = Server::start();
    let alice = s.token("alice");
    let f = uploaded(&s, &alice, "a.txt", "text/plain", b"linked");
    let link = s.get("/api/me/file-link", Some(&alice)).json();
    let ft = link["ft"].as_str().unwrap();
    assert!(is_rfc3339_millis(link["expires_at"].as_str().unwrap()));
    let r = get_file(&s, &format!("/api/files/{}?ft={ft}", f["id"]), None, &[]);
    assert_eq!((r.status, &r.body[..]), (200, &b"linked"[..]));
    let bad = format!("{}0", &ft[..ft.len() - 1]);
    get_file(&s, &format!("/api/files/{}?ft={bad}", f["id"]), None, &[])
        .assert_error(404, "not_found");
    s.get("/api/me/file-link", None)
        .assert_error(401, "unauthorized");
}
