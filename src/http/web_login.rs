//! The web login's three routes: `GET /v1/oauth/wechat/authorize` sends the browser to
//! WeChat, `GET /v1/oauth/wechat/callback` takes it back to the page, and
//! `POST /v1/oauth/token` trades the page's one-time code for a session.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::{Reply, Response};

use super::body::RawBody;
use super::error::{ApiError, ErrorCode};
use super::handlers::{token_response, too_many};
use super::json::no_store;
use super::query;
use super::state::AppState;
use crate::domain::Error;
use crate::domain::web_login::{AuthorizeRequest, BROWSER_COOKIE, STATE_LIFETIME_SECS, WebLogins};
use crate::redirect_uri;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorizeQuery {
    appid: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    scope: Option<String>,
}

/// `GET /v1/oauth/wechat/authorize`: checks the page's request and answers 302 to
/// WeChat's page, with the cookie that binds the login to this browser.
pub async fn authorize(
    state: &Arc<AppState>,
    client: Option<IpAddr>,
    raw_query: String,
    browser: Option<String>,
) -> Result<Response, ApiError> {
    if let (Some(limiter), Some(ip)) = (&state.login_limiter, client) {
        limiter.check(ip).map_err(too_many)?;
    }
    let web_logins = web_logins(state)?;
    let q: AuthorizeQuery = query::parse(&raw_query)?;
    let appid = q.appid.ok_or_else(|| missing("appid"))?;
    let redirect_uri = q.redirect_uri.ok_or_else(|| missing("redirect_uri"))?;
    let app = state.config.app(Some(&appid)).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownApp,
            "`appid` names no app configured on this server",
        )
    })?;
    let started = web_logins
        .authorize(
            app,
            AuthorizeRequest {
                redirect_uri,
                state: q.state,
                scope: q.scope,
            },
            browser.as_deref(),
        )
        .await?;
    let secure = state
        .config
        .public_url
        .as_deref()
        .is_some_and(|url| url.starts_with("https://"));
    // Only the callback needs it, and only for as long as the state lives.
    let cookie = format!(
        "{BROWSER_COOKIE}={}; Path=/v1/oauth/wechat/callback; Max-Age={STATE_LIFETIME_SECS}; \
         HttpOnly; SameSite=Lax{}",
        started.binding,
        if secure { "; Secure" } else { "" }
    );
    let mut response = redirect(&started.location)?;
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| ApiError::internal(&e))?,
    );
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
}

/// `GET /v1/oauth/wechat/callback`: where WeChat sends the browser back. A state that
/// does not check out answers here; after it has, the browser goes to the page, with
/// `wxauth_code` or `error`, and the page's own `state`.
pub async fn callback(
    state: &Arc<AppState>,
    raw_query: String,
    browser: Option<String>,
) -> Result<Response, ApiError> {
    let web_logins = web_logins(state)?;
    let q: CallbackQuery = query::parse(&raw_query)?;
    let returned = web_logins
        .callback(
            &state.config.apps,
            q.code.as_deref(),
            q.state.as_deref(),
            browser.as_deref(),
        )
        .await?;
    let mut pairs: Vec<(&str, String)> = match &returned.result {
        Ok(code) => vec![("wxauth_code", code.clone())],
        Err(e) => vec![("error", ApiError::from(e).code.as_str().to_owned())],
    };
    if let Some(client_state) = &returned.client_state {
        pairs.push(("state", client_state.clone()));
    }
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let location = redirect_uri::with_query(&returned.redirect_uri, &pairs)
        .map_err(|e| ApiError::internal(&Error::Broken(e.into())))?;
    redirect(&location)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    code: String,
}

/// `POST /v1/oauth/token`: the page's one-time code for a session, answered as a login.
pub async fn token(
    state: &Arc<AppState>,
    client: Option<IpAddr>,
    body: RawBody,
) -> Result<Response, ApiError> {
    if let (Some(limiter), Some(ip)) = (&state.login_limiter, client) {
        limiter.check(ip).map_err(too_many)?;
    }
    let web_logins = web_logins(state)?;
    let request: TokenRequest = body.required_json()?;
    let outcome = web_logins.exchange(&request.code).await?;
    Ok(token_response(state, &outcome))
}

fn web_logins(state: &AppState) -> Result<&WebLogins, ApiError> {
    state.web_logins.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "web login needs `public_url`, the address browsers reach wxauth at; set it and \
             configure an app of kind official_account or website",
        )
    })
}

fn missing(name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        format!("the query parameter `{name}` is missing"),
    )
}

/// A 302 to `location`, never cached: each one carries a fresh state or code.
fn redirect(location: &str) -> Result<Response, ApiError> {
    let mut response = no_store(StatusCode::FOUND.into_response());
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(location).map_err(|e| ApiError::internal(&e))?,
    );
    Ok(response)
}
