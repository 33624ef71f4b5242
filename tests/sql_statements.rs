//! Golden tests for every T-SQL builder, and a check that every statement
//! parses with an independent T-SQL parser (sqlparser's MsSql dialect).
//! Constructs that parser does not know are named where they occur:
//! `CHANGETABLE(CHANGES t, @v)` (parsed with CHANGES removed, which leaves
//! an ordinary table-valued function call), computed columns `[c] AS (expr)`
//! in CREATE TABLE, T-SQL's `ALTER COLUMN [c] type NULL`, and Service
//! Broker's `WAITFOR (RECEIVE …)` (golden text only; the tests assert the
//! parser still rejects them, so they get parsed once it learns them).

mod support;

use ctsync::mssql::sql;
use ctsync_actors::model::{ColumnDef, KeyColumn, Len, SqlType, TableId, TableSchema};
use ctsync_actors::modules::{ModuleDef, ModuleKind};
use sqlparser::dialect::MsSqlDialect;
use sqlparser::parser::Parser;
use support::fixtures::*;

fn parses(statement: &str) -> String {
    match Parser::parse_sql(&MsSqlDialect {}, statement) {
        Ok(ast) => format!("{ast:?}"),
        Err(e) => panic!("does not parse as T-SQL: {e}\n{statement}"),
    }
}

fn keys(s: &TableSchema) -> Vec<String> {
    s.key_columns().expect("table has a key")
}

fn key_defs(s: &TableSchema) -> Vec<&ColumnDef> {
    s.key_column_defs().expect("table has a key")
}

fn weird_table() -> TableSchema {
    TableSchema {
        id: TableId::new("we]ird schema", "Ta'ble ünï]"),
        columns: vec![
            ColumnDef::new("k]ey", SqlType::Int, false),
            ColumnDef::new("va'l ue", SqlType::NVarChar(Len::N(20)), true),
        ],
        primary_key: vec![KeyColumn {
            name: "k]ey".into(),
            descending: true,
        }],
    }
}

#[test]
fn identifiers_are_bracket_quoted_with_closing_brackets_doubled() {
    assert_eq!(sql::quote("a]b"), "[a]]b]");
    assert_eq!(sql::quote("it's"), "[it's]");
    assert_eq!(sql::quote("with space"), "[with space]");
    assert_eq!(sql::table(&TableId::new("dbo", "日本")), "[dbo].[日本]");
    let t = weird_table();
    let stmt = sql::read_page(&t, &keys(&t), true);
    assert_eq!(
        stmt,
        "SELECT TOP (@P1) [k]]ey], [va'l ue] FROM [we]]ird schema].[Ta'ble ünï]]] \
         WHERE ([k]]ey] > @P2) ORDER BY [k]]ey]"
    );
    // The independent parser reads back exactly the original names.
    let ast = parses(&stmt);
    for name in ["k]ey", "va'l ue", "we]ird schema", "Ta'ble ünï]"] {
        assert!(
            ast.contains(&format!("value: {name:?}")),
            "{name} not read back: {ast}"
        );
    }
    assert!(sql::truncate(&t.id).ends_with("[we]]ird schema].[Ta'ble ünï]]]"));
    parses(&sql::truncate(&t.id));
    parses(&sql::insert_json(&t));
    parses(&sql::delete_json(&t, &key_defs(&t)));
    assert_eq!(
        sql::create_table(&t).expect("ddl"),
        "CREATE TABLE [we]]ird schema].[Ta'ble ünï]]] ([k]]ey] int NOT NULL, [va'l ue] nvarchar(10) NULL, PRIMARY KEY ([k]]ey] DESC))"
    );
    parses(&sql::create_table(&t).expect("ddl"));
}

#[test]
fn keyset_pages_for_single_and_composite_keys() {
    let u = user_table();
    let o = order_line_table();
    let first = sql::read_page(&u, &keys(&u), false);
    assert_eq!(
        first,
        "SELECT TOP (@P1) [Id], [Name], CAST([Email] AS nvarchar(100)) FROM [dbo].[User] ORDER BY [Id]"
    );
    let next = sql::read_page(&o, &keys(&o), true);
    assert_eq!(
        next,
        "SELECT TOP (@P1) [OrderId], [Line], [Qty], [Note] FROM [sales].[OrderLine] \
         WHERE ([OrderId] > @P2) OR ([OrderId] = @P2 AND [Line] > @P3) ORDER BY [OrderId], [Line]"
    );
    parses(&first);
    parses(&next);
}

#[test]
fn keyset_never_uses_lob_columns() {
    let t = TableSchema {
        id: TableId::new("dbo", "NoPk"),
        columns: vec![
            ColumnDef::new("Body", SqlType::Text, true),
            ColumnDef::new("Doc", SqlType::NVarChar(Len::Max), true),
            ColumnDef::new("Code", SqlType::Int, false),
        ],
        primary_key: vec![],
    };
    let stmt = sql::read_page(&t, &keys(&t), true);
    assert!(
        stmt.ends_with("WHERE ([Code] > @P2) ORDER BY [Code]"),
        "{stmt}"
    );
}

