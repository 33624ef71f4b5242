//! Incremental sync: the keys changed since the stored version are copied
//! once per cycle into a change set on the primary, then read in bounded
//! pages, the next page while the sink commits the current one (one page
//! ahead at most). Each page is one replica transaction (delete every
//! changed key, insert the current rows) that also records where the
//! backlog stands, so a restart continues after the last committed page;
//! the last page records the new version, and Redis moves only after it.

use std::sync::Arc;
use std::time::Instant;

use super::board::set_state;
use super::Pipeline;
use crate::error::{Error, Result};
use crate::model::{Backlog, ChangeBatch, ChangePage, SyncVersion, TableSchema};
use crate::ports::{Advance, ChangeSet};
use crate::sink::OwnerSink;
use crate::status::TableState;
use crate::telemetry;

/// How an incremental run ended.
pub(super) enum Ended {
    /// Caught up to the change set's target; the number of changed keys.
    Synced(u64),
    /// The stored version cannot be continued from (CT cleanup passed it,
    /// or the primary is behind it): the reason. Nothing was applied.
    Stale(String),
    /// Stopped between pages for a shutdown; the committed pages recorded
    /// the backlog's cursor, the next start continues after it.
    Interrupted,
}

pub(super) async fn run(
    p: &Pipeline,
    sink: &OwnerSink,
    schema: &Arc<TableSchema>,
    since: SyncVersion,
    resume: Option<Backlog>,
) -> Result<Ended> {
    let table = &schema.id;
    let key = table.key_name();
    let mut set = p
        .primary
        .open_changes(schema, since, resume.as_ref().map(|b| &b.cursor))
        .await?;
    let opened = set.opened();
    let current = opened.target;
    let target = resume.as_ref().map_or(current, |b| b.target);
    if let Some(reason) = unusable(table, since, target, current, opened.min_valid)? {
        return Ok(Ended::Stale(reason));
    }
    set_state(p, table, TableState::Incremental);
    if resume.is_none() && opened.keys == 0 {
        let idle = &p.known.idle;
        let due = idle.move_due(table, since, current, p.config.idle_advance);
        if !due || !idle.moves_itself(table) {
            // Nothing to apply: the replica already shows the primary as of
            // `current`; the stored version moves at most every
            // `idle_advance`, with the other idle tables by the next poll.
            if due {
                queue_move(p, sink, table, since, current);
            }
            idle.stands_at(table, since);
            return Ok(caught_up(p, &key, since, current, 0));
        }
    }
    if let Some(b) = &resume {
        tracing::info!(table = %table, since, target = b.target, keys_left = opened.keys, "continuing the backlog after its last committed page");
    }
    telemetry::versions(&key, since, current);
    p.board.update(&key, |s| {
        s.version = Some(since);
        s.primary_version = Some(current);
        s.lag_versions = Some(current - since);
    });
    let page_size = p.config.change_page_size.max(1);
    let key_columns = schema
        .key_columns()
        .ok_or_else(|| Error::NoKey(table.clone()))?;
    let mut changed_keys = 0u64;
    let mut page = first_page(set.as_mut(), schema, page_size).await?;
    loop {
        if p.is_stopping() {
            return Ok(Ended::Interrupted);
        }
        let ChangePage {
            keys,
            rows,
            next_after,
        } = std::mem::take(&mut page);
        let last = next_after.is_none();
        let (deletes, inserts) = (keys.len() as u64, rows.len() as u64);
        let backlog = next_after.map(|cursor| Backlog {
            since,
            target,
            key_columns: key_columns.clone(),
            cursor,
        });
        let batch = ChangeBatch {
            table: table.clone(),
            keys,
            rows,
            version: last.then_some(target),
            backlog,
        };
        if last {
            sink.apply(schema.clone(), batch).await?;
        } else {
            // Read-ahead: the next page is read while this one commits.
            let (applied, next) = tokio::join!(
                sink.apply(schema.clone(), batch),
                set.next_page(schema, page_size)
            );
            applied?;
            page = next?;
        }
        telemetry::rows_applied(&key, "delete", deletes);
        telemetry::rows_applied(&key, "insert", inserts);
        changed_keys += deletes;
        p.board.update(&key, |s| s.rows_applied += inserts);
        if last {
            break;
        }
    }
    drop(set);
    if target != since {
        p.state.set_version(table, target, sink.claim()).await?;
        p.known.idle.moved_by_cycle(table);
    }
    p.known.idle.stands_at(table, target);
    Ok(caught_up(p, &key, target, current, changed_keys))
}

