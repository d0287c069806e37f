//! Each app's access_token: fetched from `stable_token`, kept in memory and sealed in the
//! database (so a restart reuses it), refreshed a few minutes before it expires, with
//! one refresh in flight per app however many requests need a token. A call WeChat
//! answers with 40001/40014/42001 gets one refresh and one retry.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use rusqlite::{OptionalExtension, params};

use crate::clock::{Clock, UnixTime};
use crate::config::AppConfig;
use crate::db::{Db, DbError};
use crate::keys::crypto::{DataKeys, Purpose};
use crate::keys::secret::Secret;
use crate::wechat::client::{WeChatClient, WeChatError};

/// How long before WeChat's expiry a token is replaced.
const REFRESH_EARLY_SECS: i64 = 300;
/// WeChat allows this many forced refreshes per app and day...
const FORCE_PER_DAY: i64 = 20;
/// ...at least this far apart.
const FORCE_SPACING_SECS: i64 = 30;
/// WeChat's quotas count days in China Standard Time.
const QUOTA_DAY_OFFSET_SECS: i64 = 8 * 3600;

/// A token and the time until which it is used without asking WeChat again.
#[derive(Debug, Clone)]
struct Cached {
    token: Secret,
    fresh_until: UnixTime,
}

/// How many forced refreshes an app has made, for WeChat's daily limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ForceBudget {
    day: i64,
    count: i64,
    last_at: UnixTime,
}

impl ForceBudget {
    fn day_of(now: UnixTime) -> i64 {
        (now + QUOTA_DAY_OFFSET_SECS).div_euclid(86_400)
    }

    fn allows(&self, now: UnixTime) -> bool {
        let used_today = if self.day == Self::day_of(now) {
            self.count
        } else {
            0
        };
        used_today < FORCE_PER_DAY && now - self.last_at >= FORCE_SPACING_SECS
    }

    fn spend(&mut self, now: UnixTime) {
        let today = Self::day_of(now);
        if self.day != today {
            *self = ForceBudget {
                day: today,
                ..ForceBudget::default()
            };
        }
        self.count += 1;
        self.last_at = now;
    }
}

/// One app's token state.
#[derive(Debug, Default)]
struct Slot {
    current: Mutex<Option<Cached>>,
    /// Held while fetching, so concurrent requests wait for one fetch instead of each
    /// making their own.
    refreshing: tokio::sync::Mutex<()>,
}

impl Slot {
    fn fresh(&self, now: UnixTime) -> Option<Cached> {
        self.current
            .lock()
            .expect("token slot poisoned")
            .as_ref()
            .filter(|c| now < c.fresh_until)
            .cloned()
    }

    fn set(&self, cached: Cached) {
        *self.current.lock().expect("token slot poisoned") = Some(cached);
    }
}

/// The stored row of an app.
struct Row {
    cached: Option<Cached>,
    budget: ForceBudget,
}

/// The access_tokens of every configured app.
pub struct AccessTokens {
    slots: HashMap<String, Slot>,
    db: Arc<Db>,
    wechat: WeChatClient,
    clock: Arc<dyn Clock>,
    keys: Arc<DataKeys>,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens")
            .field("apps", &self.slots.keys())
            .finish_non_exhaustive()
    }
}

impl AccessTokens {
    /// The WeChat client the calls go through.
    pub fn client(&self) -> &WeChatClient {
        &self.wechat
    }

    /// A manager for `apps`' tokens; nothing is fetched until a call needs a token.
    pub fn new(
        apps: &[AppConfig],
        db: Arc<Db>,
        wechat: WeChatClient,
        clock: Arc<dyn Clock>,
        keys: Arc<DataKeys>,
    ) -> AccessTokens {
        AccessTokens {
            slots: apps
                .iter()
                .map(|a| (a.appid.clone(), Slot::default()))
                .collect(),
            db,
            wechat,
            clock,
            keys,
        }
    }

