//! Housekeeping in the background: sessions that ended long enough ago, login codes
//! past their five minutes and web logins past their time are deleted, a few hundred rows per write job, so that other
//! writes queue behind a purge for milliseconds at most.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use crate::clock::{Clock, UnixTime, secs};
use crate::db::{Db, DbError};

/// The most rows one write job deletes.
pub const BATCH: usize = 500;
/// How long an ended session is kept: for that long its token still answers
/// `token_expired` or `session_revoked` rather than `invalid_token`, and
/// `wxauth sessions list` still shows it.
pub const SESSION_GRACE: Duration = Duration::from_secs(7 * 86400);
/// How often the purge runs.
pub const INTERVAL: Duration = Duration::from_secs(600);

/// What one purge deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub sessions: usize,
    pub login_codes: usize,
    pub web_logins: usize,
}

/// Deletes expired login codes, then sessions whose sliding expiry (never later than
/// their absolute one) passed more than [`SESSION_GRACE`] before `now`. Revoked
/// sessions go the same way: a revoked session is never refreshed again.
pub async fn purge(db: &Db, now: UnixTime) -> Result<Purged, DbError> {
    let login_codes = purge_in_batches(db, move |c| delete_expired_codes(c, now)).await?;
    let web_logins = purge_in_batches(db, move |c| delete_ended_web_logins(c, now)).await?;
    let cutoff = now.saturating_sub(secs(SESSION_GRACE));
    let sessions = purge_in_batches(db, move |c| delete_ended_sessions(c, cutoff)).await?;
    Ok(Purged {
        sessions,
        login_codes,
        web_logins,
    })
}

/// Runs `job` as separate writes until it deletes less than a full batch; returns the
/// total deleted.
async fn purge_in_batches(
    db: &Db,
    job: impl Fn(&Connection) -> Result<usize, DbError> + Send + Sync + Clone + 'static,
) -> Result<usize, DbError> {
    let mut total = 0;
    loop {
        let job = job.clone();
        let deleted = db.write(move |c| job(c)).await?;
        total += deleted;
        if deleted < BATCH {
            return Ok(total);
        }
        // Let the requests that queued behind this batch go first.
        tokio::task::yield_now().await;
    }
}

/// Deletes the expired codes among the oldest [`BATCH`]. `login_codes` has no index
/// by expiry: its rows are appended as codes are recorded, so the expired ones lead it,
/// and a batch with fewer than [`BATCH`] to delete has reached the live ones. A row that
/// expires out of order (the clock was set back) goes in a later purge.
fn delete_expired_codes(conn: &Connection, now: UnixTime) -> Result<usize, DbError> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM login_codes WHERE id IN \
             (SELECT id FROM login_codes ORDER BY id LIMIT ?2) AND expires_at <= ?1",
        )?
        .execute((now, BATCH as i64))?)
}

/// Deletes the ended web logins among the oldest [`BATCH`], as
/// [`delete_expired_codes`] does: rows are appended when a login starts. A login has
/// ended once its state has expired and any one-time code it gave has too; a code is
/// given before the state expires and lives 60 seconds.
fn delete_ended_web_logins(conn: &Connection, now: UnixTime) -> Result<usize, DbError> {
    let ended = now.saturating_sub(crate::domain::web_login::CODE_LIFETIME_SECS);
    Ok(conn
        .prepare_cached(
            "DELETE FROM web_logins WHERE id IN \
             (SELECT id FROM web_logins ORDER BY id LIMIT ?2) AND expires_at <= ?1",
        )?
        .execute((ended, BATCH as i64))?)
}

/// Deletes up to [`BATCH`] sessions whose `expires_at` is at or before `cutoff`, found
/// through the expiry index.
fn delete_ended_sessions(conn: &Connection, cutoff: UnixTime) -> Result<usize, DbError> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM sessions WHERE id IN \
             (SELECT id FROM sessions WHERE expires_at <= ?1 LIMIT ?2)",
        )?
        .execute((cutoff, BATCH as i64))?)
}

