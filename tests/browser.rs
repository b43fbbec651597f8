//! The web client's end-to-end tests in a real browser, run by `cargo test`.
//!
//! They live in `tests/browser/` (Node's built-in test runner + playwright-core
//! driving Debian's Chromium) and start this crate's `hubbub` binary
//! themselves, one fresh server per test. This file only checks the tools are
//! there, installs the npm dependencies (playwright-core, axe-core) when one
//! is missing, and runs them.

use std::path::Path;
use std::process::{Command, Stdio};

const CHROMIUM: &str = "/usr/bin/chromium";

#[test]
fn browser_suite() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let suite = root.join("tests/browser");

    let node = Command::new("node").arg("--version").output();
    assert!(
        matches!(&node, Ok(out) if out.status.success()),
        "`node` (>= 20) is needed for the browser tests: apt-get install -y nodejs npm"
    );
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is needed for the browser tests: apt-get install -y chromium"
    );

    let installed = ["playwright-core", "axe-core"]
        .iter()
        .all(|m| suite.join("node_modules").join(m).exists());
    if !installed {
        // Exactly the locked versions; playwright-core never downloads a browser.
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&suite)
            .status()
            .expect("`npm` is needed to install playwright-core: apt-get install -y npm");
        assert!(status.success(), "`npm ci --prefix tests/browser` failed");
    }

    // Output is inherited, so node's progress streams as the tests run.
    // One file at a time: each test drives several browser contexts and a
    // server, and the machines have two cores.
    let status = Command::new("node")
        .args(["--test", "--test-concurrency=1"])
        .current_dir(&suite)
        .env("HUBBUB_BIN", env!("CARGO_BIN_EXE_hubbub"))
        .stdin(Stdio::null())
        .status()
        .expect("failed to run node");
    assert!(
        status.success(),
        "the browser tests failed (node exited with {status}); screenshots are in tests/browser/artifacts/"
    );
}
