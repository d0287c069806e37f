"""Runs wxauth's JWTs through the Python backend example (examples/backend/python) for
tests/jwt_verifiers.rs.

    pyjwt_verifier.py ISSUER AUDIENCE [JWKS_URI]

Prints {"ready": ..., "pyjwt": VERSION}, then reads one JWT per line on standard input
and answers each with one line of JSON: {"ok": true, "claims": ..., "header": ...} or
{"ok": false, "error": EXCEPTION CLASS, "message": ...}, both with the jwks_uri in use.
One verifier serves every line, so its cached keys carry from one JWT to the next.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "backend" / "python"))

import jwt  # noqa: E402
from wxauth_jwt import AccessTokenVerifier  # noqa: E402


def main():
    issuer, audience = sys.argv[1], sys.argv[2]
    jwks_uri = sys.argv[3] if len(sys.argv) > 3 else None
    verifier = AccessTokenVerifier(issuer, audience, jwks_uri=jwks_uri)
    print(json.dumps({"ready": True, "pyjwt": jwt.__version__}), flush=True)
    for line in sys.stdin:
        token = line.strip()
        try:
            claims = verifier.verify(token)
        except jwt.PyJWTError as e:
            answer = {"ok": False, "error": type(e).__name__, "message": str(e)}
        else:
            answer = {"ok": True, "claims": claims, "header": jwt.get_unverified_header(token)}
        answer["jwks_uri"] = verifier.jwks_uri
        print(json.dumps(answer), flush=True)


main()
