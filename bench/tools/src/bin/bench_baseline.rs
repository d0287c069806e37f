//! The benchmark's yardstick: the least an authenticated request can cost on the same
//! stack. One warp endpoint reads the `Authorization` header, computes one HMAC-SHA256
//! over it with ring and answers a small JSON. `bench/run` compares wxauth's
//! authenticated path against it in the same run.
//!
//! Usage: `bench_baseline ADDR` (e.g. `127.0.0.1:8081`).

use std::net::SocketAddr;
use std::process::ExitCode;

use ring::hmac;
use warp::Filter;

#[tokio::main]
async fn main() -> ExitCode {
    let Some(addr) = std::env::args()
        .nth(1)
        .and_then(|a| a.parse::<SocketAddr>().ok())
    else {
        eprintln!("usage: bench_baseline ADDR   (e.g. 127.0.0.1:8081)");
        return ExitCode::from(2);
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"bench-baseline-key-of-32-bytes!!");
    let route = warp::path!("v1" / "session")
        .and(warp::get())
        .and(warp::header::optional::<String>("authorization"))
        .map(move |authorization: Option<String>| {
            let tag = hmac::sign(&key, authorization.unwrap_or_default().as_bytes());
            // The first tag byte keeps the work from being optimised away.
            warp::reply::json(&serde_json::json!({"ok": true, "tag": tag.as_ref()[0]}))
        });
    warp::serve(route).run(addr).await;
    ExitCode::SUCCESS
}
