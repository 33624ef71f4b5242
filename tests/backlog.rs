//! Change backlogs (issue 13): the changed keys are copied once per cycle
//! and paged from that copy, so the primary's requests grow linearly with
//! the backlog (counted exactly at the port: one change set and one call per
//! page; on SQL Server 3 requests more per change set, counted at the
//! session in tests/adapter_session.rs), the next page is read while
//! the current one commits, and a restart mid-backlog continues after the
//! last committed page toward the same target version.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ctsync_actors::actors::{self, Ports};
use ctsync_actors::keys;
use ctsync_actors::memory::faults::{FaultPlan, Faulty, Site};
use ctsync_actors::memory::MemoryState;
use ctsync_actors::model::Value;
use ctsync_actors::ports::{Primary, Replica, StateStore};
use support::fixtures::*;
use support::generated::{schema, CountingReplica, GeneratedPrimary};
use support::{eventually, fast_config, Harness, WAIT};

const PAGE: usize = 5_000;

/// Primary requests while a backlog of `changes` keys is applied: (change
/// sets opened with keys in them, pages read, keys read, per-method calls).
async fn backlog_requests(changes: i64) -> (u64, u64, u64, Vec<(&'static str, u64)>) {
    let s = schema("Backlog");
    let primary = Arc::new(GeneratedPrimary::new(s.clone(), 0));
    let replica = Arc::new(CountingReplica::default());
    let state = Arc::new(MemoryState::new());
    state.set_enabled(&s.id, true).await.expect("enable");
    let plan = FaultPlan::new();
    let (p, r, st): (Arc<dyn Primary>, Arc<dyn Replica>, Arc<dyn StateStore>) =
        (primary.clone(), replica.clone(), state);
    let mut config = fast_config();
    config.change_page_size = PAGE;
    let run = actors::start(
        Ports {
            primary: Arc::new(Faulty::new(p, plan.clone())),
            replica: Arc::new(Faulty::new(r, plan.clone())),
            state: Arc::new(Faulty::new(st, plan.clone())),
            ddl_queue: None,
        },
        config,
    );
    eventually(WAIT, "the empty initial load", || async {
        replica.version.load(Ordering::SeqCst) == 1
    })
    .await;
    let before = plan.calls();
    let (pages0, keys0) = (
        primary.pages.load(Ordering::SeqCst),
        primary.keys_read.load(Ordering::SeqCst),
    );
    primary.changes.store(changes, Ordering::SeqCst);
    primary.version.store(2, Ordering::SeqCst);
    eventually(Duration::from_secs(300), "the backlog applied", || async {
        replica.applied.load(Ordering::SeqCst) == 2
    })
    .await;
    run.supervisor.do_send(actors::Shutdown);
    assert_eq!(replica.changed.load(Ordering::SeqCst), changes as u64);
    let calls: Vec<(&'static str, u64)> = plan
        .calls()
        .into_iter()
        .filter(|((site, _), _)| matches!(site, Site::PrimaryMeta | Site::PrimaryChanges))
        .map(|(at, n)| (at.1, n - before.get(&at).copied().unwrap_or(0)))
        .collect();
    (
        primary.backlog_opens.load(Ordering::SeqCst),
        primary.pages.load(Ordering::SeqCst) - pages0,
        primary.keys_read.load(Ordering::SeqCst) - keys0,
        calls,
    )
}

#[actix_rt::test]
async fn a_backlog_costs_primary_requests_linear_in_its_size() {
    for changes in [10_000i64, 100_000, 1_000_000] {
        let (opens, pages, keys, calls) = backlog_requests(changes).await;
        println!(
            "backlog of {changes}: {opens} change set, {pages} pages, {keys} keys read; {calls:?}"
        );
        // One copy of the changed keys, then one request per page: each key
        // is read once (before: every page re-ran CHANGETABLE over the whole
        // backlog, up to B²/page rows).
        assert_eq!(opens, 1, "{changes}: one change set per cycle");
        assert_eq!(pages, changes as u64 / PAGE as u64, "{changes}: pages");
        // At the port a change set is one call; on SQL Server it is two
        // requests to open and one to drop (tests/adapter_session.rs counts
        // them at the session).
        let on_sql_server = opens
            * (ctsync::mssql::CHANGE_SET_OPEN_REQUESTS + ctsync::mssql::CHANGE_SET_CLOSE_REQUESTS)
            + pages;
        println!("backlog of {changes}: {on_sql_server} primary requests on SQL Server");
        assert_eq!(on_sql_server, 3 + changes as u64 / PAGE as u64);
        assert_eq!(keys, changes as u64, "{changes}: every key read once");
        // No version read of its own: the change set's open brings them.
        for (method, n) in &calls {
            assert!(
                !matches!(*method, "current_version" | "min_valid_version") || *n == 0,
                "{changes}: {method} called {n} times"
            );
        }
    }
}

#[actix_rt::test]
async fn a_restart_mid_backlog_continues_after_the_last_committed_page() {
    let h = Harness::new();
    let (users, config, run) = h.paged_users().await;
    let stored: i64 = h
        .get(&keys::version(&users.id))
        .await
        .and_then(|v| v.parse().ok())
        .expect("version");
    // A backlog of 50 pages, read slowly; stopped part-way.
    h.primary
        .insert_many(&users.id, (11..=5_010).map(|i| user(i, "backlog")));
    h.primary
        .delay_changes_pages(&users.id, Duration::from_millis(10));
    eventually(WAIT, "ten pages of the backlog read", || async {
        h.primary.changes_pages_read(&users.id) >= 10
    })
    .await;
    let report = run.stop(Duration::from_secs(4)).await;
    assert!(report.abandoned.is_empty(), "{report:?}");

    // The replica's record says where the backlog stands, from the same
    // transactions that applied its pages.
    let backlog = h
        .replica
        .table_record(&users.id)
        .backlog
        .expect("the interrupted backlog is recorded on the replica");
    assert_eq!(backlog.since, stored);
    assert_eq!(
        h.get(&keys::version(&users.id)).await,
        Some(stored.to_string())
    );
    assert!(backlog.target > stored);
    let Value::I32(cursor) = backlog.cursor.0[0] else {
        panic!("cursor {:?}", backlog.cursor)
    };
    assert!((10 + 9 * 100..5_010).contains(&cursor), "cursor {cursor}");
    let applied = h.replica.rows(&users.id).len() as i32;
    assert_eq!(
        applied, cursor,
        "every key up to the cursor, and none after"
    );

    // Changes meanwhile, before and after the cursor.
    h.primary
        .upsert(&users.id, user(5, "changed while stopped"));
    h.primary
        .upsert(&users.id, user(9_999, "new while stopped"));
    h.primary.delay_changes_pages(&users.id, Duration::ZERO);
    let pages0 = h.primary.changes_pages_read(&users.id);
    let _again = h.start(config);
    h.wait_equal(&users.id).await;
    eventually(WAIT, "the version past the backlog's target", || async {
        h.get(&keys::version(&users.id))
            .await
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|v| v >= h.primary.version())
    })
    .await;
    // The rest of the backlog (keys after the cursor, and the new one),
    // then the next cycle's one page: never the whole backlog again.
    let left = (5_010 - cursor + 1) as usize;
    let pages = h.primary.changes_pages_read(&users.id) - pages0;
    assert!(
        pages <= left.div_ceil(100) + 1,
        "{pages} pages after the restart for {left} keys left"
    );
}
