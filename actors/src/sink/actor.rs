//! SinkActor: the only writer to the replica. Every handler is atomic
//! (`AtomicResponse`), so one write finishes before the next starts, and
//! each is answered once its transaction committed (or failed).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::order::Queued;
use crate::error::{Error, Result};
use crate::fence::{Claim, Fence};
use crate::model::{ChangeBatch, ColumnOp, Row, SyncVersion, TableId, TableSchema};
use crate::modules::ModuleOp;
use crate::ports::{
    Advance, InboxOutcome, LoadMode, LoadStart, PendingLoad, QueueMessage, Replica,
};
use crate::telemetry;

/// A write of one table's rows, schema or record, made under its owner's
/// claim (sent only by [`super::OwnerSink`]).
pub enum TableOp {
    BeginFullLoad(Arc<TableSchema>, LoadStart),
    InsertRows(Arc<TableSchema>, Vec<Row>, PendingLoad),
    Apply(Arc<TableSchema>, ChangeBatch),
    FinishFullLoad(Arc<TableSchema>, SyncVersion, LoadMode),
    CancelLoad(TableId, SyncVersion),
    AlterColumns(TableId, Vec<ColumnOp>),
    RenameColumn(TableId, String, String),
    RenameTable(TableId, TableId),
}

impl TableOp {
    /// The table whose claim the write is made under.
    pub fn table(&self) -> &TableId {
        match self {
            TableOp::BeginFullLoad(s, _)
            | TableOp::InsertRows(s, _, _)
            | TableOp::Apply(s, _)
            | TableOp::FinishFullLoad(s, _, _) => &s.id,
            TableOp::CancelLoad(t, _)
            | TableOp::AlterColumns(t, _)
            | TableOp::RenameColumn(t, _, _)
            | TableOp::RenameTable(t, _) => t,
        }
    }

    /// Every table the write changes, whose reads wait for it: the table,
    /// its shadow for the steps of a load, the new name of a rename.
    pub(super) fn tables(&self) -> Vec<TableId> {
        let table = self.table().clone();
        match self {
            TableOp::BeginFullLoad(..)
            | TableOp::InsertRows(..)
            | TableOp::FinishFullLoad(..)
            | TableOp::CancelLoad(..) => vec![table.shadow(), table],
            TableOp::RenameTable(_, to) => vec![table, to.clone()],
            TableOp::Apply(..) | TableOp::AlterColumns(..) | TableOp::RenameColumn(..) => {
                vec![table]
            }
        }
    }
}

/// A table write and the claim it is made under: the only message that
/// writes a table, so no table write exists without a claim. Refused
/// before it starts unless the claim is the table's current one in this
/// process; the replica checks it again inside the write's transaction.
pub(super) struct TableWrite {
    pub claim: Claim,
    pub op: TableOp,
    pub queued: Queued,
}

impl Message for TableWrite {
    type Result = Result<()>;
}

/// Claims a table on the replica for an owner (instance id) and installs
/// the token under the supervisor's grant (generation); the token.
pub(super) struct ClaimTable {
    pub table: TableId,
    pub owner: String,
    pub generation: u64,
}

impl Message for ClaimTable {
    type Result = Result<u64>;
}

/// Idle tables' versions, each under its own claim (checked one by one: a
/// refused table stays, the others move); the tables moved.
pub(super) struct AdvanceVersions {
    pub advances: Vec<Advance>,
    pub queued: Queued,
}

impl Message for AdvanceVersions {
    type Result = Result<Vec<TableId>>;
}

/// Creates, alters or drops one module.
pub(super) struct ModuleWrite(pub ModuleOp);

impl Message for ModuleWrite {
    type Result = Result<()>;
}

/// Records received DDL messages in the inbox.
pub(super) struct InboxAdd(pub Vec<QueueMessage>);

impl Message for InboxAdd {
    type Result = Result<()>;
}

/// Records what became of an inbox message.
pub(super) struct InboxSettle(pub String, pub InboxOutcome);

impl Message for InboxSettle {
    type Result = Result<()>;
}

pub struct SinkActor {
    replica: Arc<dyn Replica>,
    fence: Fence,
}

impl SinkActor {
    pub fn new(replica: Arc<dyn Replica>, fence: Fence) -> Self {
        Self { replica, fence }
    }

    /// Runs `write` to its end before the actor handles another message,
    /// counting a refused claim.
    fn atomic<T: 'static>(
        &self,
        write: impl Future<Output = Result<T>> + 'static,
    ) -> AtomicResponse<Self, Result<T>> {
        AtomicResponse::new(Box::pin(
            async move {
                let result = write.await;
                if let Err(e @ Error::Fenced { .. }) = &result {
                    telemetry::fenced_write(e);
                }
                result
            }
            .into_actor(self),
        ))
    }
}

