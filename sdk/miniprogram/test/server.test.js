'use strict';
// The library against a real `wxauth serve --dev` (the binary the build produced, on a
// loopback port), through a `wx` built on Node's http: the whole flow a mini program
// goes through, the server's own errors arriving as typed errors, and access JWTs that
// a stand-in for the team's API verifies against the server's JWKS.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { createClient, WxauthError } = require('..');
const { createNodeWx, send } = require('./support/node-wx');
const { makePng } = require('./support/png');
const { startTeamApi, decodeJwt } = require('./support/team-api');
const { wxauthBinary, startDevServer } = require('./support/wxauth-server');

const bin = wxauthBinary();
const skip = bin
  ? false
  : 'no wxauth binary: run `cargo build` first, or set TEST_WXAUTH_BIN to one';

// The default `jwt_audience`.
const AUDIENCE = 'wxauth';

let server;
let scratch;
let api;

test.before(async () => {
  if (skip) return;
  server = await startDevServer(bin);
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'wxauth-sdk-files-'));
  // Dev mode's public_url is the address it serves on: the JWTs' issuer.
  api = await startTeamApi(server.baseUrl, AUDIENCE);
});

test.after(async () => {
  if (api) await api.stop();
  if (server) await server.stop();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

function client(wx, options) {
  return createClient(Object.assign({ baseUrl: server.baseUrl, wx: wx }, options || {}));
}

async function rejection(promise) {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  assert.fail('expected the promise to reject');
}

test('login, profile, avatar, phone, logout and a login again', { skip }, async () => {
  const wx = createNodeWx('alice');
  const sdk = client(wx);
  const events = [];
  sdk.onAuthChange((e) => events.push(e));

  const { user, newUser } = await sdk.login();
  assert.match(user.id, /^u_/);
  assert.equal(newUser, true);
  assert.equal(user.appid, 'wxdevelopment0000');
  const stored = JSON.parse(wx.storage.get('wxauth'));
  assert.match(stored.token, /^v2\./);

  const me = await sdk.getUser();
  assert.equal(me.id, user.id);

  const nickname = 'Alice 🐼 爱丽丝';
  const updated = await sdk.updateProfile({ nickname: '  ' + nickname + ' ', gender: 2, city: 'Hangzhou' });
  assert.equal(updated.nickname, nickname);
  assert.equal(updated.gender, 2);
  assert.equal((await sdk.getUser()).nickname, nickname);

  const png = makePng(16);
  const file = path.join(scratch, 'avatar.png');
  fs.writeFileSync(file, png);
  const withAvatar = await sdk.uploadAvatar(file);
  // Absolute under dev mode's public_url; resolveUrl leaves such a URL as it is.
  assert.match(withAvatar.avatar_url, /^http:\/\/127\.0\.0\.1:\d+\/v1\/avatars\/\S+$/);
  const image = await send(sdk.resolveUrl(withAvatar.avatar_url), 'GET', {});
  assert.equal(image.statusCode, 200);
  assert.equal(image.header['content-type'], 'image/png');
  assert.ok(image.body.equals(png), 'the server serves back the same bytes');

  const phone = await sdk.bindPhone('phone-code-1');
  assert.equal(phone.country_code, '86');
  assert.match(phone.pure_phone_number, /^1\d{10}$/);
  assert.equal((await sdk.getUser()).phone, phone.phone_number);

  await sdk.logout();
  assert.equal(wx.storage.has('wxauth'), false);
  assert.equal(wx.count('POST /v1/logout'), 1);
  const old = await send(server.baseUrl + '/v1/me', 'GET', { authorization: 'Bearer ' + stored.token });
  assert.equal(old.statusCode, 401);
  assert.equal(JSON.parse(old.body).error.code, 'session_revoked');

  const again = await sdk.getUser();
  assert.equal(again.id, user.id, 'dev:alice is the same user every time');
  assert.equal(again.nickname, nickname);
  assert.equal(wx.loginCalls, 2);
  assert.notEqual(JSON.parse(wx.storage.get('wxauth')).token, stored.token);
  assert.deepEqual(
    events.map((e) => e.type),
    ['login', 'logout', 'login']
  );
  assert.equal(events[2].newUser, false);
});

test('10 concurrent requests without a token make one login', { skip }, async () => {
  const wx = createNodeWx('bob');
  const sdk = client(wx);
  const users = await Promise.all(Array.from({ length: 10 }, () => sdk.getUser()));
  assert.equal(new Set(users.map((u) => u.id)).size, 1);
  assert.equal(wx.loginCalls, 1);
  assert.equal(wx.count('POST /v1/login'), 1);
  assert.equal(wx.count('GET /v1/me'), 10);
});

test('a session revoked elsewhere is replaced by one new login and the request retried', { skip }, async () => {
  const phone = createNodeWx('carol');
  const tablet = createNodeWx('carol');
  const onPhone = client(phone);
  const onTablet = client(tablet);
  const events = [];
  onPhone.onAuthChange((e) => events.push(e));
  await onPhone.getUser();
  await onTablet.getUser();

  await onTablet.logout({ all: true });
  const users = await Promise.all([onPhone.getUser(), onPhone.getUser(), onPhone.getUser()]);
  assert.equal(users[0].id, users[2].id);
  assert.equal(phone.loginCalls, 2);
  assert.equal(phone.count('GET /v1/me'), 1 + 3 + 3, 'each refused request is retried once');
  assert.deepEqual(
    events.map((e) => e.type + (e.code ? ':' + e.code : '')),
    ['login', 'expired:session_revoked', 'login']
  );
});

test('a token near its expiry is refreshed by the server', { skip }, async () => {
  const wx = createNodeWx('dave');
  const clock = { now: Date.now() };
  const sdk = client(wx, { now: () => clock.now });
  await sdk.login();
  const before = JSON.parse(wx.storage.get('wxauth'));
  // The default token_ttl, less the second the login may have taken to answer: the
  // server counts expires_in from when it answers.
  const week = 7 * 24 * 3600 * 1000;
  assert.ok(before.lifetime <= week && before.lifetime >= week - 2000, String(before.lifetime));

  clock.now += 5 * 24 * 3600 * 1000; // two days of seven left
  await sdk.getUser();
  assert.equal(wx.count('POST /v1/session/refresh'), 1);
  assert.equal(wx.loginCalls, 1);
  const after = JSON.parse(wx.storage.get('wxauth'));
  assert.ok(after.expiresAt > before.expiresAt);
  await sdk.getUser();
  assert.equal(wx.count('POST /v1/session/refresh'), 1, 'the refreshed token has its full lifetime');
});

test('the server\'s refusals arrive as typed errors with its code', { skip }, async () => {
  const wx = createNodeWx('erin');
  const sdk = client(wx);
  const user = await sdk.getUser();

  await server.admin(['users', 'ban', user.id, '--reason', 'test']);
  const banned = await rejection(sdk.getUser());
  assert.ok(banned instanceof WxauthError);
  assert.equal(banned.code, 'user_banned');
  assert.equal(banned.status, 403);
  assert.equal(wx.loginCalls, 1, 'a ban is not answered with a login');

  const blocked = await rejection(client(createNodeWx('x'), { getCode: () => 'fail:40226' }).getUser());
  assert.equal(blocked.code, 'login_blocked');
  assert.equal(blocked.status, 403);

  const invalid = await rejection(client(createNodeWx('x'), { getCode: () => 'fail:40029' }).login());
  assert.equal(invalid.code, 'invalid_code');
  assert.equal(invalid.status, 400);

  // The banned user cannot reach POST /v1/me at all; another can, and breaks its rules.
  const tooLong = await rejection(client(createNodeWx('frank')).updateProfile({ nickname: 'x'.repeat(65) }));
  assert.equal(tooLong.code, 'invalid_request');
  assert.equal(tooLong.status, 400);

  // A port nothing listens on: no HTTP answer at all.
  const closed = await rejection(
    createClient({ baseUrl: 'http://127.0.0.1:9', wx: createNodeWx('x') }).login()
  );
  assert.equal(closed.code, 'network_error');
  assert.equal(closed.status, 0);
});

test('an access JWT: ES256 at+jwt, naming the user, the session and the app', { skip }, async () => {
  const wx = createNodeWx('grace');
  const sdk = client(wx);
  const jwt = await sdk.getAccessToken();
  const user = await sdk.getUser();
  assert.equal(await sdk.getAccessToken(), jwt, 'kept, not fetched again');
  assert.equal(wx.count('POST /v1/token'), 1);

  const { header, claims } = decodeJwt(jwt);
  assert.equal(header.alg, 'ES256');
  assert.equal(header.typ, 'at+jwt');
  const jwks = JSON.parse((await send(server.baseUrl + '/.well-known/jwks.json', 'GET', {})).body);
  const key = jwks.keys.find((k) => k.kid === header.kid);
  assert.ok(key, 'the JWKS publishes the key named by kid');
  assert.deepEqual([key.kty, key.crv, key.alg, key.use], ['EC', 'P-256', 'ES256', 'sig']);

  assert.equal(claims.sub, user.id);
  assert.equal(claims.aud, AUDIENCE);
  assert.equal(claims.iss, server.baseUrl);
  assert.equal(claims.appid, 'wxdevelopment0000');
  assert.equal(typeof claims.sid, 'string');
  assert.equal(typeof claims.jti, 'string');
  assert.ok(!('openid' in claims) && !('unionid' in claims), 'no WeChat identifiers');

  // The endpoint's own answer, with the SDK's session token.
  const session = JSON.parse(wx.storage.get('wxauth')).token;
  const raw = await send(server.baseUrl + '/v1/token', 'POST', { authorization: 'Bearer ' + session });
  assert.equal(raw.statusCode, 200);
  assert.equal(raw.header['cache-control'], 'no-store');
  const answer = JSON.parse(raw.body);
  assert.equal(answer.token_type, 'Bearer');
  assert.equal(answer.expires_in, 600, 'the default jwt_ttl');
  assert.equal(claims.exp - claims.iat, answer.expires_in);
  const other = decodeJwt(answer.access_token).claims;
  assert.equal(other.exp - other.iat, answer.expires_in);
  assert.equal(other.sid, claims.sid, 'one session, one sid');
  assert.notEqual(other.jti, claims.jti);
});

test('apiRequest reaches a team API that verifies the JWT with the JWKS alone', { skip }, async () => {
  const wx = createNodeWx('heidi');
  const sdk = client(wx, { apiBaseUrl: api.baseUrl });
  const user = await sdk.getUser();
  const session = JSON.parse(wx.storage.get('wxauth')).token;
  const seenBefore = api.seen.length;

  const res = await sdk.apiRequest({ url: '/orders', header: { authorization: 'Bearer ' + session } });
  assert.equal(res.statusCode, 200, 'refusals: ' + api.refusals.join('; '));
  assert.equal(res.data.sub, user.id);
  assert.equal(res.data.appid, 'wxdevelopment0000');
  const sent = api.seen.slice(seenBefore);
  assert.deepEqual(sent, ['Bearer ' + (await sdk.getAccessToken())]);
  assert.ok(!sent.some((h) => h.includes(session)), 'the session token never reaches the API');

  // The stand-in does verify: a JWT with another payload under the same signature fails.
  const [h, , sig] = (await sdk.getAccessToken()).split('.');
  const forged = [h, Buffer.from(JSON.stringify({ sub: 'u_someone_else' })).toString('base64url'), sig].join('.');
  const refused = await send(api.baseUrl + '/orders', 'GET', { authorization: 'Bearer ' + forged });
  assert.equal(refused.statusCode, 401);
  assert.equal(api.refusals[api.refusals.length - 1], 'bad signature');
});

test('a 401 from the team API gets one new JWT and one retry; a second 401 is the answer', { skip }, async () => {
  const wx = createNodeWx('ivan');
  const sdk = client(wx, { apiBaseUrl: api.baseUrl });
  const first = await sdk.getAccessToken();

  api.refuse = 1;
  let seenBefore = api.seen.length;
  const res = await sdk.apiRequest({ url: '/orders' });
  assert.equal(res.statusCode, 200);
  const sent = api.seen.slice(seenBefore);
  assert.equal(sent.length, 2);
  assert.equal(sent[0], 'Bearer ' + first);
  assert.notEqual(sent[1], sent[0], 'the retry carries a new JWT');
  assert.equal(wx.count('POST /v1/token'), 2);

  api.refuse = 2;
  seenBefore = api.seen.length;
  const error = await rejection(sdk.apiRequest({ url: '/orders' }));
  assert.ok(error instanceof WxauthError);
  assert.equal(error.status, 401);
  assert.equal(error.code, 'invalid_token', 'from the Bearer challenge');
  assert.equal(api.seen.length - seenBefore, 2, 'no third try');
  assert.equal(wx.count('POST /v1/token'), 3);
  assert.equal(wx.loginCalls, 1, 'the session was never in question');
});

test('a session revoked elsewhere logs in again for a JWT; a logout forgets the JWT', { skip }, async () => {
  const phone = createNodeWx('judy');
  const clock = { now: Date.now() };
  const onPhone = client(phone, { now: () => clock.now });
  const first = decodeJwt(await onPhone.getAccessToken()).claims;

  const tablet = client(createNodeWx('judy'));
  await tablet.login();
  await tablet.logout({ all: true });
  clock.now += 11 * 60 * 1000; // past the JWT's ten minutes: a new one is needed
  const second = decodeJwt(await onPhone.getAccessToken()).claims;
  assert.equal(second.sub, first.sub);
  assert.notEqual(second.sid, first.sid, 'a new session');
  assert.equal(phone.loginCalls, 2);
  assert.equal(phone.count('POST /v1/token'), 3, 'one refused, one after the login');

  await onPhone.logout();
  const third = decodeJwt(await onPhone.getAccessToken()).claims;
  assert.notEqual(third.sid, second.sid);
  assert.equal(phone.loginCalls, 3);
});

test('a banned user gets no new JWT', { skip }, async () => {
  const wx = createNodeWx('mallory');
  const sdk = client(wx);
  const user = await sdk.getUser();
  await server.admin(['users', 'ban', user.id, '--reason', 'test']);
  const error = await rejection(sdk.getAccessToken());
  assert.equal(error.code, 'user_banned');
  assert.equal(error.status, 403);
  assert.equal(wx.loginCalls, 1);
});
