//! The warp filters the routes share: the `Authorization` header, the client's address,
//! and sending a handler's result.

use std::net::IpAddr;

use warp::Filter;
use warp::reply::{Reply, Response};

use super::error::ApiError;
use super::server;

/// The `Authorization` header, if any. A value that is not text is passed on as an
/// empty one, so it fails as a malformed token (401) rather than a bad request.
pub(super) fn authorization()
-> impl Filter<Extract = (Option<String>,), Error = std::convert::Infallible>
+ Copy
+ Send
+ Sync
+ 'static {
    warp::header::value("authorization")
        .map(|v: warp::http::HeaderValue| Some(v.to_str().unwrap_or_default().to_owned()))
        .or(warp::any().map(|| None))
        .unify()
}

/// The client's address: the connection's peer, or with `trust_proxy` the address the
/// proxy appended last to `X-Forwarded-For` (earlier entries are the client's own claims).
pub(super) fn client_ip(
    trust_proxy: bool,
) -> impl Filter<Extract = (Option<IpAddr>,), Error = warp::Rejection> + Clone + Send + Sync + 'static
{
    warp::header::optional::<String>("x-forwarded-for").map(move |forwarded: Option<String>| {
        let peer = server::peer_addr().map(|p| p.ip());
        if !trust_proxy {
            return peer;
        }
        forwarded.as_deref().and_then(last_forwarded).or(peer)
    })
}

fn last_forwarded(header: &str) -> Option<IpAddr> {
    header.rsplit(',').next()?.trim().parse().ok()
}

/// Sends a handler's result, success or error.
pub(super) fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(Reply::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxy_appended_address_is_the_last_one() {
        assert_eq!(
            last_forwarded("6.6.6.6, 10.0.0.7"),
            Some("10.0.0.7".parse().unwrap())
        );
        assert_eq!(
            last_forwarded("2001:db8::1"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(last_forwarded("garbage"), None);
    }
}
