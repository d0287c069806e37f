//! The routes that reach beyond login into WeChat's data: the phone number and the
//! legacy profile payload.

use std::sync::Arc;

use warp::Filter;
use warp::reply::{self, Reply, Response};

use super::body::{self, JSON_LIMIT, RawBody};
use super::error::ApiError;
use super::handlers::too_many;
use super::views::UserView;
use crate::app::AppState;
use crate::phone;
use crate::sessions::{self, Authenticated};
use crate::wechat_profile;

/// `POST /v1/me/phone` and `POST /v1/me/wechat-profile`.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    let state = warp::any().map(move || Arc::clone(&state));
    let auth = super::authorization();

    let phone = warp::path!("v1" / "me" / "phone")
        .and(warp::post())
        .and(state.clone())
        .and(auth)
        .and(body::limited(JSON_LIMIT))
        .then(
            |s: Arc<AppState>, a: Option<String>, b: RawBody| async move {
                super::respond(bind_phone(&s, a, b).await)
            },
        );
    let profile = warp::path!("v1" / "me" / "wechat-profile")
        .and(warp::post())
        .and(state.clone())
        .and(auth)
        .and(body::limited(JSON_LIMIT))
        .then(
            |s: Arc<AppState>, a: Option<String>, b: RawBody| async move {
                super::respond(wechat_profile(&s, a, b).await)
            },
        );
    phone.or(profile).unify()
}

/// The signed-in user, within the per-user limit on profile writes.
async fn profile_writer(
    state: &Arc<AppState>,
    authorization: Option<String>,
) -> Result<Authenticated, ApiError> {
    let auth = sessions::authenticate(state, authorization.as_deref()).await?;
    if let Some(limiter) = &state.profile_limiter {
        limiter.check(auth.user.id).map_err(too_many)?;
    }
    Ok(auth)
}

async fn bind_phone(
    state: &Arc<AppState>,
    authorization: Option<String>,
    body: RawBody,
) -> Result<Response, ApiError> {
    let auth = profile_writer(state, authorization).await?;
    let request = body.required_json()?;
    let phone = phone::bind(state, &auth.user, request).await?;
    Ok(reply::json(&phone).into_response())
}

async fn wechat_profile(
    state: &Arc<AppState>,
    authorization: Option<String>,
    body: RawBody,
) -> Result<Response, ApiError> {
    let auth = profile_writer(state, authorization).await?;
    let request = body.required_json()?;
    let user = wechat_profile::apply(state, &auth.user, request).await?;
    Ok(reply::json(&UserView::from(&user)).into_response())
}
