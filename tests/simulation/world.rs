//! One simulated world: the in-memory ports, the running incarnations
//! (each with its fault plan) and what the operator wants, and how each
//! operation acts on it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::generator::KEYS;
use crate::ops::Op;
use crate::rows::*;
use ctsync_actors::actors::{self, Ports, Running};
use ctsync_actors::keys;
use ctsync_actors::memory::faults::{self, Fault, FaultPlan, Rule};
use ctsync_actors::memory::{MemoryDdlQueue, MemoryPrimary, MemoryReplica, MemoryState};
use ctsync_actors::model::*;
use ctsync_actors::ports::Primary;

/// Rows per table at the start (keys 0..KEYS are touched by the workload).
pub(crate) const INITIAL_ROWS: u8 = 24;

/// How long (simulated ms) `stop-mid-backlog` waits at most for its table's
/// backlog to be recorded part-way before it stops the process anyway.
const BACKLOG_WAIT_MS: u64 = 500;

/// What went wrong in a run.
#[derive(Debug)]
pub(crate) struct Divergence(pub(crate) String);

/// What a run did, for the figures in the note.
#[derive(Debug, Default)]
pub(crate) struct RunStats {
    pub(crate) ops: usize,
    pub(crate) faults: BTreeMap<String, u64>,
    /// The final state: CT version, each table's replica record and loads,
    /// and the simulated time the run took (for the replay check).
    pub(crate) fingerprint: String,
    /// Invariants checked, by name, and how many times each held.
    pub(crate) checks: BTreeMap<&'static str, u64>,
    /// Operations and faults by kind and pipeline state (coverage).
    pub(crate) op_phases: crate::coverage::Counts,
    pub(crate) fault_phases: crate::coverage::Counts,
}

/// One simulated world: the in-memory ports and the running incarnation.
pub(crate) struct World {
    pub(crate) primary: Arc<MemoryPrimary>,
    pub(crate) replica: Arc<MemoryReplica>,
    pub(crate) state: Arc<MemoryState>,
    pub(crate) queue: Arc<MemoryDdlQueue>,
    pub(crate) plan: Arc<FaultPlan>,
    pub(crate) running: Running,
    /// The running incarnation's instance id.
    pub(crate) running_id: String,
    /// A second instance sharing the tables, with its fault plan.
    pub(crate) second: Option<(Running, Arc<FaultPlan>, String)>,
    /// Every incarnation so far, for the overlap check.
    pub(crate) incarnations: Vec<Running>,
    pub(crate) plans: Vec<Arc<FaultPlan>>,
    /// What the operator wants enabled (ground truth across Redis loss).
    pub(crate) wanted: BTreeSet<usize>,
    pub(crate) tables: Vec<TableId>,
    /// `tables`, shared with the fault plans' probes.
    pub(crate) names: crate::coverage::Names,
    /// Tables renamed so far (each new name is fresh).
    pub(crate) renames: usize,
    /// The names renamed tables had before.
    pub(crate) former_names: Vec<TableId>,
    /// Each renamed table's name before its latest rename.
    pub(crate) renamed_from: BTreeMap<usize, TableId>,
    pub(crate) columns_added: usize,
    /// Force requests (the flag went "false" → "true") not yet seen
    /// through: the number of loads the table had started by then.
    pub(crate) force_requests: BTreeMap<usize, usize>,
    /// Forced loads whose flag the operator set back to "false": the loads
    /// the table had started and the load ends Redis had applied by then
    /// (see [`crate::force_requests`]).
    pub(crate) withdrawn: BTreeMap<usize, (usize, u64)>,
    /// Kills and restarts that found a backlog part-way applied (its cursor
    /// recorded on the replica): the next incarnation continues it.
    pub(crate) stopped_mid_backlog: u64,
    /// Operations run, by kind and the state of the tables they met.
    pub(crate) op_phases: crate::coverage::Counts,
    /// Invariants checked, by name: how many times each held.
    pub(crate) checks: std::cell::RefCell<BTreeMap<&'static str, u64>>,
    /// Keyspace notifications waiting on a fault.
    pub(crate) notifications: crate::keyspace::Notifications,
    /// Faults the world injected itself (not through a plan), by kind and
    /// state (their counts go to `figures`).
    pub(crate) world_fault_phases: crate::coverage::Counts,
    /// The faults inside the replica's transactions (bulk loads failing
    /// part-way): the world's, not a process's, so no kill or quiesce
    /// lifts them (a table bulk copy cannot take stays so).
    pub(crate) bulk_faults: Arc<FaultPlan>,
    /// Recorded cursors made unreadable, by kind.
    pub(crate) cursors_corrupted: BTreeMap<&'static str, u64>,
    /// World-level faults and what they reached, by name, for the run's
    /// figures (with the fault plans' counts).
    pub(crate) figures: BTreeMap<&'static str, u64>,
    /// Tables whose change tracking is off now (`scout.rs`).
    pub(crate) ct_off: BTreeMap<usize, crate::scout::CtOff>,
}

