//! The primary port: the source database, read-only — its catalog, CT
//! versions, full-load pages and the change sets of incremental cycles.

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{ChangePage, PrimaryIdentity, Row, RowKey, SyncVersion, TableId, TableSchema};
use crate::modules::ModuleDef;

/// The primary database, read-only.
#[async_trait]
pub trait Primary: Send + Sync {
    /// Broker GUID and create date: changes when the database is restored or
    /// replaced.
    async fn identity(&self) -> Result<PrimaryIdentity>;
    /// Tables with change tracking enabled.
    async fn tracked_tables(&self) -> Result<Vec<TableId>>;
    async fn table_schema(&self, table: &TableId) -> Result<TableSchema>;
    /// `CHANGE_TRACKING_CURRENT_VERSION()`.
    async fn current_version(&self) -> Result<SyncVersion>;
    /// `CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(table))`; `None` is SQL NULL.
    async fn min_valid_version(&self, table: &TableId) -> Result<Option<SyncVersion>>;
    async fn row_count(&self, table: &TableId) -> Result<u64>;
    /// Views, procedures, functions and triggers (`sys.sql_modules`).
    async fn modules(&self) -> Result<Vec<ModuleDef>>;
    /// The database's CT retention period; `None` when auto cleanup is off
    /// (changes are then never removed).
    async fn change_retention(&self) -> Result<Option<std::time::Duration>>;
    /// Up to `limit` rows ordered by the key columns, strictly after `after`.
    async fn read_page(
        &self,
        schema: &TableSchema,
        after: Option<&RowKey>,
        limit: usize,
    ) -> Result<Vec<Row>>;
    /// The change set of a cycle: reads the current version, then copies
    /// the keys changed since `since` (and after `after`, when continuing a
    /// backlog) once, on a session the set keeps, and reads the min valid
    /// version after the copy. Its pages are read from that copy, so a
    /// backlog of B changes costs B once, not once per page. Nothing is
    /// copied when `since` is below the min valid version or above the
    /// current version (the caller holds the table stale).
    async fn open_changes<'a>(
        &'a self,
        schema: &TableSchema,
        since: SyncVersion,
        after: Option<&RowKey>,
    ) -> Result<Box<dyn ChangeSet + 'a>>;
    /// For each of `tables` (with its stored version), in order: whether it
    /// has changes after that version, its min valid version, and the
    /// current version read before its check. One poll's look at every idle
    /// table at once (SQL Server: a few hundred tables per query).
    async fn scout(&self, tables: &[(TableId, SyncVersion)]) -> Result<Vec<Scouted>> {
        let mut out = Vec::with_capacity(tables.len());
        for (table, since) in tables {
            let current = self.current_version().await?;
            let min_valid = self.min_valid_version(table).await?;
            let schema = self.table_schema(table).await?;
            let changed = self
                .open_changes(&schema, *since, None)
                .await?
                .opened()
                .keys
                > 0;
            out.push(Scouted {
                changed,
                min_valid,
                current,
            });
        }
        Ok(out)
    }
}

/// What the scout found for one table (see [`Primary::scout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scouted {
    /// Some change after the stored version exists.
    pub changed: bool,
    /// `None` is SQL NULL (CT is off or the table is gone).
    pub min_valid: Option<SyncVersion>,
    /// `CHANGE_TRACKING_CURRENT_VERSION()` read before the check: with no
    /// change, the table is complete up to it.
    pub current: SyncVersion,
}

/// What a change set's open found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// `CHANGE_TRACKING_CURRENT_VERSION()` read before the copy: every
    /// change up to it is in the set.
    pub target: SyncVersion,
    /// The table's min valid version read after the copy; `None` is SQL
    /// NULL (CT is off or the table is gone).
    pub min_valid: Option<SyncVersion>,
    /// How many changed keys the set holds.
    pub keys: u64,
}

/// The keys changed since a version, copied once (see
/// [`Primary::open_changes`]), read page by page in key order.
#[async_trait]
pub trait ChangeSet: Send {
    fn opened(&self) -> Opened;
    /// The next up to `limit` keys, each with its current row if it still
    /// exists; `next_after` is `None` on the last page. A page read checks
    /// the table's columns against `schema` (the cached ones): a change
    /// fails it with [`crate::Error::ColumnsChanged`].
    async fn next_page(&mut self, schema: &TableSchema, limit: usize) -> Result<ChangePage>;
}
