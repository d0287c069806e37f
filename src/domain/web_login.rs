//! Web login through WeChat's OAuth pages, for Official Account H5 pages and websites:
//! the browser is sent to WeChat with a `state` that wxauth signed and bound to it by a
//! cookie, comes back with a code that wxauth exchanges for the person's identity, and
//! reaches the page's `redirect_uri` with a one-time code that the page trades for a
//! session, as a mini program's login would give.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest;
use rusqlite::{OptionalExtension, params};

use crate::clock::Clock;
use crate::config::{AppConfig, AppKind};
use crate::db::Db;
use crate::db::queries::{self, LoginWritten, NewLogin, ProfileFill, SessionOwner};
use crate::domain::error::Error;
use crate::domain::login::{LoginOutcome, SessionPolicy, mask, tagged_hash, validate_code};
use crate::domain::sessions::{self, banned};
use crate::keys::crypto::{DataKeys, WEB_STATE_TAG_LEN, hex};
use crate::keys::random;
use crate::keys::token::{SessionSecret, SigningKeys};
use crate::redirect_uri;
use crate::wechat::client::WeChatClient;

/// How long a state given to WeChat may come back: WeChat's pages are quick, a person
/// deciding may not be.
pub const STATE_LIFETIME_SECS: i64 = 600;
/// How long the page has to trade its one-time code.
pub const CODE_LIFETIME_SECS: i64 = 60;
/// The cookie that binds a state to the browser it was given to.
pub const BROWSER_COOKIE: &str = "wxauth_web_login";
/// The longest `state` a page may ask wxauth to hand back.
const CLIENT_STATE_MAX: usize = 128;
/// Random bytes in a state id, a browser binding and a one-time code.
const STATE_ID_LEN: usize = 16;
const BINDING_LEN: usize = 32;
const CODE_LEN: usize = 32;

/// What a page asks `GET /v1/oauth/wechat/authorize` for.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub redirect_uri: String,
    /// The page's own state, handed back unchanged.
    pub state: Option<String>,
    pub scope: Option<String>,
}

/// Where to send the browser to authorize, and the cookie that binds the login to it.
#[derive(Debug, Clone)]
pub struct Started {
    /// WeChat's authorize (or QR login) page, with WeChat's parameters.
    pub location: String,
    /// The value of [`BROWSER_COOKIE`]: the browser's own, or a new one to set.
    pub binding: String,
}

/// Where a callback sends the browser: the page, with a one-time code or an error.
#[derive(Debug)]
pub struct Returned {
    pub redirect_uri: String,
    pub client_state: Option<String>,
    /// The one-time code, or why the login failed.
    pub result: Result<String, Error>,
}

/// Web logins: what they use.
pub struct WebLogins {
    db: Arc<Db>,
    wechat: WeChatClient,
    clock: Arc<dyn Clock>,
    data_keys: Arc<DataKeys>,
    keys: Arc<SigningKeys>,
    policy: SessionPolicy,
    /// Where WeChat sends the browser back: `<public_url>/v1/oauth/wechat/callback`.
    callback_url: String,
    /// WeChat's page host (`wechat_open_url`).
    open_url: String,
}

impl std::fmt::Debug for WebLogins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebLogins")
            .field("callback_url", &self.callback_url)
            .finish_non_exhaustive()
    }
}

