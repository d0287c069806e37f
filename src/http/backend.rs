//! The backend-facing routes, which tell the team's own services who is calling:
//! `/v1/auth/forward` for a reverse proxy's auth subrequest (nginx `auth_request`, Caddy
//! `forward_auth`, Traefik ForwardAuth), and `POST /v1/introspect` for a service that
//! holds a service key and prefers to ask.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use warp::http::{HeaderName, HeaderValue};
use warp::reply::{self, Reply, Response};

use super::body::RawBody;
use super::error::{ApiError, ErrorCode};
use super::json::{json, no_store};
use super::state::AppState;
use crate::clock::rfc3339;
use crate::config::AppKind;
use crate::db::queries;
use crate::domain::Error;
use crate::domain::service_keys::{self, Scope, ServiceKeyRow};
use crate::domain::sessions::Authenticated;
use crate::keys::secret::Secret;

/// The public user id.
pub const USER_ID_HEADER: HeaderName = HeaderName::from_static("x-auth-user-id");
/// The user's openid for the app.
pub const OPENID_HEADER: HeaderName = HeaderName::from_static("x-auth-openid");
/// The user's unionid; absent when WeChat has not given one.
pub const UNIONID_HEADER: HeaderName = HeaderName::from_static("x-auth-unionid");
/// The AppID of the mini program the user logged in to.
pub const APPID_HEADER: HeaderName = HeaderName::from_static("x-auth-appid");
/// The public session id.
pub const SESSION_ID_HEADER: HeaderName = HeaderName::from_static("x-auth-session-id");

/// `/v1/auth/forward`, any method: 200 with the caller's identity in `X-Auth-*` headers
/// and an empty body, or the usual 401/403 error. The response is built afresh, so no
/// header the client sent can come back in it.
pub async fn forward(
    state: &Arc<AppState>,
    authorization: Option<String>,
) -> Result<Response, ApiError> {
    let auth = state
        .sessions
        .authenticate(authorization.as_deref())
        .await?;
    let identity = match auth.copy.identity_headers.get() {
        Some(identity) => identity,
        None => {
            let identity = identity_headers(&auth)?;
            auth.copy.identity_headers.get_or_init(|| identity)
        }
    };
    let mut response = no_store(reply::reply().into_response());
    let headers = response.headers_mut();
    for (name, value) in identity {
        headers.insert(name.clone(), value.clone());
    }
    Ok(response)
}

/// The `X-Auth-*` headers naming the caller.
fn identity_headers(auth: &Authenticated) -> Result<Vec<(HeaderName, HeaderValue)>, ApiError> {
    let identity = &auth.identity;
    let mut headers = vec![
        (USER_ID_HEADER, value(&auth.user.public_id)?),
        (OPENID_HEADER, value(&identity.openid)?),
    ];
    if let Some(unionid) = &identity.unionid {
        headers.push((UNIONID_HEADER, value(unionid)?));
    }
    headers.push((APPID_HEADER, value(&identity.appid)?));
    headers.push((SESSION_ID_HEADER, value(&auth.session.public_id)?));
    Ok(headers)
}

fn value(text: &str) -> Result<HeaderValue, ApiError> {
    // Ids come from WeChat or from us and are plain ASCII; anything else is a bug to log.
    HeaderValue::from_str(text).map_err(|e| ApiError::internal(&e))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IntrospectRequest {
    token: String,
}

/// The answer for a token that is live (RFC 7662 names).
#[derive(Debug, Serialize)]
struct ActiveToken<'a> {
    active: bool,
    sub: &'a str,
    sid: &'a str,
    appid: &'a str,
    openid: &'a str,
    unionid: Option<&'a str>,
    exp: i64,
    iat: i64,
}

impl<'a> From<&'a Authenticated> for ActiveToken<'a> {
    fn from(auth: &'a Authenticated) -> Self {
        ActiveToken {
            active: true,
            sub: &auth.user.public_id,
            sid: &auth.session.public_id,
            appid: &auth.identity.appid,
            openid: &auth.identity.openid,
            unionid: auth.identity.unionid.as_deref(),
            exp: auth.session.expires_at,
            iat: auth.session.created_at,
        }
    }
}

/// The service key in `authorization`, if it is live and has `scope`.
async fn service_key(
    state: &AppState,
    authorization: Option<String>,
    scope: Scope,
) -> Result<ServiceKeyRow, Error> {
    service_keys::authenticate(&state.db, &*state.clock, authorization.as_deref(), scope).await
}

/// `POST /v1/introspect`: with a live service key, says whether `token` is a live session
/// and whose. Every reason a token is not usable answers the same `{"active": false}`, as
/// RFC 7662 asks, so the caller learns nothing more about a token it should not trust.
pub async fn introspect(
    state: &Arc<AppState>,
    authorization: Option<String>,
    body: RawBody,
) -> Result<Response, ApiError> {
    let caller = service_key(state, authorization, Scope::Introspect).await?;
    let request: IntrospectRequest = body.required_json()?;
    let response = match state.sessions.authenticate_token(&request.token).await {
        Ok(auth) => json(&ActiveToken::from(&auth)),
        Err(e) if is_inactive(&e) => {
            tracing::debug!(service_key = %caller.public_id, reason = %e, "introspected an inactive token");
            json(&serde_json::json!({"active": false}))
        }
        Err(e) => return Err(e.into()),
    };
    Ok(no_store(response))
}

