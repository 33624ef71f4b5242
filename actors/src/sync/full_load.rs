//! Initial and forced full load: version read before the copy, truncate
//! (or recreate) together with the replica's "load pending" record,
//! keyset-paginated copy (one page in memory at a time), then the replica's
//! version record and, in one atomic Redis step, version + flag reset.

use std::time::Instant;

use tracing::info;

use super::cycle::{set_state, LoadRequest};
use super::{now_millis, Pipeline};
use crate::error::{Error, Result};
use crate::model::{ColumnOp, RowKey, TableId, Value};
use crate::ports::LoadProgress;
use crate::status::TableState;
use crate::telemetry;

/// `alter` are column changes applied right after the truncate (an empty
/// table accepts NOT NULL columns).
pub(super) async fn run(p: &Pipeline, load: LoadRequest<'_>, alter: &[ColumnOp]) -> Result<()> {
    let LoadRequest {
        sink,
        schema,
        identity,
        forced,
        start,
    } = load;
    let table = &schema.id;
    let key = table.key_name();
    let positions = schema
        .key_positions()
        .ok_or_else(|| Error::NoKey(table.clone()))?;
    set_state(p, table, TableState::FullLoad);
    let started = Instant::now();
    // Read before any data: changes made during the copy are re-applied later.
    let version = p.primary.current_version().await?;
    let total = p.primary.row_count(table).await?;
    let mut progress = LoadProgress {
        synced: 0,
        total,
        started_at: now_millis(),
        updated_at: now_millis(),
    };
    info!(table = %table, version, rows = total, "full load starting");
    sink.begin_full_load(schema.clone(), start).await?;
    if !alter.is_empty() {
        sink.alter_columns(table.clone(), alter.to_vec()).await?;
    }
    report(p, table, &progress, 0).await?;

    let page_size = p.config.full_load_page_size.max(1);
    let mut after: Option<RowKey> = None;
    loop {
        let rows = p
            .primary
            .read_page(schema, after.as_ref(), page_size)
            .await?;
        let n = rows.len();
        if let Some(last) = rows.last() {
            after = Some(RowKey(
                positions
                    .iter()
                    .map(|&i| last.get(i).cloned().unwrap_or(Value::Null))
                    .collect(),
            ));
        }
        if n > 0 {
            sink.insert_rows(schema.clone(), rows).await?;
            progress.synced += n as u64;
            progress.updated_at = now_millis();
            report(p, table, &progress, n as u64).await?;
        }
        if n < page_size {
            break;
        }
    }

    sink.finish_full_load(table.clone(), version).await?;
    p.state
        .finish_full_load(table, version, identity, forced)
        .await?;
    telemetry::rows_applied(&key, "load", progress.synced);
    p.board.update(&key, |s| {
        s.version = Some(version);
        // Kept after the load for the page ("Synced 3 / 3").
        s.progress = Some((progress.synced, progress.synced));
        s.rows_applied += progress.synced;
    });
    info!(
        table = %table,
        version,
        rows = progress.synced,
        seconds = started.elapsed().as_secs_f64(),
        "full load finished"
    );
    Ok(())
}

async fn report(p: &Pipeline, table: &TableId, progress: &LoadProgress, added: u64) -> Result<()> {
    let key = table.key_name();
    p.board.update(&key, |s| {
        s.progress = Some((progress.synced, progress.total))
    });
    telemetry::full_load(&key, added, progress.synced, progress.total);
    p.state.set_progress(table, progress).await
}
