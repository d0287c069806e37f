//! Session rules: which token is accepted, when a session ends, how refresh slides its
//! expiry without passing its absolute maximum, and logout.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

use crate::clock::{Clock, UnixTime};
use crate::db::Db;
use crate::db::queries::{self, IdentityRow, RevokeReason, SessionRow, UserRow};
use crate::domain::error::{Error, Revocation};
use crate::domain::session_cache::{CopyState, Found, SessionCache};
use crate::keys::token::{SessionSecret, SigningKeys};
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
    /// The identity the session logged in with.
    pub identity: Arc<IdentityRow>,
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
pub fn check_live(session: &SessionRow, now: UnixTime) -> Result<(), Error> {
    if session.revoked_reason.is_some() || session.revoked_at.is_some() {
        return Err(Error::Revoked(Revocation::from_stored(
            session.revoked_reason.as_deref(),
        )));
    }
    if now >= session.expires_at {
        return Err(Error::Expired);
    }
    Ok(())
}

/// The `Banned` error for `user`.
pub fn banned(user: &UserRow) -> Error {
    Error::Banned {
        until: user.banned_until.unwrap_or_default(),
        reason: user.ban_reason.clone(),
    }
}

/// Extracts the token from an `Authorization: Bearer` header value.
pub fn bearer_token(header: Option<&str>) -> Result<&str, Error> {
    let header = header.ok_or(Error::InvalidToken(
        "missing `Authorization: Bearer <token>` header",
    ))?;
    match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() => {
            Ok(token.trim())
        }
        _ => Err(Error::InvalidToken(
            "the Authorization header must be `Bearer <token>`",
        )),
    }
}

/// The sessions: which token is accepted, refresh and logout. Holds what those rules
/// use and nothing else.
pub struct Sessions {
    db: Arc<Db>,
    clock: Arc<dyn Clock>,
    keys: Arc<SigningKeys>,
    cache: SessionCache,
    /// Counts the requests that read their session from the database, not a copy.
    reads: Counter,
    /// How long a session lives after its last refresh, in seconds.
    token_ttl: i64,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("token_ttl", &self.token_ttl)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Sessions over `db`, signed with `keys`, refreshed for `token_ttl` seconds.
    pub fn new(
        db: Arc<Db>,
        clock: Arc<dyn Clock>,
        keys: Arc<SigningKeys>,
        reads: Counter,
        token_ttl: i64,
    ) -> Sessions {
        Sessions {
            cache: SessionCache::new(Arc::clone(db.changes())),
            db,
            clock,
            keys,
            reads,
            token_ttl,
        }
    }

    /// The copies of sessions kept in memory.
    pub fn cache(&self) -> &SessionCache {
        &self.cache
    }

    /// A token for the session `secret` names, signed with the active key.
    pub fn sign(&self, secret: &SessionSecret) -> String {
        self.keys.current().sign(secret)
    }

    /// Verifies the bearer token and loads its live session and user.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Authenticated, Error> {
        self.authenticate_token(bearer_token(authorization)?).await
    }

    /// Verifies a token and loads its live session and user; for callers that receive
    /// the token some other way than in the Authorization header (introspection).
    pub async fn authenticate_token(&self, token: &str) -> Result<Authenticated, Error> {
        let secret = self.keys.current().verify(token).map_err(|e| {
            tracing::debug!(reason = %e, "token refused");
            Error::InvalidToken("the token is not valid")
        })?;
        let Found {
            session,
            user,
            identity,
            copy,
        } = self.find_session(&secret).await?;
        let now = self.clock.now();
        check_live(&session, now)?;
        if user.is_banned(now) {
            return Err(banned(&user));
        }
        if touch_due(&session, now) && copy.claim_touch() {
            let id = session.id;
            self.db
                .write_detached(move |c| queries::touch_session(c, id, now));
        }
        Ok(Authenticated {
            session,
            user,
            identity,
            copy,
            secret,
        })
    }

    /// The session `secret` names, with its user: the cached copy while the database
    /// holds the same, else read (and cached).
    async fn find_session(&self, secret: &SessionSecret) -> Result<Found, Error> {
        let hash = secret.hash();
        if let Some(found) = self.cache.get(&hash) {
            return Ok(found);
        }
        let ticket = self.cache.ticket();
        let key = secret.lookup_key();
        // Boxed so that the trip's state, needed only on a miss, does not enlarge the
        // future of every authenticated request.
        let found = Box::pin(self.db.read(move |c| queries::session_by_secret(c, &key))).await?;
        self.reads.inc();
        let Some(owner) = found else {
            return Err(Error::InvalidToken("the token names no known session"));
        };
        let found = Found::new(owner);
        self.cache.insert(hash, found.clone(), ticket);
        Ok(found)
    }

    /// Slides the session's expiry forward (never past its maximum age) and returns the
    /// updated session.
    pub async fn refresh(&self, auth: &Authenticated) -> Result<SessionRow, Error> {
        let now = self.clock.now();
        let expires_at = sliding_expiry(now, self.token_ttl, auth.session.max_expires_at);
        let id = auth.session.id;
        self.db
            .write(move |c| queries::refresh_session(c, id, expires_at, now))
            .await?
            .ok_or(Error::Revoked(Revocation::Unknown))
    }

    /// Revokes the current session, or all of the user's sessions.
    pub async fn logout(&self, auth: &Authenticated, all: bool) -> Result<(), Error> {
        let now = self.clock.now();
        let (session_id, user_id) = (auth.session.id, auth.user.id);
        self.db
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expires_at: UnixTime) -> SessionRow {
        SessionRow {
            id: 1,
            public_id: "s_1".into(),
            user_id: 1,
            identity_id: 1,
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
        assert!(matches!(
            check_live(&session(100), 100).unwrap_err(),
            Error::Expired
        ));
        let mut revoked = session(100);
        revoked.revoked_at = Some(5);
        revoked.revoked_reason = Some("evicted".into());
        let err = check_live(&revoked, 10).unwrap_err();
        assert!(matches!(err, Error::Revoked(Revocation::Evicted)));
        assert!(err.to_string().contains("too many devices"));
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
            assert!(
                matches!(bearer_token(bad).unwrap_err(), Error::InvalidToken(_)),
                "{bad:?}"
            );
        }
    }
}
