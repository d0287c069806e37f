//! The figures on the console's overview: users, new users, live sessions, logins per
//! day, the database's size and the last backup.

use std::path::Path;

use rusqlite::{Connection, params};

use crate::clock::UnixTime;
use crate::db::DbError;
use crate::ops::audit::{self, Action, Entry};

/// Days in the logins chart.
pub const CHART_DAYS: usize = 30;

const DAY: i64 = 86_400;

// Both counts read indexes alone, no table rows (see the schema's version 8). The
// planner may take a table scan for a small or unanalysed table; `INDEXED BY` holds
// it to the index at any size.
const USERS: &str = "SELECT (SELECT count(*) FROM users) \
     - (SELECT count(*) FROM users INDEXED BY users_merged WHERE merged_into IS NOT NULL)";
const LIVE_SESSIONS: &str = "SELECT count(*) FROM sessions INDEXED BY sessions_expiry \
     WHERE expires_at > ?1 AND revoked_at IS NULL";

/// The overview's figures, as of one moment.
#[derive(Debug, Clone)]
pub struct Overview {
    /// Users, not counting those merged into another.
    pub users: i64,
    /// New users since midnight (UTC), and in the last 7 and 30 days counting today.
    pub new_today: i64,
    pub new_7_days: i64,
    pub new_30_days: i64,
    pub live_sessions: i64,
    /// Logins per day (UTC), oldest first, today last: the start of the day and the count.
    pub logins_per_day: Vec<(UnixTime, i64)>,
    /// The database file and its write-ahead log, in bytes.
    pub database_bytes: u64,
    pub last_backup: Option<Entry>,
}

/// The start (UTC midnight) of the day `t` falls in.
pub fn day_start(t: UnixTime) -> UnixTime {
    t - t.rem_euclid(DAY)
}

/// Reads the overview from `conn`, the database at `path`, as of `now`.
pub fn read(conn: &Connection, path: &Path, now: UnixTime) -> Result<Overview, DbError> {
    let today = day_start(now);
    let first_day = today - (CHART_DAYS as i64 - 1) * DAY;
    let mut logins = vec![0i64; CHART_DAYS];
    let mut new_users = vec![0i64; CHART_DAYS];
    let mut stmt = conn.prepare_cached(
        "SELECT hour, logins, new_users FROM login_counts WHERE hour >= ?1 AND hour <= ?2",
    )?;
    let rows = stmt.query_map(params![first_day / 3600, now.div_euclid(3600)], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (hour, n, new) = row?;
        let day = ((hour * 3600 - first_day) / DAY) as usize;
        if let (Some(l), Some(u)) = (logins.get_mut(day), new_users.get_mut(day)) {
            *l += n;
            *u += new;
        }
    }
    let sum_last = |days: usize| new_users[CHART_DAYS - days..].iter().sum();
    let users = conn.query_row(USERS, [], |r| r.get(0))?;
    let live_sessions = conn.query_row(LIVE_SESSIONS, [now], |r| r.get(0))?;
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    Ok(Overview {
        users,
        new_today: sum_last(1),
        new_7_days: sum_last(7),
        new_30_days: sum_last(CHART_DAYS),
        live_sessions,
        logins_per_day: (0..CHART_DAYS)
            .map(|d| (first_day + d as i64 * DAY, logins[d]))
            .collect(),
        database_bytes: size(path) + size(Path::new(&wal)),
        last_backup: audit::latest(conn, Action::Backup)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_and_new_users_are_summed_by_day() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::db::migrate(&mut conn).unwrap();
        let now = 1_796_032_800 + 5 * 3600; // 05:00 UTC
        let today = day_start(now);
        let put = |at: i64, logins: i64, new: i64| {
            conn.execute(
                "INSERT INTO login_counts (hour, logins, new_users) VALUES (?1, ?2, ?3)",
                params![at / 3600, logins, new],
            )
            .unwrap();
        };
        put(today, 3, 1);
        put(today + 3600, 2, 2);
        put(today - DAY, 5, 4);
        put(today - 6 * DAY, 7, 1);
        put(today - 7 * DAY, 11, 10);
        put(today - 30 * DAY, 100, 100); // before the chart
        put(today + DAY, 100, 100); // the clock moved back: not yet
        let o = read(&conn, Path::new("/nonexistent"), now).unwrap();
        assert_eq!(o.logins_per_day.len(), CHART_DAYS);
        assert_eq!(o.logins_per_day[CHART_DAYS - 1], (today, 5));
        assert_eq!(o.logins_per_day[CHART_DAYS - 2], (today - DAY, 5));
        assert_eq!(o.logins_per_day[CHART_DAYS - 8].1, 11);
        assert_eq!(o.logins_per_day[0].0, today - 29 * DAY);
        assert_eq!((o.new_today, o.new_7_days, o.new_30_days), (3, 8, 18));
        assert_eq!(o.database_bytes, 0);
        assert!(o.last_backup.is_none());
    }

    #[test]
    fn users_and_live_sessions_are_counted_from_indexes_alone() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::db::migrate(&mut conn).unwrap();
        let now = 1_796_032_800;
        conn.execute_batch(
            "INSERT INTO users (id, public_id, created_at, updated_at) VALUES
                 (1, 'u_1', 0, 0), (2, 'u_2', 0, 0), (3, 'u_3', 0, 0);
             UPDATE users SET merged_into = 1 WHERE id = 3;
             INSERT INTO identities (id, user_id, appid, openid, created_at)
                 VALUES (1, 1, 'wx1', 'o1', 0);",
        )
        .unwrap();
        // Live, expired, revoked, live until the very moment (so no longer).
        for (id, expires_at, revoked_at) in [
            (1, now + 60, None),
            (2, now - 60, None),
            (3, now + 60, Some(now - 1)),
            (4, now, None),
        ] {
            conn.execute(
                "INSERT INTO sessions (id, public_id, secret_hash, user_id, identity_id, \
                 created_at, expires_at, max_expires_at, last_seen_at, revoked_at) \
                 VALUES (?1, 's_' || ?1, randomblob(32), 1, 1, 0, ?2, ?2, 0, ?3)",
                params![id, expires_at, revoked_at],
            )
            .unwrap();
        }
        let o = read(&conn, Path::new("/nonexistent"), now).unwrap();
        assert_eq!((o.users, o.live_sessions), (2, 1));

        for (sql, params) in [(USERS, params![]), (LIVE_SESSIONS, params![now])] {
            let mut plan = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let steps: Vec<String> = plan
                .query_map(params, |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            for step in steps
                .iter()
                .filter(|s| s.contains(" users") || s.contains(" sessions"))
            {
                assert!(step.contains("COVERING INDEX"), "{sql}: {steps:?}");
            }
        }
    }
}
