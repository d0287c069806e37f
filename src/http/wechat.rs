//! The routes that reach beyond login into WeChat's data: the phone number, the legacy
//! profile payload and the avatar upload, plus serving uploaded avatars.

use std::sync::Arc;

use warp::Filter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::{Reply, Response};

use super::avatar_upload;
use super::body::{self, JSON_LIMIT, RawBody};
use super::error::{ApiError, ErrorCode};
use super::filters::{authorization, respond};
use super::handlers::too_many;
use super::json::json;
use super::state::AppState;
use super::views::UserView;
use crate::domain::avatars;
use crate::domain::phone;
use crate::domain::sessions::Authenticated;
use crate::domain::wechat_profile;

/// `POST /v1/me/phone`, `POST /v1/me/wechat-profile`, `PUT` (or `POST`) `/v1/me/avatar`
/// and `GET /v1/avatars/<id>`.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    let avatar_limit = state.config.avatar_max_bytes;
    let state = warp::any().map(move || Arc::clone(&state));
    let auth = authorization();

    let phone = warp::path!("v1" / "me" / "phone")
        .and(warp::post())
        .and(state.clone())
        .and(auth)
        .and(body::limited(JSON_LIMIT))
        .then(
            |s: Arc<AppState>, a: Option<String>, b: RawBody| async move {
                respond(bind_phone(&s, a, b).await)
            },
        );
    let profile = warp::path!("v1" / "me" / "wechat-profile")
        .and(warp::post())
        .and(state.clone())
        .and(auth)
        .and(body::limited(JSON_LIMIT))
        .then(
            |s: Arc<AppState>, a: Option<String>, b: RawBody| async move {
                respond(wechat_profile(&s, a, b).await)
            },
        );
    // POST too: `wx.uploadFile`, which the mini program uploads with, can only POST.
    // The caller is checked before a body of up to megabytes is read.
    let upload = warp::path!("v1" / "me" / "avatar")
        .and(warp::put().or(warp::post()).unify())
        .and(state.clone())
        .and(auth)
        .and_then(|s: Arc<AppState>, a: Option<String>| async move {
            profile_writer(&s, a)
                .await
                .map(|auth| (s, auth))
                .map_err(warp::reject::custom)
        })
        .untuple_one()
        .and(body::upload(avatar_limit))
        .then(
            move |s: Arc<AppState>, auth: Authenticated, b: RawBody| async move {
                respond(upload_avatar(&s, &auth, b, avatar_limit).await)
            },
        );
    let serve = warp::path!("v1" / "avatars" / String)
        .and(warp::get())
        .and(state)
        .and(warp::header::optional::<String>("if-none-match"))
        .then(
            |id: String, s: Arc<AppState>, inm: Option<String>| async move {
                respond(serve_avatar(&s, id, inm).await)
            },
        );
    phone
        .or(profile)
        .unify()
        .or(upload)
        .unify()
        .or(serve)
        .unify()
}

/// The signed-in user, within the per-user limit on profile writes.
async fn profile_writer(
    state: &Arc<AppState>,
    authorization: Option<String>,
) -> Result<Authenticated, ApiError> {
    let auth = state
        .sessions
        .authenticate(authorization.as_deref())
        .await?;
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
    let phone = phone::bind(&state.profiles, &auth.user, &auth.identity, request).await?;
    Ok(json(&phone))
}

async fn wechat_profile(
    state: &Arc<AppState>,
    authorization: Option<String>,
    body: RawBody,
) -> Result<Response, ApiError> {
    let auth = profile_writer(state, authorization).await?;
    let request = body.required_json()?;
    let user = wechat_profile::apply(&state.profiles, &auth.user, &auth.identity, request).await?;
    Ok(json(&UserView::new(&user, &auth.identity)))
}

async fn upload_avatar(
    state: &Arc<AppState>,
    auth: &Authenticated,
    body: RawBody,
    limit: u64,
) -> Result<Response, ApiError> {
    let (image, kind) = avatar_upload::extract(body, limit).await?;
    let user = avatars::save(&state.profiles, &auth.user, image, kind).await?;
    Ok(json(&UserView::new(&user, &auth.identity)))
}

async fn serve_avatar(
    state: &Arc<AppState>,
    id: String,
    if_none_match: Option<String>,
) -> Result<Response, ApiError> {
    let avatar = avatars::load(&state.db, id, if_none_match)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such avatar"))?;
    let etag = format!("\"{}\"", avatar.sha256);
    let mut response = match avatar.bytes {
        Some(bytes) => {
            let mut response = Response::new(bytes.into());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(&avatar.content_type).map_err(|e| ApiError::internal(&e))?,
            );
            response
        }
        None => StatusCode::NOT_MODIFIED.into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).map_err(|e| ApiError::internal(&e))?,
    );
    // An id names one image forever (a new upload gets a new id), so caches may keep it.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}
