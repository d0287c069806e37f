//! `wxauth users`, `sessions`, `check` and `healthcheck` as an operator runs them: the
//! built binary against the data directory of a running server, asserting on stdout,
//! `--json` output and exit codes, bad arguments included.

mod common;

use std::convert::Infallible;
use std::path::Path;
use std::process::Command;

use common::{TestServer, error_of};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use warp::Filter;
use warp::reply::{Reply, Response};

/// `wxauth ARGS` with a clean environment plus `env`; returns (exit code, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_wxauth"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `wxauth ARGS` on the test server's data directory.
fn admin(server: &TestServer, args: &[&str]) -> (i32, String, String) {
    let dir = server.dir.path().join("data");
    run(args, &[("WXAUTH_DATA_DIR", dir.to_str().unwrap())])
}

/// Runs an admin command that must succeed and print JSON.
fn admin_json(server: &TestServer, args: &[&str]) -> Value {
    let (code, stdout, stderr) = admin(server, args);
    assert_eq!(code, 0, "{args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_listed_paged_and_shown() {
    let server = TestServer::start().await;
    let amy = server.login_ok("dev:amy").await["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob = server.login_ok("dev:bob").await["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let all = admin_json(&server, &["users", "list", "--json"]);
    let ids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [bob.as_str(), amy.as_str()], "newest first");
    assert_eq!(all[0]["apps"], json!([common::APPID]));
    assert_eq!(all[0]["identities"][0]["appid"], common::APPID);
    assert!(
        all[0]["identities"][0]["openid"]
            .as_str()
            .unwrap()
            .starts_with('o')
    );

    // Paging: a full page names the cursor for the next one.
    let (code, stdout, stderr) = admin(&server, &["users", "list", "--limit", "1", "--json"]);
    assert_eq!(code, 0);
    let page: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(page[0]["id"], bob.as_str());
    assert!(stderr.contains(&format!("--before {bob}")), "{stderr}");
    let next = admin_json(
        &server,
        &["users", "list", "--limit", "1", "--before", &bob, "--json"],
    );
    assert_eq!(next[0]["id"], amy.as_str());
    let last = admin_json(
        &server,
        &["users", "list", "--limit", "1", "--before", &amy, "--json"],
    );
    assert_eq!(last, json!([]));
    let other = admin_json(&server, &["users", "list", "--app", "wxother", "--json"]);
    assert_eq!(other, json!([]));

    let (code, stdout, _) = admin(&server, &["users", "list"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("CREATED"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with(&bob) && lines[2].starts_with(&amy),
        "{stdout}"
    );

    let shown = admin_json(&server, &["users", "show", &amy, "--json"]);
    assert_eq!(shown["user"]["id"], amy.as_str());
    assert_eq!(shown["live_sessions"], 1);
    assert_eq!(shown["banned"], false);
    let openid = shown["user"]["identities"][0]["openid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(shown["user"]["identities"][0]["unionid"].is_string());
    let by_openid = admin_json(&server, &["users", "show", "--openid", &openid, "--json"]);
    assert_eq!(by_openid["user"]["id"], amy.as_str());
    let by_openid = admin_json(
        &server,
        &[
            "users",
            "show",
            "--openid",
            &openid,
            "--app",
            common::APPID,
            "--json",
        ],
    );
    assert_eq!(by_openid["user"]["id"], amy.as_str());
    let (code, stdout, _) = admin(&server, &["users", "show", &amy]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&format!("identity       {} openid {openid}", common::APPID)),
        "{stdout}"
    );

    // Failures: a missing user is 1, a malformed command line is 2.
    let (code, _, stderr) = admin(&server, &["users", "show", "u_nobody"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no user `u_nobody`"), "{stderr}");
    let (code, _, stderr) = admin(&server, &["users", "show", "--openid", "onobody"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no user with openid"), "{stderr}");
    let (code, _, stderr) = admin(&server, &["users", "list", "--before", "u_nobody"]);
    assert_eq!(code, 1, "{stderr}");
    for bad in [
        &["users", "show"][..],
        &["users", "show", &amy, "--openid", &openid],
        &["users", "show", &amy, "--app", "wx1"],
        &["users", "list", "--limit", "0"],
        &["users", "list", "--limit", "1001"],
        &["users", "list", "--limit", "many"],
    ] {
        let (code, _, stderr) = admin(&server, bad);
        assert_eq!(code, 2, "{bad:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_listed_and_revoked_while_serving() {
    let server = TestServer::start().await;
    let first = server.login_ok("dev:cai#1").await;
    let user = first["user"]["id"].as_str().unwrap().to_owned();
    let token1 = first["token"].as_str().unwrap().to_owned();
    let token2 = server.token("dev:cai#2").await;
    let sid1 = server.get("/v1/session", Some(&token1)).await;
    let sid1: Value = sid1.json().await.unwrap();
    let sid1 = sid1["session"]["id"].as_str().unwrap().to_owned();

    let listed = admin_json(&server, &["sessions", "list", &user, "--json"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["id"], sid1.as_str(), "newest first");
    assert!(listed.iter().all(|s| s["status"] == "live"));
    assert!(listed.iter().all(|s| s["user"] == user.as_str()));

    let (code, _, stderr) = admin(&server, &["sessions", "revoke", &sid1]);
    assert_eq!(code, 0, "{stderr}");
    // The revocation's commit tells the server its copy of the session is stale: the
    // very next request is refused.
    let response = server.get("/v1/session", Some(&token1)).await;
    assert_eq!(error_of(response).await, (401, "session_revoked".into()));
    assert_eq!(server.get("/v1/session", Some(&token2)).await.status(), 200);
    let (code, _, stderr) = admin(&server, &["sessions", "revoke", &sid1]);
    assert_eq!(code, 1);
    assert!(stderr.contains("already revoked"), "{stderr}");
    let (code, _, stderr) = admin(&server, &["sessions", "revoke", "s_nosuch"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no session"), "{stderr}");

    let (code, _, stderr) = admin(&server, &["sessions", "revoke", "--user", &user]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("revoked 1 session"), "{stderr}");
    let response = server.get("/v1/session", Some(&token2)).await;
    assert_eq!(error_of(response).await, (401, "session_revoked".into()));

    let (code, stdout, _) = admin(&server, &["sessions", "list", &user]);
    assert_eq!(code, 0);
    assert_eq!(stdout.matches("revoked (admin)").count(), 2, "{stdout}");

    for bad in [
        &["sessions", "revoke"][..],
        &["sessions", "revoke", &sid1, "--user", &user],
        &["sessions", "list"],
    ] {
        let (code, _, stderr) = admin(&server, bad);
        assert_eq!(code, 2, "{bad:?}: {stderr}");
    }
    let (code, _, stderr) = admin(&server, &["sessions", "list", "u_nobody"]);
    assert_eq!(code, 1, "{stderr}");
}

#[test]
fn admin_commands_explain_a_missing_database() {
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().to_str().unwrap();
    for args in [&["users", "list"][..], &["sessions", "list", "u_x"]] {
        let (code, _, stderr) = run(args, &[("WXAUTH_DATA_DIR", dir)]);
        assert_eq!(code, 1, "{args:?}");
        assert!(stderr.contains("start `wxauth serve`"), "{stderr}");
    }
}

#[test]
fn every_command_has_help() {
    for args in [
        &["users", "--help"][..],
        &["users", "list", "--help"],
        &["users", "show", "--help"],
        &["sessions", "--help"],
        &["sessions", "list", "--help"],
        &["sessions", "revoke", "--help"],
        &["check", "--help"],
        &["healthcheck", "--help"],
    ] {
        let (code, stdout, _) = run(args, &[]);
        assert_eq!(code, 0, "{args:?}");
        assert!(stdout.contains("Usage"), "{args:?}: {stdout}");
    }
}

#[test]
fn check_validates_the_configuration_without_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();

    let (code, stdout, _) = run(&["check"], &[("WXAUTH_DATA_DIR", data)]);
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stdout.contains("FAIL") && stdout.contains("no app configured"),
        "{stdout}"
    );

    let good = [
        ("WXAUTH_DATA_DIR", data),
        ("WXAUTH_APPID", "wxcheck0000000001"),
        ("WXAUTH_SECRET", "check-secret-7d1e"),
        // Nothing may bind: a busy address would still check fine.
        ("WXAUTH_LISTEN", "127.0.0.1:1"),
    ];
    let (code, stdout, stderr) = run(&["check", "--json"], &good);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert!(!Path::new(data).exists(), "check created nothing");
    assert!(!stdout.contains("check-secret-7d1e"));

    let (code, stdout, _) = run(
        &["check", "--json"],
        &[("WXAUTH_DATA_DIR", data), ("WXAUTH_TOKEN_TTL", "soon")],
    );
    assert_eq!(code, 2);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["checks"][0]["status"], "fail");
    assert!(
        report["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("WXAUTH_TOKEN_TTL")
    );

    // A database from a newer wxauth is a failure, not a configuration error.
    std::fs::create_dir_all(data).unwrap();
    let conn = rusqlite::Connection::open(Path::new(data).join("wxauth.db")).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let (code, stdout, _) = run(&["check"], &good);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("newer than this wxauth"), "{stdout}");
}

/// A stand-in for WeChat's `stable_token` that accepts one secret.
async fn fake_stable_token(secret: &'static str) -> String {
    let routes = warp::path!("cgi-bin" / "stable_token")
        .and(warp::post())
        .and(warp::body::json())
        .map(move |body: Value| -> Response {
            let answer = if body["secret"] == secret
                && body["grant_type"] == "client_credential"
                && body["force_refresh"] == false
            {
                json!({"access_token": "tok", "expires_in": 7200})
            } else {
                json!({"errcode": 40125, "errmsg": "invalid appsecret"})
            };
            warp::reply::json(&answer).into_response()
        })
        .recover(|_| async {
            Ok::<_, Infallible>(warp::http::StatusCode::NOT_FOUND.into_response())
        })
        .unify();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(wxauth::http::server::serve(
        listener,
        routes,
        wxauth::http::server::ConnectionLimits::default(),
        std::future::pending(),
    ));
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_asks_wechat_about_the_credentials() {
    let base = fake_stable_token("right-secret-41c2").await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let check = move |secret: &'static str| {
        let (base, data) = (base.clone(), data.clone());
        tokio::task::spawn_blocking(move || {
            run(
                &["check", "--online", "--json"],
                &[
                    ("WXAUTH_DATA_DIR", &data),
                    ("WXAUTH_APPID", "wxcheck0000000001"),
                    ("WXAUTH_SECRET", secret),
                    ("WXAUTH_WECHAT_API", &base),
                ],
            )
        })
    };
    let (code, stdout, stderr) = check("right-secret-41c2").await.unwrap();
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let app = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["subject"] == "app wxcheck0000000001")
        .unwrap();
    assert_eq!(app["status"], "ok");

    let (code, stdout, stderr) = check("wrong-secret-9a0b").await.unwrap();
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("40125") && stdout.contains("AppSecret is wrong"),
        "{stdout}"
    );
    assert!(!stdout.contains("wrong-secret-9a0b") && !stderr.contains("wrong-secret-9a0b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_probes_readyz() {
    let server = TestServer::start().await;
    let addr = server.app.as_ref().unwrap().addr().to_string();
    let dir = server.dir.path().join("data");
    let dir = dir.to_str().unwrap().to_owned();
    let probe = move |args: Vec<String>, listen: String| {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(
                &args,
                &[("WXAUTH_DATA_DIR", &dir), ("WXAUTH_LISTEN", &listen)],
            )
        })
    };
    // The listen address comes from the configuration, as in a container.
    let (code, _, stderr) = probe(vec!["healthcheck".into()], addr.clone())
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    let url = format!("http://{addr}/readyz");
    let (code, _, stderr) = probe(
        vec!["healthcheck".into(), "--url".into(), url],
        "127.0.0.1:1".into(),
    )
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");

    let (code, _, stderr) = probe(vec!["healthcheck".into()], "127.0.0.1:1".into())
        .await
        .unwrap();
    assert_eq!(code, 1);
    assert!(
        stderr.contains("not ready") && stderr.contains("cannot connect"),
        "{stderr}"
    );
    let (code, _, _) = probe(
        vec!["healthcheck".into(), "--timeout".into(), "never".into()],
        addr,
    )
    .await
    .unwrap();
    assert_eq!(code, 2);
}
