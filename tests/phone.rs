//! POST /v1/me/phone against the fake WeChat: by a getPhoneNumber code (with a managed
//! access_token) and by the legacy encrypted payload (with the stored session_key), and
//! every way the legacy payload can be wrong.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{APPID, TestServer, error_of};
use serde_json::{Value, json};
use wxauth::clock::ManualClock;
use wxauth::config::{Config, Layer};
use wxauth::wechat::fake::{dev_session_key, seal_open_data};

async fn phone(server: &TestServer, token: &str, body: Value) -> reqwest::Response {
    server.post_json("/v1/me/phone", &body, Some(token)).await
}

fn stored_phone(server: &TestServer) -> Option<String> {
    server
        .db()
        .query_row("SELECT phone FROM users", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_phone_code_gives_the_number_and_stores_it() {
    let server = TestServer::start().await;
    let token = server.token("dev:paula").await;
    let response = phone(&server, &token, json!({"code": "phone-code-1"})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let number = body["phone_number"].as_str().unwrap().to_owned();
    assert!(number.starts_with("138") && number.len() == 11, "{body}");
    assert_eq!(body["pure_phone_number"], number);
    assert_eq!(body["country_code"], "86");
    assert_eq!(stored_phone(&server), Some(number.clone()));
    let me: Value = server
        .get("/v1/me", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["phone"], number);
    assert_eq!(server.mock.stable_token_calls(), 1);
    assert_eq!(server.mock.phone_calls(), 1);
}

#[tokio::test]
async fn a_numeric_country_code_is_returned_as_a_string() {
    let server = TestServer::start().await;
    let token = server.token("dev:quinn").await;
    let body: Value = phone(&server, &token, json!({"code": "+1:abc"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["country_code"], "1");
    assert!(
        body["phone_number"].as_str().unwrap().starts_with("+1 "),
        "{body}"
    );
    assert_eq!(body["pure_phone_number"].as_str().unwrap().len(), 8);
}

#[tokio::test]
async fn wechat_errors_for_a_phone_code_map_to_codes_and_store_nothing() {
    let server = TestServer::start().await;
    let token = server.token("dev:rhea").await;
    for (code, expected) in [
        ("fail:40029", (400, "invalid_code")),
        ("fail:45011", (429, "rate_limited")),
        ("fail:61234", (502, "upstream_error")),
    ] {
        let response = phone(&server, &token, json!({ "code": code })).await;
        assert_eq!(
            error_of(response).await,
            (expected.0, expected.1.into()),
            "{code}"
        );
    }
    assert_eq!(stored_phone(&server), None);
}

#[tokio::test]
async fn malformed_phone_requests_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    let token = server.token("dev:sol").await;
    let before = server.snapshot();
    for body in [
        json!({}),
        json!({"code": ""}),
        json!({"code": 5}),
        json!({"code": "a", "encrypted_data": "b", "iv": "c"}),
        json!({"encrypted_data": "b"}),
        json!({"code": "a", "extra": 1}),
    ] {
        let response = phone(&server, &token, body.clone()).await;
        assert_eq!(
            error_of(response).await,
            (400, "invalid_request".into()),
            "{body}"
        );
    }
    let response = phone(&server, "not-a-token", json!({"code": "x"})).await;
    assert_eq!(error_of(response).await, (401, "invalid_token".into()));
    assert_eq!(server.snapshot(), before);
    assert_eq!(server.mock.phone_calls(), 0);
}

#[tokio::test]
async fn legacy_phone_data_decrypts_with_the_stored_session_key() {
    let server = TestServer::start().await;
    let token = server.token("dev:tess").await;
    let payload = server.open_data("tess", "phone").await;
    let response = phone(&server, &token, payload).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["phone_number"].as_str().unwrap().starts_with("139"));
    assert_eq!(body["country_code"], "86");
    assert_eq!(
        stored_phone(&server),
        body["phone_number"].as_str().map(String::from)
    );
    // No access_token is needed for the legacy form.
    assert_eq!(server.mock.stable_token_calls(), 0);
}

#[tokio::test]
async fn a_watermark_naming_another_app_is_refused() {
    let server = TestServer::start().await;
    let token = server.token("dev:ugo").await;
    let payload = seal_open_data(
        &dev_session_key("ugo"),
        &json!({"phoneNumber": "13800000000", "purePhoneNumber": "13800000000",
                "countryCode": "86", "watermark": {"appid": "wxsomeoneelse0000", "timestamp": 1}}),
    );
    let response = phone(&server, &token, payload).await;
    assert_eq!(error_of(response).await, (422, "decrypt_failed".into()));
    assert_eq!(stored_phone(&server), None);
    // The key itself is current, as checksession confirms.
    assert_eq!(server.mock.check_session_calls(), 1);
}

#[tokio::test]
async fn tampered_or_mangled_data_fails_to_decrypt() {
    let server = TestServer::start().await;
    let token = server.token("dev:vic").await;
    let good = server.open_data("vic", "phone").await;
    // A flipped bit in the next-to-last block garbles the padding in the last one.
    let mut bytes = base64_decode(good["encrypted_data"].as_str().unwrap());
    let n = bytes.len();
    bytes[n - 17] ^= 0x01;
    let tampered = json!({"encrypted_data": base64_encode(&bytes), "iv": good["iv"]});
    let not_json = seal_open_data(&dev_session_key("vic"), &json!("just a string"));
    for body in [
        tampered,
        not_json,
        json!({"encrypted_data": "!!!", "iv": good["iv"]}),
        json!({"encrypted_data": good["encrypted_data"], "iv": "AAAA"}),
    ] {
        let response = phone(&server, &token, body.clone()).await;
        assert_eq!(
            error_of(response).await,
            (422, "decrypt_failed".into()),
            "{body}"
        );
    }
    assert_eq!(stored_phone(&server), None);
}

#[tokio::test]
async fn a_stale_session_key_asks_for_a_new_login() {
    let server = TestServer::start().await;
    // WeChat has given "stale" users a newer session_key than the one wxauth holds, and
    // encrypts with the newer one.
    let token = server.token("dev:stale-wes").await;
    let payload = server.open_data("stale-wes", "phone").await;
    let response = phone(&server, &token, payload).await;
    assert_eq!(
        error_of(response).await,
        (422, "session_key_expired".into())
    );
    assert_eq!(server.mock.check_session_calls(), 1);
    assert_eq!(stored_phone(&server), None);
}

#[tokio::test]
async fn without_a_stored_session_key_the_legacy_form_asks_for_a_new_login() {
    let server = TestServer::start().await;
    let token = server.token("dev:xia").await;
    server
        .db_rw()
        .execute("UPDATE identities SET session_key = NULL", [])
        .unwrap();
    let payload = server.open_data("xia", "phone").await;
    let response = phone(&server, &token, payload).await;
    assert_eq!(
        error_of(response).await,
        (422, "session_key_expired".into())
    );
}

#[tokio::test]
async fn the_session_key_is_stored_sealed_and_replaced_on_each_login() {
    let server = TestServer::start().await;
    server.token("dev:yara#1").await;
    let sealed = |server: &TestServer| -> Vec<u8> {
        server
            .db()
            .query_row("SELECT session_key FROM identities", [], |r| r.get(0))
            .unwrap()
    };
    let first = sealed(&server);
    let key = dev_session_key("yara");
    let raw = base64_decode(&key);
    for needle in [key.as_bytes(), &raw[..]] {
        assert!(
            !first.windows(needle.len()).any(|w| w == needle),
            "the session_key is stored in the clear"
        );
    }
    server.token("dev:yara#2").await;
    assert_eq!(
        server.count("users"),
        1,
        "only the latest is kept, on the user's row"
    );
    assert_ne!(sealed(&server), first, "a login replaces it");
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn dev_mode_serves_the_phone_flows_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let layer = Layer {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(dir.path().to_owned()),
        ..Layer::default()
    };
    let config = Config::resolve(layer, true, &HashMap::new()).unwrap();
    let appid = config.apps[0].appid.clone();
    let app = wxauth::App::start(config, Arc::new(ManualClock::new(common::START)))
        .await
        .unwrap();
    let base = format!("http://{}", app.addr());
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{base}/v1/login"))
        .json(&json!({"code": "dev:zoe"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap();
    let response = http
        .post(format!("{base}/v1/me/phone"))
        .bearer_auth(token)
        .json(&json!({"code": "any"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_ne!(appid, APPID);
    app.shutdown().await;
}
