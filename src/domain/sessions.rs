//! Session rules: which token is accepted, when a session ends, how refresh slides its
//! expiry without passing its absolute maximum, and logout.

use std::sync::Arc;

use crate::app::AppState;
use crate::clock::{UnixTime, rfc3339, secs};
use crate::db::queries::{self, RevokeReason, SessionRow, UserRow};
use crate::domain::session_cache::{CopyState, Found};
use crate::http::error::{ApiError, ErrorCode};
use crate::keys::token::SessionSecret;
use crate::spread::spread;

/// The least time between two updates of a session's `last_seen_at`; keeps the hot path
/// from writing on every call.
const TOUCH_EVERY_SECS: i64 = 60;

/// Each session waits up to 2^this seconds longer than `TOUCH_EVERY_SECS`, by its id, so
/// that sessions stamped in the same second do not all come due in the same second
/// again, every minute, as one burst of writes to scattered pages.
const TOUCH_SPREAD_BITS: u32 = 6;

/// How long after its last stamp a session's `last_seen_at` is updated again: between
/// 60 and 123 seconds, the same for a session every time.
pub fn touch_interval(session_id: i64) -> i64 {
    TOUCH_EVERY_SECS + spread(session_id as u64, TOUCH_SPREAD_BITS) as i64
}

/// Whether a request at `now` should update the session's `last_seen_at`.
fn touch_due(session: &SessionRow, now: UnixTime) -> bool {
    now - session.last_seen_at >= touch_interval(session.id)
}

/// A request's verified identity.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub session: Arc<SessionRow>,
    pub user: Arc<UserRow>,
    /// What the requests served from the same copy in memory share.
    pub copy: Arc<CopyState>,
    /// The secret from the token, to sign a fresh token for the same session.
    pub secret: SessionSecret,
}

/// The expiry a session gets when created or refreshed at `now`.
pub fn sliding_expiry(now: UnixTime, ttl: i64, max_expires_at: UnixTime) -> UnixTime {
    now.saturating_add(ttl).min(max_expires_at)
}

/// Seconds from `now` until `at`, never negative.
pub fn seconds_until(at: UnixTime, now: UnixTime) -> i64 {
    (at - now).max(0)
}

/// Whether a session may be used at `now`, and if not, the error that says why.
pub fn check_live(session: &SessionRow, now: UnixTime) -> Result<(), ApiError> {
    if let Some(reason) = &session.revoked_reason {
        let why = match reason.as_str() {
            "evicted" => {
                "the session was ended because the user signed in on too many devices; log in again"
            }
            "admin" => "the session was revoked by an administrator; log in again",
            _ => "the session was logged out; log in again",
        };
        return Err(ApiError::new(ErrorCode::SessionRevoked, why));
    }
    if session.revoked_at.is_some() {
        return Err(ApiError::new(
            ErrorCode::SessionRevoked,
            "the session was revoked; log in again",
        ));
    }
    if now >= session.expires_at {
        return Err(ApiError::new(
            ErrorCode::TokenExpired,
            "the session has expired; log in again",
        ));
    }
    Ok(())
}

/// The `user_banned` error for `user`.
pub fn banned(user: &UserRow) -> ApiError {
    let mut message = format!(
        "this user is banned until {}",
        rfc3339(user.banned_until.unwrap_or_default())
    );
    if let Some(reason) = &user.ban_reason {
        message.push_str(": ");
        message.push_str(reason);
    }
    ApiError::new(ErrorCode::UserBanned, message)
}

/// Extracts the token from an `Authorization: Bearer` header value.
pub fn bearer_token(header: Option<&str>) -> Result<&str, ApiError> {
    let header = header.ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidToken,
            "missing `Authorization: Bearer <token>` header",
        )
    })?;
    match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() => {
            Ok(token.trim())
        }
        _ => Err(ApiError::new(
            ErrorCode::InvalidToken,
            "the Authorization header must be `Bearer <token>`",
        )),
    }
}

/// Verifies the bearer token and loads its live session and user.
pub async fn authenticate(
    state: &Arc<AppState>,
    authorization: Option<&str>,
) -> Result<Authenticated, ApiError> {
    authenticate_token(state, bearer_token(authorization)?).await
}

/// Verifies a token and loads its live session and user; for callers that receive the
/// token some other way than in the Authorization header (introspection).
pub async fn authenticate_token(
    state: &Arc<AppState>,
    token: &str,
) -> Result<Authenticated, ApiError> {
    let secret = state.keyring().verify(token).map_err(|e| {
        tracing::debug!(reason = %e, "token refused");
        ApiError::new(ErrorCode::InvalidToken, "the token is not valid")
    })?;
    let Found {
        session,
        user,
        copy,
    } = find_session(state, &secret).await?;
    let now = state.clock.now();
    check_live(&session, now)?;
    if user.is_banned(now) {
        return Err(banned(&user));
    }
    if touch_due(&session, now) && copy.claim_touch() {
        let id = session.id;
        state
            .db
            .write_detached(move |c| queries::touch_session(c, id, now));
    }
    Ok(Authenticated {
        session,
        user,
        copy,
        secret,
    })
}

