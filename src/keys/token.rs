//! The session token: `v2.<kid>.<sid>.<mac>`, where `sid` names a session and `mac` is
//! HMAC-SHA256 over everything before it, keyed by signing key `kid`. A `v2` sid is the
//! session's creation time (Unix milliseconds, 6 bytes) followed by 16 random bytes;
//! tokens of the first format, `v1`, carry 16 random bytes alone and stay valid.
//! The token carries nothing personal; the database decides whether its session lives.
//! A forged or garbled token is rejected here, before any database work.

use std::fmt;
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::{digest, hmac};

use crate::keys::random;

/// Bytes of randomness in a session secret.
const RANDOM_LEN: usize = 16;
/// Bytes of creation time that lead a `v2` secret.
const TIME_LEN: usize = 6;
/// The length of a `v1` secret.
const V1_LEN: usize = RANDOM_LEN;
/// The length of a `v2` secret.
const V2_LEN: usize = TIME_LEN + RANDOM_LEN;
const MAC_LEN: usize = 32;
/// The longest token this codec produces or accepts.
pub const MAX_TOKEN_LEN: usize = 200;

/// The secret inside a token that names a session. The database holds only its
/// [`SessionSecret::lookup_key`], from which the secret cannot be recovered.
#[derive(Clone, PartialEq, Eq)]
pub enum SessionSecret {
    /// The first format: 16 random bytes.
    V1([u8; V1_LEN]),
    /// The creation time in Unix milliseconds (big-endian, 6 bytes), then 16 random
    /// bytes.
    V2([u8; V2_LEN]),
}

impl SessionSecret {
    /// Bytes of randomness in a secret of the current format.
    pub const RANDOM_LEN: usize = RANDOM_LEN;

    /// A fresh secret, in the current format.
    pub fn generate() -> SessionSecret {
        SessionSecret::new(random::bytes())
    }

    /// A new secret of the current format around `random`, which must be fresh from the
    /// operating system (for a caller that draws it with other values at once).
    pub fn new(random: [u8; RANDOM_LEN]) -> SessionSecret {
        let mut bytes = [0u8; V2_LEN];
        bytes[..TIME_LEN].copy_from_slice(&random::time_prefix());
        bytes[TIME_LEN..].copy_from_slice(&random);
        SessionSecret::V2(bytes)
    }

    /// Rebuilds a secret from its raw bytes; their length tells the format.
    pub fn from_bytes(bytes: &[u8]) -> Option<SessionSecret> {
        if let Ok(v1) = bytes.try_into() {
            Some(SessionSecret::V1(v1))
        } else {
            bytes.try_into().ok().map(SessionSecret::V2)
        }
    }

    /// The raw bytes, for sealing into a login-code record.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            SessionSecret::V1(bytes) => bytes,
            SessionSecret::V2(bytes) => bytes,
        }
    }

    /// The SHA-256 of the secret: the key of the server's copy of its session.
    pub fn hash(&self) -> [u8; 32] {
        let d = digest::digest(&digest::SHA256, self.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }

    /// What `sessions.secret_hash` holds for this secret: its SHA-256, led for a `v2`
    /// secret by the creation time. Sessions created one after another then sit at the
    /// end of the index, not at random places in it, so that a burst of logins writes a
    /// page or two of it instead of a page each. The time is no secret: the session's
    /// row holds it as `created_at`.
    pub fn lookup_key(&self) -> Vec<u8> {
        let hash = self.hash();
        match self {
            SessionSecret::V1(_) => hash.to_vec(),
            SessionSecret::V2(bytes) => [&bytes[..TIME_LEN], &hash[..]].concat(),
        }
    }

    fn version(&self) -> &'static str {
        match self {
            SessionSecret::V1(_) => "v1",
            SessionSecret::V2(_) => "v2",
        }
    }
}

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret(<redacted>)")
    }
}

/// Why a token was refused. Every variant answers `invalid_token`; the distinction is for
/// logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not in the v1 or v2 format")]
    Malformed,
    #[error("the token names a signing key that is not known")]
    UnknownKey,
    #[error("the token's signature does not match")]
    BadSignature,
}

