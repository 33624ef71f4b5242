//! Initial and forced full loads: page count, version captured before the
//! copy, atomic flag reset, and resuming after a failed page.

mod support;

use std::time::Duration;

use ctsync_actors::keys;
use ctsync_actors::model::TableId;
use support::fixtures::*;
use support::{eventually, fast_config, Harness};

const WAIT: Duration = Duration::from_secs(20);

fn seed(h: &Harness, n: i32) -> TableId {
    let users = user_table();
    h.primary.create_table(users.clone(), true);
    h.primary
        .insert_many(&users.id, (1..=n).map(|i| user(i, &format!("U{i}"))));
    users.id
}

#[actix_rt::test]
async fn full_load_of_12345_rows_reads_three_pages_and_stores_the_version_read_before_the_copy() {
    let h = Harness::new();
    let users = seed(&h, 12_345);
    let version_before = h.primary.version();
    h.set("mssql_sync:enabled:User", "true").await;
    h.set("mssql_sync:force_full_load:User", "true").await;
    let mut config = fast_config();
    config.full_load_page_size = 5_000;
    let _run = h.start(config);

    eventually(WAIT, "force flag reset after the load", || async {
        h.get("mssql_sync:force_full_load:User").await.as_deref() == Some("false")
    })
    .await;
    assert_eq!(h.replica.rows(&users).len(), 12_345);
    assert_eq!(h.replica.rows(&users), h.primary.rows(&users));
    assert_eq!(h.primary.pages_read(&users), 3, "5,000 + 5,000 + 2,345");
    assert_eq!(
        h.get("mssql_sync:version:User").await,
        Some(version_before.to_string())
    );
    assert_eq!(h.replica.recorded_version(&users), Some(version_before));
    let progress: serde_json::Value =
        serde_json::from_str(&h.get(&keys::progress(&users)).await.expect("progress key"))
            .expect("progress JSON");
    assert_eq!(progress["synced"], 12_345);
    assert_eq!(progress["total"], 12_345);
    assert!(progress["startedAt"].as_u64().is_some() && progress["updatedAt"].as_u64().is_some());
}

#[actix_rt::test]
async fn failure_on_page_two_resumes_the_load_after_page_one_without_duplicates() {
    let h = Harness::new();
    let users = seed(&h, 12_345);
    // The page is read, then the connection drops before the answer.
    h.faults.inject(
        ctsync_actors::memory::faults::Rule::lost_ack()
            .method("read_page")
            .object(&users)
            .nth(2),
    );
    h.set("mssql_sync:enabled:User", "true").await;
    let run = h.start(fast_config());

    eventually(WAIT, "version stored after the retried load", || async {
        h.get("mssql_sync:version:User").await.is_some()
    })
    .await;
    // The memory replica rejects duplicate keys, so a resumed load that
    // copied page one again would have failed instead of finishing.
    assert_eq!(h.replica.rows(&users), h.primary.rows(&users));
    assert_eq!(
        h.primary.pages_read(&users),
        2 + 2,
        "failed attempt (page 1 committed, page 2 failed) + pages 2 and 3 after resuming"
    );
    let status = run.board.get("User").expect("status");
    assert!(
        status.restarts >= 1,
        "the failed load restarted the table actor"
    );
}

#[actix_rt::test]
async fn forced_full_load_resnapshots_an_enabled_table_then_incremental_continues() {
    let h = Harness::new();
    let users = seed(&h, 100);
    h.set("mssql_sync:enabled:User", "true").await;
    let _run = h.start(fast_config());
    eventually(WAIT, "initial load", || async {
        h.replica.rows(&users).len() == 100
    })
    .await;
    let pages = h.primary.pages_read(&users);

    // Drift the replica on purpose: a forced load must repair it.
    let down = h.faults.inject(
        ctsync_actors::memory::faults::Rule::reject()
            .port(ctsync_actors::memory::faults::Port::Replica)
            .always()
            .message("maintenance"),
    );
    h.primary.delete(&users, &user_key(1));
    h.faults.lift(down);
    h.set("mssql_sync:force_full_load:User", "true").await;
    eventually(WAIT, "forced load finished", || async {
        h.get("mssql_sync:force_full_load:User").await.as_deref() == Some("false")
            && h.primary.pages_read(&users) > pages
    })
    .await;
    h.primary.upsert(&users, user(500, "After"));
    eventually(WAIT, "incremental after the load", || async {
        h.replica.rows(&users) == h.primary.rows(&users)
    })
    .await;
}

#[actix_rt::test]
async fn sink_actor_writes_one_batch_at_a_time_while_tables_load_concurrently() {
    let h = Harness::new();
    let mut tables = Vec::new();
    for name in ["A", "B", "C"] {
        let mut t = user_table();
        t.id = TableId::new("dbo", name);
        h.primary.create_table(t.clone(), true);
        h.primary
            .insert_many(&t.id, (1..=3_000).map(|i| user(i, name)));
        h.set(&format!("mssql_sync:enabled:{name}"), "true").await;
        tables.push(t.id);
    }
    // Each page write yields for a while: a non-atomic sink would let the
    // three tables' writes overlap.
    h.replica.set_insert_delay(Duration::from_millis(10));
    let mut config = fast_config();
    config.full_load_page_size = 500;
    let _run = h.start(config);
    for t in &tables {
        eventually(WAIT, "all three loaded", || async {
            h.replica.rows(t) == h.primary.rows(t)
        })
        .await;
    }
    assert_eq!(
        h.replica.max_concurrent_inserts(),
        1,
        "replica writes overlapped"
    );
}

/// A load that CT cleanup overtook twice is held, and its reason says to
/// force a full load with a counted request (before, it said only "force a
/// full load": the flag of a forced load is "true" already, and writing
/// "true" again is the same request, so an operator following it changed
/// nothing); that request starts it again from row 0 and it finishes.
#[actix_rt::test]
async fn a_load_held_after_cleanup_overtook_it_starts_again_on_a_counted_request() {
    use ctsync_actors::ports::StateStore;
    let h = Harness::new();
    let id = h
        .enabled_table(user_table(), (1..=20).map(|i| user(i, "a")))
        .await;
    let mut config = fast_config();
    config.full_load_page_size = 2;
    h.replica.set_insert_delay(Duration::from_millis(5));
    let run = h.start(config);
    // Changes and cleanup past them while every load copies: each load's
    // start version is gone by its end.
    let mut n = 100;
    let held = loop {
        n += 1;
        h.primary.upsert(&id, user(1 + n % 20, "churn"));
        h.primary.cleanup(&id, h.primary.version());
        if let Some(s) = run.board.get(&id.key_name()) {
            if s.reason
                .as_deref()
                .is_some_and(|r| r.contains("counted request"))
            {
                break s;
            }
        }
        assert!(n < 20_000, "the load was never held");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    assert_eq!(held.state, ctsync_actors::status::TableState::Error);
    let loads = h.replica.loads_started(&id);
    h.state
        .request_full_load(&id)
        .await
        .expect("a counted request");
    h.wait_equal(&id).await;
    eventually(WAIT, "the load finished", || async {
        let record = h.replica.table_record(&id);
        record.load.is_none() && record.version.is_some()
    })
    .await;
    assert!(h.replica.loads_started(&id) > loads, "it started again");
}
