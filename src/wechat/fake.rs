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
//! The web login (official accounts' H5 pages and websites):
//! - `GET /connect/oauth2/authorize` and `GET /connect/qrconnect` check `appid`,
//!   `redirect_uri`, `response_type=code`, `scope` (`snsapi_base` or `snsapi_userinfo`
//!   on the first, `snsapi_login` on the second) and `state` (at most 128 letters and
//!   digits) as WeChat does, answering 400 with an HTML page otherwise. Then a plain page
//!   asks whom to log in as (input `#name`, pre-filled `alice`; button `#login`, or
//!   `#deny` to refuse). Its form comes back with `name=` and is answered 302 to the
//!   `redirect_uri` with `code=dev:<name>&state=<state>` added to its query; a name that
//!   starts with `dev:`, `nounion:`, `snapshot:` or `fail:` is used as the code itself.
//!   Refusing sends back `state` alone.
//! - `GET /sns/oauth2/access_token` understands the codes `jscode2session` does, except:
//!   `dev:<name>` gives an openid derived from the name and the AppID (one per app, as
//!   WeChat gives) and a unionid from the name alone (the same across apps, and the
//!   mini program's); `nounion:<name>` is another person, without a unionid;
//!   `snapshot:<name>` answers `is_snapshotuser: 1` with a virtual openid and scope
//!   `snsapi_base`. The scope is the one last granted to that name on the authorize
//!   pages, else `snsapi_userinfo`.
//! - `GET /sns/userinfo` answers for the tokens it issued: the name as the nickname, an
//!   https `headimgurl`, and the unionid; 48001 for a `snsapi_base` token, 40001 for an
//!   unknown one, 40003 for another openid.
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
    web_token_calls: AtomicU64,
    userinfo_calls: AtomicU64,
    used_codes: Mutex<HashSet<String>>,
    busy_counts: Mutex<HashMap<String, u32>>,
    /// Each user's current session_key, by openid, as WeChat sees it.
    session_keys: Mutex<HashMap<String, String>>,
    tokens: Mutex<Tokens>,
    /// The user each web access_token was issued for.
    web_tokens: Mutex<HashMap<String, WebUser>>,
    /// The scope last granted on the authorize pages, by AppID and name: a `dev:<name>`
    /// code does not carry it, and WeChat reports it with the access_token.
    granted: Mutex<HashMap<(String, String), String>>,
}

/// Whom a web access_token speaks for.
#[derive(Debug, Clone)]
struct WebUser {
    openid: String,
    nickname: String,
    unionid: Option<String>,
    scope: String,
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

    /// How many `sns/oauth2/access_token` requests it has received.
    pub fn web_token_calls(&self) -> u64 {
        self.state.web_token_calls.load(Ordering::SeqCst)
    }

