//! Fault injection for the seeded simulation: wrappers around any port that
//! apply scheduled faults by site. Each site has a FIFO queue of faults: a
//! `Reject` fails the next call without effect; a `LostAck` lets the call
//! take effect and then reports an error (a crash between the commit and
//! its acknowledgement). `kill` makes every later call of this incarnation
//! fail, before or after its effect, as if the process died; `down` models
//! an outage of one dependency (Redis) without losing its data.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::ddl::ParkedDdl;
use crate::error::{Error, Result};
use crate::fence::Claim;
use crate::model::{
    ChangeBatch, ChangePage, ColumnOp, PrimaryIdentity, Row, RowKey, SyncVersion, TableId,
    TableSchema,
};
use crate::modules::{ModuleDef, ModuleOp};
use crate::ports::{
    Advance, ChangeSet, CycleKeys, DdlQueue, InboxMessage, InboxOutcome, LeaseGrant, LoadMode,
    LoadProgress, LoadStart, Marker, Opened, PendingLoad, Primary, QueueMessage, Replica,
    ReplicaRecord, Scouted, StateStore, TableFlags,
};

/// Where a fault can strike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Site {
    /// Catalog, versions and counts on the primary.
    PrimaryMeta,
    /// A full-load page.
    PrimaryPage,
    /// A page of changes.
    PrimaryChanges,
    /// Any replica write transaction.
    ReplicaWrite,
    /// Replica reads (catalog, records, inbox).
    ReplicaRead,
    StateRead,
    StateWrite,
    QueueReceive,
    QueueCommit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fails without effect.
    Reject,
    /// Takes effect, then reports an error.
    LostAck,
}