/// The signing keys the server accepts, and the one it signs with.
pub struct Keyring {
    active: String,
    /// A handful at most (the active key and those retiring), so a list searched in
    /// order beats hashing the key id on every request.
    keys: Vec<(String, hmac::Key)>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<_> = self.keys.iter().map(|(kid, _)| kid).collect();
        kids.sort();
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("kids", &kids)
            .finish()
    }
}

/// Whether a key id is well-formed: 1–16 lowercase letters and digits.
pub fn is_valid_kid(kid: &str) -> bool {
    (1..=16).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

impl Keyring {
    /// A keyring from `(kid, secret)` pairs; `active` must be among them.
    pub fn new<'a>(
        active: &str,
        keys: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Option<Keyring> {
        let mut list: Vec<(String, hmac::Key)> = Vec::new();
        for (kid, secret) in keys {
            let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
            // A later entry for the same id replaces the earlier one.
            match list.iter_mut().find(|(k, _)| k == kid) {
                Some(entry) => entry.1 = key,
                None => list.push((kid.to_owned(), key)),
            }
        }
        if !list.iter().any(|(kid, _)| kid == active)
            || !list.iter().all(|(kid, _)| is_valid_kid(kid))
        {
            return None;
        }
        Some(Keyring {
            active: active.to_owned(),
            keys: list,
        })
    }

    fn key(&self, kid: &str) -> Option<&hmac::Key> {
        self.keys.iter().find(|(k, _)| k == kid).map(|(_, key)| key)
    }

    /// The id of the key new tokens are signed with.
    pub fn active_kid(&self) -> &str {
        &self.active
    }

    /// Signs a token for a session with the active key, in the secret's format.
    pub fn sign(&self, secret: &SessionSecret) -> String {
        let mut token = String::with_capacity(100);
        token.push_str(secret.version());
        token.push('.');
        token.push_str(&self.active);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(secret.as_bytes(), &mut token);
        let tag = hmac::sign(
            self.key(&self.active)
                .expect("the active key is in the ring"),
            token.as_bytes(),
        );
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut token);
        token
    }

    /// Checks a token's form and signature (in constant time) and returns its session
    /// secret.
    pub fn verify(&self, token: &str) -> Result<SessionSecret, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (signed, mac) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let mut parts = signed.split('.');
        let (Some(version), Some(kid), Some(sid), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        if !is_valid_kid(kid) {
            return Err(TokenError::Malformed);
        }
        let len = match version {
            "v2" => V2_LEN,
            "v1" => V1_LEN,
            _ => return Err(TokenError::Malformed),
        };
        let mut bytes = [0u8; V2_LEN];
        decode_exact(sid, &mut bytes[..len])?;
        let secret = SessionSecret::from_bytes(&bytes[..len]).ok_or(TokenError::Malformed)?;
        let mut tag = [0u8; MAC_LEN];
        decode_exact(mac, &mut tag)?;
        let key = self.key(kid).ok_or(TokenError::UnknownKey)?;
        hmac::verify(key, signed.as_bytes(), &tag).map_err(|_| TokenError::BadSignature)?;
        Ok(secret)
    }
}

/// Decodes canonical unpadded base64url into exactly `out.len()` bytes.
fn decode_exact(text: &str, out: &mut [u8]) -> Result<(), TokenError> {
    if text.len() != base64::encoded_len(out.len(), false).unwrap_or(0) {
        return Err(TokenError::Malformed);
    }
    match URL_SAFE_NO_PAD.decode_slice(text, out) {
        Ok(n) if n == out.len() => Ok(()),
        _ => Err(TokenError::Malformed),
    }
}

/// The signing keys in use, replaced whole when `wxauth keys rotate|retire` changes the
/// key file while the server runs.
#[derive(Debug)]
pub struct SigningKeys(RwLock<Arc<Keyring>>);

impl SigningKeys {
    /// Starts with `keyring`.
    pub fn new(keyring: Keyring) -> SigningKeys {
        SigningKeys(RwLock::new(Arc::new(keyring)))
    }

    /// The keys as of now.
    pub fn current(&self) -> Arc<Keyring> {
        Arc::clone(&self.0.read().expect("keyring lock poisoned"))
    }

