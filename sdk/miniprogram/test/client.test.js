'use strict';
// The library against a fake `wx` and a scripted server: logins shared among concurrent
// callers, refresh near expiry, one re-login and one retry after a dead session, typed
// errors, Retry-After, storage, and the access JWTs for the team's API.

const test = require('node:test');
const assert = require('node:assert/strict');

const { createClient, WxauthError } = require('..');
const { createFakeServer, createFakeWx, errorAnswer } = require('./support/fake-wx');

const BASE = 'https://auth.example.com';
const API = 'https://api.example.com';
const START = Date.UTC(2026, 0, 1);

/** A client on a fake wx with a clock the test moves and a sleep that only records. */
function setup(options) {
  const server = createFakeServer();
  const wx = createFakeWx(server);
  const clock = { now: START };
  const sleeps = [];
  const events = [];
  const client = createClient(
    Object.assign(
      {
        baseUrl: BASE,
        wx: wx,
        now: () => clock.now,
        sleep: (ms) => {
          sleeps.push(ms);
          return Promise.resolve();
        },
      },
      options || {}
    )
  );
  client.onAuthChange((e) => events.push(e));
  return { server, wx, clock, sleeps, events, client };
}

async function rejection(promise) {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  assert.fail('expected the promise to reject');
}

test('10 concurrent requests without a token share one wx.login and one login request', async () => {
  const { server, wx, client, events } = setup();
  server.delayMs = 5;
  const answers = await Promise.all(
    Array.from({ length: 10 }, (_, i) => client.request({ url: '/v1/me', data: { i } }))
  );
  assert.equal(wx.loginCalls, 1);
  assert.equal(wx.hits('POST /v1/login').length, 1);
  const gets = wx.hits('GET /v1/me');
  assert.equal(gets.length, 10);
  for (const get of gets) assert.equal(get.header.Authorization, 'Bearer tok-1');
  for (const res of answers) assert.equal(res.statusCode, 200);
  assert.deepEqual(
    events.map((e) => e.type),
    ['login']
  );
  assert.equal(events[0].user.id, 'u_test');
  assert.equal(events[0].newUser, true);
});

test('the login sends the code, and the appid when one is configured', async () => {
  const { wx, client } = setup({ appid: 'wx1234567890abcdef' });
  const result = await client.login();
  assert.deepEqual(wx.hits('POST /v1/login')[0].data, { code: 'code-1', appid: 'wx1234567890abcdef' });
  assert.equal(result.user.id, 'u_test');
  assert.equal(result.newUser, true);

  const plain = setup();
  await plain.client.login();
  assert.deepEqual(plain.wx.hits('POST /v1/login')[0].data, { code: 'code-1' });
});

test('a stored token is used without logging in, also by a new client on the same storage', async () => {
  const { wx, client, server } = setup();
  await client.getUser();
  const again = createClient({ baseUrl: BASE, wx: wx, now: () => START });
  await again.getUser();
  assert.equal(wx.loginCalls, 1);
  assert.equal(wx.hits('GET /v1/me')[1].header.Authorization, 'Bearer tok-1');
  assert.equal(server.issued, 1);
  const stored = wx.storage.get('wxauth');
  assert.equal(stored.token, 'tok-1');
  assert.equal(stored.expiresAt, START + 3600 * 1000);
});

test('a 401 token_expired logs in once and retries the request once', async () => {
  const { server, wx, client, events } = setup();
  await client.login();
  server.script('GET /v1/me', errorAnswer(401, 'token_expired'));
  const user = await client.getUser();
  assert.equal(user.id, 'u_test');
  assert.equal(wx.loginCalls, 2);
  assert.equal(wx.hits('POST /v1/login').length, 2);
  const gets = wx.hits('GET /v1/me');
  assert.equal(gets.length, 2);
  assert.equal(gets[0].header.Authorization, 'Bearer tok-1');
  assert.equal(gets[1].header.Authorization, 'Bearer tok-2');
  assert.deepEqual(
    events.map((e) => e.type + (e.code ? ':' + e.code : '')),
    ['login', 'expired:token_expired', 'login']
  );
});

test('a second 401 after the retry is returned, without another login', async () => {
  const { server, wx, client } = setup();
  await client.login();
  server.script('GET /v1/me', errorAnswer(401, 'session_revoked'));
  server.script('GET /v1/me', errorAnswer(401, 'session_revoked'));
  const error = await rejection(client.getUser());
  assert.ok(error instanceof WxauthError);
  assert.equal(error.code, 'session_revoked');
  assert.equal(error.status, 401);
  assert.equal(wx.hits('GET /v1/me').length, 2);
  assert.equal(wx.loginCalls, 2);
  // The refused token is forgotten, so the next call starts from a fresh login.
  assert.equal(wx.storage.has('wxauth'), false);
});

