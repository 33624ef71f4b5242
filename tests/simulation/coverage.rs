//! Coverage you can see: each operation and each fault counted under the
//! pipeline state of the tables it met (idle, loading, backlog, swap, DDL
//! apply), and the state × kind pairs a run of seeds never reached.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use crate::ops::Op;
use crate::world::World;
use ctsync_actors::memory::faults::{FaultPlan, Phase, Probe};
use ctsync_actors::memory::MemoryReplica;
use ctsync_actors::model::TableId;

/// Counts by (kind, state).
pub(crate) type Counts = BTreeMap<(String, Phase), u64>;

/// The simulated tables' current names, shared with the probes (a table
/// renamed keeps its place).
pub(crate) type Names = Arc<Mutex<Vec<TableId>>>;

/// What tells a plan each table's state from the replica's record: a
/// pending load is loading, a recorded backlog is a backlog.
pub(crate) fn probe(replica: &Arc<MemoryReplica>, names: &Names) -> Probe {
    let replica = replica.clone();
    let names = names.clone();
    Arc::new(move || {
        let tables = names.lock().unwrap_or_else(|e| e.into_inner()).clone();
        tables
            .iter()
            .map(|id| {
                let record = replica.table_record(id);
                let phase = if record.load.is_some() {
                    Phase::Loading
                } else if record.backlog.is_some() {
                    Phase::Backlog
                } else {
                    Phase::Idle
                };
                (id.clone(), phase)
            })
            .collect()
    })
}

/// A fault plan for a new instance, with the probe installed.
pub(crate) fn plan(replica: &Arc<MemoryReplica>, names: &Names) -> Arc<FaultPlan> {
    let plan = FaultPlan::new();
    plan.set_probe(probe(replica, names));
    plan
}

/// The table an operation is about, if one.
fn table_of(op: &Op) -> Option<usize> {
    match op {
        Op::Upsert { t, .. }
        | Op::Delete { t, .. }
        | Op::ChangeKey { t, .. }
        | Op::AddColumn { t, .. }
        | Op::RenameColumn { t, .. }
        | Op::DropColumn { t, .. }
        | Op::StopMidBacklog { t, .. }
        | Op::BulkFail { t, .. }
        | Op::CorruptCursor { t, .. }
        | Op::BlockSwap { t, .. }
        | Op::RenameTable { t, .. } => Some(*t),
        Op::UnblockSwap(t) | Op::CtOff(t) | Op::CtOn(t) => Some(*t),
        Op::Unforce(t) | Op::Reforce(t) => Some(*t),
        Op::Enable(t) | Op::Disable(t) | Op::Force(t) | Op::Cleanup(t) | Op::Truncate(t) => {
            Some(*t)
        }
        _ => None,
    }
}

impl World {
    /// Each table's state now, over the instances running (a call in
    /// flight on either says what runs).
    pub(crate) fn phases_now(&self) -> BTreeMap<TableId, Phase> {
        let mut now = self.plan.phases();
        if let Some((_, plan, _)) = &self.second {
            for (t, p) in plan.phases() {
                let e = now.entry(t).or_insert(p);
                *e = (*e).max(p);
            }
        }
        now
    }

    /// Counts `op` under the state of the table it is about (of every
    /// table, for an operation on the whole process or a dependency).
    pub(crate) fn note_op(&mut self, op: &Op) {
        let now = self.phases_now();
        let phases: BTreeSet<Phase> = match table_of(op) {
            Some(t) => now.get(&self.tables[t]).copied().into_iter().collect(),
            None => now.values().copied().collect(),
        };
        for phase in phases {
            *self
                .op_phases
                .entry((op.name().to_string(), phase))
                .or_insert(0) += 1;
        }
    }

    /// Faults that struck, by kind and state, over every instance so far.
    pub(crate) fn fault_phases(&self) -> Counts {
        let mut all = Counts::new();
        for plan in self.plans.iter().chain(std::iter::once(&self.bulk_faults)) {
            for (k, n) in plan.injected_by_phase() {
                *all.entry(k).or_insert(0) += n;
            }
        }
        all
    }
}

/// Adds `more` into `into`.
pub(crate) fn add(into: &mut Counts, more: &Counts) {
    for (k, n) in more {
        *into.entry(k.clone()).or_insert(0) += n;
    }
}

/// A markdown table: one row per kind, one column per state, and the
/// pairs at 0.
pub(crate) fn table(
    title: &str,
    kinds: &[String],
    counts: &Counts,
) -> (String, Vec<(String, Phase)>) {
    let mut out = format!(
        "#### {title}\n\n| kind | {} |\n|---|{}\n",
        Phase::ALL.map(|p| p.name()).join(" | "),
        "---:|".repeat(Phase::ALL.len())
    );
    let mut zero = Vec::new();
    for kind in kinds {
        let cells: Vec<String> = Phase::ALL
            .iter()
            .map(|p| {
                let n = counts.get(&(kind.clone(), *p)).copied().unwrap_or(0);
                if n == 0 {
                    zero.push((kind.clone(), *p));
                }
                n.to_string()
            })
            .collect();
        out.push_str(&format!("| {kind} | {} |\n", cells.join(" | ")));
    }
    (out, zero)
}
