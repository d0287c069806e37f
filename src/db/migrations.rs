//! The schema a new database gets (`schema.sql`, today's), and the steps that bring a
//! database made by an older wxauth to it. Each step reaches the next version; `migrate`
//! runs those a database lacks inside one transaction.

use rusqlite::Connection;

use super::error::DbError;

/// The schema of a new database.
const SCHEMA: &str = include_str!("../../schema.sql");

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = 1 + MIGRATIONS.len() as i64;

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction, or refuses a newer one.
pub fn migrate(conn: &mut Connection) -> Result<(), DbError> {
    // Rebuilding a table that others reference (SQLite's way of dropping a constrained
    // column) needs foreign keys off, or dropping the old table would delete every row
    // that references it. The switch works only outside a transaction; the keys are
    // checked before the commit instead, and switched back on whatever happened.
    let enforced: bool = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
    if enforced {
        conn.pragma_update(None, "foreign_keys", false)?;
    }
    let result = migrate_unchecked(conn);
    if enforced {
        conn.pragma_update(None, "foreign_keys", true)?;
    }
    result
}

/// [`migrate`]'s work, with foreign keys off.
fn migrate_unchecked(conn: &mut Connection) -> Result<(), DbError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(DbError::TooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version == 0 {
        tx.execute_batch(SCHEMA)?;
    } else {
        for (reached, run) in MIGRATIONS {
            if version < *reached {
                run(&tx)?;
            }
        }
    }
    if version != SCHEMA_VERSION {
        let broken: i64 =
            tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?;
        if broken > 0 {
            return Err(DbError::Migration {
                version: SCHEMA_VERSION,
                reason: format!("{broken} rows would reference rows that do not exist"),
            });
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()?;
    Ok(())
}

/// One step: the version it reaches, and what it does.
type Migration = (i64, fn(&Connection) -> Result<(), DbError>);

/// Every step, in order.
const MIGRATIONS: &[Migration] = &[
    (2, v2_fewer_pages_per_login),
    (3, v3_login_codes_appended),
    (4, v4_session_key_on_the_user),
    (5, v5_needed_keys),
    (6, v6_identities),
    (7, v7_console),
    (8, v8_overview_counts),
];

/// Version 2: a login writes fewer pages.
///
/// - `login_codes` gets a rowid. Its expiry index held `(expires_at, code_hash)` while the
///   table was `WITHOUT ROWID`, so the codes of one second sat in random order across many
///   pages and each login dirtied one of them; ordered by `(expires_at, rowid)` it grows
///   at its end. The codes are copied over: a retried login keeps finding its session.
/// - Two CHECK constraints lose their `IN` lists. SQLite tests an `IN` list of more than
///   two values by building a temporary index, on every insert into `users` and
///   `sessions`; comparisons joined by `OR` accept exactly the same values.
fn v2_fewer_pages_per_login(conn: &Connection) -> Result<(), DbError> {
    conn.execute_batch(
        "CREATE TABLE login_codes_v2 (
             id          INTEGER PRIMARY KEY,
             code_hash   BLOB    NOT NULL UNIQUE,
             session_id  INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
             sealed_sid  BLOB    NOT NULL,
             new_user    INTEGER NOT NULL,
             expires_at  INTEGER NOT NULL
         );
         INSERT INTO login_codes_v2 (code_hash, session_id, sealed_sid, new_user, expires_at)
             SELECT code_hash, session_id, sealed_sid, new_user, expires_at
             FROM login_codes ORDER BY expires_at;
         DROP TABLE login_codes;
         ALTER TABLE login_codes_v2 RENAME TO login_codes;
         CREATE INDEX login_codes_expiry ON login_codes (expires_at);
         CREATE INDEX login_codes_session ON login_codes (session_id);",
    )?;
    rewrite_table_sql(
        conn,
        2,
        &[
            (
                "users",
                "CHECK (gender IN (0, 1, 2))",
                "CHECK (gender = 0 OR gender = 1 OR gender = 2)",
            ),
            (
                "sessions",
                "CHECK (revoked_reason IN ('logout', 'admin', 'evicted'))",
                "CHECK (revoked_reason = 'logout' OR revoked_reason = 'admin' \
                 OR revoked_reason = 'evicted')",
            ),
        ],
    )
}

/// Version 3: `login_codes` is only appended to. Its unique index on the code hash put
/// each login's code on a random page of that index, one more page for every commit to
/// write, sync and copy back; its indexes by expiry and by session cost two more
/// inserts. Codes are now found through the server's own index of the codes recorded in
/// the last five minutes (`src/domain/recent_codes.rs`), which points at the row; expired rows
/// are deleted oldest first, in rowid order. A code's row no longer names its session:
/// the session is found from the secret the row holds masked, as a token finds it, so a
/// row that outlives its session (purged a week after it ended) leads nowhere rather
/// than to a session that reused its id.
fn v3_login_codes_appended(conn: &Connection) -> Result<(), DbError> {
    conn.execute_batch(
        "CREATE TABLE login_codes_v3 (
             id          INTEGER PRIMARY KEY,
             code_hash   BLOB    NOT NULL,
             sealed_sid  BLOB    NOT NULL,
             new_user    INTEGER NOT NULL,
             expires_at  INTEGER NOT NULL
         );
         INSERT INTO login_codes_v3 (id, code_hash, sealed_sid, new_user, expires_at)
             SELECT id, code_hash, sealed_sid, new_user, expires_at FROM login_codes ORDER BY id;
         DROP TABLE login_codes;
         ALTER TABLE login_codes_v3 RENAME TO login_codes;",
    )?;
    Ok(())
}

