//! Settings: built-in defaults, then a TOML file, then `WXAUTH_*` environment variables,
//! then command-line flags, each layer overriding the one before. Everything is validated
//! here, once, so the rest of the program works with a `Config` that is known to be sound.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::keys::secret::Secret;
use crate::redirect_uri::AllowedRedirect;

/// Where the server listens unless told otherwise.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8080,
));

/// The AppID used by dev mode when no app is configured.
pub const DEV_APPID: &str = "wxdevelopment0000";

/// The official account dev mode adds when none is configured, for trying the H5 login.
pub const DEV_OFFICIAL_ACCOUNT_APPID: &str = "wxdevofficial0000";

/// The website app dev mode adds when none is configured, for trying the QR login.
pub const DEV_WEBSITE_APPID: &str = "wxdevwebsite00000";

/// Where browsers are sent to authorize a web login unless told otherwise.
pub const DEFAULT_WECHAT_OPEN_URL: &str = "https://open.weixin.qq.com";

/// The lifetime of access JWTs unless told otherwise.
pub const DEFAULT_JWT_TTL: Duration = Duration::from_secs(10 * 60);

/// The longest lifetime an access JWT may be given.
pub const MAX_JWT_TTL: Duration = Duration::from_secs(60 * 60);

/// The `aud` of access JWTs unless told otherwise.
pub const DEFAULT_JWT_AUDIENCE: &str = "wxauth";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{name}: {message}")]
    Invalid { name: String, message: String },
    #[error("cannot read secret file {path}: {source}")]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no data directory: set --data-dir or WXAUTH_DATA_DIR (the platform has no default)")]
    NoDataDir,
}

fn invalid(name: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.into(),
        message: message.into(),
    }
}

/// A request rate such as `120/min`; `None` inside `Option<Rate>` means `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per `per`.
    pub count: u32,
    /// The window the count applies to.
    pub per: Duration,
}

/// A parsed rate setting: a limit, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSetting(pub Option<Rate>);

impl FromStr for RateSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(RateSetting(None));
        }
        let (count, unit) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not a rate: write N/s, N/min, N/h or off"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("`{s}`: the count must be a whole number"))?;
        let per = match unit.trim() {
            "s" | "sec" => Duration::from_secs(1),
            "m" | "min" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => return Err(format!("`{other}` is not a rate unit: use s, min or h")),
        };
        if count == 0 {
            return Err(format!("`{s}`: use `off` rather than a zero rate"));
        }
        Ok(RateSetting(Some(Rate { count, per })))
    }
}

/// A duration written `45s`, `30m`, `12h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationSetting(pub Duration);

impl FromStr for DurationSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let d = humantime::parse_duration(s.trim())
            .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 45s, 30m, 12h, 7d"))?;
        if d.is_zero() {
            return Err(format!("`{s}`: the duration must be longer than zero"));
        }
        Ok(DurationSetting(d))
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    #[default]
    Auto,
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(LogFormat::Auto),
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "`{other}` is not a log format: use auto, text or json"
            )),
        }
    }
}

/// What to do with a nickname when WeChat's content check cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentCheckPolicy {
    /// Accept it and log a warning.
    #[default]
    Allow,
    /// Refuse it with `upstream_unavailable`, so the user tries again later.
    Reject,
}

impl FromStr for ContentCheckPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "allow" => Ok(ContentCheckPolicy::Allow),
            "reject" => Ok(ContentCheckPolicy::Reject),
            other => Err(format!("`{other}` is not a policy: use allow or reject")),
        }
    }
}

/// Deserializes any `FromStr` setting from a TOML string, so the file and the environment
/// accept exactly the same spelling.
fn from_str_setting<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(serde::de::Error::custom)
}

/// Which WeChat surface an app is, and so how its users log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    /// A mini program: `wx.login` codes through `POST /v1/login`.
    #[default]
    #[serde(rename = "miniprogram")]
    MiniProgram,
    /// An official account's H5 pages, opened inside WeChat: web login with the scopes
    /// `snsapi_base` and `snsapi_userinfo`.
    OfficialAccount,
    /// A website on the Open Platform: QR login on a PC browser, scope `snsapi_login`.
    Website,
}

impl AppKind {
    /// The spelling used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            AppKind::MiniProgram => "miniprogram",
            AppKind::OfficialAccount => "official_account",
            AppKind::Website => "website",
        }
    }

    /// Whether users log in through a browser redirect (and so the app needs
    /// `redirect_uris` and `public_url`).
    pub fn is_web(self) -> bool {
        self != AppKind::MiniProgram
    }
}

