//! Injected faults: a crash between the replica commit and the version save,
//! a failed replica transaction, stale tables (retention, truncate, restored
//! primary), and a table actor that keeps failing while others replicate.

mod support;

use std::time::Duration;

use ctsync_actors::memory::faults::{Port, Rule, Site};
use ctsync_actors::model::PrimaryIdentity;
use ctsync_actors::status::TableState;
use support::fixtures::*;
use support::{eventually, fast_config, Harness};

const WAIT: Duration = Duration::from_secs(10);

#[actix_rt::test]
async fn crash_between_commit_and_version_save_replays_identically() {
    let h = Harness::new();
    let users = user_table();
    h.primary.create_table(users.clone(), true);
    h.primary
        .insert_many(&users.id, (1..=10).map(|i| user(i, "a")));
    h.set("mssql_sync:enabled:User", "true").await;
    let run = h.start(fast_config());
    h.wait_loaded(&users.id).await;
    let before = h.get("mssql_sync:version:User").await;

    h.faults.inject(
        Rule::reject()
            .method("set_version")
            .message("crash before the version was saved"),
    );
    h.primary.upsert(&users.id, user(3, "changed"));
    h.primary.delete(&users.id, &user_key(4));
    h.primary.upsert(&users.id, user(11, "new"));
    let v = h.primary.version();
    eventually(WAIT, "the crash restarted the table actor", || async {
        run.board.get("User").is_some_and(|s| s.restarts >= 1)
    })
    .await;
    // The replica committed but Redis still had the old version: the batch
    // is replayed after the restart, and the result is the same.
    eventually(WAIT, "version saved after the replay", || async {
        h.get("mssql_sync:version:User").await == Some(v.to_string())
    })
    .await;
    assert_ne!(before, Some(v.to_string()));
    assert_eq!(h.replica.rows(&users.id), h.primary.rows(&users.id));
}

#[actix_rt::test]
async fn failure_inside_the_replica_transaction_leaves_the_replica_unchanged() {
    let h = Harness::new();
    let users = user_table();
    h.primary.create_table(users.clone(), true);
    h.primary
        .insert_many(&users.id, (1..=10).map(|i| user(i, "a")));
    h.set("mssql_sync:enabled:User", "true").await;
    let run = h.start(fast_config());
    h.wait_loaded(&users.id).await;
    let version = h.get("mssql_sync:version:User").await;
    let rows = h.replica.rows(&users.id);

    // Keep the replica refusing the batches until we looked at it.
    h.faults.inject(
        Rule::reject()
            .at(Site::ReplicaWrite)
            .method("apply_changes")
            .times(50),
    );
    for i in 1..=5 {
        h.primary.delete(&users.id, &user_key(i));
    }
    eventually(WAIT, "failed batches", || async {
        run.board.get("User").is_some_and(|s| s.restarts >= 2)
    })
    .await;
    assert_eq!(
        h.replica.rows(&users.id),
        rows,
        "half-applied deletes were rolled back"
    );
    assert_eq!(
        h.get("mssql_sync:version:User").await,
        version,
        "version did not move"
    );
    let status = run.board.get("User").expect("status");
    assert!(status
        .last_error
        .unwrap_or_default()
        .contains("injected failure"));
}

#[actix_rt::test]
async fn version_below_min_valid_goes_stale_while_other_tables_keep_syncing() {
    let h = Harness::new();
    let users = user_table();
    let lines = order_line_table();
    h.primary.create_table(users.clone(), true);
    h.primary.create_table(lines.clone(), true);
    h.primary.upsert(&users.id, user(1, "a"));
    h.set("mssql_sync:enabled:User", "true").await;
    h.set("mssql_sync:enabled:sales.OrderLine", "true").await;
    let run = h.start(fast_config());
    h.wait_loaded(&users.id).await;

    // Pretend an outage: the stored version is old and cleanup has run.
    h.set("mssql_sync:version:User", "1").await;
    h.primary.upsert(&users.id, user(2, "lost"));
    h.primary.cleanup(&users.id, h.primary.version());
    eventually(WAIT, "table goes stale", || async {
        run.board.get("User").map(|s| s.state) == Some(TableState::Stale)
    })
    .await;
    let status = run.board.get("User").expect("status");
    assert!(status
        .reason
        .unwrap_or_default()
        .contains("below the min valid version"));
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        h.get("mssql_sync:version:User").await.as_deref(),
        Some("1"),
        "never advanced"
    );

    h.primary.upsert(&lines.id, order_line(1, 1, 5, None));
    eventually(WAIT, "other table still syncs", || async {
        h.replica.rows(&lines.id) == h.primary.rows(&lines.id)
            && !h.replica.rows(&lines.id).is_empty()
    })
    .await;

    // An operator forces a full load: the table recovers.
    h.set("mssql_sync:force_full_load:User", "true").await;
    eventually(WAIT, "recovered by a full load", || async {
        run.board.get("User").map(|s| s.state) == Some(TableState::Incremental)
            && h.replica.rows(&users.id) == h.primary.rows(&users.id)
    })
    .await;
}

