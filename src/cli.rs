//! The command line: `wxauth serve` and `wxauth mock-wechat`, their flags and how they
//! layer over the config file and the environment; and the admin commands (`keys`,
//! `users`, `service-keys`) that work on a data directory beside a running server.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::admin::{self, AdminError};
use crate::app::App;
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::config::{Config, ConfigError, Layer, LogFormat, default_data_dir};
use crate::datadir;
use crate::db;
use crate::mock_wechat::MockWeChat;
use crate::service_keys::{self, ServiceKeyError, ServiceKeyRow};

/// Exit code for a configuration error (bad file, bad flag value, missing secret).
const EXIT_CONFIG: u8 = 2;
/// Exit code for a failure while starting or running.
const EXIT_FAILURE: u8 = 1;

/// wxauth: login and sessions for WeChat Mini Programs, on one SQLite file.
#[derive(Debug, Parser)]
#[command(name = "wxauth", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the login server.
    Serve(ServeArgs),
    /// Run the fake WeChat API on its own port, for WeChat DevTools and tests.
    MockWechat(MockArgs),
    /// Manage the token signing keys.
    Keys(KeysArgs),
    /// Manage users.
    Users(UsersArgs),
    /// Create, list and revoke the keys services use to call `POST /v1/introspect`.
    ServiceKeys(ServiceKeysArgs),
}

#[derive(Debug, Args)]
struct KeysArgs {
    #[command(flatten)]
    dir: DataDirArgs,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Args)]
