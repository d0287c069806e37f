//! No secret in any log line on the backend-facing routes: with every log enabled at
//! `trace`, neither a service key nor a token checked by forward auth or introspection
//! may appear in the captured output.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::TestServer;
use serde_json::json;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_keys_and_tokens_never_reach_the_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();

    let server = TestServer::start().await;
    let conn = wxauth::db::open_existing(&server.dir.path().join("data")).unwrap();
    let (_, key) = wxauth::service_keys::create(&conn, "logged", common::START).unwrap();
    let (revoked_row, revoked) =
        wxauth::service_keys::create(&conn, "gone", common::START).unwrap();
    wxauth::service_keys::revoke(&conn, &revoked_row.public_id, common::START).unwrap();
    let (key, revoked) = (key.expose().to_owned(), revoked.expose().to_owned());

    let live = server.token("dev:yusuf").await;
    let logged_out = server.token("dev:yusuf#2").await;
    server
        .post_json("/v1/logout", &json!({}), Some(&logged_out))
        .await;
    let tokens = [live, logged_out];
    for token in &tokens {
        server.get("/v1/auth/forward", Some(token)).await;
        for service_key in [&key, &revoked] {
            server
                .post_json(
                    "/v1/introspect",
                    &json!({ "token": token }),
                    Some(service_key),
                )
                .await;
        }
    }

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("introspected an inactive token"),
        "the capture works: {logs}"
    );
    for secret in [&key, &revoked] {
        assert!(!logs.contains(secret.as_str()), "a service key in the logs");
        let random = secret.strip_prefix("wxsk_").unwrap();
        assert!(!logs.contains(random), "a service key in the logs");
    }
    for token in &tokens {
        assert!(!logs.contains(token.as_str()), "a token in the logs");
        let sid = token.split('.').nth(2).unwrap();
        assert!(!logs.contains(sid), "a session secret in the logs");
    }
}
