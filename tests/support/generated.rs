//! Doubles for throughput benchmarks and request-count tests that cost
//! (almost) nothing themselves: a primary whose one table's rows and
//! changed keys are made on demand, counting its change sets and pages,
//! and a replica that counts what it is given and keeps nothing.
#![allow(dead_code)]

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ctsync_actors::fence::Claim;
use ctsync_actors::model::*;
use ctsync_actors::modules::{ModuleDef, ModuleOp};
use ctsync_actors::ports::{
    Advance, ChangeSet, InboxMessage, InboxOutcome, LoadMode, LoadStart, Opened, PendingLoad,
    Primary, QueueMessage, Replica, ReplicaRecord, Scouted,
};
use ctsync_actors::Result;

pub fn schema(name: &str) -> TableSchema {
    TableSchema {
        id: TableId::new("dbo", name),
        columns: vec![
            ColumnDef::new("Id", SqlType::BigInt, false),
            ColumnDef::new("Name", SqlType::NVarChar(Len::N(200)), true),
            ColumnDef::new(
                "Amount",
                SqlType::Decimal {
                    precision: 18,
                    scale: 2,
                },
                true,
            ),
            ColumnDef::new("Payload", SqlType::VarBinary(Len::N(64)), true),
        ],
        primary_key: vec![KeyColumn {
            name: "Id".into(),
            descending: false,
        }],
    }
}

pub fn row(id: i64) -> Row {
    vec![
        Value::I64(id),
        Value::String(format!("customer number {id} with a longer name")),
        Value::Decimal {
            value: i128::from(id) * 100 + 99,
            scale: 2,
        },
        Value::Binary(vec![(id % 251) as u8; 48]),
    ]
}

/// A primary whose one table has `rows` rows made on demand, and after
/// version 1 `changes` changed keys (new rows `rows + 1 …`) made on demand.
pub struct GeneratedPrimary {
    pub schema: TableSchema,
    pub rows: i64,
    pub changes: AtomicI64,
    pub version: AtomicI64,
    /// Change sets opened and change pages read (one request each on SQL
    /// Server).
    pub opens: AtomicU64,
    pub pages: AtomicU64,
    /// Change sets opened with keys in them, and keys read from them.
    pub backlog_opens: AtomicU64,
    pub keys_read: AtomicU64,
    /// What each change page costs the primary (the read-ahead part).
    pub page_delay: Duration,
}

impl GeneratedPrimary {
    pub fn new(schema: TableSchema, rows: i64) -> Self {
        Self {
            schema,
            rows,
            changes: AtomicI64::new(0),
            version: AtomicI64::new(1),
            opens: AtomicU64::new(0),
            pages: AtomicU64::new(0),
            backlog_opens: AtomicU64::new(0),
            keys_read: AtomicU64::new(0),
            page_delay: Duration::ZERO,
        }
    }
}

#[async_trait]
impl Primary for GeneratedPrimary {
    async fn identity(&self) -> Result<PrimaryIdentity> {
        Ok(PrimaryIdentity {
            broker_guid: "bench".into(),
            create_date: "bench".into(),
        })
    }
    async fn tracked_tables(&self) -> Result<Vec<TableId>> {
        Ok(vec![self.schema.id.clone()])
    }
    async fn table_schema(&self, _: &TableId) -> Result<TableSchema> {
        Ok(self.schema.clone())
    }
    async fn current_version(&self) -> Result<SyncVersion> {
        Ok(self.version.load(Ordering::SeqCst))
    }
    async fn min_valid_version(&self, _: &TableId) -> Result<Option<SyncVersion>> {
        Ok(Some(0))
    }
    async fn row_count(&self, _: &TableId) -> Result<u64> {
        Ok(self.rows as u64)
    }
    async fn change_retention(&self) -> Result<Option<Duration>> {
        Ok(None)
    }
    async fn modules(&self) -> Result<Vec<ModuleDef>> {
        Ok(Vec::new())
    }
    async fn read_page(
        &self,
        _: &TableSchema,
        after: Option<&RowKey>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        let start = match after.and_then(|k| k.0.first()) {
            Some(Value::I64(v)) => v + 1,
            _ => 1,
        };
        let end = (start + limit as i64 - 1).min(self.rows);
        Ok((start..=end).map(row).collect())
    }
    async fn scout(&self, tables: &[(TableId, SyncVersion)]) -> Result<Vec<Scouted>> {
        let current = self.version.load(Ordering::SeqCst);
        let changes = self.changes.load(Ordering::SeqCst);
        Ok(tables
            .iter()
            .map(|(_, since)| Scouted {
                changed: *since < current && changes > 0,
                min_valid: Some(0),
                current,
            })
            .collect())
    }
    async fn open_changes<'a>(
        &'a self,
        _: &TableSchema,
        since: SyncVersion,
        after: Option<&RowKey>,
    ) -> Result<Box<dyn ChangeSet + 'a>> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        let target = self.version.load(Ordering::SeqCst);
        let changes = if since >= target {
            0
        } else {
            self.changes.load(Ordering::SeqCst)
        };
        let next = match after.and_then(|k| k.0.first()) {
            Some(Value::I64(v)) => v + 1,
            _ => self.rows + 1,
        };
        let end = self.rows + changes;
        if end >= next {
            self.backlog_opens.fetch_add(1, Ordering::SeqCst);
        }
        Ok(Box::new(GeneratedChangeSet {
            primary: self,
            opened: Opened {
                target,
                min_valid: Some(0),
                keys: (end - next + 1).max(0) as u64,
            },
            next,
            end,
        }))
    }
}

