//! `wxauth service-keys` as a user runs it: the built binary against a temporary data
//! directory, with its output, JSON listing and exit codes.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// A data directory holding a database, as `wxauth serve` leaves it.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = rusqlite::Connection::open(dir.path().join("wxauth.db")).unwrap();
    wxauth::db::migrate(&mut conn).unwrap();
    dir
}

/// `wxauth service-keys ARGS` with nothing in the environment but the data directory:
/// in particular no AppID or AppSecret.
fn keys(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wxauth"))
        .env_clear()
        .env("WXAUTH_DATA_DIR", dir)
        .arg("service-keys")
        .args(args)
        .output()
        .unwrap()
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Creates a key and returns it, insisting on success.
fn create(dir: &Path, name: &str) -> String {
    let output = keys(dir, &["create", name]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    stdout(&output).trim_end().to_owned()
}

fn listing(dir: &Path) -> Vec<Value> {
    let output = keys(dir, &["list", "--json"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    serde_json::from_str::<Value>(&stdout(&output))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn create_prints_the_key_once_and_stores_only_its_hash() {
    let dir = data_dir();
    let output = keys(dir.path(), &["create", "billing"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let printed = stdout(&output);
    let key = printed.strip_suffix('\n').expect("one line");
    assert!(!key.contains('\n'));
    let random = key.strip_prefix("wxsk_").expect("the key prefix");
    assert_eq!(random.len(), 43, "{key}");
    assert!(
        random
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let note = stderr(&output);
    assert!(note.contains("cannot be shown again"), "{note}");
    assert!(note.contains("billing") && !note.contains(key), "{note}");

    let conn = rusqlite::Connection::open(dir.path().join("wxauth.db")).unwrap();
    let hash: Vec<u8> = conn
        .query_row("SELECT key_hash FROM service_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(hash, wxauth::domain::service_keys::hash(key));
    drop(conn);
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(random.len()).any(|w| w == random.as_bytes()),
            "the key is stored in the clear"
        );
    }
    let other = create(dir.path(), "search");
    assert_ne!(other, key);
}

#[test]
fn list_shows_names_ids_and_state_but_never_keys() {
    let dir = data_dir();
    let output = keys(dir.path(), &["list"]);
    assert_eq!(code(&output), 0);
    assert_eq!(
        stdout(&output).lines().collect::<Vec<_>>(),
        ["ID  NAME  SCOPES  CREATED  LAST USED  REVOKED"]
    );
    assert_eq!(listing(dir.path()), Vec::<Value>::new());

    let billing = create(dir.path(), "billing");
    let search = create(dir.path(), "search");
    let revoked = keys(dir.path(), &["revoke", "search"]);
    assert_eq!(code(&revoked), 0, "{}", stderr(&revoked));

    let rows = listing(dir.path());
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["name"], "billing");
    assert_eq!(rows[0]["active"], true);
    assert_eq!(rows[0]["revoked_at"], Value::Null);
    assert_eq!(rows[0]["last_used_at"], Value::Null);
    assert_eq!(rows[1]["name"], "search");
    assert_eq!(rows[1]["active"], false);
    for row in &rows {
        assert!(row["id"].as_str().unwrap().starts_with("sk_"), "{row}");
        assert!(row["created_at"].as_str().unwrap().ends_with('Z'), "{row}");
    }
    assert!(rows[1]["revoked_at"].as_str().unwrap().ends_with('Z'));

    let output = keys(dir.path(), &["list"]);
    let table = stdout(&output);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("ID ") && lines[0].contains("REVOKED"));
    assert!(lines[1].starts_with(rows[0]["id"].as_str().unwrap()));
    assert!(
        lines[1].contains("billing") && lines[1].ends_with('-'),
        "{table}"
    );
    assert!(
        lines[2].contains("search") && lines[2].ends_with('Z'),
        "{table}"
    );
    for key in [&billing, &search] {
        assert!(!table.contains(key.as_str()));
        assert!(!stdout(&keys(dir.path(), &["list", "--json"])).contains(key.as_str()));
    }
}

#[test]
fn revoke_takes_a_name_or_an_id_and_says_when_there_is_nothing_to_revoke() {
    let dir = data_dir();
    create(dir.path(), "one");
    create(dir.path(), "two");
    let two_id = listing(dir.path())[1]["id"].as_str().unwrap().to_owned();

    let output = keys(dir.path(), &["revoke", &two_id]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(stderr(&output).contains("two"));
    assert!(stdout(&output).is_empty());
    let output = keys(dir.path(), &["revoke", "one"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(listing(dir.path()).iter().all(|k| k["active"] == false));

    let output = keys(dir.path(), &["revoke", "one"]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("already revoked"),
        "{}",
        stderr(&output)
    );
    let output = keys(dir.path(), &["revoke", &two_id]);
    assert_eq!(code(&output), 1);
    assert!(stderr(&output).contains("already revoked"));
    for missing in ["nobody", "sk_000000000000000000000000"] {
        let output = keys(dir.path(), &["revoke", missing]);
        assert_eq!(code(&output), 1, "{missing}");
        assert!(
            stderr(&output).contains(&format!("no service key has the id or name `{missing}`")),
            "{}",
            stderr(&output)
        );
    }

    // A revoked key's name is free again.
    create(dir.path(), "one");
    assert_eq!(listing(dir.path()).len(), 3);
}

#[test]
fn mistakes_get_clear_messages_and_exit_codes() {
    let dir = data_dir();
    create(dir.path(), "billing");
    let output = keys(dir.path(), &["create", "billing"]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("already exists"),
        "{}",
        stderr(&output)
    );
    assert!(stdout(&output).is_empty());

    // Usage errors: 2, and nothing written.
    for args in [
        &["create"][..],
        &["create", "has space"],
        &["create", "sk_lookalike"],
        &["create", ""],
        &["revoke"],
        &["list", "--bogus"],
        &["rotate"],
        &[],
    ] {
        let output = keys(dir.path(), args);
        assert_eq!(code(&output), 2, "{args:?}: {}", stderr(&output));
        assert!(stdout(&output).is_empty(), "{args:?}");
    }
    assert_eq!(listing(dir.path()).len(), 1);

    // A data directory without a database is a failure that says what to do.
    let empty = tempfile::tempdir().unwrap();
    let output = keys(&empty.path().join("nowhere"), &["list"]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("no wxauth database"),
        "{}",
        stderr(&output)
    );
    assert!(!empty.path().join("nowhere").exists(), "nothing is created");

    // A broken setting is a configuration error, as for `serve`.
    let output = Command::new(env!("CARGO_BIN_EXE_wxauth"))
        .env_clear()
        .env("WXAUTH_DATA_DIR", dir.path())
        .env("WXAUTH_TOKEN_TLL", "1d")
        .args(["service-keys", "list"])
        .output()
        .unwrap();
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("WXAUTH_TOKEN_TLL"));
}

#[test]
fn the_data_directory_comes_from_flag_environment_or_config_file() {
    let dir = data_dir();
    let elsewhere = tempfile::tempdir().unwrap();
    create(dir.path(), "from-env");

    // The flag beats the environment.
    let output = Command::new(env!("CARGO_BIN_EXE_wxauth"))
        .env_clear()
        .env("WXAUTH_DATA_DIR", elsewhere.path())
        .args(["service-keys", "list", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(stdout(&output).contains("from-env"));

    // A config file naming the data directory is enough; it needs no AppSecret here.
    let config = elsewhere.path().join("wxauth.toml");
    std::fs::write(
        &config,
        format!("data_dir = \"{}\"\nappid = \"wx1\"\n", dir.path().display()),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_wxauth"))
        .env_clear()
        .args(["service-keys", "--config"])
        .arg(&config)
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(stdout(&output).contains("from-env"));
}

#[test]
fn help_is_available() {
    let dir = data_dir();
    for args in [
        &["--help"][..],
        &["create", "--help"],
        &["list", "--help"],
        &["revoke", "--help"],
    ] {
        let output = keys(dir.path(), args);
        assert_eq!(code(&output), 0, "{args:?}");
        assert!(stdout(&output).contains("Usage"), "{args:?}");
    }
}
