//! Console passwords: PBKDF2-HMAC-SHA256 from ring, stored as
//! `pbkdf2-sha256$<iterations>$<salt>$<hash>` (base64 without padding), so that the
//! iteration count can rise later without making stored passwords unreadable.

use std::num::NonZeroU32;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ring::pbkdf2;

use super::random;

/// Iterations for a new password: OWASP's figure for PBKDF2-HMAC-SHA256.
pub const ITERATIONS: u32 = 600_000;

/// The shortest password accepted.
pub const MIN_LEN: usize = 12;

/// The longest password accepted; PBKDF2 hashes any length, but a megabyte of "password"
/// is a way to make the server work, not a password.
pub const MAX_LEN: usize = 1024;

const SCHEME: &str = "pbkdf2-sha256";
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;

/// Whether `password` may be chosen; the reason when it may not.
pub fn check_strength(password: &str) -> Result<(), PasswordProblem> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        Err(PasswordProblem::TooShort)
    } else if password.len() > MAX_LEN {
        Err(PasswordProblem::TooLong)
    } else {
        Ok(())
    }
}

/// Why a password was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordProblem {
    TooShort,
    TooLong,
}

/// Hashes `password` with a new random salt. Takes a few hundred milliseconds of CPU on
/// purpose: run it off the async runtime.
pub fn hash(password: &str) -> String {
    hash_with(password, &random::bytes::<SALT_LEN>(), ITERATIONS)
}

fn hash_with(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut out = [0u8; HASH_LEN];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(iterations).expect("iterations are positive"),
        salt,
        password.as_bytes(),
        &mut out,
    );
    format!(
        "{SCHEME}${iterations}${}${}",
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(out)
    )
}

/// Whether `password` matches `stored`, in constant time. A stored value that is not of
/// this scheme matches nothing. As slow as [`hash`].
pub fn verify(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(SCHEME), Some(iterations), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Some(iterations), Ok(salt), Ok(hash)) = (
        iterations.parse().ok().and_then(NonZeroU32::new),
        STANDARD_NO_PAD.decode(salt),
        STANDARD_NO_PAD.decode(hash),
    ) else {
        return false;
    };
    pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        password.as_bytes(),
        &hash,
    )
    .is_ok()
}

/// Spends about as long as [`verify`] does, for a sign-in whose name matches no admin:
/// otherwise the answer's speed would tell which names exist.
pub fn verify_nothing(password: &str) {
    let _ = hash_with(password, &[0; SALT_LEN], ITERATIONS);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_own_hash_only() {
        // Few iterations: the scheme is the same, and the test stays fast.
        let stored = hash_with("correct horse battery", b"0123456789abcdef", 1000);
        assert!(stored.starts_with("pbkdf2-sha256$1000$"));
        assert!(verify("correct horse battery", &stored));
        assert!(!verify("correct horse batterx", &stored));
        assert!(!verify("", &stored));
    }

    #[test]
    fn new_hashes_use_the_full_count_and_a_fresh_salt() {
        let a = hash("correct horse battery");
        let b = hash("correct horse battery");
        assert!(a.starts_with("pbkdf2-sha256$600000$"));
        assert_ne!(a, b);
        assert!(verify("correct horse battery", &a));
    }

    #[test]
    fn damaged_stored_values_match_nothing() {
        let stored = hash_with("correct horse battery", b"0123456789abcdef", 1000);
        for damaged in [
            String::new(),
            stored.replace("pbkdf2-sha256", "pbkdf2-sha1"),
            stored.replace("$1000$", "$0$"),
            stored.replace("$1000$", "$x$"),
            format!("{stored}$extra"),
            stored[..stored.len() - 2].to_owned(),
        ] {
            assert!(!verify("correct horse battery", &damaged), "{damaged}");
        }
    }

    #[test]
    fn short_and_huge_passwords_are_refused() {
        assert_eq!(check_strength("short"), Err(PasswordProblem::TooShort));
        assert_eq!(
            check_strength(&"x".repeat(MAX_LEN + 1)),
            Err(PasswordProblem::TooLong)
        );
        assert_eq!(check_strength("twelve chars"), Ok(()));
        // Characters, not bytes: twelve Chinese characters are enough.
        assert_eq!(check_strength("一二三四五六七八九十百千"), Ok(()));
    }
}
