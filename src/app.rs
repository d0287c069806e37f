//! Putting the server together: open the data directory, database and keys, build the
//! WeChat client, bind the listener, and serve until asked to stop. Tests start an `App`
//! in-process on port 0 and read the bound address from it.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{AppConfig, Config};
use crate::datadir;
use crate::db::queries::UserRow;
use crate::db::{Db, DbError};
use crate::domain::login::InFlight;
use crate::domain::recent_codes::RecentCodes;
use crate::domain::session_cache::SessionCache;
use crate::http::error::{ApiError, ErrorCode};
use crate::http::ratelimit::RateLimiter;
use crate::http::server::{self, ConnectionLimits};
use crate::keys::crypto::DataKeys;
use crate::keys::key_file::{KeyFile, KeyFileError};
use crate::keys::token::Keyring;
use crate::ops::metrics::Metrics;
use crate::wechat::access_token::AccessTokens;
use crate::wechat::client::WeChatClient;
use crate::wechat::fake::MockWeChat;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "another wxauth server is using the data directory {0}; stop it first, or give this one its own --data-dir"
    )]
    InUse(String),
    #[error("cannot prepare the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Keys(#[from] KeyFileError),
    #[error("the signing keys are unusable: {0}")]
    Keyring(String),
    #[error("the data key is unusable: {0}")]
    DataKey(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the fake WeChat for dev mode: {0}")]
    DevWeChat(std::io::Error),
    #[error("cannot build the WeChat client: {0}")]
    WeChatClient(String),
}

/// What every request handler shares.
pub struct AppState {
    pub config: Config,
    pub db: Arc<Db>,
    pub wechat: WeChatClient,
    pub clock: Arc<dyn Clock>,
    pub logins: InFlight,
    pub metrics: Arc<Metrics>,
    /// Seal session_keys and access_tokens in the database.
    pub data_keys: Arc<DataKeys>,
    pub access_tokens: AccessTokens,
    /// Per client IP on `/v1/login`; `None` when switched off.
    pub login_limiter: Option<RateLimiter>,
    /// Per user on profile writes; `None` when switched off.
    pub profile_limiter: Option<RateLimiter>,
    /// Sessions recently authenticated, with their users.
    pub session_cache: SessionCache,
    /// Login codes recorded in the last five minutes, so that a new code skips the
    /// database read for an earlier login with it.
    pub recent_codes: RecentCodes,
    keyring: RwLock<Arc<Keyring>>,
}

impl AppState {
    /// The signing keys as of now; `wxauth keys rotate|retire` replace them while the
    /// server runs.
    pub fn keyring(&self) -> Arc<Keyring> {
        Arc::clone(&self.keyring.read().expect("keyring lock poisoned"))
    }

    /// The configured app `user` belongs to; `unknown_app` if it was removed from the
    /// configuration since the user logged in.
    pub fn app_of(&self, user: &UserRow) -> Result<&AppConfig, ApiError> {
        self.config.app(Some(&user.appid)).ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnknownApp,
                "the user's app is no longer configured on this server",
            )
        })
    }

    fn replace_keyring(&self, keyring: Keyring) {
        *self.keyring.write().expect("keyring lock poisoned") = Arc::new(keyring);
    }
}

/// A running server.
pub struct App {
    addr: SocketAddr,
    state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    serving: JoinHandle<()>,
    key_watch: JoinHandle<()>,
    other_commits: JoinHandle<()>,
    maintenance: JoinHandle<()>,
    backups: Option<JoinHandle<()>>,
    metrics_server: Option<MetricsServer>,
    dev_wechat: Option<MockWeChat>,
    /// Held while serving, so `wxauth restore` refuses to run beneath us.
    _lock: datadir::DirLock,
}

/// The listener of `metrics_listen`, serving `/metrics` alone.
struct MetricsServer {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<()>,
}