test('a 401 from a proxy without wxauth\'s body still counts by its Bearer challenge', async () => {
  const { server, wx, client } = setup();
  await client.login();
  server.script('GET /api/orders', {
    statusCode: 401,
    data: '<html>401</html>',
    header: { 'WWW-Authenticate': 'Bearer error="invalid_token"' },
  });
  server.script('GET /api/orders', { statusCode: 200, data: { orders: [] }, header: {} });
  const res = await client.request({ url: 'https://shop.example.com/api/orders' });
  assert.deepEqual(res.data, { orders: [] });
  assert.equal(wx.loginCalls, 2);
  const orders = wx.hits('GET /api/orders');
  assert.equal(orders[0].url, 'https://shop.example.com/api/orders');
  assert.equal(orders[1].header.Authorization, 'Bearer tok-2');
});

test('concurrent 401s on one dead session make one new login', async () => {
  const { server, wx, client } = setup();
  await client.login();
  server.live.clear();
  const users = await Promise.all(Array.from({ length: 5 }, () => client.getUser()));
  assert.equal(users.length, 5);
  assert.equal(wx.loginCalls, 2);
  assert.equal(wx.hits('GET /v1/me').length, 10);
});

test('a token with less than a third of its lifetime left is refreshed before the request', async () => {
  const { server, wx, client, clock } = setup();
  await client.login();

  clock.now = START + 2000 * 1000; // 1600 s of 3600 left: more than a third
  await client.getUser();
  assert.equal(wx.hits('POST /v1/session/refresh').length, 0);

  clock.now = START + 2500 * 1000; // 1100 s left: less than a third
  server.delayMs = 5;
  await Promise.all([client.getUser(), client.getUser(), client.getUser()]);
  const refreshes = wx.hits('POST /v1/session/refresh');
  assert.equal(refreshes.length, 1, 'concurrent requests share one refresh');
  assert.equal(refreshes[0].header.Authorization, 'Bearer tok-1');
  const gets = wx.hits('GET /v1/me');
  assert.deepEqual(
    gets.slice(1).map((g) => g.header.Authorization),
    ['Bearer tok-2', 'Bearer tok-2', 'Bearer tok-2']
  );
  assert.equal(wx.loginCalls, 1);
  assert.equal(wx.storage.get('wxauth').expiresAt, clock.now + 3600 * 1000);
});

test('a refresh that cannot extend the session (its maximum age) is not asked again', async () => {
  const { server, wx, client, clock } = setup();
  await client.login();
  clock.now = START + 3000 * 1000; // 600 s left
  server.expiresIn = 600; // the server's cap: the expiry does not move
  await client.getUser();
  await client.getUser();
  assert.equal(wx.hits('POST /v1/session/refresh').length, 1);
  assert.equal(wx.storage.get('wxauth').refreshable, false);
});

test('a refresh answered with an auth error falls back to a login', async () => {
  const { server, wx, client, clock, events } = setup();
  await client.login();
  clock.now = START + 3000 * 1000;
  server.script('POST /v1/session/refresh', errorAnswer(401, 'session_revoked'));
  await client.getUser();
  assert.equal(wx.loginCalls, 2);
  assert.equal(wx.hits('GET /v1/me')[0].header.Authorization, 'Bearer tok-2');
  assert.deepEqual(
    events.map((e) => e.type),
    ['login', 'expired', 'login']
  );
});

test('a refresh that fails on the network goes on with the token it has', async () => {
  const { server, wx, client, clock } = setup();
  await client.login();
  clock.now = START + 3000 * 1000;
  server.script('POST /v1/session/refresh', { fail: 'request:fail timeout' });
  await client.getUser();
  assert.equal(wx.loginCalls, 1);
  assert.equal(wx.hits('GET /v1/me')[0].header.Authorization, 'Bearer tok-1');
  // The next request tries the refresh again.
  await client.getUser();
  assert.equal(wx.hits('POST /v1/session/refresh').length, 2);
  assert.equal(wx.hits('GET /v1/me')[1].header.Authorization, 'Bearer tok-2');
});

test('a refresh answered busy goes on with the token it has, without waiting', async () => {
  const { server, wx, client, clock, sleeps } = setup();
  await client.login();
  clock.now = START + 3000 * 1000;
  server.script('POST /v1/session/refresh', errorAnswer(503, 'upstream_unavailable', { 'Retry-After': '5' }));
  await client.getUser();
  assert.deepEqual(sleeps, []);
  assert.equal(wx.loginCalls, 1);
  assert.equal(wx.hits('GET /v1/me')[0].header.Authorization, 'Bearer tok-1');
});