impl Actor for SinkActor {
    type Context = Context<Self>;
}

impl Supervised for SinkActor {}

async fn write_table(replica: &dyn Replica, op: TableOp, claim: &Claim) -> Result<()> {
    match op {
        TableOp::BeginFullLoad(schema, start) => {
            replica.begin_full_load(&schema, &start, claim).await
        }
        TableOp::InsertRows(schema, rows, load) => {
            replica.insert_rows(&schema, &rows, &load, claim).await
        }
        TableOp::Apply(schema, batch) => {
            let started = Instant::now();
            let result = replica.apply_changes(&schema, &batch, claim).await;
            let key = schema.id.key_name();
            telemetry::batch(&key, result.is_ok(), started.elapsed().as_secs_f64());
            if result.is_err() {
                telemetry::error("sink");
            }
            result
        }
        TableOp::FinishFullLoad(schema, version, mode) => {
            replica
                .finish_full_load(&schema, version, mode, claim)
                .await
        }
        TableOp::CancelLoad(table, version) => replica.cancel_load(&table, version, claim).await,
        TableOp::AlterColumns(table, ops) => replica.alter_columns(&table, &ops, claim).await,
        TableOp::RenameColumn(table, from, to) => {
            replica.rename_column(&table, &from, &to, claim).await
        }
        TableOp::RenameTable(from, to) => replica.rename_table(&from, &to, claim).await,
    }
}

impl Handler<TableWrite> for SinkActor {
    type Result = AtomicResponse<Self, Result<()>>;

    fn handle(&mut self, write: TableWrite, _ctx: &mut Self::Context) -> Self::Result {
        let TableWrite { claim, op, queued } = write;
        // This process's fence first: a retired owner's write never starts.
        let admitted = self.fence.check(op.table(), claim.token);
        let replica = self.replica.clone();
        self.atomic(async move {
            admitted?;
            let result = write_table(replica.as_ref(), op, &claim).await;
            drop(queued);
            result
        })
    }
}

impl Handler<ClaimTable> for SinkActor {
    type Result = AtomicResponse<Self, Result<u64>>;

    fn handle(&mut self, msg: ClaimTable, _ctx: &mut Self::Context) -> Self::Result {
        let (replica, fence) = (self.replica.clone(), self.fence.clone());
        self.atomic(async move {
            let token = replica.claim(&msg.table, &msg.owner).await?;
            fence.install(&msg.table, msg.generation, token)?;
            Ok(token)
        })
    }
}

impl Handler<AdvanceVersions> for SinkActor {
    type Result = AtomicResponse<Self, Result<Vec<TableId>>>;

    fn handle(&mut self, msg: AdvanceVersions, _ctx: &mut Self::Context) -> Self::Result {
        let AdvanceVersions { advances, queued } = msg;
        // This process's fence first, as for every table write.
        let admitted: Vec<Advance> = advances
            .into_iter()
            .filter(|a| match self.fence.check(&a.table, a.claim.token) {
                Ok(()) => true,
                Err(e) => {
                    telemetry::fenced_write(&e);
                    false
                }
            })
            .collect();
        let replica = self.replica.clone();
        self.atomic(async move {
            if admitted.is_empty() {
                return Ok(Vec::new());
            }
            let moved = replica.advance_versions(&admitted).await;
            drop(queued);
            moved
        })
    }
}

impl Handler<ModuleWrite> for SinkActor {
    type Result = AtomicResponse<Self, Result<()>>;

    fn handle(&mut self, msg: ModuleWrite, _ctx: &mut Self::Context) -> Self::Result {
        let replica = self.replica.clone();
        self.atomic(async move { replica.apply_module(&msg.0).await })
    }
}

impl Handler<InboxAdd> for SinkActor {
    type Result = AtomicResponse<Self, Result<()>>;

    fn handle(&mut self, msg: InboxAdd, _ctx: &mut Self::Context) -> Self::Result {
        let replica = self.replica.clone();
        self.atomic(async move { replica.inbox_add(&msg.0).await })
    }
}

impl Handler<InboxSettle> for SinkActor {
    type Result = AtomicResponse<Self, Result<()>>;

    fn handle(&mut self, msg: InboxSettle, _ctx: &mut Self::Context) -> Self::Result {
        let replica = self.replica.clone();
        self.atomic(async move { replica.inbox_settle(&msg.0, &msg.1).await })
    }
}
