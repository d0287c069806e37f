//! The login codes this server recorded in the last five minutes, and the rows of
//! `login_codes` that hold them. Nearly every login brings a code never seen before; this
//! tells so without a database read, and for a retried request it names the row that
//! holds the earlier login. `login_codes` therefore has no index of its own: one on the
//! code hash put every login on a random page of it, a page more for each commit to
//! write, sync and copy back.
//!
//! Two generations of five minutes: a code is added to the current one when its login is
//! recorded (and, at start, for every live code in the database), and stays findable
//! until the current generation has become the previous one and been dropped, five
//! minutes at the very least. A generation maps the first four bytes of each code hash
//! to its row, kept as its distance from the generation's first row; the caller reads
//! the row to compare the whole hash. Codes that share those four bytes (a few pairs
//! among a million codes, or a code WeChat accepted twice) keep every row: the older
//! ones are set aside in a map of their own.
//!
//! A code takes 9 bytes of a hash map's slot, and the slots double as a generation
//! grows: 10 to 21 bytes for each login of the last five to ten minutes, 5 to 10 MB
//! after 500,000 logins.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use crate::clock::UnixTime;

/// How long WeChat keeps a `wx.login` code valid, and so how long a replay is honoured.
pub const CODE_LIFETIME_SECS: i64 = 300;

/// The login codes recorded recently, each with its row.
pub struct RecentCodes(Mutex<Generations>);

struct Generations {
    current: Generation,
    previous: Generation,
    /// When `current` began.
    since: UnixTime,
}

impl RecentCodes {
    /// No codes yet; the caller notes the codes the database holds unexpired.
    pub fn new(now: UnixTime) -> RecentCodes {
        RecentCodes(Mutex::new(Generations {
            current: Generation::sized_for(0),
            previous: Generation::sized_for(0),
            since: now,
        }))
    }

    /// Remembers that the login with the code hashing to `code` was recorded in row `row`.
    pub fn note(&self, code: &[u8; 32], row: i64, now: UnixTime) {
        self.generations(now).current.add(prefix(code), row);
    }

    /// The rows that may hold the code, newest first: nearly always none for a code not
    /// recorded in its lifetime, and one for a code that was.
    pub fn rows(&self, code: &[u8; 32], now: UnixTime) -> Vec<i64> {
        let generations = self.generations(now);
        let mut rows = Vec::new();
        generations.current.rows(prefix(code), &mut rows);
        generations.previous.rows(prefix(code), &mut rows);
        rows.sort_unstable_by(|a, b| b.cmp(a));
        rows
    }

    /// The generations as of `now`, the current one begun anew once it is a lifetime
    /// old. A code added at `t` is then kept until a second turn, which comes at least a
    /// lifetime after the first, itself no earlier than `t`.
    fn generations(&self, now: UnixTime) -> std::sync::MutexGuard<'_, Generations> {
        let mut generations = self.0.lock().expect("recent codes poisoned");
        if now - generations.since >= CODE_LIFETIME_SECS {
            let next = Generation::sized_for(generations.current.rows.len());
            generations.previous = std::mem::replace(&mut generations.current, next);
            generations.since = now;
        }
        generations
    }
}

impl std::fmt::Debug for RecentCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecentCodes")
    }
}

/// A code hash's first four bytes, the key it is kept under.
fn prefix(code: &[u8; 32]) -> u32 {
    u32::from_le_bytes(code[..4].try_into().expect("4 bytes"))
}

type Map<V> = HashMap<u32, V, BuildHasherDefault<PrefixHasher>>;

/// One generation's codes.
struct Generation {
    /// The first row noted; the others are kept as their distance from it.
    base: Option<i64>,
    rows: Map<i32>,
    /// Rows whose key a later code took, or too far from `base`; nearly always empty.
    set_aside: Map<Vec<i64>>,
}

impl Generation {
    /// Room for `codes` without growing: a generation is sized from the one before, so
    /// that a steady stream of logins does not wait while the map doubles.
    fn sized_for(codes: usize) -> Generation {
        Generation {
            base: None,
            rows: HashMap::with_capacity_and_hasher(codes, BuildHasherDefault::default()),
            set_aside: Map::default(),
        }
    }

    fn add(&mut self, key: u32, row: i64) {
        let base = *self.base.get_or_insert(row);
        let Ok(distance) = i32::try_from(row - base) else {
            self.set_aside.entry(key).or_default().push(row);
            return;
        };
        match self.rows.entry(key) {
            Entry::Vacant(slot) => {
                slot.insert(distance);
            }
            Entry::Occupied(mut slot) => {
                let older = base + i64::from(slot.insert(distance));
                self.set_aside.entry(key).or_default().push(older);
            }
        }
    }

