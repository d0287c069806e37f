//! What keeps the console safe: its cookies and their flags, the CSRF token and Origin
//! check on every change, sign-in rate limits, and the headers every page carries.

use std::net::IpAddr;

use subtle::ConstantTimeEq;
use warp::http::header::{self, HeaderMap, HeaderValue};
use warp::reply::Response;

use crate::config::Rate;
use crate::http::ratelimit::RateLimiter;
use crate::ops::admins;

/// The console's policy: only its own scripts, styles and forms; avatars from itself and
/// WeChat's image hosts; never framed.
const CSP: &str = "default-src 'self'; img-src 'self' https://thirdwx.qlogo.cn \
                   https://wx.qlogo.cn; form-action 'self'; frame-ancestors 'none'; \
                   base-uri 'none'";

/// Sign-in attempts allowed per client address.
const SIGN_IN_PER_IP: Rate = Rate {
    count: 20,
    per: std::time::Duration::from_secs(15 * 60),
};
/// Sign-in attempts allowed per admin name, from anywhere.
const SIGN_IN_PER_NAME: Rate = Rate {
    count: 5,
    per: std::time::Duration::from_secs(15 * 60),
};

/// The limits on password guesses.
pub struct SignInLimits {
    by_ip: RateLimiter,
    by_name: RateLimiter,
}

impl Default for SignInLimits {
    fn default() -> Self {
        SignInLimits {
            by_ip: RateLimiter::new(SIGN_IN_PER_IP),
            by_name: RateLimiter::new(SIGN_IN_PER_NAME),
        }
    }
}

impl SignInLimits {
    /// Counts an attempt to sign in as `name` from `ip`; `Err` carries the seconds until
    /// one would be allowed.
    pub fn check(&self, ip: Option<IpAddr>, name: &str) -> Result<(), u64> {
        let by_ip = self.by_ip.check(ip);
        let by_name = self.by_name.check(name);
        match (by_ip, by_name) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(a), Err(b)) => Err(a.max(b).as_secs().max(1)),
            (Err(wait), _) | (_, Err(wait)) => Err(wait.as_secs().max(1)),
        }
    }
}

/// Which cookie: the sign-in, the one that guards the sign-in form, or the language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cookie {
    Session,
    PreSession,
    Lang,
}

impl Cookie {
    /// The cookie's name; under https the `__Host-` prefix makes browsers refuse it from
    /// anywhere but this host, over https, for every path.
    pub fn name(self, secure: bool) -> &'static str {
        match (self, secure) {
            (Cookie::Session, true) => "__Host-wxauth_console",
            (Cookie::Session, false) => "wxauth_console",
            (Cookie::PreSession, true) => "__Host-wxauth_console_form",
            (Cookie::PreSession, false) => "wxauth_console_form",
            (Cookie::Lang, true) => "__Host-wxauth_console_lang",
            (Cookie::Lang, false) => "wxauth_console_lang",
        }
    }

    /// A `Set-Cookie` value giving this cookie `value` for `max_age` seconds (0 deletes
    /// it).
    pub fn set(self, secure: bool, value: &str, max_age: i64) -> HeaderValue {
        let secure_flag = if secure { "; Secure" } else { "" };
        let text = format!(
            "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure_flag}",
            self.name(secure)
        );
        HeaderValue::from_str(&text).expect("cookie values are base64url or a language tag")
    }

    /// This cookie's value in the request's `Cookie` headers.
    pub fn read(self, headers: &HeaderMap, secure: bool) -> Option<String> {
        let name = self.name(secure);
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_owned())
    }
}

/// Whether `form_token` is the CSRF token of the cookie holding `secret`.
pub fn csrf_matches(secret: &str, form_token: &str) -> bool {
    admins::csrf_token(secret)
        .as_bytes()
        .ct_eq(form_token.as_bytes())
        .into()
}

