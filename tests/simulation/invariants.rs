//! The invariants checked after every step and at the end of a run, and
//! the quiescing that precedes the final check.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::world::{Divergence, World};
use ctsync_actors::keys;
use ctsync_actors::model::*;
use ctsync_actors::ports::Primary;
use ctsync_actors::status::TableState;

/// The invariants' names, as the figures and the report give them.
pub(crate) const VERSIONS: &str =
    "no stored version is ahead of what the replica holds (every step)";
pub(crate) const TOKENS: &str =
    "no table is written by two owners: commit tokens never go down (every step)";
pub(crate) const BACKLOG_RECORD: &str =
    "a backlog stopped part-way is recorded with its version and no load (every stop)";
pub(crate) const HELD_SAYS_WHY: &str = "a held table says why (quiesce)";
pub(crate) const EQUAL: &str =
    "every enabled table equals the primary, rows and columns (end of run, per table)";
pub(crate) const FORCE_REQUESTS: &str = "every force_full_load request led to a load (end of run)";
pub(crate) const NO_DUPLICATES: &str =
    "no replica write was refused for a duplicate key (every step)";
pub(crate) const OVERLAPS: &str = "no two cycles of one table overlapped (end of run)";
pub(crate) const PROMPT: &str =
    "a change committed just after an idle scout is applied one poll after the next (end of run, per table)";

impl World {
    /// No table is written by two owners: each table's commits carry
    /// tokens that never go down (an older owner's write after a newer
    /// owner's claim is refused by the replica's fence).
    pub(crate) fn check_tokens(&self) -> Result<(), Divergence> {
        for id in &self.tables {
            let tokens = self.replica.commit_tokens(id);
            if let Some(w) = tokens.windows(2).find(|w| w[0] > w[1]) {
                return Err(Divergence(format!(
                    "{id}: a write with token {} landed after one with token {}",
                    w[1], w[0]
                )));
            }
        }
        self.held(TOKENS);
        Ok(())
    }

    /// The table's status on whichever instance runs it.
    pub(crate) fn status(&self, key: &str) -> Option<ctsync_actors::status::TableStatus> {
        self.running.board.get(key).or_else(|| {
            self.second
                .as_ref()
                .and_then(|(running, _, _)| running.board.get(key))
        })
    }

    /// No stored version is ahead of what the replica holds: Redis's version
    /// is at most the replica's record, unless a pending load replaced it.
    pub(crate) fn check_versions(&self) -> Result<(), Divergence> {
        for id in &self.tables {
            let Some(redis) = self
                .state
                .get(&keys::version(id))
                .and_then(|v| v.parse::<SyncVersion>().ok())
            else {
                continue;
            };
            let record = self.replica.table_record(id);
            let replaced = record
                .load
                .as_ref()
                .is_some_and(|l| l.replaced_version == Some(redis));
            let held = record.version.unwrap_or(-1);
            if !replaced && redis > held {
                return Err(Divergence(format!(
                    "{id}: Redis version {redis} is ahead of the replica's record {record:?}"
                )));
            }
        }
        self.held(VERSIONS);
        Ok(())
    }

    /// Every force request of a wanted table led to a load started after it.
    pub(crate) fn check_force_requests(&self) -> Result<(), Divergence> {
        for (&t, &before) in &self.force_requests {
            let id = &self.tables[t];
            if self.wanted.contains(&t) && self.replica.loads_started(id) <= before {
                return Err(Divergence(format!(
                    "{id}: a force_full_load request never led to a load ({before} loads before it); \
                     the flag is {:?}, the record {:?}",
                    self.state.get(&keys::force_full_load(id)),
                    self.replica.table_record(id)
                )));
            }
        }
        self.held(FORCE_REQUESTS);
        Ok(())
    }

    /// Counts the tables whose backlog is part-way applied as a process
    /// stops, and checks the record: a recorded backlog always comes with a
    /// version (the rows were complete up to one when it started; it may
    /// differ from the backlog's start, which is Redis's value).
    pub(crate) fn count_backlogs(&mut self) {
        for id in &self.tables {
            let record = self.replica.table_record(id);
            if record.backlog.is_some() {
                assert!(record.version.is_some(), "{id}: {record:?}");
                assert!(record.load.is_none(), "{id}: {record:?}");
                self.held(BACKLOG_RECORD);
                self.stopped_mid_backlog += 1;
            }
        }
    }

    pub(crate) fn overlaps(&self) -> u64 {
        self.incarnations
            .iter()
            .chain(std::iter::once(&self.running))
            .chain(self.second.as_ref().map(|(r, _, _)| r))
            .map(|r| r.cycles.overlaps())
            .sum()
    }