    /// How many `sns/userinfo` requests it has received.
    pub fn userinfo_calls(&self) -> u64 {
        self.state.userinfo_calls.load(Ordering::SeqCst)
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
    let web_token = warp::path!("sns" / "oauth2" / "access_token")
        .and(warp::get())
        .and(state.clone())
        .and(warp::query::<WebTokenQuery>())
        .then(|state: Arc<MockState>, q: WebTokenQuery| async move {
            state.web_token_calls.fetch_add(1, Ordering::SeqCst);
            web_access_token(&state, q).await
        });
    let userinfo = warp::path!("sns" / "userinfo")
        .and(warp::get())
        .and(state.clone())
        .and(warp::query::<UserInfoQuery>())
        .map(|state: Arc<MockState>, q: UserInfoQuery| {
            state.userinfo_calls.fetch_add(1, Ordering::SeqCst);
            userinfo(&state, &q)
        });
    let authorize = warp::path!("connect" / "oauth2" / "authorize")
        .and(warp::get())
        .and(state.clone())
        .and(warp::query::<AuthorizeQuery>())
        .map(|state: Arc<MockState>, q: AuthorizeQuery| {
            authorize_page(&state, AuthorizePage::OfficialAccount, q)
        });
    let qrconnect = warp::path!("connect" / "qrconnect")
        .and(warp::get())
        .and(state.clone())
        .and(warp::query::<AuthorizeQuery>())
        .map(|state: Arc<MockState>, q: AuthorizeQuery| {
            authorize_page(&state, AuthorizePage::Website, q)
        });
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
                "oauth2_access_token": count(&state.web_token_calls),
                "userinfo": count(&state.userinfo_calls),
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
        .or(web_token)
        .unify()
        .or(userinfo)
        .unify()
        .or(authorize)
        .unify()
        .or(qrconnect)
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
    // Somewhere a client that follows redirects would log in at once.
    let elsewhere = format!(
        "/sns/jscode2session?appid={appid}&secret=x&js_code=dev:redirected\
         &grant_type=authorization_code"
    );
    let rest = match scripted(state, &code, &elsewhere).await {
        Ok(rest) => rest,
        Err(response) => return response,
    };
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
    if let Some(response) = used_before(state, &code) {
        return response;
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

/// The answers both code exchanges script the same way: `busy:`, `slow:`, `fail:`,
/// `http:`, `garbage` and `hang`. `Ok` holds what is left of the code once it names a
/// user; a 3xx points at `elsewhere`.
async fn scripted<'c>(
    state: &MockState,
    code: &'c str,
    elsewhere: &str,
) -> Result<&'c str, Response> {
    let mut rest = code;
    loop {
        if let Some(spec) = rest.strip_prefix("busy:") {
            let Some((n, then)) = spec.split_once(':') else {
                return Err(errcode(40029, "invalid code"));
            };
            let times: u32 = n.parse().unwrap_or(0);
            let mut counts = state.busy_counts.lock().expect("mock state poisoned");
            let seen = counts.entry(code.to_owned()).or_insert(0);
            if *seen < times {
                *seen += 1;
                return Err(errcode(-1, "system error"));
            }
            rest = then;
        } else if let Some(spec) = rest.strip_prefix("slow:") {
            let Some((ms, then)) = spec.split_once(':') else {
                return Err(errcode(40029, "invalid code"));
            };
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            rest = then;
        } else {
            break;
        }
    }
    if let Some(errcode_text) = rest.strip_prefix("fail:") {
        let code: i64 = errcode_text.parse().unwrap_or(40029);
        return Err(errcode(code, "mock failure"));
    }
    if let Some(status) = rest.strip_prefix("http:") {
        let status = status
            .parse()
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = warp::reply::with_status("upstream failure", status).into_response();
        if status.is_redirection()
            && let Ok(location) = elsewhere.parse()
        {
            response.headers_mut().insert("location", location);
        }
        return Err(response);
    }
    match rest {
        "garbage" => Err("<html>not json</html>".into_response()),
        "hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Err(errcode(-1, "system error"))
        }
        _ => Ok(rest),
    }
}

/// 40163 for a code seen before: a real code works once.
fn used_before(state: &MockState, code: &str) -> Option<Response> {
    let mut used = state.used_codes.lock().expect("mock state poisoned");
    if used.len() >= USED_CODES_CAP {
        used.clear();
    }
    (!used.insert(code.to_owned())).then(|| errcode(40163, "code been used"))
}

#[derive(Deserialize)]
struct WebTokenQuery {
    appid: Option<String>,
    secret: Option<String>,
    code: Option<String>,
    grant_type: Option<String>,
}

