//! Full loads as a resumable state machine. A load starts by reading CT's
//! current version (before any data), choosing where to write (a shadow
//! table swapped in at the end, or the live table in place when something
//! blocks the swap) and recording itself as pending on the replica. Every
//! page commits together with the load's cursor, so an interrupted load
//! (error, restart, stop, Redis loss) resumes after its last page. A new
//! Force Load request starts it over from row 0 at the next page (a forced
//! load whose flag an operator set back to "false" answers it no longer,
//! so a later "true" is new); a start
//! version that CT cleanup passed before the end starts it over once, then
//! holds the table. At the end the shadow is swapped in, the version
//! recorded on the replica and, in one atomic Redis step, stored with the
//! `force_full_load` compare-and-reset.

use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, info, warn};

use super::board::{hold, set_state};
use super::retention::cleanup_passed;
use super::{now_millis, Pipeline};
use crate::error::{Error, Result};
use crate::model::{ColumnOp, PrimaryIdentity, RowKey, SyncVersion, TableId, TableSchema, Value};
use crate::ports::{LoadMode, LoadProgress, LoadStart, PendingLoad, TableFlags};
use crate::sink::OwnerSink;
use crate::status::TableState;
use crate::telemetry;

/// What a full load started (or resumed) by this cycle needs to know.
pub(super) struct LoadRequest<'a> {
    pub sink: &'a OwnerSink,
    pub schema: &'a Arc<TableSchema>,
    pub identity: &'a PrimaryIdentity,
    /// The flags as the cycle read them.
    pub flags: TableFlags,
    /// `mssql_sync:version:<T>` now: what a new load replaces.
    pub replaced_version: Option<SyncVersion>,
    /// The pending load to continue, if any.
    pub resume: Option<PendingLoad>,
    /// A load is recorded as pending (`resume`, or one whose record cannot
    /// be read): the table is loading, whatever its replica columns say.
    pub pending: bool,
    /// The live table cannot be reused in place (missing, or columns that
    /// cannot be reconciled): an in-place load drops and creates it.
    pub rebuild: bool,
}

impl LoadRequest<'_> {
    pub(super) fn rebuilding(self) -> Self {
        Self {
            rebuild: true,
            ..self
        }
    }
}

/// Times a load may start over because CT cleanup passed its start
/// version before the table is held instead of looping.
const MAX_EXPIRED_RESTARTS: u32 = 2;

/// How a load ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LoadEnd {
    Finished,
    /// Stopped at a page boundary for a shutdown; it resumes next time.
    Interrupted,
    /// The table is held (see its reason).
    Held,
}

/// What a new load starts from.
struct Begin<'a> {
    flags: TableFlags,
    replaced_version: Option<crate::model::SyncVersion>,
    /// In place, the live table must be dropped and created.
    rebuild: bool,
    alter: &'a [ColumnOp],
    expired_restarts: u32,
    /// What blocks the swap, found at the end of a shadow load: this load
    /// runs in place.
    blocked: Vec<String>,
}

