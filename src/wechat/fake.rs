//! A fake WeChat API for dev mode, `wxauth mock-wechat`, tests and benchmarks.
//!
//! `jscode2session` understands these codes:
//! - `dev:<name>`: always the same user `<name>` (with a unionid) and session_key
//!   ([`dev_session_key`]); usable any number of times. A suffix after `#` is ignored, so
//!   `dev:bob#1` and `dev:bob#2` are two codes for one user. For a name that starts with
//!   `stale`, WeChat's own idea of the user's session_key has moved on: `checksession`
//!   says the key wxauth holds is stale, and `/mock/open-data` encrypts with the newer key.
//! - `fail:<errcode>`: answers that WeChat errcode, e.g. `fail:40029`.
//! - `busy:<n>:<code>`: answers -1 (system busy) the first `n` times, then as `<code>`.
//! - `slow:<ms>:<code>`: waits `<ms>` milliseconds, then answers as `<code>`.
//! - `http:<status>`: answers that HTTP status with a plain-text body; a redirection
//!   points at a login that would succeed.
//! - `garbage`: answers 200 with a body that is not JSON.
//! - `hang`: never answers.
//! - anything else: a user derived from the code, without a unionid; like a real code it
//!   works once, and a second use answers 40163.
//!
//! `POST /cgi-bin/stable_token` hands out access_tokens valid for 7200 seconds (tests can
//! shorten that and expire every token at once); the other APIs answer 40001 for a token
//! they never issued and 42001 for an expired one. `force_refresh` issues a new token and
//! invalidates the old one.
//!
//! `POST /wxa/business/getuserphonenumber` understands these codes:
//! - `fail:<errcode>`: answers that errcode, e.g. `fail:40001` (a refused access_token,
//!   on every try) or `fail:40029` (an invalid code).
//! - `+<country>:<anything>`: a number in that country, `countryCode` sent as a number.
//! - anything else: a mainland China number derived from the code, `countryCode` "86".
//!
//! `GET /wxa/checksession` answers 0 when the signature was made with the user's current
//! session_key and 87009 otherwise.
//!
//! `POST /wxa/msg_sec_check` suggests `risky` for a text containing `risky`, `review` for
//! one containing `review`, answers HTTP 503 (WeChat unreachable) for one containing
//! `unavailable`, and `pass` for anything else.
//!
//! `GET /mock/open-data?name=<name>&appid=<appid>&kind=profile|phone` gives the legacy
//! payload WeChat's client would give user `dev:<name>` (`raw_data`, `signature`,
//! `encrypted_data` and `iv`; `nickname=` sets the nickname), so the legacy routes can be
//! tried without WeChat. `GET /mock/stats` counts the calls to each API.

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
use tokio::time::Instant;
use warp::Filter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use crate::http::server::{self, ConnectionLimits};
use crate::keys::crypto;
use crate::keys::random;

/// Codes remembered as used before the memory is reset; keeps a long benchmark bounded.
const USED_CODES_CAP: usize = 1_000_000;

/// How long issued access_tokens live unless a test says otherwise.
const DEFAULT_TOKEN_TTL_SECS: u64 = 7200;

#[derive(Debug, Default)]
struct MockState {
    code2session_calls: AtomicU64,
    stable_token_calls: AtomicU64,
    forced_refreshes: AtomicU64,
    phone_calls: AtomicU64,
    check_session_calls: AtomicU64,
    sec_check_calls: AtomicU64,
    used_codes: Mutex<HashSet<String>>,
    busy_counts: Mutex<HashMap<String, u32>>,
    /// Each user's current session_key, by openid, as WeChat sees it.
    session_keys: Mutex<HashMap<String, String>>,
    tokens: Mutex<Tokens>,
}

#[derive(Debug, Default)]
struct Tokens {
    /// The token each app was last given.
    current: HashMap<String, String>,
    /// Every token still honoured, with when it expires.
    live: HashMap<String, Instant>,
    /// A test's override of the lifetime of new tokens.
    ttl: Option<Duration>,
    /// Every token ever issued, for tests that look for them where they must not be.
    issued: Vec<String>,
}

impl Tokens {
    fn ttl(&self) -> Duration {
        self.ttl
            .unwrap_or(Duration::from_secs(DEFAULT_TOKEN_TTL_SECS))
    }

    /// 0 for a usable token, else the errcode WeChat would answer.
    fn check(&self, token: &str) -> i64 {
        match self.live.get(token) {
            None => 40001,
            Some(expiry) if *expiry <= Instant::now() => 42001,
            Some(_) => 0,
        }
    }
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