/// `sns/oauth2/access_token`: a web login's code for the user's openid and web
/// access_token. `dev:`, `snapshot:` and `nounion:` name users; other codes work once.
async fn web_access_token(state: &MockState, q: WebTokenQuery) -> Response {
    let (Some(appid), Some(code)) = (q.appid.filter(|a| !a.is_empty()), q.code) else {
        return errcode(40013, "invalid appid");
    };
    if q.secret.is_none_or(|s| s.is_empty()) {
        return errcode(40125, "invalid appsecret");
    }
    if q.grant_type.as_deref() != Some("authorization_code") {
        return errcode(40002, "invalid grant_type");
    }
    let elsewhere = format!(
        "/sns/oauth2/access_token?appid={appid}&secret=x&code=dev:redirected\
         &grant_type=authorization_code"
    );
    let rest = match scripted(state, &code, &elsewhere).await {
        Ok(rest) => rest,
        Err(response) => return response,
    };
    let granted = |name: &str| {
        state
            .granted
            .lock()
            .expect("mock state poisoned")
            .get(&(appid.clone(), name.to_owned()))
            .cloned()
            .unwrap_or_else(|| "snsapi_userinfo".to_owned())
    };
    let strip = |name: &'_ str| {
        name.split_once('#')
            .map_or(name, |(name, _)| name)
            .to_owned()
    };
    let (user, snapshot) = if let Some(name) = rest.strip_prefix("dev:") {
        let name = strip(name);
        let user = WebUser {
            openid: derived_id("o", "openid", &appid, &name),
            unionid: Some(derived_id("u", "unionid", "", &name)),
            scope: granted(&name),
            nickname: name,
        };
        (user, false)
    } else if let Some(name) = rest.strip_prefix("nounion:") {
        let name = strip(name);
        let user = WebUser {
            openid: derived_id("o", "openid", &appid, &format!("nounion:{name}")),
            unionid: None,
            scope: granted(&name),
            nickname: name,
        };
        (user, false)
    } else if let Some(name) = rest.strip_prefix("snapshot:") {
        // A snapshot page gets a virtual openid of its own and only the base scope.
        let name = strip(name);
        let user = WebUser {
            openid: derived_id("o", "snapshot", &appid, &name),
            unionid: None,
            scope: "snsapi_base".to_owned(),
            nickname: name,
        };
        (user, true)
    } else {
        if let Some(response) = used_before(state, &code) {
            return response;
        }
        let user = WebUser {
            openid: derived_id("o", "openid", &appid, &code),
            unionid: None,
            scope: "snsapi_userinfo".to_owned(),
            nickname: format!("user-{}", &derived_digits(&code)[..4]),
        };
        (user, false)
    };
    let token = format!(
        "WEB_ACCESS_TOKEN_{}",
        URL_SAFE_NO_PAD.encode(random::bytes::<24>())
    );
    let mut body = json!({
        "access_token": token,
        "expires_in": DEFAULT_TOKEN_TTL_SECS,
        "refresh_token": format!("REFRESH_TOKEN_{}", URL_SAFE_NO_PAD.encode(random::bytes::<24>())),
        "openid": user.openid,
        "scope": user.scope,
    });
    if let Some(unionid) = &user.unionid {
        body["unionid"] = json!(unionid);
    }
    if snapshot {
        body["is_snapshotuser"] = json!(1);
    }
    let mut tokens = state.web_tokens.lock().expect("mock state poisoned");
    if tokens.len() >= USED_CODES_CAP {
        tokens.clear();
    }
    tokens.insert(token, user);
    warp::reply::json(&body).into_response()
}

#[derive(Deserialize)]
struct UserInfoQuery {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    openid: String,
}

/// `sns/userinfo`: the nickname is the name the user logged in as.
fn userinfo(state: &MockState, q: &UserInfoQuery) -> Response {
    let Some(user) = state
        .web_tokens
        .lock()
        .expect("mock state poisoned")
        .get(&q.access_token)
        .cloned()
    else {
        return errcode(
            40001,
            "invalid credential, access_token is invalid or not latest",
        );
    };
    if user.openid != q.openid {
        return errcode(40003, "invalid openid");
    }
    if user.scope == "snsapi_base" {
        return errcode(48001, "api unauthorized");
    }
    let mut body = json!({
        "openid": user.openid,
        "nickname": user.nickname,
        "sex": 0,
        "province": "",
        "city": "",
        "country": "",
        "headimgurl": format!(
            "https://thirdwx.qlogo.cn/mmopen/vi_32/mock-{}/132",
            derived_digits(&user.openid)
        ),
        "privilege": [],
    });
    if let Some(unionid) = user.unionid {
        body["unionid"] = json!(unionid);
    }
    warp::reply::json(&body).into_response()
}

