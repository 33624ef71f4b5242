//! SinkActor: the only writer to the replica. Its handler is atomic
//! (`AtomicResponse`), so one write finishes before the next starts, and
//! every request is answered once its transaction has committed (or failed).
//! A table write carries its owner's [`Claim`] and is refused, before it
//! starts, unless the claim is still the table's current one in this
//! process; the replica checks it again inside the write's transaction
//! (see `crate::fence`). A table write without a claim is refused.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use crate::error::{Error, Result};
use crate::fence::{Claim, Fence};
use crate::model::{ChangeBatch, ColumnOp, Row, SyncVersion, TableId, TableSchema};
use crate::modules::{ModuleDef, ModuleOp};
use crate::ports::{
    Advance, InboxMessage, InboxOutcome, LoadMode, LoadStart, PendingLoad, QueueMessage, Replica,
    ReplicaRecord,
};
use crate::telemetry;

/// One request to the replica.
pub enum SinkOp {
    BeginFullLoad(Arc<TableSchema>, LoadStart),
    InsertRows(Arc<TableSchema>, Vec<Row>, PendingLoad),
    Apply(Arc<TableSchema>, ChangeBatch),
    FinishFullLoad(Arc<TableSchema>, SyncVersion, LoadMode),
    CancelLoad(TableId, SyncVersion),
    SwapBlockers(TableId),
    Record(TableId),
    ReplicaSchema(TableId),
    AlterColumns(TableId, Vec<ColumnOp>),
    RenameColumn(TableId, String, String),
    RenameTable(TableId, TableId),
    /// Claims the table on the replica for an owner (instance id) and
    /// installs the token under the supervisor's grant (generation).
    Claim(TableId, String, u64),
    Modules,
    Module(ModuleOp),
    InboxAdd(Vec<QueueMessage>),
    InboxPending,
    InboxSettle(String, InboxOutcome),
    /// Idle tables' versions, each under its own claim (checked one by
    /// one: a refused table stays, the others move).
    AdvanceVersions(Vec<Advance>),
}

impl SinkOp {
    /// The table a write changes; `None` for reads and module writes.
    fn written_table(&self) -> Option<&TableId> {
        match self {
            SinkOp::BeginFullLoad(s, _)
            | SinkOp::InsertRows(s, _, _)
            | SinkOp::Apply(s, _)
            | SinkOp::FinishFullLoad(s, _, _) => Some(&s.id),
            SinkOp::CancelLoad(t, _)
            | SinkOp::AlterColumns(t, _)
            | SinkOp::RenameColumn(t, _, _)
            | SinkOp::RenameTable(t, _) => Some(t),
            SinkOp::Record(_)
            | SinkOp::Claim(..)
            | SinkOp::SwapBlockers(_)
            | SinkOp::ReplicaSchema(_)
            | SinkOp::Modules
            | SinkOp::Module(_)
            | SinkOp::InboxAdd(_)
            | SinkOp::InboxPending
            | SinkOp::InboxSettle(..)
            | SinkOp::AdvanceVersions(_) => None,
        }
    }
}

pub enum SinkReply {
    Done,
    Record(ReplicaRecord),
    Schema(Option<TableSchema>),
    Modules(Vec<ModuleDef>),
    Inbox(Vec<InboxMessage>),
    Blockers(Vec<String>),
    Token(u64),
    Moved(Vec<TableId>),
}

/// A request with the claim of the table owner that sends it (`None`: not
/// a table owner, e.g. module sync or the DDL inbox, which write no table).
pub struct SinkRequest {
    claim: Option<Claim>,
    op: SinkOp,
}

impl Message for SinkRequest {
    type Result = Result<SinkReply>;
}

pub struct SinkActor {
    replica: Arc<dyn Replica>,
    fence: Fence,
}

impl SinkActor {
    pub fn new(replica: Arc<dyn Replica>, fence: Fence) -> Self {
        Self { replica, fence }
    }
}

impl Actor for SinkActor {
    type Context = Context<Self>;
}

impl Supervised for SinkActor {}

/// The refusal of a table write sent without an owner's claim.
fn unclaimed(table: &TableId) -> Error {
    Error::Fenced {
        table: table.clone(),
        detail: "a table write without an owner's claim".into(),
    }
}

