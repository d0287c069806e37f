//! The queries: users, sessions and login codes as rows, and the statements that read
//! and change them. Each function takes a connection, so the same code serves the
//! writer thread, the read pool and the CLI.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::clock::UnixTime;
use crate::db::error::DbError;

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub public_id: String,
    pub appid: String,
    pub openid: String,
    pub unionid: Option<String>,
    pub nickname: Option<String>,
    pub avatar_url: Option<String>,
    pub gender: i64,
    pub country: Option<String>,
    pub province: Option<String>,
    pub city: Option<String>,
    pub language: Option<String>,
    pub phone: Option<String>,
    pub banned_until: Option<UnixTime>,
    pub ban_reason: Option<String>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

impl UserRow {
    /// A user as a first login stores it: no profile, no phone, no ban yet.
    pub fn new(
        id: i64,
        public_id: String,
        appid: String,
        openid: String,
        unionid: Option<String>,
        now: UnixTime,
    ) -> UserRow {
        UserRow {
            id,
            public_id,
            appid,
            openid,
            unionid,
            nickname: None,
            avatar_url: None,
            gender: 0,
            country: None,
            province: None,
            city: None,
            language: None,
            phone: None,
            banned_until: None,
            ban_reason: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether a ban is in force at `now`.
    pub fn is_banned(&self, now: UnixTime) -> bool {
        self.banned_until.is_some_and(|until| until > now)
    }
}

/// The columns [`user_from_row`] reads, as a literal so that queries are `concat!`ed at
/// compile time rather than formatted on every request.
macro_rules! user_columns {
    () => {
        "u.id, u.public_id, u.appid, u.openid, u.unionid, u.nickname, u.avatar_url, \
         u.gender, u.country, u.province, u.city, u.language, u.phone, u.banned_until, \
         u.ban_reason, u.created_at, u.updated_at"
    };
}

fn user_from_row(r: &Row, at: usize) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: r.get(at)?,
        public_id: r.get(at + 1)?,
        appid: r.get(at + 2)?,
        openid: r.get(at + 3)?,
        unionid: r.get(at + 4)?,
        nickname: r.get(at + 5)?,
        avatar_url: r.get(at + 6)?,
        gender: r.get(at + 7)?,
        country: r.get(at + 8)?,
        province: r.get(at + 9)?,
        city: r.get(at + 10)?,
        language: r.get(at + 11)?,
        phone: r.get(at + 12)?,
        banned_until: r.get(at + 13)?,
        ban_reason: r.get(at + 14)?,
        created_at: r.get(at + 15)?,
        updated_at: r.get(at + 16)?,
    })
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: i64,
    pub public_id: String,
    pub user_id: i64,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub max_expires_at: UnixTime,
    pub last_seen_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
    pub revoked_reason: Option<String>,
}

/// The columns [`session_from_row`] reads (see [`user_columns`]); `bare` spells them
/// without the table alias, for `RETURNING`, which allows none.
macro_rules! session_columns {
    () => {
        "s.id, s.public_id, s.user_id, s.created_at, s.expires_at, s.max_expires_at, \
         s.last_seen_at, s.revoked_at, s.revoked_reason"
    };
    (bare) => {
        "id, public_id, user_id, created_at, expires_at, max_expires_at, last_seen_at, \
         revoked_at, revoked_reason"
    };
}
const SESSION_WIDTH: usize = 9;

fn session_from_row(r: &Row) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        public_id: r.get(1)?,
        user_id: r.get(2)?,
        created_at: r.get(3)?,
        expires_at: r.get(4)?,
        max_expires_at: r.get(5)?,
        last_seen_at: r.get(6)?,
        revoked_at: r.get(7)?,
        revoked_reason: r.get(8)?,
    })
}

fn session_and_user(r: &Row) -> rusqlite::Result<(SessionRow, UserRow)> {
    Ok((session_from_row(r)?, user_from_row(r, SESSION_WIDTH)?))
}

