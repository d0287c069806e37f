//! The SQLite database: opening it with the durability settings wxauth relies on,
//! bringing its schema up to date, and the two ways in: reads on pooled read-only
//! connections, and writes through the single writer thread.

mod changes;
mod checkpointer;
mod connection;
mod error;
mod migrations;
pub mod needed_keys;
pub mod queries;
mod queue;
mod readers;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use rusqlite::config::DbConfig;

pub use changes::{ChangedRow, Changes, MAX_EXTERNAL_LAG, Mark};
use checkpointer::Checkpointer;
use connection::create_private;
pub use connection::{open_connection, open_existing};
pub use error::DbError;
pub use migrations::{SCHEMA_VERSION, migrate};
use readers::Readers;
use writer::Hooks;
pub use writer::{BatchObserver, Writer};

/// The most memory the writer's page cache may use, in KiB.
///
/// Not more: SQLite's page cache is scanned whole at the end of most batches. When a
/// page split leaves sibling pages out of order, SQLite swaps their numbers through a
/// page number no page ever has (the lock-byte page's, 262,145 with 4 KiB pages); the
/// cache then believes it may hold pages past the end of the file, and the commit walks
/// every cached page to drop them. A new user's openid, a random key, makes such splits
/// common. With 32 MiB the walk of some 8,000 pages took a sixth of the writer's time
/// once the cache had filled.
const WRITER_CACHE_KIB: i64 = 8 * 1024;

/// How often [`Db::watch_writes`] tries a write while the storage refuses them.
pub const WRITE_PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Who copies the write-ahead log into the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoints {
    /// A checkpoint thread of the server's own, shortly after commits.
    Own,
    /// Litestream, which replicates the log first (`litestream = true`): the server
    /// runs no checkpoint at all, not even when it closes.
    Litestream,
}

/// The database: one writer thread, a few reader threads and a checkpoint thread over
/// one file.
pub struct Db {
    path: PathBuf,
    readers: Readers,
    /// `None` when Litestream owns the checkpoints.
    checkpointer: Option<Arc<Checkpointer>>,
    changes: Arc<Changes>,
    writer: Writer,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

impl Db {
    /// Opens (creating if needed, mode 0600) and migrates the database at `path`, and
    /// starts its writer thread.
    pub fn open(path: &Path) -> Result<Arc<Db>, DbError> {
        Db::open_observed(path, Box::new(|_| {}))
    }

    /// Like [`Db::open`], calling `on_batch` with the size of every committed batch.
    pub fn open_observed(path: &Path, on_batch: BatchObserver) -> Result<Arc<Db>, DbError> {
        Db::open_with(path, on_batch, Checkpoints::Own)
    }

