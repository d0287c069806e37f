//! `wxauth check`: the configuration and data directory, checked as `serve` would.

use std::process::ExitCode;

use clap::Args;

use super::common::{EXIT_CONFIG, EXIT_FAILURE, print_json};
use super::serve::{ServeArgs, load_config};
use crate::ops::check::{self, Finding, Status};

#[derive(Debug, Args)]
pub(super) struct CheckArgs {
    #[command(flatten)]
    pub(super) serve: ServeArgs,
    /// Also ask WeChat (stable_token) whether it accepts each app's AppID and AppSecret
    #[arg(long)]
    pub(super) online: bool,
    /// Print JSON instead of text
    #[arg(long)]
    pub(super) json: bool,
}

pub(super) async fn check(args: CheckArgs) -> ExitCode {
    let (findings, code) = match load_config(&args.serve) {
        Err(e) => (
            vec![Finding {
                subject: "config".into(),
                status: Status::Fail,
                detail: e,
            }],
            EXIT_CONFIG,
        ),
        Ok(config) => {
            let mut findings = check::offline(&config);
            if args.online {
                findings.extend(check::online(&config).await);
            }
            let failed = findings.iter().any(|f| f.status == Status::Fail);
            (findings, if failed { EXIT_FAILURE } else { 0 })
        }
    };
    if args.json {
        print_json(&serde_json::json!({"ok": code == 0, "checks": findings}));
    } else {
        for f in &findings {
            println!("{:<5} {:<14} {}", f.status.label(), f.subject, f.detail);
        }
    }
    ExitCode::from(code)
}
