//! One cycle of one table: read the flags, clone the schema if missing and
//! reconcile it with the primary's, settle which version to start from
//! (Redis, else the replica's record), guard against lost changes and a
//! replaced primary, then run a full load or an incremental sync.

use std::sync::Arc;

use tracing::{info, warn};

use super::board::{hold, set_state};
use super::full_load::{self, LoadRequest};
use super::reconcile::{self, Plan};
use super::{incremental, Pipeline};
use crate::error::{Error, Result};
use crate::fence::Claim;
use crate::model::{Backlog, SyncVersion, TableId, TableSchema};
use crate::ports::{CursorKind, PendingLoad, TableFlags};
use crate::sink::OwnerSink;
use crate::status::TableState;

/// What a cycle did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Paused,
    Loaded,
    Synced {
        changed_keys: u64,
    },
    Stale,
    /// The replica's columns cannot be reconciled safely, or the load
    /// cannot finish (see the reason).
    Blocked,
    /// Stopped at a page boundary for a shutdown; it resumes next time.
    Interrupted,
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

/// Where the table stands before this cycle does anything.
struct Start {
    /// The version to continue from; `None`: a full load must run.
    version: Option<SyncVersion>,
    /// `mssql_sync:version:<T>` as it stands now (what a new load replaces).
    redis: Option<SyncVersion>,
    /// A load that started and has not finished: it goes on first.
    pending: Option<PendingLoad>,
    /// A load is recorded as pending but its record cannot be read: it
    /// starts over from row 0 (see [`super::unreadable`]).
    restart_load: bool,
    /// A backlog part-way applied, as the replica's record says (not read
    /// on a cached cycle: this owner would have continued it itself).
    backlog: Option<Backlog>,
}

/// The version to continue from. A load recorded as pending on the replica
/// comes first: the table is loading until a load finishes, whatever
/// interrupted it, unless an operator set the Redis version by hand since
/// (a value other than the one the load replaced), which cancels it. Then
/// Redis (an operator's hand-set value wins), else the replica's own record
/// (Redis lost its data), else none. A pending load whose record cannot be
/// read starts over (a version set by hand meanwhile cannot be told from
/// the one it replaced: a new load is right either way); a backlog whose
/// cursor cannot be read starts over from the stored version.
///
/// `cached`: the cycle runs on a cached schema, so this owner has run the
/// table since its claim without a failed cycle; a pending load could only
/// be one it started, and it would have run (or failed, dropping the
/// cache). With a Redis version the replica's record then has nothing to
/// add and is not read.
async fn starting_version(
    p: &Pipeline,
    sink: &OwnerSink,
    table: &TableId,
    redis: Option<SyncVersion>,
    cached: bool,
) -> Result<Start> {
    if cached && redis.is_some() {
        return Ok(Start {
            version: redis,
            redis,
            pending: None,
            restart_load: false,
            backlog: None,
        });
    }
    let record = sink.record(table.clone()).await?;
    let unreadable = p.known.unreadable.settle(table, record.unreadable.as_ref());
    if unreadable == Some(CursorKind::Load) {
        return Ok(Start {
            version: None,
            redis,
            pending: None,
            restart_load: true,
            backlog: None,
        });
    }
    if let Some(load) = record.load {
        return match redis {
            Some(v) if Some(v) != load.replaced_version => {
                warn!(table = %table, version = v, "mssql_sync:version was set by hand during a pending full load: the load is cancelled and sync continues from that version");
                sink.cancel_load(table.clone(), v).await?;
                Ok(Start {
                    version: Some(v),
                    redis,
                    pending: None,
                    restart_load: false,
                    backlog: None,
                })
            }
            _ => Ok(Start {
                version: None,
                redis,
                pending: Some(load),
                restart_load: false,
                backlog: None,
            }),
        };
    }
    if redis.is_some() {
        return Ok(Start {
            version: redis,
            redis,
            pending: None,
            restart_load: false,
            backlog: record.backlog,
        });
    }
    if let Some(v) = record.version {
        info!(table = %table, version = v, "Redis has no version; restored it from the replica's record");
        p.state.set_version(table, v, sink.claim()).await?;
    }
    // What Redis holds now: a load started below replaces the restored
    // version, which must not later pass for a version set by hand.
    Ok(Start {
        version: record.version,
        redis: record.version,
        pending: None,
        restart_load: false,
        backlog: record.backlog,
    })
}

