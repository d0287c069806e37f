//! The `wx.login` exchange: a code in, a session out. A code that already led to a live
//! session within its five minutes gives that session back (a retried request must not
//! fail), and concurrent requests with one code share a single call to WeChat.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use ring::digest;
use tracing::Instrument;

use crate::clock::Clock;
use crate::config::AppConfig;
use crate::db::Db;
use crate::db::queries::{
    self, IdentityRow, LoginWritten, NewLogin, SessionOwner, SessionRow, UserRow,
};
use crate::domain::error::Error;
use crate::domain::recent_codes::{CODE_LIFETIME_SECS, RecentCodes};
use crate::domain::session_keys;
use crate::domain::sessions::{self, banned};
use crate::keys::crypto::{self, DataKeys};
use crate::keys::random;
use crate::keys::token::{SessionSecret, SigningKeys};
use crate::wechat::client::WeChatClient;

/// A successful login, as the API reports it.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    pub token: String,
    pub session: SessionRow,
    pub user: UserRow,
    /// The identity the session logged in with.
    pub identity: IdentityRow,
    pub new_user: bool,
}

/// A login's result, shared by every request that brought the same code.
type Shared = futures_util::future::Shared<BoxFuture<'static, Result<LoginOutcome, Arc<Error>>>>;

/// How long sessions live: the settings a login applies.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// A session ends this many seconds after its last refresh.
    pub token_ttl: i64,
    /// No session lives longer than this many seconds.
    pub session_max_age: i64,
    /// Beyond this many live sessions, a user's oldest is evicted.
    pub max_sessions: u32,
}

/// Logins with `wx.login` codes: what they use, and the logins in flight by code (the
/// first request for a code starts the work and every request with that code waits for
/// its result).
pub struct Logins {
    db: Arc<Db>,
    wechat: WeChatClient,
    clock: Arc<dyn Clock>,
    data_keys: Arc<DataKeys>,
    keys: Arc<SigningKeys>,
    recent_codes: RecentCodes,
    policy: SessionPolicy,
    in_flight: Mutex<HashMap<[u8; 32], Shared>>,
}

impl std::fmt::Debug for Logins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.in_flight.lock().map_or(0, |map| map.len());
        f.debug_struct("Logins")
            .field("policy", &self.policy)
            .field("in_flight", &n)
            .finish_non_exhaustive()
    }
}

impl Logins {
    /// Logins recorded in `db`, checked with `wechat`, their session_keys sealed with
    /// `data_keys` and their tokens signed with `keys`.
    pub fn new(
        db: Arc<Db>,
        wechat: WeChatClient,
        clock: Arc<dyn Clock>,
        data_keys: Arc<DataKeys>,
        keys: Arc<SigningKeys>,
        recent_codes: RecentCodes,
        policy: SessionPolicy,
    ) -> Logins {
        Logins {
            db,
            wechat,
            clock,
            data_keys,
            keys,
            recent_codes,
            policy,
            in_flight: Mutex::default(),
        }
    }

