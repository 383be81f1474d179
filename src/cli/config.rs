//! Stage two of parsing: the raw flags validated into a configuration the commands trust.

use std::path::PathBuf;

use super::args::Cli;
use super::client::default_db;
use super::CliError;

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Readable lines.
    Human,
    /// The full JSON object.
    Json,
    /// The bare value.
    Raw,
}

/// The validated global options.
#[derive(Debug, Clone)]
pub struct Config {
    /// The data directory.
    pub db: PathBuf,
    /// The server URL, when given.
    pub url: Option<String>,
    /// The bearer token.
    pub token: Option<String>,
    /// The branch (`main` when not given).
    pub branch: Option<String>,
    /// Output mode.
    pub output: OutputMode,
}

impl Config {
    /// Validates the global flags.
    pub fn from_cli(cli: &Cli) -> Result<Config, CliError> {
        if let Some(url) = &cli.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(CliError::usage(format!(
                    "--url must start with http:// or https://, not '{url}'"
                )));
            }
        }
        if let Some(branch) = &cli.branch {
            if !swarmlog_projections::limits::is_valid_id(branch) {
                return Err(CliError::usage(format!(
                    "--branch must be 1 to {} bytes without control characters",
                    swarmlog_projections::limits::current().id_bytes_max
                )));
            }
        }
        let output = match (cli.json, cli.raw) {
            (true, _) => OutputMode::Json,
            (_, true) => OutputMode::Raw,
            _ => OutputMode::Human,
        };
        Ok(Config {
            db: cli.db.clone().unwrap_or_else(default_db),
            url: cli.url.clone(),
            token: cli.token.clone(),
            branch: cli.branch.clone(),
            output,
        })
    }

    /// `?branch=NAME` (or `&`-joinable empty) for request paths.
    pub fn branch_param(&self) -> Option<String> {
        self.branch
            .as_ref()
            .map(|branch| format!("branch={}", super::client::encode_segment(branch)))
    }
}
