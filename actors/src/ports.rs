//! The three ports the pipeline talks to: the primary (CT reads), the replica
//! (transactional writes and its own version record) and the state store
//! (operator flags and versions). Adapters live in the root crate; in-memory
//! doubles live in `memory` (feature `testkit`).

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ddl::ParkedDdl;
use crate::error::Result;
use crate::fence::Claim;
use crate::model::{
    Backlog, ChangeBatch, ChangePage, ColumnOp, PrimaryIdentity, Row, RowKey, SyncVersion, TableId,
    TableSchema,
};
use crate::modules::{ModuleDef, ModuleOp};

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
    /// What would block swapping a shadow table with the live one, or keep
    /// something operators added to the live table from being carried over
    /// (each named); empty when a shadow load can be used.
    /// Moves idle tables' recorded versions in one transaction, each on
    /// its own terms: a table moves from `from` to `to` only while its
    /// claim is the current one, its record says `from` and no load or
    /// backlog is pending; the others stay as they are and do not abort
    /// the rest. Returns the tables moved.
    async fn advance_versions(&self, advances: &[Advance]) -> Result<Vec<TableId>>;
    async fn swap_blockers(&self, table: &TableId) -> Result<Vec<String>>;
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

/// One message received from the DDL queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// `conversation_handle:message_sequence_number`: unique per message,
    /// so recording a message twice (a receive rolled back and delivered
    /// again) keeps one copy.
    pub id: String,
    /// The conversation the message belongs to (`conversation_handle`).
    pub conversation: String,
    pub message_type: String,
    /// The message body as text: EVENTDATA XML for event notifications; a
    /// body that is not XML comes as `0x…` hex, to be parked as it is.
    pub body: Option<String>,
}

/// The Service Broker queue of DDL events (`SyncDDLQueue`). `receive`
/// opens a transaction that `commit` ends once the messages are recorded in
/// the inbox. It is rolled back only when the inbox could not record them
/// (the listener then stops receiving until the inbox answers), so a
/// message is never lost and poison-message detection is never fed by a
/// message ctsync cannot handle.
#[async_trait]
pub trait DdlQueue: Send + Sync {
    /// Waits up to `wait` for up to `max` messages, inside a transaction.
    async fn receive(&self, max: usize, wait: std::time::Duration) -> Result<Vec<QueueMessage>>;
    /// Ends a conversation whose far end failed or closed (inside the open
    /// receive transaction).
    async fn end_conversation(&self, conversation: &str) -> Result<()>;
    /// Commits the open receive: its messages leave the queue.
    async fn commit(&self) -> Result<()>;
    /// Rolls the open receive back: its messages return to the queue.
    async fn rollback(&self) -> Result<()>;
}

/// A DDL message recorded in the replica's inbox, waiting to be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxMessage {
    pub message: QueueMessage,
    /// Failed attempts to apply it so far.
    pub attempts: u32,
}

/// What became of an inbox message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxOutcome {
    /// Applied or deliberately ignored: it leaves the inbox.
    Done,
    /// Failed; it stays pending for another attempt.
    Retry(String),
    /// Cannot be applied: it stays in the inbox as parked, with the error.
    Parked(String),
}

/// Operator switches for one table (`mssql_sync:enabled:<T>`,
/// `mssql_sync:force_full_load:<T>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFlags {
    pub enabled: bool,
    pub force_full_load: bool,
    /// `mssql_sync:force_requests:<T>`: Force Load requests made through
    /// the API or CLI (each one counts, even while the flag is "true").
    pub force_requests: u64,
}

/// Full-load progress, also written to `mssql_sync:progress:<T>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadProgress {
    pub synced: u64,
    pub total: u64,
    /// Unix milliseconds.
    pub started_at: u64,
    pub updated_at: u64,
    /// Rows already copied when an interrupted load resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_at: Option<u64>,
}

