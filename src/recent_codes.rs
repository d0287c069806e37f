//! Which login codes this server may have recorded in the last five minutes. Nearly
//! every login brings a code never seen before; this tells so without the database read
//! that looks for an earlier login with the code (a retried request), which a login
//! otherwise paid for on a reader thread.
//!
//! Bloom filters in two generations of five minutes: a code is added to the current one
//! when its login is recorded (and, at start, for every live code in the database), and
//! stays findable until the current generation has become the previous one and been
//! dropped, five minutes at the very least. The filters never miss a code added to them,
//! so "absent" is certain; "maybe" can be wrong and then costs the read it always cost.

use std::sync::Mutex;

use crate::clock::UnixTime;
use crate::login::CODE_LIFETIME_SECS;

/// Bits per code a filter is sized for: about 0.2% false "maybe" answers when it holds
/// that many.
const BITS_PER_CODE: usize = 16;
/// The smallest filter (8 KiB), and the most bits one generation uses (16 MiB): past
/// that, a burst of logins makes more "maybe" answers instead of using more memory.
const MIN_BITS: usize = 1 << 16;
const MAX_BITS: usize = 1 << 27;
/// Bit positions per code.
const PROBES: usize = 4;

/// The login codes recorded recently, as filters over their hashes.
pub struct RecentCodes(Mutex<Generations>);

struct Generations {
    current: Generation,
    previous: Generation,
    /// When `current` began.
    since: UnixTime,
}

impl RecentCodes {
    /// Empty filters; the caller notes the codes the database holds unexpired. The first
    /// generation grows to what it is given.
    pub fn new(now: UnixTime) -> RecentCodes {
        RecentCodes(Mutex::new(Generations {
            current: Generation::sized_for(0),
            previous: Generation::sized_for(0),
            since: now,
        }))
    }

    /// Remembers that a login with the code hashing to `code` was recorded.
    pub fn note(&self, code: &[u8; 32], now: UnixTime) {
        self.generations(now).current.add(code);
    }

    /// Whether a login with the code may have been recorded in its lifetime; `false` is
    /// certain.
    pub fn may_hold(&self, code: &[u8; 32], now: UnixTime) -> bool {
        let generations = self.generations(now);
        generations.current.may_hold(code) || generations.previous.may_hold(code)
    }

