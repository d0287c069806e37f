//! The one owner of database writes: a thread holding the write connection, fed through
//! a channel. It takes every write that is waiting, runs them all inside one
//! `BEGIN IMMEDIATE` transaction, commits once, and only then answers the callers. One
//! fsync thus covers a whole batch (group commit), and an answer always means the write
//! is durable.
//!
//! A write that fails must leave no trace while the others in its batch commit. The
//! batch is first run without savepoints: almost every write succeeds, and a savepoint
//! per write cost two statements and a copy of every page it touched first (about a
//! tenth of the writer's time per login). When a write does fail, the batch is rolled
//! back and run again with each write inside its own savepoint, so the failing one is
//! undone alone. That is why writes are `FnMut`: one may run twice, and only the effects
//! of its last run are kept.
//!
//! Between batches the writer also runs what must see its connection's own view of the
//! file outside any transaction: the looks for other processes' commits (see
//! [`Changes`](super::Changes)).
//!
//! When the storage refuses a batch (the disk is full, an I/O error), the whole batch is
//! rolled back and every write in it answers [`DbError::Unavailable`]: nothing of it
//! happened. The writer then counts itself failing, which readiness reports, until a
//! probe (see [`Db::probe_writes`](super::Db::probe_writes)) commits. Writes that
//! commit meanwhile are answered as usual but do not end the episode: on a nearly full
//! disk a small commit fits where the next one does not, and readiness would come and
//! go with each. The episode is logged once as it starts and once as it ends, not once
//! per write.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::connection::run_sql;
use super::error::{DbError, storage_failure};
use super::queue::{self, next_batch};

/// The most writes one transaction carries; bounds how long a batch holds the lock.
const MAX_BATCH: usize = 256;
/// Writes that may wait in the queue before callers wait to enqueue.
const QUEUE_DEPTH: usize = 4096;

/// One queued write.
trait Job: Send {
    /// Runs the write's statements; how that went. A later run replaces the outcome of
    /// an earlier one, whose statements were rolled back.
    fn run(&mut self, conn: &Connection) -> Ran;
    /// Tells the caller the outcome, once its batch has committed or failed to.
    fn answer(self: Box<Self>, batch: &Result<(), Failure>);
    /// Whether this is the probe of [`Writer::probe`], whose commit ends a failing
    /// episode.
    fn proves_writes(&self) -> bool;
}

/// How one run of a write went.
enum Ran {
    Ok,
    /// The write failed by itself: its changes are undone, the others' may commit.
    Failed,
    /// The storage refused it (see [`DbError::storage_unavailable`]); no write of the
    /// batch can commit.
    StorageFailed(String),
}

/// Why a batch was not committed.
#[derive(Debug)]
enum Failure {
    /// The storage refused it: the disk is full, or an I/O error.
    Storage(String),
    /// Anything else, already logged.
    Other,
}

