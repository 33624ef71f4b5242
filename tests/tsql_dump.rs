//! Writes every statement ctsync's SQL builders produce, for schemas that
//! cover every supported type, composite and descending keys, identity,
//! computed columns, hostile identifiers and every module kind, to
//! `target/tsql/statements.sql` (GO-separated, `-- @@ name` labels), and
//! the T-SQL the e2e suite sends to `target/tsql/e2e.sql`. `.ci/run` then
//! checks them with Microsoft's own parser (`.ci/tsql_parse.py`), which
//! reads what sqlparser cannot (CHANGETABLE, WAITFOR(RECEIVE…), computed
//! columns, OUTPUT … INTO).

mod support;

use std::fmt::Write as _;

use ctsync::mssql::sql;
use ctsync_actors::model::{ColumnDef, Computed, KeyColumn, Len, SqlType, TableId, TableSchema};
use ctsync_actors::modules::{ModuleDef, ModuleKind};
use support::fixtures::*;

fn hostile() -> TableSchema {
    let mut computed = ColumnDef::new("to]tal 'x'", SqlType::Int, true);
    computed.computed = Some(Computed {
        definition: "([k]]ey]*(2))".into(),
        persisted: true,
    });
    let mut money = ColumnDef::new("pri\"ce", SqlType::Money, true);
    money.collation = None;
    let mut code = ColumnDef::new("co;de", SqlType::VarChar(Len::N(10)), false);
    code.collation = Some("Latin1_General_100_CI_AS_SC_UTF8".into());
    TableSchema {
        id: TableId::new("we]ird schema", "Ta'ble ünï]; DROP"),
        columns: vec![
            ColumnDef::new("k]ey", SqlType::Int, false),
            code,
            ColumnDef::new(
                "d38",
                SqlType::Decimal {
                    precision: 38,
                    scale: 38,
                },
                true,
            ),
            ColumnDef::new("x", SqlType::Xml, true),
            money,
            computed,
        ],
        primary_key: vec![
            KeyColumn {
                name: "k]ey".into(),
                descending: true,
            },
            KeyColumn {
                name: "co;de".into(),
                descending: false,
            },
        ],
    }
}

fn modules() -> Vec<ModuleDef> {
    let m = |kind, name: &str, def: &str| ModuleDef::new("dbo", name, kind, Some(def));
    vec![
        m(ModuleKind::View, "v]1", "CREATE VIEW [v]]1] AS SELECT 1 AS x"),
        m(
            ModuleKind::Procedure,
            "p",
            "CREATE PROCEDURE p @a int AS BEGIN SET NOCOUNT ON; SELECT @a END",
        ),
        m(
            ModuleKind::ScalarFunction,
            "f",
            "CREATE FUNCTION f(@a int) RETURNS int AS BEGIN RETURN @a + 1 END",
        ),
        m(
            ModuleKind::InlineFunction,
            "i",
            "CREATE FUNCTION i(@a int) RETURNS TABLE AS RETURN (SELECT @a AS a)",
        ),
        m(
            ModuleKind::TableFunction,
            "t",
            "CREATE FUNCTION t(@a int) RETURNS @r TABLE (a int) AS BEGIN INSERT @r VALUES (@a); RETURN END",
        ),
        ModuleDef {
            ansi_nulls: false,
            quoted_identifier: false,
            ..m(
                ModuleKind::View,
                "old",
                "CREATE VIEW old AS SELECT \"x\" = 1",
            )
        },
    ]
}

struct Dump(String);

impl Dump {
    fn add(&mut self, name: &str, statement: &str) {
        let _ = write!(self.0, "-- @@ {name}\n{statement}\nGO\n");
    }
}

