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

use super::{DbError, open_connection};

/// Reads that may wait before callers wait to enqueue.
const QUEUE_DEPTH: usize = 4096;

type Job = Box<dyn FnOnce(&Connection) + Send>;

enum Msg {
    Job(Job),
    Stop,
}

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
    loop {
        // One thread waits on the queue while the others wait for the lock; whichever
        // holds it takes the next read.
        let msg = rx.lock().expect("read queue poisoned").blocking_recv();
        match msg {
            Some(Msg::Job(job)) => job(conn),
            Some(Msg::Stop) | None => return,
        }
    }
}