test('a token past its expiry leads to a login, not a refresh', async () => {
  const { wx, client, clock, events } = setup();
  await client.login();
  clock.now = START + 3601 * 1000;
  await client.getUser();
  assert.equal(wx.hits('POST /v1/session/refresh').length, 0);
  assert.equal(wx.loginCalls, 2);
  assert.deepEqual(events[1], { type: 'expired', code: 'token_expired' });
});

test('logout revokes the session on the server and clears storage', async () => {
  const { wx, client, events } = setup();
  await client.login();
  assert.ok(wx.storage.has('wxauth'));
  await client.logout();
  assert.equal(wx.storage.has('wxauth'), false);
  const logouts = wx.hits('POST /v1/logout');
  assert.equal(logouts.length, 1);
  assert.equal(logouts[0].header.Authorization, 'Bearer tok-1');
  assert.equal(logouts[0].data, undefined);
  assert.deepEqual(events[events.length - 1], { type: 'logout', all: false });

  // Nothing stored: nothing to revoke, no request, no login.
  await client.logout();
  assert.equal(wx.hits('POST /v1/logout').length, 1);
  assert.equal(wx.loginCalls, 1);

  // The next request logs in again.
  await client.getUser();
  assert.equal(wx.loginCalls, 2);
  await client.logout({ all: true });
  assert.deepEqual(wx.hits('POST /v1/logout')[1].data, { all: true });
});

test('logout of a session the server already ended succeeds; other failures are errors', async () => {
  const { server, wx, client } = setup();
  await client.login();
  server.script('POST /v1/logout', errorAnswer(401, 'session_revoked'));
  await client.logout();
  assert.equal(wx.storage.has('wxauth'), false);

  await client.login();
  server.script('POST /v1/logout', { fail: 'request:fail' });
  const error = await rejection(client.logout());
  assert.equal(error.code, 'network_error');
  assert.equal(wx.storage.has('wxauth'), false, 'the local session is gone either way');
});

test('logout waits for a login in flight and revokes the session it brought', async () => {
  const { server, wx, client } = setup();
  server.delayMs = 5;
  const pending = client.getUser();
  await client.logout();
  await pending;
  assert.equal(wx.hits('POST /v1/logout')[0].header.Authorization, 'Bearer tok-1');
  assert.equal(wx.storage.has('wxauth'), false);
});

test('user_banned is a typed error with the server code, not retried', async () => {
  const { server, wx, client } = setup();
  await client.login();
  server.script('GET /v1/me', errorAnswer(403, 'user_banned'));
  const error = await rejection(client.getUser());
  assert.ok(error instanceof WxauthError);
  assert.ok(error instanceof Error);
  assert.equal(error.name, 'WxauthError');
  assert.equal(error.code, 'user_banned');
  assert.equal(error.status, 403);
  assert.equal(error.message, 'user_banned (scripted)');
  assert.equal(error.response.data.error.code, 'user_banned');
  assert.equal(wx.hits('GET /v1/me').length, 1);
  assert.equal(wx.loginCalls, 1);
  assert.ok(wx.storage.has('wxauth'), 'a ban does not end the session');
});

test('login_blocked at login reaches every waiting request, with one login', async () => {
  const { server, wx, client } = setup();
  server.script('POST /v1/login', errorAnswer(403, 'login_blocked'));
  const errors = await Promise.all(
    [client.getUser(), client.getUser(), client.login()].map(rejection)
  );
  for (const error of errors) {
    assert.ok(error instanceof WxauthError);
    assert.equal(error.code, 'login_blocked');
    assert.equal(error.status, 403);
  }
  assert.equal(wx.loginCalls, 1);
  assert.equal(wx.hits('POST /v1/login').length, 1);
  assert.equal(wx.hits('GET /v1/me').length, 0);
});

test('a network failure is a network_error, not retried', async () => {
  const { server, wx, client } = setup();
  await client.login();
  server.script('GET /v1/me', { fail: 'request:fail timeout' });
  const error = await rejection(client.getUser());
  assert.ok(error instanceof WxauthError);
  assert.equal(error.code, 'network_error');
  assert.equal(error.status, 0);
  assert.equal(error.message, 'request:fail timeout');
  assert.equal(wx.hits('GET /v1/me').length, 1);

  // The same at login.
  const offline = setup();
  offline.server.script('POST /v1/login', { fail: 'request:fail' });
  const atLogin = await rejection(offline.client.getUser());
  assert.equal(atLogin.code, 'network_error');
  assert.equal(offline.wx.hits('POST /v1/login').length, 1);
});