/// Version 4: a new user's login inserts one row fewer and grows one index fewer.
///
/// - The user's sealed session_key moves from a table of its own (`session_keys`, one
///   more b-tree for every login to insert into) onto the user's row, in the column
///   `session_key`; a user without one has `NULL` there.
/// - `users_app_created` goes. It served `wxauth users list` alone, which now lists in
///   rowid order: users are never deleted, so that is the order they were created in.
fn v4_session_key_on_the_user(conn: &Connection) -> Result<(), DbError> {
    conn.execute_batch(
        "ALTER TABLE users ADD COLUMN session_key BLOB;
         UPDATE users SET session_key =
             (SELECT sealed FROM session_keys k WHERE k.user_id = users.id);
         DROP TABLE session_keys;
         DROP INDEX users_app_created;",
    )?;
    Ok(())
}

/// Version 5: the database records the keys of the key file it depends on (by id and
/// fingerprint), so that a server started with a missing or foreign key file refuses
/// to start instead of making new keys beside old sessions and sealed secrets. The table
/// starts empty; the next start records the key file it finds.
fn v5_needed_keys(conn: &Connection) -> Result<(), DbError> {
    conn.execute_batch(NEEDED_KEYS_V5)?;
    Ok(())
}

const NEEDED_KEYS_V5: &str = "CREATE TABLE needed_keys (
    kind        TEXT    NOT NULL CHECK (kind = 'signing' OR kind = 'data'),
    id          TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;";

/// Version 6: one user per person, across the apps of one WeChat Open Platform account.
///
/// - A user's `(appid, openid)`, unionid and session_key move to `identities`: every user
///   gets one identity, with the same id as the user, so each session's `identity_id` is
///   its `user_id`. `users` and `sessions` are rebuilt, which SQLite allows only with
///   foreign keys off (see [`migrate`]).
/// - `users.merged_into` marks a user merged into another; `conflicts` records two users
///   found to share a unionid; `events` is the journal backends follow.
/// - Service keys get scopes: every existing key keeps the one it had, `introspect`.
/// - `web_logins` holds web logins in progress.
fn v6_identities(conn: &Connection) -> Result<(), DbError> {
    conn.execute_batch(V6_IDENTITIES)?;
    Ok(())
}

