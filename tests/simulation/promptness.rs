//! Promptness, checked once the run quiesced (no fault in force, every
//! wanted table equal): a change committed just after a scout that found
//! its table idle is on the replica within one poll of the next scout, as
//! the README promises, also when that poll's batch moves the table's
//! version (idle advances are due every poll on some incarnations).

use std::time::Duration;

use ctsync_actors::actors::WakeTable;
use ctsync_actors::keys;
use ctsync_actors::memory::faults::{FaultPlan, Site};
use ctsync_actors::status::TableState;

use crate::invariants::PROMPT;
use crate::rows::{row_for, POLL};
use crate::world::{Divergence, World};

/// What a probe waits for a scout at most (simulated ms).
const SCOUT_WAIT_MS: u64 = 500;

fn scouts(plan: &FaultPlan) -> u64 {
    plan.calls()
        .get(&(Site::PrimaryMeta, "scout"))
        .copied()
        .unwrap_or(0)
}

/// Sleeps 1 ms at a time until a scout of `plan` has answered since `seen`.
async fn next_scout(plan: &FaultPlan, seen: u64) -> bool {
    for _ in 0..SCOUT_WAIT_MS {
        if scouts(plan) > seen {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    false
}

impl World {
    /// Probes each wanted table that its live owner syncs: another table
    /// commits (so an idle advance is due), a scout finds the table idle,
    /// its cycle is woken between two scouts (so it is not the one just
    /// after a scout), then the table changes; one poll after the next
    /// scout the change must be on the replica.
    pub(crate) async fn check_promptness(&mut self) -> Result<(), Divergence> {
        let poll = POLL;
        for t in self.wanted.clone() {
            let id = self.tables[t].clone();
            let Some((plan, supervisor)) = self.owner_of(t) else {
                continue;
            };
            let syncing = self
                .status(&id.key_name())
                .is_some_and(|s| s.state == TableState::Incremental);
            // No fault in force for it (a lasting bulk fault outlives
            // quiescing, as a table bulk copy cannot take stays so).
            let faulty = plan.may_strike(&id) || self.bulk_faults.may_strike(&id);
            if !syncing || faulty || !self.equal(t) {
                continue;
            }
            let (Some(other), Some(schema)) = (
                self.schema((t + 1) % self.tables.len()).await,
                self.schema(t).await,
            ) else {
                continue;
            };
            self.primary
                .upsert(&other.id, row_for(&other, 0, 0xB05E + t as u32));
            if !next_scout(&plan, scouts(&plan)).await {
                continue;
            }
            tokio::time::sleep(poll * 2 / 5).await;
            supervisor.do_send(WakeTable(id.clone()));
            tokio::time::sleep(Duration::from_millis(2)).await;
            self.primary
                .upsert(&id, row_for(&schema, 1, 0x9A0B + t as u32));
            if !next_scout(&plan, scouts(&plan)).await {
                continue;
            }
            tokio::time::sleep(poll).await;
            if self.replica.rows(&id) != self.primary.rows(&id) {
                return Err(Divergence(format!(
                    "{id}: a change committed just after an idle scout is not on the replica \
                     one poll ({poll:?}) after the next scout; record {:?}, status {:?}",
                    self.replica.table_record(&id),
                    self.status(&id.key_name())
                )));
            }
            self.held(PROMPT);
        }
        Ok(())
    }

    /// The live instance holding table `t`'s lease: its fault plan and
    /// supervisor.
    fn owner_of(
        &self,
        t: usize,
    ) -> Option<(
        std::sync::Arc<FaultPlan>,
        actix::Addr<ctsync_actors::actors::SupervisorActor>,
    )> {
        let lease = self.state.lease(&keys::table_lease(&self.tables[t]))?;
        let owner = lease.split(' ').next()?;
        if owner == self.running_id {
            return Some((self.plan.clone(), self.running.supervisor.clone()));
        }
        match &self.second {
            Some((running, plan, second)) if second == owner => {
                Some((plan.clone(), running.supervisor.clone()))
            }
            _ => None,
        }
    }
}
