//! Each identity's latest WeChat session_key, kept sealed (AES-256-GCM, bound to the
//! identity) and used only on the server: for legacy open-data decryption and to ask
//! WeChat's `checksession` whether it is still current.

use crate::config::AppConfig;
use crate::db::queries::{self, IdentityRow, UserRow};
use crate::domain::error::Error;
use crate::domain::profiles::Profiles;
use crate::keys::crypto::{self, DataKeys, Purpose, SEAL_NONCE_LEN};
use crate::keys::secret::Secret;

/// `session_key` sealed for the identity `(appid, openid)`, with `nonce` (fresh random
/// bytes), as a login stores it on the identity's row (`identities.session_key`). Bound
/// to the identity, not its user, so that it still opens after a merge moves the
/// identity to another user.
pub fn seal(
    keys: &DataKeys,
    appid: &str,
    openid: &str,
    session_key: &Secret,
    nonce: [u8; SEAL_NONCE_LEN],
) -> Vec<u8> {
    keys.seal_with_nonce(
        nonce,
        Purpose::SessionKey,
        identity_binding(appid, openid).as_bytes(),
        session_key.expose().as_bytes(),
    )
}

/// What a session_key is bound to: its identity. The AppID holds no `/`.
fn identity_binding(appid: &str, openid: &str) -> String {
    format!("identity/{appid}/{openid}")
}

/// The session_key stored for `user`'s `identity`; `None` when there is none or it
/// cannot be opened (sealed under another data key, e.g. after restoring a database
/// without its key file): either way the user must log in again.
async fn load(
    profiles: &Profiles,
    user: &UserRow,
    identity: &IdentityRow,
) -> Result<Option<Secret>, Error> {
    let identity_id = identity.id;
    let sealed = profiles
        .db
        .read(move |c| queries::identity_session_key(c, identity_id))
        .await?;
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let keys = &profiles.data_keys;
    let opened = keys
        .open(
            Purpose::SessionKey,
            identity_binding(&identity.appid, &identity.openid).as_bytes(),
            &sealed,
        )
        // Sealed before version 6 of the schema, bound to the user's public id. Once a
        // merge has moved such an identity to another user it opens no more, and the
        // person logs in again, as for any key that cannot be opened.
        .or_else(|| keys.open(Purpose::SessionKey, user.public_id.as_bytes(), &sealed))
        .and_then(|bytes| String::from_utf8(bytes).ok());
    if opened.is_none() {
        tracing::warn!(user = %user.public_id, "a stored session_key cannot be opened; the user must log in again");
    }
    Ok(opened.map(Secret::new))
}

/// The stored session_key, or `session_key_expired`.
pub async fn require(
    profiles: &Profiles,
    user: &UserRow,
    identity: &IdentityRow,
) -> Result<Secret, Error> {
    load(profiles, user, identity).await?.ok_or_else(expired)
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
    identity: &IdentityRow,
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
                .check_session(&token, &identity.openid, signature)
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
