// Verifies wxauth's access JWTs in a Node backend, with jose (`npm install jose`), and
// an Express middleware that lets only requests with a good JWT through.
//
//   import { accessTokenVerifier } from "./wxauth-jwt.mjs";
//
//   const wxauth = accessTokenVerifier({ issuer: "https://auth.example.com" });
//   app.get("/api/orders", wxauth.requireUser, (req, res) => {
//     res.json(ordersOf(req.user.sub)); // req.user holds the JWT's claims
//   });
//
// The keys are found from the issuer alone, as an OpenID Connect resource server finds
// them: the issuer's /.well-known/openid-configuration names the JWKS. Pass `jwksUri` to
// fetch the keys from another address, e.g. wxauth's private one. jose keeps the keys
// for ten minutes and fetches them again for a JWT that names a key it lacks.

import { createRemoteJWKSet, errors, jwtVerify } from "jose";

export function accessTokenVerifier({ issuer, audience = "wxauth", jwksUri } = {}) {
  let keys;

  // Found on first use rather than at start, so that the backend starts while wxauth is
  // down; a failed discovery is tried again on the next request.
  function keySet() {
    keys ??= (async () => {
      jwksUri ??= await discoverJwksUri(issuer);
      return createRemoteJWKSet(new URL(jwksUri));
    })().catch((err) => {
      keys = undefined;
      throw err;
    });
    return keys;
  }

  // The claims of a good access JWT; throws a jose error otherwise.
  async function verify(token) {
    const { payload } = await jwtVerify(token, await keySet(), {
      // wxauth's public_url exactly as configured: jose compares it with the JWT's iss
      // character for character.
      issuer,
      audience,
      // Never take the algorithm from the JWT itself.
      algorithms: ["ES256"],
      // RFC 9068: an access JWT says so, so that no other JWT signed by the same keys
      // can pass for one.
      typ: "at+jwt",
      requiredClaims: ["sub", "exp", "iat"],
    });
    return payload;
  }

  // Express middleware: a bad JWT gets 401; wxauth out of reach is the app's error.
  function requireUser(req, res, next) {
    const match = /^Bearer +(\S+)$/i.exec(req.headers.authorization ?? "");
    if (!match) {
      unauthorized(res, "a bearer token is needed");
      return;
    }
    verify(match[1]).then(
      (claims) => {
        req.user = claims;
        next();
      },
      (err) => (err instanceof errors.JOSEError ? unauthorized(res, err.message) : next(err)),
    );
  }

  return { verify, requireUser, jwksUri: () => jwksUri };
}

function unauthorized(res, message) {
  res
    .status(401)
    .set("WWW-Authenticate", 'Bearer error="invalid_token"')
    .json({ error: "invalid_token", message });
}

// The jwks_uri of the issuer's OpenID configuration.
async function discoverJwksUri(issuer) {
  const url = `${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  if (!response.ok) {
    throw new Error(`${url} answered ${response.status}`);
  }
  const metadata = await response.json();
  if (metadata.issuer !== issuer) {
    throw new Error(`${url} is the configuration of ${metadata.issuer}, not of ${issuer}`);
  }
  return metadata.jwks_uri;
}
