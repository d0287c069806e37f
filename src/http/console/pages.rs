//! The console's pages and the changes they make: what each path shows, who may see it,
//! and the checks before each change.

use std::net::IpAddr;

use askama::Template;
use bytes::Bytes;
use serde::Deserialize;
use warp::http::header::{self, HeaderValue};
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Response;

use super::chart;
use super::guard::{self, Cookie};
use super::text::{Lang, Text};
use crate::clock::rfc3339;
use crate::db::DbError;
use crate::domain::service_keys::{self, Scope};
use crate::http::body::RawBody;
use crate::http::state::AppState;
use crate::keys::password::{self, PasswordProblem};
use crate::ops::admin::{self, AdminError, SessionRecord, SessionStatus, UserRecord, UserRef};
use crate::ops::admins::{self, BadLink, ConsoleSession};
use crate::ops::audit::{self, Actor, Entry};
use crate::ops::{merge, overview};

/// A request to the console, as the pages see it.
pub(super) struct Request {
    pub(super) method: Method,
    /// The path after `/admin/`, split at `/`.
    pub(super) segments: Vec<String>,
    /// Whether the path was `/admin` without its slash.
    pub(super) bare: bool,
    pub(super) query: String,
    pub(super) headers: HeaderMap,
    pub(super) ip: Option<IpAddr>,
    pub(super) body: RawBody,
}

/// Users and audit entries per page.
const PAGE: u32 = 50;
/// How long the cookie that guards the sign-in and setup forms lives.
const FORM_COOKIE_AGE: i64 = 3600;
/// How long the language choice is kept.
const LANG_COOKIE_AGE: i64 = 365 * 86_400;

/// What every page shows around its content.
struct Frame<'a> {
    t: &'static Text,
    lang: Lang,
    /// The signed-in admin; `None` on the sign-in and setup pages.
    admin: Option<&'a str>,
    csrf: String,
    section: &'static str,
    /// The language switch's link, which comes back to this page.
    lang_link: String,
}

/// Why a request got no page of its own.
enum Failure {
    NotFound,
    /// Not from a console page: no Origin of ours, or no CSRF token of the cookie's.
    Forbidden,
    BadForm(String),
    Refused(String),
    Internal(String),
}

impl From<AdminError> for Failure {
    fn from(e: AdminError) -> Failure {
        match e {
            AdminError::Refused(message) => Failure::Refused(message),
            AdminError::ServiceKey(e) => Failure::Refused(e.to_string()),
            other => Failure::Internal(other.to_string()),
        }
    }
}

impl From<DbError> for Failure {
    fn from(e: DbError) -> Failure {
        Failure::from(AdminError::from(e))
    }
}

/// One request's context: the state, and what the request says about its browser.
struct Ctx<'a> {
    state: &'a AppState,
    lang: Lang,
    secure: bool,
    request: Request,
}

/// Answers one console request.
pub(super) async fn handle(state: &AppState, request: Request) -> Response {
    let secure = is_secure(state, &request);
    let lang = Cookie::Lang
        .read(&request.headers, secure)
        .and_then(|tag| Lang::from_tag(&tag))
        .unwrap_or_else(|| {
            Lang::negotiate(
                request
                    .headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
            )
        });
    let ctx = Ctx {
        state,
        lang,
        secure,
        request,
    };
    match route(&ctx).await {
        Ok(response) => response,
        Err(failure) => failure_page(&ctx, failure),
    }
}

