//! The session rules (`sql::session_rules`): every rule has a canary, a
//! sequence of requests that breaks it and must be reported; and the real
//! adapter, driven over the recording session through every port method,
//! breaks none. The sweep prints its figures (statements, sequences,
//! rules, violations); `.ci/run` shows them.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use ctsync::mssql::recording::{row, Recorder, Reply, Request};
use ctsync::mssql::session::Call;
use ctsync::mssql::sql::{self, session_rules};
use ctsync::mssql::{MssqlDdlQueue, MssqlPrimary, MssqlReplica, Pool};
use ctsync_actors::fence::Claim;
use ctsync_actors::model::{ColumnDef, ColumnOp, Len, Row, SqlType, TableId, TableSchema, Value};
use ctsync_actors::modules::{ModuleDef, ModuleKind, ModuleOp};
use ctsync_actors::ports::{
    Advance, DdlQueue, InboxOutcome, LoadMode, LoadStart, PendingLoad, Primary, QueueMessage,
    Replica,
};
use ctsync_actors::verify::{Checksums, KeyRange};
use support::fixtures::*;
use tiberius::ColumnData;

fn request(session: usize, call: Call, sql: &str) -> Request {
    Request {
        session,
        call,
        sql: sql.into(),
        params: Vec::new(),
        texts: Vec::new(),
        rows: 0,
        target: Vec::new(),
    }
}

fn batch(sql: &str) -> Request {
    request(1, Call::Batch, sql)
}

/// An RPC sending as many parameters as its text's highest `@Pn`.
fn rpc(sql: &str) -> Request {
    let mut r = request(1, Call::Rpc, sql);
    let highest = sql
        .split(|c: char| !(c.is_alphanumeric() || c == '@'))
        .filter_map(|w| w.strip_prefix("@P")?.parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    r.params = vec!["nvarchar(4000)"; highest];
    r
}

fn rules_broken(log: &[Request]) -> BTreeSet<&'static str> {
    session_rules::check(log).iter().map(|v| v.rule).collect()
}

/// One canary per rule: the sequence, and the rule it must break.
fn canaries() -> Vec<(&'static str, Vec<Request>)> {
    let long = "x".repeat(129);
    let mut many = rpc("SELECT @P1");
    many.params = vec!["int"; 2_099];
    // Two parameters used, one sent.
    let mut unbound = rpc("UPDATE [dbo].[T] SET [A] = @P1 WHERE [Id] = @P2");
    unbound.params.truncate(1);
    let mut misstated = batch("INSERT BULK [dbo].[T] ([Id] int, [At] time) WITH (KEEP_NULLS)");
    misstated.target = vec![("Id".into(), "int".into()), ("At".into(), "time(3)".into())];
    vec![
        (
            "temp-scope",
            // Microsoft's repro: Msg 208 on the second call.
            vec![
                rpc("CREATE TABLE #c (Id int); INSERT #c VALUES (1)"),
                rpc("SELECT * FROM #c"),
            ],
        ),
        (
            "set-scope",
            vec![
                rpc("SET IDENTITY_INSERT [dbo].[T] ON"),
                rpc("INSERT INTO [dbo].[T] ([Id]) VALUES (@P1)"),
            ],
        ),
        (
            "rpc-transaction",
            vec![rpc("BEGIN TRANSACTION; UPDATE [dbo].[T] SET [A] = @P1")],
        ),
        (
            "snapshot-ddl",
            vec![
                batch("SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION;"),
                batch("CREATE NONCLUSTERED INDEX [i] ON [dbo].[T] ([A])"),
            ],
        ),
        ("parameters", vec![many]),
        ("bound-parameters", vec![unbound]),
        (
            "identifiers",
            vec![batch(&format!("SELECT 1 FROM [{long}]"))],
        ),
        (
            "index-key",
            vec![batch(
                "CREATE TABLE [dbo].[K] ([A] nvarchar(450) NOT NULL, [B] int NOT NULL, PRIMARY KEY ([A] ASC, [B] ASC))",
            )],
        ),
        (
            "alone-in-batch",
            vec![batch("SET ANSI_NULLS ON; CREATE VIEW [dbo].[v] AS SELECT 1 AS [a]")],
        ),
        ("bulk-columns", vec![misstated]),
        (
            "rename-objtype",
            // `[sales].[Order]` could be the column Order of a table sales.
            vec![rpc("EXEC sp_rename @P1, @P2")],
        ),
        (
            "lock-timeout-reset",
            vec![
                batch("SET XACT_ABORT ON; BEGIN TRANSACTION;"),
                batch("SET LOCK_TIMEOUT 30000;"),
                batch("COMMIT TRANSACTION"),
                // The next lease of the pooled session.
                rpc("UPDATE [dbo].[T] SET [A] = @P1"),
            ],
        ),
    ]
}

