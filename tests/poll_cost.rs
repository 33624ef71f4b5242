//! What a poll costs the primary, the replica and Redis when the enabled
//! tables are idle and the primary is busy with another table (issue 13),
//! counted at the ports by method (one port call is one request or round
//! trip in the adapters): per idle cycle of a table, and per discovery.
//! Per poll, whatever the number of tables: ≤ 10 primary queries, ≤ 20
//! replica requests and one Redis round trip per table plus two.

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
    config.idle_catalog_refresh = ctsync_actors::sync::SyncConfig::default().idle_catalog_refresh;
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
    // Every table has cycled since: its schema is cached, its version
    // moved once (the first time in this process) and the scout knows it.
    let cycles_now = |plan: &FaultPlan| count(&plan.calls(), Site::StateRead, "cycle_keys");
    // (Each table's first idle cycle in this process moves its version
    // once: one set_version per table.)
    let mut n = 0;
    eventually(WAIT, "every table's first idle advance", || {
        n += 1;
        primary.upsert(&busy.id, user(n, "busy"));
        let done = count(&plan.calls(), Site::StateWrite, "set_version") >= tables as u64;
        async move { done }
    })
    .await;
    let first = cycles_now(&plan) + 2 * (tables as u64 + 1);
    eventually(WAIT, "a few idle cycles of every table", || {
        n += 1;
        primary.upsert(&busy.id, user(n, "busy"));
        let done = cycles_now(&plan) >= first;
        async move { done }
    })
    .await;
    let calls0 = by_method(&plan);
    let target = cycles_now(&plan) + 10 * (tables as u64 + 1);
    eventually(WAIT, "ten idle cycles per table", || {
        n += 1;
        primary.upsert(&busy.id, user(n, "busy"));
        let done = cycles_now(&plan) >= target;
        async move { done }
    })
    .await;
    let window = diff(&by_method(&plan), &calls0);
    run.supervisor.do_send(actors::Shutdown);
    // The enabled tables' cycles (the busy table's paused cycles read only
    // their flags, one per poll).
    let polls = count(&window, Site::StateWrite, "discovery_start");
    let cycles = count(&window, Site::StateRead, "cycle_keys").saturating_sub(polls);
    (window, cycles, polls)
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
    println!("{tables} idle tables: {cycles} cycles, {polls} polls; {calls:?}");
    assert!(polls > 0, "no discovery in the window: {calls:?}");
    // Redis: one round trip per table cycle (its flags, version and
    // identity); per poll, discovery's two (heartbeat and the new tables'
    // flags; leases and the published statuses), and nothing else.
    assert_per(
        &calls,
        (Site::StateRead, "cycle_keys"),
        cycles + polls,
        1,
        slack + 2,
    );
    for never in [
        "flags",
        "version",
        "primary_identity",
        "ensure_flags",
        "heartbeat",
        "acquire_leases",
        "publish_status",
    ] {
        assert_per(&calls, (Site::StateRead, never), cycles, 0, 0);
        assert_per(&calls, (Site::StateWrite, never), cycles, 0, 0);
    }
    assert_per(&calls, (Site::StateWrite, "set_version"), cycles, 0, 0);
    for each in ["discovery_start", "discovery_finish"] {
        assert_per(&calls, (Site::StateWrite, each), polls, 1, 1);
    }
    let redis: u64 = calls
        .iter()
        .filter(|((s, _), _)| matches!(s, Site::StateRead | Site::StateWrite))
        .map(|(_, n)| n)
        .sum();
    assert!(
        redis <= polls * (tables as u64 + 1 + 2) + slack,
        "{redis} Redis round trips in {polls} polls of {tables} tables"
    );
    // Primary: per poll, discovery's three reads and one scout (a few
    // hundred tables per query); an idle table's cycle reads nothing
    // unless it ran before this poll's scout answered.
    for each in ["tracked_tables", "identity", "change_retention", "scout"] {
        assert_per(&calls, (Site::PrimaryMeta, each), polls, 1, 2);
    }
    let primary: u64 = calls
        .iter()
        .filter(|((s, _), _)| matches!(s, Site::PrimaryMeta | Site::PrimaryChanges))
        .map(|(_, n)| n)
        .sum();
    assert!(
        primary <= polls * 10,
        "{primary} primary queries in {polls} polls of {tables} tables: {calls:?}"
    );
    for never in ["current_version", "min_valid_version", "table_schema"] {
        assert_per(&calls, (Site::PrimaryMeta, never), cycles, 0, slack);
    }
    // Replica: nothing (no catalog or record read while the schema is
    // cached and the scout answers; the version moves at most every
    // idle_advance).
    let replica: u64 = calls
        .iter()
        .filter(|((s, _), _)| matches!(s, Site::ReplicaRead | Site::ReplicaWrite))
        .map(|(_, n)| n)
        .sum();
    assert!(
        replica <= polls * 20,
        "{replica} replica requests in {polls} polls: {calls:?}"
    );
    assert_per(&calls, (Site::ReplicaWrite, "apply_changes"), cycles, 0, 0);
}

#[actix_rt::test]
async fn one_idle_table_costs_a_fixed_handful_per_poll() {
    idle_tables_cost_a_fixed_handful_each(1).await;
}

#[actix_rt::test]
async fn a_hundred_idle_tables_cost_the_same_each() {
    idle_tables_cost_a_fixed_handful_each(100).await;
}

#[actix_rt::test]
async fn a_thousand_idle_tables_cost_a_flat_handful_per_poll() {
    idle_tables_cost_a_fixed_handful_each(1_000).await;
}
