//! The token codec on its own: signing a new token, verifying a good one, and refusing
//! a forged one (which must cost no more than a good one, and touch no database).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use wxauth::keys::token::{Keyring, SessionSecret};

fn keyring() -> Keyring {
    let old = [1u8; 32];
    let active = [2u8; 32];
    Keyring::new("k2", [("k1", old.as_slice()), ("k2", active.as_slice())])
        .expect("the active key is in the ring")
}

fn tokens(c: &mut Criterion) {
    let ring = keyring();
    let secret = SessionSecret::from_bytes(&[7; 22]).unwrap();
    let token = ring.sign(&secret);
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("still ASCII");

    let mut group = c.benchmark_group("token");
    group.bench_function("sign", |b| b.iter(|| ring.sign(black_box(&secret))));
    group.bench_function("verify", |b| {
        b.iter(|| ring.verify(black_box(&token)).expect("valid"))
    });
    group.bench_function("verify_forged", |b| {
        b.iter(|| ring.verify(black_box(&forged)).expect_err("forged"))
    });
    group.bench_function("secret_hash", |b| b.iter(|| black_box(&secret).hash()));
    group.bench_function("lookup_key", |b| b.iter(|| black_box(&secret).lookup_key()));
    group.finish();
}

criterion_group!(benches, tokens);
criterion_main!(benches);
