//! Serving a warp filter over HTTP/1.1 through hyper directly, so that connections get a
//! header-read timeout (warp's own `serve` sets none), their number is capped, and
//! shutdown can drain in-flight requests within a bound. hyper starts the header timer
//! whenever it waits for a request head, so the same timeout closes a connection that
//! stalls halfway through its headers and one that sits idle between requests.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_service::Service;
use warp::Filter;
use warp::reply::Response;

use crate::http::observe::Observation;
use crate::ops::metrics::Metrics;

/// The most a request head (request line and headers) may take.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

tokio::task_local! {
    /// The peer address of the connection the current task serves. A task-local rather
    /// than a request extension: inserting an extension allocates on every request, and
    /// only logins read it.
    static PEER: SocketAddr;
}

/// The peer address of the connection the current request came on, for rate limits;
/// `None` outside a connection served here.
pub fn peer_addr() -> Option<SocketAddr> {
    PEER.try_with(|peer| *peer).ok()
}

/// Limits applied to every incoming connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// How long in-flight requests get to finish once shutdown begins.
    pub shutdown_grace: Duration,
    /// Connections served at once; beyond it, accepting pauses until one closes.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            max_connections: 10_000,
        }
    }
}

/// Serves `filter` on `listener` until `shutdown` resolves, then stops accepting and
/// gives open connections `limits.shutdown_grace` to finish.
pub async fn serve<F>(
    listener: TcpListener,
    filter: F,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    serve_observed(listener, filter, limits, None, shutdown).await;
}

/// Like [`serve`]; with `metrics`, every request also gets a request id and a tracing
/// span, and is recorded in the metrics.
pub async fn serve_observed<F>(
    listener: TcpListener,
    filter: F,
    limits: ConnectionLimits,
    metrics: Option<Arc<Metrics>>,
    shutdown: impl Future<Output = ()>,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Caps the request head; a larger one is answered 431 and the connection closed.
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually out of file descriptors: pause instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // The handler's future owns what it needs, so it is made here, from the one
        // service of the connection, rather than from a copy of the route tree per request.
        let routes = RefCell::new(warp::service(filter.clone()));
        let metrics = metrics.clone();
        let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let observed = metrics
                .as_ref()
                .map(|metrics| (Observation::begin(&req), Arc::clone(metrics)));
            // Boxed at once: the route tree's future is most of a KiB, and each move of it
            // unboxed (into this block, into hyper, into the observation) copied it all.
            let handling = Box::pin(routes.borrow_mut().call(req));
            async move {
                let handling = async { handling.await.unwrap_or_else(|e| match e {}) };
                Ok::<_, Infallible>(match observed {
                    Some((observation, metrics)) => observation.finish(handling, &metrics).await,
                    None => handling.await,
                })
            }
        });
        let conn = http.serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(PEER.scope(peer, async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(slot);
        }));
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace = ?limits.shutdown_grace,
            "some requests did not finish within the shutdown grace period"
        );
    }
}
