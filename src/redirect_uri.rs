//! Which URLs a web login may send a browser back to. An app lists `redirect_uris`; a
//! candidate is allowed when its scheme, host and port equal one entry's and its path
//! lies under that entry's path. Anything a browser or a server behind it might read
//! differently from us (backslashes, encoded separators, userinfo, bare `https:host`) is
//! refused outright rather than interpreted.

use std::fmt;

use url::{Host, Url};

/// The longest redirect URL considered; browsers and proxies disagree beyond this.
pub const MAX_LEN: usize = 2048;

/// One entry of an app's `redirect_uris`: an absolute http(s) URL without query,
/// fragment or userinfo, whose path is a prefix for the URLs it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedRedirect {
    url: Url,
}

impl AllowedRedirect {
    /// Parses a configured entry. Plain `http` is accepted only for a loopback host, so
    /// a login's code never crosses a network in the clear.
    pub fn parse(text: &str) -> Result<AllowedRedirect, String> {
        let url = parse_strict(text)?;
        if text.contains('?') || text.contains('#') {
            return Err(format!("`{text}` must not have a query or a fragment"));
        }
        if url.scheme() == "http" && !is_loopback(&url) {
            return Err(format!(
                "`{text}` must be https (http only for 127.0.0.1, localhost or [::1])"
            ));
        }
        Ok(AllowedRedirect { url })
    }

    /// Whether `candidate` may be redirected to under this entry.
    pub fn allows(&self, candidate: &str) -> bool {
        parse_candidate(candidate).is_some_and(|url| self.allows_url(&url))
    }

    fn allows_url(&self, url: &Url) -> bool {
        url.scheme() == self.url.scheme()
            && same_host(url.host(), self.url.host())
            && url.port_or_known_default() == self.url.port_or_known_default()
            && under(url.path(), self.url.path())
    }

    /// The entry as normalised: scheme and host in lower case, the path at least `/`.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }
}

impl fmt::Display for AllowedRedirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.as_str())
    }
}

/// Whether any of `entries` allows `candidate`. The candidate is parsed once.
pub fn is_allowed(entries: &[AllowedRedirect], candidate: &str) -> bool {
    parse_candidate(candidate).is_some_and(|url| entries.iter().any(|e| e.allows_url(&url)))
}

/// `url` with `pairs` appended to its query, keeping any query it already has: how
/// WeChat, and wxauth after it, hand a code and a state back to a redirect_uri.
pub fn with_query(url: &str, pairs: &[(&str, &str)]) -> Result<String, String> {
    let mut url = Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in pairs {
            query.append_pair(name, value);
        }
    }
    Ok(url.into())
}

/// A candidate as a browser would read it, or `None` when it is not one we accept: a
/// query is fine, a fragment is not (WeChat's redirect would lose it, and so would ours).
fn parse_candidate(text: &str) -> Option<Url> {
    if text.contains('#') {
        return None;
    }
    parse_strict(text).ok()
}

