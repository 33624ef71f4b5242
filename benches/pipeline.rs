//! Throughput and memory of ctsync with in-memory SQL Server doubles that
//! cost what they change (the replica edits rows in place), prints figures
//! and asserts nothing about speed.
//!
//! Run: `cargo bench --bench pipeline` (`CTSYNC_BENCH_REDIS=1`: the state
//! store is a real redis-server this bench starts on a free port).
//!
//! 1. Requests per 5,000-row replica page (bulk copy and INSERT paths, 4
//!    and 20 columns), counted from the adapter's write plans, and the rate
//!    at which the adapter encodes rows for each path.
//! 2. Changes per second through TableActor → SinkActor: the changes are
//!    made on the primary first; the timed window is their apply only.
//!    Backlogs of 10k / 100k / 1M changes: change sets copied and pages
//!    read (primary requests grow linearly), and the read-ahead: pages that
//!    cost 2 ms to read and 2 ms to commit, against the serial and the
//!    fully overlapped bounds.
//! 3. Requests per idle poll at 1, 100 and 1,000 tables, counted at the
//!    ports.
//! 4. Peak heap growth during a full load of 100,000 and 1,000,000 rows
//!    made on demand by the primary and kept by no one, so only ctsync's
//!    own memory is measured: the two should be about equal.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ctsync_actors::actors::{self, Ports};
use ctsync_actors::memory::{MemoryPrimary, MemoryReplica, MemoryState};
use ctsync_actors::model::*;
use ctsync_actors::ports::{Primary, Replica, StateStore};
use ctsync_actors::sync::SyncConfig;

#[allow(dead_code)] // restart/stop are for the tests' outages
#[path = "../tests/support/redis_server.rs"]
mod redis_server;

#[path = "../tests/support/generated.rs"]
mod generated;

#[path = "../tests/support/poll_window.rs"]
mod poll_window;

use generated::{row, schema, CountingReplica, GeneratedPrimary};

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

fn config() -> SyncConfig {
    SyncConfig {
        poll_interval: Duration::from_millis(5),
        ..SyncConfig::default()
    }
}

