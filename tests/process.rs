//! The `wxauth` executable itself: startup errors and exit codes, file permissions, a
//! clean drain on SIGTERM, and the fake WeChat run on its own.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

fn wxauth(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wxauth"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WXAUTH_DATA_DIR", data_dir)
        .env("WXAUTH_LOG_FORMAT", "json");
    command
}

/// Runs to completion and returns (exit code, stderr).
fn run(command: &mut Command) -> (i32, String) {
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn dev_mode_refuses_a_real_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = run(wxauth(dir.path())
        .args(["serve", "--dev"])
        .env("WXAUTH_APPID", "wx123")
        .env("WXAUTH_SECRET", "real-secret-value"));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("dev mode refuses"), "{stderr}");
    assert!(!stderr.contains("real-secret-value"));
}

#[test]
fn a_missing_secret_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = run(wxauth(dir.path()).arg("serve").env("WXAUTH_APPID", "wx123"));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no AppSecret"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let (code, stderr) = run(wxauth(dir.path()).arg("serve"));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("serve --dev"), "{stderr}");
}

#[test]
fn unknown_config_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wxauth.toml");
    std::fs::write(
        &config,
        "appid = \"wx1\"\nsecret = \"s\"\nlisten_addr = \"0.0.0.0:1\"\n",
    )
    .unwrap();
    let (code, stderr) = run(wxauth(dir.path()).arg("serve"));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("listen_addr"), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
    let (code, stderr) = run(wxauth(dir.path())
        .args(["serve", "--dev"])
        .env("WXAUTH_TOKEN_TTL", "forever"));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("WXAUTH_TOKEN_TTL"), "{stderr}");
}

#[test]
fn a_newer_database_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join("wxauth.db")).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let (code, stderr) =
        run(wxauth(dir.path()).args(["serve", "--dev", "--listen", "127.0.0.1:0"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("newer than this wxauth"), "{stderr}");
}

#[test]
fn help_is_available() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["mock-wechat", "--help"],
    ] {
        let output = wxauth(dir.path()).args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&output.stdout).contains("Usage"));
    }
    let (code, _) = run(wxauth(dir.path()).arg("serve").arg("--no-such-flag"));
    assert_eq!(code, 2);
}

#[test]
fn version_names_the_commit_and_build_date() {
    let dir = tempfile::tempdir().unwrap();
    let output = wxauth(dir.path()).arg("--version").output().unwrap();
    assert!(output.status.success());
    let line = String::from_utf8(output.stdout).unwrap();
    // wxauth 0.1.0 (0123456789ab 2026-12-05): from a checkout, or `unknown` for both.
    let rest = line
        .trim_end()
        .strip_prefix(concat!("wxauth ", env!("CARGO_PKG_VERSION"), " ("))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{line}"));
    let (commit, date) = rest.split_once(' ').unwrap();
    assert!(
        commit == "unknown" || commit.len() >= 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "{line}"
    );
    let is_date = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    assert!(date == "unknown" || is_date, "{line}");
}

/// A started `wxauth`, killed should the test end before it stopped it.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `wxauth serve --dev` on a free port and returns the child and its address.
fn start_dev_server(data_dir: &Path) -> (Started, String) {
    start_logging(
        wxauth(data_dir).args(["serve", "--dev", "--listen", "127.0.0.1:0"]),
        "wxauth is serving",
    )
}

/// Spawns `command` and waits for the log line `message`, whose `addr` it returns.
fn start_logging(command: &mut Command, message: &str) -> (Started, String) {
    let mut child = Started(command.stderr(Stdio::piped()).spawn().unwrap());
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
            panic!("no {message:?} in the log");
        };
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if entry["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(message))
        {
            let addr = entry["fields"]["addr"].as_str().unwrap().to_owned();
            return (child, addr);
        }
    }
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, addr) = start_dev_server(&data);

    assert_eq!(
        std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for file in ["wxauth.db", "keys.json"] {
        let mode = std::fs::metadata(data.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        wxauth::wechat::client::install_crypto_provider();
        let http = reqwest::Client::new();
        let slow_login = tokio::spawn({
            let http = http.clone();
            let url = format!("http://{addr}/v1/login");
            async move {
                http.post(url)
                    .json(&serde_json::json!({"code": "slow:800:dev:vera"}))
                    .send()
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let status = Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let response = slow_login
            .await
            .unwrap()
            .expect("the in-flight login was cut off");
        assert_eq!(response.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            http.get(format!("http://{addr}/healthz"))
                .send()
                .await
                .is_err(),
            "new connections are refused once shutdown begins"
        );
    });

    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let wal = data.join("wxauth.db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "a clean stop leaves no write-ahead log to replay"
    );
    let conn = rusqlite::Connection::open(data.join("wxauth.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let sessions: i64 = conn
        .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sessions, 1, "the drained login was committed");
}

#[test]
fn the_fake_wechat_on_its_own_serves_a_production_server() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mock, mock_addr) = start_logging(
        wxauth(dir.path()).args(["mock-wechat", "--listen", "127.0.0.1:0"]),
        "fake WeChat API is serving",
    );
    let (mut server, addr) = start_logging(
        wxauth(&dir.path().join("data"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("WXAUTH_APPID", "wx1234567890abcdef")
            .env("WXAUTH_SECRET", "anything")
            .env("WXAUTH_WECHAT_API", format!("http://{mock_addr}"))
            .env("WXAUTH_LOGIN_RATE_LIMIT", "off"),
        "wxauth is serving",
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (first, again, stats) = runtime.block_on(async {
        wxauth::wechat::client::install_crypto_provider();
        let http = reqwest::Client::new();
        let login = |code: String| {
            let http = http.clone();
            let url = format!("http://{addr}/v1/login");
            async move {
                let response = http
                    .post(url)
                    .json(&serde_json::json!({ "code": code }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                response.json::<Value>().await.unwrap()
            }
        };
        // Many at once: the fake answers them all on its one thread.
        let logins: Vec<_> = (0..40)
            .map(|i| tokio::spawn(login(format!("standalone-{i}"))))
            .collect();
        let mut first = Vec::new();
        for handle in logins {
            first.push(handle.await.unwrap());
        }
        let again = login("standalone-7".to_owned()).await;
        let stats: Value = http
            .get(format!("http://{mock_addr}/mock/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (first, again, stats)
    });

    let users: std::collections::HashSet<&str> = first
        .iter()
        .map(|body| body["user"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(users.len(), 40, "each code is a user of its own");
    assert!(first.iter().all(|body| body["new_user"] == true));
    assert!(first[7]["token"].is_string());
    assert_eq!(
        again["token"], first[7]["token"],
        "a repeated code gets its session back without asking WeChat again"
    );
    assert_eq!(stats["jscode2session"], 40);

    for child in [&mut server, &mut mock] {
        let status = Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(child.0.wait().unwrap().code(), Some(0));
    }
}
