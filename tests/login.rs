//! POST /v1/login over HTTP against the fake WeChat: first and repeat logins, every
//! WeChat failure mapped to its code within a bounded time, code replay, and concurrency.

mod common;

use std::time::{Duration, Instant};

use common::{APPID, TestServer, error_of};
use serde_json::{Value, json};

#[tokio::test]
async fn a_first_and_a_second_login_of_one_user() {
    let server = TestServer::start().await;
    let first = server.login_ok("dev:alice#1").await;
    assert_eq!(first["new_user"], true);
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["expires_in"], 7 * 86400);
    assert_eq!(first["expires_at"], "2026-12-07T10:00:00Z");
    let user = &first["user"];
    assert_eq!(user["appid"], APPID);
    assert!(user["id"].as_str().unwrap().starts_with("u_"));
    for hidden in ["openid", "unionid", "session_key"] {
        assert!(user.get(hidden).is_none(), "{hidden} leaked: {user}");
    }

    let second = server.login_ok("dev:alice#2").await;
    assert_eq!(second["new_user"], false);
    assert_eq!(second["user"]["id"], user["id"]);
    assert_ne!(
        second["token"], first["token"],
        "a new login is a new session"
    );

    let db = server.db();
    let (openid, unionid): (String, Option<String>) = db
        .query_row("SELECT openid, unionid FROM identities", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(openid.len(), 28);
    assert!(unionid.is_some(), "the unionid WeChat returned is stored");
    assert_eq!(server.count("users"), 1);
    assert_eq!(server.count("sessions"), 2);
    // Neither the token nor the code is stored in the clear.
    let token = first["token"].as_str().unwrap();
    let sid = token.split('.').nth(2).unwrap();
    let leaked: i64 = db
        .query_row(
            "SELECT count(*) FROM sessions WHERE instr(public_id, ?1) OR instr(CAST(secret_hash AS TEXT), ?1)",
            [sid],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(leaked, 0);
}

#[tokio::test]
async fn a_login_without_unionid_stores_none() {
    let server = TestServer::start().await;
    server.login_ok("plain-code-1").await;
    let unionid: Option<String> = server
        .db()
        .query_row("SELECT unionid FROM identities", [], |r| r.get(0))
        .unwrap();
    assert_eq!(unionid, None);
}

#[tokio::test]
async fn wechat_errors_map_to_their_codes() {
    let server = TestServer::start().await;
    let cases = [
        ("fail:40029", 400, "invalid_code"),
        ("fail:40163", 400, "invalid_code"),
        ("fail:40226", 403, "login_blocked"),
        ("fail:45011", 429, "rate_limited"),
        ("fail:40013", 502, "upstream_error"),
        ("fail:40125", 502, "upstream_error"),
        ("fail:61234", 502, "upstream_error"),
        ("garbage", 502, "upstream_error"),
        ("http:404", 502, "upstream_error"),
        // Not followed: WeChat's API does not redirect.
        ("http:302", 502, "upstream_error"),
        ("http:307", 502, "upstream_error"),
    ];
    for (code, status, error) in cases {
        let response = server.login(code).await;
        let retry_after = response.headers().get("retry-after").cloned();
        assert_eq!(
            error_of(response).await,
            (status, error.to_owned()),
            "{code}"
        );
        assert_eq!(retry_after.is_some(), status == 429, "{code}");
    }
    // None of those is retried: one upstream call each.
    assert_eq!(server.mock.code2session_calls(), cases.len() as u64);
    assert_eq!(server.count("users"), 0);
    assert_eq!(server.count("sessions"), 0);
}

#[tokio::test]
async fn a_busy_wechat_is_retried_until_it_answers() {
    let server = TestServer::start().await;
    let body = server.login_ok("busy:2:dev:carol").await;
    assert_eq!(body["new_user"], true);
    assert_eq!(server.mock.code2session_calls(), 3);
}

/// Each fault ends within the configured bound (1 s in tests) with 503 and Retry-After.
#[tokio::test]
async fn upstream_faults_end_in_bounded_time_with_503() {
    let server = TestServer::start().await;
    for code in ["busy:1000:dev:dan", "http:500", "http:503", "hang"] {
        let started = Instant::now();
        let response = server.login(code).await;
        let elapsed = started.elapsed();
        assert!(
            response.headers().contains_key("retry-after"),
            "{code}: no Retry-After"
        );
        assert_eq!(
            error_of(response).await,
            (503, "upstream_unavailable".to_owned()),
            "{code}"
        );
        assert!(
            elapsed < Duration::from_millis(2500),
            "{code} took {elapsed:?}"
        );
    }
    assert_eq!(server.count("users"), 0);
}

#[tokio::test]
async fn a_refused_connection_is_upstream_unavailable() {
    // Find a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let server = TestServer::start_with(|l| l.wechat_api = Some(url)).await;
    let started = Instant::now();
    let response = server.login("dev:erin").await;
    assert_eq!(
        error_of(response).await,
        (503, "upstream_unavailable".to_owned())
    );
    assert!(started.elapsed() < Duration::from_millis(2500));
}

#[tokio::test]
async fn replaying_a_code_returns_the_same_session() {
    let server = TestServer::start().await;
    let first = server.login_ok("one-time-code-42").await;
    let again = server.login_ok("one-time-code-42").await;
    assert_eq!(again["token"], first["token"]);
    assert_eq!(again["user"]["id"], first["user"]["id"]);
    assert_eq!(
        again["new_user"], true,
        "the replay repeats the original answer"
    );
    assert_eq!(
        server.mock.code2session_calls(),
        1,
        "the replay does not reach WeChat"
    );
    assert_eq!(server.count("sessions"), 1);

    // Once the code's five minutes are over, WeChat's verdict stands.
    server.clock.advance(Duration::from_secs(301));
    let response = server.login("one-time-code-42").await;
    assert_eq!(error_of(response).await, (400, "invalid_code".to_owned()));
}

/// The server remembers which codes it recorded, to skip the database for new ones; a
/// restarted server learns them from the database.
#[tokio::test]
async fn a_code_is_replayed_after_a_restart() {
    let mut server = TestServer::start().await;
    let first = server.login_ok("code-across-a-restart").await;
    server.restart().await;
    let again = server.login_ok("code-across-a-restart").await;
    assert_eq!(again["token"], first["token"]);
    assert_eq!(server.mock.code2session_calls(), 1);
}

/// The server tells codes apart by four bytes of their hash, and reads the row to be
/// sure: a new code that shares those bytes with a recorded one is a login of its own,
/// and each code's retry still finds its own session.
#[tokio::test]
async fn codes_alike_in_the_first_bytes_of_their_hash_stay_apart() {
    let (first, second) = codes_sharing_a_hash_prefix();
    let server = TestServer::start().await;
    let one = server.login_ok(&first).await;
    let two = server.login_ok(&second).await;
    assert_ne!(one["token"], two["token"]);
    assert_ne!(one["user"]["id"], two["user"]["id"]);
    assert_eq!(server.mock.code2session_calls(), 2);
    assert_eq!(server.count("login_codes"), 2);

    assert_eq!(server.login_ok(&first).await["token"], one["token"]);
    assert_eq!(server.login_ok(&second).await["token"], two["token"]);
    assert_eq!(
        server.mock.code2session_calls(),
        2,
        "both retries were replays"
    );
}

/// Two codes whose hashes begin with the same four bytes (among some 100,000 codes, a
/// pair is likely; the search goes on until it finds one).
fn codes_sharing_a_hash_prefix() -> (String, String) {
    let mut seen = std::collections::HashMap::new();
    for n in 0u64.. {
        let code = format!("prefix-twin-{n}");
        let hash = wxauth::domain::login::code_hash(APPID, &code);
        let prefix: [u8; 4] = hash[..4].try_into().unwrap();
        if let Some(earlier) = seen.insert(prefix, code.clone()) {
            return (earlier, code);
        }
    }
    unreachable!("the search ends when two prefixes meet")
}

/// A database from the first release is brought up to date when the server starts:
/// its sessions still answer, a retried code still finds its session, and a user's
/// stored session_key still opens their legacy encrypted data.
#[tokio::test]
async fn a_version_1_database_keeps_its_sessions_and_codes_across_the_upgrade() {
    let mut server = TestServer::start().await;
    let first = server.login_ok("code-before-the-upgrade").await;
    let token = first["token"].as_str().unwrap().to_owned();
    let legacy = server.token("dev:before-the-upgrade").await;
    server.restart_after(rewrite_as_version_1).await;
    let version: i64 = server
        .db()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, wxauth::db::SCHEMA_VERSION);
    let codes: i64 = server
        .db()
        .query_row("SELECT count(id) FROM login_codes", [], |r| r.get(0))
        .expect("login_codes has a rowid");
    assert_eq!(codes, 1);

    let response = server.get("/v1/session", Some(&token)).await;
    assert_eq!(response.status(), 200);
    let session: Value = response.json().await.unwrap();
    assert_eq!(session["user"]["id"], first["user"]["id"], "{session}");
    let again = server.login_ok("code-before-the-upgrade").await;
    assert_eq!(again["token"], first["token"]);
    assert_eq!(server.mock.code2session_calls(), 2);

    let payload = server.open_data("before-the-upgrade", "phone").await;
    let response = server
        .post_json("/v1/me/phone", &payload, Some(&legacy))
        .await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let tables: i64 = server
        .db()
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name IN ('session_keys', 'users_app_created')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        tables, 0,
        "version 4 keeps the session_key on the user's row"
    );
}

