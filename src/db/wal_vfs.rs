//! The writer's VFS: SQLite's own, except that writes to the write-ahead log are gathered
//! in memory and reach the file together, in one system call per 128 KiB.
//!
//! SQLite writes each frame of the log with two calls, the frame's 24-byte header and then
//! its page. A commit of a batch of logins, some sixty frames, took about 120 `pwrite`s:
//! a third of the writer's time, on the one thread every login passes through.
//!
//! Why the log stays what SQLite expects:
//! - The gathered bytes are written, in order, before the log is synced, read, sized,
//!   truncated or closed, before any file control reaches it, and before a write that
//!   does not continue them. Whenever SQLite itself looks at the file, it finds what it
//!   would have found without gathering.
//! - Other connections read only frames of commits published in the shared-memory index,
//!   and with `synchronous=FULL` SQLite syncs the log before it publishes a commit: the
//!   frames are in the file (and on disk) by then. With a lower setting SQLite would
//!   publish unsynced frames, so a connection on this VFS refuses one.
//! - The database file and the shared-memory index pass straight through.
//!
//! This is the crate's only `unsafe` code: the VFS interface is SQLite's C API.

#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name connections open the VFS by.
pub const NAME: &str = "wxauth-gathered-wal";

/// The most one write may carry: SQLite's unix VFS writes at most 128 KiB - 1 per call.
const MAX_WRITE: usize = 0x1ffff;

/// One open file: SQLite's own file object, and for the log the bytes not yet written.
/// `base` must come first: SQLite sees a pointer to it as the `sqlite3_file`.
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    /// The default VFS's file, stored right after this struct in SQLite's allocation.
    inner: *mut ffi::sqlite3_file,
    /// Whether this is a write-ahead log; only those gather writes.
    wal: bool,
    /// Where the gathered bytes go in the file.
    start: i64,
    gathered: Vec<u8>,
}

/// Where the default VFS's file starts within the allocation, suitably aligned.
const INNER_OFFSET: usize = std::mem::size_of::<File>().next_multiple_of(16);

/// The VFS this one wraps, found when it is registered.
struct InnerVfs(*mut ffi::sqlite3_vfs);

// SAFETY: SQLite's VFS objects are immutable once registered and are meant to be used
// from any thread.
unsafe impl Send for InnerVfs {}
// SAFETY: as above.
unsafe impl Sync for InnerVfs {}

static INNER: OnceLock<InnerVfs> = OnceLock::new();

