//! Routing of the DDL inbox's schema changes to the tables' actors, and
//! table renames, which the supervisor applies itself because they change
//! which actor owns the table. A rename writes only under a fresh claim of
//! a lease this instance holds, after the old name's actor has answered.

use std::collections::BTreeSet;

use actix::prelude::*;
use tracing::info;

use tokio::time::Instant;

use super::{give_back, SupervisorActor};
use crate::actors::ownership::write_deadline;
use crate::actors::table::{claim_table, ApplySchemaChange, Retire};
use crate::ddl::SchemaChange;
use crate::error::{Error, Result};
use crate::keys;
use crate::model::TableId;
use crate::ports::LeaseGrant;
use crate::sync::Pipeline;

/// Routes a schema change from the DDL inbox to the table's actor (table
/// renames are applied here, since they change which actor owns the table).
pub struct RouteSchemaChange(pub SchemaChange);

/// Where a schema change went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// Applied by this instance.
    Applied,
    /// The table is not tracked: nothing on the replica to change.
    NotTracked,
    /// Another instance owns the table (or none does right now, or
    /// discovery has not run yet): the event waits in the inbox for it.
    Elsewhere,
}

impl Message for RouteSchemaChange {
    type Result = Result<Routed>;
}

impl Handler<RouteSchemaChange> for SupervisorActor {
    type Result = ResponseActFuture<Self, Result<Routed>>;

    fn handle(&mut self, msg: RouteSchemaChange, _ctx: &mut Self::Context) -> Self::Result {
        let change = msg.0;
        let table = change.table().clone();
        if let Some(to) = renamed_before_its_event(&change, self.tracked.as_ref()) {
            if !self.tables.contains_key(&table) && !self.retiring.contains(&table) {
                // Discovery saw the rename first: the old name's actor is
                // gone and the new name's (paused: its flags are new) runs.
                // The keys, the record and the replica table still move.
                info!(from = %table, to = %to, "a table renamed before its RENAME event arrived; moving its keys and replica table now");
                let pipeline = self.pipeline.clone();
                return Box::pin(
                    async move { rename_released(&pipeline, &table, &change).await }
                        .into_actor(self),
                );
            }
        }
        if !self.tables.contains_key(&table) {
            // A rename this instance cannot apply yet waits in the inbox,
            // never dropped: the old name's actor is still retiring, or
            // discovery does not list the new name yet (it lags, or change
            // tracking is off on it for now). The keys and the replica
            // table of an enabled table must move once it can.
            let rename = matches!(change, SchemaChange::RenameTable { .. });
            let routed = match &self.tracked {
                Some(tracked) if !tracked.contains(&table) && !rename => Routed::NotTracked,
                _ => Routed::Elsewhere,
            };
            return Box::pin(async move { Ok(routed) }.into_actor(self));
        }
        if let SchemaChange::RenameTable { .. } = &change {
            // The old name's actor goes (and is waited for); this instance
            // claims the old name once more to rename it; discovery starts
            // an actor for the new name wherever it belongs.
            let from = table;
            let addr = self.unassign(&from);
            let pipeline = self.pipeline.clone();
            let until = self.until.unwrap_or_else(Instant::now);
            return Box::pin(
                async move {
                    if let Some(addr) = addr {
                        addr.send(Retire).await.ok();
                    }
                    let result = rename_under_new_claim(&pipeline, &from, until, &change).await;
                    pipeline.guards.fence.revoke(&from);
                    give_back(&pipeline, &from).await;
                    (from, result)
                }
                .into_actor(self)
                .map(move |(from, result), act, _| {
                    act.retiring.remove(&from);
                    act.forget_retired(&from);
                    result.map(|_| Routed::Applied)
                }),
            );
        }
        let addr = self.tables.get(&table).cloned();
        Box::pin(
            async move {
                let addr = addr.ok_or_else(|| Error::Sink("table actor unavailable".into()))?;
                addr.send(ApplySchemaChange(change))
                    .await
                    .map_err(|e| Error::Sink(format!("table actor unavailable: {e}")))??;
                Ok(Routed::Applied)
            }
            .into_actor(self),
        )
    }
}

/// Renames `from` under a fresh claim of this instance (whose lease it
/// still holds until `until`).
async fn rename_under_new_claim(
    pipeline: &Pipeline,
    from: &TableId,
    until: Instant,
    change: &SchemaChange,
) -> Result<()> {
    let generation = pipeline.guards.fence.grant(from, until);
    let claim = claim_table(pipeline, from, generation).await?;
    crate::sync::apply_schema_change(pipeline, &pipeline.sink.fenced(claim), change).await
}

/// The new name of a table rename that discovery noticed before the
/// RENAME event: the old name is no longer tracked, the new one is.
fn renamed_before_its_event<'a>(
    change: &'a SchemaChange,
    tracked: Option<&BTreeSet<TableId>>,
) -> Option<&'a TableId> {
    let SchemaChange::RenameTable { from, to } = change else {
        return None;
    };
    let tracked = tracked?;
    (!tracked.contains(from) && tracked.contains(to)).then_some(to)
}

/// Renames `from`, which no actor of this instance runs any more: takes
/// its lease again (another instance holding it: the event waits), renames
/// under a fresh claim and gives the lease back.
async fn rename_released(
    pipeline: &Pipeline,
    from: &TableId,
    change: &SchemaChange,
) -> Result<Routed> {
    let me = pipeline.config.instance.id.as_str();
    let ttl = pipeline.config.instance.lease_ttl;
    let asked = Instant::now();
    let lease = keys::table_lease(from);
    let grants = pipeline.state.acquire_leases(&[lease], me, ttl).await?;
    if !grants.first().is_some_and(LeaseGrant::holds) {
        return Ok(Routed::Elsewhere);
    }
    let result = rename_under_new_claim(pipeline, from, write_deadline(asked, ttl), change).await;
    pipeline.guards.fence.revoke(from);
    give_back(pipeline, from).await;
    result.map(|_| Routed::Applied)
}