test('a failing wx.login is a wx_login_failed error', async () => {
  const { wx, client } = setup();
  wx.loginError = 'login:fail timeout';
  const error = await rejection(client.getUser());
  assert.ok(error instanceof WxauthError);
  assert.equal(error.code, 'wx_login_failed');
  assert.equal(error.message, 'login:fail timeout');
  assert.equal(wx.requests.length, 0);
  // A later call tries again.
  wx.loginError = null;
  await client.getUser();
  assert.equal(wx.loginCalls, 2);
});

test('rate_limited with Retry-After waits that long and retries once', async () => {
  const { server, wx, client, sleeps } = setup();
  await client.login();
  server.script('POST /v1/me', errorAnswer(429, 'rate_limited', { 'RETRY-AFTER': '2' }));
  const user = await client.updateProfile({ nickname: 'Bob' });
  assert.equal(user.nickname, 'Bob');
  assert.deepEqual(sleeps, [2000]);
  assert.equal(wx.hits('POST /v1/me').length, 2);
});

test('a second busy answer is returned with its Retry-After, no third try', async () => {
  const { server, wx, client, sleeps } = setup();
  await client.login();
  server.script('GET /v1/me', errorAnswer(503, 'upstream_unavailable', { 'Retry-After': '5' }));
  server.script('GET /v1/me', errorAnswer(503, 'upstream_unavailable', { 'Retry-After': '5' }));
  const error = await rejection(client.getUser());
  assert.equal(error.code, 'upstream_unavailable');
  assert.equal(error.status, 503);
  assert.equal(error.retryAfter, 5);
  assert.deepEqual(sleeps, [5000]);
  assert.equal(wx.hits('GET /v1/me').length, 2);
});

test('a Retry-After beyond the cap, or none, is returned at once', async () => {
  const { server, wx, client, sleeps } = setup();
  await client.login();
  server.script('GET /v1/me', errorAnswer(429, 'rate_limited', { 'retry-after': '60' }));
  const long = await rejection(client.getUser());
  assert.equal(long.code, 'rate_limited');
  assert.equal(long.retryAfter, 60);
  server.script('GET /v1/me', errorAnswer(429, 'rate_limited'));
  const none = await rejection(client.getUser());
  assert.equal(none.retryAfter, undefined);
  assert.deepEqual(sleeps, []);
  assert.equal(wx.hits('GET /v1/me').length, 2);

  const patient = setup({ maxRetryDelay: 60000 });
  await patient.client.login();
  patient.server.script('GET /v1/me', errorAnswer(429, 'rate_limited', { 'retry-after': '60' }));
  await patient.client.getUser();
  assert.deepEqual(patient.sleeps, [60000]);
});

test('a busy login honours Retry-After once, with a new code', async () => {
  const { server, wx, client, sleeps } = setup();
  server.script('POST /v1/login', errorAnswer(503, 'upstream_unavailable', { 'Retry-After': '5' }));
  await Promise.all([client.login(), client.getUser()]);
  assert.deepEqual(sleeps, [5000]);
  const logins = wx.hits('POST /v1/login');
  assert.equal(logins.length, 2);
  assert.deepEqual(
    logins.map((l) => l.data.code),
    ['code-1', 'code-2']
  );
  assert.equal(wx.loginCalls, 2);
});

test('a login the server could not store is retried once, with a new code', async () => {
  const { server, wx, client, sleeps } = setup();
  server.script('POST /v1/login', errorAnswer(503, 'storage_unavailable', { 'Retry-After': '5' }));
  await client.login();
  assert.deepEqual(sleeps, [5000]);
  assert.deepEqual(
    wx.hits('POST /v1/login').map((l) => l.data.code),
    ['code-1', 'code-2']
  );
});

test('an error that is not wxauth\'s is an http_error carrying the response', async () => {
  const { server, client } = setup();
  await client.login();
  server.script('GET /api/orders/7', { statusCode: 404, data: { message: 'no order 7' }, header: {} });
  const error = await rejection(client.request({ url: '/api/orders/7' }));
  assert.equal(error.code, 'http_error');
  assert.equal(error.status, 404);
  assert.deepEqual(error.response.data, { message: 'no order 7' });
});

