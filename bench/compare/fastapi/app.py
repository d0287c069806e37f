"""wxauth's login (POST /v1/login) written the usual way in Python: FastAPI, httpx,
sqlite3 and PyJWT. bench/run measures it beside wxauth; bench/README.md says how.

Configured from the environment: APPID, APP_SECRET, WECHAT_API (the base URL of WeChat's
API, or of a fake one), DB_PATH (the SQLite file), JWT_SECRET (a random one when unset)
and SQLITE_SYNCHRONOUS (FULL, the default, makes every login durable before it is
answered; NORMAL only shows what the flow costs without that).

Run with one worker, since SQLite has one writer:

    uvicorn app:app --host 127.0.0.1 --port 8000 --workers 1
"""

import hashlib
import os
import secrets
import sqlite3
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone

import httpx
import jwt
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

APPID = os.environ["APPID"]
APP_SECRET = os.environ["APP_SECRET"]
WECHAT_API = os.environ.get("WECHAT_API", "https://api.weixin.qq.com").rstrip("/")
DB_PATH = os.environ.get("DB_PATH", "login.db")
JWT_SECRET = os.environ.get("JWT_SECRET") or secrets.token_hex(32)
SYNCHRONOUS = os.environ.get("SQLITE_SYNCHRONOUS", "FULL")
if SYNCHRONOUS not in ("FULL", "NORMAL"):
    raise SystemExit("SQLITE_SYNCHRONOUS must be FULL or NORMAL")
SESSION_TTL = 7 * 24 * 3600

SCHEMA = """
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
"""

UPSERT_USER = """
INSERT INTO users (public_id, appid, openid, unionid, session_key, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (appid, openid) DO UPDATE SET
    unionid = coalesce(excluded.unionid, unionid),
    session_key = excluded.session_key,
    updated_at = excluded.updated_at
RETURNING id, public_id, nickname, avatar_url, gender, country, province, city,
          language, phone, created_at, updated_at
"""

USER_FIELDS = ("nickname", "avatar_url", "gender", "country", "province", "city",
               "language", "phone")


def open_db(path):
    # One connection, used only from the event loop's thread: every statement runs
    # between two awaits, so no two requests ever share a transaction.
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA busy_timeout = 5000")
    db.executescript(SCHEMA)
    return db


db = open_db(DB_PATH)
wechat = None


@asynccontextmanager
async def lifespan(_app):
    global wechat
    async with httpx.AsyncClient(base_url=WECHAT_API, timeout=5.0) as client:
        wechat = client
        yield


app = FastAPI(lifespan=lifespan)


class LoginRequest(BaseModel):
    code: str


def error(status, code, message):
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


@app.exception_handler(RequestValidationError)
async def invalid_request(_request: Request, exc: RequestValidationError):
    return error(400, "invalid_request", str(exc.errors()[0]["msg"]))


def rfc3339(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_login(openid, unionid, session_key, secret_hash, now, expires_at):
    """Upserts the user and opens a session, in one transaction. Returns the user's
    row and whether it is new."""
    public_id = "u_" + secrets.token_urlsafe(12)
    with db:
        user = db.execute(
            UPSERT_USER, (public_id, APPID, openid, unionid, session_key, now, now)
        ).fetchone()
        db.execute(
            "INSERT INTO sessions (secret_hash, user_id, created_at, expires_at) "
            "VALUES (?, ?, ?, ?)",
            (secret_hash, user[0], now, expires_at),
        )
    return user, user[1] == public_id


@app.get("/healthz")
async def healthz():
    return {"ok": True}


@app.post("/v1/login")
async def login(body: LoginRequest):
    if not body.code or len(body.code) > 512:
        return error(400, "invalid_request", "`code` must be what wx.login returned")
    try:
        r = await wechat.get("/sns/jscode2session", params={
            "appid": APPID, "secret": APP_SECRET, "js_code": body.code,
            "grant_type": "authorization_code",
        })
        wx = r.json()
    except (httpx.HTTPError, ValueError):
        return error(503, "upstream_unavailable", "WeChat did not answer; try again")
    if wx.get("errcode"):
        if wx["errcode"] in (40029, 40163):
            return error(400, "invalid_code", "the code is invalid or was used")
        return error(502, "upstream_error", "WeChat refused the login")
    if not wx.get("openid") or not wx.get("session_key"):
        return error(502, "upstream_error", "WeChat answered without an openid")

    session_id = secrets.token_bytes(16)
    now = int(time.time())
    expires_at = now + SESSION_TTL
    user, new_user = record_login(
        wx["openid"], wx.get("unionid"), wx["session_key"],
        hashlib.sha256(session_id).digest(), now, expires_at,
    )
    token = jwt.encode(
        {"sub": user[1], "sid": session_id.hex(), "iat": now, "exp": expires_at},
        JWT_SECRET, algorithm="HS256",
    )
    return {
        "token": token,
        "token_type": "Bearer",
        "expires_in": SESSION_TTL,
        "expires_at": rfc3339(expires_at),
        "new_user": new_user,
        "user": {
            "id": user[1],
            "appid": APPID,
            **dict(zip(USER_FIELDS, user[2:10])),
            "created_at": rfc3339(user[10]),
            "updated_at": rfc3339(user[11]),
        },
    }
