//! Randomness from the operating system (through ring), for ids, keys and jitter.

use ring::rand::{SecureRandom, SystemRandom};

/// `N` random bytes. The OS generator failing is not something a server can work around.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .expect("the operating system's random number generator failed");
    out
}

/// A random id with a readable prefix: `u_` for users, `s_` for sessions.
pub fn public_id(prefix: &str) -> String {
    let raw: [u8; 12] = bytes();
    let mut id = String::with_capacity(prefix.len() + 24);
    id.push_str(prefix);
    for b in raw {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// A uniformly random number in `0..bound` (`bound > 0`), for backoff jitter.
pub fn below(bound: u64) -> u64 {
    u64::from_le_bytes(bytes()) % bound.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_distinct() {
        let a = public_id("u_");
        let b = public_id("u_");
        assert!(a.starts_with("u_") && a.len() == 26, "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn below_stays_in_range() {
        assert!((0..1000).all(|_| below(7) < 7));
        assert_eq!(below(0), 0);
    }
}
