//! In-memory replica: each port call is one all-or-nothing transaction (work
//! is done on a copy, or with an undo log, that stands only on success) and
//! duplicate keys are rejected like a PRIMARY KEY constraint. Faults are
//! injected around it (`memory::faults`); only a bulk load failing part-way
//! strikes inside a transaction (`replica_paths`), and a recorded cursor
//! can be made unreadable (`corrupt_cursor`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::faults::FaultPlan;
use super::replica_load;
use super::replica_paths::PageRows;
use super::replica_table::{alter, references, RowEdits};
use super::replica_tx::Tx;
use crate::error::{Error, Result};
use crate::fence::{refused, CheckedBy, Claim};
use crate::model::{ChangeBatch, ColumnOp, Row, SyncVersion, TableId, TableSchema};
use crate::modules::{ModuleDef, ModuleOp};
use crate::ports::{
    Advance, CursorKind, InboxMessage, InboxOutcome, LoadMode, LoadStart, PendingLoad,
    QueueMessage, Replica, ReplicaRecord, Unreadable,
};
use crate::write_path::{RowPath, WritePaths};

#[derive(Debug, Default)]
struct Data {
    tables: BTreeMap<TableId, super::replica_table::Table>,
    records: BTreeMap<TableId, ReplicaRecord>,
    modules: BTreeMap<(String, String), ModuleDef>,
    /// Successful module writes (create, alter, drop).
    module_writes: usize,
    /// Each `insert_rows` waits this long first (demo: visible progress).
    insert_delay: std::time::Duration,
    /// Each call of these methods waits this long first (a swap waiting on
    /// a reader's lock, a long ALTER): other work meets it under way.
    statement_delays: BTreeMap<&'static str, std::time::Duration>,
    /// `insert_rows` calls under way now, and the most ever seen at once.
    in_flight: usize,
    max_in_flight: usize,
    /// The DDL inbox: messages with their attempts and parked error.
    inbox: Vec<(InboxMessage, Option<String>)>,
    /// Full loads started per table (`begin_full_load` calls that committed).
    loads_started: BTreeMap<TableId, usize>,
    /// When a forced full load last finished per table (tokio's clock).
    forced_finishes: BTreeMap<TableId, tokio::time::Instant>,
    /// The mode and in-place reason of each of them.
    load_starts: BTreeMap<TableId, Vec<(LoadMode, Option<String>)>>,
    /// Shadow tables swapped in per table.
    swaps: BTreeMap<TableId, usize>,
    /// `[ctsync].[fence]`: each table's current claim.
    fences: BTreeMap<TableId, Claim>,
    /// The token of every committed table write, in commit order, per table.
    commit_tokens: BTreeMap<TableId, Vec<u64>>,
    /// Table writes refused by the fence.
    fenced_commits: usize,
    /// Columns the replica reports with another type than it holds (a
    /// server that cannot represent a type exactly, e.g. time(7) as
    /// time(6)).
    misreported: BTreeMap<(TableId, String), crate::model::SqlType>,
    /// The path of every committed page that inserted rows, per table.
    row_paths: BTreeMap<TableId, Vec<RowPath>>,
    /// Inserts refused for a duplicate key (ctsync deletes before it
    /// inserts and loads into emptied tables: never one, unless a write
    /// left part of itself behind).
    duplicate_keys: usize,
    /// Recorded cursors whose stored text cannot be read, until a write
    /// records that cursor again (the record keeps what they meant).
    corrupt: BTreeSet<(TableId, CursorKind)>,
    /// Record reads that found a cursor unreadable.
    unreadable_reads: usize,
    /// A reader's shared lock on a table (`hold_lock_by_hand`): how much
    /// longer it is held. The double has no clock of its own: the time
    /// passes only while a schema change (a swap, a table rename) waits
    /// for the lock, each at most [`SCHEMA_LOCK_TIMEOUT`].
    reader_locks: BTreeMap<TableId, std::time::Duration>,
    /// Schema changes of each table that gave up behind a reader's lock.
    lock_timeouts: BTreeMap<TableId, usize>,
}

/// How long a swap or a table rename waits for its schema-modification
/// lock, as the SQL Server adapter bounds it (`SET LOCK_TIMEOUT 30000`);
/// past it the change fails, rolled back whole (Msg 1222).
pub const SCHEMA_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Data {
    /// A committed write of `table` recorded `cursors` anew.
    fn rewrote(&mut self, table: &TableId, cursors: &[CursorKind]) {
        for c in cursors {
            self.corrupt.remove(&(table.clone(), *c));
        }
    }
}

