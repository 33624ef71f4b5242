//! SinkActor: the only writer to the replica. Its handler is atomic
//! (`AtomicResponse`), so one write finishes before the next starts, and
//! every request is answered once its transaction has committed (or failed).

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use crate::error::{Error, Result};
use crate::model::{ChangeBatch, ColumnOp, Row, SyncVersion, TableId, TableSchema};
use crate::modules::{ModuleDef, ModuleOp};
use crate::ports::Replica;
use crate::telemetry;

/// One request to the replica.
pub enum SinkOp {
    EnsureTable(Arc<TableSchema>),
    BeginFullLoad(Arc<TableSchema>),
    InsertRows(Arc<TableSchema>, Vec<Row>),
    Apply(Arc<TableSchema>, ChangeBatch),
    FinishFullLoad(TableId, SyncVersion),
    StoredVersion(TableId),
    ReplicaSchema(TableId),
    AlterColumns(TableId, Vec<ColumnOp>),
    RenameColumn(TableId, String, String),
    RenameTable(TableId, TableId),
    DropTable(TableId),
    Modules,
    Module(ModuleOp),
}

pub enum SinkReply {
    Done,
    Created(bool),
    Version(Option<SyncVersion>),
    Schema(Option<TableSchema>),
    Modules(Vec<ModuleDef>),
}

impl Message for SinkOp {
    type Result = Result<SinkReply>;
}

pub struct SinkActor {
    replica: Arc<dyn Replica>,
}

impl SinkActor {
    pub fn new(replica: Arc<dyn Replica>) -> Self {
        Self { replica }
    }
}

impl Actor for SinkActor {
    type Context = Context<Self>;
}

impl Supervised for SinkActor {}

async fn perform(replica: Arc<dyn Replica>, op: SinkOp) -> Result<SinkReply> {
    match op {
        SinkOp::EnsureTable(schema) => replica.ensure_table(&schema).await.map(SinkReply::Created),
        SinkOp::BeginFullLoad(schema) => replica
            .begin_full_load(&schema)
            .await
            .map(|_| SinkReply::Done),
        SinkOp::InsertRows(schema, rows) => replica
            .insert_rows(&schema, &rows)
            .await
            .map(|_| SinkReply::Done),
        SinkOp::Apply(schema, batch) => {
            let started = Instant::now();
            let result = replica.apply_changes(&schema, &batch).await;
            let key = schema.id.key_name();
            telemetry::batch(&key, result.is_ok(), started.elapsed().as_secs_f64());
            if result.is_err() {
                telemetry::error("sink");
            }
            result.map(|_| SinkReply::Done)
        }
        SinkOp::FinishFullLoad(table, version) => replica
            .finish_full_load(&table, version)
            .await
            .map(|_| SinkReply::Done),
        SinkOp::StoredVersion(table) => {
            replica.stored_version(&table).await.map(SinkReply::Version)
        }
        SinkOp::ReplicaSchema(table) => replica.table_schema(&table).await.map(SinkReply::Schema),
        SinkOp::AlterColumns(table, ops) => replica
            .alter_columns(&table, &ops)
            .await
            .map(|_| SinkReply::Done),
        SinkOp::RenameColumn(table, from, to) => replica
            .rename_column(&table, &from, &to)
            .await
            .map(|_| SinkReply::Done),
        SinkOp::RenameTable(from, to) => replica
            .rename_table(&from, &to)
            .await
            .map(|_| SinkReply::Done),
        SinkOp::DropTable(table) => replica.drop_table(&table).await.map(|_| SinkReply::Done),
        SinkOp::Modules => replica.modules().await.map(SinkReply::Modules),
        SinkOp::Module(op) => replica.apply_module(&op).await.map(|_| SinkReply::Done),
    }
}

impl Handler<SinkOp> for SinkActor {
    type Result = AtomicResponse<Self, Result<SinkReply>>;

    fn handle(&mut self, op: SinkOp, _ctx: &mut Self::Context) -> Self::Result {
        let replica = self.replica.clone();
        AtomicResponse::new(Box::pin(perform(replica, op).into_actor(self)))
    }
}

/// Typed, cloneable access to the SinkActor.
#[derive(Clone)]
pub struct SinkHandle {
    addr: Addr<SinkActor>,
}

fn unexpected() -> Error {
    Error::Sink("unexpected reply".into())
}

impl SinkHandle {
    pub fn new(addr: Addr<SinkActor>) -> Self {
        Self { addr }
    }

    /// Starts a supervised SinkActor on the current arbiter.
    pub fn start(replica: Arc<dyn Replica>) -> Self {
        Self::new(actix::Supervisor::start(move |_| SinkActor::new(replica)))
    }

    async fn call(&self, op: SinkOp) -> Result<SinkReply> {
        self.addr
            .send(op)
            .await
            .map_err(|e| Error::Sink(e.to_string()))?
    }

    pub async fn ensure_table(&self, schema: Arc<TableSchema>) -> Result<bool> {
        match self.call(SinkOp::EnsureTable(schema)).await? {
            SinkReply::Created(c) => Ok(c),
            _ => Err(unexpected()),
        }
    }

    pub async fn begin_full_load(&self, schema: Arc<TableSchema>) -> Result<()> {
        self.call(SinkOp::BeginFullLoad(schema)).await.map(|_| ())
    }

    pub async fn insert_rows(&self, schema: Arc<TableSchema>, rows: Vec<Row>) -> Result<()> {
        self.call(SinkOp::InsertRows(schema, rows))
            .await
            .map(|_| ())
    }

    pub async fn apply(&self, schema: Arc<TableSchema>, batch: ChangeBatch) -> Result<()> {
        self.call(SinkOp::Apply(schema, batch)).await.map(|_| ())
    }

    pub async fn finish_full_load(&self, table: TableId, version: SyncVersion) -> Result<()> {
        self.call(SinkOp::FinishFullLoad(table, version))
            .await
            .map(|_| ())
    }

    pub async fn stored_version(&self, table: TableId) -> Result<Option<SyncVersion>> {
        match self.call(SinkOp::StoredVersion(table)).await? {
            SinkReply::Version(v) => Ok(v),
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
        self.call(SinkOp::AlterColumns(table, ops))
            .await
            .map(|_| ())
    }

    pub async fn rename_column(&self, table: TableId, from: String, to: String) -> Result<()> {
        self.call(SinkOp::RenameColumn(table, from, to))
            .await
            .map(|_| ())
    }

    pub async fn rename_table(&self, from: TableId, to: TableId) -> Result<()> {
        self.call(SinkOp::RenameTable(from, to)).await.map(|_| ())
    }

    pub async fn drop_table(&self, table: TableId) -> Result<()> {
        self.call(SinkOp::DropTable(table)).await.map(|_| ())
    }

    pub async fn modules(&self) -> Result<Vec<ModuleDef>> {
        match self.call(SinkOp::Modules).await? {
            SinkReply::Modules(m) => Ok(m),
            _ => Err(unexpected()),
        }
    }

    pub async fn apply_module(&self, op: ModuleOp) -> Result<()> {
        self.call(SinkOp::Module(op)).await.map(|_| ())
    }
}