/// Registers the VFS (once per process) under [`NAME`], wrapping SQLite's default VFS.
pub fn register() {
    INNER.get_or_init(|| {
        // SAFETY: `sqlite3_vfs_find(NULL)` returns the default VFS, which lives as long
        // as the process. The new VFS is leaked, as SQLite requires a registered VFS to
        // outlive its use; it is registered once.
        unsafe {
            let inner = ffi::sqlite3_vfs_find(std::ptr::null());
            assert!(!inner.is_null(), "SQLite has no default VFS");
            let mut vfs: ffi::sqlite3_vfs = std::ptr::read(inner);
            vfs.szOsFile = c_int::try_from(INNER_OFFSET).expect("small") + (*inner).szOsFile;
            vfs.zName = c"wxauth-gathered-wal".as_ptr();
            vfs.pNext = std::ptr::null_mut();
            vfs.xOpen = Some(open);
            let rc = ffi::sqlite3_vfs_register(Box::leak(Box::new(vfs)), 0);
            assert_eq!(rc, ffi::SQLITE_OK, "cannot register the {NAME} VFS");
            InnerVfs(inner)
        }
    });
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

/// Calls the default VFS's method `$method` on the inner file of `$file`. If that file
/// has no such method, the answer is `$missing` (`SQLITE_IOERR` unless given).
macro_rules! forward {
    ($file:expr, $method:ident $(, $arg:expr)* $(; or $missing:expr)?) => {{
        let file: &File = $file;
        // SAFETY: `inner` was opened by the default VFS, which set its methods, and is
        // open until `close`.
        match unsafe { (*(*file.inner).pMethods).$method } {
            // SAFETY: the default VFS's own method, on its own file.
            Some(method) => unsafe { method(file.inner $(, $arg)*) },
            None => forward!(@missing $($missing)?),
        }
    }};
    (@missing) => { ffi::SQLITE_IOERR };
    (@missing $missing:expr) => { $missing };
}

/// # Safety
/// `file` must be a file this VFS opened and has not closed, and SQLite must not be
/// using it on another thread (it never does).
unsafe fn this<'a>(file: *mut ffi::sqlite3_file) -> &'a mut File {
    // SAFETY: the caller's promise; `base` is the first field of the `repr(C)` `File`.
    unsafe { &mut *file.cast::<File>() }
}

/// Writes the gathered bytes, if any. They are dropped whatever the outcome: a failed
/// write fails the transaction, which SQLite then rolls back.
fn flush(file: &mut File) -> c_int {
    if file.gathered.is_empty() {
        return ffi::SQLITE_OK;
    }
    let len = c_int::try_from(file.gathered.len()).expect("at most MAX_WRITE");
    let rc = forward!(file, xWrite, file.gathered.as_ptr().cast(), len, file.start);
    file.gathered.clear();
    #[cfg(test)]
    tests::count_log_write();
    rc
}

/// Writes through at once, after the gathered bytes.
fn write_through(file: &mut File, buf: *const c_void, len: c_int, offset: i64) -> c_int {
    #[cfg(test)]
    if file.wal {
        tests::count_log_write();
    }
    flushed(file, |f| forward!(f, xWrite, buf, len, offset))
}

/// Writes the gathered bytes, then runs `then` if that worked.
fn flushed(file: &mut File, then: impl FnOnce(&mut File) -> c_int) -> c_int {
    match flush(file) {
        ffi::SQLITE_OK => then(file),
        rc => rc,
    }
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    out: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let inner_vfs = INNER.get().expect("registered before use").0;
    // SAFETY: SQLite allocated `szOsFile` bytes at `out`: a `File`, then room for the
    // default VFS's file at `INNER_OFFSET`. `pMethods` stays null unless the inner open
    // succeeds, so SQLite calls `close` only on a fully built `File`.
    unsafe {
        (*out).pMethods = std::ptr::null();
        let inner = out
            .cast::<u8>()
            .add(INNER_OFFSET)
            .cast::<ffi::sqlite3_file>();
        let Some(inner_open) = (*inner_vfs).xOpen else {
            return ffi::SQLITE_IOERR;
        };
        let rc = inner_open(inner_vfs, name, inner, flags, out_flags);
        if rc != ffi::SQLITE_OK || (*inner).pMethods.is_null() {
            return rc;
        }
        out.cast::<File>().write(File {
            base: ffi::sqlite3_file { pMethods: &METHODS },
            inner,
            wal: flags & ffi::SQLITE_OPEN_WAL != 0,
            start: 0,
            gathered: Vec::new(),
        });
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file it opened here, once.
    let file = unsafe { this(file) };
    let flushed = flush(file);
    let closed = forward!(file, xClose);
    // SAFETY: SQLite frees the memory without running destructors; the buffer is
    // dropped here, and the `File` is not used again.
    unsafe { std::ptr::drop_in_place(&mut file.gathered) };
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    len: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: called by SQLite on a file it opened here.
    flushed(unsafe { this(file) }, |f| {
        forward!(f, xRead, buf, len, offset)
    })
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    len: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: called by SQLite on a file it opened here.
    let file = unsafe { this(file) };
    let Ok(size) = usize::try_from(len) else {
        return ffi::SQLITE_IOERR;
    };
    if !file.wal || size > MAX_WRITE {
        return write_through(file, buf, len, offset);
    }
    let end = file.start + file.gathered.len() as i64;
    if offset != end || file.gathered.len() + size > MAX_WRITE {
        let rc = flush(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    if file.gathered.is_empty() {
        file.start = offset;
    }
    // SAFETY: SQLite passes `len` readable bytes at `buf`.
    let bytes = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), size) };
    file.gathered.extend_from_slice(bytes);
    ffi::SQLITE_OK
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: called by SQLite on a file it opened here.
    flushed(unsafe { this(file) }, |f| forward!(f, xTruncate, size))
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: called by SQLite on a file it opened here.
    flushed(unsafe { this(file) }, |f| forward!(f, xSync, flags))
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: called by SQLite on a file it opened here.
    flushed(unsafe { this(file) }, |f| forward!(f, xFileSize, size))
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: called by SQLite on a file it opened here.
    forward!(unsafe { this(file) }, xLock, level)
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: called by SQLite on a file it opened here.
    forward!(unsafe { this(file) }, xUnlock, level)
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: called by SQLite on a file it opened here.
    forward!(unsafe { this(file) }, xCheckReservedLock, out)
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    if op == ffi::SQLITE_FCNTL_PRAGMA {
        // SAFETY: for this op SQLite passes an array of three strings: the error message
        // to fill in, the pragma's name and its value (null when only read).
        if let Some(rc) = unsafe { refuse_lower_sync(arg.cast()) } {
            return rc;
        }
    }
    // SAFETY: called by SQLite on a file it opened here.
    flushed(unsafe { this(file) }, |f| {
        forward!(f, xFileControl, op, arg)
    })
}

/// Refuses `PRAGMA synchronous` set below FULL (see the module's documentation).
///
/// # Safety
/// `args` must be the three-string array of `SQLITE_FCNTL_PRAGMA`.
unsafe fn refuse_lower_sync(args: *mut *mut c_char) -> Option<c_int> {
    // SAFETY: the caller's promise.
    let (name, value) = unsafe { (*args.add(1), *args.add(2)) };
    if name.is_null() || value.is_null() {
        return None;
    }
    // SAFETY: SQLite's strings are NUL-terminated.
    let (name, value) = unsafe { (CStr::from_ptr(name), CStr::from_ptr(value)) };
    if !name.to_bytes().eq_ignore_ascii_case(b"synchronous") || full_or_higher(value.to_bytes()) {
        return None;
    }
    // SAFETY: SQLite frees the message with `sqlite3_free`, so it is allocated by SQLite.
    unsafe {
        *args = ffi::sqlite3_mprintf(
            c"this connection gathers its log's writes until each commit's sync, so it \
              needs synchronous=FULL or EXTRA"
                .as_ptr(),
        );
    }
    Some(ffi::SQLITE_ERROR)
}

/// Whether a `PRAGMA synchronous` value makes SQLite sync the log on every commit.
fn full_or_higher(value: &[u8]) -> bool {
    value.eq_ignore_ascii_case(b"full")
        || value.eq_ignore_ascii_case(b"extra")
        || value == b"2"
        || value == b"3"
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: called by SQLite on a file it opened here.
    forward!(unsafe { this(file) }, xSectorSize; or 4096)
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: called by SQLite on a file it opened here.
    forward!(unsafe { this(file) }, xDeviceCharacteristics; or 0)
}

unsafe extern "C" fn shm_map(
    file: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: called by SQLite on a file it opened here.
    forward!(unsafe { this(file) }, xShmMap, region, size, extend, out)
}

unsafe extern "C" fn shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: called by SQLite on a file it opened here.
    forward!(unsafe { this(file) }, xShmLock, offset, n, flags)
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: called by SQLite on a file it opened here.
    forward!(unsafe { this(file) }, xShmBarrier; or ())
}

