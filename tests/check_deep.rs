//! `wxauth check --deep`: SQLite's integrity and foreign key checks, run by the binary
//! beside a serving server, on a database damaged on purpose, and on one holding a row
//! whose parent is gone.

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use common::TestServer;
use serde_json::Value;

/// `wxauth check --dev --deep ARGS` on `data_dir`; returns (exit code, stdout).
fn check_deep(data_dir: &Path, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_wxauth"))
        .env_clear()
        .env("WXAUTH_DATA_DIR", data_dir)
        .args(["check", "--dev", "--deep"])
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// The finding about `subject` in a `--json` report.
fn finding<'a>(report: &'a Value, subject: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["subject"] == subject)
        .unwrap_or_else(|| panic!("no {subject} in {report}"))
}

/// A server's data directory after two logins, with the server stopped (its close
/// checkpoints the WAL into the database file) but the directory kept.
async fn stopped_with_users() -> (TestServer, std::path::PathBuf) {
    let mut server = TestServer::start().await;
    server.token("dev:amy").await;
    server.token("dev:bob").await;
    server.app.take().unwrap().shutdown().await;
    let dir = server.dir.path().join("data");
    assert!(!dir.join("wxauth.db-wal").exists());
    (server, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sound_database_passes_beside_a_running_server() {
    let server = TestServer::start().await;
    server.token("dev:amy").await;
    let dir = server.dir.path().join("data");
    let (code, stdout) = check_deep(&dir, &["--json"]);
    assert_eq!(code, 0, "{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(finding(&report, "integrity")["status"], "ok");
    assert_eq!(finding(&report, "foreign keys")["status"], "ok");
    assert!(finding(&report, "integrity").get("problems").is_none());

    let (code, stdout) = check_deep(&dir, &[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("integrity") && stdout.contains("no problem"),
        "{stdout}"
    );
    // The server kept serving.
    assert_eq!(server.get("/healthz", None).await.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_index_page_fails_the_integrity_check() {
    let (_server, dir) = stopped_with_users().await;
    let path = dir.join("wxauth.db");
    let (page_size, root): (i64, i64) = {
        let conn = rusqlite::Connection::open(&path).unwrap();
        (
            conn.pragma_query_value(None, "page_size", |r| r.get(0))
                .unwrap(),
            conn.query_row(
                "SELECT rootpage FROM sqlite_schema WHERE name = 'sessions_expiry'",
                [],
                |r| r.get(0),
            )
            .unwrap(),
        )
    };
    // The index's only page gets a page type no b-tree page has.
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.seek(SeekFrom::Start(((root - 1) * page_size) as u64))
        .unwrap();
    file.write_all(&[0xff; 8]).unwrap();
    file.sync_all().unwrap();
    drop(file);

    let (code, stdout) = check_deep(&dir, &["--json"]);
    assert_eq!(code, 1, "{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], false);
    let integrity = finding(&report, "integrity");
    assert_eq!(integrity["status"], "fail", "{integrity}");
    assert!(
        !integrity["problems"].as_array().unwrap().is_empty(),
        "{integrity}"
    );
    assert!(
        integrity["detail"]
            .as_str()
            .unwrap()
            .contains("wxauth restore"),
        "{integrity}"
    );

    let (code, stdout) = check_deep(&dir, &[]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("FAIL  integrity") && stdout.contains("integrity check found"),
        "{stdout}"
    );
    // Without --deep the damage goes unseen: the deep check is what finds it.
    let output = Command::new(env!("CARGO_BIN_EXE_wxauth"))
        .env_clear()
        .env("WXAUTH_DATA_DIR", &dir)
        .args(["check", "--dev"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_whose_parent_is_gone_fails_the_foreign_key_check() {
    let (_server, dir) = stopped_with_users().await;
    {
        let conn = rusqlite::Connection::open(dir.join("wxauth.db")).unwrap();
        conn.pragma_update(None, "foreign_keys", false).unwrap();
        conn.execute(
            "INSERT INTO sessions (id, public_id, secret_hash, user_id, identity_id, \
             created_at, expires_at, max_expires_at, last_seen_at) \
             VALUES (900, 's_orphan', x'00', 424242, (SELECT min(id) FROM identities), \
             1, 2, 3, 1)",
            [],
        )
        .unwrap();
    }
    let (code, stdout) = check_deep(&dir, &["--json"]);
    assert_eq!(code, 1, "{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(finding(&report, "integrity")["status"], "ok");
    let foreign = finding(&report, "foreign keys");
    assert_eq!(foreign["status"], "fail");
    assert_eq!(
        foreign["problems"],
        serde_json::json!(["sessions row 900 refers to a missing row of users"])
    );
    let (code, stdout) = check_deep(&dir, &[]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("FAIL  foreign keys") && stdout.contains("sessions row 900"),
        "{stdout}"
    );
}
