//! Filling a wxauth database with users and live sessions straight through SQLite, in
//! large transactions with prepared statements that follow schema.sql. Shared by the
//! `bench_seed` binary and the session-lookup micro-benchmark (`benches/session_lookup.rs`,
//! which includes this file by path).

use rusqlite::{Connection, params};
use wxauth::keys::token::SessionSecret;

/// Rows written per transaction.
const BATCH: u64 = 50_000;

/// What the seeding left behind for the load generator.
pub struct Seeded {
    /// The secrets of sessions spread evenly over the whole table.
    pub sample: Vec<SessionSecret>,
    /// Users (and sessions) written.
    pub users: u64,
}

/// A small, fast generator for ids and secrets: the fixture needs many unpredictable-
/// looking values, not cryptographic ones (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    /// `prefix` followed by `2 * N` lowercase hex digits.
    fn hex_id<const N: usize>(&mut self, prefix: &str) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut raw = [0u8; N];
        self.fill(&mut raw);
        let mut id = String::with_capacity(prefix.len() + 2 * N);
        id.push_str(prefix);
        for b in raw {
            id.push(HEX[usize::from(b >> 4)] as char);
            id.push(HEX[usize::from(b & 0xf)] as char);
        }
        id
    }
}

/// The first words of the nicknames `seed` gives with `profiles`: each is followed
/// by a number below 10,000, so a search for one of them finds about one user in 32 (no
/// word starts another).
pub const NICKNAME_WORDS: [&str; 32] = [
    "小明", "阿强", "静静", "大伟", "晓燕", "老王", "花花", "阳光", "微笑", "星星", "月亮", "清风",
    "木子", "鱼儿", "天天", "乐乐", "Tom", "Lucy", "Jack", "Amy", "Kevin", "Coco", "Leo", "Mia",
    "Sunny", "Lily", "Max", "Anna", "David", "Emma", "Jason", "Nina",
];

/// Adds `users` users of `appid` (in `apps` too, as a login leaves it), each with one
/// session live from `now` for a week, and returns the secrets of `sample` of those
/// sessions. `seed` varies the ids. With `profiles` each user also gets what the console
/// searches by: a nickname (one of [`NICKNAME_WORDS`] and a number), a phone number
/// (`138` and 8 random digits, so a few are shared) and a unionid on its identity. Those
/// come from a generator of their own: the other ids and secrets are the same either way.
pub fn seed(
    conn: &mut Connection,
    appid: &str,
    users: u64,
    sample: usize,
    now: i64,
    seed: u64,
    profiles: bool,
) -> rusqlite::Result<Seeded> {
    let mut rng = Rng(seed);
    let mut profile_rng = Rng(!seed);
    let first: i64 = conn.query_row(
        "SELECT max(coalesce((SELECT max(id) FROM users), 0), \
                    coalesce((SELECT max(id) FROM identities), 0), \
                    coalesce((SELECT max(id) FROM sessions), 0))",
        [],
        |r| r.get(0),
    )?;
    let every = (users / sample.max(1) as u64).max(1);
    let mut kept = Vec::with_capacity(sample);
    let mut written = 0;
    while written < users {
        let end = (written + BATCH).min(users);
        let tx = conn.transaction()?;
        {
            let mut add_user = tx.prepare_cached(
                "INSERT INTO users (id, public_id, created_at, updated_at, nickname, phone, apps) \
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6)",
            )?;
            let mut add_identity = tx.prepare_cached(
                "INSERT INTO identities (id, user_id, appid, openid, unionid, created_at) \
                 VALUES (?1, ?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut add_session = tx.prepare_cached(
                "INSERT INTO sessions (id, public_id, secret_hash, user_id, identity_id, \
                 created_at, expires_at, max_expires_at, last_seen_at) \
                 VALUES (?1, ?2, ?3, ?1, ?1, ?4, ?5, ?6, ?4)",
            )?;
            for n in written..end {
                let id = first + n as i64 + 1;
                let created = now - (users - n) as i64;
                let openid = rng.hex_id::<14>("o");
                let (nickname, phone, unionid) = if profiles {
                    let word =
                        NICKNAME_WORDS[(profile_rng.next() % NICKNAME_WORDS.len() as u64) as usize];
                    (
                        Some(format!("{word}{}", profile_rng.next() % 10_000)),
                        Some(format!("138{:08}", profile_rng.next() % 100_000_000)),
                        Some(profile_rng.hex_id::<14>("o")[..28].to_owned()),
                    )
                } else {
                    (None, None, None)
                };
                add_user.execute(params![
                    id,
                    rng.hex_id::<12>("u_"),
                    created,
                    nickname,
                    phone,
                    appid
                ])?;
                add_identity.execute(params![id, appid, &openid[..28], unionid, created])?;
                // A current (v2) secret: the creation time in milliseconds, then 16
                // random bytes.
                let mut raw = [0u8; 22];
                raw[..6].copy_from_slice(&(now as u64 * 1000).to_be_bytes()[2..]);
                rng.fill(&mut raw[6..]);
                let secret = SessionSecret::from_bytes(&raw).expect("a v2 secret");
                add_session.execute(params![
                    id,
                    rng.hex_id::<12>("s_"),
                    secret.lookup_key(),
                    now,
                    now + 7 * 86_400,
                    now + 90 * 86_400
                ])?;
                if n % every == 0 && kept.len() < sample {
                    kept.push(secret);
                }
            }
        }
        tx.commit()?;
        written = end;
    }
    Ok(Seeded {
        sample: kept,
        users: written,
    })
}
