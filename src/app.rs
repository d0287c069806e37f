//! Putting the server together: open the data directory, database and keys, build the
//! WeChat client, bind the listener, and serve until asked to stop. Tests start an `App`
//! in-process on port 0 and read the bound address from it.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::clock::{Clock, secs};
use crate::config::Config;
use crate::datadir;
use crate::db::{Checkpoints, Db, DbError, needed_keys};
use crate::domain::access_jwts::AccessJwts;
use crate::domain::login::{Logins, SessionPolicy};
use crate::domain::profiles::Profiles;
use crate::domain::recent_codes::RecentCodes;
use crate::domain::sessions::Sessions;
use crate::domain::web_login::WebLogins;
use crate::http::console::guard::SignInLimits;
use crate::http::ratelimit::RateLimiter;
use crate::http::server::{self, ConnectionLimits};
use crate::http::state::AppState;
use crate::keys::crypto::DataKeys;
use crate::keys::jwt::{JwtKeySet, JwtKeys};
use crate::keys::key_file::KeyFileError;
use crate::keys::token::{Keyring, SigningKeys};
use crate::ops::key_guard::{self, KeyGuardError};
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
    #[error(
        "the key file {path} is missing, and the database depends on the keys it held. \
         Bring back that keys.json into {dir} (from where you keep a copy, or with \
         `wxauth restore BACKUP`), or run `wxauth keys reset --yes` to make new keys: \
         that ends every session and drops the stored session_keys and access tokens"
    )]
    KeyFileMissing { path: String, dir: String },
    #[error(
        "the key file {path} is not this database's: it lacks {lacking}, which the \
         database depends on. Bring back the keys.json that belongs with this database \
         into {dir}, or run `wxauth keys reset --yes` to make new keys: that ends every \
         session and drops the stored session_keys and access tokens"
    )]
    KeyFileForeign {
        path: String,
        dir: String,
        lacking: String,
    },
    #[error(
        "{source}. Bring back a good copy of keys.json into {dir}, or run \
         `wxauth keys reset --yes` to make new keys: that ends every session and drops \
         the stored session_keys and access tokens"
    )]
    KeyFileDamaged { source: KeyFileError, dir: String },
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
    #[error("cannot make dev mode's admin console link: {0}")]
    DevConsoleLink(crate::ops::admin::AdminError),
    #[error("cannot build the WeChat client: {0}")]
    WeChatClient(String),
}

