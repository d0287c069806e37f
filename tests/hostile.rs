//! Hostile input: random and mutated tokens are never accepted and never panic; random
//! JSON and random bytes sent to every JSON route get a 4xx and change nothing; oversized
//! heads and bad header bytes are refused.

mod common;

use common::TestServer;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wxauth::keys::token::{Keyring, SessionSecret};

fn keyring() -> Keyring {
    Keyring::new("k1", [("k1", [42u8; 32].as_slice())]).unwrap()
}

proptest! {
    #![proptest_config(Config::with_cases(2000))]

    #[test]
    fn random_tokens_are_never_accepted(token in ".{0,220}") {
        prop_assert!(keyring().verify(&token).is_err());
    }

    #[test]
    fn token_shaped_garbage_is_never_accepted(token in "v1\\.k1\\.[A-Za-z0-9_-]{0,30}\\.[A-Za-z0-9_-]{0,50}") {
        prop_assert!(keyring().verify(&token).is_err());
    }

    #[test]
    fn mutated_tokens_are_never_accepted(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<Option<usize>>(),
    ) {
        let ring = keyring();
        let original = ring.sign(&SessionSecret::from_bytes(&[9; 22]).unwrap());
        let mut bytes = original.clone().into_bytes();
        for (at, byte) in edits {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        let mutated = String::from_utf8_lossy(&bytes).into_owned();
        if mutated != original {
            prop_assert!(ring.verify(&mutated).is_err(), "accepted {}", mutated);
        }
    }
}

/// Arbitrary JSON, shallow enough to stay fast.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("x[a-z_]{0,12}", inner, 1..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies that no JSON route accepts: any JSON value that is not an object, an object
/// with a field no route knows (every generated key starts with `x`), or raw bytes.
fn hostile_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

#[test]
fn random_bodies_on_every_json_route_get_4xx_and_change_nothing() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start_with(|l| {
        l.login_rate_limit = Some("off".parse().unwrap());
        l.profile_rate_limit = Some("off".parse().unwrap());
    }));
    let token = runtime.block_on(server.token("dev:hostile"));
    let before = server.snapshot();
    let routes = [
        (reqwest::Method::POST, "/v1/login"),
        (reqwest::Method::POST, "/v1/logout"),
        (reqwest::Method::PATCH, "/v1/me"),
    ];
    let mut runner = TestRunner::new(Config::with_cases(150));
    runner
        .run(&hostile_body(), |body| {
            // An empty body is a valid logout; everything else generated is invalid.
            prop_assume!(!body.is_empty() && body != b"{}");
            runtime.block_on(async {
                for (method, path) in &routes {
                    let response = server
                        .http
                        .request(method.clone(), server.url(path))
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    let status = response.status().as_u16();
                    let text = response.text().await.unwrap();
                    assert!(
                        (400..500).contains(&status),
                        "{path}: {status} {text} for {body:?}"
                    );
                    let parsed: Value = serde_json::from_str(&text).unwrap();
                    assert!(parsed["error"]["code"].is_string(), "{text}");
                }
            });
            Ok(())
        })
        .unwrap();
    assert_eq!(server.snapshot(), before);
    assert_eq!(
        runtime
            .block_on(server.get("/v1/session", Some(&token)))
            .status(),
        200
    );
}

#[tokio::test]
async fn oversized_heads_and_bad_header_bytes_are_refused() {
    let server = TestServer::start().await;
    let addr = server.app.as_ref().unwrap().addr();

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let huge = "a".repeat(64 * 1024);
    let request = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\n\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let head = String::from_utf8_lossy(&response);
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");

    // A header value that is not valid UTF-8 where a token is expected.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(text.contains("invalid_token"), "{text}");

    // The server is fine afterwards.
    assert_eq!(server.get("/healthz", None).await.status(), 200);
}
