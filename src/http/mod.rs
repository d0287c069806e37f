//! The HTTP API: routes (which path and method go where), the handlers behind them, and
//! the error shape they all answer with.

pub mod backend;
pub mod body;
pub mod error;
mod handlers;
pub mod views;

use std::sync::Arc;

use warp::Filter;
use warp::reply::{Reply, Response};

use crate::app::AppState;
use body::{JSON_LIMIT, RawBody};
use error::ApiError;

/// Every route of the server, with errors turned into the JSON shape.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static
{
    let state = warp::any().map(move || Arc::clone(&state));
    let auth = warp::header::optional::<String>("authorization");

    let healthz = warp::path!("healthz")
        .and(warp::get())
        .and(state.clone())
        .map(|s: Arc<AppState>| handlers::healthz(&s));
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(state.clone())
        .then(|s: Arc<AppState>| async move { respond(handlers::readyz(&s).await) });
    let login = warp::path!("v1" / "login")
        .and(warp::post())
        .and(state.clone())
        .and(body::limited(JSON_LIMIT))
        .then(|s: Arc<AppState>, b: RawBody| async move { respond(handlers::login(&s, b).await) });
    let session = warp::path!("v1" / "session")
        .and(warp::get())
        .and(state.clone())
        .and(auth)
        .then(|s: Arc<AppState>, a: Option<String>| async move {
            respond(handlers::session(&s, a).await)
        });
    let refresh = warp::path!("v1" / "session" / "refresh")
        .and(warp::post())
        .and(state.clone())
        .and(auth)
        .then(|s: Arc<AppState>, a: Option<String>| async move {
            respond(handlers::refresh(&s, a).await)
        });
    let logout = warp::path!("v1" / "logout")
        .and(warp::post())
        .and(state.clone())
        .and(auth)
        .and(body::limited(JSON_LIMIT))
        .then(
            |s: Arc<AppState>, a: Option<String>, b: RawBody| async move {
                respond(handlers::logout(&s, a, b).await)
            },
        );
    let me = warp::path!("v1" / "me");
    let get_me = me.and(warp::get()).and(state.clone()).and(auth).then(
        |s: Arc<AppState>, a: Option<String>| async move { respond(handlers::get_me(&s, a).await) },
    );
    let patch_me = me
        .and(warp::patch())
        .and(state.clone())
        .and(auth)
        .and(body::limited(JSON_LIMIT))
        .then(
            |s: Arc<AppState>, a: Option<String>, b: RawBody| async move {
                respond(handlers::patch_me(&s, a, b).await)
            },
        );
    // Any method: a proxy's auth subrequest may carry the method of the original request.
    let forward = warp::path!("v1" / "auth" / "forward")
        .and(state.clone())
        .and(auth)
        .then(|s: Arc<AppState>, a: Option<String>| async move {
            respond(backend::forward(&s, a).await)
        });
    let introspect = warp::path!("v1" / "introspect")
        .and(warp::post())
        .and(state.clone())
        .and(auth)
        .and(body::limited(JSON_LIMIT))
        .then(
            |s: Arc<AppState>, a: Option<String>, b: RawBody| async move {
                respond(backend::introspect(&s, a, b).await)
            },
        );

    healthz
        .or(readyz)
        .unify()
        .or(login)
        .unify()
        .or(session)
        .unify()
        .or(refresh)
        .unify()
        .or(logout)
        .unify()
        .or(get_me)
        .unify()
        .or(patch_me)
        .unify()
        .or(forward)
        .unify()
        .or(introspect)
        .unify()
        .recover(error::recover)
        .unify()
}

/// Sends a handler's result, success or error.
fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(Reply::into_response)
}
