//! `wxauth admins`: the people who may sign in to the console.

use std::path::Path;

use clap::{Args, Subcommand};

use super::common::{DataDirArgs, merged_layer, print_json, table};
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::config::Layer;
use crate::db;
use crate::http::console::SETUP_PATH;
use crate::ops::admin::{self, AdminError};
use crate::ops::admins::{self, Link};
use crate::ops::audit::Actor;

#[derive(Debug, Args)]
pub(super) struct AdminsArgs {
    #[command(flatten)]
    pub(super) dir: DataDirArgs,
    #[command(subcommand)]
    pub(super) command: AdminsCommand,
}

#[derive(Debug, Subcommand)]
pub(super) enum AdminsCommand {
    /// Create an admin and print a one-time link, valid 24 hours, to choose a password.
    Create {
        /// The admin's sign-in name: letters, digits, `.`, `_`, `-` or `@`
        name: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// List the admins.
    List {
        /// Print a JSON array instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Disable an admin: their console sign-ins end at once.
    Disable {
        /// The admin's name
        name: String,
    },
    /// Forget an admin's password, end their sign-ins, enable them if disabled, and
    /// print a new one-time link to choose a password.
    Reset {
        /// The admin's name
        name: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn admins(
    dir: &Path,
    args: &DataDirArgs,
    command: AdminsCommand,
) -> Result<(), AdminError> {
    let now = SystemClock.now();
    let conn = db::open_existing(dir)?;
    match command {
        AdminsCommand::Create { name, json } => {
            let link =
                admin::in_transaction(&conn, |tx| admins::create(tx, &Actor::cli(), &name, now))?;
            print_link(args, &name, &link, json, "is created")?;
        }
        AdminsCommand::List { json } => {
            let records = admins::list(&conn, now)?;
            if json {
                print_json(&records);
            } else if records.is_empty() {
                eprintln!("no admins yet: create one with `wxauth admins create NAME`");
            } else {
                let rows = records
                    .iter()
                    .map(|a| {
                        vec![
                            a.name.clone(),
                            a.state.to_owned(),
                            a.created_at.clone(),
                            a.setup_link_expires_at
                                .clone()
                                .unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["NAME", "STATE", "CREATED", "SETUP LINK UNTIL"], rows)
                );
            }
        }
        AdminsCommand::Disable { name } => {
            admin::in_transaction(&conn, |tx| admins::disable(tx, &Actor::cli(), &name, now))?;
            eprintln!("admin {name} is disabled; their console sign-ins have ended");
        }
        AdminsCommand::Reset { name, json } => {
            let link =
                admin::in_transaction(&conn, |tx| admins::reset(tx, &Actor::cli(), &name, now))?;
            print_link(args, &name, &link, json, "is reset")?;
        }
    }
    Ok(())
}

/// Prints the setup link: the URL alone on stdout (or JSON), the explanation on stderr.
fn print_link(
    args: &DataDirArgs,
    name: &str,
    link: &Link,
    json: bool,
    what: &str,
) -> Result<(), AdminError> {
    let base = console_base(args).map_err(AdminError::Refused)?;
    let url = format!("{base}{SETUP_PATH}?token={}", link.secret.expose());
    if json {
        print_json(&serde_json::json!({
            "name": name,
            "setup_url": url,
            "expires_at": rfc3339(link.expires_at),
        }));
    } else {
        println!("{url}");
        eprintln!(
            "admin {name} {what}. Send them the link above: it lets them choose a password \
             once, until {}. Anyone holding it can, so send it privately.",
            rfc3339(link.expires_at)
        );
    }
    Ok(())
}

/// Where browsers reach the console: `admin_listen` when set (the console is only
/// there), else `public_url`, else `listen`.
fn console_base(args: &DataDirArgs) -> Result<String, String> {
    let env = std::env::vars().collect();
    let layer = merged_layer(args.config.as_ref(), Layer::default(), &env)?;
    Ok(base_of(&layer))
}

fn base_of(layer: &Layer) -> String {
    if let (None, Some(public)) = (layer.admin_listen, &layer.public_url) {
        return public.trim_end_matches('/').to_owned();
    }
    let mut addr = layer
        .admin_listen
        .or(layer.listen)
        .unwrap_or(crate::config::DEFAULT_LISTEN);
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_point_at_where_the_console_is_served() {
        let mut layer = Layer::default();
        assert_eq!(base_of(&layer), "http://127.0.0.1:8080");
        layer.listen = Some("0.0.0.0:9000".parse().unwrap());
        assert_eq!(base_of(&layer), "http://127.0.0.1:9000");
        layer.public_url = Some("https://auth.example.com/".into());
        assert_eq!(base_of(&layer), "https://auth.example.com");
        layer.admin_listen = Some("10.0.0.5:9443".parse().unwrap());
        assert_eq!(base_of(&layer), "http://10.0.0.5:9443");
    }
}
