//! What a poll costs the primary, the replica and Redis when the enabled
//! tables are idle and the primary is busy with another table (issue 13),
//! counted at the ports by method (one port call is one request or round
//! trip in the adapters): per idle cycle of a table, and per discovery.
//! Primary queries per poll still grow with the table count (one per idle
//! table); see the note.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ctsync_actors::actors::{self, Ports};
use ctsync_actors::memory::faults::{FaultPlan, Faulty, Site};
use ctsync_actors::memory::{MemoryPrimary, MemoryReplica, MemoryState};
use ctsync_actors::model::TableId;
use ctsync_actors::ports::{Primary, Replica, StateStore};
use ctsync_actors::status::TableState;
use support::fixtures::*;
use support::{eventually, fast_config};

const WAIT: Duration = Duration::from_secs(60);

type Calls = BTreeMap<(Site, &'static str), u64>;

fn by_method(plan: &FaultPlan) -> Calls {
    plan.calls()
}

fn diff(after: &Calls, before: &Calls) -> Calls {
    after
        .iter()
        .map(|(m, n)| (*m, n - before.get(m).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Runs `tables` enabled, loaded tables while another table takes writes,
/// and returns the port calls of a window of idle cycles, with the number
/// of table cycles (change sets opened) and discoveries (heartbeats) in it.
async fn idle_window(tables: usize) -> (Calls, u64, u64) {
    let primary = Arc::new(MemoryPrimary::new());
    let replica = Arc::new(MemoryReplica::new());
    let state = Arc::new(MemoryState::new());
    let ids: Vec<TableId> = (0..tables)
        .map(|i| TableId::new("dbo", format!("T{i}")))
        .collect();
    for id in &ids {
        let mut s = user_table();
        s.id = id.clone();
        primary.create_table(s, true);
        primary.insert_many(id, (1..=2).map(|i| user(i, "n")));
        state.set(&format!("mssql_sync:enabled:{}", id.key_name()), "true");
    }
    let mut busy = user_table();
    busy.id = TableId::new("dbo", "Busy");
    primary.create_table(busy.clone(), true);
    let plan = FaultPlan::new();
    let (p, r, s): (Arc<dyn Primary>, Arc<dyn Replica>, Arc<dyn StateStore>) =
        (primary.clone(), replica.clone(), state.clone());
    let mut config = fast_config();
    config.idle_advance = Duration::from_secs(600);
    let run = actors::start(
        Ports {
            primary: Arc::new(Faulty::new(p, plan.clone())),
            replica: Arc::new(Faulty::new(r, plan.clone())),
            state: Arc::new(Faulty::new(s, plan.clone())),
            ddl_queue: None,
        },
        config,
    );
    eventually(WAIT, "every table loaded and syncing", || async {
        ids.iter().all(|id| {
            run.board
                .get(&id.key_name())
                .is_some_and(|s| s.state == TableState::Incremental && s.version.is_some())
        })
    })
    .await;
    // Every table has cycled once since: its schema is cached and its
    // version moved once (the first time in this process).
    let reads: Vec<usize> = ids.iter().map(|id| primary.change_sets(id)).collect();
    let mut n = 0;
    eventually(WAIT, "a first idle cycle of every table", || {
        n += 1;
        primary.upsert(&busy.id, user(n, "busy"));
        let done = ids
            .iter()
            .zip(&reads)
            .all(|(id, r)| primary.change_sets(id) >= r + 2);
        async move { done }
    })
    .await;
    let calls0 = by_method(&plan);
    let cycles0: usize = ids.iter().map(|id| primary.change_sets(id)).sum();
    let target = cycles0 + 10 * tables;
    eventually(WAIT, "ten idle cycles per table", || {
        n += 1;
        primary.upsert(&busy.id, user(n, "busy"));
        let cycles: usize = ids.iter().map(|id| primary.change_sets(id)).sum();
        async move { cycles >= target }
    })
    .await;
    let window = diff(&by_method(&plan), &calls0);
    let cycles: usize = ids.iter().map(|id| primary.change_sets(id)).sum();
    run.supervisor.do_send(actors::Shutdown);
    let heartbeats = count(&window, Site::StateWrite, "heartbeat");
    (window, (cycles - cycles0) as u64, heartbeats)
}

/// The calls of `method` at `site`.
fn count(calls: &Calls, site: Site, method: &str) -> u64 {
    calls
        .iter()
        .filter(|((s, m), _)| *s == site && *m == method)
        .map(|(_, n)| *n)
        .sum()
}

/// `calls` per `per`, allowing the cycles in flight at both ends of the
/// window (`slack` whole calls).
fn assert_per(calls: &Calls, (site, method): (Site, &str), per: u64, each: u64, slack: u64) {
    let got = count(calls, site, method);
    let want = per * each;
    assert!(
        got + slack >= want && got <= want + slack,
        "{method}: {got} calls for {per} cycles, expected {each} each (±{slack}); all calls: {calls:?}"
    );
}

async fn idle_tables_cost_a_fixed_handful_each(tables: usize) {
    let (calls, cycles, polls) = idle_window(tables).await;
    let slack = tables as u64 * 2;
    // Per idle cycle of a table on a busy primary:
    // Redis: one round trip for its flags, version and identity (the busy
    // table is tracked but not enabled: one round trip per poll too).
    assert_per(
        &calls,
        (Site::StateRead, "cycle_keys"),
        cycles + polls,
        1,
        slack + 2,
    );
    for never in ["flags", "version", "primary_identity"] {
        assert_per(&calls, (Site::StateRead, never), cycles, 0, 0);
    }
    assert_per(&calls, (Site::StateWrite, "set_version"), cycles, 0, 0);
    // Primary: one request, the change set's open (the current and min
    // valid versions come back with it; an empty set reads no page).
    assert_per(
        &calls,
        (Site::PrimaryChanges, "open_changes"),
        cycles,
        1,
        slack,
    );
    for never in ["current_version", "min_valid_version"] {
        assert_per(&calls, (Site::PrimaryMeta, never), cycles, 0, 0);
    }
    assert_per(&calls, (Site::PrimaryChanges, "next_page"), cycles, 0, 0);
    // No catalog read while the schema is cached (a refresh every 12).
    let catalog = count(&calls, Site::PrimaryMeta, "table_schema");
    assert!(
        catalog <= cycles / 12 + tables as u64,
        "{catalog} catalog reads in {cycles} cycles"
    );
    // Replica: no record read while the schema is cached and Redis has the
    // version (once per catalog refresh), no write (the version moves at
    // most every idle_advance).
    let records = count(&calls, Site::ReplicaRead, "record");
    assert!(
        records <= cycles / 12 + tables as u64,
        "{records} record reads in {cycles} cycles"
    );
    let replica_catalog = count(&calls, Site::ReplicaRead, "table_schema");
    assert!(replica_catalog <= cycles / 12 + tables as u64);
    assert_per(&calls, (Site::ReplicaWrite, "apply_changes"), cycles, 0, 0);
    // Discovery: a constant handful per poll, whatever the table count.
    assert!(polls > 0, "no discovery in the window: {calls:?}");
    for each in ["heartbeat", "acquire_leases", "ensure_flags"] {
        assert_per(&calls, (Site::StateWrite, each), polls, 1, 2);
    }
    assert_per(&calls, (Site::PrimaryMeta, "tracked_tables"), polls, 1, 2);
}

#[actix_rt::test]
async fn one_idle_table_costs_a_fixed_handful_per_poll() {
    idle_tables_cost_a_fixed_handful_each(1).await;
}

#[actix_rt::test]
async fn a_hundred_idle_tables_cost_the_same_each() {
    idle_tables_cost_a_fixed_handful_each(100).await;
}
