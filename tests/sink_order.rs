//! The sink serializes writes, not reads: a read of one table does not wait
//! for another table's write, a read of a table waits for that table's
//! earlier write, and no table write exists without its owner's claim.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ctsync_actors::fence::{Claim, Fence};
use ctsync_actors::memory::MemoryReplica;
use ctsync_actors::model::{ChangeBatch, ColumnOp, Row, SyncVersion, TableId, TableSchema};
use ctsync_actors::modules::{ModuleDef, ModuleOp};
use ctsync_actors::ports::{
    Advance, InboxMessage, InboxOutcome, LoadMode, LoadStart, PendingLoad, QueueMessage, Replica,
    ReplicaRecord,
};
use ctsync_actors::sink::{OwnerSink, SinkHandle};
use ctsync_actors::Result;
use support::fixtures::{user, user_table};
use tokio::sync::{Notify, Semaphore};

/// The memory replica, except that `apply_changes` of one table waits
/// inside the replica (having said so) until the test lets it go on.
struct Holding {
    inner: MemoryReplica,
    table: TableId,
    entered: Notify,
    release: Semaphore,
}

impl Holding {
    async fn hold(&self, table: &TableId) {
        if *table == self.table {
            self.entered.notify_one();
            let _ = self.release.acquire().await.map(|p| p.forget());
        }
    }
}

#[async_trait]
impl Replica for Holding {
    async fn begin_full_load(&self, s: &TableSchema, start: &LoadStart, c: &Claim) -> Result<()> {
        self.inner.begin_full_load(s, start, c).await
    }
    async fn insert_rows(
        &self,
        s: &TableSchema,
        rows: &[Row],
        load: &PendingLoad,
        c: &Claim,
    ) -> Result<()> {
        self.inner.insert_rows(s, rows, load, c).await
    }
    async fn apply_changes(&self, s: &TableSchema, batch: &ChangeBatch, c: &Claim) -> Result<()> {
        self.hold(&s.id).await;
        self.inner.apply_changes(s, batch, c).await
    }
    async fn finish_full_load(
        &self,
        s: &TableSchema,
        v: SyncVersion,
        mode: LoadMode,
        c: &Claim,
    ) -> Result<()> {
        self.inner.finish_full_load(s, v, mode, c).await
    }
    async fn cancel_load(&self, t: &TableId, v: SyncVersion, c: &Claim) -> Result<()> {
        self.inner.cancel_load(t, v, c).await
    }
    async fn advance_versions(&self, advances: &[Advance]) -> Result<Vec<TableId>> {
        self.inner.advance_versions(advances).await
    }
    async fn swap_blockers(&self, t: &TableId) -> Result<Vec<String>> {
        self.inner.swap_blockers(t).await
    }
    async fn schema_bound_dependents(&self, t: &TableId) -> Result<Vec<ModuleOp>> {
        self.inner.schema_bound_dependents(t).await
    }
    async fn record(&self, t: &TableId) -> Result<ReplicaRecord> {
        self.inner.record(t).await
    }
    async fn table_schema(&self, t: &TableId) -> Result<Option<TableSchema>> {
        self.inner.table_schema(t).await
    }
    async fn alter_columns(&self, t: &TableId, ops: &[ColumnOp], c: &Claim) -> Result<()> {
        self.inner.alter_columns(t, ops, c).await
    }
    async fn rename_column(&self, t: &TableId, from: &str, to: &str, c: &Claim) -> Result<()> {
        self.inner.rename_column(t, from, to, c).await
    }
    async fn rename_table(&self, from: &TableId, to: &TableId, c: &Claim) -> Result<()> {
        self.inner.rename_table(from, to, c).await
    }
    async fn claim(&self, t: &TableId, owner: &str) -> Result<u64> {
        self.inner.claim(t, owner).await
    }
    async fn modules(&self) -> Result<Vec<ModuleDef>> {
        self.inner.modules().await
    }
    async fn inbox_add(&self, messages: &[QueueMessage]) -> Result<()> {
        self.inner.inbox_add(messages).await
    }
    async fn inbox_pending(&self) -> Result<Vec<InboxMessage>> {
        self.inner.inbox_pending().await
    }
    async fn inbox_settle(&self, id: &str, outcome: &InboxOutcome) -> Result<()> {
        self.inner.inbox_settle(id, outcome).await
    }
    async fn apply_module(&self, op: &ModuleOp) -> Result<()> {
        self.inner.apply_module(op).await
    }
}

