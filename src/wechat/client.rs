//! The client for WeChat's server API. Every call has a connect timeout and a total
//! bound; WeChat's "system busy" (-1), 5xx answers and network faults are retried with
//! jittered exponential backoff inside that bound. Request URLs and bodies carry the
//! AppSecret or the access_token, so no error or log line ever includes them.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::{Instant, timeout_at};

use crate::config::AppConfig;
use crate::keys::random;
use crate::keys::secret::Secret;

/// What `jscode2session` returns on success.
#[derive(Debug, Clone)]
pub struct CodeSession {
    pub openid: String,
    pub unionid: Option<String>,
    /// Never leaves the server.
    pub session_key: Secret,
}

/// What `sns/oauth2/access_token` returns for a web login's code.
#[derive(Debug, Clone)]
pub struct WebAccessToken {
    /// The user's openid in this app.
    pub openid: String,
    /// Present when the app is bound to an Open Platform account (and, for
    /// `snsapi_base`, only when the user already follows or authorized it).
    pub unionid: Option<String>,
    /// The user's own access_token, for `sns/userinfo`; never leaves the server.
    pub access_token: Secret,
    /// The scopes granted, comma-separated as WeChat sends them.
    pub scope: String,
    /// WeChat answered for a snapshot page (朋友圈 preview, `is_snapshotuser: 1`): the
    /// openid is a virtual one, and the user must open the page in WeChat to log in.
    pub is_snapshot_user: bool,
}

/// What `sns/userinfo` returns about the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebUserInfo {
    pub nickname: String,
    /// The avatar's URL; `None` when the user has none.
    pub headimgurl: Option<String>,
    pub unionid: Option<String>,
}

/// Why a WeChat call failed, in the terms the API answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeChatError {
    /// 40029 or 40163: the code is invalid or already used.
    #[error("WeChat rejected the code (errcode {0})")]
    InvalidCode(i64),
    /// 40226: WeChat blocked this user's login.
    #[error("WeChat blocked the login (errcode 40226)")]
    LoginBlocked,
    /// 45011: WeChat's per-user rate limit.
    #[error("WeChat's rate limit was hit (errcode 45011)")]
    RateLimited,
    /// 40001, 40014 or 42001: the access_token used is invalid or expired.
    #[error("WeChat refused the access_token (errcode {0})")]
    AccessTokenRejected(i64),
    /// A credential error or an answer that makes no sense; retrying will not help.
    #[error("WeChat answered with something unusable: {0}")]
    Unusable(String),
    /// Timeouts, refused connections, 5xx or busy until the time ran out.
    #[error("WeChat is unavailable: {0}")]
    Unavailable(String),
}

impl WeChatError {
    /// The kind of failure in one word, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            WeChatError::InvalidCode(_) => "invalid_code",
            WeChatError::LoginBlocked => "login_blocked",
            WeChatError::RateLimited => "rate_limited",
            WeChatError::AccessTokenRejected(_) => "access_token_rejected",
            WeChatError::Unusable(_) => "unusable",
            WeChatError::Unavailable(_) => "unavailable",
        }
    }
}

/// An access_token from `stable_token`.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: Secret,
    /// Seconds it stays valid.
    pub expires_in: i64,
}

/// The user's phone number from `getuserphonenumber`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PhoneInfo {
    /// With the country prefix for numbers outside mainland China.
    #[serde(rename = "phoneNumber")]
    pub phone_number: String,
    /// Without a country prefix.
    #[serde(rename = "purePhoneNumber")]
    pub pure_phone_number: String,
    /// WeChat sends it as a string or as a number.
    #[serde(rename = "countryCode", deserialize_with = "string_or_number")]
    pub country_code: String,
}

/// What `msg_sec_check` (version 2) suggests doing with a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suggestion {
    Pass,
    Review,
    Risky,
}

/// One attempt's outcome: done, or worth another try.
enum Attempt<T> {
    Done(Result<T, WeChatError>),
    Retry(String),
}

