//! Throughput and memory of the pipeline with in-memory ports (no SQL
//! Server, no Redis): prints figures, asserts nothing about speed.
//!
//! Run: `cargo bench --bench pipeline`
//!
//! 1. Changes per second through TableActor → SinkActor (CT net changes
//!    read in pages, applied in replica transactions).
//! 2. Peak heap growth during a full load of 100,000 and 1,000,000 rows
//!    read from a generated primary (rows are made on demand, so only the
//!    pipeline's own memory is measured): the two should be about equal.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ctsync_actors::actors::{self, Ports};
use ctsync_actors::fence::Claim;
use ctsync_actors::memory::{MemoryPrimary, MemoryReplica, MemoryState};
use ctsync_actors::model::*;
use ctsync_actors::modules::{ModuleDef, ModuleOp};
use ctsync_actors::ports::{
    InboxMessage, InboxOutcome, LoadMode, LoadStart, PendingLoad, Primary, QueueMessage, Replica,
    ReplicaRecord, StateStore,
};
use ctsync_actors::sync::SyncConfig;
use ctsync_actors::Result;

struct Counting;

static CURRENT: AtomicI64 = AtomicI64::new(0);
static PEAK: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now =
                CURRENT.fetch_add(layout.size() as i64, Ordering::Relaxed) + layout.size() as i64;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size() as i64, Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn schema(name: &str) -> TableSchema {
    TableSchema {
        id: TableId::new("dbo", name),
        columns: vec![
            ColumnDef::new("Id", SqlType::BigInt, false),
            ColumnDef::new("Name", SqlType::NVarChar(Len::N(200)), true),
            ColumnDef::new(
                "Amount",
                SqlType::Decimal {
                    precision: 18,
                    scale: 2,
                },
                true,
            ),
            ColumnDef::new("Payload", SqlType::VarBinary(Len::N(64)), true),
        ],
        primary_key: vec![KeyColumn {
            name: "Id".into(),
            descending: false,
        }],
    }
}

fn row(id: i64) -> Row {
    vec![
        Value::I64(id),
        Value::String(format!("customer number {id} with a longer name")),
        Value::Decimal {
            value: i128::from(id) * 100 + 99,
            scale: 2,
        },
        Value::Binary(vec![(id % 251) as u8; 48]),
    ]
}

/// A primary whose one table has `rows` rows made on demand.
struct GeneratedPrimary {
    schema: TableSchema,
    rows: i64,
}

#[async_trait]
impl Primary for GeneratedPrimary {
    async fn identity(&self) -> Result<PrimaryIdentity> {
        Ok(PrimaryIdentity {
            broker_guid: "bench".into(),
            create_date: "bench".into(),
        })
    }
    async fn tracked_tables(&self) -> Result<Vec<TableId>> {
        Ok(vec![self.schema.id.clone()])
    }
    async fn table_schema(&self, _: &TableId) -> Result<TableSchema> {
        Ok(self.schema.clone())
    }
    async fn current_version(&self) -> Result<SyncVersion> {
        Ok(1)
    }
    async fn min_valid_version(&self, _: &TableId) -> Result<Option<SyncVersion>> {
        Ok(Some(0))
    }
    async fn row_count(&self, _: &TableId) -> Result<u64> {
        Ok(self.rows as u64)
    }
    async fn change_retention(&self) -> Result<Option<Duration>> {
        Ok(None)
    }
    async fn modules(&self) -> Result<Vec<ModuleDef>> {
        Ok(Vec::new())
    }
    async fn read_page(
        &self,
        _: &TableSchema,
        after: Option<&RowKey>,
        limit: usize,
    ) -> Result<Vec<Row>> {
        let start = match after.and_then(|k| k.0.first()) {
            Some(Value::I64(v)) => v + 1,
            _ => 1,
        };
        let end = (start + limit as i64 - 1).min(self.rows);
        Ok((start..=end).map(row).collect())
    }
    async fn changes_page(
        &self,
        _: &TableSchema,
        _: SyncVersion,
        _: Option<&RowKey>,
        _: usize,
    ) -> Result<ChangePage> {
        Ok(ChangePage::default())
    }
}

/// A replica that counts rows and keeps none.
#[derive(Default)]
struct CountingReplica {
    rows: AtomicU64,
    version: AtomicI64,
    claims: AtomicU64,
}

