//! The access_token manager seen from outside: one stable_token call however many
//! requests need a token, reuse across a restart, refresh before expiry, and exactly one
//! refresh and retry when WeChat refuses a token.

mod common;

use std::time::Duration;

use common::{APPID, TestServer, error_of};
use serde_json::json;

async fn bind_phone(server: &TestServer, token: &str, code: &str) -> reqwest::Response {
    server
        .post_json("/v1/me/phone", &json!({ "code": code }), Some(token))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_calls_make_one_stable_token_call() {
    let server =
        TestServer::start_with(|l| l.profile_rate_limit = Some("off".parse().unwrap())).await;
    let token = server.token("dev:ada").await;
    let calls = (0..100).map(|i| {
        let server = &server;
        let token = token.clone();
        async move {
            bind_phone(server, &token, &format!("code-{i}"))
                .await
                .status()
        }
    });
    let statuses = futures_util::future::join_all(calls).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(server.mock.stable_token_calls(), 1);
    assert_eq!(server.mock.phone_calls(), 100);
}

#[tokio::test]
async fn a_restart_reuses_the_stored_token() {
    let mut server = TestServer::start().await;
    let token = server.token("dev:bea").await;
    assert_eq!(bind_phone(&server, &token, "c1").await.status(), 200);
    assert_eq!(server.mock.stable_token_calls(), 1);
    server.restart().await;
    assert_eq!(bind_phone(&server, &token, "c2").await.status(), 200);
    assert_eq!(
        server.mock.stable_token_calls(),
        1,
        "the token stored before the restart is used"
    );
    // It is stored sealed.
    let sealed: Vec<u8> = server
        .db()
        .query_row(
            "SELECT sealed FROM access_tokens WHERE appid = ?1",
            [APPID],
            |r| r.get(0),
        )
        .unwrap();
    let issued = server.mock.issued_access_tokens();
    assert!(
        !sealed
            .windows(issued[0].len())
            .any(|w| w == issued[0].as_bytes())
    );
}

#[tokio::test]
async fn a_token_is_refreshed_before_it_expires() {
    let server = TestServer::start().await;
    let token = server.token("dev:cleo").await;
    assert_eq!(bind_phone(&server, &token, "c1").await.status(), 200);
    // 7200 s tokens are replaced five minutes early.
    server.clock.advance(Duration::from_secs(7200 - 301));
    assert_eq!(bind_phone(&server, &token, "c2").await.status(), 200);
    assert_eq!(server.mock.stable_token_calls(), 1);
    server.clock.advance(Duration::from_secs(2));
    assert_eq!(bind_phone(&server, &token, "c3").await.status(), 200);
    assert_eq!(server.mock.stable_token_calls(), 2);
    assert_eq!(server.mock.forced_refreshes(), 0);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_call_retried() {
    let server = TestServer::start().await;
    let token = server.token("dev:dora").await;
    assert_eq!(bind_phone(&server, &token, "c1").await.status(), 200);
    // WeChat expires the token earlier than it said (42001).
    server.mock.expire_access_tokens();
    assert_eq!(bind_phone(&server, &token, "c2").await.status(), 200);
    assert_eq!(server.mock.stable_token_calls(), 2);
    assert_eq!(server.mock.forced_refreshes(), 1);
    assert_eq!(
        server.mock.phone_calls(),
        3,
        "one failed call and one retry"
    );
    // The new token serves the next call without another refresh.
    assert_eq!(bind_phone(&server, &token, "c3").await.status(), 200);
    assert_eq!(server.mock.stable_token_calls(), 2);
}

#[tokio::test]
async fn a_token_refused_twice_is_refreshed_only_once() {
    let server = TestServer::start().await;
    let token = server.token("dev:edna").await;
    // The fake refuses every token for this code (40001).
    let response = bind_phone(&server, &token, "fail:40001").await;
    assert_eq!(error_of(response).await, (502, "upstream_error".into()));
    assert_eq!(server.mock.phone_calls(), 2, "one call and one retry");
    assert_eq!(server.mock.stable_token_calls(), 2);
    assert_eq!(server.mock.forced_refreshes(), 1);

    // Within 30 seconds WeChat allows no second forced refresh: the next refusal asks
    // for the current token instead.
    let response = bind_phone(&server, &token, "fail:40001").await;
    assert_eq!(error_of(response).await, (502, "upstream_error".into()));
    assert_eq!(server.mock.stable_token_calls(), 3);
    assert_eq!(server.mock.forced_refreshes(), 1);

    server.clock.advance(Duration::from_secs(30));
    bind_phone(&server, &token, "fail:42001").await;
    assert_eq!(server.mock.forced_refreshes(), 2);
    let (count, last): (i64, i64) = server
        .db()
        .query_row(
            "SELECT force_count, last_force_at FROM access_tokens",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((count, last), (2, common::START + 30));
}

#[tokio::test]
async fn the_daily_force_budget_survives_a_restart() {
    let mut server = TestServer::start().await;
    let token = server.token("dev:fay").await;
    bind_phone(&server, &token, "fail:40001").await;
    assert_eq!(server.mock.forced_refreshes(), 1);
    server.restart().await;
    bind_phone(&server, &token, "fail:40001").await;
    assert_eq!(
        server.mock.forced_refreshes(),
        1,
        "the 30-second spacing is remembered across the restart"
    );
}
