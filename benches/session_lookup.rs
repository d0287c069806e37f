//! Finding a token's session and user, the lookup of the authenticated path: in the
//! server's in-memory copies (`SessionCache::get`), and in the database
//! (`queries::session_by_secret` on a read connection over a seeded database), for a session
//! that exists and for one that does not. The load benchmark (`bench/run`) measures the
//! same path end to end.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use wxauth::datadir::DATABASE_FILE;
use wxauth::db::queries;
use wxauth::db::{Db, migrate, open_connection};
use wxauth::domain::session_cache::{Found, SessionCache};

#[path = "../bench/tools/src/seed.rs"]
mod seed;

/// Users (each with one session) in the benchmark's database.
const USERS: u64 = 100_000;

fn session_lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join(DATABASE_FILE);
    std::fs::File::create(&path).expect("the database file");
    let mut conn = open_connection(&path, false).expect("open for writing");
    migrate(&mut conn).expect("schema");
    conn.pragma_update(None, "synchronous", "OFF")
        .expect("pragma");
    let seeded = seed::seed(
        &mut conn,
        "wxbench0000000000",
        USERS,
        1000,
        1_800_000_000,
        42,
        false,
    )
    .expect("seed");
    assert_eq!(seeded.users, USERS);
    // What the server looks a token's session up by: its key in SQLite, its hash in the
    // cache.
    let keys: Vec<Vec<u8>> = seeded.sample.iter().map(|s| s.lookup_key()).collect();
    let hashes: Vec<[u8; 32]> = seeded.sample.iter().map(|s| s.hash()).collect();

    let reader = open_connection(&path, true).expect("open for reading");
    let mut group = c.benchmark_group("session_by_secret");
    let mut next = 0;
    group.bench_function("hit", |b| {
        b.iter(|| {
            next = (next + 1) % keys.len();
            let found = queries::session_by_secret(&reader, black_box(&keys[next]))
                .expect("query")
                .expect("a seeded session");
            black_box(found)
        })
    });
    let unknown = [0xeeu8; 32];
    group.bench_function("miss", |b| {
        b.iter(|| {
            let found = queries::session_by_secret(&reader, black_box(&unknown)).expect("query");
            assert!(found.is_none());
        })
    });
    group.finish();

    // A copy is used only while the writer's looks for other processes' commits are
    // recent, so the server's own watch runs beside the benchmark; a copy that aged out
    // (after 30 to 60 seconds) is read again, as the server does.
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let db = {
        let _entered = runtime.enter();
        Db::open(&path).expect("open the database")
    };
    runtime.spawn(Arc::clone(&db).watch_other_commits());
    let cache = SessionCache::new(Arc::clone(db.changes()));
    let copy_of = |key: &[u8]| {
        let owner = queries::session_by_secret(&reader, key)
            .expect("query")
            .expect("a seeded session");
        Found::new(owner)
    };
    let mut group = c.benchmark_group("session_cache");
    group.bench_function("hit", |b| {
        b.iter(|| {
            next = (next + 1) % hashes.len();
            let hash = black_box(&hashes[next]);
            match cache.get(hash) {
                Some(found) => black_box(found),
                None => {
                    let ticket = cache.ticket();
                    cache.insert(*hash, copy_of(&keys[next]), ticket);
                    black_box(cache.get(hash).expect("just kept"))
                }
            }
        })
    });
    group.finish();
    runtime.block_on(db.close());
}

criterion_group!(benches, session_lookup);
criterion_main!(benches);
