//! The session token: `v1.<kid>.<sid>.<mac>`, where `sid` is a random 128-bit session
//! secret and `mac` is HMAC-SHA256 over everything before it, keyed by signing key `kid`.
//! The token carries nothing personal; the database decides whether its session lives.
//! A forged or garbled token is rejected here, before any database work.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::{digest, hmac};

use crate::random;

const VERSION: &str = "v1";
/// Bytes of randomness in a session secret.
pub const SESSION_SECRET_LEN: usize = 16;
const MAC_LEN: usize = 32;
/// The longest token this codec produces or accepts.
pub const MAX_TOKEN_LEN: usize = 200;

/// The random secret inside a token that names a session. Only its SHA-256 is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionSecret([u8; SESSION_SECRET_LEN]);

impl SessionSecret {
    /// A fresh random secret.
    pub fn generate() -> SessionSecret {
        SessionSecret(random::bytes())
    }

    /// Rebuilds a secret from its raw bytes.
    pub fn from_bytes(bytes: [u8; SESSION_SECRET_LEN]) -> SessionSecret {
        SessionSecret(bytes)
    }

    /// The raw bytes, for sealing into a login-code record.
    pub fn as_bytes(&self) -> &[u8; SESSION_SECRET_LEN] {
        &self.0
    }

    /// The SHA-256 under which the session is stored.
    pub fn hash(&self) -> [u8; 32] {
        let d = digest::digest(&digest::SHA256, &self.0);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
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
    #[error("the token is not in the v1 format")]
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

    /// Signs a token for a session with the active key.
    pub fn sign(&self, secret: &SessionSecret) -> String {
        let mut token = String::with_capacity(100);
        token.push_str(VERSION);
        token.push('.');
        token.push_str(&self.active);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(secret.0, &mut token);
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
        let (Some(VERSION), Some(kid), Some(sid), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        if !is_valid_kid(kid) {
            return Err(TokenError::Malformed);
        }
        let mut secret = [0u8; SESSION_SECRET_LEN];
        decode_exact(sid, &mut secret)?;
        let mut tag = [0u8; MAC_LEN];
        decode_exact(mac, &mut tag)?;
        let key = self.key(kid).ok_or(TokenError::UnknownKey)?;
        hmac::verify(key, signed.as_bytes(), &tag).map_err(|_| TokenError::BadSignature)?;
        Ok(SessionSecret(secret))
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
        assert!(token.starts_with("v1.k2."), "{token}");
        assert!(token.len() <= MAX_TOKEN_LEN);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        );
        assert_eq!(ring.verify(&token).unwrap(), secret);
    }

    #[test]
    fn a_known_vector_verifies() {
        // Signed once with key k1 = "first key bytes" and an all-0x01 secret; pins the format.
        let ring = keyring();
        let secret = SessionSecret::from_bytes([1; 16]);
        let k1 = Keyring::new("k1", [("k1", b"first key bytes".as_slice())]).unwrap();
        let token = k1.sign(&secret);
        assert_eq!(ring.verify(&token).unwrap(), secret);
        let expected_mac = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, b"first key bytes"),
            b"v1.k1.AQEBAQEBAQEBAQEBAQEBAQ",
        );
        assert_eq!(
            token,
            format!(
                "v1.k1.AQEBAQEBAQEBAQEBAQEBAQ.{}",
                URL_SAFE_NO_PAD.encode(expected_mac.as_ref())
            )
        );
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
            good.replacen("v1", "v2", 1),
            format!(" {good}"),
            good[..good.len() - 1].to_owned(),
            "x".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(ring.verify(&bad), Err(TokenError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let secret = SessionSecret::from_bytes([7; 16]);
        assert_eq!(format!("{secret:?}"), "SessionSecret(<redacted>)");
        assert!(!format!("{:?}", keyring()).contains("second key"));
    }
}