#[test]
fn change_sets_copy_keys_once_and_pages_join_current_rows() {
    let u = user_table();
    let o = order_line_table();
    let create = sql::create_change_set(&o, &keys(&o)).expect("key types");
    assert_eq!(
        create,
        "IF OBJECT_ID(N'tempdb..#ctsync_changes') IS NOT NULL DROP TABLE #ctsync_changes; \
CREATE TABLE #ctsync_changes ([OrderId] int NOT NULL, [Line] smallint NOT NULL); \
CREATE UNIQUE CLUSTERED INDEX [ctsync_changes_key] ON #ctsync_changes ([OrderId], [Line]);"
    );
    let open = sql::fill_change_set(&o, &keys(&o), true, true);
    assert_eq!(
        open,
        "SET NOCOUNT ON; \
DECLARE @target bigint = CHANGE_TRACKING_CURRENT_VERSION(); \
DECLARE @min bigint = CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(@P2)); \
DECLARE @n bigint = 0; \
IF @P1 >= @min AND @P1 <= @target \
BEGIN \
SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION; \
INSERT INTO #ctsync_changes ([OrderId], [Line]) SELECT [ct].[OrderId], [ct].[Line] \
FROM CHANGETABLE(CHANGES [sales].[OrderLine], @P1) AS [ct] \
WHERE ([ct].[OrderId] > @P3) OR ([ct].[OrderId] = @P3 AND [ct].[Line] > @P4); \
SET @n = @@ROWCOUNT; \
SET @min = CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(@P2)); \
COMMIT TRANSACTION; SET TRANSACTION ISOLATION LEVEL READ COMMITTED; \
END; \
SELECT @target AS [target_version], @min AS [min_valid_version], @n AS [changed_keys];"
    );
    // The current version is read before anything else: a snapshot starts
    // at its first data access, so no change up to it can be missed.
    let first_read = open
        .find("CHANGE_TRACKING_CURRENT_VERSION()")
        .expect("version read");
    assert!(first_read < open.find("CHANGETABLE(").expect("copy"));
    // Without snapshot isolation the copy is one statement, no transaction.
    let plain = sql::fill_change_set(&u, &keys(&u), false, false);
    assert!(!plain.contains("TRANSACTION"), "{plain}");
    assert!(
        plain.contains("CHANGETABLE(CHANGES [dbo].[User], @P1) AS [ct];"),
        "{plain}"
    );
    // A key column without a recorded collation takes the database's
    // default, not tempdb's.
    assert!(sql::create_change_set(&u, &keys(&u))
        .expect("key types")
        .contains("CREATE TABLE #ctsync_changes ([Id] int NOT NULL)"),);

    let first = sql::change_set_page(&u, &keys(&u), false);
    assert_eq!(
        first,
        "SELECT TOP (@P1) [c].[Id], CASE WHEN [t].[Id] IS NULL THEN 0 ELSE 1 END AS [__ctsync_row_exists], \
         [t].[Id], [t].[Name], CAST([t].[Email] AS nvarchar(100)) FROM #ctsync_changes AS [c] \
         LEFT OUTER JOIN [dbo].[User] AS [t] ON [t].[Id] = [c].[Id] ORDER BY [c].[Id]"
    );
    let last = sql::change_set_page(&o, &keys(&o), true);
    assert_eq!(
        last,
        "SELECT TOP (@P1) [c].[OrderId], [c].[Line], CASE WHEN [t].[OrderId] IS NULL THEN 0 ELSE 1 END AS [__ctsync_row_exists], \
         [t].[OrderId], [t].[Line], [t].[Qty], [t].[Note] FROM #ctsync_changes AS [c] \
         LEFT OUTER JOIN [sales].[OrderLine] AS [t] ON [t].[OrderId] = [c].[OrderId] AND [t].[Line] = [c].[Line] \
         WHERE ([c].[OrderId] > @P2) OR ([c].[OrderId] = @P2 AND [c].[Line] > @P3) ORDER BY [c].[OrderId], [c].[Line]"
    );
    parses(&first);
    parses(&last);
}

#[test]
fn the_scout_checks_many_tables_in_one_query() {
    let tables = [user_table().id, order_line_table().id];
    assert_eq!(
        sql::scout(&tables),
        "DECLARE @current bigint = CHANGE_TRACKING_CURRENT_VERSION(); \
         SELECT 0 AS [i], CASE WHEN EXISTS (SELECT 1 FROM CHANGETABLE(CHANGES [dbo].[User], @P2) AS [ct]) \
         THEN 1 ELSE 0 END AS [changed], CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(@P1)) AS [min_valid], \
         @current AS [current_version] UNION ALL \
         SELECT 1 AS [i], CASE WHEN EXISTS (SELECT 1 FROM CHANGETABLE(CHANGES [sales].[OrderLine], @P4) AS [ct]) \
         THEN 1 ELSE 0 END AS [changed], CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(@P3)) AS [min_valid], \
         @current AS [current_version];"
    );
    // Two parameters per table: a full chunk stays below SQL Server's 2,100.
    let chunk: Vec<TableId> = (0..sql::SCOUT_CHUNK)
        .map(|i| TableId::new("dbo", format!("T{i}")))
        .collect();
    let text = sql::scout(&chunk);
    let last = 2 * sql::SCOUT_CHUNK;
    assert!(text.contains(&format!("@P{last})")) && last <= 2_100);
}

#[test]
fn create_table_clones_types_identity_nullability_and_key_order() {
    assert_eq!(
        sql::create_table(&user_table()).expect("ddl"),
        "CREATE TABLE [dbo].[User] ([Id] int IDENTITY(1, 1) NOT NULL, [Name] nvarchar(50) NULL, \
         [Email] varchar(100) NULL, PRIMARY KEY ([Id] ASC))"
    );
    assert_eq!(
        sql::create_table(&order_line_table()).expect("ddl"),
        "CREATE TABLE [sales].[OrderLine] ([OrderId] int NOT NULL, [Line] smallint NOT NULL, \
         [Qty] decimal(18, 4) NOT NULL, [Note] nvarchar(max) NULL, PRIMARY KEY ([OrderId] ASC, [Line] ASC))"
    );
    let all = sql::create_table(&all_types_table()).expect("ddl");
    assert_eq!(
        all,
        "CREATE TABLE [dbo].[AllTypes] ([Id] bigint NOT NULL, [Flag] bit NULL, [Tiny] tinyint NULL, \
         [Small] smallint NULL, [Big] bigint NULL, [Ratio] real NULL, [Precise] float(53) NULL, \
         [Amount] decimal(38, 10) NULL, [Price] money NULL, [Title] nvarchar(max) NULL, [Code] varchar(10) NULL, \
         [Blob] varbinary(max) NULL, [Uid] uniqueidentifier NULL, [Day] date NULL, [At] time(7) NULL, \
         [Stamp] datetime2(3) NULL, [Zoned] datetimeoffset(7) NULL, [Legacy] datetime NULL, \
         [Minute] smalldatetime NULL, [Doc] xml NULL, [Notes] text NULL, [Version] binary(8) NOT NULL, \
         [Doubled] AS ([Big]*(2)), PRIMARY KEY ([Id] ASC))"
    );
    parses(&sql::create_table(&user_table()).expect("ddl"));
    parses(&sql::create_table(&order_line_table()).expect("ddl"));
    // sqlparser has no computed columns: parse the DDL without that one.
    parses(&all.replace(", [Doubled] AS ([Big]*(2))", ""));
    assert!(sql::create_table(&TableSchema {
        id: TableId::new("dbo", "Geo"),
        columns: vec![ColumnDef::new(
            "Shape",
            SqlType::Unsupported("geography".into()),
            true
        )],
        primary_key: vec![],
    })
    .is_none());
}

