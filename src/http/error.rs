//! The one error shape every response uses:
//! `{"error": {"code": "snake_case", "message": "..."}}`, with the status, `Retry-After`
//! and `WWW-Authenticate` headers that go with each code.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;

use serde::Serialize;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::{Reply, Response};

use crate::db::DbError;
use crate::domain::Error;
use crate::wechat::client::WeChatError;

/// The stable error codes of the API (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidCode,
    UnknownApp,
    InvalidToken,
    TokenExpired,
    SessionRevoked,
    LoginBlocked,
    UserBanned,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    InvalidSignature,
    DecryptFailed,
    SessionKeyExpired,
    ContentRejected,
    RateLimited,
    UpstreamError,
    UpstreamUnavailable,
    StorageUnavailable,
    InvalidState,
    RedirectNotAllowed,
    SnapshotUser,
    Internal,
}

impl ErrorCode {
    /// The code as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidCode => "invalid_code",
            ErrorCode::UnknownApp => "unknown_app",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::SessionRevoked => "session_revoked",
            ErrorCode::LoginBlocked => "login_blocked",
            ErrorCode::UserBanned => "user_banned",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::DecryptFailed => "decrypt_failed",
            ErrorCode::SessionKeyExpired => "session_key_expired",
            ErrorCode::ContentRejected => "content_rejected",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::InvalidState => "invalid_state",
            ErrorCode::RedirectNotAllowed => "redirect_not_allowed",
            ErrorCode::SnapshotUser => "snapshot_user",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status the code is sent with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidRequest
            | ErrorCode::InvalidCode
            | ErrorCode::UnknownApp
            | ErrorCode::InvalidState
            | ErrorCode::RedirectNotAllowed => StatusCode::BAD_REQUEST,
            ErrorCode::InvalidToken | ErrorCode::TokenExpired | ErrorCode::SessionRevoked => {
                StatusCode::UNAUTHORIZED
            }
            ErrorCode::LoginBlocked
            | ErrorCode::UserBanned
            | ErrorCode::Forbidden
            | ErrorCode::SnapshotUser => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::InvalidSignature
            | ErrorCode::DecryptFailed
            | ErrorCode::SessionKeyExpired
            | ErrorCode::ContentRejected => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::UpstreamError => StatusCode::BAD_GATEWAY,
            ErrorCode::UpstreamUnavailable | ErrorCode::StorageUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// How long a client is asked to wait after `storage_unavailable`: long enough not to
/// hammer a server whose disk is full, short enough to notice one that recovered.
const STORAGE_RETRY_AFTER_SECS: u64 = 5;

/// An error answer: a code, a sentence for the developer, and optionally how long to
/// wait before retrying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a fixed or formatted message.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Adds a `Retry-After` (seconds).
    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// `invalid_request` with a message.
    pub fn invalid(message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(ErrorCode::InvalidRequest, message)
    }

