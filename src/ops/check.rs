//! Checking a deployment from the outside: `wxauth check` looks at a resolved
//! configuration and its data directory without binding or serving (and, when asked,
//! whether WeChat accepts each app's credentials, or whether SQLite finds the database
//! intact); `wxauth healthcheck` asks a running server whether it is ready.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{AppConfig, AppKind, Config};
use crate::datadir;
use crate::db::{self, SCHEMA_VERSION, needed_keys};
use crate::keys::key_file::KeyFile;
use crate::ops::key_guard;

/// How a single check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nothing to do.
    Ok,
    /// Works, but deserves a look.
    Warn,
    /// `serve` would fail, or WeChat refuses the credentials.
    Fail,
}

impl Status {
    /// The status as printed in the text report.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What was checked, e.g. `database` or `app wx123`.
    pub subject: String,
    pub status: Status,
    /// A sentence an operator can act on.
    pub detail: String,
    /// What a deep check found wrong, one line each, as SQLite words it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

impl Finding {
    fn new(subject: impl Into<String>, status: Status, detail: impl Into<String>) -> Finding {
        Finding {
            subject: subject.into(),
            status,
            detail: detail.into(),
            problems: Vec::new(),
        }
    }
}

/// What `serve` would find: the configuration's summary and the data directory's state.
pub fn offline(config: &Config) -> Vec<Finding> {
    let apps: Vec<&str> = config.apps.iter().map(|a| a.appid.as_str()).collect();
    let mut findings = vec![Finding::new(
        "config",
        if config.dev { Status::Warn } else { Status::Ok },
        format!(
            "{} app(s) ({}); listen {}; WeChat API {}",
            apps.len(),
            apps.join(", "),
            config.listen,
            if config.dev {
                "built in and fake: DEV MODE, never for production"
            } else {
                &config.wechat_api
            }
        ),
    )];
    findings.extend(data_dir(&config.data_dir));
    findings
}

/// The data directory's permissions, database version and key file.
fn data_dir(dir: &Path) -> Vec<Finding> {
    let mut findings = Vec::new();
    let Ok(meta) = std::fs::metadata(dir) else {
        findings.push(Finding::new(
            "data dir",
            Status::Ok,
            format!("{} does not exist yet; serve creates it", dir.display()),
        ));
        return findings;
    };
    if !meta.is_dir() {
        findings.push(Finding::new(
            "data dir",
            Status::Fail,
            format!("{} is not a directory", dir.display()),
        ));
        return findings;
    }
    let mode = meta.permissions().mode() & 0o777;
    findings.push(if mode & 0o077 == 0 {
        Finding::new("data dir", Status::Ok, dir.display().to_string())
    } else {
        Finding::new(
            "data dir",
            Status::Warn,
            format!(
                "{} has mode {mode:o}: other users can reach the database and keys; chmod 700 it",
                dir.display()
            ),
        )
    });
    findings.push(database(dir));
    findings.push(key_file(dir));
    findings
}

/// Whether `serve` would accept the key file: one that holds every key the database
/// needs, or none at all for an empty database.
fn key_file(dir: &Path) -> Finding {
    let subject = "key file";
    let path = dir.join(datadir::KEYS_FILE);
    let file = match KeyFile::load_if_present(&path) {
        Ok(file) => file,
        Err(e) => return Finding::new(subject, Status::Fail, e.to_string()),
    };
    let db_path = dir.join(datadir::DATABASE_FILE);
    let recorded = if db_path.exists() {
        let read = db::open_connection(&db_path, true).and_then(|c| {
            let version: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if version > SCHEMA_VERSION {
                return Ok(None);
            }
            // Before version 5 nothing is recorded: serve records the file it finds.
            Ok(Some(key_guard::Recorded {
                needed: if version >= 5 {
                    needed_keys::needed(&c)?
                } else {
                    Vec::new()
                },
                empty: version == 0 || needed_keys::is_empty(&c)?,
            }))
        });
        match read {
            Ok(Some(recorded)) => recorded,
            Ok(None) => {
                return Finding::new(
                    subject,
                    Status::Warn,
                    "not checked: the database is newer than this wxauth",
                );
            }
            Err(e) => return Finding::new(subject, Status::Fail, e.to_string()),
        }
    } else {
        key_guard::Recorded {
            needed: Vec::new(),
            empty: true,
        }
    };
    let fix = "bring back the keys.json that belongs with this database, \
               or run `wxauth keys reset --yes` (ends every session)";
    match (key_guard::judge(&recorded, file.as_ref()), file) {
        (key_guard::Verdict::Use, Some(file)) => Finding::new(
            subject,
            Status::Ok,
            format!(
                "{} signing key(s), active {}; holds every key the database needs",
                file.keys.len(),
                file.active
            ),
        ),
        (key_guard::Verdict::Missing, _) => Finding::new(
            subject,
            Status::Fail,
            format!(
                "{} is missing and the database depends on its keys: {fix}",
                path.display()
            ),
        ),
        (key_guard::Verdict::Lacking(lacking), _) => Finding::new(
            subject,
            Status::Fail,
            format!(
                "{} is not this database's: it lacks {}; {fix}",
                path.display(),
                key_guard::list(&lacking)
            ),
        ),
        (key_guard::Verdict::Create | key_guard::Verdict::Use, _) => {
            Finding::new(subject, Status::Ok, "none yet; serve creates it")
        }
    }
}

/// The most problems of one kind a deep check lists.
const MAX_PROBLEMS: usize = 100;

/// SQLite's own checks of the database: `PRAGMA integrity_check` (pages, records,
/// indexes) and `PRAGMA foreign_key_check`, on a read-only connection, so that it can
/// run beside a serving server.
pub fn deep(dir: &Path) -> Vec<Finding> {
    let path = dir.join(datadir::DATABASE_FILE);
    if !path.exists() {
        return vec![Finding::new(
            "integrity",
            Status::Ok,
            "no database yet; nothing to check",
        )];
    }
    let conn = match db::open_connection(&path, true) {
        Ok(conn) => conn,
        Err(e) => return vec![Finding::new("integrity", Status::Fail, e.to_string())],
    };
    let rows = |sql: &str, row: fn(&rusqlite::Row<'_>) -> rusqlite::Result<String>| {
        conn.prepare(sql).and_then(|mut stmt| {
            stmt.query_map([], row)?
                .take(MAX_PROBLEMS)
                .collect::<rusqlite::Result<Vec<String>>>()
        })
    };
    let integrity = match rows(&format!("PRAGMA integrity_check({MAX_PROBLEMS})"), |r| {
        r.get(0)
    }) {
        Ok(found) if found == ["ok"] => Finding::new(
            "integrity",
            Status::Ok,
            "SQLite's integrity check found no problem",
        ),
        Ok(found) => problems("integrity", "SQLite's integrity check", found),
        Err(e) => problems(
            "integrity",
            "SQLite's integrity check",
            vec![format!("the check could not run: {e}")],
        ),
    };
    let foreign = match rows("PRAGMA foreign_key_check", |r| {
        Ok(format!(
            "{} row {} refers to a missing row of {}",
            r.get::<_, String>(0)?,
            r.get::<_, Option<i64>>(1)?
                .map_or("(without rowid)".to_owned(), |id| id.to_string()),
            r.get::<_, String>(2)?
        ))
    }) {
        Ok(found) if found.is_empty() => Finding::new(
            "foreign keys",
            Status::Ok,
            "every reference points at an existing row",
        ),
        Ok(found) => problems("foreign keys", "SQLite's foreign key check", found),
        Err(e) => problems(
            "foreign keys",
            "SQLite's foreign key check",
            vec![format!("the check could not run: {e}")],
        ),
    };
    vec![integrity, foreign]
}

/// A failed deep check and what it found.
fn problems(subject: &str, check: &str, found: Vec<String>) -> Finding {
    let first = found.first().cloned().unwrap_or_default();
    let count = if found.len() >= MAX_PROBLEMS {
        format!("{MAX_PROBLEMS} or more problems")
    } else {
        format!("{} problem(s)", found.len())
    };
    Finding {
        problems: found,
        ..Finding::new(
            subject,
            Status::Fail,
            format!(
                "{check} found {count}, the first: {first}; copy the data directory aside, \
                 then restore the latest good backup (`wxauth restore`)"
            ),
        )
    }
}

/// Whether this build can open the database: its schema must not be newer.
fn database(dir: &Path) -> Finding {
    let path = dir.join(datadir::DATABASE_FILE);
    if !path.exists() {
        return Finding::new("database", Status::Ok, "none yet; serve creates it");
    }
    let version = db::open_connection(&path, true)
        .and_then(|c| Ok(c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))?));
    match version {
        Ok(v) if v > SCHEMA_VERSION => Finding::new(
            "database",
            Status::Fail,
            format!(
                "schema version {v} is newer than this wxauth understands ({SCHEMA_VERSION}); \
                 run a newer wxauth or restore a backup"
            ),
        ),
        Ok(v) if v < SCHEMA_VERSION => Finding::new(
            "database",
            Status::Ok,
            format!(
                "schema version {v}; serve upgrades it to {SCHEMA_VERSION}, take a backup first"
            ),
        ),
        Ok(v) => Finding::new("database", Status::Ok, format!("schema version {v}")),
        Err(e) => Finding::new("database", Status::Fail, e.to_string()),
    }
}