impl StartError {
    fn from_key_guard(e: KeyGuardError, dir: &std::path::Path) -> StartError {
        let dir = dir.display().to_string();
        match e {
            KeyGuardError::Missing { path } => StartError::KeyFileMissing {
                path: path.display().to_string(),
                dir,
            },
            KeyGuardError::Lacking { path, lacking } => StartError::KeyFileForeign {
                path: path.display().to_string(),
                dir,
                lacking: key_guard::list(&lacking),
            },
            KeyGuardError::Keys(source @ KeyFileError::Damaged { .. }) => {
                StartError::KeyFileDamaged { source, dir }
            }
            KeyGuardError::Keys(e) => StartError::Keys(e),
        }
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
    write_probe: JoinHandle<()>,
    maintenance: JoinHandle<()>,
    backups: Option<JoinHandle<()>>,
    metrics_server: Option<SideServer>,
    admin_server: Option<SideServer>,
    dev_wechat: Option<MockWeChat>,
    /// Held while serving, so `wxauth restore` refuses to run beneath us.
    _lock: datadir::DirLock,
}

/// The listener of `metrics_listen` or `admin_listen`, serving `/metrics` or the console
/// alone.
struct SideServer {
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
            // The fake is both of WeChat's hosts: the API and the pages browsers are
            // sent to for a web login.
            config.wechat_api = mock.base_url();
            config.wechat_open_url = mock.base_url();
            tracing::info!(
                fake_wechat = %mock.base_url(),
                "dev mode: the fake WeChat is serving; its /mock/open-data gives legacy payloads"
            );
            Some(mock)
        } else {
            None
        };
        let metrics = Arc::new(Metrics::new());
        let db_path = dir.join(datadir::DATABASE_FILE);
        let on_batch = Box::new(metrics.batch_observer());
        let checkpoints = if config.litestream {
            tracing::info!(
                "litestream = true: Litestream owns checkpoints; this server runs none of its own"
            );
            Checkpoints::Litestream
        } else {
            Checkpoints::Own
        };
        let db =
            tokio::task::spawn_blocking(move || Db::open_with(&db_path, on_batch, checkpoints))
                .await
                .map_err(|e| DbError::Task(e.to_string()))??;
        let now = clock.now();
        let (keyring, jwt_keys, data_keys) = match open_keys(&db, &dir, now).await {
            Ok(keys) => keys,
            Err(e) => {
                db.close().await;
                return Err(e);
            }
        };
        let data_keys = Arc::new(data_keys);
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
        .with_observer(Arc::clone(&metrics) as Arc<dyn crate::wechat::client::CallObserver>);
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
        config.settle_listen(addr);
        let limits = ConnectionLimits {
            header_read_timeout: config.header_timeout,
            shutdown_grace: config.shutdown_timeout,
            max_connections: config.max_connections as usize,
        };
        let metrics_listener = bind_side(config.metrics_listen).await?;
        let admin_listener = bind_side(config.admin_listen).await?;
        raise_open_file_limit(config.max_connections);
        let access_tokens = Arc::new(AccessTokens::new(
            &config.apps,
            Arc::clone(&db),
            wechat.clone(),
            Arc::clone(&clock),
            Arc::clone(&data_keys),
        ));
        let keys = Arc::new(SigningKeys::new(keyring));
        let jwt_keys = Arc::new(JwtKeys::new(jwt_keys));
        let policy = SessionPolicy {
            token_ttl: secs(config.token_ttl),
            session_max_age: secs(config.session_max_age),
            max_sessions: config.max_sessions_per_user,
        };
        let state = Arc::new(AppState {
            login_limiter: config.login_rate_limit.map(RateLimiter::new),
            profile_limiter: config.profile_rate_limit.map(RateLimiter::new),
            console_limits: SignInLimits::default(),
            sessions: Sessions::new(
                Arc::clone(&db),
                Arc::clone(&clock),
                Arc::clone(&keys),
                metrics.session_reads(),
                policy.token_ttl,
            ),
            access_tokens: Arc::clone(&access_tokens),
            web_logins: config.public_url.as_deref().map(|public_url| {
                WebLogins::new(
                    Arc::clone(&db),
                    wechat.clone(),
                    Arc::clone(&clock),
                    Arc::clone(&data_keys),
                    Arc::clone(&keys),
                    policy,
                    public_url,
                    &config.wechat_open_url,
                )
            }),
            access_jwts: config.public_url.as_deref().map(|issuer| {
                AccessJwts::new(
                    Arc::clone(&jwt_keys),
                    Arc::clone(&clock),
                    issuer,
                    &config.jwt_audience,
                    secs(config.jwt_ttl),
                )
            }),
            logins: Arc::new(Logins::new(
                Arc::clone(&db),
                wechat,
                Arc::clone(&clock),
                Arc::clone(&data_keys),
                Arc::clone(&keys),
                recent_codes,
                policy,
            )),
            profiles: Profiles::new(
                Arc::clone(&db),
                Arc::clone(&clock),
                data_keys,
                access_tokens,
                config.apps.clone(),
                config.public_url.clone(),
                config.content_check_unavailable,
            ),
            config,
            db,
            clock,
            metrics: Arc::clone(&metrics),
        });
        let key_watch = tokio::spawn(watch_keys(
            keys,
            jwt_keys,
            Arc::clone(&state.db),
            dir.join(datadir::KEYS_FILE),
        ));
        let other_commits = tokio::spawn(Arc::clone(&state.db).watch_other_commits());
        let write_probe = tokio::spawn(Arc::clone(&state.db).watch_writes());
        let maintenance = tokio::spawn(crate::ops::maintenance::run(
            Arc::clone(&state.db),
            Arc::clone(&state.clock),
        ));
        let backups = state.config.backup_interval.map(|every| {
            let schedule = crate::ops::backup::Schedule {
                data_dir: dir.clone(),
                dir: state.config.backup_dir.clone(),
                every,
                keep: state.config.backup_keep,
            };
            tokio::spawn(crate::ops::backup::run_schedule(
                schedule,
                Arc::clone(&state.db),
                Arc::clone(&state.clock),
                Arc::clone(&state.metrics),
            ))
        });
        let metrics_server = match metrics_listener {
            Some(listener) => Some(serve_side(
                listener,
                crate::http::metrics_routes(Arc::clone(&state)),
                limits,
            )?),
            None => None,
        };
        let admin_server = match admin_listener {
            Some(listener) => Some(serve_side(
                listener,
                crate::http::console_routes(Arc::clone(&state)),
                limits,
            )?),
            None => None,
        };
        if state.config.dev {
            print_dev_console_link(&state, admin_server.as_ref().map_or(addr, |s| s.addr)).await?;
        }
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
            write_probe,
            maintenance,
            backups,
            metrics_server,
            admin_server,
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

