//! What the admin commands do to a data directory, while a server may be running on it:
//! the database is opened as one more connection (WAL lets it work beside the server),
//! and the key file is replaced atomically, which a running server notices.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, Transaction, TransactionBehavior, params};
use serde::Serialize;

use crate::clock::{UnixTime, parse_rfc3339, rfc3339};
use crate::config::DurationSetting;
use crate::datadir;
use crate::db::needed_keys::{self, Dependents};
use crate::db::queries::{self, EventType, IdentityRow, RevokeReason, SessionRow, UserRow};
use crate::db::{Db, DbError};
use crate::domain::service_keys::{self, Scope, ServiceKeyError, ServiceKeyRow};
use crate::keys::key_file::{KeyFile, KeyFileError, Rotation};
use crate::keys::secret::Secret;
use crate::ops::audit::{self, Action, Actor};
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
    #[error(transparent)]
    ServiceKey(#[from] ServiceKeyError),
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
    actor: &Actor,
    user: &str,
    until: UnixTime,
    reason: Option<&str>,
    now: UnixTime,
) -> Result<(), AdminError> {
    if until <= now {
        return Err(AdminError::Refused("the ban must end in the future".into()));
    }
    let row = find_user(conn, UserRef::Id(user))?;
    conn.execute(
        "UPDATE users SET banned_until = ?2, ban_reason = ?3, updated_at = ?4 WHERE id = ?1",
        params![row.id, until, reason, now],
    )
    .map_err(DbError::from)?;
    let detail = serde_json::json!({ "until": rfc3339(until), "reason": reason });
    queries::append_event_data(
        conn,
        EventType::UserBanned,
        now,
        row.id,
        &detail.to_string(),
    )?;
    audit::record(conn, actor, Action::UserBan, Some(user), &detail, now)?;
    Ok(())
}

