//! Conversions between tiberius `ColumnData` and the model's values for
//! every supported SQL type, catalog type mapping, and unsupported types
//! putting only their table into an error state.

mod support;

use std::borrow::Cow;
use std::time::Duration;

use ctsync::mssql::convert::{decimal_text, sql_type, value_from_sql, value_to_sql};
use ctsync::mssql::sql;
use ctsync_actors::model::{ColumnDef, KeyColumn, Len, SqlType, TableId, TableSchema, Value};
use ctsync_actors::status::TableState;
use support::fixtures::*;
use support::{eventually, fast_config, Harness};
use tiberius::numeric::Numeric;
use tiberius::time::{Date, DateTime, DateTime2, DateTimeOffset, SmallDateTime, Time};
use tiberius::xml::XmlData;
use tiberius::{ColumnData, Uuid};

/// (type, what the server returns, the model value, what ctsync sends back)
fn cases() -> Vec<(SqlType, ColumnData<'static>, Value)> {
    let uuid = Uuid::from_bytes([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let long_text = "ünïcødé ✓ ".repeat(10_000);
    vec![
        (SqlType::Bit, ColumnData::Bit(Some(true)), Value::Bool(true)),
        (SqlType::TinyInt, ColumnData::U8(Some(255)), Value::U8(255)),
        (
            SqlType::SmallInt,
            ColumnData::I16(Some(-32768)),
            Value::I16(-32768),
        ),
        (
            SqlType::Int,
            ColumnData::I32(Some(i32::MIN)),
            Value::I32(i32::MIN),
        ),
        (
            SqlType::BigInt,
            ColumnData::I64(Some(i64::MAX)),
            Value::I64(i64::MAX),
        ),
        (SqlType::Real, ColumnData::F32(Some(3.25)), Value::F32(3.25)),
        (
            SqlType::Float { precision: 53 },
            ColumnData::F64(Some(-1e-300)),
            Value::F64(-1e-300),
        ),
        (
            SqlType::Decimal {
                precision: 38,
                scale: 10,
            },
            ColumnData::Numeric(Some(Numeric::new_with_scale(
                12_345_678_901_234_567_890_123_456_789,
                10,
            ))),
            Value::Decimal {
                value: 12_345_678_901_234_567_890_123_456_789,
                scale: 10,
            },
        ),
        (
            SqlType::Numeric {
                precision: 5,
                scale: 2,
            },
            ColumnData::Numeric(Some(Numeric::new_with_scale(-99_999, 2))),
            Value::Decimal {
                value: -99_999,
                scale: 2,
            },
        ),
        (
            SqlType::NVarChar(Len::Max),
            ColumnData::String(Some(Cow::Owned(long_text.clone()))),
            Value::String(long_text),
        ),
        (
            SqlType::VarChar(Len::N(10)),
            ColumnData::String(Some("abc".into())),
            Value::String("abc".into()),
        ),
        (
            SqlType::NChar(Len::N(4)),
            ColumnData::String(Some("日本".into())),
            Value::String("日本".into()),
        ),
        (
            SqlType::Text,
            ColumnData::String(Some("legacy text".into())),
            Value::String("legacy text".into()),
        ),
        (
            SqlType::NText,
            ColumnData::String(Some("legacy ntext".into())),
            Value::String("legacy ntext".into()),
        ),
        (
            SqlType::VarBinary(Len::Max),
            ColumnData::Binary(Some(Cow::Owned(big.clone()))),
            Value::Binary(big),
        ),
        (
            SqlType::Image,
            ColumnData::Binary(Some(Cow::Owned(vec![0xFF, 0xD8]))),
            Value::Binary(vec![0xFF, 0xD8]),
        ),
        (
            SqlType::Binary(Len::N(2)),
            ColumnData::Binary(Some(Cow::Owned(vec![0, 1]))),
            Value::Binary(vec![0, 1]),
        ),
        (
            SqlType::UniqueIdentifier,
            ColumnData::Guid(Some(uuid)),
            Value::Guid(*uuid.as_bytes()),
        ),
        (
            SqlType::Date,
            ColumnData::Date(Some(Date::new(738_000))),
            Value::Date(738_000),
        ),
        (
            SqlType::Time { scale: 7 },
            ColumnData::Time(Some(Time::new(863_999_999_999, 7))),
            Value::Time {
                increments: 863_999_999_999,
                scale: 7,
            },
        ),
        (
            SqlType::DateTime2 { scale: 3 },
            ColumnData::DateTime2(Some(DateTime2::new(
                Date::new(738_000),
                Time::new(45_296_789, 3),
            ))),
            Value::DateTime2 {
                days: 738_000,
                increments: 45_296_789,
                scale: 3,
            },
        ),
        (
            SqlType::DateTimeOffset { scale: 7 },
            ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
                DateTime2::new(Date::new(738_000), Time::new(1, 7)),
                -330,
            ))),
            Value::DateTimeOffset {
                days: 738_000,
                increments: 1,
                scale: 7,
                offset_minutes: -330,
            },
        ),
        (
            SqlType::DateTime,
            ColumnData::DateTime(Some(DateTime::new(45_000, 25_919_999))),
            Value::DateTime {
                days: 45_000,
                ticks: 25_919_999,
            },
        ),
        (
            SqlType::SmallDateTime,
            ColumnData::SmallDateTime(Some(SmallDateTime::new(45_000, 1439))),
            Value::SmallDateTime {
                days: 45_000,
                minutes: 1439,
            },
        ),
        (
            SqlType::Xml,
            ColumnData::Xml(Some(Cow::Owned(XmlData::new("<a b=\"1\">ü</a>")))),
            Value::Xml("<a b=\"1\">ü</a>".into()),
        ),
        (
            SqlType::RowVersion,
            ColumnData::Binary(Some(Cow::Owned(vec![0, 0, 0, 0, 0, 0, 7, 209]))),
            Value::Binary(vec![0, 0, 0, 0, 0, 0, 7, 209]),
        ),
    ]
}

