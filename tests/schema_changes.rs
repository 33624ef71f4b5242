//! Schema changes through the ports: added columns arrive before the rows
//! that use them, renames keep data, missed events are repaired by
//! reconcile, an unexplained drop+add pauses the table, and a failed DDL
//! apply loses no data and parks the event.

mod support;

use std::time::Duration;

use ctsync_actors::actors::Running;
use ctsync_actors::model::{ColumnDef, Len, SqlType, TableId, Value};
use ctsync_actors::status::TableState;
use support::fixtures::*;
use support::{eventually, fast_config, Harness};

const WAIT: Duration = Duration::from_secs(10);

fn event(event_type: &str, body: &str) -> String {
    format!(
        "<EVENT_INSTANCE><EventType>{event_type}</EventType><DatabaseName>testct</DatabaseName>\
         <SchemaName>dbo</SchemaName>{body}</EVENT_INSTANCE>"
    )
}

fn add_column_event(table: &str, column: &str) -> String {
    event(
        "ALTER_TABLE",
        &format!(
            "<ObjectName>{table}</ObjectName><ObjectType>TABLE</ObjectType><AlterTableActionList><Create>\
             <Columns><Name>{column}</Name></Columns></Create></AlterTableActionList>"
        ),
    )
}

fn rename_column_event(table: &str, from: &str, to: &str) -> String {
    event(
        "RENAME",
        &format!(
            "<ObjectName>{from}</ObjectName><ObjectType>COLUMN</ObjectType><NewObjectName>{to}</NewObjectName>\
             <TargetObjectName>{table}</TargetObjectName><TargetObjectType>TABLE</TargetObjectType>"
        ),
    )
}

async fn started(h: &Harness, rows: i32) -> (TableId, ctsync_actors::actors::Running) {
    let users = user_table();
    h.primary.create_table(users.clone(), true);
    h.primary
        .insert_many(&users.id, (1..=rows).map(|i| user(i, "n")));
    h.set("mssql_sync:enabled:User", "true").await;
    let run = h.start(fast_config());
    eventually(WAIT, "loaded", || async {
        h.replica.rows(&users.id).len() == rows as usize
    })
    .await;
    (users.id, run)
}

fn with_phone(id: i32, phone: &str) -> ctsync_actors::model::Row {
    let mut r = user(id, "p");
    r.push(Value::String(phone.into()));
    r
}

#[actix_rt::test]
async fn added_column_then_rows_using_it_arrive_in_that_order() {
    let h = Harness::new();
    let (users, run) = started(&h, 5).await;
    h.primary.add_column(
        &users,
        ColumnDef::new("Phone", SqlType::NVarChar(Len::N(60)), true),
        Value::Null,
    );
    h.queue.push_event(&add_column_event("User", "Phone"));
    h.primary.upsert(&users, with_phone(6, "+1 555 0100"));
    h.primary.upsert(&users, with_phone(2, "+44 20 7946 0000"));
    // The memory replica rejects a row wider than its table, so rows can only
    // have arrived after the column did.
    eventually(WAIT, "rows with the new column", || async {
        h.replica.rows(&users) == h.primary.rows(&users)
    })
    .await;
    let schema = h.replica.schema(&users).expect("replica table");
    assert_eq!(
        schema.columns.last().map(|c| c.name.as_str()),
        Some("Phone")
    );
    assert_eq!(run.board.get("User").and_then(|s| s.last_error), None);
}

#[actix_rt::test]
async fn missed_add_column_event_is_repaired_by_reconcile() {
    let h = Harness::new();
    let (users, _run) = started(&h, 3).await;
    let pages = h.primary.pages_read(&users);
    h.primary.add_column(
        &users,
        ColumnDef::new("Phone", SqlType::NVarChar(Len::N(60)), true),
        Value::Null,
    );
    h.primary.upsert(&users, with_phone(1, "+1 555 0101"));
    eventually(WAIT, "repaired without an event", || async {
        h.replica.rows(&users) == h.primary.rows(&users)
    })
    .await;
    assert_eq!(
        h.primary.pages_read(&users),
        pages,
        "a nullable column needs no reload"
    );
}

