//! `wxauth keys`: list, rotate and retire the session-token and JWT keys, and start over
//! with new keys when the key file is lost.

use std::path::Path;

use clap::{Args, Subcommand};

use super::common::{DataDirArgs, RELOAD_NOTE, print_json};
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::ops::admin::{self, AdminError, KeyListing};
use crate::ops::audit::Actor;

#[derive(Debug, Args)]
pub(super) struct KeysArgs {
    #[command(flatten)]
    pub(super) dir: DataDirArgs,
    #[command(subcommand)]
    pub(super) command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub(super) enum KeysCommand {
    /// List the session-token keys and the JWT keys.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make a new session-token key and the next JWT key active; session tokens signed
    /// with older keys keep working, and JWTs verify until they expire. Prints the new
    /// session-token key id.
    Rotate {
        /// Print both new key ids as JSON
        #[arg(long)]
        json: bool,
    },
    /// Stop accepting tokens signed with a key, at once: a session-token key's tokens, or
    /// the JWTs of a JWT key, which leaves the JWKS.
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
            let rows = admin::key_listing(&file);
            if json {
                let keys: Vec<_> = rows.iter().map(key_json).collect();
                println!("{}", serde_json::Value::Array(keys));
            } else {
                println!(
                    "{:<10} {:<8} {:<9} {:<22} RETIRED",
                    "KID", "USE", "STATE", "CREATED"
                );
                for row in &rows {
                    println!(
                        "{:<10} {:<8} {:<9} {:<22} {}",
                        row.kid,
                        row.usage,
                        row.state,
                        rfc3339(row.created_at),
                        row.retired_at.map(rfc3339).unwrap_or_default()
                    );
                }
            }
        }
        KeysCommand::Rotate { json } => {
            let rotation = admin::rotate_key(dir, &Actor::cli(), now)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"signing": rotation.signing, "jwt": rotation.jwt})
                );
            } else {
                println!("{}", rotation.signing);
            }
            eprintln!(
                "new session tokens are now signed with key {} and new JWTs with key {}; \
                 the replaced JWT key stays in the JWKS until jwt_ttl has passed; {RELOAD_NOTE}",
                rotation.signing, rotation.jwt
            );
        }
        KeysCommand::Retire { kid } => {
            admin::retire_key(dir, &Actor::cli(), &kid, now)?;
            eprintln!("key {kid} is retired: its tokens no longer work; {RELOAD_NOTE}");
        }
        KeysCommand::Reset { yes, json } => {
            let reset = admin::reset_keys(dir, &Actor::cli(), now, yes)?;
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

/// One key of `keys list --json`.
fn key_json(key: &KeyListing) -> serde_json::Value {
    let mut row = serde_json::json!({
        "kid": key.kid,
        "use": key.usage,
        "state": key.state,
        "active": key.state == "active",
        "created_at": rfc3339(key.created_at),
        "retired_at": key.retired_at.map(rfc3339),
    });
    if key.usage == "jwt" {
        row["active_from"] = key.active_from.map(rfc3339).into();
        row["replaced_at"] = key.replaced_at.map(rfc3339).into();
    }
    row
}