    /// How many `stable_token` requests it has received.
    pub fn stable_token_calls(&self) -> u64 {
        self.state.stable_token_calls.load(Ordering::SeqCst)
    }

    /// How many of those asked for `force_refresh`.
    pub fn forced_refreshes(&self) -> u64 {
        self.state.forced_refreshes.load(Ordering::SeqCst)
    }

    /// How many `getuserphonenumber` requests it has received.
    pub fn phone_calls(&self) -> u64 {
        self.state.phone_calls.load(Ordering::SeqCst)
    }

    /// How many `checksession` requests it has received.
    pub fn check_session_calls(&self) -> u64 {
        self.state.check_session_calls.load(Ordering::SeqCst)
    }

    /// How many `msg_sec_check` requests it has received.
    pub fn sec_check_calls(&self) -> u64 {
        self.state.sec_check_calls.load(Ordering::SeqCst)
    }

    /// Makes tokens issued from now on live `ttl`.
    pub fn set_access_token_ttl(&self, ttl: Duration) {
        self.state.tokens.lock().expect("mock state poisoned").ttl = Some(ttl);
    }

    /// Every access_token it has issued.
    pub fn issued_access_tokens(&self) -> Vec<String> {
        self.state
            .tokens
            .lock()
            .expect("mock state poisoned")
            .issued
            .clone()
    }