impl fmt::Display for AppKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One app as written in a `[[apps]]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppLayer {
    appid: String,
    name: Option<String>,
    kind: Option<AppKind>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    secret: Option<Secret>,
    secret_file: Option<PathBuf>,
    secret_env: Option<String>,
    content_check: Option<bool>,
}

/// One layer of settings; every field is optional so that layers can be merged.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub public_url: Option<String>,
    pub wechat_api: Option<String>,
    pub wechat_open_url: Option<String>,
    #[serde(default, deserialize_with = "from_str_setting")]
    pub wechat_timeout: Option<DurationSetting>,
    #[serde(default, deserialize_with = "from_str_setting")]
    pub wechat_connect_timeout: Option<DurationSetting>,
    pub appid: Option<String>,
    pub secret: Option<Secret>,
    pub secret_file: Option<PathBuf>,
    pub content_check: Option<bool>,
    #[serde(default, deserialize_with = "from_str_setting")]
    pub content_check_unavailable: Option<ContentCheckPolicy>,
    #[serde(default, deserialize_with = "from_str_setting")]
    pub token_ttl: Option<DurationSetting>,
    #[serde(default, deserialize_with = "from_str_setting")]
    pub session_max_age: Option<DurationSetting>,
    #[serde(default, deserialize_with = "from_str_setting")]
    pub jwt_ttl: Option<DurationSetting>,
    pub jwt_audience: Option<String>,
    pub max_sessions_per_user: Option<u32>,
    #[serde(default, deserialize_with = "from_str_setting")]
    pub login_rate_limit: Option<RateSetting>,
    pub trust_proxy: Option<bool>,
    pub litestream: Option<bool>,
    pub avatar_max_bytes: Option<u64>,
    pub log: Option<String>,
    #[serde(default, deserialize_with = "from_str_setting")]
    pub log_format: Option<LogFormat>,
    #[serde(default, deserialize_with = "from_str_setting")]
    pub shutdown_timeout: Option<DurationSetting>,
    #[serde(default, deserialize_with = "from_str_setting")]
    pub header_timeout: Option<DurationSetting>,
    pub max_connections: Option<u32>,
    #[serde(default, deserialize_with = "from_str_setting")]
    pub profile_rate_limit: Option<RateSetting>,
    #[serde(default, deserialize_with = "from_str_setting")]
    pub backup_interval: Option<DurationSetting>,
    pub backup_keep: Option<u32>,
    pub backup_dir: Option<PathBuf>,
    pub metrics_listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    #[serde(default)]
    pub apps: Vec<AppLayer>,
    /// `WXAUTH_*` variables that name no setting; an error unless an app reads its
    /// secret from one (`secret_env`).
    #[serde(skip)]
    pub unknown_env: Vec<String>,
}

macro_rules! merge_fields {
    ($low:ident, $high:ident; $($field:ident),* $(,)?) => {
        $( if $high.$field.is_some() { $low.$field = $high.$field; } )*
    };
}

impl Layer {
    /// Reads a TOML file; unknown keys are an error that names the key.
    pub fn from_file(path: &Path) -> Result<Layer, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        Layer::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text into a layer.
    pub fn from_toml(text: &str) -> Result<Layer, String> {
        toml::from_str(text).map_err(|e| e.message().to_string() + &location(text, e.span()))
    }

    /// Reads the `WXAUTH_*` variables of `vars`. `WXAUTH_CONFIG` and `WXAUTH_LOG` are
    /// read elsewhere or here as noted; other unknown `WXAUTH_*` names are an error, since
    /// a misspelt variable would otherwise be silently ignored.
    pub fn from_env(vars: &HashMap<String, String>) -> Result<Layer, ConfigError> {
        fn parse<T: FromStr>(name: &str, value: &str) -> Result<T, ConfigError>
        where
            T::Err: fmt::Display,
        {
            value
                .parse()
                .map_err(|e: T::Err| invalid(name, e.to_string()))
        }
        let mut layer = Layer::default();
        for (name, value) in vars {
            let Some(key) = name.strip_prefix("WXAUTH_") else {
                continue;
            };
            match key {
                "LISTEN" => layer.listen = Some(parse(name, value)?),
                "DATA_DIR" => layer.data_dir = Some(PathBuf::from(value)),
                "PUBLIC_URL" => layer.public_url = Some(value.clone()),
                "WECHAT_API" => layer.wechat_api = Some(value.clone()),
                "WECHAT_OPEN_URL" => layer.wechat_open_url = Some(value.clone()),
                "WECHAT_TIMEOUT" => layer.wechat_timeout = Some(parse(name, value)?),
                "WECHAT_CONNECT_TIMEOUT" => {
                    layer.wechat_connect_timeout = Some(parse(name, value)?)
                }
                "APPID" => layer.appid = Some(value.clone()),
                "SECRET" => layer.secret = Some(Secret::new(value.clone())),
                "SECRET_FILE" => layer.secret_file = Some(PathBuf::from(value)),
                "CONTENT_CHECK" => layer.content_check = Some(parse(name, value)?),
                "CONTENT_CHECK_UNAVAILABLE" => {
                    layer.content_check_unavailable = Some(parse(name, value)?)
                }
                "TOKEN_TTL" => layer.token_ttl = Some(parse(name, value)?),
                "SESSION_MAX_AGE" => layer.session_max_age = Some(parse(name, value)?),
                "JWT_TTL" => layer.jwt_ttl = Some(parse(name, value)?),
                "JWT_AUDIENCE" => layer.jwt_audience = Some(value.clone()),
                "MAX_SESSIONS_PER_USER" => layer.max_sessions_per_user = Some(parse(name, value)?),
                "LOGIN_RATE_LIMIT" => layer.login_rate_limit = Some(parse(name, value)?),
                "TRUST_PROXY" => layer.trust_proxy = Some(parse(name, value)?),
                "LITESTREAM" => layer.litestream = Some(parse(name, value)?),
                "AVATAR_MAX_BYTES" => layer.avatar_max_bytes = Some(parse(name, value)?),
                "LOG" => layer.log = Some(value.clone()),
                "LOG_FORMAT" => layer.log_format = Some(parse(name, value)?),
                "SHUTDOWN_TIMEOUT" => layer.shutdown_timeout = Some(parse(name, value)?),
                "HEADER_TIMEOUT" => layer.header_timeout = Some(parse(name, value)?),
                "MAX_CONNECTIONS" => layer.max_connections = Some(parse(name, value)?),
                "PROFILE_RATE_LIMIT" => layer.profile_rate_limit = Some(parse(name, value)?),
                "BACKUP_INTERVAL" => layer.backup_interval = Some(parse(name, value)?),
                "BACKUP_KEEP" => layer.backup_keep = Some(parse(name, value)?),
                "BACKUP_DIR" => layer.backup_dir = Some(PathBuf::from(value)),
                "METRICS_LISTEN" => layer.metrics_listen = Some(parse(name, value)?),
                "ADMIN_LISTEN" => layer.admin_listen = Some(parse(name, value)?),
                "CONFIG" => {}
                _ => layer.unknown_env.push(name.clone()),
            }
        }
        Ok(layer)
    }

    /// Refuses `WXAUTH_*` variables that name no setting, unless an app reads its secret
    /// from that variable.
    pub fn check_unknown_env(&self) -> Result<(), ConfigError> {
        let used = |name: &String| {
            self.apps
                .iter()
                .any(|a| a.secret_env.as_ref() == Some(name))
        };
        match self.unknown_env.iter().find(|name| !used(name)) {
            Some(name) => Err(invalid(
                name.as_str(),
                "unknown setting; see the configuration reference in docs/config.md",
            )),
            None => Ok(()),
        }
    }

    /// Returns `self` overridden by every value that `high` sets.
    pub fn merge(mut self, high: Layer) -> Layer {
        let low = &mut self;
        merge_fields!(low, high;
            listen, data_dir, public_url, wechat_api, wechat_open_url, wechat_timeout, wechat_connect_timeout,
            appid, secret, secret_file, content_check, content_check_unavailable, token_ttl, session_max_age,
            jwt_ttl, jwt_audience, max_sessions_per_user, login_rate_limit, trust_proxy, litestream, avatar_max_bytes, log,
            log_format, shutdown_timeout, header_timeout, max_connections, profile_rate_limit,
            backup_interval, backup_keep, backup_dir, metrics_listen, admin_listen);
        if !high.apps.is_empty() {
            low.apps = high.apps;
        }
        low.unknown_env.extend(high.unknown_env);
        self
    }
}

/// Points at the line of a TOML error, when the parser knows it.
fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

/// One configured app: a mini program, an official account or a website.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The app's AppID (`wx…`).
    pub appid: String,
    /// A name for people; defaults to the AppID.
    pub name: String,
    /// Which WeChat surface it is.
    pub kind: AppKind,
    /// Where a web login may send the browser back to; empty for a mini program.
    pub redirect_uris: Vec<AllowedRedirect>,
    /// The AppSecret.
    pub secret: Secret,
    /// Whether nicknames go through WeChat's content check.
    pub content_check: bool,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub public_url: Option<String>,
    pub wechat_api: String,
    /// Where browsers are sent to authorize a web login (no trailing slash).
    pub wechat_open_url: String,
    /// The bound on one WeChat operation, retries included.
    pub wechat_timeout: Duration,
    pub wechat_connect_timeout: Duration,
    pub apps: Vec<AppConfig>,
    /// When an app's nickname check cannot reach WeChat.
    pub content_check_unavailable: ContentCheckPolicy,
    pub token_ttl: Duration,
    pub session_max_age: Duration,
    /// The lifetime of access JWTs.
    pub jwt_ttl: Duration,
    /// The `aud` of access JWTs.
    pub jwt_audience: String,
    pub max_sessions_per_user: u32,
    pub login_rate_limit: Option<Rate>,
    pub trust_proxy: bool,
    /// Litestream replicates the database and owns its checkpoints: the server runs
    /// none of its own.
    pub litestream: bool,
    pub avatar_max_bytes: u64,
    pub log: String,
    pub log_format: LogFormat,
    /// How long in-flight requests get to finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// How long a connection may take to send a request head; also how long an idle
    /// keep-alive connection stays open.
    pub header_timeout: Duration,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: u32,
    /// Per user, on `PATCH /v1/me` and the other profile writes.
    pub profile_rate_limit: Option<Rate>,
    /// Dev mode: a built-in fake WeChat, never for production.
    pub dev: bool,
    /// How often `serve` writes a backup of its own; `None` for never.
    pub backup_interval: Option<Duration>,
    /// Scheduled backups kept; older ones are deleted.
    pub backup_keep: u32,
    /// Where scheduled backups go.
    pub backup_dir: PathBuf,
    /// A separate address for `GET /metrics`; when set, the main address does not serve
    /// it.
    pub metrics_listen: Option<SocketAddr>,
    /// A separate address for the admin console; when set, the main address does not
    /// serve it.
    pub admin_listen: Option<SocketAddr>,
}

impl Config {
    /// Validates a merged layer. `dev` selects dev mode, which needs no AppSecret and
    /// refuses a real one.
    pub fn resolve(
        layer: Layer,
        dev: bool,
        env: &HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        layer.check_unknown_env()?;
        let listen = layer.listen.unwrap_or(DEFAULT_LISTEN);
        let public_url = match &layer.public_url {
            Some(url) => Some(validate_base_url("public_url", url)?),
            // Dev mode's web apps need somewhere for the fake WeChat to send the browser
            // back to, and the server itself is the only candidate.
            None if dev => Some(format!("http://{}", browser_addr(listen))),
            None => None,
        };
        let apps = resolve_apps(&layer, dev, env, listen, public_url.as_deref())?;
        let data_dir = match layer.data_dir {
            Some(dir) => dir,
            // Dev mode's trial users and keys stay apart from a real deployment's.
            None if dev => default_data_dir()
                .ok_or(ConfigError::NoDataDir)?
                .join("dev"),
            None => default_data_dir().ok_or(ConfigError::NoDataDir)?,
        };
        let wechat_api = validate_base_url(
            "wechat_api",
            layer
                .wechat_api
                .as_deref()
                .unwrap_or("https://api.weixin.qq.com"),
        )?;
        let wechat_open_url = validate_base_url(
            "wechat_open_url",
            layer
                .wechat_open_url
                .as_deref()
                .unwrap_or(DEFAULT_WECHAT_OPEN_URL),
        )?;
        let token_ttl = layer
            .token_ttl
            .map_or(Duration::from_secs(7 * 86400), |d| d.0);
        let session_max_age = layer
            .session_max_age
            .map_or(Duration::from_secs(90 * 86400), |d| d.0);
        if token_ttl > session_max_age {
            return Err(invalid(
                "token_ttl",
                "must not be longer than session_max_age",
            ));
        }
        let jwt_ttl = layer.jwt_ttl.map_or(DEFAULT_JWT_TTL, |d| d.0);
        if jwt_ttl > MAX_JWT_TTL {
            // A JWT cannot be recalled; a short life is what bounds one that leaks or
            // outlives its session.
            return Err(invalid("jwt_ttl", "must be at most 1h"));
        }
        let jwt_audience = layer
            .jwt_audience
            .clone()
            .unwrap_or_else(|| DEFAULT_JWT_AUDIENCE.to_owned());
        if jwt_audience.trim().is_empty() || jwt_audience.trim() != jwt_audience {
            return Err(invalid(
                "jwt_audience",
                "must not be empty or start or end with spaces",
            ));
        }
        let max_sessions_per_user = layer.max_sessions_per_user.unwrap_or(10);
        if max_sessions_per_user == 0 {
            return Err(invalid("max_sessions_per_user", "must be at least 1"));
        }
        let max_connections = layer.max_connections.unwrap_or(10_000);
        if max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1"));
        }
        let backup_keep = layer.backup_keep.unwrap_or(7);
        if backup_keep == 0 {
            return Err(invalid("backup_keep", "must be at least 1"));
        }
        let backup_dir = layer.backup_dir.unwrap_or_else(|| data_dir.join("backups"));
        let avatar_max_bytes = layer.avatar_max_bytes.unwrap_or(2 * 1024 * 1024);
        if avatar_max_bytes == 0 {
            return Err(invalid("avatar_max_bytes", "must be at least 1"));
        }
        Ok(Config {
            listen,
            data_dir,
            public_url,
            wechat_api,
            wechat_open_url,
            wechat_timeout: layer.wechat_timeout.map_or(Duration::from_secs(8), |d| d.0),
            wechat_connect_timeout: layer
                .wechat_connect_timeout
                .map_or(Duration::from_secs(2), |d| d.0),
            apps,
            content_check_unavailable: layer.content_check_unavailable.unwrap_or_default(),
            token_ttl,
            session_max_age,
            jwt_ttl,
            jwt_audience,
            max_sessions_per_user,
            login_rate_limit: layer.login_rate_limit.map_or(
                Some(Rate {
                    count: 120,
                    per: Duration::from_secs(60),
                }),
                |r| r.0,
            ),
            trust_proxy: layer.trust_proxy.unwrap_or(false),
            litestream: layer.litestream.unwrap_or(false),
            avatar_max_bytes,
            log: layer.log.unwrap_or_else(|| "info".to_owned()),
            log_format: layer.log_format.unwrap_or_default(),
            shutdown_timeout: layer
                .shutdown_timeout
                .map_or(Duration::from_secs(10), |d| d.0),
            header_timeout: layer
                .header_timeout
                .map_or(Duration::from_secs(10), |d| d.0),
            max_connections,
            profile_rate_limit: layer.profile_rate_limit.map_or(
                Some(Rate {
                    count: 30,
                    per: Duration::from_secs(60),
                }),
                |r| r.0,
            ),
            dev,
            backup_interval: layer.backup_interval.map(|d| d.0),
            backup_keep,
            backup_dir,
            metrics_listen: layer.metrics_listen,
            admin_listen: layer.admin_listen,
        })
    }

    /// The app a login names, or the only mini program when none is named: web apps
    /// log in through their own routes, so dev mode's do not make `appid` required.
    pub fn app(&self, appid: Option<&str>) -> Option<&AppConfig> {
        match appid {
            Some(appid) => self.apps.iter().find(|a| a.appid == appid),
            None => {
                let mut mini = self.apps.iter().filter(|a| a.kind == AppKind::MiniProgram);
                match (mini.next(), mini.next()) {
                    (Some(only), None) => Some(only),
                    _ => None,
                }
            }
        }
    }

    /// Tells the configuration the address actually bound. Dev mode derives
    /// `public_url` and its web apps' `redirect_uris` from `listen`; with port 0 (tests,
    /// `--listen 127.0.0.1:0`) those only become usable once the port is known.
    pub fn settle_listen(&mut self, bound: SocketAddr) {
        if !self.dev || self.listen.port() != 0 {
            return;
        }
        let (old, new) = (browser_addr(self.listen), browser_addr(bound));
        let (old_base, new_base) = (format!("http://{old}"), format!("http://{new}"));
        if self.public_url.as_deref() == Some(old_base.as_str()) {
            self.public_url = Some(new_base.clone());
        }
        let moved = [
            (format!("{old_base}/"), format!("{new_base}/")),
            (
                format!("http://localhost:{}/", old.port()),
                format!("http://localhost:{}/", new.port()),
            ),
        ];
        for app in &mut self.apps {
            for entry in &mut app.redirect_uris {
                if let Some((_, to)) = moved.iter().find(|(from, _)| entry.as_str() == from)
                    && let Ok(to) = AllowedRedirect::parse(to)
                {
                    *entry = to;
                }
            }
        }
    }
}

/// The address a browser on this machine reaches `listen` at: an unspecified address
/// (`0.0.0.0`, `[::]`) serves loopback too.
fn browser_addr(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, listen.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, listen.port()))
        }
        _ => listen,
    }
}

/// The redirect_uris of a dev-mode web app that lists none: pages on this server (at
/// `public_url` and at the listen address, as `localhost` too) and the usual local
/// front-end server at port 8080. An entry plain `http` may not use is left out.
fn dev_redirect_uris(listen: SocketAddr, public_url: Option<&str>) -> Vec<AllowedRedirect> {
    let here = browser_addr(listen);
    let mut texts = vec![
        "http://127.0.0.1:8080/".to_owned(),
        "http://localhost:8080/".to_owned(),
        format!("http://{here}/"),
        format!("http://localhost:{}/", here.port()),
    ];
    texts.extend(public_url.map(|url| format!("{url}/")));
    let mut entries: Vec<AllowedRedirect> = Vec::new();
    for entry in texts.iter().filter_map(|t| AllowedRedirect::parse(t).ok()) {
        if !entries.contains(&entry) {
            entries.push(entry);
        }
    }
    entries
}

/// The platform's data directory for wxauth, e.g. `~/.local/share/wxauth`.
pub fn default_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "wxauth").map(|d| d.data_dir().to_owned())
}

fn validate_base_url(name: &str, url: &str) -> Result<String, ConfigError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| invalid(name, format!("`{url}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(invalid(name, format!("`{url}` must be an http(s) URL")));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn read_secret_file(path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
        path: path.to_owned(),
        source,
    })?;
    Ok(Secret::new(text.trim().to_owned()))
}