#[test]
fn every_supported_type_round_trips_between_column_data_and_values() {
    for (ty, data, value) in cases() {
        let got = value_from_sql(data.clone(), &ty, "c").unwrap_or_else(|e| panic!("{ty:?}: {e}"));
        assert_eq!(got, value, "{ty:?} from SQL");
        // decimal, money and xml go out as text the statement casts to the
        // column's type (sql::typed_param); everything else as read.
        let sent = match (&value, sql::sent_as_text(&ty)) {
            (Value::Decimal { value, scale }, true) => {
                ColumnData::String(Some(Cow::Owned(decimal_text(*value, *scale))))
            }
            (Value::Xml(x), true) => ColumnData::String(Some(Cow::Owned(x.clone()))),
            _ => data,
        };
        assert_eq!(value_to_sql(&value, &ty), sent, "{ty:?} to SQL");
    }
}

/// Parameters whose declared type would follow the value (tiberius derives
/// decimal precision from the digits) are sent as text and cast to the
/// column's type: the statement and the declared types do not change with
/// the values, and decimal(38,38) — whose values tiberius would declare as
/// numeric(39,38), which the server rejects — goes through.
#[test]
fn decimal_money_and_xml_parameters_do_not_vary_with_their_values() {
    let d38 = SqlType::Decimal {
        precision: 38,
        scale: 38,
    };
    assert_eq!(sql::typed_param(&d38, 7), "CAST(@P7 AS decimal(38, 38))");
    assert_eq!(sql::typed_param(&SqlType::Money, 1), "CAST(@P1 AS money)");
    assert_eq!(sql::typed_param(&SqlType::Xml, 2), "CONVERT(xml, @P2, 1)");
    assert_eq!(sql::typed_param(&SqlType::Int, 3), "@P3");
    let kind = |d: ColumnData<'static>| std::mem::discriminant(&d);
    let values = [
        (0i128, 38u8),
        (99_999_999_999_999_999_999_999_999_999_999_999_999, 38),
        (-1, 38),
    ];
    let first = kind(value_to_sql(
        &Value::Decimal {
            value: 1,
            scale: 38,
        },
        &d38,
    ));
    for (value, scale) in values {
        let p = value_to_sql(&Value::Decimal { value, scale }, &d38);
        assert_eq!(kind(p.clone()), first, "one declared type for every value");
        assert!(!matches!(p, ColumnData::Numeric(_)));
    }
    assert_eq!(
        decimal_text(99_999_999_999_999_999_999_999_999_999_999_999_999, 38),
        "0.99999999999999999999999999999999999999"
    );
    assert_eq!(
        decimal_text(-1, 38),
        "-0.00000000000000000000000000000000000001"
    );
    assert_eq!(decimal_text(-12_345, 2), "-123.45");
    assert_eq!(decimal_text(7, 0), "7");
    // money at its extremes, exactly.
    assert_eq!(
        value_to_sql(
            &Value::Decimal {
                value: 9_223_372_036_854_775_807,
                scale: 4
            },
            &SqlType::Money
        ),
        ColumnData::String(Some(Cow::Owned("922337203685477.5807".into())))
    );
    assert_eq!(
        value_to_sql(
            &Value::Decimal {
                value: -9_223_372_036_854_775_808,
                scale: 4
            },
            &SqlType::Money
        ),
        ColumnData::String(Some(Cow::Owned("-922337203685477.5808".into())))
    );
    // An empty xml value is an empty nvarchar, not a zero-length xml chunk.
    assert_eq!(
        value_to_sql(&Value::Xml(String::new()), &SqlType::Xml),
        ColumnData::String(Some(Cow::Owned(String::new())))
    );
}

