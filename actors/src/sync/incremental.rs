//! Incremental sync: read net changes since the stored version in bounded
//! pages; each page is one replica transaction (delete every changed key,
//! insert the current rows); the last page also records the new version on
//! the replica, and Redis moves only after that commit. CT cleanup is checked
//! again after the last page was read and before it is applied: changes
//! removed while the pages were read must never be skipped silently.

use std::sync::Arc;
use std::time::Instant;

use super::cycle::{cleanup_passed, set_state};
use super::Pipeline;
use crate::error::Result;
use crate::model::{ChangeBatch, SyncVersion, TableSchema};
use crate::sink::SinkHandle;
use crate::status::TableState;
use crate::telemetry;

/// How an incremental run ended.
pub(super) enum Ended {
    /// Caught up to the current version; the number of changed keys.
    Synced(u64),
    /// CT cleanup passed the stored version while the pages were read (the
    /// reason); the version was not advanced.
    CleanupPassed(String),
    /// Stopped between pages for a shutdown; the version was not advanced,
    /// the next start applies the backlog again from the stored version
    /// (every page is idempotent).
    Interrupted,
}

pub(super) async fn run(
    p: &Pipeline,
    sink: &SinkHandle,
    schema: &Arc<TableSchema>,
    since: SyncVersion,
    current: SyncVersion,
) -> Result<Ended> {
    let table = &schema.id;
    let key = table.key_name();
    set_state(p, table, TableState::Incremental);
    telemetry::versions(&key, since, current);
    p.board.update(&key, |s| {
        s.version = Some(since);
        s.primary_version = Some(current);
        s.lag_versions = Some(current - since);
    });
    let page_size = p.config.change_page_size.max(1);
    let mut after = None;
    let mut changed_keys = 0u64;
    loop {
        if p.is_stopping() {
            return Ok(Ended::Interrupted);
        }
        let page = p
            .primary
            .changes_page(schema, since, after.as_ref(), page_size)
            .await?;
        let last = page.next_after.is_none();
        if last
            && page.keys.is_empty()
            && changed_keys == 0
            && !advance_due(p, table, since, current)
        {
            // Nothing to apply: the replica already shows the primary as of
            // `current`; the stored version moves at most every
            // `idle_advance` (a replica transaction and a Redis write).
            return Ok(caught_up(p, &key, since, current, 0));
        }
        if last {
            // The pages were read over time; cleanup may have removed
            // changes after `since` meanwhile. Checked before the version
            // can move (the last page records it).
            if let Some(reason) = cleanup_passed(p, table, since).await? {
                return Ok(Ended::CleanupPassed(reason));
            }
        }
        let (deletes, inserts) = (page.keys.len() as u64, page.rows.len() as u64);
        let batch = ChangeBatch {
            table: table.clone(),
            keys: page.keys,
            rows: page.rows,
            version: last.then_some(current),
        };
        sink.apply(schema.clone(), batch).await?;
        telemetry::rows_applied(&key, "delete", deletes);
        telemetry::rows_applied(&key, "insert", inserts);
        changed_keys += deletes;
        p.board.update(&key, |s| s.rows_applied += inserts);
        if last {
            break;
        }
        after = page.next_after;
    }
    if current != since {
        p.state
            .set_version(table, current, sink.owner_claim(table)?)
            .await?;
        p.advanced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(table.clone(), tokio::time::Instant::now());
    }
    Ok(caught_up(p, &key, current, current, changed_keys))
}

/// Whether an idle table's stored version `since` should move to `current`
/// now: when it last moved at least `idle_advance` ago (or never in this
/// process).
fn advance_due(
    p: &Pipeline,
    table: &crate::model::TableId,
    since: SyncVersion,
    current: SyncVersion,
) -> bool {
    if current == since {
        return false;
    }
    let advanced = p.advanced.lock().unwrap_or_else(|e| e.into_inner());
    advanced
        .get(table)
        .is_none_or(|at| at.elapsed() >= p.config.idle_advance)
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