    /// Like [`Db::open_observed`], with `checkpoints` saying who copies the log into the
    /// database file.
    pub fn open_with(
        path: &Path,
        on_batch: BatchObserver,
        checkpoints: Checkpoints,
    ) -> Result<Arc<Db>, DbError> {
        create_private(path)?;
        let mut conn = open_connection(path, false)?;
        migrate(&mut conn)?;
        let autocheckpoint = match checkpoints {
            Checkpoints::Own => checkpointer::WRITER_AUTOCHECKPOINT,
            Checkpoints::Litestream => {
                // Litestream copies the log to its replica before it checkpoints; a
                // checkpoint behind its back makes it take a whole new snapshot, and
                // one that restarts the log can stall the writer behind its read lock.
                // Closing the last connection would checkpoint too.
                conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
                0
            }
        };
        conn.pragma_update(None, "wal_autocheckpoint", autocheckpoint)?;
        // A login inserts into several indexes at random places; with SQLite's default
        // 2 MiB cache most of those pages had to be read back from the file each time.
        // The cache fills only as pages are used, so an idle server stays small; see
        // WRITER_CACHE_KIB for why it is not larger.
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        let changes = Arc::new(Changes::default());
        look(&conn, &changes)?;
        // The rows a transaction touched, gathered as it runs and published once it has
        // committed; forgotten when it is rolled back whole, as none of them changed.
        // (The first run of a batch that is run again with savepoints leaves its rows for
        // the second, which is merely cautious.)
        let touched = Arc::new(Mutex::new(Vec::new()));
        let gather = Arc::clone(&touched);
        let forget = Arc::clone(&touched);
        conn.update_hook(Some(move |action, _: &str, table: &str, rowid| {
            if let Some(row) = ChangedRow::from_hook(action, table, rowid) {
                gather.lock().expect("touched rows poisoned").push(row);
            }
        }))?;
        let checkpointer = match checkpoints {
            Checkpoints::Own => Some(Arc::new(Checkpointer::start(path)?)),
            Checkpoints::Litestream => None,
        };
        let after_commit = checkpointer.clone();
        let publish = Arc::clone(&changes);
        Ok(Arc::new(Db {
            path: path.to_owned(),
            readers: Readers::start(path)?,
            checkpointer,
            changes,
            writer: Writer::start(
                conn,
                Hooks {
                    committed: Box::new(move |size| {
                        publish.committed(touched.lock().expect("touched rows poisoned").drain(..));
                        if let Some(checkpointer) = &after_commit {
                            checkpointer.committed();
                        }
                        on_batch(size);
                    }),
                    rolled_back: Box::new(move || {
                        forget.lock().expect("touched rows poisoned").clear();
                    }),
                },
            ),
        }))
    }

    /// What the server changed, for copies of rows kept in memory.
    pub fn changes(&self) -> &Arc<Changes> {
        &self.changes
    }

    /// Has the writer look for other processes' commits (see [`Changes`]) between two
    /// of its transactions.
    pub async fn look_for_other_commits(&self) -> Result<(), DbError> {
        let changes = Arc::clone(&self.changes);
        self.writer.between(move |c| look(c, &changes)).await
    }

    /// Looks for other processes' commits every [`changes::LOOK_INTERVAL`] while copies
    /// of rows are being asked for (see [`Changes`]). Runs until aborted.
    pub async fn watch_other_commits(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(changes::LOOK_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if self.changes.look_wanted()
                && let Err(e) = self.look_for_other_commits().await
            {
                tracing::warn!(error = %e, "cannot look for other processes' commits");
            }
        }
    }

    /// Whether writes commit: false from a write the storage refused (the disk is full,
    /// an I/O error) until a probe ([`Db::probe_writes`]) succeeds. Costs an atomic load.
    pub fn takes_writes(&self) -> bool {
        !self.writer.failing()
    }

    /// Learns whether the storage takes writes again: first whether the file system
    /// has [`PROBE_ROOM`] to spare, then with a commit that changes nothing but reaches
    /// the disk. That commit's success, and only that, ends a failing episode.
    pub async fn probe_writes(&self) -> Result<(), DbError> {
        let path = probe_path(&self.path);
        tokio::task::spawn_blocking(move || probe_room(&path))
            .await
            .map_err(|e| DbError::Task(e.to_string()))?
            .map_err(|e| DbError::Unavailable(format!("no room to write: {e}")))?;
        self.writer.probe().await
    }

    /// While writes fail, probes every [`WRITE_PROBE_INTERVAL`] (see
    /// [`Db::probe_writes`]): only a probe ends the episode, and readiness returns once
    /// the storage does, even when no request writes (a load balancer sends none to a
    /// server that is not ready). Runs until aborted.
    pub async fn watch_writes(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(WRITE_PROBE_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if !self.takes_writes() {
                // A failure is the episode's, already logged.
                let _ = self.probe_writes().await;
            }
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a read-only connection on a reader thread, so the async runtime never
    /// waits on SQLite. Reads never wait for the writer (WAL).
    pub async fn read<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        self.readers.read(f).await
    }

    /// Runs `f` in the writer's next transaction and returns once that transaction is
    /// durably committed. If `f` fails, only its own changes are rolled back. `f` may run
    /// a second time when another write of its batch failed; the result and the changes
    /// of its last run are the ones that count, so it must not consume what it captured.
    pub async fn write<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        self.writer.submit(f).await
    }

