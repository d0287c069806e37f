//! What can go wrong with the database, in one type that every part of storage returns.

use std::path::PathBuf;

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "the database is at schema version {found}, newer than this wxauth understands \
         ({supported}); run a newer wxauth or restore a backup"
    )]
    TooNew { found: i64, supported: i64 },
    #[error("cannot prepare the database file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot bring the database to schema version {version}: {reason}")]
    Migration { version: i64, reason: String },
    #[error("the write was not committed")]
    NotCommitted,
    /// The write could not be committed because the storage refused it (the disk is
    /// full, or an I/O error); it changed nothing, and a later write may succeed.
    #[error("the database cannot take writes now: {0}")]
    Unavailable(String),
    #[error("the database writer has stopped")]
    WriterStopped,
    #[error("a database task failed: {0}")]
    Task(String),
    #[error("no wxauth database in {0}; start `wxauth serve` with this data directory first")]
    NoDatabase(PathBuf),
    #[error(
        "the running server uses schema version {found}, older than this wxauth's \
         ({supported}); restart the server with this wxauth first"
    )]
    ServerOlder { found: i64, supported: i64 },
}

impl DbError {
    /// Whether this failure is the storage's, not the request's nor the server's: the
    /// disk is full or an I/O error stopped SQLite. Nothing was changed, and the same
    /// request may succeed once the storage recovers.
    pub fn storage_unavailable(&self) -> bool {
        match self {
            DbError::Unavailable(_) => true,
            DbError::Sqlite(e) => storage_failure(e),
            _ => false,
        }
    }
}

/// Whether SQLite failed because the storage beneath it did: the disk (or the
/// filesystem's quota) is full, or reading, writing or syncing a file failed.
pub(super) fn storage_failure(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{DiskFull, SystemIoFailure};
    matches!(e.sqlite_error_code(), Some(DiskFull | SystemIoFailure))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: i32) -> DbError {
        DbError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        ))
    }

    #[test]
    fn a_full_disk_and_io_errors_are_the_storage_s_failures() {
        use rusqlite::ffi;
        for code in [
            ffi::SQLITE_FULL,
            ffi::SQLITE_IOERR,
            ffi::SQLITE_IOERR_WRITE,
            ffi::SQLITE_IOERR_FSYNC,
            ffi::SQLITE_IOERR_SHMSIZE,
        ] {
            assert!(sqlite(code).storage_unavailable(), "{code}");
        }
        assert!(DbError::Unavailable("disk full".into()).storage_unavailable());
        for code in [
            ffi::SQLITE_CONSTRAINT_UNIQUE,
            ffi::SQLITE_BUSY,
            ffi::SQLITE_CORRUPT,
        ] {
            assert!(!sqlite(code).storage_unavailable(), "{code}");
        }
        assert!(!DbError::NotCommitted.storage_unavailable());
        assert!(!DbError::WriterStopped.storage_unavailable());
    }
}
