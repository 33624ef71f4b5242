//! What a poll costs the primary, the replica and Redis when the enabled
//! tables are idle and the primary is busy with another table (issue 13),
//! counted at the ports by method (one port call is one request or round
//! trip in the adapters; see `support/poll_window.rs`). Per poll, whatever
//! the number of tables: ≤ 10 primary queries, ≤ 20 replica requests and
//! one Redis round trip per table plus two.

mod support;

use ctsync_actors::memory::faults::Site;
use support::fast_config;
use support::poll_window::{at, count, idle_window, Calls, Window};

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
    let mut config = fast_config();
    config.idle_catalog_refresh = ctsync_actors::sync::SyncConfig::default().idle_catalog_refresh;
    config.idle_advance = std::time::Duration::from_secs(600);
    // Leases run on the wall clock: a CI machine starved for seconds (a
    // run with builds beside it lost leases at the 3 s of fast_config)
    // would re-claim tables, whose restarted cycles read their schema and
    // changes again. The window measures idle polls, not lease recovery.
    config.instance.lease_ttl = std::time::Duration::from_secs(300);
    let Window {
        calls,
        cycles,
        polls,
        ..
    } = idle_window(tables, config).await;
    let slack = tables as u64 * 2;
    println!("{tables} idle tables: {cycles} cycles, {polls} polls; {calls:?}");
    assert!(polls > 0, "no discovery in the window: {calls:?}");
    assert_eq!(
        count(&calls, Site::StateWrite, "set_lease_claim"),
        0,
        "a lease was lost and claimed again in the window (the machine stalled longer than the lease): {calls:?}"
    );
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
    let redis = at(&calls, &[Site::StateRead, Site::StateWrite]);
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
    let primary = at(&calls, &[Site::PrimaryMeta, Site::PrimaryChanges]);
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
    let replica = at(&calls, &[Site::ReplicaRead, Site::ReplicaWrite]);
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

/// Idle tables' versions move together: one replica transaction and one
/// Redis step (inside discovery's second round trip) per poll at most,
/// whatever the number of tables, and no table moves its own.
#[actix_rt::test]
async fn idle_versions_move_together_in_one_transaction_per_poll() {
    let tables = 100;
    let mut config = fast_config();
    config.idle_catalog_refresh = ctsync_actors::sync::SyncConfig::default().idle_catalog_refresh;
    config.idle_advance = std::time::Duration::from_millis(100);
    let w = idle_window(tables, config).await;
    println!(
        "{tables} idle tables, advancing: {} polls; {:?}",
        w.polls, w.calls
    );
    let moved = w
        .versions_before
        .iter()
        .zip(&w.versions_after)
        .filter(|(b, a)| a > b)
        .count();
    assert_eq!(
        moved, tables,
        "every idle table's version moved in the window"
    );
    let together = count(&w.calls, Site::ReplicaWrite, "advance_versions");
    assert!(
        together >= 1 && together <= w.polls,
        "{together} batches in {} polls",
        w.polls
    );
    assert_eq!(
        count(&w.calls, Site::ReplicaWrite, "apply_changes"),
        0,
        "{:?}",
        w.calls
    );
    // A table just moved skips its next cycle as the scout would have let
    // it: no change read follows the batch.
    let reads = count(&w.calls, Site::PrimaryChanges, "open_changes");
    assert!(
        reads <= 2 * tables as u64,
        "{reads} change reads: {:?}",
        w.calls
    );
    let primary = at(&w.calls, &[Site::PrimaryMeta, Site::PrimaryChanges]);
    assert!(
        primary <= w.polls * 10 + 2 * tables as u64,
        "{primary} primary queries"
    );
    for never in ["set_version", "advance_versions"] {
        assert_eq!(count(&w.calls, Site::StateWrite, never), 0, "{:?}", w.calls);
    }
    let replica = at(&w.calls, &[Site::ReplicaRead, Site::ReplicaWrite]);
    assert!(
        replica <= w.polls * 20,
        "{replica} replica requests in {} polls",
        w.polls
    );
    let redis = at(&w.calls, &[Site::StateRead, Site::StateWrite]);
    assert!(redis <= w.polls * (tables as u64 + 1 + 2) + 2 * tables as u64);
}