    /// Queues `f` without waiting for it; for bookkeeping that may be lost (such as
    /// `last_seen_at`) and must not slow the request down.
    pub fn write_detached<F>(&self, f: F)
    where
        F: FnMut(&Connection) -> Result<(), DbError> + Send + 'static,
    {
        self.writer.submit_detached(f);
    }

    /// Finishes queued writes and stops the writer; later writes fail.
    pub async fn close(&self) {
        // Readers and the checkpoint thread go first, so the writer's connection is the
        // last one and its close checkpoints the WAL into the database file and removes it.
        self.readers.stop().await;
        if let Some(checkpointer) = self.checkpointer.clone() {
            let _ = tokio::task::spawn_blocking(move || checkpointer.stop()).await;
        }
        self.writer.stop().await;
    }
}

/// The room [`Db::probe_writes`] asks of the file system. A commit of one page is not
/// proof enough: a failed commit leaves its partly written frames in the log, and the
/// next commit overwrites them, so a page fits where no login does, and readiness
/// would come back and go again with every probe. A mebibyte holds the log of a busy
/// batch.
pub const PROBE_ROOM: usize = 1 << 20;

/// The file [`probe_room`] writes, beside the database as its log is.
fn probe_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-probe");
    PathBuf::from(name)
}

/// Writes and syncs [`PROBE_ROOM`] bytes to `path`, then removes it whatever happened.
fn probe_room(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| {
            file.write_all(&vec![0; PROBE_ROOM])?;
            file.sync_data()
        });
    let removed = match std::fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        removed => removed,
    };
    written.and(removed)
}

/// Reads the writer connection's `data_version`, outside any transaction, into `changes`.
fn look(conn: &Connection, changes: &Changes) -> Result<(), DbError> {
    // Taken first: every commit made before this instant is in the value read next.
    let began = std::time::Instant::now();
    let data_version = conn.pragma_query_value(None, "data_version", |r| r.get(0))?;
    changes.looked(data_version, began);
    Ok(())
}

