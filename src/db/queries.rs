//! The queries: users, sessions and login codes as rows, and the statements that read
//! and change them. Each function takes a connection, so the same code serves the
//! writer thread, the read pool and the CLI.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::clock::UnixTime;
use crate::db::error::DbError;

/// A user as stored: a person, with the AppIDs of their identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub public_id: String,
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
    /// The user this one was merged into, if it was.
    pub merged_into: Option<i64>,
    /// The AppIDs of the user's identities, oldest first, each once.
    pub apps: Vec<String>,
}

impl UserRow {
    /// A user as a first login stores it, through an identity of `appid`: no profile,
    /// no phone, no ban yet.
    pub fn new(id: i64, public_id: String, appid: String, now: UnixTime) -> UserRow {
        UserRow {
            id,
            public_id,
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
            merged_into: None,
            apps: vec![appid],
        }
    }

    /// Whether a ban is in force at `now`.
    pub fn is_banned(&self, now: UnixTime) -> bool {
        self.banned_until.is_some_and(|until| until > now)
    }
}

/// The columns [`user_from_row`] reads, as a literal so that queries are `concat!`ed at
/// compile time rather than formatted on every request. The last is the user's AppIDs.
macro_rules! user_columns {
    () => {
        "u.id, u.public_id, u.nickname, u.avatar_url, u.gender, u.country, u.province, \
         u.city, u.language, u.phone, u.banned_until, u.ban_reason, u.created_at, \
         u.updated_at, u.merged_into, u.apps"
    };
}
const USER_WIDTH: usize = 16;

fn user_from_row(r: &Row, at: usize) -> rusqlite::Result<UserRow> {
    let apps: String = r.get(at + 15)?;
    let listed = apps
        .split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(UserRow {
        id: r.get(at)?,
        public_id: r.get(at + 1)?,
        nickname: r.get(at + 2)?,
        avatar_url: r.get(at + 3)?,
        gender: r.get(at + 4)?,
        country: r.get(at + 5)?,
        province: r.get(at + 6)?,
        city: r.get(at + 7)?,
        language: r.get(at + 8)?,
        phone: r.get(at + 9)?,
        banned_until: r.get(at + 10)?,
        ban_reason: r.get(at + 11)?,
        created_at: r.get(at + 12)?,
        updated_at: r.get(at + 13)?,
        merged_into: r.get(at + 14)?,
        apps: listed,
    })
}

/// An identity as stored: how a person logs in through one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRow {
    pub id: i64,
    pub user_id: i64,
    pub appid: String,
    pub openid: String,
    pub unionid: Option<String>,
    pub created_at: UnixTime,
}

/// The columns [`identity_from_row`] reads (see [`user_columns`]).
macro_rules! identity_columns {
    () => {
        "i.id, i.user_id, i.appid, i.openid, i.unionid, i.created_at"
    };
}

fn identity_from_row(r: &Row, at: usize) -> rusqlite::Result<IdentityRow> {
    Ok(IdentityRow {
        id: r.get(at)?,
        user_id: r.get(at + 1)?,
        appid: r.get(at + 2)?,
        openid: r.get(at + 3)?,
        unionid: r.get(at + 4)?,
        created_at: r.get(at + 5)?,
    })
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: i64,
    pub public_id: String,
    pub user_id: i64,
    /// The identity it logged in with.
    pub identity_id: i64,
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
        "s.id, s.public_id, s.user_id, s.identity_id, s.created_at, s.expires_at, \
         s.max_expires_at, s.last_seen_at, s.revoked_at, s.revoked_reason"
    };
    (bare) => {
        "id, public_id, user_id, identity_id, created_at, expires_at, max_expires_at, \
         last_seen_at, revoked_at, revoked_reason"
    };
}
const SESSION_WIDTH: usize = 10;

fn session_from_row(r: &Row) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        public_id: r.get(1)?,
        user_id: r.get(2)?,
        identity_id: r.get(3)?,
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
        max_expires_at: r.get(6)?,
        last_seen_at: r.get(7)?,
        revoked_at: r.get(8)?,
        revoked_reason: r.get(9)?,
    })
}

/// A session with its user and the identity it logged in with, as read together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOwner {
    pub session: SessionRow,
    pub user: UserRow,
    pub identity: IdentityRow,
}