fn resolve_apps(
    layer: &Layer,
    dev: bool,
    env: &HashMap<String, String>,
    listen: SocketAddr,
    public_url: Option<&str>,
) -> Result<Vec<AppConfig>, ConfigError> {
    if layer.appid.is_some() && !layer.apps.is_empty() {
        return Err(invalid(
            "appid",
            "set either one app (appid, secret) or [[apps]] tables, not both",
        ));
    }
    let mut apps = Vec::new();
    let default_content_check = layer.content_check.unwrap_or(false);
    let single = layer.appid.as_ref().map(|appid| AppLayer {
        appid: appid.clone(),
        secret: layer.secret.clone(),
        secret_file: layer.secret_file.clone(),
        ..AppLayer::default()
    });
    if single.is_none() && (layer.secret.is_some() || layer.secret_file.is_some()) && !dev {
        return Err(invalid("appid", "a secret is set but no appid"));
    }
    for app in single.iter().chain(&layer.apps) {
        if !is_valid_appid(&app.appid) {
            return Err(invalid(
                "appid",
                format!(
                    "`{}` is not an AppID (letters and digits, like wx1234567890abcdef)",
                    app.appid
                ),
            ));
        }
        if apps.iter().any(|a: &AppConfig| a.appid == app.appid) {
            return Err(invalid(
                "appid",
                format!("`{}` is configured twice", app.appid),
            ));
        }
        let secret = match (&app.secret, &app.secret_file, &app.secret_env) {
            (Some(s), None, None) => Some(s.clone()),
            (None, Some(path), None) => Some(read_secret_file(path)?),
            (None, None, Some(var)) => {
                Some(Secret::new(env.get(var).cloned().ok_or_else(|| {
                    invalid(
                        format!("apps.{}.secret_env", app.appid),
                        format!("the environment variable {var} is not set"),
                    )
                })?))
            }
            (None, None, None) => None,
            _ => {
                return Err(invalid(
                    format!("{} secret", app.appid),
                    "give only one of secret, secret_file and secret_env",
                ));
            }
        };
        let secret = match (secret, dev) {
            (Some(s), _) if s.expose().is_empty() => {
                return Err(invalid(format!("{} secret", app.appid), "is empty"));
            }
            (Some(_), true) => {
                return Err(invalid(
                    "--dev",
                    "dev mode refuses to start with a real AppSecret configured; \
                     remove the secret or run without --dev",
                ));
            }
            (Some(s), false) => s,
            (None, true) => Secret::new("dev-secret".to_owned()),
            (None, false) => {
                return Err(invalid(
                    format!("{} secret", app.appid),
                    "no AppSecret: set WXAUTH_SECRET, WXAUTH_SECRET_FILE, or secret/secret_file/secret_env in [[apps]]",
                ));
            }
        };
        let kind = app.kind.unwrap_or_default();
        let redirect_uris = if dev && kind.is_web() && app.redirect_uris.is_empty() {
            dev_redirect_uris(listen, public_url)
        } else {
            resolve_redirect_uris(app, kind)?
        };
        if kind.is_web() && public_url.is_none() {
            return Err(invalid(
                "public_url",
                format!(
                    "app {} is a {kind} app: its web login needs public_url, the address \
                     WeChat sends browsers back to (<public_url>/v1/oauth/wechat/callback)",
                    app.appid
                ),
            ));
        }
        apps.push(AppConfig {
            appid: app.appid.clone(),
            name: app.name.clone().unwrap_or_else(|| app.appid.clone()),
            kind,
            redirect_uris,
            secret,
            content_check: app.content_check.unwrap_or(default_content_check),
        });
    }
    if dev {
        if layer.secret.is_some() || layer.secret_file.is_some() {
            return Err(invalid(
                "--dev",
                "dev mode refuses to start with a real AppSecret configured; \
                 remove the secret or run without --dev",
            ));
        }
        // One app of each kind the configuration leaves out, so that every login flow
        // can be tried at once. The mini program goes first: the docs and tests take
        // `apps[0]` as dev mode's app.
        let dev_apps = [
            (DEV_APPID, "development", AppKind::MiniProgram),
            (
                DEV_OFFICIAL_ACCOUNT_APPID,
                "development official account",
                AppKind::OfficialAccount,
            ),
            (DEV_WEBSITE_APPID, "development website", AppKind::Website),
        ];
        for (appid, name, kind) in dev_apps {
            if apps.iter().any(|a| a.kind == kind || a.appid == appid) {
                continue;
            }
            let app = AppConfig {
                appid: appid.to_owned(),
                name: name.to_owned(),
                kind,
                redirect_uris: if kind.is_web() {
                    dev_redirect_uris(listen, public_url)
                } else {
                    Vec::new()
                },
                secret: Secret::new("dev-secret".to_owned()),
                content_check: default_content_check,
            };
            if kind.is_web() {
                apps.push(app);
            } else {
                apps.insert(0, app);
            }
        }
    }
    if apps.is_empty() {
        return Err(invalid(
            "appid",
            "no app configured: set WXAUTH_APPID and WXAUTH_SECRET, add [[apps]] to the config file, \
             or try it out with `wxauth serve --dev`",
        ));
    }
    Ok(apps)
}

