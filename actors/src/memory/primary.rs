//! In-memory primary: tables with rows, a database-wide CT version counter,
//! per-key last-change versions (net changes), min valid versions, truncate
//! and cleanup, and slow change pages. Faults are injected around it
//! (`memory::faults`).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::row_key;
use crate::error::{Error, Result};
use crate::model::{
    ChangePage, ColumnDef, PrimaryIdentity, Row, RowKey, SyncVersion, TableId, TableSchema, Value,
};
use crate::modules::ModuleDef;
use crate::ports::{ChangeSet, Opened, Primary, Scouted};

#[derive(Debug)]
struct Table {
    schema: TableSchema,
    rows: BTreeMap<RowKey, Row>,
    /// Last change version of every key changed since CT was enabled.
    changes: BTreeMap<RowKey, SyncVersion>,
    min_valid: SyncVersion,
    tracked: bool,
}

#[derive(Debug, Default)]
struct Delays {
    /// Each change-set page of the table waits this long first.
    changes_delay: HashMap<TableId, std::time::Duration>,
}

#[derive(Debug)]
struct Data {
    version: SyncVersion,
    identity: PrimaryIdentity,
    tables: BTreeMap<TableId, Table>,
    delays: Delays,
    pages_read: HashMap<TableId, usize>,
    changes_pages_read: HashMap<TableId, usize>,
    /// `open_changes` calls per table (change-set copies).
    change_sets: HashMap<TableId, usize>,
    /// `table_schema` calls per table (catalog reads).
    schema_reads: HashMap<TableId, usize>,
    retention: Option<std::time::Duration>,
    modules: BTreeMap<(String, String), ModuleDef>,
    /// Tables the scout was asked about while their change tracking was
    /// off (the table list changed since the discovery that listed them).
    untracked_scouted: usize,
}

/// A primary database in memory. Every mutating call is one committed
/// transaction and takes the next CT version.
#[derive(Debug)]
pub struct MemoryPrimary {
    data: Mutex<Data>,
    /// What `doctor` is told about the database (tables are added from the
    /// catalog).
    doctor: Mutex<crate::doctor::PrimaryFacts>,
}