#[test]
fn collation_names_are_kept_only_when_they_are_plain_words() {
    let mut t = user_table();
    t.columns[1].collation = Some("Latin1_General_CI_AS".into());
    t.columns[2].collation = Some("x; DROP TABLE y".into());
    let ddl = sql::create_table(&t).expect("ddl");
    assert!(
        ddl.contains("[Name] nvarchar(50) COLLATE Latin1_General_CI_AS NULL"),
        "{ddl}"
    );
    assert!(ddl.contains("[Email] varchar(100) NULL"), "{ddl}");
    parses(&ddl);
}

/// A page's rows or keys are one JSON parameter: the text depends only on
/// the table, each value converts from its exact text to its column's type.
#[test]
fn deletes_and_inserts_take_a_whole_page_in_one_json_parameter() {
    let u = user_table();
    let o = order_line_table();
    assert_eq!(
        sql::delete_json(&u, &key_defs(&u)),
        "DELETE [t] FROM [dbo].[User] AS [t] JOIN OPENJSON(@P1) WITH ([c0] nvarchar(4000) '$.c0') AS [j] \
         ON [t].[Id] = CONVERT(int, [j].[c0]);"
    );
    assert_eq!(
        sql::delete_json(&o, &key_defs(&o)),
        "DELETE [t] FROM [sales].[OrderLine] AS [t] JOIN OPENJSON(@P1) \
         WITH ([c0] nvarchar(4000) '$.c0', [c1] nvarchar(4000) '$.c1') AS [j] \
         ON [t].[OrderId] = CONVERT(int, [j].[c0]) AND [t].[Line] = CONVERT(smallint, [j].[c1]);"
    );
    assert_eq!(
        sql::insert_json(&o),
        "INSERT INTO [sales].[OrderLine] ([OrderId], [Line], [Qty], [Note]) \
         SELECT CONVERT(int, [j].[c0]), CONVERT(smallint, [j].[c1]), CONVERT(decimal(18, 4), [j].[c2]), [j].[c3] \
         FROM OPENJSON(@P1) WITH ([c0] nvarchar(4000) '$.c0', [c1] nvarchar(4000) '$.c1', \
         [c2] nvarchar(4000) '$.c2', [c3] nvarchar(max) '$.c3') AS [j];"
    );
    // Computed columns are never inserted.
    assert!(!sql::insert_json(&all_types_table()).contains("[Doubled]"));
    // Identity values are kept, in the same request.
    let mut ident = user_table();
    ident.columns[0].identity = Some(ctsync_actors::model::Identity {
        seed: 1,
        increment: 1,
    });
    let insert = sql::insert_json(&ident);
    assert!(insert.starts_with("SET IDENTITY_INSERT [dbo].[User] ON; INSERT INTO [dbo].[User]"));
    assert!(insert.ends_with("SET IDENTITY_INSERT [dbo].[User] OFF;"));
    for stmt in [
        sql::delete_json(&u, &key_defs(&u)),
        sql::delete_json(&o, &key_defs(&o)),
        sql::insert_json(&o),
        sql::insert_json(&all_types_table()),
        insert,
    ] {
        parses(&stmt);
    }
}

#[test]
fn fixed_statements_match_their_golden_text_and_parse() {
    let goldens: [(&str, &str); 10] = [
        (
            sql::CURRENT_VERSION,
            "SELECT CHANGE_TRACKING_CURRENT_VERSION() AS version",
        ),
        (
            sql::MIN_VALID_VERSION,
            "SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(@P1)) AS version",
        ),
        (
            sql::BEGIN_SNAPSHOT,
            "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION;",
        ),
        (
            sql::END_SNAPSHOT,
            "COMMIT TRANSACTION; SET TRANSACTION ISOLATION LEVEL READ COMMITTED;",
        ),
        (sql::ROLLBACK, "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;"),
        (sql::BEGIN, "SET XACT_ABORT ON; BEGIN TRANSACTION;"),
        (sql::COMMIT, "COMMIT TRANSACTION;"),
        (sql::SCHEMA_ID, "SELECT SCHEMA_ID(@P1) AS schema_id"),
        (
            sql::TABLE_OBJECT_ID,
            "SELECT OBJECT_ID(@P1, N'U') AS object_id",
        ),
        (
            sql::SELECT_RECORD,
            "SELECT [version], [load], [backlog] FROM [ctsync].[sync_versions] WHERE [table_name] = @P1",
        ),
    ];
    for (statement, golden) in goldens {
        assert_eq!(statement, golden);
        parses(statement);
    }
    for statement in [
        sql::PRIMARY_IDENTITY,
        sql::TRACKED_TABLES,
        sql::TABLE_COLUMNS,
        sql::PRIMARY_KEY_COLUMNS,
        sql::ROW_COUNT,
    ] {
        parses(statement);
    }
    assert!(sql::TABLE_COLUMNS.contains("WHERE c.object_id = OBJECT_ID(@P1)"));
    assert!(sql::TABLE_COLUMNS.contains("ORDER BY c.column_id"));
    assert!(sql::PRIMARY_KEY_COLUMNS.contains("ORDER BY ic.key_ordinal"));
    assert_eq!(sql::create_schema("sa]les"), "CREATE SCHEMA [sa]]les]");
    parses(&sql::create_schema("sa]les"));
}

