//! One named test per silent-loss defect of "Never lose a row": each drives
//! the real actors over the in-memory primary/replica and a real
//! redis-server, and checks the public surface (Redis keys, replica rows).

mod support;

use std::time::Duration;

use ctsync_actors::keys;
use ctsync_actors::memory::faults::Rule;
use ctsync_actors::model::TableId;
use support::fixtures::*;
use support::{fast_config, Harness};

#[actix_rt::test]
async fn tables_whose_names_contain_dots_never_share_keys() {
    let h = Harness::new();
    let mut dotted = user_table();
    dotted.id = TableId::new("dbo", "x.y");
    let mut plain = user_table();
    plain.id = TableId::new("x", "y");
    h.primary.create_table(dotted.clone(), true);
    h.primary.create_table(plain.clone(), true);
    h.primary
        .insert_many(&dotted.id, (1..=20).map(|i| user(i, "dotted")));
    h.primary
        .insert_many(&plain.id, (1..=31).map(|i| user(i, "plain")));
    assert_ne!(keys::enabled(&dotted.id), keys::enabled(&plain.id));
    assert_eq!(keys::enabled(&dotted.id), "mssql_sync:enabled:[x.y]");

    h.set(&keys::enabled(&dotted.id), "true").await;
    let _run = h.start(fast_config());
    h.wait_loaded(&dotted.id).await;
    h.wait_equal(&dotted.id).await;
    // Enabling one must not enable the other.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !h.replica.has_table(&plain.id),
        "x.y was enabled with [x.y]"
    );
    assert_eq!(h.get(&keys::version(&plain.id)).await, None);

    h.set(&keys::enabled(&plain.id), "true").await;
    h.wait_loaded(&plain.id).await;
    h.wait_equal(&plain.id).await;
    h.primary.upsert(&dotted.id, user(5, "changed"));
    h.primary.delete(&plain.id, &user_key(7));
    h.wait_equal(&dotted.id).await;
    h.wait_equal(&plain.id).await;
    assert_ne!(
        h.get(&keys::version(&dotted.id)).await,
        None,
        "each table has its own version"
    );
}

const WAIT: Duration = Duration::from_secs(10);

#[actix_rt::test]
async fn an_interrupted_load_of_a_recreated_table_runs_again_instead_of_syncing_a_half_table() {
    let h = Harness::new();
    let users = user_table();
    h.enabled_table(users.clone(), (1..=12_345).map(|i| user(i, "n")))
        .await;
    let run = h.start(fast_config());
    h.wait_loaded(&users.id).await;
    h.wait_equal(&users.id).await;

    // The replica table is dropped while Redis keeps its version: the next
    // cycle recreates and loads it, and that load fails after one page.
    h.faults.inject(
        Rule::lost_ack()
            .method("read_page")
            .object(&users.id)
            .nth(2),
    );
    h.replica.drop_table_by_hand(&users.id);
    support::eventually(WAIT, "the load failed after its first page", || async {
        run.board.get("User").is_some_and(|s| s.restarts >= 1)
    })
    .await;
    h.primary.upsert(&users.id, user(1, "changed"));
    support::eventually(WAIT, "a load finished", || async {
        let record = h.replica.table_record(&users.id);
        record.load.is_none() && record.version.is_some()
    })
    .await;
    h.wait_equal(&users.id).await;
    assert_eq!(h.replica.rows(&users.id).len(), 12_345);
}

#[actix_rt::test]
async fn a_version_set_by_hand_cancels_a_pending_load() {
    let h = Harness::new();
    let users = user_table();
    h.enabled_table(users.clone(), (1..=12_000).map(|i| user(i, "n")))
        .await;
    // Every load fails after its first page: the load stays pending.
    let mut config = fast_config();
    config.restarts.first = Duration::from_millis(200);
    for n in 0..3 {
        h.faults.inject(
            Rule::lost_ack()
                .method("read_page")
                .object(&users.id)
                .nth(2 + 3 * n),
        );
    }
    let _run = h.start(config);
    support::eventually(WAIT, "a load is pending", || async {
        h.replica.table_record(&users.id).load.is_some()
    })
    .await;
    // The operator restored the table by hand and says which version it is.
    let manual = h.primary.version();
    h.set(&keys::version(&users.id), &manual.to_string()).await;
    support::eventually(WAIT, "the load was cancelled", || async {
        let record = h.replica.table_record(&users.id);
        record.load.is_none() && record.version == Some(manual)
    })
    .await;
}

#[actix_rt::test]
async fn force_load_requested_during_an_unforced_load_is_not_absorbed() {
    let h = Harness::new();
    let users = user_table();
    h.enabled_table(users.clone(), (1..=12_000).map(|i| user(i, "n")))
        .await;
    h.replica.set_insert_delay(Duration::from_millis(150));
    let _run = h.start(fast_config());
    support::eventually(WAIT, "the initial load is copying", || async {
        h.primary.pages_read(&users.id) >= 1
    })
    .await;
    h.set(&keys::force_full_load(&users.id), "true").await;
    // The request is not absorbed by the running load: a second load runs
    // (it starts over at the next page) and only that one resets the flag.
    support::eventually(WAIT, "a second load ran and reset the flag", || async {
        h.replica.loads_started(&users.id) >= 2
            && h.get(&keys::force_full_load(&users.id)).await.as_deref() == Some("false")
    })
    .await;
    h.wait_equal(&users.id).await;
}

