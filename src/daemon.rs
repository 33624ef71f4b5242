//! `ctsync run`: builds the adapters from the config, starts the actor
//! pipeline on an actix system, and on SIGTERM/SIGINT lets every table
//! finish the batch in flight before exiting.

use std::sync::Arc;

use anyhow::Context as _;
use ctsync_actors::actors::{self, Shutdown};
use ctsync_actors::keys;
use tracing::{info, warn};

use crate::config::Config;
use crate::mssql::{MssqlPrimary, MssqlReplica, Pool};
use crate::state::RedisState;

pub fn run(config: Config) -> anyhow::Result<()> {
    let system = actix::System::new();
    system.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    info!(
        primary = %config.primary,
        replica = %config.replica,
        redis = %config.redis_url,
        poll_secs = config.sync.poll_interval.as_secs(),
        "ctsync starting"
    );
    let state = Arc::new(RedisState::new(config.redis_url.expose()).context("REDIS_URL")?);
    publish_endpoints(&state, &config).await;
    let primary = Arc::new(MssqlPrimary::new(Pool::new(
        config.primary.clone(),
        config.primary_connections,
    )));
    // The SinkActor is the only writer, so one replica connection suffices.
    let replica = Arc::new(MssqlReplica::new(Pool::new(config.replica.clone(), 1)));
    let running = actors::start(primary, replica, state, config.sync.clone());

    wait_for_signal().await?;
    info!("shutdown requested: finishing the batches in flight");
    if let Err(e) = running.supervisor.send(Shutdown).await {
        warn!(error = %e, "supervisor was already gone at shutdown");
    }
    actix::System::current().stop();
    info!("ctsync stopped");
    Ok(())
}

/// The sanitized endpoints the original tool published (`host:port/db`).
async fn publish_endpoints(state: &RedisState, config: &Config) {
    for (key, value) in [
        (keys::CONFIG_PRIMARY_URL, config.primary.to_string()),
        (keys::CONFIG_REPLICA_URL, config.replica.to_string()),
    ] {
        if let Err(e) = state.set(key, &value).await {
            warn!(key, error = %e, "could not publish the endpoint to Redis; will not retry");
        }
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
