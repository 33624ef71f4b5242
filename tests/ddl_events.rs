//! EVENTDATA fixtures (written from Microsoft's documented event schema)
//! through the parser and through the running DdlListenerActor: each gives
//! the expected schema change, is ignored by rule, or is parked in Redis —
//! and every receive transaction commits, so Service Broker's poison-message
//! rule never disables the queue.

mod support;

use std::time::Duration;

use ctsync_actors::ddl::{parse_event, DdlEvent, SchemaChange};
use ctsync_actors::model::TableId;
use ctsync_actors::status::TableState;
use support::fixtures::*;
use support::{eventually, fast_config, Harness};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/ddl/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn user() -> TableId {
    TableId::new("dbo", "User")
}

#[test]
fn eventdata_fixtures_parse_into_typed_schema_changes() {
    let columns = |added: &[&str], dropped: &[&str], altered: &[&str]| {
        DdlEvent::Change(SchemaChange::Columns {
            table: user(),
            added: added.iter().map(|s| s.to_string()).collect(),
            dropped: dropped.iter().map(|s| s.to_string()).collect(),
            altered: altered.iter().map(|s| s.to_string()).collect(),
        })
    };
    assert_eq!(
        parse_event(&fixture("alter_table_add_column.xml")),
        Ok(columns(&["Phone"], &[], &[]))
    );
    assert_eq!(
        parse_event(&fixture("alter_table_drop_column.xml")),
        Ok(columns(&[], &["Email"], &[]))
    );
    assert_eq!(
        parse_event(&fixture("alter_table_alter_column.xml")),
        Ok(columns(&[], &[], &["Name"]))
    );
    assert_eq!(
        parse_event(&fixture("rename_column.xml")),
        Ok(DdlEvent::Change(SchemaChange::RenameColumn {
            table: user(),
            from: "Name".into(),
            to: "FullName".into()
        }))
    );
    assert_eq!(
        parse_event(&fixture("rename_table.xml")),
        Ok(DdlEvent::Change(SchemaChange::RenameTable {
            from: TableId::new("sales", "OrderLine"),
            to: TableId::new("sales", "OrderItem"),
        }))
    );
    match parse_event(&fixture("create_index.xml")) {
        Ok(DdlEvent::Ignored { event_type, reason }) => {
            assert_eq!(event_type, "CREATE_INDEX");
            assert!(reason.contains("index"), "{reason}");
        }
        other => panic!("index events are ignored by rule, got {other:?}"),
    }
    let err = parse_event(&fixture("malformed.xml")).expect_err("malformed");
    assert!(
        err.to_string().contains("cannot read the DDL event"),
        "{err}"
    );
}

#[actix_rt::test]
async fn listener_applies_ignores_or_parks_every_message_and_always_commits() {
    let h = Harness::new();
    let users = user_table();
    h.primary.create_table(users.clone(), true);
    h.primary.create_table(order_line_table(), true);
    h.primary.upsert(&users.id, user_row(1));
    h.set("mssql_sync:enabled:User", "true").await;
    let run = h.start(fast_config());
    h.wait_loaded(&users.id).await;

    // The primary changes as the events say.
    h.primary.rename_column(&users.id, "Name", "FullName");
    for name in [
        "rename_column.xml",
        "create_index.xml",
        "malformed.xml",
        "rename_table.xml",
    ] {
        h.queue.push_event(&fixture(name));
    }
    // Broker's own message types are acknowledged too.
    h.queue.push(
        "http://schemas.microsoft.com/SQL/ServiceBroker/EndDialog",
        None,
    );
    h.queue.push(ctsync_actors::ddl::EVENT_NOTIFICATION, None);

    eventually(Duration::from_secs(10), "queue drained", || async {
        h.queue.pending() == 0
    })
    .await;
    eventually(Duration::from_secs(10), "rename applied", || async {
        h.replica
            .schema(&users.id)
            .is_some_and(|s| s.columns.iter().any(|c| c.name == "FullName"))
    })
    .await;
    assert_eq!(h.queue.rollbacks(), 0, "a receive was rolled back");
    assert!(!h.queue.is_disabled());
    assert!(h.queue.commits() > 0);

    // The malformed message and the empty one are parked with their error.
    let parked = h
        .state
        .list(ctsync_actors::keys::DDL_FAILED)
        .await
        .expect("LRANGE");
    assert_eq!(parked.len(), 2, "{parked:?}");
    let first: serde_json::Value = serde_json::from_str(&parked[0]).expect("json");
    assert!(first["error"]
        .as_str()
        .unwrap_or_default()
        .contains("cannot read the DDL event"));
    assert!(first["body"]
        .as_str()
        .unwrap_or_default()
        .contains("<ObjectName>User"));
    assert!(first["parkedAt"].as_u64().is_some());
    // sales.OrderLine is not enabled: its rename was ignored, keys untouched.
    assert_eq!(
        h.get("mssql_sync:enabled:sales.OrderLine").await.as_deref(),
        Some("false")
    );
    assert_eq!(h.get("mssql_sync:enabled:sales.OrderItem").await, None);
    // The renamed column kept its data: no reload happened.
    assert_eq!(h.replica.rows(&users.id), h.primary.rows(&users.id));
    eventually(Duration::from_secs(10), "table syncing", || async {
        run.board.get("User").map(|s| s.state)
            == Some(ctsync_actors::status::TableState::Incremental)
    })
    .await;

    // A graceful shutdown lets the listener commit and stop receiving.
    run.shutdown().await;
    h.queue.push_event(&fixture("create_index.xml"));
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.queue.pending(),
        1,
        "nothing is received after the shutdown"
    );
    assert_eq!(h.queue.rollbacks(), 0);
}