pub(super) async fn run(
    p: &Pipeline,
    load: LoadRequest<'_>,
    alter: &[ColumnOp],
) -> Result<LoadEnd> {
    let LoadRequest {
        sink,
        schema,
        identity,
        flags,
        replaced_version,
        resume,
        pending: _,
        rebuild,
    } = load;
    let table = &schema.id;
    let positions = schema
        .key_positions()
        .ok_or_else(|| Error::NoKey(table.clone()))?;
    set_state(p, table, TableState::FullLoad);
    let started = Instant::now();
    let mut pending = match resume {
        Some(pending) if resumable(sink, schema, &pending).await? => {
            info!(table = %table, rows = pending.rows, total = pending.total, mode = ?pending.mode, "resuming the interrupted full load after its last committed page");
            pending
        }
        resume => {
            let begin = Begin {
                flags,
                replaced_version: resume
                    .as_ref()
                    .map_or(replaced_version, |r| r.replaced_version),
                rebuild,
                alter,
                expired_restarts: resume.map_or(0, |r| r.expired_restarts),
                blocked: Vec::new(),
            };
            start(p, sink, schema, begin).await?
        }
    };
    let resumed_at = (pending.rows > 0).then_some(pending.rows);
    show_mode(p, table, &pending);
    let page_size = p.config.full_load_page_size.max(1);
    loop {
        if pending.expired_restarts >= MAX_EXPIRED_RESTARTS {
            let key = table.key_name();
            hold(
                p,
                table,
                TableState::Error,
                format!(
                    "the full load takes longer than the CT retention period: cleanup passed its \
                     start version {} times. Copy the table by hand (read \
                     CHANGE_TRACKING_CURRENT_VERSION() first, then set mssql_sync:version:{key}; \
                     see the manual snapshot in docs/operating.md, Full loads), or raise CHANGE_RETENTION and force a \
                     full load with a counted request (the page's Force Load button, the API, or \
                     ctsync force-full-load {key}): the flag may already be \"true\", and writing \
                     \"true\" again is the same request",
                    pending.expired_restarts
                ),
            );
            return Ok(LoadEnd::Held);
        }
        // Copy page by page from the cursor.
        loop {
            if p.is_stopping() {
                info!(table = %table, rows = pending.rows, total = pending.total, "full load interrupted by the shutdown; it resumes from here");
                return Ok(LoadEnd::Interrupted);
            }
            match new_request(p, table, &pending).await {
                Request::New(flags) => {
                    info!(table = %table, "a new Force Load request: the full load starts again from row 0");
                    let begin = Begin {
                        flags,
                        replaced_version: pending.replaced_version,
                        rebuild: false,
                        alter: &[],
                        expired_restarts: 0,
                        blocked: Vec::new(),
                    };
                    pending = start(p, sink, schema, begin).await?;
                    show_mode(p, table, &pending);
                    continue;
                }
                Request::Withdrawn => {
                    // Recorded at once (the record alone, no rows): a
                    // restart resumes the load as unforced, so a "true"
                    // written after this is a new request, not this one.
                    pending.forced = false;
                    sink.insert_rows(schema.clone(), Vec::new(), pending.clone())
                        .await?;
                    info!(table = %table, "force_full_load was set back to \"false\" during the forced full load: it goes on as a load of its own; \"true\" written again is a new request and starts it over");
                }
                Request::None => {}
            }
            let rows = p
                .primary
                .read_page(schema, pending.cursor.as_ref(), page_size)
                .await?;
            let n = rows.len();
            if let Some(last) = rows.last() {
                pending.cursor = Some(RowKey(
                    positions
                        .iter()
                        .map(|&i| last.get(i).cloned().unwrap_or(Value::Null))
                        .collect(),
                ));
                pending.rows += n as u64;
                sink.insert_rows(schema.clone(), rows, pending.clone())
                    .await?;
                report(p, sink, table, &pending, resumed_at, n as u64).await;
            }
            if n < page_size {
                break;
            }
        }
        // The start version must still be valid: otherwise changes made
        // during the copy were cleaned up before they could be applied.
        match cleanup_passed(p, table, pending.start_version).await? {
            None => match swap_blocked(sink, table, &pending).await? {
                None => break,
                Some(blocked) => {
                    warn!(table = %table, blockers = %blocked.join("; "), "something on the replica now blocks the swap of the shadow table: the load starts over in place");
                    let begin = Begin {
                        flags: TableFlags {
                            enabled: true,
                            force_full_load: pending.forced,
                            force_requests: pending.requests_seen,
                        },
                        replaced_version: pending.replaced_version,
                        // The live table still needs what this cycle
                        // found missing (a shadow had it built in).
                        rebuild,
                        alter,
                        expired_restarts: pending.expired_restarts,
                        blocked,
                    };
                    pending = start(p, sink, schema, begin).await?;
                    show_mode(p, table, &pending);
                }
            },
            Some(reason) => {
                warn!(table = %table, %reason, "CT cleanup passed the full load's start version; the load starts over");
                let begin = Begin {
                    flags: p.state.flags(table).await.unwrap_or(TableFlags {
                        enabled: true,
                        force_full_load: pending.forced,
                        force_requests: pending.requests_seen,
                    }),
                    replaced_version: pending.replaced_version,
                    rebuild: false,
                    alter: &[],
                    expired_restarts: pending.expired_restarts + 1,
                    blocked: Vec::new(),
                };
                if begin.expired_restarts < MAX_EXPIRED_RESTARTS {
                    pending = start(p, sink, schema, begin).await?;
                } else {
                    pending.expired_restarts = begin.expired_restarts;
                }
            }
        }
    }

    let version = pending.start_version;
    sink.finish_full_load(schema.clone(), version, pending.mode)
        .await?;
    p.state
        .finish_full_load(table, version, identity, pending.forced, sink.claim())
        .await?;
    let key = table.key_name();
    telemetry::rows_applied(&key, "load", pending.rows);
    p.board.update(&key, |s| {
        s.version = Some(version);
        // Kept after the load for the page ("Synced 3 / 3").
        s.progress = Some((pending.rows, pending.rows));
        s.rows_applied += pending.rows;
    });
    info!(
        table = %table,
        version,
        rows = pending.rows,
        mode = ?pending.mode,
        seconds = started.elapsed().as_secs_f64(),
        "full load finished"
    );
    Ok(LoadEnd::Finished)
}