#[derive(Debug, Default)]
struct Plan {
    queues: BTreeMap<Site, VecDeque<Fault>>,
    /// Faults that struck, by site and kind.
    injected: BTreeMap<(Site, &'static str), u64>,
    /// Every call that reached a wrapped port, by site and port method
    /// (one port call is one request or round trip in the adapters).
    calls: BTreeMap<(Site, &'static str), u64>,
}

/// The faults of one pipeline incarnation, shared by its wrapped ports.
#[derive(Debug)]
pub struct FaultPlan {
    plan: Mutex<Plan>,
    killed: AtomicBool,
    state_down: AtomicBool,
    /// While `true`, every call waits at its start (the process is frozen:
    /// a GC pause, a stopped VM, a partition).
    paused: tokio::sync::watch::Sender<bool>,
    /// The next call at this site freezes the process, itself included
    /// (frozen just before its request reached the server).
    pause_at: Mutex<Option<Site>>,
}

impl Default for FaultPlan {
    fn default() -> Self {
        Self {
            plan: Mutex::default(),
            killed: AtomicBool::new(false),
            state_down: AtomicBool::new(false),
            paused: tokio::sync::watch::Sender::new(false),
            pause_at: Mutex::new(None),
        }
    }
}

impl FaultPlan {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next call at `site` meets `fault`.
    pub fn push(&self, site: Site, fault: Fault) {
        self.lock().queues.entry(site).or_default().push_back(fault);
    }

    /// Every later call fails (the process died).
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }

    /// Calls go through again: the process is back with the state it had
    /// (a paused VM resumed, a partition healed).
    pub fn revive(&self) {
        self.killed.store(false, Ordering::SeqCst);
    }

    /// Freezes the process: every call waits at its start until `resume`.
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    /// The next call at `site` freezes the process (and waits itself).
    pub fn pause_on_next(&self, site: Site) {
        *self.pause_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(site);
    }

    pub fn resume(&self) {
        *self.pause_at.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.paused.send_replace(false);
    }

    /// Whether the process is frozen now.
    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    /// Redis unreachable (`true`) or back (`false`); its data stays.
    pub fn set_state_down(&self, down: bool) {
        self.state_down.store(down, Ordering::SeqCst);
    }

    /// Drops every fault not yet struck (the simulation quiesces).
    pub fn clear(&self) {
        self.lock().queues.clear();
        self.set_state_down(false);
    }

    /// Faults that struck so far, by site and kind.
    pub fn injected(&self) -> BTreeMap<(Site, &'static str), u64> {
        self.lock().injected.clone()
    }

    /// Calls that reached the wrapped ports so far, by site: what a poll
    /// costs the primary, the replica and Redis, countable without them.
    pub fn calls(&self) -> BTreeMap<(Site, &'static str), u64> {
        self.lock().calls.clone()
    }

    fn count(&self, site: Site, kind: &'static str) {
        *self.lock().injected.entry((site, kind)).or_insert(0) += 1;
    }

    async fn before(&self, site: Site, method: &'static str) -> Result<Option<Fault>> {
        *self.lock().calls.entry((site, method)).or_insert(0) += 1;
        {
            let mut at = self.pause_at.lock().unwrap_or_else(|e| e.into_inner());
            if *at == Some(site) {
                *at = None;
                self.count(site, "paused");
                self.paused.send_replace(true);
            }
        }
        let mut paused = self.paused.subscribe();
        // The sender lives as long as the plan, so this only ends on resume.
        let _ = paused.wait_for(|p| !*p).await;
        if self.killed.load(Ordering::SeqCst) {
            return Err(Error::Sink("injected: the process died".into()));
        }
        if matches!(site, Site::StateRead | Site::StateWrite)
            && self.state_down.load(Ordering::SeqCst)
        {
            self.count(site, "down");
            return Err(Error::State("injected: Redis is unreachable".into()));
        }
        let fault = self
            .lock()
            .queues
            .get_mut(&site)
            .and_then(VecDeque::pop_front);
        match fault {
            Some(Fault::Reject) => {
                self.count(site, "reject");
                Err(injected(site, "rejected"))
            }
            other => Ok(other),
        }
    }

    fn after<T>(&self, site: Site, fault: Option<Fault>, result: Result<T>) -> Result<T> {
        if self.killed.load(Ordering::SeqCst) {
            return Err(Error::Sink("injected: the process died".into()));
        }
        match (fault, result) {
            (Some(Fault::LostAck), Ok(_)) => {
                self.count(site, "lost_ack");
                Err(injected(site, "applied, acknowledgement lost"))
            }
            (_, r) => r,
        }
    }
}

fn injected(site: Site, what: &str) -> Error {
    let message = format!("injected at {site:?}: {what}");
    match site {
        Site::PrimaryMeta
        | Site::PrimaryPage
        | Site::PrimaryChanges
        | Site::QueueReceive
        | Site::QueueCommit => Error::Primary(message),
        Site::ReplicaWrite | Site::ReplicaRead => Error::Replica(message),
        Site::StateRead | Site::StateWrite => Error::State(message),
    }
}

/// The port method a `self.inner.method(…)` call names.
fn method_of(call: &'static str) -> &'static str {
    let name = call.split('(').next().unwrap_or(call);
    name.rsplit('.').next().unwrap_or(name).trim()
}

macro_rules! guarded {
    ($self:ident, $site:expr, $call:expr) => {{
        let fault = $self
            .plan
            .before($site, method_of(stringify!($call)))
            .await?;
        let result = $call.await;
        $self.plan.after($site, fault, result)
    }};
}

/// A port wrapped with a fault plan.
pub struct Faulty<P: ?Sized> {
    inner: Arc<P>,
    plan: Arc<FaultPlan>,
}

impl<P: ?Sized> Faulty<P> {
    pub fn new(inner: Arc<P>, plan: Arc<FaultPlan>) -> Self {
        Self { inner, plan }
    }
}

#[async_trait]
impl Primary for Faulty<dyn Primary> {
    async fn identity(&self) -> Result<PrimaryIdentity> {
        guarded!(self, Site::PrimaryMeta, self.inner.identity())
    }
    async fn tracked_tables(&self) -> Result<Vec<TableId>> {
        guarded!(self, Site::PrimaryMeta, self.inner.tracked_tables())
    }
    async fn table_schema(&self, table: &TableId) -> Result<TableSchema> {
        guarded!(self, Site::PrimaryMeta, self.inner.table_schema(table))
    }
    async fn current_version(&self) -> Result<SyncVersion> {
        guarded!(self, Site::PrimaryMeta, self.inner.current_version())
    }
    async fn min_valid_version(&self, table: &TableId) -> Result<Option<SyncVersion>> {
        guarded!(self, Site::PrimaryMeta, self.inner.min_valid_version(table))
    }
    async fn row_count(&self, table: &TableId) -> Result<u64> {
        guarded!(self, Site::PrimaryMeta, self.inner.row_count(table))
    }
    async fn modules(&self) -> Result<Vec<ModuleDef>> {
        guarded!(self, Site::PrimaryMeta, self.inner.modules())
    }
    async fn change_retention(&self) -> Result<Option<std::time::Duration>> {
        guarded!(self, Site::PrimaryMeta, self.inner.change_retention())
    }
    async fn read_page(
        &self,
        schema: &TableSchema,
        after: Option<&RowKey>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        guarded!(
            self,
            Site::PrimaryPage,
            self.inner.read_page(schema, after, limit)
        )
    }
    async fn scout(&self, tables: &[(TableId, SyncVersion)]) -> Result<Vec<Scouted>> {
        guarded!(self, Site::PrimaryMeta, self.inner.scout(tables))
    }
    async fn open_changes<'a>(
        &'a self,
        schema: &TableSchema,
        since: SyncVersion,
        after: Option<&RowKey>,
    ) -> Result<Box<dyn ChangeSet + 'a>> {
        let inner = guarded!(
            self,
            Site::PrimaryChanges,
            self.inner.open_changes(schema, since, after)
        )?;
        Ok(Box::new(FaultyChangeSet {
            inner,
            plan: self.plan.clone(),
        }))
    }
}

