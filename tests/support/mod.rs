//! Test support: a private `redis-server` per test on a free port (stopped
//! and removed on drop), table fixtures, and a pipeline harness over the
//! in-memory primary/replica and the real Redis state store, every port
//! wrapped with the harness's fault plan.
#![allow(dead_code)]

pub mod contract;
pub mod daemon;
pub mod fixtures;
pub mod generated;
pub mod http_client;
pub mod hung;
pub mod paused_ddl;
pub mod poll_window;
pub mod redis_server;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ctsync::state::RedisState;
use ctsync_actors::actors::{self, ListenerConfig, Ports, Running};
use ctsync_actors::config::{Backoff, Instance};
use ctsync_actors::keys;
use ctsync_actors::memory::faults::{self, FaultPlan};
use ctsync_actors::memory::{MemoryDdlQueue, MemoryPrimary, MemoryReplica};
use ctsync_actors::model::{Row, TableId, TableSchema};
use ctsync_actors::ports::StateStore;
use ctsync_actors::sync::SyncConfig;

pub use redis_server::RedisServer;

/// How long the helpers wait for the pipeline.
pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `check` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fast polling and backoff so tests take milliseconds, not seconds.
pub fn fast_config() -> SyncConfig {
    SyncConfig {
        poll_interval: Duration::from_millis(50),
        full_load_page_size: 5_000,
        full_load_mode: ctsync_actors::ports::LoadMode::Shadow,
        change_page_size: 1_000,
        auto_reload_stale: false,
        restarts: Backoff {
            first: Duration::from_millis(20),
            max: Duration::from_millis(200),
        },
        module_sync_interval: Duration::from_millis(100),
        ddl_listener: ListenerConfig {
            wait: Duration::from_millis(20),
            batch: 10,
            retry_delay: Duration::from_millis(50),
            blocked: Backoff {
                first: Duration::from_millis(20),
                max: Duration::from_millis(200),
            },
        },
        instance: Instance {
            id: "test".into(),
            // Roomy: a loaded CI machine must not lose leases between renewals.
            lease_ttl: Duration::from_secs(3),
            published: Vec::new(),
        },
        // Idle tables' versions move every cycle, as tests expect.
        idle_advance: Duration::ZERO,
        // Idle tables read their catalogs as often as busy ones.
        idle_catalog_refresh: ctsync_actors::sync::REFRESH_CYCLES,
        call_limits: ctsync_actors::ports::CallLimits::default(),
    }
}

pub struct Harness {
    pub redis: RedisServer,
    pub state: Arc<RedisState>,
    pub primary: Arc<MemoryPrimary>,
    pub replica: Arc<MemoryReplica>,
    pub queue: Arc<MemoryDdlQueue>,
    /// The faults the pipeline's ports meet (every port is wrapped).
    pub faults: Arc<FaultPlan>,
}

impl Harness {
    pub fn new() -> Self {
        let redis = RedisServer::start();
        let state = Arc::new(RedisState::new(&redis.url()).expect("redis url"));
        Self {
            redis,
            state,
            primary: Arc::new(MemoryPrimary::new()),
            replica: Arc::new(MemoryReplica::new()),
            queue: Arc::new(MemoryDdlQueue::new()),
            faults: FaultPlan::new(),
        }
    }

    pub fn start(&self, config: SyncConfig) -> Running {
        self.start_with_state(config, self.state.clone())
    }

    pub fn start_with_state(&self, config: SyncConfig, state: Arc<dyn StateStore>) -> Running {
        let ports = Ports {
            primary: self.primary.clone(),
            replica: self.replica.clone(),
            state,
            ddl_queue: Some(self.queue.clone()),
        };
        actors::start(faults::wrap(ports, &self.faults), config)
    }

    /// Creates a change-tracked table on the primary with `rows` and sets
    /// its `enabled` flag to "true".
    pub async fn enabled_table(
        &self,
        schema: TableSchema,
        rows: impl IntoIterator<Item = Row>,
    ) -> TableId {
        let id = schema.id.clone();
        self.primary.create_table(schema, true);
        let rows: Vec<Row> = rows.into_iter().collect();
        if !rows.is_empty() {
            self.primary.insert_many(&id, rows);
        }
        self.set(&keys::enabled(&id), "true").await;
        id
    }

    /// The fixtures' `User` table with 10 rows, enabled and loaded by a
    /// pipeline that applies changes in pages of 100 keys (backlog tests):
    /// the table, the config it runs with, and the pipeline.
    pub async fn paged_users(&self) -> (TableSchema, SyncConfig, Running) {
        let users = fixtures::user_table();
        self.enabled_table(users.clone(), (1..=10).map(|i| fixtures::user(i, "n")))
            .await;
        let mut config = fast_config();
        config.change_page_size = 100;
        let run = self.start(config.clone());
        self.wait_loaded(&users.id).await;
        (users, config, run)
    }

    /// Waits until the table's version is stored (its first load finished).
    pub async fn wait_loaded(&self, table: &TableId) {
        let key = keys::version(table);
        eventually(WAIT, "initial load", || async {
            self.get(&key).await.is_some()
        })
        .await;
    }

    /// Waits until the replica's rows equal the primary's.
    pub async fn wait_equal(&self, table: &TableId) {
        eventually(WAIT, &format!("replica {table} equals primary"), || async {
            self.replica.rows(table) == self.primary.rows(table)
        })
        .await;
    }

    /// What the HTTP handlers share, over this harness (no probes, no
    /// metrics recorder, no access rules).
    pub fn http_state(&self, board: ctsync_actors::status::StatusBoard) -> ctsync::http::HttpState {
        ctsync::http::HttpState {
            state: self.state.clone(),
            board,
            instance: "test".into(),
            probes: Vec::new(),
            primary: "p:1/db".into(),
            replica: "r:1/db".into(),
            metrics: None,
            // Writes open without a token (these tests are not about access).
            access: ctsync::http::Access::with_writes(None, false, true, &[]),
            verify: None,
            verifies: Default::default(),
            known_tables: Default::default(),
            refusals: Default::default(),
            audit: Some(self.state.clone()),
        }
    }

    pub async fn get(&self, key: &str) -> Option<String> {
        self.state.get(key).await.expect("redis GET")
    }

    pub async fn set(&self, key: &str, value: &str) {
        self.state.set(key, value).await.expect("redis SET")
    }
}
