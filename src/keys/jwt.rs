//! Access JWTs: ES256 (ECDSA P-256 with SHA-256, ring) compact JWS, and the JWKS that
//! publishes their public keys.
//!
//! A JWT key passes through four states in the key file: *next* (published, not yet
//! signing), *active* (signing), *replaced* (published until `jwt_ttl` after it stopped
//! signing, so JWTs it signed verify until they expire) and *retired* (gone at once).
//! Publishing the next key ahead of its turn means a verifier holding a cached JWKS already
//! knows the key a rotation brings in.

use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::Serialize;

use crate::clock::UnixTime;

/// How long past `jwt_ttl` a replaced key stays published: a running server notices a
/// rotation within a second and may sign with the old key until then, and the clocks of
/// the machine that rotated and of the verifiers may differ a little.
pub const REPLACED_KEY_GRACE: i64 = 60;

/// A new P-256 private key as a PKCS#8 document.
pub fn generate_pkcs8() -> Vec<u8> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .expect("the operating system's random source works")
        .as_ref()
        .to_vec()
}

/// One JWT key, able to sign.
pub struct JwtKey {
    kid: String,
    pair: EcdsaKeyPair,
    /// The JWS header for this key, base64url, followed by `.`.
    header: String,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl JwtKey {
    /// The key named `kid` from its PKCS#8 document.
    pub fn from_pkcs8(kid: &str, pkcs8: &[u8]) -> Result<JwtKey, String> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|e| format!("JWT key `{kid}` is not a P-256 PKCS#8 key: {e}"))?;
        let header = serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": kid});
        let mut encoded = URL_SAFE_NO_PAD.encode(header.to_string());
        encoded.push('.');
        Ok(JwtKey {
            kid: kid.to_owned(),
            pair,
            header: encoded,
        })
    }

    /// The key id in the JWS header and the JWKS.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Jwk {
        // An uncompressed point: 0x04, then x and y of 32 bytes each.
        let point = self.pair.public_key().as_ref();
        Jwk {
            kty: "EC",
            crv: "P-256",
            x: URL_SAFE_NO_PAD.encode(&point[1..33]),
            y: URL_SAFE_NO_PAD.encode(&point[33..65]),
            kid: self.kid.clone(),
            alg: "ES256",
            use_: "sig",
        }
    }

    /// The compact JWS of `claims` (a JSON object), signed with this key.
    pub fn sign(&self, claims: &[u8]) -> String {
        let mut jws = String::with_capacity(self.header.len() + claims.len() * 4 / 3 + 90);
        jws.push_str(&self.header);
        URL_SAFE_NO_PAD.encode_string(claims, &mut jws);
        let signature = self
            .pair
            .sign(&SystemRandom::new(), jws.as_bytes())
            .expect("ECDSA signing with a valid key succeeds");
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut jws);
        jws
    }
}

/// A public key in the JWKS (RFC 7517), with the `alg` and `use` verifiers look for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jwk {
    pub kty: &'static str,
    pub crv: &'static str,
    pub x: String,
    pub y: String,
    pub kid: String,
    pub alg: &'static str,
    #[serde(rename = "use")]
    pub use_: &'static str,
}

/// A published key that no longer signs: its JWK, and when it stopped.
#[derive(Debug, Clone)]
pub struct Replaced {
    pub jwk: Jwk,
    pub replaced_at: UnixTime,
}

/// The JWT keys of one key file: the one that signs and the ones only published.
#[derive(Debug)]
pub struct JwtKeySet {
    /// Signs every new JWT.
    pub active: JwtKey,
    /// Published ahead of the next rotation.
    pub next: Vec<Jwk>,
    /// Published while JWTs they signed may still be live.
    pub replaced: Vec<Replaced>,
}

impl JwtKeySet {
    /// The keys a verifier needs at `now` for JWTs that live `ttl` seconds: the active
    /// one first, then the next, then those replaced less than `ttl` (and the grace) ago.
    pub fn published(&self, now: UnixTime, ttl: i64) -> Vec<Jwk> {
        let mut keys = vec![self.active.jwk()];
        keys.extend(self.next.iter().cloned());
        keys.extend(
            self.replaced
                .iter()
                .filter(|r| now < r.replaced_at.saturating_add(ttl + REPLACED_KEY_GRACE))
                .map(|r| r.jwk.clone()),
        );
        keys
    }
}

