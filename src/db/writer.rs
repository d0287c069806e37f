//! The one owner of database writes: a thread holding the write connection, fed through
//! a channel. It takes every write that is waiting, runs each inside its own savepoint
//! of one `BEGIN IMMEDIATE` transaction, commits once, and only then answers the
//! callers. One fsync thus covers a whole batch (group commit), and an answer always
//! means the write is durable.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::queue::{self, next_batch};
use super::{DbError, run_sql};

/// The most writes one transaction carries; bounds how long a batch holds the lock.
const MAX_BATCH: usize = 256;
/// Writes that may wait in the queue before callers wait to enqueue.
const QUEUE_DEPTH: usize = 4096;

/// What a write leaves for after the commit: whether it succeeded, and how to answer.
struct Done {
    ok: bool,
    answer: Box<dyn FnOnce(bool) + Send>,
}

type Job = Box<dyn FnOnce(&Connection) -> Done + Send>;

/// Called on the writer thread with the number of writes in each committed batch.
pub type BatchObserver = Box<dyn Fn(usize) + Send>;

type Msg = queue::Msg<Job>;

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

    /// Queues `f` and waits until its transaction has committed.
    pub async fn submit<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send(Msg::Job(job(f, tx)))
            .await
            .map_err(|_| DbError::WriterStopped)?;
        rx.await.map_err(|_| DbError::WriterStopped)?
    }

    /// Queues `f` if there is room, without waiting for it.
    pub fn submit_detached<F>(&self, f: F)
    where
        F: FnOnce(&Connection) -> Result<(), DbError> + Send + 'static,
    {
        let job: Job = Box::new(move |conn| {
            let result = f(conn);
            if let Err(e) = &result {
                tracing::warn!(error = %e, "background write failed");
            }
            Done {
                ok: result.is_ok(),
                answer: Box::new(|_| {}),
            }
        });
        let _ = self.queue.try_send(Msg::Job(job));
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

fn job<T, F>(f: F, tx: oneshot::Sender<Result<T, DbError>>) -> Job
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
{
    Box::new(move |conn| {
        let result = catch_unwind(AssertUnwindSafe(|| f(conn)))
            .unwrap_or_else(|_| Err(DbError::Task("a write panicked".into())));
        Done {
            ok: result.is_ok(),
            answer: Box::new(move |committed| {
                let _ = tx.send(if committed {
                    result
                } else {
                    result.and(Err(DbError::NotCommitted))
                });
            }),
        }
    })
}

fn run(conn: Connection, mut rx: mpsc::Receiver<Msg>, on_batch: BatchObserver) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(stop) = next_batch(&mut rx, &mut batch, MAX_BATCH) {
        commit_batch(&conn, &mut batch, &on_batch);
        if stop {
            break;
        }
    }
    // Writes queued behind the stop request are refused rather than left hanging.
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        if let Msg::Job(job) = msg {
            drop(job);
        }
    }
    if let Err((_, e)) = conn.close() {
        tracing::error!(error = %e, "closing the database failed");
    }
}

/// Runs and commits one batch; `on_batch` hears of it before the callers are answered.
fn commit_batch(conn: &Connection, batch: &mut Vec<Job>, on_batch: &BatchObserver) {
    let size = batch.len();
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        tracing::error!(error = %e, size, "cannot begin a write transaction");
        for job in batch.drain(..) {
            drop(job);
        }
        return;
    }
    let mut answers = Vec::with_capacity(size);
    for job in batch.drain(..) {
        let done = match run_sql(conn, "SAVEPOINT write") {
            Ok(()) => {
                let done = job(conn);
                let end = if done.ok {
                    run_sql(conn, "RELEASE write")
                } else {
                    run_sql(conn, "ROLLBACK TO write").and_then(|()| run_sql(conn, "RELEASE write"))
                };
                if let Err(e) = end {
                    tracing::error!(error = %e, "cannot end a savepoint");
                }
                done
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot open a savepoint");
                Done {
                    ok: false,
                    answer: Box::new(|_| {}),
                }
            }
        };
        answers.push(done.answer);
    }
    let committed = match conn.execute_batch("COMMIT") {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, size, "commit failed; the batch is rolled back");
            let _ = conn.execute_batch("ROLLBACK");
            false
        }
    };
    tracing::trace!(size, committed, "write batch");
    if committed {
        on_batch(size);
    }
    for answer in answers {
        answer(committed);
    }
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