/// A sink over a replica whose writes of `held` wait inside it, and two
/// loaded tables A and B, each with its owner's sink.
struct Setup {
    replica: Arc<Holding>,
    sink: SinkHandle,
    owners: Vec<(Arc<TableSchema>, OwnerSink)>,
}

async fn setup(held: &str) -> Setup {
    let replica = Arc::new(Holding {
        inner: MemoryReplica::new(),
        table: TableId::new("dbo", held),
        entered: Notify::new(),
        release: Semaphore::new(0),
    });
    let fence = Fence::default();
    let sink = SinkHandle::start(replica.clone(), fence.clone());
    let mut owners = Vec::new();
    for name in ["A", "B"] {
        let mut schema = user_table();
        schema.id = TableId::new("dbo", name);
        let schema = Arc::new(schema);
        let until = tokio::time::Instant::now() + Duration::from_secs(600);
        let generation = fence.grant(&schema.id, until);
        let claim = sink
            .claim(schema.id.clone(), "me".into(), generation)
            .await
            .expect("claim");
        let owner = sink.fenced(claim);
        let load = PendingLoad {
            mode: LoadMode::InPlace,
            start_version: 1,
            ..PendingLoad::default()
        };
        let start = LoadStart {
            load,
            recreate: true,
        };
        owner
            .begin_full_load(schema.clone(), start)
            .await
            .expect("begin");
        owner
            .finish_full_load(schema.clone(), 1, LoadMode::InPlace)
            .await
            .expect("finish");
        owners.push((schema, owner));
    }
    Setup {
        replica,
        sink,
        owners,
    }
}

fn batch(table: &TableId, id: i32, version: SyncVersion) -> ChangeBatch {
    ChangeBatch {
        table: table.clone(),
        keys: vec![support::fixtures::user_key(id)],
        rows: vec![user(id, "changed")],
        version: Some(version),
        backlog: None,
    }
}

/// Starts a write of table `i` (0: A, 1: B) that records `version`.
fn spawn_write(s: &Setup, i: usize, version: SyncVersion) -> tokio::task::JoinHandle<Result<()>> {
    let (schema, owner) = s.owners[i].clone();
    let b = batch(&schema.id, 1, version);
    actix_rt::spawn(async move { owner.apply(schema, b).await })
}

/// Fails on the old sink, where every read was one more message in the
/// SinkActor's mailbox, behind the held write.
#[actix_rt::test]
async fn a_read_of_one_table_does_not_wait_for_a_write_of_another() {
    let s = setup("A").await;
    let write = spawn_write(&s, 0, 2);
    s.replica.entered.notified().await; // A's write is inside the replica
    let b = s.owners[1].0.id.clone();
    let reads = async {
        let record = s.sink.record(b.clone()).await?;
        let schema = s.sink.replica_schema(b.clone()).await?;
        let blockers = s.sink.swap_blockers(b.clone()).await?;
        let modules = s.sink.modules().await?;
        let inbox = s.sink.inbox_pending().await?;
        Ok::<_, ctsync_actors::Error>((record, schema, blockers, modules, inbox))
    };
    let (record, schema, ..) = tokio::time::timeout(Duration::from_secs(2), reads)
        .await
        .expect("B's reads waited for A's write")
        .expect("reads");
    assert_eq!(record.version, Some(1));
    assert!(schema.is_some());
    assert!(!write.is_finished(), "A's write is still held");
    s.replica.release.add_permits(1);
    write.await.expect("join").expect("A's write");
    assert_eq!(s.replica.inner.recorded_version(&s.owners[0].0.id), Some(2));
}

