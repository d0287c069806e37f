//! The key file (`keys.json` in the data directory, mode 0600): the token-signing keys and
//! the data key that seals secrets stored in the database. Generated on the first start
//! of an empty database and kept apart from it, so that a copy of the database alone can
//! neither mint tokens nor read a session_key. The database records each key's print
//! ([`KeyPrint`]: its id and a fingerprint, never the key), so that a server started with
//! a key file that lacks them can refuse to start.

use std::io;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::datadir;
use crate::keys::crypto::{DATA_KEY_LEN, DataKeys, hex};
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

/// Which part of the key file a [`KeyPrint`] is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// A token-signing key.
    Signing,
    /// The data key that seals secrets in the database.
    Data,
}

impl KeyKind {
    /// The kind as one word, as the database stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Signing => "signing",
            KeyKind::Data => "data",
        }
    }

    /// The kind the database's word names.
    pub fn parse(text: &str) -> Option<KeyKind> {
        match text {
            "signing" => Some(KeyKind::Signing),
            "data" => Some(KeyKind::Data),
            _ => None,
        }
    }
}

/// What identifies one key of a key file without revealing it: its id (a signing key's
/// kid; the data key's fingerprint's first 16 characters) and its fingerprint, an
/// HMAC-SHA256 keyed by the key over a fixed text, hex. Two files hold the same key
/// exactly when they hold the same print.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct KeyPrint {
    pub kind: KeyKind,
    pub id: String,
    pub fingerprint: String,
}

impl std::fmt::Display for KeyPrint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            KeyKind::Signing => write!(f, "signing key {}", self.id),
            KeyKind::Data => write!(f, "data key {}", self.id),
        }
    }
}

/// The fingerprint of a key: HMAC-SHA256 under it over a text no other use signs.
fn fingerprint(key: &[u8]) -> String {
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, key),
        b"wxauth/key-fingerprint/v1",
    );
    hex(tag.as_ref())
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

    /// Reads the key file at `path`; `Ok(None)` when there is none.
    pub fn load_if_present(path: &Path) -> Result<Option<KeyFile>, KeyFileError> {
        match KeyFile::load(path) {
            Err(KeyFileError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    /// Gives a file written before data keys existed a fresh one; returns whether it
    /// had none. Only for a database that depends on no data key yet.
    pub fn add_missing_data_key(&mut self) -> bool {
        if self.data_key.is_some() {
            return false;
        }
        self.data_key = Some(new_data_key());
        true
    }

    /// The prints of the keys a database depends on while this file is its key file:
    /// every signing key not retired (tokens signed with it are accepted) and the data
    /// key, if there is one.
    pub fn prints(&self) -> Vec<KeyPrint> {
        let mut prints = self.prints_of_all();
        prints.retain(|p| {
            p.kind == KeyKind::Data
                || self
                    .keys
                    .iter()
                    .any(|k| k.kid == p.id && k.retired_at.is_none())
        });
        prints
    }

    /// The prints of every key in the file, retired ones included.
    fn prints_of_all(&self) -> Vec<KeyPrint> {
        let mut prints: Vec<KeyPrint> = self
            .keys
            .iter()
            .filter_map(|k| {
                let secret = STANDARD.decode(&k.secret).ok()?;
                Some(KeyPrint {
                    kind: KeyKind::Signing,
                    id: k.kid.clone(),
                    fingerprint: fingerprint(&secret),
                })
            })
            .collect();
        if let Some(secret) = self
            .data_key
            .as_deref()
            .and_then(|t| STANDARD.decode(t).ok())
        {
            let fingerprint = fingerprint(&secret);
            prints.push(KeyPrint {
                kind: KeyKind::Data,
                id: fingerprint[..16].to_owned(),
                fingerprint,
            });
        }
        prints.sort();
        prints
    }

    /// Those of `needed` this file does not hold. A signing key the file holds but has
    /// retired counts as held: its tokens are refused either way.
    pub fn lacks(&self, needed: &[KeyPrint]) -> Vec<KeyPrint> {
        let held = self.prints_of_all();
        needed
            .iter()
            .filter(|p| !held.contains(p))
            .cloned()
            .collect()
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
    fn a_saved_key_file_is_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        assert!(KeyFile::load_if_present(&path).unwrap().is_none());
        let first = KeyFile::generate(1000);
        first.save(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = KeyFile::load_if_present(&path).unwrap().unwrap();
        assert_eq!(first.active, again.active);
        assert_eq!(first.prints(), again.prints());
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
        let mut upgraded = KeyFile::load(&path).unwrap();
        assert!(upgraded.add_missing_data_key());
        assert!(!upgraded.add_missing_data_key());
        upgraded.save(&path).unwrap();
        assert_eq!(upgraded.active, old.active);
        let keys = upgraded.data_keys().unwrap();
        let sealed = keys.seal(crate::keys::crypto::Purpose::SessionKey, b"u", b"k");
        let again = KeyFile::load(&path).unwrap().data_keys().unwrap();
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
        let err = KeyFile::load_if_present(&path).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn prints_name_keys_without_revealing_them() {
        let mut file = KeyFile::generate(0);
        let first = file.active.clone();
        let prints = file.prints();
        assert_eq!(prints.len(), 2);
        assert_eq!(prints[0].kind, KeyKind::Signing);
        assert_eq!(prints[0].id, first);
        assert_eq!(prints[1].kind, KeyKind::Data);
        let json = serde_json::to_string(&file).unwrap();
        for p in &prints {
            assert_eq!(p.fingerprint.len(), 64);
            assert!(!json.contains(&p.fingerprint));
        }
        assert!(file.lacks(&prints).is_empty());

        // A rotated file still holds what the database needed; retiring leaves the key
        // out of what it needs from then on, yet still held.
        file.rotate(1);
        assert!(file.lacks(&prints).is_empty());
        assert_eq!(file.prints().len(), 3);
        file.retire(&first, 2).unwrap();
        assert_eq!(file.prints().len(), 2);
        assert!(file.lacks(&prints).is_empty());

        // Another file lacks all of them, even with the same kid.
        let mut other = KeyFile::generate(0);
        other.keys[0].kid = first.clone();
        other.active = first;
        assert_eq!(other.lacks(&prints), prints);
    }
}
