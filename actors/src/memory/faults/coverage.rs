//! Which pipeline state each table was in when a fault struck: a probe
//! (installed by the test) says what the replica's record shows, and the
//! calls in flight say what runs now (a swap, a DDL apply, a page).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use crate::model::TableId;
use crate::ports::Call;

/// A table's pipeline state, as the coverage figures name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Caught up, or between cycles.
    Idle,
    /// A full load is pending (its record says so) or a load call runs.
    Loading,
    /// A change backlog is part-way applied or a change call runs.
    Backlog,
    /// The end of a load runs (the shadow swap, or an in-place finish).
    Swap,
    /// A schema change is being applied to the replica table.
    DdlApply,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Idle,
        Phase::Loading,
        Phase::Backlog,
        Phase::Swap,
        Phase::DdlApply,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Loading => "loading",
            Phase::Backlog => "backlog",
            Phase::Swap => "swap",
            Phase::DdlApply => "ddl-apply",
        }
    }

    /// The state a port method in flight puts its table in, if it says.
    pub(super) fn of_method(method: &str) -> Option<Phase> {
        Some(match method {
            "finish_full_load" => Phase::Swap,
            "alter_columns" | "rename_column" | "rename_table" => Phase::DdlApply,
            "begin_full_load" | "insert_rows" | "read_page" | "row_count" => Phase::Loading,
            "open_changes" | "next_page" | "apply_changes" => Phase::Backlog,
            _ => return None,
        })
    }
}

/// What the test knows of each table from outside the pipeline (its
/// replica record): the tables and the state each record shows.
pub type Probe = Arc<dyn Fn() -> Vec<(TableId, Phase)> + Send + Sync>;

/// The calls in flight and the probe, shared by one plan's wrappers.
#[derive(Default)]
pub(super) struct Coverage {
    probe: Mutex<Option<Probe>>,
    /// Calls in flight: (id, tables it is about, method).
    flying: Mutex<Vec<(u64, Vec<TableId>, &'static str)>>,
    next: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Coverage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coverage").finish_non_exhaustive()
    }
}

/// A call in flight, until dropped (answered, failed or abandoned).
pub(super) struct Flight<'a> {
    coverage: &'a Coverage,
    id: u64,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        lock(&self.coverage.flying).retain(|(id, _, _)| *id != self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Coverage {
    pub(super) fn set_probe(&self, probe: Probe) {
        *lock(&self.probe) = Some(probe);
    }

    fn tables(&self) -> Vec<(TableId, Phase)> {
        let probe = lock(&self.probe).clone();
        probe.map(|p| p()).unwrap_or_default()
    }

    /// The tables (of the probe's) that `call` is about.
    pub(super) fn about(&self, call: &Call<'_>) -> Vec<TableId> {
        self.tables()
            .into_iter()
            .map(|(t, _)| t)
            .filter(|t| call.is_about(t))
            .collect()
    }

    pub(super) fn fly(&self, tables: Vec<TableId>, method: &'static str) -> Flight<'_> {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&self.flying).push((id, tables, method));
        Flight { coverage: self, id }
    }

    /// Each table's state now: what a call in flight about it says, else
    /// what its record shows.
    pub(super) fn phases(&self) -> BTreeMap<TableId, Phase> {
        let mut now: BTreeMap<TableId, Phase> = self.tables().into_iter().collect();
        for (_, tables, method) in lock(&self.flying).iter() {
            let Some(phase) = Phase::of_method(method) else {
                continue;
            };
            for t in tables {
                if let Some(p) = now.get_mut(t) {
                    // The more specific state wins (a swap is part of a load).
                    *p = (*p).max(phase);
                }
            }
        }
        now
    }

    /// The states a strike on a call about `tables` counts under: those
    /// tables' states, or every table's for a call about none (a
    /// heartbeat, a receive: the whole process meets it).
    pub(super) fn phases_of(&self, tables: &[TableId]) -> BTreeSet<Phase> {
        let now = self.phases();
        if tables.is_empty() {
            return now.values().copied().collect();
        }
        tables.iter().filter_map(|t| now.get(t).copied()).collect()
    }
}
