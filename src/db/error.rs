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
