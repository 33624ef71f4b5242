//! The operator's Force Load flag in the simulated world: a request (the
//! flag going "false" → "true") must lead to a load started after it, and
//! a forced load whose flag was set back to "false" by hand, once it has
//! read that "false", answers the flag no longer: "true" again is a new
//! request (docs/operating.md, Full loads).

use std::time::Duration;

use ctsync_actors::keys;

use crate::world::World;

/// How long (simulated ms) `reforce` waits at most for each of its steps.
const STEP_WAIT_MS: u64 = 300;

impl World {
    /// The operator asks for a full load of table `t` (the force flag set
    /// to "true"), remembered until a load started after it. "true"
    /// written again while a request is pending, or while a forced load
    /// runs that never read a withdrawal, is the same request
    /// (documented); a new one must lead to a load.
    pub(crate) fn force(&mut self, t: usize) {
        let id = self.tables[t].clone();
        let key = keys::force_full_load(&id);
        let forced_load_runs = self
            .replica
            .table_record(&id)
            .load
            .is_some_and(|l| l.forced)
            || self.forced_end_pending(t);
        // After a withdrawal, only one the load answered makes "true" new.
        let new = match self.withdrawn.get(&t) {
            Some(_) => self.withdrawal_seen(t),
            None => !forced_load_runs,
        };
        if self.withdrawn.contains_key(&t) && new {
            self.count("force again after a seen withdrawal");
        }
        if self.state.get(&key).as_deref() != Some("true") && new {
            // The latest request is the one a load must follow.
            let started = self.replica.loads_started(&id);
            self.force_requests.insert(t, started);
        }
        tracing::info!(target: "sim", table = %id, new, forced_load_runs, flag = ?self.state.get(&key), "force");
        self.withdrawn.remove(&t);
        self.state.set(&key, "true");
        self.notify(t);
    }

    /// The operator sets table `t`'s flag back to "false" by hand. A
    /// request no load has started on is withdrawn; a forced load goes on.
    pub(crate) fn unforce(&mut self, t: usize) {
        let id = self.tables[t].clone();
        let key = keys::force_full_load(&id);
        if self.state.get(&key).as_deref() == Some("true") {
            let started = self.replica.loads_started(&id);
            if self.force_requests.get(&t) == Some(&started) {
                self.force_requests.remove(&t);
            }
            if self
                .replica
                .table_record(&id)
                .load
                .is_some_and(|l| l.forced)
                || self.forced_end_pending(t)
            {
                let ends = self.state.load_ends(&id);
                self.withdrawn.insert(t, (started, ends));
                self.count("force withdrawn mid forced load");
            }
        }
        tracing::info!(target: "sim", table = %id, withdrawn = ?self.withdrawn.get(&t), "unforce");
        self.state.set(&key, "false");
        self.notify(t);
    }

    /// Force Load, "false" once the load copies, "true" again once it has
    /// read the "false" (each step waits at most `STEP_WAIT_MS`).
    pub(crate) async fn reforce(&mut self, t: usize) {
        let id = self.tables[t].clone();
        self.force(t);
        self.wait(|w| {
            w.replica
                .table_record(&id)
                .load
                .is_some_and(|l| l.forced && l.rows > 0)
        })
        .await;
        self.unforce(t);
        self.wait(|w| w.withdrawal_seen(t) || !w.withdrawn.contains_key(&t))
            .await;
        self.force(t);
    }

    /// The flag is still "false", and the forced load it was written
    /// during answers it no longer: the load recorded that it read the
    /// "false" (its record says unforced), or it ended in Redis after the
    /// "false" (so its end found the flag "false" and left it). Until then
    /// a "true" written again may be absorbed, as documented: a load that
    /// read neither write (its last read before both, its end after both)
    /// cannot tell them from the request it answers.
    fn withdrawal_seen(&self, t: usize) -> bool {
        let id = &self.tables[t];
        let Some(&(started, ends)) = self.withdrawn.get(&t) else {
            return false;
        };
        if self.state.get(&keys::force_full_load(id)).as_deref() == Some("true") {
            return false;
        }
        let recorded = self.replica.loads_started(id) == started
            && self
                .replica
                .table_record(id)
                .load
                .is_some_and(|l| !l.forced);
        recorded || self.state.load_ends(id) > ends
    }

    /// A forced load of `t` finished on the replica and its Redis step (the
    /// flag's reset) has not run since: the load still answers the flag.
    fn forced_end_pending(&self, t: usize) -> bool {
        let id = &self.tables[t];
        self.replica
            .last_forced_finish(id)
            .is_some_and(|at| self.state.last_load_end(id).is_none_or(|end| end < at))
    }

    async fn wait(&self, done: impl Fn(&World) -> bool) {
        for _ in 0..STEP_WAIT_MS {
            if done(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
