'use strict';
// The mini program half of wxauth's login: gets a code from wx.login, trades it for a
// session token, keeps the token in storage and sends it on requests; and trades the
// session for short-lived access JWTs that the team's own API verifies. It owns the rules
// that are easy to get wrong: one login, one refresh and one JWT fetch in flight however
// many requests wait, refresh before expiry, and at most one retry after a refused
// credential or a busy server.
//
// Plain ES2015 on purpose (promise chains rather than asynchronous functions, no optional
// chaining, nullish coalescing or object spread): WeChat's base library runs it as it
// is, without the "ES6 to ES5" build step.

const AUTH_CODES = ['invalid_token', 'token_expired', 'session_revoked'];
const BUSY_CODES = ['rate_limited', 'upstream_unavailable', 'storage_unavailable'];
const DEFAULT_STORAGE_KEY = 'wxauth';
const DEFAULT_MAX_RETRY_DELAY = 30000;
const STORAGE_VERSION = 1;

class WxauthError extends Error {
  constructor(code, message, details) {
    super(message || code);
    const d = details || {};
    this.name = 'WxauthError';
    this.code = code;
    this.status = typeof d.status === 'number' ? d.status : 0;
    if (typeof d.retryAfter === 'number') this.retryAfter = d.retryAfter;
    if (d.response !== undefined) this.response = d.response;
  }
}

function isAuthCode(code) {
  return AUTH_CODES.indexOf(code) >= 0;
}

// A header from a wx.request answer; WeChat passes names in whatever case the server
// (or a proxy, or the platform) chose.
function headerValue(headers, name) {
  if (!headers || typeof headers !== 'object') return undefined;
  const wanted = name.toLowerCase();
  const keys = Object.keys(headers);
  for (let i = 0; i < keys.length; i++) {
    if (keys[i].toLowerCase() === wanted) {
      const value = headers[keys[i]];
      return Array.isArray(value) ? value.join(', ') : String(value);
    }
  }
  return undefined;
}

// wx.request parses JSON bodies itself (dataType "json"); wx.uploadFile never does.
function parseBody(data) {
  if (typeof data !== 'string') return data;
  if (data === '') return undefined;
  try {
    return JSON.parse(data);
  } catch (e) {
    return data;
  }
}

// Seconds to wait, from delta-seconds or an HTTP date.
function parseRetryAfter(value, nowMs) {
  if (value === undefined) return undefined;
  const text = String(value).trim();
  if (/^\d+$/.test(text)) return Number(text);
  const at = Date.parse(text);
  if (isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - nowMs) / 1000));
}

function errorFromResponse(res, nowMs) {
  const body = parseBody(res.data);
  const status = res.statusCode;
  const retryAfter = parseRetryAfter(headerValue(res.header, 'Retry-After'), nowMs);
  const response = { statusCode: status, data: body, header: res.header || {} };
  const details = { status: status, retryAfter: retryAfter, response: response };
  const error = body && typeof body === 'object' ? body.error : undefined;
  if (error && typeof error.code === 'string') {
    return new WxauthError(error.code, error.message || error.code, details);
  }
  // A proxy in front of the team's backend may answer a refused token without wxauth's
  // body, but the Bearer challenge still says what happened.
  const challenge = headerValue(res.header, 'WWW-Authenticate') || '';
  if (status === 401 && /error="?invalid_token/i.test(challenge)) {
    return new WxauthError('invalid_token', 'the token was refused', details);
  }
  return new WxauthError('http_error', 'the server answered HTTP ' + status, details);
}

function networkError(err) {
  const message = err && err.errMsg ? err.errMsg : String((err && err.message) || err);
  return new WxauthError('network_error', message, { status: 0 });
}

function settled(promise) {
  return promise ? promise.then(noop, noop) : Promise.resolve();
}

function noop() {}