#[actix_rt::test]
async fn stale_table_is_reloaded_automatically_when_configured() {
    let h = Harness::new();
    let users = user_table();
    h.enabled_table(users.clone(), [user(1, "a")]).await;
    let mut config = fast_config();
    config.auto_reload_stale = true;
    let _run = h.start(config);
    h.wait_loaded(&users.id).await;
    let pages = h.primary.pages_read(&users.id);

    // TRUNCATE on the primary drops CT information: stale → reload.
    h.primary.truncate(&users.id);
    h.primary.upsert(&users.id, user(7, "after truncate"));
    eventually(WAIT, "reloaded", || async {
        h.primary.pages_read(&users.id) > pages
            && h.replica.rows(&users.id) == h.primary.rows(&users.id)
    })
    .await;
}

#[actix_rt::test]
async fn restored_primary_or_backwards_version_marks_the_table_stale() {
    let h = Harness::new();
    let users = user_table();
    h.enabled_table(users.clone(), [user(1, "a")]).await;
    let run = h.start(fast_config());
    h.wait_loaded(&users.id).await;

    h.primary.set_identity(PrimaryIdentity {
        broker_guid: "11111111-2222-3333-4444-555555555555".into(),
        create_date: "2026-11-24T00:00:00".into(),
    });
    eventually(WAIT, "stale after the primary changed", || async {
        run.board
            .get("User")
            .and_then(|s| s.reason)
            .is_some_and(|r| r.contains("primary database changed"))
    })
    .await;

    // A forced load adopts the new primary; then a version going backwards
    // (restore to an earlier point) is caught too.
    h.set("mssql_sync:force_full_load:User", "true").await;
    eventually(WAIT, "recovered", || async {
        run.board.get("User").map(|s| s.state) == Some(TableState::Incremental)
    })
    .await;
    h.set("mssql_sync:version:User", "1000").await;
    eventually(WAIT, "stale after the version went backwards", || async {
        run.board
            .get("User")
            .and_then(|s| s.reason)
            .is_some_and(|r| r.contains("below the stored version"))
    })
    .await;
}

#[actix_rt::test]
async fn failing_table_actor_restarts_with_backoff_while_another_table_replicates() {
    let h = Harness::new();
    let users = user_table();
    let lines = order_line_table();
    h.primary.create_table(users.clone(), true);
    h.primary.create_table(lines.clone(), true);
    h.set("mssql_sync:enabled:User", "true").await;
    h.set("mssql_sync:enabled:sales.OrderLine", "true").await;
    let broken = h.faults.inject(
        Rule::reject()
            .port(Port::Primary)
            .object(&users.id)
            .always()
            .message("connection reset by peer"),
    );
    let run = h.start(fast_config());

    for i in 1..=20 {
        h.primary
            .upsert(&lines.id, order_line(i, 1, i128::from(i), None));
    }
    eventually(WAIT, "healthy table replicates", || async {
        h.replica.rows(&lines.id).len() == 20
    })
    .await;
    eventually(WAIT, "failing table restarted several times", || async {
        run.board.get("User").is_some_and(|s| s.restarts >= 3)
    })
    .await;
    let status = run.board.get("User").expect("status");
    assert_eq!(status.state, TableState::Error);
    assert!(status
        .last_error
        .unwrap_or_default()
        .contains("connection reset by peer"));
    // Backoff: with 20 ms doubling to 200 ms, restarts are far fewer than
    // one per poll would be. Restart n waits backoff(n) before its cycle
    // fails again, so the next three restarts cannot come sooner than the
    // two waits between them (a busy machine only makes them later).
    let began = std::time::Instant::now();
    let restarts = run.board.get("User").expect("status").restarts;
    eventually(WAIT, "three more restarts", || async {
        run.board
            .get("User")
            .is_some_and(|s| s.restarts >= restarts + 3)
    })
    .await;
    let took = began.elapsed();
    let config = fast_config();
    // As `TableActor::backoff` computes it after `n` failures.
    let backoff = |n: u64| {
        config
            .restarts
            .first
            .saturating_mul(1u32 << n.saturating_sub(1).min(16))
            .min(config.restarts.max)
    };
    let spaced = backoff(restarts + 1) + backoff(restarts + 2);
    println!(
        "restarts {restarts} → {}: {took:?} (backoff at least {spaced:?})",
        restarts + 3
    );
    assert!(
        took >= spaced,
        "restarts are spaced by backoff: 3 restarts after {restarts} in {took:?}, less than {spaced:?}"
    );

    h.faults.lift(broken);
    h.primary.upsert(&users.id, user(1, "back"));
    eventually(WAIT, "healed table catches up", || async {
        h.replica.rows(&users.id) == h.primary.rows(&users.id)
            && !h.replica.rows(&users.id).is_empty()
    })
    .await;
}

