//! `wxauth users`: list, show, ban and unban users; list conflicts and merge users.

use std::path::Path;

use clap::{Args, Subcommand};

use super::common::{DataDirArgs, print_json, table};
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::db;
use crate::ops::admin::{self, AdminError, SessionStatus, UserRecord, UserRef};
use crate::ops::audit::Actor;
use crate::ops::merge;

#[derive(Debug, Args)]
pub(super) struct UsersArgs {
    #[command(flatten)]
    pub(super) dir: DataDirArgs,
    #[command(subcommand)]
    pub(super) command: UsersCommand,
}

#[derive(Debug, Subcommand)]
pub(super) enum UsersCommand {
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
    /// List pairs of users found to be one person (the same unionid), not yet merged.
    Conflicts {
        /// Print a JSON array instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Merge OTHER into KEEP: OTHER's identities and live sessions move to KEEP, KEEP's
    /// empty profile fields are filled from OTHER's, and OTHER's id becomes an alias of
    /// KEEP (its tokens authenticate as KEEP).
    Merge {
        /// The user that stays (`u_…`).
        keep: String,
        /// The user merged into KEEP (`u_…`).
        other: String,
        /// Print what was merged as JSON
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn users(dir: &Path, command: UsersCommand) -> Result<(), AdminError> {
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
                let records = page
                    .into_iter()
                    .map(|u| UserRecord::load(&conn, u))
                    .collect::<Result<Vec<_>, _>>()?;
                print_json(&records);
            } else {
                let rows = page
                    .iter()
                    .map(|u| {
                        vec![
                            u.public_id.clone(),
                            u.apps.join(","),
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
                    table(&["ID", "APPS", "NICKNAME", "CREATED", "BANNED UNTIL"], rows)
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
            let record = UserRecord::load(&conn, row)?;
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
            admin::in_transaction(&conn, |tx| {
                admin::ban(tx, &Actor::cli(), &user, until, reason.as_deref(), now)
            })?;
            eprintln!("{user} is banned until {}", rfc3339(until));
        }
        UsersCommand::Unban { user } => {
            let conn = db::open_existing(dir)?;
            admin::in_transaction(&conn, |tx| admin::unban(tx, &Actor::cli(), &user, now))?;
            eprintln!("{user} is no longer banned");
        }
        UsersCommand::Conflicts { json } => {
            let conn = db::open_existing(dir)?;
            let found = merge::conflicts(&conn)?;
            if json {
                print_json(&found);
            } else if found.is_empty() {
                eprintln!("no conflicts");
            } else {
                let rows = found
                    .iter()
                    .map(|c| {
                        vec![
                            c.unionid.clone(),
                            c.user_id.clone(),
                            c.other_user_id.clone(),
                            c.found_at.clone(),
                        ]
                    })
                    .collect();
                print!("{}", table(&["UNIONID", "USER", "OTHER", "FOUND"], rows));
                eprintln!("merge a pair with: wxauth users merge USER OTHER");
            }
        }
        UsersCommand::Merge { keep, other, json } => {
            let conn = db::open_existing(dir)?;
            let merged = admin::in_transaction(&conn, |tx| {
                merge::merge(tx, &Actor::cli(), &keep, &other, now)
            })?;
            if json {
                print_json(&merged);
            } else {
                eprintln!(
                    "{} is merged into {}: {} identities and {} live sessions moved; {} is now an alias of {}",
                    merged.merged_user_id,
                    merged.user_id,
                    merged.identities,
                    merged.sessions,
                    merged.merged_user_id,
                    merged.user_id
                );
            }
        }
    }
    Ok(())
}

/// One user as `users show` prints it: a field a line.
pub(super) fn user_text(user: &UserRecord, banned: bool, live_sessions: usize) -> String {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut lines = vec![
        ("id", user.id.clone()),
        ("apps", user.apps.join(",")),
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
    for identity in &user.identities {
        lines.push((
            "identity",
            format!(
                "{} openid {} unionid {} since {}",
                identity.appid,
                identity.openid,
                or_dash(&identity.unionid),
                identity.created_at
            ),
        ));
    }
    lines
        .into_iter()
        .map(|(k, v)| format!("{k:<14} {v}\n"))
        .collect()
}
