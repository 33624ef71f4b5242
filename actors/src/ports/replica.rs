//! The replica port: every write is one transaction, each table write
//! checked against the table's fence in that transaction; plus ctsync's own
//! record of each table and how full loads are recorded there.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{InboxMessage, InboxOutcome, QueueMessage};
use crate::error::Result;
use crate::fence::Claim;
use crate::model::{
    Backlog, ChangeBatch, ColumnOp, Row, RowKey, SyncVersion, TableId, TableSchema,
};
use crate::modules::{ModuleDef, ModuleOp};

/// What ctsync's own record on the replica (`[ctsync].[sync_versions]`)
/// says about a table. It changes only inside the transactions that change
/// the table's rows, so it always describes what the replica holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaRecord {
    /// The CT version the table's rows are complete up to; `None` while a
    /// load is pending or before the first load.
    pub version: Option<SyncVersion>,
    /// A full load that started and has not finished: the table stays
    /// "loading" until one finishes, whatever interrupts it.
    pub load: Option<PendingLoad>,
    /// An incremental backlog part-way applied (cleared by every statement
    /// that sets the version).
    pub backlog: Option<Backlog>,
    /// A cursor the record holds that cannot be read (its field above is
    /// then `None`): the core decides what that means, it never fails the
    /// read. A load cursor wins over a backlog cursor.
    pub unreadable: Option<Unreadable>,
}

/// A cursor stored in ctsync's record on the replica that cannot be
/// decoded: a hand-edited row, or one written by a ctsync that records it
/// in another form (a newer or older version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub cursor: CursorKind,
    /// Why it cannot be read (the decoder's words).
    pub error: String,
}

/// Which cursor of the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CursorKind {
    /// The pending full load's ([`PendingLoad`]).
    Load,
    /// The incremental backlog's ([`Backlog`]).
    Backlog,
}

impl CursorKind {
    /// As in logs and the metric's `cursor` label.
    pub fn as_str(self) -> &'static str {
        match self {
            CursorKind::Load => "load",
            CursorKind::Backlog => "backlog",
        }
    }
}

/// An idle table's stored version moved forward by the poll's batch (see
/// [`Replica::advance_versions`]): nothing changed on the primary between
/// `from` and `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advance {
    pub table: TableId,
    /// The owner's claim: a table whose claim is no longer current stays.
    pub claim: Claim,
    pub from: SyncVersion,
    pub to: SyncVersion,
}

/// Where a full load writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadMode {
    /// Into `[ctsync].[shadow_…]`, swapped with the live table at the end:
    /// readers keep the old complete table until the new one replaces it.
    #[default]
    Shadow,
    /// Into the live table, emptied first (when something blocks the swap,
    /// or the live table does not exist yet).
    InPlace,
}

/// A full load in progress, recorded on the replica with every committed
/// page (its cursor), so an interrupted load resumes where it stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PendingLoad {
    /// `mssql_sync:version:<T>` when the load started (what ctsync last
    /// wrote there). A different value found later was set by an operator
    /// by hand and cancels the load (the original tool's manual-snapshot
    /// flow); the same value, or none, means the load must go on.
    pub replaced_version: Option<SyncVersion>,
    /// `CHANGE_TRACKING_CURRENT_VERSION()` read before the first row: the
    /// version stored when the load finishes.
    pub start_version: SyncVersion,
    /// Key of the last row committed; `None` before the first page.
    pub cursor: Option<RowKey>,
    /// Rows committed so far, and the primary's row count at the start.
    pub rows: u64,
    pub total: u64,
    /// Unix ms.
    pub started_at: u64,
    pub mode: LoadMode,
    /// Why the load runs in place (e.g. the objects blocking the swap).
    pub in_place_reason: Option<String>,
    /// `force_full_load` was "true" when the load started.
    pub forced: bool,
    /// `mssql_sync:force_requests:<T>` when the load started: a higher
    /// count is a new request (API, CLI) and restarts the load from row 0.
    pub requests_seen: u64,
    /// Times this load started over because CT cleanup passed its start
    /// version before it finished.
    pub expired_restarts: u32,
}

impl PendingLoad {
    /// The table the load writes into.
    pub fn target(&self, table: &TableId) -> TableId {
        match self.mode {
            LoadMode::Shadow => table.shadow(),
            LoadMode::InPlace => table.clone(),
        }
    }
}

/// How a full load begins on the replica.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadStart {
    /// The load's first record (no cursor yet).
    pub load: PendingLoad,
    /// In place: drop (if present) and create the live table from the
    /// primary's schema in the same transaction, instead of emptying it.
    pub recreate: bool,
}

