//! The `ctsync` binary: parses the command line, reads the configuration,
//! and runs the daemon or an operator command.

use anyhow::Context as _;
use clap::Parser;
use ctsync::cli::{Cli, Command};
use ctsync::config::Config;
use ctsync::{daemon, operator};

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("ctsync: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run => {
            let config = Config::load(cli.config.as_deref())?;
            ctsync::logging::init(&config.log, config.log_format);
            daemon::run(config)
        }
        Command::Verify {
            tables,
            chunk,
            max_keys,
            settle_secs,
            json,
        } => {
            let config = Config::load(cli.config.as_deref())?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a runtime")?;
            let args = ctsync::verify_cmd::Args {
                tables,
                options: ctsync::verify_cmd::options(chunk, max_keys, settle_secs),
                json,
            };
            use ctsync::verify_cmd::{Verdict, COULD_NOT_RUN};
            match rt.block_on(ctsync::verify_cmd::run(&config, args)) {
                Ok(verdict) => {
                    if let Verdict::NothingVerified(why) = &verdict {
                        eprintln!("ctsync: {why}");
                    }
                    match verdict.code() {
                        0 => Ok(()),
                        code => std::process::exit(code),
                    }
                }
                Err(e) => {
                    eprintln!("ctsync: {e:#}");
                    std::process::exit(COULD_NOT_RUN)
                }
            }
        }
        Command::Doctor { json } => match doctor(cli.config.as_deref(), json) {
            Ok(0) => Ok(()),
            Ok(code) => std::process::exit(code),
            // With --json, a failure to run is JSON too.
            Err(e) if json => {
                println!("{}", serde_json::json!({ "error": format!("{e:#}") }));
                std::process::exit(1)
            }
            Err(e) => Err(e),
        },
        Command::Healthcheck => {
            let bind = std::env::var("CTSYNC_HTTP_ADDR").unwrap_or_else(|_| "0.0.0.0:8080".into());
            ctsync::healthcheck::check(ctsync::healthcheck::target(&bind)?)
        }
        Command::CheckConfig { connect } => {
            let config = Config::load(cli.config.as_deref())?;
            println!("{}", ctsync::check_config::summary(&config));
            if !connect {
                return Ok(());
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a runtime")?;
            let local = tokio::task::LocalSet::new();
            match local.block_on(&rt, ctsync::check_config::connect(&config)) {
                Ok(report) => {
                    println!("{report}");
                    Ok(())
                }
                Err(report) => {
                    println!("{report}");
                    anyhow::bail!("a dependency cannot be reached (see above)")
                }
            }
        }
        other => {
            let redis = ctsync::config::redis_url_from_env()?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a runtime")?;
            rt.block_on(operator::run(&redis, other))
        }
    }
}

/// `ctsync doctor`: prints the findings; the exit code (1 on a blocker).
fn doctor(config_file: Option<&str>, json: bool) -> anyhow::Result<i32> {
    let config = Config::load(config_file)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    let primary =
        ctsync::mssql::MssqlPrimary::new(ctsync::mssql::Pool::new(config.primary.clone(), 1));
    let replica =
        ctsync::mssql::MssqlReplica::new(ctsync::mssql::Pool::new(config.replica.clone(), 1));
    // The tables' lags, when the daemon answers (compared with the
    // CT retention period).
    let lags: Vec<(String, f64)> = ctsync::healthcheck::target(&config.http_addr.to_string())
        .and_then(|addr| ctsync::healthcheck::get_json(addr, "/api/tables"))
        .ok()
        .and_then(|body| {
            body["tables"].as_array().map(|tables| {
                tables
                    .iter()
                    .filter_map(|t| {
                        Some((t["name"].as_str()?.to_string(), t["lag_seconds"].as_f64()?))
                    })
                    .collect()
            })
        })
        .unwrap_or_default();
    let (findings, code) = rt.block_on(ctsync_actors::doctor::check(
        &primary,
        &replica,
        config.ddl_queue.as_deref(),
        config.change_isolation == ctsync::mssql::ChangeIsolation::Snapshot,
        &lags,
        &ctsync::mssql::sql::fix_sql,
    ))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&findings)?);
    } else {
        print!("{}", ctsync_actors::doctor::render(&findings));
    }
    Ok(code)
}
