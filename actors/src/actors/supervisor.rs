//! SupervisorActor: every poll lists the CT-tracked tables on the primary,
//! creates their default flags (never overwriting an operator's value),
//! starts one supervised TableActor per new table and retires actors of
//! tables that are no longer tracked. A discovery that did not complete
//! changes nothing. A table gets a new actor only after its previous one has
//! finished its cycle, and each actor writes under its own fence token, so
//! at most one cycle of a table ever runs. It also notices Redis losing its
//! data (the marker key vanished) and says so.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use actix::prelude::*;
use tracing::{error, info, warn};

use super::table::{ApplySchemaChange, Retire, TableActor, Wake};
use crate::ddl::SchemaChange;
use crate::error::Result;
use crate::model::TableId;
use crate::ports::Marker;
use crate::sync::{now_millis, Pipeline, PrimaryFacts};
use crate::telemetry;

pub struct SupervisorActor {
    pipeline: Arc<Pipeline>,
    tables: BTreeMap<TableId, Addr<TableActor>>,
    /// Tables whose retired actor may still be finishing its cycle.
    retiring: BTreeSet<TableId>,
    shutting_down: bool,
    /// The last discovery error, to log each distinct one once.
    discovery_error: Option<String>,
    /// This process has seen the state store's marker (so a missing one
    /// later means the store lost its data).
    marker_seen: bool,
}

/// What one discovery found.
struct Discovered {
    tables: Vec<TableId>,
    /// The state store lost its data since this process last looked (or
    /// before it started, when the replica holds ctsync's records).
    redis_lost: bool,
}

impl SupervisorActor {
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        Self {
            pipeline,
            tables: BTreeMap::new(),
            retiring: BTreeSet::new(),
            shutting_down: false,
            discovery_error: None,
            marker_seen: false,
        }
    }

    fn discover(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        let pipeline = self.pipeline.clone();
        let marker_seen = self.marker_seen;
        let work = async move {
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
            // All tables' flags or none: a table whose flags could not be
            // written is not "gone", so a failure here ends the discovery.
            let marker = pipeline.state.ensure_flags(&tables).await?;
            pipeline.set_facts(PrimaryFacts {
                identity: Some(identity),
                retention,
            });
            let redis_lost = marker == Marker::Created
                && (marker_seen || replica_has_records(&pipeline, &tables).await?);
            // Published at start and again whenever Redis lost them.
            if !marker_seen || marker == Marker::Created {
                pipeline.state.publish(&pipeline.config.published).await?;
            }
            Ok::<_, crate::error::Error>(Discovered { tables, redis_lost })
        };
        ctx.wait(work.into_actor(self).map(
            |result: Result<Discovered>, act, ctx| match result {
                Ok(found) => {
                    act.marker_seen = true;
                    if found.redis_lost {
                        act.redis_lost();
                    }
                    telemetry::discovery(true, found.tables.len());
                    act.pipeline.board.set_discovery_error(None);
                    if act.discovery_error.take().is_some() {
                        info!("table discovery works again");
                    }
                    act.reconcile(found.tables, ctx)
                }
                Err(e) => {
                    telemetry::discovery(false, 0);
                    telemetry::error("discovery");
                    let message = e.to_string();
                    // Said once per distinct error, not every poll.
                    if act.discovery_error.as_deref() != Some(message.as_str()) {
                        warn!(error = %message, "table discovery failed; keeping the running tables as they are and retrying every poll");
                    }
                    act.pipeline.board.set_discovery_error(Some(message.clone()));
                    act.discovery_error = Some(message);
                }
            },
        ));
    }

    fn redis_lost(&self) {
        error!(
            "Redis lost its data (the key mssql_sync:marker vanished): every table's flags are back \
             to \"false\", so replication is paused. Re-enable the tables (mssql_sync:enabled:<T> = \
             \"true\"); each continues from the version recorded on the replica without a reload. \
             Run Redis with persistence (appendonly yes) to avoid this"
        );
        telemetry::redis_data_loss();
        self.pipeline.board.set_redis_data_lost_at(now_millis());
    }

    fn reconcile(&mut self, tables: Vec<TableId>, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        for table in &tables {
            if self.tables.contains_key(table) {
                continue;
            }
            if self.retiring.contains(table) {
                // Its previous actor is still finishing a cycle: wait.
                continue;
            }
            info!(table = %table, "tracking table");
            let pipeline = self.pipeline.clone();
            let token = pipeline.fence.issue(table);
            let id = table.clone();
            let addr = actix::Supervisor::start(move |_| TableActor::new(id, pipeline, token));
            self.tables.insert(table.clone(), addr);
        }
        let gone: Vec<TableId> = self
            .tables
            .keys()
            .filter(|t| !tables.contains(t))
            .cloned()
            .collect();
        for table in gone {
            info!(table = %table, "table is no longer tracked by change tracking; stopping it");
            self.retire(table, ctx);
        }
    }

    /// Stops the table's actor: its token is revoked at once (no write of
    /// it lands any more), and the table gets no new actor until the old
    /// one has answered (its cycle in flight finished).
    fn retire(&mut self, table: TableId, ctx: &mut Context<Self>) {
        let Some(addr) = self.tables.remove(&table) else {
            return;
        };
        self.pipeline.fence.revoke(&table);
        self.pipeline.board.remove(&table.key_name());
        self.retiring.insert(table.clone());
        ctx.spawn(
            async move { addr.send(Retire).await.ok() }
                .into_actor(self)
                .map(move |_, act, _| {
                    act.retiring.remove(&table);
                }),
        );
    }
}

