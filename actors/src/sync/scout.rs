//! The per-poll scout: one batched primary read (`Primary::scout`) tells
//! which of this instance's tables have changes since their stored
//! versions. A table the scout found idle skips its change read; each
//! finding is used by at most one cycle, and only for the version it was
//! taken at, so a change is picked up by the next poll at the latest.

use std::collections::HashMap;
use std::sync::Mutex;

use tracing::debug;

use super::Pipeline;
use crate::model::{SyncVersion, TableId};
use crate::ports::Scouted;

/// The versions the tables stand at, and the scout's findings.
#[derive(Debug, Default)]
pub struct Scouts {
    /// Each table's stored version as its last incremental cycle left it.
    stored: Mutex<HashMap<TableId, SyncVersion>>,
    /// The last scout's finding per table, with the version it checked.
    found: Mutex<HashMap<TableId, (SyncVersion, Scouted)>>,
}

impl Scouts {
    /// `table` stands at `version` after a cycle (the next scout checks
    /// from there).
    pub fn stored(&self, table: &TableId, version: SyncVersion) {
        lock(&self.stored).insert(table.clone(), version);
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
    match p.primary.scout(&asked).await {
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
