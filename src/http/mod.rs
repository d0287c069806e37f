//! The HTTP API: routes (which path and method go where), the handlers behind them, and
//! the error shape they all answer with.

mod avatar_upload;
pub mod backend;
pub mod body;
pub mod console;
pub mod error;
mod filters;
mod handlers;
pub mod json;
mod jwt;
pub mod observe;
mod query;
pub mod ratelimit;
pub mod server;
pub mod state;
pub mod views;
mod web_login;
mod wechat;

use std::net::IpAddr;
use std::sync::Arc;

use warp::Filter;
use warp::reply::Response;

use body::{JSON_LIMIT, RawBody};
use filters::{authorization, client_ip, respond};
use state::AppState;

/// Every route of the server, with errors turned into the JSON shape.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static
{
    let trust_proxy = state.config.trust_proxy;
    let dev = state.config.dev;
    let metrics_listen = state.config.metrics_listen;
    let wechat = wechat::routes(Arc::clone(&state));
    // Only here when no separate console address is configured.
    let console_here = state.config.admin_listen.is_none();
    let console = warp::any()
        .and_then(move || async move {
            if console_here {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
        .and(console::routes(Arc::clone(&state)));
    let state = warp::any().map(move || Arc::clone(&state));
    let auth = authorization();

    // Load balancers probe with GET or HEAD.
    let get_or_head = || warp::get().or(warp::head()).unify();
    let healthz = warp::path!("healthz")
        .and(get_or_head())
        .and(state.clone())
        .map(|s: Arc<AppState>| handlers::healthz(&s));
    let readyz = warp::path!("readyz")
        .and(get_or_head())
        .and(state.clone())
        .then(|s: Arc<AppState>| async move { handlers::readyz(&s).await });
    let login = warp::path!("v1" / "login")
        .and(warp::post())
        .and(state.clone())
        .and(client_ip(trust_proxy))
        .and(body::limited(JSON_LIMIT))
        .then(
            |s: Arc<AppState>, ip: Option<IpAddr>, b: RawBody| async move {
                respond(handlers::login(&s, ip, b).await)
            },
        );
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
    // POST too: `wx.request` offers no PATCH, so a mini program can only update with POST.
    let patch_me = me
        .and(warp::patch().or(warp::post()).unify())
        .and(state.clone())
        .and(auth)
        .and(body::limited(JSON_LIMIT))
        .then(
            |s: Arc<AppState>, a: Option<String>, b: RawBody| async move {
                respond(handlers::patch_me(&s, a, b).await)
            },
        );
    // Only here when no separate metrics address is configured.
    let metrics_here = metrics_listen.is_none();
    let metrics = warp::path!("metrics")
        .and(warp::any().and_then(move || async move {
            if metrics_here {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        }))
        .untuple_one()
        .and(metrics_route(state.clone()));
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
    let access_jwt = warp::path!("v1" / "token")
        .and(warp::post())
        .and(state.clone())
        .and(auth)
        .then(
            |s: Arc<AppState>, a: Option<String>| async move { respond(jwt::token(&s, a).await) },
        );
    let jwks = warp::path!(".well-known" / "jwks.json")
        .and(get_or_head())
        .and(state.clone())
        .map(|s: Arc<AppState>| respond(jwt::jwks(&s)));
    let discovery = warp::path!(".well-known" / "openid-configuration")
        .and(get_or_head())
        .and(state.clone())
        .map(|s: Arc<AppState>| respond(jwt::discovery(&s)));
    let events = warp::path!("v1" / "events")
        .and(warp::get())
        .and(state.clone())
        .and(auth)
        .and(query::raw())
        .then(
            |s: Arc<AppState>, a: Option<String>, q: String| async move {
                respond(backend::events(&s, a, q).await)
            },
        );

    let access_token = warp::path!("v1" / "wechat" / "access-token")
        .and(warp::get())
        .and(state.clone())
        .and(auth)
        .and(query::raw())
        .then(
            |s: Arc<AppState>, a: Option<String>, q: String| async move {
                respond(backend::access_token(&s, a, q).await)
            },
        );
    let refresh_access_token = warp::path!("v1" / "wechat" / "access-token" / "refresh")
        .and(warp::post())
        .and(state.clone())
        .and(auth)
        .and(body::limited(JSON_LIMIT))
        .then(
            |s: Arc<AppState>, a: Option<String>, b: RawBody| async move {
                respond(backend::refresh_access_token(&s, a, b).await)
            },
        );
    let browser = || warp::cookie::optional::<String>(crate::domain::web_login::BROWSER_COOKIE);
    let authorize = warp::path!("v1" / "oauth" / "wechat" / "authorize")
        .and(get_or_head())
        .and(state.clone())
        .and(client_ip(trust_proxy))
        .and(query::raw())
        .and(browser())
        .then(
            |s: Arc<AppState>, ip: Option<IpAddr>, q: String, b: Option<String>| async move {
                respond(web_login::authorize(&s, ip, q, b).await)
            },
        );
    let callback = warp::path!("v1" / "oauth" / "wechat" / "callback")
        .and(get_or_head())
        .and(state.clone())
        .and(query::raw())
        .and(browser())
        .then(
            |s: Arc<AppState>, q: String, b: Option<String>| async move {
                respond(web_login::callback(&s, q, b).await)
            },
        );
    let oauth_token = warp::path!("v1" / "oauth" / "token")
        .and(warp::post())
        .and(state.clone())
        .and(client_ip(trust_proxy))
        .and(body::limited(JSON_LIMIT))
        .then(
            |s: Arc<AppState>, ip: Option<IpAddr>, b: RawBody| async move {
                respond(web_login::token(&s, ip, b).await)
            },
        );

    // Dev mode serves the H5 example, so that a web login can be tried in a browser at
    // once: the page is on this origin, which dev mode's web apps list.
    let example = warp::path!("dev" / "h5")
        .and(get_or_head())
        .and(warp::any().and_then(move || async move {
            if dev {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        }))
        .untuple_one()
        .map(|| {
            let mut response = Response::new(include_str!("../../examples/h5/index.html").into());
            let headers = response.headers_mut();
            headers.insert(
                warp::http::header::CONTENT_TYPE,
                warp::http::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            headers.insert(
                warp::http::header::CACHE_CONTROL,
                warp::http::HeaderValue::from_static("no-cache"),
            );
            response
        });

    // The routes a busy server answers most come first and unboxed. The rest sit behind
    // boxes: their handlers' futures are larger (a WeChat call, a body, a write), and
    // every request's future is as large as the largest route's. Each group is boxed on
    // its own too: the compiler's cost of proving a chain of `or`s `Send` and `Sync`
    // grows far faster than the chain, and a box ends the chain.
    let sessions = readyz
        .or(login)
        .unify()
        .or(refresh)
        .unify()
        .or(logout)
        .unify()
        .boxed();
    let profile = patch_me.or(wechat).unify().boxed();
    let backends = introspect
        .or(access_jwt)
        .unify()
        .or(jwks)
        .unify()
        .or(discovery)
        .unify()
        .or(events)
        .unify()
        .boxed();
    let wechat_tokens = access_token.or(refresh_access_token).unify().boxed();
    let web = authorize
        .or(callback)
        .unify()
        .or(oauth_token)
        .unify()
        .or(example)
        .unify()
        .boxed();
    let operators = metrics.or(console).unify().boxed();
    let rest = sessions
        .or(profile)
        .unify()
        .or(backends)
        .unify()
        .or(wechat_tokens)
        .unify()
        .or(web)
        .unify()
        .or(operators)
        .unify()
        .boxed();
    session
        .or(forward)
        .unify()
        .or(get_me)
        .unify()
        .or(healthz)
        .unify()
        .or(rest)
        .unify()
        .recover(error::recover)
        .unify()
}

/// The admin console alone, for the separate `admin_listen` address.
pub fn console_routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static
{
    console::routes(state).recover(error::recover).unify()
}

/// `GET /metrics` alone, for the separate `metrics_listen` address.
pub fn metrics_routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static
{
    warp::path!("metrics")
        .and(metrics_route(warp::any().map(move || Arc::clone(&state))))
        .recover(error::recover)
        .unify()
}

fn metrics_route(
    state: impl Filter<Extract = (Arc<AppState>,), Error = std::convert::Infallible>
    + Clone
    + Send
    + Sync
    + 'static,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    warp::get()
        .or(warp::head())
        .unify()
        .and(state)
        .then(|s: Arc<AppState>| async move { respond(handlers::metrics(&s).await) })
}
