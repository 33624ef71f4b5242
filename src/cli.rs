//! The command line: `run` starts the daemon; the other commands flip the
//! same Redis keys an operator would set by hand.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ctsync",
    version,
    about = "Replicates SQL Server tables with Change Tracking; steered through Redis keys"
)]
pub struct Cli {
    /// Optional TOML file with settings (environment variables win).
    #[arg(long, global = true, env = "CTSYNC_CONFIG")]
    pub config: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the daemon.
    Run,
    /// Validate the configuration and print it (without credentials).
    CheckConfig,
    /// Exit 0 if the local daemon's /healthz answers 200 (Docker HEALTHCHECK).
    Healthcheck,
    /// Show every known table's flags and version from Redis.
    Tables,
    /// Set mssql_sync:enabled:<TABLE> to "true".
    Enable { table: String },
    /// Set mssql_sync:enabled:<TABLE> to "false".
    Disable { table: String },
    /// Set mssql_sync:force_full_load:<TABLE> to "true".
    ForceFullLoad { table: String },
    /// Set mssql_sync:version:<TABLE> after a manual copy (backup/restore).
    SetVersion { table: String, version: i64 },
}
