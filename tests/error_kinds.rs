//! What a table's actor does with an error, by its kind (issue 25 item 6):
//! a transient one restarts the actor with backoff (`tests/faults.rs`); a
//! definite one holds the table in `error` with the reason, said once, no
//! restarts, looked at again after `restarts.max` or a key change,
//! and the table continues by itself once the reason is gone. Before, every
//! error restarted the actor at the backoff's pace and logged each time.

mod support;

use ctsync_actors::error::{Error, ErrorKind, Side};
use ctsync_actors::model::*;
use ctsync_actors::status::TableState;
use support::fixtures::*;
use support::*;

/// Waits until `key` is held in error with a reason containing `needle`,
/// then until the healthy `User` table has applied two more changes (so
/// the held table's actor had time to restart many times at the 20 ms
/// backoff, had it been restarting), and returns the held status.
async fn held(
    h: &Harness,
    run: &ctsync_actors::actors::Running,
    key: &str,
    needle: &str,
) -> ctsync_actors::status::TableStatus {
    eventually(WAIT, &format!("{key} held in error"), || async {
        run.board.get(key).is_some_and(|s| {
            s.state == TableState::Error && s.reason.as_deref().is_some_and(|r| r.contains(needle))
        })
    })
    .await;
    let users = user_table();
    for i in 100..102 {
        h.primary.upsert(&users.id, user(i, "later"));
        h.wait_equal(&users.id).await;
    }
    let status = run.board.get(key).expect("status");
    assert_eq!(status.state, TableState::Error, "{status:?}");
    assert_eq!(
        status.restarts, 0,
        "a definite error never restarts the actor: {status:?}"
    );
    assert_eq!(
        status.last_error, status.reason,
        "the page shows the reason as the error"
    );
    status
}

#[actix_rt::test]
async fn an_unsupported_column_or_no_key_holds_the_table_without_restarts() {
    let h = Harness::new();
    let geo = TableSchema {
        id: TableId::new("gis", "Place"),
        columns: vec![
            ColumnDef::new("Id", SqlType::Int, false),
            ColumnDef::new("Shape", SqlType::Unsupported("geography".into()), true),
        ],
        primary_key: vec![KeyColumn {
            name: "Id".into(),
            descending: false,
        }],
    };
    let keyless = TableSchema {
        id: TableId::new("dbo", "Notes"),
        columns: vec![ColumnDef::new("Body", SqlType::NVarChar(Len::Max), true)],
        primary_key: vec![],
    };
    let users = user_table();
    for t in [&geo, &keyless, &users] {
        h.primary.create_table(t.clone(), true);
        h.set(&format!("mssql_sync:enabled:{}", t.id.key_name()), "true")
            .await;
    }
    h.primary.upsert(&users.id, user(1, "a"));
    let run = h.start(fast_config());
    let status = held(&h, &run, "gis.Place", "geography").await;
    assert!(status.reason.unwrap_or_default().contains("[Shape]"));
    held(&h, &run, "Notes", "no column can identify a row").await;
}

#[actix_rt::test]
async fn a_bad_version_value_holds_the_table_until_it_is_fixed() {
    let h = Harness::new();
    let users = user_table();
    let lines = order_line_table();
    h.primary.create_table(users.clone(), true);
    h.primary.create_table(lines.clone(), true);
    h.primary.upsert(&lines.id, order_line(1, 1, 5, None));
    h.set("mssql_sync:enabled:User", "true").await;
    h.set("mssql_sync:enabled:sales.OrderLine", "true").await;
    h.set("mssql_sync:version:sales.OrderLine", "lots").await;
    let run = h.start(fast_config());
    let status = held(&h, &run, "sales.OrderLine", "not a version number").await;
    assert!(status
        .reason
        .unwrap_or_default()
        .contains("mssql_sync:version:sales.OrderLine"));

    // The operator writes a version: the table continues by itself (the
    // replica table does not exist yet, so it is created and loaded).
    h.set("mssql_sync:version:sales.OrderLine", "0").await;
    h.wait_equal(&lines.id).await;
    eventually(WAIT, "the table continues by itself", || async {
        run.board.get("sales.OrderLine").is_some_and(|s| {
            s.state == TableState::Incremental && s.reason.is_none() && s.last_error.is_none()
        })
    })
    .await;
    assert_eq!(
        run.board.get("sales.OrderLine").expect("status").restarts,
        0
    );
}

#[test]
fn every_error_has_a_kind() {
    let t = TableId::new("dbo", "T");
    let cases = [
        (
            Error::Primary("connection reset".into()),
            ErrorKind::Transient,
        ),
        (Error::Replica("timeout".into()), ErrorKind::Transient),
        (Error::State("redis down".into()), ErrorKind::Transient),
        (Error::Sink("restarting".into()), ErrorKind::Transient),
        (Error::ColumnsChanged(t.clone()), ErrorKind::Transient),
        (Error::NoKey(t.clone()), ErrorKind::Definite),
        (Error::NotTracked(t.clone()), ErrorKind::Definite),
        (Error::MinValidVersionNull(t.clone()), ErrorKind::Definite),
        (
            Error::BadValue {
                key: "k".into(),
                value: "v".into(),
            },
            ErrorKind::Definite,
        ),
        (
            Error::Refused {
                side: Side::Primary,
                message: "snapshot isolation is off".into(),
            },
            ErrorKind::Definite,
        ),
        (
            Error::Fenced {
                table: t,
                detail: "token".into(),
            },
            ErrorKind::Fenced,
        ),
    ];
    for (e, kind) in cases {
        assert_eq!(e.kind(), kind, "{e}");
    }
}
