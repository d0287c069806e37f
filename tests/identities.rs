//! One person across apps: identities linked by unionid, conflicts when a unionid
//! arrives late, `wxauth users merge`, and the event journal a backend follows
//! (`GET /v1/events` with a scoped service key).

mod common;

use std::process::Command;

use common::{TestServer, error_of};
use serde_json::{Value, json};

/// A server with two mini programs of one Open Platform account.
async fn two_apps() -> TestServer {
    TestServer::start_with_apps(|_| common::SHOP_AND_GAME.into()).await
}

/// `wxauth ARGS` on the server's data directory; returns (exit code, stdout, stderr).
fn admin(server: &TestServer, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_wxauth"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WXAUTH_DATA_DIR", server.dir.path().join("data"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn admin_json(server: &TestServer, args: &[&str]) -> Value {
    let (code, stdout, stderr) = admin(server, args);
    assert_eq!(code, 0, "{args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

/// A service key with `scopes`, made by the CLI.
fn service_key(server: &TestServer, name: &str, scopes: &str) -> String {
    let (code, stdout, stderr) =
        admin(server, &["service-keys", "create", name, "--scope", scopes]);
    assert_eq!(code, 0, "{stderr}");
    stdout.trim().to_owned()
}

async fn events(server: &TestServer, key: &str, query: &str) -> reqwest::Response {
    server
        .http
        .get(server.url(&format!("/v1/events{query}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_same_person_in_another_app_is_the_same_user() {
    let server = two_apps().await;
    let first = server.login_to("wxgame", "dev:gina").await;
    assert_eq!(first["new_user"], true);
    assert_eq!(first["user"]["apps"], json!(["wxgame"]));
    let second = server.login_to("wxshop", "dev:gina#2").await;
    assert_eq!(second["new_user"], false, "{second}");
    assert_eq!(second["user"]["id"], first["user"]["id"]);
    assert_eq!(second["user"]["appid"], "wxshop");
    assert_eq!(second["user"]["apps"], json!(["wxgame", "wxshop"]));
    assert_eq!(server.count("users"), 1);
    assert_eq!(server.count("identities"), 2);

    // Each session speaks for the app it logged in through.
    let token = first["token"].as_str().unwrap();
    let me: Value = server
        .get("/v1/me", Some(token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["appid"], "wxgame");
    assert_eq!(me["apps"], json!(["wxgame", "wxshop"]));
    let forward = server
        .get("/v1/auth/forward", Some(second["token"].as_str().unwrap()))
        .await;
    assert_eq!(forward.headers()["x-auth-appid"], "wxshop");
    assert_eq!(
        forward.headers()["x-auth-user-id"],
        first["user"]["id"].as_str().unwrap()
    );
    let openids: Vec<String> = server
        .db()
        .prepare("SELECT openid FROM identities ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        forward.headers()["x-auth-openid"],
        openids[1].as_str(),
        "the openid of the session's own app"
    );

    // Without a unionid, a person is a user per app, as before.
    let alone = server.login_to("wxshop", "no-unionid-code").await;
    assert_eq!(alone["new_user"], true);
    assert_ne!(alone["user"]["id"], first["user"]["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_unionid_is_a_conflict_until_an_admin_merges() {
    let server = two_apps().await;
    let (game, shop) = server.unionid_conflict().await;
    let keep = game["user"]["id"].as_str().unwrap();
    let other = shop["user"]["id"].as_str().unwrap();
    let other_token = shop["token"].as_str().unwrap();
    server
        .patch_me(other_token, &json!({"nickname": "Hana", "gender": 2}))
        .await;

    let conflicts = admin_json(&server, &["users", "conflicts", "--json"]);
    assert_eq!(conflicts.as_array().unwrap().len(), 1, "{conflicts}");
    assert_eq!(conflicts[0]["user_id"], keep);
    assert_eq!(conflicts[0]["other_user_id"], other);
    assert!(conflicts[0]["unionid"].is_string());
    let (code, table, _) = admin(&server, &["users", "conflicts"]);
    assert_eq!(code, 0);
    assert!(table.contains(keep) && table.contains(other), "{table}");

    let merged = admin_json(&server, &["users", "merge", keep, other, "--json"]);
    assert_eq!(merged["user_id"], keep);
    assert_eq!(merged["merged_user_id"], other);
    assert_eq!(merged["identities"], 1);

    // OTHER's token now speaks for KEEP, with OTHER's profile where KEEP had none.
    let session = server.session_of(other_token).await;
    assert_eq!(session["user"]["id"], keep, "{session}");
    assert_eq!(session["user"]["nickname"], "Hana");
    assert_eq!(session["user"]["gender"], 2);
    // Oldest identity first: the shop's came before the game's.
    assert_eq!(session["user"]["apps"], json!(["wxshop", "wxgame"]));
    let forward = server.get("/v1/auth/forward", Some(other_token)).await;
    assert_eq!(forward.headers()["x-auth-user-id"], keep);
    // A new login through OTHER's identity is KEEP too.
    let later = server.login_to("wxshop", "dev:hana#4").await;
    assert_eq!(later["user"]["id"], keep);
    // OTHER's id is an alias: the CLI finds KEEP by it.
    let shown = admin_json(&server, &["users", "show", other, "--json"]);
    assert_eq!(shown["user"]["id"], keep);
    assert_eq!(
        admin_json(&server, &["users", "conflicts", "--json"]),
        json!([])
    );
    let listed = admin_json(&server, &["users", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    let (code, _, stderr) = admin(&server, &["users", "merge", keep, other]);
    assert_eq!(code, 1);
    assert!(stderr.contains("already merged"), "{stderr}");
    let (code, _, stderr) = admin(&server, &["users", "merge", keep, "u_nobody"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no user `u_nobody`"), "{stderr}");

    let key = service_key(&server, "mirror", "events");
    let body: Value = events(&server, &key, "").await.json().await.unwrap();
    let kinds: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["user.created", "user.created", "user.merged"]);
    let merge = &body["events"][2];
    assert_eq!(merge["user_id"], keep);
    assert_eq!(merge["merged_user_id"], other);
    assert_eq!(body["next"], merge["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_is_read_in_pages_with_a_key_scoped_for_it() {
    let server = two_apps().await;
    let ivy = server.login_to("wxgame", "dev:ivy").await;
    server.login_to("wxshop", "dev:ivy#2").await;
    let user = ivy["user"]["id"].as_str().unwrap();
    let (code, _, stderr) = admin(
        &server,
        &["users", "ban", user, "--until", "7d", "--reason", "spam"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(admin(&server, &["users", "unban", user]).0, 0);

    let key = service_key(&server, "mirror", "introspect,events");
    let page: Value = events(&server, &key, "?limit=2")
        .await
        .json()
        .await
        .unwrap();
    let first = page["events"].as_array().unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0]["type"], "user.created");
    assert_eq!(first[0]["appid"], "wxgame");
    assert_eq!(first[0]["user_id"], user);
    assert!(first[0]["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(first[1]["type"], "identity.linked");
    assert_eq!(first[1]["appid"], "wxshop");
    let next = page["next"].as_i64().unwrap();
    let rest: Value = events(&server, &key, &format!("?after={next}"))
        .await
        .json()
        .await
        .unwrap();
    let rest = rest["events"].as_array().unwrap().clone();
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[0]["type"], "user.banned");
    assert_eq!(rest[0]["reason"], "spam");
    assert!(rest[0]["until"].is_string());
    assert_eq!(rest[1]["type"], "user.unbanned");
    let end: Value = events(&server, &key, &format!("?after={}", rest[1]["id"]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(end, json!({"events": [], "next": rest[1]["id"]}));

    // The key's scopes are listed, and a key without `events` is refused.
    let listed = admin_json(&server, &["service-keys", "list", "--json"]);
    assert_eq!(listed[0]["scopes"], json!(["introspect", "events"]));
    let plain = service_key(&server, "plain", "introspect");
    let response = events(&server, &plain, "").await;
    assert_eq!(error_of(response).await, (403, "forbidden".into()));
    let response = events(&server, "wxsk_not-a-key", "").await;
    assert_eq!(error_of(response).await, (401, "invalid_token".into()));
    for bad in [
        "?after=x",
        "?limit=0",
        "?limit=1001",
        "?after=-1",
        "?other=1",
        "?after=1&after=2",
    ] {
        let response = events(&server, &key, bad).await;
        assert_eq!(
            error_of(response).await,
            (400, "invalid_request".into()),
            "{bad}"
        );
    }
    let (code, _, stderr) = admin(
        &server,
        &["service-keys", "create", "x", "--scope", "everything"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`everything` is not a scope"), "{stderr}");
}
