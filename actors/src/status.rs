//! The shared per-table status board: what each TableActor is doing, its
//! versions, lag, progress, last error and restart count. The HTTP API and
//! the tests read it; only the actors write it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// What a table is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TableState {
    /// Discovered; `mssql_sync:enabled:<T>` is not `"true"`.
    #[default]
    Paused,
    FullLoad,
    Incremental,
    /// Changes were lost (retention, truncate, restored primary): needs a
    /// full load or a version set by hand.
    Stale,
    Error,
}

impl TableState {
    pub const ALL: [TableState; 5] = [
        TableState::Paused,
        TableState::FullLoad,
        TableState::Incremental,
        TableState::Stale,
        TableState::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TableState::Paused => "paused",
            TableState::FullLoad => "full_load",
            TableState::Incremental => "incremental",
            TableState::Stale => "stale",
            TableState::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TableStatus {
    pub state: TableState,
    pub version: Option<i64>,
    pub primary_version: Option<i64>,
    pub lag_versions: Option<i64>,
    pub lag_seconds: f64,
    /// `(synced, total)` while a full load runs.
    pub progress: Option<(u64, u64)>,
    pub last_error: Option<String>,
    /// Why the table is stale, when it is.
    pub reason: Option<String>,
    pub restarts: u64,
    pub rows_applied: u64,
    /// The last `verify` of the table.
    pub verified: Option<crate::verify::Summary>,
    #[serde(skip)]
    pub caught_up_at: Option<Instant>,
}

/// Every instance's published table statuses (`mssql_sync:status:<id>`),
/// merged: for each table, its status and the instance that runs it. This
/// instance's own board wins for the tables it runs (it is newer).
pub fn merge_published(
    own: &str,
    board: BTreeMap<String, TableStatus>,
    published: &[(String, String)],
) -> BTreeMap<String, (TableStatus, String)> {
    let mut all: BTreeMap<String, (TableStatus, String)> = board
        .into_iter()
        .map(|(name, status)| (name, (status, own.to_string())))
        .collect();
    for (instance, json) in published {
        if instance == own {
            continue;
        }
        // A blob this build cannot read (another version) hides nothing else.
        let Ok(tables) = serde_json::from_str::<BTreeMap<String, TableStatus>>(json) else {
            tracing::debug!(%instance, "unreadable published status; skipped");
            continue;
        };
        for (name, status) in tables {
            all.entry(name).or_insert((status, instance.clone()));
        }
    }
    all
}

/// Cloneable handle to every table's status, keyed by the Redis key name.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    inner: Arc<Mutex<BTreeMap<String, TableStatus>>>,
    module_errors: Arc<Mutex<BTreeMap<String, String>>>,
    modules_skipped: Arc<Mutex<Vec<String>>>,
    /// When (Unix ms) ctsync last found that Redis had lost its data.
    redis_data_lost_at: Arc<Mutex<Option<u64>>>,
    /// Why DDL capture stopped (with the fix-up SQL), while it is stopped.
    ddl_problem: Arc<Mutex<Option<String>>>,
    /// Inbox messages (by id) whose apply waits behind a lock on the
    /// replica, each with what the page says of it; shown with
    /// [`StatusBoard::ddl_problem`].
    ddl_blocked: Arc<Mutex<BTreeMap<String, String>>>,
    /// Why the last discovery failed (the primary cannot be reached …).
    discovery_error: Arc<Mutex<Option<String>>>,
}

impl StatusBoard {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, TableStatus>> {
        // A poisoned lock only means a panic elsewhere; the data is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn update(&self, table: &str, f: impl FnOnce(&mut TableStatus)) {
        let mut map = self.lock();
        f(map.entry(table.to_string()).or_default());
    }

    pub fn get(&self, table: &str) -> Option<TableStatus> {
        self.lock().get(table).cloned()
    }

    pub fn remove(&self, table: &str) {
        self.lock().remove(table);
    }

    pub fn snapshot(&self) -> BTreeMap<String, TableStatus> {
        self.lock().clone()
    }

    /// Modules (`schema.name`) that could not be synced, with the error.
    pub fn module_errors(&self) -> BTreeMap<String, String> {
        self.module_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Modules that cannot be copied (encrypted on the primary).
    pub fn modules_skipped(&self) -> Vec<String> {
        self.modules_skipped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_modules_skipped(&self, names: Vec<String>) {
        *self
            .modules_skipped
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = names;
    }

    pub fn discovery_error(&self) -> Option<String> {
        self.discovery_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_discovery_error(&self, error: Option<String>) {
        *self
            .discovery_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// Everything about DDL an operator should see: why capture stopped,
    /// then each schema change that waits behind a lock on the replica.
    pub fn ddl_problem(&self) -> Option<String> {
        let mut all: Vec<String> = self.ddl_capture_problem().into_iter().collect();
        all.extend(
            self.ddl_blocked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned(),
        );
        (!all.is_empty()).then(|| all.join("; "))
    }

    /// Why DDL capture stopped, while it is stopped.
    pub fn ddl_capture_problem(&self) -> Option<String> {
        self.ddl_problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets (or clears) why DDL capture stopped.
    pub fn set_ddl_problem(&self, problem: Option<String>) {
        *self.ddl_problem.lock().unwrap_or_else(|e| e.into_inner()) = problem;
    }

    /// Sets (or clears, with `None`) what inbox message `id`'s blocked
    /// apply says on the page.
    pub fn set_ddl_blocked(&self, id: &str, problem: Option<String>) {
        let mut blocked = self.ddl_blocked.lock().unwrap_or_else(|e| e.into_inner());
        match problem {
            Some(p) => {
                blocked.insert(id.to_string(), p);
            }
            None => {
                blocked.remove(id);
            }
        }
    }

    /// Clears every blocked apply whose inbox message is not in `pending`.
    pub fn retain_ddl_blocked(&self, pending: &std::collections::HashSet<&str>) {
        self.ddl_blocked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| pending.contains(id.as_str()));
    }

    pub fn redis_data_lost_at(&self) -> Option<u64> {
        *self
            .redis_data_lost_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_redis_data_lost_at(&self, at: u64) {
        *self
            .redis_data_lost_at
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(at);
    }

    pub fn set_module_errors(&self, errors: BTreeMap<String, String>) {
        *self.module_errors.lock().unwrap_or_else(|e| e.into_inner()) = errors;
    }
}
