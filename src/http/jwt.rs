//! Access JWTs for the team's backend: `POST /v1/token` issues one for a session, and the
//! two well-known documents let a resource server find the keys that verify it.

use std::sync::Arc;

use serde::Serialize;
use warp::http::{HeaderValue, header};
use warp::reply::Response;

use super::error::{ApiError, ErrorCode};
use super::json::{json, no_store};
use super::state::AppState;
use crate::domain::access_jwts::AccessJwts;

/// How long a verifier or a cache in between may keep the JWKS. A rotation brings in a
/// key published since the rotation before, so a copy this old already holds it.
const JWKS_CACHE: HeaderValue = HeaderValue::from_static("public, max-age=300");

/// The answer of `POST /v1/token`.
#[derive(Serialize)]
struct TokenAnswer {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
}

/// The JWT service, or 404 naming the setting it needs.
fn access_jwts(state: &AppState) -> Result<&AccessJwts, ApiError> {
    state.access_jwts.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "access JWTs need `public_url`, their issuer: set it to the address wxauth is \
             reached at, e.g. https://auth.example.com",
        )
    })
}

/// `POST /v1/token`: a JWT for the caller's live session. Revoked and expired sessions
/// and banned users get the 401 and 403 every authenticated route gives.
pub async fn token(
    state: &Arc<AppState>,
    authorization: Option<String>,
) -> Result<Response, ApiError> {
    let jwts = access_jwts(state)?;
    let auth = state
        .sessions
        .authenticate(authorization.as_deref())
        .await?;
    let jwt = jwts.issue(&auth);
    Ok(no_store(json(&TokenAnswer {
        access_token: jwt.token,
        token_type: "Bearer",
        expires_in: jwt.expires_in,
    })))
}

/// `GET /.well-known/jwks.json`.
pub fn jwks(state: &AppState) -> Result<Response, ApiError> {
    let keys = access_jwts(state)?.jwks();
    let mut response = json(&serde_json::json!({ "keys": keys }));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, JWKS_CACHE);
    Ok(response)
}

/// `GET /.well-known/openid-configuration`.
pub fn discovery(state: &AppState) -> Result<Response, ApiError> {
    let mut response = json(&access_jwts(state)?.discovery());
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, JWKS_CACHE);
    Ok(response)
}