/// Whether an authentication error says the token is unusable, rather than that the
/// server failed to check it.
fn is_inactive(e: &Error) -> bool {
    matches!(
        e,
        Error::InvalidToken(_) | Error::Expired | Error::Revoked(_) | Error::Banned { .. }
    )
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessTokenQuery {
    appid: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    #[serde(default)]
    appid: Option<String>,
    rejected: String,
}

/// `GET /v1/wechat/access-token?appid=`: with a service key of scope `access_token`, the
/// app's current access_token, the one wxauth itself uses.
pub async fn access_token(
    state: &Arc<AppState>,
    authorization: Option<String>,
    query: String,
) -> Result<Response, ApiError> {
    let caller = service_key(state, authorization, Scope::AccessToken).await?;
    let AccessTokenQuery { appid } = super::query::parse(&query)?;
    let app = token_app(state, appid.as_deref())?;
    let (token, until) = state
        .access_tokens
        .current(app)
        .await
        .map_err(Error::from)?;
    tracing::debug!(service_key = %caller.public_id, appid = %app.appid, "access_token handed out");
    Ok(token_answer(&token, until))
}

/// `POST /v1/wechat/access-token/refresh`: a service tells wxauth that WeChat refused a
/// token (40001); answers the replacement, refreshing at most once however many report
/// the same token.
pub async fn refresh_access_token(
    state: &Arc<AppState>,
    authorization: Option<String>,
    body: RawBody,
) -> Result<Response, ApiError> {
    let caller = service_key(state, authorization, Scope::AccessToken).await?;
    let request: RefreshRequest = body.required_json()?;
    if request.rejected.is_empty() || request.rejected.len() > 512 {
        return Err(Error::invalid(
            "`rejected` must be the access_token WeChat refused, as it was handed out",
        )
        .into());
    }
    let app = token_app(state, request.appid.as_deref())?;
    let rejected = Secret::new(request.rejected);
    let (token, until) = state
        .access_tokens
        .replace_rejected(app, &rejected)
        .await
        .map_err(Error::from)?;
    tracing::info!(service_key = %caller.public_id, appid = %app.appid, "a service reported a refused access_token");
    Ok(token_answer(&token, until))
}

/// The app whose access_token is asked for: a mini program or an official account
/// (a website app has none).
fn token_app<'a>(
    state: &'a AppState,
    appid: Option<&str>,
) -> Result<&'a crate::config::AppConfig, ApiError> {
    let app = state.config.app(appid).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownApp,
            match appid {
                Some(_) => "`appid` names no app configured on this server",
                None => "name the app with `appid`",
            },
        )
    })?;
    if app.kind == AppKind::Website {
        return Err(ApiError::new(
            ErrorCode::UnknownApp,
            "a website app has no access_token; name a mini program or an official account",
        ));
    }
    Ok(app)
}

/// `{"access_token", "expires_at"}`, never cached on the way.
fn token_answer(token: &Secret, until: i64) -> Response {
    no_store(json(&serde_json::json!({
        "access_token": token.expose(),
        "expires_at": rfc3339(until),
    })))
}

/// The most events one `GET /v1/events` answers.
const MAX_EVENTS: u32 = 1000;
/// How many it answers when the caller does not say.
const DEFAULT_EVENTS: u32 = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

/// `GET /v1/events?after=N&limit=M`: with a service key of scope `events`, the journal's
/// events after event `N`, oldest first, and the `next` to ask for after them.
pub async fn events(
    state: &Arc<AppState>,
    authorization: Option<String>,
    query: String,
) -> Result<Response, ApiError> {
    service_key(state, authorization, Scope::Events).await?;
    let EventsQuery { after, limit } = super::query::parse(&query)?;
    let after = after.unwrap_or(0);
    let limit = limit.unwrap_or(DEFAULT_EVENTS);
    if after < 0 || !(1..=MAX_EVENTS).contains(&limit) {
        return Err(Error::invalid(format!(
            "`after` must be an event id (0 or more) and `limit` between 1 and {MAX_EVENTS}"
        ))
        .into());
    }
    let rows = state
        .db
        .read(move |c| queries::events_after(c, after, limit))
        .await
        .map_err(Error::from)?;
    let next = rows.last().map_or(after, |e| e.id);
    let events = rows
        .into_iter()
        .map(|e| {
            let mut event = serde_json::Map::new();
            event.insert("id".into(), e.id.into());
            event.insert("type".into(), e.kind.into());
            event.insert("at".into(), rfc3339(e.at).into());
            event.insert("user_id".into(), e.user_public_id.into());
            // The type's own fields, beside the common ones.
            if let Ok(serde_json::Value::Object(data)) = serde_json::from_str(&e.data) {
                for (k, v) in data {
                    event.entry(k).or_insert(v);
                }
            }
            serde_json::Value::Object(event)
        })
        .collect::<Vec<_>>();
    Ok(no_store(json(
        &serde_json::json!({ "events": events, "next": next }),
    )))
}
