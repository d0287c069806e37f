//! `wxauth keys`: list, rotate and retire the token signing keys, and start over with new
//! keys when the key file is lost.

use std::path::Path;

use clap::{Args, Subcommand};

use super::common::{DataDirArgs, RELOAD_NOTE, print_json};
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::ops::admin::{self, AdminError};

#[derive(Debug, Args)]
pub(super) struct KeysArgs {
    #[command(flatten)]
    pub(super) dir: DataDirArgs,
    #[command(subcommand)]
    pub(super) command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub(super) enum KeysCommand {
    /// List the signing keys.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make a new key active; tokens signed with older keys keep working.
    Rotate,
    /// Stop accepting tokens signed with a key, at once.
    Retire {
        /// The key id, as `keys list` shows it.
        kid: String,
    },
    /// Replace a lost key file with new keys: ends every session and drops the stored
    /// session_keys and access tokens. Stop the server first.
    Reset {
        /// Do it; without this, only say what it would do
        #[arg(long)]
        yes: bool,
        /// Print the outcome as JSON
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn keys(dir: &Path, command: KeysCommand) -> Result<(), AdminError> {
    let now = SystemClock.now();
    match command {
        KeysCommand::List { json } => {
            let file = admin::list_keys(dir)?;
            if json {
                let keys: Vec<_> = file
                    .keys
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "kid": k.kid,
                            "active": k.kid == file.active,
                            "created_at": rfc3339(k.created_at),
                            "retired_at": k.retired_at.map(rfc3339),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(keys));
            } else {
                println!("{:<18} {:<8} {:<22} RETIRED", "KID", "ACTIVE", "CREATED");
                for k in &file.keys {
                    println!(
                        "{:<18} {:<8} {:<22} {}",
                        k.kid,
                        if k.kid == file.active { "yes" } else { "" },
                        rfc3339(k.created_at),
                        k.retired_at.map(rfc3339).unwrap_or_default()
                    );
                }
            }
        }
        KeysCommand::Rotate => {
            let kid = admin::rotate_key(dir, now)?;
            println!("{kid}");
            eprintln!("new tokens are now signed with key {kid}; {RELOAD_NOTE}");
        }
        KeysCommand::Retire { kid } => {
            admin::retire_key(dir, &kid, now)?;
            eprintln!("key {kid} is retired: its tokens no longer work; {RELOAD_NOTE}");
        }
        KeysCommand::Reset { yes, json } => {
            let reset = admin::reset_keys(dir, now, yes)?;
            let d = reset.dropped;
            if json {
                print_json(&reset);
            }
            if !yes {
                eprintln!(
                    "keys reset would make new keys in {}, end {} session(s) (every user \
                     logs in again), and drop {} stored session_key(s) and {} access \
                     token(s). The old keys would never work again.",
                    reset.key_file.display(),
                    d.sessions,
                    d.session_keys,
                    d.access_tokens
                );
                return Err(AdminError::Refused(
                    "nothing was changed; run `wxauth keys reset --yes` to do it".into(),
                ));
            }
            eprintln!(
                "WARNING: {} now holds new keys (active {}): {} session(s) ended (every \
                 user logs in again), {} stored session_key(s) and {} access token(s) dropped.",
                reset.key_file.display(),
                reset.active.as_deref().unwrap_or_default(),
                d.sessions,
                d.session_keys,
                d.access_tokens
            );
        }
    }
    Ok(())
}
