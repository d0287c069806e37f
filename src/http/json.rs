//! JSON answers, serialized in one go into a buffer sized for wxauth's answers, rather
//! than into one that grows (and is copied) several times per request.

use bytes::Bytes;
use serde::Serialize;
use warp::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use warp::reply::Response;

/// Large enough for a session with its user, the largest answer on the hot paths.
const INITIAL_CAPACITY: usize = 768;

/// A 200 answer carrying `value` as JSON.
pub fn json(value: &impl Serialize) -> Response {
    json_body(to_json(value))
}

/// `value` serialized as JSON, for an answer that is made once and sent many times.
pub fn to_json(value: &impl Serialize) -> Bytes {
    let mut body = Vec::with_capacity(INITIAL_CAPACITY);
    // Serializing wxauth's own types into memory cannot fail: no map has non-string keys.
    serde_json::to_writer(&mut body, value).expect("answers serialize to JSON");
    body.into()
}

/// A 200 answer carrying `body`, which is JSON.
pub fn json_body(body: Bytes) -> Response {
    let mut response = Response::new(body.into());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `response` marked never to be stored by a cache: it carries a secret or says who is
/// calling, which must never be served to another caller.
pub fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_json_with_their_content_type() {
        let response = json(&serde_json::json!({"name": "小明 🌸", "n": 1}));
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert!(response.headers().get(CACHE_CONTROL).is_none());
        assert_eq!(no_store(response).headers()[CACHE_CONTROL], "no-store");
    }
}
