//! The `[ctsync]` migrations through the adapter's own code, over the
//! recording session: a replica at this build's version gets no migration;
//! one a version behind gets exactly the missing ones and the new version
//! number in one transaction; a replica a newer ctsync upgraded is refused
//! with the upgrade message, and nothing is written (issue 33: rolling
//! back to an older binary).

mod support;

use std::sync::Arc;

use ctsync::mssql::recording::{row, Recorder, Reply, Request};
use ctsync::mssql::sql;
use ctsync::mssql::{MssqlReplica, Pool};
use ctsync_actors::fence::Claim;
use ctsync_actors::ports::{LoadMode, PendingLoad, Replica};
use support::fixtures::*;
use tiberius::ColumnData;

/// A replica whose `[ctsync].[schema_version]` says `version`.
fn at_version(version: i32) -> impl Fn(&Request) -> Option<Reply> {
    move |r: &Request| {
        if r.sql == sql::SELECT_SCHEMA_VERSION {
            return Some(Reply::Rows(vec![vec![row(vec![(
                "version",
                ColumnData::I32(Some(version)),
            )])]]));
        }
        (r.sql == sql::CHECK_FENCE).then_some(Reply::Count(1))
    }
}

/// One in-place page of the user table written through the adapter.
async fn one_write(recorder: &Recorder) -> Result<(), ctsync_actors::Error> {
    recorder.describe(&user_table());
    let replica = MssqlReplica::new(Pool::with_connector(Arc::new(recorder.clone()), 1));
    let load = PendingLoad {
        mode: LoadMode::InPlace,
        ..PendingLoad::default()
    };
    replica
        .insert_rows(&user_table(), &[user(1, "a")], &load, &Claim::new("a", 1))
        .await
}

/// The migration batches (of any version) the session was sent.
fn migration_batches(log: &[Request]) -> Vec<i32> {
    sql::MIGRATIONS
        .iter()
        .filter(|m| m.batches.iter().any(|b| log.iter().any(|r| r.sql == *b)))
        .map(|m| m.version)
        .collect()
}

#[actix_rt::test]
async fn a_replica_a_newer_ctsync_upgraded_is_refused_and_nothing_is_written() {
    let latest = sql::latest_schema_version();
    let recorder = Recorder::new(at_version(latest + 1));
    let e = one_write(&recorder)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains(&format!("schema version {}", latest + 1))
            && e.contains("newer than this ctsync knows")
            && e.contains("run a ctsync at least as new"),
        "{e}"
    );
    let log = recorder.log();
    assert!(migration_batches(&log).is_empty(), "{log:#?}");
    for r in &log {
        assert_ne!(r.sql, sql::SET_SCHEMA_VERSION, "the version was rewritten");
        assert!(
            !r.sql.contains("INSERT") && !r.sql.contains("MERGE"),
            "a row was written: {}",
            r.sql
        );
    }
    assert!(
        !recorder.closed().is_empty(),
        "the session of the refused migration is discarded"
    );
}

#[actix_rt::test]
async fn a_replica_at_this_version_gets_no_migration_and_one_behind_gets_the_missing_one() {
    let latest = sql::latest_schema_version();
    let recorder = Recorder::new(at_version(latest));
    one_write(&recorder).await.expect("write");
    let log = recorder.log();
    assert!(migration_batches(&log).is_empty(), "{log:#?}");
    assert!(!log.iter().any(|r| r.sql == sql::SET_SCHEMA_VERSION));

    let recorder = Recorder::new(at_version(latest - 1));
    one_write(&recorder).await.expect("write");
    let log = recorder.log();
    assert_eq!(migration_batches(&log), [latest], "only the missing one");
    let begin = log
        .iter()
        .position(|r| r.sql == sql::MIGRATION_BEGIN)
        .expect("begin");
    let set = log
        .iter()
        .position(|r| r.sql == sql::SET_SCHEMA_VERSION)
        .expect("recorded");
    let commit = log
        .iter()
        .skip(set)
        .position(|r| r.sql == sql::COMMIT)
        .map(|i| i + set)
        .expect("commit");
    assert!(begin < set && set < commit);
    assert!(
        log[begin..commit]
            .iter()
            .all(|r| r.session == log[begin].session),
        "one session, one transaction"
    );
}
