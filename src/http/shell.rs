// The app shell that the service worker keeps for offline use: which files it
// is and a version that changes whenever any of them does. Shared with
// build.rs (included there by path, like mime.rs), so the embedded worker and
// `--static-dir` are stamped the same way.
//
// `static/sw.js` holds one placeholder line naming its cache version and the
// files to precache; `stamp` fills it in. The version hashes every other file,
// so any change to the client changes the worker's bytes, and a changed worker
// is what makes a browser install it, precache the new files and drop the old
// cache.

use std::path::{Path, PathBuf};

/// The worker's URL: at the root, so its scope is the whole client.
pub const WORKER: &str = "/sw.js";

/// The line of `static/sw.js` that `stamp` replaces.
pub const PLACEHOLDER: &str = "const SHELL = { version: 'unstamped', files: [] };";

/// FNV-1a: a content hash for ETags and the shell version; no crate needed for that.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Every file under `dir`, recursively.
pub fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.is_file() {
            out.push(p);
        }
    }
}

/// The worker's source with its placeholder filled in from `files` (URL path
/// and contents of everything served, the worker included); `None` when the
/// source has no placeholder line.
pub fn stamp(worker: &str, files: &[(String, Vec<u8>)]) -> Option<String> {
    if !worker.contains(PLACEHOLDER) {
        return None;
    }
    let mut shell: Vec<&(String, Vec<u8>)> = files.iter().filter(|(p, _)| p != WORKER).collect();
    shell.sort_by(|a, b| a.0.cmp(&b.0));
    // Path, length and bytes of each file: a byte moved from one file to the
    // next still changes the version.
    let mut seed = Vec::new();
    for (path, body) in &shell {
        seed.extend_from_slice(path.as_bytes());
        seed.extend_from_slice(&(body.len() as u64).to_le_bytes());
        seed.extend_from_slice(body);
    }
    // Paths are plain names (`clean_path` serves nothing else), so Rust's
    // quoting is JavaScript's.
    let list: Vec<String> = shell.iter().map(|(p, _)| format!("{p:?}")).collect();
    let line = format!(
        "const SHELL = {{ version: '{:016x}', files: [{}] }};",
        fnv1a(&seed),
        list.join(", ")
    );
    Some(worker.replacen(PLACEHOLDER, &line, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(index: &str) -> Vec<(String, Vec<u8>)> {
        vec![
            ("/sw.js".to_string(), PLACEHOLDER.as_bytes().to_vec()),
            ("/index.html".to_string(), index.as_bytes().to_vec()),
            ("/app.css".to_string(), b"body {}".to_vec()),
        ]
    }

    /// The placeholder becomes the sorted shell (the worker left out) and a version.
    #[test]
    fn stamps_files_and_version() {
        let src = format!("// head\n{PLACEHOLDER}\n// tail\n");
        let out = stamp(&src, &files("<html>")).unwrap();
        let line = out.lines().nth(1).unwrap();
        assert!(line.starts_with("const SHELL = { version: '"), "{line}");
        assert!(
            line.ends_with("', files: [\"/app.css\", \"/index.html\"] };"),
            "{line}"
        );
        assert_eq!(out.lines().count(), 3);
        assert_eq!(stamp("no placeholder here", &files("x")), None);
    }

    /// Any change to any shell file changes the version; the worker's own bytes do not count.
    #[test]
    fn version_follows_every_file() {
        let version = |f: &[(String, Vec<u8>)]| stamp(PLACEHOLDER, f).unwrap();
        let base = version(&files("<html>"));
        assert_eq!(version(&files("<html>")), base);
        assert_ne!(version(&files("<html >")), base);
        let mut worker_changed = files("<html>");
        worker_changed[0].1.extend_from_slice(b"// more");
        assert_eq!(version(&worker_changed), base);
        // A byte moved across a file boundary is a different shell.
        let mut moved = files("<html>");
        moved[1].1.push(b'b');
        moved[2].1.remove(0);
        assert_ne!(version(&moved), base);
    }
}
