//! Log lines as an operator sees them from the real binary: JSON with
//! `--log-format json`, human text with `--log-format text`, and every line a request
//! causes carrying its request id, which the response echoes in `X-Request-Id`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A `wxauth serve --dev` child with its stderr lines arriving on a channel.
struct Server {
    child: Child,
    lines: Receiver<String>,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(data_dir: &Path, format: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wxauth"))
            .env_clear()
            .env("WXAUTH_DATA_DIR", data_dir)
            .env("WXAUTH_LOG", "info")
            .args([
                "serve",
                "--dev",
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                format,
            ])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut server = Server {
            child,
            lines,
            addr: String::new(),
        };
        let serving = server.wait_for(|l| l.contains("wxauth is serving"));
        let at = serving.find("127.0.0.1:").expect("the address is logged");
        server.addr = serving[at..]
            .split(|c: char| c == '"' || c.is_whitespace())
            .next()
            .unwrap()
            .to_owned();
        server
    }

    /// The first line from now on that `wanted` accepts, within ten seconds.
    fn wait_for(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .expect("the awaited log line never came");
            if wanted(&line) {
                return line;
            }
        }
    }

    /// POSTs a login with `dev:<name>` and an optional request id; returns the
    /// response's `X-Request-Id`.
    fn login(&self, name: &str, request_id: Option<&str>) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            wxauth::wechat::client::install_crypto_provider();
            let mut request = reqwest::Client::new()
                .post(format!("http://{}/v1/login", self.addr))
                .json(&serde_json::json!({ "code": format!("dev:{name}") }));
            if let Some(id) = request_id {
                request = request.header("x-request-id", id);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned()
        })
    }
}

#[test]
fn json_logs_carry_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "json");

    let echoed = server.login("lou", Some("trace-7f3a"));
    assert_eq!(echoed, "trace-7f3a");
    let line = server.wait_for(|l| l.contains("\"login\""));
    let entry: Value = serde_json::from_str(&line).expect("every line is JSON");
    assert_eq!(entry["fields"]["message"], "login");
    assert_eq!(entry["level"], "INFO");
    assert_eq!(entry["span"]["name"], "request");
    assert_eq!(entry["span"]["request_id"], "trace-7f3a");
    assert_eq!(entry["span"]["route"], "/v1/login");
    assert_eq!(entry["span"]["method"], "POST");
    assert!(entry["timestamp"].is_string());

    // An id with characters unsafe in a log line is replaced by a generated one.
    let generated = server.login("max", Some("evil\"id injected=1"));
    assert_ne!(generated, "evil\"id injected=1");
    assert!(generated.len() == 20 && generated.bytes().all(|b| b.is_ascii_hexdigit()));
    let line = server.wait_for(|l| l.contains("\"login\""));
    let entry: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["span"]["request_id"], generated.as_str());
    assert!(!line.contains("injected"));
}

#[test]
fn text_logs_name_the_request_id_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "text");
    let id = server.login("ned", None);
    let line = server.wait_for(|l| l.contains(" login "));
    assert!(serde_json::from_str::<Value>(&line).is_err(), "{line}");
    assert!(line.contains(&format!("request_id={id}")), "{line}");
    assert!(line.contains("route=/v1/login"), "{line}");
}
