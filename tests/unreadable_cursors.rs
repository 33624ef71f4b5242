//! A cursor of ctsync's record on the replica that cannot be read (issue
//! 27: a hand-edited row, a value another ctsync version wrote): the table
//! neither loses nor repeats a row, and never stalls on it. An unreadable
//! load cursor starts the load over from row 0 under a start version read
//! then; an unreadable backlog cursor starts the backlog over from the
//! stored version.

mod support;

use std::time::Duration;

use ctsync_actors::config::SyncConfig;
use ctsync_actors::keys;
use ctsync_actors::memory::faults::{Rule, Site};
use ctsync_actors::model::TableId;
use ctsync_actors::ports::{CursorKind, Replica};
use support::fixtures::*;
use support::{eventually, fast_config, Harness, WAIT};

/// The fixtures' `User` table with 12 rows, loaded in place in pages of
/// 5, then reloaded by a Force Load that stops after its first page (the
/// primary's second page read fails from then on) and the process stopped:
/// Redis holds a version the load replaces (as after an earlier load), so
/// nothing but the replica's record says the table is loading.
async fn reload_stopped_after_its_first_page(h: &Harness) -> (TableId, SyncConfig) {
    let id = h
        .enabled_table(user_table(), (1..=12).map(|i| user(i, "a")))
        .await;
    let mut config = fast_config();
    config.full_load_page_size = 5;
    config.full_load_mode = ctsync_actors::ports::LoadMode::InPlace;
    let run = h.start(config.clone());
    h.wait_loaded(&id).await;
    h.faults
        .inject(Rule::reject().at(Site::PrimaryPage).nth(2).times(10_000));
    h.set(&keys::force_full_load(&id), "true").await;
    eventually(WAIT, "the reload's first page", || async {
        h.replica
            .table_record(&id)
            .load
            .is_some_and(|l| l.rows == 5)
    })
    .await;
    run.stop(Duration::from_secs(4)).await;
    (id, config)
}

#[actix_rt::test]
async fn an_unreadable_load_cursor_starts_the_load_over_from_row_0() {
    let h = Harness::new();
    let (id, config) = reload_stopped_after_its_first_page(&h).await;
    let loads = h.replica.loads_started(&id);
    let half = h.replica.table_record(&id).load.expect("pending");
    assert_eq!(h.replica.rows(&id).len(), 5, "in place: a half table");

    // While ctsync is down: the load's cursor becomes unreadable, the
    // primary moves on, and the operator's flag is "false" again.
    assert!(h.replica.corrupt_cursor(&id, CursorKind::Load));
    let record = h.replica.record(&id).await.expect("record");
    assert!(record.load.is_none());
    assert_eq!(
        record.unreadable.map(|u| u.cursor),
        Some(CursorKind::Load),
        "read as unreadable, not as an error"
    );
    h.primary.upsert(&id, user(3, "changed while stopped"));
    h.primary.upsert(&id, user(13, "new while stopped"));
    h.set(&keys::force_full_load(&id), "false").await;
    h.faults.clear();
    let reads = h.replica.unreadable_reads();

    let _again = h.start(config);
    eventually(WAIT, "the load finished", || async {
        let record = h.replica.table_record(&id);
        record.load.is_none() && record.version.is_some()
    })
    .await;
    h.wait_equal(&id).await;
    assert_eq!(
        h.replica.loads_started(&id),
        loads + 1,
        "the load started over once"
    );
    let version = h.replica.recorded_version(&id).expect("version");
    assert!(
        version > half.start_version,
        "a start version read anew ({version}), not the unreadable one's ({})",
        half.start_version
    );
    assert_eq!(h.replica.duplicate_key_refusals(), 0);
    assert_eq!(
        h.replica.unreadable_reads() - reads,
        1,
        "read once, then rewritten"
    );
}

#[actix_rt::test]
async fn an_unreadable_backlog_cursor_starts_the_backlog_over_from_the_stored_version() {
    let h = Harness::new();
    let (users, config, run) = h.paged_users().await;
    let id = users.id.clone();
    let stored = h.get(&keys::version(&id)).await.expect("version");
    // A backlog of 20 pages, read slowly; stopped part-way.
    h.primary
        .insert_many(&id, (11..=2_010).map(|i| user(i, "backlog")));
    h.primary
        .delay_changes_pages(&id, Duration::from_millis(10));
    eventually(WAIT, "five pages of the backlog applied", || async {
        h.primary.changes_pages_read(&id) >= 5 && h.replica.table_record(&id).backlog.is_some()
    })
    .await;
    run.stop(Duration::from_secs(4)).await;
    assert!(h.replica.corrupt_cursor(&id, CursorKind::Backlog));
    assert_eq!(h.get(&keys::version(&id)).await, Some(stored.clone()));
    h.primary.upsert(&id, user(5, "changed while stopped"));
    h.primary.delay_changes_pages(&id, Duration::ZERO);
    let pages0 = h.primary.changes_pages_read(&id);

    let _again = h.start(config);
    h.wait_equal(&id).await;
    eventually(WAIT, "the version past the backlog", || async {
        h.get(&keys::version(&id))
            .await
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|v| v >= h.primary.version())
    })
    .await;
    // The whole backlog again from the stored version (2,001 keys in pages
    // of 100), not only what was after the cursor.
    let pages = h.primary.changes_pages_read(&id) - pages0;
    assert!(pages >= 21, "{pages} pages after the restart");
    let record = h.replica.table_record(&id);
    assert!(
        record.backlog.is_none() && record.load.is_none(),
        "{record:?}"
    );
    assert_eq!(h.replica.duplicate_key_refusals(), 0);
    assert_eq!(h.replica.unreadable_reads(), 1, "read once, then rewritten");
}

/// A reload stopped half-way, its record made unreadable, and the primary's
/// table changed so that the replica table must be rebuilt: ctsync does not
/// drop the live table on the strength of a record it cannot read. The
/// table is held, saying why and how to go on; the operator's forced load
/// rebuilds it.
#[actix_rt::test]
async fn an_unreadable_load_never_rebuilds_a_blocked_table_by_itself() {
    let h = Harness::new();
    let (id, config) = reload_stopped_after_its_first_page(&h).await;
    let loads = h.replica.loads_started(&id);
    assert!(h.replica.corrupt_cursor(&id, CursorKind::Load));
    // A column renamed on the primary with its DDL event missed: the
    // replica table can only be rebuilt.
    h.primary.rename_column(&id, "Email", "Mail");
    h.set(&keys::force_full_load(&id), "false").await;
    h.faults.clear();

    let again = h.start(config);
    eventually(WAIT, "the table held, saying why", || async {
        again.board.get(&id.key_name()).is_some_and(|s| {
            s.state == ctsync_actors::status::TableState::Paused
                && s.reason
                    .as_deref()
                    .is_some_and(|r| r.contains("force a full load"))
        })
    })
    .await;
    assert_eq!(
        h.replica.loads_started(&id),
        loads,
        "no load started by itself"
    );
    assert_eq!(
        h.replica.rows(&id).len(),
        5,
        "the live table was left as it was"
    );

    h.set(&keys::force_full_load(&id), "true").await;
    h.wait_equal(&id).await;
    assert_eq!(h.replica.duplicate_key_refusals(), 0);
}
