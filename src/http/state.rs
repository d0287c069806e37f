//! What the handlers share: the domain's services, the settings the edge reads, and the
//! rate limiters. The composition root builds it; handlers take the parts they need.

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::db::Db;
use crate::domain::access_jwts::AccessJwts;
use crate::domain::login::Logins;
use crate::domain::profiles::Profiles;
use crate::domain::sessions::Sessions;
use crate::domain::web_login::WebLogins;
use crate::http::console::guard::SignInLimits;
use crate::http::ratelimit::RateLimiter;
use crate::ops::metrics::Metrics;
use crate::wechat::access_token::AccessTokens;

/// What every request handler shares.
pub struct AppState {
    pub config: Config,
    /// For readiness, metrics and serving avatars.
    pub db: Arc<Db>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub sessions: Sessions,
    pub logins: Arc<Logins>,
    pub profiles: Profiles,
    /// Each app's access_token, also handed to the team's own services.
    pub access_tokens: Arc<AccessTokens>,
    /// `None` without `public_url`: browsers could not be sent back.
    pub web_logins: Option<WebLogins>,
    /// `None` without `public_url`, which is the JWTs' issuer.
    pub access_jwts: Option<AccessJwts>,
    /// Per client IP on `/v1/login`; `None` when switched off.
    pub login_limiter: Option<RateLimiter>,
    /// Per user on profile writes; `None` when switched off.
    pub profile_limiter: Option<RateLimiter>,
    /// Console sign-ins, per client IP and per admin name.
    pub console_limits: SignInLimits,
}
