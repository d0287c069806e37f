//! What the reverse-proxy tests share: finding the proxy binary (skip when it is absent,
//! fail when CI expects it), a recording upstream that stands in for the team's backend,
//! a free port, and a child process that is killed when the test ends.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warp::Filter;
use warp::http::{HeaderMap, Method};
use warp::path::FullPath;
use warp::reply::Reply;
use wxauth::http::server::{self, ConnectionLimits};
use wxauth::ops::audit::Actor;

/// The shipped `deploy/` directory.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// The path of `name` on PATH or in the sbin directories (nginx lives in /usr/sbin,
/// which is not on every user's PATH). `None` when it is not installed: the test is
/// then skipped with a message, unless CI is set, where a missing proxy is a failure.
pub fn find_or_skip(name: &str, install: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("{name} is not installed but CI is set; install it with `{install}`");
        }
        eprintln!("SKIPPED: {name} not installed (install it with `{install}`)");
    }
    found
}

/// Replaces every `from` in `text` with `to`, insisting that `from` occurs: a changed
/// shipped config must fail the test rather than quietly test something else.
pub fn substitute(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the shipped config no longer contains `{from}`"
    );
    text.replace(from, to)
}

/// A loopback port that was free a moment ago, for a proxy that must be told its port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
}

impl Seen {
    /// The value of header `name`, if it came exactly once.
    pub fn header(&self, name: &str) -> Option<String> {
        let mut values = self.headers.get_all(name).iter();
        let first = values.next()?.to_str().unwrap().to_owned();
        assert!(values.next().is_none(), "{name} came more than once");
        Some(first)
    }
}

/// The team's backend, as far as a test needs it: answers 200 to anything and records
/// what it was sent.
pub struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<oneshot::Sender<()>>,
    serving: JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let filter = warp::any()
            .and(warp::method())
            .and(warp::path::full())
            .and(warp::header::headers_cloned())
            .map(move |method: Method, path: FullPath, headers: HeaderMap| {
                record.lock().unwrap().push(Seen {
                    method,
                    path: path.as_str().to_owned(),
                    headers,
                });
                "from the backend".into_response()
            });
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(server::serve(
            listener,
            filter,
            ConnectionLimits::default(),
            async {
                let _ = stopped.await;
            },
        ));
        Upstream {
            addr,
            seen,
            stop: Some(stop),
            serving,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.serving).await;
    }
}

