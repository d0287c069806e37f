//! `wxauth serve`: the configuration from its layers, logging, and the server until a signal.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use tracing_subscriber::EnvFilter;

use super::common::{EXIT_CONFIG, EXIT_FAILURE, merged_layer};
use crate::app::App;
use crate::clock::SystemClock;
use crate::config::{Config, Layer, LogFormat};

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Use a built-in fake WeChat: no AppID or AppSecret needed. Never in production.
    #[arg(long)]
    pub(super) dev: bool,
    /// The TOML config file [default: wxauth.toml in the data directory, if present]
    #[arg(long, value_name = "FILE", env = "WXAUTH_CONFIG")]
    pub(super) config: Option<PathBuf>,
    /// Where the database and signing keys live [default: the platform's data directory]
    #[arg(long, value_name = "DIR")]
    pub(super) data_dir: Option<PathBuf>,
    /// The address to serve on [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub(super) listen: Option<SocketAddr>,
    /// WeChat's API base URL [default: https://api.weixin.qq.com]
    #[arg(long, value_name = "URL")]
    pub(super) wechat_api: Option<String>,
    /// The absolute base for URLs wxauth hands out
    #[arg(long, value_name = "URL")]
    pub(super) public_url: Option<String>,
    /// Log filter, e.g. `info` or `wxauth=debug` [default: info]
    #[arg(long, value_name = "FILTER")]
    pub(super) log: Option<String>,
    /// Log format: auto (text on a terminal, JSON otherwise), text or json
    #[arg(long, value_name = "FORMAT")]
    pub(super) log_format: Option<LogFormat>,
}

/// Builds the configuration from defaults, file, environment and flags.
pub(super) fn load_config(args: &ServeArgs) -> Result<Config, String> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let flags = Layer {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        public_url: args.public_url.clone(),
        wechat_api: args.wechat_api.clone(),
        log: args.log.clone(),
        log_format: args.log_format,
        ..Layer::default()
    };
    let mut layer = merged_layer(args.config.as_ref(), flags, &env)?;
    if layer.log.is_none() {
        layer.log = env.get("RUST_LOG").cloned();
    }
    Config::resolve(layer, args.dev, &env).map_err(|e| e.to_string())
}

pub(super) fn init_logging(filter: &str, format: LogFormat) -> Result<(), String> {
    let filter = EnvFilter::try_new(filter).map_err(|e| format!("log filter `{filter}`: {e}"))?;
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    // Colours only for a person at a terminal, never into a pipe, file or journal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

pub(super) async fn serve(args: ServeArgs) -> ExitCode {
    let config = match load_config(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("wxauth: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(e) = init_logging(&config.log, config.log_format) {
        eprintln!("wxauth: configuration error: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    if config.dev {
        tracing::warn!(
            "DEV MODE: logins go to a built-in fake WeChat and need no AppSecret. \
             Never run this in production."
        );
    }
    let apps: Vec<String> = config.apps.iter().map(|a| a.appid.clone()).collect();
    let data_dir = config.data_dir.display().to_string();
    let app = match App::start(config, Arc::new(SystemClock)).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("wxauth: cannot start: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    tracing::info!(addr = %app.addr(), data_dir, ?apps, "wxauth is serving");
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    app.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Resolves on SIGTERM or SIGINT.
pub(super) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("cannot listen for SIGTERM");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
