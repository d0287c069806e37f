//! `wxauth service-keys`: create, list and revoke service keys.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::common::{DataDirArgs, EXIT_CONFIG, EXIT_FAILURE, resolve_data_dir, table};
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::db;
use crate::domain::service_keys::{self, Scope, ServiceKeyError, ServiceKeyRow};
use crate::ops::admin::{self, AdminError};
use crate::ops::audit::Actor;

#[derive(Debug, Args)]
pub(super) struct ServiceKeysArgs {
    #[command(flatten)]
    pub(super) dir: DataDirArgs,
    #[command(subcommand)]
    pub(super) command: ServiceKeysCommand,
}

#[derive(Debug, Subcommand)]
pub(super) enum ServiceKeysCommand {
    /// Create a key and print it on stdout; it is stored hashed and cannot be shown again.
    Create {
        /// A name for the service that will use the key, e.g. `billing`
        #[arg(value_parser = parse_key_name)]
        name: String,
        /// What the key may call, comma-separated: introspect (POST /v1/introspect),
        /// access_token (the shared WeChat access_token), events (GET /v1/events)
        #[arg(long, value_name = "SCOPES", default_value = "introspect", value_parser = parse_scope_list)]
        scope: Scopes,
    },
    /// List the keys (never the keys themselves).
    List {
        /// Print a JSON array instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key; a running server refuses it from the next call on.
    Revoke {
        /// The key's name or its `sk_…` id
        #[arg(value_name = "NAME|ID")]
        key: String,
    },
}

pub(super) fn parse_key_name(name: &str) -> Result<String, String> {
    service_keys::validate_name(name).map(|()| name.to_owned())
}

/// The scopes of `--scope`, parsed as one value.
#[derive(Debug, Clone)]
pub(super) struct Scopes(Vec<Scope>);

fn parse_scope_list(text: &str) -> Result<Scopes, String> {
    service_keys::parse_scopes(text).map(Scopes)
}

/// Why a `service-keys` command failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ServiceKeysFailure {
    #[error(transparent)]
    Keys(#[from] AdminError),
    #[error("cannot write to stdout: {0}")]
    Output(#[from] std::io::Error),
}

pub(super) fn service_keys_command(args: ServiceKeysArgs) -> ExitCode {
    let data_dir = match resolve_data_dir(&args.dir) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("wxauth: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match run_service_keys(&data_dir, args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wxauth: {e}");
            ExitCode::from(match e {
                ServiceKeysFailure::Keys(AdminError::ServiceKey(ServiceKeyError::InvalidName(
                    _,
                ))) => EXIT_CONFIG,
                _ => EXIT_FAILURE,
            })
        }
    }
}

pub(super) fn run_service_keys(
    data_dir: &Path,
    command: ServiceKeysCommand,
) -> Result<(), ServiceKeysFailure> {
    let conn = db::open_existing(data_dir).map_err(AdminError::from)?;
    let now = SystemClock.now();
    let mut stdout = std::io::stdout().lock();
    match command {
        ServiceKeysCommand::Create { name, scope } => {
            let (row, key) = admin::in_transaction(&conn, |tx| {
                admin::create_service_key(tx, &Actor::cli(), &name, &scope.0, now)
            })?;
            if let Err(e) = writeln!(stdout, "{}", key.expose()).and_then(|()| stdout.flush()) {
                // Nobody saw the key, so nobody can use it: take it back.
                admin::in_transaction(&conn, |tx| {
                    admin::revoke_service_key(tx, &Actor::cli(), &row.public_id, now)
                })?;
                return Err(e.into());
            }
            eprintln!(
                "Created service key `{}` ({}) with scopes {}. Store it now: it is kept only \
                 as a hash and cannot be shown again. Services send it as \
                 `Authorization: Bearer <key>`.",
                row.name,
                row.public_id,
                row.scope_list()
            );
        }
        ServiceKeysCommand::List { json } => {
            let keys = service_keys::list(&conn).map_err(AdminError::from)?;
            if json {
                let rows: Vec<KeyListing> = keys.iter().map(KeyListing::from).collect();
                serde_json::to_writer_pretty(&mut stdout, &rows).map_err(std::io::Error::from)?;
                writeln!(stdout)?;
            } else {
                stdout.write_all(key_table(&keys).as_bytes())?;
            }
            stdout.flush()?;
        }
        ServiceKeysCommand::Revoke { key } => {
            let row = admin::in_transaction(&conn, |tx| {
                admin::revoke_service_key(tx, &Actor::cli(), &key, now)
            })?;
            eprintln!("Revoked service key `{}` ({}).", row.name, row.public_id);
        }
    }
    Ok(())
}

/// One key in `service-keys list --json`.
#[derive(serde::Serialize)]
pub(super) struct KeyListing<'a> {
    pub(super) id: &'a str,
    pub(super) name: &'a str,
    pub(super) active: bool,
    pub(super) scopes: Vec<&'static str>,
    pub(super) created_at: String,
    pub(super) last_used_at: Option<String>,
    pub(super) revoked_at: Option<String>,
}

impl<'a> From<&'a ServiceKeyRow> for KeyListing<'a> {
    fn from(key: &'a ServiceKeyRow) -> Self {
        KeyListing {
            id: &key.public_id,
            name: &key.name,
            active: key.is_live(),
            scopes: key.scopes.iter().map(|s| s.as_str()).collect(),
            created_at: rfc3339(key.created_at),
            last_used_at: key.last_used_at.map(rfc3339),
            revoked_at: key.revoked_at.map(rfc3339),
        }
    }
}

/// The keys as an aligned text table, one line each under a header.
pub(super) fn key_table(keys: &[ServiceKeyRow]) -> String {
    let or_dash = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), rfc3339);
    let rows = keys
        .iter()
        .map(|k| {
            vec![
                k.public_id.clone(),
                k.name.clone(),
                k.scope_list(),
                rfc3339(k.created_at),
                or_dash(k.last_used_at),
                or_dash(k.revoked_at),
            ]
        })
        .collect();
    table(
        &["ID", "NAME", "SCOPES", "CREATED", "LAST USED", "REVOKED"],
        rows,
    )
}