/// Lifts a user's ban.
pub fn unban(
    conn: &Connection,
    actor: &Actor,
    user: &str,
    now: UnixTime,
) -> Result<(), AdminError> {
    let row = find_user(conn, UserRef::Id(user))?;
    conn.execute(
        "UPDATE users SET banned_until = NULL, ban_reason = NULL, updated_at = ?2 WHERE id = ?1",
        params![row.id, now],
    )
    .map_err(DbError::from)?;
    queries::append_event_data(conn, EventType::UserUnbanned, now, row.id, "{}")?;
    audit::record(
        conn,
        actor,
        Action::UserUnban,
        Some(user),
        &serde_json::json!({}),
        now,
    )?;
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

/// A page of the users `text` finds (see [`queries::search_users`]), newest first,
/// older than the user `before` if given; every user when `text` is empty.
pub fn search_users(
    conn: &Connection,
    text: &str,
    before: Option<&str>,
    limit: u32,
) -> Result<Vec<UserRow>, AdminError> {
    let text = text.trim();
    if text.is_empty() {
        return list_users(conn, None, before, limit);
    }
    let position = match before {
        Some(id) => Some(
            queries::user_by_public_id(conn, id)?
                .ok_or_else(|| no_such_user(id))?
                .id,
        ),
        None => None,
    };
    Ok(queries::search_users(conn, text, position, limit)?)
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
pub fn revoke_session(
    conn: &Connection,
    actor: &Actor,
    session: &str,
    now: UnixTime,
) -> Result<(), AdminError> {
    let found = queries::session_by_public_id(conn, session)?
        .ok_or_else(|| AdminError::Refused(format!("there is no session `{session}`")))?;
    if !queries::revoke_session(conn, found.session.id, now, RevokeReason::Admin)? {
        return Err(AdminError::Refused(format!(
            "session `{session}` is already revoked"
        )));
    }
    audit::record(
        conn,
        actor,
        Action::SessionRevoke,
        Some(session),
        &serde_json::json!({ "user": found.user.public_id }),
        now,
    )?;
    Ok(())
}

/// Revokes every live session of a user; returns how many there were.
pub fn revoke_user_sessions(
    conn: &Connection,
    actor: &Actor,
    user: &str,
    now: UnixTime,
) -> Result<usize, AdminError> {
    let row = find_user(conn, UserRef::Id(user))?;
    let revoked = queries::revoke_user_sessions(conn, row.id, now, RevokeReason::Admin)?;
    audit::record(
        conn,
        actor,
        Action::UserSessionsRevoke,
        Some(user),
        &serde_json::json!({ "sessions": revoked }),
        now,
    )?;
    Ok(revoked)
}

/// Creates a service key (see [`service_keys::create`]).
pub fn create_service_key(
    conn: &Connection,
    actor: &Actor,
    name: &str,
    scopes: &[Scope],
    now: UnixTime,
) -> Result<(ServiceKeyRow, Secret), AdminError> {
    let (row, key) = service_keys::create(conn, name, scopes, now)?;
    audit::record(
        conn,
        actor,
        Action::ServiceKeyCreate,
        Some(&row.public_id),
        &serde_json::json!({ "name": row.name, "scopes": row.scope_list() }),
        now,
    )?;
    Ok((row, key))
}

/// Revokes a service key (see [`service_keys::revoke`]).
pub fn revoke_service_key(
    conn: &Connection,
    actor: &Actor,
    name_or_id: &str,
    now: UnixTime,
) -> Result<ServiceKeyRow, AdminError> {
    let row = service_keys::revoke(conn, name_or_id, now)?;
    audit::record(
        conn,
        actor,
        Action::ServiceKeyRevoke,
        Some(&row.public_id),
        &serde_json::json!({ "name": row.name }),
        now,
    )?;
    Ok(row)
}

/// Runs `f` in the server's writer's next transaction (see [`Db::write`]): a refusal
/// rolls back what `f` did, as a database error does.
pub async fn through_writer<T, F>(db: &Db, f: F) -> Result<T, AdminError>
where
    T: Send + 'static,
    F: Fn(&Connection) -> Result<T, AdminError> + Send + Sync + 'static,
{
    let refusal = std::sync::Arc::new(std::sync::Mutex::new(None));
    let slot = std::sync::Arc::clone(&refusal);
    let written = db
        .write(move |c| {
            f(c).map_err(|e| match e {
                AdminError::Db(e) => e,
                other => {
                    *slot.lock().expect("refusal slot poisoned") = Some(other);
                    DbError::NotCommitted
                }
            })
        })
        .await;
    match (
        written,
        refusal.lock().expect("refusal slot poisoned").take(),
    ) {
        (Ok(value), _) => Ok(value),
        (Err(_), Some(refused)) => Err(refused),
        (Err(e), None) => Err(e.into()),
    }
}

/// Runs `f` in a transaction that takes the write lock at once (one that read first
/// could not write after a server's commit in between), committed if `f` succeeds:
/// for the command line, which writes beside a running server.
pub fn in_transaction<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, AdminError>,
) -> Result<T, AdminError> {
    let tx =
        Transaction::new_unchecked(conn, TransactionBehavior::Immediate).map_err(DbError::from)?;
    let value = f(&tx)?;
    tx.commit().map_err(DbError::from)?;
    Ok(value)
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

/// One key of the key file, as `keys list` and the console show it.
#[derive(Debug, Clone)]
pub struct KeyListing {
    pub kid: String,
    /// `session` (session tokens) or `jwt` (access JWTs).
    pub usage: &'static str,
    /// `active`, `accepted` or `retired` for a session-token key; `active`, `next`,
    /// `replaced` or `retired` for a JWT key.
    pub state: &'static str,
    pub created_at: UnixTime,
    pub active_from: Option<UnixTime>,
    pub replaced_at: Option<UnixTime>,
    pub retired_at: Option<UnixTime>,
}

impl KeyListing {
    /// Whether `keys retire` takes this key: neither the one signing now nor retired.
    pub fn retirable(&self) -> bool {
        self.state != "active" && self.state != "retired"
    }
}

/// Every key of `file`: the session-token keys, then the JWT keys.
pub fn key_listing(file: &KeyFile) -> Vec<KeyListing> {
    let session = file.keys.iter().map(|k| KeyListing {
        kid: k.kid.clone(),
        usage: "session",
        state: if k.retired_at.is_some() {
            "retired"
        } else if k.kid == file.active {
            "active"
        } else {
            "accepted"
        },
        created_at: k.created_at,
        active_from: None,
        replaced_at: None,
        retired_at: k.retired_at,
    });
    let jwt = file.jwt_keys.iter().map(|k| KeyListing {
        kid: k.kid.clone(),
        usage: "jwt",
        state: if k.retired_at.is_some() {
            "retired"
        } else if k.is_active() {
            "active"
        } else if k.is_next() {
            "next"
        } else {
            "replaced"
        },
        created_at: k.created_at,
        active_from: k.active_from,
        replaced_at: k.replaced_at,
        retired_at: k.retired_at,
    });
    session.chain(jwt).collect()
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

/// Saves `file` as the key file of `data_dir`, then records what it holds in `db`,
/// with the audit log's entry for the change.
fn save_and_record(
    path: &Path,
    file: &KeyFile,
    db: Option<Connection>,
    change: (&Actor, Action, Option<&str>, serde_json::Value),
    now: UnixTime,
) -> Result<(), AdminError> {
    // The file first: should recording fail, the database needs no key the file lacks,
    // and the next start records the file.
    file.save(path)?;
    if let Some(conn) = db {
        let (actor, action, target, detail) = change;
        in_transaction(&conn, |tx| {
            needed_keys::record(tx, &file.prints(), now)?;
            audit::record(tx, actor, action, target, &detail, now)?;
            Ok(())
        })?;
    }
    Ok(())
}

/// Makes a new signing key and the next JWT key active; returns their kids.
pub fn rotate_key(data_dir: &Path, actor: &Actor, now: UnixTime) -> Result<Rotation, AdminError> {
    let (path, mut file) = key_file(data_dir)?;
    let db = database_of(data_dir, &file)?;
    let rotation = file.rotate(now);
    let detail = serde_json::json!({ "signing": rotation.signing, "jwt": rotation.jwt });
    save_and_record(
        &path,
        &file,
        db,
        (actor, Action::KeysRotate, None, detail),
        now,
    )?;
    Ok(rotation)
}

/// Retires a signing key (every token signed with it stops working, and the database no
/// longer needs it) or a JWT key (it leaves the JWKS, so the JWTs it signed stop
/// verifying).
pub fn retire_key(
    data_dir: &Path,
    actor: &Actor,
    kid: &str,
    now: UnixTime,
) -> Result<(), AdminError> {
    let (path, mut file) = key_file(data_dir)?;
    let db = database_of(data_dir, &file)?;
    file.retire(kid, now).map_err(AdminError::Refused)?;
    save_and_record(
        &path,
        &file,
        db,
        (actor, Action::KeyRetire, Some(kid), serde_json::json!({})),
        now,
    )
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
    actor: &Actor,
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
    audit::record(
        &tx,
        actor,
        Action::KeysReset,
        None,
        &serde_json::json!({ "active": file.active }),
        now,
    )?;
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
