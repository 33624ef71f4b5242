//! Full loads readers never notice and restarts never waste: resuming from
//! the last committed page (after a crash in the sink, and after a
//! pipeline stop), shadow loads swapped in one transaction with what
//! operators added carried over, and the in-place fallback with its reason.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{test, web, App};
use ctsync::http::routes;
use ctsync_actors::keys;
use ctsync_actors::memory::faults::{Fault, FaultPlan, Faulty, Site};
use ctsync_actors::model::TableId;
use ctsync_actors::modules::{ModuleDef, ModuleKind};
use ctsync_actors::ports::{LoadMode, Primary, Replica, StateStore};
use support::fixtures::*;
use support::{eventually, fast_config, Harness};

const WAIT: Duration = Duration::from_secs(30);
const ROWS: i32 = 100_000;
const PAGE: usize = 5_000;

fn config() -> ctsync_actors::sync::SyncConfig {
    let mut c = fast_config();
    c.full_load_page_size = PAGE;
    c
}

/// Starts the pipeline over ports wrapped with `plan`.
fn start_faulty(h: &Harness, plan: &Arc<FaultPlan>) -> ctsync_actors::actors::Running {
    let primary: Arc<dyn Primary> = h.primary.clone();
    let replica: Arc<dyn Replica> = h.replica.clone();
    let state: Arc<dyn StateStore> = h.state.clone();
    ctsync_actors::actors::start(
        ctsync_actors::actors::Ports {
            primary: Arc::new(Faulty::new(primary, plan.clone())),
            replica: Arc::new(Faulty::new(replica, plan.clone())),
            state: Arc::new(Faulty::new(state, plan.clone())),
            ddl_queue: None,
        },
        config(),
    )
}

/// Waits until the pending load has committed `pages` pages.
async fn pages_committed(h: &Harness, id: &TableId, pages: u64) {
    eventually(WAIT, &format!("{pages} pages committed"), || async {
        h.replica
            .table_record(id)
            .load
            .is_some_and(|l| l.rows >= pages * PAGE as u64)
    })
    .await;
}

fn unique_keys(h: &Harness, id: &TableId) -> bool {
    let rows = h.replica.rows(id);
    let mut keys: Vec<_> = rows.iter().map(|r| format!("{:?}", r[0])).collect();
    keys.sort();
    keys.dedup();
    keys.len() == rows.len()
}

#[actix_rt::test]
async fn a_load_crashed_in_the_sink_resumes_from_its_last_committed_page() {
    let h = Harness::new();
    let users = user_table();
    h.enabled_table(users.clone(), (1..=ROWS).map(|i| user(i, "n")))
        .await;
    let plan = FaultPlan::new();
    // Page 7's replica transaction takes effect, then the process "dies"
    // before hearing back: the page is committed with its cursor.
    h.replica.set_insert_delay(Duration::from_millis(5));
    let run = start_faulty(&h, &plan);
    pages_committed(&h, &users.id, 6).await;
    plan.push(Site::ReplicaWrite, Fault::LostAck);
    plan.kill();
    let _ = run.stop(Duration::from_secs(2)).await;
    let committed = h
        .replica
        .table_record(&users.id)
        .load
        .expect("pending")
        .rows;
    let read_before = h.primary.pages_read(&users.id);

    let _again = start_faulty(&h, &FaultPlan::new());
    h.wait_loaded(&users.id).await;
    h.wait_equal(&users.id).await;
    assert!(unique_keys(&h, &users.id));
    let left = (ROWS as u64 - committed).div_ceil(PAGE as u64) as usize;
    let read_after = h.primary.pages_read(&users.id) - read_before;
    println!("resume after a sink crash: {committed} rows committed, {read_after} pages read for {left} pages left");
    assert!(
        read_after <= left + 1,
        "{read_after} pages read after the restart, {left} left"
    );
    assert_eq!(
        h.replica.loads_started(&users.id),
        1,
        "resumed, not restarted"
    );
}