impl WebLogins {
    /// Web logins recorded in `db`, with WeChat's pages at `open_url` sending browsers
    /// back to `public_url`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: Arc<Db>,
        wechat: WeChatClient,
        clock: Arc<dyn Clock>,
        data_keys: Arc<DataKeys>,
        keys: Arc<SigningKeys>,
        policy: SessionPolicy,
        public_url: &str,
        open_url: &str,
    ) -> WebLogins {
        WebLogins {
            db,
            wechat,
            clock,
            data_keys,
            keys,
            policy,
            callback_url: format!(
                "{}/v1/oauth/wechat/callback",
                public_url.trim_end_matches('/')
            ),
            open_url: open_url.trim_end_matches('/').to_owned(),
        }
    }

    /// Checks a page's request and starts a login: records it, and says where to send the
    /// browser. `browser` is the binding cookie the browser already has, if any.
    pub async fn authorize(
        &self,
        app: &AppConfig,
        request: AuthorizeRequest,
        browser: Option<&str>,
    ) -> Result<Started, Error> {
        let scope = checked_scope(app, request.scope.as_deref())?;
        if !redirect_uri::is_allowed(&app.redirect_uris, &request.redirect_uri) {
            return Err(Error::RedirectNotAllowed(format!(
                "`redirect_uri` is not among the redirect_uris of app {}",
                app.appid
            )));
        }
        if let Some(state) = &request.state
            && (state.chars().count() > CLIENT_STATE_MAX || state.chars().any(char::is_control))
        {
            return Err(Error::invalid(format!(
                "`state` must be at most {CLIENT_STATE_MAX} characters, none of them control characters"
            )));
        }
        let binding = match browser.filter(|b| is_base64url_of(BINDING_LEN, b)) {
            Some(binding) => binding.to_owned(),
            None => URL_SAFE_NO_PAD.encode(random::bytes::<BINDING_LEN>()),
        };
        let id = random::bytes::<STATE_ID_LEN>();
        let wechat_state = format!("{}{}", hex(&id), hex(&self.data_keys.web_state_tag(&id)));
        let now = self.clock.now();
        let (state_hash, browser_hash) = (sha256(&id), sha256(binding.as_bytes()));
        let (appid, redirect_uri, client_state) = (
            app.appid.clone(),
            request.redirect_uri.clone(),
            request.state.clone(),
        );
        self.db
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO web_logins (state_hash, browser_hash, appid, scope, \
                     redirect_uri, client_state, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    &state_hash[..],
                    &browser_hash[..],
                    appid,
                    scope,
                    redirect_uri,
                    client_state,
                    now + STATE_LIFETIME_SECS
                ])?;
                Ok(())
            })
            .await?;
        let page = match app.kind {
            AppKind::Website => "connect/qrconnect",
            _ => "connect/oauth2/authorize",
        };
        // WeChat reads its parameters in this order, and wants the fragment.
        let location = format!(
            "{}/{page}?appid={}&redirect_uri={}&response_type=code&scope={scope}&state={wechat_state}#wechat_redirect",
            self.open_url,
            encode(&app.appid),
            encode(&self.callback_url),
        );
        Ok(Started { location, binding })
    }

    /// Handles WeChat's return: checks the state and that it came back to the browser
    /// it was given to (an error here answers the browser directly), then logs the
    /// person in and says where to send the browser (with an error, should that fail).
    pub async fn callback(
        &self,
        apps: &[AppConfig],
        code: Option<&str>,
        state: Option<&str>,
        browser: Option<&str>,
    ) -> Result<Returned, Error> {
        let bad_state = || {
            Error::InvalidState(
                "the login's state is missing, forged, expired, already used or not from \
                 this browser; start the login again",
            )
        };
        let id = state
            .and_then(|s| self.verified_state_id(s))
            .ok_or_else(bad_state)?;
        let browser_hash = browser
            .filter(|b| is_base64url_of(BINDING_LEN, b))
            .map(|b| sha256(b.as_bytes()))
            .ok_or_else(bad_state)?;
        let now = self.clock.now();
        let state_hash = sha256(&id);
        let pending = self
            .db
            .write(move |c| {
                let row = c
                    .prepare_cached(
                        "UPDATE web_logins SET used_at = ?3 WHERE state_hash = ?1 \
                         AND browser_hash = ?2 AND used_at IS NULL AND expires_at > ?3 \
                         RETURNING id, appid, scope, redirect_uri, client_state",
                    )?
                    .query_row(params![&state_hash[..], &browser_hash[..], now], |r| {
                        Ok(Pending {
                            row: r.get(0)?,
                            appid: r.get(1)?,
                            scope: r.get(2)?,
                            redirect_uri: r.get(3)?,
                            client_state: r.get(4)?,
                        })
                    })
                    .optional()?;
                Ok(row)
            })
            .await?
            .ok_or_else(bad_state)?;
        let result = match apps.iter().find(|a| a.appid == pending.appid) {
            Some(app) => self.sign_in(app, &pending, code).await,
            None => Err(Error::UnknownApp(
                "the login's app is no longer configured on this server",
            )),
        };
        if let Err(e) = &result {
            tracing::info!(app = %pending.appid, error = %e, "web login failed");
        }
        Ok(Returned {
            redirect_uri: pending.redirect_uri,
            client_state: pending.client_state,
            result,
        })
    }

    /// The state id, if `state` is one wxauth made and signed.
    fn verified_state_id(&self, state: &str) -> Option<[u8; STATE_ID_LEN]> {
        if state.len() != 2 * (STATE_ID_LEN + WEB_STATE_TAG_LEN) {
            return None;
        }
        let (id, tag) = state.split_at(2 * STATE_ID_LEN);
        let id: [u8; STATE_ID_LEN] = unhex(id)?.try_into().ok()?;
        let tag = unhex(tag)?;
        self.data_keys
            .web_state_tag_matches(&id, &tag)
            .then_some(id)
    }

    /// Exchanges WeChat's code for the person, records the login and a one-time code for
    /// the page; returns that code.
    async fn sign_in(
        &self,
        app: &AppConfig,
        pending: &Pending,
        code: Option<&str>,
    ) -> Result<String, Error> {
        let code = code.ok_or(Error::invalid(
            "WeChat sent no `code`: the person did not agree to log in",
        ))?;
        validate_code(code)?;
        let grant = self.wechat.oauth_access_token(app, code).await?;
        if grant.is_snapshot_user {
            return Err(Error::SnapshotUser);
        }
        let (unionid, profile) = if pending.scope == "snsapi_base" {
            (grant.unionid.clone(), None)
        } else {
            let info = self
                .wechat
                .userinfo(&grant.access_token, &grant.openid)
                .await?;
            (
                grant.unionid.clone().or(info.unionid),
                Some(ProfileFill {
                    nickname: Some(info.nickname).filter(|n| !n.is_empty()),
                    avatar_url: info.headimgurl,
                }),
            )
        };
        let mut draw = random::Draw::<
            { SessionSecret::RANDOM_LEN + 2 * random::ORDERED_ID_RANDOM_LEN + CODE_LEN },
        >::from_os();
        let secret = SessionSecret::new(draw.take());
        let now = self.clock.now();
        let max_expires_at = now.saturating_add(self.policy.session_max_age);
        let new = NewLogin {
            user_public_id: random::ordered_id("u_", draw.take()),
            session_public_id: random::ordered_id("s_", draw.take()),
            appid: app.appid.clone(),
            openid: grant.openid,
            unionid,
            secret_hash: secret.lookup_key(),
            session_key: None,
            profile,
            now,
            expires_at: sessions::sliding_expiry(now, self.policy.token_ttl, max_expires_at),
            max_expires_at,
            max_sessions: self.policy.max_sessions,
        };
        let one_time = URL_SAFE_NO_PAD.encode(draw.take::<CODE_LEN>());
        let (code_hash, sealed_sid) = (
            web_code_hash(&one_time),
            mask(&web_code_pad(&one_time), secret.as_bytes()),
        );
        let row = pending.row;
        let written = self
            .db
            .write(move |c| {
                let written = queries::record_login(c, &new)?;
                if let LoginWritten::Session { new_user, .. } = &written {
                    c.prepare_cached(
                        "UPDATE web_logins SET code_hash = ?2, sealed_sid = ?3, new_user = ?4, \
                         code_expires_at = ?5 WHERE id = ?1",
                    )?
                    .execute(params![
                        row,
                        &code_hash[..],
                        sealed_sid,
                        new_user,
                        now + CODE_LIFETIME_SECS
                    ])?;
                }
                Ok(written)
            })
            .await?;
        match written {
            LoginWritten::Banned(user) => Err(banned(&user)),
            LoginWritten::Session {
                session,
                user,
                new_user,
                ..
            } => {
                tracing::info!(user = %user.public_id, session = %session.public_id, new_user, app = %app.appid, "web login");
                Ok(one_time)
            }
        }
    }

    /// Trades a one-time code for its session (`POST /v1/oauth/token`). The same code
    /// within its 60 seconds gives the same session again, so a lost answer can be asked
    /// for again; after that, or for an unknown code, `invalid_code`.
    pub async fn exchange(&self, code: &str) -> Result<LoginOutcome, Error> {
        let unknown = || {
            Error::UnknownCode(
                "the code is unknown, already expired (it lives 60 seconds) or not a \
                 wxauth_code; log in again",
            )
        };
        if !is_base64url_of(CODE_LEN, code) {
            return Err(unknown());
        }
        let now = self.clock.now();
        let code_hash = web_code_hash(code);
        let found = self
            .db
            .read(move |c| {
                let row: Option<(Vec<u8>, bool)> = c
                    .prepare_cached(
                        "SELECT sealed_sid, new_user FROM web_logins \
                         WHERE code_hash = ?1 AND code_expires_at > ?2",
                    )?
                    .query_row(params![&code_hash[..], now], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                Ok(row)
            })
            .await?;
        let (sealed_sid, new_user) = found.ok_or_else(unknown)?;
        let secret = SessionSecret::from_bytes(&mask(&web_code_pad(code), &sealed_sid))
            .ok_or(Error::Broken("a stored web login code is damaged".into()))?;
        let key = secret.lookup_key();
        let SessionOwner {
            session,
            user,
            identity,
        } = self
            .db
            .read(move |c| queries::session_by_secret(c, &key))
            .await?
            .ok_or_else(unknown)?;
        sessions::check_live(&session, now)?;
        if user.is_banned(now) {
            return Err(banned(&user));
        }
        Ok(LoginOutcome {
            token: self.keys.current().sign(&secret),
            session,
            user,
            identity,
            new_user,
        })
    }
}

