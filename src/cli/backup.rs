//! `wxauth backup` and `wxauth restore`.

use std::path::{Path, PathBuf};

use clap::Args;

use super::common::{DataDirArgs, print_json};
use crate::clock::{Clock, SystemClock};
use crate::keys::secret::Secret;
use crate::ops::admin::AdminError;
use crate::ops::audit::{Action, Actor};
use crate::ops::backup;

#[derive(Debug, Args)]
pub(super) struct BackupArgs {
    #[command(flatten)]
    pub(super) dir: DataDirArgs,
    /// The backup file to write; it must not exist yet
    pub(super) file: PathBuf,
    /// Encrypt the backup with the passphrase in this file (AES-256-GCM, key from PBKDF2)
    #[arg(long, value_name = "FILE")]
    pub(super) passphrase_file: Option<PathBuf>,
    /// Print what the backup holds as JSON
    #[arg(long)]
    pub(super) json: bool,
}

#[derive(Debug, Args)]
pub(super) struct RestoreArgs {
    #[command(flatten)]
    pub(super) dir: DataDirArgs,
    /// The backup file, as `wxauth backup` wrote it; `-` reads it from standard input
    pub(super) file: PathBuf,
    /// The passphrase of an encrypted backup, in this file
    #[arg(long, value_name = "FILE")]
    pub(super) passphrase_file: Option<PathBuf>,
    /// Only verify the backup and say what it holds; change nothing
    #[arg(long)]
    pub(super) dry_run: bool,
    /// Print the outcome as JSON
    #[arg(long)]
    pub(super) json: bool,
}

pub(super) fn backup(dir: &Path, args: &BackupArgs) -> Result<(), AdminError> {
    let passphrase = read_passphrase(args.passphrase_file.as_deref())?;
    let now = SystemClock.now();
    let summary = backup::create(dir, &args.file, now, passphrase.as_ref())?;
    backup::record(dir, &Actor::cli(), Action::Backup, &summary, now)?;
    if args.json {
        print_json(&summary);
    } else {
        eprintln!(
            "wrote {}{} ({} bytes): {} users, {} sessions, {} signing keys, schema version {}. \
             It holds the signing keys: keep it private.",
            summary.file.display(),
            if summary.encrypted { ", encrypted" } else { "" },
            summary.bytes,
            summary.users,
            summary.sessions,
            summary.signing_keys,
            summary.schema_version
        );
    }
    Ok(())
}

pub(super) fn restore(dir: &Path, args: &RestoreArgs) -> Result<(), AdminError> {
    let passphrase = read_passphrase(args.passphrase_file.as_deref())?;
    if args.dry_run {
        if args.file == Path::new(backup::STDIN) {
            return Err(AdminError::Refused(
                "--dry-run reads a file; it cannot check standard input".into(),
            ));
        }
        let summary = backup::verify_file(&args.file, passphrase.as_ref(), dir)?;
        if args.json {
            print_json(&summary);
        } else {
            eprintln!(
                "{} is a usable backup from {} (wxauth {}): {} users, {} sessions, {} signing keys",
                args.file.display(),
                summary.created_at,
                summary.wxauth_version,
                summary.users,
                summary.sessions,
                summary.signing_keys
            );
        }
        return Ok(());
    }
    let now = SystemClock.now();
    let restored = backup::restore(dir, &args.file, now, passphrase.as_ref())?;
    backup::record(dir, &Actor::cli(), Action::Restore, &restored.backup, now)?;
    if args.json {
        print_json(&restored);
    } else {
        eprintln!(
            "restored {} into {} ({} users, {} sessions)",
            args.file.display(),
            dir.display(),
            restored.backup.users,
            restored.backup.sessions
        );
        if let Some(previous) = &restored.previous {
            eprintln!(
                "the database and keys it replaced are in {}",
                previous.display()
            );
        }
    }
    Ok(())
}

/// The passphrase in the file at `path`, without its trailing line break.
pub(super) fn read_passphrase(path: Option<&Path>) -> Result<Option<Secret>, AdminError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        AdminError::Refused(format!(
            "cannot read the passphrase file {}: {e}",
            path.display()
        ))
    })?;
    Ok(Some(Secret::new(
        text.trim_end_matches(['\r', '\n']).to_owned(),
    )))
}
