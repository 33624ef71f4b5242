//! The simulated tables and their rows: composite keys, every value type,
//! dotted names; the DDL events of schema changes; each incarnation's config.

use std::time::Duration;

use crate::support::fixtures::{all_types_table, order_line_table, user_table};
use ctsync_actors::actors::ListenerConfig;
use ctsync_actors::config::{Backoff, Instance};
use ctsync_actors::keys;
use ctsync_actors::model::*;
use ctsync_actors::ports::{CallLimits, LoadMode};
use ctsync_actors::sync::SyncConfig;

/// The simulated tables: composite keys, every value type, and two tables
/// whose key names would collide without quoting.
pub(crate) fn table_defs() -> Vec<TableSchema> {
    let mut dotted = user_table();
    dotted.id = TableId::new("dbo", "x.y");
    let mut plain = user_table();
    plain.id = TableId::new("x", "y");
    vec![
        user_table(),
        order_line_table(),
        all_types_table(),
        dotted,
        plain,
    ]
}

/// The key values of key number `k` for a table's key columns.
pub(crate) fn key_values(schema: &TableSchema, k: u8) -> Vec<Value> {
    let keys = schema.key_columns().unwrap_or_default();
    let n = keys.len();
    keys.iter()
        .enumerate()
        .map(|(i, name)| {
            let ty = &schema
                .columns
                .iter()
                .find(|c| &c.name == name)
                .map(|c| c.ty.clone())
                .unwrap_or(SqlType::Int);
            // Composite keys: spread k over the parts.
            let part = if n == 1 {
                k as i64
            } else if i == 0 {
                (k / 3) as i64
            } else {
                (k % 3) as i64
            };
            match ty {
                SqlType::SmallInt => Value::I16(part as i16),
                SqlType::BigInt => Value::I64(part),
                _ => Value::I32(part as i32),
            }
        })
        .collect()
}

pub(crate) fn value_for(ty: &SqlType, salt: u32, nullable: bool) -> Value {
    if nullable && salt.is_multiple_of(7) {
        return Value::Null;
    }
    let s = salt as i64;
    match ty {
        SqlType::Bit => Value::Bool(salt.is_multiple_of(2)),
        SqlType::TinyInt => Value::U8(salt as u8),
        SqlType::SmallInt => Value::I16(salt as i16),
        SqlType::Int => Value::I32(salt as i32),
        SqlType::BigInt => Value::I64(s * 1_000_003),
        SqlType::Decimal { scale, .. } | SqlType::Numeric { scale, .. } => Value::Decimal {
            value: s as i128 * 12_345,
            scale: *scale,
        },
        SqlType::Money | SqlType::SmallMoney => Value::Decimal {
            value: s as i128,
            scale: 4,
        },
        SqlType::Real => Value::F32((salt % 1000) as f32 / 8.0),
        SqlType::Float { .. } => Value::F64(s as f64 / 3.0),
        SqlType::Char(_)
        | SqlType::VarChar(_)
        | SqlType::NChar(_)
        | SqlType::NVarChar(_)
        | SqlType::Text
        | SqlType::NText => Value::String(format!("v{}", salt % 1000)),
        SqlType::Binary(_) | SqlType::VarBinary(_) | SqlType::Image | SqlType::RowVersion => {
            Value::Binary(salt.to_be_bytes().to_vec())
        }
        SqlType::UniqueIdentifier => Value::Guid([salt as u8; 16]),
        SqlType::Date => Value::Date(730_000 + salt % 1000),
        SqlType::Time { scale } => Value::Time {
            increments: (salt % 86_400) as u64,
            scale: *scale,
        },
        SqlType::DateTime2 { scale } => Value::DateTime2 {
            days: 730_000 + salt % 1000,
            increments: (salt % 86_400) as u64,
            scale: *scale,
        },
        SqlType::DateTimeOffset { scale } => Value::DateTimeOffset {
            days: 730_000 + salt % 1000,
            increments: (salt % 86_400) as u64,
            scale: *scale,
            offset_minutes: (salt % 600) as i16 - 300,
        },
        SqlType::DateTime => Value::DateTime {
            days: (salt % 40_000) as i32,
            ticks: salt % 25_920_000,
        },
        SqlType::SmallDateTime => Value::SmallDateTime {
            days: (salt % 40_000) as u16,
            minutes: (salt % 1440) as u16,
        },
        SqlType::Xml => Value::Xml(format!("<v n=\"{}\"/>", salt % 1000)),
        SqlType::Unsupported(_) => Value::Null,
    }
}