fn session_owner(r: &Row) -> rusqlite::Result<SessionOwner> {
    Ok(SessionOwner {
        session: session_from_row(r)?,
        user: user_from_row(r, SESSION_WIDTH)?,
        identity: identity_from_row(r, SESSION_WIDTH + USER_WIDTH)?,
    })
}

/// A query for a session with its user and identity, read by [`session_owner`], that
/// finds the rows meeting `$condition`.
macro_rules! session_owner_where {
    ($condition:literal) => {
        concat!(
            "SELECT ",
            session_columns!(),
            ", ",
            user_columns!(),
            ", ",
            identity_columns!(),
            " FROM sessions s JOIN users u ON u.id = s.user_id \
             JOIN identities i ON i.id = s.identity_id WHERE ",
            $condition
        )
    };
}

/// The one session, with its user and identity, that `sql` (from
/// [`session_owner_where`], keyed by `?1`) finds for `key`.
fn one_session_owner(
    conn: &Connection,
    sql: &str,
    key: impl rusqlite::ToSql,
) -> Result<Option<SessionOwner>, DbError> {
    Ok(conn
        .prepare_cached(sql)?
        .query_row([key], session_owner)
        .optional()?)
}

/// The session stored under `lookup_key` (a token secret's
/// [`crate::keys::token::SessionSecret::lookup_key`]), with its user and identity.
pub fn session_by_secret(
    conn: &Connection,
    lookup_key: &[u8],
) -> Result<Option<SessionOwner>, DbError> {
    one_session_owner(conn, session_owner_where!("s.secret_hash = ?1"), lookup_key)
}

/// The session with internal id `id`, with its user and identity.
pub fn session_by_id(conn: &Connection, id: i64) -> Result<Option<SessionOwner>, DbError> {
    one_session_owner(conn, session_owner_where!("s.id = ?1"), id)
}

/// The session with public id `public_id`, with its user and identity.
pub fn session_by_public_id(
    conn: &Connection,
    public_id: &str,
) -> Result<Option<SessionOwner>, DbError> {
    one_session_owner(conn, session_owner_where!("s.public_id = ?1"), public_id)
}

/// The user with internal id `id`.
pub fn user_by_id(conn: &Connection, id: i64) -> Result<Option<UserRow>, DbError> {
    let sql = concat!("SELECT ", user_columns!(), " FROM users u WHERE u.id = ?1");
    Ok(conn
        .prepare_cached(sql)?
        .query_row([id], |r| user_from_row(r, 0))
        .optional()?)
}

/// The user with public id `public_id`; a merged user's id names the user it was merged
/// into (following every merge since).
pub fn user_by_public_id(conn: &Connection, public_id: &str) -> Result<Option<UserRow>, DbError> {
    let sql = concat!(
        "SELECT ",
        user_columns!(),
        " FROM users u WHERE u.public_id = ?1"
    );
    let Some(mut user) = conn
        .prepare_cached(sql)?
        .query_row([public_id], |r| user_from_row(r, 0))
        .optional()?
    else {
        return Ok(None);
    };
    // Merges form chains, never circles: a merge takes only a user not merged yet.
    while let Some(into) = user.merged_into {
        user =
            user_by_id(conn, into)?.ok_or(DbError::Sqlite(rusqlite::Error::QueryReturnedNoRows))?;
    }
    Ok(Some(user))
}