/// Whether the browser reached the console over https: `public_url` is https and names
/// the host it asked for, or a trusted proxy says so.
fn is_secure(state: &AppState, request: &Request) -> bool {
    let headers = &request.headers;
    if state.config.trust_proxy
        && headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
    {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    state
        .config
        .public_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .is_some_and(|u| {
            u.scheme() == "https"
                && host.is_some_and(|h| {
                    u.host_str().is_some_and(|uh| h == uh)
                        || u.port().is_some_and(|p| {
                            u.host_str().is_some_and(|uh| h == format!("{uh}:{p}"))
                        })
                })
        })
}

async fn route(ctx: &Ctx<'_>) -> Result<Response, Failure> {
    let r = &ctx.request;
    if r.bare {
        return Ok(redirect("/admin/"));
    }
    let segments: Vec<&str> = r.segments.iter().map(String::as_str).collect();
    match (&r.method, segments.as_slice()) {
        (&Method::GET, ["assets", "console.css"]) => Ok(asset(
            include_bytes!("../../../assets/console/console.css"),
            "text/css; charset=utf-8",
        )),
        (&Method::GET, ["assets", "console.js"]) => Ok(asset(
            include_bytes!("../../../assets/console/console.js"),
            "text/javascript; charset=utf-8",
        )),
        (&Method::GET, ["lang"]) => Ok(switch_language(ctx)),
        (&Method::GET, ["sign-in"]) => sign_in_form(ctx, None, "", StatusCode::OK),
        (&Method::POST, ["sign-in"]) => sign_in(ctx).await,
        (&Method::GET, ["setup"]) => setup_form(ctx).await,
        (&Method::POST, ["setup"]) => setup(ctx).await,
        (&Method::GET, ["link"]) if ctx.state.config.dev => sign_in_link(ctx).await,
        _ => {
            let Some(signed) = signed_in(ctx).await? else {
                return Ok(if r.method == Method::GET {
                    redirect("/admin/sign-in")
                } else {
                    failure_page(ctx, Failure::Forbidden)
                });
            };
            if r.method == Method::POST {
                check_change(ctx, &signed)?;
            }
            signed_route(ctx, &signed, &segments).await
        }
    }
}

async fn signed_route(
    ctx: &Ctx<'_>,
    signed: &Signed,
    segments: &[&str],
) -> Result<Response, Failure> {
    match (&ctx.request.method, segments) {
        (&Method::GET, [""]) => overview_page(ctx, signed).await,
        (&Method::POST, ["sign-out"]) => sign_out(ctx, signed).await,
        (&Method::GET, ["users"]) => users_page(ctx, signed).await,
        (&Method::GET, ["users", id]) => user_page(ctx, signed, id).await,
        (&Method::POST, ["users", id, "ban"]) => ban(ctx, signed, id).await,
        (&Method::POST, ["users", id, "unban"]) => unban(ctx, signed, id).await,
        (&Method::POST, ["users", id, "merge"]) => merge_into(ctx, signed, id).await,
        (&Method::POST, ["sessions", id, "revoke"]) => revoke_session(ctx, signed, id).await,
        (&Method::GET, ["service-keys"]) => service_keys_page(ctx, signed, None, None).await,
        (&Method::POST, ["service-keys"]) => create_service_key(ctx, signed).await,
        (&Method::POST, ["service-keys", id, "revoke"]) => {
            revoke_service_key(ctx, signed, id).await
        }
        (&Method::GET, ["keys"]) => keys_page(ctx, signed, None),
        (&Method::POST, ["keys", "rotate"]) => rotate_keys(ctx, signed).await,
        (&Method::POST, ["keys", kid, "retire"]) => retire_key(ctx, signed, kid).await,
        (&Method::GET, ["audit"]) => audit_page(ctx, signed).await,
        _ => Err(Failure::NotFound),
    }
}

// ---- answers ----

fn html(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn render(status: StatusCode, page: &impl Template) -> Result<Response, Failure> {
    let body = page
        .render()
        .map_err(|e| Failure::Internal(format!("a console page failed to render: {e}")))?;
    Ok(html(status, body))
}

/// A redirect after a change, so that reloading the page does not repeat it.
fn redirect(location: &str) -> Response {
    let mut response = Response::new(Bytes::new().into());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn asset(bytes: &'static [u8], content_type: &'static str) -> Response {
    let mut response = Response::new(Bytes::from_static(bytes).into());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

#[derive(Template)]
#[template(path = "console/message.html")]
struct MessagePage<'a> {
    f: Frame<'a>,
    heading: &'a str,
    message: &'a str,
    back: &'a str,
}

fn failure_page(ctx: &Ctx<'_>, failure: Failure) -> Response {
    let t = ctx.lang.text();
    let (status, message) = match &failure {
        Failure::NotFound => (StatusCode::NOT_FOUND, t.not_found.to_owned()),
        Failure::Forbidden => (StatusCode::FORBIDDEN, t.forbidden.to_owned()),
        Failure::BadForm(m) => (StatusCode::BAD_REQUEST, m.clone()),
        Failure::Refused(m) => (StatusCode::CONFLICT, m.clone()),
        Failure::Internal(cause) => {
            tracing::error!(error = %cause, "console request failed");
            (StatusCode::INTERNAL_SERVER_ERROR, t.server_error.to_owned())
        }
    };
    let page = MessagePage {
        f: Frame {
            t,
            lang: ctx.lang,
            admin: None,
            csrf: String::new(),
            section: "",
            lang_link: lang_link(ctx),
        },
        heading: t.refused,
        message: &message,
        back: "/admin/",
    };
    match page.render() {
        Ok(body) => html(status, body),
        Err(_) => html(status, message),
    }
}

// ---- forms ----

/// Parses a form body; a bad one is a 400 naming the problem.
fn form<T: for<'de> Deserialize<'de>>(ctx: &Ctx<'_>) -> Result<T, Failure> {
    serde_urlencoded::from_bytes(&ctx.request.body.bytes)
        .map_err(|e| Failure::BadForm(format!("the form is malformed: {e}")))
}

/// The CSRF field of any form, read without knowing its other fields.
fn csrf_field(ctx: &Ctx<'_>) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(&ctx.request.body.bytes)
        .ok()?
        .into_iter()
        .find(|(name, _)| name == "csrf")
        .map(|(_, value)| value)
}

/// Every change must come from a console page: our Origin, and the CSRF token of the
/// cookie it was sent with.
fn check_change(ctx: &Ctx<'_>, signed: &Signed) -> Result<(), Failure> {
    check_origin_and_token(ctx, &signed.secret)
}

fn check_origin_and_token(ctx: &Ctx<'_>, secret: &str) -> Result<(), Failure> {
    if !guard::same_origin(
        &ctx.request.headers,
        ctx.secure,
        ctx.state.config.public_url.as_deref(),
    ) {
        return Err(Failure::Forbidden);
    }
    match csrf_field(ctx) {
        Some(token) if guard::csrf_matches(secret, &token) => Ok(()),
        _ => Err(Failure::Forbidden),
    }
}

// ---- signing in ----

/// A signed-in request: the console session and its cookie's secret.
struct Signed {
    session: ConsoleSession,
    secret: String,
}

impl Signed {
    fn frame(&self, ctx: &Ctx<'_>, section: &'static str) -> Frame<'_> {
        Frame {
            t: ctx.lang.text(),
            lang: ctx.lang,
            admin: Some(&self.session.admin),
            csrf: admins::csrf_token(&self.secret),
            section,
            lang_link: lang_link(ctx),
        }
    }

    fn actor(&self, ctx: &Ctx<'_>) -> Actor {
        Actor::console(&self.session.admin, ctx.request.ip)
    }
}

/// The console session the request's cookie holds, if it is live; its last-seen time
/// is written at most once a minute, and before the answer: the idle limit counts from
/// it.
async fn signed_in(ctx: &Ctx<'_>) -> Result<Option<Signed>, Failure> {
    let Some(secret) = Cookie::Session.read(&ctx.request.headers, ctx.secure) else {
        return Ok(None);
    };
    let now = ctx.state.clock.now();
    let lookup = secret.clone();
    let session = ctx
        .state
        .db
        .read(move |c| admins::session(c, &lookup, now))
        .await?;
    let Some(session) = session else {
        return Ok(None);
    };
    if admins::needs_touch(&session, now) {
        let id = session.id;
        ctx.state
            .db
            .write(move |c| admins::touch(c, id, now))
            .await?;
    }
    Ok(Some(Signed { session, secret }))
}

/// The secret of the cookie that guards the sign-in and setup forms, and whether it is
/// new (and so must be set).
fn form_secret(ctx: &Ctx<'_>) -> (String, bool) {
    match Cookie::PreSession.read(&ctx.request.headers, ctx.secure) {
        Some(secret) if !secret.is_empty() => (secret, false),
        _ => (admins::new_secret(), true),
    }
}

fn with_cookie(mut response: Response, value: HeaderValue) -> Response {
    response.headers_mut().append(header::SET_COOKIE, value);
    response
}

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage<'a> {
    f: Frame<'a>,
    problem: Option<&'a str>,
    name: &'a str,
}

fn sign_in_form(
    ctx: &Ctx<'_>,
    problem: Option<&str>,
    name: &str,
    status: StatusCode,
) -> Result<Response, Failure> {
    anonymous_page(ctx, status, |f| SignInPage { f, problem, name })
}

/// A page for a browser that is not signed in (sign-in, setup). Its form carries the
/// CSRF token of the form cookie, which is set here when the browser has none.
fn anonymous_page<P: Template>(
    ctx: &Ctx<'_>,
    status: StatusCode,
    page: impl FnOnce(Frame<'static>) -> P,
) -> Result<Response, Failure> {
    let (secret, new) = form_secret(ctx);
    let frame = Frame {
        t: ctx.lang.text(),
        lang: ctx.lang,
        admin: None,
        csrf: admins::csrf_token(&secret),
        section: "",
        lang_link: lang_link(ctx),
    };
    let response = render(status, &page(frame))?;
    Ok(if new {
        with_cookie(
            response,
            Cookie::PreSession.set(ctx.secure, &secret, FORM_COOKIE_AGE),
        )
    } else {
        response
    })
}

#[derive(Deserialize)]
struct SignInForm {
    name: String,
    password: String,
}

async fn sign_in(ctx: &Ctx<'_>) -> Result<Response, Failure> {
    let (secret, _) = form_secret(ctx);
    check_origin_and_token(ctx, &secret)?;
    let SignInForm { name, password, .. } = form(ctx)?;
    let t = ctx.lang.text();
    if let Err(wait) = ctx.state.console_limits.check(ctx.request.ip, &name) {
        let mut response = sign_in_form(
            ctx,
            Some(t.too_many_attempts),
            &name,
            StatusCode::TOO_MANY_REQUESTS,
        )?;
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return Ok(response);
    }
    let lookup = name.clone();
    let stored = ctx
        .state
        .db
        .read(move |c| admins::password_of(c, &lookup))
        .await?;
    let verified = tokio::task::spawn_blocking(move || match stored {
        Some((id, hash)) => password::verify(&password, &hash).then_some(id),
        None => {
            password::verify_nothing(&password);
            None
        }
    })
    .await
    .map_err(|e| Failure::Internal(e.to_string()))?;
    let Some(id) = verified else {
        return sign_in_form(
            ctx,
            Some(t.bad_credentials),
            &name,
            StatusCode::UNAUTHORIZED,
        );
    };
    start_session(ctx, id).await
}

/// Starts a console session for admin `id` and sends the browser to the overview.
async fn start_session(ctx: &Ctx<'_>, id: i64) -> Result<Response, Failure> {
    let now = ctx.state.clock.now();
    let ip = ctx.request.ip;
    let secret = ctx
        .state
        .db
        .write(move |c| admins::start_session(c, id, ip, now))
        .await?;
    let response = with_cookie(
        redirect("/admin/"),
        Cookie::Session.set(ctx.secure, secret.expose(), admins::MAX_AGE),
    );
    Ok(with_cookie(
        response,
        Cookie::PreSession.set(ctx.secure, "", 0),
    ))
}

async fn sign_out(ctx: &Ctx<'_>, signed: &Signed) -> Result<Response, Failure> {
    let now = ctx.state.clock.now();
    let id = signed.session.id;
    ctx.state
        .db
        .write(move |c| admins::end_session(c, id, now))
        .await?;
    Ok(with_cookie(
        redirect("/admin/sign-in"),
        Cookie::Session.set(ctx.secure, "", 0),
    ))
}

#[derive(Template)]
#[template(path = "console/setup.html")]
struct SetupPage<'a> {
    f: Frame<'a>,
    problem: Option<&'a str>,
    name: &'a str,
    token: &'a str,
}

#[derive(Deserialize)]
struct TokenQuery {
    token: String,
}

async fn setup_form(ctx: &Ctx<'_>) -> Result<Response, Failure> {
    let query: TokenQuery = serde_urlencoded::from_str(&ctx.request.query)
        .map_err(|_| Failure::BadForm(ctx.lang.text().bad_link.to_owned()))?;
    setup_page(ctx, &query.token, None, StatusCode::OK).await
}

async fn setup_page(
    ctx: &Ctx<'_>,
    token: &str,
    problem: Option<&str>,
    status: StatusCode,
) -> Result<Response, Failure> {
    let now = ctx.state.clock.now();
    let lookup = token.to_owned();
    let owner = ctx
        .state
        .db
        .read(move |c| admins::link_owner(c, &lookup, admins::LinkPurpose::Setup, now))
        .await?;
    let Ok((_, name)) = owner else {
        return Err(Failure::Refused(ctx.lang.text().bad_link.to_owned()));
    };
    anonymous_page(ctx, status, |f| SetupPage {
        f,
        problem,
        name: &name,
        token,
    })
}

#[derive(Deserialize)]
struct SetupForm {
    token: String,
    password: String,
    again: String,
}

async fn setup(ctx: &Ctx<'_>) -> Result<Response, Failure> {
    let (secret, _) = form_secret(ctx);
    check_origin_and_token(ctx, &secret)?;
    let SetupForm {
        token,
        password,
        again,
        ..
    } = form(ctx)?;
    let t = ctx.lang.text();
    let problem = if password != again {
        Some(t.passwords_differ)
    } else {
        match password::check_strength(&password) {
            Ok(()) => None,
            Err(PasswordProblem::TooShort) => Some(t.password_too_short),
            Err(PasswordProblem::TooLong) => Some(t.password_too_long),
        }
    };
    if let Some(problem) = problem {
        return setup_page(ctx, &token, Some(problem), StatusCode::BAD_REQUEST).await;
    }
    let hash = tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|e| Failure::Internal(e.to_string()))?;
    let now = ctx.state.clock.now();
    let ip = ctx.request.ip;
    let finished = ctx
        .state
        .db
        .write(move |c| admins::finish_setup(c, &token, &hash, ip, now))
        .await?;
    match finished {
        Ok((id, _)) => start_session(ctx, id).await,
        Err(BadLink) => Err(Failure::Refused(t.bad_link.to_owned())),
    }
}