fn loaded(end: full_load::LoadEnd) -> Outcome {
    match end {
        full_load::LoadEnd::Finished => Outcome::Loaded,
        full_load::LoadEnd::Interrupted => Outcome::Interrupted,
        full_load::LoadEnd::Held => Outcome::Blocked,
    }
}

/// Marks the table stale (or reloads it when configured to).
async fn stale(p: &Pipeline, load: LoadRequest<'_>, reason: String) -> Result<Outcome> {
    let table = &load.schema.id;
    if p.config.auto_reload_stale {
        warn!(table = %table, %reason, "table is stale; CTSYNC_AUTO_RELOAD_STALE is on, running a full load");
        return full_load::run(p, load, &[]).await.map(loaded);
    }
    hold(p, table, TableState::Stale, reason);
    Ok(Outcome::Stale)
}

/// Creates (and loads) the replica table or brings its columns in line with
/// the primary's. Returns an outcome when that ends the cycle (a load ran,
/// or the table is blocked).
async fn settle_schema(
    p: &Pipeline,
    load: LoadRequest<'_>,
    must_load: bool,
) -> Result<Option<Outcome>> {
    let table = &load.schema.id;
    // One catalog read answers both "does it exist?" and "does it match?".
    let replica = match load.sink.replica_schema(table.clone()).await? {
        Some(replica) => replica,
        None => {
            // A table created now is empty, whatever version is stored (the
            // replica table may have been dropped): it is created and its
            // load recorded as pending in one transaction.
            info!(table = %table, "creating the table on the replica");
            return full_load::run(p, load.rebuilding(), &[])
                .await
                .map(|end| Some(loaded(end)));
        }
    };
    let plan = reconcile::plan(load.schema, &replica);
    if plan == Plan::InSync {
        p.known.schemas.converged(table);
    }
    match plan {
        Plan::InSync if must_load => full_load::run(p, load, &[])
            .await
            .map(|end| Some(loaded(end))),
        Plan::InSync => Ok(None),
        // The same changes were made once and the replica still reports
        // the columns otherwise: making them again would loop for ever
        // (a reload every cycle). An operator's forced load still runs.
        Plan::Apply { ops, .. } if !must_load && p.known.schemas.made_before(table, &ops) => {
            hold(
                p,
                table,
                TableState::Error,
                reconcile::not_converging(load.schema, &replica, &ops),
            );
            Ok(Some(Outcome::Blocked))
        }
        // A readable pending load goes on (it rebuilds the table); one whose
        // record cannot be read never drops the live table by itself: the
        // table is held until the operator forces the load.
        Plan::Blocked(reason)
            if load.flags.force_full_load || (load.pending && load.resume.is_some()) =>
        {
            info!(table = %table, %reason, "rebuilding the replica table with the full load");
            full_load::run(p, load.rebuilding(), &[])
                .await
                .map(|end| Some(loaded(end)))
        }
        Plan::Blocked(reason) => {
            hold(p, table, TableState::Paused, reason);
            Ok(Some(Outcome::Blocked))
        }
        Plan::Apply { ops, reload } if reload || must_load => {
            // In place, the columns change right after the truncate (an
            // empty table accepts NOT NULL columns); CT never reports the
            // values existing rows received.
            info!(table = %table, ?ops, "column changes need a full load");
            let end = full_load::run(p, load, &ops).await?;
            if matches!(end, full_load::LoadEnd::Finished) {
                p.known.schemas.made(table, &ops);
            }
            Ok(Some(loaded(end)))
        }
        Plan::Apply { ops, .. } => {
            info!(table = %table, ?ops, "applying column changes to the replica");
            load.sink.alter_columns(table.clone(), ops.clone()).await?;
            p.known.schemas.made(table, &ops);
            Ok(None)
        }
    }
}

/// One cycle of `table` by the owner holding `claim`. A change read that
/// finds the primary's columns changed since they were cached ends the
/// cycle before anything is applied; it runs once more on fresh catalogs.
pub async fn run_cycle(p: &Pipeline, table: &TableId, claim: &Claim) -> Result<Outcome> {
    let _slot = p.guards.cycles.slot(table).await;
    let _running = p.guards.cycles.enter(table);
    let result = match cycle(p, table, claim).await {
        Err(Error::ColumnsChanged(_)) => {
            info!(table = %table, "the primary's columns changed since they were read; reading the catalogs again");
            p.known.schemas.forget(table);
            cycle(p, table, claim).await
        }
        other => other,
    };
    if result.is_err() {
        p.known.schemas.forget(table);
        p.known.idle.forget_version(table);
    }
    result
}