impl App {
    /// Opens everything `config` names, binds its listen address and starts serving.
    pub async fn start(mut config: Config, clock: Arc<dyn Clock>) -> Result<App, StartError> {
        let dir = config.data_dir.clone();
        datadir::ensure_private_dir(&dir).map_err(|source| StartError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
        let lock = datadir::try_lock(&dir)
            .map_err(|source| StartError::DataDir {
                path: dir.display().to_string(),
                source,
            })?
            .ok_or_else(|| StartError::InUse(dir.display().to_string()))?;
        let dev_wechat = if config.dev {
            let mock = MockWeChat::start(SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .map_err(StartError::DevWeChat)?;
            config.wechat_api = mock.base_url();
            tracing::info!(
                fake_wechat = %mock.base_url(),
                "dev mode: the fake WeChat is serving; its /mock/open-data gives legacy payloads"
            );
            Some(mock)
        } else {
            None
        };
        let keys = KeyFile::load_or_create(&dir.join(datadir::KEYS_FILE), clock.now())?;
        let keyring = keys.keyring().map_err(StartError::Keyring)?;
        let metrics = Arc::new(Metrics::new());
        let data_keys = Arc::new(keys.data_keys().map_err(StartError::DataKey)?);
        let db_path = dir.join(datadir::DATABASE_FILE);
        let on_batch = Box::new(metrics.batch_observer());
        let db = tokio::task::spawn_blocking(move || Db::open_observed(&db_path, on_batch))
            .await
            .map_err(|e| DbError::Task(e.to_string()))??;
        let now = clock.now();
        let recent_codes = db
            .read(move |c| {
                let recent = RecentCodes::new(now);
                crate::db::queries::each_live_login_code(c, now, |row, code| {
                    recent.note(code, row, now);
                })?;
                Ok(recent)
            })
            .await?;
        let wechat = WeChatClient::new(
            &config.wechat_api,
            config.wechat_connect_timeout,
            config.wechat_timeout,
        )
        .map_err(|e| StartError::WeChatClient(e.to_string()))?
        .with_metrics(Arc::clone(&metrics));
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let limits = ConnectionLimits {
            header_read_timeout: config.header_timeout,
            shutdown_grace: config.shutdown_timeout,
            max_connections: config.max_connections as usize,
        };
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?,
            ),
            None => None,
        };
        raise_open_file_limit(config.max_connections);
        let access_tokens = AccessTokens::new(
            &config.apps,
            Arc::clone(&db),
            wechat.clone(),
            Arc::clone(&clock),
            Arc::clone(&data_keys),
        );
        let state = Arc::new(AppState {
            login_limiter: config.login_rate_limit.map(RateLimiter::new),
            profile_limiter: config.profile_rate_limit.map(RateLimiter::new),
            session_cache: SessionCache::new(Arc::clone(db.changes())),
            recent_codes,
            config,
            db,
            wechat,
            clock,
            logins: InFlight::default(),
            metrics: Arc::clone(&metrics),
            data_keys,
            access_tokens,
            keyring: RwLock::new(Arc::new(keyring)),
        });
        let key_watch = tokio::spawn(watch_keys(Arc::clone(&state), dir.join(datadir::KEYS_FILE)));
        let other_commits = tokio::spawn(Arc::clone(&state.db).watch_other_commits());
        let maintenance = tokio::spawn(crate::ops::maintenance::run(Arc::clone(&state)));
        let backups = state.config.backup_interval.map(|every| {
            let schedule = crate::ops::backup::Schedule {
                data_dir: dir.clone(),
                dir: state.config.backup_dir.clone(),
                every,
                keep: state.config.backup_keep,
            };
            tokio::spawn(crate::ops::backup::run_schedule(
                schedule,
                Arc::clone(&state.clock),
                Arc::clone(&state.metrics),
            ))
        });
        let metrics_server = match metrics_listener {
            Some(listener) => Some(serve_metrics(listener, Arc::clone(&state), limits)?),
            None => None,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let routes = crate::http::routes(Arc::clone(&state));
        let serving = tokio::spawn(server::serve_observed(
            listener,
            routes,
            limits,
            Some(metrics),
            async {
                let _ = stopped.await;
            },
        ));
        Ok(App {
            addr,
            state,
            stop: Some(stop),
            serving,
            key_watch,
            other_commits,
            maintenance,
            backups,
            metrics_server,
            dev_wechat,
            _lock: lock,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of `metrics_listen`, when configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_server.as_ref().map(|m| m.addr)
    }

    /// The shared state, for tests that look inside.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Stops accepting connections, lets in-flight requests finish within the grace
    /// period, then closes the database cleanly.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.serving).await;
        if let Some(metrics) = self.metrics_server.take() {
            let _ = metrics.stop.send(());
            let _ = metrics.serving.await;
        }
        self.key_watch.abort();
        self.other_commits.abort();
        self.maintenance.abort();
        if let Some(backups) = &self.backups {
            backups.abort();
        }
        self.state.db.close().await;
        if let Some(mock) = self.dev_wechat.take() {
            mock.shutdown().await;
        }
    }
}

fn serve_metrics(
    listener: TcpListener,
    state: Arc<AppState>,
    limits: ConnectionLimits,
) -> Result<MetricsServer, StartError> {
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: state.config.metrics_listen.unwrap_or(state.config.listen),
        source,
    })?;
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server::serve(
        listener,
        crate::http::metrics_routes(state),
        limits,
        async {
            let _ = stopped.await;
        },
    ));
    Ok(MetricsServer {
        addr,
        stop,
        serving,
    })
}

/// How often the key file is checked for changes made by `wxauth keys`.
const KEY_WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// Reloads the signing keys whenever the key file is replaced. A damaged file is
/// reported and ignored; the keys in use stay in use.
async fn watch_keys(state: Arc<AppState>, path: PathBuf) {
    let stamp = |path: &PathBuf| {
        std::fs::metadata(path)
            .ok()
            .map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.len()))
    };
    let mut seen = stamp(&path);
    let mut ticks = tokio::time::interval(KEY_WATCH_INTERVAL);
    loop {
        ticks.tick().await;
        let now = stamp(&path);
        if now == seen {
            continue;
        }
        seen = now;
        match KeyFile::load(&path).and_then(|file| {
            file.keyring().map_err(|message| KeyFileError::Damaged {
                path: path.display().to_string(),
                message,
            })
        }) {
            Ok(keyring) => {
                tracing::info!(active = keyring.active_kid(), "signing keys reloaded");
                state.replace_keyring(keyring);
            }
            Err(e) => {
                tracing::error!(error = %e, "the key file changed but cannot be used; keeping the current keys")
            }
        }
    }
}

/// Lifts the soft limit on open files toward the hard limit, so the connection cap is
/// what bounds connections rather than a small default descriptor limit.
fn raise_open_file_limit(max_connections: u32) {
    let wanted = u64::from(max_connections) + 256;
    match rlimit::increase_nofile_limit(wanted) {
        Ok(got) if got < wanted => tracing::warn!(
            open_files = got,
            max_connections,
            "the open-file limit is below max_connections; raise it (ulimit -n / LimitNOFILE)"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}
