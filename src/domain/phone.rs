//! Binding the user's phone number (`POST /v1/me/phone`): from a `getPhoneNumber`
//! button's code through WeChat's `getuserphonenumber`, or from the legacy encrypted
//! payload decrypted with the stored session_key. The number is stored on the user.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::db::queries::{IdentityRow, UserRow};
use crate::domain::error::Error;
use crate::domain::profiles::Profiles;
use crate::domain::session_keys;
use crate::keys::crypto;
use crate::wechat::client::{PhoneInfo, WeChatError};

/// The body of `POST /v1/me/phone`: `{"code"}`, or the legacy `{"encrypted_data", "iv"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneRequest {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    encrypted_data: Option<String>,
    #[serde(default)]
    iv: Option<String>,
}

/// The answer: the number as WeChat gives it.
#[derive(Debug, Serialize)]
pub struct PhoneView {
    phone_number: String,
    pure_phone_number: String,
    country_code: String,
}

impl From<PhoneInfo> for PhoneView {
    fn from(p: PhoneInfo) -> Self {
        PhoneView {
            phone_number: p.phone_number,
            pure_phone_number: p.pure_phone_number,
            country_code: p.country_code,
        }
    }
}

/// Gets the user's number from WeChat (either way), stores it and returns it.
pub async fn bind(
    profiles: &Profiles,
    user: &UserRow,
    identity: &IdentityRow,
    request: PhoneRequest,
) -> Result<PhoneView, Error> {
    let app = profiles.app_of(identity)?;
    let info = match request {
        PhoneRequest {
            code: Some(code),
            encrypted_data: None,
            iv: None,
        } => {
            validate_code(&code)?;
            profiles
                .wechat
                .call(app, |token| {
                    let code = code.as_str();
                    async move { profiles.wechat.client().phone_number(&token, code).await }
                })
                .await
                .map_err(|e| match e {
                    WeChatError::InvalidCode(_) => Error::InvalidPhoneCode,
                    other => other.into(),
                })?
        }
        PhoneRequest {
            code: None,
            encrypted_data: Some(encrypted_data),
            iv: Some(iv),
        } => {
            let session_key = session_keys::require(profiles, user, identity).await?;
            match crypto::open_data(session_key.expose(), &encrypted_data, &iv, &app.appid) {
                Ok(data) => serde_json::from_value(Value::Object(data)).map_err(|_| {
                    Error::DecryptFailed(
                        "the decrypted data is not a phone number; send the getPhoneNumber payload"
                            .into(),
                    )
                })?,
                Err(reason) => {
                    return Err(session_keys::explain_failure(
                        profiles,
                        app,
                        user,
                        identity,
                        &session_key,
                        session_keys::decrypt_failed(reason),
                    )
                    .await);
                }
            }
        }
        _ => {
            return Err(Error::invalid(
                "send either `code` from the getPhoneNumber button, or `encrypted_data` and `iv`",
            ));
        }
    };
    let (user_id, number, now) = (user.id, info.phone_number.clone(), profiles.clock.now());
    profiles
        .db
        .write(move |c| {
            c.prepare_cached("UPDATE users SET phone = ?2, updated_at = ?3 WHERE id = ?1")?
                .execute(rusqlite::params![user_id, number, now])?;
            Ok(())
        })
        .await?;
    tracing::info!(user = %user.public_id, "phone number bound");
    Ok(info.into())
}

fn validate_code(code: &str) -> Result<(), Error> {
    if code.is_empty() || code.len() > 512 || code.chars().any(char::is_control) {
        return Err(Error::invalid(
            "`code` must be the non-empty string the getPhoneNumber button gave",
        ));
    }
    Ok(())
}
