//! The table owner's sink: the only way to write a table. It exists only
//! with a [`Claim`] (made by `SinkHandle::fenced`), which every table write
//! it sends carries; there is no table write without one.

use std::sync::Arc;

use super::actor::{TableOp, TableWrite};
use super::SinkHandle;
use crate::error::Result;
use crate::fence::Claim;
use crate::model::{ChangeBatch, ColumnOp, Row, SyncVersion, TableId, TableSchema};
use crate::modules::ModuleOp;
use crate::ports::{LoadMode, LoadStart, PendingLoad, ReplicaRecord};

/// A [`SinkHandle`] with the claim of the table owner that writes through
/// it: its table writes and the reads that decide them.
#[derive(Clone)]
pub struct OwnerSink {
    sink: SinkHandle,
    claim: Claim,
}

impl OwnerSink {
    pub(super) fn new(sink: SinkHandle, claim: Claim) -> Self {
        Self { sink, claim }
    }

    /// The claim this sink writes under (also what the owner's Redis
    /// writes of the table's state are checked against).
    pub fn claim(&self) -> &Claim {
        &self.claim
    }

    /// Sends one table write under the claim; answered once committed.
    async fn write(&self, op: TableOp) -> Result<()> {
        let queued = self.sink.order.queue(&op.tables());
        let claim = self.claim.clone();
        self.sink.send(TableWrite { claim, op, queued }).await
    }

    pub async fn begin_full_load(&self, schema: Arc<TableSchema>, start: LoadStart) -> Result<()> {
        self.write(TableOp::BeginFullLoad(schema, start)).await
    }

    pub async fn insert_rows(
        &self,
        schema: Arc<TableSchema>,
        rows: Vec<Row>,
        load: PendingLoad,
    ) -> Result<()> {
        self.write(TableOp::InsertRows(schema, rows, load)).await
    }

    pub async fn apply(&self, schema: Arc<TableSchema>, batch: ChangeBatch) -> Result<()> {
        self.write(TableOp::Apply(schema, batch)).await
    }

    pub async fn finish_full_load(
        &self,
        schema: Arc<TableSchema>,
        version: SyncVersion,
        mode: LoadMode,
    ) -> Result<()> {
        self.write(TableOp::FinishFullLoad(schema, version, mode))
            .await
    }

    pub async fn cancel_load(&self, table: TableId, version: SyncVersion) -> Result<()> {
        self.write(TableOp::CancelLoad(table, version)).await
    }

    pub async fn alter_columns(&self, table: TableId, ops: Vec<ColumnOp>) -> Result<()> {
        self.write(TableOp::AlterColumns(table, ops)).await
    }

    pub async fn rename_column(&self, table: TableId, from: String, to: String) -> Result<()> {
        self.write(TableOp::RenameColumn(table, from, to)).await
    }

    pub async fn rename_table(&self, from: TableId, to: TableId) -> Result<()> {
        self.write(TableOp::RenameTable(from, to)).await
    }

    /// See [`SinkHandle::record`].
    pub async fn record(&self, table: TableId) -> Result<ReplicaRecord> {
        self.sink.record(table).await
    }

    /// See [`SinkHandle::replica_schema`].
    pub async fn replica_schema(&self, table: TableId) -> Result<Option<TableSchema>> {
        self.sink.replica_schema(table).await
    }

    /// See [`SinkHandle::swap_blockers`].
    pub async fn swap_blockers(&self, table: TableId) -> Result<Vec<String>> {
        self.sink.swap_blockers(table).await
    }

    /// See [`SinkHandle::schema_bound_dependents`].
    pub async fn schema_bound_dependents(&self, table: TableId) -> Result<Vec<ModuleOp>> {
        self.sink.schema_bound_dependents(table).await
    }

    /// Drops one module (module sync creates it again from the primary);
    /// not fenced: modules belong to no table.
    pub async fn drop_module(&self, op: ModuleOp) -> Result<()> {
        self.sink.apply_module(op).await
    }
}
