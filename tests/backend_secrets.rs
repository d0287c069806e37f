//! No secret in any log line on the backend-facing routes: with every log enabled at
//! `trace`, neither a service key, nor a token checked by forward auth or introspection,
//! nor a WeChat access_token handed to a service may appear in the captured output.

mod common;

use common::TestServer;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_keys_and_tokens_never_reach_the_logs() {
    let capture = common::LogCapture::install();

    let server = TestServer::start().await;
    let conn = wxauth::db::open_existing(&server.dir.path().join("data")).unwrap();
    let (_, key) = wxauth::domain::service_keys::create(
        &conn,
        "logged",
        &[
            wxauth::domain::service_keys::Scope::Introspect,
            wxauth::domain::service_keys::Scope::AccessToken,
        ],
        common::START,
    )
    .unwrap();
    let (revoked_row, revoked) = wxauth::domain::service_keys::create(
        &conn,
        "gone",
        &[wxauth::domain::service_keys::Scope::Introspect],
        common::START,
    )
    .unwrap();
    wxauth::domain::service_keys::revoke(&conn, &revoked_row.public_id, common::START).unwrap();
    let (key, revoked) = (key.expose().to_owned(), revoked.expose().to_owned());

    let live = server.token("dev:yusuf").await;
    let logged_out = server.token("dev:yusuf#2").await;
    server
        .post_json("/v1/logout", &json!({}), Some(&logged_out))
        .await;
    let tokens = [live, logged_out];
    for token in &tokens {
        server.get("/v1/auth/forward", Some(token)).await;
        for service_key in [&key, &revoked] {
            server
                .post_json(
                    "/v1/introspect",
                    &json!({ "token": token }),
                    Some(service_key),
                )
                .await;
        }
    }

    let handed: serde_json::Value = server
        .get("/v1/wechat/access-token", Some(&key))
        .await
        .json()
        .await
        .unwrap();
    let refreshed = server
        .post_json(
            "/v1/wechat/access-token/refresh",
            &json!({ "rejected": handed["access_token"] }),
            Some(&key),
        )
        .await;
    assert_eq!(refreshed.status(), 200);

    let logs = capture.text();
    let access_tokens = server.mock.issued_access_tokens();
    assert_eq!(
        access_tokens.len(),
        2,
        "one handed out, one after the refusal"
    );
    for token in &access_tokens {
        assert!(
            !logs.contains(token.as_str()),
            "an access_token in the logs"
        );
    }
    assert!(
        logs.contains("a service reported a refused access_token"),
        "{logs}"
    );
    assert!(
        logs.contains("introspected an inactive token"),
        "the capture works: {logs}"
    );
    for secret in [&key, &revoked] {
        assert!(!logs.contains(secret.as_str()), "a service key in the logs");
        let random = secret.strip_prefix("wxsk_").unwrap();
        assert!(!logs.contains(random), "a service key in the logs");
    }
    for token in &tokens {
        assert!(!logs.contains(token.as_str()), "a token in the logs");
        let sid = token.split('.').nth(2).unwrap();
        assert!(!logs.contains(sid), "a session secret in the logs");
    }
}
