//! The liveness check after quiescing: every live instance still runs its
//! discovery and its DDL listener, and the module sync and the queue's
//! receive still run on one of them. A call that hangs for ever holds
//! whatever waits on it (a supervisor, the listener, the sink) without any
//! table necessarily differing, so this is checked on the calls the
//! instances make, counted by their fault plans.

use crate::rows::CALL_LIMIT;
use crate::world::{Divergence, World};
use ctsync_actors::memory::faults::{FaultPlan, Site};

/// The periodic calls of one instance (each made every poll or round).
const EACH: [(Site, &str, &str); 2] = [
    (Site::StateWrite, "discovery_start", "discovery"),
    (Site::ReplicaRead, "inbox_pending", "the DDL listener"),
];
/// The periodic calls of the instance holding their singleton's lease.
const ONE: [(Site, &str, &str); 2] = [
    (Site::PrimaryMeta, "modules", "module sync"),
    (Site::QueueReceive, "receive", "the DDL queue's receive"),
];

fn count(plan: &FaultPlan, site: Site, method: &str) -> u64 {
    plan.calls()
        .iter()
        .filter(|((s, m), _)| *s == site && *m == method)
        .map(|(_, n)| n)
        .sum()
}

impl World {
    /// The live instances' plans (the running incarnation and the second
    /// instance, if it runs).
    fn live_plans(&self) -> Vec<(String, std::sync::Arc<FaultPlan>)> {
        let mut plans = vec![("the running incarnation".to_string(), self.plan.clone())];
        if let Some((_, plan, id)) = &self.second {
            plans.push((id.clone(), plan.clone()));
        }
        plans
    }

    /// Waits long enough for any call still hung to meet its limit and
    /// its actor to come back, then checks that every periodic call was
    /// made again.
    pub(crate) async fn check_liveness(&self) -> Result<(), Divergence> {
        let plans = self.live_plans();
        let before: Vec<Vec<u64>> = plans
            .iter()
            .map(|(_, p)| {
                EACH.iter()
                    .chain(&ONE)
                    .map(|(s, m, _)| count(p, *s, m))
                    .collect()
            })
            .collect();
        tokio::time::sleep(CALL_LIMIT * 3).await;
        let mut stuck = Vec::new();
        let mut one_ran = [false; ONE.len()];
        for ((name, plan), before) in plans.iter().zip(&before) {
            for (i, (site, method, what)) in EACH.iter().chain(&ONE).enumerate() {
                let ran = count(plan, *site, method) > before[i];
                match i.checked_sub(EACH.len()) {
                    None if !ran => stuck.push(format!("{what} of {name} ({method})")),
                    None => {}
                    Some(j) => one_ran[j] |= ran,
                }
            }
        }
        for (ran, (_, method, what)) in one_ran.iter().zip(&ONE) {
            if !ran {
                stuck.push(format!("{what} on every instance ({method})"));
            }
        }
        if stuck.is_empty() {
            Ok(())
        } else {
            Err(Divergence(format!(
                "after quiescing, {} made no call for {:?}: stuck",
                stuck.join(", "),
                CALL_LIMIT * 3
            )))
        }
    }
}