/// money is read as decimal(19,4) (tiberius reads money itself as f64,
/// exact only to about 9·10¹¹), so the extremes survive.
#[test]
fn money_read_as_decimal_is_exact_at_its_extremes() {
    for (value, text) in [
        (9_223_372_036_854_775_807i128, "922337203685477.5807"),
        (-9_223_372_036_854_775_808, "-922337203685477.5808"),
    ] {
        let read = value_from_sql(
            ColumnData::Numeric(Some(Numeric::new_with_scale(value, 4))),
            &SqlType::Money,
            "Price",
        )
        .expect("money");
        assert_eq!(read, Value::Decimal { value, scale: 4 });
        assert_eq!(
            value_to_sql(&read, &SqlType::Money),
            ColumnData::String(Some(Cow::Owned(text.into())))
        );
    }
    let schema = TableSchema {
        id: TableId::new("dbo", "P"),
        columns: vec![
            ColumnDef::new("Id", SqlType::Int, false),
            ColumnDef::new("Price", SqlType::Money, true),
        ],
        primary_key: vec![KeyColumn {
            name: "Id".into(),
            descending: false,
        }],
    };
    let keys = vec!["Id".to_string()];
    assert_eq!(
        sql::read_page(&schema, &keys, false),
        "SELECT TOP (@P1) [Id], CAST([Price] AS decimal(19, 4)) FROM [dbo].[P] ORDER BY [Id]"
    );
}

#[test]
fn money_becomes_an_exact_four_decimal_value() {
    for ty in [SqlType::Money, SqlType::SmallMoney] {
        let v = value_from_sql(ColumnData::F64(Some(1234.5678)), &ty, "Price").expect("money");
        assert_eq!(
            v,
            Value::Decimal {
                value: 12_345_678,
                scale: 4
            }
        );
        assert_eq!(
            value_to_sql(&v, &ty),
            ColumnData::String(Some(Cow::Owned("1234.5678".into())))
        );
    }
    let v =
        value_from_sql(ColumnData::F64(Some(-0.0001)), &SqlType::Money, "Price").expect("money");
    assert_eq!(
        v,
        Value::Decimal {
            value: -1,
            scale: 4
        }
    );
}