/// Starts a load from row 0: reads the version before any data, picks the
/// mode, and records the pending load with the emptied (or new) target.
async fn start(
    p: &Pipeline,
    sink: &OwnerSink,
    schema: &Arc<TableSchema>,
    begin: Begin<'_>,
) -> Result<PendingLoad> {
    let table = &schema.id;
    let start_version = p.primary.current_version().await?;
    let total = p.primary.row_count(table).await?;
    let (mode, in_place_reason) = if begin.rebuild {
        (
            LoadMode::InPlace,
            Some("the replica table is created by this load".to_string()),
        )
    } else if !begin.blocked.is_empty() {
        let reason = format!(
            "loading in place (readers see the table fill up): the swap was blocked part-way \
             through a shadow load: {}",
            begin.blocked.join("; ")
        );
        (LoadMode::InPlace, Some(reason))
    } else if p.config.full_load_mode == LoadMode::InPlace {
        (
            LoadMode::InPlace,
            Some("CTSYNC_FULL_LOAD_MODE is in_place".to_string()),
        )
    } else {
        let blockers = sink.swap_blockers(table.clone()).await?;
        if blockers.is_empty() {
            (LoadMode::Shadow, None)
        } else {
            let reason = format!(
                "loading in place (readers see the table fill up): {}",
                blockers.join("; ")
            );
            warn!(table = %table, %reason, "the shadow table cannot be swapped in");
            (LoadMode::InPlace, Some(reason))
        }
    };
    let load = PendingLoad {
        replaced_version: begin.replaced_version,
        start_version,
        cursor: None,
        rows: 0,
        total,
        started_at: now_millis(),
        mode,
        in_place_reason,
        forced: begin.flags.force_full_load,
        requests_seen: begin.flags.force_requests,
        expired_restarts: begin.expired_restarts,
    };
    info!(table = %table, version = start_version, rows = total, ?mode, "full load starting");
    let start = LoadStart {
        load: load.clone(),
        recreate: mode == LoadMode::InPlace && begin.rebuild,
    };
    if start.recreate {
        free_for_rebuild(sink, table).await?;
    }
    sink.begin_full_load(schema.clone(), start).await?;
    if mode == LoadMode::InPlace && !begin.alter.is_empty() {
        // An emptied table accepts NOT NULL columns; a shadow is created
        // with the primary's columns already.
        sink.alter_columns(table.clone(), begin.alter.to_vec())
            .await?;
    }
    report(p, sink, table, &load, None, 0).await;
    Ok(load)
}

