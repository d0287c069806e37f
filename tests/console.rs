//! The admin console over HTTP, as a browser uses it: setup links from the command line,
//! sign-in, every change with its CSRF token and Origin, and what each change does to
//! the database, the API and the audit log. The same flows in a real browser are in
//! `console_browser.rs`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{SHOP_AND_GAME, START, TestServer};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// A browser's view of the console: its cookies, and the Origin it sends.
struct Console {
    http: reqwest::Client,
    base: String,
    origin: String,
    cookies: HashMap<String, String>,
}

/// An answer: status, headers and the page.
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    /// The CSRF token of the page's first form.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find(r#"name="csrf" value=""#)
            .unwrap_or_else(|| panic!("no CSRF field in: {}", self.body));
        let rest = &self.body[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    fn location(&self) -> &str {
        self.headers
            .get("location")
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

impl Console {
    fn new(server: &TestServer) -> Console {
        Console {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: server.base.clone(),
            origin: server.base.clone(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let response = request
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let (pair, _) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Page {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("origin", &self.origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap());
        self.send(request).await
    }

    /// Signs in as `name` with `password` through the sign-in form.
    async fn sign_in(&mut self, name: &str, password: &str) -> Page {
        let token = self.get("/admin/sign-in").await.csrf();
        self.post(
            "/admin/sign-in",
            &[("csrf", &token), ("name", name), ("password", password)],
        )
        .await
    }

    /// Posts `form` with the CSRF token of the page at `from`.
    async fn change(&mut self, from: &str, path: &str, form: &[(&str, &str)]) -> Page {
        let token = self.get(from).await.csrf();
        let mut fields = vec![("csrf", token.as_str())];
        fields.extend_from_slice(form);
        self.post(path, &fields).await
    }
}

/// `wxauth ARGS` on the server's data directory; returns stdout.
fn wxauth(server: &TestServer, args: &[&str]) -> String {
    server.cli(&[], args)
}

const PASSWORD: &str = "correct horse battery staple";

/// Creates admin `name` from the command line and chooses their password through the
/// setup link it prints; the console is then signed in.
async fn signed_in(server: &TestServer, name: &str) -> Console {
    let link = wxauth(server, &["admins", "create", name]);
    let link = link.trim();
    assert!(
        link.starts_with(&format!("{}/admin/setup?token=", server.base)),
        "{link}"
    );
    let mut console = Console::new(server);
    let path = link.trim_start_matches(&server.base);
    let form = console.get(path).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains(name));
    let token = path.split("token=").nth(1).unwrap();
    let done = console
        .post(
            "/admin/setup",
            &[
                ("csrf", &form.csrf()),
                ("token", token),
                ("password", PASSWORD),
                ("again", PASSWORD),
            ],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), "/admin/");
    console
}

fn audit(server: &TestServer) -> Vec<(String, String, String, Option<String>)> {
    let conn = server.db();
    let mut stmt = conn
        .prepare("SELECT actor, source, action, target FROM audit_log ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setup_link_signs_in_once_and_the_console_shows_the_overview() {
    let server = TestServer::start().await;
    server.login_ok("dev:amy").await;
    let mut console = signed_in(&server, "alice").await;

    let overview = console.get("/admin/").await;
    assert_eq!(overview.status, 200);
    assert!(
        overview.body.contains(r#"<dd id="users">1</dd>"#),
        "{}",
        overview.body
    );
    assert!(overview.body.contains(r#"<dd id="live-sessions">1</dd>"#));
    assert!(overview.body.contains("<svg class=\"chart\""));
    assert!(overview.body.contains("<span class=\"who\">alice</span>"));

    // Every page carries the strict headers, and the cookie its flags.
    let csp = overview.headers["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(overview.headers["x-frame-options"], "DENY");
    assert_eq!(overview.headers["cache-control"], "no-store");
    assert_eq!(overview.headers["referrer-policy"], "same-origin");

    // The link is used up.
    let link_again = wxauth(&server, &["admins", "list", "--json"]);
    let listed: Value = serde_json::from_str(&link_again).unwrap();
    assert_eq!(listed[0]["name"], "alice");
    assert_eq!(listed[0]["state"], "active");

    // Signing out ends the console session: the old cookie no longer opens a page.
    let cookie = console.cookies.clone();
    let out = console.change("/admin/", "/admin/sign-out", &[]).await;
    assert_eq!(out.status, 303);
    console.cookies = cookie;
    let after = console.get("/admin/").await;
    assert_eq!(after.status, 303);
    assert_eq!(after.location(), "/admin/sign-in");

    let actions: Vec<String> = audit(&server).into_iter().map(|a| a.2).collect();
    assert_eq!(actions, ["admin.create", "admin.setup", "admin.sign_in"]);
    let created = &audit(&server)[0];
    assert_eq!(created.0, "cli:ops");
    assert!(created.1.starts_with("cli@"), "{}", created.1);
    assert_eq!(audit(&server)[1].1, "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_has_its_flags_and_the_host_prefix_under_https() {
    let server = TestServer::start_with(|l| {
        l.public_url = Some("https://auth.example.com".into());
    })
    .await;
    wxauth(&server, &["admins", "create", "alice"]);
    // As the browser reaches it through an https proxy for auth.example.com.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = http
        .get(server.url("/admin/sign-in"))
        .header("host", "auth.example.com")
        .send()
        .await
        .unwrap();
    let set = form.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.starts_with("__Host-wxauth_console_form="), "{set}");
    assert!(set.contains("; Path=/;") && set.ends_with("HttpOnly; SameSite=Strict; Secure"));

    // Plain http on the loopback address: no prefix, no Secure flag.
    let mut console = signed_in(&server, "bob").await;
    let session = console
        .cookies
        .keys()
        .find(|k| k.starts_with("wxauth_console"))
        .cloned();
    assert_eq!(session.as_deref(), Some("wxauth_console"));
    let page = console.get("/admin/sign-in").await;
    let set = page.headers["set-cookie"].to_str().unwrap();
    assert!(!set.contains("Secure"), "{set}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_need_the_consoles_origin_and_csrf_token() {
    let server = TestServer::start().await;
    let user = server.login_ok("dev:amy").await["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut console = signed_in(&server, "alice").await;
    let page = format!("/admin/users/{user}");
    let ban = format!("/admin/users/{user}/ban");
    let token = console.get(&page).await.csrf();

    // No CSRF token, a wrong one, another origin, no origin: all refused, nothing banned.
    let missing = console.post(&ban, &[("reason", "spam")]).await;
    assert_eq!(missing.status, 403);
    let wrong = console
        .post(&ban, &[("csrf", "not-the-token"), ("reason", "spam")])
        .await;
    assert_eq!(wrong.status, 403);
    console.origin = "http://evil.test".into();
    let cross = console
        .post(&ban, &[("csrf", &token), ("reason", "spam")])
        .await;
    assert_eq!(cross.status, 403);
    let request = console
        .http
        .post(format!("{}{ban}", server.base))
        .header("cookie", console.cookie_header())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={token}"));
    assert_eq!(request.send().await.unwrap().status(), 403);
    // Without the console cookie, even the right token and origin are refused.
    console.origin = server.base.clone();
    let anonymous = Console::new(&server)
        .post(&ban, &[("csrf", &token), ("reason", "spam")])
        .await;
    assert_eq!(anonymous.status, 403);
    let banned: Option<i64> = server
        .db()
        .query_row("SELECT banned_until FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(banned, None);

    // The sign-in form is guarded too.
    let mut stranger = Console::new(&server);
    stranger.get("/admin/sign-in").await;
    let no_token = stranger
        .post(
            "/admin/sign-in",
            &[("name", "alice"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(no_token.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_rate_limited_per_name() {
    let server = TestServer::start().await;
    signed_in(&server, "alice").await;
    let mut guesser = Console::new(&server);
    for _ in 0..4 {
        let wrong = guesser.sign_in("alice", "guess guess guess").await;
        assert_eq!(wrong.status, 401);
        assert!(wrong.body.contains("Wrong name or password."));
    }
    // An unknown name answers the same way.
    let unknown = guesser.sign_in("mallory", PASSWORD).await;
    assert_eq!(unknown.status, 401);
    // The fifth try for alice is the last; the sixth is refused, the right password too.
    let fifth = guesser.sign_in("alice", "guess guess guess").await;
    assert_eq!(fifth.status, 401);
    let right = guesser.sign_in("alice", PASSWORD).await;
    assert_eq!(right.status, 429);
    assert!(right.headers.contains_key("retry-after"));
    assert!(right.body.contains("Too many sign-in attempts"));
    assert!(!guesser.cookies.contains_key("wxauth_console"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_cookies_and_api_tokens_do_not_stand_in_for_each_other() {
    let server = TestServer::start().await;
    let token = server.token("dev:amy").await;
    let mut console = signed_in(&server, "alice").await;
    let cookie = console.cookies["wxauth_console"].clone();

    let as_bearer = server.get("/v1/session", Some(&cookie)).await;
    assert_eq!(as_bearer.status(), 401);
    let as_cookie = server
        .http
        .get(server.url("/v1/session"))
        .header("cookie", format!("wxauth_console={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(as_cookie.status(), 401);

    let mut impostor = Console::new(&server);
    impostor
        .cookies
        .insert("wxauth_console".into(), token.clone());
    let page = impostor.get("/admin/").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location(), "/admin/sign-in");
    let bearer = server.get("/admin/", Some(&token)).await;
    assert_eq!(bearer.url().path(), "/admin/sign-in");
    assert!(console.get("/admin/").await.status.is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_console_session_ends_after_30_minutes() {
    let server = TestServer::start().await;
    let mut console = signed_in(&server, "alice").await;
    let minutes = |n: u64| Duration::from_secs(n * 60);
    server.clock.advance(minutes(29));
    assert_eq!(console.get("/admin/").await.status, 200);
    server.clock.advance(minutes(29));
    assert_eq!(console.get("/admin/").await.status, 200);
    server.clock.advance(minutes(31));
    assert_eq!(console.get("/admin/").await.location(), "/admin/sign-in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_is_found_revoked_banned_and_unbanned_and_each_is_audited() {
    let server = TestServer::start().await;
    let phone_token = server.token("dev:amy#phone").await;
    let laptop_token = server.token("dev:amy#laptop").await;
    server.login_ok("dev:bob").await;
    let (user, openid): (String, String) = server
        .db()
        .query_row(
            "SELECT u.public_id, i.openid FROM users u JOIN identities i ON i.user_id = u.id \
             ORDER BY u.id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let mut console = signed_in(&server, "alice").await;

    let found = console.get(&format!("/admin/users?q={openid}")).await;
    assert_eq!(found.status, 200);
    assert_eq!(found.body.matches("<a href=\"/admin/users/u_").count(), 1);
    assert!(found.body.contains(&format!("/admin/users/{user}")));
    let everyone = console.get("/admin/users").await;
    assert_eq!(
        everyone.body.matches("<a href=\"/admin/users/u_").count(),
        2
    );

    // Revoke the phone's session: its token is refused at once, the laptop's is not.
    let session: String = server
        .db()
        .query_row(
            "SELECT public_id FROM sessions ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let page = format!("/admin/users/{user}");
    let user_page = console.get(&page).await;
    assert!(user_page.body.contains(&openid));
    assert!(user_page.body.contains(&session));
    let revoked = console
        .change(&page, &format!("/admin/sessions/{session}/revoke"), &[])
        .await;
    assert_eq!(revoked.status, 303, "{}", revoked.body);
    assert_eq!(revoked.location(), format!("/admin/users/{user}#sessions"));
    assert_eq!(
        server.get("/v1/session", Some(&phone_token)).await.status(),
        401
    );
    assert_eq!(
        server
            .get("/v1/session", Some(&laptop_token))
            .await
            .status(),
        200
    );
    let reason: String = server
        .db()
        .query_row(
            "SELECT revoked_reason FROM sessions WHERE public_id = ?1",
            [&session],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(reason, "admin");

    // Ban with a reason and an end; login and the API answer user_banned.
    let banned = console
        .change(
            &page,
            &format!("/admin/users/{user}/ban"),
            &[("reason", "spam"), ("until", "7d")],
        )
        .await;
    assert_eq!(banned.status, 303, "{}", banned.body);
    let refused = server.get("/v1/session", Some(&laptop_token)).await;
    assert_eq!(refused.status(), 403);
    let (until, why): (i64, String) = server
        .db()
        .query_row(
            "SELECT banned_until, ban_reason FROM users WHERE public_id = ?1",
            [&user],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((until, why.as_str()), (START + 7 * 86_400, "spam"));
    let shown = console.get(&page).await;
    assert!(
        shown
            .body
            .contains("Banned until 2026-12-07T10:00:00Z · spam"),
        "{}",
        shown.body
    );

    let unbanned = console
        .change(&page, &format!("/admin/users/{user}/unban"), &[])
        .await;
    assert_eq!(unbanned.status, 303);
    assert_eq!(
        server
            .get("/v1/session", Some(&laptop_token))
            .await
            .status(),
        200
    );

    // A bad ban end is a 400 that names it, and bans nothing.
    let bad = console
        .change(
            &page,
            &format!("/admin/users/{user}/ban"),
            &[("until", "someday")],
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("someday"));

    let entries: Vec<_> = audit(&server)
        .into_iter()
        .filter(|e| e.0 == "console:alice" && e.2 != "admin.setup" && e.2 != "admin.sign_in")
        .map(|e| (e.2, e.3.unwrap_or_default()))
        .collect();
    assert_eq!(
        entries,
        [
            ("session.revoke".to_owned(), session.clone()),
            ("user.ban".to_owned(), user.clone()),
            ("user.unban".to_owned(), user.clone()),
        ]
    );
    // The user's page lists them as its history, newest first.
    let history = console.get(&page).await.body;
    let unban_at = history.find(">user.unban<").unwrap();
    let ban_at = history.find(">user.ban<").unwrap();
    assert!(unban_at < ban_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_conflict_is_shown_on_both_users_and_merged() {
    let server = TestServer::start_with_apps(|_| SHOP_AND_GAME.into()).await;
    let (game, shop) = server.unionid_conflict().await;
    let keep = game["user"]["id"].as_str().unwrap();
    let other = shop["user"]["id"].as_str().unwrap();
    let other_token = shop["token"].as_str().unwrap();
    let mut console = signed_in(&server, "alice").await;

    // Each user's page names the other and offers to merge it in.
    let page = format!("/admin/users/{keep}");
    let kept = console.get(&page).await;
    assert!(
        kept.body.contains(r#"<section id="conflicts">"#),
        "{}",
        kept.body
    );
    assert!(
        kept.body
            .contains(&format!(r#"name="other" value="{other}""#))
    );
    let merged_away = console.get(&format!("/admin/users/{other}")).await;
    assert!(
        merged_away
            .body
            .contains(&format!(r#"name="other" value="{keep}""#))
    );

    // A merge without the page's token merges nothing.
    let forged = console
        .post(&format!("{page}/merge"), &[("other", other)])
        .await;
    assert_eq!(forged.status, 403);
    let merged_into = |server: &TestServer| -> Option<String> {
        server
            .db()
            .query_row(
                "SELECT k.public_id FROM users o LEFT JOIN users k ON k.id = o.merged_into \
                 WHERE o.public_id = ?1",
                [other],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(merged_into(&server), None);

    let merged = console
        .change(&page, &format!("{page}/merge"), &[("other", other)])
        .await;
    assert_eq!(merged.status, 303, "{}", merged.body);
    assert_eq!(merged.location(), page);
    assert_eq!(merged_into(&server).as_deref(), Some(keep));
    // The other user's token now speaks for the kept user, and the conflict is gone.
    let session = server.session_of(other_token).await;
    assert_eq!(session["user"]["id"], keep, "{session}");
    assert_eq!(
        session["user"]["apps"],
        serde_json::json!(["wxshop", "wxgame"])
    );
    let after = console.get(&page).await;
    assert!(!after.body.contains(r#"<section id="conflicts">"#));
    // The merged user's id leads to the kept user.
    let alias = console.get(&format!("/admin/users/{other}")).await;
    assert_eq!(alias.status, 303);
    assert_eq!(alias.location(), page);

    // Merging it again is refused with the reason, and changes nothing.
    let again = console
        .change(&page, &format!("{page}/merge"), &[("other", other)])
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.contains("already merged"), "{}", again.body);

    let merges: Vec<_> = audit(&server)
        .into_iter()
        .filter(|e| e.2 == "user.merge")
        .map(|e| (e.0, e.3.unwrap_or_default()))
        .collect();
    assert_eq!(merges, [("console:alice".to_owned(), keep.to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_key_is_shown_once_and_works() {
    let server = TestServer::start().await;
    let token = server.token("dev:amy").await;
    let mut console = signed_in(&server, "alice").await;
    let created = console
        .change(
            "/admin/service-keys",
            "/admin/service-keys",
            &[("name", "billing"), ("scope", "introspect")],
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let start = created.body.find("<code id=\"new-key\">").unwrap() + "<code id=\"new-key\">".len();
    let key = &created.body[start..start + created.body[start..].find('<').unwrap()];
    assert!(key.starts_with("wxsk_"), "{key}");

    let introspected = server
        .http
        .post(server.url("/v1/introspect"))
        .bearer_auth(key)
        .json(&serde_json::json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(introspected.status(), 200);
    let listed = console.get("/admin/service-keys").await;
    assert!(listed.body.contains("billing"));
    assert!(!listed.body.contains(key));

    // A taken name is refused with the reason, on the page.
    let again = console
        .change(
            "/admin/service-keys",
            "/admin/service-keys",
            &[("name", "billing"), ("scope", "introspect")],
        )
        .await;
    assert_eq!(again.status, 400);
    assert!(!again.body.contains("new-key"));

    let id: String = server
        .db()
        .query_row("SELECT public_id FROM service_keys", [], |r| r.get(0))
        .unwrap();
    let revoked = console
        .change(
            "/admin/service-keys",
            &format!("/admin/service-keys/{id}/revoke"),
            &[],
        )
        .await;
    assert_eq!(revoked.status, 303);
    let refused = server
        .http
        .post(server.url("/v1/introspect"))
        .bearer_auth(key)
        .json(&serde_json::json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let actions: Vec<String> = audit(&server).into_iter().map(|e| e.2).collect();
    assert!(actions.ends_with(&["service_key.create".into(), "service_key.revoke".into()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_and_retire_from_the_console() {
    let server = TestServer::start().await;
    let token = server.token("dev:amy").await;
    let mut console = signed_in(&server, "alice").await;
    let before = console.get("/admin/keys").await;
    assert_eq!(
        before
            .body
            .matches("<td data-label=\"Use\">session</td>")
            .count(),
        1
    );
    let rotated = console
        .change("/admin/keys", "/admin/keys/rotate", &[])
        .await;
    assert_eq!(rotated.status, 303, "{}", rotated.body);
    let after = console.get("/admin/keys").await;
    assert_eq!(
        after
            .body
            .matches("<td data-label=\"Use\">session</td>")
            .count(),
        2
    );
    // The old signing key still verifies the tokens it signed.
    assert_eq!(server.get("/v1/session", Some(&token)).await.status(), 200);

    // Retiring the old signing key ends its tokens.
    let keys: Value = serde_json::from_str(&wxauth(&server, &["keys", "list", "--json"])).unwrap();
    let old = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["use"] == "session" && k["state"] == "accepted")
        .unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let retired = console
        .change("/admin/keys", &format!("/admin/keys/{old}/retire"), &[])
        .await;
    assert_eq!(retired.status, 303, "{}", retired.body);
    let mut refused = false;
    for _ in 0..40 {
        if server.get("/v1/session", Some(&token)).await.status() == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refused, "the retired key's token still works");
    let actions: Vec<(String, Option<String>)> =
        audit(&server).into_iter().map(|e| (e.2, e.3)).collect();
    assert!(actions.contains(&("keys.rotate".into(), None)));
    assert!(actions.contains(&("keys.retire".into(), Some(old))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_changes_are_in_the_audit_log() {
    let server = TestServer::start().await;
    let user = server.login_ok("dev:amy").await["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wxauth(&server, &["users", "ban", &user, "--reason", "spam"]);
    wxauth(&server, &["users", "unban", &user]);
    wxauth(&server, &["sessions", "revoke", "--user", &user]);
    wxauth(&server, &["service-keys", "create", "reports"]);
    wxauth(&server, &["service-keys", "revoke", "reports"]);
    wxauth(&server, &["keys", "rotate"]);
    let backup = server.dir.path().join("copy.wxbak");
    wxauth(&server, &["backup", backup.to_str().unwrap()]);
    let link = wxauth(&server, &["admins", "create", "carol"]);
    assert!(link.contains("/admin/setup?token="));
    wxauth(&server, &["admins", "disable", "carol"]);
    wxauth(&server, &["admins", "reset", "carol"]);

    let log = audit(&server);
    let actions: Vec<&str> = log.iter().map(|e| e.2.as_str()).collect();
    assert_eq!(
        actions,
        [
            "user.ban",
            "user.unban",
            "user.sessions_revoke",
            "service_key.create",
            "service_key.revoke",
            "keys.rotate",
            "backup",
            "admin.create",
            "admin.disable",
            "admin.reset",
        ]
    );
    assert!(
        log.iter()
            .all(|e| e.0 == "cli:ops" && e.1.starts_with("cli@"))
    );

    // The console shows them, and the overview the backup.
    let mut console = signed_in(&server, "alice").await;
    let page = console.get("/admin/audit").await;
    for action in actions {
        assert!(page.body.contains(&format!(">{action}<")), "{action}");
    }
    let overview = console.get("/admin/").await;
    assert!(
        !overview.body.contains(r#"<dd id="last-backup">never</dd>"#),
        "{}",
        overview.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_admins_sessions_end_and_a_reset_link_restores_them() {
    let server = TestServer::start().await;
    let mut console = signed_in(&server, "alice").await;
    wxauth(&server, &["admins", "disable", "alice"]);
    assert_eq!(console.get("/admin/").await.status, 303);
    let mut again = Console::new(&server);
    let refused = again.sign_in("alice", PASSWORD).await;
    assert_eq!(refused.status, 401);
    let link = wxauth(&server, &["admins", "reset", "alice", "--json"]);
    let link: Value = serde_json::from_str(&link).unwrap();
    let path = link["setup_url"]
        .as_str()
        .unwrap()
        .trim_start_matches(&server.base)
        .to_owned();
    let form = again.get(&path).await;
    assert_eq!(form.status, 200);
    let token = path.split("token=").nth(1).unwrap();
    let new_password = "a new password, long enough";
    let short = again
        .post(
            "/admin/setup",
            &[
                ("csrf", &form.csrf()),
                ("token", token),
                ("password", "short"),
                ("again", "short"),
            ],
        )
        .await;
    assert_eq!(short.status, 400);
    assert!(short.body.contains("too short"));
    let chosen = again
        .post(
            "/admin/setup",
            &[
                ("csrf", &form.csrf()),
                ("token", token),
                ("password", new_password),
                ("again", new_password),
            ],
        )
        .await;
    assert_eq!(chosen.status, 303);
    assert_eq!(again.get("/admin/").await.status, 200);
    // The old password is gone; the new one signs in.
    let mut later = Console::new(&server);
    assert_eq!(later.sign_in("alice", PASSWORD).await.status, 401);
    assert_eq!(later.sign_in("alice", new_password).await.status, 303);
    // A used or unknown link is refused with a page that says so.
    let unknown = again.get("/admin/setup?token=nope").await;
    assert_eq!(unknown.status, 409);
    assert!(unknown.body.contains("unknown, used or expired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_speaks_chinese_when_the_browser_prefers_it() {
    let server = TestServer::start().await;
    let mut console = signed_in(&server, "alice").await;
    let request = console
        .http
        .get(server.url("/admin/"))
        .header("accept-language", "zh-CN,zh;q=0.9,en;q=0.8");
    let zh = console.send(request).await;
    assert!(zh.body.contains("<html lang=\"zh-CN\">"));
    assert!(zh.body.contains("今日新增"));
    // The switch keeps English whatever the browser prefers.
    let switched = console.get("/admin/lang?to=en").await;
    assert_eq!(switched.status, 303);
    let request = console
        .http
        .get(server.url("/admin/"))
        .header("accept-language", "zh-CN");
    let en = console.send(request).await;
    assert!(en.body.contains("New today"), "{}", en.body);

    // The switch comes back to the page it was clicked on, and only to a console page.
    let users = console.get("/admin/users?q=%E6%9C%88").await;
    let link = r#"href="/admin/lang?to=zh-CN&#38;back=%2Fadmin%2Fusers%3Fq%3D%25E6%259C%2588""#;
    assert!(users.body.contains(link), "{}", users.body);
    let back = console
        .get("/admin/lang?to=zh-CN&back=%2Fadmin%2Fusers%3Fq%3D%25E6%259C%2588")
        .await;
    assert_eq!(back.location(), "/admin/users?q=%E6%9C%88");
    assert!(console.get("/admin/users").await.body.contains("用户"));
    let elsewhere = console
        .get("/admin/lang?to=en&back=%2F%2Fevil.example%2Fadmin%2F")
        .await;
    assert_eq!(elsewhere.location(), "/admin/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listen_serves_the_console_alone() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = TestServer::start_with(|l| {
        l.admin_listen = Some(format!("127.0.0.1:{port}").parse().unwrap());
    })
    .await;
    assert_eq!(server.get("/admin/sign-in", None).await.status(), 404);
    let page = server
        .http
        .get(format!("http://127.0.0.1:{port}/admin/sign-in"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let api = server
        .http
        .get(format!("http://127.0.0.1:{port}/v1/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 404);
    // The CLI's links point there.
    let admin_listen = format!("127.0.0.1:{port}");
    let link = server.cli(
        &[("WXAUTH_ADMIN_LISTEN", &admin_listen)],
        &["admins", "create", "alice"],
    );
    assert!(link.starts_with(&format!("http://{admin_listen}/admin/setup?token=")));
}
