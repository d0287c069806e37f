//! Two users who turn out to be one person: the conflicts found at login, and the merge
//! an admin makes of them (`wxauth users conflicts`, `wxauth users merge`).

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::clock::{UnixTime, rfc3339};
use crate::db::DbError;
use crate::db::queries::{self, EventType};
use crate::ops::admin::{self, AdminError, UserRef};
use crate::ops::audit::{self, Action, Actor};

/// A conflict not yet resolved: two users with identities of one unionid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub unionid: String,
    /// The user that held the unionid first.
    pub user_id: String,
    /// The user whose identity reported it later.
    pub other_user_id: String,
    pub found_at: String,
}

/// Every unresolved conflict, oldest first.
pub fn conflicts(conn: &Connection) -> Result<Vec<Conflict>, AdminError> {
    let mut stmt = conn
        .prepare(
            "SELECT c.unionid, a.public_id, b.public_id, c.found_at FROM conflicts c \
             JOIN users a ON a.id = c.user_id JOIN users b ON b.id = c.other_user_id \
             WHERE c.resolved_at IS NULL ORDER BY c.id",
        )
        .map_err(DbError::from)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(Conflict {
                unionid: r.get(0)?,
                user_id: r.get(1)?,
                other_user_id: r.get(2)?,
                found_at: rfc3339(r.get(3)?),
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(DbError::from)?;
    Ok(rows)
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Merged {
    pub user_id: String,
    pub merged_user_id: String,
    pub identities: usize,
    pub sessions: usize,
}

/// Merges user `other` into user `keep` (in the caller's transaction): `other`'s identities and
/// live sessions move to `keep` (so its tokens authenticate as `keep`), `keep`'s empty
/// profile fields are filled from `other`'s, and `other`'s id stays as an alias of
/// `keep`. `keep`'s ban, if any, stands; `other`'s goes with it.
pub fn merge(
    conn: &Connection,
    actor: &Actor,
    keep: &str,
    other: &str,
    now: UnixTime,
) -> Result<Merged, AdminError> {
    let kept = admin::find_user(conn, UserRef::Id(keep))?;
    let gone = admin::find_user(conn, UserRef::Id(other))?;
    if kept.id == gone.id {
        return Err(AdminError::Refused(if keep == other {
            "KEEP and OTHER are the same user".to_owned()
        } else {
            format!("`{other}` is already merged into `{}`", kept.public_id)
        }));
    }
    let (k, o) = (kept.id, gone.id);
    let run = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> Result<usize, AdminError> {
        Ok(conn.execute(sql, params).map_err(DbError::from)?)
    };
    let identities = run(
        "UPDATE identities SET user_id = ?1 WHERE user_id = ?2",
        params![k, o],
    )?;
    let sessions = run(
        "UPDATE sessions SET user_id = ?1 WHERE user_id = ?2 AND revoked_at IS NULL",
        params![k, o],
    )?;
    if kept.avatar_url.is_none() && gone.avatar_url.is_some() {
        // The avatar taken over may be one wxauth serves; its bytes go with it.
        run(
            "UPDATE avatars SET user_id = ?1 WHERE user_id = ?2",
            params![k, o],
        )?;
    }
    run(
        "UPDATE users SET \
             nickname = coalesce(users.nickname, o.nickname), \
             avatar_url = coalesce(users.avatar_url, o.avatar_url), \
             phone = coalesce(users.phone, o.phone), \
             gender = CASE WHEN users.gender = 0 THEN o.gender ELSE users.gender END, \
             country = coalesce(users.country, o.country), \
             province = coalesce(users.province, o.province), \
             city = coalesce(users.city, o.city), \
             language = coalesce(users.language, o.language), \
             updated_at = ?3 \
         FROM (SELECT * FROM users WHERE id = ?2) o WHERE users.id = ?1",
        params![k, o, now],
    )?;
    run(
        "UPDATE users SET merged_into = ?1, updated_at = ?3 WHERE id = ?2",
        params![k, o, now],
    )?;
    // Each app once, in the order of its oldest identity.
    run(
        "UPDATE users SET apps = (SELECT coalesce(group_concat(appid, ',' ORDER BY first), '') \
             FROM (SELECT appid, min(id) AS first FROM identities WHERE user_id = ?1 \
                   GROUP BY appid)) \
         WHERE id = ?1",
        params![k],
    )?;
    // The conflicts naming `other` are resolved by the merge; one with a third user
    // becomes the third user's with `keep`.
    run(
        "INSERT INTO conflicts (unionid, user_id, other_user_id, found_at) \
         SELECT unionid, CASE WHEN user_id = ?2 THEN ?1 ELSE user_id END, \
             CASE WHEN other_user_id = ?2 THEN ?1 ELSE other_user_id END, found_at \
         FROM conflicts WHERE resolved_at IS NULL AND ?2 IN (user_id, other_user_id) \
             AND ?1 NOT IN (user_id, other_user_id) \
         ON CONFLICT (user_id, other_user_id) DO NOTHING",
        params![k, o],
    )?;
    run(
        "UPDATE conflicts SET resolved_at = ?2 \
         WHERE resolved_at IS NULL AND ?1 IN (user_id, other_user_id)",
        params![o, now],
    )?;
    let detail = serde_json::json!({ "merged_user_id": gone.public_id });
    queries::append_event_data(
        conn,
        EventType::UserMerged,
        now,
        kept.id,
        &detail.to_string(),
    )?;
    audit::record(conn, actor, Action::UserMerge, Some(keep), &detail, now)?;
    Ok(Merged {
        user_id: kept.public_id,
        merged_user_id: gone.public_id,
        identities,
        sessions,
    })
}