#[test]
fn schema_change_statements_match_their_golden_text_and_parse() {
    let u = TableId::new("dbo", "User");
    let phone = ColumnDef::new("Phone", SqlType::NVarChar(Len::N(60)), true);
    assert_eq!(
        sql::add_column(&u, &phone).as_deref(),
        Some("ALTER TABLE [dbo].[User] ADD [Phone] nvarchar(30) NULL")
    );
    let mut qty = ColumnDef::new(
        "Qty",
        SqlType::Decimal {
            precision: 18,
            scale: 2,
        },
        false,
    );
    qty.collation = Some("ignored_for_numbers".into());
    assert_eq!(
        sql::alter_column(&u, &qty).as_deref(),
        Some("ALTER TABLE [dbo].[User] ALTER COLUMN [Qty] decimal(18, 2) NOT NULL")
    );
    assert_eq!(
        sql::drop_column(&u, "Old]Col"),
        "ALTER TABLE [dbo].[User] DROP COLUMN [Old]]Col]"
    );
    // sqlparser knows only the standard `ALTER COLUMN … SET DATA TYPE`, not
    // T-SQL's `ALTER COLUMN [c] type NULL`: golden text only.
    assert!(
        Parser::parse_sql(&MsSqlDialect {}, &sql::alter_column(&u, &qty).expect("ddl")).is_err()
    );
    for stmt in [
        sql::add_column(&u, &phone).expect("ddl"),
        sql::drop_column(&u, "Old]Col"),
    ] {
        parses(&stmt);
    }
    // sp_rename takes the names as values, never spliced.
    assert_eq!(sql::RENAME_COLUMN, "EXEC sp_rename @P1, @P2, N'COLUMN'");
    // A table's sp_rename says N'OBJECT': with @objtype NULL a two-part
    // `[sales].[Order]` is first tried as the column (or index) `Order` of
    // a table `sales`.
    assert_eq!(sql::RENAME_OBJECT, "EXEC sp_rename @P1, @P2, N'OBJECT'");
    assert_eq!(
        sql::column_object_name(&u, "Na]me"),
        "[dbo].[User].[Na]]me]"
    );
    assert_eq!(
        sql::RENAME_RECORD,
        "UPDATE [ctsync].[sync_versions] SET [table_name] = @P2 WHERE [table_name] = @P1"
    );
    for stmt in [sql::RENAME_COLUMN, sql::RENAME_OBJECT, sql::RENAME_RECORD] {
        parses(stmt);
    }
    // The shadow moves with the table: decided by the shadow's existence,
    // every name a value except in the orphan's DROP (quoted).
    let to = TableId::new("dbo", "Mem]ber");
    assert_eq!(
        sql::move_shadow(&to),
        format!(
            "IF OBJECT_ID(@P2, N'U') IS NOT NULL DROP TABLE [ctsync].[{}]; \
             IF OBJECT_ID(@P1, N'U') IS NOT NULL EXEC sp_rename @P1, @P3, N'OBJECT'",
            to.shadow().name
        )
    );
    assert_eq!(
        sql::move_shadow_params(&u, &to),
        [
            format!("[ctsync].[{}]", u.shadow().name),
            format!("[ctsync].[{}]", to.shadow().name),
            to.shadow().name,
        ]
    );
    parses(&sql::move_shadow(&to));
}

#[test]
fn module_statements_match_their_golden_text_and_parse() {
    assert_eq!(
        sql::module_set_options(true, false),
        "SET ANSI_NULLS ON; SET QUOTED_IDENTIFIER OFF;"
    );
    parses(&sql::module_set_options(true, false));
    // A module created under other options leaves the connection as every
    // other statement expects it.
    let m = ModuleDef {
        ansi_nulls: false,
        quoted_identifier: false,
        ..ModuleDef::new(
            "dbo",
            "v",
            ModuleKind::View,
            Some("CREATE VIEW v AS SELECT 1 AS x"),
        )
    };
    let [options, create, reset] = sql::module_batches(&m, false).expect("batches");
    assert_eq!(options, "SET ANSI_NULLS OFF; SET QUOTED_IDENTIFIER OFF;");
    assert!(create.starts_with("CREATE VIEW [dbo].[v]"), "{create}");
    assert_eq!(reset, "SET ANSI_NULLS ON; SET QUOTED_IDENTIFIER ON;");
    parses(&reset);
    assert_eq!(
        sql::drop_module(ModuleKind::View, "dbo", "v]1"),
        "DROP VIEW [dbo].[v]]1]"
    );
    assert_eq!(
        sql::drop_module(ModuleKind::Procedure, "dbo", "p"),
        "DROP PROCEDURE [dbo].[p]"
    );
    assert_eq!(
        sql::drop_module(ModuleKind::InlineFunction, "dbo", "f"),
        "DROP FUNCTION [dbo].[f]"
    );
    for kind in [
        ModuleKind::View,
        ModuleKind::Procedure,
        ModuleKind::ScalarFunction,
    ] {
        parses(&sql::drop_module(kind, "dbo", "x"));
    }
    let mut view = ModuleDef::new(
        "sales",
        "Totals",
        ModuleKind::View,
        Some("/* v */ CREATE VIEW Totals AS SELECT 1 AS n"),
    );
    assert_eq!(
        sql::create_module(&view, false).as_deref(),
        Some("/* v */ CREATE VIEW [sales].[Totals] AS SELECT 1 AS n")
    );
    assert_eq!(
        sql::create_module(&view, true).as_deref(),
        Some("/* v */ CREATE OR ALTER VIEW [sales].[Totals] AS SELECT 1 AS n")
    );
    parses(&sql::create_module(&view, false).expect("statement"));
    view.definition = None;
    assert_eq!(
        sql::create_module(&view, false),
        None,
        "encrypted modules have nothing to run"
    );
    assert!(sql::MODULES.contains("o.type IN ('V', 'P', 'FN', 'IF', 'TF', 'TR')"));
    assert!(sql::MODULES.contains("o.is_ms_shipped = 0"));
    parses(sql::MODULES);
}

