//! Swap blockers in the simulated world: an operator adds a trigger or a
//! foreign key to a replica table and drops it again, so shadow loads meet
//! a blocker at their start (the in-place fallback) and part-way (one
//! appearing, or going away, while the load runs); and the check that
//! every load that ran in place said why.

use ctsync_actors::ports::LoadMode;

use crate::world::{Divergence, World};

/// How long (simulated ms) a `mid_load` block-swap waits at most for its
/// forced load to copy into a shadow.
const MID_LOAD_WAIT_MS: u64 = 300;

const TRIGGER: &str = "sim_audit";
const FOREIGN_KEY: &str = "sim_fk";

impl World {
    /// Counts one `what` in the run's figures.
    pub(crate) fn count(&mut self, what: &'static str) {
        *self.figures.entry(what).or_insert(0) += 1;
    }

    /// Adds a blocker to table `t`'s replica table, if it has one; with
    /// `mid_load`, once a forced load of it copies into its shadow (or
    /// after `MID_LOAD_WAIT_MS` all the same: an in-place incarnation, a
    /// held table).
    pub(crate) async fn block_swap(&mut self, t: usize, foreign_key: bool, mid_load: bool) {
        let id = self.tables[t].clone();
        if mid_load {
            self.force(t);
            for _ in 0..MID_LOAD_WAIT_MS {
                let copying = self
                    .replica
                    .table_record(&id)
                    .load
                    .is_some_and(|l| l.mode == LoadMode::Shadow && l.rows > 0);
                if copying {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
        let name = if foreign_key { FOREIGN_KEY } else { TRIGGER };
        let shadow_load = self.loading(t) == Some(LoadMode::Shadow);
        if self
            .replica
            .set_blocker_by_hand(&id, name, foreign_key, true)
        {
            self.count("block-swap");
            if shadow_load {
                self.count("block-swap mid shadow load");
            }
        }
    }

    /// Drops the blockers added by hand on table `t`'s replica table.
    pub(crate) fn unblock_swap(&mut self, t: usize) {
        let id = self.tables[t].clone();
        if self.replica.blockers_by_hand(&id).is_empty() {
            return;
        }
        let in_place_load = self.loading(t) == Some(LoadMode::InPlace);
        self.replica.set_blocker_by_hand(&id, TRIGGER, false, false);
        self.replica
            .set_blocker_by_hand(&id, FOREIGN_KEY, true, false);
        self.count("unblock-swap");
        if in_place_load {
            self.count("unblock-swap mid in-place load");
        }
    }

    /// The mode of table `t`'s pending load, if one is under way.
    fn loading(&self, t: usize) -> Option<LoadMode> {
        self.replica
            .table_record(&self.tables[t])
            .load
            .map(|l| l.mode)
    }

    /// Every load that ran in place recorded why (the page and the API
    /// show it); counts the loads a blocker sent in place.
    pub(crate) fn check_in_place_loads(&mut self) -> Result<(), Divergence> {
        let mut blocked = 0;
        let mut fell_back = 0;
        for id in &self.tables {
            for (mode, reason) in self.replica.load_starts(id) {
                match (mode, reason) {
                    (LoadMode::InPlace, None) => {
                        return Err(Divergence(format!(
                            "{id}: a load ran in place without saying why"
                        )))
                    }
                    (LoadMode::InPlace, Some(r)) if r.contains("part-way") => fell_back += 1,
                    (LoadMode::InPlace, Some(r))
                        if ["trigger", "foreign key", "schema-bound"]
                            .iter()
                            .any(|b| r.contains(b)) =>
                    {
                        blocked += 1
                    }
                    _ => {}
                }
            }
        }
        *self
            .figures
            .entry("loads in place for a blocker")
            .or_insert(0) += blocked;
        *self
            .figures
            .entry("loads in place, blocked part-way")
            .or_insert(0) += fell_back;
        Ok(())
    }
}
