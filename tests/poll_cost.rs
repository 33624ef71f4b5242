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
    let Window {
        calls,
        cycles,
        polls,
        ..
    } = idle_window(tables, config).await;
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
