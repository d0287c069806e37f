//! The least a login can cost on wxauth's stack without a database: warp takes the
//! request and its JSON body, wxauth's own WeChat client calls `jscode2session`, and one
//! HMAC-SHA256 over the openid answers as the token. `bench/run` measures it beside
//! scenario 3, so the gap between them is what recording a login costs.
//!
//! Usage: `bench_login_floor ADDR WECHAT_API` (e.g. `127.0.0.1:8082 http://127.0.0.1:8090`);
//! `GET /readyz` answers once it listens.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ring::hmac;
use warp::{Filter, Reply};
use wxauth::config::{AppConfig, AppKind};
use wxauth::keys::secret::Secret;
use wxauth::wechat::client::WeChatClient;

#[derive(serde::Deserialize)]
struct LoginRequest {
    code: String,
}

/// What every login uses: the WeChat client, the app it logs in to and the token's key.
struct Floor {
    client: WeChatClient,
    app: AppConfig,
    key: hmac::Key,
}

impl Floor {
    /// The WeChat call and a token over the openid; a failed call answers 502.
    async fn login(&self, code: &str) -> warp::reply::Response {
        match self.client.code2session(&self.app, code).await {
            Ok(session) => {
                let tag = hmac::sign(&self.key, session.openid.as_bytes());
                warp::reply::json(&serde_json::json!({"token": tag.as_ref()[..16]})).into_response()
            }
            Err(e) => warp::reply::with_status(e.to_string(), warp::http::StatusCode::BAD_GATEWAY)
                .into_response(),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(api)) = (
        args.next().and_then(|a| a.parse::<SocketAddr>().ok()),
        args.next(),
    ) else {
        eprintln!(
            "usage: bench_login_floor ADDR WECHAT_API   (e.g. 127.0.0.1:8082 http://127.0.0.1:8090)"
        );
        return ExitCode::from(2);
    };
    let client = match WeChatClient::new(&api, Duration::from_secs(5), Duration::from_secs(10)) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("bench_login_floor: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Shared by every request through one `Arc`: one reference count per login, not one
    // per part.
    let floor = Arc::new(Floor {
        client,
        app: AppConfig {
            appid: "wxbenchfloor00000".into(),
            name: "floor".into(),
            kind: AppKind::MiniProgram,
            redirect_uris: Vec::new(),
            secret: Secret::new("bench-secret".into()),
            content_check: false,
        },
        key: hmac::Key::new(hmac::HMAC_SHA256, b"bench-baseline-key-of-32-bytes!!"),
    });
    let route = warp::path!("v1" / "login")
        .and(warp::post())
        .and(warp::body::json())
        .then(move |request: LoginRequest| {
            let floor = Arc::clone(&floor);
            async move { floor.login(&request.code).await }
        });
    // For the benchmark to wait on: the floor answers once it listens.
    let ready = warp::path!("readyz").map(|| "ready");
    warp::serve(route.or(ready)).run(addr).await;
    ExitCode::SUCCESS
}
