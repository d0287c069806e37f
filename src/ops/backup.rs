//! Backups: `wxauth backup FILE` writes one SQLite file holding a consistent snapshot
//! of the database (taken with `VACUUM INTO` while the server keeps serving) plus a
//! `wxauth_backup` table with the signing keys and what the backup is. `wxauth restore`
//! verifies such a file, moves the current database and keys aside, and puts the
//! backup's in their place, refusing while a server holds the data directory.
//!
//! A backup holds secrets: the signing keys (anyone with them and the database can mint
//! tokens) and every user's openid, unionid and phone number.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;

use crate::clock::{Clock, UnixTime, rfc3339};
use crate::datadir::{self, DATABASE_FILE, KEYS_FILE};
use crate::db::{self, DbError, SCHEMA_VERSION};
use crate::keys::key_file::KeyFile;
use crate::keys::random;
use crate::keys::sealed::{self, SealError};
use crate::keys::secret::Secret;
use crate::ops::audit::{self, Action, Actor};

/// What the `format` row of a backup says; a later layout gets a new one.
pub const FORMAT: &str = "wxauth-backup/1";
/// The table a backup carries beside the database's own.
const TABLE: &str = "wxauth_backup";

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no wxauth database in {0}; nothing to back up")]
    NoDatabase(PathBuf),
    #[error("{0} already exists; back up to a new file")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the data directory's key file cannot be backed up: {0}")]
    Keys(#[from] crate::keys::key_file::KeyFileError),
    #[error("{path} is not a usable wxauth backup: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("a wxauth server is running on {0}; stop it before restoring")]
    InUse(PathBuf),
    #[error("{0} is encrypted: give its passphrase with --passphrase-file")]
    NeedsPassphrase(PathBuf),
    #[error(transparent)]
    Sealed(#[from] SealError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a backup holds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub file: PathBuf,
    pub format: String,
    pub created_at: String,
    pub wxauth_version: String,
    pub schema_version: i64,
    pub users: i64,
    pub sessions: i64,
    pub signing_keys: usize,
    pub bytes: u64,
    /// Whether the file is encrypted with a passphrase.
    pub encrypted: bool,
}

/// Writes a backup of `data_dir` to `file`, which must not exist yet, and returns what
/// it holds; encrypted when a passphrase is given. The database snapshot is consistent
/// as of the moment it starts: every write acknowledged before then is in it. The
/// server may keep serving meanwhile.
pub fn create(
    data_dir: &Path,
    file: &Path,
    now: UnixTime,
    passphrase: Option<&Secret>,
) -> Result<Summary, BackupError> {
    let source = data_dir.join(DATABASE_FILE);
    if !source.exists() {
        return Err(BackupError::NoDatabase(data_dir.to_owned()));
    }
    if file.exists() {
        return Err(BackupError::Exists(file.to_owned()));
    }
    let partial = sibling(file, ".partial");
    let _ = fs::remove_file(&partial);
    // Created empty and private first: VACUUM INTO fills an empty file, and the
    // snapshot must never sit on disk readable by others.
    create_private(&partial)?;
    // Encrypted, the plaintext snapshot is made beside the database, the one place that
    // already holds the same secrets; only ciphertext goes where `file` is.
    let snapshot = match passphrase {
        Some(_) => {
            let plain = scratch_file(data_dir, "backup");
            create_private(&plain)?;
            plain
        }
        None => partial.clone(),
    };
    let written = write_snapshot(&source, data_dir, &snapshot, now)
        .and_then(|()| verify_plain(&snapshot))
        .and_then(|summary| {
            if let Some(passphrase) = passphrase {
                seal_file(&snapshot, &partial, passphrase)?;
            }
            Ok(summary)
        });
    if snapshot != partial {
        let _ = fs::remove_file(&snapshot);
    }
    let summary = match written {
        Ok(summary) => summary,
        Err(e) => {
            let _ = fs::remove_file(&partial);
            return Err(e);
        }
    };
    File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io_err(&partial))?;
    fs::rename(&partial, file).map_err(io_err(file))?;
    sync_parent(file)?;
    Ok(Summary {
        file: file.to_owned(),
        bytes: fs::metadata(file).map_err(io_err(file))?.len(),
        encrypted: passphrase.is_some(),
        ..summary
    })
}

/// A fresh, unused name for a temporary file in `dir`.
fn scratch_file(dir: &Path, what: &str) -> PathBuf {
    dir.join(format!(".wxauth-{what}-{}.tmp", random::public_id("")))
}