/// `serve --dev`'s link: signs in as the dev admin at once, once.
async fn sign_in_link(ctx: &Ctx<'_>) -> Result<Response, Failure> {
    let query: TokenQuery = serde_urlencoded::from_str(&ctx.request.query)
        .map_err(|_| Failure::BadForm(ctx.lang.text().bad_link.to_owned()))?;
    let now = ctx.state.clock.now();
    let used = ctx
        .state
        .db
        .write(move |c| admins::use_sign_in_link(c, &query.token, now))
        .await?;
    match used {
        Ok((id, _)) => start_session(ctx, id).await,
        Err(_) => Err(Failure::Refused(ctx.lang.text().bad_link.to_owned())),
    }
}

/// The link that switches to the other language and, from a page a GET shows, comes
/// back to it.
fn lang_link(ctx: &Ctx<'_>) -> String {
    let to = ctx.lang.other().tag();
    if ctx.request.method != Method::GET {
        return format!("/admin/lang?to={to}");
    }
    let mut here = format!("/admin/{}", ctx.request.segments.join("/"));
    if !ctx.request.query.is_empty() {
        here.push('?');
        here.push_str(&ctx.request.query);
    }
    let query =
        serde_urlencoded::to_string([("to", to), ("back", &here)]).expect("strings always encode");
    format!("/admin/lang?{query}")
}

