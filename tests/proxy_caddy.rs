//! The shipped Caddyfile (deploy/caddy/Caddyfile), run by a real Caddy in front of wxauth
//! and a recording backend, with only its addresses changed.

mod common;
mod proxies;

use std::process::Command;

use common::TestServer;
use proxies::{Proxy, Upstream, deploy_dir, find_or_skip, free_port, substitute};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_guards_the_backend() {
    let Some(caddy) = find_or_skip("caddy", "apt-get install -y caddy") else {
        return;
    };
    let server = TestServer::start_with(|layer| {
        layer.public_url = Some("https://api.example.com".into());
    })
    .await;
    let upstream = Upstream::start().await;
    let port = free_port();

    let shipped = std::fs::read_to_string(deploy_dir().join("caddy/Caddyfile")).unwrap();
    let site = substitute(
        &shipped,
        "127.0.0.1:8080",
        &server.app.as_ref().unwrap().addr().to_string(),
    );
    let site = substitute(&site, "127.0.0.1:3000", &upstream.addr().to_string());
    // Plain HTTP on loopback instead of the public name Caddy would get a certificate for.
    let site = substitute(
        &site,
        "api.example.com {",
        &format!("http://127.0.0.1:{port} {{"),
    );

    // Global options around the site: no admin endpoint, no certificates, and every file
    // Caddy writes inside `dir`.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("site.Caddyfile"), site).unwrap();
    let main = format!(
        "{{\n\tadmin off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n\
         \tstorage file_system {root}/data\n}}\n\
         import {root}/site.Caddyfile\n",
        root = root.display()
    );
    std::fs::write(root.join("Caddyfile"), main).unwrap();

    let mut command = Command::new(caddy);
    command
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(root.join("Caddyfile"))
        .env("HOME", root)
        .env("XDG_CONFIG_HOME", root.join("config"))
        .env("XDG_DATA_HOME", root.join("data"));
    let proxy = Proxy::start("caddy", command, port, root.join("caddy.out")).await;

    proxies::forward_auth_through(
        &server,
        &upstream,
        &format!("http://127.0.0.1:{port}"),
        proxies::Behaviour {
            keeps_wxauth_errors: true,
            strips_other_x_auth: true,
        },
    )
    .await;

    drop(proxy);
    upstream.stop().await;
    server.stop().await;
}