/// Encrypts `plain` into the existing empty file `out`.
fn seal_file(plain: &Path, out: &Path, passphrase: &Secret) -> Result<(), BackupError> {
    let mut input = File::open(plain).map_err(io_err(plain))?;
    let mut output = io::BufWriter::new(
        OpenOptions::new()
            .write(true)
            .open(out)
            .map_err(io_err(out))?,
    );
    sealed::seal(&mut input, &mut output, passphrase)?;
    output.flush().map_err(io_err(out))?;
    Ok(())
}

/// Copies the backup `file` (`-` for standard input) into the existing empty file
/// `out`, decrypting it if it is encrypted; returns whether it was.
fn copy_in(file: &Path, out: &Path, passphrase: Option<&Secret>) -> Result<bool, BackupError> {
    let mut input: Box<dyn Read> = if file == Path::new(STDIN) {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(file).map_err(io_err(file))?)
    };
    let mut start = Vec::with_capacity(sealed::MAGIC.len());
    (&mut input)
        .take(sealed::MAGIC.len() as u64)
        .read_to_end(&mut start)
        .map_err(io_err(file))?;
    let encrypted = sealed::is_sealed(&start);
    let mut input = io::Cursor::new(start).chain(input);
    let mut output = OpenOptions::new()
        .write(true)
        .open(out)
        .map_err(io_err(out))?;
    if encrypted {
        let passphrase = passphrase.ok_or_else(|| BackupError::NeedsPassphrase(file.to_owned()))?;
        let mut buffered = io::BufWriter::new(&mut output);
        sealed::open(&mut input, &mut buffered, passphrase)?;
        buffered.flush().map_err(io_err(out))?;
    } else {
        io::copy(&mut input, &mut output).map_err(io_err(file))?;
    }
    output.sync_all().map_err(io_err(out))?;
    Ok(encrypted)
}

fn write_snapshot(
    source: &Path,
    data_dir: &Path,
    partial: &Path,
    now: UnixTime,
) -> Result<(), BackupError> {
    let target = partial.to_str().ok_or_else(|| BackupError::Invalid {
        path: partial.to_owned(),
        reason: "the path is not valid UTF-8".into(),
    })?;
    // A read-only connection: taking a backup never writes to the live database.
    let conn = db::open_connection(source, true)?;
    conn.execute("VACUUM INTO ?1", [target])
        .map_err(DbError::from)?;
    drop(conn);
    // The keys are read after the snapshot: keys are only ever added or retired, so
    // every session in the snapshot was signed with a key in this copy.
    let keys_path = data_dir.join(KEYS_FILE);
    KeyFile::load(&keys_path)?;
    let keys = fs::read(&keys_path).map_err(io_err(&keys_path))?;

    let out = Connection::open_with_flags(partial, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(DbError::from)?;
    let fill = || -> rusqlite::Result<()> {
        // One self-contained file: no -wal beside it to forget when copying it away.
        out.pragma_update(None, "journal_mode", "DELETE")?;
        out.pragma_update(None, "synchronous", "FULL")?;
        out.execute_batch(&format!(
            "CREATE TABLE {TABLE} (name TEXT PRIMARY KEY, value BLOB NOT NULL)"
        ))?;
        let mut insert = out.prepare(&format!(
            "INSERT INTO {TABLE} (name, value) VALUES (?1, ?2)"
        ))?;
        insert.execute(params!["format", FORMAT])?;
        insert.execute(params!["created_at", rfc3339(now)])?;
        insert.execute(params!["wxauth_version", env!("CARGO_PKG_VERSION")])?;
        insert.execute(params![KEYS_FILE, keys])?;
        Ok(())
    };
    fill().map_err(DbError::from)?;
    out.close().map_err(|(_, e)| DbError::from(e))?;
    Ok(())
}

/// Checks that `file` is a complete, intact backup this wxauth can restore, without
/// changing it, and returns what it holds. An encrypted backup needs its passphrase and
/// is decrypted into a temporary file in `scratch` (the data directory: the one place
/// that already holds the same secrets), removed afterwards.
pub fn verify_file(
    file: &Path,
    passphrase: Option<&Secret>,
    scratch: &Path,
) -> Result<Summary, BackupError> {
    let mut start = Vec::new();
    File::open(file)
        .and_then(|f| f.take(sealed::MAGIC.len() as u64).read_to_end(&mut start))
        .map_err(io_err(file))?;
    if !sealed::is_sealed(&start) {
        return verify_plain(file);
    }
    let passphrase = passphrase.ok_or_else(|| BackupError::NeedsPassphrase(file.to_owned()))?;
    datadir::ensure_private_dir(scratch).map_err(io_err(scratch))?;
    let plain = scratch_file(scratch, "verify");
    create_private(&plain)?;
    let checked = copy_in(file, &plain, Some(passphrase)).and_then(|_| verify_plain(&plain));
    let _ = fs::remove_file(&plain);
    let summary = checked.map_err(|e| match e {
        BackupError::Invalid { reason, .. } => invalid(file, reason),
        other => other,
    })?;
    Ok(Summary {
        file: file.to_owned(),
        bytes: fs::metadata(file).map_err(io_err(file))?.len(),
        encrypted: true,
        ..summary
    })
}

/// [`verify_file`] for an unencrypted backup.
fn verify_plain(file: &Path) -> Result<Summary, BackupError> {
    let conn = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| invalid(file, e.to_string()))?;
    let (summary, _) = inspect(&conn, file)?;
    Ok(summary)
}

