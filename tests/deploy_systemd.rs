//! The shipped systemd unit (deploy/systemd/wxauth.service): the hardening it promises
//! is there, and, where `systemd-analyze` is installed, systemd itself accepts the file.

use std::path::Path;
use std::process::Command;

fn unit() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd/wxauth.service"),
    )
    .unwrap()
}

/// The active `Key=value` lines (comments left out).
fn settings(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .collect()
}

#[test]
fn the_unit_runs_sandboxed_under_a_dynamic_user() {
    let text = unit();
    let settings = settings(&text);
    for expected in [
        ("ExecStart", "/usr/local/bin/wxauth serve"),
        ("DynamicUser", "yes"),
        ("StateDirectory", "wxauth"),
        ("Environment", "WXAUTH_DATA_DIR=%S/wxauth"),
        ("EnvironmentFile", "-/etc/wxauth/env"),
        ("Restart", "on-failure"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("WantedBy", "multi-user.target"),
    ] {
        assert!(settings.contains(&expected), "missing {expected:?}");
    }
    assert!(
        !settings.iter().any(|(k, _)| *k == "User"),
        "a fixed user would defeat DynamicUser"
    );
}

#[test]
fn systemd_accepts_the_unit() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze not installed: only the static checks ran");
        return;
    }
    // Point ExecStart at the binary just built, since verify checks that it exists.
    let text = unit().replace("/usr/local/bin/wxauth", env!("CARGO_BIN_EXE_wxauth"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxauth.service");
    std::fs::write(&path, text).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        !stderr.contains("wxauth.service"),
        "systemd has remarks on the unit:\n{stderr}"
    );
}