#[actix_rt::test]
async fn added_not_null_column_with_filled_values_reloads_the_table() {
    let h = Harness::new();
    let (users, _run) = started(&h, 4).await;
    let pages = h.primary.pages_read(&users);
    let mut qty = ColumnDef::new("Qty", SqlType::Int, false);
    qty.has_default = true;
    // Existing rows get the default; CT does not report those values.
    h.primary.add_column(&users, qty, Value::I32(7));
    h.queue.push_event(&add_column_event("User", "Qty"));
    eventually(WAIT, "reloaded with the defaults", || async {
        h.replica.rows(&users) == h.primary.rows(&users)
    })
    .await;
    assert!(
        h.primary.pages_read(&users) > pages,
        "the table was reloaded"
    );
    assert!(h
        .replica
        .rows(&users)
        .iter()
        .all(|r| r.last() == Some(&Value::I32(7))));
}

#[actix_rt::test]
async fn renamed_column_keeps_its_data() {
    let h = Harness::new();
    let (users, run) = started(&h, 10).await;
    let pages = h.primary.pages_read(&users);
    h.primary.rename_column(&users, "Email", "Mail");
    h.queue
        .push_event(&rename_column_event("User", "Email", "Mail"));
    h.primary.upsert(&users, user(11, "after"));
    eventually(WAIT, "renamed and synced", || async {
        h.replica
            .schema(&users)
            .is_some_and(|s| s.columns.iter().any(|c| c.name == "Mail"))
            && h.replica.rows(&users) == h.primary.rows(&users)
    })
    .await;
    assert_eq!(
        h.primary.pages_read(&users),
        pages,
        "no reload: the data moved with the rename"
    );
    eventually(WAIT, "syncing", || async {
        run.board.get("User").map(|s| s.state) == Some(TableState::Incremental)
    })
    .await;
}

#[actix_rt::test]
async fn unexplained_drop_plus_add_pauses_the_table_until_a_forced_rebuild() {
    let h = Harness::new();
    let (users, run) = started(&h, 3).await;
    // A rename whose event never arrives looks like drop + add.
    h.primary.rename_column(&users, "Email", "Mail");
    h.primary.upsert(&users, user(9, "waiting"));
    eventually(WAIT, "paused with a reason", || async {
        run.board.get("User").is_some_and(|s| {
            s.state == TableState::Paused
                && s.reason
                    .as_deref()
                    .is_some_and(|r| r.contains("does not guess"))
        })
    })
    .await;
    assert_eq!(
        h.replica.rows(&users).len(),
        3,
        "no rows applied, none dropped"
    );
    assert!(h
        .replica
        .schema(&users)
        .is_some_and(|s| s.columns.iter().any(|c| c.name == "Email")));

    h.set("mssql_sync:force_full_load:User", "true").await;
    eventually(WAIT, "rebuilt by the forced load", || async {
        h.replica.rows(&users) == h.primary.rows(&users)
            && h.replica
                .schema(&users)
                .is_some_and(|s| s.columns.iter().any(|c| c.name == "Mail"))
    })
    .await;
}

/// SQL Server refuses to drop a table a schema-bound view references: the
/// forced rebuild drops the replica's copy of the view first, and module
/// sync creates it again once the table exists.
#[actix_rt::test]
async fn a_forced_rebuild_frees_the_table_of_its_schema_bound_views() {
    let h = Harness::new();
    let (users, run) = started(&h, 3).await;
    let view = ctsync_actors::modules::ModuleDef::new(
        "dbo",
        "UserIds",
        ctsync_actors::modules::ModuleKind::View,
        Some("CREATE VIEW [dbo].[UserIds] WITH SCHEMABINDING AS SELECT [Id] FROM [dbo].[User]"),
    );
    h.primary.set_module(view);
    eventually(WAIT, "the view reached the replica", || async {
        h.replica.module("dbo", "UserIds").is_some()
    })
    .await;
    // A rename whose event never arrives: only a rebuild helps.
    h.primary.rename_column(&users, "Email", "Mail");
    eventually(WAIT, "paused with a reason", || async {
        run.board
            .get("User")
            .is_some_and(|s| s.state == TableState::Paused && s.reason.is_some())
    })
    .await;
    h.set("mssql_sync:force_full_load:User", "true").await;
    eventually(WAIT, "rebuilt by the forced load", || async {
        h.replica.rows(&users) == h.primary.rows(&users)
            && h.replica
                .schema(&users)
                .is_some_and(|s| s.columns.iter().any(|c| c.name == "Mail"))
    })
    .await;
    eventually(WAIT, "the view is back", || async {
        h.replica.module("dbo", "UserIds").is_some()
    })
    .await;
}

