//! The replication rules, as plain async functions over the ports: one table
//! cycle (flags → schema → version bookkeeping → full load or incremental
//! sync, with the retention and identity guards). TableActor runs them.

mod cycle;
mod full_load;
mod incremental;
pub mod reconcile;
mod schema_cache;
mod schema_change;
pub mod scout;

use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use cycle::{run_cycle, Outcome};
pub use schema_cache::{SchemaCache, REFRESH_CYCLES};
pub use schema_change::apply_schema_change;

use crate::fence::{Cycles, Fence};
use crate::model::PrimaryIdentity;
use crate::ports::{Primary, StateStore};
use crate::sink::SinkHandle;
use crate::status::StatusBoard;

/// Tunables of the pipeline; defaults are the documented ones.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// How often discovery runs and each table checks for changes.
    pub poll_interval: Duration,
    /// Rows per keyset page of a full load.
    pub full_load_page_size: usize,
    /// Shadow table and swap (default), or in place.
    pub full_load_mode: crate::ports::LoadMode,
    /// Changed keys per replica transaction of an incremental sync.
    pub change_page_size: usize,
    /// Full-load a stale table automatically instead of waiting for an operator.
    pub auto_reload_stale: bool,
    /// First restart delay of a failed TableActor; doubles up to the max.
    pub restart_backoff: Duration,
    pub restart_backoff_max: Duration,
    /// How often views, procedures and functions are compared.
    pub module_sync_interval: Duration,
    pub ddl_listener: crate::actors::ListenerConfig,
    /// Keys ctsync publishes to the state store for operators (the
    /// sanitized endpoints), at start and again after Redis lost its data.
    pub published: Vec<(String, String)>,
    /// This instance's id: the owner in leases and on the replica's fence.
    /// Unique per process (two processes with one id would both think they
    /// own a table; the daemon adds its pid and a random part).
    pub instance_id: String,
    /// How long a table's (or singleton's) lease lasts without renewal;
    /// renewed every poll. A dead instance's tables move within it.
    pub lease_ttl: Duration,
    /// How often an idle table's stored version is moved forward while the
    /// primary is busy with other tables (nothing to apply is progress too,
    /// but not worth a replica transaction every poll; far inside any CT
    /// retention).
    pub idle_advance: Duration,
    /// Idle cycles (answered by the poll's scout, no change read) a cached
    /// schema serves before both catalogs are read again: what bounds how
    /// long a drift on an idle table (a replica table dropped by hand, a
    /// lost DDL event) goes unseen. Cycles that read changes refresh every
    /// [`REFRESH_CYCLES`] and check the columns with every read.
    pub idle_catalog_refresh: u32,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(5),
            full_load_page_size: 5_000,
            full_load_mode: crate::ports::LoadMode::Shadow,
            change_page_size: 5_000,
            auto_reload_stale: false,
            restart_backoff: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(60),
            module_sync_interval: Duration::from_secs(30),
            ddl_listener: crate::actors::ListenerConfig::default(),
            published: Vec::new(),
            instance_id: "ctsync".into(),
            lease_ttl: Duration::from_secs(15),
            idle_advance: Duration::from_secs(60),
            idle_catalog_refresh: 240,
        }
    }
}

/// Facts about the primary database as a whole (not per table), read once
/// per discovery instead of by every table's cycle.
#[derive(Debug, Clone, Default)]
pub struct PrimaryFacts {
    pub identity: Option<PrimaryIdentity>,
    /// CT retention; `None` when auto cleanup is off (or not read yet).
    pub retention: Option<Duration>,
}

/// Everything a table cycle needs: the ports, the sink, the status board.
pub struct Pipeline {
    pub primary: Arc<dyn Primary>,
    pub state: Arc<dyn StateStore>,
    pub sink: SinkHandle,
    pub board: StatusBoard,
    pub config: SyncConfig,
    pub facts: Mutex<PrimaryFacts>,
    /// Which TableActor owns each table (see [`crate::fence`]).
    pub fence: Fence,
    /// Which tables' cycles run now (overlaps are counted).
    pub cycles: Cycles,
    /// Set by a graceful stop: loads and backlogs stop at the next page.
    pub stopping: std::sync::atomic::AtomicBool,
    /// Each table's columns between catalog reads.
    pub schemas: SchemaCache,
    /// The per-poll scout's findings (see [`scout`]).
    pub scouts: scout::Scouts,
    /// Idle tables' version advances waiting for the next poll.
    pub advances: scout::Advances,
    /// When each table's stored version last moved (see `idle_advance`).
    pub advanced: Mutex<std::collections::HashMap<crate::model::TableId, tokio::time::Instant>>,
}

impl Pipeline {
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn facts(&self) -> PrimaryFacts {
        self.facts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_facts(&self, facts: PrimaryFacts) {
        *self.facts.lock().unwrap_or_else(|e| e.into_inner()) = facts;
    }

    /// The primary's identity as discovery last read it (read now if
    /// discovery has not yet).
    pub async fn identity(&self) -> crate::error::Result<PrimaryIdentity> {
        match self.facts().identity {
            Some(identity) => Ok(identity),
            None => self.primary.identity().await,
        }
    }
}

pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