#[derive(Deserialize)]
struct LangQuery {
    to: String,
    back: Option<String>,
}

fn switch_language(ctx: &Ctx<'_>) -> Response {
    let query = serde_urlencoded::from_str::<LangQuery>(&ctx.request.query).ok();
    let chosen = query
        .as_ref()
        .and_then(|q| Lang::from_tag(&q.to))
        .unwrap_or(ctx.lang);
    let back = query
        .as_ref()
        .and_then(|q| q.back.as_deref())
        .filter(|back| guard::is_console_path(back))
        .unwrap_or("/admin/");
    with_cookie(
        redirect(back),
        Cookie::Lang.set(ctx.secure, chosen.tag(), LANG_COOKIE_AGE),
    )
}

// ---- overview ----

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage<'a> {
    f: Frame<'a>,
    o: overview::Overview,
    chart: String,
    wechat_errors: u64,
    database_size: String,
    litestream: bool,
}

async fn overview_page(ctx: &Ctx<'_>, signed: &Signed) -> Result<Response, Failure> {
    let now = ctx.state.clock.now();
    let path = ctx.state.db.path().to_owned();
    let o = ctx
        .state
        .db
        .read(move |c| overview::read(c, &path, now))
        .await?;
    let t = ctx.lang.text();
    let page = OverviewPage {
        chart: chart::bars(&o.logins_per_day, t.logins_per_day),
        database_size: bytes_text(o.database_bytes),
        o,
        wechat_errors: ctx.state.metrics.wechat_errors_last_day(),
        litestream: ctx.state.config.litestream,
        f: signed.frame(ctx, "overview"),
    };
    render(StatusCode::OK, &page)
}