/// Why a WeChat client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the WeChat API address is not usable: {0}")]
    Address(String),
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

/// The WeChat API client, shared by all requests.
#[derive(Debug, Clone)]
pub struct WeChatClient {
    http: reqwest::Client,
    base: String,
    /// `jscode2session`'s address, parsed once: every login calls it, and parsing the
    /// address anew (host name rules included) was a noticeable part of a login's work.
    code2session: reqwest::Url,
    total: Duration,
    observer: Option<Arc<dyn CallObserver>>,
}

/// Told of every finished WeChat call, for metrics: which API, how it ended and how
/// long it took.
pub trait CallObserver: Send + Sync + std::fmt::Debug {
    /// Records one finished call; `error` is `None` for a success.
    fn observe(&self, api: &str, error: Option<&WeChatError>, took: Duration);
}

/// Installs ring as rustls's crypto provider (the only crypto library wxauth uses).
pub fn install_crypto_provider() {
    // Fails only when a provider is already installed, which is what we want anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[derive(Deserialize)]
struct Code2SessionBody {
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    openid: Option<String>,
    #[serde(default)]
    session_key: Option<String>,
    #[serde(default)]
    unionid: Option<String>,
}

#[derive(Deserialize)]
struct WebAccessTokenBody {
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    openid: Option<String>,
    #[serde(default)]
    unionid: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    is_snapshotuser: Option<i64>,
}

#[derive(Deserialize)]
struct UserInfoBody {
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    headimgurl: Option<String>,
    #[serde(default)]
    unionid: Option<String>,
}

#[derive(Deserialize)]
struct StableTokenBody {
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
}

#[derive(Deserialize)]
struct PhoneBody {
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    phone_info: Option<PhoneInfo>,
}

#[derive(Deserialize)]
struct ErrcodeBody {
    #[serde(default)]
    errcode: Option<i64>,
}

#[derive(Deserialize)]
struct SecCheckBody {
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    result: Option<SecCheckResult>,
}

#[derive(Deserialize)]
struct SecCheckResult {
    suggest: String,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or a number, got {other}"
        ))),
    }
}

/// Sorts an error code from a call that exchanges a user's code (`jscode2session`,
/// `sns/oauth2/access_token`): WeChat answers both with the same codes, and wxauth maps
/// them to the same errors.
fn code_call_error<T>(errcode: i64) -> Attempt<T> {
    match errcode {
        -1 => Attempt::Retry("system busy (errcode -1)".into()),
        code @ (40029 | 40163) => Attempt::Done(Err(WeChatError::InvalidCode(code))),
        40226 => Attempt::Done(Err(WeChatError::LoginBlocked)),
        45011 => Attempt::Done(Err(WeChatError::RateLimited)),
        other => Attempt::Done(Err(WeChatError::Unusable(format!("errcode {other}")))),
    }
}

/// WeChat sends "no value" as an empty string as often as it leaves the field out.
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// Sorts an error code from a call made with an access_token: busy is retried, a refused
/// token is reported as such, and the rest are final.
fn token_call_error<T>(errcode: i64) -> Attempt<T> {
    match errcode {
        -1 => Attempt::Retry("system busy (errcode -1)".into()),
        code @ (40001 | 40014 | 42001) => {
            Attempt::Done(Err(WeChatError::AccessTokenRejected(code)))
        }
        45011 => Attempt::Done(Err(WeChatError::RateLimited)),
        other => Attempt::Done(Err(WeChatError::Unusable(format!("errcode {other}")))),
    }
}