impl Failure {
    /// The error the batch's writes answer with, unless they failed by themselves.
    fn error(&self) -> DbError {
        match self {
            Failure::Storage(cause) => DbError::Unavailable(cause.clone()),
            Failure::Other => DbError::NotCommitted,
        }
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Failure {
        if storage_failure(&e) {
            Failure::Storage(e.to_string())
        } else {
            tracing::error!(error = %e, "a write transaction failed; the batch is rolled back");
            Failure::Other
        }
    }
}

/// A write and, once run, its outcome; `reply` is `None` for a write nobody waits for.
struct Pending<T, F> {
    write: F,
    outcome: Option<Result<T, DbError>>,
    reply: Option<oneshot::Sender<Result<T, DbError>>>,
    probe: bool,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: FnMut(&Connection) -> Result<T, DbError> + Send,
{
    fn run(&mut self, conn: &Connection) -> Ran {
        let outcome = catch_unwind(AssertUnwindSafe(|| (self.write)(conn)))
            .unwrap_or_else(|_| Err(DbError::Task("a write panicked".into())));
        let ran = match &outcome {
            Ok(_) => Ran::Ok,
            Err(e) if e.storage_unavailable() => Ran::StorageFailed(e.to_string()),
            Err(_) => Ran::Failed,
        };
        self.outcome = Some(outcome);
        ran
    }

    fn answer(self: Box<Self>, batch: &Result<(), Failure>) {
        let outcome = match (self.outcome, batch) {
            // A write that failed by itself says why, whatever became of its batch.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(failure)) => Err(failure.error()),
            (None, Ok(())) => Err(DbError::Task("the write did not run".into())),
        };
        match self.reply {
            Some(reply) => {
                let _ = reply.send(outcome);
            }
            None => match outcome {
                // The episode is logged once, by the writer.
                Err(e) if !e.storage_unavailable() => {
                    tracing::warn!(error = %e, "background write failed");
                }
                _ => {}
            },
        }
    }

    fn proves_writes(&self) -> bool {
        self.probe
    }
}

/// Called on the writer thread with the number of writes in each committed batch.
pub type BatchObserver = Box<dyn Fn(usize) + Send>;

/// What the writer takes off its queue.
enum Work {
    /// A write, for the next batch.
    Write(Box<dyn Job>),
    /// Something to run on the connection before that batch, outside any transaction.
    Between(Box<dyn FnOnce(&Connection) + Send>),
}

type Msg = queue::Msg<Work>;

/// The handle to the writer thread.
pub struct Writer {
    queue: mpsc::Sender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Set while the storage refuses writes: from a batch it refused until a probe
    /// commits.
    failing: Arc<AtomicBool>,
}

/// What the writer tells its owner about each batch, on its thread, before the batch's
/// callers are answered.
pub(super) struct Hooks {
    /// A batch of this many writes committed.
    pub committed: BatchObserver,
    /// A batch was rolled back whole: none of its changes happened.
    pub rolled_back: Box<dyn Fn() + Send>,
}

/// A stretch of time in which the storage refused writes.
struct Episode {
    since: Instant,
    refused: usize,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(super) fn start(conn: Connection, hooks: Hooks) -> Writer {
        let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
        let failing = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&failing);
        let thread = std::thread::Builder::new()
            .name("wxauth-writer".into())
            .spawn(move || run(conn, rx, hooks, &flag))
            .expect("cannot start the database writer thread");
        Writer {
            queue,
            thread: Mutex::new(Some(thread)),
            failing,
        }
    }

    /// Whether the storage refused a batch and no probe has committed since.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Commits a write of the smallest kind (the header page, unchanged): whether the
    /// storage takes writes now. Its commit ends a failing episode.
    pub async fn probe(&self) -> Result<(), DbError> {
        self.queue_write(
            |c: &Connection| {
                let version: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
                c.pragma_update(None, "user_version", version)?;
                Ok(())
            },
            true,
        )
        .await
    }

    /// Queues `f` and waits until its transaction has committed. `f` may run twice (see
    /// the module's documentation); only its last run's changes and result count.
    pub async fn submit<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        self.queue_write(f, false).await
    }