#[test]
fn nulls_come_back_as_null_and_go_out_as_typed_nulls() {
    let typed = [
        (SqlType::Int, ColumnData::I32(None)),
        (SqlType::NVarChar(Len::Max), ColumnData::String(None)),
        (SqlType::VarBinary(Len::Max), ColumnData::Binary(None)),
        (
            SqlType::Decimal {
                precision: 10,
                scale: 2,
            },
            ColumnData::String(None),
        ),
        (SqlType::Money, ColumnData::String(None)),
        (SqlType::DateTime2 { scale: 7 }, ColumnData::DateTime2(None)),
        (
            SqlType::DateTimeOffset { scale: 7 },
            ColumnData::DateTimeOffset(None),
        ),
        (SqlType::UniqueIdentifier, ColumnData::Guid(None)),
        (SqlType::Bit, ColumnData::Bit(None)),
        (SqlType::TinyInt, ColumnData::U8(None)),
        (SqlType::Xml, ColumnData::String(None)),
        (SqlType::Text, ColumnData::String(None)),
    ];
    for (ty, null) in typed {
        assert_eq!(
            value_from_sql(null.clone(), &ty, "c").expect("null"),
            Value::Null,
            "{ty:?}"
        );
        assert_eq!(value_to_sql(&Value::Null, &ty), null, "{ty:?}");
    }
}

#[test]
fn a_value_of_the_wrong_type_is_an_error_naming_the_column() {
    let e = value_from_sql(ColumnData::String(Some("x".into())), &SqlType::Int, "Age")
        .expect_err("mismatch");
    assert!(e.to_string().contains("[Age]"), "{e}");
}

#[test]
fn catalog_types_map_with_lengths_in_bytes_precision_and_scale() {
    assert_eq!(
        sql_type("nvarchar", 100, 0, 0),
        SqlType::NVarChar(Len::N(100))
    );
    assert_eq!(sql_type("nvarchar", -1, 0, 0), SqlType::NVarChar(Len::Max));
    assert_eq!(
        sql_type("varbinary", -1, 0, 0),
        SqlType::VarBinary(Len::Max)
    );
    assert_eq!(
        sql_type("decimal", 17, 38, 10),
        SqlType::Decimal {
            precision: 38,
            scale: 10
        }
    );
    assert_eq!(
        sql_type("datetime2", 8, 27, 7),
        SqlType::DateTime2 { scale: 7 }
    );
    assert_eq!(sql_type("timestamp", 8, 0, 0), SqlType::RowVersion);
    assert_eq!(sql_type("TEXT", 16, 0, 0), SqlType::Text);
    assert_eq!(
        sql_type("sysname", 256, 0, 0),
        SqlType::NVarChar(Len::N(256))
    );
    for unsupported in ["geography", "geometry", "hierarchyid", "sql_variant"] {
        assert_eq!(
            sql_type(unsupported, 0, 0, 0),
            SqlType::Unsupported(unsupported.into())
        );
    }
}

#[actix_rt::test]
async fn unsupported_type_puts_only_that_table_in_error_with_a_clear_message() {
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
    let users = user_table();
    h.primary.create_table(geo.clone(), true);
    h.primary.create_table(users.clone(), true);
    h.primary.upsert(&users.id, user(1, "a"));
    h.set("mssql_sync:enabled:gis.Place", "true").await;
    h.set("mssql_sync:enabled:User", "true").await;
    let run = h.start(fast_config());
    eventually(Duration::from_secs(10), "geo table in error", || async {
        run.board
            .get("gis.Place")
            .is_some_and(|s| s.state == TableState::Error)
    })
    .await;
    let msg = run
        .board
        .get("gis.Place")
        .and_then(|s| s.last_error)
        .unwrap_or_default();
    for part in ["gis.Place", "[Shape]", "geography"] {
        assert!(msg.contains(part), "{part} missing from: {msg}");
    }
    assert!(!h.replica.has_table(&geo.id), "nothing is created for it");
    eventually(Duration::from_secs(10), "other table syncs", || async {
        h.replica.rows(&users.id) == h.primary.rows(&users.id)
    })
    .await;
}