/// Drops the replica's modules schema-bound to `table` before it is
/// dropped and created again: SQL Server refuses to drop a table they
/// reference, at every retry and whatever the operator asks. They are
/// copies of the primary's (module sync drops any other), so module sync
/// creates them again once the table exists.
async fn free_for_rebuild(sink: &OwnerSink, table: &TableId) -> Result<()> {
    for op in sink.schema_bound_dependents(table.clone()).await? {
        let (_, name) = op.label();
        warn!(table = %table, module = %name, "dropping the schema-bound module so the table can be rebuilt; module sync creates it again");
        sink.drop_module(op).await?;
    }
    Ok(())
}

/// What blocks the swap that would finish `pending`, if it is a shadow
/// load and anything does (a trigger, a foreign key or a schema-bound view
/// that appeared on the replica after the load chose its mode): the swap
/// would fail at every retry, whatever the operator asks, so the load
/// falls back to in place as if the blocker had been there at its start.
async fn swap_blocked(
    sink: &OwnerSink,
    table: &TableId,
    pending: &PendingLoad,
) -> Result<Option<Vec<String>>> {
    if pending.mode != LoadMode::Shadow {
        return Ok(None);
    }
    let blockers = sink.swap_blockers(table.clone()).await?;
    Ok((!blockers.is_empty()).then_some(blockers))
}

/// A pending load can go on if its target still has the primary's columns
/// as schema reconcile sees them (a schema change since means starting
/// over). Every column counts, computed ones too: a load resumed into a
/// table whose computed column the primary dropped would finish with the
/// column still there, and the change it was started for never made.
async fn resumable(sink: &OwnerSink, schema: &TableSchema, pending: &PendingLoad) -> Result<bool> {
    let Some(target) = sink.replica_schema(pending.target(&schema.id)).await? else {
        return Ok(false);
    };
    Ok(super::reconcile::plan(schema, &target) == super::reconcile::Plan::InSync)
}

/// What the flags say to a running load, read between its pages.
enum Request {
    /// A Force Load request made since the load started (the flag went to
    /// "true", or the API/CLI counted one more): start over from row 0.
    New(TableFlags),
    /// The load answers a flag that is "false" again (an operator set it
    /// back by hand): it goes on, and no longer answers the flag, so the
    /// next "true" is a request of its own.
    Withdrawn,
    None,
}

/// Reads the flags during a load. Redis being unreachable only delays
/// noticing a request.
async fn new_request(p: &Pipeline, table: &TableId, pending: &PendingLoad) -> Request {
    match p.state.flags(table).await {
        Ok(flags)
            if flags.force_requests > pending.requests_seen
                || (flags.force_full_load && !pending.forced) =>
        {
            Request::New(flags)
        }
        Ok(flags) if pending.forced && !flags.force_full_load => Request::Withdrawn,
        Ok(_) => Request::None,
        Err(e) => {
            debug!(table = %table, error = %e, "could not read the flags during the load; copying on");
            Request::None
        }
    }
}

fn show_mode(p: &Pipeline, table: &TableId, pending: &PendingLoad) {
    let reason = pending.in_place_reason.clone();
    p.board.update(&table.key_name(), |s| s.reason = reason);
}

/// Progress on the board, the metrics and `mssql_sync:progress:<T>`
/// (best effort: Redis being down does not stop a load).
async fn report(
    p: &Pipeline,
    sink: &OwnerSink,
    table: &TableId,
    load: &PendingLoad,
    resumed_at: Option<u64>,
    added: u64,
) {
    let key = table.key_name();
    let total = load.total.max(load.rows);
    p.board
        .update(&key, |s| s.progress = Some((load.rows, total)));
    telemetry::full_load(&key, added, load.rows, total);
    let progress = LoadProgress {
        synced: load.rows,
        total,
        started_at: load.started_at,
        updated_at: now_millis(),
        resumed_at,
    };
    if let Err(e) = p.state.set_progress(table, &progress, sink.claim()).await {
        debug!(table = %table, error = %e, "could not write the load progress to Redis");
    }
}