/// Whether the store still had ctsync's marker key (`mssql_sync:marker`).
/// The marker is created once and never deleted by ctsync, so finding it
/// gone means the store lost its data (FLUSHALL, a restart without
/// persistence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Present,
    /// It was missing and has just been created.
    Created,
}

/// The keys a table's cycle reads (`StateStore::cycle_keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleKeys {
    pub flags: TableFlags,
    pub version: Option<SyncVersion>,
    pub identity: Option<PrimaryIdentity>,
}

/// Where flags, versions and progress live (Redis in production).
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Creates both flags of every table as `"false"` unless they exist
    /// (never overwrites), and the marker key, in one round trip.
    async fn ensure_flags(&self, tables: &[TableId]) -> Result<Marker>;
    /// Sets plain keys ctsync publishes for operators (the sanitized
    /// endpoints `mssql_sync:config:*`).
    async fn publish(&self, pairs: &[(String, String)]) -> Result<()>;
    async fn flags(&self, table: &TableId) -> Result<TableFlags>;
    /// What one cycle of `table` reads, in one round trip: its flags, its
    /// version and the identity of the primary it was synced from.
    async fn cycle_keys(&self, table: &TableId) -> Result<CycleKeys> {
        Ok(CycleKeys {
            flags: self.flags(table).await?,
            version: self.version(table).await?,
            identity: self.primary_identity(table).await?,
        })
    }
    async fn set_enabled(&self, table: &TableId, enabled: bool) -> Result<()>;
    async fn set_force_full_load(&self, table: &TableId, force: bool) -> Result<()>;
    /// A Force Load request from the API or CLI: sets the flag to "true"
    /// and counts the request, so a load already running starts over.
    async fn request_full_load(&self, table: &TableId) -> Result<()>;
    async fn version(&self, table: &TableId) -> Result<Option<SyncVersion>>;
    /// Sets `mssql_sync:version:<T>` if `claim` still holds the table's
    /// lease (else [`crate::Error::Fenced`], nothing written); the same
    /// check guards every write of a table's state below.
    async fn set_version(&self, table: &TableId, version: SyncVersion, claim: &Claim)
        -> Result<()>;
    /// Stores the version and the primary identity in one atomic step, and
    /// in the same step resets `force_full_load` to `"false"` only if it
    /// still says what the load read at its start (`forced`): a request
    /// made during a load that started unforced is kept, so another load
    /// follows.
    async fn finish_full_load(
        &self,
        table: &TableId,
        version: SyncVersion,
        identity: &PrimaryIdentity,
        forced: bool,
        claim: &Claim,
    ) -> Result<()>;
    /// The identity of the primary this table was synced from.
    async fn primary_identity(&self, table: &TableId) -> Result<Option<PrimaryIdentity>>;
    async fn set_primary_identity(
        &self,
        table: &TableId,
        identity: &PrimaryIdentity,
        claim: &Claim,
    ) -> Result<()>;
    async fn set_progress(
        &self,
        table: &TableId,
        progress: &LoadProgress,
        claim: &Claim,
    ) -> Result<()>;
    /// Appends a DDL message that could not be applied to
    /// `mssql_sync:ddl_failed`.
    async fn park_ddl(&self, entry: &ParkedDdl) -> Result<()>;
    /// Moves the table's keys (flags, version, identity, progress) to its
    /// new name; `claim` is the owner's claim on `from`.
    async fn rename_table(&self, from: &TableId, to: &TableId, claim: &Claim) -> Result<()>;

    /// Registers `instance` as live for `ttl` (its heartbeat) and returns
    /// every live instance, sorted, in one round trip.
    async fn heartbeat(&self, instance: &str, ttl: Duration) -> Result<Vec<String>>;
    /// Removes `instance` from the live ones (graceful stop).
    async fn leave(&self, instance: &str) -> Result<()>;
    /// Takes each free lease and renews each one `owner` holds, for `ttl`,
    /// in one atomic round trip; says per lease what happened.
    async fn acquire_leases(
        &self,
        leases: &[String],
        owner: &str,
        ttl: Duration,
    ) -> Result<Vec<LeaseGrant>>;
    /// Records `claim` in a lease its owner holds (keeping its TTL), so the
    /// writes of the table's state can check it; `false`: not held.
    async fn set_lease_claim(&self, lease: &str, claim: &Claim) -> Result<bool>;
    /// Gives back the leases `owner` holds among `leases`.
    async fn release_leases(&self, leases: &[String], owner: &str) -> Result<()>;
    /// Publishes the statuses of the tables `instance` runs (JSON), for
    /// `ttl` (`mssql_sync:status:<instance>`).
    async fn publish_status(&self, instance: &str, json: &str, ttl: Duration) -> Result<()>;
    /// Every live instance's published statuses: (instance, JSON), in one
    /// round trip.
    async fn statuses(&self) -> Result<Vec<(String, String)>>;
    /// The operator keys of many tables in one round trip (the page and
    /// API): per table, its flags and its version key's raw value (read
    /// with [`crate::keys::parse_version`], so one bad value is that
    /// table's error only).
    async fn table_keys(&self, tables: &[TableId]) -> Result<Vec<(TableFlags, Option<String>)>>;

    /// The first round trip of a discovery: with `new` (the primary was
    /// listed), creates the flags of those tables (SET NX, as
    /// [`Self::ensure_flags`]) and the marker; renews `instance`'s
    /// heartbeat. Returns the marker (`None` without `new`) and the live
    /// instances.
    async fn discovery_start(
        &self,
        new: Option<&[TableId]>,
        instance: &str,
        ttl: Duration,
    ) -> Result<(Option<Marker>, Vec<String>)> {
        let marker = match new {
            Some(tables) => Some(self.ensure_flags(tables).await?),
            None => None,
        };
        Ok((marker, self.heartbeat(instance, ttl).await?))
    }
    /// The second round trip of a discovery: takes or renews `leases` (as
    /// [`Self::acquire_leases`]), publishes `owner`'s statuses (as
    /// [`Self::publish_status`]) and moves the versions of `advances` (as
    /// [`Self::advance_versions`]): the grants and the tables moved.
    async fn discovery_finish(
        &self,
        leases: &[String],
        owner: &str,
        ttl: Duration,
        statuses: &str,
        advances: &[Advance],
    ) -> Result<(Vec<LeaseGrant>, Vec<TableId>)> {
        let grants = self.acquire_leases(leases, owner, ttl).await?;
        self.publish_status(owner, statuses, ttl).await?;
        Ok((grants, self.advance_versions(advances).await?))
    }
    /// Moves each table's version key from `from` to `to` where the
    /// table's lease still holds the claim and the key still says `from`
    /// (read as a number); the others stay. Returns the tables moved.
    async fn advance_versions(&self, advances: &[Advance]) -> Result<Vec<TableId>> {
        let mut moved = Vec::new();
        for a in advances {
            if self.version(&a.table).await? != Some(a.from) {
                continue;
            }
            match self.set_version(&a.table, a.to, &a.claim).await {
                Ok(()) => moved.push(a.table.clone()),
                Err(crate::Error::Fenced { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }
    /// [`Self::statuses`] and [`Self::table_keys`] of `tables` in one round
    /// trip (the page and API).
    async fn statuses_and_keys(
        &self,
        tables: &[TableId],
    ) -> Result<(Vec<(String, String)>, Vec<(TableFlags, Option<String>)>)> {
        Ok((self.statuses().await?, self.table_keys(tables).await?))
    }
}

/// What asking for a lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseGrant {
    /// It was free: the asker holds it now (with no claim yet).
    Acquired,
    /// The asker held it; its TTL starts again.
    Renewed,
    /// Another instance holds it (its lease value: `<owner> <token>`).
    Held(String),
}

impl LeaseGrant {
    pub fn holds(&self) -> bool {
        matches!(self, LeaseGrant::Acquired | LeaseGrant::Renewed)
    }
}