fn invalid(path: &Path, reason: impl Into<String>) -> BackupError {
    BackupError::Invalid {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Verifies an open backup and returns its summary and its key file's bytes.
fn inspect(conn: &Connection, file: &Path) -> Result<(Summary, Vec<u8>), BackupError> {
    let bad = |reason: String| invalid(file, reason);
    let sqlite = |e: rusqlite::Error| invalid(file, e.to_string());
    let has_table: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [TABLE],
            |r| r.get::<_, i64>(0),
        )
        .map_err(sqlite)?
        == 1;
    if !has_table {
        return Err(bad(format!(
            "it has no `{TABLE}` table (a plain database file is not a backup)"
        )));
    }
    let item = |name: &str| -> Result<Option<Vec<u8>>, BackupError> {
        conn.query_row(
            &format!("SELECT CAST(value AS BLOB) FROM {TABLE} WHERE name = ?1"),
            [name],
            |r| r.get(0),
        )
        .optional()
        .map_err(sqlite)
    };
    let text = |name: &str| -> Result<String, BackupError> {
        let bytes = item(name)?.ok_or_else(|| bad(format!("`{name}` is missing")))?;
        String::from_utf8(bytes).map_err(|_| bad(format!("`{name}` is not text")))
    };
    let format = text("format")?;
    if format != FORMAT {
        return Err(bad(format!(
            "its format is `{format}`; this wxauth reads `{FORMAT}`"
        )));
    }
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(sqlite)?;
    if check != "ok" {
        return Err(bad(format!("integrity check failed: {check}")));
    }
    let schema_version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sqlite)?;
    if !(1..=SCHEMA_VERSION).contains(&schema_version) {
        return Err(bad(format!(
            "its schema version is {schema_version}; this wxauth understands 1 to {SCHEMA_VERSION}"
        )));
    }
    let keys = item(KEYS_FILE)?.ok_or_else(|| bad(format!("`{KEYS_FILE}` is missing")))?;
    let key_file: KeyFile = serde_json::from_slice(&keys)
        .map_err(|e| bad(format!("its signing keys are damaged: {e}")))?;
    key_file
        .keyring()
        .map_err(|e| bad(format!("its signing keys are unusable: {e}")))?;
    // Restored, the two must start together: the keys must be those the database needs.
    if schema_version >= 5 {
        let needed = crate::db::needed_keys::needed(conn).map_err(|e| bad(e.to_string()))?;
        let lacking = key_file.lacks(&needed);
        if !lacking.is_empty() {
            return Err(bad(format!(
                "its keys are not its database's: they lack {}",
                crate::ops::key_guard::list(&lacking)
            )));
        }
    }
    let count = |table: &str| -> Result<i64, BackupError> {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .map_err(sqlite)
    };
    let summary = Summary {
        file: file.to_owned(),
        format,
        created_at: text("created_at")?,
        wxauth_version: text("wxauth_version")?,
        schema_version,
        users: count("users")?,
        sessions: count("sessions")?,
        signing_keys: key_file.keys.len(),
        bytes: fs::metadata(file).map_err(io_err(file))?.len(),
        encrypted: false,
    };
    Ok((summary, keys))
}