/// A change set whose page reads share the primary's fault plan.
struct FaultyChangeSet<'a> {
    inner: Box<dyn ChangeSet + 'a>,
    plan: Arc<FaultPlan>,
}

#[async_trait]
impl ChangeSet for FaultyChangeSet<'_> {
    fn opened(&self) -> Opened {
        self.inner.opened()
    }
    async fn next_page(&mut self, schema: &TableSchema, limit: usize) -> Result<ChangePage> {
        guarded!(
            self,
            Site::PrimaryChanges,
            self.inner.next_page(schema, limit)
        )
    }
}

#[async_trait]
impl Replica for Faulty<dyn Replica> {
    async fn begin_full_load(
        &self,
        schema: &TableSchema,
        start: &LoadStart,
        claim: &Claim,
    ) -> Result<()> {
        guarded!(
            self,
            Site::ReplicaWrite,
            self.inner.begin_full_load(schema, start, claim)
        )
    }
    async fn insert_rows(
        &self,
        schema: &TableSchema,
        rows: &[Row],
        load: &PendingLoad,
        claim: &Claim,
    ) -> Result<()> {
        guarded!(
            self,
            Site::ReplicaWrite,
            self.inner.insert_rows(schema, rows, load, claim)
        )
    }
    async fn apply_changes(
        &self,
        schema: &TableSchema,
        batch: &ChangeBatch,
        claim: &Claim,
    ) -> Result<()> {
        guarded!(
            self,
            Site::ReplicaWrite,
            self.inner.apply_changes(schema, batch, claim)
        )
    }
    async fn finish_full_load(
        &self,
        schema: &TableSchema,
        version: SyncVersion,
        mode: LoadMode,
        claim: &Claim,
    ) -> Result<()> {
        guarded!(
            self,
            Site::ReplicaWrite,
            self.inner.finish_full_load(schema, version, mode, claim)
        )
    }
    async fn cancel_load(
        &self,
        table: &TableId,
        version: SyncVersion,
        claim: &Claim,
    ) -> Result<()> {
        guarded!(
            self,
            Site::ReplicaWrite,
            self.inner.cancel_load(table, version, claim)
        )
    }
    async fn claim(&self, table: &TableId, owner: &str) -> Result<u64> {
        guarded!(self, Site::ReplicaWrite, self.inner.claim(table, owner))
    }
    async fn advance_versions(&self, advances: &[Advance]) -> Result<Vec<TableId>> {
        guarded!(
            self,
            Site::ReplicaWrite,
            self.inner.advance_versions(advances)
        )
    }
    async fn swap_blockers(&self, table: &TableId) -> Result<Vec<String>> {
        guarded!(self, Site::ReplicaRead, self.inner.swap_blockers(table))
    }
    async fn record(&self, table: &TableId) -> Result<ReplicaRecord> {
        guarded!(self, Site::ReplicaRead, self.inner.record(table))
    }
    async fn table_schema(&self, table: &TableId) -> Result<Option<TableSchema>> {
        guarded!(self, Site::ReplicaRead, self.inner.table_schema(table))
    }
    async fn alter_columns(&self, table: &TableId, ops: &[ColumnOp], claim: &Claim) -> Result<()> {
        guarded!(
            self,
            Site::ReplicaWrite,
            self.inner.alter_columns(table, ops, claim)
        )
    }
    async fn rename_column(
        &self,
        table: &TableId,
        from: &str,
        to: &str,
        claim: &Claim,
    ) -> Result<()> {
        guarded!(
            self,
            Site::ReplicaWrite,
            self.inner.rename_column(table, from, to, claim)
        )
    }
    async fn rename_table(&self, from: &TableId, to: &TableId, claim: &Claim) -> Result<()> {
        guarded!(
            self,
            Site::ReplicaWrite,
            self.inner.rename_table(from, to, claim)
        )
    }
    async fn modules(&self) -> Result<Vec<ModuleDef>> {
        guarded!(self, Site::ReplicaRead, self.inner.modules())
    }
    async fn inbox_add(&self, messages: &[QueueMessage]) -> Result<()> {
        guarded!(self, Site::ReplicaWrite, self.inner.inbox_add(messages))
    }
    async fn inbox_pending(&self) -> Result<Vec<InboxMessage>> {
        guarded!(self, Site::ReplicaRead, self.inner.inbox_pending())
    }
    async fn inbox_settle(&self, id: &str, outcome: &InboxOutcome) -> Result<()> {
        guarded!(
            self,
            Site::ReplicaWrite,
            self.inner.inbox_settle(id, outcome)
        )
    }
    async fn apply_module(&self, op: &ModuleOp) -> Result<()> {
        guarded!(self, Site::ReplicaWrite, self.inner.apply_module(op))
    }
}