#[test]
fn every_rule_has_a_canary_that_fails_with_that_rule_alone() {
    let canaries = canaries();
    for rule in session_rules::RULES {
        let (_, log) = canaries
            .iter()
            .find(|(id, _)| *id == rule.id)
            .unwrap_or_else(|| panic!("rule {} has no canary", rule.id));
        assert_eq!(
            rules_broken(log),
            BTreeSet::from([rule.id]),
            "canary of {}: {:#?}",
            rule.id,
            session_rules::check(log)
        );
        assert!(rule.source.starts_with("https://"), "{}", rule.id);
    }
    assert_eq!(canaries.len(), session_rules::RULES.len());
}

/// The fixes of the canaries: the same intent, sent the way SQL Server
/// keeps it.
#[test]
fn the_same_work_sent_the_right_way_breaks_nothing() {
    let ok: Vec<Vec<Request>> = vec![
        vec![
            batch("CREATE TABLE #c (Id int)"),
            rpc("INSERT #c VALUES (@P1)"),
            rpc("SELECT * FROM #c"),
            batch("DROP TABLE #c"),
        ],
        vec![rpc(
            "SET IDENTITY_INSERT [dbo].[T] ON; INSERT INTO [dbo].[T] ([Id]) VALUES (@P1); SET IDENTITY_INSERT [dbo].[T] OFF;",
        )],
        // An RPC's XACT_ABORT is its own; the next transaction sets it again.
        vec![
            rpc("SET XACT_ABORT ON; BEGIN TRANSACTION; UPDATE [dbo].[T] SET [A] = @P1; COMMIT TRANSACTION;"),
            batch("SET XACT_ABORT ON; BEGIN TRANSACTION;"),
            rpc("UPDATE [dbo].[T] SET [A] = @P1"),
            batch("COMMIT TRANSACTION;"),
        ],
        vec![
            batch("CREATE TABLE #k ([A] nvarchar(300) NOT NULL)"),
            batch("CREATE UNIQUE CLUSTERED INDEX [k] ON #k ([A])"),
            rpc("SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION; INSERT INTO #k ([A]) SELECT @P1; COMMIT TRANSACTION; SET TRANSACTION ISOLATION LEVEL READ COMMITTED;"),
            rpc("SELECT [A] FROM #k"),
        ],
        vec![
            batch("SET ANSI_NULLS ON;"),
            batch("CREATE VIEW [dbo].[v] AS SELECT 1 AS [a]"),
        ],
        // A table's sp_rename states its @objtype.
        vec![rpc("EXEC sp_rename @P1, @P2, N'OBJECT'")],
        // A bounded lock wait set by a batch inside the transaction is reset
        // before the COMMIT; one set inside an RPC reverts when it returns.
        vec![
            batch("SET XACT_ABORT ON; BEGIN TRANSACTION;"),
            batch("SET LOCK_TIMEOUT 30000;"),
            rpc("EXEC sp_rename @P1, @P2, N'OBJECT'"),
            batch("SET LOCK_TIMEOUT -1;"),
            batch("COMMIT TRANSACTION"),
            rpc("UPDATE [dbo].[T] SET [A] = @P1"),
            // (Last: set-scope would flag any later request as relying on it.)
            rpc("SET LOCK_TIMEOUT 30000; SET XACT_ABORT ON; BEGIN TRANSACTION; UPDATE [dbo].[T] SET [A] = @P1; COMMIT TRANSACTION;"),
        ],
        // CONTEXT_INFO set in an RPC outlives it (unlike every other SET).
        vec![
            rpc("SET CONTEXT_INFO 0x01"),
            rpc("SELECT CONTEXT_INFO() AS [c]"),
        ],
    ];
    for log in ok {
        assert!(
            session_rules::check(&log).is_empty(),
            "{:#?}",
            session_rules::check(&log)
        );
    }
    // A temp table in another session is not this session's.
    let mut other = rpc("SELECT * FROM #c");
    other.session = 2;
    assert_eq!(
        rules_broken(&[batch("CREATE TABLE #c (Id int)"), other]),
        BTreeSet::from(["temp-scope"])
    );
}