/// A size in bytes as people read it: `812 KiB`, `3.4 MiB`.
fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

// ---- users ----

struct UserLine {
    id: String,
    nickname: String,
    apps: String,
    created_at: String,
    banned: bool,
}

#[derive(Template)]
#[template(path = "console/users.html")]
struct UsersPage<'a> {
    f: Frame<'a>,
    q: String,
    users: Vec<UserLine>,
    next: Option<String>,
}

#[derive(Deserialize)]
struct UsersQuery {
    #[serde(default)]
    q: String,
    before: Option<String>,
}

async fn users_page(ctx: &Ctx<'_>, signed: &Signed) -> Result<Response, Failure> {
    let query: UsersQuery = serde_urlencoded::from_str(&ctx.request.query)
        .map_err(|e| Failure::BadForm(format!("the query is malformed: {e}")))?;
    let now = ctx.state.clock.now();
    let (text, before) = (query.q.clone(), query.before.clone());
    let rows = ctx
        .state
        .db
        .read(move |c| Ok(admin::search_users(c, &text, before.as_deref(), PAGE)))
        .await??;
    let next = (rows.len() == PAGE as usize)
        .then(|| rows.last())
        .flatten()
        .map(|last| {
            format!(
                "/admin/users?{}",
                serde_urlencoded::to_string([("q", query.q.as_str()), ("before", &last.public_id)])
                    .unwrap_or_default()
            )
        });
    let users = rows
        .iter()
        .map(|u| UserLine {
            id: u.public_id.clone(),
            nickname: u.nickname.clone().unwrap_or_else(|| "-".into()),
            apps: u.apps.join(", "),
            created_at: rfc3339(u.created_at),
            banned: u.is_banned(now),
        })
        .collect();
    let page = UsersPage {
        f: signed.frame(ctx, "users"),
        q: query.q,
        users,
        next,
    };
    render(StatusCode::OK, &page)
}

