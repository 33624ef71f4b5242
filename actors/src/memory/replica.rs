//! In-memory replica: each port call is one all-or-nothing transaction (work
//! is done on a copy that replaces the table only on success), duplicate keys
//! are rejected like a PRIMARY KEY constraint, and the Nth write can be made
//! to fail halfway through.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::row_key;
use crate::error::{Error, Result};
use crate::model::{ChangeBatch, Row, RowKey, SyncVersion, TableId, TableSchema};
use crate::ports::Replica;

#[derive(Debug, Clone)]
struct Table {
    schema: TableSchema,
    rows: BTreeMap<RowKey, Row>,
}

#[derive(Debug, Default)]
struct Data {
    tables: BTreeMap<TableId, Table>,
    versions: BTreeMap<TableId, SyncVersion>,
    writes: usize,
    /// Write numbers (1-based, counting every write call) that fail.
    fail_writes: Vec<usize>,
    /// Every write fails while set.
    down: Option<String>,
}

#[derive(Debug, Default)]
pub struct MemoryReplica {
    data: Mutex<Data>,
}

impl MemoryReplica {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `n`th next write (1-based) fails after doing part of its work; the
    /// transaction is rolled back, so the replica stays unchanged.
    pub fn fail_write(&self, n: usize) {
        let mut data = self.lock();
        let at = data.writes + n;
        data.fail_writes.push(at);
    }

    /// Every write fails with `message` until `up` is called.
    pub fn go_down(&self, message: &str) {
        self.lock().down = Some(message.to_string());
    }

    pub fn up(&self) {
        self.lock().down = None;
    }

    pub fn has_table(&self, id: &TableId) -> bool {
        self.lock().tables.contains_key(id)
    }

    pub fn schema(&self, id: &TableId) -> Option<TableSchema> {
        self.lock().tables.get(id).map(|t| t.schema.clone())
    }

    /// The table's rows in key order.
    pub fn rows(&self, id: &TableId) -> Vec<Row> {
        self.lock()
            .tables
            .get(id)
            .map(|t| t.rows.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The version in the replica's own `ctsync` version table.
    pub fn recorded_version(&self, id: &TableId) -> Option<SyncVersion> {
        self.lock().versions.get(id).copied()
    }

    pub fn set_recorded_version(&self, id: &TableId, version: SyncVersion) {
        self.lock().versions.insert(id.clone(), version);
    }

    /// Runs one write transaction on a copy of the table.
    fn write<T>(
        &self,
        id: &TableId,
        f: impl FnOnce(&mut Table, &mut Option<SyncVersion>, bool) -> Result<T>,
    ) -> Result<T> {
        let mut data = self.lock();
        if let Some(msg) = &data.down {
            return Err(Error::Replica(msg.clone()));
        }
        data.writes += 1;
        let n = data.writes;
        let fail = data.fail_writes.contains(&n);
        data.fail_writes.retain(|w| *w != n);
        let mut table =
            data.tables.get(id).cloned().ok_or_else(|| {
                Error::Replica(format!("Invalid object name '{id}' on the replica"))
            })?;
        let mut version = data.versions.get(id).copied();
        let out = f(&mut table, &mut version, fail)?;
        data.tables.insert(id.clone(), table);
        match version {
            Some(v) => data.versions.insert(id.clone(), v),
            None => data.versions.remove(id),
        };
        Ok(out)
    }
}

fn insert(table: &mut Table, rows: &[Row]) -> Result<()> {
    for row in rows {
        let key = row_key(&table.schema, row)
            .ok_or_else(|| Error::Replica(format!("table {} has no key", table.schema.id)))?;
        if table.rows.contains_key(&key) {
            return Err(Error::Replica(format!(
                "Violation of PRIMARY KEY constraint on {}: duplicate key {:?}",
                table.schema.id, key.0
            )));
        }
        table.rows.insert(key, row.clone());
    }
    Ok(())
}

fn injected(id: &TableId) -> Error {
    Error::Replica(format!(
        "table {id}: injected failure inside the transaction"
    ))
}

#[async_trait]
impl Replica for MemoryReplica {
    async fn ensure_table(&self, schema: &TableSchema) -> Result<bool> {
        let mut data = self.lock();
        if let Some(msg) = &data.down {
            return Err(Error::Replica(msg.clone()));
        }
        if data.tables.contains_key(&schema.id) {
            return Ok(false);
        }
        data.tables.insert(
            schema.id.clone(),
            Table {
                schema: schema.clone(),
                rows: BTreeMap::new(),
            },
        );
        Ok(true)
    }

    async fn begin_full_load(&self, schema: &TableSchema) -> Result<()> {
        self.write(&schema.id, |t, version, fail| {
            t.rows.clear();
            *version = None;
            if fail {
                return Err(injected(&schema.id));
            }
            Ok(())
        })
    }

    async fn insert_rows(&self, schema: &TableSchema, rows: &[Row]) -> Result<()> {
        self.write(&schema.id, |t, _, fail| {
            let half = rows.len() / 2;
            insert(t, &rows[..half])?;
            if fail {
                return Err(injected(&schema.id));
            }
            insert(t, &rows[half..])
        })
    }

    async fn apply_changes(&self, schema: &TableSchema, batch: &ChangeBatch) -> Result<()> {
        self.write(&schema.id, |t, version, fail| {
            for key in &batch.keys {
                t.rows.remove(key);
            }
            if fail {
                return Err(injected(&schema.id));
            }
            insert(t, &batch.rows)?;
            if let Some(v) = batch.version {
                *version = Some(v);
            }
            Ok(())
        })
    }

    async fn finish_full_load(&self, table: &TableId, version: SyncVersion) -> Result<()> {
        self.write(table, |_, v, fail| {
            if fail {
                return Err(injected(table));
            }
            *v = Some(version);
            Ok(())
        })
    }

    async fn stored_version(&self, table: &TableId) -> Result<Option<SyncVersion>> {
        let data = self.lock();
        if let Some(msg) = &data.down {
            return Err(Error::Replica(msg.clone()));
        }
        Ok(data.versions.get(table).copied())
    }
}