/// A LOCK_TIMEOUT a batch set, left when the log ends outside a
/// transaction: the session goes back to the pool with it, flagged at its
/// last request even with no later request in the log; not for a session
/// the adapter discarded.
#[test]
fn a_lock_timeout_left_at_the_end_of_the_log_is_flagged() {
    let log = [
        batch("SET XACT_ABORT ON; BEGIN TRANSACTION;"),
        batch("SET LOCK_TIMEOUT 30000;"),
        batch("COMMIT TRANSACTION"),
    ];
    let found = session_rules::check(&log);
    assert_eq!(
        found
            .iter()
            .map(|v| (v.rule, v.request))
            .collect::<Vec<_>>(),
        vec![("lock-timeout-reset", 2)],
        "{found:#?}"
    );
    assert!(session_rules::check_discarded(&log, &[1]).is_empty());
    // Inside the transaction when the log ends: not pooled yet.
    assert!(session_rules::check(&log[..2]).is_empty());
}

/// A SET LOCK_TIMEOUT inside an RPC reverts when the RPC returns: the
/// session's next request runs with the default again.
#[test]
fn a_lock_timeout_set_inside_an_rpc_is_not_left_on_the_session() {
    let log = [
        rpc("SET LOCK_TIMEOUT 30000; EXEC sp_rename @P1, @P2, N'OBJECT'"),
        rpc("UPDATE [dbo].[T] SET [A] = @P1"),
    ];
    let found = session_rules::check(&log);
    assert!(
        !found.iter().any(|v| v.rule == "lock-timeout-reset"),
        "{found:#?}"
    );
}

/// A LOCK_TIMEOUT left on a session outside any transaction (no COMMIT
/// involved) is flagged at the session's next request.
#[test]
fn a_lock_timeout_left_outside_a_transaction_is_flagged_at_the_next_request() {
    let log = [
        batch("SET LOCK_TIMEOUT 30000;"),
        rpc("UPDATE [dbo].[T] SET [A] = @P1"),
    ];
    let found = session_rules::check(&log);
    assert_eq!(
        found
            .iter()
            .map(|v| (v.rule, v.request))
            .collect::<Vec<_>>(),
        vec![("lock-timeout-reset", 1)],
        "{found:#?}"
    );
    // Another session is not that one: only the end of the log flags
    // session 1 (at its own request), never session 2's request.
    let mut other = rpc("UPDATE [dbo].[T] SET [A] = @P1");
    other.session = 2;
    let found = session_rules::check(&[batch("SET LOCK_TIMEOUT 30000;"), other]);
    assert_eq!(
        found
            .iter()
            .map(|v| (v.rule, v.request))
            .collect::<Vec<_>>(),
        vec![("lock-timeout-reset", 0)],
        "{found:#?}"
    );
}

// ---- the sweep: every port method of the real adapter ---------------------

fn i64_cell(name: &str, v: i64) -> (&str, ColumnData<'static>) {
    (name, ColumnData::I64(Some(v)))
}

/// Canned answers: enough for every method to run its whole sequence.
fn script(r: &Request) -> Option<Reply> {
    let one = |cells| Some(Reply::Rows(vec![vec![row(cells)]]));
    let s = r.sql.as_str();
    if s == sql::CHECK_FENCE {
        return Some(Reply::Count(1));
    }
    if s == sql::CLAIM_TABLE {
        return one(vec![i64_cell("token", 1)]);
    }
    if s == sql::PRIMARY_IDENTITY {
        return one(vec![
            ("broker_guid", ColumnData::String(Some("g".into()))),
            ("create_date", ColumnData::String(Some("d".into()))),
            ("snapshot_state", ColumnData::I32(Some(1))),
        ]);
    }
    if s == sql::TRACKED_TABLES {
        return one(vec![
            ("schema_name", ColumnData::String(Some("dbo".into()))),
            ("table_name", ColumnData::String(Some("User".into()))),
        ]);
    }
    if s == sql::CHANGE_RETENTION {
        return one(vec![
            ("retention_period", ColumnData::I32(Some(2))),
            ("retention_units", ColumnData::I32(Some(3))),
            ("is_auto_cleanup_on", ColumnData::Bit(Some(true))),
        ]);
    }
    if s == sql::CURRENT_VERSION || s == sql::MIN_VALID_VERSION || s == sql::ROW_COUNT {
        return one(vec![i64_cell("v", 10)]);
    }
    if s.contains("[changed_keys]") {
        return one(vec![
            i64_cell("target_version", 10),
            i64_cell("min_valid_version", 1),
            i64_cell("changed_keys", 3),
        ]);
    }
    if s.contains("[__ctsync_row_exists]") {
        let rows = (1..=3)
            .map(|i| {
                row(vec![
                    ("Id", ColumnData::I32(Some(i))),
                    ("__ctsync_row_exists", ColumnData::I32(Some(1))),
                    ("Id", ColumnData::I32(Some(i))),
                    ("Name", ColumnData::String(Some("n".into()))),
                    ("Email", ColumnData::String(None)),
                ])
            })
            .collect();
        return Some(Reply::Rows(vec![rows]));
    }
    if s.contains("AS [current_version]") {
        return one(vec![
            ("i", ColumnData::I32(Some(0))),
            ("changed", ColumnData::I32(Some(1))),
            i64_cell("min_valid", 1),
            i64_cell("current_version", 10),
        ]);
    }
    if s == sql::CARRIED_INDEXES {
        return one(vec![
            ("index_name", ColumnData::String(Some("ix_name".into()))),
            ("is_unique", ColumnData::Bit(Some(false))),
            ("filter_definition", ColumnData::String(None)),
            ("column_name", ColumnData::String(Some("Name".into()))),
            ("is_included_column", ColumnData::Bit(Some(false))),
            ("is_descending_key", ColumnData::Bit(Some(false))),
        ]);
    }
    None
}

