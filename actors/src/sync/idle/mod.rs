//! Tables with nothing to apply. The poll's scout finds them ([`scout`]);
//! such a table's cycle skips its change read, and its stored version is
//! still moved forward (at most every `idle_advance`, so CT cleanup never
//! overtakes it): its cycle queues the move, the next poll makes the queued
//! ones together ([`move_queued`]). A finding serves at most one cycle, only
//! for the version it was taken at; a move and a cycle of one table never
//! interleave (each holds the table's slot).

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

    /// The batch moved `table` from `from` to `to`, which the scout allowed
    /// (no change after `from` up to `to`, CT able to answer from `from`):
    /// until the next scout, its next cycle may skip as the scout's
    /// finding would have let it.
    fn moved_by_batch(&self, table: &TableId, from: SyncVersion, to: SyncVersion, at: Instant) {
        lock(&self.last_moved).insert(table.clone(), at);
        self.stands_at(table, to);
        let found = Scouted {
            changed: false,
            min_valid: Some(from),
            current: to,
        };
        lock(&self.found).insert(table.clone(), (to, found));
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
