//! No WeChat secret in any log line or response: the phone, profile, avatar, content
//! check and access_token flows run with every log enabled at `trace`, and neither the
//! AppSecret, a session_key nor an access_token may appear in the captured output or in
//! a response.

mod common;

use common::{APP_SECRET, TestServer};
use serde_json::json;
use wxauth::wechat::fake::{dev_session_key, seal_open_data};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechat_secrets_never_reach_logs_or_responses() {
    let capture = common::LogCapture::install();

    let mut server = TestServer::start_with(|l| l.content_check = Some(true)).await;
    let mut seen = Vec::new();
    let names = ["quill", "stale-rex"];
    let mut tokens = Vec::new();
    for name in names {
        let body = server.login_ok(&format!("dev:{name}")).await;
        tokens.push(body["token"].as_str().unwrap().to_owned());
        seen.push(body.to_string());
    }
    let token = tokens[0].clone();
    let stale = tokens[1].clone();

    let mut calls = vec![
        ("/v1/me/phone", json!({"code": "c1"}), token.clone()),
        ("/v1/me/phone", json!({"code": "fail:40001"}), token.clone()),
        ("/v1/me/phone", json!({"code": "fail:40029"}), token.clone()),
        (
            "/v1/me/phone",
            server.open_data("quill", "phone").await,
            token.clone(),
        ),
        (
            "/v1/me/phone",
            server.open_data("stale-rex", "phone").await,
            stale.clone(),
        ),
        (
            "/v1/me/wechat-profile",
            server.open_data("quill", "profile").await,
            token.clone(),
        ),
        (
            "/v1/me/wechat-profile",
            server.open_data("stale-rex", "profile").await,
            stale.clone(),
        ),
    ];
    let wrong_app = seal_open_data(
        &dev_session_key("quill"),
        &json!({"watermark": {"appid": "wxother0000000000"}}),
    );
    calls.push(("/v1/me/phone", wrong_app, token.clone()));
    let mut bad_signature = server.open_data("quill", "profile").await;
    bad_signature["signature"] = json!("0".repeat(40));
    calls.push(("/v1/me/wechat-profile", bad_signature, token.clone()));
    for (path, body, token) in &calls {
        seen.push(
            server
                .post_json(path, body, Some(token))
                .await
                .text()
                .await
                .unwrap(),
        );
    }
    for nickname in ["fine", "risky one", "unavailable"] {
        seen.push(
            server
                .patch_me(&token, &json!({ "nickname": nickname }))
                .await
                .text()
                .await
                .unwrap(),
        );
    }
    server.mock.expire_access_tokens();
    seen.push(
        server
            .post_json("/v1/me/phone", &json!({"code": "c2"}), Some(&token))
            .await
            .text()
            .await
            .unwrap(),
    );
    server.restart().await;
    seen.push(
        server
            .post_json("/v1/me/phone", &json!({"code": "c3"}), Some(&token))
            .await
            .text()
            .await
            .unwrap(),
    );
    seen.push(
        server
            .http
            .put(server.url("/v1/me/avatar"))
            .bearer_auth(&token)
            .header("content-type", "image/png")
            .body(b"\x89PNG\r\n\x1a\n0000".to_vec())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );

    let logs = capture.text();
    assert!(logs.contains("access_token fetched"), "the capture works");
    assert!(logs.contains("phone number bound"));
    let responses = seen.join("\n");
    assert!(responses.contains("session_key_expired"));
    assert!(responses.contains("content_rejected"));

    let issued = server.mock.issued_access_tokens();
    assert!(issued.len() >= 2, "{issued:?}");
    let mut needles: Vec<(&str, String)> = vec![
        ("AppSecret", APP_SECRET.to_owned()),
        ("access_token parameter", "access_token=".to_owned()),
    ];
    for name in names {
        needles.push(("session_key", dev_session_key(name)));
    }
    needles.push(("newer session_key", dev_session_key("stale-rex#newer")));
    for token in issued {
        needles.push(("access_token", token));
    }
    for (what, needle) in &needles {
        assert!(!logs.contains(needle.as_str()), "{what} in the logs");
        assert!(!responses.contains(needle.as_str()), "{what} in a response");
    }
}