#[actix_rt::test]
async fn cleanup_after_the_change_set_was_copied_loses_nothing() {
    let h = Harness::new();
    let (users, _, run) = h.paged_users().await;

    // A backlog of 5 pages read slowly; cleanup passes the stored version
    // while the pages are read. The changed keys were copied before (and
    // the min valid version checked after the copy): nothing is missing,
    // so the backlog completes and the table is not stale.
    h.primary
        .insert_many(&users.id, (11..=510).map(|i| user(i, "backlog")));
    h.primary
        .delay_changes_pages(&users.id, Duration::from_millis(40));
    support::eventually(WAIT, "the backlog is being read", || async {
        h.primary.changes_pages_read(&users.id) >= 2
    })
    .await;
    let copies = h.primary.change_sets(&users.id);
    h.primary.cleanup(&users.id, h.primary.version());
    h.wait_equal(&users.id).await;
    h.primary.delay_changes_pages(&users.id, Duration::ZERO);
    support::eventually(WAIT, "the version reached the backlog's end", || async {
        h.get(&keys::version(&users.id)).await == Some(h.primary.version().to_string())
    })
    .await;
    assert!(run
        .board
        .get("User")
        .is_some_and(|s| s.state != ctsync_actors::status::TableState::Stale));
    // The backlog was copied once, not once per page.
    assert!(h.primary.change_sets(&users.id) <= copies + 1);
}

#[actix_rt::test]
async fn a_redis_blip_during_discovery_keeps_one_loader_per_table() {
    let h = Harness::new();
    let users = user_table();
    h.enabled_table(users.clone(), (1..=20_000).map(|i| user(i, "n")))
        .await;
    h.replica.set_insert_delay(Duration::from_millis(60));
    let run = h.start(fast_config());
    support::eventually(WAIT, "the load is copying", || async {
        h.primary.pages_read(&users.id) >= 1
    })
    .await;
    // Discovery cannot write the default flags for a few polls.
    h.faults
        .inject(Rule::reject().method("discovery_start").times(3));
    h.wait_loaded(&users.id).await;
    h.wait_equal(&users.id).await;
    assert_eq!(
        h.replica.loads_started(&users.id),
        1,
        "one load, one loader"
    );
    let status = run.board.get("User").expect("still tracked");
    assert_eq!(status.restarts, 0, "the healthy table was never stopped");
}

#[actix_rt::test]
async fn redis_losing_its_data_is_detected_reported_and_the_config_republished() {
    let mut h = Harness::new();
    let users = user_table();
    h.enabled_table(users.clone(), (1..=50).map(|i| user(i, "n")))
        .await;
    let mut config = fast_config();
    config.instance.published = vec![(
        keys::CONFIG_PRIMARY_URL.to_string(),
        "primary:1433/testct".to_string(),
    )];
    let run = h.start(config);
    h.wait_loaded(&users.id).await;
    assert_eq!(
        h.get(keys::CONFIG_PRIMARY_URL).await.as_deref(),
        Some("primary:1433/testct")
    );
    assert_eq!(run.board.redis_data_lost_at(), None);

    h.redis.restart(); // no persistence: every key is gone
    support::eventually(WAIT, "the loss was detected", || async {
        run.board.redis_data_lost_at().is_some()
    })
    .await;
    assert_eq!(
        h.get(keys::CONFIG_PRIMARY_URL).await.as_deref(),
        Some("primary:1433/testct"),
        "config keys republished"
    );
    // Safe behaviour kept: paused until re-enabled, then no reload.
    assert_eq!(
        h.get(&keys::enabled(&users.id)).await.as_deref(),
        Some("false")
    );
    h.primary.upsert(&users.id, user(51, "after"));
    h.set(&keys::enabled(&users.id), "true").await;
    h.wait_equal(&users.id).await;
    assert_eq!(
        h.replica.loads_started(&users.id),
        1,
        "resumed from the replica's record"
    );
}

/// Found by the simulation (seed 17): after Redis lost its data, a cycle
/// restored the version from the replica and started a load (here: the
/// replica table is gone) that recorded "replaces no version"; when that
/// load was interrupted, the restored version looked hand-set and cancelled
/// the load on a half table.
#[actix_rt::test]
async fn a_load_started_after_redis_lost_its_data_is_not_cancelled_by_the_restored_version() {
    let mut h = Harness::new();
    let users = user_table();
    h.enabled_table(users.clone(), (1..=12_000).map(|i| user(i, "n")))
        .await;
    let _run = h.start(fast_config());
    h.wait_loaded(&users.id).await;

    h.redis.restart(); // every key is gone; the replica keeps its record
    h.replica.drop_table_by_hand(&users.id);
    h.faults.inject(
        Rule::lost_ack()
            .method("read_page")
            .object(&users.id)
            .nth(2),
    );
    h.set(&keys::enabled(&users.id), "true").await;
    support::eventually(WAIT, "a load finished", || async {
        let record = h.replica.table_record(&users.id);
        h.replica.has_table(&users.id) && record.load.is_none() && record.version.is_some()
    })
    .await;
    h.wait_equal(&users.id).await;
    assert_eq!(h.replica.rows(&users.id).len(), 12_000);
}