    /// The address of `admin_listen`, when configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_server.as_ref().map(|m| m.addr)
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
        for side in [self.metrics_server.take(), self.admin_server.take()]
            .into_iter()
            .flatten()
        {
            let _ = side.stop.send(());
            let _ = side.serving.await;
        }
        self.key_watch.abort();
        self.other_commits.abort();
        self.write_probe.abort();
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

/// The key file's signing, JWT and data keys, if it holds every key the database needs
/// (or is made new for an empty database); what it holds is then recorded in the
/// database.
async fn open_keys(
    db: &Db,
    dir: &std::path::Path,
    now: crate::clock::UnixTime,
) -> Result<(Keyring, JwtKeySet, DataKeys), StartError> {
    let recorded = db.read(key_guard::recorded).await?;
    let keys = key_guard::key_file_for(&recorded, &dir.join(datadir::KEYS_FILE), now)
        .map_err(|e| StartError::from_key_guard(e, dir))?;
    let keyring = keys.keyring().map_err(StartError::Keyring)?;
    let jwt_keys = keys.jwt_key_set().map_err(StartError::Keyring)?;
    let data_keys = keys.data_keys().map_err(StartError::DataKey)?;
    let prints = keys.prints();
    if prints != recorded.needed {
        db.write(move |c| needed_keys::record(c, &prints, now))
            .await?;
    }
    Ok((keyring, jwt_keys, data_keys))
}

fn serve_side<F>(
    listener: TcpListener,
    routes: F,
    limits: ConnectionLimits,
) -> Result<SideServer, StartError>
where
    F: warp::Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server::serve(listener, routes, limits, async {
        let _ = stopped.await;
    }));
    Ok(SideServer {
        addr,
        stop,
        serving,
    })
}

/// Binds a side address (`metrics_listen`, `admin_listen`) when one is configured.
async fn bind_side(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, StartError> {
    match addr {
        Some(addr) => Ok(Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })?,
        )),
        None => Ok(None),
    }
}

/// Prints dev mode's one-time console sign-in link, so that a newcomer can open the
/// console at once.
async fn print_dev_console_link(state: &AppState, addr: SocketAddr) -> Result<(), StartError> {
    let now = state.clock.now();
    let link = crate::ops::admin::through_writer(&state.db, move |c| {
        crate::ops::admins::dev_sign_in_link(c, now)
    })
    .await
    .map_err(StartError::DevConsoleLink)?;
    let url = format!(
        "http://{addr}{}?token={}",
        crate::http::console::LINK_PATH,
        link.secret.expose()
    );
    tracing::warn!(%url, "dev mode: open the admin console (this link signs in once)");
    Ok(())
}

/// How often the key file is checked for changes made by `wxauth keys`.
const KEY_WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// Reloads the signing and JWT keys whenever the key file is replaced. A damaged file, or
/// one that lacks a key the database needs (another database's), is reported and
/// ignored; the keys in use stay in use.
async fn watch_keys(keys: Arc<SigningKeys>, jwt_keys: Arc<JwtKeys>, db: Arc<Db>, path: PathBuf) {
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
        let recorded = match db.read(key_guard::recorded).await {
            Ok(recorded) => recorded,
            Err(e) => {
                // The file is looked at again on the next tick.
                tracing::error!(error = %e, "the key file changed but the database's record of the keys it needs cannot be read");
                continue;
            }
        };
        seen = now;
        match key_guard::replacement(&recorded, &path).and_then(|file| {
            file.keyring()
                .and_then(|keyring| Ok((keyring, file.jwt_key_set()?)))
                .map_err(|message| {
                    KeyGuardError::Keys(KeyFileError::Damaged {
                        path: path.display().to_string(),
                        message,
                    })
                })
        }) {
            Ok((keyring, jwt_set)) => {
                tracing::info!(
                    active = keyring.active_kid(),
                    jwt = jwt_set.active.kid(),
                    "signing keys reloaded"
                );
                keys.replace(keyring);
                jwt_keys.replace(jwt_set);
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
