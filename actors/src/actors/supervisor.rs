//! SupervisorActor: every poll lists the CT-tracked tables on the primary,
//! creates their default flags (never overwriting an operator's value),
//! starts one supervised TableActor per new table and retires actors of
//! tables that are no longer tracked. A failed discovery keeps the tables
//! already running.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::*;
use tracing::{info, warn};

use super::table::{ApplySchemaChange, Retire, TableActor};
use crate::ddl::SchemaChange;
use crate::error::Result;
use crate::model::TableId;
use crate::sync::{Pipeline, PrimaryFacts};
use crate::telemetry;

pub struct SupervisorActor {
    pipeline: Arc<Pipeline>,
    tables: BTreeMap<TableId, Addr<TableActor>>,
    shutting_down: bool,
    /// The last discovery error, to log each distinct one once.
    discovery_error: Option<String>,
}

impl SupervisorActor {
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        Self {
            pipeline,
            tables: BTreeMap::new(),
            shutting_down: false,
            discovery_error: None,
        }
    }

    fn discover(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        let pipeline = self.pipeline.clone();
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
            pipeline.set_facts(PrimaryFacts {
                identity: Some(identity),
                retention,
            });
            let mut ready = Vec::with_capacity(tables.len());
            for table in tables {
                // A table whose flags cannot be created waits for the next poll.
                match pipeline.state.ensure_flags(&table).await {
                    Ok(()) => ready.push(table),
                    Err(e) => {
                        telemetry::error("discovery");
                        warn!(table = %table, error = %e, "could not create default flags");
                    }
                }
            }
            Ok::<_, crate::error::Error>(ready)
        };
        ctx.wait(work.into_actor(self).map(
            |result: Result<Vec<TableId>>, act, ctx| match result {
                Ok(tables) => {
                    telemetry::discovery(true, tables.len());
                    if act.discovery_error.take().is_some() {
                        info!("table discovery works again");
                    }
                    act.reconcile(tables, ctx)
                }
                Err(e) => {
                    telemetry::discovery(false, 0);
                    telemetry::error("discovery");
                    let message = e.to_string();
                    // Said once per distinct error, not every poll.
                    if act.discovery_error.as_deref() != Some(message.as_str()) {
                        warn!(error = %message, "table discovery failed; keeping the running tables and retrying every poll");
                    }
                    act.discovery_error = Some(message);
                }
            },
        ));
    }

    fn reconcile(&mut self, tables: Vec<TableId>, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        for table in &tables {
            if !self.tables.contains_key(table) {
                info!(table = %table, "tracking table");
                let pipeline = self.pipeline.clone();
                let id = table.clone();
                let addr = actix::Supervisor::start(move |_| TableActor::new(id, pipeline));
                self.tables.insert(table.clone(), addr);
            }
        }
        let gone: Vec<TableId> = self
            .tables
            .keys()
            .filter(|t| !tables.contains(t))
            .cloned()
            .collect();
        for table in gone {
            if let Some(addr) = self.tables.remove(&table) {
                info!(table = %table, "table is no longer tracked by change tracking; stopping it");
                self.pipeline.board.remove(&table.key_name());
                ctx.spawn(
                    async move { addr.send(Retire).await.ok() }
                        .into_actor(self)
                        .map(|_, _, _| ()),
                );
            }
        }
    }
}

impl Actor for SupervisorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
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
            // The old name's actor goes; discovery starts one for the new name.
            let old = self.tables.remove(from);
            self.pipeline.board.remove(&from.key_name());
            let pipeline = self.pipeline.clone();
            return Box::pin(
                async move {
                    if let Some(addr) = old {
                        addr.send(Retire).await.ok();
                    }
                    crate::sync::apply_schema_change(&pipeline, &change).await
                }
                .into_actor(self),
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

/// Graceful stop: every table finishes its cycle in flight and schedules no
/// more; answered when all have.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for SupervisorActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        self.shutting_down = true;
        let addrs: Vec<Addr<TableActor>> = self.tables.values().cloned().collect();
        Box::pin(async move {
            for addr in addrs {
                // An actor that already stopped has nothing in flight.
                addr.send(Retire).await.ok();
            }
        })
    }
}
