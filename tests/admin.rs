//! The admin commands run as the real binary against the data directory of a running
//! server: key rotation and retirement take effect without a restart, bans apply to
//! login and to every authenticated call, and failures have clear messages and exit codes.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{TestServer, error_of};
use serde_json::{Value, json};

/// Runs `wxauth ARGS --data-dir DIR` and returns (exit code, stdout, stderr).
fn wxauth(server: &TestServer, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_wxauth"))
        .args(args)
        .arg("--data-dir")
        .arg(server.dir.path().join("data"))
        .env_remove("WXAUTH_DATA_DIR")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Polls `/v1/session` until it answers `status`, for at most three seconds.
async fn eventually_status(server: &TestServer, token: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let got = server
            .get("/v1/session", Some(token))
            .await
            .status()
            .as_u16();
        if got == status {
            return;
        }
        assert!(Instant::now() < deadline, "still {got}, wanted {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn kid_of(token: &str) -> &str {
    token.split('.').nth(1).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_and_retiring_keys_while_serving() {
    let server = TestServer::start().await;
    let old_token = server.token("dev:gus").await;
    let old_kid = kid_of(&old_token).to_owned();

    let (code, stdout, stderr) = wxauth(&server, &["keys", "rotate"]);
    assert_eq!(code, 0, "{stderr}");
    let new_kid = stdout.trim().to_owned();
    assert_ne!(new_kid, old_kid);
    assert!(stderr.contains("within a second"), "{stderr}");

    // New logins get the new key once the server has reloaded; old tokens still work.
    let deadline = Instant::now() + Duration::from_secs(3);
    let new_token = loop {
        let token = server
            .token(&format!("dev:hal#{}", Instant::now().elapsed().as_nanos()))
            .await;
        if kid_of(&token) == new_kid {
            break token;
        }
        assert!(
            Instant::now() < deadline,
            "the server never picked up the new key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        server.get("/v1/session", Some(&old_token)).await.status(),
        200
    );

    // Refreshing moves an old token onto the active key.
    let refreshed: Value = server
        .post_json("/v1/session/refresh", &json!({}), Some(&old_token))
        .await
        .json()
        .await
        .unwrap();
    let moved = refreshed["token"].as_str().unwrap().to_owned();
    assert_eq!(kid_of(&moved), new_kid);

    let (code, stdout, _) = wxauth(&server, &["keys", "list", "--json"]);
    assert_eq!(code, 0);
    let keys: Value = serde_json::from_str(&stdout).unwrap();
    let of_use = |use_: &str| -> Vec<Value> {
        keys.as_array()
            .unwrap()
            .iter()
            .filter(|k| k["use"] == use_)
            .cloned()
            .collect()
    };
    let session = of_use("session");
    assert_eq!(session.len(), 2);
    assert_eq!(session[1]["kid"], new_kid.as_str());
    assert_eq!(session[1]["active"], true);
    assert_eq!(session[1]["state"], "active");
    assert_eq!(session[0]["state"], "accepted");
    assert_eq!(session[0]["retired_at"], Value::Null);
    // The rotation moved the JWT keys along too: the next one signs, a new one waits.
    let states: Vec<Value> = of_use("jwt").iter().map(|k| k["state"].clone()).collect();
    assert_eq!(states, ["replaced", "active", "next"]);

    let (code, _, stderr) = wxauth(&server, &["keys", "retire", &new_kid]);
    assert_eq!(code, 1);
    assert!(stderr.contains("active signing key"), "{stderr}");

    let (code, _, stderr) = wxauth(&server, &["keys", "retire", &old_kid]);
    assert_eq!(code, 0, "{stderr}");
    eventually_status(&server, &old_token, 401).await;
    let response = server.get("/v1/session", Some(&old_token)).await;
    assert_eq!(error_of(response).await, (401, "invalid_token".into()));
    assert_eq!(
        server.get("/v1/session", Some(&new_token)).await.status(),
        200
    );
    assert_eq!(server.get("/v1/session", Some(&moved)).await.status(), 200);

    let (_, stdout, _) = wxauth(&server, &["keys", "list"]);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&old_kid) && l.contains("20")),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_user_is_refused_until_unbanned() {
    let server = TestServer::start().await;
    let login = server.login_ok("dev:ike#1").await;
    let token = login["token"].as_str().unwrap().to_owned();
    let user = login["user"]["id"].as_str().unwrap().to_owned();
    let bystander = server.token("dev:jan").await;

    let (code, _, stderr) = wxauth(
        &server,
        &[
            "users",
            "ban",
            &user,
            "--until",
            "2027-01-01T00:00:00Z",
            "--reason",
            "spam",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    for path in ["/v1/session", "/v1/me"] {
        let response = server.get(path, Some(&token)).await;
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "user_banned", "{path}");
        assert!(body["error"]["message"].as_str().unwrap().contains("spam"));
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("2027-01-01")
        );
    }
    let response = server.patch_me(&token, &json!({"nickname": "x"})).await;
    assert_eq!(error_of(response).await, (403, "user_banned".into()));
    let response = server.login("dev:ike#2").await;
    assert_eq!(error_of(response).await, (403, "user_banned".into()));
    assert_eq!(
        server.get("/v1/session", Some(&bystander)).await.status(),
        200
    );

    // The ban ends on its own at the given time.
    server.clock.advance(Duration::from_secs(40 * 86400));
    let token = server.token("dev:ike#3").await;
    assert_eq!(server.get("/v1/session", Some(&token)).await.status(), 200);

    // And can be set and lifted again.
    let (code, _, _) = wxauth(
        &server,
        &["users", "ban", &user, "--until", "2099-01-01T00:00:00Z"],
    );
    assert_eq!(code, 0);
    assert_eq!(server.get("/v1/session", Some(&token)).await.status(), 403);
    let (code, _, stderr) = wxauth(&server, &["users", "unban", &user]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(server.get("/v1/session", Some(&token)).await.status(), 200);
}

#[tokio::test]
async fn admin_command_failures_are_explained() {
    let server = TestServer::start().await;
    let (code, _, stderr) = wxauth(&server, &["users", "ban", "u_nobody"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no user `u_nobody`"), "{stderr}");
    let (code, _, stderr) = wxauth(&server, &["users", "ban", "u_x", "--until", "whenever"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("neither a time"), "{stderr}");
    let (code, _, stderr) = wxauth(&server, &["keys", "retire", "nosuchkey"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no key"), "{stderr}");
    let (code, _, _) = wxauth(&server, &["users", "frobnicate"]);
    assert_eq!(code, 2);

    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_wxauth"))
        .args(["keys", "rotate", "--data-dir"])
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("start `wxauth serve`"));
}
