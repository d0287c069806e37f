//! The shipped Traefik configuration (deploy/traefik/). Traefik is not packaged by Debian,
//! so it is not run here; instead both files are parsed and checked for what forward
//! auth depends on: the middleware's address and headers, and routers, services,
//! entry points and the certificate resolver that refer to each other consistently.

use serde_norway::Value;

const AUTH_HEADERS: [&str; 5] = [
    "X-Auth-User-Id",
    "X-Auth-Openid",
    "X-Auth-Unionid",
    "X-Auth-Appid",
    "X-Auth-Session-Id",
];

fn load(file: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/traefik")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("not a list: {value:?}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

fn keys(value: &Value) -> Vec<&str> {
    value
        .as_mapping()
        .unwrap_or_else(|| panic!("not a mapping: {value:?}"))
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect()
}

#[test]
fn the_forward_auth_middleware_asks_wxauth_and_passes_its_headers() {
    let dynamic = load("dynamic.yml");
    let forward = &dynamic["http"]["middlewares"]["wxauth-forward"]["forwardAuth"];
    assert_eq!(
        forward["address"].as_str(),
        Some("http://127.0.0.1:8080/v1/auth/forward")
    );
    assert_eq!(strings(&forward["authResponseHeaders"]), AUTH_HEADERS);
    assert_eq!(strings(&forward["authRequestHeaders"]), ["Authorization"]);
    let regex = forward["authResponseHeadersRegex"].as_str().unwrap();
    assert_eq!(regex, "^X-Auth-");
    assert!(AUTH_HEADERS.iter().all(|h| h.starts_with("X-Auth-")));
    assert_ne!(forward["trustForwardHeader"].as_bool(), Some(true));

    // wxauth's own service is where the middleware sends its checks.
    let wxauth = &dynamic["http"]["services"]["wxauth"]["loadBalancer"]["servers"][0]["url"];
    let address = forward["address"].as_str().unwrap();
    assert!(address.starts_with(wxauth.as_str().unwrap()), "{address}");
}

#[test]
fn routers_guard_the_backend_and_hide_the_backend_side_routes() {
    let dynamic = load("dynamic.yml");
    let http = &dynamic["http"];
    let backend = &http["routers"]["backend"];
    assert_eq!(strings(&backend["middlewares"]), ["wxauth-forward"]);
    assert!(
        backend["rule"]
            .as_str()
            .unwrap()
            .contains("PathPrefix(`/api/`)")
    );
    let wxauth = &http["routers"]["wxauth"];
    let rule = wxauth["rule"].as_str().unwrap();
    assert!(rule.contains("PathPrefix(`/v1/`)"), "{rule}");
    assert!(rule.contains("!Path(`/v1/auth/forward`)"), "{rule}");
    assert!(rule.contains("!Path(`/v1/introspect`)"), "{rule}");
    for document in ["openid-configuration", "jwks.json"] {
        assert!(
            rule.contains(&format!("|| Path(`/.well-known/{document}`)")),
            "{rule}"
        );
    }
    assert!(
        wxauth["middlewares"].is_null(),
        "wxauth checks its own tokens"
    );

    let services = keys(&http["services"]);
    let middlewares = keys(&http["middlewares"]);
    let statics = load("traefik.yml");
    let entry_points = keys(&statics["entryPoints"]);
    let resolvers = keys(&statics["certificatesResolvers"]);
    for name in keys(&http["routers"]) {
        let router = &http["routers"][name];
        let service = router["service"].as_str().unwrap();
        assert!(
            services.contains(&service),
            "{name} uses unknown service {service}"
        );
        if !router["middlewares"].is_null() {
            for m in strings(&router["middlewares"]) {
                assert!(
                    middlewares.contains(&m),
                    "{name} uses unknown middleware {m}"
                );
            }
        }
        for e in strings(&router["entryPoints"]) {
            assert!(
                entry_points.contains(&e),
                "{name} uses unknown entry point {e}"
            );
        }
        let resolver = router["tls"]["certResolver"].as_str().unwrap();
        assert!(
            resolvers.contains(&resolver),
            "{name} uses unknown resolver {resolver}"
        );
    }
    let file = statics["providers"]["file"]["filename"].as_str().unwrap();
    assert!(file.ends_with("/dynamic.yml"), "{file}");
}
