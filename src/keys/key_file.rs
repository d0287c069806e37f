//! The key file (`keys.json` in the data directory, mode 0600): the token-signing keys,
//! the JWT keys and the data key that seals secrets stored in the database. Generated on
//! the first start of an empty database and kept apart from it, so that a copy of the
//! database alone can neither mint tokens nor read a session_key. The database records
//! each key's print ([`KeyPrint`]: its id and a fingerprint, never the key), so that a
//! server started with a key file that lacks them can refuse to start.

use std::io;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::datadir;
use crate::keys::crypto::{DATA_KEY_LEN, DataKeys, hex};
use crate::keys::jwt::{self, JwtKey, JwtKeySet, Replaced};
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

/// One JWT key as stored (see [`crate::keys::jwt`] for its states).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredJwtKey {
    /// The key id written into JWT headers and the JWKS.
    pub kid: String,
    /// The P-256 private key, PKCS#8, base64.
    pkcs8: String,
    /// When it was made (and published).
    pub created_at: UnixTime,
    /// When it began to sign; `None` while it waits for the next rotation.
    pub active_from: Option<UnixTime>,
    /// When a newer key took over signing.
    pub replaced_at: Option<UnixTime>,
    /// When it was taken out of the JWKS.
    pub retired_at: Option<UnixTime>,
}

impl std::fmt::Debug for StoredJwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredJwtKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("active_from", &self.active_from)
            .field("replaced_at", &self.replaced_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

impl StoredJwtKey {
    /// Whether it signs new JWTs.
    pub fn is_active(&self) -> bool {
        self.active_from.is_some() && self.replaced_at.is_none() && self.retired_at.is_none()
    }

    /// Whether it waits, published, for the next rotation.
    pub fn is_next(&self) -> bool {
        self.active_from.is_none() && self.retired_at.is_none()
    }

    fn key(&self) -> Result<JwtKey, String> {
        let pkcs8 = STANDARD
            .decode(&self.pkcs8)
            .map_err(|_| format!("JWT key `{}` is not valid base64", self.kid))?;
        JwtKey::from_pkcs8(&self.kid, &pkcs8)
    }
}

/// The key ids a rotation made active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The session-token signing key.
    pub signing: String,
    /// The JWT key.
    pub jwt: String,
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
    /// The keys that sign access JWTs. Empty only in files written before JWTs existed;
    /// the server adds them on start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt_keys: Vec<StoredJwtKey>,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("active", &self.active)
            .field("keys", &self.keys)
            .field("jwt_keys", &self.jwt_keys)
            .finish_non_exhaustive()
    }
}