fn narrow_table() -> TableSchema {
    let mut t = user_table();
    t.id = TableId::new("dbo", "Narrow");
    t.columns.push(ColumnDef::new(
        "Short",
        SqlType::NVarChar(Len::N(100)),
        true,
    ));
    t
}

async fn drive_primary(recorder: &Recorder) {
    let primary = MssqlPrimary::new(Pool::with_connector(Arc::new(recorder.clone()), 3));
    let users = user_table();
    let lines = order_line_table();
    primary.identity().await.expect("identity");
    primary.tracked_tables().await.expect("tables");
    primary.change_retention().await.expect("retention");
    primary.current_version().await.expect("current");
    primary
        .min_valid_version(&users.id)
        .await
        .expect("min valid");
    primary.row_count(&users.id).await.expect("rows");
    primary.modules().await.expect("modules");
    primary
        .scout(&[(users.id.clone(), 3)])
        .await
        .expect("scout");
    for schema in [&users, &lines, &all_types_table()] {
        primary.read_page(schema, None, 100).await.expect("page");
    }
    primary
        .read_page(&users, Some(&user_key(5)), 100)
        .await
        .expect("next page");
    // A change set read to its end, fresh and continued (snapshot on).
    for after in [None, Some(user_key(1))] {
        let mut set = primary
            .open_changes(&users, 3, after.as_ref())
            .await
            .expect("open");
        set.next_page(&users, 2).await.expect("page 1");
        set.next_page(&users, 2).await.expect("page 2");
    }
    // The catalog read fails on empty answers, after sending its requests.
    let _ = primary.table_schema(&users.id).await;
    let _ = primary.chunk_sum(&users, &KeyRange::default(), 1_000).await;
}

