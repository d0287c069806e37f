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
    /// Also run SQLite's integrity and foreign key checks on the database (read-only;
    /// safe beside a running server, but reads the whole file)
    #[arg(long)]
    pub(super) deep: bool,
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
                problems: Vec::new(),
            }],
            EXIT_CONFIG,
        ),
        Ok(config) => {
            let mut findings = check::offline(&config);
            if args.online {
                findings.extend(check::online(&config).await);
            }
            if args.deep {
                let dir = config.data_dir.clone();
                findings.extend(
                    tokio::task::spawn_blocking(move || check::deep(&dir))
                        .await
                        .unwrap_or_else(|e| {
                            vec![Finding {
                                subject: "integrity".into(),
                                status: Status::Fail,
                                detail: format!("the check stopped: {e}"),
                                problems: Vec::new(),
                            }]
                        }),
                );
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
            for problem in f.problems.iter().skip(1) {
                println!("{:<5} {:<14}   {problem}", "", "");
            }
        }
    }
    ExitCode::from(code)
}