/// The file name that makes `restore` read the backup from standard input, for a
/// restore run as another user than the one who can read the file.
pub const STDIN: &str = "-";

/// What a restore did.
#[derive(Debug, Serialize)]
pub struct Restored {
    /// The backup that is now the data directory's database and keys.
    pub backup: Summary,
    /// Where the database and keys that were there before now are; `None` when there
    /// were none.
    pub previous: Option<PathBuf>,
}

/// Replaces the database and signing keys of `data_dir` with those of the backup
/// `file`. Refuses while a server holds the data directory; verifies a private copy of
/// the backup before anything is replaced; moves what was there into a
/// `pre-restore-<time>` directory beside them.
pub fn restore(
    data_dir: &Path,
    file: &Path,
    now: UnixTime,
    passphrase: Option<&Secret>,
) -> Result<Restored, BackupError> {
    datadir::ensure_private_dir(data_dir).map_err(io_err(data_dir))?;
    // Held to the end, so no server can start on a half-restored directory.
    let _lock = datadir::try_lock(data_dir)
        .map_err(io_err(data_dir))?
        .ok_or_else(|| BackupError::InUse(data_dir.to_owned()))?;

    // Verify a private copy rather than `file` itself, so what is checked is what is
    // put in place.
    let staged = data_dir.join(format!(".{DATABASE_FILE}.restore"));
    let _ = fs::remove_file(&staged);
    create_private(&staged)?;
    let prepared = stage(file, &staged, passphrase);
    let (backup, keys) = match prepared {
        Ok(done) => done,
        Err(e) => {
            let _ = fs::remove_file(&staged);
            return Err(e);
        }
    };

    let previous = move_aside(data_dir, now)?;
    let database = data_dir.join(DATABASE_FILE);
    fs::rename(&staged, &database).map_err(io_err(&database))?;
    datadir::write_private_atomic(&data_dir.join(KEYS_FILE), &keys)
        .map_err(io_err(&data_dir.join(KEYS_FILE)))?;
    sync_dir(data_dir)?;
    Ok(Restored { backup, previous })
}

/// Copies the backup to `staged`, verifies the copy, and strips the backup's own table
/// so the database left behind holds no keys. Returns the summary and the keys.
fn stage(
    file: &Path,
    staged: &Path,
    passphrase: Option<&Secret>,
) -> Result<(Summary, Vec<u8>), BackupError> {
    let encrypted = copy_in(file, staged, passphrase)?;
    let conn = Connection::open_with_flags(staged, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| invalid(file, e.to_string()))?;
    let (mut summary, keys) = inspect(&conn, staged).map_err(|e| match e {
        BackupError::Invalid { reason, .. } => invalid(file, reason),
        other => other,
    })?;
    summary.file = file.to_owned();
    summary.encrypted = encrypted;
    // secure_delete zeroes the freed pages, so the keys do not linger in the file.
    conn.execute_batch(&format!(
        "PRAGMA secure_delete = ON; PRAGMA synchronous = FULL; DROP TABLE {TABLE};"
    ))
    .map_err(DbError::from)?;
    conn.close().map_err(|(_, e)| DbError::from(e))?;
    Ok((summary, keys))
}

/// Moves the database (with its -wal and -shm) and key file of `data_dir` into a new
/// `pre-restore-<time>` directory; `None` when there was nothing to move.
fn move_aside(data_dir: &Path, now: UnixTime) -> Result<Option<PathBuf>, BackupError> {
    let names = [
        DATABASE_FILE.to_owned(),
        format!("{DATABASE_FILE}-wal"),
        format!("{DATABASE_FILE}-shm"),
        KEYS_FILE.to_owned(),
    ];
    let present: Vec<&String> = names.iter().filter(|n| data_dir.join(n).exists()).collect();
    if present.is_empty() {
        return Ok(None);
    }
    let stamp = compact_time(now);
    let mut aside = data_dir.join(format!("pre-restore-{stamp}"));
    let mut n = 1;
    while aside.exists() {
        n += 1;
        aside = data_dir.join(format!("pre-restore-{stamp}-{n}"));
    }
    datadir::ensure_private_dir(&aside).map_err(io_err(&aside))?;
    for name in present {
        fs::rename(data_dir.join(name), aside.join(name)).map_err(io_err(&aside))?;
    }
    sync_dir(&aside)?;
    Ok(Some(aside))
}

