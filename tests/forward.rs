//! The backend-facing routes over HTTP: forward auth for reverse proxies and token
//! introspection with service keys, for live, tampered, expired, revoked and banned
//! sessions, forged `X-Auth-*` headers, and keys created or revoked while serving.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{APPID, TestServer, error_of};
use serde_json::{Value, json};
use wxauth::domain::service_keys;
use wxauth::keys::token::{Keyring, SessionSecret};
use wxauth::ops::audit::Actor;

const DAY: u64 = 86400;
const AUTH_HEADERS: [&str; 5] = [
    "x-auth-user-id",
    "x-auth-openid",
    "x-auth-unionid",
    "x-auth-appid",
    "x-auth-session-id",
];

fn data_dir(server: &TestServer) -> PathBuf {
    server.dir.path().join("data")
}

/// Creates a service key through the library, on a connection of its own as the CLI would.
fn service_key(server: &TestServer, name: &str) -> String {
    let conn = wxauth::db::open_existing(&data_dir(server)).unwrap();
    let (_, key) = service_keys::create(
        &conn,
        name,
        &[service_keys::Scope::Introspect],
        common::START,
    )
    .unwrap();
    key.expose().to_owned()
}

async fn forward(server: &TestServer, token: Option<&str>) -> reqwest::Response {
    server.get("/v1/auth/forward", token).await
}

async fn introspect(server: &TestServer, key: &str, body: &Value) -> reqwest::Response {
    server.post_json("/v1/introspect", body, Some(key)).await
}

