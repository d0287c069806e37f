-- wxauth database schema: what a new database gets, in one transaction.
--
-- `PRAGMA user_version` records the schema version (today 5). A database made by an
-- older wxauth is brought here by the numbered migrations in src/db/migrations.rs, each
-- tested from the version before it.
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
    -- OR rather than IN: SQLite checks an IN list of three values through a temporary
    -- index, on every insert.
    gender        INTEGER NOT NULL DEFAULT 0 CHECK (gender = 0 OR gender = 1 OR gender = 2),
    country       TEXT,
    province      TEXT,
    city          TEXT,
    language      TEXT,
    phone         TEXT,
    banned_until  INTEGER,
    ban_reason    TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    -- The latest WeChat session_key, sealed with AES-256-GCM under a key derived from
    -- the key file's data key and bound to public_id (96-bit nonce, ciphertext, tag);
    -- replaced on every login, NULL while there is none.
    session_key   BLOB,
    UNIQUE (appid, openid)
);

-- Users are listed in rowid order: never deleted, that is the order they were created in.
CREATE INDEX users_unionid ON users (unionid) WHERE unionid IS NOT NULL;

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
    revoked_reason TEXT CHECK (revoked_reason = 'logout' OR revoked_reason = 'admin' OR revoked_reason = 'evicted')
);

CREATE INDEX sessions_user_live ON sessions (user_id, id) WHERE revoked_at IS NULL;
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- A wx.login code that led to a session, so that a retried request with the same code
-- gets the same session back instead of WeChat's "code been used". Only appended to,
-- with no index: the server finds a code's row through its own index of the codes
-- recorded in the last five minutes, and expired rows are deleted oldest first. The
-- session is found by the secret in `sealed_sid`, as a token finds it.
CREATE TABLE login_codes (
    id          INTEGER PRIMARY KEY,
    code_hash   BLOB    NOT NULL,                -- SHA-256 over appid and code
    sealed_sid  BLOB    NOT NULL,                -- the session's random id, masked by the code
    new_user    INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);

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

-- Each app's access_token (sealed like users.session_key, bound to the AppID), so a
-- restart does not fetch a new one, and the force-refresh budget WeChat allows each app.
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

-- The keys of the key file (keys.json) this database depends on: each signing key not
-- retired (tokens signed with it are accepted) and the data key that sealed
-- users.session_key and access_tokens.sealed. Only an id and a fingerprint (HMAC-SHA256
-- keyed by the key over a fixed text) are kept, never a key. A server refuses to start
-- with a key file that lacks one of them; `wxauth keys reset --yes` starts over.
CREATE TABLE needed_keys (
    kind        TEXT    NOT NULL CHECK (kind = 'signing' OR kind = 'data'),
    id          TEXT    NOT NULL,                -- a signing key's kid; the data key's
                                                 -- fingerprint's first 16 characters
    fingerprint TEXT    NOT NULL,                -- lowercase hex
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
