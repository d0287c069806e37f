//! The key file (`keys.json` in the data directory, mode 0600): the token-signing keys and
//! the data key that seals secrets stored in the database. Generated on first start and
//! kept apart from the database, so that a copy of the database alone can neither mint
//! tokens nor read a session_key.

use std::io;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::datadir;
use crate::keys::crypto::{DATA_KEY_LEN, DataKeys};
use crate::keys::random;
use crate::keys::token::{Keyring, is_valid_kid};

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot access the key file {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("the key file {path} is damaged: {message}")]
    Damaged { path: String, message: String },
}

/// One signing key as stored.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredKey {
    /// The key id written into tokens.
    pub kid: String,
    /// The HMAC key, base64.
    secret: String,
    /// When it was made.
    pub created_at: UnixTime,
    /// When it stopped being accepted; `None` while it is accepted.
    pub retired_at: Option<UnixTime>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// The whole key file.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// The kid new tokens are signed with.
    pub active: String,
    /// Every key, retired ones included (so a retired kid is never reused).
    pub keys: Vec<StoredKey>,
    /// The master key for secrets sealed in the database, base64; separate from the
    /// signing keys and never rotated (sealed values would become unreadable). Absent
    /// only in files written before it existed; the server adds it on start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data_key: Option<String>,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("active", &self.active)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl KeyFile {
    /// A key file with one fresh signing key and a fresh data key.
    pub fn generate(now: UnixTime) -> KeyFile {
        let key = new_key(now);
        KeyFile {
            active: key.kid.clone(),
            keys: vec![key],
            data_key: Some(new_data_key()),
        }
    }

    /// Reads the key file at `path`, creating it when it does not exist and adding a
    /// data key to a file that has none.
    pub fn load_or_create(path: &Path, now: UnixTime) -> Result<KeyFile, KeyFileError> {
        match KeyFile::load(path) {
            Err(KeyFileError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                let file = KeyFile::generate(now);
                file.save(path)?;
                Ok(file)
            }
            Ok(mut file) if file.data_key.is_none() => {
                file.data_key = Some(new_data_key());
                file.save(path)?;
                Ok(file)
            }
            other => other,
        }
    }

    /// The keys that seal secrets in the database.
    pub fn data_keys(&self) -> Result<DataKeys, String> {
        let text = self
            .data_key
            .as_deref()
            .ok_or("the key file has no data key")?;
        let bytes: [u8; DATA_KEY_LEN] = STANDARD
            .decode(text)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("the data key is not base64 of {DATA_KEY_LEN} bytes"))?;
        Ok(DataKeys::derive(&bytes))
    }

    /// Reads and checks an existing key file, tightening its mode to 0600.
    pub fn load(path: &Path) -> Result<KeyFile, KeyFileError> {
        let io_err = |source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let damaged = |message: String| KeyFileError::Damaged {
            path: path.display().to_string(),
            message,
        };
        let bytes = std::fs::read(path).map_err(io_err)?;
        datadir::restrict_file(path).map_err(io_err)?;
        let file: KeyFile = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
        file.keyring().map_err(damaged)?;
        if file.data_key.is_some() {
            file.data_keys().map_err(damaged)?;
        }
        Ok(file)
    }

    /// Writes the key file atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        let json = serde_json::to_vec_pretty(self).expect("key file serializes");
        datadir::write_private_atomic(path, &json).map_err(|source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Adds a fresh key and makes it the one new tokens are signed with. Tokens signed
    /// with older keys stay valid until those keys are retired.
    pub fn rotate(&mut self, now: UnixTime) -> &StoredKey {
        let mut key = new_key(now);
        while self.keys.iter().any(|k| k.kid == key.kid) {
            key = new_key(now);
        }
        self.active = key.kid.clone();
        self.keys.push(key);
        self.keys.last().expect("just pushed")
    }

    /// Stops accepting tokens signed with `kid`. The active key cannot be retired: rotate
    /// first, so there is always a key to sign with.
    pub fn retire(&mut self, kid: &str, now: UnixTime) -> Result<(), String> {
        if kid == self.active {
            return Err(format!(
                "`{kid}` is the active signing key; run `wxauth keys rotate` first"
            ));
        }
        let key = self
            .keys
            .iter_mut()
            .find(|k| k.kid == kid)
            .ok_or_else(|| format!("there is no key `{kid}`; see `wxauth keys list`"))?;
        if key.retired_at.is_some() {
            return Err(format!("key `{kid}` is already retired"));
        }
        key.retired_at = Some(now);
        Ok(())
    }

    /// The keyring of every key not retired.
    pub fn keyring(&self) -> Result<Keyring, String> {
        let mut decoded = Vec::new();
        for key in self.keys.iter().filter(|k| k.retired_at.is_none()) {
            if !is_valid_kid(&key.kid) {
                return Err(format!("`{}` is not a valid key id", key.kid));
            }
            let bytes = STANDARD
                .decode(&key.secret)
                .map_err(|_| format!("key `{}` is not valid base64", key.kid))?;
            if bytes.len() < 32 {
                return Err(format!("key `{}` is shorter than 32 bytes", key.kid));
            }
            decoded.push((key.kid.as_str(), bytes));
        }
        Keyring::new(
            &self.active,
            decoded.iter().map(|(kid, b)| (*kid, b.as_slice())),
        )
        .ok_or_else(|| format!("the active key `{}` is missing or retired", self.active))
    }
}

