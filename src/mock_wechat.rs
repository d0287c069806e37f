//! A fake WeChat API for dev mode, `wxauth mock-wechat`, tests and benchmarks.
//!
//! `jscode2session` understands these codes:
//! - `dev:<name>`: always the same user `<name>` (with a unionid); usable any number of
//!   times. A suffix after `#` is ignored, so `dev:bob#1` and `dev:bob#2` are two codes
//!   for one user.
//! - `fail:<errcode>`: answers that WeChat errcode, e.g. `fail:40029`.
//! - `busy:<n>:<code>`: answers -1 (system busy) the first `n` times, then as `<code>`.
//! - `slow:<ms>:<code>`: waits `<ms>` milliseconds, then answers as `<code>`.
//! - `http:<status>`: answers that HTTP status with a plain-text body.
//! - `garbage`: answers 200 with a body that is not JSON.
//! - `hang`: never answers.
//! - anything else: a user derived from the code, without a unionid; like a real code it
//!   works once, and a second use answers 40163.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::digest;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warp::Filter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use crate::random;
use crate::server::{self, ConnectionLimits};

/// Codes remembered as used before the memory is reset; keeps a long benchmark bounded.
const USED_CODES_CAP: usize = 1_000_000;

#[derive(Debug, Default)]
struct MockState {
    code2session_calls: AtomicU64,
    used_codes: Mutex<HashSet<String>>,
    busy_counts: Mutex<HashMap<String, u32>>,
}

/// A running fake WeChat.
pub struct MockWeChat {
    addr: SocketAddr,
    state: Arc<MockState>,
    stop: Option<oneshot::Sender<()>>,
    serving: JoinHandle<()>,
}

impl MockWeChat {
    /// Binds `listen` and starts answering.
    pub async fn start(listen: SocketAddr) -> std::io::Result<MockWeChat> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(MockState::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let limits = ConnectionLimits {
            shutdown_grace: Duration::from_millis(100),
            ..ConnectionLimits::default()
        };
        let serving = tokio::spawn(server::serve(
            listener,
            routes(Arc::clone(&state)),
            limits,
            async {
                let _ = stopped.await;
            },
        ));
        Ok(MockWeChat {
            addr,
            state,
            stop: Some(stop),
            serving,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to give wxauth as `wechat_api`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many `jscode2session` requests it has received.
    pub fn code2session_calls(&self) -> u64 {
        self.state.code2session_calls.load(Ordering::SeqCst)
    }

    /// Stops answering.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.serving).await;
    }
}

#[derive(Deserialize)]
struct Code2SessionQuery {
    appid: Option<String>,
    secret: Option<String>,
    js_code: Option<String>,
    grant_type: Option<String>,
}

fn routes(
    state: Arc<MockState>,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static
{
    let state = warp::any().map(move || Arc::clone(&state));
    let code2session = warp::path!("sns" / "jscode2session")
        .and(warp::get())
        .and(state.clone())
        .and(warp::query::<Code2SessionQuery>())
        .then(|state: Arc<MockState>, q: Code2SessionQuery| async move {
            state.code2session_calls.fetch_add(1, Ordering::SeqCst);
            code2session(&state, q).await
        });
    let stats = warp::path!("mock" / "stats")
        .and(warp::get())
        .and(state)
        .map(|state: Arc<MockState>| {
            warp::reply::json(&json!({
                "jscode2session": state.code2session_calls.load(Ordering::SeqCst),
            }))
            .into_response()
        });
    code2session
        .or(stats)
        .unify()
        .recover(|_| async { Ok::<_, std::convert::Infallible>(errcode(40066, "invalid url")) })
        .unify()
}

fn errcode(code: i64, message: &str) -> Response {
    warp::reply::json(&json!({"errcode": code, "errmsg": message})).into_response()
}

async fn code2session(state: &MockState, q: Code2SessionQuery) -> Response {
    let (Some(appid), Some(code)) = (q.appid.filter(|a| !a.is_empty()), q.js_code) else {
        return errcode(40013, "invalid appid");
    };
    if q.secret.is_none_or(|s| s.is_empty()) {
        return errcode(40125, "invalid appsecret");
    }
    if q.grant_type.as_deref() != Some("authorization_code") {
        return errcode(40002, "invalid grant_type");
    }
    let mut rest = code.as_str();
    loop {
        if let Some(spec) = rest.strip_prefix("busy:") {
            let Some((n, then)) = spec.split_once(':') else {
                return errcode(40029, "invalid code");
            };
            let times: u32 = n.parse().unwrap_or(0);
            let mut counts = state.busy_counts.lock().expect("mock state poisoned");
            let seen = counts.entry(code.clone()).or_insert(0);
            if *seen < times {
                *seen += 1;
                return errcode(-1, "system error");
            }
            rest = then;
        } else if let Some(spec) = rest.strip_prefix("slow:") {
            let Some((ms, then)) = spec.split_once(':') else {
                return errcode(40029, "invalid code");
            };
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            rest = then;
        } else {
            break;
        }
    }
    if let Some(errcode_text) = rest.strip_prefix("fail:") {
        let code: i64 = errcode_text.parse().unwrap_or(40029);
        return errcode(code, "mock failure");
    }
    if let Some(status) = rest.strip_prefix("http:") {
        let status = status
            .parse()
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return warp::reply::with_status("upstream failure", status).into_response();
    }
    match rest {
        "garbage" => return "<html>not json</html>".into_response(),
        "hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return errcode(-1, "system error");
        }
        _ => {}
    }
    if let Some(name) = rest.strip_prefix("dev:") {
        let name = name.split_once('#').map_or(name, |(name, _)| name);
        return warp::reply::json(&json!({
            "openid": derived_id("o", "openid", &appid, name),
            "unionid": derived_id("u", "unionid", "", name),
            "session_key": dev_session_key(name),
        }))
        .into_response();
    }
    {
        let mut used = state.used_codes.lock().expect("mock state poisoned");
        if used.len() >= USED_CODES_CAP {
            used.clear();
        }
        if !used.insert(code.clone()) {
            return errcode(40163, "code been used");
        }
    }
    warp::reply::json(&json!({
        "openid": derived_id("o", "openid", &appid, &code),
        "session_key": STANDARD.encode(random::bytes::<16>()),
    }))
    .into_response()
}

/// The session_key the fake hands out for `dev:<name>`: fixed per name, so tests can
/// encrypt with it the way WeChat would.
pub fn dev_session_key(name: &str) -> String {
    let d = digest::digest(
        &digest::SHA256,
        format!("session_key\u{0}{name}").as_bytes(),
    );
    STANDARD.encode(&d.as_ref()[..16])
}

/// A stable, WeChat-shaped id (28 characters) for a name.
fn derived_id(prefix: &str, kind: &str, scope: &str, name: &str) -> String {
    let d = digest::digest(
        &digest::SHA256,
        format!("{kind}\u{0}{scope}\u{0}{name}").as_bytes(),
    );
    let mut id = String::from(prefix);
    id.push_str(&URL_SAFE_NO_PAD.encode(d.as_ref())[..27]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_scoped() {
        let a = derived_id("o", "openid", "wx1", "alice");
        assert_eq!(a.len(), 28);
        assert_eq!(a, derived_id("o", "openid", "wx1", "alice"));
        assert_ne!(a, derived_id("o", "openid", "wx2", "alice"));
    }
}