test('request keeps the caller\'s options and headers and resolves with wx\'s response', async () => {
  const { server, wx, client } = setup();
  server.script('POST /api/orders', (req) => ({
    statusCode: 201,
    data: { seen: req.data },
    header: { 'Content-Type': 'application/json' },
  }));
  const options = {
    url: '/api/orders',
    method: 'POST',
    data: { item: 'tea' },
    header: { 'X-Trace': 'abc', authorization: 'Bearer stale' },
    success: () => assert.fail('wx callbacks are not called'),
  };
  const res = await client.request(options);
  assert.equal(res.statusCode, 201);
  assert.deepEqual(res.data, { seen: { item: 'tea' } });
  assert.equal(res.header['Content-Type'], 'application/json');
  const sent = wx.hits('POST /api/orders')[0];
  assert.equal(sent.url, BASE + '/api/orders');
  assert.deepEqual(sent.header, { 'X-Trace': 'abc', Authorization: 'Bearer tok-1' });
  assert.equal(options.url, '/api/orders', 'the options object is not changed');
  assert.deepEqual(options.header, { 'X-Trace': 'abc', authorization: 'Bearer stale' });
});

test('getUser, updateProfile and bindPhone call the documented routes', async () => {
  const { wx, client } = setup();
  const user = await client.getUser();
  assert.equal(user.id, 'u_test');
  const updated = await client.updateProfile({ nickname: 'Alice 🐼', gender: 2 });
  assert.equal(updated.nickname, 'Alice 🐼');
  const patch = wx.hits('POST /v1/me')[0];
  assert.deepEqual(patch.data, { nickname: 'Alice 🐼', gender: 2 });
  assert.equal(patch.header['content-type'], 'application/json');
  const phone = await client.bindPhone('phone-code');
  assert.deepEqual(phone, {
    phone_number: '13800138000',
    pure_phone_number: '13800138000',
    country_code: '86',
  });
  assert.deepEqual(wx.hits('POST /v1/me/phone')[0].data, { code: 'phone-code' });

  const declined = await rejection(client.bindPhone(undefined));
  assert.equal(declined.code, 'invalid_request');
  assert.equal(wx.hits('POST /v1/me/phone').length, 1);
});

test('uploadAvatar posts the file with wx.uploadFile and parses its string answer', async () => {
  const { server, wx, client } = setup();
  await client.login();
  server.script('POST /v1/me/avatar', errorAnswer(401, 'invalid_token'));
  const user = await client.uploadAvatar('http://tmp/avatar.png');
  assert.equal(user.avatar_url, '/v1/avatars/a_1');
  const uploads = wx.hits('POST /v1/me/avatar');
  assert.equal(uploads.length, 2, 'one re-login and one retry, as for requests');
  assert.equal(uploads[1].filePath, 'http://tmp/avatar.png');
  assert.equal(uploads[1].name, 'file');
  assert.equal(uploads[1].header.Authorization, 'Bearer tok-2');
  assert.equal(client.resolveUrl(user.avatar_url), BASE + '/v1/avatars/a_1');

  server.script('POST /v1/me/avatar', errorAnswer(415, 'unsupported_media_type'));
  const error = await rejection(client.uploadAvatar('http://tmp/avatar.svg'));
  assert.equal(error.code, 'unsupported_media_type');
  assert.equal(error.status, 415);
});

test('a storage that throws never breaks a request', async () => {
  const { wx, client } = setup();
  wx.storageBroken = true;
  const user = await client.getUser();
  assert.equal(user.id, 'u_test');
  await client.getUser();
  assert.equal(wx.loginCalls, 1, 'the session is kept in memory');
  await client.logout();
  assert.equal(wx.hits('POST /v1/logout').length, 1);
});

test('storage that holds something else is ignored', async () => {
  const { wx, client } = setup({ storageKey: 'auth' });
  wx.storage.set('auth', { token: 42 });
  await client.getUser();
  assert.equal(wx.loginCalls, 1);
  assert.equal(wx.storage.get('auth').token, 'tok-1');
});

test('onAuthChange returns an unsubscribe function, and a throwing listener harms nothing', async () => {
  const { client } = setup();
  const seen = [];
  const stop = client.onAuthChange((e) => seen.push(e.type));
  const originalError = console.error;
  console.error = () => {};
  try {
    client.onAuthChange(() => {
      throw new Error('listener bug');
    });
    await client.login();
    stop();
    await client.logout();
  } finally {
    console.error = originalError;
  }
  assert.deepEqual(seen, ['login']);
});