/// Introspects `token` and returns the 200 body.
async fn introspect_ok(server: &TestServer, key: &str, token: &str) -> Value {
    let response = introspect(server, key, &json!({ "token": token })).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

fn inactive() -> Value {
    json!({"active": false})
}

/// Asserts a 401/403 error answer that carries no identity headers.
async fn refused(response: reqwest::Response) -> (u16, String) {
    for name in AUTH_HEADERS {
        assert!(
            response.headers().get(name).is_none(),
            "{name} on a refusal"
        );
    }
    if response.status() == 401 {
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
    }
    error_of(response).await
}

/// Bans a user on a connection of its own, as `wxauth users ban` does.
fn ban(server: &TestServer, user_public_id: &str, until: i64) {
    let conn = wxauth::db::open_existing(&data_dir(server)).unwrap();
    wxauth::ops::admin::ban(
        &conn,
        &Actor::cli(),
        user_public_id,
        until,
        Some("spam"),
        common::START,
    )
    .unwrap();
}

/// `(openid, unionid)` of a user as stored.
fn stored_ids(server: &TestServer, user_public_id: &str) -> (String, Option<String>) {
    server
        .db()
        .query_row(
            "SELECT i.openid, i.unionid FROM identities i JOIN users u ON u.id = i.user_id \
             WHERE u.public_id = ?1",
            [user_public_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

/// A token that is well signed by the server's key but names no session.
fn unknown_session_token(server: &TestServer) -> String {
    let keys = wxauth::keys::key_file::KeyFile::load(&data_dir(server).join("keys.json"))
        .unwrap()
        .keyring()
        .unwrap();
    keys.sign(&SessionSecret::generate())
}

fn tampered(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn forward_auth_names_the_caller_in_headers() {
    let server = TestServer::start().await;
    let login = server.login_ok("dev:alma").await;
    let token = login["token"].as_str().unwrap();
    let user_id = login["user"]["id"].as_str().unwrap();
    let session = server.session_of(token).await;
    let (openid, unionid) = stored_ids(&server, user_id);

    let response = forward(&server, Some(token)).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["x-auth-user-id"], user_id);
    assert_eq!(headers["x-auth-openid"], openid.as_str());
    assert_eq!(headers["x-auth-unionid"], unionid.unwrap().as_str());
    assert_eq!(headers["x-auth-appid"], APPID);
    assert_eq!(
        headers["x-auth-session-id"],
        session["session"]["id"].as_str().unwrap()
    );
    assert_eq!(headers["cache-control"], "no-store");
    assert!(response.bytes().await.unwrap().is_empty());

    // A proxy may pass the original request's method along; every one is answered.
    for method in ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"] {
        let response = server
            .http
            .request(method.parse().unwrap(), server.url("/v1/auth/forward"))
            .bearer_auth(token)
            .body("ignored body")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{method}");
        assert_eq!(response.headers()["x-auth-user-id"], user_id, "{method}");
    }
}

#[tokio::test]
async fn forward_auth_leaves_out_an_unknown_unionid() {
    let server = TestServer::start().await;
    // A code outside the `dev:` scheme logs in a user WeChat gave no unionid.
    let login = server.login_ok("plain-code-without-unionid").await;
    let token = login["token"].as_str().unwrap();
    assert_eq!(
        stored_ids(&server, login["user"]["id"].as_str().unwrap()).1,
        None
    );
    let response = forward(&server, Some(token)).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-auth-unionid").is_none());
    assert!(response.headers().get("x-auth-openid").is_some());
}

#[tokio::test]
async fn forward_auth_refuses_like_every_authenticated_route() {
    let server = TestServer::start().await;
    let token = server.token("dev:bo").await;
    let stranger = Keyring::new("feedbeef", [("feedbeef", [7u8; 32].as_slice())]).unwrap();
    let invalid = (401, "invalid_token".to_owned());

    assert_eq!(refused(forward(&server, None).await).await, invalid);
    for bad in [
        "not-a-token".to_owned(),
        tampered(&token),
        stranger.sign(&SessionSecret::generate()),
        unknown_session_token(&server),
    ] {
        assert_eq!(
            refused(forward(&server, Some(&bad)).await).await,
            invalid,
            "{bad}"
        );
    }
    let response = server
        .http
        .get(server.url("/v1/auth/forward"))
        .header("authorization", format!("Basic {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused(response).await, invalid);

    // Expired: the session's time is up.
    server.clock.advance(Duration::from_secs(7 * DAY));
    assert_eq!(
        refused(forward(&server, Some(&token)).await).await,
        (401, "token_expired".to_owned())
    );
}

#[tokio::test]
async fn forward_auth_refuses_revoked_sessions_and_banned_users() {
    let server = TestServer::start().await;
    let leaving = server.token("dev:cai#phone").await;
    let staying = server.login_ok("dev:cai#tablet").await;
    let staying_token = staying["token"].as_str().unwrap();
    let response = server
        .post_json("/v1/logout", &json!({}), Some(&leaving))
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        refused(forward(&server, Some(&leaving)).await).await,
        (401, "session_revoked".to_owned())
    );
    assert_eq!(forward(&server, Some(staying_token)).await.status(), 200);

    let user_id = staying["user"]["id"].as_str().unwrap();
    ban(&server, user_id, common::START + 3600);
    assert_eq!(
        refused(forward(&server, Some(staying_token)).await).await,
        (403, "user_banned".to_owned())
    );
    // The ban runs out; the session still lives.
    server.clock.advance(Duration::from_secs(3600));
    assert_eq!(forward(&server, Some(staying_token)).await.status(), 200);
}

#[tokio::test]
async fn identity_headers_sent_by_the_client_are_never_echoed() {
    let server = TestServer::start().await;
    let login = server.login_ok("plain-code-for-forgery").await;
    let token = login["token"].as_str().unwrap();
    let user_id = login["user"]["id"].as_str().unwrap();
    let forge = |request: reqwest::RequestBuilder| {
        request
            .header("X-Auth-User-Id", "u_forged")
            .header("x-auth-openid", "o_forged")
            .header("X-AUTH-UNIONID", "un_forged")
            .header("X-Auth-Appid", "wxforged")
            .header("X-Auth-Session-Id", "s_forged")
            .header("X-Auth-Admin", "true")
    };

    let response = forge(
        server
            .http
            .get(server.url("/v1/auth/forward"))
            .bearer_auth(token),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["x-auth-user-id"], user_id);
    assert_eq!(headers["x-auth-appid"], APPID);
    // The user has no unionid, so the forged one must not fill the gap.
    assert!(headers.get("x-auth-unionid").is_none());
    assert!(headers.get("x-auth-admin").is_none());
    for (name, value) in headers {
        let value = value.to_str().unwrap();
        assert!(!value.contains("forged"), "{name}: {value}");
    }
    for name in AUTH_HEADERS {
        assert!(headers.get_all(name).iter().count() <= 1, "{name}");
    }

    let response = forge(server.http.get(server.url("/v1/auth/forward")))
        .send()
        .await
        .unwrap();
    assert_eq!(refused(response).await, (401, "invalid_token".to_owned()));
}

#[tokio::test]
async fn introspection_describes_a_live_token() {
    let server = TestServer::start().await;
    let key = service_key(&server, "billing");
    server.clock.advance(Duration::from_secs(30));
    let login = server.login_ok("dev:dara").await;
    let token = login["token"].as_str().unwrap();
    let user_id = login["user"]["id"].as_str().unwrap();
    let session = server.session_of(token).await;
    let (openid, unionid) = stored_ids(&server, user_id);

    let body = introspect_ok(&server, &key, token).await;
    let login_at = common::START + 30;
    assert_eq!(
        body,
        json!({
            "active": true,
            "sub": user_id,
            "sid": session["session"]["id"],
            "appid": APPID,
            "openid": openid,
            "unionid": unionid,
            "exp": login_at + 7 * DAY as i64,
            "iat": login_at,
        })
    );

    let plain = server.login_ok("plain-code-for-introspection").await;
    let body = introspect_ok(&server, &key, plain["token"].as_str().unwrap()).await;
    assert_eq!(body["active"], true);
    assert_eq!(body["unionid"], Value::Null, "{body}");
    assert_eq!(body["sub"], plain["user"]["id"]);
}

#[tokio::test]
async fn introspection_answers_inactive_for_every_unusable_token() {
    let server = TestServer::start().await;
    let key = service_key(&server, "search");
    let stranger = Keyring::new("feedbeef", [("feedbeef", [7u8; 32].as_slice())]).unwrap();
    let live = server.token("dev:eli").await;
    let logged_out = server.token("dev:eli#old").await;
    let response = server
        .post_json("/v1/logout", &json!({}), Some(&logged_out))
        .await;
    assert_eq!(response.status(), 204);
    let banned = server.login_ok("dev:fen").await;
    // The end of year 9999, the furthest a ban can be written as an RFC 3339 time.
    ban(
        &server,
        banned["user"]["id"].as_str().unwrap(),
        253_402_300_799,
    );

    let mut unusable = vec![
        String::new(),
        "garbage".to_owned(),
        "x".repeat(10_000),
        tampered(&live),
        stranger.sign(&SessionSecret::generate()),
        unknown_session_token(&server),
        logged_out,
        banned["token"].as_str().unwrap().to_owned(),
    ];
    for token in &unusable {
        assert_eq!(
            introspect_ok(&server, &key, token).await,
            inactive(),
            "{token}"
        );
    }
    assert_eq!(introspect_ok(&server, &key, &live).await["active"], true);

    // And once its time is up, the live one too.
    server.clock.advance(Duration::from_secs(7 * DAY));
    unusable.push(live);
    for token in &unusable {
        assert_eq!(
            introspect_ok(&server, &key, token).await,
            inactive(),
            "{token}"
        );
    }
}

#[tokio::test]
async fn introspection_needs_a_live_service_key() {
    let server = TestServer::start().await;
    let key = service_key(&server, "reports");
    let token = server.token("dev:gus").await;
    let body = json!({ "token": token });
    let invalid = (401, "invalid_token".to_owned());

    let response = server
        .http
        .post(server.url("/v1/introspect"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(refused(response).await, invalid);
    let unknown_key = format!("wxsk_{}", "A".repeat(43));
    for bad in [
        unknown_key.as_str(),
        "wxsk_short",
        &token,
        &key[..key.len() - 1],
        &tampered(&key),
    ] {
        assert_eq!(
            refused(introspect(&server, bad, &body).await).await,
            invalid,
            "{bad}"
        );
    }
    let response = server
        .http
        .post(server.url("/v1/introspect"))
        .header("authorization", format!("Basic {key}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(refused(response).await, invalid);
    // The key is checked before the body is even read.
    let response = introspect(&server, "wxsk_bad", &json!("not an object")).await;
    assert_eq!(refused(response).await, invalid);

    assert_eq!(introspect_ok(&server, &key, &token).await["active"], true);
    let conn = wxauth::db::open_existing(&data_dir(&server)).unwrap();
    service_keys::revoke(&conn, "reports", common::START).unwrap();
    assert_eq!(
        refused(introspect(&server, &key, &body).await).await,
        invalid
    );
}

#[tokio::test]
async fn introspection_refuses_malformed_requests() {
    let server = TestServer::start().await;
    let key = service_key(&server, "strict");
    for body in [
        json!({}),
        json!({"token": 42}),
        json!({"token": null}),
        json!({"token": "t", "extra": 1}),
        json!(["token"]),
    ] {
        let response = introspect(&server, &key, &body).await;
        assert_eq!(
            error_of(response).await,
            (400, "invalid_request".to_owned()),
            "{body}"
        );
    }
    let response = server
        .http
        .post(server.url("/v1/introspect"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(response).await,
        (400, "invalid_request".to_owned())
    );
    let response = server
        .http
        .post(server.url("/v1/introspect"))
        .bearer_auth(&key)
        .header("content-type", "text/plain")
        .body("token=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(response).await,
        (415, "unsupported_media_type".to_owned())
    );
    let response = server
        .http
        .post(server.url("/v1/introspect"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(format!("{{\"token\": \"{}\"}}", "x".repeat(20_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(response).await,
        (413, "payload_too_large".to_owned())
    );
    let response = server.get("/v1/introspect", Some(&key)).await;
    assert_eq!(
        error_of(response).await,
        (405, "method_not_allowed".to_owned())
    );
}

#[tokio::test]
async fn a_key_records_when_it_was_last_used() {
    let server = TestServer::start().await;
    let key = service_key(&server, "audit");
    let token = server.token("dev:hal").await;
    server.clock.advance(Duration::from_secs(3600));
    introspect_ok(&server, &key, &token).await;
    // The update is queued behind the request; wait for it to land.
    let mut used = None;
    for _ in 0..100 {
        used = server
            .db()
            .query_row("SELECT last_used_at FROM service_keys", [], |r| r.get(0))
            .unwrap();
        if used.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(used, Some(common::START + 3600));
}

/// Runs `wxauth service-keys ARGS` against the server's data directory.
fn cli(server: &TestServer, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wxauth"))
        .env_clear()
        .env("WXAUTH_DATA_DIR", data_dir(server))
        .arg("service-keys")
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_created_and_revoked_from_the_command_line_apply_at_once() {
    let server = TestServer::start().await;
    let token = server.token("dev:ines").await;
    let output = cli(&server, &["create", "gateway"]);
    assert!(output.status.success(), "{output:?}");
    let key = String::from_utf8(output.stdout).unwrap().trim().to_owned();

    assert_eq!(introspect_ok(&server, &key, &token).await["active"], true);
    let output = cli(&server, &["revoke", "gateway"]);
    assert!(output.status.success(), "{output:?}");
    let response = introspect(&server, &key, &json!({ "token": token })).await;
    assert_eq!(refused(response).await, (401, "invalid_token".to_owned()));
}
