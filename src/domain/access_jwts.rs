//! Access JWTs for the team's own backend: short-lived ES256 JWTs naming the user and the
//! session, which a service verifies against the JWKS with no call to wxauth. They carry
//! no openid, unionid or personal data; the client holds those.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use crate::clock::Clock;
use crate::keys::jwt::{Jwk, JwtKeys};
use crate::keys::random;

use super::sessions::Authenticated;

/// The path of the JWKS under `public_url`.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Issues access JWTs and publishes the keys that verify them.
pub struct AccessJwts {
    keys: Arc<JwtKeys>,
    clock: Arc<dyn Clock>,
    /// `public_url`: the `iss` of every JWT and the `issuer` of the discovery document.
    issuer: String,
    audience: String,
    ttl: i64,
}

/// A JWT just signed.
#[derive(Debug)]
pub struct IssuedJwt {
    /// The compact JWS.
    pub token: String,
    /// Seconds until its `exp`.
    pub expires_in: i64,
}

/// The claims of an access JWT, in the order they are written.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    sid: &'a str,
    appid: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: &'a str,
}

/// The discovery document at `/.well-known/openid-configuration`: what a resource server
/// configured with the issuer alone needs to find the keys. wxauth is no OpenID provider
/// (it has no authorization endpoint), so it names nothing else.
#[derive(Debug, Serialize)]
pub struct Discovery<'a> {
    pub issuer: &'a str,
    pub jwks_uri: String,
    /// The one algorithm its JWTs are signed with.
    pub id_token_signing_alg_values_supported: [&'static str; 1],
    /// Every caller sees the same `sub` for a user.
    pub subject_types_supported: [&'static str; 1],
}

impl AccessJwts {
    /// JWTs from `issuer` for `audience`, each living `ttl` seconds.
    pub fn new(
        keys: Arc<JwtKeys>,
        clock: Arc<dyn Clock>,
        issuer: &str,
        audience: &str,
        ttl: i64,
    ) -> AccessJwts {
        AccessJwts {
            keys,
            clock,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
        }
    }

    /// A JWT for the session `auth` proved live (and its user not banned).
    pub fn issue(&self, auth: &Authenticated) -> IssuedJwt {
        let iat = self.clock.now();
        let jti = URL_SAFE_NO_PAD.encode(random::bytes::<16>());
        let claims = Claims {
            iss: &self.issuer,
            sub: &auth.user.public_id,
            sid: &auth.session.public_id,
            appid: &auth.identity.appid,
            aud: &self.audience,
            iat,
            exp: iat + self.ttl,
            jti: &jti,
        };
        let claims = serde_json::to_vec(&claims).expect("claims serialize");
        IssuedJwt {
            token: self.keys.current().active.sign(&claims),
            expires_in: self.ttl,
        }
    }

    /// The keys that verify JWTs live now.
    pub fn jwks(&self) -> Vec<Jwk> {
        self.keys.current().published(self.clock.now(), self.ttl)
    }

    /// The discovery document.
    pub fn discovery(&self) -> Discovery<'_> {
        Discovery {
            issuer: &self.issuer,
            jwks_uri: format!("{}{JWKS_PATH}", self.issuer),
            id_token_signing_alg_values_supported: ["ES256"],
            subject_types_supported: ["public"],
        }
    }
}
