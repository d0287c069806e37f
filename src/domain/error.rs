//! Why a rule of login, sessions or the profile said no. Each variant is a fact of the
//! domain; its text is the sentence a developer reads. How each is answered over HTTP
//! (status, code, `Retry-After`) is decided in one place, the HTTP edge.

use std::borrow::Cow;

use crate::clock::{UnixTime, rfc3339};
use crate::db::DbError;
use crate::wechat::client::WeChatError;

/// Why a domain operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is malformed, missing or out of range.
    #[error("{0}")]
    Invalid(Cow<'static, str>),
    /// The request names no configured app, or the user's app is no longer configured.
    #[error("{0}")]
    UnknownApp(&'static str),
    /// The token is missing, malformed, forged, or names no session.
    #[error("{0}")]
    InvalidToken(&'static str),
    /// The session's time is up.
    #[error("the session has expired; log in again")]
    Expired,
    /// The session was ended before its time.
    #[error("{}", .0.message())]
    Revoked(Revocation),
    /// The user is banned.
    #[error("this user is banned until {}{}", rfc3339(*.until), .reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Banned {
        until: UnixTime,
        reason: Option<String>,
    },
    /// A phone button's code that WeChat refused.
    #[error(
        "WeChat says the phone code is invalid or already used; ask the user to tap the button again"
    )]
    InvalidPhoneCode,
    /// The legacy `rawData` signature does not match.
    #[error("{0}")]
    InvalidSignature(&'static str),
    /// Encrypted data does not decrypt, or is not what was expected.
    #[error("{0}")]
    DecryptFailed(Cow<'static, str>),
    /// A web login's state is missing, forged, expired, used or not this browser's.
    #[error("{0}")]
    InvalidState(&'static str),
    /// A web login's `redirect_uri` is not one the app allows.
    #[error("{0}")]
    RedirectNotAllowed(String),
    /// WeChat answered for a snapshot page: the person must open the page in WeChat.
    #[error("WeChat opened this page as a snapshot (朋友圈快照页); open it in WeChat to log in")]
    SnapshotUser,
    /// A one-time web login code that is unknown or expired.
    #[error("{0}")]
    UnknownCode(&'static str),
    /// A valid credential without the right to this call.
    #[error("{0}")]
    Forbidden(String),
    /// The stored session_key is missing or stale.
    #[error("the WeChat session_key is missing or stale; call wx.login, log in again, then retry")]
    SessionKeyExpired,
    /// WeChat's content check rejected a nickname.
    #[error("WeChat's content check says this nickname is not allowed; choose another")]
    ContentRejected,
    /// WeChat's content check could not be asked and the policy is to refuse.
    #[error(
        "WeChat's content check is unavailable, so the nickname cannot be changed now; try again shortly"
    )]
    ContentCheckUnavailable,
    /// WeChat refused or failed a call.
    #[error(transparent)]
    WeChat(#[from] WeChatError),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] DbError),
    /// Something the server stored or ran is broken; nothing the client can fix.
    #[error("{0}")]
    Broken(Cow<'static, str>),
}

impl Error {
    /// `Invalid` with a message.
    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Error {
        Error::Invalid(message.into())
    }
}

/// Why a session was ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// The user logged out.
    Logout,
    /// An administrator revoked it.
    Admin,
    /// The user signed in on too many devices.
    Evicted,
    /// Ended, for a reason not recorded.
    Unknown,
}

impl Revocation {
    /// The reason `sessions.revoked_reason` records; none recorded is `Unknown`.
    pub fn from_stored(reason: Option<&str>) -> Revocation {
        match reason {
            Some("admin") => Revocation::Admin,
            Some("evicted") => Revocation::Evicted,
            Some(_) => Revocation::Logout,
            None => Revocation::Unknown,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Revocation::Evicted => {
                "the session was ended because the user signed in on too many devices; log in again"
            }
            Revocation::Admin => "the session was revoked by an administrator; log in again",
            Revocation::Logout => "the session was logged out; log in again",
            Revocation::Unknown => "the session was revoked; log in again",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ban_says_until_when_and_why() {
        let with_reason = Error::Banned {
            until: 0,
            reason: Some("spam".into()),
        };
        assert_eq!(
            with_reason.to_string(),
            "this user is banned until 1970-01-01T00:00:00Z: spam"
        );
        let without = Error::Banned {
            until: 0,
            reason: None,
        };
        assert_eq!(
            without.to_string(),
            "this user is banned until 1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn revocations_name_their_reason() {
        assert!(
            Error::Revoked(Revocation::from_stored(Some("evicted")))
                .to_string()
                .contains("too many devices")
        );
        assert_eq!(Revocation::from_stored(None), Revocation::Unknown);
    }
}
