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

use crate::app::App;
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::config::{
    Config, ConfigError, DEFAULT_LISTEN, DurationSetting, Layer, LogFormat, default_data_dir,
};
use crate::datadir;
use crate::db;
use crate::domain::service_keys::{self, ServiceKeyError, ServiceKeyRow};
use crate::keys::secret::Secret;
use crate::ops::admin::{self, AdminError, SessionRecord, SessionStatus, UserRecord, UserRef};
use crate::ops::backup;
use crate::ops::check::{self, Finding, Status};
use crate::wechat::fake::MockWeChat;

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
    /// List, show, ban and unban users.
    Users(UsersArgs),
    /// List a user's sessions and revoke sessions.
    Sessions(SessionsArgs),
    /// Create, list and revoke the keys services use to call `POST /v1/introspect`.
    ServiceKeys(ServiceKeysArgs),
    /// Write a consistent copy of the database and signing keys to one file, while the
    /// server keeps serving. The file holds secrets: keep it as safe as the data directory.
    Backup(BackupArgs),
    /// Replace the database and signing keys with a backup's. Stop the server first; the
    /// files it replaces are kept in a `pre-restore-<time>` directory.
    Restore(RestoreArgs),
    /// Check the configuration and data directory as `serve` would, without serving.
    Check(CheckArgs),
    /// Ask a running server whether it is ready (GET /readyz); exits 0 if it is.
    Healthcheck(HealthcheckArgs),
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

#[derive(Debug, Args)]
struct SessionsArgs {
    #[command(flatten)]
    dir: DataDirArgs,
    #[command(subcommand)]
    command: SessionsCommand,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// List users, newest first, one page at a time.
    List {
        /// Only the users of this AppID
        #[arg(long, value_name = "APPID")]
        app: Option<String>,
        /// Users per page (1 to 1000)
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=i64::from(admin::MAX_PAGE)))]
        limit: u32,
        /// Start after this user: the last id of the previous page
        #[arg(long, value_name = "USER")]
        before: Option<String>,
        /// Print a JSON array instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show everything stored about one user, openid and unionid included.
    #[command(group = clap::ArgGroup::new("which").required(true))]
    Show {
        /// The user's id (`u_…`)
        #[arg(group = "which")]
        user: Option<String>,
        /// Find the user by openid instead
        #[arg(long, group = "which")]
        openid: Option<String>,
        /// The AppID the openid belongs to, when several apps are configured
        #[arg(
            long,
            value_name = "APPID",
            requires = "openid",
            conflicts_with = "user"
        )]
        app: Option<String>,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
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

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// List a user's sessions, newest first, live and ended.
    List {
        /// The user's id (`u_…`)
        user: String,
        /// Print a JSON array instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Revoke one session, or every session of a user; a running server refuses the
    /// token from the next request on.
    #[command(group = clap::ArgGroup::new("which").required(true))]
    Revoke {
        /// The session's id (`s_…`)
        #[arg(group = "which")]
        session: Option<String>,
        /// Revoke every session of this user (`u_…`) instead
        #[arg(long, value_name = "USER", group = "which")]
        user: Option<String>,
    },
}