unsafe extern "C" fn shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    // SAFETY: called by SQLite on a file it opened here.
    forward!(unsafe { this(file) }, xShmUnmap, delete)
}

unsafe extern "C" fn fetch(
    file: *mut ffi::sqlite3_file,
    offset: i64,
    len: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: called by SQLite on a file it opened here.
    flushed(unsafe { this(file) }, |f| {
        forward!(f, xFetch, offset, len, out)
    })
}

unsafe extern "C" fn unfetch(
    file: *mut ffi::sqlite3_file,
    offset: i64,
    page: *mut c_void,
) -> c_int {
    // SAFETY: called by SQLite on a file it opened here.
    forward!(unsafe { this(file) }, xUnfetch, offset, page)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::path::Path;

    use rusqlite::{Connection, OpenFlags};

    use super::*;

    thread_local! {
        /// Writes that reached a log file through the default VFS, from this thread.
        static LOG_WRITES: Cell<usize> = const { Cell::new(0) };
    }

    pub(super) fn count_log_write() {
        LOG_WRITES.with(|n| n.set(n.get() + 1));
    }

    fn log_writes() -> usize {
        LOG_WRITES.with(Cell::get)
    }

    fn open_gathering(path: &Path) -> Connection {
        register();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        let conn = Connection::open_with_flags_and_vfs(path, flags, NAME).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        conn
    }

    fn rows(conn: &Connection) -> (i64, i64) {
        conn.query_row(
            "SELECT count(*), coalesce(sum(length(v) + n), 0) FROM t",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    /// `count` rows of `n` and a random blob of `size` bytes.
    fn insert(n: i64, count: i64, size: i64) -> String {
        format!(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {count}) \
             INSERT INTO t SELECT {n}, randomblob({size}) FROM s"
        )
    }

    fn log_frames(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap()
    }

    #[test]
    fn a_commit_reaches_the_log_in_a_write_per_128_kib() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = open_gathering(&path);
        conn.execute_batch("CREATE TABLE t (n INTEGER, v BLOB)")
            .unwrap();
        let other = Connection::open(&path).unwrap();
        // The last commit left the log fully copied, so the next one starts it over.
        log_frames(&other);

        let before = log_writes();
        conn.execute_batch(&insert(0, 100, 3000)).unwrap();
        let writes = log_writes() - before;
        let frames = log_frames(&other);
        assert!(frames >= 100, "{frames} frames");
        // Each frame is 4,120 bytes: 31 fit in one write.
        let least = usize::try_from(frames).unwrap() * 4120 / MAX_WRITE;
        assert!(
            (least..=least + 2).contains(&writes),
            "{frames} frames in {writes} writes"
        );
        assert_eq!(rows(&other).0, 100);
    }

    /// Transactions big and small, some rolled back after SQLite had to spill pages into
    /// the log, with checkpoints and restarts of the log between them: a connection on
    /// SQLite's own VFS sees exactly what was committed, and so does a copy of the files
    /// taken after each commit, as a crash would leave them.
    #[test]
    fn every_commit_is_in_the_files_when_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = open_gathering(&path);
        conn.pragma_update(None, "cache_size", 8).unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 50).unwrap();
        conn.execute_batch("CREATE TABLE t (n INTEGER, v BLOB); CREATE INDEX t_v ON t (v);")
            .unwrap();
        let other = Connection::open(&path).unwrap();
        let mut expected = (0, 0);
        for round in 0..40_i64 {
            let count = 1 + (round * 37) % 150;
            let size = 200 + (round * 997) % 3000;
            conn.execute_batch("BEGIN").unwrap();
            conn.execute_batch(&insert(round, count, size)).unwrap();
            if round % 5 == 4 {
                conn.execute_batch("ROLLBACK").unwrap();
            } else {
                conn.execute_batch("COMMIT").unwrap();
                expected.0 += count;
                expected.1 += count * (size + round);
            }
            assert_eq!(rows(&other), expected, "round {round}");
            if round % 3 == 0 {
                log_frames(&other);
            }
            let copy = dir.path().join(format!("copy{round}"));
            std::fs::create_dir(&copy).unwrap();
            for name in ["t.db", "t.db-wal"] {
                std::fs::copy(dir.path().join(name), copy.join(name)).unwrap();
            }
            let copied = Connection::open(copy.join("t.db")).unwrap();
            assert_eq!(rows(&copied), expected, "copy after round {round}");
        }
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    #[test]
    fn a_synchronous_setting_below_full_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_gathering(&dir.path().join("t.db"));
        for lower in ["NORMAL", "off", "1", "0", "on", "yes", "whatever"] {
            let err = conn
                .pragma_update(None, "synchronous", lower)
                .expect_err(lower);
            assert!(
                err.to_string().contains("synchronous=FULL"),
                "{lower}: {err}"
            );
        }
        for enough in ["FULL", "extra", "2", "3"] {
            conn.pragma_update(None, "synchronous", enough).unwrap();
        }
        let level: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(level, 3, "the last setting that was allowed");
    }

    #[test]
    fn only_full_and_extra_sync_every_commit() {
        for value in ["full", "FULL", "Extra", "2", "3"] {
            assert!(full_or_higher(value.as_bytes()), "{value}");
        }
        // SQLite reads a value it does not know, " FULL " among them, as NORMAL.
        for value in ["normal", "off", "1", "0", "", "fully", "22", " FULL "] {
            assert!(!full_or_higher(value.as_bytes()), "{value}");
        }
    }
}
