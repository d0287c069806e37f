//! The web login's side of WeChat, against the fake: the client's
//! `sns/oauth2/access_token` and `sns/userinfo` calls, and the fake's authorize pages as
//! a browser meets them.

use std::time::Duration;

use reqwest::redirect::Policy;
use wxauth::config::{AppConfig, AppKind};
use wxauth::keys::secret::Secret;
use wxauth::wechat::client::{WeChatClient, WeChatError};
use wxauth::wechat::fake::MockWeChat;

const H5: &str = "wxh5test000000001";
const SITE: &str = "wxsitetest0000001";
const MINI: &str = "wxminitest0000001";

fn app(appid: &str, kind: AppKind) -> AppConfig {
    AppConfig {
        appid: appid.to_owned(),
        name: appid.to_owned(),
        kind,
        redirect_uris: Vec::new(),
        secret: Secret::new("web-test-secret".to_owned()),
        content_check: false,
    }
}

async fn start() -> (MockWeChat, WeChatClient) {
    let mock = MockWeChat::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = WeChatClient::new(
        &mock.base_url(),
        Duration::from_secs(1),
        Duration::from_secs(2),
    )
    .unwrap();
    (mock, client)
}

/// A browser that shows redirects instead of following them.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn one_person_has_an_openid_per_app_and_one_unionid() {
    let (mock, client) = start().await;
    let h5 = client
        .oauth_access_token(&app(H5, AppKind::OfficialAccount), "dev:alice")
        .await
        .unwrap();
    let site = client
        .oauth_access_token(&app(SITE, AppKind::Website), "dev:alice#2")
        .await
        .unwrap();
    let mini = client
        .code2session(&app(MINI, AppKind::MiniProgram), "dev:alice")
        .await
        .unwrap();
    assert_ne!(h5.openid, site.openid);
    assert_ne!(h5.openid, mini.openid);
    assert!(h5.unionid.is_some());
    assert_eq!(h5.unionid, site.unionid);
    assert_eq!(h5.unionid, mini.unionid);
    assert_eq!(h5.scope, "snsapi_userinfo");
    assert!(!h5.is_snapshot_user);
    let again = client
        .oauth_access_token(&app(H5, AppKind::OfficialAccount), "dev:alice")
        .await
        .unwrap();
    assert_eq!(again.openid, h5.openid, "dev codes are reusable and stable");
    assert!(
        !format!("{h5:?}").contains(h5.access_token.expose()),
        "the web access_token stays out of Debug"
    );
    assert_eq!(mock.web_token_calls(), 3);
}

#[tokio::test]
async fn snapshot_and_unionless_users() {
    let (_mock, client) = start().await;
    let h5 = app(H5, AppKind::OfficialAccount);
    let snapshot = client
        .oauth_access_token(&h5, "snapshot:bob")
        .await
        .unwrap();
    assert!(snapshot.is_snapshot_user);
    assert_eq!(snapshot.unionid, None);
    assert_eq!(snapshot.scope, "snsapi_base");
    let bob = client.oauth_access_token(&h5, "dev:bob").await.unwrap();
    assert_ne!(
        snapshot.openid, bob.openid,
        "a snapshot's openid is virtual"
    );
    let plain = client
        .oauth_access_token(&h5, "nounion:carol")
        .await
        .unwrap();
    assert_eq!(plain.unionid, None);
    assert!(!plain.is_snapshot_user);
}

#[tokio::test]
async fn code_errors_map_as_for_the_mini_program_login() {
    let (mock, client) = start().await;
    let h5 = app(H5, AppKind::OfficialAccount);
    for (code, expected) in [
        ("fail:40029", WeChatError::InvalidCode(40029)),
        ("fail:40163", WeChatError::InvalidCode(40163)),
        ("fail:40226", WeChatError::LoginBlocked),
        ("fail:45011", WeChatError::RateLimited),
        ("fail:40125", WeChatError::Unusable("errcode 40125".into())),
        ("fail:40013", WeChatError::Unusable("errcode 40013".into())),
    ] {
        let err = client.oauth_access_token(&h5, code).await.unwrap_err();
        assert_eq!(err, expected, "{code}");
    }
    let once = client
        .oauth_access_token(&h5, "real-looking-code")
        .await
        .unwrap();
    assert_eq!(once.unionid, None);
    assert_eq!(
        client
            .oauth_access_token(&h5, "real-looking-code")
            .await
            .unwrap_err(),
        WeChatError::InvalidCode(40163),
        "other codes work once, like WeChat's"
    );
    let before = mock.web_token_calls();
    let busy = client
        .oauth_access_token(&h5, "busy:2:dev:dora")
        .await
        .unwrap();
    assert!(busy.unionid.is_some());
    assert_eq!(mock.web_token_calls() - before, 3, "-1 is retried");
    let err = client
        .oauth_access_token(&h5, "busy:1000:dev:dora")
        .await
        .unwrap_err();
    assert!(matches!(err, WeChatError::Unavailable(_)), "{err:?}");
    let err = client.oauth_access_token(&h5, "garbage").await.unwrap_err();
    assert!(matches!(err, WeChatError::Unusable(_)), "{err:?}");
    assert!(
        !err.to_string().contains("web-test-secret"),
        "errors never carry the AppSecret"
    );
}

