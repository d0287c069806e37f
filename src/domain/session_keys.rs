//! Each user's latest WeChat session_key, kept sealed (AES-256-GCM, bound to the user's
//! public id) and used only on the server: for legacy open-data decryption and to ask
//! WeChat's `checksession` whether it is still current.

use rusqlite::OptionalExtension;

use crate::config::AppConfig;
use crate::db::queries::UserRow;
use crate::domain::error::Error;
use crate::domain::profiles::Profiles;
use crate::keys::crypto::{self, DataKeys, Purpose, SEAL_NONCE_LEN};
use crate::keys::secret::Secret;

/// `session_key` sealed for the user whose public id is `public_id`, with `nonce` (fresh
/// random bytes), as a login stores it on the user's row (`users.session_key`).
pub fn seal(
    keys: &DataKeys,
    public_id: &str,
    session_key: &Secret,
    nonce: [u8; SEAL_NONCE_LEN],
) -> Vec<u8> {
    keys.seal_with_nonce(
        nonce,
        Purpose::SessionKey,
        public_id.as_bytes(),
        session_key.expose().as_bytes(),
    )
}

/// The user's stored session_key; `None` when there is none or it cannot be opened
/// (sealed under another data key, e.g. after restoring a database without its key
/// file): either way the user must log in again.
async fn load(profiles: &Profiles, user: &UserRow) -> Result<Option<Secret>, Error> {
    let user_id = user.id;
    let sealed: Option<Vec<u8>> = profiles
        .db
        .read(move |c| {
            Ok(
                c.prepare_cached("SELECT session_key FROM users WHERE id = ?1")?
                    .query_row([user_id], |r| r.get(0))
                    .optional()?
                    .flatten(),
            )
        })
        .await?;
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let opened = profiles
        .data_keys
        .open(Purpose::SessionKey, user.public_id.as_bytes(), &sealed)
        .and_then(|bytes| String::from_utf8(bytes).ok());
    if opened.is_none() {
        tracing::warn!(user = %user.public_id, "a stored session_key cannot be opened; the user must log in again");
    }
    Ok(opened.map(Secret::new))
}

/// The stored session_key, or `session_key_expired`.
pub async fn require(profiles: &Profiles, user: &UserRow) -> Result<Secret, Error> {
    load(profiles, user).await?.ok_or_else(expired)
}

/// `session_key_expired`: the client must call `wx.login` and log in again.
pub fn expired() -> Error {
    Error::SessionKeyExpired
}

/// Decides what a failed signature check or decryption means: asks WeChat's
/// `checksession` whether the stored key is stale and answers `session_key_expired` if
/// it is, else `otherwise`. A check that cannot be made counts as "not stale": the data
/// itself is then the likelier culprit.
pub async fn explain_failure(
    profiles: &Profiles,
    app: &AppConfig,
    user: &UserRow,
    session_key: &Secret,
    otherwise: Error,
) -> Error {
    let signature = &crypto::check_session_signature(session_key.expose());
    let checked = profiles
        .wechat
        .call(app, |token| async move {
            profiles
                .wechat
                .client()
                .check_session(&token, &user.openid, signature)
                .await
        })
        .await;
    match checked {
        Ok(false) => {
            tracing::info!(user = %user.public_id, "WeChat says the stored session_key is stale");
            expired()
        }
        Ok(true) => otherwise,
        Err(e) => {
            tracing::warn!(error = %e, "checksession failed; reporting the data as bad");
            otherwise
        }
    }
}

/// `decrypt_failed` saying why.
pub fn decrypt_failed(reason: crypto::OpenDataError) -> Error {
    Error::DecryptFailed(
        format!("{reason}; send encrypted_data and iv exactly as WeChat gave them").into(),
    )
}
