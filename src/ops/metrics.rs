//! Prometheus metrics, served at `GET /metrics` in the OpenMetrics text format: HTTP
//! requests, logins, WeChat calls and database write batches are counted as they
//! happen; live sessions and users are counted from the database when scraped.
//! Labels on the request path are `&'static str` (route templates, status numbers), so
//! recording a request allocates nothing once its series exists.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::clock::UnixTime;
use crate::db::{Db, DbError};
use crate::wechat::client::{CallObserver, WeChatError};

/// The content type of the rendered metrics.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long counts taken from the database are reused, so frequent scrapes of a large
/// database do not keep the read pool busy.
const DB_GAUGES_TTL: Duration = Duration::from_secs(15);

/// Request latency buckets, in seconds: half a millisecond to ten seconds.
const HTTP_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// WeChat call latency buckets, in seconds: retries can make a call take its whole
/// bound.
const UPSTREAM_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    app: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    api: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    app: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

fn upstream_histogram() -> Histogram {
    Histogram::new(UPSTREAM_BUCKETS)
}

/// Every metric of one server.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    logins: Family<LoginLabels, Counter>,
    upstream_calls: Family<UpstreamLabels, Counter>,
    upstream_seconds: Family<ApiLabels, Histogram, fn() -> Histogram>,
    write_batch: Histogram,
    session_reads: Counter,
    live_sessions: Gauge,
    storage_unavailable: Gauge,
    users: Family<AppLabels, Gauge>,
    scheduled_backups: Family<ResultLabels, Counter>,
    /// Each route's series, looked up in the families once rather than per request.
    routes: [RouteSeries; LABELS.len()],
    /// When the database counts were last taken.
    counted_at: tokio::sync::Mutex<Option<Instant>>,
    /// Failed WeChat calls in each of the last 24 hours, for the console.
    recent_errors: RecentCounts,
}

/// Counts of events in each of the last [`RecentCounts::HOURS`] hours, counted from when
/// it was made (not by the wall clock, which may jump).
#[derive(Debug)]
struct RecentCounts {
    epoch: Instant,
    /// Per slot, the hour it counts (since `epoch`) and its count.
    slots: std::sync::Mutex<[(u64, u64); RecentCounts::HOURS]>,
}

impl RecentCounts {
    const HOURS: usize = 24;

    fn new() -> RecentCounts {
        RecentCounts {
            epoch: Instant::now(),
            slots: std::sync::Mutex::new([(u64::MAX, 0); RecentCounts::HOURS]),
        }
    }

    fn hour(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_secs() / 3600
    }

    fn add(&self, at: Instant) {
        let hour = self.hour(at);
        let mut slots = self.slots.lock().expect("recent counts poisoned");
        let slot = &mut slots[(hour % Self::HOURS as u64) as usize];
        if slot.0 != hour {
            *slot = (hour, 0);
        }
        slot.1 += 1;
    }