/// Replaces the database in `data` by one made from the version 1 schema holding the
/// same rows, as a server of the first release would have left it. Version 1 named each
/// code's session; the caller logged in with a code once, so that is the oldest session,
/// and kept each user's session_key in a table of its own.
fn rewrite_as_version_1(data: &std::path::Path) {
    let path = data.join(wxauth::datadir::DATABASE_FILE);
    let old = data.join("version-1.db");
    {
        let v1 = rusqlite::Connection::open(&old).unwrap();
        v1.execute_batch(include_str!("../src/db/schema_v1.sql"))
            .unwrap();
        v1.pragma_update(None, "user_version", 1).unwrap();
        v1.execute("ATTACH ?1 AS current", [path.to_str().unwrap()])
            .unwrap();
        v1.execute_batch(
            "INSERT INTO main.users SELECT u.id, u.public_id, i.appid, i.openid, i.unionid,
                 u.nickname, u.avatar_url, u.gender, u.country, u.province, u.city,
                 u.language, u.phone, u.banned_until, u.ban_reason, u.created_at, u.updated_at
                 FROM current.users u JOIN current.identities i ON i.user_id = u.id;
             INSERT INTO main.sessions SELECT id, public_id, secret_hash, user_id, created_at,
                 expires_at, max_expires_at, last_seen_at, revoked_at, revoked_reason
                 FROM current.sessions;
             INSERT INTO main.session_keys SELECT i.user_id, i.session_key, u.updated_at
                 FROM current.identities i JOIN current.users u ON u.id = i.user_id;
             INSERT INTO main.login_codes
                 SELECT code_hash, (SELECT min(id) FROM current.sessions), sealed_sid,
                     new_user, expires_at
                 FROM current.login_codes WHERE id = 1;
             DETACH current;",
        )
        .unwrap();
    }
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    std::fs::rename(&old, &path).unwrap();
}