/// A query for a session with its user, read by [`session_and_user`], that finds the rows
/// meeting `$condition`.
macro_rules! session_and_user_where {
    ($condition:literal) => {
        concat!(
            "SELECT ",
            session_columns!(),
            ", ",
            user_columns!(),
            " FROM sessions s JOIN users u ON u.id = s.user_id WHERE ",
            $condition
        )
    };
}

/// The one session, with its user, that `sql` (from [`session_and_user_where`], keyed by
/// `?1`) finds for `key`.
fn one_session_and_user(
    conn: &Connection,
    sql: &str,
    key: impl rusqlite::ToSql,
) -> Result<Option<(SessionRow, UserRow)>, DbError> {
    Ok(conn
        .prepare_cached(sql)?
        .query_row([key], session_and_user)
        .optional()?)
}

/// The session stored under `lookup_key` (a token secret's
/// [`crate::keys::token::SessionSecret::lookup_key`]), with its user.
pub fn session_by_secret(
    conn: &Connection,
    lookup_key: &[u8],
) -> Result<Option<(SessionRow, UserRow)>, DbError> {
    one_session_and_user(
        conn,
        session_and_user_where!("s.secret_hash = ?1"),
        lookup_key,
    )
}

/// The session with internal id `id`, with its user.
pub fn session_by_id(conn: &Connection, id: i64) -> Result<Option<(SessionRow, UserRow)>, DbError> {
    one_session_and_user(conn, session_and_user_where!("s.id = ?1"), id)
}

/// The user with internal id `id`.
pub fn user_by_id(conn: &Connection, id: i64) -> Result<Option<UserRow>, DbError> {
    let sql = concat!("SELECT ", user_columns!(), " FROM users u WHERE u.id = ?1");
    Ok(conn
        .prepare_cached(sql)?
        .query_row([id], |r| user_from_row(r, 0))
        .optional()?)
}

/// The user with public id `public_id`.
pub fn user_by_public_id(conn: &Connection, public_id: &str) -> Result<Option<UserRow>, DbError> {
    let sql = concat!(
        "SELECT ",
        user_columns!(),
        " FROM users u WHERE u.public_id = ?1"
    );
    Ok(conn
        .prepare_cached(sql)?
        .query_row([public_id], |r| user_from_row(r, 0))
        .optional()?)
}

