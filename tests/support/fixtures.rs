//! Table definitions and row builders shared by the pipeline tests.

use ctsync_actors::model::*;

pub fn user_table() -> TableSchema {
    let mut id = ColumnDef::new("Id", SqlType::Int, false);
    id.identity = Some(Identity {
        seed: 1,
        increment: 1,
    });
    TableSchema {
        id: TableId::new("dbo", "User"),
        columns: vec![
            id,
            ColumnDef::new("Name", SqlType::NVarChar(Len::N(100)), true),
            ColumnDef::new("Email", SqlType::VarChar(Len::N(100)), true),
        ],
        primary_key: vec![KeyColumn {
            name: "Id".into(),
            descending: false,
        }],
    }
}

pub fn user(id: i32, name: &str) -> Row {
    vec![
        Value::I32(id),
        Value::String(name.to_string()),
        Value::String(format!("{}@example.com", name.to_lowercase())),
    ]
}

pub fn user_key(id: i32) -> RowKey {
    RowKey(vec![Value::I32(id)])
}

pub fn order_line_table() -> TableSchema {
    TableSchema {
        id: TableId::new("sales", "OrderLine"),
        columns: vec![
            ColumnDef::new("OrderId", SqlType::Int, false),
            ColumnDef::new("Line", SqlType::SmallInt, false),
            ColumnDef::new(
                "Qty",
                SqlType::Decimal {
                    precision: 18,
                    scale: 4,
                },
                false,
            ),
            ColumnDef::new("Note", SqlType::NVarChar(Len::Max), true),
        ],
        primary_key: vec![
            KeyColumn {
                name: "OrderId".into(),
                descending: false,
            },
            KeyColumn {
                name: "Line".into(),
                descending: false,
            },
        ],
    }
}

pub fn order_line(order: i32, line: i16, qty: i128, note: Option<&str>) -> Row {
    vec![
        Value::I32(order),
        Value::I16(line),
        Value::Decimal {
            value: qty,
            scale: 4,
        },
        note.map(|n| Value::String(n.to_string()))
            .unwrap_or(Value::Null),
    ]
}

/// One column of every type the model supports (plus a computed column,
/// which is never written).
pub fn all_types_table() -> TableSchema {
    let mut total = ColumnDef::new("Doubled", SqlType::BigInt, true);
    total.computed = Some(Computed {
        definition: "([Big]*(2))".into(),
        persisted: false,
    });
    TableSchema {
        id: TableId::new("dbo", "AllTypes"),
        columns: vec![
            ColumnDef::new("Id", SqlType::BigInt, false),
            ColumnDef::new("Flag", SqlType::Bit, true),
            ColumnDef::new("Tiny", SqlType::TinyInt, true),
            ColumnDef::new("Small", SqlType::SmallInt, true),
            ColumnDef::new("Big", SqlType::BigInt, true),
            ColumnDef::new("Ratio", SqlType::Real, true),
            ColumnDef::new("Precise", SqlType::Float { precision: 53 }, true),
            ColumnDef::new(
                "Amount",
                SqlType::Decimal {
                    precision: 38,
                    scale: 10,
                },
                true,
            ),
            ColumnDef::new("Price", SqlType::Money, true),
            ColumnDef::new("Title", SqlType::NVarChar(Len::Max), true),
            ColumnDef::new("Code", SqlType::VarChar(Len::N(10)), true),
            ColumnDef::new("Blob", SqlType::VarBinary(Len::Max), true),
            ColumnDef::new("Uid", SqlType::UniqueIdentifier, true),
            ColumnDef::new("Day", SqlType::Date, true),
            ColumnDef::new("At", SqlType::Time { scale: 7 }, true),
            ColumnDef::new("Stamp", SqlType::DateTime2 { scale: 3 }, true),
            ColumnDef::new("Zoned", SqlType::DateTimeOffset { scale: 7 }, true),
            ColumnDef::new("Legacy", SqlType::DateTime, true),
            ColumnDef::new("Minute", SqlType::SmallDateTime, true),
            ColumnDef::new("Doc", SqlType::Xml, true),
            ColumnDef::new("Notes", SqlType::Text, true),
            ColumnDef::new("Version", SqlType::RowVersion, false),
            total,
        ],
        primary_key: vec![KeyColumn {
            name: "Id".into(),
            descending: false,
        }],
    }
}

/// A row of [`all_types_table`]; `null` makes every nullable column NULL.
pub fn all_types_row(id: i64, null: bool) -> Row {
    if null {
        let mut row = vec![Value::I64(id)];
        row.extend(std::iter::repeat_n(Value::Null, 20));
        row.push(Value::Binary(vec![0, 0, 0, 0, 0, 0, 0, id as u8]));
        return row;
    }
    vec![
        Value::I64(id),
        Value::Bool(true),
        Value::U8(255),
        Value::I16(-32768),
        Value::I64(i64::MAX),
        Value::F32(1.5),
        Value::F64(-2.25e-300),
        Value::Decimal {
            value: 12_345_678_901_234_567_890_123_456_789,
            scale: 10,
        },
        Value::Decimal {
            value: -9_223_372_036_854_775_808,
            scale: 4,
        },
        Value::String("Grüße, 世界 🚀 — ümlaut".into()),
        Value::String("ABC".into()),
        Value::Binary((0..=255u8).collect()),
        Value::Guid([7; 16]),
        Value::Date(738_000),
        Value::Time {
            increments: 863_999_999_999,
            scale: 7,
        },
        Value::DateTime2 {
            days: 738_000,
            increments: 45_296_789,
            scale: 3,
        },
        Value::DateTimeOffset {
            days: 738_000,
            increments: 1,
            scale: 7,
            offset_minutes: -330,
        },
        Value::DateTime {
            days: 45_000,
            ticks: 25_919_999,
        },
        Value::SmallDateTime {
            days: 45_000,
            minutes: 1439,
        },
        Value::Xml("<a b=\"1\">ü</a>".into()),
        Value::String("long legacy text".repeat(100)),
        Value::Binary(vec![0, 0, 0, 0, 0, 0, 7, id as u8]),
    ]
}
