//! Protection against floods and slow clients: rate limits per client IP and per user,
//! the header-read timeout, the connection cap, and a hanging WeChat that must not hold
//! up anyone else.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, error_of};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn login_from(
    server: &TestServer,
    code: &str,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let mut request = server
        .http
        .post(server.url("/v1/login"))
        .json(&json!({ "code": code }));
    if let Some(ip) = forwarded_for {
        request = request.header("x-forwarded-for", ip);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn logins_are_limited_per_client_ip() {
    let server =
        TestServer::start_with(|l| l.login_rate_limit = Some("3/min".parse().unwrap())).await;
    for i in 0..3 {
        let response = login_from(
            &server,
            &format!("dev:ana#{i}"),
            Some(&format!("203.0.113.{i}")),
        )
        .await;
        assert_eq!(response.status(), 200);
    }
    // X-Forwarded-For is not believed by default: all of these came from 127.0.0.1.
    let response = login_from(&server, "dev:ana#4", Some("198.51.100.9")).await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(error_of(response).await, (429, "rate_limited".into()));
    // Even malformed requests count and are refused before any work.
    let response = server.post_json("/v1/login", &json!({}), None).await;
    assert_eq!(error_of(response).await, (429, "rate_limited".into()));
    assert_eq!(server.count("sessions"), 3);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_counts() {
    let server = TestServer::start_with(|l| {
        l.login_rate_limit = Some("2/min".parse().unwrap());
        l.trust_proxy = Some(true);
    })
    .await;
    for client in ["198.51.100.1", "198.51.100.2"] {
        for i in 0..2 {
            // The client's own claim comes first; the proxy appends the real address.
            let header = format!("10.9.9.9, {client}");
            let response = login_from(&server, &format!("dev:{client}#{i}"), Some(&header)).await;
            assert_eq!(response.status(), 200, "{client} #{i}");
        }
    }
    let response = login_from(&server, "dev:x", Some("10.9.9.9, 198.51.100.1")).await;
    assert_eq!(error_of(response).await, (429, "rate_limited".into()));
}

#[tokio::test]
async fn profile_writes_are_limited_per_user() {
    let server =
        TestServer::start_with(|l| l.profile_rate_limit = Some("2/min".parse().unwrap())).await;
    let bea = server.token("dev:bea").await;
    let cid = server.token("dev:cid").await;
    for name in ["one", "two"] {
        assert_eq!(
            server
                .patch_me(&bea, &json!({"nickname": name}))
                .await
                .status(),
            200
        );
    }
    let response = server.patch_me(&bea, &json!({"nickname": "three"})).await;
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(error_of(response).await, (429, "rate_limited".into()));
    assert_eq!(
        server
            .patch_me(&cid, &json!({"nickname": "cid"}))
            .await
            .status(),
        200
    );
    // Reads are not limited.
    assert_eq!(server.get("/v1/me", Some(&bea)).await.status(), 200);
    let nickname: String = server
        .db()
        .query_row(
            "SELECT nickname FROM users WHERE nickname IN ('two', 'three')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(nickname, "two");
}

/// Opens a connection that sends half a request head and then stalls.
async fn stalled_connection(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: wxauth\r\nX-Slow: ")
        .await
        .unwrap();
    stream
}

/// Whether the server closed `stream` within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 may come first; the close follows.
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_do_not_block_others_and_are_closed() {
    let server = TestServer::start_with(|l| l.header_timeout = Some("1s".parse().unwrap())).await;
    let addr = server.app.as_ref().unwrap().addr();
    let mut stalled = Vec::new();
    for _ in 0..500 {
        stalled.push(stalled_connection(addr).await);
    }
    let token = server.token("dev:dee").await;
    for _ in 0..20 {
        let started = Instant::now();
        let response = server.get("/v1/session", Some(&token)).await;
        assert_eq!(response.status(), 200);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    let mut closed = 0;
    for stream in &mut stalled {
        if closed_within(stream, Duration::from_secs(5)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 500);
    assert!(started.elapsed() < Duration::from_secs(5));

    // An idle keep-alive connection is closed after the same time.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: wxauth\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut idle, Duration::from_secs(3)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let server = TestServer::start_with(|l| {
        l.header_timeout = Some("1s".parse().unwrap());
        l.max_connections = Some(10);
    })
    .await;
    let addr = server.app.as_ref().unwrap().addr();
    let mut stalled = Vec::new();
    for _ in 0..10 {
        stalled.push(stalled_connection(addr).await);
    }
    // Give the server a moment to take all ten slots.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let response = reqwest::Client::new()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(response.status(), 200);
    assert!(
        waited >= Duration::from_millis(700),
        "served at once ({waited:?}) although every slot was taken"
    );
    assert!(waited < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_wechat_holds_up_no_one_else() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let token = server.token("dev:eve").await;
    let hanging = tokio::spawn({
        let server = std::sync::Arc::clone(&server);
        async move { server.login("hang").await.status() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    server.login_ok("dev:fay").await;
    assert_eq!(
        server
            .patch_me(&token, &json!({"nickname": "eve"}))
            .await
            .status(),
        200
    );
    let response = server
        .post_json("/v1/session/refresh", &json!({}), Some(&token))
        .await;
    assert_eq!(response.status(), 200);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(hanging.await.unwrap(), 503);
}
