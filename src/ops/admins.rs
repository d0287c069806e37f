//! The people who run the console: created from the command line with a one-time link,
//! signed in with a password, and their console sign-ins (the cookie's sessions).
//!
//! Secrets are random and only their SHA-256 is stored: a copy of the database neither
//! signs anyone in nor finishes anyone's setup.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::clock::{UnixTime, rfc3339};
use crate::db::DbError;
use crate::keys::random;
use crate::keys::secret::Secret;
use crate::ops::admin::AdminError;
use crate::ops::audit::{self, Action, Actor};

/// How long a setup link stays valid.
pub const LINK_TTL: i64 = 24 * 3600;
/// A console sign-in ends after this long without a request.
pub const IDLE_TIMEOUT: i64 = 30 * 60;
/// No console sign-in lasts longer than this.
pub const MAX_AGE: i64 = 12 * 3600;
/// The admin `serve --dev` signs in with its printed link.
pub const DEV_ADMIN: &str = "dev";
/// The last-seen time is written at most this often; the idle limit allows for it.
const TOUCH_EVERY: i64 = 60;

const SECRET_BYTES: usize = 32;

/// What a one-time link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    /// Choose a password (a new admin, or one whose password was reset).
    Setup,
    /// Sign in at once; only `serve --dev` makes these.
    SignIn,
}

impl LinkPurpose {
    fn as_str(self) -> &'static str {
        match self {
            LinkPurpose::Setup => "setup",
            LinkPurpose::SignIn => "sign-in",
        }
    }
}

/// A one-time link's secret, to be put in a URL, and when it stops working.
#[derive(Debug)]
pub struct Link {
    pub secret: Secret,
    pub expires_at: UnixTime,
}

/// An admin as `admins list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AdminRecord {
    pub name: String,
    /// `active`, `pending` (the setup link was not used yet) or `disabled`.
    pub state: &'static str,
    pub created_at: String,
    pub setup_link_expires_at: Option<String>,
    pub disabled_at: Option<String>,
}

/// A live console sign-in.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub id: i64,
    pub admin: String,
    pub created_at: UnixTime,
    pub last_seen_at: UnixTime,
}

/// A setup or sign-in link that is unknown, used, expired or of a disabled admin. It
/// says nothing about which, so that it reveals no names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadLink;

/// Whether `name` may name an admin: 1 to 64 letters, digits and `.`, `_`, `-`, `@`.
pub fn validate_name(name: &str) -> Result<(), AdminError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(AdminError::Refused(format!(
            "`{name}` is not a valid admin name: use 1 to 64 letters, digits, `.`, `_`, `-` or `@`"
        )))
    }
}