async fn cycle(p: &Pipeline, table: &TableId, claim: &Claim) -> Result<Outcome> {
    // One round trip: flags, version and the primary's identity.
    let keys = p.state.cycle_keys(table).await?;
    let flags: TableFlags = keys.flags;
    if !flags.enabled {
        set_state(p, table, TableState::Paused);
        return Ok(Outcome::Paused);
    }
    let sink = p.sink.fenced(claim.clone());
    if let Some(outcome) = scouted_idle(p, &sink, table, &keys).await? {
        return Ok(outcome);
    }
    let cached = p.known.schemas.take_turn(table);
    let identity = p.identity().await?;
    let start = starting_version(p, &sink, table, keys.version, cached.is_some()).await?;
    let must_load = flags.force_full_load || start.version.is_none() || start.pending.is_some();
    // A load recorded as pending, readable or not: the table is loading.
    let pending = start.pending.is_some() || start.restart_load;
    // Loads and cycles without a cached schema read both catalogs.
    let fresh = cached.is_none() || must_load;
    let schema = match cached {
        Some(schema) if !fresh => schema,
        _ => load_schema(p, table).await?,
    };
    let load = || LoadRequest {
        sink: &sink,
        schema: &schema,
        identity: &identity,
        flags,
        replaced_version: start.redis,
        resume: start.pending.clone(),
        pending,
        rebuild: false,
    };
    if fresh {
        if let Some(outcome) = settle_schema(p, load(), must_load).await? {
            if outcome == Outcome::Loaded {
                p.known.schemas.put(table, schema.clone());
            }
            return Ok(outcome);
        }
        p.known.schemas.put(table, schema.clone());
    }
    let Some(version) = start.version else {
        // settle_schema loads whenever must_load is set.
        return Err(Error::State(format!(
            "table {table}: no version to continue from"
        )));
    };
    let key = table.key_name();
    match keys.identity {
        None => {
            p.state
                .set_primary_identity(table, &identity, sink.claim())
                .await?
        }
        Some(known) if known != identity => {
            let reason = format!(
                "the primary database changed (was {}, now {}): it was restored or failed over, so \
                 version {version} may mean other changes; force a full load \
                 (mssql_sync:force_full_load:{key} = \"true\")",
                known.encode(),
                identity.encode()
            );
            return stale(p, load(), reason).await;
        }
        Some(_) => {}
    }
    let resume = start
        .backlog
        .filter(|b| b.since == version && schema.key_columns().as_ref() == Some(&b.key_columns));
    match incremental::run(p, &sink, &schema, version, resume).await? {
        incremental::Ended::Synced(changed_keys) => Ok(Outcome::Synced { changed_keys }),
        incremental::Ended::Stale(reason) => stale(p, load(), reason).await,
        incremental::Ended::Interrupted => Ok(Outcome::Interrupted),
    }
}

/// A cycle of a table this owner runs on a cached schema, which the poll's
/// scout found without changes since the stored version (of a known,
/// unchanged primary, with no load asked for): no catalog, record or
/// change read. Such cycles count toward a refresh of the catalogs of
/// their own, much rarer (`idle_catalog_refresh`): only change reads can
/// apply rows, and each checks the columns.
async fn scouted_idle(
    p: &Pipeline,
    sink: &OwnerSink,
    table: &TableId,
    keys: &crate::ports::CycleKeys,
) -> Result<Option<Outcome>> {
    let Some(version) = keys.version else {
        return Ok(None);
    };
    if keys.flags.force_full_load {
        return Ok(None);
    }
    let (known, refresh) = (&p.known, p.config.idle_catalog_refresh);
    let skip = known
        .idle
        .skip_change_read(&known.schemas, table, version, refresh);
    let Some((schema, current)) = skip else {
        return Ok(None);
    };
    if keys.identity.as_ref() != Some(&p.identity().await?) {
        return Ok(None);
    }
    Ok(incremental::idle(p, sink, &schema, version, current)
        .await?
        .map(|changed_keys| Outcome::Synced { changed_keys }))
}
