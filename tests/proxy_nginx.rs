//! The shipped nginx configuration (deploy/nginx/wxauth.conf), run by a real nginx in
//! front of wxauth and a recording backend, with only its ports changed.

mod common;
mod proxies;

use std::process::Command;

use common::TestServer;
use proxies::{Proxy, Upstream, deploy_dir, find_or_skip, free_port, substitute};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_forward_auth_guards_the_backend() {
    let Some(nginx) = find_or_skip("nginx", "apt-get install -y nginx") else {
        return;
    };
    let server = TestServer::start_with(|layer| {
        layer.public_url = Some("https://api.example.com".into());
    })
    .await;
    let upstream = Upstream::start().await;
    let port = free_port();

    let shipped = std::fs::read_to_string(deploy_dir().join("nginx/wxauth.conf")).unwrap();
    let site = substitute(
        &shipped,
        "127.0.0.1:8080",
        &server.app.as_ref().unwrap().addr().to_string(),
    );
    let site = substitute(&site, "127.0.0.1:3000", &upstream.addr().to_string());
    let site = substitute(&site, "listen 80;", &format!("listen 127.0.0.1:{port};"));

    // A minimal nginx.conf around the site, with every path it writes inside `dir`. One
    // process (no master) so that killing it leaves no workers behind.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("wxauth.conf"), site).unwrap();
    let main = format!(
        "master_process off;\n\
         pid {root}/nginx.pid;\n\
         error_log {root}/error.log info;\n\
         events {{}}\n\
         http {{\n\
         \x20   access_log {root}/access.log;\n\
         \x20   client_body_temp_path {root}/body;\n\
         \x20   proxy_temp_path {root}/proxy;\n\
         \x20   fastcgi_temp_path {root}/fastcgi;\n\
         \x20   uwsgi_temp_path {root}/uwsgi;\n\
         \x20   scgi_temp_path {root}/scgi;\n\
         \x20   include {root}/wxauth.conf;\n\
         }}\n",
        root = root.display()
    );
    std::fs::write(root.join("nginx.conf"), main).unwrap();

    let mut command = Command::new(nginx);
    command
        .arg("-p")
        .arg(root)
        .arg("-c")
        .arg(root.join("nginx.conf"))
        .arg("-e")
        .arg(root.join("error.log"))
        .args(["-g", "daemon off;"]);
    let proxy = Proxy::start("nginx", command, port, root.join("nginx.out")).await;

    proxies::forward_auth_through(
        &server,
        &upstream,
        &format!("http://127.0.0.1:{port}"),
        proxies::Behaviour {
            keeps_wxauth_errors: false,
            strips_other_x_auth: false,
        },
    )
    .await;

    drop(proxy);
    upstream.stop().await;
    server.stop().await;
}