#[derive(Deserialize)]
struct StableTokenAnswer {
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    errmsg: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// Asks WeChat's `stable_token` for each app's access_token, which succeeds only with a
/// valid AppID and AppSecret. `force_refresh` stays off, so a running server's token
/// is not replaced.
pub async fn online(config: &Config) -> Vec<Finding> {
    if config.dev {
        return vec![Finding::new(
            "wechat",
            Status::Warn,
            "dev mode talks to the built-in fake WeChat; nothing to verify online",
        )];
    }
    crate::wechat::client::install_crypto_provider();
    let http = match reqwest::Client::builder()
        .connect_timeout(config.wechat_connect_timeout)
        .timeout(config.wechat_timeout)
        .user_agent(concat!("wxauth/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            return vec![Finding::new(
                "wechat",
                Status::Fail,
                format!("cannot build an HTTP client: {}", e.without_url()),
            )];
        }
    };
    let mut findings = Vec::new();
    for app in &config.apps {
        let subject = format!("app {}", app.appid);
        if app.kind == AppKind::Website {
            // WeChat gives website apps no access_token, so nothing checks their secret
            // short of a person logging in.
            findings.push(Finding::new(
                subject,
                Status::Warn,
                "a website app cannot be checked online; its AppSecret is first used when \
                 someone logs in",
            ));
            continue;
        }
        let (status, detail) = match stable_token(&http, &config.wechat_api, app).await {
            Ok(()) => (
                Status::Ok,
                "WeChat accepts the AppID and AppSecret".to_owned(),
            ),
            Err(detail) => (Status::Fail, detail),
        };
        findings.push(Finding::new(subject, status, detail));
    }
    findings
}