#[tokio::test]
async fn a_replayed_code_of_a_logged_out_session_is_refused() {
    let server = TestServer::start().await;
    let token = server.token("code-then-logout").await;
    let response = server
        .post_json("/v1/logout", &json!({}), Some(&token))
        .await;
    assert_eq!(response.status(), 204);
    let response = server.login("code-then-logout").await;
    assert_eq!(error_of(response).await, (400, "invalid_code".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_code_make_one_upstream_call() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let server = std::sync::Arc::clone(&server);
        tasks.push(tokio::spawn(async move {
            server.login_ok("slow:200:shared-code").await
        }));
    }
    let mut tokens = Vec::new();
    for task in tasks {
        let body: Value = task.await.unwrap();
        tokens.push(body["token"].as_str().unwrap().to_owned());
    }
    assert!(
        tokens.iter().all(|t| *t == tokens[0]),
        "one session for all"
    );
    assert_eq!(server.mock.code2session_calls(), 1);
    assert_eq!(server.count("sessions"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_logins_of_one_user_make_one_user() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let server = std::sync::Arc::clone(&server);
        tasks.push(tokio::spawn(async move {
            server.login_ok(&format!("dev:frank#{i}")).await
        }));
    }
    let mut new_users = 0;
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        let body = task.await.unwrap();
        if body["new_user"] == true {
            new_users += 1;
        }
        ids.insert(body["user"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(new_users, 1, "exactly one login created the user");
    assert_eq!(ids.len(), 1);
    assert_eq!(server.count("users"), 1);
    assert_eq!(server.count("sessions"), 50);
}

#[tokio::test]
async fn several_apps_need_the_appid() {
    let server = TestServer::start_with_apps(|_| common::SHOP_AND_GAME.into()).await;
    let response = server.login("dev:gina").await;
    assert_eq!(error_of(response).await, (400, "unknown_app".to_owned()));
    let response = server
        .post_json(
            "/v1/login",
            &json!({"code": "dev:gina", "appid": "wxother"}),
            None,
        )
        .await;
    assert_eq!(error_of(response).await, (400, "unknown_app".to_owned()));
    let response = server
        .post_json(
            "/v1/login",
            &json!({"code": "dev:gina", "appid": "wxgame"}),
            None,
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["appid"], "wxgame");
    // Another WeChat user in the other app is another user.
    let response = server
        .post_json(
            "/v1/login",
            &json!({"code": "plain-code-in-the-shop", "appid": "wxshop"}),
            None,
        )
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["new_user"], true);
    assert_eq!(body["user"]["appid"], "wxshop");
    assert_eq!(server.count("users"), 2);
}

#[tokio::test]
async fn a_login_whose_client_went_away_is_still_recorded() {
    let server = TestServer::start().await;
    // The client gives up while WeChat is still answering; WeChat has used the code.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(100),
        server.login("slow:400:fresh-code-7"),
    )
    .await;
    assert!(
        abandoned.is_err(),
        "the request should still have been running"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Its retry gets the session the abandoned request created, not `invalid_code`.
    let retry = server.login_ok("slow:400:fresh-code-7").await;
    assert_eq!(retry["new_user"], true);
    assert_eq!(server.mock.code2session_calls(), 1);
    assert_eq!(server.count("sessions"), 1);
}
