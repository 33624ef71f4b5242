//! The liveness check while quiescing: every live instance still runs its
//! discovery and its DDL listener, and the module sync and the queue's
//! receive still run on one of them. A call that hangs for ever holds
//! whatever waits on it (a supervisor, the listener, the sink) without any
//! table necessarily differing, so this is checked on the calls the
//! instances make, counted by their fault plans.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

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
/// How long after the snapshot each periodic call must have been made
/// again: module sync's interval and an actor's longest restart backoff
/// (200 ms each in the simulation), with room.
const WINDOW: Duration = Duration::from_millis(600);

fn count(plan: &FaultPlan, site: Site, method: &str) -> u64 {
    plan.calls()
        .iter()
        .filter(|((s, m), _)| *s == site && *m == method)
        .map(|(_, n)| n)
        .sum()
}

fn counts(plan: &FaultPlan) -> Vec<u64> {
    EACH.iter()
        .chain(&ONE)
        .map(|(s, m, _)| count(plan, *s, m))
        .collect()
}

/// Started as the faults stop: the calls each live instance had made once
/// every call still hung then has met its limit.
pub(crate) struct Liveness {
    plans: Vec<(String, Arc<FaultPlan>)>,
    check_at: tokio::time::Instant,
    before: Rc<RefCell<Option<Vec<Vec<u64>>>>>,
}

impl World {
    /// Starts the watch: no call can start hanging once the faults are
    /// cleared, so past one call limit from now a live actor keeps making
    /// calls and a stuck one makes none.
    pub(crate) fn watch_liveness(&self) -> Liveness {
        let mut plans = vec![("the running incarnation".to_string(), self.plan.clone())];
        if let Some((_, plan, id)) = &self.second {
            plans.push((id.clone(), plan.clone()));
        }
        let snapshot_at = tokio::time::Instant::now() + CALL_LIMIT + Duration::from_millis(100);
        let before = Rc::new(RefCell::new(None));
        {
            let (plans, before) = (plans.clone(), before.clone());
            actix_rt::spawn(async move {
                tokio::time::sleep_until(snapshot_at).await;
                *before.borrow_mut() = Some(plans.iter().map(|(_, p)| counts(p)).collect());
            });
        }
        Liveness {
            plans,
            check_at: snapshot_at + WINDOW,
            before,
        }
    }
}

impl Liveness {
    /// Every periodic call was made again in the window after the snapshot.
    pub(crate) async fn check(self) -> Result<(), Divergence> {
        tokio::time::sleep_until(self.check_at).await;
        let before = self
            .before
            .borrow_mut()
            .take()
            .ok_or_else(|| Divergence("the liveness snapshot was never taken".to_string()))?;
        let mut stuck = Vec::new();
        let mut one_ran = [false; ONE.len()];
        for ((name, plan), before) in self.plans.iter().zip(&before) {
            let now = counts(plan);
            for (i, (_, method, what)) in EACH.iter().chain(&ONE).enumerate() {
                let ran = now[i] > before[i];
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
                "while quiescing, {} made no call for {WINDOW:?} once every hung call had met \
                 its limit: stuck",
                stuck.join(", ")
            )))
        }
    }
}