async fn drive_replica(recorder: &Recorder) {
    let claim = Claim::new("a", 1);
    for schema in [
        user_table(),
        order_line_table(),
        all_types_table(),
        narrow_table(),
    ] {
        recorder.describe(&schema);
        let mut shadow = schema.clone();
        shadow.id = schema.id.shadow();
        recorder.describe(&shadow);
    }
    let replica = MssqlReplica::new(Pool::with_connector(Arc::new(recorder.clone()), 2));
    let users = user_table();
    replica.claim(&users.id, "a").await.expect("claim");
    for (schema, rows) in [
        (users.clone(), vec![user(1, "a"), user(2, "b")]),
        (
            all_types_table(),
            vec![all_types_row(1, false), all_types_row(2, true)],
        ),
        (narrow_table(), vec![narrow_row(1)]),
    ] {
        for mode in [LoadMode::Shadow, LoadMode::InPlace] {
            let load = PendingLoad {
                mode,
                ..PendingLoad::default()
            };
            let start = LoadStart {
                load: load.clone(),
                recreate: mode == LoadMode::InPlace,
            };
            replica
                .begin_full_load(&schema, &start, &claim)
                .await
                .expect("begin");
            replica
                .insert_rows(&schema, &rows, &load, &claim)
                .await
                .expect("rows");
            replica
                .finish_full_load(&schema, 10, mode, &claim)
                .await
                .expect("finish");
        }
        let change = ctsync_actors::model::ChangeBatch {
            table: schema.id.clone(),
            keys: rows
                .iter()
                .map(|r| ctsync_actors::model::RowKey(vec![r[0].clone()]))
                .collect(),
            rows: rows.clone(),
            version: Some(11),
            backlog: None,
        };
        replica
            .apply_changes(&schema, &change, &claim)
            .await
            .expect("changes");
    }
    replica
        .cancel_load(&users.id, 10, &claim)
        .await
        .expect("cancel");
    replica
        .advance_versions(&[Advance {
            table: users.id.clone(),
            claim: claim.clone(),
            from: 10,
            to: 12,
        }])
        .await
        .expect("advance");
    replica.swap_blockers(&users.id).await.expect("blockers");
    replica.record(&users.id).await.expect("record");
    let _ = replica.table_schema(&users.id).await;
    replica
        .alter_columns(
            &users.id,
            &[
                ColumnOp::Add(ColumnDef::new("Age", SqlType::Int, true)),
                ColumnOp::Alter(ColumnDef::new("Name", SqlType::NVarChar(Len::N(200)), true)),
                ColumnOp::Drop("Age".into()),
            ],
            &claim,
        )
        .await
        .expect("alter");
    replica
        .rename_column(&users.id, "Name", "FullName", &claim)
        .await
        .expect("rename column");
    replica
        .rename_table(&users.id, &TableId::new("dbo", "People"), &claim)
        .await
        .expect("rename table");
    let message = QueueMessage {
        id: "c:1".into(),
        conversation: "c".into(),
        message_type: "t".into(),
        body: Some("<EVENT_INSTANCE/>".into()),
    };
    replica.inbox_add(&[message]).await.expect("inbox add");
    replica.inbox_pending().await.expect("inbox");
    replica
        .inbox_settle("c:1", &InboxOutcome::Done)
        .await
        .expect("settle");
    replica.modules().await.expect("modules");
    let view = ModuleDef::new(
        "dbo",
        "v",
        ModuleKind::View,
        Some("CREATE VIEW dbo.v AS SELECT 1 AS a"),
    );
    replica
        .apply_module(&ModuleOp::Create(view.clone()))
        .await
        .expect("create view");
    replica
        .apply_module(&ModuleOp::Alter(view))
        .await
        .expect("alter view");
    let _ = replica.chunk_sum(&users, &KeyRange::default(), 1_000).await;
}

fn narrow_row(id: i32) -> Row {
    let mut r = user(id, "n");
    r.push(Value::String("short".into()));
    r
}

async fn drive_ddl_queue(recorder: &Recorder) {
    let queue = MssqlDdlQueue::with_connector(Arc::new(recorder.clone()), "SyncDDLQueue");
    queue
        .receive(10, std::time::Duration::from_millis(100))
        .await
        .expect("receive");
    queue.end_conversation("c").await.expect("end");
    queue.commit().await.expect("commit");
    queue.rollback().await.expect("rollback");
}

#[tokio::test]
async fn the_adapter_breaks_no_session_rule() {
    let primary = Recorder::new(script);
    drive_primary(&primary).await;
    let replica = Recorder::new(script);
    drive_replica(&replica).await;
    let queue = Recorder::new(script);
    drive_ddl_queue(&queue).await;
    let mut figures = Vec::new();
    let mut broken = Vec::new();
    for (side, recorder) in [
        ("primary", &primary),
        ("replica", &replica),
        ("DDL queue", &queue),
    ] {
        let log = recorder.log();
        let count = |call: Call| log.iter().filter(|r| r.call == call).count();
        let sessions: BTreeSet<usize> = log.iter().map(|r| r.session).collect();
        let violations = session_rules::check(&log);
        figures.push(format!(
            "{side}: {} requests ({} batches, {} RPCs, {} bulk loads) on {} sessions",
            log.len(),
            count(Call::Batch),
            count(Call::Rpc),
            count(Call::BulkRows),
            sessions.len()
        ));
        broken.extend(
            violations
                .iter()
                .map(|v| format!("{side} {v}: {}", log[v.request].sql)),
        );
    }
    println!(
        "session rules: {}; {} rules; {} violations",
        figures.join("; "),
        session_rules::RULES.len(),
        broken.len()
    );
    assert!(broken.is_empty(), "{broken:#?}");
    // The sweep reaches bulk copy, the change set and the migrations.
    let replica_log = replica.log();
    assert!(replica_log.iter().any(|r| r.call == Call::BulkRows));
    assert!(replica_log.iter().any(|r| r.sql.starts_with("INSERT BULK")));
    assert!(primary
        .log()
        .iter()
        .any(|r| r.sql.contains("CREATE TABLE #ctsync_changes")));
}
