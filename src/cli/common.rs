//! Helpers every command shares: exit codes, the data directory, printing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::config::{ConfigError, Layer, default_data_dir};
use crate::datadir;
use crate::ops::admin::AdminError;

/// Exit code for a configuration error (bad file, bad flag value, missing secret).
pub(super) const EXIT_CONFIG: u8 = 2;
/// Exit code for a failure while starting or running.
pub(super) const EXIT_FAILURE: u8 = 1;

/// Where an admin command finds the data directory; no AppSecret is needed.
#[derive(Debug, Args)]
pub(super) struct DataDirArgs {
    /// The TOML config file, read for its `data_dir` [default: wxauth.toml in the data directory, if present]
    #[arg(long, value_name = "FILE", env = "WXAUTH_CONFIG", global = true)]
    pub(super) config: Option<PathBuf>,
    /// Where the database lives [default: the platform's data directory]
    #[arg(long, value_name = "DIR", global = true)]
    pub(super) data_dir: Option<PathBuf>,
}

/// Runs an admin command on the data directory and turns its failure into the exit code.
pub(super) fn admin_command(
    dir: &DataDirArgs,
    run: impl FnOnce(&Path) -> Result<(), AdminError>,
) -> ExitCode {
    let data_dir = match resolve_data_dir(dir) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("wxauth: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match run(&data_dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wxauth: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

pub(super) const RELOAD_NOTE: &str = "a running server picks this up within a second";

/// Prints `value` as pretty JSON on stdout.
pub(super) fn print_json(value: &impl serde::Serialize) {
    let text = serde_json::to_string_pretty(value).expect("admin records serialize");
    println!("{text}");
}

/// The data directory an admin command works on, resolved like `serve` does but without
/// needing anything else from the configuration.
pub(super) fn resolve_data_dir(args: &DataDirArgs) -> Result<PathBuf, String> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let flags = Layer {
        data_dir: args.data_dir.clone(),
        ..Layer::default()
    };
    let layer = merged_layer(args.config.as_ref(), flags, &env)?;
    layer.check_unknown_env().map_err(|e| e.to_string())?;
    layer
        .data_dir
        .or_else(default_data_dir)
        .ok_or_else(|| ConfigError::NoDataDir.to_string())
}

/// `rows` under `header` as an aligned text table, columns two spaces apart.
pub(super) fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let rows: Vec<Vec<String>> = std::iter::once(header).chain(rows).collect();
    let mut widths = vec![0usize; rows[0].len()];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The config file (`config`, or `wxauth.toml` in the data directory), the environment
/// and `flags`, merged in rising priority; not yet validated.
pub(super) fn merged_layer(
    config: Option<&PathBuf>,
    flags: Layer,
    env: &HashMap<String, String>,
) -> Result<Layer, String> {
    let from_env = Layer::from_env(env).map_err(|e| e.to_string())?;
    let config_path = match config {
        Some(path) => Some(path.clone()),
        None => {
            let dir = flags
                .data_dir
                .clone()
                .or_else(|| from_env.data_dir.clone())
                .or_else(default_data_dir);
            dir.map(|d| d.join(datadir::CONFIG_FILE))
                .filter(|p| p.exists())
        }
    };
    let file = match &config_path {
        Some(path) => Layer::from_file(path).map_err(|e| e.to_string())?,
        None => Layer::default(),
    };
    Ok(file.merge(from_env).merge(flags))
}