async fn stable_token(http: &reqwest::Client, base: &str, app: &AppConfig) -> Result<(), String> {
    let response = http
        .post(format!("{base}/cgi-bin/stable_token"))
        .json(&serde_json::json!({
            "grant_type": "client_credential",
            "appid": app.appid,
            "secret": app.secret.expose(),
            "force_refresh": false,
        }))
        .send()
        .await
        .map_err(|e| format!("cannot reach WeChat: {}", e.without_url()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("WeChat answered HTTP {}", status.as_u16()));
    }
    let answer: StableTokenAnswer = response
        .json()
        .await
        .map_err(|_| "WeChat answered something that is not the expected JSON".to_owned())?;
    match (answer.errcode.unwrap_or(0), answer.access_token) {
        (0, Some(token)) if !token.is_empty() => Ok(()),
        (0, _) => Err("WeChat answered without an access_token".into()),
        (code, _) => {
            let hint = match code {
                40013 => "the AppID is invalid",
                40125 | 40001 => "the AppSecret is wrong",
                40164 => "this server's IP address is not on the app's IP whitelist",
                -1 => "WeChat is busy; try again",
                _ => "see WeChat's error code list",
            };
            // errmsg is WeChat's own text (it may name our IP, never the secret).
            Err(format!(
                "WeChat refused: errcode {code} ({hint}): {}",
                answer.errmsg.unwrap_or_default()
            ))
        }
    }
}

/// The `/readyz` URL of a server listening on `listen`; a wildcard address is probed
/// on loopback.
pub fn readyz_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/readyz", SocketAddr::new(ip, listen.port()))
}

/// GETs `url` and succeeds on a 2xx answer within `timeout`.
pub async fn probe(url: &str, timeout: Duration) -> Result<(), String> {
    crate::wechat::client::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let response = http.get(url).send().await.map_err(|e| {
        let why = if e.is_timeout() {
            "no answer in time"
        } else if e.is_connect() {
            "cannot connect"
        } else {
            "the request failed"
        };
        format!("{url}: {why}")
    })?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "{url} answered HTTP {}",
            response.status().as_u16()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_probed_on_loopback() {
        assert_eq!(
            readyz_url("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080/readyz"
        );
        assert_eq!(
            readyz_url("[::]:9000".parse().unwrap()),
            "http://[::1]:9000/readyz"
        );
        assert_eq!(
            readyz_url("10.0.0.5:80".parse().unwrap()),
            "http://10.0.0.5:80/readyz"
        );
    }
}