    async fn queue_write<T, F>(&self, f: F, probe: bool) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = Pending {
            write: f,
            outcome: None,
            reply: Some(tx),
            probe,
        };
        self.queue
            .send(Msg::Job(Work::Write(Box::new(job))))
            .await
            .map_err(|_| DbError::WriterStopped)?;
        rx.await.map_err(|_| DbError::WriterStopped)?
    }

    /// Runs `f` on the writer's connection between two batches, outside any
    /// transaction, and returns its result.
    pub async fn between<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let work = Work::Between(Box::new(move |conn| {
            let result = catch_unwind(AssertUnwindSafe(|| f(conn)))
                .unwrap_or_else(|_| Err(DbError::Task("a task between writes panicked".into())));
            let _ = tx.send(result);
        }));
        self.queue
            .send(Msg::Job(work))
            .await
            .map_err(|_| DbError::WriterStopped)?;
        rx.await.map_err(|_| DbError::WriterStopped)?
    }

    /// Queues `f` if there is room, without waiting for it.
    pub fn submit_detached<F>(&self, f: F)
    where
        F: FnMut(&Connection) -> Result<(), DbError> + Send + 'static,
    {
        let job = Pending {
            write: f,
            outcome: None,
            reply: None,
            probe: false,
        };
        let _ = self.queue.try_send(Msg::Job(Work::Write(Box::new(job))));
    }

    /// Lets queued writes finish, then stops the thread and closes the connection.
    pub async fn stop(&self) {
        let Some(thread) = self.thread.lock().expect("writer handle poisoned").take() else {
            return;
        };
        if self.queue.send(Msg::Stop).await.is_ok() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn run(conn: Connection, mut rx: mpsc::Receiver<Msg>, hooks: Hooks, failing: &AtomicBool) {
    let mut taken: Vec<Work> = Vec::with_capacity(MAX_BATCH);
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    let mut episode = None;
    while let Some(stop) = next_batch(&mut rx, &mut taken, MAX_BATCH) {
        for work in taken.drain(..) {
            match work {
                Work::Write(job) => batch.push(job),
                Work::Between(f) => f(&conn),
            }
        }
        if !batch.is_empty() {
            commit_batch(&conn, &mut batch, &hooks, failing, &mut episode);
        }
        if stop {
            break;
        }
    }
    // Writes queued behind the stop request are refused rather than left hanging.
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        if let Msg::Job(work) = msg {
            drop(work);
        }
    }
    if let Err((_, e)) = conn.close() {
        tracing::error!(error = %e, "closing the database failed");
    }
}

