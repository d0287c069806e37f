//! Tokens and sessions over HTTP: tampering, unknown keys, expiry with a moved clock,
//! logout, eviction, refresh up to the absolute maximum, logout-all.

mod common;

use std::time::Duration;

use common::{TestServer, error_of};
use serde_json::{Value, json};
use wxauth::keys::token::{Keyring, SessionSecret};

const DAY: u64 = 86400;

async fn session_status(server: &TestServer, token: &str) -> (u16, String) {
    let response = server.get("/v1/session", Some(token)).await;
    if response.status() == 200 {
        return (200, String::new());
    }
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let (status, code) = error_of(response).await;
    if status == 401 {
        assert_eq!(challenge.as_deref(), Some("Bearer error=\"invalid_token\""));
    }
    (status, code)
}

fn expired() -> (u16, String) {
    (401, "token_expired".into())
}

fn revoked() -> (u16, String) {
    (401, "session_revoked".into())
}

fn invalid() -> (u16, String) {
    (401, "invalid_token".into())
}

#[tokio::test]
async fn the_session_endpoint_describes_the_session() {
    let server = TestServer::start().await;
    let login = server.login_ok("dev:hana").await;
    let token = login["token"].as_str().unwrap();
    let response = server.get("/v1/session", Some(token)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"], login["user"]);
    let session = &body["session"];
    assert!(session["id"].as_str().unwrap().starts_with("s_"));
    assert_eq!(session["created_at"], "2026-11-30T10:00:00Z");
    assert_eq!(session["expires_at"], "2026-12-07T10:00:00Z");
    assert_eq!(session["last_seen_at"], "2026-11-30T10:00:00Z");
    let me: Value = server
        .get("/v1/me", Some(token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me, login["user"]);
}

#[tokio::test]
async fn missing_and_garbled_tokens_are_invalid() {
    let server = TestServer::start().await;
    let response = server.get("/v1/session", None).await;
    assert_eq!(error_of(response).await, invalid());
    for header in [
        "Basic abc",
        "Bearer",
        "Bearer not-a-token",
        "Bearer v1.a.b.c",
    ] {
        let response = server
            .http
            .get(server.url("/v1/me"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(response).await, invalid(), "{header}");
    }
}

#[tokio::test]
async fn every_tampered_byte_is_refused() {
    let server = TestServer::start().await;
    let token = server.token("dev:ivan").await;
    let mut refused = 0;
    for i in 0..token.len() {
        let mut bytes = token.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        if tampered == token {
            continue;
        }
        assert_eq!(
            session_status(&server, &tampered).await,
            invalid(),
            "{tampered}"
        );
        refused += 1;
    }
    assert!(refused >= token.len() - 1);
    assert_eq!(session_status(&server, &token).await.0, 200);
}

#[tokio::test]
async fn a_token_signed_with_an_unknown_key_is_invalid() {
    let server = TestServer::start().await;
    let stranger = Keyring::new("feedbeef", [("feedbeef", [7u8; 32].as_slice())]).unwrap();
    let forged = stranger.sign(&SessionSecret::generate());
    assert_eq!(session_status(&server, &forged).await, invalid());
    // A well-signed token for a session that does not exist is invalid too.
    let keys =
        wxauth::keys::key_file::KeyFile::load(&server.dir.path().join("data").join("keys.json"))
            .unwrap();
    let unknown = keys.keyring().unwrap().sign(&SessionSecret::generate());
    assert_eq!(session_status(&server, &unknown).await, invalid());
}

/// Sessions made before the `v2` format keep working: stored under the SHA-256 of a
/// 16-byte id, named by a `v1` token, refreshed into another `v1` token.
#[tokio::test]
async fn a_first_format_token_keeps_its_session() {
    let server = TestServer::start().await;
    let v2 = server.token("dev:iris").await;
    assert!(v2.starts_with("v2."), "{v2}");
    let secret = SessionSecret::from_bytes(&[5; 16]).unwrap();
    server
        .db_rw()
        .execute(
            "INSERT INTO sessions (public_id, secret_hash, user_id, identity_id, created_at, \
             expires_at, max_expires_at, last_seen_at) \
             SELECT 's_first_format', ?1, user_id, identity_id, created_at, expires_at, \
             max_expires_at, last_seen_at FROM sessions",
            [&secret.hash()[..]],
        )
        .unwrap();
    let keys =
        wxauth::keys::key_file::KeyFile::load(&server.dir.path().join("data").join("keys.json"))
            .unwrap();
    let v1 = keys.keyring().unwrap().sign(&secret);
    assert!(v1.starts_with("v1."), "{v1}");
    let body = server.session_of(&v1).await;
    assert_eq!(body["session"]["id"], "s_first_format", "{body}");

    let refreshed: Value = server
        .post_json("/v1/session/refresh", &json!({}), Some(&v1))
        .await
        .json()
        .await
        .unwrap();
    let again = refreshed["token"].as_str().unwrap();
    assert!(again.starts_with("v1."), "{refreshed}");
    assert_eq!(session_status(&server, again).await.0, 200);
    let response = server.post_json("/v1/logout", &json!({}), Some(&v1)).await;
    assert_eq!(response.status(), 204);
    assert_eq!(session_status(&server, &v1).await, revoked());
    assert_eq!(
        session_status(&server, &v2).await.0,
        200,
        "the v2 session is apart"
    );
}

#[tokio::test]
async fn a_session_expires_after_the_ttl() {
    let server = TestServer::start().await;
    let token = server.token("dev:jun").await;
    server.clock.advance(Duration::from_secs(7 * DAY - 1));
    assert_eq!(session_status(&server, &token).await.0, 200);
    server.clock.advance(Duration::from_secs(1));
    assert_eq!(session_status(&server, &token).await, expired());
    let response = server
        .post_json("/v1/session/refresh", &json!({}), Some(&token))
        .await;
    assert_eq!(error_of(response).await, expired());
}

#[tokio::test]
async fn refresh_slides_the_expiry_but_never_past_the_maximum_age() {
    let server = TestServer::start_with(|l| {
        l.token_ttl = Some("1d".parse().unwrap());
        l.session_max_age = Some("3d".parse().unwrap());
    })
    .await;
    let login = server.login_ok("dev:kai").await;
    let token = login["token"].as_str().unwrap().to_owned();
    assert_eq!(login["expires_at"], "2026-12-01T10:00:00Z");

    server.clock.advance(Duration::from_secs(20 * 3600));
    let response = server
        .post_json("/v1/session/refresh", &json!({}), Some(&token))
        .await;
    assert_eq!(response.status(), 200);
    let refreshed: Value = response.json().await.unwrap();
    assert_eq!(refreshed["expires_at"], "2026-12-02T06:00:00Z");
    assert_eq!(refreshed["expires_in"], DAY);
    assert_eq!(refreshed["new_user"], false);
    assert_eq!(refreshed["user"]["id"], login["user"]["id"]);
    let token = refreshed["token"].as_str().unwrap().to_owned();

    // Refreshing every 20 hours keeps it alive, until the absolute maximum.
    for _ in 0..2 {
        server.clock.advance(Duration::from_secs(20 * 3600));
        let response = server
            .post_json("/v1/session/refresh", &json!({}), Some(&token))
            .await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    // Now at +60h; created at +0h; maximum at +72h.
    let response = server
        .post_json("/v1/session/refresh", &json!({}), Some(&token))
        .await;
    let capped: Value = response.json().await.unwrap();
    assert_eq!(capped["expires_at"], "2026-12-03T10:00:00Z");
    assert_eq!(capped["expires_in"], 12 * 3600);
    server.clock.advance(Duration::from_secs(12 * 3600));
    assert_eq!(session_status(&server, &token).await, expired());
}

#[tokio::test]
async fn logout_revokes_the_session_only() {
    let server = TestServer::start().await;
    let phone = server.token("dev:lin#phone").await;
    let tablet = server.token("dev:lin#tablet").await;
    let response = server
        .http
        .post(server.url("/v1/logout"))
        .bearer_auth(&phone)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(session_status(&server, &phone).await, revoked());
    assert_eq!(session_status(&server, &tablet).await.0, 200);
    let reason: String = server
        .db()
        .query_row(
            "SELECT revoked_reason FROM sessions WHERE revoked_at IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(reason, "logout");
}

#[tokio::test]
async fn logout_all_revokes_every_session_of_the_user() {
    let server = TestServer::start().await;
    let a = server.token("dev:mei#1").await;
    let b = server.token("dev:mei#2").await;
    let other = server.token("dev:nils").await;
    let response = server
        .post_json("/v1/logout", &json!({"all": true}), Some(&a))
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(session_status(&server, &a).await, revoked());
    assert_eq!(session_status(&server, &b).await, revoked());
    assert_eq!(session_status(&server, &other).await.0, 200);
}

#[tokio::test]
async fn the_oldest_session_is_evicted_beyond_the_cap() {
    let server = TestServer::start_with(|l| l.max_sessions_per_user = Some(2)).await;
    let first = server.token("dev:omar#1").await;
    let second = server.token("dev:omar#2").await;
    let third = server.token("dev:omar#3").await;
    let (status, code) = session_status(&server, &first).await;
    assert_eq!((status, code.as_str()), (401, "session_revoked"));
    let message: Value = server
        .get("/v1/session", Some(&first))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        message["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too many devices")
    );
    assert_eq!(session_status(&server, &second).await.0, 200);
    assert_eq!(session_status(&server, &third).await.0, 200);
    let evicted: i64 = server
        .db()
        .query_row(
            "SELECT count(*) FROM sessions WHERE revoked_reason = 'evicted'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(evicted, 1);
}

#[tokio::test]
async fn expired_sessions_do_not_count_against_the_cap() {
    let server = TestServer::start_with(|l| l.max_sessions_per_user = Some(1)).await;
    server.token("dev:pia#1").await;
    server.clock.advance(Duration::from_secs(8 * DAY));
    server.token("dev:pia#2").await;
    let evicted: i64 = server
        .db()
        .query_row(
            "SELECT count(*) FROM sessions WHERE revoked_reason = 'evicted'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(evicted, 0, "an expired session needs no eviction");
}

#[tokio::test]
async fn last_seen_is_kept_coarsely() {
    let server = TestServer::start().await;
    let token = server.token("dev:quinn").await;
    server.clock.advance(Duration::from_secs(3600));
    assert_eq!(session_status(&server, &token).await.0, 200);
    // The update is queued behind the request.
    wait_for_last_seen(&server, common::START + 3600).await;
    // The answer, made once per copy in memory, follows the update. (The update's
    // commit is visible to the query above a moment before the server marks its copy
    // stale, hence a few tries.)
    let mut answered = Value::Null;
    for _ in 0..10 {
        answered = session_info(&server, &token).await["session"]["last_seen_at"].clone();
        if answered == "2026-11-30T11:00:00Z" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(answered, "2026-11-30T11:00:00Z");
}

/// Every request served from the copy in memory of a stale session sees the same old
/// `last_seen_at`, until its update commits; only the first of them queues the update.
/// Another connection holds the write lock meanwhile, so that the update cannot land
/// while the requests come in.
#[tokio::test]
async fn a_stale_last_seen_is_updated_once_however_many_requests_see_it() {
    let server = TestServer::start().await;
    let token = server.token("dev:rhea").await;
    assert_eq!(session_status(&server, &token).await.0, 200);
    let before = writes_committed(&server).await;
    server.clock.advance(Duration::from_secs(3600));

    let holder = server.db_rw();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    for _ in 0..20 {
        assert_eq!(session_status(&server, &token).await.0, 200);
    }
    holder.execute_batch("COMMIT").unwrap();
    // Any further update would have been queued with the first and committed with it.
    assert_last_seen_updated_once(&server, common::START + 3600, before).await;
}

/// A session's `last_seen_at` comes due a minute and its own share of a second minute
/// after it was stamped, by the session's id, so that sessions stamped in the same second
/// do not all come due together.
#[tokio::test]
async fn a_session_comes_due_for_its_last_seen_update_at_its_own_second() {
    let server = TestServer::start().await;
    let token = server.token("dev:rosa").await;
    let id: i64 = server
        .db()
        .query_row("SELECT id FROM sessions", [], |r| r.get(0))
        .unwrap();
    let due = wxauth::domain::sessions::touch_interval(id);
    assert!(
        due > 60,
        "session {id} comes due after {due} s: pick one that waits longer"
    );
    let before = writes_committed(&server).await;

    server.clock.advance(Duration::from_secs(due as u64 - 1));
    assert_eq!(session_status(&server, &token).await.0, 200);
    server.clock.advance(Duration::from_secs(1));
    assert_eq!(session_status(&server, &token).await.0, 200);
    // Had the first request queued an update too, it would have been committed first.
    assert_last_seen_updated_once(&server, common::START + due, before).await;
}

/// Waits for the one session's stored `last_seen_at` to become `expected`.
async fn wait_for_last_seen(server: &TestServer, expected: i64) {
    let mut seen = 0;
    for _ in 0..100 {
        seen = server
            .db()
            .query_row("SELECT last_seen_at FROM sessions", [], |r| r.get(0))
            .unwrap();
        if seen == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, expected, "last_seen_at was not updated");
}

/// Waits for the stored `last_seen_at` to become `expected`, then checks, a moment later
/// for any write still on its way, that exactly one write was committed since the
/// server's metrics counted `before`.
async fn assert_last_seen_updated_once(server: &TestServer, expected: i64, before: f64) {
    wait_for_last_seen(server, expected).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(writes_committed(server).await - before, 1.0);
}

/// The writes the server has committed, from its metrics.
async fn writes_committed(server: &TestServer) -> f64 {
    let text = server.get("/metrics", None).await.text().await.unwrap();
    common::metric_sample(&text, "wxauth_db_write_batch_size_sum")
        .unwrap_or_else(|| panic!("no write count in {text}"))
}

async fn session_info(server: &TestServer, token: &str) -> Value {
    let response = server.get("/v1/session", Some(token)).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Authenticated requests are answered from a copy of the session kept in memory; every
/// change that goes through wxauth is still seen by the very next request.
#[tokio::test]
async fn a_session_kept_in_memory_follows_every_change_at_once() {
    let server = TestServer::start_with(|l| l.max_sessions_per_user = Some(1)).await;
    let token = server.token("dev:rita#phone").await;
    assert_eq!(
        session_info(&server, &token).await["user"]["nickname"],
        Value::Null
    );

    let response = server
        .patch_me(&token, &json!({"nickname": "Rita 🌸"}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        session_info(&server, &token).await["user"]["nickname"],
        "Rita 🌸"
    );

    server.clock.advance(Duration::from_secs(DAY));
    let response = server
        .post_json("/v1/session/refresh", &json!({}), Some(&token))
        .await;
    let refreshed: Value = response.json().await.unwrap();
    assert_eq!(refreshed["expires_at"], "2026-12-08T10:00:00Z");
    let info = session_info(&server, &token).await;
    assert_eq!(info["session"]["expires_at"], "2026-12-08T10:00:00Z");

    // A login on another device evicts this session (the cap is 1).
    server.token("dev:rita#tablet").await;
    assert_eq!(session_status(&server, &token).await, revoked());
}

/// A change made straight in the database file, behind wxauth's back, is seen once the
/// server's look for other processes' commits has found it: within half a second.
#[tokio::test]
async fn a_change_made_behind_wxauths_back_is_seen_within_half_a_second() {
    let server = TestServer::start().await;
    let token = server.token("dev:sami").await;
    assert_eq!(session_status(&server, &token).await.0, 200);
    server
        .db_rw()
        .execute(
            "UPDATE sessions SET revoked_at = ?1, revoked_reason = 'admin'",
            [common::START],
        )
        .unwrap();
    tokio::time::sleep(wxauth::db::MAX_EXTERNAL_LAG).await;
    assert_eq!(session_status(&server, &token).await, revoked());
}

/// While nothing changes a session or its user, requests go on being answered from the
/// copy in memory, well past the half second within which another process's change
/// would be seen.
#[tokio::test]
async fn an_unchanged_session_is_not_read_again() {
    let server = TestServer::start().await;
    let token = server.token("dev:uma").await;
    let before = session_reads(&server).await;
    for _ in 0..20 {
        assert_eq!(session_status(&server, &token).await.0, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Read once; a copy read again every half second would have taken four reads or
    // more. One more is allowed for a machine so busy that a look came late.
    let reads = session_reads(&server).await - before;
    assert!((1.0..=2.0).contains(&reads), "{reads} reads");
}

/// The sessions requests read from the database, from the server's metrics.
async fn session_reads(server: &TestServer) -> f64 {
    let text = server.get("/metrics", None).await.text().await.unwrap();
    common::metric_sample(&text, "wxauth_session_reads_total")
        .unwrap_or_else(|| panic!("no session read count in {text}"))
}