/// The JWT keys in use, replaced whole when `wxauth keys` changes the key file while the
/// server runs.
#[derive(Debug)]
pub struct JwtKeys(RwLock<Arc<JwtKeySet>>);

impl JwtKeys {
    /// Starts with `set`.
    pub fn new(set: JwtKeySet) -> JwtKeys {
        JwtKeys(RwLock::new(Arc::new(set)))
    }

    /// The keys as of now.
    pub fn current(&self) -> Arc<JwtKeySet> {
        Arc::clone(&self.0.read().expect("JWT key lock poisoned"))
    }

    /// Puts `set` in place of the keys in use.
    pub fn replace(&self, set: JwtKeySet) {
        *self.0.write().expect("JWT key lock poisoned") = Arc::new(set);
    }
}

#[cfg(test)]
mod tests {
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
    use serde_json::Value;

    use super::*;

    fn decode(part: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(part).unwrap()
    }

    #[test]
    fn a_signed_jwt_verifies_against_its_jwk_and_nothing_else() {
        let key = JwtKey::from_pkcs8("j1", &generate_pkcs8()).unwrap();
        let jwt = key.sign(br#"{"sub":"u_1"}"#);
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value = serde_json::from_slice(&decode(parts[0])).unwrap();
        assert_eq!(
            header,
            serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": "j1"})
        );
        assert_eq!(decode(parts[1]), br#"{"sub":"u_1"}"#);

        let jwk = key.jwk();
        let mut point = vec![4u8];
        point.extend(decode(&jwk.x));
        point.extend(decode(&jwk.y));
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point);
        let signed = jwt.rsplit_once('.').unwrap().0;
        let signature = decode(parts[2]);
        assert_eq!(signature.len(), 64, "JWS wants r || s, not DER");
        public.verify(signed.as_bytes(), &signature).unwrap();

        let tampered = signed.replace(parts[1], &URL_SAFE_NO_PAD.encode(br#"{"sub":"u_2"}"#));
        assert!(public.verify(tampered.as_bytes(), &signature).is_err());
        let other = JwtKey::from_pkcs8("j2", &generate_pkcs8()).unwrap().jwk();
        assert_ne!((other.x, other.y), (jwk.x, jwk.y));
    }

    #[test]
    fn the_jwk_has_what_verifiers_look_for() {
        let key = JwtKey::from_pkcs8("j1", &generate_pkcs8()).unwrap();
        let jwk = serde_json::to_value(key.jwk()).unwrap();
        let fields: Vec<&str> = jwk
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(fields.len(), 7, "{jwk}");
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], "j1");
        assert_eq!(decode(jwk["x"].as_str().unwrap()).len(), 32);
        assert_eq!(decode(jwk["y"].as_str().unwrap()).len(), 32);
    }

    #[test]
    fn a_replaced_key_is_published_until_ttl_and_grace_have_passed() {
        let key = |kid: &str| JwtKey::from_pkcs8(kid, &generate_pkcs8()).unwrap();
        let set = JwtKeySet {
            active: key("a"),
            next: vec![key("n").jwk()],
            replaced: vec![Replaced {
                jwk: key("r").jwk(),
                replaced_at: 1000,
            }],
        };
        let kids =
            |now| -> Vec<String> { set.published(now, 600).into_iter().map(|k| k.kid).collect() };
        assert_eq!(kids(1000), ["a", "n", "r"]);
        assert_eq!(kids(1000 + 600 + REPLACED_KEY_GRACE - 1), ["a", "n", "r"]);
        assert_eq!(kids(1000 + 600 + REPLACED_KEY_GRACE), ["a", "n"]);
    }

    #[test]
    fn garbage_is_not_a_key() {
        let err = JwtKey::from_pkcs8("j1", b"not a key").unwrap_err();
        assert!(err.contains("j1"), "{err}");
    }
}