/// A login waiting for WeChat's return, as its state found it.
#[derive(Debug)]
struct Pending {
    row: i64,
    appid: String,
    scope: String,
    redirect_uri: String,
    client_state: Option<String>,
}

/// The scope to ask WeChat for: the page's, if the app's kind allows it, else the kind's
/// default.
fn checked_scope(app: &AppConfig, scope: Option<&str>) -> Result<&'static str, Error> {
    let allowed: &[&'static str] = match app.kind {
        AppKind::OfficialAccount => &["snsapi_base", "snsapi_userinfo"],
        AppKind::Website => &["snsapi_login"],
        AppKind::MiniProgram => {
            return Err(Error::invalid(format!(
                "app {} is a mini program; web login needs an app of kind \
                 official_account or website",
                app.appid
            )));
        }
    };
    match scope {
        None => Ok(allowed[0]),
        Some(asked) => allowed
            .iter()
            .find(|s| **s == asked)
            .copied()
            .ok_or_else(|| {
                Error::invalid(format!(
                    "`scope` must be {} for app {}",
                    allowed.join(" or "),
                    app.appid
                ))
            }),
    }
}

/// Whether `text` has the shape of `len` random bytes as wxauth writes them (unpadded
/// base64url): a browser binding or a one-time code. Anything else is refused unread.
fn is_base64url_of(len: usize, text: &str) -> bool {
    text.len() == base64::encoded_len(len, false).unwrap_or(0)
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The key a one-time code is stored under: a hash, so the database never holds codes.
fn web_code_hash(code: &str) -> [u8; 32] {
    tagged_hash(b"wxauth/web-code/id", "", code)
}

/// The pad that masks the session's secret in the code's row.
fn web_code_pad(code: &str) -> [u8; 32] {
    tagged_hash(b"wxauth/web-code/seal", "", code)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            let pair = text.get(i..i + 2)?;
            if pair
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                u8::from_str_radix(pair, 16).ok()
            } else {
                None
            }
        })
        .collect()
}

