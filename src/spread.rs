//! Spreading ids over a small range by Fibonacci hashing, so that rows made together
//! (consecutive ids, or every thousandth) do not all fall on the same value: the same
//! stripe of the change log, or the same second of a timer.

/// 2^64 divided by the golden ratio, the multiplier of Fibonacci hashing.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// `value` spread over `0..2^bits` (`bits` from 1 to 63), the same every time.
pub fn spread(value: u64, bits: u32) -> u64 {
    debug_assert!((1..64).contains(&bits));
    value.wrapping_mul(GOLDEN) >> (64 - bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_in_range_and_fills_it_for_ids_however_spaced() {
        for step in [1_u64, 1000] {
            let mut seen = [0_u32; 64];
            for n in 0..6400 {
                let s = spread(n * step, 6);
                assert!(s < 64);
                seen[s as usize] += 1;
            }
            // 100 each if even; Fibonacci hashing keeps every bucket near that.
            assert!(
                seen.iter().all(|&c| (50..=150).contains(&c)),
                "step {step}: {seen:?}"
            );
        }
    }

    #[test]
    fn is_the_same_for_the_same_value() {
        assert_eq!(spread(12_345, 14), spread(12_345, 14));
        assert_ne!(spread(1, 14), spread(2, 14));
    }
}
