//! The simulation's figures over a run of seeds, and the markdown fragments
//! `.ci/run` gathers into `target/ci-artifacts/correctness.md`: seeds and
//! operations, faults by kind and state, invariants checked, the corpus.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::coverage::{self, Counts};
use crate::generator::WEIGHTS;
use crate::ops::SITES;
use crate::world::RunStats;
use ctsync_actors::memory::faults::Phase;

/// What a run of seeds did.
#[derive(Default)]
pub(crate) struct Figures {
    pub(crate) seeds: usize,
    pub(crate) ops: usize,
    pub(crate) faults: BTreeMap<String, u64>,
    pub(crate) checks: BTreeMap<&'static str, u64>,
    pub(crate) op_phases: Counts,
    pub(crate) fault_phases: Counts,
}

/// Why a state × kind pair cannot happen, if it cannot: a call at a site
/// only a load (or a backlog) makes puts its table in that state while it
/// runs, and a table's cycle does one thing at a time.
pub(crate) fn unreachable(kind: &str, phase: Phase) -> Option<&'static str> {
    let own = |site: &str| kind.starts_with(site) && kind[site.len()..].starts_with('/');
    if own("PrimaryPage") && phase != Phase::Loading {
        return Some(
            "a full-load page read is the load's own call: its table is loading while it runs, \
             and the table's cycle never reads a page during its swap, a DDL apply or a backlog",
        );
    }
    if own("PrimaryChanges") && phase != Phase::Backlog {
        return Some(
            "a change-set call is the backlog's own: its table is in backlog while it runs, and \
             the table's cycle never reads changes while it loads, swaps or applies DDL",
        );
    }
    if own("ReplicaBulk") && !matches!(phase, Phase::Loading | Phase::Backlog) {
        return Some(
            "a bulk load strikes inside a page write, a load's or a backlog's: its table is in \
             that state while it runs",
        );
    }
    if kind.starts_with("ReplicaWrite/module-") && phase == Phase::DdlApply {
        return Some(
            "a module write and a column change (or a table rename's replica step) are both \
             replica writes through the one SinkActor, whose handlers are atomic: one is never \
             in flight while the other is. A rename's Redis step runs outside the SinkActor, \
             but the in-memory state store answers it without yielding, so no module write \
             meets it in the simulation (a gap of the double, not of the code)",
        );
    }
    None
}

impl Figures {
    pub(crate) fn add(&mut self, stats: RunStats) {
        self.seeds += 1;
        self.ops += stats.ops;
        for (k, v) in stats.faults {
            *self.faults.entry(k).or_insert(0) += v;
        }
        for (k, v) in stats.checks {
            *self.checks.entry(k).or_insert(0) += v;
        }
        coverage::add(&mut self.op_phases, &stats.op_phases);
        coverage::add(&mut self.fault_phases, &stats.fault_phases);
    }

    /// The fault kinds the plans can strike: every site's rejects and lost
    /// acknowledgements, and whatever else struck.
    fn fault_kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = SITES
            .iter()
            .flat_map(|s| [format!("{s:?}/reject"), format!("{s:?}/lost_ack")])
            .collect();
        for (k, _) in self.fault_phases.keys() {
            if !kinds.contains(k) {
                kinds.push(k.clone());
            }
        }
        kinds.sort();
        kinds
    }

    fn op_kinds(&self) -> Vec<String> {
        WEIGHTS
            .iter()
            .map(|(name, _, _)| name.to_string())
            .collect()
    }

    /// The coverage tables and the reachable pairs left at 0.
    pub(crate) fn coverage(&self) -> (String, Vec<(String, Phase)>) {
        let (ops, mut zero) = coverage::table(
            "Operations by the state of the tables they met",
            &self.op_kinds(),
            &self.op_phases,
        );
        let (faults, zero_faults) = coverage::table(
            "Faults by the state of the tables the struck call was about",
            &self.fault_kinds(),
            &self.fault_phases,
        );
        zero.extend(zero_faults);
        zero.retain(|(kind, phase)| unreachable(kind, *phase).is_none());
        (format!("{ops}\n{faults}"), zero)
    }

    /// The simulation's part of the correctness report.
    /// `said`: pairs at 0 the CI mix names as reachable but not reached yet
    /// (`NOT_YET_REACHED`, with its reason).
    pub(crate) fn markdown(&self, seconds: f64, zero: &[(String, Phase)], said: &[&str]) -> String {
        let mut out = format!(
            "### Seeded simulation\n\n{} seeds, {} operations, {:.1} s; divergences: 0.\n\n",
            self.seeds, self.ops, seconds
        );
        out.push_str(
            "#### Invariants checked (times each held)\n\n| invariant | checks |\n|---|---:|\n",
        );
        for (name, n) in &self.checks {
            out.push_str(&format!("| {name} | {n} |\n"));
        }
        out.push_str("\n#### Faults injected\n\n| fault | count |\n|---|---:|\n");
        for (name, n) in &self.faults {
            out.push_str(&format!("| {name} | {n} |\n"));
        }
        let (tables, _) = self.coverage();
        out.push('\n');
        out.push_str(&tables);
        out.push_str("\n#### Pairs never reached\n\n");
        if zero.is_empty() {
            out.push_str("None: every reachable state × kind pair occurred.\n");
        } else {
            for (kind, phase) in zero {
                let pair = format!("{kind} × {}", phase.name());
                let note = if said.contains(&pair.as_str()) {
                    " (reachable; no seed searched reaches it: `NOT_YET_REACHED` in tests/simulation.rs says why)"
                } else {
                    ""
                };
                out.push_str(&format!("- {pair}{note}\n"));
            }
        }
        out.push_str("\n#### Pairs no schedule can reach\n\n");
        let mut reasons: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for kind in self.fault_kinds() {
            for phase in Phase::ALL {
                if let Some(why) = unreachable(&kind, phase) {
                    reasons
                        .entry(why)
                        .or_default()
                        .push(format!("{kind} × {}", phase.name()));
                }
            }
        }
        for (why, pairs) in reasons {
            out.push_str(&format!("- {}: {why}\n", pairs.join(", ")));
        }
        out
    }
}

/// Where the report's fragments go (`CTSYNC_CI_ARTIFACTS`, else
/// `target/ci-artifacts`).
pub(crate) fn artifacts() -> PathBuf {
    std::env::var_os("CTSYNC_CI_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ci-artifacts"))
}

/// Writes one fragment of the report.
pub(crate) fn write(name: &str, text: &str) {
    let dir = artifacts();
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(dir.join(name), text))
    {
        eprintln!("could not write {}: {e}", dir.join(name).display());
    }
}
