//! The columns a table's cycles work with, read from the primary's and the
//! replica's catalogs only when they may have changed: the first cycle, a
//! full load, after a DDL event or a failed cycle of the table, and every
//! [`REFRESH_CYCLES`] cycles that read changes, or every
//! `SyncConfig::idle_catalog_refresh` idle cycles (which the scout answered
//! without a change read; cheap, so counted apart). A change read that finds other columns than
//! the cached ones (a DDL event lost or still on its way) fails with
//! `Error::ColumnsChanged` and the entry is dropped, so no row is ever
//! applied with a stale column list.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::model::{TableId, TableSchema};

/// Cycles a cached schema serves before both catalogs are read again (one
/// minute at the default 5 s poll).
pub const REFRESH_CYCLES: u32 = 12;

struct Entry {
    schema: Arc<TableSchema>,
    /// Cycles that read changes, and idle cycles, served since the read.
    served: u32,
    idle: u32,
}

#[derive(Default)]
pub struct SchemaCache {
    entries: Mutex<HashMap<TableId, Entry>>,
    /// The column changes last made to each table's replica (an alter or a
    /// reload): the same changes asked for again mean they did not take.
    changed: Mutex<HashMap<TableId, String>>,
}

impl SchemaCache {
    /// Exactly `ops` were made to `table`'s replica before (and it still
    /// differs, or they would not be asked for again).
    pub fn made_before(&self, table: &TableId, ops: &[crate::model::ColumnOp]) -> bool {
        let changed = self.changed.lock().unwrap_or_else(|e| e.into_inner());
        changed.get(table) == Some(&format!("{ops:?}"))
    }

    /// `ops` were made to `table`'s replica (the alter or the reload
    /// committed).
    pub fn made(&self, table: &TableId, ops: &[crate::model::ColumnOp]) {
        self.changed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(table.clone(), format!("{ops:?}"));
    }

    /// `table`'s replica matches the primary: no change is outstanding.
    pub fn converged(&self, table: &TableId) {
        self.changed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(table);
    }

    /// The cached schema for one more cycle, unless it is due for a fresh
    /// read of the catalogs.
    pub fn take_turn(&self, table: &TableId) -> Option<Arc<TableSchema>> {
        self.turn(table, REFRESH_CYCLES, |e| &mut e.served)
    }

    /// One more turn of `table`'s entry, counted by `count`; after `limit`
    /// the entry goes and the cycle reads the catalogs.
    fn turn(
        &self,
        table: &TableId,
        limit: u32,
        count: fn(&mut Entry) -> &mut u32,
    ) -> Option<Arc<TableSchema>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get_mut(table)?;
        let n = count(entry);
        if *n >= limit {
            entries.remove(table);
            return None;
        }
        *n += 1;
        Some(entry.schema.clone())
    }

    /// The cached schema for a cycle that reads no changes (the scout
    /// found the table idle), unless `limit` such cycles have passed since
    /// the catalogs were read: then `None`, and the cycle reads them (a
    /// replica table dropped by hand is recreated then at the latest).
    /// Asked only through [`super::idle::IdleTables::skip_change_read`].
    pub fn idle_turn(&self, table: &TableId, limit: u32) -> Option<Arc<TableSchema>> {
        self.turn(table, limit, |e| &mut e.idle)
    }

    /// `schema` is what both catalogs say now (the replica's table matches).
    pub fn put(&self, table: &TableId, schema: Arc<TableSchema>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert(
            table.clone(),
            Entry {
                schema,
                served: 0,
                idle: 0,
            },
        );
    }

    /// The next cycle reads both catalogs.
    pub fn forget(&self, table: &TableId) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ColumnDef, SqlType};

    #[test]
    fn a_cached_schema_serves_a_bounded_number_of_cycles() {
        let cache = SchemaCache::default();
        let id = TableId::new("dbo", "T");
        assert!(cache.take_turn(&id).is_none());
        let schema = Arc::new(TableSchema {
            id: id.clone(),
            columns: vec![ColumnDef::new("Id", SqlType::Int, false)],
            primary_key: vec![],
        });
        cache.put(&id, schema);
        for _ in 0..REFRESH_CYCLES {
            assert!(cache.take_turn(&id).is_some());
        }
        assert!(cache.take_turn(&id).is_none(), "due for a catalog read");
        assert!(cache.take_turn(&id).is_none());
    }

    #[test]
    fn idle_cycles_are_counted_apart_and_refresh_later() {
        let cache = SchemaCache::default();
        let id = TableId::new("dbo", "T");
        cache.put(
            &id,
            Arc::new(TableSchema {
                id: id.clone(),
                columns: vec![ColumnDef::new("Id", SqlType::Int, false)],
                primary_key: vec![],
            }),
        );
        for _ in 0..3 * REFRESH_CYCLES {
            assert!(cache.idle_turn(&id, 3 * REFRESH_CYCLES).is_some());
        }
        assert!(
            cache.take_turn(&id).is_some(),
            "idle turns leave change reads' count alone"
        );
        assert!(
            cache.idle_turn(&id, 3 * REFRESH_CYCLES).is_none(),
            "due for a catalog read"
        );
        assert!(cache.take_turn(&id).is_none());
    }
}
