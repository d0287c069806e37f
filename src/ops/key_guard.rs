//! Keeping the key file and the database together. A start uses the key file only if it
//! holds every key the database records as needed, makes a new one only for an empty
//! database, and then records what the file holds; anything else refuses to start.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::clock::UnixTime;
use crate::db::DbError;
use crate::db::needed_keys;
use crate::keys::key_file::{KeyFile, KeyFileError, KeyPrint};

/// What the database says about the keys it needs.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The keys it records as needed; none for a database that has recorded none yet
    /// (new, or made by a wxauth before the record existed).
    pub needed: Vec<KeyPrint>,
    /// Whether it holds no user and no session.
    pub empty: bool,
}

/// Reads the record of the database on `conn`.
pub fn recorded(conn: &Connection) -> Result<Recorded, DbError> {
    Ok(Recorded {
        needed: needed_keys::needed(conn)?,
        empty: needed_keys::is_empty(conn)?,
    })
}

/// Whether a key file may be used with a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// There is none and the database is empty: make one.
    Create,
    /// It holds every key the database needs.
    Use,
    /// There is none, and the database has users or sessions.
    Missing,
    /// It lacks these keys the database needs: it belongs to another database.
    Lacking(Vec<KeyPrint>),
}

/// Judges `file` (`None` when there is none) against what the database recorded.
pub fn judge(recorded: &Recorded, file: Option<&KeyFile>) -> Verdict {
    match file {
        None if recorded.empty => Verdict::Create,
        None => Verdict::Missing,
        Some(file) => {
            let lacking = file.lacks(&recorded.needed);
            if lacking.is_empty() {
                Verdict::Use
            } else {
                Verdict::Lacking(lacking)
            }
        }
    }
}

/// Why a key file cannot be used with the database.
#[derive(Debug, thiserror::Error)]
pub enum KeyGuardError {
    #[error("the key file {} is missing and the database depends on its keys", path.display())]
    Missing { path: PathBuf },
    #[error("the key file {} is not this database's: it lacks {}", path.display(), list(lacking))]
    Lacking {
        path: PathBuf,
        lacking: Vec<KeyPrint>,
    },
    #[error(transparent)]
    Keys(#[from] KeyFileError),
}

/// `keys` as `signing key a1b2c3d4, data key 0f…`.
pub fn list(keys: &[KeyPrint]) -> String {
    keys.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The key file at `path` for a database whose record is `recorded`: the existing one if
/// it holds every key the database needs (given a data key if it has none), or a new
/// one for an empty database. What it holds is for the caller to record.
pub fn key_file_for(
    recorded: &Recorded,
    path: &Path,
    now: UnixTime,
) -> Result<KeyFile, KeyGuardError> {
    let file = KeyFile::load_if_present(path)?;
    match (judge(recorded, file.as_ref()), file) {
        (Verdict::Use, Some(mut file)) => {
            let added_data_key = file.add_missing_data_key();
            if file.add_missing_jwt_keys(now) || added_data_key {
                file.save(path)?;
            }
            Ok(file)
        }
        (Verdict::Lacking(lacking), _) => Err(KeyGuardError::Lacking {
            path: path.to_owned(),
            lacking,
        }),
        (Verdict::Missing, _) => Err(KeyGuardError::Missing {
            path: path.to_owned(),
        }),
        (Verdict::Create | Verdict::Use, _) => {
            let file = KeyFile::generate(now);
            file.save(path)?;
            Ok(file)
        }
    }
}

/// The key file at `path` put in place while a server runs, by `wxauth keys` or by hand:
/// usable only if it holds every key the database needs, as at a start. Unlike at a
/// start, nothing is made or changed here.
pub fn replacement(recorded: &Recorded, path: &Path) -> Result<KeyFile, KeyGuardError> {
    let file = KeyFile::load(path)?;
    match judge(recorded, Some(&file)) {
        Verdict::Lacking(lacking) => Err(KeyGuardError::Lacking {
            path: path.to_owned(),
            lacking,
        }),
        Verdict::Create | Verdict::Use | Verdict::Missing => Ok(file),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(needed: Vec<KeyPrint>, empty: bool) -> Recorded {
        Recorded { needed, empty }
    }

    #[test]
    fn only_an_empty_database_gets_a_new_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let populated = recorded(vec![], false);
        assert!(matches!(
            key_file_for(&populated, &path, 0),
            Err(KeyGuardError::Missing { .. })
        ));
        assert!(!path.exists());
        let made = key_file_for(&recorded(vec![], true), &path, 0).unwrap();
        assert!(path.exists());

        // Once recorded, that file is used; another one is refused.
        let theirs = recorded(made.prints(), false);
        let again = key_file_for(&theirs, &path, 1).unwrap();
        assert_eq!(again.prints(), made.prints());
        KeyFile::generate(2).save(&path).unwrap();
        let err = key_file_for(&theirs, &path, 3).unwrap_err();
        assert!(err.to_string().contains("not this database's"), "{err}");
        assert!(err.to_string().contains(&made.active), "{err}");
    }

    #[test]
    fn a_replacement_must_hold_what_the_database_needs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let mut file = KeyFile::generate(0);
        let theirs = recorded(file.prints(), false);
        file.rotate(1);
        file.save(&path).unwrap();
        assert_eq!(replacement(&theirs, &path).unwrap().prints(), file.prints());

        KeyFile::generate(2).save(&path).unwrap();
        let err = replacement(&theirs, &path).unwrap_err();
        assert!(err.to_string().contains("not this database's"), "{err}");
    }
}
