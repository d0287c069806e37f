//! The read side: a few threads, each holding its own read-only connection, draining one
//! shared queue. Under load a reader finds the next read already waiting and never
//! sleeps, so a read costs a queue hand-off rather than a thread wake-up per request
//! (which is what a `spawn_blocking` per read costs), and the number of threads and
//! connections stays fixed however many requests arrive.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::connection::{open_connection, run_sql};
use super::error::DbError;
use super::queue::{self, next_batch};

/// Reads that may wait before callers wait to enqueue.
const QUEUE_DEPTH: usize = 4096;
/// The most reads one reader takes off the queue at once and runs in one transaction;
/// small enough that the other readers still find work under load.
const MAX_BATCH: usize = 16;

type Job = Box<dyn FnOnce(&Connection) + Send>;
type Msg = queue::Msg<Job>;

/// The handle to the reader threads.
pub struct Readers {
    queue: mpsc::Sender<Msg>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Readers {
    /// Starts one reader per core (at least 2, at most 8) on the database at `path`.
    pub fn start(path: &Path) -> Result<Readers, DbError> {
        let count = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
        let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::with_capacity(count);
        for i in 0..count {
            let conn = open_connection(path, true)?;
            let rx = Arc::clone(&rx);
            let thread = std::thread::Builder::new()
                .name(format!("wxauth-reader-{i}"))
                .spawn(move || run(&conn, &rx))
                .map_err(|e| DbError::Task(format!("cannot start a reader thread: {e}")))?;
            threads.push(thread);
        }
        Ok(Readers {
            queue,
            threads: Mutex::new(threads),
        })
    }

    /// Runs `f` on a reader's connection and returns its result.
    pub async fn read<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = catch_unwind(AssertUnwindSafe(|| f(conn)))
                .unwrap_or_else(|_| Err(DbError::Task("a read panicked".into())));
            let _ = tx.send(result);
        });
        self.queue
            .send(Msg::Job(job))
            .await
            .map_err(|_| DbError::Task("the database readers have stopped".into()))?;
        rx.await
            .map_err(|_| DbError::Task("the database readers have stopped".into()))?
    }

    /// Lets queued reads finish, then stops the threads and closes their connections.
    pub async fn stop(&self) {
        let threads: Vec<_> = std::mem::take(&mut *self.threads.lock().expect("poisoned"));
        for _ in &threads {
            let _ = self.queue.send(Msg::Stop).await;
        }
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

fn run(conn: &Connection, rx: &Mutex<mpsc::Receiver<Msg>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        // One thread waits on the queue while the others wait for the lock; whichever
        // holds it takes the next read, and the reads queued behind it.
        let next = next_batch(
            &mut rx.lock().expect("read queue poisoned"),
            &mut batch,
            MAX_BATCH,
        );
        let Some(stop) = next else {
            return;
        };
        run_batch(conn, &mut batch);
        if stop {
            return;
        }
    }
}

/// Runs the reads in one read transaction. Each statement outside a transaction takes
/// and drops SQLite's locks (system calls on the database and its shared memory) and
/// checks whether the file changed; a transaction does that once for all of them. Every
/// read still sees every write acknowledged before it was queued: the transaction's
/// snapshot starts at its first statement, after all of them were taken off the queue.
fn run_batch(conn: &Connection, batch: &mut Vec<Job>) {
    let in_transaction = batch.len() > 1 && run_sql(conn, "BEGIN").is_ok();
    for job in batch.drain(..) {
        job(conn);
    }
    if in_transaction && let Err(e) = run_sql(conn, "COMMIT") {
        tracing::warn!(error = %e, "ending a read transaction failed");
        let _ = conn.execute_batch("ROLLBACK");
    }
}
