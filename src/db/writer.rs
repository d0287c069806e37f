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

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::connection::run_sql;
use super::error::DbError;
use super::queue::{self, next_batch};

/// The most writes one transaction carries; bounds how long a batch holds the lock.
const MAX_BATCH: usize = 256;
/// Writes that may wait in the queue before callers wait to enqueue.
const QUEUE_DEPTH: usize = 4096;

/// One queued write.
trait Job: Send {
    /// Runs the write's statements; whether it succeeded. A later run replaces the
    /// outcome of an earlier one, whose statements were rolled back.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Tells the caller the outcome, once its batch has committed or failed to.
    fn answer(self: Box<Self>, committed: bool);
}

/// A write and, once run, its outcome; `reply` is `None` for a write nobody waits for.
struct Pending<T, F> {
    write: F,
    outcome: Option<Result<T, DbError>>,
    reply: Option<oneshot::Sender<Result<T, DbError>>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: FnMut(&Connection) -> Result<T, DbError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let outcome = catch_unwind(AssertUnwindSafe(|| (self.write)(conn)))
            .unwrap_or_else(|_| Err(DbError::Task("a write panicked".into())));
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn answer(self: Box<Self>, committed: bool) {
        let outcome = self
            .outcome
            .unwrap_or_else(|| Err(DbError::Task("the write did not run".into())));
        let outcome = if committed {
            outcome
        } else {
            outcome.and(Err(DbError::NotCommitted))
        };
        match self.reply {
            Some(reply) => {
                let _ = reply.send(outcome);
            }
            None => {
                if let Err(e) = outcome {
                    tracing::warn!(error = %e, "background write failed");
                }
            }
        }
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
}

impl Writer {
    /// Starts the writer thread on `conn`; `on_batch` hears of every committed batch.
    pub fn start(conn: Connection, on_batch: BatchObserver) -> Writer {
        let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("wxauth-writer".into())
            .spawn(move || run(conn, rx, on_batch))
            .expect("cannot start the database writer thread");
        Writer {
            queue,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Queues `f` and waits until its transaction has committed. `f` may run twice (see
    /// the module's documentation); only its last run's changes and result count.
    pub async fn submit<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = Pending {
            write: f,
            outcome: None,
            reply: Some(tx),
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

fn run(conn: Connection, mut rx: mpsc::Receiver<Msg>, on_batch: BatchObserver) {
    let mut taken: Vec<Work> = Vec::with_capacity(MAX_BATCH);
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(stop) = next_batch(&mut rx, &mut taken, MAX_BATCH) {
        for work in taken.drain(..) {
            match work {
                Work::Write(job) => batch.push(job),
                Work::Between(f) => f(&conn),
            }
        }
        if !batch.is_empty() {
            commit_batch(&conn, &mut batch, &on_batch);
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

/// Runs and commits one batch; `on_batch` hears of it before the callers are answered.
fn commit_batch(conn: &Connection, batch: &mut Vec<Box<dyn Job>>, on_batch: &BatchObserver) {
    let size = batch.len();
    let committed = match run_batch(conn, batch) {
        Ok(()) => match conn.execute_batch("COMMIT") {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, size, "commit failed; the batch is rolled back");
                let _ = conn.execute_batch("ROLLBACK");
                false
            }
        },
        Err(e) => {
            tracing::error!(error = %e, size, "cannot run a write transaction");
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            false
        }
    };
    tracing::trace!(size, committed, "write batch");
    if committed {
        on_batch(size);
    }
    for job in batch.drain(..) {
        job.answer(committed);
    }
}

/// Runs every write of `batch` inside one open transaction, each write's changes kept
/// only if it succeeded.
fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    // Runs until the first failure; the writes after it have not run yet.
    if batch.iter_mut().all(|job| job.run(conn)) {
        return Ok(());
    }
    conn.execute_batch("ROLLBACK")?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    for job in batch.iter_mut() {
        run_sql(conn, "SAVEPOINT write")?;
        if !job.run(conn) {
            run_sql(conn, "ROLLBACK TO write")?;
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