/// sqlparser has no Service Broker statements: RECEIVE is checked by its
/// golden text only.
#[test]
fn queue_receive_statement_matches_its_golden_text() {
    let queue = sql::queue_name("dbo", "SyncDDLQueue");
    assert_eq!(queue, "[dbo].[SyncDDLQueue]");
    assert_eq!(
        sql::receive(&queue, 10, 5000),
        "WAITFOR (RECEIVE TOP (10) conversation_handle, message_sequence_number, \
         message_type_name, message_body FROM [dbo].[SyncDDLQueue]), TIMEOUT 5000"
    );
    // No cast to xml inside the receive: one non-XML body must not fail it.
    assert!(!sql::receive(&queue, 10, 5000).contains("xml"));
    assert_eq!(
        sql::END_CONVERSATION,
        "DECLARE @handle uniqueidentifier = CAST(@P1 AS uniqueidentifier); END CONVERSATION @handle;"
    );
    assert_eq!(sql::BEGIN_RECEIVE, "BEGIN TRANSACTION;");
    parses(sql::BEGIN_RECEIVE);
    assert!(
        Parser::parse_sql(&MsSqlDialect {}, &sql::receive(&queue, 10, 5000)).is_err(),
        "if sqlparser learns RECEIVE, parse it here"
    );
}

#[test]
fn retention_and_ping_statements_parse() {
    assert!(sql::CHANGE_RETENTION
        .contains("FROM sys.change_tracking_databases AS ctd WHERE ctd.database_id = DB_ID()"));
    parses(sql::CHANGE_RETENTION);
    assert_eq!(sql::PING, "SELECT 1 AS ok");
    parses(sql::PING);
}

#[test]
fn char_and_varchar_key_parameters_are_cast_to_the_column_type() {
    let t = TableSchema {
        id: TableId::new("dbo", "Product"),
        columns: vec![
            ColumnDef::new("Sku", SqlType::VarChar(Len::N(40)), false),
            ColumnDef::new("Region", SqlType::Char(Len::N(2)), false),
            ColumnDef::new("Title", SqlType::NVarChar(Len::N(400)), true),
        ],
        primary_key: vec![
            KeyColumn {
                name: "Sku".into(),
                descending: false,
            },
            KeyColumn {
                name: "Region".into(),
                descending: false,
            },
        ],
    };
    let next = sql::read_page(&t, &keys(&t), true);
    assert_eq!(
        next,
        "SELECT TOP (@P1) CAST([Sku] AS nvarchar(40)), CAST([Region] AS nvarchar(2)), [Title] FROM [dbo].[Product] \
         WHERE ([Sku] > CAST(@P2 AS varchar(40))) OR ([Sku] = CAST(@P2 AS varchar(40)) AND [Region] > CAST(@P3 AS char(2))) \
         ORDER BY [Sku], [Region]"
    );
    let delete = sql::delete_json(&t, &key_defs(&t));
    assert!(
        delete.ends_with(
            "ON [t].[Sku] = CAST([j].[c0] AS varchar(40)) AND [t].[Region] = CAST([j].[c1] AS char(2));"
        ),
        "{delete}"
    );
    let changes = sql::change_set_page(&t, &keys(&t), true);
    assert!(
        changes.contains("WHERE ([c].[Sku] > CAST(@P2 AS varchar(40)))"),
        "{changes}"
    );
    let open = sql::fill_change_set(&t, &keys(&t), true, false);
    assert!(
        open.contains("WHERE ([ct].[Sku] > CAST(@P3 AS varchar(40)))"),
        "{open}"
    );
    parses(&next);
    parses(&delete);
    parses(&changes);
}

/// Fidelity items 4 and 5: text in char/varchar/text columns is read as
/// nvarchar (tiberius would decode `_UTF8` collations by the LCID's code
/// page), inserted as nvarchar (the column's collation converts it), and a
/// char/varchar key is compared under the column's own collation, so no
/// character becomes '?' through the database default's code page.
#[test]
fn character_columns_are_read_and_compared_under_their_own_collation() {
    let mut utf8 = ColumnDef::new("Code", SqlType::VarChar(Len::N(20)), false);
    utf8.collation = Some("Latin1_General_100_CS_AS_SC_UTF8".into());
    let mut greek = ColumnDef::new("Name", SqlType::Char(Len::N(10)), false);
    greek.collation = Some("Greek_CI_AS".into());
    let t = TableSchema {
        id: TableId::new("dbo", "Coded"),
        columns: vec![
            utf8,
            greek,
            ColumnDef::new("Wide", SqlType::VarChar(Len::Max), true),
            ColumnDef::new("Old", SqlType::Text, true),
        ],
        primary_key: vec![
            KeyColumn {
                name: "Code".into(),
                descending: false,
            },
            KeyColumn {
                name: "Name".into(),
                descending: false,
            },
        ],
    };
    let next = sql::read_page(&t, &keys(&t), true);
    assert_eq!(
        next,
        "SELECT TOP (@P1) CAST([Code] AS nvarchar(20)), CAST([Name] AS nvarchar(10)), \
         CAST([Wide] AS nvarchar(max)), CAST([Old] AS nvarchar(max)) FROM [dbo].[Coded] \
         WHERE ([Code] > CAST(@P2 COLLATE Latin1_General_100_CS_AS_SC_UTF8 AS varchar(20))) \
         OR ([Code] = CAST(@P2 COLLATE Latin1_General_100_CS_AS_SC_UTF8 AS varchar(20)) \
         AND [Name] > CAST(@P3 COLLATE Greek_CI_AS AS char(10))) ORDER BY [Code], [Name]"
    );
    assert!(sql::insert_json(&t).starts_with(
        "INSERT INTO [dbo].[Coded] ([Code], [Name], [Wide], [Old]) \
         SELECT [j].[c0], [j].[c1], [j].[c2], [j].[c3] FROM OPENJSON(@P1)"
    ));
    assert!(sql::delete_json(&t, &key_defs(&t)).contains(
        "[t].[Code] = CAST([j].[c0] COLLATE Latin1_General_100_CS_AS_SC_UTF8 AS varchar(20))"
    ));
    parses(&next);
    parses(&sql::insert_json(&t));
}