test('createClient insists on a baseUrl and a wx', () => {
  assert.throws(() => createClient({}), TypeError);
  assert.throws(() => createClient({ baseUrl: BASE }), /no `wx` object/);
  const client = createClient({ baseUrl: BASE + '/', wx: createFakeWx(createFakeServer()) });
  assert.equal(client.resolveUrl('/v1/me'), BASE + '/v1/me');
  assert.equal(client.resolveUrl('v1/me'), BASE + '/v1/me');
  assert.equal(client.resolveUrl('https://cdn.example.com/a.png'), 'https://cdn.example.com/a.png');
});

test('getAccessToken logs in, fetches one JWT with the session token and keeps it', async () => {
  const { wx, client } = setup();
  assert.equal(await client.getAccessToken(), 'jwt-1');
  assert.equal(await client.getAccessToken(), 'jwt-1');
  assert.equal(wx.loginCalls, 1);
  const fetches = wx.hits('POST /v1/token');
  assert.equal(fetches.length, 1);
  assert.equal(fetches[0].url, BASE + '/v1/token');
  assert.equal(fetches[0].header.Authorization, 'Bearer tok-1');
  assert.equal(fetches[0].data, undefined);
  assert.deepEqual(Array.from(wx.storage.keys()), ['wxauth'], 'the JWT is not stored');
});

test('concurrent callers share one login and one JWT fetch', async () => {
  const { server, wx, client } = setup();
  server.delayMs = 5;
  const answers = await Promise.all(
    Array.from({ length: 10 }, (_, i) =>
      i % 2 ? client.getAccessToken() : client.apiRequest({ url: API + '/api/orders' })
    )
  );
  assert.equal(wx.loginCalls, 1);
  assert.equal(wx.hits('POST /v1/login').length, 1);
  assert.equal(wx.hits('POST /v1/token').length, 1);
  assert.deepEqual(
    answers.map((a) => (typeof a === 'string' ? a : a.data.jwt)),
    Array(10).fill('jwt-1')
  );
  assert.equal(wx.hits('GET /api/orders').length, 5);
});

test('the JWT is fetched again when less than a third of its lifetime is left', async () => {
  const { server, wx, client, clock } = setup();
  await client.getAccessToken();

  clock.now = START + 350 * 1000; // 250 s of 600 left: more than a third
  assert.equal(await client.getAccessToken(), 'jwt-1');
  assert.equal(wx.hits('POST /v1/token').length, 1);

  clock.now = START + 450 * 1000; // 150 s left: less than a third, yet not expired
  server.delayMs = 5;
  const answers = await Promise.all([
    client.getAccessToken(),
    client.getAccessToken(),
    client.apiRequest({ url: API + '/api/orders' }),
  ]);
  assert.deepEqual(answers.slice(0, 2), ['jwt-2', 'jwt-2']);
  assert.equal(answers[2].data.jwt, 'jwt-2');
  assert.equal(wx.hits('POST /v1/token').length, 2, 'concurrent callers share one fetch');

  // Its lifetime counts from when it arrived.
  clock.now = START + 800 * 1000;
  assert.equal(await client.getAccessToken(), 'jwt-2');
  assert.equal(wx.hits('POST /v1/token').length, 2);
  assert.equal(wx.hits('POST /v1/session/refresh').length, 0);
  assert.equal(wx.loginCalls, 1);
});

test('an early fetch that fails goes on with the JWT it has; an expired JWT is never sent', async () => {
  const { server, wx, client, clock, sleeps } = setup();
  await client.getAccessToken();

  clock.now = START + 450 * 1000;
  server.script('POST /v1/token', { fail: 'request:fail timeout' });
  assert.equal(await client.getAccessToken(), 'jwt-1');
  server.script('POST /v1/token', errorAnswer(503, 'storage_unavailable', { 'Retry-After': '1' }));
  assert.equal(await client.getAccessToken(), 'jwt-1');
  assert.deepEqual(sleeps, [], 'no wait while the JWT has time left');
  // Each call tries again until one succeeds.
  assert.equal(await client.getAccessToken(), 'jwt-2');
  assert.equal(wx.hits('POST /v1/token').length, 4);

  clock.now += 601 * 1000; // jwt-2 has expired
  server.script('POST /v1/token', { fail: 'request:fail timeout' });
  const offline = await rejection(client.getAccessToken());
  assert.equal(offline.code, 'network_error');
  // Without a JWT to fall back on, a short Retry-After is waited out once.
  server.script('POST /v1/token', errorAnswer(503, 'storage_unavailable', { 'Retry-After': '1' }));
  assert.equal(await client.getAccessToken(), 'jwt-3');
  assert.deepEqual(sleeps, [1000]);
});

