//! Around every request: a request id (the client's `X-Request-Id` when it is sane,
//! else a new one), echoed in the response and carried by a tracing span so that every
//! log line of the request names it; and the request's route, status and time recorded
//! in the metrics.

use std::future::Future;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tracing::Instrument;
use warp::http::{HeaderName, HeaderValue, Request};
use warp::reply::Response;

use crate::keys::random;
use crate::ops::metrics::{self, Metrics, Route};

/// The header a request id comes in and goes back out in.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id accepted from a client.
const MAX_REQUEST_ID: usize = 128;

/// One request being observed: begun before the request goes to its handler, finished
/// with its response.
pub struct Observation {
    started: Instant,
    route: Route,
    id: HeaderValue,
    span: tracing::Span,
}

impl Observation {
    /// Notes the time, route and request id of `request`.
    pub fn begin<B>(request: &Request<B>) -> Observation {
        let route = metrics::route_of(request.uri().path());
        let id = request_id(request.headers().get(&REQUEST_ID));
        let span = tracing::info_span!(
            "request",
            request_id = %id.to_str().unwrap_or_default(),
            method = %request.method(),
            route = %route.label(),
        );
        Observation {
            started: Instant::now(),
            route,
            id,
            span,
        }
    }

    /// Runs `handling` (the request's handler) inside the request's span, then records
    /// the request in `metrics` and sets the request id on the response.
    pub async fn finish(
        self,
        handling: impl Future<Output = Response>,
        metrics: &Metrics,
    ) -> Response {
        let mut response = handling.instrument(self.span.clone()).await;
        let took = self.started.elapsed();
        let status = response.status().as_u16();
        self.span
            .in_scope(|| tracing::debug!(status, took_us = took.as_micros() as u64, "answered"));
        metrics.request(self.route, status, took);
        response.headers_mut().insert(REQUEST_ID, self.id);
        response
    }
}

/// The client's request id if it is short and made of characters safe in a log line
/// and a header; otherwise a new one.
fn request_id(given: Option<&HeaderValue>) -> HeaderValue {
    match given {
        Some(value) if is_sane(value.as_bytes()) => value.clone(),
        _ => generate(),
    }
}

fn is_sane(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(b))
}

/// A new id: a random per-process prefix and a counter, unique without asking the
/// operating system for randomness on every request.
fn generate() -> HeaderValue {
    static PREFIX: LazyLock<u32> = LazyLock::new(|| u32::from_le_bytes(random::bytes()));
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // 8 hex digits of prefix, then the counter's low 48 bits in 12, written in place
    // rather than through `format!`: this runs for nearly every request.
    let id = (u128::from(*PREFIX) << 48) | u128::from(n & 0xffff_ffff_ffff);
    let mut hex = [0u8; 20];
    for (i, digit) in hex.iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[((id >> (4 * (19 - i))) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&hex).expect("hex digits are a valid header")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_and_others_replaced() {
        let kept = HeaderValue::from_static("req-42_a.b:c/d+e=f@g");
        assert_eq!(request_id(Some(&kept)), kept);
        for bad in ["", "has space", "quote\"", "semi;colon"] {
            let value = HeaderValue::from_str(bad).unwrap();
            let id = request_id(Some(&value));
            assert_ne!(id, value, "{bad:?}");
            assert_eq!(id.len(), 20);
        }
        let long = HeaderValue::from_str(&"a".repeat(MAX_REQUEST_ID + 1)).unwrap();
        assert_ne!(request_id(Some(&long)), long);
        assert_ne!(request_id(None), request_id(None), "generated ids differ");
        let (a, b) = (generate(), generate());
        for id in [&a, &b] {
            assert_eq!(id.len(), 20);
            assert!(
                id.as_bytes()
                    .iter()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
        }
        assert_eq!(
            a.as_bytes()[..8],
            b.as_bytes()[..8],
            "one prefix per process"
        );
        let counter =
            |id: &HeaderValue| u64::from_str_radix(&id.to_str().unwrap()[8..], 16).unwrap();
        assert!(counter(&b) > counter(&a));
    }
}