struct SessionLine {
    id: String,
    status: &'static str,
    live: bool,
    created_at: String,
    last_seen_at: String,
    expires_at: String,
}

struct ConflictLine {
    unionid: String,
    other: String,
}

#[derive(Template)]
#[template(path = "console/user.html")]
struct UserPage<'a> {
    f: Frame<'a>,
    u: UserRecord,
    avatar: Option<String>,
    region: String,
    gender: &'static str,
    banned: bool,
    sessions: Vec<SessionLine>,
    conflicts: Vec<ConflictLine>,
    entries: Vec<Entry>,
}

async fn user_page(ctx: &Ctx<'_>, signed: &Signed, id: &str) -> Result<Response, Failure> {
    let now = ctx.state.clock.now();
    let lookup = id.to_owned();
    let found = ctx
        .state
        .db
        .read(move |c| {
            let loaded = (|| {
                let (row, sessions) = admin::user_sessions(c, UserRef::Id(&lookup))?;
                if row.public_id != lookup {
                    return Ok(Err(row.public_id));
                }
                let banned = row.is_banned(now);
                let record = UserRecord::load(c, row)?;
                let conflicts = merge::conflicts(c)?;
                let entries = audit::page(c, Some(&lookup), None, PAGE)?;
                Ok(Ok((record, banned, sessions, conflicts, entries)))
            })();
            Ok(loaded)
        })
        .await?;
    let (record, banned, sessions, conflicts, entries) = match found {
        Ok(Ok(found)) => found,
        // A merged user's id leads to the user it was merged into.
        Ok(Err(kept)) => return Ok(redirect(&format!("/admin/users/{kept}"))),
        Err(AdminError::Refused(_)) => return Err(Failure::NotFound),
        Err(e) => return Err(e.into()),
    };
    let t = ctx.lang.text();
    let sessions = sessions
        .into_iter()
        .map(|s| {
            let r = SessionRecord::new(s, &record.id, now);
            SessionLine {
                status: match r.status {
                    SessionStatus::Live => t.live,
                    SessionStatus::Expired => t.expired,
                    SessionStatus::Revoked => t.revoked,
                },
                live: r.status == SessionStatus::Live,
                id: r.id,
                created_at: r.created_at,
                last_seen_at: r.last_seen_at,
                expires_at: r.expires_at,
            }
        })
        .collect();
    let conflicts = conflicts
        .into_iter()
        .filter_map(|c| {
            let other = if c.user_id == record.id {
                c.other_user_id
            } else if c.other_user_id == record.id {
                c.user_id
            } else {
                return None;
            };
            Some(ConflictLine {
                unionid: c.unionid,
                other,
            })
        })
        .collect();
    let region = [&record.country, &record.province, &record.city]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    let page = UserPage {
        avatar: record
            .avatar_url
            .clone()
            .filter(|u| u.starts_with("https://") || u.starts_with('/')),
        region: if region.is_empty() {
            "-".into()
        } else {
            region
        },
        gender: usize::try_from(record.gender)
            .ok()
            .and_then(|g| t.genders.get(g))
            .copied()
            .unwrap_or("-"),
        banned,
        sessions,
        conflicts,
        entries,
        u: record,
        f: signed.frame(ctx, "users"),
    };
    render(StatusCode::OK, &page)
}

