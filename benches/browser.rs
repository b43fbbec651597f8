//! The web client's benchmark in headless Chromium against this crate's
//! `hubbub` binary: a 100 messages/s flood into the open room, and a room of
//! 10,000 messages scrolled from the bottom to the top. The measuring is done
//! by `benches/browser/run.mjs` (Node + playwright-core, as the browser
//! tests); this only checks the tools are there and runs it.
//!
//! Run: `cargo bench --bench browser`; compare with an older client:
//! `cargo bench --bench browser -- --compare main`; one scenario:
//! `-- --only flood` or `-- --only scroll`. Method and figures: BENCHMARKS.md,
//! "Web client in a busy room".

use std::path::Path;
use std::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let suite = root.join("tests/browser");
    if !Path::new(CHROMIUM).exists() {
        eprintln!("browser benchmark skipped: {CHROMIUM} is missing (apt-get install -y chromium)");
        return;
    }
    if !suite.join("node_modules/playwright-core").exists() {
        // Exactly the locked playwright-core; it never downloads a browser.
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&suite)
            .status()
            .expect("`npm` is needed to install playwright-core: apt-get install -y npm");
        assert!(status.success(), "`npm ci --prefix tests/browser` failed");
    }
    // cargo passes `--bench`; everything else goes to the script.
    let args = std::env::args().skip(1).filter(|a| a != "--bench");
    let status = Command::new("node")
        .arg(root.join("benches/browser/run.mjs"))
        .args(args)
        .current_dir(root)
        .env("HUBBUB_BIN", env!("CARGO_BIN_EXE_hubbub"))
        .status()
        .expect("`node` (>= 20) is needed for the browser benchmark");
    std::process::exit(status.code().unwrap_or(1));
}
