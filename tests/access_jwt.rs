//! Access JWTs (`POST /v1/token`) and the documents that publish their keys: what a JWT
//! holds, who gets none, how rotation keeps every live JWT verifiable, and the 404 a
//! server without `public_url` answers. The signatures are checked here with ring
//! against the served JWKS; `jwt_verifiers.rs` checks them with the verifiers backends use.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use serde_json::{Value, json};

use common::{APPID, START, TestServer};
use wxauth::ops::audit::Actor;

const ISSUER: &str = "https://auth.example.com";

async fn server() -> TestServer {
    TestServer::start_with(|layer| {
        layer.public_url = Some(format!("{ISSUER}/"));
        layer.jwt_ttl = Some("5m".parse().unwrap());
        layer.jwt_audience = Some("api.example.com".into());
    })
    .await
}

fn decode(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The JWT's header and claims, after checking its signature against `jwks`.
fn verified(jwt: &str, jwks: &Value) -> Result<(Value, Value), String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err(format!("not a compact JWS: {jwt}"));
    };
    let header = decode(header);
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .ok_or_else(|| format!("kid {} is not in the JWKS", header["kid"]))?;
    let mut point = vec![4u8];
    point.extend(URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap());
    point.extend(URL_SAFE_NO_PAD.decode(key["y"].as_str().unwrap()).unwrap());
    let signed = jwt.rsplit_once('.').unwrap().0;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
        .verify(
            signed.as_bytes(),
            &URL_SAFE_NO_PAD.decode(signature).unwrap(),
        )
        .map_err(|_| "bad signature".to_owned())?;
    Ok((header, decode(claims)))
}