impl Default for MemoryPrimary {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryPrimary {
    pub fn new() -> Self {
        Self {
            data: Mutex::new(Data {
                version: 0,
                identity: PrimaryIdentity {
                    broker_guid: "00000000-0000-0000-0000-000000000001".into(),
                    create_date: "2026-01-01T00:00:00".into(),
                },
                tables: BTreeMap::new(),
                delays: Delays::default(),
                pages_read: HashMap::new(),
                changes_pages_read: HashMap::new(),
                change_sets: HashMap::new(),
                schema_reads: HashMap::new(),
                retention: Some(std::time::Duration::from_secs(2 * 24 * 3600)),
                modules: BTreeMap::new(),
                untracked_scouted: 0,
            }),
            doctor: Mutex::new(crate::doctor::PrimaryFacts::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn table_mut<'a>(data: &'a mut Data, id: &TableId) -> &'a mut Table {
        data.tables
            .get_mut(id)
            .unwrap_or_else(|| panic!("test setup: table {id} does not exist in MemoryPrimary"))
    }

    /// Creates a table; `tracked` enables change tracking on it.
    pub fn create_table(&self, schema: TableSchema, tracked: bool) {
        let mut data = self.lock();
        let min_valid = data.version;
        data.tables.insert(
            schema.id.clone(),
            Table {
                schema,
                rows: BTreeMap::new(),
                changes: BTreeMap::new(),
                min_valid,
                tracked,
            },
        );
    }

    /// One committed transaction on `id`. Only a transaction on a tracked
    /// table takes a CT version and leaves change information; on an
    /// untracked one the rows change and CT knows nothing of it.
    fn commit(&self, id: &TableId, f: impl FnOnce(&mut Table, SyncVersion)) -> SyncVersion {
        let mut data = self.lock();
        let tracked = Self::table_mut(&mut data, id).tracked;
        if tracked {
            data.version += 1;
        }
        let v = data.version;
        let t = Self::table_mut(&mut data, id);
        let untracked = (!tracked).then(|| std::mem::take(&mut t.changes));
        f(t, v);
        if let Some(changes) = untracked {
            t.changes = changes;
        }
        v
    }

    /// `ALTER TABLE … ENABLE CHANGE_TRACKING` (`on`) or `DISABLE` on an
    /// existing table. Disabling drops the table's change information;
    /// enabling starts it afresh, with the min valid version at a new
    /// version (modelled like TRUNCATE: every version stored before is
    /// below it). No-op when the table is already in that state.
    pub fn set_tracked(&self, id: &TableId, on: bool) {
        let mut data = self.lock();
        if Self::table_mut(&mut data, id).tracked == on {
            return;
        }
        if on {
            data.version += 1;
        }
        let v = data.version;
        let t = Self::table_mut(&mut data, id);
        t.tracked = on;
        t.changes.clear();
        if on {
            t.min_valid = v;
        }
    }

    /// How many tables the scout was asked about while their change
    /// tracking was off.
    pub fn untracked_scouted(&self) -> usize {
        self.lock().untracked_scouted
    }

    /// Whether change tracking is on for the table.
    pub fn is_tracked(&self, id: &TableId) -> bool {
        self.lock().tables.get(id).is_some_and(|t| t.tracked)
    }

    /// Inserts or replaces the row with the same key (one transaction).
    pub fn upsert(&self, id: &TableId, row: Row) -> SyncVersion {
        self.commit(id, |t, v| {
            let key = row_key(&t.schema, &row).expect("test setup: table has a key");
            t.changes.insert(key.clone(), v);
            t.rows.insert(key, row);
        })
    }

    /// Inserts many rows in one transaction.
    pub fn insert_many(&self, id: &TableId, rows: impl IntoIterator<Item = Row>) -> SyncVersion {
        self.commit(id, |t, v| {
            for row in rows {
                let key = row_key(&t.schema, &row).expect("test setup: table has a key");
                t.changes.insert(key.clone(), v);
                t.rows.insert(key, row);
            }
        })
    }

    pub fn delete(&self, id: &TableId, key: &RowKey) -> SyncVersion {
        self.commit(id, |t, v| {
            t.rows.remove(key);
            t.changes.insert(key.clone(), v);
        })
    }

    /// Changes a row's primary key: CT records a delete of the old key and an
    /// insert of the new one.
    pub fn update_key(&self, id: &TableId, old: &RowKey, row: Row) -> SyncVersion {
        self.commit(id, |t, v| {
            t.rows.remove(old);
            t.changes.insert(old.clone(), v);
            let key = row_key(&t.schema, &row).expect("test setup: table has a key");
            t.changes.insert(key.clone(), v);
            t.rows.insert(key, row);
        })
    }

    /// TRUNCATE TABLE: rows and CT information are gone, the min valid
    /// version moves to the current version.
    pub fn truncate(&self, id: &TableId) {
        let mut data = self.lock();
        if !Self::table_mut(&mut data, id).tracked {
            Self::table_mut(&mut data, id).rows.clear();
            return;
        }
        data.version += 1;
        let v = data.version;
        let t = Self::table_mut(&mut data, id);
        t.rows.clear();
        t.changes.clear();
        t.min_valid = v;
    }

    /// CT cleanup: forgets changes at or below `version` and raises the min
    /// valid version to it.
    pub fn cleanup(&self, id: &TableId, version: SyncVersion) {
        let mut data = self.lock();
        let t = Self::table_mut(&mut data, id);
        t.changes.retain(|_, v| *v > version);
        t.min_valid = t.min_valid.max(version);
    }

    /// Adds a column (not tracked as a change, like ALTER TABLE ADD).
    pub fn add_column(&self, id: &TableId, column: ColumnDef, fill: Value) {
        let mut data = self.lock();
        let t = Self::table_mut(&mut data, id);
        t.schema.columns.push(column);
        for row in t.rows.values_mut() {
            row.push(fill.clone());
        }
    }

    /// Drops a column that is not part of the key (not tracked as a change,
    /// like ALTER TABLE DROP COLUMN).
    pub fn drop_column(&self, id: &TableId, name: &str) {
        let mut data = self.lock();
        let t = Self::table_mut(&mut data, id);
        if t.schema.primary_key.iter().any(|k| k.name == name) {
            return;
        }
        let position = t
            .schema
            .written_columns()
            .iter()
            .position(|c| c.name == name);
        t.schema.columns.retain(|c| c.name != name);
        if let Some(i) = position {
            for row in t.rows.values_mut() {
                row.remove(i);
            }
        }
    }

    /// Creates or replaces a view, procedure, function or trigger.
    pub fn set_module(&self, module: ModuleDef) {
        let key = (module.schema.clone(), module.name.clone());
        self.lock().modules.insert(key, module);
    }

    pub fn drop_module(&self, schema: &str, name: &str) {
        self.lock()
            .modules
            .remove(&(schema.to_string(), name.to_string()));
    }

    /// `sp_rename` of a column: data stays, CT records nothing.
    pub fn rename_column(&self, id: &TableId, from: &str, to: &str) {
        let mut data = self.lock();
        let t = Self::table_mut(&mut data, id);
        for c in t.schema.columns.iter_mut().filter(|c| c.name == from) {
            c.name = to.to_string();
        }
        for k in t.schema.primary_key.iter_mut().filter(|k| k.name == from) {
            k.name = to.to_string();
        }
    }

    /// `sp_rename` of a table: CT stays enabled under the new name.
    pub fn rename_table(&self, from: &TableId, to: &TableId) {
        let mut data = self.lock();
        if let Some(mut t) = data.tables.remove(from) {
            t.schema.id = to.clone();
            data.tables.insert(to.clone(), t);
        }
    }

    /// Sets the CT retention period (`None`: auto cleanup off).
    pub fn set_retention(&self, retention: Option<std::time::Duration>) {
        self.lock().retention = retention;
    }

    pub fn set_identity(&self, identity: PrimaryIdentity) {
        self.lock().identity = identity;
    }

    /// Every change-set page of the table waits `delay` first (a slow read).
    pub fn delay_changes_pages(&self, id: &TableId, delay: std::time::Duration) {
        self.lock().delays.changes_delay.insert(id.clone(), delay);
    }

    /// How many change-set pages of the table were read so far.
    pub fn changes_pages_read(&self, id: &TableId) -> usize {
        self.lock().changes_pages_read.get(id).copied().unwrap_or(0)
    }

    /// How many change sets of the table were copied so far.
    pub fn change_sets(&self, id: &TableId) -> usize {
        self.lock().change_sets.get(id).copied().unwrap_or(0)
    }

    /// How many times the table's columns were read from the catalog.
    pub fn schema_reads(&self, id: &TableId) -> usize {
        self.lock().schema_reads.get(id).copied().unwrap_or(0)
    }

    /// How many `read_page` calls reached the table so far.
    pub fn pages_read(&self, id: &TableId) -> usize {
        self.lock().pages_read.get(id).copied().unwrap_or(0)
    }

    /// Sets what `doctor` finds (settings, queue, permissions, versions).
    pub fn set_doctor_facts(&self, facts: crate::doctor::PrimaryFacts) {
        *self.doctor.lock().unwrap_or_else(|e| e.into_inner()) = facts;
    }

    pub(super) fn facts_for_doctor(&self) -> crate::doctor::PrimaryFacts {
        self.doctor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every table: (id, has a primary key, change tracking on).
    pub(super) fn table_keys_and_tracking(&self) -> Vec<(TableId, bool, bool)> {
        self.lock()
            .tables
            .iter()
            .map(|(id, t)| (id.clone(), !t.schema.primary_key.is_empty(), t.tracked))
            .collect()
    }

    /// The table's rows by key (for `verify`).
    pub fn row_map(&self, id: &TableId) -> BTreeMap<RowKey, Row> {
        self.lock()
            .tables
            .get(id)
            .map(|t| t.rows.clone())
            .unwrap_or_default()
    }

    /// The table's rows in key order.
    pub fn rows(&self, id: &TableId) -> Vec<Row> {
        let data = self.lock();
        data.tables
            .get(id)
            .map(|t| t.rows.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn version(&self) -> SyncVersion {
        self.lock().version
    }

    fn check(data: &Data, id: &TableId) -> Result<()> {
        match data.tables.get(id) {
            Some(_) => Ok(()),
            None => Err(Error::Primary(format!("Invalid object name '{id}'"))),
        }
    }
}

fn after_bound(after: Option<&RowKey>) -> Bound<RowKey> {
    match after {
        Some(k) => Bound::Excluded(k.clone()),
        None => Bound::Unbounded,
    }
}

#[async_trait]
impl Primary for MemoryPrimary {
    async fn identity(&self) -> Result<PrimaryIdentity> {
        Ok(self.lock().identity.clone())
    }

    async fn tracked_tables(&self) -> Result<Vec<TableId>> {
        let data = self.lock();
        Ok(data
            .tables
            .iter()
            .filter(|(_, t)| t.tracked)
            .map(|(id, _)| id.clone())
            .collect())
    }

    async fn table_schema(&self, table: &TableId) -> Result<TableSchema> {
        let mut data = self.lock();
        Self::check(&data, table)?;
        *data.schema_reads.entry(table.clone()).or_insert(0) += 1;
        Ok(data.tables[table].schema.clone())
    }

    async fn current_version(&self) -> Result<SyncVersion> {
        Ok(self.lock().version)
    }

    async fn min_valid_version(&self, table: &TableId) -> Result<Option<SyncVersion>> {
        let data = self.lock();
        Self::check(&data, table)?;
        let t = &data.tables[table];
        Ok(t.tracked.then_some(t.min_valid))
    }

    async fn row_count(&self, table: &TableId) -> Result<u64> {
        let data = self.lock();
        Self::check(&data, table)?;
        Ok(data.tables[table].rows.len() as u64)
    }

    async fn modules(&self) -> Result<Vec<ModuleDef>> {
        Ok(self.lock().modules.values().cloned().collect())
    }

    async fn change_retention(&self) -> Result<Option<std::time::Duration>> {
        Ok(self.lock().retention)
    }

    async fn read_page(
        &self,
        schema: &TableSchema,
        after: Option<&RowKey>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        let mut data = self.lock();
        Self::check(&data, &schema.id)?;
        *data.pages_read.entry(schema.id.clone()).or_insert(0) += 1;
        let t = &data.tables[&schema.id];
        Ok(t.rows
            .range((after_bound(after), Bound::Unbounded))
            .take(limit)
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn scout(&self, tables: &[(TableId, SyncVersion)]) -> Result<Vec<Scouted>> {
        let mut data = self.lock();
        let untracked = tables
            .iter()
            .filter(|(t, _)| data.tables.get(t).is_some_and(|t| !t.tracked))
            .count();
        data.untracked_scouted += untracked;
        tables
            .iter()
            .map(|(table, since)| {
                Self::check(&data, table)?;
                let t = &data.tables[table];
                Ok(Scouted {
                    changed: t.changes.values().any(|v| v > since),
                    min_valid: t.tracked.then_some(t.min_valid),
                    current: data.version,
                })
            })
            .collect()
    }

    async fn open_changes<'a>(
        &'a self,
        schema: &TableSchema,
        since: SyncVersion,
        after: Option<&RowKey>,
    ) -> Result<Box<dyn ChangeSet + 'a>> {
        let mut data = self.lock();
        Self::check(&data, &schema.id)?;
        *data.change_sets.entry(schema.id.clone()).or_insert(0) += 1;
        let target = data.version;
        let t = &data.tables[&schema.id];
        let min_valid = t.tracked.then_some(t.min_valid);
        // What SQL Server's CHANGETABLE would hold for a version it can
        // answer: nothing is copied for one it cannot (the caller holds the
        // table stale).
        let keys: Vec<RowKey> = if min_valid.is_some_and(|m| since >= m) && since <= target {
            t.changes
                .range((after_bound(after), Bound::Unbounded))
                .filter(|(_, v)| **v > since)
                .map(|(k, _)| k.clone())
                .collect()
        } else {
            Vec::new()
        };
        Ok(Box::new(MemoryChangeSet {
            primary: self,
            table: schema.id.clone(),
            opened: Opened {
                target,
                min_valid,
                keys: keys.len() as u64,
            },
            keys: keys.into(),
        }))
    }
}

/// A change set of the in-memory primary: the changed keys copied at open;
/// each page reads the rows as they are when it is read.
struct MemoryChangeSet<'a> {
    primary: &'a MemoryPrimary,
    table: TableId,
    opened: Opened,
    keys: std::collections::VecDeque<RowKey>,
}

#[async_trait]
impl ChangeSet for MemoryChangeSet<'_> {
    fn opened(&self) -> Opened {
        self.opened
    }

    async fn next_page(&mut self, schema: &TableSchema, limit: usize) -> Result<ChangePage> {
        let delay = self
            .primary
            .lock()
            .delays
            .changes_delay
            .get(&self.table)
            .copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let mut data = self.primary.lock();
        MemoryPrimary::check(&data, &self.table)?;
        *data
            .changes_pages_read
            .entry(self.table.clone())
            .or_insert(0) += 1;
        let t = &data.tables[&self.table];
        // What the SQL Server adapter checks against the catalog's stamp in
        // the same request (see `sql::change_set_page`).
        if t.schema.columns != schema.columns {
            return Err(Error::ColumnsChanged(schema.id.clone()));
        }
        let project = projection(&t.schema, schema)?;
        let n = limit.max(1).min(self.keys.len());
        let keys: Vec<RowKey> = self.keys.drain(..n).collect();
        // One ordered walk over the rows between the first and last changed
        // key (both are in key order), not one lookup per key.
        let mut rows = Vec::with_capacity(keys.len());
        if let (Some(first), Some(last)) = (keys.first(), keys.last()) {
            let mut wanted = keys.iter().peekable();
            for (k, row) in t.rows.range(first..=last) {
                while wanted.next_if(|w| *w < k).is_some() {}
                if wanted.next_if(|w| *w == k).is_some() {
                    rows.push(match &project {
                        None => row.clone(),
                        Some(at) => at.iter().map(|&i| row[i].clone()).collect(),
                    });
                }
            }
        }
        let next_after = if self.keys.is_empty() {
            None
        } else {
            keys.last().cloned()
        };
        Ok(ChangePage {
            keys,
            rows,
            next_after,
        })
    }
}

/// Where each written column of `asked` sits in rows of `table` — what a
/// SELECT naming `asked`'s columns returns (`None`: the same columns) — or
/// SQL Server's error for a column that no longer exists.
fn projection(table: &TableSchema, asked: &TableSchema) -> Result<Option<Vec<usize>>> {
    let have = table.written_columns();
    let want = asked.written_columns();
    if have.len() == want.len() && have.iter().zip(&want).all(|(a, b)| a.name == b.name) {
        return Ok(None);
    }
    want.iter()
        .map(|c| {
            have.iter().position(|h| h.name == c.name).ok_or_else(|| {
                Error::Primary(format!("Invalid column name '{}' in {}", c.name, table.id))
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}