    /// Expires every token issued so far: calls with one answer 42001, and
    /// `stable_token` issues a new one.
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        let mut tokens = self.state.tokens.lock().expect("mock state poisoned");
        for expiry in tokens.live.values_mut() {
            *expiry = now;
        }
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
    let stable_token = warp::path!("cgi-bin" / "stable_token")
        .and(warp::post())
        .and(state.clone())
        .and(warp::body::json::<StableTokenRequest>())
        .map(|state: Arc<MockState>, body: StableTokenRequest| {
            state.stable_token_calls.fetch_add(1, Ordering::SeqCst);
            stable_token(&state, body)
        });
    let phone = warp::path!("wxa" / "business" / "getuserphonenumber")
        .and(warp::post())
        .and(state.clone())
        .and(warp::query::<TokenQuery>())
        .and(warp::body::json::<PhoneRequest>())
        .map(|state: Arc<MockState>, q: TokenQuery, body: PhoneRequest| {
            state.phone_calls.fetch_add(1, Ordering::SeqCst);
            with_token(&state, &q.access_token, || phone_number(&body.code))
        });
    let check_session = warp::path!("wxa" / "checksession")
        .and(warp::get())
        .and(state.clone())
        .and(warp::query::<CheckSessionQuery>())
        .map(|state: Arc<MockState>, q: CheckSessionQuery| {
            state.check_session_calls.fetch_add(1, Ordering::SeqCst);
            with_token(&state, &q.access_token, || check_session(&state, &q))
        });
    let sec_check = warp::path!("wxa" / "msg_sec_check")
        .and(warp::post())
        .and(state.clone())
        .and(warp::query::<TokenQuery>())
        .and(warp::body::json::<SecCheckRequest>())
        .map(
            |state: Arc<MockState>, q: TokenQuery, body: SecCheckRequest| {
                state.sec_check_calls.fetch_add(1, Ordering::SeqCst);
                with_token(&state, &q.access_token, || sec_check(&body))
            },
        );
    let open_data = warp::path!("mock" / "open-data")
        .and(warp::get())
        .and(state.clone())
        .and(warp::query::<OpenDataQuery>())
        .map(|state: Arc<MockState>, q: OpenDataQuery| open_data(&state, &q));
    let stats = warp::path!("mock" / "stats")
        .and(warp::get())
        .and(state)
        .map(|state: Arc<MockState>| {
            let count = |c: &AtomicU64| c.load(Ordering::SeqCst);
            warp::reply::json(&json!({
                "jscode2session": count(&state.code2session_calls),
                "stable_token": count(&state.stable_token_calls),
                "stable_token_forced": count(&state.forced_refreshes),
                "getuserphonenumber": count(&state.phone_calls),
                "checksession": count(&state.check_session_calls),
                "msg_sec_check": count(&state.sec_check_calls),
            }))
            .into_response()
        });
    code2session
        .or(stable_token)
        .unify()
        .or(phone)
        .unify()
        .or(check_session)
        .unify()
        .or(sec_check)
        .unify()
        .or(open_data)
        .unify()
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
        let mut response = warp::reply::with_status("upstream failure", status).into_response();
        if status.is_redirection() {
            // Somewhere a client that follows redirects would log in at once.
            let elsewhere = format!(
                "/sns/jscode2session?appid={appid}&secret=x&js_code=dev:redirected\
                 &grant_type=authorization_code"
            );
            if let Ok(location) = elsewhere.parse() {
                response.headers_mut().insert("location", location);
            }
        }
        return response;
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
        let openid = derived_id("o", "openid", &appid, name);
        remember_session_key(state, &openid, current_session_key(name));
        return warp::reply::json(&json!({
            "openid": openid,
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
    let openid = derived_id("o", "openid", &appid, &code);
    let session_key = STANDARD.encode(random::bytes::<16>());
    remember_session_key(state, &openid, session_key.clone());
    warp::reply::json(&json!({
        "openid": openid,
        "session_key": session_key,
    }))
    .into_response()
}

fn remember_session_key(state: &MockState, openid: &str, session_key: String) {
    let mut keys = state.session_keys.lock().expect("mock state poisoned");
    if keys.len() >= USED_CODES_CAP {
        keys.clear();
    }
    keys.insert(openid.to_owned(), session_key);
}

/// The key WeChat itself holds for `dev:<name>`: the one it handed out, except for
/// `stale…` users, whose key has since been replaced by a newer `wx.login`.
fn current_session_key(name: &str) -> String {
    if name.starts_with("stale") {
        dev_session_key(&format!("{name}#newer"))
    } else {
        dev_session_key(name)
    }
}

#[derive(Deserialize)]
struct StableTokenRequest {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    force_refresh: bool,
}

fn stable_token(state: &MockState, body: StableTokenRequest) -> Response {
    let Some(appid) = body.appid.filter(|a| !a.is_empty()) else {
        return errcode(40013, "invalid appid");
    };
    if body.secret.is_none_or(|s| s.is_empty()) {
        return errcode(40125, "invalid appsecret");
    }
    if body.grant_type.as_deref() != Some("client_credential") {
        return errcode(40002, "invalid grant_type");
    }
    let mut tokens = state.tokens.lock().expect("mock state poisoned");
    let now = Instant::now();
    if !body.force_refresh
        && let Some(token) = tokens.current.get(&appid)
        && let Some(expiry) = tokens.live.get(token)
        && *expiry > now
    {
        let left = expiry.duration_since(now).as_secs().max(1);
        return warp::reply::json(&json!({"access_token": token, "expires_in": left}))
            .into_response();
    }
    if body.force_refresh {
        state.forced_refreshes.fetch_add(1, Ordering::SeqCst);
        if let Some(old) = tokens.current.get(&appid).cloned() {
            tokens.live.remove(&old);
        }
    }
    let ttl = tokens.ttl();
    let token = format!(
        "ACCESS_TOKEN_{}",
        URL_SAFE_NO_PAD.encode(random::bytes::<24>())
    );
    tokens.live.retain(|_, expiry| *expiry > now);
    tokens.live.insert(token.clone(), now + ttl);
    tokens.current.insert(appid, token.clone());
    tokens.issued.push(token.clone());
    warp::reply::json(&json!({"access_token": token, "expires_in": ttl.as_secs()})).into_response()
}

#[derive(Deserialize)]
struct TokenQuery {
    #[serde(default)]
    access_token: String,
}

/// Answers `ok()` if `token` is usable, else the errcode for the token.
fn with_token(state: &MockState, token: &str, ok: impl FnOnce() -> Response) -> Response {
    match state
        .tokens
        .lock()
        .expect("mock state poisoned")
        .check(token)
    {
        0 => ok(),
        40001 => errcode(
            40001,
            "invalid credential, access_token is invalid or not latest",
        ),
        code => errcode(code, "access_token expired"),
    }
}

#[derive(Deserialize)]
struct PhoneRequest {
    code: String,
}

fn phone_number(code: &str) -> Response {
    if let Some(errcode_text) = code.strip_prefix("fail:") {
        return errcode(errcode_text.parse().unwrap_or(40029), "mock failure");
    }
    let digits = derived_digits(code);
    let info = match code.strip_prefix('+').and_then(|c| c.split_once(':')) {
        Some((country, _)) => {
            let country: u32 = country.parse().unwrap_or(1);
            json!({
                "phoneNumber": format!("+{country} {digits}"),
                "purePhoneNumber": digits,
                "countryCode": country,
            })
        }
        None => {
            let number = format!("138{digits}");
            json!({
                "phoneNumber": number,
                "purePhoneNumber": number,
                "countryCode": "86",
            })
        }
    };
    warp::reply::json(&json!({"errcode": 0, "errmsg": "ok", "phone_info": info})).into_response()
}

/// Eight digits derived from `text`.
fn derived_digits(text: &str) -> String {
    let d = digest::digest(&digest::SHA256, text.as_bytes());
    let n = u64::from_be_bytes(d.as_ref()[..8].try_into().expect("8 bytes")) % 100_000_000;
    format!("{n:08}")
}

#[derive(Deserialize)]
struct CheckSessionQuery {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    openid: String,
    #[serde(default)]
    signature: String,
    #[serde(default)]
    sig_method: String,
}

fn check_session(state: &MockState, q: &CheckSessionQuery) -> Response {
    if q.sig_method != "hmac_sha256" {
        return errcode(87010, "invalid sig_method");
    }
    let keys = state.session_keys.lock().expect("mock state poisoned");
    match keys.get(&q.openid) {
        Some(key) if crypto::check_session_signature(key) == q.signature => errcode(0, "ok"),
        _ => errcode(87009, "invalid signature"),
    }
}

#[derive(Deserialize)]
struct SecCheckRequest {
    content: String,
    version: Option<u32>,
}

fn sec_check(body: &SecCheckRequest) -> Response {
    if body.version != Some(2) {
        return errcode(40003, "this fake answers version 2 only");
    }
    let suggest = if body.content.contains("unavailable") {
        return warp::reply::with_status("unavailable", StatusCode::SERVICE_UNAVAILABLE)
            .into_response();
    } else if body.content.contains("risky") {
        "risky"
    } else if body.content.contains("review") {
        "review"
    } else {
        "pass"
    };
    let label = if suggest == "pass" { 100 } else { 20001 };
    warp::reply::json(&json!({
        "errcode": 0,
        "errmsg": "ok",
        "result": {"suggest": suggest, "label": label},
        "detail": [],
        "trace_id": "mock",
    }))
    .into_response()
}

#[derive(Deserialize)]
struct OpenDataQuery {
    name: String,
    appid: String,
    kind: String,
    nickname: Option<String>,
}

fn open_data(state: &MockState, q: &OpenDataQuery) -> Response {
    let openid = derived_id("o", "openid", &q.appid, &q.name);
    let session_key = state
        .session_keys
        .lock()
        .expect("mock state poisoned")
        .get(&openid)
        .cloned()
        .unwrap_or_else(|| current_session_key(&q.name));
    let watermark = json!({"timestamp": 1_700_000_000, "appid": q.appid});
    let body = match q.kind.as_str() {
        "profile" => {
            let profile = dev_profile(q.nickname.as_deref().unwrap_or(&q.name));
            let mut full = profile.clone();
            full["openId"] = json!(openid);
            full["unionId"] = json!(derived_id("u", "unionid", "", &q.name));
            full["watermark"] = watermark;
            let raw_data = profile.to_string();
            let mut sealed = seal_open_data(&session_key, &full);
            sealed["signature"] = json!(crypto::raw_data_signature(&raw_data, &session_key));
            sealed["raw_data"] = json!(raw_data);
            sealed
        }
        "phone" => {
            let number = format!("139{}", derived_digits(&q.name));
            seal_open_data(
                &session_key,
                &json!({
                    "phoneNumber": number,
                    "purePhoneNumber": number,
                    "countryCode": "86",
                    "watermark": watermark,
                }),
            )
        }
        _ => return errcode(40097, "kind must be profile or phone"),
    };
    warp::reply::json(&body).into_response()
}

/// The profile a `getUserProfile` call returns for a dev user.
fn dev_profile(nickname: &str) -> serde_json::Value {
    json!({
        "nickName": nickname,
        "gender": 1,
        "language": "zh_CN",
        "city": "Guangzhou",
        "province": "Guangdong",
        "country": "CN",
        "avatarUrl": "http://thirdwx.qlogo.cn/mmopen/vi_32/mock/132",
    })
}

/// `{"encrypted_data", "iv"}` for `data`, encrypted as WeChat does with `session_key`.
pub fn seal_open_data(session_key: &str, data: &serde_json::Value) -> serde_json::Value {
    let iv = STANDARD.encode(random::bytes::<16>());
    let encrypted = crypto::encrypt_cbc(session_key, &iv, data.to_string().as_bytes())
        .expect("a fake session_key is 16 bytes of base64");
    json!({"encrypted_data": encrypted, "iv": iv})
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
