//! Tables with nothing to apply. The poll's scout finds them ([`scout`]);
//! such a table's cycle skips its change read, and its stored version is
//! still moved forward (at most every `idle_advance`, so CT cleanup never
//! overtakes it): its cycle queues the move, the next poll makes the queued
//! ones together ([`move_queued`]). A finding serves at most one cycle, only
//! for the version it was taken at (or the one the batch moved that version
//! to, if it covers it); a move and a cycle of one table never interleave
//! (each holds the table's slot).

mod poll;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

pub use poll::{move_queued, scout};

use super::SchemaCache;
use crate::model::{SyncVersion, TableId, TableSchema};
use crate::ports::{Advance, Scouted};

/// What this instance knows of its idle tables: the versions they stand
/// at, the last scout's findings, and the moves of their stored versions
/// (each one an [`Advance`], `from` → `to`) waiting for the next poll.
#[derive(Debug, Default)]
pub struct IdleTables {
    /// Each table's stored version as its last incremental cycle left it.
    stored: Mutex<HashMap<TableId, SyncVersion>>,
    /// The last scout's finding per table, with the version it checked.
    found: Mutex<HashMap<TableId, (SyncVersion, Scouted)>>,
    /// The last scout failed (said once at WARN until one answers again).
    scout_failing: AtomicBool,
    /// The moves idle cycles queued for the next poll (one per table).
    queued: Mutex<BTreeMap<TableId, Advance>>,
    /// Tables the poll's batch left unmoved (their record or key said
    /// something else, or their claim was refused): their own cycle moves
    /// them next, as before batching.
    move_themselves: Mutex<BTreeSet<TableId>>,
    /// When each table's stored version last moved, by its cycle or by the
    /// batch (never in this process: not in the map).
    last_moved: Mutex<HashMap<TableId, Instant>>,
}

impl IdleTables {
    /// `table` stands at `version` after a cycle (the next scout checks
    /// from there).
    pub fn stands_at(&self, table: &TableId, version: SyncVersion) {
        lock(&self.stored).insert(table.clone(), version);
    }

    /// Forgets the version `table` stands at and the scout's finding for it
    /// (a failed cycle, a new owner, a schema change): the next scout skips
    /// it and its next cycle reads its changes.
    pub fn forget_version(&self, table: &TableId) {
        lock(&self.stored).remove(table);
        lock(&self.found).remove(table);
    }

    /// The cached schema and the version the replica is complete up to,
    /// when `table`'s cycle may skip its change read: the last scout found
    /// no change after `since` (the stored version the cycle read) and CT
    /// can still answer from `since`. Such cycles count toward a catalog
    /// read of their own, every `catalog_refresh` of them. The finding is
    /// taken once.
    pub fn skip_change_read(
        &self,
        schemas: &SchemaCache,
        table: &TableId,
        since: SyncVersion,
        catalog_refresh: u32,
    ) -> Option<(Arc<TableSchema>, SyncVersion)> {
        let schema = schemas.idle_turn(table, catalog_refresh)?;
        let (version, found) = lock(&self.found).remove(table)?;
        let usable = version == since
            && !found.changed
            && found.current >= since
            && found.min_valid.is_some_and(|m| m <= since);
        usable.then_some((schema, found.current))
    }

    /// Whether `table`'s stored version `since` should move to `current`
    /// now: when it last moved at least `every` ago (or never in this
    /// process).
    pub fn move_due(
        &self,
        table: &TableId,
        since: SyncVersion,
        current: SyncVersion,
        every: Duration,
    ) -> bool {
        if current == since {
            return false;
        }
        lock(&self.last_moved)
            .get(table)
            .is_none_or(|at| at.elapsed() >= every)
    }

    /// Whether `table`'s cycle moves its version itself: the batch left it
    /// unmoved last time.
    pub fn moves_itself(&self, table: &TableId) -> bool {
        lock(&self.move_themselves).contains(table)
    }

    /// Queues `advance` for the next poll (replacing an older one of the
    /// same table).
    pub fn queue_move(&self, advance: Advance) {
        lock(&self.queued).insert(advance.table.clone(), advance);
    }