#[async_trait]
impl Replica for CountingReplica {
    async fn begin_full_load(&self, _: &TableSchema, _: &LoadStart, _: &Claim) -> Result<()> {
        self.rows.store(0, Ordering::SeqCst);
        Ok(())
    }
    async fn insert_rows(
        &self,
        _: &TableSchema,
        rows: &[Row],
        _: &PendingLoad,
        _: &Claim,
    ) -> Result<()> {
        self.rows.fetch_add(rows.len() as u64, Ordering::SeqCst);
        Ok(())
    }
    async fn apply_changes(&self, _: &TableSchema, _: &ChangeBatch, _: &Claim) -> Result<()> {
        Ok(())
    }
    async fn finish_full_load(
        &self,
        _: &TableSchema,
        version: SyncVersion,
        _: LoadMode,
        _: &Claim,
    ) -> Result<()> {
        self.version.store(version, Ordering::SeqCst);
        Ok(())
    }
    async fn cancel_load(&self, _: &TableId, _: SyncVersion, _: &Claim) -> Result<()> {
        Ok(())
    }
    async fn claim(&self, _: &TableId, _: &str) -> Result<u64> {
        Ok(self.claims.fetch_add(1, Ordering::SeqCst) + 1)
    }
    async fn swap_blockers(&self, _: &TableId) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    async fn record(&self, _: &TableId) -> Result<ReplicaRecord> {
        Ok(ReplicaRecord::default())
    }
    async fn table_schema(&self, _: &TableId) -> Result<Option<TableSchema>> {
        Ok(None)
    }
    async fn alter_columns(&self, _: &TableId, _: &[ColumnOp], _: &Claim) -> Result<()> {
        Ok(())
    }
    async fn rename_column(&self, _: &TableId, _: &str, _: &str, _: &Claim) -> Result<()> {
        Ok(())
    }
    async fn rename_table(&self, _: &TableId, _: &TableId, _: &Claim) -> Result<()> {
        Ok(())
    }
    async fn modules(&self) -> Result<Vec<ModuleDef>> {
        Ok(Vec::new())
    }
    async fn inbox_add(&self, _: &[QueueMessage]) -> Result<()> {
        Ok(())
    }
    async fn inbox_pending(&self) -> Result<Vec<InboxMessage>> {
        Ok(Vec::new())
    }
    async fn inbox_settle(&self, _: &str, _: &InboxOutcome) -> Result<()> {
        Ok(())
    }
    async fn apply_module(&self, _: &ModuleOp) -> Result<()> {
        Ok(())
    }
}

fn config() -> SyncConfig {
    SyncConfig {
        poll_interval: Duration::from_millis(5),
        ..SyncConfig::default()
    }
}

async fn wait(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while !done() {
        assert!(Instant::now() < deadline, "bench timed out: {what}");
        actix_rt::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn changes_per_second(changes: i64) -> f64 {
    let primary = Arc::new(MemoryPrimary::new());
    let replica = Arc::new(MemoryReplica::new());
    let state = Arc::new(MemoryState::new());
    let s = schema("Changes");
    primary.create_table(s.clone(), true);
    primary.insert_many(&s.id, (1..=10_000).map(row));
    state.set("mssql_sync:enabled:Changes", "true");
    let run = actors::start(
        Ports {
            primary: primary.clone(),
            replica: replica.clone(),
            state: state.clone(),
            ddl_queue: None,
        },
        config(),
    );
    wait("initial load", || replica.recorded_version(&s.id).is_some()).await;

    // Distinct new keys in primary transactions of 100 rows, so every
    // change is one net change to read and apply.
    let started = Instant::now();
    let mut id = 0;
    while id < changes {
        let batch: Vec<Row> = (id..id + 100).map(|i| row(10_001 + i)).collect();
        primary.insert_many(&s.id, batch);
        id += 100;
    }
    let target = primary.version();
    wait("changes applied", || {
        replica.recorded_version(&s.id) == Some(target)
    })
    .await;
    let secs = started.elapsed().as_secs_f64();
    run.supervisor.do_send(actors::Shutdown);
    changes as f64 / secs
}

async fn full_load_peak(rows: i64) -> (f64, i64) {
    let s = schema("Big");
    let primary = Arc::new(GeneratedPrimary {
        schema: s.clone(),
        rows,
    });
    let replica = Arc::new(CountingReplica::default());
    let state = Arc::new(MemoryState::new());
    state.set("mssql_sync:enabled:Big", "true");
    let state_port: Arc<dyn StateStore> = state.clone();
    let baseline = CURRENT.load(Ordering::SeqCst);
    PEAK.store(baseline, Ordering::SeqCst);
    let started = Instant::now();
    let run = actors::start(
        Ports {
            primary,
            replica: replica.clone(),
            state: state_port,
            ddl_queue: None,
        },
        config(),
    );
    wait("full load", || replica.version.load(Ordering::SeqCst) == 1).await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(replica.rows.load(Ordering::SeqCst), rows as u64);
    run.supervisor.do_send(actors::Shutdown);
    (rows as f64 / secs, PEAK.load(Ordering::SeqCst) - baseline)
}

fn main() {
    let system = actix::System::new();
    system.block_on(async {
        let cps = changes_per_second(200_000).await;
        println!("incremental: {cps:>12.0} changes/s (200,000 inserted keys, pages of 5,000, in-memory ports)");
        let mut peaks = Vec::new();
        for rows in [100_000i64, 1_000_000] {
            let (rps, peak) = full_load_peak(rows).await;
            println!(
                "full load:   {rows:>9} rows  {rps:>10.0} rows/s  peak heap growth {:>8.1} MiB",
                peak as f64 / (1024.0 * 1024.0)
            );
            peaks.push(peak);
        }
        println!(
            "peak memory ratio 1,000,000 / 100,000 rows: {:.2} (about 1 means memory does not grow with table size)",
            peaks[1] as f64 / peaks[0].max(1) as f64
        );
    });
}