#[actix_rt::test]
async fn failed_ddl_apply_keeps_the_row_data_and_parks_the_event() {
    let h = Harness::new();
    let (users, run) = started(&h, 8).await;
    let before = h.replica.rows(&users);
    // Every attempt fails (the listener tries five times before parking).
    h.faults.inject(
        ctsync_actors::memory::faults::Rule::reject()
            .at(ctsync_actors::memory::faults::Site::ReplicaWrite)
            .method("rename_column")
            .times(20),
    );
    h.primary.rename_column(&users, "Email", "Mail");
    h.queue
        .push_event(&rename_column_event("User", "Email", "Mail"));
    eventually(WAIT, "event parked", || async {
        !h.state
            .list(ctsync_actors::keys::DDL_FAILED)
            .await
            .unwrap_or_default()
            .is_empty()
    })
    .await;
    let parked = h
        .state
        .list(ctsync_actors::keys::DDL_FAILED)
        .await
        .expect("list");
    assert!(parked[0].contains("injected failure"), "{parked:?}");
    assert!(
        parked[0].contains("NewObjectName"),
        "the event XML is kept: {parked:?}"
    );
    assert_eq!(h.replica.rows(&users), before, "no row data lost");
    assert_eq!(h.queue.rollbacks(), 0);
    // Without the rename the table waits with a clear reason.
    eventually(WAIT, "paused", || async {
        run.board
            .get("User")
            .is_some_and(|s| s.state == TableState::Paused && s.reason.is_some())
    })
    .await;
}

/// A loaded, enabled `User` table of 3 rows, renamed to `Member` on the
/// primary; its RENAME event is not sent yet.
async fn renamed_on_the_primary(h: &Harness) -> (TableId, TableId, Option<String>, Running) {
    let users = user_table();
    h.primary.create_table(users.clone(), true);
    h.primary
        .insert_many(&users.id, (1..=3).map(|i| user(i, "n")));
    h.set("mssql_sync:enabled:User", "true").await;
    let run = h.start(fast_config());
    h.wait_loaded(&users.id).await;
    let version = h.get("mssql_sync:version:User").await;
    let member = TableId::new("dbo", "Member");
    h.primary.rename_table(&users.id, &member);
    (users.id, member, version, run)
}

/// Sends the RENAME event, then checks that the keys, the record and the
/// replica table moved and the table continues under its new name without
/// a reload.
async fn rename_event_moves_everything(
    h: &Harness,
    users: &TableId,
    member: &TableId,
    version: Option<String>,
) {
    h.queue.push_event(&event(
        "RENAME",
        "<ObjectName>User</ObjectName><ObjectType>TABLE</ObjectType><NewObjectName>Member</NewObjectName>",
    ));
    eventually(WAIT, "keys moved", || async {
        h.get("mssql_sync:enabled:Member").await.as_deref() == Some("true")
    })
    .await;
    assert_eq!(h.get("mssql_sync:enabled:User").await, None);
    h.primary.upsert(member, user(4, "new"));
    eventually(WAIT, "continues under the new name", || async {
        h.replica.rows(member) == h.primary.rows(member) && h.replica.rows(member).len() == 4
    })
    .await;
    assert!(!h.replica.has_table(users));
    assert_eq!(
        h.primary.pages_read(member),
        0,
        "no reload: the version moved with the keys"
    );
    let as_number = |v: Option<String>| v.and_then(|s| s.parse::<i64>().ok());
    assert!(as_number(h.get("mssql_sync:version:Member").await) >= as_number(version));
}

#[actix_rt::test]
async fn renamed_table_moves_its_keys_and_replica_table() {
    let h = Harness::new();
    let (users, member, version, _run) = renamed_on_the_primary(&h).await;
    rename_event_moves_everything(&h, &users, &member, version).await;
}

/// A rename behind a long reader of the replica table gives up after each
/// lock timeout with nothing changed (`Error::Blocked`): the inbox tries it
/// again without counting those attempts, so it is applied once the reader
/// lets go, however many timeouts that took, and never parked (here eight
/// timeouts, more than the five attempts a failing event gets).
#[actix_rt::test]
async fn a_rename_behind_a_long_reader_waits_in_the_inbox_and_is_never_parked() {
    let h = Harness::new();
    let (users, member, version, _run) = renamed_on_the_primary(&h).await;
    let timeouts = 8;
    h.replica.hold_lock_by_hand(
        &users,
        ctsync_actors::memory::SCHEMA_LOCK_TIMEOUT * timeouts + Duration::from_secs(1),
    );
    rename_event_moves_everything(&h, &users, &member, version).await;
    assert!(h.replica.inbox_parked().is_empty(), "never parked");
    let parked = h
        .state
        .list(ctsync_actors::keys::DDL_FAILED)
        .await
        .expect("LRANGE");
    assert!(parked.is_empty(), "{parked:?}");
}

