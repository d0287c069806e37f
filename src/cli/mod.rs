//! The command line: `wxauth serve` and `wxauth mock-wechat`, their flags and how they
//! layer over the config file and the environment; and the admin commands (`keys`,
//! `users`, `service-keys`, `admins`) that work on a data directory beside a running server.

mod admins;
mod backup;
mod check;
mod common;
mod healthcheck;
mod keys;
mod mock_wechat;
mod serve;
mod service_keys;
mod sessions;
mod users;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use admins::{AdminsArgs, admins};
use backup::{BackupArgs, RestoreArgs, backup, restore};
use check::{CheckArgs, check};
use common::{EXIT_FAILURE, admin_command};
use healthcheck::{HealthcheckArgs, healthcheck};
use keys::{KeysArgs, keys};
use mock_wechat::{MockArgs, mock_wechat};
use serve::{ServeArgs, serve};
use service_keys::{ServiceKeysArgs, service_keys_command};
use sessions::{SessionsArgs, sessions};
use users::{UsersArgs, users};

/// What `wxauth --version` prints after the name: the package version, then the commit
/// and the build date that build.rs found.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("BUILD_GIT_COMMIT"),
    " ",
    env!("BUILD_DATE"),
    ")"
);

/// wxauth: login and sessions for WeChat Mini Programs, on one SQLite file.
#[derive(Debug, Parser)]
#[command(name = "wxauth", version = VERSION, about, long_about = None)]
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
    /// Create, list, disable and reset the admins who sign in to the console.
    Admins(AdminsArgs),
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
        Command::Admins(AdminsArgs { dir, command }) => {
            admin_command(&dir, |data_dir| admins(data_dir, &dir, command))
        }
        Command::Backup(args) => admin_command(&args.dir, |dir| backup(dir, &args)),
        Command::Restore(args) => admin_command(&args.dir, |dir| restore(dir, &args)),
        Command::Check(args) => runtime.block_on(check(args)),
        Command::Healthcheck(args) => runtime.block_on(healthcheck(args)),
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
