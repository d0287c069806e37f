//! The key file and the database belong together. A server refuses to start with a key
//! file that is missing or belongs to another database, and says how to fix it; a new
//! one is made only for an empty database; `wxauth keys reset --yes` starts over;
//! `keys rotate` and `retire`, `backup` and `restore` keep the two matched; a running
//! server reloads a changed key file only if it is still the database's.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestServer, error_of};
use wxauth::App;
use wxauth::app::StartError;

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

/// `wxauth serve --dev` on `data_dir`, expected to refuse to start; returns its exit
/// code and standard error. A server that starts anyway is stopped and fails the test.
fn serve_refused(data_dir: &Path) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wxauth"))
        .env_clear()
        .env("WXAUTH_DATA_DIR", data_dir)
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the server started on {}", data_dir.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn data(server: &TestServer) -> std::path::PathBuf {
    server.dir.path().join("data")
}

/// The keys the database records as needed, as `kind id`.
fn recorded(server: &TestServer) -> Vec<String> {
    server
        .db()
        .prepare("SELECT kind || ' ' || id FROM needed_keys ORDER BY kind, id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The active kid and every kid of the key file in `dir`.
fn kids(dir: &Path) -> (String, Vec<String>) {
    let file = wxauth::keys::key_file::KeyFile::load(&dir.join("keys.json")).unwrap();
    (
        file.active.clone(),
        file.keys.iter().map(|k| k.kid.clone()).collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_data_directory_gets_keys_that_the_database_records() {
    let mut server = TestServer::start().await;
    let (active, _) = kids(&data(&server));
    let needed = recorded(&server);
    assert_eq!(needed.len(), 2, "{needed:?}");
    assert_eq!(needed[0].split(' ').next(), Some("data"));
    assert_eq!(needed[1], format!("signing {active}"));

    // No user and no session yet: a lost key file is simply made again.
    server
        .restart_after(|dir| std::fs::remove_file(dir.join("keys.json")).unwrap())
        .await;
    let (again, _) = kids(&data(&server));
    assert_ne!(again, active);
    assert!(recorded(&server).contains(&format!("signing {again}")));
    let token = server.token("dev:amy").await;
    assert_eq!(server.get("/v1/session", Some(&token)).await.status(), 200);

    // A database from before the record (schema 4, upgraded) records the key file it
    // finds on its next start.
    let before = recorded(&server);
    server
        .restart_after(|dir| {
            let conn = rusqlite::Connection::open(dir.join("wxauth.db")).unwrap();
            conn.execute("DELETE FROM needed_keys", []).unwrap();
        })
        .await;
    assert_eq!(recorded(&server), before);
    assert_eq!(server.get("/v1/session", Some(&token)).await.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_foreign_key_file_refuses_to_start_and_names_the_fix() {
    let mut server = TestServer::start().await;
    let token = server.token("dev:amy").await;
    let dir = data(&server);
    let app = server.app.take().unwrap();
    app.shutdown().await;
    let keys = std::fs::read(dir.join("keys.json")).unwrap();

    // Missing: App::start says so, and so does the binary, with exit code 1.
    std::fs::remove_file(dir.join("keys.json")).unwrap();
    let err = App::start(
        server.config.clone(),
        std::sync::Arc::new(server.clock.clone()),
    )
    .await
    .err()
    .expect("no key file, yet it started");
    assert!(matches!(err, StartError::KeyFileMissing { .. }), "{err}");
    let (code, stderr) = serve_refused(&dir);
    assert_eq!(code, 1, "{stderr}");
    for needle in [
        "keys.json",
        "is missing",
        dir.to_str().unwrap(),
        "wxauth keys reset --yes",
    ] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    assert!(!dir.join("keys.json").exists(), "no new key file was made");

    // Damaged: not JSON.
    std::fs::write(dir.join("keys.json"), "{\"active\": ").unwrap();
    let (code, stderr) = serve_refused(&dir);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("damaged") && stderr.contains("wxauth keys reset --yes"),
        "{stderr}"
    );

    // Foreign: the key file of another data directory.
    let other_server = TestServer::start().await;
    std::fs::copy(data(&other_server).join("keys.json"), dir.join("keys.json")).unwrap();
    other_server.stop().await;
    let err = App::start(
        server.config.clone(),
        std::sync::Arc::new(server.clock.clone()),
    )
    .await
    .err()
    .expect("a foreign key file, yet it started");
    assert!(matches!(err, StartError::KeyFileForeign { .. }), "{err}");
    let (code, stderr) = serve_refused(&dir);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not this database's"), "{stderr}");
    assert!(stderr.contains("wxauth keys reset --yes"), "{stderr}");
    // `check` sees the same.
    let (code, stdout, _) = wxauth(&dir, &["check", "--dev"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("not this database's"), "{stdout}");

    // The right file brought back: it starts, and the old token still works.
    std::fs::write(dir.join("keys.json"), keys).unwrap();
    server.restart().await;
    assert_eq!(server.get("/v1/session", Some(&token)).await.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_reset_starts_over_with_new_keys_and_ends_every_session() {
    let mut server = TestServer::start().await;
    let token = server.token("dev:amy").await;
    server.token("dev:bob").await;
    let dir = data(&server);
    let (old_active, _) = kids(&dir);

    // Not while a server runs.
    let (code, _, stderr) = wxauth(&dir, &["keys", "reset", "--yes"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("stop it"), "{stderr}");

    let app = server.app.take().unwrap();
    app.shutdown().await;
    std::fs::remove_file(dir.join("keys.json")).unwrap();
    server
        .db_rw()
        .execute(
            "INSERT INTO access_tokens VALUES (?1, x'0102', 0, 0, 0, 0)",
            [common::APPID],
        )
        .unwrap();

    // Without --yes it only says what it would do.
    let (code, _, stderr) = wxauth(&dir, &["keys", "reset"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("end 2 session(s)") && stderr.contains("1 access token(s)"),
        "{stderr}"
    );
    assert!(stderr.contains("--yes"), "{stderr}");
    assert!(!dir.join("keys.json").exists());
    assert_eq!(
        server.count("sessions WHERE revoked_at IS NULL"),
        2,
        "nothing changed"
    );

    let (code, stdout, stderr) = wxauth(&dir, &["keys", "reset", "--yes", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("WARNING"), "{stderr}");
    let outcome: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(outcome["dropped"]["sessions"], 2);
    assert_eq!(outcome["dropped"]["session_keys"], 2);
    assert_eq!(outcome["dropped"]["access_tokens"], 1);
    let (new_active, _) = kids(&dir);
    assert_eq!(outcome["active"], new_active.as_str());
    assert_ne!(new_active, old_active);
    assert_eq!(server.count("sessions WHERE revoked_at IS NULL"), 0);
    assert_eq!(server.count("identities WHERE session_key IS NOT NULL"), 0);
    assert_eq!(server.count("access_tokens"), 0);
    assert_eq!(server.count("users"), 2, "users stay");
    assert!(recorded(&server).contains(&format!("signing {new_active}")));

    // It starts; the old token is refused, and logging in again works.
    server.restart().await;
    assert_eq!(
        error_of(server.get("/v1/session", Some(&token)).await).await,
        (401, "invalid_token".into())
    );
    let fresh = server.token("dev:amy").await;
    assert_eq!(server.get("/v1/session", Some(&fresh)).await.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_and_retire_keep_the_record_in_step() {
    let mut server = TestServer::start().await;
    let token = server.token("dev:amy").await;
    let dir = data(&server);
    let (first, _) = kids(&dir);
    let before_rotation = std::fs::read(dir.join("keys.json")).unwrap();

    // Beside the running server.
    let (code, stdout, stderr) = wxauth(&dir, &["keys", "rotate"]);
    assert_eq!(code, 0, "{stderr}");
    let second = stdout.trim().to_owned();
    let needed = recorded(&server);
    assert!(needed.contains(&format!("signing {first}")), "{needed:?}");
    assert!(needed.contains(&format!("signing {second}")), "{needed:?}");

    // A copy of the key file from before the rotation lacks the new key.
    let app = server.app.take().unwrap();
    app.shutdown().await;
    let rotated = std::fs::read(dir.join("keys.json")).unwrap();
    std::fs::write(dir.join("keys.json"), &before_rotation).unwrap();
    let (code, stderr) = serve_refused(&dir);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("signing key {second}")),
        "{stderr}"
    );
    // Nor do rotate or retire make such a file seem to be the database's.
    let (code, _, stderr) = wxauth(&dir, &["keys", "rotate"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not this database's"), "{stderr}");
    std::fs::write(dir.join("keys.json"), &rotated).unwrap();

    // Retired, the first key is no longer needed: its tokens are refused and it blocks
    // nothing.
    let (code, _, stderr) = wxauth(&dir, &["keys", "retire", &first]);
    assert_eq!(code, 0, "{stderr}");
    server.restart().await;
    let needed = recorded(&server);
    assert!(!needed.contains(&format!("signing {first}")), "{needed:?}");
    assert!(needed.contains(&format!("signing {second}")), "{needed:?}");
    assert_eq!(
        error_of(server.get("/v1/session", Some(&token)).await).await,
        (401, "invalid_token".into())
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_brings_the_backups_keys_over_a_wrong_key_file() {
    let source = TestServer::start().await;
    let token = source.token("dev:amy").await;
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("b.wxbak");
    let (code, _, stderr) = wxauth(&data(&source), &["backup", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");

    // Another deployment, with users of its own and its own keys.
    let mut target = TestServer::start().await;
    target.token("dev:zed").await;
    let dir = data(&target);
    let app = target.app.take().unwrap();
    app.shutdown().await;
    let (code, _, stderr) = wxauth(&dir, &["restore", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read(dir.join("keys.json")).unwrap(),
        std::fs::read(data(&source).join("keys.json")).unwrap()
    );
    target.restart().await;
    let body = target.session_of(&token).await;
    assert!(body["session"]["id"].is_string(), "{body}");

    // A wrong key file put back after the restore is refused again.
    target.app.take().unwrap().shutdown().await;
    let stranger = TestServer::start().await;
    std::fs::copy(data(&stranger).join("keys.json"), dir.join("keys.json")).unwrap();
    let (code, stderr) = serve_refused(&dir);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not this database's"), "{stderr}");
    stranger.stop().await;
    source.stop().await;
}

/// The kid a token was signed with.
fn kid_of(token: &str) -> &str {
    token.split('.').nth(1).unwrap()
}

/// Waits until the logs hold `needle`.
async fn logged(logs: &common::LogCapture, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !logs.text().contains(needle) {
        assert!(Instant::now() < deadline, "never logged: {needle}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_refuses_a_foreign_key_file_and_reloads_a_rotated_one() {
    // The only test of this file that reads the logs.
    let logs = common::LogCapture::install();
    let server = TestServer::start().await;
    let token = server.token("dev:amy").await;
    let dir = data(&server);
    let path = dir.join("keys.json");
    let ours = std::fs::read(&path).unwrap();
    let (active, _) = kids(&dir);

    // Another database's key file put in place beside the running server: the keys in
    // use stay, and the log says why the file was refused.
    let other = TestServer::start().await;
    std::fs::copy(data(&other).join("keys.json"), &path).unwrap();
    other.stop().await;
    logged(
        &logs,
        &format!("the key file {} is not this database's", path.display()),
    )
    .await;
    assert!(logs.text().contains("keeping the current keys"));
    assert_eq!(server.get("/v1/session", Some(&token)).await.status(), 200);
    let later = server.token("dev:bob").await;
    assert_eq!(kid_of(&later), active);
    assert_eq!(server.get("/v1/session", Some(&later)).await.status(), 200);

    // The right file back, then a rotation: new logins get the new key, and the tokens
    // from before keep working.
    std::fs::write(&path, &ours).unwrap();
    let (code, stdout, stderr) = wxauth(&dir, &["keys", "rotate"]);
    assert_eq!(code, 0, "{stderr}");
    let rotated = stdout.trim().to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut n = 0;
    loop {
        n += 1;
        if kid_of(&server.token(&format!("dev:cy{n}")).await) == rotated {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated key file was not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    logged(&logs, "signing keys reloaded").await;
    for old in [&token, &later] {
        assert_eq!(server.get("/v1/session", Some(old)).await.status(), 200);
    }
    server.stop().await;
}
