//! Incremental sync: read net changes since the stored version in bounded
//! pages; each page is one replica transaction (delete every changed key,
//! insert the current rows); the last page also records the new version on
//! the replica, and Redis moves only after that commit.

use std::sync::Arc;
use std::time::Instant;

use super::cycle::{set_state, Outcome};
use super::Pipeline;
use crate::error::Result;
use crate::model::{ChangeBatch, SyncVersion, TableSchema};
use crate::status::TableState;
use crate::telemetry;

pub(super) async fn run(
    p: &Pipeline,
    schema: &Arc<TableSchema>,
    since: SyncVersion,
    current: SyncVersion,
) -> Result<Outcome> {
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
        let page = p
            .primary
            .changes_page(schema, since, after.as_ref(), page_size)
            .await?;
        let last = page.next_after.is_none();
        if last && page.keys.is_empty() && current == since {
            break; // nothing to apply and nothing to move forward
        }
        let (deletes, inserts) = (page.keys.len() as u64, page.rows.len() as u64);
        let batch = ChangeBatch {
            table: table.clone(),
            keys: page.keys,
            rows: page.rows,
            version: last.then_some(current),
        };
        p.sink.apply(schema.clone(), batch).await?;
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
        p.state.set_version(table, current).await?;
    }
    telemetry::versions(&key, current, current);
    telemetry::lag_seconds(&key, 0.0);
    p.board.update(&key, |s| {
        s.version = Some(current);
        s.primary_version = Some(current);
        s.lag_versions = Some(0);
        s.lag_seconds = 0.0;
        s.caught_up_at = Some(Instant::now());
    });
    Ok(Outcome::Synced { changed_keys })
}