/// The users with `openid`: the one of `appid`, or, without an app, one per app that
/// has that openid.
pub fn users_by_openid(
    conn: &Connection,
    openid: &str,
    appid: Option<&str>,
) -> Result<Vec<UserRow>, DbError> {
    let sql = concat!(
        "SELECT ",
        user_columns!(),
        " FROM users u WHERE u.openid = ?1 \
         AND (?2 IS NULL OR u.appid = ?2) ORDER BY u.appid"
    );
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt
        .query_map(params![openid, appid], |r| user_from_row(r, 0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Up to `limit` users, newest first, optionally of one app only, starting after the
/// user whose row id is `before` when given. Users are never deleted, so the order of
/// their row ids is the order they were created in.
pub fn list_users(
    conn: &Connection,
    appid: Option<&str>,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<UserRow>, DbError> {
    let mut sql = String::from(concat!("SELECT ", user_columns!(), " FROM users u WHERE 1"));
    if appid.is_some() {
        sql.push_str(" AND u.appid = ?1");
    }
    if before.is_some() {
        sql.push_str(" AND u.id < ?2");
    }
    sql.push_str(" ORDER BY u.id DESC LIMIT ?3");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt
        .query_map(params![appid, before, limit], |r| user_from_row(r, 0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Every stored session of a user, newest first; ended ones stay until maintenance
/// purges them.
pub fn user_sessions(conn: &Connection, user_id: i64) -> Result<Vec<SessionRow>, DbError> {
    let sql = concat!(
        "SELECT ",
        session_columns!(),
        " FROM sessions s WHERE s.user_id = ?1 ORDER BY s.id DESC"
    );
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt
        .query_map([user_id], session_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The session with public id `public_id`, with its user.
pub fn session_by_public_id(
    conn: &Connection,
    public_id: &str,
) -> Result<Option<(SessionRow, UserRow)>, DbError> {
    one_session_and_user(conn, session_and_user_where!("s.public_id = ?1"), public_id)
}

/// A remembered login code.
#[derive(Debug, Clone)]
pub struct LoginCodeRow {
    /// The session's secret, masked with a pad derived from the code.
    pub sealed_sid: Vec<u8>,
    pub new_user: bool,
}

/// The login code in row `id`, if that row holds the code hashing to `code_hash` and it
/// has not expired.
pub fn login_code(
    conn: &Connection,
    id: i64,
    code_hash: &[u8; 32],
    now: UnixTime,
) -> Result<Option<LoginCodeRow>, DbError> {
    Ok(conn
        .prepare_cached(
            "SELECT sealed_sid, new_user FROM login_codes \
             WHERE id = ?1 AND code_hash = ?2 AND expires_at > ?3",
        )?
        .query_row(params![id, &code_hash[..], now], |r| {
            Ok(LoginCodeRow {
                sealed_sid: r.get(0)?,
                new_user: r.get(1)?,
            })
        })
        .optional()?)
}

/// Calls `each` with the row id and hash of every login code that has not expired at
/// `now`, oldest first, one row at a time: after a busy five minutes there can be
/// millions.
pub fn each_live_login_code(
    conn: &Connection,
    now: UnixTime,
    mut each: impl FnMut(i64, &[u8; 32]),
) -> Result<(), DbError> {
    let mut stmt = conn.prepare(
        "SELECT id, code_hash FROM login_codes \
         WHERE expires_at > ?1 AND length(code_hash) = 32 ORDER BY id",
    )?;
    let mut rows = stmt.query([now])?;
    while let Some(row) = rows.next()? {
        each(row.get(0)?, &row.get::<_, [u8; 32]>(1)?);
    }
    Ok(())
}

/// Everything a successful WeChat login writes.
#[derive(Debug)]
pub struct NewLogin {
    /// The public id a new user gets; unused when the openid already has a user.
    pub user_public_id: String,
    /// The new session's public id.
    pub session_public_id: String,
    pub appid: String,
    pub openid: String,
    pub unionid: Option<String>,
    /// The session secret's [`crate::keys::token::SessionSecret::lookup_key`].
    pub secret_hash: Vec<u8>,
    pub code_hash: [u8; 32],
    pub sealed_sid: Vec<u8>,
    /// The login's session_key sealed for `user_public_id`, stored with a new user.
    pub new_user_session_key: Vec<u8>,
    pub now: UnixTime,
    pub expires_at: UnixTime,
    pub max_expires_at: UnixTime,
    pub code_expires_at: UnixTime,
    pub max_sessions: u32,
}

/// What a login wrote.
#[derive(Debug)]
pub enum LoginWritten {
    /// A session was created.
    Session {
        session: SessionRow,
        user: UserRow,
        new_user: bool,
        /// The row that remembers the login code.
        code_row: i64,
    },
    /// The user is banned; nothing but the user row was written.
    Banned(UserRow),
}

/// Finds or creates the user, stores the login's session_key on it as the user's
/// latest, creates the session, evicts sessions beyond the cap and remembers the code.
/// Runs inside the writer's transaction. A user who already exists gets the session_key
/// that `seal_session_key` seals for their public id.
pub fn record_login(
    conn: &Connection,
    login: &NewLogin,
    seal_session_key: &dyn Fn(&str) -> Vec<u8>,
) -> Result<LoginWritten, DbError> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO users (public_id, appid, openid, unionid, session_key, created_at, \
             updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) \
             ON CONFLICT (appid, openid) DO NOTHING",
        )?
        .execute(params![
            login.user_public_id,
            login.appid,
            login.openid,
            login.unionid,
            login.new_user_session_key,
            login.now
        ])?;
    let new_user = inserted == 1;
    // A new user's row is exactly what was just inserted: reading it back would only
    // cost a query on the writer, the one thread every login passes through.
    let user = if new_user {
        UserRow::new(
            conn.last_insert_rowid(),
            login.user_public_id.clone(),
            login.appid.clone(),
            login.openid.clone(),
            login.unionid.clone(),
            login.now,
        )
    } else {
        if login.unionid.is_some() {
            conn.prepare_cached(
                "UPDATE users SET unionid = ?3, updated_at = ?4 \
                 WHERE appid = ?1 AND openid = ?2 AND unionid IS NOT ?3",
            )?
            .execute(params![login.appid, login.openid, login.unionid, login.now])?;
        }
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u WHERE u.appid = ?1 AND u.openid = ?2"
        );
        conn.prepare_cached(sql)?
            .query_row(params![login.appid, login.openid], |r| user_from_row(r, 0))?
    };
    if user.is_banned(login.now) {
        return Ok(LoginWritten::Banned(user));
    }
    if !new_user {
        conn.prepare_cached("UPDATE users SET session_key = ?2 WHERE id = ?1")?
            .execute(params![user.id, seal_session_key(&user.public_id)])?;
    }

    conn.prepare_cached(
        "INSERT INTO sessions (public_id, secret_hash, user_id, created_at, expires_at, \
         max_expires_at, last_seen_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?4)",
    )?
    .execute(params![
        login.session_public_id,
        &login.secret_hash[..],
        user.id,
        login.now,
        login.expires_at,
        login.max_expires_at
    ])?;
    let session_id = conn.last_insert_rowid();
    if !new_user {
        evict_beyond(conn, user.id, login.max_sessions, login.now)?;
    }
    // Appended, never updated: should WeChat accept a code twice (it does not), the
    // newer row is the one the server's index of recent codes points at.
    conn.prepare_cached(
        "INSERT INTO login_codes (code_hash, sealed_sid, new_user, expires_at) \
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        &login.code_hash[..],
        login.sealed_sid,
        new_user,
        login.code_expires_at
    ])?;
    let code_row = conn.last_insert_rowid();
    let session = SessionRow {
        id: session_id,
        public_id: login.session_public_id.clone(),
        user_id: user.id,
        created_at: login.now,
        expires_at: login.expires_at,
        max_expires_at: login.max_expires_at,
        last_seen_at: login.now,
        revoked_at: None,
        revoked_reason: None,
    };
    Ok(LoginWritten::Session {
        session,
        user,
        new_user,
        code_row,
    })
}

/// Revokes a user's oldest live sessions so that at most `keep` remain.
fn evict_beyond(conn: &Connection, user_id: i64, keep: u32, now: UnixTime) -> Result<(), DbError> {
    conn.prepare_cached(
        "UPDATE sessions SET revoked_at = ?3, revoked_reason = 'evicted' WHERE id IN ( \
             SELECT id FROM sessions WHERE user_id = ?1 AND revoked_at IS NULL \
             AND expires_at > ?3 ORDER BY id DESC LIMIT -1 OFFSET ?2)",
    )?
    .execute(params![user_id, keep, now])?;
    Ok(())
}

/// Moves a live session's expiry to `expires_at`; returns the updated row, or `None`
/// when the session was revoked in the meantime.
pub fn refresh_session(
    conn: &Connection,
    session_id: i64,
    expires_at: UnixTime,
    now: UnixTime,
) -> Result<Option<SessionRow>, DbError> {
    // RETURNING cannot name a table alias, so the columns are spelled out bare here.
    let sql = concat!(
        "UPDATE sessions SET expires_at = ?2, last_seen_at = ?3 \
         WHERE id = ?1 AND revoked_at IS NULL RETURNING ",
        session_columns!(bare),
        ""
    );
    Ok(conn
        .prepare_cached(sql)?
        .query_row(params![session_id, expires_at, now], session_from_row)
        .optional()?)
}

/// Notes that a session was used; kept coarse by the caller to spare the writer.
pub fn touch_session(conn: &Connection, session_id: i64, now: UnixTime) -> Result<(), DbError> {
    conn.prepare_cached(
        "UPDATE sessions SET last_seen_at = ?2 WHERE id = ?1 AND last_seen_at < ?2",
    )?
    .execute(params![session_id, now])?;
    Ok(())
}

/// Why a session was revoked.
#[derive(Debug, Clone, Copy)]
pub enum RevokeReason {
    Logout,
    Admin,
}

impl RevokeReason {
    fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Logout => "logout",
            RevokeReason::Admin => "admin",
        }
    }
}

/// Revokes one session; returns whether it was live.
pub fn revoke_session(
    conn: &Connection,
    session_id: i64,
    now: UnixTime,
    reason: RevokeReason,
) -> Result<bool, DbError> {
    let n = conn
        .prepare_cached(
            "UPDATE sessions SET revoked_at = ?2, revoked_reason = ?3 \
             WHERE id = ?1 AND revoked_at IS NULL",
        )?
        .execute(params![session_id, now, reason.as_str()])?;
    Ok(n == 1)
}

/// Revokes every session of a user; returns how many were live.
pub fn revoke_user_sessions(
    conn: &Connection,
    user_id: i64,
    now: UnixTime,
    reason: RevokeReason,
) -> Result<usize, DbError> {
    Ok(conn
        .prepare_cached(
            "UPDATE sessions SET revoked_at = ?2, revoked_reason = ?3 \
             WHERE user_id = ?1 AND revoked_at IS NULL",
        )?
        .execute(params![user_id, now, reason.as_str()])?)
}

/// A profile field a user may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileField {
    Nickname,
    AvatarUrl,
    Gender,
    Country,
    Province,
    City,
    Language,
}

impl ProfileField {
    /// The column (and JSON field) name.
    pub fn name(self) -> &'static str {
        match self {
            ProfileField::Nickname => "nickname",
            ProfileField::AvatarUrl => "avatar_url",
            ProfileField::Gender => "gender",
            ProfileField::Country => "country",
            ProfileField::Province => "province",
            ProfileField::City => "city",
            ProfileField::Language => "language",
        }
    }

    /// Every field, in column order.
    pub const ALL: [ProfileField; 7] = [
        ProfileField::Nickname,
        ProfileField::AvatarUrl,
        ProfileField::Gender,
        ProfileField::Country,
        ProfileField::Province,
        ProfileField::City,
        ProfileField::Language,
    ];
}

/// A new value for a profile field; `Clear` sets it back to its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    Text(String),
    Number(i64),
    Clear,
}