#[actix_rt::test]
async fn a_load_stopped_with_the_pipeline_resumes_and_says_where() {
    let h = Harness::new();
    let users = user_table();
    h.enabled_table(users.clone(), (1..=ROWS).map(|i| user(i, "n")))
        .await;
    h.replica.set_insert_delay(Duration::from_millis(5));
    let run = h.start(config());
    pages_committed(&h, &users.id, 4).await;
    // A grace far longer than a page takes: the stop ends when the load
    // has stopped at a page boundary (nothing abandoned), not when time is up.
    let began = Instant::now();
    let report = run.stop(Duration::from_secs(60)).await;
    let took = began.elapsed();
    println!(
        "stop mid-load: {:.3} s; {}",
        took.as_secs_f64(),
        report.summary()
    );
    assert!(report.abandoned.is_empty(), "{report:?}");
    assert!(!report.listener_abandoned, "{report:?}");
    assert!(
        report.summary().contains("full load of User stopped at"),
        "{}",
        report.summary()
    );
    let committed = h
        .replica
        .table_record(&users.id)
        .load
        .expect("pending")
        .rows;
    let read_before = h.primary.pages_read(&users.id);

    let _again = h.start(config());
    h.wait_loaded(&users.id).await;
    h.wait_equal(&users.id).await;
    assert!(unique_keys(&h, &users.id));
    let left = (ROWS as u64 - committed).div_ceil(PAGE as u64) as usize;
    let read_after = h.primary.pages_read(&users.id) - read_before;
    assert!(
        read_after <= left + 1,
        "{read_after} pages read after the restart, {left} left"
    );
    let progress: serde_json::Value =
        serde_json::from_str(&h.get(&keys::progress(&users.id)).await.expect("progress"))
            .expect("json");
    assert_eq!(progress["resumedAt"], committed, "{progress}");
    assert_eq!(progress["synced"], ROWS);
}

#[actix_rt::test]
async fn readers_see_the_old_table_until_one_swap_brings_the_new_one() {
    let h = Harness::new();
    let users = user_table();
    h.enabled_table(users.clone(), (1..=20_000).map(|i| user(i, "old")))
        .await;
    let _run = h.start(config());
    h.wait_loaded(&users.id).await;
    h.wait_equal(&users.id).await;
    // Operators added an index and a grant on the replica table.
    h.replica.add_index_by_hand(&users.id, "IX_User_Email");
    h.replica.grant_by_hand(&users.id, "SELECT TO reporting");

    for i in 1..=20_000 {
        h.primary.upsert(&users.id, user(i, "new"));
    }
    h.replica.set_insert_delay(Duration::from_millis(50));
    h.set(&keys::force_full_load(&users.id), "true").await;
    // An incremental cycle may apply some of the changes before the forced
    // load begins (a busy machine lets one run first): the live table the
    // load starts from is what readers must keep seeing until the swap.
    support::eventually(WAIT, "the forced load began", || async {
        h.replica.table_record(&users.id).load.is_some()
    })
    .await;
    let old = h.replica.rows(&users.id);
    // Between pages, the live table is the complete old one.
    let mut checks = 0;
    let deadline = Instant::now() + WAIT;
    while h.replica.swaps(&users.id) == 0 {
        assert!(Instant::now() < deadline, "the load never finished");
        let live = h.replica.rows(&users.id);
        let pages = h
            .replica
            .table_record(&users.id)
            .load
            .map(|l| l.rows)
            .unwrap_or(0);
        if h.replica.swaps(&users.id) == 0 {
            assert_eq!(
                live, old,
                "a reader saw a half-loaded table after {pages} rows"
            );
            checks += 1;
        }
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(checks > 3, "only {checks} checks during the load");
    h.wait_equal(&users.id).await;
    assert_eq!(h.replica.swaps(&users.id), 1, "one swap");
    let (indexes, grants) = h.replica.indexes_and_grants(&users.id);
    assert_eq!(indexes, ["IX_User_Email"]);
    assert_eq!(grants, ["SELECT TO reporting"]);
    assert!(
        !h.replica.has_table(&users.id.shadow()),
        "the shadow is gone"
    );
}

#[actix_rt::test]
async fn a_schema_bound_view_makes_the_load_run_in_place_and_says_why() {
    let h = Harness::new();
    let users = user_table();
    h.enabled_table(users.clone(), (1..=12_000).map(|i| user(i, "n")))
        .await;
    let run = h.start(config());
    h.wait_loaded(&users.id).await;
    let view = ModuleDef::new(
        "dbo",
        "UserNames",
        ModuleKind::View,
        Some("CREATE VIEW [dbo].[UserNames] WITH SCHEMABINDING AS SELECT [Name] FROM [dbo].[User]"),
    );
    // The view exists on the primary; module sync creates it on the replica.
    h.primary.set_module(view);
    eventually(WAIT, "the view reached the replica", || async {
        h.replica.module("dbo", "UserNames").is_some()
    })
    .await;

    h.replica.set_insert_delay(Duration::from_millis(30));
    h.set(&keys::force_full_load(&users.id), "true").await;
    eventually(WAIT, "the load runs in place", || async {
        h.replica
            .table_record(&users.id)
            .load
            .is_some_and(|l| l.mode == LoadMode::InPlace)
    })
    .await;
    let shared = h.http_state(run.board.clone());
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(shared))
            .configure(routes),
    )
    .await;
    let mut reason = String::new();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let body: serde_json::Value = test::call_and_read_body_json(
            &app,
            test::TestRequest::get()
                .uri("/api/tables/User")
                .to_request(),
        )
        .await;
        reason = body["reason"].as_str().unwrap_or_default().to_string();
        if !reason.is_empty() {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        reason.contains("in place") && reason.contains("[dbo].[UserNames]"),
        "{reason}"
    );
    h.wait_loaded(&users.id).await;
    eventually(WAIT, "forced load finished", || async {
        h.get(&keys::force_full_load(&users.id)).await.as_deref() == Some("false")
    })
    .await;
    h.wait_equal(&users.id).await;
    assert_eq!(h.replica.swaps(&users.id), 0);
}

