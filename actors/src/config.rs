//! The pipeline's settings: the sync's tunables, and in typed parts what
//! the actors need besides (restart backoff, this instance's identity and
//! leases, the DDL listener's waits, the limit on each kind of port call).
//! A ground-floor module, so the replication rules (`sync`) and the actors
//! that run them both read it without importing each other.

use std::time::Duration;

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
    /// How a failed TableActor restarts.
    pub restarts: Backoff,
    /// How often views, procedures and functions are compared.
    pub module_sync_interval: Duration,
    pub ddl_listener: ListenerConfig,
    /// Who this instance is, how long its leases last, what it publishes.
    pub instance: Instance,
    /// How often an idle table's stored version is moved forward while the
    /// primary is busy with other tables (nothing to apply is progress too,
    /// but not worth a replica transaction every poll; far inside any CT
    /// retention).
    pub idle_advance: Duration,
    /// Idle cycles (answered by the poll's scout, no change read) a cached
    /// schema serves before both catalogs are read again: what bounds how
    /// long a drift on an idle table (a replica table dropped by hand, a
    /// lost DDL event) goes unseen. Cycles that read changes refresh every
    /// `sync::REFRESH_CYCLES` and check the columns with every read.
    pub idle_catalog_refresh: u32,
    /// How long each kind of port call may go unanswered before the core
    /// abandons it (see [`crate::ports::limits`]).
    pub call_limits: crate::ports::CallLimits,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(5),
            full_load_page_size: 5_000,
            full_load_mode: crate::ports::LoadMode::Shadow,
            change_page_size: 5_000,
            auto_reload_stale: false,
            restarts: Backoff {
                first: Duration::from_secs(1),
                max: Duration::from_secs(60),
            },
            module_sync_interval: Duration::from_secs(30),
            ddl_listener: ListenerConfig::default(),
            instance: Instance::default(),
            idle_advance: Duration::from_secs(60),
            idle_catalog_refresh: 240,
            call_limits: crate::ports::CallLimits::default(),
        }
    }
}

/// A delay that doubles from `first` up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First restart delay of a failed actor; doubles up to `max`.
    pub first: Duration,
    pub max: Duration,
}

/// This instance among the others sharing the tables.
#[derive(Debug, Clone)]
pub struct Instance {
    /// This instance's id: the owner in leases and on the replica's fence.
    /// Unique per process (two processes with one id would both think they
    /// own a table; the daemon adds its pid and a random part).
    pub id: String,
    /// How long a table's (or singleton's) lease lasts without renewal;
    /// renewed every poll. A dead instance's tables move within it.
    pub lease_ttl: Duration,
    /// Keys ctsync publishes to the state store for operators (the
    /// sanitized endpoints), at start and again after Redis lost its data.
    pub published: Vec<(String, String)>,
}

impl Default for Instance {
    fn default() -> Self {
        Self {
            id: "ctsync".into(),
            lease_ttl: Duration::from_secs(15),
            published: Vec::new(),
        }
    }
}

/// How the listener waits and retries.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// `WAITFOR (RECEIVE …), TIMEOUT` of one receive.
    pub wait: Duration,
    pub batch: usize,
    /// Pause after a failed receive (queue or primary unreachable).
    pub retry_delay: Duration,
    /// Pause before an inbox message whose apply gave up behind a lock on
    /// the replica (`Error::Blocked`) is tried again; doubles up to `max`.
    /// Each such attempt holds every table's replica writes in the
    /// SinkActor for up to the lock timeout (30 s).
    pub blocked: Backoff,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            wait: Duration::from_secs(5),
            batch: 10,
            retry_delay: Duration::from_secs(5),
            blocked: Backoff {
                first: Duration::from_secs(30),
                max: Duration::from_secs(600),
            },
        }
    }
}