/// The same rename, noticed by discovery before its RENAME event arrives
/// (the event is held back until the new name's actor runs): the keys, the
/// record and the replica table still move, and nothing is reloaded.
#[actix_rt::test]
async fn a_rename_discovery_saw_first_still_moves_keys_and_replica_table() {
    let h = Harness::new();
    let (users, member, version, run) = renamed_on_the_primary(&h).await;
    eventually(WAIT, "discovery saw the new name", || async {
        run.board.get("Member").is_some() && run.board.get("User").is_none()
    })
    .await;
    assert_eq!(
        h.get("mssql_sync:enabled:Member").await.as_deref(),
        Some("false")
    );
    rename_event_moves_everything(&h, &users, &member, version).await;
}

/// Issue 13: a column added on the primary whose DDL event is lost, while
/// the table's columns are cached between catalog reads. The change read
/// sees the columns changed and the cycle reads the catalogs again before
/// applying anything: the replica never holds the new row without the new
/// column's value, and the table never shows an error.
#[actix_rt::test]
async fn a_lost_add_column_event_never_lets_a_row_in_without_the_new_value() {
    let h = Harness::new();
    let (users, run) = started(&h, 3).await;
    // Several idle cycles (ten polls): the schema is cached now.
    let reads = h.primary.schema_reads(&users);
    tokio::time::sleep(fast_config().poll_interval * 10).await;
    assert!(
        h.primary.schema_reads(&users) <= reads + 1,
        "idle cycles read the catalog: {} reads",
        h.primary.schema_reads(&users) - reads
    );
    h.primary.add_column(
        &users,
        ColumnDef::new("Phone", SqlType::NVarChar(Len::N(60)), true),
        Value::Null,
    );
    h.primary.upsert(&users, with_phone(7, "+1 555 0107"));
    let key = user_key(7);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(row) = h.replica.row_map(&users).get(&key) {
            assert_eq!(
                row.last(),
                Some(&Value::String("+1 555 0107".into())),
                "row 7 reached the replica without its Phone: {row:?}"
            );
        }
        if h.replica.rows(&users) == h.primary.rows(&users) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never equal");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let status = run.board.get("User").expect("status");
    assert_eq!(status.last_error, None);
    assert_eq!(status.state, TableState::Incremental);
}

/// A replica that reports a column otherwise than ctsync made it (a type
/// it cannot hold exactly) must not be altered or reloaded every cycle for
/// ever: after one change that did not take, the table is held in error
/// with both definitions side by side, and stays held.
#[actix_rt::test]
async fn a_column_the_replica_cannot_hold_holds_the_table_instead_of_changing_it_for_ever() {
    let h = Harness::new();
    let (id, run) = started(&h, 3).await;
    h.replica
        .misreport_column(&id, "Name", SqlType::NVarChar(Len::N(50)));
    let next = std::cell::Cell::new(100);
    // Changes keep cycles reading (and the catalogs are read again every
    // few of them), so reconcile runs more than once.
    eventually(Duration::from_secs(60), "held in error", || {
        next.set(next.get() + 1);
        h.primary.upsert(&id, user(next.get(), "x"));
        let state = run.board.get("User").map(|s| s.state);
        async move { state == Some(TableState::Error) }
    })
    .await;
    let reason = run
        .board
        .get("User")
        .and_then(|s| s.reason)
        .unwrap_or_default();
    assert!(reason.contains("still differs"), "{reason}");
    assert!(
        reason.contains("Name: primary NVarChar(N(100)) NULL, replica NVarChar(N(50)) NULL"),
        "{reason}"
    );
    assert!(reason.contains("force a full load"), "{reason}");
    let loads = h.replica.loads_started(&id);
    for _ in 0..20 {
        next.set(next.get() + 1);
        h.primary.upsert(&id, user(next.get(), "x"));
        tokio::time::sleep(fast_config().poll_interval).await;
    }
    assert_eq!(h.replica.loads_started(&id), loads, "no reload loop");
    assert_eq!(
        run.board.get("User").map(|s| s.state),
        Some(TableState::Error),
        "still held"
    );
}
