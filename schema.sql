-- wxauth database schema: what a new database gets, in one transaction.
--
-- `PRAGMA user_version` records the schema version (today 6). A database made by an
-- older wxauth is brought here by the numbered migrations in src/db/migrations.rs, each
-- tested from the version before it.
--
-- Times are Unix seconds (UTC). Secrets are never stored in the clear: sessions are
-- found by the SHA-256 of their random id, and login codes by the SHA-256 of the code.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,          -- internal; never leaves the server
    public_id     TEXT    NOT NULL UNIQUE,      -- the opaque id clients see
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
    -- Set when `wxauth users merge` merged this user into another: the row stays, so
    -- that its public id still names the person, as an alias of that user.
    merged_into   INTEGER REFERENCES users (id),
    -- The AppIDs of the user's identities, oldest first, comma-separated: kept here, as
    -- every answer about a user shows them, rather than looked up in `identities`
    -- through an index every login would have to grow.
    apps          TEXT    NOT NULL DEFAULT ''
);

-- Users are listed in rowid order: never deleted, that is the order they were created in.

-- How a person logs in: one app's openid, with the unionid WeChat gave for it, if any.
-- A user has one or more; an identity belongs to exactly one user. Never deleted. No
-- index by user: only the admin commands ask for a user's identities.
CREATE TABLE identities (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (id),
    appid         TEXT    NOT NULL,
    openid        TEXT    NOT NULL,
    unionid       TEXT,
    created_at    INTEGER NOT NULL,
    -- The latest WeChat session_key of this identity (mini programs only), sealed with
    -- AES-256-GCM under a key derived from the key file's data key and bound to the
    -- identity (before version 6: to the user's public_id) (96-bit nonce, ciphertext,
    -- tag); replaced on every login that brings one, NULL while there is none.
    session_key   BLOB,
    -- The openid first: openids differ from the first character, where every AppID of a
    -- deployment shares a long prefix, so each comparison in this index ends sooner; and
    -- an openid alone, without its app, finds its identities through it.
    UNIQUE (openid, appid)
);

CREATE INDEX identities_unionid ON identities (unionid) WHERE unionid IS NOT NULL;

CREATE TABLE sessions (
    id             INTEGER PRIMARY KEY,          -- internal; also the eviction order
    public_id      TEXT    NOT NULL UNIQUE,      -- shown to clients, admins and backends
    secret_hash    BLOB    NOT NULL UNIQUE,      -- SHA-256 of the random id inside the token,
                                                 -- led by the id's 6-byte creation time when
                                                 -- the token starts `v2.`
    user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    identity_id    INTEGER NOT NULL,             -- identities.id: what it logged in with;
                                                 -- identities are never deleted
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,             -- sliding: moves forward on refresh
    max_expires_at INTEGER NOT NULL,             -- absolute: created_at + session_max_age
    last_seen_at   INTEGER NOT NULL,
    revoked_at     INTEGER,
    revoked_reason TEXT CHECK (revoked_reason = 'logout' OR revoked_reason = 'admin' OR revoked_reason = 'evicted')
);

CREATE INDEX sessions_user_live ON sessions (user_id, id) WHERE revoked_at IS NULL;
-- With revoked_at, so that the console counts live sessions from the index alone.
CREATE INDEX sessions_expiry ON sessions (expires_at, revoked_at);

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

-- Keys that let the team's own services call `POST /v1/introspect` and, by scope, the
-- other backend routes. Only the SHA-256 of
-- a key is kept; the key itself is shown once, when `wxauth service-keys create` makes it.
CREATE TABLE service_keys (
    id           INTEGER PRIMARY KEY,
    public_id    TEXT    NOT NULL UNIQUE,        -- `sk_…`, shown in listings and logs
    name         TEXT    NOT NULL,
    key_hash     BLOB    NOT NULL UNIQUE,        -- SHA-256 of the whole key
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    last_used_at INTEGER,                        -- kept coarsely, like sessions.last_seen_at
    scopes       TEXT    NOT NULL DEFAULT 'introspect' -- what the key may call, comma-separated
);

-- A name may be reused once its old key is revoked.
CREATE UNIQUE INDEX service_keys_live_name ON service_keys (name) WHERE revoked_at IS NULL;