const V6_IDENTITIES: &str = "
CREATE TABLE users_v6 (
    id            INTEGER PRIMARY KEY,
    public_id     TEXT    NOT NULL UNIQUE,
    nickname      TEXT,
    avatar_url    TEXT,
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
    merged_into   INTEGER REFERENCES users (id),
    apps          TEXT    NOT NULL DEFAULT ''
);
INSERT INTO users_v6 (id, public_id, nickname, avatar_url, gender, country, province, city,
        language, phone, banned_until, ban_reason, created_at, updated_at, apps)
    SELECT id, public_id, nickname, avatar_url, gender, country, province, city, language,
        phone, banned_until, ban_reason, created_at, updated_at, appid
    FROM users ORDER BY id;
CREATE TABLE identities (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (id),
    appid         TEXT    NOT NULL,
    openid        TEXT    NOT NULL,
    unionid       TEXT,
    created_at    INTEGER NOT NULL,
    session_key   BLOB,
    UNIQUE (openid, appid)
);
INSERT INTO identities (id, user_id, appid, openid, unionid, created_at, session_key)
    SELECT id, id, appid, openid, unionid, created_at, session_key FROM users ORDER BY id;
CREATE TABLE sessions_v6 (
    id             INTEGER PRIMARY KEY,
    public_id      TEXT    NOT NULL UNIQUE,
    secret_hash    BLOB    NOT NULL UNIQUE,
    user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    identity_id    INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    max_expires_at INTEGER NOT NULL,
    last_seen_at   INTEGER NOT NULL,
    revoked_at     INTEGER,
    revoked_reason TEXT CHECK (revoked_reason = 'logout' OR revoked_reason = 'admin' OR revoked_reason = 'evicted')
);
INSERT INTO sessions_v6 (id, public_id, secret_hash, user_id, identity_id, created_at,
        expires_at, max_expires_at, last_seen_at, revoked_at, revoked_reason)
    SELECT id, public_id, secret_hash, user_id, user_id, created_at, expires_at,
        max_expires_at, last_seen_at, revoked_at, revoked_reason
    FROM sessions ORDER BY id;
DROP TABLE sessions;
DROP TABLE users;
ALTER TABLE users_v6 RENAME TO users;
ALTER TABLE sessions_v6 RENAME TO sessions;
CREATE INDEX identities_unionid ON identities (unionid) WHERE unionid IS NOT NULL;
CREATE INDEX sessions_user_live ON sessions (user_id, id) WHERE revoked_at IS NULL;
CREATE INDEX sessions_expiry ON sessions (expires_at);
ALTER TABLE service_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT 'introspect';
CREATE TABLE conflicts (
    id            INTEGER PRIMARY KEY,
    unionid       TEXT    NOT NULL,
    user_id       INTEGER NOT NULL REFERENCES users (id),
    other_user_id INTEGER NOT NULL REFERENCES users (id),
    found_at      INTEGER NOT NULL,
    resolved_at   INTEGER,
    UNIQUE (user_id, other_user_id)
);
CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    type          TEXT    NOT NULL CHECK (type = 'user.created' OR type = 'identity.linked'
                      OR type = 'user.merged' OR type = 'user.banned' OR type = 'user.unbanned'),
    at            INTEGER NOT NULL,
    user_id       INTEGER NOT NULL,
    data          TEXT    NOT NULL DEFAULT '{}'
);
CREATE TABLE web_logins (
    id              INTEGER PRIMARY KEY,
    state_hash      BLOB    NOT NULL UNIQUE,
    browser_hash    BLOB    NOT NULL,
    appid           TEXT    NOT NULL,
    scope           TEXT    NOT NULL,
    redirect_uri    TEXT    NOT NULL,
    client_state    TEXT,
    expires_at      INTEGER NOT NULL,
    used_at         INTEGER,
    code_hash       BLOB    UNIQUE,
    sealed_sid      BLOB,
    new_user        INTEGER,
    code_expires_at INTEGER
);
";