/// Percent-encodes a query parameter's value.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_what_it_does_not_make() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex(&bytes), "0001abff");
        assert_eq!(unhex("0001abff").unwrap(), bytes);
        for bad in ["0", "0g", "AB", "+1", "é0"] {
            assert!(unhex(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn parameters_are_percent_encoded() {
        assert_eq!(
            encode("https://a.example/v1/oauth/wechat/callback?x=1 2"),
            "https%3A%2F%2Fa.example%2Fv1%2Foauth%2Fwechat%2Fcallback%3Fx%3D1%202"
                .replace(' ', "%20")
        );
        assert_eq!(encode("wx1234_-.~"), "wx1234_-.~");
    }

    #[test]
    fn codes_and_bindings_are_checked_for_shape() {
        let code = URL_SAFE_NO_PAD.encode([7u8; CODE_LEN]);
        assert!(is_base64url_of(CODE_LEN, &code));
        assert!(!is_base64url_of(CODE_LEN, &code[1..]));
        assert!(!is_base64url_of(CODE_LEN, &format!("{}=", &code[1..])));
        assert!(!is_base64url_of(CODE_LEN, &"+".repeat(code.len())));
        assert!(is_base64url_of(
            BINDING_LEN,
            &URL_SAFE_NO_PAD.encode([7u8; BINDING_LEN])
        ));
        assert_ne!(web_code_hash(&code), web_code_pad(&code));
    }
}