test('a banned user gets no JWT, not even the one it has in its last third', async () => {
  const { server, wx, client, clock } = setup();
  await client.getAccessToken();
  clock.now = START + 450 * 1000;
  server.script('POST /v1/token', errorAnswer(403, 'user_banned'));
  const error = await rejection(client.getAccessToken());
  assert.ok(error instanceof WxauthError);
  assert.equal(error.code, 'user_banned');
  assert.equal(error.status, 403);
  assert.equal(wx.loginCalls, 1);
});

test('a server without public_url answers not_found; an answer without a JWT is invalid_response', async () => {
  const { server, wx, client } = setup();
  server.script('POST /v1/token', errorAnswer(404, 'not_found'));
  const missing = await rejection(client.getAccessToken());
  assert.equal(missing.code, 'not_found');
  assert.equal(missing.status, 404);
  server.script('POST /v1/token', { statusCode: 200, data: { token_type: 'Bearer' }, header: {} });
  const odd = await rejection(client.apiRequest({ url: API + '/api/orders' }));
  assert.equal(odd.code, 'invalid_response');
  assert.equal(wx.hits('POST /v1/token').length, 2);
  assert.equal(wx.hits('GET /api/orders').length, 0);
  assert.equal(wx.loginCalls, 1);
});

test('apiRequest sends the JWT, never the session token, and takes paths against apiBaseUrl', async () => {
  const { wx, client } = setup({ apiBaseUrl: API + '/' });
  const options = {
    url: '/api/orders',
    method: 'POST',
    data: { item: 'tea' },
    header: { 'X-Trace': 'abc', authorization: 'Bearer stale' },
    success: () => assert.fail('wx callbacks are not called'),
  };
  const res = await client.apiRequest(options);
  assert.equal(res.statusCode, 200);
  assert.deepEqual(res.data, { path: '/api/orders', jwt: 'jwt-1' });
  const sent = wx.hits('POST /api/orders')[0];
  assert.equal(sent.url, API + '/api/orders');
  assert.deepEqual(sent.header, { 'X-Trace': 'abc', Authorization: 'Bearer jwt-1' });
  assert.deepEqual(sent.data, { item: 'tea' });
  assert.equal(options.url, '/api/orders', 'the options object is not changed');
  for (const r of wx.requests) {
    if (r.url.indexOf(API) === 0) assert.doesNotMatch(r.header.Authorization, /tok-/);
  }

  // Without apiBaseUrl a path is taken against baseUrl.
  const plain = setup();
  await plain.client.apiRequest({ url: 'api/orders' });
  assert.equal(plain.wx.hits('GET /api/orders')[0].url, BASE + '/api/orders');

  await assert.rejects(client.apiRequest({}), TypeError);
});

test('a 401 from the team\'s API gets exactly one new JWT and one retry', async () => {
  const { server, wx, client, events } = setup();
  await client.getAccessToken();
  server.jwts.delete('jwt-1'); // the API stops accepting it, say after a key rotation
  const res = await client.apiRequest({ url: API + '/api/orders' });
  assert.equal(res.data.jwt, 'jwt-2');
  assert.deepEqual(
    wx.hits('GET /api/orders').map((r) => r.header.Authorization),
    ['Bearer jwt-1', 'Bearer jwt-2']
  );
  assert.equal(wx.hits('POST /v1/token').length, 2);
  // The JWT is wxauth's business no more than the API's 401 is: the session stays.
  assert.equal(wx.loginCalls, 1);
  assert.deepEqual(
    events.map((e) => e.type),
    ['login']
  );
  // The new JWT is kept.
  await client.apiRequest({ url: API + '/api/orders' });
  assert.equal(wx.hits('POST /v1/token').length, 2);
});

test('a second 401 from the team\'s API is returned, with no third try', async () => {
  const { server, wx, client } = setup();
  const refusal = { statusCode: 401, data: { message: 'wrong audience' }, header: {} };
  server.script('GET /api/orders', refusal);
  server.script('GET /api/orders', refusal);
  const error = await rejection(client.apiRequest({ url: API + '/api/orders' }));
  assert.ok(error instanceof WxauthError);
  assert.equal(error.status, 401);
  assert.equal(error.code, 'http_error');
  assert.deepEqual(error.response.data, { message: 'wrong audience' });
  assert.equal(wx.hits('GET /api/orders').length, 2);
  assert.equal(wx.hits('POST /v1/token').length, 2);
  assert.equal(wx.loginCalls, 1);
  // The JWT refused on the retry is dropped too; the next call starts with a new one.
  const res = await client.apiRequest({ url: API + '/api/orders' });
  assert.equal(res.data.jwt, 'jwt-3');
  assert.equal(wx.hits('POST /v1/token').length, 3);
});

