//! `wxauth mock-wechat`: the fake WeChat on its own port.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;

use super::common::{EXIT_CONFIG, EXIT_FAILURE};
use super::serve::{init_logging, shutdown_signal};
use crate::config::LogFormat;
use crate::wechat::fake::MockWeChat;

#[derive(Debug, Args)]
pub(super) struct MockArgs {
    /// The address to serve the fake WeChat API on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9090")]
    pub(super) listen: SocketAddr,
}

pub(super) async fn mock_wechat(args: MockArgs) -> ExitCode {
    if let Err(e) = init_logging("info", LogFormat::Auto) {
        eprintln!("wxauth: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let mock = match MockWeChat::start(args.listen).await {
        Ok(mock) => mock,
        Err(e) => {
            eprintln!("wxauth: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    tracing::info!(
        addr = %mock.addr(),
        "fake WeChat API is serving; point wxauth at it with WXAUTH_WECHAT_API={0} \
         (and, for web logins, WXAUTH_WECHAT_OPEN_URL={0})",
        mock.base_url()
    );
    shutdown_signal().await;
    mock.shutdown().await;
    ExitCode::SUCCESS
}
