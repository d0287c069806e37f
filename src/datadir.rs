//! The data directory: created private (0700), holding private files (0600) that are
//! replaced atomically so a crash never leaves half a file behind.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The SQLite database's file name inside the data directory.
pub const DATABASE_FILE: &str = "wxauth.db";
/// The signing keys' file name inside the data directory.
pub const KEYS_FILE: &str = "keys.json";
/// The config file read from the data directory when `--config` is not given.
pub const CONFIG_FILE: &str = "wxauth.toml";

/// The file a server holds an exclusive lock on while it uses the data directory, so
/// that `wxauth restore` can tell whether one is running.
pub const LOCK_FILE: &str = "wxauth.lock";

/// The data directory's lock, held until dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: fs::File,
}

/// Takes the data directory's exclusive lock; `Ok(None)` when another process (or
/// another open in this one) holds it. The kernel releases it when the holder exits,
/// however it exits, so a crashed server never leaves a stale lock behind.
pub fn try_lock(dir: &Path) -> io::Result<Option<DirLock>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join(LOCK_FILE))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(DirLock { _file: file })),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Creates `dir` (and parents) if needed, private to its owner (0700). A directory that
/// already exists keeps its mode, since it may be shared on purpose (a home directory,
/// a service's state directory); a warning says when others can read it.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        return Ok(());
    }
    let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{mode:o}"),
            "the data directory is accessible to other users; consider chmod 700"
        );
    }
    Ok(())
}

/// Makes an existing file private to its owner (0600).
pub fn restrict_file(path: &Path) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

/// Writes `contents` to `path` with mode 0600: to a temporary file first, synced, then
/// renamed over the old file, and the directory synced, so readers see the old file or
/// the new one and never a torn one.
pub fn write_private_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp: PathBuf = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_and_files_are_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        ensure_private_dir(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let file = dir.join("f");
        write_private_atomic(&file, b"one").unwrap();
        write_private_atomic(&file, b"two").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn the_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let held = try_lock(dir.path()).unwrap().expect("free at first");
        assert!(try_lock(dir.path()).unwrap().is_none(), "taken while held");
        drop(held);
        assert!(try_lock(dir.path()).unwrap().is_some(), "free again");
    }
}
