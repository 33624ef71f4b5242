//! The replication rules, as plain async functions over the ports: one table
//! cycle (flags → schema → version bookkeeping → full load or incremental
//! sync, with the retention and identity guards). TableActor runs them.

mod board;
mod cycle;
mod full_load;
pub mod idle;
mod incremental;
pub mod reconcile;
mod retention;
mod schema_cache;
mod schema_change;

use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use cycle::{run_cycle, Outcome};
pub use schema_cache::{SchemaCache, REFRESH_CYCLES};
pub use schema_change::apply_schema_change;

pub use crate::clock::now_millis;
pub use crate::config::SyncConfig;

use crate::fence::{Cycles, Fence};
use crate::model::PrimaryIdentity;
use crate::ports::{Primary, StateStore};
use crate::sink::SinkHandle;
use crate::status::StatusBoard;

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
    /// Tables with nothing to apply: the scout's findings and the moves of
    /// their stored versions (see [`idle`]).
    pub idle: idle::IdleTables,
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