/// The identities of user `user_id`, oldest first. Identities have no index by user (a
/// login would have to grow it), so this reads them all: it serves the admin commands.
pub fn user_identities(conn: &Connection, user_id: i64) -> Result<Vec<IdentityRow>, DbError> {
    let sql = concat!(
        "SELECT ",
        identity_columns!(),
        " FROM identities i WHERE i.user_id = ?1 ORDER BY i.id"
    );
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt
        .query_map([user_id], |r| identity_from_row(r, 0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The users with an identity of `openid`: the one of `appid`, or, without an app, one
/// per app that has that openid.
pub fn users_by_openid(
    conn: &Connection,
    openid: &str,
    appid: Option<&str>,
) -> Result<Vec<UserRow>, DbError> {
    let sql = concat!(
        "SELECT ",
        user_columns!(),
        " FROM identities i JOIN users u ON u.id = i.user_id WHERE i.openid = ?1 \
         AND (?2 IS NULL OR i.appid = ?2) ORDER BY i.appid"
    );
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt
        .query_map(params![openid, appid], |r| user_from_row(r, 0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Up to `limit` users, newest first, optionally only those with an identity of one
/// app, starting after the user whose row id is `before` when given. Users are never
/// deleted, so the order of their row ids is the order they were created in. Merged
/// users are left out: their person is listed under the user they were merged into.
pub fn list_users(
    conn: &Connection,
    appid: Option<&str>,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<UserRow>, DbError> {
    let mut sql = String::from(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users u WHERE u.merged_into IS NULL"
    ));
    if appid.is_some() {
        sql.push_str(" AND instr(',' || u.apps || ',', ',' || ?1 || ',') > 0");
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

/// The users `text` finds, newest first, at most `limit`, older than the user with
/// internal id `before` if given: by public id, openid, unionid or phone exactly, or
/// by a nickname that starts with it. Each way is an index lookup: an exact value costs
/// the same with a million users as with ten; a nickname prefix costs in proportion to
/// the users it matches, which are all gathered before the newest are kept.
pub fn search_users(
    conn: &Connection,
    text: &str,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<UserRow>, DbError> {
    // Every string that starts with `text` sorts below `text` followed by the highest
    // code point (the index compares bytes, and U+10FFFF's are the highest UTF-8 has).
    let prefix_end = format!("{text}\u{10FFFF}");
    let sql = concat!(
        "SELECT ",
        user_columns!(),
        " FROM users u WHERE u.id IN (",
        "SELECT id FROM users WHERE public_id = ?1 ",
        "UNION SELECT user_id FROM identities WHERE openid = ?1 ",
        "UNION SELECT user_id FROM identities WHERE unionid = ?1 ",
        "UNION SELECT id FROM users WHERE phone = ?1 ",
        "UNION SELECT id FROM users WHERE nickname >= ?1 AND nickname < ?2",
        ") AND u.id < ?3 ORDER BY u.id DESC LIMIT ?4"
    );
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt
        .query_map(
            params![text, prefix_end, before.unwrap_or(i64::MAX), limit],
            |r| user_from_row(r, 0),
        )?
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
    /// The public id a new user gets; unused when the identity or its unionid already
    /// has a user.
    pub user_public_id: String,
    /// The new session's public id.
    pub session_public_id: String,
    pub appid: String,
    pub openid: String,
    pub unionid: Option<String>,
    /// The session secret's [`crate::keys::token::SessionSecret::lookup_key`].
    pub secret_hash: Vec<u8>,
    /// The login's session_key, sealed for the identity; `None` for a login that brings
    /// none (a web login), which leaves a stored one in place.
    pub session_key: Option<Vec<u8>>,
    /// A nickname and avatar WeChat gave, for the fields the user has not set.
    pub profile: Option<ProfileFill>,
    pub now: UnixTime,
    pub expires_at: UnixTime,
    pub max_expires_at: UnixTime,
    pub max_sessions: u32,
}

/// A nickname and avatar to fill in only where the user has none.
#[derive(Debug, Clone, Default)]
pub struct ProfileFill {
    pub nickname: Option<String>,
    pub avatar_url: Option<String>,
}

/// What a login wrote.
#[derive(Debug)]
// Made once per login and taken apart at once; a box would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum LoginWritten {
    /// A session was created.
    Session {
        session: SessionRow,
        user: UserRow,
        identity: IdentityRow,
        new_user: bool,
    },
    /// The user is banned; no session was created.
    Banned(UserRow),
}

/// Finds the login's identity, or makes it: joined to the user that holds its unionid,
/// else with a new user. Stores the login's session_key on the identity, creates the
/// session and evicts sessions beyond the cap. Runs inside the writer's transaction.
pub fn record_login(conn: &Connection, login: &NewLogin) -> Result<LoginWritten, DbError> {
    let found = conn
        .prepare_cached(
            "SELECT id, user_id, unionid, created_at FROM identities \
             WHERE appid = ?1 AND openid = ?2",
        )?
        .query_row(params![login.appid, login.openid], |r| {
            Ok(IdentityRow {
                id: r.get(0)?,
                user_id: r.get(1)?,
                appid: login.appid.clone(),
                openid: login.openid.clone(),
                unionid: r.get(2)?,
                created_at: r.get(3)?,
            })
        })
        .optional()?;
    let (mut user, identity, new_user) = match found {
        Some(identity) => {
            let identity = note_unionid(conn, identity, login)?;
            if let Some(sealed) = &login.session_key {
                conn.prepare_cached("UPDATE identities SET session_key = ?2 WHERE id = ?1")?
                    .execute(params![identity.id, sealed])?;
            }
            let user = user_by_id(conn, identity.user_id)?
                .ok_or(DbError::Sqlite(rusqlite::Error::QueryReturnedNoRows))?;
            (user, identity, false)
        }
        None => match user_of_unionid(conn, login.unionid.as_deref())? {
            Some(mut user) => {
                let identity = insert_identity(conn, user.id, login)?;
                if !user.apps.contains(&login.appid) {
                    user.apps.push(login.appid.clone());
                }
                conn.prepare_cached("UPDATE users SET apps = ?2, updated_at = ?3 WHERE id = ?1")?
                    .execute(params![user.id, user.apps.join(","), login.now])?;
                user.updated_at = login.now;
                append_event(
                    conn,
                    EventType::IdentityLinked,
                    login.now,
                    user.id,
                    &login.appid,
                )?;
                (user, identity, false)
            }
            None => {
                conn.prepare_cached(
                    "INSERT INTO users (public_id, apps, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?3)",
                )?
                .execute(params![login.user_public_id, login.appid, login.now])?;
                // A new user's row is exactly what was just inserted: reading it back
                // would only cost a query on the writer, the one thread every login
                // passes through.
                let user = UserRow::new(
                    conn.last_insert_rowid(),
                    login.user_public_id.clone(),
                    login.appid.clone(),
                    login.now,
                );
                let identity = insert_identity(conn, user.id, login)?;
                append_event(
                    conn,
                    EventType::UserCreated,
                    login.now,
                    user.id,
                    &login.appid,
                )?;
                (user, identity, true)
            }
        },
    };
    if user.is_banned(login.now) {
        return Ok(LoginWritten::Banned(user));
    }
    if let Some(fill) = &login.profile {
        fill_profile(conn, &mut user, fill, login.now)?;
    }

    conn.prepare_cached(
        "INSERT INTO sessions (public_id, secret_hash, user_id, identity_id, created_at, \
         expires_at, max_expires_at, last_seen_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?5)",
    )?
    .execute(params![
        login.session_public_id,
        &login.secret_hash[..],
        user.id,
        identity.id,
        login.now,
        login.expires_at,
        login.max_expires_at
    ])?;
    let session_id = conn.last_insert_rowid();
    count_login(conn, login.now, new_user)?;
    if !new_user {
        evict_beyond(conn, user.id, login.max_sessions, login.now)?;
    }
    let session = SessionRow {
        id: session_id,
        public_id: login.session_public_id.clone(),
        user_id: user.id,
        identity_id: identity.id,
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
        identity,
        new_user,
    })
}

/// Stores the unionid a returning identity reports when it is new to it. When another
/// user already holds that unionid (the apps were bound to one Open Platform account
/// after both users were made), the pair is recorded as a conflict: both keep working
/// until an admin merges them.
fn note_unionid(
    conn: &Connection,
    mut identity: IdentityRow,
    login: &NewLogin,
) -> Result<IdentityRow, DbError> {
    let Some(unionid) = &login.unionid else {
        return Ok(identity);
    };
    if identity.unionid.as_ref() == Some(unionid) {
        return Ok(identity);
    }
    conn.prepare_cached("UPDATE identities SET unionid = ?2 WHERE id = ?1")?
        .execute(params![identity.id, unionid])?;
    identity.unionid = Some(unionid.clone());
    conn.prepare_cached(
        "INSERT INTO conflicts (unionid, user_id, other_user_id, found_at) \
         SELECT ?1, min(i.user_id), ?2, ?3 FROM identities i \
         WHERE i.unionid = ?1 AND i.user_id <> ?2 HAVING count(*) > 0 \
         ON CONFLICT (user_id, other_user_id) DO NOTHING",
    )?
    .execute(params![unionid, identity.user_id, login.now])?;
    Ok(identity)
}

/// The user an identity with `unionid` belongs to; the oldest, should two (a conflict
/// not yet merged) hold it.
fn user_of_unionid(conn: &Connection, unionid: Option<&str>) -> Result<Option<UserRow>, DbError> {
    let Some(unionid) = unionid else {
        return Ok(None);
    };
    let user_id: Option<i64> = conn
        .prepare_cached("SELECT min(user_id) FROM identities WHERE unionid = ?1")?
        .query_row([unionid], |r| r.get(0))?;
    match user_id {
        Some(id) => user_by_id(conn, id),
        None => Ok(None),
    }
}

/// Inserts the login's identity for user `user_id`.
fn insert_identity(
    conn: &Connection,
    user_id: i64,
    login: &NewLogin,
) -> Result<IdentityRow, DbError> {
    conn.prepare_cached(
        "INSERT INTO identities (user_id, appid, openid, unionid, created_at, session_key) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        user_id,
        login.appid,
        login.openid,
        login.unionid,
        login.now,
        login.session_key
    ])?;
    Ok(IdentityRow {
        id: conn.last_insert_rowid(),
        user_id,
        appid: login.appid.clone(),
        openid: login.openid.clone(),
        unionid: login.unionid.clone(),
        created_at: login.now,
    })
}

/// The sealed session_key stored on identity `identity_id`, if any.
pub fn identity_session_key(
    conn: &Connection,
    identity_id: i64,
) -> Result<Option<Vec<u8>>, DbError> {
    Ok(conn
        .prepare_cached("SELECT session_key FROM identities WHERE id = ?1")?
        .query_row([identity_id], |r| r.get(0))
        .optional()?
        .flatten())
}

/// Fills the user's nickname and avatar from `fill` where the user has none.
fn fill_profile(
    conn: &Connection,
    user: &mut UserRow,
    fill: &ProfileFill,
    now: UnixTime,
) -> Result<(), DbError> {
    let nickname = fill.nickname.as_ref().filter(|_| user.nickname.is_none());
    let avatar_url = fill
        .avatar_url
        .as_ref()
        .filter(|_| user.avatar_url.is_none());
    if nickname.is_none() && avatar_url.is_none() {
        return Ok(());
    }
    conn.prepare_cached(
        "UPDATE users SET nickname = coalesce(nickname, ?2), \
         avatar_url = coalesce(avatar_url, ?3), updated_at = ?4 WHERE id = ?1",
    )?
    .execute(params![user.id, nickname, avatar_url, now])?;
    if nickname.is_some() {
        user.nickname = nickname.cloned();
    }
    if avatar_url.is_some() {
        user.avatar_url = avatar_url.cloned();
    }
    user.updated_at = now;
    Ok(())
}

/// Remembers a `wx.login` code that led to a session, so that a retry with the code
/// gets the same session; returns the row's id. Appended, never updated: should WeChat
/// accept a code twice (it does not), the newer row is the one the server's index of
/// recent codes points at.
pub fn remember_login_code(
    conn: &Connection,
    code_hash: &[u8; 32],
    sealed_sid: &[u8],
    new_user: bool,
    expires_at: UnixTime,
) -> Result<i64, DbError> {
    conn.prepare_cached(
        "INSERT INTO login_codes (code_hash, sealed_sid, new_user, expires_at) \
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![&code_hash[..], sealed_sid, new_user, expires_at])?;
    Ok(conn.last_insert_rowid())
}

/// The kinds of event in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    UserCreated,
    IdentityLinked,
    UserMerged,
    UserBanned,
    UserUnbanned,
}

impl EventType {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::UserCreated => "user.created",
            EventType::IdentityLinked => "identity.linked",
            EventType::UserMerged => "user.merged",
            EventType::UserBanned => "user.banned",
            EventType::UserUnbanned => "user.unbanned",
        }
    }
}

/// Counts a login, and a new user if it made one, in the hour of `now`.
fn count_login(conn: &Connection, now: UnixTime, new_user: bool) -> Result<(), DbError> {
    conn.prepare_cached(
        "INSERT INTO login_counts (hour, logins, new_users) VALUES (?1, 1, ?2) \
         ON CONFLICT (hour) DO UPDATE SET logins = logins + 1, \
         new_users = new_users + excluded.new_users",
    )?
    .execute(params![now.div_euclid(3600), i64::from(new_user)])?;
    Ok(())
}

/// Appends an event about user `user_id` to the journal: a login's, whose one other
/// field is the AppID it came through.
fn append_event(
    conn: &Connection,
    kind: EventType,
    at: UnixTime,
    user_id: i64,
    appid: &str,
) -> Result<(), DbError> {
    // AppIDs are letters and digits (the configuration checks them), so the object
    // needs no escaping, and a login spends no JSON serializer on it.
    append_event_data(
        conn,
        kind,
        at,
        user_id,
        &format!(r#"{{"appid":"{appid}"}}"#),
    )
}

/// Appends an event about user `user_id` to the journal; `data` holds its other fields,
/// a JSON object.
pub fn append_event_data(
    conn: &Connection,
    kind: EventType,
    at: UnixTime,
    user_id: i64,
    data: &str,
) -> Result<(), DbError> {
    conn.prepare_cached("INSERT INTO events (type, at, user_id, data) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![kind.as_str(), at, user_id, data])?;
    Ok(())
}

/// An event as the journal holds it, with its user's public id.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub id: i64,
    pub kind: String,
    pub at: UnixTime,
    pub user_public_id: String,
    /// The type's other fields: a JSON object.
    pub data: String,
}

/// Up to `limit` events after event `after`, oldest first.
pub fn events_after(conn: &Connection, after: i64, limit: u32) -> Result<Vec<EventRow>, DbError> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.id, e.type, e.at, u.public_id, e.data FROM events e \
         JOIN users u ON u.id = e.user_id WHERE e.id > ?1 ORDER BY e.id LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![after, limit], |r| {
            Ok(EventRow {
                id: r.get(0)?,
                kind: r.get(1)?,
                at: r.get(2)?,
                user_public_id: r.get(3)?,
                data: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
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

    fn database() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::db::migrate(&mut conn).unwrap();
        conn
    }

    fn login(appid: &str, openid: &str, unionid: Option<&str>, now: UnixTime) -> NewLogin {
        NewLogin {
            user_public_id: format!("u_{now}"),
            session_public_id: format!("s_{now}"),
            appid: appid.into(),
            openid: openid.into(),
            unionid: unionid.map(Into::into),
            secret_hash: vec![now as u8; 38],
            session_key: Some(format!("key of {now}").into_bytes()),
            profile: None,
            now,
            expires_at: now + 100,
            max_expires_at: now + 1000,
            max_sessions: 10,
        }
    }

    /// Records `login`, which must create a session; returns the user and whether it
    /// is new.
    fn record(conn: &Connection, login: &NewLogin) -> (UserRow, IdentityRow, bool) {
        // As on the writer: inside a transaction, at whose commit the keys are checked.
        let tx = conn.unchecked_transaction().unwrap();
        let written = record_login(&tx, login).unwrap();
        tx.commit().unwrap();
        match written {
            LoginWritten::Session {
                user,
                identity,
                new_user,
                ..
            } => (user, identity, new_user),
            LoginWritten::Banned(_) => panic!("not banned"),
        }
    }

    fn strings(conn: &Connection, sql: &str) -> Vec<String> {
        conn.prepare(sql)
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Each login appends its code, and the row it names is found by its id and hash
    /// until the code expires.
    #[test]
    fn a_login_code_is_found_by_its_row_and_hash_until_it_expires() {
        let conn = database();
        let first = remember_login_code(&conn, &[1; 32], &[0xa1; 16], true, 310).unwrap();
        let again = remember_login_code(&conn, &[1; 32], &[0xb2; 16], false, 320).unwrap();
        let other = remember_login_code(&conn, &[2; 32], &[0xc3; 16], false, 330).unwrap();
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

    /// Each login stores the identity's latest session_key; one that brings none (a web
    /// login) leaves it as it was.
    #[test]
    fn a_login_stores_the_identitys_latest_session_key_on_its_row() {
        let conn = database();
        let stored = |conn: &Connection| {
            strings(
                conn,
                "SELECT appid || ': ' || session_key FROM identities ORDER BY id",
            )
        };
        record(&conn, &login("wx1", "o1", None, 10));
        assert_eq!(stored(&conn), ["wx1: key of 10"]);
        record(&conn, &login("wx1", "o1", None, 20));
        assert_eq!(stored(&conn), ["wx1: key of 20"]);
        let mut web = login("wx1", "o1", None, 30);
        web.session_key = None;
        record(&conn, &web);
        assert_eq!(stored(&conn), ["wx1: key of 20"]);
        assert_eq!(
            strings(&conn, "SELECT CAST(count(*) AS TEXT) FROM users"),
            ["1"]
        );
    }

    /// A new identity whose unionid a user holds joins that user; one without a unionid
    /// is a user of its own. The journal says which.
    #[test]
    fn a_new_identity_joins_the_user_holding_its_unionid() {
        let conn = database();
        let (first, _, new) = record(&conn, &login("wxmini", "o1", Some("un1"), 10));
        assert!(new);
        let (joined, identity, new) = record(&conn, &login("wxh5", "p1", Some("un1"), 20));
        assert!(!new);
        assert_eq!(joined.public_id, first.public_id);
        assert_eq!(joined.apps, ["wxmini", "wxh5"]);
        assert_eq!(identity.appid, "wxh5");
        let (alone, _, new) = record(&conn, &login("wxh5", "p2", None, 30));
        assert!(new);
        assert_ne!(alone.public_id, first.public_id);

        let read = user_by_public_id(&conn, &first.public_id).unwrap().unwrap();
        assert_eq!(read.apps, ["wxmini", "wxh5"]);
        assert_eq!(read.updated_at, 20);
        let events: Vec<String> = events_after(&conn, 0, 10)
            .unwrap()
            .into_iter()
            .map(|e| format!("{} {} {} {}", e.id, e.kind, e.user_public_id, e.data))
            .collect();
        assert_eq!(
            events,
            [
                r#"1 user.created u_10 {"appid":"wxmini"}"#,
                r#"2 identity.linked u_10 {"appid":"wxh5"}"#,
                r#"3 user.created u_30 {"appid":"wxh5"}"#,
            ]
        );
        assert_eq!(events_after(&conn, 2, 10).unwrap().len(), 1);
        assert_eq!(events_after(&conn, 0, 1).unwrap().len(), 1);
    }

    /// Two users made before their apps were bound: the later unionid makes a conflict,
    /// not a merge, and both keep logging in as themselves.
    #[test]
    fn a_unionid_that_arrives_late_is_recorded_as_a_conflict() {
        let conn = database();
        let (mini, _, _) = record(&conn, &login("wxmini", "o1", Some("un1"), 10));
        let (web, _, _) = record(&conn, &login("wxh5", "p1", None, 20));
        let (again, identity, new) = record(&conn, &login("wxh5", "p1", Some("un1"), 30));
        assert!(!new);
        assert_eq!(again.public_id, web.public_id, "not merged silently");
        assert_eq!(identity.unionid.as_deref(), Some("un1"));
        let conflicts = strings(
            &conn,
            "SELECT concat_ws(' ', unionid, user_id, other_user_id, found_at) FROM conflicts",
        );
        assert_eq!(conflicts, [format!("un1 {} {} 30", mini.id, web.id)]);
        record(&conn, &login("wxh5", "p1", Some("un1"), 40));
        assert_eq!(
            strings(&conn, "SELECT CAST(count(*) AS TEXT) FROM conflicts"),
            ["1"],
            "recorded once"
        );
        let (mini_again, _, _) = record(&conn, &login("wxmini", "o1", Some("un1"), 50));
        assert_eq!(mini_again.public_id, mini.public_id);
    }

    /// WeChat's nickname and avatar fill only the fields a user has not set.
    #[test]
    fn a_web_login_fills_only_empty_profile_fields() {
        let conn = database();
        let mut first = login("wxh5", "p1", None, 10);
        first.session_key = None;
        first.profile = Some(ProfileFill {
            nickname: Some("Wei".into()),
            avatar_url: None,
        });
        let (user, _, _) = record(&conn, &first);
        assert_eq!(user.nickname.as_deref(), Some("Wei"));
        let mut second = login("wxh5", "p1", None, 20);
        second.profile = Some(ProfileFill {
            nickname: Some("Changed".into()),
            avatar_url: Some("https://wx.qlogo.cn/a".into()),
        });
        let (user, _, _) = record(&conn, &second);
        assert_eq!(user.nickname.as_deref(), Some("Wei"));
        assert_eq!(user.avatar_url.as_deref(), Some("https://wx.qlogo.cn/a"));
        let stored = user_by_id(&conn, user.id).unwrap().unwrap();
        assert_eq!(stored, user, "what the login returns is what is stored");
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
