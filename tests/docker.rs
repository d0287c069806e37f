//! The container image's runtime contract, checked without a Docker engine: the
//! Dockerfile runs wxauth as a non-root user with everything under one volume, as PID 1
//! through an exec-form ENTRYPOINT, with a HEALTHCHECK that needs no curl. The binary is
//! then run the way the image runs it (its ENV, ENTRYPOINT and HEALTHCHECK command):
//! healthy once serving, a clean exit 0 on SIGTERM, unhealthy after.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The Dockerfile's instructions of the final stage, continuation lines joined.
fn final_stage() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    let last_from = joined.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    joined[last_from..]
        .iter()
        .map(|l| {
            let (op, rest) = l.split_once(' ').unwrap();
            (op.to_owned(), rest.trim().to_owned())
        })
        .collect()
}

fn one(stage: &[(String, String)], op: &str) -> String {
    let found: Vec<&String> = stage
        .iter()
        .filter(|(o, _)| o == op)
        .map(|(_, a)| a)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {op}");
    found[0].clone()
}

/// An exec-form instruction's argument list.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|_| panic!("not exec form: {args}"))
}

fn env_of(stage: &[(String, String)]) -> HashMap<String, String> {
    let mut env = HashMap::new();
    for (_, args) in stage.iter().filter(|(o, _)| o == "ENV") {
        for pair in args.split_whitespace() {
            let (k, v) = pair.split_once('=').unwrap();
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    env
}

#[test]
fn the_image_runs_unprivileged_with_one_volume_and_a_healthcheck() {
    let stage = final_stage();
    let user = one(&stage, "USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "0" && uid != "root", "runs as {user}");
    let env = env_of(&stage);
    assert_eq!(one(&stage, "VOLUME"), env["WXAUTH_DATA_DIR"]);
    assert_eq!(
        exec_form(&one(&stage, "ENTRYPOINT")),
        ["/usr/local/bin/wxauth"]
    );
    assert_eq!(exec_form(&one(&stage, "CMD")), ["serve"]);
    let healthcheck = one(&stage, "HEALTHCHECK");
    let command = healthcheck.split_once("CMD ").unwrap().1;
    assert_eq!(exec_form(command), ["/usr/local/bin/wxauth", "healthcheck"]);
    assert!(!stage.iter().any(|(_, a)| a.contains("curl")));
}

#[test]
fn the_entrypoint_serves_reports_healthy_and_stops_cleanly_on_sigterm() {
    let stage = final_stage();
    let mut env = env_of(&stage);
    let data = tempfile::tempdir().unwrap();
    env.insert("WXAUTH_DATA_DIR".into(), data.path().display().to_string());
    // The image's wildcard address, on a port free on this machine.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = env["WXAUTH_LISTEN"].rsplit_once(':').unwrap().0.to_owned();
    env.insert("WXAUTH_LISTEN".into(), format!("{listen}:{port}"));
    env.insert("WXAUTH_LOG_FORMAT".into(), "json".into());
    let binary = env!("CARGO_BIN_EXE_wxauth");
    let image_command = |args: Vec<String>| {
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&env)
            .args(&args[1..]);
        command
    };
    let mut entrypoint = exec_form(&one(&stage, "ENTRYPOINT"));
    entrypoint.extend(exec_form(&one(&stage, "CMD")));
    // Dev mode: the image's own command, without an AppSecret to give it.
    entrypoint.push("--dev".into());
    let healthcheck = {
        let hc = one(&stage, "HEALTHCHECK");
        exec_form(hc.split_once("CMD ").unwrap().1)
    };
    let healthy = || {
        image_command(healthcheck.clone())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .code()
    };

    let mut server = image_command(entrypoint)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while healthy() != Some(0) {
        assert!(Instant::now() < deadline, "never became healthy");
        assert!(server.try_wait().unwrap().is_none(), "the server exited");
        std::thread::sleep(Duration::from_millis(50));
    }

    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = server.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let messages: Vec<String> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| e["fields"]["message"].as_str().map(str::to_owned))
        .collect();
    assert!(messages.iter().any(|m| m == "stopped"), "{stderr}");
    assert_eq!(healthy(), Some(1), "unhealthy once stopped");
}
