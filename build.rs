//! Embeds `static/` in the binary: one binary is the whole deployment.
//! Generates `$OUT_DIR/static_files.rs`, a table of (URL path, content type,
//! ETag, `include_bytes!`), sorted by path for binary search.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[path = "src/http/mime.rs"]
mod mime;

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
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

/// FNV-1a: a content hash for the ETag; no crate needed for that.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
    println!("cargo:rerun-if-changed=static");
    let mut files = Vec::new();
    walk(&root, &mut files);
    let mut rows: Vec<(String, PathBuf)> = files
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(&root).ok()?.to_str()?.replace('\\', "/");
            println!("cargo:rerun-if-changed={}", p.display());
            Some((format!("/{rel}"), p))
        })
        .collect();
    rows.sort();
    let mut code = String::from("pub static FILES: &[StaticFile] = &[\n");
    for (url, path) in rows {
        let bytes = std::fs::read(&path).expect("read static file");
        writeln!(
            code,
            "    StaticFile {{ path: {url:?}, content_type: {:?}, etag: \"\\\"{:016x}\\\"\", body: include_bytes!({:?}) }},",
            mime::content_type(&url),
            fnv1a(&bytes),
            path.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("static_files.rs");
    std::fs::write(out, code).expect("write static table");
}