/// The search for a value tiberius refused as invalid UTF-16 reads the
/// unicode columns as bytes, page by page in key order.
#[test]
fn the_invalid_utf16_search_reads_text_as_bytes_by_keyset() {
    let u = user_table();
    let name = u.columns.iter().find(|c| c.name == "Name").expect("Name");
    assert_eq!(
        sql::text_as_binary_page(&u, &keys(&u), &[name], true),
        "SELECT TOP (@P1) [Id], CAST([Name] AS varbinary(max)) FROM [dbo].[User] \
         WHERE ([Id] > @P2) ORDER BY [Id]"
    );
    parses(&sql::text_as_binary_page(&u, &keys(&u), &[name], false));
}

#[test]
fn ctsync_own_objects_statements_match_their_golden_text_and_parse() {
    assert_eq!(
        sql::UPSERT_VERSION,
        "UPDATE [ctsync].[sync_versions] SET [version] = @P2, [backlog] = NULL, [updated_at] = SYSUTCDATETIME() \
         WHERE [table_name] = @P1; IF @@ROWCOUNT = 0 INSERT INTO [ctsync].[sync_versions] ([table_name], [version], [load], \
         [updated_at]) VALUES (@P1, @P2, NULL, SYSUTCDATETIME())"
    );
    assert!(sql::BEGIN_LOAD.contains("SET [version] = NULL, [load] = @P2"));
    assert!(sql::FINISH_LOAD.contains("SET [version] = @P2, [load] = NULL, [backlog] = NULL"));
    // Every statement that sets the version ends a recorded backlog.
    assert!(sql::BEGIN_LOAD.contains("[backlog] = NULL"));
    // Idle versions move in one transaction, each only under its owner's
    // current fence row (locked first) and from the version it left.
    let advance = sql::ADVANCE_VERSIONS;
    assert!(advance.starts_with("SET XACT_ABORT ON; BEGIN TRANSACTION;"));
    assert!(advance.find("UPDATE [f]") < advance.find("UPDATE [v]"));
    assert!(advance.contains("JOIN @held AS [h] ON [h].[t] = [v].[table_name]"));
    assert!(advance.contains(
        "WHERE [v].[version] = [j].[from] AND [v].[load] IS NULL AND [v].[backlog] IS NULL"
    ));
    assert!(advance.ends_with("COMMIT TRANSACTION;"));
    assert_eq!(
        sql::BACKLOG_PAGE,
        "UPDATE [ctsync].[sync_versions] SET [backlog] = RTRIM(@P2), [updated_at] = SYSUTCDATETIME() \
         WHERE [table_name] = @P1; IF @@ROWCOUNT = 0 INSERT INTO [ctsync].[sync_versions] ([table_name], \
         [version], [load], [backlog], [updated_at]) VALUES (@P1, @P3, NULL, RTRIM(@P2), SYSUTCDATETIME())"
    );
    // A page's cursor is recorded only while the load is still pending.
    assert!(sql::LOAD_PAGE.contains("WHERE [table_name] = @P1 AND [load] IS NOT NULL"));
    assert!(sql::LOAD_PAGE.contains("IF @@ROWCOUNT = 0 THROW 50002"));
    assert!(sql::INBOX_ADD.starts_with(
        "IF NOT EXISTS (SELECT 1 FROM [ctsync].[ddl_inbox] WHERE [message_id] = @P1)"
    ));
    for stmt in [
        sql::LOAD_PAGE,
        sql::INBOX_ADD,
        sql::INBOX_PENDING,
        sql::INBOX_DONE,
        sql::INBOX_FAILED,
        sql::UPSERT_VERSION,
        sql::BEGIN_LOAD,
        sql::FINISH_LOAD,
        sql::BACKLOG_PAGE,
        sql::SELECT_RECORD,
        sql::SELECT_SCHEMA_VERSION,
        sql::SET_SCHEMA_VERSION,
    ] {
        parses(stmt);
    }
    let t = TableId::new("sa]les", "Or]der");
    assert_eq!(
        sql::drop_table_if_exists(&t),
        "IF OBJECT_ID(@P1, N'U') IS NOT NULL DROP TABLE [sa]]les].[Or]]der]"
    );
    parses(&sql::drop_table_if_exists(&t));
}

#[test]
fn migrations_are_ordered_locked_and_key_records_by_exact_name() {
    let versions: Vec<i32> = sql::MIGRATIONS.iter().map(|m| m.version).collect();
    let expected: Vec<i32> = (1..=versions.len() as i32).collect();
    assert_eq!(
        versions, expected,
        "migrations are numbered 1, 2, 3, … in order"
    );
    assert_eq!(
        sql::latest_schema_version(),
        *expected.last().expect("one migration")
    );
    // Two instances never migrate at once; a lock not granted fails loudly.
    assert!(sql::MIGRATION_BEGIN.starts_with("SET XACT_ABORT ON; BEGIN TRANSACTION;"));
    assert!(sql::MIGRATION_BEGIN.contains(
        "EXEC @lock = sp_getapplock @Resource = N'ctsync_schema_migrations', @LockMode = N'Exclusive', @LockOwner = N'Transaction'"
    ));
    assert!(sql::MIGRATION_BEGIN.contains("IF @lock < 0 THROW 50001"));
    // Table key names are compared exactly: `Sales.T` and `sales.T` are two
    // tables under a case-sensitive collation, and quoted names are long.
    let v2 = sql::MIGRATIONS[1].batches.join("\n");
    assert!(v2.contains("[table_name] nvarchar(600) COLLATE Latin1_General_BIN2 NOT NULL"));
    for m in sql::MIGRATIONS {
        for text in m.batches {
            if !text.starts_with("EXEC sp_rename") {
                parses(text);
            }
        }
    }
}