/// What `serve` needs to take backups of its own on a schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub data_dir: PathBuf,
    /// Where the backups go; created (0700) if needed.
    pub dir: PathBuf,
    pub every: std::time::Duration,
    /// How many of the newest scheduled backups to keep.
    pub keep: u32,
}

/// Takes a backup every `schedule.every` (the first one interval after the start) into
/// `schedule.dir` as `wxauth-<time>.wxbak`, then deletes all but the newest
/// `schedule.keep` of them, and records the backup in the audit log through the server's
/// writer `db`. Runs until the task is aborted; a failed backup is logged, counted and
/// tried again at the next interval.
pub async fn run_schedule(
    schedule: Schedule,
    db: Arc<db::Db>,
    clock: Arc<dyn Clock>,
    metrics: Arc<crate::ops::metrics::Metrics>,
) {
    let start = tokio::time::Instant::now() + schedule.every;
    let mut ticks = tokio::time::interval_at(start, schedule.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let job = schedule.clone();
        let now = clock.now();
        let done = tokio::task::spawn_blocking(move || scheduled_backup(&job, now)).await;
        match done {
            Ok(Ok((summary, pruned))) => {
                metrics.scheduled_backup(true);
                tracing::info!(
                    file = %summary.file.display(),
                    bytes = summary.bytes,
                    pruned,
                    "scheduled backup written"
                );
                let detail = audit_detail(&summary);
                let recorded = db
                    .write(move |c| {
                        audit::record(c, &Actor::schedule(), Action::Backup, None, &detail, now)
                    })
                    .await;
                if let Err(e) = recorded {
                    tracing::error!(error = %e, "scheduled backup written, but not in the audit log");
                }
            }
            Ok(Err(e)) => {
                metrics.scheduled_backup(false);
                tracing::error!(error = %e, "scheduled backup failed");
            }
            Err(e) => {
                metrics.scheduled_backup(false);
                tracing::error!(error = %e, "scheduled backup task failed");
            }
        }
    }
}

/// Records in the audit log of `data_dir`'s database that `actor` wrote or restored
/// the backup `summary` describes; the console's overview shows the last backup from it.
pub fn record(
    data_dir: &Path,
    actor: &Actor,
    action: Action,
    summary: &Summary,
    now: UnixTime,
) -> Result<(), BackupError> {
    let conn = db::open_existing(data_dir)?;
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(DbError::from)?;
    audit::record(&conn, actor, action, None, &audit_detail(summary), now)?;
    conn.execute_batch("COMMIT").map_err(DbError::from)?;
    Ok(())
}

/// What the audit log keeps of a backup.
fn audit_detail(summary: &Summary) -> serde_json::Value {
    serde_json::json!({
        "file": summary.file.display().to_string(),
        "users": summary.users,
        "encrypted": summary.encrypted,
    })
}

/// One scheduled backup and the pruning after it; returns the summary and how many old
/// backups were deleted. The audit log is written by the caller, through the server's
/// writer, so that a busy database neither fails the backup nor stops the pruning.
fn scheduled_backup(schedule: &Schedule, now: UnixTime) -> Result<(Summary, usize), BackupError> {
    datadir::ensure_private_dir(&schedule.dir).map_err(io_err(&schedule.dir))?;
    let stamp = compact_time(now);
    let mut file = schedule.dir.join(format!("wxauth-{stamp}.wxbak"));
    let mut n = 1;
    while file.exists() {
        n += 1;
        file = schedule.dir.join(format!("wxauth-{stamp}-{n}.wxbak"));
    }
    let summary = create(&schedule.data_dir, &file, now, None)?;
    let pruned = prune(&schedule.dir, schedule.keep as usize)?;
    Ok((summary, pruned))
}

/// Deletes all but the `keep` newest `wxauth-*.wxbak` files of `dir`; returns how many
/// went. Other files are left alone.
fn prune(dir: &Path, keep: usize) -> Result<usize, BackupError> {
    let mut backups = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("wxauth-") && name.ends_with(".wxbak") {
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .map_err(io_err(&entry.path()))?;
            backups.push((modified, name));
        }
    }
    backups.sort();
    let excess = backups.len().saturating_sub(keep);
    for (_, name) in &backups[..excess] {
        let path = dir.join(name);
        fs::remove_file(&path).map_err(io_err(&path))?;
    }
    Ok(excess)
}

