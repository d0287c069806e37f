//! A real wxauth server started in-process on 127.0.0.1:0, with the fake WeChat on
//! another loopback port, a clock the test controls and a private temporary data dir.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use serde_json::{Value, json};
use wxauth::clock::ManualClock;
use wxauth::config::{Config, Layer};
use wxauth::keys::secret::Secret;
use wxauth::wechat::fake::MockWeChat;
use wxauth::{App, datadir};

/// The AppID the test server is configured with.
pub const APPID: &str = "wxtest00000000001";
/// The AppSecret the test server is configured with; it must never show up anywhere.
pub const APP_SECRET: &str = "test-app-secret-5f2c9a";
/// Two mini programs, `wxshop` and `wxgame`, for [`TestServer::start_with_apps`].
pub const SHOP_AND_GAME: &str = "[[apps]]\nappid = \"wxshop\"\nsecret = \"s1\"\n\
                                 [[apps]]\nappid = \"wxgame\"\nsecret = \"s2\"\n";
/// Where the test clock starts: 2026-11-30T10:00:00Z.
pub const START: i64 = 1_796_032_800;

pub struct TestServer {
    pub app: Option<App>,
    pub config: Config,
    pub mock: MockWeChat,
    pub clock: ManualClock,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    pub base: String,
}

impl TestServer {
    /// A server with the default settings, a short WeChat timeout and one app.
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// A server whose settings `adjust` may change before it starts.
    pub async fn start_with(adjust: impl FnOnce(&mut Layer)) -> TestServer {
        let mock = MockWeChat::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut layer = Layer {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some(dir.path().join("data")),
            wechat_api: Some(mock.base_url()),
            appid: Some(APPID.into()),
            secret: Some(Secret::new(APP_SECRET.into())),
            wechat_timeout: Some("1s".parse().unwrap()),
            ..Layer::default()
        };
        adjust(&mut layer);
        let config = Config::resolve(layer, false, &HashMap::new()).unwrap();
        let clock = ManualClock::new(START);
        let app = App::start(config.clone(), Arc::new(clock.clone()))
            .await
            .unwrap();
        wxauth::wechat::client::install_crypto_provider();
        let base = format!("http://{}", app.addr());
        TestServer {
            app: Some(app),
            config,
            mock,
            clock,
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base,
        }
    }

    /// A server with the apps that `apps(wechat)` gives as TOML (`[[apps]]` tables and
    /// any other settings), instead of the one app; `wechat` is the fake WeChat's URL.
    pub async fn start_with_apps(apps: impl FnOnce(&str) -> String) -> TestServer {
        TestServer::start_with(|layer| {
            let wechat = layer.wechat_api.clone().unwrap();
            let toml = format!("wechat_api = \"{wechat}\"\n{}", apps(&wechat));
            let apps = Layer::from_toml(&toml).unwrap();
            layer.appid = None;
            layer.secret = None;
            *layer = std::mem::take(layer).merge(apps);
        })
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Logs in to `appid` (on a server with several apps) and returns the response body,
    /// insisting on 200.
    pub async fn login_to(&self, appid: &str, code: &str) -> Value {
        let response = self
            .post_json("/v1/login", &json!({"code": code, "appid": appid}), None)
            .await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "login to {appid} with {code}: {body}");
        body
    }

    /// On a [`SHOP_AND_GAME`] server, makes a merge conflict: the apps were bound to the
    /// Open Platform after the person had used both, so the shop's identity first comes
    /// without a unionid, then reports the game's. Returns the game's login, whose user
    /// holds the unionid, and the shop's, whose user the person also is.
    pub async fn unionid_conflict(&self) -> (Value, Value) {
        let shop = self.login_to("wxshop", "dev:hana").await;
        self.db_rw()
            .execute("UPDATE identities SET unionid = NULL", [])
            .unwrap();
        let game = self.login_to("wxgame", "dev:hana#2").await;
        assert_eq!(game["new_user"], true, "no user held the unionid yet");
        let again = self.login_to("wxshop", "dev:hana#3").await;
        assert_eq!(
            again["user"]["id"], shop["user"]["id"],
            "not merged silently"
        );
        (game, shop)
    }

    /// `POST /v1/login` with `{"code": code}`.
    pub async fn login(&self, code: &str) -> reqwest::Response {
        self.post_json("/v1/login", &json!({ "code": code }), None)
            .await
    }