/// A blocker that appears while a shadow load copies would fail its swap
/// at every retry (and Force Load is the same request as the running
/// forced load): the load starts over in place, saying so, on its own.
#[actix_rt::test]
async fn a_blocker_added_during_a_shadow_load_sends_it_in_place_on_its_own() {
    let h = Harness::new();
    let users = user_table();
    h.enabled_table(users.clone(), (1..=12_000).map(|i| user(i, "n")))
        .await;
    let _run = h.start(config());
    h.wait_loaded(&users.id).await;
    h.replica.set_insert_delay(Duration::from_millis(30));
    h.set(&keys::force_full_load(&users.id), "true").await;
    eventually(WAIT, "the forced load copies into its shadow", || async {
        h.replica
            .table_record(&users.id)
            .load
            .is_some_and(|l| l.mode == LoadMode::Shadow && l.rows > 0)
    })
    .await;
    h.replica.add_trigger_by_hand(&users.id, "Audit");

    eventually(WAIT, "forced load finished", || async {
        h.get(&keys::force_full_load(&users.id)).await.as_deref() == Some("false")
    })
    .await;
    h.wait_equal(&users.id).await;
    assert_eq!(h.replica.swaps(&users.id), 0, "no swap past the trigger");
    let starts = h.replica.load_starts(&users.id);
    let (mode, reason) = starts.last().cloned().expect("a load started");
    assert_eq!(mode, LoadMode::InPlace, "{starts:?}");
    let reason = reason.unwrap_or_default();
    assert!(
        reason.contains("part-way") && reason.contains("trigger [Audit]"),
        "{reason}"
    );
}

#[actix_rt::test]
async fn a_new_force_request_during_a_load_starts_it_over_from_row_zero() {
    let h = Harness::new();
    let users = user_table();
    h.enabled_table(users.clone(), (1..=30_000).map(|i| user(i, "n")))
        .await;
    h.replica.set_insert_delay(Duration::from_millis(10));
    let _run = h.start(config());
    pages_committed(&h, &users.id, 2).await;
    // Through the API/CLI path: the request is counted.
    h.state.request_full_load(&users.id).await.expect("request");
    eventually(WAIT, "the load started over", || async {
        h.replica.loads_started(&users.id) == 2
    })
    .await;
    h.wait_equal(&users.id).await;
    eventually(WAIT, "flag reset", || async {
        h.get(&keys::force_full_load(&users.id)).await.as_deref() == Some("false")
    })
    .await;
    assert_eq!(h.replica.loads_started(&users.id), 2);
}

#[actix_rt::test]
async fn a_load_outliving_the_retention_starts_over_once_then_holds_the_table() {
    let h = Harness::new();
    let users = user_table();
    h.enabled_table(users.clone(), (1..=20_000).map(|i| user(i, "n")))
        .await;
    h.replica.set_insert_delay(Duration::from_millis(20));
    let run = h.start(config());
    // CT cleanup passes the start version during each load.
    for attempt in 1..=2 {
        eventually(WAIT, "a load is copying", || async {
            h.replica.loads_started(&users.id) == attempt
                && h.replica
                    .table_record(&users.id)
                    .load
                    .is_some_and(|l| l.rows >= PAGE as u64)
        })
        .await;
        h.primary.upsert(&users.id, user(1, "moving on"));
        h.primary.cleanup(&users.id, h.primary.version());
    }
    eventually(WAIT, "the table is held in error", || async {
        run.board.get("User").is_some_and(|s| {
            s.state == ctsync_actors::status::TableState::Error
                && s.reason
                    .as_deref()
                    .is_some_and(|r| r.contains("manual snapshot"))
        })
    })
    .await;
    assert_eq!(
        h.replica.loads_started(&users.id),
        2,
        "started over once, not looping"
    );
    assert_eq!(
        h.get(&keys::version(&users.id)).await,
        None,
        "never finished with an expired version"
    );
}