/// Runs a change in the writer's transaction and sends the browser to `back`.
async fn change<F>(ctx: &Ctx<'_>, back: String, f: F) -> Result<Response, Failure>
where
    F: Fn(&rusqlite::Connection) -> Result<(), AdminError> + Send + Sync + 'static,
{
    admin::through_writer(&ctx.state.db, f).await?;
    Ok(redirect(&back))
}

#[derive(Deserialize)]
struct BanForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    until: String,
}

async fn ban(ctx: &Ctx<'_>, signed: &Signed, id: &str) -> Result<Response, Failure> {
    let BanForm { reason, until, .. } = form(ctx)?;
    let now = ctx.state.clock.now();
    let until = match until.trim() {
        "" => admin::FOREVER,
        text => admin::parse_until(text, now).map_err(Failure::BadForm)?,
    };
    let reason = Some(reason.trim().to_owned()).filter(|r| !r.is_empty());
    let (actor, user) = (signed.actor(ctx), id.to_owned());
    change(ctx, format!("/admin/users/{id}"), move |c| {
        admin::ban(c, &actor, &user, until, reason.as_deref(), now)
    })
    .await
}

async fn unban(ctx: &Ctx<'_>, signed: &Signed, id: &str) -> Result<Response, Failure> {
    let now = ctx.state.clock.now();
    let (actor, user) = (signed.actor(ctx), id.to_owned());
    change(ctx, format!("/admin/users/{id}"), move |c| {
        admin::unban(c, &actor, &user, now)
    })
    .await
}

#[derive(Deserialize)]
struct MergeForm {
    other: String,
}

async fn merge_into(ctx: &Ctx<'_>, signed: &Signed, id: &str) -> Result<Response, Failure> {
    let MergeForm { other, .. } = form(ctx)?;
    let now = ctx.state.clock.now();
    let (actor, keep) = (signed.actor(ctx), id.to_owned());
    change(ctx, format!("/admin/users/{id}"), move |c| {
        merge::merge(c, &actor, &keep, &other, now).map(drop)
    })
    .await
}

async fn revoke_session(ctx: &Ctx<'_>, signed: &Signed, id: &str) -> Result<Response, Failure> {
    let now = ctx.state.clock.now();
    let lookup = id.to_owned();
    let owner = ctx
        .state
        .db
        .read(move |c| crate::db::queries::session_by_public_id(c, &lookup))
        .await?
        .ok_or(Failure::NotFound)?;
    let (actor, session) = (signed.actor(ctx), id.to_owned());
    change(
        ctx,
        format!("/admin/users/{}#sessions", owner.user.public_id),
        move |c| admin::revoke_session(c, &actor, &session, now),
    )
    .await
}

// ---- service keys ----

struct ServiceKeyLine {
    id: String,
    name: String,
    scopes: String,
    live: bool,
    created_at: String,
    last_used_at: String,
}

#[derive(Template)]
#[template(path = "console/service_keys.html")]
struct ServiceKeysPage<'a> {
    f: Frame<'a>,
    keys: Vec<ServiceKeyLine>,
    all_scopes: Vec<&'static str>,
    created: Option<&'a str>,
    problem: Option<&'a str>,
}

async fn service_keys_page(
    ctx: &Ctx<'_>,
    signed: &Signed,
    created: Option<&str>,
    problem: Option<&str>,
) -> Result<Response, Failure> {
    let rows = ctx.state.db.read(service_keys::list).await?;
    let keys = rows
        .iter()
        .rev()
        .map(|k| ServiceKeyLine {
            id: k.public_id.clone(),
            name: k.name.clone(),
            scopes: k.scope_list(),
            live: k.is_live(),
            created_at: rfc3339(k.created_at),
            last_used_at: k.last_used_at.map_or_else(|| "-".into(), rfc3339),
        })
        .collect();
    let page = ServiceKeysPage {
        f: signed.frame(ctx, "service-keys"),
        keys,
        all_scopes: Scope::ALL.map(Scope::as_str).to_vec(),
        created,
        problem,
    };
    render(
        if problem.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        &page,
    )
}

