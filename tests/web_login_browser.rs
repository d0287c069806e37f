//! The H5 example page in a real headless Chromium against `wxauth serve --dev`: a person
//! clicks "Log in with WeChat", picks a name on the fake WeChat's authorize page, and
//! lands back on the page logged in, with a token the API accepts. Then the same person
//! logs in on the website page through the QR login page and is the same user.

mod browser;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use browser::Browser;
use fantoccini::Locator;
use serde_json::Value;

/// `wxauth serve --dev` on a free port; returns the process and its address.
fn serve_dev(data_dir: &std::path::Path) -> (Child, String) {
    let binary = std::env::var("TEST_WXAUTH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_wxauth").to_owned());
    let mut child = Command::new(binary)
        .args([
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WXAUTH_DATA_DIR", data_dir)
        .env("WXAUTH_LOG", "warn,wxauth::cli=info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wxauth serve --dev did not start");
        };
        if let Ok(entry) = serde_json::from_str::<Value>(&line)
            && entry["fields"]["message"] == "wxauth is serving"
        {
            return (child, entry["fields"]["addr"].as_str().unwrap().to_owned());
        }
    }
}

struct Stop(Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Logs in on the example page through `surface` as `name`; returns the user id the
/// page shows.
async fn log_in(browser: &Browser, page: &str, surface: &str, name: &str) -> String {
    let client = &browser.client;
    client.goto(page).await.unwrap();
    client
        .wait()
        .for_element(Locator::Css("#surface"))
        .await
        .unwrap()
        .select_by_value(surface)
        .await
        .unwrap();
    browser.click("#login").await;
    // The fake WeChat's page: pick a name and allow.
    let name_field = client
        .wait()
        .for_element(Locator::Css("input#name"))
        .await
        .unwrap();
    name_field.clear().await.unwrap();
    name_field.send_keys(name).await.unwrap();
    browser.click("button#login").await;
    browser.wait_for_url(page).await;
    browser.text_of("#user-id").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_logs_in_on_the_example_page_and_the_token_works() {
    let Some(browser) = Browser::start("web login in a browser").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = serve_dev(dir.path());
    let _server = Stop(child);
    let page = format!("http://{addr}/dev/h5/");

    let user = log_in(&browser, &page, "official_account", "mei").await;
    assert!(user.starts_with("u_"), "{user}");
    assert_eq!(browser.text_of("#nickname").await, "mei");
    assert_eq!(browser.text_of("#appid").await, "wxdevofficial0000");
    let url = browser.client.current_url().await.unwrap();
    assert!(
        url.query().is_none(),
        "the spent code is not left in the address: {url}"
    );

    // The token the page holds is one the API accepts.
    let token = browser
        .client
        .execute("return localStorage.getItem('wxauth_token')", vec![])
        .await
        .unwrap();
    let token = token.as_str().unwrap();
    wxauth::wechat::client::install_crypto_provider();
    let http = reqwest::Client::new();
    let session: Value = http
        .get(format!("http://{addr}/v1/session"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["user"]["id"], user.as_str(), "{session}");

    // On the website, through the QR login page, the same person is the same user.
    browser.click("#logout").await;
    let again = log_in(&browser, &page, "website", "mei").await;
    assert_eq!(again, user);
    assert_eq!(
        browser.text_of("#apps").await,
        "wxdevofficial0000, wxdevwebsite00000"
    );
    let revoked = http
        .get(format!("http://{addr}/v1/session"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        revoked.status(),
        401,
        "logging out on the page ended the first session"
    );
}
