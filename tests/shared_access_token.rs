//! The app's access_token handed to the team's own services (`GET
//! /v1/wechat/access-token`), and replaced when WeChat refuses it to one of them (`POST
//! /v1/wechat/access-token/refresh`): one token for everyone, one refresh per refusal
//! however many services report it, within WeChat's limits on forced refreshes.

mod common;

use common::{APPID, TestServer, error_of};
use serde_json::{Value, json};

/// A service key with `scopes`, made as `wxauth service-keys create` makes it.
fn key(server: &TestServer, scopes: &[wxauth::domain::service_keys::Scope]) -> String {
    let conn = wxauth::db::open_existing(&server.dir.path().join("data")).unwrap();
    let name = scopes
        .iter()
        .map(|s| s.as_str().replace('_', "-"))
        .collect::<Vec<_>>()
        .join(".");
    let (_, key) =
        wxauth::domain::service_keys::create(&conn, &name, scopes, common::START).unwrap();
    key.expose().to_owned()
}

async fn current(server: &TestServer, key: &str) -> Value {
    let response = server
        .get(&format!("/v1/wechat/access-token?appid={APPID}"), Some(key))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

async fn refresh(server: &TestServer, key: &str, rejected: &str) -> reqwest::Response {
    server
        .post_json(
            "/v1/wechat/access-token/refresh",
            &json!({ "appid": APPID, "rejected": rejected }),
            Some(key),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_share_the_token_wxauth_uses() {
    let server = TestServer::start().await;
    let key = key(&server, &[wxauth::domain::service_keys::Scope::AccessToken]);
    let first = current(&server, &key).await;
    let token = first["access_token"].as_str().unwrap();
    assert_eq!(server.mock.issued_access_tokens(), [token]);
    assert!(first["expires_at"].as_str().unwrap().ends_with('Z'));
    // Many services, one token, one fetch; and wxauth's own calls use the same one.
    let again = futures_util::future::join_all((0..20).map(|_| current(&server, &key))).await;
    assert!(again.iter().all(|a| a["access_token"] == token));
    let user = server.token("dev:ivy").await;
    let phone = server
        .post_json("/v1/me/phone", &json!({"code": "c1"}), Some(&user))
        .await;
    assert_eq!(phone.status(), 200);
    assert_eq!(server.mock.stable_token_calls(), 1);
    // Without `appid`, the one mini program is meant.
    let bare: Value = server
        .get("/v1/wechat/access-token", Some(&key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bare["access_token"], token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_reported_many_times_makes_one_refresh() {
    let server = TestServer::start().await;
    let key = key(&server, &[wxauth::domain::service_keys::Scope::AccessToken]);
    let old = current(&server, &key).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Ten services report the same refused token at once.
    let answers =
        futures_util::future::join_all((0..10).map(|_| refresh(&server, &key, &old))).await;
    let mut tokens = Vec::new();
    for answer in answers {
        assert_eq!(answer.status(), 200);
        let body: Value = answer.json().await.unwrap();
        tokens.push(body["access_token"].as_str().unwrap().to_owned());
    }
    let new = tokens[0].clone();
    assert_ne!(new, old);
    assert!(tokens.iter().all(|t| *t == new), "{tokens:?}");
    assert_eq!(server.mock.forced_refreshes(), 1);
    // A refusal of a token already replaced, however late, costs nothing.
    server.clock.advance(std::time::Duration::from_secs(60));
    let late: Value = refresh(&server, &key, &old).await.json().await.unwrap();
    assert_eq!(late["access_token"], new.as_str());
    assert_eq!(server.mock.forced_refreshes(), 1);
    assert_eq!(current(&server, &key).await["access_token"], new.as_str());
}

#[tokio::test]
async fn forced_refreshes_stay_within_wechats_limit() {
    let server = TestServer::start().await;
    let key = key(&server, &[wxauth::domain::service_keys::Scope::AccessToken]);
    let mut token = current(&server, &key).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // WeChat allows forced refreshes 30 seconds apart: a second refusal within them
    // asks for the current token instead of forcing another.
    token = refresh(&server, &key, &token)
        .await
        .json::<Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(server.mock.forced_refreshes(), 1);
    let within: Value = refresh(&server, &key, &token).await.json().await.unwrap();
    assert_eq!(
        server.mock.forced_refreshes(),
        1,
        "no second forced refresh within 30 s"
    );
    assert!(within["access_token"].is_string());
    server.clock.advance(std::time::Duration::from_secs(31));
    let current_token = within["access_token"].as_str().unwrap().to_owned();
    refresh(&server, &key, &current_token).await;
    assert_eq!(server.mock.forced_refreshes(), 2);
}

#[tokio::test]
async fn only_keys_with_the_scope_get_a_token() {
    let server = TestServer::start().await;
    let plain = key(&server, &[wxauth::domain::service_keys::Scope::Introspect]);
    let response = server.get("/v1/wechat/access-token", Some(&plain)).await;
    assert_eq!(error_of(response).await, (403, "forbidden".into()));
    let response = refresh(&server, &plain, "x").await;
    assert_eq!(error_of(response).await, (403, "forbidden".into()));
    let response = server.get("/v1/wechat/access-token", None).await;
    assert_eq!(error_of(response).await, (401, "invalid_token".into()));
    assert_eq!(server.mock.stable_token_calls(), 0);

    let key = key(&server, &[wxauth::domain::service_keys::Scope::AccessToken]);
    for (path, expected) in [
        (
            "/v1/wechat/access-token?appid=wxnobody",
            (400, "unknown_app"),
        ),
        ("/v1/wechat/access-token?app=x", (400, "invalid_request")),
    ] {
        let response = server.get(path, Some(&key)).await;
        assert_eq!(
            error_of(response).await,
            (expected.0, expected.1.into()),
            "{path}"
        );
    }
    for body in [
        json!({}),
        json!({"rejected": ""}),
        json!({"rejected": 5}),
        json!({"rejected": "x", "more": 1}),
    ] {
        let response = server
            .post_json("/v1/wechat/access-token/refresh", &body, Some(&key))
            .await;
        assert_eq!(
            error_of(response).await,
            (400, "invalid_request".into()),
            "{body}"
        );
    }
    assert_eq!(
        server.mock.stable_token_calls(),
        0,
        "nothing was fetched for bad requests"
    );
}
