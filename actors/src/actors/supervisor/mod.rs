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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use actix::prelude::*;
use tracing::{debug, error, info, warn};

use tokio::time::Instant;

use super::ownership::{preferred_owner, write_deadline, SingletonLease};
use super::table::{Retire, TableActor, Wake};
use crate::error::Result;
use crate::keys;
use crate::model::TableId;
use crate::ports::LeaseGrant;
use crate::sync::{now_millis, Pipeline};
use crate::telemetry;

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
        &self.pipeline.config.instance_id
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

    /// Applies what a completed round found.
    fn discovered(&mut self, found: Discovered, ctx: &mut Context<Self>) {
        match (&found.failure, &found.tables) {
            (Some(message), _) => self.discovery_failed(message.clone()),
            (None, Some(tables)) => {
                self.marker_seen = true;
                if found.redis_lost {
                    self.redis_lost();
                }
                telemetry::discovery(true, tables.len());
                self.pipeline.board.set_discovery_error(None);
                if self.discovery_error.take().is_some() {
                    info!("table discovery works again");
                }
            }
            (None, None) => {}
        }
        self.reconcile(found, ctx)
    }

    fn discovery_failed(&mut self, message: String) {
        telemetry::discovery(false, 0);
        telemetry::error("discovery");
        // Said once per distinct error, not every poll.
        if self.discovery_error.as_deref() != Some(message.as_str()) {
            warn!(error = %message, "table discovery failed; keeping the running tables as they are and retrying every poll");
        }
        self.pipeline
            .board
            .set_discovery_error(Some(message.clone()));
        self.discovery_error = Some(message);
    }
}

impl SupervisorActor {
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

    fn reconcile(&mut self, found: Discovered, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        let until = write_deadline(found.asked, self.pipeline.config.lease_ttl);
        self.until = Some(until);
        if found.instances != self.instances {
            info!(instances = ?found.instances, "live ctsync instances changed; tables are shared among them");
            self.instances = found.instances.clone();
        }
        let me = self.me().to_string();
        for (table, grant) in found.grants {
            let wanted = preferred_owner(&table, &found.instances) == Some(me.as_str());
            let running = self.tables.contains_key(&table);
            match (grant, running) {
                (LeaseGrant::Renewed, true) => {
                    self.pipeline.guards.fence.extend(&table, until);
                    if !wanted {
                        info!(table = %table, "another instance should run this table; handing it over");
                        self.retire(table, true, ctx);
                    }
                }
                (LeaseGrant::Acquired, true) => {
                    warn!(table = %table, "this instance's lease of the table expired or was lost (Redis down or lost its data); stopping its cycle and claiming it again");
                    telemetry::lease_lost();
                    self.retire(table, false, ctx);
                }
                (LeaseGrant::Held(by), true) => {
                    warn!(table = %table, holder = %by, "this instance lost the table's lease to another instance; stopping its cycle");
                    telemetry::lease_lost();
                    self.retire(table, false, ctx);
                }
                (grant @ (LeaseGrant::Acquired | LeaseGrant::Renewed), false) => {
                    if self.retiring.contains(&table) {
                        // Its previous actor is still finishing a cycle: wait.
                        continue;
                    }
                    if let Some(by) = self.held_elsewhere.remove(&table) {
                        if grant == LeaseGrant::Acquired {
                            info!(table = %table, previous = %by, "took over the table from another instance");
                            telemetry::takeover();
                        }
                    }
                    info!(table = %table, "tracking table");
                    let pipeline = self.pipeline.clone();
                    let generation = pipeline.guards.fence.grant(&table, until);
                    let id = table.clone();
                    let addr = actix::Supervisor::start(move |_| {
                        TableActor::new(id, pipeline, generation)
                    });
                    self.tables.insert(table, addr);
                }
                (LeaseGrant::Held(by), false) => {
                    self.held_elsewhere.insert(table, by);
                }
            }
        }
        let Some(tables) = found.tables else {
            self.singleton_leases(&found.singleton_grants, until);
            return;
        };
        let tracked: BTreeSet<TableId> = tables.into_iter().collect();
        let gone: Vec<TableId> = self
            .tables
            .keys()
            .filter(|t| !tracked.contains(t))
            .cloned()
            .collect();
        for table in gone {
            info!(table = %table, "table is no longer tracked by change tracking; stopping it");
            self.retire(table, true, ctx);
        }
        self.held_elsewhere.retain(|t, _| tracked.contains(t));
        self.tracked = Some(tracked);
        self.singleton_leases(&found.singleton_grants, until);
    }

    /// Records which singleton leases this instance holds, and the gauge.
    fn singleton_leases(&self, grants: &[LeaseGrant], until: Instant) {
        let mut held = self.tables.len();
        for ((name, lease), grant) in self.singletons.iter().zip(grants) {
            let was = lease.held();
            lease.set(grant.holds().then_some(until));
            if grant.holds() {
                held += 1;
            }
            if was != grant.holds() {
                info!(
                    singleton = name,
                    held = grant.holds(),
                    "singleton lease changed hands"
                );
            }
        }
        telemetry::leases_held(held);
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
                if let Err(e) = pipeline.state.publish(&pipeline.config.published).await {
                    warn!(error = %e, "could not publish the endpoints to Redis yet; discovery retries");
                }
            }
            .into_actor(self),
        );
        self.discover(ctx);
        // Every poll, and at least three times per lease TTL, so a lease
        // never runs out between renewals whatever the two settings say.
        let config = &self.pipeline.config;
        let every = config.poll_interval.min(config.lease_ttl / 3);
        ctx.run_interval(every, |act, ctx| act.discover(ctx));
    }
}

/// Gives the table's lease back (best effort: it expires by itself).
async fn give_back(pipeline: &Pipeline, table: &TableId) {
    let lease = keys::table_lease(table);
    if let Err(e) = pipeline
        .state
        .release_leases(&[lease], &pipeline.config.instance_id)
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
            let me = &pipeline.config.instance_id;
            if let Err(e) = pipeline.state.release_leases(&leases, me).await {
                warn!(error = %e, "could not give the leases back; other instances take the tables when they expire");
            }
            let _ = pipeline.state.leave(me).await;
        })
    }
}