#[derive(Debug, Args)]
struct BackupArgs {
    #[command(flatten)]
    dir: DataDirArgs,
    /// The backup file to write; it must not exist yet
    file: PathBuf,
    /// Encrypt the backup with the passphrase in this file (AES-256-GCM, key from PBKDF2)
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Print what the backup holds as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct RestoreArgs {
    #[command(flatten)]
    dir: DataDirArgs,
    /// The backup file, as `wxauth backup` wrote it; `-` reads it from standard input
    file: PathBuf,
    /// The passphrase of an encrypted backup, in this file
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Only verify the backup and say what it holds; change nothing
    #[arg(long)]
    dry_run: bool,
    /// Print the outcome as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Also ask WeChat (stable_token) whether it accepts each app's AppID and AppSecret
    #[arg(long)]
    online: bool,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct HealthcheckArgs {
    #[command(flatten)]
    dir: DataDirArgs,
    /// The URL to probe [default: /readyz on the configured listen address]
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// How long to wait for the answer
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    timeout: DurationSetting,
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
    // The fake WeChat answers each call in a few microseconds; on one thread it leaves
    // the other cores to the server it stands beside on a development machine or in a
    // benchmark, and spares the hand-offs between threads.
    let mut builder = match cli.command {
        Command::MockWechat(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
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
        Command::Sessions(args) => admin_command(&args.dir, |dir| sessions(dir, args.command)),
        Command::ServiceKeys(args) => service_keys_command(args),
        Command::Backup(args) => admin_command(&args.dir, |dir| backup(dir, &args)),
        Command::Restore(args) => admin_command(&args.dir, |dir| restore(dir, &args)),
        Command::Check(args) => runtime.block_on(check(args)),
        Command::Healthcheck(args) => runtime.block_on(healthcheck(args)),
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
        UsersCommand::List {
            app,
            limit,
            before,
            json,
        } => {
            let conn = db::open_existing(dir)?;
            let page = admin::list_users(&conn, app.as_deref(), before.as_deref(), limit)?;
            let last = page.last().map(|u| u.public_id.clone());
            let full = page.len() == limit as usize;
            if json {
                let records: Vec<UserRecord> = page.into_iter().map(UserRecord::from).collect();
                print_json(&records);
            } else {
                let rows = page
                    .iter()
                    .map(|u| {
                        vec![
                            u.public_id.clone(),
                            u.appid.clone(),
                            u.nickname.clone().unwrap_or_else(|| "-".into()),
                            rfc3339(u.created_at),
                            if u.is_banned(now) {
                                rfc3339(u.banned_until.unwrap_or_default())
                            } else {
                                "-".into()
                            },
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["ID", "APP", "NICKNAME", "CREATED", "BANNED UNTIL"], rows)
                );
            }
            if let (true, Some(last)) = (full, last) {
                eprintln!("more users may follow: add --before {last}");
            }
        }
        UsersCommand::Show {
            user,
            openid,
            app,
            json,
        } => {
            let conn = db::open_existing(dir)?;
            let which = match (&user, &openid) {
                (Some(id), _) => UserRef::Id(id),
                (None, Some(openid)) => UserRef::OpenId {
                    openid,
                    appid: app.as_deref(),
                },
                (None, None) => unreachable!("clap requires a user id or --openid"),
            };
            let (row, sessions) = admin::user_sessions(&conn, which)?;
            let live = sessions
                .iter()
                .filter(|s| SessionStatus::of(s, now) == SessionStatus::Live)
                .count();
            let banned = row.is_banned(now);
            let record = UserRecord::from(row);
            if json {
                print_json(&serde_json::json!({
                    "user": record,
                    "banned": banned,
                    "live_sessions": live,
                }));
            } else {
                print!("{}", user_text(&record, banned, live));
            }
        }
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

fn sessions(dir: &Path, command: SessionsCommand) -> Result<(), AdminError> {
    let now = SystemClock.now();
    let conn = db::open_existing(dir)?;
    match command {
        SessionsCommand::List { user, json } => {
            let (user, sessions) = admin::user_sessions(&conn, UserRef::Id(&user))?;
            let records: Vec<SessionRecord> = sessions
                .into_iter()
                .map(|s| SessionRecord::new(s, &user.public_id, now))
                .collect();
            if json {
                print_json(&records);
            } else {
                let rows = records
                    .iter()
                    .map(|s| {
                        let status = match &s.revoked_reason {
                            Some(reason) => format!("revoked ({reason})"),
                            None => s.status.as_str().to_owned(),
                        };
                        vec![
                            s.id.clone(),
                            status,
                            s.created_at.clone(),
                            s.last_seen_at.clone(),
                            s.expires_at.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["ID", "STATUS", "CREATED", "LAST SEEN", "EXPIRES"], rows)
                );
            }
        }
        SessionsCommand::Revoke {
            session: Some(session),
            ..
        } => {
            admin::revoke_session(&conn, &session, now)?;
            eprintln!(
                "session {session} is revoked; its token is refused from the next request on"
            );
        }
        SessionsCommand::Revoke {
            user: Some(user), ..
        } => {
            let n = admin::revoke_user_sessions(&conn, &user, now)?;
            eprintln!("revoked {n} session(s) of {user}");
        }
        SessionsCommand::Revoke { .. } => unreachable!("clap requires a session or --user"),
    }
    Ok(())
}

fn backup(dir: &Path, args: &BackupArgs) -> Result<(), AdminError> {
    let passphrase = read_passphrase(args.passphrase_file.as_deref())?;
    let summary = backup::create(dir, &args.file, SystemClock.now(), passphrase.as_ref())?;
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

fn restore(dir: &Path, args: &RestoreArgs) -> Result<(), AdminError> {
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
    let restored = backup::restore(dir, &args.file, SystemClock.now(), passphrase.as_ref())?;
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
fn read_passphrase(path: Option<&Path>) -> Result<Option<Secret>, AdminError> {
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

/// One user as `users show` prints it: a field a line.
fn user_text(user: &UserRecord, banned: bool, live_sessions: usize) -> String {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut lines = vec![
        ("id", user.id.clone()),
        ("appid", user.appid.clone()),
        ("openid", user.openid.clone()),
        ("unionid", or_dash(&user.unionid)),
        ("nickname", or_dash(&user.nickname)),
        ("avatar_url", or_dash(&user.avatar_url)),
        ("gender", user.gender.to_string()),
        ("country", or_dash(&user.country)),
        ("province", or_dash(&user.province)),
        ("city", or_dash(&user.city)),
        ("language", or_dash(&user.language)),
        ("phone", or_dash(&user.phone)),
        ("created_at", user.created_at.clone()),
        ("updated_at", user.updated_at.clone()),
        ("live_sessions", live_sessions.to_string()),
    ];
    if banned {
        lines.push(("banned_until", or_dash(&user.banned_until)));
        lines.push(("ban_reason", or_dash(&user.ban_reason)));
    }
    lines
        .into_iter()
        .map(|(k, v)| format!("{k:<14} {v}\n"))
        .collect()
}

/// Prints `value` as pretty JSON on stdout.
fn print_json(value: &impl serde::Serialize) {
    let text = serde_json::to_string_pretty(value).expect("admin records serialize");
    println!("{text}");
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
    // Colours only for a person at a terminal, never into a pipe, file or journal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
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

async fn check(args: CheckArgs) -> ExitCode {
    let (findings, code) = match load_config(&args.serve) {
        Err(e) => (
            vec![Finding {
                subject: "config".into(),
                status: Status::Fail,
                detail: e,
            }],
            EXIT_CONFIG,
        ),
        Ok(config) => {
            let mut findings = check::offline(&config);
            if args.online {
                findings.extend(check::online(&config).await);
            }
            let failed = findings.iter().any(|f| f.status == Status::Fail);
            (findings, if failed { EXIT_FAILURE } else { 0 })
        }
    };
    if args.json {
        print_json(&serde_json::json!({"ok": code == 0, "checks": findings}));
    } else {
        for f in &findings {
            println!("{:<5} {:<14} {}", f.status.label(), f.subject, f.detail);
        }
    }
    ExitCode::from(code)
}

async fn healthcheck(args: HealthcheckArgs) -> ExitCode {
    let url = match args.url {
        Some(url) => url,
        None => match resolve_listen(&args.dir) {
            Ok(listen) => check::readyz_url(listen),
            Err(e) => {
                eprintln!("wxauth: configuration error: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    match check::probe(&url, args.timeout.0).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wxauth: not ready: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The address `serve` would listen on, from the config file, the environment and
/// the defaults; nothing else needs to be valid.
fn resolve_listen(args: &DataDirArgs) -> Result<SocketAddr, String> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let flags = Layer {
        data_dir: args.data_dir.clone(),
        ..Layer::default()
    };
    let layer = merged_layer(args.config.as_ref(), flags, &env)?;
    Ok(layer.listen.unwrap_or(DEFAULT_LISTEN))
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
    let rows = keys
        .iter()
        .map(|k| {
            vec![
                k.public_id.clone(),
                k.name.clone(),
                rfc3339(k.created_at),
                or_dash(k.last_used_at),
                or_dash(k.revoked_at),
            ]
        })
        .collect();
    table(&["ID", "NAME", "CREATED", "LAST USED", "REVOKED"], rows)
}

/// `rows` under `header` as an aligned text table, columns two spaces apart.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let rows: Vec<Vec<String>> = std::iter::once(header).chain(rows).collect();
    let mut widths = vec![0usize; rows[0].len()];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
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
