//! The real SQL Server adapter (`MssqlPrimary`, `MssqlReplica`) driven over
//! the recording session: which call sends each request (batch, RPC, bulk),
//! in which order on which session, checked by `sql::session_rules`. These
//! tests pin the defects a review found against Microsoft's documentation
//! and tiberius 0.13's source; no SQL Server is needed.

mod support;

use std::sync::Arc;

use ctsync::mssql::recording::{row, Recorder, Reply, Request};
use ctsync::mssql::session::Call;
use ctsync::mssql::sql::session_rules;
use ctsync::mssql::{MssqlPrimary, Pool};
use ctsync_actors::ports::Primary;
use support::fixtures::*;
use tiberius::ColumnData;

/// Answers a change set's open with (target, min valid, keys) and each
/// page with `page` rows of the user table.
fn change_set_script(keys: i64, page: usize) -> impl Fn(&Request) -> Option<Reply> {
    move |r: &Request| {
        if r.sql.contains("[changed_keys]") {
            return Some(Reply::Rows(vec![vec![row(vec![
                ("target_version", ColumnData::I64(Some(10))),
                ("min_valid_version", ColumnData::I64(Some(1))),
                ("changed_keys", ColumnData::I64(Some(keys))),
            ])]]));
        }
        if r.sql.contains("[__ctsync_row_exists]") {
            let rows = (0..page)
                .map(|i| {
                    row(vec![
                        ("Id", ColumnData::I32(Some(i as i32 + 1))),
                        ("__ctsync_row_exists", ColumnData::I32(Some(1))),
                        ("Id", ColumnData::I32(Some(i as i32 + 1))),
                        ("Name", ColumnData::String(Some("n".into()))),
                        ("Email", ColumnData::String(None)),
                    ])
                })
                .collect();
            return Some(Reply::Rows(vec![rows]));
        }
        None
    }
}

fn violations(log: &[Request]) -> Vec<String> {
    session_rules::check(log)
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Defect 1: the change set's temp table must live at session scope. It
/// is created by a batch on the leased session, filled by the
/// parameterized copy (an RPC, which may use its caller's temp table), and
/// every page is read on that same session.
#[tokio::test]
async fn the_change_set_lives_on_the_session_that_reads_its_pages() {
    let recorder = Recorder::new(change_set_script(4, 2));
    let primary = MssqlPrimary::new(Pool::with_connector(Arc::new(recorder.clone()), 2));
    let users = user_table();
    let mut set = primary.open_changes(&users, 3, None).await.expect("open");
    assert_eq!(set.opened().keys, 4);
    let first = set.next_page(&users, 2).await.expect("page 1");
    let last = set.next_page(&users, 2).await.expect("page 2");
    assert_eq!(first.keys.len() + last.keys.len(), 4);
    drop(set);

    let log = recorder.log();
    let calls: Vec<(usize, Call, bool)> = log
        .iter()
        .map(|r| (r.session, r.call, r.sql.contains("#ctsync_changes")))
        .collect();
    assert!(
        violations(&log).is_empty(),
        "{:#?}\n{:#?}",
        violations(&log),
        log.iter().map(|r| (&r.call, &r.sql)).collect::<Vec<_>>()
    );
    // One session; the table is created by a batch before the copy.
    assert!(
        calls.iter().all(|(s, _, _)| *s == log[0].session),
        "{calls:?}"
    );
    let create = log
        .iter()
        .position(|r| r.sql.contains("CREATE TABLE #ctsync_changes"))
        .expect("created");
    assert_eq!(log[create].call, Call::Batch, "{}", log[create].sql);
    let copy = log
        .iter()
        .position(|r| r.sql.contains("CHANGETABLE(CHANGES"))
        .expect("copied");
    assert!(create < copy);
    assert_eq!(log[copy].call, Call::Rpc);
    let pages: Vec<&Request> = log
        .iter()
        .filter(|r| r.sql.contains("FROM #ctsync_changes AS [c]"))
        .collect();
    assert_eq!(pages.len(), 2);
    // The set is dropped by a batch after its last page, and only then.
    let last = log.last().expect("requests");
    assert_eq!(
        (last.call, last.sql.as_str()),
        (Call::Batch, "DROP TABLE #ctsync_changes;")
    );
    assert_eq!(
        log.iter()
            .filter(|r| r.sql.contains("DROP TABLE #ctsync_changes"))
            .count(),
        2,
        "the create batch replaces a leftover, the last request drops the set"
    );
    // Requests: create + copy + 2 pages + drop.
    assert_eq!(log.len(), 5);
}