/// An app's `redirect_uris`, checked against its kind: web apps need at least one, a
/// mini program has no use for any.
fn resolve_redirect_uris(
    app: &AppLayer,
    kind: AppKind,
) -> Result<Vec<AllowedRedirect>, ConfigError> {
    let key = || format!("apps.{}.redirect_uris", app.appid);
    if kind.is_web() && app.redirect_uris.is_empty() {
        return Err(invalid(
            key(),
            format!(
                "a {kind} app must list at least one URL its web login may send the browser back to"
            ),
        ));
    }
    if !kind.is_web() && !app.redirect_uris.is_empty() {
        return Err(invalid(
            key(),
            "a miniprogram app has no web login; remove redirect_uris or set kind",
        ));
    }
    app.redirect_uris
        .iter()
        .map(|text| AllowedRedirect::parse(text).map_err(|e| invalid(key(), e)))
        .collect()
}

fn is_valid_appid(appid: &str) -> bool {
    (2..=64).contains(&appid.len()) && appid.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn resolve(layer: Layer) -> Result<Config, ConfigError> {
        let layer = Layer {
            data_dir: Some("/nonexistent".into()),
            ..Layer::default()
        }
        .merge(layer);
        Config::resolve(layer, false, &HashMap::new())
    }

    #[test]
    fn later_layers_override_earlier_ones() {
        let file = Layer::from_toml(
            "listen = \"127.0.0.1:9000\"\ntoken_ttl = \"1d\"\nappid = \"wxfile\"\nsecret = \"s1\"\nmax_sessions_per_user = 3\n",
        )
        .unwrap();
        let from_env = Layer::from_env(&env(&[
            ("WXAUTH_TOKEN_TTL", "2h"),
            ("WXAUTH_APPID", "wxenv"),
            ("PATH", "/bin"),
        ]))
        .unwrap();
        let flags = Layer {
            listen: Some("127.0.0.1:9100".parse().unwrap()),
            ..Layer::default()
        };
        let config = resolve(file.merge(from_env).merge(flags)).unwrap();
        assert_eq!(config.listen, "127.0.0.1:9100".parse().unwrap());
        assert_eq!(config.token_ttl, Duration::from_secs(7200));
        assert_eq!(config.apps[0].appid, "wxenv");
        assert_eq!(config.apps[0].secret.expose(), "s1");
        assert_eq!(config.max_sessions_per_user, 3);
        assert_eq!(config.session_max_age, Duration::from_secs(90 * 86400));
    }

    #[test]
    fn defaults_match_the_spec() {
        let config = resolve(Layer {
            appid: Some("wx1".into()),
            secret: Some(Secret::new("s".into())),
            ..Layer::default()
        })
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.wechat_api, "https://api.weixin.qq.com");
        assert_eq!(config.token_ttl, Duration::from_secs(7 * 86400));
        assert_eq!(config.max_sessions_per_user, 10);
        assert_eq!(
            config.login_rate_limit,
            Some(Rate {
                count: 120,
                per: Duration::from_secs(60)
            })
        );
        assert!(!config.trust_proxy);
        assert_eq!(config.avatar_max_bytes, 2_097_152);
        assert_eq!(config.log_format, LogFormat::Auto);
        assert_eq!(config.backup_interval, None);
        assert_eq!(config.backup_keep, 7);
        assert_eq!(config.backup_dir, config.data_dir.join("backups"));
        assert!(!config.apps[0].content_check);
        assert_eq!(config.content_check_unavailable, ContentCheckPolicy::Allow);
    }

    #[test]
    fn scheduled_backups_are_configured() {
        let from_env = Layer::from_env(&env(&[
            ("WXAUTH_BACKUP_INTERVAL", "6h"),
            ("WXAUTH_BACKUP_KEEP", "28"),
            ("WXAUTH_BACKUP_DIR", "/backups"),
        ]))
        .unwrap();
        let with_app = Layer {
            appid: Some("wx1".into()),
            secret: Some(Secret::new("s".into())),
            ..Layer::default()
        };
        let config = resolve(with_app.clone().merge(from_env)).unwrap();
        assert_eq!(config.backup_interval, Some(Duration::from_secs(6 * 3600)));
        assert_eq!(config.backup_keep, 28);
        assert_eq!(config.backup_dir, PathBuf::from("/backups"));
        let none_kept = with_app.merge(Layer::from_toml("backup_keep = 0").unwrap());
        assert!(
            resolve(none_kept)
                .unwrap_err()
                .to_string()
                .contains("backup_keep")
        );
    }

    #[test]
    fn the_content_check_policy_comes_from_file_or_env() {
        let file = Layer::from_toml("content_check_unavailable = \"reject\"").unwrap();
        assert_eq!(
            file.content_check_unavailable,
            Some(ContentCheckPolicy::Reject)
        );
        let from_env =
            Layer::from_env(&env(&[("WXAUTH_CONTENT_CHECK_UNAVAILABLE", "allow")])).unwrap();
        assert_eq!(
            file.merge(from_env).content_check_unavailable,
            Some(ContentCheckPolicy::Allow)
        );
        let err = Layer::from_toml("content_check_unavailable = \"maybe\"").unwrap_err();
        assert!(err.contains("allow or reject"), "{err}");
    }

    #[test]
    fn litestream_is_off_unless_the_file_or_env_turns_it_on() {
        assert!(
            !resolve(Layer::from_toml("appid = \"wx1\"\nsecret = \"s\"").unwrap())
                .unwrap()
                .litestream
        );
        let file = Layer::from_toml("appid = \"wx1\"\nsecret = \"s\"\nlitestream = true").unwrap();
        assert!(resolve(file.clone()).unwrap().litestream);
        let from_env = Layer::from_env(&env(&[("WXAUTH_LITESTREAM", "false")])).unwrap();
        assert!(!resolve(file.merge(from_env)).unwrap().litestream);
        let err = Layer::from_env(&env(&[("WXAUTH_LITESTREAM", "yes please")])).unwrap_err();
        assert!(err.to_string().contains("WXAUTH_LITESTREAM"), "{err}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Layer::from_toml("listen = \"127.0.0.1:1\"\ntoken_tll = \"1d\"\n").unwrap_err();
        assert!(err.contains("token_tll"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        let err = Layer::from_toml("[[apps]]\nappid = \"wx1\"\nsecrett = \"x\"\n").unwrap_err();
        assert!(err.contains("secrett"), "{err}");
        let layer = Layer::from_env(&env(&[("WXAUTH_TOKEN_TLL", "1d")])).unwrap();
        let err = resolve(layer).unwrap_err();
        assert!(err.to_string().contains("WXAUTH_TOKEN_TLL"), "{err}");
    }

    #[test]
    fn bad_values_are_explained() {
        let err = Layer::from_toml("token_ttl = \"soon\"").unwrap_err();
        assert!(err.contains("not a duration"), "{err}");
        let err = Layer::from_env(&env(&[("WXAUTH_LOGIN_RATE_LIMIT", "5/fortnight")])).unwrap_err();
        assert!(err.to_string().contains("rate unit"), "{err}");
        let err = Layer::from_env(&env(&[("WXAUTH_LISTEN", "localhost")])).unwrap_err();
        assert!(err.to_string().contains("WXAUTH_LISTEN"), "{err}");
    }

    #[test]
    fn rates_and_durations_parse() {
        assert_eq!("off".parse::<RateSetting>().unwrap(), RateSetting(None));
        assert_eq!(
            "5/s".parse::<RateSetting>().unwrap().0,
            Some(Rate {
                count: 5,
                per: Duration::from_secs(1)
            })
        );
        assert_eq!(
            "10/h".parse::<RateSetting>().unwrap().0.unwrap().per,
            Duration::from_secs(3600)
        );
        assert!("0/s".parse::<RateSetting>().is_err());
        for (text, secs) in [("45s", 45), ("30m", 1800), ("12h", 43200), ("7d", 604800)] {
            assert_eq!(text.parse::<DurationSetting>().unwrap().0.as_secs(), secs);
        }
        assert!("0s".parse::<DurationSetting>().is_err());
    }

    #[test]
    fn a_missing_secret_is_a_clear_error() {
        let err = resolve(Layer {
            appid: Some("wx1".into()),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("no AppSecret"), "{err}");
        let err = resolve(Layer::default()).unwrap_err();
        assert!(err.to_string().contains("no app configured"), "{err}");
    }

    #[test]
    fn several_apps_and_secret_sources() {
        let dir = tempfile::tempdir().unwrap();
        let secret_path = dir.path().join("secret");
        std::fs::write(&secret_path, "from-file\n").unwrap();
        let text = format!(
            "[[apps]]\nappid = \"wxa\"\nname = \"Shop\"\nsecret = \"sa\"\n\
             [[apps]]\nappid = \"wxb\"\nsecret_file = \"{}\"\ncontent_check = true\n\
             [[apps]]\nappid = \"wxc\"\nsecret_env = \"C_SECRET\"\n\
             [[apps]]\nappid = \"wxd\"\nsecret_env = \"WXAUTH_D_SECRET\"\n",
            secret_path.display()
        );
        let layer = Layer {
            data_dir: Some("/nonexistent".into()),
            ..Layer::default()
        }
        .merge(Layer::from_toml(&text).unwrap());
        let vars = env(&[("C_SECRET", "from-env"), ("WXAUTH_D_SECRET", "prefixed")]);
        let layer = layer.merge(Layer::from_env(&vars).unwrap());
        let config = Config::resolve(layer, false, &vars).unwrap();
        assert_eq!(config.apps.len(), 4);
        assert_eq!(config.apps[3].secret.expose(), "prefixed");
        assert_eq!(config.apps[0].name, "Shop");
        assert_eq!(config.apps[1].secret.expose(), "from-file");
        assert!(config.apps[1].content_check);
        assert_eq!(config.apps[2].secret.expose(), "from-env");
        assert!(
            config.app(None).is_none(),
            "several apps need an explicit appid"
        );
        assert_eq!(config.app(Some("wxb")).unwrap().appid, "wxb");
    }

    #[test]
    fn dev_mode_refuses_a_real_secret() {
        let layer = Layer {
            data_dir: Some("/nonexistent".into()),
            appid: Some("wx1".into()),
            secret: Some(Secret::new("real".into())),
            ..Layer::default()
        };
        let err = Config::resolve(layer, true, &HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("dev mode refuses"), "{err}");
        let layer = Layer {
            data_dir: Some("/nonexistent".into()),
            ..Layer::default()
        };
        let config = Config::resolve(layer, true, &HashMap::new()).unwrap();
        assert_eq!(config.apps[0].appid, DEV_APPID);
    }

    /// Resolves `text` as the config file, with a public_url unless it sets its own.
    fn resolve_toml(text: &str) -> Result<Config, ConfigError> {
        let base = Layer::from_toml("public_url = \"https://auth.example.com\"").unwrap();
        resolve(base.merge(Layer::from_toml(text).unwrap()))
    }

    fn error_of(text: &str) -> String {
        resolve_toml(text).unwrap_err().to_string()
    }

    const WEB_APPS: &str = "[[apps]]\nappid = \"wxmini\"\nsecret = \"s\"\n\
        [[apps]]\nappid = \"wxh5\"\nkind = \"official_account\"\nsecret = \"s\"\n\
        redirect_uris = [\"https://h5.example.com/app\", \"http://localhost:3000/\"]\n\
        [[apps]]\nappid = \"wxsite\"\nkind = \"website\"\nsecret = \"s\"\n\
        redirect_uris = [\"https://www.example.com\"]\n";

    #[test]
    fn apps_have_a_kind_and_web_apps_their_redirect_uris() {
        let config = resolve_toml(WEB_APPS).unwrap();
        let kinds: Vec<AppKind> = config.apps.iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            [
                AppKind::MiniProgram,
                AppKind::OfficialAccount,
                AppKind::Website
            ]
        );
        assert!(config.apps[0].redirect_uris.is_empty());
        let h5 = &config.apps[1].redirect_uris;
        assert_eq!(h5.len(), 2);
        assert!(h5[0].allows("https://h5.example.com/app/page"));
        assert_eq!(
            config.apps[2].redirect_uris[0].as_str(),
            "https://www.example.com/"
        );
        assert_eq!(
            config.app(None).unwrap().appid,
            "wxmini",
            "web apps do not make the mini program's appid required"
        );
        assert_eq!(config.app(Some("wxsite")).unwrap().kind, AppKind::Website);
    }

    #[test]
    fn an_unknown_kind_is_named() {
        let err = Layer::from_toml("[[apps]]\nappid = \"wx1\"\nkind = \"h5\"\n").unwrap_err();
        assert!(
            err.contains("h5") && err.contains("official_account"),
            "{err}"
        );
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn the_single_app_form_is_a_mini_program() {
        let from_env = Layer::from_env(&env(&[("WXAUTH_APPID", "wxenv"), ("WXAUTH_SECRET", "s")]));
        let config = resolve(from_env.unwrap()).unwrap();
        assert_eq!(config.apps[0].kind, AppKind::MiniProgram);
        assert!(config.apps[0].redirect_uris.is_empty());
    }

    #[test]
    fn web_apps_must_list_redirect_uris() {
        for kind in ["official_account", "website"] {
            let err = error_of(&format!(
                "[[apps]]\nappid = \"wxweb\"\nkind = \"{kind}\"\nsecret = \"s\"\n"
            ));
            assert!(err.contains("apps.wxweb.redirect_uris"), "{err}");
            assert!(err.contains("at least one"), "{err}");
        }
        let err = error_of(
            "[[apps]]\nappid = \"wxweb\"\nkind = \"website\"\nsecret = \"s\"\nredirect_uris = []\n",
        );
        assert!(err.contains("apps.wxweb.redirect_uris"), "{err}");
    }

    #[test]
    fn a_mini_program_lists_no_redirect_uris() {
        let err = error_of(
            "[[apps]]\nappid = \"wxmini\"\nsecret = \"s\"\nredirect_uris = [\"https://a.example.com/\"]\n",
        );
        assert!(err.contains("apps.wxmini.redirect_uris"), "{err}");
        assert!(err.contains("miniprogram"), "{err}");
    }

    #[test]
    fn each_redirect_uri_is_checked() {
        for bad in [
            "http://h5.example.com/",
            "https://h5.example.com/?a=1",
            "https://h5.example.com/#x",
            "https://user@h5.example.com/",
            "https://user:pw@h5.example.com/",
            "/relative",
            "h5.example.com",
            "ftp://h5.example.com/",
            "javascript:alert(1)",
            "https:\\\\h5.example.com/",
        ] {
            let text = format!(
                "[[apps]]\nappid = \"wxweb\"\nkind = \"official_account\"\nsecret = \"s\"\n\
                 redirect_uris = [\"https://ok.example.com/\", {bad:?}]\n"
            );
            let err = error_of(&text);
            assert!(err.contains("apps.wxweb.redirect_uris"), "{bad}: {err}");
        }
        for loopback in [
            "http://127.0.0.1:3000/",
            "http://localhost/",
            "http://[::1]:8080/a",
        ] {
            let text = format!(
                "[[apps]]\nappid = \"wxweb\"\nkind = \"website\"\nsecret = \"s\"\n\
                 redirect_uris = [{loopback:?}]\n"
            );
            assert!(resolve_toml(&text).is_ok(), "{loopback}");
        }
    }

    #[test]
    fn web_apps_need_public_url() {
        let layer = Layer::from_toml(WEB_APPS).unwrap();
        let err = resolve(layer).unwrap_err().to_string();
        assert!(err.starts_with("public_url:"), "{err}");
        assert!(err.contains("wxh5"), "{err}");
        let minis = Layer::from_toml("[[apps]]\nappid = \"wxmini\"\nsecret = \"s\"\n").unwrap();
        assert!(resolve(minis).is_ok(), "a mini program needs no public_url");
    }

    #[test]
    fn wechat_open_url_has_a_default_and_is_checked() {
        let single = || Layer::from_toml("appid = \"wx1\"\nsecret = \"s\"").unwrap();
        assert_eq!(
            resolve(single()).unwrap().wechat_open_url,
            "https://open.weixin.qq.com"
        );
        let from_env = Layer::from_env(&env(&[(
            "WXAUTH_WECHAT_OPEN_URL",
            "http://127.0.0.1:9090/",
        )]))
        .unwrap();
        assert_eq!(
            resolve(single().merge(from_env)).unwrap().wechat_open_url,
            "http://127.0.0.1:9090"
        );
        let file = Layer::from_toml("wechat_open_url = \"ftp://open.example.com\"").unwrap();
        let err = resolve(single().merge(file)).unwrap_err().to_string();
        assert!(err.starts_with("wechat_open_url:"), "{err}");
    }

    #[test]
    fn jwt_settings_have_defaults_and_bounds() {
        let single = || Layer::from_toml("appid = \"wx1\"\nsecret = \"s\"").unwrap();
        let config = resolve(single()).unwrap();
        assert_eq!(config.jwt_ttl, Duration::from_secs(600));
        assert_eq!(config.jwt_audience, "wxauth");
        let from_env = Layer::from_env(&env(&[
            ("WXAUTH_JWT_TTL", "1h"),
            ("WXAUTH_JWT_AUDIENCE", "api.example.com"),
        ]))
        .unwrap();
        let config = resolve(single().merge(from_env)).unwrap();
        assert_eq!(config.jwt_ttl, Duration::from_secs(3600));
        assert_eq!(config.jwt_audience, "api.example.com");
        for (toml, key) in [
            ("jwt_ttl = \"61m\"", "jwt_ttl:"),
            ("jwt_audience = \"\"", "jwt_audience:"),
            ("jwt_audience = \" api\"", "jwt_audience:"),
        ] {
            let file = Layer::from_toml(toml).unwrap();
            let err = resolve(single().merge(file)).unwrap_err().to_string();
            assert!(err.starts_with(key), "{toml}: {err}");
        }
    }

    fn dev(layer: Layer) -> Result<Config, ConfigError> {
        let base = Layer {
            data_dir: Some("/nonexistent".into()),
            ..Layer::default()
        };
        Config::resolve(base.merge(layer), true, &HashMap::new())
    }

    #[test]
    fn dev_mode_has_an_app_of_each_kind() {
        let config = dev(Layer::default()).unwrap();
        let apps: Vec<(&str, AppKind)> = config
            .apps
            .iter()
            .map(|a| (a.appid.as_str(), a.kind))
            .collect();
        assert_eq!(
            apps,
            [
                (DEV_APPID, AppKind::MiniProgram),
                (DEV_OFFICIAL_ACCOUNT_APPID, AppKind::OfficialAccount),
                (DEV_WEBSITE_APPID, AppKind::Website),
            ]
        );
        assert_eq!(config.public_url.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(config.app(None).unwrap().appid, DEV_APPID);
        let entries: Vec<&str> = config.apps[1]
            .redirect_uris
            .iter()
            .map(|e| e.as_str())
            .collect();
        assert_eq!(
            entries,
            ["http://127.0.0.1:8080/", "http://localhost:8080/"]
        );
        assert!(
            config.apps[2]
                .redirect_uris
                .iter()
                .any(|e| e.allows("http://127.0.0.1:8080/examples/h5/"))
        );
    }

    #[test]
    fn dev_mode_web_apps_follow_the_listen_address_and_public_url() {
        let config = dev(Layer {
            listen: Some("0.0.0.0:3000".parse().unwrap()),
            public_url: Some("https://tunnel.example.com/".into()),
            ..Layer::default()
        })
        .unwrap();
        assert_eq!(
            config.public_url.as_deref(),
            Some("https://tunnel.example.com")
        );
        let entries: Vec<&str> = config.apps[1]
            .redirect_uris
            .iter()
            .map(|e| e.as_str())
            .collect();
        assert_eq!(
            entries,
            [
                "http://127.0.0.1:8080/",
                "http://localhost:8080/",
                "http://127.0.0.1:3000/",
                "http://localhost:3000/",
                "https://tunnel.example.com/",
            ]
        );
        let config = dev(Layer {
            listen: Some("0.0.0.0:3000".parse().unwrap()),
            ..Layer::default()
        })
        .unwrap();
        assert_eq!(config.public_url.as_deref(), Some("http://127.0.0.1:3000"));
    }

    #[test]
    fn dev_mode_takes_configured_web_apps_and_their_redirect_uris() {
        let text = "[[apps]]\nappid = \"wxmyh5\"\nkind = \"official_account\"\n\
                    redirect_uris = [\"http://localhost:5173/\"]\n\
                    [[apps]]\nappid = \"wxmysite\"\nkind = \"website\"\n";
        let config = dev(Layer::from_toml(text).unwrap()).unwrap();
        let appids: Vec<&str> = config.apps.iter().map(|a| a.appid.as_str()).collect();
        assert_eq!(appids, [DEV_APPID, "wxmyh5", "wxmysite"]);
        assert_eq!(config.apps[1].redirect_uris.len(), 1);
        assert!(config.apps[1].redirect_uris[0].allows("http://localhost:5173/x"));
        assert!(
            config.apps[2]
                .redirect_uris
                .iter()
                .any(|e| e.allows("http://localhost:8080/")),
            "a dev web app listing none gets the dev defaults"
        );
        let err = dev(Layer::from_toml(
            "[[apps]]\nappid = \"wxmyh5\"\nkind = \"official_account\"\n\
             redirect_uris = [\"http://192.168.1.5/\"]\n",
        )
        .unwrap())
        .unwrap_err();
        assert!(
            err.to_string().contains("apps.wxmyh5.redirect_uris"),
            "{err}"
        );
    }

    #[test]
    fn dev_defaults_settle_on_the_bound_port() {
        let mut config = dev(Layer {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Layer::default()
        })
        .unwrap();
        config.settle_listen("127.0.0.1:41234".parse().unwrap());
        assert_eq!(config.public_url.as_deref(), Some("http://127.0.0.1:41234"));
        let entries: Vec<&str> = config.apps[2]
            .redirect_uris
            .iter()
            .map(|e| e.as_str())
            .collect();
        assert_eq!(
            entries,
            [
                "http://127.0.0.1:8080/",
                "http://localhost:8080/",
                "http://127.0.0.1:41234/",
                "http://localhost:41234/",
            ]
        );
        let mut fixed = resolve_toml(WEB_APPS).unwrap();
        let before = format!("{fixed:?}");
        fixed.settle_listen("127.0.0.1:41234".parse().unwrap());
        assert_eq!(
            format!("{fixed:?}"),
            before,
            "only dev mode's defaults move"
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let config = resolve(Layer {
            appid: Some("wx1".into()),
            secret: Some(Secret::new("hunter2-app-secret".into())),
            ..Layer::default()
        })
        .unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