fn new_key(now: UnixTime) -> StoredKey {
    let id: [u8; 4] = random::bytes();
    let secret: [u8; 32] = random::bytes();
    StoredKey {
        kid: id.iter().map(|b| format!("{b:02x}")).collect(),
        secret: STANDARD.encode(secret),
        created_at: now,
        retired_at: None,
    }
}

fn new_data_key() -> String {
    STANDARD.encode(random::bytes::<DATA_KEY_LEN>())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::keys::token::SessionSecret;

    #[test]
    fn first_start_creates_a_private_key_file_that_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let first = KeyFile::load_or_create(&path, 1000).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = KeyFile::load_or_create(&path, 2000).unwrap();
        assert_eq!(first.active, again.active);
        let token = first.keyring().unwrap().sign(&SessionSecret::generate());
        assert!(again.keyring().unwrap().verify(&token).is_ok());
    }

    #[test]
    fn rotation_keeps_old_tokens_and_retirement_ends_them() {
        let mut file = KeyFile::generate(0);
        let old_kid = file.active.clone();
        let old_token = file.keyring().unwrap().sign(&SessionSecret::generate());
        let new_kid = file.rotate(10).kid.clone();
        assert_ne!(old_kid, new_kid);
        let ring = file.keyring().unwrap();
        assert_eq!(ring.active_kid(), new_kid);
        assert!(ring.verify(&old_token).is_ok());
        assert!(
            file.retire(&new_kid, 20)
                .unwrap_err()
                .contains("keys rotate")
        );
        file.retire(&old_kid, 20).unwrap();
        assert!(
            file.retire(&old_kid, 30)
                .unwrap_err()
                .contains("already retired")
        );
        assert!(file.retire("nope", 30).unwrap_err().contains("no key"));
        assert!(file.keyring().unwrap().verify(&old_token).is_err());
    }

    #[test]
    fn an_older_file_gets_a_data_key_that_then_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let mut old = KeyFile::generate(0);
        old.data_key = None;
        old.save(&path).unwrap();
        assert!(KeyFile::load(&path).unwrap().data_keys().is_err());
        let upgraded = KeyFile::load_or_create(&path, 5).unwrap();
        assert_eq!(upgraded.active, old.active);
        let keys = upgraded.data_keys().unwrap();
        let sealed = keys.seal(crate::keys::crypto::Purpose::SessionKey, b"u", b"k");
        let again = KeyFile::load_or_create(&path, 6)
            .unwrap()
            .data_keys()
            .unwrap();
        assert_eq!(
            again.open(crate::keys::crypto::Purpose::SessionKey, b"u", &sealed),
            Some(b"k".to_vec())
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!format!("{upgraded:?}").contains(upgraded.data_key.as_deref().unwrap()));
        assert!(text.contains("data_key"));
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = KeyFile::load_or_create(&path, 0).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
    }
}
