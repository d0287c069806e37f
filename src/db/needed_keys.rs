//! The record of the key file's keys the database depends on (`needed_keys`), and the
//! rows that depend on them: sessions (their tokens are signed) and sealed secrets.

use rusqlite::{Connection, params};

use crate::clock::UnixTime;
use crate::db::error::DbError;
use crate::keys::key_file::{KeyKind, KeyPrint};

/// The keys the database records as needed.
pub fn needed(conn: &Connection) -> Result<Vec<KeyPrint>, DbError> {
    let mut stmt =
        conn.prepare("SELECT kind, id, fingerprint FROM needed_keys ORDER BY kind, id")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut prints = Vec::new();
    for row in rows {
        let (kind, id, fingerprint) = row?;
        // The CHECK constraint admits no other kind.
        let kind = KeyKind::parse(&kind).unwrap_or(KeyKind::Signing);
        prints.push(KeyPrint {
            kind,
            id,
            fingerprint,
        });
    }
    prints.sort();
    Ok(prints)
}

/// Makes `prints` the whole record; a print recorded before keeps its time.
pub fn record(conn: &Connection, prints: &[KeyPrint], now: UnixTime) -> Result<(), DbError> {
    let kept = needed(conn)?;
    for old in kept.iter().filter(|p| !prints.contains(p)) {
        conn.execute(
            "DELETE FROM needed_keys WHERE kind = ?1 AND id = ?2",
            params![old.kind.as_str(), old.id],
        )?;
    }
    for new in prints.iter().filter(|p| !kept.contains(p)) {
        conn.execute(
            "INSERT INTO needed_keys (kind, id, fingerprint, recorded_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (kind, id) DO UPDATE SET fingerprint = excluded.fingerprint, \
             recorded_at = excluded.recorded_at",
            params![new.kind.as_str(), new.id, new.fingerprint, now],
        )?;
    }
    Ok(())
}

/// Whether the database holds no user and no session: nothing yet depends on a key.
pub fn is_empty(conn: &Connection) -> Result<bool, DbError> {
    Ok(conn.query_row(
        "SELECT NOT EXISTS (SELECT 1 FROM users) AND NOT EXISTS (SELECT 1 FROM sessions)",
        [],
        |r| r.get(0),
    )?)
}

/// The rows that stop working without the key file's keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Dependents {
    /// Sessions not revoked: their tokens are signed with the signing keys.
    pub sessions: i64,
    /// Identities with a sealed session_key.
    pub session_keys: i64,
    /// Apps with a sealed access_token.
    pub access_tokens: i64,
}

/// How many rows depend on the keys.
pub fn dependents(conn: &Connection) -> Result<Dependents, DbError> {
    Ok(conn.query_row(
        "SELECT (SELECT count(*) FROM sessions WHERE revoked_at IS NULL), \
                (SELECT count(*) FROM identities WHERE session_key IS NOT NULL), \
                (SELECT count(*) FROM access_tokens)",
        [],
        |r| {
            Ok(Dependents {
                sessions: r.get(0)?,
                session_keys: r.get(1)?,
                access_tokens: r.get(2)?,
            })
        },
    )?)
}

/// Ends every session (revoked by an admin), drops every sealed session_key and access
/// token, and forgets the login codes that lead to sessions; returns what there was.
pub fn drop_dependents(conn: &Connection, now: UnixTime) -> Result<Dependents, DbError> {
    let before = dependents(conn)?;
    conn.execute(
        "UPDATE sessions SET revoked_at = ?1, revoked_reason = 'admin' WHERE revoked_at IS NULL",
        [now],
    )?;
    conn.execute(
        "UPDATE identities SET session_key = NULL WHERE session_key IS NOT NULL",
        [],
    )?;
    conn.execute("DELETE FROM access_tokens", [])?;
    conn.execute("DELETE FROM login_codes", [])?;
    Ok(before)
}