    /// Appends the rows kept under `key`.
    fn rows(&self, key: u32, out: &mut Vec<i64>) {
        if let (Some(base), Some(&distance)) = (self.base, self.rows.get(&key)) {
            out.push(base + i64::from(distance));
        }
        if let Some(older) = self.set_aside.get(&key) {
            out.extend(older);
        }
    }
}

/// Hashes a key, four bytes of a SHA-256 output, by spreading its bits over all 64 (a
/// multiplication by 2^64 over the golden ratio): the map takes the top bits of a hash
/// to tell keys apart, the bottom ones to place them. Nor can anyone pick colliding
/// keys: a code is kept only once WeChat accepted it.
#[derive(Default)]
struct PrefixHasher(u64);

/// 2^64 divided by the golden ratio, odd.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for PrefixHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(GOLDEN);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(GOLDEN);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hash-like code for `n` (splitmix64 over it, four times).
    fn code(n: u32) -> [u8; 32] {
        let mut state = u64::from(n);
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        out
    }

    #[test]
    fn every_noted_code_names_its_row_and_few_others_name_any() {
        let codes = RecentCodes::new(0);
        for n in 0..200_000 {
            codes.note(&code(n), i64::from(n) + 1, 1);
        }
        assert!((0..200_000).all(|n| codes.rows(&code(n), 2).contains(&(i64::from(n) + 1))));
        // A code never noted shares its four bytes with one of 200,000 noted codes about
        // once in 20,000 lookups; the row read for it then holds another hash.
        let wrong = (1_000_000..1_100_000)
            .filter(|&n| !codes.rows(&code(n), 2).is_empty())
            .count();
        assert!(
            wrong < 20,
            "{wrong} rows named for 100,000 codes never noted"
        );
    }

    #[test]
    fn codes_sharing_a_key_keep_every_row_newest_first() {
        let codes = RecentCodes::new(0);
        let mut twin = code(1);
        twin[4..].copy_from_slice(&code(2)[4..]);
        codes.note(&code(1), 10, 1);
        codes.note(&code(3), 11, 1);
        codes.note(&twin, 12, 1);
        codes.note(&code(1), 13, 1);
        assert_eq!(codes.rows(&code(1), 2), [13, 12, 10]);
        assert_eq!(
            codes.rows(&twin, 2),
            [13, 12, 10],
            "the caller tells them apart"
        );
        assert_eq!(codes.rows(&code(3), 2), [11]);
    }

    #[test]
    fn rows_far_from_the_first_are_kept_whole() {
        let codes = RecentCodes::new(0);
        let far = 1 << 40;
        codes.note(&code(1), 7, 1);
        codes.note(&code(2), far, 1);
        codes.note(&code(3), 5, 1);
        codes.note(&code(2), far + 1, 1);
        assert_eq!(codes.rows(&code(1), 2), [7]);
        assert_eq!(codes.rows(&code(2), 2), [far + 1, far]);
        assert_eq!(codes.rows(&code(3), 2), [5], "before the first row noted");
    }

    #[test]
    fn a_code_is_kept_for_its_lifetime_and_then_forgotten() {
        let codes = RecentCodes::new(1_000);
        codes.note(&code(1), 1, 1_000);
        codes.note(&code(2), 2, 1_250);
        assert!(codes.rows(&code(3), 1_250).is_empty());
        for now in [1_299, 1_300, 1_549, 1_550] {
            assert_eq!(codes.rows(&code(2), now), [2], "at {now}");
        }
        codes.note(&code(3), 3, 1_400);
        assert_eq!(codes.rows(&code(1), 1_550), [1]);
        // The generation that took the first two began at 1,000 and turned at 1,300: it
        // is dropped at the next turn, 1,600. The third is kept until the turn after.
        assert!(codes.rows(&code(1), 1_600).is_empty());
        assert!(codes.rows(&code(2), 1_600).is_empty());
        assert_eq!(codes.rows(&code(3), 1_899), [3]);
        assert!(codes.rows(&code(3), 1_900).is_empty());
    }

    #[test]
    fn a_generation_is_sized_from_the_one_before() {
        let codes = RecentCodes::new(0);
        for n in 0..10_000 {
            codes.note(&code(n), 1, 0);
        }
        codes.rows(&code(0), CODE_LIFETIME_SECS);
        let generations = codes.0.lock().unwrap();
        assert!(generations.current.rows.capacity() >= 10_000);
        assert_eq!(generations.previous.rows.len(), 10_000);
    }
}
