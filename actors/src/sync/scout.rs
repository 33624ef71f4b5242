//! The per-poll scout: one batched primary read (`Primary::scout`) tells
//! which of this instance's tables have changes since their stored
//! versions. A table the scout found idle skips its change read; each
//! finding is used by at most one cycle, and only for the version it was
//! taken at, so a change is picked up by the next poll at the latest.
//! Idle tables' version advances are queued here and moved together.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use tracing::{debug, info, warn};

use super::Pipeline;
use crate::error::Result;
use crate::model::{SyncVersion, TableId};
use crate::ports::{Advance, Scouted};

/// The versions the tables stand at, and the scout's findings.
#[derive(Debug, Default)]
pub struct Scouts {
    /// Each table's stored version as its last incremental cycle left it.
    stored: Mutex<HashMap<TableId, SyncVersion>>,
    /// The last scout's finding per table, with the version it checked.
    found: Mutex<HashMap<TableId, (SyncVersion, Scouted)>>,
    /// The last scout failed (said once at WARN until one answers again).
    failing: std::sync::atomic::AtomicBool,
}

impl Scouts {
    /// `table` stands at `version` after a cycle (the next scout checks
    /// from there).
    pub fn stored(&self, table: &TableId, version: SyncVersion) {
        lock(&self.stored).insert(table.clone(), version);
    }

    /// `table`'s version moved from `from` to `to` with the idle batch,
    /// which the scout allowed (no change after `from` up to `to`, CT able
    /// to answer from `from`): until the next scout, its next cycle may
    /// skip as the scout's finding would have let it.
    fn advanced(&self, table: &TableId, from: SyncVersion, to: SyncVersion) {
        self.stored(table, to);
        let found = Scouted {
            changed: false,
            min_valid: Some(from),
            current: to,
        };
        lock(&self.found).insert(table.clone(), (to, found));
    }

    /// Forgets what is known of `table` (a failed cycle, a new owner).
    pub fn forget(&self, table: &TableId) {
        lock(&self.stored).remove(table);
        lock(&self.found).remove(table);
    }

    /// The current version `table` is complete up to when the last scout
    /// found no change after `since` (the stored version the cycle read)
    /// and CT can still answer from `since`; taken once.
    pub fn idle(&self, table: &TableId, since: SyncVersion) -> Option<SyncVersion> {
        let (version, found) = lock(&self.found).remove(table)?;
        let usable = version == since
            && !found.changed
            && found.current >= since
            && found.min_valid.is_some_and(|m| m <= since);
        usable.then_some(found.current)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Scouts the `running` tables whose stored version is known. A failed
/// scout changes nothing: every table then reads its changes itself.
pub async fn run(p: &Pipeline, running: &[TableId]) {
    let asked: Vec<(TableId, SyncVersion)> = {
        let stored = lock(&p.scouts.stored);
        running
            .iter()
            .filter_map(|t| stored.get(t).map(|v| (t.clone(), *v)))
            .collect()
    };
    if asked.is_empty() {
        return;
    }
    let answered = p.primary.scout(&asked).await;
    let failing = &p.scouts.failing;
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
            let mut map = lock(&p.scouts.found);
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

/// Idle tables whose stored version is due to move, collected by their
/// cycles and moved together by the next poll: one replica transaction
/// and one Redis step inside discovery's second round trip, each table on
/// its own terms. A table the batch left unmoved (its record or key said
/// something else, or its claim was refused) moves itself in its next due
/// cycle, as before batching.
#[derive(Debug, Default)]
pub struct Advances {
    due: Mutex<BTreeMap<TableId, Advance>>,
    alone: Mutex<BTreeSet<TableId>>,
}

impl Advances {
    /// Whether `table`'s next advance goes into the batch.
    pub fn batched(&self, table: &TableId) -> bool {
        !lock(&self.alone).contains(table)
    }

    /// Queues `advance` (replacing an older one of the same table).
    pub fn want(&self, advance: Advance) {
        lock(&self.due).insert(advance.table.clone(), advance);
    }

    /// The queued advances, emptying the queue.
    pub fn take(&self) -> Vec<Advance> {
        std::mem::take(&mut *lock(&self.due))
            .into_values()
            .collect()
    }

    /// The batch left `table` unmoved: its cycle moves it next time.
    pub fn unmoved(&self, table: &TableId) {
        lock(&self.alone).insert(table.clone());
    }

    /// `table`'s cycle moved it itself: batching resumes.
    pub fn moved_alone(&self, table: &TableId) {
        lock(&self.alone).remove(table);
    }
}

/// Moves the queued idle advances: the replica first (one transaction),
/// then Redis within discovery's second round trip: `finish` gets the
/// advances the replica moved and returns its own answer with the tables
/// Redis moved too.
pub async fn advance<T, F, Fut>(p: &Pipeline, finish: F) -> Result<T>
where
    F: FnOnce(Vec<Advance>) -> Fut,
    Fut: std::future::Future<Output = Result<(T, Vec<TableId>)>>,
{
    // Each table's slot is held through both steps; a table whose cycle
    // runs now is left out (its next due cycle queues it again).
    let mut slots = Vec::new();
    let due: Vec<Advance> = p
        .advances
        .take()
        .into_iter()
        .filter(|a| match p.cycles.try_slot(&a.table) {
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
            lock(&p.advanced).insert(a.table.clone(), now);
            p.scouts.advanced(&a.table, a.from, a.to);
            p.board
                .update(&a.table.key_name(), |s| s.version = Some(a.to));
        } else {
            p.advances.unmoved(&a.table);
        }
    }
    drop(slots);
    Ok(answer)
}
