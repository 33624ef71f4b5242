//! The poll's scout in the simulated world: answers that fail or leave a
//! table out (a `Fault::Partial` on `Primary::scout`), and a table list
//! that changes under it (change tracking disabled on a table between a
//! discovery and the next scout, and enabled again later, as documented:
//! the table leaves discovery and comes back stale).

use std::time::Duration;

use ctsync_actors::keys;
use ctsync_actors::memory::faults::{Fault, Rule, Site};
use tokio::time::Instant;

use crate::world::{Divergence, World};

/// How long after its change tracking went off a table's last writes may
/// still land: a cycle under way, a frozen instance's write (pauses last
/// up to 750 ms), an idle move queued for the next poll.
const RETIRE_GRACE: Duration = Duration::from_secs(2);

/// A table whose change tracking is off: since when, and once the grace
/// ran out, its replica commits and Redis version then.
#[derive(Debug)]
pub(crate) struct CtOff {
    since: Instant,
    quiet: Option<(usize, Option<String>)>,
}

impl World {
    /// The next scout fails, or answers without one of its entries.
    pub(crate) fn scout_fault(&mut self, partial: Option<u32>) {
        let rule = match partial {
            Some(n) => Rule::fault(Fault::Partial(n)),
            None => Rule::reject().label("scout-reject"),
        };
        self.plan.inject(rule.at(Site::PrimaryMeta).method("scout"));
    }

    /// The `ct-off` / `ct-on` operations.
    pub(crate) fn switch_tracking(&mut self, t: usize, on: bool) {
        if self.set_tracking(t, on) {
            *self
                .figures
                .entry(if on { "ct-on" } else { "ct-off" })
                .or_insert(0) += 1;
        }
    }

    /// Change tracking off (or on again) for table `t` on the primary;
    /// whether it changed.
    fn set_tracking(&mut self, t: usize, on: bool) -> bool {
        let id = &self.tables[t];
        if self.primary.is_tracked(id) == on {
            return false;
        }
        self.primary.set_tracked(id, on);
        if on {
            self.ct_off.remove(&t);
        } else {
            let since = Instant::now();
            self.ct_off.insert(t, CtOff { since, quiet: None });
        }
        true
    }

    /// The operator turns change tracking back on wherever the run left
    /// it off, so every wanted table can be compared at the end.
    pub(crate) fn track_every_table(&mut self) {
        for t in 0..self.tables.len() {
            if self.set_tracking(t, true) {
                *self.figures.entry("ct-on at quiesce").or_insert(0) += 1;
            }
        }
    }

    /// A table whose change tracking is off left discovery, as documented:
    /// once its last cycle had time to end, nothing writes its replica
    /// table, its record or its Redis version until tracking is back.
    pub(crate) fn check_untracked(&mut self) -> Result<(), Divergence> {
        for (t, off) in self.ct_off.iter_mut() {
            let id = &self.tables[*t];
            let commits = self.replica.commit_tokens(id).len();
            // Redis losing its data is not a write.
            let version = self.state.get(&keys::version(id));
            match &mut off.quiet {
                None if off.since.elapsed() >= RETIRE_GRACE => {
                    off.quiet = Some((commits, version));
                    *self.figures.entry("untracked tables watched").or_insert(0) += 1;
                }
                Some((c, v)) if *c != commits || (version.is_some() && version != *v) => {
                    return Err(Divergence(format!(
                        "{id}: written with its change tracking off ({c} commits then {commits}, \
                         Redis version {v:?} then {version:?})"
                    )));
                }
                Some((_, v)) => *v = version,
                None => {}
            }
        }
        Ok(())
    }

    /// Scout calls that reached the primary, over every incarnation.
    pub(crate) fn scouts(&self) -> u64 {
        self.plans
            .iter()
            .map(|p| {
                p.calls()
                    .get(&(Site::PrimaryMeta, "scout"))
                    .copied()
                    .unwrap_or(0)
            })
            .sum()
    }
}
