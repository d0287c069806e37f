'use strict';
// A stand-in for the team's own API: a Node http server on a loopback port that accepts
// a request only with a Bearer access JWT it can verify the way a resource server does,
// with nothing but the issuer's URL: the keys come from the issuer's discovery document
// and JWKS, the signature is checked with node's crypto, then `iss`, `aud` and `exp`.

const crypto = require('node:crypto');
const http = require('node:http');

const { send } = require('./node-wx');

function base64url(text) {
  return Buffer.from(text, 'base64url');
}

/** The header and claims of a compact JWS, without verifying anything. */
function decodeJwt(jwt) {
  const parts = jwt.split('.');
  if (parts.length !== 3) throw new Error('not a compact JWS');
  return {
    header: JSON.parse(base64url(parts[0]).toString('utf8')),
    claims: JSON.parse(base64url(parts[1]).toString('utf8')),
  };
}

async function getJson(url) {
  const res = await send(url, 'GET', {});
  if (res.statusCode !== 200) throw new Error(url + ' answered ' + res.statusCode);
  return JSON.parse(res.body.toString('utf8'));
}

/**
 * Starts the API. It answers every path with `{ sub, sid, appid }` from a verified JWT,
 * else 401 with a Bearer challenge. `seen` lists the Authorization headers it got;
 * `refuse` is how many of the next requests it turns away whatever they carry.
 */
async function startTeamApi(issuer, audience) {
  const keys = new Map();

  // A kid not yet seen sends the API back to the JWKS, as verifiers do after a rotation.
  async function publicKey(kid) {
    if (!keys.has(kid)) {
      const discovery = await getJson(issuer + '/.well-known/openid-configuration');
      const jwks = await getJson(discovery.jwks_uri);
      for (const jwk of jwks.keys) keys.set(jwk.kid, crypto.createPublicKey({ key: jwk, format: 'jwk' }));
    }
    return keys.get(kid);
  }

  async function verify(authorization) {
    const match = /^Bearer (\S+)$/.exec(authorization || '');
    if (!match) throw new Error('no Bearer token');
    const jwt = match[1];
    const { header, claims } = decodeJwt(jwt);
    if (header.alg !== 'ES256' || header.typ !== 'at+jwt') throw new Error('not an ES256 access JWT');
    const key = await publicKey(header.kid);
    if (!key) throw new Error('unknown kid ' + header.kid);
    const dot = jwt.lastIndexOf('.');
    const signed = crypto.verify(
      'sha256',
      Buffer.from(jwt.slice(0, dot)),
      { key: key, dsaEncoding: 'ieee-p1363' },
      base64url(jwt.slice(dot + 1))
    );
    if (!signed) throw new Error('bad signature');
    if (claims.iss !== issuer) throw new Error('wrong issuer ' + claims.iss);
    if (claims.aud !== audience) throw new Error('wrong audience ' + claims.aud);
    if (!(claims.exp > Date.now() / 1000)) throw new Error('expired');
    return claims;
  }

  const api = {
    baseUrl: null,
    seen: [],
    refuse: 0,
    refusals: [],
    stop() {
      return new Promise((resolve) => {
        server.close(resolve);
        // Node's own client keeps connections alive; they would hold close() open.
        server.closeAllConnections();
      });
    },
  };

  function refuse(res, reason) {
    api.refusals.push(reason);
    res.writeHead(401, {
      'content-type': 'application/json',
      'www-authenticate': 'Bearer error="invalid_token"',
    });
    res.end(JSON.stringify({ message: reason }));
  }

  const server = http.createServer((req, res) => {
    req.resume();
    api.seen.push(req.headers.authorization);
    if (api.refuse > 0) {
      api.refuse -= 1;
      refuse(res, 'turned away by the test');
      return;
    }
    verify(req.headers.authorization).then(
      (claims) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ sub: claims.sub, sid: claims.sid, appid: claims.appid }));
      },
      (err) => refuse(res, err.message)
    );
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  api.baseUrl = 'http://127.0.0.1:' + server.address().port;
  return api;
}

module.exports = { startTeamApi, decodeJwt };
