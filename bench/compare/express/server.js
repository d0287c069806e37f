// wxauth's login (POST /v1/login) written the usual way in Node.js: Express, fetch,
// better-sqlite3 and jsonwebtoken. bench/run measures it beside wxauth; bench/README.md
// says how.
//
// Configured from the environment: APPID, APP_SECRET, WECHAT_API (the base URL of
// WeChat's API, or of a fake one), DB_PATH (the SQLite file), JWT_SECRET (a random one
// when unset), HOST, PORT and SQLITE_SYNCHRONOUS (FULL, the default, makes every login
// durable before it is answered; NORMAL only shows what the flow costs without that).
'use strict';

const crypto = require('node:crypto');
const express = require('express');
const Database = require('better-sqlite3');
const jwt = require('jsonwebtoken');

const APPID = requiredEnv('APPID');
const APP_SECRET = requiredEnv('APP_SECRET');
const WECHAT_API = (process.env.WECHAT_API || 'https://api.weixin.qq.com').replace(/\/+$/, '');
const DB_PATH = process.env.DB_PATH || 'login.db';
// A KeyObject made once: given a string, jsonwebtoken first tries to parse it as a PEM
// private key on every call, which costs more than the signature itself.
const JWT_KEY = crypto.createSecretKey(
  Buffer.from(process.env.JWT_SECRET || crypto.randomBytes(32).toString('hex')),
);
const SYNCHRONOUS = process.env.SQLITE_SYNCHRONOUS || 'FULL';
if (!['FULL', 'NORMAL'].includes(SYNCHRONOUS)) {
  throw new Error('SQLITE_SYNCHRONOUS must be FULL or NORMAL');
}
const SESSION_TTL = 7 * 24 * 3600;

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} must be set`);
  return value;
}

const db = new Database(DB_PATH);
db.pragma('journal_mode = WAL');
db.pragma(`synchronous = ${SYNCHRONOUS}`);
db.pragma('foreign_keys = ON');
db.pragma('busy_timeout = 5000');
db.exec(`
CREATE TABLE IF NOT EXISTS users (
    id          INTEGER PRIMARY KEY,
    public_id   TEXT    NOT NULL UNIQUE,
    appid       TEXT    NOT NULL,
    openid      TEXT    NOT NULL,
    unionid     TEXT,
    session_key TEXT,                   -- as WeChat sent it, not encrypted
    nickname    TEXT,
    avatar_url  TEXT,
    gender      INTEGER NOT NULL DEFAULT 0,
    country     TEXT,
    province    TEXT,
    city        TEXT,
    language    TEXT,
    phone       TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (appid, openid)
);
CREATE TABLE IF NOT EXISTS sessions (
    id          INTEGER PRIMARY KEY,
    secret_hash BLOB    NOT NULL UNIQUE,  -- SHA-256 of the session id inside the JWT
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);
`);

const upsertUser = db.prepare(`
INSERT INTO users (public_id, appid, openid, unionid, session_key, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (appid, openid) DO UPDATE SET
    unionid = coalesce(excluded.unionid, unionid),
    session_key = excluded.session_key,
    updated_at = excluded.updated_at
RETURNING id, public_id, nickname, avatar_url, gender, country, province, city,
          language, phone, created_at, updated_at`);
const insertSession = db.prepare(
  'INSERT INTO sessions (secret_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)',
);

// Upserts the user and opens a session, in one transaction (BEGIN IMMEDIATE).
const recordLogin = db.transaction((wx, secretHash, now, expiresAt) => {
  const publicId = 'u_' + crypto.randomBytes(12).toString('base64url');
  const user = upsertUser.get(
    publicId, APPID, wx.openid, wx.unionid ?? null, wx.session_key, now, now,
  );
  insertSession.run(secretHash, user.id, now, expiresAt);
  return { user, newUser: user.public_id === publicId };
}).immediate;

const rfc3339 = (t) => new Date(t * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

function sendError(res, status, code, message) {
  res.status(status).json({ error: { code, message } });
}

const app = express();
app.disable('x-powered-by');
app.use(express.json({ limit: '16kb' }));

app.get('/healthz', (req, res) => {
  res.json({ ok: true });
});

app.post('/v1/login', async (req, res) => {
  const code = req.body?.code;
  if (typeof code !== 'string' || code.length === 0 || code.length > 512) {
    return sendError(res, 400, 'invalid_request', '`code` must be what wx.login returned');
  }
  const query = new URLSearchParams({
    appid: APPID, secret: APP_SECRET, js_code: code, grant_type: 'authorization_code',
  });
  let wx;
  try {
    // Node's fetch keeps connections alive and reuses them across requests.
    const r = await fetch(`${WECHAT_API}/sns/jscode2session?${query}`, {
      signal: AbortSignal.timeout(5000),
    });
    wx = await r.json();
  } catch {
    return sendError(res, 503, 'upstream_unavailable', 'WeChat did not answer; try again');
  }
  if (wx.errcode) {
    if (wx.errcode === 40029 || wx.errcode === 40163) {
      return sendError(res, 400, 'invalid_code', 'the code is invalid or was used');
    }
    return sendError(res, 502, 'upstream_error', 'WeChat refused the login');
  }
  if (!wx.openid || !wx.session_key) {
    return sendError(res, 502, 'upstream_error', 'WeChat answered without an openid');
  }

  const sessionId = crypto.randomBytes(16);
  const now = Math.floor(Date.now() / 1000);
  const expiresAt = now + SESSION_TTL;
  const secretHash = crypto.createHash('sha256').update(sessionId).digest();
  const { user, newUser } = recordLogin(wx, secretHash, now, expiresAt);
  const token = jwt.sign(
    { sub: user.public_id, sid: sessionId.toString('hex'), iat: now, exp: expiresAt },
    JWT_KEY,
    { algorithm: 'HS256' },
  );
  res.json({
    token,
    token_type: 'Bearer',
    expires_in: SESSION_TTL,
    expires_at: rfc3339(expiresAt),
    new_user: newUser,
    user: {
      id: user.public_id,
      appid: APPID,
      nickname: user.nickname,
      avatar_url: user.avatar_url,
      gender: user.gender,
      country: user.country,
      province: user.province,
      city: user.city,
      language: user.language,
      phone: user.phone,
      created_at: rfc3339(user.created_at),
      updated_at: rfc3339(user.updated_at),
    },
  });
});

// Malformed JSON and other errors: the same error shape as the API's own.
app.use((err, req, res, next) => {
  if (res.headersSent) return next(err);
  if (err.type === 'entity.parse.failed') {
    return sendError(res, 400, 'invalid_request', 'the body is not valid JSON');
  }
  console.error(err);
  sendError(res, 500, 'internal', 'something went wrong');
});

const port = Number(process.env.PORT || 3000);
app.listen(port, process.env.HOST || '127.0.0.1', () => {
  console.log(`listening on ${process.env.HOST || '127.0.0.1'}:${port}`);
});
