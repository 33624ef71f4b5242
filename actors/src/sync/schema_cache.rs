//! The columns a table's cycles work with, read from the primary's and the
//! replica's catalogs only when they may have changed: the first cycle, a
//! full load, after a DDL event or a failed cycle of the table, and every
//! [`REFRESH_CYCLES`] cycles. A change read that finds other columns than
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
    served: u32,
}

#[derive(Default)]
pub struct SchemaCache {
    entries: Mutex<HashMap<TableId, Entry>>,
}

impl SchemaCache {
    /// The cached schema for one more cycle, unless it is due for a fresh
    /// read of the catalogs.
    pub fn take_turn(&self, table: &TableId) -> Option<Arc<TableSchema>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get_mut(table)?;
        if entry.served >= REFRESH_CYCLES {
            entries.remove(table);
            return None;
        }
        entry.served += 1;
        Some(entry.schema.clone())
    }

    /// `schema` is what both catalogs say now (the replica's table matches).
    pub fn put(&self, table: &TableId, schema: Arc<TableSchema>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert(table.clone(), Entry { schema, served: 0 });
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
}