    /// `internal`, after logging the cause; the client learns nothing more.
    pub fn internal(cause: &dyn std::error::Error) -> ApiError {
        let mut chain = cause.to_string();
        let mut source = cause.source();
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(error = %chain, "internal error");
        ApiError::new(
            ErrorCode::Internal,
            "the server failed to handle the request; it has been logged",
        )
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'static str,
    message: &'a str,
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Body {
            error: Inner {
                code: self.code.as_str(),
                message: &self.message,
            },
        })
        .expect("error body serializes");
        let mut response = Response::new(body.into());
        *response.status_mut() = self.code.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.code.status() == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The one place a domain error becomes an answer: its status, code and headers. The
/// message is the error's own sentence, except for failures of the server itself, which
/// are logged whole and answered `internal`.
impl From<&Error> for ApiError {
    fn from(e: &Error) -> ApiError {
        let code = match e {
            Error::Invalid(_) => ErrorCode::InvalidRequest,
            Error::UnknownApp(_) => ErrorCode::UnknownApp,
            Error::InvalidToken(_) => ErrorCode::InvalidToken,
            Error::Expired => ErrorCode::TokenExpired,
            Error::Revoked(_) => ErrorCode::SessionRevoked,
            Error::Banned { .. } => ErrorCode::UserBanned,
            Error::InvalidPhoneCode => ErrorCode::InvalidCode,
            Error::InvalidSignature(_) => ErrorCode::InvalidSignature,
            Error::DecryptFailed(_) => ErrorCode::DecryptFailed,
            Error::SessionKeyExpired => ErrorCode::SessionKeyExpired,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::InvalidState(_) => ErrorCode::InvalidState,
            Error::RedirectNotAllowed(_) => ErrorCode::RedirectNotAllowed,
            Error::SnapshotUser => ErrorCode::SnapshotUser,
            Error::UnknownCode(_) => ErrorCode::InvalidCode,
            Error::ContentRejected => ErrorCode::ContentRejected,
            Error::ContentCheckUnavailable => {
                return ApiError::new(ErrorCode::UpstreamUnavailable, e.to_string()).retry_after(5);
            }
            Error::WeChat(e) => return wechat_error(e),
            // Logged once per episode by the writer, not once per request.
            Error::Storage(e) if e.storage_unavailable() => {
                return ApiError::new(
                    ErrorCode::StorageUnavailable,
                    "the server cannot store changes now (disk full or I/O error), so \
                     nothing was changed; try again shortly",
                )
                .retry_after(STORAGE_RETRY_AFTER_SECS);
            }
            Error::Storage(_) | Error::Broken(_) => return ApiError::internal(e),
        };
        ApiError::new(code, e.to_string())
    }
}

/// How WeChat's refusals and failures are answered.
fn wechat_error(e: &WeChatError) -> ApiError {
    match e {
        WeChatError::InvalidCode(_) => ApiError::new(
            ErrorCode::InvalidCode,
            "WeChat says the code is invalid or already used; call wx.login again for a new code",
        ),
        WeChatError::LoginBlocked => ApiError::new(
            ErrorCode::LoginBlocked,
            "WeChat blocked this user's login (errcode 40226)",
        ),
        WeChatError::RateLimited => ApiError::new(
            ErrorCode::RateLimited,
            "WeChat's rate limit for this user was reached (errcode 45011); try again in a minute",
        )
        .retry_after(60),
        WeChatError::AccessTokenRejected(_) => ApiError::new(
            ErrorCode::UpstreamError,
            "WeChat refused the server's access_token even after a refresh; check the AppID and AppSecret",
        ),
        WeChatError::Unusable(_) => ApiError::new(
            ErrorCode::UpstreamError,
            "WeChat answered with an error or an unusable response; check the AppID and AppSecret",
        ),
        WeChatError::Unavailable(_) => ApiError::new(
            ErrorCode::UpstreamUnavailable,
            "WeChat did not answer in time; try again shortly",
        )
        .retry_after(5),
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        ApiError::from(&e)
    }
}

impl From<Arc<Error>> for ApiError {
    fn from(e: Arc<Error>) -> ApiError {
        ApiError::from(&*e)
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> ApiError {
        ApiError::from(Error::Storage(e))
    }
}

/// Turns a routing rejection (no route, wrong method, bad body) into the JSON error shape.
pub async fn recover(rejection: warp::Rejection) -> Result<Response, Infallible> {
    let error = if let Some(e) = rejection.find::<ApiError>() {
        e.clone()
    } else if rejection.is_not_found() {
        ApiError::new(ErrorCode::NotFound, "no such route")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            ErrorCode::MethodNotAllowed,
            "this route does not accept that method",
        )
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
    } else if rejection
        .find::<warp::reject::UnsupportedMediaType>()
        .is_some()
    {
        ApiError::new(ErrorCode::UnsupportedMediaType, "unsupported content type")
    } else if rejection.find::<warp::reject::InvalidHeader>().is_some()
        || rejection.find::<warp::reject::InvalidQuery>().is_some()
    {
        ApiError::invalid("a header or the query string is malformed")
    } else {
        tracing::debug!(?rejection, "unhandled rejection");
        ApiError::invalid("the request could not be understood")
    };
    Ok(error.into_response())
}

impl warp::reject::Reject for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_errors_carry_the_bearer_challenge() {
        let r = ApiError::new(ErrorCode::TokenExpired, "x").into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
        let r = ApiError::from(Error::WeChat(WeChatError::Unavailable("t".into()))).into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
    }

    #[test]
    fn a_storage_failure_is_unavailable_and_any_other_db_failure_internal() {
        let full = DbError::Unavailable("database or disk is full".into());
        let e = ApiError::from(full);
        assert_eq!(e.code, ErrorCode::StorageUnavailable);
        assert!(
            !e.message.contains("disk is full"),
            "no internals: {}",
            e.message
        );
        let r = e.into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
        assert_eq!(
            ApiError::from(DbError::NotCommitted).code,
            ErrorCode::Internal
        );
    }
}
