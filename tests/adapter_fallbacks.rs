//! The SQL Server replica adapter over the recording session, when the
//! replica does or holds what it should not: a bulk load the server fails
//! (the table goes on with INSERT … OPENJSON, through the core's
//! `WritePaths`), and a cursor in `[ctsync].[sync_versions]` that cannot be
//! decoded (reported as unreadable, never as a failed read).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ctsync::mssql::recording::{row, Recorder, Reply, Request};
use ctsync::mssql::session::Call;
use ctsync::mssql::sql;
use ctsync::mssql::{MssqlReplica, Pool};
use ctsync_actors::fence::Claim;
use ctsync_actors::ports::{CursorKind, LoadMode, PendingLoad, Replica};
use support::fixtures::*;
use tiberius::ColumnData;

/// The first bulk load's rows fail on the server; the second page of the
/// same table is written with INSERT … OPENJSON, in a transaction of its
/// own that commits.
#[tokio::test]
async fn a_failed_bulk_load_switches_its_table_to_insert() {
    let failed_once = Arc::new(AtomicBool::new(false));
    let seen = failed_once.clone();
    let recorder = Recorder::new(move |r: &Request| {
        if r.sql == sql::CHECK_FENCE {
            return Some(Reply::Count(1));
        }
        (r.call == Call::BulkRows && !seen.swap(true, Ordering::SeqCst))
            .then(|| Reply::Fail("Received an invalid column length from the bcp client".into()))
    });
    let users = user_table();
    recorder.describe(&users);
    let replica = MssqlReplica::new(Pool::with_connector(Arc::new(recorder.clone()), 1));
    let load = PendingLoad {
        mode: LoadMode::InPlace,
        ..PendingLoad::default()
    };
    let claim = Claim::new("a", 1);
    let rows: Vec<_> = (1..=3).map(|i| user(i, "a")).collect();
    replica
        .insert_rows(&users, &rows, &load, &claim)
        .await
        .expect_err("the bulk load fails");
    let first = recorder.log();
    // The page's transaction (after the migrations' own): its bulk load
    // fails and it never commits (the connection is dropped: the stream
    // may be half sent, and the server rolls the transaction back).
    let page = first
        .iter()
        .rposition(|r| r.sql == sql::BEGIN)
        .expect("the page's transaction");
    assert_eq!(
        first[page..].last().map(|r| r.call),
        Some(Call::BulkRows),
        "the failed bulk load is the page's last request"
    );
    recorder.clear();
    replica
        .insert_rows(&users, &rows, &load, &claim)
        .await
        .expect("the retry");
    let retry = recorder.log();
    assert!(
        !retry.iter().any(|r| r.call == Call::BulkRows),
        "no bulk copy after the failure"
    );
    assert!(retry
        .iter()
        .any(|r| r.call == Call::Rpc && r.sql.contains("OPENJSON")));
    assert_eq!(retry.last().map(|r| r.sql.as_str()), Some(sql::COMMIT));
}

/// A record whose load or backlog JSON cannot be decoded comes back with
/// that cursor unreadable (and `None`), the version as stored.
#[tokio::test]
async fn an_undecodable_cursor_is_read_as_unreadable() {
    for (load, backlog, cursor) in [
        (
            Some("{\"start_version\": \"seven\"}"),
            None,
            CursorKind::Load,
        ),
        (None, Some("not json"), CursorKind::Backlog),
    ] {
        let recorder = Recorder::new(move |r: &Request| {
            (r.sql == sql::SELECT_RECORD).then(|| {
                Reply::Rows(vec![vec![row(vec![
                    ("version", ColumnData::I64(Some(42))),
                    ("load", ColumnData::String(load.map(Into::into))),
                    ("backlog", ColumnData::String(backlog.map(Into::into))),
                ])]])
            })
        });
        let replica = MssqlReplica::new(Pool::with_connector(Arc::new(recorder), 1));
        let record = replica
            .record(&user_table().id)
            .await
            .expect("read, not failed");
        assert_eq!(record.version, Some(42));
        assert!(record.load.is_none() && record.backlog.is_none());
        let unreadable = record.unreadable.expect("unreadable");
        assert_eq!(unreadable.cursor, cursor);
        assert!(!unreadable.error.is_empty());
    }
}