async fn jwks(server: &TestServer) -> Value {
    server
        .get("/.well-known/jwks.json", None)
        .await
        .json()
        .await
        .unwrap()
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

async fn issue(server: &TestServer, token: &str) -> reqwest::Response {
    server
        .http
        .post(server.url("/v1/token"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn jwt(server: &TestServer, token: &str) -> String {
    let response = issue(server, token).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["error"]["code"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_gets_a_jwt_naming_the_user_and_nothing_personal() {
    let server = server().await;
    let login = server.login_ok("dev:ana").await;
    let token = login["token"].as_str().unwrap();

    let response = issue(&server, token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    let jwt = body["access_token"].as_str().unwrap();

    let (header, claims) = verified(jwt, &jwks(&server).await).unwrap();
    let session = server.session_of(token).await;
    assert_eq!(header.as_object().unwrap().len(), 3, "{header}");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "at+jwt");
    let names: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        names,
        ["appid", "aud", "exp", "iat", "iss", "jti", "sid", "sub"],
        "exactly these claims"
    );
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], login["user"]["id"]);
    assert_eq!(claims["sid"], session["session"]["id"]);
    assert_eq!(claims["appid"], APPID);
    assert_eq!(claims["aud"], "api.example.com");
    assert_eq!(claims["iat"], START);
    assert_eq!(claims["exp"], START + 300);
    let openid = server
        .db()
        .query_row("SELECT openid FROM identities", [], |r| {
            r.get::<_, String>(0)
        });
    assert!(!jwt.contains(&openid.unwrap()));

    // Each JWT is its own: a fresh jti and signature.
    let again = self::jwt(&server, token).await;
    let (_, second) = verified(&again, &jwks(&server).await).unwrap();
    assert_ne!(second["jti"], claims["jti"]);
    assert_eq!(second["sub"], claims["sub"]);

    // Tampering with the claims breaks the signature.
    let mut forged = claims.clone();
    forged["sub"] = json!("u_someone_else");
    let parts: Vec<&str> = jwt.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(forged.to_string()),
        parts[2]
    );
    assert_eq!(
        verified(&tampered, &jwks(&server).await).unwrap_err(),
        "bad signature"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_sessions_and_banned_users_get_no_jwt() {
    let server = server().await;
    let none = server
        .http
        .post(server.url("/v1/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(none).await, (401, "invalid_token".into()));
    let forged = issue(&server, "v2.abcd1234.AAAA.BBBB").await;
    assert_eq!(error_of(forged).await, (401, "invalid_token".into()));

    let token = server.token("dev:bo").await;
    let response = server
        .post_json("/v1/logout", &json!({}), Some(&token))
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        error_of(issue(&server, &token).await).await,
        (401, "session_revoked".into())
    );

    let login = server.login_ok("dev:cy").await;
    let token = login["token"].as_str().unwrap();
    let user = login["user"]["id"].as_str().unwrap();
    let now = START;
    wxauth::ops::admin::ban(
        &server.db_rw(),
        &Actor::cli(),
        user,
        now + 3600,
        Some("spam"),
        now,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, code) = error_of(issue(&server, token).await).await;
        if status == 403 {
            assert_eq!(code, "user_banned");
            break;
        }
        assert!(Instant::now() < deadline, "still {status} {code}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let token = server.token("dev:di").await;
    server.clock.advance(Duration::from_secs(8 * 86400));
    assert_eq!(
        error_of(issue(&server, &token).await).await,
        (401, "token_expired".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documents_name_the_issuer_and_its_keys() {
    let server = server().await;
    let response = server.get("/.well-known/openid-configuration", None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "public, max-age=300");
    let discovery: Value = response.json().await.unwrap();
    assert_eq!(discovery["issuer"], ISSUER);
    assert_eq!(
        discovery["jwks_uri"],
        format!("{ISSUER}/.well-known/jwks.json")
    );
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );

    let response = server.get("/.well-known/jwks.json", None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "public, max-age=300");
    let jwks: Value = response.json().await.unwrap();
    // The active key and the one the next rotation brings in.
    assert_eq!(kids(&jwks).len(), 2, "{jwks}");
    for key in jwks["keys"].as_array().unwrap() {
        let fields: Vec<&str> = key
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields.len(), 7, "{key}");
        assert_eq!(key["kty"], "EC");
        assert_eq!(key["crv"], "P-256");
        assert_eq!(key["alg"], "ES256");
        assert_eq!(key["use"], "sig");
        assert!(key.get("d").is_none());
    }
    let head = server
        .http
        .head(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_public_url_there_are_no_jwts_and_no_documents() {
    let server = TestServer::start().await;
    let token = server.token("dev:ed").await;
    for response in [
        issue(&server, &token).await,
        server.get("/.well-known/jwks.json", None).await,
        server.get("/.well-known/openid-configuration", None).await,
    ] {
        assert_eq!(response.status(), 404);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("`public_url`"), "{message}");
    }
}

/// Waits until the server signs JWTs with `kid`.
async fn signing_kid(server: &TestServer, token: &str, kid: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let jwt = jwt(server, token).await;
        if decode(jwt.split('.').next().unwrap())["kid"] == kid {
            return jwt;
        }
        assert!(
            Instant::now() < deadline,
            "the server never signed with {kid}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_live_jwts_verifiable_until_they_expire() {
    let server = server().await;
    let dir = server.dir.path().join("data");
    let token = server.token("dev:fa").await;
    let before = jwks(&server).await;
    let old = jwt(&server, &token).await;
    let old_kid = decode(old.split('.').next().unwrap())["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let waiting = kids(&before).into_iter().find(|k| *k != old_kid).unwrap();

    let rotation = wxauth::ops::admin::rotate_key(&dir, &Actor::cli(), START).unwrap();
    // The key that now signs was published before the rotation, so a verifier holding
    // the JWKS from before already knows it.
    assert_eq!(rotation.jwt, waiting);
    let new = signing_kid(&server, &token, &rotation.jwt).await;
    verified(&new, &before).unwrap();

    // The replaced key stays published while JWTs it signed may be live.
    let after = jwks(&server).await;
    assert_eq!(kids(&after).len(), 3, "{after}");
    assert_eq!(kids(&after)[0], rotation.jwt);
    verified(&old, &after).unwrap();
    server.clock.advance(Duration::from_secs(300));
    verified(&old, &jwks(&server).await).unwrap();
    server.clock.advance(Duration::from_secs(
        wxauth::keys::jwt::REPLACED_KEY_GRACE as u64,
    ));
    let later = jwks(&server).await;
    assert_eq!(kids(&later).len(), 2, "{later}");
    assert!(!kids(&later).contains(&old_kid));
    verified(&new, &later).unwrap();

    // The active key cannot be retired; the one published for the next rotation can,
    // and it leaves the JWKS at once.
    let next = kids(&later)
        .into_iter()
        .find(|k| *k != rotation.jwt)
        .unwrap();
    let refused =
        wxauth::ops::admin::retire_key(&dir, &Actor::cli(), &rotation.jwt, START).unwrap_err();
    assert!(refused.to_string().contains("active JWT key"), "{refused}");
    wxauth::ops::admin::retire_key(&dir, &Actor::cli(), &next, START).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while kids(&jwks(&server).await).contains(&next) {
        assert!(Instant::now() < deadline, "{next} is still published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The next rotation then makes a key of its own.
    let rotation = wxauth::ops::admin::rotate_key(&dir, &Actor::cli(), START + 400).unwrap();
    let newest = signing_kid(&server, &token, &rotation.jwt).await;
    verified(&newest, &jwks(&server).await).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_from_before_jwts_gets_jwt_keys_and_keeps_its_others() {
    let mut server = server().await;
    let token = server.token("dev:gi").await;
    let path = server.dir.path().join("data").join("keys.json");
    server
        .restart_after(|_| {
            let mut file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            file.as_object_mut().unwrap().remove("jwt_keys");
            std::fs::write(&path, file.to_string()).unwrap();
        })
        .await;
    assert_eq!(server.get("/v1/session", Some(&token)).await.status(), 200);
    let jwt = jwt(&server, &token).await;
    verified(&jwt, &jwks(&server).await).unwrap();
    let file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(file["jwt_keys"].as_array().unwrap().len(), 2);
}