    /// Runs `call` with `app`'s access_token. If WeChat refuses the token, it is
    /// refreshed once and `call` retried once.
    pub async fn call<T, F, Fut>(&self, app: &AppConfig, call: F) -> Result<T, WeChatError>
    where
        F: Fn(Secret) -> Fut,
        Fut: Future<Output = Result<T, WeChatError>>,
    {
        let token = self.get(app).await?.token;
        match call(token.clone()).await {
            Err(WeChatError::AccessTokenRejected(errcode)) => {
                tracing::warn!(
                    appid = %app.appid,
                    errcode,
                    "WeChat refused the access_token; refreshing it and retrying once"
                );
                let fresh = self.replace(app, &token).await?;
                call(fresh.token).await
            }
            other => other,
        }
    }

    fn slot(&self, app: &AppConfig) -> Result<&Slot, WeChatError> {
        self.slots.get(&app.appid).ok_or_else(|| {
            WeChatError::Unusable(format!("no access_token slot for app {}", app.appid))
        })
    }

    /// `app`'s token for one of the team's own services, and the time until which wxauth
    /// uses it (a few minutes before WeChat's expiry): the one wxauth's own calls use, so
    /// the services stop fetching, and replacing, tokens of their own.
    pub async fn current(&self, app: &AppConfig) -> Result<(Secret, UnixTime), WeChatError> {
        let cached = self.get(app).await?;
        Ok((cached.token, cached.fresh_until))
    }

    /// Replaces `rejected`, a token WeChat refused one of the team's services (40001),
    /// unless a newer one is already in use, which is returned instead: however many
    /// services report the same refusal, and however late, it costs one refresh.
    pub async fn replace_rejected(
        &self,
        app: &AppConfig,
        rejected: &Secret,
    ) -> Result<(Secret, UnixTime), WeChatError> {
        let cached = self.replace(app, rejected).await?;
        Ok((cached.token, cached.fresh_until))
    }

    /// A token that is not near its expiry: from memory, else from the database, else
    /// fetched from WeChat.
    async fn get(&self, app: &AppConfig) -> Result<Cached, WeChatError> {
        let slot = self.slot(app)?;
        if let Some(cached) = slot.fresh(self.clock.now()) {
            return Ok(cached);
        }
        let _one_fetch = slot.refreshing.lock().await;
        let now = self.clock.now();
        // Whoever held the lock before us may have just fetched one.
        if let Some(cached) = slot.fresh(now) {
            return Ok(cached);
        }
        let row = self.load(app).await;
        if let Some(cached) = row.cached.filter(|c| now < c.fresh_until) {
            tracing::debug!(appid = %app.appid, "using the stored access_token");
            slot.set(cached.clone());
            return Ok(cached);
        }
        self.fetch(app, slot, row.budget, false).await
    }

    /// Replaces a token WeChat refused. Uses a forced refresh while WeChat's limit
    /// allows one; otherwise asks for the current token, which is a new one if the
    /// refused one has expired.
    async fn replace(&self, app: &AppConfig, refused: &Secret) -> Result<Cached, WeChatError> {
        let slot = self.slot(app)?;
        let _one_fetch = slot.refreshing.lock().await;
        let now = self.clock.now();
        // Another request may have replaced it while we waited.
        if let Some(cached) = slot.fresh(now).filter(|c| &c.token != refused) {
            return Ok(cached);
        }
        let row = self.load(app).await;
        // Or, before this server last started, a newer one was stored.
        if let Some(cached) = row
            .cached
            .filter(|c| now < c.fresh_until && &c.token != refused)
        {
            slot.set(cached.clone());
            return Ok(cached);
        }
        let budget = row.budget;
        let force = budget.allows(now);
        if !force {
            tracing::warn!(
                appid = %app.appid,
                "WeChat's limit on forced access_token refreshes is reached; asking for the current token"
            );
        }
        self.fetch(app, slot, budget, force).await
    }

