//! A bulk load that fails part-way through its page (issue 27): the page's
//! replica transaction rolls back whole (no row of the page, nor its
//! cursor or version, stays), the table is written with INSERT from then
//! on, and the page is retried: nothing lost, nothing twice. A connection
//! that drops mid-stream rolls back the same way but keeps bulk copy.

mod support;

use ctsync_actors::fence::Claim;
use ctsync_actors::keys;
use ctsync_actors::memory::faults::{Rule, Site};
use ctsync_actors::memory::MemoryReplica;
use ctsync_actors::model::{ChangeBatch, RowKey, Value};
use ctsync_actors::ports::{LoadMode, LoadStart, PendingLoad, Replica};
use ctsync_actors::write_path::RowPath::{Bulk, Insert};
use support::fixtures::*;
use support::{eventually, fast_config, Harness, WAIT};

fn key(i: i32) -> RowKey {
    RowKey(vec![Value::I32(i)])
}

/// At the port: the failed page leaves the shadow table and the load's
/// record as the page before left them; the retry goes by INSERT.
#[actix_rt::test]
async fn a_load_page_whose_bulk_load_fails_part_way_leaves_nothing_and_is_retried_by_insert() {
    let replica = MemoryReplica::new();
    let faults = ctsync_actors::memory::faults::FaultPlan::new();
    replica.set_inner_faults(faults.clone());
    let users = user_table();
    let claim = Claim::new("a", replica.claim(&users.id, "a").await.expect("claim"));
    let load = PendingLoad {
        start_version: 7,
        mode: LoadMode::Shadow,
        ..PendingLoad::default()
    };
    let start = LoadStart {
        load: load.clone(),
        recreate: false,
    };
    replica
        .begin_full_load(&users, &start, &claim)
        .await
        .expect("begin");
    let page = |from: i32, load: &PendingLoad| {
        let rows: Vec<_> = (from..from + 4).map(|i| user(i, "a")).collect();
        let next = PendingLoad {
            cursor: Some(key(from + 3)),
            rows: load.rows + 4,
            ..load.clone()
        };
        (rows, next)
    };
    let (first, after_first) = page(1, &load);
    replica
        .insert_rows(&users, &first, &after_first, &claim)
        .await
        .expect("page 1");
    let shadow = users.id.shadow();
    let (rows_before, record_before) = (replica.rows(&shadow), replica.table_record(&users.id));

    faults.inject(Rule::reject().at(Site::ReplicaBulk).object(&users.id));
    let (second, after_second) = page(5, &after_first);
    let failed = replica
        .insert_rows(&users, &second, &after_second, &claim)
        .await
        .expect_err("the bulk load fails part-way");
    assert!(failed.to_string().contains("after 2 of 4 rows"), "{failed}");
    assert_eq!(
        replica.rows(&shadow),
        rows_before,
        "no row of the page stays"
    );
    assert_eq!(
        replica.table_record(&users.id),
        record_before,
        "nor its cursor"
    );

    replica
        .insert_rows(&users, &second, &after_second, &claim)
        .await
        .expect("the retry");
    assert_eq!(replica.rows(&shadow).len(), 8);
    assert_eq!(replica.row_paths(&users.id), vec![Bulk, Insert]);
    assert_eq!(replica.duplicate_key_refusals(), 0);
    assert_eq!(
        faults.injected().get(&(Site::ReplicaBulk, "reject")),
        Some(&1)
    );
}

