//! Replication through the ports: in-memory primary (CT net changes) and
//! replica, real Redis for flags and versions, the real actor pipeline.

mod support;

use std::time::Duration;

use ctsync_actors::model::{TableId, Value};
use ctsync_actors::status::TableState;
use support::fixtures::*;
use support::{eventually, fast_config, Harness};

const WAIT: Duration = Duration::from_secs(10);

#[actix_rt::test]
async fn inserts_updates_deletes_pk_updates_and_every_type_replicate() {
    let h = Harness::new();
    let users = user_table();
    let lines = order_line_table();
    let all = all_types_table();
    for s in [&users, &lines, &all] {
        h.primary.create_table(s.clone(), true);
        h.set(&format!("mssql_sync:enabled:{}", s.id.key_name()), "true")
            .await;
    }
    h.primary
        .insert_many(&users.id, (1..=20).map(|i| user(i, &format!("User{i}"))));
    let _run = h.start(fast_config());
    h.wait_equal(&users.id).await;

    // Incremental: insert, update, delete, PK update, NULLs and unicode.
    h.primary.upsert(&users.id, user(21, "Zoë"));
    h.primary.upsert(&users.id, user(2, "Renamed"));
    h.primary.delete(&users.id, &user_key(3));
    h.primary
        .update_key(&users.id, &user_key(4), user(400, "Moved"));
    h.primary
        .upsert(&users.id, vec![Value::I32(5), Value::Null, Value::Null]);
    // Insert then delete inside one window: a tombstone for a key never seen.
    h.primary.upsert(&users.id, user(22, "Ephemeral"));
    h.primary.delete(&users.id, &user_key(22));
    h.wait_equal(&users.id).await;

    // Composite primary key in a non-dbo schema.
    h.primary
        .upsert(&lines.id, order_line(1, 1, 10_000, Some("first")));
    h.primary.upsert(&lines.id, order_line(1, 2, 25_000, None));
    h.primary
        .upsert(&lines.id, order_line(2, 1, 1, Some("日本語")));
    h.wait_equal(&lines.id).await;
    h.primary.delete(
        &lines.id,
        &ctsync_actors::model::RowKey(vec![Value::I32(1), Value::I16(2)]),
    );
    h.primary
        .upsert(&lines.id, order_line(1, 1, 99_999, Some("changed")));
    h.wait_equal(&lines.id).await;

    // Every value type the model supports, and all-NULL rows.
    h.primary.upsert(&all.id, all_types_row(1, false));
    h.primary.upsert(&all.id, all_types_row(2, true));
    h.wait_equal(&all.id).await;
    assert_eq!(h.replica.rows(&all.id).len(), 2);

    // The version in Redis and on the replica reached the primary's.
    let v = h.primary.version();
    eventually(WAIT, "versions reach the primary's", || async {
        h.get("mssql_sync:version:User").await == Some(v.to_string())
            && h.get("mssql_sync:version:sales.OrderLine").await == Some(v.to_string())
    })
    .await;
    assert_eq!(h.replica.recorded_version(&users.id), Some(v));
}

#[actix_rt::test]
async fn discovery_creates_false_flags_without_overwriting_and_tables_wait_for_enable() {
    let h = Harness::new();
    let users = user_table();
    let lines = order_line_table();
    h.primary.create_table(users.clone(), true);
    h.primary.create_table(lines.clone(), true);
    let mut untracked = user_table();
    untracked.id = TableId::new("dbo", "Untracked");
    h.primary.create_table(untracked, false);
    h.primary.upsert(&users.id, user(1, "Ann"));
    // An operator already chose a value for one flag.
    h.set("mssql_sync:force_full_load:sales.OrderLine", "true")
        .await;

    let run = h.start(fast_config());
    eventually(WAIT, "default flags created", || async {
        h.get("mssql_sync:enabled:User").await.is_some()
            && h.get("mssql_sync:enabled:sales.OrderLine").await.is_some()
    })
    .await;
    assert_eq!(
        h.get("mssql_sync:enabled:User").await.as_deref(),
        Some("false")
    );
    assert_eq!(
        h.get("mssql_sync:force_full_load:User").await.as_deref(),
        Some("false")
    );
    assert_eq!(
        h.get("mssql_sync:force_full_load:sales.OrderLine")
            .await
            .as_deref(),
        Some("true")
    );
    assert_eq!(h.get("mssql_sync:enabled:Untracked").await, None);

    // Paused: several polls pass and nothing is created or copied.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    assert!(!h.replica.has_table(&users.id));
    assert_eq!(
        run.board.get("User").map(|s| s.state),
        Some(TableState::Paused)
    );
    assert_eq!(h.get("mssql_sync:version:User").await, None);

    // Flipping the flag in Redis takes effect within a poll or two.
    h.set("mssql_sync:enabled:User", "true").await;
    h.wait_equal(&users.id).await;
    assert!(!h.replica.has_table(&lines.id), "other table stays paused");

    // Disabling pauses it again: new changes stop arriving.
    h.set("mssql_sync:enabled:User", "false").await;
    eventually(WAIT, "table paused", || async {
        run.board.get("User").map(|s| s.state) == Some(TableState::Paused)
    })
    .await;
    h.primary.upsert(&users.id, user(2, "Bob"));
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.replica.rows(&users.id).len(), 1);
}

