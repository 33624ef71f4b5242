//! `ctsync run`: builds the adapters from the config, starts the actor
//! pipeline on an actix system, and on SIGTERM/SIGINT lets every table
//! finish the batch in flight before exiting.

use std::sync::Arc;

use anyhow::Context as _;
use ctsync_actors::actors::{self, Ports};
use ctsync_actors::keys;
use ctsync_actors::ports::DdlQueue;
use tracing::{info, warn};

use crate::config::Config;
use crate::http::{self, HttpState};
use crate::mssql::{MssqlDdlQueue, MssqlPrimary, MssqlReplica, Pool};
use crate::probes::{PrimaryProbe, RedisProbe, ReplicaProbe};
use crate::state::RedisState;
use crate::telemetry;

pub fn run(config: Config) -> anyhow::Result<()> {
    let system = actix::System::new();
    system.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Caught before anything is logged: from the first line on, SIGTERM
    // stops ctsync gracefully, however far it has got.
    let mut signals = crate::shutdown::Signals::install()?;
    info!(
        primary = %config.primary,
        replica = %config.replica,
        redis = %config.redis_url,
        poll_secs = config.sync.poll_interval.as_secs(),
        "ctsync starting"
    );
    let metrics = telemetry::install().context("installing the Prometheus recorder")?;
    telemetry::spawn_upkeep(metrics.clone());
    let state = Arc::new(RedisState::new(config.redis_url.expose()).context("REDIS_URL")?);
    state.check_usable().await.context("REDIS_URL")?;
    let primary = Arc::new(
        MssqlPrimary::new(Pool::new(
            config
                .primary
                .clone()
                .with_command_timeout(config.change_copy_timeout),
            config.primary_connections,
        ))
        .with_copy_timeout(config.change_copy_timeout)
        .with_change_isolation(config.change_isolation),
    );
    if config.change_isolation == crate::mssql::ChangeIsolation::ReadCommitted {
        warn!("CTSYNC_CHANGE_ISOLATION=read-committed: change sets are copied without SNAPSHOT; CT cleanup can remove changes under the copy of a table lagging past its retention (docs/consistency.md)");
    }
    // The SinkActor is the only writer (one connection); reads of records and
    // catalogs run beside its writes on a second, readiness probes on a third.
    let replica = Arc::new(
        MssqlReplica::new(Pool::new(config.replica.clone(), 3)).with_bulk_load(config.bulk_load),
    );
    let ddl_queue = config.ddl_queue.as_deref().map(|queue| {
        info!(queue, "listening for DDL events");
        Arc::new(MssqlDdlQueue::new(config.primary.clone(), queue)) as Arc<dyn DdlQueue>
    });
    let (verify_primary, verify_replica) = (primary.clone(), replica.clone());
    let running = actors::start(
        Ports {
            primary: primary.clone(),
            replica: replica.clone(),
            state: state.clone(),
            ddl_queue,
        },
        {
            let mut sync = config.sync.clone();
            // Published by discovery at start and again after Redis lost them.
            sync.instance.published = published_endpoints(&config);
            sync
        },
    );

    // Flags act within a second (or at the next poll when this is off).
    let _keyspace = if config.keyspace_events {
        let wake = crate::state::keyspace::wake_tables(running.supervisor.clone());
        match crate::state::keyspace::start(config.redis_url.expose(), wake) {
            Ok(listener) => Some(listener),
            Err(e) => {
                warn!(error = %e, "keyspace notifications unavailable: flags act at the next poll");
                None
            }
        }
    } else {
        None
    };
    let probes: Vec<Arc<dyn crate::http::Probe>> = vec![
        Arc::new(PrimaryProbe(primary)),
        Arc::new(ReplicaProbe(replica)),
        Arc::new(RedisProbe(state.clone())),
    ];
    http::spawn_dependency_checks(probes.clone(), std::time::Duration::from_secs(15));
    let refusals = http::Refusals::default();
    let shared = HttpState {
        state: state.clone(),
        board: running.board.clone(),
        instance: config.sync.instance.id.clone(),
        probes,
        primary: config.primary.to_string(),
        replica: config.replica.to_string(),
        metrics: Some(metrics),
        access: config.access.clone(),
        verify: Some(Arc::new(ctsync_actors::verify::Sides {
            primary: verify_primary,
            replica: verify_replica,
            options: ctsync_actors::verify::Options::default(),
        })),
        verifies: Default::default(),
        known_tables: Default::default(),
        audit: Some(state.clone()),
        refusals: refusals.clone(),
    };
    let (bound, server) = http::serve(config.http_addr, shared).with_context(|| {
        format!(
            "binding the HTTP server to {} (CTSYNC_HTTP_ADDR)",
            config.http_addr
        )
    })?;
    info!(addr = %bound, "HTTP server listening (/, /api/tables, /metrics, /healthz, /readyz)");
    config.access.log_at_start(bound);

    let signal = signals.recv().await;
    info!(
        signal,
        "shutdown requested: stopping at the next page boundary"
    );
    crate::shutdown::stop(&running, Some(server)).await;
    // The refusals of the last minute, which no later one will store.
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        http::refusals::flush(refusals.take_all(), Some(&state)),
    )
    .await;
    actix::System::current().stop();
    info!("ctsync stopped");
    Ok(())
}

/// The sanitized endpoints the original tool published (`host:port/db`).
fn published_endpoints(config: &Config) -> Vec<(String, String)> {
    vec![
        (
            keys::CONFIG_PRIMARY_URL.to_string(),
            config.primary.to_string(),
        ),
        (
            keys::CONFIG_REPLICA_URL.to_string(),
            config.replica.to_string(),
        ),
    ]
}