/// Runs and commits one batch; the hooks hear of it before the callers are answered.
fn commit_batch(
    conn: &Connection,
    batch: &mut Vec<Box<dyn Job>>,
    hooks: &Hooks,
    failing: &AtomicBool,
    episode: &mut Option<Episode>,
) {
    let size = batch.len();
    let ended = run_batch(conn, batch).and_then(|()| Ok(conn.execute_batch("COMMIT")?));
    tracing::trace!(size, committed = ended.is_ok(), "write batch");
    match &ended {
        Ok(()) => {
            (hooks.committed)(size);
            if episode.is_some()
                && batch.iter().any(|job| job.proves_writes())
                && let Some(ended) = episode.take()
            {
                failing.store(false, Ordering::Relaxed);
                tracing::info!(
                    refused = ended.refused,
                    lasted_ms = ended.since.elapsed().as_millis() as u64,
                    "the database takes writes again"
                );
            }
        }
        Err(failure) => {
            if roll_back(conn) {
                (hooks.rolled_back)();
            }
            if let Failure::Storage(cause) = failure {
                match episode {
                    Some(episode) => episode.refused += size,
                    None => {
                        tracing::error!(
                            error = %cause,
                            "the database cannot take writes (is the disk full?); writes \
                             answer storage_unavailable until there is room again"
                        );
                        *episode = Some(Episode {
                            since: Instant::now(),
                            refused: size,
                        });
                        failing.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
    }
    for job in batch.drain(..) {
        job.answer(&ended);
    }
}

/// Ends the transaction a failed batch left open, if any; whether none is open now.
fn roll_back(conn: &Connection) -> bool {
    if !conn.is_autocommit()
        && let Err(e) = conn.execute_batch("ROLLBACK")
    {
        tracing::error!(error = %e, "cannot roll back a failed write transaction");
    }
    conn.is_autocommit()
}

/// Runs every write of `batch` inside one open transaction, each write's changes kept
/// only if it succeeded. A write the storage refused ends the batch: no other write
/// could commit either.
fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<(), Failure> {
    // A transaction an earlier failure left open (its rollback failed too) goes first:
    // its writes were answered as failed, so it must never commit.
    if !roll_back(conn) {
        return Err(Failure::Other);
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    // Runs until the first failure; the writes after it have not run yet.
    let mut failed = false;
    for job in batch.iter_mut() {
        match job.run(conn) {
            Ran::Ok => {}
            Ran::Failed => {
                failed = true;
                break;
            }
            Ran::StorageFailed(cause) => return Err(Failure::Storage(cause)),
        }
    }
    if !failed {
        return Ok(());
    }
    conn.execute_batch("ROLLBACK")?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    for job in batch.iter_mut() {
        run_sql(conn, "SAVEPOINT write")?;
        match job.run(conn) {
            Ran::Ok => {}
            Ran::Failed => run_sql(conn, "ROLLBACK TO write")?,
            Ran::StorageFailed(cause) => return Err(Failure::Storage(cause)),
        }
        run_sql(conn, "RELEASE write")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::db::Db;

    use super::*;

    fn counter_db() -> (tempfile::TempDir, Arc<Db>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        (dir, db)
    }

    /// Five writes in one batch, the third failing after its insert: the batch runs
    /// again with savepoints, and the others commit exactly once (a second insert of the
    /// same user would break its unique id).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_with_a_failing_write_runs_again_and_keeps_the_others_once() {
        let dir = tempfile::tempdir().unwrap();
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&sizes);
        let db = Db::open_observed(
            &dir.path().join("t.db"),
            Box::new(move |size| seen.lock().unwrap().push(size)),
        )
        .unwrap();

        // Hold the writer until the five writes are queued behind it.
        let (started, has_started) = std::sync::mpsc::channel();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = Mutex::new(wait);
        let holder = {
            let db = Arc::clone(&db);
            tokio::spawn(async move {
                db.write(move |_| {
                    started.send(()).unwrap();
                    wait.lock().unwrap().recv().unwrap();
                    Ok(())
                })
                .await
            })
        };
        tokio::task::spawn_blocking(move || has_started.recv().unwrap())
            .await
            .unwrap();
        let runs = Arc::new(Mutex::new(vec![0; 5]));
        let mut writes = Vec::new();
        for i in 0..5 {
            let (db, runs) = (Arc::clone(&db), Arc::clone(&runs));
            writes.push(tokio::spawn(async move {
                db.write(move |c| {
                    runs.lock().unwrap()[i] += 1;
                    crate::db::insert_test_user(c, &format!("u{i}"))?;
                    if i == 2 {
                        c.execute("INSERT INTO users (id) VALUES (NULL)", [])?;
                    }
                    Ok(c.last_insert_rowid())
                })
                .await
            }));
            // Most likely in order, so that the failing write follows two that succeed.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        let mut outcomes = Vec::new();
        for write in writes {
            outcomes.push(write.await.unwrap());
        }

        assert_eq!(sizes.lock().unwrap().as_slice(), [1, 5]);
        // The first pass ran the writes up to the failing one; the second ran them all.
        let runs = runs.lock().unwrap().clone();
        assert_eq!(runs[2], 2, "{runs:?}");
        assert!(runs.iter().all(|&n| n == 1 || n == 2), "{runs:?}");
        assert!(outcomes[2].is_err());
        let ids: Vec<i64> = [0, 1, 3, 4]
            .iter()
            .map(|&i| *outcomes[i].as_ref().unwrap())
            .collect();
        let stored: Vec<i64> = db
            .read(|c| {
                let mut stmt = c.prepare("SELECT id FROM users ORDER BY id")?;
                let ids = stmt
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                Ok(ids)
            })
            .await
            .unwrap();
        assert_eq!(
            stored, ids,
            "each answer names the row its last run inserted"
        );
        db.close().await;
    }

    /// Holds the writer inside a write until the returned sender is used, so that the
    /// writes queued meanwhile form one batch.
    async fn hold_writer(
        db: &Arc<Db>,
    ) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (started, has_started) = std::sync::mpsc::channel();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = Mutex::new(wait);
        let holder = {
            let db = Arc::clone(db);
            tokio::spawn(async move {
                db.write(move |_| {
                    started.send(()).unwrap();
                    wait.lock().unwrap().recv().unwrap();
                    Ok(())
                })
                .await
                .unwrap();
            })
        };
        tokio::task::spawn_blocking(move || has_started.recv().unwrap())
            .await
            .unwrap();
        (release, holder)
    }

    /// SQLite answers SQLITE_FULL when the file would grow past `max_page_count`, as it
    /// does when the disk is full.
    fn limit_pages(c: &Connection, pages: Option<i64>) -> Result<(), DbError> {
        let pages = match pages {
            Some(pages) => pages,
            None => c.query_row("PRAGMA page_count", [], |r| r.get(0))?,
        };
        c.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
        Ok(())
    }

    /// A batch the storage refuses changes nothing, and each of its writes says the
    /// storage is unavailable, whichever failed first; the writer then counts itself
    /// failing, and survives to commit again once the storage takes writes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_batch_changes_nothing_and_the_writer_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&sizes);
        let db = Db::open_observed(
            &dir.path().join("t.db"),
            Box::new(move |size| seen.lock().unwrap().push(size)),
        )
        .unwrap();
        db.write(|c| {
            c.execute_batch("CREATE TABLE t (v BLOB)")?;
            Ok(())
        })
        .await
        .unwrap();
        db.write(|c| limit_pages(c, None)).await.unwrap();
        assert!(db.takes_writes());
        sizes.lock().unwrap().clear();

        let (release, holder) = hold_writer(&db).await;
        let mut writes = Vec::new();
        for size in [10, 100_000, 10] {
            let db = Arc::clone(&db);
            writes.push(tokio::spawn(async move {
                db.write(move |c| {
                    c.execute("INSERT INTO t VALUES (randomblob(?1))", [size])?;
                    Ok(())
                })
                .await
            }));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        release.send(()).unwrap();
        holder.await.unwrap();
        for write in writes {
            let err = write.await.unwrap().unwrap_err();
            assert!(err.storage_unavailable(), "{err}");
        }
        assert_eq!(
            sizes.lock().unwrap().as_slice(),
            [1],
            "only the holder committed"
        );
        let rows = |db: Arc<Db>| async move {
            db.read(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))?))
                .await
                .unwrap()
        };
        assert_eq!(rows(Arc::clone(&db)).await, 0);
        assert!(!db.takes_writes());

        db.write(|c| limit_pages(c, Some(1_000_000))).await.unwrap();
        assert!(!db.takes_writes(), "only a probe ends the episode");
        db.probe_writes().await.unwrap();
        assert!(db.takes_writes());
        db.write(|c| {
            c.execute("INSERT INTO t VALUES (randomblob(100000))", [])?;
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(rows(Arc::clone(&db)).await, 1);
        db.close().await;
    }

    /// Every write the storage refuses says so. A write that commits meanwhile is
    /// answered, but the episode lasts until a probe commits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_a_probe_ends_an_episode() {
        let (_dir, db) = counter_db();
        db.write(|c| {
            c.execute_batch("CREATE TABLE t (v BLOB)")?;
            limit_pages(c, None)
        })
        .await
        .unwrap();
        for _ in 0..3 {
            let err = db
                .write(|c| {
                    c.execute("INSERT INTO t VALUES (randomblob(100000))", [])?;
                    Ok(())
                })
                .await
                .unwrap_err();
            assert!(err.storage_unavailable(), "{err}");
            assert!(!db.takes_writes());
        }
        db.write(|c| limit_pages(c, Some(1_000_000))).await.unwrap();
        db.write(|c| {
            c.execute("INSERT INTO t VALUES (randomblob(100000))", [])?;
            Ok(())
        })
        .await
        .unwrap();
        assert!(
            !db.takes_writes(),
            "one commit on a nearly full disk proves little"
        );
        db.probe_writes().await.unwrap();
        assert!(db.takes_writes());
        db.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_all_commit_and_a_failure_rolls_back_only_itself() {
        let (_dir, db) = counter_db();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let db = Arc::clone(&db);
            tasks.push(tokio::spawn(async move {
                db.write(move |c| {
                    crate::db::insert_test_user(c, &format!("u{i}"))?;
                    if i % 10 == 0 {
                        // Fails after its insert: the insert must be undone.
                        c.execute("INSERT INTO users (id) VALUES (NULL)", [])?;
                    }
                    Ok(i)
                })
                .await
            }));
        }
        let mut failed = 0;
        for task in tasks {
            if task.await.unwrap().is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 20);
        let count: i64 = db
            .read(|c| Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(count, 180);
        db.close().await;
        assert!(matches!(
            db.write(|_| Ok(())).await,
            Err(DbError::WriterStopped)
        ));
    }
}