/// Each cursor a transaction records anew: what a load's start or finish
/// writes (both columns), a load page (its cursor), a change page (the
/// backlog, recorded or cleared).
const LOAD_AND_BACKLOG: &[CursorKind] = &[CursorKind::Load, CursorKind::Backlog];

/// Lets a write transaction of `table` under `claim` begin: refused unless
/// the claim is the table's current one.
fn admit(data: &mut Data, table: &TableId, claim: &Claim) -> Result<()> {
    if data.fences.get(table) != Some(claim) {
        data.fenced_commits += 1;
        let current = data.fences.get(table).map(Claim::lease_value);
        return Err(refused(
            table,
            claim,
            CheckedBy::Replica,
            current.as_deref(),
        ));
    }
    Ok(())
}

#[derive(Debug, Default)]
pub struct MemoryReplica {
    data: Mutex<Data>,
    /// What `doctor` is told about the replica.
    doctor: Mutex<crate::doctor::ReplicaFacts>,
    /// Bulk copy or INSERT per table, as the SQL Server adapter chooses,
    /// for each writer (a claim's owner: one process) on its own.
    paths: Mutex<BTreeMap<String, Arc<WritePaths>>>,
    /// The faults that strike inside its transactions (bulk loads).
    inner_faults: Mutex<Option<Arc<FaultPlan>>>,
}

impl MemoryReplica {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From now on bulk loads meet the [`crate::memory::faults::Site::ReplicaBulk`]
    /// rules of `plan` (part-way through a page's rows).
    pub fn set_inner_faults(&self, plan: Arc<FaultPlan>) {
        *self.inner_faults.lock().unwrap_or_else(|e| e.into_inner()) = Some(plan);
    }

