//! Copies the write-ahead log back into the database file on a thread of its own.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, on
//! the writer thread: every write waiting behind that commit then also waits for a
//! thousand pages to be copied and the database file to be synced. Here a separate
//! connection checkpoints shortly after commits instead, beside the writer, which keeps
//! only a far larger automatic threshold as a backstop (see [`WRITER_AUTOCHECKPOINT`]).

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::connection::open_connection;
use super::error::DbError;

/// The writer's own automatic checkpoint threshold, in pages. While commits follow one
/// another without a pause, a checkpoint beside them never quite catches up with the
/// log's end, and SQLite starts the log over only once a checkpoint has; the writer then
/// checkpoints the little that is left itself, at this size (256 MiB of 4 KiB pages).
/// Little is left, but the sync of the database file that ends this checkpoint writes
/// those pages at random places and holds every write waiting behind it: at 64 MiB,
/// which under a sustained login load meant four times a second, it cost logins about
/// a fifteenth of their throughput. Readers search only the part of the log not yet
/// copied, so its size costs them nothing, and the log reaches this size only under
/// such a load: with pauses between commits, the checkpoint catches up and the log
/// starts over long before.
pub const WRITER_AUTOCHECKPOINT: u32 = 65536;

/// The least time between two checkpoints: pages that many commits touch (the ends of
/// the indexes) are then copied once for all of them, not once per commit.
const INTERVAL: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Signal {
    committed: bool,
    stop: bool,
}

/// The handle to the checkpoint thread.
pub struct Checkpointer {
    signal: Arc<(Mutex<Signal>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Starts the thread, with its own connection to the database at `path`.
    pub fn start(path: &Path) -> Result<Checkpointer, DbError> {
        let conn = open_connection(path, false)?;
        let signal = Arc::new((Mutex::new(Signal::default()), Condvar::new()));
        let shared = Arc::clone(&signal);
        let thread = std::thread::Builder::new()
            .name("wxauth-checkpoint".into())
            .spawn(move || run(&conn, &shared))
            .map_err(|e| DbError::Task(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            signal,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Tells the thread that a transaction committed, so the log has pages to copy.
    pub fn committed(&self) {
        let (lock, wake) = &*self.signal;
        let mut signal = lock.lock().expect("checkpoint signal poisoned");
        if !signal.committed {
            signal.committed = true;
            wake.notify_one();
        }
    }

    /// Stops the thread after its current checkpoint and waits until it has closed its
    /// connection.
    pub fn stop(&self) {
        self.ask_to_stop();
        if let Some(thread) = self.thread.lock().expect("poisoned").take() {
            let _ = thread.join();
        }
    }

    fn ask_to_stop(&self) {
        let (lock, wake) = &*self.signal;
        lock.lock().expect("checkpoint signal poisoned").stop = true;
        wake.notify_one();
    }
}

impl Drop for Checkpointer {
    /// A database dropped without [`Db::close`](super::Db::close) still ends the thread,
    /// without waiting for it.
    fn drop(&mut self) {
        self.ask_to_stop();
    }
}

fn run(conn: &Connection, signal: &(Mutex<Signal>, Condvar)) {
    let (lock, wake) = signal;
    // Whether the last checkpoint failed: a full disk fails every one, and is logged
    // once, not twenty times a second.
    let mut failing = false;
    loop {
        {
            let mut state = lock.lock().expect("checkpoint signal poisoned");
            while !state.committed && !state.stop {
                state = wake.wait(state).expect("checkpoint signal poisoned");
            }
            if state.stop {
                return;
            }
            state.committed = false;
        }
        // PASSIVE never waits for, nor blocks, the writer or the readers: it copies what
        // no reader still needs, and the next checkpoint takes the rest.
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            Err(e) if !failing => {
                tracing::warn!(error = %e, "checkpoint failed; the next commit tries again");
                failing = true;
            }
            Err(_) => {}
            Ok(()) if failing => {
                tracing::info!("checkpoints succeed again");
                failing = false;
            }
            Ok(()) => {}
        }
        std::thread::sleep(INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_committed_pages_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        std::fs::File::create(&path).unwrap();
        let writer = open_connection(&path, false).unwrap();
        // Only the checkpoint thread may now copy pages into the database file.
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer
            .execute_batch("CREATE TABLE t (v BLOB); INSERT INTO t VALUES (zeroblob(100000));")
            .unwrap();
        let checkpointer = Checkpointer::start(&path).unwrap();
        checkpointer.committed();
        // The file grows to hold the row once the checkpoint has copied it over.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() < 100_000 {
            assert!(std::time::Instant::now() < deadline, "no checkpoint ran");
            std::thread::sleep(Duration::from_millis(10));
        }
        checkpointer.stop();
    }

    #[test]
    fn stop_returns_while_idle_and_drop_ends_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        std::fs::File::create(&path).unwrap();
        let checkpointer = Checkpointer::start(&path).unwrap();
        checkpointer.stop();
        checkpointer.stop();

        let dropped = Checkpointer::start(&path).unwrap();
        let thread = dropped.thread.lock().unwrap().take().unwrap();
        drop(dropped);
        thread.join().unwrap();
    }
}
