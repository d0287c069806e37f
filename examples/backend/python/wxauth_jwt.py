"""Verifies wxauth's access JWTs in a Python backend, with PyJWT.

    pip install "PyJWT[crypto]"

    verifier = AccessTokenVerifier("https://auth.example.com")  # wxauth's public_url
    claims = verifier.verify(jwt_from_the_authorization_header)
    claims["sub"]  # the user's id, u_...

verify() raises a jwt.PyJWTError for a JWT that is not good: forged or altered,
expired, for another audience or issuer, or signed by a key wxauth no longer publishes.

The keys are found from the issuer alone, as an OpenID Connect resource server finds
them: the issuer's /.well-known/openid-configuration names the JWKS. Pass jwks_uri to
fetch the keys from another address, e.g. wxauth's private one. PyJWKClient keeps the
keys for five minutes and fetches them again for a JWT that names a key it lacks.
"""

import json
import urllib.request

import jwt


class AccessTokenVerifier:
    def __init__(self, issuer, audience="wxauth", jwks_uri=None):
        # The issuer must be wxauth's public_url exactly as configured: PyJWT compares
        # it with the JWT's iss character for character.
        self.issuer = issuer
        self.audience = audience
        self.jwks_uri = jwks_uri
        self._keys = None

    def verify(self, token):
        """The claims of a good access JWT; raises jwt.PyJWTError otherwise."""
        key = self._key_set().get_signing_key_from_jwt(token)
        decoded = jwt.decode_complete(
            token,
            key,
            # Never take the algorithm from the JWT itself.
            algorithms=["ES256"],
            audience=self.audience,
            issuer=self.issuer,
            options={"require": ["iss", "sub", "aud", "exp", "iat"]},
        )
        # RFC 9068: an access JWT says so, so that no other JWT signed by the same keys
        # can pass for one.
        if decoded["header"].get("typ") != "at+jwt":
            raise jwt.InvalidTokenError("not an access JWT: typ is not at+jwt")
        return decoded["payload"]

    def _key_set(self):
        # Found on first use rather than at start, so that the backend starts while
        # wxauth is down.
        if self._keys is None:
            if self.jwks_uri is None:
                self.jwks_uri = discover_jwks_uri(self.issuer)
            self._keys = jwt.PyJWKClient(self.jwks_uri, timeout=10)
        return self._keys


def discover_jwks_uri(issuer):
    """The jwks_uri of the issuer's OpenID configuration."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            metadata = json.load(response)
    except (OSError, ValueError) as e:
        raise jwt.PyJWKClientConnectionError(f"cannot read {url}: {e}") from e
    if metadata.get("issuer") != issuer:
        raise jwt.PyJWKClientError(
            f"{url} is the configuration of {metadata.get('issuer')!r}, not of {issuer!r}"
        )
    return metadata["jwks_uri"]
