//! EVENTDATA fixtures (written from Microsoft's documented event schema)
//! through the parser and through the running DdlListenerActor: each gives
//! the expected schema change, is ignored by rule, or is parked in Redis —
//! and every receive transaction commits, so Service Broker's poison-message
//! rule never disables the queue.

mod support;

use std::time::Duration;

use ctsync_actors::ddl::{parse_event, DdlEvent, SchemaChange};
use ctsync_actors::model::TableId;
use ctsync_actors::ports::QueueMessage;
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
    h.queue.push(QueueMessage {
        message_type: "http://schemas.microsoft.com/SQL/ServiceBroker/EndDialog".into(),
        body: None,
    });
    h.queue.push(QueueMessage {
        message_type: ctsync_actors::ddl::EVENT_NOTIFICATION.into(),
        body: None,
    });

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
