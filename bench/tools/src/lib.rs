//! The benchmark's helper binaries (`bench_baseline`, `bench_seed`), and the seeding
//! code `bench_seed` shares with the session-lookup micro-benchmark.

pub mod seed;
