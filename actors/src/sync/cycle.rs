//! One cycle of one table: read the flags, clone the schema if missing and
//! reconcile it with the primary's, settle which version to start from
//! (Redis, else the replica's record), guard against lost changes and a
//! replaced primary, then run a full load or an incremental sync.

use std::sync::Arc;

use tracing::{info, warn};

use super::reconcile::{self, Plan};
use super::{full_load, incremental, Pipeline};
use crate::error::{Error, Result};
use crate::model::{PrimaryIdentity, SyncVersion, TableId, TableSchema};
use crate::status::TableState;
use crate::telemetry;

/// What a cycle did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Paused,
    Loaded,
    Synced {
        changed_keys: u64,
    },
    Stale,
    /// The replica's columns cannot be reconciled safely (see the reason).
    Blocked,
}

pub(super) fn set_state(p: &Pipeline, table: &TableId, state: TableState) {
    let key = table.key_name();
    p.board.update(&key, |s| {
        s.state = state;
        s.reason = None;
        if matches!(state, TableState::Incremental | TableState::Paused) {
            s.last_error = None;
        }
        if state != TableState::Incremental {
            s.lag_versions = None;
        }
    });
    telemetry::table_state(&key, state.as_str());
}

/// Puts the table in `state` with a reason, logging it once per change.
fn hold(p: &Pipeline, table: &TableId, state: TableState, reason: String) {
    let key = table.key_name();
    let known = p.board.get(&key).and_then(|s| s.reason);
    if known.as_deref() != Some(reason.as_str()) {
        warn!(table = %table, %reason, state = state.as_str(), "table is held; its version is not advanced");
    }
    set_state(p, table, state);
    p.board.update(&key, |s| s.reason = Some(reason));
}

pub(super) async fn load_schema(p: &Pipeline, table: &TableId) -> Result<Arc<TableSchema>> {
    let schema = p.primary.table_schema(table).await?;
    if let Some((column, ty)) = schema.unsupported_column() {
        return Err(Error::UnsupportedType {
            table: table.clone(),
            key: table.key_name(),
            column: column.to_string(),
            ty: ty.to_string(),
        });
    }
    if schema.key_columns().is_none() {
        return Err(Error::NoKey(table.clone()));
    }
    Ok(Arc::new(schema))
}

/// The version to continue from: Redis first (an operator's hand-set value
/// wins), else the replica's own record (Redis lost its data), else none.
async fn starting_version(p: &Pipeline, table: &TableId) -> Result<Option<SyncVersion>> {
    if let Some(v) = p.state.version(table).await? {
        return Ok(Some(v));
    }
    let recorded = p.sink.stored_version(table.clone()).await?;
    if let Some(v) = recorded {
        info!(table = %table, version = v, "Redis has no version; restored it from the replica's record");
        p.state.set_version(table, v).await?;
    }
    Ok(recorded)
}

/// Marks the table stale (or reloads it when configured to).
async fn stale(
    p: &Pipeline,
    schema: &Arc<TableSchema>,
    identity: &PrimaryIdentity,
    reason: String,
) -> Result<Outcome> {
    let table = &schema.id;
    if p.config.auto_reload_stale {
        warn!(table = %table, %reason, "table is stale; CTSYNC_AUTO_RELOAD_STALE is on, running a full load");
        full_load::run(p, schema, identity, &[]).await?;
        return Ok(Outcome::Loaded);
    }
    hold(p, table, TableState::Stale, reason);
    Ok(Outcome::Stale)
}

/// Creates (and loads) the replica table or brings its columns in line with
/// the primary's. Returns an outcome when that ends the cycle (a load ran,
/// or the table is blocked).
async fn settle_schema(
    p: &Pipeline,
    schema: &Arc<TableSchema>,
    identity: &PrimaryIdentity,
    forced: bool,
    must_load: bool,
) -> Result<Option<Outcome>> {
    let table = &schema.id;
    // One catalog read answers both "does it exist?" and "does it match?".
    let plan = match p.sink.replica_schema(table.clone()).await? {
        Some(replica) => reconcile::plan(schema, &replica),
        None => {
            // A table created now is empty, whatever version is stored (the
            // replica table may have been dropped): it needs a full load.
            if p.sink.ensure_table(schema.clone()).await? {
                info!(table = %table, "created the table on the replica");
            }
            full_load::run(p, schema, identity, &[]).await?;
            return Ok(Some(Outcome::Loaded));
        }
    };
    match plan {
        Plan::InSync => Ok(None),
        Plan::Blocked(reason) if forced => {
            info!(table = %table, %reason, "rebuilding the replica table for the forced full load");
            p.sink.drop_table(table.clone()).await?;
            p.sink.ensure_table(schema.clone()).await?;
            Ok(None)
        }
        Plan::Blocked(reason) => {
            hold(p, table, TableState::Paused, reason);
            Ok(Some(Outcome::Blocked))
        }
        Plan::Apply { ops, reload } if reload || must_load => {
            // The columns change right after the truncate (an empty table
            // accepts NOT NULL columns); CT never reports added values.
            info!(table = %table, ?ops, "column changes need a full load");
            full_load::run(p, schema, identity, &ops).await?;
            Ok(Some(Outcome::Loaded))
        }
        Plan::Apply { ops, .. } => {
            info!(table = %table, ?ops, "applying column changes to the replica");
            p.sink.alter_columns(table.clone(), ops).await?;
            Ok(None)
        }
    }
}

pub async fn run_cycle(p: &Pipeline, table: &TableId) -> Result<Outcome> {
    let flags = p.state.flags(table).await?;
    if !flags.enabled {
        set_state(p, table, TableState::Paused);
        return Ok(Outcome::Paused);
    }
    let schema = load_schema(p, table).await?;
    let identity = p.identity().await?;
    let stored = starting_version(p, table).await?;
    let must_load = flags.force_full_load || stored.is_none();
    if let Some(outcome) =
        settle_schema(p, &schema, &identity, flags.force_full_load, must_load).await?
    {
        return Ok(outcome);
    }
    let version = match stored {
        Some(v) if !must_load => v,
        _ => {
            full_load::run(p, &schema, &identity, &[]).await?;
            return Ok(Outcome::Loaded);
        }
    };
    let key = table.key_name();
    match p.state.primary_identity(table).await? {
        None => p.state.set_primary_identity(table, &identity).await?,
        Some(known) if known != identity => {
            let reason = format!(
                "the primary database changed (was {}, now {}): it was restored or failed over, so \
                 version {version} may mean other changes; force a full load \
                 (mssql_sync:force_full_load:{key} = \"true\")",
                known.encode(),
                identity.encode()
            );
            return stale(p, &schema, &identity, reason).await;
        }
        Some(_) => {}
    }
    let current = p.primary.current_version().await?;
    if current < version {
        let reason = format!(
            "the primary's current version {current} is below the stored version {version}: \
             the primary was restored or replaced; force a full load \
             (mssql_sync:force_full_load:{key} = \"true\")"
        );
        return stale(p, &schema, &identity, reason).await;
    }
    let min_valid = p
        .primary
        .min_valid_version(table)
        .await?
        .ok_or_else(|| Error::MinValidVersionNull(table.clone()))?;
    if version < min_valid {
        let reason = format!(
            "stored version {version} is below the min valid version {min_valid}: change tracking \
             cleanup or a TRUNCATE removed changes that were never applied; force a full load \
             (mssql_sync:force_full_load:{key} = \"true\") or set mssql_sync:version:{key} after a \
             manual copy"
        );
        return stale(p, &schema, &identity, reason).await;
    }
    incremental::run(p, &schema, version, current).await
}