#[test]
fn the_fence_claims_by_raising_the_token_and_every_write_checks_owner_and_token() {
    // A claim raises the table's token (starting at 1) and records the
    // owner, in its own transaction; HOLDLOCK keeps two first claims from
    // both inserting.
    assert!(sql::CLAIM_TABLE.starts_with("SET XACT_ABORT ON; BEGIN TRANSACTION;"));
    assert!(sql::CLAIM_TABLE.contains(
        "UPDATE [ctsync].[fence] WITH (UPDLOCK, HOLDLOCK) SET [token] = [token] + 1, [owner] = @P2"
    ));
    assert!(sql::CLAIM_TABLE.contains("VALUES (@P1, @P2, 1, SYSUTCDATETIME())"));
    assert!(sql::CLAIM_TABLE.ends_with("COMMIT TRANSACTION; SELECT [token] FROM @claimed"));
    // A write passes only under exactly the current (owner, token), and its
    // UPDATE keeps the row locked until the write commits.
    assert_eq!(
        sql::CHECK_FENCE,
        "UPDATE [ctsync].[fence] SET [committed_at] = SYSUTCDATETIME() \
         WHERE [table_name] = @P1 AND [owner] = @P2 AND [token] = @P3"
    );
    let fence = sql::MIGRATIONS
        .iter()
        .find(|m| m.batches.iter().any(|b| b.contains("[ctsync].[fence]")))
        .expect("a migration creates the fence");
    let text = fence.batches.join("\n");
    assert!(text.contains("[table_name] nvarchar(600) COLLATE Latin1_General_BIN2 NOT NULL"));
    assert!(text.contains("[token] bigint NOT NULL"));
    // sqlparser knows neither table variables nor OUTPUT … INTO: the check
    // and the read parse here; the claim passed Microsoft's parser when it
    // was written (running that parser in CI is the fidelity issue's work).
    parses(sql::CHECK_FENCE);
    parses(sql::SELECT_FENCE);
}

#[test]
fn shadow_load_statements_match_their_golden_text_and_parse() {
    let t = TableId::new("sa]les", "Or]der");
    let shadow = t.shadow();
    assert_eq!(shadow.schema, "ctsync");
    let [aside, transfer, rename, drop] = sql::swap_statements(&t);
    assert_eq!(aside, "EXEC sp_rename @P1, @P2, N'OBJECT'");
    assert_eq!(
        transfer,
        format!("ALTER SCHEMA [sa]]les] TRANSFER [ctsync].[{}]", shadow.name)
    );
    assert_eq!(rename, "EXEC sp_rename @P1, @P2, N'OBJECT'");
    assert_eq!(
        drop,
        format!("DROP TABLE [sa]]les].[{}]", sql::swap_aside_name(&t))
    );
    let params = sql::swap_params(&t);
    assert_eq!(
        params[0],
        vec!["[sa]]les].[Or]]der]".to_string(), sql::swap_aside_name(&t)]
    );
    assert_eq!(
        params[2],
        vec![format!("[sa]]les].[{}]", shadow.name), "Or]der".to_string()]
    );
    parses(&drop);
    let index = sql::CarriedIndex {
        name: "IX_Em]ail".into(),
        unique: true,
        filter: Some("([Email] IS NOT NULL)".into()),
        keys: vec![("Email".into(), false), ("Id".into(), true)],
        included: vec!["Na]me".into()],
    };
    // Built only when the shadow has no index of that name yet (a swap
    // that failed after the build left it there): names as values.
    assert_eq!(
        sql::create_index(&shadow, &index),
        format!(
            "IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(@P1, N'U') AND name = @P2) \
             CREATE UNIQUE NONCLUSTERED INDEX [IX_Em]]ail] ON [ctsync].[{}] ([Email] ASC, [Id] DESC) \
             INCLUDE ([Na]]me]) WHERE ([Email] IS NOT NULL)",
            shadow.name
        )
    );
    assert_eq!(
        sql::create_index_params(&shadow, &index),
        [
            format!("[ctsync].[{}]", shadow.name),
            "IX_Em]ail".to_string()
        ]
    );
    assert_eq!(
        sql::grant(&t, "GRANT", "SELECT", "report]ing").as_deref(),
        Some("GRANT SELECT ON [sa]]les].[Or]]der] TO [report]]ing]")
    );
    assert_eq!(
        sql::grant(&t, "GRANT_WITH_GRANT_OPTION", "VIEW DEFINITION", "x").as_deref(),
        Some("GRANT VIEW DEFINITION ON [sa]]les].[Or]]der] TO [x] WITH GRANT OPTION")
    );
    assert_eq!(
        sql::grant(&t, "DENY", "SELECT; DROP", "x"),
        None,
        "not catalog text"
    );
    assert!(sql::SWAP_BLOCKERS.contains("d.is_schema_bound_reference = 1"));
    assert!(sql::SWAP_BLOCKERS.contains("FROM sys.triggers AS t WHERE t.parent_id = @id"));
    assert_eq!(
        sql::drop_shadow_if_exists(&t),
        format!(
            "IF OBJECT_ID(@P1, N'U') IS NOT NULL DROP TABLE [ctsync].[{}]",
            shadow.name
        )
    );
    assert_eq!(
        sql::SCHEMA_BOUND_DEPENDENTS,
        "SELECT DISTINCT SCHEMA_NAME(o.schema_id) AS [schema_name], o.name AS [name], o.type AS [type] \
         FROM sys.sql_expression_dependencies AS d JOIN sys.objects AS o ON o.object_id = d.referencing_id \
         WHERE d.referenced_id = OBJECT_ID(@P1, N'U') AND d.is_schema_bound_reference = 1 \
         AND d.referenced_class = 1 AND d.referencing_class = 1 AND d.referencing_id <> d.referenced_id \
         AND o.type IN ('V', 'FN', 'IF', 'TF')"
    );
    // A filtered index lists its own table as referencing it: never a
    // blocker, never a module to drop.
    assert!(sql::SWAP_BLOCKERS.contains("d.referencing_id <> d.referenced_id"));
    for stmt in [
        sql::CARRIED_INDEXES,
        sql::CARRIED_PERMISSIONS,
        sql::SCHEMA_BOUND_DEPENDENTS,
        &sql::drop_shadow_if_exists(&t),
    ] {
        parses(stmt);
    }
    // sqlparser does not know NONCLUSTERED/INCLUDE: golden text only.
    assert!(Parser::parse_sql(&MsSqlDialect {}, &sql::create_index(&shadow, &index)).is_err());
}

