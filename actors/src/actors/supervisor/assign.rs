//! Applying what a discovery round found: each table's lease grant decides
//! whether its actor starts, keeps running (its fence extended), is handed
//! over or retired; tables no longer tracked are retired, and the
//! singletons' leases recorded. A table gets a new actor only when its
//! previous one is not still retiring, so at most one cycle of it runs.

use std::collections::BTreeSet;

use actix::prelude::*;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::discovery::Discovered;
use super::SupervisorActor;
use crate::actors::ownership::{preferred_owner, write_deadline};
use crate::actors::table::TableActor;
use crate::model::TableId;
use crate::ports::LeaseGrant;
use crate::sync::now_millis;
use crate::telemetry;

impl SupervisorActor {
    /// Applies what a completed round found.
    pub(super) fn discovered(&mut self, found: Discovered, ctx: &mut Context<Self>) {
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

    pub(super) fn discovery_failed(&mut self, message: String) {
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
        let until = write_deadline(found.asked, self.pipeline.config.instance.lease_ttl);
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
}