fn sha256(secret: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// A new random secret for a link or a cookie: 256 bits, base64url.
pub fn new_secret() -> String {
    URL_SAFE_NO_PAD.encode(random::bytes::<SECRET_BYTES>())
}

/// Gives admin `id` a new one-time link for `purpose`, replacing any earlier one.
fn new_link(
    conn: &Connection,
    id: i64,
    purpose: LinkPurpose,
    now: UnixTime,
) -> Result<Link, DbError> {
    let secret = new_secret();
    let expires_at = now + LINK_TTL;
    conn.execute(
        "UPDATE admins SET link_hash = ?2, link_purpose = ?3, link_expires_at = ?4, \
         updated_at = ?5 WHERE id = ?1",
        params![id, &sha256(&secret)[..], purpose.as_str(), expires_at, now],
    )?;
    Ok(Link {
        secret: Secret::new(secret),
        expires_at,
    })
}

fn admin_id(conn: &Connection, name: &str) -> Result<i64, AdminError> {
    conn.query_row("SELECT id FROM admins WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .optional()
    .map_err(DbError::from)?
    .ok_or_else(|| AdminError::Refused(format!("there is no admin `{name}`")))
}

/// Ends every console sign-in of admin `id`.
fn end_sessions_of(conn: &Connection, id: i64, now: UnixTime) -> Result<(), DbError> {
    conn.execute(
        "UPDATE admin_sessions SET ended_at = ?2 WHERE admin_id = ?1 AND ended_at IS NULL",
        params![id, now],
    )?;
    Ok(())
}

/// Creates admin `name`, without a password: the link returned lets them choose one.
pub fn create(
    conn: &Connection,
    actor: &Actor,
    name: &str,
    now: UnixTime,
) -> Result<Link, AdminError> {
    validate_name(name)?;
    let inserted = conn.execute(
        "INSERT INTO admins (name, created_at, updated_at) VALUES (?1, ?2, ?2)",
        params![name, now],
    );
    match inserted {
        Ok(_) => {}
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            return Err(AdminError::Refused(format!(
                "there is already an admin `{name}`; `wxauth admins reset {name}` gives them a new setup link"
            )));
        }
        Err(e) => return Err(DbError::from(e).into()),
    }
    let link = new_link(conn, conn.last_insert_rowid(), LinkPurpose::Setup, now)?;
    audit::record(
        conn,
        actor,
        Action::AdminCreate,
        Some(name),
        &serde_json::json!({}),
        now,
    )?;
    Ok(link)
}

/// Every admin, oldest first.
pub fn list(conn: &Connection, now: UnixTime) -> Result<Vec<AdminRecord>, AdminError> {
    let mut stmt = conn
        .prepare(
            "SELECT name, password IS NOT NULL, link_purpose, link_expires_at, disabled_at, \
             created_at FROM admins ORDER BY id",
        )
        .map_err(DbError::from)?;
    let rows = stmt
        .query_map([], |r| {
            let has_password: bool = r.get(1)?;
            let purpose: Option<String> = r.get(2)?;
            let link_expires_at: Option<UnixTime> = r.get(3)?;
            let disabled_at: Option<UnixTime> = r.get(4)?;
            let setup_link =
                link_expires_at.filter(|&at| at > now && purpose.as_deref() == Some("setup"));
            Ok(AdminRecord {
                name: r.get(0)?,
                state: if disabled_at.is_some() {
                    "disabled"
                } else if has_password {
                    "active"
                } else {
                    "pending"
                },
                created_at: rfc3339(r.get(5)?),
                setup_link_expires_at: setup_link.map(rfc3339),
                disabled_at: disabled_at.map(rfc3339),
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(DbError::from)?;
    Ok(rows)
}

/// Disables admin `name`: their sign-ins end at once and no link or password works.
pub fn disable(
    conn: &Connection,
    actor: &Actor,
    name: &str,
    now: UnixTime,
) -> Result<(), AdminError> {
    let id = admin_id(conn, name)?;
    let changed = conn
        .execute(
            "UPDATE admins SET disabled_at = ?2, link_hash = NULL, link_purpose = NULL, \
             link_expires_at = NULL, updated_at = ?2 WHERE id = ?1 AND disabled_at IS NULL",
            params![id, now],
        )
        .map_err(DbError::from)?;
    if changed == 0 {
        return Err(AdminError::Refused(format!(
            "admin `{name}` is already disabled"
        )));
    }
    end_sessions_of(conn, id, now)?;
    audit::record(
        conn,
        actor,
        Action::AdminDisable,
        Some(name),
        &serde_json::json!({}),
        now,
    )?;
    Ok(())
}

/// Resets admin `name`: the password is forgotten, sign-ins end, a disabled admin is
/// enabled again, and the link returned lets them choose a new password.
pub fn reset(
    conn: &Connection,
    actor: &Actor,
    name: &str,
    now: UnixTime,
) -> Result<Link, AdminError> {
    let id = admin_id(conn, name)?;
    conn.execute(
        "UPDATE admins SET password = NULL, disabled_at = NULL WHERE id = ?1",
        [id],
    )
    .map_err(DbError::from)?;
    end_sessions_of(conn, id, now)?;
    let link = new_link(conn, id, LinkPurpose::Setup, now)?;
    audit::record(
        conn,
        actor,
        Action::AdminReset,
        Some(name),
        &serde_json::json!({}),
        now,
    )?;
    Ok(link)
}

/// A sign-in link for the dev admin, created when missing; for `serve --dev` only.
pub fn dev_sign_in_link(conn: &Connection, now: UnixTime) -> Result<Link, AdminError> {
    conn.execute(
        "INSERT INTO admins (name, created_at, updated_at) VALUES (?1, ?2, ?2) \
         ON CONFLICT (name) DO UPDATE SET disabled_at = NULL",
        params![DEV_ADMIN, now],
    )
    .map_err(DbError::from)?;
    let id = admin_id(conn, DEV_ADMIN)?;
    Ok(new_link(conn, id, LinkPurpose::SignIn, now)?)
}

/// The admin a valid, unused link of `purpose` belongs to: their id and name.
pub fn link_owner(
    conn: &Connection,
    secret: &str,
    purpose: LinkPurpose,
    now: UnixTime,
) -> Result<Result<(i64, String), BadLink>, DbError> {
    let found = conn
        .query_row(
            "SELECT id, name FROM admins WHERE link_hash = ?1 AND link_purpose = ?2 \
             AND link_expires_at > ?3 AND disabled_at IS NULL",
            params![&sha256(secret)[..], purpose.as_str(), now],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(found.ok_or(BadLink))
}

/// Uses a setup link: the admin's password becomes `password_hash` (made by
/// [`crate::keys::password::hash`]) and the link stops working. Returns the admin's id
/// and name.
pub fn finish_setup(
    conn: &Connection,
    secret: &str,
    password_hash: &str,
    ip: Option<std::net::IpAddr>,
    now: UnixTime,
) -> Result<Result<(i64, String), BadLink>, DbError> {
    let (id, name) = match link_owner(conn, secret, LinkPurpose::Setup, now)? {
        Ok(owner) => owner,
        Err(BadLink) => return Ok(Err(BadLink)),
    };
    conn.execute(
        "UPDATE admins SET password = ?2, link_hash = NULL, link_purpose = NULL, \
         link_expires_at = NULL, updated_at = ?3 WHERE id = ?1",
        params![id, password_hash, now],
    )?;
    audit::record(
        conn,
        &Actor::console(&name, ip),
        Action::AdminSetup,
        Some(&name),
        &serde_json::json!({}),
        now,
    )?;
    Ok(Ok((id, name)))
}

/// Uses a sign-in link (dev mode's): the link stops working. Returns the admin's id
/// and name.
pub fn use_sign_in_link(
    conn: &Connection,
    secret: &str,
    now: UnixTime,
) -> Result<Result<(i64, String), BadLink>, DbError> {
    let owner = link_owner(conn, secret, LinkPurpose::SignIn, now)?;
    if let Ok((id, _)) = &owner {
        conn.execute(
            "UPDATE admins SET link_hash = NULL, link_purpose = NULL, link_expires_at = NULL \
             WHERE id = ?1",
            [id],
        )?;
    }
    Ok(owner)
}

/// The stored password of the enabled admin `name`, if there is one: their id and
/// password hash.
pub fn password_of(conn: &Connection, name: &str) -> Result<Option<(i64, String)>, DbError> {
    Ok(conn
        .query_row(
            "SELECT id, password FROM admins \
             WHERE name = ?1 AND password IS NOT NULL AND disabled_at IS NULL",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Starts a console sign-in for admin `id` from `ip`; returns the cookie's secret.
pub fn start_session(
    conn: &Connection,
    id: i64,
    ip: Option<std::net::IpAddr>,
    now: UnixTime,
) -> Result<Secret, DbError> {
    let secret = new_secret();
    let ip = ip.map(|ip| ip.to_string());
    conn.execute(
        "INSERT INTO admin_sessions (secret_hash, admin_id, created_at, last_seen_at, ip) \
         VALUES (?1, ?2, ?3, ?3, ?4)",
        params![&sha256(&secret)[..], id, now, ip],
    )?;
    let name: String =
        conn.query_row("SELECT name FROM admins WHERE id = ?1", [id], |r| r.get(0))?;
    audit::record(
        conn,
        &Actor {
            name: format!("console:{name}"),
            source: ip.unwrap_or_else(|| "unknown".to_owned()),
        },
        Action::AdminSignIn,
        Some(&name),
        &serde_json::json!({}),
        now,
    )?;
    Ok(Secret::new(secret))
}

/// The live console sign-in whose cookie holds `secret`: not ended, its admin enabled,
/// seen within [`IDLE_TIMEOUT`] and younger than [`MAX_AGE`].
pub fn session(
    conn: &Connection,
    secret: &str,
    now: UnixTime,
) -> Result<Option<ConsoleSession>, DbError> {
    Ok(conn
        .prepare_cached(
            "SELECT s.id, a.name, s.created_at, s.last_seen_at FROM admin_sessions s \
             JOIN admins a ON a.id = s.admin_id \
             WHERE s.secret_hash = ?1 AND s.ended_at IS NULL AND a.disabled_at IS NULL \
             AND s.last_seen_at > ?2 AND s.created_at > ?3",
        )?
        .query_row(
            params![&sha256(secret)[..], now - IDLE_TIMEOUT, now - MAX_AGE],
            |r| {
                Ok(ConsoleSession {
                    id: r.get(0)?,
                    admin: r.get(1)?,
                    created_at: r.get(2)?,
                    last_seen_at: r.get(3)?,
                })
            },
        )
        .optional()?)
}

/// Whether `session`'s last-seen time is old enough to be written again at `now`.
pub fn needs_touch(session: &ConsoleSession, now: UnixTime) -> bool {
    now - session.last_seen_at >= TOUCH_EVERY
}

/// Records that console sign-in `id` was used at `now`.
pub fn touch(conn: &Connection, id: i64, now: UnixTime) -> Result<(), DbError> {
    conn.execute(
        "UPDATE admin_sessions SET last_seen_at = ?2 WHERE id = ?1 AND ended_at IS NULL",
        params![id, now],
    )?;
    Ok(())
}

/// Ends console sign-in `id` (signing out).
pub fn end_session(conn: &Connection, id: i64, now: UnixTime) -> Result<(), DbError> {
    conn.execute(
        "UPDATE admin_sessions SET ended_at = ?2 WHERE id = ?1 AND ended_at IS NULL",
        params![id, now],
    )?;
    Ok(())
}

/// The CSRF token of the sign-in whose cookie holds `secret`: derived from it, so that
/// only a page that could read the cookie's sign-in can send it, and nothing is stored.
pub fn csrf_token(secret: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"wxauth console csrf\0");
    ctx.update(secret.as_bytes());
    URL_SAFE_NO_PAD.encode(ctx.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::db::migrate(&mut conn).unwrap();
        conn
    }

    fn actor() -> Actor {
        Actor {
            name: "cli:root".into(),
            source: "cli@test".into(),
        }
    }

    #[test]
    fn a_setup_link_works_once_and_only_within_a_day() {
        let conn = db();
        let link = create(&conn, &actor(), "alice", 1000).unwrap();
        assert_eq!(link.expires_at, 1000 + LINK_TTL);
        let secret = link.secret.expose();
        assert_eq!(
            link_owner(&conn, secret, LinkPurpose::Setup, 1000 + LINK_TTL).unwrap(),
            Err(BadLink)
        );
        assert_eq!(
            link_owner(&conn, secret, LinkPurpose::SignIn, 1001).unwrap(),
            Err(BadLink)
        );
        let (id, name) = finish_setup(&conn, secret, "pbkdf2-sha256$1$AA$AA", None, 1001)
            .unwrap()
            .unwrap();
        assert_eq!(name, "alice");
        assert_eq!(
            finish_setup(&conn, secret, "x", None, 1002).unwrap(),
            Err(BadLink)
        );
        assert_eq!(
            password_of(&conn, "alice").unwrap(),
            Some((id, "pbkdf2-sha256$1$AA$AA".to_owned()))
        );
        let listed = list(&conn, 1002).unwrap();
        assert_eq!(listed[0].state, "active");
    }

    #[test]
    fn names_are_checked_and_unique() {
        let conn = db();
        assert!(create(&conn, &actor(), "", 0).is_err());
        assert!(create(&conn, &actor(), "a b", 0).is_err());
        assert!(create(&conn, &actor(), &"a".repeat(65), 0).is_err());
        create(&conn, &actor(), "ops@example.com", 0).unwrap();
        let again = create(&conn, &actor(), "ops@example.com", 0).unwrap_err();
        assert!(again.to_string().contains("already"), "{again}");
    }

    #[test]
    fn console_sessions_end_when_idle_old_signed_out_or_disabled() {
        let conn = db();
        let link = create(&conn, &actor(), "bob", 0).unwrap();
        let (id, _) = finish_setup(&conn, link.secret.expose(), "h", None, 0)
            .unwrap()
            .unwrap();
        let cookie = start_session(&conn, id, None, 0).unwrap();
        let cookie = cookie.expose();
        assert!(session(&conn, cookie, IDLE_TIMEOUT - 1).unwrap().is_some());
        assert!(session(&conn, cookie, IDLE_TIMEOUT).unwrap().is_none());
        assert!(session(&conn, "not the cookie", 1).unwrap().is_none());

        // Used every 20 minutes, it lives until its twelfth hour and no longer.
        let mut now = 0;
        while now + 1200 < MAX_AGE {
            now += 1200;
            let live = session(&conn, cookie, now).unwrap().unwrap();
            assert!(needs_touch(&live, now));
            touch(&conn, live.id, now).unwrap();
        }
        assert!(session(&conn, cookie, MAX_AGE).unwrap().is_none());

        let other = start_session(&conn, id, None, 0).unwrap();
        let live = session(&conn, other.expose(), 1).unwrap().unwrap();
        end_session(&conn, live.id, 2).unwrap();
        assert!(session(&conn, other.expose(), 3).unwrap().is_none());

        let third = start_session(&conn, id, None, 10).unwrap();
        disable(&conn, &actor(), "bob", 11).unwrap();
        assert!(session(&conn, third.expose(), 12).unwrap().is_none());
        assert!(password_of(&conn, "bob").unwrap().is_none());
    }

    #[test]
    fn a_reset_forgets_the_password_and_enables_again() {
        let conn = db();
        let link = create(&conn, &actor(), "carol", 0).unwrap();
        finish_setup(&conn, link.secret.expose(), "h", None, 0)
            .unwrap()
            .unwrap();
        disable(&conn, &actor(), "carol", 1).unwrap();
        assert!(disable(&conn, &actor(), "carol", 2).is_err());
        let link = reset(&conn, &actor(), "carol", 3).unwrap();
        assert!(password_of(&conn, "carol").unwrap().is_none());
        assert_eq!(list(&conn, 4).unwrap()[0].state, "pending");
        finish_setup(&conn, link.secret.expose(), "h2", None, 4)
            .unwrap()
            .unwrap();
        assert_eq!(list(&conn, 5).unwrap()[0].state, "active");
        let actions: Vec<String> = audit::page(&conn, Some("carol"), None, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(
            actions,
            [
                "admin.setup",
                "admin.reset",
                "admin.disable",
                "admin.setup",
                "admin.create"
            ]
        );
    }

    #[test]
    fn the_csrf_token_is_bound_to_the_cookie() {
        assert_eq!(csrf_token("a"), csrf_token("a"));
        assert_ne!(csrf_token("a"), csrf_token("b"));
        assert_ne!(csrf_token("a"), URL_SAFE_NO_PAD.encode(sha256("a")));
    }
}
