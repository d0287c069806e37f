//! Crash safety: clients log in, refresh and log out concurrently while the server is
//! killed with SIGKILL at a random moment, again and again. After every restart each
//! acknowledged login still works, each acknowledged logout is still in force, and the
//! database passes `PRAGMA integrity_check`.
//!
//! Runs the binary named by `TEST_WXAUTH_BIN` (CI points it at the release build), or the
//! one cargo built for the tests.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

const CYCLES: usize = 10;
const CLIENTS: usize = 4;

fn binary() -> String {
    std::env::var("TEST_WXAUTH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_wxauth").to_owned())
}

fn start(data_dir: &Path) -> (Child, String) {
    let mut child = Command::new(binary())
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
        .env("WXAUTH_LOG", "warn,wxauth::cli=info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not start");
        };
        if let Ok(entry) = serde_json::from_str::<Value>(&line)
            && entry["fields"]["message"] == "wxauth is serving"
        {
            return (child, entry["fields"]["addr"].as_str().unwrap().to_owned());
        }
    }
}

/// A pseudo-random number from the clock; enough to vary the kill moment.
fn jitter(bound: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(nanos.wrapping_mul(2_654_435_761)) % bound
}

#[derive(Default)]
struct Acknowledged {
    logins: Vec<String>,
    logouts: HashSet<String>,
    /// Logouts sent but not answered: the kill may have come before or after the commit.
    unsure: HashSet<String>,
    refreshes: usize,
}

impl Acknowledged {
    /// The status a token must get now: 200, 401, or `None` when either is right.
    fn expected(&self, token: &str) -> Option<u16> {
        if self.logouts.contains(token) {
            Some(401)
        } else if self.unsure.contains(token) {
            None
        } else {
            Some(200)
        }
    }
}

/// The server process, killed when dropped so a failing test leaves nothing behind.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn client(http: reqwest::Client, base: String, tag: String, acked: Arc<Mutex<Acknowledged>>) {
    for n in 0.. {
        let Ok(response) = http
            .post(format!("{base}/v1/login"))
            .json(&json!({ "code": format!("dev:{tag}-{n}") }))
            .send()
            .await
        else {
            return;
        };
        let Ok(body) = response.json::<Value>().await else {
            return;
        };
        let Some(token) = body["token"].as_str().map(str::to_owned) else {
            continue;
        };
        acked.lock().unwrap().logins.push(token.clone());
        match n % 3 {
            0 => {
                if let Ok(r) = http
                    .post(format!("{base}/v1/session/refresh"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    && r.status() == 200
                {
                    acked.lock().unwrap().refreshes += 1;
                }
            }
            1 => {
                acked.lock().unwrap().unsure.insert(token.clone());
                if let Ok(r) = http
                    .post(format!("{base}/v1/logout"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    && r.status() == 204
                {
                    let mut acked = acked.lock().unwrap();
                    acked.unsure.remove(&token);
                    acked.logouts.insert(token);
                }
            }
            _ => {}
        }
    }
}

/// Checks every token acknowledged so far against what it must answer.
async fn check_all(http: &reqwest::Client, base: &str, acked: &Mutex<Acknowledged>, cycle: usize) {
    let expectations: Vec<(String, Option<u16>)> = {
        let a = acked.lock().unwrap();
        a.logins
            .iter()
            .map(|t| (t.clone(), a.expected(t)))
            .collect()
    };
    for (token, expected) in expectations {
        let response = http
            .get(format!("{base}/v1/session"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        match expected {
            Some(200) => assert_eq!(status, 200, "cycle {cycle}: a login was lost: {body}"),
            Some(_) => assert_eq!(
                body["error"]["code"], "session_revoked",
                "cycle {cycle}: a logout was lost"
            ),
            None => assert!(status == 200 || status == 401, "cycle {cycle}: {body}"),
        }
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    wxauth::wechat::client::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let acked = Arc::new(Mutex::new(Acknowledged::default()));

    for cycle in 0..CYCLES {
        let (child, addr) = start(&data);
        let mut server = Server(child);
        let base = format!("http://{addr}");
        runtime.block_on(async {
            // Everything acknowledged before every earlier kill must hold now.
            check_all(&http, &base, &acked, cycle).await;
            let tasks: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    tokio::spawn(client(
                        http.clone(),
                        base.clone(),
                        format!("c{cycle}x{c}"),
                        Arc::clone(&acked),
                    ))
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(150 + jitter(600))).await;
            let killed = Command::new("kill")
                .args(["-KILL", &server.0.id().to_string()])
                .status()
                .unwrap();
            assert!(killed.success());
            for task in tasks {
                let _ = task.await;
            }
        });
        server.0.wait().unwrap();
        let conn = rusqlite::Connection::open(data.join("wxauth.db")).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "cycle {cycle}");
    }

    // One last restart to check the final kill too.
    let (child, addr) = start(&data);
    let _server = Server(child);
    runtime.block_on(check_all(&http, &format!("http://{addr}"), &acked, CYCLES));
    let a = acked.lock().unwrap();
    assert!(
        a.logins.len() >= CYCLES,
        "too little traffic to mean anything"
    );
    println!(
        "crash safety: {CYCLES} SIGKILL cycles, {} acknowledged logins, {} acknowledged \
         logouts, {} unanswered logouts, {} refreshes; all held, integrity ok",
        a.logins.len(),
        a.logouts.len(),
        a.unsure.len(),
        a.refreshes
    );
}