/// `now` as `20261130T100000Z`, for file and directory names.
fn compact_time(now: UnixTime) -> String {
    rfc3339(now)
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect()
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

fn create_private(path: &Path) -> Result<(), BackupError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(io_err(path))
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn sync_parent(file: &Path) -> Result<(), BackupError> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::keys::key_file::KeyFile;

    /// A data directory with a database holding one user and a key file.
    fn data_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        // As a stopped server leaves it: in WAL mode, with the WAL checkpointed away.
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        db::migrate(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO users (public_id, created_at, updated_at) VALUES ('u_1', 0, 0)",
            [],
        )
        .unwrap();
        KeyFile::generate(0)
            .save(&dir.path().join(KEYS_FILE))
            .unwrap();
        dir
    }

    #[test]
    fn a_backup_is_private_complete_and_restores() {
        let source = data_dir();
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("b.wxbak");
        let summary = create(source.path(), &file, 1000, None).unwrap();
        assert_eq!(summary.users, 1);
        assert_eq!(summary.signing_keys, 1);
        assert_eq!(summary.schema_version, SCHEMA_VERSION);
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(matches!(
            create(source.path(), &file, 1000, None),
            Err(BackupError::Exists(_))
        ));

        let target = tempfile::tempdir().unwrap();
        let dir = target.path().join("data");
        let restored = restore(&dir, &file, 2000, None).unwrap();
        assert!(restored.previous.is_none());
        assert_eq!(
            fs::read(dir.join(KEYS_FILE)).unwrap(),
            fs::read(source.path().join(KEYS_FILE)).unwrap()
        );
        let conn = Connection::open(dir.join(DATABASE_FILE)).unwrap();
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'wxauth_backup'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "the restored database holds no keys");
        drop(conn);

        // A second restore keeps the first one's files aside.
        let again = restore(&dir, &file, 3000, None).unwrap();
        let aside = again.previous.unwrap();
        assert!(aside.join(DATABASE_FILE).exists() && aside.join(KEYS_FILE).exists());
    }

    #[test]
    fn damaged_or_foreign_files_are_refused_and_change_nothing() {
        let source = data_dir();
        let out = tempfile::tempdir().unwrap();
        let target = data_dir();
        let before = fs::read(target.path().join(DATABASE_FILE)).unwrap();

        let plain = source.path().join(DATABASE_FILE);
        let err = restore(target.path(), &plain, 0, None).unwrap_err();
        assert!(
            err.to_string().contains("not a usable wxauth backup"),
            "{err}"
        );

        let junk = out.path().join("junk");
        fs::write(&junk, vec![7u8; 8192]).unwrap();
        assert!(matches!(
            restore(target.path(), &junk, 0, None),
            Err(BackupError::Invalid { .. })
        ));

        let file = out.path().join("b.wxbak");
        create(source.path(), &file, 0, None).unwrap();
        let mut bytes = fs::read(&file).unwrap();
        let len = bytes.len();
        bytes.truncate(len / 2);
        let cut = out.path().join("cut.wxbak");
        fs::write(&cut, bytes).unwrap();
        assert!(restore(target.path(), &cut, 0, None).is_err());

        assert_eq!(fs::read(target.path().join(DATABASE_FILE)).unwrap(), before);
        let leftovers: Vec<_> = fs::read_dir(target.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.') || n.starts_with("pre-restore"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_backup_whose_keys_are_not_its_databases_is_refused() {
        let source = data_dir();
        let keys = KeyFile::load(&source.path().join(KEYS_FILE)).unwrap();
        let conn = Connection::open(source.path().join(DATABASE_FILE)).unwrap();
        db::needed_keys::record(&conn, &keys.prints(), 0).unwrap();
        drop(conn);
        KeyFile::generate(0)
            .save(&source.path().join(KEYS_FILE))
            .unwrap();
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("b.wxbak");
        let err = create(source.path(), &file, 0, None).unwrap_err();
        assert!(
            err.to_string().contains("its keys are not its database's"),
            "{err}"
        );
        assert!(!file.exists());

        keys.save(&source.path().join(KEYS_FILE)).unwrap();
        create(source.path(), &file, 0, None).unwrap();
    }

    #[test]
    fn restore_refuses_a_locked_data_directory() {
        let source = data_dir();
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("b.wxbak");
        create(source.path(), &file, 0, None).unwrap();
        let target = data_dir();
        let _held = datadir::try_lock(target.path()).unwrap().unwrap();
        assert!(matches!(
            restore(target.path(), &file, 0, None),
            Err(BackupError::InUse(_))
        ));
    }
}