/// A cycle the poll's scout found idle (no change after `since`, which CT
/// can still answer from, up to `current`): no change read; a due advance
/// of the stored version to `current` (the replica is complete up to it:
/// nothing changed in between) is queued for the next poll's batch.
/// `None` when the batch left this table before: the caller runs the
/// ordinary cycle, whose empty change set moves the version itself.
pub(super) async fn idle(
    p: &Pipeline,
    sink: &OwnerSink,
    schema: &Arc<TableSchema>,
    since: SyncVersion,
    current: SyncVersion,
) -> Result<Option<u64>> {
    let table = &schema.id;
    let idle = &p.known.idle;
    let due = idle.move_due(table, since, current, p.config.idle_advance);
    if due && idle.moves_itself(table) {
        return Ok(None);
    }
    set_state(p, table, TableState::Incremental);
    if due {
        queue_move(p, sink, table, since, current);
    }
    idle.stands_at(table, since);
    caught_up(p, &table.key_name(), since, current, 0);
    Ok(Some(0))
}

/// Queues the move of `table`'s stored version from `since` to `current`
/// for the next poll's batch (see [`super::idle`]).
fn queue_move(
    p: &Pipeline,
    sink: &OwnerSink,
    table: &crate::model::TableId,
    since: SyncVersion,
    current: SyncVersion,
) {
    p.known.idle.queue_move(Advance {
        table: table.clone(),
        claim: sink.claim().clone(),
        from: since,
        to: current,
    });
}

/// The first page; none is read from an empty set (its last page is empty).
async fn first_page(
    set: &mut (dyn ChangeSet + '_),
    schema: &TableSchema,
    limit: usize,
) -> Result<ChangePage> {
    if set.opened().keys == 0 {
        return Ok(ChangePage::default());
    }
    set.next_page(schema, limit).await
}

/// Why the stored version `since` cannot be continued from, if it cannot:
/// the primary's current version is behind it (or behind the backlog's
/// target), or the min valid version read after the copy is above it
/// (cleanup or a TRUNCATE removed changes never applied).
fn unusable(
    table: &crate::model::TableId,
    since: SyncVersion,
    target: SyncVersion,
    current: SyncVersion,
    min_valid: Option<SyncVersion>,
) -> Result<Option<String>> {
    let key = table.key_name();
    if current < since.max(target) {
        return Ok(Some(format!(
            "the primary's current version {current} is below the stored version {}: \
             the primary was restored or replaced; force a full load \
             (mssql_sync:force_full_load:{key} = \"true\")",
            since.max(target)
        )));
    }
    let min_valid = min_valid.ok_or_else(|| Error::MinValidVersionNull(table.clone()))?;
    if since >= min_valid {
        return Ok(None);
    }
    Ok(Some(super::retention::cleanup_reason(
        table, since, min_valid,
    )))
}

/// The table shows the primary as of `current` (its stored version is
/// `stored`): no lag, whatever the stored version.
fn caught_up(
    p: &Pipeline,
    key: &str,
    stored: SyncVersion,
    current: SyncVersion,
    changed_keys: u64,
) -> Ended {
    telemetry::versions(key, current, current);
    telemetry::lag_seconds(key, 0.0);
    p.board.update(key, |s| {
        s.version = Some(stored);
        s.primary_version = Some(current);
        s.lag_versions = Some(0);
        s.lag_seconds = 0.0;
        s.caught_up_at = Some(Instant::now());
    });
    Ended::Synced(changed_keys)
}
