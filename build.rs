//! Embeds `static/` in the binary: one binary is the whole deployment.
//! Generates `$OUT_DIR/static_files.rs`, a table of (URL path, content type,
//! ETag, `include_bytes!`), sorted by path for binary search. The service
//! worker is embedded stamped with the shell's version and file list
//! (`src/http/shell.rs`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[path = "src/http/mime.rs"]
mod mime;
#[path = "src/http/shell.rs"]
mod shell;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=static");
    let mut paths = Vec::new();
    shell::walk(&root, &mut paths);
    let mut files: Vec<(String, PathBuf, Vec<u8>)> = paths
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(&root).ok()?.to_str()?.replace('\\', "/");
            println!("cargo:rerun-if-changed={}", p.display());
            let bytes = std::fs::read(&p).expect("read static file");
            Some((format!("/{rel}"), p, bytes))
        })
        .collect();
    files.sort();
    let served: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(url, _, bytes)| (url.clone(), bytes.clone()))
        .collect();
    for (url, path, bytes) in &mut files {
        if url != shell::WORKER {
            continue;
        }
        let source = String::from_utf8(std::mem::take(bytes)).expect("sw.js is UTF-8");
        let stamped = shell::stamp(&source, &served)
            .unwrap_or_else(|| panic!("static{url} lacks the line `{}`", shell::PLACEHOLDER));
        *path = out_dir.join("sw.js");
        std::fs::write(&*path, &stamped).expect("write the stamped worker");
        *bytes = stamped.into_bytes();
    }
    let mut code = String::from("pub static FILES: &[StaticFile] = &[\n");
    for (url, path, bytes) in files {
        writeln!(
            code,
            "    StaticFile {{ path: {url:?}, content_type: {:?}, etag: \"\\\"{:016x}\\\"\", body: include_bytes!({:?}) }},",
            mime::content_type(&url),
            shell::fnv1a(&bytes),
            path.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("static_files.rs"), code).expect("write static table");
}
