//! Web login over HTTP, as a browser and WeChat drive it: the authorize redirect with
//! its signed state and cookie, WeChat's return, the one-time code, linking with the
//! mini program's user, and every way in which a request is refused before anything
//! is redirected or changed.

mod common;

use common::{TestServer, error_of};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::{Value, json};

const MINI: &str = "wxshop00000000001";
const H5: &str = "wxh5account000001";
const SITE: &str = "wxsite00000000001";
const PUBLIC_URL: &str = "https://auth.example.com";
const PAGE: &str = "https://h5.example.com/app/page?x=1";

async fn server() -> TestServer {
    TestServer::start_with_apps(|wechat| {
        format!(
            "wechat_open_url = \"{wechat}\"\n\
             public_url = \"{PUBLIC_URL}\"\n\
             [[apps]]\nappid = \"{MINI}\"\nsecret = \"s1\"\n\
             [[apps]]\nappid = \"{H5}\"\nsecret = \"s2\"\nkind = \"official_account\"\n\
             redirect_uris = [\"https://h5.example.com/app/\"]\n\
             [[apps]]\nappid = \"{SITE}\"\nsecret = \"s3\"\nkind = \"website\"\n\
             redirect_uris = [\"https://www.example.com/login\"]\n"
        )
    })
    .await
}

/// A client that shows redirects instead of following them, as the tests need to see
/// each hop.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

