//! The admin console: server-rendered pages under `/admin/` for the people who run the
//! service. Plain HTML forms with a little script, every asset embedded in the binary.

mod chart;
pub mod guard;
mod pages;
mod text;

use std::net::IpAddr;
use std::sync::Arc;

use warp::Filter;
use warp::http::{HeaderMap, Method};
use warp::path::FullPath;
use warp::reply::Response;

use pages::Request;

use super::body::{self, RawBody};
use super::filters::client_ip;
use super::query;
use super::state::AppState;

/// Where a setup link leads: a form to choose a password.
pub const SETUP_PATH: &str = "/admin/setup";
/// Where `serve --dev`'s sign-in link leads.
pub const LINK_PATH: &str = "/admin/link";

/// The largest form the console accepts.
const FORM_LIMIT: u64 = 16 * 1024;

/// Every console route: `/admin` and everything under it.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    let trust_proxy = state.config.trust_proxy;
    warp::path("admin")
        .and(warp::path::full())
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(query::raw())
        .and(client_ip(trust_proxy))
        .and(body::limited(FORM_LIMIT))
        .then(
            move |full: FullPath,
                  method: Method,
                  headers: HeaderMap,
                  query: String,
                  ip: Option<IpAddr>,
                  body: RawBody| {
                let state = Arc::clone(&state);
                async move {
                    let path = full.as_str();
                    let rest = path.strip_prefix("/admin").unwrap_or_default();
                    let request = Request {
                        method,
                        segments: rest
                            .trim_start_matches('/')
                            .split('/')
                            .map(str::to_owned)
                            .collect(),
                        bare: rest.is_empty(),
                        query,
                        headers,
                        ip,
                        body,
                    };
                    guard::harden(pages::handle(&state, request).await)
                }
            },
        )
}