#[actix_rt::test]
async fn a_garbage_version_key_is_reported_by_name_and_other_tables_go_on() {
    let h = Harness::new();
    let users = user_table();
    let lines = order_line_table();
    h.primary.create_table(users.clone(), true);
    h.primary.create_table(lines.clone(), true);
    h.set("mssql_sync:enabled:User", "true").await;
    h.set("mssql_sync:enabled:sales.OrderLine", "true").await;
    h.set("mssql_sync:version:User", "yesterday").await;
    let run = h.start(fast_config());
    h.primary.upsert(&lines.id, order_line(1, 1, 1, None));
    eventually(WAIT, "error names the key", || async {
        run.board
            .get("User")
            .and_then(|s| s.last_error)
            .is_some_and(|e| {
                e.contains("mssql_sync:version:User") && e.contains("not a version number")
            })
    })
    .await;
    eventually(WAIT, "other table syncs", || async {
        !h.replica.rows(&lines.id).is_empty()
            && h.replica.rows(&lines.id) == h.primary.rows(&lines.id)
    })
    .await;
    assert_eq!(
        h.get("mssql_sync:version:User").await.as_deref(),
        Some("yesterday"),
        "never overwritten"
    );
}

/// Every port method, default ones included, is declared in the port
/// wrappers' forwarding (`ports::calls`, which both the core's call limits
/// and the fault plan guard): a method added to a port must be declared
/// there too, or the wrappers would answer it with the trait's default
/// (another call shape than the wrapped port's, and no limit) or not build.
#[test]
fn the_port_wrappers_forward_every_port_method() {
    // The four wrapped ports' files under `ports/` (checks and preflight
    // are not wrapped).
    let ports = [
        include_str!("../actors/src/ports/primary.rs"),
        include_str!("../actors/src/ports/replica.rs"),
        include_str!("../actors/src/ports/ddl_queue.rs"),
        include_str!("../actors/src/ports/state.rs"),
    ]
    .concat();
    let mut traits: Vec<(String, Vec<String>)> = Vec::new();
    let mut open: Option<(String, Vec<String>)> = None;
    for line in ports.lines() {
        if let Some(rest) = line.strip_prefix("pub trait ") {
            let name = rest.split([':', ' ', '<', '{']).next().unwrap_or_default();
            open = Some((name.to_string(), Vec::new()));
        } else if line == "}" {
            traits.extend(open.take());
        } else if let Some((_, methods)) = open.as_mut() {
            let item = line.strip_prefix("    ").unwrap_or_default();
            let item = item.strip_prefix("async ").unwrap_or(item);
            if let Some(rest) = item.strip_prefix("fn ") {
                let name = rest.split(['(', '<']).next().unwrap_or_default();
                methods.push(name.to_string());
            }
        }
    }
    let declared: Vec<(String, Vec<String>)> = ctsync_actors::ports::calls::forwarded()
        .iter()
        .map(|(port, methods)| {
            let mut m: Vec<String> = methods.iter().map(|s| s.to_string()).collect();
            m.sort();
            (port.to_string(), m)
        })
        .collect();
    let mut found: Vec<(String, Vec<String>)> = traits
        .into_iter()
        .map(|(port, mut m)| {
            m.sort();
            (port, m)
        })
        .collect();
    found.sort();
    let mut declared_sorted = declared.clone();
    declared_sorted.sort();
    assert_eq!(
        found.len(),
        5,
        "the five port traits of ports/{{primary,replica,ddl_queue,state}}.rs: {found:?}"
    );
    assert_eq!(declared_sorted, found);
}

/// The in-memory replica's transactions stand or fall whole: a batch whose
/// insert meets a duplicate key after its deletes leaves the table as it
/// was (what injected replica faults relied on before they moved into the
/// fault plan, now shown with a real failure).
#[actix_rt::test]
async fn a_batch_failing_after_its_deletes_leaves_the_replica_table_as_it_was() {
    use ctsync_actors::memory::MemoryReplica;
    use ctsync_actors::model::ChangeBatch;
    use ctsync_actors::ports::{LoadMode, LoadStart, PendingLoad, Replica};
    let replica = MemoryReplica::new();
    let users = user_table();
    let token = replica.claim(&users.id, "test").await.expect("claim");
    let claim = ctsync_actors::fence::Claim::new("test", token);
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
    let rows: Vec<_> = (1..=5).map(|i| user(i, "a")).collect();
    replica
        .insert_rows(&users, &rows, &start.load, &claim)
        .await
        .expect("page");
    let before = replica.rows(&users.id);
    let batch = ChangeBatch {
        table: users.id.clone(),
        keys: (1..=3).map(user_key).collect(),
        rows: vec![user(1, "b"), user(1, "c")],
        version: Some(9),
        backlog: None,
    };
    let failed = replica.apply_changes(&users, &batch, &claim).await;
    assert!(failed.is_err(), "a duplicate key fails the batch");
    assert_eq!(replica.rows(&users.id), before, "the deletes were undone");
    assert_eq!(replica.recorded_version(&users.id), None);
}
