//! The poll's two steps over idle tables: the scout, one batched primary
//! read (`Primary::scout`) of which running tables changed since their
//! stored versions, and the batch that moves the queued versions. Neither
//! can do harm by failing: a failed scout or batch only means each table
//! reads its changes, or moves its version, itself.

use tracing::{debug, info, warn};

use super::lock;
use crate::error::Result;
use crate::model::{SyncVersion, TableId};
use crate::ports::Advance;
use crate::sync::Pipeline;

/// Scouts the `running` tables whose stored version is known. A failed
/// scout changes nothing: every table then reads its changes itself.
pub async fn scout(p: &Pipeline, running: &[TableId]) {
    let idle = &p.known.idle;
    let asked: Vec<(TableId, SyncVersion)> = {
        let stored = lock(&idle.stored);
        running
            .iter()
            .filter_map(|t| stored.get(t).map(|v| (t.clone(), *v)))
            .collect()
    };
    if asked.is_empty() {
        return;
    }
    let answered = p.primary.scout(&asked).await;
    let failing = &idle.scout_failing;
    match &answered {
        Ok(_) if failing.swap(false, std::sync::atomic::Ordering::Relaxed) => {
            info!("the scout answers again: idle tables skip their change reads")
        }
        Err(e) if !failing.swap(true, std::sync::atomic::Ordering::Relaxed) => {
            warn!(error = %e, "the scout failed; each table reads its changes itself until it answers again")
        }
        _ => {}
    }
    match answered {
        Ok(found) if found.len() == asked.len() => {
            let mut map = lock(&idle.found);
            for ((table, version), f) in asked.into_iter().zip(found) {
                map.insert(table, (version, f));
            }
        }
        Ok(found) => debug!(
            asked = asked.len(),
            answered = found.len(),
            "the scout answered for a different number of tables; ignored"
        ),
        Err(e) => debug!(error = %e, "the scout failed; each table reads its changes itself"),
    }
}

/// Makes the queued moves, each table on its own terms: the replica first
/// (one transaction), then Redis within discovery's second round trip:
/// `finish` gets the moves the replica made and returns its own answer
/// with the tables Redis moved too. A table the batch left unmoved moves
/// itself in its next due cycle.
pub async fn move_queued<T, F, Fut>(p: &Pipeline, finish: F) -> Result<T>
where
    F: FnOnce(Vec<Advance>) -> Fut,
    Fut: std::future::Future<Output = Result<(T, Vec<TableId>)>>,
{
    let idle = &p.known.idle;
    // Each table's slot is held through both steps; a table whose cycle
    // runs now is left out (its next due cycle queues it again).
    let mut slots = Vec::new();
    let due: Vec<Advance> = idle
        .take_queued()
        .into_iter()
        .filter(|a| match p.guards.cycles.try_slot(&a.table) {
            Some(slot) => {
                slots.push(slot);
                true
            }
            None => false,
        })
        .collect();
    let on_replica = if due.is_empty() {
        Vec::new()
    } else {
        match p.sink.advance_versions(due.clone()).await {
            Ok(moved) => moved,
            Err(e) => {
                debug!(error = %e, "the idle tables' versions could not be moved together; each table moves its own");
                Vec::new()
            }
        }
    };
    let to_redis: Vec<Advance> = due
        .iter()
        .filter(|a| on_replica.contains(&a.table))
        .cloned()
        .collect();
    let (answer, moved) = finish(to_redis).await?;
    let now = tokio::time::Instant::now();
    for a in &due {
        if moved.contains(&a.table) {
            idle.moved_by_batch(&a.table, a.from, a.to, now);
            p.board
                .update(&a.table.key_name(), |s| s.version = Some(a.to));
        } else {
            idle.left_unmoved(&a.table);
        }
    }
    drop(slots);
    Ok(answer)
}
