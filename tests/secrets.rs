//! No secret in any log line or error: a full set of flows runs with every log enabled at
//! `trace`, and neither the AppSecret, the jscode2session URL, the session_key nor any
//! issued token may appear in the captured output or in a response.

mod common;

use common::{APP_SECRET, TestServer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_or_responses() {
    let capture = common::LogCapture::install();

    let server = TestServer::start().await;
    let mut seen = Vec::new();
    let mut tokens = Vec::new();
    for code in [
        "dev:wanda",
        "dev:wanda#2",
        "busy:1:dev:xena",
        "fail:40029",
        "fail:40125",
        "fail:45011",
        "garbage",
        "http:500",
        "hang",
    ] {
        let response = server.login(code).await;
        let body = response.text().await.unwrap();
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&body)
            && let Some(token) = value["token"].as_str()
        {
            tokens.push(token.to_owned());
        }
        seen.push(body);
    }
    for token in &tokens {
        seen.push(
            server
                .get("/v1/session", Some(token))
                .await
                .text()
                .await
                .unwrap(),
        );
        let refreshed = server
            .post_json("/v1/session/refresh", &json!({}), Some(token))
            .await
            .text()
            .await
            .unwrap();
        seen.push(refreshed);
        server
            .post_json("/v1/logout", &json!({}), Some(token))
            .await;
        seen.push(
            server
                .get("/v1/me", Some(token))
                .await
                .text()
                .await
                .unwrap(),
        );
    }
    assert!(tokens.len() >= 3);

    let logs = capture.text();
    assert!(logs.contains("login"), "the capture works: {logs}");
    let responses = seen.join("\n");
    for (name, needle) in [
        ("AppSecret", APP_SECRET),
        ("jscode2session URL", "jscode2session?"),
        ("secret parameter", "secret="),
        ("js_code parameter", "js_code="),
    ] {
        assert!(!logs.contains(needle), "{name} in the logs");
        assert!(!responses.contains(needle), "{name} in a response");
    }
    for token in &tokens {
        assert!(!logs.contains(token.as_str()), "a token in the logs");
        let sid = token.split('.').nth(2).unwrap();
        assert!(!logs.contains(sid), "a session secret in the logs");
    }
    for name in ["wanda", "xena"] {
        let key = wxauth::wechat::fake::dev_session_key(name);
        assert!(!logs.contains(&key), "a session_key in the logs");
        assert!(!responses.contains(&key), "a session_key in a response");
    }
}
