//! What every table cycle shares: the ports and settings ([`Pipeline`]),
//! what keeps one table's cycles and writers apart ([`Guards`]) and what
//! the cycles learn and keep between polls ([`Known`]). Built once by
//! `actors::start`; every actor holds the same one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::idle::IdleTables;
use super::SchemaCache;
use crate::config::SyncConfig;
use crate::fence::{Cycles, Fence};
use crate::model::PrimaryIdentity;
use crate::ports::{Primary, StateStore};
use crate::sink::SinkHandle;
use crate::status::StatusBoard;

/// Everything a table cycle needs: the ports it talks to (the primary, the
/// state store, the replica through its sink, the status board), the
/// settings, the guards and what is known between cycles.
pub struct Pipeline {
    pub primary: Arc<dyn Primary>,
    pub state: Arc<dyn StateStore>,
    pub sink: SinkHandle,
    pub board: StatusBoard,
    pub config: SyncConfig,
    pub guards: Guards,
    pub known: Known,
}

/// What keeps a table's cycles apart: at most one cycle of a table runs at
/// a time, and only its current owner writes.
pub struct Guards {
    /// Which TableActor owns each table (see [`crate::fence`]).
    pub fence: Fence,
    /// Which tables' cycles run now (overlaps are counted), and each
    /// table's slot.
    pub cycles: Cycles,
    /// Set by a graceful stop: loads and backlogs stop at the next page.
    stopping: AtomicBool,
}

impl Guards {
    /// Guards over `fence` (the one the sink checks every write against).
    pub fn new(fence: Fence) -> Self {
        Self {
            fence,
            cycles: Cycles::default(),
            stopping: AtomicBool::new(false),
        }
    }

    /// A graceful stop began: loads and backlogs stop at their next page.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// What the cycles learn and keep between polls: facts about the primary,
/// each table's columns, and which tables have nothing to apply.
#[derive(Default)]
pub struct Known {
    /// Read once per discovery (see [`PrimaryFacts`]).
    facts: Mutex<PrimaryFacts>,
    /// Each table's columns between catalog reads.
    pub schemas: SchemaCache,
    /// Tables with nothing to apply: the scout's findings and the moves of
    /// their stored versions (see [`super::idle`]).
    pub idle: IdleTables,
    /// Unreadable cursors of the replica's record, each said once.
    pub unreadable: super::UnreadableCursors,
}

/// Facts about the primary database as a whole (not per table), read once
/// per discovery instead of by every table's cycle.
#[derive(Debug, Clone, Default)]
pub struct PrimaryFacts {
    pub identity: Option<PrimaryIdentity>,
    /// CT retention; `None` when auto cleanup is off (or not read yet).
    pub retention: Option<Duration>,
}

impl Pipeline {
    pub fn is_stopping(&self) -> bool {
        self.guards.is_stopping()
    }

    pub fn facts(&self) -> PrimaryFacts {
        self.known
            .facts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_facts(&self, facts: PrimaryFacts) {
        *self.known.facts.lock().unwrap_or_else(|e| e.into_inner()) = facts;
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
