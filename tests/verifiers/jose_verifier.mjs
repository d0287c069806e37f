// Runs wxauth's JWTs through the Node backend example (examples/backend/node) for
// tests/jwt_verifiers.rs.
//
//   node jose_verifier.mjs MODULE ISSUER AUDIENCE [JWKS_URI]
//
// MODULE is a copy of wxauth-jwt.mjs beside a node_modules that holds jose. Prints
// {"ready": true}, then reads one JWT per line on standard input and answers each with
// one line of JSON: what verify() said ({"ok": true, "claims", "header"} or {"ok": false,
// "error": jose's code, "claim", "message"}) and what the Express middleware did with
// `Authorization: Bearer <JWT>` ("middleware": {"next", "user", "status", "body",
// "www_authenticate"}). One verifier serves every line, so its cached keys carry from
// one JWT to the next.

import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";

const [modulePath, issuer, audience, jwksUri] = process.argv.slice(2);
const { accessTokenVerifier } = await import(pathToFileURL(modulePath).href);
const verifier = accessTokenVerifier({ issuer, audience, jwksUri });

// What Express's req and res offer the middleware, recording what it does.
function middleware(token) {
  return new Promise((resolve) => {
    const seen = { next: false };
    const req = { headers: { authorization: `Bearer ${token}` } };
    const res = {
      status(code) {
        seen.status = code;
        return this;
      },
      set(name, value) {
        if (name.toLowerCase() === "www-authenticate") seen.www_authenticate = value;
        return this;
      },
      json(body) {
        seen.body = body;
        resolve(seen);
        return this;
      },
    };
    verifier.requireUser(req, res, (err) => {
      seen.next = true;
      if (err) seen.error = String(err);
      seen.user = req.user ?? null;
      resolve(seen);
    });
  });
}

function header(token) {
  return JSON.parse(Buffer.from(token.split(".")[0], "base64url").toString());
}

console.log(JSON.stringify({ ready: true }));
for await (const line of createInterface({ input: process.stdin })) {
  const token = line.trim();
  let answer;
  try {
    answer = { ok: true, claims: await verifier.verify(token), header: header(token) };
  } catch (err) {
    answer = { ok: false, error: err.code ?? err.name, claim: err.claim, message: err.message };
  }
  answer.middleware = await middleware(token);
  answer.jwks_uri = verifier.jwksUri();
  console.log(JSON.stringify(answer));
}
