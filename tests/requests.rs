//! Profile changes and malformed input: every bad request gets a clear 4xx in the JSON
//! error shape and leaves the database exactly as it was.

mod common;

use common::{TestServer, error_of};
use serde_json::{Value, json};

#[tokio::test]
async fn profile_fields_round_trip_exactly() {
    let server = TestServer::start().await;
    let token = server.token("dev:rosa").await;
    let nickname = "小明 🐼👨‍👩‍👧 Robert'); DROP TABLE users;--";
    let patch = json!({
        "nickname": format!("  {nickname}\u{3000}"),
        "avatar_url": "https://thirdwx.qlogo.cn/mmopen/vi_32/abc/132",
        "gender": 2,
        "country": "中国",
        "province": "广东 \"quoted\" %_",
        "city": "深圳",
        "language": "zh_CN",
    });
    let response = server.patch_me(&token, &patch).await;
    assert_eq!(response.status(), 200);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["nickname"], nickname, "trimmed, otherwise unchanged");
    assert_eq!(user["province"], "广东 \"quoted\" %_");
    assert_eq!(user["gender"], 2);
    let again: Value = server
        .get("/v1/me", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again, user);
    let stored: String = server
        .db()
        .query_row("SELECT nickname FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, nickname);

    // null clears; fields not named stay.
    let response = server
        .patch_me(&token, &json!({"city": null, "gender": null}))
        .await;
    let cleared: Value = response.json().await.unwrap();
    assert_eq!(cleared["city"], Value::Null);
    assert_eq!(cleared["gender"], 0);
    assert_eq!(cleared["nickname"], nickname);
    // An empty patch changes nothing.
    let before = server.snapshot();
    let response = server.patch_me(&token, &json!({})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(server.snapshot(), before);
}

/// `wx.request` cannot send PATCH, so a mini program updates the profile with POST.
#[tokio::test]
async fn post_to_me_updates_the_profile_like_patch() {
    let server = TestServer::start().await;
    let token = server.token("dev:pia").await;
    let response = server
        .post_json(
            "/v1/me",
            &json!({"nickname": "皮亚 🌸", "gender": 2}),
            Some(&token),
        )
        .await;
    assert_eq!(response.status(), 200);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["nickname"], "皮亚 🌸");
    assert_eq!(user["gender"], 2);
    let stored: (String, i64) = server
        .db()
        .query_row("SELECT nickname, gender FROM users", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(stored, ("皮亚 🌸".to_owned(), 2));

    // The same rules apply: a bad field is refused and changes nothing.
    let before = server.snapshot();
    let response = server
        .post_json("/v1/me", &json!({"gender": 7}), Some(&token))
        .await;
    assert_eq!(
        error_of(response).await,
        (400, "invalid_request".to_owned())
    );
    assert_eq!(server.snapshot(), before);
}

#[tokio::test]
async fn invalid_profile_changes_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    let token = server.token("dev:sam").await;
    server.patch_me(&token, &json!({"nickname": "Sam"})).await;
    let before = server.snapshot();
    let cases = [
        json!({"nickname": ""}),
        json!({"nickname": " \t "}),
        json!({"nickname": "x".repeat(65)}),
        json!({"nickname": "bell\u{7}"}),
        json!({"nickname": 42}),
        json!({"gender": 5}),
        json!({"gender": "2"}),
        json!({"avatar_url": "http://insecure.example.com/a.png"}),
        json!({"avatar_url": "ftp://x"}),
        json!({"country": "c".repeat(65)}),
        json!({"openid": "o123"}),
        json!({"phone": "13800000000"}),
        json!("nickname"),
        json!(null),
        json!([1, 2]),
        json!({"nickname": "ok", "unknown": 1}),
    ];
    for case in cases {
        let response = server.patch_me(&token, &case).await;
        assert_eq!(
            error_of(response).await,
            (400, "invalid_request".into()),
            "{case}"
        );
    }
    assert_eq!(server.snapshot(), before);
}