/// A proxy running as a child process; killed when dropped, so a failing test leaves
/// nothing behind.
pub struct Proxy {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Proxy {
    /// Starts `command` (its output goes to `log`) and waits until it accepts
    /// connections on `port`.
    pub async fn start(name: &'static str, mut command: Command, port: u16, log: PathBuf) -> Proxy {
        let out = std::fs::File::create(&log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let mut proxy = Proxy { child, name, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = proxy.child.try_wait().unwrap() {
                panic!("{name} exited with {status}:\n{}", proxy.output());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return proxy;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not listen on port {port}:\n{}",
                proxy.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the proxy has printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{} output:\n{}", self.name, self.output());
        }
    }
}

/// Where the shipped configurations of the proxies differ.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    /// Whether a refusal carries wxauth's own error body (Caddy), or one the proxy makes
    /// up (nginx, which can only say `invalid_token` for every 401).
    pub keeps_wxauth_errors: bool,
    /// Whether X-Auth-* headers other than wxauth's five are stripped too (Caddy), or
    /// only those five are replaced (nginx).
    pub strips_other_x_auth: bool,
}

/// The forward-auth flow through a proxy listening at `base`, in front of `server` and
/// `upstream`: allowed requests reach the upstream with the caller's identity, refused
/// ones never do, and identity headers a client makes up never get through.
pub async fn forward_auth_through(
    server: &crate::common::TestServer,
    upstream: &Upstream,
    base: &str,
    behaviour: Behaviour,
) {
    use serde_json::{Value, json};

    let http = &server.http;
    let url = |path: &str| format!("{base}{path}");
    let error_code = |status: u16, body: &Value| {
        assert!(body["error"]["message"].is_string(), "{status}: {body}");
        body["error"]["code"].as_str().unwrap().to_owned()
    };

    // The mini program's own calls go through the proxy to wxauth.
    let response = http
        .post(url("/v1/login"))
        .json(&json!({"code": "dev:nora"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let login: Value = response.json().await.unwrap();
    let token = login["token"].as_str().unwrap().to_owned();
    let user_id = login["user"]["id"].as_str().unwrap().to_owned();
    let session: Value = http
        .get(url("/v1/session"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (openid, unionid): (String, String) = server
        .db()
        .query_row(
            "SELECT i.openid, i.unionid FROM identities i JOIN users u ON u.id = i.user_id \
                 WHERE u.public_id = ?1",
            [&user_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();

    // A valid token reaches the backend, which learns who is calling.
    let response = http
        .get(url("/api/orders?page=2"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "from the backend");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    let first = &seen[0];
    assert_eq!(first.path, "/api/orders");
    assert_eq!(
        first.header("x-auth-user-id").as_deref(),
        Some(user_id.as_str())
    );
    assert_eq!(first.header("x-auth-openid"), Some(openid));
    assert_eq!(first.header("x-auth-unionid"), Some(unionid));
    assert_eq!(
        first.header("x-auth-appid").as_deref(),
        Some(crate::common::APPID)
    );
    assert_eq!(
        first.header("x-auth-session-id").as_deref(),
        session["session"]["id"].as_str()
    );

    // Any method: the proxy's check is answered whatever method it carries.
    let response = http
        .post(url("/api/orders"))
        .bearer_auth(&token)
        .json(&json!({"item": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].method, Method::POST);
    assert_eq!(
        seen[1].header("x-auth-user-id").as_deref(),
        Some(user_id.as_str())
    );

    // No token, or a bad one: 401, and the backend sees nothing.
    for authorization in [None, Some("Bearer garbage"), Some("Basic dXNlcjpwdw==")] {
        let mut request = http.get(url("/api/orders"));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{authorization:?}");
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(error_code(401, &body), "invalid_token");
    }
    assert_eq!(
        upstream.seen().len(),
        2,
        "a refused request reached the backend"
    );

    // Made-up identity headers never get through: with a valid token the backend sees
    // the real identity (and no unionid for a user who has none), without one nothing.
    let plain: Value = http
        .post(url("/v1/login"))
        .json(&json!({"code": "plain-code-behind-a-proxy"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let plain_token = plain["token"].as_str().unwrap();
    let plain_id = plain["user"]["id"].as_str().unwrap();
    let forge = |request: reqwest::RequestBuilder| {
        request
            .header("X-Auth-User-Id", "u_forged")
            .header("x-auth-openid", "o_forged")
            .header("X-AUTH-UNIONID", "un_forged")
            .header("X-Auth-Appid", "wxforged")
            .header("X-Auth-Session-Id", "s_forged")
            .header("X-Auth-Role", "admin")
    };
    let response = forge(http.get(url("/api/profile")).bearer_auth(plain_token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 3);
    let forged = &seen[2];
    assert_eq!(forged.header("x-auth-user-id").as_deref(), Some(plain_id));
    assert_eq!(
        forged.header("x-auth-appid").as_deref(),
        Some(crate::common::APPID)
    );
    assert_eq!(forged.header("x-auth-unionid"), None);
    if behaviour.strips_other_x_auth {
        assert_eq!(forged.header("x-auth-role"), None);
    } else {
        // Backends must trust only wxauth's five names (see docs/deploy.md).
        assert_eq!(forged.header("x-auth-role").as_deref(), Some("admin"));
    }
    for (name, value) in &forged.headers {
        assert!(
            !value.to_str().unwrap().contains("forged"),
            "{name}: {value:?} reached the backend"
        );
    }
    let response = forge(http.get(url("/api/profile"))).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(upstream.seen().len(), 3);

    let fresh_token = server.token("dev:otto").await;

    // Revoked and banned: refused at the proxy too.
    let response = http
        .post(url("/v1/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let response = http
        .get(url("/api/orders"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    let expected = if behaviour.keeps_wxauth_errors {
        "session_revoked"
    } else {
        "invalid_token"
    };
    assert_eq!(error_code(401, &body), expected);

    // Banned the way `wxauth users ban` does it, on a connection of its own.
    let conn = wxauth::db::open_existing(&server.dir.path().join("data")).unwrap();
    let (start, until) = (crate::common::START, crate::common::START + 86400);
    wxauth::ops::admin::ban(&conn, &Actor::cli(), plain_id, until, None, start).unwrap();
    let response = http
        .get(url("/api/profile"))
        .bearer_auth(plain_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(403, &body), "user_banned");
    assert_eq!(upstream.seen().len(), 3);

    // The backend-side routes are not served to the public.
    for path in ["/v1/auth/forward", "/v1/introspect"] {
        let response = http
            .get(url(path))
            .bearer_auth(plain_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert!(response.headers().get("x-auth-user-id").is_none(), "{path}");
    }

    // The documents a backend verifying access JWTs fetches are wxauth's own (the server
    // runs with `public_url`, so they answer 200), and so is an access JWT.
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json",
    ] {
        let through: Value = http
            .get(url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let direct: Value = server.get(path, None).await.json().await.unwrap();
        assert_eq!(through, direct, "{path}");
        assert!(direct.get("error").is_none(), "{path}: {direct}");
    }
    let response = http
        .post(url("/v1/token"))
        .bearer_auth(&fresh_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