    fn inner_faults(&self) -> Option<Arc<FaultPlan>> {
        self.inner_faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The path of every committed page of `id` that inserted rows, in
    /// commit order.
    pub fn row_paths(&self, id: &TableId) -> Vec<RowPath> {
        self.lock().row_paths.get(id).cloned().unwrap_or_default()
    }

    /// Record reads so far that found a cursor unreadable.
    pub fn unreadable_reads(&self) -> usize {
        self.lock().unreadable_reads
    }

    /// Inserts refused for a duplicate key so far.
    pub fn duplicate_key_refusals(&self) -> usize {
        self.lock().duplicate_keys
    }

    /// Makes the table's recorded `cursor` unreadable (a hand-edited row, a
    /// value another ctsync version wrote), until a write records it anew;
    /// `false` if the table has no such cursor now.
    pub fn corrupt_cursor(&self, id: &TableId, cursor: CursorKind) -> bool {
        let mut data = self.lock();
        let record = data.records.get(id);
        let held = match cursor {
            CursorKind::Load => record.is_some_and(|r| r.load.is_some()),
            CursorKind::Backlog => record.is_some_and(|r| r.backlog.is_some()),
        };
        if held {
            data.corrupt.insert((id.clone(), cursor));
        }
        held
    }

    /// Makes every `insert_rows` (full-load page) wait `delay` first.
    pub fn set_insert_delay(&self, delay: std::time::Duration) {
        self.lock().insert_delay = delay;
    }

    /// Makes every call of `method` (`finish_full_load`, `alter_columns`,
    /// `rename_column`, `rename_table`) wait `delay` before it takes effect.
    pub fn set_statement_delay(&self, method: &'static str, delay: std::time::Duration) {
        self.lock().statement_delays.insert(method, delay);
    }

    async fn statement_delay(&self, method: &'static str) {
        let delay = self.lock().statement_delays.get(method).copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
    }

    /// The most `insert_rows` calls that were ever under way at once (the
    /// SinkActor promises one).
    pub fn max_concurrent_inserts(&self) -> usize {
        self.lock().max_in_flight
    }

    /// The replica's modules by `schema.name`.
    pub fn module_names(&self) -> Vec<String> {
        self.lock()
            .modules
            .values()
            .map(|m| m.qualified())
            .collect()
    }

    /// How many module writes succeeded so far.
    pub fn module_writes(&self) -> usize {
        self.lock().module_writes
    }

    pub fn module(&self, schema: &str, name: &str) -> Option<ModuleDef> {
        self.lock()
            .modules
            .get(&(schema.to_string(), name.to_string()))
            .cloned()
    }

    pub fn has_table(&self, id: &TableId) -> bool {
        self.lock().tables.contains_key(id)
    }

    pub fn schema(&self, id: &TableId) -> Option<TableSchema> {
        self.lock().tables.get(id).map(|t| t.schema.clone())
    }

    /// The table's rows by key (for `verify`).
    pub fn row_map(&self, id: &TableId) -> BTreeMap<crate::model::RowKey, Row> {
        self.lock()
            .tables
            .get(id)
            .map(|t| t.rows.clone())
            .unwrap_or_default()
    }

    /// Changes one row behind ctsync's back (a test's drift).
    pub fn tamper(&self, id: &TableId, key: &crate::model::RowKey, row: Option<Row>) {
        if let Some(t) = self.lock().tables.get_mut(id) {
            match row {
                Some(r) => t.rows.insert(key.clone(), r),
                None => t.rows.remove(key),
            };
        }
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
        self.lock().records.get(id).and_then(|r| r.version)
    }

    /// Inbox messages parked (id, error).
    pub fn inbox_parked(&self) -> Vec<(String, String)> {
        self.lock()
            .inbox
            .iter()
            .filter_map(|(m, e)| e.clone().map(|e| (m.message.id.clone(), e)))
            .collect()
    }

    /// Inbox messages still waiting to be applied.
    pub fn inbox_len(&self) -> usize {
        self.lock()
            .inbox
            .iter()
            .filter(|(_, e)| e.is_none())
            .count()
    }

    /// How many full loads of the table started (committed their first step).
    pub fn loads_started(&self, id: &TableId) -> usize {
        self.lock().loads_started.get(id).copied().unwrap_or(0)
    }

    /// When a forced full load of `id` last finished here (its Redis step,
    /// which resets the flag, comes after).
    pub fn last_forced_finish(&self, id: &TableId) -> Option<tokio::time::Instant> {
        self.lock().forced_finishes.get(id).copied()
    }

    /// The replica's whole record of the table (version and pending load),
    /// as ctsync meant it (a corrupt cursor included: see
    /// [`Self::corrupt_cursor`]).
    pub fn table_record(&self, id: &TableId) -> ReplicaRecord {
        self.lock().records.get(id).cloned().unwrap_or_default()
    }

    /// Drops the table, as an operator might by hand (its record stays).
    pub fn drop_table_by_hand(&self, id: &TableId) {
        self.lock().tables.remove(id);
    }

    /// The token of every committed write of the table, in commit order.
    pub fn commit_tokens(&self, id: &TableId) -> Vec<u64> {
        self.lock()
            .commit_tokens
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    /// Table writes the fence refused so far.
    pub fn fenced_commits(&self) -> usize {
        self.lock().fenced_commits
    }

    /// The table's current claim in `[ctsync].[fence]`.
    pub fn fence_of(&self, id: &TableId) -> Option<Claim> {
        self.lock().fences.get(id).cloned()
    }

    /// Runs one write transaction on `table` under `claim`: refused unless
    /// the claim is the table's current one; everything `f` stages is
    /// written back only if it succeeds.
    fn transact<T>(
        &self,
        table: &TableId,
        claim: &Claim,
        rewrites: &[CursorKind],
        f: impl FnOnce(&mut Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut guard = self.lock();
        let data = &mut *guard;
        admit(data, table, claim)?;
        let (out, changes) = {
            let mut tx = Tx::new(&data.tables, &data.records);
            let out = f(&mut tx)?;
            (out, tx.into_changes())
        };
        for (id, table) in changes.tables {
            match table {
                Some(t) => data.tables.insert(id, t),
                None => data.tables.remove(&id),
            };
        }
        for (id, record) in changes.records {
            match record {
                Some(r) => data.records.insert(id, r),
                None => data.records.remove(&id),
            };
        }
        data.rewrote(table, rewrites);
        data.commit_tokens
            .entry(table.clone())
            .or_default()
            .push(claim.token);
        Ok(out)
    }

    /// One write transaction that changes rows of `target` (the table or
    /// its shadow) and the record of `table`, in place with an undo log;
    /// `page` is how its rows go in, `rewrites` the cursors it records.
    fn write_rows<T>(
        &self,
        (table, target): (&TableId, &TableId),
        claim: &Claim,
        page: &mut PageRows<'_>,
        rewrites: &[CursorKind],
        f: impl FnOnce(&mut RowEdits<'_>, &mut PageRows<'_>, &mut ReplicaRecord) -> Result<T>,
    ) -> Result<T> {
        let mut guard = self.lock();
        let data = &mut *guard;
        admit(data, table, claim)?;
        let mut record = data.records.get(table).cloned().unwrap_or_default();
        let rows = data.tables.get_mut(target).ok_or_else(|| {
            Error::Replica(format!("Invalid object name '{target}' on the replica"))
        })?;
        let mut edits = RowEdits::new(rows);
        let out = match f(&mut edits, page, &mut record) {
            Ok(out) => out,
            Err(e) => {
                let duplicate = edits.duplicate;
                edits.rollback();
                data.duplicate_keys += usize::from(duplicate);
                return Err(e);
            }
        };
        if page.inserted {
            data.row_paths
                .entry(table.clone())
                .or_default()
                .push(page.path);
        }
        data.records.insert(table.clone(), record);
        data.rewrote(table, rewrites);
        data.commit_tokens
            .entry(table.clone())
            .or_default()
            .push(claim.token);
        Ok(out)
    }

    /// How a page of `schema`'s rows goes in by `method` under `claim`
    /// (the path is chosen here, by the writer's own choices: the in-memory
    /// replica can bulk-copy every schema).
    fn page_rows<'a>(
        &self,
        schema: &'a TableSchema,
        method: &'static str,
        claim: &Claim,
        plan: Option<&'a FaultPlan>,
    ) -> PageRows<'a> {
        let paths = self
            .paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(claim.owner.clone())
            .or_default()
            .clone();
        PageRows {
            table: &schema.id,
            method,
            path: paths.choose(schema, |_| None),
            paths,
            plan,
            failed: None,
            inserted: false,
        }
    }

    /// One write transaction on one table and its record.
    fn write<T>(
        &self,
        id: &TableId,
        claim: &Claim,
        f: impl FnOnce(&mut super::replica_table::Table, &mut ReplicaRecord) -> Result<T>,
    ) -> Result<T> {
        self.transact(id, claim, &[], |tx| {
            let mut record = tx.record_mut(id).clone();
            let out = f(tx.table_mut(id)?, &mut record)?;
            *tx.record_mut(id) = record;
            Ok(out)
        })
    }

    /// Sets what `doctor` finds on the replica.
    pub fn set_doctor_facts(&self, facts: crate::doctor::ReplicaFacts) {
        *self.doctor.lock().unwrap_or_else(|e| e.into_inner()) = facts;
    }

    pub(super) fn facts_for_doctor(&self) -> crate::doctor::ReplicaFacts {
        self.doctor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// From now on the replica reports `column` of `table` as `ty`,
    /// whatever it was created or altered to (a server that cannot hold
    /// the primary's type exactly).
    pub fn misreport_column(&self, table: &TableId, column: &str, ty: crate::model::SqlType) {
        self.lock()
            .misreported
            .insert((table.clone(), column.to_string()), ty);
    }

    /// Adds an index to a replica table, as an operator might for reports.
    pub fn add_index_by_hand(&self, id: &TableId, name: &str) {
        if let Some(t) = self.lock().tables.get_mut(id) {
            t.indexes.insert(name.to_string());
        }
    }

    /// Another session reads the table and keeps its shared lock for
    /// `hold` (of the time schema changes spend waiting for it).
    pub fn hold_lock_by_hand(&self, id: &TableId, hold: std::time::Duration) {
        self.lock().reader_locks.insert(id.clone(), hold);
    }

    /// A schema change of `table` (`change`: "the swap of [dbo].[T]")
    /// under `claim`: refused by the fence first, as the adapter's first
    /// statement checks it, then it waits for a reader's lock on the
    /// table: up to [`SCHEMA_LOCK_TIMEOUT`], then it fails as the adapter
    /// says it ([`Error::Blocked`]), with nothing changed. The double's
    /// reader lock blocks only swaps and table renames: on a real server
    /// the reader's shared table lock (`TABLOCK, HOLDLOCK`) also blocks
    /// page writes and backlog applies, which wait for it unbounded
    /// (`LOCK_TIMEOUT -1`).
    fn wait_for_schema_lock(
        &self,
        table: &TableId,
        claim: &Claim,
        change: &str,
        next: &str,
    ) -> Result<()> {
        let mut guard = self.lock();
        let data = &mut *guard;
        admit(data, table, claim)?;
        let Some(left) = data.reader_locks.get_mut(table) else {
            return Ok(());
        };
        if *left > SCHEMA_LOCK_TIMEOUT {
            *left -= SCHEMA_LOCK_TIMEOUT;
            *data.lock_timeouts.entry(table.clone()).or_default() += 1;
            return Err(Error::Blocked {
                side: crate::error::Side::Replica,
                message: format!(
                    "{change} waited more than {} s for the table's schema lock (Msg 1222: \
                     Lock request time out period exceeded; a long-running reader of the \
                     replica table, or an open transaction on it?); nothing changed, {next}",
                    SCHEMA_LOCK_TIMEOUT.as_secs()
                ),
            });
        }
        data.reader_locks.remove(table);
        Ok(())
    }

    /// How many schema changes of `id` gave up behind a reader's lock.
    pub fn lock_timeouts(&self, id: &TableId) -> usize {
        self.lock().lock_timeouts.get(id).copied().unwrap_or(0)
    }

    /// Grants on a replica table, as an operator might.
    pub fn grant_by_hand(&self, id: &TableId, grant: &str) {
        if let Some(t) = self.lock().tables.get_mut(id) {
            t.grants.insert(grant.to_string());
        }
    }

    /// Adds a trigger to a replica table (it blocks a swap).
    pub fn add_trigger_by_hand(&self, id: &TableId, name: &str) {
        if let Some(t) = self.lock().tables.get_mut(id) {
            t.triggers.insert(name.to_string());
        }
    }

    /// Adds (`true`) or drops a swap blocker by hand on a replica table: a
    /// trigger, or a foreign key (`foreign_key`). Returns whether the
    /// table exists (there is nothing to add it to otherwise).
    pub fn set_blocker_by_hand(
        &self,
        id: &TableId,
        name: &str,
        foreign_key: bool,
        on: bool,
    ) -> bool {
        let mut data = self.lock();
        let Some(t) = data.tables.get_mut(id) else {
            return false;
        };
        let set = if foreign_key {
            &mut t.foreign_keys
        } else {
            &mut t.triggers
        };
        if on {
            set.insert(name.to_string());
        } else {
            set.remove(name);
        }
        true
    }

    /// The triggers and foreign keys added by hand on a replica table.
    pub fn blockers_by_hand(&self, id: &TableId) -> Vec<String> {
        self.lock()
            .tables
            .get(id)
            .map(|t| t.triggers.iter().chain(&t.foreign_keys).cloned().collect())
            .unwrap_or_default()
    }

    /// Every full load that started on the table, in order: its mode and
    /// why it runs in place (if it does).
    pub fn load_starts(&self, id: &TableId) -> Vec<(LoadMode, Option<String>)> {
        self.lock().load_starts.get(id).cloned().unwrap_or_default()
    }

    /// Indexes and grants of a replica table.
    pub fn indexes_and_grants(&self, id: &TableId) -> (Vec<String>, Vec<String>) {
        self.lock()
            .tables
            .get(id)
            .map(|t| {
                (
                    t.indexes.iter().cloned().collect(),
                    t.grants.iter().cloned().collect(),
                )
            })
            .unwrap_or_default()
    }

    /// How many shadow tables were swapped in for the table.
    pub fn swaps(&self, id: &TableId) -> usize {
        self.lock().swaps.get(id).copied().unwrap_or(0)
    }

    /// The replica's tables in `schema` (e.g. `ctsync`'s shadows).
    pub fn tables_in(&self, schema: &str) -> Vec<TableId> {
        self.lock()
            .tables
            .keys()
            .filter(|id| id.schema == schema)
            .cloned()
            .collect()
    }
}

#[async_trait]
impl Replica for MemoryReplica {
    async fn begin_full_load(
        &self,
        schema: &TableSchema,
        start: &LoadStart,
        claim: &Claim,
    ) -> Result<()> {
        let modules: Vec<ModuleDef> = self.lock().modules.values().cloned().collect();
        self.transact(&schema.id, claim, LOAD_AND_BACKLOG, |tx| {
            replica_load::begin(tx, &modules, schema, start)
        })?;
        let mut data = self.lock();
        *data.loads_started.entry(schema.id.clone()).or_insert(0) += 1;
        data.load_starts
            .entry(schema.id.clone())
            .or_default()
            .push((start.load.mode, start.load.in_place_reason.clone()));
        Ok(())
    }

    async fn insert_rows(
        &self,
        schema: &TableSchema,
        rows: &[Row],
        load: &PendingLoad,
        claim: &Claim,
    ) -> Result<()> {
        let delay = {
            let mut data = self.lock();
            data.in_flight += 1;
            data.max_in_flight = data.max_in_flight.max(data.in_flight);
            data.insert_delay
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.lock().in_flight -= 1;
        let target = load.target(&schema.id);
        let plan = self.inner_faults();
        let mut page = self.page_rows(schema, "insert_rows", claim, plan.as_deref());
        let result = self.write_rows(
            (&schema.id, &target),
            claim,
            &mut page,
            &[CursorKind::Load],
            |t, page, record| replica_load::page(t, page, record, rows, load),
        );
        page.settle(&result);
        result
    }

    async fn apply_changes(
        &self,
        schema: &TableSchema,
        batch: &ChangeBatch,
        claim: &Claim,
    ) -> Result<()> {
        let plan = self.inner_faults();
        let mut page = self.page_rows(schema, "apply_changes", claim, plan.as_deref());
        let rewrites: &[CursorKind] = if batch.version.is_some() || batch.backlog.is_some() {
            &[CursorKind::Backlog]
        } else {
            &[]
        };
        let id = &schema.id;
        let result = self.write_rows((id, id), claim, &mut page, rewrites, |t, page, record| {
            for key in &batch.keys {
                t.remove(key);
            }
            page.insert(t, &batch.rows)?;
            if let Some(v) = batch.version {
                record.version = Some(v);
                record.backlog = None;
            }
            if let Some(backlog) = &batch.backlog {
                // Like the SQL statement: a table with no record yet is
                // complete up to the backlog's start.
                record.version.get_or_insert(backlog.since);
                record.backlog = Some(backlog.clone());
            }
            Ok(())
        });
        page.settle(&result);
        result
    }

    async fn finish_full_load(
        &self,
        schema: &TableSchema,
        version: SyncVersion,
        mode: LoadMode,
        claim: &Claim,
    ) -> Result<()> {
        self.statement_delay("finish_full_load").await;
        if mode == LoadMode::Shadow {
            // Before the swap's transaction, each index committed on its own.
            replica_load::build_indexes(&mut self.lock().tables, &schema.id)?;
            self.wait_for_schema_lock(
                &schema.id,
                claim,
                &format!("the swap of {}", schema.id),
                "the load stays pending and its next cycle swaps again",
            )?;
        }
        let modules: Vec<ModuleDef> = self.lock().modules.values().cloned().collect();
        let forced = self.table_record(&schema.id).load.is_some_and(|l| l.forced);
        self.transact(&schema.id, claim, LOAD_AND_BACKLOG, |tx| {
            replica_load::finish(tx, &modules, schema, version, mode)
        })?;
        if forced {
            let now = tokio::time::Instant::now();
            self.lock().forced_finishes.insert(schema.id.clone(), now);
        }
        if mode == LoadMode::Shadow {
            *self.lock().swaps.entry(schema.id.clone()).or_insert(0) += 1;
        }
        Ok(())
    }

    async fn cancel_load(
        &self,
        table: &TableId,
        version: SyncVersion,
        claim: &Claim,
    ) -> Result<()> {
        self.transact(table, claim, LOAD_AND_BACKLOG, |tx| {
            replica_load::cancel(tx, table, version)
        })
    }

    async fn claim(&self, table: &TableId, owner: &str) -> Result<u64> {
        let mut data = self.lock();
        let token = data.fences.get(table).map_or(0, |c| c.token) + 1;
        data.fences.insert(table.clone(), Claim::new(owner, token));
        Ok(token)
    }

    async fn advance_versions(&self, advances: &[Advance]) -> Result<Vec<TableId>> {
        let mut guard = self.lock();
        let data = &mut *guard;
        let mut moved = Vec::new();
        for a in advances {
            if data.fences.get(&a.table) != Some(&a.claim) {
                data.fenced_commits += 1;
                continue;
            }
            // An UPDATE: a table without a record gets none.
            let Some(record) = data.records.get_mut(&a.table) else {
                continue;
            };
            if record.version == Some(a.from) && record.load.is_none() && record.backlog.is_none() {
                record.version = Some(a.to);
                data.commit_tokens
                    .entry(a.table.clone())
                    .or_default()
                    .push(a.claim.token);
                moved.push(a.table.clone());
            }
        }
        Ok(moved)
    }

    async fn swap_blockers(&self, table: &TableId) -> Result<Vec<String>> {
        let data = self.lock();
        let modules: Vec<ModuleDef> = data.modules.values().cloned().collect();
        Ok(replica_load::blockers(
            data.tables.get(table),
            &modules,
            table,
        ))
    }

    async fn schema_bound_dependents(&self, table: &TableId) -> Result<Vec<ModuleOp>> {
        let data = self.lock();
        let modules: Vec<ModuleDef> = data.modules.values().cloned().collect();
        Ok(replica_load::schema_bound_over(&modules, table)
            .into_iter()
            .map(|m| ModuleOp::Drop {
                schema: m.schema.clone(),
                name: m.name.clone(),
                kind: m.kind,
            })
            .collect())
    }

    /// The record as the SQL Server adapter reads it: a corrupt cursor
    /// comes back unreadable (the load's before the backlog's).
    async fn record(&self, table: &TableId) -> Result<ReplicaRecord> {
        let mut data = self.lock();
        let mut record = data.records.get(table).cloned().unwrap_or_default();
        for cursor in [CursorKind::Backlog, CursorKind::Load] {
            if data.corrupt.contains(&(table.clone(), cursor)) {
                match cursor {
                    CursorKind::Load => record.load = None,
                    CursorKind::Backlog => record.backlog = None,
                }
                record.unreadable = Some(Unreadable {
                    cursor,
                    error: format!(
                        "expected value at line 1 column 1 (the {} cursor was corrupted)",
                        cursor.as_str()
                    ),
                });
            }
        }
        data.unreadable_reads += usize::from(record.unreadable.is_some());
        Ok(record)
    }

    async fn table_schema(&self, table: &TableId) -> Result<Option<TableSchema>> {
        let data = self.lock();
        Ok(data.tables.get(table).map(|t| {
            let mut schema = t.schema.clone();
            for c in &mut schema.columns {
                if let Some(ty) = data.misreported.get(&(table.clone(), c.name.clone())) {
                    c.ty = ty.clone();
                }
            }
            schema
        }))
    }

    async fn alter_columns(&self, table: &TableId, ops: &[ColumnOp], claim: &Claim) -> Result<()> {
        self.statement_delay("alter_columns").await;
        self.write(table, claim, |t, _| {
            for op in ops {
                alter(t, op)?;
            }
            Ok(())
        })
    }

    async fn rename_column(
        &self,
        table: &TableId,
        from: &str,
        to: &str,
        claim: &Claim,
    ) -> Result<()> {
        self.statement_delay("rename_column").await;
        self.write(table, claim, |t, _| {
            if t.schema.columns.iter().any(|c| c.name == to) {
                return Err(Error::Replica(format!("column {to} already exists in {table}")));
            }
            let col = t
                .schema
                .columns
                .iter_mut()
                .find(|c| c.name == from)
                .ok_or_else(|| Error::Replica(format!("Either the parameter @objname is ambiguous or the claimed @objtype (COLUMN) is wrong: {table}.{from}")))?;
            col.name = to.to_string();
            for k in t.schema.primary_key.iter_mut().filter(|k| k.name == from) {
                k.name = to.to_string();
            }
            Ok(())
        })
    }

    /// `sp_rename` of the table, its shadow (a load under way goes on under
    /// the new name, from its cursor) and its record, in one transaction.
    async fn rename_table(&self, from: &TableId, to: &TableId, claim: &Claim) -> Result<()> {
        self.statement_delay("rename_table").await;
        self.wait_for_schema_lock(
            from,
            claim,
            &format!("the rename of {from} to {to}"),
            "the rename is tried again from the DDL inbox",
        )?;
        self.transact(from, claim, &[], |tx| {
            if tx.table(to).is_some() {
                return Err(Error::Replica(format!(
                    "There is already an object named '{to}'"
                )));
            }
            let mut table = tx.take(from).ok_or_else(|| {
                Error::Replica(format!("Invalid object name '{from}' on the replica"))
            })?;
            table.schema.id = to.clone();
            tx.put(to, table);
            replica_load::move_shadow(tx, from, to);
            if let Some(record) = tx.take_record(from) {
                // Like the UPDATE of `[ctsync].[sync_versions]`, whose key
                // is the name.
                if tx.take_record(to).is_some() {
                    return Err(Error::Replica(format!(
                        "Violation of PRIMARY KEY constraint: cannot insert duplicate key \
                         ({to}) in object 'ctsync.sync_versions'"
                    )));
                }
                *tx.record_mut(to) = record;
            }
            Ok(())
        })?;
        let mut data = self.lock();
        for cursor in LOAD_AND_BACKLOG {
            if data.corrupt.remove(&(from.clone(), *cursor)) {
                data.corrupt.insert((to.clone(), *cursor));
            }
        }
        // The table's history goes with its name (not its fence or commit
        // tokens: the new name is claimed on its own).
        if let Some(n) = data.loads_started.remove(from) {
            data.loads_started.insert(to.clone(), n);
        }
        if let Some(starts) = data.load_starts.remove(from) {
            data.load_starts.insert(to.clone(), starts);
        }
        if let Some(n) = data.swaps.remove(from) {
            data.swaps.insert(to.clone(), n);
        }
        if let Some(paths) = data.row_paths.remove(from) {
            data.row_paths.insert(to.clone(), paths);
        }
        Ok(())
    }

    async fn modules(&self) -> Result<Vec<ModuleDef>> {
        let data = self.lock();
        Ok(data.modules.values().cloned().collect())
    }

    async fn inbox_add(&self, messages: &[QueueMessage]) -> Result<()> {
        let mut data = self.lock();
        for m in messages {
            if !data.inbox.iter().any(|(x, _)| x.message.id == m.id) {
                data.inbox.push((
                    InboxMessage {
                        message: m.clone(),
                        attempts: 0,
                    },
                    None,
                ));
            }
        }
        Ok(())
    }

    async fn inbox_pending(&self) -> Result<Vec<InboxMessage>> {
        let data = self.lock();
        Ok(data
            .inbox
            .iter()
            .filter(|(_, e)| e.is_none())
            .map(|(m, _)| m.clone())
            .collect())
    }

    async fn inbox_settle(&self, id: &str, outcome: &InboxOutcome) -> Result<()> {
        let mut data = self.lock();
        let Some(i) = data.inbox.iter().position(|(m, _)| m.message.id == id) else {
            return Ok(());
        };
        match outcome {
            InboxOutcome::Done => {
                data.inbox.remove(i);
            }
            InboxOutcome::Retry(_) => data.inbox[i].0.attempts += 1,
            InboxOutcome::Parked(e) => {
                data.inbox[i].0.attempts += 1;
                data.inbox[i].1 = Some(e.clone());
            }
        }
        Ok(())
    }

    /// Creating a module checks that every `[s].[n]` it names exists, as
    /// SQL Server's deferred name resolution would at first use.
    async fn apply_module(&self, op: &ModuleOp) -> Result<()> {
        let mut data = self.lock();
        match op {
            ModuleOp::Create(m) | ModuleOp::Alter(m) => {
                let key = (m.schema.clone(), m.name.clone());
                if matches!(op, ModuleOp::Create(_)) && data.modules.contains_key(&key) {
                    return Err(Error::Replica(format!(
                        "There is already an object named '{}'",
                        m.name
                    )));
                }
                // Stored as SQL Server stores it: the header names the object
                // in full and `OR ALTER` is dropped.
                let original = m.definition.clone().unwrap_or_default();
                let text =
                    crate::modules::qualified_statement(&original, &m.schema, &m.name, false)
                        .unwrap_or(original);
                for (s, n) in references(&text) {
                    let own = s == m.schema && n == m.name;
                    let known = data.modules.contains_key(&(s.clone(), n.clone()))
                        || data
                            .tables
                            .contains_key(&TableId::new(s.clone(), n.clone()));
                    if !own && !known {
                        return Err(Error::Replica(format!(
                            "Invalid object name '{s}.{n}' in {}",
                            m.qualified()
                        )));
                    }
                }
                data.modules.insert(
                    key,
                    ModuleDef {
                        definition: Some(text),
                        ..m.clone()
                    },
                );
            }
            ModuleOp::Drop { schema, name, .. } => {
                if data
                    .modules
                    .remove(&(schema.clone(), name.clone()))
                    .is_none()
                {
                    return Err(Error::Replica(format!(
                        "Cannot drop '{schema}.{name}': it does not exist"
                    )));
                }
            }
        }
        data.module_writes += 1;
        Ok(())
    }
}