#[async_trait]
impl StateStore for Faulty<dyn StateStore> {
    async fn ensure_flags(&self, tables: &[TableId]) -> Result<Marker> {
        guarded!(self, Site::StateWrite, self.inner.ensure_flags(tables))
    }
    async fn publish(&self, pairs: &[(String, String)]) -> Result<()> {
        guarded!(self, Site::StateWrite, self.inner.publish(pairs))
    }
    async fn flags(&self, table: &TableId) -> Result<TableFlags> {
        guarded!(self, Site::StateRead, self.inner.flags(table))
    }
    async fn cycle_keys(&self, table: &TableId) -> Result<CycleKeys> {
        guarded!(self, Site::StateRead, self.inner.cycle_keys(table))
    }
    async fn set_enabled(&self, table: &TableId, enabled: bool) -> Result<()> {
        guarded!(
            self,
            Site::StateWrite,
            self.inner.set_enabled(table, enabled)
        )
    }
    async fn set_force_full_load(&self, table: &TableId, force: bool) -> Result<()> {
        guarded!(
            self,
            Site::StateWrite,
            self.inner.set_force_full_load(table, force)
        )
    }
    async fn request_full_load(&self, table: &TableId) -> Result<()> {
        guarded!(self, Site::StateWrite, self.inner.request_full_load(table))
    }
    async fn version(&self, table: &TableId) -> Result<Option<SyncVersion>> {
        guarded!(self, Site::StateRead, self.inner.version(table))
    }
    async fn set_version(
        &self,
        table: &TableId,
        version: SyncVersion,
        claim: &Claim,
    ) -> Result<()> {
        guarded!(
            self,
            Site::StateWrite,
            self.inner.set_version(table, version, claim)
        )
    }
    async fn finish_full_load(
        &self,
        table: &TableId,
        version: SyncVersion,
        identity: &PrimaryIdentity,
        forced: bool,
        claim: &Claim,
    ) -> Result<()> {
        guarded!(
            self,
            Site::StateWrite,
            self.inner
                .finish_full_load(table, version, identity, forced, claim)
        )
    }
    async fn primary_identity(&self, table: &TableId) -> Result<Option<PrimaryIdentity>> {
        guarded!(self, Site::StateRead, self.inner.primary_identity(table))
    }
    async fn set_primary_identity(
        &self,
        table: &TableId,
        identity: &PrimaryIdentity,
        claim: &Claim,
    ) -> Result<()> {
        guarded!(
            self,
            Site::StateWrite,
            self.inner.set_primary_identity(table, identity, claim)
        )
    }
    async fn set_progress(
        &self,
        table: &TableId,
        progress: &LoadProgress,
        claim: &Claim,
    ) -> Result<()> {
        guarded!(
            self,
            Site::StateWrite,
            self.inner.set_progress(table, progress, claim)
        )
    }
    async fn park_ddl(&self, entry: &ParkedDdl) -> Result<()> {
        guarded!(self, Site::StateWrite, self.inner.park_ddl(entry))
    }
    async fn rename_table(&self, from: &TableId, to: &TableId, claim: &Claim) -> Result<()> {
        guarded!(
            self,
            Site::StateWrite,
            self.inner.rename_table(from, to, claim)
        )
    }
    async fn heartbeat(&self, instance: &str, ttl: std::time::Duration) -> Result<Vec<String>> {
        guarded!(self, Site::StateWrite, self.inner.heartbeat(instance, ttl))
    }
    async fn leave(&self, instance: &str) -> Result<()> {
        guarded!(self, Site::StateWrite, self.inner.leave(instance))
    }
    async fn acquire_leases(
        &self,
        leases: &[String],
        owner: &str,
        ttl: std::time::Duration,
    ) -> Result<Vec<LeaseGrant>> {
        guarded!(
            self,
            Site::StateWrite,
            self.inner.acquire_leases(leases, owner, ttl)
        )
    }
    async fn set_lease_claim(&self, lease: &str, claim: &Claim) -> Result<bool> {
        guarded!(
            self,
            Site::StateWrite,
            self.inner.set_lease_claim(lease, claim)
        )
    }
    async fn release_leases(&self, leases: &[String], owner: &str) -> Result<()> {
        guarded!(
            self,
            Site::StateWrite,
            self.inner.release_leases(leases, owner)
        )
    }
    async fn publish_status(
        &self,
        instance: &str,
        json: &str,
        ttl: std::time::Duration,
    ) -> Result<()> {
        guarded!(
            self,
            Site::StateWrite,
            self.inner.publish_status(instance, json, ttl)
        )
    }
    async fn statuses(&self) -> Result<Vec<(String, String)>> {
        guarded!(self, Site::StateRead, self.inner.statuses())
    }
    async fn table_keys(&self, tables: &[TableId]) -> Result<Vec<(TableFlags, Option<String>)>> {
        guarded!(self, Site::StateRead, self.inner.table_keys(tables))
    }
    async fn discovery_start(
        &self,
        new: Option<&[TableId]>,
        instance: &str,
        ttl: std::time::Duration,
    ) -> Result<(Option<Marker>, Vec<String>)> {
        guarded!(
            self,
            Site::StateWrite,
            self.inner.discovery_start(new, instance, ttl)
        )
    }
    async fn discovery_finish(
        &self,
        leases: &[String],
        owner: &str,
        ttl: std::time::Duration,
        statuses: &str,
        advances: &[Advance],
    ) -> Result<(Vec<LeaseGrant>, Vec<TableId>)> {
        guarded!(
            self,
            Site::StateWrite,
            self.inner
                .discovery_finish(leases, owner, ttl, statuses, advances)
        )
    }
    async fn advance_versions(&self, advances: &[Advance]) -> Result<Vec<TableId>> {
        guarded!(
            self,
            Site::StateWrite,
            self.inner.advance_versions(advances)
        )
    }
    async fn statuses_and_keys(
        &self,
        tables: &[TableId],
    ) -> Result<(Vec<(String, String)>, Vec<(TableFlags, Option<String>)>)> {
        guarded!(self, Site::StateRead, self.inner.statuses_and_keys(tables))
    }
}

impl Faulty<dyn DdlQueue> {
    /// A failed statement inside the receive transaction discards the
    /// connection in the real adapter, so the server rolls the receive back.
    async fn or_roll_back(&self, result: Result<()>) -> Result<()> {
        if result.is_err() {
            self.inner.rollback().await?;
        }
        result
    }
}

#[async_trait]
impl DdlQueue for Faulty<dyn DdlQueue> {
    async fn receive(&self, max: usize, wait: std::time::Duration) -> Result<Vec<QueueMessage>> {
        guarded!(self, Site::QueueReceive, self.inner.receive(max, wait))
    }
    async fn end_conversation(&self, conversation: &str) -> Result<()> {
        self.or_roll_back(guarded!(
            self,
            Site::QueueCommit,
            self.inner.end_conversation(conversation)
        ))
        .await
    }
    async fn commit(&self) -> Result<()> {
        self.or_roll_back(guarded!(self, Site::QueueCommit, self.inner.commit()))
            .await
    }
    async fn rollback(&self) -> Result<()> {
        // A rollback cannot be refused: a dropped connection rolls back too.
        self.inner.rollback().await
    }
}