#[tokio::test]
async fn userinfo_gives_the_name_avatar_and_unionid() {
    let (mock, client) = start().await;
    let h5 = app(H5, AppKind::OfficialAccount);
    let token = client.oauth_access_token(&h5, "dev:erin").await.unwrap();
    let info = client
        .userinfo(&token.access_token, &token.openid)
        .await
        .unwrap();
    assert_eq!(info.nickname, "erin");
    assert!(info.headimgurl.as_deref().unwrap().starts_with("https://"));
    assert_eq!(info.unionid, token.unionid);

    let plain = client
        .oauth_access_token(&h5, "nounion:erin")
        .await
        .unwrap();
    let info = client
        .userinfo(&plain.access_token, &plain.openid)
        .await
        .unwrap();
    assert_eq!(info.unionid, None);

    let err = client
        .userinfo(&Secret::new("never-issued".into()), &token.openid)
        .await
        .unwrap_err();
    assert_eq!(err, WeChatError::AccessTokenRejected(40001));
    let err = client
        .userinfo(&token.access_token, "o-someone-else")
        .await
        .unwrap_err();
    assert_eq!(err, WeChatError::Unusable("errcode 40003".into()));
    let snapshot = client
        .oauth_access_token(&h5, "snapshot:erin")
        .await
        .unwrap();
    let err = client
        .userinfo(&snapshot.access_token, &snapshot.openid)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        WeChatError::Unusable("errcode 48001".into()),
        "a snsapi_base token may not read the profile"
    );
    assert_eq!(mock.userinfo_calls(), 5);
}

fn authorize_url(mock: &MockWeChat, path: &str, params: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse(&format!("{}{path}", mock.base_url())).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    url.into()
}

fn h5_params<'a>(redirect_uri: &'a str, scope: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("appid", H5),
        ("redirect_uri", redirect_uri),
        ("response_type", "code"),
        ("scope", scope),
        ("state", "s7Xq9"),
    ]
}

#[tokio::test]
async fn the_authorize_page_asks_for_a_name() {
    let (mock, _client) = start().await;
    let url = authorize_url(
        &mock,
        "/connect/oauth2/authorize",
        &h5_params("https://h5.example.com/app", "snsapi_userinfo"),
    );
    let response = browser().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.unwrap();
    for part in [
        "id=\"name\"",
        "value=\"alice\"",
        "id=\"login\"",
        "id=\"deny\"",
        H5,
        "snsapi_userinfo",
        "https://h5.example.com/app",
    ] {
        assert!(page.contains(part), "{part} missing from\n{page}");
    }
    for external in ["src=", "<script", "<link", "url("] {
        assert!(
            !page.contains(external),
            "the page loads nothing: {external}"
        );
    }

    let url = authorize_url(
        &mock,
        "/connect/qrconnect",
        &[
            ("appid", SITE),
            ("redirect_uri", "https://www.example.com/"),
            ("response_type", "code"),
            ("scope", "snsapi_login"),
            ("state", "abc"),
        ],
    );
    let response = browser().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(page.contains("action=\"/connect/qrconnect\""), "{page}");
}

#[tokio::test]
async fn submitting_the_name_goes_back_with_code_and_state() {
    let (mock, client) = start().await;
    let mut params = h5_params("https://h5.example.com/app?from=menu", "snsapi_base");
    params.push(("name", "dave"));
    let url = authorize_url(&mock, "/connect/oauth2/authorize", &params);
    let response = browser().get(url).send().await.unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap();
    assert_eq!(
        location,
        "https://h5.example.com/app?from=menu&code=dev%3Adave&state=s7Xq9"
    );
    let code: String = reqwest::Url::parse(location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let token = client
        .oauth_access_token(&app(H5, AppKind::OfficialAccount), &code)
        .await
        .unwrap();
    assert_eq!(token.scope, "snsapi_base", "the scope granted on the page");

    let mut params = h5_params("http://127.0.0.1:8080/examples/h5/", "snsapi_userinfo");
    params.push(("name", "snapshot:frank"));
    let url = authorize_url(&mock, "/connect/oauth2/authorize", &params);
    let response = browser().get(url).send().await.unwrap();
    assert_eq!(
        response.headers()["location"].to_str().unwrap(),
        "http://127.0.0.1:8080/examples/h5/?code=snapshot%3Afrank&state=s7Xq9",
        "a name spelling a code is used as it is"
    );

    let mut params = h5_params("https://h5.example.com/app", "snsapi_userinfo");
    params.push(("deny", "1"));
    let url = authorize_url(&mock, "/connect/oauth2/authorize", &params);
    let response = browser().get(url).send().await.unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers()["location"].to_str().unwrap(),
        "https://h5.example.com/app?state=s7Xq9",
        "refusing sends back the state alone"
    );
}