-- Each app's access_token (sealed like identities.session_key, bound to the AppID), so a
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
-- identities.session_key and access_tokens.sealed. Only an id and a fingerprint (HMAC-SHA256
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

-- Two users found to be one person: an identity of `other_user_id` reported, after
-- both users were made, the unionid an identity of `user_id` already had. Neither is
-- merged silently; `wxauth users merge` resolves it.
CREATE TABLE conflicts (
    id            INTEGER PRIMARY KEY,
    unionid       TEXT    NOT NULL,
    user_id       INTEGER NOT NULL REFERENCES users (id),
    other_user_id INTEGER NOT NULL REFERENCES users (id),
    found_at      INTEGER NOT NULL,
    resolved_at   INTEGER,
    UNIQUE (user_id, other_user_id)
);

-- What a backend may have to mirror, in order, for `GET /v1/events`. Only appended to
-- and never deleted, so a row id is never used twice.
CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    type          TEXT    NOT NULL CHECK (type = 'user.created' OR type = 'identity.linked'
                      OR type = 'user.merged' OR type = 'user.banned' OR type = 'user.unbanned'),
    at            INTEGER NOT NULL,
    user_id       INTEGER NOT NULL,             -- users.id; users are never deleted
    data          TEXT    NOT NULL DEFAULT '{}' -- the type's other fields, a JSON object
);

-- Web logins (§ web login in docs/web-login.md), from the redirect to WeChat until the
-- page has traded its one-time code for a session. A row is found by the SHA-256 of the
-- random id in the `state` wxauth gave WeChat, and later by the SHA-256 of the one-time
-- code; neither is stored itself. Maintenance deletes rows whose time is up.
CREATE TABLE web_logins (
    id              INTEGER PRIMARY KEY,
    state_hash      BLOB    NOT NULL UNIQUE,
    browser_hash    BLOB    NOT NULL,            -- SHA-256 of the cookie that binds the
                                                 -- state to the browser it was given to
    appid           TEXT    NOT NULL,
    scope           TEXT    NOT NULL,
    redirect_uri    TEXT    NOT NULL,
    client_state    TEXT,                        -- the page's own state, handed back
    expires_at      INTEGER NOT NULL,            -- the state's: ten minutes
    used_at         INTEGER,                     -- when WeChat sent the browser back
    code_hash       BLOB    UNIQUE,              -- of the one-time code the page received
    sealed_sid      BLOB,                        -- the session's secret, masked by the code
    new_user        INTEGER,
    code_expires_at INTEGER                      -- the code's: sixty seconds
);

CREATE INDEX identities_user ON identities (user_id);
CREATE INDEX users_phone ON users (phone) WHERE phone IS NOT NULL;
CREATE INDEX users_nickname ON users (nickname) WHERE nickname IS NOT NULL;
-- Merged users are few: the console counts the others as all users less these.
CREATE INDEX users_merged ON users (merged_into) WHERE merged_into IS NOT NULL;

-- Logins and new users per hour (a Unix time divided by 3600), for the console's
-- overview: sessions and events are pruned, these counts are not.
CREATE TABLE login_counts (
    hour          INTEGER PRIMARY KEY,
    logins        INTEGER NOT NULL,
    new_users     INTEGER NOT NULL
);

-- The people who may sign in to the console. They are created by `wxauth admins
-- create`, which hands out a one-time link: only the SHA-256 of the link's secret is
-- kept. A password is kept as `pbkdf2-sha256$<iterations>$<salt>$<hash>`.
CREATE TABLE admins (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE,
    password        TEXT,                        -- NULL until the setup link is used
    link_hash       BLOB    UNIQUE,              -- the one-time link's, while it is valid
    link_purpose    TEXT    CHECK (link_purpose = 'setup' OR link_purpose = 'sign-in'),
    link_expires_at INTEGER,
    disabled_at     INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- Console sign-ins. The cookie carries a random secret; only its SHA-256 is kept.
CREATE TABLE admin_sessions (
    id            INTEGER PRIMARY KEY,
    secret_hash   BLOB    NOT NULL UNIQUE,
    admin_id      INTEGER NOT NULL REFERENCES admins (id),
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,             -- the idle limit counts from here
    ended_at      INTEGER,                      -- signed out, or the admin was disabled
    ip            TEXT
);

-- Every change an admin made, from the console or the command line: who, what, when,
-- from where. Never updated or deleted.
CREATE TABLE audit_log (
    id            INTEGER PRIMARY KEY,
    at            INTEGER NOT NULL,
    actor         TEXT    NOT NULL,             -- `console:<admin>` or `cli:<system user>`
    source        TEXT    NOT NULL,             -- the browser's IP, or `cli@<host>`
    action        TEXT    NOT NULL,             -- such as `user.ban`, `keys.rotate`
    target        TEXT,                         -- the user, session, key or admin acted on
    detail        TEXT    NOT NULL DEFAULT '{}' -- the action's own fields, a JSON object
);

CREATE INDEX audit_log_target ON audit_log (target) WHERE target IS NOT NULL;
