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

/// Writes the load commits after the withdrawal that prove the load read
/// the "false": it reads the flags before each page, so the second write
/// after the "false" was preceded by a read that came after it.
const WRITES_AFTER_WITHDRAWAL: usize = 2;

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
            .is_some_and(|l| l.forced);
        let seen_withdrawal = self.withdrawal_seen(t);
        if seen_withdrawal {
            self.count("force again after a seen withdrawal");
        }
        if self.state.get(&key).as_deref() != Some("true") && (!forced_load_runs || seen_withdrawal)
        {
            // The latest request is the one a load must follow.
            let started = self.replica.loads_started(&id);
            self.force_requests.insert(t, started);
        }
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
            {
                let writes = self.replica.commit_tokens(&id).len();
                self.withdrawn.insert(t, (started, writes));
                self.count("force withdrawn mid forced load");
            }
        }
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

    /// The same forced load of `t` is still under way, the flag is still
    /// "false", and it has committed enough writes since the withdrawal to
    /// have read it.
    fn withdrawal_seen(&self, t: usize) -> bool {
        let id = &self.tables[t];
        let Some(&(started, writes)) = self.withdrawn.get(&t) else {
            return false;
        };
        self.replica.loads_started(id) == started
            && self.replica.table_record(id).load.is_some()
            && self.state.get(&keys::force_full_load(id)).as_deref() != Some("true")
            && self.replica.commit_tokens(id).len() >= writes + WRITES_AFTER_WITHDRAWAL
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
