//! ctsync's adapters and wiring: configuration, the SQL Server adapter
//! (tiberius) for the primary and replica ports, the Redis state store, and
//! the daemon that connects them to the actor pipeline of `ctsync-actors`.

pub mod check_config;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod healthcheck;
pub mod http;
pub mod logging;
pub mod mssql;
pub mod operator;
pub mod probes;
pub mod shutdown;
pub mod state;
pub mod telemetry;
pub mod verify_cmd;
