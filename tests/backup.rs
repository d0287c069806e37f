//! `wxauth backup` under write load and `wxauth restore` into a fresh data directory:
//! every session acknowledged before the backup started works on a server started from
//! the restored copy, and restore refuses a data directory a server is using.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use common::TestServer;
use serde_json::Value;
use wxauth::config::RateSetting;

/// `wxauth ARGS` on `data_dir`; returns (exit code, stdout, stderr).
fn wxauth(data_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_wxauth"))
        .env_clear()
        .env("WXAUTH_DATA_DIR", data_dir)
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A login acknowledged by the server: its token and user, and when the answer came.
struct Acknowledged {
    token: String,
    user: String,
    at: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_every_acknowledged_session() {
    // No per-IP login limit: the load comes from one address.
    let server = Arc::new(
        TestServer::start_with(|layer| layer.login_rate_limit = Some(RateSetting(None))).await,
    );
    let data = server.dir.path().join("data");
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("wxauth.wxbak");
    // Enough rows that the backup takes longer than a login, even on a busy machine, so
    // that logins are seen completing while it runs.
    server
        .db_rw()
        .execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000)
             INSERT INTO users (id, public_id, created_at, updated_at)
                 SELECT 1000000 + i, 'u_seed' || i, 0, 0 FROM n;
             INSERT INTO identities (user_id, appid, openid, created_at)
                 SELECT id, 'wxseed', 'o_' || public_id, 0 FROM users WHERE id > 1000000;",
        )
        .unwrap();

    // Four clients log new users in, back to back, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for client in 0..4 {
        let (server, stop, answered) = (
            Arc::clone(&server),
            Arc::clone(&stop),
            Arc::clone(&answered),
        );
        clients.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let body = server.login_ok(&format!("dev:load{client}x{n}")).await;
                acknowledged.push(Acknowledged {
                    token: body["token"].as_str().unwrap().to_owned(),
                    user: body["user"]["id"].as_str().unwrap().to_owned(),
                    at: Instant::now(),
                });
                answered.fetch_add(1, Ordering::SeqCst);
            }
            acknowledged
        }));
    }
    // Counted as the clients record their answers, not in the database: a commit is
    // seen there before its answer reaches the client.
    while answered.load(Ordering::SeqCst) < 40 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    let started = Instant::now();
    let backup = {
        let (data, file) = (data.clone(), file.clone());
        tokio::task::spawn_blocking(move || {
            wxauth(&data, &["backup", file.to_str().unwrap(), "--json"])
        })
        .await
        .unwrap()
    };
    let finished = Instant::now();
    stop.store(true, Ordering::SeqCst);
    let mut acknowledged = Vec::new();
    for client in clients {
        acknowledged.extend(client.await.unwrap());
    }
    let (code, stdout, stderr) = backup;
    assert_eq!(code, 0, "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["format"], "wxauth-backup/1");
    assert_eq!(summary["signing_keys"], 1);

    let before: Vec<&Acknowledged> = acknowledged.iter().filter(|a| a.at < started).collect();
    let during = acknowledged
        .iter()
        .filter(|a| a.at > started && a.at < finished)
        .count();
    assert!(before.len() >= 40);
    assert!(
        during > 0,
        "the server kept serving logins during the backup"
    );
    assert!(summary["sessions"].as_i64().unwrap() >= before.len() as i64);

    // A login that starts after the backup ended is not in it.
    let later = server.token("dev:after-the-backup").await;

    // A running server's data directory is refused, and left alone.
    let (code, _, stderr) = wxauth(&data, &["restore", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("server is running"), "{stderr}");
    assert_eq!(server.get("/v1/session", Some(&later)).await.status(), 200);

    let (code, _, stderr) = wxauth(&data, &["restore", "--dry-run", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("usable backup"), "{stderr}");

    let fresh = out.path().join("restored");
    let (code, stdout, stderr) = wxauth(&fresh, &["restore", file.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let restored: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(restored["previous"], Value::Null);

    let restored_server =
        TestServer::start_with(|layer| layer.data_dir = Some(fresh.clone())).await;
    for ack in &before {
        let response = restored_server.get("/v1/session", Some(&ack.token)).await;
        assert_eq!(
            response.status(),
            200,
            "a session acknowledged before the backup"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["user"]["id"], ack.user.as_str());
    }
    let response = restored_server.get("/v1/session", Some(&later)).await;
    assert_eq!(
        common::error_of(response).await,
        (401, "invalid_token".into())
    );

    // The backup can come on standard input, for a restore run as the service's user.
    let piped = out.path().join("piped");
    let output = Command::new(env!("CARGO_BIN_EXE_wxauth"))
        .env_clear()
        .env("WXAUTH_DATA_DIR", &piped)
        .args(["restore", "-"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(
        std::fs::read(piped.join("keys.json")).unwrap(),
        std::fs::read(fresh.join("keys.json")).unwrap()
    );

    // Restoring over a stopped server's data keeps what it replaces.
    restored_server.stop().await;
    let (code, stdout, stderr) = wxauth(&fresh, &["restore", file.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let restored: Value = serde_json::from_str(&stdout).unwrap();
    let previous = Path::new(restored["previous"].as_str().unwrap());
    assert!(previous.join("wxauth.db").exists() && previous.join("keys.json").exists());
    drop(server);
}

#[test]
fn backup_and_restore_failures_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = wxauth(dir.path(), &["backup", "/nonexistent/x.wxbak"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("nothing to back up"), "{stderr}");

    let junk = dir.path().join("junk.wxbak");
    std::fs::write(&junk, "not a backup").unwrap();
    let target = dir.path().join("target");
    let (code, _, stderr) = wxauth(&target, &["restore", junk.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("not a usable wxauth backup"), "{stderr}");
    assert!(!target.join("wxauth.db").exists());

    let (code, _, _) = wxauth(dir.path(), &["backup"]);
    assert_eq!(code, 2);
    let (code, stdout, _) = wxauth(dir.path(), &["backup", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("holds secrets"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_cannot_take_a_data_directory_in_use() {
    let server = TestServer::start().await;
    let data = server.dir.path().join("data");
    let (code, _, stderr) = tokio::task::spawn_blocking(move || {
        wxauth(&data, &["serve", "--dev", "--listen", "127.0.0.1:0"])
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("another wxauth server"), "{stderr}");
    server.stop().await;
}

/// The scheduled backups in `dir`, by name.
fn scheduled(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.ends_with(".wxbak"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_backups_on_a_schedule_and_keeps_the_newest() {
    let server = TestServer::start_with(|layer| {
        layer.backup_interval = Some("200ms".parse().unwrap());
        layer.backup_keep = Some(2);
    })
    .await;
    let token = server.token("dev:sched").await;
    let dir = server.dir.path().join("data").join("backups");

    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    let first = loop {
        let names = scheduled(&dir);
        if names.len() == 2 {
            break names;
        }
        assert!(Instant::now() < deadline, "no backups: {names:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    // Later backups replace the oldest ones. A new backup is in place before the oldest
    // goes, so for a moment there are three; never more.
    loop {
        let names = scheduled(&dir);
        assert!(names.len() <= 3, "{names:?}");
        if names.len() == 2 && names != first {
            break;
        }
        assert!(Instant::now() < deadline, "no newer backup: {names:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let newest = dir.join(scheduled(&dir).pop().unwrap());
    let summary = wxauth::ops::backup::verify_file(&newest, None, &dir).unwrap();
    assert_eq!(summary.sessions, 1);

    let metrics = server.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("wxauth_scheduled_backups_total{result=\"ok\"} ")),
        "{metrics}"
    );
    // Each scheduled backup is in the audit log, written through the server's writer
    // once the backup and its pruning are done: the first two are there by now.
    let recorded: i64 = server
        .db()
        .query_row(
            "SELECT count(*) FROM audit_log \
             WHERE action = 'backup' AND actor = 'wxauth' AND source = 'schedule'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        recorded >= 2,
        "{recorded} scheduled backups in the audit log"
    );
    assert_eq!(server.get("/v1/session", Some(&token)).await.status(), 200);
    server.stop().await;
}

/// Files in `dir` whose names start with a dot: temporary files left behind.
fn hidden(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_backup_restores_only_with_its_passphrase() {
    let server = TestServer::start().await;
    let token = server.token("dev:enc").await;
    let data = server.dir.path().join("data");
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("secret.wxbak");
    let (right, wrong) = (out.path().join("right"), out.path().join("wrong"));
    std::fs::write(&right, "a long passphrase\n").unwrap();
    std::fs::write(&wrong, "not it\n").unwrap();
    let (file_arg, right_arg, wrong_arg) = (
        file.to_str().unwrap().to_owned(),
        right.to_str().unwrap().to_owned(),
        wrong.to_str().unwrap().to_owned(),
    );

    let run = {
        let data = data.clone();
        move |args: Vec<String>| {
            let data = data.clone();
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                wxauth(&data, &args)
            })
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let (code, stdout, stderr) = run(args(&[
        "backup",
        &file_arg,
        "--passphrase-file",
        &right_arg,
        "--json",
    ]))
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["encrypted"], true);
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"WXBKENC1"));
    let keys = std::fs::read_to_string(data.join("keys.json")).unwrap();
    let active: Value = serde_json::from_str(&keys).unwrap();
    let secret = active["keys"][0]["secret"].as_str().unwrap();
    assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
    assert!(hidden(&data).is_empty(), "{:?}", hidden(&data));

    let (code, stdout, stderr) = run(args(&[
        "restore",
        "--dry-run",
        &file_arg,
        "--passphrase-file",
        &right_arg,
        "--json",
    ]))
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    let checked: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(checked["encrypted"], true);
    assert_eq!(checked["sessions"], 1);
    assert!(hidden(&data).is_empty(), "{:?}", hidden(&data));
    server.stop().await;

    let fresh = out.path().join("restored");
    let fresh_arg = fresh.to_str().unwrap().to_owned();
    let (code, _, stderr) = run(args(&["restore", &file_arg, "--data-dir", &fresh_arg]))
        .await
        .unwrap();
    assert_eq!(code, 1);
    assert!(stderr.contains("is encrypted"), "{stderr}");
    let (code, _, stderr) = run(args(&[
        "restore",
        &file_arg,
        "--data-dir",
        &fresh_arg,
        "--passphrase-file",
        &wrong_arg,
    ]))
    .await
    .unwrap();
    assert_eq!(code, 1);
    assert!(stderr.contains("passphrase is wrong"), "{stderr}");
    assert!(!fresh.join("wxauth.db").exists());
    let (code, _, stderr) = run(args(&[
        "restore",
        &file_arg,
        "--data-dir",
        &fresh_arg,
        "--passphrase-file",
        &right_arg,
    ]))
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(hidden(&fresh).is_empty(), "{:?}", hidden(&fresh));

    let restored = TestServer::start_with(|layer| layer.data_dir = Some(fresh.clone())).await;
    assert_eq!(
        restored.get("/v1/session", Some(&token)).await.status(),
        200
    );
    restored.stop().await;
}
