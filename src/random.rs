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

/// A random id with a readable prefix, such as `a_` for avatars.
pub fn public_id(prefix: &str) -> String {
    hex_id(prefix, &bytes::<12>())
}

/// An id for a row that is created often and looked up by this id (`u_` for users, `s_`
/// for sessions): 48 bits of the current Unix time in milliseconds, then 48 random bits,
/// in hex. Ids made close in time sort together, so their index grows at its end and
/// a burst of logins touches a page or two of it instead of a page per login; a fully
/// random id costs a page write per login in every such index. The time it reveals is
/// the row's `created_at`, which its owner sees anyway.
pub fn ordered_id(prefix: &str) -> String {
    let mut raw = [0u8; 12];
    raw[..6].copy_from_slice(&time_prefix());
    raw[6..].copy_from_slice(&bytes::<6>());
    hex_id(prefix, &raw)
}

/// The current Unix time in milliseconds as 6 big-endian bytes: the head of values that
/// should sort by when they were made (ordered ids, session secrets).
pub fn time_prefix() -> [u8; 6] {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut prefix = [0u8; 6];
    prefix.copy_from_slice(&millis.to_be_bytes()[2..]);
    prefix
}

fn hex_id(prefix: &str, raw: &[u8; 12]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 24];
    for (pair, b) in hex.chunks_exact_mut(2).zip(raw) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
    let mut id = String::with_capacity(prefix.len() + hex.len());
    id.push_str(prefix);
    id.push_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"));
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
    fn ordered_ids_sort_by_time_and_stay_distinct() {
        let a = ordered_id("s_");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = ordered_id("s_");
        assert!(a.starts_with("s_") && a.len() == 26, "{a}");
        assert!(a < b, "{a} then {b}");
        let burst: std::collections::HashSet<String> =
            (0..1000).map(|_| ordered_id("s_")).collect();
        assert_eq!(burst.len(), 1000);
        let now_hex = format!(
            "{:012x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        );
        assert_eq!(&b[2..8], &now_hex[..6], "the id starts with the time");
    }

    #[test]
    fn ids_spell_their_bytes_in_lowercase_hex() {
        let raw = [
            0x00, 0x01, 0x0a, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xf0, 0xfe, 0xff, 0x10,
        ];
        assert_eq!(hex_id("u_", &raw), "u_00010a7f80abcdeff0feff10");
    }

    #[test]
    fn below_stays_in_range() {
        assert!((0..1000).all(|_| below(7) < 7));
        assert_eq!(below(0), 0);
    }
}