/// Inserts a user with nothing but `public_id`, for tests of the database machinery
/// that need a row to write.
#[cfg(test)]
pub(crate) fn insert_test_user(conn: &Connection, public_id: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO users (public_id, created_at, updated_at) VALUES (?1, 0, 0)",
        [public_id],
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use rusqlite::OptionalExtension;

    use super::*;

    /// Reads run in batches inside one read transaction; none may see a snapshot from
    /// before a write that was acknowledged before the read was asked for.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_read_sees_the_writes_acknowledged_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let mut reads = Vec::new();
        for i in 1..=300i64 {
            db.write(move |c| {
                insert_test_user(c, &format!("u{i}"))?;
                Ok(())
            })
            .await
            .unwrap();
            // Several reads at once, so that readers take them off the queue together.
            for _ in 0..4 {
                let db = Arc::clone(&db);
                reads.push(tokio::spawn(async move {
                    let seen: i64 = db
                        .read(|c| Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?))
                        .await
                        .unwrap();
                    (i, seen)
                }));
            }
        }
        for read in reads {
            let (written, seen) = read.await.unwrap();
            assert!(
                seen >= written,
                "a read after write {written} saw only {seen} rows"
            );
        }
        db.close().await;
    }

    #[tokio::test]
    async fn a_new_database_is_private_versioned_and_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::open(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        db.read(|c| {
            let v: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
            assert_eq!(v, SCHEMA_VERSION);
            let mode: String = c.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
            assert_eq!(mode, "wal");
            let sync: i64 = c.pragma_query_value(None, "synchronous", |r| r.get(0))?;
            assert_eq!(sync, 2, "synchronous=FULL");
            let fk: i64 = c.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
            assert_eq!(fk, 1);
            Ok(())
        })
        .await
        .unwrap();
        db.close().await;
        drop(db);
        // Opening again leaves the schema alone.
        Db::open(&path).unwrap().close().await;
    }

    #[test]
    fn a_new_binding_reuses_the_prepared_plan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(Db::open(&path).unwrap());
        let conn = open_connection(&path, true).unwrap();
        let sql = "SELECT s.id, u.id FROM sessions s JOIN users u ON u.id = s.user_id \
                   WHERE s.secret_hash = ?1";
        for key in [[1u8; 32], [2; 32], [3; 32]] {
            let mut stmt = conn.prepare_cached(sql).unwrap();
            let found = stmt.query_row([&key[..]], |_| Ok(())).optional().unwrap();
            assert!(found.is_none());
        }
        let stmt = conn.prepare_cached(sql).unwrap();
        assert_eq!(
            stmt.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "the statement was prepared again for a new binding"
        );
    }

    #[test]
    fn the_room_probe_leaves_nothing_behind_and_fails_where_it_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let probe = probe_path(&dir.path().join("t.db"));
        assert_eq!(probe, dir.path().join("t.db-probe"));
        probe_room(&probe).unwrap();
        assert!(!probe.exists());
        assert!(probe_room(&dir.path().join("missing").join("t.db-probe")).is_err());
    }

    #[test]
    fn a_newer_database_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let err = Db::open(&path).unwrap_err();
        assert!(matches!(err, DbError::TooNew { .. }), "{err}");
        assert!(err.to_string().contains("newer than this wxauth"));
    }

    #[test]
    fn admin_commands_do_not_migrate_beneath_a_running_server() {
        let dir = tempfile::tempdir().unwrap();
        // A database at version 0 stands in for one older than this build.
        Connection::open(dir.path().join(crate::datadir::DATABASE_FILE)).unwrap();
        let held = crate::datadir::try_lock(dir.path()).unwrap().unwrap();
        let err = open_existing(dir.path()).unwrap_err();
        assert!(
            matches!(err, DbError::ServerOlder { found: 0, .. }),
            "{err}"
        );
        drop(held);
        let conn = open_existing(dir.path()).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn admin_commits_beside_a_running_server_outwait_its_copies() {
        use std::time::Instant;
        let dir = tempfile::tempdir().unwrap();
        let conn = open_existing_after_creating(dir.path());
        let started = Instant::now();
        insert_test_user(&conn, "u_alone").unwrap();
        assert!(started.elapsed() < MAX_EXTERNAL_LAG, "no server, no wait");

        let _server = crate::datadir::try_lock(dir.path()).unwrap().unwrap();
        let started = Instant::now();
        insert_test_user(&conn, "u_served").unwrap();
        assert!(started.elapsed() >= MAX_EXTERNAL_LAG);
        let started = Instant::now();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
        assert!(started.elapsed() < MAX_EXTERNAL_LAG, "reads never wait");
    }

    fn open_existing_after_creating(dir: &Path) -> Connection {
        let mut conn = Connection::open(dir.join(crate::datadir::DATABASE_FILE)).unwrap();
        migrate(&mut conn).unwrap();
        open_existing(dir).unwrap()
    }

    /// With Litestream owning checkpoints, nothing of the server's copies the log into
    /// the database file: not after commits, not when the server closes.
    #[tokio::test]
    async fn with_litestream_the_server_never_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let wal = dir.path().join("t.db-wal");
        let db = Db::open_with(&path, Box::new(|_| {}), Checkpoints::Litestream).unwrap();
        let size_before = std::fs::metadata(&path).unwrap().len();
        for i in 0..200 {
            db.write(move |c| Ok(insert_test_user(c, &format!("u{i}"))?))
                .await
                .unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size_before);
        db.close().await;
        assert!(
            std::fs::metadata(&wal).unwrap().len() > 0,
            "the log is left for Litestream"
        );
        let conn = Connection::open(&path).unwrap();
        let users: i64 = conn
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(users, 200, "what the log holds is still read");

        // The server's own checkpoints copy the log and close it.
        let own = dir.path().join("own.db");
        let db = Db::open(&own).unwrap();
        db.write(|c| Ok(insert_test_user(c, "u")?)).await.unwrap();
        db.close().await;
        assert!(!dir.path().join("own.db-wal").exists());
    }
}
