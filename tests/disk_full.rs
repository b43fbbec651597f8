//! Disk full, for real: the file directory is a small tmpfs mounted over
//! `hubbub.db-files`, filled by uploads until the filesystem refuses a
//! write. Mounting needs root (`CAP_SYS_ADMIN`), as CI runs the suite;
//! without it the test fails and says why, it never skips.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use serde_json::json;

/// A tmpfs mounted for the test, unmounted on drop (lazily, so a file
/// still open cannot keep it).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("create the mount point");
        let c = |s: &[u8]| CString::new(s).expect("no NUL");
        let target = c(at.as_os_str().as_bytes());
        let (fs, data) = (c(b"tmpfs"), c(format!("size={size},mode=0700").as_bytes()));
        // SAFETY: every pointer is a NUL-terminated string alive for the call.
        let r = unsafe {
            libc::mount(
                fs.as_ptr(),
                target.as_ptr(),
                fs.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        assert!(
            r == 0,
            "cannot mount a {size} tmpfs at {}: {}. This test fills a real filesystem: \
             run it as root (CAP_SYS_ADMIN), as CI does",
            at.display(),
            std::io::Error::last_os_error()
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = CString::new(self.0.as_os_str().as_bytes()).expect("no NUL");
        // SAFETY: a NUL-terminated path alive for the call.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// `n` bytes no other call gives (distinct content, so distinct blobs).
fn distinct(seed: u32, n: usize) -> Vec<u8> {
    (0..n as u32)
        .map(|i| ((i ^ seed.rotate_left(20)).wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

fn upload(s: &Server, token: &str, name: &str, body: &[u8]) -> Resp {
    http(
        s.addr,
        "POST",
        &format!("/api/files?name={name}"),
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/octet-stream"),
        ],
        Some(body),
    )
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// Blobs stored: files under `blobs/<two hex digits>/`.
fn blobs(files: &Path) -> usize {
    std::fs::read_dir(files.join("blobs"))
        .expect("the blob directory")
        .map(|d| entries(&d.expect("an entry").path()))
        .sum()
}

/// Bytes free for an unprivileged writer on the filesystem of `path`.
fn free_bytes(path: &Path) -> u64 {
    let p = CString::new(path.as_os_str().as_bytes()).expect("no NUL");
    // SAFETY: a NUL-terminated path and a zeroed statvfs, both alive for the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(p.as_ptr(), &mut st) }, 0, "statvfs");
    st.f_bavail as u64 * st.f_frsize as u64
}

/// Uploads into a filesystem that fills up: the refused one is 507
/// `storage_full`, leaves no draft and no blob behind and no file to see;
/// an upload that hits the full disk gives its space back at once, while
/// the rest of its body is still coming (the database and other uploads
/// need it); chat and the files stored before go on working meanwhile;
/// once space is freed the same upload succeeds.
#[test]
fn a_full_disk_refuses_uploads_cleanly_and_recovers() {
    let dir = Arc::new(TempDir::new("diskfull"));
    let files = dir.path().join("hubbub.db-files");
    // Dropped after the server (declared before it): unmounted once the
    // server is killed, before the temp dir is removed.
    let _tmpfs = Tmpfs::mount(&files, "4m");
    let ballast = files.join("ballast");
    std::fs::write(&ballast, vec![1u8; 1 << 20]).expect("the ballast fits the tmpfs");
    let s = Server::builder().start_in(dir.clone());
    let (mut a, alice) = s.user("alice");
    let (mut b, _) = s.user("bob");
    a.join("general");
    b.join("general");
    for ws in [&mut a, &mut b] {
        ws.sync();
    }

    let mut stored = Vec::new();
    let mut refused = None;
    for i in 0..16 {
        let body = distinct(i, 768 * 1024);
        let r = upload(&s, &alice, &format!("f{i}.bin"), &body);
        if r.status == 201 {
            stored.push((r.json()["file"]["id"].clone(), body));
        } else {
            refused = Some((r, body));
            break;
        }
    }
    let (r, body) = refused.expect("a 4 MiB filesystem refuses a twelfth of a 768 KiB file");
    r.assert_error(507, "storage_full");
    assert!(!stored.is_empty(), "some uploads fit before it filled");
    assert_eq!(entries(&files.join("drafts")), 0, "no draft left behind");
    assert_eq!(blobs(&files), stored.len(), "no blob of the refused upload");

    // Half of a 1.5 MiB body (more than is free): once the write failed the
    // draft is gone and the space is back, before the body has ended.
    let free = free_bytes(&files);
    let mut c = HttpConn::connect(s.addr);
    let big = distinct(99, 1536 * 1024);
    c.send_raw(
        format!(
            "POST /api/files?name=big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            big.len()
        )
        .as_bytes(),
    )
    .unwrap();
    c.send_raw(&big[..768 * 1024]).unwrap();
    // The quota check and the draft's creation come first: polling at once
    // could pass on a server that had not yet made (and kept) its draft.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let deadline = std::time::Instant::now() + WAIT;
    while entries(&files.join("drafts")) > 0 || free_bytes(&files) < free {
        assert!(
            std::time::Instant::now() < deadline,
            "the failed draft still holds the disk mid-body ({} drafts, {} of {free} bytes free)",
            entries(&files.join("drafts")),
            free_bytes(&files)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    c.send_raw(&big[768 * 1024..]).unwrap();
    c.read_response().unwrap().assert_error(507, "storage_full");

    a.send_json(
        &json!({"type": "message", "room": "general", "content": "still here", "client_id": "c1"}),
    );
    a.expect_after("ack", &["message", "user_status", "join"]);
    let m = b.expect_after("message", &["user_status", "join"]);
    assert_eq!(m["content"], "still here");
    for (id, bytes) in &stored {
        let r = s.get(&format!("/api/files/{id}"), Some(&alice));
        assert_eq!(r.status, 200, "file {id} after the disk filled");
        assert!(r.body == *bytes, "file {id}: the same bytes");
    }

    std::fs::remove_file(&ballast).expect("free the ballast");
    let r = upload(&s, &alice, "again.bin", &body);
    assert_eq!(r.status, 201, "after space was freed: {}", r.text());
    let id = r.json()["file"]["id"].clone();
    let r = s.get(&format!("/api/files/{id}"), Some(&alice));
    assert!(
        r.status == 200 && r.body == body,
        "the retried upload reads back"
    );
    assert_eq!(blobs(&files), stored.len() + 1);
}
