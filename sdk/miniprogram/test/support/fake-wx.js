'use strict';
// A stand-in for the mini program's `wx` (login, request, uploadFile, storage) in front
// of a scripted imitation of wxauth and of a team's API that takes its access JWTs, for
// the library's unit tests. It keeps wx's
// contracts: `success` for any HTTP status, `fail` only when no answer came, JSON bodies
// parsed by request but handed to uploadFile's caller as a string, storage values copied.

const USER = {
  id: 'u_test',
  appid: 'wxdevelopment0000',
  nickname: null,
  avatar_url: null,
  gender: 0,
  country: null,
  province: null,
  city: null,
  language: null,
  phone: null,
  created_at: '2026-01-01T00:00:00Z',
  updated_at: '2026-01-01T00:00:00Z',
};

function errorBody(code, message) {
  return { error: { code: code, message: message || code + ' (scripted)' } };
}

/** An error answer in wxauth's shape, with the headers wxauth would send. */
function errorAnswer(status, code, header) {
  const h = Object.assign({ 'content-type': 'application/json' }, header || {});
  if (status === 401) h['www-authenticate'] = 'Bearer error="invalid_token"';
  return { statusCode: status, data: errorBody(code), header: h };
}

/**
 * The imitation server. Answers like wxauth by default, and paths under /api/ (on any
 * host) like a team's API that accepts the access JWTs still in `jwts`;
 * `script(route, answer)` queues
 * answers that are used, in order and once each, before the default. An answer is
 * `{ statusCode, data, header }`, `{ fail: errMsg }` for a network failure, or a
 * function of the request returning either.
 */
function createFakeServer() {
  const server = {
    expiresIn: 3600,
    jwtExpiresIn: 600,
    delayMs: 0,
    user: Object.assign({}, USER),
    live: new Set(),
    issued: 0,
    jwts: new Set(),
    jwtsIssued: 0,
    scripted: new Map(),
    script(route, answer) {
      if (!server.scripted.has(route)) server.scripted.set(route, []);
      server.scripted.get(route).push(answer);
      return server;
    },
    issue() {
      server.issued += 1;
      const token = 'tok-' + server.issued;
      server.live.add(token);
      return {
        statusCode: 200,
        header: { 'content-type': 'application/json' },
        data: {
          token: token,
          token_type: 'Bearer',
          expires_in: server.expiresIn,
          expires_at: '2026-01-01T01:00:00Z',
          new_user: server.issued === 1,
          user: server.user,
        },
      };
    },
    handle(req) {
      const route = req.method + ' ' + req.path;
      const queue = server.scripted.get(route);
      if (queue && queue.length) {
        const answer = queue.shift();
        return typeof answer === 'function' ? answer(req) : answer;
      }
      return server.defaultAnswer(route, req);
    },
    defaultAnswer(route, req) {
      if (route === 'POST /v1/login') return server.issue();
      const auth = req.header.Authorization || '';
      const token = auth.replace(/^Bearer /, '');
      if (req.path.indexOf('/api/') === 0) {
        if (!server.jwts.has(token)) {
          return { statusCode: 401, data: '', header: { 'www-authenticate': 'Bearer error="invalid_token"' } };
        }
        return { statusCode: 200, data: { path: req.path, jwt: token }, header: {} };
      }
      if (!server.live.has(token)) return errorAnswer(401, 'invalid_token');
      switch (route) {
        case 'POST /v1/token': {
          server.jwtsIssued += 1;
          const jwt = 'jwt-' + server.jwtsIssued;
          server.jwts.add(jwt);
          return {
            statusCode: 200,
            data: { access_token: jwt, token_type: 'Bearer', expires_in: server.jwtExpiresIn },
            header: { 'cache-control': 'no-store' },
          };
        }
        case 'POST /v1/session/refresh':
          server.live.delete(token);
          return server.issue();
        case 'POST /v1/logout':
          server.live.delete(token);
          return { statusCode: 204, data: '', header: {} };
        case 'GET /v1/me':
        case 'GET /v1/session':
          return { statusCode: 200, data: server.user, header: {} };
        case 'POST /v1/me':
          server.user = Object.assign({}, server.user, req.data);
          return { statusCode: 200, data: server.user, header: {} };
        case 'POST /v1/me/avatar':
          server.user = Object.assign({}, server.user, { avatar_url: '/v1/avatars/a_1' });
          return { statusCode: 200, data: server.user, header: {} };
        case 'POST /v1/me/phone':
          return {
            statusCode: 200,
            data: { phone_number: '13800138000', pure_phone_number: '13800138000', country_code: '86' },
            header: {},
          };
        default:
          return errorAnswer(404, 'not_found');
      }
    },
  };
  return server;
}

