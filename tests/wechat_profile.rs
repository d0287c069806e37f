//! POST /v1/me/wechat-profile: the legacy getUserProfile payload checked (rawData
//! signature), decrypted with the stored session_key and applied to the profile.

mod common;

use common::{TestServer, error_of};
use serde_json::{Value, json};
use wxauth::keys::crypto::raw_data_signature;
use wxauth::wechat::fake::{dev_session_key, seal_open_data};

async fn submit(server: &TestServer, token: &str, body: &Value) -> reqwest::Response {
    server
        .post_json("/v1/me/wechat-profile", body, Some(token))
        .await
}

/// A payload for `name` signed and encrypted with `name`'s session_key, carrying `data`.
fn payload(name: &str, data: Value) -> Value {
    let key = dev_session_key(name);
    let raw_data = json!({"nickName": data["nickName"]}).to_string();
    let mut body = seal_open_data(&key, &data);
    body["raw_data"] = json!(raw_data);
    body["signature"] = json!(raw_data_signature(&raw_data, &key));
    body
}

#[tokio::test]
async fn the_wechat_profile_is_applied() {
    let server = TestServer::start().await;
    let token = server.token("dev:gina").await;
    let body = server.open_data("gina", "profile").await;
    let response = submit(&server, &token, &body).await;
    assert_eq!(response.status(), 200);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["nickname"], "gina");
    assert_eq!(user["gender"], 1);
    assert_eq!(user["city"], "Guangzhou");
    assert_eq!(user["province"], "Guangdong");
    assert_eq!(user["country"], "CN");
    assert_eq!(user["language"], "zh_CN");
    // WeChat's http avatar URL is stored as https.
    assert_eq!(
        user["avatar_url"],
        "https://thirdwx.qlogo.cn/mmopen/vi_32/mock/132"
    );
    for hidden in ["openid", "unionid", "session_key"] {
        assert!(user.get(hidden).is_none(), "{hidden} leaked");
    }
    // Unicode nicknames round-trip exactly.
    let body = server
        .http
        .get(format!("{}/mock/open-data", server.mock.base_url()))
        .query(&[
            ("name", "gina"),
            ("appid", common::APPID),
            ("kind", "profile"),
            ("nickname", "小明 🐼"),
        ])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let user: Value = submit(&server, &token, &body).await.json().await.unwrap();
    assert_eq!(user["nickname"], "小明 🐼");
}

#[tokio::test]
async fn a_wrong_signature_is_refused_and_changes_nothing() {
    let server = TestServer::start().await;
    let token = server.token("dev:hana").await;
    let mut body = server.open_data("hana", "profile").await;
    body["raw_data"] = json!(body["raw_data"].as_str().unwrap().replace("hana", "hacker"));
    let before = server.snapshot();
    let response = submit(&server, &token, &body).await;
    assert_eq!(error_of(response).await, (422, "invalid_signature".into()));
    assert_eq!(server.snapshot(), before);
}

#[tokio::test]
async fn bad_encrypted_data_is_refused() {
    let server = TestServer::start().await;
    let token = server.token("dev:ivy").await;
    let openid_elsewhere = json!({
        "openId": "oSomebodyElse0000000000000000", "nickName": "ivy",
        "watermark": {"appid": common::APPID, "timestamp": 1}
    });
    let other_app = json!({
        "nickName": "ivy", "watermark": {"appid": "wxanotherapp00000", "timestamp": 1}
    });
    let no_watermark = json!({"nickName": "ivy"});
    let before = server.snapshot();
    for data in [openid_elsewhere, other_app, no_watermark] {
        let response = submit(&server, &token, &payload("ivy", data.clone())).await;
        assert_eq!(
            error_of(response).await,
            (422, "decrypt_failed".into()),
            "{data}"
        );
    }
    // Data encrypted with someone else's key, correctly signed.
    let mut foreign = payload("ivy", json!({"nickName": "ivy"}));
    let other = seal_open_data(&dev_session_key("jack"), &json!({"nickName": "ivy"}));
    foreign["encrypted_data"] = other["encrypted_data"].clone();
    foreign["iv"] = other["iv"].clone();
    let response = submit(&server, &token, &foreign).await;
    assert_eq!(error_of(response).await, (422, "decrypt_failed".into()));
    assert_eq!(server.snapshot(), before);
}

#[tokio::test]
async fn a_stale_session_key_asks_for_a_new_login() {
    let server = TestServer::start().await;
    let token = server.token("dev:stale-kit").await;
    let body = server.open_data("stale-kit", "profile").await;
    let response = submit(&server, &token, &body).await;
    assert_eq!(
        error_of(response).await,
        (422, "session_key_expired".into())
    );
    assert_eq!(server.mock.check_session_calls(), 1);
}

#[tokio::test]
async fn malformed_profile_requests_are_refused() {
    let server = TestServer::start().await;
    let token = server.token("dev:lena").await;
    let good = server.open_data("lena", "profile").await;
    let mut extra = good.clone();
    extra["openid"] = json!("x");
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("iv");
    for body in [json!({}), extra, missing] {
        let response = submit(&server, &token, &body).await;
        assert_eq!(error_of(response).await, (400, "invalid_request".into()));
    }
}