/// Which of WeChat's two authorize pages is asked for.
#[derive(Debug, Clone, Copy)]
enum AuthorizePage {
    /// `/connect/oauth2/authorize`, inside WeChat, for official accounts' H5 pages.
    OfficialAccount,
    /// `/connect/qrconnect`, the QR page a website sends a PC browser to.
    Website,
}

impl AuthorizePage {
    fn path(self) -> &'static str {
        match self {
            AuthorizePage::OfficialAccount => "/connect/oauth2/authorize",
            AuthorizePage::Website => "/connect/qrconnect",
        }
    }

    fn scopes(self) -> &'static [&'static str] {
        match self {
            AuthorizePage::OfficialAccount => &["snsapi_base", "snsapi_userinfo"],
            AuthorizePage::Website => &["snsapi_login"],
        }
    }
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    appid: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    /// Set by the page's form: who logs in.
    name: Option<String>,
    /// Set by the page's form when the person refuses.
    deny: Option<String>,
}

/// The codes a name typed on the page may spell out in full; any other name becomes
/// `dev:<name>`.
const SPELLED_CODES: [&str; 4] = ["dev:", "nounion:", "snapshot:", "fail:"];

/// WeChat's authorize pages: the parameters checked as WeChat does, then a page where a
/// person picks a name; its form comes back here with `name` and is sent on to the
/// redirect_uri with `code` and `state`, as WeChat does after the user agrees.
fn authorize_page(state: &MockState, page: AuthorizePage, q: AuthorizeQuery) -> Response {
    let checked = match check_authorize(page, &q) {
        Ok(checked) => checked,
        Err(message) => return html_page(StatusCode::BAD_REQUEST, "Bad request", &message),
    };
    let AuthorizeParams {
        appid,
        redirect_uri,
        scope,
        state: client_state,
    } = checked;
    if q.deny.is_some() {
        // A user who refuses comes back with the state and no code.
        return found(&redirect_uri, &[("state", &client_state)]);
    }
    let Some(name) = q.name else {
        return html_page(
            StatusCode::OK,
            "Log in with WeChat (fake)",
            &authorize_form(page, &appid, &redirect_uri, &scope, &client_state),
        );
    };
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return html_page(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "<p>The name must be 1 to 64 characters.</p>",
        );
    }
    let code = if SPELLED_CODES.iter().any(|p| name.starts_with(p)) {
        name.to_owned()
    } else {
        format!("dev:{name}")
    };
    let user = code.split_once(':').map_or(name, |(_, user)| user);
    let user = user.split_once('#').map_or(user, |(user, _)| user);
    let mut granted = state.granted.lock().expect("mock state poisoned");
    if granted.len() >= USED_CODES_CAP {
        granted.clear();
    }
    granted.insert((appid, user.to_owned()), scope);
    drop(granted);
    found(&redirect_uri, &[("code", &code), ("state", &client_state)])
}

struct AuthorizeParams {
    appid: String,
    redirect_uri: String,
    scope: String,
    state: String,
}

/// The checks WeChat makes before it shows its page; each failure is a sentence of HTML.
fn check_authorize(page: AuthorizePage, q: &AuthorizeQuery) -> Result<AuthorizeParams, String> {
    let appid = q.appid.clone().unwrap_or_default();
    if !(2..=64).contains(&appid.len()) || !appid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("<p>appid is missing or not an AppID (errcode 40013).</p>".into());
    }
    let redirect_uri = q.redirect_uri.clone().unwrap_or_default();
    match url::Url::parse(&redirect_uri) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
        _ => {
            return Err(format!(
                "<p>redirect_uri <code>{}</code> is not an absolute http(s) URL \
                 (redirect_uri 参数错误).</p>",
                escape_html(&redirect_uri)
            ));
        }
    }
    if q.response_type.as_deref() != Some("code") {
        return Err("<p>response_type must be <code>code</code>.</p>".into());
    }
    let scope = q.scope.clone().unwrap_or_default();
    if !page.scopes().contains(&scope.as_str()) {
        return Err(format!(
            "<p>scope <code>{}</code> is not one of {} on this page (errcode 10005).</p>",
            escape_html(&scope),
            page.scopes().join(", ")
        ));
    }
    let state = q.state.clone().unwrap_or_default();
    if state.len() > 128 || !state.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("<p>state must be at most 128 letters and digits.</p>".into());
    }
    Ok(AuthorizeParams {
        appid,
        redirect_uri,
        scope,
        state,
    })
}

