//! A full disk (SPEC §12): the server's data directory is a small tmpfs, filled up with
//! a filler file while clients log in. Logins then answer 503 `storage_unavailable` with
//! `Retry-After` and change nothing, reads keep working and `/readyz` says the server is
//! not ready; once the filler is gone the server takes writes again by itself. After a
//! `kill -9` and a restart, every login acknowledged before, during and after still works.
//!
//! Mounting needs root. Where it is not permitted the test says so and passes, except
//! under `CI`, where that is a failure: CI runs as root and must run it.
//!
//! Runs the binary named by `TEST_WXAUTH_BIN` (CI points it at the release build), or the
//! one cargo built for the tests.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The tmpfs's size: the database, its log and the key file fit many times over.
const DISK_SIZE: &str = "8m";
/// Logins tried after the disk is full before the test gives up on seeing one refused.
const MAX_LOGINS_TO_FILL: usize = 20_000;
/// Logins tried once the first one was refused.
const REFUSED_LOGINS: usize = 20;

fn binary() -> String {
    std::env::var("TEST_WXAUTH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_wxauth").to_owned())
}

/// A tmpfs mounted for the test, unmounted when dropped, whatever the test's outcome.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` at `at`; `None` where mounting is not permitted.
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .stderr(Stdio::piped())
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Tmpfs(at.to_owned())),
            Ok(out) => {
                skip(&format!(
                    "mount -t tmpfs failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
                None
            }
            Err(e) => {
                skip(&format!("cannot run mount: {e}"));
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.0).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            // Something still holds a file there: detach it now, it goes when released.
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Says why the test does not run; under `CI` that is a failure.
fn skip(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "the disk-full test must run in CI (as root): {why}"
    );
    eprintln!("SKIPPED disk_full: {why}; it needs root to mount a tmpfs");
}

/// The server process, killed when dropped so a failing test leaves nothing behind.
struct Server {
    child: Child,
    base: String,
    logs: Receiver<Value>,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let mut command = Command::new(binary());
        // The server's settings are the ones below and nothing inherited: wxauth refuses
        // a WXAUTH_* name it does not know, and cargo hands the build's own to tests.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("WXAUTH_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .args([
                "serve",
                "--dev",
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .env("WXAUTH_DATA_DIR", data_dir)
            .env("WXAUTH_LOGIN_RATE_LIMIT", "off")
            .env("WXAUTH_PROFILE_RATE_LIMIT", "off")
            .env("WXAUTH_LOG", "warn,wxauth::cli=info,wxauth::db=info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, logs) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(entry) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(entry);
                }
            }
        });
        let mut server = Server {
            child,
            base: String::new(),
            logs,
        };
        loop {
            let entry = match server.logs.recv_timeout(Duration::from_secs(30)) {
                Ok(entry) => entry,
                Err(e) => panic!("the server did not start: {e:?}"),
            };
            if entry["fields"]["message"] == "wxauth is serving" {
                server.base = format!("http://{}", entry["fields"]["addr"].as_str().unwrap());
                return server;
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The messages logged so far, waiting briefly for the last ones.
    fn messages(&self) -> Vec<String> {
        let mut messages = Vec::new();
        loop {
            match self.logs.recv_timeout(Duration::from_millis(500)) {
                Ok(entry) => {
                    messages.push(entry["fields"]["message"].as_str().unwrap_or("").to_owned())
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    return messages;
                }
            }
        }
    }

    fn kill(mut self) {
        let killed = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fills the filesystem holding `path` with a file of zeros, to the last page.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let mut written = 0;
    for chunk in [1 << 20, 4096, 512] {
        let zeros = vec![0u8; chunk];
        while file.write_all(&zeros).is_ok() {
            written += chunk as u64;
        }
    }
    // A write that failed part-way may have left bytes the file keeps; so much the better.
    let _ = file.sync_all();
    written
}

async fn login(http: &reqwest::Client, server: &Server, name: &str) -> reqwest::Response {
    http.post(server.url("/v1/login"))
        .json(&json!({ "code": format!("dev:{name}") }))
        .send()
        .await
        .unwrap()
}

async fn status(http: &reqwest::Client, url: String, token: Option<&str>) -> u16 {
    let mut request = http.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status().as_u16()
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), DISK_SIZE) else {
        return;
    };
    let data = disk.0.join("data");
    let filler = disk.0.join("filler");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    wxauth::wechat::client::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let server = Server::start(&data);
    let mut acknowledged: Vec<String> = Vec::new();
    let (early, before_full, squeezed_in, refused, recovery) = runtime.block_on(async {
        for n in 0..20 {
            let body: Value = login(&http, &server, &format!("early-{n}"))
                .await
                .json()
                .await
                .unwrap();
            acknowledged.push(body["token"].as_str().unwrap().to_owned());
        }
        assert_eq!(status(&http, server.url("/readyz"), None).await, 200);

        let early = acknowledged.len();
        let filled = fill(&filler);
        assert!(filled > 0, "the filler found no room");
        // The log keeps the room it had: logins may go on for a while.
        let mut first_refusal = None;
        for n in 0..MAX_LOGINS_TO_FILL {
            let response = login(&http, &server, &format!("fill-{n}")).await;
            if response.status() == 200 {
                let body: Value = response.json().await.unwrap();
                acknowledged.push(body["token"].as_str().unwrap().to_owned());
                continue;
            }
            first_refusal = Some(response);
            break;
        }
        let before_full = acknowledged.len();
        let response = first_refusal.unwrap_or_else(|| {
            panic!("{MAX_LOGINS_TO_FILL} logins after the disk filled all succeeded")
        });
        let mut refused: usize = 0;
        let mut answer = Some(response);
        for n in 0.. {
            if refused == REFUSED_LOGINS {
                break;
            }
            let response = match answer.take() {
                Some(first) => first,
                None => login(&http, &server, &format!("refused-{n}")).await,
            };
            // A failed commit leaves its frames in the log, and a smaller one may fit in
            // their place: that login is acknowledged, and durable.
            if response.status() == 200 && n < 10 * REFUSED_LOGINS {
                let body: Value = response.json().await.unwrap();
                acknowledged.push(body["token"].as_str().unwrap().to_owned());
                continue;
            }
            assert_eq!(response.status(), 503);
            let retry_after: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(retry_after >= 1);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("nothing was changed")),
                "{body}"
            );
            refused += 1;
        }

        // Reads keep working; readiness says writes do not.
        for token in [&acknowledged[0], &acknowledged[before_full - 1]] {
            assert_eq!(
                status(&http, server.url("/v1/session"), Some(token)).await,
                200
            );
            assert_eq!(status(&http, server.url("/v1/me"), Some(token)).await, 200);
        }
        assert_eq!(status(&http, server.url("/readyz"), None).await, 503);
        // The server's own probes, a write every second, fail too while the disk is full.
        tokio::time::sleep(wxauth::db::WRITE_PROBE_INTERVAL * 5 / 2).await;
        assert_eq!(status(&http, server.url("/readyz"), None).await, 503);
        let metrics = http
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.lines().any(|l| l == "wxauth_storage_unavailable 1"),
            "{metrics}"
        );

        // Space returns; with no request writing, readiness comes back by itself.
        std::fs::remove_file(&filler).unwrap();
        let freed = Instant::now();
        loop {
            if status(&http, server.url("/readyz"), None).await == 200 {
                break;
            }
            assert!(
                freed.elapsed() < Duration::from_secs(30),
                "still not ready 30 s after the disk had room again"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let recovery = freed.elapsed();
        let squeezed_in = acknowledged.len() - before_full;
        let body: Value = login(&http, &server, "after").await.json().await.unwrap();
        acknowledged.push(body["token"].as_str().unwrap().to_owned());
        (early, before_full, squeezed_in, refused, recovery)
    });

    // One episode, logged once as it began and once as it ended.
    let messages = server.messages();
    let count = |text: &str| messages.iter().filter(|m| m.contains(text)).count();
    assert_eq!(count("cannot take writes"), 1, "{messages:#?}");
    assert_eq!(count("takes writes again"), 1, "{messages:#?}");

    server.kill();
    let conn = rusqlite::Connection::open(data.join("wxauth.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    // Each acknowledged login made a user, and no refused one did.
    let users: i64 = conn
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(users, acknowledged.len() as i64);
    drop(conn);

    let server = Server::start(&data);
    runtime.block_on(async {
        for token in &acknowledged {
            assert_eq!(
                status(&http, server.url("/v1/session"), Some(token)).await,
                200,
                "an acknowledged login was lost"
            );
        }
    });
    drop(server);
    println!(
        "disk full: {before_full} logins acknowledged before the disk filled ({early} before \
         the filler, {} more while the log had room), {refused} answered 503 \
         storage_unavailable ({squeezed_in} more squeezed in between them), ready again {} \
         ms after space returned; all {} acknowledged logins survived kill -9",
        before_full - early,
        recovery.as_millis(),
        acknowledged.len()
    );
    drop(disk);
}