/// Passes on the old sink too (it serialized everything); fails on a sink
/// that lets reads run beside writes without ordering them per table.
#[actix_rt::test]
async fn a_read_of_a_table_waits_for_its_write_queued_before_it() {
    let s = setup("A").await;
    let write = spawn_write(&s, 0, 2);
    s.replica.entered.notified().await;
    let a = s.owners[0].0.id.clone();
    let owner = s.owners[0].1.clone();
    let read = actix_rt::spawn({
        let a = a.clone();
        async move { owner.record(a).await }
    });
    let schema_read = actix_rt::spawn({
        let (sink, a) = (s.sink.clone(), a.clone());
        async move { sink.replica_schema(a).await }
    });
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !read.is_finished(),
        "A's record was read before A's write finished"
    );
    assert!(
        !schema_read.is_finished(),
        "A's schema was read before A's write finished"
    );
    s.replica.release.add_permits(1);
    write.await.expect("join").expect("A's write");
    let record = read.await.expect("join").expect("record");
    assert_eq!(
        record.version,
        Some(2),
        "the read sees the write it followed"
    );
    assert!(schema_read.await.expect("join").expect("schema").is_some());
}

/// Reads the text of `path` under the repository root.
fn source(path: &str) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    std::fs::read_to_string(format!("{root}/{path}")).expect("read source")
}

/// The text of `impl <name> {` … up to the next top-level `}`.
fn impl_block<'a>(text: &'a str, name: &str) -> &'a str {
    let start = text
        .find(&format!("impl {name} {{"))
        .unwrap_or_else(|| panic!("no impl {name}"));
    let end = text[start..]
        .find("\n}\n")
        .map_or(text.len(), |e| start + e);
    &text[start..end]
}

/// The fields of `struct <name> {` … `}`.
fn struct_fields<'a>(text: &'a str, name: &str) -> &'a str {
    let start = text
        .find(&format!("struct {name} {{"))
        .unwrap_or_else(|| panic!("no struct {name}"));
    let end = text[start..].find('}').map_or(text.len(), |e| start + e);
    &text[start..end]
}

/// A table write cannot be sent without a claim, by type: the shared
/// handle has no table-write method (they are only on `OwnerSink`, made
/// from a `Claim`), the message carries a `Claim` (not an `Option`), and no
/// sentinel claim stands in for a missing one. Fails on the old sink, whose
/// `SinkHandle` had every table write and an optional claim.
#[test]
fn a_table_write_exists_only_with_its_owners_claim() {
    const WRITES: [&str; 8] = [
        "begin_full_load",
        "insert_rows",
        "apply",
        "finish_full_load",
        "cancel_load",
        "alter_columns",
        "rename_column",
        "rename_table",
    ];
    let shared = source("actors/src/sink/mod.rs");
    let shared = impl_block(&shared, "SinkHandle");
    let owner_file = source("actors/src/sink/owner.rs");
    let owner = impl_block(&owner_file, "OwnerSink");
    for write in WRITES {
        let method = format!("pub async fn {write}(");
        assert!(
            !shared.contains(&method),
            "SinkHandle::{write} writes a table without a claim"
        );
        assert!(owner.contains(&method), "OwnerSink::{write} is missing");
    }
    let actor = source("actors/src/sink/actor.rs");
    for (text, name) in [(&owner_file, "OwnerSink"), (&actor, "TableWrite")] {
        let fields = struct_fields(text, name);
        assert!(
            fields.contains("claim: Claim,"),
            "{name} carries a Claim: {fields}"
        );
    }
    for file in ["mod.rs", "owner.rs", "actor.rs"] {
        let text = source(&format!("actors/src/sink/{file}"));
        assert!(
            !text.contains("Claim::new(\"\""),
            "a sentinel claim in sink/{file}"
        );
        assert!(
            !text.contains("Option<Claim>"),
            "an optional claim in sink/{file}"
        );
    }
}
