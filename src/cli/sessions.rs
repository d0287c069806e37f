//! `wxauth sessions`: list a user's sessions and revoke them.

use std::path::Path;

use clap::{Args, Subcommand};

use super::common::{DataDirArgs, print_json, table};
use crate::clock::{Clock, SystemClock};
use crate::db;
use crate::ops::admin::{self, AdminError, SessionRecord, UserRef};
use crate::ops::audit::Actor;

#[derive(Debug, Args)]
pub(super) struct SessionsArgs {
    #[command(flatten)]
    pub(super) dir: DataDirArgs,
    #[command(subcommand)]
    pub(super) command: SessionsCommand,
}

#[derive(Debug, Subcommand)]
pub(super) enum SessionsCommand {
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

pub(super) fn sessions(dir: &Path, command: SessionsCommand) -> Result<(), AdminError> {
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
            admin::in_transaction(&conn, |tx| {
                admin::revoke_session(tx, &Actor::cli(), &session, now)
            })?;
            eprintln!(
                "session {session} is revoked; its token is refused from the next request on"
            );
        }
        SessionsCommand::Revoke {
            user: Some(user), ..
        } => {
            let n = admin::in_transaction(&conn, |tx| {
                admin::revoke_user_sessions(tx, &Actor::cli(), &user, now)
            })?;
            eprintln!("revoked {n} session(s) of {user}");
        }
        SessionsCommand::Revoke { .. } => unreachable!("clap requires a session or --user"),
    }
    Ok(())
}
