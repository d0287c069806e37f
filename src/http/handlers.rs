//! The work behind each route: decode the request, call the domain, encode the answer.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::reply::{self, Reply, Response};

use super::body::RawBody;
use super::error::{ApiError, ErrorCode};
use super::json::{json, json_body, to_json};
use super::state::AppState;
use super::views::{SessionInfo, TokenResponse, UserView};
use crate::config::AppKind;
use crate::domain::login::{self, LoginOutcome};
use crate::domain::profile;
use crate::domain::sessions::Authenticated;

pub fn healthz(state: &AppState) -> Response {
    let body = if state.config.dev {
        json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "commit": env!("BUILD_GIT_COMMIT"),
            "mode": "dev",
            "warning": "DEV MODE: logins go to a built-in fake WeChat; never use this in production",
        })
    } else {
        json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "commit": env!("BUILD_GIT_COMMIT"),
            "mode": "production",
        })
    };
    json(&body)
}

pub async fn readyz(state: &Arc<AppState>) -> Response {
    let ready = state
        .db
        .read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
        .await;
    match ready {
        // Set by the write that failed, cleared once the database's own probe, once a
        // second, finds room and commits (`Db::watch_writes`).
        Ok(_) if !state.db.takes_writes() => reply::with_status(
            json(&json!({
                "status": "unavailable",
                "reason": "the database cannot take writes (disk full or I/O error)",
            })),
            StatusCode::SERVICE_UNAVAILABLE,
        )
        .into_response(),
        Ok(_) => json(&json!({"status": "ready"})),
        Err(e) => {
            tracing::error!(error = %e, "readiness check failed");
            reply::with_status(
                json(&json!({"status": "unavailable", "reason": "the database is not answering"})),
                StatusCode::SERVICE_UNAVAILABLE,
            )
            .into_response()
        }
    }
}

pub async fn metrics(state: &Arc<AppState>) -> Result<Response, ApiError> {
    let text = state
        .metrics
        .render(&state.db, state.clock.now())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cannot count rows for the metrics");
            ApiError::new(ErrorCode::Internal, "the metrics are not available")
        })?;
    Ok(reply::with_header(text, "content-type", crate::ops::metrics::CONTENT_TYPE).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    code: String,
    #[serde(default)]
    appid: Option<String>,
}

pub async fn login(
    state: &Arc<AppState>,
    client: Option<IpAddr>,
    body: RawBody,
) -> Result<Response, ApiError> {
    if let (Some(limiter), Some(ip)) = (&state.login_limiter, client) {
        limiter.check(ip).map_err(too_many)?;
    }
    let request: LoginRequest = body.required_json()?;
    login::validate_code(&request.code)?;
    let app = state.config.app(request.appid.as_deref()).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownApp,
            match &request.appid {
                Some(_) => "`appid` names no app configured on this server",
                None => "several apps are configured: send `appid` with the login",
            },
        )
    })?;
    if app.kind != AppKind::MiniProgram {
        return Err(ApiError::new(
            ErrorCode::UnknownApp,
            "`appid` names a web app; web apps log in through /v1/oauth/wechat/authorize",
        ));
    }
    let outcome = state
        .logins
        .login(app, &request.code)
        .await
        .map_err(ApiError::from);
    state
        .metrics
        .login(&app.appid, outcome.as_ref().err().map(|e| e.code.as_str()));
    Ok(token_response(state, &outcome?))
}

pub(super) fn token_response(state: &AppState, outcome: &LoginOutcome) -> Response {
    json(&TokenResponse::new(outcome, state.clock.now()))
}

pub async fn session(
    state: &Arc<AppState>,
    authorization: Option<String>,
) -> Result<Response, ApiError> {
    let auth = state
        .sessions
        .authenticate(authorization.as_deref())
        .await?;
    let body = auth.copy.session_info.get_or_init(|| {
        to_json(&SessionInfo {
            user: UserView::new(&auth.user, &auth.identity),
            session: (&*auth.session).into(),
        })
    });
    Ok(json_body(body.clone()))
}

pub async fn refresh(
    state: &Arc<AppState>,
    authorization: Option<String>,
) -> Result<Response, ApiError> {
    let auth = state
        .sessions
        .authenticate(authorization.as_deref())
        .await?;
    let session = state.sessions.refresh(&auth).await?;
    // Re-signing moves the token onto the active key, so refreshing clients follow a
    // key rotation without logging in again.
    let outcome = LoginOutcome {
        token: state.sessions.sign(&auth.secret),
        session,
        user: Arc::unwrap_or_clone(auth.user),
        identity: Arc::unwrap_or_clone(auth.identity),
        new_user: false,
    };
    Ok(token_response(state, &outcome))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogoutRequest {
    #[serde(default)]
    all: bool,
}

pub async fn logout(
    state: &Arc<AppState>,
    authorization: Option<String>,
    body: RawBody,
) -> Result<Response, ApiError> {
    let auth = state
        .sessions
        .authenticate(authorization.as_deref())
        .await?;
    let request: LogoutRequest = body.json()?.unwrap_or_default();
    state.sessions.logout(&auth, request.all).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn get_me(
    state: &Arc<AppState>,
    authorization: Option<String>,
) -> Result<Response, ApiError> {
    let auth = state
        .sessions
        .authenticate(authorization.as_deref())
        .await?;
    Ok(json(&UserView::new(&auth.user, &auth.identity)))
}

pub async fn patch_me(
    state: &Arc<AppState>,
    authorization: Option<String>,
    body: RawBody,
) -> Result<Response, ApiError> {
    let Authenticated { user, identity, .. } = state
        .sessions
        .authenticate(authorization.as_deref())
        .await?;
    if let Some(limiter) = &state.profile_limiter {
        limiter.check(user.id).map_err(too_many)?;
    }
    let patch = body.required_json()?;
    let updated = profile::update(&state.profiles, &user, &identity, patch).await?;
    Ok(json(&UserView::new(&updated, &identity)))
}

/// `rate_limited`, with `Retry-After` rounded up to whole seconds.
pub(super) fn too_many(wait: Duration) -> ApiError {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::new(
        ErrorCode::RateLimited,
        "too many requests; wait for the time in Retry-After and try again",
    )
    .retry_after(secs)
}