    /// The events of the last [`RecentCounts::HOURS`] hours up to `at`, by whole hours.
    fn total(&self, at: Instant) -> u64 {
        let now = self.hour(at);
        let slots = self.slots.lock().expect("recent counts poisoned");
        slots
            .iter()
            .filter(|(hour, _)| *hour != u64::MAX && now - hour < Self::HOURS as u64)
            .map(|(_, n)| n)
            .sum()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set of metrics, all registered under the `wxauth_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("wxauth");
        registry.register(
            "build",
            "The running wxauth version",
            Info::new(VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        let requests = Family::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template and status",
            requests.clone(),
        );
        let request_seconds = Family::new_with_constructor(http_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to its response head, by route template",
            Unit::Seconds,
            request_seconds.clone(),
        );
        let logins = Family::default();
        registry.register(
            "logins",
            "Logins by app and result: `success`, or the API error code",
            logins.clone(),
        );
        let upstream_calls = Family::default();
        registry.register(
            "upstream_calls",
            "WeChat API calls (retries included in one call) by API and result",
            upstream_calls.clone(),
        );
        let upstream_seconds =
            Family::new_with_constructor(upstream_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "upstream_call_duration",
            "WeChat API call time, retries included, by API",
            Unit::Seconds,
            upstream_seconds.clone(),
        );
        let write_batch = Histogram::new(exponential_buckets(1.0, 2.0, 9));
        registry.register(
            "db_write_batch_size",
            "Writes committed together in one database transaction",
            write_batch.clone(),
        );
        let session_reads = Counter::default();
        registry.register(
            "session_reads",
            "Sessions an authenticated request read from the database, having no usable copy in memory",
            session_reads.clone(),
        );
        let live_sessions = Gauge::default();
        registry.register(
            "sessions_live",
            "Sessions neither revoked nor expired (counted at most every 15s)",
            live_sessions.clone(),
        );
        let storage_unavailable = Gauge::default();
        registry.register(
            "storage_unavailable",
            "1 while the database cannot take writes (disk full or I/O error), else 0",
            storage_unavailable.clone(),
        );
        let users = Family::default();
        registry.register(
            "users",
            "Users by app (counted at most every 15s)",
            users.clone(),
        );
        let scheduled_backups = Family::default();
        registry.register(
            "scheduled_backups",
            "Backups `serve` took on its `backup_interval` schedule, by result (`ok`, `error`)",
            scheduled_backups.clone(),
        );
        Metrics {
            registry,
            scheduled_backups,
            requests,
            request_seconds,
            logins,
            upstream_calls,
            upstream_seconds,
            write_batch,
            session_reads,
            live_sessions,
            storage_unavailable,
            users,
            routes: Default::default(),
            counted_at: tokio::sync::Mutex::new(None),
            recent_errors: RecentCounts::new(),
        }
    }

    /// WeChat calls that failed in the last 24 hours, or since the server started if
    /// that is more recent.
    pub fn wechat_errors_last_day(&self) -> u64 {
        self.recent_errors.total(Instant::now())
    }

    /// Records an answered HTTP request.
    pub fn request(&self, route: Route, status: u16, took: Duration) {
        let series = &self.routes[route.0];
        let route = route.label();
        let counter = if status == 200 {
            series.ok.get_or_init(|| {
                self.requests
                    .get_or_create(&RequestLabels { route, status })
                    .clone()
            })
        } else {
            &self
                .requests
                .get_or_create(&RequestLabels { route, status })
        };
        counter.inc();
        series
            .seconds
            .get_or_init(|| {
                self.request_seconds
                    .get_or_create(&RouteLabels { route })
                    .clone()
            })
            .observe(took.as_secs_f64());
    }

    /// Records a login's outcome: `None` for a success, else the code of the error it
    /// answered.
    pub fn login(&self, app: &str, error: Option<&'static str>) {
        let result = error.unwrap_or("success");
        self.logins
            .get_or_create(&LoginLabels {
                app: app.to_owned(),
                result,
            })
            .inc();
    }

    /// Records a finished WeChat call.
    pub fn upstream(&self, api: &str, error: Option<&WeChatError>, took: Duration) {
        let result = error.map_or("ok", WeChatError::kind);
        if error.is_some() {
            self.recent_errors.add(Instant::now());
        }
        self.upstream_calls
            .get_or_create(&UpstreamLabels {
                api: api.to_owned(),
                result,
            })
            .inc();
        self.upstream_seconds
            .get_or_create(&ApiLabels {
                api: api.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records a scheduled backup's outcome.
    pub fn scheduled_backup(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.scheduled_backups
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// The counter of requests that read their session from the database, not from a
    /// copy; the sessions count into it.
    pub fn session_reads(&self) -> Counter {
        self.session_reads.clone()
    }

    /// A callback for the database writer that records each committed batch's size.
    pub fn batch_observer(self: &Arc<Self>) -> impl Fn(usize) + Send + 'static {
        let histogram = self.write_batch.clone();
        move |size| histogram.observe(size as f64)
    }

    /// The metrics in the OpenMetrics text format, after refreshing the counts taken
    /// from the database if they are older than [`DB_GAUGES_TTL`].
    pub async fn render(&self, db: &Arc<Db>, now: UnixTime) -> Result<String, DbError> {
        {
            let mut counted_at = self.counted_at.lock().await;
            if counted_at.is_none_or(|at| at.elapsed() >= DB_GAUGES_TTL) {
                let (live, users) = db.read(move |c| count_rows(c, now)).await?;
                self.live_sessions.set(live);
                self.users.clear();
                for (app, n) in users {
                    self.users.get_or_create(&AppLabels { app }).set(n);
                }
                *counted_at = Some(Instant::now());
            }
        }
        self.storage_unavailable.set(i64::from(!db.takes_writes()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        Ok(text)
    }
}

impl CallObserver for Metrics {
    fn observe(&self, api: &str, error: Option<&WeChatError>, took: Duration) {
        self.upstream(api, error, took);
    }
}

/// Live sessions, and users per app.
fn count_rows(
    conn: &rusqlite::Connection,
    now: UnixTime,
) -> Result<(i64, Vec<(String, i64)>), DbError> {
    let live = conn.query_row(
        "SELECT count(*) FROM sessions WHERE expires_at > ?1 AND revoked_at IS NULL",
        [now],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare("SELECT appid, count(*) FROM identities GROUP BY appid")?;
    let users = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((live, users))
}

/// The routes metrics are labelled with: the paths answered exactly, then avatar
/// downloads, then `unmatched` for any other path, so scanners probing random paths
/// cannot blow up the number of series.
const LABELS: [&str; 21] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/v1/login",
    "/v1/session",
    "/v1/session/refresh",
    "/v1/logout",
    "/v1/me",
    "/v1/me/avatar",
    "/v1/me/phone",
    "/v1/me/wechat-profile",
    "/v1/auth/forward",
    "/v1/introspect",
    "/v1/events",
    "/v1/wechat/access-token",
    "/v1/wechat/access-token/refresh",
    "/v1/oauth/wechat/authorize",
    "/v1/oauth/wechat/callback",
    "/v1/oauth/token",
    "/v1/avatars/{id}",
    "unmatched",
];
/// Where avatar downloads, and after them `unmatched`, sit in [`LABELS`].
const AVATARS: usize = LABELS.len() - 2;
const UNMATCHED: usize = LABELS.len() - 1;

/// The route a request belongs to, for metrics: one of [`LABELS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route(usize);

impl Route {
    /// The route template, as labels show it.
    pub fn label(self) -> &'static str {
        LABELS[self.0]
    }
}

/// One route's series, taken from the families on the route's first request: recording
/// a request then neither locks a family nor hashes its labels, which it did twice per
/// request before. Other statuses than 200 still go through the family.
#[derive(Default)]
struct RouteSeries {
    ok: OnceLock<Counter>,
    seconds: OnceLock<Histogram>,
}

/// The route a request path belongs to.
pub fn route_of(path: &str) -> Route {
    if let Some(i) = LABELS[..AVATARS].iter().position(|r| *r == path) {
        return Route(i);
    }
    match path.strip_prefix("/v1/avatars/") {
        Some(rest) if !rest.is_empty() && !rest.contains('/') => Route(AVATARS),
        _ => Route(UNMATCHED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_errors_forget_hours_older_than_a_day() {
        let counts = RecentCounts::new();
        let at = |hours: u64| counts.epoch + Duration::from_secs(hours * 3600 + 1);
        counts.add(at(0));
        counts.add(at(0));
        counts.add(at(5));
        assert_eq!(counts.total(at(5)), 3);
        assert_eq!(counts.total(at(23)), 3);
        assert_eq!(counts.total(at(24)), 1);
        // The slot of hour 0 is reused by hour 24, and starts again from zero.
        counts.add(at(24));
        assert_eq!(counts.total(at(24)), 2);
        assert_eq!(counts.total(at(29)), 1);
        assert_eq!(counts.total(at(100)), 0);
    }

    #[test]
    fn paths_map_to_a_fixed_set_of_routes() {
        let label = |path| route_of(path).label();
        assert_eq!(label("/v1/login"), "/v1/login");
        assert_eq!(label("/v1/avatars/abc.png"), "/v1/avatars/{id}");
        assert_eq!(label("/v1/avatars/"), "unmatched");
        assert_eq!(label("/v1/avatars/a/b"), "unmatched");
        assert_eq!(label("/wp-admin/setup.php"), "unmatched");
        assert_eq!(label("/v1/login/"), "unmatched");
    }

    #[tokio::test]
    async fn rendering_shows_counters_and_histograms() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let metrics = Arc::new(Metrics::new());
        metrics.request(route_of("/v1/login"), 200, Duration::from_millis(3));
        // A route's 200s and its other statuses land in the same families.
        metrics.request(route_of("/v1/session"), 401, Duration::from_millis(1));
        metrics.request(route_of("/v1/session"), 200, Duration::from_millis(1));
        metrics.request(route_of("/v1/session"), 200, Duration::from_millis(20));
        metrics.request(route_of("/v1/avatars/a_1"), 304, Duration::from_millis(1));
        metrics.login("wx1", None);
        metrics.login("wx1", Some("invalid_code"));
        metrics.upstream(
            "jscode2session",
            Some(&WeChatError::RateLimited),
            Duration::from_millis(20),
        );
        (metrics.batch_observer())(3);
        metrics.session_reads().inc();
        let text = metrics.render(&db, 0).await.unwrap();
        for line in [
            "wxauth_http_requests_total{route=\"/v1/login\",status=\"200\"} 1",
            "wxauth_http_request_duration_seconds_bucket{le=\"0.005\",route=\"/v1/login\"} 1",
            "wxauth_http_requests_total{route=\"/v1/session\",status=\"200\"} 2",
            "wxauth_http_requests_total{route=\"/v1/session\",status=\"401\"} 1",
            "wxauth_http_request_duration_seconds_count{route=\"/v1/session\"} 3",
            "wxauth_http_request_duration_seconds_bucket{le=\"0.005\",route=\"/v1/session\"} 2",
            "wxauth_http_requests_total{route=\"/v1/avatars/{id}\",status=\"304\"} 1",
            "wxauth_logins_total{app=\"wx1\",result=\"success\"} 1",
            "wxauth_logins_total{app=\"wx1\",result=\"invalid_code\"} 1",
            "wxauth_upstream_calls_total{api=\"jscode2session\",result=\"rate_limited\"} 1",
            "wxauth_db_write_batch_size_count 1",
            "wxauth_session_reads_total 1",
            "wxauth_sessions_live 0",
            "wxauth_storage_unavailable 0",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        db.close().await;
    }
}