fn authorize_form(
    page: AuthorizePage,
    appid: &str,
    redirect_uri: &str,
    scope: &str,
    state: &str,
) -> String {
    let asks = match scope {
        "snsapi_base" => "your openid only, without asking you (snsapi_base)",
        "snsapi_userinfo" => "your nickname and avatar (snsapi_userinfo)",
        _ => "to log you in on a website (snsapi_login)",
    };
    let hidden = [
        ("appid", appid),
        ("redirect_uri", redirect_uri),
        ("response_type", "code"),
        ("scope", scope),
        ("state", state),
    ]
    .iter()
    .map(|(name, value)| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape_html(value)
        )
    })
    .collect::<Vec<_>>()
    .join("\n    ");
    format!(
        "<p>App <strong id=\"appid\">{appid}</strong> asks for {asks}.</p>\n\
         <p>You will be sent back to <code id=\"redirect\">{redirect}</code>.</p>\n\
         <form method=\"get\" action=\"{action}\">\n    {hidden}\n    \
         <label for=\"name\">Log in as</label>\n    \
         <input id=\"name\" name=\"name\" value=\"alice\" maxlength=\"64\" required autofocus>\n    \
         <button id=\"login\" type=\"submit\">Allow</button>\n    \
         <button id=\"deny\" type=\"submit\" name=\"deny\" value=\"1\" formnovalidate>Deny</button>\n\
         </form>\n\
         <p class=\"hint\">Any name logs in that user (<code>dev:&lt;name&gt;</code>). \
         <code>nounion:&lt;name&gt;</code> has no unionid, <code>snapshot:&lt;name&gt;</code> \
         is a snapshot page's user, <code>fail:&lt;errcode&gt;</code> makes the code fail.</p>",
        appid = escape_html(appid),
        redirect = escape_html(redirect_uri),
        action = page.path(),
    )
}

/// A plain, self-contained page: no scripts, no external assets.
fn html_page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>\n\
         body {{ font-family: sans-serif; max-width: 28rem; margin: 2rem auto; padding: 0 1rem; }}\n\
         .banner {{ background: #fde68a; padding: .5rem; }}\n\
         input, button {{ font-size: 1rem; padding: .4rem; margin: .3rem 0; }}\n\
         .hint {{ color: #555; font-size: .85rem; }}\n\
         </style>\n</head>\n<body>\n\
         <p class=\"banner\">The fake WeChat of wxauth's dev mode. Not WeChat.</p>\n\
         <h1>{title}</h1>\n{body}\n</body>\n</html>\n"
    );
    let mut response = warp::reply::with_status(warp::reply::html(html), status).into_response();
    response.headers_mut().insert(
        "cache-control",
        warp::http::HeaderValue::from_static("no-store"),
    );
    response
}

/// A 302 to `url` with `pairs` added to its query.
fn found(url: &str, pairs: &[(&str, &str)]) -> Response {
    let location = match crate::redirect_uri::with_query(url, pairs) {
        Ok(location) => location,
        Err(e) => return html_page(StatusCode::BAD_REQUEST, "Bad request", &escape_html(&e)),
    };
    match warp::http::HeaderValue::from_str(&location) {
        Ok(value) => {
            let mut response = StatusCode::FOUND.into_response();
            response.headers_mut().insert("location", value);
            response
        }
        Err(_) => html_page(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "<p>redirect_uri cannot be sent back as a header.</p>",
        ),
    }
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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
