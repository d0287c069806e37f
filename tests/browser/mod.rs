//! A real headless Chromium, driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`), for the tests whose user is a person in a browser.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// How long a page may take to show what a test waits for.
const PATIENCE: Duration = Duration::from_secs(20);

/// A browser session and the chromedriver behind it; both end when it is dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Ends chromedriver and every Chromium process it started: they share its
    /// process group, and a browser left behind would keep running after the test.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The first of `names` found on `PATH`, or at the given path.
fn find(names: &[&str]) -> Option<PathBuf> {
    for name in names {
        let path = PathBuf::from(name);
        if path.is_absolute() {
            if path.exists() {
                return Some(path);
            }
            continue;
        }
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let candidate = dir.join(name);
            if candidate.exists() {
                return Some(candidate);
            }
        }
    }
    None
}

impl Browser {
    /// Starts chromedriver and a headless Chromium. Without them the test is skipped
    /// with a message, except under `CI`, where that is a failure.
    pub async fn start(test: &str) -> Option<Browser> {
        let driver_bin = find(&["chromedriver", "/usr/bin/chromedriver"]);
        let chromium = find(&["chromium", "/usr/bin/chromium"]);
        let (Some(driver_bin), Some(chromium)) = (driver_bin, chromium) else {
            let message = format!(
                "SKIPPED {test}: needs Chromium and its WebDriver \
                 (apt-get install chromium chromium-driver)"
            );
            assert!(std::env::var_os("CI").is_none(), "{message}");
            eprintln!("{message}");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    // Tests run as root in CI, where Chromium's sandbox cannot start.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if started.elapsed() < PATIENCE => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot start a browser session: {e}"),
            }
        };
        Some(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Waits until the element `css` shows text, and returns it.
    pub async fn text_of(&self, css: &str) -> String {
        let started = Instant::now();
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = element.text().await
                && !text.is_empty()
            {
                return text;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "`{css}` showed no text; the page is at {:?}:\n{}",
                self.client.current_url().await.map(|u| u.to_string()),
                self.client.source().await.unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the element `css` once it is there. An element found on a page that the
    /// browser then leaves is stale: it is looked for again on the new page.
    pub async fn click(&self, css: &str) {
        let started = Instant::now();
        loop {
            let clicked = self
                .client
                .wait()
                .at_most(PATIENCE)
                .for_element(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no `{css}`: {e}"))
                .click()
                .await;
            match clicked {
                Ok(()) => return,
                Err(e) if e.is_stale_element_reference() && started.elapsed() < PATIENCE => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot click `{css}`: {e}"),
            }
        }
    }

    /// Waits until the browser is at a URL that starts with `prefix`.
    pub async fn wait_for_url(&self, prefix: &str) -> String {
        let started = Instant::now();
        loop {
            let url = self.client.current_url().await.unwrap().to_string();
            if url.starts_with(prefix) {
                return url;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the browser stayed at {url}, not {prefix}…"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