/// A row of the table's current schema for key number `k`.
pub(crate) fn row_for(schema: &TableSchema, k: u8, salt: u32) -> Row {
    let keys = schema.key_columns().unwrap_or_default();
    let mut key_vals = key_values(schema, k).into_iter();
    schema
        .written_columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if keys.contains(&c.name) {
                key_vals.next().unwrap_or(Value::Null)
            } else {
                value_for(&c.ty, salt.wrapping_add(i as u32 * 7919), c.nullable)
            }
        })
        .collect()
}

pub(crate) fn event(event_type: &str, schema: &str, body: &str) -> String {
    format!(
        "<EVENT_INSTANCE><EventType>{event_type}</EventType><DatabaseName>testct</DatabaseName>\
         <SchemaName>{schema}</SchemaName>{body}</EVENT_INSTANCE>"
    )
}

pub(crate) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub(crate) fn add_column_event(id: &TableId, column: &str) -> String {
    event(
        "ALTER_TABLE",
        &xml_escape(&id.schema),
        &format!(
            "<ObjectName>{}</ObjectName><ObjectType>TABLE</ObjectType><AlterTableActionList><Create>\
             <Columns><Name>{column}</Name></Columns></Create></AlterTableActionList>",
            xml_escape(&id.name)
        ),
    )
}

pub(crate) fn drop_column_event(id: &TableId, column: &str) -> String {
    event(
        "ALTER_TABLE",
        &xml_escape(&id.schema),
        &format!(
            "<ObjectName>{}</ObjectName><ObjectType>TABLE</ObjectType><AlterTableActionList><Drop>\
             <Columns><Name>{column}</Name></Columns></Drop></AlterTableActionList>",
            xml_escape(&id.name)
        ),
    )
}

pub(crate) fn rename_column_event(id: &TableId, from: &str, to: &str) -> String {
    event(
        "RENAME",
        &xml_escape(&id.schema),
        &format!(
            "<ObjectName>{from}</ObjectName><ObjectType>COLUMN</ObjectType><NewObjectName>{to}</NewObjectName>\
             <TargetObjectName>{}</TargetObjectName><TargetObjectType>TABLE</TargetObjectType>",
            xml_escape(&id.name)
        ),
    )
}

pub(crate) fn rename_table_event(from: &TableId, to: &TableId) -> String {
    event(
        "RENAME",
        &xml_escape(&from.schema),
        &format!(
            "<ObjectName>{}</ObjectName><ObjectType>TABLE</ObjectType><NewObjectName>{}</NewObjectName>",
            xml_escape(&from.name),
            xml_escape(&to.name)
        ),
    )
}

/// Incarnations alternate the configured load mode (shadow first), so a
/// load begun in one mode is resumed or restarted under the other, as after
/// an operator changes `CTSYNC_FULL_LOAD_MODE` and restarts.
pub(crate) fn mode_of(incarnation: usize) -> LoadMode {
    if incarnation.is_multiple_of(2) {
        LoadMode::Shadow
    } else {
        LoadMode::InPlace
    }
}

/// Every port call's limit in the simulation (simulated time).
pub(crate) const CALL_LIMIT: Duration = Duration::from_secs(1);

/// Every incarnation's poll interval (simulated time).
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// Incarnation `incarnation`'s configuration: loads in shadow or in place
/// (`mode_of`), and idle advances due every poll on every third one.
pub(crate) fn config(incarnation: usize, instance_id: String) -> SyncConfig {
    SyncConfig {
        poll_interval: POLL,
        full_load_page_size: 4,
        full_load_mode: mode_of(incarnation),
        change_page_size: 3,
        auto_reload_stale: false,
        restarts: Backoff {
            first: Duration::from_millis(20),
            max: Duration::from_millis(200),
        },
        module_sync_interval: Duration::from_millis(200),
        ddl_listener: ListenerConfig {
            wait: Duration::from_millis(20),
            batch: 5,
            retry_delay: Duration::from_millis(50),
            blocked: Backoff {
                first: Duration::from_millis(20),
                max: Duration::from_millis(200),
            },
        },
        // Each incarnation is a new process: a killed one's leases run out
        // on the simulated clock before the next takes its tables.
        instance: Instance {
            id: instance_id,
            lease_ttl: Duration::from_millis(300),
            published: vec![(keys::CONFIG_PRIMARY_URL.into(), "sim:1433/testct".into())],
        },
        // Idle tables' versions move at most every 150 ms of simulated
        // time, or every poll (so the poll's batch meets its scout's fresh
        // findings every time).
        idle_advance: if incarnation % 3 == 1 {
            Duration::ZERO
        } else {
            Duration::from_millis(150)
        },
        // Idle tables read their catalogs every 24 idle cycles.
        idle_catalog_refresh: 24,
        // Longer than a lease (a call hung past it meets the fencing) and
        // than the longest freeze (a frozen call still leaves late).
        call_limits: CallLimits::all(CALL_LIMIT),
    }
}