test('concurrent 401s on one JWT make one new fetch', async () => {
  const { server, wx, client } = setup();
  await client.getAccessToken();
  server.jwts.clear();
  server.delayMs = 5;
  const answers = await Promise.all(
    Array.from({ length: 5 }, () => client.apiRequest({ url: API + '/api/orders' }))
  );
  assert.deepEqual(
    answers.map((a) => a.data.jwt),
    Array(5).fill('jwt-2')
  );
  assert.equal(wx.hits('POST /v1/token').length, 2);
  assert.equal(wx.hits('GET /api/orders').length, 10);
});

test('apiRequest waits out a short Retry-After once, like request', async () => {
  const { server, wx, client, sleeps } = setup();
  server.script('GET /api/orders', errorAnswer(429, 'rate_limited', { 'Retry-After': '2' }));
  const res = await client.apiRequest({ url: API + '/api/orders' });
  assert.equal(res.statusCode, 200);
  assert.deepEqual(sleeps, [2000]);
  assert.equal(wx.hits('GET /api/orders').length, 2);
  assert.equal(wx.hits('POST /v1/token').length, 1);
});

test('a dead session on /v1/token logs in once and fetches again; a second refusal is returned', async () => {
  const { server, wx, client, clock, events } = setup();
  await client.login();
  server.live.clear(); // revoked on the server
  assert.equal(await client.getAccessToken(), 'jwt-1');
  assert.deepEqual(
    wx.hits('POST /v1/token').map((r) => r.header.Authorization),
    ['Bearer tok-1', 'Bearer tok-2']
  );
  assert.equal(wx.loginCalls, 2);
  assert.deepEqual(
    events.map((e) => e.type + (e.code ? ':' + e.code : '')),
    ['login', 'expired:invalid_token', 'login']
  );

  clock.now = START + 601 * 1000;
  server.script('POST /v1/token', errorAnswer(401, 'session_revoked'));
  server.script('POST /v1/token', errorAnswer(401, 'session_revoked'));
  const error = await rejection(client.getAccessToken());
  assert.equal(error.code, 'session_revoked');
  assert.equal(wx.hits('POST /v1/token').length, 4);
  assert.equal(wx.loginCalls, 3);
});

test('logout and a new login forget the JWT; a session refresh keeps it', async () => {
  const { server, wx, client, clock } = setup();
  server.expiresIn = 900;
  server.jwtExpiresIn = 3600;
  assert.equal(await client.getAccessToken(), 'jwt-1');

  clock.now = START + 650 * 1000; // the session is in its last third, the JWT is not
  await client.getUser();
  assert.equal(wx.hits('POST /v1/session/refresh').length, 1);
  assert.equal(await client.getAccessToken(), 'jwt-1', 'a refresh keeps the session, and its JWT');

  await client.logout();
  assert.equal(await client.getAccessToken(), 'jwt-2');
  assert.equal(wx.hits('POST /v1/token')[1].header.Authorization, 'Bearer tok-3');

  await client.login();
  assert.equal(await client.getAccessToken(), 'jwt-3');
  assert.equal(wx.hits('POST /v1/token')[2].header.Authorization, 'Bearer tok-4');
});

/** Holds the next answer of `route` until the test calls the returned `release()`. */
function holdNext(server, route) {
  const held = {};
  server.script(
    route,
    (req) =>
      new Promise((resolve) => {
        held.release = () => resolve(server.defaultAnswer(route, req));
      })
  );
  return held;
}

test('logout waits for a JWT fetch under way, then revokes and forgets', async () => {
  const { server, wx, client } = setup();
  await client.login();
  const held = holdNext(server, 'POST /v1/token');
  const pending = client.getAccessToken();
  const loggedOut = client.logout();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(wx.hits('POST /v1/logout').length, 0, 'not before the fetch has landed');
  held.release();
  await loggedOut;
  assert.equal(await pending, 'jwt-1');
  assert.equal(wx.loginCalls, 1, 'the fetch was not refused and answered with a login');
  assert.equal(wx.hits('POST /v1/logout')[0].header.Authorization, 'Bearer tok-1');
  assert.equal(await client.getAccessToken(), 'jwt-2');
});

test('a JWT that arrives after a new login is handed over but not kept', async () => {
  const { server, client } = setup();
  await client.login();
  const held = holdNext(server, 'POST /v1/token');
  const pending = client.getAccessToken();
  await client.login(); // a new session, maybe another user's, while the fetch is away
  held.release();
  assert.equal(await pending, 'jwt-1', 'it was asked for before the login');
  assert.equal(await client.getAccessToken(), 'jwt-2');
});