async fn wait(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    let mut told = 0;
    while !done() {
        let waited = started.elapsed().as_secs();
        assert!(waited < 600, "bench timed out: {what}");
        if waited / 10 > told {
            told = waited / 10;
            eprintln!("still waiting after {waited} s: {what}");
        }
        actix_rt::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The state store: in memory, or on the bench's own redis-server.
fn state_store(redis: Option<&redis_server::RedisServer>) -> Arc<dyn StateStore> {
    match redis {
        Some(server) => Arc::new(ctsync::state::RedisState::new(&server.url()).expect("redis url")),
        None => Arc::new(MemoryState::new()),
    }
}

fn ports(
    primary: Arc<dyn Primary>,
    replica: Arc<dyn Replica>,
    state: Arc<dyn StateStore>,
) -> Ports {
    Ports {
        primary,
        replica,
        state,
        ddl_queue: None,
    }
}

async fn changes_per_second(changes: i64, redis: Option<&redis_server::RedisServer>) -> f64 {
    let primary = Arc::new(MemoryPrimary::new());
    let replica = Arc::new(MemoryReplica::new());
    let state = state_store(redis);
    let s = schema("Changes");
    primary.create_table(s.clone(), true);
    primary.insert_many(&s.id, (1..=10_000).map(row));
    state.set_enabled(&s.id, true).await.expect("enable");
    let run = actors::start(
        ports(primary.clone(), replica.clone(), state.clone()),
        config(),
    );
    wait("initial load", || replica.recorded_version(&s.id).is_some()).await;
    run.supervisor.do_send(actors::Shutdown);
    actix_rt::time::sleep(Duration::from_millis(200)).await;

    // Distinct new keys in primary transactions of 100 rows, made before
    // the timed window: every change is one net change to read and apply.
    let mut id = 0;
    while id < changes {
        let batch: Vec<Row> = (id..id + 100).map(|i| row(10_001 + i)).collect();
        primary.insert_many(&s.id, batch);
        id += 100;
    }
    let target = primary.version();
    let started = Instant::now();
    let run = actors::start(
        ports(primary.clone(), replica.clone(), state.clone()),
        config(),
    );
    wait("changes applied", || {
        replica.recorded_version(&s.id) == Some(target)
    })
    .await;
    let secs = started.elapsed().as_secs_f64();
    run.supervisor.do_send(actors::Shutdown);
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    changes as f64 / secs
}

/// A backlog through ctsync alone: the primary makes each page on demand
/// (after `page_delay`), the replica counts it and keeps nothing (after
/// `apply_delay` per page). Changes per second, change sets copied and
/// pages read.
async fn backlog(
    changes: i64,
    page_delay: Duration,
    apply_delay: Duration,
    redis: Option<&redis_server::RedisServer>,
) -> (f64, u64, u64) {
    let s = schema("Flow");
    let mut primary = GeneratedPrimary::new(s.clone(), 0);
    primary.page_delay = page_delay;
    let primary = Arc::new(primary);
    let replica = Arc::new(CountingReplica {
        apply_delay,
        ..CountingReplica::default()
    });
    let state = state_store(redis);
    state.set_enabled(&s.id, true).await.expect("enable");
    let run = actors::start(ports(primary.clone(), replica.clone(), state), config());
    wait("empty initial load", || {
        replica.version.load(Ordering::SeqCst) == 1
    })
    .await;
    primary.changes.store(changes, Ordering::SeqCst);
    let pages0 = primary.pages.load(Ordering::SeqCst);
    let started = Instant::now();
    primary.version.store(2, Ordering::SeqCst);
    wait("changes applied", || {
        replica.applied.load(Ordering::SeqCst) == 2
    })
    .await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(replica.changed.load(Ordering::SeqCst), changes as u64);
    run.supervisor.do_send(actors::Shutdown);
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    (
        changes as f64 / secs,
        primary.backlog_opens.load(Ordering::SeqCst),
        primary.pages.load(Ordering::SeqCst) - pages0,
    )
}

/// Requests per idle poll for 1, 100 and 1,000 tables (counted at the
/// ports, as `tests/poll_cost.rs` asserts them).
async fn idle_polls() {
    use ctsync_actors::memory::faults::Site;
    use poll_window::{at, idle_window};
    for tables in [1usize, 100, 1_000] {
        let mut c = config();
        c.poll_interval = Duration::from_millis(50);
        c.idle_advance = Duration::from_secs(600);
        let w = idle_window(tables, c).await;
        let per = |sites: &[Site]| at(&w.calls, sites) as f64 / w.polls.max(1) as f64;
        println!(
            "idle poll, {tables:>5} tables: {:>5.1} primary queries, {:>4.1} replica requests, \
             {:>7.1} Redis round trips per poll ({} polls, {} table cycles)",
            per(&[Site::PrimaryMeta, Site::PrimaryChanges]),
            per(&[Site::ReplicaRead, Site::ReplicaWrite]),
            per(&[Site::StateRead, Site::StateWrite]),
            w.polls,
            w.cycles
        );
    }
}

async fn full_load_peak(rows: i64, redis: Option<&redis_server::RedisServer>) -> (f64, i64) {
    let s = schema("Big");
    let primary = Arc::new(GeneratedPrimary::new(s.clone(), rows));
    let replica = Arc::new(CountingReplica::default());
    let state = state_store(redis);
    state.set_enabled(&s.id, true).await.expect("enable");
    let baseline = CURRENT.load(Ordering::SeqCst);
    PEAK.store(baseline, Ordering::SeqCst);
    let started = Instant::now();
    let run = actors::start(ports(primary, replica.clone(), state), config());
    wait("full load", || replica.version.load(Ordering::SeqCst) == 1).await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(replica.rows.load(Ordering::SeqCst), rows as u64);
    run.supervisor.do_send(actors::Shutdown);
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    (rows as f64 / secs, PEAK.load(Ordering::SeqCst) - baseline)
}

/// `Id bigint` and `columns - 1` columns of everyday types.
fn wide_schema(columns: usize) -> TableSchema {
    let mut s = schema(&format!("Wide{columns}"));
    let base = s.columns.clone();
    s.columns = (0..columns)
        .map(|i| {
            let mut c = base[if i == 0 { 0 } else { 1 + (i - 1) % 3 }].clone();
            if i > 0 {
                c.name = format!("C{i}");
            }
            c
        })
        .collect();
    s
}

fn wide_row(schema: &TableSchema, id: i64) -> Row {
    let r = row(id);
    (0..schema.columns.len())
        .map(|i| r[if i == 0 { 0 } else { 1 + (i - 1) % 3 }].clone())
        .collect()
}

/// Requests per 5,000-row page from the adapter's own write plans, and the
/// adapter's encoding rate for each path.
fn replica_pages() {
    use ctsync::mssql::replica::write_plan::{change_plan, load_page_plan, WritePath, WritePlan};
    const PAGE: i64 = 5_000;
    for columns in [4, 20] {
        let s = wide_schema(columns);
        let rows: Vec<Row> = (1..=PAGE).map(|i| wide_row(&s, i)).collect();
        let change = ChangeBatch {
            table: s.id.clone(),
            keys: (1..=PAGE).map(|i| RowKey(vec![Value::I64(i)])).collect(),
            rows: rows.clone(),
            version: Some(7),
            backlog: None,
        };
        let state = || "{\"start_version\":1}".to_string();
        for (name, path) in [
            ("bulk copy", WritePath::Bulk { table_lock: true }),
            ("INSERT … OPENJSON", WritePath::Json),
        ] {
            let full = load_page_plan(&s.id, &s, &rows, state(), path).requests();
            let incremental = change_plan(&s, &change, path).expect("plan").requests();
            // What the adapter does per page before the wire: the JSON
            // document (INSERT path) or the bulk cells (bulk path).
            let started = Instant::now();
            let mut pages = 0u32;
            while started.elapsed() < Duration::from_millis(500) {
                match path {
                    WritePath::Json => {
                        let mut plan = WritePlan::default();
                        plan.insert(&s, &rows, path);
                        std::hint::black_box(plan);
                    }
                    WritePath::Bulk { .. } => {
                        for r in &rows {
                            for (v, c) in r.iter().zip(&s.columns) {
                                std::hint::black_box(ctsync::mssql::replica::bulk::cell(v, &c.ty));
                            }
                        }
                    }
                }
                pages += 1;
            }
            let rate = f64::from(pages) * PAGE as f64 / started.elapsed().as_secs_f64();
            println!(
                "replica page, {columns:>2} columns, {name:<17}: {full} requests per full-load page, \
                 {incremental} per incremental page; encoded at {rate:>10.0} rows/s"
            );
        }
    }
}

fn main() {
    let redis = std::env::var("CTSYNC_BENCH_REDIS")
        .is_ok_and(|v| v == "1")
        .then(redis_server::RedisServer::start);
    let store = if redis.is_some() {
        "a real redis-server"
    } else {
        "in-memory state"
    };
    // `CTSYNC_BENCH_ONLY=pages|incremental|backlog|polls|full` runs one part.
    let only = std::env::var("CTSYNC_BENCH_ONLY").unwrap_or_default();
    let runs = |part: &str| only.is_empty() || only == part;
    if runs("pages") {
        replica_pages();
    }
    let system = actix::System::new();
    system.block_on(async {
        if runs("incremental") {
            let changes = 2_000_000;
            let (cps, _, _) = backlog(changes, Duration::ZERO, Duration::ZERO, redis.as_ref()).await;
            println!(
                "pipeline:    {cps:>12.0} changes/s ({changes} changed keys made on demand, applied by a replica that keeps nothing, {store})"
            );
            let changes = 500_000;
            let cps = changes_per_second(changes, redis.as_ref()).await;
            println!(
                "incremental: {cps:>12.0} changes/s ({changes} changed keys applied in pages of 5,000 through the in-memory primary and replica, {store})"
            );
        }
        if runs("backlog") {
            for changes in [10_000i64, 100_000, 1_000_000] {
                let (cps, sets, pages) =
                    backlog(changes, Duration::ZERO, Duration::ZERO, redis.as_ref()).await;
                // On SQL Server each change set also costs two requests to
                // open (create its session table, fill it) and one to drop.
                let requests = sets
                    * (ctsync::mssql::CHANGE_SET_OPEN_REQUESTS
                        + ctsync::mssql::CHANGE_SET_CLOSE_REQUESTS)
                    + pages;
                println!(
                    "backlog:     {changes:>9} changes: {sets} change set copied, {pages} pages read \
                     ({requests} primary requests on SQL Server), {cps:>10.0} changes/s"
                );
            }
            // Read-ahead: each page costs the primary 10 ms to read and the
            // replica 10 ms to commit. Measured alone, each side bounds the
            // throughput; reads waiting for commits would take the sum of
            // both per page, reads overlapping commits about the larger.
            let slow = Duration::from_millis(10);
            let changes = 250_000;
            let time = |cps: f64| changes as f64 / cps;
            let (reads, _, pages) = backlog(changes, slow, Duration::ZERO, redis.as_ref()).await;
            let (commits, _, _) = backlog(changes, Duration::ZERO, slow, redis.as_ref()).await;
            let (both, _, _) = backlog(changes, slow, slow, redis.as_ref()).await;
            println!(
                "read-ahead:  {both:>12.0} changes/s with {} ms per page read and {} ms per page commit \
                 ({pages} pages); reads alone {reads:.0}, commits alone {commits:.0}; \
                 {:.0} if reads waited for commits, {:.0} if fully overlapped",
                slow.as_millis(),
                slow.as_millis(),
                changes as f64 / (time(reads) + time(commits)),
                reads.min(commits)
            );
        }
        if runs("polls") {
            idle_polls().await;
        }
        if !runs("full") {
            return;
        }
        let mut peaks = Vec::new();
        for rows in [100_000i64, 1_000_000] {
            let (rps, peak) = full_load_peak(rows, redis.as_ref()).await;
            println!(
                "full load:   {rows:>9} rows  {rps:>10.0} rows/s  peak heap growth {:>8.1} MiB ({store})",
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