#[test]
fn verify_statements_match_their_golden_text_and_parse() {
    let users = TableSchema {
        id: TableId::new("dbo", "Us]er"),
        columns: vec![
            ColumnDef::new("Id", SqlType::Int, false),
            ColumnDef::new("Name", SqlType::NVarChar(Len::N(100)), true),
            ColumnDef::new("Price", SqlType::Money, true),
            ColumnDef::new("Blob", SqlType::VarBinary(Len::Max), true),
            ColumnDef::new("At", SqlType::DateTimeOffset { scale: 7 }, true),
        ],
        primary_key: vec![KeyColumn {
            name: "Id".into(),
            descending: false,
        }],
    };
    let keys = vec!["Id".to_string()];
    assert_eq!(
        sql::row_hash(&users),
        "HASHBYTES('SHA2_256', CAST(N'' AS nvarchar(max)) + ISNULL(CAST([Id] AS nvarchar(max)), NCHAR(0)) \
         + NCHAR(31) + ISNULL(CAST([Name] AS nvarchar(max)), NCHAR(0)) + NCHAR(31) + \
         ISNULL(CONVERT(nvarchar(40), [Price], 2), NCHAR(0)) + NCHAR(31) + \
         ISNULL(CONVERT(nvarchar(max), CAST([Blob] AS varbinary(max)), 1), NCHAR(0)) + NCHAR(31) + \
         ISNULL(CONVERT(nvarchar(40), [At], 127) + N' ' + CONVERT(nvarchar(6), DATEPART(TZOFFSET, [At])), NCHAR(0)))"
    );
    let chunk = sql::row_sums(&users, &keys, true, true, true);
    assert!(
        chunk.starts_with("SELECT TOP (@P1) [Id], HASHBYTES('SHA2_256'"),
        "{chunk}"
    );
    assert!(
        chunk.ends_with(
            "FROM [dbo].[Us]]er] WHERE (([Id] > @P2)) AND NOT (([Id] > @P3)) ORDER BY [Id]"
        ),
        "{chunk}"
    );
    for (after, upto, limited) in [
        (false, false, false),
        (true, false, true),
        (true, true, false),
    ] {
        parses(&sql::row_sums(&users, &keys, after, upto, limited));
    }
}

#[test]
fn doctor_statements_parse() {
    for stmt in [
        sql::PREFLIGHT_DATABASE,
        sql::PREFLIGHT_QUEUE,
        sql::PREFLIGHT_TABLES,
        sql::PREFLIGHT_UNSUPPORTED,
        sql::PREFLIGHT_DATABASE_PERMISSIONS,
    ] {
        parses(stmt);
    }
    assert!(sql::PREFLIGHT_QUEUE.contains("HAS_PERMS_BY_NAME(@P1, N'OBJECT', N'RECEIVE')"));
    assert!(sql::PREFLIGHT_TABLES.contains("N'VIEW CHANGE TRACKING'"));
}

/// Issue 13: a change read checks, in the same request, that the table's
/// columns are still those of the catalog read whose stamp it carries.
#[test]
fn a_change_read_first_checks_the_columns_stamp() {
    let u = user_table();
    let check = sql::columns_unchanged(3);
    assert!(check.starts_with(
        "IF (SELECT CHECKSUM_AGG(BINARY_CHECKSUM(c.column_id, c.name, c.system_type_id"
    ));
    assert!(check.contains("WHERE c.object_id = OBJECT_ID(@P3)) <> @P4 THROW 50010,"));
    assert_eq!(sql::COLUMNS_CHANGED_ERROR, 50_010);
    // The catalog read computes the same aggregate over the same rows.
    let stamped = check
        .split("BINARY_CHECKSUM(")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("stamped columns");
    assert!(sql::TABLE_COLUMNS.contains(&format!(
        "CHECKSUM_AGG(BINARY_CHECKSUM({stamped})) OVER () AS columns_stamp"
    )));
    let read = format!("{check}{}", sql::change_set_page(&u, &keys(&u), false));
    parses(&read);
}

/// The values a table rename sends (names go as values, never spliced):
/// `sp_rename`'s `@objname` the old two-part name quoted with `]` doubled,
/// `@newname` the bare new name as written, the shadows' names (the hash
/// of the key name: a changed hash would orphan every shadow under way)
/// and the record keys. Names with `]`, spaces, dots and non-ASCII.
#[test]
fn a_table_rename_sends_its_names_as_these_values() {
    let from = TableId::new("sa]les team", "Or]der ünï");
    let to = TableId::new("sa]les team", "Bé]stellung 2");
    assert_eq!(
        sql::table_rename(&from, &to),
        sql::TableRename {
            object: [
                "[sa]]les team].[Or]]der ünï]".to_string(),
                "Bé]stellung 2".to_string(),
            ],
            shadow: [
                "[ctsync].[shadow_23cd5764e267069d]".to_string(),
                "[ctsync].[shadow_74305be20505d8a0]".to_string(),
                "shadow_74305be20505d8a0".to_string(),
            ],
            record: [
                "[sa]]les team].[Or]]der ünï]".to_string(),
                "[sa]]les team].[Bé]]stellung 2]".to_string(),
            ],
        }
    );
    let (from, to) = (TableId::new("dbo", "a.b c"), TableId::new("dbo", "日本 表"));
    assert_eq!(
        sql::table_rename(&from, &to),
        sql::TableRename {
            object: ["[dbo].[a.b c]".to_string(), "日本 表".to_string()],
            shadow: [
                "[ctsync].[shadow_421f402057a23b13]".to_string(),
                "[ctsync].[shadow_3d5defb562740ca8]".to_string(),
                "shadow_3d5defb562740ca8".to_string(),
            ],
            record: ["[a.b c]".to_string(), "日本 表".to_string()],
        }
    );
}