#[tokio::test]
async fn malformed_logins_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    server.token("dev:tara").await;
    let before = server.snapshot();
    let calls = server.mock.code2session_calls();
    let json_cases: [(&[u8], u16, &str); 11] = [
        (b"{\"code\": ", 400, "invalid_request"),
        (b"{}", 400, "invalid_request"),
        (b"{\"code\": 123}", 400, "invalid_request"),
        (b"{\"code\": \"\"}", 400, "invalid_request"),
        (b"{\"code\": null}", 400, "invalid_request"),
        (b"{\"code\": \"abc\", \"extra\": 1}", 400, "invalid_request"),
        (b"[\"abc\"]", 400, "invalid_request"),
        (b"", 400, "invalid_request"),
        (b"\xff\xfe{\"code\":\"x\"}", 400, "invalid_request"),
        (b"{\"code\": \"\xc3\x28\"}", 400, "invalid_request"),
        (b"{\"code\": \"a\\u0000b\"}", 400, "invalid_request"),
    ];
    for (body, status, code) in json_cases {
        let response = server
            .http
            .post(server.url("/v1/login"))
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_of(response).await,
            (status, code.to_owned()),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    // Wrong content type.
    let response = server
        .http
        .post(server.url("/v1/login"))
        .header("content-type", "text/plain")
        .body("{\"code\": \"dev:x\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(response).await,
        (415, "unsupported_media_type".into())
    );
    let response = server
        .http
        .post(server.url("/v1/login"))
        .body("code=dev:x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(response).await,
        (415, "unsupported_media_type".into())
    );
    // Oversized, declared and chunked.
    let big = format!("{{\"code\": \"{}\"}}", "a".repeat(20_000));
    let response = server
        .http
        .post(server.url("/v1/login"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await, (413, "payload_too_large".into()));
    let stream = futures_util::stream::iter(
        big.into_bytes()
            .chunks(1000)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let response = server
        .http
        .post(server.url("/v1/login"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await, (413, "payload_too_large".into()));

    assert_eq!(server.snapshot(), before);
    assert_eq!(
        server.mock.code2session_calls(),
        calls,
        "nothing reached WeChat"
    );
}

#[tokio::test]
async fn malformed_logouts_and_refreshes_change_nothing() {
    let server = TestServer::start().await;
    let token = server.token("dev:uma").await;
    let before = server.snapshot();
    for body in [json!({"all": "yes"}), json!({"every": true}), json!([true])] {
        let response = server.post_json("/v1/logout", &body, Some(&token)).await;
        assert_eq!(
            error_of(response).await,
            (400, "invalid_request".into()),
            "{body}"
        );
    }
    let response = server.post_json("/v1/logout", &json!({}), None).await;
    assert_eq!(error_of(response).await, (401, "invalid_token".into()));
    // The credential is checked before the body.
    let response = server
        .post_json("/v1/logout", &json!({"all": 1}), None)
        .await;
    assert_eq!(error_of(response).await, (401, "invalid_token".into()));
    let response = server
        .post_json("/v1/session/refresh", &json!({}), Some("v1.x.y.z"))
        .await;
    assert_eq!(error_of(response).await, (401, "invalid_token".into()));
    assert_eq!(server.snapshot(), before);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let server = TestServer::start().await;
    let response = server.get("/v1/nothing-here", None).await;
    assert_eq!(error_of(response).await, (404, "not_found".into()));
    let response = server.get("/", None).await;
    assert_eq!(error_of(response).await, (404, "not_found".into()));
    let response = server.get("/v1/login", None).await;
    assert_eq!(error_of(response).await, (405, "method_not_allowed".into()));
    let response = server
        .http
        .delete(server.url("/v1/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await, (405, "method_not_allowed".into()));
    let response = server.post_json("/healthz", &json!({}), None).await;
    assert_eq!(error_of(response).await, (405, "method_not_allowed".into()));
}

#[tokio::test]
async fn health_and_readiness() {
    let server = TestServer::start().await;
    let health: Value = server.get("/healthz", None).await.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["mode"], "production");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health["commit"].is_string());
    let response = server.get("/readyz", None).await;
    assert_eq!(response.status(), 200);
    for path in ["/healthz", "/readyz"] {
        let response = server.http.head(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "HEAD {path}");
    }
}