fn table_statements(d: &mut Dump, s: &TableSchema) {
    let name = s.id.key_name();
    let keys = s.key_columns().expect("key");
    d.add(
        &format!("{name}: create_table"),
        &sql::create_table(s).expect("ddl"),
    );
    d.add(
        &format!("{name}: create_change_set"),
        &sql::create_change_set(s, &keys).expect("key types"),
    );
    for after in [false, true] {
        d.add(
            &format!("{name}: read_page {after}"),
            &sql::read_page(s, &keys, after),
        );
        for snapshot in [false, true] {
            d.add(
                &format!("{name}: fill_change_set {after} {snapshot}"),
                &sql::fill_change_set(s, &keys, after, snapshot),
            );
        }
        d.add(
            &format!("{name}: change_set_page {after}"),
            &sql::change_set_page(s, &keys, after),
        );
        d.add(
            &format!("{name}: checked change_set_page {after}"),
            &format!(
                "{}{}",
                sql::columns_unchanged(2 + keys.len()),
                sql::change_set_page(s, &keys, after)
            ),
        );
    }
    d.add(&format!("{name}: insert_json"), &sql::insert_json(s));
    let text: Vec<&ColumnDef> = s.written_columns();
    d.add(
        &format!("{name}: text_as_binary_page"),
        &sql::text_as_binary_page(s, &keys, &text, true),
    );
    d.add(
        &format!("{name}: delete_json"),
        &sql::delete_json(s, &s.key_column_defs().expect("key")),
    );
    d.add(&format!("{name}: truncate"), &sql::truncate(&s.id));
    d.add(
        &format!("{name}: drop_table_if_exists"),
        &sql::drop_table_if_exists(&s.id),
    );
    d.add(
        &format!("{name}: drop_shadow_if_exists"),
        &sql::drop_shadow_if_exists(&s.id),
    );
    d.add(&format!("{name}: move_shadow"), &sql::move_shadow(&s.id));
    d.add(
        &format!("{name}: schema lock timeout"),
        &sql::schema_lock_timeout(),
    );
    d.add(
        &format!("{name}: unbounded lock wait"),
        sql::UNBOUNDED_LOCK_WAIT,
    );
    d.add(&format!("{name}: primary key name"), sql::PRIMARY_KEY_NAME);
    d.add(
        &format!("{name}: rename primary key"),
        sql::RENAME_PRIMARY_KEY,
    );
    for (i, stmt) in sql::swap_statements(&s.id).iter().enumerate() {
        d.add(&format!("{name}: swap {i}"), stmt);
    }
    for (after, upto, limited) in [(false, false, true), (true, true, false)] {
        d.add(
            &format!("{name}: row_sums {after} {upto} {limited}"),
            &sql::row_sums(s, &keys, after, upto, limited),
        );
    }
    for c in s.columns.iter().filter(|c| c.computed.is_none()) {
        if let Some(add) = sql::add_column(&s.id, c) {
            d.add(&format!("{name}: add_column {}", c.name), &add);
        }
        if let Some(alter) = sql::alter_column(&s.id, c) {
            d.add(&format!("{name}: alter_column {}", c.name), &alter);
        }
        d.add(
            &format!("{name}: drop_column {}", c.name),
            &sql::drop_column(&s.id, &c.name),
        );
    }
    let index = sql::CarriedIndex {
        name: "IX ]odd".into(),
        unique: true,
        filter: Some("([k]]ey]>(0))".into()),
        keys: vec![(keys[0].clone(), true)],
        included: vec![],
    };
    d.add(
        &format!("{name}: create_index"),
        &sql::create_index(&s.id.shadow(), &index),
    );
    if let Some(grant) = sql::grant(&s.id, "GRANT", "SELECT", "report]er") {
        d.add(&format!("{name}: grant"), &grant);
    }
}

/// String literals the e2e suite and the contract suite's SQL Server
/// fixture pass to `exec(…)` or name as `const …: &str` SQL (`@rows`
/// standing for a number), unescaped.
fn e2e_statements() -> Vec<String> {
    let text = [
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e_sqlserver.rs"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/contract.rs"),
    ]
    .iter()
    .map(|path| std::fs::read_to_string(path).expect("e2e source"))
    .collect::<Vec<_>>()
    .join("\n");
    let mut out = Vec::new();
    for marker in ["exec(", ": &str = "] {
        let mut rest = text.as_str();
        while let Some(at) = rest.find(marker) {
            rest = &rest[at + marker.len()..];
            let Some(quote) = rest.find('"') else { break };
            // Only a literal that is the call's second argument, or the
            // constant's value.
            let before = &rest[..quote];
            let arg = marker == "exec("
                && (before.contains(')')
                    || !before.contains(',')
                    || !before
                        .rsplit(',')
                        .next()
                        .is_some_and(|a| a.trim().is_empty()));
            if arg || (marker != "exec(" && quote != 0) {
                continue;
            }
            let (s, end) = literal(&rest[quote + 1..]);
            rest = &rest[quote + 1 + end..];
            let sql = [
                "SELECT", "INSERT", "CREATE", "UPDATE", "DELETE", "ALTER", "IF", "DECLARE",
            ]
            .iter()
            .any(|k| s.starts_with(k));
            if !s.contains('{') && (marker == "exec(" || sql) {
                out.push(s.replace("@rows", "10"));
            }
        }
    }
    out
}

