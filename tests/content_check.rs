//! Nickname content checks through WeChat's msg_sec_check: off by default, `risky`
//! refused, and the configured policy when WeChat cannot be reached.

mod common;

use common::{TestServer, error_of};
use serde_json::{Value, json};

async fn nickname(server: &TestServer, token: &str, name: &str) -> reqwest::Response {
    server.patch_me(token, &json!({ "nickname": name })).await
}

#[tokio::test]
async fn nicknames_are_not_checked_unless_switched_on() {
    let server = TestServer::start().await;
    let token = server.token("dev:sky").await;
    assert_eq!(nickname(&server, &token, "risky name").await.status(), 200);
    assert_eq!(server.mock.sec_check_calls(), 0);
    assert_eq!(server.mock.stable_token_calls(), 0);
}

#[tokio::test]
async fn a_passing_nickname_is_saved_and_a_risky_one_refused() {
    let server = TestServer::start_with(|l| l.content_check = Some(true)).await;
    let token = server.token("dev:tia").await;
    let response = nickname(&server, &token, "Tia 🌸").await;
    assert_eq!(response.status(), 200);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["nickname"], "Tia 🌸");
    assert_eq!(server.mock.sec_check_calls(), 1);

    let before = server.snapshot();
    let response = nickname(&server, &token, "very risky").await;
    assert_eq!(error_of(response).await, (422, "content_rejected".into()));
    assert_eq!(server.snapshot(), before);
    // Changes without a nickname are not checked.
    assert_eq!(
        server
            .patch_me(&token, &json!({"city": "Shenzhen"}))
            .await
            .status(),
        200
    );
    assert_eq!(server.mock.sec_check_calls(), 2);
    // `review` is left to the app, which accepts it.
    assert_eq!(
        nickname(&server, &token, "needs review").await.status(),
        200
    );
}

#[tokio::test]
async fn the_wechat_profile_nickname_is_checked_too() {
    let server = TestServer::start_with(|l| l.content_check = Some(true)).await;
    let token = server.token("dev:uli").await;
    let body: Value = server
        .http
        .get(format!("{}/mock/open-data", server.mock.base_url()))
        .query(&[
            ("name", "uli"),
            ("appid", common::APPID),
            ("kind", "profile"),
            ("nickname", "risky uli"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let response = server
        .post_json("/v1/me/wechat-profile", &body, Some(&token))
        .await;
    assert_eq!(error_of(response).await, (422, "content_rejected".into()));
}

#[tokio::test]
async fn an_unreachable_check_allows_by_default() {
    let server = TestServer::start_with(|l| l.content_check = Some(true)).await;
    let token = server.token("dev:val").await;
    let response = nickname(&server, &token, "unavailable val").await;
    assert_eq!(response.status(), 200);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["nickname"], "unavailable val");
}

#[tokio::test]
async fn an_unreachable_check_can_reject() {
    let server = TestServer::start_with(|l| {
        l.content_check = Some(true);
        l.content_check_unavailable = Some("reject".parse().unwrap());
    })
    .await;
    let token = server.token("dev:wyn").await;
    let before = server.snapshot();
    let response = nickname(&server, &token, "unavailable wyn").await;
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        error_of(response).await,
        (503, "upstream_unavailable".into())
    );
    assert_eq!(server.snapshot(), before);
}