fn user_row(id: i32) -> ctsync_actors::model::Row {
    support::fixtures::user(id, "Ann")
}

#[actix_rt::test]
async fn the_receive_commits_before_a_slow_table_applies_the_event() {
    let h = Harness::new();
    let users = support::fixtures::user_table();
    h.enabled_table(users.clone(), (1..=20_000).map(user_row))
        .await;
    h.replica.set_insert_delay(Duration::from_millis(80));
    let run = h.start(fast_config());
    eventually(Duration::from_secs(10), "the load is copying", || async {
        h.primary.pages_read(&users.id) >= 1
    })
    .await;
    h.primary.rename_column(&users.id, "Name", "FullName");
    h.queue.push_event(&fixture("rename_column.xml"));
    // Recorded and committed while the table is still busy with its load:
    // no primary transaction waits on the table.
    eventually(
        Duration::from_secs(10),
        "receive committed during the load",
        || async {
            h.queue.pending() == 0
                && h.replica.inbox_len() == 1
                && run.board.get("User").map(|s| s.state) == Some(TableState::FullLoad)
        },
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "rename applied after the load",
        || async {
            h.replica.inbox_len() == 0
                && h.replica
                    .schema(&users.id)
                    .is_some_and(|s| s.columns.iter().any(|c| c.name == "FullName"))
        },
    )
    .await;
    assert_eq!(h.queue.rollbacks(), 0);
}

#[actix_rt::test]
async fn a_ddl_event_arriving_while_redis_is_down_is_applied_once_it_is_back() {
    let h = Harness::new();
    let users = support::fixtures::user_table();
    h.enabled_table(users.clone(), (1..=5).map(user_row)).await;
    let _run = h.start(fast_config());
    h.wait_loaded(&users.id).await;

    h.faults.set_state_down(true);
    h.primary.rename_column(&users.id, "Name", "FullName");
    h.queue.push_event(&fixture("rename_column.xml"));
    eventually(Duration::from_secs(10), "event recorded", || async {
        h.queue.pending() == 0
    })
    .await;
    actix_rt::time::sleep(Duration::from_millis(800)).await; // many retry rounds
    assert!(
        h.replica.inbox_parked().is_empty(),
        "not parked for Redis being down"
    );
    h.faults.set_state_down(false);
    eventually(Duration::from_secs(10), "rename applied", || async {
        h.replica
            .schema(&users.id)
            .is_some_and(|s| s.columns.iter().any(|c| c.name == "FullName"))
    })
    .await;
    h.primary.upsert(&users.id, user_row(6));
    h.wait_equal(&users.id).await;
    let parked = h
        .state
        .list(ctsync_actors::keys::DDL_FAILED)
        .await
        .expect("LRANGE");
    assert!(parked.is_empty(), "{parked:?}");
}

#[actix_rt::test]
async fn a_broker_error_ends_the_conversation_and_says_ddl_capture_stopped() {
    let h = Harness::new();
    let run = h.start(fast_config());
    h.queue.push(
        ctsync_actors::actors::BROKER_ERROR,
        Some("<Error><Code>-8489</Code><Description>The dialog has exceeded the specified LIFETIME.</Description></Error>"),
    );
    eventually(
        Duration::from_secs(10),
        "capture reported stopped",
        || async {
            run.board
                .ddl_problem()
                .is_some_and(|p| p.contains("CREATE EVENT NOTIFICATION") && p.contains("LIFETIME"))
        },
    )
    .await;
    assert_eq!(h.queue.ended_conversations().len(), 1);
    assert_eq!(h.queue.rollbacks(), 0);
    // Events arriving again (the notification was recreated) clear it.
    h.queue.push_event(&fixture("create_index.xml"));
    eventually(Duration::from_secs(10), "capture works again", || async {
        run.board.ddl_problem().is_none()
    })
    .await;
}