/// The unescaped text of a string literal whose opening quote was just
/// passed, and where it ends in `rest`.
fn literal(rest: &str) -> (String, usize) {
    let mut s = String::new();
    let mut chars = rest.char_indices();
    let mut end = 0;
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                end = i + 1;
                break;
            }
            '\\' => match chars.next() {
                Some((_, 'n')) => s.push('\n'),
                Some((_, '\n')) => {
                    // A line continuation: skip the next line's indent.
                    for (_, c) in chars.by_ref() {
                        if !c.is_whitespace() {
                            s.push(c);
                            break;
                        }
                    }
                }
                Some((_, other)) => s.push(other),
                None => {}
            },
            c => s.push(c),
        }
    }
    (s, end)
}

#[test]
fn every_statement_is_written_for_microsofts_parser() {
    let mut d = Dump(String::new());
    let mut dotted = user_table();
    dotted.id = TableId::new("dbo", "x.y");
    let tables = [
        user_table(),
        order_line_table(),
        all_types_table(),
        dotted,
        hostile(),
    ];
    for s in &tables {
        table_statements(&mut d, s);
    }
    let ids: Vec<TableId> = tables.iter().map(|s| s.id.clone()).collect();
    d.add("scout", &sql::scout(&ids));
    for m in modules() {
        for alter in [false, true] {
            let batches = sql::module_batches(&m, alter).expect("batches");
            for (i, b) in batches.iter().enumerate() {
                d.add(&format!("module {} {alter} {i}", m.qualified()), b);
            }
        }
        d.add(
            &format!("drop {}", m.qualified()),
            &sql::drop_module(m.kind, &m.schema, &m.name),
        );
    }
    // Doctor's fix-up T-SQL, for hostile names (the primary-key template
    // names its columns `<key columns>` for the operator and is left out).
    {
        use ctsync_actors::doctor::Fix;
        let db = "test]ct db".to_string();
        let (schema, name) = ("sync]q".to_string(), "SyncDDL Queue".to_string());
        let t = hostile().id;
        let fixes = [
            Fix::EnableChangeTracking {
                database: db.clone(),
            },
            Fix::Retention {
                database: db.clone(),
                days: 4,
                behind: true,
            },
            Fix::Retention {
                database: db.clone(),
                days: 2,
                behind: false,
            },
            Fix::AllowSnapshot {
                database: db.clone(),
            },
            Fix::EnableBroker {
                database: db.clone(),
            },
            Fix::CreateQueue {
                schema: schema.clone(),
                name: name.clone(),
            },
            Fix::EnableQueue { schema, name },
            Fix::CreateNotification,
            Fix::Grant {
                permission: "VIEW CHANGE TRACKING".into(),
                on: "OBJECT::[dbo].[User]".into(),
                user: "ctsync]reader".into(),
            },
            Fix::CompatibilityLevel,
            Fix::DisableTracking { table: t.clone() },
            Fix::EnableTracking { table: t },
        ];
        for (i, fix) in fixes.iter().enumerate() {
            let text = sql::fix_sql(fix);
            // A CREATE SERVICE / EVENT NOTIFICATION must lead its batch.
            for (j, statement) in text.split('\n').enumerate() {
                d.add(&format!("doctor fix {i}.{j}"), statement);
            }
        }
    }
    d.add(
        "receive",
        &sql::receive(&sql::queue_name("dbo", "SyncDDL]Queue"), 10, 5_000),
    );
    for (name, stmt) in [
        ("PRIMARY_IDENTITY", sql::PRIMARY_IDENTITY),
        ("TRACKED_TABLES", sql::TRACKED_TABLES),
        ("TABLE_COLUMNS", sql::TABLE_COLUMNS),
        ("PRIMARY_KEY_COLUMNS", sql::PRIMARY_KEY_COLUMNS),
        ("CHANGE_RETENTION", sql::CHANGE_RETENTION),
        ("CURRENT_VERSION", sql::CURRENT_VERSION),
        ("MIN_VALID_VERSION", sql::MIN_VALID_VERSION),
        ("ROW_COUNT", sql::ROW_COUNT),
        ("BEGIN_SNAPSHOT", sql::BEGIN_SNAPSHOT),
        ("END_SNAPSHOT", sql::END_SNAPSHOT),
        ("ROLLBACK", sql::ROLLBACK),
        ("SCHEMA_ID", sql::SCHEMA_ID),
        ("TABLE_OBJECT_ID", sql::TABLE_OBJECT_ID),
        ("BEGIN", sql::BEGIN),
        ("COMMIT", sql::COMMIT),
        ("MODULES", sql::MODULES),
        ("RENAME_COLUMN", sql::RENAME_COLUMN),
        ("RENAME_OBJECT", sql::RENAME_OBJECT),
        ("END_CONVERSATION", sql::END_CONVERSATION),
        ("MIGRATION_BEGIN", sql::MIGRATION_BEGIN),
        ("SELECT_SCHEMA_VERSION", sql::SELECT_SCHEMA_VERSION),
        ("SET_SCHEMA_VERSION", sql::SET_SCHEMA_VERSION),
        ("SELECT_RECORD", sql::SELECT_RECORD),
        ("UPSERT_VERSION", sql::UPSERT_VERSION),
        ("BEGIN_LOAD", sql::BEGIN_LOAD),
        ("LOAD_PAGE", sql::LOAD_PAGE),
        ("FINISH_LOAD", sql::FINISH_LOAD),
        ("BACKLOG_PAGE", sql::BACKLOG_PAGE),
        ("ADVANCE_VERSIONS", sql::ADVANCE_VERSIONS),
        ("CLAIM_TABLE", sql::CLAIM_TABLE),
        ("CHECK_FENCE", sql::CHECK_FENCE),
        ("SELECT_FENCE", sql::SELECT_FENCE),
        ("RENAME_RECORD", sql::RENAME_RECORD),
        ("INBOX_ADD", sql::INBOX_ADD),
        ("INBOX_PENDING", sql::INBOX_PENDING),
        ("INBOX_DONE", sql::INBOX_DONE),
        ("INBOX_FAILED", sql::INBOX_FAILED),
        ("SWAP_BLOCKERS", sql::SWAP_BLOCKERS),
        ("SCHEMA_BOUND_DEPENDENTS", sql::SCHEMA_BOUND_DEPENDENTS),
        ("CARRIED_INDEXES", sql::CARRIED_INDEXES),
        ("CARRIED_PERMISSIONS", sql::CARRIED_PERMISSIONS),
        ("PREFLIGHT_DATABASE", sql::PREFLIGHT_DATABASE),
        ("PREFLIGHT_QUEUE", sql::PREFLIGHT_QUEUE),
        ("PREFLIGHT_TABLES", sql::PREFLIGHT_TABLES),
        ("PREFLIGHT_UNSUPPORTED", sql::PREFLIGHT_UNSUPPORTED),
        (
            "PREFLIGHT_DATABASE_PERMISSIONS",
            sql::PREFLIGHT_DATABASE_PERMISSIONS,
        ),
        ("SESSION_OPTIONS_DEFAULT", sql::SESSION_OPTIONS_DEFAULT),
    ] {
        d.add(name, stmt);
    }
    for m in sql::MIGRATIONS {
        for (i, b) in m.batches.iter().enumerate() {
            d.add(&format!("migration {} batch {i}", m.version), b);
        }
    }
    let count = d.0.matches("\nGO\n").count();
    assert!(count > 150, "{count} statements");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tsql");
    std::fs::create_dir_all(&dir).expect("target/tsql");
    std::fs::write(dir.join("statements.sql"), &d.0).expect("write");

    let mut e2e = Dump(String::new());
    let statements = e2e_statements();
    assert!(statements.len() > 20, "{} e2e statements", statements.len());
    for (i, s) in statements.iter().enumerate() {
        e2e.add(&format!("e2e {i}"), s);
    }
    std::fs::write(dir.join("e2e.sql"), &e2e.0).expect("write");
}
