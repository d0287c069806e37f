//! What the profile's operations (changes, avatars, the phone number, WeChat's legacy
//! profile) work with, handed to each of them.

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::{AppConfig, ContentCheckPolicy};
use crate::db::Db;
use crate::db::queries::IdentityRow;
use crate::domain::error::Error;
use crate::keys::crypto::DataKeys;
use crate::wechat::access_token::AccessTokens;

/// What the profile's operations use: the database, the clock, the data keys that seal
/// session_keys, WeChat with a managed access_token, and the settings they read.
pub struct Profiles {
    pub(super) db: Arc<Db>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) data_keys: Arc<DataKeys>,
    pub(super) wechat: Arc<AccessTokens>,
    apps: Vec<AppConfig>,
    pub(super) public_url: Option<String>,
    pub(super) content_check_unavailable: ContentCheckPolicy,
}

impl std::fmt::Debug for Profiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profiles")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl Profiles {
    /// The profile's operations for the users of `apps`.
    pub fn new(
        db: Arc<Db>,
        clock: Arc<dyn Clock>,
        data_keys: Arc<DataKeys>,
        wechat: Arc<AccessTokens>,
        apps: Vec<AppConfig>,
        public_url: Option<String>,
        content_check_unavailable: ContentCheckPolicy,
    ) -> Profiles {
        Profiles {
            db,
            clock,
            data_keys,
            wechat,
            apps,
            public_url,
            content_check_unavailable,
        }
    }

    /// The configured app of `identity`; `UnknownApp` if it was removed from the
    /// configuration since the user logged in with it.
    pub fn app_of(&self, identity: &IdentityRow) -> Result<&AppConfig, Error> {
        self.apps
            .iter()
            .find(|a| a.appid == identity.appid)
            .ok_or(Error::UnknownApp(
                "the user's app is no longer configured on this server",
            ))
    }
}