/// Runs one request. The handler has checked that every table write
/// carries its owner's claim.
async fn perform(
    replica: Arc<dyn Replica>,
    fence: Fence,
    op: SinkOp,
    claim: Option<Claim>,
) -> Result<SinkReply> {
    let done = |r: Result<()>| r.map(|_| SinkReply::Done);
    if let (None, Some(table)) = (&claim, op.written_table()) {
        return Err(unclaimed(table));
    }
    // Read only by table writes, which always have one (checked above).
    let claim = &claim.unwrap_or_else(|| Claim::new("", 0));
    let result = match op {
        SinkOp::BeginFullLoad(schema, start) => {
            done(replica.begin_full_load(&schema, &start, claim).await)
        }
        SinkOp::InsertRows(schema, rows, load) => {
            done(replica.insert_rows(&schema, &rows, &load, claim).await)
        }
        SinkOp::Apply(schema, batch) => {
            let started = Instant::now();
            let result = replica.apply_changes(&schema, &batch, claim).await;
            let key = schema.id.key_name();
            telemetry::batch(&key, result.is_ok(), started.elapsed().as_secs_f64());
            if result.is_err() {
                telemetry::error("sink");
            }
            done(result)
        }
        SinkOp::FinishFullLoad(schema, version, mode) => done(
            replica
                .finish_full_load(&schema, version, mode, claim)
                .await,
        ),
        SinkOp::CancelLoad(table, version) => {
            done(replica.cancel_load(&table, version, claim).await)
        }
        SinkOp::SwapBlockers(table) => replica.swap_blockers(&table).await.map(SinkReply::Blockers),
        SinkOp::Record(table) => replica.record(&table).await.map(SinkReply::Record),
        SinkOp::ReplicaSchema(table) => replica.table_schema(&table).await.map(SinkReply::Schema),
        SinkOp::AlterColumns(table, ops) => done(replica.alter_columns(&table, &ops, claim).await),
        SinkOp::RenameColumn(table, from, to) => {
            done(replica.rename_column(&table, &from, &to, claim).await)
        }
        SinkOp::RenameTable(from, to) => done(replica.rename_table(&from, &to, claim).await),
        SinkOp::Claim(table, owner, generation) => {
            let token = replica.claim(&table, &owner).await?;
            fence.install(&table, generation, token)?;
            Ok(SinkReply::Token(token))
        }
        SinkOp::Modules => replica.modules().await.map(SinkReply::Modules),
        SinkOp::Module(op) => done(replica.apply_module(&op).await),
        SinkOp::InboxAdd(messages) => done(replica.inbox_add(&messages).await),
        SinkOp::InboxPending => replica.inbox_pending().await.map(SinkReply::Inbox),
        SinkOp::InboxSettle(id, outcome) => done(replica.inbox_settle(&id, &outcome).await),
        SinkOp::AdvanceVersions(advances) => {
            // This process's fence first, as for every table write.
            let admitted: Vec<Advance> = advances
                .into_iter()
                .filter(|a| match fence.check(&a.table, a.claim.token) {
                    Ok(()) => true,
                    Err(e) => {
                        telemetry::fenced_write(&e);
                        false
                    }
                })
                .collect();
            if admitted.is_empty() {
                return Ok(SinkReply::Moved(Vec::new()));
            }
            replica
                .advance_versions(&admitted)
                .await
                .map(SinkReply::Moved)
        }
    };
    if let Err(e @ Error::Fenced { .. }) = &result {
        telemetry::fenced_write(e);
    }
    result
}

impl Handler<SinkRequest> for SinkActor {
    type Result = AtomicResponse<Self, Result<SinkReply>>;

    fn handle(&mut self, req: SinkRequest, _ctx: &mut Self::Context) -> Self::Result {
        let SinkRequest { claim, op } = req;
        let refused = match (&claim, op.written_table()) {
            (Some(claim), Some(table)) => self.fence.check(table, claim.token).err(),
            (None, Some(table)) => Some(unclaimed(table)),
            _ => None,
        };
        if let Some(e) = refused {
            telemetry::fenced_write(&e);
            return AtomicResponse::new(Box::pin(async move { Err(e) }.into_actor(self)));
        }
        let replica = self.replica.clone();
        let fence = self.fence.clone();
        AtomicResponse::new(Box::pin(
            perform(replica, fence, op, claim).into_actor(self),
        ))
    }
}

/// Typed, cloneable access to the SinkActor, optionally carrying a table
/// owner's claim.
#[derive(Clone)]
pub struct SinkHandle {
    addr: Addr<SinkActor>,
    claim: Option<Claim>,
}

fn unexpected() -> Error {
    Error::Sink("unexpected reply".into())
}

impl SinkHandle {
    pub fn new(addr: Addr<SinkActor>) -> Self {
        Self { addr, claim: None }
    }

    /// Starts a supervised SinkActor on the current arbiter.
    pub fn start(replica: Arc<dyn Replica>, fence: Fence) -> Self {
        Self::new(actix::Supervisor::start(move |_| {
            SinkActor::new(replica, fence)
        }))
    }

    /// The same sink, sending `claim` with every table write.
    pub fn fenced(&self, claim: Claim) -> Self {
        Self {
            addr: self.addr.clone(),
            claim: Some(claim),
        }
    }