/// The checks entries and candidates share. The `url` crate follows the WHATWG parser,
/// which forgives a lot (`https:evil.com`, `\` for `/`, tabs and newlines dropped); each
/// forgiven form is refused here before it gets that far.
fn parse_strict(text: &str) -> Result<Url, String> {
    if text.len() > MAX_LEN {
        return Err(format!("a redirect URL is at most {MAX_LEN} bytes"));
    }
    if text
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return Err(format!(
            "`{}` holds whitespace, a control character or a backslash",
            text.escape_debug()
        ));
    }
    let (scheme, rest) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not an absolute URL"))?;
    if !(scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http")) {
        return Err(format!("`{text}` must be an http or https URL"));
    }
    // Exactly two slashes: the parser would also take one, three or none.
    if !rest.starts_with("//") || rest[2..].starts_with('/') {
        return Err(format!("`{text}` must be written `{scheme}://host/path`"));
    }
    // Encoded separators and dots mean different paths to different servers, and an
    // encoded `%` invites a second decoding; none belongs in a redirect's path.
    let before_query = &rest[..rest.find('?').unwrap_or(rest.len())];
    let lower = before_query.to_ascii_lowercase();
    if ["%2f", "%5c", "%2e", "%25"]
        .iter()
        .any(|e| lower.contains(e))
    {
        return Err(format!(
            "`{text}` has an encoded `/`, `\\`, `.` or `%` before its query"
        ));
    }
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if url.host().is_none() {
        return Err(format!("`{text}` has no host"));
    }
    // `https://@host/` parses with an empty user name, so look at the text as well.
    let authority = &before_query[2..];
    let authority = &authority[..authority.find('/').unwrap_or(authority.len())];
    if !url.username().is_empty() || url.password().is_some() || authority.contains('@') {
        return Err(format!("`{text}` must not carry a user name or password"));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d == "localhost",
        Some(Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Hosts compare as the parser normalised them: domains in lower case and IDNA's ASCII
/// form, addresses by value.
fn same_host(a: Option<Host<&str>>, b: Option<Host<&str>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Whether `path` lies under `prefix`: an entry path ending in `/` is a directory and
/// allows what starts with it; any other allows itself and what lies below it, so `/app`
/// allows `/app` and `/app/x` but not `/application`.
fn under(path: &str, prefix: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> AllowedRedirect {
        AllowedRedirect::parse(text).unwrap()
    }

    #[test]
    fn the_same_origin_under_the_path_is_allowed() {
        let e = entry("https://h5.example.com/app");
        assert!(e.allows("https://h5.example.com/app"));
        assert!(e.allows("https://h5.example.com/app/"));
        assert!(e.allows("https://h5.example.com/app/deep/page.html"));
        assert!(e.allows("https://h5.example.com:443/app/x"));
        let root = entry("https://h5.example.com");
        assert_eq!(root.as_str(), "https://h5.example.com/");
        assert!(root.allows("https://h5.example.com/anything"));
        let dir = entry("https://h5.example.com/app/");
        assert!(dir.allows("https://h5.example.com/app/x"));
        assert!(!dir.allows("https://h5.example.com/app"));
    }

    #[test]
    fn a_query_is_kept_and_allowed_but_a_fragment_is_not() {
        let e = entry("https://h5.example.com/app");
        assert!(e.allows("https://h5.example.com/app/?from=menu&x=%2F"));
        assert!(!e.allows("https://h5.example.com/app/#top"));
        assert!(!e.allows("https://h5.example.com/app/#"));
        let url = with_query(
            "https://h5.example.com/app?from=menu",
            &[("code", "dev:a b")],
        );
        assert_eq!(
            url.unwrap(),
            "https://h5.example.com/app?from=menu&code=dev%3Aa+b"
        );
        assert_eq!(
            with_query("https://h5.example.com/app", &[("state", "s1")]).unwrap(),
            "https://h5.example.com/app?state=s1"
        );
    }

    #[test]
    fn look_alike_hosts_are_refused() {
        let e = entry("https://h5.example.com/");
        assert!(!e.allows("https://h5.example.com.evil.com/"));
        assert!(!e.allows("https://evil.com/h5.example.com/"));
        assert!(!e.allows("https://h5.example.com./"));
        assert!(!e.allows("https://xh5.example.com/"));
    }

    #[test]
    fn userinfo_is_refused() {
        let e = entry("https://h5.example.com/");
        assert!(!e.allows("https://h5.example.com@evil.com/"));
        assert!(!e.allows("https://user:pass@h5.example.com/"));
        assert!(!e.allows("https://user@h5.example.com/"));
        assert!(!e.allows("https://@h5.example.com/"));
        assert!(AllowedRedirect::parse("https://user@h5.example.com/").is_err());
    }

    #[test]
    fn scheme_relative_and_slashless_forms_are_refused() {
        let e = entry("https://h5.example.com/");
        assert!(!e.allows("//h5.example.com/"));
        assert!(!e.allows("//evil.com"));
        assert!(!e.allows("https:evil.com"));
        assert!(!e.allows("https:h5.example.com/"));
        assert!(!e.allows("https:/h5.example.com/"));
        assert!(!e.allows("https:///h5.example.com/"));
        assert!(!e.allows("/relative/path"));
        assert!(!e.allows(""));
    }

    #[test]
    fn backslashes_are_refused() {
        let e = entry("https://h5.example.com/");
        assert!(!e.allows("https://h5.example.com\\@evil.com/"));
        assert!(!e.allows("https:\\\\evil.com"));
        assert!(!e.allows("https://h5.example.com/\\evil.com"));
        assert!(AllowedRedirect::parse("https:\\\\h5.example.com/").is_err());
    }

    #[test]
    fn encoded_separators_and_dots_are_refused() {
        let e = entry("https://h5.example.com/app");
        assert!(!e.allows("https://h5.example.com/app%2F..%2Fother"));
        assert!(!e.allows("https://h5.example.com/app/%2e%2e/other"));
        assert!(!e.allows("https://h5.example.com/app/%2E%2E/other"));
        assert!(!e.allows("https://h5.example.com/app/.%2e/other"));
        assert!(!e.allows("https://h5.example.com/app/%5c..%5cother"));
        assert!(!e.allows("https://h5.example.com/app/%252f"));
    }

    #[test]
    fn dot_segments_are_judged_after_normalisation() {
        let e = entry("https://h5.example.com/app");
        assert!(!e.allows("https://h5.example.com/app/../other"));
        assert!(!e.allows("https://h5.example.com/app/./../other"));
        assert!(e.allows("https://h5.example.com/app/x/../y"));
    }

    #[test]
    fn another_port_or_scheme_is_refused() {
        let e = entry("https://h5.example.com/");
        assert!(!e.allows("https://h5.example.com:8443/"));
        assert!(!e.allows("http://h5.example.com/"));
        assert!(!e.allows("javascript:alert(1)"));
        assert!(!e.allows("javascript://h5.example.com/%0aalert(1)"));
        assert!(!e.allows("data:text/html,hi"));
        assert!(!e.allows("ftp://h5.example.com/"));
        let local = entry("http://127.0.0.1:8080/");
        assert!(local.allows("http://127.0.0.1:8080/examples/h5/"));
        assert!(!local.allows("http://127.0.0.1:8081/"));
        assert!(!local.allows("http://127.0.0.1/"));
        assert!(!local.allows("https://127.0.0.1:8080/"));
    }

    #[test]
    fn the_path_prefix_is_a_whole_segment() {
        let e = entry("https://h5.example.com/app");
        assert!(!e.allows("https://h5.example.com/application"));
        assert!(!e.allows("https://h5.example.com/ap"));
        assert!(!e.allows("https://h5.example.com/"));
        assert!(!e.allows("https://h5.example.com/APP"));
    }

    #[test]
    fn whitespace_control_characters_and_length_are_refused() {
        let e = entry("https://h5.example.com/");
        assert!(!e.allows("https://h5.example.com/a b"));
        assert!(!e.allows(" https://h5.example.com/"));
        assert!(!e.allows("https://h5.example.com/\n"));
        assert!(!e.allows("https://h5.exa\tmple.com/"));
        assert!(!e.allows("https://h5.example.com/\u{0}"));
        assert!(!e.allows("https://h5.example.com/\u{3000}"));
        let long = format!("https://h5.example.com/{}", "a".repeat(MAX_LEN));
        assert!(!e.allows(&long));
        let just_fits = format!(
            "https://h5.example.com/{}",
            "a".repeat(MAX_LEN - "https://h5.example.com/".len())
        );
        assert!(e.allows(&just_fits));
    }

    #[test]
    fn hosts_compare_without_case_and_through_idna() {
        let e = entry("https://H5.Example.COM/app");
        assert_eq!(e.as_str(), "https://h5.example.com/app");
        assert!(e.allows("HTTPS://H5.EXAMPLE.COM/app/x"));
        let idn = entry("https://例子.测试/");
        assert!(idn.allows("https://xn--fsqu00a.xn--0zwm56d/page"));
        assert!(idn.allows("https://例子.测试/page"));
        let v6 = entry("http://[::1]:8080/");
        assert!(v6.allows("http://[0:0:0:0:0:0:0:1]:8080/x"));
    }

    #[test]
    fn entries_are_checked_when_configured() {
        for bad in [
            "http://h5.example.com/",
            "https://h5.example.com/?a=1",
            "https://h5.example.com/?",
            "https://h5.example.com/#x",
            "https://user@h5.example.com/",
            "h5.example.com/app",
            "/app",
            "ftp://h5.example.com/",
            "https://",
            "http://127.0.0.2/",
            "http://localhost.evil.com/",
        ] {
            assert!(AllowedRedirect::parse(bad).is_err(), "{bad}");
        }
        for good in [
            "http://127.0.0.1:8080/",
            "http://localhost:3000/app",
            "http://[::1]/",
            "https://h5.example.com",
        ] {
            assert!(AllowedRedirect::parse(good).is_ok(), "{good}");
        }
    }

    proptest::proptest! {
        #[test]
        fn random_text_never_panics(candidate in ".{0,300}") {
            let _ = entry("https://h5.example.com/app").allows(&candidate);
            let _ = AllowedRedirect::parse(&candidate);
        }

        #[test]
        fn what_is_allowed_is_what_a_browser_would_visit(
            tail in "(/app)?[/\\\\@:.%25a-fA-F0-9pP?#\t ]{0,24}"
        ) {
            let candidate = format!("https://h5.example.com{tail}");
            // Whatever slipped past the text checks, the parser's reading must be inside
            // the entry.
            if entry("https://h5.example.com/app").allows(&candidate) {
                let url = Url::parse(&candidate).unwrap();
                proptest::prop_assert_eq!(url.host_str(), Some("h5.example.com"));
                proptest::prop_assert_eq!(url.port_or_known_default(), Some(443));
                proptest::prop_assert!(url.path() == "/app" || url.path().starts_with("/app/"));
                proptest::prop_assert!(url.fragment().is_none());
            }
        }
    }

    #[test]
    fn any_entry_of_a_list_may_allow() {
        let entries = [
            entry("https://h5.example.com/app"),
            entry("http://localhost:8080/"),
        ];
        assert!(is_allowed(&entries, "http://localhost:8080/x"));
        assert!(is_allowed(&entries, "https://h5.example.com/app/y"));
        assert!(!is_allowed(&entries, "https://h5.example.com/other"));
        assert!(!is_allowed(&[], "https://h5.example.com/app"));
    }
}
