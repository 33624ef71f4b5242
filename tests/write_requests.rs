//! What one page costs the replica, counted from the page's write plan (the
//! same plan the adapter executes): requests per 5,000-row page for narrow
//! and wide tables on both paths, and SQL text and parameter declarations
//! that do not change with the values.

use ctsync::mssql::replica::bulk;
use ctsync::mssql::replica::write_plan::{change_plan, load_page_plan, WritePath, WritePlan};
use ctsync_actors::model::*;

const PAGE: usize = 5_000;

/// Column types cycled through to make a table of any width.
fn column_type(i: usize) -> SqlType {
    match i % 10 {
        0 => SqlType::Decimal {
            precision: 18,
            scale: 4,
        },
        1 => SqlType::NVarChar(Len::N(400)),
        2 => SqlType::VarChar(Len::N(50)),
        3 => SqlType::DateTime2 { scale: 7 },
        4 => SqlType::BigInt,
        5 => SqlType::Money,
        6 => SqlType::UniqueIdentifier,
        7 => SqlType::VarBinary(Len::N(100)),
        8 => SqlType::NVarChar(Len::Max),
        _ => SqlType::DateTimeOffset { scale: 7 },
    }
}

/// `Id int` (the key) and `columns - 1` more.
fn table(columns: usize, identity: bool) -> TableSchema {
    let mut id = ColumnDef::new("Id", SqlType::Int, false);
    if identity {
        id.identity = Some(Identity {
            seed: 1,
            increment: 1,
        });
    }
    let mut cols = vec![id];
    cols.extend((1..columns).map(|i| ColumnDef::new(format!("C{i}"), column_type(i), true)));
    TableSchema {
        id: TableId::new("dbo", format!("Wide{columns}")),
        columns: cols,
        primary_key: vec![KeyColumn {
            name: "Id".into(),
            descending: false,
        }],
    }
}

/// A value of column `i`'s type; `seed` changes magnitudes and lengths.
fn value(i: usize, seed: usize) -> Value {
    let long = "x".repeat(1 + seed % 7 * 900);
    match i % 10 {
        0 => Value::Decimal {
            value: 10i128.pow((seed % 14) as u32) + seed as i128,
            scale: 4,
        },
        1 => Value::String(long.chars().take(400).collect()),
        2 => Value::String("é".repeat(1 + seed % 40)),
        3 => Value::DateTime2 {
            days: 700_000 + seed as u32,
            increments: seed as u64 * 1_234_567,
            scale: 7,
        },
        4 => Value::I64(seed as i64 * 1_000_003),
        5 => Value::Decimal {
            value: (seed as i128) * 98_765,
            scale: 4,
        },
        6 => Value::Guid([seed as u8; 16]),
        7 => Value::Binary(vec![seed as u8; seed % 100]),
        8 => Value::String(long),
        _ if seed.is_multiple_of(3) => Value::Null,
        _ => Value::DateTimeOffset {
            days: 738_000,
            increments: 0,
            scale: 7,
            offset_minutes: (seed % 800) as i16 - 400,
        },
    }
}

fn rows(schema: &TableSchema, n: usize, seed: usize) -> Vec<Row> {
    (0..n)
        .map(|r| {
            let mut row = vec![Value::I32(r as i32)];
            row.extend((1..schema.columns.len()).map(|i| value(i, seed + r * 31 + i)));
            row
        })
        .collect()
}

fn change(schema: &TableSchema, n: usize, seed: usize) -> ChangeBatch {
    let rows = rows(schema, (n * 4 / 5).max(1), seed);
    ChangeBatch {
        table: schema.id.clone(),
        keys: (0..n).map(|k| RowKey(vec![Value::I32(k as i32)])).collect(),
        rows,
        version: Some(42 + seed as i64),
        backlog: None,
    }
}

fn cursor_state(seed: usize) -> String {
    format!(
        "{{\"start_version\":{seed},\"cursor\":[{{\"String\":\"{}\"}}],\"rows\":{}}}",
        "k".repeat(seed % 5_000),
        seed * 5_000
    )
}

const BULK: WritePath = WritePath::Bulk { table_lock: false };
const SHADOW: WritePath = WritePath::Bulk { table_lock: true };

#[test]
fn a_full_page_costs_the_same_few_requests_whatever_its_width_and_size() {
    for columns in [4, 20] {
        for identity in [false, true] {
            let schema = table(columns, identity);
            for n in [1, 500, PAGE] {
                let rows = rows(&schema, n, 0);
                let full = |path| load_page_plan(&schema.id, &schema, &rows, cursor_state(n), path);
                // BEGIN, fence check, bulk load (metadata, INSERT BULK, rows),
                // cursor, COMMIT.
                assert_eq!(full(SHADOW).requests(), 7, "{columns} columns, {n} rows");
                assert_eq!(full(BULK).requests(), 7);
                // BEGIN, fence check, one INSERT … OPENJSON, cursor, COMMIT.
                assert_eq!(full(WritePath::Json).requests(), 5);

                let change = change(&schema, n, 0);
                // BEGIN, fence check, one DELETE … OPENJSON, bulk load (3),
                // version, COMMIT.
                let bulk = change_plan(&schema, &change, BULK).expect("plan");
                assert_eq!(bulk.requests(), 8, "{columns} columns, {n} keys");
                let json = change_plan(&schema, &change, WritePath::Json).expect("plan");
                assert_eq!(json.requests(), 6);
            }
        }
    }
}

