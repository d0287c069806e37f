//! The admin console in a real headless Chromium: an admin signs in through the setup
//! link the command line printed, finds a user by openid, revokes a session, bans and
//! unbans, creates a service key, rotates the keys, and finds it all in the audit log.
//! Forged changes (another origin, no CSRF token), password guessing, and cookies and
//! API tokens standing in for each other are refused. The run's screenshots of the
//! overview and of a user's page are those in `docs/images/`: run with
//! `TEST_SCREENSHOT_DIR=docs/images` to renew them.

mod browser;
mod common;

use std::path::PathBuf;
use std::time::Duration;

use browser::Browser;
use common::TestServer;
use fantoccini::Locator;
use serde_json::json;
use tokio::net::TcpListener;
use warp::Filter;
use warp::reply::Reply;
use wxauth::clock::Clock;

const PASSWORD: &str = "correct horse battery staple";

/// Types `text` into the field `css`, replacing what it held.
async fn fill(browser: &Browser, css: &str, text: &str) {
    let field = browser
        .client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}`: {e}"));
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

/// Waits until the element `css` shows text containing `needle`.
async fn wait_for_text(browser: &Browser, css: &str, needle: &str) {
    let started = std::time::Instant::now();
    loop {
        let text = browser.text_of(css).await;
        if text.contains(needle) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "`{css}` shows {text:?}, not {needle:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The page's visible text.
async fn page_text(browser: &Browser) -> String {
    browser.text_of("body").await
}

/// Saves a screenshot of the page as NAME in `TEST_SCREENSHOT_DIR`, or else in the
/// target directory's `console-screenshots`: the tests leave the tracked pictures alone
/// unless asked (`TEST_SCREENSHOT_DIR=docs/images` renews them).
async fn screenshot(browser: &Browser, name: &str) {
    let png = browser.client.screenshot().await.unwrap();
    let dir = std::env::var_os("TEST_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

/// Clicks the button `css` inside a form that asks for confirmation, and confirms.
async fn click_and_confirm(browser: &Browser, css: &str) {
    browser.click(css).await;
    browser.client.accept_alert().await.unwrap();
}

/// The status `GET /v1/session` answers for `token`.
async fn session_status(server: &TestServer, token: &str) -> u16 {
    server
        .get("/v1/session", Some(token))
        .await
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_manages_users_and_keys_in_a_browser() {
    let Some(browser) = Browser::start("an_admin_manages_users_and_keys_in_a_browser").await else {
        return;
    };
    let server = TestServer::start().await;
    // Two weeks of logins, a day at a time, for the overview's chart.
    for day in 0..14u64 {
        for n in 0..(day * 7 % 5 + 1) {
            server.login_ok(&format!("dev:day{day}-{n}")).await;
        }
        server.clock.advance(Duration::from_secs(86_400));
    }
    let phone = server.token("dev:mei#phone").await;
    let laptop = server.token("dev:mei#laptop").await;
    let named = server
        .patch_me(
            &laptop,
            &json!({ "nickname": "Mei", "gender": 2, "city": "Hangzhou" }),
        )
        .await;
    assert_eq!(named.status(), 200);
    let (user, openid, phone_session): (String, String, String) = server
        .db()
        .query_row(
            "SELECT u.public_id, i.openid, s.public_id FROM users u \
             JOIN identities i ON i.user_id = u.id JOIN sessions s ON s.user_id = u.id \
             ORDER BY u.id DESC, s.id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    // The server's clock is two weeks on from the command line's, so the link is made
    // as `wxauth admins create` makes it, at the server's time.
    let link = {
        let conn = server.db_rw();
        let link = wxauth::ops::admins::create(
            &conn,
            &wxauth::ops::audit::Actor::cli(),
            "alice",
            server.clock.now(),
        )
        .unwrap();
        server.url(&format!("/admin/setup?token={}", link.secret.expose()))
    };
    let client = &browser.client;

    // Sign in through the setup link.
    client.goto(link.trim()).await.unwrap();
    fill(&browser, "input[name=password]", PASSWORD).await;
    fill(&browser, "input[name=again]", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser
        .wait_for_url(&format!("{}/admin/", server.base))
        .await;
    assert!(browser.text_of("#users").await.parse::<i64>().unwrap() > 20);
    screenshot(&browser, "console-overview.png").await;

    // Find the user by openid.
    browser.click("nav a[href='/admin/users']").await;
    fill(&browser, "input[name=q]", &openid).await;
    browser.click("form.search button").await;
    // The list before the search links to the user too: click on the search's answer.
    browser
        .wait_for_url(&format!("{}/admin/users?q=", server.base))
        .await;
    browser
        .click(&format!("a[href='/admin/users/{user}']"))
        .await;
    assert_eq!(browser.text_of("#user-id").await, user);
    assert!(page_text(&browser).await.contains(&openid));
    // Tall enough for the sessions.
    client.set_window_size(1280, 1500).await.unwrap();
    screenshot(&browser, "console-user.png").await;
    client.set_window_size(1280, 900).await.unwrap();

    // Revoke the phone's session: its token is refused at once, the laptop's is not.
    click_and_confirm(&browser, &format!("tr[id='{phone_session}'] button")).await;
    browser
        .wait_for_url(&format!("{}/admin/users/{user}", server.base))
        .await;
    assert_eq!(session_status(&server, &phone).await, 401);
    assert_eq!(session_status(&server, &laptop).await, 200);

    // Ban with a reason, then unban.
    fill(&browser, "input[name=reason]", "spam").await;
    fill(&browser, "input[name=until]", "7d").await;
    browser.click("#ban-button").await;
    wait_for_text(&browser, "#ban-state", "spam").await;
    assert_eq!(session_status(&server, &laptop).await, 403);
    browser.click("#unban").await;
    wait_for_text(&browser, "#ban-state", "Not banned").await;
    assert_eq!(session_status(&server, &laptop).await, 200);

    // Create a service key: shown once, gone on the next visit.
    browser.click("nav a[href='/admin/service-keys']").await;
    fill(&browser, "input[name=name]", "billing").await;
    browser
        .click("form[action='/admin/service-keys'] button")
        .await;
    let key = browser.text_of("#new-key").await;
    assert!(key.starts_with("wxsk_"), "{key}");
    client
        .goto(&server.url("/admin/service-keys"))
        .await
        .unwrap();
    assert!(!page_text(&browser).await.contains(&key));
    let introspect = server
        .http
        .post(server.url("/v1/introspect"))
        .bearer_auth(&key)
        .json(&json!({ "token": laptop }))
        .send()
        .await
        .unwrap();
    assert_eq!(introspect.status(), 200);

    // Rotate the keys.
    browser.click("nav a[href='/admin/keys']").await;
    let before = client
        .find_all(Locator::Css("tbody tr"))
        .await
        .unwrap()
        .len();
    browser.click("#rotate").await;
    // A new session-token key, and a new next JWT key.
    let started = std::time::Instant::now();
    loop {
        let rows = client
            .find_all(Locator::Css("tbody tr"))
            .await
            .unwrap()
            .len();
        if rows == before + 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{rows} keys after rotating, {before} before"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every change is in the audit log, with who made it and from where.
    browser.click("nav a[href='/admin/audit']").await;
    let log = page_text(&browser).await;
    for action in [
        "session.revoke",
        "user.ban",
        "user.unban",
        "service_key.create",
        "keys.rotate",
        "admin.create",
    ] {
        assert!(log.contains(action), "{action} is not in:\n{log}");
    }
    assert!(log.contains("console:alice") && log.contains("127.0.0.1"));
    assert!(log.contains("cli:"));

    // At a phone's width, nothing is wider than the screen.
    client.set_window_size(390, 844).await.unwrap();
    for path in ["/admin/", &format!("/admin/users/{user}"), "/admin/audit"] {
        client.goto(&server.url(path)).await.unwrap();
        let fits = client
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(fits, json!(true), "{path} is wider than a phone");
    }
    client.set_window_size(1280, 900).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_changes_guessing_and_swapped_credentials_are_refused_in_a_browser() {
    let Some(browser) =
        Browser::start("forged_changes_guessing_and_swapped_credentials_are_refused_in_a_browser")
            .await
    else {
        return;
    };
    let server = TestServer::start().await;
    let token = server.token("dev:mei").await;
    let user: String = server
        .db()
        .query_row("SELECT public_id FROM users", [], |r| r.get(0))
        .unwrap();
    let link = server.cli(&[], &["admins", "create", "alice"]);
    let client = &browser.client;
    client.goto(link.trim()).await.unwrap();
    fill(&browser, "input[name=password]", PASSWORD).await;
    fill(&browser, "input[name=again]", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.text_of("#users").await;
    let banned = || async {
        server
            .db()
            .query_row("SELECT banned_until IS NOT NULL FROM users", [], |r| {
                r.get::<_, bool>(0)
            })
            .unwrap()
    };

    // A page on another origin that posts the ban form, even with a valid token.
    client
        .goto(&server.url(&format!("/admin/users/{user}")))
        .await
        .unwrap();
    let csrf = client
        .find(Locator::Css("form[action$='/ban'] input[name=csrf]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    let target = server.url(&format!("/admin/users/{user}/ban"));
    let evil = format!(
        "<form method=post action='{target}'><input name=csrf value='{csrf}'>\
         <input name=reason value=forged></form><script>document.forms[0].submit()</script>"
    );
    let page = warp::any().map(move || warp::reply::html(evil.clone()).into_response());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil_addr = listener.local_addr().unwrap();
    tokio::spawn(wxauth::http::server::serve(
        listener,
        page,
        wxauth::http::server::ConnectionLimits::default(),
        std::future::pending(),
    ));
    client.goto(&format!("http://{evil_addr}/")).await.unwrap();
    browser.wait_for_url(&target).await;
    assert!(page_text(&browser).await.contains("refused"));
    assert!(!banned().await);

    // The console's own form without its CSRF token.
    client
        .goto(&server.url(&format!("/admin/users/{user}")))
        .await
        .unwrap();
    client
        .execute(
            "const form = document.querySelector(\"form[action$='/ban']\");\
             form.querySelector('input[name=csrf]').remove(); form.submit();",
            vec![],
        )
        .await
        .unwrap();
    browser.wait_for_url(&target).await;
    assert!(page_text(&browser).await.contains("refused"));
    assert!(!banned().await);

    // The console cookie is not an API token, sent as a cookie or as a bearer token.
    let fetched = client
        .execute_async(
            "const done = arguments[0]; \
             fetch('/v1/session', { credentials: 'include' }).then(r => done(r.status));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fetched, json!(401));
    let cookies = client.get_all_cookies().await.unwrap();
    let console_cookie = cookies
        .iter()
        .find(|c| c.name() == "wxauth_console")
        .expect("the console cookie");
    assert!(console_cookie.http_only().unwrap_or(false));
    assert_eq!(session_status(&server, console_cookie.value()).await, 401);

    // Sign out; an API token set as the console cookie opens nothing.
    client.goto(&server.url("/admin/")).await.unwrap();
    browser.click("header form button").await;
    browser.wait_for_url(&server.url("/admin/sign-in")).await;
    client
        .execute(
            "document.cookie = 'wxauth_console=' + arguments[0] + '; path=/';",
            vec![json!(token)],
        )
        .await
        .unwrap();
    client.goto(&server.url("/admin/")).await.unwrap();
    browser.wait_for_url(&server.url("/admin/sign-in")).await;

    // Wrong passwords: after five tries for a name, even the right one is refused.
    for _ in 0..5 {
        fill(&browser, "input[name=name]", "alice").await;
        fill(&browser, "input[name=password]", "not the password").await;
        browser.click("button[type=submit]").await;
        wait_for_text(&browser, ".error", "Wrong name or password").await;
        client.goto(&server.url("/admin/sign-in")).await.unwrap();
    }
    fill(&browser, "input[name=name]", "alice").await;
    fill(&browser, "input[name=password]", PASSWORD).await;
    browser.click("button[type=submit]").await;
    wait_for_text(&browser, ".error", "Too many sign-in attempts").await;
}