    /// Logs in and returns the response body, insisting on 200.
    pub async fn login_ok(&self, code: &str) -> Value {
        let response = self.login(code).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "login with {code}: {body}");
        body
    }

    /// Logs in and returns just the token.
    pub async fn token(&self, code: &str) -> String {
        self.login_ok(code).await["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.http.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// `GET /v1/session` with `token`; returns the body, insisting on 200.
    pub async fn session_of(&self, token: &str) -> Value {
        let response = self.get("/v1/session", Some(token)).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "GET /v1/session: {body}");
        body
    }

    pub async fn patch_me(&self, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .patch(self.url("/v1/me"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// A read-only connection to the server's database.
    pub fn db(&self) -> Connection {
        Connection::open_with_flags(
            self.dir.path().join("data").join(datadir::DATABASE_FILE),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap()
    }

    /// Rows in `table`.
    pub fn count(&self, table: &str) -> i64 {
        self.db()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    /// A fingerprint of every row the API can change, to show a request changed nothing.
    pub fn snapshot(&self) -> Vec<String> {
        let db = self.db();
        let mut rows = Vec::new();
        for sql in [
            "SELECT * FROM users ORDER BY id",
            "SELECT * FROM identities ORDER BY id",
            "SELECT * FROM sessions ORDER BY id",
            "SELECT * FROM events ORDER BY id",
            "SELECT * FROM login_codes ORDER BY code_hash",
            "SELECT id, user_id, content_type, sha256, created_at FROM avatars ORDER BY id",
        ] {
            let mut stmt = db.prepare(sql).unwrap();
            let width = stmt.column_count();
            let mut query = stmt.query([]).unwrap();
            while let Some(row) = query.next().unwrap() {
                let cells: Vec<String> = (0..width)
                    .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
                    .collect();
                rows.push(cells.join("|"));
            }
        }
        rows
    }

    /// Stops the server and starts a new one on the same data directory, fake WeChat
    /// and clock (on a new port).
    pub async fn restart(&mut self) {
        self.restart_after(|_| {}).await;
    }

    /// Like [`TestServer::restart`], running `between` on the data directory while no
    /// server holds it.
    pub async fn restart_after(&mut self, between: impl FnOnce(&std::path::Path)) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
        between(&self.dir.path().join("data"));
        let app = App::start(self.config.clone(), Arc::new(self.clock.clone()))
            .await
            .unwrap();
        self.base = format!("http://{}", app.addr());
        self.app = Some(app);
    }

    /// A read-write connection to the server's database, for tests that set up a state
    /// the API cannot reach. It goes behind wxauth's back: a running server may answer
    /// from its copy of a session for up to `db::MAX_EXTERNAL_LAG` after a change.
    pub fn db_rw(&self) -> Connection {
        Connection::open(self.dir.path().join("data").join(datadir::DATABASE_FILE)).unwrap()
    }

    /// Legacy open data for user `dev:<name>` from the fake WeChat's `/mock/open-data`.
    pub async fn open_data(&self, name: &str, kind: &str) -> Value {
        self.http
            .get(format!("{}/mock/open-data", self.mock.base_url()))
            .query(&[("name", name), ("appid", APPID), ("kind", kind)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `wxauth ARGS` as user `ops` on this server's data directory, with `env` added
    /// and `listen` set to this server's address (where the console's links point);
    /// returns stdout, insisting on success.
    pub fn cli(&self, env: &[(&str, &str)], args: &[&str]) -> String {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_wxauth"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("USER", "ops")
            .env("WXAUTH_DATA_DIR", self.dir.path().join("data"))
            .env("WXAUTH_LISTEN", self.base.trim_start_matches("http://"))
            .envs(env.iter().copied())
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {stderr}");
        String::from_utf8(output.stdout).unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
    }
}

/// Reads an error response and returns (status, code).
/// The value of the sample `series` names (everything before the value) in Prometheus
/// text, if present.
pub fn metric_sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

pub async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"))
        .to_owned();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    (status, code)
}

/// Every log line of the test process, at `trace`, for tests that check what the logs
/// never contain. Installs the process-wide subscriber, so one test binary calls it once.
#[derive(Clone, Default)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn install() -> LogCapture {
        let capture = LogCapture::default();
        let writer = capture.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .init();
        capture
    }

    /// What has been logged so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
