//! Sessions found recently, with their users, kept in memory so that most authenticated
//! requests need no trip to a database thread: that trip (a queue hand-off, two thread
//! wake-ups and the query) was over a quarter of such a request's CPU time.
//!
//! A copy is used only while nothing has changed its rows ([`Changes`]): no commit of
//! the server's updated or deleted them, and the writer's latest look for other
//! processes' commits, begun less than [`MAX_EXTERNAL_LAG`](crate::db::MAX_EXTERNAL_LAG)
//! ago, found none since the copy was read. The admin commands wait that lag out after each change
//! while a server runs. So a logout, a revocation, an eviction, a ban or a profile
//! change, whether made through the API or an admin command, is seen by the very next
//! request, exactly as without the copy. A change made behind wxauth's back (an `UPDATE`
//! in the `sqlite3` shell) is seen within that lag. However unchanged, a copy is read
//! again after [`MAX_COPY_AGE`] at most: a bound on any change these checks could miss.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use warp::http::{HeaderName, HeaderValue};

use crate::db::queries::{IdentityRow, SessionOwner, SessionRow, UserRow};
use crate::db::{ChangedRow, Changes, Mark};
use crate::spread::spread;

/// Copies kept at most: a few MiB, which covers far more sessions than are active within
/// [`MAX_COPY_AGE`] on the servers wxauth is for.
const CAPACITY: usize = 16_384;
/// The longest a copy is used, counted from before it was read.
const MAX_COPY_AGE: Duration = Duration::from_secs(60);
/// Copies live between half of [`MAX_COPY_AGE`] and all of it, by their session's id, in
/// 2^this steps.
const COPY_AGE_SPREAD_BITS: u32 = 15;
/// Separately locked parts, so that requests on different threads rarely wait on each
/// other.
const SHARDS: usize = 16;

/// A session, its user and the identity it logged in with, as read together.
#[derive(Debug, Clone)]
pub struct Found {
    pub session: Arc<SessionRow>,
    pub user: Arc<UserRow>,
    pub identity: Arc<IdentityRow>,
    /// What every request served from the same copy shares.
    pub copy: Arc<CopyState>,
}

impl Found {
    /// A session, its user and its identity as just read.
    pub fn new(owner: SessionOwner) -> Found {
        Found {
            session: Arc::new(owner.session),
            user: Arc::new(owner.user),
            identity: Arc::new(owner.identity),
            copy: Arc::default(),
        }
    }
}

/// What the requests served from one copy of a session and its user share; a copy whose
/// rows change is replaced, and this with it.
///
/// The answers' parts that depend only on those rows are each made by the first request
/// that needs them: making them was the largest part of an authenticated request's own
/// work.
#[derive(Debug, Default)]
pub struct CopyState {
    /// The `GET /v1/session` body.
    pub session_info: OnceLock<Bytes>,
    /// The identity headers of `/v1/auth/forward`.
    pub identity_headers: OnceLock<Vec<(HeaderName, HeaderValue)>>,
    /// Whether a request has queued the update of the session's `last_seen_at`. Every
    /// request served from the copy sees the same stale time until that update commits
    /// and replaces the copy; without this, each of them queued an update of its own.
    /// An update the writer's full queue refused is tried again from the next copy.
    touch_queued: AtomicBool,
}

impl CopyState {
    /// True for the first caller only: the one to queue the update of `last_seen_at`.
    pub fn claim_touch(&self) -> bool {
        !self.touch_queued.swap(true, Ordering::Relaxed)
    }
}

/// One separately locked part of the cache.
type Shard = Mutex<HashMap<[u8; 32], Entry, BuildHasherDefault<DigestHasher>>>;

