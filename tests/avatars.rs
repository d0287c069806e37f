//! PUT /v1/me/avatar and GET /v1/avatars/<id>: multipart and raw uploads, type checks by
//! the bytes, size limits, caching headers and replacement.

mod common;

use common::{TestServer, error_of};
use futures_util::stream;
use serde_json::Value;

/// A PNG as far as its signature goes.
fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.resize(len, 7);
    bytes
}

/// A `multipart/form-data` body as `wx.uploadFile` sends it: the file under `name`, and
/// one ordinary form field beside it.
fn multipart(files: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----wxauthtestboundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n")
            .as_bytes(),
    );
    for (name, declared, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                 filename=\"tmp_abc.png\"\r\nContent-Type: {declared}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn put(
    server: &TestServer,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    server
        .http
        .put(server.url("/v1/me/avatar"))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_multipart_upload_is_stored_and_served_with_cache_headers() {
    let server = TestServer::start().await;
    let token = server.token("dev:mia").await;
    let image = png(3000);
    let (content_type, body) = multipart(&[("file", "application/octet-stream", &image)]);
    // As wx.uploadFile sends it: a POST.
    let response = server
        .http
        .post(server.url("/v1/me/avatar"))
        .bearer_auth(&token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let user: Value = response.json().await.unwrap();
    let url = user["avatar_url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("/v1/avatars/a_"), "{url}");

    let response = server.get(&url, None).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
    assert_eq!(response.bytes().await.unwrap(), image);

    let response = server
        .http
        .get(server.url(&url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
    assert_eq!(response.headers()["etag"], etag.as_str());
    assert!(response.bytes().await.unwrap().is_empty());
    let response = server
        .http
        .get(server.url(&url))
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_raw_upload_with_an_image_type_works_and_the_type_comes_from_the_bytes() {
    let server = TestServer::start().await;
    let token = server.token("dev:nia").await;
    let gif = b"GIF89a\x01\0\x01\0\x80\0\0\0\0\0\xff\xff\xff!\xf9\x04".to_vec();
    // Declared as JPEG, but the bytes say GIF: GIF it is.
    let response = put(&server, &token, "image/jpeg", gif.clone()).await;
    assert_eq!(response.status(), 200);
    let user: Value = response.json().await.unwrap();
    let response = server.get(user["avatar_url"].as_str().unwrap(), None).await;
    assert_eq!(response.headers()["content-type"], "image/gif");
    assert_eq!(response.bytes().await.unwrap(), gif);
}

#[tokio::test]
async fn a_new_avatar_replaces_the_old_one() {
    let server =
        TestServer::start_with(|l| l.public_url = Some("https://auth.example.com".into())).await;
    let token = server.token("dev:oda").await;
    let first: Value = put(&server, &token, "image/png", png(100))
        .await
        .json()
        .await
        .unwrap();
    let first_url = first["avatar_url"].as_str().unwrap().to_owned();
    assert!(
        first_url.starts_with("https://auth.example.com/v1/avatars/a_"),
        "absolute with public_url: {first_url}"
    );
    let webp =
        b"RIFF\x1a\0\0\0WEBPVP8L\x0d\0\0\0/\0\0\0\x10\x07\x10\x11\x11\x88\x88\xfe\x07\0".to_vec();
    let second: Value = put(&server, &token, "image/webp", webp)
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(second["avatar_url"], first["avatar_url"]);
    assert_eq!(server.count("avatars"), 1);
    let old_path = first_url.trim_start_matches("https://auth.example.com");
    let response = server.get(old_path, None).await;
    assert_eq!(error_of(response).await, (404, "not_found".into()));
}

#[tokio::test]
async fn disguised_and_unsupported_uploads_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    let token = server.token("dev:pia").await;
    let before = server.snapshot();
    let html = b"<html><script>alert(1)</script></html>".to_vec();
    let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_vec();
    let (multipart_html_type, multipart_html) = multipart(&[("file", "image/png", &html)]);
    for (content_type, body) in [
        ("image/png", html.clone()),
        ("image/svg+xml", svg),
        ("text/plain", png(100)),
        ("application/octet-stream", png(100)),
        (multipart_html_type.as_str(), multipart_html),
    ] {
        let response = put(&server, &token, content_type, body).await;
        assert_eq!(
            error_of(response).await,
            (415, "unsupported_media_type".into()),
            "{content_type}"
        );
    }
    let (two_type, two) = multipart(&[("a", "image/png", &png(50)), ("b", "image/png", &png(50))]);
    for (content_type, body) in [
        (two_type.as_str(), two),
        ("multipart/form-data", png(100)),
        ("image/png", Vec::new()),
    ] {
        let response = put(&server, &token, content_type, body).await;
        assert_eq!(
            error_of(response).await,
            (400, "invalid_request".into()),
            "{content_type}"
        );
    }
    let response = put(&server, "bad-token", "image/png", png(100)).await;
    assert_eq!(error_of(response).await, (401, "invalid_token".into()));
    assert_eq!(server.snapshot(), before);
}

#[tokio::test]
async fn oversized_uploads_are_refused() {
    let server = TestServer::start_with(|l| l.avatar_max_bytes = Some(1000)).await;
    let token = server.token("dev:rue").await;
    assert_eq!(
        put(&server, &token, "image/png", png(1000)).await.status(),
        200
    );
    let before = server.snapshot();
    let response = put(&server, &token, "image/png", png(1001)).await;
    assert_eq!(error_of(response).await, (413, "payload_too_large".into()));
    // In a multipart body the file part itself is held to the limit.
    let (content_type, body) = multipart(&[("file", "image/png", &png(1001))]);
    let response = put(&server, &token, &content_type, body).await;
    assert_eq!(error_of(response).await, (413, "payload_too_large".into()));
    // Without a Content-Length, the limit holds while the body streams in.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(png(600)), Ok(vec![0; 600])];
    let response = server
        .http
        .put(server.url("/v1/me/avatar"))
        .bearer_auth(&token)
        .header("content-type", "image/png")
        .body(reqwest::Body::wrap_stream(stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await, (413, "payload_too_large".into()));
    assert_eq!(server.snapshot(), before);
}

#[tokio::test]
async fn unknown_avatars_are_not_found() {
    let server = TestServer::start().await;
    for path in [
        "/v1/avatars/a_000000000000000000000000",
        "/v1/avatars/garbage",
        "/v1/avatars/..%2F..%2Fetc%2Fpasswd",
    ] {
        let response = server.get(path, None).await;
        assert_eq!(
            error_of(response).await,
            (404, "not_found".into()),
            "{path}"
        );
    }
}
