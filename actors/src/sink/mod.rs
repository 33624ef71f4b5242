//! The sink: the one door to the replica. Its writes go through the
//! SinkActor one at a time; its reads run on the replica port from the
//! caller's task, beside the writes, each after its own table's earlier ones.

mod actor;
mod order;
mod owner;

use std::sync::Arc;

use actix::prelude::*;

use self::actor::{AdvanceVersions, ClaimTable, InboxAdd, InboxSettle, ModuleWrite};
pub use self::actor::{SinkActor, TableOp};
use self::order::WriteOrder;
pub use self::owner::OwnerSink;
use crate::error::{Error, Result};
use crate::fence::{Claim, Fence};
use crate::model::{TableId, TableSchema};
use crate::modules::{ModuleDef, ModuleOp};
use crate::ports::{Advance, InboxMessage, InboxOutcome, QueueMessage, Replica, ReplicaRecord};

/// Cloneable access to the replica: the SinkActor's writes that need no
/// table owner (claims, the idle tables' batch, modules, the DDL inbox)
/// and the reads.
///
/// A table write exists only with its owner's claim: its methods are on
/// [`OwnerSink`], which [`Self::fenced`] makes from a [`Claim`], and it
/// travels as a message that carries the claim. The SinkActor refuses it
/// before it starts unless the claim is the table's current one in this
/// process; the replica checks it again inside the write's transaction
/// (see `crate::fence`).
///
/// Reads and write order: a read of table T (its record, swap blockers,
/// replica schema: what decides T's next write) first waits until every
/// write of T queued before the read began has finished (see `order`), so
/// it never sees the replica as it was before a write it follows. A write
/// of another table never delays it: the replica's catalog is not queued
/// behind a 5,000-row page of someone else's load. Module and inbox reads
/// are not ordered so: their only writers (the ModuleSyncActor and the
/// DdlListenerActor, one of each per process) read, then write and await
/// each write before reading again, so no write of theirs is pending when
/// they read.
#[derive(Clone)]
pub struct SinkHandle {
    addr: Addr<SinkActor>,
    replica: Arc<dyn Replica>,
    order: WriteOrder,
}

impl SinkHandle {
    /// Starts a supervised SinkActor on the current arbiter.
    pub fn start(replica: Arc<dyn Replica>, fence: Fence) -> Self {
        let writer = replica.clone();
        let addr = actix::Supervisor::start(move |_| SinkActor::new(writer, fence));
        Self {
            addr,
            replica,
            order: WriteOrder::default(),
        }
    }

    /// The table owner's sink: table writes, each under `claim`.
    pub fn fenced(&self, claim: Claim) -> OwnerSink {
        OwnerSink::new(self.clone(), claim)
    }

    async fn send<M, T>(&self, msg: M) -> Result<T>
    where
        M: Message<Result = Result<T>> + Send + 'static,
        T: Send + 'static,
        SinkActor: Handler<M>,
    {
        self.addr
            .send(msg)
            .await
            .map_err(|e| Error::Sink(e.to_string()))?
    }

    /// Claims `table` on the replica for `owner` under the supervisor's
    /// grant `generation`; returns the owner's claim.
    pub async fn claim(&self, table: TableId, owner: String, generation: u64) -> Result<Claim> {
        let token = self
            .send(ClaimTable {
                table,
                owner: owner.clone(),
                generation,
            })
            .await?;
        Ok(Claim::new(owner, token))
    }

    /// Moves idle tables' versions in one replica transaction (see
    /// [`Replica::advance_versions`]); the tables moved.
    pub async fn advance_versions(&self, advances: Vec<Advance>) -> Result<Vec<TableId>> {
        let tables: Vec<TableId> = advances.iter().map(|a| a.table.clone()).collect();
        let queued = self.order.queue(&tables);
        self.send(AdvanceVersions { advances, queued }).await
    }

    /// ctsync's record of `table`, after the table's earlier writes.
    pub async fn record(&self, table: TableId) -> Result<ReplicaRecord> {
        self.order.after_writes(&table).await;
        self.replica.record(&table).await
    }

    /// `table` as the replica's catalog has it, after its earlier writes.
    pub async fn replica_schema(&self, table: TableId) -> Result<Option<TableSchema>> {
        self.order.after_writes(&table).await;
        self.replica.table_schema(&table).await
    }

    /// What blocks a shadow load of `table`, after its earlier writes.
    pub async fn swap_blockers(&self, table: TableId) -> Result<Vec<String>> {
        self.order.after_writes(&table).await;
        self.replica.swap_blockers(&table).await
    }

    /// The modules schema-bound to `table`, after its earlier writes.
    pub async fn schema_bound_dependents(&self, table: TableId) -> Result<Vec<ModuleOp>> {
        self.order.after_writes(&table).await;
        self.replica.schema_bound_dependents(&table).await
    }

    /// The replica's modules (unordered: see the module docs).
    pub async fn modules(&self) -> Result<Vec<ModuleDef>> {
        self.replica.modules().await
    }

    pub async fn apply_module(&self, op: ModuleOp) -> Result<()> {
        self.send(ModuleWrite(op)).await
    }

    pub async fn inbox_add(&self, messages: Vec<QueueMessage>) -> Result<()> {
        self.send(InboxAdd(messages)).await
    }

    /// The inbox's pending messages (unordered: see the module docs).
    pub async fn inbox_pending(&self) -> Result<Vec<InboxMessage>> {
        self.replica.inbox_pending().await
    }

    pub async fn inbox_settle(&self, id: String, outcome: InboxOutcome) -> Result<()> {
        self.send(InboxSettle(id, outcome)).await
    }
}