/// Whether `path` may be redirected to after a language switch: a path of the console's
/// own (so never `//host` or `/\host`, which a browser takes for another site), made of
/// characters a `Location` header holds as they are.
pub fn is_console_path(path: &str) -> bool {
    path.starts_with("/admin/")
        && !path.contains('\\')
        && path.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether a state-changing request comes from a console page: its `Origin` is this
/// console's own, as the browser reached it (`scheme://Host`) or as `public_url` names
/// it. Browsers send `Origin` on every POST; a request without one is refused.
pub fn same_origin(headers: &HeaderMap, secure: bool, public_url: Option<&str>) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let scheme = if secure { "https" } else { "http" };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if host.is_some_and(|host| origin == format!("{scheme}://{host}")) {
        return true;
    }
    public_url
        .and_then(|u| url::Url::parse(u).ok())
        .is_some_and(|u| u.origin().ascii_serialization() == origin)
}

/// Adds the headers every console answer carries.
pub fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Setup links carry their secret in the URL: no page may pass it to another site.
    // Not `no-referrer`: with it, browsers send `Origin: null` on the console's own
    // form posts, and the Origin check could not tell them from a forged one.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn only_the_consoles_own_paths_are_redirected_to() {
        assert!(is_console_path("/admin/"));
        assert!(is_console_path("/admin/users?q=%E6%9C%88&before=3"));
        for path in [
            "",
            "/",
            "//evil.example/admin/",
            "/\\evil.example",
            "/admin/\\x",
            "https://evil.example/admin/",
            "/admin/x\r\nSet-Cookie: a=b",
            "/admin/a b",
            "/admin/月",
            "/administrator",
        ] {
            assert!(!is_console_path(path), "{path:?}");
        }
    }

    #[test]
    fn only_the_consoles_own_origin_passes() {
        let h = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert!(same_origin(&h, false, None));
        assert!(!same_origin(&h, true, None));
        let evil = headers(&[("host", "127.0.0.1:8080"), ("origin", "http://evil.test")]);
        assert!(!same_origin(&evil, false, None));
        let none = headers(&[("host", "127.0.0.1:8080")]);
        assert!(!same_origin(&none, false, None));
        let proxied = headers(&[
            ("host", "wxauth:8080"),
            ("origin", "https://auth.example.com"),
        ]);
        assert!(same_origin(
            &proxied,
            true,
            Some("https://auth.example.com/")
        ));
        assert!(!same_origin(
            &proxied,
            true,
            Some("https://other.example.com")
        ));
    }

    #[test]
    fn cookies_are_read_by_their_exact_name() {
        let h = headers(&[(
            "cookie",
            "wxauth_console_form=b; wxauth_console=a; wxauth_console_lang=zh-CN",
        )]);
        assert_eq!(Cookie::Session.read(&h, false).as_deref(), Some("a"));
        assert_eq!(Cookie::PreSession.read(&h, false).as_deref(), Some("b"));
        assert_eq!(Cookie::Lang.read(&h, false).as_deref(), Some("zh-CN"));
        assert_eq!(Cookie::Session.read(&h, true), None);
    }

    #[test]
    fn cookies_carry_their_flags() {
        let plain = Cookie::Session.set(false, "abc", 60);
        assert_eq!(
            plain.to_str().unwrap(),
            "wxauth_console=abc; Path=/; Max-Age=60; HttpOnly; SameSite=Strict"
        );
        let secure = Cookie::Session.set(true, "abc", 60);
        assert_eq!(
            secure.to_str().unwrap(),
            "__Host-wxauth_console=abc; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
    }

    #[test]
    fn the_csrf_token_must_be_the_cookies_own() {
        let token = admins::csrf_token("secret");
        assert!(csrf_matches("secret", &token));
        assert!(!csrf_matches("other", &token));
        assert!(!csrf_matches("secret", ""));
    }

    #[test]
    fn sign_in_attempts_are_limited_per_name_and_per_address() {
        let limits = SignInLimits::default();
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..SIGN_IN_PER_NAME.count {
            assert!(limits.check(Some(ip), "alice").is_ok());
        }
        assert!(limits.check(Some(ip), "alice").is_err());
        // Another address guessing the same name is refused too.
        assert!(
            limits
                .check(Some("198.51.100.1".parse().unwrap()), "alice")
                .is_err()
        );
        // The address has attempts left for other names, up to its own limit.
        let mut allowed = 0;
        for i in 0..SIGN_IN_PER_IP.count {
            if limits.check(Some(ip), &format!("name{i}")).is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, SIGN_IN_PER_IP.count - SIGN_IN_PER_NAME.count - 1);
    }
}
