//! Passphrase encryption for backup files (ring only): a key from PBKDF2-HMAC-SHA256
//! over the passphrase and a random salt, and AES-256-GCM over 64 KiB chunks, so a
//! large backup is never held in memory whole. Each chunk's nonce is its number plus a
//! flag marking the last chunk, and the header is authenticated with every chunk, so a
//! reordered, truncated, extended or altered file fails to open.
//!
//! Layout: `WXBKENC1`, a format byte (1), the PBKDF2 iterations (u32, big-endian), a
//! 16-byte salt; then chunks of up to 64 KiB of ciphertext, each followed by its tag.
//! Every chunk but the last is full; the last is shorter, possibly empty.

use std::io::{self, Read, Write};
use std::num::NonZeroU32;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::pbkdf2;

use crate::keys::random;
use crate::keys::secret::Secret;

/// How a sealed file starts.
pub const MAGIC: &[u8; 8] = b"WXBKENC1";
const FORMAT: u8 = 1;
/// PBKDF2 rounds for new files: OWASP's figure for HMAC-SHA256.
const ITERATIONS: u32 = 600_000;
/// Files claiming more rounds than this are refused rather than ground through.
const MAX_ITERATIONS: u32 = 10_000_000;
const SALT_LEN: usize = 16;
const HEADER_LEN: usize = MAGIC.len() + 1 + 4 + SALT_LEN;
const CHUNK: usize = 64 * 1024;
const TAG_LEN: usize = 16;

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    #[error("this is not an encrypted wxauth backup")]
    NotSealed,
    #[error("the file uses an encryption format this wxauth does not know")]
    UnknownFormat,
    #[error("cannot decrypt: the passphrase is wrong or the file is damaged")]
    Refused,
}

/// Whether `start` (the first bytes of a file) marks a sealed file.
pub fn is_sealed(start: &[u8]) -> bool {
    start.starts_with(MAGIC)
}

fn key(passphrase: &Secret, salt: &[u8], iterations: u32) -> Result<LessSafeKey, SealError> {
    if passphrase.expose().is_empty() {
        return Err(SealError::EmptyPassphrase);
    }
    let rounds = NonZeroU32::new(iterations).ok_or(SealError::UnknownFormat)?;
    let mut bytes = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        passphrase.expose().as_bytes(),
        &mut bytes,
    );
    let unbound = UnboundKey::new(&AES_256_GCM, &bytes).expect("a 32-byte key is valid");
    Ok(LessSafeKey::new(unbound))
}

fn nonce(counter: u64, last: bool) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[..8].copy_from_slice(&counter.to_be_bytes());
    n[8..].copy_from_slice(&u32::from(last).to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Reads as many bytes as fit in `buf` unless the input ends first; returns how many.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Encrypts all of `input` into `output` under `passphrase`.
pub fn seal(
    input: &mut impl Read,
    output: &mut impl Write,
    passphrase: &Secret,
) -> Result<(), SealError> {
    seal_with(input, output, passphrase, ITERATIONS)
}

/// [`seal`] with a given number of PBKDF2 rounds, which the header records.
fn seal_with(
    input: &mut impl Read,
    output: &mut impl Write,
    passphrase: &Secret,
    iterations: u32,
) -> Result<(), SealError> {
    let salt: [u8; SALT_LEN] = random::bytes();
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.push(FORMAT);
    header.extend_from_slice(&iterations.to_be_bytes());
    header.extend_from_slice(&salt);
    let key = key(passphrase, &salt, iterations)?;
    output.write_all(&header)?;
    let mut buf = vec![0u8; CHUNK + TAG_LEN];
    let mut counter = 0u64;
    loop {
        let n = fill(input, &mut buf[..CHUNK])?;
        let last = n < CHUNK;
        let mut chunk = buf[..n].to_vec();
        key.seal_in_place_append_tag(nonce(counter, last), Aad::from(&header), &mut chunk)
            .map_err(|_| SealError::Refused)?;
        output.write_all(&chunk)?;
        if last {
            return Ok(());
        }
        counter += 1;
    }
}

/// Decrypts a sealed `input` into `output`. On failure `output` may hold a prefix of
/// the plaintext, which the caller must discard.
pub fn open(
    input: &mut impl Read,
    output: &mut impl Write,
    passphrase: &Secret,
) -> Result<(), SealError> {
    let mut header = [0u8; HEADER_LEN];
    if fill(input, &mut header)? < HEADER_LEN || !is_sealed(&header) {
        return Err(SealError::NotSealed);
    }
    if header[MAGIC.len()] != FORMAT {
        return Err(SealError::UnknownFormat);
    }
    let at = MAGIC.len() + 1;
    let iterations = u32::from_be_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    if iterations > MAX_ITERATIONS {
        return Err(SealError::UnknownFormat);
    }
    let key = key(passphrase, &header[at + 4..], iterations)?;
    let mut buf = vec![0u8; CHUNK + TAG_LEN];
    let mut counter = 0u64;
    loop {
        let n = fill(input, &mut buf)?;
        // Only the last chunk is short, so a full one cannot be the last.
        let last = n < buf.len();
        if n < TAG_LEN {
            return Err(SealError::Refused);
        }
        let plain = key
            .open_in_place(nonce(counter, last), Aad::from(&header), &mut buf[..n])
            .map_err(|_| SealError::Refused)?;
        output.write_all(plain)?;
        if last {
            return Ok(());
        }
        counter += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(p: &str) -> Secret {
        Secret::new(p.to_owned())
    }

    /// Few rounds: the tests are about the format, not the key's cost.
    fn sealed(plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        seal_with(&mut &plain[..], &mut out, &pass("correct horse"), 1000).unwrap();
        out
    }

    fn opened(file: &[u8], passphrase: &str) -> Result<Vec<u8>, SealError> {
        let mut out = Vec::new();
        open(&mut &file[..], &mut out, &pass(passphrase)).map(|()| out)
    }

    #[test]
    fn round_trips_at_every_chunk_boundary() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let file = sealed(&plain);
            assert!(is_sealed(&file));
            assert_eq!(opened(&file, "correct horse").unwrap(), plain, "{len}");
        }
    }

    #[test]
    fn wrong_passphrases_and_damage_are_refused() {
        let plain = vec![7u8; 2 * CHUNK + 10];
        let file = sealed(&plain);
        assert!(matches!(opened(&file, "wrong"), Err(SealError::Refused)));
        let mut flipped = file.clone();
        flipped[HEADER_LEN + 100] ^= 1;
        assert!(matches!(
            opened(&flipped, "correct horse"),
            Err(SealError::Refused)
        ));
        // Cut at a chunk boundary: the last full chunk is not marked last.
        let cut = &file[..HEADER_LEN + 2 * (CHUNK + TAG_LEN)];
        assert!(matches!(
            opened(cut, "correct horse"),
            Err(SealError::Refused)
        ));
        let mut extended = file.clone();
        extended.extend_from_slice(&[0; TAG_LEN]);
        assert!(opened(&extended, "correct horse").is_err());
        let mut salted = file;
        salted[HEADER_LEN - 1] ^= 1;
        assert!(matches!(
            opened(&salted, "correct horse"),
            Err(SealError::Refused)
        ));
        assert!(matches!(
            opened(b"SQLite format 3", "x"),
            Err(SealError::NotSealed)
        ));
        let mut out = Vec::new();
        assert!(matches!(
            seal(&mut &b"x"[..], &mut out, &pass("")),
            Err(SealError::EmptyPassphrase)
        ));
    }
}