/// Runs `test` on a current-thread runtime with a paused clock under an
/// actix system (as the simulation does).
fn on_paused_clock<F: std::future::Future<Output = ()> + 'static>(test: impl FnOnce() -> F) {
    let system = actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime")
    });
    system.block_on(test());
}

/// Sleeps 1 ms at a time until `done` (at most `ms` of simulated time).
async fn until(what: &str, ms: u64, mut done: impl FnMut() -> bool) {
    for _ in 0..ms {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("not within {ms} ms: {what}");
}

/// An idle table whose version the poll's batch moves every poll (another
/// table keeps the primary busy, `idle_advance` is zero): a change
/// committed just after a scout is on the replica within one poll of the
/// next scout, as the README promises, although that poll's batch moved
/// the table's version too. Before, the batch replaced the scout's
/// "changed" with "unchanged up to the new version", the next cycle
/// skipped, and the change waited a poll longer.
#[test]
fn a_change_after_an_idle_scout_is_applied_by_the_next_poll_though_the_batch_moved_the_table() {
    use ctsync_actors::actors::{self, Ports, WakeTable};
    use ctsync_actors::memory::faults::{FaultPlan, Faulty};
    use ctsync_actors::memory::{MemoryPrimary, MemoryReplica, MemoryState};
    use ctsync_actors::ports::{Primary, Replica, StateStore};
    use ctsync_actors::status::TableState;
    use std::sync::Arc;
    use std::time::Duration;
    use support::generated::{row, schema};

    on_paused_clock(|| async {
        let config = fast_config();
        assert_eq!(
            config.idle_advance,
            Duration::ZERO,
            "a move is due every poll"
        );
        let poll = config.poll_interval;
        let primary = Arc::new(MemoryPrimary::new());
        let replica = Arc::new(MemoryReplica::new());
        let state = Arc::new(MemoryState::new());
        let idle = schema("Idle");
        let busy = schema("Busy");
        let id = idle.id.clone();
        primary.create_table(idle, true);
        primary.insert_many(&id, (1..=2).map(row));
        primary.create_table(busy.clone(), true);
        state.set(&format!("mssql_sync:enabled:{}", id.key_name()), "true");
        let plan = FaultPlan::new();
        let (p, r, s): (Arc<dyn Primary>, Arc<dyn Replica>, Arc<dyn StateStore>) =
            (primary.clone(), replica.clone(), state.clone());
        let run = actors::start(
            Ports {
                primary: Arc::new(Faulty::new(p, plan.clone())),
                replica: Arc::new(Faulty::new(r, plan.clone())),
                state: Arc::new(Faulty::new(s, plan.clone())),
                ddl_queue: None,
            },
            config,
        );
        until("the table loaded and syncing", 5_000, || {
            run.board
                .get(&id.key_name())
                .is_some_and(|s| s.state == TableState::Incremental && s.version.is_some())
        })
        .await;
        let scouts = || count(&plan.calls(), Site::PrimaryMeta, "scout");
        let batches = || count(&plan.calls(), Site::ReplicaWrite, "advance_versions");
        let mut n = 0;
        // A few idle polls with the busy table moving the current version,
        // so the idle table's version is moved by the batch.
        let b0 = batches();
        until("the idle table moved by the batch", 2_000, || {
            n += 1;
            primary.upsert(&busy.id, row(n));
            batches() >= b0 + 3
        })
        .await;
        // The busy table commits, a scout finds the idle table unchanged.
        n += 1;
        primary.upsert(&busy.id, row(n));
        let s0 = scouts();
        until("a scout", 200, || scouts() > s0).await;
        // Its cycle falls between two scouts (woken mid-poll), and queues
        // the move to the version the scout saw.
        tokio::time::sleep(poll * 2 / 5).await;
        run.supervisor.do_send(WakeTable(id.clone()));
        tokio::time::sleep(Duration::from_millis(2)).await;
        // Then a change of the idle table, just after the scout.
        let changed = row(1_000);
        primary.upsert(&id, changed.clone());
        let (s1, b1) = (scouts(), batches());
        until("the next scout", 200, || scouts() > s1).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(
            batches() > b1,
            "the poll that found the change moved the table too"
        );
        tokio::time::sleep(poll).await;
        assert!(
            replica.rows(&id).contains(&changed),
            "the change is not on the replica one poll after the scout that found it"
        );
        run.supervisor.do_send(actors::Shutdown);
    });
}
