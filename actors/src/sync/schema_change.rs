//! Applying a schema change from a DDL event to the replica. Column
//! add/drop/alter events run the same reconcile a cycle runs (the event
//! names columns, the catalog has the types); a column rename is applied as
//! a rename, so the column keeps its data.

use tracing::info;

use super::cycle::load_schema;
use super::reconcile::{self, Plan};
use super::Pipeline;
use crate::ddl::SchemaChange;
use crate::error::{Error, Result};
use crate::sink::OwnerSink;

/// Applies `change` through `sink` (the table owner's fenced sink, or the
/// supervisor's for a table rename, which retires the owner first).
pub async fn apply_schema_change(
    p: &Pipeline,
    sink: &OwnerSink,
    change: &SchemaChange,
) -> Result<()> {
    for table in change.tables() {
        p.known.schemas.forget(table);
        p.known.idle.forget_version(table);
    }
    match change {
        SchemaChange::Columns { table, .. } => {
            let Some(replica) = sink.replica_schema(table.clone()).await? else {
                return Ok(()); // created with the current columns when enabled
            };
            let primary = load_schema(p, table).await?;
            match reconcile::plan(&primary, &replica) {
                Plan::Apply { ops, reload: false } => {
                    info!(table = %table, ?ops, "applying column changes from a DDL event");
                    sink.alter_columns(table.clone(), ops).await
                }
                // Reloads and blocked tables are the table cycle's business:
                // it runs before any further row change of the table.
                _ => Ok(()),
            }
        }
        SchemaChange::RenameColumn { table, from, to } => {
            let Some(replica) = sink.replica_schema(table.clone()).await? else {
                return Ok(());
            };
            let has = |name: &str| {
                replica
                    .columns
                    .iter()
                    .any(|c| c.name.eq_ignore_ascii_case(name))
            };
            match (has(from), has(to)) {
                (true, false) => {
                    info!(table = %table, %from, %to, "renaming the column on the replica");
                    sink.rename_column(table.clone(), from.clone(), to.clone()).await
                }
                (false, true) => Ok(()), // already renamed
                _ => Err(Error::Replica(format!(
                    "cannot rename {table}.{from} to {to} on the replica: it has {} {from} and {} {to}",
                    if has(from) { "both" } else { "neither" },
                    if has(from) { "and" } else { "nor" }
                ))),
            }
        }
        SchemaChange::RenameTable { from, to } => {
            if sink.replica_schema(from.clone()).await?.is_some() {
                info!(%from, %to, "renaming the table on the replica");
                sink.rename_table(from.clone(), to.clone()).await?;
            }
            p.state.rename_table(from, to, sink.claim()).await
        }
    }
}