    /// The generations as of `now`, the current one begun anew once it is a lifetime
    /// old. A code added at `t` is then kept until a second turn, which comes at least a
    /// lifetime after the first, itself no earlier than `t`.
    fn generations(&self, now: UnixTime) -> std::sync::MutexGuard<'_, Generations> {
        let mut generations = self.0.lock().expect("recent codes poisoned");
        if now - generations.since >= CODE_LIFETIME_SECS {
            let next = Generation::sized_for(generations.current.added);
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

/// One generation's codes: a filter sized from the last generation's count, and when
/// more come, further filters twice the size of the one before (a scalable Bloom filter).
struct Generation {
    filters: Vec<Filter>,
    added: usize,
}

impl Generation {
    fn sized_for(codes: usize) -> Generation {
        let bits = codes
            .saturating_mul(BITS_PER_CODE)
            .clamp(MIN_BITS, MAX_BITS);
        Generation {
            filters: vec![Filter::new(bits.next_power_of_two())],
            added: 0,
        }
    }

    fn add(&mut self, code: &[u8; 32]) {
        let last = self.filters.last().expect("a generation has a filter");
        if last.added >= last.bits() / BITS_PER_CODE {
            let bits: usize = self.filters.iter().map(Filter::bits).sum();
            if bits + 2 * last.bits() <= MAX_BITS {
                self.filters.push(Filter::new(2 * last.bits()));
            }
        }
        self.filters
            .last_mut()
            .expect("a generation has a filter")
            .add(code);
        self.added += 1;
    }

    fn may_hold(&self, code: &[u8; 32]) -> bool {
        self.filters.iter().any(|filter| filter.may_hold(code))
    }
}

/// A Bloom filter over code hashes. The hashes are SHA-256 outputs, so their bytes serve
/// as the bit positions directly.
struct Filter {
    words: Vec<u64>,
    added: usize,
}

impl Filter {
    /// A filter of `bits` bits, a power of two.
    fn new(bits: usize) -> Filter {
        Filter {
            words: vec![0; bits / 64],
            added: 0,
        }
    }

    fn bits(&self) -> usize {
        self.words.len() * 64
    }

    fn positions(&self, code: &[u8; 32]) -> [usize; PROBES] {
        let mask = self.bits() - 1;
        std::array::from_fn(|i| {
            let bytes: [u8; 4] = code[4 * i..4 * i + 4].try_into().expect("4 bytes");
            u32::from_le_bytes(bytes) as usize & mask
        })
    }

    fn add(&mut self, code: &[u8; 32]) {
        for bit in self.positions(code) {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
        self.added += 1;
    }

    fn may_hold(&self, code: &[u8; 32]) -> bool {
        self.positions(code)
            .iter()
            .all(|&bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
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

    /// How many of 100,000 codes never noted `may_hold` answers "maybe" for.
    fn false_maybes(may_hold: impl Fn(&[u8; 32]) -> bool) -> usize {
        (1_000_000..1_100_000)
            .filter(|&n| may_hold(&code(n)))
            .count()
    }

    #[test]
    fn every_noted_code_is_found_and_few_others_are() {
        // Far more codes than the first filter was sized for: the generation grows.
        let grown = RecentCodes::new(0);
        for n in 0..200_000 {
            grown.note(&code(n), 1);
        }
        assert!((0..200_000).all(|n| grown.may_hold(&code(n), 2)));
        let wrong = false_maybes(|c| grown.may_hold(c, 2));
        assert!(wrong < 2_000, "{wrong} false answers in 100,000");

        // Sized from the start, as the next generation is from this one's count.
        let mut sized = Generation::sized_for(200_000);
        for n in 0..200_000 {
            sized.add(&code(n));
        }
        assert_eq!(sized.filters.len(), 1);
        assert!((0..200_000).all(|n| sized.may_hold(&code(n))));
        let wrong = false_maybes(|c| sized.may_hold(c));
        assert!(wrong < 500, "{wrong} false answers in 100,000");
    }

    #[test]
    fn a_code_is_kept_for_its_lifetime_and_then_forgotten() {
        let codes = RecentCodes::new(1_000);
        codes.note(&code(1), 1_000);
        codes.note(&code(2), 1_250);
        assert!(!codes.may_hold(&code(3), 1_250));
        for now in [1_299, 1_300, 1_549, 1_550] {
            assert!(codes.may_hold(&code(2), now), "at {now}");
        }
        assert!(codes.may_hold(&code(1), 1_550));
        // The generation that took both began at 1,000 and turned at 1,300: it is
        // dropped at the next turn, 1,600.
        assert!(!codes.may_hold(&code(1), 1_600));
        assert!(!codes.may_hold(&code(2), 1_600));
    }

    #[test]
    fn a_generation_grows_by_doubling_up_to_its_bound() {
        assert_eq!(Generation::sized_for(0).filters[0].bits(), MIN_BITS);
        assert_eq!(Generation::sized_for(10_000).filters[0].bits(), 1 << 18);

        let mut full = Generation::sized_for(0);
        full.filters[0].added = MIN_BITS / BITS_PER_CODE;
        full.add(&code(1));
        assert_eq!(full.filters.len(), 2);
        assert_eq!(full.filters[1].bits(), 2 * MIN_BITS);
        assert!(full.may_hold(&code(1)));

        let mut capped = Generation::sized_for(usize::MAX);
        assert_eq!(capped.filters[0].bits(), MAX_BITS);
        capped.filters[0].added = MAX_BITS / BITS_PER_CODE;
        capped.add(&code(2));
        assert_eq!(capped.filters.len(), 1, "never more than MAX_BITS");
        assert!(capped.may_hold(&code(2)));
    }
}
