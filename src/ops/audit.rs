//! The audit log: every change an admin makes, from the console or the command line,
//! with who made it, from where and when. Entries are written in the transaction of the
//! change they describe, so that neither exists without the other.

use std::net::IpAddr;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::clock::{UnixTime, rfc3339};
use crate::db::DbError;

/// Who made a change, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `console:<admin>`, `cli:<system user>` or `wxauth` for the server's own schedule.
    pub name: String,
    /// The browser's address, `cli@<host>`, or `schedule`.
    pub source: String,
}

impl Actor {
    /// An admin signed in to the console, from the browser at `ip`.
    pub fn console(admin: &str, ip: Option<IpAddr>) -> Actor {
        Actor {
            name: format!("console:{admin}"),
            source: ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
        }
    }

    /// Whoever runs this command line: the user `sudo` was run by if it was, else the
    /// login user, on this host.
    pub fn cli() -> Actor {
        let user = ["SUDO_USER", "USER", "LOGNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "unknown".to_owned());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        Actor {
            name: format!("cli:{user}"),
            source: if host.is_empty() {
                "cli".to_owned()
            } else {
                format!("cli@{host}")
            },
        }
    }

    /// The server itself, acting on its own schedule (backups).
    pub fn schedule() -> Actor {
        Actor {
            name: "wxauth".to_owned(),
            source: "schedule".to_owned(),
        }
    }
}

/// What was done: one of a fixed set, so that the log can be searched by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    UserBan,
    UserUnban,
    UserMerge,
    SessionRevoke,
    UserSessionsRevoke,
    ServiceKeyCreate,
    ServiceKeyRevoke,
    KeysRotate,
    KeyRetire,
    KeysReset,
    AdminCreate,
    AdminDisable,
    AdminReset,
    AdminSetup,
    AdminSignIn,
    Backup,
    Restore,
}

impl Action {
    /// The action as stored and shown, such as `user.ban`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::UserBan => "user.ban",
            Action::UserUnban => "user.unban",
            Action::UserMerge => "user.merge",
            Action::SessionRevoke => "session.revoke",
            Action::UserSessionsRevoke => "user.sessions_revoke",
            Action::ServiceKeyCreate => "service_key.create",
            Action::ServiceKeyRevoke => "service_key.revoke",
            Action::KeysRotate => "keys.rotate",
            Action::KeyRetire => "keys.retire",
            Action::KeysReset => "keys.reset",
            Action::AdminCreate => "admin.create",
            Action::AdminDisable => "admin.disable",
            Action::AdminReset => "admin.reset",
            Action::AdminSetup => "admin.setup",
            Action::AdminSignIn => "admin.sign_in",
            Action::Backup => "backup",
            Action::Restore => "restore",
        }
    }
}

/// Appends an entry: `actor` did `action` to `target` at `now`; `detail` holds the
/// action's own fields (a JSON object).
pub fn record(
    conn: &Connection,
    actor: &Actor,
    action: Action,
    target: Option<&str>,
    detail: &serde_json::Value,
    now: UnixTime,
) -> Result<(), DbError> {
    conn.prepare_cached(
        "INSERT INTO audit_log (at, actor, source, action, target, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        now,
        actor.name,
        actor.source,
        action.as_str(),
        target,
        detail.to_string()
    ])?;
    Ok(())
}

/// One entry of the log.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub source: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: serde_json::Value,
}

const COLUMNS: &str = "id, at, actor, source, action, target, detail";

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    let detail: String = r.get(6)?;
    Ok(Entry {
        id: r.get(0)?,
        at: rfc3339(r.get(1)?),
        actor: r.get(2)?,
        source: r.get(3)?,
        action: r.get(4)?,
        target: r.get(5)?,
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
    })
}

/// A page of entries, newest first: at most `limit`, before entry `before` if given,
/// and only those acting on `target` if given.
pub fn page(
    conn: &Connection,
    target: Option<&str>,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<Entry>, DbError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM audit_log \
         WHERE (?1 IS NULL OR target = ?1) AND id < ?2 ORDER BY id DESC LIMIT ?3"
    ))?;
    let rows = stmt
        .query_map(params![target, before.unwrap_or(i64::MAX), limit], entry)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The latest entry of `action`, if any.
pub fn latest(conn: &Connection, action: Action) -> Result<Option<Entry>, DbError> {
    let found = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM audit_log WHERE action = ?1 ORDER BY id DESC LIMIT 1"
        ))?
        .query_row([action.as_str()], entry)
        .optional()?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::db::migrate(&mut conn).unwrap();
        conn
    }

    #[test]
    fn entries_come_back_newest_first_and_by_target() {
        let conn = db();
        let alice = Actor::console("alice", Some("203.0.113.9".parse().unwrap()));
        let detail = serde_json::json!({ "reason": "spam" });
        record(&conn, &alice, Action::UserBan, Some("u_1"), &detail, 100).unwrap();
        record(
            &conn,
            &Actor::schedule(),
            Action::Backup,
            None,
            &serde_json::json!({}),
            200,
        )
        .unwrap();
        record(
            &conn,
            &alice,
            Action::UserUnban,
            Some("u_1"),
            &serde_json::json!({}),
            300,
        )
        .unwrap();

        let all = page(&conn, None, None, 10).unwrap();
        let actions: Vec<&str> = all.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["user.unban", "backup", "user.ban"]);
        assert_eq!(all[2].actor, "console:alice");
        assert_eq!(all[2].source, "203.0.113.9");
        assert_eq!(all[2].detail, detail);
        assert_eq!(all[2].at, "1970-01-01T00:01:40Z");

        let of_user = page(&conn, Some("u_1"), None, 10).unwrap();
        assert_eq!(of_user.len(), 2);
        let older = page(&conn, None, Some(all[0].id), 1).unwrap();
        assert_eq!(older[0].action, "backup");
        assert_eq!(
            latest(&conn, Action::Backup).unwrap().unwrap().at,
            "1970-01-01T00:03:20Z"
        );
        assert!(latest(&conn, Action::Restore).unwrap().is_none());
    }

    #[test]
    fn the_command_line_names_its_user_and_host() {
        let actor = Actor::cli();
        assert!(actor.name.starts_with("cli:"), "{actor:?}");
        assert!(actor.source.starts_with("cli"), "{actor:?}");
    }
}
