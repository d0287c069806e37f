//! wxauth's access JWTs judged by verifiers that are not wxauth's own code: PyJWT with
//! `PyJWKClient`, and jose with `createRemoteJWKSet` (and the Express middleware built on
//! it), each through the backend example of docs/backend.md in `examples/backend/`, so
//! the code the documentation shows is the code that runs here.
//!
//! Each verifier finds the keys from the issuer alone (OpenID discovery) and must accept
//! a good JWT with the claims wxauth promises, reject an altered, forged, unsigned,
//! expired and wrong-audience one, keep accepting a key that `wxauth keys rotate`
//! replaced while it is published, and reject it once it is gone. Time moves on the
//! server's clock, which starts days before the real one: a JWT issued at the start is
//! expired for a verifier, and good ones are issued after moving the clock to real time.
//!
//! Needs a Python with `PyJWT[crypto]` (`TEST_PYJWT_PYTHON`) and Node with a
//! `node_modules` holding jose (`TEST_JOSE_NODE_MODULES`); `.ci/run` installs both,
//! pinned. Without them a test prints `SKIPPED` and passes, except under `CI`, where that
//! is a failure.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};
use wxauth::clock::Clock;

use common::{APPID, TestServer};

/// The servers' `jwt_ttl`, in seconds.
const TTL: i64 = 60;
/// The servers' `jwt_audience`: not the default, so that a backend left at the default
/// is the wrong audience.
const AUDIENCE: &str = "orders-api";
/// How long a verifier may take over one JWT (a first one includes fetching the keys).
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_accepts_good_jwts_and_rejects_bad_ones() {
    let Some(library) = Library::pyjwt() else {
        return;
    };
    good_and_bad_jwts(&library).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jose_accepts_good_jwts_and_rejects_bad_ones() {
    let Some(library) = Library::jose() else {
        return;
    };
    good_and_bad_jwts(&library).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_follows_a_key_rotation() {
    let Some(library) = Library::pyjwt() else {
        return;
    };
    key_rotation(&library).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jose_follows_a_key_rotation() {
    let Some(library) = Library::jose() else {
        return;
    };
    key_rotation(&library).await;
}

/// docs/backend.md shows the examples these tests run, whole and unchanged.
#[test]
fn the_documentation_shows_the_examples_the_tests_run() {
    let doc = std::fs::read_to_string(root().join("docs/backend.md")).unwrap();
    for (example, fence) in [
        ("examples/backend/python/wxauth_jwt.py", "```python\n"),
        ("examples/backend/node/wxauth-jwt.mjs", "```js\n"),
    ] {
        let code = std::fs::read_to_string(root().join(example)).unwrap();
        assert!(
            doc.contains(&format!("{fence}{code}```\n")),
            "docs/backend.md does not show {example} as it is"
        );
    }
}

async fn good_and_bad_jwts(library: &Library) {
    let (server, issuer) = start_server().await;

    // Issued on the server's clock, which starts days before the real one: by the time
    // a verifier reads it, its exp has long passed.
    let old_session = server.token("dev:ann").await;
    let expired = access_jwt(&server, &old_session).await;
    let expired_claims = claims_of(&expired);
    assert_eq!(
        expired_claims["exp"].as_i64().unwrap() - expired_claims["iat"].as_i64().unwrap(),
        TTL
    );
    assert!(
        expired_claims["exp"].as_i64().unwrap() < unix_now() - TTL,
        "the test clock no longer starts in the past: {expired_claims}"
    );

    clock_to_real_time(&server);
    let session = server.token("dev:ann").await;
    let who = server.session_of(&session).await;
    let good = access_jwt(&server, &session).await;
    let second = access_jwt(&server, &session).await;

    // What a resource server given only the issuer reads first.
    let discovery: Value = server
        .get("/.well-known/openid-configuration", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], issuer.as_str(), "{discovery}");
    let jwks_uri = format!("{issuer}/.well-known/jwks.json");
    assert_eq!(discovery["jwks_uri"], jwks_uri.as_str(), "{discovery}");

    let mut verifier = library.start(&issuer, AUDIENCE, None);
    let answer = verifier.check(&good);
    library.assert_accepted(&answer, "a fresh JWT");
    assert_eq!(
        answer["jwks_uri"],
        jwks_uri.as_str(),
        "keys not found by discovery"
    );
    assert_eq!(
        answer["header"],
        json!({"alg": "ES256", "typ": "at+jwt", "kid": kid_of(&good)})
    );
    let claims = &answer["claims"];
    assert_eq!(claims["iss"], issuer.as_str(), "{claims}");
    assert_eq!(claims["sub"], who["user"]["id"], "{claims}");
    assert_eq!(claims["sid"], who["session"]["id"], "{claims}");
    assert_eq!(claims["appid"], APPID, "{claims}");
    assert_eq!(claims["aud"], AUDIENCE, "{claims}");
    let iat = claims["iat"].as_i64().unwrap();
    assert!((unix_now() - iat).abs() <= 5, "{claims}");
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, TTL, "{claims}");
    assert!(
        claims["jti"].as_str().is_some_and(|jti| !jti.is_empty()),
        "{claims}"
    );
    let answer = verifier.check(&second);
    library.assert_accepted(&answer, "a second JWT of the session");
    assert_ne!(answer["claims"]["jti"], claims["jti"], "two JWTs, one jti");

    let bad = [
        (
            "another user's sub",
            with_claims(&good, |c| c["sub"] = json!("u_000000000000000000000000")),
            Why::Signature,
        ),
        (
            "an exp an hour later",
            with_claims(&good, |c| {
                c["exp"] = json!(c["exp"].as_i64().unwrap() + 3600)
            }),
            Why::Signature,
        ),
        (
            "a signature with one bit flipped",
            flip_bit(&good),
            Why::Signature,
        ),
        (
            "signed by another P-256 key under wxauth's kid",
            forged(&good),
            Why::Signature,
        ),
        ("unsigned, with alg none", unsigned(&good), Why::Algorithm),
        ("expired", expired.clone(), Why::Expired),
    ];
    for (what, jwt, why) in &bad {
        library.assert_rejected(&verifier.check(jwt), *why, what);
    }

    // A backend that expects another audience: here the default, which this server does
    // not use.
    let mut elsewhere = library.start(&issuer, "wxauth", None);
    library.assert_rejected(&elsewhere.check(&good), Why::Audience, "another audience");

    // After logout the session gets no new JWT, but one already issued lives until its
    // exp: verifiers do not ask wxauth (docs/backend.md says so).
    let logout = server
        .http
        .post(server.url("/v1/logout"))
        .bearer_auth(&session)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    let refused = request_jwt(&server, &session).await;
    assert_eq!(refused.status(), 401);
    library.assert_accepted(&verifier.check(&good), "a JWT issued before logout");

    server.stop().await;
}

async fn key_rotation(library: &Library) {
    let (server, issuer) = start_server().await;
    clock_to_real_time(&server);
    let session = server.token("dev:ann").await;
    let before = access_jwt(&server, &session).await;
    let old_kid = kid_of(&before);
    let published_before = published_kids(&server).await;
    assert!(
        published_before.contains(&old_kid),
        "{old_kid} not in {published_before:?}"
    );

    // A backend running since before the rotation, holding the keys of then.
    let mut running = library.start(&issuer, AUDIENCE, None);
    library.assert_accepted(&running.check(&before), "a JWT before the rotation");

    rotate_keys(&server);
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let jwt = access_jwt(&server, &session).await;
        if kid_of(&jwt) != old_kid {
            break jwt;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not sign with a new key after `keys rotate`"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let new_kid = kid_of(&after);
    let published = published_kids(&server).await;
    assert!(
        published.contains(&old_kid) && published.contains(&new_kid),
        "{published:?}"
    );

    // The key a rotation brings in was published before it, so even a backend that
    // fetched the keys seconds earlier (and would not fetch them again so soon for an
    // unknown kid) knows it; and the replaced key still verifies what it signed.
    assert!(
        published_before.contains(&new_kid),
        "{new_kid} was not published before the rotation: {published_before:?}"
    );
    library.assert_accepted(&running.check(&after), "the new key, keys cached before");
    library.assert_accepted(
        &running.check(&before),
        "the replaced key, keys cached before",
    );

    // A backend started after the rotation, given the JWKS address instead of the issuer.
    let jwks_uri = format!("{issuer}/.well-known/jwks.json");
    let mut fresh = library.start(&issuer, AUDIENCE, Some(&jwks_uri));
    library.assert_accepted(
        &fresh.check(&before),
        "the replaced key, keys fetched after",
    );
    library.assert_accepted(&fresh.check(&after), "the new key, keys fetched after");

    // Once every JWT the replaced key signed has expired (jwt_ttl, and a grace minute
    // of wxauth's), the key leaves the JWKS, and a JWT it signed no longer verifies,
    // whatever its exp says: `before` has not yet expired by the real clock.
    server
        .clock
        .advance(Duration::from_secs((TTL + 120) as u64));
    let published = published_kids(&server).await;
    assert!(
        !published.contains(&old_kid) && published.contains(&new_kid),
        "{published:?}"
    );
    let mut later = library.start(&issuer, AUDIENCE, None);
    library.assert_rejected(&later.check(&before), Why::UnknownKey, "a key gone");
    library.assert_accepted(&later.check(&after), "the active key");

    server.stop().await;
}

/// A server with `public_url` set to its own loopback address (so that discovery leads
/// a verifier to its keys), the test's `jwt_ttl` and `jwt_audience`.
async fn start_server() -> (TestServer, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = format!("http://127.0.0.1:{port}");
    let public_url = issuer.clone();
    let server = TestServer::start_with(|layer| {
        layer.listen = Some(SocketAddr::from(([127, 0, 0, 1], port)));
        layer.public_url = Some(public_url);
        layer.jwt_ttl = Some(format!("{TTL}s").parse().unwrap());
        layer.jwt_audience = Some(AUDIENCE.into());
    })
    .await;
    assert_eq!(server.base, issuer);
    (server, issuer)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Moves the server's clock to a second before the real time: PyJWT refuses an `iat`
/// in the future.
fn clock_to_real_time(server: &TestServer) {
    let behind = unix_now() - 1 - server.clock.now();
    assert!(behind >= 0, "the test clock starts after the real time");
    server.clock.advance(Duration::from_secs(behind as u64));
}

/// `POST /v1/token` with the session token.
async fn request_jwt(server: &TestServer, session: &str) -> reqwest::Response {
    server
        .http
        .post(server.url("/v1/token"))
        .bearer_auth(session)
        .send()
        .await
        .unwrap()
}

/// A JWT for the session, insisting on the answer's shape.
async fn access_jwt(server: &TestServer, session: &str) -> String {
    let response = request_jwt(server, session).await;
    let status = response.status();
    let cache_control = response.headers().get("cache-control").cloned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(cache_control.unwrap(), "no-store");
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert_eq!(body["expires_in"], TTL, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// The kids in the server's JWKS, each checked for what verifiers look for.
async fn published_kids(server: &TestServer) -> Vec<String> {
    let jwks: Value = server
        .get("/.well-known/jwks.json", None)
        .await
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("{jwks}"))
        .iter()
        .map(|key| {
            for (field, value) in [
                ("kty", "EC"),
                ("crv", "P-256"),
                ("alg", "ES256"),
                ("use", "sig"),
            ] {
                assert_eq!(key[field], value, "{key}");
            }
            key["kid"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// `wxauth keys rotate` on the running server's data directory.
fn rotate_keys(server: &TestServer) {
    let output = Command::new(env!("CARGO_BIN_EXE_wxauth"))
        .env_clear()
        .args(["keys", "rotate", "--data-dir"])
        .arg(server.dir.path().join("data"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "keys rotate: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn decode_part(jwt: &str, index: usize) -> Value {
    let part = jwt.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn claims_of(jwt: &str) -> Value {
    decode_part(jwt, 1)
}

fn kid_of(jwt: &str) -> String {
    decode_part(jwt, 0)["kid"].as_str().unwrap().to_owned()
}

fn encode(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// `jwt` with its claims changed and its signature kept.
fn with_claims(jwt: &str, change: impl FnOnce(&mut Value)) -> String {
    let (header, _) = jwt.split_once('.').unwrap();
    let signature = jwt.rsplit_once('.').unwrap().1;
    let mut claims = claims_of(jwt);
    change(&mut claims);
    format!("{header}.{}.{signature}", encode(&claims))
}

/// `jwt` with the first bit of its signature flipped.
fn flip_bit(jwt: &str) -> String {
    let (signed, signature) = jwt.rsplit_once('.').unwrap();
    let mut signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    signature[0] ^= 0x80;
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// `jwt`'s header and claims signed with a P-256 key that is not wxauth's: what someone
/// who knows the format but not the key makes.
fn forged(jwt: &str) -> String {
    let (signed, _) = jwt.rsplit_once('.').unwrap();
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let signature = key.sign(&rng, signed.as_bytes()).unwrap();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

/// `jwt`'s claims under `alg: none`, with no signature.
fn unsigned(jwt: &str) -> String {
    let header = json!({"alg": "none", "typ": "at+jwt", "kid": kid_of(jwt)});
    format!("{}.{}.", encode(&header), encode(&claims_of(jwt)))
}

/// Why a verifier must refuse a JWT.
#[derive(Debug, Clone, Copy)]
enum Why {
    /// The signature does not match the claims and the key named.
    Signature,
    /// An algorithm other than ES256.
    Algorithm,
    /// `aud` is not the backend's.
    Audience,
    /// `exp` has passed.
    Expired,
    /// The key named is not in the JWKS.
    UnknownKey,
}

/// A JWT library and what it takes to run the backend example written for it.
enum Library {
    /// PyJWT: `examples/backend/python`, through `tests/verifiers/pyjwt_verifier.py`.
    PyJwt { python: PathBuf },
    /// jose: `examples/backend/node`, copied beside jose's `node_modules`, through
    /// `tests/verifiers/jose_verifier.mjs`.
    Jose {
        node: PathBuf,
        app: tempfile::TempDir,
    },
}

/// `None` after saying why the test is skipped; under `CI`, a failure instead.
fn missing(what: &str, install: &str) -> Option<Library> {
    if std::env::var_os("CI").is_some() {
        panic!("{what}, but CI is set; {install}");
    }
    eprintln!("SKIPPED: {what} ({install})");
    None
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

impl Library {
    fn pyjwt() -> Option<Library> {
        let Some(python) = std::env::var_os("TEST_PYJWT_PYTHON") else {
            return missing(
                "TEST_PYJWT_PYTHON is not set",
                "point it at a Python with PyJWT, as .ci/run does: python3 -m venv DIR && \
                 DIR/bin/pip install 'PyJWT[crypto]', then TEST_PYJWT_PYTHON=DIR/bin/python",
            );
        };
        Some(Library::PyJwt {
            python: PathBuf::from(python),
        })
    }

    fn jose() -> Option<Library> {
        let node = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("node"))
                .find(|candidate| candidate.is_file())
        });
        let Some(node) = node else {
            return missing("node is not installed", "apt-get install -y nodejs");
        };
        let Some(modules) = std::env::var_os("TEST_JOSE_NODE_MODULES") else {
            return missing(
                "TEST_JOSE_NODE_MODULES is not set",
                "point it at a node_modules holding jose, as .ci/run does: npm install \
                 --prefix DIR jose, then TEST_JOSE_NODE_MODULES=DIR/node_modules",
            );
        };
        let modules = PathBuf::from(modules);
        let package: Value = serde_json::from_slice(
            &std::fs::read(modules.join("jose/package.json"))
                .unwrap_or_else(|e| panic!("no jose in {}: {e}", modules.display())),
        )
        .unwrap();
        eprintln!(
            "verifying with jose {}",
            package["version"].as_str().unwrap()
        );
        // The example imports "jose", which Node looks for in a node_modules beside it.
        let app = tempfile::tempdir().unwrap();
        std::fs::copy(
            root().join("examples/backend/node/wxauth-jwt.mjs"),
            app.path().join("wxauth-jwt.mjs"),
        )
        .unwrap();
        std::os::unix::fs::symlink(&modules, app.path().join("node_modules")).unwrap();
        Some(Library::Jose { node, app })
    }

    /// The example, verifying JWTs of `issuer` for `audience`; it finds the keys by
    /// discovery unless given `jwks_uri`.
    fn start(&self, issuer: &str, audience: &str, jwks_uri: Option<&str>) -> Verifier {
        let mut command = match self {
            Library::PyJwt { python } => {
                let mut command = Command::new(python);
                command.arg(root().join("tests/verifiers/pyjwt_verifier.py"));
                command
            }
            Library::Jose { node, app } => {
                let mut command = Command::new(node);
                command
                    .arg(root().join("tests/verifiers/jose_verifier.mjs"))
                    .arg(app.path().join("wxauth-jwt.mjs"));
                command
            }
        };
        command.args([issuer, audience]).args(jwks_uri);
        Verifier::spawn(command)
    }

    /// Insists that the example accepted the JWT (and, for jose, that the middleware let
    /// the request through with the claims).
    fn assert_accepted(&self, answer: &Value, what: &str) {
        assert_eq!(answer["ok"], true, "{what} was refused: {answer}");
        assert!(answer["claims"]["sub"].is_string(), "{what}: {answer}");
        if let Library::Jose { .. } = self {
            let middleware = &answer["middleware"];
            assert_eq!(middleware["next"], true, "{what}: {answer}");
            assert!(middleware["status"].is_null(), "{what}: {answer}");
            assert_eq!(middleware["user"], answer["claims"], "{what}: {answer}");
        }
    }

    /// Insists that the example refused the JWT for `why` (and, for jose, that the
    /// middleware answered 401 without calling the route).
    fn assert_rejected(&self, answer: &Value, why: Why, what: &str) {
        assert_eq!(answer["ok"], false, "{what} was accepted: {answer}");
        let (error, claim) = match (self, why) {
            (Library::PyJwt { .. }, Why::Signature) => ("InvalidSignatureError", None),
            (Library::PyJwt { .. }, Why::Algorithm) => ("InvalidAlgorithmError", None),
            (Library::PyJwt { .. }, Why::Audience) => ("InvalidAudienceError", None),
            (Library::PyJwt { .. }, Why::Expired) => ("ExpiredSignatureError", None),
            (Library::PyJwt { .. }, Why::UnknownKey) => ("PyJWKClientError", None),
            (Library::Jose { .. }, Why::Signature) => {
                ("ERR_JWS_SIGNATURE_VERIFICATION_FAILED", None)
            }
            (Library::Jose { .. }, Why::Algorithm) => ("ERR_JOSE_ALG_NOT_ALLOWED", None),
            (Library::Jose { .. }, Why::Audience) => {
                ("ERR_JWT_CLAIM_VALIDATION_FAILED", Some("aud"))
            }
            (Library::Jose { .. }, Why::Expired) => ("ERR_JWT_EXPIRED", Some("exp")),
            (Library::Jose { .. }, Why::UnknownKey) => ("ERR_JWKS_NO_MATCHING_KEY", None),
        };
        assert_eq!(
            answer["error"], error,
            "{what}, refused for {why:?}: {answer}"
        );
        if let Some(claim) = claim {
            assert_eq!(answer["claim"], claim, "{what}: {answer}");
        }
        if let Library::Jose { .. } = self {
            let middleware = &answer["middleware"];
            assert_eq!(middleware["status"], 401, "{what}: {answer}");
            assert_eq!(middleware["next"], false, "{what}: {answer}");
            assert_eq!(
                middleware["www_authenticate"], r#"Bearer error="invalid_token""#,
                "{what}: {answer}"
            );
        }
    }
}

/// A running example: one JWT per line in, one JSON answer per line out. Killed when
/// dropped.
struct Verifier {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Verifier {
    fn spawn(mut command: Command) -> Verifier {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut verifier = Verifier {
            child,
            stdin,
            lines,
        };
        let ready = verifier.answer();
        assert_eq!(ready["ready"], true, "{ready}");
        if let Some(version) = ready["pyjwt"].as_str() {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| eprintln!("verifying with PyJWT {version}"));
        }
        verifier
    }

    /// The next answer; the server keeps serving on the runtime's other thread while
    /// this one waits.
    fn answer(&mut self) -> Value {
        let line = tokio::task::block_in_place(|| self.lines.recv_timeout(ANSWER_WITHIN))
            .unwrap_or_else(|e| panic!("the verifier gave no answer ({e}); its errors are above"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    /// What the example made of `jwt`.
    fn check(&mut self, jwt: &str) -> Value {
        writeln!(self.stdin, "{jwt}").unwrap();
        self.stdin.flush().unwrap();
        self.answer()
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
