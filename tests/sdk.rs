//! The mini program SDK's own tests (`sdk/miniprogram/test/`), run by node's test runner
//! so that `cargo test` covers them: against a fake `wx`, and against this build's
//! `wxauth serve --dev`. `common` is here only because `proxies`, whose node finder
//! (skip without node, fail under CI) this reuses, builds on it.

mod common;
mod proxies;

use std::path::Path;
use std::process::Command;

use proxies::find_or_skip;

#[test]
fn miniprogram_sdk_node_tests() {
    // Node 20 or newer; the Debian package is enough.
    let Some(node) = find_or_skip("node", "apt-get install -y nodejs") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(node)
        .args(["--test", "--test-reporter=tap", "sdk/miniprogram/test/"])
        .current_dir(root)
        // The binary `cargo test` built; the name avoids `WXAUTH_`, which wxauth refuses.
        .env("TEST_WXAUTH_BIN", env!("CARGO_BIN_EXE_wxauth"))
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "node --test sdk/miniprogram/test/ failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // A summary that names no test, or skips the real server, is not a pass.
    assert!(
        stdout.lines().any(|l| l.starts_with("# pass ")) && !stdout.contains("# SKIP"),
        "node ran no test or skipped some:\n{stdout}\n{stderr}"
    );
}
