//! What the admin commands do to a data directory, while a server may be running on it:
//! the database is opened as one more connection (WAL lets it work beside the server),
//! and the key file is replaced atomically, which a running server notices.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

use crate::clock::{UnixTime, parse_rfc3339};
use crate::config::DurationSetting;
use crate::datadir;
use crate::db::DbError;
use crate::keys::{KeyFile, KeyFileError};

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
    let changed = conn
        .execute(
            "UPDATE users SET banned_until = ?2, ban_reason = ?3, updated_at = ?4 WHERE public_id = ?1",
            params![user, until, reason, now],
        )
        .map_err(DbError::from)?;
    if changed == 0 {
        return Err(no_such_user(user));
    }
    Ok(())
}

/// Lifts a user's ban.
pub fn unban(conn: &Connection, user: &str, now: UnixTime) -> Result<(), AdminError> {
    let changed = conn
        .execute(
            "UPDATE users SET banned_until = NULL, ban_reason = NULL, updated_at = ?2 WHERE public_id = ?1",
            params![user, now],
        )
        .map_err(DbError::from)?;
    if changed == 0 {
        return Err(no_such_user(user));
    }
    Ok(())
}

fn no_such_user(user: &str) -> AdminError {
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

/// Makes a new signing key active; returns its kid.
pub fn rotate_key(data_dir: &Path, now: UnixTime) -> Result<String, AdminError> {
    let (path, mut file) = key_file(data_dir)?;
    let kid = file.rotate(now).kid.clone();
    file.save(&path)?;
    Ok(kid)
}

/// Retires a signing key: every token signed with it stops working.
pub fn retire_key(data_dir: &Path, kid: &str, now: UnixTime) -> Result<(), AdminError> {
    let (path, mut file) = key_file(data_dir)?;
    file.retire(kid, now).map_err(AdminError::Refused)?;
    file.save(&path)?;
    Ok(())
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