/// The session `secret` names, with its user: the cached copy while the database holds
/// the same, else read (and cached).
async fn find_session(state: &AppState, secret: &SessionSecret) -> Result<Found, ApiError> {
    let hash = secret.hash();
    if let Some(found) = state.session_cache.get(&hash) {
        return Ok(found);
    }
    let ticket = state.session_cache.ticket();
    let key = secret.lookup_key();
    // Boxed so that the trip's state, needed only on a miss, does not enlarge the
    // future of every authenticated request.
    let found = Box::pin(state.db.read(move |c| queries::session_by_secret(c, &key))).await?;
    state.metrics.session_read();
    let Some((session, user)) = found else {
        return Err(ApiError::new(
            ErrorCode::InvalidToken,
            "the token names no known session",
        ));
    };
    let found = Found::new(session, user);
    state.session_cache.insert(hash, found.clone(), ticket);
    Ok(found)
}

/// Slides the session's expiry forward (never past its maximum age) and returns the
/// updated session.
pub async fn refresh(state: &Arc<AppState>, auth: &Authenticated) -> Result<SessionRow, ApiError> {
    let now = state.clock.now();
    let expires_at = sliding_expiry(
        now,
        secs(state.config.token_ttl),
        auth.session.max_expires_at,
    );
    let id = auth.session.id;
    state
        .db
        .write(move |c| queries::refresh_session(c, id, expires_at, now))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::SessionRevoked,
                "the session was revoked; log in again",
            )
        })
}

/// Revokes the current session, or all of the user's sessions.
pub async fn logout(
    state: &Arc<AppState>,
    auth: &Authenticated,
    all: bool,
) -> Result<(), ApiError> {
    let now = state.clock.now();
    let (session_id, user_id) = (auth.session.id, auth.user.id);
    state
        .db
        .write(move |c| {
            if all {
                queries::revoke_user_sessions(c, user_id, now, RevokeReason::Logout).map(drop)
            } else {
                queries::revoke_session(c, session_id, now, RevokeReason::Logout).map(drop)
            }
        })
        .await?;
    tracing::info!(user = %auth.user.public_id, all, "logout");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expires_at: UnixTime) -> SessionRow {
        SessionRow {
            id: 1,
            public_id: "s_1".into(),
            user_id: 1,
            created_at: 0,
            expires_at,
            max_expires_at: 1000,
            last_seen_at: 0,
            revoked_at: None,
            revoked_reason: None,
        }
    }

    #[test]
    fn expiry_slides_but_stops_at_the_maximum() {
        assert_eq!(sliding_expiry(100, 50, 1000), 150);
        assert_eq!(sliding_expiry(980, 50, 1000), 1000);
        assert_eq!(sliding_expiry(i64::MAX - 1, 50, i64::MAX), i64::MAX);
    }

    #[test]
    fn liveness_names_the_reason() {
        assert!(check_live(&session(100), 99).is_ok());
        assert_eq!(
            check_live(&session(100), 100).unwrap_err().code,
            ErrorCode::TokenExpired
        );
        let mut revoked = session(100);
        revoked.revoked_at = Some(5);
        revoked.revoked_reason = Some("evicted".into());
        let err = check_live(&revoked, 10).unwrap_err();
        assert_eq!(err.code, ErrorCode::SessionRevoked);
        assert!(err.message.contains("too many devices"));
    }

    #[test]
    fn touches_come_due_between_one_and_two_minutes_by_session() {
        let seen_at_zero = |id| SessionRow {
            id,
            ..session(10_000)
        };
        for id in [1, 2, 60, 12_345, i64::MAX] {
            let interval = touch_interval(id);
            assert!((60..124).contains(&interval), "session {id}: {interval}");
            assert!(!touch_due(&seen_at_zero(id), interval - 1), "session {id}");
            assert!(touch_due(&seen_at_zero(id), interval), "session {id}");
        }
        // Consecutive sessions, and sessions every thousandth (as the benchmark's are),
        // come due in many different seconds.
        fn seconds(ids: impl Iterator<Item = i64>) -> usize {
            ids.map(touch_interval)
                .collect::<std::collections::HashSet<_>>()
                .len()
        }
        assert!(seconds(1..=64) >= 50);
        assert_eq!(seconds((0..1000).map(|k| 1 + 1000 * k)), 64);
    }

    #[test]
    fn bearer_headers_are_parsed_strictly() {
        assert_eq!(bearer_token(Some("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(Some("bearer abc")).unwrap(), "abc");
        for bad in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("Basic abc"),
        ] {
            assert_eq!(
                bearer_token(bad).unwrap_err().code,
                ErrorCode::InvalidToken,
                "{bad:?}"
            );
        }
    }
}