struct UsersArgs {
    #[command(flatten)]
    dir: DataDirArgs,
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
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

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Ban a user: login and every authenticated call answer `user_banned`.
    Ban {
        /// The user's id (`u_…`).
        user: String,
        /// When the ban ends: a time (2026-12-31T00:00:00Z) or a duration (30d)
        /// [default: never]
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
        /// Why; shown to the user in the error message.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a user's ban.
    Unban {
        /// The user's id (`u_…`).
        user: String,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Use a built-in fake WeChat: no AppID or AppSecret needed. Never in production.
    #[arg(long)]
    dev: bool,
    /// The TOML config file [default: wxauth.toml in the data directory, if present]
    #[arg(long, value_name = "FILE", env = "WXAUTH_CONFIG")]
    config: Option<PathBuf>,
    /// Where the database and signing keys live [default: the platform's data directory]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The address to serve on [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// WeChat's API base URL [default: https://api.weixin.qq.com]
    #[arg(long, value_name = "URL")]
    wechat_api: Option<String>,
    /// The absolute base for URLs wxauth hands out
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Log filter, e.g. `info` or `wxauth=debug` [default: info]
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
    /// Log format: auto (text on a terminal, JSON otherwise), text or json
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
}

/// Where an admin command finds the data directory; no AppSecret is needed.
#[derive(Debug, Args)]
struct DataDirArgs {
    /// The TOML config file, read for its `data_dir` [default: wxauth.toml in the data directory, if present]
    #[arg(long, value_name = "FILE", env = "WXAUTH_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Where the database lives [default: the platform's data directory]
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServiceKeysArgs {
    #[command(flatten)]
    dir: DataDirArgs,
    #[command(subcommand)]
    command: ServiceKeysCommand,
}

#[derive(Debug, Subcommand)]
enum ServiceKeysCommand {
    /// Create a key and print it on stdout; it is stored hashed and cannot be shown again.
    Create {
        /// A name for the service that will use the key, e.g. `billing`
        #[arg(value_parser = parse_key_name)]
        name: String,
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

fn parse_key_name(name: &str) -> Result<String, String> {
    service_keys::validate_name(name).map(|()| name.to_owned())
}

#[derive(Debug, Args)]
struct MockArgs {
    /// The address to serve the fake WeChat API on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
}

/// Parses the command line and runs the command; the process exit code comes back.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wxauth: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::MockWechat(args) => runtime.block_on(mock_wechat(args)),
        Command::Keys(args) => admin_command(&args.dir, |dir| keys(dir, args.command)),
        Command::Users(args) => admin_command(&args.dir, |dir| users(dir, args.command)),
        Command::ServiceKeys(args) => service_keys_command(args),
    }
}

/// Runs an admin command on the data directory and turns its failure into the exit code.
fn admin_command(dir: &DataDirArgs, run: impl FnOnce(&Path) -> Result<(), AdminError>) -> ExitCode {
    let data_dir = match resolve_data_dir(dir) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("wxauth: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match run(&data_dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wxauth: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

const RELOAD_NOTE: &str = "a running server picks this up within a second";

fn keys(dir: &Path, command: KeysCommand) -> Result<(), AdminError> {
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

fn users(dir: &Path, command: UsersCommand) -> Result<(), AdminError> {
    let now = SystemClock.now();
    match command {
        UsersCommand::Ban {
            user,
            until,
            reason,
        } => {
            let until = match until {
                Some(text) => admin::parse_until(&text, now).map_err(AdminError::Refused)?,
                None => admin::FOREVER,
            };
            let conn = db::open_existing(dir)?;
            admin::ban(&conn, &user, until, reason.as_deref(), now)?;
            eprintln!("{user} is banned until {}", rfc3339(until));
        }
        UsersCommand::Unban { user } => {
            let conn = db::open_existing(dir)?;
            admin::unban(&conn, &user, now)?;
            eprintln!("{user} is no longer banned");
        }
    }
    Ok(())
}

/// Builds the configuration from defaults, file, environment and flags.
fn load_config(args: &ServeArgs) -> Result<Config, String> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let flags = Layer {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        public_url: args.public_url.clone(),
        wechat_api: args.wechat_api.clone(),
        log: args.log.clone(),
        log_format: args.log_format,
        ..Layer::default()
    };
    let mut layer = merged_layer(args.config.as_ref(), flags, &env)?;
    if layer.log.is_none() {
        layer.log = env.get("RUST_LOG").cloned();
    }
    Config::resolve(layer, args.dev, &env).map_err(|e| e.to_string())
}

/// The config file (`config`, or `wxauth.toml` in the data directory), the environment
/// and `flags`, merged in rising priority; not yet validated.
fn merged_layer(
    config: Option<&PathBuf>,
    flags: Layer,
    env: &HashMap<String, String>,
) -> Result<Layer, String> {
    let from_env = Layer::from_env(env).map_err(|e| e.to_string())?;
    let config_path = match config {
        Some(path) => Some(path.clone()),
        None => {
            let dir = flags
                .data_dir
                .clone()
                .or_else(|| from_env.data_dir.clone())
                .or_else(default_data_dir);
            dir.map(|d| d.join(datadir::CONFIG_FILE))
                .filter(|p| p.exists())
        }
    };
    let file = match &config_path {
        Some(path) => Layer::from_file(path).map_err(|e| e.to_string())?,
        None => Layer::default(),
    };
    Ok(file.merge(from_env).merge(flags))
}

/// The data directory an admin command works on, resolved like `serve` does but without
/// needing anything else from the configuration.
fn resolve_data_dir(args: &DataDirArgs) -> Result<PathBuf, String> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let flags = Layer {
        data_dir: args.data_dir.clone(),
        ..Layer::default()
    };
    let layer = merged_layer(args.config.as_ref(), flags, &env)?;
    layer.check_unknown_env().map_err(|e| e.to_string())?;
    layer
        .data_dir
        .or_else(default_data_dir)
        .ok_or_else(|| ConfigError::NoDataDir.to_string())
}

fn init_logging(filter: &str, format: LogFormat) -> Result<(), String> {
    let filter = EnvFilter::try_new(filter).map_err(|e| format!("log filter `{filter}`: {e}"))?;
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> ExitCode {
    let config = match load_config(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("wxauth: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(e) = init_logging(&config.log, config.log_format) {
        eprintln!("wxauth: configuration error: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    if config.dev {
        tracing::warn!(
            "DEV MODE: logins go to a built-in fake WeChat and need no AppSecret. \
             Never run this in production."
        );
    }
    let apps: Vec<String> = config.apps.iter().map(|a| a.appid.clone()).collect();
    let data_dir = config.data_dir.display().to_string();
    let app = match App::start(config, Arc::new(SystemClock)).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("wxauth: cannot start: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    tracing::info!(addr = %app.addr(), data_dir, ?apps, "wxauth is serving");
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    app.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

async fn mock_wechat(args: MockArgs) -> ExitCode {
    if let Err(e) = init_logging("info", LogFormat::Auto) {
        eprintln!("wxauth: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let mock = match MockWeChat::start(args.listen).await {
        Ok(mock) => mock,
        Err(e) => {
            eprintln!("wxauth: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    tracing::info!(
        addr = %mock.addr(),
        "fake WeChat API is serving; point wxauth at it with WXAUTH_WECHAT_API={}",
        mock.base_url()
    );
    shutdown_signal().await;
    mock.shutdown().await;
    ExitCode::SUCCESS
}

/// Why a `service-keys` command failed.
#[derive(Debug, thiserror::Error)]
enum ServiceKeysFailure {
    #[error(transparent)]
    Keys(#[from] ServiceKeyError),
    #[error("cannot write to stdout: {0}")]
    Output(#[from] std::io::Error),
}

fn service_keys_command(args: ServiceKeysArgs) -> ExitCode {
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
                ServiceKeysFailure::Keys(ServiceKeyError::InvalidName(_)) => EXIT_CONFIG,
                _ => EXIT_FAILURE,
            })
        }
    }
}

fn run_service_keys(
    data_dir: &Path,
    command: ServiceKeysCommand,
) -> Result<(), ServiceKeysFailure> {
    let conn = db::open_existing(data_dir).map_err(ServiceKeyError::from)?;
    let now = SystemClock.now();
    let mut stdout = std::io::stdout().lock();
    match command {
        ServiceKeysCommand::Create { name } => {
            let (row, key) = service_keys::create(&conn, &name, now)?;
            if let Err(e) = writeln!(stdout, "{}", key.expose()).and_then(|()| stdout.flush()) {
                // Nobody saw the key, so nobody can use it: take it back.
                service_keys::revoke(&conn, &row.public_id, now)?;
                return Err(e.into());
            }
            eprintln!(
                "Created service key `{}` ({}). Store it now: it is kept only as a hash \
                 and cannot be shown again. Services send it as `Authorization: Bearer <key>`.",
                row.name, row.public_id
            );
        }
        ServiceKeysCommand::List { json } => {
            let keys = service_keys::list(&conn).map_err(ServiceKeyError::from)?;
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
            let row = service_keys::revoke(&conn, &key, now)?;
            eprintln!("Revoked service key `{}` ({}).", row.name, row.public_id);
        }
    }
    Ok(())
}

/// One key in `service-keys list --json`.
#[derive(serde::Serialize)]
struct KeyListing<'a> {
    id: &'a str,
    name: &'a str,
    active: bool,
    created_at: String,
    last_used_at: Option<String>,
    revoked_at: Option<String>,
}

impl<'a> From<&'a ServiceKeyRow> for KeyListing<'a> {
    fn from(key: &'a ServiceKeyRow) -> Self {
        KeyListing {
            id: &key.public_id,
            name: &key.name,
            active: key.is_live(),
            created_at: rfc3339(key.created_at),
            last_used_at: key.last_used_at.map(rfc3339),
            revoked_at: key.revoked_at.map(rfc3339),
        }
    }
}

/// The keys as an aligned text table, one line each under a header.
fn key_table(keys: &[ServiceKeyRow]) -> String {
    let or_dash = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), rfc3339);
    let mut rows = vec![[
        "ID".to_owned(),
        "NAME".to_owned(),
        "CREATED".to_owned(),
        "LAST USED".to_owned(),
        "REVOKED".to_owned(),
    ]];
    rows.extend(keys.iter().map(|k| {
        [
            k.public_id.clone(),
            k.name.clone(),
            rfc3339(k.created_at),
            or_dash(k.last_used_at),
            or_dash(k.revoked_at),
        ]
    }));
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("cannot listen for SIGTERM");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