/// The replica database. Every method is one transaction. Each method that
/// writes a table's rows, schema or record takes its owner's [`Claim`] and
/// checks it against `[ctsync].[fence]` inside the same transaction,
/// failing with [`crate::Error::Fenced`] unless it is the table's current
/// claim (see [`crate::fence`]).
#[async_trait]
pub trait Replica: Send + Sync {
    /// Starts a full load and records it as pending, in one transaction: in
    /// place, empties the live table (or recreates it, with its schema if
    /// missing); as a shadow load, (re)creates the empty shadow table from
    /// the primary's schema and leaves the live table alone.
    async fn begin_full_load(
        &self,
        schema: &TableSchema,
        start: &LoadStart,
        claim: &Claim,
    ) -> Result<()>;
    /// Inserts one page into the load's target and records `load` (its new
    /// cursor and row count), in one transaction.
    async fn insert_rows(
        &self,
        schema: &TableSchema,
        rows: &[Row],
        load: &PendingLoad,
        claim: &Claim,
    ) -> Result<()>;
    /// Deletes every key, inserts every row, and records `batch.version` if
    /// set, all in one transaction.
    async fn apply_changes(
        &self,
        schema: &TableSchema,
        batch: &ChangeBatch,
        claim: &Claim,
    ) -> Result<()>;
    /// Finishes a load: a shadow load is swapped with the live table (what
    /// operators added to the live table carried over); then `version` is
    /// recorded and the pending load cleared, in one transaction.
    async fn finish_full_load(
        &self,
        schema: &TableSchema,
        version: SyncVersion,
        mode: LoadMode,
        claim: &Claim,
    ) -> Result<()>;
    /// An operator set the version by hand during a pending load: records
    /// `version`, clears the load and drops its shadow table, if any.
    async fn cancel_load(&self, table: &TableId, version: SyncVersion, claim: &Claim)
        -> Result<()>;
    /// Moves idle tables' recorded versions in one transaction, each on
    /// its own terms: a table moves from `from` to `to` only while its
    /// claim is the current one, its record says `from` and no load or
    /// backlog is pending; the others stay as they are and do not abort
    /// the rest. Returns the tables moved.
    async fn advance_versions(&self, advances: &[Advance]) -> Result<Vec<TableId>>;
    /// What would block swapping a shadow table with the live one, or keep
    /// something operators added to the live table from being carried over
    /// (each named); empty when a shadow load can be used.
    async fn swap_blockers(&self, table: &TableId) -> Result<Vec<String>>;
    /// The modules bound to the table by `WITH SCHEMABINDING`, as the drops
    /// that free it (SQL Server refuses to drop a table they reference).
    async fn schema_bound_dependents(&self, table: &TableId) -> Result<Vec<ModuleOp>>;
    /// ctsync's record of the table.
    async fn record(&self, table: &TableId) -> Result<ReplicaRecord>;
    /// The table as the replica's catalog has it; `None` if it does not exist.
    async fn table_schema(&self, table: &TableId) -> Result<Option<TableSchema>>;
    /// Applies column changes to the table, in order, in one transaction.
    async fn alter_columns(&self, table: &TableId, ops: &[ColumnOp], claim: &Claim) -> Result<()>;
    async fn rename_column(
        &self,
        table: &TableId,
        from: &str,
        to: &str,
        claim: &Claim,
    ) -> Result<()>;
    /// Renames the table (same schema) and its version record; `claim` is
    /// the owner's claim on `from`.
    async fn rename_table(&self, from: &TableId, to: &TableId, claim: &Claim) -> Result<()>;
    /// Claims the table for `owner` in `[ctsync].[fence]`: the table's
    /// token goes up by one and (owner, token) is recorded, in one
    /// transaction; returns the new token. From then on only writes under
    /// exactly this claim pass; every earlier owner's are refused.
    async fn claim(&self, table: &TableId, owner: &str) -> Result<u64>;
    /// The replica's views, procedures, functions and triggers.
    async fn modules(&self) -> Result<Vec<ModuleDef>>;
    /// Records received DDL messages in the inbox (`[ctsync].[ddl_inbox]`),
    /// in one transaction; a message already there (same id) is skipped.
    async fn inbox_add(&self, messages: &[QueueMessage]) -> Result<()>;
    /// The inbox's pending messages, oldest first.
    async fn inbox_pending(&self) -> Result<Vec<InboxMessage>>;
    /// Records what became of an inbox message.
    async fn inbox_settle(&self, id: &str, outcome: &InboxOutcome) -> Result<()>;
    /// Creates, alters or drops one module (each CREATE is its own batch).
    async fn apply_module(&self, op: &ModuleOp) -> Result<()>;
}