#[test]
fn a_page_without_rows_or_version_sends_only_what_it_needs() {
    let schema = table(4, false);
    let deletes_only = ChangeBatch {
        table: schema.id.clone(),
        keys: vec![RowKey(vec![Value::I32(1)])],
        rows: vec![],
        version: None,
        backlog: None,
    };
    assert_eq!(
        change_plan(&schema, &deletes_only, BULK)
            .expect("plan")
            .requests(),
        4
    );
    assert_eq!(WritePlan::default().requests(), 3);
}

/// The SQL text and declared parameter types of every statement of a plan.
fn shapes(plan: &WritePlan<'_>) -> Vec<Option<(String, Vec<&'static str>)>> {
    plan.steps.iter().map(|s| s.shape()).collect()
}

#[test]
fn statements_and_declarations_do_not_change_with_the_values() {
    for columns in [4, 20] {
        let schema = table(columns, true);
        let mut seen_full = None;
        let mut seen_change = None;
        // Pages of 1 and 5,000 rows; decimals from 10^0 to 10^13; strings
        // from 1 to 5,401 characters; NULLs and values.
        for (seed, n) in [(0, 1), (1, 2), (7, 5_000), (13, 3), (5, 100)] {
            let rows = rows(&schema, n, seed);
            for path in [WritePath::Json, SHADOW] {
                let full = load_page_plan(&schema.id, &schema, &rows, cursor_state(seed), path);
                let got = (path, shapes(&full));
                match &seen_full {
                    None => seen_full = Some(vec![got]),
                    Some(v) if v.iter().any(|(p, _)| *p == path) => {
                        let first = &v.iter().find(|(p, _)| *p == path).expect("seen").1;
                        assert_eq!(first, &got.1, "{columns} columns, seed {seed}, {path:?}");
                    }
                    Some(_) => seen_full.as_mut().expect("seen").push(got),
                }
            }
            let change = change(&schema, n, seed);
            let plan = change_plan(&schema, &change, WritePath::Json).expect("plan");
            let got = shapes(&plan);
            match &seen_change {
                None => seen_change = Some(got),
                Some(first) => assert_eq!(first, &got, "{columns} columns, seed {seed}"),
            }
        }
        // Every page parameter is declared nvarchar(max): the page's text.
        for shape in seen_change.expect("plans").into_iter().flatten() {
            for declared in &shape.1 {
                assert_ne!(declared, &"numeric(p,s) of the value", "{}", shape.0);
            }
        }
    }
}

#[test]
fn tables_bulk_copy_cannot_take_are_named_with_the_reason() {
    let mut t = table(4, false);
    assert_eq!(bulk::refusal(&t), None);
    t.columns.push(ColumnDef::new("Doc", SqlType::Xml, true));
    assert!(bulk::refusal(&t).expect("xml").contains("[Doc] is xml"));
    let mut t = table(4, false);
    let mut code = ColumnDef::new("Code", SqlType::VarChar(Len::N(10)), true);
    code.collation = Some("Latin1_General_100_CI_AS_SC_UTF8".into());
    t.columns.push(code);
    assert!(bulk::refusal(&t).expect("utf8").contains("UTF-8"));
    let mut t = table(4, false);
    t.columns.push(ColumnDef::new("Pic", SqlType::Image, true));
    assert!(bulk::refusal(&t).expect("image").contains("[Pic] is image"));
    let mut t = table(4, false);
    t.columns
        .push(ColumnDef::new("bad\tname", SqlType::Int, true));
    assert!(bulk::refusal(&t).is_some());
}

#[test]
fn bulk_cells_keep_decimals_exact_and_text_as_text() {
    use tiberius::ColumnData;
    let dec = SqlType::Decimal {
        precision: 38,
        scale: 10,
    };
    match bulk::cell(
        &Value::Decimal {
            value: 12_345_678_901_234_567_890_123_456_789,
            scale: 10,
        },
        &dec,
    ) {
        ColumnData::Numeric(Some(n)) => {
            assert_eq!(n.value(), 12_345_678_901_234_567_890_123_456_789);
            assert_eq!(n.scale(), 10);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        bulk::cell(&Value::Null, &SqlType::Money),
        ColumnData::Numeric(None)
    ));
    assert!(matches!(
        bulk::cell(&Value::String("ü".into()), &SqlType::VarChar(Len::N(5))),
        ColumnData::String(Some(_))
    ));
    assert!(matches!(
        bulk::cell(&Value::Null, &SqlType::Char(Len::N(5))),
        ColumnData::String(None)
    ));
}