    /// The owner's claim this handle writes under (refused without one).
    pub fn owner_claim(&self, table: &TableId) -> Result<&Claim> {
        self.claim.as_ref().ok_or_else(|| unclaimed(table))
    }

    async fn call(&self, op: SinkOp) -> Result<SinkReply> {
        let req = SinkRequest {
            claim: self.claim.clone(),
            op,
        };
        self.addr
            .send(req)
            .await
            .map_err(|e| Error::Sink(e.to_string()))?
    }

    async fn write(&self, op: SinkOp) -> Result<()> {
        self.call(op).await.map(|_| ())
    }

    pub async fn begin_full_load(&self, schema: Arc<TableSchema>, start: LoadStart) -> Result<()> {
        self.write(SinkOp::BeginFullLoad(schema, start)).await
    }

    pub async fn insert_rows(
        &self,
        schema: Arc<TableSchema>,
        rows: Vec<Row>,
        load: PendingLoad,
    ) -> Result<()> {
        self.write(SinkOp::InsertRows(schema, rows, load)).await
    }

    pub async fn apply(&self, schema: Arc<TableSchema>, batch: ChangeBatch) -> Result<()> {
        self.write(SinkOp::Apply(schema, batch)).await
    }

    /// Moves idle tables' versions in one replica transaction (see
    /// [`Replica::advance_versions`]); the tables moved.
    pub async fn advance_versions(&self, advances: Vec<Advance>) -> Result<Vec<TableId>> {
        match self.call(SinkOp::AdvanceVersions(advances)).await? {
            SinkReply::Moved(moved) => Ok(moved),
            _ => Err(Error::Sink("unexpected reply to advance_versions".into())),
        }
    }

    pub async fn finish_full_load(
        &self,
        schema: Arc<TableSchema>,
        version: SyncVersion,
        mode: LoadMode,
    ) -> Result<()> {
        self.write(SinkOp::FinishFullLoad(schema, version, mode))
            .await
    }

    pub async fn cancel_load(&self, table: TableId, version: SyncVersion) -> Result<()> {
        self.write(SinkOp::CancelLoad(table, version)).await
    }

    pub async fn swap_blockers(&self, table: TableId) -> Result<Vec<String>> {
        match self.call(SinkOp::SwapBlockers(table)).await? {
            SinkReply::Blockers(b) => Ok(b),
            _ => Err(unexpected()),
        }
    }

    pub async fn record(&self, table: TableId) -> Result<ReplicaRecord> {
        match self.call(SinkOp::Record(table)).await? {
            SinkReply::Record(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    pub async fn replica_schema(&self, table: TableId) -> Result<Option<TableSchema>> {
        match self.call(SinkOp::ReplicaSchema(table)).await? {
            SinkReply::Schema(s) => Ok(s),
            _ => Err(unexpected()),
        }
    }

    pub async fn alter_columns(&self, table: TableId, ops: Vec<ColumnOp>) -> Result<()> {
        self.write(SinkOp::AlterColumns(table, ops)).await
    }

    pub async fn rename_column(&self, table: TableId, from: String, to: String) -> Result<()> {
        self.write(SinkOp::RenameColumn(table, from, to)).await
    }

    pub async fn rename_table(&self, from: TableId, to: TableId) -> Result<()> {
        self.write(SinkOp::RenameTable(from, to)).await
    }

    /// Claims `table` on the replica for `owner` under the supervisor's
    /// grant `generation`; returns the owner's claim.
    pub async fn claim(&self, table: TableId, owner: String, generation: u64) -> Result<Claim> {
        match self
            .call(SinkOp::Claim(table, owner.clone(), generation))
            .await?
        {
            SinkReply::Token(token) => Ok(Claim::new(owner, token)),
            _ => Err(unexpected()),
        }
    }

    pub async fn modules(&self) -> Result<Vec<ModuleDef>> {
        match self.call(SinkOp::Modules).await? {
            SinkReply::Modules(m) => Ok(m),
            _ => Err(unexpected()),
        }
    }

    pub async fn apply_module(&self, op: ModuleOp) -> Result<()> {
        self.write(SinkOp::Module(op)).await
    }

    pub async fn inbox_add(&self, messages: Vec<QueueMessage>) -> Result<()> {
        self.write(SinkOp::InboxAdd(messages)).await
    }

    pub async fn inbox_pending(&self) -> Result<Vec<InboxMessage>> {
        match self.call(SinkOp::InboxPending).await? {
            SinkReply::Inbox(m) => Ok(m),
            _ => Err(unexpected()),
        }
    }

    pub async fn inbox_settle(&self, id: String, outcome: InboxOutcome) -> Result<()> {
        self.write(SinkOp::InboxSettle(id, outcome)).await
    }
}
