//! Opening connections with the settings wxauth relies on: WAL, `synchronous=FULL`,
//! foreign keys, a busy timeout; and the extra connection the admin commands use beside a
//! running server.

use std::path::Path;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

use super::changes::MAX_EXTERNAL_LAG;
use super::error::DbError;
use super::migrations::{SCHEMA_VERSION, migrate};

/// Creates the database file if it is missing, readable by its owner alone.
pub(super) fn create_private(path: &Path) -> Result<(), DbError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file_err = |source| DbError::File {
        path: path.to_owned(),
        source,
    };
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(file_err)?;
    crate::datadir::restrict_file(path).map_err(file_err)
}

/// Opens the existing database of `data_dir` as one more connection, for the admin
/// commands that work beside a running server. While one runs, each commit on this
/// connection returns only after [`MAX_EXTERNAL_LAG`], once the server has stopped using
/// any copy of rows read before it (see [`Changes`]): the next request sees the change.
pub fn open_existing(data_dir: &Path) -> Result<Connection, DbError> {
    let path = data_dir.join(crate::datadir::DATABASE_FILE);
    if !path.exists() {
        return Err(DbError::NoDatabase(data_dir.to_owned()));
    }
    let mut conn = open_connection(&path, false)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    // Upgrading the schema beneath a running older server would change the tables it
    // relies on; only a data directory no server holds is migrated here.
    let _lock = if version < SCHEMA_VERSION {
        let held = crate::datadir::try_lock(data_dir).map_err(|source| DbError::File {
            path: data_dir.to_owned(),
            source,
        })?;
        Some(held.ok_or(DbError::ServerOlder {
            found: version,
            supported: SCHEMA_VERSION,
        })?)
    } else {
        None
    };
    migrate(&mut conn)?;
    // SQLite calls this after every commit, once the write lock is released. It replaces
    // the connection's automatic checkpoints, which the running server does instead (and
    // the last connection to close does anyway).
    let dir = data_dir.to_owned();
    conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, _| {
        if let Ok(None) = crate::datadir::try_lock(&dir) {
            std::thread::sleep(MAX_EXTERNAL_LAG);
        }
        Ok(())
    }))?;
    Ok(conn)
}

/// Opens one connection with the settings every connection needs.
pub fn open_connection(path: &Path, read_only: bool) -> Result<Connection, DbError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    configure(&conn, read_only)?;
    Ok(conn)
}

/// Applies the settings every connection needs.
fn configure(conn: &Connection, read_only: bool) -> Result<(), DbError> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    // SQLite may let a plan depend on a bound value (it does for the session lookup's
    // join); such a statement is prepared again whenever its bindings are cleared, which
    // rusqlite's statement cache does on every reuse, and that costs several times the
    // lookup itself. The planner stability guarantee turns value-dependent plans off; no
    // query of wxauth needs one.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    if !read_only {
        // WAL lets readers work while the writer commits; FULL makes every commit
        // durable, so an acknowledged write survives a crash or a power cut.
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // A batch holding a failed write runs each write in a savepoint, whose statement
    // journal is a temporary file unless temporary storage lives in memory: a write
    // system call per page the write touched.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

/// Runs one statement without parameters from the connection's statement cache: the
/// savepoint statements run for every write of a batch that holds a failure, and parsing
/// them anew each time showed in profiles.
pub(super) fn run_sql(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}