    /// `table`'s cycle moved its stored version itself: the next move is
    /// due `idle_advance` from now, and goes with the batch again.
    pub fn moved_by_cycle(&self, table: &TableId) {
        lock(&self.last_moved).insert(table.clone(), Instant::now());
        lock(&self.move_themselves).remove(table);
    }

    /// The batch moved `table` from `from` to `to`, which a scout allowed
    /// (no change after `from` up to `to`). The poll's own scout ran just
    /// before and never loses to the move: if it found no change after
    /// `from` up to a version at or past `to`, with CT able to answer from
    /// `from`, its finding holds for `to` as well (the next cycle skips);
    /// any other finding of `from` (a change after `from` is one after
    /// `to`) goes, and the next cycle reads its changes.
    fn moved_by_batch(&self, table: &TableId, from: SyncVersion, to: SyncVersion, at: Instant) {
        lock(&self.last_moved).insert(table.clone(), at);
        self.stands_at(table, to);
        let mut found = lock(&self.found);
        if let Some((version, f)) = found.get(table).copied() {
            let holds_for_to =
                !f.changed && f.current >= to && f.min_valid.is_some_and(|m| m <= from);
            if version == from && holds_for_to {
                found.insert(table.clone(), (to, f));
            } else if version == from {
                found.remove(table);
            }
        }
    }

    /// The batch left `table` unmoved: its cycle moves it next time.
    fn left_unmoved(&self, table: &TableId) {
        lock(&self.move_themselves).insert(table.clone());
    }

    /// The queued moves, emptying the queue.
    fn take_queued(&self) -> Vec<Advance> {
        std::mem::take(&mut *lock(&self.queued))
            .into_values()
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ColumnDef, SqlType};

    /// A table at version 10 whose cycle queued the move 10 → 20, with its
    /// schema cached, and the poll's scout of version 10 finding `found`.
    fn scouted(found: Option<Scouted>) -> (IdleTables, SchemaCache, TableId) {
        let id = TableId::new("dbo", "T");
        let schemas = SchemaCache::default();
        schemas.put(
            &id,
            Arc::new(TableSchema {
                id: id.clone(),
                columns: vec![ColumnDef::new("Id", SqlType::Int, false)],
                primary_key: vec![],
            }),
        );
        let idle = IdleTables::default();
        idle.stands_at(&id, 10);
        if let Some(f) = found {
            lock(&idle.found).insert(id.clone(), (10, f));
        }
        idle.moved_by_batch(&id, 10, 20, Instant::now());
        (idle, schemas, id)
    }

    fn skip(idle: &IdleTables, schemas: &SchemaCache, id: &TableId) -> Option<SyncVersion> {
        idle.skip_change_read(schemas, id, 20, 100).map(|(_, v)| v)
    }

    #[test]
    fn a_change_the_scout_found_is_read_after_the_batch_moved_the_table() {
        let changed = Scouted {
            changed: true,
            min_valid: Some(5),
            current: 25,
        };
        let (idle, schemas, id) = scouted(Some(changed));
        assert_eq!(skip(&idle, &schemas, &id), None);
    }

    #[test]
    fn a_finding_without_change_past_the_move_carries_over_to_the_new_version() {
        let unchanged = Scouted {
            changed: false,
            min_valid: Some(5),
            current: 25,
        };
        let (idle, schemas, id) = scouted(Some(unchanged));
        assert_eq!(skip(&idle, &schemas, &id), Some(25));
        assert_eq!(skip(&idle, &schemas, &id), None, "a finding serves once");
    }

    #[test]
    fn a_finding_that_does_not_cover_the_move_goes() {
        for f in [
            Scouted {
                changed: false,
                min_valid: Some(5),
                current: 15,
            },
            Scouted {
                changed: false,
                min_valid: None,
                current: 25,
            },
            Scouted {
                changed: false,
                min_valid: Some(12),
                current: 25,
            },
        ] {
            let (idle, schemas, id) = scouted(Some(f));
            assert_eq!(skip(&idle, &schemas, &id), None, "{f:?}");
        }
    }

    #[test]
    fn without_a_scout_finding_the_moved_table_reads_its_changes() {
        let (idle, schemas, id) = scouted(None);
        assert_eq!(skip(&idle, &schemas, &id), None);
    }
}
