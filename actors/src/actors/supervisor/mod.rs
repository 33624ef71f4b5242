//! SupervisorActor: every poll lists the CT-tracked tables on the primary,
//! creates their default flags (never overwriting an operator's value),
//! renews this instance's heartbeat and leases, and runs one supervised
//! TableActor for each table whose lease it holds (the tables rendezvous
//! hashing gives it among the live instances, see [`super::ownership`]). It
//! retires actors of tables it lost, hands over tables another instance
//! should run, and gives its leases back on a graceful stop. A discovery
//! that did not complete changes nothing (and renews nothing: the fence
//! stops this instance's writes before its leases can be taken over). A
//! table gets a new actor only after its previous one has finished its
//! cycle, and each actor writes under its own claim, so at most one cycle
//! of a table ever runs. It also notices Redis losing its data (the marker
//! key vanished) and says so.
//!
//! Here: the actor, its poll, retiring a table's actor and the graceful
//! stop. The round itself is in `discovery`, applying what it found in
//! `assign`, the DDL inbox's routing and table renames in `rename`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use actix::prelude::*;
use tracing::{debug, warn};

use tokio::time::Instant;

use super::ownership::SingletonLease;
use super::table::{Retire, TableActor, Wake};
use crate::error::Result;
use crate::keys;
use crate::model::TableId;
use crate::sync::Pipeline;
use crate::telemetry;

mod assign;
mod discovery;
mod rename;

use discovery::{Discovered, Round};
pub use rename::{RouteSchemaChange, Routed};

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
    /// The tables tracked on the primary at the last discovery (`None`
    /// before the first one completed).
    tracked: Option<BTreeSet<TableId>>,
    /// Singleton actors' leases (`module_sync`, `ddl_listener`).
    singletons: Vec<(&'static str, SingletonLease)>,
    /// Tables another instance held when this one last asked (to count
    /// takeovers).
    held_elsewhere: BTreeMap<TableId, String>,
    /// Until when the leases renewed last may be written under.
    until: Option<Instant>,
    /// The live instances at the last discovery.
    instances: Vec<String>,
}

impl SupervisorActor {
    pub fn new(pipeline: Arc<Pipeline>, singletons: Vec<(&'static str, SingletonLease)>) -> Self {
        Self {
            pipeline,
            tables: BTreeMap::new(),
            retiring: BTreeSet::new(),
            shutting_down: false,
            discovery_error: None,
            marker_seen: false,
            tracked: None,
            singletons,
            held_elsewhere: BTreeMap::new(),
            until: None,
            instances: Vec::new(),
        }
    }

    fn me(&self) -> &str {
        &self.pipeline.config.instance.id
    }

    fn discover(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        ctx.wait(self.round().run().into_actor(self).map(
            |result: Result<Discovered>, act, ctx| match result {
                Ok(found) => act.discovered(found, ctx),
                Err(e) => act.discovery_failed(e.to_string()),
            },
        ));
    }

    /// What a discovery round starts from: this actor's state now.
    fn round(&self) -> Round {
        // Published with the leases: the statuses as of this poll's start.
        let statuses = serde_json::to_string(&self.pipeline.board.snapshot()).unwrap_or_else(|e| {
            debug!(error = %e, "could not encode the table statuses");
            "{}".into()
        });
        Round {
            pipeline: self.pipeline.clone(),
            marker_seen: self.marker_seen,
            known: self.tracked.clone(),
            running: self.tables.keys().cloned().collect(),
            singleton_leases: self
                .singletons
                .iter()
                .map(|(name, _)| keys::singleton_lease(name))
                .collect(),
            statuses,
        }
    }

    /// Stops the table's actor: its claim is refused at once (no write of
    /// it lands any more), and the table gets no new actor until the old
    /// one has answered (its cycle in flight finished). With `release`, the
    /// lease is given back then (a handover, or a table no longer tracked).
    fn retire(&mut self, table: TableId, release: bool, ctx: &mut Context<Self>) {
        let Some(addr) = self.unassign(&table) else {
            return;
        };
        let pipeline = self.pipeline.clone();
        ctx.spawn(
            async move {
                addr.send(Retire).await.ok();
                if release {
                    give_back(&pipeline, &table).await;
                }
                table
            }
            .into_actor(self)
            .map(move |table, act, _| {
                act.retiring.remove(&table);
                act.forget_retired(&table);
            }),
        );
    }

    /// Takes the table from its actor at once: its claim is refused from
    /// now on, its status and gauges go, and it counts as retiring until the
    /// actor has answered. Returns the actor, if the table had one.
    fn unassign(&mut self, table: &TableId) -> Option<Addr<TableActor>> {
        let addr = self.tables.remove(table)?;
        self.pipeline.guards.fence.revoke(table);
        self.pipeline.board.remove(&table.key_name());
        telemetry::forget_table(&table.key_name());
        self.retiring.insert(table.clone());
        Some(addr)
    }

    /// After a retired actor answered (its last cycle is over), its board
    /// entry and gauges go, in case that cycle wrote them again: the page,
    /// the published statuses and the alerts see only tables this instance
    /// runs.
    fn forget_retired(&self, table: &TableId) {
        if !self.tables.contains_key(table) {
            self.pipeline.board.remove(&table.key_name());
            telemetry::forget_table(&table.key_name());
        }
    }
}

impl Actor for SupervisorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Published at once, whether the primary answers or not; discovery
        // publishes again after Redis lost them.
        let pipeline = self.pipeline.clone();
        ctx.spawn(
            async move {
                if let Err(e) = pipeline.state.publish(&pipeline.config.instance.published).await {
                    warn!(error = %e, "could not publish the endpoints to Redis yet; discovery retries");
                }
            }
            .into_actor(self),
        );
        self.discover(ctx);
        // Every poll, and at least three times per lease TTL, so a lease
        // never runs out between renewals whatever the two settings say.
        let config = &self.pipeline.config;
        let every = config.poll_interval.min(config.instance.lease_ttl / 3);
        ctx.run_interval(every, |act, ctx| act.discover(ctx));
    }
}

/// Gives the table's lease back (best effort: it expires by itself).
async fn give_back(pipeline: &Pipeline, table: &TableId) {
    let lease = keys::table_lease(table);
    if let Err(e) = pipeline
        .state
        .release_leases(&[lease], &pipeline.config.instance.id)
        .await
    {
        debug!(error = %e, "could not give a lease back; it expires by itself");
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
        self.pipeline.guards.stop();
        let addrs: Vec<Addr<TableActor>> = self.tables.values().cloned().collect();
        let mut leases: Vec<String> = self.tables.keys().map(keys::table_lease).collect();
        leases.extend(
            self.singletons
                .iter()
                .map(|(name, _)| keys::singleton_lease(name)),
        );
        for (_, lease) in &self.singletons {
            lease.set(None);
        }
        let pipeline = self.pipeline.clone();
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
            // Given back, so another instance takes the tables at once
            // instead of after the TTL.
            let me = &pipeline.config.instance.id;
            if let Err(e) = pipeline.state.release_leases(&leases, me).await {
                warn!(error = %e, "could not give the leases back; other instances take the tables when they expire");
            }
            let _ = pipeline.state.leave(me).await;
        })
    }
}
