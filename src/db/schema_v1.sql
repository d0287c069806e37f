-- wxauth database schema as version 1 made it, kept so that the migrations in
-- migrations.rs are tested from every version before today's. A new database gets
-- schema.sql at the top of the repository instead. The notes marked "v2", "v3" and "v4"
-- say what each migration changed.
--
-- Times are Unix seconds (UTC). Secrets are never stored in the clear: sessions are
-- found by the SHA-256 of their random id, and login codes by the SHA-256 of the code.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,          -- internal; never leaves the server
    public_id     TEXT    NOT NULL UNIQUE,      -- the opaque id clients see
    appid         TEXT    NOT NULL,
    openid        TEXT    NOT NULL,
    unionid       TEXT,
    nickname      TEXT,
    avatar_url    TEXT,
    gender        INTEGER NOT NULL DEFAULT 0 CHECK (gender IN (0, 1, 2)), -- v2: as = joined by OR
    country       TEXT,
    province      TEXT,
    city          TEXT,
    language      TEXT,
    phone         TEXT,
    banned_until  INTEGER,
    ban_reason    TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (appid, openid)
);
-- v4: a last column `session_key BLOB`, the user's sealed session_key (formerly the
-- table session_keys below), NULL while there is none.

CREATE INDEX users_unionid ON users (unionid) WHERE unionid IS NOT NULL;
-- v4: dropped; users are listed in rowid order, the order they were created in.
CREATE INDEX users_app_created ON users (appid, created_at);

CREATE TABLE sessions (
    id             INTEGER PRIMARY KEY,          -- internal; also the eviction order
    public_id      TEXT    NOT NULL UNIQUE,      -- shown to clients, admins and backends
    secret_hash    BLOB    NOT NULL UNIQUE,      -- SHA-256 of the random id inside the token,
                                                 -- led by the id's 6-byte creation time when
                                                 -- the token starts `v2.`
    user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,             -- sliding: moves forward on refresh
    max_expires_at INTEGER NOT NULL,             -- absolute: created_at + session_max_age
    last_seen_at   INTEGER NOT NULL,
    revoked_at     INTEGER,
    revoked_reason TEXT CHECK (revoked_reason IN ('logout', 'admin', 'evicted')) -- v2: as = joined by OR
);

CREATE INDEX sessions_user_live ON sessions (user_id, id) WHERE revoked_at IS NULL;
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- A wx.login code that led to a session, so that a retried request with the same code
-- gets the same session back instead of WeChat's "code been used".
-- v2: a rowid table (`id INTEGER PRIMARY KEY`, `code_hash` NOT NULL UNIQUE), so that the
-- expiry index grows at its end.
-- v3: only appended to: no index, no `session_id` (the session is found by the secret
-- in `sealed_sid`), and `code_hash` not unique. The server finds a code's row through its
-- own index of the codes recorded in the last five minutes; expired rows are deleted
-- oldest first.
CREATE TABLE login_codes (
    code_hash   BLOB    PRIMARY KEY,             -- SHA-256 over appid and code
    session_id  INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    sealed_sid  BLOB    NOT NULL,                -- the session's random id, masked by the code
    new_user    INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX login_codes_expiry ON login_codes (expires_at);
-- Deleting a session looks for its login codes (ON DELETE CASCADE); without this index
-- each deleted session would scan the whole table.
CREATE INDEX login_codes_session ON login_codes (session_id);

-- Keys that let the team's own services call `POST /v1/introspect`. Only the SHA-256 of
-- a key is kept; the key itself is shown once, when `wxauth service-keys create` makes it.
CREATE TABLE service_keys (
    id           INTEGER PRIMARY KEY,
    public_id    TEXT    NOT NULL UNIQUE,        -- `sk_…`, shown in listings and logs
    name         TEXT    NOT NULL,
    key_hash     BLOB    NOT NULL UNIQUE,        -- SHA-256 of the whole key
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    last_used_at INTEGER                         -- kept coarsely, like sessions.last_seen_at
);

-- A name may be reused once its old key is revoked.
CREATE UNIQUE INDEX service_keys_live_name ON service_keys (name) WHERE revoked_at IS NULL;

-- The latest WeChat session_key of each user, sealed with AES-256-GCM under a key derived
-- from the key file's data key, bound to the user's public id. Replaced on every login.
-- v4: dropped; the sealed key is the column `users.session_key`.
CREATE TABLE session_keys (
    user_id     INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    sealed      BLOB    NOT NULL,                -- 96-bit nonce, ciphertext, tag
    updated_at  INTEGER NOT NULL
);

-- Each app's access_token (sealed like session_keys, bound to the AppID), so a restart
-- does not fetch a new one, and the force-refresh budget WeChat allows each app.
CREATE TABLE access_tokens (
    appid          TEXT    PRIMARY KEY,
    sealed         BLOB    NOT NULL,
    fresh_until    INTEGER NOT NULL,             -- a few minutes before WeChat's expiry
    force_day      INTEGER NOT NULL,             -- the day (UTC+8) force_count counts in
    force_count    INTEGER NOT NULL,
    last_force_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- Uploaded avatars, served at /v1/avatars/<id>. A user keeps only the latest one.
CREATE TABLE avatars (
    id            TEXT    PRIMARY KEY,           -- random `a_…`; a new one for each upload
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content_type  TEXT    NOT NULL,              -- from the bytes, not from the client
    sha256        TEXT    NOT NULL,              -- lowercase hex; the ETag
    bytes         BLOB    NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE INDEX avatars_user ON avatars (user_id);