    /// Puts `keyring` in place of the keys in use.
    pub fn replace(&self, keyring: Keyring) {
        *self.0.write().expect("keyring lock poisoned") = Arc::new(keyring);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        Keyring::new(
            "k2",
            [
                ("k1", b"first key bytes".as_slice()),
                ("k2", b"second key".as_slice()),
            ],
        )
        .unwrap()
    }

    #[test]
    fn round_trips_and_stays_short() {
        let ring = keyring();
        let secret = SessionSecret::generate();
        let token = ring.sign(&secret);
        assert!(token.starts_with("v2.k2."), "{token}");
        assert!(token.len() <= MAX_TOKEN_LEN);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        );
        assert_eq!(ring.verify(&token).unwrap(), secret);
        let v1 = SessionSecret::from_bytes(&[4; 16]).unwrap();
        assert_eq!(ring.verify(&ring.sign(&v1)).unwrap(), v1);
    }

    #[test]
    fn known_vectors_verify() {
        // Signed once with key k1 = "first key bytes"; they pin both formats.
        let ring = keyring();
        let k1 = Keyring::new("k1", [("k1", b"first key bytes".as_slice())]).unwrap();
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"first key bytes");
        for (bytes, signed) in [
            (vec![1u8; 16], "v1.k1.AQEBAQEBAQEBAQEBAQEBAQ"),
            (vec![2u8; 22], "v2.k1.AgICAgICAgICAgICAgICAgICAgICAg"),
        ] {
            let secret = SessionSecret::from_bytes(&bytes).unwrap();
            let token = k1.sign(&secret);
            let mac = hmac::sign(&key, signed.as_bytes());
            assert_eq!(
                token,
                format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()))
            );
            assert_eq!(ring.verify(&token).unwrap(), secret);
        }
        assert!(SessionSecret::from_bytes(&[0; 20]).is_none());
    }

    #[test]
    fn lookup_keys_are_hashes_led_by_the_creation_time() {
        let v1 = SessionSecret::from_bytes(&[1; 16]).unwrap();
        assert_eq!(v1.lookup_key(), v1.hash());
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let first = SessionSecret::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = SessionSecret::generate();
        let key = first.lookup_key();
        assert_eq!(key.len(), 38);
        assert_eq!(key[6..], first.hash());
        let mut millis = [0u8; 8];
        millis[2..].copy_from_slice(&key[..6]);
        let millis = u64::from_be_bytes(millis);
        assert!((before..before + 1000).contains(&millis), "{millis}");
        assert!(
            key < second.lookup_key(),
            "later sessions sort after earlier ones"
        );
        assert_ne!(first.as_bytes()[6..], second.as_bytes()[6..]);
    }

    #[test]
    fn every_flipped_byte_is_rejected() {
        let ring = keyring();
        let token = ring.sign(&SessionSecret::generate());
        for i in 0..token.len() {
            for flip in [0x01u8, 0x20, 0x80] {
                let mut bytes = token.clone().into_bytes();
                bytes[i] ^= flip;
                let Ok(mutated) = String::from_utf8(bytes) else {
                    continue;
                };
                assert!(ring.verify(&mutated).is_err(), "accepted {mutated}");
            }
        }
    }

    #[test]
    fn refuses_unknown_keys_and_odd_shapes() {
        let ring = keyring();
        let other = Keyring::new("k9", [("k9", b"elsewhere".as_slice())]).unwrap();
        let foreign = other.sign(&SessionSecret::generate());
        assert_eq!(ring.verify(&foreign), Err(TokenError::UnknownKey));
        let impostor = Keyring::new("k1", [("k1", b"guessed".as_slice())]).unwrap();
        assert_eq!(
            ring.verify(&impostor.sign(&SessionSecret::generate())),
            Err(TokenError::BadSignature)
        );
        let good = ring.sign(&SessionSecret::generate());
        for bad in [
            String::new(),
            "v1".into(),
            "v1.k2".into(),
            format!("{good}.extra"),
            good.replacen("v2", "v1", 1),
            good.replacen("v2", "v3", 1),
            format!(" {good}"),
            good[..good.len() - 1].to_owned(),
            "x".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(ring.verify(&bad), Err(TokenError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let secret = SessionSecret::generate();
        assert_eq!(format!("{secret:?}"), "SessionSecret(<redacted>)");
        assert!(!format!("{:?}", keyring()).contains("second key"));
    }
}