function copy(value) {
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

function later(ms, fn) {
  if (ms > 0) setTimeout(fn, ms);
  else setImmediate(fn);
}

/** The fake `wx`, recording every call. */
function createFakeWx(server) {
  const fake = {
    server: server,
    storage: new Map(),
    storageBroken: false,
    loginError: null,
    codes: 0,
    loginCalls: 0,
    requests: [],
    uploads: [],
    login(o) {
      fake.loginCalls += 1;
      later(server.delayMs, function () {
        if (fake.loginError) o.fail({ errMsg: fake.loginError });
        else {
          fake.codes += 1;
          o.success({ code: 'code-' + fake.codes, errMsg: 'login:ok' });
        }
      });
    },
    request(o) {
      const url = new URL(o.url);
      const req = {
        method: (o.method || 'GET').toUpperCase(),
        url: o.url,
        path: url.pathname,
        header: Object.assign({}, o.header),
        data: copy(o.data),
      };
      fake.requests.push(req);
      answer(req, o, function (res) {
        let data = res.data;
        // wx.request with the default dataType "json" parses what parses.
        if (typeof data === 'string' && (o.dataType || 'json') === 'json') {
          try {
            data = JSON.parse(data);
          } catch (e) {
            // left as the string
          }
        }
        return { statusCode: res.statusCode, data: copy(data), header: copy(res.header || {}), errMsg: 'request:ok' };
      });
    },
    uploadFile(o) {
      const url = new URL(o.url);
      const req = {
        method: 'POST',
        url: o.url,
        path: url.pathname,
        header: Object.assign({}, o.header),
        filePath: o.filePath,
        name: o.name,
      };
      fake.uploads.push(req);
      answer(req, o, function (res) {
        // wx.uploadFile gives the body as a string and no headers.
        const data = typeof res.data === 'string' ? res.data : JSON.stringify(res.data);
        return { statusCode: res.statusCode, data: data, errMsg: 'uploadFile:ok' };
      });
    },
    getStorageSync(key) {
      if (fake.storageBroken) throw new Error('getStorageSync:fail');
      return fake.storage.has(key) ? copy(fake.storage.get(key)) : '';
    },
    setStorageSync(key, value) {
      if (fake.storageBroken) throw new Error('setStorageSync:fail exceed storage max size');
      fake.storage.set(key, copy(value));
    },
    removeStorageSync(key) {
      if (fake.storageBroken) throw new Error('removeStorageSync:fail');
      fake.storage.delete(key);
    },
    /** The requests (and uploads) that went to `route`, e.g. "POST /v1/login". */
    hits(route) {
      return fake.requests
        .concat(fake.uploads)
        .filter(function (r) {
          return r.method + ' ' + r.path === route;
        });
    },
  };

  function answer(req, o, shape) {
    Promise.resolve()
      .then(function () {
        return server.handle(req);
      })
      .then(function (res) {
        later(server.delayMs, function () {
          if (res.fail) o.fail({ errMsg: res.fail });
          else o.success(shape(res));
        });
      });
  }

  return fake;
}

module.exports = { createFakeServer, createFakeWx, errorAnswer, errorBody, USER };
