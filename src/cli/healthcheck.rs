//! `wxauth healthcheck`: asks a running server whether it is ready.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;

use super::common::merged_layer;
use super::common::{DataDirArgs, EXIT_CONFIG, EXIT_FAILURE};
use crate::config::{DEFAULT_LISTEN, DurationSetting, Layer};
use crate::ops::check::{self};

#[derive(Debug, Args)]
pub(super) struct HealthcheckArgs {
    #[command(flatten)]
    pub(super) dir: DataDirArgs,
    /// The URL to probe [default: /readyz on the configured listen address]
    #[arg(long, value_name = "URL")]
    pub(super) url: Option<String>,
    /// How long to wait for the answer
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub(super) timeout: DurationSetting,
}

pub(super) async fn healthcheck(args: HealthcheckArgs) -> ExitCode {
    let url = match args.url {
        Some(url) => url,
        None => match resolve_listen(&args.dir) {
            Ok(listen) => check::readyz_url(listen),
            Err(e) => {
                eprintln!("wxauth: configuration error: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    match check::probe(&url, args.timeout.0).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wxauth: not ready: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The address `serve` would listen on, from the config file, the environment and
/// the defaults; nothing else needs to be valid.
pub(super) fn resolve_listen(args: &DataDirArgs) -> Result<SocketAddr, String> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let flags = Layer {
        data_dir: args.data_dir.clone(),
        ..Layer::default()
    };
    let layer = merged_layer(args.config.as_ref(), flags, &env)?;
    Ok(layer.listen.unwrap_or(DEFAULT_LISTEN))
}
