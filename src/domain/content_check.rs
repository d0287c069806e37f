//! Nickname checks with WeChat's `msg_sec_check` (version 2, scene 1: a profile), for
//! apps with `content_check = true`. What happens when WeChat cannot be asked is the
//! `content_check_unavailable` policy.

use crate::config::{AppConfig, ContentCheckPolicy};
use crate::db::queries::{IdentityRow, UserRow};
use crate::domain::error::Error;
use crate::domain::profiles::Profiles;
use crate::wechat::client::Suggestion;

/// Refuses `nickname` with `content_rejected` if WeChat calls it risky. `review` is
/// accepted: WeChat leaves that call to the app, and a nickname is easy to change.
pub async fn check_nickname(
    profiles: &Profiles,
    app: &AppConfig,
    user: &UserRow,
    identity: &IdentityRow,
    nickname: &str,
) -> Result<(), Error> {
    if !app.content_check {
        return Ok(());
    }
    let verdict = profiles
        .wechat
        .call(app, |token| async move {
            profiles
                .wechat
                .client()
                .msg_sec_check(&token, &identity.openid, nickname)
                .await
        })
        .await;
    match verdict {
        Ok(Suggestion::Risky) => {
            tracing::info!(user = %user.public_id, "WeChat's content check rejected a nickname");
            Err(Error::ContentRejected)
        }
        Ok(Suggestion::Pass | Suggestion::Review) => Ok(()),
        Err(e) => match profiles.content_check_unavailable {
            ContentCheckPolicy::Allow => {
                tracing::warn!(
                    user = %user.public_id,
                    error = %e,
                    "the nickname content check failed; accepting the nickname unchecked (content_check_unavailable = allow)"
                );
                Ok(())
            }
            ContentCheckPolicy::Reject => {
                tracing::warn!(
                    user = %user.public_id,
                    error = %e,
                    "the nickname content check failed; refusing the change (content_check_unavailable = reject)"
                );
                Err(Error::ContentCheckUnavailable)
            }
        },
    }
}