/// Hashes a key that is already a SHA-256 output by folding its words together: its
/// bits are as evenly spread as any hash of them would be, so SipHash's work is wasted.
/// Nor can anyone pick colliding keys: only a session a validly signed token led to is
/// kept, under the hash of its random secret.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(17) ^ u64::from_le_bytes(word);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// How long the copy of a session is used however unchanged: between 30 and 60 seconds,
/// the same for a session every time. Copies read together (every active session's,
/// after a restart) would otherwise all be read again together, one burst of reads a
/// minute, for as long as the server runs.
fn copy_lifetime(session_id: i64) -> Duration {
    let half = MAX_COPY_AGE / 2;
    let step = spread(session_id as u64, COPY_AGE_SPREAD_BITS) as u32;
    half + half * step / (1 << COPY_AGE_SPREAD_BITS)
}

/// When a copy was read: taken before the read began.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    mark: Mark,
    at: Instant,
}

struct Entry {
    found: Found,
    ticket: Ticket,
}

/// The copies, keyed by the hash of the session's secret (what a token leads to).
pub struct SessionCache {
    changes: Arc<Changes>,
    shards: Box<[Shard]>,
}

impl SessionCache {
    /// An empty cache whose copies are checked against `changes`.
    pub fn new(changes: Arc<Changes>) -> SessionCache {
        SessionCache {
            changes,
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(HashMap::with_capacity_and_hasher(
                        CAPACITY / SHARDS,
                        BuildHasherDefault::default(),
                    ))
                })
                .collect(),
        }
    }

    /// What to date a copy with; take it before reading.
    pub fn ticket(&self) -> Ticket {
        Ticket {
            mark: self.changes.mark(),
            at: Instant::now(),
        }
    }

    /// The copy for `secret_hash`, if there is one and it is still what the database
    /// holds.
    pub fn get(&self, secret_hash: &[u8; 32]) -> Option<Found> {
        self.changes.want_looks();
        let now = Instant::now();
        let (found, ticket) = {
            let shard = self
                .shard(secret_hash)
                .lock()
                .expect("session cache poisoned");
            let entry = shard.get(secret_hash)?;
            (entry.found.clone(), entry.ticket)
        };
        if now.saturating_duration_since(ticket.at) >= copy_lifetime(found.session.id) {
            return None;
        }
        let rows = [
            ChangedRow::Session(found.session.id),
            ChangedRow::User(found.user.id),
            ChangedRow::Identity(found.identity.id),
        ];
        self.changes
            .unchanged_since(ticket.mark, &rows, now)
            .then_some(found)
    }

    /// Keeps `found`, read after `ticket` was taken, for `secret_hash`.
    pub fn insert(&self, secret_hash: [u8; 32], found: Found, ticket: Ticket) {
        let mut shard = self
            .shard(&secret_hash)
            .lock()
            .expect("session cache poisoned");
        if shard.len() >= CAPACITY / SHARDS && !shard.contains_key(&secret_hash) {
            // Which copy goes hardly matters: the map's order is effectively random.
            if let Some(gone) = shard.keys().next().copied() {
                shard.remove(&gone);
            }
        }
        shard.insert(secret_hash, Entry { found, ticket });
    }

    fn shard(&self, secret_hash: &[u8; 32]) -> &Shard {
        // The key is a SHA-256 output, so any of its bytes picks a shard evenly.
        &self.shards[usize::from(secret_hash[0]) % SHARDS]
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    #[test]
    fn one_request_per_copy_claims_the_touch() {
        let copy = found(1, 1).copy;
        assert!(copy.claim_touch());
        assert!(!copy.claim_touch());
        assert!(found(1, 1).copy.claim_touch(), "a new copy claims afresh");
    }

    fn found(session: i64, user: i64) -> Found {
        Found::new(SessionOwner {
            session: SessionRow {
                id: session,
                public_id: format!("s_{session}"),
                user_id: user,
                identity_id: user,
                created_at: 0,
                expires_at: 10,
                max_expires_at: 20,
                last_seen_at: 0,
                revoked_at: None,
                revoked_reason: None,
            },
            user: UserRow::new(user, format!("u_{user}"), "wx1".into(), 0),
            identity: IdentityRow {
                id: user,
                user_id: user,
                appid: "wx1".into(),
                openid: "o".into(),
                unionid: None,
                created_at: 0,
            },
        })
    }

    fn key(n: u16) -> [u8; 32] {
        let mut key = [0u8; 32];
        key[..2].copy_from_slice(&n.to_le_bytes());
        key
    }

    /// A fresh database holding users 1 and 2 with sessions 10 and 20, and an empty
    /// cache over it.
    async fn two_users_with_a_session_each() -> (tempfile::TempDir, Arc<Db>, SessionCache) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let cache = SessionCache::new(Arc::clone(db.changes()));
        db.write(|c| {
            c.execute_batch(
                "INSERT INTO users (id, public_id, created_at, updated_at)
                     VALUES (1, 'u_1', 0, 0), (2, 'u_2', 0, 0);
                 INSERT INTO identities (id, user_id, appid, openid, created_at)
                     VALUES (1, 1, 'wx1', 'o1', 0), (2, 2, 'wx1', 'o2', 0);
                 INSERT INTO sessions (id, public_id, secret_hash, user_id, identity_id,
                     created_at, expires_at, max_expires_at, last_seen_at)
                     VALUES (10, 's_10', x'00', 1, 1, 0, 1, 1, 0),
                            (20, 's_20', x'01', 2, 2, 0, 1, 1, 0);",
            )?;
            Ok(())
        })
        .await
        .unwrap();
        (dir, db, cache)
    }

    #[tokio::test]
    async fn a_copy_serves_until_a_write_touches_its_session_or_user() {
        let (_dir, db, cache) = two_users_with_a_session_each().await;

        for (n, session, user) in [(1, 10, 1), (2, 20, 2)] {
            cache.insert(key(n), found(session, user), cache.ticket());
        }
        // Copies are used only within a while of the latest look for other processes'
        // commits; each check here comes right after one.
        db.look_for_other_commits().await.unwrap();
        assert_eq!(cache.get(&key(1)).unwrap().session.id, 10);
        assert!(cache.get(&key(3)).is_none());

        let update = |sql: &'static str| {
            db.write(move |c| {
                c.execute(sql, [])?;
                Ok(())
            })
        };
        update("UPDATE users SET nickname = 'n' WHERE id = 1")
            .await
            .unwrap();
        db.look_for_other_commits().await.unwrap();
        assert!(cache.get(&key(1)).is_none(), "the user changed");
        assert!(cache.get(&key(2)).is_some(), "another user's copy stays");

        update("UPDATE sessions SET revoked_at = 5 WHERE id = 20")
            .await
            .unwrap();
        assert!(cache.get(&key(2)).is_none(), "the session changed");

        // A copy read before a change but kept after it is not used either.
        let ticket = cache.ticket();
        update("UPDATE users SET nickname = 'x' WHERE id = 2")
            .await
            .unwrap();
        cache.insert(key(2), found(20, 2), ticket);
        assert!(cache.get(&key(2)).is_none(), "read before the update");

        // The identity a session logged in with is part of its copy too.
        let ticket = cache.ticket();
        cache.insert(key(1), found(10, 1), ticket);
        assert!(cache.get(&key(1)).is_some());
        update("UPDATE identities SET unionid = 'un' WHERE id = 1")
            .await
            .unwrap();
        assert!(cache.get(&key(1)).is_none(), "the identity changed");
        db.close().await;
    }

    #[tokio::test]
    async fn copies_age_out_and_their_number_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let cache = SessionCache::new(Arc::clone(db.changes()));
        let ticket = cache.ticket();
        for n in 0..(CAPACITY as u16 + 1000) {
            cache.insert(key(n), found(i64::from(n), 1), ticket);
        }
        assert!(cache.len() <= CAPACITY, "{} copies", cache.len());
        let last_id = i64::from(CAPACITY as u16 + 999);
        let last = key(CAPACITY as u16 + 999);
        db.look_for_other_commits().await.unwrap();
        assert!(cache.get(&last).is_some());

        let age_by = |by: Duration| {
            cache
                .shard(&last)
                .lock()
                .unwrap()
                .get_mut(&last)
                .unwrap()
                .ticket
                .at -= by;
        };
        let lifetime = copy_lifetime(last_id);
        age_by(lifetime - Duration::from_secs(2));
        assert!(cache.get(&last).is_some(), "within its lifetime");
        age_by(Duration::from_secs(2));
        assert!(cache.get(&last).is_none(), "too old");
        db.close().await;
    }

    #[test]
    fn copies_read_together_live_between_half_a_minute_and_a_minute_spread_out() {
        for step in [1, 1000] {
            let mut per_second = [0_u32; 60];
            for n in 0..3000 {
                let lifetime = copy_lifetime(n * step);
                assert!(
                    (MAX_COPY_AGE / 2..MAX_COPY_AGE).contains(&lifetime),
                    "{lifetime:?}"
                );
                per_second[lifetime.as_secs() as usize] += 1;
            }
            // 100 in each of the 30 seconds if even; no second gets a burst.
            assert!(
                per_second[30..].iter().all(|&c| (50..=150).contains(&c)),
                "step {step}: {per_second:?}"
            );
        }
        assert_eq!(copy_lifetime(7), copy_lifetime(7));
    }

    #[tokio::test]
    async fn another_connections_commit_makes_every_copy_stale_at_the_next_look() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::open(&path).unwrap();
        let cache = SessionCache::new(Arc::clone(db.changes()));
        cache.insert(key(1), found(10, 1), cache.ticket());
        db.look_for_other_commits().await.unwrap();
        assert!(cache.get(&key(1)).is_some());

        // The server's own commits leave copies of other rows alone.
        db.write(|c| {
            c.execute("CREATE TABLE by_the_server (x INTEGER)", [])?;
            Ok(())
        })
        .await
        .unwrap();
        db.look_for_other_commits().await.unwrap();
        assert!(cache.get(&key(1)).is_some(), "only the server wrote");

        let other = rusqlite::Connection::open(&path).unwrap();
        other
            .execute("CREATE TABLE elsewhere (x INTEGER)", [])
            .unwrap();
        assert!(cache.get(&key(1)).is_some(), "not looked for yet");
        db.look_for_other_commits().await.unwrap();
        assert!(cache.get(&key(1)).is_none(), "another process committed");
        cache.insert(key(1), found(10, 1), cache.ticket());
        assert!(cache.get(&key(1)).is_some(), "read after the look");
        drop(other);
        db.close().await;
    }

    /// A session id whose stripe is session 10's: a change to it makes session 10's
    /// copies look stale.
    fn sharing_a_stripe_with_session_10() -> i64 {
        // Past the sessions the fixture holds.
        (21..)
            .find(|&id| ChangedRow::Session(id).shares_stripe_with(ChangedRow::Session(10)))
            .unwrap()
    }

    #[tokio::test]
    async fn inserted_rows_leave_every_copy_alone() {
        let (_dir, db, cache) = two_users_with_a_session_each().await;
        cache.insert(key(1), found(10, 1), cache.ticket());
        let neighbour = sharing_a_stripe_with_session_10();
        let on_neighbour = |sql: &'static str| {
            db.write(move |c| {
                c.execute(sql, [neighbour])?;
                Ok(())
            })
        };

        on_neighbour(
            "INSERT INTO sessions (id, public_id, secret_hash, user_id, identity_id,
                 created_at, expires_at, max_expires_at, last_seen_at)
                 VALUES (?1, 's_n', x'02', 1, 1, 0, 1, 1, 0)",
        )
        .await
        .unwrap();
        db.look_for_other_commits().await.unwrap();
        assert!(cache.get(&key(1)).is_some(), "a new row is in no copy");

        on_neighbour("UPDATE sessions SET last_seen_at = 5 WHERE id = ?1")
            .await
            .unwrap();
        db.look_for_other_commits().await.unwrap();
        assert!(cache.get(&key(1)).is_none(), "its neighbour's update shows");
        db.close().await;
    }
}
