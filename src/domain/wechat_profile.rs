//! The legacy `getUserInfo`/`getUserProfile` payload (`POST /v1/me/wechat-profile`):
//! the `rawData` signature is checked and the encrypted data decrypted with the stored
//! session_key, then the profile fields WeChat sent are applied by the `PATCH /v1/me`
//! rules. WeChat's values are taken as far as they fit: an empty or invalid field is
//! skipped, an `http://` avatar URL is switched to `https://` (WeChat's avatar hosts
//! serve both).

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::db::queries::{self, FieldValue, IdentityRow, ProfileField, UserRow};
use crate::domain::content_check;
use crate::domain::error::Error;
use crate::domain::profile;
use crate::domain::profiles::Profiles;
use crate::domain::session_keys;
use crate::keys::crypto;

/// The body of `POST /v1/me/wechat-profile`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileRequest {
    raw_data: String,
    signature: String,
    encrypted_data: String,
    iv: String,
}

/// WeChat's name for each profile field.
const WECHAT_FIELDS: [(&str, ProfileField); 7] = [
    ("nickName", ProfileField::Nickname),
    ("avatarUrl", ProfileField::AvatarUrl),
    ("gender", ProfileField::Gender),
    ("country", ProfileField::Country),
    ("province", ProfileField::Province),
    ("city", ProfileField::City),
    ("language", ProfileField::Language),
];

/// Verifies and decrypts the payload and applies its profile; returns the updated user.
pub async fn apply(
    profiles: &Profiles,
    user: &UserRow,
    identity: &IdentityRow,
    request: ProfileRequest,
) -> Result<UserRow, Error> {
    let app = profiles.app_of(identity)?;
    let session_key = session_keys::require(profiles, user, identity).await?;
    // A key WeChat has since replaced shows up first as a bad signature, so a mismatch
    // also asks WeChat whether the key is stale.
    if !crypto::raw_data_signature_matches(
        &request.raw_data,
        session_key.expose(),
        &request.signature,
    ) {
        let invalid = Error::InvalidSignature(
            "the signature does not match raw_data; send both exactly as WeChat gave them",
        );
        return Err(session_keys::explain_failure(
            profiles,
            app,
            user,
            identity,
            &session_key,
            invalid,
        )
        .await);
    }
    let data = match crypto::open_data(
        session_key.expose(),
        &request.encrypted_data,
        &request.iv,
        &app.appid,
    ) {
        Ok(data) => data,
        Err(reason) => {
            let failed = session_keys::decrypt_failed(reason);
            return Err(session_keys::explain_failure(
                profiles,
                app,
                user,
                identity,
                &session_key,
                failed,
            )
            .await);
        }
    };
    if data
        .get("openId")
        .is_some_and(|id| id.as_str() != Some(identity.openid.as_str()))
    {
        return Err(Error::DecryptFailed(
            "the decrypted data belongs to another user".into(),
        ));
    }
    let changes = changes_from(&data, profiles.public_url.as_deref());
    if let Some((_, FieldValue::Text(nickname))) =
        changes.iter().find(|(f, _)| *f == ProfileField::Nickname)
    {
        content_check::check_nickname(profiles, app, user, identity, nickname).await?;
    }
    if changes.is_empty() {
        return Ok(user.clone());
    }
    let (user_id, now) = (user.id, profiles.clock.now());
    let updated = profiles
        .db
        .write(move |c| queries::update_profile(c, user_id, &changes, now))
        .await?;
    tracing::info!(user = %user.public_id, "WeChat profile applied");
    Ok(updated)
}

/// The profile changes WeChat's data asks for, each checked by the `PATCH /v1/me` rules.
fn changes_from(
    data: &Map<String, Value>,
    public_url: Option<&str>,
) -> Vec<(ProfileField, FieldValue)> {
    let mut changes = Vec::new();
    for (name, field) in WECHAT_FIELDS {
        let value = match data.get(name) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) if s.trim().is_empty() => continue,
            Some(Value::String(s)) if field == ProfileField::AvatarUrl => {
                match s.strip_prefix("http://") {
                    Some(rest) => Value::String(format!("https://{rest}")),
                    None => Value::String(s.clone()),
                }
            }
            Some(v) => v.clone(),
        };
        match profile::parse_field(field, &value, public_url) {
            Ok(change) => changes.push((field, change)),
            Err(e) => {
                tracing::debug!(field = name, reason = %e, "skipping a WeChat profile field")
            }
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn wechats_fields_map_to_the_profile() {
        let data = json!({
            "openId": "o1", "nickName": " Band ", "gender": 1, "language": "zh_CN",
            "city": "Guangzhou", "province": "Guangdong", "country": "",
            "avatarUrl": "http://wx.qlogo.cn/mmopen/vi_32/abc/0",
            "watermark": {"appid": "wx1", "timestamp": 1}
        });
        let changes = changes_from(data.as_object().unwrap(), None);
        assert_eq!(
            changes,
            vec![
                (ProfileField::Nickname, FieldValue::Text("Band".into())),
                (
                    ProfileField::AvatarUrl,
                    FieldValue::Text("https://wx.qlogo.cn/mmopen/vi_32/abc/0".into())
                ),
                (ProfileField::Gender, FieldValue::Number(1)),
                (ProfileField::Province, FieldValue::Text("Guangdong".into())),
                (ProfileField::City, FieldValue::Text("Guangzhou".into())),
                (ProfileField::Language, FieldValue::Text("zh_CN".into())),
            ]
        );
    }

    #[test]
    fn values_that_break_the_rules_are_skipped() {
        let data = json!({
            "nickName": "x".repeat(65), "gender": 7, "avatarUrl": "ftp://a/b",
            "city": "ok"
        });
        let changes = changes_from(data.as_object().unwrap(), None);
        assert_eq!(
            changes,
            vec![(ProfileField::City, FieldValue::Text("ok".into()))]
        );
    }
}