/// Changed keys `next..=end`, made page by page.
struct GeneratedChangeSet<'a> {
    primary: &'a GeneratedPrimary,
    opened: Opened,
    next: i64,
    end: i64,
}

#[async_trait]
impl ChangeSet for GeneratedChangeSet<'_> {
    fn opened(&self) -> Opened {
        self.opened
    }
    async fn next_page(&mut self, _: &TableSchema, limit: usize) -> Result<ChangePage> {
        self.primary.pages.fetch_add(1, Ordering::SeqCst);
        if !self.primary.page_delay.is_zero() {
            tokio::time::sleep(self.primary.page_delay).await;
        }
        let start = self.next;
        let end = (start + limit as i64 - 1).min(self.end);
        self.next = end + 1;
        self.primary
            .keys_read
            .fetch_add((end - start + 1).max(0) as u64, Ordering::SeqCst);
        Ok(ChangePage {
            keys: (start..=end).map(|i| RowKey(vec![Value::I64(i)])).collect(),
            rows: (start..=end).map(row).collect(),
            next_after: (end < self.end).then(|| RowKey(vec![Value::I64(end)])),
        })
    }
}

/// A replica that counts rows and keeps none.
#[derive(Default)]
pub struct CountingReplica {
    pub rows: AtomicU64,
    pub version: AtomicI64,
    pub claims: AtomicU64,
    /// Changed keys applied, and the last version an apply recorded.
    pub changed: AtomicU64,
    pub applied: AtomicI64,
    /// The table, once a load created it.
    pub schema: std::sync::Mutex<Option<TableSchema>>,
    /// What each change page's transaction costs (the read-ahead part).
    pub apply_delay: Duration,
}

#[async_trait]
impl Replica for CountingReplica {
    async fn begin_full_load(&self, schema: &TableSchema, _: &LoadStart, _: &Claim) -> Result<()> {
        self.rows.store(0, Ordering::SeqCst);
        *self.schema.lock().unwrap_or_else(|e| e.into_inner()) = Some(schema.clone());
        Ok(())
    }
    async fn insert_rows(
        &self,
        _: &TableSchema,
        rows: &[Row],
        _: &PendingLoad,
        _: &Claim,
    ) -> Result<()> {
        self.rows.fetch_add(rows.len() as u64, Ordering::SeqCst);
        Ok(())
    }
    async fn apply_changes(&self, _: &TableSchema, batch: &ChangeBatch, _: &Claim) -> Result<()> {
        if !self.apply_delay.is_zero() {
            tokio::time::sleep(self.apply_delay).await;
        }
        self.changed
            .fetch_add(batch.keys.len() as u64, Ordering::SeqCst);
        if let Some(v) = batch.version {
            self.applied.store(v, Ordering::SeqCst);
        }
        Ok(())
    }
    async fn finish_full_load(
        &self,
        _: &TableSchema,
        version: SyncVersion,
        _: LoadMode,
        _: &Claim,
    ) -> Result<()> {
        self.version.store(version, Ordering::SeqCst);
        Ok(())
    }
    async fn cancel_load(&self, _: &TableId, _: SyncVersion, _: &Claim) -> Result<()> {
        Ok(())
    }
    async fn claim(&self, _: &TableId, _: &str) -> Result<u64> {
        Ok(self.claims.fetch_add(1, Ordering::SeqCst) + 1)
    }
    async fn advance_versions(&self, advances: &[Advance]) -> Result<Vec<TableId>> {
        Ok(advances.iter().map(|a| a.table.clone()).collect())
    }
    async fn swap_blockers(&self, _: &TableId) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    async fn schema_bound_dependents(&self, _: &TableId) -> Result<Vec<ModuleOp>> {
        Ok(Vec::new())
    }
    async fn record(&self, _: &TableId) -> Result<ReplicaRecord> {
        let version = self
            .applied
            .load(Ordering::SeqCst)
            .max(self.version.load(Ordering::SeqCst));
        Ok(ReplicaRecord {
            version: (version > 0).then_some(version),
            load: None,
            backlog: None,
            unreadable: None,
        })
    }
    async fn table_schema(&self, _: &TableId) -> Result<Option<TableSchema>> {
        Ok(self
            .schema
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone())
    }
    async fn alter_columns(&self, _: &TableId, _: &[ColumnOp], _: &Claim) -> Result<()> {
        Ok(())
    }
    async fn rename_column(&self, _: &TableId, _: &str, _: &str, _: &Claim) -> Result<()> {
        Ok(())
    }
    async fn rename_table(&self, _: &TableId, _: &TableId, _: &Claim) -> Result<()> {
        Ok(())
    }
    async fn modules(&self) -> Result<Vec<ModuleDef>> {
        Ok(Vec::new())
    }
    async fn inbox_add(&self, _: &[QueueMessage]) -> Result<()> {
        Ok(())
    }
    async fn inbox_pending(&self) -> Result<Vec<InboxMessage>> {
        Ok(Vec::new())
    }
    async fn inbox_settle(&self, _: &str, _: &InboxOutcome) -> Result<()> {
        Ok(())
    }
    async fn apply_module(&self, _: &ModuleOp) -> Result<()> {
        Ok(())
    }
}
