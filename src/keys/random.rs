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

/// Random bytes drawn from the operating system in one call and handed out in pieces,
/// for work that needs several random values at once (a login needs four): each draw
/// is a system call.
pub struct Draw<const N: usize> {
    bytes: [u8; N],
    taken: usize,
}

impl<const N: usize> Draw<N> {
    /// Draws `N` bytes.
    pub fn from_os() -> Draw<N> {
        Draw {
            bytes: bytes(),
            taken: 0,
        }
    }

    /// The next `M` bytes; no byte is handed out twice.
    ///
    /// # Panics
    /// When fewer than `M` bytes are left: the draw was sized for fewer uses.
    pub fn take<const M: usize>(&mut self) -> [u8; M] {
        let end = self.taken + M;
        let piece = self
            .bytes
            .get(self.taken..end)
            .expect("the draw was sized for fewer uses")
            .try_into()
            .expect("a slice of M bytes");
        self.taken = end;
        piece
    }
}

/// A random id with a readable prefix, such as `a_` for avatars.
pub fn public_id(prefix: &str) -> String {
    hex_id(prefix, &bytes::<12>())
}

/// The random bytes in an [`ordered_id`].
pub const ORDERED_ID_RANDOM_LEN: usize = 6;

/// An id for a row that is created often and looked up by this id (`u_` for users, `s_`
/// for sessions): 48 bits of the current Unix time in milliseconds, then the 48 bits of
/// `random` (fresh from the operating system), in hex. Ids made close in time sort
/// together, so their index grows at its end and a burst of logins touches a page or two
/// of it instead of a page per login; a fully random id costs a page write per login in
/// every such index. The time it reveals is the row's `created_at`, which its owner sees
/// anyway.
pub fn ordered_id(prefix: &str, random: [u8; ORDERED_ID_RANDOM_LEN]) -> String {
    let mut raw = [0u8; 12];
    raw[..6].copy_from_slice(&time_prefix());
    raw[6..].copy_from_slice(&random);
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
        let a = ordered_id("s_", bytes());
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = ordered_id("s_", bytes());
        assert!(a.starts_with("s_") && a.len() == 26, "{a}");
        assert!(a < b, "{a} then {b}");
        let burst: std::collections::HashSet<String> =
            (0..1000).map(|_| ordered_id("s_", bytes())).collect();
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
    fn an_ordered_id_ends_with_its_random_bytes() {
        let id = ordered_id("u_", [0xde, 0xad, 0xbe, 0xef, 0x00, 0x01]);
        assert!(id.ends_with("deadbeef0001"), "{id}");
    }

    #[test]
    fn a_draw_hands_out_each_byte_once_in_order() {
        let mut draw = Draw::<10> {
            bytes: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            taken: 0,
        };
        assert_eq!(draw.take::<3>(), [0, 1, 2]);
        assert_eq!(draw.take::<0>(), [0u8; 0]);
        assert_eq!(draw.take::<7>(), [3, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    #[should_panic(expected = "the draw was sized for fewer uses")]
    fn a_draw_refuses_to_hand_out_more_than_it_holds() {
        let mut draw = Draw::<4>::from_os();
        draw.take::<3>();
        draw.take::<2>();
    }

    #[test]
    fn draws_differ() {
        assert_ne!(
            Draw::<32>::from_os().take::<32>(),
            Draw::<32>::from_os().take::<32>()
        );
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