pub(crate) fn start(
    world_ports: (
        &Arc<MemoryPrimary>,
        &Arc<MemoryReplica>,
        &Arc<MemoryState>,
        &Arc<MemoryDdlQueue>,
    ),
    plan: &Arc<FaultPlan>,
    incarnation: usize,
    instance_id: String,
) -> Running {
    let (primary, replica, state, queue) = world_ports;
    actors::start(
        faults::wrap(
            Ports {
                primary: primary.clone(),
                replica: replica.clone(),
                state: state.clone(),
                ddl_queue: Some(queue.clone()),
            },
            plan,
        ),
        config(incarnation, instance_id),
    )
}

impl World {
    /// Counts one check of the invariant `name` that held.
    pub(crate) fn held(&self, name: &'static str) {
        *self.checks.borrow_mut().entry(name).or_insert(0) += 1;
    }

    pub(crate) fn new() -> Self {
        let primary = Arc::new(MemoryPrimary::new());
        let replica = Arc::new(MemoryReplica::new());
        let state = Arc::new(MemoryState::new());
        let queue = Arc::new(MemoryDdlQueue::new());
        let mut tables = Vec::new();
        for schema in table_defs() {
            tables.push(schema.id.clone());
            let rows: Vec<Row> = (0..INITIAL_ROWS)
                .map(|k| row_for(&schema, k, k as u32 + 1))
                .collect();
            let id = schema.id.clone();
            primary.create_table(schema, true);
            primary.insert_many(&id, rows);
        }
        // Pages take simulated time, so loads and backlogs span several
        // steps and operator actions and faults land in the middle of them.
        replica.set_insert_delay(Duration::from_millis(4));
        // The end of a load and a schema change take time too, so other
        // work and faults meet them under way (the coverage's swap and
        // DDL-apply states).
        replica.set_statement_delay("finish_full_load", Duration::from_millis(60));
        replica.set_statement_delay("alter_columns", Duration::from_millis(80));
        replica.set_statement_delay("rename_column", Duration::from_millis(80));
        replica.set_statement_delay("rename_table", Duration::from_millis(80));
        let names: crate::coverage::Names = Arc::new(std::sync::Mutex::new(tables.clone()));
        let bulk_faults = crate::coverage::plan(&replica, &names);
        replica.set_inner_faults(bulk_faults.clone());
        for id in &tables {
            primary.delay_changes_pages(id, Duration::from_millis(3));
        }
        let plan = crate::coverage::plan(&replica, &names);
        let running = start(
            (&primary, &replica, &state, &queue),
            &plan,
            0,
            "sim-0".into(),
        );
        Self {
            primary,
            replica,
            state,
            queue,
            plans: vec![plan.clone()],
            plan,
            running,
            running_id: "sim-0".into(),
            second: None,
            incarnations: Vec::new(),
            wanted: BTreeSet::new(),
            tables,
            names,
            renames: 0,
            former_names: Vec::new(),
            renamed_from: BTreeMap::new(),
            columns_added: 0,
            force_requests: BTreeMap::new(),
            withdrawn: BTreeMap::new(),
            stopped_mid_backlog: 0,
            op_phases: Default::default(),
            checks: Default::default(),
            notifications: Default::default(),
            world_fault_phases: Default::default(),
            bulk_faults,
            cursors_corrupted: BTreeMap::new(),
            figures: BTreeMap::new(),
            ct_off: BTreeMap::new(),
        }
    }

    pub(crate) fn new_incarnation(&mut self) {
        self.plan = crate::coverage::plan(&self.replica, &self.names);
        self.plans.push(self.plan.clone());
        self.running_id = format!("sim-{}", self.plans.len() - 1);
        let next = start(
            (&self.primary, &self.replica, &self.state, &self.queue),
            &self.plan,
            self.plans.len() - 1,
            self.running_id.clone(),
        );
        let old = std::mem::replace(&mut self.running, next);
        self.incarnations.push(old);
    }

    pub(crate) async fn schema(&self, t: usize) -> Option<TableSchema> {
        self.primary.table_schema(&self.tables[t]).await.ok()
    }

    pub(crate) fn push_event(&self, xml: String, send: bool) {
        if send {
            self.queue.push_event(&xml);
        }
    }