fn without<'a>(params: &[(&'a str, &'a str)], name: &str) -> Vec<(&'a str, &'a str)> {
    params.iter().filter(|(k, _)| *k != name).copied().collect()
}

fn with<'a>(
    params: &[(&'a str, &'a str)],
    name: &'a str,
    value: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut params = without(params, name);
    params.push((name, value));
    params
}

#[tokio::test]
async fn bad_authorize_requests_get_an_error_page() {
    let (mock, _client) = start().await;
    let ok = h5_params("https://h5.example.com/app", "snsapi_userinfo");
    let long = "a".repeat(129);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("no appid", without(&ok, "appid")),
        ("a bad appid", with(&ok, "appid", "wx-1")),
        ("no redirect_uri", without(&ok, "redirect_uri")),
        ("a relative redirect_uri", with(&ok, "redirect_uri", "/app")),
        (
            "a javascript: redirect_uri",
            with(&ok, "redirect_uri", "javascript:alert(1)"),
        ),
        ("no response_type", without(&ok, "response_type")),
        ("response_type token", with(&ok, "response_type", "token")),
        ("no scope", without(&ok, "scope")),
        ("a website scope", with(&ok, "scope", "snsapi_login")),
        ("a long state", with(&ok, "state", &long)),
        ("a state with punctuation", with(&ok, "state", "a-b")),
    ];
    for (what, params) in cases {
        let url = authorize_url(&mock, "/connect/oauth2/authorize", &params);
        let response = browser().get(url).send().await.unwrap();
        assert_eq!(response.status(), 400, "{what}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{what}"
        );
    }
    let url = authorize_url(&mock, "/connect/qrconnect", &ok);
    let response = browser().get(url).send().await.unwrap();
    assert_eq!(response.status(), 400, "qrconnect takes snsapi_login only");
    let longest = "a".repeat(128);
    let url = authorize_url(
        &mock,
        "/connect/oauth2/authorize",
        &with(&ok, "state", &longest),
    );
    let response = browser().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "128 letters is WeChat's limit");

    let hostile = "https://h5.example.com/app?x=\"><script>alert(1)</script>";
    let url = authorize_url(
        &mock,
        "/connect/oauth2/authorize",
        &h5_params(hostile, "snsapi_userinfo"),
    );
    let page = browser()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("<script>"), "{page}");
    assert!(page.contains("&quot;&gt;&lt;script&gt;"), "{page}");
}

#[tokio::test]
async fn stats_count_the_web_calls() {
    let (mock, client) = start().await;
    let h5 = app(H5, AppKind::OfficialAccount);
    let token = client.oauth_access_token(&h5, "dev:gina").await.unwrap();
    client
        .userinfo(&token.access_token, &token.openid)
        .await
        .unwrap();
    let stats: serde_json::Value = browser()
        .get(format!("{}/mock/stats", mock.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["oauth2_access_token"], 1);
    assert_eq!(stats["userinfo"], 1);
}

#[tokio::test]
async fn dev_mode_sends_browsers_to_its_fake_and_back_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let layer = wxauth::config::Layer {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(dir.path().to_owned()),
        ..wxauth::config::Layer::default()
    };
    let config = wxauth::Config::resolve(layer, true, &std::collections::HashMap::new()).unwrap();
    let app = wxauth::App::start(config, std::sync::Arc::new(wxauth::clock::SystemClock))
        .await
        .unwrap();
    let config = &app.state().config;
    let here = format!("http://{}", app.addr());
    assert_eq!(config.public_url.as_deref(), Some(here.as_str()));
    assert_ne!(config.wechat_open_url, "https://open.weixin.qq.com");
    let page = format!("{here}/examples/h5/?tab=me");
    let website = config
        .apps
        .iter()
        .find(|a| a.kind == AppKind::Website)
        .unwrap();
    assert!(wxauth::redirect_uri::is_allowed(
        &website.redirect_uris,
        &page
    ));
    let url = reqwest::Url::parse_with_params(
        &format!("{}/connect/qrconnect", config.wechat_open_url),
        [
            ("appid", website.appid.as_str()),
            ("redirect_uri", page.as_str()),
            ("response_type", "code"),
            ("scope", "snsapi_login"),
            ("state", "xyz"),
            ("name", "hana"),
        ],
    )
    .unwrap();
    let response = browser().get(url).send().await.unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers()["location"].to_str().unwrap(),
        format!("{page}&code=dev%3Ahana&state=xyz")
    );
    app.shutdown().await;
}