async fn create_service_key(ctx: &Ctx<'_>, signed: &Signed) -> Result<Response, Failure> {
    let fields: Vec<(String, String)> = form(ctx)?;
    let name = fields
        .iter()
        .find(|(n, _)| n == "name")
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    let scopes = fields
        .iter()
        .filter(|(n, _)| n == "scope")
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let scopes = match service_keys::parse_scopes(&scopes) {
        Ok(scopes) => scopes,
        Err(problem) => return service_keys_page(ctx, signed, None, Some(&problem)).await,
    };
    let now = ctx.state.clock.now();
    let actor = signed.actor(ctx);
    let created = admin::through_writer(&ctx.state.db, move |c| {
        admin::create_service_key(c, &actor, &name, &scopes, now)
    })
    .await;
    match created {
        // Shown in this answer only: the key is stored as a hash.
        Ok((_, key)) => service_keys_page(ctx, signed, Some(key.expose()), None).await,
        Err(AdminError::ServiceKey(e)) => {
            service_keys_page(ctx, signed, None, Some(&e.to_string())).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn revoke_service_key(ctx: &Ctx<'_>, signed: &Signed, id: &str) -> Result<Response, Failure> {
    let now = ctx.state.clock.now();
    let (actor, key) = (signed.actor(ctx), id.to_owned());
    change(ctx, "/admin/service-keys".into(), move |c| {
        admin::revoke_service_key(c, &actor, &key, now).map(drop)
    })
    .await
}

// ---- signing keys ----

struct SigningKeyLine {
    kid: String,
    usage: &'static str,
    state: &'static str,
    created_at: String,
    retirable: bool,
}

#[derive(Template)]
#[template(path = "console/keys.html")]
struct KeysPage<'a> {
    f: Frame<'a>,
    keys: Vec<SigningKeyLine>,
    note: Option<&'a str>,
}

fn keys_page(ctx: &Ctx<'_>, signed: &Signed, note: Option<&str>) -> Result<Response, Failure> {
    let file = admin::list_keys(&ctx.state.config.data_dir)?;
    let keys = admin::key_listing(&file)
        .into_iter()
        .map(|k| SigningKeyLine {
            retirable: k.retirable(),
            kid: k.kid,
            usage: k.usage,
            state: k.state,
            created_at: rfc3339(k.created_at),
        })
        .collect();
    let page = KeysPage {
        f: signed.frame(ctx, "keys"),
        keys,
        note,
    };
    render(StatusCode::OK, &page)
}

/// Runs a key file change off the async runtime: it writes the file and records the
/// keys in the database, as `wxauth keys` does; the server's key watcher loads it.
async fn key_change<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AdminError> + Send + 'static,
) -> Result<T, Failure> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Failure::Internal(e.to_string()))??)
}

async fn rotate_keys(ctx: &Ctx<'_>, signed: &Signed) -> Result<Response, Failure> {
    let (dir, actor, now) = (
        ctx.state.config.data_dir.clone(),
        signed.actor(ctx),
        ctx.state.clock.now(),
    );
    key_change(move || admin::rotate_key(&dir, &actor, now)).await?;
    Ok(redirect("/admin/keys"))
}

async fn retire_key(ctx: &Ctx<'_>, signed: &Signed, kid: &str) -> Result<Response, Failure> {
    let (dir, actor, now, kid) = (
        ctx.state.config.data_dir.clone(),
        signed.actor(ctx),
        ctx.state.clock.now(),
        kid.to_owned(),
    );
    key_change(move || admin::retire_key(&dir, &actor, &kid, now)).await?;
    Ok(redirect("/admin/keys"))
}

// ---- audit log ----

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage<'a> {
    f: Frame<'a>,
    entries: Vec<Entry>,
    next: Option<String>,
}

#[derive(Deserialize)]
struct AuditQuery {
    before: Option<i64>,
}

async fn audit_page(ctx: &Ctx<'_>, signed: &Signed) -> Result<Response, Failure> {
    let query: AuditQuery = serde_urlencoded::from_str(&ctx.request.query)
        .map_err(|e| Failure::BadForm(format!("the query is malformed: {e}")))?;
    let entries = ctx
        .state
        .db
        .read(move |c| audit::page(c, None, query.before, PAGE))
        .await?;
    let next = (entries.len() == PAGE as usize)
        .then(|| entries.last())
        .flatten()
        .map(|last| format!("/admin/audit?before={}", last.id));
    let page = AuditPage {
        f: signed.frame(ctx, "audit"),
        entries,
        next,
    };
    render(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(bytes_text(0), "0 B");
        assert_eq!(bytes_text(1023), "1023 B");
        assert_eq!(bytes_text(4096), "4.0 KiB");
        assert_eq!(bytes_text(3_565_158), "3.4 MiB");
        assert_eq!(bytes_text(500 * 1024 * 1024), "500 MiB");
    }
}