/// Purges every [`INTERVAL`] until the task is aborted; failures are logged and the
/// next round tries again.
pub async fn run(db: Arc<Db>, clock: Arc<dyn Clock>) {
    let mut ticks = tokio::time::interval(INTERVAL);
    loop {
        ticks.tick().await;
        match purge(&db, clock.now()).await {
            Ok(Purged {
                sessions: 0,
                login_codes: 0,
                web_logins: 0,
            }) => {}
            Ok(purged) => tracing::info!(
                sessions = purged.sessions,
                login_codes = purged.login_codes,
                web_logins = purged.web_logins,
                "purged ended sessions, expired login codes and ended web logins"
            ),
            Err(e) => tracing::warn!(error = %e, "purge failed; trying again later"),
        }
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::params;

    use super::*;

    const DAY: i64 = 86400;

    /// A database with one user, `n` sessions expiring at `expires_at` and a login code
    /// for each, expiring at `code_expires_at`.
    async fn seed(db: &Db, n: usize, expires_at: UnixTime, code_expires_at: UnixTime) {
        db.write(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO users (id, public_id, created_at, updated_at) \
                 VALUES (1, 'u_1', 0, 0)",
                [],
            )?;
            c.execute(
                "INSERT OR IGNORE INTO identities (id, user_id, appid, openid, created_at) \
                 VALUES (1, 1, 'wx1', 'o1', 0)",
                [],
            )?;
            for _ in 0..n {
                let secret: [u8; 32] = crate::keys::random::bytes();
                c.execute(
                    "INSERT INTO sessions (public_id, secret_hash, user_id, identity_id, \
                     created_at, expires_at, max_expires_at, last_seen_at) \
                     VALUES (?1, ?2, 1, 1, 0, ?3, ?3, 0)",
                    params![
                        crate::keys::random::public_id("s_"),
                        &secret[..],
                        expires_at
                    ],
                )?;
                let code: [u8; 32] = crate::keys::random::bytes();
                c.execute(
                    "INSERT INTO login_codes (code_hash, sealed_sid, new_user, expires_at) \
                     VALUES (?1, x'00', 0, ?2)",
                    params![&code[..], code_expires_at],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
    }

    async fn count(db: &Arc<Db>, table: &'static str) -> i64 {
        db.read(move |c| {
            Ok(c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?)
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ended_sessions_and_old_codes_go_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&batches);
        let db = Db::open_observed(
            &dir.path().join("t.db"),
            Box::new(move |n| seen.lock().unwrap().push(n)),
        )
        .unwrap();
        let now = 100 * DAY;
        // Long ended: purged, with their codes.
        seed(&db, 1200, now - 8 * DAY, now - 8 * DAY).await;
        // Ended within the grace period: kept, but their old codes go.
        seed(&db, 3, now - DAY, now - DAY).await;
        // Live, with a code still inside its five minutes: kept.
        seed(&db, 2, now + DAY, now + 60).await;
        // Web logins: one whose state and code have both run out, one whose state has
        // but whose code may live a little longer, one still waiting for WeChat.
        db.write(move |c| {
            for (n, expires_at) in [(1u8, now - 61), (2, now - 30), (3, now + 500)] {
                c.execute(
                    "INSERT INTO web_logins (state_hash, browser_hash, appid, scope, \
                     redirect_uri, expires_at) VALUES (?1, x'00', 'wx1', 'snsapi_base', \
                     'https://a.example/', ?2)",
                    params![vec![n], expires_at],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
        batches.lock().unwrap().clear();

        let purged = purge(&db, now).await.unwrap();
        assert_eq!(
            purged,
            Purged {
                sessions: 1200,
                login_codes: 1203,
                web_logins: 1,
            }
        );
        assert_eq!(count(&db, "web_logins").await, 2);
        assert_eq!(count(&db, "sessions").await, 5);
        assert_eq!(count(&db, "login_codes").await, 2);
        // Every job stayed within a batch, and each was its own commit.
        let batches = batches.lock().unwrap().clone();
        assert!(batches.len() >= 6, "{batches:?}");
        assert!(batches.iter().all(|&n| n == 1), "{batches:?}");

        assert_eq!(purge(&db, now).await.unwrap(), Purged::default());
        db.close().await;
    }

    /// Codes are purged oldest first: one that expires before the batch of live codes
    /// recorded ahead of it waits for them, and goes with them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_code_expiring_out_of_order_goes_with_the_codes_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let now = 100 * DAY;
        seed(&db, BATCH, now + DAY, now + 60).await;
        seed(&db, 1, now + DAY, now - 60).await;

        assert_eq!(purge(&db, now).await.unwrap(), Purged::default());
        assert_eq!(count(&db, "login_codes").await, BATCH as i64 + 1);
        let later = purge(&db, now + 60).await.unwrap();
        assert_eq!(later.login_codes, BATCH + 1);
        assert_eq!(count(&db, "login_codes").await, 0);
        db.close().await;
    }
}