fn query_of(url: &str) -> Vec<(String, String)> {
    let url = url::Url::parse(url).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param(url: &str, name: &str) -> Option<String> {
    query_of(url)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// What the authorize redirect gave the browser.
struct Started {
    location: String,
    state: String,
    cookie: String,
    set_cookie: String,
}

async fn authorize(server: &TestServer, query: &[(&str, &str)]) -> reqwest::Response {
    browser()
        .get(server.url("/v1/oauth/wechat/authorize"))
        .query(query)
        .send()
        .await
        .unwrap()
}

async fn start(
    server: &TestServer,
    appid: &str,
    redirect_uri: &str,
    scope: Option<&str>,
) -> Started {
    let mut query = vec![
        ("appid", appid),
        ("redirect_uri", redirect_uri),
        ("state", "page-state"),
    ];
    if let Some(scope) = scope {
        query.push(("scope", scope));
    }
    let response = authorize(server, &query).await;
    assert_eq!(response.status(), 302, "{:?}", response.text().await);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let before_fragment = location.trim_end_matches("#wechat_redirect");
    let state = param(before_fragment, "state").unwrap();
    Started {
        location,
        state,
        cookie,
        set_cookie,
    }
}

/// WeChat sends the browser back with `code`.
async fn callback(
    server: &TestServer,
    code: Option<&str>,
    state: Option<&str>,
    cookie: Option<&str>,
) -> reqwest::Response {
    let mut query = Vec::new();
    if let Some(code) = code {
        query.push(("code", code));
    }
    if let Some(state) = state {
        query.push(("state", state));
    }
    let mut request = browser()
        .get(server.url("/v1/oauth/wechat/callback"))
        .query(&query);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    request.send().await.unwrap()
}

/// The page at the end of the redirects.
async fn returned_to(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 302, "{:?}", response.text().await);
    response.headers()[LOCATION].to_str().unwrap().to_owned()
}

async fn exchange(server: &TestServer, code: &str) -> reqwest::Response {
    server
        .post_json("/v1/oauth/token", &json!({ "code": code }), None)
        .await
}

/// A whole web login through `appid` as `code`; returns the token response.
async fn web_login(server: &TestServer, appid: &str, redirect_uri: &str, code: &str) -> Value {
    let started = start(server, appid, redirect_uri, None).await;
    let page = returned_to(
        callback(
            server,
            Some(code),
            Some(&started.state),
            Some(&started.cookie),
        )
        .await,
    )
    .await;
    let one_time = param(&page, "wxauth_code").unwrap_or_else(|| panic!("no code in {page}"));
    let response = exchange(server, &one_time).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn authorize_sends_the_browser_to_wechat_with_a_signed_state_bound_by_a_cookie() {
    let server = server().await;
    let started = start(&server, H5, PAGE, None).await;
    let open = server.mock.base_url();
    assert_eq!(
        started.location,
        format!(
            "{open}/connect/oauth2/authorize?appid={H5}&redirect_uri=https%3A%2F%2Fauth.example.com%2Fv1%2Foauth%2Fwechat%2Fcallback\
             &response_type=code&scope=snsapi_base&state={}#wechat_redirect",
            started.state
        )
    );
    assert!(started.state.len() <= 128 && started.state.bytes().all(|b| b.is_ascii_alphanumeric()));
    for flag in [
        "HttpOnly",
        "SameSite=Lax",
        "Secure",
        "Path=/v1/oauth/wechat/callback",
        "Max-Age=600",
    ] {
        assert!(
            started.set_cookie.contains(flag),
            "{flag}: {}",
            started.set_cookie
        );
    }
    // Only hashes are stored: neither the state nor the cookie is in the database.
    let dump: String = server
        .db()
        .query_row(
            "SELECT hex(state_hash) || hex(browser_hash) || redirect_uri || scope FROM web_logins",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        !dump.contains(&started.state) && !dump.contains(started.cookie.split('=').nth(1).unwrap())
    );
    assert!(
        dump.ends_with("https://h5.example.com/app/page?x=1snsapi_base"),
        "{dump}"
    );

    let site = start(&server, SITE, "https://www.example.com/login", None).await;
    assert!(
        site.location
            .starts_with(&format!("{open}/connect/qrconnect?appid={SITE}&"))
    );
    assert!(site.location.contains("&scope=snsapi_login&"));
    let userinfo = start(&server, H5, PAGE, Some("snsapi_userinfo")).await;
    assert!(userinfo.location.contains("&scope=snsapi_userinfo&"));
}

#[tokio::test]
async fn a_web_login_ends_with_a_one_time_code_that_gives_a_session() {
    let server = server().await;
    let started = start(&server, H5, PAGE, Some("snsapi_userinfo")).await;
    let page = returned_to(
        callback(
            &server,
            Some("dev:lin"),
            Some(&started.state),
            Some(&started.cookie),
        )
        .await,
    )
    .await;
    assert!(
        page.starts_with("https://h5.example.com/app/page?x=1&wxauth_code="),
        "{page}"
    );
    assert_eq!(param(&page, "state").as_deref(), Some("page-state"));
    let code = param(&page, "wxauth_code").unwrap();

    let response = exchange(&server, &code).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["new_user"], true);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["user"]["appid"], H5);
    assert_eq!(
        body["user"]["nickname"], "lin",
        "snsapi_userinfo fills the nickname"
    );
    assert!(
        body["user"]["avatar_url"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    let token = body["token"].as_str().unwrap();
    let session = server.session_of(token).await;
    assert_eq!(session["user"]["id"], body["user"]["id"]);

    // A lost answer can be asked for again within the minute: the same session.
    let again: Value = exchange(&server, &code).await.json().await.unwrap();
    assert_eq!(again["user"]["id"], body["user"]["id"]);
    let first = server.session_of(token).await;
    let second: Value = server
        .get("/v1/session", Some(again["token"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["session"]["id"], second["session"]["id"]);
    assert_eq!(server.count("sessions"), 1);
    server.clock.advance(std::time::Duration::from_secs(61));
    assert_eq!(
        error_of(exchange(&server, &code).await).await,
        (400, "invalid_code".into())
    );

    // The state was used once; WeChat's return cannot be replayed.
    let replay = callback(
        &server,
        Some("dev:lin"),
        Some(&started.state),
        Some(&started.cookie),
    )
    .await;
    assert_eq!(error_of(replay).await, (400, "invalid_state".into()));
}

#[tokio::test]
async fn wechat_fills_only_what_the_user_has_not_set() {
    let server = server().await;
    let first = web_login(&server, H5, PAGE, "dev:mo").await;
    let token = first["token"].as_str().unwrap();
    let response = server
        .patch_me(token, &json!({"nickname": "Mo's own"}))
        .await;
    assert_eq!(response.status(), 200);
    let started = start(&server, H5, PAGE, Some("snsapi_userinfo")).await;
    let page = returned_to(
        callback(
            &server,
            Some("dev:mo"),
            Some(&started.state),
            Some(&started.cookie),
        )
        .await,
    )
    .await;
    let body: Value = exchange(&server, &param(&page, "wxauth_code").unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["new_user"], false);
    assert_eq!(body["user"]["nickname"], "Mo's own");
    assert!(
        body["user"]["avatar_url"].is_string(),
        "the avatar was empty, so it is filled"
    );
}

#[tokio::test]
async fn the_mini_programs_user_logs_in_on_the_web_as_the_same_user() {
    let server = server().await;
    let mini: Value = server
        .post_json(
            "/v1/login",
            &json!({"code": "dev:nia", "appid": MINI}),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let web = web_login(
        &server,
        SITE,
        "https://www.example.com/login?next=/cart",
        "dev:nia",
    )
    .await;
    assert_eq!(web["new_user"], false);
    assert_eq!(web["user"]["id"], mini["user"]["id"]);
    assert_eq!(web["user"]["appid"], SITE);
    assert_eq!(web["user"]["apps"], json!([MINI, SITE]));
    let forward = server
        .get("/v1/auth/forward", Some(web["token"].as_str().unwrap()))
        .await;
    assert_eq!(forward.headers()["x-auth-appid"], SITE);

    // A person without a unionid is a user of their own.
    let alone = web_login(&server, H5, PAGE, "nounion:nia").await;
    assert_eq!(alone["new_user"], true);
    assert_ne!(alone["user"]["id"], mini["user"]["id"]);
}

#[tokio::test]
async fn a_state_that_does_not_check_out_is_refused_and_changes_nothing() {
    let server = server().await;
    let started = start(&server, H5, PAGE, None).await;
    let mut forged = started.state.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == '0' { '1' } else { '0' });
    let before = server.snapshot();
    for (what, state, cookie) in [
        ("no state", None, Some(started.cookie.as_str())),
        (
            "a forged state",
            Some(forged.as_str()),
            Some(started.cookie.as_str()),
        ),
        ("no cookie", Some(started.state.as_str()), None),
        (
            "another browser's cookie",
            Some(started.state.as_str()),
            Some("wxauth_web_login=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ),
        (
            "a cookie of the wrong shape",
            Some(started.state.as_str()),
            Some("wxauth_web_login=x"),
        ),
        (
            "a state of the wrong shape",
            Some("abc"),
            Some(started.cookie.as_str()),
        ),
    ] {
        let response = callback(&server, Some("dev:oz"), state, cookie).await;
        assert!(response.headers().get(LOCATION).is_none(), "{what}");
        assert_eq!(
            error_of(response).await,
            (400, "invalid_state".into()),
            "{what}"
        );
    }
    assert_eq!(server.snapshot(), before);
    let used: i64 = server
        .db()
        .query_row(
            "SELECT count(*) FROM web_logins WHERE used_at IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(used, 0, "a refused callback spends no state");

    server.clock.advance(std::time::Duration::from_secs(601));
    let late = callback(
        &server,
        Some("dev:oz"),
        Some(&started.state),
        Some(&started.cookie),
    )
    .await;
    assert_eq!(
        error_of(late).await,
        (400, "invalid_state".into()),
        "expired"
    );
}

#[tokio::test]
async fn one_browser_keeps_its_binding_across_logins() {
    let server = server().await;
    let first = start(&server, H5, PAGE, None).await;
    let response = browser()
        .get(server.url("/v1/oauth/wechat/authorize"))
        .query(&[("appid", H5), ("redirect_uri", PAGE)])
        .header(COOKIE, &first.cookie)
        .send()
        .await
        .unwrap();
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap();
    assert!(
        set_cookie.starts_with(&format!("{};", first.cookie)),
        "{set_cookie}"
    );
    let second_state = param(
        response.headers()[LOCATION]
            .to_str()
            .unwrap()
            .trim_end_matches("#wechat_redirect"),
        "state",
    )
    .unwrap();
    // Two tabs, one cookie: both logins complete.
    for state in [&first.state, &second_state] {
        let page =
            returned_to(callback(&server, Some("dev:pia"), Some(state), Some(&first.cookie)).await)
                .await;
        assert!(param(&page, "wxauth_code").is_some(), "{page}");
    }
}

#[tokio::test]
async fn no_redirect_goes_anywhere_the_app_does_not_list() {
    let server = server().await;
    let before = server.snapshot();
    for candidate in [
        "https://h5.example.com.evil.com/app/",
        "https://h5.example.com@evil.com/app/",
        "https://evil.com@h5.example.com/app/",
        "//evil.com",
        "//h5.example.com/app/",
        "https:evil.com",
        "https:\\\\evil.com",
        "https://h5.example.com\\@evil.com/app/",
        "https://h5.example.com/app/..%2F..%2Fevil",
        "https://h5.example.com/app%2F..%2Fother",
        "https://h5.example.com/app/%2e%2e/other",
        "https://h5.example.com/app/../other",
        "https://h5.example.com:8443/app/",
        "http://h5.example.com/app/",
        "https://h5.example.com/other/",
        "https://h5.example.com/application",
        "https://h5.example.com/app",
        "https://h5.example.com/app/#fragment",
        "javascript:alert(1)",
        "https://h5.example.com/app/\n",
        "",
    ] {
        let response = authorize(&server, &[("appid", H5), ("redirect_uri", candidate)]).await;
        assert!(response.headers().get(LOCATION).is_none(), "{candidate:?}");
        assert!(
            response.headers().get(SET_COOKIE).is_none(),
            "{candidate:?}"
        );
        assert_eq!(
            error_of(response).await,
            (400, "redirect_not_allowed".into()),
            "{candidate:?}"
        );
    }
    // The website's entry has no trailing slash: the path itself and below it.
    for candidate in [
        "https://www.example.com/login/",
        "https://www.example.com/loginx",
    ] {
        let response = authorize(&server, &[("appid", SITE), ("redirect_uri", candidate)]).await;
        let allowed = response.status() == 302;
        assert_eq!(allowed, candidate.ends_with('/'), "{candidate}");
    }
    server
        .db_rw()
        .execute("DELETE FROM web_logins", [])
        .unwrap();
    assert_eq!(server.snapshot(), before);
}

#[tokio::test]
async fn bad_authorize_requests_answer_in_the_error_shape() {
    let server = server().await;
    let long_state = "s".repeat(129);
    for (query, expected) in [
        (
            vec![("appid", "wxnobody000000000"), ("redirect_uri", PAGE)],
            (400, "unknown_app"),
        ),
        (
            vec![("appid", MINI), ("redirect_uri", PAGE)],
            (400, "invalid_request"),
        ),
        (vec![("redirect_uri", PAGE)], (400, "invalid_request")),
        (vec![("appid", H5)], (400, "invalid_request")),
        (
            vec![
                ("appid", H5),
                ("redirect_uri", PAGE),
                ("scope", "snsapi_login"),
            ],
            (400, "invalid_request"),
        ),
        (
            vec![
                ("appid", SITE),
                ("redirect_uri", "https://www.example.com/login"),
                ("scope", "snsapi_userinfo"),
            ],
            (400, "invalid_request"),
        ),
        (
            vec![
                ("appid", H5),
                ("redirect_uri", PAGE),
                ("state", long_state.as_str()),
            ],
            (400, "invalid_request"),
        ),
        (
            vec![("appid", H5), ("redirect_uri", PAGE), ("state", "a\u{7}b")],
            (400, "invalid_request"),
        ),
        (
            vec![("appid", H5), ("redirect_uri", PAGE), ("extra", "1")],
            (400, "invalid_request"),
        ),
        (
            vec![("appid", H5), ("appid", H5), ("redirect_uri", PAGE)],
            (400, "invalid_request"),
        ),
    ] {
        let response = authorize(&server, &query).await;
        assert!(response.headers().get(LOCATION).is_none(), "{query:?}");
        assert_eq!(
            error_of(response).await,
            (expected.0, expected.1.to_owned()),
            "{query:?}"
        );
    }
    assert_eq!(server.count("web_logins"), 0);
    // A state of 128 characters of any kind is fine.
    let fine = authorize(
        &server,
        &[
            ("appid", H5),
            ("redirect_uri", PAGE),
            ("state", &"状".repeat(128)),
        ],
    )
    .await;
    assert_eq!(fine.status(), 302);
}

#[tokio::test]
async fn failures_after_the_state_checked_out_go_back_to_the_page() {
    let server = server().await;
    for (code, error) in [
        (Some("fail:40029"), "invalid_code"),
        (Some("fail:40163"), "invalid_code"),
        (Some("fail:40226"), "login_blocked"),
        (Some("fail:45011"), "rate_limited"),
        (Some("snapshot:qi"), "snapshot_user"),
        (None, "invalid_request"),
    ] {
        let started = start(&server, H5, PAGE, None).await;
        let page =
            returned_to(callback(&server, code, Some(&started.state), Some(&started.cookie)).await)
                .await;
        assert_eq!(
            param(&page, "error").as_deref(),
            Some(error),
            "{code:?}: {page}"
        );
        assert_eq!(param(&page, "state").as_deref(), Some("page-state"));
        assert!(param(&page, "wxauth_code").is_none());
    }
    assert_eq!(
        server.count("users"),
        0,
        "a snapshot page's user is not created"
    );
    assert_eq!(server.count("sessions"), 0);

    // A banned user is sent back with `user_banned`.
    let first = web_login(&server, H5, PAGE, "dev:ren").await;
    let user = first["user"]["id"].as_str().unwrap().to_owned();
    server
        .db_rw()
        .execute(
            "UPDATE users SET banned_until = ?1 WHERE public_id = ?2",
            rusqlite::params![common::START + 86400, user],
        )
        .unwrap();
    let started = start(&server, H5, PAGE, None).await;
    let page = returned_to(
        callback(
            &server,
            Some("dev:ren"),
            Some(&started.state),
            Some(&started.cookie),
        )
        .await,
    )
    .await;
    assert_eq!(
        param(&page, "error").as_deref(),
        Some("user_banned"),
        "{page}"
    );
}

#[tokio::test]
async fn bad_token_requests_are_refused() {
    let server = server().await;
    for (body, expected) in [
        (json!({}), (400, "invalid_request")),
        (json!({"code": 5}), (400, "invalid_request")),
        (json!({"code": "x", "more": 1}), (400, "invalid_request")),
        (json!({"code": "not-a-code"}), (400, "invalid_code")),
        (json!({"code": "A".repeat(43)}), (400, "invalid_code")),
    ] {
        let response = server.post_json("/v1/oauth/token", &body, None).await;
        assert_eq!(
            error_of(response).await,
            (expected.0, expected.1.to_owned()),
            "{body}"
        );
    }
    let response = server
        .http
        .post(server.url("/v1/oauth/token"))
        .body("code=abc")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(response).await,
        (415, "unsupported_media_type".into())
    );
    // A web app's AppID is not a mini program's.
    let response = server
        .post_json("/v1/login", &json!({"code": "dev:x", "appid": H5}), None)
        .await;
    assert_eq!(error_of(response).await, (400, "unknown_app".into()));
}

#[tokio::test]
async fn without_public_url_there_is_no_web_login() {
    let server = TestServer::start().await;
    for path in [
        "/v1/oauth/wechat/authorize?appid=x&redirect_uri=y",
        "/v1/oauth/wechat/callback?state=x",
    ] {
        let response = browser().get(server.url(path)).send().await.unwrap();
        let (status, code) = error_of(response).await;
        assert_eq!((status, code.as_str()), (404, "not_found"), "{path}");
    }
    let response = exchange(&server, "x").await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("public_url")
    );
}