/// Applies profile changes and returns the updated user.
pub fn update_profile(
    conn: &Connection,
    user_id: i64,
    changes: &[(ProfileField, FieldValue)],
    now: UnixTime,
) -> Result<UserRow, DbError> {
    let mut sql = String::from("UPDATE users SET updated_at = ?1");
    let mut values: Vec<rusqlite::types::Value> = vec![now.into()];
    for (field, value) in changes {
        values.push(match value {
            FieldValue::Text(t) => t.clone().into(),
            FieldValue::Number(n) => (*n).into(),
            FieldValue::Clear if *field == ProfileField::Gender => 0.into(),
            FieldValue::Clear => rusqlite::types::Value::Null,
        });
        sql.push_str(&format!(", {} = ?{}", field.name(), values.len()));
    }
    values.push(user_id.into());
    sql.push_str(&format!(" WHERE id = ?{}", values.len()));
    conn.prepare_cached(&sql)?
        .execute(rusqlite::params_from_iter(values))?;
    user_by_id(conn, user_id)?.ok_or(DbError::Sqlite(rusqlite::Error::QueryReturnedNoRows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(code_hash: u8, sealed: u8, now: UnixTime) -> NewLogin {
        NewLogin {
            user_public_id: format!("u_{now}"),
            session_public_id: format!("s_{now}"),
            appid: "wx1".into(),
            openid: "o1".into(),
            unionid: None,
            secret_hash: vec![now as u8; 38],
            code_hash: [code_hash; 32],
            sealed_sid: vec![sealed; 16],
            new_user_session_key: format!("key of new u_{now}").into_bytes(),
            now,
            expires_at: now + 100,
            max_expires_at: now + 1000,
            code_expires_at: now + 300,
            max_sessions: 10,
        }
    }

    fn sealed_for_returning(public_id: &str) -> Vec<u8> {
        format!("key of returning {public_id}").into_bytes()
    }

    fn code_row(written: LoginWritten) -> i64 {
        match written {
            LoginWritten::Session { code_row, .. } => code_row,
            LoginWritten::Banned(_) => panic!("not banned"),
        }
    }

    /// Each login appends its code, and the row it names is found by its id and hash
    /// until the code expires.
    #[test]
    fn a_login_code_is_found_by_its_row_and_hash_until_it_expires() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::db::migrate(&mut conn).unwrap();
        let first =
            code_row(record_login(&conn, &login(1, 0xa1, 10), &sealed_for_returning).unwrap());
        let again =
            code_row(record_login(&conn, &login(1, 0xb2, 20), &sealed_for_returning).unwrap());
        let other =
            code_row(record_login(&conn, &login(2, 0xc3, 30), &sealed_for_returning).unwrap());
        assert!(first < again && again < other, "appended in order");

        let found = |id, hash: u8, now| {
            login_code(&conn, id, &[hash; 32], now)
                .unwrap()
                .map(|row| (row.sealed_sid, row.new_user))
        };
        assert_eq!(found(first, 1, 309), Some((vec![0xa1; 16], true)));
        assert_eq!(found(again, 1, 309), Some((vec![0xb2; 16], false)));
        assert_eq!(found(other, 2, 329), Some((vec![0xc3; 16], false)));
        assert_eq!(found(first, 1, 310), None, "expired");
        assert_eq!(found(other, 1, 300), None, "another code's row");
        assert_eq!(found(other + 1, 2, 300), None, "no such row");

        let mut live = Vec::new();
        each_live_login_code(&conn, 315, |id, hash| live.push((id, hash[0]))).unwrap();
        assert_eq!(live, [(again, 1), (other, 2)]);
    }

    /// A new user's row is inserted with its session_key; a returning user's is replaced
    /// by the one sealed for their public id, which a new user's login does not ask for.
    #[test]
    fn a_login_stores_the_users_latest_session_key_on_their_row() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::db::migrate(&mut conn).unwrap();
        let stored = |conn: &Connection| -> Vec<String> {
            conn.prepare("SELECT public_id || ': ' || session_key FROM users ORDER BY id")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let sealed_for = std::cell::RefCell::new(Vec::new());
        let seal = |public_id: &str| {
            sealed_for.borrow_mut().push(public_id.to_owned());
            sealed_for_returning(public_id)
        };
        record_login(&conn, &login(1, 0, 10), &seal).unwrap();
        assert_eq!(stored(&conn), ["u_10: key of new u_10"]);
        assert!(sealed_for.borrow().is_empty(), "{:?}", sealed_for.borrow());

        record_login(&conn, &login(2, 0, 20), &seal).unwrap();
        assert_eq!(stored(&conn), ["u_10: key of returning u_10"]);
        assert_eq!(*sealed_for.borrow(), ["u_10"]);
    }

    #[test]
    fn both_spellings_of_the_session_columns_agree() {
        assert_eq!(
            session_columns!().replace("s.", ""),
            session_columns!(bare),
            "RETURNING must read the columns session_from_row expects, in its order"
        );
    }
}
