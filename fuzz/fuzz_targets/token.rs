//! Feeds arbitrary text to the token parser: it must never panic, and never accept
//! anything but a token it signed itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wxauth::keys::token::{Keyring, SessionSecret};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ring = Keyring::new("k1", [("k1", [42u8; 32].as_slice())]).expect("valid keyring");
    if let Ok(secret) = ring.verify(text) {
        // Anything accepted must be exactly what signing that secret produces.
        assert_eq!(ring.sign(&secret), text, "accepted a token it did not sign");
    }
    let _ = ring.verify(&ring.sign(&SessionSecret::from_bytes([0; 16])));
});