function createClient(options) {
  if (!options || typeof options.baseUrl !== 'string' || options.baseUrl === '') {
    throw new TypeError('createClient: `baseUrl` is required, e.g. "https://auth.example.com"');
  }
  /* global wx */
  const wxApi = options.wx || (typeof wx !== 'undefined' ? wx : undefined);
  if (!wxApi) {
    throw new TypeError('createClient: no `wx` object; outside a mini program pass `{ wx }`');
  }
  const baseUrl = options.baseUrl.replace(/\/+$/, '');
  const apiBaseUrl = options.apiBaseUrl ? options.apiBaseUrl.replace(/\/+$/, '') : baseUrl;
  const appid = options.appid;
  const storageKey = options.storageKey || DEFAULT_STORAGE_KEY;
  const now = options.now || Date.now;
  const sleep =
    options.sleep ||
    function (ms) {
      return new Promise(function (resolve) {
        setTimeout(resolve, ms);
      });
    };
  const maxRetryDelay =
    typeof options.maxRetryDelay === 'number' ? options.maxRetryDelay : DEFAULT_MAX_RETRY_DELAY;
  const timeout = options.timeout;
  const getCode = options.getCode || wxLoginCode;

  // The session as this client knows it: { token, expiresAt, lifetime, refreshable },
  // null without one, undefined until read from storage.
  let session;
  let loginInFlight = null;
  let refreshInFlight = null;
  // The access JWT for the team's API: { token, expiresAt, lifetime } or null. Kept in
  // memory only: it lives minutes, and one fetch at launch is cheaper than one more
  // credential at rest.
  let access = null;
  let accessInFlight = null;
  // Counts the session's ends and new logins (not refreshes), so that a JWT fetched for
  // an earlier session is never cached for the current one.
  let sessionEpoch = 0;
  const listeners = [];

  function wxLoginCode() {
    return new Promise(function (resolve, reject) {
      const fail = function (err) {
        const message = err && err.errMsg ? err.errMsg : 'wx.login gave no code';
        reject(new WxauthError('wx_login_failed', message));
      };
      try {
        wxApi.login({
          success: function (res) {
            if (res && res.code) resolve(res.code);
            else fail(res);
          },
          fail: fail,
        });
      } catch (e) {
        fail({ errMsg: String(e && e.message ? e.message : e) });
      }
    });
  }

  function load() {
    if (session === undefined) {
      session = null;
      try {
        const stored = wxApi.getStorageSync(storageKey);
        if (
          stored &&
          stored.v === STORAGE_VERSION &&
          typeof stored.token === 'string' &&
          typeof stored.expiresAt === 'number' &&
          typeof stored.lifetime === 'number'
        ) {
          session = {
            token: stored.token,
            expiresAt: stored.expiresAt,
            lifetime: stored.lifetime,
            refreshable: stored.refreshable !== false,
          };
        }
      } catch (e) {
        // Unreadable storage is the same as none: the next request logs in.
      }
    }
    return session;
  }

  // The memory copy is what counts; storage only carries it to the next launch, so a
  // full or broken storage costs a login later, never a failed request now.
  function save(next) {
    session = next;
    try {
      if (next) {
        wxApi.setStorageSync(storageKey, {
          v: STORAGE_VERSION,
          token: next.token,
          expiresAt: next.expiresAt,
          lifetime: next.lifetime,
          refreshable: next.refreshable,
        });
      } else {
        wxApi.removeStorageSync(storageKey);
      }
    } catch (e) {
      // See above.
    }
  }

  function emit(event) {
    listeners.slice().forEach(function (listener) {
      try {
        listener(event);
      } catch (e) {
        console.error('wxauth: an onAuthChange listener threw', e);
      }
    });
  }

  // A JWT names its session and its user; after a new login (possibly another user) or
  // the end of the session it must not be sent again.
  function sessionChanged() {
    sessionEpoch += 1;
    access = null;
  }

  // Forgets the session if `token` is still the current one: a concurrent request may
  // have logged in again already, and its new session must stay.
  function sessionDied(token, code) {
    const current = load();
    if (current && current.token === token) {
      save(null);
      sessionChanged();
      emit({ type: 'expired', code: code });
    }
  }

  // Stores the token from a login or refresh answer. `expires_in` is taken against the
  // device's clock rather than `expires_at`, so a phone whose clock is off still
  // refreshes on time.
  function adopt(body, previous) {
    if (!body || typeof body.token !== 'string' || typeof body.expires_in !== 'number') {
      throw new WxauthError('invalid_response', 'the token answer has no token or expires_in');
    }
    const lifetime = body.expires_in * 1000;
    const expiresAt = now() + lifetime;
    // Near session_max_age a refresh cannot move the expiry any more; asking again on
    // every request would only cost round trips.
    const refreshable = !previous || expiresAt > previous.expiresAt + 1000;
    const next = {
      token: body.token,
      expiresAt: expiresAt,
      lifetime: previous && !refreshable ? previous.lifetime : lifetime,
      refreshable: refreshable,
    };
    save(next);
    return next;
  }

  function joinUrl(base, url) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) return url;
    return base + (url.charAt(0) === '/' ? '' : '/') + url;
  }

  function resolveUrl(url) {
    return joinUrl(baseUrl, url);
  }

  function resolveApiUrl(url) {
    return joinUrl(apiBaseUrl, url);
  }

  function withToken(header, token) {
    const out = {};
    if (header) {
      Object.keys(header).forEach(function (name) {
        if (name.toLowerCase() !== 'authorization') out[name] = header[name];
      });
    }
    out.Authorization = 'Bearer ' + token;
    return out;
  }

  // One wx.request, as a promise: resolves for any HTTP status, rejects only when no
  // answer came (wx.request's `fail`).
  function wxRequest(opts) {
    return new Promise(function (resolve, reject) {
      const call = Object.assign({}, opts, {
        success: resolve,
        fail: function (err) {
          reject(networkError(err));
        },
      });
      delete call.complete;
      if (call.timeout === undefined && timeout !== undefined) call.timeout = timeout;
      try {
        wxApi.request(call);
      } catch (e) {
        reject(networkError(e));
      }
    });
  }

  function wxUploadFile(opts) {
    return new Promise(function (resolve, reject) {
      const call = Object.assign({}, opts, {
        success: resolve,
        fail: function (err) {
          reject(networkError(err));
        },
      });
      if (call.timeout === undefined && timeout !== undefined) call.timeout = timeout;
      try {
        wxApi.uploadFile(call);
      } catch (e) {
        reject(networkError(e));
      }
    });
  }

  function failed(res) {
    return !res || typeof res.statusCode !== 'number' || res.statusCode >= 400;
  }

  function mayWait(error) {
    return (
      BUSY_CODES.indexOf(error.code) >= 0 &&
      typeof error.retryAfter === 'number' &&
      error.retryAfter * 1000 <= maxRetryDelay
    );
  }

  // The credentials a call can carry: how to get one, whether an answer refuses it, and
  // how to forget it.
  const sessionCredential = {
    get: ensureToken,
    refuses: function (res, error) {
      return isAuthCode(error.code);
    },
    drop: function (token, error) {
      sessionDied(token, error.code);
    },
  };
  // The team's API is not wxauth: any 401 from it means the JWT was not accepted.
  const accessCredential = {
    get: getAccessToken,
    refuses: function (res) {
      return res.statusCode === 401;
    },
    drop: function (token) {
      // Only if still current: a concurrent call may have fetched a new one already.
      if (access && access.token === token) access = null;
    },
  };

  // Runs `send(token)` with a token of `credential` (none when null) and deals with its
  // answer: a refused token gets one new token and one retry, a busy server one wait of
  // Retry-After and one retry (unless `hurried`: the caller has something to fall back
  // on). Nothing repeats, so a server that keeps refusing is answered with its error,
  // not with a loop.
  function exchange(send, credential, hurried) {
    let renewed = false;
    let waited = false;
    function attempt() {
      const token = credential ? credential.get() : Promise.resolve(undefined);
      return token.then(function (t) {
        return send(t).then(function (res) {
          if (!failed(res)) return res;
          const error = errorFromResponse(res, now());
          if (credential && credential.refuses(res, error)) {
            credential.drop(t, error);
            if (!renewed) {
              renewed = true;
              return attempt();
            }
          } else if (!hurried && !waited && mayWait(error)) {
            waited = true;
            return sleep(error.retryAfter * 1000).then(attempt);
          }
          throw error;
        });
      });
    }
    return attempt();
  }

  function loginOnce() {
    if (!loginInFlight) {
      // A new code for a retry after Retry-After too: WeChat may have used up the first
      // one even though wxauth could not finish the login.
      const flight = exchange(function () {
        return Promise.resolve()
          .then(getCode)
          .then(function (code) {
            const data = { code: code };
            if (appid) data.appid = appid;
            return wxRequest({
              url: baseUrl + '/v1/login',
              method: 'POST',
              header: { 'content-type': 'application/json' },
              data: data,
            });
          });
      }, null)
        .then(function (res) {
          const body = parseBody(res.data);
          const next = adopt(body, null);
          sessionChanged();
          const result = { token: next.token, user: body.user, newUser: body.new_user === true };
          emit({ type: 'login', user: result.user, newUser: result.newUser });
          return result;
        });
      loginInFlight = flight;
      const done = function () {
        if (loginInFlight === flight) loginInFlight = null;
      };
      flight.then(done, done);
    }
    return loginInFlight;
  }

  function refreshOnce(current) {
    if (!refreshInFlight) {
      const flight = wxRequest({
        url: baseUrl + '/v1/session/refresh',
        method: 'POST',
        header: withToken({ 'content-type': 'application/json' }, current.token),
      }).then(
        function (res) {
          if (failed(res)) {
            const error = errorFromResponse(res, now());
            if (isAuthCode(error.code)) {
              sessionDied(current.token, error.code);
              return loginOnce().then(tokenOf);
            }
            // Busy or odd: the token still has time left, so use it and let a later
            // request try the refresh again.
            return current.token;
          }
          const latest = load();
          // A new login while the refresh was away wins over it.
          if (!latest || latest.token !== current.token) {
            return latest ? latest.token : loginOnce().then(tokenOf);
          }
          return adopt(parseBody(res.data), current).token;
        },
        function () {
          // Offline: as for a busy server.
          return current.token;
        }
      );
      refreshInFlight = flight;
      const done = function () {
        if (refreshInFlight === flight) refreshInFlight = null;
      };
      flight.then(done, done);
    }
    return refreshInFlight;
  }

  function tokenOf(result) {
    return result.token;
  }

  // A usable token: the stored one, a refreshed one when less than a third of its
  // lifetime is left, or a new login when there is none or it has run out.
  function ensureToken() {
    if (loginInFlight) return loginInFlight.then(tokenOf);
    const current = load();
    if (!current) return loginOnce().then(tokenOf);
    const remaining = current.expiresAt - now();
    if (remaining <= 0) {
      sessionDied(current.token, 'token_expired');
      return loginOnce().then(tokenOf);
    }
    if (refreshInFlight) return refreshInFlight;
    if (current.refreshable && remaining < current.lifetime / 3) return refreshOnce(current);
    return Promise.resolve(current.token);
  }

  // Errors after which a JWT that has time left is still worth sending: no answer, or
  // a busy server. Any other answer is about this session or user (banned, say) and is
  // returned.
  function transient(error) {
    return error.status === 0 || error.status === 429 || error.status >= 500;
  }

  // POST /v1/token with the session. `fallback` is the cached JWT when it still has time
  // left: a transient failure then answers with it instead of an error or a wait.
  function fetchAccessToken(fallback) {
    let epoch;
    return exchange(
      function (token) {
        epoch = sessionEpoch;
        return wxRequest({
          url: baseUrl + '/v1/token',
          method: 'POST',
          header: withToken({ 'content-type': 'application/json' }, token),
        });
      },
      sessionCredential,
      !!fallback
    ).then(
      function (res) {
        const body = parseBody(res.data);
        if (!body || typeof body.access_token !== 'string' || typeof body.expires_in !== 'number') {
          throw new WxauthError(
            'invalid_response',
            'the token answer has no access_token or expires_in',
            { status: res.statusCode }
          );
        }
        // As for the session: the lifetime runs from when the answer arrived, on the
        // device's clock.
        const lifetime = body.expires_in * 1000;
        const next = { token: body.access_token, expiresAt: now() + lifetime, lifetime: lifetime };
        if (epoch === sessionEpoch) access = next;
        return next.token;
      },
      function (error) {
        if (fallback && access === fallback && fallback.expiresAt > now() && transient(error)) {
          return fallback.token;
        }
        throw error;
      }
    );
  }

  // The access JWT: the cached one while more than a third of its lifetime is left,
  // else a new one, fetched once for every caller waiting.
  function getAccessToken() {
    const current = access;
    if (current && current.expiresAt - now() >= current.lifetime / 3) {
      return Promise.resolve(current.token);
    }
    if (!accessInFlight) {
      const flight = fetchAccessToken(current && current.expiresAt > now() ? current : null);
      accessInFlight = flight;
      const done = function () {
        if (accessInFlight === flight) accessInFlight = null;
      };
      flight.then(done, done);
    }
    return accessInFlight;
  }

  function jsonCall(method, path, data) {
    return exchange(function (token) {
      const opts = {
        url: baseUrl + path,
        method: method,
        header: withToken({ 'content-type': 'application/json' }, token),
      };
      if (data !== undefined) opts.data = data;
      return wxRequest(opts);
    }, sessionCredential).then(function (res) {
      return parseBody(res.data);
    });
  }

  function login() {
    return loginOnce().then(function (result) {
      return { user: result.user, newUser: result.newUser };
    });
  }

  // wx.request's options as a promise, with a token of `credential` in Authorization.
  function callWith(credential, toUrl, options) {
    const base = Object.assign({}, options);
    delete base.success;
    delete base.fail;
    delete base.complete;
    base.url = toUrl(options.url);
    return exchange(function (token) {
      return wxRequest(Object.assign({}, base, { header: withToken(options.header, token) }));
    }, credential);
  }

  function request(options) {
    if (!options || typeof options.url !== 'string') {
      return Promise.reject(new TypeError('request: `url` is required'));
    }
    return callWith(sessionCredential, resolveUrl, options);
  }

  // The session token never goes to the team's API: it is wxauth's credential, and a
  // JWT is what the API can verify on its own.
  function apiRequest(options) {
    if (!options || typeof options.url !== 'string') {
      return Promise.reject(new TypeError('apiRequest: `url` is required'));
    }
    return callWith(accessCredential, resolveApiUrl, options);
  }

  function logout(options) {
    const all = !!(options && options.all);
    // Let a login, refresh or JWT fetch under way land first, so the session it brings is
    // the one that gets revoked rather than one that outlives the logout, and a fetch is
    // not refused afterwards and answered with a new login.
    return settled(loginInFlight)
      .then(function () {
        return settled(refreshInFlight);
      })
      .then(function () {
        return settled(accessInFlight);
      })
      .then(function () {
        const current = load();
        if (!current) return undefined;
        save(null);
        sessionChanged();
        emit({ type: 'logout', all: all });
        const opts = {
          url: baseUrl + '/v1/logout',
          method: 'POST',
          header: withToken({ 'content-type': 'application/json' }, current.token),
        };
        if (all) opts.data = { all: true };
        return wxRequest(opts).then(function (res) {
          if (!failed(res)) return undefined;
          const error = errorFromResponse(res, now());
          // A session the server already holds dead is as logged out as it gets.
          if (isAuthCode(error.code)) return undefined;
          throw error;
        });
      });
  }

  function getUser() {
    return jsonCall('GET', '/v1/me');
  }

  function updateProfile(fields) {
    // POST, not PATCH: wx.request offers no PATCH, and wxauth takes either on /v1/me.
    return jsonCall('POST', '/v1/me', fields || {});
  }

  function uploadAvatar(tempFilePath) {
    if (typeof tempFilePath !== 'string' || tempFilePath === '') {
      return Promise.reject(new TypeError('uploadAvatar: pass the file path from chooseAvatar'));
    }
    return exchange(function (token) {
      return wxUploadFile({
        url: baseUrl + '/v1/me/avatar',
        filePath: tempFilePath,
        name: 'file',
        header: withToken(null, token),
      });
    }, sessionCredential).then(function (res) {
      const user = parseBody(res.data);
      if (!user || typeof user !== 'object') {
        throw new WxauthError('invalid_response', 'the avatar upload answered no user', {
          status: res.statusCode,
        });
      }
      return user;
    });
  }

  function bindPhone(code) {
    if (typeof code !== 'string' || code === '') {
      return Promise.reject(
        new WxauthError(
          'invalid_request',
          'bindPhone needs e.detail.code from getPhoneNumber; the user may have declined'
        )
      );
    }
    return jsonCall('POST', '/v1/me/phone', { code: code });
  }

  function onAuthChange(listener) {
    if (typeof listener !== 'function') throw new TypeError('onAuthChange: pass a function');
    listeners.push(listener);
    return function unsubscribe() {
      const i = listeners.indexOf(listener);
      if (i >= 0) listeners.splice(i, 1);
    };
  }

  return {
    login: login,
    request: request,
    getAccessToken: getAccessToken,
    apiRequest: apiRequest,
    logout: logout,
    getUser: getUser,
    updateProfile: updateProfile,
    uploadAvatar: uploadAvatar,
    bindPhone: bindPhone,
    onAuthChange: onAuthChange,
    resolveUrl: resolveUrl,
  };
}

module.exports = {
  createClient: createClient,
  WxauthError: WxauthError,
};