    pub(crate) async fn apply(&mut self, op: &Op) {
        if let Op::Enable(t)
        | Op::Disable(t)
        | Op::Force(t)
        | Op::Unforce(t)
        | Op::Reforce(t)
        | Op::RenameTable { t, .. }
        | Op::CtOff(t) = op
        {
            // Change tracking off would drop the event (an untracked
            // table's DDL is not applied): the operator waits for it too.
            if self.rename_pending(*t) {
                self.count("operator step held back: a rename not applied yet");
                return;
            }
        }
        match op {
            Op::Upsert { t, key, salt } => {
                if let Some(schema) = self.schema(*t).await {
                    self.primary
                        .upsert(&self.tables[*t], row_for(&schema, *key, *salt));
                }
            }
            Op::Delete { t, key } => {
                if let Some(schema) = self.schema(*t).await {
                    let key = RowKey(key_values(&schema, *key));
                    self.primary.delete(&self.tables[*t], &key);
                }
            }
            Op::ChangeKey { t, from, to, salt } => {
                if let Some(schema) = self.schema(*t).await {
                    let id = &self.tables[*t];
                    let old = RowKey(key_values(&schema, *from));
                    let exists =
                        self.primary.rows(id).iter().any(|r| {
                            ctsync_actors::memory::row_key(&schema, r).as_ref() == Some(&old)
                        });
                    if exists && from != to {
                        self.primary
                            .update_key(id, &old, row_for(&schema, *to, *salt));
                    }
                }
            }
            Op::Enable(t) => {
                self.wanted.insert(*t);
                self.state.set(&keys::enabled(&self.tables[*t]), "true");
                self.notify(*t);
            }
            Op::Disable(t) => {
                self.wanted.remove(t);
                self.state.set(&keys::enabled(&self.tables[*t]), "false");
                self.notify(*t);
            }
            Op::Force(t) => self.force(*t),
            Op::AddColumn { t, not_null, event } => {
                self.columns_added += 1;
                let name = format!("Added{}", self.columns_added);
                let column = ColumnDef::new(&name, SqlType::Int, !*not_null);
                let fill = if *not_null {
                    Value::I32(7)
                } else {
                    Value::Null
                };
                let id = self.tables[*t].clone();
                self.primary.add_column(&id, column, fill);
                self.push_event(add_column_event(&id, &name), *event);
            }
            Op::RenameColumn { t, event } => {
                let Some(schema) = self.schema(*t).await else {
                    return;
                };
                let keys = schema.key_columns().unwrap_or_default();
                // A non-key, written column; renamed to a fresh name.
                let Some(col) = schema
                    .written_columns()
                    .into_iter()
                    .find(|c| !keys.contains(&c.name))
                    .map(|c| c.name.clone())
                else {
                    return;
                };
                self.columns_added += 1;
                let to = format!("Renamed{}", self.columns_added);
                let id = self.tables[*t].clone();
                self.primary.rename_column(&id, &col, &to);
                self.push_event(rename_column_event(&id, &col, &to), *event);
            }
            Op::DropColumn { t, event } => {
                let Some(schema) = self.schema(*t).await else {
                    return;
                };
                let keys = schema.key_columns().unwrap_or_default();
                // The last non-key column, if the table keeps at least one.
                let droppable: Vec<String> = schema
                    .columns
                    .iter()
                    .filter(|c| !keys.contains(&c.name))
                    .map(|c| c.name.clone())
                    .collect();
                let Some(col) = droppable.last().filter(|_| droppable.len() > 1).cloned() else {
                    return;
                };
                let id = self.tables[*t].clone();
                self.primary.drop_column(&id, &col);
                self.push_event(drop_column_event(&id, &col), *event);
            }
            Op::Cleanup(t) => {
                let v = self.primary.version();
                self.primary.cleanup(&self.tables[*t], v);
            }
            Op::Truncate(t) => self.primary.truncate(&self.tables[*t]),
            Op::Fault(site, fault) => self.plan.push(*site, *fault),
            Op::RedisDown => self.plan.set_state_down(true),
            Op::RedisUp => self.plan.set_state_down(false),
            Op::RedisFlush => {
                // The requests were lost with the data, as documented.
                self.force_requests.clear();
                self.state.flush();
            }
            Op::Kill => self.stop(false).await,
            Op::Restart => self.stop(true).await,
            Op::StopMidBacklog { t, salt, graceful } => {
                let n = self.tables.len();
                let t = (0..n)
                    .map(|i| (t + i) % n)
                    .find(|i| self.wanted.contains(i))
                    .unwrap_or(*t);
                let id = self.tables[t].clone();
                if let Some(schema) = self.schema(t).await {
                    for key in 0..KEYS as u8 {
                        self.primary.upsert(&id, row_for(&schema, key, *salt));
                    }
                }
                // Bounded: a held, loading or stalled table never gets to
                // it, and the process stops all the same.
                for _ in 0..BACKLOG_WAIT_MS {
                    if self.replica.table_record(&id).backlog.is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                self.stop(*graceful).await;
            }
            Op::Join => {
                if self.second.is_none() {
                    let plan = crate::coverage::plan(&self.replica, &self.names);
                    self.plans.push(plan.clone());
                    let n = self.plans.len() - 1;
                    let id = format!("sim-second-{n}");
                    let running = start(
                        (&self.primary, &self.replica, &self.state, &self.queue),
                        &plan,
                        n,
                        id.clone(),
                    );
                    self.second = Some((running, plan, id));
                }
            }
            Op::Leave => {
                if let Some((running, plan, id)) = self.second.take() {
                    let _ = tokio::time::timeout(Duration::from_secs(5), running.shutdown()).await;
                    plan.kill();
                    self.abort_receive_of(&id);
                    self.incarnations.push(running);
                }
            }
            Op::KillSecond => {
                if let Some((running, plan, id)) = self.second.take() {
                    plan.kill();
                    self.abort_receive_of(&id);
                    self.incarnations.push(running);
                }
            }
            Op::Pause { second, ms, at } => {
                let plan = match (&self.second, second) {
                    (Some((_, plan, _)), true) => plan.clone(),
                    _ => self.plan.clone(),
                };
                match at {
                    Some(site) => plan.pause_on_next(*site),
                    None => plan.pause(),
                }
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                plan.resume();
            }
            Op::Advance(ms) => tokio::time::sleep(Duration::from_millis(*ms)).await,
            Op::Keyspace(fate) => self.notification_fault(*fate),
            Op::BulkFail {
                t,
                lasting,
                connection,
            } => self.bulk_fail(*t, *lasting, *connection),
            Op::CorruptCursor {
                t,
                load,
                forced,
                salt,
            } => self.corrupt_cursor(*t, (*load, *forced), *salt).await,
            Op::BlockSwap {
                t,
                foreign_key,
                mid_load,
            } => self.block_swap(*t, *foreign_key, *mid_load).await,
            Op::UnblockSwap(t) => self.unblock_swap(*t),
            Op::RenameTable { t, mid_load } => self.rename_table(*t, *mid_load).await,
            Op::Module { n, drop, salt } => self.change_module(*n, *drop, *salt),
            Op::ModuleFault(site, fault) => self.module_fault(*site, *fault, None),
            Op::During {
                phase,
                site,
                fault,
                module: true,
            } => self.module_fault(*site, *fault, Some(*phase)),
            Op::During {
                phase, site, fault, ..
            } => {
                self.plan
                    .inject(Rule::fault(*fault).at(*site).during(*phase));
            }
            Op::CtOff(t) => self.switch_tracking(*t, false),
            Op::CtOn(t) => self.switch_tracking(*t, true),
            Op::ScoutFault { partial } => self.scout_fault(*partial),
            Op::Hang { site, effect } => self.plan.push(*site, Fault::Hang { effect: *effect }),
            Op::Slow { site, ms } => self.plan.push(*site, Fault::Slow { ms: *ms }),
            Op::Unforce(t) => self.unforce(*t),
            Op::Reforce(t) => self.reforce(*t).await,
        }
    }

    /// The running process stops (`graceful`: the daemon's stop sequence,
    /// bounded as the daemon bounds it; else it dies) and a new one starts.
    pub(crate) async fn stop(&mut self, graceful: bool) {
        self.stop_with(graceful, |_| {}).await;
    }

    /// [`Self::stop`], with `meanwhile` done to the world after the process
    /// stopped and before the next one starts.
    pub(crate) async fn stop_with(&mut self, graceful: bool, meanwhile: impl FnOnce(&mut World)) {
        if graceful {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.running.shutdown()).await;
        }
        self.plan.kill();
        self.count_backlogs();
        // The dead process's open receive is rolled back by the server.
        let id = format!("sim-{}", self.plans.len() - 1);
        self.abort_receive_of(&id);
        meanwhile(self);
        self.new_incarnation();
    }

    /// A dead instance's open receive is rolled back by the server (only
    /// the holder of the listener's lease can have one open).
    pub(crate) fn abort_receive_of(&self, instance: &str) {
        let holder = self.state.lease(&keys::singleton_lease("ddl_listener"));
        if holder.is_some_and(|v| v.starts_with(&format!("{instance} "))) {
            self.queue.abort_if_open();
        }
    }
}
