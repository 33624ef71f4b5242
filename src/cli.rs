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
    /// Validate the configuration and print a summary (without credentials).
    CheckConfig {
        /// Also connect to the primary, the replica and Redis, and say which fail and why.
        #[arg(long)]
        connect: bool,
    },
    /// Exit 0 if the local daemon's /healthz answers 200 (Docker HEALTHCHECK).
    Healthcheck,
    /// Show every known table: flags and version from Redis; state, lag and
    /// progress from the daemon's API when it answers.
    Tables {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The daemon's HTTP address.
        #[arg(long, env = "CTSYNC_HTTP_ADDR", default_value = "127.0.0.1:8080")]
        api: String,
    },
    /// Compare tables between primary and replica (chunked checksums);
    /// exit 1 when a difference persists.
    Verify {
        /// Tables to check (default: every enabled table).
        tables: Vec<String>,
        /// Rows per checksum chunk.
        #[arg(long, default_value_t = 10_000)]
        chunk: usize,
        /// Differing keys listed per table at most.
        #[arg(long, default_value_t = 20)]
        max_keys: usize,
        /// Seconds to wait for the replica to catch up before re-checking.
        #[arg(long, default_value_t = 60)]
        settle_secs: u64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Preflight of primary and replica: every problem with the T-SQL that
    /// fixes it; exit 1 on a blocker.
    Doctor {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Set mssql_sync:enabled:<TABLE> to "true".
    Enable {
        table: String,
        /// Also for a table ctsync has never discovered.
        #[arg(long)]
        force: bool,
    },
    /// Set mssql_sync:enabled:<TABLE> to "false".
    Disable {
        table: String,
        #[arg(long)]
        force: bool,
    },
    /// Request a full load: mssql_sync:force_full_load:<TABLE> = "true"
    /// (a load already running starts over).
    ForceFullLoad {
        table: String,
        #[arg(long)]
        force: bool,
    },
    /// Print the audit trail (mssql_sync:audit): every accepted write or
    /// action, over HTTP or from this CLI, oldest first.
    Audit {
        /// Only entries from this time on: RFC 3339 (2026-01-31T08:00:00Z)
        /// or a duration back from now (90s, 15m, 1h, 2d).
        #[arg(long)]
        since: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Set mssql_sync:version:<TABLE> after a manual copy (backup/restore).
    SetVersion {
        table: String,
        version: i64,
        #[arg(long)]
        force: bool,
    },
}