impl KeyFile {
    /// A key file with one fresh signing key, an active and a next JWT key, and a fresh
    /// data key.
    pub fn generate(now: UnixTime) -> KeyFile {
        let mut file = KeyFile {
            active: String::new(),
            keys: Vec::new(),
            data_key: Some(new_data_key()),
            jwt_keys: Vec::new(),
        };
        let key = file.new_key(now);
        file.active = key.kid.clone();
        file.keys.push(key);
        file.add_missing_jwt_keys(now);
        file
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

    /// Gives a file written before JWTs existed an active JWT key and the next one;
    /// returns whether it had none.
    pub fn add_missing_jwt_keys(&mut self, now: UnixTime) -> bool {
        if !self.jwt_keys.is_empty() {
            return false;
        }
        let mut active = self.new_jwt_key(now);
        active.active_from = Some(now);
        self.jwt_keys.push(active);
        let next = self.new_jwt_key(now);
        self.jwt_keys.push(next);
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
        if !file.jwt_keys.is_empty() {
            file.jwt_key_set().map_err(damaged)?;
        }
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

    /// Adds a fresh signing key and makes it the one new tokens are signed with; tokens
    /// signed with older keys stay valid until those keys are retired. The JWT key
    /// published as the next one starts signing, the one it replaces stays published for
    /// the JWTs it signed, and a fresh key is published as the next.
    pub fn rotate(&mut self, now: UnixTime) -> Rotation {
        let key = self.new_key(now);
        self.active = key.kid.clone();
        self.keys.push(key);
        for old in self.jwt_keys.iter_mut().filter(|k| k.is_active()) {
            old.replaced_at = Some(now);
        }
        let jwt = match self.jwt_keys.iter_mut().find(|k| k.is_next()) {
            Some(next) => {
                next.active_from = Some(now);
                next.kid.clone()
            }
            None => {
                let mut key = self.new_jwt_key(now);
                key.active_from = Some(now);
                let kid = key.kid.clone();
                self.jwt_keys.push(key);
                kid
            }
        };
        let next = self.new_jwt_key(now);
        self.jwt_keys.push(next);
        Rotation {
            signing: self.active.clone(),
            jwt,
        }
    }

    /// A kid no key of this file has, of either kind.
    fn unused_kid(&self) -> String {
        loop {
            let id: [u8; 4] = random::bytes();
            let kid: String = id.iter().map(|b| format!("{b:02x}")).collect();
            let taken = self.keys.iter().any(|k| k.kid == kid)
                || self.jwt_keys.iter().any(|k| k.kid == kid);
            if !taken {
                return kid;
            }
        }
    }

    fn new_key(&self, now: UnixTime) -> StoredKey {
        let secret: [u8; 32] = random::bytes();
        StoredKey {
            kid: self.unused_kid(),
            secret: STANDARD.encode(secret),
            created_at: now,
            retired_at: None,
        }
    }

    fn new_jwt_key(&self, now: UnixTime) -> StoredJwtKey {
        StoredJwtKey {
            kid: self.unused_kid(),
            pkcs8: STANDARD.encode(jwt::generate_pkcs8()),
            created_at: now,
            active_from: None,
            replaced_at: None,
            retired_at: None,
        }
    }

    /// Stops accepting tokens signed with `kid` at once: a signing key's session tokens,
    /// or, for a JWT key, the JWTs it signed, by taking it out of the JWKS. The active
    /// keys cannot be retired: rotate first, so there is always a key to sign with.
    pub fn retire(&mut self, kid: &str, now: UnixTime) -> Result<(), String> {
        if let Some(key) = self.jwt_keys.iter_mut().find(|k| k.kid == kid) {
            if key.is_active() {
                return Err(format!(
                    "`{kid}` is the active JWT key; run `wxauth keys rotate` first"
                ));
            }
            if key.retired_at.is_some() {
                return Err(format!("key `{kid}` is already retired"));
            }
            key.retired_at = Some(now);
            return Ok(());
        }
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

    /// The JWT keys not retired: the active one, the next, and the replaced ones.
    pub fn jwt_key_set(&self) -> Result<JwtKeySet, String> {
        let mut active = None;
        let (mut next, mut replaced) = (Vec::new(), Vec::new());
        for stored in self.jwt_keys.iter().filter(|k| k.retired_at.is_none()) {
            let key = stored.key()?;
            if stored.is_active() {
                if active.is_some() {
                    return Err("the key file has more than one active JWT key".into());
                }
                active = Some(key);
            } else if let Some(replaced_at) = stored.replaced_at {
                replaced.push(Replaced {
                    jwk: key.jwk(),
                    replaced_at,
                });
            } else {
                next.push(key.jwk());
            }
        }
        let active = active.ok_or("the key file has no active JWT key")?;
        Ok(JwtKeySet {
            active,
            next,
            replaced,
        })
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

fn new_data_key() -> String {
    STANDARD.encode(random::bytes::<DATA_KEY_LEN>())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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
        let new_kid = file.rotate(10).signing;
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

    fn jwt_kids(file: &KeyFile) -> (String, Vec<String>) {
        let set = file.jwt_key_set().unwrap();
        let published = set
            .published(i64::MAX - 10_000, 0)
            .into_iter()
            .map(|k| k.kid)
            .collect();
        (set.active.kid().to_owned(), published)
    }

    #[test]
    fn a_rotation_moves_the_jwt_keys_along_their_states() {
        let mut file = KeyFile::generate(0);
        let (first, published) = jwt_kids(&file);
        assert_eq!(published.len(), 2, "the active key and the next");
        let next = published[1].clone();

        let rotation = file.rotate(100);
        assert_eq!(
            rotation.jwt, next,
            "the published next key is the one that signs"
        );
        assert_eq!(rotation.signing, file.active);
        let set = file.jwt_key_set().unwrap();
        assert_eq!(set.active.kid(), next);
        assert_eq!(set.next.len(), 1);
        assert_eq!(set.replaced.len(), 1);
        assert_eq!(set.replaced[0].jwk.kid, first);
        assert_eq!(set.replaced[0].replaced_at, 100);

        // Every kid in the file is unique, across both kinds.
        let mut kids: Vec<&str> = file.keys.iter().map(|k| k.kid.as_str()).collect();
        kids.extend(file.jwt_keys.iter().map(|k| k.kid.as_str()));
        let count = kids.len();
        kids.sort();
        kids.dedup();
        assert_eq!(kids.len(), count);

        assert!(
            file.retire(&next, 200)
                .unwrap_err()
                .contains("active JWT key")
        );
        file.retire(&first, 200).unwrap();
        assert!(file.retire(&first, 300).unwrap_err().contains("already"));
        assert!(file.jwt_key_set().unwrap().replaced.is_empty());

        // With the next key retired, a rotation makes the key it activates.
        let waiting = file.jwt_key_set().unwrap().next[0].kid.clone();
        file.retire(&waiting, 300).unwrap();
        assert!(file.jwt_key_set().unwrap().next.is_empty());
        let rotation = file.rotate(400);
        assert_ne!(rotation.jwt, waiting);
        let (active, published) = jwt_kids(&file);
        assert_eq!(active, rotation.jwt);
        assert!(!published.contains(&waiting));
        assert_eq!(file.jwt_key_set().unwrap().next.len(), 1);
    }

    #[test]
    fn jwt_keys_survive_a_save_and_stay_out_of_debug_output() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let mut file = KeyFile::generate(0);
        file.rotate(5);
        file.save(&path).unwrap();
        let again = KeyFile::load(&path).unwrap();
        let claims = br#"{"sub":"u"}"#;
        let jwt = again.jwt_key_set().unwrap().active.sign(claims);
        assert_eq!(
            jwt.split('.').nth(1).unwrap(),
            URL_SAFE_NO_PAD.encode(claims)
        );
        assert_eq!(jwt_kids(&file), jwt_kids(&again));
        let debug = format!("{again:?}");
        for key in &again.jwt_keys {
            assert!(!debug.contains(&key.pkcs8));
        }

        let mut text: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        text["jwt_keys"][1]["pkcs8"] = "AAAA".into();
        std::fs::write(&path, text.to_string()).unwrap();
        let err = KeyFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
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