impl WeChatClient {
    /// A client for the API at `base` (no trailing slash).
    pub fn new(
        base: &str,
        connect_timeout: Duration,
        total: Duration,
    ) -> Result<WeChatClient, ClientError> {
        install_crypto_provider();
        let code2session = format!("{base}/sns/jscode2session");
        let code2session =
            reqwest::Url::parse(&code2session).map_err(|e| ClientError::Address(e.to_string()))?;
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(total)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("wxauth/", env!("CARGO_PKG_VERSION")))
            // WeChat's API answers in place. A redirect is an answer like any other
            // unexpected one, and failed calls are retried by `with_retries` alone:
            // reqwest's own retries would copy every request, in case it needed one.
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never().max_retries_per_request(0))
            .build()
            .map_err(|e| ClientError::Build(e.without_url().to_string()))?;
        Ok(WeChatClient {
            http,
            base: base.to_owned(),
            code2session,
            total,
            observer: None,
        })
    }

    /// The same client, telling `observer` of every call's outcome and time.
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> WeChatClient {
        self.observer = Some(observer);
        self
    }

    fn record<T>(&self, api: &str, started: Instant, result: &Result<T, WeChatError>) {
        if let Some(observer) = &self.observer {
            observer.observe(api, result.as_ref().err(), started.elapsed());
        }
    }

    /// Exchanges a `wx.login` code for the user's openid and session_key.
    pub async fn code2session(
        &self,
        app: &AppConfig,
        code: &str,
    ) -> Result<CodeSession, WeChatError> {
        let mut url = self.code2session.clone();
        url.query_pairs_mut()
            .append_pair("appid", &app.appid)
            .append_pair("secret", app.secret.expose())
            .append_pair("js_code", code)
            .append_pair("grant_type", "authorization_code");
        self.with_retries("jscode2session", || async {
            let response = self.http.get(url.clone()).send().await;
            let body: Code2SessionBody = match read_json(response).await {
                Ok(body) => body,
                Err(attempt) => return attempt,
            };
            match body.errcode.unwrap_or(0) {
                0 => Attempt::Done(
                    match (non_empty(body.openid), non_empty(body.session_key)) {
                        (Some(openid), Some(key)) => Ok(CodeSession {
                            openid,
                            unionid: non_empty(body.unionid),
                            session_key: Secret::new(key),
                        }),
                        _ => Err(WeChatError::Unusable(
                            "a success without openid or session_key".into(),
                        )),
                    },
                ),
                other => code_call_error(other),
            }
        })
        .await
    }

    /// Exchanges a web login's code (from WeChat's redirect to the callback) for the
    /// user's openid and web access_token.
    pub async fn oauth_access_token(
        &self,
        app: &AppConfig,
        code: &str,
    ) -> Result<WebAccessToken, WeChatError> {
        let url = format!("{}/sns/oauth2/access_token", self.base);
        self.with_retries("oauth2_access_token", || async {
            let response = self
                .http
                .get(&url)
                .query(&[
                    ("appid", app.appid.as_str()),
                    ("secret", app.secret.expose()),
                    ("code", code),
                    ("grant_type", "authorization_code"),
                ])
                .send()
                .await;
            let body: WebAccessTokenBody = match read_json(response).await {
                Ok(body) => body,
                Err(attempt) => return attempt,
            };
            match body.errcode.unwrap_or(0) {
                0 => Attempt::Done(
                    match (non_empty(body.openid), non_empty(body.access_token)) {
                        (Some(openid), Some(token)) => Ok(WebAccessToken {
                            openid,
                            unionid: non_empty(body.unionid),
                            access_token: Secret::new(token),
                            scope: body.scope.unwrap_or_default(),
                            is_snapshot_user: body.is_snapshotuser == Some(1),
                        }),
                        _ => Err(WeChatError::Unusable(
                            "a success without openid or access_token".into(),
                        )),
                    },
                ),
                other => code_call_error(other),
            }
        })
        .await
    }

    /// Reads the user's nickname, avatar and unionid with the web access_token of a
    /// `snsapi_userinfo` or `snsapi_login` login.
    pub async fn userinfo(
        &self,
        access_token: &Secret,
        openid: &str,
    ) -> Result<WebUserInfo, WeChatError> {
        let url = format!("{}/sns/userinfo", self.base);
        self.with_retries("userinfo", || async {
            let response = self
                .http
                .get(&url)
                .query(&[
                    ("access_token", access_token.expose()),
                    ("openid", openid),
                    ("lang", "zh_CN"),
                ])
                .send()
                .await;
            let body: UserInfoBody = match read_json(response).await {
                Ok(body) => body,
                Err(attempt) => return attempt,
            };
            match body.errcode.unwrap_or(0) {
                0 => Attempt::Done(Ok(WebUserInfo {
                    nickname: body.nickname.unwrap_or_default(),
                    headimgurl: non_empty(body.headimgurl),
                    unionid: non_empty(body.unionid),
                })),
                other => token_call_error(other),
            }
        })
        .await
    }

    /// Fetches `app`'s access_token from `stable_token`. With `force_refresh`, WeChat
    /// issues a new one even if the current one is still valid (it allows that 20 times a
    /// day, 30 seconds apart).
    pub async fn stable_token(
        &self,
        app: &AppConfig,
        force_refresh: bool,
    ) -> Result<AccessToken, WeChatError> {
        let url = format!("{}/cgi-bin/stable_token", self.base);
        self.with_retries("stable_token", || async {
            let response = self
                .http
                .post(&url)
                .json(&serde_json::json!({
                    "grant_type": "client_credential",
                    "appid": app.appid,
                    "secret": app.secret.expose(),
                    "force_refresh": force_refresh,
                }))
                .send()
                .await;
            let body: StableTokenBody = match read_json(response).await {
                Ok(body) => body,
                Err(attempt) => return attempt,
            };
            Attempt::Done(match body.errcode.unwrap_or(0) {
                0 => match (body.access_token, body.expires_in) {
                    (Some(token), Some(expires_in)) if !token.is_empty() && expires_in > 0 => {
                        Ok(AccessToken {
                            token: Secret::new(token),
                            expires_in,
                        })
                    }
                    _ => Err(WeChatError::Unusable(
                        "a success without access_token or expires_in".into(),
                    )),
                },
                -1 => return Attempt::Retry("system busy (errcode -1)".into()),
                other => Err(WeChatError::Unusable(format!("errcode {other}"))),
            })
        })
        .await
    }

    /// Exchanges a `getPhoneNumber` button's code for the user's phone number.
    pub async fn phone_number(&self, token: &Secret, code: &str) -> Result<PhoneInfo, WeChatError> {
        let url = format!("{}/wxa/business/getuserphonenumber", self.base);
        self.with_retries("getuserphonenumber", || async {
            let response = self
                .http
                .post(&url)
                .query(&[("access_token", token.expose())])
                .json(&serde_json::json!({ "code": code }))
                .send()
                .await;
            let body: PhoneBody = match read_json(response).await {
                Ok(body) => body,
                Err(attempt) => return attempt,
            };
            match body.errcode.unwrap_or(0) {
                0 => {
                    Attempt::Done(body.phone_info.ok_or_else(|| {
                        WeChatError::Unusable("a success without phone_info".into())
                    }))
                }
                code @ (40029 | 40163) => Attempt::Done(Err(WeChatError::InvalidCode(code))),
                other => token_call_error(other),
            }
        })
        .await
    }

    /// Asks whether `signature` (made with the session_key the server holds) matches the
    /// user's current session_key: `Ok(false)` when WeChat says it is stale (87009).
    pub async fn check_session(
        &self,
        token: &Secret,
        openid: &str,
        signature: &str,
    ) -> Result<bool, WeChatError> {
        let url = format!("{}/wxa/checksession", self.base);
        self.with_retries("checksession", || async {
            let response = self
                .http
                .get(&url)
                .query(&[
                    ("access_token", token.expose()),
                    ("openid", openid),
                    ("signature", signature),
                    ("sig_method", "hmac_sha256"),
                ])
                .send()
                .await;
            let body: ErrcodeBody = match read_json(response).await {
                Ok(body) => body,
                Err(attempt) => return attempt,
            };
            match body.errcode.unwrap_or(0) {
                0 => Attempt::Done(Ok(true)),
                87009 => Attempt::Done(Ok(false)),
                other => token_call_error(other),
            }
        })
        .await
    }

    /// Runs `content` through WeChat's text check (`msg_sec_check` version 2, scene 1:
    /// a profile) on behalf of `openid`.
    pub async fn msg_sec_check(
        &self,
        token: &Secret,
        openid: &str,
        content: &str,
    ) -> Result<Suggestion, WeChatError> {
        let url = format!("{}/wxa/msg_sec_check", self.base);
        self.with_retries("msg_sec_check", || async {
            let response = self
                .http
                .post(&url)
                .query(&[("access_token", token.expose())])
                .json(&serde_json::json!({
                    "content": content,
                    "version": 2,
                    "scene": 1,
                    "openid": openid,
                }))
                .send()
                .await;
            let body: SecCheckBody = match read_json(response).await {
                Ok(body) => body,
                Err(attempt) => return attempt,
            };
            match body.errcode.unwrap_or(0) {
                0 => Attempt::Done(match body.result.as_ref().map(|r| r.suggest.as_str()) {
                    Some("pass") => Ok(Suggestion::Pass),
                    Some("review") => Ok(Suggestion::Review),
                    Some("risky") => Ok(Suggestion::Risky),
                    _ => Err(WeChatError::Unusable(
                        "a content check without a known suggestion".into(),
                    )),
                }),
                // Version 1's answer for risky content, still sent in some cases.
                87014 => Attempt::Done(Ok(Suggestion::Risky)),
                other => token_call_error(other),
            }
        })
        .await
    }

    /// Runs `attempt` until it is done or the total bound is near, sleeping a jittered,
    /// growing backoff between tries.
    async fn with_retries<T, F, Fut>(&self, api: &str, mut attempt: F) -> Result<T, WeChatError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let started = Instant::now();
        let deadline = started + self.total;
        let mut backoff = Duration::from_millis(100);
        let mut tries = 0u32;
        loop {
            tries += 1;
            let reason = match timeout_at(deadline, attempt()).await {
                Ok(Attempt::Done(result)) => {
                    if let Err(e) = &result {
                        tracing::warn!(api, tries, error = %e, "WeChat call failed");
                    }
                    self.record(api, started, &result);
                    return result;
                }
                Ok(Attempt::Retry(reason)) => reason,
                Err(_) => "timed out".to_owned(),
            };
            // Full jitter: a random wait up to the backoff, so retries spread out.
            let pause = Duration::from_millis(random::below(backoff.as_millis() as u64 + 1));
            if Instant::now() + pause >= deadline {
                tracing::warn!(api, tries, reason, "WeChat unavailable; giving up");
                let result = Err(WeChatError::Unavailable(reason));
                self.record(api, started, &result);
                return result;
            }
            tracing::debug!(api, tries, reason, ?pause, "retrying WeChat call");
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

/// Reads a JSON answer, sorting failures into final ones and ones worth retrying. The
/// error's URL is dropped before it is described, since it holds the AppSecret.
async fn read_json<T, R>(
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, Attempt<R>>
where
    T: serde::de::DeserializeOwned,
{
    let response = response.map_err(|e| Attempt::Retry(describe(e)))?;
    let status = response.status();
    if status.is_server_error() {
        return Err(Attempt::Retry(format!("HTTP {}", status.as_u16())));
    }
    if !status.is_success() {
        return Err(Attempt::Done(Err(WeChatError::Unusable(format!(
            "HTTP {}",
            status.as_u16()
        )))));
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Attempt::Retry(describe(e)))?;
    serde_json::from_slice(&bytes).map_err(|_| {
        Attempt::Done(Err(WeChatError::Unusable(format!(
            "an answer that is not the expected JSON ({} bytes)",
            bytes.len()
        ))))
    })
}

fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    format!("{kind}: {e}")
}
