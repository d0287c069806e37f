//! Request bodies: read with a size limit (checked against `Content-Length` up front and
//! again while reading, so a lying or chunked client cannot push past it), then parsed
//! as JSON with errors a developer can act on.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use warp::Filter;

use super::error::{ApiError, ErrorCode};

/// The largest JSON body any route accepts.
pub const JSON_LIMIT: u64 = 16 * 1024;

/// Room allowed beyond an upload's file for multipart framing: boundaries, part headers
/// and the small text fields `wx.uploadFile` may add.
pub const MULTIPART_OVERHEAD: u64 = 16 * 1024;

/// A request body and its declared type.
#[derive(Debug)]
pub struct RawBody {
    pub content_type: Option<String>,
    pub bytes: Bytes,
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("the request body is larger than this route's limit of {limit} bytes"),
    )
}

/// Extracts the body, refusing anything over `limit` bytes with `payload_too_large`.
pub fn limited(
    limit: u64,
) -> impl Filter<Extract = (RawBody,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    read_with_limit(move |_| limit)
}

/// Extracts an upload of at most `limit` bytes: the body itself, or with
/// [`MULTIPART_OVERHEAD`] more when it is `multipart/form-data` (whose file part the
/// handler then holds to `limit`).
pub fn upload(
    limit: u64,
) -> impl Filter<Extract = (RawBody,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    read_with_limit(move |content_type| {
        if content_type.is_some_and(is_multipart) {
            limit.saturating_add(MULTIPART_OVERHEAD)
        } else {
            limit
        }
    })
}

fn read_with_limit(
    limit_for: impl Fn(Option<&str>) -> u64 + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (RawBody,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    warp::header::optional::<u64>("content-length")
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::body::stream())
        .and_then(
            move |length: Option<u64>, content_type: Option<String>, stream| {
                let limit = limit_for(content_type.as_deref());
                async move {
                    if length.is_some_and(|n| n > limit) {
                        return Err(warp::reject::custom(too_large(limit)));
                    }
                    let bytes = collect(stream, limit).await.map_err(warp::reject::custom)?;
                    Ok(RawBody {
                        content_type,
                        bytes,
                    })
                }
            },
        )
}

async fn collect<S, B>(stream: S, limit: u64) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut stream = std::pin::pin!(stream);
    let mut out = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::invalid("the request body could not be read"))?;
        if (out.len() + chunk.remaining()) as u64 > limit {
            return Err(too_large(limit));
        }
        out.put(chunk);
    }
    Ok(out.freeze())
}

/// Whether a Content-Type names JSON (`application/json`, any parameters).
fn is_json(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether a Content-Type names `multipart/form-data`.
pub fn is_multipart(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("multipart/form-data"))
}

impl RawBody {
    /// Parses the body as a JSON object into `T`; `None` when the body is empty.
    pub fn json<T: DeserializeOwned>(&self) -> Result<Option<T>, ApiError> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        if !self.content_type.as_deref().is_some_and(is_json) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        // Every body of this API is an object; serde would otherwise also fill a struct
        // from an array.
        let first = self.bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return Err(ApiError::invalid("the body must be a JSON object"));
        }
        serde_json::from_slice(&self.bytes)
            .map(Some)
            .map_err(|e| ApiError::invalid(format!("the JSON body is not valid: {e}")))
    }

    /// Parses a JSON body that must be present.
    pub fn required_json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        self.json()?
            .ok_or_else(|| ApiError::invalid("a JSON body is required"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonx"));
        assert!(is_multipart("multipart/form-data; boundary=x"));
        assert!(!is_multipart("multipart/mixed; boundary=x"));
    }
}