/// Version 7: the admin console. Admins, their sign-ins and the audit log; logins per
/// hour for the overview, counted back from the sessions and users there are (sessions
/// that were pruned are not counted); and the indexes a console search and a user's page
/// need, so that neither scans a table of a million users.
fn v7_console(conn: &Connection) -> Result<(), DbError> {
    conn.execute_batch(V7_CONSOLE)?;
    Ok(())
}

const V7_CONSOLE: &str = "
CREATE INDEX identities_user ON identities (user_id);
CREATE INDEX users_phone ON users (phone) WHERE phone IS NOT NULL;
CREATE INDEX users_nickname ON users (nickname) WHERE nickname IS NOT NULL;
CREATE TABLE login_counts (
    hour          INTEGER PRIMARY KEY,
    logins        INTEGER NOT NULL,
    new_users     INTEGER NOT NULL
);
CREATE TABLE admins (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE,
    password        TEXT,
    link_hash       BLOB    UNIQUE,
    link_purpose    TEXT    CHECK (link_purpose = 'setup' OR link_purpose = 'sign-in'),
    link_expires_at INTEGER,
    disabled_at     INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE TABLE admin_sessions (
    id            INTEGER PRIMARY KEY,
    secret_hash   BLOB    NOT NULL UNIQUE,
    admin_id      INTEGER NOT NULL REFERENCES admins (id),
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    ended_at      INTEGER,
    ip            TEXT
);
CREATE TABLE audit_log (
    id            INTEGER PRIMARY KEY,
    at            INTEGER NOT NULL,
    actor         TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    target        TEXT,
    detail        TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_target ON audit_log (target) WHERE target IS NOT NULL;
INSERT INTO login_counts (hour, logins, new_users)
    SELECT hour, sum(logins), sum(new_users) FROM (
        SELECT created_at / 3600 AS hour, count(*) AS logins, 0 AS new_users
            FROM sessions GROUP BY 1
        UNION ALL
        SELECT created_at / 3600, 0, count(*) FROM users GROUP BY 1)
    GROUP BY hour;
";

/// Version 8: the overview counts users and live sessions from indexes alone. Merged
/// users get an index of their own (they are few), so the users are the rows of the
/// smallest index less those; and the sessions' expiry index also holds `revoked_at`, so
/// counting the live ones reads no table rows. At a million of each that is about 15
/// and 40 ms instead of 110 ms each.
fn v8_overview_counts(conn: &Connection) -> Result<(), DbError> {
    conn.execute_batch(
        "CREATE INDEX users_merged ON users (merged_into) WHERE merged_into IS NOT NULL;
         DROP INDEX sessions_expiry;
         CREATE INDEX sessions_expiry ON sessions (expires_at, revoked_at);",
    )?;
    Ok(())
}

/// Replaces text in the stored `CREATE TABLE` statements of tables, for changes that
/// leave every stored row valid and its encoding unchanged, such as an equivalent CHECK
/// constraint. This is SQLite's documented procedure for such changes: edit
/// `sqlite_schema` with `writable_schema` on and raise the schema version, so that other
/// connections read the schema again; `RESET` makes this one read it again too.
fn rewrite_table_sql(
    conn: &Connection,
    version: i64,
    edits: &[(&str, &str, &str)],
) -> Result<(), DbError> {
    for (table, from, _) in edits {
        let found: bool = conn.query_row(
            "SELECT count(*) = 1 FROM sqlite_schema \
             WHERE type = 'table' AND name = ?1 AND instr(sql, ?2) > 0",
            (table, from),
            |r| r.get(0),
        )?;
        if !found {
            return Err(DbError::Migration {
                version,
                reason: format!("the definition of table {table} does not contain {from}"),
            });
        }
    }
    let schema_version: i64 = conn.pragma_query_value(None, "schema_version", |r| r.get(0))?;
    conn.pragma_update(None, "writable_schema", true)?;
    for (table, from, to) in edits {
        conn.execute(
            "UPDATE sqlite_schema SET sql = replace(sql, ?2, ?3) \
             WHERE type = 'table' AND name = ?1",
            (table, from, to),
        )?;
    }
    conn.pragma_update(None, "schema_version", schema_version + 1)?;
    conn.pragma_update(None, "writable_schema", "RESET")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema version 1 created, which the migrations start from.
    const SCHEMA_V1: &str = include_str!("schema_v1.sql");

    /// A database as version 1 left it: two users, one with a session_key, a session and
    /// its login codes.
    fn version_1(schema: &str) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        conn.execute_batch(schema).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, public_id, appid, openid, gender, created_at, updated_at)
                 VALUES (1, 'u_1', 'wx1', 'o1', 2, 10, 10), (2, 'u_2', 'wx1', 'o2', 0, 11, 11);
             INSERT INTO session_keys VALUES (1, x'5eed', 10);
             INSERT INTO sessions (id, public_id, secret_hash, user_id, created_at, expires_at,
                 max_expires_at, last_seen_at) VALUES (7, 's_7', x'01', 1, 10, 20, 30, 10);
             INSERT INTO login_codes VALUES (x'aa', 7, x'0102', 1, 300);
             INSERT INTO login_codes VALUES (x'bb', 7, x'0304', 0, 200);",
        )
        .unwrap();
        conn
    }

    fn version(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn version_1_keeps_its_rows_and_constraints() {
        let mut conn = version_1(SCHEMA_V1);
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");

        let codes: Vec<String> = conn
            .prepare(
                "SELECT concat_ws('|', hex(code_hash), hex(sealed_sid), new_user, expires_at) \
                 FROM login_codes ORDER BY code_hash",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(codes, ["AA|0102|1|300", "BB|0304|0|200"]);
        let indexes: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema \
                 WHERE type = 'index' AND tbl_name = 'login_codes'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 0, "a login appends its code to the table alone");

        let keys: Vec<(String, Option<Vec<u8>>)> = conn
            .prepare(
                "SELECT u.public_id, i.session_key FROM users u \
                 JOIN identities i ON i.user_id = u.id ORDER BY u.id",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            keys,
            [("u_1".into(), Some(vec![0x5e, 0xed])), ("u_2".into(), None)]
        );
        let gone: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema \
                 WHERE name IN ('session_keys', 'users_app_created')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(gone, 0, "the table and the index are dropped");

        for (sql, allowed) in [
            ("UPDATE users SET gender = 0", true),
            ("UPDATE users SET gender = 3", false),
            ("UPDATE users SET gender = 1.5", false),
            ("UPDATE sessions SET revoked_reason = 'evicted'", true),
            ("UPDATE sessions SET revoked_reason = 'expired'", false),
            ("UPDATE sessions SET revoked_reason = NULL", true),
        ] {
            assert_eq!(conn.execute(sql, []).is_ok(), allowed, "{sql}");
        }

        conn.execute("DELETE FROM sessions WHERE id = 7", [])
            .unwrap();
        let left: i64 = conn
            .query_row("SELECT count(*) FROM login_codes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 2, "codes outlive their session until they expire");
    }

    /// SQLite builds a temporary index for an `IN` list of three or more values; the
    /// connection that migrated must no longer do that when a login inserts its rows.
    #[test]
    fn login_inserts_build_no_temporary_index() {
        let mut conn = version_1(SCHEMA_V1);
        migrate(&mut conn).unwrap();
        for sql in [
            "INSERT INTO users (public_id, created_at, updated_at) VALUES ('u_3', 1, 1)",
            "INSERT INTO identities (user_id, appid, openid, created_at) \
             VALUES (1, 'wx2', 'o3', 1)",
            "INSERT INTO sessions (public_id, secret_hash, user_id, identity_id, created_at, \
             expires_at, max_expires_at, last_seen_at) VALUES ('s_8', x'02', 1, 1, 1, 2, 3, 1)",
            "INSERT INTO events (type, at, user_id, data) VALUES ('user.created', 1, 1, '{}')",
            "INSERT INTO login_codes (code_hash, sealed_sid, new_user, expires_at) \
             VALUES (x'cc', x'00', 0, 1)",
        ] {
            let ops: Vec<String> = conn
                .prepare(&format!("EXPLAIN {sql}"))
                .unwrap()
                .query_map([], |r| r.get(1))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                !ops.iter().any(|op| op == "OpenEphemeral"),
                "{sql}: {ops:?}"
            );
        }
    }

    #[test]
    fn an_unexpected_schema_is_refused_and_left_as_it_was() {
        let edited = SCHEMA_V1.replace("IN (0, 1, 2)", "BETWEEN 0 AND 2");
        let mut conn = version_1(&edited);
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            matches!(err, DbError::Migration { version: 2, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("table users"), "{err}");
        assert_eq!(version(&conn), 1);
        let kept: String = conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'login_codes'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(kept.contains("WITHOUT ROWID"), "{kept}");
    }

    /// A database as version 4 left it, from version 1's through the steps to 4, with a
    /// user holding a sealed session_key, a session and an app's access_token.
    fn version_4() -> Connection {
        let conn = version_1(SCHEMA_V1);
        for (reached, run) in MIGRATIONS.iter().filter(|(reached, _)| *reached <= 4) {
            run(&conn).unwrap();
            conn.pragma_update(None, "user_version", reached).unwrap();
        }
        conn.execute_batch("INSERT INTO access_tokens VALUES ('wx1', x'a7', 100, 1, 0, 0);")
            .unwrap();
        conn
    }

    #[test]
    fn version_4_keeps_its_rows_and_records_no_keys_yet() {
        let mut conn = version_4();
        assert_eq!(version(&conn), 4);
        // Where the session_key is kept moves in version 6.
        let rows = |conn: &Connection| -> Vec<String> {
            let keys = if version(conn) < 6 {
                "SELECT concat_ws('|', public_id, hex(session_key)) FROM users"
            } else {
                "SELECT concat_ws('|', u.public_id, hex(i.session_key)) FROM users u \
                 JOIN identities i ON i.user_id = u.id"
            };
            conn.prepare(&format!(
                "{keys} \
                 UNION ALL SELECT concat_ws('|', public_id, user_id, expires_at) FROM sessions \
                 UNION ALL SELECT concat_ws('|', appid, hex(sealed), fresh_until) FROM access_tokens"
            ))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        };
        let before = rows(&conn);
        assert_eq!(before.len(), 4, "{before:?}");
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
        assert_eq!(rows(&conn), before);
        let recorded: i64 = conn
            .query_row("SELECT count(*) FROM needed_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(recorded, 0, "the next start records the key file it finds");
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        for (sql, allowed) in [
            (
                "INSERT INTO needed_keys VALUES ('signing', 'a1b2c3d4', 'ff', 1)",
                true,
            ),
            (
                "INSERT INTO needed_keys VALUES ('signing', 'a1b2c3d4', 'ee', 1)",
                false,
            ),
            (
                "INSERT INTO needed_keys VALUES ('data', 'a1b2c3d4', 'ee', 1)",
                true,
            ),
            (
                "INSERT INTO needed_keys VALUES ('secret', 'x', 'ee', 1)",
                false,
            ),
        ] {
            assert_eq!(conn.execute(sql, []).is_ok(), allowed, "{sql}");
        }
    }

    /// A database as version 5 left it, populated as a server in use leaves one: users
    /// with and without a unionid, profile fields, a ban, sessions live and revoked, an
    /// avatar, a service key, a login code and the key record.
    fn version_5() -> Connection {
        let conn = version_1(SCHEMA_V1);
        for (reached, run) in MIGRATIONS.iter().filter(|(reached, _)| *reached <= 5) {
            run(&conn).unwrap();
            conn.pragma_update(None, "user_version", reached).unwrap();
        }
        conn.execute_batch(
            "UPDATE users SET unionid = 'un1', nickname = '微信用户 🐼', phone = '13800000000',
                 banned_until = 99, ban_reason = 'spam' WHERE id = 1;
             INSERT INTO users (id, public_id, appid, openid, unionid, gender, created_at,
                 updated_at, session_key) VALUES (3, 'u_3', 'wx2', 'o3', 'un3', 1, 12, 13, x'77');
             INSERT INTO sessions (id, public_id, secret_hash, user_id, created_at, expires_at,
                 max_expires_at, last_seen_at, revoked_at, revoked_reason)
                 VALUES (8, 's_8', x'02', 3, 12, 22, 32, 12, 15, 'logout');
             INSERT INTO avatars VALUES ('a_1', 3, 'image/png', 'ab', x'89', 12);
             INSERT INTO service_keys (public_id, name, key_hash, created_at)
                 VALUES ('sk_1', 'api', x'5c', 12);
             INSERT INTO needed_keys VALUES ('data', 'abc', 'ff', 12);",
        )
        .unwrap();
        conn
    }

    /// Version 6 rebuilds `users` and `sessions`: every row comes through, each user
    /// with one identity holding what the user row held, and nothing that referenced a
    /// user is lost to the rebuild.
    #[test]
    fn version_5_gives_every_user_one_identity_and_loses_nothing() {
        let mut conn = version_5();
        let rows = |conn: &Connection, sql: &str| -> Vec<String> {
            conn.prepare(sql)
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let profiles = "SELECT concat_ws('|', id, public_id, nickname, gender, phone, \
                        banned_until, ban_reason, created_at, updated_at) FROM users ORDER BY id";
        let sessions = "SELECT concat_ws('|', id, public_id, hex(secret_hash), user_id, \
                        created_at, expires_at, max_expires_at, last_seen_at, revoked_at, \
                        revoked_reason) FROM sessions ORDER BY id";
        let others = "SELECT concat_ws('|', id, user_id, sha256) FROM avatars \
                      UNION ALL SELECT concat_ws('|', public_id, name) FROM service_keys \
                      UNION ALL SELECT concat_ws('|', kind, id) FROM needed_keys \
                      UNION ALL SELECT hex(code_hash) FROM login_codes";
        let before = [
            rows(&conn, profiles),
            rows(&conn, sessions),
            rows(&conn, others),
        ];
        assert_eq!(before.iter().map(Vec::len).collect::<Vec<_>>(), [3, 2, 5]);
        let identities_before = rows(
            &conn,
            "SELECT concat_ws('|', id, id, appid, openid, unionid, created_at, \
             hex(session_key)) FROM users ORDER BY id",
        );

        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
        assert_eq!(
            [
                rows(&conn, profiles),
                rows(&conn, sessions),
                rows(&conn, others)
            ],
            before
        );
        assert_eq!(
            rows(
                &conn,
                "SELECT concat_ws('|', id, user_id, appid, openid, unionid, created_at, \
                 hex(session_key)) FROM identities ORDER BY id",
            ),
            identities_before
        );
        assert_eq!(
            rows(
                &conn,
                "SELECT concat_ws('|', id, identity_id) FROM sessions ORDER BY id"
            ),
            ["7|1", "8|3"]
        );
        assert_eq!(
            rows(&conn, "SELECT scopes FROM service_keys"),
            ["introspect"]
        );
        assert_eq!(
            rows(&conn, "SELECT apps FROM users ORDER BY id"),
            ["wx1", "wx1", "wx2"]
        );
        let enforced: bool = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert!(enforced, "foreign keys are enforced again");
        assert!(
            conn.prepare("PRAGMA foreign_key_check")
                .unwrap()
                .query([])
                .unwrap()
                .next()
                .unwrap()
                .is_none()
        );
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        assert!(
            conn.execute(
                "INSERT INTO identities (user_id, appid, openid, created_at) \
                          VALUES (1, 'wx1', 'o1', 1)",
                []
            )
            .is_err(),
            "an identity belongs to one user"
        );
    }

    /// Everything SQLite knows of a schema's shape, comments and spelling aside: each
    /// table's columns, indexes (with their columns, uniqueness and conditions) and
    /// foreign keys.
    fn shape(conn: &Connection) -> Vec<String> {
        let query = |sql: &str| -> Vec<String> {
            conn.prepare(sql)
                .unwrap()
                .query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let mut shape = query(
            "SELECT concat_ws('|', m.name, c.cid, c.name, c.type, c.\"notnull\", \
                 c.dflt_value, c.pk, c.hidden) \
             FROM sqlite_schema m, pragma_table_xinfo(m.name) c \
             WHERE m.type = 'table' ORDER BY m.name, c.cid",
        );
        shape.extend(query(
            "SELECT concat_ws('|', m.name, l.name, l.\"unique\", l.origin, l.partial, \
                 (SELECT group_concat(i.name, ',') FROM pragma_index_info(l.name) i), \
                 (SELECT substr(x.sql, instr(x.sql, ' WHERE ')) FROM sqlite_schema x \
                  WHERE x.name = l.name AND l.partial)) \
             FROM sqlite_schema m, pragma_index_list(m.name) l \
             WHERE m.type = 'table' ORDER BY m.name, l.name",
        ));
        shape.extend(query(
            "SELECT concat_ws('|', m.name, f.\"table\", f.\"from\", f.\"to\", f.on_delete) \
             FROM sqlite_schema m, pragma_foreign_key_list(m.name) f \
             WHERE m.type = 'table' ORDER BY m.name, f.id",
        ));
        shape
    }

    /// What the CHECK constraints allow, which `shape` cannot see.
    fn checks(conn: &Connection) -> Vec<bool> {
        conn.execute_batch(
            "INSERT INTO users (public_id, created_at, updated_at) VALUES ('u_c', 1, 1);
             INSERT INTO identities (user_id, appid, openid, created_at) \
                 VALUES ((SELECT id FROM users WHERE public_id = 'u_c'), 'wxc', 'oc', 1);
             INSERT INTO sessions (public_id, secret_hash, user_id, identity_id, created_at, \
                 expires_at, max_expires_at, last_seen_at) \
                 VALUES ('s_c', x'0c', (SELECT id FROM users WHERE public_id = 'u_c'), \
                 (SELECT id FROM identities WHERE openid = 'oc'), 1, 2, 3, 1);
             INSERT INTO events (type, at, user_id) \
                 VALUES ('user.created', 1, (SELECT id FROM users WHERE public_id = 'u_c'));",
        )
        .unwrap();
        [
            "UPDATE users SET gender = 2",
            "UPDATE users SET gender = 3",
            "UPDATE users SET gender = 1.5",
            "UPDATE sessions SET revoked_reason = 'admin'",
            "UPDATE sessions SET revoked_reason = 'expired'",
            "UPDATE sessions SET revoked_reason = NULL",
            "UPDATE events SET type = 'user.merged'",
            "UPDATE events SET type = 'user.deleted'",
        ]
        .iter()
        .map(|sql| conn.execute(sql, []).is_ok())
        .collect()
    }

    /// `schema.sql` is what the migrations make of version 1: a new database and an
    /// upgraded one have the same tables, columns, indexes, keys and constraints.
    #[test]
    fn a_new_database_has_the_shape_an_upgraded_one_has() {
        let mut fresh = Connection::open_in_memory().unwrap();
        migrate(&mut fresh).unwrap();
        assert_eq!(version(&fresh), SCHEMA_VERSION);
        let mut upgraded = version_1(SCHEMA_V1);
        upgraded
            .execute_batch("DELETE FROM login_codes; DELETE FROM sessions; DELETE FROM session_keys; DELETE FROM users;")
            .unwrap();
        migrate(&mut upgraded).unwrap();
        let (fresh_shape, upgraded_shape) = (shape(&fresh), shape(&upgraded));
        assert!(fresh_shape.len() > 40, "{fresh_shape:?}");
        assert_eq!(fresh_shape, upgraded_shape);
        let allowed = checks(&fresh);
        assert_eq!(
            allowed,
            [true, false, false, true, false, true, true, false]
        );
        assert_eq!(checks(&upgraded), allowed);
    }
}
