//! One discovery round, as a plain async function over the state the poll
//! started from ([`Round`]): list the tracked tables, scout the running
//! ones, create new tables' flags, renew the leases. It changes nothing of
//! the supervisor; what it found ([`Discovered`]) is applied afterwards, so
//! a round that did not complete changes nothing.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::time::Instant;
use tracing::warn;

use crate::actors::ownership::preferred_owner;
use crate::error::Result;
use crate::keys;
use crate::model::TableId;
use crate::ports::{LeaseGrant, Marker};
use crate::sync::{idle, Pipeline, PrimaryFacts};
use crate::telemetry;

/// What a discovery round starts from: the supervisor's state as the poll
/// began (the supervisor waits for the round before it changes any of it).
pub(super) struct Round {
    pub pipeline: Arc<Pipeline>,
    /// This process has seen the state store's marker before.
    pub marker_seen: bool,
    /// The tables tracked at the last discovery (`None` before the first).
    pub known: Option<BTreeSet<TableId>>,
    /// The tables this instance runs now.
    pub running: Vec<TableId>,
    /// The singletons' lease keys, in the supervisor's `singletons` order.
    pub singleton_leases: Vec<String>,
    /// The table statuses as of the poll's start, published with the leases
    /// (one round trip).
    pub statuses: String,
}

/// What one discovery found.
pub(super) struct Discovered {
    /// `None`: the primary could not be listed (`failure` says why); the
    /// running tables' leases were renewed all the same.
    pub tables: Option<Vec<TableId>>,
    pub failure: Option<String>,
    /// The state store lost its data since this process last looked (or
    /// before it started, when the replica holds ctsync's records).
    pub redis_lost: bool,
    pub instances: Vec<String>,
    /// The table leases asked for, and what each came to.
    pub grants: Vec<(TableId, LeaseGrant)>,
    /// The singletons' leases, in `singletons` order.
    pub singleton_grants: Vec<LeaseGrant>,
    /// When the leases were asked for (their TTL started after this).
    pub asked: Instant,
}

impl Round {
    /// Runs the round: two round trips to the state store, whatever the
    /// primary answers. The leases are renewed even when the primary cannot
    /// be listed: a primary outage must not move every table between
    /// instances.
    pub async fn run(self) -> Result<Discovered> {
        let p = &*self.pipeline;
        let me = p.config.instance.id.as_str();
        let ttl = p.config.instance.lease_ttl;
        let listed = list_tables(p).await;
        if listed.is_ok() {
            // One batched look at which running tables have changes.
            idle::scout(p, &self.running).await;
        }
        let new = listed.as_ref().ok().map(|tables| self.unseen(tables));
        let (marker, instances) = p.state.discovery_start(new.as_deref(), me, ttl).await?;
        let (tables, redis_lost, failure) = match (listed, marker) {
            (Ok(tables), Some(marker)) => {
                let redis_lost =
                    after_marker(p, &tables, new.as_deref(), marker, self.marker_seen).await?;
                (Some(tables), redis_lost, None)
            }
            (Ok(_), None) => (None, false, None),
            (Err(e), _) => (None, false, Some(e.to_string())),
        };
        let ask = self.leases_to_ask(tables.as_deref(), &instances, me);
        let mut names: Vec<String> = ask.iter().map(keys::table_lease).collect();
        names.extend(self.singleton_leases.iter().cloned());
        let asked = Instant::now();
        // Idle tables' due version advances go with it.
        let statuses = &self.statuses;
        let mut grants = idle::move_queued(p, |advances| async move {
            p.state
                .discovery_finish(&names, me, ttl, statuses, &advances)
                .await
        })
        .await?;
        let singleton_grants = grants.split_off(ask.len().min(grants.len()));
        Ok(Discovered {
            tables,
            failure,
            redis_lost,
            instances,
            grants: ask.into_iter().zip(grants).collect(),
            singleton_grants,
            asked,
        })
    }

    /// The listed tables not seen before: only they get their flags
    /// created (SET NX).
    fn unseen(&self, tables: &[TableId]) -> Vec<TableId> {
        tables
            .iter()
            .filter(|t| self.known.as_ref().is_none_or(|k| !k.contains(*t)))
            .cloned()
            .collect()
    }

    /// The tables this instance should run, and those it runs now (renewed
    /// until handed over or gone).
    fn leases_to_ask(
        &self,
        tables: Option<&[TableId]>,
        instances: &[String],
        me: &str,
    ) -> Vec<TableId> {
        let mut ask: Vec<TableId> = tables
            .into_iter()
            .flatten()
            .filter(|t| preferred_owner(t, instances) == Some(me))
            .cloned()
            .collect();
        for t in &self.running {
            let tracked = tables.is_none_or(|all| all.contains(t));
            if tracked && !ask.contains(t) {
                ask.push(t.clone());
            }
        }
        ask
    }
}

/// Lists the tracked tables and reads the primary's facts.
async fn list_tables(pipeline: &Pipeline) -> Result<Vec<TableId>> {
    let tables = pipeline.primary.tracked_tables().await?;
    let identity = pipeline.primary.identity().await?;
    let retention = match pipeline.primary.change_retention().await {
        Ok(retention) => {
            telemetry::retention(retention);
            retention
        }
        Err(e) => {
            warn!(error = %e, "could not read the change tracking retention period");
            pipeline.facts().retention
        }
    };
    pipeline.set_facts(PrimaryFacts {
        identity: Some(identity),
        retention,
    });
    Ok(tables)
}

/// What the marker says once the new tables' flags were created with it:
/// whether Redis lost its data. A marker just created means every flag
/// may be gone, so all tables' flags are created again (all or none: a
/// table whose flags could not be written is not "gone", so a failure
/// here ends the discovery); the published keys are written at start and
/// again then.
async fn after_marker(
    pipeline: &Pipeline,
    tables: &[TableId],
    new: Option<&[TableId]>,
    marker: Marker,
    marker_seen: bool,
) -> Result<bool> {
    if marker == Marker::Created && new.is_none_or(|n| n.len() < tables.len()) {
        pipeline.state.ensure_flags(tables).await?;
    }
    let redis_lost =
        marker == Marker::Created && (marker_seen || replica_has_records(pipeline, tables).await?);
    if !marker_seen || marker == Marker::Created {
        pipeline
            .state
            .publish(&pipeline.config.instance.published)
            .await?;
    }
    Ok(redis_lost)
}

/// Whether the replica holds ctsync's record of any of `tables` (ctsync ran
/// against it before, so an empty Redis lost its data).
async fn replica_has_records(pipeline: &Pipeline, tables: &[TableId]) -> Result<bool> {
    for table in tables {
        let record = pipeline.sink.record(table.clone()).await?;
        if record.version.is_some() || record.load.is_some() || record.unreadable.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}