    /// Fetches a token, stores it (sealed) with the force budget, and caches it.
    async fn fetch(
        &self,
        app: &AppConfig,
        slot: &Slot,
        mut budget: ForceBudget,
        force: bool,
    ) -> Result<Cached, WeChatError> {
        let fetched = self.wechat.stable_token(app, force).await?;
        let now = self.clock.now();
        if force {
            budget.spend(now);
        }
        // Refresh early, but never so early that a short-lived token is never used.
        let early = REFRESH_EARLY_SECS.min(fetched.expires_in / 2);
        let cached = Cached {
            fresh_until: now + fetched.expires_in - early,
            token: fetched.token,
        };
        let sealed = self.keys.seal(
            Purpose::AccessToken,
            app.appid.as_bytes(),
            cached.token.expose().as_bytes(),
        );
        let appid = app.appid.clone();
        let fresh_until = cached.fresh_until;
        let stored = self
            .db
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO access_tokens (appid, sealed, fresh_until, force_day, \
                     force_count, last_force_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT (appid) DO UPDATE SET sealed = excluded.sealed, \
                     fresh_until = excluded.fresh_until, force_day = excluded.force_day, \
                     force_count = excluded.force_count, last_force_at = excluded.last_force_at",
                )?
                .execute(params![
                    appid,
                    sealed,
                    fresh_until,
                    budget.day,
                    budget.count,
                    budget.last_at
                ])?;
                Ok(())
            })
            .await;
        if let Err(e) = stored {
            // The token works all the same; only a restart would fetch another.
            tracing::error!(appid = %app.appid, error = %e, "cannot store the access_token");
        }
        tracing::info!(appid = %app.appid, forced = force, expires_in = fetched.expires_in, "access_token fetched");
        slot.set(cached.clone());
        Ok(cached)
    }

    /// The stored token (if it opens) and force budget of `app`. A database that cannot
    /// be read is logged and treated as holding nothing: a token from WeChat still serves
    /// the request.
    async fn load(&self, app: &AppConfig) -> Row {
        let appid = app.appid.clone();
        let found = self
            .db
            .read(move |c| {
                Ok(c.prepare_cached(
                    "SELECT sealed, fresh_until, force_day, force_count, last_force_at \
                     FROM access_tokens WHERE appid = ?1",
                )?
                .query_row([appid], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, i64>(1)?,
                        ForceBudget {
                            day: r.get(2)?,
                            count: r.get(3)?,
                            last_at: r.get(4)?,
                        },
                    ))
                })
                .optional()?)
            })
            .await
            .unwrap_or_else(|e: DbError| {
                tracing::error!(appid = %app.appid, error = %e, "cannot read the stored access_token");
                None
            });
        let Some((sealed, fresh_until, budget)) = found else {
            return Row {
                cached: None,
                budget: ForceBudget::default(),
            };
        };
        let cached = self
            .keys
            .open(Purpose::AccessToken, app.appid.as_bytes(), &sealed)
            .and_then(|b| String::from_utf8(b).ok())
            .map(|token| Cached {
                token: Secret::new(token),
                fresh_until,
            });
        Row { cached, budget }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_refreshes_are_limited_per_day_and_spaced() {
        // 2026-11-30T10:00:00Z is 18:00 in UTC+8; the quota day ends 6 hours later.
        let start = 1_796_032_800;
        let mut budget = ForceBudget::default();
        assert!(budget.allows(start));
        budget.spend(start);
        assert!(!budget.allows(start + 29), "30 seconds apart");
        assert!(budget.allows(start + 30));
        let mut t = start;
        for _ in 1..FORCE_PER_DAY {
            t += 30;
            budget.spend(t);
        }
        assert_eq!(budget.count, FORCE_PER_DAY);
        assert!(!budget.allows(t + 3600), "20 a day");
        let next_day = start + 6 * 3600;
        assert!(!budget.allows(next_day - 1));
        assert!(budget.allows(next_day));
        budget.spend(next_day);
        assert_eq!(budget.count, 1);
    }
}