/// Whether the replica holds ctsync's record of any of `tables` (ctsync ran
/// against it before, so an empty Redis lost its data).
async fn replica_has_records(pipeline: &Pipeline, tables: &[TableId]) -> Result<bool> {
    for table in tables {
        let record = pipeline.sink.record(table.clone()).await?;
        if record.version.is_some() || record.load.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

impl Actor for SupervisorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Published at once, whether the primary answers or not; discovery
        // publishes again after Redis lost them.
        let pipeline = self.pipeline.clone();
        ctx.spawn(
            async move {
                if let Err(e) = pipeline.state.publish(&pipeline.config.published).await {
                    warn!(error = %e, "could not publish the endpoints to Redis yet; discovery retries");
                }
            }
            .into_actor(self),
        );
        self.discover(ctx);
        let poll = self.pipeline.config.poll_interval;
        ctx.run_interval(poll, |act, ctx| act.discover(ctx));
    }
}

/// Routes a schema change from the DDL listener to the table's actor (table
/// renames are applied here, since they change which actor owns the table).
pub struct RouteSchemaChange(pub SchemaChange);

impl Message for RouteSchemaChange {
    type Result = Result<()>;
}

impl Handler<RouteSchemaChange> for SupervisorActor {
    type Result = ResponseActFuture<Self, Result<()>>;

    fn handle(&mut self, msg: RouteSchemaChange, _ctx: &mut Self::Context) -> Self::Result {
        let change = msg.0;
        if let SchemaChange::RenameTable { from, .. } = &change {
            // The old name's actor goes (and is waited for); discovery
            // starts one for the new name.
            let from = from.clone();
            let old = self.tables.remove(&from);
            self.pipeline.fence.revoke(&from);
            self.pipeline.board.remove(&from.key_name());
            self.retiring.insert(from.clone());
            let pipeline = self.pipeline.clone();
            return Box::pin(
                async move {
                    if let Some(addr) = old {
                        addr.send(Retire).await.ok();
                    }
                    crate::sync::apply_schema_change(&pipeline, &pipeline.sink, &change).await
                }
                .into_actor(self)
                .map(move |result, act, _| {
                    act.retiring.remove(&from);
                    result
                }),
            );
        }
        let addr = self.tables.get(change.table()).cloned();
        Box::pin(
            async move {
                match addr {
                    Some(addr) => addr.send(ApplySchemaChange(change)).await.map_err(|e| {
                        crate::error::Error::Sink(format!("table actor unavailable: {e}"))
                    })?,
                    None => Ok(()), // not tracked: nothing on the replica to change
                }
            }
            .into_actor(self),
        )
    }
}

/// An operator key of `table` changed: its actor runs a cycle now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WakeTable(pub TableId);

impl Handler<WakeTable> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, msg: WakeTable, _ctx: &mut Self::Context) {
        if let Some(addr) = self.tables.get(&msg.0) {
            addr.do_send(Wake);
        }
    }
}

/// Graceful stop: every table finishes its cycle in flight and schedules no
/// more; answered when all have.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for SupervisorActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        self.shutting_down = true;
        // Loads and backlogs stop at their next page boundary.
        self.pipeline
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let addrs: Vec<Addr<TableActor>> = self.tables.values().cloned().collect();
        Box::pin(async move {
            // All at once: the stop takes as long as the slowest table.
            let waits: Vec<_> = addrs
                .into_iter()
                .map(|addr| actix_rt::spawn(async move { addr.send(Retire).await.ok() }))
                .collect();
            for wait in waits {
                // An actor that already stopped has nothing in flight.
                let _ = wait.await;
            }
        })
    }
}