    pub(crate) fn equal(&self, t: usize) -> bool {
        let id = &self.tables[t];
        let columns = |s: Option<TableSchema>| {
            s.map(|s| {
                s.written_columns()
                    .iter()
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>()
            })
        };
        let record = self.replica.table_record(id);
        record.load.is_none()
            && record.version.is_some()
            && self.replica.rows(id) == self.primary.rows(id)
            && columns(self.replica.schema(id)) == columns(self.primary_schema(t))
    }

    pub(crate) fn primary_schema(&self, t: usize) -> Option<TableSchema> {
        futures_lite_block(self.primary.table_schema(&self.tables[t])).ok()
    }

    /// Stops the faults and lets everything settle, acting as an operator
    /// would: re-enable what Redis forgot, force-load what is held (after
    /// checking that it says why). Then every wanted table must equal.
    pub(crate) async fn quiesce(&mut self) -> Result<(), Divergence> {
        for plan in &self.plans {
            plan.clear();
            plan.resume();
        }
        self.notifications = Default::default();
        self.track_every_table();
        let mut forced: BTreeSet<usize> = BTreeSet::new();
        for round in 0..600 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.check_versions()?;
            self.check_tokens()?;
            self.check_no_duplicates()?;
            if self.queue.is_disabled() {
                // As docs/operating.md says for a queue poison messages
                // disabled (the events in it, a rename's among them, wait).
                self.queue.enable();
                self.count("DDL queue re-enabled at quiesce");
            }
            for t in self.wanted.clone() {
                let id = &self.tables[t];
                // A rename ctsync has yet to apply moves the flag itself.
                if self.rename_pending(t) {
                    continue;
                }
                if self.state.get(&keys::enabled(id)).as_deref() != Some("true") {
                    self.state.set(&keys::enabled(id), "true");
                    self.notify(t);
                }
            }
            let mut all = true;
            for &t in &self.wanted.clone() {
                if self.equal(t) {
                    continue;
                }
                all = false;
                let key = self.tables[t].key_name();
                let Some(status) = self.status(&key) else {
                    continue;
                };
                let held = matches!(status.state, TableState::Stale | TableState::Error)
                    || (status.state == TableState::Paused && status.reason.is_some());
                if held && round > 20 {
                    if status.reason.is_none() && status.last_error.is_none() {
                        return Err(Divergence(format!(
                            "{key} is {:?} without saying why",
                            status.state
                        )));
                    }
                    self.held(HELD_SAYS_WHY);
                    if forced.insert(t) || round % 100 == 0 {
                        // As the held table's reason says: a counted
                        // request (the flag may be "true" already).
                        let id = self.tables[t].clone();
                        let _ =
                            ctsync_actors::ports::StateStore::request_full_load(&*self.state, &id)
                                .await;
                        self.notify(t);
                    }
                }
            }
            // Quiet means no call a hang still holds (until its call
            // limit) and no Force Load still waiting for its load: a table
            // equal to the primary may yet have a request to act on (its
            // cycle failed on a hung call and restarts). A request never
            // acted on keeps the run from quiescing, and fails it.
            let held = self.plans.iter().any(|p| p.held_calls() > 0);
            let forces_pending = self.wanted.iter().any(|&t| {
                self.state
                    .get(&keys::force_full_load(&self.tables[t]))
                    .as_deref()
                    == Some("true")
            });
            if all && round > 5 && !held && !forces_pending && self.modules_match().is_ok() {
                for _ in &self.wanted {
                    self.held(EQUAL);
                }
                return self.check_force_requests();
            }
        }
        let diverged: Vec<String> = self
            .wanted
            .iter()
            .filter(|&&t| !self.equal(t))
            .map(|&t| {
                let id = &self.tables[t];
                format!(
                    "{id}: replica {} rows, primary {}, record {:?}, status {:?}",
                    self.replica.rows(id).len(),
                    self.primary.rows(id).len(),
                    self.replica.table_record(id),
                    self.status(&id.key_name())
                )
            })
            .collect();
        if let Err(modules) = self.modules_match() {
            return Err(Divergence(format!(
                "after quiescing, the replica's modules differ from the primary's: {modules}; \
                 tables that differ: {diverged:#?}"
            )));
        }
        let pending: Vec<String> = self
            .wanted
            .iter()
            .filter(|&&t| {
                self.state
                    .get(&keys::force_full_load(&self.tables[t]))
                    .as_deref()
                    == Some("true")
            })
            .map(|&t| self.tables[t].to_string())
            .collect();
        Err(Divergence(format!(
            "after quiescing, enabled tables differ from the primary: {diverged:#?}; \
             Force Loads never acted on: {pending:?}"
        )))
    }
}

/// Polls a future that never waits (the in-memory primary's reads).
pub(crate) fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}