    /// Logs in with a `wx.login` code for `app`. The error is shared by every request
    /// that brought the same code.
    ///
    /// The work runs as a task of its own, not inside the request: once WeChat has
    /// consumed the code, the login must be recorded even if the client has gone away,
    /// or its retry would find the code used and no session to give back.
    pub async fn login(
        self: &Arc<Self>,
        app: &AppConfig,
        code: &str,
    ) -> Result<LoginOutcome, Arc<Error>> {
        let key = code_hash(&app.appid, code);
        let shared = {
            let mut map = self.in_flight.lock().expect("in-flight map poisoned");
            map.entry(key)
                .or_insert_with(|| {
                    // The task logs within the request that started it.
                    let task = tokio::spawn(
                        Arc::clone(self)
                            .run_login(app.clone(), code.to_owned(), key)
                            .instrument(tracing::Span::current()),
                    );
                    async move {
                        task.await
                            .unwrap_or_else(|e| {
                                Err(Error::Broken(format!("the login task failed: {e}").into()))
                            })
                            .map_err(Arc::new)
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        shared.await
    }

    /// Does one login and then forgets the code's in-flight entry; later requests with
    /// the code find the recorded result in the database instead.
    async fn run_login(
        self: Arc<Self>,
        app: AppConfig,
        code: String,
        key: [u8; 32],
    ) -> Result<LoginOutcome, Error> {
        let result = self.fresh_login(&app, &code, key).await;
        self.in_flight
            .lock()
            .expect("in-flight map poisoned")
            .remove(&key);
        result
    }

    /// Calls WeChat and records the login, unless the code already led to a live session
    /// (a retried request), which is returned instead.
    async fn fresh_login(
        &self,
        app: &AppConfig,
        code: &str,
        key: [u8; 32],
    ) -> Result<LoginOutcome, Error> {
        if let Some(outcome) = self.replay(&app.appid, code, key).await? {
            return Ok(outcome);
        }
        let wx = self.wechat.code2session(app, code).await?;
        // All of a login's randomness in one system call, and here rather than in the
        // write: the writer is the one thread every login passes through.
        let mut draw = random::Draw::<
            {
                SessionSecret::RANDOM_LEN
                    + 2 * random::ORDERED_ID_RANDOM_LEN
                    + crypto::SEAL_NONCE_LEN
            },
        >::from_os();
        let secret = SessionSecret::new(draw.take());
        let now = self.clock.now();
        let ttl = self.policy.token_ttl;
        let max_expires_at = now.saturating_add(self.policy.session_max_age);
        let new = NewLogin {
            // Should the write run again (another write in its batch failed), it stores
            // this same sealed key; only one of its runs is ever committed.
            session_key: Some(session_keys::seal(
                &self.data_keys,
                &app.appid,
                &wx.openid,
                &wx.session_key,
                draw.take(),
            )),
            user_public_id: random::ordered_id("u_", draw.take()),
            session_public_id: random::ordered_id("s_", draw.take()),
            appid: app.appid.clone(),
            openid: wx.openid,
            unionid: wx.unionid,
            secret_hash: secret.lookup_key(),
            profile: None,
            now,
            expires_at: sessions::sliding_expiry(now, ttl, max_expires_at),
            max_expires_at,
            max_sessions: self.policy.max_sessions,
        };
        let sealed_sid = seal(&app.appid, code, secret.as_bytes());
        let written = self
            .db
            .write(move |c| {
                let written = queries::record_login(c, &new)?;
                let code_row = match &written {
                    LoginWritten::Session { new_user, .. } => Some(queries::remember_login_code(
                        c,
                        &key,
                        &sealed_sid,
                        *new_user,
                        now + CODE_LIFETIME_SECS,
                    )?),
                    LoginWritten::Banned(_) => None,
                };
                Ok((written, code_row))
            })
            .await?;
        match written {
            (LoginWritten::Banned(user), _) => Err(banned(&user)),
            (
                LoginWritten::Session {
                    session,
                    user,
                    identity,
                    new_user,
                },
                code_row,
            ) => {
                // Before the answer, and before a retry with this code stops waiting for
                // this login and looks for its record instead.
                if let Some(code_row) = code_row {
                    self.recent_codes.note(&key, code_row, now);
                }
                tracing::info!(user = %user.public_id, session = %session.public_id, new_user, "login");
                Ok(LoginOutcome {
                    token: self.keys.current().sign(&secret),
                    session,
                    user,
                    identity,
                    new_user,
                })
            }
        }
    }

    /// The earlier result for this code, if it led to a session that is still live.
    async fn replay(
        &self,
        appid: &str,
        code: &str,
        key: [u8; 32],
    ) -> Result<Option<LoginOutcome>, Error> {
        let now = self.clock.now();
        let rows = self.recent_codes.rows(&key, now);
        if rows.is_empty() {
            return Ok(None);
        }
        let pad = seal_pad(appid, code);
        // The session is found by its secret, as a token finds it: a code's row does not
        // name the session by id, which a later session may take once this one is deleted.
        let found = self
            .db
            .read(move |c| {
                for id in rows {
                    if let Some(row) = queries::login_code(c, id, &key, now)? {
                        let secret = SessionSecret::from_bytes(&mask(&pad, &row.sealed_sid));
                        let session = match &secret {
                            Some(secret) => queries::session_by_secret(c, &secret.lookup_key())?,
                            None => None,
                        };
                        return Ok(Some((secret, session, row.new_user)));
                    }
                }
                Ok(None)
            })
            .await?;
        let Some((secret, session, new_user)) = found else {
            return Ok(None);
        };
        let secret = secret.ok_or(Error::Broken("a stored login code is damaged".into()))?;
        let Some(SessionOwner {
            session,
            user,
            identity,
        }) = session
        else {
            return Ok(None);
        };
        if sessions::check_live(&session, now).is_err() {
            return Ok(None);
        }
        if user.is_banned(now) {
            return Err(banned(&user));
        }
        tracing::info!(user = %user.public_id, session = %session.public_id, "login replayed");
        Ok(Some(LoginOutcome {
            token: self.keys.current().sign(&secret),
            session,
            user,
            identity,
            new_user,
        }))
    }
}

/// The key a code is remembered under: a hash, so the database never holds codes.
pub fn code_hash(appid: &str, code: &str) -> [u8; 32] {
    tagged_hash(b"wxauth/login-code/id", appid, code)
}

/// Masks (and unmasks) a session secret with a pad derived from the code, so the stored
/// record reveals the secret only to someone who holds the code itself. Each code is
/// used once, so each pad is too. A secret is shorter than the 32-byte pad.
fn seal(appid: &str, code: &str, bytes: &[u8]) -> Vec<u8> {
    mask(&seal_pad(appid, code), bytes)
}

/// The pad [`seal`] masks a secret with.
fn seal_pad(appid: &str, code: &str) -> [u8; 32] {
    tagged_hash(b"wxauth/login-code/seal", appid, code)
}

/// Masks or unmasks `bytes` with a code's pad.
pub(super) fn mask(pad: &[u8; 32], bytes: &[u8]) -> Vec<u8> {
    debug_assert!(bytes.len() <= pad.len());
    bytes.iter().zip(pad).map(|(b, p)| b ^ p).collect()
}

/// SHA-256 over each part prefixed by its length. The parts are gathered into one buffer
/// and hashed in one call: for inputs this short, six calls to ring's incremental update
/// cost more than the hashing itself.
pub(super) fn tagged_hash(tag: &[u8], appid: &str, code: &str) -> [u8; 32] {
    let parts = [tag, appid.as_bytes(), code.as_bytes()];
    let mut message = Vec::with_capacity(parts.iter().map(|p| 8 + p.len()).sum());
    for part in parts {
        message.extend_from_slice(&(part.len() as u64).to_be_bytes());
        message.extend_from_slice(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, &message).as_ref());
    out
}

/// Checks a code's shape before anything is spent on it.
pub fn validate_code(code: &str) -> Result<(), Error> {
    if code.is_empty() || code.len() > 512 || code.chars().any(char::is_control) {
        return Err(Error::invalid(
            "`code` must be the non-empty string that wx.login returned",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_round_trips_and_depends_on_the_code() {
        let secret = [9u8; 22];
        let sealed = seal("wx1", "code-a", &secret);
        assert_eq!(sealed.len(), secret.len());
        assert_ne!(sealed, secret);
        assert_eq!(seal("wx1", "code-a", &sealed), secret);
        assert_ne!(seal("wx1", "code-b", &sealed), secret);
        assert_ne!(seal("wx2", "code-a", &sealed), secret);
    }

    /// Stored codes are found by this hash: it must not change from one release to the
    /// next.
    #[test]
    fn a_code_hash_is_stable() {
        let hex: String = code_hash("wx1", "abc")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "e2a197edb075736040835c4e1a45fc7341c930a538920122bfca5e0661f88ba5"
        );
    }

    #[test]
    fn code_hashes_separate_apps_and_fields() {
        assert_ne!(code_hash("wx1", "abc"), code_hash("wx2", "abc"));
        assert_ne!(code_hash("wx1a", "bc"), code_hash("wx1", "abc"));
        assert_eq!(code_hash("wx1", "abc"), code_hash("wx1", "abc"));
    }

    #[test]
    fn codes_are_checked_for_shape() {
        assert!(validate_code("071abc").is_ok());
        assert!(validate_code("").is_err());
        assert!(validate_code("a\nb").is_err());
        assert!(validate_code(&"x".repeat(513)).is_err());
    }
}
