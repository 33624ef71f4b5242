//! T-SQL for `ctsync verify`: every row's SHA-256 over a canonical text of
//! its written columns (the same expression on primary and replica, so
//! equal rows hash equally), read in keyset ranges (after, upto].

use ctsync_actors::model::{ColumnDef, SqlType, TableSchema};

use super::{key_select_list, keyset_predicate, order_by, quote, table};

/// A column's canonical text: exact for every type (binary as `0x…`, floats
/// with 17 digits, money with 4 decimals, temporal values in ISO 8601, a
/// datetimeoffset's instant with its offset in minutes).
fn canonical(c: &ColumnDef) -> String {
    let q = quote(&c.name);
    match c.ty {
        SqlType::Binary(_) | SqlType::VarBinary(_) | SqlType::Image | SqlType::RowVersion => {
            format!("CONVERT(nvarchar(max), CAST({q} AS varbinary(max)), 1)")
        }
        SqlType::Real | SqlType::Float { .. } => format!("CONVERT(nvarchar(40), {q}, 3)"),
        SqlType::Money | SqlType::SmallMoney => format!("CONVERT(nvarchar(40), {q}, 2)"),
        SqlType::Date
        | SqlType::Time { .. }
        | SqlType::DateTime
        | SqlType::SmallDateTime
        | SqlType::DateTime2 { .. } => format!("CONVERT(nvarchar(40), {q}, 126)"),
        // Style 127 writes the instant in UTC: the offset goes alongside,
        // or values of one instant at other offsets would compare equal.
        SqlType::DateTimeOffset { .. } => format!(
            "CONVERT(nvarchar(40), {q}, 127) + N' ' + CONVERT(nvarchar(6), DATEPART(TZOFFSET, {q}))"
        ),
        _ => format!("CAST({q} AS nvarchar(max))"),
    }
}

/// `HASHBYTES('SHA2_256', …)` of a row: the canonical texts joined by
/// NCHAR(31), NULL written as NCHAR(0) (so NULL and '' differ).
pub fn row_hash(schema: &TableSchema) -> String {
    let parts = schema
        .written_columns()
        .iter()
        .map(|c| format!("ISNULL({}, NCHAR(0))", canonical(c)))
        .collect::<Vec<_>>()
        .join(" + NCHAR(31) + ");
    format!("HASHBYTES('SHA2_256', CAST(N'' AS nvarchar(max)) + {parts})")
}

/// The key columns and row hash of the rows in a range, in key order.
/// Parameters: `@P1` = row limit if `limited`; then the `after` key, then
/// the `upto` key, as present.
pub fn row_sums(
    schema: &TableSchema,
    keys: &[String],
    after: bool,
    upto: bool,
    limited: bool,
) -> String {
    let key_cols = key_select_list("", schema, keys);
    let top = if limited { "TOP (@P1) " } else { "" };
    let mut next = if limited { 2 } else { 1 };
    let mut conditions = Vec::new();
    if after {
        conditions.push(format!("({})", keyset_predicate("", schema, keys, next)));
        next += keys.len();
    }
    if upto {
        conditions.push(format!(
            "NOT ({})",
            keyset_predicate("", schema, keys, next)
        ));
    }
    let mut sql = format!(
        "SELECT {top}{key_cols}, {} AS row_hash FROM {}",
        row_hash(schema),
        table(&schema.id)
    );
    if !conditions.is_empty() {
        sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
    }
    sql.push_str(&format!(" ORDER BY {}", order_by("", keys)));
    sql
}
