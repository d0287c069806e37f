//! `wxauth keys`: list, rotate and retire the token signing keys.

use std::path::Path;

use clap::{Args, Subcommand};

use super::common::{DataDirArgs, RELOAD_NOTE};
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
    }
    Ok(())
}
