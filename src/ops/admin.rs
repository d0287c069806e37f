//! What the admin commands do to a data directory, while a server may be running on it:
//! the database is opened as one more connection (WAL lets it work beside the server),
//! and the key file is replaced atomically, which a running server notices.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, Transaction, TransactionBehavior, params};
use serde::Serialize;

use crate::clock::{UnixTime, parse_rfc3339, rfc3339};
use crate::config::DurationSetting;
use crate::datadir;
use crate::db::DbError;
use crate::db::needed_keys::{self, Dependents};
use crate::db::queries::{self, EventType, IdentityRow, RevokeReason, SessionRow, UserRow};
use crate::keys::key_file::{KeyFile, KeyFileError, Rotation};
use crate::ops::key_guard;

/// The ban end used when none is given: the last second of year 9999.
pub const FOREVER: UnixTime = crate::clock::MAX_TIME;

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no signing keys in {0}; start `wxauth serve` with this data directory first")]
    NoKeys(PathBuf),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Keys(#[from] KeyFileError),
    #[error(transparent)]
    Backup(#[from] crate::ops::backup::BackupError),
    #[error("{0}")]
    Refused(String),
}

/// Parses a ban end: an RFC 3339 time, or a duration from `now` such as `7d`.
pub fn parse_until(text: &str, now: UnixTime) -> Result<UnixTime, String> {
    if let Some(t) = parse_rfc3339(text) {
        return Ok(t);
    }
    let d: DurationSetting = text.parse().map_err(|_| {
        format!("`{text}` is neither a time (2026-12-31T00:00:00Z) nor a duration (30d)")
    })?;
    Ok(now.saturating_add(crate::clock::secs(d.0)).min(FOREVER))
}

/// Bans the user with public id `user` until `until`; login and every authenticated
/// call answer `user_banned` meanwhile.
pub fn ban(
    conn: &Connection,
    user: &str,
    until: UnixTime,
    reason: Option<&str>,
    now: UnixTime,
) -> Result<(), AdminError> {
    if until <= now {
        return Err(AdminError::Refused("the ban must end in the future".into()));
    }
    let tx = write_transaction(conn)?;
    let row = find_user(&tx, UserRef::Id(user))?;
    tx.execute(
        "UPDATE users SET banned_until = ?2, ban_reason = ?3, updated_at = ?4 WHERE id = ?1",
        params![row.id, until, reason, now],
    )
    .map_err(DbError::from)?;
    queries::append_event_data(
        &tx,
        EventType::UserBanned,
        now,
        row.id,
        &serde_json::json!({ "until": rfc3339(until), "reason": reason }).to_string(),
    )?;
    tx.commit().map_err(DbError::from)?;
    Ok(())
}

/// Lifts a user's ban.
pub fn unban(conn: &Connection, user: &str, now: UnixTime) -> Result<(), AdminError> {
    let tx = write_transaction(conn)?;
    let row = find_user(&tx, UserRef::Id(user))?;
    tx.execute(
        "UPDATE users SET banned_until = NULL, ban_reason = NULL, updated_at = ?2 WHERE id = ?1",
        params![row.id, now],
    )
    .map_err(DbError::from)?;
    queries::append_event_data(&tx, EventType::UserUnbanned, now, row.id, "{}")?;
    tx.commit().map_err(DbError::from)?;
    Ok(())
}

/// The most users one `users list` page holds.
pub const MAX_PAGE: u32 = 1000;

/// A user as an administrator sees it: every stored field, identities included.
#[derive(Debug, Serialize)]
pub struct UserRecord {
    pub id: String,
    pub apps: Vec<String>,
    pub identities: Vec<IdentityRecord>,
    pub nickname: Option<String>,
    pub avatar_url: Option<String>,
    pub gender: i64,
    pub country: Option<String>,
    pub province: Option<String>,
    pub city: Option<String>,
    pub language: Option<String>,
    pub phone: Option<String>,
    pub banned_until: Option<String>,
    pub ban_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// An identity as an administrator sees it.
#[derive(Debug, Serialize)]
pub struct IdentityRecord {
    pub appid: String,
    pub openid: String,
    pub unionid: Option<String>,
    pub created_at: String,
}

impl From<IdentityRow> for IdentityRecord {
    fn from(i: IdentityRow) -> Self {
        IdentityRecord {
            appid: i.appid,
            openid: i.openid,
            unionid: i.unionid,
            created_at: rfc3339(i.created_at),
        }
    }
}

impl UserRecord {
    /// The record of `u`, with its identities, read from `conn`.
    pub fn load(conn: &Connection, u: UserRow) -> Result<UserRecord, AdminError> {
        let identities = queries::user_identities(conn, u.id)?;
        Ok(UserRecord {
            id: u.public_id,
            apps: u.apps,
            identities: identities.into_iter().map(IdentityRecord::from).collect(),
            nickname: u.nickname,
            avatar_url: u.avatar_url,
            gender: u.gender,
            country: u.country,
            province: u.province,
            city: u.city,
            language: u.language,
            phone: u.phone,
            banned_until: u.banned_until.map(rfc3339),
            ban_reason: u.ban_reason,
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
        })
    }
}

/// A page of users, newest first: at most `limit`, of `appid` only if given, and older
/// than the user `before` if given (the last id of the previous page).
pub fn list_users(
    conn: &Connection,
    appid: Option<&str>,
    before: Option<&str>,
    limit: u32,
) -> Result<Vec<UserRow>, AdminError> {
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AdminError::Refused(format!(
            "--limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let position = match before {
        Some(id) => {
            let user = queries::user_by_public_id(conn, id)?.ok_or_else(|| no_such_user(id))?;
            Some(user.id)
        }
        None => None,
    };
    Ok(queries::list_users(conn, appid, position, limit)?)
}

/// How to find one user.
#[derive(Debug, Clone, Copy)]
pub enum UserRef<'a> {
    /// By public id (`u_…`).
    Id(&'a str),
    /// By openid, within one app when given.
    OpenId {
        openid: &'a str,
        appid: Option<&'a str>,
    },
}

/// The one user `which` names.
pub fn find_user(conn: &Connection, which: UserRef<'_>) -> Result<UserRow, AdminError> {
    match which {
        UserRef::Id(id) => queries::user_by_public_id(conn, id)?.ok_or_else(|| no_such_user(id)),
        UserRef::OpenId { openid, appid } => {
            let mut found = queries::users_by_openid(conn, openid, appid)?;
            match found.len() {
                0 => Err(AdminError::Refused(format!(
                    "there is no user with openid `{openid}`{}",
                    appid.map(|a| format!(" in app {a}")).unwrap_or_default()
                ))),
                1 => Ok(found.remove(0)),
                _ => Err(AdminError::Refused(format!(
                    "openid `{openid}` exists in several apps ({}); name one with --app",
                    found
                        .iter()
                        .map(|u| u.apps.join("+"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            }
        }
    }
}

/// Where a session stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Live,
    Expired,
    Revoked,
}

impl SessionStatus {
    /// The status of `session` at `now`.
    pub fn of(session: &SessionRow, now: UnixTime) -> SessionStatus {
        if session.revoked_at.is_some() {
            SessionStatus::Revoked
        } else if now >= session.expires_at {
            SessionStatus::Expired
        } else {
            SessionStatus::Live
        }
    }

    /// The status as one word.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Live => "live",
            SessionStatus::Expired => "expired",
            SessionStatus::Revoked => "revoked",
        }
    }
}

/// A session as an administrator sees it.
#[derive(Debug, Serialize)]
pub struct SessionRecord {
    pub id: String,
    pub user: String,
    pub status: SessionStatus,
    pub created_at: String,
    pub expires_at: String,
    pub max_expires_at: String,
    pub last_seen_at: String,
    pub revoked_at: Option<String>,
    pub revoked_reason: Option<String>,
}

impl SessionRecord {
    /// The record of `session`, owned by the user `user`, as of `now`.
    pub fn new(session: SessionRow, user: &str, now: UnixTime) -> SessionRecord {
        SessionRecord {
            id: session.public_id.clone(),
            user: user.to_owned(),
            status: SessionStatus::of(&session, now),
            created_at: rfc3339(session.created_at),
            expires_at: rfc3339(session.expires_at),
            max_expires_at: rfc3339(session.max_expires_at),
            last_seen_at: rfc3339(session.last_seen_at),
            revoked_at: session.revoked_at.map(rfc3339),
            revoked_reason: session.revoked_reason,
        }
    }
}

/// Every stored session of a user, newest first.
pub fn user_sessions(
    conn: &Connection,
    which: UserRef<'_>,
) -> Result<(UserRow, Vec<SessionRow>), AdminError> {
    let user = find_user(conn, which)?;
    let sessions = queries::user_sessions(conn, user.id)?;
    Ok((user, sessions))
}

/// Revokes one session by its public id (`s_…`); a running server refuses its token
/// from the next request on.
pub fn revoke_session(conn: &Connection, session: &str, now: UnixTime) -> Result<(), AdminError> {
    let row = queries::session_by_public_id(conn, session)?
        .map(|found| found.session)
        .ok_or_else(|| AdminError::Refused(format!("there is no session `{session}`")))?;
    if !queries::revoke_session(conn, row.id, now, RevokeReason::Admin)? {
        return Err(AdminError::Refused(format!(
            "session `{session}` is already revoked"
        )));
    }
    Ok(())
}

/// Revokes every live session of a user; returns how many there were.
pub fn revoke_user_sessions(
    conn: &Connection,
    user: &str,
    now: UnixTime,
) -> Result<usize, AdminError> {
    let row = find_user(conn, UserRef::Id(user))?;
    Ok(queries::revoke_user_sessions(
        conn,
        row.id,
        now,
        RevokeReason::Admin,
    )?)
}

/// A transaction that takes the write lock at once: one that read first could not
/// write after a server's commit in between.
pub(crate) fn write_transaction(conn: &Connection) -> Result<Transaction<'_>, AdminError> {
    Ok(Transaction::new_unchecked(conn, TransactionBehavior::Immediate).map_err(DbError::from)?)
}

pub(crate) fn no_such_user(user: &str) -> AdminError {
    AdminError::Refused(format!("there is no user `{user}`"))
}

/// The key file of `data_dir`, which must exist.
fn key_file(data_dir: &Path) -> Result<(PathBuf, KeyFile), AdminError> {
    let path = data_dir.join(datadir::KEYS_FILE);
    if !path.exists() {
        return Err(AdminError::NoKeys(data_dir.to_owned()));
    }
    let file = KeyFile::load(&path)?;
    Ok((path, file))
}

/// Every signing key, retired ones included.
pub fn list_keys(data_dir: &Path) -> Result<KeyFile, AdminError> {
    Ok(key_file(data_dir)?.1)
}

/// The database of `data_dir` as one more connection, if there is one, after checking
/// that `file` holds every key it needs: a change to a key file that is not the
/// database's would make it seem to be.
fn database_of(data_dir: &Path, file: &KeyFile) -> Result<Option<Connection>, AdminError> {
    if !data_dir.join(datadir::DATABASE_FILE).exists() {
        return Ok(None);
    }
    let conn = crate::db::open_existing(data_dir)?;
    let recorded = key_guard::recorded(&conn)?;
    if let key_guard::Verdict::Lacking(lacking) = key_guard::judge(&recorded, Some(file)) {
        return Err(AdminError::Refused(format!(
            "the key file in {} is not this database's: it lacks {}; bring back the \
             keys.json that belongs with it, or run `wxauth keys reset --yes`",
            data_dir.display(),
            key_guard::list(&lacking)
        )));
    }
    Ok(Some(conn))
}

/// Saves `file` as the key file of `data_dir`, then records what it holds in `db`.
fn save_and_record(
    path: &Path,
    file: &KeyFile,
    db: Option<Connection>,
    now: UnixTime,
) -> Result<(), AdminError> {
    // The file first: should recording fail, the database needs no key the file lacks,
    // and the next start records the file.
    file.save(path)?;
    if let Some(conn) = db {
        let tx = write_transaction(&conn)?;
        needed_keys::record(&tx, &file.prints(), now)?;
        tx.commit().map_err(DbError::from)?;
    }
    Ok(())
}

/// Makes a new signing key and the next JWT key active; returns their kids.
pub fn rotate_key(data_dir: &Path, now: UnixTime) -> Result<Rotation, AdminError> {
    let (path, mut file) = key_file(data_dir)?;
    let db = database_of(data_dir, &file)?;
    let rotation = file.rotate(now);
    save_and_record(&path, &file, db, now)?;
    Ok(rotation)
}

/// Retires a signing key (every token signed with it stops working, and the database no
/// longer needs it) or a JWT key (it leaves the JWKS, so the JWTs it signed stop
/// verifying).
pub fn retire_key(data_dir: &Path, kid: &str, now: UnixTime) -> Result<(), AdminError> {
    let (path, mut file) = key_file(data_dir)?;
    let db = database_of(data_dir, &file)?;
    file.retire(kid, now).map_err(AdminError::Refused)?;
    save_and_record(&path, &file, db, now)
}

/// What `keys reset` did, or would do.
#[derive(Debug, Serialize)]
pub struct KeysReset {
    /// The key file that is (or would be) replaced.
    pub key_file: PathBuf,
    /// The rows that stopped (or would stop) working.
    pub dropped: Dependents,
    /// The new active signing key; `None` when nothing was done.
    pub active: Option<String>,
}

/// Replaces the key file of `data_dir` with new keys, ends every session, drops the
/// sealed session_keys and access tokens and records the new keys; only when `confirmed`,
/// and otherwise says what it would drop. Refuses while a server holds the data directory.
pub fn reset_keys(
    data_dir: &Path,
    now: UnixTime,
    confirmed: bool,
) -> Result<KeysReset, AdminError> {
    let db_path = data_dir.join(datadir::DATABASE_FILE);
    if !db_path.exists() {
        return Err(AdminError::Refused(format!(
            "no wxauth database in {}; `wxauth serve` makes keys for a new one",
            data_dir.display()
        )));
    }
    // Held to the end: no server may start between the new keys and the dropped rows.
    let _lock = datadir::try_lock(data_dir)
        .map_err(|source| DbError::File {
            path: data_dir.to_owned(),
            source,
        })?
        .ok_or_else(|| {
            AdminError::Refused(format!(
                "a wxauth server is running on {}; stop it before resetting the keys",
                data_dir.display()
            ))
        })?;
    let mut conn = crate::db::open_connection(&db_path, false)?;
    crate::db::migrate(&mut conn)?;
    let key_file = data_dir.join(datadir::KEYS_FILE);
    if !confirmed {
        return Ok(KeysReset {
            key_file,
            dropped: needed_keys::dependents(&conn)?,
            active: None,
        });
    }
    let file = KeyFile::generate(now);
    let tx = conn.transaction().map_err(DbError::from)?;
    let dropped = needed_keys::drop_dependents(&tx, now)?;
    needed_keys::record(&tx, &file.prints(), now)?;
    tx.commit().map_err(DbError::from)?;
    // After the commit: until the file is saved a start refuses, and `keys reset` can be
    // run again.
    file.save(&key_file)?;
    Ok(KeysReset {
        key_file,
        dropped,
        active: Some(file.active.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_ends_are_times_or_durations() {
        assert_eq!(parse_until("2026-11-30T10:00:00Z", 0), Ok(1_796_032_800));
        assert_eq!(parse_until("7d", 100), Ok(100 + 7 * 86400));
        assert!(parse_until("someday", 0).is_err());
    }
}