#[actix_rt::test]
async fn idle_tables_move_their_version_forward() {
    let h = Harness::new();
    let users = user_table();
    let lines = order_line_table();
    h.primary.create_table(users.clone(), true);
    h.primary.create_table(lines.clone(), true);
    h.set("mssql_sync:enabled:User", "true").await;
    let _run = h.start(fast_config());
    h.wait_equal(&users.id).await;
    // Changes to another table move the database version; User is idle.
    for i in 0..5 {
        h.primary.upsert(&lines.id, order_line(i, 1, 1, None));
    }
    let v = h.primary.version();
    eventually(
        WAIT,
        "idle table's version follows the database",
        || async { h.get("mssql_sync:version:User").await == Some(v.to_string()) },
    )
    .await;
    assert_eq!(h.replica.recorded_version(&users.id), Some(v));
}

#[actix_rt::test]
async fn redis_data_loss_pauses_tables_and_versions_come_back_from_the_replica() {
    let mut h = Harness::new();
    let users = user_table();
    h.primary.create_table(users.clone(), true);
    h.primary
        .insert_many(&users.id, (1..=50).map(|i| user(i, "n")));
    h.set("mssql_sync:enabled:User", "true").await;
    let run = h.start(fast_config());
    h.wait_equal(&users.id).await;
    h.primary.upsert(&users.id, user(51, "more"));
    h.wait_equal(&users.id).await;
    let pages = h.primary.pages_read(&users.id);

    // The test Redis keeps nothing on disk: a restart loses every key.
    h.redis.restart();
    eventually(
        WAIT,
        "flags recreated as false: the table waits",
        || async { h.get("mssql_sync:enabled:User").await.as_deref() == Some("false") },
    )
    .await;
    eventually(WAIT, "paused", || async {
        run.board.get("User").map(|s| s.state) == Some(TableState::Paused)
    })
    .await;

    h.set("mssql_sync:enabled:User", "true").await;
    let recorded = h
        .replica
        .recorded_version(&users.id)
        .expect("replica's version record");
    eventually(WAIT, "version restored from the replica", || async {
        h.get("mssql_sync:version:User")
            .await
            .and_then(|v| v.parse::<i64>().ok())
            >= Some(recorded)
    })
    .await;
    h.primary.upsert(&users.id, user(52, "after the loss"));
    h.wait_equal(&users.id).await;
    assert_eq!(
        h.primary.pages_read(&users.id),
        pages,
        "no reload after Redis lost its data"
    );
}

#[actix_rt::test]
async fn a_replica_table_dropped_by_hand_is_recreated_and_reloaded() {
    let h = Harness::new();
    let users = user_table();
    h.enabled_table(users.clone(), (1..=20).map(|i| user(i, "n")))
        .await;
    let _run = h.start(fast_config());
    h.wait_equal(&users.id).await;
    h.wait_loaded(&users.id).await;

    // Someone drops the replica table; Redis still has a version for it.
    h.replica.drop_table_by_hand(&users.id);
    h.primary.upsert(&users.id, user(21, "after"));
    eventually(
        WAIT,
        "recreated with every row, not just the new changes",
        || async {
            h.replica.rows(&users.id).len() == 21
                && h.replica.rows(&users.id) == h.primary.rows(&users.id)
        },
    )
    .await;
}