/// At the port: a change page's deletes and part of its rows, and the
/// version it records, are all undone by a bulk failure.
#[actix_rt::test]
async fn a_change_page_whose_bulk_load_fails_part_way_changes_nothing() {
    let replica = MemoryReplica::new();
    let faults = ctsync_actors::memory::faults::FaultPlan::new();
    replica.set_inner_faults(faults.clone());
    let users = user_table();
    let claim = Claim::new("a", replica.claim(&users.id, "a").await.expect("claim"));
    let start = LoadStart {
        load: PendingLoad {
            mode: LoadMode::InPlace,
            ..PendingLoad::default()
        },
        recreate: true,
    };
    replica
        .begin_full_load(&users, &start, &claim)
        .await
        .expect("begin");
    replica
        .finish_full_load(&users, 3, LoadMode::InPlace, &claim)
        .await
        .expect("finish");
    let seed = ChangeBatch {
        table: users.id.clone(),
        keys: Vec::new(),
        rows: (1..=6).map(|i| user(i, "old")).collect(),
        version: Some(4),
        backlog: None,
    };
    faults.inject(Rule::lost_ack().at(Site::ReplicaBulk).object(&users.id));
    replica
        .apply_changes(&users, &seed, &claim)
        .await
        .expect_err("the connection drops mid-stream");
    assert!(replica.rows(&users.id).is_empty());
    assert_eq!(replica.recorded_version(&users.id), Some(3));
    // A dropped connection says nothing of bulk copy: the retry uses it.
    replica
        .apply_changes(&users, &seed, &claim)
        .await
        .expect("the retry");
    let before = (replica.rows(&users.id), replica.table_record(&users.id));

    faults.inject(Rule::reject().at(Site::ReplicaBulk).object(&users.id));
    let change = ChangeBatch {
        table: users.id.clone(),
        keys: (1..=6).map(key).collect(),
        rows: (1..=4).map(|i| user(i, "new")).collect(),
        version: Some(5),
        backlog: None,
    };
    replica
        .apply_changes(&users, &change, &claim)
        .await
        .expect_err("the bulk load fails part-way");
    assert_eq!(
        (replica.rows(&users.id), replica.table_record(&users.id)),
        before,
        "no delete, no row and no version of the page stays"
    );
    replica
        .apply_changes(&users, &change, &claim)
        .await
        .expect("the retry");
    assert_eq!(replica.rows(&users.id), change.rows);
    assert_eq!(replica.recorded_version(&users.id), Some(5));
    assert_eq!(replica.row_paths(&users.id), vec![Bulk, Insert]);
}

/// Through the pipeline: the second page of a full load fails part-way;
/// the load goes on by INSERT from that page and ends with every row once.
/// Then a change page fails the same way on a table still on bulk copy.
#[actix_rt::test]
async fn the_pipeline_loses_and_repeats_no_row_when_a_bulk_load_fails_mid_page() {
    let h = Harness::new();
    h.replica.set_inner_faults(h.faults.clone());
    let (users, lines) = (user_table(), order_line_table());
    h.faults.inject(
        Rule::reject()
            .at(Site::ReplicaBulk)
            .object(&users.id)
            .nth(2),
    );
    h.enabled_table(users.clone(), (1..=12).map(|i| user(i, "a")))
        .await;
    h.enabled_table(lines.clone(), (1..=12).map(|i| order_line(i, 1, 1, None)))
        .await;
    let mut config = fast_config();
    config.full_load_page_size = 5;
    config.change_page_size = 4;
    let _run = h.start(config);
    h.wait_loaded(&users.id).await;
    h.wait_loaded(&lines.id).await;
    assert_eq!(h.replica.rows(&users.id), h.primary.rows(&users.id));
    // Pages of 5, 5 and 2: the first by bulk copy, the failed one again and
    // the last by INSERT.
    assert_eq!(h.replica.row_paths(&users.id), vec![Bulk, Insert, Insert]);
    assert_eq!(h.replica.row_paths(&lines.id), vec![Bulk; 3]);

    h.faults
        .inject(Rule::reject().at(Site::ReplicaBulk).object(&lines.id));
    for i in 1..=10 {
        h.primary
            .upsert(&lines.id, order_line(i, 1, 2, Some("changed")));
    }
    let version = h.primary.version();
    h.wait_equal(&lines.id).await;
    eventually(WAIT, "the version after the backlog", || async {
        h.get(&keys::version(&lines.id)).await == Some(version.to_string())
    })
    .await;
    let paths = h.replica.row_paths(&lines.id);
    assert_eq!(
        paths[3..],
        [Insert, Insert, Insert],
        "the failed change page and the rest by INSERT: {paths:?}"
    );
    assert_eq!(h.replica.duplicate_key_refusals(), 0);
    assert_eq!(
        h.faults.injected().get(&(Site::ReplicaBulk, "reject")),
        Some(&2)
    );
}
