//! SinkActor: the only writer to the replica. Its handler is atomic
//! (`AtomicResponse`), so one write finishes before the next starts, and
//! every request is answered once its transaction has committed (or failed).

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use crate::error::{Error, Result};
use crate::model::{ChangeBatch, Row, SyncVersion, TableId, TableSchema};
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
}

pub enum SinkReply {
    Done,
    Created(bool),
    Version(Option<SyncVersion>),
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
}
